"""doc/swift-cli.md, replayed: every ``sh`` block runs, in order, with the real ``swift``
command against the session's cluster, from a copy of examples/swift-cli."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from swiftclient import ClientException, Connection

from zerocloud.devcluster import DevCluster

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / 'doc' / 'swift-cli.md'
EXAMPLE = REPO / 'examples' / 'swift-cli'
CONTAINERS = ('bin', 'data', 'jobs', 'apps')
REGISTERED = 'text/plain/config'
ANSWER = 'IT WAS THE BEST OF TIMES, IT WAS THE WORST OF TIMES.\n'


def doc_blocks(kind: str) -> list[str]:
    return re.findall(rf'^```{kind}\n(.*?)^```$', DOC.read_text(), re.S | re.M)


def test_the_swift_cli_session_of_the_docs(swift_cluster: DevCluster, conn: Connection,
                                           tmp_path: Path) -> None:
    work = tmp_path / 'swift-cli'
    shutil.copytree(EXAMPLE, work)
    env = dict(os.environ, ST_AUTH=swift_cluster.auth_url, ST_USER=swift_cluster.user,
               ST_KEY=swift_cluster.key)
    script = 'set -euo pipefail\n' + ''.join(
        f'echo "+++ {i}"\n{block}' for i, block in enumerate(doc_blocks('sh')))
    try:
        proc = subprocess.run(['bash', '-c', script], cwd=work, env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outputs = re.split(r'^\+\+\+ \d+\n', proc.stdout, flags=re.M)[1:]
        assert outputs[0] == 'upper\n        X-Zerovm-Valid: true\n'
        for output in outputs[1:6]:             # swift upload prints each name first
            assert output.endswith('\n' + ANSWER), output
        listed = outputs[6].split()
        assert len(listed) == 2 and listed[1] == listed[0] + '.headers'
        assert conn.get_object('data', listed[0])[1] == b''        # outputs went to objects
        assert json.loads(conn.get_object('data', listed[1])[1])['X-Nexe-Status'] == 'ok'
        # what the docs show is what the commands print
        shown = doc_blocks('text')
        assert shown[0].strip() == 'X-Zerovm-Valid: true'
        assert shown[1:6] == [ANSWER] * 5
    finally:
        for container in CONTAINERS:
            try:
                for obj in conn.get_container(container, full_listing=True)[1]:
                    conn.delete_object(container, obj['name'])
                conn.delete_container(container)
            except ClientException:
                pass
        try:
            conn.delete_object('.zvm', REGISTERED)
        except ClientException:
            pass


def test_swift_fails_when_the_job_fails(swift_cluster: DevCluster, conn: Connection,
                                        make_container, guest) -> None:
    """``swift post`` and ``swift download`` exit non-zero on a failed job, saying why."""
    container = make_container('fail')
    conn.put_object(container, 'interp', guest('src_interp').read_bytes())
    conn.put_object(container, 'book.txt', b'text\n')
    job = [{'name': 'bad', 'exec': {'path': f'swift://~/{container}/interp',
                                    'args': ['-c', 'bogus']},
            'devices': [{'name': 'stdin'},
                        {'name': 'stdout', 'path': f'swift://~/{container}/out.txt'}]}]
    conn.put_object(container, 'bad.json', json.dumps(job))
    env = dict(os.environ, ST_AUTH=swift_cluster.auth_url, ST_USER=swift_cluster.user,
               ST_KEY=swift_cluster.key)
    execute = ['-H', 'X-Zerovm-Execute: 1.0',
               '-H', f'X-Zerovm-Source: swift://~/{container}/bad.json']
    for command in (['swift', 'post', *execute],
                    ['swift', 'post', container, 'book.txt', *execute],
                    ['swift', 'download', container, 'book.txt', '-o', '-',
                     '-H', 'X-Zerovm-Execute: open/1.0',
                     '-H', f'X-Zerovm-Source: swift://~/{container}/bad.json']):
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode != 0, (command, proc.stdout, proc.stderr)
        assert '422' in proc.stderr, (command, proc.stderr)
    assert [o['name'] for o in conn.get_container(container)[1]] == [
        'bad.json', 'book.txt', 'interp']                      # out.txt was not stored

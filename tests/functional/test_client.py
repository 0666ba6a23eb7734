"""``zc`` driven as a user would, against the session's cluster: the command in a
subprocess with the swift command's ``ST_*`` variables, its stdout, stderr and exit
status; progress and Ctrl-C on a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from swiftclient import Connection
from test_disconnect import POOL, until

from zerocloud.devcluster import USERS, DevCluster

REPO = Path(__file__).resolve().parents[2]
ZC = [sys.executable, '-m', 'zerocloud.client.cli']
TIMEOUT = 120
# Our own build of wc, so that the other tests' wc (same program, same digest) is not
# already known to a server when they check that it travels once per server.
def wc(guest) -> Path:
    return guest('wc', flags=('-O1',))


SPIN = 'import sys\nt = 0\nfor i in range(int(sys.argv[1])):\n    t += i\nprint(t)\n'


@pytest.fixture
def zc(swift_cluster: DevCluster, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``zc(*args)``: run the command in ``tmp_path``; text stdout and stderr."""
    def zc(*args: str, env: dict | None = None, timeout: float = TIMEOUT,
           cwd: Path = tmp_path) -> subprocess.CompletedProcess:
        return subprocess.run([*ZC, *args], cwd=cwd, env=env or user_env(swift_cluster),
                              capture_output=True, text=True, timeout=timeout, check=False)
    return zc


def user_env(cluster: DevCluster) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('ST_', 'OS_'))}
    return dict(env, ST_AUTH=cluster.auth_url, ST_USER=cluster.user, ST_KEY=cluster.key,
                PYTHONPATH=str(REPO))


def rows(stderr: str) -> dict[str, list[str]]:
    """The table's rows by node name."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ['NODE', 'OBJECT'])
    found = {}
    for line in lines[start + 1:]:
        cells = line.split()
        if len(cells) != 9:
            break
        found[cells[0]] = cells
    return found


@pytest.fixture
def data(conn: Connection, make_container) -> str:
    """A container of three number files: n1.txt 1..100, n2.txt 1..200, n3.txt 1..300."""
    name = make_container('zc')
    for i in (1, 2, 3):
        conn.put_object(name, f'n{i}.txt', ''.join(f'{n}\n' for n in range(1, 100 * i + 1)))
    return name


def test_run_a_job_file_prints_outputs_and_a_row_per_node(zc, conn: Connection, data: str,
                                                          guest, tmp_path: Path) -> None:
    conn.put_object(data, 'wc', wc(guest).read_bytes())
    (tmp_path / 'job.json').write_text(json.dumps([{
        'name': 'wc', 'exec': {'path': f'swift://~/{data}/wc'},
        'devices': [{'name': 'stdin', 'path': f'swift://~/{data}/n*.txt'},
                    {'name': 'stdout'}]}]))
    proc = zc('run', 'job.json')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['100', '100', '292', '200', '200', '692',
                                   '300', '300', '1092']
    table = rows(proc.stderr)
    assert sorted(table) == ['wc-1', 'wc-2', 'wc-3']
    node, obj, server, status, code, fuel, _in, out, _secs = table['wc-3']
    assert (obj, status, code, out) == (f'{data}/n3.txt', 'ok', '0', '24')
    # fuel: the emulated engine's budget, 0 when auto ran the node natively
    assert server.startswith('127.0.0.1:') and int(fuel.replace(',', '')) >= 0
    assert proc.stderr.splitlines()[-1].startswith('3 nodes: 3 succeeded, 0 failed in ')
    # each node's output to a file of its own (X-Nexe-Body-Bytes)
    proc = zc('run', 'job.json', '--split', 'parts', '-q')
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, '', '')
    assert {p.name: p.read_text().split() for p in (tmp_path / 'parts').iterdir()} == {
        'wc-1': ['100', '100', '292'], 'wc-2': ['200', '200', '692'],
        'wc-3': ['300', '300', '1092']}


def test_a_replicated_node_is_one_node_in_split_and_in_the_counts(
        zc, conn: Connection, data: str, guest, tmp_path: Path) -> None:
    """``"replicate": 2`` (the object ring's 2 replicas) over 3 objects: 3 nodes of 2
    replicas each, run and deferred; a node without an object on the 3 object servers.
    --split wrote empty <node>.2 files (only the first replica returns output) and the
    summary said "6 nodes", the deferred job's state 3."""
    conn.put_object(data, 'wc', wc(guest).read_bytes())
    counts = {'wc-1': '100 100 292', 'wc-2': '200 200 692', 'wc-3': '300 300 1092'}
    (tmp_path / 'job.json').write_text(json.dumps([{
        'name': 'wc', 'exec': {'path': f'swift://~/{data}/wc'}, 'replicate': 2,
        'devices': [{'name': 'stdin', 'path': f'swift://~/{data}/n*.txt'},
                    {'name': 'stdout'}]}]))
    proc = zc('run', 'job.json', '--split', 'parts')
    assert (proc.returncode, proc.stdout) == (0, ''), proc.stderr
    assert {p.name: ' '.join(p.read_text().split())
            for p in (tmp_path / 'parts').iterdir()} == counts
    assert proc.stderr.splitlines()[-1].startswith(
        '3 nodes (2 replicas each): 3 succeeded, 0 failed in ')
    submitted = zc('submit', 'job.json')
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    waited = zc('wait', job, '--timeout', '60', '--split', 'later', '-q')
    assert (waited.returncode, waited.stderr) == (0, '')
    assert {p.name: ' '.join(p.read_text().split())
            for p in (tmp_path / 'later').iterdir()} == counts
    status = zc('status', job)
    assert status.stdout.startswith(f'{job}: done: 3 nodes (2 replicas each): 3 succeeded, '
                                    '0 failed in '), status.stdout
    as_json = json.loads(zc('status', job, '--json').stdout)
    assert as_json['nodes'] == {'total': 3, 'done': 3, 'failed': 0}
    (tmp_path / 'alone.json').write_text(json.dumps([{
        'name': 'none', 'exec': {'path': f'swift://~/{data}/wc'}, 'replicate': 3,
        'devices': [{'name': 'stdout'}]}]))
    proc = zc('run', 'alone.json', '--split', 'alone')
    assert proc.returncode == 0, proc.stderr
    assert [(p.name, p.read_text().split()) for p in (tmp_path / 'alone').iterdir()] == [
        ('none', ['0', '0', '0'])]
    # the table keeps a row per replica (each its server's), the count one per node
    assert sum(line.startswith('none ') for line in proc.stderr.splitlines()) == 3
    assert '\n1 node (3 replicas): 1 succeeded, 0 failed in ' in proc.stderr


def test_a_large_replicated_job_counts_each_node_once(zc, conn: Connection, data: str,
                                                     guest, tmp_path: Path) -> None:
    """501 nodes of ``"replicate": 2`` are 1,002 runs: the answer is counts, which said
    "1002 nodes" (each replica) where the deferred job's state says 501."""
    conn.put_object(data, 'wc', wc(guest).read_bytes())
    (tmp_path / 'job.json').write_text(json.dumps([{
        'name': 'wc', 'exec': {'path': f'swift://~/{data}/wc'}, 'count': 501, 'replicate': 2,
        'devices': [{'name': 'stdout'}]}]))
    proc = zc('run', 'job.json')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['0'] * 3 * 501          # the first replicas' outputs
    assert proc.stderr.splitlines()[-1].startswith(
        '501 nodes (2 replicas each): 501 succeeded, 0 failed in '), proc.stderr
    assert 'statuses: ok 1002; exit codes: 0 1002' in proc.stderr


def test_a_script_over_a_wildcard_with_outputs_to_objects(zc, conn: Connection, data: str,
                                                          tmp_path: Path) -> None:
    (tmp_path / 'total.py').write_text('import sys\nprint(sum(int(x) for x in sys.stdin))\n')
    proc = zc('run', '--script', 'total.py', '--on', f'swift://~/{data}/*.txt',
              '--out', f'swift://~/{data}/*.total')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ''
    assert [conn.get_object(data, f'n{i}.total')[1] for i in (1, 2, 3)] == \
        [b'5050\n', b'20100\n', b'45150\n']
    assert {r[1] for r in rows(proc.stderr).values()} == {f'{data}/n{i}.txt' for i in (1, 2, 3)}
    # a local program goes the same way, its output back in the answer
    proc = zc('run', '--script', 'total.py', '--on', f'swift://~/{data}/n2.txt', '-q')
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, '20100\n', '')


def test_names_with_spaces_and_escapes_as_a_user_writes_them(zc, conn: Connection,
                                                             make_container,
                                                             tmp_path: Path) -> None:
    # a script whose file name has a space, objects whose names need quoting in a URL,
    # shown in the table as listed, also when the answer is the JSON report (--out)
    name = make_container('zc-names')
    objects = ('100%.csv', 'a b.csv', '\u00e9 \u00fc.csv')      # in listing order
    for i, obj in enumerate(objects, 1):
        conn.put_object(name, obj, f'{i}\n{i}\n')
    (tmp_path / 'my total.py').write_text('import sys\nprint(sum(int(x) for x in sys.stdin))\n')
    proc = zc('run', '--script', 'my total.py', '--on', f'swift://~/{name}/*.csv',
              '--out', f'swift://~/{name}/*.total')
    assert proc.returncode == 0, proc.stderr
    assert [conn.get_object(name, o.replace('.csv', '.total'))[1] for o in objects] == \
        [b'2\n', b'4\n', b'6\n']
    shown = proc.stderr.splitlines()[1:4]
    assert [line.split('  ')[1].strip() for line in shown] == [f'{name}/{o}' for o in objects]
    # a script that does not compile: said once, nothing sent
    (tmp_path / 'bad.py').write_text('for x in y\n    pass\n')
    proc = zc('run', '--script', 'bad.py', '--on', f'swift://~/{name}/*.csv')
    assert (proc.returncode, proc.stdout) == (1, '')
    assert proc.stderr == "zc: bad.py:1: expected ':' (a syntax error: nothing was sent)\n"


def test_a_failing_node_fails_the_command_and_says_why(zc, conn: Connection, data: str,
                                                       guest, tmp_path: Path) -> None:
    proc = zc('run', str(guest('exitcode')), '--name', 'exitcode', '--args', '3', '--on', f'swift://~/{data}/n1.txt')
    assert proc.returncode == 1
    assert rows(proc.stderr)['exitcode'][4] == '3'
    assert 'exitcode: exit 3' in proc.stderr
    assert '0 succeeded, 1 failed' in proc.stderr
    # a node's stderr comes back with its failure, under the table and in the report
    (tmp_path / 'fail.py').write_text(
        'import sys\nprint("read 0 numbers", file=sys.stderr)\nsys.exit("no numbers here")\n')
    proc = zc('run', '--script', 'fail.py', '--on', f'swift://~/{data}/n1.txt')
    assert proc.returncode == 1 and proc.stdout == ''
    assert 'fail: exit 1: no numbers here\n  | read 0 numbers\n  | no numbers here\n' \
        in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith('1 node: 0 succeeded, 1 failed in ')
    assert proc.stderr.splitlines()[-1].endswith('; HTTP 422')
    proc = zc('run', '--json', '--script', 'fail.py', '--on', f'swift://~/{data}/n1.txt')
    node, = json.loads(proc.stdout)['nodes']
    assert (proc.returncode, node['failed'], node['stderr']) == \
        (1, True, 'read 0 numbers\nno numbers here\n')
    # an exit code the job accepts (exec.ok_exit) is success
    conn.put_object(data, 'exitcode', guest('exitcode').read_bytes())
    (tmp_path / 'ok3.json').write_text(json.dumps([{
        'name': 'exitcode',
        'exec': {'path': f'swift://~/{data}/exitcode', 'args': '3', 'ok_exit': [0, 3]},
        'devices': [{'name': 'stdout'}]}]))
    proc = zc('run', 'ok3.json')
    assert (proc.returncode, proc.stdout) == (0, 'exiting with 3 via exit\n'), proc.stderr
    assert rows(proc.stderr)['exitcode'][4] == '3' and '1 succeeded, 0 failed' in proc.stderr
    proc = zc('run', str(guest('crash')), '--name', 'crash', '--args', 'null', '-q')
    assert proc.returncode == 1
    assert rows(proc.stderr)['crash'][3] == 'fault'
    fault = next(line for line in proc.stderr.splitlines() if line.startswith('crash: fault'))
    assert len(fault) > len('crash: fault: ')          # what happened, from the server


def test_json_prints_the_report_of_every_node(zc, data: str, guest) -> None:
    proc = zc('run', '--json', str(wc(guest)), '--name', 'wc', '--on', f'swift://~/{data}/n*.txt')
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report['status'] == 200
    assert [n['name'] for n in report['nodes']] == ['wc-1', 'wc-2', 'wc-3']
    assert all(n['status'] == 'ok' and n['retcode'] == 0 for n in report['nodes'])
    assert proc.stderr == ''


def test_engine_picks_the_engine_of_every_node(zc, data: str, guest) -> None:
    """``--engine`` is every node's "engine" (the cluster's servers default to the
    session's ZVM_ENGINE); an unknown one is a usage error before any request."""
    from zvm_core import engines
    wanted = ['emulated'] + ['native'] * (engines.native_unavailable() is None)
    for engine in wanted:
        proc = zc('run', '--json', str(wc(guest)), '--name', 'wc', '--engine', engine,
                  '--on', f'swift://~/{data}/n*.txt')
        assert proc.returncode == 0, proc.stderr
        nodes = json.loads(proc.stdout)['nodes']
        assert [(n['status'], n['engine']) for n in nodes] == [('ok', engine)] * 3, nodes
    proc = zc('run', str(wc(guest)), '--engine', 'fast', '--on', f'swift://~/{data}/n1.txt')
    assert proc.returncode == 2 and proc.stdout == ''
    assert "argument --engine: invalid choice: 'fast' (choose from 'auto', 'native', " \
        "'emulated')" in proc.stderr


def test_the_servers_whole_error_body_is_shown(zc, data: str, tmp_path: Path) -> None:
    (tmp_path / 'job.json').write_text(json.dumps([{
        'name': 'wc', 'exec': {'path': f'swift://~/{data}/no-such-program'},
        'devices': [{'name': 'stdout'}]}]))
    proc = zc('run', 'job.json')
    assert proc.returncode == 1
    assert f'Error 404 Not Found while fetching swift://AUTH_test/{data}/no-such-program ' \
        '(the program of wc)\n' in proc.stderr
    proc = zc('run', 'job.json', env={'PATH': os.environ['PATH'], 'PYTHONPATH': str(REPO)})
    assert proc.returncode == 2 and 'no credentials: set ST_AUTH' in proc.stderr


def test_split_of_a_job_too_large_for_node_sizes_gets_each_nodes_stdout(
        swift_cluster: DevCluster, conn: Connection, data: str, guest, tmp_path: Path,
        monkeypatch, capsysbinary) -> None:
    """A job of more than 1,000 nodes is answered without each node's size: --split
    stores each node's stdout and fetches it (in-process, with the client's threshold
    lowered to 2 nodes: 1,001 nodes are too slow for this test)."""
    from zerocloud.client import cli
    conn.put_object(data, 'wc', wc(guest).read_bytes())
    for name in [k for k in os.environ if k.startswith(('ST_', 'OS_'))]:
        monkeypatch.delenv(name)
    for key, value in user_env(swift_cluster).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(cli, 'SUMMARY_NODES', 2)
    code = cli.main(['run', f'swift://~/{data}/wc', '--on', f'swift://~/{data}/n*.txt',
                     '--split', str(tmp_path / 'parts'), '-q'])
    said = capsysbinary.readouterr()
    assert (code, said.out) == (0, b''), said.err
    assert {p.name: p.read_text().split() for p in (tmp_path / 'parts').iterdir()} == {
        'wc-1': ['100', '100', '292'], 'wc-2': ['200', '200', '692'],
        'wc-3': ['300', '300', '1092']}
    assert conn.get_container('.zvm', prefix='split-')[1] == []


def test_submit_then_status_wait_and_result(zc, data: str, guest, tmp_path: Path) -> None:
    proc = zc('submit', str(wc(guest)), '--name', 'wc', '--on', f'swift://~/{data}/n*.txt')
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    assert job_id.startswith('job-')
    waited = zc('wait', job_id, '--timeout', '60')
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.split()[-3:] == ['300', '300', '1092']
    # the output came back in the answer; the stored result still names each node's object
    assert {n: r[1] for n, r in rows(waited.stderr).items()} == {
        f'wc-{i}': f'{data}/n{i}.txt' for i in (1, 2, 3)}
    status = zc('status', job_id)
    assert status.returncode == 0 and status.stdout.startswith(
        f'{job_id}: done: 3 nodes: 3 succeeded, 0 failed'), status.stderr
    assert rows(zc('result', job_id).stderr)['wc-2'][1] == f'{data}/n2.txt'
    done = zc('status', job_id, '--json')
    assert (done.returncode, json.loads(done.stdout)) == (0, {
        'state': 'done', 'status': 200, 'seconds': json.loads(done.stdout)['seconds'],
        'nodes': {'total': 3, 'done': 3, 'failed': 0}})
    late = zc('cancel', job_id)         # it has ended: nothing to cancel, its end said
    assert (late.returncode, late.stderr.splitlines()[0]) == (
        1, f'{job_id}: not running, nothing to cancel'), late.stderr
    assert 'done: 3 nodes: 3 succeeded, 0 failed' in late.stderr
    split = zc('result', job_id, '--split', 'parts', '-q')
    assert (split.returncode, split.stdout) == (0, ''), split.stderr
    assert (tmp_path / 'parts' / 'wc-3').read_text().split() == ['300', '300', '1092']
    result = zc('result', job_id, '--json')
    assert [n['status'] for n in json.loads(result.stdout)['nodes']] == ['ok'] * 3
    # outputs to objects: the result is the JSON report, which names each node's object
    proc = zc('submit', str(wc(guest)), '--name', 'wc', '--on', f'swift://~/{data}/n*.txt',
              '--out', f'swift://~/{data}/*.wc')
    waited = zc('wait', proc.stdout.strip(), '--timeout', '60')
    assert waited.returncode == 0, waited.stderr
    assert {n: r[1] for n, r in rows(waited.stderr).items()} == {
        f'wc-{i}': f'{data}/n{i}.txt' for i in (1, 2, 3)}
    # a job id with a typo: said at once (a job the proxy answered 202 for has a
    # state or a result), not waited for forever; an id cut short is no id at all
    missing = 'job-' + '0' * 32
    for command in ('result', 'status', 'wait', 'cancel'):
        unknown = zc(command, missing)
        assert (unknown.returncode, unknown.stderr) == (1, (
            f'zc: {missing}: no such job (no result and no progress stored: a typo in the '
            'id, or its result was deleted; a job POSTed to a container is named '
            '<container>/job-...)\n')), command
        cut = zc(command, 'job-0000')
        assert (cut.returncode, cut.stderr) == (2, (
            "zc: 'job-0000' is not a job id: give the id zc submit printed (job-<32 hex "
            'digits>, or <container>/job-<32 hex digits>) (zc -h for help)\n')), command


def test_output_the_job_dropped_is_said(zc, conn: Connection, data: str, guest,
                                        tmp_path: Path) -> None:
    """A node that prints with only an ``output`` declared, or whose stored stdout is
    under its ``min_size``: the answer is a 200 that says so only in ``X-Nexe-Dropped``,
    and zc said nothing, run or deferred."""
    conn.put_object(data, 'wc', wc(guest).read_bytes())
    node = {'name': 'wc', 'exec': {'path': f'swift://~/{data}/wc'}}
    stdin = {'name': 'stdin', 'path': f'swift://~/{data}/n1.txt'}
    (tmp_path / 'undeclared.json').write_text(json.dumps([{**node, 'devices': [
        stdin, {'name': 'output', 'path': f'swift://~/{data}/n1.out'}]}]))
    (tmp_path / 'small.json').write_text(json.dumps([{**node, 'devices': [
        stdin, {'name': 'stdout', 'path': f'swift://~/{data}/n1.count', 'min_size': 1000}]}]))
    undeclared = ('zc: dropped: wc: 24 bytes written to an undeclared stdout\n(an undeclared '
                  'stdout is /dev/null: add {"name": "stdout"} to a node\'s devices to get '
                  'what it writes, with a "path" to store it)\n')
    small = ('zc: dropped: wc: stdout not stored (24 bytes < min_size 1000)\n(an output '
             'smaller than its device\'s min_size is not stored, as its job asks: an object '
             'of that name from an earlier run stays as it was; a lower min_size keeps it)\n')
    conn.put_object(data, 'n1.count', b'an earlier run\n')     # not replaced, as zc says
    proc = zc('run', 'undeclared.json')
    assert (proc.returncode, proc.stdout) == (0, ''), proc.stderr
    assert proc.stderr.endswith('HTTP 200\n' + undeclared), proc.stderr
    for args in ([], ['--json']):
        proc = zc('run', 'small.json', '-q', *args)
        assert (proc.returncode, proc.stderr) == (0, small), args
    assert conn.get_object(data, 'n1.count')[1] == b'an earlier run\n'
    submitted = zc('submit', 'undeclared.json')
    assert submitted.returncode == 0, submitted.stderr
    waited = zc('wait', submitted.stdout.strip(), '--timeout', '60', '-q')
    assert (waited.returncode, waited.stderr) == (0, undeclared)


def test_a_query_over_another_accounts_container_prints_what_doc_client_md_shows(
        zc) -> None:
    """doc/client.md's session shows the refusal before the proxy said whose read ACL
    to ask for: the doc's lines are what zc prints."""
    command = '$ zc sql "SELECT region FROM swift://AUTH_test2/private/*.csv"'
    lines = (REPO / 'doc' / 'client.md').read_text().splitlines()
    shown = lines[lines.index(command) + 1:]
    shown = shown[:shown.index('[exit 1]')]
    proc = zc('sql', 'SELECT region FROM swift://AUTH_test2/private/*.csv')
    assert (proc.returncode, proc.stdout, proc.stderr.splitlines()) == (1, '', shown)


def test_new_bundle_deploy_open(zc, conn: Connection, make_container, tmp_path: Path) -> None:
    assert zc('new', 'hello').returncode == 0
    app = tmp_path / 'hello'
    made = subprocess.run(['make', '-s'], cwd=app, capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    bundled = zc('bundle', cwd=app)
    assert bundled.returncode == 0, bundled.stderr
    assert 'bin/hello: valid program' in bundled.stderr
    (tmp_path / 'a.txt').write_bytes(b'one two\nthree\n')
    tried = zc('local', 'run', 'hello/hello.zapp', '--stdin', 'a.txt', '-q')
    assert (tried.returncode, tried.stdout) == (0, '2 lines, 3 words, 14 bytes\n'), tried.stderr
    apps, docs = make_container('apps'), make_container('docs')
    deployed = zc('deploy', 'hello/hello.zapp', '--to', f'swift://~/{apps}/',
                  '--content-type', 'text/x-zc-hello')
    assert deployed.returncode == 0, deployed.stderr
    assert f'REST endpoint: {conn.url.rsplit("/v1/", 1)[0]}/open/AUTH_test/{apps}/hello.zapp' \
        in deployed.stderr
    try:
        conn.put_object(docs, 'a.hello', b'one two\nthree\n', content_type='text/x-zc-hello')
        ran = zc('run', 'hello/hello.zapp', '--on', f'swift://~/{docs}/*.hello', '-q')
        assert (ran.returncode, ran.stdout) == (0, '2 lines, 3 words, 14 bytes\n'), ran.stderr
        opened = zc('open', f'swift://~/{docs}/a.hello', '-q')
        assert (opened.returncode, opened.stdout) == (0, '2 lines, 3 words, 14 bytes\n'), \
            opened.stderr
        # the deployed zapp is an endpoint: the request body is its input
        resp = conn.http_connection()[1]
        resp.request('POST', f'/open/AUTH_test/{apps}/hello.zapp', b'a b c',
                     {'X-Auth-Token': conn.token})
        answer = resp.getresponse()
        assert (answer.status, answer.read()) == (200, b'0 lines, 3 words, 5 bytes\n')
    finally:
        conn.delete_object('.zvm', 'text/x-zc-hello/config')


def test_validate_of_a_program_refused_at_upload_fails_plainly(
        zc, conn: Connection, make_container, guest) -> None:
    # the validated upload answers 201 with X-Zerovm-Valid: false, easy to miss; zc
    # validate must say it plainly, with a failed exit
    container = make_container()
    put: dict = {}
    conn.put_object(container, 'rdrand', guest('rdrand').read_bytes(),
                    headers={'X-Zerovm-Validate': 'true'}, response_dict=put)
    assert (put['status'], put['headers']['x-zerovm-valid']) == (201, 'false')
    proc = zc('validate', f'swift://~/{container}/rdrand')
    assert proc.returncode == 1
    said = f'swift://~/{container}/rdrand: invalid: I3 0x'
    assert proc.stderr.startswith(said), proc.stderr
    assert proc.stderr.endswith('(the verdict stored at upload: the object servers refuse to '
                                'run it)\n')


def test_validate_of_a_program_built_for_another_cpu_gives_the_uploads_note(
        zc, conn: Connection, make_container, guest) -> None:
    # a -mavx2 build is valid: its upload's 201 and zc validate said only that, and
    # its jobs faulted where they reached an AVX instruction
    from zvm_core.elf import load_program
    from zvm_core.prepare import absent_note
    from zvm_core.validator import validate
    program = guest('floats', flags=('-O2', '-mavx2'))
    loaded = load_program(program)
    note = absent_note(loaded, validate(loaded))
    container = make_container()
    put: dict = {}
    conn.put_object(container, 'floats', program.read_bytes(),
                    headers={'X-Zerovm-Validate': 'true'}, response_dict=put)
    assert put['status'] == 201 and put['headers']['x-zerovm-valid'] == 'true'
    assert put['headers']['x-zerovm-validation-note'] == note
    assert conn.head_object(container, 'floats')['x-zerovm-validation-note'] == note
    proc = zc('validate', f'swift://~/{container}/floats')
    url = f'swift://~/{container}/floats'
    assert (proc.returncode, proc.stderr) == (0, f'{url}: valid\n{url}: {note}\n')


def test_validate_and_local_run(zc, guest, tmp_path: Path) -> None:
    assert zc('validate', str(wc(guest))).stderr.endswith(': valid\n')
    refused = zc('validate', str(guest('wrmsr')))
    assert refused.returncode == 1 and 'invalid' in refused.stderr
    for d in ('data', 'bin', 'out'):
        (tmp_path / d).mkdir()
    (tmp_path / 'data' / 'a.txt').write_text('1\n2\n')
    (tmp_path / 'data' / 'b.txt').write_text('x y z\n')
    (tmp_path / 'bin' / 'wc').write_bytes(wc(guest).read_bytes())
    (tmp_path / 'job.json').write_text(json.dumps([{
        'name': 'wc', 'exec': {'path': 'swift://~/bin/wc'},
        'devices': [{'name': 'stdin', 'path': 'swift://~/data/*.txt'},
                    {'name': 'stdout', 'path': 'swift://~/out/*.count'}]}]))
    maps = ['--map', 'swift://~/data=data', '--map', 'swift://~/bin=bin',
            '--map', 'swift://~/out=out']
    proc = zc('local', 'run', 'job.json', *maps)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / 'out' / 'a.count').read_text().split() == ['2', '2', '4']
    assert (tmp_path / 'out' / 'b.count').read_text().split() == ['1', '3', '6']
    assert rows(proc.stderr)['wc-2'][1:4] == ['data/b.txt', 'local', 'ok']
    (tmp_path / 'words.py').write_text('import sys\nprint(len(sys.stdin.read().split()))\n')
    proc = zc('local', 'run', '--script', 'words.py', '--on', 'swift://~/data/*.txt', *maps)
    assert (proc.returncode, proc.stdout) == (0, '2\n3\n'), proc.stderr
    (tmp_path / 'fail.json').write_text(json.dumps([{
        'name': 'py', 'exec': {'path': 'file://python3:python3', 'args': '-c "1/0"'},
        'devices': [{'name': 'stdout'}]}]))
    proc = zc('local', 'run', 'fail.json')
    assert proc.returncode == 1
    assert 'py: exit 1' in proc.stderr and '  | ZeroDivisionError: division by zero' \
        in proc.stderr
    (tmp_path / 'bin' / 'exitcode').write_bytes(guest('exitcode').read_bytes())
    (tmp_path / 'exit.json').write_text(json.dumps([{
        'name': 'ex', 'exec': {'path': 'swift://~/bin/exitcode', 'args': '2'},
        'devices': [{'name': 'stdin', 'path': 'swift://~/data/*.txt'},
                    {'name': 'stdout', 'path': 'swift://~/out/*.code'}]}]))
    proc = zc('local', 'run', 'exit.json', *maps)
    assert proc.returncode == 1 and 'ex-1: exit 2' in proc.stderr
    assert not list((tmp_path / 'out').glob('*.code'))       # a failed job stores nothing
    unmapped = zc('local', 'run', 'job.json')
    assert unmapped.returncode == 1 and 'add --map swift://~/data=DIR' in unmapped.stderr


def on_terminal(args: list[str], env: dict, cwd: Path, until: bytes, then=None
                ) -> tuple[int, bytes, str]:
    """Run zc with stderr on a pseudo-terminal: (exit status, what the terminal showed,
    stdout).  ``then(proc)`` is called once the terminal showed ``until``."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*ZC, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    shown, called = b'', False
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:         # the other side closed: zc ended
                    break
                if not chunk:
                    break
                shown += chunk
            if not called and until in shown and then is not None:
                then(proc)
                called = True
        code = proc.wait(timeout=TIMEOUT)
        return code, shown, proc.stdout.read().decode()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def test_progress_on_a_terminal(swift_cluster: DevCluster, tmp_path: Path) -> None:
    (tmp_path / 'spin.py').write_text(SPIN)
    code, shown, out = on_terminal(['run', '--script', 'spin.py', '--args', '300000'],
                                   user_env(swift_cluster), tmp_path, b'')
    assert code == 0, shown
    assert out == f'{sum(range(300000))}\n'
    assert b'\rrunning 1 node: ' in shown and b' s elapsed, ' in shown  # drawn at once
    assert b'1 node: 1 succeeded, 0 failed' in shown
    # quiet: nothing on the terminal
    code, shown, out = on_terminal(['run', '-q', '--script', 'spin.py', '--args', '1000'],
                                   user_env(swift_cluster), tmp_path, b'')
    assert (code, shown, out) == (0, b'', f'{sum(range(1000))}\n')


def test_a_running_deferred_job_shows_its_progress(zc, conn: Connection, data: str,
                                                   swift_cluster: DevCluster,
                                                   tmp_path: Path) -> None:
    (tmp_path / 'spin.py').write_text(SPIN)
    job = ['--script', 'spin.py', '--args', '150000', '--on', f'swift://~/{data}/n*.txt']
    output = f'{sum(range(150000))}\n' * 3
    env = user_env(swift_cluster)
    submitted = zc('submit', *job)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    # while it runs, status says how far it is (the state the proxy keeps from before
    # it answers 202), or it is done
    status = zc('status', job_id, '--json')
    assert status.returncode in (0, 3), status.stderr
    progress = json.loads(status.stdout)
    assert progress['nodes']['total'] == 3 and progress['state'] in ('running', 'done')
    if progress['state'] == 'running':
        assert set(progress['nodes']) == {'total', 'done', 'failed', 'running'}
        assert progress['bytes']['out'] >= 0 and progress['job'] == 1
    # on a terminal, wait follows the nodes of a running job: one that runs until it is
    # cancelled (this job may end before wait reads its state: then no counts are shown)
    endless = zc('submit', '--script', 'spin.py', '--args', str(10**15), '--on',
                 f'swift://~/{data}/n*.txt').stdout.strip()
    code, shown, out = on_terminal(['wait', endless], env, tmp_path, b'/3 nodes done, ',
                                   lambda proc: zc('cancel', endless))
    assert (code, out) == (1, ''), shown
    assert f'waiting for {endless}: '.encode() in shown and b'zc: the job was cancelled' in shown
    # then shows each node's object
    code, shown, out = on_terminal(['wait', job_id], env, tmp_path, b'')
    assert (code, out) == (0, output), shown
    assert {n: r[1] for n, r in rows(shown.decode()).items()} == {
        f'spin-{i}': f'{data}/n{i}.txt' for i in (1, 2, 3)}
    # run --progress: the same line; Ctrl-C stops following, not the job (a job that
    # is still running then: long enough for the engine that runs Python here)
    from zvm_core.engines import native_unavailable
    from zvm_core.engines.native import tsc_unavailable
    native = native_unavailable() is None and tsc_unavailable() is None
    count = 30_000_000 if native else 150_000
    long_job = ['--script', 'spin.py', '--args', str(count), '--on', f'swift://~/{data}/n*.txt']
    code, shown, out = on_terminal(['run', '--progress', *long_job], env, tmp_path,
                                   b'/3 nodes done, ', lambda proc: proc.send_signal(
                                       signal.SIGINT))
    assert code == 130 and out == '', shown
    followed = re.search(rb'stopped waiting; the deferred job goes on \(zc wait '
                         rb'(job-[0-9a-f]{32})\)', shown)
    assert followed, shown
    waited = zc('wait', followed.group(1).decode(), '-q', '--timeout', '60')
    assert (waited.returncode, waited.stdout, waited.stderr) == \
        (0, f'{sum(range(count))}\n' * 3, '')
    # followed to the end, it shows the result and deletes it
    before = {o['name'] for o in conn.get_container('.zvm', full_listing=True)[1]}
    ran = zc('run', '--progress', '-q', *job)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, output, '')
    assert {o['name'] for o in conn.get_container('.zvm', full_listing=True)[1]} <= before


def test_deploy_an_api_endpoint_for_a_container(zc, conn: Connection, connect,
                                                make_container, tmp_path: Path) -> None:
    app = tmp_path / 'echo'
    app.mkdir()
    (app / 'zapp.yaml').write_text(
        'name: echo\njob:\n  - name: echo\n'
        '    exec: {path: "file://python3:python3", args: /echo.py}\n'
        '    devices: [{name: stdin}, {name: stdout, content_type: text/plain}]\n'
        'bundle: [echo.py]\n')
    (app / 'echo.py').write_text(
        'import os, sys\nbody = sys.stdin.read()\nprint(os.environ["REQUEST_METHOD"], '
        'os.environ["PATH_INFO"], os.environ["QUERY_STRING"], repr(body))\n')
    assert zc('bundle', cwd=app).returncode == 0
    apps, site, plain = make_container('apps'), make_container('site'), make_container('p')
    deployed = zc('deploy', 'echo/echo.zapp', '--to', f'swift://~/{apps}/', '--endpoint', site)
    assert deployed.returncode == 0, deployed.stderr
    base = conn.url.rsplit('/v1/', 1)[0]
    assert f'API endpoint: {base}/api/AUTH_test/{site}/<path>' in deployed.stderr
    assert conn.head_container(site)['x-container-meta-rest-endpoint'] == \
        f'swift://AUTH_test/{apps}/echo.zapp'

    def call(method: str, path: str, body: bytes = b'', token: str = conn.token):
        http = conn.http_connection()[1]
        http.request(method, path, body, {'X-Auth-Token': token})
        answer = http.getresponse()
        return answer.status, answer.read().decode()
    assert call('PUT', f'/api/AUTH_test/{site}/users/7?x=1', b'hello') == \
        (200, f"PUT /AUTH_test/{site}/users/7 x=1 'hello'\n")
    assert call('GET', f'/api/AUTH_test/{site}/') == (200, f"GET /AUTH_test/{site}/  ''\n")
    status, body = call('GET', f'/api/AUTH_test/{plain}/x')
    assert (status, body) == (404, f'No API endpoint configured for container {plain} (its '
                                    'X-Container-Meta-Rest-Endpoint names none)\n')
    other = connect('test2:tester2')
    other.get_auth()
    status, body = call('GET', f'/api/AUTH_test/{site}/x', token=other.token)
    assert status == 403, body


@pytest.fixture(scope='module')
def one_worker(tmp_path_factory: pytest.TempPathFactory, guest) -> Iterator[DevCluster]:
    """A cluster of one object server that runs one node at a time and queues none (as
    test_disconnect's): while a node holds the worker, any other job is refused (503)."""
    cluster = DevCluster(tmp_path_factory.mktemp('zc-one-worker'), replicas=1,
                         object_servers=1, sysimages={}, extra_conf={'object': POOL})
    try:
        cluster.start()
        conn = Connection(authurl=cluster.auth_url, user=cluster.user,
                          key=USERS[cluster.user][0], retries=0)
        conn.put_container('bin')
        conn.put_object('bin', 'spin', guest('spin').read_bytes())
        yield cluster
    finally:
        cluster.stop()


def test_ctrl_c_stops_the_job_and_frees_its_worker(one_worker: DevCluster,
                                                   tmp_path: Path) -> None:
    env = user_env(one_worker)

    def quick() -> subprocess.CompletedProcess:
        return subprocess.run([*ZC, 'run', 'swift://~/bin/spin', '--args', '1', '-q'],
                              env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=TIMEOUT, check=False)

    def interrupt_once_spinning(proc: subprocess.Popen) -> None:
        # the spinning node holds the worker once a quick job is refused
        if until(lambda: proc.poll() is not None or quick().returncode != 0) and \
                proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for _ in range(5):          # a quick job may take the worker first: zc then fails (503)
        code, shown, out = on_terminal(['run', 'swift://~/bin/spin'], env, tmp_path,
                                       b'elapsed', interrupt_once_spinning)
        if code != 1:
            break
    assert code == 130, shown
    assert b'zc: cancelled' in shown
    assert out == ''                # it did not wait for the job's answer
    # the worker is free again: a job runs (it would be refused for the 120 s the
    # spinning node may run if the server had not stopped it)
    ran = until(lambda: (p := quick()).returncode == 0 and p)
    assert ran and ran.stdout == 'spun 1\n'

"""The README's demo: a local Swift cluster, some books, a word count run next to them.

``python -m zerocloud.demo`` starts the local cluster (or reuses the one
already running in the default directory), compiles
``examples/wordcount/wordcount.c`` with ``musl-gcc -static``, uploads it and
five generated "books", POSTs ``examples/wordcount/job.json`` (one node per
book, each on an object server holding that book) and prints the response:
the counts and the ``X-Nexe-*`` headers.  A second job stores each count as
an object instead of returning it.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from swiftclient import Connection

from zerocloud.devcluster import DevCluster

EXAMPLE = Path(__file__).resolve().parent.parent / 'examples' / 'wordcount'
WORDS = ('object', 'storage', 'swift', 'ring', 'proxy', 'replica', 'sandbox', 'node',
         'deterministic', 'channel', 'the', 'a', 'of', 'data', 'compute', 'zero')


def _book(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    lines, total = [], 0
    while total < size:
        line = ' '.join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        lines.append(line)
        total += len(line) + 1
    return ('\n'.join(lines) + '\n').encode()


def _compile(source: Path, out: Path) -> None:
    if shutil.which('musl-gcc') is None:
        sys.exit('musl-gcc not found: install Debian musl-tools (scripts/setup.sh does)')
    subprocess.run(['musl-gcc', '-static', '-O2', '-o', str(out), str(source)], check=True)


def _show(title: str, headers: dict, body: bytes) -> None:
    print(f'\n== {title}')
    for key in sorted(headers):
        if key.lower().startswith('x-nexe') or key.lower() == 'etag':
            print(f'{key}: {headers[key]}')
    print()
    print(body.decode('utf-8', 'replace'), end='')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dir', help='cluster directory (default: the devcluster default)')
    parser.add_argument('--stop', action='store_true', help='stop the cluster at the end')
    opts = parser.parse_args(argv)
    cluster = DevCluster(opts.dir, detach=True)
    if cluster.running_servers():
        print(f'using the cluster already running in {cluster.dir}')
    else:
        print(f'starting a local Swift cluster with ZeroCloud in {cluster.dir} ...')
        cluster.start()
    conn = Connection(authurl=cluster.auth_url, user=cluster.user, key=cluster.key, retries=0)
    with tempfile.TemporaryDirectory() as tmp:
        program = Path(tmp) / 'wordcount'
        _compile(EXAMPLE / 'wordcount.c', program)
        conn.put_container('demo')
        conn.put_object('demo', 'wordcount', program.read_bytes(),
                        content_type='application/x-executable')
    data = 0
    for i in range(5):
        book = _book(i, 200_000)
        data += len(book)
        conn.put_object('demo', f'books/book-{i}.txt', book, content_type='text/plain')
    print(f'uploaded the program and 5 books ({data} bytes) to container "demo"')

    job = (EXAMPLE / 'job.json').read_text()
    print('\njob:', json.dumps(json.loads(job)))
    headers, body = _post(conn, job)
    _show('word count of each book, computed on the object server holding it', headers, body)
    print(f'\n{len(body)} bytes of results came back for {data} bytes of data.')

    store = json.loads(job)
    store[0]['devices'][1]['path'] = 'swift://~/demo/counts/*.count'
    headers, body = _post(conn, json.dumps(store))
    _show('the same job, storing each count as an object', headers, body)
    _, listing = conn.get_container('demo', prefix='counts/')
    for item in listing:
        _, count = conn.get_object('demo', item['name'])
        print(f'{item["name"]}: {count.decode().strip()}')
    if opts.stop:
        cluster.stop()
    else:
        print(f'\nthe cluster keeps running; stop it with: zerocloud-devcluster stop '
              f'--dir {cluster.dir}')
    return 0


def _post(conn: Connection, job: str) -> tuple[dict, bytes]:
    url, token = conn.get_auth()
    resp: dict = {}
    body = conn.post_account(headers={'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0',
                                      'Content-Type': 'application/json'},
                             data=job.encode(), response_dict=resp)[1]
    if resp['status'] != 200:
        sys.exit(f'job failed: {resp["status"]} {resp["reason"]}: {body!r}')
    return resp['headers'], body


if __name__ == '__main__':
    sys.exit(main())

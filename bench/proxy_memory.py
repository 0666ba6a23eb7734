"""Proxy memory for large outputs (issue 15.8): how much a job's outputs grow the proxy.

Each case runs on a fresh proxy of one local cluster
(``zerocloud.devcluster.DevCluster`` in a temporary directory, restarted
between cases; storage survives): a small job warms the proxy up (imports,
first connections), then its peak RSS (``VmHWM`` of ``/proc/<pid>/status``)
is read, the case's job runs, and ``VmHWM`` is read again.  The guest is
``tests/programs/emit.c``; each of two nodes writes ``--mib`` MiB (default
96):

- response: both outputs form the response body; the client reads it 64 KiB
  at a time and checks it: each node's part (``X-Nexe-Body-Bytes``) has the
  MD5 its object server reported (``X-Nexe-Etag``), the whole body the
  ``ETag``;
- stored: both outputs are stored as objects (``stdout`` with a ``path``),
  checked by the objects' ETags;
- deferred: the response case with ``X-Zerovm-Deferred: always``: the body
  goes to the result object, checked by its ETag.

Usage: ``python bench/proxy_memory.py [--mib N] [--cases response,stored,deferred]``.
The cluster's servers import ``zerocloud`` as this process does, so
``PYTHONPATH=<another tree>`` measures another version of the proxy.  It
uses the user's verdict cache (what it measures is memory, not validation
time; with an empty cache the object servers of a loaded host may not start
within the launcher's 30 s).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import requests  # noqa: E402
from common import mib, proc_kib, table  # noqa: E402
from swiftclient import Connection  # noqa: E402

from zerocloud.devcluster import DevCluster, ServerStartError  # noqa: E402

CONTAINER = 'bench'
CHUNK = 65536
TAGS = ('first', 'second')
CASES = ('response', 'stored', 'deferred')


def job(size: int, stored: bool = False) -> list[dict]:
    """Two emit nodes writing ``size`` bytes each, to the response or to objects."""
    return [{'name': tag, 'exec': {'path': f'swift://~/{CONTAINER}/emit',
                                   'args': [str(size), tag]},
             'devices': [{'name': 'stdout',
                          **({'path': f'swift://~/{CONTAINER}/out-{tag}'} if stored else {})}]}
            for tag in TAGS]


def post(conn: Connection, body: list[dict], **headers: str) -> requests.Response:
    url, token = conn.get_auth()
    resp = requests.post(f'{url}/{CONTAINER}', data=json.dumps(body), stream=True,
                         timeout=600, headers={
                             'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0',
                             'Content-Type': 'application/json', **headers})
    if resp.status_code not in (200, 202):
        sys.exit(f'job failed: {resp.status_code} {resp.text[:300]}')
    return resp


def check_body(resp: requests.Response) -> int:
    """Read the body a buffer at a time; exit unless every node's part has its MD5 and
    the whole body the ETag.  Its size."""
    sizes = [int(s) for s in resp.headers['X-Nexe-Body-Bytes'].split(',')]
    etags = [e.split()[-1] for e in resp.headers['X-Nexe-Etag'].split(',')]
    whole, parts, part, i, left = hashlib.md5(), [], hashlib.md5(), 0, sizes[0]
    for chunk in resp.iter_content(CHUNK):
        whole.update(chunk)
        while chunk:
            part.update(chunk[:left])
            taken, chunk = min(left, len(chunk)), chunk[left:]
            left -= taken
            if left == 0 and i < len(sizes):
                parts.append(part.hexdigest())
                part, i = hashlib.md5(), i + 1
                left = sizes[i] if i < len(sizes) else float('inf')
    if parts != etags or whole.hexdigest() != resp.headers['Etag']:
        sys.exit(f'the body does not match its etags: {parts} {etags}')
    return sum(sizes)


def run_case(conn: Connection, case: str, size: int) -> str:
    """Run one case's job and check what it wrote; what was checked."""
    if case == 'response':
        return f'body {mib(check_body(post(conn, job(size))))} checked'
    if case == 'stored':
        post(conn, job(size, stored=True)).close()
        for tag in TAGS:
            headers = conn.head_object(CONTAINER, f'out-{tag}')
            if int(headers['content-length']) != size:
                sys.exit(f'out-{tag}: {headers["content-length"]} bytes, not {size}')
        return f'{len(TAGS)} objects of {mib(size)} stored'
    name = post(conn, job(size), **{'X-Zerovm-Deferred': 'always'}).text.strip()
    name = name.rsplit('/', 1)[1]
    url, token = conn.get_auth()
    deadline = time.monotonic() + 600
    while (got := requests.get(f'{url}/{CONTAINER}/{name}.headers', timeout=60,
                               headers={'X-Auth-Token': token})).status_code == 404:
        if time.monotonic() > deadline:
            sys.exit(f'deferred result {name}: not stored after 600 s')
        time.sleep(0.5)
    headers = got.json()
    stored = conn.head_object(CONTAINER, name)
    if stored['etag'] != headers['Etag'] or int(stored['content-length']) != 2 * size:
        sys.exit(f'deferred result {name}: {stored} does not match {headers}')
    return f'result of {mib(2 * size)} stored'


def start(cluster: DevCluster) -> None:
    """Start the cluster; once more when a server was slow to answer (a loaded host)."""
    try:
        cluster.start()
    except ServerStartError as e:
        print(f'{e}; starting again', flush=True)
        cluster.stop()
        cluster.start()


def measure(cluster: DevCluster, case: str, size: int) -> list[str]:
    """One table row: the case on a fresh, warmed-up proxy."""
    cluster.stop()
    start(cluster)
    conn = common.connect(cluster)
    try:
        run_case(conn, 'response', 1024)            # warm-up: imports, first connections
        pid = cluster.server('proxy').pid
        idle = proc_kib(pid, 'VmHWM')
        wall, checked = common.timed(run_case, conn, case, size)
        peak = proc_kib(pid, 'VmHWM')
    finally:
        conn.close()
    print(f'{case}: {checked} in {wall:.1f} s', flush=True)
    return [case, f'2 x {mib(size)}', f'{wall:.1f} s', mib(idle << 10), mib(peak << 10),
            f'+{mib((peak - idle) << 10)}']


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--mib', type=int, default=96, help='MiB each node writes')
    parser.add_argument('--cases', default=','.join(CASES), help='comma-separated cases')
    opts = parser.parse_args(argv)
    cases = opts.cases.split(',')
    if not set(cases) <= set(CASES):
        parser.error(f'cases are {", ".join(CASES)}')
    print(common.environment())
    program = common.build('emit').read_bytes()
    with tempfile.TemporaryDirectory(prefix='zvm-bench-proxy-memory-') as d:
        cluster = DevCluster(Path(d) / 'cluster', detach=False)
        start(cluster)
        try:
            conn = common.connect(cluster)
            conn.put_container(CONTAINER)
            conn.put_object(CONTAINER, 'emit', program,
                            content_type='application/x-executable')
            conn.close()
            rows = [measure(cluster, case, opts.mib << 20) for case in cases]
        finally:
            cluster.stop()
    table('Proxy peak RSS (VmHWM) for a job of two nodes writing large outputs',
          ['case', 'outputs', 'job wall', 'idle peak', 'peak after job', 'growth'], rows,
          note='idle peak: after a 1 KiB warm-up job on a fresh proxy; growth: what the '
               "job's outputs cost the proxy")
    return 0


if __name__ == '__main__':
    sys.exit(main())

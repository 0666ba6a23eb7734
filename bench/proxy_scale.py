"""The proxy alone under a wildcard job of N nodes: its peak RSS, object servers faked.

``bench/scale.py`` measures the whole cluster, whose populating (bulk upload)
takes most of its time: 100,000 objects take an hour or more on a shared
2-vCPU host.  The proxy's memory does not depend on the objects, only on the
number of nodes, so this runs the proxy filter (``ProxyExecMiddleware``, the
code of the tree on ``PYTHONPATH``) in a fresh process per N, over a fake
Swift that lists N names page by page (10,000 a page) and fake object
servers that answer each node at once with a 6-byte output and a report
(``Dispatcher.exchange`` replaced: nodes go alone, ``batchable`` is off).
Everything else is the real code: expansion, planning, dispatch, results,
the response.  Printed per N: wall time, the process's peak RSS (``VmHWM``: not
``ru_maxrss``, which a process started by vfork+exec inherits from its parent)
before and after the job, the growth, and bytes of the body.

Usage: ``python bench/proxy_scale.py [--sizes 1000,10000,100000] [--tree DIR]``
(``--tree``: another checkout to compare, e.g. /work/main; its rows follow).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = b'1 2 6\n'


def child(n: int) -> dict:
    """One job of ``n`` nodes in this process; its figures."""
    import time

    from common import proc_kib
    from swift.common.swob import Request, Response

    from zerocloud import placement, wire
    from zerocloud.proxy import middleware
    from zerocloud.proxy.dispatch import Dispatcher
    from zerocloud.proxy.outputs import OutputFile

    class Ring:
        devs = [{'id': i, 'ip': '10.0.0.1', 'port': 6200 + i, 'device': f'd{i}'}
                for i in range(3)]
        partition_count, replica_count = 8, 2

        def get_part(self, account, container, obj):
            return hash(obj) % 8

        def get_part_nodes(self, part):
            return [self.devs[part % 3], self.devs[(part + 1) % 3]]

        def get_more_nodes(self, part):
            yield self.devs[(part + 2) % 3]

    def swift(env, start_response):
        req = Request(env)
        if req.path.count('/') <= 3:                     # account or container
            marker = req.params.get('marker', '')
            first = int(marker[4:]) + 1 if marker else 0
            names = [f'obj-{i:07d}' for i in range(first, min(n, first + 10000))]
            resp = Response(status=200 if req.method == 'GET' else 204, headers={
                'X-Backend-Storage-Policy-Index': '0', 'X-Container-Object-Count': str(n)},
                body=json.dumps([{'name': x} for x in names]).encode()
                if req.method == 'GET' else b'')
        elif req.path.endswith('/bin/wc'):
            resp = Response(body=b'\x7fELF program' if req.method == 'GET' else b'')
        else:
            resp = Response(status=404)
        return resp(env, start_response)

    def exchange(self, server, plan, headers, members, links=None, sent=None):
        for _ in wire.stream_tar(members()):     # the request body is made, as if sent
            pass
        out = OutputFile()
        out.write(OUTPUT)
        return wire.NodeReport('ok', 0, etags={'/dev/stdout': 'e' * 32}, accounting={
            'fuel': 1000, 'syscalls': 9, 'channels': {
                '/dev/stdin': {'read_bytes': 1024}, '/dev/stdout': {'write_bytes': 6}}}), \
            {'stdout': out}

    placement.object_ring = lambda swift_dir, policy: Ring()
    Dispatcher.exchange = exchange
    middleware.batchable = lambda plan: False
    app = middleware.ProxyExecMiddleware(swift, {'zerovm_maxnodes': str(max(n, 100000))})
    job = [{'name': 'wc', 'exec': {'path': 'swift://~/bin/wc'},
            'devices': [{'name': 'stdin', 'path': 'swift://~/data/obj-*'},
                        {'name': 'stdout'}]}]
    req = Request.blank('/v1/AUTH_a', method='POST', body=json.dumps(job).encode(),
                        headers={'X-Zerovm-Execute': '1.0',
                                 'Content-Type': 'application/json'})
    idle = proc_kib(os.getpid(), 'VmHWM')
    start = time.perf_counter()
    resp = req.get_response(app)
    size = 0
    for chunk in resp.app_iter:
        size += len(chunk)
    wall = time.perf_counter() - start
    peak = proc_kib(os.getpid(), 'VmHWM')
    if resp.status_int != 200 or size != n * len(OUTPUT):
        raise SystemExit(f'{n} nodes: {resp.status} {size} bytes')
    return {'n': n, 'wall': wall, 'idle_kib': idle, 'peak_kib': peak, 'bytes': size}


def measure(n: int, tree: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, __file__, '--child', str(n)], env=env,
                         capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', default='1000,10000,100000')
    parser.add_argument('--tree', action='append', default=[],
                        help='another checkout to measure too (its code on PYTHONPATH)')
    parser.add_argument('--child', type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        print(json.dumps(child(opts.child)))
        return 0
    sys.path.insert(0, str(HERE))
    from common import environment, table
    print(environment())
    trees = [HERE.parent, *map(Path, opts.tree)]
    rows = []
    for tree in trees:
        first = None
        for n in map(int, opts.sizes.split(',')):
            r = measure(n, tree)
            grew = (r['peak_kib'] - r['idle_kib']) / 1024
            first = first or r
            rows.append([str(tree), f'{n:,}', f'{r["wall"]:.1f} s',
                         f'{r["wall"] / n * 1e3:.2f}', f'{r["idle_kib"] / 1024:.1f} MiB',
                         f'{r["peak_kib"] / 1024:.1f} MiB', f'+{grew:.1f} MiB',
                         f'{r["peak_kib"] / first["peak_kib"]:.2f}x', f'{r["bytes"]:,}'])
            print(*rows[-1], flush=True)
    table('Proxy alone (object servers faked): a wildcard job of N nodes',
          ['tree', 'nodes', 'wall', 'ms/node', 'RSS idle', 'RSS peak', 'growth',
           'peak / first N', 'body bytes'], rows,
          note='RSS: VmHWM of a fresh process per N, before and after the job')
    return 0


if __name__ == '__main__':
    sys.exit(main())

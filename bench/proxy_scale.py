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
the response.  Printed per N: wall time, the proxy's CPU time per node
(``time.process_time`` of its process during the job), the process's peak RSS
(``VmHWM``: not ``ru_maxrss``, which a process started by vfork+exec inherits
from its parent) before and after the job, the growth, and bytes of the body.

``--batched``: the nodes travel in batches as on a cluster (``zerocloud.proxy.batch``:
HTTP requests, tar streams, ``batch/spec`` and ``batch/entries``), to three fake object
servers in another process (this file with ``--serve``, eventlet's WSGI server)
that read each batch and answer every node at once with its report and 6-byte
output, 16 nodes a write (in a ``batch/reports`` block when the proxy asks for
them, ``X-Zerovm-Reports``, and the server's tree has them): what the proxy does
per node of a wildcard job on a cluster, without the object servers' and workers'
CPU.  ``--profile FILE``: a ``cProfile`` of the job (of the first tree and the
largest N), in CPU time.  Its ring is Swift's, as the local cluster builds it
(``zerocloud.devcluster``).

Usage: ``python bench/proxy_scale.py [--sizes 1000,10000,100000] [--batched]
[--rounds R] [--tree DIR] [--profile FILE]`` (``--tree``: another checkout to
compare, e.g. /work/main; with ``--rounds``, the trees alternate, each round
measuring every tree in turn).
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


def report_json(n_read: int) -> bytes:
    """A word-count node's report as an object server sends it."""
    return json.dumps({
        'status': 'ok', 'retcode': 0, 'message': '', 'exit_state': '', 'engine': 'native',
        'engine_reason': '', 'stderr': '', 'etags': {'/dev/stdout': 'e' * 32},
        'validation': {'state': 'cached', 'violations': []},
        'accounting': {'fuel': 11234, 'syscalls': 9, 'unknown_syscalls': {},
                       'peak_memory': 65536, 'wall_time': 0.0012, 'start': 'entry',
                       'channels': {'/dev/stdin': {'reads': 2, 'read_bytes': n_read,
                                                   'writes': 0, 'write_bytes': 0},
                                    '/dev/stdout': {'reads': 0, 'read_bytes': 0,
                                                    'writes': 1, 'write_bytes': 6}}}},
        sort_keys=True).encode()


def serve(ports: int) -> None:
    """Fake object servers on ``ports`` ports of 127.0.0.1 (printed, one line): each
    answers a batch (or a node alone) at once, every node ``ok`` with OUTPUT."""
    import eventlet
    import eventlet.wsgi

    from zerocloud import wire

    report = report_json(1024)
    names = values = None
    if hasattr(wire, 'ReportsBlock'):       # a tree with batch/reports: the report's values
        from zvm_core.report import ACCOUNTING_FIELDS, CHANNEL_FIELDS, REPORT_FIELDS
        names = {'report': (*REPORT_FIELDS, 'stderr'), 'accounting': ACCOUNTING_FIELDS,
                 'channel': CHANNEL_FIELDS}
        keyed = json.loads(report)
        acc = keyed['accounting']
        acc['channels'] = [[k, *(c[n] for n in CHANNEL_FIELDS)]
                           for k, c in acc['channels'].items()]
        keyed['accounting'] = [acc[n] for n in ACCOUNTING_FIELDS]
        keyed['validation'] = [keyed['validation']['state'], keyed['validation']['violations']]
        values = [keyed.get(n, False) for n in names['report']]

    def app(env, start_response):
        for _member in wire.read_members(env['wsgi.input'], None):
            pass                # entries: batch/<i> members or batch/entries (either proxy)
        count = int(env.get('HTTP_X_ZEROVM_BATCH', 0))
        env['eventlet.minimum_write_chunk_size'] = 0
        if 'HTTP_X_ZEROVM_BATCH' not in env:
            start_response('200 OK', [(wire.EXECUTE, wire.VERSION),
                                      ('Content-Type', 'application/x-tar')])
            return [wire.tar_member(wire.REPORT, report)
                    + wire.tar_member(wire.DEV_PREFIX + 'stdout', OUTPUT) + wire.TAR_END]

        def blocks():
            block = wire.ReportsBlock(names)
            for first in range(0, count, 16):
                for i in range(first, min(count, first + 16)):
                    block.add(i, list(values), [('stdout', OUTPUT)])
                yield block.member()
            yield wire.TAR_END

        def body():
            for first in range(0, count, 16):
                yield b''.join(wire.tar_member(wire.batch_member(i, wire.REPORT), report)
                               + wire.tar_member(wire.batch_member(i, 'dev/stdout'), OUTPUT)
                               for i in range(first, min(count, first + 16)))
            yield wire.TAR_END
        if names is not None and env.get('HTTP_X_ZEROVM_REPORTS') == '1':
            start_response('200 OK', [(wire.EXECUTE, wire.VERSION), (wire.BATCH, str(count)),
                                      (wire.READS_REPORTS, '1'),
                                      ('Content-Type', 'application/x-tar')])
            return blocks()
        start_response('200 OK', [(wire.EXECUTE, wire.VERSION), (wire.BATCH, str(count)),
                                  ('Content-Type', 'application/x-tar')])
        return body()

    socks = [eventlet.listen(('127.0.0.1', 0)) for _ in range(ports)]
    print(' '.join(str(s.getsockname()[1]) for s in socks), flush=True)
    pool = eventlet.GreenPool()
    for sock in socks:
        pool.spawn(eventlet.wsgi.server, sock, app, log=open(os.devnull, 'w'),
                   minimum_chunk_size=0)
    pool.waitall()


def real_ring(ports: list[int]):
    """Swift's ring of the local cluster (``zerocloud.devcluster``: 2 replicas, 64
    partitions) over the fake object servers."""
    import tempfile

    from swift.common import utils
    from swift.common.ring import Ring

    from zerocloud.devcluster import build_ring

    utils.HASH_PATH_SUFFIX = b'bench'           # as swift.conf would say

    path = Path(tempfile.mkdtemp(prefix='zerocloud-bench-ring-')) / 'object'
    build_ring(path, [{'id': i, 'region': 1, 'zone': i + 1, 'weight': 1.0, 'ip': '127.0.0.1',
                       'port': port, 'device': f'd{i}'} for i, port in enumerate(ports)], 2)
    return Ring(str(path.parent), ring_name='object')


class GcWatch:
    """The garbage collector's passes during a job (``gc.callbacks``): per generation,
    how many and their longest and total time; and the longest the hub went without
    running a green thread that asks for a turn every millisecond (the longest stretch
    another request of the process waits)."""

    def __init__(self) -> None:
        import gc
        import time
        self.passes = {0: [], 1: [], 2: []}
        self._began = 0.0
        self.longest_gap = 0.0
        self._clock = time.perf_counter
        self._gc = gc
        self._on = True

    def _pass(self, phase: str, info: dict) -> None:
        if phase == 'start':
            self._began = self._clock()
        else:
            self.passes[info['generation']].append(self._clock() - self._began)

    def _ticker(self) -> None:
        from swift.common.concurrency import sleep
        last = self._clock()
        while self._on:
            sleep(0.001)
            now = self._clock()
            self.longest_gap = max(self.longest_gap, now - last)
            last = now

    def __enter__(self) -> GcWatch:
        from swift.common.concurrency import spawn
        self._gc.callbacks.append(self._pass)
        self._thread = spawn(self._ticker)
        return self

    def __exit__(self, *exc) -> None:
        self._gc.callbacks.remove(self._pass)
        self._on = False
        self._thread.wait()

    def figures(self) -> dict:
        return {'longest_gap_ms': self.longest_gap * 1e3, **{
            f'gen{g}': [len(t), sum(t) * 1e3, max(t, default=0) * 1e3]
            for g, t in self.passes.items()}}


def child(n: int, ports: list[int] | None = None, profile: str | None = None,
          watch_gc: bool = False) -> dict:
    """One job of ``n`` nodes in this process; its figures.  ``ports``: fake object
    servers' (``serve``) that the nodes go to in batches; ``watch_gc``: with the GC's
    passes and the longest gap between the hub's turns (:class:`GcWatch`)."""
    import contextlib
    import cProfile
    import time

    from common import proc_kib
    from swift.common.swob import Request, Response

    from zerocloud import placement, wire
    from zerocloud.proxy import middleware
    from zerocloud.proxy.dispatch import Dispatcher
    from zerocloud.proxy.outputs import OutputFile

    class Ring:
        devs = [{'id': i, 'ip': '127.0.0.1' if ports else '10.0.0.1',
                 'port': ports[i] if ports else 6200 + i, 'device': f'd{i}'}
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

    ring = Ring() if not ports else real_ring(ports)
    placement.object_ring = lambda swift_dir, policy: ring
    if not ports:
        Dispatcher.exchange = exchange
        middleware.batchable = lambda plan: False
    app = middleware.filter_factory({}, zerovm_maxnodes=str(max(n, 100000)))(swift)
    job = [{'name': 'wc', 'exec': {'path': 'swift://~/bin/wc'},
            'devices': [{'name': 'stdin', 'path': 'swift://~/data/obj-*'},
                        {'name': 'stdout'}]}]
    req = Request.blank('/v1/AUTH_a', method='POST', body=json.dumps(job).encode(),
                        headers={'X-Zerovm-Execute': '1.0',
                                 'Content-Type': 'application/json'})
    idle = proc_kib(os.getpid(), 'VmHWM')
    profiler = cProfile.Profile(time.process_time) if profile else None
    start, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    with GcWatch() if watch_gc else contextlib.nullcontext() as gc_watch:
        resp = req.get_response(app)
        size = 0
        for chunk in resp.app_iter:
            size += len(chunk)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = proc_kib(os.getpid(), 'VmHWM')
    if resp.status_int != 200 or size != n * len(OUTPUT):
        raise SystemExit(f'{n} nodes: {resp.status} {size} bytes')
    return {'n': n, 'wall': wall, 'cpu': cpu, 'idle_kib': idle, 'peak_kib': peak,
            'bytes': size, **(gc_watch.figures() if gc_watch else {})}


def measure(n: int, tree: Path, ports: list[int] | None = None,
            profile: str | None = None, watch_gc: bool = False) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    extra = ['--ports', ','.join(map(str, ports))] if ports else []
    extra += ['--profile', profile] if profile else []
    extra += ['--gc'] if watch_gc else []
    out = subprocess.run([sys.executable, __file__, '--child', str(n), *extra], env=env,
                         capture_output=True, text=True, cwd=tree)
    if out.returncode:
        raise SystemExit(f'{tree}, {n} nodes: {out.stderr.strip()[-2000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', default='1000,10000,100000')
    parser.add_argument('--tree', action='append', default=[],
                        help='another checkout to measure too (its code on PYTHONPATH)')
    parser.add_argument('--batched', action='store_true',
                        help='nodes in batches to fake object servers over HTTP')
    parser.add_argument('--rounds', type=int, default=1,
                        help='times every tree is measured, alternating')
    parser.add_argument('--profile', help='cProfile of the first tree, largest N, to FILE')
    parser.add_argument('--gc', action='store_true',
                        help="the GC's passes during the job and the hub's longest gap")
    parser.add_argument('--child', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--ports', help=argparse.SUPPRESS)
    parser.add_argument('--serve', type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.serve:
        serve(opts.serve)
        return 0
    if opts.child:
        ports = [int(p) for p in opts.ports.split(',')] if opts.ports else None
        print(json.dumps(child(opts.child, ports, opts.profile, opts.gc)))
        return 0
    sys.path.insert(0, str(HERE))
    from common import environment, table
    print(environment())
    trees = [HERE.parent, *map(Path, opts.tree)]
    sizes = [int(n) for n in opts.sizes.split(',')]
    server = ports = None
    if opts.batched:
        server = subprocess.Popen([sys.executable, __file__, '--serve', '3'],
                                  stdout=subprocess.PIPE, text=True,
                                  env=dict(os.environ, PYTHONPATH=str(HERE.parent)))
        ports = [int(p) for p in server.stdout.readline().split()]
    rows = []
    try:
        for rnd in range(opts.rounds):
            for tree in trees:
                first = None
                for n in sizes:
                    profile = opts.profile if (rnd == 0 and tree == trees[0]
                                               and n == sizes[-1]) else None
                    r = measure(n, tree, ports, profile, opts.gc)
                    if opts.gc:
                        print(tree, n, json.dumps({k: v for k, v in r.items()
                                                   if k.startswith(('gen', 'longest'))}))
                    grew = (r['peak_kib'] - r['idle_kib']) / 1024
                    first = first or r
                    rows.append([str(tree), f'{n:,}', f'{r["wall"]:.2f} s',
                                 f'{r["wall"] / n * 1e3:.3f}', f'{r["cpu"] / n * 1e3:.3f}',
                                 f'{r["idle_kib"] / 1024:.1f} MiB',
                                 f'{r["peak_kib"] / 1024:.1f} MiB', f'+{grew:.1f} MiB',
                                 f'{r["peak_kib"] / first["peak_kib"]:.2f}x',
                                 f'{r["bytes"]:,}', f'{os.getloadavg()[0]:.1f}'])
                    print(*rows[-1], flush=True)
    finally:
        if server is not None:
            server.kill()
            server.wait()
    table('Proxy alone (object servers faked'
          + (', batches over HTTP' if opts.batched else '') + '): a wildcard job of N nodes',
          ['tree', 'nodes', 'wall', 'ms/node', 'CPU ms/node', 'RSS idle', 'RSS peak',
           'growth', 'peak / first N', 'body bytes', 'load'], rows,
          note='RSS: VmHWM of a fresh process per N, before and after the job; '
               'CPU: the proxy process\'s')
    return 0


if __name__ == '__main__':
    sys.exit(main())

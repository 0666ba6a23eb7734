"""Compute next to the data (issue 6): in-place job vs download-and-compute, job latency.

On a fresh local cluster (``zerocloud.devcluster.DevCluster`` in a temporary
directory: proxy, account, container, three object servers, 2 replicas;
stopped at the end) with N text objects:

- in place: one job (``POST /v1/<account>``, ``X-Zerovm-Execute: 1.0``) runs
  the word-count program on every object where it is stored (wildcard: one
  node per object); only the counts come back in the body;
- download: the client GETs every object through the proxy and runs the
  same static binary natively on each (sequentially, and with 4 threads);
- for both: bytes the client received (body + response headers), wall time
  (median over repetitions), and a check that both give the same counts;
- latency: a trivial one-node job (a program that returns at once, placed on
  a 1 KiB object) and a word count of that object vs a plain GET of it, p50/p99
  over repetitions, client-observed (all with the same swiftclient
  connection), plus the time the proxy itself reports (``X-Nexe-Cdr-Line``).

Jobs run under each engine the host can run (the node's ``"engine"``:
``native``, then ``emulated``), a row each.  The first job of each engine
is reported apart: it starts the object servers' worker pools and templates.
All servers share this host's CPUs, so the in-place compute is not spread
over machines as on a real cluster.

Usage: ``python bench/inplace.py [--quick] [--objects N] [--size BYTES]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import mib, ms, p50, p99, ratio, table  # noqa: E402

common.private_verdict_cache()   # inherited by the cluster's servers and their workers

from swiftclient import Connection  # noqa: E402

from zerocloud.devcluster import DevCluster  # noqa: E402
from zvm_core.engines import native_unavailable  # noqa: E402

CONTAINER = 'bench'


def engines() -> list[str]:
    """The engines jobs run under here: the cluster's servers share this host."""
    return ['emulated'] if native_unavailable() else ['native', 'emulated']


def on(engine: str, job: list[dict]) -> list[dict]:
    """``job`` with every node asking for ``engine``."""
    return [{**node, 'engine': engine} for node in job]


def header_bytes(headers: dict) -> int:
    """Approximate size of a response head: status line + ``Name: value\\r\\n`` lines."""
    return 17 + sum(len(k) + len(str(v)) + 4 for k, v in headers.items()) + 2


def post_job(conn: Connection, job: list[dict]) -> tuple[float, dict, bytes]:
    """(client-observed seconds, response headers, body) of one job."""
    resp: dict = {}
    t, (_, body) = common.timed(conn.post_account, headers={
        'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/json'},
        data=json.dumps(job).encode(), response_dict=resp)
    if resp['status'] != 200:
        sys.exit(f'job failed: {resp["status"]} {resp["reason"]}: {body[:500]!r}\n'
                 f'{ {k: v for k, v in resp["headers"].items() if "nexe" in k} }')
    return t, resp['headers'], body


def proxy_seconds(headers: dict) -> float:
    """The job's total time as the proxy reports it (first X-Nexe-Cdr-Line field)."""
    return float(headers['x-nexe-cdr-line'].split(',')[0])


def node_seconds(headers: dict) -> list[float]:
    """Each node's time as the proxy reports it (X-Nexe-Cdr-Line: total, then per node
    ``time, fuel syscalls bytes-read bytes-written``)."""
    return [float(x) for x in headers['x-nexe-cdr-line'].split(', ')[1::2]]


def native_wc(program: Path, data: bytes) -> bytes:
    proc = subprocess.run([program.name], executable=str(program), input=data,
                          capture_output=True, env={}, check=True)
    return proc.stdout


def download_and_count(conn: Connection, program: Path, names: list[str],
                       threads: int) -> tuple[float, int, list[bytes], float, float]:
    """(wall s, bytes received, outputs in name order, download s, compute s)."""
    got = [0]
    spent = {'download': 0.0, 'compute': 0.0}

    def one(name: str) -> bytes:
        resp: dict = {}
        t0 = time.perf_counter()
        _, data = conn.get_object(CONTAINER, name, response_dict=resp)
        t1 = time.perf_counter()
        out = native_wc(program, data)
        t2 = time.perf_counter()
        got[0] += len(data) + header_bytes(resp['headers'])
        spent['download'] += t1 - t0
        spent['compute'] += t2 - t1
        return out

    start = time.perf_counter()
    if threads == 1:
        outs = [one(n) for n in names]
    else:
        with ThreadPoolExecutor(threads) as ex:
            outs = list(ex.map(one, names))
    return time.perf_counter() - start, got[0], outs, spent['download'], spent['compute']


def in_place_vs_download(conn: Connection, nobj: int, size: int, reps: int) -> None:
    wc = common.build('wc')
    conn.put_object(CONTAINER, 'wc', wc.read_bytes(), content_type='application/x-executable')
    names = [f'data/obj-{i:03d}.txt' for i in range(nobj)]
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        conn.put_object(CONTAINER, name, common.text(size, seed=100 + i),
                        content_type='text/plain')
    upload = time.perf_counter() - t0
    print(f'\nuploaded {nobj} x {mib(size)} in {upload:.1f} s')
    job = [{'name': 'wc', 'exec': {'path': f'swift://~/{CONTAINER}/wc'},
            'devices': [{'name': 'stdin', 'path': f'swift://~/{CONTAINER}/data/*.txt'},
                        {'name': 'stdout'}]}]
    first: dict[str, float] = {}
    jobs: dict[str, list[float]] = {}
    proxy: dict[str, list[float]] = {}
    nodes: dict[str, list[list[float]]] = {}
    jbytes, bodies = 0, {}
    for engine in engines():
        first[engine] = post_job(conn, on(engine, job))[0]
        jobs[engine], proxy[engine], nodes[engine] = [], [], []
        for _ in range(reps):
            t, headers, bodies[engine] = post_job(conn, on(engine, job))
            jobs[engine].append(t)
            proxy[engine].append(proxy_seconds(headers))
            nodes[engine].append(node_seconds(headers))
            jbytes = len(bodies[engine]) + header_bytes(headers)
    rows_dl = {}
    outs: list[bytes] = []
    for threads in (1, 4):
        runs = [download_and_count(conn, wc, names, threads) for _ in range(reps)]
        rows_dl[threads] = runs
        outs = runs[-1][2]
    for engine, body in bodies.items():
        if sorted(body.splitlines()) != sorted(b''.join(outs).splitlines()):
            sys.exit(f'in-place ({engine}) and native counts differ:\n{body[:300]!r}\n'
                     f'{b"".join(outs)[:300]!r}')
    jt = p50(next(iter(jobs.values())))
    rows = []
    for engine, times in jobs.items():
        per_node = [x for n in nodes[engine] for x in n]
        rows.append([f'in place: one job, N nodes, {engine}', f'{jbytes:,}', '1.00x',
                     ms(p50(times)), ratio(p50(times), jt),
                     f'proxy {ms(p50(proxy[engine]))}; per node p50 {ms(p50(per_node))}'
                     f', sum {ms(p50([sum(n) for n in nodes[engine]]))}'])
    for threads, runs in rows_dl.items():
        dbytes = runs[-1][1]
        wall = p50([r[0] for r in runs])
        rows.append([f'download + native wc, {threads} thread{"s" * (threads > 1)}',
                     f'{dbytes:,}', ratio(dbytes, jbytes), ms(wall), ratio(wall, jt),
                     f'GET {ms(p50([r[3] for r in runs]))}, '
                     f'wc {ms(p50([r[4] for r in runs]))}'])
    table(f'In place vs download: word count of {nobj} objects x {mib(size)} '
          f'({reps} reps, medians)',
          ['method', 'bytes to client', 'ratio', 'wall p50', 'ratio', 'where the time went'],
          rows, note='first job of each engine (starts the object servers\' worker pools): '
                     + ', '.join(f'{e} {ms(t)}' for e, t in first.items())
                     + '; node, GET and wc times are summed over objects (they overlap)')


def latency(conn: Connection, reps: int) -> None:
    nop, wc = common.build('nop'), common.build('wc')
    conn.put_object(CONTAINER, 'nop', nop.read_bytes(), content_type='application/x-executable')
    conn.put_object(CONTAINER, 'wc', wc.read_bytes(), content_type='application/x-executable')
    conn.put_object(CONTAINER, 'small.txt', common.text(1024, seed=7), content_type='text/plain')

    def job(program: str, stdout: bool) -> list[dict]:
        devices = [{'name': 'stdin', 'path': f'swift://~/{CONTAINER}/small.txt'}]
        if stdout:
            devices.append({'name': 'stdout'})
        return [{'name': program, 'exec': {'path': f'swift://~/{CONTAINER}/{program}'},
                 'devices': devices}]

    jobs = {}
    for engine in engines():
        jobs[f'trivial job (nop on the object), {engine}'] = on(engine, job('nop', False))
        jobs[f'word count job of the object, {engine}'] = on(engine, job('wc', True))
    for j in jobs.values():                                 # templates, pools, caches
        for _ in range(3):
            post_job(conn, j)
    for _ in range(3):
        conn.get_object(CONTAINER, 'small.txt')
    times: dict[str, list[float]] = {'plain GET of the object': []}
    proxy: dict[str, list[float]] = {}
    node: dict[str, list[float]] = {}
    for name in jobs:
        times[name], proxy[name], node[name] = [], [], []
    for _ in range(reps):                                  # interleaved
        t, _ = common.timed(conn.get_object, CONTAINER, 'small.txt')
        times['plain GET of the object'].append(t)
        for name, j in jobs.items():
            t, headers, _ = post_job(conn, j)
            times[name].append(t)
            proxy[name].append(proxy_seconds(headers))
            node[name].append(node_seconds(headers)[0])
    base = p50(times['plain GET of the object'])
    rows = []
    for name, ts in times.items():
        rows.append([name, ms(p50(ts)), ms(p99(ts)), ms(p50(ts) - base), ratio(p50(ts), base),
                     ms(p50(proxy[name])) if name in proxy else '',
                     ms(p50(node[name])) if name in node else ''])
    table(f'Latency: one-node job vs plain GET of the same 1 KiB object ({reps} reps, '
          'interleaved)', ['request', 'p50', 'p99', 'added vs GET (p50)', 'ratio',
                           'proxy-reported p50', 'node p50'], rows,
          note='proxy-reported: the job as the proxy timed it; node: sending the node to '
               'the object server until its answer')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='5 x 1 MiB, few repetitions')
    parser.add_argument('--objects', type=int, help='number of objects (default 20)')
    parser.add_argument('--size', type=int, help='bytes per object (default 5 MiB)')
    opts = parser.parse_args(argv)
    q = opts.quick
    nobj = opts.objects or (5 if q else 20)
    size = opts.size or ((1 if q else 5) << 20)
    print(common.environment())
    with tempfile.TemporaryDirectory(prefix='zvm-bench-cluster-') as d:
        cluster = DevCluster(Path(d) / 'cluster', detach=False)
        t, _ = common.timed(cluster.start)
        print(f'local cluster started in {t:.1f} s ({cluster.object_servers} object servers, '
              f'{cluster.replicas} replicas)')
        try:
            conn = common.connect(cluster)
            conn.put_container(CONTAINER)
            in_place_vs_download(conn, nobj, size, reps=2 if q else 3)
            latency(conn, reps=10 if q else 50)
            conn.close()
        finally:
            cluster.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())

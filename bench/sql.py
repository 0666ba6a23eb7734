"""SQL over a collection of CSV objects (issue 19): in place on each engine vs
download + DuckDB vs download + sqlite3, side by side.

On a fresh local cluster (``zerocloud.devcluster.DevCluster`` in a temporary
directory, with the ``sqlite`` system image; stopped at the end) holding N
CSV objects of about S bytes each, one group-by query is answered four ways:

- in place, native engine, and in place, emulated engine: ``POST
  /v1/<account>`` with ``X-Zerovm-Execute: sql/1.0`` and ``"engine"`` in the
  query: one node per object computes partial aggregates next to it, one
  node merges them; only the answer comes back;
- download + DuckDB: the client GETs every object through the proxy (4
  threads) and runs the query with DuckDB over the files (the ``duckdb``
  package from PyPI: skipped, saying so, when it is not installed);
- download + sqlite3: the same downloads, loaded into the host's sqlite3
  module (NUMERIC columns, as the in-place nodes do) and queried.

For each: wall time (median over repetitions, client-observed) and bytes the
client received (bodies + approximate response heads); the answers are
checked to be the same.  The first in-place query on each engine is reported
apart (it starts the object servers' warm workers).

Then where the native in-place time goes: planning (the same request with
``"explain": true``: listing, reading the first object's header, checking
the query), the nodes' job (run again as a plain job with ``X-Zerovm-Report:
json``: per node the time the proxy saw, queueing for a worker included, and
the time the guest ran), the merge, and the CPU time of the node program
run on this host over one downloaded object (no sandbox, no server): reading
it only (the query ``SELECT 1``: parsing every record), and reading it with
the query.  The cluster's ``zerovm_timeout`` is raised (``--timeout``,
default 1200 s): on the emulated engine, 100 nodes of 1 MiB queue longer than
the default 60 s for the few workers of one machine.  All servers share this
host's CPUs: the in-place nodes are not spread over machines as on a real
cluster.

Usage: ``python bench/sql.py [--quick] [--objects N] [--size BYTES] [--reps R]
[--engines native,emulated]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import mib, p50, ratio, table  # noqa: E402

common.private_verdict_cache()   # inherited by the cluster's servers and their workers

import requests  # noqa: E402
from swiftclient import Connection  # noqa: E402

from zerocloud.devcluster import DevCluster  # noqa: E402

try:
    import duckdb
except ImportError:                         # optional: pip install duckdb
    duckdb = None

CONTAINER = 'bench-sql'
COLUMNS = ['day', 'region', 'product', 'qty', 'price']
REGIONS = ['east', 'west', 'north', 'south', 'central', 'islands']
QUERY = ('SELECT region, count(*) AS n, sum(qty) AS qty, avg(price) AS avg_price, '
         'min(price) AS lo, max(price) AS hi FROM {source} WHERE qty > 10 '
         'GROUP BY region ORDER BY region')


def header_bytes(headers) -> int:
    """Approximate size of a response head: status line + ``Name: value\\r\\n`` lines."""
    return 17 + sum(len(k) + len(str(v)) + 4 for k, v in headers.items()) + 2


def make_object(seed: int, size: int) -> bytes:
    """About ``size`` bytes of sales CSV with a header row."""
    rng = random.Random(seed)
    out = io.StringIO()
    out.write(','.join(COLUMNS) + '\n')
    while out.tell() < size:
        out.write(f'2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},'
                  f'{rng.choice(REGIONS)},p{rng.randint(1, 500)},{rng.randint(0, 50)},'
                  f'{rng.random() * 1000:.2f}\n')
    return out.getvalue().encode()


def upload(conn: Connection, nobj: int, size: int) -> list[str]:
    names = [f'sales-{i:04d}.csv' for i in range(nobj)]

    def put(i: int) -> None:
        c = Connection(authurl=conn.authurl, user=conn.user, key=conn.key, retries=0)
        c.put_object(CONTAINER, names[i], make_object(i, size), content_type='text/csv')
        c.close()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(put, range(nobj)))
    return names


def post(conn: Connection, body: dict, execute: str = 'sql/1.0', **headers: str
         ) -> requests.Response:
    url, token = conn.get_auth()
    return requests.post(url, data=json.dumps(body), timeout=3600, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': execute, **headers})


def in_place(conn: Connection, engine: str) -> tuple[float, int, list[list[str]], dict]:
    body = {'query': QUERY.format(source=f'swift://~/{CONTAINER}/*.csv'), 'engine': engine}
    t = time.perf_counter()
    resp = post(conn, body)
    seconds = time.perf_counter() - t
    if resp.status_code != 200:
        sys.exit(f'in-place query ({engine}) failed: {resp.status_code} {resp.text[:500]}')
    fuel = [int(acc.split()[0]) for acc in resp.headers['X-Nexe-Cdr-Line'].split(', ')[2::2]]
    if (engine == 'native') != (sum(fuel) == 0):      # the native engine counts no fuel
        sys.exit(f'in-place query: asked for the {engine} engine, the nodes ran another')
    rows = list(csv.reader(io.StringIO(resp.content.decode(), newline='')))[1:]
    return seconds, len(resp.content) + header_bytes(resp.headers), rows, dict(resp.headers)


def download(conn: Connection, names: list[str], directory: Path) -> int:
    """GET every object into ``directory`` (4 threads); bytes received."""
    url, token = conn.get_auth()

    def get(name: str) -> int:
        resp = requests.get(f'{url}/{CONTAINER}/{name}', headers={'X-Auth-Token': token},
                            timeout=600)
        resp.raise_for_status()
        (directory / name).write_bytes(resp.content)
        return len(resp.content) + header_bytes(resp.headers)
    with ThreadPoolExecutor(4) as pool:
        return sum(pool.map(get, names))


def with_duckdb(conn: Connection, names: list[str]) -> tuple[float, int, list[tuple]]:
    with tempfile.TemporaryDirectory(prefix='zvm-bench-sql-') as d:
        t = time.perf_counter()
        received = download(conn, names, Path(d))
        files = ', '.join(f"'{Path(d) / n}'" for n in names)
        db = duckdb.connect()
        rows = db.execute(QUERY.format(source=f'read_csv([{files}], header = true)')
                          ).fetchall()
        db.close()
        return time.perf_counter() - t, received, rows


def with_sqlite(conn: Connection, names: list[str]) -> tuple[float, int, list[tuple]]:
    with tempfile.TemporaryDirectory(prefix='zvm-bench-sql-') as d:
        t = time.perf_counter()
        received = download(conn, names, Path(d))
        db = sqlite3.connect(':memory:')
        db.execute('CREATE TABLE t(' + ', '.join(f'{c} NUMERIC' for c in COLUMNS) + ')')
        for name in names:
            with open(Path(d) / name, newline='') as f:
                reader = csv.reader(f)
                next(reader)
                db.executemany('INSERT INTO t VALUES (?,?,?,?,?)', reader)
        rows = db.execute(QUERY.format(source='t')).fetchall()
        db.close()
        return time.perf_counter() - t, received, rows


def breakdown(conn: Connection, names: list[str], program: Path, workers: int
              ) -> list[list[str]]:
    """Where the native in-place time goes (rows of a table)."""
    body = {'query': QUERY.format(source=f'swift://~/{CONTAINER}/*.csv'), 'engine': 'native'}
    t0 = time.perf_counter()
    plan = post(conn, {**body, 'explain': True}).json()
    planning = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = post(conn, plan['jobs'][0], '1.0', **{'X-Zerovm-Report': 'json'}).json()
    job = time.perf_counter() - t0
    nodes = report['nodes']
    if any(n['status'] != 'ok' or n['engine'] != 'native' for n in nodes):
        sys.exit(f'the nodes\' job failed: {json.dumps(nodes[:3])[:800]}')
    seen = [n['seconds'] for n in nodes]
    ran = [n['accounting']['wall_time'] for n in nodes]
    merged = in_place(conn, 'native')[3]['X-Nexe-Cdr-Line'].split(', ')[-2]
    args = plan['jobs'][0][0]['exec']['args']
    with tempfile.TemporaryDirectory(prefix='zvm-bench-sql-') as d:
        download(conn, names[:1], Path(d))
        local = [str(Path(d) / names[0]) if a == '/dev/input' else a for a in args]
        only_read = list(local)
        only_read[local.index('--query') + 1] = 'SELECT 1'
        host = {name: p50([cpu_time([str(program), *argv]) for _ in range(3)])
                for name, argv in (('read', only_read), ('read + query', local))}
    n = len(nodes)
    return [
        ['planning (explain: list, read a header, check)', f'{planning:.2f} s', ''],
        [f'the nodes\' job ({n} nodes, {workers} workers)', f'{job:.2f} s',
         f'sum of guest run times / workers: {sum(ran) / workers:.2f} s'],
        ['  a node as the proxy saw it (queueing included)', f'{p50(seen):.3f} s',
         f'max {max(seen):.3f} s'],
        ['  a node\'s guest run (start, load, query)', f'{p50(ran):.3f} s',
         f'max {max(ran):.3f} s, sum {sum(ran):.2f} s'],
        ['the merge node (as the proxy saw it)', f'{float(merged):.3f} s', ''],
        ['the node program on this host, one object, CPU: read', f'{host["read"]:.3f} s', ''],
        ['  read + query', f'{host["read + query"]:.3f} s',
         f'x {n} objects: {host["read + query"] * n:.2f} s of CPU'],
    ]


def cpu_time(argv: list[str]) -> float:
    """User + system CPU seconds of one run of ``argv`` (a loaded host inflates wall time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, capture_output=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def same(a: list[list[str]], b: list[tuple]) -> bool:
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        for x, y in zip(ra, rb, strict=True):
            if isinstance(y, str) and isinstance(x, str) and x != y:
                try:
                    x, y = float(x), float(y)
                except ValueError:
                    return False
            if isinstance(y, float):
                if not math.isclose(float(x), y, rel_tol=1e-9):
                    return False
            elif x != str(y):
                return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='20 objects, 2 repetitions')
    parser.add_argument('--objects', type=int, help='number of objects (default 100)')
    parser.add_argument('--size', type=int, help='bytes per object (default 1 MiB)')
    parser.add_argument('--reps', type=int, help='repetitions (default 3)')
    parser.add_argument('--engines', default='native,emulated',
                        help='in-place engines, comma-separated (default native,emulated)')
    parser.add_argument('--timeout', type=int, default=1200,
                        help='zerovm_timeout of the cluster, seconds (default 1200)')
    opts = parser.parse_args(argv)
    nobj = opts.objects or (20 if opts.quick else 100)
    size = opts.size or (1 << 20)
    reps = opts.reps or (2 if opts.quick else 3)
    engines = [e for e in opts.engines.split(',') if e]
    if not engines or set(engines) - {'native', 'emulated'}:
        parser.error('--engines: native and/or emulated')
    print(common.environment())
    if duckdb is None:
        print('duckdb is not installed (pip install duckdb): its column is skipped')
    with tempfile.TemporaryDirectory(prefix='zvm-bench-cluster-') as d:
        limits = f'[filter:zerocloud]\nzerovm_timeout = {opts.timeout}\n'
        cluster = DevCluster(Path(d) / 'cluster', detach=False,
                             extra_conf={'proxy': limits, 'object': limits})
        if 'sqlite' not in cluster.sysimages:
            sys.exit('the sqlite system image is not built: zvm-sysimages build')
        from zvm_core.sysimages import SystemImages
        program = SystemImages(cluster.sysimages).program('sqlite', 'sqlite')
        t, _ = common.timed(cluster.start)
        workers = cluster.object_servers * (os.cpu_count() or 1)     # zerovm_maxpool
        print(f'local cluster started in {t:.1f} s ({cluster.object_servers} object servers, '
              f'{cluster.replicas} replicas, {workers} workers)')
        try:
            conn = common.connect(cluster)
            conn.put_container(CONTAINER)
            t, names = common.timed(upload, conn, nobj, size)
            total = sum(int(o['bytes']) for o in conn.get_container(CONTAINER)[1])
            print(f'{nobj} objects, {mib(total)} in all, uploaded in {t:.1f} s')
            for engine in engines:
                first = in_place(conn, engine)
                print(f'first in-place query, {engine} engine (starts the warm workers): '
                      f'{first[0]:.2f} s; plan {first[3].get("X-Sql-Plan")}: '
                      f'{first[3].get("X-Sql-Plan-Reason")}')
            methods = [(f'in place, {e} engine', lambda e=e: in_place(conn, e)) for e in engines]
            if duckdb is not None:
                methods.append(('download + DuckDB', lambda: with_duckdb(conn, names)))
            methods.append(('download + sqlite3', lambda: with_sqlite(conn, names)))
            results: dict[str, tuple[list[float], int, object]] = {}
            for _ in range(reps):
                for name, fn in methods:
                    out = fn()
                    times, _, _ = results.setdefault(name, ([], out[1], out[2]))
                    times.append(out[0])
            where = breakdown(conn, names, program, workers) if 'native' in engines else None
            conn.close()
        finally:
            cluster.stop()
    first_name = methods[0][0]
    answer, base, base_bytes = results[first_name][2], p50(results[first_name][0]), \
        results[first_name][1]
    rows = []
    for name, (times, received, got) in results.items():
        agrees = 'yes' if same(answer, got) else 'NO'
        rows.append([name, f'{p50(times):.2f} s', ratio(p50(times), base), f'{received:,}',
                     ratio(received, base_bytes), agrees])
    table(f'group-by over {nobj} CSV objects of {mib(size)} ({reps} repetitions)',
          ['method', 'wall p50', f'vs {first_name}', 'bytes to client', 'vs in place',
           'same answer'], rows,
          note=f'query: {QUERY.format(source="...")}')
    if where:
        table('where the native in-place time goes', ['part', 'seconds', ''], where)
    return 0


if __name__ == '__main__':
    sys.exit(main())

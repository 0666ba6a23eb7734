"""SQL over a collection of CSV objects (issue 19): in place vs download + DuckDB vs
download + sqlite3, side by side.

On a fresh local cluster (``zerocloud.devcluster.DevCluster`` in a temporary
directory, with the ``sqlite`` system image; stopped at the end) holding N
CSV objects of about S bytes each, one group-by query is answered three ways:

- in place: ``POST /v1/<account>`` with ``X-Zerovm-Execute: sql/1.0``: one
  node per object computes partial aggregates next to it, one node merges
  them; only the answer comes back;
- download + DuckDB: the client GETs every object through the proxy (4
  threads) and runs the query with DuckDB over the files (the ``duckdb``
  package from PyPI: skipped, saying so, when it is not installed);
- download + sqlite3: the same downloads, loaded into the host's sqlite3
  module (NUMERIC columns, as the in-place nodes do) and queried;
- and, for scale, the in-place plan's node program run natively on this
  host over the downloaded files, one object after the other, then the
  merge (the ``explain`` of the query gives their command lines): what the
  nodes compute without the emulator, an estimate of the native engine's
  compute (not a path a client takes; its download is not counted).

For each: wall time (median over repetitions, client-observed) and bytes the
client received (bodies + approximate response heads); the answers are
checked to be the same.  The first in-place query is reported apart (it
starts the object servers' warm workers).  The cluster's ``zerovm_timeout``
is raised (``--timeout``, default 1200 s): on the emulated engine, 100 nodes
of 1 MiB queue longer than the default 60 s for the few workers of one
machine.  All servers share this host's
CPUs: the in-place nodes are not spread over machines as on a real cluster.

Usage: ``python bench/sql.py [--quick] [--objects N] [--size BYTES] [--reps R]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import random
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


def in_place(conn: Connection) -> tuple[float, int, list[list[str]], dict]:
    url, token = conn.get_auth()
    body = json.dumps({'query': QUERY.format(source=f'swift://~/{CONTAINER}/*.csv')})
    t = time.perf_counter()
    resp = requests.post(url, data=body, timeout=600, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': 'sql/1.0'})
    seconds = time.perf_counter() - t
    if resp.status_code != 200:
        sys.exit(f'in-place query failed: {resp.status_code} {resp.text[:500]}')
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


def natively(conn: Connection, names: list[str], program: Path
             ) -> tuple[float, int, list[list[str]]]:
    """The plan's node and merge programs run on the host, over downloaded files."""
    url, token = conn.get_auth()
    body = json.dumps({'query': QUERY.format(source=f'swift://~/{CONTAINER}/*.csv'),
                       'explain': True})
    plan = requests.post(url, data=body, timeout=600, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': 'sql/1.0'}).json()
    nodes, merge = (job[0]['exec']['args'] for job in plan['jobs'])
    with tempfile.TemporaryDirectory(prefix='zvm-bench-sql-') as d:
        download(conn, names, Path(d))
        t = time.perf_counter()
        partials = b''.join(
            subprocess.run([str(program), *[str(Path(d) / n) if a == '/dev/input' else a
                                            for a in nodes]],
                           capture_output=True, check=True).stdout for n in names)
        answer = subprocess.run([str(program), *['/dev/stdin' if a == '/dev/stdin' else a
                                                 for a in merge]],
                                input=partials, capture_output=True, check=True).stdout
        seconds = time.perf_counter() - t
    return seconds, 0, list(csv.reader(io.StringIO(answer.decode(), newline='')))[1:]


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
    parser.add_argument('--timeout', type=int, default=1200,
                        help='zerovm_timeout of the cluster, seconds (default 1200)')
    opts = parser.parse_args(argv)
    nobj = opts.objects or (20 if opts.quick else 100)
    size = opts.size or (1 << 20)
    reps = opts.reps or (2 if opts.quick else 3)
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
        print(f'local cluster started in {t:.1f} s ({cluster.object_servers} object servers, '
              f'{cluster.replicas} replicas)')
        try:
            conn = Connection(authurl=cluster.auth_url, user=cluster.user, key=cluster.key,
                              retries=0)
            conn.put_container(CONTAINER)
            t, names = common.timed(upload, conn, nobj, size)
            total = sum(int(o['bytes']) for o in conn.get_container(CONTAINER)[1])
            print(f'{nobj} objects, {mib(total)} in all, uploaded in {t:.1f} s')
            first = in_place(conn)
            print(f'first in-place query (starts the warm workers): {first[0]:.2f} s; '
                  f'plan {first[3].get("X-Sql-Plan")}: {first[3].get("X-Sql-Plan-Reason")}')
            results: dict[str, tuple[list[float], int, object]] = {}
            for _ in range(reps):
                for name, fn in (('in place (sql/1.0)', in_place),
                                 ('download + DuckDB', with_duckdb),
                                 ('download + sqlite3', with_sqlite),
                                 ('node program natively (estimate)', natively)):
                    if fn is with_duckdb and duckdb is None:
                        continue
                    if fn is in_place:
                        out = fn(conn)
                    elif fn is natively:
                        out = fn(conn, names, program)
                    else:
                        out = fn(conn, names)
                    times, _, _ = results.setdefault(name, ([], out[1], out[2]))
                    times.append(out[0])
            conn.close()
        finally:
            cluster.stop()
    answer = results['in place (sql/1.0)'][2]
    base = p50(results['in place (sql/1.0)'][0])
    base_bytes = results['in place (sql/1.0)'][1]
    rows = []
    for name, (times, received, got) in results.items():
        agrees = 'yes' if name.startswith('in place') or same(answer, got) else 'NO'
        rows.append([name, f'{p50(times):.2f} s', ratio(p50(times), base),
                     f'{received:,}' if received else '-',
                     ratio(received, base_bytes) if received else '-', agrees])
    table(f'group-by over {nobj} CSV objects of {mib(size)} ({reps} repetitions)',
          ['method', 'wall p50', 'vs in place', 'bytes to client', 'vs in place',
           'same answer'], rows,
          note=f'query: {QUERY.format(source="...")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

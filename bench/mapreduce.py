"""Map/reduce word count over a container (issue 7): wall time, bytes through the proxy,
per-node overhead.

On a fresh local cluster (``zerocloud.devcluster.DevCluster`` in a temporary
directory: proxy, account, container, three object servers, 2 replicas;
stopped at the end) with N text objects, the job of ``examples/mapreduce``
(``--python``: of ``examples/python-wordcount``, on the ``python3`` system
image) runs: one mapper per object, next to it, sending its counts to R
reducers (``connect``), which write the totals as objects.  It is checked
against ``collections.Counter`` over the same data.

A reducer reads from at most 249 mappers (``doc/job-reference.md``,
"Reading from many nodes"), so with ``--parts P`` the objects are stored in
P parts (``books/0/``, ``books/1/``, ...) and the job is written as a user
reduces in stages: one mapper group per part (``map0`` over
``books/0/*.txt``, ...), each connected to its own R reducers (``reduce0``,
...); the bench adds up every reducer's totals.  The default is the fewest
parts that keep each reducer within the limit.

Reported (medians over the repetitions; the first job, which starts the
object servers' worker pools, is reported apart):

- wall time seen by the client, and the proxy's own total;
- bytes crossing the proxy, by direction: client <-> proxy (job, response),
  proxy -> object servers (execute requests: programs, once per object
  server and then by digest, and the mappers' data for the reducers; also
  for the first job, which sends the programs), object servers -> proxy (the mappers' counts, the
  reducers' results), proxy -> Swift (results stored); the objects
  themselves never cross it;
- per-node overhead: the time the proxy spent on a node minus the time its
  program ran in the sandbox (report ``wall_time``), by stage; and the same
  job over N objects of 1 KiB, whose wall time is nearly all fixed cost;
- for scale: downloading every object through the proxy and counting in
  the client (Python ``Counter``, 4 threads).

The job runs under each engine the host can run (every node's
``"engine"``: ``native``, then ``emulated``); wall times and per-node
overheads have a column each, bytes are the same under both (shown once).
All servers share this host's CPUs: the mappers do not spread over
machines as on a real cluster.

The graph runs as a pipeline (the reducers start once the mappers run and
read their counts as they are written); ``--staged`` runs it on a proxy with
``zerovm_pipeline = false`` (the reducers start once the mappers have
finished), for comparison.

``--job-only`` times the job alone (no download, no job over 1 KiB objects,
no overhead table), for comparing trees back to back.

Usage: ``python bench/mapreduce.py [--objects N] [--size BYTES] [--reducers R]
[--parts P] [--python] [--engine E] [--reps K] [--staged] [--job-only]``.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import math
import re
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import mib, ms, p50, ratio, table  # noqa: E402

common.private_verdict_cache()   # inherited by the cluster's servers and their workers

from swiftclient import ClientException, Connection  # noqa: E402

from zerocloud.devcluster import DevCluster  # noqa: E402
from zvm_core.engines import native_unavailable  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / 'examples'
EXAMPLE = EXAMPLES / 'mapreduce'
PYTHON = EXAMPLES / 'python-wordcount'
CONTAINER = 'books'
MAX_READS = 249          # mappers one reducer reads from (doc/job-reference.md)


def post_job(conn: Connection, job: list[dict]) -> tuple[float, dict, dict, int]:
    """(client seconds, response headers, JSON report, bytes of the response body);
    a failed job exits with its status and its failed nodes' errors."""
    resp: dict = {}
    try:
        t, (_, body) = common.timed(conn.post_account, headers={
            'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/json',
            'X-Zerovm-Report': 'json'}, data=json.dumps(job).encode(), response_dict=resp)
    except ClientException as e:        # swiftclient raises on a status >= 300
        resp, body = {'status': e.http_status}, e.http_response_content
    report = json.loads(body)
    if resp['status'] != 200:
        failed = [f'{n["name"]}: {n["status"]}: {n["error"] or n["message"]}'
                  for n in report['nodes'] if n['status'] != 'ok']
        sys.exit(f'job failed: {resp["status"]} ({len(failed)} nodes)\n' + '\n'.join(failed[:10]))
    return t, resp['headers'], report, len(body)


def part_of(i: int, nobj: int, parts: int) -> int:
    """The part object ``i`` of ``nobj`` is stored in (consecutive runs, as even as they go)."""
    return i * parts // nobj


def job(reducers: int, parts: int, engine: str, python: bool, prefix: str = 'books'
        ) -> list[dict]:
    """The map/reduce as a user writes it: per part (one part: the example's two
    groups) a mapper group over that part's objects, connected to its reducers."""
    def program(name: str) -> dict:
        if python:
            return {'exec': {'path': 'file://python3:python3', 'args': f'/{name}.py'},
                    'devices': [{'name': 'python3'},
                                {'name': 'image', 'path': f'swift://~/{CONTAINER}/wordcount.tar'}]}
        return {'exec': {'path': f'swift://~/{CONTAINER}/{name}', 'args': ''}, 'devices': []}

    def group(name: str, role: str, peers: str, devices: list[dict], **more: object) -> dict:
        base = program(role)
        base['exec']['args'] = f'{base["exec"]["args"]} {peers}'.strip()
        return {'name': name, 'exec': base['exec'], 'devices': base['devices'] + devices,
                'engine': engine, **more}
    nodes = []
    for p in range(parts):
        mapper, reducer = ('mapper', 'reducer') if parts == 1 else (f'map{p}', f'reduce{p}')
        nodes.append(group(mapper, 'mapper', reducer, [
            {'name': 'stdin', 'path': f'swift://~/{CONTAINER}/{prefix}/{p}/*.txt'}],
            connect=[reducer]))
        nodes.append(group(reducer, 'reducer', mapper, [
            {'name': 'stdout', 'path': f'swift://~/{CONTAINER}/{prefix}-counts/*.txt',
             'content_type': 'text/plain'}], count=reducers))
    return nodes


def words(text: bytes, python: bool) -> list[bytes]:
    """The words each mapper counts (the Python one lowercases, then ``[a-z0-9']+``)."""
    return re.findall(rb"[a-z0-9']+", text.lower()) if python else text.split()


def counted(conn: Connection, reducers: int, parts: int) -> collections.Counter:
    """Every reducer's totals added up."""
    found: collections.Counter = collections.Counter()
    for p in range(parts):
        group = 'reducer' if parts == 1 else f'reduce{p}'
        for r in range(1, reducers + 1):
            name = f'{group}-{r}' if reducers > 1 else group
            body = conn.get_object(CONTAINER, f'books-counts/{name}.txt')[1]
            found.update({w: int(n) for w, n in (line.rsplit(b' ', 1)
                                                 for line in body.splitlines())})
    return found


def wire_bytes(report: dict, programs: dict[str, int]) -> dict[str, int]:
    """Bytes crossing the proxy for one job, by direction (from the JSON report)."""
    nodes = report['nodes']
    links = sum(o['bytes'] for n in nodes for o in n['outputs'] if o['device'][:4] == 'out/')
    outputs = sum(o['bytes'] for n in nodes for o in n['outputs'])
    stored = sum(o['bytes'] for n in nodes for o in n['outputs'] if o['stored'])
    return {'proxy -> object servers (execute requests)': sum(n['request_bytes'] for n in nodes),
            '  of which programs (by digest once a server has them)': sum(
                n['program_bytes'] for n in nodes),
            '  (programs, were one copy sent per node)': sum(
                programs[role(n)] for n in nodes),
            '  of which node-to-node data (to the reducers)': links,
            'object servers -> proxy (outputs)': outputs,
            '  of which node-to-node data (from the mappers)': links,
            'proxy -> Swift (results stored)': stored}


def role(node: dict) -> str:
    """``mapper`` or ``reducer``: what a node of the report runs (groups ``map<P>``, ...)."""
    return 'mapper' if node['name'].startswith('map') else 'reducer'


def overheads(report: dict, group: str) -> list[float]:
    return [n['seconds'] - n['accounting']['wall_time'] for n in report['nodes']
            if role(n) == group]


def run(nobj: int, size: int, reducers: int, reps: int, staged: bool = False,
        parts: int = 1, python: bool = False, engines: list[str] | None = None,
        job_only: bool = False) -> None:
    print(common.environment())
    conf = {'proxy': '[filter:zerocloud]\nzerovm_pipeline = false\n'} if staged else {}
    with tempfile.TemporaryDirectory(prefix='zc-bench-') as tmp, \
            DevCluster(tmp, extra_conf=conf) as cluster:
        conn = common.connect(cluster)
        conn.put_container(CONTAINER)
        programs = {}
        if python:
            image = io.BytesIO()
            with tarfile.open(fileobj=image, mode='w') as tar:
                for name in ('mapper', 'reducer'):
                    tar.add(PYTHON / f'{name}.py', arcname=f'{name}.py')
            conn.put_object(CONTAINER, 'wordcount.tar', image.getvalue())
            programs = dict.fromkeys(('mapper', 'reducer'), len(image.getvalue()))
        for name in ('mapper', 'reducer') if not python else ():
            program = common.build(EXAMPLE / f'{name}.c').read_bytes()
            conn.put_object(CONTAINER, name, program)
            programs[name] = len(program)
        books = {f'books/{part_of(i, nobj, parts)}/{i:04d}.txt': common.text(size, seed=i)
                 for i in range(nobj)}
        tiny = {f'tiny/{part_of(i, nobj, parts)}/{i:04d}.txt': common.text(1024, seed=i)
                for i in range(nobj)} if not job_only else {}
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda item: conn.put_object(CONTAINER, *item),
                        [*books.items(), *tiny.items()]))
        print(f'{nobj} objects x {size:,} bytes ({mib(nobj * size)}) in {parts} part(s), '
              f'{reducers} reducer(s) per part, {"Python" if python else "C"}, '
              + ('staged (zerovm_pipeline = false)' if staged else 'pipelined'))
        if engines is None:
            engines = ['emulated'] if native_unavailable() else ['native', 'emulated']
        expected = collections.Counter(w for text in books.values() for w in words(text, python))
        first, first_report, runs = {}, {}, {}
        for engine in engines:
            the_job = job(reducers, parts, engine, python)
            first[engine], _h, first_report[engine], _b = post_job(conn, the_job)
            runs[engine] = [post_job(conn, the_job) for _ in range(reps)]
            if counted(conn, reducers, parts) != expected:
                sys.exit(f'the job ({engine}) counted differently from Python')
        job_bytes = len(json.dumps(job(reducers, parts, engines[0], python)))

        wall = {e: p50([t for t, *_ in rs]) for e, rs in runs.items()}
        proxy = {e: p50([float(h['x-nexe-cdr-line'].split(',')[0]) for _t, h, _r, _b in rs])
                 for e, rs in runs.items()}
        last = runs[engines[0]][-1]
        report = last[2]
        moved = wire_bytes(report, programs)
        response = last[3] + sum(len(k) + len(v) + 4 for k, v in last[1].items())
        rows = [['client -> proxy (job)', f'{job_bytes:,}'],
                ['proxy -> client (response, JSON report)', f'{response:,}'],
                *[[k, f'{v:,}'] for k, v in moved.items()],
                *[[f'first job: {k.strip()}', f'{v:,}'] for k, v in
                  wire_bytes(first_report[engines[0]], programs).items()
                  if 'proxy -> object' in k or 'programs (by' in k],
                ['objects read (stay on the object servers)', f'{nobj * size:,}']]
        table(f'Bytes crossing the proxy, one job ({nobj} objects, {parts} x {reducers} '
              f'reducers, {engines[0]})', ['what', 'bytes'], rows)
        if job_only:
            table(f'Wall time of the job ({reps} reps, medians)', ['engine', 'job', 'note'], [
                [e, ms(wall[e]), f'proxy total {ms(proxy[e])}; first job {ms(first[e])}; '
                 'each: ' + ' '.join(ms(t) for t, *_ in runs[e])] for e in engines])
            return

        def download() -> float:
            start = time.perf_counter()
            counts = collections.Counter()
            with ThreadPoolExecutor(4) as ex:
                for data in ex.map(lambda n: conn.get_object(CONTAINER, n)[1], books):
                    counts.update(data.split())
            if counts != expected:
                sys.exit('download count differs')
            return time.perf_counter() - start
        dl = p50([download() for _ in range(reps)])
        small = {e: [post_job(conn, job(reducers, parts, e, python, 'tiny'))
                     for _ in range(reps)]
                 for e in engines}
        small_wall = {e: p50([t for t, *_ in rs]) for e, rs in small.items()}
        base = wall[engines[0]]
        table(f'Wall time ({reps} reps, medians; ratios to the {engines[0]} job)',
              ['method', *engines, 'note'], [
                  ['map/reduce job', *[f'{ms(wall[e])} ({ratio(wall[e], base)})'
                                       for e in engines],
                   'proxy total ' + ', '.join(f'{e} {ms(proxy[e])}' for e in engines)
                   + '; first job ' + ', '.join(f'{e} {ms(first[e])}' for e in engines)],
                  ['download all + Counter in client (4 threads)',
                   *[f'{ms(dl)} ({ratio(dl, wall[e])})' for e in engines],
                   f'{mib(nobj * size)} to the client; ratio to each engine\'s job'],
                  [f'same job, {nobj} objects of 1 KiB',
                   *[f'{ms(small_wall[e])} ({ratio(small_wall[e], wall[e])})' for e in engines],
                   'per node, all fixed cost: ' + ', '.join(
                       f'{e} {ms(small_wall[e] / (nobj + parts * reducers))}'
                       for e in engines)]])

        def stats(reports: list[dict], group: str) -> str:
            over = [x for rep in reports for x in overheads(rep, group)]
            ran = [n['accounting']['wall_time'] for rep in reports
                   for n in rep['nodes'] if role(n) == group]
            return f'{ms(p50(over))} / {ms(max(over))} / {ms(p50(ran))}'
        rows = []
        for group in ('mapper', 'reducer'):
            rows.append([group, str(len(overheads(runs[engines[0]][0][2], group))),
                         *[stats([r[2] for r in runs[e]], group) for e in engines]])
        rows.append(['mapper, 1 KiB objects', str(nobj),
                     *[stats([r[2] for r in small[e]], 'mapper') for e in engines]])
        table('Per-node overhead: proxy time of a node minus its time in the sandbox '
              '(p50 / max / in sandbox p50)', ['stage', 'nodes', *engines], rows,
              note='overhead = connection, request (program + inputs), admission/queue '
                   'wait on a busy server, report and outputs back')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--objects', type=int, default=100)
    parser.add_argument('--size', type=int, default=64 << 10)
    parser.add_argument('--reducers', type=int, default=2, help='reducers per part')
    parser.add_argument('--parts', type=int, default=None,
                        help=f'mapper groups, each with its own reducers (default: the fewest '
                             f'that keep a reducer within {MAX_READS} mappers)')
    parser.add_argument('--python', action='store_true',
                        help='the Python scripts of examples/python-wordcount')
    parser.add_argument('--engine', action='append', choices=('native', 'emulated'),
                        help='run under this engine (repeatable; default: each the host runs)')
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--staged', action='store_true',
                        help='run the graph stage by stage (zerovm_pipeline = false)')
    parser.add_argument('--job-only', action='store_true',
                        help='time the job alone (no download, 1 KiB job, overhead table)')
    opts = parser.parse_args()
    parts = opts.parts or math.ceil(opts.objects / MAX_READS)
    if math.ceil(opts.objects / parts) > MAX_READS:
        parser.error(f'{opts.objects} objects in {parts} parts: a part over {MAX_READS} objects')
    run(opts.objects, opts.size, opts.reducers, opts.reps, opts.staged, parts, opts.python,
        opts.engine, opts.job_only)


if __name__ == '__main__':
    main()

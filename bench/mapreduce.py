"""Map/reduce word count over a container (issue 7): wall time, bytes through the proxy,
per-node overhead.

On a fresh local cluster (``zerocloud.devcluster.DevCluster`` in a temporary
directory: proxy, account, container, three object servers, 2 replicas;
stopped at the end) with N text objects, the job of ``examples/mapreduce``
runs: one mapper per object, next to it, sending its counts to R reducers
(``connect``), which write the totals as objects.  It is checked against
``collections.Counter`` over the same data.

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

Usage: ``python bench/mapreduce.py [--objects N] [--size BYTES] [--reducers R]
[--reps K] [--staged]``.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import mib, ms, p50, ratio, table  # noqa: E402

common.private_verdict_cache()   # inherited by the cluster's servers and their workers

from swiftclient import Connection  # noqa: E402

from zerocloud.devcluster import DevCluster  # noqa: E402
from zvm_core.engines import native_unavailable  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / 'examples' / 'mapreduce'
CONTAINER = 'books'


def post_job(conn: Connection, job: list[dict]) -> tuple[float, dict, dict, int]:
    """(client seconds, response headers, JSON report, bytes of the response body)."""
    resp: dict = {}
    t, (_, body) = common.timed(conn.post_account, headers={
        'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/json',
        'X-Zerovm-Report': 'json'}, data=json.dumps(job).encode(), response_dict=resp)
    report = json.loads(body)
    if resp['status'] != 200:
        failed = [f'{n["name"]}: {n["status"]}: {n["error"] or n["message"]}'
                  for n in report['nodes'] if n['status'] != 'ok']
        sys.exit(f'job failed: {resp["status"]}\n' + '\n'.join(failed[:10]))
    return t, resp['headers'], report, len(body)


def job(reducers: int, engine: str, prefix: str = 'books') -> list[dict]:
    text = (EXAMPLE / 'job.json').read_text().replace('"count": 2', f'"count": {reducers}')
    text = text.replace('/books/', f'/{prefix}/').replace('/counts/', f'/{prefix}-counts/')
    nodes = json.loads(text.replace('swift://~/mapreduce/', f'swift://~/{CONTAINER}/'))
    return [{**node, 'engine': engine} for node in nodes]


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
                programs[n['name'].split('-')[0]] for n in nodes),
            '  of which node-to-node data (to the reducers)': links,
            'object servers -> proxy (outputs)': outputs,
            '  of which node-to-node data (from the mappers)': links,
            'proxy -> Swift (results stored)': stored}


def overheads(report: dict, group: str) -> list[float]:
    return [n['seconds'] - n['accounting']['wall_time'] for n in report['nodes']
            if n['name'].startswith(group + '-') or n['name'] == group]


def run(nobj: int, size: int, reducers: int, reps: int, staged: bool = False) -> None:
    print(common.environment())
    conf = {'proxy': '[filter:zerocloud]\nzerovm_pipeline = false\n'} if staged else {}
    with tempfile.TemporaryDirectory(prefix='zc-bench-') as tmp, \
            DevCluster(tmp, extra_conf=conf) as cluster:
        conn = common.connect(cluster)
        conn.put_container(CONTAINER)
        programs = {}
        for name in ('mapper', 'reducer'):
            program = common.build(EXAMPLE / f'{name}.c').read_bytes()
            conn.put_object(CONTAINER, name, program)
            programs[name] = len(program)
        books = {f'books/{i:03d}.txt': common.text(size, seed=i) for i in range(nobj)}
        tiny = {f'tiny/{i:03d}.txt': common.text(1024, seed=i) for i in range(nobj)}
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda item: conn.put_object(CONTAINER, *item),
                        [*books.items(), *tiny.items()]))
        print(f'{nobj} objects x {size:,} bytes ({mib(nobj * size)}), {reducers} reducers, '
              + ('staged (zerovm_pipeline = false)' if staged else 'pipelined'))
        engines = ['emulated'] if native_unavailable() else ['native', 'emulated']
        expected = collections.Counter(w for text in books.values() for w in text.split())
        first, first_report, runs = {}, {}, {}
        for engine in engines:
            the_job = job(reducers, engine)
            first[engine], _h, first_report[engine], _b = post_job(conn, the_job)
            runs[engine] = [post_job(conn, the_job) for _ in range(reps)]
            found = collections.Counter()
            for r in range(1, reducers + 1):
                body = conn.get_object(CONTAINER, f'books-counts/reducer-{r}.txt')[1]
                found.update({w: int(n) for w, n in (line.rsplit(b' ', 1)
                                                     for line in body.splitlines())})
            if found != expected:
                sys.exit(f'the job ({engine}) counted differently from Python')
        job_bytes = len(json.dumps(job(reducers, engines[0])))

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
        table(f'Bytes crossing the proxy, one job ({nobj} objects, {reducers} reducers, '
              f'{engines[0]})', ['what', 'bytes'], rows)

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
        small = {e: [post_job(conn, job(reducers, e, 'tiny')) for _ in range(reps)]
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
                       f'{e} {ms(small_wall[e] / (nobj + reducers))}' for e in engines)]])

        def stats(reports: list[dict], group: str) -> str:
            over = [x for rep in reports for x in overheads(rep, group)]
            ran = [n['accounting']['wall_time'] for rep in reports
                   for n in rep['nodes'] if n['name'].startswith(group)]
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
    parser.add_argument('--reducers', type=int, default=2)
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--staged', action='store_true',
                        help='run the graph stage by stage (zerovm_pipeline = false)')
    opts = parser.parse_args()
    run(opts.objects, opts.size, opts.reducers, opts.reps, opts.staged)


if __name__ == '__main__':
    main()

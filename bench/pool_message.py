"""What a run costs in CPU around the guest (issue 17): the caller's and the worker's.

A one-worker pool (``zvm_core.pool.Pool``) runs ``wc`` over 1 KiB N times, as a
batch's nodes reach it from the object server: stdin an object's file, stdout
a file with a quota, stderr kept in the worker (``tail``), the job's variables
and the object's ``LOCAL_*`` ones.  Once through ``Pool.run`` (a node alone)
and once through ``Pool.run_many`` in chunks of 16 (a batch's nodes).  Printed
per run, the median over ``--reps``: the caller's CPU (``time.process_time``
around the pool's calls only: the request, waiting, the reply) and the worker
process's own CPU (``/proc/<pid>/schedstat``: its messages, engine choice,
templates; not the guests, which are its template's children).  Alternate two
trees (``PYTHONPATH``) in one session to compare them, or give ``--against TREE``
(another checkout, its extensions built): a second pool whose worker runs that
tree's code, under the same caller, measurements alternated between the two (the
worker's CPU per run: its side of the protocol must be the same), and the median
of the pairs' ratios printed.

Usage: ``python bench/pool_message.py [--runs 512] [--reps 5] [--engine auto]
[--against TREE]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

common.private_verdict_cache()

from zvm_core.channels import READ, WRITE, Quota  # noqa: E402
from zvm_core.limits import Limits  # noqa: E402
from zvm_core.pool import ChannelSpec, Pool, Run  # noqa: E402

CHUNK = 16          # zerocloud.object.batch.CHUNK
STDERR_TAIL = 64 << 10


def worker_cpu(pid: int) -> float:
    """Seconds the process ``pid`` has run on a CPU (not its children)."""
    with open(f'/proc/{pid}/schedstat') as f:
        return int(f.read().split()[0]) / 1e9


def node_env(i: int) -> dict[str, str]:
    """A batch node's variables: the job's and its object's (``wire.local_env``)."""
    return {'SCRIPT_NAME': 'wc', 'SCRIPT_FILENAME': 'swift://a/c/wc', 'LOCAL_OBJECT': 'on',
            'LOCAL_PATH_INFO': f'/a/c/o{i}', 'LOCAL_CONTENT_LENGTH': '1024',
            'LOCAL_CONTENT_TYPE': 'text/plain', 'LOCAL_ETAG': f'{i:032x}',
            'LOCAL_HTTP_X_TIMESTAMP': f'{1700000000 + i}.00000'}


class Runs:
    """Opens the channels of runs (outside the time measured) and closes them."""

    def __init__(self, program: Path, data: Path, out: Path, engine: str | None) -> None:
        self.program, self.data, self.out, self.engine = str(program), data, out, engine
        self.limits = Limits(memory=1 << 28, timeout=60.0)
        self.files: list = []

    def make(self, i: int, tail: bool) -> Run:
        """Run ``i``; its stderr kept in the worker (``tail``: ``run_many`` only) or
        written to /dev/null."""
        fin, fout = open(self.data, 'rb'), open(self.out, 'wb')
        self.files += [fin, fout]
        if tail:
            stderr = ChannelSpec('/dev/stderr', -1, WRITE, tail=STDERR_TAIL)
        else:
            self.files.append(open(os.devnull, 'wb'))
            stderr = ChannelSpec('/dev/stderr', self.files[-1].fileno(), WRITE)
        channels = [stderr,
                    ChannelSpec('/dev/stdin', fin.fileno(), READ),
                    ChannelSpec('/dev/stdout', fout.fileno(), WRITE,
                                quota=Quota(put_size=1 << 30))]
        return Run(self.program, channels, ['wc'], node_env(i), self.limits, engine=self.engine)

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []


def measure(pool: Pool, runs: Runs, count: int, many: bool) -> tuple[float, float]:
    """(caller CPU, worker CPU) seconds per run, for ``count`` runs."""
    (pid,) = pool.pids
    caller = 0.0
    worker = worker_cpu(pid)
    for first in range(0, count, CHUNK if many else 1):
        batch = [runs.make(i, many)
                 for i in range(first, min(count, first + (CHUNK if many else 1)))]
        start = time.process_time()
        if many:
            results = [r.report for r in pool.run_many(batch) if r is not None]
        else:
            run = batch[0]
            results = [pool.run(run.program, run.channels, argv=run.argv, env=run.env,
                                limits=run.limits, engine=run.engine)]
        caller += time.process_time() - start
        runs.close()
        failed = [f'{r.status}: {r.message}' for r in results if r.status != 'ok']
        if failed or len(results) != len(batch):
            sys.exit(f'runs failed: {failed}')
    return caller / count, (worker_cpu(pid) - worker) / count


def worker_of(tree: str) -> Pool:
    """A one-worker pool whose worker imports ``tree``'s code: started in ``tree`` (``python
    -m`` puts its directory first on the path, before ``PYTHONPATH``) with ``tree`` first
    on its ``PYTHONPATH``."""
    was, cwd = os.environ.get('PYTHONPATH'), os.getcwd()
    os.environ['PYTHONPATH'] = tree
    os.chdir(tree)
    try:
        return Pool(size=1, queue=0)
    finally:
        os.chdir(cwd)
        if was is None:
            del os.environ['PYTHONPATH']
        else:
            os.environ['PYTHONPATH'] = was


def against(runs: Runs, opts: argparse.Namespace) -> int:
    """This tree's worker and ``opts.against``'s, ``run_many`` measurements alternated."""
    trees = {'this': str(Path(__file__).resolve().parent.parent),
             'against': os.path.abspath(opts.against)}
    pools = {k: worker_of(t) for k, t in trees.items()}
    try:
        got: dict[str, list[float]] = {k: [] for k in pools}
        for pool in pools.values():
            measure(pool, runs, CHUNK, True)        # warm: the template exists
        for i in range(opts.reps):
            for k in (('this', 'against') if i % 2 == 0 else ('against', 'this')):
                got[k].append(measure(pools[k], runs, opts.runs, True)[1])
    finally:
        for pool in pools.values():
            pool.close()
    ratio = statistics.median(a / b for a, b in zip(got['this'], got['against'], strict=True))
    common.table(f'{opts.runs} runs of wc over 1 KiB through run_many (16), a one-worker '
                 f'pool per tree, {opts.reps} alternated pairs, load '
                 f'{os.getloadavg()[0]:.1f}', ['tree', 'worker CPU ms/run (p50)'],
                 [[k, f'{statistics.median(v) * 1e3:.4f}'] for k, v in got.items()],
                 note=f'this/against, median of the pairs: {ratio:.3f}')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=512, help='runs per measurement')
    parser.add_argument('--reps', type=int, default=5, help='measurements (median printed)')
    parser.add_argument('--engine', default=None, help='auto (default), native, emulated')
    parser.add_argument('--against', metavar='TREE',
                        help="another checkout: its worker's CPU per run beside this one's")
    opts = parser.parse_args(argv)
    print(common.environment())
    with tempfile.TemporaryDirectory(prefix='zvm-bench-poolmsg-') as tmp:
        data, out = Path(tmp) / 'object', Path(tmp) / 'out'
        data.write_bytes(common.text(1024))
        runs = Runs(common.build('wc'), data, out, opts.engine)
        if opts.against:
            return against(runs, opts)
        rows = []
        with Pool(size=1, queue=0) as pool:
            measure(pool, runs, CHUNK, True)        # warm: the template exists
            for many in (False, True):
                got = [measure(pool, runs, opts.runs, many) for _ in range(opts.reps)]
                rows.append(['run_many (16)' if many else 'run',
                             f'{statistics.median(c for c, _ in got) * 1e3:.3f}',
                             f'{statistics.median(w for _, w in got) * 1e3:.3f}'])
    common.table(f'{opts.runs} runs of wc over 1 KiB through a one-worker pool, median of '
                 f'{opts.reps}, load {os.getloadavg()[0]:.1f}',
                 ['through', 'caller CPU ms/run', 'worker CPU ms/run'], rows,
                 note='worker: its own CPU, not its guests\'')
    return 0


if __name__ == '__main__':
    sys.exit(main())

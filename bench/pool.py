"""Warm execution (issue 5): pool warm start vs cold start, throughput, worker memory.

- warm start: ``zvm_core.pool.Pool.run`` of musl hello with the template
  already in the worker, one caller, client-observed latency (the call
  only; the caller opened its channel descriptors before), p50/p99; in the
  same run, cold starts: ``executor.run()`` in process (new instance,
  verdict cached), the pool with a template miss (a new copy of the program
  per request: new machine or template process in the worker, verdict
  cached) and a new ``zvm run`` process -- each for the native and the
  emulated engine side by side (the native one where the host can run it);
- throughput: executions per second of a trivial program (returns 0) through
  a pool of 2 workers, with 1, 2, 4 and 8 caller threads, for a fixed time;
- memory: VmRSS and VmHWM (peak RSS) from ``/proc/<pid>/status`` of a
  one-worker pool's worker process when idle, after 1 template and after 10
  (10 different programs; one program at 10 memory sizes; a program that
  writes 8 MiB of heap, at 10 memory sizes: a template keeps its last run's
  dirty pages until it is reset for the next run).

Usage: ``python bench/pool.py [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import mib, ms, p50, p99, ratio, table  # noqa: E402

common.private_verdict_cache()

from zvm_core import engines  # noqa: E402
from zvm_core.channels import READ, WRITE, Channel, MemoryBacking  # noqa: E402
from zvm_core.executor import Limits, run  # noqa: E402
from zvm_core.pool import ChannelSpec, Pool  # noqa: E402
from zvm_core.report import Report  # noqa: E402


def check(report: Report, what: str) -> Report:
    if report.status != 'ok' or report.retcode:
        sys.exit(f'{what}: {report.status} (retcode {report.retcode}): {report.message}')
    return report


@contextlib.contextmanager
def channels(stdin: Path | None = None, stdout: Path | None = None
             ) -> Iterator[list[ChannelSpec]]:
    """stdin/stdout/stderr descriptors for a pool request, closed afterwards."""
    files = [open(stdin or os.devnull, 'rb'), open(stdout or os.devnull, 'wb'),
             open(os.devnull, 'wb')]
    try:
        yield [ChannelSpec('/dev/stdin', files[0].fileno(), READ),
               ChannelSpec('/dev/stdout', files[1].fileno(), WRITE),
               ChannelSpec('/dev/stderr', files[2].fileno(), WRITE)]
    finally:
        for f in files:
            f.close()


def pool_run(pool: Pool, program: Path, specs: list[ChannelSpec],
             limits: Limits | None = None, argv: list[str] | None = None,
             engine: str | None = None) -> Report:
    report = check(pool.run(str(program), specs, argv=argv or [program.name], limits=limits,
                            engine=engine), program.name)
    if engine is not None and report.engine != engine:
        sys.exit(f'{program.name}: ran {report.engine}, not {engine}: {report.engine_reason}')
    return report


# -- warm vs cold --------------------------------------------------------------

def starts(tmp: Path, engine: str, reps: int, miss_reps: int,
           cli_reps: int) -> dict[str, list[float]]:
    """Seconds per start of musl hello on ``engine``, by path (the rows of
    :func:`warm_vs_cold`)."""
    hello = common.build('hello')
    out = tmp / 'hello.out'
    times: dict[str, list[float]] = {'warm': [], 'miss': [], 'fresh': [], 'cli': []}
    with Pool(2) as pool, channels(stdout=out) as specs:
        for _ in range(20):                              # templates in both workers
            pool_run(pool, hello, specs, engine=engine)
        for _ in range(reps):
            t, _ = common.timed(pool_run, pool, hello, specs, engine=engine)
            times['warm'].append(t)
        for i in range(miss_reps):                      # a new path: a new template
            copy = tmp / f'hello-copy-{i}'
            shutil.copyfile(hello, copy)
            t, _ = common.timed(pool_run, pool, copy, specs, engine=engine)
            times['miss'].append(t)
            copy.unlink()
    if not out.read_bytes().startswith(b'Hello, world!\n'):
        sys.exit(f'unexpected output: {out.read_bytes()[:100]!r}')
    check(run(hello, mem_channels(), engine=engine), 'hello')     # verdict cached here
    for _ in range(reps // 4):
        t, rep = common.timed(run, hello, mem_channels(), engine=engine)
        check(rep, 'hello')
        times['fresh'].append(t)
    for _ in range(cli_reps):
        t, proc = common.timed(subprocess.run, [sys.executable, '-m', 'zvm_core.cli', 'run',
                                                '--engine', engine, str(hello)],
                               capture_output=True, check=False)
        if proc.returncode:
            sys.exit(f'zvm run failed: {proc.stderr.decode()[-500:]}')
        times['cli'].append(t)
    return times


def warm_vs_cold(tmp: Path, reps: int, miss_reps: int, cli_reps: int) -> None:
    reason = engines.native_unavailable()
    names = ['emulated'] if reason else ['native', 'emulated']
    got = {engine: starts(tmp, engine, reps, miss_reps, cli_reps) for engine in names}
    paths = {'warm': 'pool, warm template (client-observed)',
             'miss': 'pool, template miss (new program path)',
             'fresh': 'in process: run(), fresh instance', 'cli': 'new process: `zvm run`'}
    rows = []
    for key, what in paths.items():
        row = [what, len(got[names[0]][key])]
        for engine in names:
            row += [ms(p50(got[engine][key])), ms(p99(got[engine][key]))]
        if len(names) == 2:
            row.append(ratio(p50(got['native'][key]), p50(got['emulated'][key])))
        rows.append(row)
    header = ['path', 'n'] + [f'{engine} {q}' for engine in names for q in ('p50', 'p99')]
    table('Warm vs cold start, musl hello (2 workers, 1 caller), per engine',
          header + (['native/emulated p50'] if len(names) == 2 else []), rows,
          note='goals: warm p50 <= 1 ms, p99 <= 5 ms (issue 5); native warm p50 <= 0.5 ms '
               f'(issue 16); load average {os.getloadavg()[0]:.1f} after the run'
               + (f'; native engine unavailable: {reason}' if reason else ''))


def mem_channels() -> list[Channel]:
    return [Channel('/dev/stdin', MemoryBacking(), READ),
            Channel('/dev/stdout', MemoryBacking(), WRITE),
            Channel('/dev/stderr', MemoryBacking(), WRITE)]


# -- throughput ----------------------------------------------------------------

def _caller(pool: Pool, program: Path, stop: float, latencies: list[float],
            errors: list[BaseException]) -> None:
    """Run ``program`` through ``pool`` until ``stop``, one request at a time."""
    try:
        with channels() as specs:
            while time.perf_counter() < stop:
                t, _ = common.timed(pool_run, pool, program, specs)
                latencies.append(t)
    except BaseException as e:  # noqa: B036 - the main thread reports it
        errors.append(e)


def throughput(seconds: float, callers: tuple[int, ...]) -> None:
    nop = common.build('nop')
    rows = []
    with Pool(2) as pool:
        with channels() as specs:
            for _ in range(20):
                pool_run(pool, nop, specs)
        for n in callers:
            lat: list[list[float]] = [[] for _ in range(n)]
            errors: list[BaseException] = []
            stop = time.perf_counter() + seconds
            threads = [threading.Thread(target=_caller, args=(pool, nop, stop, lat[i], errors))
                       for i in range(n)]
            start = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            elapsed = time.perf_counter() - start
            if errors:
                sys.exit(f'caller failed: {errors[0]!r}')
            all_lat = [x for lst in lat for x in lst]
            rows.append([n, len(all_lat), f'{len(all_lat) / elapsed:.0f}', ms(p50(all_lat)),
                         ms(p99(all_lat))])
    table(f'Throughput: trivial program (nop), pool of 2 workers, {seconds:g} s per row '
          f'({os.cpu_count()} CPUs)',
          ['caller threads', 'executions', 'executions/s', 'latency p50', 'latency p99'], rows,
          note='goal (issue 5): >= 500 executions/s with 2 workers on 2 cores')


# -- worker memory -------------------------------------------------------------

def workers() -> list[int]:
    """Pids of this process's children that are pool workers."""
    me = str(os.getpid())
    pids = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            status = Path(f'/proc/{d}/status').read_text()
            cmd = Path(f'/proc/{d}/cmdline').read_bytes()
        except OSError:
            continue
        ppid = next(ln.split()[1] for ln in status.splitlines() if ln.startswith('PPid:'))
        if ppid == me and b'zvm_core.pool' in cmd:
            pids.append(int(d))
    return pids


def vm(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes."""
    fields = {}
    for ln in Path(f'/proc/{pid}/status').read_text().splitlines():
        key, _, value = ln.partition(':')
        if key in ('VmRSS', 'VmHWM'):
            fields[key] = int(value.split()[0]) * 1024
    return fields['VmRSS'], fields['VmHWM']


def worker_memory(tmp: Path) -> None:
    hello = [common.build('hello', flags=('-O2', f'-DVARIANT={i}')) for i in range(10)]
    touch = common.build('touch')
    sizes = [(32 << 20) * (i + 1) for i in range(10)]
    scenarios = {
        '10 different programs (hello variants)':
            [(p, None, ['hello']) for p in hello],
        '1 program (hello) at 10 memory sizes, 32..320 MiB':
            [(hello[0], Limits(memory=s), ['hello']) for s in sizes],
        '8 MiB of heap written, at 10 memory sizes':
            [(touch, Limits(memory=s), ['touch', '8']) for s in sizes],
    }
    rows = []
    for name, runs in scenarios.items():
        before = set(workers())
        with Pool(1) as pool:
            deadline = time.monotonic() + 10
            while len(new := set(workers()) - before) != 1 and time.monotonic() < deadline:
                time.sleep(0.05)                          # until the child has exec'd
            if len(new) != 1:
                sys.exit(f'cannot find the worker process (found {sorted(new)})')
            pid = new.pop()
            time.sleep(1.0)                               # the worker's imports
            idle = vm(pid)
            after = []
            for program, limits, args in runs:
                with channels() as specs:
                    pool_run(pool, program, specs, limits=limits, argv=args)
                after.append(vm(pid))
            # run them all again: every template must still be there (no rebuild)
            again = []
            for program, limits, args in runs:
                with channels() as specs:
                    t, _ = common.timed(pool_run, pool, program, specs, limits=limits,
                                        argv=args)
                again.append(t)
            final = vm(pid)
        per = (after[-1][0] - after[0][0]) / (len(after) - 1)
        rows.append([name, mib(idle[0]), mib(after[0][0]), mib(after[-1][0]),
                     mib(final[0]), mib(final[1]), mib(per), ms(p50(again))])
    table('Worker memory: one worker, 10 templates (VmRSS / VmHWM from /proc/<pid>/status)',
          ['templates', 'RSS idle', 'RSS 1 tmpl', 'RSS 10 tmpl', 'RSS after 2nd round',
           'peak (VmHWM)', 'per extra tmpl', '2nd round p50'], rows,
          note='2nd round: each of the 10 runs again (warm if its template was kept)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='few repetitions, short runs')
    opts = parser.parse_args(argv)
    q = opts.quick
    print(common.environment())
    print('load average (1, 5, 15 min): ' + ', '.join(f'{x:.2f}' for x in os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix='zvm-bench-') as d:
        tmp = Path(d)
        warm_vs_cold(tmp, reps=200 if q else 2000, miss_reps=20 if q else 100,
                     cli_reps=3 if q else 10)
        throughput(1.0 if q else 5.0, (1, 2, 4) if q else (1, 2, 4, 8))
        worker_memory(tmp)
    return 0


if __name__ == '__main__':
    sys.exit(main())

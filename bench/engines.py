"""Engines side by side (issue 16): host process, native engine, emulated engine.

- workloads: word count over 10 MiB of text, a line sort over 2 MiB, and a
  CPU-bound C kernel (SHA-256 of 64 MiB generated in memory); the same static
  binary as a host process (with spawn: wall time around the subprocess; main
  only: the program times its own ``main`` with ``-t``) and through
  ``zvm_core.run()`` with ``engine='native'`` and ``engine='emulated'`` (a whole
  run: validation from the in-memory cache, set-up, run, report); outputs must
  be identical everywhere;
- the Python CSV aggregation of ``examples/python-csv`` (the python3 system
  image, ``--engine native`` explicitly: the image contains ``rdtsc``, so
  ``auto`` would pick the emulator) against host Python;
- the mediated system-call round trip: a loop of raw ``getpid`` calls,
  (t(N) - t(0)) / N through ``run()``, per engine, and on the host.

Goals (issue 16), as ratios in this run: native <= 1.2x the host process on the
CPU-bound kernel, <= 1.5x on wc and sort; Python CSV >= 0.7x host Python's
throughput; mediated call <= 10 us.

Usage: ``python bench/engines.py [--quick] [--reps N] [--no-python]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import ms, p50, ratio, table, us  # noqa: E402

common.private_verdict_cache()

from zvm_core.channels import READ, WRITE, Channel, FdBacking, MemoryBacking  # noqa: E402
from zvm_core.engines import native_unavailable  # noqa: E402
from zvm_core.executor import run  # noqa: E402


def host(prog: Path, args: list[str], stdin: Path, stdout: Path) -> tuple[float, float]:
    """(seconds with spawn, seconds main took by its own clock) of one host run."""
    with open(stdin, 'rb') as i, open(stdout, 'wb') as o:
        t, proc = common.timed(lambda: subprocess.run(
            [prog.name, '-t', *args], executable=str(prog), stdin=i, stdout=o,
            stderr=subprocess.PIPE, env={}, check=False))
    if proc.returncode != 0:
        sys.exit(f'host {prog.name} failed: {proc.stderr!r}')
    return t, int(proc.stderr.split()[-1]) / 1e9


def sandboxed(engine: str, prog: Path, args: list[str], stdin: Path, stdout: Path) -> float:
    """Seconds of one ``run()`` on ``engine``."""
    chans = [Channel('/dev/stdin', FdBacking.open(stdin, READ), READ),
             Channel('/dev/stdout', FdBacking.open(stdout, WRITE), WRITE),
             Channel('/dev/stderr', MemoryBacking(), WRITE)]
    t, report = common.timed(run, prog, chans, argv=[prog.name, *args], engine=engine)
    if report.status != 'ok' or report.retcode or report.engine != engine:
        sys.exit(f'{engine} {prog.name}: {report.status} {report.retcode} {report.message}')
    return t


def workloads(tmp: Path, sizes: dict[str, int], reps: int, engines: list[str]) -> None:
    rows = []
    for name, size in sizes.items():
        prog = common.build(name)
        data, out = tmp / f'{name}.in', tmp / f'{name}.out'
        args = [str(size >> 20)] if name == 'sha256' else []
        data.write_bytes(b'' if name == 'sha256' else common.text(size, seed=1))
        host(prog, args, data, out)                       # page cache, warm-up
        expected = out.read_bytes()
        for engine in engines:                            # validation (cached after)
            sandboxed(engine, prog, args, data, out)
        spawn, main = [], []
        times: dict[str, list[float]] = {e: [] for e in engines}
        for _ in range(reps):
            s, m = host(prog, args, data, out)
            spawn.append(s)
            main.append(m)
            for engine in engines:
                times[engine].append(sandboxed(engine, prog, args, data, out))
                if out.read_bytes() != expected:
                    sys.exit(f'{name}: the {engine} engine wrote different bytes')
        h, hm = p50(spawn), p50(main)
        row = [f'{name} {common.mib(size)}', ms(hm), ms(h)]
        for engine in ('native', 'emulated'):
            row.append(ms(p50(times[engine])) if engine in times else 'n/a')
        nat = p50(times['native']) if 'native' in times else float('nan')
        row += [ratio(nat, hm), ratio(nat, h)]
        row.append(ratio(p50(times['emulated']), nat) if 'emulated' in times else 'n/a')
        rows.append(row)
    table(f'Workloads ({reps} reps, medians)',
          ['workload', 'host main', 'host w/ spawn', 'native run()', 'emulated run()',
           'native/main', 'native/spawn', 'emulated/native'], rows,
          note='goals (issue 16): native <= 1.2x host on sha256, <= 1.5x on wc and sort')


def _agg(engine: str, program: Path, tars: list[Path], data: Path, args: list[str]
         ) -> tuple[float, bytes]:
    """Seconds and output of agg.py over ``data`` in ``run()`` on ``engine``."""
    from zvm_core.syscalls.fs import Image
    out = MemoryBacking()
    chans = [Channel('/dev/stdout', out, WRITE),
             Channel('/dev/input', FdBacking.open(data, READ), READ, random=True)]
    image = Image()
    for i, tar in enumerate(tars):
        chans.append(Channel(f'/dev/image{i}', FdBacking.open(tar, READ), READ, random=True))
        image.mount(chans[-1].backing, '/', chans[-1].alias)
    t, report = common.timed(run, program, chans, argv=['python3', '/agg.py', *args],
                             image=image, engine=engine)
    if report.status != 'ok' or report.retcode or report.engine != engine:
        sys.exit(f'python csv on {engine}: {report.status} {report.message}')
    return t, bytes(out.data)


def python_csv(tmp: Path, size: int, engines: list[str]) -> None:
    from zvm_core.build import interpreters
    agg = common.REPO / 'examples' / 'python-csv'
    py = interpreters.build(only=['python3'])['python3']
    program = interpreters.default_dir() / py.program
    tars = [interpreters.default_dir() / py.image, tmp / 'job.tar']
    data, small = tmp / 'sales.csv', tmp / 'small.csv'
    with open(data, 'wb') as f:
        subprocess.run([sys.executable, str(agg / 'make_data.py'), str(size)], stdout=f,
                       check=True)
    small.write_bytes(b''.join(data.read_bytes().splitlines(True)[:100]))
    with tarfile.open(tars[1], 'w') as t:
        t.add(agg / 'agg.py', 'agg.py')
    args = ['region', 'qty', 'revenue']
    t_host, host = common.timed(subprocess.run, [sys.executable, str(agg / 'agg.py'), *args,
                                                 '--file', str(data)],
                                capture_output=True, check=True)
    mb = data.stat().st_size / 1e6
    rows = [['host Python', f'{t_host:.2f} s', f'{mb / t_host:.1f}', '1.00x']]
    for engine in engines:
        _agg(engine, program, tars, small, args)        # validation, then cached
        t, out = _agg(engine, program, tars, data, args)
        if out != host.stdout:
            sys.exit(f'python csv: the {engine} engine and the host disagree')
        rows.append([f'{engine} engine', f'{t:.2f} s', f'{mb / t:.1f}', ratio(t_host, t)])
    table(f'Python CSV aggregation over {mb:.1f} MB (examples/python-csv/agg.py)',
          ['where', 'time', 'MB/s', 'throughput vs host'], rows,
          note='goal (issue 16): native >= 0.7x host Python; same output bytes everywhere')


def round_trip(tmp: Path, n: int, reps: int, engines: list[str]) -> None:
    prog = common.build('getpid')
    null, out = tmp / 'empty', tmp / 'getpid.out'
    null.write_bytes(b'')
    rows = []
    for engine in engines:
        sandboxed(engine, prog, ['0'], null, out)         # validation (cached after)
        t0 = p50([sandboxed(engine, prog, ['0'], null, out) for _ in range(reps)])
        t1 = p50([sandboxed(engine, prog, [str(n)], null, out) for _ in range(reps)])
        rows.append([f'{engine} engine', f'{n:,}', ms(t0), ms(t1), us((t1 - t0) / n)])
    nn = n * 20
    t0 = p50([common.timed(subprocess.run, [str(prog), '0'], capture_output=True)[0]
              for _ in range(reps)])
    t1 = p50([common.timed(subprocess.run, [str(prog), str(nn)], capture_output=True)[0]
              for _ in range(reps)])
    rows.append(['host process', f'{nn:,}', ms(t0), ms(t1), us((t1 - t0) / nn)])
    table(f'System-call round trip: raw getpid loop, (t(N) - t(0)) / N ({reps} reps, medians)',
          ['where', 'N', 't(0)', 't(N)', 'per call'], rows,
          note='goal (issue 16): native engine <= 10 us per mediated call')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='smaller inputs, fewer reps')
    parser.add_argument('--reps', type=int, default=None)
    parser.add_argument('--no-python', action='store_true', help='skip the Python CSV part')
    opts = parser.parse_args(argv)
    reps = opts.reps or (1 if opts.quick else 3)
    sizes = ({'wc': 2 << 20, 'sort': 1 << 20, 'sha256': 4 << 20} if opts.quick else
             {'wc': 10 << 20, 'sort': 2 << 20, 'sha256': 64 << 20})
    print(common.environment())
    reason = native_unavailable()
    engines = ['emulated'] if reason else ['native', 'emulated']
    if reason:
        print(f'native engine unavailable: {reason}')
    with tempfile.TemporaryDirectory(prefix='zvm-bench-engines-') as d:
        workloads(Path(d), sizes, reps, engines)
        if not opts.no_python:
            python_csv(Path(d), 2_000_000 if opts.quick else 10_000_000, engines)
        round_trip(Path(d), 2000 if opts.quick else 20000, reps, engines)
    return 0


if __name__ == '__main__':
    sys.exit(main())

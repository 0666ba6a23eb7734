"""Sandbox costs (issue 2): cold start, guard + fuel overhead, emulated vs native, syscalls.

- cold start in process: ``zvm_core.executor.run()`` of musl hello (new unicorn
  instance + ELF load + run + report; the verdict is in the in-memory cache),
  p50/p99 over repetitions, with its steps timed apart, a reused template
  machine and a new ``zvm run`` process for comparison;
- guard + fuel overhead: word count of 10 MB of text on stdin, the normal
  machine vs the same machine built without the C ``UC_HOOK_BLOCK`` hook (no
  boundary check, no fuel; the syscall/cpuid/rdtsc hooks stay), runs
  interleaved, medians;
- emulated vs native: word count and a line sort, the same static binary in
  the sandbox and as a host process; native both with spawn (wall time around
  the subprocess) and without (the program times its own ``main`` when given
  ``-t``); the emulated figure is a whole ``run()``;
- syscall round trip: a loop of raw ``getpid`` syscalls, (t(N) - t(0)) / N,
  medians, emulated (reused machine) and native; and the same for ZeroVM trap
  calls (``zvm_pwrite`` of 0 bytes through the stub at 0x10000).

Usage: ``python bench/sandbox.py [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import ms, p50, p99, ratio, table, us  # noqa: E402

common.private_verdict_cache()

from unicorn.unicorn_const import UC_HOOK_BLOCK  # noqa: E402

from zvm_core.channels import READ, WRITE, Channel, FdBacking, MemoryBacking  # noqa: E402
from zvm_core.elf import load_program  # noqa: E402
from zvm_core.engines.emulated import guard as zguard  # noqa: E402
from zvm_core.engines.emulated.machine import Machine  # noqa: E402
from zvm_core.executor import Limits, run  # noqa: E402
from zvm_core.report import Report  # noqa: E402
from zvm_core.validator import Policy, default_cache, validate  # noqa: E402

SDK = Path(__file__).resolve().parent.parent / 'zvm_core' / 'zerovm' / 'sdk'


def std_channels(stdin: bytes | Path = b'', stdout: Path | None = None) -> list[Channel]:
    """stdin from bytes or a host file, stdout to memory or a host file, stderr to memory."""
    inp = (FdBacking.open(stdin, READ) if isinstance(stdin, Path) else MemoryBacking(stdin))
    out = FdBacking.open(stdout, WRITE) if stdout is not None else MemoryBacking()
    return [Channel('/dev/stdin', inp, READ), Channel('/dev/stdout', out, WRITE),
            Channel('/dev/stderr', MemoryBacking(), WRITE)]


def check(report: Report, what: str) -> Report:
    if report.status != 'ok' or report.retcode:
        sys.exit(f'{what}: {report.status} (retcode {report.retcode}): {report.message}')
    return report


@contextlib.contextmanager
def no_block_hook() -> Iterator[None]:
    """Machines built inside get the guard's C hooks except UC_HOOK_BLOCK."""
    saved = zguard._HOOKS
    zguard._HOOKS = tuple(h for h in saved if h[0] != UC_HOOK_BLOCK)
    try:
        yield
    finally:
        zguard._HOOKS = saved


def machine(path: Path, hooks: bool = True, memory: int = Limits().memory) -> Machine:
    prog = load_program(path)
    verdict = validate(prog, Policy(), default_cache())
    if hooks:
        return Machine(prog, verdict, Limits(memory=memory))
    with no_block_hook():
        return Machine(prog, verdict, Limits(memory=memory))


# -- cold start ----------------------------------------------------------------

def cold_start(reps: int, cli_reps: int) -> None:
    hello = common.build('hello')
    check(run(hello, std_channels()), 'hello')           # validate once: verdict cached
    fresh = []
    for _ in range(reps):
        chans = std_channels()
        t, rep = common.timed(run, hello, chans)
        check(rep, 'hello')
        fresh.append(t)
    # the same, step by step
    steps: dict[str, list[float]] = {k: [] for k in
                                     ('load ELF', 'validate (cached)', 'new Machine',
                                      'Machine.run', 'close')}
    for _ in range(reps):
        t0 = time.perf_counter()
        prog = load_program(hello)
        t1 = time.perf_counter()
        verdict = validate(prog, Policy(), default_cache())
        t2 = time.perf_counter()
        m = Machine(prog, verdict, Limits())
        t3 = time.perf_counter()
        check(m.run(std_channels(), ['hello'], {}), 'hello')
        t4 = time.perf_counter()
        m.close()
        t5 = time.perf_counter()
        for k, a, b in zip(steps, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5), strict=True):
            steps[k].append(b - a)
    # a template machine, reset and run again
    m = machine(hello)
    check(m.run(std_channels(), ['hello'], {}), 'hello')
    warm = []
    for _ in range(reps):
        chans = std_channels()
        t, rep = common.timed(m.run, chans, ['hello'], {})
        check(rep, 'hello')
        warm.append(t)
    m.close()
    # a new process: `zvm run`
    cli = []
    env = dict(os.environ)
    for _ in range(cli_reps):
        t, proc = common.timed(lambda: subprocess.run(
            [sys.executable, '-m', 'zvm_core.cli', 'run', str(hello)], env=env,
            capture_output=True, check=False))
        if proc.returncode != 0:
            sys.exit(f'zvm run failed: {proc.stderr.decode()[-500:]}')
        cli.append(t)
    base = p50(fresh)
    rows = [['run() fresh instance, verdict cached', ms(p50(fresh)), ms(p99(fresh)), '1.00x',
             'p50 <= 5 ms']]
    rows += [[f'  step: {k}', ms(p50(v)), ms(p99(v)), ratio(p50(v), base), '']
             for k, v in steps.items()]
    rows += [['Machine.run() again (template reuse)', ms(p50(warm)), ms(p99(warm)),
              ratio(p50(warm), base), ''],
             [f'`zvm run` new process ({cli_reps} reps)', ms(p50(cli)), ms(p99(cli)),
              ratio(p50(cli), base), '']]
    table(f'Cold start, musl hello ({reps} reps)',
          ['what', 'p50', 'p99', 'vs fresh p50', 'goal (issue 2)'], rows)


# -- guard + fuel overhead, emulated vs native --------------------------------

def native(path: Path, stdin: Path, stdout: Path, args: tuple[str, ...] = ('-t',)
           ) -> tuple[float, float]:
    """(wall seconds with spawn, seconds main took by its own clock, or nan) of one host run."""
    with open(stdin, 'rb') as i, open(stdout, 'wb') as o:
        t, proc = common.timed(lambda: subprocess.run(
            [path.name, *args], executable=str(path), stdin=i, stdout=o,
            stderr=subprocess.PIPE, env={}, check=False))
    if proc.returncode != 0:
        sys.exit(f'native {path.name} failed: {proc.stderr!r}')
    return t, int(proc.stderr.split()[-1]) / 1e9 if '-t' in args else float('nan')


def emulated(m: Machine, argv: list[str], stdin: Path, stdout: Path) -> tuple[float, Report]:
    """Seconds and report of one run of the (template) machine ``m``."""
    chans = std_channels(stdin, stdout)
    try:
        t, rep = common.timed(m.run, chans, argv, {})
    finally:
        for c in chans:
            c.close()
    return t, check(rep, argv[0])


def guard_overhead(tmp: Path, size: int, reps: int) -> dict[str, list[float]]:
    wc = common.build('wc')
    data, out = tmp / 'wc.in', tmp / 'wc.out'
    data.write_bytes(common.text(size))
    times: dict[str, list[float]] = {'guard': [], 'nohook': []}
    outputs = {}
    insns = 0
    for _ in range(reps):
        for kind in times:
            m = machine(wc, hooks=kind == 'guard')
            try:
                t, rep = emulated(m, ['wc'], data, out)
            finally:
                m.close()
            times[kind].append(t)
            outputs[kind] = out.read_bytes()
            if kind == 'guard':
                insns = rep.accounting.fuel
            elif rep.accounting.fuel:
                sys.exit('the block hook is still charging fuel: has '
                         'zvm_core.engines.emulated.guard._HOOKS changed? '
                         '(bench/sandbox.py no_block_hook)')
    if outputs['guard'] != outputs['nohook']:
        sys.exit(f'outputs differ: {outputs}')
    g, n = p50(times['guard']), p50(times['nohook'])
    table(f'Guard + fuel overhead: wc over {common.mib(size)} ({reps} reps each, interleaved)',
          ['machine', 'p50', 'min', 'max', 'code MB/s (p50)', 'ratio'],
          [['no block hook (no guard, no fuel)', ms(n), ms(min(times['nohook'])),
            ms(max(times['nohook'])), f'{insns / n / 1e6:.0f}', '1.00x'],
           ['guard + fuel (C UC_HOOK_BLOCK)', ms(g), ms(min(times['guard'])),
            ms(max(times['guard'])), f'{insns / g / 1e6:.0f}', ratio(g, n)]],
          note=f'fuel used (bytes of guest code executed): {insns:,}; '
               'goal (issue 2): ratio <= 1.5x')
    return times


def emulated_vs_native(tmp: Path, wc_size: int, sort_size: int, reps: int) -> None:
    rows = []
    for name, size in (('wc', wc_size), ('sort', sort_size)):
        prog = common.build(name)
        data, out = tmp / f'{name}.in', tmp / f'{name}.out'
        data.write_bytes(common.text(size, seed=1))
        emu, nat, nat_self = [], [], []
        insns = 0
        native(prog, data, out)                               # page cache, warm-up
        for _ in range(reps):
            chans = std_channels(data, out)
            t, rep = common.timed(run, prog, chans, argv=[name])
            check(rep, name)
            insns = rep.accounting.fuel
            emu.append(t)
            emulated_out = out.read_bytes()
            w, s = native(prog, data, out)
            nat.append(w)
            nat_self.append(s)
            if out.read_bytes() != emulated_out:
                sys.exit(f'{name}: native and emulated outputs differ')
        e, n, s = p50(emu), p50(nat), p50(nat_self)
        rows.append([f'{name} {common.mib(size)}', ms(e), ms(n), ms(s), ratio(e, n),
                     ratio(e, s), f'{insns / e / 1e6:.0f}', f'{insns / s / 1e6:.0f}'])
    table(f'Emulated vs native ({reps} reps, medians)',
          ['workload', 'emulated run()', 'native w/ spawn', 'native main only',
           'ratio w/ spawn', 'ratio main only', 'emu code MB/s', 'native code MB/s'], rows,
          note='code MB/s = fuel (bytes of guest code executed, counted by the guard) / time')


# -- syscall round trip --------------------------------------------------------

def per_call(prog: Path, name: str, tmp: Path, n: int, reps: int
             ) -> tuple[list[float], list[float], int]:
    """t(0) and t(n) of ``prog`` on two template machines (argv[1] = calls), and
    the system calls the t(n) run made."""
    null = tmp / 'empty'
    null.write_bytes(b'')
    out = tmp / f'{name}.out'
    m0, m1 = machine(prog), machine(prog)
    t0s, t1s, syscalls = [], [], 0
    for _ in range(reps + 1):                 # the first round translates the code
        a, _ = emulated(m0, [name, '0'], null, out)
        b, rep = emulated(m1, [name, str(n)], null, out)
        syscalls = rep.accounting.syscalls
        t0s.append(a)
        t1s.append(b)
    m0.close()
    m1.close()
    return t0s[1:], t1s[1:], syscalls


def syscall_round_trip(tmp: Path, n: int, reps: int) -> None:
    prog = common.build('getpid')
    null, out = tmp / 'empty', tmp / 'getpid.out'
    t0s, t1s, syscalls = per_call(prog, 'getpid', tmp, n, reps)
    emu = (p50(t1s) - p50(t0s)) / n
    trap0, trap1, _ = per_call(common.build('trap', flags=('-O2', f'-I{SDK}')), 'trap', tmp,
                               n, reps)
    trap = (p50(trap1) - p50(trap0)) / n
    nn = n * 20
    nat0 = [native(prog, null, out, ('0',))[0] for _ in range(reps)]
    nat1 = [native(prog, null, out, (str(nn),))[0] for _ in range(reps)]
    nat = (p50(nat1) - p50(nat0)) / nn
    table(f'Syscall round trip: raw getpid loop, (t(N) - t(0)) / N ({reps} reps, medians)',
          ['where', 'N', 't(0) p50', 't(N) p50', 'per call', 'ratio'],
          [['emulated (template machine)', f'{n:,}', ms(p50(t0s)), ms(p50(t1s)), us(emu),
            ratio(emu, nat)],
           ['emulated ZeroVM trap (zvm_pwrite, 0 bytes)', f'{n:,}', ms(p50(trap0)),
            ms(p50(trap1)), us(trap), ratio(trap, nat)],
           ['native process', f'{nn:,}', ms(p50(nat0)), ms(p50(nat1)), us(nat), '1.00x']],
          note=f'syscalls counted in the emulated t(N) run: {syscalls:,}; '
               'goal (issue 2): emulated <= 10 µs')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='small sizes, few repetitions')
    opts = parser.parse_args(argv)
    q = opts.quick
    print(common.environment())
    with tempfile.TemporaryDirectory(prefix='zvm-bench-') as d:
        tmp = Path(d)
        cold_start(reps=40 if q else 300, cli_reps=3 if q else 10)
        guard_overhead(tmp, size=(1 if q else 10) << 20, reps=2 if q else 5)
        emulated_vs_native(tmp, wc_size=(1 if q else 10) << 20,
                           sort_size=(256 << 10) if q else (4 << 20), reps=2 if q else 5)
        syscall_round_trip(tmp, n=20_000 if q else 200_000, reps=3 if q else 7)
    return 0


if __name__ == '__main__':
    sys.exit(main())

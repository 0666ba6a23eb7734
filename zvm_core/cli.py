"""The ``zvm`` command: validate or run a static x86-64 program in the sandbox.

    zvm validate [--rdtsc virtualize|reject] PROGRAM
    zvm run [--stdin F] [--stdout F] [--stderr F] [--input F] [--output F]
            [--memory BYTES] [--fuel N] [--timeout S] [--seed N] [--epoch SECONDS]
            [--env K=V ...] [--quota ALIAS=key:value,...] [--rdtsc POLICY]
            [--report F|-] [--repeat N] PROGRAM [ARGS...]

``run`` exits with the guest's return code when the report status is ``ok``
and with 125 otherwise; ``--report -`` writes the JSON report to stderr.
``--repeat N`` runs the program N times through a warm worker
(``zvm_core.pool``) and prints the start-up times: the first run builds the
template, the others reuse it.
Usage errors (unreadable program, bad option values) exit with 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from zvm_core.channels import READ, WRITE, Channel, ChannelError, FdBacking, Quota
from zvm_core.elf import ElfError, load_program
from zvm_core.executor import DEFAULT_FUEL, DEFAULT_MEMORY, DEFAULT_TIMEOUT, Limits, run
from zvm_core.pool import ChannelSpec, Pool
from zvm_core.report import Report
from zvm_core.validator import Policy, default_cache, validate

EXIT_NOT_OK = 125
EXIT_USAGE = 2


def _int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f'not an integer: {text!r}') from None
    if value < 0:
        raise argparse.ArgumentTypeError(f'must not be negative: {text!r}')
    return value


def _env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition('=')
    if not sep or not key:
        raise argparse.ArgumentTypeError(f'expected K=V, got {text!r}')
    return key, value


def _quota(text: str) -> tuple[str, str]:
    alias, sep, spec = text.partition('=')
    if not sep or not alias.startswith('/dev/'):
        raise argparse.ArgumentTypeError(f'expected /dev/NAME=key:value,..., got {text!r}')
    return alias, spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='zvm', description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    rdtsc = dict(choices=('virtualize', 'reject'), default='virtualize',
                 help='rdtsc/rdtscp: answer from a virtual counter, or reject the program')
    v = sub.add_parser('validate', help='check a program against the sandbox rules')
    v.add_argument('--rdtsc', **rdtsc)
    v.add_argument('program')
    r = sub.add_parser('run', help='run a program in the sandbox')
    for name in ('stdin', 'stdout', 'stderr', 'input', 'output'):
        r.add_argument(f'--{name}', metavar='FILE', help=f'host file for /dev/{name}')
    r.add_argument('--memory', type=_int, default=DEFAULT_MEMORY, help='guest memory, bytes')
    r.add_argument('--fuel', type=_int, default=DEFAULT_FUEL,
                   help='budget in bytes of guest code executed (deterministic)')
    r.add_argument('--timeout', type=float, default=DEFAULT_TIMEOUT,
                   help='wall-clock safety limit, seconds')
    r.add_argument('--seed', type=_int, default=0, help='seed of getrandom and AT_RANDOM')
    r.add_argument('--epoch', type=_int, default=0, help='guest clock start, Unix seconds')
    r.add_argument('--env', type=_env, action='append', default=[], metavar='K=V')
    r.add_argument('--quota', type=_quota, action='append', default=[],
                   metavar='ALIAS=key:value,...',
                   help='channel limits; keys gets, get_size, puts, put_size')
    r.add_argument('--rdtsc', **rdtsc)
    r.add_argument('--report', metavar='FILE', help='write the JSON report here (- = stderr)')
    r.add_argument('--repeat', type=_int, default=1, metavar='N',
                   help='run N times through a warm worker and print the timings')
    r.add_argument('program')
    r.add_argument('args', nargs=argparse.REMAINDER)
    return parser


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _channels(opts: argparse.Namespace) -> list[Channel]:
    quotas: dict[str, Quota] = {}
    for alias, spec in opts.quota:
        quotas[alias] = Quota.parse(spec, quotas.get(alias))
    spec = (('/dev/stdin', opts.stdin, 0, READ, False),
            ('/dev/stdout', opts.stdout, 1, WRITE, False),
            ('/dev/stderr', opts.stderr, 2, WRITE, False),
            ('/dev/input', opts.input, None, READ, True),
            ('/dev/output', opts.output, None, WRITE, True))
    channels = []
    try:
        for alias, path, inherit, mode, random in spec:
            if path is not None:
                backing = FdBacking.open(path, mode)
            elif inherit is not None and _is_open(inherit):
                backing = FdBacking(inherit, owned=False)
            else:
                continue
            channels.append(Channel(alias, backing, mode, random=random and backing.seekable,
                                    quota=quotas.pop(alias, Quota())))
    except ChannelError:
        for ch in channels:
            ch.close()
        raise
    if quotas:
        raise ChannelError(f'--quota for undeclared channel(s): {", ".join(quotas)}')
    return channels


def _cmd_validate(opts: argparse.Namespace) -> int:
    try:
        program = load_program(opts.program)
    except ElfError as e:
        print(f'{opts.program}: invalid: {e}')
        return 1
    verdict = validate(program, Policy(rdtsc=opts.rdtsc), default_cache())
    if verdict.ok:
        print(f'{opts.program}: valid ({verdict.instructions} instructions'
              f'{", cached" if verdict.cached else ""})')
        return 0
    print(f'{opts.program}: invalid: {len(verdict.violations)} violation(s)')
    for v in verdict.violations:
        print(f'  {v.rule} {v.address:#x} {v.text}')
    return 1


def _cmd_run(opts: argparse.Namespace) -> int:
    try:
        limits = Limits(opts.memory, opts.fuel, opts.timeout)
    except ValueError as e:
        raise ChannelError(f'bad limit: {e}') from None
    argv = [os.path.basename(opts.program), *opts.args]
    if opts.repeat > 1:
        report = _repeat(opts, argv, limits)
    else:
        report = run(opts.program, _channels(opts), argv=argv, env=dict(opts.env),
                     limits=limits, seed=opts.seed, epoch=opts.epoch,
                     policy=Policy(rdtsc=opts.rdtsc))
    text = report.to_json() + '\n'
    if opts.report == '-':
        sys.stderr.write(text)
    elif opts.report:
        with open(opts.report, 'w') as f:
            f.write(text)
    if not report.ok:
        print(f'zvm: {report.status}: {report.message}', file=sys.stderr)
        return EXIT_NOT_OK
    return report.retcode


def _repeat(opts: argparse.Namespace, argv: list[str], limits: Limits) -> Report:
    """``--repeat``: the same run N times through one warm worker, timed."""
    times = []
    with Pool(size=1) as pool:
        for _ in range(opts.repeat):
            channels = _channels(opts)
            specs = [ChannelSpec(c.alias, c.backing.fd, c.mode, c.random, c.quota)
                     for c in channels]
            start = time.perf_counter()
            try:
                report = pool.run(opts.program, specs, argv=argv, env=dict(opts.env),
                                  limits=limits, seed=opts.seed, epoch=opts.epoch,
                                  rdtsc=opts.rdtsc)
            finally:
                for ch in channels:
                    ch.close()
            times.append((time.perf_counter() - start) * 1000)
    rest = sorted(times[1:])
    print(f'zvm: {len(times)} runs through a warm worker: first {times[0]:.3f} ms, then '
          f'p50 {rest[len(rest) // 2]:.3f} ms, max {rest[-1]:.3f} ms', file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    try:
        if opts.command == 'validate':
            return _cmd_validate(opts)
        return _cmd_run(opts)
    except (OSError, ChannelError) as e:
        print(f'zvm: {e}', file=sys.stderr)
        return EXIT_USAGE


if __name__ == '__main__':
    sys.exit(main())

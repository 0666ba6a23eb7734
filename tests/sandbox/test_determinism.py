"""Same program + same inputs = byte-identical outputs and reports, every run.

What may vary between runs is only ``accounting.wall_time`` and whether the
verdict came from the cache (``validation.state`` ok/cached).  Seeds and the
epoch change exactly what they should: random bytes and clock values.
"""

from __future__ import annotations

import copy

import pytest

from .test_programs import text_input

CASES = {
    'hello': dict(),
    'wc': dict(stdin=text_input(lines=200)),
    'sort': dict(input=text_input(lines=200, seed=5), output=True),
    'malloc': dict(),
    'args_env': dict(args=('a', 'b c'), opts=('--env', 'A=1', '--env', 'B=2')),
    'timeprint': dict(),
    'fileio': dict(input=b'some input bytes\n' * 10, output=True),
    'getpid': dict(args=('300',)),
    'addrs': dict(),
    'sleep': dict(),
}


def stable(report: dict) -> dict:
    """The report without the fields that may legitimately differ between runs."""
    r = copy.deepcopy(report)
    r['accounting'].pop('wall_time')
    r['validation'].pop('state')
    return r


def twice(zvm, prog, case: dict, opts=()):
    case = dict(case)
    args = case.pop('args', ())
    opts = [*case.pop('opts', ()), *opts]
    return [zvm.run(prog, *args, opts=opts, **case) for _ in range(2)]


GLIBC = ('hello', 'wc', 'sort', 'malloc', 'timeprint')


@pytest.mark.parametrize('name, cc', [(n, 'musl-gcc') for n in CASES]
                         + [(n, 'gcc') for n in GLIBC])
def test_two_runs_are_identical(guest, zvm, etag, name, cc, engine):
    prog = guest(name, cc)
    a, b = twice(zvm, prog, CASES[name])
    assert a.status == 'ok', a
    assert (a.stdout, a.stderr, a.output) == (b.stdout, b.stderr, b.output)
    assert a.returncode == b.returncode == 0
    assert stable(a.report) == stable(b.report)
    assert a.report['etags']['/dev/stdout'] == etag(a.stdout)
    if a.output is not None:
        assert a.report['etags']['/dev/output'] == etag(a.output)


def clock_and_random(stdout: bytes) -> tuple[list[bytes], list[bytes]]:
    lines = stdout.splitlines()
    rnd = [line for line in lines if line.startswith((b'random ', b'at_random '))]
    assert len(rnd) == 2, stdout
    return [line for line in lines if line not in rnd], rnd


@pytest.mark.parametrize('cc', ['musl-gcc', 'gcc'])
def test_seed_changes_random_bytes_only(guest, zvm, cc, engine):
    prog = guest('timeprint', cc)
    runs = {seed: zvm.run(prog, opts=['--seed', str(seed)]) for seed in (0, 1, 2**40 + 3)}
    default = zvm.run(prog)
    assert all(r.status == 'ok' for r in [*runs.values(), default]), runs
    assert default.stdout == runs[0].stdout                  # the default seed is 0
    clocks = {seed: clock_and_random(r.stdout)[0] for seed, r in runs.items()}
    randoms = {seed: clock_and_random(r.stdout)[1] for seed, r in runs.items()}
    assert clocks[0] == clocks[1] == clocks[2**40 + 3]
    for i in range(2):                     # getrandom and AT_RANDOM each change
        assert len({rnd[i] for rnd in randoms.values()}) == 3, randoms


def test_epoch_changes_clock_lines_only(guest, zvm, engine):
    prog = guest('timeprint')
    a = zvm.run(prog, opts=['--epoch', '1000'])
    b = zvm.run(prog, opts=['--epoch', '2000'])
    clock_a, rnd_a = clock_and_random(a.stdout)
    clock_b, rnd_b = clock_and_random(b.stdout)
    assert rnd_a == rnd_b
    assert clock_a != clock_b
    assert b'time 1000' in clock_a and b'time 2000' in clock_b
    # monotonic time does not depend on the epoch
    assert [c for c in clock_a if c.startswith(b'monotonic ')] == \
           [c for c in clock_b if c.startswith(b'monotonic ')]


@pytest.mark.emulated_only(reason='fuel is the emulated engine\'s deterministic budget')
def test_fuel_stops_at_the_same_point(guest, zvm, engine):
    a, b = twice(zvm, guest('loop'), {}, opts=['--fuel', '5000000'])
    assert a.status == b.status == 'fuel', a
    assert stable(a.report) == stable(b.report)


def test_memory_bomb_fails_at_the_same_point(guest, zvm, engine):
    a, b = twice(zvm, guest('membomb'), {}, opts=['--memory', str(48 << 20)])
    assert a.status == b.status == 'memory', a
    assert a.stderr == b.stderr and a.stderr
    assert stable(a.report) == stable(b.report)


def test_quota_stops_at_the_same_point(guest, zvm, engine):
    a, b = twice(zvm, guest('flood'), {}, opts=['--quota', '/dev/stdout=put_size:20000'])
    assert a.status == b.status == 'quota', a
    assert a.stdout == b.stdout
    assert stable(a.report) == stable(b.report)


@pytest.mark.emulated_only(reason='natively the host CPU answers cpuid (its APIC id '
                           'differs between cores), unless the CPU can fault it; the '
                           'emulated engine answers from a fixed table')
def test_cpuid_is_the_same_every_run(guest, zvm, engine):
    a, b = twice(zvm, guest('cpuid'), {})
    assert a.status == 'ok', a
    assert a.stdout == b.stdout and stable(a.report) == stable(b.report)

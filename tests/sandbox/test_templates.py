"""A reused machine (an emulated template instance) must be indistinguishable from a
fresh emulated run."""

from __future__ import annotations

import hashlib

import pytest

from zvm_core.channels import READ, WRITE, Channel, MemoryBacking
from zvm_core.executor import Limits, run
from zvm_core.validator import VerdictCache

INPUTS = [b'', b'one two three\n', b'x' * 5000 + b'\n' * 300, b'a b\nc d e\n' * 2000]


def _channels(stdin: bytes) -> tuple[list[Channel], MemoryBacking]:
    out = MemoryBacking()
    return [Channel('/dev/stdin', MemoryBacking(stdin), READ),
            Channel('/dev/stdout', out, WRITE),
            Channel('/dev/stderr', MemoryBacking(), WRITE)], out


def _summary(report, out: MemoryBacking) -> dict:
    acc = report.accounting
    return {'status': report.status, 'retcode': report.retcode, 'message': report.message,
            'etags': report.etags, 'fuel': acc.fuel, 'syscalls': acc.syscalls,
            'channels': {k: vars(v) for k, v in acc.channels.items()},
            'peak_memory': acc.peak_memory, 'output': bytes(out.data)}


def _fresh(path, argv, stdin: bytes) -> dict:
    channels, out = _channels(stdin)
    return _summary(run(path, channels, argv=argv, cache=VerdictCache(None), engine='emulated'),
                    out)


@pytest.mark.parametrize('name,cc', [('wc', 'musl-gcc'), ('cat', 'musl-gcc'),
                                     ('wc', 'gcc'), ('malloc', 'musl-gcc')])
def test_reused_runs_equal_fresh_runs(guest, machine_for, name, cc):
    path = guest(name, cc=cc)
    machine = machine_for(path)
    for stdin in INPUTS + INPUTS[::-1]:
        channels, out = _channels(stdin)
        reused = _summary(machine.run(channels, [name], {}), out)
        assert reused == _fresh(path, [name], stdin), stdin[:40]


def test_run_cannot_see_what_the_last_run_left(guest, machine_for):
    """bss, data, rodata (made writable), heap and stack all come back pristine."""
    path = guest('leftover', flags=('-O1',))
    machine = machine_for(path)
    for fill in 'abca':     # each run dirties everything with its own byte
        channels, out = _channels(b'')
        report = machine.run(channels, ['leftover', fill], {})
        assert report.status == 'ok', report.message
        fresh = _fresh(path, ['leftover', fill], b'')['output']
        assert bytes(out.data) == fresh
        assert b'bss 0\n' in fresh and b'heap 0 0\n' in fresh
        assert b'data initialised data\n' in fresh
        assert b'rodata read-only data\n' in fresh and b'mprotect refused' not in fresh


def test_fuel_stop_is_the_same_on_a_reused_machine(guest, machine_for):
    path = guest('loop')
    machine = machine_for(path)
    reports = []
    for _ in range(3):
        channels, _out = _channels(b'')
        reports.append(machine.run(channels, ['loop'], {}, limits=Limits(fuel=2_000_000)))
    assert {r.status for r in reports} == {'fuel'}
    assert len({(r.message, r.accounting.fuel) for r in reports}) == 1
    channels, _out = _channels(b'')
    fresh = run(path, channels, argv=['loop'], limits=Limits(fuel=2_000_000))
    assert (fresh.message, fresh.accounting.fuel) == \
        (reports[0].message, reports[0].accounting.fuel)


def test_different_seeds_through_one_template(guest, machine_for):
    path = guest('timeprint')
    machine = machine_for(path)
    seen = {}
    for seed in (1, 2, 1):
        channels, out = _channels(b'')
        assert machine.run(channels, ['timeprint'], {}, seed=seed).status == 'ok'
        seen.setdefault(seed, set()).add(hashlib.md5(out.data).hexdigest())
    assert len(seen[1]) == 1 and seen[1] != seen[2]

"""A snapshot's personality state (``prefix.Personality``) is restored into every run
resumed from it: what one run changes, in place or not, is not there for the next."""

from __future__ import annotations

import collections
import copy
import types

from zvm_core import prefix
from zvm_core.channels import WRITE, Channel, MemoryBacking
from zvm_core.memory import PAGE, Arena
from zvm_core.syscalls.io import OpenFile
from zvm_core.syscalls.proc import _run_state as run_state
from zvm_core.syscalls.random import SeededStream
from zvm_core.syscalls.time import VirtualClock


class Space:
    """Guest memory that only takes zeroings (all the arena asks of it here)."""

    def zero(self, start: int, end: int) -> None:
        pass


def _guest(channels: dict) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        arena=Arena(Space(), 0x100000, 0x100000 + 256 * PAGE), fds={}, channels=channels,
        image=None, clock=VirtualClock(0, lambda: 0), rng=SeededStream(7),
        unknown=collections.Counter(), runs=1)


def _state(p) -> tuple:
    return ({k: v for k, v in vars(p.arena).items() if k != 'space'},
            {fd: (f.channel.alias, f.access, f.pos, f.append) for fd, f in p.fds.items()},
            p.clock.slept, p.rng.take(64), dict(p.unknown),
            {k: v for k, v in run_state(p).items() if k != 'run'})


def _change(p) -> None:
    """All a run may do to the restored state, in place where the syscalls do so."""
    a = p.arena
    lo = a.allocate(8 * PAGE)
    a.allocate(8 * PAGE)
    a.release(lo, lo + 4 * PAGE)            # a hole and memory to zero
    a.allocate(2 * PAGE)                    # the hole, split in place
    a.held.add(lo + 6 * PAGE)
    a.set_brk(a.brk + 3 * PAGE)
    p.fds[0].pos += 10
    p.fds[5] = p.fds.pop(1)
    p.clock.slept += 99
    p.rng.take(100)
    p.unknown['ioctl'] += 1
    state = run_state(p)
    state['actions'][10] = b'\1' * 32
    state['actions'][13] = b'\2' * 32
    state['mask'] |= 1 << 11


def test_runs_cannot_change_what_the_next_run_restores():
    channels = {'/dev/stdout': Channel('/dev/stdout', MemoryBacking(), WRITE)}
    recorded = _guest(channels)
    a = recorded.arena
    a.set_brk(a.start + 4 * PAGE)
    kept, gone = a.allocate(2 * PAGE), a.allocate(2 * PAGE)
    a.allocate(PAGE)
    a.release(gone, gone + 2 * PAGE)        # a hole and stale pages at the cut
    a.held.add(kept)
    out = OpenFile(channels['/dev/stdout'], WRITE)
    recorded.fds = {0: out, 1: out}
    recorded.rng.take(10)
    run_state(recorded)['actions'][13] = b'\3' * 32
    snap = prefix.Personality.capture(recorded, prefix.Recorder())

    fresh = _guest(channels)
    snap.restore(fresh)
    expected = copy.deepcopy(_state(fresh))     # what it holds, not its objects
    for _ in range(2):
        run = _guest(channels)
        snap.restore(run)
        _change(run)
    last = _guest(channels)
    snap.restore(last)
    assert _state(last) == expected
    assert last.fds[0] is last.fds[1]       # dup'd descriptors share a position

"""The native engine's guest memory bookkeeping that needs no guest process, and
what a cold run keeps per program (its layout) and knows from its verdict (whether it
needs the tracer)."""

from __future__ import annotations

import ctypes
import os

import pytest

from zvm_core import validator
from zvm_core.elf import load_program
from zvm_core.engines.native.loader import HUGE, SHARED, Spec
from zvm_core.engines.native.memory import SHARED_MOST, ProcessMemory, Region
from zvm_core.engines.native.supervisor import Guest, _layout
from zvm_core.executor import SetupError, heap_bounds
from zvm_core.memory import PAGE, STACK_TOP
from zvm_core.prepare import needs_tracer, prepare
from zvm_core.validator import Policy, VerdictCache


def test_a_template_s_runs_share_its_sorted_layout_not_their_protections() -> None:
    """A template's runs take its regions, sorted once, and the C loop's table of
    them (``like=``); the page protections a run records stay its own."""
    regions = [Region(0x3000, 0x4000, 3), Region(0x1000, 0x2000, 5)]
    first = ProcessMemory(0, regions)
    again = ProcessMemory(0, regions, like=first)
    assert first.regions == (Region(0x1000, 0x2000, 5), Region(0x3000, 0x4000, 3))
    assert again.regions is first.regions
    first._memfd = again._memfd = 9         # a table needs /proc/PID/mem (never used here)
    assert again.table()[2] == first.table()[2] == ((0x1000, 0x2000, 5, 0), (0x3000, 0x4000, 3, 0))
    assert again.table()[3] is not first.table()[3]
    assert again.region_at(0x3800) == Region(0x3000, 0x4000, 3)
    first._memfd = again._memfd = None


def test_a_spawned_guest_shares_its_stack_and_small_data_segments_only() -> None:
    """share() marks the stack and the writable data segments of at most SHARED_MOST
    SHARED, one after another in its memfd, and gives the C loop where it maps each
    (table()); code, the heap (HUGE) and a big static array stay private; close()
    takes the mapping back."""
    top = STACK_TOP
    regions = [Region(0x400000, 0x401000, 5), Region(0x401000, 0x403000, 3),
               Region(0x403000, 0x403000 + SHARED_MOST + PAGE, 3),
               Region(0x2000000, 0x8000000, 3), Region(top - (16 << 20), top, 3)]
    mem = ProcessMemory(0, regions)
    spec = Spec(entry=0x400000)
    spec.maps = [(r.start, r.end - r.start, r.prot | (HUGE if r.start == 0x2000000 else 0))
                 for r in regions]
    fd = mem.share(spec)
    assert fd is not None
    try:
        assert [prot & SHARED for _, _, prot in spec.maps] == [0, SHARED, 0, 0, SHARED]
        assert os.fstat(fd).st_size == 0x2000 + (16 << 20)
        mem._memfd = 9          # a table needs /proc/PID/mem (never used here)
        hosts = [host for _, _, _, host in mem.table()[2]]
        assert hosts[0] == hosts[2] == hosts[3] == 0
        assert hosts[4] == hosts[1] + 0x2000                # laid one after another
        ctypes.memmove(hosts[4] + (16 << 20) - 3, b'top', 3)
        assert os.pread(fd, 3, 0x2000 + (16 << 20) - 3) == b'top'
    finally:
        mem._memfd = None
        mem.close()
    assert [host for _, _, _, host in mem._spans] == [0] * 5
    with pytest.raises(OSError):
        os.fstat(fd)


def test_spawned_runs_share_a_layout_by_program_and_memory(guest) -> None:
    """A cold run's layout is made once per program bytes and memory limit: the
    same for another load of the same file, another for another limit, and a
    limit too small for the program is refused every time (never kept)."""
    path = guest('hello')
    first, again = load_program(path), load_program(path)
    layout = _layout(first, 64 << 20)
    assert _layout(again, 64 << 20) is layout
    other = _layout(first, 128 << 20)
    assert other is not layout and other.heap_size > layout.heap_size
    run = Guest(again, 64 << 20, layout)
    assert (run.program, run.regions, run.heap_start, run.heap_size) == \
        (again, layout.regions, layout.heap_start, layout.heap_size)
    assert run.arena is not layout.arena and run.mem is not layout.mem
    for _ in range(2):
        with pytest.raises(SetupError, match='leaves no heap'):
            _layout(first, 1 << 20)


def test_a_memory_limit_too_small_says_the_least_that_runs(guest) -> None:
    """It gave the image, stack and heap sizes but not their sum, the limit to give."""
    program = load_program(guest('hello'))
    with pytest.raises(SetupError) as e:
        heap_bounds(program, 1 << 20)
    need = int(str(e.value).rsplit('at least ', 1)[1].split()[0])
    heap_bounds(program, need)
    with pytest.raises(SetupError):
        heap_bounds(program, need - 4096)


@pytest.mark.parametrize('name, traced', [('rdtsc', True), ('hello', False)])
def test_a_new_program_is_validated_once_for_the_native_engine(guest, monkeypatch, name,
                                                                traced) -> None:
    """Whether a native run must be traced comes from the run's own verdict (the
    instructions the sweep noted), not from a second validation under
    ``rdtsc=reject``: a new program costs one sweep, and a cached one none."""
    sweeps = []
    real = validator._validate
    monkeypatch.setattr(validator, '_validate',
                        lambda program, policy: sweeps.append(policy) or real(program, policy))
    cache = VerdictCache(None)
    prepared = prepare(load_program(guest(name)), cache=cache, engine='native')
    assert sweeps == [Policy()]
    assert needs_tracer(prepared.verdict) is traced
    assert ('rdtsc' in prepared.verdict.traced) is traced
    prepare(load_program(guest(name)), cache=cache, engine='native')
    assert len(sweeps) == 1

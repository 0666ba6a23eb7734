"""The native engine's guest memory bookkeeping that needs no guest process, and
what a cold run keeps per program (its layout) and knows from its verdict (whether it
needs the tracer)."""

from __future__ import annotations

import pytest

from zvm_core import validator
from zvm_core.elf import load_program
from zvm_core.engines.native.memory import ProcessMemory, Region
from zvm_core.engines.native.supervisor import Guest, _layout
from zvm_core.executor import SetupError
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
    assert again.table()[2] == first.table()[2] == ((0x1000, 0x2000, 5), (0x3000, 0x4000, 3))
    assert again.table()[3] is not first.table()[3]
    assert again.region_at(0x3800) == Region(0x3000, 0x4000, 3)
    first._memfd = again._memfd = None


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

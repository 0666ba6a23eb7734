"""The native engine's guest memory bookkeeping that needs no guest process."""

from __future__ import annotations

from zvm_core.engines.native.memory import ProcessMemory, Region


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

"""One place decides what a write may put: ``Channel.write_budget``, with the room a
positional write has where it writes (``write_room``: a channel never grows past its
``put_size``).  The room's refusal was counted beside it in ``syscalls.io._write``,
and a write cut by both the room and the quota counted two cuts."""

from __future__ import annotations

from zvm_core.channels import WRITE, Channel, MemoryBacking, Quota


def _channel(held: int, put_size: int) -> Channel:
    return Channel('/dev/output', MemoryBacking(bytes(held)), WRITE, random=True,
                   quota=Quota(put_size=put_size))


def test_a_write_cut_by_the_quota_and_the_room_is_one_cut() -> None:
    ch = _channel(100, 4)
    assert ch.write_budget(200, ch.write_room(0)) == 4
    assert (ch.cut, ch.refused) == (1, 0)


def test_no_room_where_it_writes_refuses_the_write_once() -> None:
    ch = _channel(0, 8)
    assert ch.write_budget(5, ch.write_room(8)) == -1
    assert (ch.cut, ch.refused) == (1, 1)
    assert ch.write_budget(0, ch.write_room(9)) == 0        # nothing to write: no refusal
    assert (ch.cut, ch.refused) == (1, 1)


def test_the_room_bounds_the_budget_as_the_quota_does() -> None:
    ch = _channel(0, 8)
    assert ch.write_budget(5, ch.write_room(6)) == 2
    assert ch.write_budget(2, ch.write_room(6)) == 2
    assert ch.cut == 1
    assert _channel(0, 8).write_budget(5) == 5          # a sequential write: no room

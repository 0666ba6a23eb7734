"""The ZeroVM trap's Write (``zvm_core.zerovm.trap.trap_write``) under a channel quota:
ZeroVM's answers in ZeroVM's order (``src/syscalls/trap.c``: EDQUOT when the puts are
used up, then EINVAL for an offset past what the quota lets the channel hold, then the
size cut to what is left), and the quota's bookkeeping from the one place that decides
what a write may put, ``Channel.write_budget``: a write the quota refused or cut short
is one cut, a refused one also a refusal (``executor.blame_limits``)."""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from zvm_core.channels import READ, WRITE, Channel, MemoryBacking, Quota
from zvm_core.zerovm.trap import trap_write

BUF = 0x1000
DATA = bytes(range(ord('a'), ord('a') + 26)) * 4


class _Memory:
    """Guest memory of DATA at BUF, readable: all trap_write asks of it."""

    def region_at(self, addr: int):
        return object() if BUF <= addr < BUF + len(DATA) else None

    def check(self, addr: int, size: int, need: int) -> None:
        assert BUF <= addr and addr + size <= BUF + len(DATA)

    def view(self, addr: int, size: int, need: int) -> memoryview:
        return memoryview(DATA)[addr - BUF:addr - BUF + size]


def _run(ch: Channel, *writes: tuple[int, int]) -> list[int]:
    p = SimpleNamespace(mem=_Memory(), trap_channels=[ch], deadline=float('inf'))
    return [trap_write(p, 0, BUF, size, offset) for size, offset in writes]


def _channel(mode: int = WRITE, random: bool = False, append: bool = False, held: int = 0,
             **quota: int) -> Channel:
    ch = Channel('/dev/output', MemoryBacking(b'.' * held), mode, random=random,
                 quota=Quota(**quota))
    ch.append = append
    return ch


def _state(ch: Channel) -> tuple[int, int, bytes]:
    return ch.cut, ch.refused, bytes(ch.backing.data)


def test_a_sequential_write_is_cut_to_the_put_size_then_refused_as_zerovm_does():
    ch = _channel(put_size=5)
    # the caller's offset is ignored: a sequential channel writes at its put position
    assert _run(ch, (3, 99), (3, 0), (1, 0)) == [3, 2, -errno.EINVAL]
    assert _state(ch) == (2, 1, b'abcab')       # the short write and the refused one


def test_the_puts_used_up_is_edquot_before_any_offset_check():
    ch = _channel(random=True, puts=1, put_size=4)
    assert _run(ch, (2, 0), (2, 100), (2, 0)) == [2, -errno.EDQUOT, -errno.EDQUOT]
    assert _state(ch) == (2, 2, b'ab')


def test_a_positional_write_has_the_room_where_it_writes():
    ch = _channel(random=True, put_size=8)
    assert _run(ch, (4, 6), (3, 0)) == [2, 3]   # a channel never grows past its put_size
    assert _state(ch) == (1, 0, b'abc\0\0\0ab')
    assert _run(ch, (1, 8)) == [-errno.EINVAL]  # at the put_size of a write-only channel
    assert _state(ch) == (2, 1, b'abc\0\0\0ab')


def test_past_the_quota_a_readable_channel_is_edquot_then_einval():
    ch = _channel(READ | WRITE, random=True, held=16, put_size=8)
    assert _run(ch, (2, 14), (4, 20), (1, 24)) == [2, -errno.EDQUOT, -errno.EINVAL]
    assert _state(ch) == (2, 2, b'.' * 14 + b'ab')
    assert _run(ch, (4, 0)) == [4]              # inside what it held: the room is its size
    assert ch.cut == 2


def test_an_appendable_channel_writes_at_its_end():
    ch = _channel(random=True, append=True, held=1, put_size=4)
    assert _run(ch, (2, 0), (3, 0)) == [2, 2]
    assert _state(ch) == (1, 0, b'.abab')
    ch = _channel(random=True, append=True, held=3, put_size=4)
    assert _run(ch, (2, 0), (3, 0)) == [2, -errno.EINVAL]   # its end is past the put_size
    assert _state(ch) == (1, 0, b'...ab')


@pytest.mark.parametrize(('size', 'offset', 'answer'), [(0, 0, 0), (-1, 0, -errno.EFAULT),
                                                        (1, -1, -errno.EINVAL)])
def test_arguments_zerovm_refuses_before_the_quota(size, offset, answer):
    ch = _channel(random=True, puts=0, put_size=0)
    assert _run(ch, (size, offset)) == [answer]
    assert _state(ch) == (0, 0, b'')


def test_a_read_only_channel_is_edquot_and_not_a_cut():
    ch = _channel(READ, random=True, held=4)
    assert _run(ch, (1, 0)) == [-errno.EDQUOT]
    assert _state(ch) == (0, 0, b'....')

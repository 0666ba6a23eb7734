"""A channel over a pipe (``FdBacking`` of a stream): every wait in one call ends
at the run's deadline, and what a call moves does not depend on how the other
end's reads or writes were split in time."""

from __future__ import annotations

import os
import threading
import time

import pytest

from zvm_core.channels import FdBacking
from zvm_core.syscalls.errors import Stop

SIZE = 1 << 20          # 16 times a pipe's default capacity


def _drain(fd: int, into: bytearray) -> threading.Thread:
    def run() -> None:
        while chunk := os.read(fd, 7000):       # small reads: the writer waits often
            into.extend(chunk)
    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.mark.parametrize('nowait', [True, False], ids=['rwf_nowait', 'poll_then_pipe_buf'])
def test_a_write_larger_than_the_pipe_is_whole_when_the_reader_reads(pipe, nowait):
    r, w = pipe
    backing = FdBacking(w, owned=False)
    backing.nowait = nowait         # False: as where the kernel refuses RWF_NOWAIT
    data = bytes(range(256)) * (SIZE // 256)
    got = bytearray()
    reader = _drain(r, got)
    assert backing.ready(True, time.monotonic() + 60)
    assert backing.write([memoryview(data)[:1000], memoryview(data)[1000:]], None) == SIZE
    os.close(w)
    reader.join()
    assert got == data


@pytest.mark.parametrize('nowait', [True, False], ids=['rwf_nowait', 'poll_then_pipe_buf'])
def test_a_write_nobody_reads_ends_at_the_deadline(pipe, nowait):
    _r, w = pipe
    backing = FdBacking(w, owned=False)
    backing.nowait = nowait
    assert backing.ready(True, time.monotonic() + 0.2)
    with pytest.raises(Stop) as stop:
        backing.write([memoryview(bytes(SIZE))], None)
    assert (stop.value.status, stop.value.message) == (
        'timeout', 'wall-clock timeout while writing a pipe')


@pytest.mark.parametrize('nowait', [True, False], ids=['rwf_nowait', 'poll_then_read'])
def test_a_read_waits_for_everything_then_for_the_deadline(pipe, nowait):
    r, w = pipe
    backing = FdBacking(r, owned=False)
    backing.nowait = nowait
    os.write(w, b'abc')
    buf = bytearray(6)
    assert backing.ready(False, time.monotonic() + 0.2)
    with pytest.raises(Stop) as stop:
        backing.readinto([memoryview(buf)], None)
    assert stop.value.message == 'wall-clock timeout while reading a pipe'
    os.write(w, b'defgh')
    os.close(w)
    buf = bytearray(6)
    assert backing.ready(False, time.monotonic() + 5)
    assert backing.readinto([memoryview(buf)], None) == 5     # what is left, to the end
    assert buf == b'defgh\0'

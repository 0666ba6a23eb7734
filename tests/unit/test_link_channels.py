"""zvm_core.channels: a channel whose content arrives while the guest runs.

:class:`LinkWriter` is the object server's side (a file that grows, a pipe
that wakes the reader), :class:`StreamBacking` the sandbox worker's: a read
returns all it asked for or stops at the end, never a short read that
depends on when the data came.
"""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

from zvm_core.channels import READ, Channel, LinkWaker, LinkWriter, StreamBacking
from zvm_core.syscalls.errors import Stop


@pytest.fixture
def waker():
    waker = LinkWaker()
    yield waker
    waker.close()


@pytest.fixture
def link(tmp_path, waker):
    writer = LinkWriter(tmp_path / 'link', waker)
    backing = StreamBacking(os.dup(writer.fd), writer.notify, '/dev/in/a', owned=True)
    yield writer, backing
    backing.close()
    writer.close()


def read(backing: StreamBacking, n: int, deadline: float | None = None) -> bytes:
    buf = bytearray(n)
    if not backing.ready(False, deadline or time.monotonic() + 5):
        return None
    got = backing.readinto([memoryview(buf)[:n // 2], memoryview(buf)[n // 2:]], None)
    return bytes(buf[:got])


def later(delay: float, *steps) -> threading.Thread:
    def go():
        for step in steps:
            time.sleep(delay)
            step()
    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_a_read_waits_for_all_it_asked_for(link) -> None:
    writer, backing = link
    writer.append(b'abc')
    thread = later(0.02, lambda: writer.append(b'def'), lambda: writer.append(b'ghij'))
    assert read(backing, 8) == b'abcdefgh'        # not 'abc', nor 'abcdef'
    thread.join()
    assert read(backing, 2) == b'ij'


def test_the_end_gives_what_is_left_then_end_of_file(link) -> None:
    writer, backing = link
    writer.append(b'hello')
    thread = later(0.02, writer.end)
    assert read(backing, 100) == b'hello'
    thread.join()
    assert read(backing, 100) == b''
    assert read(backing, 100) == b''


def test_a_guest_reads_the_same_through_a_channel(link) -> None:
    writer, backing = link
    channel = Channel('/dev/in/a', backing, READ)
    assert channel.st_mode() & 0o170000 == 0o020000           # a character device
    assert channel.size == 0
    data = os.urandom(300_000)
    thread = later(0.001, *[lambda k=k: writer.append(data[k:k + 7_000])
                            for k in range(0, len(data), 7_000)], writer.end)
    got = b''
    while chunk := read(backing, 65_536):
        assert len(chunk) == 65_536 or len(got) + len(chunk) == len(data)
        got += chunk
    thread.join()
    assert got == data


def test_an_aborted_link_fails_every_read_from_then_on_with_eio(link) -> None:
    writer, backing = link
    writer.append(b'12345')
    writer.abort()
    with pytest.raises(OSError) as err:
        read(backing, 3)
    assert err.value.errno == errno.EIO
    assert 'did not all arrive' in str(err.value)


def test_a_writer_that_goes_away_without_a_final_state_is_an_abort(link, waker) -> None:
    writer, backing = link
    writer.append(b'12')
    thread = later(0.02, lambda: os.close(waker._fd))     # the server died
    with pytest.raises(OSError) as err:
        read(backing, 3)
    thread.join()
    waker._fd = -1
    assert err.value.errno == errno.EIO


def test_links_that_share_a_waker_each_wait_for_their_own_data(tmp_path, waker) -> None:
    one, two = LinkWriter(tmp_path / 'one', waker), LinkWriter(tmp_path / 'two', waker)
    first = StreamBacking(os.dup(one.fd), waker.notify, owned=True)
    second = StreamBacking(os.dup(two.fd), waker.notify, owned=True)
    thread = later(0.01, lambda: two.append(b'22'), lambda: one.append(b'111'), two.end,
                   one.end)
    assert read(first, 3) == b'111'        # the wake-ups for two do not end the wait
    assert read(second, 10) == b'22'
    assert read(first, 1) == b''
    thread.join()
    for f in (first, second, one, two):
        f.close()


def test_waiting_ends_at_the_deadline(link) -> None:
    writer, backing = link
    stall = threading.Timer(5, writer.append, [b'late'])    # what a wait past it would read
    stall.start()
    started = time.monotonic()
    try:
        assert read(backing, 1, deadline=started + 0.05) is None  # ready(): nothing came
        assert time.monotonic() - started > 0.04
    finally:
        stall.cancel()
        stall.join()
    writer.append(b'x')
    assert backing.ready(False, time.monotonic() + 0.05)
    with pytest.raises(Stop) as stop:                              # more than came
        backing.readinto([memoryview(bytearray(2))], None)
    assert stop.value.status == 'timeout'
    assert stop.value.message == 'wall-clock timeout while reading /dev/in/a'


def test_a_read_that_gets_no_new_data_for_its_wait_stops_the_run(tmp_path, waker) -> None:
    writer = LinkWriter(tmp_path / 'link', waker)
    backing = StreamBacking(os.dup(writer.fd), writer.notify, '/dev/in/a', owned=True,
                            wait=1.0)
    try:      # 1.2 s in all, never 1 s without a byte (0.6 s to spare for a late thread)
        thread = later(0.4, *[lambda b=b: writer.append(b) for b in (b'ab', b'cd', b'ef')])
        assert read(backing, 6) == b'abcdef'
        thread.join()
        with pytest.raises(Stop) as stop:
            read(backing, 1)                  # the run's deadline is 5 s away
        assert stop.value.status == 'timeout'
        assert stop.value.message == ('no data came on /dev/in/a for 1 s (a node blocked '
                                      'on its input gives its worker back)')
    finally:
        backing.close()
        writer.close()


def test_many_appends_never_block_the_writer(link) -> None:
    writer, backing = link
    for _ in range(100_000):                  # more wake-ups than a pipe holds
        writer.append(b'z')
    writer.end()
    assert read(backing, 200_000) == b'z' * 100_000


def test_closing_the_writer_aborts_what_is_open_and_closes_its_files(tmp_path, waker) -> None:
    writer = LinkWriter(tmp_path / 'link', waker)
    backing = StreamBacking(os.dup(writer.fd), writer.notify, owned=True)
    writer.append(b'ab')
    writer.close()
    assert writer.fd == -1 and writer.notify == waker.notify >= 0
    with pytest.raises(OSError):
        read(backing, 1)
    backing.close()
    with pytest.raises(FileExistsError):          # never two writers of one file
        LinkWriter(tmp_path / 'link', waker)

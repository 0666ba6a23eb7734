"""Channels: the only files a guest can reach.

A channel is a name the guest opens (``/dev/stdin``, ``/dev/input`` ...), a
host backing (a file, an inherited descriptor, or memory), an access kind and
ZeroVM quotas: ``gets``/``get_size`` (read calls and bytes) and
``puts``/``put_size`` (write calls and bytes).  Every written channel has an
MD5 etag of its final content, which later becomes the Swift object's ETag.

:func:`zerovm_channel` opens a ZeroVM manifest ``Channel`` line the way
ZeroVM mounted it (``src/channels/preload.c``): the four access types,
regular files (write channels preallocated to ``put_size`` and truncated to
what was written at the end), character devices and FIFOs, and several
sources whose reads must agree (:class:`ReplicatedBacking`).

What the guest sees (``fstat``, ``lseek``) depends only on the declaration
and the data, never on how the host backs it: a sequential channel is a
character device, a random one a regular file; both report the size of the
data they read from a file (0 for pipes and written channels).
"""

from __future__ import annotations

import collections
import errno
import hashlib
import os
import select
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zvm_core.zerovm.manifest import ChannelDecl

from zvm_core._md5 import MD5
from zvm_core.report import ChannelAccounting, Report

UNLIMITED = (1 << 63) - 1
Expired = Callable[[], bool]        # has the run's time run out?
# The largest a written channel grows: ext4's file size limit with 4 KiB blocks (16 TiB
# less a block), the smallest of the usual Linux file systems'.  A positional write
# past it is the guest's own doing, answered as Linux answers one past a file system's
# limit (``zvm_core.syscalls.io.below_max_size``), the same on every host; the host's
# own EFBIG would end the run as a failed host write.
MAX_SIZE = (1 << 44) - 4096
_DEV_NULL = os.makedev(1, 3)
READ, WRITE = 1, 2


class ChannelError(ValueError):
    """A channel declaration the host cannot honour."""


class ChannelSetupError(ChannelError):
    """A manifest channel ZeroVM would refuse to mount; ``errno`` is ZeroVM's exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno = code


class ChannelIOError(OSError):
    """The host side of a channel failed mid-run (ZeroVM ends the session with EIO)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EIO, message)


@dataclass
class Quota:
    gets: int = UNLIMITED
    get_size: int = UNLIMITED
    puts: int = UNLIMITED
    put_size: int = UNLIMITED

    def limits(self, kind: str = '') -> list[tuple[str, int]]:
        """(name, value) of each limit set, of those named ``kind...`` (``get``,
        ``put``; '' for all): what a refusal's message names."""
        return [(k, v) for k, v in vars(self).items() if k.startswith(kind) and v != UNLIMITED]

    @classmethod
    def parse(cls, text: str, base: Quota | None = None) -> Quota:
        """``gets:N,get_size:N,puts:N,put_size:N`` (any subset) -> Quota."""
        q = Quota(**vars(base)) if base else cls()
        for item in filter(None, (p.strip() for p in text.split(','))):
            key, sep, value = item.partition(':')
            if not sep or key not in vars(q):
                raise ChannelError(f'bad quota item {item!r}: expected one of '
                                   f'{", ".join(vars(q))} as key:value')
            try:
                n = int(value, 0)
            except ValueError:
                raise ChannelError(f'bad quota value {value!r} for {key}') from None
            if n < 0:
                raise ChannelError(f'negative quota for {key}')
            setattr(q, key, n)
        return q


class Backing:
    """Host side of a channel: positional or streaming scatter/gather I/O."""

    seekable = False

    def size(self) -> int:
        return 0

    def readinto(self, bufs: list[memoryview], offset: int | None) -> int:
        raise NotImplementedError

    def write(self, bufs: list[memoryview], offset: int | None) -> int:
        raise NotImplementedError

    def content_md5(self, expired: Expired | None = None) -> str | None:
        """MD5 of the whole content, for random writes the stream hash cannot follow;
        :class:`HashTimeout` once ``expired()`` says the run's time is up."""
        return None

    def identity(self) -> tuple | None:
        """What names this content on the host (device, inode, size, mtime), for caches."""
        return None

    def ready(self, write: bool, deadline: float) -> bool:
        """Wait until I/O would not block, or until ``deadline`` (False)."""
        return True

    def truncate(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FdBacking(Backing):
    """A host descriptor: a regular file (positional I/O) or a pipe/tty (streaming).

    A read of a pipe, FIFO or socket returns everything it asked for, or what
    is left before the end, as :class:`StreamBacking` does: how the writer's
    data was split in time never shows.  A terminal stays interactive (a read
    returns what was typed).  A write to a stream returns when all of it went
    out, as a blocking write does.  Every wait ends at the run's deadline (given
    to :meth:`ready`), which stops the run with ``timeout``: a stream is read and
    written without blocking (``RWF_NOWAIT``) between polls, so a reader that
    stops reading, or a writer that never writes, holds the run no longer.
    """

    def __init__(self, fd: int, owned: bool) -> None:
        self.fd, self.owned = fd, owned
        st = os.fstat(fd)
        self.seekable = stat.S_ISREG(st.st_mode)
        # the file's identity (an open descriptor's never changes): the native C loop
        # reads it here, not with an fstat of its own per run (fastcall.c: fill_chan)
        self.dev, self.ino = st.st_dev, st.st_ino
        self.opened_size = st.st_size   # a written one empty: a run may start over on it
        null = stat.S_ISCHR(st.st_mode) and st.st_rdev == _DEV_NULL
        # /dev/null is no terminal: not asked (an ioctl per channel of a warm run)
        self.full_reads = not self.seekable and (null or not os.isatty(fd))
        # a call never waits and never stops short (the native C loop may serve it):
        # a regular file, or /dev/null (output discarded, ``zvm run > /dev/null``)
        self.direct = self.seekable or null
        # a write of at most PIPE_BUF bytes is all or nothing (the C loop may try one)
        self.pipe = stat.S_ISFIFO(st.st_mode)
        self.deadline: float | None = None
        self.nowait = True              # RWF_NOWAIT works here (until EOPNOTSUPP says not)

    @classmethod
    def open(cls, path: str | os.PathLike, mode: int) -> FdBacking:
        # written files are opened read-write too: the etag of randomly written
        # content is computed from the file at the end
        flags = {READ: os.O_RDONLY, WRITE: os.O_RDWR | os.O_CREAT | os.O_TRUNC,
                 READ | WRITE: os.O_RDWR | os.O_CREAT}[mode]
        try:
            return cls(os.open(path, flags | os.O_CLOEXEC, 0o644), owned=True)
        except OSError as e:
            raise ChannelError(f'cannot open {path}: {e.strerror}') from None

    def size(self) -> int:
        return os.fstat(self.fd).st_size if self.seekable else 0

    def identity(self) -> tuple | None:
        if not self.seekable:
            return None
        st = os.fstat(self.fd)
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns

    def readinto(self, bufs: list[memoryview], offset: int | None) -> int:
        if offset is not None:
            return os.preadv(self.fd, bufs, offset)
        if not self.full_reads:
            return os.readv(self.fd, bufs)
        total = 0
        while bufs:
            got = self._nowait(os.preadv, bufs, select.POLLIN)
            if got == 0:
                break                   # the end: the writer closed
            if got is not None:
                total += got
                bufs = skip(bufs, got)
            if bufs:
                self._wait(select.POLLIN, 'reading')
        return total

    def write(self, bufs: list[memoryview], offset: int | None) -> int:
        if offset is not None:
            return _whole(self.fd, bufs, offset)
        if self.seekable:
            return _whole(self.fd, bufs, None)
        if self.direct:
            return os.writev(self.fd, bufs)
        total = 0
        while bufs:
            try:
                done = self._nowait(os.pwritev, bufs, select.POLLOUT)
            except BrokenPipeError:
                if total:               # what went out before the reader left, as Linux
                    return total
                raise
            if done:
                total += done
                bufs = skip(bufs, done)
            if bufs:
                self._wait(select.POLLOUT, 'writing')
        return total

    def _nowait(self, call, bufs: list[memoryview], event: int) -> int | None:
        """One ``preadv``/``pwritev`` of a stream that does not wait (None: it would).
        ``RWF_NOWAIT``, not ``O_NONBLOCK``: an inherited descriptor's flags are its
        other holders' too.  Where the kernel has no ``RWF_NOWAIT`` for this file (a
        terminal; pipes before Linux 6.x), a blocking call once ready: a read takes
        what is there, a write at most ``PIPE_BUF`` bytes, which a pipe with room
        takes at once."""
        if self.nowait:
            try:
                return call(self.fd, bufs, -1, os.RWF_NOWAIT)
            except BlockingIOError:
                return None
            except OSError as e:
                if e.errno != errno.EOPNOTSUPP:
                    raise
                self.nowait = False
        if not self._poll(event, 0):
            return None
        return call(self.fd, bufs if event == select.POLLIN else clip(bufs, select.PIPE_BUF), -1)

    def _wait(self, event: int, doing: str) -> None:
        """Wait until the stream is ready again; the run's deadline stops the run."""
        if not self._poll(event, self.deadline):
            from zvm_core.syscalls.errors import Stop
            raise Stop('timeout', f'wall-clock timeout while {doing} a pipe')

    def ready(self, write: bool, deadline: float) -> bool:
        if self.seekable:
            return True
        self.deadline = deadline
        return self._poll(select.POLLOUT if write else select.POLLIN, deadline)

    def _poll(self, event: int, deadline: float | None) -> bool:
        poll = select.poll()
        poll.register(self.fd, event)
        return bool(poll.poll(None if deadline is None
                              else max(0.0, deadline - time.monotonic()) * 1000))

    def truncate(self) -> None:
        os.ftruncate(self.fd, 0)

    def content_md5(self, expired: Expired | None = None) -> str | None:
        return _file_md5(self.fd, None, expired) if self.seekable else None

    def close(self) -> None:
        if self.owned:
            self.owned = False
            os.close(self.fd)


def _whole(fd: int, bufs: list[memoryview], offset: int | None) -> int:
    """Write all of ``bufs`` to a regular file, at ``offset`` (None: its offset).  A
    regular file written short is the host failing (a full disk, a size limit): the
    rest is tried, and its error (OSError) ends the run as a failed host write, as
    when the native loop's gathered writes fail -- never a short count the guest
    sees on one engine and not on the other."""
    total = sum(map(len, bufs))
    done = 0
    while done < total:
        part = skip(bufs, done) if done else bufs
        n = os.writev(fd, part) if offset is None else os.pwritev(fd, part, offset + done)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done += n
    return done


class HashTimeout(Exception):
    """Hashing a channel's content after the run would end past the run's deadline: a
    guest that wrote one byte far past the end left a sparse file that takes minutes
    to hash (its holes are hashed as the zeros they read as)."""

    def __init__(self, hashed: int, size: int) -> None:
        super().__init__(f'{hashed} of {size} bytes hashed')
        self.size = size


def _file_md5(fd: int, end: int | None = None, expired: Expired | None = None) -> str | None:
    def chunks() -> Iterator[bytes]:
        pos = 0
        while chunk := os.pread(fd, 1 << 20 if end is None else min(1 << 20, end - pos), pos):
            yield chunk
            pos += len(chunk)
    try:
        return _md5(chunks(), expired, lambda: os.fstat(fd).st_size if end is None else end)
    except OSError:       # a write-only descriptor from the caller
        return None


def _md5(chunks: Iterable[bytes], expired: Expired | None, size: Callable[[], int]) -> str:
    """MD5 of ``chunks``; :class:`HashTimeout` (of ``size()`` bytes) once ``expired()``."""
    h = hashlib.md5()
    done = 0
    for chunk in chunks:
        h.update(chunk)
        done += len(chunk)
        if expired is not None and expired():
            raise HashTimeout(done, size())
    return h.hexdigest()


def clip(bufs: list[memoryview], limit: int) -> list[memoryview]:
    """The first ``limit`` bytes of a scatter/gather list."""
    out = []
    for buf in bufs:
        if limit <= 0:
            break
        out.append(buf[:limit])
        limit -= len(buf)
    return out


def skip(bufs: list[memoryview], count: int) -> list[memoryview]:
    """A scatter/gather list without its first ``count`` bytes."""
    out = []
    for buf in bufs:
        if count >= len(buf):
            count -= len(buf)
        else:
            out.append(buf[count:])
            count = 0
    return out


class FileBacking(FdBacking):
    """A regular file as ZeroVM keeps it: a logical size and a stream cursor of its own.

    A preallocated write channel is ``put_size`` bytes long on disk while it
    runs, so the size the guest sees is ``end`` (what was written), and the
    file is cut back to it on close.  Sequential reads and writes go through
    ``cursor`` with positional I/O; an appendable channel starts it at the end.
    """

    def __init__(self, fd: int, end: int, cursor: int = 0, preallocated: bool = False) -> None:
        super().__init__(fd, owned=True)
        self.end, self.cursor, self.preallocated = end, cursor, preallocated

    def size(self) -> int:
        return self.end

    def readinto(self, bufs: list[memoryview], offset: int | None) -> int:
        pos = self.cursor if offset is None else offset
        bufs = clip(bufs, self.end - pos)       # preallocated bytes past the end are not data
        n = os.preadv(self.fd, bufs, pos) if bufs else 0
        if offset is None:
            self.cursor = pos + n
        return n

    def write(self, bufs: list[memoryview], offset: int | None) -> int:
        pos = self.cursor if offset is None else offset
        n = _whole(self.fd, bufs, pos)
        if offset is None:
            self.cursor = pos + n
        self.end = max(self.end, pos + n)
        return n

    def truncate(self) -> None:
        os.ftruncate(self.fd, 0)
        self.end = self.cursor = 0

    def content_md5(self, expired: Expired | None = None) -> str | None:
        return _file_md5(self.fd, self.end, expired)

    def close(self) -> None:
        if self.owned and self.preallocated:
            os.ftruncate(self.fd, self.end)
        super().close()


# -- channels whose content is still arriving ---------------------------------------

LINK_HEADER = 1                      # the state byte before a link file's data
LINK_OPEN, LINK_END, LINK_ABORTED = b'\0', b'E', b'X'


class LinkWaker:
    """The pipe that wakes a reader of :class:`LinkWriter` files (one for any number
    of links: a guest waits on one channel at a time).  ``notify``, the read
    end, goes to the reader; closing the write end tells it that no more data
    will come to any link still open."""

    def __init__(self) -> None:
        self.notify, self._fd = os.pipe()
        os.set_blocking(self._fd, False)

    def wake(self) -> None:
        if self._fd >= 0:
            try:
                os.write(self._fd, b'.')
            except BlockingIOError:   # the pipe is full: the reader has wake-ups to read
                pass

    def close(self) -> None:
        for fd in (self.notify, self._fd):
            if fd >= 0:
                os.close(fd)
        self.notify = self._fd = -1


class LinkWriter:
    """The writing side of a :class:`StreamBacking`: data that arrives while the
    reader runs (the object server receiving another node's output).

    A file holds a state byte (arriving, complete, aborted) and then the data,
    appended as it comes; ``waker`` wakes the reader after each append and
    once the state is final.  ``fd`` (read-only) and ``waker.notify`` are
    what the reader's :class:`StreamBacking` gets.
    """

    def __init__(self, path: str | os.PathLike, waker: LinkWaker) -> None:
        self.waker = waker
        self._file = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.fd = -1
        try:
            os.pwrite(self._file, LINK_OPEN, 0)
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            os.close(self._file)
            raise
        self.size = 0
        self.state = LINK_OPEN

    @property
    def notify(self) -> int:
        return self.waker.notify

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self._file, view, LINK_HEADER + self.size)
            self.size += n
            view = view[n:]
        self.waker.wake()

    def end(self) -> None:
        """Everything arrived: the reader reads to the end, then gets end of file."""
        self._final(LINK_END)

    def abort(self) -> None:
        """Not everything will arrive: the reader's reads fail (EIO) from now on."""
        self._final(LINK_ABORTED)

    def _final(self, state: bytes) -> None:
        if self.state == LINK_OPEN and self._file >= 0:
            self.state = state
            os.pwrite(self._file, state, 0)
            self.waker.wake()

    def close(self) -> None:
        """Abort if still open, and close this side's descriptors (not the waker's)."""
        self.abort()
        for fd in (self._file, self.fd):
            if fd >= 0:
                os.close(fd)
        self._file = self.fd = -1


class TailBacking(Backing):
    """A write-only stream that keeps only its last ``keep`` bytes, in memory: the
    undeclared ``/dev/stderr`` of a batch's node (``zerocloud.object.batch``).  No
    quota, no disk, no descriptor: a program never fails for what it writes
    there, and its report still says why it stopped."""

    def __init__(self, keep: int) -> None:
        if keep < 1:
            raise ValueError(f'TailBacking keeps at least 1 byte, not {keep}')
        self.keep = keep
        self.data = bytearray()

    def write(self, bufs: list[memoryview], offset: int | None) -> int:
        n = 0
        for buf in bufs:
            self.data += buf[-self.keep:]
            n += len(buf)
        del self.data[:-self.keep]
        return n


class StreamBacking(Backing):
    """A sequential read channel whose content is still arriving (see :class:`LinkWriter`).

    A read waits until it can return everything it asked for, or until the end
    of the data: never a short read that depends on when the data came, so the
    guest sees exactly what it would see reading the complete file.  Once the
    writer aborted (or went away: ``notify`` at end of file while the link is
    open), reads fail with ``EIO``; a wait ends at the run's deadline (given to
    :meth:`ready`), which stops the run with ``timeout``, and so does a wait
    during which no new byte came for ``wait`` seconds (when given): a node
    blocked on a link whose writer never writes gives its worker back instead
    of holding it until the run's deadline.  Several channels may
    share one ``notify``: a wake-up meant for another only makes this one look
    at its file again.
    """

    seekable = False

    def __init__(self, fd: int, notify: int, alias: str = 'link', owned: bool = False,
                 wait: float | None = None) -> None:
        """``owned``: close ``fd`` (never ``notify``, which may be shared) on close."""
        self.fd, self.notify, self.alias, self.owned = fd, notify, alias, owned
        self.wait = wait
        os.set_blocking(notify, False)
        self.cursor = 0
        self.deadline: float | None = None
        self._writer_gone = False

    def _wait(self, want: int, deadline: float | None) -> int | None:
        """Bytes a read of ``want`` returns (fewer only at the end); None at ``deadline``."""
        poll = select.poll()
        poll.register(self.notify, select.POLLIN)
        seen, stall = -1, None
        while True:
            state = os.pread(self.fd, LINK_HEADER, 0)
            available = os.fstat(self.fd).st_size - LINK_HEADER - self.cursor
            if state == LINK_ABORTED or (state == LINK_OPEN and self._writer_gone):
                raise ChannelIOError(f'{self.alias}: its data did not all arrive (the node '
                                     'that writes it failed or the transfer was cut)')
            if available >= want or state == LINK_END:
                return min(want, available)
            if state != LINK_OPEN:
                raise ChannelIOError(f'{self.alias}: bad link state {state!r}')
            now = time.monotonic()
            if self.wait is not None and available > seen:     # progress: wait anew
                seen, stall = available, now + self.wait
            if stall is not None and now >= stall:
                from zvm_core.syscalls.errors import Stop
                raise Stop('timeout', f'no data came on {self.alias} for {self.wait:g} s '
                                      '(a node blocked on its input gives its worker back)')
            ends = [t for t in (deadline, stall) if t is not None]
            if not ends:
                timeout = None
            else:
                left = min(ends) - now
                if deadline is not None and deadline <= now:
                    return None
                timeout = max(1, int(left * 1000 + 1))
            if poll.poll(timeout):
                self._drain()

    def _drain(self) -> None:
        while True:
            try:
                got = os.read(self.notify, 4096)
            except BlockingIOError:
                return
            if not got:
                self._writer_gone = True      # the state is final now, or never will be
                return

    def ready(self, write: bool, deadline: float) -> bool:
        self.deadline = deadline
        return self._wait(1, deadline) is not None

    def readinto(self, bufs: list[memoryview], offset: int | None) -> int:
        n = self._wait(sum(map(len, bufs)), self.deadline)
        if n is None:
            from zvm_core.syscalls.errors import Stop
            raise Stop('timeout', f'wall-clock timeout while reading {self.alias}')
        bufs = clip(bufs, n)
        got = os.preadv(self.fd, bufs, LINK_HEADER + self.cursor) if bufs else 0
        self.cursor += got
        return got

    def write(self, bufs: list[memoryview], offset: int | None) -> int:
        raise ChannelIOError(f'{self.alias} is read-only')

    def close(self) -> None:
        if self.owned:
            self.owned = False
            os.close(self.fd)


class ReplicatedBacking(Backing):
    """One channel over several sources (``a;b`` in a manifest).

    ZeroVM reads every source and needs at least two identical copies of
    each read, else the session fails (``EIO``); writes go to all sources.
    """

    def __init__(self, alias: str, copies: list[Backing]) -> None:
        self.alias, self.copies = alias, copies
        self.seekable = all(c.seekable for c in copies)

    def size(self) -> int:
        return self.copies[0].size()

    def readinto(self, bufs: list[memoryview], offset: int | None) -> int:
        want = sum(map(len, bufs))
        reads = []
        for copy in self.copies:
            buf = bytearray(want)
            reads.append(bytes(buf[:copy.readinto([memoryview(buf)], offset)]))
        data, votes = collections.Counter(reads).most_common(1)[0]
        if votes < 2:
            raise ChannelIOError(f'{self.alias} failed to read: its {len(reads)} sources '
                                 'do not agree')
        pos = 0
        for buf in bufs:
            chunk = data[pos:pos + len(buf)]
            buf[:len(chunk)] = chunk
            pos += len(chunk)
        return len(data)

    def write(self, bufs: list[memoryview], offset: int | None) -> int:
        done = {copy.write(bufs, offset) for copy in self.copies}
        if len(done) != 1:
            raise ChannelIOError(f'{self.alias} failed to write: its sources took '
                                 f'{sorted(done)} bytes')
        return done.pop()

    def ready(self, write: bool, deadline: float) -> bool:
        return all(copy.ready(write, deadline) for copy in self.copies)

    def truncate(self) -> None:
        for copy in self.copies:
            copy.truncate()

    def content_md5(self, expired: Expired | None = None) -> str | None:
        return self.copies[0].content_md5(expired)

    def close(self) -> None:
        for copy in self.copies:
            copy.close()


class MemoryBacking(Backing):
    """Bytes in host memory: input given as data, or output captured for the caller."""

    seekable = True

    def __init__(self, data: bytes = b'') -> None:
        self.data = bytearray(data)
        self.cursor = 0             # streaming reads

    def size(self) -> int:
        return len(self.data)

    def readinto(self, bufs: list[memoryview], offset: int | None) -> int:
        pos = start = self.cursor if offset is None else offset
        for buf in bufs:
            chunk = self.data[pos:pos + len(buf)]
            buf[:len(chunk)] = chunk
            pos += len(chunk)
            if len(chunk) < len(buf):
                break
        if offset is None:
            self.cursor = pos
        return pos - start

    def write(self, bufs: list[memoryview], offset: int | None) -> int:
        pos = start = len(self.data) if offset is None else offset
        if pos > len(self.data):
            self.data.extend(bytes(pos - len(self.data)))
        for buf in bufs:
            self.data[pos:pos + len(buf)] = buf
            pos += len(buf)
        return pos - start

    def truncate(self) -> None:
        del self.data[:]

    def content_md5(self, expired: Expired | None = None) -> str | None:
        data = self.data        # sliced, not viewed: a view held would pin its size
        return _md5((data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)), expired,
                    lambda: len(data))


@dataclass
class Channel:
    """One declared channel and its run-time state."""

    alias: str
    backing: Backing
    mode: int                      # READ, WRITE or both
    random: bool = False           # positional access (pread/lseek) allowed
    quota: Quota = field(default_factory=Quota)
    counters: ChannelAccounting = field(default_factory=ChannelAccounting)
    refused: int = 0               # calls refused for quota
    broken: int = 0                # writes answered EPIPE: the reader went away
    cut: int = 0                   # writes the quota refused or shortened (``blame_limits``)
    append: bool = False           # every write goes to the end (ZeroVM type 1, "CDR")
    kind: int = 0                  # stat file type from NVRAM [mapping]; 0: by access
    tagged: bool = False           # digest reported in the ZeroVM report (etag 1)
    eof: bool = False              # the trap API saw the end (sticky, as ZeroVM's)
    declared_type: int | None = None   # ZeroVM access type from a manifest
    # running hashes: MD5 (md5.h), whose state the native C loop updates in place
    _md5: MD5 = field(default_factory=MD5, repr=False)
    _appended: int = 0             # bytes written as one stream from offset 0
    _appending: bool = True        # ... and nothing else was written
    _read_md5: MD5 | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.alias.startswith('/dev/'):
            raise ChannelError(f'channel name {self.alias!r} must start with /dev/')
        if self.random and not self.backing.seekable:
            raise ChannelError(f'{self.alias}: random access needs a regular file or memory')
        if self.random and self.mode & WRITE and self.backing.size():
            self._appending = False       # old content: the etag must hash the file
        if self.tagged and not self.mode & WRITE:
            self._read_md5 = MD5()

    @property
    def size(self) -> int:
        """What ``fstat`` reports: the data of a random channel, or of a sequential
        read channel backed by a file (an object: its size is part of the job's
        input, the same on every replica); 0 for streams and written channels."""
        if self.random or self.mode == READ and self.backing.seekable:
            return self.backing.size()
        return 0

    @property
    def access_type(self) -> int:
        """ZeroVM's access type: as declared, else 0 sequential, 1 appendable, 3 random."""
        if self.declared_type is not None:
            return self.declared_type
        return 1 if self.append else 3 if self.random else 0

    def st_mode(self) -> int:
        perm = (0o444 if self.mode & READ else 0) | (0o222 if self.mode & WRITE else 0)
        return (self.kind or (stat.S_IFREG if self.random else stat.S_IFCHR)) | perm

    def read_budget(self, want: int) -> int:
        """Bytes the quota lets one read call take; -1 when the quota refuses the call."""
        q, c = self.quota, self.counters
        if c.reads >= q.gets or c.read_bytes >= q.get_size:
            self.refused += 1
            return -1
        return min(want, q.get_size - c.read_bytes)

    def write_budget(self, want: int, room: int | None = None) -> int:
        """Bytes the quota lets one write call put; -1 when the quota refuses the call.
        ``room``: what a positional write may put where it writes (:meth:`write_room`).
        A refused or shortened write is a cut (counted once): what the channel holds is
        not what the program wrote."""
        q, c = self.quota, self.counters
        left = q.put_size - c.write_bytes if room is None else min(q.put_size - c.write_bytes,
                                                                   room)
        if c.writes >= q.puts or (want and left <= 0):
            self.refused += 1
            self.cut += 1
            return -1
        budget = min(want, max(left, 0))       # a write of nothing is 0 wherever it is
        if budget < want:
            self.cut += 1
        return budget

    def write_room(self, offset: int) -> int:
        """Bytes a positional write at ``offset`` may put: a write never makes the
        channel larger than ``put_size`` (or its size, if it was larger).  The quota
        bounds what a channel holds, not only the bytes written: a byte written far
        past it would leave a sparse file of any size, whose etag (an MD5 of all of
        it, after the run) and upload cost what the quota is there to bound."""
        return max(self.size, self.quota.put_size) - offset

    def read(self, bufs: list[memoryview], offset: int | None, first: bool = True) -> int:
        """Read into ``bufs`` at ``offset`` (None on a sequential channel); ``first``:
        this is a call (else a later step of one, ``zvm_core.syscalls.io``)."""
        if self._read_md5 is None or len(bufs) < 2:
            n = self.backing.readinto(bufs, offset) if bufs else 0
            if self._read_md5 is not None:
                _update(self._read_md5, bufs, n)
        else:       # the emulator's views are guest memory and may overlap: hash what was read
            staged = bytearray(sum(map(len, bufs)))
            n = self.backing.readinto([memoryview(staged)], offset)
            self._read_md5.update(memoryview(staged)[:n])
            done = 0
            for buf in bufs:
                k = max(0, min(len(buf), n - done))
                buf[:k] = staged[done:done + k]
                done += k
        self.counters.reads += first
        self.counters.read_bytes += n
        return n

    def write(self, bufs: list[memoryview], offset: int | None, first: bool = True) -> int:
        """Write ``bufs`` at ``offset`` (None: sequentially); ``first`` as for :meth:`read`."""
        n = self.backing.write(bufs, offset) if bufs else 0
        if self._appending and (offset is None or offset == self._appended):
            _update(self._md5, bufs, n)
            self._appended += n
        elif n:
            self._appending = False
        self.counters.writes += first
        self.counters.write_bytes += n
        return n

    def truncate(self) -> None:
        """O_TRUNC on a random-access written channel: start the content again."""
        self.backing.truncate()
        self._md5, self._appended, self._appending = MD5(), 0, True

    def etag(self, expired: Expired | None = None) -> str:
        """MD5 of the content; written at random, hashed now, until ``expired()``
        (:class:`HashTimeout`)."""
        if self._appending:
            return self._md5.hexdigest()
        return self.backing.content_md5(expired) or self._md5.hexdigest()

    def digest(self) -> str:
        """The ZeroVM report's digest of a channel only read: the bytes read through it
        (a written channel's is its etag, hashed within the run's time: :func:`with_etags`)."""
        return (self._read_md5 or MD5()).hexdigest()

    def close(self) -> None:
        self.backing.close()


def with_etags(report: Report, channels: Mapping[str, Channel], expired: Expired,
               timeout: float) -> Report:
    """``report`` with its written channels' etags, hashed before ``expired()``: the
    run's timeout covers the hash of what it wrote at random (a byte written at 1 TiB
    leaves a sparse file of 1 TiB, minutes of MD5), else the run is a timeout that says
    so.  ``expired`` reads the engine's clock (the native one's reads no TSC)."""
    for alias, ch in sorted(channels.items()):
        if ch.mode & WRITE:
            try:
                report.etags[alias] = ch.etag(expired)
            except HashTimeout as e:
                if report.status == 'timeout':      # said already; the etags hashed so far
                    return report
                return replace(report, status='timeout', retcode=None, exit_state='', message=(
                    f'wall-clock timeout of {timeout:g} s: the etag of {alias} ({e.size} bytes '
                    'written at random, a sparse file hashed whole) was not done in time'))
    return report


def _update(md5, bufs: list[memoryview], n: int) -> None:
    """Hash the first ``n`` bytes of ``bufs``."""
    for buf in bufs:
        if n <= 0:
            break
        md5.update(buf[:n])
        n -= len(buf)


_STANDARD_RANK = {'/dev/stdin': '\0', '/dev/stdout': '\1', '/dev/stderr': '\2'}  # before '/'


def standard_order(channels: Iterable[Channel]) -> list[Channel]:
    """ZeroVM's order: stdin, stdout, stderr, then the rest by name."""
    return sorted(channels, key=lambda c: _STANDARD_RANK.get(c.alias, c.alias))


def zerovm_channel(decl: ChannelDecl, preallocate: bool = True) -> Channel:
    """Open a manifest channel as ZeroVM mounted it; :class:`ChannelSetupError` if it cannot.

    The declared access type decides what is positional: reads of types 1 and
    3, writes of types 2 and 3; a type 1 channel that is also written appends
    (ZeroVM's "CDR").  Character devices and FIFOs are always sequential.
    """
    if decl.network:
        raise ChannelSetupError(errno.EPROTONOSUPPORT, f'{decl.alias}: network channels '
                                f'({";".join(decl.sources)}) are not supported')
    copies: list[Backing] = []
    try:
        for source in decl.sources:
            copies.append(_open_source(decl, source, preallocate))
        backing = copies[0] if len(copies) == 1 else ReplicatedBacking(decl.alias, copies)
        random = backing.seekable and ((decl.readable and decl.type in (1, 3))
                                       or (decl.writable and decl.type in (2, 3)))
        return Channel(decl.alias, backing,
                       (READ if decl.readable else 0) | (WRITE if decl.writable else 0),
                       random=random, append=random and decl.writable and decl.type == 1,
                       quota=Quota(decl.gets, decl.get_size, decl.puts, decl.put_size),
                       tagged=decl.etag, declared_type=decl.type)
    except BaseException as e:
        for copy in copies:
            copy.close()
        if isinstance(e, ChannelError) and not isinstance(e, ChannelSetupError):
            raise ChannelSetupError(errno.EFAULT, str(e)) from None
        raise


def _open_source(decl: ChannelDecl, path: str, preallocate: bool) -> Backing:
    try:
        kind = stat.S_IFMT(os.stat(path).st_mode)
    except OSError:
        kind = stat.S_IFREG               # ZeroVM: what does not exist is a new file
    rw = decl.readable | decl.writable << 1
    if kind in (stat.S_IFCHR, stat.S_IFIFO):
        if rw not in (1, 2):
            raise ChannelSetupError(errno.EINVAL, f'{decl.alias} has invalid i/o type')
        # a FIFO is opened without waiting for its other end, as ZeroVM (O_RDWR) does
        fd = _open(path, os.O_RDONLY | os.O_NONBLOCK if rw == 1 else os.O_RDWR)
        os.set_blocking(fd, True)
        return FdBacking(fd, owned=True)
    if kind != stat.S_IFREG:
        raise ChannelSetupError(errno.EPROTONOSUPPORT,
                                f'invalid {decl.alias} source type: {path} is not a regular '
                                'file, character device or FIFO')
    if rw == 1:
        fd = _open(path, os.O_RDONLY, errno.EFAULT)
        return FileBacking(fd, end=os.fstat(fd).st_size)
    if rw == 2:
        fd = _open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        return FileBacking(fd, end=0, preallocated=_preallocate(fd, decl, preallocate))
    if rw == 3:
        if decl.type == 0:
            raise ChannelSetupError(errno.EFAULT, 'sequential channels cannot have r/w access')
        if decl.type == 2:
            raise ChannelSetupError(errno.EFAULT,
                                    'sequential read / random write channels not supported')
        fd = _open(path, os.O_RDWR | os.O_CREAT)
        size = os.fstat(fd).st_size
        if size == 0:
            return FileBacking(fd, end=0, preallocated=_preallocate(fd, decl, preallocate))
        return FileBacking(fd, end=size, cursor=size if decl.type == 1 else 0)
    raise ChannelSetupError(errno.EINVAL, f'{decl.alias} has invalid i/o type')


def _open(path: str, flags: int, code: int = 0) -> int:
    """``os.open``; on failure ZeroVM's exit code ``code`` (0: the OS error's own)."""
    try:
        return os.open(path, flags | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise ChannelSetupError(code or e.errno, f'cannot open {path}: {e.strerror}') from None


def _preallocate(fd: int, decl: ChannelDecl, enabled: bool) -> bool:
    if not enabled:
        return False
    try:
        os.ftruncate(fd, decl.put_size)
    except OSError as e:
        os.close(fd)
        raise ChannelSetupError(e.errno, f'cannot preallocate {decl.alias}: '
                                f'{e.strerror}') from None
    return True

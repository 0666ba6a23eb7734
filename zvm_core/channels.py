"""Channels: the only files a guest can reach.

A channel is a name the guest opens (``/dev/stdin``, ``/dev/input`` ...), a
host backing (a file, an inherited descriptor, or memory), an access kind and
ZeroVM quotas: ``gets``/``get_size`` (read calls and bytes) and
``puts``/``put_size`` (write calls and bytes).  Every written channel has an
MD5 etag of its final content, which later becomes the Swift object's ETag.

What the guest sees (``fstat``, ``lseek``) depends only on the declaration,
never on what backs it on the host: a sequential channel is a character
device, a random one a regular file of the backing's size.
"""

from __future__ import annotations

import hashlib
import os
import select
import stat
import time
from dataclasses import dataclass, field

from zvm_core.report import ChannelAccounting

UNLIMITED = (1 << 63) - 1
READ, WRITE = 1, 2


class ChannelError(ValueError):
    """A channel declaration the host cannot honour."""


@dataclass
class Quota:
    gets: int = UNLIMITED
    get_size: int = UNLIMITED
    puts: int = UNLIMITED
    put_size: int = UNLIMITED

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

    def content_md5(self) -> str | None:
        """MD5 of the whole content, for random writes the stream hash cannot follow."""
        return None

    def ready(self, write: bool, deadline: float) -> bool:
        """Wait until I/O would not block, or until ``deadline`` (False)."""
        return True

    def truncate(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FdBacking(Backing):
    """A host descriptor: a regular file (positional I/O) or a pipe/tty (streaming)."""

    def __init__(self, fd: int, owned: bool) -> None:
        self.fd, self.owned = fd, owned
        self.seekable = stat.S_ISREG(os.fstat(fd).st_mode)

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

    def readinto(self, bufs: list[memoryview], offset: int | None) -> int:
        if offset is None:
            return os.readv(self.fd, bufs)
        return os.preadv(self.fd, bufs, offset)

    def write(self, bufs: list[memoryview], offset: int | None) -> int:
        if offset is None:
            return os.writev(self.fd, bufs)
        return os.pwritev(self.fd, bufs, offset)

    def ready(self, write: bool, deadline: float) -> bool:
        if self.seekable:
            return True
        poll = select.poll()
        poll.register(self.fd, select.POLLOUT if write else select.POLLIN)
        return bool(poll.poll(max(0.0, deadline - time.monotonic()) * 1000))

    def truncate(self) -> None:
        os.ftruncate(self.fd, 0)

    def content_md5(self) -> str | None:
        if not self.seekable:
            return None
        h = hashlib.md5()
        pos = 0
        try:
            while chunk := os.pread(self.fd, 1 << 20, pos):
                h.update(chunk)
                pos += len(chunk)
        except OSError:       # a write-only descriptor from the caller
            return None
        return h.hexdigest()

    def close(self) -> None:
        if self.owned:
            self.owned = False
            os.close(self.fd)


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

    def content_md5(self) -> str | None:
        return hashlib.md5(self.data).hexdigest()


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
    _md5: object = field(default_factory=hashlib.md5, repr=False)
    _appended: int = 0             # bytes written as one stream from offset 0
    _appending: bool = True        # ... and nothing else was written

    def __post_init__(self) -> None:
        if not self.alias.startswith('/dev/'):
            raise ChannelError(f'channel name {self.alias!r} must start with /dev/')
        if self.random and not self.backing.seekable:
            raise ChannelError(f'{self.alias}: random access needs a regular file or memory')

    @property
    def size(self) -> int:
        return self.backing.size() if self.random else 0

    def st_mode(self) -> int:
        perm = (0o444 if self.mode & READ else 0) | (0o222 if self.mode & WRITE else 0)
        return (stat.S_IFREG if self.random else stat.S_IFCHR) | perm

    def read_budget(self, want: int) -> int:
        """Bytes the quota lets one read call take; -1 when the quota refuses the call."""
        q, c = self.quota, self.counters
        if c.reads >= q.gets or c.read_bytes >= q.get_size:
            self.refused += 1
            return -1
        return min(want, q.get_size - c.read_bytes)

    def write_budget(self, want: int) -> int:
        q, c = self.quota, self.counters
        if c.writes >= q.puts or (want and c.write_bytes >= q.put_size):
            self.refused += 1
            return -1
        return min(want, q.put_size - c.write_bytes)

    def read(self, bufs: list[memoryview], offset: int | None) -> int:
        """Read into ``bufs`` at ``offset`` (None on a sequential channel)."""
        n = self.backing.readinto(bufs, offset) if bufs else 0
        self.counters.reads += 1
        self.counters.read_bytes += n
        return n

    def write(self, bufs: list[memoryview], offset: int | None) -> int:
        n = self.backing.write(bufs, offset) if bufs else 0
        if self._appending and (offset is None or offset == self._appended):
            left = n
            for buf in bufs:
                self._md5.update(buf[:left])
                left -= len(buf)
                if left <= 0:
                    break
            self._appended += n
        elif n:
            self._appending = False
        self.counters.writes += 1
        self.counters.write_bytes += n
        return n

    def truncate(self) -> None:
        """O_TRUNC on a random-access written channel: start the content again."""
        self.backing.truncate()
        self._md5, self._appended, self._appending = hashlib.md5(), 0, True

    def etag(self) -> str:
        if self._appending:
            return self._md5.hexdigest()
        return self.backing.content_md5() or self._md5.hexdigest()

    def close(self) -> None:
        self.backing.close()


def standard_order(channels: list[Channel]) -> list[Channel]:
    """ZeroVM's order: stdin, stdout, stderr, then the rest by name."""
    std = ('/dev/stdin', '/dev/stdout', '/dev/stderr')
    first = [c for name in std for c in channels if c.alias == name]
    return first + sorted((c for c in channels if c.alias not in std), key=lambda c: c.alias)

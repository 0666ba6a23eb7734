"""Where the proxy keeps what nodes wrote until it is sent on: memory, then one file.

A node's outputs come back to the proxy while the job runs and leave when
it is answered (the response body, stored objects, a deferred job's result),
so a proxy holds the outputs of every running job at once.  Each
:class:`OutputFile` is kept in memory while it is small (at most
:data:`SPOOL_MEMORY` bytes) and while the outputs of the whole process keep
at most :data:`PROCESS_MEMORY`; past that it is appended to the process's
spill file, an unlinked temporary file in ``$TMPDIR`` shared by every output
(each its own extents), so 100,000 outputs cost neither 100,000 file
descriptors nor their bytes in memory.  A new spill file starts after
:data:`SPILL_ROTATE` bytes, and each is closed, its space freed, once the last
output in it is closed; before that, the blocks of each output closed are
given back to the file system (a hole punched: one output held open, such as
a response its client reads slowly, does not keep a gigabyte of other jobs'
ended outputs on the disk).  Everything runs in the proxy's event loop (a
reader in a thread only reads, positionally).

A job's outputs also count against its :class:`Budget` (``zerovm_job_maxoutput``):
every channel is bounded (``zerovm_maxoutput``), but a wildcard over many
objects has many channels, all held until the job is answered.  Past the budget
an output keeps no more bytes and the job is stopped (``Budget.check``).
"""

from __future__ import annotations

import bisect
import ctypes
import io
import os
import tempfile

from zerocloud.tmpdisk import room

SPOOL_MEMORY = 1 << 20      # bytes of one output kept in memory; beyond, in the spill
PROCESS_MEMORY = 64 << 20   # bytes of all outputs of a proxy process kept in memory
SPILL_ROTATE = 1 << 30      # bytes of a spill file after which outputs start a new one
_PUNCH_HOLE = 0x02 | 0x01   # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)


class OverBudget(Exception):
    """A job's outputs passed what it may hold on the proxy (``Budget.check``)."""


class Budget:
    """The bytes of output one job may hold on the proxy at once (``limit``:
    ``zerovm_job_maxoutput``): its outputs take from it as they are written and
    give back when closed; the first write past it trips it (:attr:`over`: the
    output that did), and that write and every later one keep nothing."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0
        self.over = ''

    def take(self, size: int, what: tuple[str, str]) -> bool:
        """May ``size`` more bytes of ``what`` (node, device) be kept?"""
        if self.over or self.held + size > self.limit:
            self.over = self.over or '/dev/{1} of node {0}'.format(*what)
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size

    def check(self) -> None:
        """Raise :class:`OverBudget` once tripped: the job stops."""
        if self.over:
            raise OverBudget(self.over)


class _Spill:
    """An unlinked temporary file that the outputs of this process append their bytes
    to once past memory, each as its own extents: one descriptor for any number of
    outputs.  A new one is started after :data:`SPILL_ROTATE` bytes; each is closed
    (its disk space freed) once the last output in it is closed."""

    current: _Spill | None = None

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()
        self.size = 0
        self.users = 0

    @classmethod
    def take(cls) -> _Spill:
        spill = cls.current
        if spill is None or spill.size >= SPILL_ROTATE:
            spill = cls.current = cls()
        spill.users += 1
        return spill

    def append(self, data) -> int:
        """Write ``data`` at the end; where it starts."""
        offset, view = self.size, memoryview(data)
        with room():
            while view:
                view = view[os.pwrite(self.file.fileno(), view, self.size):]
                self.size = offset + len(data) - len(view)
        return offset

    def read(self, offset: int, size: int) -> bytes:
        parts = []
        while size > 0:
            chunk = os.pread(self.file.fileno(), size, offset)
            if not chunk:
                raise OSError('spill file ended early')
            parts.append(chunk)
            offset, size = offset + len(chunk), size - len(chunk)
        return b''.join(parts)

    def leave(self, extents: list[tuple[int, int]]) -> None:
        """An output whose bytes were ``extents`` (offset, length) is closed: their
        blocks are freed now (a file system that cannot punch holes keeps them
        until the file is closed), the file once no output is left in it."""
        self.users -= 1
        if self.users == 0:
            self.file.close()
            if _Spill.current is self:
                _Spill.current = None
            return
        for offset, length in extents:
            _libc.fallocate(self.file.fileno(), _PUNCH_HOLE, offset, length)


class OutputFile:
    """Bytes appended, then read back (a node's output, a response body): in memory
    while small (at most :data:`SPOOL_MEMORY`), else in the process's spill file
    (``_Spill``).  The outputs of every job of a proxy process keep at most
    :data:`PROCESS_MEMORY` bytes in memory together and one file descriptor,
    whatever the number of nodes."""

    held = 0                            # bytes all in-memory outputs of this process hold

    def __init__(self, budget: Budget | None = None, node: str = '', device: str = '') -> None:
        """``budget``: the job's, charged with what is kept (of ``device`` of ``node``,
        as its error names it)."""
        self._budget, self._what = budget, (node, device)
        self._memory: bytearray | None = bytearray()       # None: in the spill
        self._spill: _Spill | None = None
        self._extents: list[tuple[int, int]] = []           # (spill offset, length)
        self._starts: list[int] = []                        # where each extent starts here
        self._size = self._pos = 0
        self._closed = False

    def write(self, data: bytes) -> int:
        if self._closed or self._pos != self._size:
            raise io.UnsupportedOperation('an output is only appended to, until closed')
        if self._budget is not None and not self._budget.take(len(data), self._what):
            return len(data)            # the job is over its budget: it stops (Budget)
        if self._memory is not None and (
                self._size + len(data) > SPOOL_MEMORY
                or OutputFile.held + len(data) > PROCESS_MEMORY):
            self._to_spill()
        if self._memory is not None:
            self._memory += data
            OutputFile.held += len(data)
        elif data:
            self._extend(self._spill.append(data), len(data), self._size)
        self._size = self._pos = self._size + len(data)
        return len(data)

    def _to_spill(self) -> None:
        memory = self._memory
        self._release()
        self._spill = _Spill.take()
        if memory:
            self._extend(self._spill.append(memory), len(memory), 0)

    def _extend(self, offset: int, length: int, start: int) -> None:
        """Bytes ``start`` to ``start + length`` of the output are at ``offset`` of the spill."""
        if self._extents and sum(self._extents[-1]) == offset:     # right after the last
            self._extents[-1] = (self._extents[-1][0], self._extents[-1][1] + length)
        else:
            self._extents.append((offset, length))
            self._starts.append(start)

    def _release(self) -> None:
        if self._memory is not None:
            OutputFile.held -= len(self._memory)
            self._memory = None

    def hand_over(self) -> None:
        """Its bytes were copied to where the job keeps them until it is answered (its
        ``JobSpool``): they stay charged to its budget when this closes."""
        self._budget = None

    def read(self, size: int = -1) -> bytes:
        if self._closed:
            raise ValueError('read of a closed output')
        end = self._size if size < 0 else min(self._size, self._pos + size)
        start, self._pos = self._pos, max(self._pos, end)
        if self._memory is not None:
            return bytes(self._memory[start:end])
        parts = []
        i = bisect.bisect_right(self._starts, start) - 1
        while start < end:
            offset, length = self._extents[i]
            take = min(end, self._starts[i] + length) - start
            parts.append(self._spill.read(offset + start - self._starts[i], take))
            start, i = start + take, i + 1
        return b''.join(parts)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = max(0, offset + (0, self._pos, self._size)[whence])
        return self._pos

    def tell(self) -> int:
        return self._pos

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()
            if self._budget is not None:
                self._budget.give(self._size)
            if self._spill is not None:
                self._spill.leave(self._extents)

    def __del__(self) -> None:
        self.close()

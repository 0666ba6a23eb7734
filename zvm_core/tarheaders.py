"""An untrusted tar's members, each member's headers read within a bound.

``tarfile`` reads a member's extended headers whole -- a PAX record, a GNU long
name or link, an old GNU sparse map block by block -- before its caller can look
at the member: 100 MB of a PAX path with one 4-byte character took 720 MB of the
reading process, 100 MB of sparse map 5 s of its CPU (for a member a mount skips).
:func:`members` refuses a member whose headers are over :data:`MOST` bytes before
the read that would pass it is made, or that come in a chain longer than
:data:`CHAIN`, and keeps no member its caller does not.  Read by a pool worker
mounting an image (``zvm_core.syscalls.fs``), by an object server taking a program
out of a system image (``zvm_core.sysimages``) and by the proxy reading a zapp
(``zerocloud.zapp``).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar('T')

MOST = 1 << 20          # header bytes of one member (a PATH_MAX name takes ~5 KB)
CHAIN = 8               # extended headers in a row (a global PAX header, a member's, a
                        # GNU long name and link ...)
_EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
             tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class TooLarge(ValueError):
    """A member's headers are over :data:`MOST` bytes, or more than :data:`CHAIN`
    extended headers in a row."""


class _Member(tarfile.TarInfo):
    """A ``TarInfo`` that counts the extended headers in a row: ``tarfile`` reads a
    chain of them one call deeper each, and 400 in a row (400 KiB, within
    :data:`MOST`) were a ``RecursionError``, which no caller takes for a bad tar."""

    def _proc_member(self, tar: tarfile.TarFile):     # tarfile's hook for subclasses
        if self.type not in _EXTENDED:
            return super()._proc_member(tar)
        depth = getattr(tar, '_zvm_chain', 0)
        if depth >= CHAIN:
            raise TooLarge(f'more than {CHAIN} extended headers (PAX records, GNU long '
                           f'names) in a row at byte {self.offset}')
        tar._zvm_chain = depth + 1
        try:
            return super()._proc_member(tar)
        finally:
            tar._zvm_chain = depth


class _Bounded:
    """``f`` as ``tarfile`` reads it: at most ``left`` bytes more (it seeks past data)."""

    def __init__(self, f) -> None:
        self.f, self.left = f, MOST

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self.left:
            raise TooLarge(f'a member whose headers (PAX records, GNU long names, sparse '
                           f'maps) are over {MOST} bytes')
        data = self.f.read(size)
        self.left -= len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()


def _parsed(read: Callable[[], T]) -> T:
    """``read()``, ``tarfile``'s ValueError or OverflowError on a header it does not check
    (a number that does not parse, a GNU sparse map cut short, an offset past 2**63) as
    the ``tarfile.ReadError`` it raises for others."""
    try:
        return read()
    except TooLarge:
        raise
    except (ValueError, OverflowError) as e:
        raise tarfile.ReadError(f'a header does not parse ({e})') from None


def members(f) -> Iterator[tarfile.TarInfo]:
    """The members of the uncompressed tar in ``f`` (a seekable binary file), as
    ``tarfile`` gives them; :class:`TooLarge`, or ``tarfile.TarError``."""
    bounded = _Bounded(f)
    with _parsed(lambda: tarfile.open(fileobj=bounded, mode='r:', tarinfo=_Member)) as tar:
        while (member := _parsed(tar.next)) is not None:
            tar.members.clear()     # (kept for extraction: every member's headers at once)
            bounded.left = MOST
            yield member

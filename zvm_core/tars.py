"""Untrusted tar archives read with bounded extended headers.

``tarfile`` reads a member's whole extended header (PAX, or a GNU long name or
link) into memory, as much as its size field says (gigabytes), before anyone
can look at the name it carries; and it reads a chain of them by recursion,
so a few hundred in a row (a few hundred KiB of archive) end in
``RecursionError``, which no caller takes for a bad archive.  Opened with
``tarinfo=Member``, an archive whose extended header is larger than
:data:`MAX_EXTENDED`, or that chains more than :data:`MAX_CHAIN` of them, is
refused (:class:`Refused`, a ``tarfile.TarError``) with only that header's
512-byte block read.  Images (``zvm_core.syscalls.fs``), system images and
zapps (``zerocloud.zapp``) are read so.
"""

from __future__ import annotations

import tarfile

# A name and a link target within PATH_MAX (4096) each, and the other records
# (times, ids, extended attributes: an SELinux label, ACLs) with room to spare.
MAX_EXTENDED = 64 << 10
MAX_CHAIN = 8               # a global PAX header, a member's, a GNU long name and link ...
_EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
             tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_DEPTH = '_zvm_extended_depth'      # extended headers being read, on the TarFile


class Refused(tarfile.TarError):
    """An extended header larger, or a chain of them longer, than this module reads."""


class Member(tarfile.TarInfo):
    """A ``TarInfo`` that checks an extended header's size before reading it."""

    def _proc_member(self, tar: tarfile.TarFile):     # tarfile's hook for subclasses
        if self.type not in _EXTENDED:
            return super()._proc_member(tar)
        if self.size > MAX_EXTENDED:
            raise Refused(f'the member at byte {self.offset} has an extended header (PAX or '
                          f'GNU long name) of {self.size} bytes: at most {MAX_EXTENDED}')
        depth = getattr(tar, _DEPTH, 0)
        if depth >= MAX_CHAIN:
            raise Refused(f'more than {MAX_CHAIN} extended headers in a row at byte '
                          f'{self.offset}')
        setattr(tar, _DEPTH, depth + 1)
        try:
            return super()._proc_member(tar)
        finally:
            setattr(tar, _DEPTH, depth)

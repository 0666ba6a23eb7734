"""Tar archives for tests (job images, zapps, system images), built in memory."""

from __future__ import annotations

import gzip
import io
import tarfile


def tar_bytes(members: dict[str, bytes | str | tuple], *, gz: bool = False,
              mtime: int = 0) -> bytes:
    """A tar: bytes (or text) are files, ``('dir',)`` a directory, ``('sym', target)``
    a symbolic link, ``('hard', target)`` a hard link; gzip-compressed with ``gz``
    (as zapps are).  The same members always give the same bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as tar:
        for name, what in members.items():
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = mtime, 0o644
            data = None
            if isinstance(what, bytes | str):
                data = what.encode() if isinstance(what, str) else what
                info.size = len(data)
            elif what[0] == 'dir':
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            else:
                info.type = tarfile.SYMTYPE if what[0] == 'sym' else tarfile.LNKTYPE
                info.linkname = what[1]
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(buf.getvalue(), mtime=0) if gz else buf.getvalue()


def zapp_member(f, name: str, limit: int, where: str, max_members: int | None = None,
                admit=None) -> bytes:
    """The content of program ``name`` of the zapp in ``f``, as the proxy copies it
    (``zerocloud.zapp.copy_member``), gathered in memory for a test to compare."""
    from zerocloud import zapp  # here: the sandbox tests need not import the middleware
    out = io.BytesIO()
    zapp.copy_member(f, name, limit, where, out, max_members, admit)
    return out.getvalue()

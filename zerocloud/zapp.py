"""Zapps and images: tar archives that carry a job and the files it runs.

A zapp is a tar (or a gzipped tar, as ``zpm bundle`` writes it) whose
``boot/system.map`` (or ``boot/cluster.map``) is the job description.  The
proxy filter reads the map from it, hands the archive (uncompressed) to every
node as ``/dev/image``, and takes programs named by a relative ``exec.path``
(``bin/wc``, ``file://image:bin/wc``) from it.  Member names are compared
without a leading ``./`` or ``/``.

Every problem with an archive is a 400 that names the archive and says what
is wrong; sizes beyond the limits are a 413.
"""

from __future__ import annotations

import json
import tarfile
import zlib

from swift.common.swob import HTTPBadRequest, HTTPRequestEntityTooLarge

MAPS = ('boot/system.map', 'boot/cluster.map')
GZIP_MAGIC = b'\x1f\x8b'
TAR_MAGIC_OFFSET = 257
CHUNK = 1 << 16


def looks_like_archive(head: bytes) -> bool:
    """Gzip or ustar magic at the start of ``head`` (at least 262 bytes)."""
    return head.startswith(GZIP_MAGIC) or head[TAR_MAGIC_OFFSET:TAR_MAGIC_OFFSET + 5] == b'ustar'


def gunzip(src, dst, limit: int, where: str) -> int:
    """Decompress gzip ``src`` into ``dst``; at most ``limit`` bytes come out."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    size = 0
    try:
        while chunk := src.read(CHUNK):
            while chunk:
                out = inflate.decompress(chunk, CHUNK)
                size += len(out)
                if size > limit:
                    raise HTTPRequestEntityTooLarge(
                        body=f'{where} is larger than {limit} bytes uncompressed\n')
                dst.write(out)
                chunk = inflate.unconsumed_tail
            if inflate.eof:
                break
        rest = inflate.flush()
    except zlib.error as e:
        raise HTTPBadRequest(body=f'{where} is not a valid gzip file: {e}\n') from None
    if not inflate.eof:
        raise HTTPBadRequest(body=f'{where} is not a valid gzip file: it ends too early\n')
    size += len(rest)
    if size > limit:
        raise HTTPRequestEntityTooLarge(
            body=f'{where} is larger than {limit} bytes uncompressed\n')
    dst.write(rest)
    return size


def _name(member: str) -> str:
    while member.startswith(('./', '/')):
        member = member[2:] if member.startswith('./') else member[1:]
    return member


def _members(f, where: str) -> dict[str, tarfile.TarInfo]:
    f.seek(0)
    try:
        with tarfile.open(fileobj=f, mode='r:') as tar:
            return {_name(info.name): info for info in tar}
    except tarfile.TarError as e:
        raise HTTPBadRequest(body=f'{where} is not a tar archive: {e}\n') from None


def member(f, name: str, limit: int, where: str) -> bytes:
    """The content of regular file ``name`` of the tar in ``f`` (400 if absent)."""
    found = _members(f, where).get(_name(name))
    if found is None or not found.isfile():
        raise HTTPBadRequest(body=f'{where} has no file {name}\n')
    if found.size > limit:
        raise HTTPRequestEntityTooLarge(
            body=f'{name} in {where} is larger than {limit} bytes\n')
    f.seek(found.offset_data)
    return f.read(found.size)


def system_map(f, limit: int, where: str) -> bytes:
    """The job description of the zapp in ``f`` (an uncompressed tar)."""
    members = _members(f, where)
    name = next((m for m in MAPS if m in members and members[m].isfile()), None)
    if name is None:
        raise HTTPBadRequest(body=f'System boot map was not found in {where}: a zapp is a tar '
                                  f'with the job description as {MAPS[0]}\n')
    if members[name].size > limit:
        raise HTTPRequestEntityTooLarge(
            body=f'{name} in {where} is larger than zerovm_maxconfig ({limit} bytes)\n')
    f.seek(members[name].offset_data)
    data = f.read(members[name].size)
    try:
        json.loads(data)
    except ValueError as e:       # UnicodeDecodeError too
        raise HTTPBadRequest(body=f'{name} in {where} is not a valid job description '
                                  f'(JSON): {e}\n') from None
    return data

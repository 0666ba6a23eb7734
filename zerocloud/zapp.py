"""Zapps and images: tar archives that carry a job and the files it runs.

A zapp is a tar (or a gzipped tar, as ``zpm bundle`` writes it) whose
``boot/system.map`` (or ``boot/cluster.map``) is the job description.  The
proxy filter reads the map from it, hands the archive (uncompressed) to every
node as ``/dev/image``, and takes programs named by a relative ``exec.path``
(``bin/wc``, ``file://image:bin/wc``) from it.  Member names are compared
without a leading ``./`` or ``/``.

Every problem with an archive is a 400 that names the archive and says what
is wrong; sizes beyond the limits are a 413 that names the limit.  Archives
are untrusted: the caller runs these functions off the event loop
(``eventlet.tpool``), after authorising the request, within :class:`Limits`
(``zapp_max_members``, ``zapp_max_size``, ``zapp_max_ratio``).
"""

from __future__ import annotations

import json
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from swift.common.utils import config_positive_int_value

from zerocloud.httperrors import HTTPBadRequest, HTTPRequestEntityTooLarge
from zerocloud.zapp_format import MAPS
from zvm_core import tarheaders

CHUNK = 1 << 16
# Below this many uncompressed bytes the expansion ratio is not checked: a small
# tar is mostly zero padding and compresses far better than its content.
RATIO_FLOOR = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one archive may expand to (operator options of the proxy filter)."""

    members: int = 10000        # zapp_max_members
    size: int = 256 << 20       # zapp_max_size: uncompressed bytes
    ratio: int = 200            # zapp_max_ratio: uncompressed / compressed bytes

    @classmethod
    def from_conf(cls, conf: dict) -> Limits:
        return cls(*(config_positive_int_value(conf.get(f'zapp_max_{name}', default))
                     for name, default in (('members', cls.members), ('size', cls.size),
                                           ('ratio', cls.ratio))))


def gunzip(src, dst, limit: int, where: str, ratio: int | None = None,
           limit_name: str = '') -> int:
    """Decompress gzip ``src`` into ``dst``; at most ``limit`` bytes come out, and
    (beyond :data:`RATIO_FLOOR`) at most ``ratio`` times the bytes read."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    size = read = 0
    named = f' ({limit_name})' if limit_name else ''
    try:
        while chunk := src.read(CHUNK):
            read += len(chunk)
            while chunk:
                out = inflate.decompress(chunk, CHUNK)
                size += len(out)
                if size > limit:
                    raise HTTPRequestEntityTooLarge(
                        body=f'{where} is larger than {limit} bytes uncompressed{named}\n')
                if ratio is not None and size > max(RATIO_FLOOR, ratio * read):
                    raise HTTPRequestEntityTooLarge(
                        body=f'{where} expands more than {ratio} times (zapp_max_ratio)\n')
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
            body=f'{where} is larger than {limit} bytes uncompressed{named}\n')
    dst.write(rest)
    return size


def member_name(member: str) -> str:
    """A member's name as it is compared: without its leading ``./`` and ``/``."""
    while member.startswith(('./', '/')):
        member = member[2:] if member.startswith('./') else member[1:]
    return member


def _members(f, where: str, max_members: int | None,
             wanted: tuple[str, ...]) -> dict[str, tarfile.TarInfo]:
    """The members of the tar in ``f`` named in ``wanted`` (the last of a name): no other
    is kept (a 256 MiB zapp of members with long names and headers held ~1 GiB)."""
    f.seek(0)
    found: dict[str, tarfile.TarInfo] = {}
    try:
        for count, info in enumerate(tarheaders.members(f), 1):
            if max_members is not None and count > max_members:
                raise HTTPRequestEntityTooLarge(
                    body=f'{where} has more than {max_members} members (zapp_max_members)\n')
            name = member_name(info.name)
            if name in wanted:
                found[name] = info
    except tarheaders.TooLarge as e:
        raise HTTPRequestEntityTooLarge(body=f'{where} has {e}\n') from None
    except tarfile.TarError as e:
        raise HTTPBadRequest(body=f'{where} is not a tar archive: {e}\n') from None
    return found


def _not_sparse(info: tarfile.TarInfo, name: str, where: str) -> None:
    """A sparse member (GNU, PAX) is a file to ``isfile()``, of its expanded size: read
    as stored from its data it would be its stored blocks and the bytes after them."""
    if info.issparse():
        raise HTTPBadRequest(body=f'{name} in {where} is a sparse file: store it whole '
                                  f'(tar without --sparse)\n')


def copy_member(f, name: str, limit: int, where: str, out, max_members: int | None = None,
                admit: Callable[[int], None] | None = None) -> int:
    """Copy regular file ``name`` (a program) of the tar in ``f`` to ``out`` a chunk at
    a time, never whole in memory, and return its size (400 if absent, 413 over
    ``limit``, the operator's ``zerovm_maxnexe``); ``admit(size)`` before it is read
    (raises to refuse it)."""
    found = _members(f, where, max_members, (member_name(name),)).get(member_name(name))
    if found is None or not found.isfile():
        raise HTTPBadRequest(body=f'{where} has no file {name}\n')
    _not_sparse(found, name, where)
    if found.size > limit:
        raise HTTPRequestEntityTooLarge(
            body=f'{name} in {where} is larger than zerovm_maxnexe ({limit} bytes)\n')
    if admit is not None:
        admit(found.size)
    f.seek(found.offset_data)
    left = found.size
    while left:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            raise HTTPBadRequest(body=f'{where} ends within {name}\n')
        out.write(chunk)
        left -= len(chunk)
    return found.size


def system_map(f, limit: int, where: str, max_members: int | None = None) -> bytes:
    """The job description of the zapp in ``f`` (an uncompressed tar)."""
    members = _members(f, where, max_members, MAPS)
    name = next((m for m in MAPS if m in members and members[m].isfile()), None)
    if name is None:
        raise HTTPBadRequest(body=f'System boot map was not found in {where}: a zapp is a tar '
                                  f'with the job description as {MAPS[0]}\n')
    _not_sparse(members[name], name, where)
    if members[name].size > limit:
        raise HTTPRequestEntityTooLarge(
            body=f'{name} in {where} is larger than zerovm_maxconfig ({limit} bytes)\n')
    f.seek(members[name].offset_data)
    data = f.read(members[name].size)
    try:
        json.loads(data)
    except (ValueError, RecursionError) as e:       # UnicodeDecodeError too; nested too deep
        raise HTTPBadRequest(body=f'{name} in {where} is not a valid job description '
                                  f'(JSON): {e}\n') from None
    return data

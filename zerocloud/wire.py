"""What travels between the proxy filter and an object server for one node.

Both directions are plain tar streams, as in the original ZeroCloud, so
that large payloads stream through without being held in memory:

* proxy -> object server (``POST`` with ``X-Zerovm-Execute``):
  ``node.json`` (the node spec, first), ``exe`` (the program), then
  ``dev/<device>`` for readable devices whose object is not local;
* object server -> proxy: ``report.json`` (first), then ``dev/<device>``
  for every written channel the proxy must deliver (store or return).

The node spec is JSON: ``{"name", "argv", "env", "devices": [{"name",
"access": "r"|"w", "random", "source": "local"|"member"|null}], "limits":
{"memory", "fuel", "timeout"}, "seed", "epoch"}``.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator

SPEC = 'node.json'
EXE = 'exe'
REPORT = 'report.json'
DEV_PREFIX = 'dev/'
BLOCK = tarfile.BLOCKSIZE
CHUNK = 1 << 16


class WireError(ValueError):
    """A stream that does not follow this protocol."""


class TooLarge(WireError):
    """A member larger than the receiver accepts."""


def member_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def stream_tar(members: Iterable[tuple[str, int, Iterable[bytes]]]) -> Iterator[bytes]:
    """Yield a tar stream of ``(name, size, chunks)`` members without buffering them."""
    for name, size, chunks in members:
        yield member_header(name, size)
        sent = 0
        for chunk in chunks:
            sent += len(chunk)
            yield chunk
        if sent != size:
            raise WireError(f'{name}: {sent} bytes sent, {size} declared')
        yield _padding(size)
    yield bytes(2 * BLOCK)


def bytes_member(name: str, data: bytes) -> tuple[str, int, Iterable[bytes]]:
    return name, len(data), [data]


def json_member(name: str, obj: object) -> tuple[str, int, Iterable[bytes]]:
    return bytes_member(name, json.dumps(obj, sort_keys=True).encode())


def file_member(name: str, path: str) -> tuple[str, int, Iterable[bytes]]:
    def chunks() -> Iterator[bytes]:
        with open(path, 'rb') as f:
            while chunk := f.read(CHUNK):
                yield chunk
    return name, os.path.getsize(path), chunks()


def read_members(stream, first: str) -> Iterator[tuple[str, io.BufferedReader]]:
    """Iterate ``(name, file)`` over a tar stream whose first member must be ``first``."""
    try:
        tar = tarfile.open(fileobj=stream, mode='r|')
        for i, info in enumerate(tar):
            if i == 0 and info.name != first:
                raise WireError(f'stream must start with {first}, found {info.name}')
            if not info.isfile() or info.name.startswith('/') or '..' in info.name.split('/'):
                raise WireError(f'bad member {info.name!r}')
            yield info.name, tar.extractfile(info)
    except tarfile.TarError as e:
        raise WireError(f'bad tar stream: {e}') from None


def copy_limited(src, dst, limit: int) -> int:
    """Copy ``src`` to ``dst``; :class:`WireError` past ``limit`` bytes."""
    total = 0
    while chunk := src.read(CHUNK):
        total += len(chunk)
        if total > limit:
            raise TooLarge(f'member larger than {limit} bytes')
        dst.write(chunk)
    return total

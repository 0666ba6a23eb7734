"""What travels between the proxy filter and an object server for one node.

The proxy sends ``POST /<device>/<partition>/<account>/<container>/<object>``
with these headers:

* ``X-Zerovm-Execute: 1.0`` (marks the request; every answer of the object
  filter echoes it, so the proxy can tell an object server without the
  filter from one that refused the node);
* ``X-Zerovm-Access: GET`` when the node reads the object of the path as a
  local channel (otherwise the path only places the node);
* ``X-Backend-Storage-Policy-Index``, ``X-Trans-Id``, ``X-Zerocloud-Id``
  (the job), ``Content-Type: application/x-tar``, ``Content-Length`` and
  ``Expect: 100-continue``: the object server checks its capacity and the
  local object before the body travels.

Both bodies are plain tar streams, as in the original ZeroCloud, so that
large payloads stream through without being held in memory:

* proxy -> object server: ``node.json`` (the node spec, first), ``exe``
  (the program), then ``dev/<device>`` for readable devices whose object is
  not local, and ``dev/in/<node>`` for what each node this one reads from
  wrote to it (``zerocloud.graph``);
* object server -> proxy: ``report.json`` (first), then ``dev/<device>``
  for every written channel the proxy must deliver (store, return, or pass
  on: ``dev/out/<node>``), unless the spec says ``"outputs": false`` (a
  replica that only votes with its report's etags).

The node spec is JSON: ``{"name", "argv", "env", "devices": [{"name",
"access": "r"|"w", "random", "source": "local"|"member"|null, "put_size"}],
"limits": {"memory", "fuel", "timeout"}, "seed", "epoch", "outputs"}``; a
device name may be ``in/<node>`` or ``out/<node>`` (channel ``/dev/in/<node>``
...); ``put_size`` (optional) asks for a smaller write quota than the object
server's ``zerovm_maxoutput``.
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
EXECUTE = 'X-Zerovm-Execute'
VERSION = '1.0'
ACCESS = 'X-Zerovm-Access'

Member = tuple[str, int, Iterable[bytes]]


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


def tar_size(members: Iterable[tuple[str, int]]) -> int:
    """Length of the stream :func:`stream_tar` makes of members ``(name, size)``."""
    return sum(len(member_header(name, size)) + size + len(_padding(size))
               for name, size in members) + 2 * BLOCK


def stream_tar(members: Iterable[Member]) -> Iterator[bytes]:
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


def bytes_member(name: str, data: bytes) -> Member:
    return name, len(data), [data]


def json_member(name: str, obj: object) -> Member:
    return bytes_member(name, json.dumps(obj, sort_keys=True).encode())


def file_member(name: str, path: str) -> Member:
    def chunks() -> Iterator[bytes]:
        with open(path, 'rb') as f:
            while chunk := f.read(CHUNK):
                yield chunk
    return name, os.path.getsize(path), chunks()


def shared_member(name: str, f, size: int) -> Member:
    """A member read from an open file that other streams read at the same time.

    Each chunk is read at its own offset (seek and read with no green switch
    in between), so concurrent streams of one file do not disturb each other.
    """
    def chunks() -> Iterator[bytes]:
        offset = 0
        while offset < size:
            f.seek(offset)
            chunk = f.read(min(CHUNK, size - offset))
            if not chunk:
                return
            offset += len(chunk)
            yield chunk
    return name, size, chunks()


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


def copy_limited(src, dst, limit: int, digest=None) -> int:
    """Copy ``src`` to ``dst`` (feeding ``digest`` if given); :class:`TooLarge`
    past ``limit`` bytes."""
    total = 0
    while chunk := src.read(CHUNK):
        total += len(chunk)
        if total > limit:
            raise TooLarge(f'member larger than {limit} bytes')
        dst.write(chunk)
        if digest is not None:
            digest.update(chunk)
    return total

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
  not local;
* object server -> proxy: ``report.json`` (first), then ``dev/<device>``
  for every written channel the proxy must deliver (store or return),
  unless the spec says ``"outputs": false`` (a replica that only votes with
  its report's etags).

The nodes of a ``connect`` graph (``"stream": true`` in the spec) move
their links while they run (``zerocloud.graph``):

* a node that reads other nodes' data gets a chunked request (no
  ``Content-Length``): after the members above, ``start`` (empty: the node
  may start), then ``part/in/<node>`` members (the next bytes of that link)
  as they arrive, and ``end/in/<node>`` (its size in bytes, decimal) once
  the link is complete; a request that ends before a link's ``end/`` member
  cuts that link;
* the answer (``X-Zerovm-Stream: 1``, sent once the node has a worker) is
  ``running`` (empty), ``part/out/<node>`` members (what the node wrote to ``/dev/out/<node>``
  since the last part, at most 1 MiB each, in order), then ``report.json``
  and the other written channels as above.  A node run again after a
  failure sends its parts again from the start.

The node spec is JSON: ``{"name", "argv", "env", "devices": [{"name",
"access": "r"|"w", "random", "source": "local"|"member"|"link"|null,
"put_size"}], "limits": {"memory", "fuel", "timeout"}, "seed", "epoch",
"outputs", "stream"}``; a device name may be ``in/<node>`` or
``out/<node>`` (channel ``/dev/in/<node>`` ...); ``put_size`` (optional)
asks for a smaller write quota than the object server's
``zerovm_maxoutput``; ``"source": "link"`` marks an ``in/<node>`` device
that arrives as ``part/`` members.
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
START = 'start'                 # request: the node may start; links follow as they arrive
PART_PREFIX = 'part/'           # part/in/<node>, part/out/<node>: the next bytes of a link
END_PREFIX = 'end/'             # end/in/<node>: that link is complete (its size, decimal)
STREAM = 'X-Zerovm-Stream'      # response header of a streamed node
RUNNING = 'running'             # first member of its response (empty)
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
CHUNK = 1 << 16
PART = 1 << 20                  # largest part/ member
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


def read_members(stream, first: str | None, bufsize: int = RECORD
                 ) -> Iterator[tuple[str, io.BufferedReader]]:
    """Iterate ``(name, file)`` over a tar stream whose first member must be ``first``
    (None: any).

    The tar reader reads ``stream`` ``bufsize`` bytes at a time: from a stream
    that only returns full reads, :data:`BLOCK` gets each member as soon as
    all of it arrived (a bigger read could wait for the sender's next member);
    a stream whose reads return what is there (:class:`Available`) needs no
    such care.
    """
    try:
        tar = tarfile.open(fileobj=stream, mode='r|', bufsize=bufsize)
        for i, info in enumerate(tar):
            if i == 0 and first is not None and info.name != first:
                raise WireError(f'stream must start with {first}, found {info.name}')
            if not info.isfile() or info.name.startswith('/') or '..' in info.name.split('/'):
                raise WireError(f'bad member {info.name!r}')
            yield info.name, tar.extractfile(info)
    except tarfile.TarError as e:
        raise WireError(f'bad tar stream: {e}') from None


class Available:
    """A file whose reads return what has arrived (at least a byte, or the end),
    over an HTTP response (its ``read1``)."""

    def __init__(self, resp) -> None:
        self.resp = resp

    def read(self, n: int = -1) -> bytes:
        return self.resp.read1(n if n >= 0 else CHUNK)


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

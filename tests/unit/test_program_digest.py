"""Programs by digest (``X-Zerovm-Program``) on the object-server filter, and the
bounded tar reader of streamed requests (``zerocloud.wire.read_members``)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from swift.common.swob import Request
from swift.common.utils import Timestamp
from swift.obj.server import ObjectController

from zerocloud import wire
from zerocloud.object import ObjectExecMiddleware

PATH = '/sda1/0/a/c/o'
TEXT = b'hello object\nserver\n'


@pytest.fixture
def mw(tmp_path: Path):
    (tmp_path / 'sda1').mkdir()
    conf = {'devices': str(tmp_path), 'mount_check': 'false'}
    server = ObjectController({**conf, 'disable_fallocate': 'true'})
    mw = ObjectExecMiddleware(server, {**conf, 'zerovm_maxpool': '1', 'zerovm_maxqueue': '0'})
    resp = Request.blank(PATH, method='PUT', body=TEXT, headers={
        'X-Timestamp': Timestamp.now().internal, 'Content-Type': 'text/plain'}
    ).get_response(mw)
    assert resp.status_int == 201
    yield mw
    if mw._pool is not None:
        mw._pool.close()


def execute(app, members, **headers):
    body = b''.join(wire.stream_tar(members))
    req = Request.blank(PATH, method='POST', body=body, headers={
        wire.EXECUTE: '1.0', 'Content-Type': 'application/x-tar', wire.ACCESS: 'GET',
        **headers})
    return req.get_response(app)


def wc_spec() -> wire.Member:
    node = wire.NodeSpec('wc', ['wc'], devices=(wire.DeviceSpec('stdin', 'r', source='local'),
                                                wire.DeviceSpec('stdout', 'w')))
    return wire.bytes_member(wire.SPEC, node.to_json())


def test_a_cached_program_runs_by_its_digest_and_a_missing_one_is_a_412(mw, guest) -> None:
    program = guest('wc').read_bytes()
    digest = hashlib.sha256(program).hexdigest()
    resp = execute(mw, [wc_spec()], **{wire.PROGRAM: digest})
    assert resp.status_int == 412                    # not received yet: send it
    assert resp.headers[wire.PROGRAM] == digest and digest.encode() in resp.body
    assert resp.headers[wire.EXECUTE] == '1.0'
    resp = execute(mw, [wc_spec(), wire.bytes_member(wire.EXE, program)])
    assert resp.status_int == 200 and resp.headers['X-Nexe-Status'] == 'ok'
    resp = execute(mw, [wc_spec()], **{wire.PROGRAM: digest.upper()})
    assert resp.status_int == 200, resp.body
    assert resp.headers['X-Nexe-Status'] == 'ok'
    with tarfile.open(fileobj=io.BytesIO(resp.body)) as tar:
        assert tar.extractfile('dev/stdout').read() == b'%7d %7d %7d\n' % (2, 3, len(TEXT))
    assert mw.programs._users[digest] == 0           # held while it ran, released since
    assert mw.admission.total == 0


def test_a_bad_digest_or_a_program_sent_twice_is_a_400(mw, guest) -> None:
    program = guest('wc').read_bytes()
    resp = execute(mw, [wc_spec()], **{wire.PROGRAM: '../../etc/passwd'})
    assert resp.status_int == 400 and b'SHA-256' in resp.body
    execute(mw, [wc_spec(), wire.bytes_member(wire.EXE, program)])
    digest = hashlib.sha256(program).hexdigest()
    resp = execute(mw, [wc_spec(), wire.bytes_member(wire.EXE, program)],
                   **{wire.PROGRAM: digest})
    assert resp.status_int == 400 and b'sent twice' in resp.body
    assert mw.programs._users[digest] == 0 and mw.admission.total == 0


def test_the_cache_holds_by_digest_only_what_it_has(tmp_path: Path) -> None:
    from zerocloud.object import ContentCache
    cache = ContentCache(2, root=str(tmp_path))
    path = cache.receive(io.BytesIO(b'one'), 100)
    digest = hashlib.sha256(b'one').hexdigest()
    assert cache.hold(digest) == path and cache._users[digest] == 2
    assert cache.hold(hashlib.sha256(b'two').hexdigest()) is None
    cache.release(path)
    cache.release(path)
    assert json.dumps(dict(cache._users)) == json.dumps({digest: 0})


class Sent(io.RawIOBase):
    """A request body of which only ``sent`` has arrived: a read past it would wait
    for the sender (here: fails the test); reads return all they ask for."""

    def __init__(self, sent: bytes) -> None:
        self.data, self.pos, self.reads = sent, 0, []

    def read(self, n: int = -1) -> bytes:
        assert 0 <= n and self.pos + n <= len(self.data), 'read past what was sent'
        self.reads.append(n)
        self.pos += n
        return self.data[self.pos - n:self.pos]


def test_members_are_read_without_reading_ahead_and_in_large_reads() -> None:
    big = bytes(range(256)) * 4096 * 3                       # 3 MiB
    head = [wire.bytes_member(wire.SPEC, b'{"stream": true}'), wire.bytes_member(wire.START, b''),
            wire.bytes_member('part/in/A', big)]
    sent = b''.join(wire.stream_tar(head))[:-2 * wire.BLOCK]   # the end is not sent yet
    stream = Sent(sent)
    members = wire.read_members(stream, wire.SPEC)
    name, f = next(members)
    assert name == wire.SPEC and json.loads(f.read(1 << 20)) == {'stream': True}
    assert next(members)[0] == wire.START
    name, f = next(members)
    assert name == 'part/in/A' and f.read() == big
    assert stream.pos == len(sent)                # all of it, nothing more
    assert len(stream.reads) < len(big) // wire.CHUNK + 10


def test_long_and_non_ascii_names_come_through_pax_headers() -> None:
    names = ['part/in/' + 'n' * 150, 'dev/é', 'x']
    body = b''.join(wire.stream_tar(wire.bytes_member(n, n.encode() * 3) for n in names))
    got = [(n, f.read()) for n, f in wire.read_members(io.BytesIO(body), None)]
    assert got == [(n, n.encode() * 3) for n in names]


def test_a_member_not_read_is_skipped() -> None:
    body = b''.join(wire.stream_tar([wire.bytes_member('a', b'1' * 5000),
                                     wire.bytes_member('b', b'2')]))
    assert [(n, f.read(1)) for n, f in wire.read_members(io.BytesIO(body), 'a')] == [
        ('a', b'1'), ('b', b'2')]


def _tar(**members: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w', format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize('body, says', [
    (b'', 'empty'),
    (b'x' * 512, 'bad tar stream'),
    (_tar(a=b'data')[:512 + 2], 'unexpected end'),
    (_tar(a=b'data')[:300], 'unexpected end'),
    (_tar(a=b'', **{'../up': b''}), 'bad member'),
    (_tar(b=b''), 'must start with a'),
], ids=['empty', 'garbage', 'cut data', 'cut header', 'path', 'first'])
def test_bad_streams_are_wire_errors(body: bytes, says: str) -> None:
    with pytest.raises(wire.WireError, match=says):
        for _name, f in wire.read_members(io.BytesIO(body), 'a'):
            f.read()


def test_a_tarfile_stream_reads_the_same() -> None:
    body = _tar(a=b'1' * 1000, b=b'', c=b'3' * 512)
    assert [(n, f.read()) for n, f in wire.read_members(io.BytesIO(body), 'a')] == [
        ('a', b'1' * 1000), ('b', b''), ('c', b'3' * 512)]


class Trickle(io.RawIOBase):
    """A response whose reads return at most 7 bytes (what has arrived, as
    :class:`zerocloud.wire.Available`)."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self.data.read(min(n, 7))


def test_a_member_read_returns_all_it_asks_for_from_a_trickling_stream() -> None:
    report = json.dumps({'etags': {f'/dev/in/{i}': 'x' * 32 for i in range(300)}}).encode()
    body = b''.join(wire.stream_tar([wire.bytes_member(wire.REPORT, report),
                                     wire.bytes_member('dev/out', b'0123456789')]))
    got = [(n, f.read(1 << 20)) for n, f in wire.read_members(Trickle(body), wire.REPORT)]
    assert got == [(wire.REPORT, report), ('dev/out', b'0123456789')]

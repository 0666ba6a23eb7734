"""zerocloud.object.diskfiles: a batch opens each object as Swift's DiskFile does.

Every case is made twice, alike to the timestamp, on two disks of one object
server: the batch's ``DiskFiles`` opens it on one, Swift's ``get_diskfile`` on
the other, and both must give the same answer (the same exception, or the
same metadata and data) and leave the same files (a quarantined object moved
to the same place).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from swift.common.storage_policy import POLICIES
from swift.common.swob import Request
from swift.common.utils import Timestamp
from swift.obj.diskfile import read_metadata as swift_read_metadata
from swift.obj.diskfile import write_metadata
from swift.obj.server import ObjectController

from zerocloud.object.diskfiles import DiskFiles, Opened

OURS, SWIFTS = 'sda1', 'sdb1'
BODY = b'one two three\n'
NOW = time.time()


def ts(offset: float) -> str:
    return Timestamp(NOW - 100 + offset).internal


@pytest.fixture
def devices(tmp_path: Path) -> Path:
    for device in (OURS, SWIFTS):
        (tmp_path / device).mkdir()
    return tmp_path


@pytest.fixture
def server(devices: Path) -> ObjectController:
    return ObjectController({'devices': str(devices), 'mount_check': 'false',
                             'disable_fallocate': 'true'})


def request(server, device: str, method: str, at: float, body: bytes | None = None,
            **headers) -> None:
    resp = Request.blank(f'/{device}/0/a/c/o', method=method, body=body, headers={
        'X-Timestamp': ts(at), **headers}).get_response(server)
    assert resp.status_int < 300 or (method == 'DELETE' and resp.status_int == 404), resp.body


def put(server, device: str, at: float = 0, body: bytes = BODY, **headers) -> None:
    request(server, device, 'PUT', at, body, **{'Content-Type': 'text/plain', **headers})


def data_file(devices: Path, device: str) -> Path:
    [path] = (devices / device / 'objects').rglob('*.data')
    return path


def change_metadata(devices: Path, device: str, **changes) -> None:
    """Rewrite the data file's metadata (as Swift writes it) with ``changes``
    (None: the key removed)."""
    path = data_file(devices, device)
    metadata = swift_read_metadata(str(path))
    for key, value in changes.items():
        key = key.replace('_', '-')
        if value is None:
            metadata.pop(key)
        else:
            metadata[key] = value
    for name in os.listxattr(path):
        os.removexattr(path, name)
    write_metadata(str(path), metadata)


def plain(server, devices, device) -> None:
    put(server, device)


def _rechunk(server, devices, device, size: int, **headers) -> None:
    """The object's metadata written again in xattr chunks of ``size`` bytes."""
    put(server, device, **headers)
    path = str(data_file(devices, device))
    metadata = swift_read_metadata(path)
    for name in os.listxattr(path):
        os.removexattr(path, name)
    write_metadata(path, metadata, xattr_size=size)
    assert 'user.swift.metadata2' in os.listxattr(path)


def chunked_metadata(server, devices, device) -> None:
    """As older Swifts wrote it: in chunks of 254 bytes."""
    _rechunk(server, devices, device, 254,
             **{f'X-Object-Meta-{i}': 'x' * 200 for i in range(3)})


def odd_chunks(server, devices, device) -> None:
    """In chunks of a size no Swift writes (read_metadata stops at the first): Swift's
    DiskFile reads it whole."""
    _rechunk(server, devices, device, 100)


def no_checksum(server, devices, device) -> None:
    """Written before Swift kept a checksum of the metadata."""
    put(server, device)
    os.removexattr(data_file(devices, device), 'user.swift.metadata_checksum')


def expires_later(server, devices, device) -> None:
    put(server, device, **{'X-Delete-At': str(int(NOW) + 3600)})


def encrypted(server, devices, device) -> None:
    """Opened alike (the filter then refuses it: ``open_local``)."""
    put(server, device, **{'X-Object-Sysmeta-Crypto-Body-Meta': '{"iv": "x"}'})


def deleted(server, devices, device) -> None:
    put(server, device)
    request(server, device, 'DELETE', 1)


def put_after_delete(server, devices, device) -> None:
    put(server, device)
    request(server, device, 'DELETE', 1)
    put(server, device, 2, b'again\n')


def tombstone_newer_than_data(server, devices, device) -> None:
    """A tombstone that came (by replication) beside an older data file."""
    put(server, device)
    path = data_file(devices, device)
    tombstone = path.with_name(ts(5) + '.ts')
    tombstone.touch()
    write_metadata(str(tombstone), {'X-Timestamp': ts(5), 'name': '/a/c/o'})


def data_newer_than_tombstone(server, devices, device) -> None:
    put(server, device, 10)
    path = data_file(devices, device)
    tombstone = path.with_name(ts(5) + '.ts')
    tombstone.touch()
    write_metadata(str(tombstone), {'X-Timestamp': ts(5), 'name': '/a/c/o'})


def meta_newer(server, devices, device) -> None:
    put(server, device)
    request(server, device, 'POST', 1, **{'X-Object-Meta-Color': 'red',
                                          'Content-Type': 'text/x-newer'})


def older_data_beside(server, devices, device) -> None:
    put(server, device, 5)
    path = data_file(devices, device)
    older = path.with_name(ts(1) + '.data')
    older.write_bytes(b'older\n')
    write_metadata(str(older), {**swift_read_metadata(str(path)), 'Content-Length': '6'})


def unexpected_file(server, devices, device) -> None:
    put(server, device)
    data_file(devices, device).with_name('stray').write_bytes(b'')


def expired(server, devices, device) -> None:
    put(server, device, **{'X-Delete-At': str(int(NOW) + 3600)})
    change_metadata(devices, device, X_Delete_At=str(int(NOW) - 1))


def changed(case_name: str, **changes) -> Callable:
    """A case: the object as a PUT left it, then its metadata rewritten with
    ``changes`` (as ``change_metadata`` takes them)."""
    def case(server, devices, device) -> None:
        put(server, device)
        change_metadata(devices, device, **changes)
    case.__name__ = case_name
    return case


def raw_metadata(case_name: str, raw: bytes) -> Callable:
    """A case: the object's metadata replaced by ``raw`` (no checksum)."""
    def case(server, devices, device) -> None:
        put(server, device)
        path = data_file(devices, device)
        os.setxattr(path, 'user.swift.metadata', raw)
        os.removexattr(path, 'user.swift.metadata_checksum')
    case.__name__ = case_name
    return case


bad_delete_at = changed('bad_delete_at', X_Delete_At='soon')
bad_content_length = changed('bad_content_length', Content_Length='many')
no_content_length = changed('no_content_length', Content_Length=None)
no_name = changed('no_name', name=None)
another_name = changed('another_name', name='/a/c/other')
no_etag = changed('no_etag', ETag=None)
not_a_pickle = raw_metadata('not_a_pickle', b'not a pickle')
# a pickle that would call what Swift's unpickler does not allow
forbidden_pickle = raw_metadata('forbidden_pickle', b'cos\nsystem\n(S"true"\ntR.')


def cut_short(server, devices, device) -> None:
    put(server, device)
    data_file(devices, device).write_bytes(BODY[:3])


def bad_checksum(server, devices, device) -> None:
    put(server, device)
    os.setxattr(data_file(devices, device), 'user.swift.metadata_checksum', b'0' * 32)


def no_metadata(server, devices, device) -> None:
    put(server, device)
    os.removexattr(data_file(devices, device), 'user.swift.metadata')


def file_for_directory(server, devices, device) -> None:
    put(server, device)
    hash_dir = data_file(devices, device).parent
    for path in hash_dir.iterdir():
        path.unlink()
    hash_dir.rmdir()
    hash_dir.write_bytes(b'')


def missing(server, devices, device) -> None:
    pass


FAST = (plain, chunked_metadata, no_checksum, expires_later, encrypted, put_after_delete)
LEFT_TO_SWIFT = (odd_chunks, deleted, tombstone_newer_than_data, data_newer_than_tombstone,
                 meta_newer, older_data_beside, unexpected_file, expired, bad_delete_at, cut_short,
                 bad_content_length, no_content_length, bad_checksum, no_metadata, not_a_pickle,
                 forbidden_pickle, no_name, another_name, no_etag, file_for_directory, missing)


def answer(get: Callable, device: str):
    """What opening /a/c/o on ``device`` gives: the exception (with its
    timestamp, for a deleted or expired object), or the metadata and the data
    (read through the reader's file, as a node's channel is)."""
    try:
        disk_file = get(device, '0', 'a', 'c', 'o', POLICIES[0])
        disk_file.open()
        metadata = disk_file.get_metadata()
        reader = disk_file.reader()
    except Exception as e:
        timestamp = getattr(e, 'timestamp', None)
        return type(e).__name__, timestamp and timestamp.internal
    try:
        return dict(metadata), os.pread(reader._fp.fileno(), 1 << 16, 0)
    finally:
        reader.close()


def files(devices: Path, device: str) -> list[tuple[str, bytes]]:
    """The device's files (but its temporary ones), with their contents."""
    return sorted((str(p.relative_to(devices / device)), p.read_bytes())
                  for p in (devices / device).rglob('*')
                  if p.is_file() and 'tmp' not in p.parts)


@pytest.mark.parametrize('case', FAST + LEFT_TO_SWIFT, ids=lambda case: case.__name__)
def test_an_object_opens_as_swift_opens_it(case, server, devices: Path) -> None:
    for device in (OURS, SWIFTS):
        case(server, devices, device)
    before = files(devices, OURS)
    assert before == files(devices, SWIFTS)
    ours = DiskFiles(server)
    assert answer(ours, OURS) == answer(server.get_diskfile, SWIFTS)
    assert files(devices, OURS) == files(devices, SWIFTS)
    if case in FAST:                    # opened here, not by Swift's DiskFile
        assert isinstance(ours(OURS, '0', 'a', 'c', 'o', POLICIES[0]), Opened)
        assert files(devices, OURS) == before
    else:
        assert not isinstance(ours(OURS, '0', 'a', 'c', 'o', POLICIES[0]), Opened)


def test_a_corrupt_object_is_quarantined_and_counted_by_swift(server, devices: Path) -> None:
    cut_short(server, devices, OURS)
    hash_dir = data_file(devices, OURS).parent
    increments = []
    server.logger.increment = increments.append
    assert answer(DiskFiles(server), OURS)[0] == 'DiskFileQuarantined'
    assert not hash_dir.exists()
    assert [p.name for p in (devices / OURS / 'quarantined' / 'objects').iterdir()] == [
        hash_dir.name]
    assert 'quarantines' in increments


def test_a_disk_not_here_is_unavailable_and_looked_up_once(server) -> None:
    ours = DiskFiles(server)
    manager = server._diskfile_router[POLICIES[0]]
    looked_up = []
    real = manager.get_dev_path
    manager.get_dev_path = lambda device: looked_up.append(device) or real(device)
    for _ in range(2):
        assert answer(ours, 'sdz9') == answer(server.get_diskfile, 'sdz9') == (
            'DiskFileDeviceUnavailable', None)
    assert looked_up.count('sdz9') == 3         # once for the batch, twice for Swift's


@pytest.mark.parametrize('by_py3', [True, False])
def test_metadata_decodes_as_swifts_decoder_decodes_it(by_py3: bool) -> None:
    """``decode_metadata`` (one pass for what a Python 3 Swift wrote) gives what
    Swift's ``_decode_metadata`` gives, names and values beyond ASCII too: all bytes,
    as a PUT writes them, or with a ``str`` and a number among them."""
    from swift.obj.diskfile import _decode_metadata

    from zerocloud.object.diskfiles import decode_metadata
    written = {b'name': '/a/c/é'.encode(), b'Content-Length': b'4', b'ETag': b'abc',
               b'X-Object-Meta-\xc3\xa9': b'\xff\xfe'}
    for metadata in (written, {**written, 'X-Object-Meta-Str': 'text', b'X-Object-Meta-N': 5},
                     {**written, b'X-Object-Meta-N': 5}):
        assert decode_metadata(dict(metadata), by_py3) == _decode_metadata(dict(metadata),
                                                                           by_py3)


def test_metadata_unpickles_as_swifts_unpickle_does() -> None:
    """The metadata read whole (``_Whole``) unpickles by Swift's restricted unpickler to
    what Swift's ``unpickle`` of the bytes gives, or fails as it does: any protocol,
    cut or damaged, with a global Swift forbids."""
    import pickle
    import random

    from swift.common.utils.pickle import unpickle

    from zerocloud.object.diskfiles import _Whole

    def outcome(source) -> tuple:
        try:
            return 'ok', unpickle(source, encoding='bytes')
        except Exception as e:      # which one is compared
            return 'error', type(e)

    rnd = random.Random(17)
    cases = [pickle.dumps(os.getcwd, 2), b'', b'\x80\x02}q\x00.extra']
    for _ in range(3000):
        metadata = {rnd.randbytes(rnd.randrange(20)): rnd.randbytes(rnd.randrange(300))
                    for _ in range(rnd.randrange(12))}
        if rnd.random() < 0.3:
            metadata = {k.decode('latin1'): v.decode('latin1') for k, v in metadata.items()}
        data = pickle.dumps(metadata, rnd.choice([0, 1, 2, 2, 4, 5]))
        if rnd.random() < 0.5:
            data = bytearray(data[:rnd.randrange(len(data) + 1)])
            if data and rnd.random() < 0.5:
                data[rnd.randrange(len(data))] = rnd.randrange(256)
            data = bytes(data)
        cases.append(data)
    for data in cases:
        assert outcome(_Whole(data)) == outcome(data), data[:80]


@pytest.mark.parametrize('names', [('a', 'c', 'o'), ('AUTH_t', 'c é', 'd/ü/\U0001f600.txt'),
                                   ('a', '', 'o'), ('', 'c', 'o'), ('a', 'c', ''),
                                   ('a', 'c', '\udc80')])
def test_an_objects_hash_is_swifts(names: tuple[str, str, str]) -> None:
    """``object_hash``: Swift's ``hash_path`` of an object, the same digest, or the
    same error (a name left empty, a name that is no UTF-8)."""
    from swift.common.utils import hash_path

    from zerocloud.object.diskfiles import object_hash
    try:
        want = hash_path(*names)
    except (ValueError, UnicodeError) as e:
        with pytest.raises(type(e), match=str(e)[:20]):
            object_hash(*names)
    else:
        assert object_hash(*names) == want

"""zerocloud.object.diskfiles: a batch opens each object as Swift's DiskFile does.

Every case is made twice, alike to the timestamp, on two disks of one object
server: the batch's ``DiskFiles`` opens it on one, Swift's ``get_diskfile`` on
the other, and both must give the same answer (the same exception, or the
same metadata and data) and leave the same files (a quarantined object moved
to the same place).
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from swift.common.storage_policy import POLICIES
from swift.common.swob import Request, str_to_wsgi
from swift.common.utils import Timestamp
from swift.common.utils.pickle import unpickle
from swift.obj.diskfile import _decode_metadata, _encode_metadata, write_metadata
from swift.obj.diskfile import read_metadata as swift_read_metadata
from swift.obj.server import ObjectController

from zerocloud.object import _plain
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


def beyond_ascii(server, devices, device) -> None:
    """Names and values beyond ASCII, and empty and one-byte values that the pickle
    refers back to (its memo)."""
    put(server, device, **{str_to_wsgi('X-Object-Meta-Caf\u00e9'): str_to_wsgi(
        '\u00e9t\u00e9 \U0001f600'), 'X-Object-Meta-Empty': '', 'X-Object-Meta-Again': '',
        'X-Object-Meta-One': '7', 'X-Object-Meta-Seven': '7'})
    written = swift_read_metadata(str(data_file(devices, device)))    # as WSGI strings
    assert written[str_to_wsgi('X-Object-Meta-Caf\u00e9')] == str_to_wsgi(
        '\u00e9t\u00e9 \U0001f600')


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


def written_by_python2(server, devices, device) -> None:
    """As a Python 2 Swift pickled it (its str as SHORT_BINSTRING): Swift decodes its
    values as Latin-1, not UTF-8."""
    put(server, device)
    path = data_file(devices, device)
    metadata = {k.encode(): v.encode() for k, v in swift_read_metadata(str(path)).items()}
    metadata[b'X-Object-Meta-Old'] = '\u00e9'.encode()
    raw = b'\x80\x02}q\x00(' + b''.join(b'U%c%sU%c%s' % (len(k), k, len(v), v)
                                        for k, v in metadata.items()) + b'u.'
    os.setxattr(path, 'user.swift.metadata', raw)
    os.removexattr(path, 'user.swift.metadata_checksum')


def pickled_in_protocol_0(server, devices, device) -> None:
    put(server, device)
    path = data_file(devices, device)
    metadata = {k.encode(): v.encode() for k, v in swift_read_metadata(str(path)).items()}
    os.setxattr(path, 'user.swift.metadata', pickle.dumps(metadata, 0))
    os.removexattr(path, 'user.swift.metadata_checksum')


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


FAST = (plain, chunked_metadata, no_checksum, expires_later, encrypted, put_after_delete,
        beyond_ascii)
LEFT_TO_SWIFT = (odd_chunks, written_by_python2, pickled_in_protocol_0, deleted,
                 tombstone_newer_than_data, data_newer_than_tombstone,
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
    opens_as_swift(case, server, devices, case in FAST)


def test_metadata_over_a_page_opens_as_swift_opens_it() -> None:
    """Metadata longer than the buffer the open asks the kernel for first (4 KiB), on
    tmpfs: ext4 holds no more than a block of a file's extended attributes."""
    def large_metadata(server, devices, device) -> None:
        put(server, device, **{f'X-Object-Sysmeta-Big{i}': 'x' * 3000 for i in range(3)})
        assert len(os.getxattr(data_file(devices, device), 'user.swift.metadata')) > 8192

    with tempfile.TemporaryDirectory(dir='/dev/shm') as shm:
        try:
            os.setxattr(shm, 'user.probe', b'x' * 10000)
        except OSError as e:
            pytest.skip(f'no tmpfs holding 10 KB of extended attributes here: {e}')
        devices = Path(shm)
        for device in (OURS, SWIFTS):
            (devices / device).mkdir()
        opens_as_swift(large_metadata, ObjectController({
            'devices': shm, 'mount_check': 'false', 'disable_fallocate': 'true'}), devices, True)


def opens_as_swift(case: Callable, server, devices: Path, fast: bool) -> None:
    """``case`` made on both disks opens alike through ``DiskFiles`` and Swift's
    ``get_diskfile``, through ``DiskFiles`` itself (``Opened``) if ``fast``."""
    for device in (OURS, SWIFTS):
        case(server, devices, device)
    before = files(devices, OURS)
    assert before == files(devices, SWIFTS)
    ours = DiskFiles(server)
    assert answer(ours, OURS) == answer(server.get_diskfile, SWIFTS)
    assert files(devices, OURS) == files(devices, SWIFTS)
    if fast:                            # opened here, not by Swift's DiskFile
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


def swift_decoded(raw: bytes) -> tuple:
    """What Swift's ``_read_file_metadata`` makes of pickled metadata ``raw``."""
    try:
        return 'ok', _decode_metadata(unpickle(raw, encoding='bytes'),
                                      b'_codecs\nencode' in raw[:32])
    except Exception as e:      # which one is compared
        return 'error', type(e)


def test_metadata_decodes_as_swift_reads_it() -> None:
    """``_plain.decode`` gives what Swift's ``_read_file_metadata`` makes of the pickle,
    key order included, for all metadata a Python 3 Swift writes (any names and values,
    empty, repeated, one item or thousands: a pickle's memo, ``SETITEM`` and batches
    of ``SETITEMS``) and Swift takes for a Python 3 Swift's; anything else (other
    protocols, cut, damaged, other types, a Python 2 Swift's) it leaves to Swift (None),
    or gives what Swift gives."""
    rnd = random.Random(17)
    alphabet = ['a', 'B', '0', ' ', '\x00', '\x7f', '\x80', '\u00e9', '\u00ff', '\u0100',
                '\u20ac', '\U0001f600', '\udc80', '\udcff']

    def text(most: int) -> str:
        return ''.join(rnd.choice(alphabet) for _ in range(rnd.randrange(most)))

    fast = left = 0
    for _ in range(1500):
        metadata = {text(12): rnd.choice(['', '7', text(40)])
                    for _ in range(rnd.choice([0, 1, 2, 5, 12, 90, 300] * 8 + [1100]))}
        raw = pickle.dumps(_encode_metadata(metadata), 2)     # as write_metadata pickles it
        want = swift_decoded(raw)
        if b'_codecs\nencode' in raw[:32]:     # else (an empty first name) read as Python 2's
            assert _plain.decode(raw) == want[1] and list(_plain.decode(raw)) == list(want[1])
        else:
            assert _plain.decode(raw) is None
        mutated = rnd.random()
        if mutated < 0.1:           # not all bytes
            other = {**_encode_metadata(metadata), b'N': rnd.choice([5, 'str', b'x' * 300])}
            raw = pickle.dumps(other, 2)
        elif mutated < 0.2:
            raw = pickle.dumps(_encode_metadata(metadata), rnd.choice([0, 1, 3, 4, 5]))
        elif mutated < 0.8:         # cut, damaged, with more after it
            data = bytearray(raw[:rnd.randrange(len(raw) + 1)] if rnd.random() < 0.5 else raw)
            for _ in range(rnd.randrange(1, 4)):
                if data:
                    data[rnd.randrange(len(data))] = rnd.randrange(256)
            raw = bytes(data) + (b'more' if rnd.random() < 0.2 else b'')
        got = _plain.decode(raw)
        if got is None:
            left += 1
        else:
            fast += 1
            want = swift_decoded(raw)
            assert ('ok', got) == want and list(got) == list(want[1]), raw[:200]
    assert left > 600 and fast > 200


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

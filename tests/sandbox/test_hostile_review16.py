"""review16: what a hostile program or image costs the worker that runs it, before any
guest instruction and outside the guest's limits.  ``tarfile`` reads a member's extended
headers whole (a PAX record, a GNU long name, an old GNU sparse map, block by block),
and an image's index is kept for later runs: each is bounded before it is read or
kept, not after.  A program's validation and its run end within one timeout."""

from __future__ import annotations

import io
import tarfile
import tempfile
import tracemalloc

import pytest
from archives import tar_bytes

from zvm_core import pool, tarheaders
from zvm_core.channels import WRITE, FdBacking
from zvm_core.limits import Limits
from zvm_core.syscalls import fs


@pytest.fixture
def mount(monkeypatch):
    """mount(path) -> ('mounted' or the ImageError, bytes read from the image)."""
    read = [0]
    plain = FdBacking.readinto

    def counted(self, bufs, pos):
        n = plain(self, bufs, pos)
        read[0] += n
        return n
    monkeypatch.setattr(FdBacking, 'readinto', counted)

    def mount(path) -> tuple[str, int]:
        read[0] = 0
        with open(path, 'rb') as f:
            try:
                fs.mounted([(FdBacking(f.fileno(), owned=False), '/', '/dev/image')])
                return 'mounted', read[0]
            except fs.ImageError as e:
                return str(e), read[0]
    return mount


def _sparse(blocks: int) -> bytes:
    """A tar whose first member is an old GNU sparse file whose map goes on for
    ``blocks`` extension blocks of 21 entries (``tarfile`` keeps every entry), then
    a plain file."""
    info = tarfile.TarInfo('sparse')
    info.type = tarfile.GNUTYPE_SPARSE
    head = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    head[482] = 1                                      # isextended
    head[148:156] = b' ' * 8
    head[148:156] = b'%06o\0 ' % sum(head)
    ext = bytearray(512)
    for i in range(21):
        ext[24 * i:24 * i + 24] = b'%011o\0%011o\0' % (2 * i + 1, 1)
    ext[504] = 1
    last = bytearray(ext)
    last[504] = 0
    return bytes(head) + bytes(ext) * (blocks - 1) + bytes(last) + tar_bytes({'f': b'x'})


def _sparse_10(blocks: int) -> bytes:
    """A PAX tar of a GNU sparse 1.0 file whose map (in its data, read by ``tarfile`` as
    it reads the header) claims a billion fields and goes on for ``blocks`` blocks."""
    info = tarfile.TarInfo('sparse10')
    info.pax_headers = {'GNU.sparse.major': '1', 'GNU.sparse.minor': '0',
                        'GNU.sparse.name': 'sparse10', 'GNU.sparse.realsize': '1'}
    info.size = 512 * blocks
    data = (b'1000000000\n' + b'1\n' * (256 * blocks))[:512 * blocks]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _patched(offset: int, field: bytes) -> bytes:
    """A GNU tar of one empty file whose header has ``field`` at ``offset`` (size at 124,
    mtime at 136; base-256 when the first byte has its high bit), then a second file."""
    head = bytearray(tarfile.TarInfo('a').tobuf(format=tarfile.GNU_FORMAT))
    head[offset:offset + len(field)] = field
    head[148:156] = b' ' * 8
    head[148:156] = b'%06o\0 ' % sum(head)
    return bytes(head) + tar_bytes({'b': b''})


def _pax(**records: str) -> bytes:
    """A PAX tar of one symbolic link with these extended header records."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo('link')
        info.type, info.linkname, info.pax_headers = tarfile.SYMTYPE, 't', records
        tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize('image', [
    # 1 GiB of map: ~50 s of a worker's CPU and ~3 GiB of tuples, for a member skipped
    pytest.param(lambda: _sparse(8192), id='gnu-sparse-map'),
    pytest.param(lambda: _sparse_10(8192), id='gnu-sparse-1.0-map'),
    # a name of one 4-byte character and 4 MiB of ASCII: 4 bytes a character in a str
    # (100 MB of it: 720 MB of the worker before the name's length was looked at)
    pytest.param(lambda: _pax(path='\U0001F600' + 'a' * (4 << 20)), id='pax-path'),
    pytest.param(lambda: _pax(linkpath='b' * (4 << 20)), id='pax-linkpath'),
    pytest.param(lambda: _pax(**{'SCHILY.xattr.user.x': 'c' * (4 << 20)}), id='pax-xattr'),
    pytest.param(lambda: tar_bytes({'l': ('sym', 'd' * (4 << 20))}), id='gnu-longlink'),
])
def test_a_members_headers_are_refused_before_they_are_read_whole(tmp_path, mount, image):
    path = tmp_path / 'image.tar'
    path.write_bytes(image())
    refused, read = mount(path)
    assert refused == (f'cannot mount /dev/image at /: /dev/image has a member whose '
                       f'headers (PAX records, GNU long names, sparse maps) are over '
                       f'{tarheaders.MOST} bytes'), refused
    assert read < tarheaders.MOST + (64 << 10), read


MALFORMED = {        # each ended the run 'killed', "sandbox worker error: ValueError(...)"
    'sparse-0.1-map': (lambda: _pax(**{'GNU.sparse.map': 'a,b', 'GNU.sparse.size': '1'}),
                       'is not a readable tar image: a header does not parse'),
    'sparse-realsize': (lambda: _pax(**{'GNU.sparse.name': 'l', 'GNU.sparse.realsize': 'z'}),
                        'is not a readable tar image: a header does not parse'),
    'sparse-1.0-cut-short': (lambda: _sparse_10(2),
                             'is not a readable tar image: a header does not parse'),
    # mounted (or past 2**63: a ValueError reading on): a stat of it (size and time
    # packed in 64 bits) failed in the personality
    'size-2^88': (lambda: _patched(124, b'\x80\x01' + b'\0' * 10),
                  'size or modification time is out'),
    'size-negative': (lambda: _patched(124, b'\xff' * 12), 'size or modification time is out'),
    'mtime-2^88': (lambda: _patched(136, b'\x80\x01' + b'\0' * 10),
                   'size or modification time is out'),
    'mtime-nan': (lambda: _pax(mtime='nan'), 'size or modification time is out'),
}


@pytest.mark.parametrize('image, refused', MALFORMED.values(), ids=MALFORMED)
def test_malformed_headers_are_the_images_fault(tmp_path, mount, image, refused):
    """Numbers and maps ``tarfile`` does not check (its ValueError and OverflowError are
    not TarErrors), and sizes and times a stat cannot hold: an ImageError, the run's
    ``refused`` naming the image, not a worker's error."""
    path = tmp_path / 'image.tar'
    path.write_bytes(image())
    assert refused in mount(path)[0]


def test_headers_within_the_bound_still_mount(tmp_path, mount):
    """A long name, link target, sparse map and PAX record well within the bound."""
    path = tmp_path / 'image.tar'
    path.write_bytes(_sparse(100))
    assert mount(path)[0] == 'mounted'
    path.write_bytes(_pax(linkpath='e' * 30_000, **{'SCHILY.xattr.user.x': 'f' * 100_000}))
    assert mount(path)[0] == 'mounted'
    with open(path, 'rb') as f:
        image = fs.mounted([(FdBacking(f.fileno(), owned=False), '/', '/dev/image')])
        assert image.root.children['link'].target == 'e' * 30_000


def test_an_index_the_tree_would_refuse_is_neither_read_whole_nor_kept(
        tmp_path, monkeypatch, mount):
    """The index of an image is kept for later runs (16 of them): one whose names and
    link targets are more than the tree may hold was kept whole after its mount was
    refused (a 1 GiB image of 4-byte characters: ~1 GiB of the worker, per image).  It is
    refused as it is read, once its names are past MAX_PATH_BYTES, and not kept."""
    monkeypatch.setattr(fs, 'MAX_PATH_BYTES', 20_000)
    members = {f's{i}': ('sym', 't' * 1000) for i in range(100)}    # 100 KB of targets
    path = tmp_path / 'image.tar'
    path.write_bytes(tar_bytes(members))
    refused, read = mount(path)
    assert 'the tree would have more than' in refused, refused
    assert read < path.stat().st_size // 3, (read, path.stat().st_size)
    with open(path, 'rb') as f:
        assert FdBacking(f.fileno(), owned=False).identity() not in fs._INDEXES


def test_an_index_of_one_name_repeated_is_not_kept_whole(tmp_path, monkeypatch, mount):
    """One long directory name, again and again (one node of the tree): its index held
    every copy, kept for later runs (a 100 MB image: 336 MB of the worker, after a mount
    that succeeded).  What an index keeps is bounded as the tree's paths are."""
    monkeypatch.setattr(fs, 'MAX_PATH_BYTES', 20_000)
    path = tmp_path / 'image.tar'
    with tarfile.open(path, 'w', format=tarfile.GNU_FORMAT) as tar:
        for _ in range(100):
            info = tarfile.TarInfo('d' * 1000)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
    refused, read = mount(path)
    assert 'the tree would have more than' in refused, refused
    with open(path, 'rb') as f:
        assert FdBacking(f.fileno(), owned=False).identity() not in fs._INDEXES


def test_the_indexes_kept_are_bounded_in_all(tmp_path, monkeypatch, mount):
    """Each image's index is kept for later runs, 16 of them: 16 images of 100,000
    empty members (50 MB each) held ~370 MB of a worker, of 16 MiB of 4-byte names
    ~1.4 GB.  The kept ones are bounded by what they cost in all, oldest out first."""
    one = fs._index_cost(100, 300)              # 100 members named 000..099
    monkeypatch.setattr(fs, '_INDEXES_BYTES', one * 3 // 2)
    keys = []
    for name in ('a', 'b'):
        path = tmp_path / f'{name}.tar'
        path.write_bytes(tar_bytes({f'{i:03d}': b'' for i in range(100)}))
        assert mount(path)[0] == 'mounted'
        with open(path, 'rb') as f:
            keys.append(FdBacking(f.fileno(), owned=False).identity())
    assert keys[0] not in fs._INDEXES and keys[1] in fs._INDEXES


def test_members_keeps_no_member_its_caller_does_not():
    """``tarfile`` keeps every member it read (for extraction), each with its PAX
    records: 64 members of 256 KiB of records were 16 MiB at once; one at a time now."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for i in range(64):
            info = tarfile.TarInfo(f'f{i}')
            info.pax_headers = {'comment': 'c' * (256 << 10)}
            tar.addfile(info)
    buf.seek(0)
    tracemalloc.start()
    try:
        assert sum(1 for _ in tarheaders.members(buf)) == 64
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


def test_a_programs_validation_and_run_end_within_one_timeout(guest, tmp_path, monkeypatch,
                                                              engine):
    """A program that takes most of its timeout to validate (1.5 MiB of one-byte
    instructions: seconds) and then spins: the run had a whole timeout of its own after
    the validation, so the worker answered after up to twice the timeout, and the caller
    had killed it at timeout + KILL_GRACE: ``killed``, the host's failure (the proxy runs
    it on two more servers, each validating it again: no verdict was kept where the
    worker died).  The run has what the validation left: ``timeout``, the program's."""
    monkeypatch.setenv('ZVM_CACHE_DIR', str(tmp_path))     # no verdict from elsewhere
    program, timeout = guest('bigspin'), 8.0
    with pool.Pool(size=1, queue=0) as workers, tempfile.TemporaryFile() as out:
        workers.wait_warm(120)
        report = workers.run(str(program), [pool.ChannelSpec('/dev/stdout', out.fileno(), WRITE)],
                             argv=['bigspin'], limits=Limits(timeout=timeout), engine=engine)
    # the worker's own answer, not the caller's kill at timeout + KILL_GRACE ('killed')
    assert (report.status, report.host_failure) == ('timeout', False), report
    assert ('left of the 8 s timeout' in report.message    # or it took the whole timeout
            or "validation did not end within the run's timeout" in report.message), report

"""review16: a zapp's members as the proxy reads them (``zerocloud.zapp``, in its own
process, for any caller who may run jobs): a member's extended headers (a PAX record, a
GNU long name, an old GNU sparse map) are bounded before ``tarfile`` reads them whole.
A 256 MiB zapp (zapp_max_size) of one PAX path of 4-byte characters held ~1.8 GB of
the proxy, one of sparse map ~13 s of its CPU; either is a 413 naming the bound."""

from __future__ import annotations

import io
import tarfile
import tracemalloc

import pytest
from archives import tar_bytes, zapp_member
from swift.common.swob import HTTPException

from zerocloud import zapp
from zvm_core import tarheaders


class _Counted(io.BytesIO):
    """A zapp's bytes that count what is read of them."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.read_bytes += len(data)
        return data


def _pax_zapp(path: str, **records: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(path)
        info.pax_headers = records
        tar.addfile(info)
        for name, data in (('boot/system.map', b'[]'), ('bin/x', b'12345')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize('data', [
    _pax_zapp('\U0001F600' + 'a' * (4 << 20)),
    tar_bytes({'d' * (4 << 20): b'', 'boot/system.map': b'[]', 'bin/x': b'12345'}),
], ids=['pax-path', 'gnu-longname'])
def test_a_zapp_members_headers_are_a_413_before_they_are_read(data: bytes) -> None:
    for read in (lambda f: zapp.system_map(f, 10, 'z'),
                 lambda f: zapp_member(f, 'bin/x', 10, 'z')):
        f = _Counted(data)
        with pytest.raises(HTTPException) as err:
            read(f)
        assert err.value.status_int == 413
        assert err.value.body == (f'z has a member whose headers (PAX records, GNU long '
                                  f'names, sparse maps) are over {tarheaders.MOST} '
                                  f'bytes\n').encode()
        assert f.read_bytes < tarheaders.MOST, f.read_bytes


def test_a_zapp_whose_headers_are_within_the_bound_is_read() -> None:
    data = _pax_zapp('\U0001F600' + 'a' * 4000)
    assert zapp.system_map(io.BytesIO(data), 10, 'z') == b'[]'
    assert zapp_member(io.BytesIO(data), 'bin/x', 10, 'z') == b'12345'


def test_a_zapp_read_keeps_only_the_members_it_looks_for() -> None:
    """The proxy kept every member of a zapp (name and PAX records) to look up one: a
    256 MiB zapp of long names held ~1 GiB of it.  64 members of 256 KiB names: 16 MiB
    at once before; the map and the program alone now."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for i in range(64):
            tar.addfile(tarfile.TarInfo(f'{i}' + 'n' * (256 << 10)))
        for name, data in (('boot/system.map', b'[]'), ('bin/x', b'12345')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    for read, want in ((lambda f: zapp.system_map(f, 10, 'z'), b'[]'),
                       (lambda f: zapp_member(f, 'bin/x', 10, 'z'), b'12345')):
        f = io.BytesIO(buf.getvalue())
        tracemalloc.start()
        try:
            assert read(f) == want
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 << 20, peak


@pytest.mark.parametrize('records', [
    {'GNU.sparse.map': 'a,b', 'GNU.sparse.size': '1'},
    {'GNU.sparse.name': 'l', 'GNU.sparse.realsize': 'z'},
], ids=['sparse-map', 'sparse-realsize'])
def test_a_zapp_header_tarfile_does_not_check_is_a_400(records: dict) -> None:
    """tarfile's ValueError on numbers it does not check was the proxy's 500."""
    with pytest.raises(HTTPException) as err:
        zapp.system_map(io.BytesIO(_pax_zapp('x', **records)), 10, 'z')
    assert err.value.status_int == 400
    assert err.value.body.startswith(b'z is not a tar archive: a header does not parse ('), \
        err.value.body


def _sparse_zapp(name: str, kind: str) -> bytes:
    """A zapp whose ``name`` is a sparse member of 5 stored bytes, 4096 expanded: PAX
    (GNU.sparse 0.1, as tarfile reads it) or an old GNU ``S`` header (made by hand:
    tarfile writes none), then the other member and 'TAIL' bytes after it."""
    other = 'bin/x' if name == 'boot/system.map' else 'boot/system.map'
    buf = io.BytesIO()
    form = tarfile.PAX_FORMAT if kind == 'pax' else tarfile.GNU_FORMAT
    with tarfile.open(fileobj=buf, mode='w', format=form) as tar:
        info = tarfile.TarInfo(name)
        info.size = 5
        if kind == 'pax':
            info.pax_headers = {'GNU.sparse.map': '0,5', 'GNU.sparse.size': '4096'}
        tar.addfile(info, io.BytesIO(b'[]   '))
        for n, data in ((other, b'[]'), ('tail', b'TAIL' * 1024)):
            more = tarfile.TarInfo(n)
            more.size = len(data)
            tar.addfile(more, io.BytesIO(data))
    data = bytearray(buf.getvalue())
    if kind == 'gnu':
        header = data[:512]
        header[156:157] = tarfile.GNUTYPE_SPARSE
        header[386:410] = b'%011o\0%011o\0' % (0, 5)        # one (offset, bytes) entry
        header[483:495] = b'%011o\0' % 4096                 # the expanded size
        header[148:156] = b' ' * 8
        header[148:156] = b'%06o\0 ' % sum(header)
        data[:512] = header
    return bytes(data)


@pytest.mark.parametrize('kind', ['pax', 'gnu'])
@pytest.mark.parametrize('name', ['bin/x', 'boot/system.map'])
def test_a_sparse_zapp_member_is_a_400_naming_it(kind: str, name: str) -> None:
    """tarfile gives it as a file of its expanded size: read from its data, it was the
    stored bytes and the next members' (a program other than the one stored ran)."""
    data = _sparse_zapp(name, kind)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getmember(name).issparse() and tar.getmember(name).size == 4096
    read = zapp_member if name == 'bin/x' else lambda f, n, limit, where: \
        zapp.system_map(f, limit, where)
    with pytest.raises(HTTPException) as err:
        read(io.BytesIO(data), name, 1 << 16, 'z')
    assert err.value.status_int == 400
    assert err.value.body == (f'{name} in z is a sparse file: store it whole (tar '
                              f'without --sparse)\n').encode()

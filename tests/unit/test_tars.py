"""Images, system images and zapps are untrusted tars: an extended header (PAX, GNU long
name) is bounded before it is read, and a chain of them before tarfile recurses."""

from __future__ import annotations

import io
import tarfile
import tracemalloc

import pytest
from archives import tar_bytes
from swift.common.swob import HTTPException

from zerocloud import zapp
from zvm_core import tars
from zvm_core.channels import FdBacking
from zvm_core.syscalls import fs
from zvm_core.sysimages import SysImageUnreadable, SystemImages

CLAIMED = 64 << 20          # an extended header's size field, its bytes all there


def _header(kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo('././@PaxHeader' if kind != tarfile.GNUTYPE_LONGNAME
                           else '././@LongLink')
    info.type, info.size = kind, size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _huge(path, kind: bytes) -> None:
    """A tar whose first member's extended header claims (and holds) CLAIMED bytes of a
    name: sparse on disk, every byte readable."""
    with open(path, 'wb') as f:
        f.write(_header(kind, CLAIMED))
        f.truncate(512 + CLAIMED)
        f.seek(512 + CLAIMED)
        f.write(tar_bytes({'f': b'x'}))


def _chain(path, count: int) -> None:
    """``count`` PAX headers in a row before one member."""
    record = b'11 path=ab\n'
    block = _header(tarfile.XHDTYPE, len(record)) + record.ljust(512, b'\0')
    path.write_bytes(block * count + tar_bytes({'f': b'x'}))


@pytest.mark.parametrize('kind', [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_a_huge_extended_header_is_refused_before_it_is_read(tmp_path, kind) -> None:
    """tarfile read the whole header (here 64 MiB, up to gigabytes) before the name's
    4096-character limit applied; now the image, the zapp and the system image are
    refused with only its 512-byte block read."""
    image = tmp_path / 'huge.tar'
    _huge(image, kind)
    tracemalloc.start()
    try:
        with open(image, 'rb') as f, pytest.raises(
                fs.ImageError, match=f'extended header .* of {CLAIMED} bytes: at most '
                                     f'{tars.MAX_EXTENDED}'):
            fs.mounted([(FdBacking(f.fileno(), owned=False), '/', '/dev/image')])
        with open(image, 'rb') as f, pytest.raises(HTTPException) as refused:
            zapp.system_map(f, 1 << 16, 'the zapp')
        assert refused.value.status_int == 400
        assert f'of {CLAIMED} bytes' in refused.value.body.decode()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak
    images = SystemImages({'os': image}, tmp_path / 'cache')
    with pytest.raises(SysImageUnreadable, match=f'of {CLAIMED} bytes'):
        images.program('os', 'bin/f')


def test_a_chain_of_extended_headers_is_refused_not_a_recursion(tmp_path) -> None:
    """tarfile reads each extended header of a chain one call deeper: 400 in a row
    (400 KiB) were a RecursionError, which the image's and the zapp's readers let
    through (an internal error, a 500); a few in a row are an archive like another."""
    image = tmp_path / 'chain.tar'
    _chain(image, 400)
    with open(image, 'rb') as f, pytest.raises(
            fs.ImageError, match=f'more than {tars.MAX_CHAIN} extended headers in a row'):
        fs.mounted([(FdBacking(f.fileno(), owned=False), '/', '/dev/image')])
    with open(image, 'rb') as f, pytest.raises(HTTPException) as refused:
        zapp.system_map(f, 1 << 16, 'the zapp')
    assert refused.value.status_int == 400
    _chain(image, 3)
    with open(image, 'rb') as f:
        assert fs.mounted([(FdBacking(f.fileno(), owned=False), '/', '/dev/image')]
                          ).lookup('/ab').size == 1


def test_long_names_within_the_limits_still_read() -> None:
    """A GNU long name and link, and a PAX name, of PATH_MAX's length read as before."""
    name = 'd/' * 2000 + 'f'
    gnu = tar_bytes({name: b'x', 'l': ('sym', name)})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b'x'))
    for data in (gnu, buf.getvalue()):
        with tarfile.open(fileobj=io.BytesIO(data), tarinfo=tars.Member) as tar:
            assert tar.getnames()[0] == name

"""Requests sent to an object server's filter directly, as a host on the cluster
network could (bypassing the proxy): whatever the request says, the filter
reads and writes nothing on the host but its node's scratch directory and the
object of the path, and a stream that lies is a 400 with nothing run."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import test_object_filter as base
from test_object_filter import execute, put, spec, untar, wc_members

from zerocloud import wire

devices, server, mw = base.devices, base.server, base.mw      # its fixtures, here too


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob('*') if p.is_file()}


def raw_tar(*members: tarfile.TarInfo, data: bytes = b'x' * 10) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 10,
           link: str = '') -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size if kind == tarfile.REGTYPE else 0, link
    return info


@pytest.mark.parametrize('bad', [
    member('dev/../../../../escape'), member('/tmp/escape'), member('../escape'),
    member('dev/stdin', tarfile.SYMTYPE, link='/etc/passwd'),
    member('dev/stdin', tarfile.LNKTYPE, link='/etc/passwd'),
    member('dev/stdin', tarfile.DIRTYPE),
], ids=['dotdot-inside', 'absolute', 'dotdot', 'symlink', 'hardlink', 'directory'])
def test_members_that_climb_out_or_link_are_refused(mw, guest, devices: Path, bad) -> None:
    node = wire.NodeSpec('wc', ['wc'], devices=(wire.DeviceSpec('stdin', 'r', source='member'),
                                                wire.DeviceSpec('stdout', 'w')))
    stream = b''.join(wire.stream_members([wire.bytes_member(wire.SPEC, node.to_json()),
                                           wire.bytes_member(wire.EXE, guest('wc').read_bytes())]))
    stream += raw_tar(bad)[:-2 * wire.BLOCK]
    before = files_under(devices)
    resp = execute(mw, body=stream + wire.TAR_END, local=False)
    assert resp.status_int == 400, resp.body
    assert b'bad member' in resp.body
    assert files_under(devices) - before == set()
    assert not (devices.parent / 'escape').exists() and not Path('/tmp/escape').exists()
    assert mw.admission.total == 0


def pax_size(name: str, size: str, data: bytes) -> bytes:
    """A member whose PAX header says ``size`` (e.g. negative) for ``data``."""
    info = member(name, size=len(data))
    info.pax_headers = {'size': size}
    return raw_tar(info, data=data)[:-2 * wire.BLOCK]


@pytest.mark.parametrize('size', ['-512', '-1', '99999999999999999999'])
def test_a_stream_that_lies_about_sizes_is_refused(mw, guest, devices: Path, size: str) -> None:
    stream = b''.join(wire.stream_members(wc_members(guest, stdin='member')))
    stream += pax_size('dev/stdin', size, b'a b c\n' * 100) + wire.TAR_END
    resp = execute(mw, body=stream, local=False)
    assert resp.status_int in (400, 413), resp.body
    assert mw.admission.total == 0
    assert files_under(devices) == set()


def test_a_program_named_outside_the_system_images_is_refused(mw, devices: Path) -> None:
    for image, name in (('../../../../etc', 'passwd'), ('/etc', 'passwd'),
                        ('python3', '/etc/passwd')):
        node = wire.NodeSpec('x', ['x'], program=(image, name))
        resp = execute(mw, members=[wire.bytes_member(wire.SPEC, node.to_json())], local=False)
        assert resp.status_int == 400, resp.body
        assert b'system image' in resp.body
    assert files_under(devices) == set()


def test_device_names_never_make_paths_outside_the_scratch_directory(mw, guest,
                                                                     devices: Path) -> None:
    """A written device named ``../../escape`` is a file of the node's directory (gone
    with it), and its channel ``/dev/../../escape`` is no path the guest can open."""
    put(mw)
    node = spec(wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'),
                wire.DeviceSpec('../../../escape', 'w'))
    resp = execute(mw, members=[node, wire.bytes_member(wire.EXE, guest('wc').read_bytes())])
    assert resp.status_int == 200, resp.body
    members = untar(resp.body)
    assert json.loads(members[wire.REPORT])['status'] == 'ok'
    assert members['dev/stdout'] == b'%7d %7d %7d\n' % (2, 3, 20)
    assert not (devices.parent / 'escape').exists()
    assert all(p.relative_to(devices).parts[:2] == ('sda1', 'objects')
               for p in files_under(devices))          # the object; its node's files went

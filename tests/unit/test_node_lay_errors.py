"""What a node is told when the object server cannot open one of its files.

``NodeRun.lay`` opens a node's ``FILE`` channels: ``/dev/null`` for an undeclared
standard stream, a request's member, a system image.  Any ``OSError`` there became
``400 <error> on this server``: a host's trouble (no descriptor left, EMFILE, under
load) answered as the user's mistake, so the proxy does not send the node to another
replica and the user is told to fix a request that was right; and the body names
the server's own paths (its disk, its scratch directory).
"""

from __future__ import annotations

import errno

import pytest
from swift.common.swob import HTTPException

from zerocloud.object import middleware
from zerocloud.object.middleware import NodeRun
from zerocloud.object.plan import FILE, Step
from zvm_core.channels import READ

MEMBER = '/srv/node/sda1/tmp/zerocloud/3f2a/dev_input'


@pytest.mark.parametrize('path', [MEMBER, '/dev/null'])
def test_a_file_the_server_cannot_open_for_want_of_descriptors_is_its_trouble(
        monkeypatch, path: str) -> None:
    def no_descriptor(name, mode='r', *args, **kwargs):
        raise OSError(errno.EMFILE, 'Too many open files', name)
    monkeypatch.setattr(middleware, 'open', no_descriptor, raising=False)
    helper = object.__new__(NodeRun)
    helper.outputs = None
    opened: list = []
    with pytest.raises(HTTPException) as raised:
        helper.lay((Step(FILE, 'input', '/dev/input', READ, path=path),), None, '/tmp',
                   opened, {})
    assert raised.value.status_int == 503
    assert b'/srv/node' not in raised.value.body and opened == []


@pytest.mark.parametrize('broken', ['missing', 'not a tar'])
def test_a_system_image_this_server_cannot_read_is_its_trouble(tmp_path, broken: str) -> None:
    """review9: a configured system image whose file this server lacks or cannot read
    (removed, truncated on this disk) was ``400 ... on this server``, which the proxy
    now ends as ``refused`` (the job's mistake) without trying another replica.  It
    is the server's: 503, the body naming the image and not the server's paths.  An
    image the job names wrongly (no such member) stays a 400."""
    import threading
    import types

    from zerocloud import wire
    from zvm_core.sysimages import SystemImages
    tar = tmp_path / 'img.tar'
    if broken == 'not a tar':
        tar.write_bytes(b'not a tar archive' * 100)
    helper = object.__new__(NodeRun)
    helper.owner = types.SimpleNamespace(sysimages=SystemImages({'img': tar}, tmp_path / 'c'),
                                         extracting=threading.Lock())
    calls = [lambda: helper.program(types.SimpleNamespace(program=('img', 'hello')), {})]
    if broken == 'missing':         # (a file that is there is opened when the node is laid)
        calls.append(lambda: helper.step('img', wire.DeviceSpec('img'), {}))
    for call in calls:
        with pytest.raises(HTTPException) as raised:
            call()
        assert raised.value.status_int == 503, raised.value.body
        assert b'system image img' in raised.value.body
        assert str(tmp_path).encode() not in raised.value.body


def test_a_member_a_system_image_does_not_have_is_the_jobs_mistake(tmp_path) -> None:
    import io
    import tarfile
    import threading
    import types
    tar = tmp_path / 'img.tar'
    with tarfile.open(tar, 'w') as t:
        info = tarfile.TarInfo('hello')
        info.size = 2
        t.addfile(info, io.BytesIO(b'hi'))
    from zvm_core.sysimages import SystemImages
    helper = object.__new__(NodeRun)
    helper.owner = types.SimpleNamespace(sysimages=SystemImages({'img': tar}, tmp_path / 'c'),
                                         extracting=threading.Lock())
    with pytest.raises(HTTPException) as raised:
        helper.program(types.SimpleNamespace(program=('img', 'nothere')), {})
    assert raised.value.status_int == 400
    assert b'system image img has no file nothere on this server' in raised.value.body

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

"""Fixtures of the sandbox tests of more than one file."""

from __future__ import annotations

import pytest


@pytest.fixture(params=[True, False], ids=['recv-wait', 'poll-wait'])
def wait(request):
    """Each way the C loop waits for the guest's next call (fastcall.c, "the wait"): in
    the RECV ioctl itself, with the helper's watchdog at the deadline (where the kernel
    ends that wait when the guest is gone, Linux 6.11), and with poll and epoll.  Set
    in this process, so a child forked by the test (``in_child``) waits so too."""
    from zvm_core.engines.native import _fastcall
    before = _fastcall.recv_waits()
    if request.param and not _fastcall.recv_waits(True):
        _fastcall.recv_waits(before)
        pytest.skip('this kernel does not end a blocked RECV when the guest is gone')
    _fastcall.recv_waits(request.param)
    yield request.param
    _fastcall.recv_waits(before)

"""A pool worker's order after a run (``zvm_core.pool.worker.worker_main``): the reply,
then, for a native template, the CPU left to the caller (``sched_yield``), then the
clean-up that wakes the template and the ended child (``reset``).  The worker's
steps are stand-ins: only their order is under test."""

from __future__ import annotations

import os
import socket

from zvm_core.pool import worker
from zvm_core.report import Report


class _Machine:
    """A native template's stand-in (``Warm``): its reset wakes other processes."""

    reset_wakes = True

    def __init__(self, steps: list[str]) -> None:
        self.steps = steps

    def reset(self) -> None:
        self.steps.append('reset')


class _Inbox:
    """One run request, then the end."""

    socks: list[socket.socket] = []     # the worker's own socket (closed by the test)

    def __init__(self, sock: socket.socket) -> None:
        self.left = [('run', {}, [])]
        self.socks.append(sock)

    def next(self):
        return self.left.pop() if self.left else None


class _Emulated(_Machine):
    """An emulated machine's stand-in: its reset wakes nobody."""

    reset_wakes = False


def _serve(monkeypatch, machine: _Machine) -> list[str]:
    """The steps of a worker serving one run on ``machine``."""
    steps = machine.steps
    monkeypatch.setattr(worker, '_die_with_parent', lambda parent: None)
    monkeypatch.setattr(worker, '_limit_self', lambda address_space: None)
    monkeypatch.setattr(worker.engines, 'native_unavailable', lambda: None)
    monkeypatch.setattr(worker.gc, 'freeze', lambda: None)
    monkeypatch.setattr(worker.signal, 'signal', lambda *args: None)
    monkeypatch.setattr(worker, '_Inbox', _Inbox)
    monkeypatch.setattr(worker, '_serve_one', lambda req, fds, templates, tails: (
        Report('ok', 0), machine))
    monkeypatch.setattr(worker, '_reply', lambda sock, report, tails: steps.append('reply'))
    monkeypatch.setattr(worker.Templates, 'settle', lambda self, m: steps.append('settle'))
    monkeypatch.setattr(worker.os, 'sched_yield', lambda: steps.append('yield'))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        assert worker.worker_main(os.dup(theirs.fileno()), 64 << 20, 0, parent=os.getpid()) == 0
    finally:
        for sock in (ours, theirs, *_Inbox.socks):
            sock.close()
    return steps


def test_the_caller_gets_the_cpu_before_a_native_clean_up(monkeypatch) -> None:
    assert _serve(monkeypatch, _Machine([])) == ['reply', 'yield', 'reset', 'settle']


def test_an_emulated_reset_wakes_nobody_and_goes_on_at_once(monkeypatch) -> None:
    assert _serve(monkeypatch, _Emulated([])) == ['reply', 'reset', 'settle']

"""Hostile checks of the C loop's helper thread (``engines/native/fastcall.c``:
gathered 64 KiB buffers written and hashed off the serving thread, and its
watchdog where the loop waits in the RECV ioctl), found in review.

Each runs under both of the loop's waits (RECV itself, poll and epoll) in a
child of the test: the file size limit and the wait are the process's own.
"""

from __future__ import annotations

import os
import resource
import signal

import pytest

from tests.conftest import RUN_TIMEOUT, in_child
from tests.sandbox.test_fastcall import _backing
from tests.sandbox.test_native import spinning_thread
from zvm_core import engines
from zvm_core.channels import READ, WRITE, Channel, MemoryBacking
from zvm_core.executor import run

pytestmark = pytest.mark.skipif(engines.native_unavailable() is not None,
                                reason=f'native engine: {engines.native_unavailable()}')

LIMIT = 8 * 1024        # the file may not grow past it: the helper's 64 KiB are refused


@pytest.mark.parametrize('kind', ['fd', 'file'])
@pytest.mark.parametrize('kib', [65, 129])
def test_a_refused_helper_write_ends_the_run_and_writes_nothing_after_it(guest, tmp_path,
                                                                         wait, kind, kib):
    """``gather 65``: 64 KiB gathered and handed to the helper, 1 KiB more gathered,
    then uname (answered in Python); ``gather 129``: the next 64 KiB gathered too,
    and the write after them finds the helper's failure.  The host refuses the
    helper's write (RLIMIT_FSIZE: EFBIG past 8 KiB).  The run ends ``killed`` as a
    refused write does, and the file holds the 8 KiB the host took and nothing
    after (review7: the gathered bytes after the failure were kept, and written
    by the run's end at a stale buffer's chan, ``chans[-1]``: stack memory, whose
    descriptor was 0 in that build: made a writable file here, it must get nothing)."""
    prog = guest('gather')

    def body():                 # the child inherits the wait the fixture set
        stray = os.open(tmp_path / 'stray', os.O_RDWR | os.O_CREAT, 0o644)
        os.dup2(stray, 0)       # where chans[-1]'s descriptor pointed (the child's own)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))
        chans = [Channel('/dev/stdin', MemoryBacking(b'x' * 1024), READ),
                 Channel('/dev/stdout', _backing(kind, tmp_path / 'out', WRITE), WRITE),
                 Channel('/dev/stderr', MemoryBacking(), WRITE)]
        report = run(prog, chans, argv=['gather', str(kib)], engine='native')
        for ch in chans:
            ch.close()
        return [report.status, report.message, report.host_failure]

    got = in_child(body, True)
    assert got == ['killed', 'host I/O failed in write: File too large', True], got
    assert (tmp_path / 'stray').read_bytes() == b''
    data = (tmp_path / 'out').read_bytes()
    assert data == bytes(ord('a') + k for k in range(LIMIT // 1024) for _ in range(1024))



def _failing_kills(_fastcall) -> bool:
    """Make the watchdog's kill fail in this (child) process: serve() is given the pidfd
    of a child already reaped.  False where the loop does not wait in RECV."""
    if not _fastcall.recv_waits(True):
        return False
    gone = os.fork()
    if gone == 0:
        os._exit(0)
    dead = os.pidfd_open(gone)
    os.waitpid(gone, 0)
    real = _fastcall.serve

    def serve(listener, pidfd, *rest):
        return real(listener, dead, *rest)
    _fastcall.serve = serve
    return True


def _stopped_spinner(prog, timeout: float, got: dict, before=lambda: None):
    """``spinning_thread`` (test_native), the guest stopped (SIGSTOP): it makes no call
    and takes no CPU."""
    t, pid = spinning_thread(prog, timeout, got, before)
    os.kill(pid, signal.SIGSTOP)
    return t, pid


def test_a_failed_watchdog_kill_still_ends_the_wait_at_the_deadline(guest):
    """A guest stopped (SIGSTOP: no call, no CPU) while the loop waits in RECV: at the
    deadline the helper kills it through its pidfd.  Here that kill fails (the loop
    is given the pidfd of a child already gone: ESRCH); the run still ends
    ``timeout`` (the helper interrupts the wait, the supervisor kills the guest with
    its own pidfd).  review7: the helper said it fired and RECV waited forever (the
    alarm, a bound that only fails a hang, ends the test's child: None)."""

    prog = guest('native_hostile')

    def body():
        from zvm_core.engines.native import _fastcall
        if not _failing_kills(_fastcall):
            return 'no recv wait'
        signal.alarm(RUN_TIMEOUT)
        got: dict = {}
        t, _pid = _stopped_spinner(prog, 5, got)
        t.join()
        signal.alarm(0)
        return [got['report'].status, got['report'].engine]

    got = in_child(body, True)
    if got == 'no recv wait':
        pytest.skip('this kernel does not end a blocked RECV when the guest is gone')
    assert got == ['timeout', 'native'], got


@pytest.mark.parametrize('how', ['reset', 'blocked'])
def test_a_failed_watchdog_kill_nudges_only_while_the_wake_signal_is_safe(guest, how):
    """As above (the kill fails), but WAKE (SIGRTMAX-1) is no longer safe to send:
    its handler reset to SIG_DFL from Python (a real-time signal's default ends the
    whole process), or blocked in the serving thread (the nudges pile up pending).
    The helper then does not nudge (it disarms, as before WAKE): the test's child
    lives past the deadline with no WAKE pending, and the run ends once the guest is
    killed.  review: the helper checked WAKE's handler once at import (the child died
    of WAKE) and nudged a thread that blocked it (WAKE pending)."""

    prog = guest('native_hostile')
    wake = signal.SIGRTMAX - 1

    def body():
        from zvm_core.engines.native import _fastcall
        if not _failing_kills(_fastcall):
            return 'no recv wait'
        if how == 'reset':
            signal.signal(wake, signal.SIG_DFL)
        signal.alarm(RUN_TIMEOUT)
        got: dict = {}

        def before() -> None:
            if how == 'blocked':
                signal.pthread_sigmask(signal.SIG_BLOCK, {wake})
        t, pid = _stopped_spinner(prog, 1, got, before)
        t.join(3)                       # past the deadline: the helper has given up
        with open(f'/proc/self/task/{t.native_id}/status') as f:
            [pending] = [int(line.split()[1], 16) for line in f if line.startswith('SigPnd:')]
        os.kill(pid, signal.SIGKILL)    # the wait ends with the guest
        t.join()
        signal.alarm(0)
        return [bool(pending >> (wake - 1) & 1), got['report'].engine]

    got = in_child(body, True)
    if got == 'no recv wait':
        pytest.skip('this kernel does not end a blocked RECV when the guest is gone')
    assert got == [False, 'native'], got


def test_the_watchdog_does_not_interrupt_the_personality_past_the_deadline(guest):
    """The kill fails (as above) while the personality's Python answers a call past
    the deadline: its own system calls are not interrupted (a read through libc, which
    does not retry on EINTR as Python's do, waits for its byte), and the run still ends
    ``timeout`` once answer() returns.  review: the helper's WAKE hit answer() every
    10 ms (EINTR)."""
    import ctypes
    import threading
    import time

    from zvm_core.channels import FdBacking
    from zvm_core.engines.native import supervisor
    from zvm_core.executor import Limits
    prog = guest('native_hostile')

    def body():
        from zvm_core.engines.native import _fastcall
        if not _failing_kills(_fastcall):
            return 'no recv wait'
        libc = ctypes.CDLL(None, use_errno=True)
        read = []
        real_answer = supervisor._Supervisor._answer

        def answer(self):
            if not read:                # the first call: answered past the deadline
                r, w = os.pipe()
                threading.Thread(target=lambda: (time.sleep(2), os.write(w, b'x'))).start()
                got = libc.read(r, ctypes.create_string_buffer(1), 1)
                read.append([got, ctypes.get_errno() if got < 0 else 0])
            return real_answer(self)
        supervisor._Supervisor._answer = answer
        signal.alarm(RUN_TIMEOUT)
        out = os.open(os.devnull, os.O_WRONLY)
        report = run(prog, [Channel('/dev/stdout', FdBacking(out, True), WRITE)],
                     argv=['native_hostile', 'calls'], limits=Limits(timeout=1),
                     engine='native')
        signal.alarm(0)
        return [read, report.status]

    got = in_child(body, True)
    if got == 'no recv wait':
        pytest.skip('this kernel does not end a blocked RECV when the guest is gone')
    assert got == [[[1, 0]], 'timeout'], got

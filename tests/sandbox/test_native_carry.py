"""The native supervisor's serving thread carries the guest's faulting flags while it
serves (``engines/native/fastcall.c``: rdtsc, and cpuid where the CPU can, fault
in it too, so no switch between guest and supervisor rewrites them), drops them
when the run ends, and survives an rdtsc or cpuid of its own (the net).
"""

from __future__ import annotations

import collections
import ctypes
import faulthandler
import mmap
import signal
import subprocess
import sys
import textwrap

import pytest

from zvm_core import engines
from zvm_core.channels import WRITE, Channel, MemoryBacking
from zvm_core.engines.native import _fastcall, cpuid, supervisor
from zvm_core.executor import run

pytestmark = pytest.mark.skipif(engines.native_unavailable() is not None,
                                reason=f'native engine: {engines.native_unavailable()}')

PR_GET_TSC, PR_SET_TSC, PR_TSC_ENABLE, PR_TSC_SIGSEGV = 25, 26, 1, 2
SYS_ARCH_PRCTL, ARCH_GET_CPUID = 158, 0x1011
_libc = ctypes.CDLL(None, use_errno=True)

# rdtsc; shl rdx, 32; or rax, rdx; ret  |  push rbx; xor eax, eax; cpuid; pop rbx; ret
RDTSC = bytes.fromhex('0f31' '48c1e220' '4809d0' 'c3')
CPUID = bytes.fromhex('53' '31c0' '0fa2' '5b' 'c3')


def _flags() -> tuple[int, int]:
    """This thread's (PR_GET_TSC, ARCH_GET_CPUID): (1, 1) is a plain thread."""
    tsc = ctypes.c_int()
    assert _libc.prctl(PR_GET_TSC, ctypes.byref(tsc), 0, 0, 0) == 0
    return tsc.value, _libc.syscall(SYS_ARCH_PRCTL, ARCH_GET_CPUID, 0)


def _guest_flags() -> tuple[int, int]:
    """What loader.c gives every guest: rdtsc faults; cpuid too where the CPU can."""
    return PR_TSC_SIGSEGV, 1 if cpuid.unsupported() else 0


@pytest.fixture(autouse=True)
def net_on_top():
    """The net as the process's SIGSEGV handler, as in a pool worker: faulthandler
    (pytest's, enabled again by a test since the net came) would see a fault first,
    and the serving thread then carries nothing.  Disabled, it restores the handler
    it found; enabled again after the test."""
    enabled = faulthandler.is_enabled()
    faulthandler.disable()
    yield
    if enabled:
        faulthandler.enable()


@pytest.fixture(scope='module')
def code():
    """``code(bytes)``: a function running those bytes (an rdtsc or cpuid of this
    process's own)."""
    page = mmap.mmap(-1, mmap.PAGESIZE,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    at, made = 0, []

    def make(body: bytes):
        nonlocal at
        page[at:at + len(body)] = body
        address = ctypes.addressof(ctypes.c_char.from_buffer(page, at))
        at += len(body)
        made.append(ctypes.CFUNCTYPE(ctypes.c_uint64)(address))
        return made[-1]
    yield make
    made.clear()
    page.close()


def _emit(guest):
    """A run whose stdout (kept in memory) Python writes: 5 calls answered in Python."""
    out = MemoryBacking()
    report = run(guest('emit'), [Channel('/dev/stdout', out, WRITE)],
                 argv=['emit', str(5 << 16), 'carry'], engine='native')
    assert (report.status, report.engine, report.retcode) == ('ok', 'native', 0), report
    return bytes(out.data)


def _in_answer(monkeypatch, hook):
    """Call ``hook()`` in the serving thread before each call Python answers."""
    real = supervisor._Supervisor._answer

    def answer(self):
        hook()
        return real(self)
    monkeypatch.setattr(supervisor._Supervisor, '_answer', answer)


def test_the_serving_thread_carries_the_guests_flags_only_while_it_serves(guest, monkeypatch):
    assert _flags() == (PR_TSC_ENABLE, 1)
    seen: list[tuple[int, int]] = []
    _in_answer(monkeypatch, lambda: seen.append(_flags()))
    assert _emit(guest).startswith(b'carry 00000000')
    assert seen and set(seen) == {_guest_flags()}
    assert _flags() == (PR_TSC_ENABLE, 1)       # the worker's Python between runs is plain


def test_the_net_comes_back_over_the_default_action_never_over_another_handler(
        guest, monkeypatch):
    """faulthandler.disable() restores the default action over the net: the next run
    installs the net again and carries the flags; with another handler installed since
    (it would see the fault first) the run carries nothing."""
    seen: list[tuple[int, int]] = []
    _in_answer(monkeypatch, lambda: seen.append(_flags()))
    try:
        signal.signal(signal.SIGSEGV, signal.SIG_DFL)
        _emit(guest)
        assert set(seen) == {_guest_flags()}
        seen.clear()
        signal.signal(signal.SIGSEGV, lambda *_: None)
        _emit(guest)
        assert seen and set(seen) == {(PR_TSC_ENABLE, 1)}
    finally:
        signal.signal(signal.SIGSEGV, signal.SIG_DFL)    # the next run installs the net


def test_the_python_loop_carries_nothing(guest, monkeypatch):
    """Without the C loop (FAST_PATH off) nothing carries the flags: no net either."""
    monkeypatch.setattr(supervisor, 'FAST_PATH', False)
    seen: list[tuple[int, int]] = []
    _in_answer(monkeypatch, lambda: seen.append(_flags()))
    assert _emit(guest).startswith(b'carry 00000000')
    assert seen and set(seen) == {(PR_TSC_ENABLE, 1)}


@pytest.mark.parametrize('instruction', ['rdtsc', 'cpuid'])
def test_an_rdtsc_or_cpuid_of_the_serving_thread_costs_time_not_the_worker(
        guest, monkeypatch, code, instruction):
    """The net: the faulting instruction runs again without the flags, the count rises,
    the run's result is untouched, and the next wait carries the flags again."""
    if instruction == 'cpuid' and cpuid.unsupported():
        pytest.skip(cpuid.unsupported())
    own = code(RDTSC if instruction == 'rdtsc' else CPUID)
    expected = _emit(guest)
    seen: list[tuple[int, int]] = []

    def hook():
        seen.append(_flags())
        own()
        seen.append(_flags())
    _in_answer(monkeypatch, hook)
    before = _fastcall.caught()
    assert _emit(guest) == expected
    calls = len(seen) // 2
    assert calls > 1
    assert _fastcall.caught() - before == calls
    assert seen[0::2] == [_guest_flags()] * calls       # carried again at each wait
    assert seen[1::2] == [(PR_TSC_ENABLE, 1)] * calls   # dropped by the net
    assert _flags() == (PR_TSC_ENABLE, 1)


def _python(source: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(source)], capture_output=True,
                          text=True, timeout=60)


def test_the_net_passes_on_any_other_sigsegv():
    """A real fault, and an rdtsc in a thread that faults rdtsc by its own prctl (not a
    serving thread's), reach the handler installed before the net: here faulthandler's."""
    for fault in ('ctypes.string_at(0)',
                  f'libc.prctl({PR_SET_TSC}, {PR_TSC_SIGSEGV}, 0, 0, 0); rdtsc()'):
        got = _python(f"""
            import ctypes, faulthandler, mmap
            faulthandler.enable()
            from zvm_core.engines.native import _fastcall
            libc = ctypes.CDLL(None)
            page = mmap.mmap(-1, mmap.PAGESIZE, prot=7)
            page.write({RDTSC!r})
            rdtsc = ctypes.CFUNCTYPE(ctypes.c_uint64)(
                ctypes.addressof(ctypes.c_char.from_buffer(page)))
            {fault}
            print('survived')
        """)
        assert got.returncode == -11 and 'survived' not in got.stdout, got
        assert 'Segmentation fault' in got.stderr, got.stderr


def test_a_hold_carries_the_flags_across_runs_until_it_ends(guest, code):
    """``hold(True)`` (a batch's nodes: worker.py, _serve_many): the flags stay on this
    thread between a template's runs (their Python reads the clock with
    ``_fastcall.monotonic``: no rdtsc, nothing for the net), an rdtsc of its own is
    the net's as in a run (and the next run carries them again), and ``hold(False)``
    leaves the thread plain."""
    from zvm_core.elf import load_program
    own = code(RDTSC)
    program = load_program(str(guest('hello')))
    template = supervisor.Template(program, 64 << 20)

    def emit() -> bytes:
        """A run whose stdout (in memory) Python writes, and the next child taken in
        (prefork, idle: a batch's next node's)."""
        out = MemoryBacking()
        report = supervisor.run(program, [Channel('/dev/stdout', out, WRITE)], ['hello'], {},
                                64 << 20, 30, template=template)
        assert (report.status, report.retcode) == ('ok', 0), report
        template.prefork()
        template.idle()
        return bytes(out.data)
    faulting = _guest_flags()   # before the hold: its first call reads /proc/cpuinfo,
    try:                        # which met a vDSO clock read (the net's, not the runs')
        expected = emit()
        assert _flags() == (PR_TSC_ENABLE, 1)
        assert _fastcall.hold(True)
        for _ in range(2):
            before = _fastcall.caught()
            assert emit() == expected
            assert _flags() == faulting                 # kept after the run
            assert _fastcall.monotonic() > 0
            assert _fastcall.caught() == before         # no rdtsc of the runs' Python
        own()                                           # the net drops them ...
        assert _flags() == (PR_TSC_ENABLE, 1)
        assert emit() == expected                       # ... the next run carries them
        assert _flags() == faulting
        assert not _fastcall.hold(False)
        assert _flags() == (PR_TSC_ENABLE, 1)
        assert emit() == expected and _flags() == (PR_TSC_ENABLE, 1)
    finally:
        _fastcall.hold(False)
        template.close()


def test_a_batch_leaves_the_worker_plain_and_its_guests_faulting(guest):
    """A worker serves Pool.run_many's nodes under a hold (``worker._serve_many``, here
    in this thread): each guest's rdtsc (and cpuid where the CPU can) still faults, the
    nodes between them run as alone, and the thread ends the batch without the flags."""
    import os

    from zvm_core.channels import WRITE as W
    from zvm_core.executor import Limits
    from zvm_core.pool import ChannelSpec, _buffer, _recv, _request, _run_result, _socketpair
    from zvm_core.pool.worker import Templates, _serve_many
    prog = str(guest('native_hostile'))
    hows = ['rdtsc', 'calls'] + (['cpuid'] if cpuid.unsupported() is None else [])
    hows *= 2
    runs = [(_request(prog, [ChannelSpec('/dev/stdout', 0, W)], ['native_hostile', how], {},
                      Limits(), 0, 0, 'virtualize', {}, 'native'),
             [os.open(os.devnull, os.O_WRONLY)]) for how in hows]
    templates = Templates(1 << 30)
    ours, theirs = _socketpair()
    try:
        _serve_many(ours, runs, templates)
        assert _flags() == (PR_TSC_ENABLE, 1)
        buf = _buffer()
        statuses = [_run_result(_recv(theirs, buf)[0]).report.status for _ in hows]
    finally:
        templates.close()
        ours.close()
        theirs.close()
    assert statuses == [{'calls': 'ok'}.get(how, 'fault') for how in hows]


def test_a_batchs_nodes_read_no_tsc_in_the_worker(guest):
    """Between a batch's nodes the worker's own Python (``worker._serve_one``: its
    expiries, the validation deadline) reads no rdtsc: none for the net to catch,
    which would drop the carried flags at every node (and the kernel rewrite them at
    every switch after)."""
    import os

    from zvm_core.channels import WRITE as W
    from zvm_core.executor import Limits
    from zvm_core.pool import ChannelSpec, _buffer, _recv, _request, _run_result, _socketpair
    from zvm_core.pool.worker import Templates, _serve_many
    prog = str(guest('hello'))

    def batch(n: int) -> list[str]:
        runs = [(_request(prog, [ChannelSpec('/dev/stdout', 0, W)], ['hello'], {}, Limits(),
                          0, 0, 'virtualize', {}, 'native'),
                 [os.open(os.devnull, os.O_WRONLY)]) for _ in range(n)]
        _serve_many(ours, runs, templates)
        buf = _buffer()
        return [_run_result(_recv(theirs, buf)[0]).report.status for _ in range(n)]
    templates = Templates(1 << 30)
    ours, theirs = _socketpair()
    try:
        assert batch(1) == ['ok']           # validated, its template made
        before = _fastcall.caught()
        assert batch(4) == ['ok'] * 4
        assert _fastcall.caught() == before
    finally:
        templates.close()
        ours.close()
        theirs.close()


def test_a_busy_hosts_probe_asked_again_between_nodes_reads_no_tsc():
    """A probe that failed because the host was busy (``native._Kept``) is asked again
    when its back-off ends, which a worker does between a batch's nodes, whose thread
    carries the flags: its clock read is the C one (an rdtsc there was caught by the
    net, once a node, under load: test above)."""
    from zvm_core.engines import native
    from zvm_core.engines.native import probe
    answers = [probe.Transient('busy'), None]
    kept = native._Kept(lambda: answers.pop(0))
    assert _fastcall.hold(True)
    try:
        before = _fastcall.caught()
        assert kept() == 'busy' and kept() == 'busy'    # kept for its back-off
        assert kept.lasts < float('inf')
        assert _fastcall.caught() == before
    finally:
        _fastcall.hold(False)


def test_the_deadline_clock_reads_no_tsc_while_carried_and_is_never_early():
    """The C loop's deadline clock (``fastcall.c``: time_left), here through
    ``hello`` (a template's next message): while the thread carries the flags it
    reads the vDSO's CLOCK_MONOTONIC_COARSE (no rdtsc: nothing for the net, the
    flags still on), and a wait for a deadline ends at it, never before (the coarse
    clock lags: the time left it gives is a lower bound)."""
    import socket
    r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        assert _fastcall.hold(True)
        before = _fastcall.caught()
        for seconds in (0.1, 0.03, 0.001):      # far from the deadline, and within its slack
            began = _fastcall.monotonic()
            with pytest.raises(TimeoutError):
                _fastcall.hello(r.fileno(), seconds)
            assert _fastcall.monotonic() - began >= seconds
        coarse = _fastcall.coarse()             # the worker's expiries' clock, as direct
        assert 0 < coarse <= _fastcall.monotonic() < coarse + 0.1
        assert _fastcall.caught() == before
        assert _flags() == _guest_flags()
    finally:
        _fastcall.hold(False)
        r.close()
        w.close()


def test_hello_gives_a_message_its_sender_and_descriptor():
    """``hello``: the message's bytes (at most 9: a child's hello), its sender's pid
    as the kernel gives it (``SO_PASSCRED``), the descriptor passed with it (close-on-
    exec; -1 with none), and b'' at the socket's end."""
    import array
    import fcntl
    import os
    import socket
    r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        r.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        with open(os.devnull, 'rb') as f:
            w.sendmsg([b'L' + bytes(range(1, 9))],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [f.fileno()]))])
        pid, passed, data = _fastcall.hello(r.fileno(), 1.0)
        assert (pid, data) == (os.getpid(), b'L' + bytes(range(1, 9)))
        assert os.path.samestat(os.fstat(passed), os.stat(os.devnull))
        assert fcntl.fcntl(passed, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        os.close(passed)
        w.send(b'loader: a line\n')                  # no descriptor: its first 9 bytes
        assert _fastcall.hello(r.fileno(), 1.0) == (os.getpid(), -1, b'loader: a')
        w.close()
        assert _fastcall.hello(r.fileno(), 1.0)[2] == b''  # the end
    finally:
        r.close()
        w.close()


def test_a_timeout_in_calls_answered_in_c_ends_at_its_deadline_with_the_flags(guest):
    """A guest making only calls the C loop answers (getpid, forever), served with the
    flags carried: ``timeout`` no earlier than its deadline, its calls read no rdtsc of
    the loop's (the deadline's clock is the coarse one until the last ticks).  A read
    the loop did make would be caught once a call, up to its REARMS (16) rearms; one
    or two catches are CPython's own clock read in a contended GIL wait (another
    thread of this process, an earlier test's), which the net is for (fastcall.c)."""
    from zvm_core.executor import Limits
    before = _fastcall.caught()
    report = run(guest('getpid'), [Channel('/dev/stdout', MemoryBacking(), WRITE)],
                 argv=['getpid', str(10 ** 12)], limits=Limits(timeout=0.5), engine='native')
    assert (report.status, report.engine) == ('timeout', 'native'), report
    assert report.accounting.syscalls > 100      # answered in C: ~5 us each, when not starved
    assert report.accounting.wall_time >= 0.5
    assert _fastcall.caught() - before <= 2


def test_a_templates_fork_request_says_whether_the_asking_thread_is_in_a_hold() -> None:
    """'H' while this thread is in a hold (a batch's nodes: loader.c carry_as), 'F' else."""
    class Sock:
        def __init__(self) -> None:
            self.sent: list[bytes] = []

        def send(self, data: bytes) -> int:
            self.sent.append(data)
            return len(data)

    def asked() -> bytes:
        template = supervisor.Template.__new__(supervisor.Template)
        template._ready, template._forking, template._lost = collections.deque(), 0, 0
        template.sock = Sock()
        supervisor.Template.fork(template)
        return template.sock.sent[0]
    assert asked() == b'F'
    _fastcall.hold(True)
    try:
        assert asked() == b'H'
    finally:
        _fastcall.hold(False)
    assert asked() == b'F'

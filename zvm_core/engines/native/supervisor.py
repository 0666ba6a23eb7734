"""Run one validated program natively: spawn the loader, answer the guest's calls.

:func:`run` lays the guest out exactly as the emulator does (segments at
their addresses with their ELF permissions, the trap page, one heap arena,
the read-only user manifest, a 16 MiB stack ending at 4 GiB; the same
initial stack and auxiliary vector), hands that to the trusted loader
(``loader.c``) in a fresh process, and serves the seccomp notifications the
guest's system calls raise with the emulator's personality
(``zvm_core.syscalls``, ``zvm_core.zerovm.trap``) over :class:`ProcessMemory`.

Memory calls are the personality's too: ``brk`` and ``mmap`` are
bookkeeping in the same :class:`~zvm_core.memory.Arena` over the heap the
loader mapped, so addresses, the memory limit and the ``memory`` status are
the emulator's; ``mprotect`` is checked by it and then performed by the
kernel.  The guest is one process the supervisor owns: it is killed on
every path out of :func:`run` (and by ``PR_SET_PDEATHSIG`` if the worker
dies) and always reaped.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import math
import os
import select
import signal
import socket
import time
from dataclasses import replace

from zvm_core.channels import WRITE, Channel, standard_order
from zvm_core.elf import PF_R, PF_W, PF_X, Program
from zvm_core.engines.native import seccomp
from zvm_core.engines.native.loader import Spec, loader_path
from zvm_core.engines.native.memory import ProcessMemory, Region
from zvm_core.executor import (
    UID,
    SetupError,
    attach,
    blame_limits,
    heap_bounds,
    initial_stack,
)
from zvm_core.memory import (
    MANIFEST_PAGE,
    MANIFEST_POINTER,
    PAGE,
    PROT_R,
    PROT_W,
    PROT_X,
    STACK_SIZE,
    STACK_TOP,
    TRAP_PAGE,
    Arena,
    GuestFault,
    page_down,
    page_up,
)
from zvm_core.report import Accounting, Report
from zvm_core.syscalls import HANDLERS, Stop, SysError, count_unknown, syscall_name
from zvm_core.syscalls.random import SeededStream
from zvm_core.syscalls.time import VirtualClock
from zvm_core.zerovm import trap

DISPATCH = {**HANDLERS, **trap.HANDLERS}
NR_MMAP = 9
TICK_NS = 1000          # the native virtual clock: 1 us per mediated call (no fuel to count)
AS_SLACK = 16 << 20     # the loader's own pages under RLIMIT_AS
FILTER = seccomp.assemble(seccomp.program())
_SIGNAL_TEXT = {
    signal.SIGSYS: 'a system call through a forbidden ABI (int 0x80, sysenter or x32)',
    signal.SIGSEGV: 'invalid memory access or forbidden instruction (SIGSEGV)',
    signal.SIGBUS: 'bus error (SIGBUS)', signal.SIGILL: 'invalid instruction (SIGILL)',
    signal.SIGFPE: 'arithmetic exception (SIGFPE)', signal.SIGTRAP: 'trap (SIGTRAP)',
}


class _NoJail:
    """ZeroVM's Jail makes heap code executable: natively nothing becomes code after
    the filter, so Jail and Unjail are refused (the emulated engine has them)."""

    pages: frozenset = frozenset()

    def overlaps(self, start: int, end: int) -> bool:
        return False

    def jail(self, addr: int, size: int) -> int:
        return -errno.EPERM

    unjail = jail


class Guest:
    """One native run: what the personality reads as ``p`` (as the emulator's Machine)."""

    uid = UID
    recorder = None
    runs = 1
    uc = None
    jail = _NoJail()

    def __init__(self, program: Program, memory: int) -> None:
        self.program, self.memory_limit = program, memory
        self.heap_start, heap_size = heap_bounds(program, memory)
        self.image_size = sum(page_up(s.vaddr + s.memsz) - page_down(s.vaddr)
                              for s in program.segments)
        self.regions = [Region(page_down(s.vaddr), page_up(s.vaddr + s.memsz),
                               _prot(s.flags)) for s in program.segments]
        self.regions += [Region(TRAP_PAGE, TRAP_PAGE + PAGE, PROT_R | PROT_X),
                         Region(self.heap_start, self.heap_start + heap_size, PROT_R | PROT_W),
                         Region(MANIFEST_PAGE, STACK_TOP - STACK_SIZE, PROT_R),
                         Region(STACK_TOP - STACK_SIZE, STACK_TOP, PROT_R | PROT_W)]
        self.mem = ProcessMemory(0, self.regions)
        self.arena = Arena(self.mem, self.heap_start, self.heap_start + heap_size)
        self.unknown: collections.Counter = collections.Counter()
        self.syscalls = 0
        self.outcome: Stop | None = None

    def spec(self, channels: list[Channel], argv: list[bytes], envp: list[bytes],
             seed: int, timeout: float) -> Spec:
        p = self.program
        sp, stack = initial_stack(p, argv, envp, SeededStream(seed, b'AT_RANDOM').take(16))
        try:
            manifest = trap.user_manifest(self.arena.start, self.arena.end - self.arena.start,
                                          channels)
        except ValueError as e:
            raise SetupError('fault', str(e)) from None
        spec = Spec(entry=p.entry, sp=sp, cpu_seconds=math.ceil(timeout) + 1,
                    filter=FILTER, namespaces=os.environ.get('ZVM_NATIVE_NAMESPACES') != 'off')
        # unicorn's protection bits are mmap's (1, 2, 4)
        spec.maps = [(r.start, r.end - r.start, r.prot) for r in self.regions]
        spec.as_limit = sum(r.end - r.start for r in self.regions) + AS_SLACK
        spec.copies = [(s.vaddr, s.data) for s in p.segments if s.data]
        spec.copies += [(TRAP_PAGE, trap.STUB), (MANIFEST_PAGE, manifest),
                        (MANIFEST_POINTER, MANIFEST_PAGE.to_bytes(4, 'little')), (sp, stack)]
        return spec


def _prot(flags: int) -> int:
    return ((PROT_R if flags & PF_R else 0) | (PROT_W if flags & PF_W else 0)
            | (PROT_X if flags & PF_X else 0))


def _spawn(spec: Spec) -> tuple[int, socket.socket]:
    """Start the loader: spec on fd 3, its end of a socket pair on fd 4."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    spec_fd = spec.memfd(os.getpid())
    try:
        loader = str(loader_path())
        pid = os.posix_spawn(loader, [loader], {}, file_actions=[
            (os.POSIX_SPAWN_DUP2, spec_fd, 3), (os.POSIX_SPAWN_DUP2, theirs.fileno(), 4)])
    except BaseException:
        ours.close()
        raise
    finally:
        os.close(spec_fd)
        theirs.close()
    return pid, ours


def _listener(sock: socket.socket, deadline: float) -> int | str:
    """The guest's notification listener, or the loader's error line."""
    sock.settimeout(max(0.0, deadline - time.monotonic()))
    try:
        msg, anc, _flags, _addr = sock.recvmsg(256, socket.CMSG_SPACE(4))
    except (TimeoutError, OSError) as e:
        return f'no answer from the loader: {e}'
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and len(data) >= 4:
            return int.from_bytes(data[:4], 'little')
    text = msg.decode(errors='replace')
    while msg and not text.endswith('\n'):
        try:
            msg = sock.recv(256)
        except OSError:
            break
        text += msg.decode(errors='replace')
    return text.strip() or 'the loader exited before starting the guest'


class _Supervisor:
    """Serves one guest's notifications until it exits, is stopped or times out."""

    def __init__(self, guest: Guest, pidfd: int, listener: int, deadline: float) -> None:
        self.guest, self.pidfd, self.listener, self.deadline = guest, pidfd, listener, deadline
        try:
            fcntl.ioctl(listener, seccomp.IOCTL_NOTIF_SET_FLAGS,
                        seccomp.USER_NOTIF_FD_SYNC_WAKE_UP)
        except OSError:
            pass                        # before Linux 6.6: the same, a little slower
        self.notif = bytearray(seccomp.NOTIF.size)
        self.stopped: str | None = None     # 'timeout' or 'stop' when we killed it

    def serve(self) -> None:
        poll = select.poll()
        poll.register(self.listener, select.POLLIN)
        poll.register(self.pidfd, select.POLLIN)
        self._bootstrap(poll)
        while self.stopped is None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self._kill('timeout')
                break
            ready = dict(poll.poll(left * 1000))
            if self.pidfd in ready:
                break                   # it exited: no call of it is pending any more
            events = ready.get(self.listener, 0)
            if events & select.POLLIN:
                if self._receive():
                    self._answer()
            elif events:                # POLLHUP: it is exiting; wait for the pidfd alone
                poll.unregister(self.listener)

    def _receive(self) -> bool:
        self.notif[:] = bytes(len(self.notif))
        try:
            fcntl.ioctl(self.listener, seccomp.IOCTL_NOTIF_RECV, self.notif, True)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EINTR):
                return False            # the guest died between poll and receive
            raise
        return True

    def _send(self, notif_id: int, val: int, error: int = 0, flags: int = 0) -> None:
        try:
            fcntl.ioctl(self.listener, seccomp.IOCTL_NOTIF_SEND,
                        bytearray(seccomp.RESP.pack(notif_id, val, error, flags)), True)
        except OSError as e:
            if e.errno != errno.ENOENT:     # ENOENT: it died (killed) while we answered
                raise

    def _bootstrap(self, poll: select.poll) -> None:
        """The loader's close of its copy of the listener: the one call let through."""
        left = self.deadline - time.monotonic()
        ready = dict(poll.poll(max(0.0, left) * 1000))
        if not ready:
            self._kill('timeout')
            return
        nr = None
        if ready.get(self.listener, 0) & select.POLLIN and self._receive():
            notif_id, _pid, _flags, nr, *_ = seccomp.NOTIF.unpack(self.notif)
        if nr != seccomp.NR_CLOSE:
            self.guest.outcome = Stop('killed', 'native engine: the loader did not start '
                                                'the guest')
            self._kill('stop')
            return
        self._send(notif_id, 0, 0, seccomp.USER_NOTIF_FLAG_CONTINUE)

    def _answer(self) -> None:
        g = self.guest
        notif_id, _pid, _flags, nr, _arch, _ip, *args = seccomp.NOTIF.unpack(self.notif)
        g.syscalls += 1
        entry = DISPATCH.get(nr)
        flags = 0
        try:
            if entry is None:
                count_unknown(g.unknown, nr)
                ret = -errno.ENOSYS
            else:
                ret = entry[1](g, *args)
                if nr == seccomp.NR_MPROTECT and ret == 0:
                    flags = seccomp.USER_NOTIF_FLAG_CONTINUE    # checked: the kernel does it
            if ret >= 0:
                g.mem.flush(None if nr == NR_MMAP else ret)
            else:
                g.mem.discard()
        except SysError as e:
            ret = -e.errno
        except GuestFault:
            ret = -errno.EFAULT
        except Stop as s:
            g.outcome = s.with_traceback(None)
        except OSError as e:    # the host side of a channel failed (ZeroVM: EIO)
            g.outcome = Stop('killed', f'host I/O failed in {entry[0]}: {e.strerror or e}')
        except Exception as e:  # a sandbox bug ends the run, never the worker
            g.outcome = Stop('killed', f'internal error in {syscall_name(nr)}: {e!r}')
        if g.outcome is not None:
            g.mem.discard()
            self._kill('stop')
            return
        if -4096 < ret < 0:
            self._send(notif_id, 0, ret)
        else:
            self._send(notif_id, 0 if flags else ret, 0, flags)

    def _kill(self, why: str) -> None:
        self.stopped = why
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _reap(pid: int, pidfd: int | None) -> int:
    """Kill the guest (if still running) and reap it: its wait status."""
    try:
        if pidfd is None:
            os.kill(pid, signal.SIGKILL)
        else:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        return os.waitpid(pid, 0)[1]
    finally:
        if pidfd is not None:
            os.close(pidfd)


def run(program: Program, channels: list[Channel], argv: list[str], env: dict[str, str],
        memory: int, timeout: float, seed: int = 0, epoch: int = 0, image=None) -> Report:
    """Run ``program`` (already validated) natively; raises SetupError like the emulator."""
    start = time.perf_counter()
    guest = Guest(program, memory)
    guest.channels, guest.fds = attach(channels)
    guest.trap_channels = standard_order(list(guest.channels.values()))
    guest.image = image
    guest.rng = SeededStream(seed)
    guest.clock = VirtualClock(epoch, lambda: TICK_NS * guest.syscalls)
    argv_b = [a.encode() for a in argv]
    envp_b = [f'{k}={v}'.encode() for k, v in env.items()]
    spec = guest.spec(guest.trap_channels, argv_b, envp_b, seed, timeout)
    guest.deadline = time.monotonic() + timeout
    pid, sock = _spawn(spec)
    guest.mem.pid = pid
    listener = stopped = failure = None
    try:
        pidfd = os.pidfd_open(pid)
    except BaseException:
        _reap(pid, None)
        sock.close()
        raise
    try:
        got = _listener(sock, guest.deadline)
        if isinstance(got, int):
            listener = got
            sup = _Supervisor(guest, pidfd, listener, guest.deadline)
            sup.serve()
            stopped = sup.stopped
        else:
            failure = f'native engine: {got}'
    except Exception as e:      # a supervisor bug ends the run, never the caller
        failure = f'native engine: internal error: {e!r}'
    finally:
        sock.close()
        if listener is not None:
            os.close(listener)
        status = _reap(pid, pidfd)
    if failure is not None:
        report = Report('killed', None, failure)
    else:
        report = _classify(guest, status, stopped, timeout)
    report.accounting = Accounting(
        fuel=0, syscalls=guest.syscalls, unknown_syscalls=dict(guest.unknown),
        channels={a: replace(c.counters) for a, c in sorted(guest.channels.items())},
        peak_memory=guest.image_size + guest.arena.peak,
        wall_time=round(time.perf_counter() - start, 6))
    report.etags = {a: ch.etag() for a, ch in sorted(guest.channels.items()) if ch.mode & WRITE}
    return report


def _classify(guest: Guest, status: int, stopped: str | None, timeout: float) -> Report:
    exit_state = ''
    if guest.outcome is not None:
        o = guest.outcome
        kind, retcode, message = o.status, o.retcode, o.message
    elif stopped == 'timeout':
        kind, retcode, message = 'timeout', None, f'wall-clock timeout of {timeout:g} s'
    elif os.WIFEXITED(status):
        kind, retcode, message = 'ok', os.WEXITSTATUS(status), ''
    else:
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            kind, retcode = 'timeout', None
            message = f'CPU time limit of {math.ceil(timeout) + 1} s'
        else:
            kind, retcode = 'fault', None
            message = _SIGNAL_TEXT.get(sig, f'killed by signal {sig}')
            exit_state = f'Signal {sig} from untrusted code'
    if kind != 'ok' or retcode:
        kind, message = blame_limits(kind, message, guest.arena, guest.channels,
                                     guest.memory_limit)
    return Report(kind, retcode, message, exit_state=exit_state)

"""Process-level calls: exit, identity, TLS, limits, signals.

Identity is constant (pid 1, uid/gid 1000) and the machine is a fixed
``uname``: nothing about the host leaks into the guest.  There is one thread
and no new processes; signal set-up is accepted and recorded (``rt_sigaction``
and ``rt_sigprocmask`` give back what was set) but no signal is ever
delivered, and a signal sent to itself (``abort()``) ends the run as a fault.
``futex`` serves the one thread: a wake finds no waiter, a wait either sees
a changed word (``EAGAIN``), times out in virtual time, or would wait forever
(a deadlock: the run ends as a fault).  ``sysinfo`` describes the guest's
own memory limit and virtual uptime, never the host.
"""

from __future__ import annotations

import errno
import signal
import struct

from zvm_core.memory import STACK_SIZE
from zvm_core.syscalls.errors import Stop, SysError

PID = TID = 1
UMASK = 0o022
ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
# Linux's end of user space with 4-level paging (TASK_SIZE_MAX): a segment base at or
# above it is EPERM.  The guest lives below 4 GiB; a 5-level host's larger bound is not
# the guest's (the native supervisor checks this bound before the kernel sees the call)
USER_TOP = (1 << 47) - 4096
RLIM_INFINITY = (1 << 64) - 1
RLIMIT_DATA, RLIMIT_STACK, RLIMIT_NOFILE, RLIMIT_AS = 2, 3, 7, 9
UNAME = (b'Linux', b'zerovm', b'6.1.0-zvm', b'#1 ZeroCloud', b'x86_64', b'(none)')
NSIG, SIGSET_SIZE, SIGACTION_SIZE = 64, 8, 32         # the kernel's sigset and k_sigaction
SIGKILL, SIGSTOP = 9, 19
UNBLOCKABLE = 1 << (SIGKILL - 1) | 1 << (SIGSTOP - 1)
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 0, 1, 9, 10
FUTEX_PRIVATE, FUTEX_CLOCK_REALTIME = 128, 256
NS = 1_000_000_000


def sys_exit(p, code, *_):
    raise Stop('ok', '', code & 0xFF)


def sys_getpid(p, *_):
    return PID


def sys_getppid(p, *_):
    return 0


def sys_getuid(p, *_):
    return p.uid


def segment_request(code: int, addr: int) -> tuple[str, bool]:
    """The base an ``arch_prctl`` code names ('fs' or 'gs') and whether it sets it,
    refused as Linux refuses it (an unknown code: EINVAL; a base outside user space:
    EPERM).  Both engines ask this first, so they answer alike."""
    if code in (ARCH_SET_FS, ARCH_SET_GS):
        if addr >= USER_TOP:
            raise SysError(errno.EPERM)
        return ('fs' if code == ARCH_SET_FS else 'gs'), True
    if code in (ARCH_GET_FS, ARCH_GET_GS):
        return ('fs' if code == ARCH_GET_FS else 'gs'), False
    raise SysError(errno.EINVAL)


def sys_arch_prctl(p, code, addr, *_):
    """The engine keeps the segment bases (natively the kernel does this call itself)."""
    which, sets = segment_request(code, addr)
    if sets:
        p.set_segment_base(which, addr)
    else:
        p.mem.write(addr, struct.pack('<Q', p.segment_base(which)))
    return 0


def sys_set_tid_address(p, *_):
    return TID


def sys_zero(p, *_):
    return 0


def sys_enosys(p, *_):
    raise SysError(errno.ENOSYS)


def _rlimit(p, resource: int) -> tuple[int, int]:
    if resource == RLIMIT_STACK:
        return STACK_SIZE, STACK_SIZE
    if resource in (RLIMIT_AS, RLIMIT_DATA):
        return p.memory_limit, p.memory_limit
    if resource == RLIMIT_NOFILE:
        return 1024, 1024
    return RLIM_INFINITY, RLIM_INFINITY


def sys_prlimit64(p, pid, resource, new, old, *_):
    if pid not in (0, PID):
        raise SysError(errno.ESRCH)
    if new:
        raise SysError(errno.EPERM)
    if old:
        p.mem.write(old, struct.pack('<QQ', *_rlimit(p, resource)))
    return 0


def sys_getrlimit(p, resource, old, *_):
    return sys_prlimit64(p, 0, resource, 0, old)


def sys_uname(p, buf, *_):
    p.mem.write(buf, b''.join(f.ljust(65, b'\0') for f in UNAME))
    return 0


def _run_state(p) -> dict:
    """This run's signal actions, signal mask and file mode mask (a used machine
    starts again from the defaults)."""
    state = p.__dict__.get('_proc_state')
    if state is None or state['run'] != p.runs:
        state = p._proc_state = {'run': p.runs, 'actions': {}, 'mask': 0, 'umask': UMASK}
    return state


def sys_umask(p, mask, *_):
    """Kept and returned as Linux does; the guest's files are its channels and the
    read-only image, so no mode it asks for is ever applied."""
    state = _run_state(p)
    old, state['umask'] = state['umask'], mask & 0o777
    return old


def sys_rt_sigprocmask(p, how, new, old, size, *_):
    if size != SIGSET_SIZE:
        raise SysError(errno.EINVAL)
    state = _run_state(p)
    mask = state['mask']
    if new:
        (bits,) = struct.unpack('<Q', p.mem.read(new, SIGSET_SIZE))
        bits &= ~UNBLOCKABLE
        if how == SIG_BLOCK:
            mask |= bits
        elif how == SIG_UNBLOCK:
            mask &= ~bits
        elif how == SIG_SETMASK:
            mask = bits
        else:
            raise SysError(errno.EINVAL)
    if old:
        p.mem.write(old, struct.pack('<Q', state['mask']))
    state['mask'] = mask
    return 0


def sys_rt_sigaction(p, sig, act, old, size, *_):
    sig &= 0xFFFFFFFF
    if size != SIGSET_SIZE or not 1 <= sig <= NSIG or act and sig in (SIGKILL, SIGSTOP):
        raise SysError(errno.EINVAL)
    actions = _run_state(p)['actions']
    new = p.mem.read(act, SIGACTION_SIZE) if act else None
    if old:
        p.mem.write(old, actions.get(sig, bytes(SIGACTION_SIZE)))
    if new is not None:
        actions[sig] = new
    return 0


def sys_futex(p, uaddr, op, val, timeout, *_):
    cmd = op & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME)
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        if uaddr % 4:
            raise SysError(errno.EINVAL)
        p.mem.read(uaddr, 4)
        return 0                      # one thread: nobody is waiting
    if cmd not in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        raise SysError(errno.ENOSYS)
    if uaddr % 4:
        raise SysError(errno.EINVAL)
    (word,) = struct.unpack('<I', p.mem.read(uaddr, 4))
    if word != val & 0xFFFFFFFF:
        raise SysError(errno.EAGAIN)
    if not timeout:
        raise Stop('fault', f'deadlock: futex wait at {uaddr:#x} with no other thread '
                            'to wake it (the sandbox runs one thread)')
    sec, nsec = struct.unpack('<qq', p.mem.read(timeout, 16))
    if sec < 0 or not 0 <= nsec < NS:
        raise SysError(errno.EINVAL)
    wait = sec * NS + nsec
    if cmd == FUTEX_WAIT_BITSET:      # an absolute time on the chosen clock
        clock = 0 if op & FUTEX_CLOCK_REALTIME else 1
        wait = max(0, wait - p.clock.clock_ns(clock))
    p.clock.slept = min((1 << 63) - 1, p.clock.slept + wait)
    raise SysError(errno.ETIMEDOUT)


def sys_sched_getaffinity(p, pid, size, mask, *_):
    """One CPU: the guest runs on one thread (``os.cpu_count()`` is 1)."""
    if pid not in (0, PID):
        raise SysError(errno.ESRCH)
    if size < 8 or size % 8:
        raise SysError(errno.EINVAL)
    p.mem.write(mask, struct.pack('<Q', 1))
    return 8


def sys_sysinfo(p, buf, *_):
    total = p.memory_limit
    used = min(total, p.image_size + STACK_SIZE + p.arena.in_use())
    uptime = p.clock.monotonic_ns() // NS
    p.mem.write(buf, struct.pack('<q3Q6QHxxxxxxQQI4x', uptime, 0, 0, 0, total, total - used,
                                 0, 0, 0, 0, 1, 0, 0, 1))
    return 0


def _signal_self(sig: int) -> int:
    if sig == 0:
        return 0
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f'signal {sig}'
    raise Stop('fault', f'program killed itself with {name}'
               + (' (abort)' if sig == signal.SIGABRT else ''))


def sys_kill(p, pid, sig, *_):
    if pid not in (0, PID):
        raise SysError(errno.EPERM)
    return _signal_self(sig)


def sys_tgkill(p, tgid, tid, sig, *_):
    if (tgid, tid) != (PID, TID):
        raise SysError(errno.ESRCH)
    return _signal_self(sig)


def sys_tkill(p, tid, sig, *_):
    if tid != TID:
        raise SysError(errno.ESRCH)
    return _signal_self(sig)


HANDLERS = {
    13: ('rt_sigaction', sys_rt_sigaction), 14: ('rt_sigprocmask', sys_rt_sigprocmask),
    24: ('sched_yield', sys_zero), 39: ('getpid', sys_getpid), 60: ('exit', sys_exit),
    62: ('kill', sys_kill), 63: ('uname', sys_uname), 95: ('umask', sys_umask),
    97: ('getrlimit', sys_getrlimit),
    99: ('sysinfo', sys_sysinfo), 102: ('getuid', sys_getuid), 104: ('getgid', sys_getuid),
    107: ('geteuid', sys_getuid), 108: ('getegid', sys_getuid), 110: ('getppid', sys_getppid),
    131: ('sigaltstack', sys_zero), 158: ('arch_prctl', sys_arch_prctl),
    186: ('gettid', sys_getpid), 200: ('tkill', sys_tkill), 202: ('futex', sys_futex),
    204: ('sched_getaffinity', sys_sched_getaffinity),
    218: ('set_tid_address', sys_set_tid_address), 231: ('exit_group', sys_exit),
    234: ('tgkill', sys_tgkill), 273: ('set_robust_list', sys_zero),
    302: ('prlimit64', sys_prlimit64), 334: ('rseq', sys_enosys),
}

# Calls whose answer reads nothing but the process's fixed identity: an engine may
# answer them for a whole run with what their handler returns once (the native
# supervisor's C loop does, engines/native/fastcall.c).
CONSTANT = frozenset(nr for nr, (_name, handler) in HANDLERS.items()
                     if handler in (sys_getpid, sys_getppid, sys_getuid, sys_set_tid_address,
                                    sys_zero, sys_enosys))

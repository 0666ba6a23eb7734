"""Process-level calls: exit, identity, TLS, limits, signals.

Identity is constant (pid 1, uid/gid 1000) and the machine is a fixed
``uname``: nothing about the host leaks into the guest.  There is one thread
and no new processes; signal set-up is accepted and recorded as a no-op, and
a signal sent to itself (``abort()``) ends the run as a fault.
"""

from __future__ import annotations

import errno
import signal
import struct

from unicorn.x86_const import UC_X86_REG_FS_BASE, UC_X86_REG_GS_BASE

from zvm_core.memory import STACK_SIZE
from zvm_core.syscalls.errors import Stop, SysError

PID = TID = 1
ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
RLIM_INFINITY = (1 << 64) - 1
RLIMIT_DATA, RLIMIT_STACK, RLIMIT_NOFILE, RLIMIT_AS = 2, 3, 7, 9
UNAME = (b'Linux', b'zerovm', b'6.1.0-zvm', b'#1 ZeroCloud', b'x86_64', b'(none)')


def sys_exit(p, code, *_):
    raise Stop('ok', '', code & 0xFF)


def sys_getpid(p, *_):
    return PID


def sys_getppid(p, *_):
    return 0


def sys_getuid(p, *_):
    return p.uid


def sys_arch_prctl(p, code, addr, *_):
    if code == ARCH_SET_FS:
        p.uc.reg_write(UC_X86_REG_FS_BASE, addr)
    elif code == ARCH_SET_GS:
        p.uc.reg_write(UC_X86_REG_GS_BASE, addr)
    elif code in (ARCH_GET_FS, ARCH_GET_GS):
        reg = UC_X86_REG_FS_BASE if code == ARCH_GET_FS else UC_X86_REG_GS_BASE
        p.mem.write(addr, struct.pack('<Q', p.uc.reg_read(reg)))
    else:
        raise SysError(errno.EINVAL)
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


def sys_rt_sigprocmask(p, how, new, old, size, *_):
    if old:
        p.mem.write(old, bytes(min(size, 128)))
    return 0


def sys_rt_sigaction(p, sig, act, old, size, *_):
    if old:
        p.mem.write(old, bytes(32))
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
    62: ('kill', sys_kill), 63: ('uname', sys_uname), 97: ('getrlimit', sys_getrlimit),
    102: ('getuid', sys_getuid), 104: ('getgid', sys_getuid), 107: ('geteuid', sys_getuid),
    108: ('getegid', sys_getuid), 110: ('getppid', sys_getppid),
    131: ('sigaltstack', sys_zero), 158: ('arch_prctl', sys_arch_prctl),
    186: ('gettid', sys_getpid), 200: ('tkill', sys_tkill),
    218: ('set_tid_address', sys_set_tid_address), 231: ('exit_group', sys_exit),
    234: ('tgkill', sys_tgkill), 273: ('set_robust_list', sys_zero),
    302: ('prlimit64', sys_prlimit64), 334: ('rseq', sys_enosys),
}

"""The native guest's seccomp filter, and the user-notification protocol.

The filter is the kernel-enforced half of the native engine's containment
(the personality answering notifications is the other).  It is default
deny: a call the kernel performs itself is one of the short list below,
with the arguments the filter checks; every other call is sent to the
supervisor, which answers it from the personality (``zvm_core.syscalls``)
and never lets the kernel perform it -- except ``mprotect``, which the
supervisor checks and then lets continue (no pointer argument, so nothing
the guest could change in between; and the filter has already refused
``PROT_EXEC``), and ``arch_prctl`` ``ARCH_SET_FS``/``ARCH_GET_FS``/
``ARCH_SET_GS``/``ARCH_GET_GS`` (the TLS base is guest register state the
supervisor cannot set; it refuses every other code, ``ARCH_SET_CPUID``,
``ARCH_MAP_VDSO_*`` ..., with ``EINVAL``, and lets a ``GET`` continue only
with a pointer the guest may write).  Both go to the supervisor so that
every call the guest makes is counted, as under the emulator.

Performed by the kernel directly:

- ``sendmsg`` and ``close`` on the loader's control socket only
  (:data:`CTL_FD`, above every descriptor the personality hands out; after
  the loader closes it both are ``EBADF`` from the kernel, exactly what the
  personality would answer for that number).

``exit`` and ``exit_group`` are the personality's too: the supervisor has the
exit status from the call and kills the guest, so a run's report does not
wait for the kernel to tear the process down (a template's child is reaped
after the reply).

Refused outright: another architecture (``int 0x80``, ``sysenter``: the i386
ABI) kills the process (``SIGSYS``, status ``fault``); ``mprotect`` with
``PROT_EXEC`` or with bits above 32 is an errno.  The x32 ABI (numbers from
``0x40000000``) goes to the personality like any number it does not know,
which counts it and says ``ENOSYS``, as on a kernel built without it and
under the emulator.

Written as BPF here rather than with libseccomp: the loader is a static
program without libc, the filter is a dozen blocks, and building it in
Python keeps it next to the personality it routes to.
"""

from __future__ import annotations

import errno
import struct

CTL_FD = 1030                   # loader.c: CTL_FD
AUDIT_ARCH_X86_64 = 0xC000003E
NR_CLOSE, NR_MPROTECT, NR_SENDMSG, NR_ARCH_PRCTL = 3, 10, 46, 158
PROT_EXEC = 4

RET_KILL_PROCESS, RET_ERRNO, RET_USER_NOTIF, RET_ALLOW = 0x80000000, 0x00050000, 0x7FC00000, \
    0x7FFF0000
_LD, _JEQ, _JSET, _RET = 0x20, 0x15, 0x45, 0x06
_NR, _ARCH = 0, 4


def _arg(i: int, high: bool = False) -> int:
    return 16 + 8 * i + (4 if high else 0)


def _ld(offset: int) -> tuple:
    return (_LD, 0, 0, offset)


def _jeq(k: int, jt: int, jf: int) -> tuple:
    return (_JEQ, jt, jf, k)


def _ret(action: int) -> tuple:
    return (_RET, 0, 0, action)


def _block(nr: int, body: list[tuple]) -> list[tuple]:
    """``if nr == NR: body`` (the body ends in returns; otherwise fall through)."""
    return [_jeq(nr, 0, len(body)), *body]


def program(ctl_fd: int = CTL_FD) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions."""
    notify, allow = _ret(RET_USER_NOTIF), _ret(RET_ALLOW)
    prog = [_ld(_ARCH), _jeq(AUDIT_ARCH_X86_64, 1, 0), _ret(RET_KILL_PROCESS), _ld(_NR)]
    for nr in (NR_CLOSE, NR_SENDMSG):           # the kernel reads an int: the low half
        prog += _block(nr, [_ld(_arg(0)), _jeq(ctl_fd, 0, 1), allow, notify])
    prog += _block(NR_MPROTECT, [
        _ld(_arg(2, high=True)), _jeq(0, 1, 0), _ret(RET_ERRNO | errno.EINVAL),
        _ld(_arg(2)), (_JSET, 0, 1, PROT_EXEC), _ret(RET_ERRNO | errno.EACCES), notify])
    prog.append(notify)
    return prog


def assemble(prog: list[tuple[int, int, int, int]]) -> bytes:
    return b''.join(struct.pack('<HBBI', *insn) for insn in prog)


# -- user notifications (linux/seccomp.h) -----------------------------------------

NOTIF = struct.Struct('<QII iIQ6Q')     # id, pid, flags, data{nr, arch, ip, args[6]}
RESP = struct.Struct('<QqiI')           # id, val, error, flags
IOCTL_NOTIF_RECV = 0xC0502100           # _IOWR('!', 0, struct seccomp_notif)
IOCTL_NOTIF_SEND = 0xC0182101           # _IOWR('!', 1, struct seccomp_notif_resp)
IOCTL_NOTIF_SET_FLAGS = 0x40082104      # _IOW('!', 4, __u64), Linux 6.6
USER_NOTIF_FLAG_CONTINUE = 1
USER_NOTIF_FD_SYNC_WAKE_UP = 1          # wake the supervisor on this CPU: a faster round trip

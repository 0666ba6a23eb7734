"""The native guest's seccomp filter, and the user-notification protocol.

The filter is the kernel-enforced half of the native engine's containment
(the personality answering notifications is the other).  It is default
deny: the kernel performs by itself only the loader's own ``sendmsg`` and
``close`` of its control socket (:data:`CTL_FD`, from an instruction in the
loader's image, :data:`LOADER_BASE`, and nowhere else), and, in a template's
children only (``program(template=True)``), its ``mprotect`` of the user
manifest's region (all of it, :data:`MANIFEST_REGION`) to ``PROT_READ`` alone: a
template maps that region writable, for the supervisor to write each child's run's
manifest with ``process_vm_writev`` (a ``/proc/PID/mem`` opened per child cost the
worker ~7 us), and the child makes it read-only after its gate, before the guest's
first instruction.  A guest that makes that call from the loader's pages changes
nothing there (the region is read-only for good; any other argument is notified:
the personality's EACCES).  A spawned loader maps the region as its guest has it
and needs no such call, so its filter has no such rule: a snapshot's probe maps it
unreadable and learns from the fault (or from the personality) that its guest
read it, which that call through the loader's ``syscall`` would have hidden (the
guest read its manifest in the prefix a snapshot kept for later runs, which
resumed with the first run's); every other call,
the guest's ``close(CTL_FD)`` too, is sent to the supervisor, which answers
it from the personality (``zvm_core.syscalls``) and so counts it, as the
emulator does.  The supervisor lets the kernel perform (continue) only what
:func:`may_continue` says, after the personality accepted it: ``mprotect``
(no pointer argument, nothing the guest could change in between) and
``arch_prctl`` ``ARCH_SET_FS``/``ARCH_GET_FS``/``ARCH_SET_GS``/``ARCH_GET_GS``
(the TLS base is guest register state the supervisor cannot set; every other
code is ``EINVAL`` without reaching the kernel, and a ``GET`` continues only
with a pointer the guest may write).

``mprotect`` with ``PROT_EXEC`` or an unknown bit used to be refused by the
filter with an errno, which the supervisor never saw to count, and whose
errno could differ from the personality's (an unaligned address is
``EINVAL`` before ``EACCES``).  It now goes to the supervisor like every
call, and the rule that the kernel never performs it is
:func:`may_continue`: a check of the notification's own argument (a
register the guest cannot change afterwards) next to the one place that
continues a call, independent of the personality's answer.  It is the same
trusted code that builds this filter, so nothing is weakened: the kernel
still never performs an ``mprotect`` that could make code, and the guest's
answer is the personality's (``EACCES``, ``EINVAL``, ``ENOMEM``) under both
engines.

``exit`` and ``exit_group`` are the personality's too: the supervisor has the
exit status from the call and kills the guest, so a run's report does not
wait for the kernel to tear the process down (a template's child is reaped
after the reply).

The loader's pages stay mapped, so a guest can jump into one of its
``syscall`` instructions and make the allowed calls itself: harmless,
as :data:`CTL_FD` is closed before the guest's first instruction and no
call can make it exist again (the personality answers every call that makes
a descriptor, none is continued, no descriptor is added), so those are
``EBADF`` (uncounted); the one ``mprotect`` a template's child lets through from
those pages (the user manifest's region to ``PROT_READ``, each argument whole)
can only take away a write the manifest no longer has when the guest runs (the
child made it read-only after its gate), and in a spawned loader it is notified
(the personality's ``EACCES``; a probe's ends the probe);
``tests/sandbox/test_hostile_native.py`` does each.

The loader may also ``nanosleep`` from its pages, with no remainder pointer:
between its tries of the listener's ``sendmsg`` while the kernel refuses it
(``ETOOMANYREFS``, descriptors of its user in flight), as nobody listens to
its filter yet; 100,000 tries back to back had cost 1-11 s of CPU per run
on a host over the limit.  A guest that jumps to it can only wait: the
kernel reads a ``timespec`` of the guest's memory and writes nothing (no
remainder), the answer is 0, ``EFAULT`` or ``EINVAL`` by that memory alone
(a signal's restart is the kernel's: after a stop signal it comes back as
``restart_syscall``, also let through from the loader's pages, which can only
resume that pause, since no other call the kernel performs for the guest
leaves anything to restart; the signals that end a run end it),
no descriptor, memory or process is touched, the guest has no clock to see
the time go by (``rdtsc`` faults, the clock calls are the personality's),
and the run's wall-clock deadline still kills it: what a read of a channel
that waits gives it already, but uncounted, like the two calls above.
Behind :func:`may_continue`, the loader sets ``PR_SET_MDWE`` where the
kernel has it: a continued ``mprotect`` could not make code anyway.

The filter's first instruction loads the instruction pointer and nothing uses it
(the next one loads the architecture over it): installing a filter, the kernel
works out which calls it always allows (its action cache) by running it in an
emulator for each call number, x86-64 and i386 (~900), under the process's signal
lock, and that emulator gives up on a call at the first load of anything but the
number or architecture.  This filter always allows no call (every decision reads
an argument or the address), so the cache never served it; the emulator stopping
at once spared each guest process ~7 us of its ~70 of set-up and exit (a fork
bench: the filter's install 22-25 -> 17-19 us), and per call the load costs the
JIT'd filter one instruction.

Refused outright: another architecture (``int 0x80``, ``sysenter``: the i386
ABI) kills the process (``SIGSYS``, status ``fault``).  The x32 ABI (numbers
from ``0x40000000``) goes to the personality like any number it does not
know, which counts it and says ``ENOSYS``, as on a kernel built without it and
under the emulator.

Written as BPF here rather than with libseccomp: the loader is a static
program without libc, the filter is a dozen blocks, and building it in
Python keeps it next to the personality it routes to.
"""

from __future__ import annotations

import struct

from zvm_core.engines.native.loader import LOADER_BASE
from zvm_core.memory import MANIFEST_PAGE, STACK_SIZE, STACK_TOP

CTL_FD = 1030                   # loader.c: CTL_FD
MANIFEST_REGION = STACK_TOP - STACK_SIZE - MANIFEST_PAGE   # loader.c: MANIFEST_REGION
PROT_READ = 1
AUDIT_ARCH_X86_64 = 0xC000003E
NR_CLOSE, NR_MPROTECT, NR_SENDMSG, NR_ARCH_PRCTL = 3, 10, 46, 158
NR_NANOSLEEP = 35
NR_RESTART_SYSCALL = 219
PROT_CONTINUED = 1 | 2 | 8      # PROT_READ, PROT_WRITE, PROT_SEM: never PROT_EXEC

RET_KILL_PROCESS, RET_USER_NOTIF, RET_ALLOW = 0x80000000, 0x7FC00000, 0x7FFF0000
_LD, _JEQ, _RET = 0x20, 0x15, 0x06
_NR, _ARCH, _IP, _IP_HIGH = 0, 4, 8, 12


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


def program(ctl_fd: int = CTL_FD, loader: int = LOADER_BASE, template: bool = False
            ) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions: ``close``/``sendmsg`` of ``ctl_fd``
    and ``nanosleep`` without a remainder pointer made from the loader's 4 GiB at
    ``loader`` (its image; the guest is below 4 GiB) are allowed, and with
    ``template`` (a template's children's) the user manifest's ``mprotect`` to
    read-only from there too; every other x86-64 call is notified."""
    notify, allow = _ret(RET_USER_NOTIF), _ret(RET_ALLOW)
    # first a load the kernel's action-cache emulator cannot know: it stops there (above)
    prog = [_ld(_IP), _ld(_ARCH), _jeq(AUDIT_ARCH_X86_64, 1, 0), _ret(RET_KILL_PROCESS),
            _ld(_NR)]
    for nr in (NR_CLOSE, NR_SENDMSG):           # the kernel reads an int: the low half
        prog += _block(nr, [_ld(_arg(0)), _jeq(ctl_fd, 0, 3),
                            _ld(_IP_HIGH), _jeq(loader >> 32, 0, 1), allow, notify])
    prog += _block(NR_NANOSLEEP, [_ld(_arg(1)), _jeq(0, 0, 5), _ld(_arg(1, True)),
                                  _jeq(0, 0, 3), _ld(_IP_HIGH), _jeq(loader >> 32, 0, 1),
                                  allow, notify])
    # a pause a stop signal (SIGSTOP, a freezer) interrupted comes back as restart_syscall
    prog += _block(NR_RESTART_SYSCALL, [_ld(_IP_HIGH), _jeq(loader >> 32, 0, 1), allow, notify])
    if template:
        # a template's child makes the user manifest read-only after its gate (loader.c:
        # start); the kernel reads each argument as 64 bits.  Not a spawned loader's: a
        # probe's guest would make its unreadable manifest readable (above)
        checks = [(_IP_HIGH, loader >> 32), (_arg(0), MANIFEST_PAGE & 0xFFFFFFFF),
                  (_arg(0, True), MANIFEST_PAGE >> 32), (_arg(1), MANIFEST_REGION),
                  (_arg(1, True), 0), (_arg(2), PROT_READ), (_arg(2, True), 0)]
        body: list[tuple] = []
        for i, (offset, value) in enumerate(checks):
            body += [_ld(offset), _jeq(value, 0, 2 * (len(checks) - i) - 1)]
        prog += _block(NR_MPROTECT, [*body, allow, notify])
    prog.append(notify)
    return prog


def may_continue(nr: int, args) -> bool:
    """Whether the kernel may perform a call the personality accepted (answered 0):
    the four ``arch_prctl`` codes it checked, and ``mprotect`` without ``PROT_EXEC``
    or any unknown bit -- whatever the personality said (an empty range is answered
    by the supervisor: nothing to perform)."""
    if nr == NR_MPROTECT:
        return not args[2] & ~PROT_CONTINUED
    return nr == NR_ARCH_PRCTL


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

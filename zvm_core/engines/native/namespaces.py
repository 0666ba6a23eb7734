"""One empty set of namespaces per process, joined by every loader it spawns.

Making a network namespace costs the kernel about a millisecond (and as much
again to tear it down), which was most of a cold native run's fixed cost
(musl hello: ~2.0 ms with a new user, mount, network, IPC and UTS namespace
per loader, ~1.1 ms without).  So a process makes the set once: a loader in
holder mode (``HOLD``, loader.c ``hold``) enters new ones, pivots to an
empty, read-only tmpfs root, says so, and is killed once this process has
opened its ``/proc/PID/ns/*``.  Those descriptors (close-on-exec, numbered
above the loader's fixed ones) keep the namespaces alive without any
process; each loader gets them at ``NS_FD..`` and joins them with ``setns``
(user first, whose owner holds every capability in it; mount last), closes
them, and drops every capability before anything else -- some 30-60 us instead
of ~1.2 ms.  A forked child closes its copies (``os.register_at_fork``) and
makes its own when it needs them.

Why sharing them keeps what they were for (doc/sandbox.md, "Namespaces"):
they are defence in depth, for a guest that got past the seccomp filter,
which sends every call but a few memory calls to the supervisor.  Through
the filter a guest has no socket, mount, IPC, ``sethostname`` or ``setns``
call at all, so there is nothing it could reach in a namespace, shared or
not.  Past the filter, what they keep from it is the host's: its network
(the shared namespace has only a loopback device, down, and no guest holds
the capability to configure it), its files (the shared root is an empty
read-only tmpfs, and no guest holds the capability to mount over it) and
its IPC objects and host name.  They never kept guests of one process
apart: they share the process's user and PID namespace (same uid: they
could already signal or trace one another past the filter), which no
namespace here changes.  What sharing adds, past the filter: SysV IPC
objects and user-keyring keys outlive their guest, for the process's later
guests (as between one template's runs): doc/sandbox.md, "Namespaces".

Where the holder cannot make them (no unprivileged user namespaces), every
loader is asked for its own, exactly as without this module (each tries and
goes on without when the kernel refuses), and the holder is tried again a
minute later.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading

from zvm_core.engines.native import _fastcall
from zvm_core.engines.native.loader import HOLD, NS_FD, Spec, spawn

KINDS = ('user', 'net', 'ipc', 'uts', 'mnt')    # loader.c join(): their order at NS_FD..
RETRY = 60.0            # seconds before a holder that failed is tried again
_lock = threading.Lock()
_held: tuple[int, ...] | None = None
_failed_at: float | None = None


def shared() -> tuple[int, ...] | None:
    """This process's namespace descriptors (KINDS' order), made on first use; None
    where the host cannot make them (the loaders then make their own, or none)."""
    global _held, _failed_at
    with _lock:
        if _held is None and (_failed_at is None or _fastcall.monotonic() - _failed_at >= RETRY):
            _held = _make()
            _failed_at = None if _held is not None else _fastcall.monotonic()
        return _held


def _make() -> tuple[int, ...] | None:
    """A holder's namespaces, or None if it could not make them; the holder is
    killed and reaped on every path."""
    try:
        pid, sock = spawn(Spec(entry=0, namespaces=HOLD))
    except OSError:
        return None
    opened: list[int] = []
    try:
        sock.settimeout(10.0)
        if sock.recv(1) != b'N':
            return None
        for kind in KINDS:      # above NS_FD + 4: a loader's dup2 onto NS_FD.. clobbers none
            fd = os.open(f'/proc/{pid}/ns/{kind}', os.O_RDONLY | os.O_CLOEXEC)
            opened.append(_above(fd))
        held, opened = tuple(opened), []
        return held
    except OSError:
        return None
    finally:
        for fd in opened:
            os.close(fd)
        sock.close()
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _above(fd: int) -> int:
    """``fd`` moved to a number above the loader's fixed ones (close-on-exec)."""
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, NS_FD + len(KINDS))
    finally:
        os.close(fd)


def _forget() -> None:
    """In a forked child: its copies of the parent's descriptors closed."""
    global _held, _failed_at, _lock
    _lock = threading.Lock()
    held, _held, _failed_at = _held, None, None
    for fd in held or ():
        os.close(fd)


os.register_at_fork(after_in_child=_forget)

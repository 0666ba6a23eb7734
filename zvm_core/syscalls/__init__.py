"""The Linux system-call personality, one module per family.

Each family module exports ``HANDLERS``: syscall number -> (name, handler).
A handler is called as ``handler(proc, a1, a2, a3, a4, a5, a6)`` and returns
the value for RAX; it raises :class:`SysError` for ``-errno``,
:class:`~zvm_core.memory.GuestFault` for a bad guest pointer (``-EFAULT``) or
:class:`Stop` to end the run.  Numbers no family knows answer ``-ENOSYS``
and are counted in the report.
"""

from __future__ import annotations

import collections

from zvm_core.syscalls import fs, io, mm, proc, random, time
from zvm_core.syscalls.errors import Stop, SysError

HANDLERS: dict[int, tuple] = {}
for _family in (io, fs, mm, proc, time, random):
    HANDLERS.update(_family.HANDLERS)

# Names of calls that are deliberately absent, so reports say what was tried.
REFUSED_NAMES = {
    7: 'poll', 22: 'pipe', 23: 'select', 41: 'socket', 42: 'connect', 43: 'accept',
    49: 'bind', 50: 'listen', 53: 'socketpair', 56: 'clone', 57: 'fork', 58: 'vfork',
    59: 'execve', 61: 'wait4', 76: 'truncate', 77: 'ftruncate', 78: 'getdents',
    82: 'rename', 83: 'mkdir', 84: 'rmdir', 85: 'creat', 86: 'link', 87: 'unlink',
    88: 'symlink', 90: 'chmod', 92: 'chown', 101: 'ptrace', 105: 'setuid',
    165: 'mount', 288: 'accept4',
    293: 'pipe2', 322: 'execveat', 435: 'clone3',
}


MAX_UNKNOWN_KEYS = 64           # distinct unknown system calls named in a report; then:
OTHER_UNKNOWN = 'other'


def syscall_name(nr: int) -> str:
    entry = HANDLERS.get(nr)
    return entry[0] if entry else REFUSED_NAMES.get(nr, str(nr))


def count_unknown(counter: collections.Counter, nr: int) -> None:
    """Count a call no family answers; the report stays small whatever the guest does."""
    name = syscall_name(nr)
    if name not in counter and len(counter) >= MAX_UNKNOWN_KEYS:
        name = OTHER_UNKNOWN
    counter[name] += 1


__all__ = ['HANDLERS', 'Stop', 'SysError', 'count_unknown', 'syscall_name']

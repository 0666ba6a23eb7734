"""The ZeroVM program API: the trap at 0x10000 and the read-only user manifest.

ZeroVM programs call ``TRAP(args)`` with ``TRAP = (int32_t (*)(uint64_t *))
0x10000`` and ``args = {function, 0, arg1, ...}`` (``sdk/zvm.h``).  Here the
trap page holds a validated three-instruction stub, ``mov eax, TRAP_NR;
syscall; ret``, so a trap costs what a system call costs and nothing is
hooked outside that page.  The dispatcher sends ``TRAP_NR`` to
:func:`sys_trap`, which implements ZeroVM's six functions with ZeroVM's
checks, in ZeroVM's order (``src/syscalls/trap.c``): Read, Write, Jail,
Unjail, Exit and Fork; anything else is ``-EPERM``.

Channel numbers are indices in ZeroVM's channel order (stdin, stdout,
stderr, then by name), the order of the user manifest that
:func:`user_manifest` lays out below the stack, with its address at
``0xFEFFFFFC``.

``Jail`` and ``Unjail`` are the engine's (``p.jail``): the emulated engine
validates the buffer and makes it executable
(``zvm_core.engines.emulated.jail``); natively they are refused, and
``auto`` runs a program that can call them emulated (``zvm_core.prepare``).
The stub's instruction starts are what an engine that checks boundaries marks
valid on the trap page (``zvm_core.engines.emulated.jail.STUB_VERDICT``: the
native engine does not need them, nor the decoder they cost).
"""

from __future__ import annotations

import errno
import struct

from zvm_core.channels import READ, WRITE, Channel
from zvm_core.memory import (
    MANIFEST_PAGE,
    MANIFEST_POINTER,
    PROT_R,
    PROT_W,
    STACK_SIZE,
    GuestFault,
)
from zvm_core.syscalls.errors import Stop
from zvm_core.syscalls.io import _ready, below_max_size, read_steps, write_steps

# function codes: ASCII names, little endian ("Read", "Writ", ...)
TRAP_READ, TRAP_WRITE = 0x64616552, 0x74697257
TRAP_JAIL, TRAP_UNJAIL = 0x6C69614A, 0x6C6A6E55
TRAP_EXIT, TRAP_FORK = 0x74697845, 0x6B726F46

TRAP_NR = 0x7A766D                      # the pseudo system call the stub makes ("zvm")
STUB = b'\xb8' + TRAP_NR.to_bytes(4, 'little') + b'\x0f\x05\xc3'   # mov eax; syscall; ret
MANIFEST_SIZE = MANIFEST_POINTER - MANIFEST_PAGE    # bytes for the user manifest proper

# number of channels -> struct UserManifest (heap_ptr heap_size stack_size count pad
# channels) and the ZVMChannel array (limits[4] size type pad name)
_STRUCTS: dict[int, struct.Struct] = {}
_HEADER_SIZE, _CHANNEL_SIZE = 32, 56


def user_manifest(heap_ptr: int, heap_size: int, channels: list[Channel]) -> bytes:
    """The user manifest's bytes (from the region's start); ValueError if too many channels.

    Layout (LP64, see ``sdk/zvm.h``): ``struct UserManifest``, then the
    ``struct ZVMChannel`` array, then the channel names.
    """
    names = [ch.alias.encode() + b'\0' for ch in channels]
    fmt = _STRUCTS.get(len(channels))
    if fmt is None:
        fmt = _STRUCTS[len(channels)] = struct.Struct('<QIIiiQ' + '5qiiQ' * len(channels))
    array = MANIFEST_PAGE + _HEADER_SIZE
    pos = array + _CHANNEL_SIZE * len(channels)
    values = [heap_ptr, heap_size, STACK_SIZE, len(channels), 0, array]
    for ch, name in zip(channels, names, strict=True):
        q = ch.quota
        values += (q.gets, q.get_size, q.puts, q.put_size, ch.size, ch.access_type, 0, pos)
        pos += len(name)
    data = fmt.pack(*values) + b''.join(names)
    if len(data) > MANIFEST_SIZE:
        raise ValueError(f'{len(channels)} channels do not fit the user manifest '
                         f'({len(data)} bytes; {MANIFEST_SIZE} available)')
    return data


def _buffer(p, buf: int, size: int, need: int) -> list[tuple[int, int]] | None:
    """The guest buffer as spans (``io.read_steps``), or None where ZeroVM answers
    -EINVAL (no such memory).  A buffer of no bytes (or a negative size, EFAULT later)
    need only be guest memory: no byte of it is touched, so no protection is checked
    (as Linux checks none for an empty buffer), under both engines."""
    if size <= 0:
        return None if p.mem.region_at(buf) is None else [(buf, 0)]
    try:
        p.mem.check(buf, size, need)
    except GuestFault:
        return None
    return [(buf, size)]


def _channel(p, desc: int) -> Channel | None:
    chans = p.trap_channels
    return chans[desc] if 0 <= desc < len(chans) else None


def trap_read(p, desc: int, buf: int, size: int, offset: int) -> int:
    ch = _channel(p, desc)
    if ch is None:
        return -errno.EINVAL
    spans = _buffer(p, buf, size, PROT_W)
    if spans is None:
        return -errno.EINVAL
    if ch.random:
        size = min(ch.size - offset, size)      # nothing past the end
    if size == 0:
        return 0
    if size < 0:
        return -errno.EFAULT
    if offset < 0 and ch.random:
        return -errno.EINVAL
    if ch.eof:
        return 0
    q, c = ch.quota, ch.counters
    if not ch.mode & READ or c.reads >= q.gets:
        return -errno.EDQUOT
    if ch.random and offset >= q.put_size - c.write_bytes + ch.size:
        return -errno.EINVAL
    size = min(size, q.get_size - c.read_bytes)   # EOF counts: a full quota is EDQUOT, not 0
    if size < 1:
        return -errno.EDQUOT
    if not ch.random:
        _ready(p, ch, False)
    n = read_steps(p, ch, spans, size, offset if ch.random else None)
    if n == 0 and not ch.random:
        ch.eof = True
    return n


def trap_write(p, desc: int, buf: int, size: int, offset: int) -> int:
    """ZeroVM's checks in ZeroVM's order; what the quota lets the write put (and its
    refusals and cuts) is ``Channel.write_budget``'s, as for the Linux calls."""
    ch = _channel(p, desc)
    if ch is None:
        return -errno.EINVAL
    spans = _buffer(p, buf, size, PROT_R)
    if spans is None:
        return -errno.EINVAL
    q, c = ch.quota, ch.counters
    sequential = not ch.random or ch.append
    if sequential:                             # the put position, not the caller's offset
        offset = ch.size if ch.append else c.write_bytes
    if size == 0:
        return 0
    if size < 0:
        return -errno.EFAULT
    if offset < 0:
        return -errno.EINVAL
    if not ch.mode & WRITE:
        return -errno.EDQUOT
    puts_left, tail = c.writes < q.puts, q.put_size - c.write_bytes
    budget = ch.write_budget(size, None if sequential else ch.write_room(offset))
    if puts_left and (offset >= q.put_size and not ch.mode & READ
                      or offset >= (ch.size if ch.random else offset) + tail):
        return -errno.EINVAL        # past what the quota lets the channel hold
    if budget < 1:
        return -errno.EDQUOT        # the puts used up (first, in ZeroVM), or no room left
    if sequential:
        _ready(p, ch, True)
        return write_steps(p, ch, spans, budget, None)
    budget = below_max_size(offset, budget)
    return budget if budget < 0 else write_steps(p, ch, spans, budget, offset)


def trap_jail(p, addr: int, size: int) -> int:
    return p.jail.jail(addr, size)


def trap_unjail(p, addr: int, size: int) -> int:
    return p.jail.unjail(addr, size)


def trap_exit(p, code: int) -> int:
    raise Stop('ok', '', code)


def trap_fork(p) -> int:
    """Without a daemon (``Job``) ZeroVM's fork does nothing and answers 0; zvm has no daemon."""
    return 0


# function -> (its argument array, converted as ZeroVM's trap.c casts the words, handler)
_IO = struct.Struct('<QQi4xQi4xq')      # (int) desc, buffer, (int32) size, (int64) offset
_JAIL = struct.Struct('<QQI4xi4x')      # (uint32) address, (int32) size
FUNCTIONS = {TRAP_READ: (_IO, trap_read), TRAP_WRITE: (_IO, trap_write),
             TRAP_JAIL: (_JAIL, trap_jail), TRAP_UNJAIL: (_JAIL, trap_unjail),
             TRAP_EXIT: (struct.Struct('<QQi4x'), trap_exit),
             TRAP_FORK: (struct.Struct('<Q'), trap_fork)}
_LONGEST = max(fmt.size for fmt, _ in FUNCTIONS.values())


def sys_trap(p, args, *_):
    """The stub's system call: ``args`` (RDI) points at ``{function, 0, arg1, ...}``."""
    if p.recorder is not None:
        p.recorder.cut()            # the ZeroVM API is the job's: a recorded prefix ends here
    try:
        raw = p.mem.view(args, _LONGEST, PROT_R)
    except GuestFault:                          # a short array at the end of its memory
        raw = p.mem.view(args, 8, PROT_R)
    entry = FUNCTIONS.get(int.from_bytes(raw[:8], 'little'))
    if entry is None:
        return -errno.EPERM
    fmt, function = entry
    if len(raw) < fmt.size:
        raw = p.mem.view(args, fmt.size, PROT_R)
    return function(p, *fmt.unpack_from(raw)[2 if fmt.size > 8 else 1:])


HANDLERS = {TRAP_NR: ('zvm_trap', sys_trap)}

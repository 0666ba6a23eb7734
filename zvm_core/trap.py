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

``Jail`` validates a 64 KiB aligned heap buffer with the same validator as
the program (and against the validated instructions just below it, which
must not run on into it), records its instruction starts in the guard's
bitmap and makes it read+execute (never writable); ``Unjail`` reverses that
and drops the translated code.  Both are undone by a template reset.
"""

from __future__ import annotations

import errno
import struct

from zvm_core.channels import READ, WRITE, Channel
from zvm_core.guard import Guard, x87_sites
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
    AddressSpace,
    Arena,
    GuestFault,
    Region,
    page_up,
)
from zvm_core.syscalls.errors import Stop
from zvm_core.syscalls.io import _ready
from zvm_core.validator import JAIL_ALIGN, Policy, validate_code

# function codes: ASCII names, little endian ("Read", "Writ", ...)
TRAP_READ, TRAP_WRITE = 0x64616552, 0x74697257
TRAP_JAIL, TRAP_UNJAIL = 0x6C69614A, 0x6C6A6E55
TRAP_EXIT, TRAP_FORK = 0x74697845, 0x6B726F46

TRAP_NR = 0x7A766D                      # the pseudo system call the stub makes ("zvm")
STUB = b'\xb8' + TRAP_NR.to_bytes(4, 'little') + b'\x0f\x05\xc3'   # mov eax; syscall; ret
_CONTEXT = 16       # bytes below a jailed buffer that an instruction could run on from
MANIFEST_SIZE = MANIFEST_POINTER - MANIFEST_PAGE    # bytes for the user manifest proper

_STUB_VERDICT = validate_code(STUB, TRAP_PAGE)
if not _STUB_VERDICT.ok:        # the validator's rules changed under the stub
    raise ImportError(f'the trap stub does not validate: {_STUB_VERDICT.violations}')

# number of channels -> struct UserManifest (heap_ptr heap_size stack_size count pad
# channels) and the ZVMChannel array (limits[4] size type pad name)
_STRUCTS: dict[int, struct.Struct] = {}
_HEADER_SIZE, _CHANNEL_SIZE = 32, 56


def install(mem: AddressSpace, bitmap) -> Region:
    """Map the trap page (read+execute), mark the stub's instructions as valid starts,
    and map the read-only user manifest region, its address in its last four bytes."""
    region = mem.map(TRAP_PAGE, PAGE, PROT_R | PROT_X)
    region.view[:len(STUB)] = STUB
    for base, bits in _STUB_VERDICT.boundaries:
        bitmap[base // 8:base // 8 + len(bits)] = bits
    manifest = mem.map(MANIFEST_PAGE, STACK_TOP - STACK_SIZE - MANIFEST_PAGE, PROT_R)
    manifest.view[MANIFEST_SIZE:] = MANIFEST_PAGE.to_bytes(4, 'little')
    return manifest


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


class Jail:
    """Heap pages that TrapJail made executable, and how to take them back."""

    def __init__(self, uc, mem: AddressSpace, arena: Arena, bitmap, policy: Policy,
                 guard: Guard) -> None:
        self.uc, self.mem, self.arena, self.bitmap, self.policy = uc, mem, arena, bitmap, policy
        self.guard = guard
        self.pages: set[int] = set()

    def _checked(self, addr: int, size: int) -> int:
        """The end of the pages [addr, addr+size) covers, or -errno as ZeroVM answers."""
        if size <= 0 or not self.arena.start <= addr < self.arena.end or addr % JAIL_ALIGN:
            return -errno.EINVAL
        end = page_up(addr + size)
        return end if end <= self.arena.end else -errno.EACCES

    def jail(self, addr: int, size: int) -> int:
        """Validate whole pages (pad code with ``hlt``) and make them read+execute."""
        end = self._checked(addr, size)
        if end < 0:
            return end
        try:
            code = self.mem.read(addr, end - addr)
        except GuestFault:
            return -errno.EACCES
        verdict = validate_code(code, addr, self.policy, **self._preceding(addr))
        if not verdict.ok:
            return -errno.EPERM
        self.mem.protect(addr, end, PROT_R | PROT_X)
        for base, bits in verdict.boundaries:
            self.bitmap[base // 8:base // 8 + len(bits)] = bits
        self.guard.x87_on_host(self.uc, x87_sites(addr, code, self.bitmap))
        self.uc.ctl_remove_cache(addr, end)
        self.pages.update(range(addr, end, PAGE))
        return 0

    def _preceding(self, addr: int) -> dict:
        """The executable bytes just below ``addr`` and their validated instruction starts.

        The program's last page or another jailed buffer may end there: an
        instruction of theirs must not run on into the new code.
        """
        lo = addr - _CONTEXT
        if not self.mem.protection(lo) & PROT_X:
            return {}
        bits = int.from_bytes(self.bitmap[lo // 8:addr // 8], 'little')
        return {'before': bytes(self.mem.view(lo, _CONTEXT, PROT_X)),
                'before_starts': [lo + k for k in range(_CONTEXT) if bits >> k & 1]}

    def unjail(self, addr: int, size: int) -> int:
        """Make the pages read+write again and forget their code."""
        end = self._checked(addr, size)
        if end < 0:
            return end
        self.mem.protect(addr, end, PROT_R | PROT_W)
        self._forget(addr, end)
        return 0

    def _forget(self, start: int, end: int) -> None:
        self.bitmap[start // 8:end // 8] = bytes((end - start) // 8)
        self.guard.x87_forget(self.uc, start, end)
        self.uc.ctl_remove_cache(start, end)
        self.pages.difference_update(range(start, end, PAGE))

    def overlaps(self, start: int, end: int) -> bool:
        """Whether [start, end) holds jailed code (which mm calls must not zero or free)."""
        return any(start <= page < end for page in self.pages)

    def reset(self) -> None:
        """Template reset: no page stays jailed (protections are reset by the caller)."""
        for page in sorted(self.pages):
            self._forget(page, page + PAGE)


def _buffer(p, buf: int, size: int, need: int) -> memoryview | None:
    """The guest buffer, or None where ZeroVM answers -EINVAL (no such memory)."""
    if size <= 0 and p.mem.region_at(buf) is None:
        return None
    try:
        return p.mem.view(buf, max(size, 0), need)
    except GuestFault:
        return None


def _channel(p, desc: int) -> Channel | None:
    chans = p.trap_channels
    return chans[desc] if 0 <= desc < len(chans) else None


def trap_read(p, desc: int, buf: int, size: int, offset: int) -> int:
    ch = _channel(p, desc)
    if ch is None:
        return -errno.EINVAL
    view = _buffer(p, buf, size, PROT_W)
    if view is None:
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
    n = ch.read([view[:size]], offset if ch.random else None)
    if n == 0 and not ch.random:
        ch.eof = True
    return n


def trap_write(p, desc: int, buf: int, size: int, offset: int) -> int:
    ch = _channel(p, desc)
    if ch is None:
        return -errno.EINVAL
    view = _buffer(p, buf, size, PROT_R)
    if view is None:
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
    if not ch.mode & WRITE or c.writes >= q.puts:
        return -errno.EDQUOT
    tail = q.put_size - c.write_bytes
    if offset >= q.put_size and not ch.mode & READ:
        return -errno.EINVAL
    if offset >= (ch.size if ch.random else offset) + tail:
        return -errno.EINVAL
    size = min(size, tail)
    if size < 1:
        return -errno.EDQUOT
    if sequential:
        _ready(p, ch, True)
    return ch.write([view[:size]], None if sequential else offset)


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

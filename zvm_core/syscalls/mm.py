"""Memory system calls over the one pre-mapped arena.

``brk`` and anonymous ``mmap`` are bookkeeping in :class:`~zvm_core.memory.Arena`
(no unicorn region per call).  A readable random-access channel can be
mapped: its bytes are copied into the arena, read-only unless asked otherwise.
Nothing becomes executable here: code only ever comes from the validated
program image or from the trap API's ``Jail``, and pages holding jailed code
are never zeroed, freed or remapped here (``Unjail`` them first).

A page ``mprotect`` left with less than read+write keeps that protection
through ``munmap`` and ``mmap`` until an ``mprotect`` changes it (the arena's
``held`` pages).  Natively ``mprotect`` is the one memory call the kernel
performs (``engines/native/seccomp.py``): ``mmap`` and ``munmap`` are
bookkeeping, so the kernel's page keeps what ``mprotect`` gave it, and the
emulator keeps the same rule so that touching such a page is the same fault
under both engines (Linux would give a fresh read+write page).  What ``mmap``
itself asks for is the personality's table only (natively read+write).
"""

from __future__ import annotations

import errno

from zvm_core.channels import READ
from zvm_core.memory import (
    MANIFEST_PAGE,
    PAGE,
    PROT_R,
    PROT_W,
    PROT_X,
    STACK_SIZE,
    STACK_TOP,
    page_up,
)
from zvm_core.syscalls.errors import SysError
from zvm_core.syscalls.io import _fd32, _file, _read

PROT_READ, PROT_WRITE, PROT_EXEC, PROT_SEM = 1, 2, 4, 8
MAP_SHARED, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x10, 0x20
MAP_FIXED_NOREPLACE = 0x100000
MADV_DONTNEED = 4


def _uc_prot(prot: int) -> int:
    return (PROT_R if prot & PROT_READ else 0) | (PROT_W if prot & PROT_WRITE else 0)


def _jailed(p, start: int, end: int) -> bool:
    return bool(p.jail.pages) and p.jail.overlaps(start, end)


def sys_brk(p, addr, *_):
    if addr < p.arena.brk and _jailed(p, addr, p.arena.brk):
        return p.arena.brk
    return p.arena.set_brk(addr)


def sys_mmap(p, addr, length, prot, flags, fd, offset):
    if length == 0 or offset % PAGE or length > 1 << 40:
        raise SysError(errno.EINVAL)
    if prot & PROT_EXEC:
        raise SysError(errno.EACCES)
    length = page_up(length)
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        if addr % PAGE or not p.arena.owns(addr, addr + length) or \
                _jailed(p, addr, addr + length):
            raise SysError(errno.ENOMEM)
        p.arena.take(addr, addr + length)
        start = addr
    else:
        f = None if flags & MAP_ANONYMOUS else _file(p, _fd32(fd), READ)
        if f is not None and (not f.channel.random or flags & MAP_SHARED and prot & PROT_WRITE):
            raise SysError(errno.EACCES)
        start = p.arena.allocate(length)
        if start is None:
            raise SysError(errno.ENOMEM)
        if f is not None:
            p.mem.check(start, length, PROT_W)
            n = _read(p, f, [(start, length)], offset, fresh=True)    # arena: zeros
            if n < 0:
                p.arena.release(start, start + length)
                return n
    _reprotect(p, start, start + length, _uc_prot(prot))
    return start


def _reprotect(p, start: int, end: int, prot: int) -> None:
    """Give the pages of [start, end) that mprotect did not lower ``prot`` (the held
    ones keep theirs: the module's docstring says why)."""
    if prot == PROT_R | PROT_W and not any(start <= a < end for a in p.mem.overrides()):
        return                              # read+write already: the common case
    run = start
    for page in sorted(a for a in p.arena.held if start <= a < end):
        if run < page:
            p.mem.protect(run, page, prot)
        run = page + PAGE
    if run < end:
        p.mem.protect(run, end, prot)


def sys_munmap(p, addr, length, *_):
    end = page_up(addr + length)
    if addr % PAGE or length == 0 or not p.arena.owns(addr, end) or _jailed(p, addr, end):
        raise SysError(errno.EINVAL)
    _reprotect(p, addr, end, PROT_R | PROT_W)
    p.arena.release(addr, end)
    return 0


def sys_mprotect(p, addr, length, prot, *_):
    end = page_up(addr + length)
    if addr % PAGE:
        raise SysError(errno.EINVAL)
    pages = range(addr, end, PAGE)
    if any(p.mem.region_at(a) is None for a in pages):
        raise SysError(errno.ENOMEM)
    if prot & PROT_EXEC or any(p.mem.protection(a) & PROT_X for a in pages):
        # code is only what the validator saw: it cannot change, nor can data become code
        raise SysError(errno.EACCES)
    if end > addr and prot & ~(PROT_READ | PROT_WRITE | PROT_SEM):
        # PROT_GROWSDOWN/UP (no mapping here grows) and unknown bits: EINVAL, as from
        # Linux; natively the kernel refuses them after this check, which must not
        # have recorded a protection the page does not get
        raise SysError(errno.EINVAL)
    if addr < STACK_TOP - STACK_SIZE and end > MANIFEST_PAGE:
        raise SysError(errno.EACCES)        # the user manifest stays read-only
    if end > addr:
        p.mem.protect(addr, end, _uc_prot(prot))
        if _uc_prot(prot) == PROT_R | PROT_W:
            p.arena.held.difference_update(pages)
        else:
            p.arena.held.update(pages)
    return 0


def sys_madvise(p, addr, length, advice, *_):
    end = page_up(addr + length)
    if advice == MADV_DONTNEED and p.arena.owns(addr, end):
        if _jailed(p, addr, end):
            raise SysError(errno.EINVAL)
        p.arena.zero(addr, end)
    return 0


def sys_mremap(p, *_):
    raise SysError(errno.ENOMEM)


HANDLERS = {
    9: ('mmap', sys_mmap), 10: ('mprotect', sys_mprotect), 11: ('munmap', sys_munmap),
    12: ('brk', sys_brk), 25: ('mremap', sys_mremap), 28: ('madvise', sys_madvise),
}

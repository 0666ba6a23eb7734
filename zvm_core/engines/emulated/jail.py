"""ZeroVM's Jail on the emulated engine, and the trap page's mapping.

``Jail`` validates a 64 KiB aligned heap buffer with the same validator as
the program (and against the validated instructions just below it, which
must not run on into it), records its instruction starts in the guard's
bitmap, puts ``ud2`` over its instructions of extensions the fixed CPU lacks, as
the program's (``validator.as_fixed_cpu``), and makes it read+execute (never writable);
``Unjail`` reverses that and drops the translated code.  Both are undone by a template reset.  The
trap API itself (``zvm_core.zerovm.trap``) calls them as ``p.jail``.
"""

from __future__ import annotations

import errno

from zvm_core.engines.emulated.guard import Guard
from zvm_core.engines.emulated.memory import AddressSpace, Region
from zvm_core.memory import (
    MANIFEST_PAGE,
    PAGE,
    PROT_R,
    PROT_W,
    PROT_X,
    STACK_SIZE,
    STACK_TOP,
    TRAP_PAGE,
    Arena,
    GuestFault,
    page_up,
)
from zvm_core.validator import JAIL_ALIGN, UD2, Policy, validate_code, within
from zvm_core.zerovm.trap import MANIFEST_SIZE, STUB

with within(None):      # imported by a worker's first emulated run: not that run's deadline
    STUB_VERDICT = validate_code(STUB, TRAP_PAGE)
if not STUB_VERDICT.ok:        # the validator's rules changed under the stub
    raise ImportError(f'the trap stub does not validate: {STUB_VERDICT.violations}')

CONTEXT = 16        # bytes below a jailed buffer that an instruction could run on from


def install(mem: AddressSpace, bitmap) -> Region:
    """Map the trap page (read+execute), mark the stub's instructions as valid starts,
    and map the read-only user manifest region, its address in its last four bytes."""
    region = mem.map(TRAP_PAGE, PAGE, PROT_R | PROT_X)
    region.view[:len(STUB)] = STUB
    for base, bits in STUB_VERDICT.boundaries:
        bitmap[base // 8:base // 8 + len(bits)] = bits
    manifest = mem.map(MANIFEST_PAGE, STACK_TOP - STACK_SIZE - MANIFEST_PAGE, PROT_R)
    manifest.view[MANIFEST_SIZE:] = MANIFEST_PAGE.to_bytes(4, 'little')
    return manifest



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
        for site in verdict.absent:     # the guest's own bytes: it may have made them read-only
            self.mem.view(site, len(UD2), PROT_R)[:] = UD2
        self.mem.protect(addr, end, PROT_R | PROT_X)
        self.arena.keep(addr, end)          # the code validated stays what runs
        for base, bits in verdict.boundaries:
            self.bitmap[base // 8:base // 8 + len(bits)] = bits
        self.guard.watch(self.uc, addr, code, self.bitmap)
        self.uc.ctl_remove_cache(addr, end)
        self.pages.update(range(addr, end, PAGE))
        return 0

    def _preceding(self, addr: int) -> dict:
        """The executable bytes just below ``addr`` and their validated instruction starts.

        The program's last page or another jailed buffer may end there: an
        instruction of theirs must not run on into the new code.
        """
        lo = addr - CONTEXT
        if not self.mem.protection(lo) & PROT_X:
            return {}
        bits = int.from_bytes(self.bitmap[lo // 8:addr // 8], 'little')
        return {'before': bytes(self.mem.view(lo, CONTEXT, PROT_X)),
                'before_starts': [lo + k for k in range(CONTEXT) if bits >> k & 1]}

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
        self.guard.forget(self.uc, start, end)
        self.uc.ctl_remove_cache(start, end)
        self.pages.difference_update(range(start, end, PAGE))

    def overlaps(self, start: int, end: int) -> bool:
        """Whether [start, end) holds jailed code (which mm calls must not zero or free)."""
        return any(start <= page < end for page in self.pages)

    def reset(self) -> None:
        """Template reset: no page stays jailed (protections are reset by the caller)."""
        for page in sorted(self.pages):
            self._forget(page, page + PAGE)

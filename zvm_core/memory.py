"""The guest's memory, as the personality sees it: a fixed layout and one interface.

The layout never depends on the host (no ASLR): ELF segments at their link
addresses, then one heap arena that serves both ``brk`` (growing up) and
``mmap`` (growing down, first fit), then the ZeroVM user-manifest page and a
16 MiB stack ending at 4 GiB.  Both engines lay the guest out so.

The system calls (``zvm_core.syscalls``) and the ZeroVM trap reach guest
memory only through :class:`GuestMemory`, which each engine provides: the
emulated engine's ``AddressSpace`` (``zvm_core.engines.emulated.memory``:
host mappings that unicorn runs on) and the native engine's
``ProcessMemory`` (``zvm_core.engines.native.memory``: process_vm_readv and
writev into the guest process).  :class:`Arena` is the allocator both use.

This module imports nothing heavy (no unicorn): the protection bits are
mmap's (read 1, write 2, execute 4), which are also unicorn's.
"""

from __future__ import annotations

from typing import Protocol

PAGE = 0x1000
TRAP_PAGE = 0x10000          # ZeroVM trap entry (zvm_core.zerovm.trap: one RX page here)
STACK_TOP = 1 << 32
STACK_SIZE = 16 << 20
MANIFEST_PAGE = STACK_TOP - STACK_SIZE - 0x10000   # 0xFEFF0000, ZeroVM user manifest
MANIFEST_POINTER = STACK_TOP - STACK_SIZE - 4      # 0xFEFFFFFC: where programs find it
PROT_NONE, PROT_R, PROT_W, PROT_X = 0, 1, 2, 4


def page_down(x: int) -> int:
    return x & ~(PAGE - 1)


def page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


class GuestFault(Exception):
    """A guest pointer that does not name memory with the access needed (EFAULT)."""


class GuestMemory(Protocol):
    """What the personality may do with guest memory; ``need``/``prot`` are PROT_* bits.

    ``view`` is guest bytes as a writable buffer (GuestFault unless the guest
    may ``need`` them); ``region_at`` the mapped region holding ``addr`` (an
    object with ``start``, ``end``, ``prot``) or None; ``protect`` changes the
    protection of pages inside one region; ``zero`` gives pages back, they
    read as zeros afterwards.
    """

    def view(self, addr: int, size: int, need: int) -> memoryview: ...
    def read(self, addr: int, size: int) -> bytes: ...
    def write(self, addr: int, data: bytes) -> None: ...
    def read_cstring(self, addr: int, limit: int = 4096) -> bytes: ...
    def protection(self, addr: int) -> int: ...
    def protect(self, start: int, end: int, prot: int) -> None: ...
    def region_at(self, addr: int): ...
    def zero(self, start: int, end: int) -> None: ...


class Arena:
    """Deterministic brk + mmap allocator over one pre-mapped region.

    ``brk`` grows up from the bottom, anonymous mappings are carved from the
    top down (first fit in the free list, lowest address first), and the two
    may not cross.  ``refused`` records that a request failed for lack of memory.

    Memory handed out reads as zeros.  What ``munmap`` frees is zeroed when it
    is handed out again (``stale``: released, not zeroed since), not when it is
    freed: a run's frees at its exit cost nothing (natively a zeroing is a read
    of the guest's pages and a write of those that hold data), and a page the
    guest wrote after freeing it is zeroed too.  Both engines share this
    allocator, so the bytes are the same under both.
    """

    def __init__(self, space: GuestMemory, start: int, end: int) -> None:
        self.space = space
        self.start = self.brk = start
        self.end = self.floor = end
        self.free: list[tuple[int, int]] = []   # sorted (start, end) holes above floor
        self.mapped = 0
        self.peak = 0
        self.refused = 0
        self.held: set[int] = set()             # pages mprotect lowered (syscalls/mm.py)
        self.stale: list[tuple[int, int]] = []  # sorted (start, end): released, not zeroed

    def reset(self) -> None:
        """Forget every allocation and zero the whole arena: the guest can write
        anywhere in it, not only where it allocated (the kernel frees only the
        pages it holds, so this costs what the run touched)."""
        self.space.zero(self.start, self.end)
        self.brk, self.floor, self.free = self.start, self.end, []
        self.mapped = self.peak = self.refused = 0
        self.held = set()
        self.stale = []

    def in_use(self) -> int:
        return self.brk - self.start + self.mapped

    def _note(self) -> None:
        self.peak = max(self.peak, self.in_use())

    def set_brk(self, new: int) -> int:
        if new == 0 or new < self.start:
            return self.brk
        if page_up(new) > self.floor:
            self.refused += 1
            return self.brk
        if new < self.brk:          # zeroed when raised again, written past or not
            self.stale = _merged([*self.stale, (new, self.brk)])
        elif self.stale:
            self._settle(self.brk, new)
        self.brk = new
        self._note()
        return self.brk

    def allocate(self, length: int) -> int | None:
        length = page_up(length)
        for i, (lo, hi) in enumerate(self.free):
            if hi - lo >= length:
                if hi - lo == length:
                    del self.free[i]
                else:
                    self.free[i] = (lo + length, hi)
                self.mapped += length
                self._note()
                self._settle(lo, lo + length)
                return lo
        new_floor = self.floor - length
        if length <= 0 or new_floor < page_up(self.brk):
            self.refused += 1
            return None
        self.floor = new_floor
        self.mapped += length
        self._note()
        self._settle(new_floor, new_floor + length)
        return new_floor

    def owns(self, start: int, end: int) -> bool:
        return self.floor <= start and end <= self.end

    def zero(self, start: int, end: int) -> None:
        """Make [start, end) read as zeros now (``mmap`` over it, ``madvise``)."""
        self.space.zero(start, end)
        self._settle(start, end, zero=False)

    def take(self, start: int, end: int) -> None:
        """``MAP_FIXED`` over [start, end): zeroed, and what of it was free is mapped
        now (a later ``allocate`` must not hand it out again)."""
        self.zero(start, end)
        self.free, taken = _cut(self.free, start, end)
        self.mapped += sum(hi - lo for lo, hi in taken)
        self._note()

    def settle(self) -> None:
        """Zero every page released and not handed out since (before the memory
        digest: freed memory reads as zeros, as it did when freeing zeroed it)."""
        self._settle(self.start, self.end)

    def keep(self, start: int, end: int) -> None:
        """[start, end) holds what the guest wrote there since it was released (code
        the emulator's Jail validated): never zeroed by a later hand-out."""
        self._settle(start, end, zero=False)

    def _settle(self, start: int, end: int, zero: bool = True) -> None:
        """Zero (``zero``) the stale pages of [start, end) and forget them."""
        self.stale, settled = _cut(self.stale, start, end)
        if zero:
            for lo, hi in settled:
                self.space.zero(lo, hi)

    def release(self, start: int, end: int) -> None:
        """munmap [start, end) (page aligned, inside the mmap area): stale until it
        is handed out again."""
        self.stale = _merged([*self.stale, (start, end)])
        holes, already = _cut(self.free, start, end)
        self.mapped -= (end - start) - sum(hi - lo for lo, hi in already)
        merged = _merged([*holes, (start, end)])
        while merged and merged[0][0] == self.floor:
            self.floor = merged.pop(0)[1]
        self.free = merged


def _cut(spans: list[tuple[int, int]], start: int, end: int
         ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """``spans`` (sorted, disjoint) without [start, end), in order, and their parts
    inside it (the free list's or the stale list's, by an allocation or a release)."""
    left, inside = [], []
    for lo, hi in spans:
        if hi <= start or lo >= end:
            left.append((lo, hi))
            continue
        inside.append((max(lo, start), min(hi, end)))
        if lo < start:
            left.append((lo, start))
        if hi > end:
            left.append((end, hi))
    return left, inside


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` sorted, overlapping and touching ones joined."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if merged and merged[-1][1] >= lo:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged

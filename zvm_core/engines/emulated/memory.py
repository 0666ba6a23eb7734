"""The emulated engine's guest memory: host-backed regions that unicorn runs on.

Every guest region is a private anonymous host mapping handed to unicorn
with ``mem_map_ptr``, so system calls read and write guest memory through a
``memoryview`` with no copy and no unicorn call.  Unicorn regions are few
and fixed; ``mmap`` never creates one (sandbox-research §3.3: region count
makes every map slower).  :class:`AddressSpace` is this engine's
``zvm_core.memory.GuestMemory``.

Host pages a guest never wrote are not there (private anonymous memory
reads as zeros), so the kernel's page tables say which pages a run could
have changed: :meth:`AddressSpace.touched` (``/proc/self/pagemap``: present
or swapped out) and :meth:`AddressSpace.resident` (``mincore``: the memory a
machine holds) cost a walk of page tables, never a read of guest memory.
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
import os
import re
from dataclasses import dataclass

from unicorn import Uc

from zvm_core.memory import PAGE, PROT_NONE, PROT_R, PROT_W, GuestFault, page_down, page_up

MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Linux value; absent before 3.13

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_PAGEMAP_USED = bytes((1 if b & 0xC0 else 0) for b in range(256))   # present | swapped
_MINCORE_IN = bytes(b & 1 for b in range(256))
_RUN = re.compile(b'\x01+')
CLEAR_MAX = 64 << 10        # the most ``AddressSpace.clear`` writes over at once
_ZEROS = bytes(CLEAR_MAX)
_pagemap_fd: int | None = None      # /proc/self/pagemap, opened once per process


def _pagemap() -> int | None:
    """This process's ``/proc/self/pagemap`` (None without /proc).  A forked child
    opens its own (:func:`_forget_pagemap`): the descriptor reads the page tables of
    the process that opened it."""
    global _pagemap_fd
    if _pagemap_fd is None:
        try:
            _pagemap_fd = os.open('/proc/self/pagemap', os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
    return _pagemap_fd


def _forget_pagemap() -> None:
    global _pagemap_fd
    if _pagemap_fd is not None:
        os.close(_pagemap_fd)
        _pagemap_fd = None


os.register_at_fork(after_in_child=_forget_pagemap)


@dataclass
class Region:
    start: int
    end: int
    prot: int
    host: mmap.mmap
    view: memoryview
    addr: int           # where ``host`` is in this process


def _host_mapping(size: int) -> tuple[mmap.mmap, int]:
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    return m, addr


class AddressSpace:
    """Regions of one unicorn instance, with the protection table syscalls check."""

    direct = True       # a view is the guest's memory itself (``syscalls.io.read_steps``)

    def __init__(self, uc: Uc) -> None:
        self.uc = uc
        self.regions: list[Region] = []
        self._starts: list[int] = []
        # page-granular protection overrides (mprotect); region.prot otherwise
        self._prot: dict[int, int] = {}

    def map(self, start: int, size: int, prot: int) -> Region:
        host, addr = _host_mapping(size)
        self.uc.mem_map_ptr(start, size, prot, addr)
        region = Region(start, start + size, prot, host, memoryview(host), addr)
        i = bisect.bisect(self._starts, start)
        self._starts.insert(i, start)
        self.regions.insert(i, region)
        return region

    def region_at(self, addr: int) -> Region | None:
        i = bisect.bisect(self._starts, addr) - 1
        if i >= 0 and addr < self.regions[i].end:
            return self.regions[i]
        return None

    def protection(self, addr: int) -> int:
        region = self.region_at(addr)
        if region is None:
            return PROT_NONE
        return self._prot.get(addr & ~(PAGE - 1), region.prot)

    def check(self, addr: int, size: int, need: int) -> Region:
        """The region of [addr, addr+size) if the guest may ``need`` all of it, else
        GuestFault (``size`` > 0)."""
        region = self.region_at(addr)
        if region is None or size < 0 or addr + size > region.end:
            raise GuestFault(addr)
        if self._prot:
            for page in range(page_down(addr), addr + size, PAGE):
                if self._prot.get(page, region.prot) & need != need:
                    raise GuestFault(addr)
        elif region.prot & need != need:
            raise GuestFault(addr)
        return region

    def view(self, addr: int, size: int, need: int) -> memoryview:
        """Guest bytes [addr, addr+size) as host memory, if the guest may ``need`` them
        (no bytes: nothing to check, as Linux checks no protection for an empty buffer
        and as the native engine answers)."""
        if size == 0:
            return memoryview(bytearray())
        region = self.check(addr, size, need)
        off = addr - region.start
        return region.view[off:off + size]

    def read(self, addr: int, size: int) -> bytes:
        return bytes(self.view(addr, size, PROT_R))

    def write(self, addr: int, data: bytes) -> None:
        self.view(addr, len(data), PROT_W)[:] = data

    def read_cstring(self, addr: int, limit: int = 4096) -> bytes:
        region = self.region_at(addr)
        if region is None or not self.protection(addr) & PROT_R:
            raise GuestFault(addr)
        off = addr - region.start
        end = region.host.find(b'\0', off, min(off + limit, region.end - region.start))
        if end < 0:
            raise GuestFault(addr)
        return bytes(region.view[off:end])

    def readable_runs(self) -> list[tuple[Region, int, int]]:
        """``(region, start, end)`` for every run of guest-readable pages, in address order."""
        runs = []
        for region in self.regions:
            start = region.start          # first page not yet accounted for
            overrides = sorted(p for p in self._prot if region.start <= p < region.end)
            for page in [*overrides, region.end]:
                if page > start and region.prot & PROT_R:
                    runs.append((region, start, page))
                if page < region.end and self._prot[page] & PROT_R:
                    runs.append((region, page, page + PAGE))
                start = page + PAGE
        merged: list[tuple[Region, int, int]] = []
        for region, lo, hi in runs:
            if merged and merged[-1][0] is region and merged[-1][2] == lo:
                merged[-1] = (region, merged[-1][1], hi)
            elif lo < hi:
                merged.append((region, lo, hi))
        return merged

    def protect(self, start: int, end: int, prot: int) -> None:
        """mprotect a page range that lies inside one mapped region."""
        base = self.region_at(start).prot
        pages = range(start, end, PAGE)
        if prot == base and not any(page in self._prot for page in pages):
            return          # nothing changes: keep unicorn's region table small
        self.uc.mem_protect(start, end - start, prot)
        for page in pages:
            if prot == base:
                self._prot.pop(page, None)
            else:
                self._prot[page] = prot

    def overrides(self) -> dict[int, int]:
        """Pages whose protection ``protect`` changed, with that protection."""
        return dict(self._prot)

    def reset_protections(self) -> None:
        """Undo every ``protect`` (region permissions are as mapped again)."""
        run_start = run_end = None
        for page in sorted(self._prot) + [None]:
            if page is not None and page == run_end and \
                    self.region_at(page) is self.region_at(run_start):
                run_end += PAGE
                continue
            if run_start is not None:
                self.uc.mem_protect(run_start, run_end - run_start,
                                    self.region_at(run_start).prot)
            run_start = page
            run_end = None if page is None else page + PAGE
        self._prot.clear()

    def zero(self, start: int, end: int) -> None:
        """Give [start, end) back to the host; it reads as zeros afterwards."""
        if start >= end:
            return
        region = self.region_at(start)
        lo, hi = start - region.start, end - region.start
        inner_lo, inner_hi = page_up(lo), page_down(hi)
        if inner_lo < inner_hi:
            region.host.madvise(mmap.MADV_DONTNEED, inner_lo, inner_hi - inner_lo)
            region.view[lo:inner_lo] = bytes(inner_lo - lo)
            region.view[inner_hi:hi] = bytes(hi - inner_hi)
        else:
            region.view[lo:hi] = bytes(hi - lo)

    def clear(self, start: int, end: int) -> None:
        """Zero the pages [start, end) (page aligned, in one region, at most CLEAR_MAX
        bytes) and keep them: those the host holds are written over, ready for the
        next run, which would fault them in again after a ``zero`` (a page fault and
        a page zeroed by the kernel each, and freeing them a TLB flush: ~2 us a page)."""
        region = self.region_at(start)
        for lo, hi in self.touched(region, start, end):
            region.view[lo - region.start:hi - region.start] = _ZEROS[:hi - lo]

    def touched(self, region: Region, lo: int, hi: int) -> list[tuple[int, int]]:
        """Runs of pages in [lo, hi) (page aligned, in ``region``) that hold data:
        every other page of the range reads as zeros."""
        first, count = (region.addr + lo - region.start) // PAGE, (hi - lo) // PAGE
        fd = _pagemap()
        if fd is None:
            return [(lo, hi)] if hi > lo else []        # no /proc: all of it, to be safe
        entries = os.pread(fd, 8 * count, 8 * first) if count else b''
        used = entries[7::8].translate(_PAGEMAP_USED)   # the flags byte of each entry
        return [(lo + m.start() * PAGE, lo + m.end() * PAGE) for m in _RUN.finditer(used)]

    def resident(self, skip: tuple[Region, ...] = ()) -> int:
        """Bytes of host memory the regions (but ``skip``) hold now."""
        total = 0
        for region in self.regions:
            if any(region is r for r in skip):
                continue
            size = region.end - region.start
            # no ctypes array: its type, made per size, is a reference cycle per call
            vec = bytearray(max(1, size // PAGE))
            if _libc.mincore(region.addr, size,
                             ctypes.addressof(ctypes.c_char.from_buffer(vec))) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f'mincore: {os.strerror(err)}')
            total += vec.translate(_MINCORE_IN).count(1) * PAGE
        return total

    def close(self) -> None:
        """Release the host memory; only once the engine that maps it is closed."""
        for region in self.regions:
            region.view.release()
            region.host.close()
        self.regions.clear()
        self.uc = None

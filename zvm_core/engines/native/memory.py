"""Guest memory of a native guest, read and written through ``/proc/PID/mem``.

:class:`ProcessMemory` is the native side of the guest-memory interface the
personality uses (``zvm_core.syscalls``; the emulator's side is
:class:`zvm_core.engines.emulated.memory.AddressSpace`): ``read``, ``write``, ``view``,
``read_cstring``, ``region_at``, ``protection``, ``protect`` and ``zero``.
It keeps the same layout and protection table as the emulator, so a bad
pointer is ``EFAULT`` under both engines for the same reasons.

Reads and writes go through ``/proc/PID/mem``, opened once the loader runs
(:meth:`ProcessMemory.attach`; a template's child's when a read or write here
first needs it): one ``pread``/``pwrite`` is a fifth of the
cost of ``process_vm_readv``/``writev`` through ctypes, and every mediated
call that moves data pays it (doc/sandbox.md, "Cost of a mediated call").
The descriptor pins the guest's address space, not its pid.  Such a write
is not held to the guest's page protections as ``process_vm_writev`` is:
the protection table below is, first, and it never holds a page both
writable and executable (code stays the validated image's), so what it
could let through at worst is the guest's own read-only data after a
failed ``mprotect``.  Where ``/proc`` cannot be opened, both fall back to
``process_vm_readv``/``writev``.  A spawned guest's stack and data segments
can also be a memfd this process maps (:meth:`ProcessMemory.share`), which the
C loop copies from and to without a system call.

A view cannot be a window on another process's memory: a readable view is a
copy, a writable one is a staging buffer that :meth:`flush` copies into the
guest once the call is answered -- the bytes the call produced (its result,
in view order), or for a fresh mapping every non-zero page.  The guest is
one thread stopped in the call while the supervisor reads and writes, and
it is not reaped before the supervisor is done, so its pid cannot name
another process meanwhile.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
from dataclasses import dataclass

from zvm_core.engines.native.loader import HUGE, SHARED, Spec
from zvm_core.memory import PAGE, PROT_R, PROT_W, STACK_TOP, GuestFault, page_down

_libc = ctypes.CDLL(None, use_errno=True)
for _name in ('process_vm_readv', 'process_vm_writev'):
    _fn = getattr(_libc, _name)
    _fn.restype = ctypes.c_ssize_t
    _fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p,
                    ctypes.c_ulong, ctypes.c_ulong]


class _IOVec(ctypes.Structure):
    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]


CHUNK = 1 << 20
SHARED_MOST = 4 << 20   # a bigger data segment stays private (share(): a static array)


def _address(view: mmap.mmap) -> int:
    """Where ``view`` lies in this process (the buffer export released at once, so
    ``view`` can be closed: the address is used only while it is open)."""
    anchor = ctypes.c_char.from_buffer(view)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor


@dataclass(frozen=True)
class Region:
    start: int
    end: int
    prot: int


class ProcessMemory:
    """The guest process's memory, as laid out by the loader."""

    def __init__(self, pid: int, regions: list[Region], like: ProcessMemory | None = None
                 ) -> None:
        """``like``: the memory of a run over the same ``regions`` (a template's
        runs share their layout): its sorted regions are taken, not sorted again."""
        self.pid = pid
        if like is not None:
            self.regions, self._base = like.regions, like._base
        else:
            self.regions = tuple(sorted(regions, key=lambda r: r.start))   # shared: never changed
            self._base = tuple((r.start, r.end, r.prot, 0) for r in self.regions)
        self._spans = self._base    # with where this process maps them (share()), or not
        self._prot: dict[int, int] = {}
        self._shared: tuple[int, mmap.mmap] | None = None     # share(): memfd, our mapping
        self._staged: list[tuple[int, bytearray]] = []
        self._memfd: int | None = None
        self._lazy = False              # _memfd is opened when first needed (attach)
        self._last = Region(0, 0, 0)    # the region found last: calls come in runs

    def attach(self, pid: int, lazy: bool = False) -> None:
        """Address the guest process ``pid`` (the loader, already exec'd), its
        ``/proc/PID/mem`` opened now, or with ``lazy`` when a read or write here first
        needs it: a template's child, whose short run is the C loop's, which reads
        without it (fastcall.c: memfd_of), and whose open costs ~7 us (the kernel
        makes the /proc entries of a pid new to it)."""
        self.pid = pid
        self._lazy = lazy
        if not lazy:
            self._open()

    def _open(self) -> None:
        self._lazy = False
        try:
            self._memfd = os.open(f'/proc/{self.pid}/mem', os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            self._memfd = None          # no /proc here: process_vm_readv/writev

    def share(self, spec: Spec) -> int | None:
        """Make a spawned guest's stack and writable data segments shared with this
        process: marked SHARED, laid one after another in a new memfd sealed at
        their size (the loader maps them from it at MEM_FD), which this process maps
        too, for the C loop to read and write those regions without a system call
        (``table``).  Its descriptor, to pass to the loader, closed by
        :meth:`close`; None, the spec unchanged, where it cannot be made (no memfd,
        or a file size limit below it: ``ftruncate`` past ``RLIMIT_FSIZE`` fails with
        EFBIG, Python ignoring SIGXFSZ).  The heap stays private, and so does a data
        segment over SHARED_MOST (a big static array): their pages would be
        shmem's, whose faults and freeing cost ~2-4 us a page more here than an
        anonymous page's (a big heap touches thousands), and the heap's huge pages
        (HUGE) would go."""
        maps, at, hosts = [], 0, []
        for addr, size, prot in spec.maps:
            if prot & PROT_W and not prot & HUGE and (size <= SHARED_MOST
                                                      or addr + size == STACK_TOP):
                hosts.append((addr, at))
                at += size
                prot |= SHARED
            maps.append((addr, size, prot))
        if not hosts:
            return None
        try:
            fd = os.memfd_create('zvm-guest', os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except OSError:
            return None
        try:
            os.ftruncate(fd, at)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            view = mmap.mmap(fd, at)
        except OSError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        base = _address(view)
        offsets = dict(hosts)
        self._spans = tuple((start, end, prot, base + offsets[start] if start in offsets else 0)
                            for start, end, prot, _ in self._base)
        self._shared = fd, view
        spec.maps = maps
        return fd

    def table(self) -> tuple[int, int, tuple[tuple[int, int, int, int], ...],
                             dict[int, int]] | None:
        """What the supervisor's C loop (``fastcall.c``) checks and moves guest bytes
        with: the ``/proc/PID/mem`` descriptor (-1: not opened yet, ``attach``), the
        pid, the regions as (start, end, prot, where this process maps it:
        :meth:`share`, or 0), and the live page protections ``protect`` records (the
        same dict); None without ``/proc``."""
        if self._memfd is None and not self._lazy:
            return None
        return (-1 if self._memfd is None else self._memfd), self.pid, self._spans, self._prot

    def close(self) -> None:
        """The guest's descriptors and this process's mapping of it (the C loop has
        ended: nothing reads the mapping after)."""
        self._lazy = False
        if self._memfd is not None:
            os.close(self._memfd)
            self._memfd = None
        if self._shared is not None:
            fd, view = self._shared
            self._shared = None
            self._spans = self._base
            view.close()
            os.close(fd)

    # -- protection table (the emulator's rules) ---------------------------------

    def region_at(self, addr: int) -> Region | None:
        r = self._last
        if r.start <= addr < r.end:
            return r
        for r in self.regions:
            if r.start <= addr < r.end:
                self._last = r
                return r
        return None

    def protection(self, addr: int) -> int:
        region = self.region_at(addr)
        return 0 if region is None else self._prot.get(page_down(addr), region.prot)

    def check(self, addr: int, size: int, need: int) -> None:
        """GuestFault unless the guest may ``need`` all of [addr, addr+size): what a
        call that moves its bytes a step at a time checks before the first."""
        self._check(addr, size, need)

    def _check(self, addr: int, size: int, need: int) -> None:
        region = self.region_at(addr)
        if region is None or size < 0 or addr + size > region.end:
            raise GuestFault(addr)
        if not self._prot and region.prot & need == need:
            return                      # no mprotect has changed a page: the region says
        for page in range(page_down(addr), addr + size, PAGE):
            if self._prot.get(page, region.prot) & need != need:
                raise GuestFault(addr)

    def protect(self, start: int, end: int, prot: int) -> None:
        """Record what mprotect changes; the kernel applies it (the call continues)."""
        region = self.region_at(start)
        for page in range(start, end, PAGE):
            if prot == region.prot:
                self._prot.pop(page, None)
            else:
                self._prot[page] = prot

    def overrides(self) -> dict[int, int]:
        """Pages whose protection mprotect changed -> their protection."""
        return dict(self._prot)

    # -- transfers -----------------------------------------------------------------

    def _transfer(self, fn, addr: int, buf, size: int) -> int:
        if size == 0:
            return 0
        c_buf = (ctypes.c_char * size).from_buffer(buf)
        local = _IOVec(ctypes.addressof(c_buf), size)
        remote = _IOVec(addr, size)
        n = fn(self.pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        del c_buf
        if n < 0:
            err = ctypes.get_errno()
            if err == errno.EFAULT:
                raise GuestFault(addr)
            raise OSError(err, os.strerror(err))
        return n

    def _readv(self, addr: int, size: int) -> bytes | bytearray:
        if self._lazy:
            self._open()
        if self._memfd is not None:
            try:
                data = os.pread(self._memfd, size, addr)
            except OSError as e:        # EIO: not mapped
                raise GuestFault(addr) from e
            if len(data) != size:
                raise GuestFault(addr)
            return data
        buf = bytearray(size)
        if self._transfer(_libc.process_vm_readv, addr, buf, size) != size:
            raise GuestFault(addr)
        return buf

    def _writev(self, addr: int, data) -> None:
        if self._lazy:
            self._open()
        if self._memfd is not None:
            try:
                done = os.pwrite(self._memfd, data, addr)
            except OSError as e:        # EIO: not mapped
                raise GuestFault(addr) from e
            if done != len(data):
                raise GuestFault(addr)
            return
        buf = data if isinstance(data, bytearray) else bytearray(data)
        if self._transfer(_libc.process_vm_writev, addr, buf, len(buf)) != len(buf):
            raise GuestFault(addr)

    def read(self, addr: int, size: int) -> bytes:
        self._check(addr, size, PROT_R)
        data = self._readv(addr, size)
        return data if isinstance(data, bytes) else bytes(data)

    def write(self, addr: int, data: bytes) -> None:
        self._check(addr, len(data), PROT_W)
        self._writev(addr, data)

    def view(self, addr: int, size: int, need: int) -> memoryview:
        if size == 0:       # nothing to check (Linux, the emulator); writable: getrandom
            return memoryview(bytearray())
        self._check(addr, size, need)
        if need & PROT_W:
            buf = bytearray(size)           # zero pages until the call fills them
            self._staged.append((addr, buf))
            return memoryview(buf)
        return memoryview(self._readv(addr, size))

    def read_cstring(self, addr: int, limit: int = 4096) -> bytes:
        out = b''
        while len(out) < limit:
            if not self.protection(addr) & PROT_R:
                raise GuestFault(addr)
            n = min(PAGE - addr % PAGE, limit - len(out))
            chunk = bytes(self._readv(addr, n))
            end = chunk.find(b'\0')
            if end >= 0:
                return out + chunk[:end]
            out += chunk
            addr += n
        raise GuestFault(addr)

    def flush(self, produced: int) -> None:
        """Copy the staged views into the guest: ``produced`` bytes across them in
        order (a call's result; nothing when it is not positive)."""
        staged, self._staged = self._staged, []
        if produced <= 0:
            return
        for addr, buf in staged:
            n = min(produced, len(buf))
            self._writev(addr, buf if n == len(buf) else buf[:n])
            produced -= n
            if not produced:
                break

    def discard(self) -> None:
        self._staged = []

    def zero(self, start: int, end: int) -> None:
        """Make [start, end) read as zeros, writing only chunks that are not
        already zero (untouched pages stay untouched)."""
        for addr in range(start, end, CHUNK):
            n = min(CHUNK, end - addr)
            data = self._readv(addr, n)
            if data.count(0) != n:
                self._writev(addr, bytearray(n))

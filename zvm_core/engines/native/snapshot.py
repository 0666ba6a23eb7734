"""Start-up snapshots of the native engine: a warm run resumes from its prefix.

A warm CPython ``print(1)`` natively spends nearly all its time starting up
(~185 of its ~190 mediated calls come before its first channel access).  As under the
emulator (``zvm_core.prefix`` says what a prefix is, its key and what it
depends on), a pool worker's program records the prefix of a key once and
later runs with that key start where it ended.

**Recording: a probe.**  The first run of a key starts as a probe: the run
in a loader spawned for it, traced (``tsc.py``), with the user
manifest unreadable (mapped without access; a mediated call that would read
it ends the probe too).  At its first channel access (the personality raises
:class:`~zvm_core.prefix.Cut`; the guest is blocked in that call) the
supervisor copies what it has of the guest: the personality's state, every
page of the guest's data, heap and stack that differs from the loaded
program (``/proc/PID/pagemap`` says which pages it ever touched), and the
page protections: the personality's table, and what the kernel has of it
(what ``mprotect`` changed; a page ``mmap`` gave less than read+write is
read+write natively, so a resumed run's page must be too).  The tracer then
stops the guest with a signal it never receives (the call is abandoned, as a
signal would restart it) and reads its registers, FS/GS bases and XSAVE
state; the probe is killed and the run resumes from the new snapshot with
what is left of its timeout.
A probe that ends any other way, without touching the manifest (exit, fault,
timeout), was the run: nothing differs from a full run but the unreadable
manifest, which it never read, so its report is the run's.  One that read
the manifest turns this program's snapshots off (ZeroVM API programs read it
at once) and the run starts again from its entry.  A prefix that made fewer
than :data:`MIN_PREFIX_CALLS` mediated calls (the decision is the same every
time; CPython's makes ~185, a C program that reads its input at once a
handful) leaves no snapshot.

**Restoring: a snapshot template.**  The snapshot becomes a fork server
(``loader.c``, a :class:`~zvm_core.engines.native.Template` whose spec is
the program's image plus the captured pages, protections and a resume
block): spawned, so its address space is fresh; it never runs a guest
instruction.  Each run is a child forked from it (copy on write), which
copies ahead of its run the snapshot's pages it may write (``MADV_POPULATE_WRITE``
over them before its filter: the guest's run then takes no copy-on-write fault
for them), installs the filter like any template child, gets this run's user manifest,
restores the registers and executes the pending ``syscall`` again, which the
supervisor answers from the restored personality state.  The mediated-call
count (the native virtual clock) and the ``rdtsc`` reads start from the
snapshot's, so the clock, every byte read and written and the report are
those of a full native run (tests/sandbox/test_snapshot.py compares); the
report's ``start`` says ``recorded`` or ``resumed``.  A template that died
takes its snapshot with it (the next run probes again).
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct
import threading
from dataclasses import dataclass

from zvm_core import prefix
from zvm_core.elf import PF_X, Program
from zvm_core.engines.native import tsc_unavailable
from zvm_core.engines.native.loader import RESUME, Spec
from zvm_core.engines.native.memory import ProcessMemory
from zvm_core.engines.native.supervisor import Guest, Template, run
from zvm_core.engines.native.tsc import PTRACE_GETREGS, RIP, Tracer, _ptrace
from zvm_core.memory import (
    MANIFEST_PAGE,
    PAGE,
    PROT_W,
    PROT_X,
    STACK_SIZE,
    STACK_TOP,
    page_down,
    page_up,
)
from zvm_core.report import Report

MIN_PREFIX_CALLS = 100      # a shorter prefix is not worth a template process
CAPTURE_WAIT = 5.0          # seconds the tracer has to stop the probe
MANIFEST_END = STACK_TOP - STACK_SIZE
MAX_COPIES = 1024           # loader.c: MAX_COPIES (the image's own copies included)
MAX_PREFAULTS = 1024        # loader.c: MAX_PREFAULTS
XSAVE_MAX = 16384           # loader.c: XSAVE_MAX
SYSCALL = b'\x0f\x05'
PTRACE_GETFPREGS, PTRACE_GETREGSET, NT_X86_XSTATE = 14, 0x4204, 0x202
# struct user_regs_struct (sys/user.h) indexes, in loader.c's pop order, then rflags
_POP_ORDER = (15, 5, 11, 12, 13, 14, 4, 9, 8, 7, 6, 3, 2, 1, 0, 18)  # orig_rax as rax
_RSP, _FS_BASE, _GS_BASE = 19, 21, 22
_PAGEMAP_TOUCHED = 3 << 62  # present or swapped


class ManifestRead(prefix.Cut):
    """A probe's mediated call would read the user manifest (natively unreadable)."""


class _ProbeMemory(ProcessMemory):
    """A probe's guest memory: the user manifest ends the probe instead of faulting."""

    def _check(self, addr: int, size: int, need: int) -> None:
        if addr < MANIFEST_END and addr + size > MANIFEST_PAGE:
            raise ManifestRead
        super()._check(addr, size, need)

    def protection(self, addr: int) -> int:
        if MANIFEST_PAGE <= addr < MANIFEST_END:
            raise ManifestRead
        return super().protection(addr)

    def raw(self, addr: int, size: int) -> bytes:
        """Bytes as they are, whatever their protection (the probe's copy)."""
        return bytes(self._readv(addr, size))


class _ProbeTracer(Tracer):
    """Traces a probe: answers ``rdtsc`` if the program is traced anyway
    (``answer``), notes a fault on the manifest, and on :meth:`capture` stops
    the guest and reads its registers."""

    def __init__(self, pid: int, ticks, answer: bool) -> None:
        self.answer, self.manifest_read = answer, False
        self.regs: ctypes.Array | None = None
        self.xstate: bytes = b''
        self.xsave = False
        self._want, self._got = False, threading.Event()
        super().__init__(pid, ticks)

    def capture(self) -> bool:
        """Stop the guest (blocked in a mediated call) and read its registers."""
        self._want = True
        os.kill(self.pid, signal.SIGSTOP)   # not reaped yet: the pid is the guest's
        return self._got.wait(CAPTURE_WAIT) and self.regs is not None

    def _stopped(self, sig: int) -> int | None:
        if sig == signal.SIGSTOP and self._want:
            self._want = False
            try:
                self._read_registers()
            finally:
                self._got.set()
            return None                     # stays stopped until it is killed
        if sig == signal.SIGSEGV:
            if self.answer and self._answer():
                return 0
            info = (ctypes.c_ulong * 16)()
            _ptrace(0x4202, self.pid, 0, ctypes.addressof(info))    # PTRACE_GETSIGINFO
            if MANIFEST_PAGE <= info[2] < MANIFEST_END:             # si_addr
                self.manifest_read = True
        return sig

    def _read_registers(self) -> None:
        regs = (ctypes.c_ulong * 27)()
        _ptrace(PTRACE_GETREGS, self.pid, 0, ctypes.addressof(regs))
        area = ctypes.create_string_buffer(XSAVE_MAX)
        iov = (ctypes.c_ulong * 2)(ctypes.addressof(area), XSAVE_MAX)
        try:
            _ptrace(PTRACE_GETREGSET, self.pid, NT_X86_XSTATE, ctypes.addressof(iov))
            self.xstate, self.xsave = area.raw[:iov[1]], True
        except OSError:                     # no XSAVE on this CPU: the FXSAVE image
            _ptrace(PTRACE_GETFPREGS, self.pid, 0, ctypes.addressof(area))
            self.xstate, self.xsave = area.raw[:512], False
        self.regs = regs


@dataclass
class Capture:
    """What a probe copied of its guest at the cut."""

    personality: prefix.Personality
    syscalls: int               # mediated calls before the pending one
    reads: int                  # rdtsc reads answered
    pages: list[tuple[int, bytes]]
    protections: dict[int, int]     # the personality's table (ProcessMemory.overrides)
    in_force: dict[int, int]        # those the kernel has (:func:`_in_force`)
    resume: bytes               # loader.c's resume block


class Probe(prefix.Recorder):
    """How a probe starts: spawned, traced, the manifest unreadable (``run(start=)``)."""

    template = None

    def __init__(self, tsc: bool) -> None:
        super().__init__()
        self.tsc = tsc
        self.captured: Capture | None = None
        self.reached = self.manifest_read = False   # reached: its first channel access
        self._tracer: _ProbeTracer | None = None

    def setup(self, guest: Guest) -> None:
        guest.recorder = self
        guest.mem = guest.arena.space = _ProbeMemory(0, guest.regions)

    def adjust(self, spec: Spec) -> None:
        spec.maps = [(addr, size, 0 if addr == MANIFEST_PAGE else prot)
                     for addr, size, prot in spec.maps]

    def tracer(self, pid: int, ticks, tsc: bool, child=None) -> Tracer:
        self._tracer = _ProbeTracer(pid, ticks, tsc)     # spawned: no template child
        return self._tracer

    def take(self, guest: Guest, ip: int, cut: prefix.Cut) -> None:
        """The guest is blocked in its first channel access (ending at ``ip``)."""
        self.reached = True
        if isinstance(cut, ManifestRead):
            self.manifest_read = True
            return
        if guest.syscalls - 1 < MIN_PREFIX_CALLS:
            return                  # not worth a copy (Snapshots.begin: a short key)
        personality = prefix.Personality.capture(guest, self)
        pages = _changed_pages(guest)
        if guest.mem.raw(ip - len(SYSCALL), len(SYSCALL)) != SYSCALL:
            return
        tracer = self._tracer
        if tracer is None or not tracer.capture() or tracer.regs[RIP] != ip:
            return
        regs = tracer.regs
        gprs = [regs[i] for i in _POP_ORDER]
        block = RESUME.pack(*gprs, regs[_RSP], ip - len(SYSCALL), regs[_FS_BASE],
                            regs[_GS_BASE], int(tracer.xsave), len(tracer.xstate))
        self.captured = Capture(personality, guest.syscalls - 1, tracer.reads,
                                _merged(pages, MAX_COPIES - 16),
                                guest.mem.overrides(), _in_force(guest), block + tracer.xstate)


def _in_force(guest: Guest) -> dict[int, int]:
    """The pages whose protection the kernel has changed -> that protection: what a
    fresh run has in force at the cut.  ``mprotect`` is the one memory call the kernel
    performs; ``mmap``'s own protection is the personality's table only (the page stays
    read+write, doc/sandbox.md), so of the arena's pages only those ``mprotect``
    lowered (``Arena.held``) differ; nothing but ``mprotect`` changes another page."""
    arena = guest.arena
    return {page: prot for page, prot in guest.mem.overrides().items()
            if page in arena.held or not arena.start <= page < arena.end}


def _initial(program: Program) -> dict[int, bytes]:
    """The loaded contents of the pages of data segments that are not all zero."""
    pages = {}
    for seg in program.segments:
        if seg.flags & PF_X or not seg.data:
            continue
        lo = page_down(seg.vaddr)
        image = bytearray(page_up(seg.vaddr + len(seg.data)) - lo)
        image[seg.vaddr - lo:seg.vaddr - lo + len(seg.data)] = seg.data
        for off in range(0, len(image), PAGE):
            page = bytes(image[off:off + PAGE])
            if page.count(0) != PAGE:
                pages[lo + off] = page
    return pages


def _changed_pages(guest: Guest) -> dict[int, bytes]:
    """Every page of the guest's data, heap and stack that differs from the loaded
    program: those it ever touched (pagemap) whose bytes are not the initial ones."""
    initial = _initial(guest.program)
    zero = bytes(PAGE)
    changed: dict[int, bytes] = {}
    fd = os.open(f'/proc/{guest.mem.pid}/pagemap', os.O_RDONLY | os.O_CLOEXEC)
    try:
        for region in guest.regions:
            if region.prot & PROT_X or region.start == MANIFEST_PAGE:
                continue        # code never changes; the manifest is each run's
            count = (region.end - region.start) // PAGE
            entries = os.pread(fd, 8 * count, region.start // PAGE * 8)
            touched = [region.start + i * PAGE
                       for i, (e,) in enumerate(struct.iter_unpack('<Q', entries))
                       if e & _PAGEMAP_TOUCHED]
            for lo, hi in _runs(touched, 0):
                data = guest.mem.raw(lo, hi - lo)
                for addr in range(lo, hi, PAGE):
                    page = data[addr - lo:addr - lo + PAGE]
                    if page != initial.get(addr, zero):
                        changed[addr] = page
    finally:
        os.close(fd)
    return changed


def _runs(pages: list[int], gap: int) -> list[tuple[int, int]]:
    """Sorted page addresses as [lo, hi) runs, joining those at most ``gap`` apart."""
    runs: list[list[int]] = []
    for addr in pages:
        if runs and addr - runs[-1][1] <= gap:
            runs[-1][1] = addr + PAGE
        else:
            runs.append([addr, addr + PAGE])
    return [(lo, hi) for lo, hi in runs]


def _merged(pages: dict[int, bytes], most: int) -> list[tuple[int, bytes]]:
    """The changed pages as at most ``most`` copies: runs joined over the fewest
    pages that did not change (written with their bytes, zeros if untouched:
    the same as the template's)."""
    order = sorted(pages)
    gap = 0
    while len(runs := _runs(order, gap)) > most:
        gap = gap * 2 or PAGE
    zero = bytes(PAGE)
    return [(lo, b''.join(pages.get(a, zero) for a in range(lo, hi, PAGE)))
            for lo, hi in runs]


def _prefaults(copies: list[tuple[int, bytes]], maps: list[tuple[int, int, int]],
               in_force: dict[int, int]) -> list[tuple[int, int]]:
    """The snapshot's pages the guest may write at the cut, as (address, size)
    runs: what a resumed run writes is nearly all of them (CPython's run and
    finalisation write most of its heap), so its child copies them ahead (at most
    :data:`MAX_PREFAULTS` runs: pages past them are copied at the guest's write)."""
    def writable(page: int) -> bool:
        prot = in_force.get(page)
        if prot is None:
            prot = next((p for a, size, p in maps if a <= page < a + size), 0)
        return bool(prot & PROT_W)
    pages = [page for addr, data in copies for page in range(addr, addr + len(data), PAGE)
             if writable(page)]
    return [(lo, hi - lo) for lo, hi in _runs(pages, 0)][:MAX_PREFAULTS]


def _protects(protections: dict[int, int]) -> list[tuple[int, int, int]]:
    """Page protections as (address, size, protection) runs."""
    out: list[list[int]] = []
    for page, prot in sorted(protections.items()):
        if out and out[-1][0] + out[-1][1] == page and out[-1][2] == prot:
            out[-1][1] += PAGE
        else:
            out.append([page, PAGE, prot])
    return [(a, s, p) for a, s, p in out]


class Snapshot:
    """A recorded prefix and the template its runs are forked from (``run(start=)``)."""

    def __init__(self, program: Program, memory: int, captured: Capture,
                 tsc: bool = False) -> None:
        self.personality = captured.personality
        self.syscalls, self.reads = captured.syscalls, captured.reads
        self.protections = captured.protections
        spec = Guest(program, memory).image_spec(template=True)
        spec.copies += captured.pages
        spec.protects = _protects(captured.in_force)
        if any(prot & PROT_W and prot & PROT_X for _, _, prot in spec.protects):
            raise OSError('a snapshot page both writable and executable')
        spec.resume = captured.resume
        spec.prefaults = self.prefaults = _prefaults(captured.pages, spec.maps,
                                                     captured.in_force)
        # held twice: by the template and by the child waiting for the next run,
        # which copied its prefaults ahead
        self.size = (sum(len(data) for _, data in captured.pages)
                     + sum(size for _, size in self.prefaults))
        self.template = Template(program, memory, spec=spec, tsc=tsc)

    def setup(self, guest: Guest) -> None:
        self.personality.restore(guest)
        guest.syscalls = self.syscalls
        for page, prot in self.protections.items():
            guest.mem.protect(page, page + PAGE, prot)
        if guest.start != 'recorded':       # Snapshots.begin: made for this run
            guest.start = 'resumed'

    def adjust(self, spec: Spec) -> None:
        """A child gets this run's user manifest; its stack is the snapshot's."""
        spec.copies = [(addr, data) for addr, data in spec.copies if addr == MANIFEST_PAGE]

    def tracer(self, pid: int, ticks, tsc: bool, child) -> Tracer | None:
        """``child``: the snapshot template's, seized when it was taken in."""
        if not tsc:
            return None
        tracer = child.trace(ticks)
        tracer.reads = self.reads       # the guest runs no instruction before the gate
        return tracer

    def close(self) -> None:
        self.template.close()


class Snapshots(prefix.Snapshots):
    """One program's native snapshots at one memory size (a pool worker's ``Warm``)."""

    def __init__(self, program: Program, memory: int, tsc: bool) -> None:
        super().__init__()
        self.program, self.memory, self.tsc = program, memory, tsc
        self.off = False        # the program reads the user manifest in its prefix
        self.last: Snapshot | None = None   # the one a run used last (Warm.reset)

    def close(self) -> None:
        self.last = None
        super().close()

    def descriptors(self) -> int:
        """Descriptors the snapshots' templates hold (``Warm.descriptors``)."""
        return sum(snap.template.descriptors() for snap in self._kept.values())

    def waiting(self) -> list[int]:
        """What the snapshot used last waits for (``Template.waiting``)."""
        return [] if self.last is None else self.last.template.waiting()

    def tend_step(self, step: str, *args) -> None:
        """``step`` (``Template.prefork``, ``idle``, ``trim`` or ``tend``) of the template of
        the snapshot used last; a template that died is dropped (the next run of its
        key probes again)."""
        last = self.last
        if last is None:
            return
        try:
            getattr(last.template, step)(*args)
        except OSError:
            self.last = None
            for key, snap in list(self._kept.items()):
                if snap is last:
                    self.drop(key)

    def begin(self, guest: Guest, channels: list, argv: list[str], env: dict[str, str],
              seed: int, epoch: int, image, timeout: float, probe: bool = True
              ) -> tuple[Snapshot | None, Report | None]:
        """(the snapshot this run resumes from, probed and made now if there is none
        and the key is not known to be short, or None: from the entry point; the
        run's report if the probe was the whole run).  ``probe=False``: a key no
        other run is expected to repeat (a batch's node, whose ``LOCAL_*``
        variables name its object) is not recorded: its probe would cost a spawned,
        traced loader, and for a short prefix the run again from the entry, for a
        snapshot that no run resumes (and with none kept, its key is not even made:
        a batch's nodes)."""
        if self.off or not (probe or self._kept):
            return None, None
        key = prefix.key(argv, env, seed, epoch, guest.fds)
        if key in self.short:
            return None, None
        snap = self.find(key, guest)
        if snap is not None:
            if snap.template.alive():
                self.last = snap
                return snap, None
            self.drop(key)
        if not probe:
            return None, None
        if tsc_unavailable() is not None:   # a probe is traced
            self.off = True
            return None, None
        probe = Probe(self.tsc)
        report = run(self.program, channels, argv, env, self.memory, timeout, seed, epoch,
                     image, tsc=self.tsc, start=probe)
        if probe.manifest_read or (probe._tracer is not None and probe._tracer.manifest_read):
            self.off = True
            self.close()
            return None, None
        if not probe.reached:             # it never reached a channel: that was the run
            self.too_short(key)
            return None, report
        captured = probe.captured
        if captured is None:
            self.too_short(key)
            return None, None
        try:
            snap = Snapshot(self.program, self.memory, captured, self.tsc)
        except OSError:
            self.too_short(key)
            return None, None
        self.keep(key, snap)
        self.last = snap
        guest.start = 'recorded'
        return snap, None

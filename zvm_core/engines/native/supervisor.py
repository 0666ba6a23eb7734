"""Run one validated program natively: spawn the loader, answer the guest's calls.

:func:`run` lays the guest out exactly as the emulator does (segments at
their addresses with their ELF permissions, the trap page, one heap arena,
the read-only user manifest, a 16 MiB stack ending at 4 GiB; the same
initial stack and auxiliary vector), hands that to the trusted loader
(``loader.c``) in a fresh process, and serves the seccomp notifications the
guest's system calls raise with the emulator's personality
(``zvm_core.syscalls``, ``zvm_core.zerovm.trap``) over :class:`ProcessMemory`.
The loop is C (``fastcall.c``): it answers the calls whose answer is a
constant of the run (with what the personality's handlers return), ``ioctl``
(as ``sys_ioctl`` does) and plain channel reads and writes on the
personality's own objects, and hands every
other call, and every edge of those, to the personality (doc/sandbox.md,
"Cost of a mediated call").

Memory calls are the personality's too: ``brk`` and ``mmap`` are
bookkeeping in the same :class:`~zvm_core.memory.Arena` over the heap the
loader mapped, so addresses, the memory limit and the ``memory`` status are
the emulator's; ``mprotect`` is checked by it and then performed by the
kernel.  The guest is one process the supervisor owns: it is killed on
every path out of :func:`run` (and by ``PR_SET_PDEATHSIG`` if the worker
dies) and always reaped.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import math
import os
import select
import signal
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable

from zvm_core.channels import (
    Channel,
    FdBacking,
    FileBacking,
    TailBacking,
    standard_order,
    with_etags,
)
from zvm_core.elf import PF_R, PF_W, PF_X, Program
from zvm_core.engines.native import _fastcall, namespaces, seccomp
from zvm_core.engines.native.loader import HUGE, OFF, OWN, Spec, loader_path, spawn
from zvm_core.engines.native.memory import ProcessMemory, Region
from zvm_core.engines.native.tsc import Tracer
from zvm_core.executor import (
    HLT_STOP,
    INVALID_INSTRUCTION,
    MEMORY_FAULTS,
    STACK_OVERFLOW,
    TRAPS,
    UID,
    SetupError,
    attach,
    blame_limits,
    halting,
    heap_bounds,
    initial_stack,
)
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
    Arena,
    GuestFault,
    page_down,
    page_up,
)
from zvm_core.prefix import Cut
from zvm_core.report import Accounting, Report
from zvm_core.syscalls import HANDLERS, Stop, SysError, count_unknown, syscall_name
from zvm_core.syscalls.errors import host_io_failure
from zvm_core.syscalls.io import OpenFile
from zvm_core.syscalls.proc import CONSTANT, segment_request, sys_exit
from zvm_core.syscalls.random import SeededStream, at_random
from zvm_core.syscalls.time import VirtualClock
from zvm_core.zerovm import trap


def _arch_prctl(g: Guest, code: int, addr: int, *_) -> int:
    """The FS/GS bases are the kernel's: it performs the call (answered 0: continued,
    :func:`seccomp.may_continue`) for what the emulator accepts, checked here by the same rule
    (so a base past 4-level user space is EPERM on a 5-level host too; any other code
    never reaches the kernel).  A base read is checked as the emulator's write of it
    (the kernel's page is at least as writable as the table says; nothing is staged:
    the call produces no bytes).  Continuing it is no race: the address is a register,
    fixed in the notification, and the guest's one thread is stopped in this call, so
    its pages cannot change before the kernel writes; the kernel's ``put_user`` can do
    no more than the guest's own store could.  The C loop (``fastcall.c``) lets the two
    setting codes with a base below the same bound through itself, as here: musl sets
    the FS base once per start."""
    if not segment_request(code, addr)[1]:
        g.mem.view(addr, 8, PROT_W)
    return 0


DISPATCH = {**HANDLERS, **trap.HANDLERS, seccomp.NR_ARCH_PRCTL: ('arch_prctl', _arch_prctl)}
# The kernel's legacy vsyscall page (time, gettimeofday, getcpu at fixed addresses):
# no page of the guest's, and the loader cannot unmap it, but the kernel runs its
# calls through the filter; the run ends as the emulator's does there, a fault at the
# address (the emulated engine has no page there either).
VSYSCALL = 0xFFFFFFFFFF600000
TICK_NS = 1000          # the native virtual clock: 1 us per mediated call (no fuel to count)
AS_SLACK = 16 << 20     # the loader's own pages under RLIMIT_AS
FILTER = seccomp.assemble(seccomp.program())        # a spawned loader's
TEMPLATE_FILTER = seccomp.assemble(seccomp.program(template=True))    # its children's
_NOTIF_ZERO = bytes(seccomp.NOTIF.size)
SP_SLOT = STACK_TOP - 8     # loader.c: where a child started at its entry reads it
SP_GAP = 32                 # bytes of zeros at most between the stack's copy and SP_SLOT
AHEAD = 4                   # children a template is asked for at once for a batch's nodes
FAST_PATH = True        # channel reads and writes served in C (fastcall.c); tests compare
# loader.c delivers these to the trap stub: a trap call with the signal as its argument
FAULT_SIGNALS = frozenset({signal.SIGILL, signal.SIGTRAP, signal.SIGBUS, signal.SIGFPE,
                           signal.SIGSEGV})
_SI_ADDR = struct.Struct('<16xQ')        # siginfo_t: si_addr
_MCONTEXT = struct.Struct('<Q16xQQ')    # ucontext from gregs[REG_RIP]: rip, err, trapno
MCONTEXT_RIP = 168                      # offsetof(ucontext_t, uc_mcontext.gregs[REG_RIP])
PAGE_FAULT, PF_PRESENT, PF_WRITE, PF_FETCH = 14, 1, 2, 16
HLT = 0xF4
_SIGNAL_TEXT = {
    signal.SIGSYS: 'a system call through a forbidden ABI (int 0x80, sysenter or x32)',
    signal.SIGSEGV: 'invalid memory access or forbidden instruction (SIGSEGV)',
    signal.SIGBUS: 'bus error (SIGBUS)', signal.SIGILL: 'invalid instruction (SIGILL)',
    signal.SIGFPE: 'arithmetic exception (SIGFPE)', signal.SIGTRAP: 'trap (SIGTRAP)',
}


class _NoJail:
    """ZeroVM's Jail makes heap code executable: natively nothing becomes code after
    the filter, so Jail and Unjail are refused (the emulated engine has them)."""

    pages: frozenset = frozenset()

    def overlaps(self, start: int, end: int) -> bool:
        return False

    def jail(self, addr: int, size: int) -> int:
        return -errno.EPERM

    unjail = jail


class Guest:
    """One native run: what the personality reads as ``p`` (as the emulator's Machine)."""

    uid = UID
    recorder = None
    runs = 1
    start = 'entry'         # or from a start-up snapshot: 'recorded', 'resumed' (snapshot.py)
    uc = None
    jail = _NoJail()

    def __init__(self, program: Program, memory: int, like: Guest | None = None) -> None:
        """``like``: a Guest of the same program and memory whose layout (a function
        of those two alone) is taken instead of made again (a template's runs)."""
        self.program, self.memory_limit = program, memory
        if like is not None:
            self.heap_start, heap_size = like.heap_start, like.heap_size
            self.image_size, self.regions = like.image_size, like.regions
        else:
            self.heap_start, heap_size = heap_bounds(program, memory)
            self.image_size = sum(page_up(s.vaddr + s.memsz) - page_down(s.vaddr)
                                  for s in program.segments)
            self.regions = (*(Region(page_down(s.vaddr), page_up(s.vaddr + s.memsz),
                                     _prot(s.flags)) for s in program.segments),
                            Region(TRAP_PAGE, TRAP_PAGE + PAGE, PROT_R | PROT_X),
                            Region(self.heap_start, self.heap_start + heap_size,
                                   PROT_R | PROT_W),
                            Region(MANIFEST_PAGE, STACK_TOP - STACK_SIZE, PROT_R),
                            Region(STACK_TOP - STACK_SIZE, STACK_TOP, PROT_R | PROT_W))
        self.heap_size = heap_size
        self.mem = ProcessMemory(0, self.regions, like.mem if like is not None else None)
        self.arena = Arena(self.mem, self.heap_start, self.heap_start + heap_size)
        self.unknown: collections.Counter = collections.Counter()
        self.syscalls = 0
        self.outcome: Stop | None = None
        self.tracer: Tracer | None = None

    def image_spec(self, template: bool = False) -> Spec:
        """What the loader maps and copies whatever the run: the program's image."""
        p = self.program
        # a template's children's filter lets their manifest's mprotect through (seccomp.py)
        spec = Spec(entry=p.entry, filter=TEMPLATE_FILTER if template else FILTER,
                    template=template,
                    namespaces=OFF if os.environ.get('ZVM_NATIVE_NAMESPACES') == 'off' else OWN)
        # unicorn's protection bits are mmap's (1, 2, 4)
        # the heap's interior as huge pages for a spawned run only: a template's children
        # (and a snapshot's copied heap) were not measured with them.  A template's user
        # manifest is writable: its children get their run's written at the gate
        # (process_vm_writev, Template.start) and make it read-only before the guest's
        # first instruction (loader.c: start); no guest runs in the template
        spec.maps = [(r.start, r.end - r.start,
                      r.prot | (HUGE if r.start == self.heap_start and not template else 0)
                      | (PROT_W if r.start == MANIFEST_PAGE and template else 0))
                     for r in self.regions]
        spec.as_limit = sum(r.end - r.start for r in self.regions) + AS_SLACK
        spec.copies = [(s.vaddr, s.data) for s in p.segments if s.data]
        spec.copies += [(TRAP_PAGE, trap.STUB),
                        (MANIFEST_POINTER, MANIFEST_PAGE.to_bytes(4, 'little'))]
        if template:
            spec.prefaults = self.written_ahead()
        return spec

    def written_ahead(self) -> list[tuple[int, int]]:
        """What a template's child copies before its gate (loader.c: prefault), as
        (address, size) ranges: the stack's top page, which the run's initial stack
        is written into, and of each writable segment the page where its file bytes
        end and its zeros begin (a static program's C library keeps its state there:
        musl hello writes that one page of its data).  Each was a copy-on-write fault
        on the run's path, the worker's write or the guest's (~3-10 us on a VM); the
        segment's other pages are copied as the guest writes them (one copied ahead
        for nothing is a page per child: its start was measured to write none)."""
        return [(STACK_TOP - PAGE, PAGE)] + [
            (page_down(s.vaddr + len(s.data) - 1), PAGE)
            for s in self.program.segments if s.writable and s.data]

    def run_spec(self, channels: list[Channel], argv: list[bytes], envp: list[bytes],
                 seed: int, timeout: float, repeats: bool = True) -> Spec:
        """This run's bytes (user manifest, initial stack) and limits: what a
        template's child is given (:meth:`Template.start`).  ``repeats``: runs with
        the same arguments may follow (not a batch's node: its object's ``LOCAL_*``
        variables are its own), whose initial stack is kept (:func:`_stack`)."""
        p = self.program
        sp, stack = _stack(p, argv, envp, seed) if repeats else \
            initial_stack(p, argv, envp, at_random(seed))
        try:
            manifest = trap.user_manifest(self.arena.start, self.arena.end - self.arena.start,
                                          channels)
        except ValueError as e:
            raise SetupError('fault', str(e)) from None
        spec = Spec(entry=p.entry, sp=sp, cpu_seconds=math.ceil(timeout) + 1)
        spec.copies = [(MANIFEST_PAGE, manifest), (sp, stack)]
        return spec

    def spec(self, channels: list[Channel], argv: list[bytes], envp: list[bytes],
             seed: int, timeout: float) -> Spec:
        """Everything, for a loader spawned for this run alone."""
        spec, run = self.image_spec(), self.run_spec(channels, argv, envp, seed, timeout)
        spec.sp, spec.cpu_seconds = run.sp, run.cpu_seconds
        spec.copies += run.copies
        return spec

    def ticks(self) -> int:
        """The virtual counter the clock and ``rdtsc`` read: mediated calls and
        ``rdtsc`` reads so far, TICK_NS each."""
        return TICK_NS * (self.syscalls + (self.tracer.reads if self.tracer else 0))

    def ticker(self):
        """:meth:`ticks` for what the guest holds (its clock, its tracer), through a
        weak reference: ``guest.ticks`` itself made a reference cycle per run, and a
        worker's cyclic GC ran every ~25 runs to free them."""
        guest = weakref.ref(self)
        return lambda: guest().ticks()


_LAYOUTS: collections.OrderedDict = collections.OrderedDict()
LAYOUTS = 16        # programs whose layout is kept for spawned runs (:func:`_layout`)


def _layout(program: Program, memory: int) -> Guest:
    """A Guest never run, whose layout (a function of the program's bytes and the
    memory limit) the spawned runs of the same take, as a template's do: made once
    (~10 us), not per cold run.  SetupError, as Guest, when the memory is too small."""
    key = (program.sha256, memory)
    layout = _LAYOUTS.pop(key, None) or Guest(program, memory)
    if len(_LAYOUTS) >= LAYOUTS:
        _LAYOUTS.popitem(last=False)
    _LAYOUTS[key] = layout
    return layout


_STACKS: collections.OrderedDict = collections.OrderedDict()
STACKS, STACK_KEPT = 16, 4 * PAGE   # initial stacks kept (a worker's runs repeat them), bytes


def _stack(program: Program, argv: list[bytes], envp: list[bytes],
           seed: int) -> tuple[int, bytes]:
    """The initial stack pointer and stack (a function of these alone: the same bytes
    for every run of a program with the same arguments and seed), kept by all four.
    A batch's node does not come here (``Guest.run_spec``): each its own name and
    object's variables, its stack would never be used again, and a chunk of 16 nodes
    evicted every stack kept."""
    key = (program.sha256, tuple(argv), tuple(envp), seed)
    got = _STACKS.pop(key, None)
    if got is None:
        got = initial_stack(program, argv, envp, at_random(seed))
        if len(got[1]) > STACK_KEPT:
            return got
        if len(_STACKS) >= STACKS:
            _STACKS.popitem(last=False)
    _STACKS[key] = got
    return got


def _prot(flags: int) -> int:
    return ((PROT_R if flags & PF_R else 0) | (PROT_W if flags & PF_W else 0)
            | (PROT_X if flags & PF_X else 0))


def _spawn(spec: Spec, memory: int | None = None) -> tuple[int, socket.socket]:
    """Start the loader (``loader.spawn``): in this process's shared namespaces
    (``namespaces.py``) where the spec asks for namespaces and the host has them."""
    held = namespaces.shared() if spec.namespaces == OWN else None
    return spawn(spec, held or (), memory)


class _Child:
    """A template's child waiting at the gate: filter installed, listener passed."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd: int | None = None
        self.listener: int | None = None
        self.gate = 0                   # the notification id of its close (the gate)
        self.sp_at = 0                  # where the loader reads the initial stack pointer
        self.tracer: Tracer | None = None   # seized when taken in (``Template(tsc=True)``)

    def trace(self, ticks: Callable[[], int]) -> Tracer:
        """The tracer of the run it starts (``ticks``: that guest's counter): the one
        that seized it ahead of the run, or one that seizes it now."""
        tracer, self.tracer = self.tracer, None
        if tracer is None:
            return Tracer(self.pid, ticks)
        tracer.ticks = ticks
        return tracer

    def close(self) -> None:
        if self.listener is not None:
            os.close(self.listener)
        _reap(self.pid, self.pidfd, self.tracer)


def _writes(spec: Spec, sp_at: int) -> list[tuple[int, bytes]]:
    """What a template's child is written for its run: ``spec``'s copies (the user
    manifest, then the initial stack) and the stack pointer at ``sp_at``, where its
    loader reads it.  A child started at its entry reads it from the stack's last
    8 bytes (loader.c: SP_SLOT), just above the initial stack, whose strings end 16
    bytes below the top (``initial_stack``): the stack and its pointer are one write
    (the bytes between are the never-run stack's zeros), a ``pwrite`` less a run."""
    sp = spec.sp.to_bytes(8, 'little')
    addr, data = spec.copies[-1]
    gap = sp_at - (addr + len(data))
    if gap < 0 and addr < sp_at + len(sp):
        raise OSError(errno.EINVAL, f'a copy into the guest at {addr:#x} reaches the slot of '
                                    f'its stack pointer ({sp_at:#x})')
    if sp_at == SP_SLOT and 0 <= gap <= SP_GAP:
        return [*spec.copies[:-1], (addr, data + bytes(gap) + sp)]
    return [*spec.copies, (sp_at, sp)]


class CannotFork(OSError):
    """The template could not fork a child asked for (its own line, loader.c serve:
    the host's process or memory limit): that run fails, the host's fault; no child
    was made, none left unnamed."""


class Template:
    """A fork server for one program at one memory size (the pool's warm native starts).

    The loader maps the validated program once and then forks a child per
    run from that state: no guest instruction has ever run in the template,
    and it never sees a run's bytes, so a child is as fresh as a spawned
    loader -- the same mappings with the same bytes, nothing of an earlier
    run -- while the program is copied and the namespaces joined once.
    :meth:`prefork` forks the next child ahead of its run (the pool calls it
    after replying): the child sets its limits, installs the filter, passes
    its listener and waits at the gate; the worker takes it in when it is
    idle (:meth:`idle`).  The nodes of a batch follow one another at once:
    :meth:`take` asks for the next nodes' children (a few in one message) as it
    hands out this one's, and takes each in when its node starts.
    :meth:`start` gives a child its run: writes the run's initial stack and
    user manifest into it, its stack pointer, its CPU limit, and lets it
    through the gate.  The children are the supervisor's (``CLONE_PARENT``):
    it waits for them and they die with it; the template and an unused child
    die with it too, or when :meth:`close` kills them.  One caller at a time.
    """

    def __init__(self, program: Program, memory: int, timeout: float = 10.0,
                 spec: Spec | None = None, tsc: bool = False) -> None:
        """``spec``: a template spec of this program's other than its image's (a
        start-up snapshot's, ``snapshot.py``); ``tsc``: its runs are traced
        (``tsc.py``): each child is seized as it is taken in, ahead of its run."""
        self.tsc = tsc
        layout = Guest(program, memory)         # SetupError if the memory is too small
        self.image_size, self._layout = layout.image_size, layout
        self.program, self.memory = program, memory
        self._guest: Guest | None = None        # the next run's, never used (see guest())
        self.timeout = timeout
        self.pid, self.sock = _spawn(spec or layout.image_spec(template=True))
        self.pidfd: int | None = None
        self._ready: collections.deque[_Child] = collections.deque()   # taken in, in order
        self._forking = 0               # children asked for, not taken in yet
        self._lost = 0          # children asked for whose answer did not come in time
        self._spare = 0         # of those on their way, the ones to kill as they come (trim)
        # ended runs, not killed yet (pid, pidfd, listener, tracer)
        self._dead: list[tuple[int, int, int | None, Tracer | None]] = []
        self._dying: list[tuple[int, int, Tracer | None]] = []  # killed, not reaped yet
        self._killed = 0        # of them, those the last reap() killed (the newest)
        self._unnamed = False   # a child was asked for whose message never came
        _LIVE.add(self)
        try:
            self.pidfd = os.pidfd_open(self.pid)
            self.sock.settimeout(timeout)
            # a child's hello comes on this socket: the kernel says who sent it
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            if self._reply() != 0:
                raise OSError(errno.EPROTO, 'the template did not start')
            # from now on no call on it waits unasked (a timed socket polls before
            # each send and receive): :meth:`_hello` waits where it must
            self.sock.setblocking(False)
        except BaseException:
            self.close()
            raise

    def _reply(self) -> int:
        data = b''
        while len(data) < 8:
            more = self.sock.recv(8 - len(data))
            if not more:
                raise OSError(errno.EPIPE, 'the template is gone')
            data += more
        if data == b'loader: ':         # its error line (loader.c: fail)
            raise OSError(errno.EPROTO, (data + self.sock.recv(256)).decode(errors='replace')
                          .strip())
        return int.from_bytes(data, 'little', signed=True)

    def fork(self, want: int = 1) -> None:
        """Ask the template for children until ``want`` are taken in or on their
        way, without waiting for them (:meth:`prefork` takes them in): one message,
        a byte per child (loader.c: serve)."""
        short = want - len(self._ready) - self._forking
        if short <= 0:
            return
        if self._lost:
            raise OSError(errno.EPIPE, 'the template is being replaced')
        # the caller holds the guest's faulting flags (a batch: fastcall.c hold): so
        # does the template while it forks (loader.c carry_as)
        # a short send (a full socket buffer) asked for fewer: those are on their way
        self._forking += self.sock.send((b'H' if _fastcall.held() else b'F') * short)

    def prefork(self) -> None:
        """After a reply: ask for the child the next run starts in (it forks and sets
        itself up while the worker goes on: :meth:`tend` or :meth:`take` takes it
        in), kill the runs ended since, build the next run's ``Guest``."""
        self.fork()
        self.reap()
        if self._guest is None:
            self._guest = Guest(self.program, self.memory, self._layout)

    def idle(self) -> None:
        """Take in the children asked for and reap the runs', waiting for both."""
        while self._forking:
            self._take_in()
        self.reap(wait=True)

    def trim(self) -> None:
        """A batch's request ended: the children asked for its runs that did not
        take them (not started: its budget; failed before; resumed from a snapshot)
        would wait unused, two descriptors each in the worker; one is kept for the
        next run, the others killed now or as they come in (:meth:`_take_in`)."""
        while len(self._ready) > 1:
            self._ready.pop().close()
        self._spare = max(len(self._ready) + self._forking - 1, 0)

    def _take_in(self) -> None:
        """The next child asked for, taken in, or killed if it is a spare (:meth:`trim`)."""
        child = self._collect()
        if self._spare:
            self._spare -= 1
            child.close()
        else:
            self._ready.append(child)

    def waiting(self) -> list[int]:
        """The descriptors the rest of :meth:`idle` waits for, to wait on with others
        (the worker's socket: a request comes first): the template's socket while
        children are on their way, the pidfd of each killed child not reaped."""
        fds = [pidfd for _, pidfd, _ in self._dying]
        if self._forking:
            fds.append(self.sock.fileno())
        return fds

    def tend(self, fd: int) -> None:
        """``fd`` of :meth:`waiting` is ready: take the child in, or reap the one
        that ended (a pidfd is readable once its process is a zombie)."""
        if fd == self.sock.fileno():
            self._take_in()
            return
        for i, (_pid, pidfd, tracer) in enumerate(self._dying):
            if pidfd == fd:
                if _reaped(pidfd, tracer, wait=True):
                    del self._dying[i]
                    os.close(pidfd)
                return

    def _collect(self) -> _Child:
        """The child :meth:`fork` asked for, once it waits at the gate.  It passes
        its listener on the template's socket, one message whose sender's pid the
        kernel adds (``SO_PASSCRED``; no process can claim another's): one message
        instead of the template's reply and the child's on a socket of its own."""
        self._forking -= 1
        # a budget of seconds: the coarse clock (no system call under a hold, fastcall.c)
        deadline = _fastcall.coarse() + self.timeout
        try:
            pid, listener, hello = self._hello()
        except TimeoutError:    # its answer may still come, and name it: this template
            self._lost += 1     # forks no more (replaced), close() waits for the answer
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            raise
        except CannotFork:      # its own line: this child was never made
            raise
        except OSError:         # the template is gone: a child it forked, unnamed
            self._unnamed = True
            raise
        child = _Child(pid)
        child.listener = listener
        try:
            if listener is None:    # its error line: it exits (reaped by close)
                raise OSError(errno.EPROTO, hello.decode(errors='replace').strip())
            child.sp_at = int.from_bytes(hello[1:9], 'little')
            child.pidfd, child.gate = _fastcall.gate(pid, listener,
                                                     deadline - _fastcall.coarse())
            if self.tsc:    # waits at the gate: seized before its first instruction
                child.tracer = Tracer(pid, _no_ticks)
        except BaseException:
            child.close()
            raise
        return child

    def _hello(self) -> tuple[int, int | None, bytes]:
        """The next message on the template's socket: (its sender's pid, the
        listener passed with it, its bytes); a line (no listener) is an error, the
        template's own (OSError) or a child's (returned, that child to reap).
        TimeoutError if none comes within the template's timeout."""
        # one C call: the message, its sender and its descriptor (no clock read)
        pid, passed, msg = _fastcall.hello(self.sock.fileno(), self.timeout)
        listener = None if passed < 0 else passed
        if not msg:
            if listener is not None:
                os.close(listener)
            raise OSError(errno.EPIPE, 'the template is gone')
        if listener is None:
            self.sock.settimeout(self.timeout)      # the rest of its line
            try:
                while not msg.endswith(b'\n'):
                    more = self.sock.recv(256)
                    if not more:
                        break
                    msg += more
            finally:
                self.sock.setblocking(False)
            line = msg.decode(errors='replace').strip()
            if pid == self.pid and 'cannot fork' in line:     # the one line it serves
                raise CannotFork(errno.EAGAIN, f'the host cannot fork the run\'s process now '
                                 f'({line}): its process or memory limit, not the program')
            if pid in (0, self.pid):
                raise OSError(errno.EPROTO, line)
        elif pid <= 0 or pid == self.pid:
            os.close(listener)
            raise OSError(errno.EPROTO, 'a listener from no child of the template')
        return pid, listener, msg

    def guest(self) -> Guest:
        """A new Guest for the next run: built by :meth:`prefork`, off the request path."""
        guest, self._guest = self._guest, None
        return guest or Guest(self.program, self.memory, self._layout)

    def take(self, ahead: int = 0) -> _Child:
        """The child the next run starts in (forked now if none was asked for);
        ``ahead``: the runs of this template that follow this one at once (a batch's
        next nodes of its program and memory: ``worker._following``): once
        no child is left taken in or on its way, the children of the next of them (at
        most :data:`AHEAD`) are asked for now, in one message, to fork and set
        themselves up while this one runs: one wake-up of the template per that many
        nodes, not per node, and none is left over at the batch's end."""
        self._spare = 0         # a run again: those on their way are its and the next's
        if not self._ready:
            self.fork()
            self._ready.append(self._collect())
        child = self._ready.popleft()
        if ahead and not self._ready and not self._forking:
            # a template that died fails the next prefork or take, not this run
            with contextlib.suppress(OSError):
                self.fork(min(ahead, AHEAD))
        return child

    @staticmethod
    def start(child: _Child, spec: Spec) -> None:
        """Give ``child`` its run (``spec``: a run spec): OSError if it is gone.  One
        ``process_vm_writev``: the user manifest's region is writable until the gate
        (:meth:`Guest.image_spec`), read-only before the guest's first instruction
        (loader.c: start); no ``/proc/PID/mem`` of the child is opened for it (~7 us of the
        worker's: the kernel makes the /proc entries of each new pid)."""
        _fastcall.start(child.pid, _writes(spec, child.sp_at), spec.cpu_seconds,
                        spec.cpu_seconds + 1)

    def reap_later(self, pid: int, pidfd: int, listener: int | None = None,
                   tracer: Tracer | None = None) -> None:
        """A child whose run ended in a call it is still blocked in (its outcome is
        known): :meth:`reap` kills it after the reply, not before.  A traced one
        (``tracer``) is reaped by its tracer's thread, which waits for it anyway:
        this process waits for it only if that thread could not."""
        self._dead.append((pid, pidfd, listener, tracer))

    def reap(self, wait: bool = False) -> None:
        """Kill the children whose runs ended, and reap those killed before the
        previous call that are gone by now (a look, never a wait: a batch's next
        node, or a waiting request, is not put behind a process dying), or with
        ``wait`` every killed one, waiting for it.  The children the previous call
        killed are not looked at: a batch's node later, most were still dying (a
        ``waitid`` per node for nothing).  The worker reaps the rest when their
        pidfds say they are gone (:meth:`waiting`, :meth:`tend`): none is left a
        zombie while the worker waits for work."""
        dying = self._dying
        last = 0 if wait else min(self._killed, len(dying))
        self._dying = dying[len(dying) - last:]
        for pid, pidfd, tracer in dying[:len(dying) - last]:
            if wait:
                _wait(pid, pidfd, tracer)
            elif _reaped(pidfd, tracer):
                os.close(pidfd)
            else:
                self._dying.append((pid, pidfd, tracer))
        for pid, pidfd, listener, tracer in self._dead:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            if listener is not None:    # killed, it resumes no call: closed before, it would
                os.close(listener)
            if wait:
                _wait(pid, pidfd, tracer)
            else:
                self._dying.append((pid, pidfd, tracer))
        self._killed = 0 if wait else len(self._dead)
        self._dead = []

    def alive(self) -> bool:
        """Whether the template runs: a look at its exit that reaps nothing (and reads
        no clock, as a select would: a batch's nodes carry the guest's flags)."""
        if self.pidfd is None:
            return False
        try:
            return os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def ready(self) -> bool:
        """Whether the next run's child waits at its gate, taken in: that run starts
        in it whatever became of the template since (the child is the worker's)."""
        return bool(self._ready)

    def descriptors(self) -> int:
        """Descriptors this template holds in the worker (its socket and pidfd, each
        child taken in's pidfd and listener, as many for each on its way, the
        ended runs not reaped yet): the pool's worker bounds their sum over the
        templates it keeps."""
        held = (self.sock.fileno() >= 0) + (self.pidfd is not None) + 2 * self._forking
        for child in self._ready:
            held += 1 + (child.listener is not None)
        return held + len(self._dying) + sum(1 + (listener is not None)
                                             for _, _, listener, _ in self._dead)

    def close(self) -> None:
        """Kill and reap the template, its unused children and the runs' children."""
        self.reap(wait=True)
        strays = self._unnamed      # a child asked for may be left unnamed
        while self._forking:        # collected to be killed: else stray children
            try:
                self._ready.append(self._collect())
            except CannotFork:      # no child to kill
                continue
            except OSError:
                strays = True
                break
        while self._ready:
            self._ready.popleft().close()
        # killed: nothing but those children can answer now (none, once the socket ends)
        for _ in range(self._lost + self._forking):
            try:
                pid, listener, _hello = self._hello()
            except CannotFork:
                continue
            except OSError:
                strays = True
                continue
            stray = _Child(pid)
            stray.listener = listener
            stray.close()
        self.sock.close()
        if self.pidfd is not None:
            _reap(self.pid, self.pidfd)
            self.pidfd = None
        elif self.pid:
            _reap(self.pid, None)
        self.pid = 0
        _LIVE.discard(self)
        if strays:
            _reap_strays()

    def pids(self) -> set[int]:
        """The processes of this template the worker knows: itself, the children
        taken in, the ended runs' children not reaped yet."""
        known = {pid for pid, *_ in (*self._dead, *self._dying)}
        known.update(child.pid for child in self._ready)
        return known | {self.pid}


_LIVE: weakref.WeakSet[Template] = weakref.WeakSet()     # templates not closed
PF_EXITING = 0x4            # /proc/PID/stat flags: the process is in its exit
STRAY_WAIT = 5.0            # seconds an exiting stray has to become a zombie


def _reap_strays() -> None:
    """Reap this process's zombie loaders that no open template knows: children of
    a template that died before their message came (the kernel names a child's pid
    in its message alone).  The template's socket ends once every process holding
    it is gone, and a child holds it until after its message, so when a message
    never came its child is a zombie by then, whose pid only the kernel lists."""
    known = set().union(*(t.pids() for t in list(_LIVE)))
    name = loader_path().name[:15]          # a process's comm: at most 15 bytes
    for pid in _children():
        stat = _stat(pid)
        if stat is None:
            continue
        comm, fields = stat
        # a stray is a zombie, or exiting still (the socket ends as its files are
        # closed, before it is a zombie); a live loader may be another template's
        # child on its way, not ours to touch
        if comm != name or pid in known or not (fields[0] == 'Z'
                                                or int(fields[6]) & PF_EXITING):
            continue
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            pidfd = os.pidfd_open(pid)
            try:
                select.select([pidfd], [], [], STRAY_WAIT)
            finally:
                os.close(pidfd)
            os.waitpid(pid, os.WNOHANG)


def _proc_children() -> bool:
    """Whether the kernel lists a thread's children (CONFIG_PROC_CHILDREN)."""
    try:
        with open(f'/proc/self/task/{threading.get_native_id()}/children'):
            return True
    except FileNotFoundError:
        return False


def _children() -> list[int]:
    """This process's children (zombies included): its threads' lists where the kernel
    keeps them, else every process whose parent (``/proc/PID/stat``) it is -- a walk
    of all of them, for the rare template that died before its child's message."""
    kids = []
    if _proc_children():
        for task in os.listdir('/proc/self/task'):
            with contextlib.suppress(OSError):      # a thread that ended
                with open(f'/proc/self/task/{task}/children') as f:
                    kids += [int(pid) for pid in f.read().split()]
        return kids
    me = os.getpid()
    for entry in os.listdir('/proc'):
        stat = _stat(int(entry)) if entry.isdigit() else None
        if stat is not None and int(stat[1][1]) == me:
            kids.append(int(entry))
    return kids


def _stat(pid: int) -> tuple[str, list[str]] | None:
    """``pid``'s command name and its ``/proc/PID/stat`` fields after it (state, ppid,
    ...), or None when it is gone."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            comm, _, rest = f.read().partition('(')[2].rpartition(')')
    except OSError:
        return None
    return comm, rest.split()


def _wait(pid: int, pidfd: int, tracer: Tracer | None = None) -> None:
    """Reap ``pid`` (killed), waiting for it (for its ``tracer``, which reaps it), and
    close its pidfd."""
    if tracer is None or tracer.status() is None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    os.close(pidfd)


def _reaped(pidfd: int, tracer: Tracer | None = None, wait: bool = False) -> bool:
    """Reap the process of ``pidfd`` if it is gone (a zombie): whether it is now.
    A traced one is its ``tracer``'s to reap (two waits could reap it twice, the second
    a process that took its pid): whether it did, ``wait``: waiting for that thread
    (the process is gone: it returns at once)."""
    if tracer is not None:
        if not wait and not tracer.done():
            return False
        if tracer.status() is not None:
            return True
    try:
        return os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG) is not None
    except ChildProcessError:       # reaped already
        return True


def _failure(what: str) -> str:
    """A run's message when its loader failed (the host's trouble, not the program's):
    ETOOMANYREFS said in words (loader.c: prepare)."""
    if '(errno 109)' in what:
        what += (': this user has too many descriptors in flight on this host; '
                 'the host is busy, retry')
    return f'native engine: {what}'


def _listener(sock: socket.socket, deadline: float) -> tuple[int, bytes] | str:
    """The guest's notification listener and the loader's hello, or its error line."""
    sock.settimeout(max(0.0, deadline - time.monotonic()))
    try:
        msg, anc, _flags, _addr = sock.recvmsg(256, socket.CMSG_SPACE(4),
                                               socket.MSG_CMSG_CLOEXEC)
    except (TimeoutError, OSError) as e:
        return f'no answer from the loader: {e}'
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and len(data) >= 4:
            return int.from_bytes(data[:4], 'little'), msg
    text = msg.decode(errors='replace')
    while msg and not text.endswith('\n'):
        try:
            msg = sock.recv(256)
        except OSError:
            break
        text += msg.decode(errors='replace')
    return text.strip() or 'the loader exited before starting the guest'


class _Supervisor:
    """Serves one guest's notifications until it exits, is stopped or times out."""

    def __init__(self, guest: Guest, pidfd: int, listener: int, deadline: float,
                 synced: bool = False) -> None:
        """``synced``: :func:`_sync_wake` was called on ``listener`` already."""
        self.guest, self.pidfd, self.listener, self.deadline = guest, pidfd, listener, deadline
        if not synced:
            _sync_wake(listener)
        self.notif = bytearray(seccomp.NOTIF.size)
        self.resp = bytearray(seccomp.RESP.size)
        self.stopped: str | None = None     # 'timeout' or 'stop' when we killed it
        self.kill_later = False     # an outcome leaves it blocked in its call: killed later

    def serve(self, gate: int | None = None) -> None:
        """``gate``: the id of a template child's waiting close, let through now."""
        poll = None
        if gate is None:
            poll = self._poll()
            self._bootstrap(poll)
        left_to = self._serve_fast(gate) if self.stopped is None else None
        if left_to is None:
            return
        poll = poll or self._poll()
        listener, pidfd, monotonic = self.listener, self.pidfd, time.monotonic
        if left_to == 'exiting':
            poll.unregister(listener)
        while self.stopped is None:     # without the C loop: a few us more per call
            left = self.deadline - monotonic()
            if left <= 0:
                self._kill('timeout')
                break
            events = 0
            for fd, ev in poll.poll(left * 1000):
                if fd == pidfd:
                    return              # it exited: no call of it is pending any more
                events = ev
            if events & select.POLLIN and self._receive():
                answer = self._answer()
                if answer is not None:
                    self._send(*answer)
            elif events:                # POLLHUP: it is exiting; wait for the pidfd alone
                poll.unregister(listener)

    def _poll(self) -> select.poll:
        """A poll of the listener and the pidfd (the C loop has its own)."""
        poll = select.poll()
        poll.register(self.listener, select.POLLIN)
        poll.register(self.pidfd, select.POLLIN)
        return poll

    def _serve_fast(self, gate: int | None) -> str | None:
        """The C loop (``fastcall.c``): it lets ``gate`` (if not None) through with its
        first wait, answers the constant calls, ``ioctl`` and plain channel reads and
        writes, ends the run at ``exit`` (:meth:`_exit`: no call into Python per call)
        and hands every other call to :meth:`_answer`.  None when the guest
        exited or the run is over; what the Python loop is left to do otherwise:
        ``'all'`` (no C loop here) or ``'exiting'`` (the listener hung up: wait for
        the pidfd)."""
        table = self.guest.mem.table()
        if not FAST_PATH or table is None:
            if gate is not None:
                self._send(gate, 0, 0, seccomp.USER_NOTIF_FLAG_CONTINUE)
            return 'all'
        ctx = (self.guest, *table, OpenFile, Channel, FdBacking, FileBacking, TailBacking,
               _constants(self.guest))
        try:
            got = _fastcall.serve(self.listener, self.pidfd, self.deadline, self.notif, ctx,
                                  self._answer, gate)
        except _fastcall.HostIOError as e:  # gathered writes failed on the host (ZeroVM: EIO)
            self.guest.outcome = host_io_failure(e.call, e)
            self._end()
            return None
        if got == _fastcall.EXIT_CALL:
            self._exit()
        elif got == _fastcall.DEADLINE:
            self._kill('timeout')
        return 'exiting' if got == _fastcall.HUNGUP else None

    def _receive(self) -> bool:
        self.notif[:] = _NOTIF_ZERO     # the kernel wants it zeroed
        try:
            fcntl.ioctl(self.listener, seccomp.IOCTL_NOTIF_RECV, self.notif, True)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EINTR):
                return False            # the guest died between poll and receive
            raise
        return True

    def _send(self, notif_id: int, val: int, error: int = 0, flags: int = 0) -> None:
        seccomp.RESP.pack_into(self.resp, 0, notif_id, val, error, flags)
        try:
            fcntl.ioctl(self.listener, seccomp.IOCTL_NOTIF_SEND, self.resp, True)
        except OSError as e:
            if e.errno != errno.ENOENT:     # ENOENT: it died (killed) while we answered
                raise

    def _bootstrap(self, poll: select.poll) -> None:
        """The loader's close of its copy of the listener: the one call let through,
        once the tracer (if any) is attached."""
        left = self.deadline - time.monotonic()
        ready = dict(poll.poll(max(0.0, left) * 1000))
        if not ready:
            self._kill('timeout')
            return
        nr = None
        if ready.get(self.listener, 0) & select.POLLIN and self._receive():
            notif_id, _pid, _flags, nr, *_ = seccomp.NOTIF.unpack(self.notif)
        if nr != seccomp.NR_CLOSE:
            self.guest.outcome = Stop('killed', 'native engine: the loader did not start '
                                                'the guest', host_failure=True)
            self._kill('stop')
            return
        tracer = self.guest.tracer
        if tracer is not None and not tracer.attached():      # before its first instruction
            self.guest.outcome = Stop('killed', f'native engine: {tracer.error}',
                                      host_failure=tracer.host_failure)
            self._kill('stop')
            return
        self._send(notif_id, 0, 0, seccomp.USER_NOTIF_FLAG_CONTINUE)

    def _answer(self) -> tuple[int, int, int, int] | None:
        """The personality's answer to the call in ``self.notif``: what to send (its
        id, value, error, flags), or None when the run is over (it is not answered)."""
        g = self.guest
        notif_id, _pid, _flags, nr, _arch, ip, *args = seccomp.NOTIF.unpack(self.notif)
        entry = DISPATCH.get(nr)
        flags = 0
        try:
            if nr == trap.TRAP_NR and args[0] in FAULT_SIGNALS:
                raise _fault(g, *args[:3])      # the kernel delivered a fault (loader.c)
            if VSYSCALL <= ip < VSYSCALL + PAGE:
                raise Stop('fault', f'{MEMORY_FAULTS["fetch", False]} at {ip:#x} (rip {ip:#x})',
                           exit_state=halting(signal.SIGSEGV, ip))
            g.syscalls += 1
            if entry is None:
                count_unknown(g.unknown, nr)
                ret = -errno.ENOSYS
            else:
                ret = entry[1](g, *args)
                if ret == 0 and seccomp.may_continue(nr, args):
                    flags = seccomp.USER_NOTIF_FLAG_CONTINUE    # checked: the kernel does it
            if ret >= 0:
                g.mem.flush(ret)
            else:
                g.mem.discard()
        except SysError as e:
            ret = -e.errno
        except GuestFault:
            ret = -errno.EFAULT
        except Stop as s:
            g.outcome = s.with_traceback(None)
        except Cut as cut:      # a probe's first channel access: its state, then its end
            g.mem.discard()
            g.recorder.take(g, ip, cut)
            g.outcome = Stop('killed', 'native engine: a start-up snapshot probe')
        except OSError as e:    # the host side of a channel failed (ZeroVM: EIO)
            g.outcome = host_io_failure(entry[0], e)
        except Exception as e:  # a sandbox bug ends the run, never the worker
            g.outcome = Stop('killed', f'internal error in {syscall_name(nr)}: {e!r}')
        if g.outcome is not None:
            self._end()
            return None
        if -4096 < ret < 0:
            return notif_id, 0, ret, 0
        return notif_id, 0 if flags else ret, 0, flags

    def _exit(self) -> None:
        """The guest's exit or exit_group in ``self.notif``, which the C loop counted and
        left unanswered: the run ends as the personality ends it (``proc.sys_exit``)."""
        try:
            sys_exit(self.guest, *seccomp.NOTIF.unpack(self.notif)[6:])
        except Stop as s:
            self.guest.outcome = s.with_traceback(None)
        self._end()

    def _end(self) -> None:
        """The run is over (``guest.outcome``); its last call stays unanswered."""
        self.guest.mem.discard()
        if self.kill_later:
            self.stopped = 'stop'       # unanswered, it runs no instruction until killed
        else:
            self._kill('stop')

    def _kill(self, why: str) -> None:
        self.stopped = why
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _fault(guest: Guest, sig: int, info: int, context: int) -> Stop:
    """The run's end for a fault signal the kernel delivered to the trap stub: its kind,
    address and rip read from the signal frame, in the emulator's words (a frame that
    cannot be read: the signal's)."""
    try:
        (addr,) = _SI_ADDR.unpack(guest.mem.read(info, _SI_ADDR.size))
        rip, err, trapno = _MCONTEXT.unpack(guest.mem.read(context + MCONTEXT_RIP,
                                                           _MCONTEXT.size))
        below_stack = MANIFEST_PAGE <= addr < STACK_TOP - STACK_SIZE    # as the emulator
        if trapno == PAGE_FAULT and err & PF_WRITE and below_stack:
            what = STACK_OVERFLOW.format(addr=addr, mib=STACK_SIZE >> 20)
        elif trapno == PAGE_FAULT:
            access = 'fetch' if err & PF_FETCH else 'write' if err & PF_WRITE else 'read'
            # a PROT_NONE page is not present to the CPU; the emulator calls it protected
            mapped = bool(err & PF_PRESENT) or guest.mem.region_at(addr) is not None
            what = f'{MEMORY_FAULTS[access, mapped]} at {addr:#x}'
        elif sig == signal.SIGILL:
            what = INVALID_INSTRUCTION
        elif sig == signal.SIGSEGV and guest.mem.read(rip, 1)[0] == HLT:
            rip += 1                            # the emulator stops after it
            return Stop('fault', HLT_STOP.format(rip=rip), exit_state=halting(sig, rip))
        else:
            what = TRAPS.get(trapno, _SIGNAL_TEXT[sig])
    except GuestFault:
        return Stop('fault', _SIGNAL_TEXT[sig], exit_state=f'Signal {sig} from untrusted code')
    return Stop('fault', f'{what} (rip {rip:#x})', exit_state=halting(sig, rip),
                invalid_at=rip if what == INVALID_INSTRUCTION else None)


_CONSTANTS: dict[int, tuple[tuple[int, int], ...]] = {}


def _constants(guest: Guest) -> tuple[tuple[int, int], ...]:
    """The C loop's table of ``proc.CONSTANT``'s answers: those calls read nothing but
    the process's fixed identity (its uid), so the table is made once per identity."""
    got = _CONSTANTS.get(guest.uid)
    if got is None:
        got = _CONSTANTS[guest.uid] = tuple((nr, _constant(guest, nr)) for nr in CONSTANT)
    return got


def _sync_wake(listener: int) -> None:
    """Ask the kernel to wake the supervisor on the guest's CPU (a faster round trip)."""
    try:
        fcntl.ioctl(listener, seccomp.IOCTL_NOTIF_SET_FLAGS, seccomp.USER_NOTIF_FD_SYNC_WAKE_UP)
    except OSError:
        pass                        # before Linux 6.6: the same, a little slower


def _constant(guest: Guest, nr: int) -> int:
    """The personality's answer to a call of ``proc.CONSTANT`` in this run."""
    try:
        return DISPATCH[nr][1](guest, 0, 0, 0, 0, 0, 0)
    except SysError as e:
        return -e.errno


def _no_ticks() -> int:
    """A seized child's counter until its run gives it one: it runs no instruction."""
    return 0


def _reap(pid: int, pidfd: int | None, tracer: Tracer | None = None) -> int:
    """Kill the guest (if still running) and reap it: its wait status."""
    try:
        if pidfd is None:
            os.kill(pid, signal.SIGKILL)
        else:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        status = tracer.status() if tracer is not None else None
        return os.waitpid(pid, 0)[1] if status is None else status
    finally:
        if pidfd is not None:
            os.close(pidfd)


def run(program: Program, channels: list[Channel], argv: list[str], env: dict[str, str],
        memory: int, timeout: float, seed: int = 0, epoch: int = 0, image=None, *,
        tsc: bool = False, template: Template | None = None, snapshots=None,
        start=None, ahead: int = 0, probe: bool = True) -> Report:
    """Run ``program`` (already validated) natively; raises SetupError like the emulator.

    ``tsc``: the program contains ``rdtsc``, answered from the virtual counter
    (the guest is traced: ``tsc.py``).  ``template``: fork the guest from this
    template of the program (same memory) instead of spawning a loader.
    ``snapshots``: the program's start-up snapshots (``snapshot.Snapshots``):
    the run resumes from the one of its prefix, recorded first if there is
    none; ``start``: how this run starts instead of at the entry point (a
    ``snapshot.Snapshot``, or the ``snapshot.Probe`` that records one).
    ``ahead``: the runs of ``template`` that follow at once (:meth:`Template.take`).
    ``probe``: ``snapshots`` may record this run's prefix (``snapshot.Snapshots.begin``).
    """
    # the C clock (time.monotonic's, and perf_counter's on Linux): no rdtsc while a
    # batch's nodes carry the guest's flags (worker.py: _serve_many, fastcall.c: hold)
    began = _fastcall.monotonic()
    guest = Guest(program, memory, _layout(program, memory)) if template is None \
        else template.guest()
    guest.channels, guest.fds = attach(channels)
    guest.trap_channels = standard_order(list(guest.channels.values()))
    guest.image = image
    guest.rng = SeededStream(seed)
    ticks = guest.ticker()
    guest.clock = VirtualClock(epoch, ticks)
    argv_b = [a.encode() for a in argv]
    envp_b = [f'{k}={v}'.encode() for k, v in env.items()]
    if snapshots is not None:
        start, probed = snapshots.begin(guest, channels, argv, env, seed, epoch, image, timeout,
                                        probe)
        if probed is not None:
            return probed
    if start is not None:
        start.setup(guest)
        template = start.template
    if template is None:
        spec = guest.spec(guest.trap_channels, argv_b, envp_b, seed, timeout)
    else:       # a run not probed is a batch's node: its stack, its own, is not kept
        spec = guest.run_spec(guest.trap_channels, argv_b, envp_b, seed, timeout, probe)
    if start is not None:
        start.adjust(spec)
    guest.deadline = began + timeout     # a probe before this run counts
    child = None
    if template is None:
        # its stack and data shared with us (a recorded start's memory is the probe's)
        memory = guest.mem.share(spec) if start is None else None
        try:
            pid, sock = _spawn(spec, memory)
        except BaseException:
            guest.mem.close()
            raise
        try:
            pidfd = os.pidfd_open(pid)
        except BaseException:
            _reap(pid, None)
            sock.close()
            guest.mem.close()
            raise
    else:
        try:
            child = template.take(ahead)
        except OSError as e:    # the template or its child failed: no guest ran
            what = e.strerror or str(e)
            if not what.startswith('loader: ') and not isinstance(e, CannotFork):
                what = f'the template failed: {what}'   # (those two say what failed)
            return Report('killed', None, _failure(what), host_failure=True)
        pid, sock, pidfd = child.pid, None, child.pidfd
    if child is None:
        guest.mem.attach(pid)
    else:
        guest.mem.attach(pid, lazy=True)    # its /proc/PID/mem opened if a call needs it
    stopped = failure = None
    host = True         # a failure before the guest ran: the loader's, the template's
    listener, gate = (None, None) if child is None else (child.listener, child.gate)
    try:
        if start is not None:
            guest.tracer = start.tracer(pid, ticks, tsc, child)
        elif tsc:       # attached before the first instruction
            guest.tracer = Tracer(pid, ticks) if child is None else child.trace(ticks)
        if child is None:
            got = _listener(sock, guest.deadline)
        elif guest.tracer is not None and not guest.tracer.attached():
            got, host = guest.tracer.error, guest.tracer.host_failure
        else:
            try:
                template.start(child, spec)
                got = (listener, b'')
            except OSError as e:
                got = f"the template's child is gone: {e}"
        if isinstance(got, tuple):
            listener = got[0]
            sup = _Supervisor(guest, pidfd, listener, guest.deadline, synced=child is not None)
            sup.kill_later = template is not None
            sup.serve(gate)
            stopped = sup.stopped
        else:
            failure = _failure(got)
    except Exception as e:      # a supervisor bug ends the run, never the caller
        failure, host = f'native engine: internal error: {e!r}', False
    finally:
        if sock is not None:
            sock.close()
        guest.mem.close()
        if template is not None and guest.outcome is not None:
            # its status would change nothing
            template.reap_later(pid, pidfd, listener, guest.tracer)
            status = 0
        else:
            if listener is not None:
                os.close(listener)
            status = _reap(pid, pidfd, guest.tracer)
    wall = _fastcall.monotonic() - began     # one read: the classification's and the report's
    tracer = guest.tracer
    if (failure is None and stopped is None and guest.outcome is None and tracer is not None
            and tracer.error):
        # the tracer failed mid-run and killed the guest: not its CPU limit (SIGKILL)
        failure, host = f'native engine: {tracer.error}', tracer.host_failure
    if failure is not None:
        report = Report('killed', None, failure, host_failure=host)
    else:
        report = _classify(guest, status, stopped, timeout, wall)
    report = with_etags(report, guest.channels, lambda: _fastcall.monotonic() > guest.deadline,
                        timeout)
    counters = {alias: ch.counters.copy() for alias, ch in sorted(guest.channels.items())}
    report.accounting = Accounting(
        fuel=0, syscalls=guest.syscalls, unknown_syscalls=dict(guest.unknown), channels=counters,
        peak_memory=guest.image_size + guest.arena.peak,
        wall_time=round(wall, 6), start=guest.start)
    return report


def _classify(guest: Guest, status: int, stopped: str | None, timeout: float,
              elapsed: float) -> Report:
    """The report of a guest that ended (``status``) without an outcome of its
    personality; ``elapsed``: seconds since its run began."""
    exit_state, invalid_at = '', None
    if guest.outcome is not None:
        o = guest.outcome
        kind, retcode, message, exit_state = o.status, o.retcode, o.message, o.exit_state
        invalid_at = o.invalid_at
    elif stopped == 'timeout':
        kind, retcode, message = 'timeout', None, f'wall-clock timeout of {timeout:g} s'
    elif os.WIFEXITED(status):
        kind, retcode, message = 'ok', os.WEXITSTATUS(status), ''
    else:
        sig = os.WTERMSIG(status)
        cpu = math.ceil(timeout) + 1            # RLIMIT_CPU: SIGXCPU, a second later SIGKILL
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and elapsed >= cpu):
            kind, retcode = 'timeout', None
            message = f'CPU time limit of {cpu} s'
        elif sig == signal.SIGKILL:
            # neither its CPU limit (no time to reach it) nor ours (``stopped``): its
            # host's (the OOM killer, an operator): the program may run elsewhere
            return Report('killed', None, 'native engine: the guest was killed (SIGKILL) '
                                          'by its host, not by its limits', host_failure=True)
        else:
            kind, retcode = 'fault', None
            message = _SIGNAL_TEXT.get(sig, f'killed by signal {sig}')
            exit_state = f'Signal {sig} from untrusted code'
    kind, message = blame_limits(kind, retcode, message, guest.arena, guest.channels,
                                 guest.memory_limit)
    host = guest.outcome is not None and guest.outcome.host_failure
    return Report(kind, retcode, message, exit_state=exit_state, host_failure=host,
                  invalid_at=invalid_at)

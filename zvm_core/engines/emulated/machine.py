"""The emulated engine: one validated program in a unicorn instance.

A :class:`Machine` maps the segments with their exact ELF permissions, one
heap arena and a 16 MiB stack (``zvm_core.engines.emulated.memory``), puts
the C guard on it (``guard``: instruction boundaries, fuel, the fixed CPU,
the system-call gate), runs it to ``exit_group`` or to the first thing that
stops it, and returns a :class:`~zvm_core.report.Report`.  A machine can run
again after a reset (the pool's template instances) and record start-up
snapshots (``snapshot``).  Nothing the guest does can raise into the caller:
faults, budgets and host-side errors all end as a status.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import threading
import time
import weakref
from collections.abc import Iterable, Mapping

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_HOOK_MEM_INVALID, UC_MODE_64, Uc, UcError
from unicorn import unicorn_const as ucc
from unicorn.x86_const import (
    UC_X86_REG_CS,
    UC_X86_REG_EFLAGS,
    UC_X86_REG_FPCW,
    UC_X86_REG_FPTAG,
    UC_X86_REG_FS_BASE,
    UC_X86_REG_GS_BASE,
    UC_X86_REG_MXCSR,
    UC_X86_REG_RIP,
    UC_X86_REG_RSP,
    UC_X86_REG_SS,
)

from zvm_core import prefix
from zvm_core.channels import Channel, standard_order, with_etags
from zvm_core.elf import PF_R, PF_W, PF_X, Program
from zvm_core.engines.emulated import guard as zguard
from zvm_core.engines.emulated import jail, snapshot
from zvm_core.engines.emulated.memory import CLEAR_MAX, AddressSpace, Region, _host_mapping
from zvm_core.executor import (
    HLT_STOP,
    INVALID_INSTRUCTION,
    MEMORY_ETAG,
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
from zvm_core.limits import Limits
from zvm_core.memory import (
    MANIFEST_PAGE,
    PAGE,
    PROT_R,
    PROT_W,
    PROT_X,
    STACK_SIZE,
    STACK_TOP,
    Arena,
    GuestFault,
    page_down,
    page_up,
)
from zvm_core.report import Accounting, Report
from zvm_core.syscalls import HANDLERS, Stop, SysError, count_unknown, syscall_name
from zvm_core.syscalls.errors import host_io_failure
from zvm_core.syscalls.fs import Image
from zvm_core.syscalls.io import OpenFile
from zvm_core.syscalls.random import SeededStream, at_random
from zvm_core.syscalls.time import VirtualClock
from zvm_core.validator import Policy, Verdict
from zvm_core.zerovm import trap

TCG_BUFFER = 32 << 20
_SEGMENT_BASES = {'fs': UC_X86_REG_FS_BASE, 'gs': UC_X86_REG_GS_BASE}

def _fetched(address: int, rip: int) -> int:
    """The address of a failed fetch as the CPU names it: unicorn reports it cut to
    52 bits (0xffffffffff600400, the vsyscall page, as 0xfffffff600400)."""
    return rip if rip & ((1 << 52) - 1) == address else address


_FAULTS = {
    ucc.UC_MEM_READ_UNMAPPED: MEMORY_FAULTS['read', False],
    ucc.UC_MEM_WRITE_UNMAPPED: MEMORY_FAULTS['write', False],
    ucc.UC_MEM_FETCH_UNMAPPED: MEMORY_FAULTS['fetch', False],
    ucc.UC_MEM_READ_PROT: MEMORY_FAULTS['read', True],
    ucc.UC_MEM_WRITE_PROT: MEMORY_FAULTS['write', True],
    ucc.UC_MEM_FETCH_PROT: MEMORY_FAULTS['fetch', True],
}
# the signal a native run would die of, for ZeroVM's "Signal N from untrusted code"
SIGSEGV, SIGILL, SIGFPE, SIGTRAP, SIGBUS = 11, 4, 8, 5, 7
_SIGNALS = {0: SIGFPE, 1: SIGTRAP, 3: SIGTRAP, 6: SIGILL, 16: SIGFPE, 17: SIGBUS, 19: SIGFPE}
_UC_ERRORS = {ucc.UC_ERR_INSN_INVALID: INVALID_INSTRUCTION,
              ucc.UC_ERR_EXCEPTION: 'unhandled CPU exception'}
# What Linux gives a new x86-64 process where unicorn's reset state differs
# (every other register, the FS/GS bases and the x87/SSE registers are zero in
# both): IF set, the x87 control word of finit (64-bit precision, round to
# nearest, exceptions masked) with every x87 register empty, MXCSR's power-on
# value (exceptions masked, round to nearest) and the user code and stack
# selectors.  tests/programs/initstate.c prints them natively and sandboxed.
INITIAL_REGISTERS = ((UC_X86_REG_EFLAGS, 0x202), (UC_X86_REG_FPCW, 0x037F),
                     (UC_X86_REG_FPTAG, 0xFFFF), (UC_X86_REG_MXCSR, 0x1F80),
                     (UC_X86_REG_CS, 0x33), (UC_X86_REG_SS, 0x2B))

def _weak(method):
    """A hook callback that does not keep its machine alive (unicorn holds hooks)."""
    ref = weakref.WeakMethod(method)
    return lambda *args: ref()(*args)


def _uc_prot(flags: int) -> int:
    return ((PROT_R if flags & PF_R else 0) | (PROT_W if flags & PF_W else 0)
            | (PROT_X if flags & PF_X else 0))


class Machine:
    """One guest: address space, guard, channels, and the syscall dispatcher.

    The attributes used by ``zvm_core.syscalls`` handlers and the ZeroVM trap
    (``mem``, ``arena``, ``fds``, ``channels``, ``trap_channels``, ``image``,
    ``jail``, ``clock``, ``rng``, ``uc``, ``uid``, ``memory_limit``,
    ``deadline``) are this object's public surface for them.  Every machine
    has the trap page at 0x10000 and the user manifest below the stack.
    """

    uid = UID

    def __init__(self, program: Program, verdict: Verdict, limits: Limits,
                 policy: Policy = Policy(), *, snapshots: bool = False) -> None:
        self.program, self.limits = program, limits
        self.memory_limit = limits.memory
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        self.uc.ctl_set_tcg_buffer_size(TCG_BUFFER)
        self.mem = AddressSpace(self.uc)
        image = 0
        self.pristine: list[tuple[Region, bytes]] = []   # data segments, as loaded
        # data segments as runs of non-zero pages (copied back) and of zero pages (freed)
        self._loaded: list[tuple[Region, list[tuple[int, bytes]], list[tuple[int, int]]]] = []
        for seg in program.segments:
            start, end = page_down(seg.vaddr), page_up(seg.vaddr + seg.memsz)
            region = self.mem.map(start, end - start, _uc_prot(seg.flags))
            off = seg.vaddr - start
            region.view[off:off + len(seg.data)] = seg.data
            if not seg.flags & PF_X:
                self.pristine.append((region, bytes(region.view)))
                data = snapshot.changed_runs(region, start, end, None)
                ends = [start, *(a for addr, d in data for a in (addr, addr + len(d))), end]
                self._loaded.append((region, data, [(lo, hi) for lo, hi in zip(
                    ends[::2], ends[1::2], strict=True) if lo < hi]))
            image += end - start
        self.image_size = image
        heap_start, heap_size = heap_bounds(program, limits.memory)
        self.mem.map(heap_start, heap_size, PROT_R | PROT_W)
        self.arena = Arena(self.mem, heap_start, heap_start + heap_size)
        self.stack = self.mem.map(STACK_TOP - STACK_SIZE, STACK_SIZE, PROT_R | PROT_W)
        limit = heap_start + heap_size
        self._bitmap, bitmap_addr = _host_mapping(page_up((limit + 7) // 8))
        for base, bits in verdict.boundaries:
            self._bitmap[base // 8:base // 8 + len(bits)] = bits
        self._user_manifest = jail.install(self.mem, self._bitmap)
        self._user_manifest_size = 0
        self.guard = zguard.Guard(self.uc, bitmap_addr, limit, self._on_syscall)
        for seg in program.segments:
            if seg.flags & PF_X:
                self.guard.watch(self.uc, seg.vaddr, seg.data, self._bitmap, lazy=True)
        self.jail = jail.Jail(self.uc, self.mem, self.arena, self._bitmap, policy, self.guard)
        self.args = self.guard.args
        self.uc.hook_add(UC_HOOK_MEM_INVALID, _weak(self._on_mem_invalid))
        self.uc.hook_add(UC_HOOK_INTR, _weak(self._on_interrupt))
        self.channels: dict[str, Channel] = {}
        self.trap_channels: list[Channel] = []      # ZeroVM order: trap descriptors
        self.fds: dict[int, OpenFile] = {}
        self.image: Image | None = None
        self.recorder: snapshot.Recorder | None = None
        self.snapshots = snapshot.Snapshots() if snapshots else None
        for reg, value in INITIAL_REGISTERS:
            self.uc.reg_write(reg, value)
        self._context = self.uc.context_save()
        self.runs = 0
        self.dirty = False
        self.start = 'entry'        # or 'recorded' / 'resumed' (see .snapshot)

    # -- hooks -----------------------------------------------------------------

    def _on_syscall(self, nr: int, a1: int, a2: int, a3: int, a4: int, a5: int,
                    a6: int) -> int | None:
        """A ``syscall`` (called by the C guard, ``_guard.c``: call_syscall): the
        result for RAX, or None to stop the run."""
        nr = (nr + (1 << 31) & 0xFFFFFFFF) - (1 << 31)     # an int, as Linux reads it
        entry = DISPATCH.get(nr)
        try:
            if entry is None:
                count_unknown(self.unknown, nr)
                return -errno.ENOSYS
            return entry[1](self, a1, a2, a3, a4, a5, a6)
        except SysError as e:
            return -e.errno
        except GuestFault as e:
            if self.recorder is not None and _in_manifest(e.args[0] if e.args else 0):
                self.manifest_read = True   # unreadable only while recording: start over
                return None
            return -errno.EFAULT
        except snapshot.Cut:
            self._cut()
            return self._on_syscall(*self.args)
        except Stop as s:
            self.outcome = s.with_traceback(None)    # frames would keep this machine alive
            return None
        except OSError as e:    # the host side of a channel failed (ZeroVM: EIO)
            self.outcome = host_io_failure(entry[0], e)
            return None
        except Exception as e:  # a sandbox bug must end the run, never escape into C
            self.outcome = Stop('killed', f'internal error in {syscall_name(nr)}: {e!r}')
            return None

    def _on_mem_invalid(self, uc, access, address, size, value, _data) -> bool:
        if self.recorder is not None and access == ucc.UC_MEM_READ_PROT and \
                _in_manifest(address):
            self.manifest_read = True       # not a fault: run() starts over unrecorded
            return False
        if access in (ucc.UC_MEM_FETCH_UNMAPPED, ucc.UC_MEM_FETCH_PROT):
            address = _fetched(address, self._rip())
        if access == ucc.UC_MEM_WRITE_PROT and _in_manifest(address):
            self.fault = STACK_OVERFLOW.format(addr=address, mib=STACK_SIZE >> 20)
        else:
            self.fault = f'{_FAULTS.get(access, "invalid memory access")} at {address:#x}'
        self.signal = SIGSEGV
        return False

    def _on_interrupt(self, uc, intno, _data) -> None:
        self.fault = TRAPS.get(intno, f'CPU exception {intno}')
        self.signal = _SIGNALS.get(intno, SIGSEGV)
        uc.emu_stop()

    def segment_base(self, which: str) -> int:
        """The FS or GS base (``which`` is 'fs' or 'gs'; arch_prctl)."""
        return self.uc.reg_read(_SEGMENT_BASES[which])

    def set_segment_base(self, which: str, addr: int) -> None:
        self.guard.reg_write(_SEGMENT_BASES[which], addr)

    # -- set-up ----------------------------------------------------------------

    def _initial_stack(self, argv: list[bytes], envp: list[bytes], at_random: bytes) -> int:
        sp, data = initial_stack(self.program, argv, envp, at_random)
        off = sp - self.stack.start         # (MAX_ARGS_SIZE: well inside the stack)
        self.stack.view[off:off + len(data)] = data
        return sp

    def _attach(self, channels: Iterable[Channel]) -> None:
        self.channels, self.fds = attach(channels)

    # -- run -------------------------------------------------------------------

    def reset(self) -> None:
        """Make a used machine indistinguishable from a fresh one.

        Code pages were never writable, so they and their translated blocks
        are kept; everything the guest could have changed is put back:
        registers, data segments, the whole heap arena, stack, protections.
        The pages of data segments that load as zeros (bss) and the arena
        are given back to the host, the others are copied again: a reset
        leaves held only the pages that hold the program's initial data, and
        at most a few zeroed pages that every run touches (kept, not faulted
        in again: the top STACK_KEPT bytes of the stack, where the initial stack
        is, and the pages runs touched of each run of bss pages of at most
        ``memory.CLEAR_MAX`` bytes).
        """
        self.uc.context_restore(self._context)
        self.mem.reset_protections()
        self.jail.reset()
        for region, pages, zeros in self._loaded:
            for addr, data in pages:
                off = addr - region.start
                region.view[off:off + len(data)] = data
            for lo, hi in zeros:
                if hi - lo <= CLEAR_MAX:
                    self.mem.clear(lo, hi)
                else:
                    self.mem.zero(lo, hi)
        self.arena.reset()
        kept = self.stack.end - STACK_KEPT
        self.mem.zero(self.stack.start, kept)
        self.stack.view[kept - self.stack.start:] = ZERO_STACK
        self.channels, self.fds = {}, {}
        self.dirty = False

    def held(self) -> int:
        """Host memory a reset machine holds: its data pages and the stack's kept top
        (``reset`` gave the arena and the rest of the stack back, whatever the run
        touched)."""
        return STACK_KEPT + self.mem.resident(skip=(self.mem.region_at(self.arena.start),
                                                    self.stack))

    def idle(self) -> None:
        """Nothing to do between requests (a native template reaps its children)."""

    def trim(self) -> None:
        """Nothing asked for ahead (a native template's children: ``Warm.trim``)."""

    def waiting(self) -> list[int]:
        """Nothing to wait for between requests (``Warm.waiting``)."""
        return []

    def descriptors(self) -> int:
        """Host descriptors held between runs: none (the pool bounds native ones)."""
        return 0

    def run(self, channels: Iterable[Channel], argv: list[str], env: Mapping[str, str],
            seed: int = 0, epoch: int = 0, limits: Limits | None = None, *,
            image: Image | None = None, memory_etag: bool = False, probe: bool = True
            ) -> Report:
        """Run the program once; a machine can run again (it is reset first).

        ``limits`` may change fuel and timeout per run; memory is the machine's.
        ``image`` is the read-only file tree that paths other than channels
        open; ``memory_etag`` adds ZeroVM's digest of readable memory at the
        end as the etag ``/dev/memory``.  ``probe=False``: a run whose key has no
        snapshot does not record one (a batch's node: its ``LOCAL_*`` variables
        make its key come once, and its copy would only evict the kept ones).
        """
        start = time.perf_counter()
        channels = list(channels)
        if limits is not None:
            self.limits = limits if limits.memory == self.memory_limit else Limits(
                self.memory_limit, limits.fuel, limits.timeout)
        if self.dirty:
            self.reset()
        self.runs += 1
        if self.runs == 2:      # a template: its cold start is over (Guard.settle)
            self.guard.settle(self.uc)
        self.dirty = True
        self.outcome: Stop | None = None
        self.fault: str | None = None
        self.signal: int | None = None
        # an empty Counter without Counter.__init__ (~1 us: update() in Python)
        self.unknown: collections.Counter = collections.Counter.__new__(collections.Counter)
        self.rng = SeededStream(seed)
        state = self.guard.state
        self.clock = VirtualClock(epoch, lambda: state.used)
        self._attach(channels)
        self.image = image
        self.trap_channels = standard_order(list(self.channels.values()))
        try:
            data = trap.user_manifest(self.arena.start, self.arena.end - self.arena.start,
                                      self.trap_channels)
        except ValueError as e:
            raise SetupError('fault', str(e)) from None
        view = self._user_manifest.view
        view[:len(data)] = data
        if self._user_manifest_size > len(data):       # what a longer one left behind
            view[len(data):self._user_manifest_size] = bytes(self._user_manifest_size - len(data))
        self._user_manifest_size = len(data)
        argv_b = [a.encode() for a in argv]
        envp_b = [f'{k}={v}'.encode() for k, v in env.items()]
        sp = self._initial_stack(argv_b, envp_b, at_random(seed))
        self.guard.reg_write(UC_X86_REG_RSP, sp)
        self.guard.arm(self.limits.fuel)
        self.timed_out = self.manifest_read = False
        self.deadline = time.monotonic() + self.limits.timeout
        error = None
        WATCHDOG.arm(self)
        try:
            begin = self._begin((list(argv), dict(env), seed, epoch), probe)
            while begin is not None and not self.timed_out:
                self.uc.emu_start(begin, 0)
                begin = self.guard.resume(self.uc)      # where it hooked code about to run
        except UcError as e:
            error = e
        finally:
            WATCHDOG.disarm(self)
            if self.recorder is not None:       # it ended before reaching a channel
                self._stop_recording()
        if self.manifest_read:
            self.snapshots = None
            return self.run(channels, argv, env, seed, epoch, limits, image=image,
                            memory_etag=memory_etag, probe=probe)
        wall = time.perf_counter() - start
        report = self._classify(error)
        report.accounting = self._accounting(wall)
        report = with_etags(report, self.channels, lambda: time.monotonic() > self.deadline,
                            self.limits.timeout)
        if memory_etag:
            report.etags[MEMORY_ETAG] = self._memory_digest()
        return report

    def _begin(self, inputs: tuple, probe: bool) -> int | None:
        """Where the guest starts: its entry point (recording its prefix if this
        machine keeps snapshots and ``probe``) or, from a snapshot of this prefix,
        past the pending call (None when that call ended the run)."""
        self.start = 'entry'
        if self.snapshots is None or not probe and not self.snapshots.kept:
            return self.program.entry       # (no key: none to record, none to find)
        self._key = prefix.key(*inputs, self.fds)
        if self._key in self.snapshots.short:
            return self.program.entry
        snap = self.snapshots.find(self._key, self)
        if snap is None and not probe:
            return self.program.entry
        if snap is None:
            self.recorder = snapshot.Recorder()
            self.mem.protect(MANIFEST_PAGE, STACK_TOP - STACK_SIZE, 0)
            return self.program.entry
        if snap.fuel_used > self.limits.fuel:   # the budget ends inside the prefix
            return self.program.entry
        snap.restore(self)
        self.start = 'resumed'
        ret = self._on_syscall(*self.args)
        if ret is None:
            return None
        self.guard.state.ret = ret
        snapshot.resume_rax(self)
        return snap.resume_at

    def _stop_recording(self) -> snapshot.Recorder:
        recorder, self.recorder = self.recorder, None
        self.mem.protect(MANIFEST_PAGE, STACK_TOP - STACK_SIZE, PROT_R)
        return recorder

    def _cut(self) -> None:
        """The first channel access of a recording run: keep its state if worth it."""
        recorder = self._stop_recording()
        if self.guard.state.used >= snapshot.MIN_PREFIX:
            self.snapshots.keep(self._key, snapshot.capture(self, recorder))
            self.start = 'recorded'
        else:
            self.snapshots.too_short(self._key)

    def _memory_digest(self) -> str:
        """MD5 of every guest-readable byte in address order (ZeroVM's memory etag).

        The arena between the break and the lowest mapping was never handed
        out: its runs of zero pages are hashed as their length, not byte by
        byte, so the digest of a 4 GiB guest costs what its used memory costs;
        the pages there that hold data (the guest may write anywhere in its
        arena) are hashed as they are.
        """
        self.arena.settle()         # freed memory reads as zeros (the digest of old)
        h = hashlib.md5()
        gap_lo, gap_hi = page_up(self.arena.brk), self.arena.floor
        for region, start, end in self.mem.readable_runs():
            lo, hi = max(start, gap_lo), min(end, gap_hi)
            if lo >= hi:
                h.update(region.view[start - region.start:end - region.start])
                continue
            h.update(region.view[start - region.start:lo - region.start])
            self._digest_gap(h, region, lo, hi)
            h.update(region.view[hi - region.start:end - region.start])
        return h.hexdigest()

    def _digest_gap(self, h, region: Region, lo: int, hi: int) -> None:
        pos, zeros = lo, 0
        for start, end in self.mem.touched(region, lo, hi):
            zeros += start - pos
            for page in range(start, end, PAGE):
                data = region.view[page - region.start:page - region.start + PAGE]
                if data == ZERO_PAGE:
                    zeros += PAGE
                    continue
                if zeros:
                    h.update(f'<{zeros} zero bytes>'.encode())
                    zeros = 0
                h.update(data)
            pos = end
        zeros += hi - pos
        if zeros:
            h.update(f'<{zeros} zero bytes>'.encode())

    def ran_out(self) -> bool:
        """Whether the last run stopped at its fuel budget, neither ended nor failed:
        what ``auto``'s trial (``zvm_core.engines.TRIAL_FUEL``) starts over natively."""
        return self.outcome is None and self.guard.state.stop == zguard.STOP_FUEL

    def expire(self) -> None:
        """Called by the watchdog when the run passed its deadline."""
        self.timed_out = True
        self.uc.emu_stop()

    def _rip(self) -> int:
        return self.uc.reg_read(UC_X86_REG_RIP)

    def _classify(self, error: UcError | None) -> Report:
        st = self.guard.state
        exit_state, invalid_at = '', None
        if self.outcome is not None:
            o = self.outcome
            status, retcode, message, exit_state = o.status, o.retcode, o.message, o.exit_state
        elif st.stop == zguard.STOP_BOUNDARY:
            status, retcode = 'fault', None
            message = (f'execution reached {st.stop_addr:#x}, which is not an instruction '
                       'boundary the validator saw (hidden or unvalidated code)')
            exit_state = halting(SIGSEGV, st.stop_addr)
        elif st.stop == zguard.STOP_HOST:     # only what the dispatcher lets escape
            status, retcode = 'killed', None
            message = ('internal error: the system-call dispatcher raised (its traceback '
                       'is in the host\'s log)')
        elif st.stop == zguard.STOP_FUEL:
            status, retcode = 'fuel', None
            message = (f'fuel exhausted at {st.stop_addr:#x}: the budget of '
                       f'{self.limits.fuel} bytes of code executed is used up')
        elif self.timed_out:
            status, retcode = 'timeout', None
            message = f'wall-clock timeout of {self.limits.timeout:g} s at {self._rip():#x}'
        elif error is not None or self.fault:
            status, retcode = 'fault', None
            what, rip = self.fault or _UC_ERRORS.get(error.errno, str(error)), self._rip()
            message = f'{what} (rip {rip:#x})'
            invalid = error is not None and error.errno == ucc.UC_ERR_INSN_INVALID
            invalid_at = rip if what == INVALID_INSTRUCTION else None
            exit_state = halting(self.signal or (SIGILL if invalid else SIGSEGV), rip)
        else:
            status, retcode, rip = 'fault', None, self._rip()
            message = HLT_STOP.format(rip=rip)
            exit_state = halting(SIGSEGV, rip)
        status, message = blame_limits(status, retcode, message, self.arena, self.channels,
                                       self.limits.memory)
        host = self.outcome is not None and self.outcome.host_failure
        return Report(status, retcode, message, exit_state=exit_state, host_failure=host,
                      invalid_at=invalid_at)

    def _accounting(self, wall: float) -> Accounting:
        st = self.guard.state
        return Accounting(
            fuel=st.used, syscalls=st.syscalls, unknown_syscalls=dict(self.unknown),
            channels={a: c.counters.copy() for a, c in sorted(self.channels.items())},
            peak_memory=self.image_size + self.arena.peak, wall_time=round(wall, 6),
            start=self.start)

    def close(self) -> None:
        """Free the instance now, not whenever the cycle collector runs.

        The engine is closed first (its finalizer is idempotent), then the
        host memory it mapped; the C guard's callback is dropped with it.
        """
        uc, self.uc = self.uc, None
        close_engine = getattr(uc, '_Uc__finalizer', None)
        if close_engine is not None:
            close_engine()
        self.mem.close()
        self._bitmap.close()
        self.guard = self.args = self.clock = None


class Watchdog:
    """One thread per process that stops runs past their wall-clock deadline.

    unicorn's own ``emu_start(timeout=)`` starts and joins a thread per run
    (~0.1 ms each); this one serves every machine of the process.  The
    deadline is a safety net: a stop by time is not reproducible, which is
    why the report calls it ``timeout``, apart from ``fuel``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, Machine] = {}
        self._thread: threading.Thread | None = None
        self._wakes_at = float('inf')

    def arm(self, machine: Machine) -> None:
        with self._cond:
            self._armed[id(machine)] = machine
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name='zvm-watchdog',
                                                daemon=True)
                self._thread.start()
            if machine.deadline < self._wakes_at:     # else it wakes in time anyway
                self._cond.notify()

    def disarm(self, machine: Machine) -> None:
        with self._cond:
            self._armed.pop(id(machine), None)

    def _loop(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                late = [k for k, m in self._armed.items() if m.deadline <= now]
                for key in late:      # no local names: they would keep machines alive
                    self._armed.pop(key).expire()
                self._wakes_at = min((m.deadline for m in self._armed.values()),
                                     default=float('inf'))
                self._cond.wait(None if self._wakes_at == float('inf')
                                else self._wakes_at - now)


WATCHDOG = Watchdog()
DISPATCH = {**HANDLERS, **trap.HANDLERS}     # Linux calls and the ZeroVM trap's stub
ZERO_PAGE = bytes(PAGE)
STACK_KEPT = 2 * PAGE       # the stack's top, zeroed and kept by a reset (initial stack)
ZERO_STACK = bytes(STACK_KEPT)


def _in_manifest(address: int) -> bool:
    """In the pages of the user manifest (unreadable while a prefix is recorded)."""
    return MANIFEST_PAGE <= address < STACK_TOP - STACK_SIZE


__all__ = ['Machine', 'WATCHDOG']

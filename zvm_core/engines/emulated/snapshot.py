"""Start-up snapshots of the emulated engine: resume runs from the prefix they share.

An interpreter spends most of a short run starting up: CPython 3.11 runs
about 54 M of the 78 M bytes of code of ``python3 -S -c 'print(1)'`` before
it first touches a channel, and that work depends on nothing the job
brings.  Execution is deterministic, so it need not be repeated.

A run's *prefix*, its *key* and what it depends on are defined in
``zvm_core.prefix`` (shared with the native engine's snapshots).  A
machine made with ``snapshots=True`` records its prefix when it has no
snapshot for the key: every path it resolved in the images, with
what it found.  At the first channel access it copies its state (registers,
every page that differs from a fresh machine, anywhere in the heap arena,
protections, allocator, descriptors, signal actions and mask, fuel, clock,
random stream) and goes on.  A later run with the same key whose recorded
paths still resolve to identical nodes (same member of the same tar file,
same directory listings; none of them now a channel) starts from that copy
and carries on with the pending system call.

The guest cannot tell: fuel, the virtual clock, every byte it reads and
writes and its report are those of a full run (tests/sandbox/test_snapshot.py
runs both ways and compares).  The user manifest describes the channels, so
it is unreadable while recording; a guest that reads it, or has a system
call read it, before its first channel access (ZeroVM API programs do, at
once) is run again from the start, and its machine stops recording: it never
sees the fault.  Prefixes shorter than
:data:`MIN_PREFIX` bytes of code are not kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unicorn.x86_const import UC_X86_REG_RAX, UC_X86_REG_RCX

from zvm_core.engines.emulated.memory import Region
from zvm_core.memory import PAGE
from zvm_core.prefix import Cut, Personality, Recorder, Snapshots

MIN_PREFIX = 2_000_000          # bytes of code (~5 ms): less is not worth the copy
_CHUNK = 16 * PAGE
_ZERO = bytes(_CHUNK)

__all__ = ['Cut', 'Recorder', 'Snapshot', 'Snapshots', 'capture', 'changed_runs',
           'resume_rax']


def changed_runs(region: Region, lo: int, hi: int, base: bytes | None) -> list[tuple[int, bytes]]:
    """``(address, bytes)`` runs of pages in [lo, hi) that differ from ``base`` (zeros)."""
    view, start = region.view, region.start
    runs: list[tuple[int, bytes]] = []
    run_lo = None
    for chunk in range(lo, hi, _CHUNK):
        end = min(chunk + _CHUNK, hi)
        a, b = chunk - start, end - start
        if view[a:b] == (base[a:b] if base is not None else _ZERO[:b - a]):
            pages: range = range(0)
            if run_lo is not None:
                runs.append((run_lo, bytes(view[run_lo - start:a])))
                run_lo = None
        else:
            pages = range(chunk, end, PAGE)
        for page in pages:
            p, q = page - start, min(page + PAGE, end) - start
            same = view[p:q] == (base[p:q] if base is not None else _ZERO[:q - p])
            if same and run_lo is not None:
                runs.append((run_lo, bytes(view[run_lo - start:p])))
                run_lo = None
            elif not same and run_lo is None:
                run_lo = page
    if run_lo is not None:
        runs.append((run_lo, bytes(view[run_lo - start:hi - start])))
    return runs


@dataclass
class Snapshot:
    """A machine's state at its first channel access, and what that state depends on."""

    personality: Personality
    context: object                     # unicorn context (registers, flags, segment bases)
    resume_at: int                      # the instruction after the pending ``syscall`` (RCX)
    args: tuple[int, ...]               # the pending call's number and arguments
    pages: list[tuple[Region, int, bytes]]
    protections: dict[int, int]
    fuel_used: int
    syscalls: int
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = sum(len(data) for _, _, data in self.pages)

    def close(self) -> None:
        """Nothing to release: the pages are this object's."""

    def restore(self, machine) -> None:
        """Put the machine (fresh or reset, channels attached) in the recorded state."""
        uc = machine.uc
        uc.context_restore(self.context)
        for region, addr, data in self.pages:
            off = addr - region.start
            region.view[off:off + len(data)] = data
        for page, prot in self.protections.items():
            machine.mem.protect(page, page + PAGE, prot)
        self.personality.restore(machine)
        st = machine.guard.state
        st.used, st.syscalls = self.fuel_used, self.syscalls
        st.fuel -= self.fuel_used
        machine.args[:] = self.args


def capture(machine, recorder: Recorder) -> Snapshot:
    """The machine's state now, inside the syscall hook of its first channel access."""
    mem, arena, stack = machine.mem, machine.arena, machine.stack
    heap = mem.region_at(arena.start)
    areas = [(region, region.start, region.end, pristine)
             for region, pristine in machine.pristine]
    areas += [(heap, arena.start, arena.end, None), (stack, stack.start, stack.end, None)]
    pages = [(region, addr, data) for region, lo, hi, base in areas   # the whole arena:
             for start, end in mem.touched(region, lo, hi)              # the guest may write
             for addr, data in changed_runs(region, start, end, base)]  # outside allocations
    st, uc = machine.guard.state, machine.uc
    return Snapshot(
        personality=Personality.capture(machine, recorder),
        context=uc.context_save(), resume_at=uc.reg_read(UC_X86_REG_RCX),
        args=tuple(machine.args), pages=pages, protections=machine.mem.overrides(),
        fuel_used=st.used, syscalls=st.syscalls)


def resume_rax(machine) -> None:
    """Give the pending call's result to the guest (what the C guard does after a call)."""
    machine.uc.reg_write(UC_X86_REG_RAX, machine.guard.state.ret)

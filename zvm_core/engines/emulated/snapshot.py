"""Start-up snapshots: resume runs from the deterministic prefix they share.

An interpreter spends most of a short run starting up: CPython 3.11 runs
about 54 M of the 78 M bytes of code of ``python3 -S -c 'print(1)'`` before
it first touches a channel, and that work depends on nothing the job
brings.  Execution is deterministic, so it need not be repeated.

A run's *prefix* is everything it does before it first reaches a channel
(any call on a channel descriptor, a path that names a channel) or calls
the ZeroVM trap.  What a prefix computes is a function of the machine (the
program, its memory limit), the run's *key* (arguments, environment, seed,
epoch, which standard descriptors are open) and of the image files it
looked up.  A machine made with ``snapshots=True`` records its prefix when
it has no snapshot for the key: every path it resolved in the images, with
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

import collections
import copy
import errno
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from unicorn.x86_const import UC_X86_REG_RAX, UC_X86_REG_RIP

from zvm_core.engines.emulated.memory import Region
from zvm_core.memory import PAGE
from zvm_core.syscalls.errors import SysError
from zvm_core.syscalls.fs import Node
from zvm_core.syscalls.io import OpenFile, shape
from zvm_core.syscalls.proc import _signal_state as signal_state

MIN_PREFIX = 2_000_000          # bytes of code (~5 ms): less is not worth the copy
KEPT = 4                        # snapshots per machine, least recently used dropped
SHORT_KEPT = 256                # keys remembered as not worth recording
SYSCALL_SIZE = 2                # 0f 05
_CHUNK = 16 * PAGE
_ZERO = bytes(_CHUNK)


class Cut(Exception):
    """Raised by the syscall layer when a recording run first reaches a channel."""


def _signature(node) -> tuple:
    """What a guest can learn from an image node (its data: tar file identity + offset)."""
    head = (node.path, node.kind, node.perm, node.mtime, node.ino, node.size)
    if node.kind == stat.S_IFDIR:
        return head + tuple(node.listing())
    return head + (node.target, node.offset,
                   node.backing.identity() if node.backing is not None else None)


class Recorder:
    """What a recording run's prefix looked up and saw of channels, for
    :meth:`Snapshot.matches`."""

    def __init__(self) -> None:
        self.lookups: dict[str, tuple | int] = {}
        self.channels: dict[str, tuple] = {}

    def cut(self) -> None:
        raise Cut

    def described(self, alias: str, seen: tuple) -> None:
        self.channels.setdefault(alias, seen)

    def lookup(self, resolve: Callable[[str], object], name: str):
        try:
            node = resolve(name)
        except SysError as e:
            self.lookups.setdefault(name, -e.errno)
            raise
        self.lookups.setdefault(name, _signature(node))
        return node


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

    lookups: dict[str, tuple | int]
    channels: dict[str, tuple]          # alias -> its io.shape() as the prefix saw it
    context: object                     # unicorn context (registers, flags, segment bases)
    resume_at: int                      # the instruction after the pending ``syscall``
    args: tuple[int, ...]               # the pending call's number and arguments
    pages: list[tuple[Region, int, bytes]]
    protections: dict[int, int]
    arena: dict
    files: list[tuple[str, str, int, int, bool]]    # (kind, name, access, pos, append)
    fds: dict[int, int]                 # descriptor -> index in files (dup'd ones share)
    fuel_used: int
    syscalls: int
    slept: int
    rng: object
    unknown: collections.Counter
    signals: dict                       # actions and mask (zvm_core.syscalls.proc)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = sum(len(data) for _, _, data in self.pages)

    def matches(self, machine) -> bool:
        """True if the channels the prefix described look the same in this run and
        every path it resolved resolves the same way."""
        for alias, seen in self.channels.items():
            ch = machine.channels.get(alias)
            if ch is None or shape(machine, ch) != seen:
                return False
        image = machine.image
        for name, seen in self.lookups.items():
            if name in machine.channels:
                return False
            try:
                if image is None:
                    raise SysError(errno.ENOENT)
                now = _signature(image.lookup(name))
            except SysError as e:
                now = -e.errno
            if now != seen:
                return False
        return True

    def restore(self, machine) -> None:
        """Put the machine (fresh or reset, channels attached) in the recorded state."""
        uc = machine.uc
        uc.context_restore(self.context)
        for region, addr, data in self.pages:
            off = addr - region.start
            region.view[off:off + len(data)] = data
        for page, prot in self.protections.items():
            machine.mem.protect(page, page + PAGE, prot)
        vars(machine.arena).update(copy.deepcopy(self.arena))
        opened = []
        for kind, name, access, pos, append in self.files:
            target = machine.channels[name] if kind == 'channel' else machine.image.lookup(name)
            f = OpenFile(target, access, append)
            f.pos = pos
            opened.append(f)
        machine.fds = {fd: opened[i] for fd, i in self.fds.items()}
        st = machine.guard.state
        st.used, st.syscalls = self.fuel_used, self.syscalls
        st.fuel -= self.fuel_used
        machine.clock.slept = self.slept
        machine.rng = copy.copy(self.rng)
        machine.unknown = collections.Counter(self.unknown)
        signal_state(machine).update(copy.deepcopy(self.signals))
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
    files: list = []
    index: dict[int, int] = {}
    fds = {}
    for fd, f in sorted(machine.fds.items()):
        if id(f) not in index:
            index[id(f)] = len(files)
            node = isinstance(f.channel, Node)
            files.append(('node' if node else 'channel',
                          f.channel.path if node else f.channel.alias,
                          f.access, f.pos, f.append))
        fds[fd] = index[id(f)]
    st, uc = machine.guard.state, machine.uc
    return Snapshot(
        lookups=dict(recorder.lookups), channels=dict(recorder.channels),
        context=uc.context_save(), resume_at=uc.reg_read(UC_X86_REG_RIP) + SYSCALL_SIZE,
        args=tuple(machine.args), pages=pages, protections=machine.mem.overrides(),
        arena=copy.deepcopy({k: v for k, v in vars(arena).items() if k != 'space'}),
        files=files, fds=fds, fuel_used=st.used, syscalls=st.syscalls,
        slept=machine.clock.slept, rng=copy.copy(machine.rng),
        unknown=collections.Counter(machine.unknown),
        signals=copy.deepcopy({k: v for k, v in signal_state(machine).items() if k != 'run'}))


class Snapshots:
    """A machine's snapshots by key, least recently used first out, and the keys
    whose prefix was too short to keep (not recorded again: a C program that
    reads its input at once pays for recording only on its first run)."""

    def __init__(self) -> None:
        self._kept: collections.OrderedDict[bytes, Snapshot] = collections.OrderedDict()
        self.short: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def too_short(self, key: bytes) -> None:
        self.short[key] = None
        while len(self.short) > SHORT_KEPT:
            self.short.popitem(last=False)

    def find(self, key: bytes, machine) -> Snapshot | None:
        snap = self._kept.get(key)
        if snap is None or not snap.matches(machine):
            return None
        self._kept.move_to_end(key)
        return snap

    def keep(self, key: bytes, snap: Snapshot) -> None:
        self._kept[key] = snap
        self._kept.move_to_end(key)
        while len(self._kept) > KEPT:
            self._kept.popitem(last=False)

    @property
    def size(self) -> int:
        return sum(s.size for s in self._kept.values())


def resume_rax(machine) -> None:
    """Give the pending call's result to the guest (what the C guard does after a call)."""
    machine.uc.reg_write(UC_X86_REG_RAX, machine.guard.state.ret)

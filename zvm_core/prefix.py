"""Start-up snapshots, the part both engines share: what a prefix depends on.

An interpreter spends most of a short run starting up, and that work
depends on nothing the job brings.  A run's *prefix* is everything it does
before it first reaches a channel (any call on a channel descriptor, a path
that names a channel) or calls the ZeroVM trap; the personality raises
:class:`Cut` there while a :class:`Recorder` is attached.  What a prefix
computes is a function of the program and its memory limit, the run's
:func:`key` (arguments, environment, seed, epoch, which standard
descriptors are open), the image files it looked up and what metadata calls
told it of channels.  :class:`Personality` is the personality's half of the
state at the cut (heap bookkeeping, open files, clock, random stream,
signal state) and what it depends on; each engine adds the machine's half
(``zvm_core.engines.emulated.snapshot``, ``zvm_core.engines.native.snapshot``)
and keeps its snapshots in a :class:`Snapshots`.
"""

from __future__ import annotations

import collections
import copy
import stat
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from zvm_core.syscalls.errors import SysError
from zvm_core.syscalls.fs import Node, lookup
from zvm_core.syscalls.io import OpenFile, shape
from zvm_core.syscalls.proc import _run_state as run_state

KEPT = 4                        # snapshots per program, least recently used dropped
SHORT_KEPT = 256                # keys remembered as not worth recording


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
    :meth:`Personality.matches`."""

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


def key(argv: list[str], env: dict[str, str], seed: int, epoch: int, fds: dict) -> tuple:
    """A run's inputs that its prefix may read: the key its snapshot is kept under."""
    return (tuple(argv), tuple(env.items()), seed, epoch,
            tuple((fd, f.channel.alias, f.access) for fd, f in sorted(fds.items())))


@dataclass
class Personality:
    """The personality's state at the cut (``p`` is the engine's guest object:
    ``arena``, ``fds``, ``channels``, ``image``, ``clock``, ``rng``, ``unknown``)."""

    lookups: dict[str, tuple | int]
    channels: dict[str, tuple]          # alias -> its io.shape() as the prefix saw it
    arena: dict
    files: list[tuple[str, str, int, int, bool]]    # (kind, name, access, pos, append)
    fds: dict[int, int]                 # descriptor -> index in files (dup'd ones share)
    slept: int
    rng: object
    unknown: collections.Counter
    proc_state: dict                    # signal actions and mask, umask (zvm_core.syscalls.proc)
    # the file tree and channel names and kinds the lookups last matched (_tree)
    _matched: tuple | None = field(default=None, repr=False, compare=False)

    @classmethod
    def capture(cls, p, recorder: Recorder) -> Personality:
        files: list = []
        index: dict[int, int] = {}
        fds = {}
        for fd, f in sorted(p.fds.items()):
            if id(f) not in index:
                index[id(f)] = len(files)
                node = isinstance(f.channel, Node)
                files.append(('node' if node else 'channel',
                              f.channel.path if node else f.channel.alias,
                              f.access, f.pos, f.append))
            fds[fd] = index[id(f)]
        return cls(
            lookups=dict(recorder.lookups), channels=dict(recorder.channels),
            arena=copy.deepcopy({k: v for k, v in vars(p.arena).items() if k != 'space'}),
            files=files, fds=fds, slept=p.clock.slept, rng=p.rng.copy(),
            unknown=collections.Counter(p.unknown),
            proc_state=copy.deepcopy({k: v for k, v in run_state(p).items() if k != 'run'}))

    def matches(self, p) -> bool:
        """True if the channels the prefix described look the same in this run and
        every path it resolved resolves the same way."""
        for alias, seen in self.channels.items():
            ch = p.channels.get(alias)
            if ch is None or shape(p, ch) != seen:
                return False
        tree = _tree(p)
        if tree is not None and tree == self._matched:
            return True         # the same lookups in the same tree: the same answers
        for name, seen in self.lookups.items():
            if name in p.channels:
                return False
            try:
                now = _signature(lookup(p.image, p.channels, name))
            except SysError as e:
                now = -e.errno
            if now != seen:
                return False
        self._matched = tree
        return True

    def restore(self, p) -> None:
        """Put the guest's personality in the recorded state (channels attached).
        Every run gets containers of its own (a run changes them in place), their
        items shared: ints, tuples, bytes (``_fresh``), so no deep copy per run."""
        vars(p.arena).update({k: _fresh(v) for k, v in self.arena.items()})
        opened = []
        for kind, name, access, pos, append in self.files:
            target = p.channels[name] if kind == 'channel' else \
                lookup(p.image, p.channels, name)
            f = OpenFile(target, access, append)
            f.pos = pos
            opened.append(f)
        p.fds = {fd: opened[i] for fd, i in self.fds.items()}
        p.clock.slept = self.slept
        p.rng = self.rng.copy()
        p.unknown = collections.Counter(self.unknown)
        run_state(p).update({k: _fresh(v) for k, v in self.proc_state.items()})


def _fresh(value):
    """A copy of a list, set or dict of immutable items (the arena's and the process
    state's: addresses, ranges, sigaction bytes), ``value`` itself if immutable."""
    return value.copy() if isinstance(value, (list, set, dict)) else value


def _tree(p) -> tuple | None:
    """What every lookup of ``p`` is a function of: its image (a tree is not changed
    once mounted, and a pool keeps one per unchanged set of host files, ``fs.mounted``)
    and its channels' names and kinds (``fs.ChannelDir``); None if it has no image
    that can be named so (checked each time)."""
    if p.image is None:
        return None
    return (weakref.ref(p.image),
            tuple((alias, stat.S_IFMT(ch.st_mode())) for alias, ch in sorted(p.channels.items())))


class Snapshots:
    """One program's snapshots by key, least recently used first out (each has
    ``personality``, ``size`` and ``close()``), and the keys whose prefix was
    not worth keeping (not recorded again: a C program that reads its input at
    once pays for recording only on its first run)."""

    def __init__(self) -> None:
        self._kept: collections.OrderedDict[tuple, object] = collections.OrderedDict()
        self.short: collections.OrderedDict[tuple, None] = collections.OrderedDict()

    def too_short(self, key: tuple) -> None:
        self.short[key] = None
        while len(self.short) > SHORT_KEPT:
            self.short.popitem(last=False)

    @property
    def kept(self) -> int:
        """How many snapshots there are (none: no run can resume from one)."""
        return len(self._kept)

    def find(self, key: tuple, p):
        snap = self._kept.get(key)
        if snap is None or not snap.personality.matches(p):
            return None
        self._kept.move_to_end(key)
        return snap

    def keep(self, key: tuple, snap) -> None:
        old = self._kept.pop(key, None)
        if old is not None and old is not snap:
            old.close()
        self._kept[key] = snap
        while len(self._kept) > KEPT:
            self._kept.popitem(last=False)[1].close()

    def drop(self, key: tuple) -> None:
        snap = self._kept.pop(key, None)
        if snap is not None:
            snap.close()

    def close(self) -> None:
        while self._kept:
            self._kept.popitem()[1].close()

    @property
    def size(self) -> int:
        return sum(s.size for s in self._kept.values())

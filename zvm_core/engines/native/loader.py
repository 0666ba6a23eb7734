"""Building the trusted loader and the spec it reads.

The loader (``loader.c``) is compiled once per host with ``gcc`` into a
content-addressed cache (:func:`zvm_core.build.toolchain.build_static`), static,
without libc, linked at :data:`LOADER_BASE`.  Whoever can write the cache
directory can replace it: it must be private to the sandbox's user, like the
verdict cache.

The spec is one memfd the loader reads with ``pread``: a header, the
mappings, the copies (guest address, offset in the spec, length), the
protections (a start-up snapshot's pages whose protection ``mprotect`` changed),
the prefaults (ranges a snapshot template's child copies ahead of its run), the
seccomp filter, a snapshot's resume block (its registers: ``RESUME``),
then the bytes the copies take.  A template's spec is the program's
alone; its children get their run's bytes written into them by the supervisor.
"""

from __future__ import annotations

import fcntl
import functools
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

from zvm_core.build.toolchain import BuildError, build_static

LOADER_BASE = 0x7E0000000000        # far above the guest's 4 GiB
MAGIC = 0x35764E4D565A4E4E          # loader.c: MAGIC
SOURCE = Path(__file__).with_name('loader.c')
FLAGS = ('-O2', '-nostdlib', '-fno-pie', '-no-pie', '-fno-stack-protector', '-ffreestanding',
         '-fno-asynchronous-unwind-tables', '-fcf-protection=none', '-mcmodel=large',
         f'-Wl,-Ttext-segment={LOADER_BASE:#x}', '-Wl,-z,noexecstack', '-Wl,--build-id=none')
_HEADER = struct.Struct('<14Q')
# loader.c: struct resume, then the XSAVE (or FXSAVE) area of ``xsize`` bytes
RESUME = struct.Struct('<16Q6Q')
_TRIPLE = struct.Struct('<3Q')
_PAIR = struct.Struct('<2Q')
# the spec's namespaces (loader.c: NS_*): none, new ones, join those passed at NS_FD..,
# new ones held for the supervisor (namespaces.py)
OFF, OWN, JOIN, HOLD = 0, 1, 2, 3
NS_FD = 5
HUGE = 0x100        # loader.c MAP_HUGE_HINT: beside a map's protection, the heap arena
SHARED = 0x200      # loader.c MAP_SHARED_HINT: mapped from the memfd at MEM_FD (memory.py)
MEM_FD = 10


def cache_dir() -> Path:
    """The loader's directory, made if needed (BuildError naming ``ZVM_NATIVE_CACHE``:
    the bare errno did not say which setting to fix)."""
    named = os.environ.get('ZVM_NATIVE_CACHE')
    where = Path(named or Path.home() / '.cache' / 'zvm' / 'native')
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        what = f'ZVM_NATIVE_CACHE={where}' if named else f'{where} (ZVM_NATIVE_CACHE unset)'
        raise BuildError(f'{what}: cannot make the directory: {e.strerror}') from None
    return where


@functools.cache
def loader_path() -> Path:
    """The built loader (BuildError if gcc is missing or the build fails)."""
    return build_static(SOURCE, cache_dir(), cc='gcc', flags=FLAGS)


@dataclass
class Spec:
    """What the loader maps, copies and installs, and where the guest starts."""

    entry: int
    sp: int = 0
    as_limit: int = 0
    cpu_seconds: int = 0
    maps: list[tuple[int, int, int]] = field(default_factory=list)   # addr, size, prot|hints
    copies: list[tuple[int, bytes]] = field(default_factory=list)        # addr, data
    filter: bytes = b''
    namespaces: int = OWN       # OFF, or OWN: user/net/IPC/UTS/mount ones where the host allows
    template: bool = False      # a fork server: maps the program, then forks a child per run
    protects: list[tuple[int, int, int]] = field(default_factory=list)   # addr, size, prot
    resume: bytes = b''         # a snapshot's resume block (RESUME and its area), or none
    prefaults: list[tuple[int, int]] = field(default_factory=list)     # addr, size

    def encode(self, namespaces: int | None = None) -> bytes:
        """The spec as the loader reads it: the parts in this order (``namespaces``:
        instead of the spec's)."""
        head = (_HEADER.size + _TRIPLE.size * (len(self.maps) + len(self.copies)
                                               + len(self.protects))
                + _PAIR.size * len(self.prefaults))
        data_at = head + len(self.filter) + len(self.resume)
        table, blobs = [], []
        for addr, data in self.copies:
            table.append(_TRIPLE.pack(addr, data_at, len(data)))
            blobs.append(data)
            data_at += len(data)
        return b''.join([
            _HEADER.pack(MAGIC, self.entry, self.sp, self.as_limit, self.cpu_seconds,
                         os.getpid(), len(self.maps), len(self.copies), len(self.filter) // 8,
                         self.namespaces if namespaces is None else namespaces,
                         int(self.template), len(self.protects),
                         int(bool(self.resume)), len(self.prefaults)),
            *(_TRIPLE.pack(*m) for m in self.maps), *table,
            *(_TRIPLE.pack(*m) for m in self.protects),
            *(_PAIR.pack(*r) for r in self.prefaults), self.filter, self.resume, *blobs])

    def memfd(self, namespaces: int | None = None) -> int:
        """The spec in a new memfd (close-on-exec; a spawned loader reads it as fd 3)."""
        fd = os.memfd_create('zvm-native-spec', os.MFD_CLOEXEC)
        try:
            with os.fdopen(os.dup(fd), 'wb', closefd=True) as f:
                f.write(self.encode(namespaces))
        except BaseException:
            os.close(fd)
            raise
        return fd


def spawn(spec: Spec, join: tuple[int, ...] = (), memory: int | None = None
          ) -> tuple[int, socket.socket]:
    """Start the loader: spec on fd 3, its end of a socket pair on fd 4, ``join``
    (namespaces.py: user, net, IPC, UTS, mount) on NS_FD.. to join instead of the
    spec's namespaces, and ``memory`` (the memfd of the spec's SHARED maps) on
    MEM_FD.  Only these: every other descriptor of ours is close-on-exec or closed
    by the loader."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    spec_fd = spec.memfd(JOIN if join else None)
    moved = None        # the dup2s run in order: one to 3..NS_FD+4 must not close it
    try:
        if memory is not None and memory <= MEM_FD:
            memory = moved = fcntl.fcntl(memory, fcntl.F_DUPFD_CLOEXEC, MEM_FD + 1)
        loader = str(loader_path())
        pid = os.posix_spawn(loader, [loader], {}, file_actions=[
            (os.POSIX_SPAWN_DUP2, spec_fd, 3), (os.POSIX_SPAWN_DUP2, theirs.fileno(), 4),
            *((os.POSIX_SPAWN_DUP2, fd, NS_FD + i) for i, fd in enumerate(join)),
            *(((os.POSIX_SPAWN_DUP2, memory, MEM_FD),) if memory is not None else ())])
    except BaseException:
        ours.close()
        raise
    finally:
        os.close(spec_fd)
        theirs.close()
        if moved is not None:
            os.close(moved)
    return pid, ours

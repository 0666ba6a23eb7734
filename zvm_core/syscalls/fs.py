"""A read-only file tree from tar images, and ``getdents64`` over it.

ZRT mounted tar channels into the program's file system from NVRAM's
``[fstab]``; here :class:`Image` does that on the host side: each mounted tar
is indexed once (``tarfile``), its members become :class:`Node` objects
under the mount point, and later mounts win where paths collide.  File data
is read straight from the tar channel's backing at the member's offset; no
member is extracted or copied.

``open``/``openat``, ``stat``/``newfstatat``/``statx``, ``read``/``pread``,
``lseek``, ``mmap`` and ``close`` (``zvm_core.syscalls.io``) reach a node for
any path that is not a channel; a node behaves like a random-access read-only
channel without quotas.  Directories list with ``getdents64`` in name order.
Writes are ``EROFS``; symbolic links are followed inside the tree.  The
directories of the channels' names (``/dev`` and ``/`` above it) are
:class:`ChannelDir`: they list the channels open() accepts there, with the
image's entries at that path (:func:`lookup`).
"""

from __future__ import annotations

import collections
import errno
import functools
import io
import os
import posixpath
import stat
import struct
import tarfile

from zvm_core import tars
from zvm_core.channels import READ, Backing, Channel, FdBacking
from zvm_core.syscalls import io as _io  # io resolves paths here: imported both ways
from zvm_core.syscalls.errors import SysError

MAX_LINKS = 40                  # symbolic links followed in one lookup (ELOOP beyond)
DT_DIR, DT_REG, DT_LNK = 4, 8, 10
FIRST_INO = 1 << 16             # channels use small inode numbers
_INDEXES: collections.OrderedDict = collections.OrderedDict()
_INDEXES_KEPT = 16
_MOUNTED: collections.OrderedDict = collections.OrderedDict()
_MOUNTED_KEPT = 4
# An image's index and the tree of the mounted images live in the worker's memory
# (outside the guest's limit, kept for later runs), ~700 bytes and ~25 us of CPU a
# member; a 1 GiB image of empty members (2 million) took ~1.4 GiB and a minute before
# any guest instruction, and one member whose 100 MB name nests 50 million directories
# 22 GB and minutes (each directory's node holds its whole path).  CPython's system
# image: 1,210 nodes, 70 KB of paths.
MAX_MEMBERS = 100_000           # of one image, and nodes of the tree (directories too)
MAX_PATH = 4096                 # a member's name (Linux's PATH_MAX)
MAX_PATH_BYTES = 16 << 20       # the paths and link targets of all the tree's nodes


class ImageError(ValueError):
    """A channel that cannot be mounted as a tar image; ``label``: which (``mounted``)."""

    label = ''


class ImageUnreadable(ImageError):
    """An image whose bytes the host failed to read (an I/O error): the host's
    trouble, whatever the image holds."""


class Node:
    """A file, directory or symbolic link of the tree (the channel-like surface io.py uses)."""

    mode = READ
    random = True

    def __init__(self, path: str, kind: int, perm: int, mtime: int, ino: int,
                 size: int = 0, backing: Backing | None = None, offset: int = 0,
                 target: str = '') -> None:
        self.path, self.kind, self.perm, self.mtime, self.ino = path, kind, perm, mtime, ino
        self.size, self.backing, self.offset, self.target = size, backing, offset, target
        self.children: dict[str, Node] = {}
        self._listing: list[tuple[int, int, bytes]] | None = None

    @property
    def is_dir(self) -> bool:
        return self.kind == stat.S_IFDIR

    def st_mode(self) -> int:
        return self.kind | self.perm

    def read_budget(self, want: int) -> int:
        if self.is_dir:
            raise SysError(errno.EISDIR)
        return want

    def read(self, bufs: list[memoryview], offset: int, first: bool = True) -> int:
        """``first`` as for ``Channel.read`` (an image file counts no calls)."""
        left, out = self.size - offset, []
        for buf in bufs:
            if left <= 0:
                break
            out.append(buf[:left])
            left -= len(buf)
        return self.backing.readinto(out, self.offset + offset) if out else 0

    def listing(self) -> list[tuple[int, int, bytes]]:
        """(inode, d_type, name) of ".", ".." and the children in name order."""
        if self._listing is None:
            types = {stat.S_IFDIR: DT_DIR, stat.S_IFREG: DT_REG, stat.S_IFLNK: DT_LNK}
            self._listing = [(self.ino, DT_DIR, b'.'), (self.ino, DT_DIR, b'..')] + [
                (c.ino, types[c.kind], name.encode())
                for name, c in sorted(self.children.items())]
        return self._listing


class ChannelDir(Node):
    """A directory that holds channels (``/dev``; ``/`` above it): open() accepts the
    channels' names, so getdents lists them too, after the image's directory at the
    same path if there is one (a channel wins where names meet, as in open()).  Its
    inode is the image directory's, else one below the image's (``FIRST_INO``) fixed
    by the channels' names: a listing depends on nothing but the run's channels and
    images."""

    def __init__(self, path: str, image: Image | None, channels: dict[str, Channel],
                 dirs: dict[str, int]) -> None:
        try:
            below = image.lookup(path) if image is not None else None
        except SysError:
            below = None
        below = below if below is not None and below.is_dir else None
        super().__init__(path, stat.S_IFDIR, below.perm if below else 0o755,
                         below.mtime if below else 0, below.ino if below else dirs[path])
        self._below, self._image, self._channels, self._dirs = below, image, channels, dirs

    def listing(self) -> list[tuple[int, int, bytes]]:
        if self._listing is None:
            entries = {name: (ino, dtype) for ino, dtype, name in
                       (self._below.listing()[2:] if self._below is not None else ())}
            for path in self._dirs:
                if path != self.path and posixpath.dirname(path) == self.path:
                    sub = ChannelDir(path, self._image, self._channels, self._dirs)
                    entries[posixpath.basename(path).encode()] = (sub.ino, DT_DIR)
            for i, alias in enumerate(sorted(self._channels)):
                if posixpath.dirname(alias) == self.path:
                    entries[posixpath.basename(alias).encode()] = (
                        1 + i, stat.S_IFMT(self._channels[alias].st_mode()) >> 12)
            self._listing = [(self.ino, DT_DIR, b'.'), (self.ino, DT_DIR, b'..')] + [
                (ino, dtype, name) for name, (ino, dtype) in sorted(entries.items())]
        return self._listing


@functools.lru_cache(maxsize=64)
def _channel_dirs(aliases: tuple[str, ...]) -> dict[str, int]:
    """The directories above the channels' names, each with the inode it has where the
    image has none: below ``FIRST_INO``, in name order (channels are 1, 2, ...)."""
    dirs = set()
    for alias in aliases:
        path = posixpath.dirname(alias)
        while path not in dirs:
            dirs.add(path)
            if path == '/':
                break
            path = posixpath.dirname(path)
    return {path: FIRST_INO - 1 - i for i, path in enumerate(sorted(dirs))}


def lookup(image: Image | None, channels: dict[str, Channel], name: str) -> Node:
    """The node at ``name``, an absolute normalised path that is not a channel's: a
    directory of channels, else the image's node (``ENOENT`` without an image)."""
    if name == '/' or name.startswith('/dev'):      # a channel's name starts /dev/ (Channel)
        dirs = _channel_dirs(tuple(channels))
        if name in dirs:
            return ChannelDir(name, image, channels, dirs)
    if image is None:
        raise SysError(errno.ENOENT)
    return image.lookup(name)


class _Reader(io.RawIOBase):
    """A backing as a seekable file object, for ``tarfile``."""

    def __init__(self, backing: Backing) -> None:
        self.backing, self.pos = backing, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.backing.readinto([memoryview(b).cast('B')], self.pos)
        self.pos += n
        return n

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos,
                    io.SEEK_END: self.backing.size()}[whence] + pos
        return self.pos

    def tell(self) -> int:
        return self.pos


def _index(backing: Backing, label: str) -> list[tuple]:
    """The tar's members as (path, kind, perm, mtime, size, data offset, link target).

    Indexes of host files are kept (by device, inode, size and mtime): a big
    image is indexed once per process, not once per run.
    """
    key = backing.identity()
    if key is not None and key in _INDEXES:
        _INDEXES.move_to_end(key)
        return _INDEXES[key]
    entries = []
    try:
        with tarfile.open(fileobj=io.BufferedReader(_Reader(backing)), mode='r:',
                          tarinfo=tars.Member) as tar:
            for count, m in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise ImageError(f'{label} has more than {MAX_MEMBERS} members: pack '
                                     'fewer, larger files')
                if len(m.name) > MAX_PATH:
                    raise ImageError(f'{label} has a member whose name is longer than '
                                     f'{MAX_PATH} characters')
                if m.isdir():
                    kind = stat.S_IFDIR
                elif m.isreg() and not m.issparse():
                    kind = stat.S_IFREG
                elif m.issym() or m.islnk():
                    kind = stat.S_IFLNK if m.issym() else 0      # 0: hard link
                else:
                    continue                  # devices and FIFOs have no place here
                entries.append((m.name, kind, m.mode & 0o7777, int(m.mtime), m.size,
                                m.offset_data, m.linkname))
    except OSError as e:                # the host's read, not the image (tarfile's are not)
        raise ImageUnreadable(f'{label} could not be read on this host: {e}') from None
    except (tarfile.TarError, EOFError) as e:
        raise ImageError(f'{label} is not a readable tar image: {e}; the image device must '
                         'name a tar archive (tar -cf, or a zapp: zc bundle)') from None
    if key is not None:
        _INDEXES[key] = entries
        while len(_INDEXES) > _INDEXES_KEPT:
            _INDEXES.popitem(last=False)
    return entries


def _clean(name: str) -> str | None:
    """A member name as a relative path, or None for the root and names that climb out."""
    path = posixpath.normpath('/' + name.lstrip('/'))
    return None if path == '/' or '/../' in path + '/' else path.lstrip('/')


class Image:
    """The union of the mounted tar images: a tree of nodes under ``/``."""

    def __init__(self) -> None:
        self._ino = FIRST_INO
        self._path_bytes = 0
        self.root = self._node('/', stat.S_IFDIR, 0o755, 0)

    def _node(self, path: str, kind: int, perm: int, mtime: int, **kw) -> Node:
        self._ino += 1
        self._path_bytes += len(path) + len(kw.get('target', ''))
        if self._ino - FIRST_INO > MAX_MEMBERS or self._path_bytes > MAX_PATH_BYTES:
            raise ImageError(f'the tree would have more than {MAX_MEMBERS} files and '
                             f'directories or {MAX_PATH_BYTES} bytes of paths: pack fewer '
                             'files, less deeply nested')
        return Node(path, kind, perm, mtime, self._ino, **kw)

    def _dir(self, path: str) -> Node:
        """The directory at ``path``, made (with its parents) if missing or not a directory."""
        node = self.root
        for part in filter(None, path.split('/')):
            child = node.children.get(part)
            if child is None or not child.is_dir:
                child = node.children[part] = self._node(
                    posixpath.join(node.path, part), stat.S_IFDIR, 0o755, 0)
                node._listing = None
            node = child
        return node

    def mount(self, backing: Backing, mountpoint: str, label: str) -> None:
        """Put the tar in ``backing`` under ``mountpoint``; ImageError if it is not a tar."""
        top = posixpath.normpath('/' + mountpoint.lstrip('/'))
        for name, kind, perm, mtime, size, offset, target in _index(backing, label):
            rel = _clean(name)
            if rel is None:
                continue
            path = posixpath.join(top, rel)
            parent = self._dir(posixpath.dirname(path))
            leaf = posixpath.basename(path)
            if kind == stat.S_IFDIR:
                d = self._dir(path)
                d.perm, d.mtime = perm, mtime
                continue
            if kind == 0:                        # a hard link: the same data again
                rel_target = _clean(target)
                try:
                    same = self.lookup(posixpath.join(top, rel_target or ''))
                except SysError:
                    continue
                node = self._node(path, same.kind, same.perm, same.mtime, size=same.size,
                                  backing=same.backing, offset=same.offset)
            else:
                node = self._node(path, kind, perm, mtime, size=size, backing=backing,
                                  offset=offset, target=target)
            parent.children[leaf] = node
            parent._listing = None

    def lookup(self, path: str) -> Node:
        """The node at an absolute path, following symbolic links.  ``..`` steps back
        along the walk (``trail``), never a new lookup from the root: a link naming a
        deep directory and thousands of ``a/..`` cost each of them that depth, and
        one open() took minutes.  A link restarts the walk from the root (a relative
        target from its directory's path), so ``..`` after one is the physical parent."""
        parts = [p for p in path.split('/') if p]
        trail, links, i = [self.root], 0, 0
        while i < len(parts):
            node, part = trail[-1], parts[i]
            i += 1
            if not node.is_dir:
                raise SysError(errno.ENOTDIR)
            if part == '.':
                continue
            if part == '..':
                if len(trail) > 1:
                    trail.pop()
                continue
            child = node.children.get(part)
            if child is None:
                raise SysError(errno.ENOENT)
            if child.kind == stat.S_IFLNK:
                links += 1
                if links > MAX_LINKS:
                    raise SysError(errno.ELOOP)
                base = child.target if child.target.startswith('/') else \
                    posixpath.join(node.path, child.target)
                parts = [p for p in base.split('/') if p] + parts[i:]
                trail, i = [self.root], 0
                continue
            trail.append(child)
        return trail[-1]


def sys_getdents64(p, fd, dirp, count, *_):
    f = _io._file(p, fd)
    node = f.channel
    if not isinstance(node, Node) or not node.is_dir:
        raise SysError(errno.ENOTDIR)
    entries = node.listing()
    out = bytearray()
    i = f.pos
    while i < len(entries):
        ino, dtype, name = entries[i]
        reclen = (19 + len(name) + 1 + 7) & ~7
        if len(out) + reclen > count:
            break
        out += struct.pack('<QqHB', ino, i + 1, reclen, dtype) + name.ljust(reclen - 19, b'\0')
        i += 1
    if not out and i < len(entries):
        raise SysError(errno.EINVAL)
    p.mem.write(dirp, bytes(out))
    f.pos = i
    return len(out)


HANDLERS = {217: ('getdents64', sys_getdents64)}


def mounted(mounts: list[tuple[Backing, str, str]]) -> Image:
    """The tree of ``mounts`` ((backing, mountpoint, label) in mount order).

    A tree of host files is kept while they are unchanged (device, inode,
    size, mtime, as the index cache), reading through its own duplicate of
    each descriptor: a pool worker builds CPython's 1,200 nodes once, not per
    run (8-25 ms, more than a resumed start-up).  A tree holds no run's state.
    """
    names = tuple((b.identity() if isinstance(b, FdBacking) else None, where, label)
                  for b, where, label in mounts)
    kept = _MOUNTED.get(names) if all(n[0] is not None for n in names) else None
    if kept is not None:
        _MOUNTED.move_to_end(names)
        return kept[0]
    own = all(n[0] is not None for n in names)
    backings = [FdBacking(os.dup(b.fd), owned=True) if own else b for b, _, _ in mounts]
    image = Image()
    try:
        for backing, (_, where, label) in zip(backings, mounts, strict=True):
            try:
                image.mount(backing, where, label)
            except ImageError as e:
                failed = type(e)(f'cannot mount {label} at {where}: {e}')
                failed.label = label
                raise failed from None
    except BaseException:
        if own:
            for b in backings:
                b.close()
        raise
    if own:
        _MOUNTED[names] = (image, backings)
        while len(_MOUNTED) > _MOUNTED_KEPT:
            for b in _MOUNTED.popitem(last=False)[1][1]:
                b.close()
    return image

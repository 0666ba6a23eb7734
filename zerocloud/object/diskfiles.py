"""A batch's objects, opened as Swift's DiskFile opens them for a GET, cheaper.

Swift's DiskFile open (construct it, list the hash directory, parse and sort
its files, open the ``.data``, read its metadata through the ``xattr`` library,
unpickle and decode it, check it) took ~0.35 ms of the object server's CPU per
node of a batch, about half of all it spent on one.  Most objects are as a PUT
left them: their hash directory holds one ``.data`` file and nothing else.
:class:`DiskFiles` opens those itself (~0.19 ms with the node's ``LOCAL_*``
variables, most of it the system calls and Swift's unpickler): it reads the metadata
as Swift does (every chunk of it, its checksum, Swift's restricted unpickler
and decoding) and makes Swift's checks for such a file (the name, ``X-Delete-At``,
``Content-Length`` against the file's size, an ``ETag``).  Anything else (no
directory, a tombstone, a ``.meta``, more than one file, a file name that is not
a plain timestamp, metadata that does not read back or fails a check) is opened
by Swift's own DiskFile, from the start, so that it answers as for a node
alone: deleted or expired ``404``, a corrupt object quarantined, logged and
counted by Swift.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import time

from swift.common import utils as swift_utils
from swift.common.utils import hash_path
from swift.common.utils.pickle import unpickle
from swift.obj.diskfile import (
    METADATA_CHECKSUM_KEY,
    METADATA_KEY,
    BaseDiskFileManager,
    DiskFile,
    DiskFileDeviceUnavailable,
    DiskFileManager,
    _decode_metadata,
    get_data_dir,
)
from swift.obj.server import ObjectController

# a lone .data file that Swift's parse_on_disk_filename takes as the object's data
PLAIN_DATA = re.compile(r'[0-9]{10}\.[0-9]{5}(_[0-9a-f]{16})?\.data\Z')


# the sizes of the chunks Swifts write an object's metadata in (``write_metadata``'s
# ``xattr_size``; older Swifts 254 bytes): only the last one is shorter
XATTR_CHUNKS = (254, 65536)


class _File:
    """An open object file as its reader's ``_fp`` (``fileno``, ``close``): a descriptor,
    not a ``FileIO``, whose check that it is no directory was an ``fstat`` of its own
    per object (one was made anyway for the ``Content-Length`` check)."""

    __slots__ = ('fd',)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class Opened:
    """An object :class:`DiskFiles` opened: what the object filter asks of Swift's
    DiskFile (``open``, ``get_metadata``) and of its reader (``reader()._fp``,
    ``close``; never iterated, so Swift's reader would check nothing more)."""

    def __init__(self, fp, metadata: dict) -> None:
        self._fp = fp
        self.metadata = metadata
        self.local_env: dict[str, str] | None = None   # set by ``open_local``

    def open(self) -> Opened:
        return self

    def get_metadata(self) -> dict:
        return self.metadata

    def reader(self) -> Opened:
        return self

    def close(self) -> None:
        if self._fp is not None:
            fp, self._fp = self._fp, None
            fp.close()


class _Whole:
    """Bytes as the file Swift's restricted unpickler reads: its ``peek`` gives them all,
    so the C unpickler takes them in one read; from ``io.BytesIO`` (Swift's
    ``unpickle`` of bytes) it calls ``read`` once per opcode (an object's metadata:
    ~14 -> ~8 us, a tenth of opening it)."""

    __slots__ = ('data', 'pos')

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def peek(self, size: int = 0) -> bytes:
        return self.data[self.pos:]

    def read(self, size: int = -1) -> bytes:
        start = self.pos
        self.pos = len(self.data) if size < 0 else min(start + size, len(self.data))
        return self.data[start:self.pos]

    def readline(self) -> bytes:
        end = self.data.find(b'\n', self.pos)
        return self.read(-1 if end < 0 else end + 1 - self.pos)


def read_metadata(fd: int) -> dict:
    """The metadata of an open object file, read as Swift's ``_read_file_metadata``
    reads it (its chunks ``user.swift.metadata``, ``...1``, ... up to the first
    missing one; its checksum, when there is one), with ``os.getxattr`` (the
    ``xattr`` library's calls were a third of the cost), but no chunk is looked for
    after one of another size than :data:`XATTR_CHUNKS` (a system call per object
    that found none): a writer that cut them at another size leaves a pickle cut short
    here, which does not unpickle (or a checksum that does not match).  Raises where Swift would
    quarantine the file or fail, and for any error Swift would let pass (a checksum
    that does not read back): the caller leaves those to Swift."""
    raw = b''
    key = 0
    while True:
        try:
            chunk = os.getxattr(fd, METADATA_KEY + (str(key).encode() if key else b''))
        except OSError as e:
            if e.errno != errno.ENODATA or not key:
                raise
            break
        raw += chunk
        if len(chunk) not in XATTR_CHUNKS:  # the last: no next one to look for
            break
        key += 1
    try:
        checksum = os.getxattr(fd, METADATA_CHECKSUM_KEY)
    except OSError as e:
        if e.errno != errno.ENODATA:
            raise
        checksum = None
    if checksum and checksum != hashlib.md5(raw, usedforsecurity=False).hexdigest().encode():
        raise ValueError('metadata checksum mismatch')
    return decode_metadata(unpickle(_Whole(raw), encoding='bytes'),
                           b'_codecs\nencode' in raw[:32])


def decode_metadata(metadata: dict, written_by_py3: bool) -> dict:
    """Swift's ``_decode_metadata``: for metadata a Python 3 Swift wrote (every
    object of this cluster's), its keys and values as UTF-8 ``str`` in one pass,
    not two calls of a nested function per item (a tenth of an open); older
    metadata by Swift's own.  Its keys and values are all bytes as a PUT writes them:
    decoded without asking each (two ``isinstance`` an item were half of it); any
    other (a number, a ``str``) is asked for again item by item."""
    if not written_by_py3:
        return _decode_metadata(metadata, written_by_py3)
    try:
        return {k.decode('utf8', 'surrogateescape'): v.decode('utf8', 'surrogateescape')
                for k, v in metadata.items()}
    except AttributeError:
        return {k.decode('utf8', 'surrogateescape') if isinstance(k, bytes) else k:
                v.decode('utf8', 'surrogateescape') if isinstance(v, bytes) else v
                for k, v in metadata.items()}


def open_plain(datadir: str, name: str) -> Opened | None:
    """The object in hash directory ``datadir`` opened, if that holds a lone ``.data``
    whose metadata reads back and passes Swift's checks of a data file for a GET
    (``BaseDiskFile._verify_data_file``: its ``name``, not expired, its
    ``Content-Length`` the file's size; and an ``ETag``, which Swift's reader
    needs); None for any other object, with nothing changed on disk."""
    try:
        files = os.listdir(datadir)
    except OSError:
        return None
    if len(files) != 1 or not PLAIN_DATA.match(files[0]):
        return None
    try:
        fp = _File(os.open(f'{datadir}/{files[0]}', os.O_RDONLY))
    except OSError:
        return None
    try:
        fd = fp.fd
        metadata = read_metadata(fd)
        if (metadata.get('name') == name and 'ETag' in metadata
                and ('X-Delete-At' not in metadata
                     or int(metadata['X-Delete-At']) > time.time())
                and int(metadata['Content-Length']) == os.fstat(fd).st_size):
            return Opened(fp, metadata)
    except Exception:           # bad metadata of any kind: Swift's DiskFile says what
        pass
    fp.close()
    return None


def object_hash(account: str, container: str, obj: str) -> str:
    """Swift's ``hash_path(account, container, obj)`` of an object, the same hex digest,
    in one encode and one MD5 (Swift's encodes each name, then joins: ~2.4 -> 1 us a
    node); a name left empty goes to Swift's own, for its answer."""
    if not (account and container and obj):
        return hash_path(account, container, obj)
    return hashlib.md5(swift_utils.HASH_PATH_PREFIX + f'/{account}/{container}/{obj}'.encode()
                       + swift_utils.HASH_PATH_SUFFIX, usedforsecurity=False).hexdigest()


class DiskFiles:
    """A batch's ``get_diskfile``: Swift's, but each device's path is looked up
    (``get_dev_path``: ``check_drive``, with the server's ``mount_check``) once per
    batch, not once per object (4 % of this process's CPU per node), and an object
    of a replicated policy as a PUT left it is opened here (:func:`open_plain`),
    any other by Swift's DiskFile.  An object server whose ``get_diskfile`` or
    DiskFile classes are not Swift's own is asked for each object, as for a node
    alone."""

    def __init__(self, server) -> None:
        self.server = server
        self.own = (type(server).get_diskfile is ObjectController.get_diskfile
                    and hasattr(server, '_diskfile_router'))
        # (device, policy) -> its manager, device path and objects directory, or None
        # (no device): looked up once (a policy's ``int`` and hash are Python calls)
        self.paths: dict[tuple[str, int], tuple | None] = {}

    def __call__(self, device: str, part: str, account: str, container: str, obj: str,
                 policy):
        if not self.own:
            return self.server.get_diskfile(device, part, account, container, obj,
                                            policy=policy)
        key = (device, id(policy))      # a batch's policies live as long as it does
        got = self.paths.get(key, self)
        if got is self:
            manager = self.server._diskfile_router[policy]
            if type(manager).get_diskfile is not BaseDiskFileManager.get_diskfile:
                got = (manager, None, None)
            else:
                path = manager.get_dev_path(device)
                plain = type(manager) is DiskFileManager and manager.diskfile_cls is DiskFile
                got = path and (manager, path, os.path.join(path, get_data_dir(policy))
                                if plain else None)
            self.paths[key] = got
        if not got:
            raise DiskFileDeviceUnavailable()
        manager, path, objects = got
        if path is None:            # a manager of its own: asked for each object
            return manager.get_diskfile(device, part, account, container, obj, policy)
        if objects is not None:
            name_hash = object_hash(account, container, obj)
            opened = open_plain(f'{objects}/{part}/{name_hash[-3:]}/{name_hash}',
                                f'/{account}/{container}/{obj}')
            if opened is not None:
                return opened
        return manager.diskfile_cls(manager, path, part, account, container, obj,
                                    policy=policy, use_splice=manager.use_splice,
                                    pipe_size=manager.pipe_size)

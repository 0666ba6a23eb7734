"""A batch's objects, opened as Swift's DiskFile opens them for a GET, cheaper.

Swift's DiskFile open (construct it, list the hash directory, parse and sort
its files, open the ``.data``, read its metadata through the ``xattr`` library,
unpickle and decode it, check it) took ~0.35 ms of the object server's CPU per
node of a batch, about half of all it spent on one.  Most objects are as a PUT
left them: their hash directory holds one ``.data`` file and nothing else.
:class:`DiskFiles` opens those itself, in one call of C (``_plain.open_data``:
the system calls once each, the metadata of a Python 3 Swift's pickle decoded
without Python's unpickler; ~10 us with the node's ``LOCAL_*`` variables, 25 in
Python before): it reads the metadata as Swift does (every chunk of it, its
checksum, the values Swift's unpickler and decoding give) and makes Swift's
checks for such a file (the name, ``X-Delete-At``, ``Content-Length`` against
the file's size, an ``ETag``).  Anything else (no directory, a tombstone, a
``.meta``, more than one file, a file name that is not a plain timestamp,
metadata that does not read back, that another writer pickled or that fails a
check) is opened by Swift's own DiskFile, from the start, so that it answers as
for a node alone: deleted or expired ``404``, a corrupt object quarantined,
logged and counted by Swift.
"""

from __future__ import annotations

import hashlib
import os
import time

from swift.common import utils as swift_utils
from swift.common.utils import hash_path
from swift.obj.diskfile import (
    BaseDiskFileManager,
    DiskFile,
    DiskFileDeviceUnavailable,
    DiskFileManager,
    get_data_dir,
)
from swift.obj.server import ObjectController

from zerocloud.object import _plain


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


def open_plain(datadir: str, name: str) -> Opened | None:
    """The object in hash directory ``datadir`` opened, if that holds a lone ``.data``
    whose metadata a Python 3 Swift wrote, reads back (``_plain.open_data``) and
    passes Swift's checks of a data file for a GET (``BaseDiskFile._verify_data_file``:
    its ``name``, not expired, its ``Content-Length`` the file's size; and an
    ``ETag``, which Swift's reader needs); None for any other object, with nothing
    changed on disk."""
    opened = _plain.open_data(datadir)
    if opened is None:
        return None
    fd, size, metadata = opened
    try:
        if (metadata.get('name') == name and 'ETag' in metadata
                and ('X-Delete-At' not in metadata
                     or int(metadata['X-Delete-At']) > time.time())
                and int(metadata['Content-Length']) == size):
            kept = Opened(_File(fd), metadata)
            fd = None                   # the file's now
            return kept
    except (KeyError, ValueError):      # Swift's DiskFile says what
        pass
    finally:
        if fd is not None:              # not handed over (declined, or MemoryError)
            os.close(fd)
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

"""Per-process directories on an object server's disks, and removing those of
processes that died.

Each node gets a scratch directory in ``<devices>/<device>/tmp`` for its
request's inputs and written channels, removed when its answer is done; the
nodes of batches write their outputs in one directory per process and disk,
whose files, emptied, are kept open from one batch to the next
(``zerocloud.object.batch.Spares``).  A
server killed by a signal (a crash, an OOM kill) removes nothing, so the
directory names carry the process id (``zerocloud-node-<pid>-<random>``):
when the object filter starts, it removes those of processes no longer
alive.  Live processes (other workers of the same server) keep theirs.
"""

from __future__ import annotations

import os
import shutil
import tempfile

NODE_DIR = 'zerocloud-node-'


def node_dir(disk_tmp: str) -> str:
    """A new scratch directory of this process under ``disk_tmp``."""
    os.makedirs(disk_tmp, exist_ok=True)
    return tempfile.mkdtemp(prefix=f'{NODE_DIR}{os.getpid()}-', dir=disk_tmp)


def remove_orphans(root: str, prefix: str) -> int:
    """Remove ``<root>/<prefix><pid>-*`` of processes that are gone; how many."""
    try:
        names = os.listdir(root)
    except OSError:
        return 0
    removed = 0
    for name in names:
        pid = name[len(prefix):].partition('-')[0]
        if name.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            removed += 1
    return removed


def remove_node_orphans(devices: str) -> int:
    """Remove the scratch directories dead processes left on every disk."""
    try:
        disks = os.listdir(devices)
    except OSError:
        return 0
    return sum(remove_orphans(os.path.join(devices, disk, 'tmp'), NODE_DIR) for disk in disks)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True

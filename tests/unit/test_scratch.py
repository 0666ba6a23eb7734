"""zerocloud.object.scratch: a node's scratch directory names its process, and
only those of processes that are gone are removed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from zerocloud.object import scratch


def test_only_the_directories_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen(['true'])
    dead.wait()
    tmp = tmp_path / 'obj0' / 'tmp'
    mine = Path(scratch.node_dir(str(tmp)))
    (mine / 'out-stdout').write_bytes(b'x')
    theirs = tmp / f'{scratch.NODE_DIR}{dead.pid}-abc'
    (theirs / 'sub').mkdir(parents=True)
    other = tmp / 'swift-tmp-file'                # Swift's own files stay
    other.write_bytes(b'')
    assert mine.name.startswith(f'{scratch.NODE_DIR}{os.getpid()}-')
    assert scratch.remove_node_orphans(str(tmp_path)) == 1
    assert sorted(p.name for p in tmp.iterdir()) == sorted([mine.name, other.name])


def test_missing_devices_remove_nothing(tmp_path: Path) -> None:
    assert scratch.remove_node_orphans(str(tmp_path / 'nowhere')) == 0

"""The directories of the channels' names list the channels open() accepts there.

``os.listdir('/dev')`` was ENOENT while ``/dev/stdin`` opened.  The listing must be
a function of the run's channels and images only: name order, fixed inodes (a
channel's as ``stat`` gives it), whatever the order the channels were attached in.
"""

from __future__ import annotations

import errno
import stat

import pytest

from zvm_core.syscalls.errors import SysError
from zvm_core.syscalls.fs import DT_DIR, DT_REG, FIRST_INO, Image, lookup


class _Channel:
    def __init__(self, kind: int) -> None:
        self.kind = kind

    def st_mode(self) -> int:
        return self.kind | 0o444


CHANNELS = {'/dev/stdout': _Channel(stat.S_IFCHR), '/dev/stdin': _Channel(stat.S_IFIFO),
            '/dev/in/a': _Channel(stat.S_IFREG)}


def _names(node) -> list[tuple[int, int, bytes]]:
    return node.listing()[2:]


def test_without_an_image_the_channels_directories_list_them() -> None:
    dev = lookup(None, CHANNELS, '/dev')
    inner = lookup(None, CHANNELS, '/dev/in')
    assert _names(dev) == [(inner.ino, DT_DIR, b'in'), (2, stat.S_IFIFO >> 12, b'stdin'),
                           (3, stat.S_IFCHR >> 12, b'stdout')]     # 1 + sorted index
    assert _names(inner) == [(1, DT_REG, b'a')]
    assert _names(lookup(None, CHANNELS, '/')) == [(dev.ino, DT_DIR, b'dev')]
    assert {dev.ino, inner.ino} < set(range(FIRST_INO - 3, FIRST_INO))
    shuffled = dict(reversed(CHANNELS.items()))
    assert lookup(None, shuffled, '/dev').listing() == dev.listing()
    with pytest.raises(SysError) as e:
        lookup(None, CHANNELS, '/dev/nope')
    assert e.value.errno == errno.ENOENT


def test_the_images_entries_are_merged_and_its_inodes_kept() -> None:
    image = Image()
    image_dev = image._dir('/dev')
    image_dev.children['README'] = readme = image._node('/dev/README', stat.S_IFREG, 0o644, 0)
    image.root.children['usr'] = usr = image._node('/usr', stat.S_IFDIR, 0o755, 0)
    dev = lookup(image, CHANNELS, '/dev')
    assert dev.ino == image_dev.ino
    assert [name for _, _, name in _names(dev)] == [b'README', b'in', b'stdin', b'stdout']
    assert _names(dev)[0] == (readme.ino, DT_REG, b'README')
    assert _names(lookup(image, CHANNELS, '/')) == [(image_dev.ino, DT_DIR, b'dev'),
                                                    (usr.ino, DT_DIR, b'usr')]
    assert lookup(image, CHANNELS, '/usr') is usr

"""Two channels on one file (``engines/native/fastcall.c``: fill_chan): the C loop
knows them for one by the file's identity (device and inode) that each channel's
``FdBacking`` found when it was made, and reads neither ahead: a read after a
write through the other channel sees the bytes written, natively as emulated."""

from __future__ import annotations

import fcntl
import os

import pytest

from zvm_core import engines
from zvm_core.channels import READ, WRITE, Channel, FdBacking, MemoryBacking
from zvm_core.engines.native import supervisor
from zvm_core.executor import run

pytestmark = pytest.mark.skipif(engines.native_unavailable() is not None,
                                reason=f'native engine: {engines.native_unavailable()}')


def _run(program, path, engine: str) -> tuple[str, bytes]:
    path.write_bytes(b'o' * (64 << 10))
    err = MemoryBacking()
    chans = [Channel('/dev/stdin', FdBacking.open(path, READ), READ),
             # write-only, not truncated: its writes go over the input's bytes from 0
             Channel('/dev/stdout', FdBacking(os.open(path, os.O_WRONLY | os.O_CLOEXEC),
                                              owned=True), WRITE),
             Channel('/dev/stderr', err, WRITE)]
    try:
        report = run(program, chans, argv=[program.name], engine=engine)
    finally:
        for ch in chans:
            ch.close()
    assert report.engine == engine and report.status == 'ok', report
    assert report.retcode == 0, report
    return report.status, bytes(err.data)


@pytest.mark.parametrize('fast', [True, False])
def test_a_read_after_a_write_to_the_same_file_sees_the_bytes_written(guest, monkeypatch,
                                                                        tmp_path, fast):
    monkeypatch.setattr(supervisor, 'FAST_PATH', fast)
    program = guest('samefile')
    assert _run(program, tmp_path / 'f', 'native') == ('ok', b'x' * 1024)
    assert _run(program, tmp_path / 'g', 'emulated') == ('ok', b'x' * 1024)


def test_the_c_loop_takes_the_identity_its_backings_found(guest, monkeypatch, tmp_path):
    """Told the two are different files (a backing's inode changed), the C loop reads
    the input ahead and the second read gives the bytes read before the write: the
    identity it compares is the backings' own, not an ``fstat`` of its own."""
    made = FdBacking.__init__

    def other_inode(self, fd: int, owned: bool) -> None:
        made(self, fd, owned)
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:    # stdout's
            self.ino += 1

    monkeypatch.setattr(FdBacking, '__init__', other_inode)
    monkeypatch.setattr(supervisor, 'FAST_PATH', True)
    assert _run(guest('samefile'), tmp_path / 'f', 'native') == ('ok', b'o' * 1024)

"""Hostile checks of the C loop's channel state held between calls into Python
(``engines/native/fastcall.c``: gathered writes, read-ahead), found in review.

The loop reads a read-only file ahead (its FdBacking's file offset moves past
what the guest took) and gathers a file's writes; the run's end gives the
read-ahead back and writes the gathered bytes.  Where that write fails on the
host, the input must still be where the guest stopped and the counters what
the guest did: the caller's shared descriptor (``zvm run < file``) is read on
after the run, as when the personality answered every call.
"""

from __future__ import annotations

import os
import resource
import signal

import pytest

from tests.conftest import in_child
from zvm_core import engines
from zvm_core.channels import READ, WRITE, Channel, FdBacking, MemoryBacking
from zvm_core.executor import run

pytestmark = pytest.mark.skipif(engines.native_unavailable() is not None,
                                reason=f'native engine: {engines.native_unavailable()}')


@pytest.mark.parametrize('fast', [True, False])
def test_a_failed_last_write_leaves_the_input_where_the_guest_stopped(guest, tmp_path, fast):
    """``gather 8 2``: reads 2 KiB of stdin, writes 8 KiB, a call answered in Python
    (the 8 KiB go to the file), then reads 1 KiB more (read ahead: the file offset
    moves 256 KiB on) and writes 1 KiB and 'end' (gathered) and exits.  The file
    may not grow past 8 KiB (RLIMIT_FSIZE): that last write fails (natively at the
    run's end, when the gathered bytes are written).  The run ends 'killed' (a host
    failure) either way; the caller's stdin offset is 3 KiB, as the guest read, and
    the report counts its 3 reads (review6:
    natively the read-ahead was not given back and the counters not written back
    when that write failed: the offset was 259 KiB and the report said 2 reads)."""
    prog = guest('gather')
    src = tmp_path / 'in'
    src.write_bytes(bytes(range(256)) * 4096)        # 1 MiB

    def body():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 * 1024, 8 * 1024))
        fd = os.open(src, os.O_RDONLY)      # the caller's stdin: not the channel's own
        chans = [Channel('/dev/stdin', FdBacking(fd, owned=False), READ),
                 Channel('/dev/stdout', FdBacking.open(tmp_path / f'out-{fast}', WRITE),
                         WRITE),
                 Channel('/dev/stderr', MemoryBacking(), WRITE)]
        report = run(prog, chans, argv=['gather', '8', '2'], engine='native')
        stdin = report.accounting.channels['/dev/stdin']
        return [report.status, report.host_failure, os.lseek(fd, 0, os.SEEK_CUR),
                stdin.reads, stdin.read_bytes]

    got = in_child(body, fast)
    assert got == ['killed', True, 3 * 1024, 3, 3 * 1024], got


@pytest.mark.parametrize('way', [('native', True), ('native', False), ('emulated', None)])
@pytest.mark.parametrize('kind', ['fd', 'file'])
def test_a_write_the_host_cuts_short_ends_the_run_on_every_engine(guest, tmp_path, way, kind):
    """``gather 8``: 8 KiB written (to the file at the uname), then the 1 KiB of
    stdin and 'end';
    the file may not grow past 8.5 KiB.  The C loop told the guest its 1 KiB was
    written (gathered) and ended the run 'killed' when the host refused it; the
    personality gave the guest the host's short count (512), and the guest went on
    to exit 3, 'ok' (review6: the report depended on the engine).  A regular file
    written short is the host failing: every way ends 'killed', a host failure."""
    from tests.sandbox.test_fastcall import _backing
    prog = guest('gather')
    engine, fast = way

    def body():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 * 1024 + 512, 8 * 1024 + 512))
        chans = [Channel('/dev/stdin', MemoryBacking(b'x' * 1024), READ),
                 Channel('/dev/stdout', _backing(kind, tmp_path / 'out', WRITE), WRITE),
                 Channel('/dev/stderr', MemoryBacking(), WRITE)]
        report = run(prog, chans, argv=['gather', '8'], engine=engine)
        return [report.status, report.message, report.host_failure]

    got = in_child(body, bool(fast))
    assert got == ['killed', 'host I/O failed in write: File too large', True], got

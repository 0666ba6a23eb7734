"""The etag of a channel written at random is an MD5 of the whole file, hashed after
the run: ``channels.with_etags`` stops it when the run's time is up (a byte written at
1 TiB without a quota hashed for an hour after a run given 60 s)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from zvm_core.channels import WRITE, Channel, FdBacking, MemoryBacking, with_etags
from zvm_core.report import Report


def _written(path: Path, at: int) -> Channel:
    ch = Channel('/dev/output', FdBacking.open(path, WRITE), WRITE, random=True)
    ch.write([memoryview(b'x')], at)
    return ch


def test_an_etag_past_the_time_makes_the_run_a_timeout_that_says_why(tmp_path: Path) -> None:
    ch = _written(tmp_path / 'out', 8 << 20)
    report = with_etags(Report('ok', 0), {'/dev/output': ch}, lambda: True, 2)
    assert (report.status, report.retcode, report.etags) == ('timeout', None, {})
    assert report.message == ('wall-clock timeout of 2 s: the etag of /dev/output (8388609 '
                              'bytes written at random, a sparse file hashed whole) was not '
                              'done in time')
    timed_out = Report('timeout', None, 'wall-clock timeout of 2 s')
    assert with_etags(timed_out, {'/dev/output': ch}, lambda: True, 2) is timed_out
    assert timed_out.message == 'wall-clock timeout of 2 s'     # said already: kept
    ch.close()


def test_in_time_every_written_channel_has_its_etag(tmp_path: Path) -> None:
    ch = _written(tmp_path / 'out', 3 << 20)
    report = with_etags(Report('ok', 0), {'/dev/output': ch}, lambda: False, 2)
    assert report.status == 'ok'
    assert report.etags == {'/dev/output': hashlib.md5(bytes(3 << 20) + b'x').hexdigest()}
    ch.close()


def test_an_output_kept_in_memory_is_hashed_within_the_time_too() -> None:
    """A channel kept in memory written at random is hashed whole like a file: its
    hash ignored ``expired()`` (smalls17's note: bounded only by memory)."""
    ch = Channel('/dev/output', MemoryBacking(), WRITE, random=True)
    ch.write([memoryview(b'x')], 8 << 20)
    report = with_etags(Report('ok', 0), {'/dev/output': ch}, lambda: True, 2)
    assert (report.status, report.etags) == ('timeout', {})
    assert '(8388609 bytes written at random' in report.message
    report = with_etags(Report('ok', 0), {'/dev/output': ch}, lambda: False, 2)
    assert report.etags == {'/dev/output': hashlib.md5(bytes(8 << 20) + b'x').hexdigest()}
    ch.truncate()                                   # nothing pins its size

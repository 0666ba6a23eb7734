"""System calls that move a lot or wait long, under both engines: a stream that
stops moving ends the run at its deadline (status ``timeout``), and one call
moves any amount with the same answers, quotas and etags while the native
supervisor holds a few MiB of it at a time."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading

import pytest

from tests.conftest import CLI, REPO
from zvm_core.channels import READ, WRITE, Channel, FdBacking, MemoryBacking

MIB = 1 << 20


def pattern(size: int) -> bytes:
    """What ``bigio write`` writes: byte i is i * 7 % 251."""
    period = bytes(i * 7 % 251 for i in range(251))
    return (period * (size // 251 + 1))[:size]


def _cli(zvm, tmp_path, *args, **kw) -> tuple[int, dict, bytes]:
    """``zvm run`` with a 2 s timeout: its exit code, report and stderr; a run that
    outlived its deadline fails the test after 60 s instead of hanging it."""
    report = tmp_path / 'report.json'
    proc = subprocess.Popen([*CLI, 'run', '--timeout', '2', '--report', report, *args],
                            cwd=REPO, env=zvm.env, stderr=subprocess.PIPE, **kw)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail('zvm run outlived its deadline by a minute')
    return proc.returncode, json.loads(report.read_text()), err


def test_stdout_a_pipe_nobody_drains_ends_the_run_at_its_deadline(guest, zvm, tmp_path,
                                                                  engine):
    """The supervisor's write to a full pipe blocked past the deadline: the run never
    ended (nor did ``zvm run``)."""
    r, w = os.pipe()
    try:
        code, report, err = _cli(zvm, tmp_path, guest('bigio'), 'write', '8', stdout=w,
                                 stdin=subprocess.DEVNULL)
    finally:
        os.close(r)
        os.close(w)
    assert (code, report['status']) == (125, 'timeout'), err
    assert report['message'] == 'wall-clock timeout while writing a pipe'


def test_stdin_a_fifo_whose_writer_stays_open_ends_the_run_at_its_deadline(
        guest, zvm, tmp_path, engine):
    fifo = tmp_path / 'fifo'
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)        # never writes, never closes
    try:
        with open(fifo, 'rb') as stdin:
            code, report, err = _cli(zvm, tmp_path, '--stdout', os.devnull, guest('bigio'),
                                     'read', '1', stdin=stdin)
    finally:
        os.close(writer)
    assert (code, report['status']) == (125, 'timeout'), err
    assert report['message'] == 'wall-clock timeout while reading /dev/stdin'


@pytest.mark.parametrize('mode', ['write', 'writev'])
def test_a_pipe_read_slowly_gets_a_large_write_whole(guest, engine, mode):
    """A write waits for room piece by piece and answers the whole count."""
    from zvm_core.executor import Limits, run
    r, w = os.pipe()
    got = bytearray()
    reader = threading.Thread(target=_drain, args=(r, got))
    reader.start()
    err = MemoryBacking()
    try:
        report = run(guest('bigio'), [Channel('/dev/stdout', FdBacking(w, owned=False), WRITE),
                                      Channel('/dev/stderr', err, WRITE)],
                     argv=['bigio', mode, '3'], limits=Limits(timeout=60), engine=engine)
    finally:
        os.close(w)
        reader.join()
        os.close(r)
    assert report.status == 'ok', report
    assert bytes(err.data) == f'{mode} = {3 * MIB} errno=0\n'.encode()
    assert got == pattern(3 * MIB)
    assert report.etags['/dev/stdout'] == hashlib.md5(got).hexdigest()


def _drain(fd: int, into: bytearray) -> None:
    while chunk := os.read(fd, 5000):
        into.extend(chunk)


def test_a_stuck_pipe_leaves_no_process_behind(guest, engine):
    from tests.sandbox.test_native import _children
    from zvm_core.executor import Limits, run
    r, w = os.pipe()
    unstick = threading.Timer(30, _drain, [r, bytearray()])    # a regression fails, not hangs
    unstick.start()
    try:
        report = run(guest('bigio'), [Channel('/dev/stdout', FdBacking(w, owned=False), WRITE),
                                      Channel('/dev/stdin', MemoryBacking(), READ)],
                     argv=['bigio', 'write', '1'], limits=Limits(timeout=1), engine=engine)
    finally:
        unstick.cancel()
        os.close(w)
        unstick.join()
        os.close(r)
    assert (report.status, report.message) == ('timeout',
                                               'wall-clock timeout while writing a pipe')
    assert not [c for c in _children() if c.startswith('loader')]

"""``zvm run prog | head -1``: the reader of the guest's stdout closes it early.  The
guest's write is answered ``EPIPE`` (no signal is ever delivered), a guest that writes
again is stopped as SIGPIPE would stop it (``fault``, ``zvm run`` exits 141 quietly,
as ``cat`` does): nothing of it is the host's failure, under both engines."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import CLI, REPO
from zvm_core.report import SIGPIPE_STATE


def _head(zvm, tmp_path, *args: str) -> tuple[int, dict, bytes]:
    """``zvm run ARGS | head -c 4096``: the exit code, the report and zvm's stderr."""
    report = tmp_path / 'report.json'
    proc = subprocess.Popen([*CLI, 'run', '--timeout', '30', '--report', report, *args],
                            cwd=REPO, env=zvm.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(proc.stdout.read(4096)) == 4096
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    return proc.returncode, json.loads(report.read_text()), err


def test_a_write_after_the_reader_left_is_answered_epipe(guest, zvm, tmp_path, engine):
    code, report, err = _head(zvm, tmp_path, guest('epipe'))
    assert (code, err) == (32, b'write: errno 32\n'), report
    assert (report['status'], report['retcode'], report['host_failure']) == ('ok', 32, False)


def test_a_program_that_keeps_writing_ends_as_sigpipe_ends_it(guest, zvm, tmp_path, engine):
    code, report, err = _head(zvm, tmp_path, guest('flood'))
    assert (code, err) == (141, b''), report
    assert (report['status'], report['exit_state'], report['host_failure']) == \
        ('fault', SIGPIPE_STATE, False)
    assert report['message'] == '/dev/stdout: written again after EPIPE (its reader went away)'

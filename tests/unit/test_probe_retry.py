"""A native probe that failed because the host was busy is run again later.

A pool worker probes once; a probe that timed out under load made the worker run
every node emulated for the rest of its life.  A busy failure (a timeout, no
descriptors, no memory) is now kept only for a back-off; what says the host
cannot (no seccomp, a loader that cannot be built) stays for the process.
"""

from __future__ import annotations

import errno
import time

import pytest

from zvm_core import engines
from zvm_core.engines import native
from zvm_core.engines.native import _fastcall, probe
from zvm_core.pool import worker
from zvm_core.prepare import Rejected
from zvm_core.report import Report

BUSY = 'the probe run ended killed (None): native engine: no answer from the loader: timed out'


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(time, 'monotonic', clock)
    # the same clock, read without rdtsc (the worker's node path: fastcall.c, hold),
    # and its coarse reading (the worker's expiry checks)
    monkeypatch.setattr(_fastcall, 'monotonic', clock)
    monkeypatch.setattr(_fastcall, 'coarse', clock)
    return clock


@pytest.fixture
def answers(monkeypatch, clock: _Clock) -> list[str | None]:
    """The probe's next answers; ``native.unavailable`` fresh, asking it; ``auto``."""
    monkeypatch.delenv('ZVM_ENGINE', raising=False)
    left: list[str | None] = []
    monkeypatch.setattr(native, 'unavailable', native._Kept(lambda: left.pop(0)))
    monkeypatch.setattr(native, 'tsc_unavailable', native._Kept(lambda: None))
    return left


def test_a_busy_probe_is_run_again_after_a_back_off(answers, clock) -> None:
    answers += [probe.Transient(BUSY), probe.Transient(BUSY), None]
    assert engines.choose() == 'emulated'
    assert engines.unavailable_reason() == f'the native engine cannot run on this host: {BUSY}'
    clock.now += native.RETRY_FIRST - 1
    assert engines.choose() == 'emulated'           # not probed on every run
    assert answers == [probe.Transient(BUSY), None]
    clock.now += 1
    assert engines.choose() == 'emulated'           # busy again: it waits twice as long
    clock.now += native.RETRY_FIRST
    assert engines.choose() == 'emulated'
    clock.now += native.RETRY_FIRST
    assert engines.choose() == 'native'
    assert engines.unavailable_reason() == ''
    assert engines.choice_lasts() == float('inf')


def test_a_probe_that_says_the_host_cannot_is_kept(answers, clock) -> None:
    answers += ['the probe run ended fault (None): seccomp: Invalid argument', None]
    assert engines.choose() == 'emulated'
    clock.now += 100 * native.RETRY_MOST
    assert engines.choose() == 'emulated'
    assert engines.choice_lasts() == float('inf')
    assert answers == [None]


@pytest.mark.parametrize('report, busy', [
    (Report('killed', None, 'native engine: no answer from the loader: timed out'), True),
    (Report('timeout', None, 'wall-clock timeout of 10 s'), True),
    (Report('killed', None, f'native engine: loader: socketpair (errno {errno.EMFILE})'), True),
    (Report('killed', None, 'native engine: loader: cannot pass the listener (errno 109): '
            'this user has too many descriptors in flight on this host; the host is busy, '
            'retry'), True),
    (Report('killed', None, 'native engine: loader: seccomp (errno 22)'), False),
    (Report('fault', None, 'Segmentation fault'), False),
])
def test_a_probe_failure_is_busy_only_for_want_of_time_or_resources(
        monkeypatch, report: Report, busy: bool) -> None:
    monkeypatch.setattr('zvm_core.engines.native.supervisor.run', lambda *a, **k: report)
    reason = probe.probe()
    assert reason.startswith(f'the probe run ended {report.status}')
    assert isinstance(reason, probe.Transient) is busy


@pytest.mark.parametrize('err, busy', [(errno.ETOOMANYREFS, True), (errno.EPERM, False)])
def test_a_loader_that_cannot_start_is_busy_only_for_want_of_resources(
        monkeypatch, err: int, busy: bool) -> None:
    def run(*args, **kwargs):
        raise OSError(err, 'refused')
    monkeypatch.setattr('zvm_core.engines.native.supervisor.run', run)
    assert isinstance(probe.probe(), probe.Transient) is busy


class _Templates:
    """Says which engine the worker chose: each path refuses at once."""

    def __init__(self) -> None:
        self.engines: list[str] = []

    def prepared(self, *args):
        self.engines.append('native')
        raise Rejected(Report('validation', None, 'native'))

    def get(self, *args):
        self.engines.append('emulated')
        raise Rejected(Report('validation', None, 'emulated'))


def test_a_worker_runs_native_once_its_busy_probe_is_retried(monkeypatch, answers, clock,
                                                              tmp_path) -> None:
    monkeypatch.setattr(worker, '_CHOSEN', {})
    program = tmp_path / 'prog'
    program.write_bytes(b'')
    req = {'program': str(program), 'channels': [], 'limits': {}, 'rdtsc': 'virtualize'}
    answers += [probe.Transient(BUSY), None]
    templates = _Templates()
    for _ in range(2):
        worker._serve_one(req, [], templates)
    clock.now += native.RETRY_FIRST
    worker._serve_one(req, [], templates)
    assert templates.engines == ['emulated', 'emulated', 'native']


def test_a_worker_prepares_a_program_again_once_a_busy_tsc_probe_is_retried(
        monkeypatch, answers, clock, tmp_path) -> None:
    """``auto`` runs a program with ``rdtsc`` emulated where the traced probe failed;
    a worker kept that choice per program for as long as the file was unchanged."""
    tsc = [probe.Transient(BUSY), None]
    monkeypatch.setattr(native, 'tsc_unavailable', native._Kept(lambda: tsc.pop(0)))
    answers.append(None)
    prepared = []

    def prepare(path, policy, engine):
        reason = native.tsc_unavailable()
        prepared.append('emulated' if reason else 'native')
        return prepared[-1]
    monkeypatch.setattr(worker, 'prepare', prepare)
    program = tmp_path / 'prog'
    program.write_bytes(b'')
    templates = worker.Templates(1 << 20)
    assert [templates.prepared(str(program), None, 'virtualize') for _ in range(2)] == \
        ['emulated', 'emulated']
    clock.now += native.RETRY_FIRST
    assert templates.prepared(str(program), None, 'virtualize') == 'native'
    assert templates.prepared(str(program), None, 'virtualize') == 'native'
    assert prepared == ['emulated', 'native']

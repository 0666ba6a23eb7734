"""What `zvm info` says of a host that cannot run the native engine: the requirement, not
the loader's failing call.

A hard RLIMIT_NOFILE below the loader's control descriptor (operator-guide.md: "a hard
RLIMIT_NOFILE of at least 1031") read `the probe run ended killed (None): native
engine: loader: setrlimit NOFILE (errno 1)`.
"""

from __future__ import annotations

import resource

import pytest

from zvm_core.engines import native


@pytest.mark.parametrize('hard', [512, 1030])
def test_a_low_hard_open_files_limit_is_named(monkeypatch, hard: int) -> None:
    monkeypatch.delenv('ZVM_NATIVE', raising=False)
    monkeypatch.setattr(resource, 'getrlimit', lambda which: (min(hard, 256), hard))
    monkeypatch.setattr('zvm_core.engines.native.probe.probe', lambda: pytest.fail('probed'))
    assert native._requirements.__wrapped__() == (
        f'needs a hard limit of open files (RLIMIT_NOFILE) of at least 1031; this process '
        f'has {hard} (ulimit -Hn; LimitNOFILE= of a systemd service)')


def test_enough_open_files_goes_on_to_the_probe(monkeypatch) -> None:
    monkeypatch.delenv('ZVM_NATIVE', raising=False)
    monkeypatch.setattr(resource, 'getrlimit', lambda which: (1024, 1031))
    monkeypatch.setattr(native, '_requirements', native._requirements.__wrapped__)
    monkeypatch.setattr(native, '_verdicts', {})
    monkeypatch.setattr('zvm_core.engines.native.probe.probe', lambda: ('probed', False))
    assert native.unavailable() == 'probed'


def test_a_probe_a_busy_moment_failed_is_not_the_host_s_verdict(monkeypatch) -> None:
    # its user had too many descriptors in flight (ETOOMANYREFS): before, the process
    # (a pool's worker) ran emulated, or refused native runs, for the rest of its life
    answers = [('the probe run ended killed (None): native engine: loader: cannot pass the '
                'listener (errno 109): ...', True), (None, False)]
    monkeypatch.setattr(native, '_requirements', lambda: None)
    monkeypatch.setattr(native, '_verdicts', {})
    monkeypatch.setattr('zvm_core.engines.native.probe.probe', lambda: answers.pop(0))
    assert 'errno 109' in native.unavailable()
    assert native.unavailable() is None
    assert native.unavailable() is None and answers == []     # kept: probed no more

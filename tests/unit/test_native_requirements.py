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
    assert native.unavailable.__wrapped__() == (
        f'needs a hard limit of open files (RLIMIT_NOFILE) of at least 1031; this process '
        f'has {hard} (ulimit -Hn; LimitNOFILE= of a systemd service)')


def test_enough_open_files_goes_on_to_the_probe(monkeypatch) -> None:
    monkeypatch.delenv('ZVM_NATIVE', raising=False)
    monkeypatch.setattr(resource, 'getrlimit', lambda which: (1024, 1031))
    monkeypatch.setattr('zvm_core.engines.native.probe.probe', lambda: 'probed')
    assert native.unavailable.__wrapped__() == 'probed'


def test_a_fuel_limit_on_the_native_engine_says_where_either_is_set() -> None:
    # a cluster's node was told to use `--engine emulated`, a flag of zvm's, while the
    # limit was the proxy's zerovm_fuel and the engine the object server's
    from zvm_core import engines
    with pytest.raises(engines.EngineError) as e:
        engines.choose('native', fuel=True)
    for where in ('zvm --fuel', 'limits.fuel', 'zerovm_fuel', '--engine emulated',
                  'zerovm_engine'):
        assert where in str(e.value)

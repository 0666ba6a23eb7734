"""``zvm``'s commands keep a native probe that found the host able on disk.

Every ``zvm run`` and ``zvm info`` spawned a loader to probe the host (~7 ms of CPU,
15-30 ms).  The verdict is now kept, keyed by what decides it; a failure is not
kept; a kept verdict that a run then proves wrong is dropped and the host probed
again, the user told what it found.
"""

from __future__ import annotations

import pytest

from zvm_core import cli, executor
from zvm_core.engines import native
from zvm_core.engines.native import loader, probe
from zvm_core.report import Report


@pytest.fixture
def probes(monkeypatch, tmp_path) -> list[str | None]:
    """The probes' next answers (each run pops one); a private cache; fresh ``_Kept``s."""
    monkeypatch.setenv('ZVM_NATIVE_CACHE', str(tmp_path / 'cache'))
    monkeypatch.delenv('ZVM_NATIVE_NAMESPACES', raising=False)
    monkeypatch.delenv('ZVM_ENGINE', raising=False)
    fake_loader = tmp_path / 'loader'
    fake_loader.write_bytes(b'\x7fELF')
    monkeypatch.setattr(loader, 'loader_path', lambda: fake_loader)
    answers: list[str | None] = []
    monkeypatch.setattr(probe, '_probe', lambda code, tsc: answers.pop(0))
    monkeypatch.setattr(probe, '_kept', set())
    monkeypatch.setattr(native, 'unavailable', native._Kept(probe.probe))
    monkeypatch.setattr(native, 'tsc_unavailable', native._Kept(probe.probe_tsc))
    return answers


def _verdicts(tmp_path) -> list[str]:
    where = tmp_path / 'cache' / 'verdicts'
    return sorted(p.name.partition('-')[0] for p in where.iterdir()) if where.exists() else []


def test_a_probe_that_found_the_host_able_is_kept_and_used(probes, tmp_path) -> None:
    probes += [None]
    with probe.remembered():
        assert probe.probe() is None
        assert not probe.recalled('native')
        assert probe.probe() is None        # from the disk: no answer left to pop
        assert probe.recalled('native')
    assert _verdicts(tmp_path) == ['native']


def test_outside_remembered_every_probe_runs(probes, tmp_path) -> None:
    probes += [None, 'seccomp: Invalid argument']
    assert probe.probe() is None
    assert probe.probe() == 'seccomp: Invalid argument'
    assert _verdicts(tmp_path) == []


def test_a_failure_is_not_kept(probes, tmp_path) -> None:
    probes += ['seccomp: Invalid argument', None]
    with probe.remembered():
        assert probe.probe() == 'seccomp: Invalid argument'
        assert _verdicts(tmp_path) == []
        assert probe.probe() is None
    assert _verdicts(tmp_path) == ['native']


@pytest.mark.parametrize('change', ['loader', 'namespaces', 'garbled'])
def test_a_verdict_whose_key_changed_is_probed_again(change, probes, tmp_path,
                                                     monkeypatch) -> None:
    probes += [None, None]
    with probe.remembered():
        probe.probe()
        if change == 'loader':          # another build of the loader (another gcc)
            (tmp_path / 'loader').write_bytes(b'\x7fELF, longer')
        elif change == 'namespaces':
            monkeypatch.setenv('ZVM_NATIVE_NAMESPACES', 'off')
        else:
            (kept,) = (tmp_path / 'cache' / 'verdicts').iterdir()
            kept.write_text(kept.read_text()[:-3])
        assert probe.probe() is None
        assert not probe.recalled('native')
    assert probes == []
    assert _verdicts(tmp_path) == ['native']       # the old one went


def test_the_tsc_probe_is_kept_apart(probes, tmp_path) -> None:
    probes += [None, 'ptrace: Operation not permitted']
    with probe.remembered():
        assert probe.probe() is None
        assert probe.probe_tsc() == 'ptrace: Operation not permitted'
    assert _verdicts(tmp_path) == ['native']


def test_zvm_info_says_a_verdict_is_kept(probes, capsys) -> None:
    probes += [None, None]
    assert cli.main(['info']) == 0
    assert 'native: available\n' in capsys.readouterr().out
    for kept in (native.unavailable, native.tsc_unavailable):
        kept.forget()
    assert cli.main(['info']) == 0
    shown = capsys.readouterr().out
    assert 'native: available (an earlier probe, kept)\n' in shown
    assert 'native rdtsc: answered (an earlier probe, kept)\n' in shown


@pytest.mark.parametrize('again, said', [
    ('seccomp: Invalid argument', 'zvm: a kept probe said the native engine runs here; '
     'probed again: it cannot (seccomp: Invalid argument); the next run does not use it\n'),
    (None, "zvm: a kept probe said the native engine runs here; probed again: it can: "
     "the failure is the host's, retry\n")])
def test_a_run_the_host_killed_drops_a_kept_verdict(again, said, probes, tmp_path, guest,
                                                    monkeypatch, capfd) -> None:
    killed = Report('killed', None, 'native engine: loader: seccomp (errno 22)',
                    engine='native', host_failure=True)
    monkeypatch.setattr(executor, 'run', lambda *a, **kw: killed)
    program = str(guest('exitcode'))
    probes += [None, again]
    with probe.remembered():
        probe.probe()                       # an earlier zvm command kept it
    native.unavailable.forget()
    assert cli.main(['run', '--engine', 'native', program]) == cli.EXIT_NOT_OK
    assert capfd.readouterr().err.endswith(said)
    assert probes == []
    assert _verdicts(tmp_path) == ([] if again else ['native'])


def test_a_run_the_host_killed_after_a_fresh_probe_says_nothing_more(probes, guest,
                                                                     monkeypatch,
                                                                     capfd) -> None:
    killed = Report('killed', None, 'native engine: loader: socketpair (errno 24)',
                    engine='native', host_failure=True)
    monkeypatch.setattr(executor, 'run', lambda *a, **kw: killed)
    probes += [None]
    assert cli.main(['run', '--engine', 'native', str(guest('exitcode'))]) == cli.EXIT_NOT_OK
    assert 'kept probe' not in capfd.readouterr().err


def test_a_probe_again_that_finds_the_host_busy_says_so(probes, tmp_path, guest, monkeypatch,
                                                        capfd) -> None:
    """A busy host's probe (``Transient``: no descriptors, a timeout) says nothing of
    whether the engine runs here, and nothing is kept either way: the next run probes
    again.  It said "it cannot (...); the next run does not use it"."""
    killed = Report('killed', None, 'native engine: loader: socketpair (errno 24)',
                    engine='native', host_failure=True)
    monkeypatch.setattr(executor, 'run', lambda *a, **kw: killed)
    busy = probe.Transient('the probe run ended killed (None): loader: socketpair (errno 24)')
    probes += [None, busy]
    with probe.remembered():
        probe.probe()
    native.unavailable.forget()
    assert cli.main(['run', '--engine', 'native', str(guest('exitcode'))]) == cli.EXIT_NOT_OK
    said = capfd.readouterr().err
    assert said.endswith('zvm: a kept probe said the native engine runs here; probed again: '
                         f'the host is busy ({busy}): retry\n'), said
    assert _verdicts(tmp_path) == []

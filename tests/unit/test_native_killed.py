"""A native guest killed by SIGKILL from outside (the OOM killer, an operator) is the
host's failure (``killed``, ``host_failure``: the proxy runs the node elsewhere, 503
if nowhere), not the user's ``timeout``: only its CPU limit's SIGKILL is, and that
comes once it has had the CPU time."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest

from zvm_core.elf import load_program
from zvm_core.engines import native
from zvm_core.engines.native import supervisor


def test_a_template_child_killed_from_outside_as_its_run_starts(guest, monkeypatch) -> None:
    if native.unavailable():
        pytest.skip(f'this host cannot run the native engine: {native.unavailable()}')
    program = load_program(str(guest('hello')))
    start = supervisor.Template.start

    def killed_as_it_starts(child, spec) -> None:
        start(child, spec)
        os.kill(child.pid, signal.SIGKILL)
    template = supervisor.Template(program, 32 << 20)
    try:
        monkeypatch.setattr(supervisor.Template, 'start', staticmethod(killed_as_it_starts))
        report = supervisor.run(program, [], ['hello'], {}, memory=32 << 20, timeout=10.0,
                                template=template)
        assert (report.status, report.host_failure) == ('killed', True), report
        assert report.message == ('native engine: the guest was killed (SIGKILL) by its '
                                  'host, not by its limits')
        monkeypatch.setattr(supervisor.Template, 'start', staticmethod(start))
        assert supervisor.run(program, [], ['hello'], {}, memory=32 << 20, timeout=10.0,
                              template=template).status == 'ok'     # the next run
    finally:
        template.close()


@pytest.mark.parametrize(('sig', 'elapsed', 'status'), [
    (signal.SIGKILL, 0.01, 'killed'), (signal.SIGKILL, 11.0, 'timeout'),
    (signal.SIGXCPU, 10.5, 'timeout'), (signal.SIGSEGV, 0.01, 'fault')])
def test_a_sigkill_is_the_cpu_limit_only_once_the_guest_could_reach_it(
        sig: int, elapsed: float, status: str) -> None:
    """Timeout 10 s: RLIMIT_CPU is 11 s (SIGXCPU), SIGKILL a second later."""
    guest = SimpleNamespace(outcome=None, arena=SimpleNamespace(refused=0), channels={},
                            memory_limit=0)
    report = supervisor._classify(guest, sig, None, 10.0, elapsed)   # a wait status: sig
    assert report.status == status
    assert report.host_failure == (status == 'killed')

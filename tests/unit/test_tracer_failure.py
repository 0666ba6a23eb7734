"""A native run whose ``rdtsc`` tracer fails is the host's trouble, not ours.

The tracer (``zvm_core.engines.native.tsc``) seizes the guest before its first
instruction; a ptrace request that fails then or later (a ptrace policy changed
since the probe, another tracer, the host's kill) ended the run ``killed`` without
``host_failure`` (a 500, never run elsewhere), or, mid-run, as a CPU time limit
(the tracer's SIGKILL).  It is ``killed`` with ``host_failure`` now (the proxy's
503 and a run on another replica).
"""

from __future__ import annotations

import errno
import os
import signal

import pytest

from zvm_core.elf import PF_R, PF_X, Program, Segment
from zvm_core.engines import native
from zvm_core.engines.native import probe, supervisor, tsc


@pytest.fixture
def traced_program() -> Program:
    if native.unavailable() or native.tsc_unavailable():
        pytest.skip('the native engine cannot trace rdtsc on this host')
    code = probe.TSC_CODE
    return Program(sha256='tsc', entry=probe.ENTRY,
                   segments=(Segment(probe.ENTRY, len(code), PF_R | PF_X, code),),
                   code=(), phdr_addr=0, phent=56, phnum=0, tls=None, size=len(code))


def _failing(monkeypatch, request: int, err: int) -> None:
    real = tsc._ptrace

    def ptrace(req: int, pid: int, addr: int = 0, data=None) -> int:
        if req == request:
            raise OSError(err, 'refused by the test')
        return real(req, pid, addr, data)
    monkeypatch.setattr(tsc, '_ptrace', ptrace)


def _run(program: Program, template: supervisor.Template | None = None):
    return supervisor.run(program, [], ['tsc'], {}, memory=32 << 20, timeout=10.0, tsc=True,
                          template=template)


@pytest.mark.parametrize('forked', [False, True, 'seized'],
                         ids=['spawned', 'template', 'seized-when-taken-in'])
def test_a_guest_that_cannot_be_traced_is_a_host_failure(forked, traced_program,
                                                         monkeypatch) -> None:
    template = supervisor.Template(traced_program, 32 << 20, tsc=forked == 'seized') \
        if forked else None
    try:
        assert _run(traced_program, template).retcode == 42     # rdtsc's high half 0, + 42
        _failing(monkeypatch, tsc.PTRACE_SEIZE, errno.EPERM)
        report = _run(traced_program, template)
    finally:
        if template is not None:
            template.close()
    assert (report.status, report.host_failure) == ('killed', True)
    assert report.message == 'native engine: cannot trace the guest: refused by the test'


def test_a_tracer_failing_mid_run_is_a_host_failure_not_a_cpu_limit(traced_program,
                                                                    monkeypatch) -> None:
    _failing(monkeypatch, tsc.PTRACE_GETSIGINFO, errno.EIO)
    report = _run(traced_program)
    assert (report.status, report.host_failure) == ('killed', True)
    assert report.message.startswith('native engine: tracer failed: ')


def _tracer_pid(pid: int) -> int:
    with open(f'/proc/{pid}/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('TracerPid:'))


def _gone(pid: int) -> bool:
    """Reaped: not even a zombie (``/proc/PID`` of a zombie stays)."""
    try:
        os.stat(f'/proc/{pid}')
    except FileNotFoundError:
        return True
    return False


def test_a_traced_template_seizes_its_child_ahead_of_the_run(traced_program) -> None:
    """``Template(tsc=True)``: the child waiting for the next run is traced by the time
    it is taken in, off the run's path; the run answers its rdtsc as before."""
    template = supervisor.Template(traced_program, 32 << 20, tsc=True)
    try:
        template.prefork()
        template.idle()
        child = template._ready[0]
        assert child.tracer is not None and child.tracer.attached()
        assert os.path.exists(f'/proc/self/task/{_tracer_pid(child.pid)}')  # our thread's
        assert _run(traced_program, template).retcode == 42
        template.prefork()          # the ended run killed, its tracer reaps it
        template.idle()
        assert _run(traced_program, template).retcode == 42
    finally:
        template.close()


def test_a_seized_child_that_dies_before_its_run_is_reaped(traced_program) -> None:
    """Killed at the gate (its tracer thread waits for it): the run fails as the
    host's, the child is reaped, and the next run starts in a new one."""
    template = supervisor.Template(traced_program, 32 << 20, tsc=True)
    try:
        template.prefork()
        template.idle()
        pid, tracer = template._ready[0].pid, template._ready[0].tracer
        os.kill(pid, signal.SIGKILL)
        tracer.status()         # its thread is done with it (reaped, or left to the run)
        report = _run(traced_program, template)
        assert (report.status, report.host_failure) == ('killed', True), report
        assert _gone(pid)
        assert _run(traced_program, template).retcode == 42
    finally:
        template.close()


def test_a_killed_templates_seized_child_is_reaped_on_close(traced_program) -> None:
    """The template killed from outside while its child waits, traced, at the gate:
    closing it kills and reaps that child; nothing stays traced or a zombie."""
    template = supervisor.Template(traced_program, 32 << 20, tsc=True)
    template.prefork()
    template.idle()
    child, tracer = template._ready[0].pid, template._ready[0].tracer
    os.kill(template.pid, signal.SIGKILL)
    template.close()
    assert tracer.done() and _gone(child)

"""Warm native starts: a validated program and its template, kept by a pool worker.

A :class:`Warm` is what the pool's template cache holds for a native
program (``zvm_core.pool.Templates``), in place of the emulator's
``Machine``: the program loaded and validated once, whether it must be
traced for ``rdtsc``, and its :class:`~zvm_core.engines.native.Template`
(a fork server that mapped it once).  Each run is a child forked from the
never-run template; :meth:`reset`, called after the reply, forks the next
one, so a warm start only sends the run's spec (``doc/sandbox.md``).  Its
:class:`~zvm_core.engines.native.snapshot.Snapshots` resume a run whose
prefix a probe recorded from a child of that snapshot's template instead.
"""

from __future__ import annotations

from zvm_core.elf import Program
from zvm_core.engines.native.snapshot import Snapshots
from zvm_core.engines.native.supervisor import Template, run
from zvm_core.executor import Limits, SetupError
from zvm_core.report import Report
from zvm_core.validator import Verdict


class Warm:
    """One program at one memory size, ready to start natively."""

    # :meth:`reset` wakes other processes (the template forks, the ended child is
    # killed): the pool's worker lets its caller run first (``worker.worker_main``)
    reset_wakes = True

    def __init__(self, program: Program, verdict: Verdict, memory: int, tsc: bool) -> None:
        self.program, self.verdict, self.memory, self.tsc = program, verdict, memory, tsc
        self.template = Template(program, memory, tsc=tsc)
        self.image_size = self.template.image_size
        self.snapshots = Snapshots(program, memory, tsc)    # start-up (snapshot.py)

    def run(self, channels: list, argv: list[str], env: dict[str, str], seed: int,
            epoch: int, limits: Limits, image=None, ahead: int = 0,
            probe: bool = True) -> Report:
        """``ahead``: the runs that follow at once (a batch's next nodes); ``probe``:
        a run without a snapshot may record one (``Snapshots.begin``)."""
        # killed from outside: a new one.  Looked at only when no child is ready (a
        # system call per start less): a template that died after its child was
        # taken in fails the next prefork, and is replaced then (:meth:`_tend`)
        if not self.template.ready() and not self.template.alive():
            self._replace()
        try:
            report = run(self.program, channels, argv, env, self.memory, limits.timeout, seed,
                         epoch, image, tsc=self.tsc, template=self.template,
                         snapshots=self.snapshots, ahead=ahead, probe=probe)
        except SetupError as e:
            report = Report(e.status, None, str(e))
        report.engine = 'native'
        report.validation = {'state': 'cached' if self.verdict.cached else 'ok',
                             'violations': []}
        return report

    def reset(self) -> None:
        """After a run (and its reply): ask for the next run's child now."""
        self._tend('prefork')

    def idle(self) -> None:
        """The worker waits for work: take in the next run's child and reap the
        runs' (``reset`` only asks and kills: a batch's next node waits for neither)."""
        self._tend('idle')

    def trim(self) -> None:
        """A batch's request ended: its template's children beyond the next run's
        are killed (``Template.trim``)."""
        self._tend('trim')

    def waiting(self) -> list[int]:
        """The descriptors the rest of :meth:`idle` waits for (``Template.waiting``):
        the worker waits on them and on its socket, and a request comes first."""
        fds = self.template.waiting()
        if self.snapshots is not None:
            fds += self.snapshots.waiting()
        return fds

    def tend(self, fd: int) -> None:
        """A descriptor of :meth:`waiting` is ready: its step of :meth:`idle`."""
        self._tend('tend', fd)

    def _replace(self) -> None:
        """A new template in place of one that died (its processes killed and reaped)."""
        self.template.close()
        self.template = Template(self.program, self.memory, tsc=self.tsc)

    def _tend(self, step: str, *args) -> None:
        """``step`` (``prefork``, ``idle``, ``trim`` or ``tend``) of the template and of the
        snapshots.  A template that failed is replaced now, off the next run's path;
        if that fails too it stays closed, and the next run starts one (and says why
        it cannot)."""
        try:
            getattr(self.template, step)(*args)
        except OSError:
            try:
                self._replace()
                self.template.prefork()
            except Exception:   # an optimisation: the next run starts one, or says why not
                self.template.close()
        if self.snapshots is not None:
            self.snapshots.tend_step(step, *args)

    def held(self) -> int:
        """Host memory the template holds: its copy of the program."""
        return self.image_size

    def descriptors(self) -> int:
        """Descriptors its template processes hold in the worker (bounded there)."""
        return self.template.descriptors() + (self.snapshots.descriptors()
                                              if self.snapshots is not None else 0)

    def close(self) -> None:
        self.template.close()
        if self.snapshots is not None:
            self.snapshots.close()

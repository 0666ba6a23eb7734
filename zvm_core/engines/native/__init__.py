"""The native engine: validated programs on the CPU, contained by the kernel.

See ``doc/sandbox.md`` ("Engines").  :func:`unavailable` says why this host
cannot run it (None when it can), :func:`tsc_unavailable` why it cannot
answer ``rdtsc``; :func:`run` runs one validated program, spawned or forked
from a :class:`Template`.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import resource
from collections.abc import Callable

from zvm_core.engines.native import _fastcall
from zvm_core.engines.native.seccomp import CTL_FD
from zvm_core.engines.native.supervisor import Template, run

MIN_KERNEL = (5, 9)     # user notifications with CONTINUE (5.5), pidfd_open, close_range
RETRY_FIRST = 30.0      # seconds before a busy host's failed probe is run again,
RETRY_MOST = 600.0      # doubled after each busy failure up to this


class _Kept:
    """A probe's answer, kept for the process: a :class:`probe.Transient` failure (the
    host was busy) only until then (:attr:`lasts`), then probed anew, so that a worker whose
    probe timed out under load is not emulated for the rest of its life, nor pays
    the probe on every run."""

    def __init__(self, probe: Callable[[], str | None]) -> None:
        functools.update_wrapper(self, probe)
        self._probe = probe
        self._reason: str | None = None
        self._again = 0.0       # monotonic time of the next probe; inf: the answer is final
        self._wait = RETRY_FIRST

    @property
    def lasts(self) -> float:
        """Until when the last answer stands (``math.inf``: for good, or never asked)."""
        return self._again or math.inf

    def __call__(self) -> str | None:
        # the C clock: no rdtsc when asked between a batch's nodes, whose thread carries
        # the guests' flags (zvm_core.pool.worker: a busy host's probe is asked again)
        if _fastcall.monotonic() < self._again:
            return self._reason
        from zvm_core.engines.native.probe import Transient
        self._reason = self._probe()
        if isinstance(self._reason, Transient):
            self._again = _fastcall.monotonic() + self._wait
            self._wait = min(2 * self._wait, RETRY_MOST)
        else:
            self._again = math.inf
        return self._reason

    def forget(self) -> None:
        """Ask again next time (a kept verdict proved wrong: ``probe.forget``)."""
        self._again, self._wait = 0.0, RETRY_FIRST


@_Kept
def unavailable() -> str | None:
    """Why the native engine cannot run here, or None."""
    if platform.system() != 'Linux' or platform.machine() != 'x86_64':
        return f'needs Linux on x86_64, not {platform.system()} on {platform.machine()}'
    release = platform.release()
    try:
        version = tuple(int(x) for x in release.split('-')[0].split('.')[:2])
    except ValueError:
        version = (0, 0)
    if version < MIN_KERNEL:
        return (f'needs Linux {MIN_KERNEL[0]}.{MIN_KERNEL[1]} or later '
                f'(seccomp user notification, close_range); this kernel is {release}')
    if os.environ.get('ZVM_NATIVE') == 'off':
        return 'turned off by the operator (ZVM_NATIVE=off)'
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= CTL_FD:     # the loader moves its socket there
        return (f'needs a hard limit of open files (RLIMIT_NOFILE) of at least {CTL_FD + 1}; '
                f'this process has {hard} (ulimit -Hn; LimitNOFILE= of a systemd service)')
    from zvm_core.engines.native.probe import probe
    return probe()


@_Kept
def tsc_unavailable() -> str | None:
    """Why this host cannot answer ``rdtsc`` natively (None when it can): the
    guest must be traced (``tsc.py``), which ptrace restrictions may forbid."""
    reason = unavailable()
    if reason is None:
        from zvm_core.engines.native.probe import probe_tsc
        reason = probe_tsc()
    return reason


__all__ = ['Template', 'run', 'tsc_unavailable', 'unavailable']

"""The native engine: validated programs on the CPU, contained by the kernel.

See ``doc/sandbox.md`` ("Engines").  :func:`unavailable` says why this host
cannot run it (None when it can), :func:`tsc_unavailable` why it cannot
answer ``rdtsc``; :func:`run` runs one validated program, spawned or forked
from a :class:`Template`.
"""

from __future__ import annotations

import functools
import os
import platform
import resource

from zvm_core.engines.native.seccomp import CTL_FD
from zvm_core.engines.native.supervisor import Template, run

MIN_KERNEL = (5, 9)     # user notifications with CONTINUE (5.5), pidfd_open, close_range


def unavailable() -> str | None:
    """Why the native engine cannot run here, or None; probed once per process."""
    return _requirements() or _probe(False)


def tsc_unavailable() -> str | None:
    """Why this host cannot answer ``rdtsc`` natively (None when it can): the
    guest must be traced (``tsc.py``), which ptrace restrictions may forbid."""
    return unavailable() or _probe(True)


_verdicts: dict[bool, str | None] = {}      # tsc -> the probe's verdict, kept


def _probe(tsc: bool) -> str | None:
    """The probe's verdict, kept once it is the host's: a probe a busy moment failed
    (too many descriptors in flight, ETOOMANYREFS) says nothing of what it can run
    (before: a worker that started then ran emulated, or refused native runs, for
    good), and the next asks again."""
    if tsc not in _verdicts:
        from zvm_core.engines.native import probe
        reason, transient = probe.probe(probe.TSC_CODE, tsc=True) if tsc else probe.probe()
        if transient:
            return reason
        _verdicts[tsc] = reason
    return _verdicts[tsc]


@functools.cache
def _requirements() -> str | None:
    """What the host lacks, probe aside (None: nothing)."""
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
    return None


__all__ = ['Template', 'run', 'tsc_unavailable', 'unavailable']

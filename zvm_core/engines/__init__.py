"""The two engines and how a run picks one.

``emulated`` (unicorn, ``zvm_core.executor``) validates every executed block
and counts deterministic fuel; it works everywhere.  ``native``
(``zvm_core.engines.native``) runs the same validated program on the CPU in
a process the kernel confines, at native speed, without fuel.  ``auto``
(the default; ``ZVM_ENGINE`` in the environment) is native where the host
can run it and emulated when a fuel limit is asked for or it cannot.

In a pool's warm workers (the object servers, ``zvm run --repeat``) ``auto``
first runs a node of a small program (:func:`tried`) over small inputs
(:data:`TRIAL_INPUT`) emulated for :data:`TRIAL_FUEL` bytes of code: most
nodes of a job over many small objects end by then, for less than a process
costs to start; one that does not starts over natively, from the beginning,
which its channels allow
(``zvm_core.pool.worker``).  Whether a run ends within its trial is
deterministic (fuel); what differs between the engines by design (the virtual
clock, ``rdtsc``) follows the one it ended on.
"""

from __future__ import annotations

import os
import subprocess
import sys

from zvm_core.elf import Program

ENGINES = ('native', 'emulated')
CHOICES = ('auto', *ENGINES)
# auto's trial in a pool (module docstring), in bytes of code executed: 0.1-1 ms
# emulated (straight code to tight loops of loads and stores), about what a native
# node's process costs beside an emulated node (bench/scale.py); what a node that
# runs on pays at most.  wc over 4 KiB ends in 170 KB.
TRIAL_FUEL = 256 << 10
TRIAL_REASON = (f'auto: it ended within its first {TRIAL_FUEL >> 10} KiB of code, run '
                'emulated (no process to start)')
# a program with more code is not tried: an interpreter's or SQLite's start-up alone
# goes past the trial (Lua's hello: 1 MB; sqlnode over 32 rows: 1.9 MB)
TRIAL_CODE = 256 << 10
# nor a node whose inputs (the files it may read, not images) hold more: most programs'
# work grows with their input (wc: 40 bytes of code a byte; over 8 KiB it ran past its
# trial and took 1.0 ms a node against 0.5 natively, bench: over 1-6 KiB emulated won)
TRIAL_INPUT = 4 << 10
# `off` turns off the native engine, its namespaces (doc/operator-guide.md)
SWITCHES = ('ZVM_NATIVE', 'ZVM_NATIVE_NAMESPACES')


# said wherever the limit came from: zvm's options, a job node's, a proxy's
NO_FUEL = ('the native engine has no fuel: drop the fuel limit (zvm --fuel; a job node\'s '
           'limits.fuel, the proxy\'s zerovm_fuel) or use the emulated engine (zvm --engine '
           'emulated or auto; a job node\'s "engine", the object server\'s zerovm_engine)')


class EngineError(ValueError):
    """The engine asked for cannot run this job (a usage error)."""


def check_environment() -> None:
    """EngineError naming a switch set to neither ``on`` nor ``off``: anything but
    ``off`` meant on, so a typo went unseen."""
    for name in SWITCHES:
        value = os.environ.get(name)
        if value not in (None, '', 'on', 'off'):
            raise EngineError(f'{name}={value!r}: expected on or off')


def requested(engine: str | None = None) -> str:
    """``engine``, else ``ZVM_ENGINE``, else ``auto``; EngineError if unknown."""
    name = engine or os.environ.get('ZVM_ENGINE') or 'auto'
    if name not in CHOICES:
        raise EngineError(f'unknown engine {name!r}: choose one of {", ".join(CHOICES)}')
    return name


def tried(program: Program) -> bool:
    """Whether ``auto`` in a pool runs ``program`` emulated first (:data:`TRIAL_FUEL`):
    a small one (:data:`TRIAL_CODE`), known from the file alone, so that whether a
    node is tried, as how its trial ends, is the same on every host and every run."""
    return sum(s.memsz for s in program.segments if s.executable) <= TRIAL_CODE


def native_unavailable() -> str | None:
    from zvm_core.engines.native import unavailable
    return unavailable()


# the child's answer: nothing when the host can, else the reason (one line)
_ASK = ('from zvm_core.engines import native_unavailable; '
        'print((native_unavailable() or "").replace("\\n", " "))')


def native_unavailable_apart(timeout: float = 120.0) -> str | None:
    """:func:`native_unavailable` as a new process of this Python finds it, as a pool's
    workers (each such a process) will: for a process where the engine cannot run
    itself (an object server's main process, whose sockets and ``select`` eventlet
    patched: the supervisor's ``recvmsg`` and ``poll`` are not there).  ``timeout``
    covers the loader's first build."""
    try:
        done = subprocess.run([sys.executable, '-c', _ASK], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f'the probe did not finish in {timeout:.0f} s'
    except OSError as e:
        return f'the probe could not start: {e}'
    if done.returncode:
        last = done.stderr.strip().splitlines()[-1:] or [f'exit status {done.returncode}']
        return f'the probe failed: {last[0]}'
    return done.stdout.strip() or None


def available() -> dict[str, str | None]:
    """Each engine -> None if this host can run it, else why not."""
    return {'native': native_unavailable(), 'emulated': None}


def choose(engine: str | None = None, *, fuel: bool = False) -> str:
    """The engine a run uses: ``fuel`` says a fuel limit was asked for."""
    name = requested(engine)
    if name == 'emulated':
        return name
    if name == 'native':
        if fuel:
            raise EngineError(NO_FUEL)
        reason = native_unavailable()
        if reason:
            raise EngineError(f'the native engine cannot run on this host: {reason}')
        return name
    return 'emulated' if fuel or native_unavailable() else 'native'


def unavailable_reason(engine: str | None = None, *, fuel: bool = False) -> str:
    """Why ``auto`` chose the emulated engine for this host ('' when it did not, or
    when a fuel limit chose it): the report's ``engine_reason``, so that a host (or
    a worker) whose probe failed does not run everything emulated unexplained."""
    if fuel or requested(engine) != 'auto':
        return ''
    reason = native_unavailable()
    return f'the native engine cannot run on this host: {reason}' if reason else ''


def choice_lasts() -> float:
    """Until when (``time.monotonic()``) :func:`choose`, :func:`unavailable_reason` and
    ``zvm_core.prepare`` answer as they did: ``math.inf`` unless a native probe (or the
    traced one, for ``rdtsc``) failed because the host was busy, and is run again then
    (a worker keeps its choices until this)."""
    from zvm_core.engines.native import tsc_unavailable, unavailable
    return min(unavailable.lasts, tsc_unavailable.lasts)

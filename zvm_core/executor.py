"""Run a program: prepare it, run it on its engine, report.

:func:`run` is the library entry point: it prepares the program
(``zvm_core.prepare``: load, validate, choose the engine) and runs it once
(:func:`execute`) on the emulated engine (``zvm_core.engines.emulated``) or
the native one (``zvm_core.engines.native``).  The set-up both engines share
is here: the heap bounds a memory limit leaves, the initial stack and
auxiliary vector, the standard descriptors, and which limit a failure is
blamed on.  Nothing the guest does can raise into the caller: faults,
budgets and host-side errors all end as a status.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import replace

from zvm_core.channels import READ, WRITE, Channel
from zvm_core.cpu import CPUID_TABLE
from zvm_core.elf import Program
from zvm_core.limits import (  # noqa: F401 (the executor's API)
    DEFAULT_FUEL,
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUT,
    MAX_MEMORY,
    MAX_TIMEOUT,
    Limits,
)
from zvm_core.memory import MANIFEST_PAGE, STACK_SIZE, STACK_TOP, Arena, page_down, page_up
from zvm_core.prepare import Prepared, Rejected, explained, prepare
from zvm_core.report import Report
from zvm_core.syscalls.fs import Image
from zvm_core.syscalls.io import OpenFile
from zvm_core.validator import Policy

MIN_HEAP = 1 << 20
MAX_ARGS_SIZE = 256 << 10
UID = 1000
AT = dict(PHDR=3, PHENT=4, PHNUM=5, PAGESZ=6, BASE=7, FLAGS=8, ENTRY=9, UID=11, EUID=12,
          GID=13, EGID=14, PLATFORM=15, HWCAP=16, CLKTCK=17, SECURE=23, RANDOM=25,
          HWCAP2=26, EXECFN=31)
PLATFORM = b'x86_64'
# the auxiliary vector in its order (initial_stack): the entries every run has alike
(AT_PHDR, AT_PHENT, AT_PHNUM, AT_ENTRY, AT_PLATFORM, AT_RANDOM, AT_HWCAP2,
 AT_EXECFN) = (AT[k] for k in ('PHDR', 'PHENT', 'PHNUM', 'ENTRY', 'PLATFORM', 'RANDOM',
                               'HWCAP2', 'EXECFN'))
_AUX_FIXED = (AT['PAGESZ'], 4096, AT['BASE'], 0, AT['FLAGS'], 0)
_AUX_IDS = (AT['UID'], UID, AT['EUID'], UID, AT['GID'], UID, AT['EGID'], UID)
_AUX_HW = (AT['HWCAP'], CPUID_TABLE[1][5], AT['CLKTCK'], 100, AT['SECURE'], 0)


class SetupError(ValueError):
    """The run cannot start for a reason the caller gave (memory too small, args too long)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def heap_bounds(program: Program, memory: int) -> tuple[int, int]:
    """(start, size) of the heap arena: after the image, what the memory limit leaves."""
    image = sum(page_up(s.vaddr + s.memsz) - page_down(s.vaddr) for s in program.segments)
    heap_start = page_up(program.image_end())
    heap_size = page_down(min(memory - image - STACK_SIZE, MANIFEST_PAGE - heap_start))
    if heap_size < MIN_HEAP:
        raise SetupError('memory', f'memory limit of {memory} bytes leaves no heap: '
                         f'the program image takes {image} bytes and the stack '
                         f'{STACK_SIZE}; at least {MIN_HEAP} bytes of heap are needed: '
                         f'give it at least {image + STACK_SIZE + MIN_HEAP} bytes')
    return heap_start, heap_size


def initial_stack(program: Program, argv: list[bytes], envp: list[bytes],
                  at_random: bytes) -> tuple[int, bytes]:
    """argc, argv, envp, auxv and their strings below STACK_TOP (SysV ABI):
    the initial stack pointer and the bytes from there up.  Made once per run of
    a batch's node (each its own argv and env): the addresses are running sums
    and the auxiliary vector one list, not a dict and a loop (12 -> 5 us)."""
    strings = [*argv, *envp, PLATFORM]
    blob = b'\0'.join(strings) + b'\0' + at_random
    if len(blob) > MAX_ARGS_SIZE:
        raise SetupError('fault', f'arguments and environment take {len(blob)} bytes; '
                         f'the limit is {MAX_ARGS_SIZE}')
    base = (STACK_TOP - 16 - len(blob)) & ~15
    addrs = list(itertools.accumulate([len(s) + 1 for s in strings], initial=base))
    argc, envc = len(argv), len(envp)
    p = program
    words = [argc, *addrs[:argc], 0, *addrs[argc:argc + envc], 0,
             AT_PHDR, p.phdr_addr, AT_PHENT, p.phent, AT_PHNUM, p.phnum, *_AUX_FIXED,
             AT_ENTRY, p.entry, *_AUX_IDS, AT_PLATFORM, addrs[-2], *_AUX_HW,
             AT_RANDOM, addrs[-1], AT_HWCAP2, 0, AT_EXECFN, addrs[0] if argc else 0, 0, 0]
    sp = (base - 8 * len(words)) & ~15
    table = struct.pack(f'<{len(words)}Q', *words)
    return sp, table + bytes(base - sp - len(table)) + blob


def attach(channels: Iterable[Channel]) -> tuple[dict[str, Channel], dict[int, OpenFile]]:
    """The run's channels by alias, and descriptors 0-2 on the standard ones."""
    by_alias: dict[str, Channel] = {}
    for ch in channels:
        if ch.alias in by_alias:
            raise SetupError('fault', f'channel {ch.alias} declared twice')
        by_alias[ch.alias] = ch
    fds = {}
    for fd, (alias, access) in enumerate((('/dev/stdin', READ), ('/dev/stdout', WRITE),
                                          ('/dev/stderr', WRITE))):
        ch = by_alias.get(alias)
        if ch is not None and ch.mode & access:
            fds[fd] = OpenFile(ch, access)
    return by_alias, fds


def blame_limits(status: str, retcode: int | None, message: str, arena: Arena,
                 channels: Mapping[str, Channel], memory: int) -> tuple[str, str]:
    """A failure after a refused allocation or write is reported as that limit, and
    so is a run whose write the quota refused or shortened however it ended: a
    program that ignores the short write or ``EDQUOT`` (stdio does, unless it checks
    ``fclose``) exits 0 with an output that is not what it wrote, which must not
    pass for a success (the cluster would store it)."""
    if status == 'ok' and not retcode:
        cut = [_with_limits(c) for c in channels.values() if c.cut]
        if cut:
            return 'quota', (f'quota exceeded on {", ".join(cut)}: a write was refused or '
                             'cut short, the output is incomplete')
        return status, message
    if status not in ('ok', 'fault', 'fuel'):
        return status, message
    if arena.refused:
        return 'memory', (f'memory limit of {memory} bytes reached '
                          f'({arena.refused} allocation(s) refused)'
                          + (f'; then: {message}' if message else ''))
    over = [_with_limits(c) for c in channels.values() if c.refused or c.cut]
    if over:
        return 'quota', (f'quota exceeded on {", ".join(over)}'
                         + (f'; then: {message}' if message else ''))
    return status, message


def _with_limits(channel: Channel) -> str:
    """``/dev/stdout (put_size 1048576)``: a channel and the quota limits it has, so
    that a refused write says how much was allowed, as the memory limit does."""
    limits = [f'{k} {v}' for k, v in channel.quota.limits()]
    return f'{channel.alias} ({", ".join(limits)})' if limits else channel.alias


MEMORY_ETAG = '/dev/memory'

# What a fault is called, the same words under both engines: a memory access by its kind
# and whether the page was mapped, a CPU exception by its x86 vector; and ZeroVM's exit state
MEMORY_FAULTS = {('read', False): 'read of unmapped memory',
                 ('write', False): 'write to unmapped memory',
                 ('fetch', False): 'jump to unmapped memory',
                 ('read', True): 'read of protected memory',
                 ('write', True): 'write to read-only memory',
                 ('fetch', True): 'jump to non-executable memory'}
TRAPS = {0: 'divide error', 1: 'debug trap', 3: 'breakpoint (int3)', 4: 'overflow',
         5: 'bound range exceeded', 6: 'invalid opcode', 13: 'general protection fault',
         16: 'x87 floating-point error', 17: 'alignment check', 19: 'SIMD floating-point error'}
INVALID_INSTRUCTION = 'invalid or unsupported instruction'
STACK_OVERFLOW = ('stack overflow: write at {addr:#x}, below the {mib} MiB stack (into the '
                  'read-only user manifest)')
HLT_STOP = 'program stopped without calling exit (hlt; rip {rip:#x})'


def halting(signal: int, rip: int) -> str:
    """ZeroVM's exit state for a program a signal stopped."""
    return f'Signal {signal} from untrusted code: Halting at {rip:#x}'


def run(program: Program | str | os.PathLike, channels: Iterable[Channel] = (), *,
        argv: list[str] | None = None, env: Mapping[str, str] | None = None,
        limits: Limits = Limits(), seed: int = 0, epoch: int = 0,
        policy: Policy = Policy(), cache=None, image: Image | None = None,
        engine: str | None = None) -> Report:
    """Validate and run ``program`` with ``channels``; never raises for guest behaviour.

    ``image`` is the read-only file tree (tar images mounted from channels).
    ``engine`` is ``auto`` (the default, or ``ZVM_ENGINE``), ``native`` or
    ``emulated`` (``zvm_core.engines``); a fuel limit other than the default
    asks for the emulated engine.

    Raises ``OSError`` only when the program file itself cannot be read, and
    ``EngineError`` when the engine asked for cannot run the job.
    """
    channels = list(channels)
    try:
        try:
            prepared = prepare(program, policy, cache, engine=engine,
                               fuel=limits.fuel != DEFAULT_FUEL)
        except Rejected as e:
            return e.report
        if argv is None:
            argv = [os.path.basename(str(program)) if not isinstance(program, Program)
                    else 'program']
        try:
            return execute(prepared, channels, argv, env or {}, limits, seed, epoch,
                           image=image)
        except SetupError as e:
            return replace(Report(e.status, None, str(e)), engine=prepared.engine,
                           engine_reason=prepared.reason)
    finally:
        for ch in channels:
            ch.close()


def execute(prepared: Prepared, channels: list[Channel], argv: list[str],
            env: Mapping[str, str], limits: Limits, seed: int = 0, epoch: int = 0, *,
            image: Image | None = None, memory_etag: bool = False) -> Report:
    """Run a prepared program once on its engine (a fresh machine or process);
    the caller closes the channels.  Raises :class:`SetupError` when the run
    cannot start (memory too small for the program, arguments too long)."""
    if prepared.engine == 'native':
        from zvm_core.engines import native
        report = native.run(prepared.program, channels, argv, dict(env), limits.memory,
                            limits.timeout, seed, epoch, image, tsc=prepared.tsc)
    else:
        from zvm_core.engines.emulated.machine import Machine
        machine = Machine(prepared.program, prepared.verdict, limits, prepared.policy)
        try:
            report = machine.run(channels, argv, env, seed, epoch, image=image,
                                 memory_etag=memory_etag)
        finally:
            machine.close()
    report = explained(report, prepared.program, prepared.verdict)
    report.engine, report.engine_reason = prepared.engine, prepared.reason
    return report


__all__ = ['Limits', 'SetupError', 'execute', 'run']

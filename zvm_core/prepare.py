"""Load -> validate -> a prepared program: the one pipeline every caller uses.

:func:`prepare` reads the ELF file (``zvm_core.elf``), gets the validator's
verdict (cached by content, ``zvm_core.validator``) and picks the engine that
runs the program (``zvm_core.engines``).  The executor's ``run``, the ZeroVM
session, the pool's workers and the CLI all start here, so a program is
refused, and an engine chosen, the same way whoever runs it.

A program that contains ``rdtsc``/``rdtscp`` (or ``cpuid``, where the CPU
can make it fault) runs natively traced: the supervisor answers those
instructions from the virtual counter and the fixed table
(``zvm_core.engines.native.tsc``, :attr:`Prepared.tsc`).  Under ``auto`` a
program that the native engine cannot run as the emulator does runs
emulated, and :attr:`Prepared.reason` (the report's ``engine_reason``) says
why: it needs the tracer and this host forbids tracing, it can call ZeroVM's
``Jail`` (code made executable at run time: the kernel path cannot validate
it), or ZeroVM's memory etag is asked for (a digest of the guest's memory
after its exit).

Both engines run :attr:`Prepared.program`, whose code has ``ud2`` in place of
each instruction of an extension the fixed cpuid table does not list (every
VEX/EVEX encoding, TSX, SHA, GFNI, ADX, XSAVE; ``validator.as_fixed_cpu``): invalid
instructions, as on the CPU that table describes, the same under both engines
on every host.  Its ``sha256`` is still the file's (the verdict's key): it is
never validated again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from zvm_core import engines
from zvm_core.elf import ElfError, Program, load_program, release_code
from zvm_core.report import Report
from zvm_core.validator import (
    Policy,
    Unfinished,
    Verdict,
    VerdictCache,
    Violation,
    absent_at,
    absent_extensions,
    as_fixed_cpu,
    default_cache,
    validate,
)

JAIL_CODE = (0x6C69614A).to_bytes(4, 'little')     # zvm_core.zerovm.trap.TRAP_JAIL ("Jail")


class Rejected(Exception):
    """The program is not one the sandbox runs: ``report`` (status ``validation``)
    says why; ``verdict`` is the validator's when it got that far.  Status ``timeout``:
    its validation did not end by the deadline ``validator.within`` gave it."""

    def __init__(self, report: Report, verdict: Verdict | None = None) -> None:
        super().__init__(report.message)
        self.report, self.verdict = report, verdict


@dataclass(frozen=True)
class Prepared:
    """A validated program and the engine that runs it."""

    program: Program        # as the engines map it (absent extensions: ud2)
    verdict: Verdict
    policy: Policy
    engine: str             # 'native' or 'emulated'
    reason: str = ''        # why ``auto`` chose the emulated engine, when it did
    tsc: bool = False       # natively: traced, rdtsc/rdtscp/cpuid answered (see above)


def prepare(program: Program | str | os.PathLike, policy: Policy = Policy(), cache=None, *,
            engine: str | None = None, fuel: bool = False,
            memory_etag: bool = False) -> Prepared:
    """Load (unless given a Program), validate and choose the engine.

    ``engine`` is ``auto``/``native``/``emulated`` (None: ``ZVM_ENGINE``);
    ``fuel`` says a fuel limit was asked for; ``memory_etag`` that ZeroVM's
    memory digest was.  Raises ``EngineError`` (a usage error) before
    anything is read, ``OSError`` when the file cannot be read, and
    :class:`Rejected` for a file that is not a valid program.
    """
    name = engines.choose(engine, fuel=fuel)
    loaded = not isinstance(program, Program)
    if loaded:
        try:
            program = load_program(program)
        except ElfError as e:
            raise Rejected(replace(invalid_elf_report(e), engine=name)) from None
    try:
        return _prepare(program, policy, cache, engine, name, fuel, memory_etag)
    except Unfinished:
        raise Rejected(replace(unfinished_report(program), engine=name)) from None
    finally:
        if loaded:      # no one validates it again: kept (the pool keeps many), it
            release_code(program)       # would hold a second copy of the file


def _prepare(program: Program, policy: Policy, cache, engine: str | None, name: str,
             fuel: bool, memory_etag: bool) -> Prepared:
    cache = cache if cache is not None else default_cache()
    verdict, program = _verdict(program, policy, cache, name)
    reason, tsc = engines.unavailable_reason(engine, fuel=fuel), False
    if name == 'native':
        auto = engines.requested(engine) == 'auto'
        if memory_etag and not auto:
            raise engines.EngineError('the native engine has no memory etag: use the emulated '
                                      'engine (or auto) for a manifest that asks for one')
        from zvm_core.engines.native import tsc_unavailable
        traced = needs_tracer(verdict)
        untraceable = tsc_unavailable() if traced else None
        reason = emulated_because(program, memory_etag, untraceable) if auto else ''
        if reason:
            name = 'emulated'
        else:       # forced native on a host that cannot trace: rdtsc faults
            tsc = traced and untraceable is None
    return Prepared(program, verdict, policy, name, reason, tsc)


def _verdict(program: Program, policy: Policy, cache: VerdictCache,
             name: str) -> tuple[Verdict, Program]:
    """(its verdict, the program as both engines map it: ud2 for AVX, TSX...), or
    :class:`Rejected`.  A cache file whose sites of absent instructions are not in its
    code is a miss (``validator._decode``): ``as_fixed_cpu``'s ValueError is a bug."""
    verdict = validate(program, policy, cache)
    if not verdict.ok:
        raise Rejected(replace(invalid_report(verdict), engine=name), verdict)
    return verdict, as_fixed_cpu(program, verdict)


BUILD_FOR_THE_CPU = 'build without -march=native, -mavx* or -mbmi*; -march=x86-64-v2 at most'
ABSENT_FAULT = ('an instruction of an extension the sandbox\'s CPU lacks (AVX, BMI, TSX, SHA, '
                f'GFNI, ADX, XSAVE: {BUILD_FOR_THE_CPU})')


def absent_note(program: Program, verdict: Verdict) -> str:
    """What a valid program's instructions of extensions the sandbox's CPU lacks do
    (``validator.as_fixed_cpu``), for ``zvm validate`` and ``zc validate``: a program
    built with -march=native is valid, and faults where it reaches one."""
    counts = absent_extensions(program, verdict)
    which = ', '.join(f'{name} {n}' for name, n in
                      sorted(counts.items(), key=lambda c: (-c[1], c[0])))
    n = len(verdict.absent)
    one = n == 1
    return (f'{n} instruction{"" if one else "s"} of extensions the sandbox\'s CPU lacks '
            f'({which}) fault{"s" if one else ""} if reached (glibc\'s, behind cpuid, never '
            f'are): {BUILD_FOR_THE_CPU}')


def explained(report: Report, program: Program, verdict: Verdict) -> Report:
    """``report`` of a run of ``program`` with what ``verdict`` tells of it, the same
    under both engines (each run's report goes through here: ``executor.execute``, the
    pool's worker): its validation state, ``cached`` when the verdict was; an
    invalid-instruction fault (:attr:`Report.invalid_at`, set by both engines) at an
    instruction :func:`as_fixed_cpu` made ``ud2`` says so."""
    if report.status == 'fault' and report.invalid_at is not None \
            and absent_at(program, verdict, report.invalid_at):
        report.message += f': {ABSENT_FAULT}'
    report.validation = {'state': 'cached' if verdict.cached else 'ok', 'violations': []}
    return report


def emulated_because(program: Program, memory_etag: bool = False,
                     untraceable: str | None = None) -> str:
    """Why ``auto`` runs ``program`` emulated rather than natively ('' if it need not);
    ``untraceable``: why this host cannot trace a program that needs the tracer."""
    if memory_etag:
        return ('the memory etag digests the guest memory after the run: the emulated '
                'engine keeps it')
    if any(JAIL_CODE in seg.data for seg in program.segments):
        return ("the program can call ZeroVM's Jail (code made executable at run time), "
                'which only the emulated engine validates')
    if untraceable is not None:
        return ('the program contains rdtsc or cpuid, which the native engine answers '
                f'by tracing the guest, and this host cannot trace: {untraceable}')
    return ''


def needs_tracer(verdict: Verdict) -> bool:
    """Whether a native run of the program ``verdict`` passed must be traced: the
    sweep decoded ``rdtsc``/``rdtscp``, or ``cpuid`` on a CPU that makes it fault
    (elsewhere ``cpuid`` runs as the CPU answers, which doc/sandbox.md states)."""
    from zvm_core.engines.native import cpuid
    return bool(verdict.traced - {'cpuid'}
                or 'cpuid' in verdict.traced and not cpuid.unsupported())


def _invalid(violations: list[Violation], message: str) -> Report:
    return Report('validation', None, message,
                  validation={'state': 'failed',
                              'violations': [v.to_dict() for v in violations]})


def invalid_elf_report(error: ElfError) -> Report:
    return _invalid([Violation(error.rule, 0, error.message)],
                    f'not a valid program: {error}')


def unfinished_report(program: Program) -> Report:
    code = sum(r.end - r.start for r in program.code)
    return Report('timeout', None, f"the program's validation did not end within the run's "
                                   f'timeout: its {code} bytes of code take longer to validate '
                                   'on this host')


def invalid_report(verdict: Verdict) -> Report:
    first = verdict.violations[0]
    return _invalid(verdict.violations,
                    f'validation failed: {len(verdict.violations)} violation(s), '
                    f'first {first.rule} at {first.address:#x}: {first.text}')

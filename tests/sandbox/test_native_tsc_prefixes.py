"""Prefixed ``rdtsc``, ``rdtscp`` and ``cpuid`` are answered natively as the plain ones.

The validator accepts them behind legacy, segment and REX prefixes (up to the
CPU's 15-byte limit) and records them in ``Verdict.traced``; the CPU ignores
those prefixes, and so does the emulator.  The tracer once matched only the
unprefixed bytes at ``rip``: natively such a program ended ``fault`` where the
emulator ran it (``rdtsc_prefixed`` in test_equivalence runs every form under
both engines).
"""

from __future__ import annotations

import pytest

from zvm_core.elf import PF_R, PF_X, Program, Segment
from zvm_core.engines import native
from zvm_core.engines.native import cpuid, probe, supervisor, tsc
from zvm_core.validator import validate_code

RDTSC, RDTSCP, CPUID = tsc.RDTSC, tsc.RDTSCP, cpuid.CPUID


@pytest.mark.parametrize('code, insn', [
    (RDTSC, (RDTSC, 2)), (RDTSCP + b'\xc3', (RDTSCP, 3)), (CPUID, (CPUID, 2)),
    (b'\x66' + RDTSC, (RDTSC, 3)), (b'\x4f\x66' + RDTSC, (RDTSC, 4)),
    (b'\x66\xf3\x2e\x48' + RDTSCP, (RDTSCP, 7)), (b'\xf2\x66\xf3' + CPUID, (CPUID, 5)),
    (b'\x4f' * 12 + RDTSCP, (RDTSCP, 15)), (b'\x65' * 13 + CPUID, (CPUID, 15)),
    (b'\x66' * 14 + RDTSC, None),                    # 16 bytes: the CPU's #GP, delivered
    (b'\xf0' + RDTSC, None),                         # lock: #UD (SIGILL), never answered
    (b'\x66\x0f', None), (b'\x66', None), (b'', None), (b'\x0f\x05', None),
    (b'\x66\x0f\x01\xf8', None),                     # swapgs, not rdtscp
])
def test_decode_skips_the_prefixes_the_cpu_skips(code, insn):
    assert tsc.decode(code) == insn
    if insn is not None:        # the validator decodes the same instruction
        verdict = validate_code(code[:insn[1]], 0x10000)
        assert verdict.ok and verdict.instructions == 1, verdict


def _run(code: bytes):
    if native.unavailable() or native.tsc_unavailable():
        pytest.skip('the native engine cannot trace rdtsc on this host')
    program = Program(sha256='prefixed', entry=probe.ENTRY,
                      segments=(Segment(probe.ENTRY, len(code), PF_R | PF_X, code),),
                      code=(), phdr_addr=0, phent=56, phnum=0, tls=None, size=len(code))
    return supervisor.run(program, [], ['tsc'], {}, memory=32 << 20, timeout=10.0, tsc=True)


def test_the_longest_prefixed_rdtsc_is_answered_and_a_longer_one_faults():
    """13 prefixes and ``0f 31`` (15 bytes) read the counter (exit 42: its high half 0,
    + 42); one more prefix is the CPU's fault, as the validator refuses it (I1)."""
    rest = probe.TSC_CODE[len(RDTSC):]          # lea edi, [rdx+42]; exit_group
    assert _run(b'\x66' * 12 + b'\x48' + RDTSC + rest).retcode == 42
    assert not validate_code(b'\x66' * 14 + RDTSC + rest, 0x10000).ok
    report = _run(b'\x66' * 14 + RDTSC + rest)
    assert report.status == 'fault' and report.message.startswith('general protection'), report

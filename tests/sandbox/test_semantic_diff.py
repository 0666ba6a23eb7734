"""The emulated engine's result of an instruction against the CPU's: the semantic
differential test (``tests/semantic_diff.py``).

A bounded run with a fixed seed: every register-only instruction the validator
accepts, every memory form of ``semantic_diff.MEMORY`` (on a scratch buffer) and
``cmpxchg`` to a register of every size, succeeding and failing, must leave the
same general registers, rflags, x87/SSE state, memory and fault under both
engines, or differ only in a class the lead knows of (``semantic_diff.KNOWN``,
reported, not fixed yet).  The encodings the
validator refuses because of this test (rule I13, ``validator._quirk``) are
checked to be refused, and to still differ when let through (else the rule
is no longer needed).  ``bench/fuzz_semantics.py`` runs the comparison long.
"""

from __future__ import annotations

import random

import pytest
import semantic_diff
from decoder_diff import refused

from zvm_core import validator
from zvm_core.engines import native_unavailable

pytestmark = pytest.mark.skipif(native_unavailable() is not None,
                                reason=f'native engine: {native_unavailable()}')

SAMPLES, SEED = 400, 23

# encodings both decoders read alike that unicorn runs differently from the CPU, all
# refused (I13); each with the difference it makes when let through
QUIRKS = [
    ('48 9f', 'gpr'),                   # lahf with REX: unicorn writes spl, not ah
    ('41 9e', 'flags'),                 # sahf with REX: unicorn reads spl
    ('f7 c9 e8 bf 94 7d', 'fault'),     # test ecx, imm32 as f7 /1: unicorn faults
    ('f6 c8 01', 'fault'),              # test al, 1 as f6 /1
    ('0f c2 fe 97', 'fault'),           # cmpps with predicate 0x97: the CPU uses 7
    ('f2 0f c2 d6 8f', 'fault'),        # cmpsd xmm, xmm, 0x8f
    ('66 48 0f 12 e1', 'fault'),        # 66 movhlps: #UD on the CPU, unicorn runs it
    ('66 48 0f 16 e1', 'fault'),        # 66 movlhps
    ('44 0f 38 05 c8', 'fpu'),          # phsubw mm1, mm0 with REX.R: unicorn uses mm9
    ('4c 0f 3a 0f c1 03', 'fpu'),       # palignr mm0, mm1, 3 with REX.WR
    ('66 48 0f 3a 60 e6 95', 'flags'),  # pcmpestrm with REX.W: a length of -2**63 (rdx)
    ('4c c6 c6 90', 'fault'),           # mov sil, 0x90 with REX.WR: unicorn faults
    ('4c 44 c7 c5 b9 7a 04 c2', 'fault'),   # mov ebp, imm32: REX.R, after another REX
    ('f2 0f 79 ed', 'fault'),           # insertq xmm5, xmm5 (AMD SSE4a): an Intel CPU
                                        # faults, unicorn runs it
]
SETUP = {'66 48 0f 3a 60 e6 95': {'rdx': 1 << 63}}     # the registers a quirk needs


def test_register_only_instructions_agree_between_engines():
    rng = random.Random(SEED)
    result = semantic_diff.differences(semantic_diff.cases(rng, SAMPLES))
    news = [str(d) for d in result.differences if semantic_diff.explain(d) is None]
    assert news == []
    assert result.cases == SAMPLES and result.refused == 0
    # the generator reaches what matters: faults both engines agree on (among them
    # every VEX/EVEX, SHA, GFNI, ADX instruction: ud2 under both, validator.as_fixed_cpu),
    # known classes
    known = {semantic_diff.explain(d) for d in result.differences}
    assert result.faulted > 0 and {'mmx-tags', 'fp-exception-flags'} <= known, known


def test_memory_operands_agree_between_engines():
    """Loads, stores, read-modify-write (locked too), cmpxchg, xadd, SSE loads and
    stores and string instructions (rep too) on a scratch buffer: the buffer, the
    registers, rflags and x87/SSE state agree, or differ in a known class."""
    rng = random.Random(SEED)
    batch = semantic_diff.memory_cases(rng, each=4)
    result = semantic_diff.differences(batch)
    news = [str(d) for d in result.differences if semantic_diff.explain(d) is None]
    assert news == []
    assert result.cases == len(batch) and result.refused == 0 and result.faulted == 0
    # a 32-bit cmpxchg leaves RAX as the CPU does (the guard's zg_cmpxchg)
    assert [str(d) for d in result.differences if d.case.mnemonic == 'cmpxchg'] == []


def test_cmpxchg_to_a_register_agrees_between_engines():
    """Every size, half the cases equal: a 32-bit one writes EAX only when the
    comparison fails and its destination only when it succeeds, as the CPU does
    (unicorn zero-extended both every time; the guard puts back what the CPU left)."""
    batch = semantic_diff.cmpxchg_cases(random.Random(SEED))
    result = semantic_diff.differences(batch)
    assert [str(d) for d in result.differences] == []
    assert result.cases == len(batch) == 4 * len(semantic_diff.CMPXCHG_REGISTER)
    assert result.refused == result.faulted == 0


def test_a_memory_difference_is_reported_by_its_bytes():
    made = semantic_diff.memory_case(random.Random(1), 'movsq')
    assert made.text == 'movsq qword ptr [rdi], qword ptr [rsi]' and made.memory
    native, emulated = ([0, *range(16), made.flags, made.fx, bytearray(made.memory)]
                        for _ in range(2))
    emulated[19][322] ^= 1
    (diff,) = semantic_diff.compare(made, tuple(native), tuple(emulated))
    assert diff.kind == 'memory' and list(diff.fields) == ['320:328']
    assert str(diff).startswith('memory: 48 a5: movsq qword ptr [rdi], qword ptr [rsi]: '
                                'scratch[320:328] native ')


@pytest.mark.parametrize('hexcode, kind', QUIRKS)
def test_quirks_are_refused(hexcode, kind):
    code = bytes.fromhex(hexcode)
    assert refused(code)
    assert any(v.rule == 'I13' for v in validator.validate_code(code, 0x100000).violations)


def test_quirks_still_differ_when_let_through(monkeypatch):
    """Without the rule each quirk gives another result under each engine: if unicorn
    is fixed, this says the rule can go."""
    monkeypatch.setattr(validator, '_quirk', lambda *_: None)
    table = validator._table
    monkeypatch.setattr(validator, '_table', lambda policy: {
        m: kind for m, kind in table(policy).items() if kind is not validator._I13_SSE4A})
    monkeypatch.setattr(validator, '_ESCAPES', tuple(
        e for e in validator._ESCAPES if e[1] is not validator._I13_MOV_REX_R))
    rng = random.Random(SEED)
    batch = []
    for hexcode, _ in QUIRKS:
        for _ in range(3):
            made = semantic_diff.case(rng, bytes.fromhex(hexcode) + bytes(8))
            assert made is not None, hexcode
            for reg, value in SETUP.get(hexcode, {}).items():
                made.regs[semantic_diff.GPRS.index(reg)] = value
            batch.append(made)
    result = semantic_diff.differences(batch)
    found = {(d.case.code.hex(' '), d.kind) for d in result.differences}
    assert {(h, k) for h, k in QUIRKS} <= found, found


def test_a_difference_is_reported_with_its_encoding_and_both_results():
    made = semantic_diff.case(random.Random(1), bytes.fromhex('48 0f c8') + bytes(8))
    native, emulated = ([0, *made.regs, made.flags, made.fx, bytes(semantic_diff.SCRATCH)]
                        for _ in range(2))
    emulated[1] ^= 0xFF00
    (diff,) = semantic_diff.compare(made, tuple(native), tuple(emulated))
    assert str(diff) == (f'gpr: 48 0f c8: bswap rax: rax native {made.regs[0]:#x} '
                         f'emulated {made.regs[0] ^ 0xFF00:#x}')
    assert semantic_diff.explain(diff) is None

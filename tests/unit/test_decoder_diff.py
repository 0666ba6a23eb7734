"""capstone's instruction lengths against unicorn's (issue 15): the differential test.

A bounded run of ``tests/decoder_diff.py`` with a fixed seed: every
encoding where unicorn would not execute exactly the instruction capstone
decoded (and does not fault on it), crashes unicorn, or gives a different
result each time, must be refused by the validator.
``bench/fuzz_decoder.py`` runs the same comparison for as long as asked.
"""

from __future__ import annotations

import random

import pytest
from decoder_diff import _MAPPABLE, Unicorn, _Machine, compare, refused, run
from unicorn import UC_ERR_WRITE_UNMAPPED

SAMPLES, SEED = 12000, 15


def test_every_disagreement_is_refused():
    accepted = []
    counts = run(SAMPLES, SEED, accepted.append)
    assert counts['accepted'] == 0, [(o.kind, o.text) for o in accepted]
    # the generator reaches the encodings that matter (else the test proves nothing)
    assert counts['agree'] > SAMPLES // 10 and counts['harmless'] > 100
    assert counts['disagree'] > 0


@pytest.mark.parametrize('hexcode,kind', [
    # XOP: unicorn runs 8f 88 <disp32> as pop [rax+disp32], then 0f c7 f0 as rdrand
    ('8f 88 78 85 84 24 0f c7 f0 90 90', 'disagree'),
    ('8f e9 f8 01 c8', 'disagree'),                 # TBM blcfill: pop rax, then 'f8 01 c8'
    ('66 0f 85 00 00 00 00', 'disagree'),           # jne with a 16-bit offset in unicorn
    ('66 48 c2 08 00 90 90', 'disagree'),           # ret imm16 vs capstone's imm32
    ('f0 f2 0f b3 c6', 'crash'),                    # lock btr esi, eax: unicorn aborts
    ('0f 0f c1 9e', 'harmless'),                    # 3DNow!: unicorn has no 3DNow! (#UD)
    ('48 0f c7 f0', 'random'),                      # rdrand rax: host randomness
])
def test_known_disagreements(hexcode, kind):
    code = bytes.fromhex(hexcode)
    uni = Unicorn()
    try:
        outcome = compare(code + bytes(16), uni, random.Random(1))
    finally:
        uni.close()
    assert outcome.kind == kind, outcome
    assert refused(code[:outcome.capstone])


def test_agreeing_instructions_are_not_refused_for_it():
    uni = Unicorn()
    try:
        for hexcode in ('48 8b 04 24', 'f0 0f b1 0f', '8f 00', 'c4 e2 78 f7 c1',
                        '0f 31', '0f a2'):      # rdtsc (virtual counter), cpuid (table)
            code = bytes.fromhex(hexcode)
            assert compare(code + bytes(16), uni, random.Random(1)).kind == 'agree', hexcode
            assert not refused(code), hexcode
    finally:
        uni.close()


def test_the_oracle_maps_no_page_unicorn_cannot_hold():
    """setae [rcx - 0x6f] with rcx = 2 writes just below 2**64.  The oracle used to map
    that page on demand: unicorn kept it at an address cut to 52 bits and the write
    then corrupted its memory, so the oracle's process crashed on some runs and not
    others (ASLR), and the test took the crash for a disagreement the validator let
    through.  Now the write faults, as a guest's does, after the code hook gave the
    length."""
    machine = _Machine()
    size, error, _ = machine.first(bytes.fromhex('3e 66 3e 0f 93 71 91') + bytes(16))
    assert (size, error) == (7, UC_ERR_WRITE_UNMAPPED)
    assert all(end < _MAPPABLE for _begin, end, _perms in machine.uc.mem_regions())

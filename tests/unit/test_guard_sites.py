"""The guard's scan for the instructions it hooks (``_guard.sites``, C): each match
of an opcode as ``re.finditer`` finds them, at each validated start up to 14 prefixes
back, and never a read past the code or the boundary bitmap."""

from __future__ import annotations

import pytest

from zvm_core import _guard
from zvm_core.engines.emulated import guard

ALL = b'\xff' * 64          # every byte a validated start
LOCK, CMPXCHG = b'\xf0', b'\x0f\xb1'


def _sites(code: bytes, opcode: tuple[int, bytes | None], bitmap: bytes = ALL,
           base: int = 0) -> dict[int, int]:
    return guard._sites(opcode, base, code, bitmap)


@pytest.mark.parametrize('code, found', [
    (CMPXCHG, {0: 0}),
    (b'\xb1\x0f\xb1\x0f', {1: 1}),                      # an opcode cut off at the end
    (b'\x0f\x0f\xb1', {1: 1}),
    (LOCK * 15 + CMPXCHG, {15 - i: 15 for i in range(15)}),     # 14 prefixes back
    (b'\x90' + LOCK * 2 + CMPXCHG, {3: 3, 2: 3, 1: 3}),     # not over a non-prefix
])
def test_an_opcode_s_starts_are_its_own_and_its_prefixes(code, found):
    assert _sites(code, guard._CMPXCHG) == found


def test_one_byte_opcodes_and_tables_of_second_bytes():
    code = b'\x9d\xdf\xe8\xdf\xe7\xdb\xf7\xdb'
    assert _sites(code, guard.FLAG_FIXES['popf'][0][0]) == {0: 0}
    assert _sites(code, guard.FLAG_FIXES['fcomi'][0][1]) == {1: 1}
    assert _sites(code, guard.FLAG_FIXES['fcomi'][0][0]) == {5: 5}


def test_matches_do_not_overlap_as_re_finditer_s():
    table = bytes(b == 0xAA for b in range(256))
    assert _sites(b'\xaa' * 5, (0xAA, table)) == {0: 0, 2: 2}


def test_only_validated_starts_at_their_address():
    code = LOCK + CMPXCHG
    bitmap = bytes([0, 0b0100_0000])          # address 14 (the opcode) alone
    assert _sites(code, guard._CMPXCHG, bitmap, base=13) == {14: 1}
    assert _sites(code, guard._CMPXCHG, bytes(2), base=13) == {}


def test_a_bitmap_short_of_the_code_is_an_error_not_a_read_past_it():
    with pytest.raises(IndexError, match='past the bitmap'):
        _sites(b'\x90' * 64 + CMPXCHG, guard._CMPXCHG, bytes(8))


def test_the_tables_are_checked():
    with pytest.raises(ValueError, match='256-byte tables'):
        _guard.sites(CMPXCHG, 0, ALL, b'\x00' * 255, 0x0F, None)
    with pytest.raises(ValueError, match='not a byte'):
        _guard.sites(CMPXCHG, 0, ALL, bytes(256), 0x10F, None)

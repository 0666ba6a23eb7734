"""review24: check_absent decodes again only where two runs of the sweep overlap
(``_Image.shared``).  An attacker's ELF can cut its code ranges anywhere (section
headers), so a site of an absent instruction (VEX, xtest, adcx, xbegin) may lie inside
an instruction another range decoded out of sync: its ``ud2`` would then change that
one, and I14 must refuse it.  Random code of such instructions, immediates and
prefix-skipping branches, swept over random overlapping ranges: the shortcut finds
exactly the I14 violations and ud2 sites that decoding every site again finds."""

from __future__ import annotations

import random

import pytest

from zvm_core import validator

PIECES = (b'\xc5\xf9\xd4\xc1', b'\xc4\xe2\x79\x00\xc1', b'\x0f\x01\xd6', b'\x66\x0f\x38\xf6\xc1',
          b'\xb8', b'\x48\xb8', b'\x90', b'\x66', b'\xf3', b'\xeb\x01', b'\x74\x02',
          b'\xc7\xf8\x00\x00\x00\x00', b'\x62\xf1\x7d\x48\xd4\xc1')


def _check(data: bytes, ranges: list[tuple[int, int]], every_site: bool,
           monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    img = validator._Image(0x10000, bytearray(data), 0x10000, 0x10000 + len(data),
                           open_end=False)
    sweep = validator._Sweep(validator.Policy())
    ends = []
    for start, end in ranges:
        last = sweep.sweep(img, start, end, min(end + 14, len(data)))
        if last is not None and last[1] not in validator._TERMINATORS:
            ends.append(last[0])
    for off in ends:
        sweep.follow(img, off)
    sweep.check_branches([img], 'the test')
    with monkeypatch.context() as m:
        if every_site:
            m.setattr(validator, '_meets', lambda shared, site: True)
        sweep.check_absent([img])
    return ([(v.rule, v.address) for v in sweep.violations if v.rule == 'I14'],
            sorted(sweep.absent_sites))


def test_only_decoding_where_runs_overlap_misses_no_overlapping_site(monkeypatch) -> None:
    rnd = random.Random(24)
    refused = 0
    for _ in range(600):
        data = b''.join(rnd.choice(PIECES) for _ in range(rnd.randint(3, 12))) + b'\xc3'
        n = len(data)
        data += b'\0' * 16
        starts = sorted({rnd.randrange(n) for _ in range(rnd.randint(1, 4))})
        ranges = [(s, rnd.randint(s + 1, n)) for s in starts]
        fast = _check(data, ranges, False, monkeypatch)
        assert fast == _check(data, ranges, True, monkeypatch), (data.hex(), ranges)
        refused += bool(fast[0])
    assert refused > 20             # the cases test what they mean to: overlaps refused

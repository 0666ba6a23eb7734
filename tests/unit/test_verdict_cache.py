"""The verdict cache's directory is bounded: least recently used verdicts go first."""

from __future__ import annotations

import os

from zvm_core.validator import Verdict, VerdictCache


def test_disk_cache_is_bounded_and_evicts_least_recently_used(tmp_path):
    verdict = Verdict(ok=True, violations=[], boundaries=[(0, b'\x01' * 64)], instructions=1)
    keys = [f'{i:064x}' for i in range(8)]
    for i, key in enumerate(keys[:5]):
        VerdictCache(tmp_path).put(key, verdict)
        os.utime(tmp_path / f'{key}.json', (1000 + i, 1000 + i))    # put in this order
    assert VerdictCache(tmp_path).get(keys[0]).cached                # used: now the newest
    bounded = VerdictCache(tmp_path, max_files=5)
    bounded.put(keys[5], verdict)                                    # 6 > 5: down to 4
    left = {p.stem for p in tmp_path.glob('*.json')}
    assert left == {keys[0], keys[3], keys[4], keys[5]}
    assert VerdictCache(tmp_path).get(keys[1]) is None
    size = (tmp_path / f'{keys[0]}.json').stat().st_size
    VerdictCache(tmp_path, max_bytes=2 * size).put(keys[6], verdict)
    assert len(list(tmp_path.glob('*.json'))) == 1                   # 90% of 2 files
    assert VerdictCache(tmp_path).get(keys[6]).cached

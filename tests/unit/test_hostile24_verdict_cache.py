"""review24: a damaged verdict cache file is a miss (validator._read), whatever the
damage: one whose JSON has the right keys but a bitmap that is not a string (or JSON
nested past the recursion limit) raised out of the cache's read instead, so every
validation of that program failed until someone deleted the file."""

from __future__ import annotations

import json

import pytest

from zvm_core.validator import Verdict, VerdictCache, _encode

KEY = 'cd' * 32


def _good() -> dict:
    return _encode(KEY, Verdict(ok=True, violations=[], boundaries=[(0, b'\x01' * 8)],
                                instructions=1))


@pytest.mark.parametrize('damage', ['bitmap-int', 'bitmap-list', 'nested'])
def test_a_damaged_cache_file_is_a_miss(tmp_path, damage: str) -> None:
    path = tmp_path / f'{KEY}.json'
    if damage == 'nested':
        path.write_text('[' * 100_000 + ']' * 100_000)
    else:
        obj = _good()
        obj['boundaries'] = [[0, 5 if damage == 'bitmap-int' else ['AQ==']]]
        path.write_text(json.dumps(obj))
    assert VerdictCache(tmp_path).get(KEY) is None
    path.write_text(json.dumps(_good()))                 # an intact file is read
    assert VerdictCache(tmp_path).get(KEY).instructions == 1

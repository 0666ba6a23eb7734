"""zvm_core._md5.MD5 (md5.h) takes what hashlib.md5 takes, and refuses what it
refuses, with the same digests: every kind of buffer a channel may be given."""

from __future__ import annotations

import array
import hashlib
import mmap

import pytest
from zvm_core._md5 import MD5

DATA = bytes(range(256)) * 40


def _outcome(make, data) -> object:
    try:
        h = make()
        h.update(data)
        return h.hexdigest()
    except Exception as e:              # the kind of refusal, not its words
        return type(e)


@pytest.mark.parametrize('data', [
    memoryview(DATA)[::2],                                  # not contiguous
    memoryview(DATA)[::-1],
    memoryview(DATA).cast('B', (40, 256)),                  # two dimensions, contiguous
    memoryview(DATA).cast('B', (40, 256))[::2],
    array.array('d', [1.5, -2.25] * 100),                   # items of 8 bytes
    memoryview(array.array('i', range(100))).cast('B'),
    bytearray(DATA), memoryview(DATA)[3:1000], b'', None, 7, 'text',
], ids=lambda d: type(d).__name__)
def test_a_buffer_is_hashed_or_refused_as_hashlib_does(data) -> None:
    assert _outcome(MD5, data) == _outcome(hashlib.md5, data)


def test_a_read_only_mapping_and_a_resized_bytearray() -> None:
    with mmap.mmap(-1, len(DATA)) as m:
        m.write(DATA)
        ours, theirs = MD5(), hashlib.md5()
        ours.update(m)
        theirs.update(m)
        assert ours.hexdigest() == theirs.hexdigest() == hashlib.md5(DATA).hexdigest()
    grown = bytearray(DATA)
    ours = MD5(grown)
    grown *= 3                          # the object holds no view of it after the call
    ours.update(grown)
    assert ours.hexdigest() == hashlib.md5(DATA + DATA * 3).hexdigest()

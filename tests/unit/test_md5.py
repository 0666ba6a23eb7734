"""zvm_core._md5.MD5 (md5.h): the channels' running MD5 gives hashlib's digests,
whatever the sizes and however the bytes are split between updates."""

from __future__ import annotations

import hashlib
import random

import pytest
from zvm_core._md5 import MD5


def test_rfc_1321_test_suite():
    suite = {b'': 'd41d8cd98f00b204e9800998ecf8427e', b'a': '0cc175b9c0f1b6a831c399e269772661',
             b'abc': '900150983cd24fb0d6963f7d28e17f72',
             b'message digest': 'f96b697d7cb7938d525a2f31aaf161d0',
             b'abcdefghijklmnopqrstuvwxyz': 'c3fcd3d76192e4007dfb496cca67e13b',
             b'1234567890' * 8: '57edf4a22be3c955ac49da2e2107b67a'}
    for data, digest in suite.items():
        assert MD5(data).hexdigest() == digest


def test_every_length_around_the_block_and_padding_edges():
    data = bytes(range(256)) * 2
    for n in range(len(data)):
        assert MD5(data[:n]).digest() == hashlib.md5(data[:n]).digest(), n


@pytest.mark.parametrize('seed', range(20))
def test_random_sizes_and_splits_match_hashlib(seed):
    rng = random.Random(seed)
    data = rng.randbytes(rng.choice([0, 1, 63, 64, 65, 1000, 70_000, 300_000]))
    ours, theirs, at = MD5(), hashlib.md5(), 0
    while at < len(data):
        step = rng.choice([1, 3, 55, 56, 64, 128, 1024, 4095, 65536])
        piece = data[at:at + step]
        ours.update(rng.choice([bytes, bytearray, memoryview])(piece))
        theirs.update(piece)
        at += step
        if rng.random() < 0.1:      # a digest mid-way leaves the state as it was
            assert ours.hexdigest() == theirs.hexdigest()
    assert ours.hexdigest() == theirs.hexdigest() == hashlib.md5(data).hexdigest()


def test_copy_is_independent():
    a = MD5(b'head')
    b = a.copy()
    a.update(b' one')
    b.update(b' two')
    assert a.hexdigest() == hashlib.md5(b'head one').hexdigest()
    assert b.hexdigest() == hashlib.md5(b'head two').hexdigest()


def test_non_bytes_is_a_type_error():
    with pytest.raises(TypeError):
        MD5().update('text')
    with pytest.raises(TypeError):
        MD5(42)

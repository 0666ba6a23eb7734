"""The initial stack (``executor.initial_stack``) byte for byte: the bytes the
emulator and every native run start from (argv, env, auxiliary vector), pinned
by digests of what it made before it was rewritten for speed."""

import hashlib
import struct
import types

import pytest

from zvm_core.executor import AT, initial_stack

PROGRAM = types.SimpleNamespace(phdr_addr=0x10040, phent=56, phnum=7, entry=0x11234)

CASES = [
    (([b'wc'], [], b'\x01' * 16),
     0xfffffe80, 362, '8243871a30098fd8d95b50b08ed8a2bf97e77f7dbf640936e6cb9eb53b78118a'),
    (([b'wc-17', b'-l', b''], [b'SCRIPT_NAME=wc-17', b'LOCAL_OBJECT=on', b'X=\xc3\xa9'],
      bytes(range(16))),
     0xfffffe20, 456, 'dbb9cd4d14a7bf334d17ed818dd9a3fad8e06ea0670e14b740d19f11a7410d2c'),
    (([], [b'A=1'], b'\xff' * 16),
     0xfffffe80, 363, '1415f120066d19d5abe61833e5da316602c968e918e37235d92f682e741b0169'),
    (([b'a' * 1000] * 3, [b'e=' + b'v' * 333] * 7, b'\x00' * 16),
     0xffffe940, 5794, '329173719771fad029d44f6b23bb8c00f46d0f934d0e9746cc6ea56c06820b74'),
]


@pytest.mark.parametrize('args, sp, size, digest', CASES)
def test_the_same_bytes_as_before(args, sp, size, digest):
    got_sp, data = initial_stack(PROGRAM, *args)
    assert (got_sp, len(data), hashlib.sha256(data).hexdigest()) == (sp, size, digest)


def test_layout_reads_back():
    """argc, the pointers to each string, and the auxiliary vector's entries point
    where the strings are."""
    argv, envp, rand = [b'prog', b'-x'], [b'K=V'], bytes(range(16, 32))
    sp, data = initial_stack(PROGRAM, argv, envp, rand)

    def word(i: int) -> int:
        return struct.unpack_from('<Q', data, 8 * i)[0]

    def string(addr: int) -> bytes:
        at = addr - sp
        return data[at:data.index(b'\0', at)]

    assert word(0) == 2
    assert [string(word(1)), string(word(2))] == argv and word(3) == 0
    assert string(word(4)) == b'K=V' and word(5) == 0
    aux, i = {}, 6
    while word(i):
        aux[word(i)] = word(i + 1)
        i += 2
    assert aux[AT['PHDR']] == PROGRAM.phdr_addr and aux[AT['ENTRY']] == PROGRAM.entry
    assert string(aux[AT['PLATFORM']]) == b'x86_64'
    assert string(aux[AT['EXECFN']]) == b'prog'
    at = aux[AT['RANDOM']] - sp
    assert data[at:at + 16] == rand
    assert list(aux) == [AT[k] for k in AT]         # every entry, in the ABI order used

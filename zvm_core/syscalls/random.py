"""``getrandom`` from a seeded stream, so "random" bytes repeat run to run."""

from __future__ import annotations

import errno
import functools
import hashlib

from zvm_core.memory import PROT_W
from zvm_core.syscalls.errors import SysError

GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4


class SeededStream:
    """SHA-256 in counter mode over the seed: deterministic, well mixed bytes."""

    def __init__(self, seed: int, label: bytes = b'getrandom') -> None:
        self._seed, self._label = seed, label
        self._key: bytes | None = None  # made at the first take: most runs never ask
        self._counter = 0
        self._buf = b''

    def copy(self) -> SeededStream:
        """The stream at this point, going on on its own (a snapshot's, per run):
        its fields are immutable and replaced, never changed in place."""
        other = SeededStream.__new__(SeededStream)
        other.__dict__.update(self.__dict__)
        return other

    def take(self, n: int) -> bytes:
        if self._key is None:
            self._key = hashlib.sha256(self._label + b'\0' + str(self._seed).encode()).digest()
        blocks = max(0, n - len(self._buf) + 31) // 32
        first = self._counter
        self._buf += b''.join(hashlib.sha256(self._key + c.to_bytes(8, 'little')).digest()
                              for c in range(first, first + blocks))
        self._counter += blocks
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


@functools.lru_cache(maxsize=64)
def at_random(seed: int) -> bytes:
    """The 16 AT_RANDOM bytes of ``seed``: two SHA-256 (~2 us) a run otherwise, and
    every node of a job has the job's seed."""
    return SeededStream(seed, b'AT_RANDOM').take(16)


def sys_getrandom(p, buf, length, flags, *_):
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE):
        raise SysError(errno.EINVAL)
    length = min(length, 1 << 25)
    view = p.mem.view(buf, length, PROT_W)
    view[:] = p.rng.take(length)
    return length


HANDLERS = {318: ('getrandom', sys_getrandom)}

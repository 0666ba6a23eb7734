"""The calls an engine may answer once per run (``proc.CONSTANT``, answered in C by
the native supervisor) read nothing but the process's fixed identity: their
handlers give the same answer whatever the arguments and the rest of the state."""

from __future__ import annotations

import random
import types

from zvm_core.syscalls import HANDLERS, SysError
from zvm_core.syscalls.proc import CONSTANT


def _answer(handler, p, args) -> int:
    try:
        return handler(p, *args)
    except SysError as e:
        return -e.errno


def test_constant_calls_ignore_arguments_and_state():
    rng = random.Random(16)
    fresh = types.SimpleNamespace(uid=1000)
    busy = types.SimpleNamespace(uid=1000, syscalls=12345, mem=None, fds={}, runs=3)
    assert {39, 102, 186, 218, 334} <= CONSTANT    # getpid, getuid, gettid, ..., rseq
    for nr in sorted(CONSTANT):
        handler = HANDLERS[nr][1]
        first = _answer(handler, fresh, [0] * 6)
        for _ in range(50):
            args = [rng.choice([0, -1, 1 << 63, rng.getrandbits(64)]) for _ in range(6)]
            assert _answer(handler, busy, args) == first, HANDLERS[nr][0]


def test_stateful_calls_are_not_constant():
    names = {HANDLERS[nr][0] for nr in CONSTANT}
    assert not names & {'read', 'write', 'clock_gettime', 'futex', 'rt_sigaction', 'uname',
                        'brk', 'mmap', 'getrandom', 'exit_group'}

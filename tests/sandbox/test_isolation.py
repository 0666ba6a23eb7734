"""Nothing of one run reaches the next, and nothing outside the inputs shows.

A reused machine hands the next run a pristine address space (the whole heap
arena, not only what the allocator gave out), its memory charge follows the
pages runs actually dirtied, recording a snapshot changes nothing the guest
can observe, and reads from pipes do not depend on when the data arrived.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from zvm_core.channels import READ, WRITE, Channel, FdBacking, MemoryBacking
from zvm_core.elf import load_program
from zvm_core.executor import Limits, Machine
from zvm_core.validator import validate


@pytest.fixture
def machine_for():
    made = []

    def make(path, memory: int = 64 << 20, snapshots: bool = False) -> Machine:
        program = load_program(path)
        machine = Machine(program, validate(program), Limits(memory=memory),
                          snapshots=snapshots)
        made.append(machine)
        return machine
    yield make
    for m in made:
        m.close()


def machine_run(machine: Machine, argv: list[str], stdin: bytes = b''):
    out = MemoryBacking()
    channels = [Channel('/dev/stdin', MemoryBacking(stdin), READ),
                Channel('/dev/stdout', out, WRITE), Channel('/dev/stderr', MemoryBacking(), WRITE)]
    report = machine.run(channels, argv, {})
    return report, bytes(out.data)


# -- pipes -----------------------------------------------------------------------

def _slow_writer(fd: int, pieces: list[bytes], pause: float) -> threading.Thread:
    def write():
        with os.fdopen(fd, 'wb', buffering=0) as f:
            for i, piece in enumerate(pieces):
                if i:
                    time.sleep(pause)
                f.write(piece)
    t = threading.Thread(target=write)
    t.start()
    return t


def test_a_pipe_read_returns_the_whole_request_however_the_data_came():
    r, w = os.pipe()
    backing = FdBacking(r, owned=True)
    writer = _slow_writer(w, [b'abcd', b'ef', b'gh', b'ij'], 0.2)
    try:
        got = []
        for _ in range(3):
            buf = bytearray(8)
            assert backing.ready(False, time.monotonic() + 30)
            n = backing.readinto([memoryview(buf)[:3], memoryview(buf)[3:]], None)
            got.append(bytes(buf[:n]))
        assert got == [b'abcdefgh', b'ij', b'']
    finally:
        writer.join()
        backing.close()


def test_piped_stdin_gives_the_same_reads_sent_at_once_or_apart(guest, zvm):
    prog = guest('readsizes')
    outputs = []
    for pause in (0, 2.5):        # 2.5 s: the guest is reading by then
        proc = zvm.popen('run', prog, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        writer = _slow_writer(os.dup(proc.stdin.fileno()), [b'1234', b'5678', b'9'], pause)
        proc.stdin.close()
        proc.stdin = None
        out, _ = proc.communicate(timeout=60)
        writer.join()
        assert proc.returncode == 0
        outputs.append(out)
    assert outputs == [b'8\n1\n0\n'] * 2

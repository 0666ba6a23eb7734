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
from zvm_core.engines.emulated.machine import Machine
from zvm_core.executor import MEMORY_ETAG, Limits
from zvm_core.pool import ChannelSpec, Pool
from zvm_core.pool.worker import Templates


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


# -- what a run leaves in memory --------------------------------------------------

def test_memory_a_run_never_allocated_is_pristine_for_the_next(guest, machine_for):
    """A run fills 8 MiB past the break and 64 KiB of unused stack; the next run
    of the same machine (and of one that keeps snapshots) sees what a fresh one sees."""
    prog = guest('scribble')
    fresh = machine_run(machine_for(prog), ['scribble', '8', 'z'])[1]
    assert fresh.startswith(b'gap 0 ') and fresh.endswith(b' calloc 0\n')
    for snapshots in (False, True):
        machine = machine_for(prog, snapshots=snapshots)
        for fill in 'abc':
            report, out = machine_run(machine, ['scribble', '8', fill])
            assert report.status == 'ok', report.message
            assert out == fresh


def test_a_reset_gives_back_the_pages_a_run_dirtied(guest, machine_for):
    machine = machine_for(guest('scribble'), memory=256 << 20)
    idle = machine.mem.resident()
    report, _ = machine_run(machine, ['scribble', '150', 'a'])
    assert report.status == 'ok', report.message
    assert machine.mem.resident() >= idle + (150 << 20)
    machine.reset()
    assert machine.mem.resident() <= idle + (1 << 20)


def _rss(pid: int) -> int:
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) << 10
    raise AssertionError('no VmRSS')


def test_templates_are_charged_what_they_hold(guest):
    """Four templates whose runs each dirty 150 MiB of arena they never allocated
    (after their start-up: no snapshot holds it): the worker does not keep those
    pages, and the charge of each is the pages it holds."""
    prog = guest('scribble')
    with Pool(size=1, queue=1) as pool:
        (pid,) = pool.pids
        _pool_run(pool, guest('hello'))
        before = _rss(pid)
        for i in range(4):
            report = _pool_run(pool, prog, ['scribble', '150', 'abcd'[i], 'read-first'],
                               Limits(memory=(200 + 10 * i) << 20))
            assert report.status == 'ok', report.message
        _pool_run(pool, guest('hello'))      # served after the last reset
        assert _rss(pid) - before < 64 << 20
    templates = Templates(1 << 30)
    machine, _ = templates.get(str(prog), 256 << 20, 'virtualize')
    machine_run(machine, ['scribble', '150', 'a', 'read-first'])
    machine.reset()
    templates.settle(machine)
    assert machine.held() == machine.mem.resident() < 4 << 20
    assert templates._cost(machine) == machine.held() + (4 << 20)
    machine.close()


def _pool_run(pool: Pool, prog, argv=None, limits: Limits | None = None):
    with open(os.devnull, 'rb') as fin, open(os.devnull, 'wb') as fout:
        return pool.run(str(prog), [ChannelSpec('/dev/stdin', fin.fileno(), READ),
                                    ChannelSpec('/dev/stdout', fout.fileno(), WRITE)],
                        argv=argv or [prog.name], limits=limits)


# -- snapshots ---------------------------------------------------------------------

@pytest.mark.parametrize('args', [[], ['manifest']], ids=['signals', 'manifest-read'])
def test_recording_and_resuming_are_invisible(guest, machine_for, args):
    """Signal actions and mask set in the prefix survive a resume; a system call
    that reads the user manifest in the prefix sees it as a plain run does."""
    prog = guest('sigstate')
    plain = machine_run(machine_for(prog), ['sigstate', *args], b'hi\n')[1]
    assert b' usr1 handler flags 0x14000000 pipe ignored hup 1 usr2 1 int 0 ' in plain
    assert plain.endswith(b' manifest -1\n' if not args else b' manifest 0\n')
    keeping = machine_for(prog, snapshots=True)
    starts = []
    for _ in range(3):
        assert machine_run(keeping, ['sigstate', *args], b'hi\n')[1] == plain
        starts.append(keeping.start)
    assert starts == (['recorded', 'resumed', 'resumed'] if not args else ['entry'] * 3)


def test_the_memory_digest_sees_data_outside_allocations(guest, machine_for):
    """ZeroVM's memory etag hashes the unallocated arena as zero runs, but what a
    run wrote there (it may) is hashed as data: same writes, same digest."""
    prog = guest('scribble')
    digests = {}
    for fill in 'aba':
        for machine in (machine_for(prog), machine_for(prog)):
            out = MemoryBacking()
            report = machine.run([Channel('/dev/stdout', out, WRITE)],
                                 ['scribble', '2', fill, 'read-first'], {}, memory_etag=True)
            assert report.status == 'ok', report.message
            digests.setdefault(fill, set()).add(report.etags[MEMORY_ETAG])
    assert len(digests['a']) == len(digests['b']) == 1 and digests['a'] != digests['b']

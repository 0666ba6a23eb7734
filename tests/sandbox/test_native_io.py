"""System calls that move a lot or wait long, under both engines: a stream that
stops moving ends the run at its deadline (status ``timeout``), and one call
moves any amount with the same answers, quotas and etags while the native
supervisor holds a few MiB of it at a time."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading

import pytest

from tests.conftest import CLI, REPO
from zvm_core import engines
from zvm_core.channels import READ, WRITE, Channel, FdBacking, MemoryBacking

MIB = 1 << 20


def pattern(size: int) -> bytes:
    """What ``bigio write`` writes: byte i is i * 7 % 251."""
    period = bytes(i * 7 % 251 for i in range(251))
    return (period * (size // 251 + 1))[:size]


def _cli(zvm, tmp_path, *args, **kw) -> tuple[int, dict, bytes]:
    """``zvm run`` with a 2 s timeout: its exit code, report and stderr; a run that
    outlived its deadline fails the test after 60 s instead of hanging it."""
    report = tmp_path / 'report.json'
    proc = subprocess.Popen([*CLI, 'run', '--timeout', '2', '--report', report, *args],
                            cwd=REPO, env=zvm.env, stderr=subprocess.PIPE, **kw)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail('zvm run outlived its deadline by a minute')
    return proc.returncode, json.loads(report.read_text()), err


def test_stdout_a_pipe_nobody_drains_ends_the_run_at_its_deadline(guest, zvm, tmp_path,
                                                                  engine):
    """The supervisor's write to a full pipe blocked past the deadline: the run never
    ended (nor did ``zvm run``)."""
    r, w = os.pipe()            # 1 MiB fills the pipe; 8 took the emulator 2 s to make under load
    try:
        code, report, err = _cli(zvm, tmp_path, guest('bigio'), 'write', '1', stdout=w,
                                 stdin=subprocess.DEVNULL)
    finally:
        os.close(r)
        os.close(w)
    assert (code, report['status']) == (125, 'timeout'), err
    assert report['message'] == 'wall-clock timeout while writing a pipe'


def test_stdin_a_fifo_whose_writer_stays_open_ends_the_run_at_its_deadline(
        guest, zvm, tmp_path, engine):
    fifo = tmp_path / 'fifo'
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)        # never writes, never closes
    try:
        with open(fifo, 'rb') as stdin:
            code, report, err = _cli(zvm, tmp_path, '--stdout', os.devnull, guest('bigio'),
                                     'read', '1', stdin=stdin)
    finally:
        os.close(writer)
    assert (code, report['status']) == (125, 'timeout'), err
    assert report['message'] == 'wall-clock timeout while reading /dev/stdin'


@pytest.mark.parametrize('mode', ['write', 'writev'])
def test_a_pipe_read_slowly_gets_a_large_write_whole(guest, engine, mode):
    """A write waits for room piece by piece and answers the whole count."""
    from zvm_core.executor import Limits, run
    r, w = os.pipe()
    got = bytearray()
    reader = threading.Thread(target=_drain, args=(r, got))
    reader.start()
    err = MemoryBacking()
    try:
        report = run(guest('bigio'), [Channel('/dev/stdout', FdBacking(w, owned=False), WRITE),
                                      Channel('/dev/stderr', err, WRITE)],
                     argv=['bigio', mode, '3'], limits=Limits(timeout=60), engine=engine)
    finally:
        os.close(w)
        reader.join()
        os.close(r)
    assert report.status == 'ok', report
    assert bytes(err.data) == f'{mode} = {3 * MIB} errno=0\n'.encode()
    assert got == pattern(3 * MIB)
    assert report.etags['/dev/stdout'] == hashlib.md5(got).hexdigest()


def _drain(fd: int, into: bytearray) -> None:
    while chunk := os.read(fd, 5000):
        into.extend(chunk)


def test_a_stuck_pipe_leaves_no_process_behind(guest, engine):
    from tests.sandbox.test_native import _children
    from zvm_core.executor import Limits, run
    r, w = os.pipe()
    unstick = threading.Timer(30, _drain, [r, bytearray()])    # a regression fails, not hangs
    unstick.start()
    try:
        report = run(guest('bigio'), [Channel('/dev/stdout', FdBacking(w, owned=False), WRITE),
                                      Channel('/dev/stdin', MemoryBacking(), READ)],
                     argv=['bigio', 'write', '1'], limits=Limits(timeout=1), engine=engine)
    finally:
        unstick.cancel()
        os.close(w)
        unstick.join()
        os.close(r)
    assert (report.status, report.message) == ('timeout',
                                               'wall-clock timeout while writing a pipe')
    assert not [c for c in _children() if c.startswith('loader')]


def fnv(data: bytes) -> str:
    """``bigio read``'s hash of what it read."""
    h = 1469598103934665603
    for b in data:
        h = (h ^ b) * 1099511628211 % (1 << 64)
    return f'{h:016x}'


STEPS = 9 * MIB + 4096          # two 4 MiB steps and a part; thirds cross step boundaries


@pytest.mark.parametrize('mode', ['write', 'writev'])
@pytest.mark.parametrize('put_size', [None, 5 * MIB + 3])
def test_a_write_of_many_steps_is_one_call(guest, zvm, engine, mode, put_size):
    """Natively a call is copied from the guest a step at a time: the answer, the
    bytes, the counters and the etag are those of one call, quota clip included."""
    opts = () if put_size is None else ('--quota', f'/dev/stdout=put_size:{put_size}')
    run = zvm.run(guest('bigio'), mode, '9', opts=opts)
    size = 9 * MIB if put_size is None else put_size
    # a write the quota cut short is not a success, whatever the program does next
    assert (run.status, run.report['retcode']) == ('ok' if put_size is None else 'quota', 0), run
    assert run.stderr == f'{mode} = {size} errno=0\n'.encode()
    assert run.stdout == pattern(9 * MIB)[:size]
    assert run.report['etags']['/dev/stdout'] == hashlib.md5(run.stdout).hexdigest()
    out = run.accounting['channels']['/dev/stdout']
    assert (out['writes'], out['write_bytes']) == (1, size)


@pytest.mark.parametrize('mode', ['read', 'readv'])
@pytest.mark.parametrize(('given', 'get_size'), [(10 * MIB, None), (5 * MIB + 7, None),
                                                 (10 * MIB, 6 * MIB + 1)])
def test_a_read_of_many_steps_is_one_call(guest, zvm, engine, mode, given, get_size):
    """A read stops at the end of the data or of the quota, whichever step that is."""
    data = pattern(given)[::-1]
    opts = () if get_size is None else ('--quota', f'/dev/stdin=get_size:{get_size}')
    run = zvm.run(guest('bigio'), mode, '9', stdin=data, opts=opts)
    size = min(9 * MIB, given, get_size or given)
    assert run.status == 'ok', run
    assert run.stderr == f'{mode} = {size} errno=0\nfnv {fnv(data[:size])}\n'.encode()
    got = run.accounting['channels']['/dev/stdin']
    assert (got['reads'], got['read_bytes']) == (1, size)


@pytest.mark.parametrize('mib', ['0', '9'])
def test_a_buffer_partly_out_of_reach_is_efault_and_moves_nothing(guest, zvm, engine, mib):
    """Linux would move the bytes before the bad page and answer a short count; both
    engines answer EFAULT and move nothing, whatever step the bad page is in: every
    byte a call names is checked before the first moves."""
    run = zvm.run(guest('bigio'), 'edge', mib, stdin=b'abcdefghijklmnop')
    assert run.status == 'ok', run
    assert run.stderr == (b'write = -1 errno=14\nwritev = -1 errno=14\nread = -1 errno=14\n'
                          b'readv = -1 errno=14\nread 10 = 10 errno=0\ngot abcdefghij\n')
    assert run.stdout == b''
    assert run.accounting['channels']['/dev/stdout']['writes'] == 0


PEAK = '''
import os, sys
from zvm_core.channels import WRITE, Channel, FdBacking
from zvm_core.executor import Limits, run
out = os.open(os.devnull, os.O_WRONLY)
report = run(sys.argv[1], [Channel('/dev/stdout', FdBacking(out, owned=False), WRITE)],
             argv=['bigio', 'write', '256'], limits=Limits(memory=320 << 20), engine='native')
assert report.status == 'ok', report
hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM:'))
print(int(hwm.split()[1]) >> 10)
'''


def test_the_native_supervisor_holds_a_step_of_a_large_write_not_all(guest, zvm):
    """A 256 MiB write held 256 MiB in the supervisor (a copy of the whole call);
    now a step or two of 4 MiB."""
    if engines.native_unavailable():
        pytest.skip(engines.native_unavailable())
    proc = subprocess.run([sys.executable, '-c', PEAK, guest('bigio')], capture_output=True,
                          cwd=REPO, env=zvm.env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout) < 160, f'supervisor peak RSS {int(proc.stdout)} MiB'


def mapfile_line(length: int, data: bytes, spots: list[range]) -> str:
    """What ``mapfile LENGTH`` prints for a file whose only non-zero bytes are in
    ``spots``."""
    h, nonzero = 0xCBF29CE484222325, 0
    for i in sorted({i for spot in spots for i in spot if data[i]}):
        for b in (*i.to_bytes(8, 'little'), data[i]):
            h = (h ^ b) * 0x100000001B3 & (1 << 64) - 1
        nonzero += 1
    return f'{length} {h:016x} {nonzero}\n'


def test_mapping_a_sparse_file_writes_only_its_data(guest, engine, monkeypatch):
    """A file mmap fills a fresh (zero) mapping: chunks of the file that are all zeros
    are not written into the guest, so mapping a sparse 48 MiB file costs the guest
    (natively its process, emulated the host pages behind it) what its data does; the
    guest sees every byte, zeros and data, at its place."""
    from zvm_core.engines.emulated.memory import AddressSpace
    from zvm_core.engines.native.memory import ProcessMemory
    from zvm_core.executor import Limits, run
    size = 48 * MIB
    data = bytearray(size)
    spots = [range(5 * MIB + 7, 5 * MIB + 3007),             # inside one 1 MiB chunk
             range(17 * MIB - 1, 17 * MIB + 1), range(size - 10, size)]   # across two; last
    for spot in spots:
        data[spot.start:spot.stop] = pattern(len(spot))[::-1]
    written: list[int] = []
    for cls in (AddressSpace, ProcessMemory):
        real = cls.write

        def counting(self, addr, chunk, real=real):
            written.append(len(chunk))
            return real(self, addr, chunk)
        monkeypatch.setattr(cls, 'write', counting)
    out = MemoryBacking()
    report = run(guest('mapfile'), [Channel('/dev/input', MemoryBacking(bytes(data)), READ,
                                            random=True),
                                    Channel('/dev/stdout', out, WRITE)],
                 argv=['mapfile', str(size + 4096), '0'], limits=Limits(memory=128 * MIB),
                 engine=engine)
    assert report.status == 'ok', report
    assert out.data.decode() == mapfile_line(size + 4096, data, spots)
    assert sum(written) <= 4 * MIB, sum(written)        # 3 chunks, not 48 MiB


def test_host_i_o_that_fails_is_the_host_s_trouble(guest, engine, tmp_path):
    """A channel whose host side fails (here a directory for stdin: EISDIR) ends the run
    ``killed`` flagged as the host's trouble (``Report.host_failure``: a 503 at the
    proxy, which may run the node on another replica), not as a bug of ours."""
    from zvm_core.executor import Limits, run
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        report = run(guest('cat'), [Channel('/dev/stdin', FdBacking(fd, owned=False), READ),
                                    Channel('/dev/stdout', MemoryBacking(), WRITE)],
                     argv=['cat'], limits=Limits(timeout=30), engine=engine)
    finally:
        os.close(fd)
    assert (report.status, report.host_failure) == ('killed', True), report
    assert report.message.startswith('host I/O failed in '), report
    assert report.to_dict()['host_failure'] is True

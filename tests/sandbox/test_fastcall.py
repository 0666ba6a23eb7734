"""The native supervisor's C loop (``engines/native/fastcall.c``) answers channel
reads and writes exactly as the personality does.

A hostile guest (``tests/programs/fastcall.c``) makes those calls with every
argument the C path must refuse or hand on -- huge and wrapping lengths, bad
pointers, iovec counts over IOV_MAX, overlapping iovecs, pages whose protection
changed, descriptors closed, dup'ed or of the wrong access, quotas reached on
the exact byte -- and its output, its stderr (one line per call, with the
result) and its report (status, counters, etags, digests) must be the same
natively with the C path, natively without it (the personality alone), and
under the emulator.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal

import pytest

from tests.conftest import in_child
from tests.sandbox.test_programs import text_input
from zvm_core import engines
from zvm_core.channels import (
    READ,
    WRITE,
    Channel,
    FdBacking,
    FileBacking,
    MemoryBacking,
    Quota,
    TailBacking,
)
from zvm_core.engines.native import supervisor
from zvm_core.executor import run

pytestmark = pytest.mark.skipif(engines.native_unavailable() is not None,
                                reason=f'native engine: {engines.native_unavailable()}')

WAYS = [('native', True), ('native', False), ('emulated', None)]


def _backing(kind: str, path, mode: int):
    if kind.startswith('tail:'):        # stdout kept in memory (a batch node's), stdin a file
        if mode == WRITE:
            return TailBacking(int(kind[5:]))
        kind = 'file'
    if kind == 'fd':
        return FdBacking.open(path, mode)
    if kind == 'null':          # output discarded, input empty: the file is not used
        return FdBacking(os.open(os.devnull, (os.O_RDONLY if mode == READ else os.O_WRONLY)
                                 | os.O_CLOEXEC), owned=True)
    if mode == READ:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return FileBacking(fd, end=os.fstat(fd).st_size)
    return FileBacking(os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644),
                       end=0)


def _run(monkeypatch, tmp_path, program, args, kind, data, way, stdin_quota=None,
         stdout_quota=None):
    engine, fast = way
    if fast is not None:
        monkeypatch.setattr(supervisor, 'FAST_PATH', fast)
    src, out = tmp_path / 'in', tmp_path / f'out-{engine}-{fast}'
    src.write_bytes(data)
    err = MemoryBacking()
    chans = [Channel('/dev/stdin', _backing(kind, src, READ), READ,
                     quota=stdin_quota or Quota(), tagged=True),
             Channel('/dev/stdout', _backing(kind, out, WRITE), WRITE,
                     quota=stdout_quota or Quota()),
             Channel('/dev/stderr', err, WRITE)]
    try:
        report = run(program, chans, argv=[program.name, *args], engine=engine)
    finally:
        for ch in chans:
            ch.close()
    assert report.engine == engine, report
    digests = {ch.alias: ch.digest() for ch in chans}
    if isinstance(chans[1].backing, TailBacking):
        return report, bytes(chans[1].backing.data), bytes(err.data), digests
    return report, out.read_bytes() if out.exists() else b'', bytes(err.data), digests


def _same(results):
    (first, *_), rest = results[0], results[1:]
    for report, out, err, digests in rest:
        assert (report.status, report.retcode, report.message) == \
            (first.status, first.retcode, first.message)
        assert out == results[0][1]
        assert err == results[0][2]
        assert digests == results[0][3]
        assert report.etags == first.etags
        assert report.accounting.channels == first.accounting.channels
        assert report.accounting.syscalls == first.accounting.syscalls


@pytest.mark.parametrize('kind', ['fd', 'file'])
def test_hostile_arguments_same_with_and_without_the_c_path(guest, monkeypatch, tmp_path, kind):
    data = text_input(3000)
    results = [_run(monkeypatch, tmp_path, guest('fastcall'), ['edges'], kind, data, way)
               for way in WAYS]
    report, out, err, _ = results[0]
    assert report.status == 'ok' and report.retcode == 0, report
    lines = err.decode().splitlines()
    assert 'writev(1025) = -1 errno=22' in lines
    assert 'writev(one bad base) = -1 errno=14' in lines
    assert 'write(into the none page) = -1 errno=14' in lines
    assert 'write(closed 1) = -1 errno=9' in lines
    assert 'write(the copy after close) = 7 errno=0' in lines
    assert 'readv(into rodata) = -1 errno=14' in lines
    assert 'writev(overlapping) = 150 errno=0' in lines
    # review9: the iovec array, read by pread (no page protection holds it), in a page
    # mprotect made unreadable, or crossing into or out of one, is EFAULT by the table
    for where in ('in a none page', 'crossing into a none page', 'crossing out of a none page',
                  'in a write-only page'):
        assert f'writev(array {where}) = -1 errno=14' in lines, where
    assert 'writev(array in a read page) = 7 errno=0' in lines
    assert 'writev(array crossing into a read page) = 5 errno=0' in lines
    assert 'writev(array crossing out of a read page) = 11 errno=0' in lines
    assert out.endswith(data[136:])          # 16 + 120 bytes were read before the loop
    _same(results)
    fast, slow = results[0][0], results[1][0]
    assert fast.accounting.syscalls == slow.accounting.syscalls


@pytest.mark.parametrize('kind', ['fd', 'file'])
@pytest.mark.parametrize('quota', [
    'put_size:3000,get_size:2000',          # reached on the exact byte
    'put_size:2500,get_size:1500',          # the last call clipped
    'puts:3,gets:2',                        # by calls
    'puts:0,get_size:0',                    # nothing at all
])
def test_quota_boundaries_same_with_and_without_the_c_path(guest, monkeypatch, tmp_path, kind,
                                                           quota):
    q = Quota.parse(quota)
    results = [_run(monkeypatch, tmp_path, guest('fastcall'), ['quota'], kind,
                    text_input(5000), way, stdin_quota=Quota(gets=q.gets, get_size=q.get_size),
                    stdout_quota=Quota(puts=q.puts, put_size=q.put_size))
               for way in WAYS]
    report, out, err, _ = results[0]
    assert (report.status, report.retcode) == ('quota', 0), report    # write(after) refused
    written = min(q.put_size, 1000 * q.puts)
    assert len(out) == written
    assert f'written = {written} errno=0'.encode() in err
    assert b'write(after) = -1 errno=122' in err      # EDQUOT
    assert b'read(after) = -1 errno=122' in err
    _same(results)


@pytest.fixture
def answered(monkeypatch):
    """The calls the personality in Python answers natively (one entry each)."""
    calls: list[int] = []
    real = supervisor._Supervisor._answer

    def counting(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(supervisor._Supervisor, '_answer', counting)
    return calls


def test_channel_writes_do_not_reach_python(guest, monkeypatch, tmp_path, answered):
    """The C loop serves the channel reads and writes: the personality in Python sees
    only the calls around them."""
    data = text_input(20_000)
    report, out, _, _ = _run(monkeypatch, tmp_path, guest('fastcall'), ['copy'], 'fd', data,
                             ('native', True))
    assert report.status == 'ok' and report.retcode == 0 and out == data, report
    stdin, stdout = (report.accounting.channels[c] for c in ('/dev/stdin', '/dev/stdout'))
    assert stdout.writes == len(data) // 1000 + 1 and stdin.reads == stdout.writes + 1
    assert len(answered) < report.accounting.syscalls - stdin.reads - stdout.writes + 5


@pytest.mark.parametrize('keep', [1, 999, 1000, 1001, 2500, 1 << 20])
def test_tail_writes_served_in_c_as_the_personality_serves_them(guest, monkeypatch, tmp_path,
                                                                answered, keep):
    """Writes to a TailBacking (a batch node's kept output) are served by the C loop:
    it keeps the same last ``keep`` bytes (a write longer than it, shorter, and one
    that pushes older bytes out), with the same counters and etags, as the
    personality alone and the emulator; with a quota, the same refusal (EDQUOT on
    the exact byte)."""
    data = text_input(20_000)
    results = []
    for way in WAYS:
        answered.clear()
        results.append(_run(monkeypatch, tmp_path, guest('fastcall'), ['copy'], f'tail:{keep}',
                            data, way))
        if way == ('native', True):
            in_python = len(answered)
    report, out, _, _ = results[0]
    assert report.status == 'ok' and report.retcode == 0 and out == data[-keep:], report
    _same(results)
    stdout = report.accounting.channels['/dev/stdout']
    assert stdout.writes == len(data) // 1000 + 1 and stdout.write_bytes == len(data)
    assert in_python < 10       # not the 21 writes: start-up and the exit
    quota = Quota(put_size=2500)
    results = [_run(monkeypatch, tmp_path, guest('fastcall'), ['quota'], f'tail:{keep}',
                    text_input(5000), way, stdout_quota=quota) for way in WAYS]
    report, out, err, _ = results[0]
    assert report.status == 'quota' and len(out) == min(keep, 2500), report
    assert b'written = 2500 errno=0' in err and b'write(after) = -1 errno=122' in err
    _same(results)


@pytest.mark.parametrize('args', [['0'], ['7'], ['7', 'group'], ['0x1ff'], ['-1', 'group'],
                                  ['0x10000000003']])
def test_exit_ends_the_run_without_python_per_call(guest, monkeypatch, tmp_path, answered,
                                                   args):
    """exit and exit_group are counted by the C loop and end the run with the
    personality's ``sys_exit`` (the low byte of the status), not through
    ``_answer``: the same status, count and report every way."""
    results = []
    for way in WAYS:
        answered.clear()
        results.append(_run(monkeypatch, tmp_path, guest('fastcall'), ['exit', *args], 'fd',
                            b'', way))
        if way == ('native', True):
            in_python = len(answered)
    report = results[0][0]
    assert (report.status, report.retcode) == ('ok', int(args[0], 0) & 0xFF), report
    _same(results)
    assert in_python == 0


def test_dev_null_served_in_c_as_the_personality_serves_it(guest, monkeypatch, tmp_path,
                                                           answered):
    """Writes to /dev/null and reads of it (a call there never waits nor stops short)
    are served by the C loop, with the personality's results, quotas, counters and
    etags (the same as the personality alone and the emulator)."""
    results = []
    for way in WAYS:
        answered.clear()
        results.append(_run(monkeypatch, tmp_path, guest('fastcall'), ['quota'], 'null', b'',
                            way, stdout_quota=Quota(put_size=25_000)))
        if way == ('native', True):
            in_python = len(answered)
    report, out, err, _ = results[0]
    assert report.status == 'quota' and out == b'', report   # write(after) refused
    assert b'written = 25000 errno=0' in err and b'write(after) = -1 errno=122' in err
    assert b'read = 0 errno=0' in err and b'read(after) = 0 errno=0' in err
    _same(results)
    assert report.accounting.channels['/dev/stdout'].writes == 25
    assert results[0][0].accounting.syscalls == results[1][0].accounting.syscalls
    assert in_python < 10       # not the 25 writes and the read: start-up and the refusal


def test_constant_calls_answered_in_c_as_the_personality_answers(guest, monkeypatch, tmp_path,
                                                                answered):
    """getpid, getuid, set_tid_address ... (proc.CONSTANT) and ioctl are answered by
    the C loop with what the personality's handlers return, whatever the arguments
    (ioctl: ENOTTY on an open descriptor, EBADF on any other), and arch_prctl setting
    the FS or GS base is let through to the kernel (a code wider than 32 bits is the
    personality's: EINVAL), and clock_gettime reads the personality's clock (with the
    call counted first, as it counts it; errors are its): the same results as the
    personality alone and the emulator, the same call count (the virtual clock read
    after them is the same natively), and none reaches Python (the 100 ARCH_SET_FS
    and clock_gettime calls neither)."""
    results = []
    for way in WAYS:
        answered.clear()
        results.append(_run(monkeypatch, tmp_path, guest('fastcall'), ['identity'], 'fd', b'',
                            way))
        if way == ('native', True):
            in_python = len(answered)
    lines = [r[2].decode().splitlines() for r in results]
    assert lines[0][:4] == ['sched_yield = 0 errno=0', '  changed = 0 errno=0',
                            'getpid = 1 errno=0', '  changed = 0 errno=0']
    assert 'rseq = -1 errno=38' in lines[0] and 'set_tid_address = 1 errno=0' in lines[0]
    assert lines[0].count('  changed = 0 errno=0') == len(supervisor.CONSTANT) == 12
    assert lines[0].count('  ioctl changed = 0 errno=0') == 6
    assert {line for line in lines[0] if line.startswith('ioctl(')} == {
        'ioctl(1, TIOCGWINSZ) = -1 errno=25', 'ioctl(0, TCGETS) = -1 errno=25',
        'ioctl(2, -1) = -1 errno=25', 'ioctl(7: never open) = -1 errno=9',
        'ioctl(-1) = -1 errno=9', 'ioctl(2^40 + 1) = -1 errno=9',
        'ioctl(0 after close) = -1 errno=9', 'ioctl(3 = dup(2)) = -1 errno=25'}
    assert [line for line in lines[0] if line.startswith('arch_prctl(')] == [
        'arch_prctl(ARCH_GET_FS) = 0 errno=0', 'arch_prctl(ARCH_SET_FS, same) failed = 0 errno=0',
        'arch_prctl(ARCH_SET_GS, 0) = 0 errno=0', 'arch_prctl(2^32 + ARCH_SET_FS) = -1 errno=22',
        'arch_prctl(2^63 + ARCH_SET_GS) = -1 errno=22']
    assert [line for line in lines[0] if line.startswith('clock_gettime')] == [
        'clock_gettime failed = 0 errno=0', 'clock_gettime went back = 0 errno=0',
        'clock_gettime(11) = 0 errno=0', 'clock_gettime(12) = -1 errno=22',
        'clock_gettime(-1) = -1 errno=22', 'clock_gettime(2^32 + 1) = -1 errno=22',
        'clock_gettime(NULL) = -1 errno=14', 'clock_gettime(read-only) = -1 errno=14',
        'clock_gettime(page end) = 0 errno=0']
    assert lines[0] == lines[1]                     # the clock line too: same call count
    assert lines[2][:-1] == lines[0][:-1]           # the emulator's clock counts fuel
    fast, slow = results[0][0], results[1][0]
    assert fast.accounting.syscalls == slow.accounting.syscalls > 18 * 101 + 200
    assert in_python < 70       # start-up, the lines written, the refusals


def test_timeout_in_calls_answered_in_c(guest):
    """A guest that makes only calls the C loop answers (getpid, forever) ends with
    ``timeout`` at its deadline, killed and reaped in its call."""
    from tests.sandbox.test_native import _children
    from zvm_core.executor import Limits
    report = run(guest('getpid'), [Channel('/dev/stdout', MemoryBacking(), WRITE)],
                 argv=['getpid', str(10 ** 12)], limits=Limits(timeout=1), engine='native')
    assert (report.status, report.engine) == ('timeout', 'native'), report
    assert report.accounting.syscalls > 1000
    assert not [c for c in _children() if c.startswith('loader')]     # not even a zombie


def test_small_writes_to_a_pipe_served_in_c_as_the_personality_serves_them(
        guest, monkeypatch, tmp_path, answered):
    """A write of at most PIPE_BUF bytes to a pipe is all or nothing: the C loop
    serves it when the pipe has room (RWF_NOWAIT) and hands it to the personality,
    which waits, when not.  The pipe starts full and is drained late, so both happen;
    the bytes, counters and etags are the same every way."""
    import threading
    import time
    data = text_input(20_000)
    results = []
    for way in WAYS:
        engine, fast = way
        if fast is not None:
            monkeypatch.setattr(supervisor, 'FAST_PATH', fast)
        answered.clear()
        r, w = os.pipe()
        full = 0
        os.set_blocking(w, False)
        while True:
            try:
                full += os.write(w, b'.' * 4096)
            except BlockingIOError:
                break
        os.set_blocking(w, True)
        got = bytearray()

        def drain(r=r, got=got) -> None:
            time.sleep(0.2)
            while chunk := os.read(r, 3000):
                got.extend(chunk)
        reader = threading.Thread(target=drain)
        reader.start()
        src = tmp_path / 'in'
        src.write_bytes(data)
        chans = [Channel('/dev/stdin', FdBacking.open(src, READ), READ),
                 Channel('/dev/stdout', FdBacking(w, owned=True), WRITE)]
        try:
            report = run(guest('fastcall'), chans, argv=['fastcall', 'copy'], engine=engine)
        finally:
            for ch in chans:
                ch.close()
            reader.join()
            os.close(r)
        assert report.status == 'ok' and report.retcode == 0, report
        assert got == b'.' * full + data
        results.append((report, len(answered)))
    (first, in_python), *rest = results
    for report, _ in rest:
        assert report.etags == first.etags
        assert report.accounting.channels == first.accounting.channels
        assert report.accounting.syscalls == first.accounting.syscalls      # the C loop counts
    writes = first.accounting.channels['/dev/stdout'].writes
    assert writes == len(data) // 1000 + 1
    assert in_python < writes // 2         # most went through the C loop


@pytest.mark.parametrize('kind', ['fd', 'file'])
def test_gathered_and_read_ahead_bytes_are_settled_when_python_answers(guest, monkeypatch,
                                                                       tmp_path, kind):
    """The C loop gathers a regular file's writes and reads a read-only one ahead
    (fastcall.c, ``OBUF``, ``IBUF``): when it hands a call to Python, the output file,
    its counters and the etag's MD5 hold every byte the guest was told was written,
    and the input (an FdBacking's file offset too) stands where the guest stopped;
    the output and report are the personality's."""
    seen = []
    real = supervisor._Supervisor._answer

    def looking(self):
        stdin, stdout = self.guest.fds[0].channel, self.guest.fds[1].channel
        seen.append((os.path.getsize(tmp_path / 'out-native-True'), stdout.counters.writes,
                     stdout.counters.write_bytes, stdout._md5.copy().hexdigest(),
                     stdin.counters.read_bytes,
                     os.lseek(stdin.backing.fd, 0, os.SEEK_CUR) if kind == 'fd'
                     else stdin.backing.cursor))
        return real(self)

    kib, rkib = 700, 300        # more than one buffer each: settled full, then at the uname
    data = text_input(400 << 10)
    results = []
    for way in WAYS:
        if way == ('native', True):
            monkeypatch.setattr(supervisor._Supervisor, '_answer', looking)
        results.append(_run(monkeypatch, tmp_path, guest('gather'), [str(kib), str(rkib)],
                            kind, data, way))
        monkeypatch.setattr(supervisor._Supervisor, '_answer', real)
    report, out, _, _ = results[0]
    assert report.status == 'ok' and report.retcode == 0, report
    body = b''.join(bytes([97 + k % 26]) * 1024 for k in range(kib))
    assert out == body + data[rkib << 10:(rkib + 1) << 10] + b'end\n'
    assert (len(body), kib, len(body), hashlib.md5(body).hexdigest(), rkib << 10,
            rkib << 10) in seen
    _same(results)


@pytest.mark.parametrize('kind', ['fd', 'file'])
def test_full_buffers_hashed_on_the_helper_thread_give_the_files_etag(guest, monkeypatch,
                                                                       tmp_path, kind):
    """The C loop hands a full gathered buffer's MD5 to a helper thread and gathers on
    (fastcall.c, "hashing off the serving thread"); what follows -- a write over the
    buffer, written and hashed at once, small writes gathered again -- is hashed after
    the helper's bytes: the etag is the MD5 of the file, the same on every way.  The
    serving thread has one helper, made once: runs add no thread."""
    sizes = [1024] * 300 + [600 << 10] + [1000] * 300 + [5, 300 << 10, 1]
    tasks = []
    results = []
    for way in WAYS:
        results.append(_run(monkeypatch, tmp_path, guest('writesizes'), [str(n) for n in sizes],
                            kind, b'', way))
        tasks.append(len(os.listdir('/proc/self/task')))
    report, out, _, _ = results[0]
    assert report.status == 'ok' and report.retcode == 0, report
    period = bytes(i * 7 % 251 for i in range(251))
    assert out == (period * (sum(sizes) // 251 + 1))[:sum(sizes)]
    assert report.etags['/dev/stdout'] == hashlib.md5(out).hexdigest()
    _same(results)
    again = _run(monkeypatch, tmp_path, guest('writesizes'), [str(n) for n in sizes], kind,
                 b'', WAYS[0])
    assert again[0].etags == report.etags
    # against the count after the last way: the emulated run starts the emulator's
    # watchdog thread once per process (compared with the first way's, the test failed
    # whenever it was the process's first emulated run: review9)
    assert len(os.listdir('/proc/self/task')) == tasks[-1]


@pytest.mark.parametrize('kind', ['fd', 'file'])
def test_a_run_killed_while_writing_leaves_every_acknowledged_byte(guest, monkeypatch,
                                                                    tmp_path, kind):
    """A guest killed at its deadline in the middle of gathered writes: the file holds
    exactly the bytes its counters and etag say (the buffer is written on every way
    out of the C loop), as when each write went to the file at once."""
    from zvm_core.executor import Limits
    out = tmp_path / 'out'
    chans = [Channel('/dev/stdin', MemoryBacking(), READ),
             Channel('/dev/stdout', _backing(kind, out, WRITE), WRITE),
             Channel('/dev/stderr', MemoryBacking(), WRITE)]
    try:
        report = run(guest('flood'), chans, argv=['flood'], limits=Limits(timeout=0.5),
                     engine='native')
    finally:
        for ch in chans:
            ch.close()
    assert report.status == 'timeout', report
    data = out.read_bytes()
    assert len(data) == report.accounting.channels['/dev/stdout'].write_bytes > 4096
    assert report.etags['/dev/stdout'] == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize('call', ['write', 'writev'])
@pytest.mark.parametrize('fast', [True, False])
def test_a_host_write_failure_ends_the_run_as_the_personality_ends_it(guest, tmp_path, fast,
                                                                      call):
    """A gathered write that the host refuses when the buffer is written (here: past
    RLIMIT_FSIZE, EFBIG) ends the run as a failed host write does in Python:
    ``killed``, a host failure, 'host I/O failed in <the guest's call>' (the C loop
    said 'write' of bytes gathered from writev calls)."""
    prog = guest({'write': 'flood', 'writev': 'floodv'}[call])

    def body():                 # the limit is the process's: set in a child of the test
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
        chans = [Channel('/dev/stdin', MemoryBacking(), READ),
                 Channel('/dev/stdout', _backing('file', tmp_path / 'out', WRITE), WRITE),
                 Channel('/dev/stderr', MemoryBacking(), WRITE)]
        report = run(prog, chans, argv=['flood'], engine='native')
        return [report.status, report.message, report.host_failure]
    got = in_child(body, fast)
    assert got == ['killed', f'host I/O failed in {call}: File too large', True]


@pytest.mark.parametrize('kind', ['fd', 'file'])
def test_a_read_over_the_c_buffer_left_to_python_is_not_walked_in_c(guest, monkeypatch,
                                                                     tmp_path, kind):
    """A read (or readv) of more than CAP bytes from a file with more than CAP left
    is Python's: the C loop declines it before it looks up each page of the
    guest's buffer in the protection table (up to 1 GiB of pages), not after.  A
    page of the buffer is given a key in that table that notes who looks it up:
    Python's own check alone (memory.py), never the C loop's."""
    import sys

    from zvm_core.engines.native.memory import PAGE, ProcessMemory
    looked: list[str] = []

    class Noted(int):
        """A page number that notes the caller of each comparison with it."""

        def __hash__(self) -> int:
            return int(self)

        def __eq__(self, other) -> bool:
            looked.append(os.path.basename(sys._getframe(1).f_code.co_filename))
            return False

    protect = ProcessMemory.protect

    def noting(self, start: int, end: int, prot: int) -> None:
        protect(self, start, end, prot)
        if prot == 0:       # bigio edge: the buffer's last page; the one before, noted
            self._prot[Noted(start - PAGE)] = 3
    monkeypatch.setattr(ProcessMemory, 'protect', noting)
    report, _, err, _ = _run(monkeypatch, tmp_path, guest('bigio'), ['edge', '3'], kind,
                             text_input(150_000), ('native', True))
    assert report.status == 'ok' and b'readv = -1 errno=14' in err, (report, err)
    assert looked and set(looked) == {'memory.py'}, looked


@pytest.mark.parametrize('kind', ['fd', 'file'])
@pytest.mark.parametrize('mode', ['read', 'readv', 'edge'])
@pytest.mark.parametrize('lines', [5000, 150_000])      # ~90 KiB, ~2.6 MiB
def test_reads_over_the_c_buffer_same_with_and_without_the_c_path(guest, monkeypatch, tmp_path,
                                                                  kind, mode, lines):
    """A read of more than the C loop's buffer (CAP, 1 MiB: here 3 MiB, one vector or
    three) is served in C where it ends the file within CAP bytes (the last read of
    a growing buffer, ``sort``'s), and otherwise handed to Python (a descriptor's
    CAP bytes read to see given back first), over a buffer whose last page is
    ``PROT_NONE`` always: the same answers, bytes, counters and etags on every way."""
    seen: list[int] = []
    real = supervisor._Supervisor._answer

    def looking(self):
        seen.append(int.from_bytes(self.notif[16:20], 'little'))  # seccomp_data.nr
        return real(self)

    data = text_input(lines)
    results = []
    for way in WAYS:
        if way == ('native', True):
            monkeypatch.setattr(supervisor._Supervisor, '_answer', looking)
        results.append(_run(monkeypatch, tmp_path, guest('bigio'), [mode, '3'], kind, data,
                            way))
        monkeypatch.setattr(supervisor._Supervisor, '_answer', real)
    report, _, err, _ = results[0]
    assert report.status == 'ok' and report.retcode == 0, report
    reads = [nr for nr in seen if nr in (0, 19)]                # read, readv
    if mode == 'edge':
        assert b'read = -1 errno=14' in err and b'readv = -1 errno=14' in err
        assert f'read 10 = 10 errno=0\ngot {data[:10].decode()}'.encode() in err
    else:
        assert f'{mode} = {len(data)} errno=0'.encode() in err
        assert len(reads) == (len(data) > 1 << 20), seen
    assert report.accounting.channels['/dev/stdin'].read_bytes == \
        (10 if mode == 'edge' else len(data))
    _same(results)

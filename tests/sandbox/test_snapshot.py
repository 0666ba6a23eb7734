"""Start-up snapshots (zvm_core.prefix, each engine's ``snapshot``): resumed is full.

``startup`` computes a table, reads the clock and getrandom, opens the image
file named by argv[1], then checksums stdin: each run is compared with a
run of the same engine that keeps no snapshots (same output, clock values,
system calls, peak memory, channel counters; emulated also fuel and the
memory digest at the end).  The tests run under both engines (``engine``):
emulated, a machine kept as a pool worker keeps it; natively, a pool
worker's ``Warm`` (its prefix recorded by a probe, resumed in a child of
the snapshot's template).
"""

from __future__ import annotations

import os
import tempfile

import pytest
from archives import tar_bytes

from zvm_core import prefix
from zvm_core.channels import READ, WRITE, Channel, FdBacking, MemoryBacking
from zvm_core.elf import load_program
from zvm_core.engines.emulated import snapshot
from zvm_core.engines.emulated.machine import Machine
from zvm_core.executor import MEMORY_ETAG, Limits
from zvm_core.pool import ChannelSpec, Pool, WarmUp
from zvm_core.prepare import prepare
from zvm_core.syscalls.fs import Image, mounted
from zvm_core.validator import validate

STDINS = [b'first input\n', b'', b'x' * 100_000, b'first input\n']


class Kept:
    """One program kept for runs under ``engine``, with or without snapshots: an
    emulated template machine, or a native pool worker's ``Warm``."""

    def __init__(self, engine: str, path, snapshots: bool, memory: int = 64 << 20) -> None:
        self.engine = engine
        self.memory_limit = memory
        self.start = 'entry'
        if engine == 'emulated':
            program = load_program(path)
            self.kept = Machine(program, validate(program), Limits(memory=memory),
                                snapshots=snapshots)
            return
        from zvm_core.engines.native.warm import Warm
        p = prepare(path, engine='native')
        self.kept = Warm(p.program, p.verdict, memory, p.tsc)
        if not snapshots:
            self.kept.snapshots = None

    def run(self, channels: list[Channel], argv: list[str], limits: Limits | None,
            image: Image | None, probe: bool = True):
        if self.engine == 'emulated':
            report = self.kept.run(channels, argv, {}, limits=limits, image=image,
                                   memory_etag=True, probe=probe)
        else:
            report = self.kept.run(channels, argv, {}, 0, 0,
                                   limits or Limits(memory=self.memory_limit), image,
                                   probe=probe)
            self.kept.reset()
        self.start = report.accounting.start
        return report

    @property
    def snapshots(self):
        return self.kept.snapshots

    @property
    def recording(self) -> bool:
        """Whether new keys are still recorded (not for a program reading the manifest)."""
        snaps = self.kept.snapshots
        return snaps is not None and not getattr(snaps, 'off', False)

    def close(self) -> None:
        self.kept.close()


@pytest.fixture
def machines(engine, guest, monkeypatch):
    """``machines(name='startup', snapshots=True) -> Kept`` under ``engine``; natively
    every prefix is worth keeping (the test programs' make few calls)."""
    if engine == 'native':
        from zvm_core.engines.native import snapshot as native
        from zvm_core.engines.native import tsc_unavailable
        if tsc_unavailable():
            pytest.skip(f'native snapshots are recorded by a traced probe: {tsc_unavailable()}')
        monkeypatch.setattr(native, 'MIN_PREFIX_CALLS', 0)
    made = []

    def make(name='startup', snapshots: bool = True, memory: int = 64 << 20) -> Kept:
        made.append(Kept(engine, guest(name) if isinstance(name, str) else name, snapshots,
                         memory))
        return made[-1]
    yield make
    for m in made:
        m.close()


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _run(machine: Kept, stdin: bytes, argv=('startup', '/etc/conf'), tar=None,
         extra: tuple[Channel, ...] = (), fuel: int | None = None, seekable: bool = False,
         probe: bool = True, kept_tree: bool = False) -> dict:
    out = MemoryBacking()
    channels = [Channel('/dev/stdin', MemoryBacking(stdin), READ, random=seekable),
                Channel('/dev/stdout', out, WRITE), *extra]
    image = None
    if tar is not None:
        ch = Channel('/dev/sys', FdBacking.open(tar, READ), READ, random=True)
        channels.append(ch)
        if kept_tree:       # as a pool worker: one tree while the tar is unchanged
            image = mounted([(ch.backing, '/', ch.alias)])
        else:
            image = Image()
            image.mount(ch.backing, '/', ch.alias)
    limits = Limits(memory=machine.memory_limit, fuel=fuel) if fuel else None
    try:
        report = machine.run(channels, list(argv), limits, image, probe)
    finally:
        for ch in channels:
            ch.close()
    acc = report.accounting
    return {'status': report.status, 'message': report.message, 'retcode': report.retcode,
            'output': bytes(out.data), 'fuel': acc.fuel, 'syscalls': acc.syscalls,
            'peak': acc.peak_memory, 'memory': report.etags.get(MEMORY_ETAG),
            'channels': {k: vars(v) for k, v in acc.channels.items()}}


def test_resumed_runs_equal_full_runs(machines, tmp_path):
    tar = _write(tmp_path / 'sys.tar', tar_bytes({'etc/conf': b'from the image'}))
    keeping, plain = machines(), machines(snapshots=False)
    starts = []
    for stdin in STDINS:
        got = _run(keeping, stdin, tar=tar)
        starts.append(keeping.start)
        assert got == _run(plain, stdin, tar=tar)
        assert b'conf from the image' in got['output']
    assert starts == ['recorded', 'resumed', 'resumed', 'resumed']
    assert plain.start == 'entry'


def test_a_run_that_may_not_probe_records_nothing_but_resumes(machines, tmp_path):
    """A batch's node (``probe=False``: its key comes once) runs from the entry
    without a probe, yet resumes from a snapshot its key already has."""
    tar = _write(tmp_path / 'sys.tar', tar_bytes({'etc/conf': b'from the image'}))
    keeping, plain = machines(), machines(snapshots=False)
    starts = []
    for probe in (False, False, True, False):
        got = _run(keeping, b'data', tar=tar, probe=probe)
        starts.append(keeping.start)
        assert got == _run(plain, b'data', tar=tar)
    assert starts == ['entry', 'entry', 'recorded', 'resumed']


def test_other_arguments_are_another_prefix(machines, tmp_path):
    tar = _write(tmp_path / 'sys.tar', tar_bytes({'etc/conf': b'A', 'etc/other': b'B'}))
    keeping, plain = machines(), machines(snapshots=False)
    for argv, start in [(('startup', '/etc/conf'), 'recorded'),
                        (('startup', '/etc/other'), 'recorded'),
                        (('startup', '/etc/conf'), 'resumed'),
                        (('startup', '/etc/other'), 'resumed')]:
        got = _run(keeping, b'data', argv=argv, tar=tar)
        assert keeping.start == start, argv
        assert got == _run(plain, b'data', argv=argv, tar=tar)


def test_a_changed_image_is_not_resumed(machines, tmp_path):
    one = _write(tmp_path / 'one.tar', tar_bytes({'etc/conf': b'version one'}))
    two = _write(tmp_path / 'two.tar', tar_bytes({'etc/conf': b'version two'}))
    keeping = machines()
    _run(keeping, b'')
    assert keeping.start == 'recorded'
    got = _run(keeping, b'', tar=one)       # the prefix had found no /etc/conf
    assert keeping.start == 'recorded'
    assert got['output'].endswith(b'conf version one\n')
    got = _run(keeping, b'', tar=two)       # same path, other tar file
    assert keeping.start == 'recorded'
    assert got['output'].endswith(b'conf version two\n')
    assert _run(keeping, b'', tar=two) == got
    assert keeping.start == 'resumed'


def test_a_path_that_is_now_a_channel_is_not_resumed(machines):
    keeping = machines()
    argv = ('startup', '/dev/conf')
    assert _run(keeping, b'', argv=argv)['output'].endswith(b'conf (none)\n')
    conf = Channel('/dev/conf', MemoryBacking(b'from a channel'), READ)
    got = _run(keeping, b'', argv=argv, extra=(conf,))
    assert keeping.start != 'resumed'
    assert got['output'].endswith(b'conf from a channel\n')


def test_a_kept_tree_is_looked_up_again_when_the_channels_change(machines, tmp_path):
    """A pool keeps one file tree while its tar is unchanged, and a snapshot's lookups
    matched in a tree are not made again in it; but a channel that now has a name the
    prefix looked up (or another kind) makes them be made again: not resumed."""
    tar = _write(tmp_path / 'sys.tar', tar_bytes({'etc/conf': b'here'}))
    keeping = machines()
    argv = ('startup', '/dev/conf')
    first = _run(keeping, b'', argv=argv, tar=tar, kept_tree=True)
    for _ in range(2):
        assert _run(keeping, b'', argv=argv, tar=tar, kept_tree=True) == first
    assert keeping.start == 'resumed'
    conf = Channel('/dev/conf', MemoryBacking(b'from a channel'), READ)
    got = _run(keeping, b'', argv=argv, tar=tar, kept_tree=True, extra=(conf,))
    assert keeping.start != 'resumed'
    assert got['output'].endswith(b'conf from a channel\n')


@pytest.mark.emulated_only(reason='fuel is the emulated engine\'s')
def test_a_budget_that_ends_inside_the_prefix(machines):
    keeping, plain = machines(), machines(snapshots=False)
    _run(keeping, b'')
    got = _run(keeping, b'', fuel=1_000_000)
    assert got['status'] == 'fuel'
    assert keeping.start == 'entry'
    assert got == _run(plain, b'', fuel=1_000_000)


def test_short_prefixes_are_not_kept_nor_recorded_again(engine, machines, monkeypatch):
    module, name = snapshot, 'Recorder'
    if engine == 'native':
        from zvm_core.engines.native import snapshot as module
        name = 'Probe'
        monkeypatch.setattr(module, 'MIN_PREFIX_CALLS', 1000)
    recordings, real = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a: recordings.append(1) or real(*a))
    keeping = machines('cat')
    for _ in range(3):
        assert _run(keeping, b'hello', argv=('cat',))['output'] == b'hello'
        assert keeping.start == 'entry'
    assert keeping.snapshots.size == 0 and len(recordings) == 1
    _run(keeping, b'other', argv=('cat', '-'))       # another key: recorded once
    assert len(recordings) == 2


def test_a_program_reading_the_user_manifest_runs_unrecorded(machines, zvm_guest):
    """ZeroVM API programs read the manifest (it describes the channels) first."""
    keeping = machines(zvm_guest('zvm_sort'))
    for data in (b'b\na\n', b'z\ny\nx\n'):
        out = MemoryBacking()
        report = keeping.run([Channel('/dev/stdin', MemoryBacking(data), READ),
                              Channel('/dev/stdout', out, WRITE)], ['zvm_sort'], None, None)
        assert (report.status, report.retcode) == ('ok', 0), report.message
        assert bytes(out.data) == b''.join(sorted(data.splitlines(True)))
        assert keeping.start == 'entry'
    assert not keeping.recording


def test_snapshots_are_bounded(machines, monkeypatch):
    monkeypatch.setattr(prefix, 'KEPT', 2)
    keeping = machines()
    for i in range(4):
        _run(keeping, b'', argv=('startup', f'/etc/{i}'))
    assert len(keeping.snapshots._kept) == 2
    _run(keeping, b'', argv=('startup', '/etc/0'))
    assert keeping.start == 'recorded'


def test_python_resumed_equals_full(machines, sysimages):
    """CPython's start-up is the prefix: time, hash seeds and random must not tell."""
    python = sysimages.program('python3')
    keeping = machines(python, memory=Limits().memory)
    plain = machines(python, snapshots=False, memory=Limits().memory)
    script = ('import time, random, sys; print(time.time(), time.monotonic(), hash("abc"), '
              'random.random(), sys.stdin.read().upper())')
    runs = []
    for machine, stdin, seekable in [
            (keeping, b'', False), (keeping, b'one', False), (keeping, b'three', False),
            (keeping, b'', False), (keeping, b'seekable', True),
            (keeping, b'other size', True), (plain, b'other size', True),
            (plain, b'', False)]:
        got = _run(machine, stdin, argv=('python3', '-S', '-c', script),
                   tar=sysimages.tar('python3'), seekable=seekable)
        runs.append((machine.start, got))
    # an empty stdin's fstat tells nothing of its data: the prefix goes on; one with
    # data, sequential or seekable, tells its size (the job's data): the prefix ends
    # there, before what it tells: runs over other data resume from it
    assert [start for start, _ in runs] == ['recorded', 'recorded', 'resumed', 'resumed',
                                            'resumed', 'resumed', 'entry', 'entry']
    assert runs[-2][1] == runs[-3][1]
    assert runs[-1][1] == runs[0][1] == runs[3][1]
    assert runs[1][1]['status'] == 'ok' and runs[1][1]['output'].endswith(b' ONE\n')


def test_a_pool_warm_up_records_the_prefix_requests_resume(engine, guest, sysimages):
    """A worker's warm-up run is a run like any other: with the same command line
    and descriptors, the first request resumes from the snapshot it recorded
    (natively CPython: the C program's prefix makes too few calls to be kept)."""
    if engine == 'native':
        program, tars = str(sysimages.program('python3')), (str(sysimages.tar('python3')),)
        argv, memory, expected = ['python3', '-S', '-c', 'print(1)'], 256 << 20, b'1\n'
    else:
        program, tars = str(guest('startup')), ()
        argv, memory, expected = ['startup', '/etc/conf'], 64 << 20, b'sum '
    warm = WarmUp(program, tuple(argv), tars, memory)
    with Pool(size=1, warm=[warm]) as pool, open(os.devnull, 'rb') as null, \
            tempfile.TemporaryFile() as out:
        images = [open(tar, 'rb') for tar in tars]
        try:
            report = pool.run(program, [ChannelSpec('/dev/stdin', null.fileno(), READ),
                                        ChannelSpec('/dev/stdout', out.fileno(), WRITE),
                                        ChannelSpec('/dev/stderr', out.fileno(), WRITE),
                                        *(ChannelSpec(f'/dev/image{i}', f.fileno(), READ,
                                                      random=True, mount='/')
                                          for i, f in enumerate(images))],
                              argv=argv, limits=Limits(memory=memory), engine=engine)
        finally:
            for f in images:
                f.close()
        out.seek(0)
        assert report.status == 'ok' and out.read().startswith(expected), report
        assert (report.engine, report.accounting.start) == (engine, 'resumed')


def test_every_path_is_checked_without_an_image(machines, tmp_path):
    """Two paths looked up before the first channel access, the first missing: a
    run without any image must not resume (the second would not be found)."""
    tar = _write(tmp_path / 'sys.tar', tar_bytes({'etc/conf': b'here'}))
    keeping = machines()
    argv = ('startup', '/etc/none', '/etc/conf')
    assert _run(keeping, b'', argv=argv, tar=tar)['output'].endswith(b'conf here\n')
    got = _run(keeping, b'', argv=argv)
    assert keeping.start == 'recorded'
    assert got['output'].endswith(b'conf (none)\n')


def test_a_resumed_run_finds_the_prefix_intact(machines):
    """The snapshot's memory a resumed run reads holds the prefix's bytes however its
    process got them (natively its child copied the snapshot's writable pages ahead
    of the run), and what one run writes over them is not there for the next."""
    keeping, plain = machines(), machines(snapshots=False)
    starts = []
    for _ in range(3):
        got = _run(keeping, b'check\n')
        starts.append(keeping.start)
        assert b'table 0 wrong\n' in got['output'], got
        assert got == _run(plain, b'check\n')
    assert starts == ['recorded', 'resumed', 'resumed']


@pytest.mark.parametrize('engine', ['native'], indirect=True)
def test_a_snapshot_child_has_its_copy_before_the_run(machines):
    """Natively the child waiting for a resumed run already holds its own copy of
    every writable page of the snapshot (``MADV_POPULATE_WRITE``): the run takes
    no copy-on-write fault for them.  Pages only: no byte differs (above)."""
    keeping = machines()
    _run(keeping, b'')
    keeping.kept.idle()             # the worker takes in the next run's child
    snap = keeping.snapshots.last
    child = snap.template._ready[0]
    assert snap.prefaults and child is not None
    table = (1 << 19) * 4           # startup's table: written by the prefix
    assert sum(size for _, size in snap.prefaults) >= table
    fd = os.open(f'/proc/{child.pid}/pagemap', os.O_RDONLY)
    try:
        for addr, size in snap.prefaults:
            entries = os.pread(fd, size // 4096 * 8, addr // 4096 * 8)
            flags = [int.from_bytes(entries[i:i + 8], 'little') >> 56
                     for i in range(0, len(entries), 8)]
            assert all(f & 0x81 == 0x81 for f in flags), hex(addr)   # present, exclusive
    finally:
        os.close(fd)


def test_a_resumed_run_finds_nothing_of_an_earlier_one(machines):
    """Runs from one snapshot share only its prefix: what one run wrote after it
    (in fresh heap, on the stack) is not there for the next."""
    keeping = machines()
    assert _run(keeping, b'')['status'] == 'ok'
    planted = _run(keeping, b'plant zvm-secret-of-run-one\n')
    assert keeping.start == 'resumed' and b'planted 0\n' in planted['output']
    scanned = _run(keeping, b'scan zvm-secret-of-run-one\n')
    assert keeping.start == 'resumed' and b'found 0\n' in scanned['output'], scanned


def test_runs_cannot_change_what_the_next_run_restores(machines, sysimages):
    """A snapshot's personality state is shared by every run resumed from it: two runs
    that change it (signal actions and mask, descriptors, heap bookkeeping as mmap and
    munmap leave it: holes, memory to zero, the random stream) and a run that reads it
    give what a run without snapshots gives (unit: tests/unit/test_prefix_restore.py)."""
    python = sysimages.program('python3')
    keeping = machines(python, memory=Limits().memory)
    plain = machines(python, snapshots=False, memory=Limits().memory)
    argv = ('python3', '-S', '-c', 'import sys; exec(sys.stdin.read())')
    write = (b'import os, signal\n'
             b'signal.signal(signal.SIGUSR1, signal.SIG_IGN)\n'
             b'signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})\n'
             b'fds = [os.open("/", os.O_RDONLY) for _ in range(4)]\n'
             b'os.dup2(fds[0], 40); os.close(2)\n'
             b'big = [b"x" * (3 << 20) for _ in range(6)]\n'
             b'del big[::2]\n'
             b'os.urandom(1000)\n'
             b'print("wrote")\n')
    read = (b'import os, signal\n'
            b'def open_(fd):\n'
            b'    try:\n'
            b'        os.fstat(fd)\n'
            b'        return True\n'
            b'    except OSError:\n'
            b'        return False\n'
            b'print(signal.getsignal(signal.SIGUSR1),\n'
            b'      signal.pthread_sigmask(signal.SIG_BLOCK, []),\n'
            b'      [fd for fd in range(64) if open_(fd)], os.urandom(8).hex(),\n'
            b'      [id(b"y" * (5 << 19)) for _ in range(2)], os.open("/", os.O_RDONLY))\n')
    runs = []
    for machine, stdin in [(keeping, write), (keeping, write), (keeping, write),
                           (keeping, read), (plain, read)]:
        got = _run(machine, stdin, argv=argv, tar=sysimages.tar('python3'))
        assert got['status'] == 'ok' and got['retcode'] == 0, got
        runs.append((machine.start, got))
    assert [start for start, _ in runs] == ['recorded', 'resumed', 'resumed', 'resumed',
                                            'entry']
    assert runs[1][1]['output'] == b'wrote\n'
    assert runs[-2][1] == runs[-1][1]

"""Start-up snapshots (zvm_core.engines.emulated.snapshot): a resumed run must be a full run.

``startup`` computes a table, reads the clock and getrandom, opens the image
file named by argv[1], then checksums stdin: each run is compared with a
run on a machine that keeps no snapshots (same output, fuel, clock values,
system calls, memory digest at the end).  Snapshots are the emulated
engine's: these tests run its machines.
"""

from __future__ import annotations

import os
import tempfile

import pytest
from archives import tar_bytes

from zvm_core.channels import READ, WRITE, Channel, FdBacking, MemoryBacking
from zvm_core.elf import load_program
from zvm_core.engines.emulated import snapshot
from zvm_core.engines.emulated.machine import Machine
from zvm_core.executor import MEMORY_ETAG, Limits
from zvm_core.pool import ChannelSpec, Pool, WarmUp
from zvm_core.syscalls.fs import Image
from zvm_core.validator import validate

STDINS = [b'first input\n', b'', b'x' * 100_000, b'first input\n']


@pytest.fixture
def machines(guest, machine_for):
    def make(name: str = 'startup', snapshots: bool = True) -> Machine:
        return machine_for(guest(name), snapshots=snapshots)
    return make


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _run(machine: Machine, stdin: bytes, argv=('startup', '/etc/conf'), tar=None,
         extra: tuple[Channel, ...] = (), fuel: int | None = None, seekable: bool = False
         ) -> dict:
    out = MemoryBacking()
    channels = [Channel('/dev/stdin', MemoryBacking(stdin), READ, random=seekable),
                Channel('/dev/stdout', out, WRITE), *extra]
    image = None
    if tar is not None:
        ch = Channel('/dev/sys', FdBacking.open(tar, READ), READ, random=True)
        channels.append(ch)
        image = Image()
        image.mount(ch.backing, '/', ch.alias)
    limits = Limits(memory=machine.memory_limit, fuel=fuel) if fuel else None
    try:
        report = machine.run(channels, list(argv), {}, limits=limits, image=image,
                             memory_etag=True)
    finally:
        for ch in channels:
            ch.close()
    acc = report.accounting
    return {'status': report.status, 'message': report.message, 'retcode': report.retcode,
            'output': bytes(out.data), 'fuel': acc.fuel, 'syscalls': acc.syscalls,
            'peak': acc.peak_memory, 'memory': report.etags[MEMORY_ETAG],
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


def test_a_budget_that_ends_inside_the_prefix(machines):
    keeping, plain = machines(), machines(snapshots=False)
    _run(keeping, b'')
    got = _run(keeping, b'', fuel=1_000_000)
    assert got['status'] == 'fuel'
    assert keeping.start == 'entry'
    assert got == _run(plain, b'', fuel=1_000_000)


def test_short_prefixes_are_not_kept_nor_recorded_again(machines, monkeypatch):
    recordings, real = [], snapshot.Recorder
    monkeypatch.setattr(snapshot, 'Recorder', lambda: recordings.append(1) or real())
    keeping = machines('cat')
    for _ in range(3):
        assert _run(keeping, b'hello', argv=('cat',))['output'] == b'hello'
        assert keeping.start == 'entry'
    assert keeping.snapshots.size == 0 and len(recordings) == 1
    _run(keeping, b'other', argv=('cat', '-'))       # another key: recorded once
    assert len(recordings) == 2


def test_a_program_reading_the_user_manifest_runs_unrecorded(machines, zvm_guest):
    """ZeroVM API programs read the manifest (it describes the channels) first."""
    program = load_program(zvm_guest('zvm_sort'))
    keeping = Machine(program, validate(program), Limits(memory=64 << 20), snapshots=True)
    try:
        for data in (b'b\na\n', b'z\ny\nx\n'):
            out = MemoryBacking()
            report = keeping.run([Channel('/dev/stdin', MemoryBacking(data), READ),
                                  Channel('/dev/stdout', out, WRITE)], ['zvm_sort'], {})
            assert (report.status, report.retcode) == ('ok', 0), report.message
            assert bytes(out.data) == b''.join(sorted(data.splitlines(True)))
        assert keeping.snapshots is None
    finally:
        keeping.close()


def test_snapshots_are_bounded(machines, monkeypatch):
    monkeypatch.setattr(snapshot, 'KEPT', 2)
    keeping = machines()
    for i in range(4):
        _run(keeping, b'', argv=('startup', f'/etc/{i}'))
    assert len(keeping.snapshots._kept) == 2
    _run(keeping, b'', argv=('startup', '/etc/0'))
    assert keeping.start == 'recorded'


def test_python_resumed_equals_full(sysimages):
    """CPython's start-up is the prefix: time, hash seeds and random must not tell."""
    program = load_program(sysimages.program('python3'))
    verdict = validate(program)
    keeping = Machine(program, verdict, Limits(), snapshots=True)
    plain = Machine(program, verdict, Limits())
    script = ('import time, random, sys; print(time.time(), time.monotonic(), hash("abc"), '
              'random.random(), sys.stdin.read().upper())')
    try:
        runs = []
        for machine, stdin, seekable in [
                (keeping, b'', False), (keeping, b'one', False), (keeping, b'three', False),
                (keeping, b'', False), (keeping, b'seekable', True),
                (keeping, b'other size', True), (plain, b'other size', True)]:
            got = _run(machine, stdin, argv=('python3', '-S', '-c', script),
                       tar=sysimages.tar('python3'), seekable=seekable)
            runs.append((machine.start, got))
        # an empty stdin's fstat tells nothing of its data: the prefix goes on; one with
        # data, sequential or seekable, tells its size (the job's data): the prefix ends
        # there, before what it tells: runs over other data resume from it
        assert [start for start, _ in runs] == ['recorded', 'recorded', 'resumed', 'resumed',
                                                'resumed', 'resumed', 'entry']
        assert runs[-1][1] == runs[-2][1]
        assert runs[1][1]['status'] == 'ok' and runs[1][1]['output'].endswith(b' ONE\n')
    finally:
        keeping.close()
        plain.close()


def test_a_pool_warm_up_records_the_prefix_requests_resume(guest):
    """A worker's warm-up run is a run like any other: with the same command line
    and descriptors, the first request resumes from the snapshot it recorded."""
    program = str(guest('startup'))
    warm = WarmUp(program, ('startup', '/etc/conf'), memory=64 << 20)
    with Pool(size=1, warm=[warm]) as pool, open(os.devnull, 'rb') as null:
        out = tempfile.TemporaryFile()
        report = pool.run(program, [ChannelSpec('/dev/stdin', null.fileno(), READ),
                                    ChannelSpec('/dev/stdout', out.fileno(), WRITE),
                                    ChannelSpec('/dev/stderr', out.fileno(), WRITE)],
                          argv=['startup', '/etc/conf'], limits=Limits(memory=64 << 20),
                          engine='emulated')
        out.seek(0)
        assert report.status == 'ok' and out.read().startswith(b'sum ')
        assert report.accounting.start == 'resumed'


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

"""The warm worker pool: same results as a fresh run, bounded admission, no hangs.

Tests that take ``engine`` run under both engines: the module's pool gets the
engine with each request, pools a test starts inherit ``ZVM_ENGINE``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

from zvm_core import engines
from zvm_core import pool as pool_module
from zvm_core.channels import READ, WRITE, Channel, FdBacking, LinkWaker, LinkWriter, Quota
from zvm_core.engines.native import namespaces
from zvm_core.executor import Limits, run
from zvm_core.limits import MAX_FDS
from zvm_core.pool import (
    MAX_MESSAGE,
    ChannelSpec,
    Pool,
    PoolBusy,
    WarmUp,
    WorkerFailed,
    WorkersFailing,
    _buffer,
    _recv,
    _reply,
    _run_result,
)
from zvm_core.pool.worker import FDS_RESERVED
from zvm_core.report import Report
from zvm_core.syscalls import MAX_UNKNOWN_KEYS, OTHER_UNKNOWN


@pytest.fixture(scope='module')
def pool():
    with Pool(size=2, queue=4) as p:
        p.wait_warm(120)    # a run's deadline (timeout + KILL_GRACE) counts a start too
        yield p


def _files(stdin: bytes):
    fin = tempfile.TemporaryFile()
    fin.write(stdin)
    fin.flush()
    fin.seek(0)
    return fin, tempfile.TemporaryFile()


def _pool_run(pool: Pool, program, stdin: bytes = b'', argv=None, **kwargs):
    kwargs.setdefault('engine', os.environ.get('ZVM_ENGINE'))
    fin, fout = _files(stdin)
    with fin, fout:
        report = pool.run(str(program), [ChannelSpec('/dev/stdin', fin.fileno(), READ),
                                         ChannelSpec('/dev/stdout', fout.fileno(), WRITE)],
                          argv=argv or [program.name], **kwargs)
        fout.seek(0)
        return report, fout.read()


def _fresh_run(program, stdin: bytes = b'', argv=None, **kwargs):
    fin, fout = _files(stdin)
    with fin, fout:
        report = run(program, [Channel('/dev/stdin', FdBacking(fin.fileno(), False), READ),
                               Channel('/dev/stdout', FdBacking(fout.fileno(), False), WRITE)],
                     argv=argv or [program.name], **kwargs)
        fout.seek(0)
        return report, fout.read()


def spin(engine: str, timeout: float) -> Limits:
    """Limits for a program that never ends: only the timeout stops it."""
    return Limits(fuel=10**15, timeout=timeout) if engine == 'emulated' else \
        Limits(timeout=timeout)


def _key(report) -> tuple:
    acc = report.accounting
    return (report.status, report.retcode, report.etags, acc.fuel, acc.syscalls,
            {k: vars(v) for k, v in acc.channels.items()})


@pytest.mark.parametrize('name,cc', [('wc', 'musl-gcc'), ('wc', 'gcc'), ('sort', 'musl-gcc')])
def test_pool_results_equal_fresh_runs(guest, pool, name, cc, engine):
    program = guest(name, cc=cc)
    for stdin in (b'b\na\nc\n', b'', b'zz yy\nxx\n' * 500, b'b\na\nc\n'):
        got = _pool_run(pool, program, stdin)
        want = _fresh_run(program, stdin)
        assert (_key(got[0]), got[1]) == (_key(want[0]), want[1])


def test_pool_reports_validation_failures(guest, pool):
    report, out = _pool_run(pool, guest('wrmsr'))
    assert report.status == 'validation'
    assert {v['rule'] for v in report.validation['violations']} == {'I2'}
    assert out == b''


@pytest.mark.parametrize('name', ['hello', 'rdrand', 'wrmsr', None])
def test_pool_validates_as_zvm_validate_does(guest, pool, zvm, tmp_path, name):
    """A verdict without a run: the proxy's upload check, in the CLI's words."""
    if name is None:
        program = tmp_path / 'text'
        program.write_bytes(b'#!/bin/sh\n')
    else:
        program = guest(name)
    with open(program, 'rb') as f:
        valid, reason, note = pool.validate(f.fileno())
    cli = zvm.validate(program)
    assert valid == (cli.returncode == 0)
    lines = cli.stdout.decode().splitlines()
    assert note == ''
    if valid:
        assert reason == ''
    elif name is None:
        assert reason == lines[0].rpartition(': invalid: ')[2] and 'not an ELF' in reason
    else:
        assert reason == ' '.join(lines[1].split())


def test_quota_and_limits_travel_with_the_request(guest, pool, engine):
    fout = tempfile.TemporaryFile()
    with fout:
        report = pool.run(str(guest('flood')),
                          [ChannelSpec('/dev/stdout', fout.fileno(), WRITE,
                                       quota=Quota(put_size=4096))], argv=['flood'],
                          engine=engine)
    assert report.status == 'quota', report.message
    report, _ = _pool_run(pool, guest('membomb'), limits=Limits(memory=64 << 20))
    assert report.status == 'memory', report.message
    if engine == 'emulated':        # fuel is the emulated engine's budget
        report, _ = _pool_run(pool, guest('loop'), limits=Limits(fuel=1_000_000))
        assert report.status == 'fuel' and 1_000_000 <= report.accounting.fuel < 1_000_100


def test_full_pool_answers_busy_at_once(guest, engine):
    with Pool(size=1, queue=0) as small:
        taken = threading.Event()
        t = threading.Thread(target=_pool_run, args=(small, guest('loop')),
                             kwargs={'limits': spin(engine, 3), 'started': taken.set})
        t.start()
        assert taken.wait(30)    # the long run holds the only worker now
        with pytest.raises(PoolBusy):
            _pool_run(small, guest('hello'))
        assert t.is_alive()      # refused at once, not once the worker was free
        t.join()
        report, out = _pool_run(small, guest('hello'))    # free again
        assert report.status == 'ok' and out == b'Hello, world!\n'


def test_a_dying_worker_is_replaced_and_its_request_fails_cleanly(guest, engine):
    with Pool(size=1, queue=2) as small:
        # a started worker, taken for the spin: a kill while it still starts (under
        # load) would hand the request to its successor, which is another test
        assert _pool_run(small, guest('hello'))[0].status == 'ok'
        result = {}

        def long_run():
            result['report'] = _pool_run(small, guest('loop'),
                                         limits=spin(engine, 30))[0]
        t = threading.Thread(target=long_run)
        t.start()
        for _ in range(500):
            if not small._idle:
                break
            time.sleep(0.01)
        time.sleep(0.5)
        (pid,) = small.pids
        os.kill(pid, signal.SIGKILL)
        t.join(10)
        assert not t.is_alive()
        assert result['report'].status == 'killed'
        assert 'SIGKILL' in result['report'].message
        assert result['report'].host_failure       # the host's trouble: a 503, not a 500
        assert small.replaced == 1 and small.pids != [pid]
        report, out = _pool_run(small, guest('hello'))
        assert report.status == 'ok' and out == b'Hello, world!\n'


def test_a_worker_that_died_idle_hands_its_request_to_its_successor(guest, engine):
    """A worker killed while idle is not asked whether it lives before each request
    (a ``waitpid`` per run): its closed socket refuses the request, which its
    successor serves, once, whole."""
    with Pool(size=1, queue=0) as small:
        assert _pool_run(small, guest('hello'))[0].status == 'ok'
        (pid,) = small.pids
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):            # its end closed its socket
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                break
            time.sleep(0.01)
        report, out = _pool_run(small, guest('hello'))
        assert report.status == 'ok' and out == b'Hello, world!\n'
        assert small.replaced == 1 and small.pids != [pid]
        report, out = _pool_run(small, guest('hello'))
        assert report.status == 'ok' and small.replaced == 1


def test_workers_that_cannot_start_say_where_their_error_is(guest, tmp_path, monkeypatch):
    """An installation whose workers die on import (no C extensions built): each
    request says so and where the traceback went, not just "died (exit status 1)";
    a server waiting for warm workers is told at start."""
    broken = tmp_path / 'python3'
    broken.write_text('#!/bin/sh\necho "ImportError: zvm_core._fastcall" >&2\nexit 1\n')
    broken.chmod(0o755)
    monkeypatch.setattr(sys, 'executable', str(broken))
    with Pool(size=1, queue=1) as small:
        report = _pool_run(small, guest('hello'))[0]
        assert (report.status, report.host_failure) == ('killed', True)
        assert report.message == ('sandbox worker died as it started (exit status 1): its '
                                  f'error is on the standard error of process {os.getpid()} '
                                  '(a server: its log)')
    with Pool(size=1, queue=1, warm=[WarmUp(str(guest('hello')), ('hello',))]) as warm:
        with pytest.raises(WorkerFailed, match='died as it started'):
            warm.wait_warm(30)


def test_a_workers_slow_start_is_not_counted_in_a_runs_time(guest, tmp_path, monkeypatch):
    """A worker still starting (a loaded host: 4 s here) when a run of a 3 s timeout
    comes: the run's time starts once the worker is ready (it was killed as a host
    failure, 'did not answer within 3.5 s', and its node retried elsewhere)."""
    slow = tmp_path / 'python3'
    slow.write_text(f'#!/bin/sh\nsleep 4\nexec {sys.executable} "$@"\n')
    slow.chmod(0o755)
    monkeypatch.setattr(sys, 'executable', str(slow))
    monkeypatch.setattr(pool_module, 'KILL_GRACE', 0.5)
    with Pool(size=1, queue=1) as small:
        report, out = _pool_run(small, guest('hello'), limits=Limits(timeout=3))
    assert (report.status, report.host_failure) == ('ok', False), report
    assert out == b'Hello, world!\n'
    # a start longer than WORKER_START beyond the run's time: the host's failure, said
    monkeypatch.setattr(pool_module, 'WORKER_START', 0.5)
    with Pool(size=1, queue=1) as small:
        report, out = _pool_run(small, guest('hello'), limits=Limits(timeout=1))
    assert (report.status, report.host_failure) == ('killed', True), report
    assert report.message == 'sandbox worker did not start within 2 s'


def _broken_python(tmp_path, monkeypatch):
    """Workers start as a ``python3`` that dies on import (exit 1), each start one
    line of the file returned."""
    starts = tmp_path / 'starts'
    broken = tmp_path / 'python3'
    broken.write_text(f'#!/bin/sh\necho started >> {starts}\n'
                      'echo "ImportError: zvm_core._fastcall" >&2\nexit 1\n')
    broken.chmod(0o755)
    monkeypatch.setattr(sys, 'executable', str(broken))
    return lambda: len(starts.read_text().splitlines()) if starts.exists() else 0


def test_workers_that_die_as_they_start_are_not_started_per_request(
        guest, tmp_path, monkeypatch):
    """A broken installation: after START_FAILURES workers died as they started,
    requests are refused at once (no worker started per request) for a back-off
    that grows; a worker that starts fine ends it, and the count starts again."""
    monkeypatch.setattr(pool_module, 'BACKOFF', 0.3)
    python = sys.executable
    starts = _broken_python(tmp_path, monkeypatch)
    with Pool(size=1, queue=2) as small:
        refusals = []
        while not refusals:
            try:
                report = _pool_run(small, guest('hello'))[0]
            except WorkersFailing as e:
                refusals.append(e)
                continue
            assert (report.status, report.host_failure) == ('killed', True)
            assert 'died as it started (exit status 1)' in report.message
            assert starts() <= pool_module.START_FAILURES
        for _ in range(19):
            with pytest.raises(WorkersFailing) as refused:
                _pool_run(small, guest('hello'))
            refusals.append(refused.value)
        assert starts() == pool_module.START_FAILURES      # none started per request
        assert [e.first for e in refusals] == [True] + [False] * 19    # logged once
        first = refusals[0]
        assert isinstance(first, PoolBusy) and 0 < first.retry_after <= 0.3
        assert str(first).startswith(f'sandbox workers die as they start '
                                     f'({pool_module.START_FAILURES} in a row): none is '
                                     f'started for 0.3 s; the last: sandbox worker died as '
                                     f'it started (exit status 1): its error is on the '
                                     f'standard error of process {os.getpid()}')
        time.sleep(first.retry_after)
        report = _pool_run(small, guest('hello'))[0]       # one more try: it dies too
        assert 'died as it started' in report.message and starts() == 4
        with pytest.raises(WorkersFailing, match='none is started for 0.6 s') as again:
            _pool_run(small, guest('hello'))
        assert again.value.first and 0.3 < again.value.retry_after <= 0.6
        monkeypatch.setattr(sys, 'executable', python)      # fixed
        time.sleep(again.value.retry_after)
        report, out = _pool_run(small, guest('hello'))
        assert report.status == 'ok' and out == b'Hello, world!\n'
        _broken_python(tmp_path, monkeypatch)
        os.kill(small.pids[0], signal.SIGKILL)          # its successors die as they start
        for _ in range(pool_module.START_FAILURES):     # the count began again
            report = _pool_run(small, guest('hello'))[0]
            assert report.status == 'killed'
        with pytest.raises(WorkersFailing, match='none is started for 0.3 s'):
            _pool_run(small, guest('hello'))


def test_a_worker_killed_before_it_was_ready_is_replaced_at_once(
        guest, tmp_path, monkeypatch):
    """A worker killed by a signal as it starts (the OOM killer, an operator) did
    not die of a broken installation: it is replaced at once, as a worker killed
    later is, and not counted towards the back-off."""
    killed = tmp_path / 'python3'
    killed.write_text('#!/bin/sh\nkill -9 $$\n')
    killed.chmod(0o755)
    monkeypatch.setattr(sys, 'executable', str(killed))
    with Pool(size=1, queue=0) as small:
        for _ in range(pool_module.START_FAILURES + 1):
            report = _pool_run(small, guest('hello'))[0]
            assert report.message == 'sandbox worker died (signal SIGKILL)'
            assert report.host_failure
        # each request: the dead idle worker's successor ran it, and was replaced
        assert small.replaced == 2 * (pool_module.START_FAILURES + 1)


def test_the_back_off_is_capped(monkeypatch) -> None:
    monkeypatch.setattr(pool_module, 'BACKOFF_MOST', 4.0)
    breaker = pool_module._Breaker()
    backoffs = []
    for _ in range(pool_module.START_FAILURES + 5):
        breaker.died('it died')
        backoffs.append(breaker.backoff)
    assert backoffs[pool_module.START_FAILURES - 1:] == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    with pytest.raises(WorkersFailing, match='none is started for 4 s; the last: it died'):
        breaker.check()
    breaker.started()           # a worker started: the count and the back-off begin again
    breaker.until = 0.0
    for _ in range(pool_module.START_FAILURES - 1):
        breaker.died('it died')
        breaker.check()
    breaker.died('it died')
    with pytest.raises(WorkersFailing, match='none is started for 1 s'):
        breaker.check()


def test_a_worker_that_dies_on_its_first_request_did_not_die_starting() -> None:
    """A worker without warm-ups that exits (status 1, not killed) on its first
    request, here one it cannot serve (a validation without its program: an
    uncaught IndexError; only a caller of the private protocol can send it), had
    started: not "died as it started"."""
    with Pool(size=1, queue=0) as small:
        died = small._admit(lambda _: [b'V', b'{}'], [], 60, None, pool_module._json)
        assert isinstance(died, Report) and died.message == 'sandbox worker died (exit status 1)'


def test_pool_notes_what_the_cpu_lacks_as_zvm_validate_does(guest, pool, zvm) -> None:
    """A -mavx2 build is valid, with ``zvm validate``'s second line: the upload's
    verdict (the proxy's pool) said only valid, and its jobs faulted."""
    program = guest('floats', flags=('-O2', '-mavx2'))
    with open(program, 'rb') as f:
        valid, reason, note = pool.validate(f.fileno())
    cli = zvm.validate(program)
    assert (valid, reason, cli.returncode) == (True, '', 0)
    assert " instructions of extensions the sandbox's CPU lacks (AVX " in note
    assert f'{program}: {note}' == cli.stdout.decode().splitlines()[1]


@pytest.mark.parametrize('what', ['a directory', 'a pipe'])
def test_validating_what_is_not_a_file_says_so_and_keeps_the_worker(tmp_path, what) -> None:
    with Pool(size=1, queue=0) as small:
        pids = small.pids
        if what == 'a directory':
            fds = [os.open(tmp_path, os.O_RDONLY)]
        else:
            fds = list(os.pipe())
        try:
            assert small.validate(fds[0], timeout=60) == (
                False, f'the program is {what}, not a file', '')
        finally:
            for fd in fds:
                os.close(fd)
        assert small.pids == pids


def test_timeout_inside_a_worker(guest, pool, engine):
    report, _ = _pool_run(pool, guest('loop'), limits=spin(engine, 1))
    # the worker's own answer: the caller's kill at timeout + KILL_GRACE is 'killed'
    assert (report.status, report.host_failure) == ('timeout', False), report


def test_workers_limit_themselves(guest):
    # a new pool: workers that ran native programs hold their templates' descriptors
    with Pool(size=1) as fresh:
        [pid] = fresh.pids
        report, _ = _pool_run(fresh, guest('hello'), engine='emulated')
        assert report.status == 'ok', report
        status = open(f'/proc/{pid}/status').read()
        assert 'NoNewPrivs:\t1' in status
        fds = os.listdir(f'/proc/{pid}/fd')
        # its native probe's loader made its namespaces (namespaces.py): held, not inherited
        held = [fd for fd in fds if os.readlink(f'/proc/{pid}/fd/{fd}').partition(':')[0]
                in namespaces.KINDS]
        assert len(held) in (0, len(namespaces.KINDS)), held
        assert len(fds) - len(held) <= 6, fds          # stdio, its socket, nothing inherited
        limits = open(f'/proc/{pid}/limits').read()
        assert any(line.startswith('Max core file size') and ' 0 ' in line
                   for line in limits.splitlines())
        # open files: its own few, but the hard limit it came with (the native loader
        # raises its soft limit to it: the ETOOMANYREFS bound), not 2048 as before
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        files = next(line.split()[3:5] for line in limits.splitlines()
                     if line.startswith('Max open files'))
        assert files == [str(MAX_FDS * 2), 'unlimited' if hard == resource.RLIM_INFINITY
                         else str(hard)], files
        # no descriptor of its own a process it spawns would inherit (its socket came
        # inheritable; a loader would hold it until its close_range)
        for fd in fds:
            flags = int(next(line.split()[1] for line in
                             open(f'/proc/{pid}/fdinfo/{fd}').read().splitlines()
                             if line.startswith('flags:')), 8)
            target = os.readlink(f'/proc/{pid}/fd/{fd}')
            if int(fd) > 2:
                assert flags & os.O_CLOEXEC, (fd, target)


def test_pool_does_not_block_an_eventlet_hub(guest, engine):
    """A green thread waiting for a run lets the others go on.

    The run (cat) reads a pipe that only another green thread of the same
    process writes and closes: it can end well only if that thread runs while
    the first one waits for the pool. Were the wait blocking, the run would
    meet its timeout first, and every tick would find it over. No clock.
    """
    script = textwrap.dedent(f'''
        import eventlet
        eventlet.monkey_patch(all=False, socket=True, select=True, thread=True)
        import os, tempfile
        from zvm_core.channels import READ, WRITE
        from zvm_core.executor import Limits
        from zvm_core.pool import ChannelSpec, Pool
        pool = Pool(size=1)
        rd, wr = os.pipe()
        out = tempfile.TemporaryFile()
        def job():
            specs = [ChannelSpec('/dev/stdin', rd, READ),
                     ChannelSpec('/dev/stdout', out.fileno(), WRITE)]
            return pool.run({str(guest('cat'))!r}, specs, argv=['cat'],
                            limits={spin(engine, 30)!r})
        running = eventlet.spawn(job)
        during = 0
        for _ in range(20):
            eventlet.sleep(0.01)
            during += not running.dead
        os.write(wr, b'written while the run waits\\n')
        os.close(wr)
        report = running.wait()
        out.seek(0)
        print(report.status, during, out.read().decode().strip().replace(' ', '_'))
        pool.close()
    ''')
    out = subprocess.run([sys.executable, '-W', 'ignore', '-c', script], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['ok', '20', 'written_while_the_run_waits'], out.stdout


def test_a_caller_that_stops_waiting_ends_the_run_and_frees_the_worker(guest, engine):
    """Killing the green thread that waits for a run kills the worker and replaces it."""
    script = textwrap.dedent(f'''
        import eventlet
        eventlet.monkey_patch(all=False, socket=True, select=True, thread=True)
        import os, tempfile
        from zvm_core.channels import WRITE
        from zvm_core.executor import Limits
        from zvm_core.pool import ChannelSpec, Pool
        pool = Pool(size=1, queue=0)
        out = tempfile.TemporaryFile()
        spec = ChannelSpec('/dev/stdout', out.fileno(), WRITE)
        (before,) = pool.pids
        spinning = eventlet.spawn(pool.run, {str(guest('loop'))!r}, [spec], argv=['loop'],
                                  limits={spin(engine, 600)!r})
        eventlet.sleep(0.5)
        spinning.kill()
        gone = not os.path.exists(f'/proc/{{before}}') or \\
            open(f'/proc/{{before}}/stat').read().split()[2] == 'Z'
        report = pool.run({str(guest('hello'))!r}, [spec], argv=['hello'])
        print(gone, pool.replaced, pool.pids != [before], report.status)
        pool.close()
    ''')
    out = subprocess.run([sys.executable, '-W', 'ignore', '-c', script], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['True', '1', 'True', 'ok']


def test_cli_repeat_runs_through_a_warm_worker(guest, zvm, tmp_path):
    stdin = tmp_path / 'in'
    stdin.write_bytes(b'one two\nthree\n')
    res = zvm.cli('run', '--repeat', '5', '--stdin', str(stdin), '--stdout',
                  str(tmp_path / 'out'), str(guest('wc')))
    assert res.returncode == 0, res.stderr
    assert b'5 runs through a warm worker' in res.stderr
    assert (tmp_path / 'out').read_bytes().split() == [b'2', b'3', b'14']


def test_cli_repeat_stops_when_workers_die_as_they_start(guest, tmp_path, monkeypatch,
                                                          capfd):
    """``zvm run --repeat`` where no worker starts: a report that says so once the
    pool refuses, not a worker started per run nor a traceback."""
    from zvm_core import cli
    _broken_python(tmp_path, monkeypatch)
    stdin = tmp_path / 'in'
    stdin.write_bytes(b'one\n')
    report = tmp_path / 'report.json'
    code = cli.main(['run', '--repeat', '50', '--stdin', str(stdin), '--report', str(report),
                     str(guest('wc'))])
    assert code == cli.EXIT_NOT_OK
    got = json.loads(report.read_text())
    assert (got['status'], got['host_failure']) == ('killed', True)
    assert got['message'].startswith('sandbox workers die as they start (')
    assert 'zvm: killed: sandbox workers die as they start' in capfd.readouterr().err


def test_a_channel_that_arrives_while_the_guest_runs(guest, pool, tmp_path, engine):
    """A link (``ChannelSpec.notify``): cat's 1 MiB reads wait for all of it, so the
    guest sees what it would see reading the whole file; cut short, reads fail."""
    data = os.urandom(3 << 20)
    for cut in (False, True):
        waker = LinkWaker()
        writer = LinkWriter(tmp_path / f'link-{cut}', waker)
        fout = tempfile.TemporaryFile()

        def feed(writer=writer, cut=cut):
            for k in range(0, len(data), 100_000):
                time.sleep(0.001)
                writer.append(data[k:k + 100_000])
                if cut and k > len(data) // 2:
                    writer.abort()
                    return
            writer.end()
        thread = threading.Thread(target=feed)
        thread.start()
        with fout:
            report = pool.run(str(guest('cat')), [
                ChannelSpec('/dev/stdin', writer.fd, READ, notify=writer.notify),
                ChannelSpec('/dev/stdout', fout.fileno(), WRITE)], argv=['cat'], engine=engine)
            thread.join()
            writer.close()
            waker.close()
            fout.seek(0)
            out = fout.read()
        if cut:
            assert report.status == 'killed'
            assert 'did not all arrive' in report.message
            assert len(out) % (1 << 20) == 0 and out == data[:len(out)]
        else:
            assert (report.status, report.retcode) == ('ok', 0)
            assert report.accounting.channels['/dev/stdin'].reads == 4     # 3 full, then end
            assert out == data


def test_a_zerovm_api_program_then_others_in_one_worker(guest, zvm_guest, engine):
    """A ZeroVM API program reads the user manifest, so its template keeps no
    start-up snapshots; the worker's other templates are weighed all the same."""
    with Pool(size=1) as one:
        for program, stdin, want in [(zvm_guest('zvm_sort'), b'b\na\n', b'a\nb\n'),
                                     (guest('cat'), b'text', b'text'),
                                     (zvm_guest('zvm_sort'), b'd\nc\n', b'c\nd\n')]:
            report, out = _pool_run(one, program, stdin)
            assert (report.status, report.retcode, out) == ('ok', 0, want), report.message


def test_unknown_system_calls_are_counted_in_a_bounded_map(guest, pool, engine):
    """200,000 distinct unknown calls: the run ends normally, the report names at
    most MAX_UNKNOWN_KEYS of them and counts the rest as 'other'."""
    n = 200_000
    replaced = pool.replaced
    report, out = _pool_run(pool, guest('unknown_syscalls'), argv=['unknown_syscalls', str(n)])
    assert report.status == 'ok' and out == f'{n} of {n} ENOSYS\n'.encode(), report.message
    unknown = report.accounting.unknown_syscalls
    assert len(unknown) == MAX_UNKNOWN_KEYS + 1
    assert unknown[OTHER_UNKNOWN] == n - MAX_UNKNOWN_KEYS
    assert sum(unknown.values()) == n
    assert pool.replaced == replaced


def test_a_request_too_large_for_the_transport_fails_cleanly(guest, pool):
    replaced = pool.replaced
    report, _ = _pool_run(pool, guest('hello'), env={'BIG': 'x' * (MAX_MESSAGE + 1)})
    assert report.status == 'fault' and 'too large' in report.message
    assert pool.replaced == replaced
    report, out = _pool_run(pool, guest('hello'))
    assert report.status == 'ok' and out == b'Hello, world!\n'


def test_a_report_too_large_for_the_transport_is_replaced_by_a_status():
    """The worker side: whatever a report holds, what is sent fits, and says why."""
    worker, caller = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with worker, caller:
        huge = Report('ok', 0, 'm' * (2 * MAX_MESSAGE))
        buf = _buffer()
        _reply(worker, huge)
        report = _run_result(_recv(caller, buf)[0]).report
        assert report.status == 'killed' and 'too large' in report.message
        _reply(worker, Report('ok', 0, 'fits'))
        assert _run_result(_recv(caller, buf)[0]).report.message == 'fits'


def _children(pid: int) -> list[str]:
    """The states of ``pid``'s child processes (a zombie is ``Z``)."""
    states = []
    for entry in os.listdir('/proc'):
        try:
            stat = open(f'/proc/{entry}/stat').read()
        except OSError:             # not a process, or gone
            continue
        state, ppid = stat.rpartition(')')[2].split()[:2]
        if int(ppid) == pid:
            states.append(state)
    return states


def test_a_worker_runs_any_number_of_native_programs(guest, tmp_path):
    """Each native program keeps a template process and its descriptors in the
    worker: ~80 of them once exhausted its open-files limit.  Far more distinct
    programs than the worker keeps templates for all run right; the least recently
    used templates are closed and their processes reaped to make room."""
    if engines.native_unavailable():
        pytest.skip(f'this host cannot run the native engine: {engines.native_unavailable()}')
    exitcode = guest('exitcode').read_bytes()
    soft = MAX_FDS * 2                  # the worker's own limit (worker._limit_self)
    kept = (soft - MAX_FDS - FDS_RESERVED) // 4     # a template and its next child: 4
    with Pool(size=1) as one:
        [pid] = one.pids
        for i in range(max(90, 2 * kept)):
            program = tmp_path / f'exitcode{i}'    # another file: another program
            program.write_bytes(exitcode)
            program.chmod(0o755)
            report, out = _pool_run(one, program, argv=['exitcode', str(i)], engine='native')
            assert (report.status, report.retcode, out) == \
                ('ok', i, f'exiting with {i} via exit\n'.encode()), report.message
        assert len(os.listdir(f'/proc/{pid}/fd')) <= soft - MAX_FDS    # room for a request
        children = _children(pid)
        for _ in range(100):    # the last run's child, killed after the reply, may be dying
            if 'Z' not in children:     # still: the worker reaps it once it is gone
                break
            time.sleep(0.05)
            children = _children(pid)
        assert 'Z' not in children and len(children) <= 2 * (kept + 1), children
        assert one.replaced == 0


@pytest.mark.parametrize('engine, program', [('native', 'hello'), ('native', 'rdtsc'),
                                             ('emulated', 'hello')])
def test_a_run_leaves_no_reference_cycle(guest, engine, program):
    """A worker's run frees all it made by reference counting: its cycles (the native
    guest's clock and ``rdtsc`` tracer held ``guest.ticks``, ctypes array types made
    per call) made the worker's cyclic GC run every ~25 runs."""
    import gc

    from zvm_core.pool import _request
    from zvm_core.pool.worker import Templates, _serve_one
    if engine == 'native' and engines.native_unavailable():
        pytest.skip(f'this host cannot run the native engine: {engines.native_unavailable()}')
    prog, templates = str(guest(program)), Templates(1 << 30)

    def one(tails):
        fds = [os.open(os.devnull, os.O_RDONLY), os.open(os.devnull, os.O_WRONLY)]
        req = _request(prog, [ChannelSpec('/dev/stdin', 0, READ),
                              ChannelSpec('/dev/stdout', 1, WRITE)],
                       [program], {}, Limits(), 0, 0, 'virtualize', {}, engine)
        try:
            report, template = _serve_one(req, fds, templates, tails)
        finally:
            for fd in fds:
                os.close(fd)
        assert report.status == 'ok', report.message
        template.reset()
        templates.settle(template)
    try:
        for tails in (None, None, {}):      # a first run records a start-up snapshot
            one(tails)
        gc.collect()
        for tails in (None, {}):            # Pool.run's, Pool.run_many's
            one(tails)
            assert _cycles_of_ours() == []
    finally:
        templates.close()


def _cycles_of_ours() -> list:
    """The objects of the sandbox's (or ctypes') that only the cyclic GC would free.
    Not ``gc.collect() == 0``: a thread of another test in this process (a pool's
    reader, a server's) may leave garbage of its own while the run goes on."""
    import gc
    import types

    def ours(obj) -> bool:
        if isinstance(obj, types.FrameType):
            return 'zvm_core' in obj.f_code.co_filename
        module = getattr(obj, '__module__', None) if isinstance(obj, types.FunctionType) \
            else getattr(type(obj), '__module__', None)
        return isinstance(module, str) and module.startswith(('zvm_core', 'ctypes', '_ctypes'))

    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [repr(obj)[:120] for obj in gc.garbage if ours(obj)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()



def test_one_account_s_many_programs_leave_another_s_template_warm(guest, tmp_path,
                                                                    monkeypatch):
    """A worker's templates fit its budget; account B running many distinct programs
    closes B's own to make room, not account A's: A's next run starts from the
    template its first made (``worker.Templates``), no other started for it."""
    from zvm_core.engines.native import warm
    from zvm_core.pool import _request
    from zvm_core.pool.worker import Templates, _serve_one
    if engines.native_unavailable():
        pytest.skip(f'this host cannot run the native engine: {engines.native_unavailable()}')
    started: list[warm.Warm] = []

    class Counted(warm.Warm):
        def __init__(self, *args) -> None:
            started.append(self)
            super().__init__(*args)
    monkeypatch.setattr(warm, 'Warm', Counted)
    exitcode = guest('exitcode').read_bytes()
    templates = Templates(24 << 20)     # a few of these small templates

    def run(name: str, account: str):
        path = tmp_path / name      # another file: another program
        if not path.exists():
            path.write_bytes(exitcode)
        fds = [os.open(os.devnull, os.O_RDONLY), os.open(os.devnull, os.O_WRONLY)]
        req = _request(str(path), [ChannelSpec('/dev/stdin', 0, READ),
                                   ChannelSpec('/dev/stdout', 1, WRITE)],
                       ['exitcode', '3'], {}, Limits(), 0, 0, 'virtualize', {}, 'native')
        req['account'] = account
        try:
            report, template = _serve_one(req, fds, templates)
        finally:
            for fd in fds:
                os.close(fd)
        assert (report.status, report.retcode) == ('ok', 3), report.message
        template.reset()
        templates.settle(template)
        return template
    try:
        mine = run('a', 'A')
        for i in range(12):
            run(f'b{i}', 'B')
        assert len(templates._machines) < 12        # B's own templates were closed
        assert run('a', 'A') is mine and len(started) == 1 + 12     # none started for A
    finally:
        templates.close()

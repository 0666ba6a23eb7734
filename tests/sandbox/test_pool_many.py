"""``Pool.run_many``: several runs in one worker request, each its own sandbox run."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time

import pytest

from zvm_core.channels import READ, WRITE, TailBacking
from zvm_core.limits import Limits
from zvm_core.pool import ChannelSpec, Pool, PoolBusy, Run


def _run(program, stdin: bytes, argv=None, limits=None, tail: bool = False):
    """A Run of ``program`` over ``stdin``, and its (stdin, stdout) files."""
    fin, fout = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    fin.write(stdin)
    fin.flush()
    fin.seek(0)
    channels = [ChannelSpec('/dev/stdin', fin.fileno(), READ),
                ChannelSpec('/dev/stdout', fout.fileno(), WRITE)]
    if tail:
        channels.append(ChannelSpec('/dev/stderr', -1, WRITE, tail=8))
    return Run(str(program), channels, argv or [program.name], limits=limits or Limits(),
               engine=os.environ.get('ZVM_ENGINE')), (fin, fout)


def _out(files) -> bytes:
    fin, fout = files
    fout.seek(0)
    data = fout.read()
    fin.close()
    fout.close()
    return data


def test_runs_in_one_request_equal_runs_alone(guest, engine):
    wc = guest('wc')
    stdins = [b'a b\nc\n', b'', b'zz yy\nxx\n' * 500, b'one\n']
    with Pool(size=1, queue=0) as pool:
        many = [_run(wc, s) for s in stdins]
        results = list(pool.run_many([r for r, _ in many]))
        outs = [_out(f) for _, f in many]
        alone = []
        for s in stdins:
            run, files = _run(wc, s)
            report = pool.run(run.program, run.channels, argv=run.argv, engine=run.engine)
            alone.append((report, _out(files)))
        assert pool.pids and pool.replaced == 0
    assert outs == [o for _, o in alone]
    assert outs[0].split() == [b'2', b'3', b'6']
    for got, (report, _) in zip(results, alone, strict=True):
        assert got.report.status == report.status == 'ok'
        assert got.report.etags == report.etags
        assert got.report.accounting.channels == report.accounting.channels


def test_a_tail_channel_keeps_the_end_of_what_was_written(guest, engine):
    run, files = _run(guest('wc'), b'x y\n', argv=['wc', '-t'], tail=True)
    with Pool(size=1, queue=0) as pool:
        (result,) = pool.run_many([run])
    assert _out(files).split() == [b'1', b'2', b'4']
    assert result.report.status == 'ok'
    stderr = result.tails['/dev/stderr']           # nanoseconds main took, and a newline
    assert 0 < len(stderr) <= 8 and stderr.endswith(b'\n')


def test_tail_backing_keeps_its_last_bytes():
    tail = TailBacking(4)
    assert tail.write([memoryview(b'abcdef'), memoryview(b'gh')], None) == 8
    assert bytes(tail.data) == b'efgh'
    assert tail.write([memoryview(b'i')], None) == 1 and bytes(tail.data) == b'fghi'
    with pytest.raises(ValueError):
        TailBacking(0)


def test_a_failing_run_is_reported_alone(guest, engine):
    runs = [_run(guest('wc'), b'a\n'), _run(guest('crash'), b''), _run(guest('wc'), b'b c\n')]
    with Pool(size=1, queue=0) as pool:
        results = list(pool.run_many([r for r, _ in runs]))
    outs = [_out(f) for _, f in runs]
    assert [r.report.status for r in results] == ['ok', 'fault', 'ok']
    assert outs[0].split() == [b'1', b'1', b'2'] and outs[2].split() == [b'1', b'2', b'4']


def test_a_dead_worker_kills_its_run_and_the_rest_did_not_run(guest, engine):
    spin = Limits(fuel=10**15, timeout=30) if engine == 'emulated' else Limits(timeout=30)
    runs = [_run(guest('wc'), b'a\n'), _run(guest('loop'), b'', limits=spin),
            _run(guest('wc'), b'b\n')]
    with Pool(size=1, queue=0) as pool:
        (pid,) = pool.pids
        got, first = [], threading.Event()

        def consume():
            for result in pool.run_many([r for r, _ in runs]):
                got.append(result)
                first.set()
        t = threading.Thread(target=consume)
        t.start()
        assert first.wait(30)
        time.sleep(0.5)                        # the loop holds the worker now
        os.kill(pid, signal.SIGKILL)
        t.join(10)
        assert not t.is_alive()
        assert got[0].report.status == 'ok'
        assert got[1].report.status == 'killed' and 'SIGKILL' in got[1].report.message
        assert got[1].report.host_failure
        assert got[2] is None                  # never ran: the caller may send it elsewhere
        assert pool.replaced == 1
        run, files = _run(guest('wc'), b'again\n')
        assert [r.report.status for r in pool.run_many([run])] == ['ok']
        assert _out(files).split() == [b'1', b'1', b'6']
    for _, files in runs:
        _out(files)


def test_a_request_past_its_budget_leaves_its_other_runs_unstarted(guest, engine):
    """A quick run, one that runs to its timeout, then two more: the worker stops once
    the request has run its budget; the runs left are not answered, their outputs not
    touched; the worker serves the next request (not replaced), where they run."""
    # the budget: past the quick run, however loaded the machine, and short of the spin's end
    spin = Limits(fuel=10**15, timeout=6) if engine == 'emulated' else Limits(timeout=6)
    runs = [_run(guest('wc'), b'a\n'), _run(guest('loop'), b'', limits=spin),
            _run(guest('wc'), b'b c\n'), _run(guest('wc'), b'd e f\n')]
    with Pool(size=1, queue=0) as pool:
        warm, files = _run(guest('wc'), b'')        # its template: a quick run is quick
        assert [r.report.status for r in pool.run_many([warm])] == ['ok']
        _out(files)
        results = list(pool.run_many([r for r, _ in runs], budget=3.0))
        assert [r.report.status for r in results] == ['ok', 'timeout']
        outs = [_out(f) for _, f in runs]
        assert outs[0].split() == [b'1', b'1', b'2'] and outs[2:] == [b'', b'']
        again = [_run(guest('wc'), s) for s in (b'b c\n', b'd e f\n')]
        assert [r.report.status for r in pool.run_many([r for r, _ in again],
                                                        budget=30.0)] == ['ok', 'ok']
        assert [_out(f).split()[1] for _, f in again] == [b'2', b'3']
        assert pool.replaced == 0


def test_run_many_is_admitted_as_one_request(guest, engine):
    spin = Limits(fuel=10**15, timeout=3) if engine == 'emulated' else Limits(timeout=3)
    with Pool(size=1, queue=0) as pool:
        long_run, long_files = _run(guest('loop'), b'', limits=spin)
        taken = threading.Event()
        t = threading.Thread(target=lambda: list(pool.run_many([long_run], started=taken.set)))
        t.start()
        assert taken.wait(30)                  # the long run holds the only worker now
        run, files = _run(guest('wc'), b'a\n')
        with pytest.raises(PoolBusy):
            list(pool.run_many([run]))
        t.join()
        _out(long_files)
        _out(files)


def test_links_need_a_run_alone(guest):
    run, files = _run(guest('wc'), b'')
    run.channels[0].notify = run.channels[0].fd
    with Pool(size=1, queue=0) as pool, pytest.raises(ValueError, match='notify'):
        list(pool.run_many([run]))
    _out(files)

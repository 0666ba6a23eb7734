"""``auto`` in a pool: a node of a small program runs emulated for
``engines.TRIAL_FUEL`` first, and one that does not end by then starts over
natively, with nothing of its trial left in its outputs.  Both ends give what
either engine alone gives."""

from __future__ import annotations

import os
import tempfile

import pytest

from zvm_core import engines
from zvm_core.channels import READ, WRITE
from zvm_core.limits import Limits
from zvm_core.pool import ChannelSpec, Pool, Run

LONG = 200_000          # startover's count: far past the trial (24 bytes of code each)


@pytest.fixture(scope='module')
def pool():
    if engines.native_unavailable():
        pytest.skip(f'this host cannot run the native engine: {engines.native_unavailable()}')
    with Pool(size=1, queue=4) as p:
        yield p


def _files(n: int, first: bytes = b''):
    files = [tempfile.TemporaryFile() for _ in range(n)]
    if first:
        files[0].write(first)
        files[0].flush()
    return files


def _read(f) -> bytes:
    f.seek(0)
    return f.read()


def _run(pool: Pool, program, argv: list[str], engine: str | None = 'auto', *,
         stdout_before: bytes = b'', **kwargs):
    """(report, stdout, stderr) of a pool run of ``program`` on files."""
    stdout, stderr = _files(2, stdout_before)
    with stdout, stderr:
        report = pool.run(str(program), [ChannelSpec('/dev/stdout', stdout.fileno(), WRITE),
                                         ChannelSpec('/dev/stderr', stderr.fileno(), WRITE)],
                          argv=argv, engine=engine, **kwargs)
        return report, _read(stdout), _read(stderr)


def test_a_short_node_ends_in_its_trial_emulated_and_says_why(guest, pool) -> None:
    program = guest('startover')
    report, out, err = _run(pool, program, ['startover', '10'])
    assert (report.status, report.engine) == ('ok', 'emulated')
    assert report.engine_reason == engines.TRIAL_REASON
    assert 0 < report.accounting.fuel <= engines.TRIAL_FUEL
    assert (out, err) == (b'begin\nend 10 read 0\n', b'counting\n')
    native, n_out, n_err = _run(pool, program, ['startover', '10'], 'native')
    assert native.engine == 'native' and (n_out, n_err) == (out, err)
    assert native.etags == report.etags


def test_a_long_node_starts_over_natively_and_writes_once(guest, pool) -> None:
    program = guest('startover')
    report, out, err = _run(pool, program, ['startover', str(LONG)])
    assert (report.status, report.engine, report.engine_reason) == ('ok', 'native', '')
    assert (out, err) == (b'begin\nend %d read 0\n' % LONG, b'counting\n')
    # the counters and running digests are the native run's alone
    assert report.accounting.channels['/dev/stdout'].writes == 2
    assert report.accounting.channels['/dev/stderr'].write_bytes == 9
    emulated, e_out, e_err = _run(pool, program, ['startover', str(LONG)], 'emulated')
    assert emulated.engine == 'emulated' and (e_out, e_err) == (out, err)
    assert emulated.etags == report.etags


def test_a_long_node_reads_its_input_again_from_where_it_stood(guest, pool) -> None:
    """A sequential stdin reads from its descriptor's offset: the trial's reads moved
    it, and the native run starts where the node's input began (here past a header
    the caller had read)."""
    text = b'header line\n' + b'a line\n' * 100
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout:
        fin.write(text)
        fin.seek(len(b'header line\n'))
        report = pool.run(str(guest('startover')),
                          [ChannelSpec('/dev/stdin', fin.fileno(), READ),
                           ChannelSpec('/dev/stdout', fout.fileno(), WRITE),
                           ChannelSpec('/dev/stderr', -1, WRITE, tail=64)],
                          argv=['startover', str(LONG)], engine='auto')
        out = _read(fout)
    assert (report.status, report.engine) == ('ok', 'native')
    assert out == b'begin\nend %d read 700\n' % LONG
    assert report.accounting.channels['/dev/stdin'].read_bytes == 700


def test_a_node_over_more_than_its_trials_input_is_not_tried(guest, pool) -> None:
    """Inputs over ``TRIAL_INPUT`` (the files a node may read, not its images): its
    work grows with them (wc: past its trial over 8 KiB), so natively at once."""
    for size, engine in ((engines.TRIAL_INPUT, 'emulated'), (engines.TRIAL_INPUT + 1, 'native')):
        text = (b'x y\n' * size)[:size]
        with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout:
            fin.write(text)
            fin.seek(0)
            report = pool.run(str(guest('wc')), [ChannelSpec('/dev/stdin', fin.fileno(), READ),
                                                 ChannelSpec('/dev/stdout', fout.fileno(), WRITE)],
                              argv=['wc'], engine='auto')
            assert _read(fout).split() == [b'%d' % n for n in (
                text.count(b'\n'), len(text.split()), size)]
        assert (report.status, report.engine) == ('ok', engine), size


def test_a_long_node_appending_to_a_file_leaves_its_old_content(guest, pool) -> None:
    """A sequential output that held data before, written from its descriptor's
    offset at the end: the start over cuts it back to that data."""
    old = b'old data\n'
    report, out, _ = _run(pool, guest('startover'), ['startover', str(LONG)],
                          stdout_before=old)
    assert (report.status, report.engine) == ('ok', 'native')
    assert out == old + b'begin\nend %d read 0\n' % LONG


def test_a_node_that_may_write_over_old_data_is_not_tried(guest, pool) -> None:
    """An output whose descriptor stands before its end: a trial could write over
    bytes no start over gives back."""
    stdout, stderr = _files(2, b'old data, longer than the output\n')
    with stdout, stderr:
        stdout.seek(0)
        report = pool.run(str(guest('startover')),
                          [ChannelSpec('/dev/stdout', stdout.fileno(), WRITE),
                           ChannelSpec('/dev/stderr', stderr.fileno(), WRITE)],
                          argv=['startover', '10'], engine='auto')
        out = _read(stdout)
    assert (report.status, report.engine) == ('ok', 'native')
    assert out == b'begin\nend 10 read 0\nn the output\n'


def test_a_node_writing_a_stream_is_not_tried(guest, pool) -> None:
    """A pipe's bytes went once: the node runs natively from the start."""
    read, write = os.pipe()
    try:
        with tempfile.TemporaryFile() as stderr:
            report = pool.run(str(guest('startover')),
                              [ChannelSpec('/dev/stdout', write, WRITE),
                               ChannelSpec('/dev/stderr', stderr.fileno(), WRITE)],
                              argv=['startover', '10'], engine='auto')
        os.close(write)
        write = -1
        with os.fdopen(os.dup(read), 'rb') as got:
            assert got.read() == b'begin\nend 10 read 0\n'
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)
    assert (report.status, report.engine) == ('ok', 'native')


@pytest.mark.parametrize('engine', ['native', 'emulated'])
def test_an_engine_asked_for_is_not_tried(guest, pool, engine) -> None:
    report, out, _ = _run(pool, guest('startover'), ['startover', '10'], engine)
    assert (report.status, report.engine, report.engine_reason) == ('ok', engine, '')
    assert out == b'begin\nend 10 read 0\n'


def test_a_fuel_limit_runs_auto_emulated_to_its_own_budget(guest, pool) -> None:
    """A fuel limit asks for the emulated engine (not a trial): the budget is the
    user's, and running out of it is the run's end."""
    report, out, _ = _run(pool, guest('startover'), ['startover', str(LONG)],
                          limits=Limits(fuel=2 * engines.TRIAL_FUEL))
    assert (report.status, report.engine) == ('fuel', 'emulated')
    assert str(2 * engines.TRIAL_FUEL) in report.message
    assert out == b'begin\n'


def test_a_batch_tries_each_node_and_starts_the_long_ones_over(guest, pool) -> None:
    """``run_many`` (an object server's batch): short and long nodes of one program,
    each with a tail; each ends as it would alone."""
    program = guest('startover')
    counts = [5, LONG, 7, LONG, 3]
    outs = _files(len(counts))
    runs = [Run(str(program), [ChannelSpec('/dev/stdout', f.fileno(), WRITE),
                               ChannelSpec('/dev/stderr', -1, WRITE, tail=64)],
                ['startover', str(n)], engine='auto') for n, f in zip(counts, outs, strict=True)]
    try:
        results = list(pool.run_many(runs))
        got = [_read(f) for f in outs]
    finally:
        for f in outs:
            f.close()
    assert got == [b'begin\nend %d read 0\n' % n for n in counts]
    assert [r.report.engine for r in results] == [
        'native' if n == LONG else 'emulated' for n in counts]
    assert [r.tails['/dev/stderr'] for r in results] == [b'counting\n'] * len(counts)


def test_a_large_program_is_not_tried(pool, sysimages) -> None:
    """A program with more code than ``TRIAL_CODE`` (an interpreter: Lua's) runs
    natively at once, known from the file: its start-up alone is longer than a trial."""
    from zvm_core.elf import load_program
    lua = sysimages.program('lua')
    assert not engines.tried(load_program(str(lua)))
    report, out, _ = _run(pool, lua, ['lua', '-e', 'print(6 * 7)'])
    assert (report.status, report.engine, report.engine_reason) == ('ok', 'native', '')
    assert out == b'42\n'


def test_a_watched_node_is_not_tried(guest, pool) -> None:
    """A node whose caller reads its outputs as they grow (a streamed node): a start
    over would show, so it runs natively at once."""
    stdout, stderr = _files(2)
    with stdout, stderr:
        result = pool.run_result(str(guest('startover')),
                                 [ChannelSpec('/dev/stdout', stdout.fileno(), WRITE),
                                  ChannelSpec('/dev/stderr', -1, WRITE, tail=64)],
                                 argv=['startover', '10'], engine='auto', watched=True)
        assert _read(stdout) == b'begin\nend 10 read 0\n'
    assert (result.report.status, result.report.engine) == ('ok', 'native')
    assert result.tails == {'/dev/stderr': b'counting\n'}


def test_a_node_alone_keeps_its_tail_and_is_tried(guest, pool) -> None:
    """``Pool.run_result``: a run's ``tail`` channel kept by the worker (an object
    server's node alone: no pipe), and the run tried as a batch's node is."""
    stdout, stderr = _files(2)
    with stdout, stderr:
        result = pool.run_result(str(guest('startover')),
                                 [ChannelSpec('/dev/stdout', stdout.fileno(), WRITE),
                                  ChannelSpec('/dev/stderr', -1, WRITE, tail=64)],
                                 argv=['startover', str(LONG)], engine='auto')
        assert _read(stdout) == b'begin\nend %d read 0\n' % LONG
    assert (result.report.status, result.report.engine) == ('ok', 'native')
    assert result.tails == {'/dev/stderr': b'counting\n'}

"""The pool's caller side: which idle worker takes a request, and what a request says.

A worker cleans up after its reply (a native template forks the next run's
child, an emulated machine is reset), so the worker idle longest takes the next
request, not the one that has just answered.  The workers here are stand-ins:
only the choice and the message are under test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types

import pytest

from zvm_core import pool as zvm_pool
from zvm_core.channels import READ, UNLIMITED, WRITE, Quota
from zvm_core.limits import Limits
from zvm_core.pool import ChannelSpec, Pool, Run
from zvm_core.report import Accounting, ChannelAccounting, Report


class _Alive:
    pid = 1

    def poll(self) -> None:
        return None


def test_the_worker_idle_longest_takes_the_request(monkeypatch) -> None:
    made, served = [], []

    class Worker:
        def __init__(self, *args) -> None:
            self.proc, self.served = _Alive(), 0
            made.append(self)

    def exchange(self, worker, req, fds, wait, parse, gone=None) -> Report:
        served.append(made.index(worker))
        worker.served += 1
        return Report('ok', 0)
    monkeypatch.setattr(zvm_pool, '_Worker', Worker)
    monkeypatch.setattr(Pool, '_exchange', exchange)
    pool = Pool(size=3, queue=0)
    for _ in range(6):
        assert pool.run('/bin/true', [], argv=['true']).status == 'ok'
    assert served == [0, 1, 2, 0, 1, 2]


def test_a_request_leaves_out_what_is_at_its_default() -> None:
    channels = [ChannelSpec('/dev/stdin', 5, READ),
                ChannelSpec('/dev/stdout', 6, WRITE, random=True, quota=Quota(put_size=4096),
                            mount='/', wait=2.5)]
    req = json.loads(json.dumps(zvm_pool._request('/bin/true', channels, ['true'], {},
                                                  Limits(), 0, 0, 'virtualize', {1: 2})))
    assert req['channels'] == [
        {'alias': '/dev/stdin', 'fd': 0, 'mode': READ},
        {'alias': '/dev/stdout', 'fd': 1, 'mode': WRITE, 'random': True,
         'quota': {'put_size': 4096}, 'mount': '/', 'notify': 2, 'wait': 2.5}]
    assert Quota(**req['channels'][1]['quota']) == Quota(UNLIMITED, UNLIMITED, UNLIMITED, 4096)
    # what the worker makes of it once: the image channels to mount, by index
    assert zvm_pool._plan(req).mounts == (1,)


def _node(i: int, fds: tuple[int, int], argv: list[str] | None = None) -> Run:
    """A batch's node: stdin and stdout descriptors, stderr kept in the worker."""
    channels = [ChannelSpec('/dev/stderr', -1, WRITE, tail=64),
                ChannelSpec('/dev/stdin', fds[0], READ),
                ChannelSpec('/dev/stdout', fds[1], WRITE, quota=Quota(put_size=4096))]
    return Run('/bin/wc', channels, argv or ['wc'], {'LOCAL_PATH_INFO': f'/a/c/o{i}'},
               Limits(timeout=5.0), seed=i, epoch=7, engine='auto')


def _entries(message: list[bytes]) -> list[list]:
    kind, body = message
    assert kind == b'M'
    _budget, entries = json.loads(body)
    return entries


@pytest.fixture
def pair():
    caller, worker = zvm_pool._socketpair()
    with caller, worker:
        yield caller, worker


def test_received_descriptors_are_close_on_exec(pair) -> None:
    """A request's channels (or a reply's stray descriptors) are not inherited by
    a process spawned meanwhile, such as a native loader (before: until its
    ``close_range``)."""
    caller, worker = pair
    r, w = os.pipe()
    try:
        os.set_inheritable(r, True)
        zvm_pool._send(caller, [b'M[]'], [r])
        _message, fds = zvm_pool._recv(worker, zvm_pool._buffer())
        try:
            assert len(fds) == 1 and not os.get_inheritable(fds[0])
        finally:
            for fd in fds:
                os.close(fd)
    finally:
        os.close(r)
        os.close(w)


def test_what_a_batch_s_nodes_share_crosses_once_per_worker(pair) -> None:
    caller, worker = pair
    shapes, inbox = zvm_pool._Shapes(), zvm_pool._Inbox(worker)
    with open(os.devnull, 'rb') as fin, open(os.devnull, 'wb') as fout:
        ends = (fin.fileno(), fout.fileno())
        for first in (0, 3):        # two requests: the second sends no shape at all
            # each its own argv[0], as a wildcard's nodes (their names): one shape
            runs = [_node(i, ends, argv=[f'wc-{i}']) for i in range(first, first + 3)]
            message = shapes.request(b'M', runs, 'virtualize', {})
            assert [len(e) for e in _entries(message)] == ([6, 5, 5] if first == 0
                                                           else [5, 5, 5])
            zvm_pool._send(caller, message, [fd for _ in runs for fd in ends])
            kind, (got, budget), fds = inbox.next()
            assert kind == 'many' and len(fds) == 6 and budget is None
            for run, (req, run_fds) in zip(runs, got, strict=True):
                plan = req.pop('plan')      # what the worker made of the shape, once
                assert req == zvm_pool._request(run.program, run.channels, run.argv, run.env,
                                                run.limits, run.seed, run.epoch, 'virtualize',
                                                {}, run.engine)
                assert plan == zvm_pool._plan(req) and plan.limits == run.limits
                assert req['channels'][0] == {'alias': '/dev/stderr', 'fd': None,
                                              'mode': WRITE, 'tail': 64}
                assert len(run_fds) == 2            # stdin's and stdout's, this run's own
                assert [os.fstat(f).st_rdev for f in run_fds] == [os.fstat(f).st_rdev
                                                                  for f in ends]
            for f in fds:
                os.close(f)


def test_runs_whose_channels_differ_in_more_than_descriptors_get_a_shape_each() -> None:
    """A run's shape is its own when any field of a channel but its descriptor differs
    (a system image or not too: its shape said otherwise before); runs of one
    ``layout`` (the caller's promise: descriptors alone differ) share the first's."""
    def image(fd: int, system: bool) -> Run:
        run = _node(0, (fd, fd + 1))
        run.channels.append(ChannelSpec('/dev/python3', fd + 2, READ, random=True,
                                        mount='/', system=system))
        return run
    shapes = zvm_pool._Shapes()
    runs = [image(10, True), image(20, False), image(30, False), image(40, True)]
    assert [len(e) for e in _entries(shapes.request(b'M', runs, 'virtualize', {}))] == [
        6, 6, 5, 5]
    assert [e[-1]['channels'][-1].get('system') for e in _entries(
        zvm_pool._Shapes().request(b'M', runs[:2], 'virtualize', {}))] == [True, None]
    layout, other = object(), object()
    laid = [_node(i, (i, i + 1)) for i in range(4)]
    for run, token in zip(laid, (layout, layout, other, layout), strict=True):
        run.layout = token
    entries = _entries(shapes.request(b'M', laid, 'virtualize', {}))
    assert [len(e) for e in entries] == [6, 5, 6, 5]
    assert entries[1][0] == entries[3][0] == entries[0][0] != entries[2][0]


def test_more_shapes_than_a_worker_keeps_still_reach_it_whole(pair) -> None:
    """A request of more distinct shapes than SHAPES, then the first again: the
    numbers are reused in order, and each run still gets its own shape."""
    caller, worker = pair
    shapes, inbox = zvm_pool._Shapes(), zvm_pool._Inbox(worker)
    count = zvm_pool.SHAPES + 5
    runs = [_node(i, (-1, -1), argv=['wc', str(i)]) for i in range(count)]
    for i, run in enumerate(runs):
        run.channels = run.channels[:1]             # no descriptors: only the shapes
        run.limits = Limits(timeout=1.0 + i)        # a shape each
    runs.append(runs[0])
    message = shapes.request(b'M', runs, 'virtualize', {})
    assert [len(e) for e in _entries(message)] == [6] * (count + 1)    # the first: evicted
    zvm_pool._send(caller, message)
    _, (got, _), _ = inbox.next()
    assert [req['argv'] for req, _ in got] == [run.argv for run in runs]
    assert [req['limits']['timeout'] for req, _ in got] == [run.limits.timeout
                                                            for run in runs]


def test_a_request_that_did_not_go_is_forgotten(pair) -> None:
    """A request the socket refused (a bad descriptor here) taught the worker
    nothing: the next one sends its shape again."""
    caller, _ = pair
    worker = object.__new__(zvm_pool._Worker)       # its socket only, no process
    worker.sock, worker.shapes = caller, zvm_pool._Shapes()
    run = _node(0, (-1, -1))
    with pytest.raises(OSError):
        worker.send(lambda shapes: shapes.request(b'M', [run], 'virtualize', {}), [-1, -1])
    assert len(_entries(worker.shapes.request(b'M', [run], 'virtualize', {}))[0]) == 6


def test_a_run_many_reply_carries_its_tails_as_they_are(pair) -> None:
    caller, worker = pair
    channels = {'/dev/stdin': ChannelAccounting(1, 2, 3, 4), '/dev/stdout': ChannelAccounting()}
    report = Report('fault', None, 'why', {'state': 'cached', 'violations': [{'rule': 'x'}]},
                    {'/dev/stdout': 'abc'}, Accounting(5, 6, {'nr9': 2}, channels, 7, 0.5,
                                                       'resumed'),
                    'Signal 11', 'native', 'reason', True)
    tail = bytes(range(256)) * 3                    # not text
    zvm_pool._reply(worker, report, {'/dev/stderr': tail, '/dev/other': b''})
    message, fds = zvm_pool._recv(caller, zvm_pool._buffer())
    result = zvm_pool._run_result(message)
    assert fds == [] and result.tails == {'/dev/stderr': tail, '/dev/other': b''}
    assert result.data == report.to_dict() and result.report == report


def test_a_run_many_reply_says_when_the_worker_sent_it(pair) -> None:
    """``ended`` (the worker's monotonic clock, every process's) travels with the
    reply, the one a report too large replaces too: its caller paces by it."""
    caller, worker = pair
    zvm_pool._reply(worker, Report('ok', 0), {}, 1234.5)
    assert zvm_pool._run_result(zvm_pool._recv(caller, zvm_pool._buffer())[0]).ended == 1234.5
    zvm_pool._reply(worker, Report('ok', 0), {'/dev/stderr': b'x' * zvm_pool.MAX_MESSAGE}, 7.0)
    result = zvm_pool._run_result(zvm_pool._recv(caller, zvm_pool._buffer())[0])
    assert result.report.status == 'killed' and result.ended == 7.0
    zvm_pool._reply(worker, Report('ok', 0))        # Pool.run's: no stamp
    assert zvm_pool._run_result(zvm_pool._recv(caller, zvm_pool._buffer())[0]).ended is None


def test_a_run_many_reply_too_large_says_so(pair) -> None:
    caller, worker = pair
    zvm_pool._reply(worker, Report('ok', 0), {'/dev/stderr': b'x' * zvm_pool.MAX_MESSAGE})
    result = zvm_pool._run_result(zvm_pool._recv(caller, zvm_pool._buffer())[0])
    assert result.report.status == 'killed' and 'too large' in result.report.message
    assert not result.report.host_failure      # a bug of ours (a 500), not the host's
    assert result.tails == {}


def _leaves(data: dict, at: tuple = ()) -> set[tuple]:
    """The key paths of ``data``'s values (nested dicts of the report's own fields)."""
    out = set()
    for key, value in data.items():
        if isinstance(value, dict) and (key in ('validation', 'accounting', 'channels')
                                        or at[-1:] == ('channels',)):
            out |= _leaves(value, (*at, key))
        else:
            out.add((*at, key))
    return out


def test_a_reply_carries_every_field_of_the_report(pair) -> None:
    """Every field of Report, Accounting and ChannelAccounting, each set apart from its
    default, comes back as it went, and ``Report.to_dict`` has each: a field added to
    one of them and left out of the reply (or of ``to_dict``) fails here.  A field
    marked ``local`` (``Report.invalid_at``: the run's caller's) stays behind."""
    caller, worker = pair
    counters = ChannelAccounting(*range(1, len(dataclasses.fields(ChannelAccounting)) + 1))
    acc = Accounting(**{f.name: _unlike(f, counters) for f in dataclasses.fields(Accounting)})
    report = Report(**{f.name: _unlike(f, acc) for f in dataclasses.fields(Report)})
    zvm_pool._reply(worker, report)
    result = zvm_pool._run_result(zvm_pool._recv(caller, zvm_pool._buffer())[0])
    names = {(name,) for name in zvm_pool.REPORT_FIELDS} - {('validation',), ('accounting',)}
    names |= {('validation', 'state'), ('validation', 'violations')}
    names |= {('accounting', f.name) for f in dataclasses.fields(Accounting)} - {
        ('accounting', 'channels')}
    names |= {('accounting', 'channels', '/dev/x', f.name)
              for f in dataclasses.fields(ChannelAccounting)}
    assert _leaves(report.to_dict()) == names == _leaves(result.data)
    assert result.data == report.to_dict() and result.report == report


def _unlike(f: dataclasses.Field, nested: object) -> object:
    """A value for the field ``f`` unlike its default, of its type."""
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    if f.name == 'status':
        return 'fault'
    if f.name == 'validation':
        return {'state': 'cached', 'violations': [{'rule': 'r'}]}
    if f.name == 'channels':
        return {'/dev/x': nested}
    if f.name == 'accounting':
        return nested
    if isinstance(default, bool):
        return not default
    if isinstance(default, (int, float)) or default is None:
        return (default or 0) + 7
    if isinstance(default, str):
        return default + 'x'
    if isinstance(default, dict):
        return {'k': 3}
    raise AssertionError(f'no value for the field {f.name} ({f.type}): add one here')


def test_a_reply_not_come_yet_is_looked_for_again_after_a_pause(pair, monkeypatch) -> None:
    """``_recv`` with ``pause``: a message that comes during the pause is read then,
    without a wait on the socket (a wake-up of the server's hub per reply)."""
    caller, worker = pair
    caller.setblocking(False)
    paused: list[float] = []

    class Select:
        @staticmethod
        def select(r, w, x, timeout=None):
            assert (r, w, x) == ([], [], [])       # a pause, not a wait on the socket
            paused.append(timeout)
            zvm_pool._send(worker, [b'came meanwhile'])
            return [], [], []

    def wait(*args) -> None:
        raise AssertionError('waited on the socket')
    monkeypatch.setattr(zvm_pool, 'select', Select)
    monkeypatch.setattr(zvm_pool, '_wait', wait)
    message, fds = zvm_pool._recv(caller, zvm_pool._buffer(), None, 0.25)
    assert bytes(message) == b'came meanwhile' and fds == [] and paused == [0.25]


def _scripted(monkeypatch, replies: list[bytes], pauses: list[float], budgets: list) -> Pool:
    """A Pool(1) whose worker is a stand-in: it answers the next of ``replies`` (b'reply'
    once none is left); ``pauses`` gets each wait for a reply, ``budgets`` each
    request's budget."""
    class Worker:
        def __init__(self, *args) -> None:
            self.proc, self.served, self.warming = _Alive(), 0, False
            self.sock = self.buf = None

        def send(self, message, fds) -> None:
            budgets.append(json.loads(message(zvm_pool._Shapes())[1])[0])

    def recv(sock, buf, deadline=None, pause=0.0):
        pauses.append(pause)
        return memoryview(replies.pop(0) if replies else b'reply'), []
    monkeypatch.setattr(zvm_pool, '_Worker', Worker)
    monkeypatch.setattr(zvm_pool, '_recv', recv)
    monkeypatch.setattr(zvm_pool, '_run_result', lambda message: bytes(message))
    return Pool(size=1, queue=0)


def test_run_many_gathers_replies_but_waits_for_the_last_two_as_they_come(monkeypatch) -> None:
    """With a ``pace``, each reply is looked for after a pause of up to GATHER runs'
    time (at most GATHER_MOST seconds), and the last two without one: the worker
    waits for no next request.  Without a pace, no pause."""
    pauses: list[float] = []
    pool = _scripted(monkeypatch, [], pauses, [])
    runs = [_node(i, (-1, -1)) for i in range(7)]
    assert list(pool.run_many(runs, pace=0.001)) == [b'reply'] * 7
    assert pauses == pytest.approx([0.004, 0.004, 0.003, 0.002, 0.001, 0.0, 0.0])
    pauses.clear()
    assert list(pool.run_many(runs[:3], pace=1.0)) == [b'reply'] * 3
    assert pauses == [zvm_pool.GATHER_MOST, 0.0, 0.0]
    pauses.clear()
    assert list(pool.run_many(runs[:3])) == [b'reply'] * 3
    assert pauses == [0.0, 0.0, 0.0]


def test_a_chunk_s_budget_reaches_its_worker(pair) -> None:
    caller, worker = pair
    run = _node(0, (-1, -1))
    run.channels = run.channels[:1]             # no descriptors
    message = zvm_pool._Shapes().request(b'M', [run], 'virtualize', {}, 0.1)
    zvm_pool._send(caller, message)
    kind, (runs, budget), fds = zvm_pool._Inbox(worker).next()
    assert kind == 'many' and len(runs) == 1 and budget == 0.1 and fds == []


def test_a_worker_past_its_budget_starts_no_other_run(monkeypatch) -> None:
    """A chunk whose runs turn slow: once its budget is gone, the worker starts no
    other run, says so (STOPPED) and closes the descriptors of those it left."""
    from zvm_core.pool import worker
    clock, took, sent = [0.0], [0.001, 0.001, 60.0, 0.001, 0.001], []

    def serve_one(req, fds, templates, tails, ahead, ready, probe):
        clock[0] += took[req['i']]
        return Report('ok', 0), None
    monkeypatch.setattr(worker, '_serve_one', serve_one)
    monkeypatch.setattr(worker, '_reply', lambda sock, report, tails, ended: sent.append(ended))
    monkeypatch.setattr(worker, '_send', lambda sock, parts: sent.append(parts))
    monkeypatch.setattr(worker, '_fastcall', types.SimpleNamespace(
        hold=lambda on: False, monotonic=lambda: clock[0], coarse=lambda: clock[0]))
    runs = [({'i': i}, [os.open(os.devnull, os.O_RDONLY)]) for i in range(5)]
    worker._serve_many(None, runs, worker.Templates(1 << 20), budget=0.1)
    assert sent == [0.001, 0.002, 60.002, [zvm_pool.STOPPED]]
    for _, (fd,) in runs:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_run_many_ends_where_its_worker_stopped(monkeypatch) -> None:
    """The runs after a worker's STOPPED are not yielded (they did not start); the
    worker goes back to the pool, alive, not replaced."""
    asked: list = []
    pool = _scripted(monkeypatch, [b'reply', b'reply', zvm_pool.STOPPED], [], asked)
    runs = [_node(i, (-1, -1)) for i in range(5)]
    assert list(pool.run_many(runs, budget=0.25)) == [b'reply'] * 2
    assert asked == [0.25] and pool.replaced == 0 and len(pool._idle) == 1


def test_the_account_reaches_the_worker_in_the_shape_and_nothing_else_changes(pair) -> None:
    """A request's account (for the worker's template cache: ``worker.Templates``) is
    in its shape: another account's runs of the same shape get a shape of their own,
    and the runs the worker gets differ in that field alone."""
    caller, worker = pair
    shapes, inbox = zvm_pool._Shapes(), zvm_pool._Inbox(worker)
    run = _node(0, (-1, -1))
    run.channels = run.channels[:1]
    got = []
    for account in ('A', 'B', 'A', ''):
        message = shapes.request(b'M', [run], 'virtualize', {}, account=account)
        got.append(len(_entries(message)[0]))
        zvm_pool._send(caller, message)
        (req, _), = inbox.next()[1][0]
        assert req.get('account', '') == account
        req.pop('account', None)
        req.pop('plan', None)
        assert req == {**zvm_pool._request('/bin/wc', run.channels, run.argv, run.env,
                                           run.limits, run.seed, run.epoch, 'virtualize', {},
                                           run.engine)}
    assert got == [6, 6, 5, 6]      # each account's shape sent once


class _Sent(Exception):
    """The request a stand-in worker was sent (nothing runs)."""


@pytest.mark.parametrize('many', [False, True])
def test_pool_requests_carry_their_account(monkeypatch, many) -> None:
    """``Pool.run`` and ``run_many`` send the account they were given."""
    class Worker:
        def __init__(self, *args) -> None:
            self.proc = types.SimpleNamespace(pid=1, poll=lambda: None, kill=lambda: None)
            self.served, self.shapes = 0, zvm_pool._Shapes()

        def send(self, message, fds) -> None:
            raise _Sent(message(self.shapes))
    monkeypatch.setattr(zvm_pool, '_Worker', Worker)
    p = Pool(size=1)
    monkeypatch.setattr(p, '_started', lambda worker, wait: None)
    monkeypatch.setattr(p, '_successor', lambda worker: worker)     # (it was "stopped")
    run = _node(0, (-1, -1))
    run.channels = run.channels[1:]
    with pytest.raises(_Sent) as sent:
        if many:
            list(p.run_many([run], account='acct'))
        else:
            p.run(run.program, run.channels, argv=run.argv, account='acct')
    body = json.loads(sent.value.args[0][1])
    assert (body[1] if many else body)[0][-1]['account'] == 'acct'

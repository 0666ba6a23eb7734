"""Work that can take long runs off the eventlet hub (D6): the hub keeps serving.

Each test makes one such piece of work slow (it blocks its thread until the hub
has run another green thread, or gives up after a few seconds) and checks that
the other green thread did run meanwhile: done in the hub, the work would block
it and the ticker would never run.
"""

from __future__ import annotations

import io
import threading

import pytest
from greenlet import GreenletExit
from swift.common.concurrency import sleep, spawn, tpool

from zerocloud import wire
from zerocloud.object import ObjectExecMiddleware
from zerocloud.object import middleware as object_middleware
from zerocloud.proxy import middleware, uploads
from zerocloud.proxy.caller import Input
from zvm_core import pool as zvm_pool
from zvm_core.report import Report

GIVE_UP = 10.0          # seconds a slow piece waits for the hub before saying it was blocked


class Ticker:
    """A green thread that counts while the hub is free."""

    def __init__(self) -> None:
        self.ticks = 0
        self.thread = spawn(self._run)

    def _run(self) -> None:
        while True:
            self.ticks += 1
            sleep(0.001)

    def waits_for_a_tick(self) -> bool:
        """In a thread: whether the ticker moves (the hub is free) while it waits."""
        start, moved = self.ticks, threading.Event()
        for _ in range(int(GIVE_UP / 0.01)):
            if self.ticks > start:
                moved.set()
                break
            moved.wait(0.01)
        return moved.is_set()

    def stop(self) -> None:
        self.thread.kill()


def test_a_system_image_program_is_read_off_the_hub(tmp_path) -> None:
    mw = ObjectExecMiddleware(None, {'devices': str(tmp_path), 'mount_check': 'false'})
    ticker, seen = Ticker(), []
    sleep(0)                                     # the ticker has started

    class SlowImages:
        def program(self, image: str, member: str) -> str:
            seen.append(ticker.waits_for_a_tick())
            return f'/images/{image}/{member}'
    mw.sysimages = SlowImages()
    try:
        spec = wire.NodeSpec('py', ['python3'], program=('python3', 'python3'))
        assert object_middleware.NodeRun(mw, None).program(spec, {}) == '/images/python3/python3'
    finally:
        ticker.stop()
    assert seen == [True]


def test_a_program_is_hashed_off_the_hub(monkeypatch) -> None:
    ticker, seen = Ticker(), []
    sleep(0)

    class SlowHash:
        def update(self, data: bytes) -> None:
            seen.append(ticker.waits_for_a_tick())

        def hexdigest(self) -> str:
            return 'ab' * 32
    monkeypatch.setattr(middleware.hashlib, 'sha256', SlowHash)
    program = Input(io.BytesIO(b'\x7fELF'), 4)
    try:
        assert middleware.input_digest(program) == 'ab' * 32
    finally:
        ticker.stop()
    assert seen == [True]


class _DeadProc:
    pid = 1

    def poll(self) -> int:
        return -9                                 # the worker died during the run


def test_a_dead_worker_is_replaced_off_the_hub(monkeypatch) -> None:
    ticker, seen, workers = Ticker(), [], []
    sleep(0)

    class SlowWorker:
        served, spoke = 0, True                   # it had started

        def __init__(self, *args) -> None:
            if workers:                          # a replacement, not the first worker
                seen.append(ticker.waits_for_a_tick())
            self.proc = _LiveProc()
            workers.append(self)

        def kill(self) -> None:
            pass

    def dies(self, worker, *args) -> Report:
        worker.proc = _DeadProc()
        return Report(status='killed')
    monkeypatch.setattr(zvm_pool, '_Worker', SlowWorker)
    monkeypatch.setattr(zvm_pool.Pool, '_exchange', dies)
    try:
        pool = zvm_pool.Pool(size=1, queue=0, offload=tpool.execute)
        report = pool.run('/bin/true', [], argv=['true'])
    finally:
        ticker.stop()
    assert report.status == 'killed' and seen == [True]
    assert pool.replaced == 1 and len(workers) == 2 and pool._idle == [workers[1]]


def test_the_first_workers_start_off_the_hub(tmp_path, monkeypatch) -> None:
    mw = ObjectExecMiddleware(None, {'devices': str(tmp_path), 'mount_check': 'false'})
    ticker, seen = Ticker(), []
    sleep(0)

    class SlowPool:
        closed = False

        def __init__(self, size, queue, *, warm, offload, account_size) -> None:
            seen.append(ticker.waits_for_a_tick())
            self.offload = offload
    monkeypatch.setattr(object_middleware, 'Pool', SlowPool)
    monkeypatch.setattr(object_middleware, '_POOLS', {})
    try:
        pool = mw.pool
    finally:
        ticker.stop()
    assert seen == [True] and pool.offload is tpool.execute


def test_the_validating_workers_start_off_the_hub(monkeypatch) -> None:
    ticker, seen = Ticker(), []
    sleep(0)

    class SlowPool:
        closed = False

        def __init__(self, size, queue, *, offload) -> None:
            seen.append(ticker.waits_for_a_tick())
            self.offload = offload

        def close(self) -> None:
            self.closed = True
    monkeypatch.setattr(uploads, 'Pool', SlowPool)
    validation = uploads.Validation()
    try:
        pool = validation.pool()
    finally:
        ticker.stop()
    assert seen == [True] and pool.offload is tpool.execute
    assert validation.pool() is pool             # one per filter


def test_a_replacement_cut_short_leaves_the_slot_a_worker(monkeypatch) -> None:
    """The caller's green thread killed while its dead worker's successor starts
    (its client hung up): the next request gets a worker, not IndexError."""
    workers, cut = [], [True]

    class Worker:
        served, spoke = 0, True                   # it had started

        def __init__(self, *args) -> None:
            self.proc = _DeadProc() if not workers else _LiveProc()
            workers.append(self)

        def kill(self) -> None:
            pass

    def offload(fn, *args):
        if cut:
            cut.pop()
            raise GreenletExit()
        return fn(*args)
    def exchange(self, worker, message, fds, wait, parse, gone=None) -> object:
        if gone is not None and worker.proc.poll() is not None:
            return gone         # a dead worker's socket refuses the request
        return Report(status='ok', message=str(id(worker)))
    monkeypatch.setattr(zvm_pool, '_Worker', Worker)
    monkeypatch.setattr(zvm_pool.Pool, '_exchange', exchange)
    pool = zvm_pool.Pool(size=1, queue=0, offload=offload)
    with pytest.raises(GreenletExit):
        pool.run('/bin/true', [], argv=['true'])
    assert pool._idle == [workers[0]]
    report = pool.run('/bin/true', [], argv=['true'])
    assert report.message == str(id(workers[1]))
    assert pool._idle == [workers[1]] and pool.replaced == 1


class _LiveProc:
    pid = 2

    def poll(self) -> None:
        return None


class _EndingProc:
    """A worker process that is ending: its ``wait`` is slow (3-50 ms measured), so it
    must not run on the hub."""

    pid = 3

    def __init__(self, ticker: Ticker, seen: list) -> None:
        self.ticker, self.seen, self.killed = ticker, seen, False
        self.code: int | None = None    # not reaped yet

    def poll(self) -> int | None:
        return self.code

    def kill(self) -> None:
        self.killed = True

    def wait(self) -> int:
        self.seen.append(self.ticker.waits_for_a_tick())
        self.code = -9
        return -9


@pytest.mark.parametrize('how', ['worker dies', 'caller stops', 'worker dies (run)'])
def test_a_worker_ending_is_waited_for_off_the_hub(monkeypatch, how: str) -> None:
    """A worker whose socket closed (it died), or that is killed because its caller
    stopped waiting (the proxy hung up), is reaped off the hub, and replaced: a
    ``wait`` for its end in the hub blocked the server 3-50 ms per worker."""
    ticker, seen, workers = Ticker(), [], []
    sleep(0)

    class Worker:
        served, warming, spoke, death, sock, buf = 0, False, True, None, None, None

        def __init__(self, *args) -> None:
            self.proc = _EndingProc(ticker, seen)
            workers.append(self)

        def send(self, message, fds) -> None:
            pass

        def kill(self) -> None:         # the replacement's reaping (``_restart``)
            self.proc.kill()
            self.proc.wait()

    replies = [memoryview(b'reply')] + [None] * 3        # then the worker is gone
    monkeypatch.setattr(zvm_pool, '_Worker', Worker)
    monkeypatch.setattr(zvm_pool, '_recv', lambda *args, **kw: (replies.pop(0), []))
    monkeypatch.setattr(zvm_pool, '_wait', lambda *args: None)
    monkeypatch.setattr(zvm_pool, '_run_result', lambda message: bytes(message))
    pool = zvm_pool.Pool(size=1, queue=0, offload=tpool.execute)
    first = workers[0]
    runs = [zvm_pool.Run('/bin/true', [], ['true'], {}, zvm_pool.Limits(), 0, 0, None)] * 3
    try:
        if how == 'worker dies (run)':
            assert pool.run_result('/bin/true', [], argv=['true']) == b'reply'
            report = pool.run('/bin/true', [], argv=['true'])
            assert report.status == 'killed' and 'SIGKILL' in report.message
        else:
            results = pool.run_many(runs)
            assert next(results) == b'reply'
            if how == 'caller stops':
                results.close()
            else:
                killed, *rest = results
                assert 'SIGKILL' in killed.fields[zvm_pool.REPORT_FIELDS.index('message')]
                assert rest == [None]
    finally:
        ticker.stop()
    assert seen and all(seen)
    assert pool.replaced == 1 and pool._idle == [workers[1]] and not pool._stopped
    assert first.proc.killed and first.proc.code == -9     # reaped (by its replacement)

"""A hostile account's load on what the proxy shares between accounts (review18).

A deferred job (``X-Zerovm-Deferred``) goes on in the proxy after its client is
answered: nothing bounded how many one account kept running there.  One client,
on one connection, could start thousands, each holding the proxy's green
threads, its requests to the object servers (refused at the account's share,
then tried again) and up to ``zerovm_maxspool`` of its disk: every other
account's jobs then failed for want of the proxy's disk or waited behind them.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import time

import pytest
from swift.common.concurrency import LightQueue, sleep
from swift.common.swob import HTTPException, Request, Response
from test_proxy_filter import FakeRing, FakeSwift
from test_sources import JOB, DeletingSwift

from zerocloud import deferred
from zerocloud.config import Config
from zerocloud.proxy.middleware import ProxyExecMiddleware
from zerocloud.proxy.outputs import SPOOL_MEMORY, OutputFile

MOST = 3


class Jobs:
    """Deferred jobs (``always``) that run until :meth:`end` lets them end."""

    def __init__(self) -> None:
        self.app = DeletingSwift()
        self.releases: list[LightQueue] = []        # of the jobs running, in order

    def submit(self, account: str) -> Response:
        release: LightQueue = LightQueue()

        def work(progress) -> Response:
            progress.launched([])
            release.get()
            return Response(body=b'result')
        req = Request.blank(f'/v1/{account}/c', method='POST')
        resp = deferred.run(self.app, req, 'always', account, 'c', 1.0, work,
                            logging.getLogger('test'), most=MOST)
        self.releases.append(release)
        return resp

    def refused(self, account: str) -> str:
        with pytest.raises(HTTPException) as refused:
            self.submit(account)
        assert refused.value.status_int == 429
        return refused.value.body.decode()

    def end(self, count: int) -> None:
        """Let the first ``count`` jobs end and wait until they left the count of
        running jobs (once their results are stored)."""
        for release in self.releases[:count]:
            release.put(None)
        del self.releases[:count]
        deadline = time.monotonic() + 30
        while sum(deferred._RUNNING.values()) > len(self.releases) and \
                time.monotonic() < deadline:
            sleep(0.01)
        assert sum(deferred._RUNNING.values()) == len(self.releases)


@pytest.fixture
def jobs():
    made = Jobs()
    yield made
    made.end(len(made.releases))


def test_an_accounts_running_deferred_jobs_are_bounded_and_leave_room_for_others(
        jobs: Jobs) -> None:
    for _ in range(MOST):
        assert jobs.submit('AUTH_a').status_int == 202
    assert jobs.refused('AUTH_a') == (
        f'account AUTH_a has {MOST} deferred jobs running on this proxy, the most one '
        f'account may (zerovm_account_maxdeferred): wait until one ends (zc wait), or '
        f'run this job without X-Zerovm-Deferred\n')
    assert jobs.submit('AUTH_b').status_int == 202     # another account is not held up
    jobs.end(1)                         # AUTH_a's first ends: its room is free again
    assert jobs.submit('AUTH_a').status_int == 202


def test_the_bound_is_an_option_of_the_proxy() -> None:
    assert Config.from_conf({}).account_deferred == 16
    assert Config.from_conf({'zerovm_account_maxdeferred': '2'}).account_deferred == 2
    with pytest.raises(ValueError, match='zerovm_account_maxdeferred'):
        Config.from_conf({'zerovm_account_maxdeferred': '0'})


def test_the_proxy_refuses_a_deferred_job_of_an_account_at_its_option(monkeypatch) -> None:
    FakeRing.install(monkeypatch)
    swift = FakeSwift()
    swift.add('/bin/wc', b'\x7fELF program')
    mw = ProxyExecMiddleware(swift, {'zerovm_account_maxdeferred': '2'})
    monkeypatch.setattr(deferred, '_RUNNING', collections.Counter({'AUTH_a': 2}))
    resp = Request.blank('/v1/AUTH_a', method='POST', body=json.dumps(JOB).encode(), headers={
        'X-Zerovm-Execute': '1.0', 'X-Zerovm-Deferred': 'always',
        'Content-Type': 'application/json'}).get_response(mw)
    assert resp.status_int == 429, resp.body
    assert resp.body.startswith(b'account AUTH_a has 2 deferred jobs running on this proxy')
    assert not [c for c in swift.calls if c[0] == 'PUT']      # nothing stored, nothing run


def _disk(output: OutputFile) -> int:
    """Bytes of disk the spill file of ``output`` takes."""
    return os.fstat(output._spill.file.fileno()).st_blocks * 512


def test_an_output_held_open_keeps_no_other_outputs_bytes_on_the_proxys_disk() -> None:
    """A spill file was freed only when its last output closed: one output held open
    (a response read slowly by its client, a few MB) kept every other account's
    outputs spilled beside it on the proxy's disk, up to 1 GiB a spill file, long after
    their jobs ended."""
    held = OutputFile()
    held.write(b'h' * (SPOOL_MEMORY + 1))               # past memory: in the spill
    others = []
    for _ in range(8):
        other = OutputFile()
        other.write(b'x' * (4 << 20))
        others.append(other)
    assert {id(o._spill) for o in others} == {id(held._spill)}
    before = _disk(held)
    for other in others:
        other.close()
    assert before - _disk(held) >= (32 << 20) - (1 << 20)   # their blocks are free
    held.seek(0)
    assert held.read() == b'h' * (SPOOL_MEMORY + 1)     # and the held one intact
    held.close()

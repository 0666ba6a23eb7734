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

import pytest
from swift.common.concurrency import LightQueue
from swift.common.swob import HTTPException, Request, Response
from test_proxy_filter import FakeRing, FakeSwift
from test_sources import JOB, DeletingSwift

from zerocloud import deferred
from zerocloud.config import Config
from zerocloud.proxy.middleware import ProxyExecMiddleware

MOST = 3


def test_an_accounts_running_deferred_jobs_are_bounded_and_leave_room_for_others() -> None:
    app = DeletingSwift()
    release: LightQueue = LightQueue()

    def work(progress) -> Response:
        progress.launched([])
        release.get()                       # runs until the test lets it end
        return Response(body=b'result')

    def submit(account: str) -> Response:
        req = Request.blank(f'/v1/{account}/c', method='POST')
        return deferred.run(app, req, 'always', account, 'c', 1.0, work,
                            logging.getLogger('test'), most=MOST)
    running = 0
    try:
        for _ in range(MOST):
            assert submit('AUTH_a').status_int == 202
            running += 1
        with pytest.raises(HTTPException) as refused:
            submit('AUTH_a')
        assert refused.value.status_int == 429
        assert refused.value.body.decode() == (
            f'account AUTH_a has {MOST} deferred jobs running on this proxy, the most one '
            f'account may (zerovm_account_maxdeferred): wait until one ends (zc wait), or '
            f'run this job without X-Zerovm-Deferred\n')
        assert submit('AUTH_b').status_int == 202     # another account is not held up
        running += 1
        release.put(None)                   # one job ends: its result stored, its room freed
        running -= 1
        assert app.wait_until(lambda: sum(p.endswith('.headers') for p in app.objects) == 1)
        assert submit('AUTH_a').status_int == 202
        running += 1
    finally:
        for _ in range(running):
            release.put(None)
    assert app.wait_until(lambda: sum(p.endswith('.headers') for p in app.objects) == MOST + 2)


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

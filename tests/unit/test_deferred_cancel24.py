"""Cancelling a deferred job (review24): a DELETE of its state read the state three or
four times and the result's ``.headers`` two or three (six subrequests where three do);
and a ``.cancel`` object written directly (a PUT, a copy) by any writer of the
container stopped the owner's running job, though a DELETE-cancel needs the right to
read the job's state: the running job now honours only the marker a cancel stored."""

from __future__ import annotations

import json
import logging
import time

import pytest
from swift.common.middleware import gatekeeper
from swift.common.swob import Request, Response
from test_proxy_filter import ACCOUNT
from test_sources import DeletingSwift

from zerocloud import deferred
from zerocloud.httperrors import HTTPNotFound

NAME = f'{ACCOUNT}/c/job-' + '8' * 32
LOG = logging.getLogger('test')


def _state(app: DeletingSwift, updated: float, name: str = NAME) -> None:
    app.objects[f'{name}.state'] = ({}, json.dumps({
        'state': 'running', 'heartbeat': 10.0, 'updated': updated, 'moved': updated,
        'proxy': 'elsewhere.invalid:1'}).encode())


def _delete(app: DeletingSwift, name: str = NAME) -> Response:
    def filtered(env, start_response):
        return (deferred.cancel(app, env, LOG) or app)(env, start_response)
    return Request.blank(f'{name}.state', method='DELETE').get_response(filtered)


def test_a_cancel_of_a_running_job_reads_its_state_once() -> None:
    """Read the state (GET), store the marker, look for a result once: three."""
    app = DeletingSwift()
    _state(app, time.time())
    resp = _delete(app)
    assert resp.status_int == 202, resp.body
    assert [(m, p) for m, p, _ in app.calls] == [
        ('GET', f'{NAME}.state'), ('PUT', f'{NAME}.cancel'), ('GET', f'{NAME}.headers')]


def test_a_cancel_of_an_ended_job_says_so_without_reading_twice() -> None:
    app = DeletingSwift()
    app.objects[f'{NAME}.headers'] = ({}, json.dumps({'Status': '200 OK'}).encode())
    resp = _delete(app)
    assert (resp.status_int, resp.body) == (
        404, b'job-' + b'8' * 32 + b' is not running: it has ended (its result is stored)\n')
    assert [(m, p) for m, p, _ in app.calls] == [
        ('GET', f'{NAME}.state'), ('GET', f'{NAME}.headers')]


def test_reading_a_running_jobs_result_reads_its_state_once() -> None:
    """A poll of ``.headers`` while the job runs: its state (fresh) says there is
    nothing to settle; no look for the result first."""
    app = DeletingSwift()
    _state(app, time.time())
    deferred.settle_lost(app, Request.blank(f'{NAME}.headers').environ, LOG)
    assert [(m, p) for m, p, _ in app.calls] == [('GET', f'{NAME}.state')]


def _running_job(monkeypatch, app: DeletingSwift) -> tuple[str, object]:
    """A deferred job answered 202 that runs until ``release.put(None)``; its
    result is a 200 unless it was cancelled."""
    from swift.common.concurrency import LightQueue
    monkeypatch.setattr(deferred, 'CANCEL_EVERY', 0.01)
    release: LightQueue = LightQueue()

    def work(progress) -> Response:
        progress.launched([])
        release.get()
        return Response(body=b'done', headers={'X-Nexe-Status': 'ok'})
    req = Request.blank(ACCOUNT + '/c', method='POST')
    resp = deferred.run(app, req, 'always', 'AUTH_a', 'c', 1.0, work, logger=LOG)
    assert resp.status_int == 202, resp.body
    return f'{ACCOUNT}/c/' + resp.body.decode().strip().rsplit('/', 1)[1], release


def _looked(app: DeletingSwift, marker: str, times: int) -> bool:
    """Has the job looked for its marker ``times`` more times (from now)?"""
    start = sum(1 for m, p, _ in app.calls if (m, p) == ('HEAD', marker))
    return app.wait_until(lambda: sum(1 for m, p, _ in app.calls
                                      if (m, p) == ('HEAD', marker)) >= start + times)


@pytest.mark.parametrize('planted', ['put', 'forged', 'copied'])
def test_a_cancel_object_written_directly_stops_no_job(monkeypatch, planted: str) -> None:
    """hostile23: any writer of the container (a write ACL, no read) could stop the
    owner's job with a PUT of ``<job>.cancel``.  Nor does a copy of a marker a cancel
    stored for another job (a marker of the copier's own job, whose system metadata a
    server-side copy keeps) stop it: a marker names the job it is for.  A user's PUT
    that sets the mark itself loses it in Swift's gatekeeper (system metadata)."""
    app = DeletingSwift()
    name, release = _running_job(monkeypatch, app)
    marker = f'{name}.cancel'
    if planted == 'put':
        app.objects[marker] = ({}, b'stop\n')       # a user's PUT: no system metadata
    elif planted == 'forged':
        account, container, job = name.split('/')[2:]
        forged = Request.blank(marker, method='PUT', body=b'stop\n', headers={
            deferred.CANCEL_MARK: deferred._cancel_mark(account, container, job)})
        assert forged.get_response(gatekeeper.filter_factory({})(app)).status_int == 201
        assert marker in app.objects
    else:
        other = f'{ACCOUNT}/mine/job-' + '9' * 32
        _state(app, time.time(), other)
        assert _delete(app, other).status_int == 202
        app.objects[marker] = app.objects[f'{other}.cancel']
    assert _looked(app, marker, 3)                  # it saw the object, and ran on
    release.put(None)
    assert app.wait_until(lambda: f'{name}.headers' in app.objects)
    stored = json.loads(app.objects[f'{name}.headers'][1])
    assert (stored['Status'], stored['X-Nexe-Status']) == ('200 OK', 'ok')
    assert app.objects[name][1] == b'done'
    assert app.wait_until(lambda: f'{name}.state' not in app.objects)


def test_a_cancel_by_a_delete_of_the_state_still_stops_the_job(monkeypatch) -> None:
    app = DeletingSwift()
    name, release = _running_job(monkeypatch, app)
    assert app.wait_until(lambda: f'{name}.state' in app.objects)
    assert _delete(app, name).status_int == 202
    assert app.wait_until(lambda: f'{name}.headers' in app.objects)
    stored = json.loads(app.objects[f'{name}.headers'][1])
    assert (stored['Status'], stored['X-Nexe-Status']) == (
        '499 Client Disconnect', 'cancelled')
    assert app.wait_until(lambda: not {f'{name}.state', f'{name}.cancel'} & set(app.objects))
    release.put(None)


def test_not_running_is_unchanged_for_a_missing_job() -> None:
    app = DeletingSwift()
    resp = _delete(app)
    assert (resp.status_int, resp.body) == (
        404, HTTPNotFound(body=f'job-{"8" * 32} is not running: no such job\n').body)


def test_a_job_in_a_non_ascii_container_is_cancelled_where_it_runs(monkeypatch) -> None:
    """The job kept its state, and looked for its marker, under the names the request's
    path gave (WSGI strings: UTF-8 bytes as Latin-1) quoted again: in ``dÃ©jÃ ...``, a
    container that is not there; the proxy's middleware and ``cancel`` now both name
    ``déjà vu %41``, as the client's URL-encoded path does."""
    from swift.common.concurrency import LightQueue

    from zerocloud.proxy.middleware import _native
    monkeypatch.setattr(deferred, 'CANCEL_EVERY', 0.01)
    app = DeletingSwift()
    release: LightQueue = LightQueue()

    def work(progress) -> Response:
        progress.launched([])
        release.get()
        return Response(body=b'done', headers={'X-Nexe-Status': 'ok'})
    url = f'{ACCOUNT}/d%C3%A9j%C3%A0%20vu%20%2541'
    req = Request.blank(url, method='POST')
    _, account, container = _native(req.split_path(3, 3))
    assert container == 'déjà vu %41'
    resp = deferred.run(app, req, 'always', account, container, 1.0, work, logger=LOG)
    assert resp.status_int == 202, resp.body
    job = resp.body.decode().strip().rsplit('/', 1)[1]
    assert resp.body.decode().strip() == f'swift://AUTH_a/d%C3%A9j%C3%A0%20vu%20%2541/{job}'
    name = f'{url}/{job}'
    assert app.wait_until(lambda: f'{name}.state' in app.objects)
    assert _delete(app, name).status_int == 202
    assert f'{name}.cancel' in app.objects
    assert app.wait_until(lambda: f'{name}.headers' in app.objects)
    stored = json.loads(app.objects[f'{name}.headers'][1])
    assert stored['X-Nexe-Status'] == 'cancelled'
    assert app.wait_until(lambda: not {f'{name}.state', f'{name}.cancel'} & set(app.objects))
    release.put(None)

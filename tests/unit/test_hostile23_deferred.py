"""An attacker's review (review23) of deferred jobs' names: an object named as a job's
state (``job-<32 hex>.state``) that no job's proxy wrote, or a state forged to look
running forever, could never be deleted: every DELETE was taken for a cancel (202,
and a ``.cancel`` object more), so the object and its container stayed for good.
Any user who may write a container (a write ACL) could plant one in it."""

from __future__ import annotations

import json
import logging
import time

import pytest
from swift.common.swob import Request, Response
from test_proxy_filter import ACCOUNT
from test_sources import DeletingSwift

from zerocloud import deferred

NAME = f'{ACCOUNT}/c/job-' + '5' * 32
LOG = logging.getLogger('test')


def _delete(app: DeletingSwift) -> Response:
    """A client's DELETE of the state, through ``cancel`` and then Swift (``app``)."""
    def filtered(env, start_response):
        cancelled = deferred.cancel(app, env, LOG)
        return (cancelled or app)(env, start_response)
    return Request.blank(f'{NAME}.state', method='DELETE').get_response(filtered)


@pytest.mark.parametrize('body', [
    b'my own notes\n',
    json.dumps({'state': 'running'}).encode(),
    json.dumps([1, 2]).encode(),
    b'{"state": "running", "heartbeat": NaN, "updated": NaN}',
    b' ' * (deferred.STATE_MAX + 1),
], ids=['text', 'no-times', 'list', 'nan', 'large'])
def test_an_object_named_as_a_state_that_no_proxy_wrote_is_deleted(body: bytes) -> None:
    app = DeletingSwift()
    app.objects[f'{NAME}.state'] = ({}, body)
    resp = _delete(app)
    assert resp.status_int == 204, resp.body
    assert f'{NAME}.state' not in app.objects and f'{NAME}.cancel' not in app.objects


@pytest.mark.parametrize('forged', [
    {'updated': 'now', 'moved': 10 ** 9, 'heartbeat': 1e300},
    {'updated': 10 ** 9, 'moved': 10 ** 9, 'heartbeat': 1e300},
], ids=['dated-ahead', 'eternal-heartbeat'])
def test_a_state_forged_to_run_forever_is_lost_and_its_name_freed(forged: dict) -> None:
    """Dated ahead (``moved``, ``updated``) and with a heartbeat of 1e300 s, a state
    was never stale nor hung: never lost, so its DELETE was a cancel, for ever."""
    now = time.time()
    state = {'state': 'running', 'proxy': 'elsewhere.invalid:1',
             'updated': now + forged['updated'] if forged['updated'] != 'now' else now,
             'moved': now + forged['moved'], 'heartbeat': forged['heartbeat']}
    app = DeletingSwift()
    app.objects[f'{NAME}.state'] = ({}, json.dumps(state).encode())
    resp = _delete(app)
    assert resp.status_int == 404, resp.body
    assert f'{NAME}.state' not in app.objects and f'{NAME}.cancel' not in app.objects
    stored = json.loads(app.objects[f'{NAME}.headers'][1])
    assert stored['X-Nexe-Status'] == 'lost'
    assert 'ahead: no proxy wrote it' in stored['X-Nexe-Error'], stored


def test_a_running_jobs_state_is_still_cancelled_not_deleted() -> None:
    app = DeletingSwift()
    now = time.time()
    app.objects[f'{NAME}.state'] = ({}, json.dumps({
        'state': 'running', 'heartbeat': 10.0, 'updated': now, 'moved': now,
        'proxy': 'elsewhere.invalid:1'}).encode())
    resp = _delete(app)
    assert resp.status_int == 202, resp.body
    assert f'{NAME}.state' in app.objects and f'{NAME}.cancel' in app.objects


@pytest.mark.parametrize('error', ['x\r\nSet-Cookie: evil=1', 'caf\u00e9 \u20ac\x00\x7f'],
                         ids=['line-break', 'not-latin-1'])
def test_what_a_forged_lost_result_says_stays_in_its_header(error: str) -> None:
    """A cancel of a job reported lost whose state is fresh again says what the lost
    result said, in ``X-Nexe-Reported-Lost``; that result is an object (``.headers``)
    any user who may write the container can write.  A line break in it added headers
    to the answer (``Set-Cookie``), a character past Latin-1 dropped the connection."""
    app = DeletingSwift()
    now = time.time()
    app.objects[f'{NAME}.headers'] = ({}, json.dumps(
        {'Status': '503 Service Unavailable', 'X-Nexe-Status': 'lost',
         'X-Nexe-Error': error}).encode())
    app.objects[f'{NAME}.state'] = ({}, json.dumps({
        'state': 'running', 'heartbeat': 10.0, 'updated': now, 'moved': now,
        'proxy': 'elsewhere.invalid:1'}).encode())
    resp = _delete(app)
    assert resp.status_int == 202, resp.body
    said = resp.headers['X-Nexe-Reported-Lost']
    assert said.isascii() and not [c for c in said if ord(c) < 32 or ord(c) == 127], said
    assert 'Set-Cookie' not in dict(resp.headers)
    assert said.startswith(('x Set-Cookie: evil=1', 'caf? ?')), said

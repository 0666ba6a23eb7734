"""A deferred job reported lost that ends after all (``zerocloud.deferred``): its result
and the lost one are stored by two writers at once, the job's proxy (:func:`_store_late`:
body, then ``.headers``) and a poller's (:func:`settle_lost`).  Every order of their
requests ends with the job's own result, body and ``.headers`` (mendB: body, lost body,
lost ``.headers``, ``.headers`` left the lost text under a success status; others lost the
result); reading the lost one never keeps the result from being stored."""

from __future__ import annotations

import itertools
import json
import logging
import time

import pytest
from greenlet import greenlet
from swift.common.concurrency import LightQueue
from swift.common.swob import Request, Response
from test_proxy_filter import ACCOUNT
from test_sources import DeletingSwift

from zerocloud import deferred
from zerocloud.job import SwiftPath

LOG = logging.getLogger('test')
NAME = 'job-' + '7' * 32
WHERE = SwiftPath('AUTH_a', 'c', NAME)
RESULT = f'{ACCOUNT}/c/{NAME}'


class Swift(DeletingSwift):
    """Honours ``If-None-Match: *`` on a PUT; ``turns``: each request first yields to
    the greenlet that started its writer, which says when it goes on."""

    def __init__(self, turns: bool = False) -> None:
        super().__init__()
        self.turns = turns

    def __call__(self, env, start_response):
        if self.turns:
            greenlet.getcurrent().parent.switch()
        if env['REQUEST_METHOD'] == 'PUT' and env.get('HTTP_IF_NONE_MATCH') == '*' \
                and env['PATH_INFO'] in self.objects:
            return Response(status=412)(env, start_response)
        return super().__call__(env, start_response)


def stale_state(app: Swift) -> dict:
    """The state of a job another host's proxy last wrote 100 s ago: a poller's GET of
    its result stores it lost (its env)."""
    app.objects[f'{RESULT}.state'] = ({}, json.dumps(
        {'state': 'running', 'heartbeat': 10.0, 'updated': time.time() - 100,
         'proxy': 'elsewhere:1', 'nodes': {'total': 1, 'done': 0, 'failed': 0}}).encode())
    return Request.blank(f'{RESULT}.headers').environ


def job_result() -> Response:
    return Response(body=b'out\n', content_type='text/plain', headers={'X-Nexe-Status': 'ok'})


def stored(app: Swift) -> tuple[str, bytes]:
    return json.loads(app.objects[f'{RESULT}.headers'][1])['X-Nexe-Status'], \
        app.objects[RESULT][1]


def interleavings() -> list[str]:
    """Who answers each request: the job's proxy (``R``: GET .headers, PUT, PUT) and the
    poller (``L``: HEAD .headers, GET the state, PUT, PUT, DELETE, DELETE), every order."""
    return [''.join('R' if i in at else 'L' for i in range(9))
            for at in itertools.combinations(range(9), 3)]


@pytest.mark.parametrize('order', interleavings())
def test_a_late_result_and_a_lost_one_stored_at_once_end_as_the_result(order) -> None:
    app = Swift(turns=True)
    env = stale_state(app)
    writers = {'R': greenlet(lambda: deferred._store_late(app, Request(dict(env)), WHERE,
                                                         job_result(), LOG, {})),
               'L': greenlet(lambda: deferred.settle_lost(app, env, LOG))}
    for writer in writers.values():
        writer.switch()                 # up to its first request
    for who in order + 'RL' * 9:        # a writer that ended early leaves its turns
        if not writers[who].dead:
            writers[who].switch()
    assert all(w.dead for w in writers.values())
    assert stored(app) == ('ok', b'out\n')


def test_a_lost_result_alone_is_stored_whole() -> None:
    app = Swift()
    deferred.settle_lost(app, stale_state(app), LOG)
    status, body = stored(app)
    assert status == 'lost' and body.startswith(b'the proxy running this deferred job stopped')


def test_a_lost_result_is_never_stored_over_the_job_s_body() -> None:
    """The job stored its body, not yet its ``.headers``: the lost ``.headers`` says
    what happened; the body stays the job's, for its ``.headers`` to come."""
    app = Swift()
    app.objects[RESULT] = ({}, b'out\n')
    deferred.settle_lost(app, stale_state(app), LOG)
    assert stored(app) == ('lost', b'out\n')


def test_a_lost_result_without_a_length_is_not_read(monkeypatch) -> None:
    """Its ``.headers`` as a body of no Content-Length (chunked): too large, not read
    whole into the proxy's memory (it was, as of length 0)."""
    read = []

    def chunks():
        read.append(True)
        yield json.dumps({'X-Nexe-Status': 'lost', 'X-Nexe-Error': 'gone'}).encode()

    def app(env, start_response):
        start_response('200 OK', [('Content-Type', 'application/json')])
        return chunks()
    resp = job_result()
    deferred._note_lost(app, Request.blank('/'), WHERE, resp)
    assert 'X-Nexe-Reported-Lost' not in resp.headers and not read


class FailingSwift(Swift):
    """Its GET of a result's ``.headers`` (the lost one looked for) raises."""

    def __call__(self, env, start_response):
        if env['REQUEST_METHOD'] == 'GET' and env['PATH_INFO'].endswith('.headers'):
            raise OSError('connection reset')
        return super().__call__(env, start_response)


def test_a_failure_to_read_a_lost_result_never_keeps_the_job_s_from_being_stored() -> None:
    """Before, the job's green thread ended there: no result, its state kept fresh
    until its proxy stopped, then read as lost."""
    app = FailingSwift()
    release: LightQueue = LightQueue()

    def work(progress) -> Response:
        progress.launched([])
        return release.get()
    answer = deferred.run(app, Request.blank(ACCOUNT + '/c', method='POST'), 'always',
                          'AUTH_a', 'c', 1.0, work, LOG, heartbeat=30)
    result = f'{ACCOUNT}/c/' + answer.body.decode().strip().rsplit('/', 1)[1]
    release.put(job_result())
    for _ in range(30):                 # requests: _keep_state's look every second
        if f'{result}.state' not in app.objects:
            break
        app._answered.get(timeout=30)
    assert json.loads(app.objects[f'{result}.headers'][1])['X-Nexe-Status'] == 'ok'
    assert app.objects[result][1] == b'out\n' and f'{result}.state' not in app.objects


class RefusingSwift(Swift):
    """Answers ``refuse[path]`` to a PUT of the result's ``path`` (body or
    ``.headers``), the rest as Swift."""

    def __init__(self, refuse: dict[str, int]) -> None:
        super().__init__()
        self.refuse = refuse

    def __call__(self, env, start_response):
        status = self.refuse.get(env['PATH_INFO'])
        if env['REQUEST_METHOD'] == 'PUT' and status:
            return Response(status=status)(env, start_response)
        return super().__call__(env, start_response)


@pytest.mark.parametrize('status', [503, 507, 413, 400])
def test_a_lost_result_whose_body_swift_refused_stores_no_headers(status) -> None:
    """Before, its ``.headers`` was stored over no body, and the state deleted: a
    result of no body, for good."""
    app = RefusingSwift({RESULT: status})
    deferred.settle_lost(app, stale_state(app), LOG)
    assert f'{RESULT}.headers' not in app.objects and RESULT not in app.objects
    assert f'{RESULT}.state' in app.objects


@pytest.mark.parametrize('refused', ['', '.headers'])
def test_a_lost_result_swift_refused_keeps_the_state_for_the_next_poll(refused) -> None:
    """Nothing stored (or a body without ``.headers``): the state stays, and the next
    poll stores the lost result (before, the state was deleted: "no such job")."""
    app = RefusingSwift({RESULT + '.headers': 503, **({} if refused else {RESULT: 503})})
    env = stale_state(app)
    deferred.settle_lost(app, env, LOG)
    assert f'{RESULT}.headers' not in app.objects and f'{RESULT}.state' in app.objects
    app.refuse.clear()
    deferred.settle_lost(app, env, LOG)
    status, body = stored(app)
    assert status == 'lost' and body.startswith(b'the proxy running this deferred job stopped')
    assert f'{RESULT}.state' not in app.objects

"""Deferred execution: ``X-Zerovm-Deferred: always | auto | never``.

``never`` (the default) answers when the job is done.  ``always`` answers
as soon as the job has passed every check (authorisation, parsing, inputs
fetched) and its nodes are on their way; ``auto`` waits up to
``interactive_timeout`` seconds for the result and answers with it if it
came.  Otherwise the answer is ``202 Accepted`` with the ``swift://`` URL of
the result in the body (and its HTTP URL in ``Location``)::

    swift://<account>/<container>/job-<id>

where ``<container>`` is the one of the request URL (POST to
``/v1/<account>/<container>``), else ``.zvm``.  It is created if needed.
When the job is done, its response body is stored there (with its content
type) and a JSON object of its status and headers as ``<that name>.headers``
(``{"Status": "200 OK", "X-Nexe-Status": "ok", ...}``), both as the caller;
``.headers`` comes last, so once it exists the result is complete.  Errors
found before the job starts (400, 403, 404...) are answered directly.

Unlike ZeroCloud, the result never overwrites the object of the request URL,
and the answer says 202, not 200.

A deferred job's state lives in Swift, next to its result: while it runs,
the proxy running it keeps ``<that name>.state`` (``{"state": "running",
"heartbeat": <s>, "updated": <unix time>, "proxy": ...}``), rewritten every
``deferred_heartbeat`` seconds and deleted once the result is stored.  If
that proxy stops (restart, crash) the state stops being refreshed; the
first GET or HEAD of ``<that name>.headers`` that finds no result and a state
older than three heartbeats stores the result of a lost job: the error as
body and ``{"Status": "503 Service Unavailable", "X-Nexe-Status": "lost",
"X-Nexe-Error": ...}`` (as that reader, so it must be allowed to write
there).  A job is never resumed: it may have written objects already.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from urllib.parse import quote

from swift.common.concurrency import Empty, LightQueue, spawn
from swift.common.http import is_success
from swift.common.swob import (
    HTTPAccepted,
    HTTPBadRequest,
    HTTPException,
    HTTPInternalServerError,
    HTTPServiceUnavailable,
    Request,
    Response,
)
from swift.common.utils import FileLikeIter, close_if_possible
from swift.common.wsgi import make_subrequest

from zerocloud.config import SWIFT_SOURCE
from zerocloud.job import SwiftPath
from zerocloud.sources import REGISTRY

HEADER = 'X-Zerovm-Deferred'
MODES = ('always', 'auto', 'never')
HEADERS_SUFFIX = '.headers'
STATE_SUFFIX = '.state'
STALE_BEATS = 3                          # a state this many heartbeats old is a lost job
_RESULT = re.compile(r'/([^/]+)/([^/]+)/([^/]+)/(job-[0-9a-f]{32})' + re.escape(HEADERS_SUFFIX))
_PROXY = f'{socket.gethostname()}:{os.getpid()}'


def mode(req: Request) -> str:
    value = req.headers.get(HEADER, 'never').strip().lower()
    if value not in MODES:
        raise HTTPBadRequest(body=f'{HEADER} must be one of {", ".join(MODES)}\n')
    return value


def _nothing() -> None:
    pass


def run(app, req: Request, how: str, account: str, container: str | None, timeout: float,
        work: Callable[[Callable[[], None]], Response], logger,
        heartbeat: float = 10.0) -> Response:
    """``work(launched)``'s response, or 202 and its result stored later (``how``: a
    mode); ``work`` calls ``launched()`` once its job passed its checks and its nodes
    are being sent."""
    if how == 'never':
        return work(_nothing)
    where = SwiftPath(account, container or REGISTRY, f'job-{uuid.uuid4().hex}')
    events: LightQueue = LightQueue()
    finished: LightQueue = LightQueue()
    state = {'deferred': False}

    def worker() -> None:
        try:
            resp = work(lambda: events.put(('launched', None)))
        except HTTPException as e:
            resp = e
        except Exception:
            logger.exception('deferred job %s failed', where)
            resp = HTTPInternalServerError(
                body=f'internal error, transaction {req.environ.get("swift.trans_id")}\n')
        if state['deferred']:
            _store(app, req, where, resp, logger)
            finished.put(None)
        else:
            events.put(('done', resp))

    spawn(worker)
    deadline = None if how == 'always' else time.monotonic() + timeout
    while True:
        try:
            kind, resp = events.get(
                timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        except Empty:
            break
        if kind == 'done':
            return resp
        if how == 'always':
            break
    state['deferred'] = True
    while True:                          # a result that arrived as the wait ended
        try:
            kind, resp = events.get_nowait()
        except Empty:
            break
        if kind == 'done':
            return resp
    spawn(_keep_state, app, req, where, heartbeat, finished, logger)
    return HTTPAccepted(body=f'{where}\n', content_type='text/plain',
                        headers={'Location': req.host_url + '/v1' + quote(where.path)})


def _keep_state(app, req: Request, where: SwiftPath, heartbeat: float, finished: LightQueue,
                logger) -> None:
    """Keep the job's state fresh in Swift until its result is stored, then delete it."""
    base = f'/v1/{where.account}/{where.container}'
    state = f'{base}/{where.obj}{STATE_SUFFIX}'
    _put(app, req, base)
    while True:
        body = json.dumps({'state': 'running', 'heartbeat': heartbeat, 'updated': time.time(),
                           'proxy': _PROXY}).encode()
        stored = _put(app, req, state, body, 'application/json')
        if not is_success(stored.status_int):
            logger.error('deferred job %s: storing its state failed: %s', where, stored.status)
        try:
            finished.get(timeout=heartbeat)
            break
        except Empty:
            pass
    _request(app, req, 'DELETE', state)


def settle_lost(app, env: dict, logger) -> None:
    """Before a GET/HEAD of a deferred result: if it is missing and its job's state is
    stale (the proxy running it stopped), store the result of a lost job."""
    found = _RESULT.fullmatch(env.get('PATH_INFO', ''))
    if found is None:
        return
    req = Request(env)
    version, account, container, name = found.groups()
    base = f'/{version}/{account}/{container}/{name}'
    if _request(app, req, 'HEAD', base + HEADERS_SUFFIX).status_int != 404:
        return
    state = _request(app, req, 'GET', base + STATE_SUFFIX)
    try:
        running = json.loads(state.body) if state.status_int == 200 else None
        age = time.time() - float(running['updated'])
        stale = age > STALE_BEATS * float(running['heartbeat'])
    except (ValueError, TypeError, KeyError):
        return
    if not stale:
        return
    logger.error('deferred job %s was lost: its state was last updated %.0f s ago by %s',
                 base, age, running.get('proxy'))
    lost = HTTPServiceUnavailable(
        body=f'the proxy running this deferred job stopped before it finished (its state was '
             f'last updated {age:.0f} s ago); its result is lost: run the job again\n',
        content_type='text/plain', headers={'X-Nexe-Status': 'lost'})
    lost.headers['X-Nexe-Error'] = lost.body.decode().strip()
    _store(app, req, SwiftPath(account, container, name), lost, logger, version)
    _request(app, req, 'DELETE', base + STATE_SUFFIX)


def _request(app, req: Request, method: str, path: str) -> Response:
    return make_subrequest(req.environ, method, quote(path),
                           swift_source=SWIFT_SOURCE).get_response(app)


def _put(app, req: Request, path: str, body: bytes | Response = b'',
         content_type: str | None = None) -> Response:
    """PUT ``body``: bytes, or the body of a response, streamed (a job's may be large)."""
    headers = {}
    if content_type:
        headers['Content-Type'] = content_type
    if isinstance(body, bytes):
        headers['Content-Length'] = str(len(body))
        return make_subrequest(req.environ, 'PUT', quote(path), body=body, headers=headers,
                               swift_source=SWIFT_SOURCE).get_response(app)
    chunks = body.app_iter if body.app_iter is not None else [body.body]
    headers['Content-Length'] = str(body.content_length or 0)
    sub = make_subrequest(req.environ, 'PUT', quote(path), headers=headers,
                          swift_source=SWIFT_SOURCE)
    sub.environ['wsgi.input'] = FileLikeIter(chunks)
    try:
        return sub.get_response(app)
    finally:
        close_if_possible(chunks)


def _store(app, req: Request, where: SwiftPath, resp: Response, logger,
           version: str = 'v1') -> None:
    """Store a deferred job's body, then its status and headers."""
    container = _put(app, req, f'/{version}/{where.account}/{where.container}')
    if not is_success(container.status_int):
        logger.error('deferred result %s: cannot create its container: %s', where,
                     container.status)
        close_if_possible(resp.app_iter)
        return
    headers = {'Status': resp.status, **dict(resp.headers)}
    for name, body, content_type in (
            (where.obj, resp, resp.content_type),
            (where.obj + HEADERS_SUFFIX, json.dumps(headers, indent=1).encode(),
             'application/json')):
        stored = _put(app, req, f'/{version}/{where.account}/{where.container}/{name}', body,
                      content_type)
        if not is_success(stored.status_int):
            logger.error('deferred result %s: storing %s failed: %s', where, name,
                         stored.status)
            return

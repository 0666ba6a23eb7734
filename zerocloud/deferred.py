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
and the answer says 202, not 200.  A proxy restarted while a deferred job
runs loses it (nothing is stored).
"""

from __future__ import annotations

import json
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
    Request,
    Response,
)

from zerocloud.job import SwiftPath
from zerocloud.proxy.caller import Caller
from zerocloud.sources import REGISTRY

HEADER = 'X-Zerovm-Deferred'
MODES = ('always', 'auto', 'never')
HEADERS_SUFFIX = '.headers'


def mode(req: Request) -> str:
    value = req.headers.get(HEADER, 'never').strip().lower()
    if value not in MODES:
        raise HTTPBadRequest(body=f'{HEADER} must be one of {", ".join(MODES)}\n')
    return value


def run(caller: Caller, how: str, account: str, container: str | None, timeout: float,
        work: Callable[[Callable[[], None]], Response], logger) -> Response:
    """``work(launched)``'s response, or 202 and its result stored later (``how``: a
    mode); ``work`` calls ``launched()`` once the job passed its checks and its
    nodes are being sent."""
    if how == 'never':
        return work(lambda: None)
    req = caller.req
    where = SwiftPath(account, container or REGISTRY, f'job-{uuid.uuid4().hex}')
    events: LightQueue = LightQueue()
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
            _store(caller, where, resp, logger)
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
    return HTTPAccepted(body=f'{where}\n', content_type='text/plain',
                        headers={'Location': req.host_url + '/v1' + quote(where.path)})


def _put(caller: Caller, path: str, body: bytes = b'', content_type: str | None = None
         ) -> Response:
    headers = {'Content-Length': str(len(body))}
    if content_type:
        headers['Content-Type'] = content_type
    return caller.sub('PUT', path, body=body, headers=headers).get_response(caller.app)


def _store(caller: Caller, where: SwiftPath, resp: Response, logger) -> None:
    """Store a deferred job's body, then its status and headers."""
    container = _put(caller, f'/v1/{where.account}/{where.container}')
    if not is_success(container.status_int):
        logger.error('deferred result %s: cannot create its container: %s', where,
                     container.status)
        return
    headers = {'Status': resp.status, **dict(resp.headers)}
    for name, body, content_type in (
            (where.obj, resp.body, resp.content_type),
            (where.obj + HEADERS_SUFFIX, json.dumps(headers, indent=1).encode(),
             'application/json')):
        stored = _put(caller, f'/v1/{where.account}/{where.container}/{name}', body,
                      content_type)
        if not is_success(stored.status_int):
            logger.error('deferred result %s: storing %s failed: %s', where, name,
                         stored.status)
            return

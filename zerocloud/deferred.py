"""Deferred execution: ``X-Zerovm-Deferred: always | auto | never``.

``never`` (the default) answers when the job is done.  ``always`` answers
as soon as the job has passed every check (authorisation, parsing, inputs
fetched) and its nodes are on their way; ``auto`` waits up to
``interactive_timeout`` seconds for the result and answers with it if it
came.  Otherwise the answer is ``202 Accepted`` with the ``swift://`` URL of
the result in the body (and its HTTP URL in ``Location``)::

    swift://<account>/<container>/job-<id>

where ``<container>`` is the one of the request URL (POST to
``/v1/<account>/<container>``), else ``.zvm``, created if needed; a container
of the URL must exist: 404 before the job runs otherwise (a typo in its name
would make a new one).
When the job is done, its response body is stored there (with its content
type) and a JSON object of its status and headers as ``<that name>.headers``
(``{"Status": "200 OK", "X-Nexe-Status": "ok", ...}``), both as the caller;
``.headers`` comes last, so once it exists the result is complete (a lost job's
result, :func:`_store_lost`, may have the job's own body under it).  Its
``"Objects"`` (not a header) names the object each node ran next to, by node
name (``{"wc-1": "swift://AUTH_a/logs/day-1.log", ...}``; nodes without one
are left out; a job of more than :data:`OBJECTS_MAX` nodes has none, its
report names them): the ``X-Nexe-*`` headers do not say, and the body is the
nodes' output unless the job asked for the JSON report.  Errors
found before the job starts (400, 403, 404...) are answered directly, and so is
Swift's refusal of the job's first state (:func:`_unstorable`: a quota used up;
the job is stopped): a 202 promises a result that can be stored.  A body Swift
refuses later is replaced by why (:func:`_unstored`, ``X-Nexe-Status: unstored``),
and so is one stored whose ``.headers`` Swift then refused (deleted first: it may
have filled the quota), as a result without them never completes.

Once answered 202 the job caches no account or container info (:class:`_Uncached`): it
outlives its request, and the ACLs of its start must not let it store where its
caller may no longer write.

Unlike ZeroCloud, the result never overwrites the object of the request URL,
and the answer says 202, not 200.

A deferred job's state lives in Swift, next to its result: while it runs,
the proxy running it keeps ``<that name>.state`` (stored before the 202, so
that a job a client was told of has a state or a result, unless storing it
takes more than FIRST_STATE_WAIT seconds: the answer does not wait longer)::

    {"state": "running", "heartbeat": 10.0, "updated": 1764687000.5, "moved": 1764686999.0,
     "proxy": "proxy-1:4242", "pids": "6f1e...", "since": 81234567,
     "started": 1764686990.1, "job": 1,
     "nodes": {"total": 300, "done": 120, "failed": 2, "running": 64},
     "bytes": {"in": 12582912, "out": 40960}}

rewritten every ``deferred_heartbeat`` seconds, and at most once a second
while nodes end (so a long job can be followed: ``zc wait``), and deleted
once the result is stored.  ``nodes`` counts the nodes of the job (a node
with ``replicate`` once; ``total``, of a wildcard job, grows as its listing
is read: the nodes found so far): ``done`` ended successfully, ``failed`` did not
(a node fails when any replica of it failed), ``running`` were sent to an object server and
have not ended, the others wait for a producer or a free request slot of the
proxy; ``bytes`` is what the ended nodes read and wrote (all their channels).
``job`` is the job's place in a chain (``zerocloud.chain``): each job of a
chain counts its own nodes.  Counts are live: the result decides (a node
cut short because its producer failed ends ``skipped`` in it).  If
that proxy stops (restart, crash) the state stops being refreshed; the
first GET or HEAD of ``<that name>.headers`` (or DELETE of its state) that
finds no result and a state older than three heartbeats, or written by a
proxy process of this host and pid space (``pids``: this boot, this pid
namespace) that no longer exists (:func:`_process`: its pid is gone, or is
another process's, started at another time than ``since``), stores
the result of a lost job: the error as
body and ``{"Status": "503 Service Unavailable", "X-Nexe-Status": "lost",
"X-Nexe-Error": ...}`` (as that reader, so it must be allowed to write
there), and deletes the state and any cancel marker (unless nothing could be stored:
then the state stays, for the next reader to try again).  A job is never
resumed: it may have written objects already.  A state however old whose
proxy process is of this host and pid space and still running (the same pid
and ``since``, not a zombie) is not lost: its job runs on (a proxy too busy to
write its heartbeat, Swift refusing the writes for a while) and ends by its own
limits (each node's ``zerovm_timeout``), storing its result; only a state of
another host's proxy (or of a proxy older than ``since``) is judged by its
age alone.  But a job whose counts have not moved (``moved``: when they last
changed, or an input was fetched or an output stored: ``Progress.touch``)
for HUNG_LIMITS times ``zerovm_timeout + chain_timeout`` of the reader's proxy
is lost wherever its proxy runs: no node runs that long, so the job hung or its
heartbeat died, and its pollers would wait forever.  A job reported lost whose
proxy was slow or cut off, not stopped, may still end: its result then replaces
the lost one, saying so (:func:`_note_lost`); the lost one never replaces it,
whatever the order of the two writers' PUTs (:func:`_store_lost`).

A client's DELETE of ``<that name>.state`` cancels the job (:func:`cancel`; so
who may cancel may read the state and write the container): it stores
``<that name>.cancel``, marked as the proxy's for that job (:data:`CANCEL_MARK`,
system metadata: no user writes it, and a copy of another job's names that
job), which the proxy running the job looks for every CANCEL_EVERY seconds (a
``.cancel`` a user PUTs, or copies, without that mark stops nothing); it then
throws :class:`Cancelled` into the job (its nodes stop as for a client that
hangs up) and stores its result, 499 with ``X-Nexe-Status: cancelled`` and
what had ended (in words, and as ``X-Nexe-Node-Counts: total 3, done 1, failed
0, stopped 2``; a lost job's result gives what its state last counted, ``..., lost 2``).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import quote

from swift.common.concurrency import Empty, LightQueue, hubs, spawn
from swift.common.http import is_success
from swift.common.swob import HTTPAccepted, HTTPException, Request, Response, wsgi_to_str
from swift.common.utils import FileLikeIter, close_if_possible
from swift.common.wsgi import make_subrequest
from swift.proxy.controllers.base import get_container_info

from zerocloud import jobnames
from zerocloud.answer_format import DEFERRED_HEADER as HEADER
from zerocloud.config import SWIFT_SOURCE, Config
from zerocloud.httperrors import (
    HTTPBadRequest,
    HTTPClientDisconnect,
    HTTPInternalServerError,
    HTTPNotFound,
    HTTPServiceUnavailable,
    HTTPTooManyRequests,
)
from zerocloud.job import Node, SwiftPath
from zerocloud.jobnames import HEADERS_SUFFIX, STATE_SUFFIX
from zerocloud.pathnames import text_names
from zerocloud.proxy.response import attached_object, header_text
from zerocloud.sources import REGISTRY

MODES = ('always', 'auto', 'never')
OBJECTS_KEY = 'Objects'                  # of .headers: node name -> its object
OBJECTS_MAX = 1000                       # nodes beyond which a result has no "Objects"
PROGRESS_EVERY = 1.0                     # seconds; the state is rewritten at most this often
FIRST_STATE_WAIT = 2.0                   # seconds the 202 waits for the state's first write
STALE_BEATS = 3                          # a state this many heartbeats old is a lost job
HUNG_LIMITS = 10                         # (zerovm_timeout + chain_timeout) without a
                                         # node moving: a hung job, however alive its proxy
CANCEL_SUFFIX = '.cancel'                # stored by a DELETE of the state: stop the job
CANCEL_MARK = 'X-Object-Sysmeta-Zerocloud-Cancel'   # on it: which job (_cancel_mark)
CANCEL_EVERY = 1.0                       # seconds; how often the running job looks for it
STATE_MAX = 65536                        # bytes: a state (~400) or a lost result's .headers
                                         # is smaller; a larger object named so is a user's,
                                         # not read (it held the proxy's memory)
_JOB = r'/([^/]+)/([^/]+)/([^/]+)/(' + jobnames.NAME.pattern + ')'
_RESULT = re.compile(_JOB + re.escape(HEADERS_SUFFIX))
_STATE = re.compile(_JOB + re.escape(STATE_SUFFIX))


UNSTORED = 'unstored'    # a state's kind when neither its job's result nor why could be stored


class _Uncached(dict):
    """The ``swift.infocache`` of a job once answered 202: it keeps nothing, so what the
    job looks up later (an ACL) is read again, as for its caller's own requests.
    Swift's cache is a request's; kept, it held the ACLs of the job's start for its
    whole life (a chain's later jobs too: each starts from the request's)."""

    def __setitem__(self, key, value) -> None:
        pass


class Cancelled(BaseException):
    """Thrown into a deferred job's green thread when a DELETE of its state asked to
    stop it (a BaseException, like ``zerocloud.hangup.HangUp``: nothing on the way
    swallows it, and the job's nodes stop as they do when a client hangs up)."""


def mode(req: Request) -> str:
    value = req.headers.get(HEADER, 'never').strip().lower()
    if value not in MODES:
        raise HTTPBadRequest(body=f'{HEADER} must be one of {", ".join(MODES)}\n')
    return value


def _nothing() -> None:
    pass


class Progress:
    """How far a job is, as its nodes end: the counts of its deferred state.

    The proxy calls :meth:`launched` once a job passed its checks, :meth:`more`
    for the nodes of a wildcard found later, as the listing is read (``total``
    is then the nodes known so far), then :meth:`started` and :meth:`finished`
    for each node it sends and sees end.
    """

    def __init__(self, on_launch: Callable[[], None] = _nothing) -> None:
        self._on_launch = on_launch
        self.started_at = time.time()
        self.job = 0
        self.total = self.done = self.failed = self.running = 0
        self.bytes_in = self.bytes_out = 0
        self.touched = 0                # steps that end no node: the job is not hung
        self._objects: dict[str, str] | None = {}

    def launched(self, nodes: Iterable[Node]) -> None:
        """A job (the next one of a chain) will run ``nodes``: counts start again."""
        self.job += 1
        self.total, self.done, self.failed, self.running = 0, 0, 0, 0
        self.bytes_in = self.bytes_out = 0
        self._objects = {}
        self.more(nodes)
        self._on_launch()

    def more(self, nodes: Iterable[Node]) -> None:
        """More nodes of the job (its objects are kept up to :data:`OBJECTS_MAX` nodes)."""
        for node in nodes:
            self.total += 1
            if self._objects is not None and attached_object(node):
                self._objects[node.name] = str(node.attach.path)
        if self.total > OBJECTS_MAX:
            self._objects = None

    def started(self) -> None:
        self.running += 1

    def finished(self, results: Sequence) -> None:
        """A node ended; ``results``, one per replica (``NodeResult``)."""
        self.running = max(0, self.running - 1)
        if any(r.failed for r in results):
            self.failed += 1
        else:
            self.done += 1
        for r in results:
            read, written = r.channel_bytes()
            self.bytes_in += read
            self.bytes_out += written

    def touch(self) -> None:
        """The job moved on without ending a node (an input fetched, an output stored:
        up to zerovm_job_maxoutput after its last node): its state's ``moved``."""
        self.touched += 1

    def objects(self) -> dict[str, str]:
        """The object each node of the (last) job runs next to, by node name (none for a
        job of more than :data:`OBJECTS_MAX` nodes)."""
        return dict(self._objects or {})

    def counts(self) -> dict:
        """The state's ``job``, ``nodes`` and ``bytes``."""
        return {'job': self.job,
                'nodes': {'total': self.total, 'done': self.done, 'failed': self.failed,
                          'running': self.running},
                'bytes': {'in': self.bytes_in, 'out': self.bytes_out}}


# account -> its deferred jobs running in this process (X-Zerovm-Deferred auto or
# always); an /open/ request is a job of the account in its URL (only those who may
# run jobs there may open) and counts in that account's share
_RUNNING: collections.Counter[str] = collections.Counter()


def _release(account: str) -> None:
    """One deferred job of ``account`` ended or never started."""
    _RUNNING[account] -= 1
    if not _RUNNING[account]:
        del _RUNNING[account]


def run(app, req: Request, how: str, account: str, container: str | None, timeout: float,
        work: Callable[[Progress], Response], logger,
        heartbeat: float = 10.0, most: int = 16) -> Response:
    """``work(progress)``'s response, or 202 and its result stored later (``how``: a
    mode); ``work`` calls ``progress.launched(nodes)`` once its job passed its checks
    and its nodes are being sent, then counts them as they end (:class:`Progress`).
    An account runs at most ``most`` deferred jobs here at once, its ``/open/``
    requests among them: a deferred job holds no client connection, so nothing else
    bounds what one account keeps running in the proxy (its requests, its spool on the
    proxy's disk) while others wait."""
    if how == 'never':
        return work(Progress())
    if _RUNNING[account] >= most:
        raise HTTPTooManyRequests(
            body=f'account {account} has {_RUNNING[account]} deferred jobs running on this '
                 f'proxy, the most one account may (zerovm_account_maxdeferred): wait until '
                 f'one ends (zc wait), or run this job without {HEADER}\n')
    _RUNNING[account] += 1        # counted before the container's look, which yields
    try:
        if container is not None:
            _need_container(app, req, account, container)
    except BaseException:
        _release(account)
        raise
    where = SwiftPath(account, container or REGISTRY, jobnames.new_name())
    events: LightQueue = LightQueue()
    finished: LightQueue = LightQueue()
    # what becomes of the result: 'answer'ed (the request waits for it), 'store'd (the
    # client got a 202) or 'drop'ped (its first state refused: the client was told so)
    state = {'result': 'answer', 'working': True}
    progress = Progress(lambda: events.put(('launched', None)))

    def worker() -> None:
        try:
            resp = work(progress)
        except HTTPException as e:
            resp = e
        except Cancelled:
            resp = _cancelled(progress)
        except Exception:
            logger.exception('deferred job %s failed', where)
            resp = HTTPInternalServerError(
                body=f'internal error, transaction {req.environ.get("swift.trans_id")}\n')
        finally:
            state['working'] = False        # storing the result is never cancelled
        try:
            if state['result'] == 'store':
                try:
                    unstored = _store_late(app, req, where, resp, logger, progress.objects())
                except Exception as e:
                    logger.exception('deferred result %s: storing it failed', where)
                    unstored = f'storing its result failed: {e!r}'
                finished.put(unstored)
            elif state['result'] == 'drop':     # nobody reads it: its spool goes now
                close_if_possible(resp.app_iter)
            else:
                events.put(('done', resp))
        finally:
            _release(account)

    running = spawn(worker)
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
    state['result'] = 'store'
    req.environ['swift.infocache'] = _Uncached()
    while True:                          # a result that arrived as the wait ended
        try:
            kind, resp = events.get_nowait()
        except Empty:
            break
        if kind == 'done':
            return resp
    stored_once: LightQueue = LightQueue()

    def cancel() -> None:             # from the hub, as zerocloud.hangup throws HangUp
        if state['working'] and not running.dead:
            running.throw(Cancelled())

    def stop() -> None:
        hubs.get_hub().schedule_call_global(0, cancel)
    spawn(_keep_state, app, req, where, heartbeat, finished, progress, logger, stored_once,
          stop)
    try:        # a job a client is told of has a state (or a result): unless Swift is slow
        first = stored_once.get(timeout=FIRST_STATE_WAIT)
    except Empty:
        first = None
    if first is not None and 400 <= first.status_int < 500:     # not a passing 5xx
        state['result'] = 'drop'        # it could not be stored either: told now
        finished.put(None)
        stop()
        return _unstorable(where, first)
    return HTTPAccepted(body=f'{where}\n', content_type='text/plain',
                        headers={'Location': req.host_url + '/v1' + quote(where.path)})


def _need_container(app, req: Request, account: str, container: str) -> None:
    """404 unless the container the job was POSTed to exists: its result goes there,
    and a typo in its name must not make a new container (only ``.zvm``, the result's
    home by default, is created)."""
    sub = make_subrequest(req.environ, 'HEAD', quote(f'/v1/{account}/{container}'),
                          swift_source=SWIFT_SOURCE)
    if get_container_info(sub.environ, app, swift_source=SWIFT_SOURCE)['status'] != 404:
        return
    if req.method != 'POST':    # an open or API request: nothing here to create
        named = wsgi_to_str(req.path_info).split('/', 3)[3]
        raise HTTPNotFound(body=f'container swift://{account}/{container} does not exist (of '
                                f'swift://{account}/{named}, this request\'s URL)\n')
    said = (f'container swift://{account}/{container} does not exist: a deferred job keeps '
            f'its result in the container it is POSTed to')
    if not _may_create(req, account, container):
        raise HTTPNotFound(body=f'{said}; it would be of account {account}, whose containers '
                                f'you cannot create: only its owner can; ask them to create '
                                f'it and add you to its write ACL (X-Container-Write), or POST '
                                f'the job to your own account\n')
    raise HTTPNotFound(body=f'{said}; create it first (swift post {container}, in account '
                            f'{account}), or POST to the account (the result then goes to '
                            f'{REGISTRY})\n')


def _may_create(req: Request, account: str, container: str) -> bool:
    """May the caller create the container (a PUT of it authorised: the account's
    owner or admin)?  Else ``swift post`` is no advice: the account is another's."""
    authorize = req.environ.get('swift.authorize')
    if authorize is None:
        return True
    sub = make_subrequest(req.environ, 'PUT', quote(f'/v1/{account}/{container}'),
                          swift_source=SWIFT_SOURCE)
    return authorize(sub) is None


def _unstorable(where: SwiftPath, refused: Response) -> Response:
    """The answer to a deferred job whose first state Swift refused (a quota, a
    container deleted, a read-only account): its result would be refused too, so the
    job is stopped and the client told, not given a 202 for a result that never comes.
    Swift's 4xx is the answer's (413 for a quota; a 5xx may pass: the job goes on)."""
    return Response(status=refused.status_int, content_type='text/plain', body=(
        f'this deferred job was stopped: its state could not be stored in '
        f'swift://{where.account}/{where.container}, where it keeps its state and result '
        f'{_swift_said(refused)}; make room there (a quota) or run it without '
        f'{HEADER}\n').encode())


def _swift_said(refused: Response) -> str:
    """``(413 Request Entity Too Large: <the start of its body>)``."""
    why = refused.body.decode('utf-8', 'replace').strip()[:200]
    return f'({refused.status}{": " + why if why else ""})'


def _home(app, req: Request, where: SwiftPath, version: str = 'v1') -> Response | None:
    """Create the result's container if it is the default one (:data:`REGISTRY`): a
    container of the URL exists (:func:`_need_container`), and a caller allowed to
    write there need not be allowed to PUT it (a write ACL is not ownership)."""
    if where.container != REGISTRY:
        return None
    return _put(app, req, f'/{version}/{where.account}/{where.container}')


def _keep_state(app, req: Request, where: SwiftPath, heartbeat: float, finished: LightQueue,
                progress: Progress, logger, stored_once: LightQueue,
                cancel: Callable[[], None]) -> None:
    """Keep the job's state fresh in Swift until its result is stored, then delete it:
    every ``heartbeat`` seconds, and when its counts changed (at most every
    PROGRESS_EVERY seconds); ``stored_once`` gets Swift's answer to the first write.
    Every CANCEL_EVERY seconds, look for the job's cancel marker as :func:`cancel`
    stores it (:func:`_marked`: a ``.cancel`` written any other way is a user's object,
    left alone): ``cancel()`` once it is there (deleted with the state)."""
    base = f'/v1/{where.account}/{where.container}'
    state = f'{base}/{where.obj}{STATE_SUFFIX}'
    marker = f'{base}/{where.obj}{CANCEL_SUFFIX}'
    _home(app, req, where)
    written, due, look, asked = None, 0.0, time.monotonic() + CANCEL_EVERY, False
    moved, touched = time.time(), 0     # when the counts last changed, or a step was made
    since = started_at(os.getpid())     # this process's: read once, not per write

    def state_body(kind: str, counts: dict, **more: str) -> bytes:
        return json.dumps({'state': kind, 'heartbeat': heartbeat, 'updated': time.time(),
                           'moved': moved, 'proxy': _proxy(), 'pids': pid_space(),
                           'since': since, 'started': progress.started_at,
                           **counts, **more}).encode()
    while True:
        if not asked and time.monotonic() >= look:
            asked = _marked(app, req, where)
            look = time.monotonic() + CANCEL_EVERY
            if asked:
                logger.info('deferred job %s: cancelled', where)
                cancel()
        counts = progress.counts()
        changed = counts != written or progress.touched != touched
        if changed or time.monotonic() >= due:
            if changed:
                moved, touched = time.time(), progress.touched
            stored = _put(app, req, state, state_body('running', counts), 'application/json')
            if written is None:
                stored_once.put(stored)
            if not is_success(stored.status_int):
                logger.error('deferred job %s: storing its state failed: %s', where,
                             stored.status)
            written, due = counts, time.monotonic() + heartbeat
        try:
            unstored = finished.get(timeout=max(0.0, min(
                PROGRESS_EVERY, heartbeat, CANCEL_EVERY, due - time.monotonic())))
            break
        except Empty:
            pass
    _request(app, req, 'DELETE', state)
    if unstored:    # no result, nor why: the state says it (after the DELETE: the room it made)
        said = _put(app, req, state, state_body(UNSTORED, progress.counts(), why=unstored),
                    'application/json')
        if not is_success(said.status_int):
            logger.error('deferred job %s: neither its result nor why could be stored: %s',
                         where, said.status)
    if asked or _marked(app, req, where):          # too late, or done
        _request(app, req, 'DELETE', marker)


def _cancelled(progress: Progress) -> Response:
    """The result of a job a DELETE of its state stopped: what had ended by then."""
    counts = progress.counts()['nodes']
    job = f' (job {progress.job} of a chain)' if progress.job > 1 else ''
    text = (f'stopped by a DELETE of its state (zc cancel) after '
            f'{time.time() - progress.started_at:.1f} s{job}: {counts["done"]}/'
            f'{counts["total"]} nodes done, {counts["failed"]} failed, '
            f'{counts["running"]} stopped running')
    return HTTPClientDisconnect(body=text + '\n', headers={
        'X-Nexe-Status': 'cancelled', 'X-Nexe-Error': text,
        'X-Nexe-Node-Counts': _node_counts(counts, stopped=counts['running'])})


def _node_counts(counts: dict, **rest: int) -> str:
    """``X-Nexe-Node-Counts`` of a job that did not end: ``total 3, done 1, failed 0``,
    then ``rest`` (``stopped 2``: the cancelled nodes; ``lost 2``: those a lost job's
    proxy had not seen end)."""
    every = {key: counts[key] for key in ('total', 'done', 'failed')} | rest
    return ', '.join(f'{key} {value}' for key, value in every.items())


def cancel(app, env: dict, logger, config: Config | None = None) -> Response | None:
    """A client's DELETE of a deferred job's state (``job-<id>.state``): store its
    cancel marker, which the proxy running the job looks for (:func:`_keep_state`),
    and answer 202; 404 when the job is not running.  None for any other request, and
    for a state the user may not read: Swift's DELETE rules decide (a write ACL alone
    may delete the object; the user's read was refused, and that 403 kept it for good).
    So who may cancel may read the state and write the container, and the marker says
    so: it carries :data:`CANCEL_MARK`, which only the proxy can write (a ``.cancel``
    a user writes any other way stops nothing).  ``config``: this proxy's, whose
    limits say when a job is hung (:func:`_settle`).  One read of the state, the
    marker and one read of the result: three subrequests to cancel a running job."""
    found = _STATE.fullmatch(env.get('PATH_INFO', ''))
    if found is None or env.get('swift.source') == SWIFT_SOURCE:
        return None
    names = text_names(found.groups())
    if names is None:       # not UTF-8: Swift's 412
        return None
    req = Request(env)
    version, account, container, name = names
    base = f'/{version}/{account}/{container}/{name}'
    status, read = _read_state(app, req, base, config)
    if status == 404:
        return _not_running(app, req, base)
    if status in (401, 403):
        return None     # no state this user may read (a write ACL alone): Swift's DELETE
    if not is_success(status):
        return Response(status=status)
    if read is None:
        return None             # none, or an object of the user's named so: deleted as any other
    lost = read[1]
    if lost:                    # a lost job has ended: its result is stored first
        result = _settle(app, req, version, account, container, name, logger, read)
        if result is None:
            return _not_running(app, req, base)
        if result[0] == 200:
            return _ended(app, req, base, result)
    stored = _put(app, req, base + CANCEL_SUFFIX, f'{time.time()}\n'.encode(), 'text/plain',
                  headers={CANCEL_MARK: _cancel_mark(account, container, name)})
    if not is_success(stored.status_int):       # a quota, a write ACL missing
        return Response(status=stored.status_int, content_type='text/plain', body=(
            f'{name} was not cancelled: it runs on; the marker that stops it could not be '
            f'stored in swift://{account}/{container} {_swift_said(stored)}\n').encode())
    # its proxy looks for the marker once more after it stored the result: if that came
    # before the marker, it is done, and the marker is this request's to delete; a job
    # reported lost whose proxy runs it still (it wrote its state again) reads it too
    result = _result(app, req, base)
    said = result[1]
    if result[0] == 200 and (said is None or lost or _gone(app, req, base, config)):
        _request(app, req, 'DELETE', base + CANCEL_SUFFIX)
        return _ended(app, req, base, result)
    logger.info('deferred job %s: cancel asked', base)
    late = ('it was reported lost, but its proxy runs it still: ' if said is not None else '')
    return HTTPAccepted(body=f'cancelling {name}: {late}it stops within '
                             f'{CANCEL_EVERY * 2:.0f} s; its result then says what ended\n',
                        content_type='text/plain',
                        headers={'X-Nexe-Reported-Lost': said} if said is not None else {})


def _gone(app, req: Request, base: str, config: Config | None) -> bool:
    """Whether a job whose state was read running, and that a poll reported lost
    since, has no state now: that poll settled it (its state and marker deleted), so
    no proxy runs it to read a marker stored after."""
    return _read_state(app, req, base, config)[0] == 404


def _ended(app, req: Request, base: str, result: tuple[int, str | None]) -> Response:
    """404 for a cancel of a job whose result is there (``result``: :func:`_result`);
    the state of one reported lost is its stopped proxy's: deleted."""
    if result[1] is not None:
        _request(app, req, 'DELETE', base + STATE_SUFFIX)
    return _not_running(app, req, base, result)


def _cancel_mark(account: str, container: str, name: str) -> str:
    """The value of :data:`CANCEL_MARK` on the cancel marker of job ``name``: system
    metadata, which Swift's gatekeeper strips from users' requests, so only this proxy
    writes it; it names the job, as a server-side copy keeps it (a marker a user could
    cancel elsewhere, copied here, stops nothing)."""
    where = f'{account}/{container}/{name}'.encode('utf-8', 'surrogateescape')
    return hashlib.sha256(where).hexdigest()


def _marked(app, req: Request, where: SwiftPath) -> bool:
    """Is the cancel marker of the job ``where`` there, stored by :func:`cancel`?"""
    got = _request(app, req, 'HEAD', f'/v1{where.path}{CANCEL_SUFFIX}')
    return got.status_int == 200 and got.headers.get(CANCEL_MARK) == _cancel_mark(
        where.account, where.container, where.obj)


def _is_lost(read: tuple[dict, str] | None) -> bool:
    """Does a read state (:func:`_read_state`) say its job is lost?"""
    return read is not None and bool(read[1])


def _read_state(app, req: Request, base: str,
                config: Config | None) -> tuple[int, tuple[dict, str] | None]:
    """The status of Swift's GET of the job ``base``'s state, and the state with why it
    is lost ('' while it runs: :func:`_lost_why`): None without one, unread (Swift
    refused or failed the GET), or for an object there that this proxy did not write
    (the user's own: a larger one never read whole), which no job's proxy reads or
    cancels."""
    status, running = _small_json(app, req, base + STATE_SUFFIX)
    if not isinstance(running, dict):
        return status, None
    try:
        return status, (running, _lost_why(running, config))
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
        return status, None     # not a state this proxy wrote (the user's to overwrite)


def _small_json(app, req: Request, path: str) -> tuple[int, object]:
    """(the status of Swift's GET of ``path``, what it holds if it is JSON of at most
    :data:`STATE_MAX` bytes, else None): a state or a lost result's ``.headers``,
    objects any writer of the container can also write."""
    got = _request(app, req, 'GET', path)
    if got.status_int != 200 or (got.content_length or STATE_MAX + 1) > STATE_MAX:
        close_if_possible(got.app_iter)
        return got.status_int, None
    try:
        return 200, json.loads(got.body)
    except (ValueError, RecursionError):
        return 200, None


def _result(app, req: Request, base: str) -> tuple[int, str | None]:
    """(the status of Swift's GET of the job ``base``'s ``.headers``, what it says if it
    is a lost result: its ``X-Nexe-Error``, else None: a job's own result, none, or one
    this proxy did not store, too large to be a lost one: not read)."""
    status, said = _small_json(app, req, base + HEADERS_SUFFIX)
    if isinstance(said, dict) and said.get('X-Nexe-Status') == 'lost':
        # a header's value (X-Nexe-Reported-Lost), from an object any user who may write
        # the container can write: a line break in it added headers to the answer
        return status, header_text(str(said.get('X-Nexe-Error', 'lost')))
    return status, None


def settle_lost(app, env: dict, logger, config: Config | None = None) -> None:
    """Before a GET/HEAD of a deferred result: if it is missing and its job's state is
    stale (the proxy running it stopped) or hung, store the result of a lost job.  The
    state is read first: a running job's poll costs that one read."""
    found = _RESULT.fullmatch(env.get('PATH_INFO', ''))
    if found is None:
        return
    names = text_names(found.groups())      # as run() has them
    if names is None:       # not UTF-8: Swift's 412
        return
    req = Request(env)
    version, account, container, name = names
    _, read = _read_state(app, req, f'/{version}/{account}/{container}/{name}', config)
    if _is_lost(read):
        _settle(app, req, version, account, container, name, logger, read)


def _settle(app, req: Request, version: str, account: str, container: str, name: str,
            logger, read: tuple[dict, str]) -> tuple[int, str | None] | None:
    """Store the result of the job ``name`` whose state (``read``: :func:`_read_state`)
    says it was lost (:func:`settle_lost`): its proxy process is gone, or its state is
    stale and not of a process running here, or its counts have not moved for
    HUNG_LIMITS times the job's own limits (zerovm_timeout + chain_timeout; a running
    proxy's hung job, or its dead heartbeat); unless a result is there.  None once the
    lost result is stored (its state and marker deleted); else the result's
    :func:`_result`: one there, or none (nothing stored: the state stays, for a later
    poll to settle)."""
    base = f'/{version}/{account}/{container}/{name}'
    result = _result(app, req, base)
    if result[0] != 404:
        return result
    running, why = read
    logger.error('deferred job %s was lost (%s): its proxy was %s', base, why,
                 running.get('proxy'))
    said = (f'this deferred job ended, but {why}; it is lost: make room there and run the '
            f'job again' if running.get('state') == UNSTORED else
            f'the proxy running this deferred job stopped before it finished ({why}); its '
            f'result is lost: run the job again')
    lost = HTTPServiceUnavailable(body=said + '\n', content_type='text/plain',
                                  headers={'X-Nexe-Status': 'lost'})
    lost.headers['X-Nexe-Error'] = header_text(said, 1000)
    nodes = running.get('nodes')
    if isinstance(nodes, dict) and all(isinstance(nodes.get(k), int)
                                       for k in ('total', 'done', 'failed')):
        lost.headers['X-Nexe-Node-Counts'] = _node_counts(
            nodes, lost=nodes['total'] - nodes['done'] - nodes['failed'])
    if not _store_lost(app, req, SwiftPath(account, container, name), lost, logger, version):
        return result
    _request(app, req, 'DELETE', base + STATE_SUFFIX)
    # a cancel asked while the state still looked fresh left a marker no proxy reads
    _request(app, req, 'DELETE', base + CANCEL_SUFFIX)
    return None


def _lost_why(running: dict, config: Config | None) -> str:
    """Why the job of the state ``running`` is lost (:func:`_settle`), '' while it runs;
    ValueError, TypeError, KeyError or OverflowError for a state this proxy did not write.
    A state dated ahead, or of a heartbeat past the reader's limits, is hung all the same
    once as far off: written by hand (any user who may write the container can), it was
    never lost, so its job never ended and its name was never free (nor its container)."""
    updated, beat = float(running['updated']), float(running['heartbeat'])
    moved = float(running.get('moved', updated))
    if not all(map(math.isfinite, (updated, beat, moved))):
        raise ValueError('not a state: a time that is no number')
    if running.get('state') == UNSTORED:        # its proxy could store nothing else
        return header_text(f'neither its result nor why could be stored: {running["why"]}',
                           400)
    age = time.time() - updated
    stale = age > STALE_BEATS * beat
    still = abs(time.time() - moved)
    limits = config or Config()
    bound = HUNG_LIMITS * (limits.timeout + limits.chain_timeout)
    hung = still > max(STALE_BEATS * min(beat, bound), bound)
    process = _process(running)
    if process == GONE:
        return f'its process {running["proxy"]} is gone'
    if stale and process != ALIVE:
        return f'its state was last updated {age:.0f} s ago'
    if hung and moved > time.time():
        return f'its state is dated {still:.0f} s ahead: no proxy wrote it'
    if hung:
        return (f'its nodes have not moved for {still:.0f} s, over {HUNG_LIMITS} times '
                f'zerovm_timeout + chain_timeout')
    return ''


def _proxy() -> str:
    """This proxy process, as a state names it: ``<host>:<pid>`` (the pid of the worker
    process running the job, not of the parent that imported this module)."""
    return f'{socket.gethostname()}:{os.getpid()}'


@functools.cache
def pid_space() -> str:
    """Where this process's pids mean what they say, as a state records it (``pids``):
    this boot of this kernel and this pid namespace, hashed (a state is the user's to
    read).  Two proxies may share a hostname and not their pids (containers with the
    host's UTS namespace, each its own pid namespace; cloned hosts); '' where /proc
    cannot tell."""
    try:
        with open('/proc/sys/kernel/random/boot_id', encoding='ascii') as f:
            where = f.read().strip() + ' ' + os.readlink('/proc/self/ns/pid')
    except OSError:
        return ''
    return hashlib.sha256(where.encode()).hexdigest()[:32]


def started_at(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``'s
    ``starttime``): with its pid, it names one process (a pid is reused, not both);
    None when there is no such process (or /proc cannot tell)."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, starttime) of process ``pid`` (``/proc/<pid>/stat``: ``Z`` a zombie, ``X``
    dead), None when /proc does not show it."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            fields = f.read().rpartition(b')')[2].split()   # after "pid (comm)": field 3
    except OSError:
        return None
    return fields[0].decode('ascii', 'replace'), int(fields[19])


GONE, ALIVE = 'gone', 'alive'


def _process(running: dict) -> str:
    """What is known of the proxy process a state names (``proxy``, ``since``): GONE
    (one of this host and pid space, :func:`pid_space`, whose pid no longer exists, or
    is another process's: it started at another time than ``since``, or a zombie),
    ALIVE (that process, running: its job is running, however old its state, until its
    counts stop moving: :func:`_settle`) or '' (another host's or pid space's, or an
    older proxy's state without ``since``: its state's age decides)."""
    host, _, pid = str(running.get('proxy')).rpartition(':')
    # a pid has at most 7 digits (PID_MAX_LIMIT 4194304): more is no process of ours
    if host != socket.gethostname() or not (pid.isascii() and pid.isdigit()) \
            or len(pid) > 7 or int(pid) <= 0 \
            or not pid_space() or running.get('pids') != pid_space():
        return ''
    since, stat = running.get('since'), _stat(int(pid))
    if stat is None:            # /proc does not show it: a process of another user, if any
        return '' if _exists(int(pid)) else GONE
    state, now = stat
    if (isinstance(since, int) and since != now) or state in ('Z', 'X'):
        return GONE             # another process's pid, or a dead one not yet reaped
    return ALIVE if since == now else ''


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:             # another user's process: it exists
        pass
    return True


def _not_running(app, req: Request, base: str,
                 result: tuple[int, str | None] | None = None) -> Response:
    """404: the job ended, or was reported lost (its proxy may run it still, unseen:
    its result would then replace the lost one), or there is no such job; ``result``:
    its :func:`_result`, if read already."""
    status, said = result if result is not None else _result(app, req, base)
    if said is not None:
        why = (f'it was reported lost ({said}); if its proxy was only slow or cut off it '
               f'may run still, unseen, and its result then replaces the lost one')
    elif status == 200:
        why = 'it has ended (its result is stored)'
    else:
        why = 'no such job'
    return HTTPNotFound(body=f'{base.rpartition("/")[2]} is not running: {why}\n')


def _request(app, req: Request, method: str, path: str) -> Response:
    return make_subrequest(req.environ, method, quote(path),
                           swift_source=SWIFT_SOURCE).get_response(app)


def _put(app, req: Request, path: str, body: bytes | Response = b'',
         content_type: str | None = None, only_new: bool = False,
         headers: dict[str, str] | None = None) -> Response:
    """PUT ``body``: bytes, or the body of a response, streamed (a job's may be large);
    ``only_new``: unless the object exists (``If-None-Match: *``, 412 if it does)."""
    headers = {**(headers or {}), **({'If-None-Match': '*'} if only_new else {})}
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


def _note_lost(app, req: Request, where: SwiftPath, resp: Response) -> None:
    """A job reported lost that ended after all (its proxy slow or cut off, not
    stopped: :func:`_settle`): its result replaces the lost one, which it says, as
    ``X-Nexe-Reported-Lost`` (the lost one's ``X-Nexe-Error``): whoever read ``lost``
    may have run the job again, and then both runs ran.  The result is the truth, and
    of more use than ``lost``; one GET per deferred result.  The note can be missing: a
    lost ``.headers`` stored after this GET and before the job's ``.headers`` is
    replaced without it (a reader may have seen it); closing that would take a second
    look after the job's ``.headers``, and a second PUT of them."""
    said = _result(app, req, f'/v1{where.path}')[1]
    if said is not None:
        resp.headers['X-Nexe-Reported-Lost'] = said


def _has_home(app, req: Request, where: SwiftPath, logger, version: str) -> bool:
    """Is there a container for the result (:func:`_home`)?  Logged if not."""
    container = _home(app, req, where, version)
    if container is None or is_success(container.status_int):
        return True
    logger.error('deferred result %s: cannot create its container: %s', where,
                 container.status)
    return False


def _store_late(app, req: Request, where: SwiftPath, resp: Response, logger,
                objects: dict[str, str]) -> str:
    """Store a deferred job's result, saying if it was reported lost (:func:`_note_lost`):
    a failure to read the lost one (Swift's GET, its body) never keeps the result from
    being stored, nor its pollers from reading it.  Why no result is stored ('' when
    one is: :func:`_store`)."""
    try:
        _note_lost(app, req, where, resp)
    except Exception:
        logger.exception('deferred result %s: reading a lost result before it failed', where)
    return _store(app, req, where, resp, logger, objects=objects)


def _store_lost(app, req: Request, where: SwiftPath, lost: Response, logger,
                version: str) -> bool:
    """Store a lost job's result, never over a real one its job (only cut off, not
    stopped) stores at the same time (:func:`_store`: body, then ``.headers``, over what
    is there): each object only where none is (``If-None-Match: *``), the body first,
    then ``.headers`` if the body is stored, or the job's was there (412: its
    ``.headers`` may never come); no ``.headers`` over no body (Swift refused it: 503,
    its quota, no ``If-None-Match``).  Whatever the order of the two writers' PUTs, the
    job's result, once both are stored, is its own; if the job never ends, ``.headers``
    says lost (its body the lost text, or what the job stored before it stopped).
    True once a result (the lost one, or the job's) is there: if not, the caller keeps
    the job's state, for a later poll to settle it again."""
    if not _has_home(app, req, where, logger, version):
        return False
    path = f'/{version}/{where.account}/{where.container}/{where.obj}'
    stored = _put(app, req, path, lost.body, lost.content_type, only_new=True)
    # 412: the job's own (or another reader's lost one) is there: it stays
    if is_success(stored.status_int) or stored.status_int == 412:
        stored = _put_headers(app, req, path, lost, None, only_new=True)
        if is_success(stored.status_int) or stored.status_int == 412:
            return True
    logger.error('deferred result %s: storing it as lost failed: %s', where, stored.status)
    return False


def _store(app, req: Request, where: SwiftPath, resp: Response, logger,
           version: str = 'v1', objects: dict[str, str] | None = None) -> str:
    """Store a deferred job's body, then its status and headers (and ``objects``: the
    object of each node, by name); what Swift refused, why in its place.  '' once a
    result (the job's or why it is not there) is stored, else why none is."""
    if not _has_home(app, req, where, logger, version):
        close_if_possible(resp.app_iter)
        return f'the container of its result, swift://{where.account}/{where.container}, ' \
               f'could not be created'
    path = f'/{version}/{where.account}/{where.container}/{where.obj}'
    stored = _put(app, req, path, resp, resp.content_type)
    if is_success(stored.status_int):
        stored = _put_headers(app, req, path, resp, objects)
        if is_success(stored.status_int):
            return ''
        # a body that filled the quota left no room for its headers: without them the
        # result is never complete (a poller waits forever); why goes in its place
        logger.error('deferred result %s: storing its headers failed: %s', where,
                     stored.status)
        _request(app, req, 'DELETE', path)
    else:
        logger.error('deferred result %s: storing it failed: %s', where, stored.status)
    resp = _unstored(where, resp, stored)
    if is_success(_put(app, req, path, resp.body, resp.content_type).status_int) and \
            is_success(_put_headers(app, req, path, resp, None).status_int):
        return ''
    logger.error('deferred result %s: storing why it is not there failed too', where)
    return resp.headers['X-Nexe-Error']


def _put_headers(app, req: Request, path: str, resp: Response,
                 objects: dict[str, str] | None, only_new: bool = False) -> Response:
    """Store ``resp``'s status and headers (and ``objects``) as the result's ``.headers``."""
    headers = {'Status': resp.status, **dict(resp.headers)}
    if objects:
        headers[OBJECTS_KEY] = objects
    return _put(app, req, path + HEADERS_SUFFIX, json.dumps(headers, indent=1).encode(),
                'application/json', only_new)


def _unstored(where: SwiftPath, resp: Response, refused: Response) -> Response:
    """The result stored in place of a job's body that Swift refused (its quota):
    what the job ended as and why its output is not there (as a lost job's)."""
    text = (f'the job ended {resp.status} (X-Nexe-Status: '
            f'{resp.headers.get("X-Nexe-Status", "")}) but its output could not be stored '
            f'as {where} {_swift_said(refused)}: run it again with room there, or without '
            f'{HEADER}')
    unstored = HTTPServiceUnavailable(body=text + '\n', content_type='text/plain',
                                      headers={'X-Nexe-Status': 'unstored'})
    unstored.headers['X-Nexe-Error'] = text
    return unstored

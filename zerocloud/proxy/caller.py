"""The caller of one request: every Swift read and write a job does, as that user.

D7 (doc/architecture in /work/shared/DESIGN.md, doc/http-api.md): a job reads
and writes objects only as its caller could with plain GETs and PUTs, through
the proxy's own pipeline (``swift.authorize``, container ACLs, quotas).  The
middleware makes one :class:`Caller` per request and hands it to every entry
point (``zerocloud.sources``, ``zerocloud.deferred``, ``zerocloud.sql``), which
never reach back into the middleware.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

from swift.common import constraints
from swift.common.concurrency import Semaphore
from swift.common.http import (
    HTTP_NOT_FOUND,
    HTTP_OK,
    HTTP_REQUEST_ENTITY_TOO_LARGE,
    is_success,
)
from swift.common.swob import HTTPException, Request, Response
from swift.common.utils import close_if_possible
from swift.common.wsgi import make_subrequest
from swift.proxy.controllers.base import (
    clear_info_cache,
    get_account_info,
    get_container_info,
)

from zerocloud.config import NOT_PLAIN, SWIFT_SOURCE, Config
from zerocloud.httperrors import (
    HTTPConflict,
    HTTPForbidden,
    HTTPNotFound,
    HTTPRequestEntityTooLarge,
    HTTPServiceUnavailable,
    HTTPUnauthorized,
    HTTPUnprocessableEntity,
)
from zerocloud.job import NoData, SwiftPath
from zerocloud.proxy import uploads
from zerocloud.proxy.response import swift_reason
from zerocloud.tmpdisk import room

LISTING_LIMIT = 10000
SPOOL_MEMORY = 1 << 20          # a spooled file up to this size is in memory, beyond on disk


@dataclass
class Input:
    """An object or request body, spooled once and sent to every node that reads it."""

    file: object
    size: int


class Spooled(tempfile.SpooledTemporaryFile):
    """A :func:`spooled` file: every write that may reach the proxy's disk (a write, its
    move to disk, a flush of what was buffered) is under :func:`~zerocloud.tmpdisk.room`,
    so a full disk is a :class:`~zerocloud.tmpdisk.DiskFull` (507) for every writer,
    not a 500 where one forgot to say so."""

    def write(self, data) -> int:
        with room():
            return super().write(data)

    def writelines(self, lines) -> None:
        with room():
            super().writelines(lines)

    def rollover(self) -> None:
        with room():
            super().rollover()

    def flush(self) -> None:
        with room():
            super().flush()

    def seek(self, *args) -> int:
        with room():            # a seek flushes what was buffered
            return super().seek(*args)


def spooled() -> Spooled:
    """A file for bytes that may be small (memory) or large (disk)."""
    return Spooled(max_size=SPOOL_MEMORY)


def spool(chunks: Iterable[bytes], limit: int | None = None, over: str = '') -> Input:
    """``chunks`` (closed after, if they can be) copied into a :func:`spooled` file a
    chunk at a time, never whole in memory, and left at its start: a 413 saying
    ``over`` past ``limit`` bytes; a full disk a :class:`~zerocloud.tmpdisk.DiskFull`
    (the proxy's trouble: a job's run answers it 507)."""
    out, size = spooled(), 0
    try:
        for chunk in chunks:
            size += len(chunk)
            if limit is not None and size > limit:
                raise HTTPRequestEntityTooLarge(body=over)
            out.write(chunk)
    except BaseException:
        out.close()
        raise
    finally:
        close_if_possible(chunks)
    out.seek(0)
    return Input(out, size)


class Held:
    """What one job makes the proxy hold for its whole run: its programs (each up to
    ``zerovm_maxnexe``; a job may name many stored copies of one), spooled files on
    the proxy's disk (a small buffer each in memory), and its inputs small enough to
    stay in memory.  Each at most ``limit`` bytes (``zerovm_job_maxprograms``), counted
    apart (disk and memory): a program past it is a 413 before it is read, whatever
    inputs the job keeps; an input past it waits on the proxy's disk instead.  The
    inputs on its disk (objects sent along: every object of a wildcard whose nodes run
    next to another device's, or of an erasure-coded container) are at most
    ``inputs_limit`` bytes (``zerovm_job_maxinputs``; None: unbounded): they were not,
    and one job over a large container anyone may read filled the disk every job's
    outputs wait on."""

    def __init__(self, limit: int, inputs_limit: int | None = None) -> None:
        self.limit, self.held, self.kept = limit, 0, 0
        self.inputs_limit, self.spooled = inputs_limit, 0

    def program(self, size: int, what: str) -> None:
        """Count a program of ``size`` bytes about to be held (``what``: which)."""
        total = self.held + size
        if total > self.limit:
            raise HTTPRequestEntityTooLarge(
                body=f"this job's programs would hold {total} bytes on the proxy's disk "
                     f'({what} is {size} bytes), more than zerovm_job_maxprograms '
                     f'({self.limit} bytes): every distinct program object (each copy '
                     'too) is held for the whole job; name fewer (nodes naming one object '
                     'share it), or ask the operator to raise zerovm_job_maxprograms\n')
        self.held = total

    def input(self, size: int, what: str = 'an input') -> bool:
        """Count an input of ``size`` bytes about to be fetched (``what``: which): kept in
        memory while the job's inputs kept allow (False), else on the proxy's disk (True:
        read from there as it is sent), counted: a 413 past ``inputs_limit``."""
        if size <= SPOOL_MEMORY and self.kept + size <= self.limit:
            self.kept += size
            return False
        total = self.spooled + size
        if self.inputs_limit is not None and total > self.inputs_limit:
            raise HTTPRequestEntityTooLarge(
                body=f"this job's objects sent along would hold {total} bytes on the "
                     f"proxy's disk ({what} is {size} bytes), more than "
                     f'zerovm_job_maxinputs ({self.inputs_limit} bytes): an object a node '
                     'does not run next to (a device\'s other than the one it is attached '
                     'to, or in an erasure-coded or encrypted container) travels through '
                     'the proxy and waits there for the whole job; run each node next to '
                     'its large object (the wildcard\'s device last, or "attach"), read '
                     'fewer at a time, or ask the operator to raise zerovm_job_maxinputs\n')
        self.spooled = total
        return True


# segments end at a byte count, not a record's end: a node each counted 495 lines of 492
CUT = (' (a segment ends at a byte count, so a line may be cut between two nodes: for '
       'records, upload parts that end at line ends instead, e.g. split -C 1G)')


def _segments_hint(path: SwiftPath, headers) -> str:
    """Where a large object's data is, as a job can read it: its segments, a node each."""
    prefix = headers.get('X-Object-Manifest')
    if prefix and '/' in prefix:
        return (f'; its data is in its segments: swift://{path.account}/{prefix}* runs a '
                f'node on each{CUT}')
    if 'X-Static-Large-Object' in headers:
        return ('; its data is in its segments, objects of their own (swift upload puts '
                f'them in <container>_segments): a * over them runs a node on each{CUT}')
    return ''


class Caller:
    """Swift as the user of ``req`` sees it (sub-requests through ``app``)."""

    def __init__(self, app, req: Request, config: Config, opening: bool = False) -> None:
        """``opening``: ``req`` opens an object (``/open/...``): its URL names the
        object's account, which is the caller's only if it may run jobs there."""
        self.app = app
        self.req = req
        self.config = config
        self.opening = opening
        # (account, container) -> its stores' turn when it or its account has a quota
        self._quota_turns: dict[tuple[str, str], Semaphore | None] = {}
        # (account, container) -> Swift's status and reason for the first output its quota
        # refused
        self._refused: dict[tuple[str, str], tuple[str, bytes]] = {}

    def sub(self, method: str, path: str, query: str = '', **kwargs) -> Request:
        """A sub-request as the caller (same auth) for an unquoted Swift path."""
        return make_subrequest(self.req.environ, method, quote(path) + query,
                               swift_source=SWIFT_SOURCE, **kwargs)

    def container_info(self, path: str) -> dict:
        """Swift's (cached) info of the container of ``/v1/<a>/<c>...``."""
        return get_container_info(self.sub('HEAD', path).environ, self.app,
                                  swift_source=SWIFT_SOURCE)

    def authorize(self, method: str, path: str, acl_key: str | None) -> None:
        """Raise 401/403 unless the caller may ``method`` (POST, PUT, GET) ``path``
        (no authorisation in the pipeline: nothing to check), then, when its container
        (``acl_key``: the container's ACL decides) is missing 404, when its info could
        not be read 503: as Swift, which authorises first, never telling another
        account's containers."""
        authorize = self.req.environ.get('swift.authorize')
        if authorize is None:
            return
        sub = self.sub(method, path)
        status = HTTP_OK
        if acl_key:
            info = get_container_info(sub.environ, self.app, swift_source=SWIFT_SOURCE)
            status = info['status']
            sub.acl = info.get(acl_key) if is_success(status) else None
        denied = authorize(sub)
        if denied is not None:
            what = {'POST': 'execute jobs in', 'PUT': 'write', 'GET': 'read'}[method]
            hint = self.denied_hint(path, method) if denied.status_int == 403 else ''
            raise denied_error(denied, f'{what} swift:/{path[3:]}{hint}')
        missing = self.missing(status, path)
        if missing:
            raise HTTPNotFound(body=self.no_container(method, path, missing))
        if not is_success(status):
            raise HTTPServiceUnavailable(
                body=f'cannot read the container of swift:/{path[3:]}: '
                     f'{status or "its account could not be read"}, try again\n')

    @property
    def account(self) -> str:
        """The caller's account: the request's."""
        return (self.req.path.split('/') + ['', ''])[2]

    def others_hint(self, path: str, ask: str) -> str:
        """`` (... of account B, not yours ...: ask its owner to <ask>)`` when ``path``
        (``/v1/b/c/o``) is in another account than the caller's, else ''."""
        account, _, rest = path[4:].partition('/')
        if account == self.account:
            return ''
        container = rest.partition('/')[0]
        return (f' (swift://{account}/{container} is of account {account}, not yours '
                f'({self.account}): only its owner can change it; ask them to {ask})')

    def denied_hint(self, path: str, method: str = 'GET') -> str:
        """What a 403 of ``method`` on ``path`` (``/v1/a/c...``) lacks: :meth:`own_hint`'s
        account, else for another account's container whose ACL (read for GET, write
        for PUT) it is and who can grant it; '' for the caller's own (POST: no ACL).
        An open's URL names its object's account, not the caller's: refused there, the
        caller is not its owner, and runs the job from its own account instead."""
        hint = self.own_hint(path)
        acl = {'GET': 'read ACL (X-Container-Read)',
               'PUT': 'write ACL (X-Container-Write)'}.get(method)
        if hint or not acl or path.count('/') < 3:     # an account: no ACL of a container
            return hint
        hint = self.others_hint(path, f'add you to its {acl}')
        if hint or not self.opening:
            return hint
        account, _, rest = path[4:].partition('/')
        return (f' (swift://{account}/{rest.partition("/")[0]} is of account {account}: only '
                f'its owner can change it; ask them to add you to its {acl}, then run your '
                f'job over it from your own account: an open runs as a job of {account}, '
                'and only who may run jobs there can open its objects)')

    def own_hint(self, path: str) -> str:
        """`` (your account is AUTH_a: ...)`` when the account of ``path`` (``/v1/a/...``)
        is the caller's without its reseller prefix, as users write it; `` (accounts are
        named AUTH_<name>: ...)`` for another account without it: else ''."""
        mine = self.account
        account, _, rest = path[4:].partition('/')
        reseller, sep, name = mine.partition('_')
        if account == name and account != mine:
            return f' (your account is {mine}: did you mean swift://~/{rest}?)'
        if sep and not account.startswith(reseller + sep):
            return (f' (accounts are named {reseller}{sep}<name>: did you mean '
                    f'swift://{reseller}{sep}{account}/{rest}?)')
        return ''

    def missing(self, status: int, path: str) -> str:
        """What of ``path`` (``/v1/a/c...``) is missing, by the status of its container's
        info: 'container' (404), 'account' (0: Swift's info of a container whose
        account could not be read; the account's own status tells a missing one from
        a failed read), or '' (it is there, or could not be read)."""
        if status == HTTP_NOT_FOUND:
            return 'container'
        if status == 0 and get_account_info(self.sub('HEAD', path).environ, self.app,
                                            swift_source=SWIFT_SOURCE)['status'] == 404:
            return 'account'
        return ''

    @staticmethod
    def said_missing(path: str, missing: str) -> str:
        """``container swift://a/c does not exist`` (or ``account swift://a``)."""
        account, _, rest = path[4:].partition('/')
        where = account if missing == 'account' else f'{account}/{rest.partition("/")[0]}'
        return f'{missing} swift://{where} does not exist'

    def no_container(self, method: str, path: str, missing: str = 'container') -> str:
        """The 404 body for ``path`` (``/v1/a/c/o``) whose container (or account:
        ``missing``) is missing: an account without the caller's reseller prefix is
        likely the mistake; else a written object's says to create the container (a
        job creates none)."""
        container = path[4:].partition('/')[2].partition('/')[0]
        said = self.said_missing(path, missing)
        hint = self.own_hint(path)
        if hint:
            return f'{said} (of swift:/{path[3:]}){hint}\n'
        if method != 'PUT' or missing == 'account':
            return f'{said} (of swift:/{path[3:]})\n'
        others = self.others_hint(path, 'create it and add you to its write ACL '
                                        '(X-Container-Write)')
        if others:
            return (f'{said}: a job writes swift:/{path[3:]} only into a container that '
                    f'exists{others}\n')
        return (f'{said}: a job writes swift:/{path[3:]} only into a container that exists '
                f'(create it first: swift post {container})\n')

    def listing(self, path: str, prefix: str = '') -> Iterator[str]:
        """The names in the account or container ``path`` (``/v1/...``) that begin with
        ``prefix``, page by page."""
        marker = ''
        limit = min(LISTING_LIMIT, constraints.CONTAINER_LISTING_LIMIT)   # Swift's pages
        while True:
            query = f'?format=json&limit={limit}&marker={quote(marker)}&prefix={quote(prefix)}'
            resp = self.sub('GET', path, query).get_response(self.app)
            if resp.status_int == 404:
                what = 'container' if path.count('/') > 2 else 'account'
                raise NoData(f'{what} swift:/{path[3:]} does not exist')
            if resp.status_int in (401, 403):
                hint = self.denied_hint(path) if resp.status_int == 403 else ''
                raise denied_error(resp, f'list swift:/{path[3:]}{hint}')
            if not is_success(resp.status_int):
                raise HTTPServiceUnavailable(body=f'cannot list swift:/{path[3:]}: '
                                                  f'{resp.status}\n')
            items = json.loads(resp.body or b'[]')
            if not items:
                return
            for item in items:
                yield item.get('name') or item.get('subdir')
            marker = items[-1].get('name') or items[-1].get('subdir')

    def read(self, method: str, path: SwiftPath, reader: str = '',
             first: int | None = None) -> Response:
        """HEAD or GET an object as the caller; 404/403/409 name it (a 404 also its
        ``reader``, e.g. ``device stdin of wc``: which node of a job wanted it).
        ``first``: only its first bytes (a Range; an empty object's 416 is returned)."""
        headers = {} if first is None else {'Range': f'bytes=0-{first - 1}'}
        resp = self.sub(method, '/v1' + path.path, headers=headers).get_response(self.app)
        if resp.status_int == 404:      # named as written: day-?.csv, not day-%3F.csv
            who = f' ({reader})' if reader else ''
            raise HTTPNotFound(body=f'Error 404 Not Found while fetching swift:/{path.path}'
                                    f'{who}{self.missing_container(path)}\n')
        if resp.status_int in (401, 403):
            hint = self.denied_hint('/v1' + path.path) if resp.status_int == 403 else ''
            raise denied_error(resp, f'read {path}{hint}')
        kind = next((key for key in NOT_PLAIN if key in resp.headers), None)
        if kind:
            raise HTTPConflict(body=f'{path} is not a plain object ({kind}): jobs read the '
                                    'objects themselves, not manifests or symlinks'
                                    f'{_segments_hint(path, resp.headers)}\n')
        if not is_success(resp.status_int) and not (resp.status_int == 416 and first):
            raise HTTPServiceUnavailable(body=f'cannot read {path}: {resp.status}\n')
        return resp

    def missing_container(self, path: SwiftPath) -> str:
        """``: container swift://a/c does not exist`` (or ``account swift://a``) for an
        object that is not there because its container (account) is not: a misspelt
        container or account, not object (and the hint of a name without the reseller
        prefix, :meth:`own_hint`); else ''."""
        where = f'/v1/{path.account}/{path.container}'
        missing = self.missing(self.container_info(where)['status'], where)
        if not missing:
            return ''
        return f': {self.said_missing(where, missing)}{self.own_hint("/v1" + path.path)}'

    def fetch(self, path: SwiftPath, limit: int, option: str = 'zerovm_maxinput',
              reader: str = '') -> tuple[Input, Response]:
        """GET an object as the caller into a spooled file (413 beyond ``limit`` bytes,
        naming the operator's ``option`` that sets it; ``reader``: see :meth:`read`)."""
        resp = self.read('GET', path, reader)
        return self._spool(resp, path, limit, option, None), resp

    @staticmethod
    def _spool(resp: Response, path: SwiftPath, limit: int, option: str,
               admit: Callable[[int], None] | None) -> Input:
        """``resp``'s body, spooled, once ``admit`` took its size (its Content-Length:
        no byte of a refused object is written; without one, as read)."""
        over = f'{path} is larger than {option} ({limit} bytes)\n'
        size = resp.content_length
        if admit is not None and size is not None:
            try:
                if size > limit:
                    raise HTTPRequestEntityTooLarge(body=over)
                admit(size)
            except BaseException:
                close_if_possible(resp.app_iter)
                raise
        data = spool(resp.app_iter, limit, over)
        if admit is not None and size is None:
            try:
                admit(data.size)
            except BaseException:
                data.file.close()
                raise
        return data

    def fetch_program(self, path: SwiftPath, held: Held, reader: str = '') -> Input:
        """A stored program, spooled (on the proxy's disk beyond :data:`SPOOL_MEMORY`)
        and counted in ``held`` before it is read; 422 when its upload's verdict says it
        is not valid.  The caller closes its file."""
        resp = self.read('GET', path, reader)

        def admit(size: int) -> None:
            if uploads.stored_verdict(resp.headers) is False:
                raise HTTPUnprocessableEntity(
                    body=f'program {path} is not valid (checked at upload): '
                         f'{resp.headers.get(uploads.SYSMETA_ERROR, "")}\n')
            held.program(size, str(path))
        return self._spool(resp, path, self.config.max_nexe, 'zerovm_maxnexe', admit)

    def fetch_input(self, path: SwiftPath, held: Held, reader: str = '') -> Input:
        """An object a node reads but does not run next to, spooled and counted in
        ``held`` before it is read (:meth:`Held.input`: a 413 writes nothing); one it
        keeps on the proxy's disk is moved there if it was small.  The caller closes it."""
        resp = self.read('GET', path, reader)
        on_disk = False

        def admit(size: int) -> None:
            nonlocal on_disk
            on_disk = held.input(size, str(path))
        data = self._spool(resp, path, self.config.max_input, 'zerovm_maxinput', admit)
        if on_disk:
            try:
                data.file.rollover()
            except BaseException:
                data.file.close()
                raise
        return data

    def put(self, path: SwiftPath, body, headers: dict[str, str]) -> Response:
        """PUT ``body`` (a file) to ``path`` through the normal PUT path, as the caller.
        Into a container or account with a quota, one at a time, each with its counts
        read anew: Swift's quota filters read them from the request's info cache, which
        a job's sub-requests share, so from the job's start every output went past a
        full quota (a job stored 300 outputs into a container of 100 bytes).  Once
        the container's quota refused one (413), every later one into it is answered
        that, :class:`Unsent`: each was refused too, after a PUT and a lookup of the
        container of its own (a job's 30,000 outputs into a full container)."""
        turn = self._quota_turn(path)
        if turn is None:
            return self._put(path, body, headers)
        key = (path.account, path.container)
        with turn:
            refused = self._refused.get(key)
            if refused is not None:
                return Unsent(refused)
            resp = self._put(path, body, headers, fresh=True)
            if resp.status_int != HTTP_REQUEST_ENTITY_TOO_LARGE:
                return resp
            self._refused[key] = refused = (resp.status, swift_reason(resp).encode())
            return Response(status=resp.status, app_iter=[refused[1]])

    def _put(self, path: SwiftPath, body, headers: dict[str, str],
             fresh: bool = False) -> Response:
        """The PUT of :meth:`put`; ``fresh``: its container's counts read anew."""
        sub = self.sub('PUT', '/v1' + path.path, headers=headers)
        if fresh:       # nor memcache's copy, kept up to recheck_container_existence
            sub.environ['swift.infocache'] = {}
            clear_info_cache(sub.environ, path.account, path.container)
        sub.environ['wsgi.input'] = body
        return sub.get_response(self.app)

    def _quota_turn(self, path: SwiftPath) -> Semaphore | None:
        """The turn of the stores into ``path``'s container, if it has a quota (Swift's
        ``container_quotas``: ``quota-bytes``, ``quota-count``), else None.  An account's
        quota is not: its counts reach the account only as the container updater runs
        (minutes), so reading them again per store would change nothing."""
        key = (path.account, path.container)
        if key not in self._quota_turns:
            env = self.sub('HEAD', f'/v1/{path.account}/{path.container}').environ
            meta = get_container_info(env, self.app, swift_source=SWIFT_SOURCE).get('meta') or {}
            quota = 'quota-bytes' in meta or 'quota-count' in meta
            # two stores may both have looked (the lookup yields): the first turn made wins
            self._quota_turns.setdefault(key, Semaphore() if quota else None)
        return self._quota_turns[key]


class Unsent(Response):
    """The answer to an output not sent (:meth:`Caller.put`): Swift's to an earlier
    output into the same container, which its quota refused (``refused``: its status
    and reason)."""

    def __init__(self, refused: tuple[str, bytes]) -> None:
        super().__init__(status=refused[0], app_iter=[refused[1]])


def denied_error(resp: Response, action: str) -> HTTPException:
    """The 401 (no valid token: the auth's challenge kept) or 403 of Swift's ``resp``."""
    if resp.status_int == 401:
        challenge = {k: v for k, v in resp.headers.items() if k.lower() == 'www-authenticate'}
        return HTTPUnauthorized(body=f'Unauthorized: a valid token is needed to {action}\n',
                                headers=challenge)
    return HTTPForbidden(body=f'Denied: may not {action}\n')


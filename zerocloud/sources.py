"""Every way to start a computation, turned into one job and its inputs.

A :class:`Launch` is what the proxy filter runs: a job description, plus
what the job's devices without a path receive (the request's *input* or the
*object* it names, and an *image*), plus CGI variables.  This module makes
one from each kind of request (ZeroCloud's forms, with the same headers and
URLs):

``POST /v1/<account>[/<container>[/<object>]]`` with ``X-Zerovm-Execute: 1.0``
    The body is a job description (``application/json``; also when no or a
    form content type is given), a zapp (``application/x-tar``,
    ``application/x-gtar``, ``application/x-ustar``, ``application/x-gzip``,
    ``application/gzip``: see ``zerocloud.zapp``), or a script: any body
    starting with ``#!`` (below).  ``application/octet-stream`` is
    recognised by its first bytes.  Another method with this header is a 405
    (``Allow: POST``): a job is only ever POSTed.

    POSTed to an object, the job runs over that object: it becomes the path
    of the job's readable device without a path (``stdin``, ``input`` or
    ``script``), so the node runs next to it.  The container of the URL is
    where a deferred result goes (``zerocloud.deferred``).

``X-Zerovm-Source: swift://<account>/<container>/<object>`` on such a POST
    The job, zapp or script is that object, read as the caller (403/404
    naming it, like a GET); its content type and first bytes select which.
    The request body, if any, is the input of the job's readable device
    without a path.  A source that is not ``swift://a/c/o`` is a 412.

``GET /v1/<a>/<c>/<o>`` with ``X-Zerovm-Execute: open/1.0``, or ``GET /open/<a>/<c>/<o>``
    "Open" the object with the app registered for its content type: the job
    description stored as ``/v1/<a>/.zvm/<content type>/config`` (read as
    the caller).  In it, ``{.object_path}`` is the object's ``swift://`` URL
    and ``{.<name>=<default>}`` the query parameter ``<name>`` (or the
    default, or nothing); values are inserted JSON-escaped.  The object also
    becomes the path of the job's readable device without a path.  An
    ``application/x-nexe`` object without a registered app runs itself:
    query parameters ``args`` (its arguments) and ``content_type`` (of its
    stdout, default ``text/plain``).  Nothing registered: 404 ``No
    application registered for <type>``.  A zapp object is run as a REST
    service with any method: its ``boot/system.map``, the request body as
    input.  Other methods than GET and HEAD on other objects: 405.  A URL that
    names no object: 400 saying what to add (ZeroCloud's 412 ``Bad URL``).

``GET`` with ``X-Zerovm-Execute: open/1.0`` and ``X-Zerovm-Source``
    Runs that app (job, zapp or script) over the object read, and answers
    with the app's output: a transformed object for any Swift client.

``<METHOD> /api/<account>/<container>[/<path>]``, or ``/v1/...`` with ``X-Zerovm-Execute: api/1.0``
    Runs the app the container names as its REST endpoint: its metadata
    ``X-Container-Meta-Rest-Endpoint: swift://<account>/<container>/<app>``
    (a zapp, job description or script, read as the caller), with any method,
    the request body as input and ``PATH_INFO`` ``/<account>/<container>/<path>``:
    one app serves a whole tree of URLs.  The caller must be allowed to run
    jobs in the account (a POST to it, checked first) and to read the app.
    No endpoint: 404 ``No API endpoint configured for container
    <container>``; one that is not such a URL: 412; no container (``/api/<account>/``):
    404 ``No API at /api/<account>: ...`` saying to name one.

Every request gives every node CGI variables (ZeroCloud's): ``GATEWAY_INTERFACE``,
``SERVER_SOFTWARE``, ``REQUEST_METHOD``, ``REQUEST_URI``, ``PATH_INFO``
(the request's path without the version, URL-encoded: ``/<a>/<c>/<o>`` of
an open request), ``QUERY_STRING``, and ``CONTENT_TYPE`` and
``CONTENT_LENGTH`` of a request body that is the job's input.  The proxy
filter adds the node's own (``SCRIPT_NAME``, ``SCRIPT_FILENAME`` and the
``LOCAL_*`` variables of its object, ``zerocloud.proxy``).

Scripts
-------

The first line names the interpreter and its first arguments::

    #!swift://~/bin/python -u        an executable object (~: your account)
    #!/bin/python -u                 the same: /<container>/<object>
    #!file://python3:bin/python3     a file of a system image

The job runs ``<interpreter> [args] /dev/script`` on one node (``script``),
with the script on ``/dev/script``, the object of the URL (or the request
body, with ``X-Zerovm-Source``) on stdin, and stdout as the ``text/plain``
response.  Bad first lines are a 400 (``Bad interpreter ...``).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote

from swift.common.concurrency import tpool
from swift.common.constraints import valid_api_version
from swift.common.swob import HTTPException, Request, Response
from swift.common.utils import FileLikeIter, close_if_possible

from zerocloud import jobnames, turns, wire, zapp
from zerocloud.httperrors import (
    HTTPBadRequest,
    HTTPClientDisconnect,
    HTTPMethodNotAllowed,
    HTTPNotFound,
    HTTPPreconditionFailed,
    HTTPRequestEntityTooLarge,
)
from zerocloud.job import (
    PAYLOAD_DEVICES,
    SCRIPT_PROGRAMS,
    USER_IMAGE,
    Device,
    Group,
    JobError,
    Node,
    SwiftPath,
    is_swift_url,
    parse_location,
)
from zerocloud.proxy.caller import Caller, Held, Input, spool, spooled
from zerocloud.zapp_format import GZIP_MAGIC, looks_like_archive

OPEN = 'open'
OPEN_VERSION = 'open/1.0'
API = 'api'
API_VERSION = 'api/1.0'
SQL_BODY = 'an SQL query'         # a POST body {"query": ...}: X-Zerovm-Execute: sql/1.0
ENDPOINT_META = 'rest-endpoint'          # X-Container-Meta-Rest-Endpoint
SOURCE_HEADER = 'X-Zerovm-Source'
REGISTRY = jobnames.HOME      # the account's: registered apps, deferred results
NEXE_TYPE = 'application/x-nexe'
OCTET_STREAM = 'application/octet-stream'
JOB_TYPES = ('', 'application/json', 'application/x-www-form-urlencoded', OCTET_STREAM)
TAR_TYPES = ('application/x-tar', 'application/x-gtar', 'application/x-ustar')
GZIP_TYPES = ('application/x-gzip', 'application/gzip')
SHEBANG = b'#!'
HEAD_SIZE = 512                  # enough for the tar magic
MAX_SHEBANG = 4096
SCRIPT_CHANNEL = '/dev/script'
SCRIPT_NODE = 'script'
CODE_DEVICES = (USER_IMAGE, 'script')     # what a node runs, besides its program
# Runs an executable object itself (ZeroCloud's DEFAULT_EXE_SYSTEM_MAP).
EXE_JOB = ('[{"name": "executable", "exec": {"path": "{.object_path}", "args": "{.args}"}, '
           '"devices": [{"name": "stdout", "content_type": "{.content_type=text/plain}"}]}]')
_PARAMETER = re.compile(r'\{\.([A-Za-z_][A-Za-z0-9_]*)(?:=([^}]*))?\}')
_CHUNK = 1 << 16
# Keys only a node group has: a JSON body with them is a job, whatever its content type.
_JOB_MARKS = frozenset({'exec', 'devices', 'connect', 'file_list'})


def _collect(src, head: bytes, limit: int, declared: int | None, where: str) -> Input:
    """Spool ``head`` and the rest of ``src``: at most ``limit`` bytes, all that was declared."""
    data = spool(itertools.chain((head,), iter(lambda: src.read(_CHUNK), b'')), limit,
                 f'{where} is larger than zerovm_maxinput ({limit} bytes)\n')
    if declared is not None and data.size < declared:
        data.file.close()
        raise HTTPClientDisconnect(body=f'{where} is shorter than its Content-Length\n')
    return data


def _read_head(src, size: int) -> bytes:
    head = b''
    while len(head) < size and (chunk := src.read(size - len(head))):
        head += chunk
    return head


def read_bounded(resp: Response, limit: int) -> bytes:
    """``resp``'s body (a stored job description, app config or query), never more than
    ``limit + 1`` bytes of it (more than ``limit``: too large), its app_iter closed."""
    try:
        return _read_head(FileLikeIter(resp.app_iter), limit + 1)
    finally:
        close_if_possible(resp.app_iter)


def _others(by_account: dict[str, SwiftPath], account: str) -> list[SwiftPath]:
    return sorted((p for a, p in by_account.items() if a != account), key=str)


@dataclass
class Launch:
    """A job and what its devices without a path receive."""

    job: bytes
    input: Input | None = None          # the request body, for stdin/input/script
    bind: SwiftPath | None = None       # or the object of the URL, as their path
    image: Input | None = None          # an uncompressed tar, for image
    env: dict[str, str] = field(default_factory=dict)
    taken: bool = False                 # a job took the input (or object)
    source: SwiftPath | None = None     # the stored job it came from, named in its errors
    code: dict[str, SwiftPath] = field(default_factory=dict)    # by account: see ran()
    data: dict[str, SwiftPath] = field(default_factory=dict)    # by account: see ran()

    def adapt(self, groups: list[Group]) -> None:
        """Give the job the request's object, image and CGI variables (before expansion)."""
        for group in groups:
            takers = [d for d in group.devices if d.name in PAYLOAD_DEVICES and d.path is None]
            self.taken |= bool(takers)
            if self.bind is not None:
                for device in takers:
                    device.path = self.bind
            has_image = any(d.name == USER_IMAGE for d in group.devices)
            if self.image is not None and not has_image:
                group.devices.append(Device(USER_IMAGE))
            elif self.image is None and any(d.name == USER_IMAGE and d.path is None
                                            for d in group.devices):
                raise JobError(f'Device image of {group.name} has no path, and the request '
                               'is not a zapp: there is no image to give it')
            group.exec.env = {**group.exec.env, **self.env}

    def device_inputs(self, node: Node) -> dict[str, Input]:
        """What the node's readable devices without a path read, by device name."""
        found = {}
        for dev in node.devices:
            if dev.readable and dev.path is None:
                if dev.name == USER_IMAGE and self.image is not None:
                    found[dev.name] = self.image
                elif dev.name in PAYLOAD_DEVICES and self.input is not None:
                    found[dev.name] = self.input
        return found

    def ran(self, node: Node) -> None:
        """Note where the code ``node`` runs comes from (its program, image and script
        objects) and the other objects it reads, one object per account each: a job's
        response runs as the next job only when all it ran and read is the caller's
        (``zerocloud.chain``)."""
        program = node.exec.swift_path
        if program:
            self.code.setdefault(program.account, program)
        for d in node.devices:
            if d.path is not None and d.readable:
                (self.code if d.name in CODE_DEVICES else self.data).setdefault(
                    d.path.account, d.path)

    def foreign(self, account: str) -> list[SwiftPath]:
        """Code it ran or came from (its stored job, zapp, script or app) of accounts
        other than ``account``: one object per account, sorted."""
        code = dict(self.code)
        if self.source is not None:
            code.setdefault(self.source.account, self.source)
        return _others(code, account)

    def foreign_data(self, account: str) -> list[SwiftPath]:
        """Objects its nodes read (not as code) of accounts other than ``account``."""
        return _others(self.data, account)

    def follow(self, job: bytes) -> Launch:
        """The next job of a chain: it gets the input if no job took it yet."""
        if self.taken:
            return Launch(job, env=self.env)
        return Launch(job, self.input, self.bind, env=self.env)

    def close(self) -> None:
        for blob in (self.input, self.image):
            if blob is not None:
                blob.file.close()


# -- what a body or object is -----------------------------------------------------------------

def missing_execute(env: dict, limit: int) -> str | None:
    """Why a POST without ``X-Zerovm-Execute`` whose body is a job description, a
    zapp or a script is refused, or None.  Swift would answer such a POST
    ``204``/``202`` having only updated metadata (an object's content type, even),
    the body ignored: the job silently not run.  The body decides, not only its
    content type: ``curl -d @job.json`` sends application/x-www-form-urlencoded.
    Up to ``limit`` bytes of the body are read and put back in ``env`` for Swift.
    So is one that names a stored job with ``X-Zerovm-Source``, and a GET of an object
    that names an app with it (the object, not the app's answer).  Swift's own POSTs
    with a body (``?bulk-delete``, formpost's multipart) and metadata POSTs (no body)
    pass untouched."""
    kind = _base_type(env.get('CONTENT_TYPE'))
    version, _, rest = env.get('PATH_INFO', '').lstrip('/').partition('/')
    if env.get('REQUEST_METHOD') == 'GET' and env.get('HTTP_X_ZEROVM_SOURCE') and \
            rest.count('/') >= 2 and valid_api_version(version):    # an object, not through
        return ('This GET names an app (X-Zerovm-Source) but has no X-Zerovm-Execute header: '
                'add X-Zerovm-Execute: open/1.0 to read the object through the app (without '
                'it, the object itself would be returned)\n')
    if env.get('REQUEST_METHOD') != 'POST' or not rest or not valid_api_version(version) \
            or kind.startswith('multipart/') or 'bulk-delete' in env.get('QUERY_STRING', ''):
        return None
    if env.get('HTTP_X_ZEROVM_SOURCE'):     # swift post -H 'X-Zerovm-Source: ...' alone
        return ('This POST names what to run (X-Zerovm-Source) but has no X-Zerovm-Execute '
                'header: add X-Zerovm-Execute: 1.0 (a job, zapp or script) or sql/1.0 (a '
                'query) to run it (without it, Swift would only update metadata)\n')
    chunked = 'chunked' in env.get('HTTP_TRANSFER_ENCODING', '').lower()
    if not chunked and env.get('CONTENT_LENGTH') in (None, '', '0'):
        return None
    if kind in (*TAR_TYPES, *GZIP_TYPES):
        what = 'a zapp'
    else:
        what = _posted_kind(_peek(env, limit))
        if what is None and kind == 'application/json':
            what = 'a job description'
        if what is None:
            return None
    version = 'sql/1.0' if what == SQL_BODY else '1.0'
    return (f'This POST has a body of {kind or "no content type"} ({what}) but no '
            f'X-Zerovm-Execute header: add X-Zerovm-Execute: {version} to run it (without it, '
            f'Swift would only update metadata and ignore the body)\n')


def _peek(env: dict, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of the request body; the body stays whole for Swift."""
    src = env['wsgi.input']
    head = b''
    while len(head) <= limit:
        chunk = src.read(limit + 1 - len(head))
        if not chunk:
            break
        head += chunk
    env['wsgi.input'] = FileLikeIter(itertools.chain([head], iter(lambda: src.read(_CHUNK), b'')))
    return head


def _posted_kind(head: bytes) -> str | None:
    """'a job description', 'a zapp', 'a script' or 'an SQL query' if a POST body is one,
    else None."""
    if looks_like_archive(head):
        return 'a zapp'
    if head.startswith(SHEBANG):
        return 'a script'
    if head.lstrip()[:1] not in (b'[', b'{'):
        return None
    try:
        data = json.loads(head)
    except (ValueError, RecursionError):   # not JSON, or longer than a job may be
        return None
    if isinstance(data, dict) and isinstance(data.get('query'), str):
        return SQL_BODY
    groups = data if isinstance(data, list) else [data]
    if groups and all(isinstance(group, dict) and _JOB_MARKS & group.keys() for group in groups):
        return 'a job description'
    return None


def _meant(interpreter: str) -> str:
    """`` (did you mean #!file://python3:python3?)`` for a #! line naming Python or Lua as
    a shell's would (``python3``, ``file://python3``, ``lua5.4``); else ''."""
    name = interpreter.rpartition('/')[2]
    language = next((word for word in SCRIPT_PROGRAMS if name.startswith(word)), None)
    return f' (did you mean #!{SCRIPT_PROGRAMS[language]}?)' if language else ''


def _base_type(content_type: str | None) -> str:
    return (content_type or '').partition(';')[0].strip().lower()


def _kind(content_type: str, head: bytes, where: str) -> str:
    """``script``, ``zapp`` or ``job``, by the first bytes and the content type."""
    if head.startswith(SHEBANG):
        return 'script'
    archive = looks_like_archive(head)
    if content_type in TAR_TYPES + GZIP_TYPES or (content_type == OCTET_STREAM and archive):
        if not archive and head.lstrip()[:1] in (b'[', b'{'):
            raise HTTPBadRequest(body=f'{where} is a job description (JSON) sent as '
                                      f'{content_type}: send it as application/json\n')
        return 'zapp'
    if content_type in JOB_TYPES:
        if archive:                        # curl --data-binary sends a form type
            raise HTTPBadRequest(body=f'{where} is a gzip or tar archive (a zapp?) sent as '
                                      f'{content_type or "no content type"}: send a zapp as '
                                      'application/x-gzip (or application/x-tar)\n')
        return 'job'
    if content_type == NEXE_TYPE:
        raise HTTPBadRequest(body=f'{where} is a program ({NEXE_TYPE}): name it as exec.path '
                                  'of a job, or GET it with X-Zerovm-Execute: open/1.0\n')
    if head.startswith(b'\xef\xbb\xbf' + SHEBANG):
        hint = ' (this one starts with a UTF-8 byte order mark before its #!: save it without one)'
    else:
        language = next((name for name in SCRIPT_PROGRAMS if name in content_type), None)
        hint = f' (a {language.title()} one with #!{SCRIPT_PROGRAMS[language]}, its first ' \
            'line)' if language else ''
    raise HTTPBadRequest(body=f'Unsupported Content-Type {content_type} of {where}: a job '
                              'description is application/json, a zapp application/x-tar or '
                              f'application/x-gzip, and a script starts with #!{hint}\n')


def _load(caller: Caller, src, content_type: str, declared: int | None, where: str,
          account: str, script_path: SwiftPath | None, stdin: SwiftPath | None) -> Launch:
    """A launch from a job description, zapp or script read from ``src``.

    ``script_path`` is the object the script was read from (None: the script
    is the request body); ``stdin``, the object a script reads on stdin.
    """
    head = _read_head(src, HEAD_SIZE)
    if script_path is not None and head.startswith(b'\x7fELF') and content_type != NEXE_TYPE:
        # a stored program named as what runs (X-Zerovm-Source): job.py's word for a
        # program POSTed as the body ("upload it") does not fit one uploaded already
        raise HTTPBadRequest(body=f'{where} is a program, not a job, zapp or script: name it '
                                  f'as the exec.path of a job (zc run {where} --on URL runs '
                                  'it over objects)\n')
    kind = _kind(content_type, head, where)
    if kind == 'job':
        if declared is not None and declared > caller.config.max_config:
            raise _job_too_large(caller)
        body = head + _read_head(src, caller.config.max_config + 1 - len(head))
        if len(body) > caller.config.max_config:
            raise _job_too_large(caller)
        return Launch(body)
    data = _collect(src, head, caller.config.max_input, declared, where)
    try:
        if kind == 'script':
            launch = Launch(_script_job(caller, data, account, script_path, stdin))
            if script_path is None:         # the script is the request body
                launch.input, data = data, None
            return launch
        launch = tpool.execute(_open_zapp, caller, data, content_type, head, where)
        data = None
        return launch
    finally:
        if data is not None:
            data.file.close()


def _open_zapp(caller: Caller, data: Input, content_type: str, head: bytes,
               where: str) -> Launch:
    """The launch of zapp ``data``, uncompressed in place (run in a thread: untrusted)."""
    limits = caller.config.zapp_limits
    if content_type in GZIP_TYPES or head.startswith(GZIP_MAGIC):
        plain = spooled()
        try:
            data.size = zapp.gunzip(data.file, plain, limits.size, where, limits.ratio,
                                    'zapp_max_size')
        except BaseException:
            plain.close()
            raise
        data.file.close()
        data.file = plain
    elif data.size > limits.size:
        raise HTTPRequestEntityTooLarge(
            body=f'{where} is larger than {limits.size} bytes (zapp_max_size)\n')
    return Launch(zapp.system_map(data.file, caller.config.max_config, where, limits.members),
                  image=data)


def _job_too_large(caller: Caller) -> HTTPException:
    return HTTPRequestEntityTooLarge(
        body=f'Job description larger than zerovm_maxconfig ({caller.config.max_config} bytes): '
             'keep long lists (args, env, file_list) in an object the program reads, or use a '
             'wildcard path\n')


def _script_job(caller: Caller, script: Input, account: str, script_path: SwiftPath | None,
                stdin: SwiftPath | None) -> bytes:
    """The one-node job that runs a script: ``<interpreter> [args] /dev/script``."""
    script.file.seek(0)
    start = script.file.read(MAX_SHEBANG)
    script.file.seek(0)
    line, newline, _ = start.partition(b'\n')
    if not newline and len(start) == MAX_SHEBANG:
        raise HTTPBadRequest(body='Cannot find the end of the shebang (#!) line of the script '
                                  f'in its first {MAX_SHEBANG} bytes\n')
    try:
        words = line[len(SHEBANG):].decode('utf-8').split()
    except UnicodeDecodeError:
        raise HTTPBadRequest(body='Bad interpreter: the #! line is not UTF-8\n') from None
    if not words:
        raise HTTPBadRequest(body='Bad interpreter: the #! line names none\n')
    interpreter, args = words[0], words[1:]
    devices: list[dict] = [{'name': 'script'}]
    if script_path is not None:
        devices[0]['path'] = str(script_path)
        devices.append({'name': 'stdin'})             # the request body or URL object
    elif stdin is not None:
        devices.append({'name': 'stdin', 'path': str(stdin)})
    if interpreter.startswith('file://'):
        image, sep, _ = interpreter[len('file://'):].partition(':')
        if not sep or not image or image == USER_IMAGE:
            raise HTTPBadRequest(body=f'Must supply image name in shebang url {interpreter} '
                                      f'(file://<system image>:<path>){_meant(interpreter)}\n')
        devices.append({'name': image})
    else:
        location = None
        if is_swift_url(interpreter) or interpreter.startswith('/'):
            url = interpreter if is_swift_url(interpreter) else 'swift://~' + interpreter
            try:
                location = parse_location(url, account)
            except JobError:
                pass
        if location is None or location.obj is None or location.wildcard:
            raise HTTPBadRequest(body=f'Bad interpreter {interpreter}: expected '
                                      'swift://<account>/<container>/<object>, '
                                      '/<container>/<object> or file://<system image>:<path>'
                                      f'{_meant(interpreter)}\n')
        if not is_swift_url(interpreter):
            _stored_interpreter(caller, location, interpreter)
        interpreter = str(location)
    devices.append({'name': 'stdout', 'content_type': 'text/plain'})
    return json.dumps([{'name': SCRIPT_NODE, 'devices': devices,
                        'exec': {'path': interpreter, 'args': [*args, SCRIPT_CHANNEL]}}]).encode()


def _stored_interpreter(caller: Caller, location: SwiftPath, written: str) -> None:
    """404 naming the usual fix when a ``#!/<container>/<object>`` line names no object:
    most are a Unix line (``#!/usr/bin/env python3``) brought along with a script."""
    try:
        close_if_possible(caller.read('HEAD', location).app_iter)
    except HTTPException as e:
        if e.status_int != 404:
            raise
        raise HTTPNotFound(body=f'Bad interpreter {written}: it is read as {location} (a #! '
                                'line names a program stored in Swift, /<container>/<object> '
                                'of your account), which does not exist; a Python script '
                                f'starts with #!{SCRIPT_PROGRAMS["python"]}, a Lua one with '
                                f'#!{SCRIPT_PROGRAMS["lua"]}\n') from None


# -- requests -------------------------------------------------------------------------------------

def _object(account: str, container: str | None, obj: str | None) -> SwiftPath | None:
    if obj is None:
        return None
    path = SwiftPath(account, container, obj)
    if path.wildcard:
        raise HTTPBadRequest(body=f'{path}: objects with "*" in their name cannot be run over '
                                  '("*" is a wildcard in jobs): for a node per object it '
                                  f'matches, POST to the account a job that reads {path} '
                                  f"(zc run PROGRAM --on '{path}')\n")
    return path


def source_path(req: Request, account: str) -> SwiftPath | None:
    """The object of ``X-Zerovm-Source`` (412 when it is not one)."""
    value = req.headers.get(SOURCE_HEADER)
    return None if value is None else _object_url(value, account, SOURCE_HEADER)


def _object_url(value: str, account: str, what: str) -> SwiftPath:
    """The object a ``swift://`` URL names (412 when it names none)."""
    try:
        path = parse_location(value.strip(), account)
    except JobError as e:
        path, why = None, str(e)
    else:
        why = 'it names a container' if path.obj is None else 'it has a wildcard'
    if path is None or path.obj is None or path.wildcard:
        raise HTTPPreconditionFailed(body=f'{what} format is '
                                          f'swift://account/container/object ({why})\n')
    return path


def _from_source(caller: Caller, path: SwiftPath, account: str,
                 params: dict[str, str] | None = None,
                 target: SwiftPath | None = None) -> Launch:
    """A launch from a stored job, zapp or script, read as the caller.

    ``params`` (open requests) are substituted into a job description.
    """
    resp = caller.read('GET', path)
    try:
        launch = _load(caller, FileLikeIter(resp.app_iter), _base_type(resp.content_type),
                       resp.content_length, str(path), account, path, None)
    finally:
        close_if_possible(resp.app_iter)
    launch.source = path
    if params is not None:
        launch.job = substitute(launch.job, params, target)
    return launch


def _body(req: Request) -> tuple[object, int | None, bool]:
    """(stream, declared length, has a body) of the request."""
    chunked = 'chunked' in req.headers.get('Transfer-Encoding', '').lower()
    if req.content_length is None and not chunked:
        return req.body_file, None, False
    return req.body_file, req.content_length, chunked or req.content_length > 0


def post_launch(caller: Caller, account: str, container: str | None,
                obj: str | None) -> Launch:
    """The launch of ``POST`` with ``X-Zerovm-Execute: 1.0``."""
    req = caller.req
    launch = _post_launch(caller, account, container, obj)
    launch.env = _cgi_env(req, '/' + req.path.split('/', 2)[2], launch)
    return launch


def _post_launch(caller: Caller, account: str, container: str | None,
                 obj: str | None) -> Launch:
    req = caller.req
    if req.method != 'POST':
        raise HTTPMethodNotAllowed(
            headers={'Allow': 'POST'},
            body=f'X-Zerovm-Execute: 1.0 runs a job, not a {req.method}: POST the job (its '
                 'JSON description, a zapp or a script) as the request body, or POST with '
                 'X-Zerovm-Source naming a stored one\n')
    target = _object(account, container, obj)
    source = source_path(req, account)
    src, declared, has_body = _body(req)
    if source is None:
        if declared is None and not has_body:
            raise HTTPBadRequest(body='Nothing to run: this POST has no body and no '
                                      f'{SOURCE_HEADER}: send the job (its JSON description, '
                                      'a zapp or a script) as the body, with its '
                                      f'Content-Length, or name a stored one with '
                                      f'{SOURCE_HEADER}\n')
        launch = _load(caller, src, _base_type(req.headers.get('Content-Type')), declared,
                       'the request body', account, None, target)
        if launch.input is None:              # a job or a zapp: it runs over the object
            launch.bind = target
        return launch
    if has_body and target is not None:
        raise HTTPBadRequest(body='POST to an object runs the job over that object, so the '
                                  'request body would be a second input: POST to the account '
                                  'or container, or send no body\n')
    data = (_collect(src, b'', caller.config.max_input, declared, 'the request body')
            if has_body else None)
    try:
        launch = _from_source(caller, source, account)
    except BaseException:
        if data is not None:
            data.file.close()
        raise
    launch.input, launch.bind = data, target
    return launch


def open_launch(caller: Caller, account: str, container: str | None,
                obj: str | None) -> Launch:
    """The launch of an open request (``/open/...`` or ``X-Zerovm-Execute: open/1.0``)."""
    target = _object(account, container, obj)
    if target is None:      # the URL is incomplete: say what to add (ZeroCloud: a 412)
        named = f'swift://{account}' + (f'/{container}' if container else '')
        raise HTTPBadRequest(body=f'open runs an app over an object, and {named} is '
                                  f'{"a container" if container else "an account"}: add '
                                  f'{"" if container else "/<container>"}/<object> to the URL '
                                  f'(GET /open/<account>/<container>/<object>)\n')
    req = caller.req
    params = dict(req.params)
    source = source_path(req, account)
    reading = req.method in ('GET', 'HEAD')
    if source is not None:
        if not reading:
            raise HTTPMethodNotAllowed(headers={'Allow': 'GET, HEAD'},
                                       body=f'{SOURCE_HEADER} with open/1.0 transforms an '
                                            'object as it is read: use GET\n')
        caller.authorize('POST', f'/v1/{account}', None)     # before reading or unpacking it
        launch = _from_source(caller, source, account, params, target)
        launch.bind = target
    else:
        content_type = _base_type(caller.read('HEAD', target).content_type)
        launch = _stored_zapp(caller, target, account, content_type, params)
        if launch is not None:
            src, declared, has_body = _body(req)
            try:
                if has_body:
                    launch.input = _collect(src, b'', caller.config.max_input, declared,
                                            'the request body')
            except BaseException:
                launch.close()
                raise
        elif not reading:
            raise HTTPMethodNotAllowed(headers={'Allow': 'GET, HEAD'},
                                       body=f'open runs the app of {target} ({content_type}) '
                                            'with GET; other methods only run zapps\n')
        else:
            # before a deferred open takes one of the account's slots (deferred.run), and
            # before the registry is read: who may not run learns nothing of its apps
            caller.authorize('POST', f'/v1/{account}', None)
            job, config = _registered(caller, account, content_type)
            launch = Launch(substitute(job, params, target))
            launch.source = config
            if content_type != NEXE_TYPE:
                launch.bind = target
    launch.env = _cgi_env(req, quote(target.path), launch)
    return launch


def api_launch(caller: Caller, account: str, container: str | None,
               path: str | None) -> Launch:
    """The launch of an API request: the REST endpoint app of the container."""
    req = caller.req
    if not container:           # no resource here: say what to write (ZeroCloud: a 412)
        prefix = req.path.rstrip('/')
        how = '' if prefix.startswith(f'/{API}/') else f' with {wire.EXECUTE}: {API_VERSION}'
        raise HTTPNotFound(body=f'No API at {prefix}: an API is a container\'s (the app its '
                                f'X-Container-Meta-Rest-Endpoint names): request '
                                f'{prefix}/<container>[/<path>]{how}\n')
    info = caller.container_info(f'/v1/{account}/{container}')
    if info.get('status') == 404:
        raise HTTPNotFound(body=f'Container {container} not found\n')
    endpoint = (info.get('meta') or {}).get(ENDPOINT_META, '').strip()
    if not endpoint:
        raise HTTPNotFound(body=f'No API endpoint configured for container {container} (its '
                                'X-Container-Meta-Rest-Endpoint names none)\n')
    app = _object_url(endpoint, account, f'X-Container-Meta-Rest-Endpoint of {container}')
    src, declared, has_body = _body(req)
    data = (_collect(src, b'', caller.config.max_input, declared, 'the request body')
            if has_body else None)
    try:
        launch = _from_source(caller, app, account, dict(req.params))
    except BaseException:
        if data is not None:
            data.file.close()
        raise
    launch.input = data
    launch.env = _cgi_env(req, '/' + req.path.split('/', 2)[2], launch)
    return launch


def _stored_zapp(caller: Caller, path: SwiftPath, account: str,
                 content_type: str, params: dict[str, str]) -> Launch | None:
    """The launch of a zapp object (by content type, or first bytes if octet-stream)."""
    if content_type not in TAR_TYPES + GZIP_TYPES + (OCTET_STREAM,):
        return None
    caller.authorize('POST', f'/v1/{account}', None)     # before unpacking it
    resp = caller.read('GET', path)
    try:
        src = FileLikeIter(resp.app_iter)
        head = _read_head(src, HEAD_SIZE)
        if content_type == OCTET_STREAM and not looks_like_archive(head):
            return None
        launch = _load(caller, FileLikeIter(itertools.chain([head], src)), content_type,
                       resp.content_length, str(path), account, path, None)
    finally:
        close_if_possible(resp.app_iter)
    launch.job = substitute(launch.job, params, path)
    launch.source = path
    return launch


def _registered(caller: Caller, account: str,
                content_type: str) -> tuple[bytes, SwiftPath | None]:
    """The app (job template) registered for ``content_type`` in the account, and the
    object it came from (None: a program's built-in one), which its errors name."""
    config = SwiftPath(account, REGISTRY, f'{content_type}/config')
    try:
        resp = caller.read('GET', config)
    except HTTPException as e:
        if e.status_int != 404:
            raise
        if content_type == NEXE_TYPE:
            return EXE_JOB.encode(), None
        raise HTTPNotFound(body=f'No application registered for {content_type or "(none)"} '
                                f'(no {config}): register one (zc deploy APP.zapp '
                                f'--content-type TYPE) or name the app (X-Zerovm-Source, '
                                f'zc open --source)\n') from None
    body = read_bounded(resp, caller.config.max_config)
    if len(body) > caller.config.max_config:
        raise HTTPRequestEntityTooLarge(body=f'{config} is larger than zerovm_maxconfig '
                                             f'({caller.config.max_config} bytes)\n')
    return body, config


def substitute(job: bytes, params: dict[str, str], target: SwiftPath | None) -> bytes:
    """``{.object_path}`` and ``{.<name>=<default>}`` of a job template, JSON-escaped."""
    try:
        text = job.decode('utf-8')
    except UnicodeDecodeError:
        return job                           # parse_job says it is not UTF-8

    def value(match: re.Match) -> str:
        name, default = match.group(1), match.group(2) or ''
        found = str(target) if name == 'object_path' and target else params.get(name, default)
        return json.dumps(found)[1:-1]
    return _PARAMETER.sub(value, text).encode('utf-8')


def _cgi_env(req: Request, path_info: str, launch: Launch) -> dict[str, str]:
    """The request's CGI variables (``path_info``: URL-encoded, without the version)."""
    env = {'GATEWAY_INTERFACE': 'CGI/1.1', 'SERVER_SOFTWARE': 'zerocloud',
           'REQUEST_METHOD': req.method, 'REQUEST_URI': req.path_qs,
           'PATH_INFO': path_info, 'QUERY_STRING': req.query_string or ''}
    if launch.input is not None:
        env['CONTENT_LENGTH'] = str(launch.input.size)
        env['CONTENT_TYPE'] = req.headers.get('Content-Type', '')
    return env


# -- programs ---------------------------------------------------------------------------------

def program_location(node: Node) -> SwiftPath | tuple[Device | str, str]:
    """Where the node's program is: its object, or (image device, member), or
    (system image name, member): the object server takes those from its own copy."""
    path = node.exec.swift_path
    if path is not None:
        return path
    image, member = node.exec.image_member
    where = f'exec path {node.exec.path} of {node.group}'
    if image not in (None, USER_IMAGE):
        return image, member
    device = next((d for d in node.devices if d.name == USER_IMAGE), None)
    if device is None:
        raise HTTPBadRequest(body=f"{where}: only swift:// programs and files of the job's "
                                  f'image can run here, and {node.group} has no image device '
                                  '(a program is swift://<account>/<container>/<object>, e.g. '
                                  'swift://~/bin/prog, or file://<system image>:<path>, e.g. '
                                  'file://python3:python3)\n')
    return device, member


def _zapp_program(caller: Caller, image: Input, member: str, name: str,
                  held: Held) -> Input:
    """Program ``member`` of the zapp ``image`` (``name``: which) copied into a spooled
    file (in a thread: off the hub), counted in ``held`` before it is read; a full
    disk is a :class:`~zerocloud.tmpdisk.DiskFull` (507)."""
    out = spooled()
    try:
        size = tpool.execute(
            zapp.copy_member, image.file, member, caller.config.max_nexe, name, out,
            caller.config.zapp_limits.members,
            lambda size, what=f'{member} in {name}': held.program(size, what))
    except BaseException:
        out.close()
        raise
    return Input(out, size)


def fetch_programs(caller: Caller, nodes: Iterable[Node], launch: Launch, held: Held,
                   found: dict | None = None) -> dict[str, Input | None]:
    """Every node's program by node name, each read once (as the caller) into a spooled
    file and counted in the job's ``held`` before it is read (413 past
    ``zerovm_job_maxprograms``); None for a system image's program (the object server
    has it).  ``found`` keeps the programs read for the next call (the next nodes of a
    job made as its listing is read); the job closes them once it is over.
    ``launch`` notes where each node's code comes from (:meth:`Launch.ran`)."""
    found = {} if found is None else found
    # the zapp image read last, for the next node's program: one at a time (a wildcard
    # over images named one per node, and all of a chunk's waited on the proxy's disk)
    image: tuple[SwiftPath, Input] | None = None
    programs: dict[str, Input | None] = {}
    try:
        for node in nodes:
            turns.take()
            launch.ran(node)
            where = program_location(node)
            if isinstance(where, tuple) and isinstance(where[0], str):
                programs[node.name] = None
                continue
            # one member however spelt (./bin/p, /bin/p...): each spelling was a copy held
            key = where if isinstance(where, SwiftPath) else (where[0].path,
                                                              zapp.member_name(where[1]))
            if key not in found:
                if isinstance(where, SwiftPath):
                    found[key] = caller.fetch_program(where, held,
                                                      f'the program of {node.name}')
                else:
                    device, member = where
                    if device.path is None:
                        data, name = launch.image, 'the zapp'
                    else:
                        if image is None or image[0] != device.path:
                            if image is not None:
                                image[1].file.close()
                                image = None
                            image = (device.path, caller.fetch(
                                device.path, caller.config.max_input,
                                reader=f'device {device.name} of {node.name}')[0])
                        data, name = image[1], str(device.path)
                    found[key] = _zapp_program(caller, data, member, name, held)
            programs[node.name] = found[key]
    finally:
        if image is not None:
            image[1].file.close()
    return programs

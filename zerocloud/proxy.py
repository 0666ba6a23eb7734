"""ZeroCloud proxy filter: run a job next to the data it reads.

Running a job
-------------

A client POSTs a job description (``zerocloud.job`` documents the JSON) to
its account::

    curl -X POST $STORAGE_URL -H "X-Auth-Token: $TOKEN" \\
         -H "X-Zerovm-Execute: 1.0" -H "Content-Type: application/json" \\
         --data-binary @job.json

The same request may carry a zapp or a script instead, name a stored job with
``X-Zerovm-Source``, go to a container or an object, or be a ``GET`` that
"opens" an object with an app (``X-Zerovm-Execute: open/1.0`` or
``/open/<account>/<container>/<object>``): ``zerocloud.sources`` documents
each form.  ``X-Zerovm-Deferred`` answers before the job is done
(``zerocloud.deferred``), a job whose response is a job runs it next
(``zerocloud.chain``), and a program can write the HTTP response's status
and headers itself (``zerocloud.cgiout``).

Before anything runs, the filter

* checks that the caller may POST to the account (401 without a valid token, 403
  otherwise);
* parses and validates the job (400 saying what and where, also for a
  ``connect`` cycle and a ``replicate`` above the servers that could run
  it; 413 for a description over ``zerovm_maxconfig`` bytes), and expands
  wildcards into nodes (listing the containers as the caller);
* checks that the caller may write every object the job writes (403, or 404
  when the container does not exist) and reads, as the caller, every object
  the job reads: the programs (fetched once per job, at most
  ``zerovm_maxnexe`` bytes), the objects read in place (HEAD) and the others
  (fetched once per job, at most ``zerovm_maxinput`` bytes).  A missing one
  is a 404 ``Error 404 Not Found while fetching swift://...``, a forbidden
  one a 403 naming it, a large-object manifest or a symlink a 409 (jobs read
  plain objects), a program that failed validation when it was uploaded a
  422.

Each node then goes to an object server holding its data object
(``zerocloud.placement``), where the object-server filter
(``zerocloud.object``) runs it in the sandbox with the object as a local
channel (its program travels once per object server, then by SHA-256:
``zerocloud.wire``).  The proxy tries the primaries in ring order, then the handoffs,
moving on when a server cannot be reached, does not answer within
``zerovm_timeout`` + 5 s, answers 404 (no such object there), 507 or 5xx.
A server that answers 503 ``Slot not available`` while nodes of the same
job run there is tried again after a pause (growing to 0.5 s, for up to
``zerovm_timeout``): a job with more nodes than the cluster has workers
waits for its own nodes instead of failing, while a server full of other
work still sheds the load at once.  Runs are deterministic, so running a
node again elsewhere is safe.  Objects in erasure-coded or encrypted containers
are fetched by the proxy and sent along; such nodes, and nodes without data,
run on any object server.  The execute path never goes through the proxy's
GET/PUT controllers: their ``node_timeout`` and retries would cut off or
re-run computations.

Nodes wired with ``connect`` run as a pipeline: a node starts when every
node it reads from is running, and what they write to it
(``/dev/out/<node>``) travels through the proxy while they write it,
spooled to its disk (at most ``zerovm_maxspool`` bytes per job), as
``/dev/in/<node>`` of the reader (``zerovm_pipeline = false``: a node starts
when the nodes it reads from have finished).  ``replicate: N`` runs a node
on N servers at once and compares the etags of everything they wrote.
``zerocloud.graph`` explains both, and why worker pools cannot deadlock.

A node succeeded when it ended ``ok`` with an exit code of its
``exec.ok_exit`` (default 0): any other code is the program saying it
failed.  Only when every node succeeded are outputs with a ``path`` stored,
as normal Swift objects through the normal PUT path, as the caller (content
type from the device, else ``application/octet-stream``; ``meta`` as
``X-Object-Meta-*``; ``ETag`` the channel's MD5; an output smaller than the
device's ``min_size`` is not stored).  A failed job stores only the devices
with ``"store": "always"`` (of the nodes that ran); when storing one output
fails, the others may be stored already (every object is whole or absent,
never partial).  Each node's first written device without a path forms the
response body, in node order (content type from the first such device, else
``text/plain``).

Every node gets CGI variables in its environment: the request's
(``zerocloud.sources``), ``SCRIPT_NAME`` and ``SCRIPT_FILENAME`` (its
``argv[0]`` and ``exec.path``) and, for a node with an object (its
``attach`` device's), ZeroCloud's ``LOCAL_OBJECT=on``, ``LOCAL_PATH_INFO``
(``/<a>/<c>/<o>``, URL-encoded), ``LOCAL_DOCUMENT_ROOT`` (``/dev/<device>``),
``LOCAL_CONTENT_LENGTH``, ``LOCAL_CONTENT_TYPE``, ``LOCAL_HTTP_ETAG``,
``LOCAL_HTTP_X_TIMESTAMP``, ``LOCAL_HTTP_CONTENT_ENCODING`` and
``LOCAL_HTTP_X_OBJECT_META_<NAME>``, from the HEAD of the object made
before the job runs: every replica of a node sees the same values.  They
win over the job's own ``env``.

A job answered when it is done stops when its client closes the connection
(``zerocloud.hangup``): its node connections close, the object servers stop
the nodes and free their workers, nothing is stored, and the proxy logs 499.

Response
--------

Status: 200 when every node succeeded and its outputs were stored.
Otherwise the worst node's: 422 when a program failed (it exited with
another code than ``ok_exit``, or ended ``validation``, ``fault``, ``fuel``,
``quota``, ``memory``), 500 when the sandbox lost the
node (``killed``), 503 when no object server could run it
(``unavailable``), 504 when it hit the wall-clock limit (``timeout``), an
object server's 4xx when it refused the node (``error``), 409 when the
replicas of a node disagree (``mismatch``), 413 when the nodes sent each
other more than ``zerovm_maxspool`` bytes (``error``), the PUT's status
when storing an output failed.  A node that did not run because a node it
reads from failed is ``skipped`` (it never decides the status).  The body
then lists the failed nodes, one ``<node>: <status>: <what happened>`` line
each (``<node>: exit N: <last line of its stderr>`` for a failed exit), then
the end of each failed node's stderr.  The object server keeps the last 64
KiB of every node's stderr, declared or not (``zerocloud.object``).

Headers, one comma-separated value per node in node order, each replica of
a node one value (commas inside a value become ``;``):

``X-Nexe-System``
    node names
``X-Nexe-Status``
    ``ok`` or what ended the node (the statuses above)
``X-Nexe-Retcode``
    the program's exit code (empty when it did not exit)
``X-Nexe-Validation``
    0 validated, 1 failed validation, 2 did not get that far
``X-Nexe-Etag``
    ``/dev/<device> <md5>`` of each written channel, or ``disabled``
``X-Nexe-Host``
    ``<ip>:<port>/<device>`` of the object server that ran the node (empty
    when none did)
``X-Nexe-Policy``
    storage policy of the node's placement
``X-Nexe-Cdr-Line``
    total seconds, then per node: ``<seconds>, <fuel used> <syscalls>
    <bytes read> <bytes written>`` (fuel: bytes of guest code executed)
``X-Nexe-Error``
    only when something failed: ``<node>: <what happened>`` for each failed
    node (comma-separated; non-ASCII characters as ``?``)
``X-Nexe-Body-Bytes``
    bytes of the response body each node wrote (0 for none): where each
    node's part of a concatenated body starts and ends

``ETag`` is the MD5 of the body.  Each ``X-Nexe-*`` header is at most 8192
bytes (Swift's ``max_header_size``): a longer list ends with ``...`` and
``X-Nexe-Truncated: true`` is set.  The full report of every node is
available as JSON: send ``X-Zerovm-Report: json`` and the body is::

    {"status": 200, "seconds": 0.42, "nodes": [
      {"name": "wc-1", "replica": 1, "status": "ok", "retcode": 0, "failed": false,
       "message": "", "error": "", "stderr": "",
       "host": "127.0.0.1:6203/d0", "policy": "Policy-0",
       "seconds": 0.05, "validation": "ok", "engine": "native",
       "etags": {"/dev/stdout": "..."},
       "accounting": {"fuel": ..., "channels": {...}, ...},
       "outputs": [{"device": "stdout", "path": null, "bytes": 24,
                    "stored": false}],
       "object": "swift://AUTH_test/logs/day-1.log", "request_bytes": 38912,
       "program_bytes": 0, "started": null, "finished": null}]}

(``application/json``) instead of the outputs; outputs with a path are
stored as usual.  ``failed`` says whether the node counts as failed,
``error`` what went wrong (one line), ``stderr`` the end of its stderr,
``object`` the object it ran next to (null without one), ``engine`` the
engine that ran it (``native`` or ``emulated``; a node's ``"engine"`` in the
job asks for one).  ``outputs`` also
lists the node's ``out/<node>`` channels; ``request_bytes`` is what the
proxy sent to the object server that ran it (program, objects sent along,
other nodes' data), of which ``program_bytes`` the program (0 when it went
by digest, ``zerocloud.wire``: once per object server, not per node); for
the nodes of a ``connect`` graph, ``started`` and ``finished`` are the order
in which the proxy saw the node start (get a worker) and end, counted over
the job's events (1, 2, ...; null otherwise).

Programs
--------

A ``PUT`` of an object with ``Content-Type: application/x-nexe`` or
``X-Zerovm-Validate: true`` validates the program before storing it (in a
separate process, at most ``zerovm_maxnexe`` bytes, 413 beyond) and stores
the verdict with the object (system metadata, so it follows the object to
every replica and survives POSTs).  The object is stored either way; the
response says ``X-Zerovm-Valid: true`` or ``false`` plus
``X-Zerovm-Validation-Error: <first violation>``, and so do GET and HEAD of
the object later (while the validator version that gave the verdict is
current).  A job whose program is known invalid is refused with 422 without
running anything.  Object servers validate again (cached by SHA-256 per
host) before they run a program: the stored verdict saves the round trip,
never replaces the check.

Configuration (``proxy-server.conf``), after the auth filter::

    [pipeline:main]
    pipeline = catch_errors gatekeeper ... tempauth zerocloud proxy-logging proxy-server

    [filter:zerocloud]
    use = egg:zerocloud#zerocloud_proxy
    # wall-clock limit of one node, seconds
    zerovm_timeout = 60
    # largest job description, program, object read (or sent along) and
    # written channel, bytes
    zerovm_maxconfig = 65536
    zerovm_maxnexe = 268435456
    zerovm_maxinput = 1073741824
    zerovm_maxoutput = 1073741824
    # guest memory (bytes) and fuel (bytes of guest code executed) of one node
    zerovm_maxnexemem = 268435456
    zerovm_fuel = 200000000000
    # most nodes one job may expand to
    zerovm_maxnodes = 1000
    # most bytes the nodes of one job may send each other (connect), in
    # total; they wait on the proxy's disk ($TMPDIR) for their readers
    zerovm_maxspool = 4294967296
    # connect graphs as pipelines (a node starts when the nodes it reads
    # from run); false: stage by stage (when they have finished)
    zerovm_pipeline = true
    # system images (name path ...; the proxy uses the names)
    zerovm_sysimage_devices =
    # seconds to connect to an object server
    conn_timeout = 0.5
    # X-Zerovm-Deferred: auto waits this long for the result (default:
    # zerovm_timeout); a chain of jobs stops after chain_timeout seconds
    interactive_timeout = 60
    chain_timeout = 20
    # a deferred job's state in Swift is refreshed this often (seconds); one
    # three times as old is a lost job (its proxy stopped)
    deferred_heartbeat = 10
    # zapps are unpacked after authorisation, off the event loop, within:
    # members, uncompressed bytes, uncompressed / compressed (beyond 1 MiB)
    zapp_max_members = 10000
    zapp_max_size = 268435456
    zapp_max_ratio = 200

``swift_dir`` (usually from ``[DEFAULT]``) says where the rings are.
"""

from __future__ import annotations

import collections
import hashlib
import http.client
import json
import random
import re
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from urllib.parse import quote

from swift.common.bufferedhttp import http_connect
from swift.common.concurrency import Event, GreenPool, Timeout, sleep, spawn, subprocess
from swift.common.constraints import valid_api_version
from swift.common.exceptions import ConnectionTimeout
from swift.common.http import is_success
from swift.common.registry import register_swift_info
from swift.common.storage_policy import POLICIES, REPL_POLICY
from swift.common.swob import (
    HTTPBadRequest,
    HTTPClientDisconnect,
    HTTPConflict,
    HTTPException,
    HTTPForbidden,
    HTTPNotFound,
    HTTPRequestEntityTooLarge,
    HTTPServiceUnavailable,
    HTTPUnauthorized,
    HTTPUnprocessableEntity,
    Request,
    Response,
    str_to_wsgi,
    wsgi_to_str,
    wsgify,
)
from swift.common.utils import (
    close_if_possible,
    config_positive_int_value,
    config_true_value,
    get_logger,
)
from swift.common.wsgi import make_subrequest
from swift.proxy.controllers.base import get_container_info

from zerocloud import cgiout, chain, deferred, graph, hangup, placement, sources, wire, zapp
from zerocloud.job import (
    Device,
    JobError,
    JobTooLarge,
    Node,
    SwiftPath,
    expand,
    job_paths,
    parse_job,
)
from zerocloud.sources import Input, Launch
from zerocloud.sql import entry as sql_entry
from zvm_core.executor import DEFAULT_FUEL, DEFAULT_MEMORY, DEFAULT_TIMEOUT
from zvm_core.validator import VALIDATOR_VERSION

SWIFT_SOURCE = 'ZC'
NODE_GRACE = 5.0
BUSY_PAUSE, BUSY_PAUSE_MAX = 0.02, 0.5      # seconds between tries of busy servers
VALIDATE_TIMEOUT = 120.0
LISTING_LIMIT = 10000
MAX_CONCURRENCY = 64
MAX_HEADER = 8192
MAX_ERROR = 300
KNOWN_PROGRAMS = 4096       # (server, program digest) pairs a proxy process remembers
NEXE_CONTENT_TYPE = 'application/x-nexe'
DEFAULT_CONTENT_TYPE = 'application/octet-stream'
REPORT_HEADER = 'X-Zerovm-Report'
BODY_BYTES = 'X-Nexe-Body-Bytes'     # bytes of the response body from each node
SYSMETA_VALID = 'X-Object-Sysmeta-Zerovm-Valid'
SYSMETA_VALIDATOR = 'X-Object-Sysmeta-Zerovm-Validator'
SYSMETA_ERROR = 'X-Object-Sysmeta-Zerovm-Validation-Error'
# HTTP status of a node by how it ended.
EXIT_FAILED = 422        # a program that exited with a code the job does not accept
HTTP_STATUS = {'ok': 200, 'validation': 422, 'fault': 422, 'fuel': 422, 'quota': 422,
               'memory': 422, 'killed': 500, 'unavailable': 503, 'timeout': 504,
               graph.MISMATCH: 409, graph.SKIPPED: 424}
# Object headers a node sees as LOCAL_* variables (and X-Object-Meta-*).
LOCAL_HEADERS = {'content-length': 'LOCAL_CONTENT_LENGTH', 'content-type': 'LOCAL_CONTENT_TYPE',
                 'etag': 'LOCAL_HTTP_ETAG', 'x-timestamp': 'LOCAL_HTTP_X_TIMESTAMP',
                 'content-encoding': 'LOCAL_HTTP_CONTENT_ENCODING'}
_ENV_UNSAFE = re.compile('[^A-Z0-9_]')
# Headers of objects whose data file is not their content.
NOT_PLAIN = ('X-Object-Manifest', 'X-Static-Large-Object', 'X-Object-Sysmeta-Symlink-Target')


class _Retry(Exception):
    """This server did not run the node; another one may."""


class _Busy(_Retry):
    """The server's worker pool is full (503 with Retry-After): it may take the node later."""


class _NeedProgram(_Retry):
    """The server does not have the program of ``X-Zerovm-Program`` (412): send it."""


class _Refused(Exception):
    """The object server refused the node for a reason any server would give."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f'{status} {reason}')
        self.status = status


def _spooled():
    return tempfile.SpooledTemporaryFile(max_size=1 << 20)


def _short(text: str, limit: int = MAX_ERROR) -> str:
    text = ' '.join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


@dataclass
class Plan:
    """Where and how one node runs."""

    node: Node
    policy: int
    partition: int
    path: str                              # backend path: the data object or a placeholder
    servers: Iterable[dict]
    local: str | None                      # the device that reads ``path`` in place
    program: bytes | None                  # None: a system image's file (the server's)
    inputs: dict[str, Input]               # device name -> object sent along
    replica: int = 1                       # only replica 1 returns its outputs
    digest: str | None = None              # SHA-256 (hex) of ``program``
    env: dict[str, str] = field(default_factory=dict)   # the node's CGI variables


class NodeResult:
    """What came back from the object server that ran one node."""

    def __init__(self, node: Node, policy: str = '') -> None:
        self.node = node
        self.policy = policy
        self.report: dict = {'status': 'unavailable', 'retcode': None, 'message': ''}
        self.outputs: dict[str, object] = {}    # device name -> spooled file
        self.stored: set[str] = set()           # devices stored as objects
        self.server = ''
        self.seconds = 0.0
        self.error = ''
        self.http_status: int | None = None
        self.replica = 1
        self.links: dict[str, int] = {}         # peer -> bytes of /dev/out/<peer>
        self.request_bytes = 0                  # sent to the object server that ran it
        self.program_bytes = 0                  # of which the program (0: its digest went)
        self.started: int | None = None         # when it started and ended, in the order
        self.finished: int | None = None        # of the job's events (zerocloud.graph)

    @property
    def status(self) -> str:
        return self.report.get('status', 'killed')

    @property
    def http(self) -> int:
        if self.http_status:
            return self.http_status
        return EXIT_FAILED if self.exit_failed else HTTP_STATUS.get(self.status, 500)

    @property
    def failed(self) -> bool:
        return self.http != 200

    @property
    def exit_failed(self) -> bool:
        """Did the program exit by itself with a code the job does not count as success?"""
        retcode = self.report.get('retcode')
        return (self.status == 'ok' and retcode is not None
                and retcode not in self.node.exec.ok_exit)

    @property
    def stderr(self) -> str:
        """The end of what the node wrote to stderr (the object server keeps the last
        64 KiB, whether the job declared the device or not)."""
        return self.report.get('stderr') or ''

    @property
    def what(self) -> str:
        """What went wrong, in one line: ``exit 1: <last line of stderr>`` for a
        program that exited with a failure code, else the message."""
        if self.error:
            return self.error
        if self.exit_failed:
            last = next((line.strip() for line in reversed(self.stderr.splitlines())
                         if line.strip()), '')
            return f'exit {self.report["retcode"]}' + (f': {last}' if last else '')
        return self.report.get('message') or self.status

    @property
    def summary(self) -> str:
        """``<status>: <what happened>`` (``exit N: ...`` alone for a failed exit)."""
        return self.what if self.exit_failed and not self.error else f'{self.status}: {self.what}'

    def fail(self, status: str, message: str, http_status: int | None = None) -> None:
        self.report = {'status': status, 'retcode': None, 'message': message}
        self.error = message
        self.http_status = http_status

    def size(self, device: str) -> int:
        out = self.outputs[device]
        size = out.seek(0, 2)
        out.seek(0)
        return size

    def to_dict(self) -> dict:
        report = self.report
        validation = (report.get('validation') or {}).get('state')
        outputs = []
        for dev in self.node.devices:
            if dev.writable and dev.name in self.outputs:
                outputs.append({'device': dev.name, 'path': str(dev.path) if dev.path else None,
                                'bytes': self.size(dev.name), 'stored': dev.name in self.stored})
        outputs += [{'device': graph.OUT + peer, 'path': None, 'bytes': size, 'stored': False}
                    for peer, size in self.links.items()]
        return {'name': self.node.name, 'replica': self.replica, 'status': self.status,
                'retcode': report.get('retcode'), 'failed': self.failed,
                'message': report.get('message', ''),
                'error': self.what if self.failed else self.error, 'stderr': self.stderr,
                'host': self.server, 'policy': self.policy, 'seconds': round(self.seconds, 6),
                'validation': validation, 'engine': report.get('engine'),
                'etags': report.get('etags') or {},
                'accounting': report.get('accounting') or {}, 'outputs': outputs,
                'object': str(self.node.attach.path) if _attached_object(self.node) else None,
                'request_bytes': self.request_bytes, 'program_bytes': self.program_bytes,
                'started': self.started,
                'finished': self.finished}

    def close(self) -> None:
        for f in self.outputs.values():
            f.close()


class ProxyExecMiddleware:
    def __init__(self, app, conf: dict) -> None:
        self.app = app
        self.logger = get_logger(conf, log_route='zerocloud-proxy')
        self.swift_dir = conf.get('swift_dir', '/etc/swift')
        self.timeout = float(conf.get('zerovm_timeout', DEFAULT_TIMEOUT))
        self.max_config = config_positive_int_value(conf.get('zerovm_maxconfig', 65536))
        self.max_nexe = config_positive_int_value(conf.get('zerovm_maxnexe', 256 << 20))
        self.max_input = config_positive_int_value(conf.get('zerovm_maxinput', 1 << 30))
        self.max_output = config_positive_int_value(conf.get('zerovm_maxoutput', 1 << 30))
        self.memory = config_positive_int_value(conf.get('zerovm_maxnexemem', DEFAULT_MEMORY))
        self.fuel = config_positive_int_value(conf.get('zerovm_fuel', DEFAULT_FUEL))
        self.max_nodes = config_positive_int_value(conf.get('zerovm_maxnodes', 1000))
        self.max_spool = config_positive_int_value(conf.get('zerovm_maxspool', 4 << 30))
        self.pipeline = config_true_value(conf.get('zerovm_pipeline', 'true'))
        self.conn_timeout = float(conf.get('conn_timeout', 0.5))
        self.system_images = conf.get('zerovm_sysimage_devices', '').split()[::2]
        self.interactive_timeout = float(conf.get('interactive_timeout', self.timeout))
        self.chain_timeout = float(conf.get('chain_timeout', 20))
        self.zapp_limits = zapp.Limits.from_conf(conf)
        self.deferred_heartbeat = float(conf.get('deferred_heartbeat', 10))
        # (ip, port, digest) of programs sent to object servers, least recently used first
        self.known_programs: collections.OrderedDict[tuple, None] = collections.OrderedDict()
        self.sending: dict[tuple, Event] = {}   # programs on their way: set once sent

    def __call__(self, env, start_response):
        if 'HTTP_X_ZEROVM_EXECUTE' in env or env['PATH_INFO'].startswith(f'/{sources.OPEN}/'):
            return self.execute_app(env, start_response)
        method = env['REQUEST_METHOD']
        if method == 'PUT' and _wants_validation(env):
            return self.validated_put(env, start_response)
        if method in ('GET', 'HEAD'):
            deferred.settle_lost(self.app, env, self.logger)

            def start_with_verdict(status, headers, exc_info=None):
                return start_response(status, headers + _verdict_headers(headers), exc_info)
            return self.app(env, start_with_verdict)
        return self.app(env, start_response)

    # -- program uploads -----------------------------------------------------------

    @wsgify
    def validated_put(self, req: Request):
        try:
            req.split_path(4, 4, True)
        except ValueError:
            return self.app
        too_large = HTTPRequestEntityTooLarge(
            body=f'a program to validate may have at most zerovm_maxnexe '
                 f'({self.max_nexe}) bytes\n')
        if (req.content_length or 0) > self.max_nexe:
            raise too_large
        with tempfile.NamedTemporaryFile(prefix='zerocloud-upload-') as program:
            try:
                size = wire.copy_limited(req.environ['wsgi.input'], program, self.max_nexe)
            except wire.TooLarge:
                raise too_large from None
            except (OSError, ValueError):
                raise HTTPClientDisconnect(body='upload interrupted\n') from None
            if req.content_length is not None and size != req.content_length:
                raise HTTPClientDisconnect(body='upload shorter than Content-Length\n')
            program.flush()
            verdict = self._validate(program.name)
            program.seek(0)
            req.environ['wsgi.input'] = program
            req.environ.pop('HTTP_TRANSFER_ENCODING', None)
            req.content_length = size
            if verdict is not None:
                valid, error = verdict
                req.headers[SYSMETA_VALIDATOR] = VALIDATOR_VERSION
                req.headers[SYSMETA_VALID] = 'true' if valid else 'false'
                if error:
                    req.headers[SYSMETA_ERROR] = error
            resp = req.get_response(self.app)
        if is_success(resp.status_int):
            resp.headers.update(_verdict_headers(list(req.headers.items())))
        return resp

    def _validate(self, path: str) -> tuple[bool, str] | None:
        """(valid, first violation) from ``zvm validate`` in a child process; None
        when it could not decide (logged; the object is stored without a verdict)."""
        proc = subprocess.Popen([sys.executable, '-m', 'zvm_core.cli', 'validate', path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=VALIDATE_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.logger.error('validating an upload took over %ss', VALIDATE_TIMEOUT)
            return None
        if proc.returncode not in (0, 1):
            self.logger.error('zvm validate exited %s: %s', proc.returncode,
                              err.decode('utf-8', 'replace')[-500:])
            return None
        lines = out.decode('utf-8', 'replace').splitlines() or ['']
        if proc.returncode == 0:
            return True, ''
        reason = lines[1] if len(lines) > 1 else lines[0].rpartition(': invalid: ')[2]
        return False, _short(reason, 200).encode('ascii', 'replace').decode()

    # -- request -> nodes --------------------------------------------------------------

    @wsgify
    def execute_app(self, req: Request):
        """Every way to start a job (``zerocloud.sources``), deferred and chained."""
        try:
            version, account, container, obj = req.split_path(2, 4, True)
        except ValueError:
            return self.app
        opening = version == sources.OPEN
        if not (opening or valid_api_version(version)):
            return self.app
        if req.headers.get(wire.EXECUTE, '').strip().lower() == sql_entry.VERSION:
            return sql_entry.respond(self, req, version, account, container, obj)
        opening |= req.headers.get(wire.EXECUTE, '').strip().lower() == sources.OPEN_VERSION
        mode = req.headers.get(REPORT_HEADER, '').lower()
        if mode not in ('', 'json'):
            raise HTTPBadRequest(body=f'{REPORT_HEADER} must be "json"\n')
        when = deferred.mode(req)
        version = 'v1' if version == sources.OPEN else version
        if not opening:     # before any work the request pays for: its body, a zapp
            self._authorize(req, 'POST', f'/{version}/{account}', None)
        launch = (sources.open_launch if opening else sources.post_launch)(
            self, req, account, container, obj)

        def job(launch: Launch) -> Response:
            return self.execute(req, version, account, mode == 'json', launch)

        def run() -> Response:
            return deferred.run(
                self.app, req, when, account, container, self.interactive_timeout,
                lambda: chain.run(job, launch, self.chain_timeout, self.max_config),
                self.logger, self.deferred_heartbeat)
        if when != 'never':             # a deferred job goes on without its client
            return run()
        with hangup.stop_on_hangup(req.environ, 'the job'):
            return run()

    def _authorize(self, req: Request, method: str, path: str, acl_key: str | None) -> None:
        authorize = req.environ.get('swift.authorize')
        if authorize is None:
            return
        sub = _sub(req, method, path)
        if acl_key:
            info = get_container_info(sub.environ, self.app, swift_source=SWIFT_SOURCE)
            if not is_success(info['status']):
                raise HTTPNotFound(body=f'container of swift:/{path[3:]} does not exist\n')
            sub.acl = info.get(acl_key)
        denied = authorize(sub)
        if denied is not None:
            what = {'POST': 'execute jobs in', 'PUT': 'write'}[method]
            raise _denied(denied, f'{what} swift:/{path[3:]}')

    def _listing(self, req: Request, path: str):
        marker = ''
        while True:
            query = f'?format=json&limit={LISTING_LIMIT}&marker={quote(marker)}'
            resp = _sub(req, 'GET', path, query).get_response(self.app)
            if resp.status_int == 404:
                raise JobError(f'swift:/{path[3:]} does not exist')
            if resp.status_int in (401, 403):
                raise _denied(resp, f'list swift:/{path[3:]}')
            if not is_success(resp.status_int):
                raise HTTPServiceUnavailable(body=f'cannot list swift:/{path[3:]}: '
                                                  f'{resp.status}\n')
            items = json.loads(resp.body or b'[]')
            if not items:
                return
            for item in items:
                yield item.get('name') or item.get('subdir')
            marker = items[-1].get('name') or items[-1].get('subdir')

    def _nodes(self, req: Request, account: str, launch: Launch) -> list[Node]:
        try:
            groups = parse_job(launch.job, account, system_images=self.system_images,
                               max_size=self.max_config)
            launch.adapt(groups)
            graph.check_groups(groups)
            nodes = expand(groups,
                           lambda a, c: self._listing(req, f'/v1/{a}/{c}'),
                           lambda a: self._listing(req, f'/v1/{a}'),
                           max_nodes=self.max_nodes)
            graph.check_nodes(nodes)
        except JobTooLarge as e:
            raise HTTPRequestEntityTooLarge(body=f'{e}\n') from None
        except JobError as e:
            raise HTTPBadRequest(body=f'{e}\n') from None
        for node in nodes:
            sources.program_location(node)
            for dev in node.devices:
                if dev.readable and dev.path is not None and dev.path.obj is None:
                    raise HTTPBadRequest(body=f'reading a container ({dev.path}, device '
                                              f'{dev.name} of {node.group}) is not supported; '
                                              'name objects\n')
        return nodes

    def _read(self, req: Request, method: str, path: SwiftPath) -> Response:
        """HEAD or GET an object as the caller; 404/403/409 name it."""
        resp = _sub(req, method, '/v1' + path.path).get_response(self.app)
        if resp.status_int == 404:
            raise HTTPNotFound(body=f'Error 404 Not Found while fetching {path}\n')
        if resp.status_int in (401, 403):
            raise _denied(resp, f'read {path}')
        if not is_success(resp.status_int):
            raise HTTPServiceUnavailable(body=f'cannot read {path}: {resp.status}\n')
        kind = next((key for key in NOT_PLAIN if key in resp.headers), None)
        if kind:
            raise HTTPConflict(body=f'{path} is not a plain object ({kind}): jobs read the '
                                    'objects themselves, not manifests or symlinks\n')
        return resp

    def _fetch(self, req: Request, path: SwiftPath, limit: int) -> tuple[Input, Response]:
        """GET an object as the caller into a spooled file."""
        resp = self._read(req, 'GET', path)
        out, size = _spooled(), 0
        try:
            for chunk in resp.app_iter:
                size += len(chunk)
                if size > limit:
                    raise HTTPRequestEntityTooLarge(body=f'{path} is larger than {limit} '
                                                         'bytes\n')
                out.write(chunk)
        except BaseException:
            out.close()
            raise
        finally:
            close_if_possible(resp.app_iter)
        return Input(out, size), resp

    def _fetch_program(self, req: Request, path: SwiftPath) -> bytes:
        program, resp = self._fetch(req, path, self.max_nexe)
        with program.file:
            if (resp.headers.get(SYSMETA_VALIDATOR) == VALIDATOR_VERSION
                    and resp.headers.get(SYSMETA_VALID) == 'false'):
                raise HTTPUnprocessableEntity(
                    body=f'program {path} is not valid (checked at upload): '
                         f'{resp.headers.get(SYSMETA_ERROR, "")}\n')
            program.file.seek(0)
            return program.file.read()

    def _in_place(self, req: Request, path: SwiftPath) -> tuple[int | None, dict[str, str]]:
        """The policy of ``path`` if a node can run where it is stored, reading it
        from the disk (replicated and not encrypted), else None (it must travel);
        and the ``LOCAL_*`` variables of the object."""
        resp = self._read(req, 'HEAD', path)
        info = get_container_info(_sub(req, 'HEAD', f'/v1/{path.account}/{path.container}'
                                       ).environ, self.app, swift_source=SWIFT_SOURCE)
        policy = POLICIES.get_by_index(info.get('storage_policy'))
        encrypted = any(k.lower().startswith('x-object-sysmeta-crypto-') for k in resp.headers)
        local_env = _local_env(path, resp.headers)
        if policy is None or policy.policy_type != REPL_POLICY or encrypted:
            return None, local_env
        return int(policy), local_env

    def _plan(self, node: Node, account: str, job_id: str, program: bytes,
              local: Device | None, policies: dict[SwiftPath, int | None],
              inputs: dict[SwiftPath, Input]) -> Plan:
        if local is not None:
            p = local.path
            policy = policies[p]
            ring = placement.object_ring(self.swift_dir, policy)
            part, servers = placement.nodes_for_object(ring, p.account, p.container, p.obj)
            path = p.path
        else:
            policy = POLICIES.default.idx
            ring = placement.object_ring(self.swift_dir, policy)
            part, servers = placement.any_nodes(ring, job_id + node.name)
            path = f'/{account}/.zerocloud/{node.name}'
        return Plan(node, policy, part, path, servers, local.name if local else None, program,
                    {dev.name: inputs[dev.path] for dev in node.devices
                     if dev.readable and dev.path is not None and dev is not local})

    def _prepare(self, req: Request, nodes: list[Node], account: str, job_id: str,
                 inputs: dict[SwiftPath, Input], launch: Launch) -> list[Plan]:
        """Check every object the job touches, as the caller; fetch what travels."""
        for path in sorted(job_paths(nodes)[1], key=str):
            self._authorize(req, 'PUT', '/v1' + path.path, 'write_acl')
        programs = sources.fetch_programs(self, req, nodes, launch)
        attached = sorted({n.attach.path for n in nodes if _attached_object(n)}, key=str)
        found = dict(zip(attached, _imap(lambda p: self._in_place(req, p), attached),
                         strict=True))
        policies = {path: policy for path, (policy, _) in found.items()}
        local = {n.name: n.attach if _attached_object(n) and policies[n.attach.path] is not None
                 else None for n in nodes}
        remote = {dev.path for n in nodes for dev in n.devices
                  if dev.readable and dev.path is not None and dev is not local[n.name]}
        for path in sorted(remote, key=str):
            inputs[path] = self._fetch(req, path, self.max_input)[0]
        plans = [self._plan(n, account, job_id, programs[n.name], local[n.name], policies,
                            inputs) for n in nodes]
        digests: dict[int, str] = {}             # one program object per path and job
        for plan in plans:
            node = plan.node
            plan.env = {'SCRIPT_NAME': node.argv[0], 'SCRIPT_FILENAME': node.exec.path}
            if _attached_object(node):
                plan.env.update(found[node.attach.path][1],
                                LOCAL_DOCUMENT_ROOT=f'/dev/{node.attach.name}')
            plan.inputs.update(launch.device_inputs(node))
            if plan.program is not None:
                plan.digest = digests.get(id(plan.program)) or digests.setdefault(
                    id(plan.program), hashlib.sha256(plan.program).hexdigest())
        return plans

    # -- running nodes -----------------------------------------------------------------

    def _spec(self, plan: Plan) -> dict:
        devices = []
        for dev in plan.node.devices:
            source = None
            if dev.name == plan.local:
                source = 'local'
            elif dev.name in plan.inputs:
                source = 'member'
            devices.append({'name': dev.name, 'access': 'w' if dev.writable else 'r',
                            'random': dev.random, 'source': source})
        node = plan.node
        devices += graph.link_devices(node, self.max_output)
        spec = {'name': node.name, 'argv': node.argv, 'env': {**node.exec.env, **plan.env},
                'devices': devices, 'seed': 0, 'epoch': 0, 'outputs': plan.replica == 1,
                'limits': {'memory': self.memory, 'fuel': self.fuel, 'timeout': self.timeout}}
        if node.engine is not None:
            spec['engine'] = node.engine
        if node.reads_from or node.writes_to:
            spec['stream'] = True
        if plan.program is None:         # file://<system image>:<member>: mount that image
            image, member = node.exec.image_member
            spec['program'] = {'image': image, 'member': member}
            if not any(d['name'] == image for d in devices):
                devices.append({'name': image, 'access': 'r', 'random': True, 'source': None})
        return spec

    def _members(self, plan: Plan) -> Callable[[bool], list[wire.Member]]:
        """A maker of the node's request members, with the program or not (fresh
        iterators for every attempt)."""
        spec = json.dumps(self._spec(plan), sort_keys=True).encode()

        def members(program: bool = True, sent: Callable[[], None] | None = None
                    ) -> list[wire.Member]:
            exe = [] if plan.program is None or not program else [
                (wire.EXE, len(plan.program), _then(plan.program, sent))]
            return [wire.bytes_member(wire.SPEC, spec), *exe,
                    *(wire.shared_member(wire.DEV_PREFIX + name, i.file, i.size)
                      for name, i in plan.inputs.items())]
        return members

    def _run_node(self, req: Request, plan: Plan, job_id: str,
                  load: collections.Counter | None = None,
                  links: graph.NodeLinks | None = None) -> NodeResult:
        """Run one node; ``load`` counts the job's nodes in flight per server."""
        load = collections.Counter() if load is None else load
        res = NodeResult(plan.node, POLICIES.get_by_index(plan.policy).name)
        started = time.monotonic()
        make_members = self._members(plan)
        base = {wire.EXECUTE: wire.VERSION, 'Content-Type': 'application/x-tar',
                'Expect': '100-continue', 'X-Backend-Storage-Policy-Index': str(plan.policy),
                'X-Trans-Id': req.environ.get('swift.trans_id', ''), 'X-Zerocloud-Id': job_id}
        if plan.local:
            base[wire.ACCESS] = 'GET'

        sending: list[tuple[tuple, Event]] = []          # programs this node sends

        def request(server: dict, program: bool
                    ) -> tuple[dict, Callable[[], list[wire.Member]]]:
            """Headers and members of one attempt, with the program or its digest."""
            headers = dict(base)
            if links is not None and links.inputs:       # the links follow as they arrive
                headers['Transfer-Encoding'] = 'chunked'
            else:
                headers['Content-Length'] = str(wire.tar_size(
                    (n, s) for n, s, _ in make_members(program)))
            if not program:
                headers[wire.PROGRAM] = plan.digest
                return headers, lambda: make_members(False)
            if plan.digest is None:
                return headers, lambda: make_members(True)
            self._program_known(server, plan.digest, True)   # later nodes: the digest
            key = (server['ip'], server['port'], plan.digest)
            if key not in self.sending:        # they wait until it has been sent
                entry = key, self.sending.setdefault(key, Event())
                sending.append(entry)
                return headers, lambda: make_members(True, lambda: self._sent(*entry))
            return headers, lambda: make_members(True)
        errors, busy = [], []
        for server in _attempts(plan.servers, busy, started + self.timeout):
            where = f'{server["ip"]}:{server["port"]}/{server["device"]}'
            load[server['ip'], server['port']] += 1
            known = plan.digest is not None and self._program_known(server, plan.digest)
            if known and (server['ip'], server['port'], plan.digest) in self.sending:
                with Timeout(NODE_GRACE, False):    # another node is sending it there
                    self.sending[server['ip'], server['port'], plan.digest].wait()
            headers, members = request(server, not known)
            sent = [int(headers.get('Content-Length', 0))]
            try:
                try:
                    res.report, res.outputs = self._exchange(server, plan, headers, members,
                                                             links, sent)
                except _NeedProgram as e:      # not there after all: again, with it
                    self.logger.debug('node %s on %s: %s', plan.node.name, where, e)
                    self._program_known(server, plan.digest, False)
                    headers, members = request(server, True)
                    sent = [int(headers.get('Content-Length', 0))]
                    res.report, res.outputs = self._exchange(server, plan, headers, members,
                                                             links, sent)
                res.server = where
                res.request_bytes = sent[0]
                res.program_bytes = 0 if wire.PROGRAM in headers else len(plan.program or b'')
                break
            except _Refused as e:
                res.fail('error', f'{where} refused the node: {e}', e.status)
                break
            except graph.SpoolFull as e:
                res.fail('error', str(e), 413)
                break
            except (_Retry, OSError, Timeout, http.client.HTTPException, ValueError) as e:
                if isinstance(e, _Busy) and load[server['ip'], server['port']] > 1:
                    busy.append(server)           # full of this job's own nodes
                errors.append(f'{where} {_short(str(e) or repr(e), 120)}')
                self.logger.info('node %s not run on %s: %r', plan.node.name, where, e)
            finally:
                load[server['ip'], server['port']] -= 1
                while sending:                  # sent, or it never will be
                    self._sent(*sending.pop())
        else:
            res.fail('unavailable', 'no object server could run the node'
                     + (f' ({"; ".join(errors[-3:])})' if errors else ''))
        res.seconds = time.monotonic() - started
        return res

    def _program_known(self, server: dict, digest: str, known: bool | None = None) -> bool:
        """Whether the program of ``digest`` was sent to ``server`` (it may have it);
        ``known`` records that it was (True) or that the server lacked it (False)."""
        key = (server['ip'], server['port'], digest)
        if known is False:
            self.known_programs.pop(key, None)
        elif known:
            self.known_programs[key] = None
            self.known_programs.move_to_end(key)
            while len(self.known_programs) > KNOWN_PROGRAMS:
                self.known_programs.popitem(last=False)
        return key in self.known_programs

    def _sent(self, key: tuple, event: Event) -> None:
        """The program of ``key`` has gone (or will not): nodes waiting for it go on."""
        if self.sending.get(key) is event:
            del self.sending[key]
        if not event.ready():
            event.send()

    def _exchange(self, server: dict, plan: Plan, headers: dict,
                  members: Callable[[], list[wire.Member]], links: graph.NodeLinks | None,
                  sent: list[int]) -> tuple[dict, dict]:
        """Run the node on one server: (report, outputs), or an exception."""
        with ConnectionTimeout(self.conn_timeout):
            conn = http_connect(server['ip'], server['port'], server['device'], plan.partition,
                                'POST', plan.path, headers)
        sock = conn.sock                  # the responses hold it too: shut it down at the end
        feeder = sender = None
        try:
            with Timeout(NODE_GRACE):
                resp = conn.getexpect()
            with Timeout(self.timeout + NODE_GRACE):
                if resp.status == http.client.CONTINUE:
                    if 'Transfer-Encoding' in headers:
                        feeder = graph.Feeder(links.inputs)
                        sender = spawn(_send_chunked, conn.sock, [
                            *members(), wire.bytes_member(wire.START, b''),
                            feeder.members()], sent)
                    else:
                        for chunk in wire.stream_tar(members()):
                            conn.send(chunk)
                    resp = conn.getresponse()
                return self._node_response(resp, links, headers.get(wire.PROGRAM))
        finally:
            if sender is not None:
                feeder.stop()
                with Timeout(NODE_GRACE, False):
                    sender.wait()
                sender.kill()
            try:                    # the server sees the end at once, even if the node was
                sock.shutdown(socket.SHUT_RDWR)       # stopped (its job's client went away)
            except OSError:
                pass
            conn.close()

    def _node_response(self, resp, links: graph.NodeLinks | None = None,
                       digest: str | None = None) -> tuple[dict, dict]:
        """The report and outputs of a node's response (``digest``: the program's,
        sent instead of the program)."""
        if resp.getheader(wire.EXECUTE) is None:
            raise _Retry(f'{resp.status}: the zerocloud filter is not in its pipeline')
        if resp.status != 200:
            reason = _short(resp.read(1024).decode('utf-8', 'replace'))
            if resp.status == 412 and digest is not None:
                raise _NeedProgram(f'{resp.status} {reason}')
            if resp.status == 503 and resp.getheader('Retry-After'):
                raise _Busy(f'{resp.status} {reason}')
            if resp.status in (404, 507) or resp.status >= 500:
                raise _Retry(f'{resp.status} {reason}')
            raise _Refused(resp.status, reason)
        stream, first = resp, wire.REPORT
        relay = None
        if resp.getheader(wire.STREAM):       # running: parts of its links come first
            stream, first = wire.Available(resp), None
            if links is not None and links.running is not None:
                links.running()
            if links is not None and links.outputs is not None:
                relay = graph.Relay(links.outputs)
        report, outputs = None, {}
        try:
            for name, f in wire.read_members(stream, first):
                if name == wire.RUNNING and first is None:
                    continue
                if name.startswith(wire.PART_PREFIX + graph.OUT) and report is None:
                    if relay is not None:
                        relay.add(name[len(wire.PART_PREFIX + graph.OUT):], f)
                elif name == wire.REPORT:
                    report = json.loads(f.read(1 << 20))
                elif name.startswith(wire.DEV_PREFIX) and report is not None:
                    out = outputs[name[len(wire.DEV_PREFIX):]] = _spooled()
                    wire.copy_limited(f, out, self.max_output)
                else:
                    raise wire.WireError(f'unexpected member {name}')
            if not isinstance(report, dict):
                raise wire.WireError('no report')
        except BaseException:
            for out in outputs.values():
                out.close()
            raise
        return report, outputs

    def _replica_servers(self, plan: Plan) -> tuple[int, str]:
        """How many different servers could run a replica of the node, and which."""
        ring = placement.object_ring(self.swift_dir, plan.policy)
        if plan.local:
            path = next(d.path for d in plan.node.devices if d.name == plan.local)
            return int(ring.replica_count), f'replicas of {path}'
        return len({(d['ip'], d['port']) for d in ring.devs if d}), 'object servers'

    # -- the whole job -----------------------------------------------------------------

    def execute(self, req: Request, version: str, account: str, report_json: bool,
                launch: Launch) -> Response:
        started = time.monotonic()
        req.environ.setdefault('swift.infocache', {})   # shared by every sub-request
        self._authorize(req, 'POST', f'/{version}/{account}', None)
        nodes = self._nodes(req, account, launch)
        inputs: dict[SwiftPath, Input] = {}
        results: list[NodeResult] = []
        try:
            job_id = uuid.uuid4().hex
            plans = self._prepare(req, nodes, account, job_id, inputs, launch)
            try:
                graph.check_replicas(plans, self._replica_servers)
            except JobError as e:
                raise HTTPBadRequest(body=f'{e}\n') from None
            deferred.launched(req)

            load: collections.Counter = collections.Counter()

            def run_replica(plan: Plan, replica: int, servers: Iterable[dict],
                            links: graph.NodeLinks | None) -> NodeResult:
                return self._run_node(req, replace(plan, servers=servers, replica=replica),
                                      job_id, load, links)

            results = graph.run(plans, run_replica, _skipped, max_spool=self.max_spool,
                                max_link=self.max_output, concurrency=MAX_CONCURRENCY,
                                pipeline=self.pipeline)
            self._store_all(req, results, failed=any(r.failed for r in results))
            return self._respond(results, time.monotonic() - started, report_json)
        finally:
            for i in inputs.values():
                i.file.close()
            for r in results:
                r.close()

    def _store_all(self, req: Request, results: list[NodeResult], failed: bool) -> None:
        """Store the outputs with a path: all of them when the job succeeded, else
        only those of devices with ``"store": "always"``."""
        todo = [(r, dev) for r in results for dev in r.node.devices
                if dev.writable and dev.path is not None and dev.name in r.outputs
                and r.size(dev.name) >= dev.min_size
                and (not failed or dev.store == 'always')]
        if todo:
            pool = GreenPool(min(len(todo), MAX_CONCURRENCY))
            for _ in pool.imap(lambda job: self._store(req, *job), todo):
                pass

    def _store(self, req: Request, res: NodeResult, dev: Device) -> None:
        size = res.size(dev.name)
        headers = {'Content-Type': dev.content_type or DEFAULT_CONTENT_TYPE,
                   'Content-Length': str(size)}
        etag = (res.report.get('etags') or {}).get('/dev/' + dev.name)
        if etag:
            headers['ETag'] = etag
        headers.update({f'X-Object-Meta-{k}': str_to_wsgi(v) for k, v in dev.meta.items()})
        sub = _sub(req, 'PUT', '/v1' + dev.path.path, headers=headers)
        sub.environ['wsgi.input'] = res.outputs[dev.name]
        resp = sub.get_response(self.app)
        if is_success(resp.status_int):
            res.stored.add(dev.name)
            return
        res.error = _short(f'Status {resp.status_int} when putting {dev.path}')
        res.http_status = max(res.http_status or 0,
                              resp.status_int if resp.status_int >= 400 else 503)

    def _respond(self, results: list[NodeResult], seconds: float, report_json: bool
                 ) -> Response:
        status = max(r.http for r in results if r.status != graph.SKIPPED)
        headers = _nexe_headers(results, seconds)
        content_type = 'text/plain'
        if report_json:
            body = json.dumps({'status': status, 'seconds': round(seconds, 6),
                               'nodes': [r.to_dict() for r in results]}, indent=1).encode()
            content_type = 'application/json'
        elif status != 200:
            failed = [r for r in results if r.failed]
            body = ''.join(f'{r.node.name}: {r.summary}\n' for r in failed)
            body += ''.join(f'\n--- stderr of {r.node.name} (its end) ---\n{r.stderr}'
                            + ('' if r.stderr.endswith('\n') else '\n')
                            for r in failed if r.stderr)
            body = body.encode()
        else:
            parts, sizes = [], {}
            for r in results:
                dev = next((d for d in r.node.devices
                            if d.writable and d.path is None and d.name in r.outputs), None)
                if dev is not None:
                    r.outputs[dev.name].seek(0)
                    parts.append((r.node.name, dev.content_type, r.outputs[dev.name].read()))
                    sizes[id(r)] = len(parts) - 1
            try:
                status, written, bodies = cgiout.compose(parts)
                body = b''.join(bodies)
                headers[BODY_BYTES], cut = _header(
                    len(bodies[sizes[id(r)]]) if id(r) in sizes else 0 for r in results)
                if cut:
                    headers['X-Nexe-Truncated'] = 'true'
            except cgiout.CgiError as e:
                status, written, body = 422, {}, f'{e}\n'.encode()
            content_type = written.pop('Content-Type', content_type)
            headers.update(written)
        headers['Etag'] = hashlib.md5(body).hexdigest()
        return Response(status=status, body=body, headers=headers, content_type=content_type)


def _wants_validation(env: dict) -> bool:
    content_type = env.get('CONTENT_TYPE', '').partition(';')[0].strip().lower()
    return (content_type == NEXE_CONTENT_TYPE
            or config_true_value(env.get('HTTP_X_ZEROVM_VALIDATE', 'false')))


def _verdict_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``X-Zerovm-Valid`` (and why not) from a stored, current verdict in ``headers``."""
    found = {k.lower(): v for k, v in headers if k.lower().startswith('x-object-sysmeta-zerovm-')}
    valid = found.get(SYSMETA_VALID.lower())
    if valid is None or found.get(SYSMETA_VALIDATOR.lower()) != VALIDATOR_VERSION:
        return []
    out = [('X-Zerovm-Valid', valid)]
    if SYSMETA_ERROR.lower() in found:
        out.append(('X-Zerovm-Validation-Error', found[SYSMETA_ERROR.lower()]))
    return out


def _sub(req: Request, method: str, path: str, query: str = '', **kwargs) -> Request:
    """A sub-request as the caller (same auth) for an unquoted Swift path."""
    return make_subrequest(req.environ, method, quote(path) + query, swift_source=SWIFT_SOURCE,
                           **kwargs)


def _denied(resp: Response, action: str) -> HTTPException:
    """The 401 (no valid token: the auth's challenge kept) or 403 of Swift's ``resp``."""
    if resp.status_int == 401:
        challenge = {k: v for k, v in resp.headers.items() if k.lower() == 'www-authenticate'}
        return HTTPUnauthorized(body=f'Unauthorized: a valid token is needed to {action}\n',
                                headers=challenge)
    return HTTPForbidden(body=f'Denied: may not {action}\n')


def _imap(func: Callable, items: list) -> list:
    """``func`` over ``items`` concurrently; its HTTP error (a 404...) is raised here, in
    the caller's green thread: raised in the pool's, the hub would also log it as a
    traceback, as if it were a bug."""
    def call(item: object) -> tuple[object, HTTPException | None]:
        try:
            return func(item), None
        except HTTPException as e:
            return None, e
    results = []
    for value, error in GreenPool(MAX_CONCURRENCY).imap(call, items):
        if error is not None:
            raise error
        results.append(value)
    return results


def _attempts(servers: Iterable[dict], busy: list[dict], deadline: float) -> Iterator[dict]:
    """The servers in order, then again those the caller put in ``busy`` (full of
    the job's own nodes), after a growing pause, until ``deadline``.

    Those nodes end, and a node waiting here holds no worker, so a job with more
    nodes than the cluster has workers waits for them instead of failing; a server
    full of other work still ends the node at once (``unavailable``, 503).
    """
    pause = BUSY_PAUSE
    yield from servers
    while busy and time.monotonic() + pause < deadline:
        sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 2, BUSY_PAUSE_MAX)
        again, busy[:] = list(busy), []
        yield from again


def _then(data: bytes, done: Callable[[], None] | None) -> Iterator[bytes]:
    """``data`` as a member's chunks; ``done()`` once the consumer took it (sent it)."""
    yield data
    if done is not None:
        done()


def _send_chunked(sock, members: list, sent: list[int]) -> None:
    """Send a tar stream of ``members`` (the last one an iterator of members that
    come as they arrive) in chunked transfer encoding; a member that fails
    (a link whose node failed) cuts the stream before the links are complete."""
    def all_members():
        yield from members[:-1]
        yield from members[-1]
    try:
        try:
            for chunk in wire.stream_tar(all_members()):
                if chunk:
                    sock.sendall(b'%x\r\n%s\r\n' % (len(chunk), chunk))
                    sent[0] += len(chunk)
        except graph.LinkFailed:
            pass
        sock.sendall(b'0\r\n\r\n')
    except OSError:
        pass                # the server went away: the response says what happened


def _skipped(plan: Plan, replica: int, why: str) -> NodeResult:
    """The result of a node that could not run because a node it reads from failed."""
    res = NodeResult(plan.node, POLICIES.get_by_index(plan.policy).name)
    res.fail(graph.SKIPPED, why)
    res.replica = replica
    return res


def _local_env(path: SwiftPath, headers) -> dict[str, str]:
    """ZeroCloud's ``LOCAL_*`` variables of an object, from its metadata (``headers``
    of a HEAD): the same for every replica, like the object's data."""
    env = {'LOCAL_OBJECT': 'on', 'LOCAL_PATH_INFO': quote(path.path)}
    for name, value in headers.items():
        key = name.lower()
        if key in LOCAL_HEADERS or key.startswith('x-object-meta-'):
            var = LOCAL_HEADERS.get(key) or 'LOCAL_HTTP_' + _ENV_UNSAFE.sub('_', name.upper())
            env[var] = wsgi_to_str(value)
    return env


def _attached_object(node: Node) -> bool:
    """Does the node have an object to run next to (its attached device reads one)?"""
    return node.attach is not None and node.attach.readable and node.attach.path is not None


def _header(values: Iterable[object], sep: str = ',') -> tuple[str, bool]:
    """One header value per node, at most MAX_HEADER bytes: (text, truncated)."""
    items = [str(v).replace(',', ';').replace('\r', ' ').replace('\n', ' ') for v in values]
    text = sep.join(items)
    if len(text) <= MAX_HEADER:
        return text, False
    kept, length = [], len(sep) + 3
    for item in items:
        length += len(item) + len(sep)
        if length > MAX_HEADER:
            break
        kept.append(item)
    return sep.join([*kept, '...']), True


def _nexe_headers(results: list[NodeResult], seconds: float) -> dict[str, str]:
    def validation(r):
        state = (r.report.get('validation') or {}).get('state')
        if r.status == 'validation':
            return 1
        return 0 if state in ('ok', 'cached') else 2

    def etags(r):
        tags = r.report.get('etags') or {}
        return ' '.join(f'{k} {v}' for k, v in sorted(tags.items())) or 'disabled'

    def cdr(r):
        acc = r.report.get('accounting') or {}
        chans = (acc.get('channels') or {}).values()
        return [f'{r.seconds:.3f}',
                f'{acc.get("fuel", 0)} {acc.get("syscalls", 0)} '
                f'{sum(c.get("read_bytes", 0) for c in chans)} '
                f'{sum(c.get("write_bytes", 0) for c in chans)}']

    columns = {
        'X-Nexe-System': [r.node.name for r in results],
        'X-Nexe-Status': [r.status for r in results],
        'X-Nexe-Retcode': ['' if r.report.get('retcode') is None else r.report['retcode']
                           for r in results],
        'X-Nexe-Validation': [validation(r) for r in results],
        'X-Nexe-Etag': [etags(r) for r in results],
        'X-Nexe-Host': [r.server for r in results],
        'X-Nexe-Policy': [r.policy for r in results],
    }
    headers, truncated = {}, False
    for name, values in columns.items():
        headers[name], cut = _header(values)
        truncated |= cut
    headers['X-Nexe-Cdr-Line'], cut = _header(
        [f'{seconds:.3f}', *(x for r in results for x in cdr(r))], sep=', ')
    truncated |= cut
    errors = [f'{r.node.name}: {_short(r.what)}'.encode('ascii', 'replace').decode()
              for r in results if r.failed]
    if errors:
        headers['X-Nexe-Error'], cut = _header(errors, sep=', ')
        truncated |= cut
    if truncated:
        headers['X-Nexe-Truncated'] = 'true'
    return headers


def filter_factory(global_conf: dict, **local_conf):
    conf = dict(global_conf, **local_conf)
    register_swift_info('zerocloud', max_job_size=int(conf.get('zerovm_maxconfig', 65536)),
                        timeout=float(conf.get('zerovm_timeout', DEFAULT_TIMEOUT)),
                        validator_version=VALIDATOR_VERSION)

    def zerocloud_proxy_filter(app):
        return ProxyExecMiddleware(app, conf)
    return zerocloud_proxy_filter

"""ZeroCloud proxy filter: run a job next to the data it reads.

Running a job
-------------

A client POSTs a job description (``zerocloud.job`` documents the JSON) to
its account::

    curl -X POST $STORAGE_URL -H "X-Auth-Token: $TOKEN" \\
         -H "X-Zerovm-Execute: 1.0" -H "Content-Type: application/json" \\
         --data-binary @job.json

The same request may carry a zapp or a script instead, name a stored job with
``X-Zerovm-Source``, go to a container or an object, be a ``GET`` that
"opens" an object with an app (``X-Zerovm-Execute: open/1.0`` or
``/open/<account>/<container>/<object>``), or any request to a container's
REST endpoint (``/api/<account>/<container>/<path>``): ``zerocloud.sources``
documents each form.  ``X-Zerovm-Deferred`` answers before the job is done
(``zerocloud.deferred``), a job whose response is a job runs it next when
all the code it ran and the objects it read are the caller's account's
(``zerocloud.chain``: else ``X-Chain-Stopped: foreign_code`` or
``foreign_input``), and a program can write the HTTP
response's status and headers itself (``zerocloud.cgiout``).

Before anything runs, the filter

* checks that the caller may POST to the account (401 without a valid token, 403
  otherwise);
* parses and validates the job (400 saying what and where, also for a
  ``connect`` cycle and a ``replicate`` above the servers that could run
  it; 413 for a description over ``zerovm_maxconfig`` bytes), and expands
  wildcards into nodes (listing the containers as the caller; a job without
  ``connect`` is made, checked and run as the listing is read, a chunk of
  nodes at a time, and its results are released as they end: the proxy's
  memory stays bounded whatever the number of nodes, ``zerocloud.proxy.stream``);
* checks that the caller may write every object the job writes (403, or 404
  when the container does not exist) and reads, as the caller, every object
  the job reads: the programs (fetched once per job, at most
  ``zerovm_maxnexe`` bytes each and ``zerovm_job_maxprograms`` in all: they
  wait in spooled files on the proxy's disk for the whole job, a buffer of at most
  1 MiB each in memory), the objects read in place (HEAD; the objects a
  wildcard found in a container's listing are authorised once per container,
  ``_listed``) and the others (fetched once per job, at most
  ``zerovm_maxinput`` bytes each and ``zerovm_job_maxinputs`` in all on the
  proxy's disk: they wait there for the whole job).  A missing one
  is a 404 ``Error 404 Not Found while fetching swift://... (device stdin of
  wc)`` (the node and device that read it), a forbidden
  one a 403 naming it, a large-object manifest or a symlink a 409 (jobs read
  plain objects), a program that failed validation when it was uploaded a
  422.

Each node then goes to an object server holding its data object
(``zerocloud.placement``), where the object-server filter
(``zerocloud.object``) runs it in the sandbox with the object as a local
channel (its program and image travel once per object server, then by
SHA-256: ``zerocloud.wire``); the nodes of a wildcard bound for one server
travel together, in batches (``zerocloud.proxy.batch``). The proxy tries the
primaries in ring order, then the handoffs, moving on when a server cannot
be reached, does not answer within ``zerovm_timeout`` + 5 s, answers 404 (no
such object there), 507 or 5xx. A server that answers 503 ``Slot not
available`` while nodes of the same job run there is tried again after a
pause (growing to 0.5 s, for up to ``zerovm_timeout``): a job with more
nodes than the cluster has workers waits for its own nodes instead of
failing, while a server full of other work still sheds the load at once.
Runs are deterministic, so running a node again elsewhere is safe. Objects
in erasure-coded or encrypted containers are fetched by the proxy and sent
along; such nodes, and nodes without data, run on any object server. The
execute path never goes through the proxy's GET/PUT controllers: their
``node_timeout`` and retries would cut off or re-run computations.

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
``text/plain``).  Outputs wait on the proxy's disk (``$TMPDIR``) once past a
little memory, and both the response body and the stored objects are
streamed from there, so a job's outputs cost the proxy a few buffers of
memory whatever their size (``zerocloud.proxy.response``; a job of more than
1000 nodes gets summary ``X-Nexe-*`` headers, below).

Every node gets CGI variables in its environment: the request's
(``zerocloud.sources``), ``SCRIPT_NAME`` and ``SCRIPT_FILENAME`` (its
``argv[0]`` and ``exec.path``) and, for a node with an object (its
``attach`` device's), ZeroCloud's ``LOCAL_OBJECT=on``, ``LOCAL_PATH_INFO``
(``/<a>/<c>/<o>``, URL-encoded), ``LOCAL_DOCUMENT_ROOT`` (``/dev/<device>``),
``LOCAL_CONTENT_LENGTH``, ``LOCAL_CONTENT_TYPE``, ``LOCAL_HTTP_ETAG``,
``LOCAL_HTTP_X_TIMESTAMP``, ``LOCAL_HTTP_CONTENT_ENCODING`` and
``LOCAL_HTTP_X_OBJECT_META_<NAME>``, from the HEAD of the object made
before the job runs: every replica of a node sees the same values (a
wildcard's node that is not replicated gets them from the object server
that runs it, from the copy it reads: no HEAD).  They win over the job's
own ``env``.

A job answered when it is done stops when its client closes the connection
(``zerocloud.hangup``): its node connections close, the object servers stop
the nodes and free their workers, nothing is stored, and the proxy logs 499.

Response
--------

Status: 200 when every node succeeded and its outputs were stored.
Otherwise the worst node's: 422 when a program failed (it exited with
another code than ``ok_exit``, or ended ``validation``, ``fault``, ``fuel``,
``quota``, ``memory``), 503 when no object server could run it
(``unavailable``) or its host failed it (``killed``: a worker died or did not
answer, host I/O failed, the native loader could not start it: the node
report's ``host_failure``, ``zvm_core.report``), 500 when a bug of ours lost
it (``killed`` otherwise), 504 when it hit the wall-clock limit (``timeout``), an
object server's 4xx when it refused the node (``error``), 409 when the
replicas of a node disagree (``mismatch``), 413 when the nodes sent each
other more than ``zerovm_maxspool`` bytes (``error``), 413 with no node
columns when the nodes' outputs passed ``zerovm_job_maxoutput`` (the job is
stopped, nothing stored: ``zerocloud.proxy.outputs.Budget``), the PUT's status
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

``ETag`` is the MD5 of the body.  A job of more than 1000 nodes (replicas
counted) gets, instead of these columns, ``X-Nexe-Nodes`` (the count, a node of
replicas once), ``X-Nexe-Failed``, ``X-Nexe-Replica-Counts`` (``2 600``: only for
replicated nodes), ``X-Nexe-Status-Counts`` (``ok 99998, fault 2``),
``X-Nexe-Retcode-Counts`` (``0 99998, 1 2``), ``X-Nexe-Cdr-Total`` (``<total
seconds>, <fuel> <syscalls> <bytes read> <bytes written>`` summed) and
``X-Nexe-Error``; its status and body are those of a small job.  Each
``X-Nexe-*`` header is at most 8192 bytes (Swift's ``max_header_size``): a
longer list ends with ``...`` and ``X-Nexe-Truncated: true`` is set.  The
full report of every node (of any job: it is written node by node) is
available as JSON: send ``X-Zerovm-Report: json`` and the body is::

    {"status": 200, "seconds": 0.42, "nodes": [
      {"name": "wc-1", "replica": 1, "status": "ok", "retcode": 0, "failed": false,
       "message": "", "error": "", "stderr": "",
       "host": "127.0.0.1:6203/d0", "policy": "Policy-0",
       "seconds": 0.05, "validation": "ok", "engine": "native", "engine_reason": "",
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
job asks for one), ``engine_reason`` why ``auto`` ran it emulated (empty when it
ran on the engine asked for, or natively).  ``outputs`` also
lists the node's ``out/<node>`` channels; ``request_bytes`` is what the
proxy sent to the object server that ran it (program, objects sent along,
other nodes' data), of which ``program_bytes`` the program (0 when it went
by digest, ``zerocloud.wire``: once per object server, not per node); for
the nodes of a ``connect`` graph, ``started`` and ``finished`` are the order
in which the proxy saw the node start (get a worker) and end, counted over
the job's events (1, 2, ...; null otherwise; a mapper sent in a batch is not
seen starting: its ``started`` is the event before its ``finished``).

Programs
--------

A ``PUT`` of an object with ``Content-Type: application/x-nexe`` or
``X-Zerovm-Validate: true`` validates the program before storing it (in a
separate process, at most ``zerovm_maxnexe`` bytes, 413 beyond; spooled on the
proxy's disk first, at most ``uploads.VALIDATE_SPOOL`` such uploads' worth at
once per process: beyond, or while its validators are all busy, an upload is
stored without a verdict; 507 when the disk is full) and stores
the verdict with the object (system metadata, so it follows the object to
every replica and survives POSTs).  The object is stored either way; the
response says ``X-Zerovm-Valid: true`` or ``false`` plus
``X-Zerovm-Validation-Error: <first violation>``; a valid program holding
instructions of extensions the sandbox's CPU lacks (built with ``-mavx2`` or
``-march=native``) also gets ``X-Zerovm-Validation-Note: <n> instructions of
extensions the sandbox's CPU lacks (AVX <n>) fault if reached ...`` (``zvm
validate``'s second line, one line of at most ``uploads.NOTE_LIMIT``
characters): it runs, and faults where it reaches one.  GET and HEAD of the
object say the same later (while the validator version that gave the verdict
is current).  A job whose program is known invalid is refused with 422 without
running anything.  Object servers validate again (cached by SHA-256 per
host) before they run a program: the stored verdict saves the round trip,
never replaces the check.  The PUT is authorised first (the auth's
``swift.authorize`` with the container's write ACL): one the caller may not
make is a 401 or 403 before a byte of it is read, spooled or validated.

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
    # most nodes one job may expand to (a wildcard over a container of
    # 100,000 objects fits)
    zerovm_maxnodes = 100000
    # most bytes the nodes of one job may send each other (connect), in
    # total; they wait on the proxy's disk ($TMPDIR) for their readers
    zerovm_maxspool = 4294967296
    # most bytes of output one job may hold on the proxy at once (they wait
    # on its disk until the job is answered); beyond: the job stops, 413
    zerovm_job_maxoutput = 4294967296
    # most bytes of programs one job may make the proxy hold on its disk (every
    # distinct program object, each copy too; at most 1 MiB of each in memory);
    # beyond: 413
    zerovm_job_maxprograms = 536870912
    # most bytes of objects sent along (not read in place) one job may make the proxy
    # hold on its disk; beyond: 413
    zerovm_job_maxinputs = 4294967296
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
    # three times as old is a lost job (its proxy stopped), unless its proxy
    # is a process of this host that still runs
    deferred_heartbeat = 10
    # deferred jobs of one account running at once in this proxy process (its
    # /open/ requests among them); beyond: 429
    zerovm_account_maxdeferred = 16
    # zapps are unpacked after authorisation, off the event loop, within:
    # members, uncompressed bytes, uncompressed / compressed (beyond 1 MiB)
    zapp_max_members = 10000
    zapp_max_size = 268435456
    zapp_max_ratio = 200

``swift_dir`` (usually from ``[DEFAULT]``) says where the rings are.
"""

from __future__ import annotations

import collections
import gc
import hashlib
import itertools
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TypeVar

from swift.common.concurrency import GreenPool, tpool
from swift.common.constraints import valid_api_version
from swift.common.http import is_success
from swift.common.registry import get_swift_info, register_swift_info
from swift.common.storage_policy import POLICIES, REPL_POLICY
from swift.common.swob import (
    HTTPException,
    Request,
    Response,
    str_to_wsgi,
    wsgi_to_str,
    wsgify,
)
from swift.common.utils import (
    get_logger,
)

from zerocloud import (
    chain,
    deferred,
    graph,
    hangup,
    peers,
    pipeline,
    placement,
    sources,
    turns,
    wire,
)
from zerocloud.answer_format import REPORT_HEADER
from zerocloud.config import Config, refused_at_start
from zerocloud.httperrors import (
    HTTPBadRequest,
    HTTPInsufficientStorage,
    HTTPNotFound,
    HTTPPreconditionFailed,
    HTTPRequestEntityTooLarge,
)
from zerocloud.job import (
    Device,
    JobError,
    JobTooLarge,
    NoData,
    Node,
    SwiftPath,
    expand,
    home_hint,
    job_paths,
    parse_job,
    stream,
)
from zerocloud.pathnames import text_names
from zerocloud.proxy import stream as streamed
from zerocloud.proxy import uploads
from zerocloud.proxy.batch import Batches, batchable
from zerocloud.proxy.caller import Caller, Held, Input, Unsent
from zerocloud.proxy.dispatch import Dispatcher, Plan, skipped
from zerocloud.proxy.outputs import Budget, OverBudget
from zerocloud.proxy.response import NodeResult, attached_object, respond, short, swift_reason
from zerocloud.sources import Launch
from zerocloud.sql import entry as sql_entry
from zerocloud.tmpdisk import DiskFull

MAX_CONCURRENCY = 64
T = TypeVar('T')
CHUNK_NODES = 1000          # nodes of a streamed job planned at a time
BATCH_CONCURRENCY = 2048    # nodes of a batched job in flight (most wait in batches)
DEFAULT_CONTENT_TYPE = 'application/octet-stream'


class ProxyExecMiddleware:
    def __init__(self, app, conf: dict) -> None:
        self.app = app
        self.logger = get_logger(conf, log_route='zerocloud-proxy')
        self.config = Config.from_conf(conf)
        self.dispatcher = Dispatcher(self.config, self.logger)
        uploads.validator_version()      # once, at the start, not in a request
        self.validation = uploads.Validation()
        weakref.finalize(self, self.validation.close)   # torn down, or at exit

    def __call__(self, env, start_response):
        if 'HTTP_X_ZEROVM_EXECUTE' in env or \
                env['PATH_INFO'].startswith((f'/{sources.OPEN}/', f'/{sources.API}/')):
            return self.execute_app(env, start_response)
        method = env['REQUEST_METHOD']
        unrun = sources.missing_execute(env, self.config.max_config)
        if unrun:
            return HTTPBadRequest(body=unrun)(env, start_response)
        if method == 'PUT':
            try:
                wanted = uploads.wants_validation(env)
            except ValueError as e:     # the header's value, not the upload below
                return HTTPBadRequest(body=f'{e}\n')(env, start_response)
            if wanted:
                return self.validated_put(env, start_response)
        if method == 'DELETE':
            cancelled = deferred.cancel(self.app, env, self.logger, self.config)
            if cancelled is not None:
                return cancelled(env, start_response)
        if method in ('GET', 'HEAD'):
            deferred.settle_lost(self.app, env, self.logger, self.config)

            def start_with_verdict(status, headers, exc_info=None):
                return start_response(status, headers + uploads.verdict_headers(headers), exc_info)
            return self.app(env, start_with_verdict)
        return self.app(env, start_response)

    @wsgify
    def validated_put(self, req: Request):
        """A program upload, authorised before it is spooled or validated: an
        unauthorised PUT costs the proxy nothing (401/403, body unread)."""
        try:
            version, account, container, obj = _native(req.split_path(4, 4, True))
        except ValueError:
            return self.app
        if valid_api_version(version):
            Caller(self.app, req, self.config).authorize(
                'PUT', f'/{version}/{account}/{container}/{obj}', 'write_acl')
        return uploads.ValidatedPut(self.app, self.config.max_nexe, self.logger,
                                    self.validation)

    # -- request -> nodes --------------------------------------------------------------

    @wsgify
    def execute_app(self, req: Request):
        """Every way to start a job (``zerocloud.sources``), deferred and chained.  A
        full disk met before the job's run (its request body, a query's partial rows
        spooled) is a 507 as one met in it is (``execute``), not a 500."""
        try:
            return self._execute_app(req)
        except DiskFull as e:
            self.logger.error('a request was refused: no room for its body or partial '
                              'results in %s', e)
            raise disk_full(e, []) from None

    def _execute_app(self, req: Request):
        try:
            version, account, container, obj = _native(req.split_path(2, 4, True))
        except ValueError:
            return self.app
        # /v1/a/ is the account and /v1/a/c/ the container, as Swift's proxy reads them
        container, obj = container or None, obj or None
        opening, api = version == sources.OPEN, version == sources.API
        if not (opening or api or valid_api_version(version)):
            return self.app
        if req.headers.get(wire.EXECUTE, '').strip().lower() == sql_entry.VERSION:
            caller = Caller(self.app, req, self.config)
            return sql_entry.respond(
                caller, lambda launch: self.execute(caller, version, account, False, launch),
                version, account, container, obj)
        asked = req.headers.get(wire.EXECUTE, '').strip().lower()
        if asked and asked not in (wire.VERSION, sources.OPEN_VERSION, sources.API_VERSION):
            raise HTTPBadRequest(body=f'{wire.EXECUTE} must be {wire.VERSION} (a job), '
                                      f'{sql_entry.VERSION}, {sources.OPEN_VERSION} or '
                                      f'{sources.API_VERSION}, not "{asked}"\n')
        opening |= asked == sources.OPEN_VERSION
        api |= asked == sources.API_VERSION
        mode = req.headers.get(REPORT_HEADER, '').lower()
        if mode not in ('', 'json'):
            raise HTTPBadRequest(body=f'{REPORT_HEADER} must be "json"\n')
        when = deferred.mode(req)
        caller = Caller(self.app, req, self.config, opening)
        version = 'v1' if version in (sources.OPEN, sources.API) else version
        if not opening:     # before any work the request pays for: its body, a zapp
            caller.authorize('POST', f'/{version}/{account}', None)
        start = sources.api_launch if api else \
            sources.open_launch if opening else sources.post_launch
        launch = start(caller, account, container, obj)

        def jobs(progress: deferred.Progress) -> Response:
            def job(launch: Launch) -> Response:
                return self.execute(caller, version, account, mode == 'json', launch, progress)
            return chain.run(job, launch, account, self.config.chain_timeout,
                             self.config.max_config)

        def run() -> Response:
            return deferred.run(
                self.app, req, when, account, container, self.config.interactive_timeout,
                jobs, self.logger, self.config.deferred_heartbeat, self.config.account_deferred)
        if when != 'never':             # a deferred job goes on without its client
            return run()
        with hangup.stop_on_hangup(req.environ, 'the job'):
            return run()

    def _nodes(self, caller: Caller, account: str, launch: Launch
               ) -> tuple[bool, Iterator[Node]]:
        """(connected?, the job's nodes): a job whose groups are connected is expanded
        whole (its graph needs every node), any other as its listings are read
        (``zerocloud.job.stream``).  A bad job is a 400 (413) when it is found."""
        try:
            groups = parse_job(launch.job, account, system_images=self.config.system_images,
                               max_size=self.config.max_config)
            launch.adapt(groups)
            graph.check_groups(groups)
            for group in groups:        # before any listing: swift://fruit/*.csv is a 403
                for dev in group.devices:       # listing account "fruit" otherwise
                    if dev.readable and dev.path is not None and dev.path.obj is None:
                        fix = home_hint(dev.path, account) or \
                            f'; name objects: {dev.path}/* runs a node on each'
                        raise JobError(f'reading a container ({dev.path}, device {dev.name} '
                                       f'of {group.name}) is not supported{fix}')
        except JobTooLarge as e:
            raise HTTPRequestEntityTooLarge(body=f'{e}\n') from None
        except JobError as e:
            where = f' (in {launch.source})' if launch.source else ''
            raise HTTPBadRequest(body=f'{e}{where}\n') from None
        def list_objects(a: str, c: str, prefix: str) -> Iterator[str]:
            return caller.listing(f'/v1/{a}/{c}', prefix)

        def list_containers(a: str) -> Iterator[str]:
            return caller.listing(f'/v1/{a}')

        def count_objects(a: str, c: str) -> int:
            return int(caller.container_info(f'/v1/{a}/{c}').get('object_count') or 0)
        if any(g.connect for g in groups):
            return True, self._checked(lambda: expand(
                groups, list_objects, list_containers, max_nodes=self.config.max_nodes,
                check_peers=peers.check_peers, step=turns.take))
        return False, self._checked(lambda: stream(
            groups, list_objects, list_containers, max_nodes=self.config.max_nodes,
            count_objects=count_objects), check_channels=True)

    def _checked(self, make: Callable[[], Iterable[Node]], check_channels: bool = False
                 ) -> Iterator[Node]:
        """The nodes ``make()`` yields, each one's program location checked, with a bad
        job's error as its HTTP response.  ``check_channels``: the channels of the first
        node of each group (its nodes have the same devices, and unwired no peers);
        ``expand`` checks a connected job's itself, peers counted, before wiring them."""
        checked: set[str] = set()
        try:
            for node in make():
                if check_channels and node.group not in checked:
                    checked.add(node.group)
                    peers.check_peers(node, 0, 0)
                sources.program_location(node)
                turns.take()
                yield node
        except JobTooLarge as e:
            raise HTTPRequestEntityTooLarge(body=f'{e}\n') from None
        except NoData as e:
            raise HTTPNotFound(body=f'{e}\n') from None
        except JobError as e:
            raise HTTPBadRequest(body=f'{e}\n') from None

    def _in_place(self, caller: Caller, path: SwiftPath,
                  reader: str) -> tuple[int | None, dict[str, str]]:
        """The policy of ``path`` if a node can run where it is stored, reading it
        from the disk (replicated and not encrypted), else None (it must travel);
        and the ``LOCAL_*`` variables of the object."""
        resp = caller.read('HEAD', path, reader)
        info = caller.container_info(f'/v1/{path.account}/{path.container}')
        policy = POLICIES.get_by_index(info.get('storage_policy'))
        encrypted = any(k.lower().startswith('x-object-sysmeta-crypto-') for k in resp.headers)
        local_env = wire.local_env(path.path, ((k, wsgi_to_str(v))
                                               for k, v in resp.headers.items()))
        if policy is None or policy.policy_type != REPL_POLICY or encrypted:
            return None, local_env
        return int(policy), local_env

    def _listed(self, caller: Caller, nodes: list[Node],
                containers: dict[tuple[str, str], int | None]) -> dict[SwiftPath, int]:
        """The policies of the objects that wildcard nodes run next to, known without
        a HEAD of each: the container's listing named them, reading is authorised
        once per container (Swift's ACLs are the container's, the same for each
        of its objects), the container's policy is replicated and the proxy does
        not encrypt.  The object servers add their ``LOCAL_*`` variables; a node
        whose object went since the listing ends ``unavailable`` (503).  Replicated
        nodes keep the HEAD: their replicas must see the same values.  ``containers``
        keeps each container's policy for the job's next nodes."""
        if _encrypting():
            return {}
        listed: dict[SwiftPath, int] = {}
        for node in nodes:
            if not (node.listed and node.replicate == 1 and attached_object(node)):
                continue
            path = node.attach.path
            where = (path.account, path.container)
            if where not in containers:
                caller.authorize('GET', '/v1' + path.path, 'read_acl')
                info = caller.container_info(f'/v1/{path.account}/{path.container}')
                policy = POLICIES.get_by_index(info.get('storage_policy'))
                containers[where] = (int(policy) if policy is not None
                                     and policy.policy_type == REPL_POLICY else None)
            if containers[where] is not None:
                listed[path] = containers[where]
        return listed

    def _plan(self, node: Node, account: str, job_id: str, program: Input | None,
              local: Device | None, policies: dict[SwiftPath, int | None],
              inputs: dict[SwiftPath, Input], rings: dict[int, object]) -> Plan:
        """``rings``: the object rings by policy (looked up once per chunk of nodes)."""
        if local is not None:
            p = local.path
            policy = policies[p]
            ring = rings.get(policy) or rings.setdefault(
                policy, placement.object_ring(self.config.swift_dir, policy))
            part, servers = placement.nodes_for_object(ring, p.account, p.container, p.obj)
            path = p.path
        else:
            policy = POLICIES.default.idx
            ring = placement.object_ring(self.config.swift_dir, policy)
            # nodes that share a location string share the order: the same server first
            part, servers = placement.any_nodes(ring, job_id + (node.location or node.name))
            path = f'/{account}/.zerocloud/{node.name}'
        return Plan(node, policy, part, path, servers, local.name if local else None, program,
                    {dev.name: inputs[dev.path] for dev in node.devices
                     if dev.readable and dev.path is not None and dev is not local},
                    account=account)

    def _prepare(self, caller: Caller, nodes: list[Node], account: str, job_id: str,
                 inputs: dict[SwiftPath, Input], launch: Launch, known: _Known,
                 touch: Callable[[], None]) -> list[Plan]:
        """Check every object the nodes touch, as the caller; fetch what travels (once
        per job: ``inputs`` and ``known`` serve its next nodes), ``touch()`` after each
        input fetched (a deferred job's fetch is not its hanging)."""
        for path in sorted(job_paths(nodes)[1], key=str):
            caller.authorize('PUT', '/v1' + path.path, 'write_acl')
        programs = sources.fetch_programs(caller, nodes, launch, known.held, known.programs)
        listed = self._listed(caller, nodes, known.containers)
        attached = sorted({n.attach.path for n in nodes if attached_object(n)} - set(listed),
                          key=str)
        readers = _readers(nodes)
        found = dict(zip(attached, _imap(lambda p: self._in_place(caller, p, readers[p]),
                                         attached), strict=True))
        policies = {path: policy for path, (policy, _) in found.items()}
        policies.update(listed)
        local = {n.name: n.attach if attached_object(n) and policies[n.attach.path] is not None
                 else None for n in nodes}
        remote = {dev.path for n in nodes for dev in n.devices
                  if dev.readable and dev.path is not None and dev is not local[n.name]}
        for path in sorted(remote - inputs.keys(), key=str):
            inputs[path] = caller.fetch_input(path, known.held, readers[path])
            touch()
        rings: dict[int, object] = {}
        plans = []
        for n in nodes:
            turns.take()                        # a chunk is a thousand nodes
            plans.append(self._plan(n, account, job_id, programs[n.name], local[n.name],
                                    policies, inputs, rings))
        digests = known.digests                  # one program object per path and job
        for plan in plans:
            turns.take()
            node = plan.node
            plan.budget = known.budget
            plan.env = {'SCRIPT_NAME': node.argv[0], 'SCRIPT_FILENAME': node.exec.path}
            if attached_object(node):
                plan.env.update(found[node.attach.path][1] if node.attach.path in found
                                else {}, LOCAL_DOCUMENT_ROOT=f'/dev/{node.attach.name}')
                plan.local_env = node.attach.path in listed
            plan.inputs.update(launch.device_inputs(node))
            if plan.program is not None:
                plan.digest = digests.get(id(plan.program)) or digests.setdefault(
                    id(plan.program), input_digest(plan.program))
            image = plan.inputs.get(wire.IMAGE_DEVICE)
            if image is not None:               # kept by digest too (zerocloud.wire)
                plan.image_digest = digests.get(id(image)) or digests.setdefault(
                    id(image), input_digest(image))
        return plans

    # -- running nodes -----------------------------------------------------------------

    def _replica_servers(self, plan: Plan) -> tuple[int, str]:
        """How many different servers could run a replica of the node, and which."""
        ring = placement.object_ring(self.config.swift_dir, plan.policy)
        if plan.local:
            path = next(d.path for d in plan.node.devices if d.name == plan.local)
            return int(ring.replica_count), f'replicas of {path}'
        return len({(d['ip'], d['port']) for d in ring.devs if d}), 'object servers'

    # -- the whole job -----------------------------------------------------------------

    def execute(self, caller: Caller, version: str, account: str, report_json: bool,
                launch: Launch, progress: deferred.Progress | None = None) -> Response:
        """Run one job as the caller; ``progress.launched()`` once it passed its checks
        (a deferred job then answers 202), then counting its nodes as they end.

        A job whose groups are connected runs as a graph (``zerocloud.graph``), every
        node planned first; any other streams (``zerocloud.proxy.stream``): its
        first :data:`CHUNK_NODES` nodes are planned and checked before it launches,
        the next ones as the listing is read, while the first run."""
        started = time.monotonic()
        req = caller.req
        req.environ.setdefault('swift.infocache', {})   # shared by every sub-request
        caller.authorize('POST', f'/{version}/{account}', None)
        connected, nodes = self._nodes(caller, account, launch)
        inputs: dict[SwiftPath, Input] = {}
        results: list[NodeResult] = []
        stored: list[SwiftPath] = []        # by a large job, before a DiskFull
        collector = streamed.Collector(records=report_json)
        known = _Known(Budget(self.config.job_max_output), Held(self.config.job_max_programs,
                                                                   self.config.job_max_inputs))
        try:
            job_id = uuid.uuid4().hex
            watched = _Watched(known.budget, progress)
            first = list(nodes) if connected else list(itertools.islice(nodes, CHUNK_NODES))
            plans = self._prepare(caller, first, account, job_id, inputs, launch, known,
                                  watched.touch)
            self._check_replicas(plans)
            if progress is not None:
                progress.launched(first)

            load: collections.Counter = collections.Counter()
            trans_id = req.environ.get('swift.trans_id', '')
            alone = graph.Places(MAX_CONCURRENCY)     # shared: a batch's node sent alone too
            batches = Batches(self.dispatcher, trans_id, job_id, load, alone)
            batched = sum(map(batchable, plans)) > 1
            concurrency = BATCH_CONCURRENCY if batched else MAX_CONCURRENCY

            def run_replica(plan: Plan, replica: int, servers: Iterable[dict],
                            links: graph.NodeLinks | None) -> NodeResult:
                plan = replace(plan, servers=servers, replica=replica)
                if batched and batchable(plan):
                    plan.links_after = True     # a mapper's links: outputs, once it ended
                    return batches.run(plan)
                return self.dispatcher.run_node(trans_id, plan, job_id, load, links)

            def planned() -> Iterator[Plan]:
                """The plans, then those of the next nodes a chunk at a time, each let go
                once it is sent."""
                chunk = plans
                while chunk:
                    chunk.reverse()
                    while chunk:
                        yield chunk.pop()
                    more = list(itertools.islice(nodes, CHUNK_NODES))
                    chunk = self._prepare(caller, more, account, job_id, inputs, launch,
                                          known, watched.touch)
                    self._check_replicas(chunk)
                    if progress is not None:
                        progress.more(more)

            try:
                if connected:
                    results = graph.run(
                        plans, run_replica, skipped, max_spool=self.config.max_spool,
                        max_link=self.config.max_output, pipeline=self.config.pipeline,
                        concurrency=concurrency, progress=watched,
                        batched=batchable if batched else None, alone=alone)
                else:
                    streamed.run(planned(), run_replica, collector.add,
                                 concurrency=concurrency, progress=watched,
                                 submit=batches.submit if batched else None,
                                 alone=alone)
                    results, collector.held = collector.in_order(), []
            finally:
                batches.close()
            spool = collector.spool
            if spool is not None:
                self._store_spooled(caller, spool, stored, watched.touch)
                # the response's body is read from the spool and closes it
                return streamed.respond_spooled(spool, time.monotonic() - started, report_json)
            self._store_all(caller, results, any(r.failed for r in results), watched.touch)
            # the response's body is read from the results' outputs and closes them
            return respond(results, time.monotonic() - started, report_json)
        except BaseException as e:
            for r in results:
                r.close()
            collector.close()
            if isinstance(e, OverBudget):
                raise over_budget(str(e), self.config.job_max_output) from None
            if isinstance(e, DiskFull):
                self.logger.error('a job was stopped: no room for its outputs, links, '
                                  'programs or inputs in %s', e)
                raise disk_full(e, stored) from None
            raise
        finally:
            for i in (*inputs.values(), *known.programs.values()):
                i.file.close()

    def _check_replicas(self, plans: list[Plan]) -> None:
        try:
            graph.check_replicas(plans, self._replica_servers)
        except JobError as e:
            raise HTTPBadRequest(body=f'{e}\n') from None

    def _store_all(self, caller: Caller, results: list[NodeResult], failed: bool,
                   touch: Callable[[], None]) -> None:
        """Store the outputs with a path: all of them when the job succeeded, else
        only those of devices with ``"store": "always"``; ``touch()`` after each."""
        def store(job: tuple[NodeResult, Device]) -> None:
            self._store(caller, *job)
            touch()
        _each(store, list(_to_store(results, failed)))

    def _store_spooled(self, caller: Caller, spool: streamed.JobSpool,
                       stored: list[SwiftPath], touch: Callable[[], None]) -> None:
        """``_store_all`` for a large job: node by node, from its spool; each output
        stored is added to ``stored`` (its spool may yet find the disk full)."""
        failed = spool.tally.failed > 0

        def store(node_id: int) -> None:
            old, new = spool.load(node_id), spool.load(node_id)
            todo = list(_to_store(new, failed))
            for res, dev in todo:
                self._store(caller, res, dev)
                if dev.name in res.stored:
                    stored.append(dev.path)
                touch()
            if todo:
                spool.replace(node_id, old, new)
        _each(store, sorted(set(spool.stores)))

    def _store(self, caller: Caller, res: NodeResult, dev: Device) -> None:
        size = res.size(dev.name)
        headers = {'Content-Type': dev.content_type or DEFAULT_CONTENT_TYPE,
                   'Content-Length': str(size)}
        etag = res.report.etags.get('/dev/' + dev.name)
        if etag:
            headers['ETag'] = etag
        headers.update({f'X-Object-Meta-{k}': str_to_wsgi(v) for k, v in dev.meta.items()})
        resp = caller.put(dev.path, res.outputs[dev.name], headers)
        if is_success(resp.status_int):
            res.stored |= {dev.name}
            return
        reason = swift_reason(resp)
        unsent = (f' to an earlier output into swift://{dev.path.account}/'
                  f'{dev.path.container} (this one was not sent)'
                  if isinstance(resp, Unsent) else '')
        res.error = short(f'could not store {dev.path}: Swift answered {resp.status}{unsent}'
                          + (f': {reason}' if reason else ''))
        res.http_status = max(res.http_status or 0,
                              resp.status_int if resp.status_int >= 400 else 503)

def _each(work: Callable[[T], None], items: list[T]) -> None:
    """``work`` on every item, ``MAX_CONCURRENCY`` at a time.  The first to fail starts
    no other and is raised once those running have ended: what they stored is known
    (``disk_full``), and nothing is stored after the job was answered."""
    failed: list[Exception] = []

    def one(item: T) -> None:
        if failed:
            return
        try:
            work(item)
        except Exception as e:
            failed.append(e)
    pool = GreenPool(max(1, min(len(items), MAX_CONCURRENCY)))
    for item in items:
        pool.spawn_n(one, item)
    pool.waitall()
    if failed:
        raise failed[0]


def _native(parts: list[str | None]) -> list[str | None]:
    """A request path's parts as names (``déjà``), not WSGI strings (its UTF-8 bytes as
    Latin-1): quoted again for a subrequest, a WSGI string named another container;
    Swift's 412 for a path that is not UTF-8 (quoting it raised: a 500)."""
    names = text_names(parts)
    if names is None:
        raise HTTPPreconditionFailed(body='Invalid UTF8 or contains NULL\n')
    return names


def _to_store(results: Iterable[NodeResult], failed: bool) -> Iterator[tuple[NodeResult, Device]]:
    """The outputs to store: with a path, at least ``min_size`` bytes, and when the job
    ``failed`` only those of devices with ``"store": "always"``."""
    return ((r, dev) for r in results for dev in r.path_outputs()
            if r.short_of(dev) is None and (not failed or dev.store == 'always'))


class _Known:
    """What the job fetched or found for its first nodes and serves the next ones: its
    programs (``sources.fetch_programs``), its containers' policies
    (``ProxyExecMiddleware._listed``), the digests of what it sends by digest, the
    budget its outputs share (``outputs.Budget``) and what it holds
    (``caller.Held``, ``zerovm_job_maxprograms``)."""

    def __init__(self, budget: Budget, held: Held) -> None:
        self.held = held
        self.programs: dict = {}
        self.containers: dict[tuple[str, str], int | None] = {}
        self.digests: dict[int, str] = {}
        self.budget = budget


class _Watched:
    """The progress hook of a running job (``graph.run``, ``stream.run``): it stops the
    job once its outputs passed their budget (:class:`OverBudget`, as a node ends),
    and passes on to the deferred job's ``Progress``, if any."""

    def __init__(self, budget: Budget, progress: deferred.Progress | None) -> None:
        self.budget, self.progress = budget, progress

    def started(self) -> None:
        if self.progress is not None:
            self.progress.started()

    def touch(self) -> None:
        """A step of the job that ends no node (an input fetched, an output stored)."""
        if self.progress is not None:
            self.progress.touch()

    def finished(self, results: list[NodeResult]) -> None:
        if self.budget.over:
            for r in results:
                r.close()
            self.budget.check()
        if self.progress is not None:
            self.progress.finished(results)


def over_budget(output: str, limit: int) -> HTTPException:
    """The answer of a job stopped by its budget (``zerovm_job_maxoutput``): which limit,
    where it was passed, and who can raise it (the operator)."""
    text = (f'this job was stopped: its outputs passed zerovm_job_maxoutput ({limit} bytes, '
            f'at {output}), the most one job may hold on the proxy at once, where they wait '
            f'until it is answered; nothing of it was stored: write less, run it over fewer '
            f'objects at a time, or ask the operator to raise zerovm_job_maxoutput')
    return HTTPRequestEntityTooLarge(body=f'{text}\n', headers={'X-Nexe-Error': text})


def disk_full(e: DiskFull, stored: list[SwiftPath]) -> HTTPException:
    """The answer of a job stopped by the proxy's full disk: whose room it is, and
    which of its outputs (``stored``) were stored before."""
    some = ', '.join(map(str, stored[:3])) + (', ...' if len(stored) > 3 else '')
    kept = (f'{len(stored)} of its outputs {"was" if len(stored) == 1 else "were"} stored '
            f'({some}), no other' if stored else 'nothing of it was stored')
    return HTTPInsufficientStorage(
        body=f'this job was stopped: the proxy has no room left for the outputs, links '
             f'and inputs of jobs ({e}); {kept}: run it again later, or ask the operator '
             f'to give the proxy\'s $TMPDIR more room\n')


def input_digest(data: Input) -> str:
    """SHA-256 (hex) of a program, object or payload sent along, in a thread, off the
    hub (a program may have hundreds of MB; before any node reads it: the file's
    position is free)."""
    def digest() -> str:
        sha = hashlib.sha256()
        data.file.seek(0)
        while chunk := data.file.read(wire.CHUNK):
            sha.update(chunk)
        return sha.hexdigest()
    return tpool.execute(digest)


def _encrypting() -> bool:
    """Does this proxy encrypt objects (Swift's ``encryption`` middleware)?  Their
    data files are then ciphertext: nodes get them through the proxy, decrypted."""
    admin = get_swift_info(admin=True).get('admin') or {}
    return bool((admin.get('encryption') or {}).get('enabled'))


def _readers(nodes: list[Node]) -> dict[SwiftPath, str]:
    """Who reads each object the nodes read (the first node's device), as a 404 of a
    missing one says it: ``device stdin of wc``."""
    readers: dict[SwiftPath, str] = {}
    for node in nodes:
        for dev in node.devices:
            if dev.readable and dev.path is not None:
                readers.setdefault(dev.path, f'device {dev.name} of {node.name}')
    return readers


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


def filter_factory(global_conf: dict, **local_conf):
    conf = dict(global_conf, **local_conf)
    with refused_at_start():
        pipeline.check_server(conf, 'zerocloud_proxy')
        pipeline.check(conf)

    def zerocloud_proxy_filter(app):
        with refused_at_start():        # the options, parsed once, by the filter
            filtered = ProxyExecMiddleware(app, conf)
        config = filtered.config
        register_swift_info('zerocloud', max_job_size=config.max_config,
                            timeout=config.timeout,
                            validator_version=uploads.validator_version(),
                            max_nodes=config.max_nodes, max_nexe=config.max_nexe,
                            system_images=config.system_images)
        settle_heap()
        return filtered
    return zerocloud_proxy_filter


def settle_heap() -> None:
    """Leave what the proxy loaded (Swift, eventlet, this filter: most of its tracked
    objects) out of the garbage collector's full passes: a full pass during a large
    job walked them all, the longest stretch without a turn of the hub (bench/
    proxy_scale.py --gc, doc/operator-guide.md).  Collected first: no garbage is
    frozen.  Called once the pipeline's app and this filter are built."""
    gc.collect()
    gc.freeze()

"""ZeroCloud object-server filter: run a job node next to its data.

The proxy filter (``zerocloud.proxy``) sends each node of a job to an object
server that holds the node's data object, as a ``POST`` with
``X-Zerovm-Execute`` to the object's backend path (``zerocloud.wire``
describes the request).  This filter

1. admits the node or answers ``503 Slot not available`` at once when
   ``zerovm_maxpool`` nodes run and ``zerovm_maxqueue`` wait, or when the
   job's account has its share here (``zerocloud.object.admission``; the
   proxy then tries another replica);
2. with ``X-Zerovm-Access: GET``, opens the local object through Swift's
   DiskFile: a missing, deleted, expired or quarantined object is a ``404``
   and an unmounted disk a ``507`` (the proxy tries the next server); a
   large-object manifest, a symlink or an erasure-coded fragment is a
   ``409`` (its data is not here);
3. only then reads the request body (the proxy sends it after ``100
   Continue``): the node spec, the program and remote inputs;
4. runs the node in a warm worker process of ``zvm_core.pool`` (never in the
   eventlet hub, so the server keeps answering), with the object's open
   data file as the channel: nothing is copied;
5. answers ``200`` with the report and the written channels (a tar stream),
   and ``X-Nexe-Status`` / ``X-Nexe-Retcode`` headers.  The report carries
   the last 64 KiB the node wrote to ``/dev/stderr`` (``stderr``): from its
   output file when the job declared the device, else from a pipe this
   filter reads while the node runs (no quota, no disk: the program never
   fails for writing there).

When the proxy closes the connection before the answer (the job's client
went away, ``zerocloud.hangup``), the node is stopped: its worker process is
killed and replaced (``zvm_core.pool``), and the request is logged as 499.

A node of a ``connect`` graph (``"stream": true`` in its spec) moves its
data while it runs, through the proxy (``zerocloud.graph`` says why never a
direct link between servers): the answer, ``200`` with ``X-Zerovm-Stream:
1`` and no status headers, comes once a worker has taken the node, and its
body carries what the node writes to ``/dev/out/<node>`` as it writes it,
then the report (the node's status) and the other outputs;
``/dev/in/<node>`` channels fill while the node runs, from the rest of the
request (chunked), and a read there waits for all it asked for
(``_Streamed`` has the details).

Programs are kept by SHA-256 in a per-process directory under the system's
temporary directory (``$TMPDIR``; the 32 most recently used), so a program
arrives at the same path each time and the workers reuse its template
machine (validated and translated once).  A request may name its program by
digest (``X-Zerovm-Program``) instead of sending it: one not kept here is a
``412`` before the body travels, and the proxy sends the node again with
the program (``zerocloud.wire``).

System images (``zerovm_sysimage_devices``, ``zvm_core.sysimages``) are tars
on this server's disk known by name, such as the python3 and lua images of
``zvm-interpreters build``.  A node's device of that name is the tar,
mounted read-only at ``/`` (the job's own ``image`` is mounted after them, so
its files win); a program ``file://<name>:<path>`` is that file of the image
(the proxy sends no program for it), taken out once into a content-addressed
cache.  A name the proxy knows but this server does not is a ``400``.

Every other request passes through untouched.  Object servers have no
authentication: the proxy filter authorises every object a job reads or
writes before it sends anything here, so object-server ports must stay on
the cluster network, as for Swift itself.

Configuration (``object-server.conf``)::

    [pipeline:main]
    pipeline = healthcheck recon zerocloud object-server

    [filter:zerocloud]
    use = egg:zerocloud#zerocloud_object
    # wall-clock limit of one node, seconds (the proxy may ask for less)
    zerovm_timeout = 60
    # nodes running at once / waiting for a worker; beyond that: 503
    zerovm_maxpool = <number of CPUs>
    zerovm_maxqueue = 16
    # one account's share of them (default: every worker, half the queue)
    zerovm_account_maxpool = <zerovm_maxpool>
    zerovm_account_maxqueue = 8
    # nodes of one job running or waiting here (default: no limit but the above)
    zerovm_job_maxslots = <zerovm_maxpool + zerovm_maxqueue>
    # seconds a node may wait on a link (/dev/in/<node>) with no new data
    zerovm_link_wait = 30
    # guest memory (bytes) and fuel (bytes of guest code executed) of one
    # node: the most a node gets, whatever the proxy asks
    zerovm_maxnexemem = 268435456
    zerovm_fuel = 200000000000
    # largest request body (program + remote inputs) and local object read,
    # and largest written channel, bytes
    zerovm_maxinput = 1073741824
    zerovm_maxoutput = 1073741824
    # system images: name path name path ... (the proxy lists the same names)
    zerovm_sysimage_devices = python3 /var/lib/zerocloud/python3.tar lua /var/lib/zerocloud/lua.tar
    # programs of system images each worker runs once when it starts
    # (image:member), so that the first job using them finds them warm
    zerovm_prewarm = python3:python3 lua:lua
    # engine: auto (native where this host can, emulated when a fuel limit is
    # set; the default, or $ZVM_ENGINE of the server), native (a node may still
    # ask for "emulated") or emulated (nodes asking for "native" get a 400)
    zerovm_engine = auto

``devices`` and ``mount_check`` (usually from ``[DEFAULT]``) say where the
disks are and whether they must be mount points (as for the object server);
temporary files of a node live in ``<devices>/<device>/tmp``
(``zerocloud.object.scratch``: those of a killed server go when it starts
again).  With several
object-server ``workers``, each process has its own pool, started with its
first request; with ``workers = 0`` (one process) the pool starts with the
server, which answers once its workers are warm.  A warm-up
(``zerovm_prewarm``) runs the program with no arguments and empty stdin,
with its image mounted: it validates the program, translates its start-up
code and indexes the image, so the first job that uses it does not pay for
that (about 0.3 s for python3).

A job's own image (its ``image`` device) is kept by SHA-256 like programs
(the 8 most recently used), so the same image arrives as the same file:
workers index it once, and the start-up snapshots of interpreters
(``zvm_core.engines.emulated.snapshot``) stay valid from one job to the next.  Each execute
request is logged (``execute <path> <status> <node status> <seconds>
<transaction id>``, with ``(streamed)`` for a graph node, logged when it
ends): the object server's own access log does not see them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable

from swift.common.concurrency import Event, Semaphore, hubs, spawn, tpool
from swift.common.constraints import check_drive
from swift.common.exceptions import (
    DiskFileCollision,
    DiskFileDeviceUnavailable,
    DiskFileNotExist,
    DiskFileQuarantined,
)
from swift.common.request_helpers import get_name_and_placement
from swift.common.storage_policy import REPL_POLICY
from swift.common.swob import HTTPException, Request, Response
from swift.common.utils import (
    ClosingIterator,
    get_logger,
)

from zerocloud import hangup, peers, pipeline, wire
from zerocloud.config import NOT_PLAIN, Config, refused_at_start
from zerocloud.httperrors import (
    HTTPBadRequest,
    HTTPClientDisconnect,
    HTTPConflict,
    HTTPInsufficientStorage,
    HTTPNotFound,
    HTTPPreconditionFailed,
    HTTPRequestEntityTooLarge,
    HTTPServiceUnavailable,
)
from zerocloud.object import hubwait, scratch
from zerocloud.object.admission import RETRY_AFTER, Admission, charged_to, pool_refused
from zerocloud.object.batch import BatchRun, Spares, read_spec
from zerocloud.object.cache import ContentCache
from zerocloud.object.plan import FILE, FIXED, LINK, LOCAL, OUT, Step
from zerocloud.object.results import STDERR_TAIL, node_report, stderr_of, with_local_env
from zvm_core import engines
from zvm_core.channels import READ, WRITE, LinkWaker, LinkWriter, Quota
from zvm_core.limits import Limits
from zvm_core.pool import ChannelSpec, Pool, PoolBusy, WarmUp, WorkerFailed
from zvm_core.sysimages import SysImageError, SysImageUnreadable, SystemImages

PROGRAM_CACHE = 32
IMAGE_CACHE = 8
WARM_TIMEOUT = 120
IMAGE_MEMBER = 'dev/image'
TAIL_PAUSE, TAIL_PAUSE_MAX = 0.002, 0.02    # seconds between looks at growing outputs
# Metadata of encrypted objects: their data file is ciphertext (the proxy decrypts).
CRYPTO = ('X-Object-Sysmeta-Crypto-Body-Meta',)
_NOT_LOCAL = (*NOT_PLAIN, *CRYPTO)     # metadata of objects a node cannot read in place
_NOT_LOCAL_KEYS = frozenset(_NOT_LOCAL)


class _Removal:
    """Removes a node's directory when its response is closed (``ClosingIterator``
    calls ``close`` of its closeables, nothing else)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


_POOLS: dict[tuple, Pool] = {}
_POOLS_LOCK = Semaphore()


def _process_pool(size: int, queue: int, warm: tuple[WarmUp, ...],
                  in_request: bool = True, account_size: int | None = None) -> Pool:
    """One pool per process and settings: Swift loads the pipeline twice (a check,
    then the server), and both filters must share the workers.  In a request the
    workers are started in a thread (``tpool``), off the hub; so are replacements.
    Before the server runs (``in_request`` false) tpool must not start yet: its
    threads would not survive the server's start."""
    key = (os.getpid(), size, queue, warm, account_size)
    with _POOLS_LOCK:
        if key not in _POOLS or _POOLS[key].closed:
            start = tpool.execute if in_request else (lambda fn, *a, **kw: fn(*a, **kw))
            _POOLS[key] = start(Pool, size, queue, warm=warm, offload=tpool.execute,
                                account_size=account_size)
    return _POOLS[key]


def _warm_ups(sysimages: SystemImages, spec: str, memory: int):
    """The warm-ups ``zerovm_prewarm`` names (``image:member ...``)."""
    for item in spec.replace(',', ' ').split():
        image, sep, member = item.partition(':')
        if not sep or not member:
            raise SysImageError(f'{item!r}: expected image:member')
        if image not in sysimages.names:
            raise ValueError(f'zerovm_prewarm: {item!r} warms up system image {image!r}, '
                             'which zerovm_sysimage_devices does not list (it lists: '
                             f'{", ".join(sysimages.names) or "none"}): add it there or drop '
                             'it from zerovm_prewarm')
        try:
            program = sysimages.program(image, member)
        except SysImageUnreadable as e:
            raise ValueError(f'zerovm_prewarm: {item!r}: {e}: build it (zvm-sysimages build '
                             f'--dir {sysimages.images[image].parent}) or drop it from '
                             f'zerovm_prewarm') from None
        yield WarmUp(str(program), (member,), (str(sysimages.tar(image)),), memory)


def _check_engine(engine: str | None) -> None:
    """ValueError (the server does not start) for ``zerovm_engine = native`` (or, unset,
    ``ZVM_ENGINE=native``) on a host that cannot run it (every node here would be
    refused with the reason), for a ``ZVM_ENGINE`` that names no engine (every node's
    error), or for a ``ZVM_NATIVE*`` switch that is neither on nor off."""
    engines.check_environment()
    setting = 'zerovm_engine = ' if engine else 'ZVM_ENGINE='
    try:
        chosen = engines.requested(engine)
    except engines.EngineError as e:
        raise ValueError(f'ZVM_ENGINE in the object server\'s environment: {e}; or set '
                         f'zerovm_engine in [filter:zerocloud]') from None
    reason = engines.native_unavailable_apart() if chosen == 'native' else None
    if reason:
        raise ValueError(f'{setting}native: this host cannot run the native engine: '
                         f'{reason}; set zerovm_engine = auto (native where the host can, '
                         f'else emulated) or emulated, or fix the host (`zvm info`; '
                         f'doc/operator-guide.md, "Engines and kernel requirements")')


_UNBUILT_SAID: set[tuple[str, str]] = set()     # (image, its path) warned of by this process


def _warn_unbuilt(sysimages: SystemImages, logger) -> None:
    """A warning at start for each configured system image that is not here (not built
    yet, a wrong path): its nodes get 503 on this server and run on another replica.
    Once a process: Swift loads the pipeline to check it, then again to serve (in the
    same process, or in workers forked from it), and each load warned."""
    for name in sysimages.names:
        try:
            sysimages.tar(name)
        except SysImageUnreadable as e:
            said = (name, str(sysimages.images[name]))
            if said in _UNBUILT_SAID:
                continue
            _UNBUILT_SAID.add(said)
            logger.warning('zerovm_sysimage_devices: %s: nodes using it get 503 here until '
                           'it is built (zvm-sysimages build --dir %s) or the path fixed',
                           e, sysimages.images[name].parent)


class ObjectExecMiddleware:
    def __init__(self, app, conf: dict) -> None:
        self.app = app
        self.logger = get_logger(conf, log_route='zerocloud-object')
        self.config = Config.from_conf(conf)
        _check_engine(self.config.engine)
        self.programs = ContentCache(PROGRAM_CACHE)
        self.images = ContentCache(IMAGE_CACHE)
        try:
            self.sysimages = SystemImages(self.config.sysimage_devices)
            self.warm = tuple(_warm_ups(self.sysimages, self.config.prewarm,
                                        self.config.memory))
        except SysImageError as e:
            raise ValueError(f'zerovm_sysimage_devices / zerovm_prewarm: {e}') from None
        _warn_unbuilt(self.sysimages, self.logger)
        self.admission = Admission(self.config)
        scratch.remove_node_orphans(self.config.devices)    # of a server that was killed
        self.extracting = Semaphore()       # a system image's program is read off the hub
        self._spares: dict[str, Spares] = {}    # a disk's tmp -> batches' output files
        self._pool: Pool | None = None
        if self.config.one_process:     # no fork will follow: start
            self._pool = _process_pool(self.config.pool_size, self.config.queue, self.warm,
                                       in_request=False, account_size=self.config.account_pool)
            try:                                            # warm (the server answers after)
                self._pool.wait_warm(WARM_TIMEOUT)
            except TimeoutError:
                self.logger.warning('sandbox workers still warming up after %d s', WARM_TIMEOUT)
            except WorkerFailed as e:       # the nodes will fail too (503): say it at start
                self.logger.error('zerocloud: %s', e)

    @property
    def pool(self) -> Pool:
        """This process's workers: started with the first node (after the server's
        fork) or, in a one-process server, with the server."""
        if self._pool is None:
            self._pool = _process_pool(self.config.pool_size, self.config.queue, self.warm,
                                       account_size=self.config.account_pool)
        return self._pool

    def spare_files(self, disk_tmp: str) -> Spares:
        """This process's output files for batches on the disk of ``disk_tmp``."""
        if disk_tmp not in self._spares:
            self._spares[disk_tmp] = Spares(disk_tmp)
        return self._spares[disk_tmp]

    @property
    def object_server(self):
        """The object server app at the end of the pipeline (it makes DiskFiles)."""
        return getattr(self, '_pipeline_final_app', None) or self.app

    def __call__(self, env, start_response):
        if env['REQUEST_METHOD'] != 'POST' or 'HTTP_X_ZEROVM_EXECUTE' not in env:
            return self.app(env, start_response)
        req = Request(env)
        started = time.monotonic()
        hubwait.round_up(hubs.get_hub())        # no spinning for its runs' timers
        try:
            resp = (BatchRun(self, req, NodeRun) if wire.BATCH in req.headers
                    else NodeRun(self, req)).execute()
        except HTTPException as e:
            resp = e
        resp.headers[wire.EXECUTE] = wire.VERSION
        resp.headers[wire.SETUP] = self.config.setup
        if wire.STREAM in resp.headers or wire.BATCH in resp.headers:   # logged as they end
            return resp(env, start_response)
        self.logger.info('execute %s %s %s %.4fs %s', req.path, resp.status_int,
                         resp.headers.get('X-Nexe-Status', '-'), time.monotonic() - started,
                         req.headers.get('X-Trans-Id', '-'))
        return resp(env, start_response)


def _image_refused(e: SysImageError) -> HTTPException:
    """A system image the node asks for, not given: a 400 for what the request asks
    (no such member...), a 503 when this server cannot read the image (missing or
    broken here: another replica may; the body names the image, not its path)."""
    if isinstance(e, SysImageUnreadable):
        return HTTPServiceUnavailable(body=f'system image {e.name} cannot be read on this '
                                           f'server\n')
    return HTTPBadRequest(body=f'{e} on this server\n')


def _host_open(path: str, mode: str, device: str):
    """A node's file on this server's disk.  Failing to open it (no descriptor
    left, a full disk, a system image removed since it was looked up) is this
    server's trouble: 503, so that the proxy runs the node on another replica,
    and the body names the device, not the server's paths."""
    try:
        return open(path, mode)
    except OSError as e:
        raise HTTPServiceUnavailable(
            body=f'cannot open the file of device {device} on this server: {e.strerror}\n',
            headers={'Retry-After': RETRY_AFTER}) from None


class NodeRun:
    """One execute request, from its tar stream to its answer: receive the node,
    open its channels within this server's limits, run it in the pool, release
    what it held (the middleware hands each request to one, as Swift's
    ``symlink`` hands requests to its context)."""

    outputs = None      # a batch's output files (``zerocloud.object.batch.Outputs``)
    null_fd: Callable[[], int] | None = None    # a batch's /dev/null for undeclared streams

    def __init__(self, owner: ObjectExecMiddleware, req: Request) -> None:
        self.owner, self.req = owner, req
        self.config, self.logger = owner.config, owner.logger

    def execute(self) -> Response:
        """Receive the node, run it and answer with its report and outputs."""
        req = self.req
        if req.content_length is not None and req.content_length > self.config.max_input:
            raise HTTPRequestEntityTooLarge(
                body=wire.too_large(self.config.max_input) + '\n')
        try:
            device, _, account = req.split_path(5, 5, True)[:3]
        except ValueError:
            raise HTTPBadRequest(body='execute requests go to /<device>/<partition>/<account>'
                                      '/<container>/<object>\n') from None
        self.account, self.job = charged_to(req, account)
        self.owner.admission.enter(self.account, self.job)
        reader = tmp = streamed = None
        files: dict[str, str] = {}
        try:
            try:
                disk = check_drive(self.config.devices, device, self.config.mount_check)
            except ValueError:
                raise HTTPInsufficientStorage(drive=device) from None
            if req.headers.get(wire.ACCESS, '').upper() == 'GET':
                reader = self.local_object(req)
            if wire.PROGRAM in req.headers:       # the program by digest, before any body
                files[wire.EXE] = self.cached_program(req.headers[wire.PROGRAM])
            if wire.IMAGE in req.headers:         # the job's image too
                files[IMAGE_MEMBER] = self.cached(self.owner.images, wire.IMAGE,
                                                  req.headers[wire.IMAGE], 'image')
            tmp = scratch.node_dir(os.path.join(disk, 'tmp'))
            spec, rest, budget = self.receive(req, tmp, files)
            if spec.stream:
                streamed = _Streamed(self, spec, files, reader, tmp, rest, budget, req)
                return streamed.start()       # it cleans up from now on
            hangup.drain(req.environ)
            with hangup.stop_on_hangup(req.environ, f'node {spec.name}'):
                report, outputs = self.run(spec, files, reader, tmp)
        except BaseException:
            if tmp is not None and streamed is None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            if streamed is None:
                self.release(files, reader)
        members = [wire.bytes_member(wire.REPORT, report.to_json())]
        if spec.outputs:                      # false for a replica that only votes
            members += [wire.file_member(wire.DEV_PREFIX + name, path)
                        for name, path in outputs]
        body = ClosingIterator(wire.stream_tar(members), [_Removal(tmp)])
        return Response(app_iter=body, content_type='application/x-tar',
                        headers={'X-Nexe-Status': report.status,
                                 'X-Nexe-Retcode': str(report.retcode)})

    def release(self, files: dict[str, str], reader) -> None:
        """The node is done here: its slot is free, the caches may drop its program
        and image again, the local object is closed."""
        self.owner.admission.leave(self.account, self.job)
        if reader is not None:
            reader.close()
        if wire.EXE in files:
            self.owner.programs.release(files[wire.EXE])
        if IMAGE_MEMBER in files:
            self.owner.images.release(files[IMAGE_MEMBER])

    def cached_program(self, digest: str) -> str:
        """Hold the program of ``X-Zerovm-Program``; 412 (before the body travels)
        when this process does not have it: the proxy sends it again with it."""
        return self.cached(self.owner.programs, wire.PROGRAM, digest, 'program')

    def cached(self, cache: ContentCache, header: str, digest: str, what: str) -> str:
        """Hold the file of ``digest`` (``header``'s value) in ``cache``; 412 when
        this process does not have it."""
        digest = digest.strip().lower()
        if len(digest) != 64 or not all(c in '0123456789abcdef' for c in digest):
            raise HTTPBadRequest(body=f'{header}: not a SHA-256 (64 hex digits)\n')
        path = cache.hold(digest)
        if path is None:
            raise HTTPPreconditionFailed(body=f'{what} {digest} is not cached here: '
                                              f'send it\n', headers={header: digest})
        return path

    def local_object(self, req: Request):
        """Open the object of the request path here; its reader holds the open data file."""
        device, part, account, container, obj, policy = get_name_and_placement(req, 5, 5, True)
        return self.open_local(device, part, account, container, obj, policy)

    def open_local(self, device: str, part: str, account: str, container: str, obj: str,
                   policy, get_diskfile: Callable | None = None):
        """Open an object here; its reader holds the open data file (and, as
        ``local_metadata``, the object's metadata).  ``get_diskfile``: the object
        server's, or a batch's (``zerocloud.object.diskfiles.DiskFiles``)."""
        path = f'/{account}/{container}/{obj}'
        if policy.policy_type != REPL_POLICY:
            raise HTTPConflict(body=f'{path}: policy {policy.name} stores fragments here, '
                                    'not the object\n')
        try:
            disk_file = (get_diskfile or self.owner.object_server.get_diskfile)(
                device, part, account, container, obj, policy=policy)
            disk_file.open()
        except DiskFileDeviceUnavailable:
            raise HTTPInsufficientStorage(drive=device) from None
        except (DiskFileNotExist, DiskFileQuarantined, DiskFileCollision) as e:
            raise HTTPNotFound(body=f'{path} is not on this server '
                                    f'({type(e).__name__})\n') from None
        metadata = disk_file.get_metadata()
        reader = disk_file.reader()
        kind = None if _NOT_LOCAL_KEYS.isdisjoint(metadata) else next(
            key for key in _NOT_LOCAL if key in metadata)
        size = int(metadata['Content-Length'])
        if kind or size > self.config.max_input:
            reader.close()
            if kind:
                raise HTTPConflict(body=f'{path} is not a plain object ({kind})\n')
            raise HTTPRequestEntityTooLarge(
                body=f'{path} is {size} bytes, larger than zerovm_maxinput '
                     f'({self.config.max_input} bytes), the most a node reads: split it into '
                     'smaller objects (a node each), or ask the operator to raise '
                     'zerovm_maxinput (object servers and proxy)\n')
        reader.local_env = wire.local_env(path, metadata.items())
        return reader

    def receive(self, req: Request, tmp: str, files: dict[str, str]):
        """Read the request's tar stream into ``files`` (member name -> path; the
        program is held in the program cache), up to its end or its ``start``
        member; returns (the node spec, the members after ``start`` or None, the
        bytes the rest of the request may still bring)."""
        spec = rest = None
        budget = self.config.max_input
        members = wire.read_members(req.environ['wsgi.input'], wire.SPEC)   # never reads ahead
        try:
            for name, f in members:
                if name in files:
                    raise wire.WireError(f'member {name} sent twice')
                if name == wire.SPEC:
                    spec = wire.NodeSpec.from_json(read_spec(f, 'node spec'))
                    continue
                if name == wire.START:
                    rest = members
                    break
                if name in (wire.EXE, IMAGE_MEMBER):      # kept by content (see above)
                    cache = self.owner.programs if name == wire.EXE else self.owner.images
                    files[name] = cache.receive(f, budget)
                    budget -= os.path.getsize(files[name])
                    continue
                path = os.path.join(tmp, 'in-' + name.replace('/', '_'))
                with open(path, 'wb') as out:
                    budget -= wire.copy_limited(f, out, budget)
                files[name] = path
        except wire.TooLarge:
            raise HTTPRequestEntityTooLarge(
                body=wire.too_large(self.config.max_input) + '\n') from None
        except ValueError as e:             # WireError, bad JSON
            raise HTTPBadRequest(body=f'bad execute request: {e}\n') from None
        if spec is None or (wire.EXE not in files and spec.program is None):
            raise HTTPBadRequest(body='bad execute request: node spec or program missing\n')
        return spec, rest, budget

    def program(self, spec: wire.NodeSpec, files: dict[str, str]) -> str:
        """The program's host path: the one sent, or a file of a system image here."""
        if wire.EXE in files:
            return files[wire.EXE]
        try:
            with self.owner.extracting:           # one at a time: the images' lock is a thread's
                return str(tpool.execute(self.owner.sysimages.program, *spec.program))
        except SysImageError as e:
            raise _image_refused(e) from None

    def step(self, name: str, dev: wire.DeviceSpec | None, files: dict[str, str]) -> Step:
        """How device ``name`` becomes a node's channel (the rules of :meth:`plan`)."""
        alias = '/dev/' + name
        if dev is not None and dev.source == 'link':     # arrives while the node runs
            return Step(LINK, name, alias, READ)
        if dev is None and name == 'stderr':     # its end kept by the worker, for the report
            return Step(FIXED, name, alias, WRITE,
                        fixed=ChannelSpec(alias, -1, WRITE, tail=STDERR_TAIL))
        if dev is None:                       # an undeclared standard stream: /dev/null
            mode = READ if name == 'stdin' else WRITE
            if self.null_fd is not None:
                return Step(FIXED, name, alias, mode,
                            fixed=ChannelSpec(alias, self.null_fd(), mode))
            return Step(FILE, name, alias, mode, path=os.devnull)
        if dev.writable:
            most = self.config.max_output
            put_size = most if dev.put_size is None else min(dev.put_size, most)
            return Step(OUT, name, alias, WRITE, dev.random, quota=Quota(put_size=put_size))
        if name in self.owner.sysimages.images and wire.DEV_PREFIX + name not in files:
            try:                                # mounted read-only at /
                path = str(self.owner.sysimages.tar(name))
            except SysImageError as e:
                raise _image_refused(e) from None
            return Step(FILE, name, alias, READ, True, '/', path=path, system=True)
        if dev.source == 'local':
            return Step(LOCAL, name, alias, READ, dev.random, '/' if name == 'image' else None)
        member = files.get(wire.DEV_PREFIX + name)
        return Step(FILE, name, alias, READ, dev.random and member is not None,
                    '/' if name == 'image' and member else None, path=member or os.devnull)

    def plan(self, devices: tuple, files: dict[str, str]) -> tuple[Step, ...]:
        """How each device of a node (``devices``: its spec's) becomes its channel, in
        their order: the rules of a node's channels, in one place.  What it names
        but not opens (the local object, outputs, files, links) :meth:`lay` opens
        for each node; a batch's nodes that share a spec's devices share a plan."""
        declared = {d.name: d for d in devices}
        steps = [self.step(name, declared.get(name), files)
                 for name in sorted(set(declared) | set(peers.STD_CHANNELS))]
        # system images first, the job's image last: its files win where paths meet
        steps.sort(key=lambda s: s.mount is not None and s.alias == '/dev/image')
        return tuple(steps)

    def lay(self, plan: tuple[Step, ...], reader, tmp: str, opened: list, links: dict):
        """One node's channels, by ``plan``, and its written outputs [(device, host
        path)]: what it opens is added to ``opened``, its links to ``links``."""
        channels, outputs = [], []
        for step in plan:
            kind, alias = step.kind, step.alias
            if kind is FIXED:
                channels.append(step.fixed)
            elif kind is LOCAL:
                if reader is None:
                    raise HTTPBadRequest(body=f'bad execute request: device {step.name} reads '
                                              f'the local object but {wire.ACCESS} is not GET\n')
                channels.append(ChannelSpec(alias, reader._fp.fileno(), READ, step.random,
                                            mount=step.mount))
            elif kind is OUT:
                if self.outputs is not None:            # the batch's, kept open
                    f, path = self.outputs.take()
                else:
                    path = os.path.join(tmp, 'out-' + step.name.replace('/', '_'))  # out/<peer>
                    f = _host_open(path, 'w+b', step.name)
                    opened.append(f)
                channels.append(ChannelSpec(alias, f.fileno(), WRITE, step.random, step.quota))
                outputs.append((step.name, path))
            elif kind is FILE:
                f = _host_open(step.path, 'rb' if step.mode == READ else 'wb', step.name)
                opened.append(f)
                channels.append(ChannelSpec(alias, f.fileno(), step.mode, step.random,
                                            mount=step.mount, system=step.system))
            elif kind is LINK:
                if None not in links:                  # one waker for all the node's links
                    links[None] = LinkWaker()
                    opened.append(links[None])
                link = LinkWriter(os.path.join(tmp, 'link-' + step.name.replace('/', '_')),
                                  links[None])
                opened.insert(0, link)                 # closed (aborted) before the waker
                links[step.name] = link
                channels.append(ChannelSpec(alias, link.fd, READ, notify=link.notify,
                                            wait=self.config.link_wait))
        return channels, outputs

    def limits(self, spec: wire.NodeSpec) -> Limits:
        """The node's limits: what the proxy asks, within this server's."""
        asked, cfg = spec.limits, self.config
        try:
            return Limits(*(mine if theirs is None else min(theirs, mine) for theirs, mine in (
                (asked.memory, cfg.memory), (asked.fuel, cfg.fuel),
                (asked.timeout, cfg.timeout))))
        except (TypeError, ValueError) as e:
            raise HTTPBadRequest(body=f'bad execute request: limits: {e}\n') from None

    def channels(self, spec: wire.NodeSpec, files: dict[str, str], reader, tmp: str, opened: list,
                  links: dict):
        """The node's channels and its written outputs [(device, host path)]."""
        return self.lay(self.plan(spec.devices, files), reader, tmp, opened, links)

    def engine(self, spec: wire.NodeSpec) -> str | None:
        """The engine the node asks for, within what the operator allows."""
        asked, mine = spec.engine, self.config.engine
        if asked not in (None, *engines.CHOICES):
            raise HTTPBadRequest(body=f'bad execute request: engine {asked!r}\n')
        if mine == 'emulated':
            if asked == 'native':
                raise HTTPBadRequest(body='this object server runs the emulated engine only '
                                          '(zerovm_engine = emulated): ask for engine auto '
                                          'or emulated\n')
            return 'emulated'
        if asked in (None, 'auto'):
            return mine or asked
        return asked

    def pool_run(self, spec: wire.NodeSpec, files: dict[str, str], channels: list[ChannelSpec],
                  outputs: list[tuple[str, str]], started=None,
                  watched: bool = False) -> wire.NodeReport:
        """The node's report, with the end of its stderr (what the worker kept of an
        undeclared one, or the end of the declared one's file in ``outputs``);
        ``watched``: its outputs are sent on as they grow (``Pool.run_result``)."""
        engine = self.engine(spec)
        try:
            result = self.owner.pool.run_result(
                self.program(spec, files), channels, argv=spec.argv, env=spec.env,
                limits=self.limits(spec), seed=spec.seed, epoch=spec.epoch, started=started,
                engine=engine, account=self.account, watched=watched)
        except PoolBusy as e:
            raise pool_refused(e, self.logger) from None
        stderr = result.tails.get('/dev/stderr')
        return node_report(spec, result.data, stderr_of(outputs) if stderr is None else stderr)

    def run(self, spec: wire.NodeSpec, files: dict[str, str], reader, tmp: str):
        """Run the node in a warm worker; returns (report, [(device, output path)])."""
        spec = with_local_env(spec, reader)
        self.limits(spec)
        self.engine(spec)
        opened: list = []
        links: dict = {}
        try:
            channels, outputs = self.channels(spec, files, reader, tmp, opened, links)
            for name, link in links.items():        # nothing follows a request not streamed
                if name is not None:
                    link.abort()
            report = self.pool_run(spec, files, channels, outputs)
            return report, outputs
        finally:
            for f in opened:
                f.close()


class _Streamed:
    """One node whose data moves while it runs (``"stream": true`` in its spec).

    The response (``X-Zerovm-Stream: 1``) starts once a worker has taken the
    node: a node that waits in the pool's queue is not running, and the proxy
    starts the nodes that read from this one only when it is.  Its body is
    ``part/out/<node>`` members, in order, with the bytes the program wrote
    to ``/dev/out/<node>`` so far (its output files are looked at every few
    milliseconds), then ``report.json`` and the other written channels.  A
    ``running`` member comes first: the server sends the headers with it.

    The request goes on after its ``start`` member with ``part/in/<node>``
    members (appended to that ``/dev/in/<node>`` channel as they come: a
    :class:`zvm_core.channels.LinkWriter`, which the program reads through a
    blocking :class:`zvm_core.channels.StreamBacking`) and an
    ``end/in/<node>`` member when all of that link has come.  A request cut
    before then makes a read that needs the missing data fail (the program
    ends ``killed``: the proxy knows why and reports the node ``skipped``).
    """

    def __init__(self, owner: NodeRun, spec: wire.NodeSpec, files: dict[str, str],
                 reader, tmp: str, rest, budget: int, req: Request) -> None:
        self.owner, self.spec, self.files, self.reader = owner, spec, files, reader
        self.tmp, self.rest, self.budget, self.req = tmp, rest, budget, req
        self.began = time.monotonic()
        self.opened: list = []
        self.links: dict = {}                  # device -> LinkWriter; None -> their LinkWaker
        self.outputs: list[tuple[str, str]] = []
        self.run = self.receiver = self.watcher = None
        self.ended = Event()
        self.cleaned = self.responded = self.stopped = False

    def start(self) -> Response:
        try:
            self.spec = with_local_env(self.spec, self.reader)
            self.owner.limits(self.spec)
            self.owner.engine(self.spec)
            channels, self.outputs = self.owner.channels(self.spec, self.files, self.reader,
                                                          self.tmp, self.opened, self.links)
            if self.rest is not None:
                self.receiver = spawn(self._receive_links)
            started = Event()
            self.run = spawn(self._run, channels, started)
            if not started.wait():
                try:
                    self.run.wait()            # raises why it did not start (503...)
                except hangup.HangUp:
                    raise HTTPClientDisconnect(body='the proxy went away\n') from None
            if self.rest is None:
                self._watch()
        except BaseException:
            self.close()
            raise
        body = ClosingIterator(wire.stream_tar(self._members()), [self])
        self.req.environ['eventlet.minimum_write_chunk_size'] = 0    # each part at once
        self.responded = True
        return Response(app_iter=body, content_type='application/x-tar',
                        headers={wire.STREAM: '1'})

    def _run(self, channels: list[ChannelSpec], started: Event) -> wire.NodeReport:
        try:
            return self.owner.pool_run(self.spec, self.files, channels, self.outputs,
                                        started=lambda: started.send(True), watched=True)
        finally:
            if not started.ready():
                started.send(False)
            self._stop_links()
            self.ended.send()

    def _watch(self) -> None:
        """Stop the run when the proxy closes the connection (the job's client went
        away): once the request has been read to its end (``zerocloud.hangup``)."""
        hangup.drain(self.req.environ)
        if self.stopped:
            return

        def gone() -> None:
            if not self.run.dead:
                self.run.kill(hangup.HangUp())
        self.watcher = hangup.watch(self.req.environ, gone)

    def _stop_links(self) -> None:
        self.stopped = True
        if self.watcher is not None:
            self.watcher.kill()
        if self.receiver is not None:
            self.receiver.kill()
        for f in self.opened:
            f.close()
        self.opened = []

    def _receive_links(self) -> None:
        try:
            for name, f in self.rest:
                kind, _, dev = name.partition('/')
                link = self.links.get(dev) if dev else None
                if link is None or kind + '/' not in (wire.PART_PREFIX, wire.END_PREFIX):
                    raise wire.WireError(f'unexpected member {name}')
                if kind + '/' == wire.END_PREFIX:
                    size = int(f.read(64))
                    if size != link.size:
                        raise wire.WireError(f'{dev}: {link.size} bytes came, {size} sent')
                    link.end()
                    continue
                while chunk := f.read(wire.CHUNK):
                    self.budget -= len(chunk)
                    if self.budget < 0:
                        raise wire.TooLarge(wire.too_large(self.owner.config.max_input))
                    link.append(chunk)
        except Exception as e:           # a cut or bad request: the links stay incomplete
            self.owner.logger.info('%s: links not complete: %r', self.spec.name, e)
        finally:
            for name, link in self.links.items():
                if name is not None:
                    link.abort()       # those not complete (a no-op for the others)
            self._watch()

    def _members(self):
        """The response's members: parts of the links while the node runs, then as usual."""
        yield wire.bytes_member(wire.RUNNING, b'')      # the headers go with it, at once
        tails = [(name, os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                 for name, path in self.outputs if name.startswith('out/')]
        sent = dict.fromkeys((name for name, _ in tails), 0)
        try:
            pause = TAIL_PAUSE
            while True:
                done, moved = self.ended.ready(), False
                for name, fd in tails:
                    size = os.fstat(fd).st_size
                    while sent[name] < size:
                        chunk = os.pread(fd, min(wire.PART, size - sent[name]), sent[name])
                        if not chunk:
                            break
                        sent[name] += len(chunk)
                        moved = True
                        if self.spec.outputs:
                            yield wire.bytes_member(wire.PART_PREFIX + name, chunk)
                if done:
                    break
                pause = TAIL_PAUSE if moved else min(pause * 2, TAIL_PAUSE_MAX)
                if not moved:
                    self.ended.wait(pause)
        finally:
            for _, fd in tails:
                os.close(fd)
        try:
            report = self.run.wait()
        except hangup.HangUp:
            return                     # stopped: nobody reads the rest
        yield wire.bytes_member(wire.REPORT, report.to_json())
        if self.spec.outputs:
            yield from (wire.file_member(wire.DEV_PREFIX + name, path)
                        for name, path in self.outputs if not name.startswith('out/'))

    def close(self) -> None:
        """The response is done (or was never sent): clean up once the run has ended."""
        if self.run is not None and not self.run.dead:
            self.run.link(lambda _gt: self._cleanup())
        else:
            self._cleanup()

    def _cleanup(self) -> None:
        if self.cleaned:
            return
        self.cleaned = True
        self._stop_links()
        owner = self.owner
        status = '-'
        if self.run is not None and self.run.dead:
            try:
                status = self.run.wait().status
            except BaseException:
                pass
        if self.responded:
            owner.logger.info('execute %s 200 %s %.4fs %s (streamed)', self.req.path, status,
                              time.monotonic() - self.began,
                              self.req.headers.get('X-Trans-Id', '-'))
        owner.release(self.files, self.reader)
        shutil.rmtree(self.tmp, ignore_errors=True)


def filter_factory(global_conf: dict, **local_conf):
    conf = dict(global_conf, **local_conf)
    with refused_at_start():
        pipeline.check_server(conf, 'zerocloud_object')

    def zerocloud_object_filter(app):
        with refused_at_start():
            return ObjectExecMiddleware(app, conf)
    return zerocloud_object_filter

"""ZeroCloud object-server filter: run a job node next to its data.

The proxy filter (``zerocloud.proxy``) sends each node of a job to an object
server that holds the node's data object, as a ``POST`` with
``X-Zerovm-Execute`` to the object's backend path (``zerocloud.wire``
describes the request).  This filter

1. admits the node or answers ``503 Slot not available`` at once when
   ``zerovm_maxpool`` nodes run and ``zerovm_maxqueue`` wait (the proxy then
   tries another replica);
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
   and ``X-Nexe-Status`` / ``X-Nexe-Retcode`` headers.

Channels between the nodes of a job (``connect``) arrive as members and go
back as members, like any other input and output: ``/dev/in/<node>`` is a
sequential read channel holding everything that node wrote to this one,
``/dev/out/<node>`` a sequential written channel (``zerocloud.graph`` says
why the proxy carries them and never a direct link between servers: a node
here never waits for another node while it holds a worker).

Programs are kept by SHA-256 in a per-process directory under the system's
temporary directory (``$TMPDIR``; the 32 most recently used), so a program
arrives at the same path each time and the workers reuse its template
machine (validated and translated once).

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

``devices`` and ``mount_check`` (usually from ``[DEFAULT]``) say where the
disks are and whether they must be mount points (as for the object server);
temporary files of a node live in ``<devices>/<device>/tmp``.  With several
object-server ``workers``, each process has its own pool.  Each execute
request is logged (``execute <path> <status> <node status> <seconds>
<transaction id>``): the object server's own access log does not see them.
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import json
import os
import shutil
import tempfile
import time

from swift.common.constraints import check_drive
from swift.common.exceptions import (
    DiskFileCollision,
    DiskFileDeviceUnavailable,
    DiskFileNotExist,
    DiskFileQuarantined,
)
from swift.common.request_helpers import get_name_and_placement
from swift.common.storage_policy import REPL_POLICY
from swift.common.swob import (
    HTTPBadRequest,
    HTTPConflict,
    HTTPException,
    HTTPInsufficientStorage,
    HTTPNotFound,
    HTTPRequestEntityTooLarge,
    HTTPServiceUnavailable,
    Request,
    Response,
)
from swift.common.utils import (
    ClosingIterator,
    config_positive_int_value,
    config_true_value,
    get_logger,
    non_negative_int,
)

from zerocloud import wire
from zvm_core.channels import READ, WRITE, Quota
from zvm_core.executor import DEFAULT_FUEL, DEFAULT_MEMORY, DEFAULT_TIMEOUT, Limits
from zvm_core.pool import ChannelSpec, Pool, PoolBusy
from zvm_core.sysimages import SysImageError, SystemImages, parse

STD_CHANNELS = ('stdin', 'stdout', 'stderr')
PROGRAM_CACHE = 32
RETRY_AFTER = '1'
PROGRAMS_DIR = 'zerocloud-programs-'
# Metadata of objects whose data file is not the object's content.
NOT_PLAIN = ('X-Static-Large-Object', 'X-Object-Manifest', 'X-Object-Sysmeta-Symlink-Target')


class ProgramCache:
    """Received programs by SHA-256 in one directory of this process.

    A worker keeps a template machine per program file, so the same program
    must arrive at the same path every time.  A cached file is never
    rewritten; beyond ``size`` programs the least recently used ones go,
    never one that a node is running.  The directory,
    ``<root>/zerocloud-programs-<pid>-<random>``, goes when the process
    exits; the first program also removes those of processes that died
    without cleaning up (a server killed by a signal).
    """

    def __init__(self, size: int, root: str | None = None) -> None:
        self.size = size
        self.root = root or tempfile.gettempdir()
        self.dir: str | None = None
        self._users: collections.OrderedDict[str, int] = collections.OrderedDict()

    def _make_dir(self) -> str:
        for name in os.listdir(self.root):
            pid = name[len(PROGRAMS_DIR):].partition('-')[0]
            if name.startswith(PROGRAMS_DIR) and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
        path = tempfile.mkdtemp(prefix=f'{PROGRAMS_DIR}{os.getpid()}-', dir=self.root)
        atexit.register(shutil.rmtree, path, True)
        return path

    def receive(self, src, limit: int) -> str:
        """Store the program read from ``src`` and hold it; returns its path."""
        if self.dir is None:
            self.dir = self._make_dir()
        fd, incoming = tempfile.mkstemp(prefix='.incoming-', dir=self.dir)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, 'wb') as out:
                wire.copy_limited(src, out, limit, digest)
            name = digest.hexdigest()
            path = os.path.join(self.dir, name)
            if name in self._users:
                os.unlink(incoming)
            else:
                os.replace(incoming, path)
        except BaseException:
            if os.path.exists(incoming):
                os.unlink(incoming)
            raise
        self._users[name] = self._users.pop(name, 0) + 1
        self._evict()
        return path

    def release(self, path: str) -> None:
        self._users[os.path.basename(path)] -= 1
        self._evict()

    def _evict(self) -> None:
        for name, users in list(self._users.items()):
            if len(self._users) <= self.size:
                return
            if not users:
                del self._users[name]
                os.unlink(os.path.join(self.dir, name))


class _Removal:
    """Removes a node's directory when its response is closed (``ClosingIterator``
    calls ``close`` of its closeables, nothing else)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class ObjectExecMiddleware:
    def __init__(self, app, conf: dict) -> None:
        self.app = app
        self.logger = get_logger(conf, log_route='zerocloud-object')
        self.devices = conf.get('devices', '/srv/node')
        self.mount_check = config_true_value(conf.get('mount_check', 'true'))
        self.timeout = float(conf.get('zerovm_timeout', DEFAULT_TIMEOUT))
        self.memory = config_positive_int_value(conf.get('zerovm_maxnexemem', DEFAULT_MEMORY))
        self.fuel = config_positive_int_value(conf.get('zerovm_fuel', DEFAULT_FUEL))
        self.max_input = config_positive_int_value(conf.get('zerovm_maxinput', 1 << 30))
        self.max_output = config_positive_int_value(conf.get('zerovm_maxoutput', 1 << 30))
        self.pool_size = config_positive_int_value(conf.get('zerovm_maxpool',
                                                            os.cpu_count() or 1))
        self.queue = non_negative_int(conf.get('zerovm_maxqueue', 16))
        self.programs = ProgramCache(PROGRAM_CACHE)
        try:
            self.sysimages = SystemImages(parse(conf.get('zerovm_sysimage_devices', '')))
        except SysImageError as e:
            raise ValueError(f'zerovm_sysimage_devices: {e}') from None
        self.admitted = 0
        self._pool: Pool | None = None

    @property
    def pool(self) -> Pool:
        """Workers start with the first node, in the server process (after its fork)."""
        if self._pool is None:
            self._pool = Pool(self.pool_size, self.queue)
        return self._pool

    @property
    def object_server(self):
        """The object server app at the end of the pipeline (it makes DiskFiles)."""
        return getattr(self, '_pipeline_final_app', None) or self.app

    def __call__(self, env, start_response):
        if env['REQUEST_METHOD'] != 'POST' or 'HTTP_X_ZEROVM_EXECUTE' not in env:
            return self.app(env, start_response)
        req = Request(env)
        started = time.monotonic()
        try:
            resp = self.execute(req)
        except HTTPException as e:
            resp = e
        resp.headers[wire.EXECUTE] = wire.VERSION
        self.logger.info('execute %s %s %s %.4fs %s', req.path, resp.status_int,
                         resp.headers.get('X-Nexe-Status', '-'), time.monotonic() - started,
                         req.headers.get('X-Trans-Id', '-'))
        return resp(env, start_response)

    def execute(self, req: Request) -> Response:
        if req.content_length is not None and req.content_length > self.max_input:
            raise HTTPRequestEntityTooLarge(
                body=f'request larger than zerovm_maxinput ({self.max_input} bytes)\n')
        if self.admitted >= self.pool_size + self.queue:
            raise HTTPServiceUnavailable(
                body=f'Slot not available: {self.pool_size} nodes running, '
                     f'{self.queue} waiting\n', headers={'Retry-After': RETRY_AFTER})
        try:
            device = req.split_path(5, 5, True)[0]
        except ValueError:
            raise HTTPBadRequest(body='execute requests go to /<device>/<partition>/<account>'
                                      '/<container>/<object>\n') from None
        self.admitted += 1
        reader = tmp = None
        files: dict[str, str] = {}
        try:
            try:
                disk = check_drive(self.devices, device, self.mount_check)
            except ValueError:
                raise HTTPInsufficientStorage(drive=device) from None
            if req.headers.get(wire.ACCESS, '').upper() == 'GET':
                reader = self._local_object(req)
            disk_tmp = os.path.join(disk, 'tmp')
            os.makedirs(disk_tmp, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix='zerocloud-', dir=disk_tmp)
            spec = self._receive(req, tmp, files)
            report, outputs = self._run(spec, files, reader, tmp)
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            self.admitted -= 1
            if wire.EXE in files:
                self.programs.release(files[wire.EXE])
            if reader is not None:
                reader.close()
        members = [wire.json_member(wire.REPORT, report)]
        if spec.get('outputs', True):         # false for a replica that only votes
            members += [wire.file_member(wire.DEV_PREFIX + name, path)
                        for name, path in outputs]
        body = ClosingIterator(wire.stream_tar(members), [_Removal(tmp)])
        return Response(app_iter=body, content_type='application/x-tar',
                        headers={'X-Nexe-Status': report['status'],
                                 'X-Nexe-Retcode': str(report.get('retcode'))})

    def _local_object(self, req: Request):
        """Open the object of the request path here; its reader holds the open data file."""
        device, part, account, container, obj, policy = get_name_and_placement(req, 5, 5, True)
        path = f'/{account}/{container}/{obj}'
        if policy.policy_type != REPL_POLICY:
            raise HTTPConflict(body=f'{path}: policy {policy.name} stores fragments here, '
                                    'not the object\n')
        try:
            disk_file = self.object_server.get_diskfile(device, part, account, container, obj,
                                                        policy=policy)
            disk_file.open()
        except DiskFileDeviceUnavailable:
            raise HTTPInsufficientStorage(drive=device) from None
        except (DiskFileNotExist, DiskFileQuarantined, DiskFileCollision) as e:
            raise HTTPNotFound(body=f'{path} is not on this server '
                                    f'({type(e).__name__})\n') from None
        metadata = disk_file.get_metadata()
        reader = disk_file.reader()
        kind = next((key for key in NOT_PLAIN if key in metadata), None)
        size = int(metadata['Content-Length'])
        if kind or size > self.max_input:
            reader.close()
            if kind:
                raise HTTPConflict(body=f'{path} is not a plain object ({kind})\n')
            raise HTTPRequestEntityTooLarge(
                body=f'{path} is larger than zerovm_maxinput ({self.max_input} bytes)\n')
        return reader

    def _receive(self, req: Request, tmp: str, files: dict[str, str]) -> dict:
        """Read the request's tar stream into ``files`` (member name -> path; the
        program is held in the program cache); returns the node spec."""
        spec = None
        budget = self.max_input
        try:
            for name, f in wire.read_members(req.environ['wsgi.input'], wire.SPEC):
                if name in files:
                    raise wire.WireError(f'member {name} sent twice')
                if name == wire.SPEC:
                    spec = json.loads(f.read(1 << 20))
                    continue
                if name == wire.EXE:
                    files[name] = self.programs.receive(f, budget)
                    budget -= os.path.getsize(files[name])
                    continue
                path = os.path.join(tmp, 'in-' + name.replace('/', '_'))
                with open(path, 'wb') as out:
                    budget -= wire.copy_limited(f, out, budget)
                files[name] = path
        except wire.TooLarge:
            raise HTTPRequestEntityTooLarge(
                body=f'request larger than zerovm_maxinput ({self.max_input} bytes)\n'
            ) from None
        except ValueError as e:             # WireError, bad JSON
            raise HTTPBadRequest(body=f'bad execute request: {e}\n') from None
        if not isinstance(spec, dict) or (wire.EXE not in files and not spec.get('program')):
            raise HTTPBadRequest(body='bad execute request: node spec or program missing\n')
        return spec

    def _program(self, spec: dict, files: dict[str, str]) -> str:
        """The program's host path: the one sent, or a file of a system image here."""
        if wire.EXE in files:
            return files[wire.EXE]
        try:
            return str(self.sysimages.program(spec['program']['image'],
                                              spec['program']['member']))
        except (TypeError, KeyError) as e:
            raise HTTPBadRequest(body=f'bad execute request: program {e!r}\n') from None
        except SysImageError as e:
            raise HTTPBadRequest(body=f'{e} on this server\n') from None

    def _channel(self, name: str, dev: dict | None, files: dict[str, str], reader, tmp: str,
                 opened: list) -> tuple[ChannelSpec, str | None]:
        """The channel for one device, and the host path of its output if it is written."""
        alias = '/dev/' + name
        if dev is None:                       # an undeclared standard stream: /dev/null
            f = open(os.devnull, 'rb' if name == 'stdin' else 'wb')
            opened.append(f)
            return ChannelSpec(alias, f.fileno(), READ if name == 'stdin' else WRITE), None
        random = bool(dev.get('random'))
        if dev.get('access') == 'w':
            path = os.path.join(tmp, 'out-' + name.replace('/', '_'))     # out/<peer> too
            f = open(path, 'w+b')
            opened.append(f)
            try:
                put_size = min(int(dev.get('put_size', self.max_output)), self.max_output)
            except (TypeError, ValueError) as e:
                raise HTTPBadRequest(body=f'bad execute request: put_size of {name}: '
                                          f'{e}\n') from None
            return ChannelSpec(alias, f.fileno(), WRITE, random=random,
                               quota=Quota(put_size=put_size)), path
        if name in self.sysimages.images and dev.get('access') != 'w' and \
                wire.DEV_PREFIX + name not in files:      # mounted read-only at /
            try:
                f = open(self.sysimages.tar(name), 'rb')
            except (SysImageError, OSError) as e:
                raise HTTPBadRequest(body=f'{e} on this server\n') from None
            opened.append(f)
            return ChannelSpec(alias, f.fileno(), READ, random=True, mount='/'), None
        if dev.get('source') == 'local':
            if reader is None:
                raise HTTPBadRequest(body=f'bad execute request: device {name} reads the '
                                          f'local object but {wire.ACCESS} is not GET\n')
            return ChannelSpec(alias, reader._fp.fileno(), READ, random=random,
                               mount='/' if name == 'image' else None), None
        member = files.get(wire.DEV_PREFIX + name)
        f = open(member or os.devnull, 'rb')
        opened.append(f)
        return ChannelSpec(alias, f.fileno(), READ, random=random and member is not None,
                           mount='/' if name == 'image' and member else None), None

    def _limits(self, spec: dict) -> Limits:
        """The node's limits: what the proxy asks, within this server's."""
        asked = spec.get('limits') or {}
        try:
            return Limits(memory=min(int(asked.get('memory', self.memory)), self.memory),
                          fuel=min(int(asked.get('fuel', self.fuel)), self.fuel),
                          timeout=min(float(asked.get('timeout', self.timeout)), self.timeout))
        except (TypeError, ValueError) as e:
            raise HTTPBadRequest(body=f'bad execute request: limits: {e}\n') from None

    def _run(self, spec: dict, files: dict[str, str], reader, tmp: str):
        """Run the node in a warm worker; returns (report dict, [(device, output path)])."""
        limits = self._limits(spec)
        declared = {d['name']: d for d in spec.get('devices', ())}
        opened, channels, outputs = [], [], []
        try:
            for name in sorted(set(declared) | set(STD_CHANNELS)):
                channel, out = self._channel(name, declared.get(name), files, reader, tmp,
                                             opened)
                channels.append(channel)
                if out:
                    outputs.append((name, out))
            # system images first, the job's image last: its files win where paths meet
            channels.sort(key=lambda c: c.mount is not None and c.alias == '/dev/image')
            try:
                report = self.pool.run(self._program(spec, files), channels,
                                       argv=spec.get('argv') or [spec.get('name', 'program')],
                                       env=spec.get('env', {}), limits=limits,
                                       seed=int(spec.get('seed', 0)),
                                       epoch=int(spec.get('epoch', 0)))
            except PoolBusy as e:
                raise HTTPServiceUnavailable(body=f'Slot not available: {e}\n',
                                             headers={'Retry-After': RETRY_AFTER}) from None
        finally:
            for f in opened:
                f.close()
        report.etags = {k: v for k, v in report.etags.items() if k[len('/dev/'):] in declared}
        return report.to_dict(), outputs


def filter_factory(global_conf: dict, **local_conf):
    conf = dict(global_conf, **local_conf)

    def zerocloud_object_filter(app):
        return ObjectExecMiddleware(app, conf)
    return zerocloud_object_filter

"""ZeroCloud object-server filter: run a job node next to its data.

The proxy filter (``zerocloud.proxy``) sends each node of a job to an object
server that holds the node's data object, as a ``POST`` with
``X-Zerovm-Execute`` to the object's backend path.  This filter opens the
local object and hands its data file to the sandbox as a channel without
copying it, runs the program outside the eventlet hub, and answers with the
report and the written channels (the tar stream of ``zerocloud.wire``).
Every other request passes through untouched.

Object servers have no authentication: the proxy filter authorises every
object a job reads or writes before it sends anything here, so object-server
ports must stay on the cluster network, as for Swift itself.

Configuration (``object-server.conf``)::

    [pipeline:main]
    pipeline = healthcheck recon zerocloud object-server

    [filter:zerocloud]
    use = egg:zerocloud#zerocloud_object
    # wall-clock limit of one node, seconds (also sent by the proxy)
    zerovm_timeout = 60
    # nodes running at once / waiting for a slot; beyond that: 503
    zerovm_maxpool = <number of CPUs>
    zerovm_maxqueue = 16
    # guest memory (bytes) and instruction budget of one node
    zerovm_maxnexemem = 268435456
    zerovm_fuel = 200000000000
    # largest request body (program + remote inputs) and written channel, bytes
    zerovm_maxinput = 1073741824
    zerovm_maxoutput = 1073741824

Response headers: ``X-Nexe-Status`` (report status), ``X-Nexe-Retcode``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from swift.common.swob import (
    HTTPBadRequest,
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
    close_if_possible,
    config_positive_int_value,
    get_logger,
    split_path,
)

from zerocloud import wire
from zvm_core.channels import READ, WRITE, Quota
from zvm_core.executor import DEFAULT_FUEL, DEFAULT_MEMORY, DEFAULT_TIMEOUT, Limits
from zvm_core.pool import ChannelSpec, Pool, PoolBusy

STD_CHANNELS = ('stdin', 'stdout', 'stderr')


def _node_spec(tmp: str, req: Request, max_input: int) -> tuple[dict, dict[str, str]]:
    """Unpack the request's tar stream into ``tmp``: the node spec and member paths."""
    files: dict[str, str] = {}
    spec = None
    budget = max_input
    try:
        for name, f in wire.read_members(req.environ['wsgi.input'], wire.SPEC):
            if name == wire.SPEC:
                spec = json.loads(f.read(1 << 20))
                continue
            path = os.path.join(tmp, 'in-' + name.replace('/', '_'))
            with open(path, 'wb') as out:
                budget -= wire.copy_limited(f, out, budget)
            files[name] = path
    except wire.TooLarge:
        raise HTTPRequestEntityTooLarge(body=f'request larger than {max_input} bytes\n') from None
    except wire.WireError as e:
        raise HTTPBadRequest(body=f'bad execute request: {e}\n') from None
    except ValueError as e:
        raise HTTPBadRequest(body=f'bad node spec: {e}\n') from None
    if not isinstance(spec, dict) or wire.EXE not in files:
        raise HTTPBadRequest(body='bad execute request: node spec or program missing\n')
    return spec, files


class ObjectExecMiddleware:
    def __init__(self, app, conf: dict) -> None:
        self.app = app
        self.logger = get_logger(conf, log_route='zerocloud-object')
        self.devices = conf.get('devices', '/srv/node')
        self.timeout = float(conf.get('zerovm_timeout', DEFAULT_TIMEOUT))
        self.memory = config_positive_int_value(conf.get('zerovm_maxnexemem', DEFAULT_MEMORY))
        self.fuel = config_positive_int_value(conf.get('zerovm_fuel', DEFAULT_FUEL))
        self.max_input = config_positive_int_value(conf.get('zerovm_maxinput', 1 << 30))
        self.max_output = config_positive_int_value(conf.get('zerovm_maxoutput', 1 << 30))
        self.pool_size = config_positive_int_value(conf.get('zerovm_maxpool',
                                                            os.cpu_count() or 1))
        self.queue = int(conf.get('zerovm_maxqueue', 16))
        self._pool: Pool | None = None

    @property
    def pool(self) -> Pool:
        """Workers start with the first job, in the server process (after its fork)."""
        if self._pool is None:
            self._pool = Pool(self.pool_size, self.queue)
        return self._pool

    def __call__(self, env, start_response):
        if env['REQUEST_METHOD'] != 'POST' or 'HTTP_X_ZEROVM_EXECUTE' not in env:
            return self.app(env, start_response)
        req = Request(env)
        try:
            resp = self.execute(req)
        except HTTPException as e:
            resp = e
        return resp(env, start_response)

    def _local_object(self, req: Request):
        """GET the local object from the object server; its reader holds the open file."""
        sub = Request.blank(req.path, environ={'REQUEST_METHOD': 'GET'},
                            headers={k: v for k, v in req.headers.items()
                                     if k.lower() == 'x-backend-storage-policy-index'})
        resp = sub.get_response(self.app)
        if resp.status_int == 404:
            raise HTTPNotFound(body=f'object {req.path} is not on this server\n')
        if resp.status_int == 507:
            raise HTTPInsufficientStorage()
        if resp.status_int // 100 != 2 or not hasattr(resp.app_iter, '_fp'):
            close_if_possible(resp.app_iter)
            raise HTTPServiceUnavailable(body=f'cannot open local object: {resp.status}\n')
        return resp.app_iter

    def execute(self, req: Request) -> Response:
        device, _part, _acct, _cont, _obj = split_path(req.path, 5, 5, True)
        disk_tmp = os.path.join(self.devices, device, 'tmp')
        os.makedirs(disk_tmp, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix='zerocloud-', dir=disk_tmp)
        reader = None
        try:
            spec, files = _node_spec(tmp, req, self.max_input)
            if any(d.get('source') == 'local' for d in spec.get('devices', ())):
                reader = self._local_object(req)
            report, outputs = self._run(spec, files, reader, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            if reader is not None:
                close_if_possible(reader)
        members = [wire.json_member(wire.REPORT, report)]
        members += [wire.file_member(wire.DEV_PREFIX + name, path) for name, path in outputs]
        body = ClosingIterator(wire.stream_tar(members),
                               [lambda: shutil.rmtree(tmp, ignore_errors=True)])
        return Response(app_iter=body, content_type='application/x-tar',
                        headers={'X-Nexe-Status': report['status'],
                                 'X-Nexe-Retcode': str(report.get('retcode'))})

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
            path = os.path.join(tmp, 'out-' + name)
            f = open(path, 'w+b')
            opened.append(f)
            return ChannelSpec(alias, f.fileno(), WRITE, random=random,
                               quota=Quota(put_size=self.max_output)), path
        if dev.get('source') == 'local':
            return ChannelSpec(alias, reader._fp.fileno(), READ, random=random), None
        member = files.get(wire.DEV_PREFIX + name)
        f = open(member or os.devnull, 'rb')
        opened.append(f)
        return ChannelSpec(alias, f.fileno(), READ, random=random and member is not None), None

    def _run(self, spec: dict, files: dict[str, str], reader, tmp: str):
        """Run the node in a warm worker; returns (report dict, [(device, output path)])."""
        asked = spec.get('limits', {})
        limits = Limits(memory=min(int(asked.get('memory', self.memory)), self.memory),
                        fuel=min(int(asked.get('fuel', self.fuel)), self.fuel),
                        timeout=min(float(asked.get('timeout', self.timeout)), self.timeout))
        declared = {d['name']: d for d in spec.get('devices', ())}
        opened, channels, outputs = [], [], []
        try:
            for name in sorted(set(declared) | set(STD_CHANNELS)):
                channel, out = self._channel(name, declared.get(name), files, reader, tmp,
                                             opened)
                channels.append(channel)
                if out:
                    outputs.append((name, out))
            try:
                report = self.pool.run(files[wire.EXE], channels,
                                       argv=spec.get('argv') or [spec.get('name', 'program')],
                                       env=spec.get('env', {}), limits=limits,
                                       seed=int(spec.get('seed', 0)),
                                       epoch=int(spec.get('epoch', 0)))
            except PoolBusy as e:
                raise HTTPServiceUnavailable(body=f'Slot not available: {e}\n') from None
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

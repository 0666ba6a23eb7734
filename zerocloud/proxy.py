"""ZeroCloud proxy filter: run a job next to the data it reads.

A client POSTs a job description to its account::

    curl -X POST $STORAGE_URL -H "X-Auth-Token: $TOKEN" \\
         -H "X-Zerovm-Execute: 1.0" -H "Content-Type: application/json" \\
         --data-binary @job.json

The filter parses and validates the job (``zerocloud.job``; any mistake is a
400 that says what and where), expands wildcards into nodes, and checks,
before anything runs, that the caller may POST to the account, read every
object the job reads (programs included) and write every object it writes
(403 naming the path otherwise, 404 for a missing object).  Each node is
sent to an object server holding its data object (``zerocloud.placement``);
the object-server filter (``zerocloud.object``) runs it in the sandbox there.
Only when every node ended ``ok`` are outputs with a ``path`` stored, as
normal Swift objects through the normal PUT path; path-less outputs form the
response body.  A failed node stores nothing.

The execute path never goes through the proxy's GET/PUT controllers: their
``node_timeout`` and retries would re-run computations.  A node whose server
fails before answering runs again on another replica (runs are
deterministic, so this is safe).

Configuration (``proxy-server.conf``), after the auth filter::

    [pipeline:main]
    pipeline = catch_errors gatekeeper ... tempauth zerocloud proxy-logging proxy-server

    [filter:zerocloud]
    use = egg:zerocloud#zerocloud_proxy
    # wall-clock limit of one node, seconds
    zerovm_timeout = 60
    # largest job description and program, bytes
    zerovm_maxconfig = 65536
    zerovm_maxnexe = 268435456
    # guest memory (bytes) and instruction budget of one node
    zerovm_maxnexemem = 268435456
    zerovm_fuel = 200000000000
    # most nodes one job may expand to
    zerovm_maxnodes = 1000
    conn_timeout = 0.5

Response headers, one comma-separated value per node in node order:
``X-Nexe-System`` (node names), ``X-Nexe-Status`` (``ok`` or the status and
what happened), ``X-Nexe-Retcode``, ``X-Nexe-Validation`` (0 passed, 1 failed),
``X-Nexe-Etag`` (``<device> <md5>`` of each written channel),
``X-Nexe-Cdr-Line`` (total time, then per node: time, instructions,
syscalls, bytes read, bytes written), ``X-Nexe-Policy``.  The response
``ETag`` is the MD5 of the body.  Status: 200 when every node ended ``ok``;
422 when a node's program failed (invalid, fault, fuel, quota, memory);
504 when a node hit the wall-clock timeout; 503 when no server could run it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
import uuid
from urllib.parse import quote

from swift.common.bufferedhttp import http_connect
from swift.common.concurrency import GreenPool, Timeout
from swift.common.exceptions import ConnectionTimeout
from swift.common.http import is_success
from swift.common.registry import register_swift_info
from swift.common.storage_policy import POLICIES
from swift.common.swob import (
    HTTPBadRequest,
    HTTPException,
    HTTPForbidden,
    HTTPNotFound,
    HTTPRequestEntityTooLarge,
    HTTPServiceUnavailable,
    Request,
    Response,
    wsgify,
)
from swift.common.utils import config_positive_int_value, get_logger
from swift.common.wsgi import make_subrequest
from swift.proxy.controllers.base import get_container_info

from zerocloud import placement, wire
from zerocloud.job import JobError, Node, SwiftPath, expand, job_paths, parse_job
from zvm_core.executor import DEFAULT_FUEL, DEFAULT_MEMORY, DEFAULT_TIMEOUT

SWIFT_SOURCE = 'ZC'
NODE_GRACE = 5.0
LISTING_LIMIT = 10000
PROGRAM_FAILURES = ('validation', 'fault', 'fuel', 'quota', 'memory')


def _spooled():
    return tempfile.SpooledTemporaryFile(max_size=1 << 20)


class NodeResult:
    """What came back from the object server that ran one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.report: dict = {'status': 'killed', 'retcode': None,
                             'message': 'node did not run'}
        self.policy = ''
        self.outputs: dict[str, object] = {}   # device name -> spooled file
        self.server = ''
        self.elapsed = 0.0

    @property
    def status(self) -> str:
        return self.report.get('status', 'killed')

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
        self.memory = config_positive_int_value(conf.get('zerovm_maxnexemem', DEFAULT_MEMORY))
        self.fuel = config_positive_int_value(conf.get('zerovm_fuel', DEFAULT_FUEL))
        self.max_nodes = config_positive_int_value(conf.get('zerovm_maxnodes', 1000))
        self.conn_timeout = float(conf.get('conn_timeout', 0.5))
        self.system_images = [n.strip() for n in conf.get('zerovm_sysimage_devices', '').split()
                              if n.strip()][::2]

    @wsgify
    def __call__(self, req: Request):
        if 'X-Zerovm-Execute' not in req.headers:
            return self.app
        try:
            version, account, rest = req.split_path(2, 3, True)
        except ValueError:
            return self.app
        if rest:
            raise HTTPBadRequest(body='POST jobs to the account URL (/v1/<account>)\n')
        if req.method != 'POST':
            return Response(status=501, body='execute a job with POST\n')
        return self.execute(req, version, account)

    # -- request -> nodes --------------------------------------------------------

    def _job_body(self, req: Request) -> bytes:
        if req.content_length is None and req.headers.get('transfer-encoding') != 'chunked':
            raise HTTPBadRequest(body='Must specify Content-Length\n')
        if (req.content_length or 0) > self.max_config:
            raise HTTPRequestEntityTooLarge(body=f'job larger than {self.max_config} bytes\n')
        body = req.body_file.read(self.max_config + 1)
        if len(body) > self.max_config:
            raise HTTPRequestEntityTooLarge(body=f'job larger than {self.max_config} bytes\n')
        return body

    def _authorize(self, req: Request, method: str, path: str, acl_key: str | None) -> None:
        authorize = req.environ.get('swift.authorize')
        if authorize is None:
            return
        sub = _sub(req, method, path)
        if acl_key:
            info = get_container_info(sub.environ, self.app, swift_source=SWIFT_SOURCE)
            if not is_success(info['status']):
                raise HTTPNotFound(body=f'container of {path} does not exist\n')
            sub.acl = info.get(acl_key)
        denied = authorize(sub)
        if denied is not None:
            what = {'POST': 'execute jobs in', 'GET': 'read', 'PUT': 'write'}[method]
            raise HTTPForbidden(body=f'Denied: may not {what} {path}\n')

    def _listing(self, req: Request, path: str):
        marker = ''
        while True:
            query = f'?format=json&limit={LISTING_LIMIT}&marker={quote(marker)}'
            sub = _sub(req, 'GET', path, query)
            resp = sub.get_response(self.app)
            if resp.status_int == 404:
                raise JobError(f'{path[3:]} does not exist')
            if resp.status_int in (401, 403):
                raise HTTPForbidden(body=f'Denied: may not list {path}\n')
            if not is_success(resp.status_int):
                raise HTTPServiceUnavailable(body=f'cannot list {path}: {resp.status}\n')
            items = json.loads(resp.body or b'[]')
            if not items:
                return
            for item in items:
                yield item.get('name') or item.get('subdir')
            marker = items[-1].get('name') or items[-1].get('subdir')

    def _nodes(self, req: Request, account: str) -> list[Node]:
        groups = parse_job(self._job_body(req), account, system_images=self.system_images,
                           max_size=self.max_config)
        return expand(groups,
                      lambda a, c: self._listing(req, f'/v1/{a}/{c}'),
                      lambda a: self._listing(req, f'/v1/{a}'),
                      max_nodes=self.max_nodes)

    def _head(self, req: Request, path: SwiftPath) -> None:
        sub = _sub(req, 'HEAD', '/v1' + path.path)
        resp = sub.get_response(self.app)
        if resp.status_int == 404:
            raise HTTPNotFound(body=f'Error 404 Not Found while fetching {path}\n')
        if resp.status_int in (401, 403):
            raise HTTPForbidden(body=f'Denied: may not read {path}\n')
        if not is_success(resp.status_int):
            raise HTTPServiceUnavailable(body=f'cannot read {path}: {resp.status}\n')

    def _fetch(self, req: Request, path: SwiftPath, limit: int):
        """GET an object as the caller into a spooled file."""
        sub = _sub(req, 'GET', '/v1' + path.path)
        resp = sub.get_response(self.app)
        if resp.status_int == 404:
            raise HTTPNotFound(body=f'Error 404 Not Found while fetching {path}\n')
        if resp.status_int in (401, 403):
            raise HTTPForbidden(body=f'Denied: may not read {path}\n')
        if not is_success(resp.status_int):
            raise HTTPServiceUnavailable(body=f'cannot read {path}: {resp.status}\n')
        out, size = _spooled(), 0
        for chunk in resp.app_iter:
            size += len(chunk)
            if size > limit:
                out.close()
                raise HTTPRequestEntityTooLarge(body=f'{path} is larger than {limit} bytes\n')
            out.write(chunk)
        out.seek(0)
        return out

    # -- running nodes -----------------------------------------------------------

    def _spec(self, node: Node) -> dict:
        devices = []
        for dev in node.devices:
            if dev.writable:
                source = None
            elif dev.path is not None:
                source = 'local' if _attached(node, dev) else 'member'
            else:
                source = None
            devices.append({'name': dev.name, 'access': 'w' if dev.writable else 'r',
                            'random': dev.random, 'source': source})
        return {'name': node.name, 'argv': node.argv, 'env': dict(node.exec.env),
                'devices': devices, 'seed': 0, 'epoch': 0,
                'limits': {'memory': self.memory, 'fuel': self.fuel, 'timeout': self.timeout}}

    def _request_body(self, req: Request, node: Node, program: bytes):
        """The node's tar stream, spooled once so that a retry can send it again."""
        members = [wire.json_member(wire.SPEC, self._spec(node)),
                   wire.bytes_member(wire.EXE, program)]
        inputs = []
        try:
            for dev in node.devices:
                if dev.readable and dev.path is not None and not _attached(node, dev):
                    f = self._fetch(req, dev.path, self.max_input)
                    inputs.append(f)
                    size = f.seek(0, 2)
                    f.seek(0)
                    members.append((wire.DEV_PREFIX + dev.name, size,
                                    iter(lambda f=f: f.read(wire.CHUNK), b'')))
            body = _spooled()
            for chunk in wire.stream_tar(members):
                body.write(chunk)
        finally:
            for f in inputs:
                f.close()
        return body

    def _placement(self, req: Request, node: Node, account: str, job_id: str):
        """(policy index, partition, backend path, candidate servers) for a node."""
        if node.attach is not None and node.attach.readable and node.attach.path is not None:
            p = node.attach.path
            info = get_container_info(_sub(req, 'HEAD', f'/v1/{p.account}/{p.container}').environ,
                                      self.app, swift_source=SWIFT_SOURCE)
            policy = int(info.get('storage_policy') or 0)
            ring = placement.object_ring(self.swift_dir, policy)
            part, servers = placement.nodes_for_object(ring, p.account, p.container, p.obj)
            return policy, part, p.path, servers
        ring = placement.object_ring(self.swift_dir, 0)
        part, servers = placement.any_nodes(ring, job_id + node.name)
        return 0, part, f'/{account}/.zerocloud/{node.name}', iter(servers)

    def _run_node(self, req: Request, node: Node, program: bytes, account: str,
                  job_id: str) -> NodeResult:
        res = NodeResult(node)
        started = time.monotonic()
        body = self._request_body(req, node, program)
        try:
            policy, part, path, servers = self._placement(req, node, account, job_id)
            res.policy = POLICIES.get_by_index(policy).name
            size = body.seek(0, 2)
            headers = {'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/x-tar',
                       'Content-Length': str(size), 'X-Backend-Storage-Policy-Index': str(policy),
                       'X-Trans-Id': req.environ.get('swift.trans_id', ''),
                       'X-Zerocloud-Id': job_id}
            errors = []
            for server in servers:
                where = f'{server["ip"]}:{server["port"]}/{server["device"]}'
                try:
                    if self._try_server(res, server, part, path, headers, body):
                        res.server = where
                        break
                    errors.append(f'{where} {res.report["message"]}')
                except (Exception, Timeout) as e:
                    errors.append(f'{where} {e!r}')
                    self.logger.info('node %s on %s failed: %r', node.name, where, e)
            else:
                res.report = {'status': 'unavailable', 'retcode': None,
                              'message': 'no object server could run the node'
                                         + (f' ({"; ".join(errors[-3:])})' if errors else '')}
        finally:
            body.close()
            res.elapsed = time.monotonic() - started
        return res

    def _try_server(self, res: NodeResult, server: dict, part: int, path: str,
                    headers: dict, body) -> bool:
        with ConnectionTimeout(self.conn_timeout):
            conn = http_connect(server['ip'], server['port'], server['device'], part, 'POST',
                                path, headers)
        with Timeout(self.timeout + NODE_GRACE):
            body.seek(0)
            while chunk := body.read(wire.CHUNK):
                conn.send(chunk)
            resp = conn.getresponse()
            if resp.status != 200:
                reason = resp.read(512).decode('utf-8', 'replace').strip()
                res.report = {'status': 'killed', 'retcode': None,
                              'message': f'{resp.status} {reason}'}
                return False
            for name, f in wire.read_members(resp, wire.REPORT):
                if name == wire.REPORT:
                    res.report = json.loads(f.read(1 << 20))
                elif name.startswith(wire.DEV_PREFIX):
                    out = _spooled()
                    wire.copy_limited(f, out, self.max_input)
                    out.seek(0)
                    res.outputs[name[len(wire.DEV_PREFIX):]] = out
        return True

    # -- the whole job -----------------------------------------------------------

    def execute(self, req: Request, version: str, account: str) -> Response:
        started = time.monotonic()
        self._authorize(req, 'POST', f'/{version}/{account}', None)
        try:
            nodes = self._nodes(req, account)
        except JobError as e:
            raise HTTPBadRequest(body=f'{e}\n') from None
        reads, writes = job_paths(nodes)
        for path in sorted(reads, key=str):
            self._head(req, path)
        for path in sorted(writes, key=str):
            self._authorize(req, 'PUT', '/v1' + path.path, 'write_acl')
        programs = {}
        for node in nodes:
            key = node.exec.path
            if key not in programs:
                f = self._fetch(req, _program_path(node), self.max_nexe)
                programs[key] = f.read()
                f.close()
        job_id = uuid.uuid4().hex
        pool = GreenPool(min(len(nodes), 64))
        results = list(pool.imap(
            lambda n: self._run_node(req, n, programs[n.exec.path], account, job_id), nodes))
        try:
            return self._respond(req, results, time.monotonic() - started)
        finally:
            for r in results:
                r.close()

    def _store(self, req: Request, res: NodeResult) -> None:
        for dev in res.node.devices:
            out = res.outputs.get(dev.name)
            if not dev.writable or dev.path is None or out is None:
                continue
            size = out.seek(0, 2)
            out.seek(0)
            if size < dev.min_size:
                continue
            headers = {'Content-Type': dev.content_type or 'application/octet-stream',
                       'Content-Length': str(size)}
            headers.update({f'X-Object-Meta-{k}': v for k, v in dev.meta.items()})
            sub = _sub(req, 'PUT', '/v1' + dev.path.path, headers=headers)
            sub.environ['wsgi.input'] = out
            sub.content_length = size
            resp = sub.get_response(self.app)
            if not is_success(resp.status_int):
                raise HTTPException(status=resp.status_int if resp.status_int >= 400 else 503,
                                    body=f'storing {dev.path} failed: {resp.status}\n')

    def _respond(self, req: Request, results: list[NodeResult], elapsed: float) -> Response:
        failed = [r for r in results if r.status != 'ok']
        headers = _nexe_headers(results, elapsed)
        if failed:
            status = _failure_status(failed)
            body = ''.join(f'{r.node.name}: {r.status}: {r.report.get("message", "")}\n'
                           for r in failed).encode()
            return Response(status=status, body=body, headers=headers,
                            content_type='text/plain')
        for r in results:
            self._store(req, r)
        parts, content_type = [], None
        for r in results:
            for dev in r.node.devices:
                if dev.writable and dev.path is None and dev.name in r.outputs:
                    out = r.outputs[dev.name]
                    out.seek(0)
                    parts.append(out.read())
                    content_type = content_type or dev.content_type
                    break
        body = b''.join(parts)
        headers['Etag'] = hashlib.md5(body).hexdigest()
        return Response(body=body, headers=headers, content_type=content_type or 'text/plain')


def _sub(req: Request, method: str, path: str, query: str = '', **kwargs) -> Request:
    """A sub-request as the caller (same auth) for an unquoted Swift path."""
    return make_subrequest(req.environ, method, quote(path) + query, swift_source=SWIFT_SOURCE,
                           **kwargs)


def _attached(node: Node, dev) -> bool:
    """Is ``dev`` the device whose object is local to the server running ``node``?"""
    return node.attach is not None and node.attach.name == dev.name


def _program_path(node: Node) -> SwiftPath:
    path = node.exec.swift_path
    if path is None:
        raise HTTPBadRequest(body=f'exec path {node.exec.path} of {node.name}: only '
                                  'swift:// programs can run here\n')
    return path


def _failure_status(failed: list[NodeResult]) -> int:
    statuses = {r.status for r in failed}
    if statuses & set(PROGRAM_FAILURES):
        return 422
    if 'timeout' in statuses:
        return 504
    return 503


MAX_HEADER = 8192


def _header(values, sep: str = ',') -> str:
    """One header value per node; commas inside a value would split it, so they go."""
    text = sep.join(str(v).replace(',', ';').replace('\n', ' ') for v in values)
    return text if len(text) <= MAX_HEADER else text[:MAX_HEADER - 3] + '...'


def _nexe_headers(results: list[NodeResult], elapsed: float) -> dict[str, str]:
    def status(r):
        return 'ok' if r.status == 'ok' else f'{r.status}: {r.report.get("message", "")}'

    def validation(r):
        state = (r.report.get('validation') or {}).get('state')
        return {'ok': 0, 'cached': 0, 'failed': 1}.get(state, 2)

    def etags(r):
        tags = r.report.get('etags') or {}
        return ' '.join(f'{k} {v}' for k, v in sorted(tags.items())) or 'disabled'

    def cdr(r):
        acc = r.report.get('accounting') or {}
        chans = (acc.get('channels') or {}).values()
        return [f'{r.elapsed:.3f}',
                f'{acc.get("instructions", 0)} {acc.get("syscalls", 0)} '
                f'{sum(c.get("read_bytes", 0) for c in chans)} '
                f'{sum(c.get("write_bytes", 0) for c in chans)}']

    return {
        'X-Nexe-System': _header(r.node.name for r in results),
        'X-Nexe-Status': _header(map(status, results)),
        'X-Nexe-Retcode': _header('' if r.report.get('retcode') is None
                                  else r.report['retcode'] for r in results),
        'X-Nexe-Validation': _header(map(validation, results)),
        'X-Nexe-Etag': _header(map(etags, results)),
        'X-Nexe-Cdr-Line': _header([f'{elapsed:.3f}', *(x for r in results for x in cdr(r))],
                                   sep=', '),
        'X-Nexe-Policy': _header(r.policy for r in results),
    }


def filter_factory(global_conf: dict, **local_conf):
    conf = dict(global_conf, **local_conf)
    register_swift_info('zerocloud', max_job_size=int(conf.get('zerovm_maxconfig', 65536)),
                        timeout=float(conf.get('zerovm_timeout', DEFAULT_TIMEOUT)))

    def zerocloud_proxy_filter(app):
        return ProxyExecMiddleware(app, conf)
    return zerocloud_proxy_filter

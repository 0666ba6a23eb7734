"""zerocloud.proxy in front of a small fake Swift, with the object servers faked too.

``FakeSwift`` serves accounts, containers (JSON listings) and objects from a
dict and records every call; the object ring is a fixed three-server
``FakeRing``, one object for the test (Swift's ring is one object, reloaded in
place: a new one per look-up hid the proxy's per-ring caches), and the node
transport ``Dispatcher.exchange`` (one node on one object server) is replaced
by a scripted ``Servers``, so these tests see exactly what the filter asks of
Swift and of each object server.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import weakref
from pathlib import Path

import pytest
from swift.common.concurrency import sleep
from swift.common.swob import Request, Response

from zerocloud import config, graph, placement, wire
from zerocloud.object import middleware as object_filter
from zerocloud.proxy import dispatch, uploads
from zerocloud.proxy import middleware as proxy
from zerocloud.proxy.dispatch import (
    Dispatcher,
    _Busy,
    _NeedProgram,
    _NoFilter,
    _Refused,
    _Retry,
)
from zerocloud.proxy.middleware import ProxyExecMiddleware
from zerocloud.proxy.response import HINTS, MAX_HEADER, SUMMARY_NODES, NodeResult, nexe_headers
from zvm_core.validator import VALIDATOR_VERSION

ACCOUNT = '/v1/AUTH_a'
TEXT = b'some text\n'


class FakeSwift:
    """Objects by path (``/v1/a/c/o``) -> (headers, body); every call is recorded."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[dict, bytes]] = {}
        self.calls: list[tuple[str, str, dict]] = []
        self.put_status = 201
        self.put_reason = b''                   # the body of a failed PUT's answer
        self.missing: set[str] = set()          # containers (``/c``) that answer 404
        self.containers: dict[str, dict] = {}   # a container's (``/c``) own headers
        self.listed = 0                         # names the listings (pages) answered

    def add(self, path: str, body: bytes = TEXT, **headers) -> None:
        self.objects[ACCOUNT + path] = (headers, body)

    def __call__(self, env, start_response):
        req = Request(env)
        self.calls.append((req.method, req.path, dict(req.headers)))
        parts = req.path.split('/')
        if req.method == 'PUT':
            body = req.environ['wsgi.input'].read()
            if self.put_status == 201:
                self.objects[req.path] = (dict(req.headers), body)
            resp = Response(status=self.put_status, body=self.put_reason)
        elif req.path[len(ACCOUNT):] in self.missing:
            resp = Response(status=404)
        elif len(parts) <= 4:                    # account or container
            prefix = req.path + '/'
            names = sorted(p[len(prefix):] for p in self.objects if p.startswith(prefix))
            marker, begins = req.params.get('marker', ''), req.params.get('prefix', '')
            names = [n for n in names if n > marker and n.startswith(begins)
                     ][:int(req.params.get('limit', 10000))]
            self.listed += len(names) if 'marker' in req.params else 0
            resp = Response(status=200 if req.method == 'GET' else 204,
                            headers={'X-Backend-Storage-Policy-Index': '0',
                                     **self.containers.get(req.path[len(ACCOUNT):], {})},
                            body=json.dumps([{'name': n} for n in names]).encode()
                            if req.method == 'GET' else b'')
        elif req.path in self.objects:
            headers, body = self.objects[req.path]
            resp = Response(headers=headers, body=body if req.method == 'GET' else b'')
            resp.content_length = len(body)
        else:
            resp = Response(status=404)
        return resp(env, start_response)

    def called(self, method: str, path: str) -> int:
        return sum(1 for m, p, _h in self.calls if (m, p) == (method, ACCOUNT + path))


class FakeRing:
    """Three servers, two replicas, every object in partition 5; counts the look-ups of
    a partition's primaries and copies their dicts, as Swift's ring does."""

    devs = [{'id': i, 'ip': '10.0.0.1', 'port': 6200 + i, 'device': f'd{i}'} for i in range(3)]
    partition_count = 8
    replica_count = 2

    def __init__(self) -> None:
        self.asked = 0

    def get_part(self, account: str, container: str, obj: str) -> int:
        return 5

    def get_part_nodes(self, part: int):
        self.asked += 1
        return [dict(d) for d in self.devs[:2]]

    @classmethod
    def install(cls, monkeypatch) -> FakeRing:
        """One ring for every policy look-up, as Swift's ``POLICIES.get_object_ring``."""
        ring = cls()
        monkeypatch.setattr(placement, 'object_ring', lambda swift_dir, policy: ring)
        return ring

    def get_more_nodes(self, part: int):
        yield self.devs[2]


def ok(stdout: bytes = b'out\n', status: str = 'ok', retcode: int | None = 0,
       stderr: str = ''):
    """A server answer: the node ran and wrote ``stdout`` (and ``stderr``)."""
    def answer(plan, headers, members):
        out = tempfile.SpooledTemporaryFile()
        out.write(stdout)
        report = {'status': status, 'retcode': retcode, 'message': f'it said {status}',
                  'stderr': stderr,
                  'validation': {'state': 'ok'},
                  'etags': {'/dev/stdout': hashlib.md5(stdout).hexdigest()},
                  'accounting': {'fuel': 7, 'syscalls': 3, 'channels': {}}}
        return report, {'stdout': out}
    return answer


class Servers:
    """Scripted object servers by port: an answer (see ``ok``) or an exception."""

    def __init__(self, **by_device) -> None:
        self.script = by_device
        self.asked: list[tuple[str, dict, dict[str, bytes]]] = []

    def __call__(self, server, plan, headers, members, links=None, sent=None):
        body = b''.join(wire.stream_tar(members()))
        fed: dict[str, bytes] = {}
        if 'Transfer-Encoding' in headers:            # links follow, as they arrive
            assert headers['Transfer-Encoding'] == 'chunked' and links.inputs
            for name, _size, chunks in graph.Feeder(links.inputs).members():
                kind, _, dev = name.partition('/')
                if kind + '/' == wire.PART_PREFIX:
                    fed[wire.DEV_PREFIX + dev] = fed.get(wire.DEV_PREFIX + dev, b'') + \
                        b''.join(chunks)
        else:
            assert len(body) == int(headers['Content-Length'])
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            asked = {m.name: tar.extractfile(m).read() for m in tar}
        self.asked.append((server['device'], headers, {**asked, **fed}))
        action = self.script.get(server['device'], _Retry('connection refused'))
        if isinstance(action, Exception):
            raise action
        if links is not None and links.running is not None:
            links.running()
        report, outputs = action(plan, headers, lambda: [
            *members(), *(wire.bytes_member(k, v) for k, v in fed.items())])
        report = wire.NodeReport.from_json(json.dumps(report).encode())    # as it travels
        for name in [k for k in outputs if k.startswith(graph.OUT)]:
            out = outputs.pop(name)            # the object server sends these as parts
            if links is not None and links.outputs is not None:
                out.seek(0)
                graph.Relay(links.outputs).add(name[len(graph.OUT):], out)
            out.close()
        return report, outputs


@pytest.fixture
def swift() -> FakeSwift:
    fake = FakeSwift()
    fake.add('/bin/wc', b'\x7fELF program')
    fake.add('/c/data')
    return fake


@pytest.fixture
def servers(monkeypatch):
    """``servers(**script)``: object servers faked by ``Servers`` (or ``kind``), each
    node sent alone (tests/unit/test_batches.py fakes batches)."""
    def install(kind: type | None = None, **script) -> Servers:
        fake = (kind or Servers)(**script)
        monkeypatch.setattr(Dispatcher, 'exchange', fake)
        monkeypatch.setattr(proxy, 'batchable', lambda plan: False)
        return fake
    return install


def job(stdin: str = 'swift://~/c/data', stdout: dict | None = None, **group) -> list[dict]:
    return [{'name': 'wc', 'exec': {'path': 'swift://~/bin/wc'},
             'devices': [{'name': 'stdin', 'path': stdin}, stdout or {'name': 'stdout'}],
             **group}]


def post(app, body, **headers):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = Request.blank(ACCOUNT, method='POST', body=data, headers={
        'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/json', **headers})
    return req.get_response(app)


def post_writing(app, path: str, authorize=lambda req: None):
    """A job writing its stdout to ``path``, posted with an auth (``swift.authorize``)."""
    body = json.dumps(job(stdout={'name': 'stdout', 'path': path}))
    req = Request.blank(ACCOUNT, method='POST', body=body.encode(),
                        headers={'X-Zerovm-Execute': '1.0',
                                 'Content-Type': 'application/json'},
                        environ={'swift.authorize': authorize})
    return req.get_response(app)


def denying(swift: FakeSwift, account: str):
    """``swift``, but answering 403 for ``account``'s objects, as Swift does to a caller
    of another account."""
    def app(env, start_response):
        if env['PATH_INFO'].startswith(f'/v1/{account}/'):
            return Response(status=403)(env, start_response)
        return swift(env, start_response)
    return app


# -- pass-through and entry checks ------------------------------------------------------------

def test_other_requests_pass_through(mw, swift) -> None:
    resp = Request.blank(ACCOUNT + '/c/data').get_response(mw)
    assert resp.body == TEXT and 'X-Zerovm-Valid' not in resp.headers
    resp = Request.blank(ACCOUNT + '/c/x', method='PUT', body=b'abc').get_response(mw)
    assert resp.status_int == 201 and swift.objects[ACCOUNT + '/c/x'][1] == b'abc'
    assert [(m, p) for m, p, _h in swift.calls] == [('GET', ACCOUNT + '/c/data'),
                                                    ('PUT', ACCOUNT + '/c/x')]


@pytest.mark.parametrize(('version', 'shown'), [(VALIDATOR_VERSION, True), ('0', False)])
@pytest.mark.parametrize('method', ['GET', 'HEAD'])
def test_get_and_head_show_a_current_stored_verdict(mw, swift, method: str, version: str,
                                                    shown: bool) -> None:
    swift.add('/bin/bad', **{'X-Object-Sysmeta-Zerovm-Valid': 'false',
                             'X-Object-Sysmeta-Zerovm-Validator': version,
                             'X-Object-Sysmeta-Zerovm-Validation-Error': 'I3 rdrand'})
    resp = Request.blank(ACCOUNT + '/bin/bad', method=method).get_response(mw)
    assert resp.status_int == 200
    if shown:
        assert resp.headers['X-Zerovm-Valid'] == 'false'
        assert resp.headers['X-Zerovm-Validation-Error'] == 'I3 rdrand'
    else:
        assert 'X-Zerovm-Valid' not in resp.headers


@pytest.mark.parametrize(('method', 'path', 'headers', 'status', 'says'), [
    # a POST with no body (curl -X POST) was told only "Must specify Content-Length"
    ('POST', ACCOUNT + '/c/o', {}, 400, b'Nothing to run: this POST has no body and no '
                                        b'X-Zerovm-Source: send the job (its JSON description, '
                                        b'a zapp or a script) as the body, with its '
                                        b'Content-Length, or name a stored one with '
                                        b'X-Zerovm-Source\n'),
    ('POST', ACCOUNT, {'X-Zerovm-Source': 'http://x/y'}, 412, b'X-Zerovm-Source format'),
    ('POST', ACCOUNT, {'X-Zerovm-Deferred': 'later'}, 400, b'always, auto, never'),
    # an open naming no object was ZeroCloud's 412 "Bad URL": the URL is the mistake
    ('GET', ACCOUNT + '/c', {'X-Zerovm-Execute': 'open/1.0'}, 400,
     b'open runs an app over an object, and swift://AUTH_a/c is a container: add '
     b'/<object> to the URL (GET /open/<account>/<container>/<object>)\n'),
    ('GET', '/open/AUTH_a', {'X-Zerovm-Execute': ''}, 400,
     b'open runs an app over an object, and swift://AUTH_a is an account: add '
     b'/<container>/<object> to the URL (GET /open/<account>/<container>/<object>)\n'),
    ('POST', ACCOUNT, {'X-Zerovm-Report': 'xml'}, 400, b'must be "json"'),
    ('POST', ACCOUNT, {'Content-Length': '5000'}, 413, b'larger than zerovm_maxconfig'),
])
def test_requests_that_cannot_be_jobs(mw, swift, method, path, headers, status, says) -> None:
    req = Request.blank(path, method=method, headers={'X-Zerovm-Execute': '1.0', **headers})
    resp = req.get_response(mw)
    assert resp.status_int == status
    assert says in resp.body
    assert swift.calls == []


@pytest.mark.parametrize('method', ['GET', 'HEAD', 'PUT', 'DELETE'])
@pytest.mark.parametrize('path', [ACCOUNT, ACCOUNT + '/c', ACCOUNT + '/c/o'])
def test_a_job_not_posted_is_the_callers_mistake(mw, swift, method: str, path: str) -> None:
    """A 4xx that says how to run it, not a 5xx: the server can run jobs."""
    req = Request.blank(path, method=method, headers={'X-Zerovm-Execute': '1.0'})
    resp = req.get_response(mw)
    assert resp.status_int == 405
    assert resp.headers['Allow'] == 'POST'
    if method != 'HEAD':
        assert b'POST the job' in resp.body
    assert swift.calls == []


def test_the_filter_leaves_what_the_proxy_loaded_out_of_full_gc_passes() -> None:
    """A full pass of the garbage collector during a 3,000-node job walked every object
    the proxy had loaded: the longest stretch without a turn of the hub (~50 ms of CPU;
    bench/proxy_scale.py --gc, doc/operator-guide.md).  Built by paste, the filter
    freezes them (gc.freeze) once the pipeline's app is built, collecting first."""
    gc.unfreeze()
    garbage = type('Garbage', (), {})          # a class is a cycle: only a pass frees it
    freed = weakref.ref(garbage)
    del garbage
    try:
        proxy.filter_factory({})(FakeSwift())
        assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()
        assert freed() is None                  # collected first, not frozen
    finally:
        gc.unfreeze()


PLAIN = 'text/plain; charset=UTF-8'


@pytest.mark.parametrize(('method', 'body', 'status'), [
    ('POST', b'[', 400), ('POST', json.dumps(job(stdin='swift://~/c/nothing*')).encode(), 404),
    ('GET', b'', 405), ('POST', b'x' * 5000, 413)],
    ids=['malformed-job', 'no-object', 'not-posted', 'too-large'])
def test_an_error_of_the_filter_is_plain_text(mw, swift, method, body, status) -> None:
    """What the filter answers an error with is a line of text, said to be one (swob's
    default is text/html)."""
    resp = Request.blank(ACCOUNT, method=method, body=body, headers={
        'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/json'}).get_response(mw)
    assert resp.status_int == status
    assert resp.headers['Content-Type'] == PLAIN, resp.body


def test_a_query_not_posted_is_the_callers_mistake(mw, swift) -> None:
    req = Request.blank(ACCOUNT, headers={'X-Zerovm-Execute': 'sql/1.0'})
    resp = req.get_response(mw)
    assert (resp.status_int, resp.headers['Allow']) == (405, 'POST')
    assert b'POST the query' in resp.body and swift.calls == []


@pytest.mark.parametrize('path', ['/info', '/auth/v1.0'])
def test_execute_on_a_non_swift_path_passes_through(mw, swift, path: str) -> None:
    Request.blank(path, headers={'X-Zerovm-Execute': '1.0'}).get_response(mw)
    assert [(m, p) for m, p, _h in swift.calls] == [('GET', path)]


def test_a_program_over_zerovm_maxnexe_is_a_413_naming_the_option(swift, servers) -> None:
    # said "... is larger than 8 bytes": the user could not tell which limit, or whose
    swift.add('/bin/wc', b'\x7fELF program, 20 bytes')
    resp = post(ProxyExecMiddleware(swift, {'zerovm_maxnexe': '8'}), job())
    assert (resp.status_int, resp.body) == (
        413, b'swift://AUTH_a/bin/wc is larger than zerovm_maxnexe (8 bytes)\n')


@pytest.mark.parametrize('account, path, denied, hint', [
    # swift://a/... for AUTH_a: "Denied: may not read swift://a/c/data" left users puzzled
    ('a', 'c/data', b'read swift://a/c/data',
     b'your account is AUTH_a: did you mean swift://~/c/data?'),
    # swift://b/... for AUTH_b: "Denied: may not read swift://b/c/data" and nothing more
    ('b', 'c/data', b'read swift://b/c/data',
     b'accounts are named AUTH_<name>: did you mean swift://AUTH_b/c/data?'),
    # swift://b/c/*.csv for AUTH_b: "Denied: may not list swift://b/c" and nothing more,
    # where a read of one object of it named the account it likely meant
    ('a', 'c/*.csv', b'list swift://a/c', b'your account is AUTH_a: did you mean swift://~/c?'),
    ('b', 'c/*.csv', b'list swift://b/c',
     b'accounts are named AUTH_<name>: did you mean swift://AUTH_b/c?'),
])
def test_a_denied_read_or_listing_of_an_account_without_its_prefix_says_so(
        mw, swift, servers, account: str, path: str, denied: bytes, hint: bytes) -> None:
    mw.app = denying(swift, account)
    resp = post(mw, job(stdin=f'swift://{account}/{path}'))
    assert (resp.status_int, resp.body) == (403, b'Denied: may not %s (%s)\n' % (denied, hint))


def test_nodes_without_data_that_share_a_location_go_to_one_server(mw, swift,
                                                                    servers) -> None:
    # "location" was parsed and then ignored: three nodes of "x" ran on two servers
    asked = servers(d0=ok(), d1=ok(), d2=ok())
    resp = post(mw, [{'name': 'a', 'exec': {'path': 'swift://~/bin/wc'}, 'count': 6,
                      'location': 'x', 'devices': [{'name': 'stdout'}]}])
    assert resp.status_int == 200, resp.body
    assert len({device for device, _h, _s in asked.asked}) == 1 and len(asked.asked) == 6


def test_a_denied_post_is_a_403_before_anything_is_read(mw, swift, servers) -> None:
    asked = servers()
    req = Request.blank(ACCOUNT, method='POST', body=json.dumps(job()).encode(), headers={
        'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/json'})
    req.environ['swift.authorize'] = lambda r: Response(status=403)
    resp = req.get_response(mw)
    assert resp.status_int == 403
    assert resp.body == b'Denied: may not execute jobs in swift://AUTH_a\n'
    assert swift.calls == [] and asked.asked == []


@pytest.mark.parametrize(('body', 'status', 'says'), [
    (b'[', 400, b'not valid JSON'),
    (job(count=0), 400, b'Invalid node count in wc'),
    (job(stdin='swift://~/c/nothing*'), 404, b'No objects found in path'),
    (job(stdin='swift://demo/lines'), 400, b'reading a container (swift://demo/lines, device '
                                           b'stdin of wc) is not supported (did you mean '
                                           b'swift://~/demo/lines?)'),
    (job(stdin='swift://~/c/gone'), 404, b'Error 404 Not Found while fetching '
                                         b'swift://AUTH_a/c/gone (device stdin of wc)\n'),
    # a missing object said which, not who read it: the node and its device now
    ([{**job()[0], 'exec': {'path': 'swift://~/bin/none'}}], 404,
     b'Error 404 Not Found while fetching swift://AUTH_a/bin/none (the program of wc)\n'),
    ([{**job()[0], 'devices': [*job()[0]['devices'], {'name': 'input',
                                                      'path': 'swift://~/c/gone'}]}], 404,
     b'Error 404 Not Found while fetching swift://AUTH_a/c/gone (device input of wc)\n'),
    (job(count=2, connect=['wc']), 400, b'Cannot connect wc to itself (wc -> wc): its nodes '
                                         b'would have to run at the same time'),
    (job(replicate=3), 400, b'Invalid replicate in wc: 3 runs need 3 different servers, '
                            b'there are 2 (replicas of swift://AUTH_a/c/data)'),
])
def test_a_bad_job_runs_nothing(mw, servers, body, status, says) -> None:
    asked = servers()
    resp = post(mw, body)
    assert resp.status_int == status
    assert says in resp.body
    assert asked.asked == []


def test_an_output_name_longer_than_swift_allows_is_a_400_before_any_node_runs(
        mw, swift, servers) -> None:
    # Swift refused it only when the result was stored: a 400 after the job ran
    asked = servers()
    resp = post(mw, job(stdout={'name': 'stdout', 'path': 'swift://~/out/' + 'r' * 1025}))
    assert resp.status_int == 400
    assert resp.body.startswith(b'Output path too long for device stdout in wc: object name '
                                b'is 1025 bytes, Swift allows at most 1024')
    # a name filled from the input's, per node as it is made: here in the first chunk
    swift.add('/in/a')
    swift.add('/in/' + 'b' * 1021)
    resp = post(mw, job(stdin='swift://~/in/*', stdout={'name': 'stdout',
                                                        'path': 'swift://~/out/*.res'}))
    assert resp.status_int == 400
    assert resp.body.startswith(b'Output path too long for device stdout of node wc-2 in wc '
                                b'(its "*" filled from the input\'s name): object name is 1025')
    assert asked.asked == []


@pytest.mark.parametrize('asked', ['sql', '2.0', 'open'])
def test_an_unknown_execute_version_is_a_400_naming_the_known_ones(mw, servers,
                                                                   asked: str) -> None:
    # it ran as a job (1.0): `sql` with a query as the body was "not a JSON list"
    asked_servers = servers()
    resp = post(mw, job(), **{'X-Zerovm-Execute': asked})
    assert resp.status_int == 400
    assert resp.body == (b'X-Zerovm-Execute must be 1.0 (a job), sql/1.0, open/1.0 or '
                         b'api/1.0, not "' + asked.encode() + b'"\n')
    assert asked_servers.asked == []


def test_a_wildcard_read_as_containers_of_another_account_is_a_400_before_any_listing(
        mw, swift, servers) -> None:
    # a new user's swift://fruit/*.csv (for ~/fruit/*.csv) listed account "fruit": a 403
    # "may not list swift://fruit", no hint
    asked = servers()
    resp = post(mw, job(stdin='swift://fruit/*.csv'))
    assert resp.status_int == 400
    assert resp.body == (b'reading a container (swift://fruit/*.csv, device stdin of wc) is not '
                         b'supported (did you mean swift://~/fruit/*.csv?)\n')
    assert swift.calls == [] and asked.asked == []


def test_a_wildcard_over_a_missing_container_is_a_404(mw, swift, servers) -> None:
    # the data is not there, as for a missing object: not a bad job (400)
    swift.missing.add('/nowhere')
    asked = servers()
    resp = post(mw, job(stdin='swift://~/nowhere/*.txt'))
    assert resp.status_int == 404
    assert resp.body == b'container swift://AUTH_a/nowhere does not exist\n'
    assert asked.asked == []


def test_a_missing_object_of_a_missing_container_says_the_container_is_missing(
        mw, swift, servers) -> None:
    # swift://~/sale/x.csv for ~/sales/x.csv: "Error 404 Not Found while fetching
    # swift://AUTH_a/sale/x.csv" sent the user looking for a misspelt object
    swift.missing.add('/nowhere')
    asked = servers()
    resp = post(mw, job(stdin='swift://~/nowhere/x.csv'))
    assert (resp.status_int, resp.body) == (
        404, b'Error 404 Not Found while fetching swift://AUTH_a/nowhere/x.csv (device stdin '
             b'of wc): container swift://AUTH_a/nowhere does not exist\n')
    assert asked.asked == []


def test_a_query_of_an_object_of_a_missing_container_says_the_container_is_missing(
        mw, swift, servers) -> None:
    swift.missing.add('/nowhere')
    query = ProxyExecMiddleware(swift, {'zerovm_sysimage_devices': 'sqlite /no/sqlite.tar'})
    resp = post(query, {'query': 'SELECT 1 FROM swift://~/nowhere/x.csv'},
                **{'X-Zerovm-Execute': 'sql/1.0'})
    assert (resp.status_int, resp.body) == (
        404, b'Error 404 Not Found while fetching swift://AUTH_a/nowhere/x.csv: container '
             b'swift://AUTH_a/nowhere does not exist\n')


def test_a_wildcard_matching_nothing_is_named_as_written_by_a_job_and_a_query(
        mw, swift, servers) -> None:
    # a job said swift://AUTH_a/c/d%C3%A9j%C3%A0-%5B12%5D*, a query the name as written
    query = ProxyExecMiddleware(swift, {'zerovm_sysimage_devices': 'sqlite /no/sqlite.tar'})
    path = 'swift://~/c/déjà-[12]*'
    said = 'No objects found in path swift://AUTH_a/c/déjà-[12]*'.encode()
    resp = post(mw, job(stdin=path))
    assert (resp.status_int, resp.body) == (404, said + b' in wc (only * is a wildcard: a ? '
                                                        b'or [ is part of the name)\n')
    resp = post(query, {'query': f'SELECT 1 FROM {path}'}, **{'X-Zerovm-Execute': 'sql/1.0'})
    assert (resp.status_int, resp.body) == (404, said + b' (the one wildcard of a FROM URL '
                                                        b'is *)\n')


@pytest.mark.parametrize('path, says', [
    ('swift://~/nowhere/out.txt',
     b'container swift://AUTH_a/nowhere does not exist: a job writes '
     b'swift://AUTH_a/nowhere/out.txt only into a container that exists (create it '
     b'first: swift post nowhere)\n'),
    # another account written without its prefix: creating the container would not help
    ('swift://others/nowhere/out.txt',
     b'container swift://others/nowhere does not exist (of swift://others/nowhere/out.txt) '
     b'(accounts are named AUTH_<name>: did you mean swift://AUTH_others/nowhere/out.txt?)\n'),
    # another account's (FakeSwift's missing /nowhere is AUTH_b's too): "swift post" would
    # make one in yours; only its owner can make it there
    ('swift://AUTH_b/nowhere/out.txt',
     b'container swift://AUTH_b/nowhere does not exist: a job writes '
     b'swift://AUTH_b/nowhere/out.txt only into a container that exists (swift://AUTH_b/'
     b'nowhere is of account AUTH_b, not yours (AUTH_a): only its owner can change it; ask '
     b'them to create it and add you to its write ACL (X-Container-Write))\n'),
])
def test_a_missing_container_of_a_written_object_is_a_404_saying_what_to_do(
        mw, swift, servers, path: str, says: bytes) -> None:
    # "container of swift://AUTH_a/nowhere/out.txt does not exist": not which container,
    # nor that a job does not create the containers it writes into
    swift.missing.add('/nowhere')
    asked = servers()
    resp = post_writing(mw, path)
    assert (resp.status_int, resp.body) == (404, says)
    assert asked.asked == []


def test_a_written_containers_info_not_read_is_a_503_not_a_missing_container(
        mw, swift, servers, monkeypatch) -> None:
    # its container servers down: "container ... does not exist: create it first" sent
    # the user to create a container that is there
    from zerocloud.proxy import caller
    monkeypatch.setattr(caller, 'get_container_info', lambda env, app, **kw: {'status': 503})
    asked = servers()
    resp = post_writing(mw, 'swift://~/out/x.txt')
    assert (resp.status_int, resp.body) == (
        503, b'cannot read the container of swift://AUTH_a/out/x.txt: 503, try again\n')
    assert asked.asked == []


def test_a_written_object_of_another_account_denied_says_whom_to_ask(mw, swift,
                                                                     servers) -> None:
    # "Denied: may not write swift://AUTH_b/drop/out.txt": nothing of whose ACL it is
    asked = servers()
    resp = post_writing(mw, 'swift://AUTH_b/drop/out.txt', lambda req: Response(status=403)
                        if req.path.startswith('/v1/AUTH_b/') else None)
    assert (resp.status_int, resp.body) == (
        403, b'Denied: may not write swift://AUTH_b/drop/out.txt (swift://AUTH_b/drop is of '
             b'account AUTH_b, not yours (AUTH_a): only its owner can change it; ask them to '
             b'add you to its write ACL (X-Container-Write))\n')
    assert asked.asked == []


@pytest.mark.parametrize('stdin, denied', [
    ('swift://AUTH_b/shared/in.txt', b'read swift://AUTH_b/shared/in.txt'),
    ('swift://AUTH_b/shared/*.txt', b'list swift://AUTH_b/shared')])
def test_a_read_of_another_accounts_object_denied_says_whom_to_ask(
        mw, swift, servers, stdin: str, denied: bytes) -> None:
    # "Denied: may not read swift://AUTH_b/...": nothing, where a denied write named the
    # container's write ACL and who can grant it
    asked = servers()
    mw.app = denying(swift, 'AUTH_b')
    resp = post(mw, job(stdin=stdin))
    assert (resp.status_int, resp.body) == (
        403, b'Denied: may not %s (swift://AUTH_b/shared is of account AUTH_b, not yours '
             b'(AUTH_a): only its owner can change it; ask them to add you to its read ACL '
             b'(X-Container-Read))\n' % denied)
    assert asked.asked == []


@pytest.mark.parametrize('path, headers', [
    ('/open/AUTH_b/shared/doc', {}),
    ('/v1/AUTH_b/shared/doc', {'X-Zerovm-Execute': 'open/1.0'})])
def test_an_open_of_another_accounts_object_denied_says_whom_to_ask(
        mw, swift, servers, path: str, headers: dict) -> None:
    # "Denied: may not read swift://AUTH_b/shared/doc" and nothing more: an open's URL
    # names the object's account, taken for the caller's, so no hint was given
    asked = servers()
    mw.app = denying(swift, 'AUTH_b')
    resp = Request.blank(path, headers=headers).get_response(mw)
    assert (resp.status_int, resp.body) == (
        403, b'Denied: may not read swift://AUTH_b/shared/doc (swift://AUTH_b/shared is of '
             b'account AUTH_b: only its owner can change it; ask them to add you to its read '
             b'ACL (X-Container-Read), then run your job over it from your own account: an '
             b'open runs as a job of AUTH_b, and only who may run jobs there can open its '
             b'objects)\n')
    assert asked.asked == []


def test_a_program_known_invalid_is_refused(mw, swift, servers) -> None:
    swift.add('/bin/wc', b'\x7fELF', **{'X-Object-Sysmeta-Zerovm-Valid': 'false',
                                        'X-Object-Sysmeta-Zerovm-Validator': VALIDATOR_VERSION,
                                        'X-Object-Sysmeta-Zerovm-Validation-Error': 'I3 x'})
    asked = servers()
    resp = post(mw, job())
    assert resp.status_int == 422
    assert resp.body == b'program swift://AUTH_a/bin/wc is not valid (checked at upload): I3 x\n'
    assert asked.asked == []


@pytest.mark.parametrize('header', ['X-Object-Manifest', 'X-Static-Large-Object'])
def test_a_large_object_is_not_an_input(mw, swift, servers, header: str) -> None:
    swift.add('/c/data', b'', **{header: 'c/segments'})
    resp = post(mw, job())
    assert resp.status_int == 409
    assert header.encode() in resp.body
    # where its data is, as a job reads it: the segments, a node each; and that a line
    # may be cut between two (it did not say: a node each counted 495 lines of 492)
    cut = (b' (a segment ends at a byte count, so a line may be cut between two nodes: for '
           b'records, upload parts that end at line ends instead, e.g. split -C 1G)\n')
    assert resp.body.endswith({
        'X-Object-Manifest': b'; its data is in its segments: swift://AUTH_a/c/segments* runs '
                             b'a node on each' + cut,
        'X-Static-Large-Object': b'; its data is in its segments, objects of their own (swift '
                                 b'upload puts them in <container>_segments): a * over them '
                                 b'runs a node on each' + cut}[header]), resp.body


# -- running nodes --------------------------------------------------------------------------------

def test_the_node_runs_next_to_its_object(mw, swift, servers) -> None:
    asked = servers(d0=ok(b'counted\n'))
    resp = post(mw, job())
    assert resp.status_int == 200, resp.body
    assert resp.body == b'counted\n'
    assert resp.headers['Etag'] == hashlib.md5(b'counted\n').hexdigest()
    assert resp.headers['X-Nexe-Host'] == '10.0.0.1:6200/d0'
    assert resp.headers['X-Nexe-Cdr-Line'].split(', ')[2] == '7 3 0 0'
    (device, headers, sent), = asked.asked
    assert headers[wire.ACCESS] == 'GET' and headers['Expect'] == '100-continue'
    assert set(sent) == {wire.SPEC, wire.EXE}
    assert sent[wire.EXE] == b'\x7fELF program'
    spec = json.loads(sent[wire.SPEC])
    assert spec['argv'] == ['wc']
    assert [(d['name'], d['source']) for d in spec['devices']] == [('stdin', 'local'),
                                                                   ('stdout', None)]


def test_a_node_moves_on_from_servers_that_cannot_run_it(mw, servers) -> None:
    asked = servers(d0=_Retry('503 Slot not available'), d1=ok())
    resp = post(mw, job())
    assert resp.status_int == 200
    assert resp.headers['X-Nexe-Host'] == '10.0.0.1:6201/d1'
    assert [a[0] for a in asked.asked] == ['d0', 'd1']


def test_no_server_can_run_the_node(mw, servers) -> None:
    asked = servers(d0=_Retry('503 Slot not available'), d1=_Retry('507 no disk'))
    resp = post(mw, job())
    assert resp.status_int == 503
    assert resp.headers['X-Nexe-Status'] == 'unavailable'
    assert resp.headers['X-Nexe-Host'] == ''
    error = resp.headers['X-Nexe-Error']
    assert error.startswith('wc: no object server could run the node')
    assert '10.0.0.1:6200/d0 503 Slot not available' in error and '507 no disk' in error
    assert [a[0] for a in asked.asked] == ['d0', 'd1', 'd2']     # the handoff too


def test_servers_without_the_object_filter_say_the_whole_fix(mw, servers) -> None:
    # the node's error cut each server's answer at 120 characters: "... just before
    # object-serv...", without where the guide says how
    servers(d0=_NoFilter(400), d1=_NoFilter(400), d2=_NoFilter(400))
    resp = post(mw, job())
    assert resp.headers['X-Nexe-Status'] == 'unavailable'
    fix = str(_NoFilter(400))
    assert fix.endswith('(doc/operator-guide.md, "Where the filters go")')
    assert f'10.0.0.1:6200/d0 {fix}; 10.0.0.1:6201/d1 {fix}' in resp.body.decode()


def test_a_server_busy_with_the_jobs_own_nodes_is_asked_again(mw, swift, servers) -> None:
    swift.add('/c/data2')
    full = [_Busy('503 Slot not available')] * 2

    def d0(plan, headers, members):
        if plan.node.name == 'wc-1':
            sleep(0.2)                     # wc-1 holds d0's only worker meanwhile
        elif full:
            raise full.pop()
        return ok()(plan, headers, members)
    asked = servers(d0=d0, d1=_Busy('503 Slot not available'), d2=_Retry('404 not here'))
    resp = post(mw, job(stdin='swift://~/c/data*'))
    assert resp.status_int == 200, resp.body
    assert resp.headers['X-Nexe-Host'] == '10.0.0.1:6200/d0,10.0.0.1:6200/d0'
    # d1 is busy with other work: asked once; d0 again until wc-1 left
    assert [a[0] for a in asked.asked] == ['d0', 'd0', 'd1', 'd2', 'd0', 'd0']


def test_servers_busy_with_other_work_end_the_node_at_once(mw, servers) -> None:
    asked = servers(d0=_Busy('503 Slot not available'), d1=_Busy('503 Slot not available'))
    resp = post(mw, job())
    assert resp.status_int == 503
    assert resp.headers['X-Nexe-Status'] == 'unavailable'
    assert '503 Slot not available' in resp.headers['X-Nexe-Error']
    assert [a[0] for a in asked.asked] == ['d0', 'd1', 'd2']


SHARE = ('503 Slot not available: account AUTH_a has 10 nodes here, its share '
         '(2 running, 8 waiting)')


def test_servers_full_of_the_accounts_share_say_so_once_each_and_what_to_do(mw, servers) -> None:
    servers(d0=_Busy(SHARE), d1=_Busy(SHARE), d2=_Busy(SHARE))
    resp = post(mw, job())
    assert resp.status_int == 503
    hint = ("wc: no object server could run the node: account AUTH_a's own running jobs "
            "(its deferred jobs too) hold its share of these servers' slots; retry when they end")
    assert resp.headers['X-Nexe-Error'].startswith(hint)
    assert resp.body.decode().splitlines()[0] == (
        hint.replace('wc: ', 'wc: unavailable: ') + ' (10.0.0.1:6200/d0 ' + SHARE +
        '; 10.0.0.1:6201/d1 ' + SHARE + '; 10.0.0.1:6202/d2 ' + SHARE + ')')


def test_a_server_asked_again_is_named_once_with_a_count() -> None:
    """A server busy with the job's own nodes is asked until the timeout: its answer
    is the same each time."""
    busy = '10.0.0.1:6200/d0 503 Slot not available: 2 nodes running, 8 waiting'
    errors = ['10.0.0.1:6201/d1 507 no disk', busy, busy, '10.0.0.1:6202/d2 404 gone', busy]
    assert dispatch.unavailable(errors) == (
        'no object server could run the node (10.0.0.1:6201/d1 507 no disk; '
        f'{busy} (3 times); 10.0.0.1:6202/d2 404 gone)')
    many = [f'10.0.0.1:62{i:02}/d{i} 507 no disk' for i in range(5)]
    assert dispatch.unavailable(many) == (
        'no object server could run the node (2 more; ' + '; '.join(many[2:]) + ')')
    assert dispatch.unavailable([]) == 'no object server could run the node'


def test_a_node_spec_no_object_server_reads_is_a_413_before_it_is_sent(
        mw, servers, monkeypatch) -> None:
    monkeypatch.setattr(wire, 'SPEC_LIMIT', 300)
    asked = servers(d0=ok())
    big = job()
    big[0]['exec']['env'] = {'BIG': 'x' * 300}
    resp = post(mw, big)
    assert resp.status_int == 413
    assert resp.headers['X-Nexe-Status'] == 'error'
    assert re.fullmatch(r"wc: its node spec is \d+ bytes; an object server reads 300 at most "
                        r"\(the spec holds the node's argv and env and a device per node it is "
                        r"connected to\): make them smaller", resp.headers['X-Nexe-Error'])
    assert asked.asked == []


@pytest.mark.parametrize('then', ['', '; then: exit 1'])
def test_a_node_out_of_memory_is_told_what_sets_the_limit(mw, servers, then: str) -> None:
    def answer(plan, headers, members):
        report, outputs = ok(status='memory', retcode=None)(plan, headers, members)
        report['message'] = ('memory limit of 1048576 bytes reached (2 allocation(s) refused)'
                             + then)
        return report, outputs
    servers(d0=answer)
    resp = post(mw, job())
    assert resp.status_int == 422
    assert resp.headers['X-Nexe-Status'] == 'memory'
    assert resp.headers['X-Nexe-Error'] == (
        'wc: memory limit of 1048576 bytes reached (2 allocation(s) refused); the limit is '
        'zerovm_maxnexemem in the proxy and object server config (the smaller holds): ask '
        'the operator to raise it' + then)


def test_a_node_over_its_write_quota_is_told_what_sets_the_limit(mw, servers) -> None:
    # it said '(limits: put_size=1000)': a limit the job never set, from an object
    # server's zerovm_maxoutput lower than the proxy's
    def answer(plan, headers, members):
        report, outputs = ok(status='quota', retcode=None)(plan, headers, members)
        report['message'] = ('/dev/stdout: write quota exceeded and the program kept trying '
                             '(limits: put_size=1000)')
        return report, outputs
    servers(d0=answer)
    resp = post(mw, job())
    assert (resp.status_int, resp.headers['X-Nexe-Status']) == (422, 'quota')
    assert resp.headers['X-Nexe-Error'] == (
        'wc: /dev/stdout: write quota exceeded and the program kept trying (limits: '
        'put_size=1000); the limit is zerovm_maxoutput in the proxy and object server config '
        '(the smaller holds): write less or ask the operator to raise it')


@pytest.mark.parametrize('status, http, message, option', [
    ('timeout', 504, 'wall-clock timeout of 60 s', 'zerovm_timeout'),
    ('fuel', 422, 'fuel exhausted at 0x401040: the budget of 100000 bytes of code executed is '
     'used up', 'zerovm_fuel'),
])
def test_a_node_past_its_time_or_fuel_is_told_what_sets_the_limit(
        mw, servers, status: str, http: int, message: str, option: str) -> None:
    # it said 'wall-clock timeout of 60 s' and no more: not what to do about it
    def answer(plan, headers, members):
        report, outputs = ok(status=status, retcode=None)(plan, headers, members)
        report['message'] = message
        return report, outputs
    servers(d0=answer)
    resp = post(mw, job())
    assert (resp.status_int, resp.headers['X-Nexe-Status']) == (http, status)
    assert resp.headers['X-Nexe-Error'] == (
        f'wc: {message}; the limit is {option} in the proxy and object server config (the '
        'smaller holds): an endless loop or too much work for one node: split its input (a * '
        'gives a node each) or ask the operator')


def writing_stdout(stdout_bytes: int, device: str = 'output'):
    """A server answer: the node wrote ``stored`` to ``device`` and ``stdout_bytes`` to
    its stdout (undeclared unless ``device`` is stdout)."""
    def run(plan, headers, members):
        report, outputs = ok(b'stored\n')(plan, headers, members)
        outputs = {device: outputs.pop('stdout')}
        report['etags'] = {f'/dev/{device}': hashlib.md5(b'stored\n').hexdigest()}
        report['accounting']['channels'] = {
            '/dev/stdout': {'reads': 0, 'read_bytes': 0, 'writes': 1,
                            'write_bytes': stdout_bytes},
            f'/dev/{device}': {'reads': 0, 'read_bytes': 0, 'writes': 1, 'write_bytes': 7}}
        return report, outputs
    return run


def test_bytes_written_to_an_undeclared_stdout_are_said_to_be_dropped(mw, swift,
                                                                     servers) -> None:
    """A node that declares only ``output`` and writes to stdout too: the object server
    gave it /dev/null, and only the JSON report's accounting said so; the plain response
    says it in ``X-Nexe-Dropped``.  A declared stdout, or nothing written, leaves the
    headers as they were."""
    answer = writing_stdout
    output_only = job(stdout={'name': 'output', 'path': 'swift://~/c/counted'})
    servers(d0=answer(12))
    resp = post(mw, output_only)
    assert (resp.status_int, resp.body) == (200, b'')
    assert resp.headers['X-Nexe-Dropped'] == 'wc: 12 bytes written to an undeclared stdout'
    assert swift.objects['/v1/AUTH_a/c/counted'][1] == b'stored\n'
    servers(d0=answer(0))
    quiet = post(mw, output_only)
    assert quiet.status_int == 200 and 'X-Nexe-Dropped' not in quiet.headers
    assert set(resp.headers) - set(quiet.headers) == {'X-Nexe-Dropped'}
    servers(d0=answer(7, 'stdout'))       # stdout declared: its bytes are the body
    declared = post(mw, job())
    assert declared.body == b'stored\n' and 'X-Nexe-Dropped' not in declared.headers


@pytest.mark.parametrize('held', [True, False], ids=['held', 'spooled'])
def test_a_large_job_says_how_many_nodes_dropped_bytes(mw, servers, monkeypatch,
                                                       held: bool) -> None:
    """Past 1,000 nodes the headers are a summary, which left ``X-Nexe-Dropped`` out:
    bytes lost without a word.  It counts them now; the JSON report has each node's."""
    from zerocloud.proxy import response, stream
    monkeypatch.setattr(response, 'SUMMARY_NODES', 1)
    if not held:                # past it, the results wait in the job's spool
        monkeypatch.setattr(stream, 'SUMMARY_NODES', 1)
    servers(d0=writing_stdout(12), d1=writing_stdout(12), d2=writing_stdout(12))
    groups = [{'name': name, 'exec': {'path': 'swift://~/bin/wc'},
               'devices': [{'name': 'output'}]} for name in ('a', 'b', 'c')]
    resp = post(mw, groups)
    assert resp.status_int == 200, resp.body
    assert resp.headers['X-Nexe-Nodes'] == '3'
    assert resp.headers['X-Nexe-Dropped'] == '3 nodes: 36 bytes written to an undeclared stdout'
    report = json.loads(post(mw, groups, **{'X-Zerovm-Report': 'json'}).body)
    assert [(n['name'], n['dropped']) for n in report['nodes']] == [
        ('a', 12), ('b', 12), ('c', 12)]
    servers(d0=writing_stdout(0), d1=writing_stdout(0), d2=writing_stdout(0))
    assert 'X-Nexe-Dropped' not in post(mw, groups).headers


@pytest.mark.parametrize('held', [True, False], ids=['held', 'spooled'])
def test_a_large_jobs_summary_counts_a_node_of_replicas_once(mw, servers, monkeypatch,
                                                              held: bool) -> None:
    """It counted each replica: ``X-Nexe-Nodes: 3`` for a node of 2 replicas and one
    alone, and the bytes both replicas wrote to an undeclared stdout as two nodes'."""
    from zerocloud.proxy import response, stream
    monkeypatch.setattr(response, 'SUMMARY_NODES', 1)
    if not held:
        monkeypatch.setattr(stream, 'SUMMARY_NODES', 1)
    servers(d0=writing_stdout(12), d1=writing_stdout(12), d2=writing_stdout(12))
    groups = [{'name': name, 'exec': {'path': 'swift://~/bin/wc'}, 'replicate': replicate,
               'devices': [{'name': 'output'}]} for name, replicate in (('a', 2), ('b', 1))]
    resp = post(mw, groups)
    assert resp.status_int == 200, resp.body
    assert {k: v for k, v in resp.headers.items() if k in (
        'X-Nexe-Nodes', 'X-Nexe-Failed', 'X-Nexe-Replica-Counts', 'X-Nexe-Status-Counts',
        'X-Nexe-Dropped')} == {
        'X-Nexe-Nodes': '2', 'X-Nexe-Failed': '0', 'X-Nexe-Replica-Counts': '1 1, 2 1',
        'X-Nexe-Status-Counts': 'ok 3',
        'X-Nexe-Dropped': '2 nodes: 24 bytes written to an undeclared stdout'}


@pytest.mark.parametrize('large', [False, True], ids=['columns', 'summary'])
def test_an_output_under_its_min_size_is_said_not_stored(mw, swift, servers, monkeypatch,
                                                         large: bool) -> None:
    """An output with a path smaller than its ``min_size`` is not stored, as the job
    asked, and the answer said nothing of it: ``X-Nexe-Dropped`` says it (a count past
    1,000 nodes), with the bytes written to an undeclared stdout."""
    from zerocloud.proxy import response, stream
    if large:
        monkeypatch.setattr(response, 'SUMMARY_NODES', 1)
        monkeypatch.setattr(stream, 'SUMMARY_NODES', 1)
    servers(d0=writing_stdout(3), d1=writing_stdout(3), d2=writing_stdout(3))
    groups = [{'name': name, 'exec': {'path': 'swift://~/bin/wc'},
               'devices': [{'name': 'output', 'path': f'swift://~/c/{name}', 'min_size': size}]}
              for name, size in (('a', 100), ('b', 7))]
    resp = post(mw, groups)
    assert resp.status_int == 200, resp.body
    assert resp.headers['X-Nexe-Dropped'] == (
        '2 nodes: 6 bytes written to an undeclared stdout, 1 output not stored (under their '
        'min_size)' if large else 'a: 3 bytes written to an undeclared stdout, a: output not '
        'stored (7 bytes < min_size 100), b: 3 bytes written to an undeclared stdout')
    assert '/v1/AUTH_a/c/a' not in swift.objects
    assert swift.objects['/v1/AUTH_a/c/b'][1] == b'stored\n'


def test_a_refusal_is_final(swift, servers, monkeypatch) -> None:
    # the request is larger than the proxy's own zerovm_maxinput: the job's inputs
    FakeRing.install(monkeypatch)
    small = ProxyExecMiddleware(swift, {'zerovm_maxnexe': '1000', 'zerovm_maxinput': '2000'})
    asked = servers(d0=_Refused(413, 'request larger than zerovm_maxinput (2000 bytes)'),
                    d1=ok())
    resp = post(small, job())
    assert resp.status_int == 413
    assert resp.headers['X-Nexe-Status'] == 'refused'
    assert resp.headers['X-Nexe-Error'].endswith(
        'refused the node: 413 request larger than zerovm_maxinput (2000 bytes): everything '
        'sent with one node counts (program and image and objects and data from other '
        'nodes); send less or ask the operator to raise zerovm_maxinput (in the proxy and '
        'the object servers)')
    assert [a[0] for a in asked.asked] == ['d0']


def test_an_object_server_whose_maxinput_is_below_the_proxys_is_the_clusters_fault(
        mw, servers) -> None:
    # smalls10: a request within the proxy's zerovm_maxinput that an object server
    # found too large (its own is smaller) ended 'refused', the user's mistake: the
    # operators' configurations are apart, 'error' naming the server and the option
    asked = servers(d0=_Refused(413, 'request larger than zerovm_maxinput (100 bytes)'),
                    d1=ok())
    resp = post(mw, job())
    assert (resp.status_int, resp.headers['X-Nexe-Status']) == (500, 'error')
    assert resp.headers['X-Nexe-Error'] == (
        'wc: 10.0.0.1:6200/d0 refused the node: 413 request larger than zerovm_maxinput '
        f"(100 bytes): below the proxy's zerovm_maxinput ({1 << 30} bytes): a configuration "
        "mismatch; the operator should set the object server's as the proxy's")
    assert [a[0] for a in asked.asked] == ['d0']


@pytest.mark.parametrize(('server_limit', 'part_sent', 'status', 'says'), [
    (2000, 1500, (413, 'refused'), 'send less or ask the operator to raise zerovm_maxinput'),
    (100, 0, (500, 'error'), "below the proxy's zerovm_maxinput (2000 bytes)"),
])
def test_a_chunked_request_refused_as_too_large_is_judged_on_the_limits(
        swift, monkeypatch, server_limit: int, part_sent: int, status: tuple,
        says: str) -> None:
    """smalls10: a request streaming links (chunked: its size unknown) was judged on the
    bytes sent when the 413 came: a server with the proxy's own limit was called a
    configuration mismatch (1500 <= 2000), one below it the job's mistake (nothing
    counted yet).  The server's 413 names its limit: that against the proxy's decides."""
    FakeRing.install(monkeypatch)
    small = ProxyExecMiddleware(swift, {'zerovm_maxinput': '2000'})
    fake = Servers(d0=echo, d1=echo, d2=echo)

    def exchange(self, server, plan, headers, members, links=None, sent=None):
        if 'Transfer-Encoding' not in headers:
            return fake(server, plan, headers, members, links, sent)
        sent[0] = part_sent
        raise _Refused(413, wire.too_large(server_limit))
    monkeypatch.setattr(Dispatcher, 'exchange', exchange)
    monkeypatch.setattr(proxy, 'batchable', lambda plan: False)
    group = job() + [{'name': 'r', 'exec': {'path': 'swift://~/bin/wc'},
                      'devices': [{'name': 'stdout'}]}]
    group[0]['connect'] = ['r']
    resp = post(small, group)
    assert (resp.status_int, resp.headers['X-Nexe-Status'].split(',')[-1]) == status
    assert says in resp.headers['X-Nexe-Error'], resp.headers['X-Nexe-Error']


def test_an_object_servers_400_is_the_jobs_mistake(mw, servers) -> None:
    # engine native on a server set to emulated: the node ended 'error', as if the
    # cluster had failed; it is 'refused' (nothing ran), a 400 saying what to ask for
    why = ('this object server runs the emulated engine only (zerovm_engine = emulated): '
           'ask for engine auto or emulated')
    servers(d0=_Refused(400, why), d1=ok())
    resp = post(mw, job(engine='native'))
    assert (resp.status_int, resp.headers['X-Nexe-Status']) == (400, 'refused')
    assert resp.headers['X-Nexe-Error'].endswith(f'refused the node: 400 {why}')



def killed_by_host(stdout: bytes = b'partial'):
    """A server answer: the node's host killed it (``host_failure``) after it wrote
    ``stdout``."""
    def answer(plan, headers, members):
        report, outputs = ok(stdout, status='killed', retcode=None)(plan, headers, members)
        report.update(message='sandbox worker died (signal SIGKILL)', host_failure=True)
        return report, outputs
    return answer


def test_a_node_its_host_killed_runs_again_on_another_replica(mw, swift, servers) -> None:
    """As when its server dies: the program may well run elsewhere (before: a 503 at
    once); what the killed run wrote is not stored."""
    asked = servers(d0=killed_by_host(), d1=ok(b'whole\n'))
    resp = post(mw, job(stdout={'name': 'stdout', 'path': 'swift://~/c/out'}))
    assert resp.status_int == 200, resp.body
    assert resp.headers['X-Nexe-Status'] == 'ok'
    assert resp.headers['X-Nexe-Host'] == '10.0.0.1:6201/d1'
    assert [a[0] for a in asked.asked] == ['d0', 'd1']
    assert swift.called('PUT', '/c/out') == 1
    assert swift.objects[ACCOUNT + '/c/out'][1] == b'whole\n'


def test_a_node_every_replica_s_host_killed_ran_once_on_each_and_is_a_503(mw, servers) -> None:
    asked = servers(d0=killed_by_host(), d1=killed_by_host(), d2=killed_by_host())
    resp = post(mw, job())
    assert resp.status_int == 503
    assert resp.headers['X-Nexe-Status'] == 'killed'
    assert resp.headers['X-Nexe-Host'] == '10.0.0.1:6202/d2'
    assert resp.headers['X-Nexe-Error'] == 'wc: sandbox worker died (signal SIGKILL)'
    assert [a[0] for a in asked.asked] == ['d0', 'd1', 'd2']     # once each


def test_a_node_its_host_killed_runs_again_on_at_most_host_reruns_servers(
        mw, servers, monkeypatch) -> None:
    """Each run may last the whole timeout, and a node that makes its worker die (an OOM
    kill) would otherwise run on every object server (a node without data may run on
    any): the host's answer stands after HOST_RERUNS more."""
    monkeypatch.setattr(dispatch, 'HOST_RERUNS', 1, raising=False)
    asked = servers(d0=killed_by_host(), d1=killed_by_host(), d2=ok())
    resp = post(mw, job(stdout={'name': 'stdout', 'path': 'swift://~/c/out'}))
    assert resp.status_int == 503
    assert resp.headers['X-Nexe-Status'] == 'killed'
    assert resp.headers['X-Nexe-Host'] == '10.0.0.1:6201/d1'
    assert [a[0] for a in asked.asked] == ['d0', 'd1']


def test_a_node_killed_by_a_bug_of_ours_is_not_run_again(mw, servers) -> None:
    asked = servers(d0=ok(status='killed', retcode=None), d1=ok())
    resp = post(mw, job())
    assert resp.status_int == 500
    assert [a[0] for a in asked.asked] == ['d0']


def test_a_node_killed_by_its_host_after_its_links_reached_readers_is_not_run_again() -> None:
    """Bytes of its links already in the spool its readers read: a run elsewhere
    could not take them back; so its host's failure stands."""
    from zerocloud.job import Exec, Node
    from zerocloud.proxy.dispatch import host_killed
    res = NodeResult(Node('m', 'g', 1, 1, Exec('swift://a/c/p'), []))
    res.report = wire.NodeReport('killed', message='host I/O failed', host_failure=True)
    spool = graph.Spool(['r'], graph.Budget(1 << 20), 1 << 20)
    links = graph.NodeLinks({}, spool, None)
    assert host_killed(res) and host_killed(res, links)
    spool.append(spool.links['r'], b'sent')
    assert not host_killed(res, links)
    res.report.host_failure = False
    assert not host_killed(res)

@pytest.mark.parametrize(('status', 'http'), [('fault', 422), ('fuel', 422),
                                              ('validation', 422), ('killed', 500),
                                              ('timeout', 504)])
def test_a_failed_node_stores_nothing(mw, swift, servers, status: str, http: int) -> None:
    servers(d0=ok(b'partial', status=status, retcode=None))
    resp = post(mw, job(stdout={'name': 'stdout', 'path': 'swift://~/c/out'}))
    assert resp.status_int == http
    assert resp.headers['X-Nexe-Status'] == status
    hint = f'; {HINTS[status][1]}' if status in HINTS else ''     # a timeout's
    assert resp.headers['X-Nexe-Error'] == f'wc: it said {status}{hint}'
    assert resp.body == f'wc: {status}: it said {status}{hint}\n'.encode()
    assert swift.called('PUT', '/c/out') == 0


def test_a_failed_exit_is_a_422_with_the_end_of_stderr(mw, swift, servers) -> None:
    servers(d0=ok(b'partial', retcode=1, stderr='Traceback:\n  1/0\nZeroDivisionError: é\n\n'))
    resp = post(mw, job(stdout={'name': 'stdout', 'path': 'swift://~/c/out'}))
    assert resp.status_int == 422
    assert resp.headers['X-Nexe-Status'] == 'ok' and resp.headers['X-Nexe-Retcode'] == '1'
    assert resp.headers['X-Nexe-Error'] == 'wc: exit 1: ZeroDivisionError: ?'
    assert resp.body == ('wc: exit 1: ZeroDivisionError: é\n\n--- stderr of wc (its end) ---\n'
                         'Traceback:\n  1/0\nZeroDivisionError: é\n\n').encode()
    assert swift.called('PUT', '/c/out') == 0
    node = json.loads(post(mw, job(), **{'X-Zerovm-Report': 'json'}).body)['nodes'][0]
    assert (node['failed'], node['error']) == (True, 'exit 1: ZeroDivisionError: é')
    assert node['stderr'].startswith('Traceback:')


def test_a_device_may_be_stored_when_the_job_fails(mw, swift, servers) -> None:
    servers(d0=ok(b'partial', retcode=2))
    resp = post(mw, job(stdout={'name': 'stdout', 'path': 'swift://~/c/out', 'store': 'always'}))
    assert resp.status_int == 422
    assert resp.headers['X-Nexe-Error'] == 'wc: exit 2'
    assert swift.objects[ACCOUNT + '/c/out'][1] == b'partial'


def test_outputs_are_stored_as_the_caller_with_their_metadata(mw, swift, servers) -> None:
    servers(d0=ok(b'12\n', retcode=3))
    out = {'name': 'stdout', 'path': 'swift://~/c/out', 'content_type': 'text/x-n',
           'meta': {'Who': 'wc'}}
    resp = post(mw, job(stdout=out, exec={'path': 'swift://~/bin/wc', 'ok_exit': [0, 3]}))
    assert resp.status_int == 200 and resp.body == b''
    assert resp.headers['X-Nexe-Retcode'] == '3'
    headers, body = swift.objects[ACCOUNT + '/c/out']
    assert body == b'12\n'
    assert headers['Content-Type'] == 'text/x-n'
    assert headers['X-Object-Meta-Who'] == 'wc'
    assert headers['Etag'] == hashlib.md5(b'12\n').hexdigest()


def test_output_below_min_size_is_not_stored(mw, swift, servers) -> None:
    servers(d0=ok(b'12\n'))
    resp = post(mw, job(stdout={'name': 'stdout', 'path': 'swift://~/c/out', 'min_size': 4}))
    assert resp.status_int == 200
    assert swift.called('PUT', '/c/out') == 0


def test_a_failed_store_is_the_jobs_status(mw, swift, servers) -> None:
    servers(d0=ok())
    swift.put_status = 507
    resp = post(mw, job(stdout={'name': 'stdout', 'path': 'swift://~/c/out'}))
    assert resp.status_int == 507
    assert resp.headers['X-Nexe-Status'] == 'ok'
    assert resp.headers['X-Nexe-Error'] == (
        'wc: could not store swift://AUTH_a/c/out: Swift answered 507 Insufficient Storage')


def test_a_failed_store_says_swifts_reason(mw, swift, servers) -> None:
    # was 'wc: ok: Status 413 when putting ...': "ok" misled, Swift's reason was lost
    servers(d0=ok())
    swift.put_status, swift.put_reason = 413, b'Upload exceeds quota.'
    resp = post(mw, job(stdout={'name': 'stdout', 'path': 'swift://~/c/out'}))
    assert resp.status_int == 413
    said = ('wc: could not store swift://AUTH_a/c/out: Swift answered 413 Request Entity '
            'Too Large: Upload exceeds quota.')
    assert resp.headers['X-Nexe-Error'] == said
    assert resp.body.decode().startswith(said + '\n')


def test_a_quota_refusal_leaves_the_other_outputs_into_its_container_unsent(
        mw, swift, servers) -> None:
    # every output after the first 413 was still PUT (and its container looked up
    # again) into the container whose quota had refused it: 30 refusals for 30 outputs
    for i in range(1, 8):
        swift.add(f'/c/in-{i}', b'more')
    swift.containers['/q'] = {'X-Container-Meta-Quota-Count': '2'}
    swift.put_status, swift.put_reason = 413, b'Upload exceeds quota.'
    servers(d0=ok(), d1=ok())
    group = job(stdin='swift://~/c/in-*', stdout={'name': 'stdout', 'path': 'swift://~/q/*'})
    resp = post(mw, group)
    assert resp.status_int == 413, resp.body
    assert [p for m, p, _h in swift.calls if m == 'PUT'] == [ACCOUNT + '/q/1']
    errors = resp.headers['X-Nexe-Error'].split(', ')
    said = 'Swift answered 413 Request Entity Too Large'
    assert errors[0] == f'wc-1: could not store swift://AUTH_a/q/1: {said}: Upload exceeds ' \
                        'quota.'                                # the first's, as it was
    assert errors[1:] == [f'wc-{i}: could not store swift://AUTH_a/q/{i}: {said} to an '
                          'earlier output into swift://AUTH_a/q (this one was not sent): '
                          'Upload exceeds quota.' for i in range(2, 8)]
    report = json.loads(post(mw, group, **{'X-Zerovm-Report': 'json'}).body)
    assert [o['stored'] for n in report['nodes'] for o in n['outputs']] == [False] * 7


def test_a_failed_stores_reason_is_bounded_and_without_html(mw, swift, servers) -> None:
    servers(d0=ok())
    swift.put_status = 503
    swift.put_reason = b'<html><h1>Service Unavailable</h1><p>' + b'x' * 5000 + b'</p></html>'
    resp = post(mw, job(stdout={'name': 'stdout', 'path': 'swift://~/c/out'}))
    error = resp.headers['X-Nexe-Error']
    assert error.startswith('wc: could not store swift://AUTH_a/c/out: Swift answered '
                            '503 Service Unavailable: xxx')
    assert error.endswith('x...') and len(error) < 300 and '<' not in error


def test_objects_sent_along_are_fetched_once(mw, swift, servers) -> None:
    swift.add('/c/data2', b'more')
    swift.add('/c/lib.tar', b'an image')
    asked = servers(d0=ok(), d1=ok())
    group = job(stdin='swift://~/c/data*')
    group[0]['devices'].append({'name': 'image', 'path': 'swift://~/c/lib.tar'})
    resp = post(mw, group)
    assert resp.status_int == 200, resp.body
    assert resp.headers['X-Nexe-System'] == 'wc-1,wc-2'
    assert swift.called('GET', '/c/lib.tar') == 1
    assert swift.called('GET', '/bin/wc') == 1
    assert swift.called('GET', '/c/data') == 0          # read in place
    # the image once per server, then its digest (the server keeps it by SHA-256)
    assert [sent.get('dev/image') for _d, _h, sent in asked.asked] == [b'an image', None]
    assert asked.asked[1][1][wire.IMAGE] == hashlib.sha256(b'an image').hexdigest()


def test_an_encrypted_object_travels_and_the_node_runs_anywhere(mw, swift, servers) -> None:
    swift.add('/c/data', TEXT, **{'X-Object-Sysmeta-Crypto-Body-Meta': 'x'})
    asked = servers(d0=ok(), d1=ok(), d2=ok())
    resp = post(mw, job())
    assert resp.status_int == 200, resp.body
    (_device, headers, sent), = asked.asked
    assert wire.ACCESS not in headers
    assert sent['dev/stdin'] == TEXT


def test_the_full_report_as_json(mw, servers) -> None:
    servers(d0=ok(b'abc'))
    resp = post(mw, job(), **{'X-Zerovm-Report': 'json'})
    assert resp.status_int == 200
    assert resp.content_type == 'application/json'
    report = json.loads(resp.body)
    assert report['status'] == 200
    node, = report['nodes']
    assert node['name'] == 'wc' and node['host'] == '10.0.0.1:6200/d0'
    assert node['outputs'] == [{'device': 'stdout', 'path': None, 'bytes': 3, 'stored': False}]
    assert node['accounting']['fuel'] == 7


# -- programs by digest ---------------------------------------------------------------------------

class Caching(Servers):
    """Servers that keep the programs they received by SHA-256 (each its own cache)
    and answer 412 to a digest they lack, before reading anything else."""

    def __init__(self, forget: bool = False, delay: float = 0.0, **by_device) -> None:
        super().__init__(**by_device)
        self.cached: dict[str, set[str]] = {}
        self.forget = forget                    # a cache that never keeps anything
        self.delay = delay                      # seconds before the body travels

    def __call__(self, server, plan, headers, members, links=None, sent=None):
        cache = self.cached.setdefault(server['device'], set())
        if wire.PROGRAM in headers and headers[wire.PROGRAM] not in cache:
            self.asked.append((server['device'], headers, {}))
            raise _NeedProgram(f'412 program {headers[wire.PROGRAM]} is not cached here')
        sleep(self.delay)                       # other nodes go out meanwhile
        for name, _size, chunks in members():
            if name == wire.EXE and not self.forget:
                cache.add(hashlib.sha256(b''.join(chunks)).hexdigest())
        return super().__call__(server, plan, headers, members, links, sent)


@pytest.fixture
def caching(servers):
    return lambda **script: servers(Caching, **script)


PROGRAM_DIGEST = hashlib.sha256(b'\x7fELF program').hexdigest()


def test_the_program_goes_once_to_each_server_then_its_digest(mw, swift, caching) -> None:
    swift.add('/c/data2', b'more')
    asked = caching(d0=ok())
    group = job(stdin='swift://~/c/data*')
    for _ in range(2):                                  # a second job: digests only
        resp = post(mw, group, **{'X-Zerovm-Report': 'json'})
        assert resp.status_int == 200, resp.body
    assert [(h.get(wire.PROGRAM), wire.EXE in sent) for _d, h, sent in asked.asked] == [
        (None, True), (PROGRAM_DIGEST, False), (PROGRAM_DIGEST, False),
        (PROGRAM_DIGEST, False)]
    for _d, headers, sent in asked.asked[1:]:
        assert int(headers['Content-Length']) == len(b''.join(wire.stream_tar(
            wire.bytes_member(k, v) for k, v in sent.items())))
    report = json.loads(resp.body)
    with_program = int(asked.asked[0][1]['Content-Length'])
    assert [n['request_bytes'] for n in report['nodes']] == [with_program - 1024] * 2


def test_nodes_sent_together_wait_for_the_first_copy_of_the_program(mw, swift,
                                                                  caching) -> None:
    for i in range(2, 6):
        swift.add(f'/c/data{i}', b'more')
    asked = caching(d0=ok(), delay=0.05)
    resp = post(mw, job(stdin='swift://~/c/data*'))
    assert resp.status_int == 200, resp.body
    assert resp.headers['X-Nexe-System'] == 'wc-1,wc-2,wc-3,wc-4,wc-5'
    assert [(h.get(wire.PROGRAM), wire.EXE in sent) for _d, h, sent in asked.asked] == [
        (None, True)] + [(PROGRAM_DIGEST, False)] * 4          # and no 412
    assert mw.dispatcher.programs.sending == {}


def test_a_server_without_the_program_gets_it_on_a_second_try(mw, caching) -> None:
    asked = caching(d0=ok(b'counted\n'))
    mw.dispatcher.programs.servers[('10.0.0.1', 6200, PROGRAM_DIGEST)] = None   # e.g. it restarted
    resp = post(mw, job(), **{'X-Zerovm-Report': 'json'})
    assert resp.status_int == 200, resp.body
    assert [(d, h.get(wire.PROGRAM), sent.get(wire.EXE)) for d, h, sent in asked.asked] == [
        ('d0', PROGRAM_DIGEST, None), ('d0', None, b'\x7fELF program')]
    node, = json.loads(resp.body)['nodes']
    assert node['status'] == 'ok' and node['host'] == '10.0.0.1:6200/d0'
    assert node['request_bytes'] == int(asked.asked[1][1]['Content-Length'])
    assert ('10.0.0.1', 6200, PROGRAM_DIGEST) in mw.dispatcher.programs.servers


class RefusingFirst(Caching):
    """Caching servers whose first request is refused before its body is read
    (a full queue answers the ``Expect: 100-continue`` with ``503``)."""

    def __call__(self, server, plan, headers, members, links=None, sent=None):
        if not self.asked:
            self.asked.append((server['device'], headers, {}))
            raise _Retry('503 Slot not available')
        return super().__call__(server, plan, headers, members, links, sent)


def test_a_server_that_refused_before_the_body_is_sent_the_program_next(
        mw, servers) -> None:
    asked = servers(RefusingFirst, d0=ok(), d1=ok())
    assert post(mw, job()).status_int == 200                 # d0 refused it, d1 ran it
    assert post(mw, job()).status_int == 200                 # d0 free again
    # the program never went to d0 the first time: it is sent in full there next, not
    # its digest first (answered 412, then the program)
    assert [(d, h.get(wire.PROGRAM), wire.EXE in sent) for d, h, sent in asked.asked] == [
        ('d0', None, False), ('d1', None, True), ('d0', None, True)]
    assert mw.dispatcher.programs.sending == {}


def test_a_graph_node_is_sent_its_program_again_before_its_links(mw, caching) -> None:
    asked = caching(d0=echo, d1=echo, d2=echo, forget=True)
    for server in (6200, 6201, 6202):
        mw.dispatcher.programs.servers[('10.0.0.1', server, PROGRAM_DIGEST)] = None
    group = job() + [{'name': 'r', 'exec': {'path': 'swift://~/bin/wc'},
                      'devices': [{'name': 'stdout'}]}]
    group[0]['connect'] = ['r']
    resp = post(mw, group)
    assert resp.status_int == 200, resp.body
    assert resp.body == b'wc->r'
    tries = [(h.get(wire.PROGRAM), sorted(sent)) for _d, h, sent in asked.asked]
    assert tries == [(PROGRAM_DIGEST, []), (None, [wire.EXE, wire.SPEC]),
                     (PROGRAM_DIGEST, []), (None, ['dev/in/wc', wire.EXE, wire.SPEC])]
    assert asked.asked[3][1]['Transfer-Encoding'] == 'chunked'


def test_a_412_is_send_the_program_only_when_a_digest_went(mw) -> None:
    class Resp:
        status = 412

        def getheader(self, name, default=None):
            return {wire.EXECUTE: '1.0'}.get(name, default)

        def read(self, n):
            return b'program abc is not cached here: send it\n'
    with pytest.raises(_NeedProgram):
        mw.dispatcher.node_response(Resp(), None, 'abc')
    with pytest.raises(_Refused):
        mw.dispatcher.node_response(Resp(), None, None)


def test_known_programs_stay_bounded(mw, monkeypatch) -> None:
    monkeypatch.setattr(dispatch, 'KNOWN_PROGRAMS', 3)
    for port in range(5):
        mw.dispatcher.programs.known({'ip': 'h', 'port': port}, 'd', True)
    assert list(mw.dispatcher.programs.servers) == [('h', 2, 'd'), ('h', 3, 'd'), ('h', 4, 'd')]
    assert not mw.dispatcher.programs.known({'ip': 'h', 'port': 0}, 'd')
    mw.dispatcher.programs.known({'ip': 'h', 'port': 3}, 'd', False)
    assert not mw.dispatcher.programs.known({'ip': 'h', 'port': 3}, 'd')


# -- graphs and replicas --------------------------------------------------------------------------

def echo(plan, headers, members):
    """A server where the node writes ``<node>-><peer>`` to each peer and what it read
    from other nodes to stdout (outputs only when the spec asks for them)."""
    sent = {name: b''.join(chunks) for name, _size, chunks in members()}
    spec = json.loads(sent[wire.SPEC])
    data = {'stdout': b''.join(v for k, v in sorted(sent.items()) if k.startswith('dev/in/'))}
    data.update({d['name']: f'{spec["name"]}->{d["name"][4:]}'.encode()
                 for d in spec['devices'] if d['name'].startswith('out/')})
    report = {'status': 'ok', 'retcode': 0, 'validation': {'state': 'ok'},
              'etags': {'/dev/' + k: hashlib.md5(v).hexdigest() for k, v in data.items()}}
    outputs = {}
    for name, value in data.items() if spec['outputs'] else ():
        outputs[name] = tempfile.SpooledTemporaryFile()
        outputs[name].write(value)
    return report, outputs


def test_connected_nodes_get_what_their_producers_wrote(mw, servers) -> None:
    asked = servers(d0=echo, d1=echo, d2=echo)
    group = job() + [{'name': 'r', 'exec': {'path': 'swift://~/bin/wc'}, 'replicate': 2,
                      'devices': [{'name': 'stdout'}]}]
    group[0]['connect'] = ['r']
    resp = post(mw, group, **{'X-Zerovm-Report': 'json'})
    assert resp.status_int == 200, resp.body
    report = json.loads(resp.body)
    assert [(n['name'], n['replica'], n['status']) for n in report['nodes']] == [
        ('wc', 1, 'ok'), ('r', 1, 'ok'), ('r', 2, 'ok')]
    assert report['nodes'][0]['outputs'] == [
        {'device': 'stdout', 'path': None, 'bytes': 0, 'stored': False},
        {'device': 'out/r', 'path': None, 'bytes': 5, 'stored': False}]
    first, *replicas = asked.asked
    assert [d['name'] for d in json.loads(first[2][wire.SPEC])['devices']] == [
        'stdin', 'stdout', 'out/r']
    assert len({device for device, _h, _s in replicas}) == 2
    for number, (_device, headers, sent) in enumerate(replicas, 1):
        spec = json.loads(sent[wire.SPEC])
        assert wire.ACCESS not in headers
        assert sent['dev/in/wc'] == b'wc->r'
        assert spec['outputs'] is (number == 1)
        assert spec['devices'][-1] == {'name': 'in/wc', 'access': 'r', 'random': False,
                                       'source': 'link'}
        assert spec['stream'] is True
    resp = post(mw, group)
    assert resp.body == b'wc->r'                        # the stdout of r, once
    assert resp.headers['X-Nexe-System'] == 'wc,r,r'


# -- response headers -----------------------------------------------------------------------------

def test_headers_stay_bounded_for_big_jobs() -> None:
    from zerocloud.job import Exec, Node
    results = []
    for i in range(SUMMARY_NODES):         # beyond: a summary (tests/unit/test_response.py)
        res = NodeResult(Node(f'node-{i}', 'node', i, i, Exec('swift://a/c/p'), []), 'Policy-0')
        res.fail('fault', 'x' * 50)
        results.append(res)
    headers = nexe_headers(results, 1.0)
    assert headers['X-Nexe-Truncated'] == 'true'
    for name, value in headers.items():
        assert len(value) <= MAX_HEADER, name
    assert headers['X-Nexe-System'].endswith(',...')
    assert headers['X-Nexe-System'].startswith('node-0,node-1,')


def test_a_job_of_more_than_summary_nodes_is_answered_with_a_summary(
        swift, servers, monkeypatch) -> None:
    FakeRing.install(monkeypatch)
    app = ProxyExecMiddleware(swift, {'zerovm_maxnodes': str(SUMMARY_NODES + 1)})
    servers(d0=ok(b'x\n'), d1=ok(b'x\n'), d2=ok(b'x\n'))
    nodes = [{'name': 'n', 'exec': {'path': 'swift://~/bin/wc'}, 'count': SUMMARY_NODES + 1,
              'devices': [{'name': 'stdout'}]}]
    resp = post(app, nodes)
    assert resp.status_int == 200, resp.body
    assert resp.body == b'x\n' * (SUMMARY_NODES + 1)
    assert resp.headers['Etag'] == hashlib.md5(resp.body).hexdigest()
    assert resp.headers['X-Nexe-Nodes'] == str(SUMMARY_NODES + 1)
    assert resp.headers['X-Nexe-Status-Counts'] == f'ok {SUMMARY_NODES + 1}'
    assert 'X-Nexe-System' not in resp.headers and 'X-Nexe-Body-Bytes' not in resp.headers
    report = json.loads(post(app, nodes, **{'X-Zerovm-Report': 'json'}).body)
    assert [n['name'] for n in report['nodes']] == [f'n-{i}' for i in range(1, SUMMARY_NODES + 2)]


def test_a_small_job_has_whole_headers() -> None:
    from zerocloud.job import Exec, Node
    res = NodeResult(Node('a,b', 'g', 1, 1, Exec('swift://a/c/p'), []), 'Policy-0')
    res.fail('killed', 'worker died,\nbadly')
    headers = nexe_headers([res], 0.5)
    assert 'X-Nexe-Truncated' not in headers
    assert headers['X-Nexe-System'] == 'a;b'
    assert headers['X-Nexe-Error'] == 'a;b: worker died; badly'
    assert headers['X-Nexe-Validation'] == '2'


# -- program uploads ------------------------------------------------------------------------------

def test_a_program_upload_is_validated_and_the_verdict_stored(swift, guest) -> None:
    program = guest('wc').read_bytes()
    mw = ProxyExecMiddleware(swift, {})
    resp = Request.blank(ACCOUNT + '/bin/new', method='PUT', body=program,
                         headers={'Content-Type': 'application/x-nexe'}).get_response(mw)
    assert resp.status_int == 201
    assert resp.headers['X-Zerovm-Valid'] == 'true'
    headers, body = swift.objects[ACCOUNT + '/bin/new']
    assert body == program
    assert headers['X-Object-Sysmeta-Zerovm-Valid'] == 'true'
    assert headers['X-Object-Sysmeta-Zerovm-Validator'] == VALIDATOR_VERSION


def test_the_validating_workers_end_with_their_filter(swift, guest) -> None:
    """A filter's validating workers are its own: they end when it is torn down
    (collected), not with the process."""
    mw = ProxyExecMiddleware(swift, {})
    resp = Request.blank(ACCOUNT + '/bin/new', method='PUT', body=guest('wc').read_bytes(),
                         headers={'Content-Type': 'application/x-nexe'}).get_response(mw)
    assert resp.headers['X-Zerovm-Valid'] == 'true'
    pool = mw.validation.pool()
    workers = [w.proc for w in pool._all]
    assert len(workers) == uploads.VALIDATE_WORKERS
    del mw, resp
    gc.collect()
    assert pool.closed and all(proc.poll() is not None for proc in workers)


def test_the_validating_workers_end_at_exit(tmp_path) -> None:
    """A proxy process that exits (its filter still there) stops its validating
    workers first: none is left running once it has exited."""
    script = tmp_path / 'proxy.py'
    script.write_text('from zerocloud.proxy.middleware import ProxyExecMiddleware\n'
                      'mw = ProxyExecMiddleware(None, {})\n'
                      'print(*mw.validation.pool().pids, flush=True)\n')
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, check=True)
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == uploads.VALIDATE_WORKERS
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_an_invalid_upload_is_stored_with_its_verdict(mw, swift) -> None:
    req = Request.blank(ACCOUNT + '/bin/text', method='PUT', body=b'#!/bin/sh\n',
                        headers={'X-Zerovm-Validate': 'yes'})
    resp = req.get_response(mw)
    assert resp.status_int == 201
    assert resp.headers['X-Zerovm-Valid'] == 'false'
    assert 'not an ELF file' in resp.headers['X-Zerovm-Validation-Error']
    headers, body = swift.objects[ACCOUNT + '/bin/text']
    assert body == b'#!/bin/sh\n' and headers['X-Object-Sysmeta-Zerovm-Valid'] == 'false'


def test_an_upload_asking_validation_with_a_typo_is_refused(mw, swift, monkeypatch) -> None:
    # X-Zerovm-Validate: ture stored the program without a verdict, as if it said false
    monkeypatch.setattr(uploads.Validation, 'pool', lambda self: pytest.fail('validated'))
    req = Request.blank(ACCOUNT + '/bin/prog', method='PUT', body=b'\x7fELF',
                        headers={'X-Zerovm-Validate': 'ture'})
    resp = req.get_response(mw)
    assert (resp.status_int, resp.body) == (400, b"X-Zerovm-Validate must be true or false "
                                                 b"(1, yes, on / 0, no, off), not 'ture': "
                                                 b"nothing was stored\n")
    assert ACCOUNT + '/bin/prog' not in swift.objects
    for value in ('no', 'off', '0'):
        req = Request.blank(ACCOUNT + '/bin/prog', method='PUT', body=b'\x7fELF',
                            headers={'X-Zerovm-Validate': value})
        assert req.get_response(mw).status_int == 201
    # the words are the options' (zerocloud.config.boolean): blanks around one aside
    assert uploads.wants_validation({'HTTP_X_ZEROVM_VALIDATE': ' yes'})
    assert not uploads.wants_validation({'HTTP_X_ZEROVM_VALIDATE': 'Off '})


@pytest.mark.parametrize(('denied', 'says'), [
    (401, b'Unauthorized: a valid token is needed to write swift://AUTH_a/bin/new\n'),
    (403, b'Denied: may not write swift://AUTH_a/bin/new\n')])
def test_an_unauthorised_upload_is_refused_before_it_is_read(
        mw, swift, monkeypatch, denied: int, says: bytes) -> None:
    monkeypatch.setattr(uploads.Validation, 'pool', lambda self: pytest.fail('validated'))
    body = io.BytesIO(b'\x7fELF program')
    req = Request.blank(ACCOUNT + '/bin/new', method='PUT',
                        headers={'Content-Type': 'application/x-nexe', 'Content-Length': '13'})
    req.environ['wsgi.input'] = body
    asked = []
    req.environ['swift.authorize'] = lambda r: asked.append((r.method, r.path, r.acl)) or \
        Response(status=denied)
    resp = req.get_response(mw)
    assert resp.status_int == denied
    assert resp.body == says
    assert asked == [('PUT', ACCOUNT + '/bin/new', None)]   # the container's (no) ACL
    assert body.tell() == 0                                # nothing spooled
    assert {m for m, _p, _h in swift.calls} == {'HEAD'}    # the container's ACL only


def test_an_authorised_upload_is_validated(swift, guest) -> None:
    mw = ProxyExecMiddleware(swift, {})
    req = Request.blank(ACCOUNT + '/bin/new', method='PUT', body=guest('wc').read_bytes(),
                        headers={'Content-Type': 'application/x-nexe'})
    req.environ['swift.authorize'] = lambda r: None
    resp = req.get_response(mw)
    assert resp.status_int == 201
    assert resp.headers['X-Zerovm-Valid'] == 'true'


@pytest.mark.parametrize('chunked', [False, True])
def test_a_program_over_zerovm_maxnexe_is_a_413(mw, swift, chunked: bool) -> None:
    req = Request.blank(ACCOUNT + '/bin/big', method='PUT', body=b'x' * 1001,
                        headers={'Content-Type': 'application/x-nexe'})
    if chunked:
        del req.headers['Content-Length']
        req.headers['Transfer-Encoding'] = 'chunked'
    resp = req.get_response(mw)
    assert resp.status_int == 413
    assert b'zerovm_maxnexe (1000)' in resp.body
    assert swift.calls == []


def test_every_option_read_is_documented() -> None:
    """zerocloud.config reads every option once; each is in etc/zerocloud.conf-sample
    (Swift's own options, read from [DEFAULT], are named in the sample's header)."""
    source = Path(config.__file__).read_text()
    sample = (Path(__file__).parents[2] / 'etc' / 'zerocloud.conf-sample').read_text()
    read = set(re.findall(r"(?:conf\.get|option)\('([a-z_]+)'", source))
    assert {'zerovm_timeout', 'zerovm_maxnexe', 'zerovm_maxpool', 'swift_dir'} <= read
    for option in read - {'workers'}:       # workers: Swift's server option
        assert re.search(rf'\b{option}\b', sample), option


@pytest.mark.parametrize('module', [proxy, object_filter])
def test_the_filters_document_real_options(module) -> None:
    """The config snippet of each filter's docstring names options zerocloud.config reads."""
    source = Path(config.__file__).read_text()
    read = set(re.findall(r"(?:conf\.get|option)\('([a-z_]+)'", source))
    shown = set(re.findall(r'^    ([a-z_]+) = ', module.__doc__, re.M)) - {'use', 'pipeline'}
    assert shown and shown <= read, shown - read


# -- batches ---------------------------------------------------------------------------------

class BatchServers:
    """Object servers answering batches (``zerocloud.wire``, Batches), scripted per
    device: ``answer(entries) -> members`` of the answer, or ``(status, reason)``
    to refuse the whole batch before its body, or a list of those for the
    batches in turn (the last one stays).  Every batch is recorded as
    (device, headers, program or None, [entry])."""

    def __init__(self, **by_device) -> None:
        self.script = by_device
        self.batches: list[tuple[str, dict, bytes | None, list[wire.BatchEntry]]] = []
        self.cached: set[tuple[str, str]] = set()      # (device, program or image digest)
        self.images: list[bytes | None] = []           # the image each batch carried
        self.blocks: list[int] = []                     # entries of each batch/entries member
        self.setup: str | None = None                  # the X-Zerovm-Setup they answer with

    def connect(self, ip, port, device, part, method, path, headers):
        return FakeConnection(self, device, path, headers)


class FakeResponse:
    def __init__(self, status: int, headers: dict, body: bytes = b'') -> None:
        self.status, self.headers, self.body = status, headers, io.BytesIO(body)

    def getheader(self, name: str):
        return self.headers.get(name)

    def read(self, n: int = -1) -> bytes:
        return self.body.read(n)

    def read1(self, n: int = -1) -> bytes:      # what "arrived": a few bytes at a time
        return self.body.read(min(n, 100))


class FakeConnection:
    def __init__(self, servers: BatchServers, device: str, path: str, headers: dict) -> None:
        self.servers, self.device, self.headers = servers, device, headers
        self.sent = bytearray()
        self.sock = self
        assert path.endswith('/.zerocloud/batch') and headers[wire.BATCH]

    def shutdown(self, how) -> None:
        pass

    def close(self) -> None:
        pass

    def getexpect(self) -> FakeResponse:
        action = self.servers.script.get(self.device, (503, 'no such server'))
        if isinstance(action, list):
            action = action.pop(0) if len(action) > 1 else action[0]
        self.action = action
        for header in (wire.PROGRAM, wire.IMAGE):
            digest = self.headers.get(header)
            if digest and (self.device, digest) not in self.servers.cached:
                self.servers.batches.append((self.device, self.headers, None, []))
                self.servers.images.append(None)
                return FakeResponse(412, {wire.EXECUTE: '1.0'}, b'send it')
        if isinstance(action, tuple):
            self.servers.batches.append((self.device, self.headers, None, []))
            return FakeResponse(action[0], {wire.EXECUTE: '1.0', 'Retry-After': '1'},
                                action[1].encode())
        return FakeResponse(100, {})

    def send(self, chunk: bytes) -> None:
        self.sent += chunk

    def getresponse(self) -> FakeResponse:
        assert len(self.sent) == int(self.headers['Content-Length'])
        program = image = shared = None
        entries = []
        for name, f in wire.read_members(io.BytesIO(bytes(self.sent)), None):
            if name == wire.BATCH_ENTRIES and f.left > wire.ENTRIES_LIMIT:     # as the server
                self.servers.batches.append((self.device, self.headers, None, []))
                return FakeResponse(400, {wire.EXECUTE: '1.0'}, b'bad batch request: '
                                    b'batch/entries larger than the limit')
            if name == wire.EXE:
                program = f.read()
                self.servers.cached.add((self.device, hashlib.sha256(program).hexdigest()))
            elif name == 'dev/image' and not entries:
                image = f.read()
                self.servers.cached.add((self.device, hashlib.sha256(image).hexdigest()))
            elif name == wire.BATCH_SPEC:
                shared = wire.SharedSpec.from_json(f.read())
            else:       # entries in batch/entries members of up to ENTRIES_MAX, in order
                assert name == wire.BATCH_ENTRIES and shared is not None
                block = wire.read_entries(f.read(), shared)
                assert 0 < len(block) <= wire.ENTRIES_MAX
                self.servers.blocks.append(len(block))
                entries += block
        self.servers.batches.append((self.device, self.headers, program, entries))
        self.servers.images.append(image)
        members = self.action(entries)
        setup = {wire.SETUP: self.servers.setup} if self.servers.setup else {}
        return FakeResponse(200, {wire.EXECUTE: '1.0', wire.BATCH: str(len(entries)), **setup},
                            b''.join(wire.stream_tar(members)))


def ran(indexes=None, skip=()):
    """A batch answer: each node (of ``indexes``, default all) wrote ``out <object>``
    to stdout; nodes in ``skip`` get an ``error`` member instead."""
    def answer(entries: list[wire.BatchEntry]) -> list[wire.Member]:
        members = []
        for i, entry in enumerate(entries):
            if indexes is not None and i not in indexes:
                continue
            if entry.object in skip:
                members.append(wire.bytes_member(f'{i}/error', b'404 not here'))
                continue
            out = f'out {entry.object}\n'.encode()
            report = wire.NodeReport('ok', 0, etags={
                '/dev/stdout': hashlib.md5(out).hexdigest()})
            members += [wire.bytes_member(f'{i}/{wire.REPORT}', report.to_json()),
                        wire.bytes_member(f'{i}/dev/stdout', out)]
        return members
    return answer


@pytest.fixture
def batch_servers(monkeypatch, servers):
    """``batch_servers(alone={...}, **script)``: batches answered by ``BatchServers``,
    nodes sent alone by ``Servers(**alone)``."""
    from zerocloud.proxy import batch

    def install(alone: dict | None = None, **script) -> tuple[BatchServers, Servers]:
        single = servers(**(alone or {}))
        monkeypatch.setattr(proxy, 'batchable', batch.batchable)
        fake = BatchServers(**script)
        monkeypatch.setattr(batch, 'http_connect', fake.connect)
        return fake, single
    return install


def objects(swift: FakeSwift, count: int) -> list[str]:
    names = [f'/c/item{i:02d}' for i in range(count)]
    for name in names:
        swift.add(name)
    return names


def test_nodes_bound_for_one_server_travel_in_one_batch(mw, swift, batch_servers) -> None:
    names = objects(swift, 6)
    fake, single = batch_servers(d0=ran())
    resp = post(mw, job(stdin='swift://~/c/item*'), **{'X-Zerovm-Report': 'json'})
    assert resp.status_int == 200, resp.body
    (device, headers, program, entries), = fake.batches
    assert device == 'd0' and headers[wire.BATCH] == '6' and wire.PROGRAM not in headers
    assert program == b'\x7fELF program'
    assert [e.object for e in entries] == ['/AUTH_a' + n for n in names]
    assert all(e.spec.local_env and e.partition == 5 and e.device == 'd0' for e in entries)
    assert single.asked == []
    report = json.loads(resp.body)
    assert [n['host'] for n in report['nodes']] == ['10.0.0.1:6200/d0'] * 6
    assert [n['program_bytes'] for n in report['nodes']] == [len(program)] + [0] * 5
    # the listing said what there is: no HEAD of any object, read authorised per container
    assert not any(m == 'HEAD' and '/c/item' in p for m, p, _h in swift.calls)
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.body == b''.join(f'out /AUTH_a{n}\n'.encode() for n in names)
    _device, headers, program, _entries = fake.batches[1]       # now by digest
    assert headers[wire.PROGRAM] == PROGRAM_DIGEST and program is None


def test_a_jobs_nodes_of_one_partition_ask_the_ring_once(mw, swift, batch_servers,
                                                          monkeypatch) -> None:
    """Swift's ring is one object: a job asks it for a partition's primaries once, not
    once per node (it copies its device dicts at every call; the look-ups kept no
    longer than its ``reload_time``: tests/unit/test_batches.py)."""
    ring = FakeRing.install(monkeypatch)
    objects(swift, 6)
    fake, _single = batch_servers(d0=ran())
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    (_device, headers, _program, entries), = fake.batches
    assert headers[wire.BATCH] == '6'
    assert ring.asked == 1
    post(mw, job(stdin='swift://~/c/item*'))
    assert ring.asked == 2          # a job's look-ups are its own


def test_a_wildcard_lists_only_the_names_after_its_fixed_text(mw, swift, batch_servers) -> None:
    """Two groups over parts of one container list their own part each (Swift's
    ``prefix``), not the whole container once per group."""
    names = objects(swift, 5)
    for i in range(40):
        swift.add(f'/c/other{i:02d}')
    batch_servers(d0=ran())
    resp = post(mw, job(stdin='swift://~/c/item0*') + [
        {**job(stdin='swift://~/c/item*')[0], 'name': 'again'}])
    assert resp.status_int == 200, resp.body
    assert resp.body == b''.join(f'out /AUTH_a{n}\n'.encode() for n in names + names)
    assert swift.listed == 2 * len(names)


def test_an_entry_no_batch_member_can_hold_goes_alone(mw, swift, batch_servers,
                                                     monkeypatch) -> None:
    """An entry over what the server reads of a ``batch/entries`` member (~3 MiB, the
    rest of a 4 MiB member) had the whole batch refused (400), every node sent alone
    and a warning of an object server older than the proxy: it goes alone, and a
    member is closed before it would pass the limit."""
    monkeypatch.setattr(wire, 'ENTRIES_LIMIT', 400)     # a wildcard's entry: ~90 bytes
    names = objects(swift, 6)
    large = '/c/item' + 'x' * 500
    swift.add(large)
    fake, single = batch_servers(d0=ran(), alone={'d0': ok(b'alone\n')})
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    (device, headers, _program, entries), = fake.batches
    assert headers[wire.BATCH] == '6'
    assert [e.object for e in entries] == ['/AUTH_a' + n for n in names]
    assert len(fake.blocks) > 1
    assert [d for d, _h, _s in single.asked] == ['d0']      # alone, to its server first
    assert resp.body.split(b'\n')[6] == b'alone'


def test_a_batch_spec_no_object_server_reads_is_a_413_before_it_is_sent(
        mw, swift, batch_servers, monkeypatch) -> None:
    """The nodes of a batch whose shared spec (``batch/spec``: the first node's whole
    spec) is over what a server reads get the 413 a node alone gets: no batch sent
    (a server would read its first MiB and answer 400, a JSON error)."""
    monkeypatch.setattr(wire, 'SPEC_LIMIT', 300)
    objects(swift, 3)
    fake, single = batch_servers(d0=ran(), alone={'d0': ok()})
    big = job(stdin='swift://~/c/item*')
    big[0]['exec']['env'] = {'BIG': 'x' * 300}
    resp = post(mw, big)
    assert resp.status_int == 413, resp.body
    assert 'an object server reads 300 at most' in resp.headers['X-Nexe-Error']
    assert fake.batches == [] and single.asked == []


def test_a_batch_entry_whose_merged_spec_is_over_the_limit_goes_alone_to_its_413(
        mw, swift, batch_servers, monkeypatch) -> None:
    """The same rule in a batch as alone: wc-10 and wc-11's specs (636 bytes: a name
    one character longer than wc-1's 633) are over the limit; the others' are not.
    Those two are not sent in the batch (a server would refuse them) but alone,
    where they get the 413 a node alone gets, with its words, and nothing is sent."""
    monkeypatch.setattr(wire, 'SPEC_LIMIT', 634)
    objects(swift, 11)
    fake, single = batch_servers(d0=ran(), alone={'d0': ok()})
    resp = post(mw, job(stdin='swift://~/c/item*'), **{'X-Zerovm-Report': 'json'})
    (_device, headers, _program, entries), = fake.batches
    assert headers[wire.BATCH] == '9'
    assert [e.spec.name for e in entries] == [f'wc-{i}' for i in range(1, 10)]
    assert single.asked == []
    nodes = {n['name']: n for n in json.loads(resp.body)['nodes']}
    for name in ('wc-10', 'wc-11'):
        assert nodes[name]['status'] == 'error'
        assert nodes[name]['message'] == (
            "its node spec is 636 bytes; an object server reads 634 at most (the spec holds "
            "the node's argv and env and a device per node it is connected to): make them "
            'smaller')
    assert all(nodes[f'wc-{i}']['status'] == 'ok' for i in range(1, 10))


def test_a_node_a_batch_did_not_run_is_retried_alone_on_another_replica(
        mw, swift, batch_servers) -> None:
    names = objects(swift, 5)
    refused = '/AUTH_a' + names[1]          # an error member; names[3]: no answer at all
    fake, single = batch_servers(d0=ran(indexes={0, 1, 2, 4}, skip={refused}),
                                 alone={'d1': ok(b'alone\n')})
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    assert len(fake.batches) == 1
    hosts = resp.headers['X-Nexe-Host'].split(',')
    assert hosts == ['10.0.0.1:6200/d0', '10.0.0.1:6201/d1', '10.0.0.1:6200/d0',
                     '10.0.0.1:6201/d1', '10.0.0.1:6200/d0']
    assert [d for d, _h, _s in single.asked] == ['d1', 'd1']    # alone, not d0 again
    assert resp.body.split(b'\n')[1] == resp.body.split(b'\n')[3] == b'alone'




def test_a_batched_node_its_host_killed_runs_again_alone_on_another_replica(
        mw, swift, batch_servers) -> None:
    names = objects(swift, 3)
    killed = '/AUTH_a' + names[1]

    def answer(entries: list[wire.BatchEntry]) -> list[wire.Member]:
        members = ran(skip={killed})(entries)
        i = [e.object for e in entries].index(killed)
        at = members.index(next(m for m in members if m[0] == f'{i}/error'))
        report = wire.NodeReport('killed', message='host I/O failed in read: EIO',
                                 host_failure=True)
        members[at:at + 1] = [wire.bytes_member(f'{i}/{wire.REPORT}', report.to_json()),
                              wire.bytes_member(f'{i}/dev/stdout', b'partial')]
        return members
    fake, single = batch_servers(d0=answer, alone={'d1': ok(b'alone\n')})
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    assert resp.headers['X-Nexe-Host'].split(',') == [
        '10.0.0.1:6200/d0', '10.0.0.1:6201/d1', '10.0.0.1:6200/d0']
    assert [d for d, _h, _s in single.asked] == ['d1']     # alone, not d0 again
    assert resp.body.split(b'\n')[1] == b'alone'


def test_a_batched_node_its_host_killed_with_no_other_server_keeps_its_failure(
        mw, swift, batch_servers) -> None:
    names = objects(swift, 2)

    def answer(entries: list[wire.BatchEntry]) -> list[wire.Member]:
        report = wire.NodeReport('killed', message='sandbox worker died', host_failure=True)
        return [wire.bytes_member(f'{i}/{wire.REPORT}', report.to_json())
                for i in range(len(entries))]
    fake, single = batch_servers(d0=answer, alone={'d1': killed_by_host(), 'd2': _Retry('404')})
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 503, resp.body
    assert resp.headers['X-Nexe-Status'] == 'killed,killed'
    assert [d for d, _h, _s in single.asked] == ['d1', 'd2'] * len(names)

def test_nodes_a_batch_did_not_run_count_among_those_sent_alone(
        mw, swift, batch_servers, monkeypatch) -> None:
    """A batch's nodes the server did not run go alone, each taking one of the job's
    places for nodes sent alone (``graph.Places``): at most that many requests of
    their own at once (before: not counted, all of them at once)."""
    monkeypatch.setattr(proxy, 'MAX_CONCURRENCY', 2)
    names = objects(swift, 8)
    running, most = [0], [0]

    def slow(plan, headers, members):
        running[0] += 1
        most[0] = max(most[0], running[0])
        sleep(0.01)
        running[0] -= 1
        return ok()(plan, headers, members)
    fake, single = batch_servers(d0=ran(skip={'/AUTH_a' + n for n in names}),
                                 alone={'d1': slow})
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    assert len(fake.batches) == 1 and len(single.asked) == 8
    assert most[0] == 2

def test_a_batch_the_server_cannot_admit_is_split_into_nodes(mw, swift, batch_servers,
                                                             monkeypatch) -> None:
    from zerocloud.proxy import batch
    monkeypatch.setattr(batch, 'BUSY_WAIT', 0.2)
    objects(swift, 4)
    fake, single = batch_servers(d0=(503, 'Slot not available'), alone={'d0': ok()})
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    assert len(fake.batches) > 1                                    # offered again first
    assert {(d, len(entries)) for d, _h, _p, entries in fake.batches} == {('d0', 0)}
    assert [d for d, _h, _s in single.asked] == ['d0'] * 4          # there first, alone


def test_a_batch_an_older_object_server_refuses_runs_alone_with_a_warning(
        mw, swift, batch_servers, monkeypatch) -> None:
    """An object server older than ``batch/entries`` (or ``batch/spec``) refuses the
    batch (400, before its body): the proxy says why in a warning, and the nodes run
    alone, with the same results (a rolling upgrade that reached the proxy first)."""
    names = objects(swift, 3)
    fake, single = batch_servers(d0=(400, 'bad batch request: unexpected member batch/entries'),
                                 alone={'d0': ok()})
    warned: list[str] = []
    monkeypatch.setattr(mw.logger, 'warning', lambda msg, *args: warned.append(msg % args))
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    assert [d for d, _h, _s in single.asked] == ['d0'] * len(names)
    assert resp.body == b'out\n' * len(names)
    warning, = warned
    assert 'refused by' in warning and 'upgrade object servers first' in warning
    assert 'unexpected member batch/entries' in warning


def test_a_batch_refused_as_a_bad_request_for_another_reason_says_that_reason(
        mw, swift, batch_servers, monkeypatch) -> None:
    """Any other 400 (a member over a limit) warned of an older object server too."""
    objects(swift, 3)
    batch_servers(d0=(400, 'bad batch request: batch/entries larger than 4194304 bytes'),
                  alone={'d0': ok()})
    warned: list[str] = []
    monkeypatch.setattr(mw.logger, 'warning', lambda msg, *args: warned.append(msg % args))
    assert post(mw, job(stdin='swift://~/c/item*')).status_int == 200
    warning, = warned
    assert 'larger than 4194304 bytes' in warning and 'older' not in warning


def test_a_batch_refused_while_the_server_frees_a_place_runs_whole(
        mw, swift, batch_servers) -> None:
    names = objects(swift, 4)
    fake, single = batch_servers(d0=[(503, 'Slot not available'), ran()])
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    (_d, _h, _p, refused), (_d, headers, program, entries) = fake.batches
    assert not refused and len(entries) == 4
    # the program did not go with the refused batch: sent with the next one, not its
    # digest first (the server would answer 412, and then it)
    assert program == b'\x7fELF program' and wire.PROGRAM not in headers
    assert single.asked == []                   # no node went alone, none to a handoff
    assert resp.body == b''.join(f'out /AUTH_a{n}\n'.encode() for n in names)


def test_a_batch_a_loaded_server_did_not_connect_in_time_is_offered_again(
        mw, swift, batch_servers, monkeypatch) -> None:
    from swift.common.exceptions import ConnectionTimeout

    from zerocloud.proxy import batch
    names = objects(swift, 4)
    fake, single = batch_servers(d0=ran())
    calls = []

    def slow_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise ConnectionTimeout(None)       # (no timer: as if it had fired)
        return fake.connect(*args, **kwargs)
    monkeypatch.setattr(batch, 'http_connect', slow_once)
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    assert len(calls) >= 2 and [len(e) for *_x, e in fake.batches][-1] == 4
    assert single.asked == []                   # not split into nodes sent alone
    assert resp.body == b''.join(f'out /AUTH_a{n}\n'.encode() for n in names)


def test_batches_hold_at_most_batch_max_nodes(mw, swift, batch_servers, monkeypatch) -> None:
    monkeypatch.setattr(wire, 'BATCH_MAX', 3)
    names = objects(swift, 10)
    fake, single = batch_servers(d0=ran())
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    assert [len(entries) for _d, _h, _p, entries in fake.batches] == [3, 3, 3, 1]
    assert [e.object for *_x, entries in fake.batches for e in entries] == [
        '/AUTH_a' + n for n in names]
    assert single.asked == []                # the last one: a batch of one, as batches went
    assert resp.body == b''.join(f'out /AUTH_a{n}\n'.encode() for n in names)


@pytest.mark.parametrize(('most', 'size', 'blocks'), [(2, 1 << 20, [2, 2, 1]),
                                                    (128, 1, [1] * 5)])
def test_a_batchs_entries_travel_in_members_of_at_most_entries_max(
        mw, swift, batch_servers, monkeypatch, most: int, size: int, blocks: list) -> None:
    """A batch's entries go in ``batch/entries`` members of up to ``wire.ENTRIES_MAX``
    entries, a member closed once it holds ``wire.ENTRIES_BYTES``: in order, each node
    answered as its own."""
    monkeypatch.setattr(wire, 'ENTRIES_MAX', most)
    monkeypatch.setattr(wire, 'ENTRIES_BYTES', size)
    names = objects(swift, 5)
    fake, single = batch_servers(d0=ran())
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    assert fake.blocks == blocks and single.asked == []
    (*_x, entries), = fake.batches
    assert [e.object for e in entries] == ['/AUTH_a' + n for n in names]
    assert resp.body == b''.join(f'out /AUTH_a{n}\n'.encode() for n in names)


def test_a_second_batch_goes_to_a_server_while_one_runs_there(
        mw, swift, batch_servers, monkeypatch) -> None:
    """Nodes that queue for a server while its batch runs go in a second batch at
    once (:data:`batch.AHEAD` of them), not after the first ended: the server never
    waits for the proxy between batches; two at most, every node once, in order."""
    from swift.common.concurrency import sleep

    from zerocloud.proxy import batch, caller, middleware
    monkeypatch.setattr(batch, 'AHEAD', 3)
    monkeypatch.setattr(middleware, 'CHUNK_NODES', 4)
    monkeypatch.setattr(caller, 'LISTING_LIMIT', 4)
    listing = caller.Caller.listing

    def paced(self, path, prefix):  # a page of names every 20 ms
        for i, name in enumerate(listing(self, path, prefix)):
            if i and i % 4 == 0:
                sleep(0.02)
            yield name
    monkeypatch.setattr(caller.Caller, 'listing', paced)
    names = objects(swift, 16)
    running, most = [0], [0]
    answer = ran()

    def slow(entries):              # the server runs the batch for 0.1 s
        running[0] += 1
        most[0] = max(most[0], running[0])
        sleep(0.1)
        running[0] -= 1
        return answer(entries)
    fake, single = batch_servers(d0=slow)
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    assert most[0] == batch.PER_SERVER == 2
    assert sorted(e.object for *_x, entries in fake.batches for e in entries) == [
        '/AUTH_a' + n for n in names]
    assert single.asked == []
    assert resp.body == b''.join(f'out /AUTH_a{n}\n'.encode() for n in names)


def test_a_large_wildcard_job_streams_through_its_spool_in_node_order(
        mw, swift, batch_servers, monkeypatch) -> None:
    """Planned two nodes at a time, answered from the spool past three results; a
    node the batch did not run is retried alone and keeps its place."""
    from zerocloud.proxy import middleware, stream
    monkeypatch.setattr(middleware, 'CHUNK_NODES', 2)
    monkeypatch.setattr(stream, 'SUMMARY_NODES', 3)
    names = objects(swift, 7)
    fake, single = batch_servers(d0=ran(skip={'/AUTH_a' + names[2]}),
                                 alone={'d0': ok(b'alone d0\n'), 'd1': ok(b'alone d1\n')})
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    lines = resp.body.splitlines(keepends=True)
    assert lines[2] == b'alone d1\n'                   # not run in its batch: elsewhere
    for line, name in zip(lines, names, strict=True):  # the others where they ran, in order
        assert line in (f'out /AUTH_a{name}\n'.encode(), b'alone d0\n', b'alone d1\n')
    assert sum(len(e) for *_x, e in fake.batches) >= 4
    assert resp.headers['X-Nexe-Nodes'] == '7' and 'X-Nexe-System' not in resp.headers
    assert resp.headers['Etag'] == hashlib.md5(resp.body).hexdigest()
    report = json.loads(post(mw, job(stdin='swift://~/c/item*'),
                             **{'X-Zerovm-Report': 'json'}).body)
    assert [n['name'] for n in report['nodes']] == [f'wc-{i}' for i in range(1, 8)]
    assert [n['object'] for n in report['nodes']] == [f'swift://AUTH_a{n}' for n in names]
    assert report['nodes'][2]['host'].endswith('/d1')


def test_a_bug_sending_a_node_alone_after_its_batch_stops_the_job(
        mw, swift, batch_servers, monkeypatch) -> None:
    """A node waiting in a batch has no green thread of its own: when sending it
    alone raises (a bug), the job hears of it and stops, it does not wait forever."""
    from swift.common.concurrency import Timeout
    names = objects(swift, 4)
    batch_servers(d0=ran(skip={'/AUTH_a' + names[1]}))

    def broken(*args, **kwargs):
        raise RuntimeError('a bug')
    monkeypatch.setattr(Dispatcher, 'run_node', broken)
    with Timeout(30), pytest.raises(RuntimeError, match='a bug'):
        post(mw, job(stdin='swift://~/c/item*'))


def test_a_wildcard_jobs_proxy_memory_does_not_grow_with_its_nodes(
        mw, swift, batch_servers, monkeypatch) -> None:
    """What the proxy holds for a job is bounded by its windows (nodes in flight,
    planned, listed; results held in memory), not by its nodes: 7x the nodes add
    to the peak of traced memory only the spool's index (five integers a node,
    ``stream.JobSpool``) and the event hub's cancelled timers (bounded: it drops
    them past a thousand).  Anything else kept per node (a result, a plan, a
    batch entry...) costs a kilobyte or more a node."""
    import collections
    import gc
    import tracemalloc

    from zerocloud import turns
    from zerocloud.proxy import caller, middleware, stream
    monkeypatch.setattr(middleware, 'BATCH_CONCURRENCY', 64)
    monkeypatch.setattr(middleware, 'CHUNK_NODES', 50)
    monkeypatch.setattr(caller, 'LISTING_LIMIT', 50)
    monkeypatch.setattr(stream, 'SUMMARY_NODES', 20)
    monkeypatch.setattr(wire, 'BATCH_MAX', 16)
    monkeypatch.setattr(turns, 'SLICE', 0.0)    # a turn at every step: the same every run
    few, many = 200, 1400
    for prefix, count in (('few', few), ('many', many)):
        for i in range(count):
            swift.add(f'/c/{prefix}{i:05d}')
    fake, _ = batch_servers(d0=ran(), d1=ran(), d2=ran())
    fake.batches = collections.deque(maxlen=1)       # the fake keeps nothing either
    fake.images = collections.deque(maxlen=1)
    swift.calls = collections.deque(maxlen=1)

    def peak(count: int) -> int:
        """Traced bytes at most during a job over ``count`` objects, its body read
        and let go a chunk at a time."""
        prefix = 'few' if count == few else 'many'
        req = Request.blank(ACCOUNT, method='POST', body=json.dumps(
            job(stdin=f'swift://~/c/{prefix}*')).encode(),
            headers={'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/json'})
        gc.collect()        # what earlier tests left for the collector is not the job's
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        body = req.call_application(mw)[2]
        lines = sum(chunk.count(b'\n') for chunk in body)
        body.close()
        assert lines == count
        return tracemalloc.get_traced_memory()[1] - start

    tracemalloc.start()
    try:
        peak(many)          # warm: imports, caches, the event hub's heap of timers
        small, large = peak(few), peak(many)
    finally:
        tracemalloc.stop()
    # ~280 bytes a node (the spool's index, the hub's timers), the same in any process;
    # a result, plan or entry kept would add a kilobyte or more
    assert (large - small) / (many - few) < 400, (small, large)


def test_a_server_without_the_program_gets_the_batch_again_with_it(
        mw, swift, batch_servers) -> None:
    objects(swift, 3)
    fake, _single = batch_servers(d0=ran())
    mw.dispatcher.programs.servers[('10.0.0.1', 6200, PROGRAM_DIGEST)] = None
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    assert [(h.get(wire.PROGRAM), p is not None, len(e)) for _d, h, p, e in fake.batches] == [
        (PROGRAM_DIGEST, False, 0), (None, True, 3)]


def test_nodes_with_the_jobs_image_travel_in_batches_with_it_once(
        mw, swift, batch_servers) -> None:
    """The image goes with the first batch to a server, then by digest; a server
    that lost it (412) gets the batch again with it."""
    image = b'\x1f\x8b image tar' * 1000
    digest = hashlib.sha256(image).hexdigest()
    swift.add('/c/image.tar', image)
    names = objects(swift, 4)
    fake, single = batch_servers(d0=ran())
    group = job(stdin='swift://~/c/item*')
    group[0]['devices'].append({'name': 'image', 'path': 'swift://~/c/image.tar'})
    for _ in range(2):
        resp = post(mw, group)
        assert resp.status_int == 200, resp.body
        assert resp.body == b''.join(f'out /AUTH_a{n}\n'.encode() for n in names)
    fake.cached.discard(('d0', digest))          # the server lost the image
    resp = post(mw, group)
    assert resp.status_int == 200, resp.body
    assert single.asked == []
    assert [(h.get(wire.IMAGE), h.get(wire.PROGRAM), len(e)) for _d, h, _p, e in fake.batches
            ] == [(None, None, 4), (digest, PROGRAM_DIGEST, 4), (digest, PROGRAM_DIGEST, 0),
                  (None, None, 4)]
    assert fake.images == [image, None, None, image]
    assert all(any(d.name == 'image' for d in e.spec.devices)
               for *_x, entries in fake.batches for e in entries)


def test_a_one_node_job_is_sent_alone(mw, batch_servers) -> None:
    fake, single = batch_servers(alone={'d0': ok(b'counted\n')})
    resp = post(mw, job())
    assert resp.status_int == 200 and resp.body == b'counted\n'
    assert fake.batches == [] and [d for d, _h, _s in single.asked] == ['d0']


def test_the_jobs_image_goes_once_to_each_server_then_its_digest(mw, swift, caching) -> None:
    image = b'\x1f\x8b image tar' * 1000
    swift.add('/c/image.tar', image)
    for i in range(2, 5):
        swift.add(f'/c/data{i}', b'more')
    asked = caching(d0=ok(), delay=0.05)
    group = job(stdin='swift://~/c/data*')
    group[0]['devices'].append({'name': 'image', 'path': 'swift://~/c/image.tar'})
    resp = post(mw, group)
    assert resp.status_int == 200, resp.body
    assert resp.headers['X-Nexe-System'] == 'wc-1,wc-2,wc-3,wc-4'
    digest = hashlib.sha256(image).hexdigest()
    assert [(h.get(wire.IMAGE), sent.get('dev/image')) for _d, h, sent in asked.asked] == [
        (None, image)] + [(digest, None)] * 3
    assert swift.called('GET', '/c/image.tar') == 1


@pytest.mark.parametrize('why', ['bad execute request: unexpected member batch/entries',
                                 'bad execute request: limits: memory above the most'])
def test_an_object_server_that_cannot_read_the_proxys_request_is_the_clusters_fault(
        mw, servers, why) -> None:
    # review9: any 4xx ended the node 'refused' (the job's mistake), also the object
    # server's 'bad execute request' of a request this proxy built (the two apart in
    # version or configuration, or a bug): the cluster's, as before, 'error'
    servers(d0=_Refused(400, why), d1=ok())
    resp = post(mw, job())
    assert (resp.status_int, resp.headers['X-Nexe-Status']) == (400, 'error')
    assert resp.headers['X-Nexe-Error'].endswith(f'refused the node: 400 {why}')


@pytest.fixture
def no_account(monkeypatch):
    """``no_account(status)``: Swift's info of every container of account ``others`` or
    ``AUTH_b`` is 0 (its account could not be read), the account's is ``status``."""
    from zerocloud.proxy import caller

    def install(status: int) -> None:
        real = caller.get_container_info

        def container_info(env, app, **kw):
            if env['PATH_INFO'].split('/')[2] in ('others', 'AUTH_b'):
                return {'status': 0}
            return real(env, app, **kw)
        monkeypatch.setattr(caller, 'get_container_info', container_info)
        monkeypatch.setattr(caller, 'get_account_info', lambda env, app, **kw: {'status': status})
    return install


def test_a_missing_object_of_a_missing_account_says_the_account_is_missing(
        mw, swift, servers, no_account) -> None:
    # Swift's info of a container of a missing account is 0, not 404: the read of
    # swift://others/c/x.csv said only "Error 404 Not Found", not why, nor the prefix
    no_account(404)
    asked = servers()
    resp = post(mw, job(stdin='swift://others/c/x.csv'))
    assert (resp.status_int, resp.body) == (
        404, b'Error 404 Not Found while fetching swift://others/c/x.csv (device stdin of wc): '
             b'account swift://others does not exist (accounts are named AUTH_<name>: did you '
             b'mean swift://AUTH_others/c/x.csv?)\n')
    assert asked.asked == []


@pytest.mark.parametrize('status, says', [
    (404, b'account swift://AUTH_b does not exist (of swift://AUTH_b/c/out.txt)\n'),
    # its account servers down: not "does not exist"
    (503, b'cannot read the container of swift://AUTH_b/c/out.txt: its account could not be '
          b'read, try again\n')])
def test_a_written_object_of_a_missing_account_says_which_is_missing(
        mw, swift, servers, no_account, status: int, says: bytes) -> None:
    no_account(status)
    asked = servers()
    resp = post_writing(mw, 'swift://AUTH_b/c/out.txt')
    assert (resp.status_int, resp.body) == (404 if status == 404 else 503, says)
    assert asked.asked == []

"""zerocloud.sources, zapp, cgiout, chain and deferred, in front of the fake Swift of
test_proxy_filter (object servers scripted): what each way to start a job sends."""

from __future__ import annotations

import collections
import gzip
import io
import json
import logging
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from archives import tar_bytes, zapp_member
from swift.common.concurrency import Empty, LightQueue, spawn
from swift.common.swob import HTTPBadRequest, HTTPException, HTTPForbidden, Request, Response
from test_proxy_filter import ACCOUNT, TEXT, FakeRing, FakeSwift, Servers, ok

from zerocloud import cgiout, chain, deferred, sources, wire, zapp
from zerocloud.job import SwiftPath
from zerocloud.proxy.dispatch import Dispatcher
from zerocloud.proxy.middleware import ProxyExecMiddleware
from zerocloud.sources import Input, Launch

JOB = [{'name': 'up', 'exec': {'path': 'swift://~/bin/wc'},
        'devices': [{'name': 'stdin'}, {'name': 'stdout'}]}]


@pytest.fixture
def swift() -> FakeSwift:
    fake = FakeSwift()
    fake.add('/bin/wc', b'\x7fELF program')
    fake.add('/c/data')
    fake.add('/jobs/up.json', json.dumps(JOB).encode(), **{'Content-Type': 'application/json'})
    return fake


@pytest.fixture
def servers(monkeypatch):
    def install(**script) -> Servers:
        fake = Servers(**script)
        monkeypatch.setattr(Dispatcher, 'exchange', fake)
        return fake
    return install


def request(app, path: str = ACCOUNT, method: str = 'POST', body: bytes = b'', **headers):
    headers.setdefault('X-Zerovm-Execute', '1.0')
    return Request.blank(path, method=method, body=body, headers=headers).get_response(app)





# -- a job POSTed without X-Zerovm-Execute -------------------------------------------------------

@pytest.mark.parametrize('path, kind, what', [
    (ACCOUNT, 'application/json', 'a job description'),
    (ACCOUNT + '/c', 'application/json; charset=utf-8', 'a job description'),
    (ACCOUNT + '/c/data', 'application/x-gzip', 'a zapp'),
])
def test_a_job_posted_without_the_execute_header_is_refused_saying_so(
        mw, swift, path: str, kind: str, what: str) -> None:
    # Swift answered 204 (an object's content type changed to application/json, even),
    # the job silently not run
    resp = Request.blank(path, method='POST', body=json.dumps(JOB).encode(),
                         headers={'Content-Type': kind}).get_response(mw)
    assert resp.status_int == 400
    assert resp.body.decode() == (
        f'This POST has a body of {kind.split(";")[0]} ({what}) but no X-Zerovm-Execute '
        'header: add X-Zerovm-Execute: 1.0 to run it (without it, Swift would only update '
        'metadata and ignore the body)\n')
    assert not swift.calls


UNRUN_POST = ('This POST names what to run (X-Zerovm-Source) but has no X-Zerovm-Execute '
              'header: add X-Zerovm-Execute: 1.0 (a job, zapp or script) or sql/1.0 (a '
              'query) to run it (without it, Swift would only update metadata)\n')


# swift post -H 'X-Zerovm-Source: ...' without X-Zerovm-Execute answered 204 (nothing ran);
# swift download c o -H 'X-Zerovm-Source: ...' returned the object, the app not run
@pytest.mark.parametrize(('path', 'method', 'source', 'says'), [
    (ACCOUNT, 'POST', 'swift://~/jobs/up.json', UNRUN_POST),
    (ACCOUNT + '/c/data', 'POST', 'swift://~/jobs/up.json', UNRUN_POST),
    (ACCOUNT + '/c/data', 'GET', 'swift://~/apps/up.zapp',
     'This GET names an app (X-Zerovm-Source) but has no X-Zerovm-Execute header: add '
     'X-Zerovm-Execute: open/1.0 to read the object through the app (without it, the '
     'object itself would be returned)\n'),
])
def test_what_to_run_named_without_the_execute_header_is_refused_saying_so(
        mw, swift, path: str, method: str, source: str, says: str) -> None:
    resp = Request.blank(path, method=method,
                         headers={'X-Zerovm-Source': source}).get_response(mw)
    assert resp.status_int == 400
    assert resp.body.decode() == says
    assert not swift.calls
    # without X-Zerovm-Source the same request is Swift's own: passed through
    assert Request.blank(path, method=method).get_response(mw).status_int < 300


@pytest.mark.parametrize('kind, body, query', [
    ('application/json', b'', ''),                       # swift post -H 'Content-Type: ...'
    ('text/plain', b'/c/data\n', '?bulk-delete'),         # Swift's bulk delete
    ('multipart/form-data; boundary=x', b'--x--', ''),    # formpost
])
def test_swifts_own_posts_pass_without_the_execute_header(mw, swift, kind: str, body: bytes,
                                                          query: str) -> None:
    resp = Request.blank(ACCOUNT + '/c/data' + query, method='POST', body=body,
                         headers={'Content-Type': kind}).get_response(mw)
    assert resp.status_int != 400
    assert swift.calls[0][:2] == ('POST', ACCOUNT + '/c/data')


@pytest.mark.parametrize('kind, body, what', [
    # curl -d @job.json: the body decides, not only the content type
    ('application/x-www-form-urlencoded', json.dumps(JOB).encode(), 'a job description'),
    ('text/plain', json.dumps(JOB[0]).encode(), 'a job description'),
    ('', b'  ' + json.dumps(JOB).encode(), 'a job description'),
    ('application/octet-stream', tar_bytes({'job.json': b'[]'}), 'a zapp'),
    ('application/x-www-form-urlencoded', b'#!file://python:python\nprint(1)\n', 'a script'),
], ids=['form-job', 'text-group', 'untyped-job', 'octet-zapp', 'form-script'])
def test_a_job_body_of_another_content_type_without_the_execute_header_is_refused(
        mw, swift, kind: str, body: bytes, what: str) -> None:
    resp = Request.blank(ACCOUNT + '/c/data', method='POST', body=body,
                         headers={'Content-Type': kind} if kind else {}).get_response(mw)
    assert resp.status_int == 400
    assert resp.body.decode().startswith(
        f'This POST has a body of {kind or "no content type"} ({what}) but no '
        'X-Zerovm-Execute header: add X-Zerovm-Execute: 1.0 to run it')
    assert not swift.calls


@pytest.mark.parametrize('kind', ['application/x-www-form-urlencoded', 'application/json', ''])
def test_a_query_posted_without_the_execute_header_is_told_sql(mw, swift, kind: str) -> None:
    # curl --data-binary '{"query": ...}' was Swift's 204, the query silently not run; as
    # application/json it was told to add X-Zerovm-Execute: 1.0, which then refused it
    query = json.dumps({'query': 'SELECT count(*) FROM swift://~/c/*.csv'}).encode()
    resp = Request.blank(ACCOUNT, method='POST', body=query,
                         headers={'Content-Type': kind} if kind else {}).get_response(mw)
    assert resp.status_int == 400
    assert resp.body.decode() == (
        f'This POST has a body of {kind or "no content type"} (an SQL query) but no '
        'X-Zerovm-Execute header: add X-Zerovm-Execute: sql/1.0 to run it (without it, '
        'Swift would only update metadata and ignore the body)\n')
    assert not swift.calls


@pytest.mark.parametrize('kind, body', [
    ('application/x-www-form-urlencoded', b'a=b&c=d'),
    ('text/plain', b'{"name": "not a job", "count": 1}'),
    ('text/plain', b'[' * 5000),                               # not JSON (nor deep recursion)
    ('application/x-www-form-urlencoded', b'[{"exec": 1}' + b' ' * 5000 + b']'),  # > max job
], ids=['form', 'not-a-job', 'not-json', 'too-long'])
def test_other_bodies_pass_to_swift_whole(mw, swift, kind: str, body: bytes) -> None:
    seen = []

    def reading(env, start_response):
        seen.append(env['wsgi.input'].read())
        return FakeSwift.__call__(swift, env, start_response)
    mw.app = reading
    resp = Request.blank(ACCOUNT + '/c/data', method='POST', body=body,
                         headers={'Content-Type': kind}).get_response(mw)
    assert resp.status_int != 400
    assert seen == [body]


def test_a_job_with_the_execute_header_runs_when_sent_form_urlencoded(mw, swift, servers) -> None:
    # curl -H 'X-Zerovm-Execute: 1.0' -d @job.json (no --data-binary, no Content-Type)
    servers(d0=ok(b'done\n'))
    resp = request(mw, ACCOUNT + '/c/data', body=json.dumps(JOB).encode(),
                   **{'Content-Type': 'application/x-www-form-urlencoded'})
    assert resp.status_int == 200, resp.body


def test_a_stored_job_that_is_not_valid_is_named(mw, swift, servers) -> None:
    # "Job description is not valid JSON: ..." did not say it was the stored one
    swift.add('/jobs/bad.json', b'#include <stdio.h>\n', **{'Content-Type': 'application/json'})
    resp = request(mw, body=b'', **{'X-Zerovm-Source': 'swift://~/jobs/bad.json'})
    assert resp.status_int == 400
    assert resp.body.startswith(b'Job description is not valid JSON: ')
    assert resp.body.endswith(b' (in swift://AUTH_a/jobs/bad.json)\n')


@pytest.mark.parametrize('url, method', [('/v1/AUTH_a', 'POST'), ('/open/AUTH_a/c/doc', 'GET')])
def test_a_stored_program_named_as_the_source_says_it_runs_as_a_jobs_program(
        mw, swift, servers, url: str, method: str) -> None:
    # it said "Job description is a program (an ELF file), not a job: upload it ...", of a
    # program uploaded already (swift upload stores it as application/octet-stream)
    swift.add('/bin/wc', b'\x7fELF program', **{'Content-Type': 'application/octet-stream'})
    swift.add('/c/doc', TEXT, **{'Content-Type': 'text/plain'})
    asked = servers()
    resp = request(mw, url, method=method, body=b'',
                   **{'X-Zerovm-Source': 'swift://~/bin/wc'})
    assert (resp.status_int, resp.body) == (400, (
        b'swift://AUTH_a/bin/wc is a program, not a job, zapp or script: name it as the '
        b'exec.path of a job (zc run swift://AUTH_a/bin/wc --on URL runs it over objects)\n'))
    assert asked.asked == []


def test_a_registered_app_that_is_not_valid_is_named(mw, swift, servers) -> None:
    # a GET said "Job description is not valid JSON: ..." of a job its user never sent
    swift.add('/.zvm/text/plain/config', b'[{"name": "v", "exec": {"path": {.object_path}}}]')
    swift.add('/c/doc', TEXT, **{'Content-Type': 'text/plain'})
    asked = servers()
    resp = request(mw, '/open/AUTH_a/c/doc', method='GET')
    assert resp.status_int == 400
    assert resp.body.startswith(b'Job description is not valid JSON: ')
    assert resp.body.endswith(b' (in swift://AUTH_a/.zvm/text/plain/config)\n')
    assert asked.asked == []


# -- what travels to the object server ---------------------------------------------------------

def test_a_source_job_sends_the_body_as_stdin(mw, swift, servers) -> None:
    asked = servers(d0=ok(b'done\n'), d2=ok(b'done\n'))
    resp = request(mw, body=b'payload', **{'X-Zerovm-Source': 'swift://~/jobs/up.json'})
    assert resp.status_int == 200, resp.body
    _device, _headers, sent = asked.asked[0]
    assert sent['dev/stdin'] == b'payload'
    assert json.loads(sent['node.json'])['devices'][0] == {
        'name': 'stdin', 'access': 'r', 'random': False, 'source': 'member'}
    assert resp.headers['X-Chain-Total-Time']


def test_a_job_posted_to_an_object_reads_it_in_place(mw, swift, servers) -> None:
    asked = servers(d0=ok())
    resp = request(mw, ACCOUNT + '/c/data', body=json.dumps(JOB).encode())
    assert resp.status_int == 200, resp.body
    device, headers, sent = asked.asked[0]
    assert device == 'd0' and headers['X-Zerovm-Access'] == 'GET'     # next to c/data
    assert 'dev/stdin' not in sent


def test_a_zapp_sends_its_program_and_itself_as_the_image(mw, swift, servers) -> None:
    job = [{'name': 'app', 'exec': {'path': 'bin/prog'}, 'devices': [{'name': 'stdout'}]}]
    archive = tar_bytes({'./boot/system.map': json.dumps(job).encode(),
                         './bin/prog': b'\x7fELF z'})
    asked = servers(d0=ok(), d1=ok(), d2=ok())
    resp = request(mw, body=gzip.compress(archive), **{'Content-Type': 'application/x-gzip'})
    assert resp.status_int == 200, resp.body
    _device, _headers, sent = asked.asked[0]
    assert sent['exe'] == b'\x7fELF z'
    assert sent['dev/image'] == archive                       # uncompressed
    assert swift.calls == []                                  # nothing else read


def test_a_script_runs_its_interpreter_on_dev_script(mw, swift, servers) -> None:
    asked = servers(d0=ok(), d1=ok(), d2=ok())
    script = b'#!swift://~/bin/wc -l --x\nwhatever\n'
    resp = request(mw, body=script, **{'Content-Type': 'text/x-script'})
    assert resp.status_int == 200, resp.body
    _device, _headers, sent = asked.asked[0]
    spec = json.loads(sent['node.json'])
    assert spec['name'] == 'script' and spec['argv'] == ['script', '-l', '--x', '/dev/script']
    assert sent['dev/script'] == script and sent['exe'] == b'\x7fELF program'


def test_open_substitutes_the_template_and_sets_cgi_variables(mw, swift, servers) -> None:
    template = [{'name': 'v', 'exec': {'path': 'swift://~/bin/wc', 'args': ['{.opt=-w}', '{.x}']},
                 'devices': [{'name': 'stdin', 'path': '{.object_path}'},
                             {'name': 'stdout', 'content_type': '{.type=text/x-a}'}]}]
    swift.add('/.zvm/text/plain/config', json.dumps(template).encode())
    swift.add('/c/doc', TEXT, **{'Content-Type': 'text/plain; charset=utf-8'})
    asked = servers(d0=ok(b'viewed\n'))
    resp = request(mw, '/open/AUTH_a/c/doc?x=a%22b', method='GET')
    assert resp.status_int == 200, resp.body
    assert resp.body == b'viewed\n' and resp.headers['Content-Type'] == 'text/x-a'
    spec = json.loads(asked.asked[0][2]['node.json'])
    assert spec['argv'] == ['v', '-w', 'a"b']
    local = {k: v for k, v in spec['env'].items() if k.startswith('LOCAL_')}
    assert spec['env'] == {'GATEWAY_INTERFACE': 'CGI/1.1', 'SERVER_SOFTWARE': 'zerocloud',
                           'REQUEST_METHOD': 'GET', 'REQUEST_URI': '/open/AUTH_a/c/doc?x=a%22b',
                           'PATH_INFO': '/AUTH_a/c/doc', 'QUERY_STRING': 'x=a%22b',
                           'SCRIPT_NAME': 'v', 'SCRIPT_FILENAME': 'swift://AUTH_a/bin/wc', **local}
    assert local['LOCAL_PATH_INFO'] == '/AUTH_a/c/doc'
    assert local['LOCAL_CONTENT_TYPE'] == 'text/plain; charset=utf-8'
    assert local['LOCAL_CONTENT_LENGTH'] == str(len(TEXT))
    assert local['LOCAL_DOCUMENT_ROOT'] == '/dev/stdin' and local['LOCAL_OBJECT'] == 'on'


class EndpointSwift(FakeSwift):
    """Containers with an ``X-Container-Meta-Rest-Endpoint`` (``endpoints``)."""

    def __init__(self, endpoints: dict[str, str]) -> None:
        super().__init__()
        self.endpoints = endpoints

    def __call__(self, env, start_response):
        parts = env['PATH_INFO'].split('/')
        if env['REQUEST_METHOD'] == 'HEAD' and len(parts) == 4 and parts[3] in self.endpoints:
            return Response(status=204, headers={
                'X-Backend-Storage-Policy-Index': '0',
                'X-Container-Meta-Rest-Endpoint': self.endpoints[parts[3]]})(env, start_response)
        return super().__call__(env, start_response)


def test_api_runs_the_endpoint_of_the_container(servers, monkeypatch) -> None:
    swift = EndpointSwift({'site': 'swift://~/jobs/up.json', 'bad': 'swift://~/jobs'})
    swift.add('/bin/wc', b'\x7fELF program')
    swift.add('/jobs/up.json', json.dumps(JOB).encode(), **{'Content-Type': 'application/json'})
    FakeRing.install(monkeypatch)
    mw = ProxyExecMiddleware(swift, {})
    asked = servers(d0=ok(b'served\n'), d1=ok(b'served\n'), d2=ok(b'served\n'))
    resp = Request.blank('/api/AUTH_a/site/users/7?q=1', method='PUT',
                         body=b'payload').get_response(mw)
    assert (resp.status_int, resp.body) == (200, b'served\n')
    _device, _headers, sent = asked.asked[0]
    assert sent['dev/stdin'] == b'payload'
    env = json.loads(sent['node.json'])['env']
    assert (env['REQUEST_METHOD'], env['PATH_INFO'], env['QUERY_STRING']) == \
        ('PUT', '/AUTH_a/site/users/7', 'q=1')
    # the same with X-Zerovm-Execute: api/1.0 on a /v1 URL
    resp = Request.blank('/v1/AUTH_a/site/users', headers={'X-Zerovm-Execute': 'api/1.0'}
                         ).get_response(mw)
    assert resp.status_int == 200
    assert json.loads(asked.asked[-1][2]['node.json'])['env']['PATH_INFO'] == '/AUTH_a/site/users'
    for path, status, says in (
            ('/api/AUTH_a/plain/x', 404, 'No API endpoint configured for container plain'),
            ('/api/AUTH_a/bad/x', 412, 'X-Container-Meta-Rest-Endpoint of bad format is '
                                       'swift://account/container/object (it names a '
                                       'container)'),
            ('/api/AUTH_a', 404, "No API at /api/AUTH_a: an API is a container's (the app "
                                 'its X-Container-Meta-Rest-Endpoint names): request '
                                 '/api/AUTH_a/<container>[/<path>]\n'),
            ('/api/AUTH_a/', 404, 'No API at /api/AUTH_a: '),
            ('/v1/AUTH_a', 404, 'No API at /v1/AUTH_a: an API is a container\'s (the app its '
                                'X-Container-Meta-Rest-Endpoint names): request '
                                '/v1/AUTH_a/<container>[/<path>] with X-Zerovm-Execute: '
                                'api/1.0\n')):
        resp = Request.blank(path, method='POST', body=b'x',
                             headers={'X-Zerovm-Execute': 'api/1.0'}).get_response(mw)
        assert resp.status_int == status and resp.body.decode().startswith(says), resp.body


def test_a_post_gives_cgi_and_local_variables(mw, swift, servers) -> None:
    swift.add('/c/my%20doc', TEXT, **{'X-Object-Meta-Lang.Code': 'nb'})     # as requested
    asked = servers(d0=ok(b'ok\n'))
    job = [{'name': 'v', 'exec': {'path': 'swift://~/bin/wc', 'env': {'PATH_INFO': 'mine'}},
            'devices': [{'name': 'input', 'path': 'swift://~/c/my doc'}, {'name': 'stdout'}]}]
    resp = request(mw, ACCOUNT + '?a=1', body=json.dumps(job).encode())
    assert resp.status_int == 200, resp.body
    env = json.loads(asked.asked[0][2]['node.json'])['env']
    assert env['REQUEST_METHOD'] == 'POST' and env['QUERY_STRING'] == 'a=1'
    assert env['PATH_INFO'] == '/AUTH_a'             # the request's (CGI wins over the job's)
    assert env['LOCAL_PATH_INFO'] == '/AUTH_a/c/my%20doc'
    assert env['LOCAL_DOCUMENT_ROOT'] == '/dev/input'
    assert env['LOCAL_HTTP_X_OBJECT_META_LANG_CODE'] == 'nb'
    assert 'CONTENT_LENGTH' not in env                # the body was the job, not its input


# -- errors before anything runs ---------------------------------------------------------------

@pytest.mark.parametrize(('path', 'method', 'body', 'headers', 'status', 'says'), [
    (ACCOUNT, 'POST', b'', {'X-Zerovm-Source': 'swift://~/jobs/none'}, 404,
     b'Error 404 Not Found while fetching swift://AUTH_a/jobs/none'),
    (ACCOUNT, 'POST', b'x' * 5000, {}, 413, b'Job description larger than zerovm_maxconfig'),
    # the limit named, but not what to do about it
    (ACCOUNT, 'POST', b'x' * 5000, {}, 413, b'keep long lists (args, env, file_list) in an '
     b'object the program reads'),
    (ACCOUNT, 'POST', b'#!x', {}, 400, b'Bad interpreter x'),
    # Python or Lua named as a shell's #! line would: the line that runs them
    (ACCOUNT, 'POST', b'#!python3\nprint(1)\n', {}, 400, b'Bad interpreter python3: expected '
     b'swift://<account>/<container>/<object>, /<container>/<object> or file://<system image>:'
     b'<path> (did you mean #!file://python3:python3?)\n'),
    (ACCOUNT, 'POST', b'#!file://python3\nprint(1)\n', {}, 400, b'Must supply image name in '
     b'shebang url file://python3 (file://<system image>:<path>) (did you mean '
     b'#!file://python3:python3?)\n'),
    (ACCOUNT, 'POST', b'#!lua5.4\nprint(1)\n', {}, 400, b'(did you mean #!file://lua:lua?)\n'),
    (ACCOUNT, 'POST', b'\xff\xfe', {'Content-Type': 'text/x-whatever'}, 400,
     b'Unsupported Content-Type text/x-whatever of the request body'),
    # an editor's byte order mark before the #!: 'a script starts with #!' said no more
    (ACCOUNT, 'POST', b'\xef\xbb\xbf#!file://python3:python3\n', {'Content-Type': 'text/x-python'},
     400, b'and a script starts with #! (this one starts with a UTF-8 byte order mark before '
     b'its #!: save it without one)'),
    # a Python script without its #! line (swift upload of sum.py, run by X-Zerovm-Source)
    (ACCOUNT, 'POST', b'print(1)\n', {'Content-Type': 'text/x-python'}, 400,
     b'Unsupported Content-Type text/x-python of the request body: a job description is '
     b'application/json, a zapp application/x-tar or application/x-gzip, and a script starts '
     b'with #! (a Python one with #!file://python3:python3, its first line)\n'),
    (ACCOUNT, 'POST', tar_bytes({'a': b''}), {'Content-Type': 'application/x-tar'}, 400,
     b'System boot map was not found in the request body'),
    # a zapp sent with curl's default form type was "Job description is not UTF-8"
    (ACCOUNT, 'POST', gzip.compress(tar_bytes({'a': b''}), mtime=0),
     {'Content-Type': 'application/x-www-form-urlencoded'}, 400,
     b'the request body is a gzip or tar archive (a zapp?) sent as application/x-www-form-'
     b'urlencoded: send a zapp as application/x-gzip (or application/x-tar)\n'),
    # a job description sent as a zapp's type was "not a tar archive: truncated header"
    (ACCOUNT, 'POST', b'[{"name": "x"}]', {'Content-Type': 'application/x-tar'}, 400,
     b'the request body is a job description (JSON) sent as application/x-tar: send it as '
     b'application/json\n'),
    (ACCOUNT, 'POST', tar_bytes({'a': b''}), {'Content-Type': 'application/json'}, 400,
     b'the request body is a gzip or tar archive (a zapp?) sent as application/json'),
    (ACCOUNT, 'POST', b'[{"name": "x", "exec": {"path": "swift://~/bin/wc"}, '
                      b'"devices": [{"name": "image"}]}]', {}, 400,
     b'Device image of x has no path, and the request is not a zapp'),
    (ACCOUNT, 'POST', b'[{"name": "x", "exec": {"path": "bin/wc"}}]', {}, 400,
     b'only swift:// programs and files of the job\'s image'),
    # a mistyped URL: the answer said what may run, not how to write it
    (ACCOUNT, 'POST', b'[{"name": "x", "exec": {"path": "swift:/~/bin/wc"}}]', {}, 400,
     b'exec path swift:/~/bin/wc of x: only swift:// programs and files of the job\'s image '
     b'can run here, and x has no image device (a program is swift://<account>/<container>/'
     b'<object>, e.g. swift://~/bin/prog, or file://<system image>:<path>, e.g. '
     b'file://python3:python3)\n'),
    (ACCOUNT, 'POST', b'[{"name": "x", "exec": {"path": "file://python:bin/python"}}]',
     {}, 400, b'unknown image "python"'),
    ('/open/AUTH_a/c/data', 'GET', b'', {}, 404,
     b'No application registered for text/html (no swift://AUTH_a/.zvm/text/html/config): '
     b'register one (zc deploy APP.zapp --content-type TYPE) or name the app (X-Zerovm-Source, '
     b'zc open --source)\n'),
    ('/open/AUTH_a/c/*', 'GET', b'', {}, 400, b'objects with "*" in their name'),
    # a script POSTed to c/*.csv to run over each: the answer said only what cannot be
    ('/v1/AUTH_a/c/*.csv', 'POST', b'#!file://python3:python3\nprint(1)\n', {}, 400,
     b'swift://AUTH_a/c/*.csv: objects with "*" in their name cannot be run over ("*" is a '
     b'wildcard in jobs): for a node per object it matches, POST to the account a job that '
     b"reads swift://AUTH_a/c/*.csv (zc run PROGRAM --on 'swift://AUTH_a/c/*.csv')\n"),
])
def test_requests_refused_before_anything_runs(mw, swift, servers, path, method, body, headers,
                                               status, says) -> None:
    asked = servers()
    resp = request(mw, path, method, body, **headers)
    assert resp.status_int == status, resp.body
    assert says in resp.body
    assert asked.asked == []


# -- the parts ---------------------------------------------------------------------------------

def test_substitute_escapes_values_and_uses_defaults() -> None:
    text = b'["{.a}", "{.b=x y}", "{.c}", "{.object_path}"]'
    out = sources.substitute(text, {'a': 'q"\\\n'}, SwiftPath('A', 'c', 'o b'))
    assert json.loads(out) == ['q"\\\n', 'x y', '', 'swift://A/c/o%20b']


@pytest.mark.parametrize(('data', 'expected'), [
    (b'Status: 404 Nope\r\nContent-Type: text/html\r\nX-Object-Meta-A: b\r\n'
     b'X-Nexe-Status: no\r\nContent-Length: 1\r\n\r\nbody',
     (404, {'Content-Type': 'text/html', 'X-Object-Meta-A': 'b'}, b'body')),
    (b'Location: /x\n\n', (200, {'Content-Type': 'text/plain', 'Location': '/x'}, b'')),
])
def test_cgi_output_is_parsed(data: bytes, expected) -> None:
    status, headers, start = cgiout.parse_head(cgiout.CGI, data)
    assert (status, headers, data[start:]) == expected


@pytest.mark.parametrize(('content_type', 'data', 'says'), [
    (cgiout.CGI, b'Status: 200 OK\n', 'no blank line'),
    (cgiout.CGI, b'Status: 99\n\n', "bad Status header '99'"),
    (cgiout.CGI, b'Status: 100 Continue\n\n', 'not a final HTTP status'),
    (cgiout.CGI, b'no colon\n\n', "bad header line 'no colon'"),
    (cgiout.HTTP, b'Content-Type: a/b\n\n', 'not an HTTP/1.x status line'),
])
def test_bad_cgi_output_says_why(content_type: str, data: bytes, says: str) -> None:
    with pytest.raises(cgiout.CgiError, match=says):
        cgiout.parse_head(content_type, data)


def test_compose_takes_headers_from_the_first_node() -> None:
    parts = [('a', cgiout.HTTP, b'HTTP/1.1 201 Made\r\nContent-Type: x/y\r\n\r\none'),
             ('b', cgiout.CGI, b'Status: 500 Bad\n\ntwo'), ('c', None, b'three')]
    status, headers, starts = cgiout.compose(parts)
    assert (status, headers) == (201, {'Content-Type': 'x/y'})
    assert [head[start:] for (_, _, head), start in zip(parts, starts, strict=True)] == \
        [b'one', b'two', b'three']
    with pytest.raises(cgiout.CgiError, match='^b: its message/cgi output'):
        cgiout.compose([('a', None, b''), ('b', cgiout.CGI, b'')])


def test_a_body_over_zerovm_maxinput_is_a_413_naming_the_option() -> None:
    with pytest.raises(HTTPException) as err:
        sources._collect(io.BytesIO(b'x' * 10), b'', 4, None, 'the request body')
    assert (err.value.status_int, err.value.body) == (
        413, b'the request body is larger than zerovm_maxinput (4 bytes)\n')


def test_zapp_members_and_limits() -> None:
    f = io.BytesIO(tar_bytes({'./boot/system.map': b'[]', 'bin/x': b'12345'}))
    assert zapp.system_map(f, 10, 'z') == b'[]'
    assert zapp_member(f, '/bin/x', 10, 'z') == b'12345'
    with pytest.raises(HTTPException) as err:
        zapp_member(f, 'bin/x', 4, 'z')
    assert err.value.status_int == 413
    assert err.value.body == b'bin/x in z is larger than zerovm_maxnexe (4 bytes)\n'
    with pytest.raises(HTTPException) as err:
        zapp.gunzip(io.BytesIO(gzip.compress(b'a' * 100)), io.BytesIO(), 99, 'z')
    assert err.value.body == b'z is larger than 99 bytes uncompressed\n'
    with pytest.raises(HTTPException) as err:
        zapp.gunzip(io.BytesIO(gzip.compress(b'a' * 100)[:-5]), io.BytesIO(), 999, 'z')
    assert err.value.body == b'z is not a valid gzip file: it ends too early\n'


def bomb(members: int = 20000, map_last: bool = True) -> bytes:
    """A gzipped tar of many empty members (then the job description)."""
    files = {f'e/{i}': b'' for i in range(members)}
    if map_last:
        files['boot/system.map'] = b'[]'
    return gzip.compress(tar_bytes(files), mtime=0)


def test_zapp_member_count_and_expansion_are_bounded() -> None:
    f = io.BytesIO(gzip.decompress(bomb(50)))
    assert zapp.system_map(f, 10, 'z', max_members=51) == b'[]'
    with pytest.raises(HTTPException) as err:
        zapp.system_map(f, 10, 'z', max_members=50)
    assert err.value.status_int == 413
    assert err.value.body == b'z has more than 50 members (zapp_max_members)\n'
    zeros = gzip.compress(bytes(4 << 20))
    with pytest.raises(HTTPException) as err:
        zapp.gunzip(io.BytesIO(zeros), io.BytesIO(), 8 << 20, 'z', ratio=200)
    assert err.value.status_int == 413
    assert err.value.body == b'z expands more than 200 times (zapp_max_ratio)\n'
    assert zapp.gunzip(io.BytesIO(zeros), io.BytesIO(), 8 << 20, 'z', ratio=2000) == 4 << 20
    small = gzip.compress(bytes(1 << 19))                    # below the floor: any ratio
    assert zapp.gunzip(io.BytesIO(small), io.BytesIO(), 1 << 20, 'z', ratio=2) == 1 << 19
    assert zapp.Limits.from_conf({'zapp_max_members': '7'}) == zapp.Limits(members=7)
    with pytest.raises(ValueError):
        zapp.Limits.from_conf({'zapp_max_ratio': '0'})


def test_a_zapp_without_a_token_is_refused_before_it_is_read(mw, swift, monkeypatch) -> None:
    def unpacked(*args, **kwargs):
        raise AssertionError('the zapp was unpacked before authorisation')
    monkeypatch.setattr(zapp, 'gunzip', unpacked)
    monkeypatch.setattr(zapp, 'system_map', unpacked)
    req = Request.blank(ACCOUNT, method='POST', body=bomb(), headers={
        'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/x-gzip'})
    req.environ['swift.authorize'] = lambda sub: Response(status=401)
    resp = req.get_response(mw)
    assert resp.status_int == 401
    assert resp.body == b'Unauthorized: a valid token is needed to execute jobs in swift://AUTH_a\n'
    assert req.environ['wsgi.input'].tell() == 0                       # not even read


def test_a_zapp_bomb_is_refused_by_its_limit(swift, monkeypatch) -> None:
    FakeRing.install(monkeypatch)
    mw = ProxyExecMiddleware(swift, {'zapp_max_members': '1000'})
    resp = request(mw, body=bomb(), **{'Content-Type': 'application/x-gzip'})
    assert resp.status_int == 413
    assert resp.body == (b'the request body has more than 1000 members '
                         b'(zapp_max_members)\n')


def test_a_zapp_is_unpacked_off_the_event_loop(mw, servers, monkeypatch) -> None:
    """The map is read in a thread: meanwhile a green thread runs (it releases it)."""
    released = threading.Event()
    read_map = zapp.system_map

    def system_map(*args, **kwargs):
        assert released.wait(timeout=30), 'the event loop was blocked while unpacking'
        return read_map(*args, **kwargs)
    monkeypatch.setattr(zapp, 'system_map', system_map)
    spawn(released.set)
    job = [{'name': 'app', 'exec': {'path': 'bin/prog'}, 'devices': [{'name': 'stdout'}]}]
    archive = tar_bytes({'boot/system.map': json.dumps(job).encode(), 'bin/prog': b'\x7fELF'})
    servers(d0=ok(), d1=ok(), d2=ok())
    resp = request(mw, body=gzip.compress(archive), **{'Content-Type': 'application/x-gzip'})
    assert resp.status_int == 200, resp.body


def test_a_chain_runs_jobs_until_a_response_is_not_one() -> None:
    launches = []

    def execute(launch: Launch) -> Response:
        launches.append(launch)
        if len(launches) < 3:
            return Response(body=b'[]', content_type='application/json',
                            headers={'X-Zerovm-Execute': '1.0'})
        raise HTTPBadRequest(body='the last one failed')
    first = Launch(b'[]', input=Input(io.BytesIO(b'x'), 1))
    resp = chain.run(execute, first, 'AUTH_a', timeout=10, max_config=100)
    assert resp.status_int == 400 and 'X-Chain-Total-Time' in resp.headers
    assert launches[1].input is first.input            # not taken by the first job
    assert first.input.file.closed


# -- a chain from another account's code (test_chain) -------------------------------------------

CGI_JOB = b'Content-Type: application/json\nX-Zerovm-Execute: 1.0\n\n'


def cgi_job(program: str) -> list[dict]:
    """A job whose node writes the response as CGI (a job, here)."""
    return [{'name': 'first', 'exec': {'path': program},
             'devices': [{'name': 'stdout', 'content_type': 'message/cgi'}]}]


SECOND = [{'name': 'second', 'exec': {'path': 'swift://~/bin/wc'},
           'devices': [{'name': 'stdout'}]}]


@pytest.mark.parametrize('where, runs', [('AUTH_a', 2), ('AUTH_b', 1)])
def test_a_stored_job_of_another_account_does_not_chain(swift, servers, mw,
                                                        where: str, runs: int) -> None:
    program = f'swift://{where}/bin/wc'
    stored = json.dumps(cgi_job(program)).encode()
    for account in {'AUTH_a', where}:
        swift.objects[f'/v1/{account}/bin/wc'] = ({}, b'\x7fELF program')
        swift.objects[f'/v1/{account}/jobs/chain.json'] = (
            {'Content-Type': 'application/json'}, stored)
    answer = ok(CGI_JOB + json.dumps(SECOND).encode())
    asked = servers(d0=answer, d1=answer, d2=answer)
    resp = request(mw, **{'X-Zerovm-Source': f'swift://{where}/jobs/chain.json'})
    assert resp.status_int == 200, resp.body
    assert len(asked.asked) == runs
    if runs == 1:
        assert resp.headers['X-Chain-Stopped'] == 'foreign_code'
        assert resp.headers['X-Chain-Foreign-Code'] == program     # the node's, then the job's
        assert json.loads(resp.body) == SECOND
    else:
        assert resp.headers['X-Nexe-System'] == 'second'


def open_chaining(swift, servers, mw, program: str) -> tuple[Servers, list[dict], Response]:
    """GET /open/AUTH_a/c/doc with AUTH_a's app for text/plain: a node of ``program``
    reading the object whose CGI answer is the job ``SECOND``; (the servers, the app,
    the 200 answer)."""
    app = cgi_job(program)
    app[0]['devices'].insert(0, {'name': 'stdin', 'path': '{.object_path}'})
    swift.add('/.zvm/text/plain/config', json.dumps(app).encode())
    swift.add('/c/doc', b'text', **{'Content-Type': 'text/plain'})
    answer = ok(CGI_JOB + json.dumps(SECOND).encode())
    asked = servers(d0=answer, d1=answer, d2=answer)
    resp = request(mw, '/open/AUTH_a/c/doc', method='GET')
    assert resp.status_int == 200, resp.body
    return asked, app, resp


def test_an_own_registered_app_running_a_foreign_program_does_not_chain(
        swift, servers, mw) -> None:
    program = 'swift://AUTH_b/bin/wc'
    swift.objects['/v1/AUTH_b/bin/wc'] = ({}, b'\x7fELF program')
    asked, _app, resp = open_chaining(swift, servers, mw, program)
    assert len(asked.asked) == 1
    assert resp.headers['X-Chain-Stopped'] == 'foreign_code'
    assert resp.headers['X-Chain-Foreign-Code'] == program


def test_an_open_deferred_counts_in_its_accounts_deferred_jobs(
        swift, servers, mw, monkeypatch) -> None:
    """For the same reason an open's deferred job is one of AUTH_a's deferred jobs: at
    the account's bound (zerovm_account_maxdeferred) an open is refused as a POST is
    (a count of their own let AUTH_a's users keep twice the bound running)."""
    monkeypatch.setattr(deferred, '_RUNNING', collections.Counter({'AUTH_a': 16}))
    swift.add('/.zvm/text/plain/config', json.dumps(cgi_job('swift://~/bin/wc')).encode())
    swift.add('/c/doc', b'text', **{'Content-Type': 'text/plain'})
    resp = request(mw, '/open/AUTH_a/c/doc', method='GET', **{'X-Zerovm-Deferred': 'always'})
    assert resp.status_int == 429, resp.body
    assert resp.body.startswith(b'account AUTH_a has 16 deferred jobs running on this proxy')
    assert not servers().asked                                      # nothing run


@pytest.mark.parametrize('denied, says', [
    (Response(status=401), b'Unauthorized: a valid token is needed to execute jobs in '
                           b'swift://AUTH_a\n'),
    (HTTPForbidden(), b'Denied: may not execute jobs in swift://AUTH_a\n')], ids=['401', '403'])
def test_an_open_deferred_is_authorised_before_it_takes_a_deferred_slot(
        swift, servers, mw, monkeypatch, denied: Response, says: bytes) -> None:
    """A caller who may read a public object but not run jobs in its account is refused
    before the open is deferred: else anyone held the account's deferred slots
    (zerovm_account_maxdeferred) with opens that each failed their check later."""
    def taken(*args, **kwargs):
        raise AssertionError('the open took a deferred slot before it was authorised')
    monkeypatch.setattr(deferred, 'run', taken)
    swift.add('/.zvm/text/plain/config', json.dumps(cgi_job('swift://~/bin/wc')).encode())
    swift.add('/c/doc', b'text', **{'Content-Type': 'text/plain'})
    req = Request.blank('/open/AUTH_a/c/doc', headers={'X-Zerovm-Deferred': 'always'})
    req.environ['swift.authorize'] = lambda sub: denied if sub.method == 'POST' else None
    resp = req.get_response(mw)
    assert (resp.status_int, resp.body) == (denied.status_int, says)
    assert not servers().asked


@pytest.mark.parametrize('deferred_', ['', 'always'], ids=['now', 'deferred'])
def test_an_unauthorised_open_does_not_read_the_registry(swift, servers, mw,
                                                         deferred_: str) -> None:
    """Who may read an object but not run jobs in its account is refused before the
    account's registry is read: else its answer (a 404 naming no app, or the 403) told
    whether an app is registered for the object's type."""
    swift.add('/c/doc', b'text', **{'Content-Type': 'text/plain'})
    for registered in (False, True):
        if registered:
            swift.add('/.zvm/text/plain/config', json.dumps(cgi_job('swift://~/bin/wc')).encode())
        req = Request.blank('/open/AUTH_a/c/doc',
                            headers={'X-Zerovm-Deferred': deferred_} if deferred_ else {})
        req.environ['swift.authorize'] = lambda sub: (HTTPForbidden() if sub.method == 'POST'
                                                      else None)
        resp = req.get_response(mw)
        assert (resp.status_int, resp.body) == (
            403, b'Denied: may not execute jobs in swift://AUTH_a\n'), registered
    assert not [p for _m, p, _h in swift.calls if '/.zvm/' in p]
    assert not servers().asked


def test_an_open_and_its_next_jobs_take_the_accounts_share_as_its_other_jobs(
        swift, servers, mw) -> None:
    """Only who may run jobs in AUTH_a opens its objects (401/403 before a node is sent:
    tests/functional/test_open_callers.py), so an open is one of AUTH_a's jobs: its
    nodes, chained ones too, take AUTH_a's share of the object servers' slots, as the
    job POSTed does; a share of their own would let AUTH_a's users hold twice its share
    on every server."""
    asked, app, _resp = open_chaining(swift, servers, mw, 'swift://~/bin/wc')
    app[0]['devices'][0] = {'name': 'stdin'}                       # the same, POSTed
    resp = request(mw, ACCOUNT + '/c/doc', body=json.dumps(app).encode())
    assert resp.status_int == 200, resp.body
    assert [(h[wire.ACCESS], h[wire.ACCOUNT]) for _d, h, _s in asked.asked if wire.ACCESS in h
            ] == [('GET', 'AUTH_a')] * 2                     # each job's first reads c/doc
    assert [h[wire.ACCOUNT] for _d, h, _s in asked.asked] == ['AUTH_a'] * 4


class DeletingSwift(FakeSwift):
    """Answers DELETE too; :meth:`wait_until` wakes at each request it answered, so a
    test waits for what the job's green threads store, not for a guessed time."""

    def __init__(self) -> None:
        super().__init__()
        self._answered: LightQueue = LightQueue()

    def __call__(self, env, start_response):
        try:
            if env['REQUEST_METHOD'] == 'DELETE':       # by its quoted path, as FakeSwift
                path = Request(env).path
                self.calls.append(('DELETE', path, {}))
                found = self.objects.pop(path, None)
                return Response(status=204 if found else 404)(env, start_response)
            return super().__call__(env, start_response)
        finally:
            self._answered.put(None)

    def wait_until(self, check: Callable[[], bool], idle: float = 30.0) -> bool:
        """True once ``check()`` holds; False if no request came for ``idle`` seconds
        before it did (a hung job: the test fails instead of hanging)."""
        while not check():
            try:
                self._answered.get(timeout=idle)
            except Empty:
                return False
        return True


def test_deferred_always_stores_the_result_after_answering() -> None:
    app = DeletingSwift()
    req = Request.blank(ACCOUNT + '/c', method='POST')
    release: LightQueue = LightQueue()

    def work(progress) -> Response:
        progress.launched([])
        release.get()                   # still running when the 202 is sent
        return Response(body=b'result', content_type='text/x-r', headers={'X-Nexe-Status': 'ok'})
    resp = deferred.run(app, req, 'always', 'AUTH_a', 'c', 1.0, work, logger=None)
    assert resp.status_int == 202
    name = resp.body.decode().strip().rsplit('/', 1)[1]
    assert not any(p.endswith(name) for p in app.objects)
    release.put(None)
    assert app.wait_until(lambda: f'{ACCOUNT}/c/{name}.headers' in app.objects)
    headers, body = app.objects[f'{ACCOUNT}/c/{name}']
    assert body == b'result' and headers['Content-Type'] == 'text/x-r'
    stored = json.loads(app.objects[f'{ACCOUNT}/c/{name}.headers'][1])
    assert stored['Status'] == '200 OK' and stored['X-Nexe-Status'] == 'ok'


@pytest.mark.parametrize('how', ['always', 'auto'])
def test_a_deferred_job_posted_to_a_missing_container_is_refused_before_it_runs(
        how: str) -> None:
    # smalls10: a typo in the container's name made a new container, holding the
    # job's state and result; now a 404 naming it, nothing run, nothing stored
    app = DeletingSwift()
    app.missing.add('/typo')
    ran: list = []
    req = Request.blank(ACCOUNT + '/typo', method='POST')
    with pytest.raises(HTTPException) as refused:
        deferred.run(app, req, how, 'AUTH_a', 'typo', 1.0, ran.append, logger=None)
    assert refused.value.status_int == 404
    assert refused.value.body.decode().startswith(
        'container swift://AUTH_a/typo does not exist: a deferred job keeps its result in '
        'the container it is POSTed to; create it first (swift post typo, in account AUTH_a)')
    assert ran == [] and [c for c in app.calls if c[0] != 'HEAD'] == []


def test_a_deferred_job_posted_to_a_missing_container_of_another_account_names_its_owner(
        ) -> None:
    # operator18: `swift post typo` made the container in the caller's own account, and
    # the caller cannot create one in another's: the account is named, and its owner
    app = DeletingSwift()
    app.missing.add('/typo')
    req = Request.blank(ACCOUNT + '/typo', method='POST')
    asked: list = []
    # the caller may POST (run jobs) but not PUT a container: not the account's owner
    req.environ['swift.authorize'] = lambda sub: asked.append(sub.method) or (
        HTTPForbidden() if sub.method == 'PUT' else None)
    with pytest.raises(HTTPException) as refused:
        deferred.run(app, req, 'always', 'AUTH_a', 'typo', 1.0, [].append, logger=None)
    assert refused.value.status_int == 404
    body = refused.value.body.decode()
    assert body == ('container swift://AUTH_a/typo does not exist: a deferred job keeps its '
                    'result in the container it is POSTed to; it would be of account AUTH_a, '
                    'whose containers you cannot create: only its owner can; ask them to '
                    'create it and add you to its write ACL (X-Container-Write), or POST the '
                    'job to your own account\n')
    assert 'swift post' not in body and asked == ['PUT']


class RefusingSwift(DeletingSwift):
    """Swift whose PUTs ``refuse(path, size)`` says are over a quota are a 413 (or
    ``status``)."""

    def __init__(self, refuse: Callable[[str, int], bool], status: int = 413) -> None:
        super().__init__()
        self.refuse, self.status = refuse, status

    def __call__(self, env, start_response):
        if env['REQUEST_METHOD'] == 'PUT':
            body = env['wsgi.input'].read()
            if self.refuse(env['PATH_INFO'], len(body)):
                self.calls.append(('PUT', env['PATH_INFO'], {}))
                self._answered.put(None)
                return Response(status=self.status, body=b'Upload exceeds quota.')(
                    env, start_response)
            env['wsgi.input'] = io.BytesIO(body)
        return super().__call__(env, start_response)


def test_a_deferred_job_whose_state_is_refused_is_stopped_and_says_why() -> None:
    """Its container's quota is used up: the job answered 202, and its state and result
    were refused (only logged): a result that never came.  Now the refusal of its first
    state is the answer (before the 202) and the job is stopped, as a cancel stops it."""
    app = RefusingSwift(lambda path, size: path.endswith('.state'))
    stopped: LightQueue = LightQueue()

    def work(progress) -> Response:
        progress.launched([])
        try:
            LightQueue().get()              # runs until stopped
        except deferred.Cancelled:
            stopped.put(True)
            raise
    req = Request.blank(ACCOUNT + '/c', method='POST')
    resp = deferred.run(app, req, 'always', 'AUTH_a', 'c', 1.0, work,
                        logger=logging.getLogger('test'))
    assert resp.status_int == 413
    assert resp.body == (b'this deferred job was stopped: its state could not be stored in '
                         b'swift://AUTH_a/c, where it keeps its state and result (413 Request '
                         b'Entity Too Large: Upload exceeds quota.); make room there (a quota) '
                         b'or run it without X-Zerovm-Deferred\n')
    assert stopped.get(timeout=10)
    state = next(c[1] for c in app.calls if c[1].endswith('.state'))
    assert app.wait_until(lambda: ('DELETE', state, {}) in app.calls)    # it stopped too
    assert [c[1] for c in app.calls if c[0] == 'PUT'] == [state]     # no container PUT


def test_the_result_of_a_job_stopped_by_its_refused_state_is_closed() -> None:
    """Nobody reads the result of a job stopped because its first state was refused:
    it was left in a queue, its spool (a job's outputs on the proxy's disk) closed only
    when the garbage collector got to it."""
    app = RefusingSwift(lambda path, size: path.endswith('.state'))
    closed: LightQueue = LightQueue()

    class Spooled(list):
        def close(self) -> None:
            closed.put(True)

    def work(progress) -> Response:
        progress.launched([])
        try:
            LightQueue().get()              # runs until stopped
        except deferred.Cancelled:
            return Response(app_iter=Spooled([b'partial']))
    req = Request.blank(ACCOUNT + '/c', method='POST')
    resp = deferred.run(app, req, 'always', 'AUTH_a', 'c', 1.0, work,
                        logger=logging.getLogger('test'))
    assert resp.status_int == 413
    assert closed.get(timeout=10)


def _ran_deferred(app: DeletingSwift) -> str:
    """The name of a deferred job of ``app``'s container ``c`` that answered 202 and
    then ended (its result being stored)."""
    req = Request.blank(ACCOUNT + '/c', method='POST')
    release: LightQueue = LightQueue()

    def work(progress) -> Response:
        progress.launched([])
        release.get()
        return Response(body=b'done')
    resp = deferred.run(app, req, 'always', 'AUTH_a', 'c', 1.0, work,
                        logger=logging.getLogger('test'))
    assert resp.status_int == 202
    release.put(None)
    return resp.body.decode().strip().rsplit('/', 1)[1]


def test_a_passing_5xx_of_the_first_state_does_not_stop_the_job() -> None:
    app = RefusingSwift(lambda path, size: path.endswith('.state'), status=503)
    name = _ran_deferred(app)
    assert app.wait_until(lambda: f'{ACCOUNT}/c/{name}.headers' in app.objects)


def test_a_result_swift_refuses_is_replaced_by_why() -> None:
    """The body of a result over its container's quota was refused and its .headers
    never written: no result, and once its state was deleted, no job.  Now the result
    says how the job ended and why its output is not there."""
    app = RefusingSwift(lambda path, size: size > 1000)
    req = Request.blank(ACCOUNT + '/c', method='POST')
    where = SwiftPath('AUTH_a', 'c', 'big')
    deferred._store(app, req, where, Response(body=b'x' * 2000, headers={'X-Nexe-Status': 'ok'}),
                    logging.getLogger('test'))
    stored = json.loads(app.objects[f'{ACCOUNT}/c/big.headers'][1])
    said = ('the job ended 200 OK (X-Nexe-Status: ok) but its output could not be stored as '
            'swift://AUTH_a/c/big (413 Request Entity Too Large: Upload exceeds quota.): run '
            'it again with room there, or without X-Zerovm-Deferred')
    assert (stored['Status'], stored['X-Nexe-Status'], stored['X-Nexe-Error']) == \
        ('503 Service Unavailable', 'unstored', said)
    assert app.objects[f'{ACCOUNT}/c/big'][1] == said.encode() + b'\n'


def test_a_result_whose_body_filled_the_quota_is_replaced_by_why() -> None:
    """Its body stored, its .headers refused (the body left the container no room):
    the result was never complete, and a poller of .headers waited for good.  Now the
    body goes, and the result says why (a quota of 2100 bytes: the body, 2000, and
    its headers do not fit; why it is not there and its headers do)."""
    def over(path: str, size: int) -> bool:
        held = sum(len(body) for name, (_h, body) in app.objects.items() if name != path)
        return held + size > 2100
    app = RefusingSwift(over)
    req = Request.blank(ACCOUNT + '/c', method='POST')
    where = SwiftPath('AUTH_a', 'c', 'big')
    deferred._store(app, req, where, Response(body=b'x' * 2000, headers={'X-Nexe-Status': 'ok'}),
                    logging.getLogger('test'))
    stored = json.loads(app.objects[f'{ACCOUNT}/c/big.headers'][1])
    assert (stored['Status'], stored['X-Nexe-Status']) == ('503 Service Unavailable', 'unstored')
    assert app.objects[f'{ACCOUNT}/c/big'][1].startswith(b'the job ended 200 OK')


def test_a_job_whose_result_and_why_swift_both_refuse_says_so_in_its_state() -> None:
    """A count quota full: neither the result nor why it is not there could be stored,
    and the state was deleted anyway: the job vanished (zc status: no such job).  Its
    state now says so (written again once deleted: the room that makes), and a poll
    reports the job lost with that reason, once there is room."""
    app = RefusingSwift(lambda path, size: not path.endswith('.state'))
    name = _ran_deferred(app)
    state = f'{ACCOUNT}/c/{name}.state'
    assert app.wait_until(lambda: state in app.objects and json.loads(
        app.objects[state][1])['state'] == 'unstored')
    said = json.loads(app.objects[state][1])['why']
    assert said.startswith('the job ended 200 OK (X-Nexe-Status: ) but its output could not '
                           'be stored as swift://AUTH_a/c/' + name + ' (413 ')
    app.refuse = lambda path, size: False       # room made: a poll settles it
    env = Request.blank(f'{ACCOUNT}/c/{name}.headers').environ
    deferred.settle_lost(app, env, logging.getLogger('test'))
    stored = json.loads(app.objects[f'{ACCOUNT}/c/{name}.headers'][1])
    assert stored['X-Nexe-Status'] == 'lost'
    assert stored['X-Nexe-Error'].startswith('this deferred job ended, but neither its result '
                                             'nor why could be stored: the job ended 200 OK')
    assert state not in app.objects


def test_a_deferred_open_in_a_missing_container_says_so_without_posting_advice() -> None:
    """An open's container is its object's: a deferred GET of /open/a/typo/o was told
    the job is POSTed there and to create the container (swift post typo)."""
    app = DeletingSwift()
    app.missing.add('/typo')
    req = Request.blank('/open/AUTH_a/typo/my%20notes', headers={'X-Zerovm-Deferred': 'always'})
    with pytest.raises(HTTPException) as refused:
        deferred.run(app, req, 'always', 'AUTH_a', 'typo', 1.0, print, logger=None)
    assert (refused.value.status_int, refused.value.body) == (404, (
        b"container swift://AUTH_a/typo does not exist (of swift://AUTH_a/typo/my notes, this "
        b"request's URL)\n"))


def deferred_always(app: FakeSwift, work, heartbeat: float) -> tuple[str, str]:
    """Start ``work`` deferred (``always``): the paths of its result and of its state."""
    req = Request.blank(ACCOUNT + '/c', method='POST')
    resp = deferred.run(app, req, 'always', 'AUTH_a', 'c', 1.0, work, logger=None,
                        heartbeat=heartbeat)
    name = resp.body.decode().strip().rsplit('/', 1)[1]
    return f'{ACCOUNT}/c/{name}', f'{ACCOUNT}/c/{name}.state'


def test_a_deferred_job_keeps_its_state_in_swift_while_it_runs() -> None:
    app = DeletingSwift()
    release: LightQueue = LightQueue()

    def work(progress) -> Response:
        progress.launched([])
        release.get()
        return Response(body=b'result')
    result, state = deferred_always(app, work, heartbeat=0.01)
    # stored before the 202: a client told of the job finds its state or its result,
    # never neither (how `zc wait` tells a typo in the id from a job not done)
    first = json.loads(app.objects[state][1])
    assert first['state'] == 'running' and first['heartbeat'] == 0.01
    assert app.wait_until(                                                  # refreshed
        lambda: json.loads(app.objects[state][1])['updated'] > first['updated'])
    release.put(None)
    assert app.wait_until(lambda: state not in app.objects)                # done: gone
    assert json.loads(app.objects[f'{result}.headers'][1])['Status'] == '200 OK'


def _node(name: str, obj: str | None) -> SimpleNamespace:
    path = None if obj is None else SwiftPath('AUTH_a', 'c', obj)
    return SimpleNamespace(name=name, attach=SimpleNamespace(readable=True, path=path))


def _ended(failed: bool, read: int, wrote: int) -> SimpleNamespace:
    channels = {'/dev/stdin': {'read_bytes': read}, '/dev/stdout': {'write_bytes': wrote}}
    report = wire.NodeReport('ok', accounting={'channels': channels})
    return SimpleNamespace(failed=failed, report=report, channel_bytes=report.channel_bytes)


def test_the_state_counts_nodes_as_they_end_and_the_result_names_their_objects(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deferred, 'PROGRESS_EVERY', 0.05)   # a change is seen sooner than 1 s
    app = DeletingSwift()
    step: LightQueue = LightQueue()

    def work(progress) -> Response:
        progress.launched([_node('wc-1', 'a.txt'), _node('wc-2', 'b.txt'), _node('x', None)])
        for _ in range(3):
            progress.started()
        step.get()
        progress.finished([_ended(False, 10, 3)])
        progress.finished([_ended(False, 5, 1), _ended(True, 5, 1)])    # a replica failed
        step.get()
        return Response(body=b'3\n', headers={'X-Nexe-System': 'wc-1,wc-2,x'})
    result, state = deferred_always(app, work, heartbeat=30)
    first = json.loads(app.objects[state][1])
    assert first['nodes'] == {'total': 3, 'done': 0, 'failed': 0, 'running': 3}
    assert first['job'] == 1 and first['started'] <= first['updated']
    step.put(None)
    # rewritten once the counts changed, long before the next heartbeat
    assert app.wait_until(lambda: json.loads(app.objects[state][1])['nodes']['running'] == 1)
    later = json.loads(app.objects[state][1])
    assert later['nodes'] == {'total': 3, 'done': 1, 'failed': 1, 'running': 1}
    assert later['bytes'] == {'in': 20, 'out': 5}
    step.put(None)
    assert app.wait_until(lambda: f'{result}.headers' in app.objects)
    stored = json.loads(app.objects[f'{result}.headers'][1])
    assert stored['Objects'] == {'wc-1': 'swift://AUTH_a/c/a.txt',
                                 'wc-2': 'swift://AUTH_a/c/b.txt'}


def lost_env(app: FakeSwift, updated: float, heartbeat: float = 10.0) -> dict:
    name = 'job-' + '7' * 32
    app.objects[f'{ACCOUNT}/c/{name}.state'] = ({}, json.dumps(
        {'state': 'running', 'heartbeat': heartbeat, 'updated': updated}).encode())
    return Request.blank(f'{ACCOUNT}/c/{name}.headers').environ


def test_reading_the_result_of_a_job_whose_proxy_stopped_reports_it_lost() -> None:
    app = DeletingSwift()
    env = lost_env(app, time.time() - 31)
    deferred.settle_lost(app, env, logging.getLogger('test'))
    name = f'{ACCOUNT}/c/job-' + '7' * 32
    stored = json.loads(app.objects[name + '.headers'][1])
    assert stored['Status'] == '503 Service Unavailable' and stored['X-Nexe-Status'] == 'lost'
    assert stored['X-Nexe-Error'].startswith('the proxy running this deferred job stopped')
    assert app.objects[name][1].startswith(b'the proxy running this deferred job stopped')
    assert name + '.state' not in app.objects


def test_a_fresh_state_or_a_stored_result_is_left_alone() -> None:
    app = DeletingSwift()
    fresh = lost_env(app, time.time() - 20)     # heartbeat 10: lost after 30 s, not 1 s away
    deferred.settle_lost(app, fresh, logging.getLogger('test'))
    assert not [c for c in app.calls if c[0] == 'PUT']                       # still running
    app = DeletingSwift()
    env = lost_env(app, time.time() - 100)
    app.objects[f'{ACCOUNT}/c/job-' + '7' * 32 + '.headers'] = ({}, b'{}')
    deferred.settle_lost(app, env, logging.getLogger('test'))
    assert [c[0] for c in app.calls] == ['GET', 'GET']      # state, result: done already


def test_deferred_auto_answers_a_quick_result_itself() -> None:
    app = FakeSwift()
    req = Request.blank(ACCOUNT, method='POST')
    resp = deferred.run(app, req, 'auto', 'AUTH_a', None, 1.0,
                        lambda progress: Response(body=b'quick'), logger=None)
    assert resp.body == b'quick' and app.calls == []


def test_a_stored_description_is_read_to_one_byte_over_its_bound_and_closed() -> None:
    """One reader for an app's config and an SQL query's stored JSON (the query had its
    own loop, gathering whole chunks by += until past the bound)."""
    closed: list[bool] = []

    class Chunks(list):
        def close(self) -> None:
            closed.append(True)
    resp = SimpleNamespace(app_iter=Chunks([b'{"a"', b': 1}', b'x' * 100, b'never']))
    assert sources.read_bounded(resp, 9) == b'{"a": 1}xx' and closed == [True]
    resp = SimpleNamespace(app_iter=Chunks([b'{}']))
    assert sources.read_bounded(resp, 9) == b'{}' and closed == [True, True]

"""Every way to start a computation, on the session's real cluster (zerocloud.sources).

X-Zerovm-Source, GET-to-execute (``open/1.0`` and ``/open/``), scripts,
zapps, deferred results, chains and CGI output.  Programs: the test
interpreter ``tests/programs/src_interp.c`` (``-c 'upper'`` upper-cases
stdin; see its header for the commands).  The cluster's proxy has
``interactive_timeout = 3`` and ``chain_timeout = 10`` (conftest.PROXY_CONF).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from archives import tar_bytes
from swiftclient import ClientException, Connection

from zerocloud.devcluster import USERS, DevCluster

TEXT = b'the quick brown fox\njumps over the lazy dog\n'
EXECUTE = {'X-Zerovm-Execute': '1.0'}
OPEN = {'X-Zerovm-Execute': 'open/1.0'}


@dataclass
class Env:
    """A container with the interpreter (``interp``) and ``book.txt`` (TEXT)."""

    conn: Connection
    container: str

    @property
    def interp(self) -> str:
        return f'swift://AUTH_test/{self.container}/src_interp'

    def url(self, path: str = '') -> str:
        return f'swift://AUTH_test/{self.container}/{path}'

    def job(self, script: str, stdin: str | None = '', stdout: dict | None = None,
            name: str = 'run') -> list[dict]:
        """A one-node job running ``src_interp -c script``; stdin '' = no path, None = none."""
        devices = [] if stdin is None else [{'name': 'stdin',
                                             **({'path': stdin} if stdin else {})}]
        return [{'name': name, 'exec': {'path': self.interp, 'args': ['-c', script]},
                 'devices': [*devices, stdout or {'name': 'stdout'}]}]

    def put(self, name: str, data: bytes | str, content_type: str | None = None) -> str:
        data = json.dumps(data) if isinstance(data, list) else data
        self.conn.put_object(self.container, name, data, content_type=content_type)
        return self.url(name)


@pytest.fixture(scope='module')
def env(swift_cluster: DevCluster, guest) -> Iterator[Env]:
    conn = Connection(authurl=swift_cluster.auth_url, user=swift_cluster.user,
                      key=swift_cluster.key, retries=0)
    e = Env(conn, f'entry-{uuid.uuid4().hex[:12]}')
    conn.put_container(e.container)
    e.put('src_interp', guest('src_interp').read_bytes())
    e.put('book.txt', TEXT, 'text/plain')
    e.put('interp.nexe', guest('src_interp').read_bytes(), 'application/x-nexe')
    yield e
    for obj in conn.get_container(e.container, full_listing=True)[1]:
        conn.delete_object(e.container, obj['name'])
    conn.delete_container(e.container)


def call(conn: Connection, method: str, path: str = '', headers: dict | None = None,
         data: bytes | str | None = None, open_url: bool = False) -> requests.Response:
    """A request as the connection's user to its account URL + ``path``."""
    url, token = conn.get_auth()
    if open_url:
        url = url.replace('/v1/', '/open/', 1)
    return requests.request(method, url + path, data=data, timeout=60,
                            headers={'X-Auth-Token': token, **(headers or {})})


def ask_for_read(env: Env) -> str:
    """What a 403 to test2 reading ``env``'s container says to ask for."""
    return (f' (swift://AUTH_test/{env.container} is of account AUTH_test, not yours '
            '(AUTH_test2): only its owner can change it; ask them to add you to its read '
            'ACL (X-Container-Read))')


def source(url: str) -> dict:
    return {**EXECUTE, 'X-Zerovm-Source': url}


def replicas(cluster: DevCluster, container: str, obj: str) -> set[str]:
    return {f'{n["ip"]}:{n["port"]}/{n["device"]}'
            for n in cluster.object_nodes('AUTH_test', container, obj)[1]}


def app_zapp(env: Env, script: bytes = b'echo from the image\nupper\n', **more: bytes) -> dict:
    """Members of a zapp running its own copy of the interpreter over ``app.script``."""
    job = [{'name': 'app', 'exec': {'path': 'bin/src_interp', 'args': 'image:app.script'},
            'devices': [{'name': 'stdin'}, {'name': 'stdout'}]}]
    interp = env.conn.get_object(env.container, 'src_interp')[1]
    return {'boot/system.map': json.dumps(job).encode(), 'bin/src_interp': interp,
            'app.script': script, **more}


def wait_for(conn: Connection, container: str, obj: str, seconds: float = 30) -> bytes:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return conn.get_object(container, obj)[1]
        except ClientException as e:
            if e.http_status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


# -- X-Zerovm-Source -----------------------------------------------------------------------------

def test_a_stored_job_reads_the_request_body(env: Env) -> None:
    job = env.put('upper.json', env.job('upper'))
    resp = call(env.conn, 'POST', headers=source(job), data=b'shout this')
    assert resp.status_code == 200, resp.text
    assert resp.content == b'SHOUT THIS'
    assert resp.headers['X-Nexe-System'] == 'run'
    assert float(resp.headers['X-Chain-Total-Time']) >= 0


def test_a_stored_job_posted_to_an_object_runs_next_to_it(
        swift_cluster: DevCluster, env: Env) -> None:
    job = env.put('upper.json', env.job('upper'))
    resp = call(env.conn, 'POST', f'/{env.container}/book.txt', headers=source(job))
    assert resp.status_code == 200, resp.text
    assert resp.content == TEXT.upper()
    assert resp.headers['X-Nexe-Host'] in replicas(swift_cluster, env.container, 'book.txt')


@pytest.mark.parametrize(('value', 'says'), [
    ('http://example.com/job.json', 'expected swift://'),
    ('swift://~/somewhere', 'it names a container'),
    ('swift://~/jobs/*.json', 'it has a wildcard'),
])
def test_a_bad_source_is_a_412(env: Env, value: str, says: str) -> None:
    resp = call(env.conn, 'POST', headers=source(value))
    assert resp.status_code == 412, resp.text
    assert 'X-Zerovm-Source format is swift://account/container/object' in resp.text
    assert says in resp.text


def test_a_source_the_caller_may_not_read_is_a_403(swift_cluster: DevCluster,
                                                   env: Env) -> None:
    job = env.put('private.json', env.job('upper'))
    other = Connection(authurl=swift_cluster.auth_url, user='test2:tester2',
                       key=USERS['test2:tester2'][0], retries=0)
    resp = call(other, 'POST', headers=source(job), data=b'x')
    assert resp.status_code == 403, resp.text
    assert resp.text == f'Denied: may not read {job}{ask_for_read(env)}\n'
    resp = call(env.conn, 'POST', headers=source(env.url('missing.json')))
    assert resp.status_code == 404
    assert resp.text == f'Error 404 Not Found while fetching {env.url("missing.json")}\n'


def test_a_body_and_an_object_cannot_both_be_the_input(env: Env) -> None:
    job = env.put('upper.json', env.job('upper'))
    resp = call(env.conn, 'POST', f'/{env.container}/book.txt', headers=source(job), data=b'x')
    assert resp.status_code == 400
    assert 'request body would be a second input' in resp.text


def test_a_stored_script_or_zapp_is_run_by_its_type(env: Env) -> None:
    script = env.put('shout.sh', f'#!{env.interp}\nupper\n', 'text/x-sh')
    resp = call(env.conn, 'POST', headers=source(script), data=b'from a script')
    assert (resp.status_code, resp.content) == (200, b'FROM A SCRIPT'), resp.text
    app = env.put('app.tar', tar_bytes(app_zapp(env)), 'application/x-tar')
    resp = call(env.conn, 'POST', headers=source(app), data=b'from a zapp')
    assert (resp.status_code, resp.content) == (200, b'from the image\nFROM A ZAPP'), resp.text
    resp = call(env.conn, 'POST', headers=source(env.url('interp.nexe')))
    assert resp.status_code == 400
    assert resp.text.startswith(f'{env.url("interp.nexe")} is a program (application/x-nexe)')


# -- GET to execute -----------------------------------------------------------------------------

@pytest.fixture
def registered(env: Env) -> Iterator[str]:
    """A content type of this test, with an app registered for it in .zvm."""
    content_type = f'text/x-zc-{uuid.uuid4().hex[:8]}'
    template = [{'name': 'viewer',
                 'exec': {'path': env.interp, 'args': ['-c', '{.cmd=upper}']},
                 'devices': [{'name': 'stdin', 'path': '{.object_path}'},
                             {'name': 'stdout', 'content_type': 'text/x-viewed'}]}]
    env.conn.put_container('.zvm')
    env.conn.put_object('.zvm', f'{content_type}/config', json.dumps(template))
    yield content_type
    env.conn.delete_object('.zvm', f'{content_type}/config')


def test_open_runs_the_app_registered_for_the_content_type(
        swift_cluster: DevCluster, env: Env, registered: str) -> None:
    env.put('note', TEXT, registered)
    for resp in (call(env.conn, 'GET', f'/{env.container}/note', OPEN),
                 call(env.conn, 'GET', f'/{env.container}/note', open_url=True)):
        assert resp.status_code == 200, resp.text
        assert resp.content == TEXT.upper()
        assert resp.headers['Content-Type'] == 'text/x-viewed'
        assert resp.headers['X-Nexe-Host'] in replicas(swift_cluster, env.container, 'note')
    resp = call(env.conn, 'GET', f'/{env.container}/note?cmd=env%20QUERY_STRING', OPEN)
    assert resp.content == b'cmd=env%20QUERY_STRING\n'
    resp = call(env.conn, 'GET', f'/{env.container}/note?cmd=env%20PATH_INFO', OPEN)
    assert resp.content == f'/AUTH_test/{env.container}/note\n'.encode()
    resp = call(env.conn, 'HEAD', f'/{env.container}/note', open_url=True)
    assert resp.status_code == 200 and resp.content == b''


def test_open_without_a_registered_app_is_a_404(env: Env) -> None:
    env.put('plain.bin', TEXT, 'application/x-zc-nothing')
    resp = call(env.conn, 'GET', f'/{env.container}/plain.bin', OPEN)
    assert resp.status_code == 404
    assert resp.text == ('No application registered for application/x-zc-nothing (no '
                         'swift://AUTH_test/.zvm/application/x-zc-nothing/config): register '
                         'one (zc deploy APP.zapp --content-type TYPE) or name the app '
                         '(X-Zerovm-Source, zc open --source)\n')
    resp = call(env.conn, 'GET', f'/{env.container}/gone', open_url=True)
    assert resp.status_code == 404
    assert resp.text == f'Error 404 Not Found while fetching {env.url("gone")}\n'
    resp = call(env.conn, 'PUT', f'/{env.container}/plain.bin', open_url=True, data=b'x')
    assert resp.status_code == 405
    assert 'other methods only run zapps' in resp.text


def test_open_of_another_users_private_object_is_a_403(swift_cluster: DevCluster,
                                                       env: Env) -> None:
    other = Connection(authurl=swift_cluster.auth_url, user='test2:tester2',
                       key=USERS['test2:tester2'][0], retries=0)
    url, token = other.get_auth()
    resp = requests.get(url.rsplit('/', 1)[0] + f'/AUTH_test/{env.container}/book.txt',
                        headers={'X-Auth-Token': token, **OPEN}, timeout=60)
    assert resp.status_code == 403
    assert resp.text.startswith(f'Denied: may not read {env.url("book.txt")} (')
    assert 'ask them to add you to its read ACL (X-Container-Read)' in resp.text


def test_open_without_a_token_is_a_401(env: Env) -> None:
    url, _ = env.conn.get_auth()
    resp = requests.get(url.replace('/v1/', '/open/', 1) + f'/{env.container}/book.txt',
                        timeout=60)
    assert resp.status_code == 401
    assert resp.text == f'Unauthorized: a valid token is needed to read {env.url("book.txt")}\n'


def test_open_of_an_executable_runs_it(env: Env) -> None:
    resp = call(env.conn, 'GET',
                f'/{env.container}/interp.nexe?args=-c%20args&content_type=text/x-args',
                open_url=True)
    assert resp.status_code == 200, resp.text
    assert resp.content == b'argv: -c args\n'
    assert resp.headers['Content-Type'] == 'text/x-args'
    assert resp.headers['X-Nexe-System'] == 'executable'


def test_open_with_a_source_transforms_the_object_read(swift_cluster: DevCluster,
                                                        env: Env) -> None:
    script = env.put('shout.sh', f'#!{env.interp}\nupper\n', 'text/x-sh')
    headers = {**OPEN, 'X-Zerovm-Source': script}
    resp = call(env.conn, 'GET', f'/{env.container}/book.txt', headers)
    assert resp.status_code == 200, resp.text
    assert resp.content == TEXT.upper()
    assert resp.headers['X-Nexe-Host'] in replicas(swift_cluster, env.container, 'book.txt')
    resp = call(env.conn, 'POST', f'/{env.container}/book.txt', headers)
    assert resp.status_code == 405
    assert 'use GET' in resp.text


def test_open_of_a_zapp_runs_it_as_a_rest_service(env: Env) -> None:
    members = app_zapp(env, b'env REQUEST_METHOD\nenv CONTENT_LENGTH\ncat\n')
    env.put('app.zapp', tar_bytes(members, gz=True))                  # as swift upload stores it
    resp = call(env.conn, 'PUT', f'/{env.container}/app.zapp', open_url=True, data=b'payload')
    assert resp.status_code == 200, resp.text
    assert resp.content == b'PUT\n7\npayload'


# -- scripts ----------------------------------------------------------------------------------

def test_a_posted_script_runs_with_its_interpreter(env: Env) -> None:
    body = f'#!/{env.container}/src_interp one two\nargs\necho hi\n'
    resp = call(env.conn, 'POST', headers={**EXECUTE, 'Content-Type': 'text/x-script'},
                data=body)
    assert resp.status_code == 200, resp.text
    assert resp.content == b'argv: one two /dev/script\nhi\n'
    assert resp.headers['X-Nexe-System'] == 'script'
    assert resp.headers['Content-Type'] == 'text/plain'


def test_a_script_posted_to_an_object_reads_it_on_stdin(
        swift_cluster: DevCluster, env: Env) -> None:
    resp = call(env.conn, 'POST', f'/{env.container}/book.txt',
                headers={**EXECUTE, 'Content-Type': 'application/x-sh'},
                data=f'#!{env.interp}\nupper\n')
    assert resp.status_code == 200, resp.text
    assert resp.content == TEXT.upper()
    assert resp.headers['X-Nexe-Host'] in replicas(swift_cluster, env.container, 'book.txt')


@pytest.mark.parametrize(('body', 'says'), [
    ('#!nonsense\nupper\n', 'Bad interpreter nonsense: expected swift://'),
    ('#!\nupper\n', 'Bad interpreter: the #! line names none'),
    ('#!/just-a-container\nupper\n', 'Bad interpreter /just-a-container'),
    ('#!file://image:bin/sh\nupper\n', 'Must supply image name in shebang url'),
    ('#!file://cobol:cobol\nupper\n', 'unknown image "cobol"'),
    ('#!swift://~/nowhere/interp\nupper\n', 'Error 404 Not Found while fetching '
                                            'swift://AUTH_test/nowhere/interp'),
    # a Unix #! line: it named /usr/bin/env as an object and said only that it was missing
    ('#!/usr/bin/env python3\nprint(1)\n', 'Bad interpreter /usr/bin/env: it is read as '
                                           'swift://AUTH_test/usr/bin/env'),
    ('#!/usr/bin/env python3\nprint(1)\n', 'a Python script starts with '
                                           '#!file://python3:python3'),
    ('upper\n', 'Unsupported Content-Type text/x-script of the request body'),
    ('#!/c/' + 'x' * 5000, 'Cannot find the end of the shebang'),
])
def test_a_bad_script_is_refused_with_a_message(env: Env, body: str, says: str) -> None:
    resp = call(env.conn, 'POST', headers={**EXECUTE, 'Content-Type': 'text/x-script'},
                data=body)
    assert 400 <= resp.status_code < 500, resp.text
    assert says in resp.text
    assert 'X-Nexe-System' not in resp.headers


# -- zapps ---------------------------------------------------------------------------------------

def test_a_posted_zapp_runs_its_system_map(swift_cluster: DevCluster, env: Env) -> None:
    members = app_zapp(env, b'echo from the image\ntarcat data/greeting\nupper\n',
                       **{'data/greeting': b'hello from a file of the zapp\n'})
    resp = call(env.conn, 'POST', headers={**EXECUTE, 'Content-Type': 'application/x-gzip'},
                data=tar_bytes(members, gz=True))
    assert resp.status_code == 200, resp.text
    assert resp.content == b'from the image\nhello from a file of the zapp\n'
    resp = call(env.conn, 'POST', f'/{env.container}/book.txt',
                headers={**EXECUTE, 'Content-Type': 'application/x-tar'},
                data=tar_bytes(members))
    assert resp.status_code == 200, resp.text
    assert resp.content == b'from the image\nhello from a file of the zapp\n' + TEXT.upper()
    assert resp.headers['X-Nexe-Host'] in replicas(swift_cluster, env.container, 'book.txt')


@pytest.mark.parametrize(('change', 'status', 'says'), [
    ({'boot/system.map': None}, 400, 'System boot map was not found in the request body'),
    ({'boot/system.map': b'[{"name": '}, 400,
     'boot/system.map in the request body is not a valid job description'),
    ({'boot/system.map': json.dumps([{'name': 'app', 'exec': {'path': 'bin/nope'}}]).encode()},
     400, 'the zapp has no file bin/nope'),
    ({'boot/system.map': json.dumps([{'name': 'app', 'exec': {'path': 'bin/src_interp'},
                                      'devices': [{'name': 'stdtest'}]}]).encode()},
     400, 'Unknown device "stdtest" in app'),
    ({'boot/system.map': b'[]' + b' ' * 70000}, 413, 'larger than zerovm_maxconfig'),
])
def test_a_bad_zapp_is_refused_with_a_message(env: Env, change: dict, status: int,
                                              says: str) -> None:
    members = {k: v for k, v in {**app_zapp(env), **change}.items() if v is not None}
    resp = call(env.conn, 'POST', headers={**EXECUTE, 'Content-Type': 'application/x-gzip'},
                data=tar_bytes(members, gz=True))
    assert resp.status_code == status, resp.text
    assert says in resp.text


def test_a_zapp_that_is_no_archive_is_a_400(env: Env) -> None:
    for content_type, says in (('application/x-gzip', 'is not a valid gzip file'),
                               ('application/x-tar', 'is not a tar archive')):
        resp = call(env.conn, 'POST', headers={**EXECUTE, 'Content-Type': content_type},
                    data=b'certainly not an archive' * 40)
        assert resp.status_code == 400, resp.text
        assert f'the request body {says}' in resp.text


# -- deferred ----------------------------------------------------------------------------------

def test_deferred_always_answers_at_once_and_stores_the_result(env: Env) -> None:
    job = env.put('upper.json', env.job('upper'))
    resp = call(env.conn, 'POST', f'/{env.container}',
                headers={**source(job), 'X-Zerovm-Deferred': 'always'}, data=b'later')
    assert resp.status_code == 202, resp.text
    where = resp.text.strip()
    assert where.startswith(env.url('job-'))
    name = where[len(env.url()):]
    assert resp.headers['Location'].endswith(f'/v1/AUTH_test/{env.container}/{name}')
    headers = json.loads(wait_for(env.conn, env.container, name + '.headers'))
    assert headers['Status'] == '200 OK'
    assert headers['X-Nexe-Status'] == 'ok'
    assert headers['X-Nexe-System'] == 'run'
    result = env.conn.get_object(env.container, name)
    assert result[1] == b'LATER'
    assert result[0]['content-type'] == 'text/plain'


def test_a_deferred_job_posted_to_a_missing_container_is_refused(env: Env) -> None:
    # smalls10: a typo in the container's name made a new container holding the job's
    # state and result
    job = env.put('upper.json', env.job('upper'))
    typo = f'{env.container}-typo'
    resp = call(env.conn, 'POST', f'/{typo}',
                headers={**source(job), 'X-Zerovm-Deferred': 'always'}, data=b'later')
    assert resp.status_code == 404, resp.text
    assert resp.text.startswith(f'container swift://AUTH_test/{typo} does not exist: a '
                                f'deferred job keeps its result in the container it is '
                                f'POSTed to; create it first (swift post {typo}, in '
                                f'account AUTH_test)')
    with pytest.raises(ClientException) as missing:
        env.conn.head_container(typo)
    assert missing.value.http_status == 404


def test_a_deferred_job_whose_state_cannot_be_stored_is_refused(env: Env) -> None:
    """A deferred job keeps its state and result in the container of the URL (of an
    open, the opened object's), as the caller: one that refuses them (here its quota
    of one object is used) answered 202 and the result never came (only the proxy's
    log said why).  Now the refusal is the answer, naming the container, and the job
    is stopped; nothing is stored there."""
    full = f'{env.container}-full'
    env.conn.put_container(full, headers={'X-Container-Meta-Quota-Count': '1'})
    env.conn.put_object(full, 'interp.nexe', env.conn.get_object(
        env.container, 'interp.nexe')[1], content_type='application/x-nexe')
    try:
        deferred = {'X-Zerovm-Deferred': 'always'}
        for headers, open_url in (({**OPEN, **deferred}, False), (deferred, True)):
            resp = call(env.conn, 'GET', f'/{full}/interp.nexe?args=-c%20args', headers,
                        open_url=open_url)
            assert resp.status_code == 413, resp.text
            assert resp.text.startswith(
                f'this deferred job was stopped: its state could not be stored in '
                f'swift://AUTH_test/{full}, where it keeps its state and result (413 ')
        assert [o['name'] for o in env.conn.get_container(full)[1]] == ['interp.nexe']
    finally:
        env.conn.delete_object(full, 'interp.nexe')
        env.conn.delete_container(full)


def test_deferred_answers_errors_and_quick_results_directly(env: Env) -> None:
    resp = call(env.conn, 'POST', headers={**EXECUTE, 'X-Zerovm-Deferred': 'always'},
                data='[{"name": "x"}]')
    assert resp.status_code == 400
    assert 'Must specify exec stanza for x' in resp.text
    job = env.put('upper.json', env.job('upper'))
    # once first: its program's validation and template are then ready (a cold first run
    # on a loaded CI machine took longer than the cluster's interactive_timeout)
    assert call(env.conn, 'POST', headers=source(job), data=b'warm').content == b'WARM'
    resp = call(env.conn, 'POST', headers={**source(job), 'X-Zerovm-Deferred': 'auto'},
                data=b'now')
    assert (resp.status_code, resp.content) == (200, b'NOW')
    resp = call(env.conn, 'POST', headers={**source(job), 'X-Zerovm-Deferred': 'later'})
    assert resp.status_code == 400
    assert 'X-Zerovm-Deferred must be one of always, auto, never' in resp.text


def test_deferred_auto_answers_after_interactive_timeout(
        swift_cluster: DevCluster, env: Env, pause_object_server) -> None:
    """A stopped server holding the data stalls the job until it is resumed (the job
    and its program are stored elsewhere, so the request itself is not stalled)."""
    first = swift_cluster.object_nodes('AUTH_test', env.container, 'book.txt')[1][0]

    def elsewhere(prefix: str) -> str:
        return next(name for name in (f'{prefix}-{i}' for i in range(100))
                    if all(n['id'] != first['id'] for n in
                           swift_cluster.object_nodes('AUTH_test', env.container, name)[1]))
    interp = env.put(elsewhere('interp'), env.conn.get_object(env.container, 'src_interp')[1])
    job = env.job('upper', stdin=env.url('book.txt'))
    job[0]['exec']['path'] = interp
    job = env.put(elsewhere('job'), job)
    pause_object_server(first['id'])
    started = time.monotonic()
    resp = call(env.conn, 'POST', headers={**source(job), 'X-Zerovm-Deferred': 'auto'})
    swift_cluster.resume_object_server(first['id'])
    assert resp.status_code == 202, resp.text          # answered while the server was stopped
    assert time.monotonic() - started >= 3              # interactive_timeout = 3
    where = resp.text.strip()
    assert where.startswith('swift://AUTH_test/.zvm/job-')      # no container in the URL
    name = where.rsplit('/', 1)[1]
    try:
        headers = json.loads(wait_for(env.conn, '.zvm', name + '.headers'))
        assert headers['X-Nexe-Status'] == 'ok'
        assert env.conn.get_object('.zvm', name)[1] == TEXT.upper()
    finally:
        for obj in (name, name + '.headers'):
            env.conn.delete_object('.zvm', obj)


# -- chains and CGI output ----------------------------------------------------------------

def cgi(lines: list[str], *more: str) -> str:
    """An interpreter script printing ``lines``, then running ``more``."""
    return '\\n'.join([*(f'echo {line}' if line else 'echo' for line in lines), *more])


def test_a_job_whose_response_is_a_job_runs_it_next(env: Env) -> None:
    second = env.job('upper', name='second')
    first = env.job(cgi(['Content-Type: application/json', 'X-Zerovm-Execute: 1.0', '',
                         json.dumps(second)]), stdin=None,
                    stdout={'name': 'stdout', 'content_type': 'message/cgi'}, name='first')
    resp = call(env.conn, 'POST', headers=source(env.put('chain.json', first)),
                data=b'passed along')
    assert resp.status_code == 200, resp.text
    assert resp.content == b'PASSED ALONG'                 # the body went to the job taking it
    assert resp.headers['X-Nexe-System'] == 'second'
    assert 'X-Chain-Stopped' not in resp.headers
    assert float(resp.headers['X-Chain-Total-Time']) > 0


def test_a_chain_stops_at_chain_timeout(env: Env) -> None:
    again = [{'name': 'again', 'exec': {'path': env.interp, 'args': ['-c', cgi(
        ['Content-Type: application/json', 'X-Zerovm-Execute: 1.0', ''], 'cat /dev/script')]},
        'devices': [{'name': 'script', 'path': env.url('again.json')},
                    {'name': 'stdout', 'content_type': 'message/cgi'}]}]
    resp = call(env.conn, 'POST', headers=source(env.put('again.json', again)))
    assert resp.status_code == 200, resp.text
    assert resp.headers['X-Chain-Stopped'] == 'chain_timeout'
    assert float(resp.headers['X-Chain-Total-Time']) >= 10     # chain_timeout = 10
    assert json.loads(resp.content) == again


@pytest.mark.parametrize(('content_type', 'lines', 'status'), [
    ('message/cgi', ['Status: 201 Created', 'Content-Type: text/html',
                     'X-Object-Meta-Color: blue', 'X-Nexe-Status: forged', ''], 201),
    ('message/http', ['HTTP/1.1 404 Not Found', 'Content-Type: text/html',
                      'X-Object-Meta-Color: blue', 'Etag: forged', ''], 404),
])
def test_cgi_output_makes_the_response(env: Env, content_type: str, lines: list[str],
                                       status: int) -> None:
    job = env.job(cgi(lines, 'echo <p>hi</p>'), stdin=None,
                  stdout={'name': 'stdout', 'content_type': content_type})
    resp = call(env.conn, 'POST', headers=EXECUTE, data=json.dumps(job))
    assert resp.status_code == status, resp.text
    assert resp.content == b'<p>hi</p>\n'
    assert resp.headers['Content-Type'] == 'text/html'
    assert resp.headers['X-Object-Meta-Color'] == 'blue'
    assert resp.headers['X-Nexe-Status'] == 'ok'
    assert resp.headers['Etag'] != 'forged'


def test_bad_cgi_output_is_a_422_naming_the_node(env: Env) -> None:
    job = env.job('echo no blank line ends these headers', stdin=None,
                  stdout={'name': 'stdout', 'content_type': 'message/cgi'})
    resp = call(env.conn, 'POST', headers=EXECUTE, data=json.dumps(job))
    assert resp.status_code == 422
    assert resp.text.startswith('run: its message/cgi output is not valid: no blank line')
    assert resp.headers['X-Nexe-Status'] == 'ok'


# -- failures show at every entry point -------------------------------------------------------

BOGUS = b'src_interp: unknown command: bogus'        # src_interp's stderr, then exit 2


def failed_with_stderr(resp: requests.Response, node: str) -> None:
    """A node that exited 2 after writing BOGUS to its undeclared stderr: 422, ZeroCloud's
    headers, the error in X-Nexe-Error, the stderr in the body."""
    assert resp.status_code == 422, resp.text
    assert resp.headers['X-Nexe-Status'] == 'ok'
    assert resp.headers['X-Nexe-Retcode'] == '2'
    assert resp.headers['X-Nexe-Error'] == f'{node}: exit 2: {BOGUS.decode()}'
    assert resp.content.startswith(f'{node}: exit 2: '.encode() + BOGUS + b'\n')
    assert b'\n--- stderr of ' + node.encode() + b' (its end) ---\n' + BOGUS + b'\n' \
        in resp.content


def test_a_failing_program_fails_the_request_at_every_entry_point(env: Env) -> None:
    job = env.job('echo partial\\nbogus', stdin=None)
    failed_with_stderr(call(env.conn, 'POST', headers=EXECUTE, data=json.dumps(job)), 'run')
    stored = env.put('bogus.json', job)
    failed_with_stderr(call(env.conn, 'POST', headers=source(stored)), 'run')
    failed_with_stderr(call(env.conn, 'POST', f'/{env.container}/book.txt',
                            headers=source(env.put('bogus-over.json', env.job('bogus')))),
                       'run')
    failed_with_stderr(call(env.conn, 'POST', headers={**EXECUTE, 'Content-Type': 'text/x-sh'},
                            data=f'#!{env.interp}\nbogus\n'), 'script')
    script = env.put('bogus.sh', f'#!{env.interp}\nbogus\n', 'text/x-sh')
    failed_with_stderr(call(env.conn, 'GET', f'/{env.container}/book.txt',
                            {**OPEN, 'X-Zerovm-Source': script}), 'script')
    app = tar_bytes(app_zapp(env, b'bogus\n'))
    failed_with_stderr(call(env.conn, 'POST', headers={**EXECUTE,
                                                       'Content-Type': 'application/x-tar'},
                            data=app), 'app')
    env.put('bogus.zapp', app, 'application/x-tar')
    failed_with_stderr(call(env.conn, 'GET', f'/{env.container}/bogus.zapp', open_url=True),
                       'app')
    resp = call(env.conn, 'POST', f'/{env.container}',
                headers={**source(stored), 'X-Zerovm-Deferred': 'always'})
    assert resp.status_code == 202, resp.text
    name = resp.text.strip()[len(env.url()):]
    headers = json.loads(wait_for(env.conn, env.container, name + '.headers'))
    assert headers['Status'] == '422 Unprocessable Entity'
    assert headers['X-Nexe-Error'] == f'run: exit 2: {BOGUS.decode()}'
    assert env.conn.get_object(env.container, name)[1].startswith(b'run: exit 2: ')


def test_the_job_says_which_exit_codes_are_success(env: Env) -> None:
    job = env.job('echo fine\\nexit 1', stdin=None)
    assert call(env.conn, 'POST', headers=EXECUTE, data=json.dumps(job)).status_code == 422
    job[0]['exec']['ok_exit'] = [0, 1]
    resp = call(env.conn, 'POST', headers=EXECUTE, data=json.dumps(job))
    assert (resp.status_code, resp.content) == (200, b'fine\n'), resp.text
    assert resp.headers['X-Nexe-Retcode'] == '1' and 'X-Nexe-Error' not in resp.headers
    job[0]['exec']['ok_exit'] = [256]
    resp = call(env.conn, 'POST', headers=EXECUTE, data=json.dumps(job))
    assert resp.status_code == 400
    assert 'Invalid nexe property exec.ok_exit in run: must be an integer from 0 to 255' \
        in resp.text

"""An attacker's review (review19) on the real cluster: test2 (an admin of AUTH_test2
only) and users given account ACLs (not owners) try to run jobs where they may not,
reach objects through the parts of a request that name another account's (an open
request's app, a container's REST endpoint, a registered app, a wildcard's output
names), smuggle an object server's own request through the proxy, and break headers
with the names of their own objects.  Each attempt is refused before any node runs
and nothing of the other account is read or written; what an ACL grants works."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest
import requests
from archives import tar_bytes
from cluster_logs import executed
from swiftclient import Connection
from test_jobs import TEXT, post_job, wc, wc_job

from zerocloud.devcluster import DevCluster

SECRET = b'top secret\n'


@pytest.fixture
def setting(conn: Connection, connect, make_container, guest) -> dict:
    """AUTH_test's private container (a secret, a program, a job naming the secret),
    test2's own container with wc and data."""
    private = make_container('private')
    conn.put_object(private, 'secret', SECRET)
    conn.put_object(private, 'wc', guest('wc').read_bytes())
    other = connect('test2:tester2')
    own = make_container('own', connection=other)
    other.put_object(own, 'wc', guest('wc').read_bytes())
    other.put_object(own, 'data', TEXT)
    wc2 = f'swift://AUTH_test2/{own}/wc'
    conn.put_object(private, 'app.json', json.dumps(
        wc_job(wc2, f'swift://AUTH_test/{private}/secret')), content_type='application/json')
    return {'other': other, 'private': private, 'own': own, 'wc': wc2,
            'data': f'swift://AUTH_test2/{own}/data',
            'secret': f'swift://AUTH_test/{private}/secret'}


def refused(swift_cluster: DevCluster, resp: requests.Response, status: int, says: str,
            *containers: str) -> None:
    """``resp`` is ``status`` saying ``says``, no node ran, none in ``containers``."""
    assert resp.status_code == status, resp.text
    assert says in resp.text, resp.text
    assert SECRET not in resp.content
    assert 'X-Nexe-System' not in resp.headers
    for container in containers:
        assert executed(swift_cluster, container) == []


def names(conn: Connection, container: str) -> list[str]:
    return [o['name'] for o in conn.get_container(container)[1]]


@pytest.fixture
def acl_account(swift_cluster: DevCluster, make_account, connect) -> dict:
    """A fresh account (owned by the reseller admin) with a container holding a secret,
    and its admin's token: its account ACL is each test's to set."""
    url, token = make_account(f'acl{uuid.uuid4().hex[:8]}')
    admin = Connection(preauthurl=url, preauthtoken=token, retries=0)
    admin.put_container('c')
    admin.put_object('c', 'secret', SECRET)
    yield {'url': url, 'admin': admin, 'account': url.rsplit('/', 1)[1]}
    for obj in names(admin, 'c'):
        admin.delete_object('c', obj)
    admin.delete_container('c')


def set_account_acl(acl_account: dict, acl: dict) -> None:
    acl_account['admin'].post_account({'X-Account-Access-Control': json.dumps(acl)})


# -- who may run jobs in an account -------------------------------------------------------------

@pytest.mark.parametrize('role', ['read-only', 'read-write'])
def test_an_account_acl_short_of_admin_runs_no_job_in_that_account(
        swift_cluster, acl_account, setting, guest, role: str) -> None:
    """test2 given read-only or read-write on an account (tempauth's account ACLs:
    not its owner) may not run jobs in it -- POSTed to the account, a container or an
    object, opened, or through a container's API -- though it may read (and, read-write,
    write) its objects."""
    set_account_acl(acl_account, {role: ['test2:tester2']})
    url, account = acl_account['url'], acl_account['account']
    token = setting['other'].get_auth()[1]
    acl_account['admin'].put_object('c', 'wc', guest('wc').read_bytes())
    acl_account['admin'].post_container('c', {
        'X-Container-Meta-Rest-Endpoint': f'swift://{account}/c/app.json'})
    acl_account['admin'].put_object('c', 'app.json', json.dumps(wc_job(
        f'swift://{account}/c/wc', f'swift://{account}/c/secret')),
        content_type='application/json')
    job = json.dumps(wc_job(f'swift://{account}/c/wc', f'swift://{account}/c/secret'))
    for method, where, headers in [
            ('POST', url, {'X-Zerovm-Execute': '1.0'}),
            ('POST', url + '/c', {'X-Zerovm-Execute': '1.0'}),
            ('POST', url + '/c/secret', {'X-Zerovm-Execute': '1.0'}),
            ('POST', url, {'X-Zerovm-Execute': '1.0', 'X-Zerovm-Deferred': 'always'}),
            ('POST', url, {'X-Zerovm-Execute': '1.0',
                           'X-Zerovm-Source': f'swift://{account}/c/app.json'}),
            ('GET', url + '/c/secret', {'X-Zerovm-Execute': 'open/1.0',
                                        'X-Zerovm-Source': f'swift://{account}/c/app.json'}),
            ('GET', url.replace('/v1/', '/open/') + '/c/wc', {}),
            ('GET', url.replace('/v1/', '/api/') + '/c/x', {})]:
        body = job if 'X-Zerovm-Source' not in headers and method == 'POST' else None
        resp = requests.request(method, where, data=body, timeout=120, headers={
            'X-Auth-Token': token, 'Content-Type': 'application/json', **headers})
        refused(swift_cluster, resp, 403, f'Denied: may not execute jobs in swift://{account}',
                f'{account}/c')
    assert sorted(names(acl_account['admin'], 'c')) == ['app.json', 'secret', 'wc']


def test_a_read_only_account_acl_lets_a_job_read_and_never_write(
        swift_cluster, acl_account, setting) -> None:
    set_account_acl(acl_account, {'read-only': ['test2:tester2']})
    account = acl_account['account']
    secret = f'swift://{account}/c/secret'
    resp = post_job(setting['other'], wc_job(setting['wc'], secret))
    assert resp.status_code == 200, resp.text
    assert resp.content == wc(SECRET)
    for out in (f'swift://{account}/c/planted', secret):
        resp = post_job(setting['other'], wc_job(setting['wc'], setting['data'], stdout=out))
        refused(swift_cluster, resp, 403, f'Denied: may not write {out}', setting['own'])
    # nor through a wildcard's output names (one per object it read)
    job = wc_job(setting['wc'], f'swift://~/{setting["own"]}/*', stdout=f'swift://{account}/c/*')
    resp = post_job(setting['other'], job)
    refused(swift_cluster, resp, 403, f'Denied: may not write swift://{account}/c/',
            setting['own'])
    assert names(acl_account['admin'], 'c') == ['secret']
    assert acl_account['admin'].get_object('c', 'secret')[1] == SECRET


def test_a_read_write_account_acl_lets_a_job_write(swift_cluster, acl_account, setting) -> None:
    set_account_acl(acl_account, {'read-write': ['test2:tester2']})
    out = f'swift://{acl_account["account"]}/c/from-test2'
    resp = post_job(setting['other'], wc_job(setting['wc'], setting['data'], stdout=out))
    assert resp.status_code == 200, resp.text
    assert acl_account['admin'].get_object('c', 'from-test2')[1] == wc(TEXT)


def test_without_an_acl_nothing_of_the_account_is_reached(swift_cluster, acl_account,
                                                          setting) -> None:
    account = acl_account['account']
    for path, says in [(f'swift://{account}/c/secret', 'Denied: may not read'),
                       (f'swift://{account}/c/*', 'Denied: may not list'),
                       (f'swift://{account}/*/secret', 'Denied: may not list')]:
        resp = post_job(setting['other'], wc_job(setting['wc'], path))
        refused(swift_cluster, resp, 403, says, f'{account}/c')


# -- what names the code: an app, an endpoint, a registered app ---------------------------------

def test_an_app_of_another_account_is_not_read_to_open_ones_own_object(
        swift_cluster, setting) -> None:
    """test2 opens its own object with AUTH_test's private app, or with a public
    app of AUTH_test's that names AUTH_test's secret: 403 naming what it may not read."""
    url, token = setting['other'].get_auth()
    app = f'swift://AUTH_test/{setting["private"]}/app.json'
    resp = requests.get(f'{url}/{setting["own"]}/data', timeout=120, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': 'open/1.0', 'X-Zerovm-Source': app})
    refused(swift_cluster, resp, 403, f'Denied: may not read {app}', setting['own'],
            setting['private'])


def test_a_public_app_of_another_account_runs_as_its_caller(
        swift_cluster, conn: Connection, make_container, setting) -> None:
    """A public app (``.r:*``) of AUTH_test that reads AUTH_test's secret runs as test2
    (who uses it): it may not read the secret; one that reads the caller's ``~`` reads
    test2's own data."""
    public = make_container('public', headers={'X-Container-Read': '.r:*'})
    conn.put_object(public, 'leak.json', json.dumps(wc_job(setting['wc'], setting['secret'])),
                    content_type='application/json')
    conn.put_object(public, 'mine.json', json.dumps(
        wc_job(setting['wc'], f'swift://~/{setting["own"]}/data')),
        content_type='application/json')
    url, token = setting['other'].get_auth()
    for app, status in (('leak.json', 403), ('mine.json', 200)):
        resp = requests.post(url, timeout=120, headers={
            'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0',
            'X-Zerovm-Source': f'swift://AUTH_test/{public}/{app}'})
        assert resp.status_code == status, resp.text
        assert SECRET not in resp.content
    assert resp.content == wc(TEXT)
    assert executed(swift_cluster, setting['private']) == []


def test_a_rest_endpoint_naming_another_accounts_app_is_refused(
        swift_cluster, setting) -> None:
    other = setting['other']
    app = f'swift://AUTH_test/{setting["private"]}/app.json'
    other.post_container(setting['own'], {'X-Container-Meta-Rest-Endpoint': app})
    url, token = other.get_auth()
    api = url.replace('/v1/', '/api/', 1)
    for method in ('GET', 'POST', 'PUT', 'DELETE'):
        resp = requests.request(method, f'{api}/{setting["own"]}/x', timeout=120,
                                headers={'X-Auth-Token': token})
        refused(swift_cluster, resp, 403, f'Denied: may not read {app}', setting['own'],
                setting['private'])
    assert sorted(names(other, setting['own'])) == ['data', 'wc']


def test_a_registered_app_naming_another_accounts_object_is_refused(
        swift_cluster, make_container, setting) -> None:
    """test2 registers (in its own .zvm) an app for a content type that reads AUTH_test's
    secret, with the object's path and a query parameter spliced in: opening its own
    object of that type is a 403 naming the secret; a parameter cannot climb out of the
    JSON string it is put in."""
    other = setting['other']
    kind = f'application/x-h19-{uuid.uuid4().hex[:8]}'
    other.put_container('.zvm')
    config = f'{kind}/config'
    try:
        other.put_object('.zvm', config, json.dumps(
            wc_job(setting['wc'], setting['secret'])), content_type='application/json')
        other.put_object(setting['own'], 'doc', TEXT, content_type=kind)
        url, token = other.get_auth()
        opened = url.replace('/v1/', '/open/', 1) + f'/{setting["own"]}/doc'
        resp = requests.get(opened, timeout=120, headers={'X-Auth-Token': token})
        refused(swift_cluster, resp, 403, f'Denied: may not read {setting["secret"]}',
                setting['own'], setting['private'])
        # {.x} is spliced JSON-escaped: "x" cannot end the string and add a device
        job = wc_job(setting['wc'], f'swift://~/{setting["own"]}/{{.x=data}}')
        other.put_object('.zvm', config, json.dumps(job), content_type='application/json')
        climb = 'data", "path": "' + setting['secret']
        resp = requests.get(opened, params={'x': climb}, timeout=120,
                            headers={'X-Auth-Token': token})
        assert resp.status_code == 404, resp.text      # the object named by the whole value
        assert SECRET not in resp.content and 'X-Nexe-System' not in resp.headers
        resp = requests.get(opened, timeout=120, headers={'X-Auth-Token': token})
        assert resp.status_code == 200, resp.text
        assert resp.content == wc(TEXT)
    finally:
        other.delete_object('.zvm', config)
    assert executed(swift_cluster, setting['private']) == []


# -- an object server's own request, sent by a client ------------------------------------------

def test_an_object_servers_request_sent_through_the_proxy_runs_nothing(
        swift_cluster, conn: Connection, setting) -> None:
    """test2 POSTs what the proxy sends an object server (a tar of node.json naming
    AUTH_test's secret as a local channel, and the program), with the internal headers
    (X-Zerovm-Access, X-Zerocloud-Account, X-Zerovm-Program, X-Zerovm-Batch,
    X-Backend-*), to its own object and to AUTH_test's: the proxy filter takes it as a
    job (a zapp without boot/system.map: 400) or refuses it (403); no object server
    runs anything."""
    spec = {'name': 'wc', 'args': ['wc'], 'env': {}, 'devices': [
        {'name': 'stdin', 'access': 'r', 'source': 'local'}, {'name': 'stdout', 'access': 'w'}]}
    body = tar_bytes({'node.json': json.dumps(spec), 'exe': b'\x7fELF'})
    url, token = setting['other'].get_auth()
    internal = {'X-Zerovm-Access': 'GET', 'X-Zerocloud-Account': 'AUTH_test',
                'X-Zerovm-Program': '0' * 64, 'X-Zerovm-Batch': '1', 'X-Zerovm-Reports': '1',
                'X-Backend-Storage-Policy-Index': '0', 'X-Zerovm-Stream': '1'}
    victim = url.replace('AUTH_test2', 'AUTH_test') + f'/{setting["private"]}/secret'
    for where, status, says in [(f'{url}/{setting["own"]}/data', 400, 'boot/system.map'),
                                (victim, 403, 'Denied: may not execute jobs in')]:
        resp = requests.post(where, data=body, timeout=120, headers={
            'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0',
            'Content-Type': 'application/x-tar', **internal})
        refused(swift_cluster, resp, status, says, setting['own'], setting['private'])
    # spelt with underscores, the header is no header of ours on any server: Swift's
    # metadata POST (the body ignored), or dropped before it (eventlet)
    resp = requests.post(f'{url}/{setting["own"]}/data', data=body, timeout=120, headers={
        'X-Auth-Token': token, 'X_Zerovm_Execute': '1.0', 'Content-Type': 'text/plain',
        **internal})
    assert resp.status_code in (202, 400), resp.text
    assert executed(swift_cluster, setting['own']) == []
    assert setting['other'].get_object(setting['own'], 'data')[1] == TEXT
    assert conn.get_object(setting['private'], 'secret')[1] == SECRET


# -- names that would break headers --------------------------------------------------------------

def test_object_names_with_line_breaks_stay_out_of_headers(swift_cluster, make_container,
                                                           setting) -> None:
    """test2's own objects whose names hold CR LF and a header line, run over by a
    wildcard, written under the same names, and deferred: no answer carries an
    injected header; the names are refused where a job names them itself."""
    other = setting['other']
    url, token = other.get_auth()
    box = make_container('crlf', connection=other)
    out = make_container('crlfout', connection=other)
    evil = 'a\r\nX-Injected: 1\r\n\r\nb'
    resp = requests.put(f'{url}/{box}/{quote(evil)}', data=b'x y\n', timeout=30,
                        headers={'X-Auth-Token': token})
    if resp.status_code != 201:
        pytest.skip(f'Swift refuses the name: {resp.status_code}')
    job = wc_job(setting['wc'], f'swift://~/{box}/*', stdout=f'swift://~/{out}/*')
    job[0]['devices'].append({'name': 'stderr'})
    for headers in ({}, {'X-Zerovm-Report': 'json'}):
        resp = post_job(other, job, headers)
        assert resp.status_code == 200, resp.text
        assert 'X-Injected' not in resp.headers
    assert names(other, out) == [evil]
    resp = post_job(other, job, {'X-Zerovm-Deferred': 'always'})
    assert resp.status_code == 202 and 'X-Injected' not in resp.headers
    named = wc_job(setting['wc'], f'swift://~/{box}/{quote(evil)}')
    resp = post_job(other, named)
    assert resp.status_code == 400, resp.text
    assert 'control characters are not allowed' in resp.text


# -- names that look like another account --------------------------------------------------------

@pytest.mark.parametrize('account', ['ＡＵＴＨ_test', 'AUTH_tеst', 'auth_test', 'AUTH_test ',
                                     '..', '.', '~'])
def test_look_alike_accounts_are_other_accounts(swift_cluster, setting, account: str) -> None:
    """Fullwidth, Cyrillic, lower-case, spaced, dot accounts: no layer normalises them
    into AUTH_test (``.`` and ``~`` are the caller's own: AUTH_test2)."""
    path = f'swift://{quote(account)}/{setting["private"]}/secret'
    resp = post_job(setting['other'], wc_job(setting['wc'], path))
    assert resp.status_code in (400, 403, 404), resp.text
    assert SECRET not in resp.content and 'X-Nexe-System' not in resp.headers
    assert executed(swift_cluster, setting['private']) == []


# -- what a refusal tells of another account ------------------------------------------------------

def test_an_output_in_another_account_does_not_tell_whether_its_container_exists(
        swift_cluster, setting) -> None:
    """Swift answers a PUT one may not make 403 whether or not the container exists (it
    authorises first): a job's output was checked for its container first, so test2
    learnt which of AUTH_test's containers exist (404 against 403) from jobs that ran
    nothing.  Both are now the same 403; the caller's own missing container is the 404
    that says to create it."""
    answers = {}
    for container in (setting['private'], f'nowhere-{uuid.uuid4().hex[:8]}'):
        out = f'swift://AUTH_test/{container}/out'
        resp = post_job(setting['other'], wc_job(setting['wc'], setting['data'], stdout=out))
        answers[container] = (resp.status_code, resp.text.replace(container, '<c>'))
        refused(swift_cluster, resp, 403, f'Denied: may not write {out}', setting['own'])
    assert len(set(answers.values())) == 1, answers
    resp = post_job(setting['other'], wc_job(setting['wc'], setting['data'],
                                             stdout='swift://~/nowhere-h19/out'))
    refused(swift_cluster, resp, 404, 'container swift://AUTH_test2/nowhere-h19 does not '
            'exist: a job writes swift://AUTH_test2/nowhere-h19/out only into a container '
            'that exists (create it first: swift post nowhere-h19)', setting['own'])


def test_an_sql_answer_is_stored_only_where_its_caller_may_write(
        swift_cluster, conn: Connection, make_container, setting) -> None:
    """sql/1.0's "output" in a container test2 may read, not write, or in one of AUTH_test
    that does not exist: the same 403 before any node runs, nothing stored."""
    if 'sqlite' not in swift_cluster.sysimages:
        pytest.skip('no sqlite system image on this cluster')
    readable = make_container('readable', headers={'X-Container-Read': 'test2:tester2'})
    conn.put_object(readable, 'sales.csv', b'region,qty\neast,3\nwest,4\n')
    url, token = setting['other'].get_auth()
    for container in (readable, f'nowhere-{uuid.uuid4().hex[:8]}'):
        out = f'swift://AUTH_test/{container}/answer.csv'
        resp = requests.post(url, timeout=120, data=json.dumps(
            {'query': f'SELECT region, sum(qty) FROM swift://AUTH_test/{readable}/sales.csv '
                      'GROUP BY region', 'output': out}),
            headers={'X-Auth-Token': token, 'X-Zerovm-Execute': 'sql/1.0',
                     'Content-Type': 'application/json'})
        refused(swift_cluster, resp, 403, f'Denied: may not write {out}', readable)
    assert names(conn, readable) == ['sales.csv']


# -- small requests that cost the proxy much -----------------------------------------------------

def test_a_wide_connect_is_refused_before_it_is_wired(swift_cluster, setting) -> None:
    """count 20,000 connected to count 20,000 (400 million links, wired before any node's
    channels were checked: gigabytes of the proxy for a minute, its event loop held) is a
    400 that says what to connect instead; the proxy then answers as before."""
    wide = [{'name': 'a', 'exec': {'path': setting['wc']}, 'count': 20_000, 'connect': ['b']},
            {'name': 'b', 'exec': {'path': setting['wc']}, 'count': 20_000}]
    resp = post_job(setting['other'], wide)
    refused(swift_cluster, resp, 400, 'Too many channels for node a-1: 20003 (reads from 0 '
            'nodes, writes to 20000)', setting['own'])
    assert 'Connect it to fewer nodes' in resp.text
    resp = post_job(setting['other'], wc_job(setting['wc'], setting['data']))
    assert resp.status_code == 200 and resp.content == wc(TEXT)

"""A second user (test2, an admin of AUTH_test2 only) tries to reach AUTH_test's objects
through every part of a job that names one: each attempt is a 403 (or 404 for what does
not exist as named) before any node runs, and nothing of AUTH_test changes.  ACLs give
exactly what they say: a read ACL lets a job read, never write."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
import requests
from accounts import until
from archives import tar_bytes
from cluster_logs import executed, storage_requests
from swiftclient import Connection
from test_jobs import TEXT, post_job, wc, wc_job

from zerocloud.devcluster import DevCluster

SECRET = b'top secret\n'


@pytest.fixture
def setting(conn: Connection, connect, make_container, guest) -> dict:
    """AUTH_test's private container (a secret, a program, an image) and one that
    test2 may read, not write; test2's own container with wc and data."""
    private = make_container('private')
    conn.put_object(private, 'secret', SECRET)
    conn.put_object(private, 'wc', guest('wc').read_bytes())
    readable = make_container('readable', headers={'X-Container-Read': 'test2:tester2'})
    conn.put_object(readable, 'data', TEXT)
    other = connect('test2:tester2')
    own = make_container('own', connection=other)
    other.put_object(own, 'wc', guest('wc').read_bytes())
    other.put_object(own, 'data', TEXT)
    return {'other': other, 'private': private, 'readable': readable, 'own': own,
            'wc': f'swift://AUTH_test2/{own}/wc', 'data': f'swift://AUTH_test2/{own}/data'}


def refused(swift_cluster: DevCluster, resp: requests.Response, status: int, names: str,
            *containers: str) -> None:
    assert resp.status_code == status, resp.text
    assert names in resp.text, resp.text
    assert 'X-Nexe-System' not in resp.headers
    for container in containers:
        assert executed(swift_cluster, container) == []


def test_a_private_program_cannot_be_run_by_another_user(swift_cluster, setting) -> None:
    program = f'swift://AUTH_test/{setting["private"]}/wc'
    resp = post_job(setting['other'], wc_job(program, setting['data']))
    refused(swift_cluster, resp, 403, program, setting['own'])


def test_a_private_image_cannot_be_mounted_by_another_user(
        swift_cluster, conn: Connection, setting) -> None:
    conn.put_object(setting['private'], 'image.tar', b'\0' * 1024)
    image = f'swift://AUTH_test/{setting["private"]}/image.tar'
    for exec_path in (setting['wc'], 'file://image:bin/wc'):
        job = wc_job(exec_path, setting['data'])
        job[0]['devices'].append({'name': 'image', 'path': image})
        resp = post_job(setting['other'], job)
        refused(swift_cluster, resp, 403, image, setting['own'])


def test_a_read_acl_lets_a_job_read_and_never_write(swift_cluster, conn: Connection,
                                                    setting) -> None:
    readable = setting['readable']
    data = f'swift://AUTH_test/{readable}/data'
    resp = post_job(setting['other'], wc_job(setting['wc'], data))
    assert resp.status_code == 200, resp.text
    assert resp.content == wc(TEXT)
    for out in (f'swift://AUTH_test/{readable}/planted', f'swift://AUTH_test/{readable}/data'):
        resp = post_job(setting['other'], wc_job(setting['wc'], setting['data'], stdout=out))
        refused(swift_cluster, resp, 403, out, setting['own'])
    assert [o['name'] for o in conn.get_container(readable)[1]] == ['data']
    assert conn.get_object(readable, 'data')[1] == TEXT


@pytest.mark.parametrize('path, status', [
    ('swift://AUTH_test2/{own}/../../AUTH_test/{private}/secret', 404),
    ('swift://AUTH_test2/{own}/%2E%2E/%2E%2E/AUTH_test/{private}/secret', 404),
    ('swift://~/{own}/..%2F..%2FAUTH_test%2F{private}%2Fsecret', 404),
    ('swift://AUTH_test2%2F..%2FAUTH_test/{private}/secret', 400),
    ('swift://AUTH_test2/{own}%2F..%2F..%2FAUTH_test/secret', 400),
    ('swift://AUTH_test/{private}/secret%00', 400),
    ('swift://AUTH_test/{private}/secret', 403),
    ('swift://AUTH_test/{private}/%73ecret', 403),
    ('swift://AUTH_test/{private}//secret', 403),
    ('swift://AUTH_test/{private}/*', 403),
    ('swift://AUTH_test/*/secret', 403),
    ('swift://AUTH_test/{private}*/secret', 403),
])
def test_names_that_climb_or_are_encoded_reach_no_other_account(
        swift_cluster, setting, path: str, status: int) -> None:
    path = path.format(own=setting['own'], private=setting['private'])
    resp = post_job(setting['other'], wc_job(setting['wc'], path))
    assert resp.status_code == status, resp.text
    assert SECRET not in resp.content and 'X-Nexe-System' not in resp.headers
    assert executed(swift_cluster, setting['private']) == []


def test_a_zapp_job_naming_a_private_object_is_refused(swift_cluster, setting) -> None:
    secret = f'swift://AUTH_test/{setting["private"]}/secret'
    zapp = tar_bytes({'boot/system.map': json.dumps(wc_job(setting['wc'], secret)),
                      'bin/wc': b''}, gz=True)
    url, token = setting['other'].get_auth()
    resp = requests.post(url, data=zapp, timeout=120, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/x-gzip'})
    refused(swift_cluster, resp, 403, secret, setting['own'], setting['private'])


def test_sql_over_a_private_object_is_refused_even_to_explain(swift_cluster, setting) -> None:
    if 'sqlite' not in swift_cluster.sysimages:
        pytest.skip('no sqlite system image on this cluster')
    url, token = setting['other'].get_auth()
    secret = f'swift://AUTH_test/{setting["private"]}/secret'
    for extra in ({}, {'explain': True}):
        resp = requests.post(url, timeout=120, data=json.dumps(
            {'query': f'SELECT * FROM {secret}', 'input': {'format': 'csv'}, **extra}),
            headers={'X-Auth-Token': token, 'X-Zerovm-Execute': 'sql/1.0',
                     'Content-Type': 'application/json'})
        assert resp.status_code == 403, resp.text
        assert resp.text == (f'Denied: may not read {secret} (swift://AUTH_test/'
                             f'{setting["private"]} is of account AUTH_test, not yours '
                             '(AUTH_test2): only its owner can change it; ask them to add '
                             'you to its read ACL (X-Container-Read))\n')
    assert executed(swift_cluster, setting['private']) == []


def test_sql_in_an_account_one_may_not_run_jobs_in_reads_nothing(
        swift_cluster, conn: Connection, make_container, setting) -> None:
    """sql/1.0 in AUTH_test by test2 (who may read one of its containers, not run jobs
    in it) or by anyone (over a public container) is a 403 or 401 before the query's
    objects, their listing or a stored query are read: it read the first object's
    header row (and, for "explain", answered the plan from it) before it checked."""
    if 'sqlite' not in swift_cluster.sysimages:
        pytest.skip('no sqlite system image on this cluster')
    readable = setting['readable']
    public = make_container('public', headers={'X-Container-Read': '.r:*,.rlistings'})
    for container in (readable, public):
        conn.put_object(container, 'sales.csv', b'region,qty\neast,3\nwest,4\n')
        conn.put_object(container, 'q.json', json.dumps(
            {'query': f'SELECT * FROM swift://AUTH_test/{container}/sales.csv'}).encode())
    url = conn.get_auth()[0]
    other = setting['other'].get_auth()[1]

    def post(token: str | None, container: str, body: dict | None) -> requests.Response:
        headers = {'X-Zerovm-Execute': 'sql/1.0', 'Content-Type': 'application/json'}
        if token:
            headers['X-Auth-Token'] = token
        if body is None:
            headers['X-Zerovm-Source'] = f'swift://AUTH_test/{container}/q.json'
        return requests.post(url, timeout=120, headers=headers,
                             data=json.dumps(body) if body else None)

    def queries(container: str) -> list[dict | None]:
        return [{'query': f'SELECT region, sum(qty) FROM swift://~/{container}/{name} '
                          'GROUP BY region', **extra}
                for name in ('sales.csv', '*.csv') for extra in ({}, {'explain': True})
                ] + [None]
    denied = []
    for token, container, status, message in [
            (other, readable, 403, 'Denied: may not execute jobs in swift://AUTH_test\n'),
            (other, public, 403, 'Denied: may not execute jobs in swift://AUTH_test\n'),
            (None, public, 401, 'Unauthorized: a valid token is needed to execute jobs in '
                                'swift://AUTH_test\n')]:
        for body in queries(container):
            resp = post(token, container, body)
            assert (resp.status_code, resp.text) == (status, message), body
            assert 'X-Sql-Plan' not in resp.headers and 'X-Nexe-System' not in resp.headers
            denied.append(resp.headers['X-Trans-Id'])
    # The servers log every request with its transaction's id: the owner's explain
    # (after the refused ones) reads the listing and the header row, theirs nothing.
    owner = post(conn.get_auth()[1], readable, queries(readable)[3])
    assert owner.status_code == 200, owner.text
    assert until(lambda: any(owner.headers['X-Trans-Id'] in line
                             for line in storage_requests(swift_cluster, readable)))
    for container in (readable, public):
        lines = storage_requests(swift_cluster, container)
        assert [line for line in lines if any(t in line for t in denied)] == []


def test_another_user_cannot_read_or_settle_a_deferred_result(
        conn: Connection, make_container, setting) -> None:
    """The result of a deferred job is AUTH_test's objects: test2 cannot read it by its
    id, and a GET of a result whose job was lost, or a DELETE of its state (a cancel),
    stores nothing as test2 (it may read that container, not write it)."""
    program = f'swift://AUTH_test/{setting["private"]}/wc'
    url, token = conn.get_auth()
    resp = requests.post(f'{url}/{setting["private"]}', timeout=120,
                         data=json.dumps(wc_job(program, f'swift://~/{setting["private"]}/secret')),
                         headers={'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0',
                                  'X-Zerovm-Deferred': 'always'})
    assert resp.status_code == 202, resp.text
    result = resp.headers['Location']
    assert until(lambda: requests.head(result + '.headers', timeout=30, headers={
        'X-Auth-Token': token}).status_code == 200)
    other = {'X-Auth-Token': setting['other'].get_auth()[1]}
    for suffix in ('', '.headers', '.state'):
        assert requests.get(result + suffix, timeout=30, headers=other).status_code == 403
    readable = setting['readable']
    lost = 'job-' + '0' * 32
    conn.put_object(readable, lost + '.state', json.dumps(
        {'state': 'running', 'heartbeat': 1, 'updated': time.time() - 3600}).encode())
    answer = requests.get(f'{url}/{readable}/{lost}.headers', timeout=30, headers=other)
    assert answer.status_code == 404, answer.text
    # nor cancel a job (a DELETE of its state stores a marker): test2 may not write there
    for state in (result + '.state', f'{url}/{readable}/{lost}.state'):
        assert requests.delete(state, timeout=30, headers=other).status_code == 403
    names = {o['name'] for o in conn.get_container(readable)[1]}
    assert names == {'data', lost + '.state'}


def test_open_with_a_source_is_authorised_before_the_source_is_unpacked(
        swift_cluster, conn: Connection, make_container) -> None:
    """A zapp named by X-Zerovm-Source is read and unpacked only for a caller who may run
    jobs in the account (as a POSTed zapp is): an anonymous open naming a public zapp
    bomb got it downloaded and unpacked by the proxy first (413: too many members)."""
    public = make_container('public', headers={'X-Container-Read': '.r:*'})
    members = {'boot/system.map': '[]', **{f'e/{i}': b'' for i in range(10_001)}}
    conn.put_object(public, 'bomb.tgz', tar_bytes(members, gz=True),
                    content_type='application/x-gzip')
    conn.put_object(public, 'obj', b'data\n')
    url, token = conn.get_auth()
    account = url.rsplit('/', 1)[1]
    source = {'X-Zerovm-Source': f'swift://{account}/{public}/bomb.tgz'}
    opened = url.replace('/v1/', '/open/', 1) + f'/{public}/obj'
    resp = requests.get(opened, headers=source, timeout=120)
    assert resp.status_code == 401, resp.text
    assert resp.text == ('Unauthorized: a valid token is needed to execute jobs in '
                         f'swift://{account}\n')
    resp = requests.get(opened, headers={**source, 'X-Auth-Token': token}, timeout=120)
    assert resp.status_code == 413, resp.text          # the owner's: unpacked, within limits


def test_object_names_that_spell_a_climb_are_the_owners_own_objects(
        swift_cluster, make_container, setting) -> None:
    """test2 stores objects whose names spell a way out of its container
    (``../../AUTH_test/<private>/secret``: Swift takes the name literally, percent-
    encoded dots included) and runs jobs over them, named and through a wildcard (which
    skips the per-object HEAD and runs next to each listed object): each node reads
    test2's own bytes, hashed by the literal name on the object server; no proxy,
    object-server or batch path normalises the name into AUTH_test's secret."""
    other = setting['other']
    url, token = other.get_auth()
    dots = make_container('dots', connection=other)
    target = f'AUTH_test/{setting["private"]}/secret'
    names = [f'../../{target}', f'x/../../../{target}', f'./../../{target}']
    for i, name in enumerate(names):
        encoded = quote(name).replace('.', '%2E')       # no client removes the dot segments
        resp = requests.put(f'{url}/{dots}/{encoded}', data=b'mine %d\n' % i, timeout=30,
                            headers={'X-Auth-Token': token})
        assert resp.status_code == 201, resp.text
    assert sorted(o['name'] for o in other.get_container(dots)[1]) == sorted(names)
    for i, name in enumerate(names):
        resp = post_job(other, wc_job(setting['wc'], f'swift://~/{dots}/{quote(name)}'))
        assert resp.status_code == 200, resp.text
        assert resp.content == wc(b'mine %d\n' % i)
    resp = post_job(other, wc_job(setting['wc'], f'swift://~/{dots}/*'))
    assert resp.status_code == 200, resp.text
    assert sorted(resp.content.splitlines(keepends=True)) == \
        sorted(wc(b'mine %d\n' % i) for i in range(len(names)))
    assert SECRET not in resp.content
    ran = executed(swift_cluster, setting['private'])      # the names hold its name
    assert ran and all(f'/AUTH_test2/{dots}/' in line for line in ran)


def test_a_write_only_acl_lets_a_job_write_and_never_read(
        swift_cluster, conn: Connection, make_container, guest, setting) -> None:
    """A drop box (test2 may write, not read): a job of test2's may store an output there,
    but reading an object of it -- named, through a wildcard, as the attached object of a
    written device, or as the program -- is a 403 before any node runs."""
    dropbox = make_container('dropbox', headers={'X-Container-Write': 'test2:tester2'})
    conn.put_object(dropbox, 'secret', SECRET)
    conn.put_object(dropbox, 'wc', guest('wc').read_bytes())
    drop = f'swift://AUTH_test/{dropbox}'
    resp = post_job(setting['other'], wc_job(setting['wc'], setting['data'],
                                             stdout=f'{drop}/from-test2'))
    assert resp.status_code == 200, resp.text
    assert conn.get_object(dropbox, 'from-test2')[1] == wc(TEXT)
    attached = wc_job(setting['wc'], setting['data'], stdout=f'{drop}/secret')
    attached[0]['attach'] = 'stdout'
    for job, names in [(wc_job(setting['wc'], f'{drop}/secret'), f'{drop}/secret'),
                       (wc_job(setting['wc'], f'{drop}/*'), drop),
                       (wc_job(f'{drop}/wc', setting['data']), f'{drop}/wc')]:
        resp = post_job(setting['other'], job)
        refused(swift_cluster, resp, 403, names, dropbox)
    resp = post_job(setting['other'], attached)       # writes it: allowed, reads nothing
    assert resp.status_code == 200, resp.text
    assert SECRET not in resp.content and resp.content == b''
    assert conn.get_object(dropbox, 'secret')[1] == wc(TEXT)

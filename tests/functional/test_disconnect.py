"""A job whose client goes away stops, and frees its worker; a deferred job goes on.

A cluster of its own: one object server that runs one node at a time and
queues none (``zerovm_maxpool = 1``, ``zerovm_maxqueue = 0``), and a node may
run for 120 s.  tests/programs/spin.c without arguments spins until stopped,
so its worker is busy for 120 s unless the stop works; a job that needs that
worker meanwhile is refused at once (503 ``Slot not available``).
"""

from __future__ import annotations

import http.client
import json
import select
import urllib.parse

import pytest
import requests
from accounts import account, until
from cluster_logs import executed, storage_requests
from swiftclient import ClientException, Connection

from zerocloud import deferred
from zerocloud.devcluster import DevCluster

TIMEOUT = 120
POOL = f'[filter:zerocloud]\nzerovm_timeout = {TIMEOUT}\nzerovm_maxpool = 1\nzerovm_maxqueue = 0\n'
WAIT = 30                   # seconds a test waits for what should come within one


@pytest.fixture(scope='module')
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> DevCluster:
    cluster = DevCluster(tmp_path_factory.mktemp('disconnect'), replicas=1, object_servers=1,
                         sysimages={}, extra_conf={
                             'proxy': f'[filter:zerocloud]\nzerovm_timeout = {TIMEOUT}\n',
                             'object': POOL})
    request.addfinalizer(cluster.stop)
    cluster.start()
    return cluster


@pytest.fixture(scope='module')
def conn(cluster: DevCluster, guest) -> Connection:
    return account(cluster, guest)


def spin_job(*args: str) -> str:
    return json.dumps([{'name': 'spin', 'exec': {'path': 'swift://~/bin/spin', 'args': list(args)},
                        'devices': [{'name': 'stdin', 'path': 'swift://~/data/obj'},
                                    {'name': 'stdout'}]}])


def post(conn: Connection, job: str, **headers: str) -> requests.Response:
    url, token = conn.get_auth()
    return requests.post(url, data=job, timeout=WAIT, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0', **headers})


def result(conn: Connection, name: str) -> bytes | None:
    """The stored ``.headers`` of deferred job ``name`` in ``.zvm``, None before."""
    try:
        return conn.get_object('.zvm', name + '.headers')[1]
    except ClientException:
        return None


def graph_job() -> str:
    """A spinning node that writes to another one (a streamed node, zerocloud.graph)."""
    spin, = json.loads(spin_job())
    return json.dumps([{**spin, 'connect': ['sink']},
                       {'name': 'sink', 'exec': {'path': 'swift://~/bin/spin', 'args': ['1']},
                        'devices': [{'name': 'stdout'}]}])


def start_spinning(conn: Connection, job: str) -> http.client.HTTPConnection:
    """The connection of a job spinning forever, once its node holds the worker: a quick
    job is refused then.  (A quick job may take the worker first: the spinning job is
    refused then, and sent again.)"""
    url, token = conn.get_auth()
    parts = urllib.parse.urlsplit(url)
    for _ in range(10):
        client = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT)
        client.request('POST', parts.path, body=job, headers={
            'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0'})

        def answered(client: http.client.HTTPConnection = client) -> bool:
            return bool(select.select([client.sock], [], [], 0)[0])
        if until(lambda: answered() or post(conn, spin_job('1')).status_code == 503) \
                and not answered():
            return client
        client.close()
    pytest.fail('the spinning job never got the worker')


@pytest.mark.parametrize('job', [spin_job(), graph_job()], ids=['node', 'graph'])
def test_a_client_that_goes_away_stops_its_job_and_frees_the_worker(
        cluster: DevCluster, conn: Connection, job: str) -> None:
    stopped_before = [line for line in executed(cluster, 'data') if ' 499 ' in line]
    client = start_spinning(conn, job)
    client.close()                                  # the client goes away
    resp = until(lambda: post(conn, spin_job('1')))     # 503 while the worker spins
    assert resp.status_code == 200, resp.text
    assert resp.content == b'spun 1\n'
    stopped = [line for line in executed(cluster, 'data') if ' 499 ' in line]
    if job == spin_job():       # a streamed node has answered 200 before it runs
        assert len(stopped) == len(stopped_before) + 1, executed(cluster, 'data')


def test_a_deferred_job_goes_on_without_its_client(cluster: DevCluster,
                                                   conn: Connection) -> None:
    resp = post(conn, spin_job('5000000'), **{'X-Zerovm-Deferred': 'always'})
    assert resp.status_code == 202, resp.text
    resp.close()
    name = resp.text.strip().rpartition('/')[2]

    headers = until(lambda: result(conn, name))
    assert headers is not None and json.loads(headers)['Status'] == '200 OK'
    assert conn.get_object('.zvm', name)[1] == b'spun 5000000\n'


def test_a_deferred_job_is_cancelled_by_a_delete_of_its_state(cluster: DevCluster,
                                                              conn: Connection) -> None:
    """DELETE .zvm/job-<id>.state stops the job (its worker is free at once, not after
    120 s) and stores its result: cancelled, with what had ended; then a second
    DELETE says it is not running, and neither the state nor the marker is left."""
    url, token = conn.get_auth()
    resp = post(conn, spin_job(), **{'X-Zerovm-Deferred': 'always'})
    assert resp.status_code == 202, resp.text
    name = resp.text.strip().rpartition('/')[2]
    assert until(lambda: post(conn, spin_job('1')).status_code == 503)     # it spins
    state = f'{url}/.zvm/{name}.state'
    cancel = requests.delete(state, headers={'X-Auth-Token': token}, timeout=WAIT)
    assert cancel.status_code == 202, cancel.text
    assert cancel.text.startswith(f'cancelling {name}: ')

    stored = json.loads(until(lambda: result(conn, name)) or b'{}')
    assert stored['Status'] == '499 Client Disconnect'
    assert stored['X-Nexe-Status'] == 'cancelled'
    assert stored['X-Nexe-Error'].startswith('stopped by a DELETE of its state (zc cancel) '
                                             'after ')
    assert stored['X-Nexe-Error'].endswith(': 0/1 nodes done, 0 failed, 1 stopped running')
    assert stored['X-Nexe-Node-Counts'] == 'total 1, done 0, failed 0, stopped 1'
    assert conn.get_object('.zvm', name)[1].decode() == stored['X-Nexe-Error'] + '\n'
    resp = until(lambda: post(conn, spin_job('1')))     # the worker is free again
    assert resp.status_code == 200, resp.text
    again = requests.delete(state, headers={'X-Auth-Token': token}, timeout=WAIT)
    assert (again.status_code, again.text) == (
        404, f'{name} is not running: it has ended (its result is stored)\n')
    left = {o['name'] for o in conn.get_container('.zvm')[1]}
    assert until(lambda: not {name + '.state', name + '.cancel'} & {
        o['name'] for o in conn.get_container('.zvm')[1]}), left


def test_a_cancel_marker_written_directly_stops_nothing(cluster: DevCluster,
                                                       conn: Connection) -> None:
    """hostile23: any writer of the container could stop its owner's job by writing
    ``job-<id>.cancel`` itself.  Only the marker a DELETE of the state stores stops a
    job (the proxy's system metadata, naming the job): a PUT of one, even with that
    metadata forged, is an object like any other.  The job's proxy looks at it and spins
    on; a DELETE of the state still cancels it."""
    url, token = conn.get_auth()
    resp = post(conn, spin_job(), **{'X-Zerovm-Deferred': 'always'})
    assert resp.status_code == 202, resp.text
    name = resp.text.strip().rpartition('/')[2]
    assert until(lambda: post(conn, spin_job('1')).status_code == 503)     # it spins
    account = urllib.parse.urlsplit(url).path.split('/')[2]
    conn.put_object('.zvm', name + '.cancel', b'stop\n', headers={
        deferred.CANCEL_MARK: deferred._cancel_mark(account, '.zvm', name)})

    def looked() -> int:        # the job's proxy's HEADs of the marker, as stored
        return sum(1 for line in storage_requests(cluster, '.zvm')
                   if '"HEAD ' in line and f'/{name}.cancel' in line and '" 200 ' in line)
    assert until(lambda: looked() >= 2), storage_requests(cluster, '.zvm')[-5:]
    state = f'{url}/.zvm/{name}.state'
    cancel = requests.delete(state, headers={'X-Auth-Token': token}, timeout=WAIT)
    assert cancel.status_code == 202, cancel.text       # it was running still

    stored = json.loads(until(lambda: result(conn, name)) or b'{}')
    assert stored['X-Nexe-Status'] == 'cancelled', stored
    assert until(lambda: not {name + '.state', name + '.cancel'} & {
        o['name'] for o in conn.get_container('.zvm')[1]})

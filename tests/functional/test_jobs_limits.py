"""Limits on a small cluster of its own: full worker pools, wall-clock, fuel and output limits.

Every object server runs one node at a time and queues none
(``zerovm_maxpool = 1``, ``zerovm_maxqueue = 0``); a node may run for 10 s
(the proxy's ``zerovm_timeout``), so tests/programs/loop.c, which spins
forever, is a long job of a known length whatever the machine's speed: long
enough that, on a loaded machine too, a second loop and a third job are sent
while the first still holds its server, and a fuel-capped run ends by its fuel.
Object server 2 also caps the fuel of its nodes (``zerovm_fuel``): the
objects "long" (replicas on servers 0 and 1) and "short" (first replica on
server 2) are picked by their placement.  An output holds at most
:data:`MAX_OUTPUT` bytes (``zerovm_maxoutput``).
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.request

import pytest
import requests
from accounts import until
from swiftclient import ClientException, Connection
from test_fair_share import workers_busy

from zerocloud.devcluster import USERS, DevCluster

TIMEOUT = 10
FUEL = 50_000_000
MAX_OUTPUT = 64
POOL = ('[filter:zerocloud]\nzerovm_maxpool = 1\nzerovm_maxqueue = 0\n'
        f'zerovm_maxoutput = {MAX_OUTPUT}\n')
TEXT = b'one two three\n'


@pytest.fixture(scope='module')
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> DevCluster:
    cluster = DevCluster(tmp_path_factory.mktemp('limits'), extra_conf={
        'proxy': f'[filter:zerocloud]\nzerovm_timeout = {TIMEOUT}\n',
        'object0': POOL, 'object1': POOL, 'object2': POOL + f'zerovm_fuel = {FUEL}\n'})
    request.addfinalizer(cluster.stop)
    cluster.start()
    return cluster


@pytest.fixture(scope='module')
def objects(cluster: DevCluster) -> dict[str, str]:
    """Names of objects in container "data" by their servers (see the module docstring)."""
    def first(wanted) -> str:
        return next(f'obj-{i}' for i in range(1000)
                    if wanted([n['id'] for n in cluster.object_nodes('AUTH_test', 'data',
                                                                     f'obj-{i}')[1]]))
    return {'long': first(lambda ids: sorted(ids) == [0, 1]),
            'short': first(lambda ids: ids[0] == 2)}


@pytest.fixture(scope='module')
def conn(cluster: DevCluster, objects: dict[str, str], guest) -> Connection:
    """test:tester's connection; container "bin" holds loop and wc, "data" the objects."""
    conn = Connection(authurl=cluster.auth_url, user=cluster.user, key=USERS[cluster.user][0],
                      retries=0)
    conn.put_container('bin')
    for name in ('loop', 'wc', 'args_env'):
        conn.put_object('bin', name, guest(name).read_bytes())
    conn.put_container('data')
    for name in objects.values():
        conn.put_object('data', name, TEXT)
    return conn


def post_job(conn: Connection, program: str, data: str,
             stdout: str | None = None, args: tuple[str, ...] = ()) -> requests.Response:
    url, token = conn.get_auth()
    out = {'name': 'stdout', **({'path': stdout} if stdout else {})}
    job = [{'name': program, 'exec': {'path': f'swift://~/bin/{program}', 'args': list(args)},
            'devices': [{'name': 'stdin', 'path': f'swift://~/data/{data}'}, out]}]
    return requests.post(url, data=json.dumps(job), timeout=60, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/json'})


def where(node: dict) -> str:
    return f'{node["ip"]}:{node["port"]}/{node["device"]}'


def spinning(cluster: DevCluster, node: dict) -> bool:
    """True while a sandbox worker of ``node``'s object server uses CPU (a loop runs)."""
    return workers_busy(cluster, f'object{node["id"]}') > 0


def test_a_full_pool_sends_the_node_to_another_replica(
        cluster: DevCluster, objects: dict[str, str], conn: Connection) -> None:
    data = objects['long']
    _part, nodes = cluster.object_nodes('AUTH_test', 'data', data)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(post_job, conn, 'loop', data)
        assert until(lambda: spinning(cluster, nodes[0]))    # it fills nodes[0]'s pool
        second = pool.submit(post_job, conn, 'loop', data)
        assert until(lambda: spinning(cluster, nodes[1]))    # and the second one nodes[1]'s
        busy = post_job(conn, 'wc', data)
        first, second = first.result(), second.result()
    assert first.headers['X-Nexe-Host'] == where(nodes[0])
    assert second.headers['X-Nexe-Host'] == where(nodes[1])
    # both replicas busy, the handoff has no copy: nobody can run it now
    assert busy.status_code == 503, busy.text
    assert busy.headers['X-Nexe-Status'] == 'unavailable'
    assert busy.headers['X-Nexe-Host'] == ''
    assert 'Slot not available' in busy.headers['X-Nexe-Error']
    assert 'Slot not available' in busy.text
    # the slots are free again
    resp = post_job(conn, 'wc', data)
    assert resp.status_code == 200, resp.text
    assert resp.headers['X-Nexe-Host'] == where(nodes[0])


def test_healthcheck_is_answered_while_a_long_job_runs(
        cluster: DevCluster, objects: dict[str, str], conn: Connection) -> None:
    _part, nodes = cluster.object_nodes('AUTH_test', 'data', objects['long'])
    health = f'http://{nodes[0]["ip"]}:{nodes[0]["port"]}/healthcheck'
    answered_meanwhile = 0      # answers that came while the node still ran
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        job = pool.submit(post_job, conn, 'loop', objects['long'])
        while not job.done():
            with urllib.request.urlopen(health, timeout=30) as answer:
                assert answer.read() == b'OK'
            answered_meanwhile += not job.done()
            time.sleep(0.02)
        resp = job.result()
    assert resp.status_code == 504, resp.text            # the wall-clock limit stopped it
    assert resp.headers['X-Nexe-Status'] == 'timeout'
    assert resp.headers['X-Nexe-Host'] == where(nodes[0])
    assert float(resp.headers['X-Nexe-Cdr-Line'].split(', ')[1]) >= TIMEOUT
    # answered again and again, not once the node ended: the server's event loop
    # is never held by a node (no bound on the latency: the machine may be loaded)
    assert answered_meanwhile >= 3


def test_fuel_exhausted_is_reported_and_stores_nothing(
        cluster: DevCluster, objects: dict[str, str], conn: Connection) -> None:
    resp = post_job(conn, 'loop', objects['short'], stdout='swift://~/data/never')
    assert resp.status_code == 422, resp.text
    assert resp.headers['X-Nexe-Status'] == 'fuel'
    assert resp.headers['X-Nexe-Host'] == where(cluster.object_devices[2])
    assert resp.headers['X-Nexe-Error'].startswith('loop: ')
    assert int(resp.headers['X-Nexe-Cdr-Line'].split(', ')[2].split()[0]) >= FUEL
    with pytest.raises(ClientException) as err:
        conn.head_object('data', 'never')
    assert err.value.http_status == 404


def test_an_output_cut_by_its_quota_fails_and_stores_nothing(
        objects: dict[str, str], conn: Connection) -> None:
    """args_env prints a few hundred bytes with stdio, flushed once at exit: the write
    is cut at ``zerovm_maxoutput``, stdio ignores that (and the EDQUOT of its retry)
    and the program exits 0.  The node is a ``quota`` failure, and no cut object is
    stored; an output that fits is."""
    resp = post_job(conn, 'args_env', objects['long'], stdout='swift://~/data/cut',
                    args=('x' * 100,))
    assert resp.status_code == 422, resp.text
    assert resp.headers['X-Nexe-Status'] == 'quota'
    assert resp.headers['X-Nexe-Retcode'] == '0', resp.headers
    assert 'cut short' in resp.headers['X-Nexe-Error'], resp.headers
    with pytest.raises(ClientException) as err:
        conn.head_object('data', 'cut')
    assert err.value.http_status == 404
    fits = post_job(conn, 'wc', objects['long'], stdout='swift://~/data/fits')
    assert fits.status_code == 200, fits.text
    assert conn.get_object('data', 'fits')[1] == b'%7d %7d %7d\n' % (1, 3, len(TEXT))

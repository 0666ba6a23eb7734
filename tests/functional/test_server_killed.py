"""An object server killed while it runs a node: the job completes on another replica.

A cluster of its own (killing a server must not hurt other tests): two object
servers, two replicas, so the node's data object is on both.  The node
(tests/programs/spin.c with a count that keeps it busy for a few seconds)
reads the object in place and writes ``out/result``; once a sandbox worker of
one server spins, that server is killed (SIGKILL, no clean shutdown).  The
proxy sees the connection break, runs the node again on the other replica,
and stores the output once, whole: nothing of the run that died is stored.
The killed server's sandbox workers end with it (the one that ran the node
would otherwise spin on to its deadline), and its scratch directories go
when it starts again.

The same when only the node's sandbox worker is killed (as by the OOM killer):
the server answers the node ``killed`` as its host's trouble (``host_failure``)
and the proxy runs it again on the other replica, as it does when a server dies.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time

import pytest
import requests
from accounts import account, until
from cluster_logs import executed
from swiftclient import Connection

from zerocloud.devcluster import DevCluster, proc_state

WAIT = 120
SECONDS = 3                 # how long the node should run (calibrated below)


@pytest.fixture(scope='module')
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> DevCluster:
    cluster = DevCluster(tmp_path_factory.mktemp('killed'), replicas=2, object_servers=2,
                         sysimages={})
    request.addfinalizer(cluster.stop)
    cluster.start()
    return cluster


@pytest.fixture(scope='module')
def conn(cluster: DevCluster, guest) -> Connection:
    conn = account(cluster, guest)
    conn.put_container('out')
    return conn


def job(count: int) -> str:
    return json.dumps([{'name': 'spin',
                        'exec': {'path': 'swift://~/bin/spin', 'args': [str(count)]},
                        'devices': [{'name': 'stdin', 'path': 'swift://~/data/obj'},
                                    {'name': 'stdout', 'path': 'swift://~/out/result'}]}])


def post(conn: Connection, body: str) -> requests.Response:
    url, token = conn.get_auth()
    return requests.post(url, data=body, timeout=WAIT, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0'})


def count_for(conn: Connection, seconds: float) -> int:
    """A spin count that keeps a node busy about ``seconds`` on this machine now."""
    count = 10_000_000
    while True:
        started = time.monotonic()
        resp = post(conn, job(count))
        took = time.monotonic() - started
        assert resp.status_code == 200, resp.text
        if took > seconds / 2:
            return int(count * seconds / took)
        count *= 4


def spinning_server(cluster: DevCluster, names: list[str],
                    before: dict[str, dict[int, int]]) -> str | None:
    """The object server that holds a node of ours (its scratch directory,
    ``zerocloud.object.scratch``) one of whose workers used CPU since ``before``, the
    last sample (updated): a worker that started since is compared from its first
    sample on; a restarted server's workers starting up, busy while the node runs on
    the other, are not taken for it."""
    time.sleep(0.3)
    found = None
    for name in names:
        after = cluster.usage(name).children
        last, before[name] = before.get(name), after
        if found is None and last is not None and any(
                t > last[pid] for pid, t in after.items() if pid in last) and list(
                cluster.devices_dir(cluster.server(name)).glob('*/tmp/zerocloud-node-*')):
            found = name
    return found


def server_running(cluster: DevCluster, names: list[str],
                   running: concurrent.futures.Future) -> str:
    """The server that runs the job's node, waited for while the job is running."""
    deadline = time.monotonic() + WAIT
    victim = None
    before: dict[str, dict[int, int]] = {}
    while victim is None and not running.done() and time.monotonic() < deadline:
        victim = spinning_server(cluster, names, before)
    assert victim is not None, 'the node never ran'
    return victim


def completed_elsewhere(resp: requests.Response, conn: Connection, names: list[str],
                        victim: str, count: int) -> str:
    """Check that the job succeeded on the server other than ``victim`` and stored its
    one result; that server's name."""
    assert resp.status_code == 200, resp.text
    assert resp.headers['X-Nexe-Status'] == 'ok'
    survivor, = (n for n in names if n != victim)
    assert survivor[-1] in resp.headers['X-Nexe-Host'].rpartition('/')[2]     # obj<i>
    assert conn.get_object('out', 'result')[1] == f'spun {count}\n'.encode()
    assert [o['name'] for o in conn.get_container('out')[1]] == ['result']
    return survivor


def test_a_server_killed_mid_node_the_job_completes_on_the_other_replica(
        cluster: DevCluster, conn: Connection) -> None:
    count = count_for(conn, SECONDS)
    conn.delete_object('out', 'result')
    names = ['object0', 'object1']
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        running = ex.submit(post, conn, job(count))
        victim = server_running(cluster, names, running)
        workers = cluster.usage(victim).children
        cluster.kill_server(victim)
        resp = running.result()
    survivor = completed_elsewhere(resp, conn, names, victim, count)
    ran = [line for line in executed(cluster, 'data') if ' 200 ok ' in line]
    assert any(line.startswith(survivor) for line in ran)
    assert until(lambda: not [pid for pid in workers if proc_state(pid) is not None])
    cluster.start_server(victim)             # back, with nothing of the node on its disk
    assert not list(cluster.devices_dir(cluster.server(victim)).glob('*/tmp/zerocloud-*'))


def test_a_worker_killed_mid_node_the_job_completes_on_the_other_replica(
        cluster: DevCluster, conn: Connection) -> None:
    """Before: the node ended ``killed`` (503) although the other replica could run it."""
    count = count_for(conn, SECONDS)
    conn.delete_object('out', 'result')
    names = ['object0', 'object1']
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        running = ex.submit(post, conn, job(count))
        victim = server_running(cluster, names, running)
        workers = [pid for pid in cluster.usage(victim).children
                   if b'zvm_core.pool.worker' in _cmdline(pid)]
        assert workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        resp = running.result()
    completed_elsewhere(resp, conn, names, victim, count)


def _cmdline(pid: int) -> bytes:
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return f.read()
    except OSError:
        return b''

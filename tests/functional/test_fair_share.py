"""Two accounts on one object server: one account's nodes never take every worker.

A cluster of its own: one object server with 3 workers and a queue of 2
(``zerovm_maxpool``, ``zerovm_maxqueue``), of which one account may hold 2
running and 1 waiting (``zerovm_account_maxpool``, ``zerovm_account_maxqueue``);
a node blocked on a link gives its worker back after 2 s without data
(``zerovm_link_wait``).  test:tester (AUTH_test) runs the attack of issue 15:
a node that spins and never writes, connected to nodes that read from it
(tests/programs/graph_stream.c blocks reading ``/dev/in/spin``), for the 8 s
a node may run.  Before the per-account share that job held every worker and
queue place, and test2:tester2's one-node job got ``503 Slot not available``.
"""

from __future__ import annotations

import concurrent.futures
import json
import time

import pytest
import requests
from accounts import account
from cluster_logs import executed
from swiftclient import Connection

from zerocloud.devcluster import DevCluster

WAIT = 60
OBJECT = ('[filter:zerocloud]\nzerovm_timeout = 8\nzerovm_maxpool = 3\nzerovm_maxqueue = 2\n'
          'zerovm_account_maxpool = 2\nzerovm_account_maxqueue = 1\nzerovm_link_wait = 2\n')
READERS = 4


@pytest.fixture(scope='module')
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> DevCluster:
    cluster = DevCluster(tmp_path_factory.mktemp('fair'), replicas=1, object_servers=1,
                         sysimages={}, extra_conf={
                             'proxy': '[filter:zerocloud]\nzerovm_timeout = 8\n',
                             'object': OBJECT})
    request.addfinalizer(cluster.stop)
    cluster.start()
    return cluster


@pytest.fixture(scope='module')
def accounts(cluster: DevCluster, guest) -> dict[str, Connection]:
    """A connection per account, each with bin/spin and bin/graph_stream."""
    return {user: account(cluster, guest, user, ('spin', 'graph_stream'))
            for user in ('test:tester', 'test2:tester2')}


def post(conn: Connection, job: list) -> requests.Response:
    url, token = conn.get_auth()
    return requests.post(url, data=json.dumps(job), timeout=WAIT, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0'})


def spin(*args: str, **more) -> dict:
    return {'name': 'spin', 'exec': {'path': 'swift://~/bin/spin', 'args': list(args)},
            'devices': [{'name': 'stdout'}], **more}


def attack() -> list:
    """A node that spins forever connected to nodes that wait to read from it."""
    readers = [f'r{i}' for i in range(READERS)]
    return [spin(connect=readers)] + [
        {'name': r, 'devices': [{'name': 'stdout'}],
         'exec': {'path': 'swift://~/bin/graph_stream', 'args': ['spin', '-', '10', '0']}}
        for r in readers]


def workers_busy(cluster: DevCluster, name: str = 'object0') -> int:
    """Sandbox workers of server ``name`` that used CPU in the last 0.3 s."""
    before = cluster.usage(name).children
    time.sleep(0.3)
    after = cluster.usage(name).children
    return sum(1 for pid, t in after.items() if t > before.get(pid, t))


def test_an_account_that_holds_its_share_leaves_workers_to_another(
        cluster: DevCluster, accounts: dict[str, Connection]) -> None:
    """The readers that got a worker end 2 s without data (``zerovm_link_wait``),
    those beyond the account's share get 503 (the proxy sends them again), and
    the other account's node runs meanwhile."""
    attacker, other = accounts['test:tester'], accounts['test2:tester2']
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        job = ex.submit(post, attacker, attack())
        deadline = time.monotonic() + WAIT
        while not workers_busy(cluster) and time.monotonic() < deadline:
            pass
        resp = post(other, [spin('1000')])          # while the attack holds its share
        done = job.result()
    assert resp.status_code == 200, resp.text
    assert resp.content == b'spun 1000\n'
    assert done.status_code == 504, done.text        # the spinner's wall-clock limit
    assert done.headers['X-Nexe-Status'].startswith('timeout,')
    lines = executed(cluster, '.zerocloud')
    theirs = [line for line in lines if '/AUTH_test/' in line]
    assert [line for line in lines if '/AUTH_test2/' in line and ' 200 ok ' in line]
    assert not [line for line in lines if '/AUTH_test2/' in line and ' 503 ' in line]
    assert [line for line in theirs if ' 503 ' in line]        # beyond its share
    readers = [line for line in theirs if '/r' in line and ' 200 ' in line]
    # the first ends for want of data; the job has failed then, and the links of
    # the others are cut (killed), or they too wait in vain (timeout)
    assert any(' 200 timeout ' in line for line in readers), readers
    assert all(' 200 timeout ' in line or ' 200 killed ' in line for line in readers), readers

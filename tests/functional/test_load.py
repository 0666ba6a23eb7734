"""Many concurrent jobs from two accounts at full pools: only 503s for what does not
fit, the hub keeps answering, and nothing is left behind.

A cluster of its own: two object servers (one replica) that run one node and
queue two (``zerovm_maxpool``, ``zerovm_maxqueue``), one account at most one
waiting (``zerovm_account_maxqueue``).  test:tester and test2:tester2 send
one-node jobs (tests/programs/spin.c reading an object in place: each
account's object is on one server) 16 at a time while ``/healthcheck`` of
the proxy and of the object servers is polled.
Before (after a warm-up) and after the load, once the workers are idle: each
server's open descriptors and sandbox workers, and the object disks' tmp.
``bench/load.py`` prints the same with timings and memory.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from accounts import account

from zerocloud.devcluster import DevCluster

OBJECT = ('[filter:zerocloud]\nzerovm_maxpool = 1\nzerovm_maxqueue = 2\n'
          'zerovm_account_maxqueue = 1\n')
ACCOUNTS = ('test:tester', 'test2:tester2')
JOBS = 16                       # per account
SERVERS = ('proxy', 'object0', 'object1')
SLACK = 2                       # descriptors a server may hold more (a pooled connection)


@pytest.fixture(scope='module')
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> DevCluster:
    cluster = DevCluster(tmp_path_factory.mktemp('load'), replicas=1, object_servers=2,
                         sysimages={}, extra_conf={'object': OBJECT})
    request.addfinalizer(cluster.stop)
    cluster.start()
    return cluster


@pytest.fixture(scope='module')
def auths(cluster: DevCluster, guest) -> dict[str, tuple[str, str]]:
    """(storage URL, token) per account, each with bin/spin and data/obj."""
    return {user: account(cluster, guest, user).get_auth() for user in ACCOUNTS}


def send(auth: tuple[str, str], count: int) -> tuple[int | str, str]:
    """(status, body) of a one-node job, or ('dropped', why) without an answer."""
    job = [{'name': 'spin', 'exec': {'path': 'swift://~/bin/spin', 'args': [str(count)]},
            'devices': [{'name': 'stdin', 'path': 'swift://~/data/obj'}, {'name': 'stdout'}]}]
    try:
        with requests.post(auth[0], data=json.dumps(job), timeout=120, headers={
                'X-Auth-Token': auth[1], 'X-Zerovm-Execute': '1.0',
                'Connection': 'close'}) as resp:
            return resp.status_code, resp.text
    except requests.RequestException as e:
        return 'dropped', repr(e)


def state(cluster: DevCluster) -> dict[str, tuple[int, int]]:
    """Server -> (open descriptors, sandbox workers), once no worker uses CPU."""
    for _ in range(120):
        before = {name: cluster.usage(name).children for name in SERVERS[1:]}
        time.sleep(0.5)
        if all(cluster.usage(name).children == before[name] for name in SERVERS[1:]):
            break
    return {name: (cluster.usage(name).fds, len(cluster.usage(name).children))
            for name in SERVERS}


def test_two_accounts_at_full_pools_get_answers_and_leave_nothing_behind(
        cluster: DevCluster, auths: dict[str, tuple[str, str]]) -> None:
    for user in ACCOUNTS:                       # warm: workers, caches, connections
        assert send(auths[user], 1000)[0] == 200
    before = state(cluster)
    stop, health = threading.Event(), collections.Counter()

    def poll() -> None:
        ports = {s.name: s.port for s in cluster.servers if s.name in SERVERS}
        while not stop.wait(0.05):
            for name, port in ports.items():
                try:
                    with requests.get(f'http://127.0.0.1:{port}/healthcheck', timeout=30,
                                      headers={'Connection': 'close'}) as resp:
                        ok = resp.ok
                except requests.RequestException:
                    ok = False
                health[name, ok] += 1
    poller = threading.Thread(target=poll)
    poller.start()
    try:
        with ThreadPoolExecutor(16) as ex:
            answers = list(ex.map(lambda item: (item[0], send(auths[item[0]], item[1])),
                                  [(user, 20_000_000 if i % 2 else 1000)
                                   for i in range(JOBS) for user in ACCOUNTS]))
    finally:
        stop.set()
        poller.join()
    statuses = collections.Counter((user, status) for user, (status, _) in answers)
    assert {status for _, status in statuses} <= {200, 503}, (statuses, answers)
    assert all(statuses[user, 200] for user in ACCOUNTS), statuses
    assert any(statuses[user, 503] for user in ACCOUNTS), statuses       # the pools were full
    assert all('Slot not available' in body for _, (status, body) in answers if status == 503)
    assert not [key for key in health if not key[1]], health
    assert all(health[name, True] for name in SERVERS), health
    after = state(cluster)
    for name in SERVERS:
        fds, workers = after[name]
        assert fds <= before[name][0] + SLACK, (name, before[name], after[name])
        assert workers == before[name][1], (name, before[name], after[name])
    assert not list(cluster.dir.glob('srv/*/*/tmp/*'))

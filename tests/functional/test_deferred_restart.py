"""A deferred job whose proxy restarts: its state is in Swift, and it ends reported lost
(never silently gone).  The session cluster's proxy is restarted in the middle."""

from __future__ import annotations

import json
import time

import requests
from accounts import deferred_state, post_deferred
from swiftclient import Connection

from zerocloud.devcluster import DevCluster

WAIT = 60.0


def wait_for(what: str, probe):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.2)
    raise AssertionError(f'{what} did not happen within {WAIT} s')


def test_a_deferred_job_is_reported_lost_after_a_proxy_restart(
        swift_cluster: DevCluster, conn: Connection, make_container, guest) -> None:
    container = make_container()
    conn.put_object(container, 'spin', guest('spin').read_bytes())
    job = [{'name': 'spin', 'exec': {'path': f'swift://~/{container}/spin'},
            'devices': [{'name': 'stdout'}]}]
    name = post_deferred(conn, container, job)
    url, token = conn.get_auth()
    assert wait_for('the job state in Swift',
                    lambda: deferred_state(conn, container, name))['state'] == 'running'
    swift_cluster.kill_server('proxy')
    try:
        time.sleep(0.5)
    finally:
        swift_cluster.start_server('proxy')

    def result():
        got = requests.get(f'{url}/{container}/{name}.headers', timeout=60,
                           headers={'X-Auth-Token': token})
        return got if got.status_code == 200 else None
    stored = wait_for('the lost job report', result).json()
    assert stored['Status'] == '503 Service Unavailable'
    assert stored['X-Nexe-Status'] == 'lost'
    assert stored['X-Nexe-Error'].startswith(
        'the proxy running this deferred job stopped before it finished (its process ')
    assert 'is gone)' in stored['X-Nexe-Error']       # at once, not after three heartbeats
    assert conn.get_object(container, name)[1].startswith(b'the proxy running this deferred')
    assert deferred_state(conn, container, name) is None     # settled: no state left behind


def test_a_lost_result_is_never_stored_over_the_job_s_own_body(
        conn: Connection, make_container) -> None:
    """The job's proxy, cut off, stored its body and not yet its ``.headers`` when a
    reader found its state stale: Swift refuses the lost body (``If-None-Match: *``),
    the job's ``.headers`` will replace the lost one (zerocloud.deferred._store_lost)."""
    container, name = make_container(), 'job-' + '7' * 32
    conn.put_object(container, name + '.state', json.dumps(
        {'state': 'running', 'heartbeat': 10.0, 'updated': time.time() - 100,
         'proxy': 'elsewhere:1'}).encode())
    conn.put_object(container, name, b'out\n')
    url, token = conn.get_auth()
    got = requests.get(f'{url}/{container}/{name}.headers', timeout=60,
                       headers={'X-Auth-Token': token})
    assert got.status_code == 200 and got.json()['X-Nexe-Status'] == 'lost'
    assert conn.get_object(container, name)[1] == b'out\n'

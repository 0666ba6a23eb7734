"""An attacker's review (review20) on the real cluster: what a deferred job of test2 (an
admin of AUTH_test2 only) may still do once it runs without its client.

A deferred job outlives its request: an ACL its owner revokes while it runs must
hold for what it writes afterwards, as it would for the user's own PUT then."""

from __future__ import annotations

import pytest
import requests
from accounts import deferred_state, post_deferred, until
from swiftclient import Connection

from zerocloud.devcluster import DevCluster


def names(conn: Connection, container: str) -> list[str]:
    return [o['name'] for o in conn.get_container(container)[1]]


@pytest.fixture
def dropbox(conn: Connection, connect, make_container, guest) -> dict:
    """AUTH_test's drop box that test2 may write (not read), and test2's own container
    with a program that writes a line, then spins until the node's timeout."""
    drop = make_container('drop', headers={'X-Container-Write': 'test2:tester2'})
    other = connect('test2:tester2')
    own = make_container('own', connection=other)
    other.put_object(own, 'spinning', guest('native_hostile').read_bytes())
    return {'other': other, 'drop': drop, 'own': own}


def test_a_deferred_job_stores_nothing_where_its_write_acl_was_revoked_meanwhile(
        swift_cluster: DevCluster, conn: Connection, dropbox: dict) -> None:
    """test2's deferred job writes into AUTH_test's drop box (``"store": "always"``: even
    when the node fails) from a node that spins until the cluster's timeout.  While it
    spins, AUTH_test revokes test2's write ACL: test2's own PUT is refused from then
    on, and so must the job's output be when the node ended (the job kept the
    container's ACL of its start, Swift's per-request cache, for as long as it ran)."""
    other, drop, own = dropbox['other'], dropbox['drop'], dropbox['own']
    job = [{'name': 'spin', 'exec': {'path': f'swift://~/{own}/spinning', 'args': ['spinning']},
            'devices': [{'name': 'stdout', 'path': f'swift://AUTH_test/{drop}/out',
                         'store': 'always'}]}]
    name = post_deferred(other, own, job)
    url, token = other.get_auth()
    running = until(lambda: (deferred_state(other, own, name) or {}).get('nodes', {})
                    .get('running'))
    assert running == 1, deferred_state(other, own, name)
    conn.post_container(drop, {'X-Container-Write': ''})
    mine = requests.put(f'{url.rsplit("/", 1)[0]}/AUTH_test/{drop}/mine', data=b'x',
                        timeout=30, headers={'X-Auth-Token': token})
    assert mine.status_code == 403, mine.text
    state = deferred_state(other, own, name)            # the node spins on: nothing stored yet
    assert state['nodes']['done'] + state['nodes']['failed'] == 0, state
    result = until(lambda: requests.get(f'{url}/{own}/{name}.headers', timeout=30, headers={
        'X-Auth-Token': token}), seconds=150)
    assert result.status_code == 200, result.text
    assert names(conn, drop) == []
    stored = result.json()
    assert stored['X-Nexe-Status'] == 'timeout', stored
    assert (f'could not store swift://AUTH_test/{drop}/out: Swift answered 403 Forbidden'
            in stored['X-Nexe-Error']), stored

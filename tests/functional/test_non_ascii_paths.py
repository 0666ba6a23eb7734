"""Jobs POSTed to a container or object with a non-ASCII or percent-encoded name.  The
proxy took the names from the request's path as WSGI strings (UTF-8 bytes as Latin-1)
and quoted them again: it looked for ``dÃ©jÃ ...``, a container that does not exist.
A deferred job's state and result now go to the container it was POSTed to, and a
DELETE of its state (the name URL-encoded, as ``zc cancel`` sends it) cancels it; a job
POSTed to an object runs over it."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import requests
from accounts import account, until
from swiftclient import ClientException, Connection

from zerocloud.devcluster import DevCluster

WAIT = 30


def stored(conn: Connection, container: str, name: str) -> bytes | None:
    try:
        return conn.get_object(container, name)[1]
    except ClientException:
        return None


def test_a_deferred_job_in_a_non_ascii_container_is_cancelled(swift_cluster: DevCluster,
                                                              guest) -> None:
    conn = account(swift_cluster, guest)
    container = f'déjà vu %41 {uuid.uuid4().hex[:8]}'
    conn.put_container(container)
    url, token = conn.get_auth()
    job = [{'name': 'spin', 'exec': {'path': 'swift://~/bin/spin'},       # until stopped
            'devices': [{'name': 'stdin', 'path': 'swift://~/data/obj'}, {'name': 'stdout'}]}]
    try:
        resp = requests.post(f'{url}/{quote(container)}', data=json.dumps(job), timeout=WAIT,
                             headers={'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0',
                                      'X-Zerovm-Deferred': 'always'})
        assert resp.status_code == 202, resp.text
        assert resp.text.startswith(f'swift://AUTH_test/{quote(container)}/job-'), resp.text
        name = resp.text.strip().rpartition('/')[2]
        assert until(lambda: stored(conn, container, name + '.state'))
        cancel = requests.delete(f'{url}/{quote(container)}/{name}.state', timeout=WAIT,
                                 headers={'X-Auth-Token': token})
        assert cancel.status_code == 202, cancel.text
        headers = json.loads(until(lambda: stored(conn, container, name + '.headers')) or b'{}')
        assert headers.get('X-Nexe-Status') == 'cancelled', headers
        assert until(lambda: not {name + '.state', name + '.cancel'} & {
            o['name'] for o in conn.get_container(container)[1]})
    finally:
        for obj in conn.get_container(container, full_listing=True)[1]:
            conn.delete_object(container, obj['name'])
        conn.delete_container(container)


def test_a_job_posted_to_a_non_ascii_object_runs_over_it(swift_cluster: DevCluster,
                                                         guest) -> None:
    """POSTed to an object, a job runs over that object (its path-less stdin): named
    from the WSGI path, ``déjà`` was looked up as ``dÃ©jÃ``."""
    conn = account(swift_cluster, guest, programs=('cat',))
    container, obj = f'déjà {uuid.uuid4().hex[:8]}', 'été %41.txt'
    conn.put_container(container)
    conn.put_object(container, obj, b'over the object\n')
    url, token = conn.get_auth()
    job = [{'name': 'cat', 'exec': {'path': 'swift://~/bin/cat'},
            'devices': [{'name': 'stdin'}, {'name': 'stdout'}]}]
    try:
        resp = requests.post(f'{url}/{quote(container)}/{quote(obj)}', data=json.dumps(job),
                             timeout=WAIT, headers={'X-Auth-Token': token,
                                                    'X-Zerovm-Execute': '1.0'})
        assert (resp.status_code, resp.content) == (200, b'over the object\n'), resp.text
    finally:
        conn.delete_object(container, obj)
        conn.delete_container(container)

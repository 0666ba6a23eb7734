"""An attacker's review (review23) on the real cluster: test2 (an admin of AUTH_test2
only) may write into AUTH_test's drop box (a write ACL, as Swift allows) and names
what it plants there as deferred jobs' objects (``job-<id>.state``, ``.headers``),
which the proxy reads and acts on for AUTH_test's own requests; and runs a job over
AUTH_test's public container that makes the proxy hold all of it."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests
from cluster_limits import JOB_MAX_INPUTS
from cluster_logs import executed
from swiftclient import Connection


def names(conn: Connection, container: str) -> list[str]:
    return [o['name'] for o in conn.get_container(container)[1]]


@pytest.fixture
def dropbox(conn: Connection, connect, make_container) -> dict:
    """AUTH_test's drop box that test2 may write, AUTH_test's URL and token, test2's."""
    drop = make_container('drop', headers={'X-Container-Write': 'test2:tester2'})
    url, token = conn.get_auth()
    return {'drop': drop, 'url': url, 'token': token,
            'other': connect('test2:tester2').get_auth()[1]}


def plant(dropbox: dict, name: str, body: bytes) -> None:
    """test2's PUT of ``name`` into AUTH_test's drop box."""
    resp = requests.put(f'{dropbox["url"]}/{dropbox["drop"]}/{name}', data=body, timeout=60,
                        headers={'X-Auth-Token': dropbox['other']})
    assert resp.status_code == 201, resp.text


def test_an_object_planted_under_a_jobs_state_name_can_be_deleted(
        conn: Connection, dropbox: dict) -> None:
    """Every DELETE of ``job-<id>.state`` was taken for a cancel of that job: 202
    ``cancelling``, one more object (``.cancel``), and the planted object stayed, so
    AUTH_test could empty (and delete) its container never again."""
    drop = dropbox['drop']
    name = f'job-{uuid.uuid4().hex}.state'
    plant(dropbox, name, b'not a state\n')
    resp = requests.delete(f'{dropbox["url"]}/{drop}/{name}', timeout=60,
                           headers={'X-Auth-Token': dropbox['token']})
    assert resp.status_code == 204, resp.text
    assert names(conn, drop) == []
    conn.delete_container(drop)
    conn.put_container(drop)            # for the fixture's teardown


@pytest.mark.parametrize('error', ['x\r\nSet-Cookie: evil=1', 'caf\u00e9 \u20ac'],
                         ids=['line-break', 'not-latin-1'])
def test_a_planted_lost_result_adds_no_header_to_the_owners_cancel(
        conn: Connection, dropbox: dict, error: str) -> None:
    """A cancel of a job reported lost whose proxy runs it still says what the lost
    result said (``X-Nexe-Reported-Lost``).  test2 plants that result with a line
    break in it, and a fresh state: AUTH_test's cancel was answered with test2's
    header (``Set-Cookie``); a character past Latin-1 dropped the connection."""
    drop = dropbox['drop']
    job = f'job-{uuid.uuid4().hex}'
    plant(dropbox, f'{job}.headers', json.dumps(
        {'Status': '503 Service Unavailable', 'X-Nexe-Status': 'lost',
         'X-Nexe-Error': error}).encode())
    now = time.time()
    plant(dropbox, f'{job}.state', json.dumps(
        {'state': 'running', 'heartbeat': 10.0, 'updated': now, 'moved': now,
         'proxy': 'elsewhere.invalid:1'}).encode())
    resp = requests.delete(f'{dropbox["url"]}/{drop}/{job}.state', timeout=60,
                           headers={'X-Auth-Token': dropbox['token']})
    assert resp.status_code == 202, resp.text
    said = resp.headers['X-Nexe-Reported-Lost']
    assert said.isascii() and '\r' not in said and '\n' not in said, said
    assert 'Set-Cookie' not in resp.headers and not resp.cookies
    plant(dropbox, f'{job}.state', b'no longer a state')    # deletable again


def test_a_job_over_a_public_container_cannot_spool_it_on_the_proxys_disk(
        swift_cluster, conn: Connection, connect, make_container) -> None:
    """AUTH_test's public container of three objects of 14 MiB; test2 runs a node over
    each, attached to an object of its own: every one of them travelled through the
    proxy and waited on its disk for the whole job, unbounded (one job over a public
    container of a TB filled the disk every user's outputs wait on).  Past the
    cluster's zerovm_job_maxinputs (40 MiB) it is a 413 before any node runs; read in
    place, the same objects run."""
    public = make_container('public', headers={'X-Container-Read': '.r:*,.rlistings'})
    for i in range(3):
        conn.put_object(public, f'part-{i}', b'x' * (14 << 20))
    other = connect('test2:tester2')
    own = make_container('own', connection=other)
    other.put_object(own, 'small', b'small\n')
    url, token = other.get_auth()

    def run(attach: str) -> requests.Response:
        job = [{'name': 'p', 'attach': attach,
                'exec': {'path': 'file://python3:python3', 'args': ['-c', 'print(1)']},
                'devices': [{'name': 'python3'},
                            {'name': 'stdin', 'path': f'swift://AUTH_test/{public}/*'},
                            {'name': 'input', 'path': f'swift://~/{own}/small'},
                            {'name': 'stdout'}]}]
        return requests.post(url, data=json.dumps(job), timeout=120, headers={
            'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0',
            'Content-Type': 'application/json'})
    resp = run('input')
    assert resp.status_code == 413, resp.text
    assert resp.text.startswith("this job's objects sent along would hold "), resp.text
    assert f'more than zerovm_job_maxinputs ({JOB_MAX_INPUTS} bytes)' in resp.text
    assert executed(swift_cluster, own) == []
    resp = run('stdin')
    assert resp.status_code == 200, resp.text
    assert resp.content == b'1\n' * 3

"""An attacker's review (review24) on the real cluster, of what this session changed:
deferred jobs' cancel (a ``.cancel`` marked with system metadata naming its job), the
SQL front end (``--out`` naming an input, records ending in CR alone), and the
proxy's spool."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import requests
from swiftclient import Connection


def _job() -> bytes:
    """A job that runs until cancelled."""
    return json.dumps([{'name': 'spin', 'exec': {'path': 'file://python3:python3',
                                                 'args': '-c "while True: pass"'},
                        'devices': [{'name': 'stdout'}]}]).encode()


def test_a_deferred_job_runs_and_cancels_in_a_container_named_past_ascii(
        conn: Connection, make_container) -> None:
    """A deferred job POSTed to a container whose name is not ASCII (``café-…``) was a
    404 saying that container (spelt ``cafÃ©-…``: its WSGI string quoted as UTF-8)
    does not exist, though a job that is not deferred runs there: the deferred code
    quoted the request's WSGI strings as text."""
    container = make_container('caf\u00e9')
    url, token = conn.get_auth()
    resp = requests.post(f'{url}/{quote(container)}', data=_job(), timeout=120,
                         headers={'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0',
                                  'X-Zerovm-Deferred': 'always',
                                  'Content-Type': 'application/json'})
    assert resp.status_code == 202, resp.text
    where = resp.text.strip()
    assert where.startswith(f'swift://AUTH_test/{quote(container)}/job-'), where
    name = where.rsplit('/', 1)[1]
    base = f'{url}/{quote(container)}/{name}'
    deadline = time.monotonic() + 60
    while requests.head(f'{base}.state', headers={'X-Auth-Token': token},
                        timeout=60).status_code != 200:
        assert time.monotonic() < deadline, 'no state stored'
        time.sleep(0.5)
    cancel = requests.delete(f'{base}.state', headers={'X-Auth-Token': token}, timeout=60)
    assert cancel.status_code == 202, cancel.text
    deadline = time.monotonic() + 60
    while True:
        got = requests.get(f'{base}.headers', headers={'X-Auth-Token': token}, timeout=60)
        if got.status_code == 200:
            break
        assert time.monotonic() < deadline, 'the cancelled job did not stop'
        time.sleep(0.5)
    assert got.json()['X-Nexe-Status'] == 'cancelled', got.text


def _deferred(url: str, token: str, container: str) -> str:
    """Start a job that runs until cancelled, deferred in ``container``: its URL."""
    resp = requests.post(f'{url}/{quote(container)}', data=_job(), timeout=120,
                         headers={'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0',
                                  'X-Zerovm-Deferred': 'always',
                                  'Content-Type': 'application/json'})
    assert resp.status_code == 202, resp.text
    return f'{url}/{quote(container)}/' + resp.text.strip().rsplit('/', 1)[1]


def test_a_cancel_swift_refuses_to_store_says_the_job_runs_on(
        conn: Connection, make_container) -> None:
    """A cancel stores a marker in the job's container: in one at its quota (of
    objects) Swift refuses it, and the cancel was answered with Swift's bare 413
    ``Upload exceeds quota.``, not saying that nothing was cancelled, nor why."""
    container = make_container('quota')
    url, token = conn.get_auth()
    base = _deferred(url, token, container)
    auth = {'X-Auth-Token': token}
    deadline = time.monotonic() + 60
    while requests.head(f'{base}.state', headers=auth, timeout=60).status_code != 200:
        assert time.monotonic() < deadline, 'no state stored'
        time.sleep(0.5)
    count = len(conn.get_container(container)[1])
    conn.post_container(container, {'X-Container-Meta-Quota-Count': str(count)})
    try:
        refused = requests.delete(f'{base}.state', headers=auth, timeout=60)
    finally:
        conn.post_container(container, {'X-Container-Meta-Quota-Count': ''})
        cancelled = requests.delete(f'{base}.state', headers=auth, timeout=60)
    assert cancelled.status_code == 202, cancelled.text
    assert refused.status_code == 413, refused.text
    assert refused.text.startswith(f'{base.rsplit("/", 1)[1]} was not cancelled: it runs on; '
                                   'the marker that stops it could not be stored in '), \
        refused.text
    assert 'Upload exceeds quota' in refused.text

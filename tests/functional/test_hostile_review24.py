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

SPIN = b'#!file://python3:python3\nwhile True:\n    pass\n'


def _job(container: str) -> bytes:
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
    resp = requests.post(f'{url}/{quote(container)}', data=_job(container), timeout=120,
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

"""Set-up shared by the tests that start a cluster of their own: an account with
programs and a data object, and waiting for what should come; a deferred job posted
and its state read (any cluster)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import requests
from swiftclient import ClientException, Connection

from zerocloud.devcluster import USERS, DevCluster

T = TypeVar('T')


def account(cluster: DevCluster, guest: Callable[[str], Path], user: str | None = None,
            programs: Iterable[str] = ('spin',)) -> Connection:
    """``user``'s connection (no retries; the cluster's test user by default) with
    ``bin/<program>`` for each of ``programs`` (tests/programs) and ``data/obj``."""
    user = user or cluster.user
    conn = Connection(authurl=cluster.auth_url, user=user, key=USERS[user][0], retries=0)
    conn.put_container('bin')
    for name in programs:
        conn.put_object('bin', name, guest(name).read_bytes())
    conn.put_container('data')
    conn.put_object('data', 'obj', b'data\n')
    return conn


def until(what: Callable[[], T], seconds: float = 30) -> T:
    """``what()`` once it is true, polling; its last (false) value after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (value := what()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def post_deferred(conn: Connection, container: str, job: list) -> str:
    """POST ``job`` to ``container`` of ``conn``'s account with X-Zerovm-Deferred:
    always: the job's name, from its 202."""
    url, token = conn.get_auth()
    resp = requests.post(f'{url}/{container}', data=json.dumps(job), timeout=120, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0', 'X-Zerovm-Deferred': 'always',
        'Content-Type': 'application/json'})
    assert resp.status_code == 202, resp.text
    return resp.text.strip().rsplit('/', 1)[1]


def deferred_state(conn: Connection, container: str, name: str) -> dict | None:
    """The state of deferred job ``name`` as stored in Swift (None before there is one)."""
    try:
        return json.loads(conn.get_object(container, name + '.state')[1])
    except ClientException:
        return None

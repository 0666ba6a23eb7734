"""Set-up shared by the tests that start a cluster of their own: an account with
programs and a data object, and waiting for what should come."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from swiftclient import Connection

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

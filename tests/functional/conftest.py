"""Fixtures for functional tests: one real local Swift cluster per session.

``swift_cluster`` is a running ``DevCluster`` (proxy, account, container and
three object servers with the ZeroCloud filters, object ring of 2 replicas,
``PROXY_CONF`` added to the proxy's configuration, listing pages of
``LISTING_LIMIT`` names),
started once in a temporary directory and always stopped at the end. Tests
share it, so they make their own containers (``make_container``) and undo
what they break (``kill_object_server`` and ``pause_object_server`` restore
the server after the test).
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
from cluster_limits import JOB_MAX_INPUTS, JOB_MAX_OUTPUT, JOB_MAX_PROGRAMS
from swiftclient import ClientException, Connection
from swiftclient.client import get_auth

from zerocloud.devcluster import USERS, DevCluster

# Short limits, so that tests of deferred jobs (and their loss) and chains run quickly,
# yet long enough that a quick (warm) job on a loaded CI machine still answers within
# them.  interactive_timeout stays below the proxy's wait for a stopped object server's
# "100 Continue" (dispatch.NODE_GRACE, 5 s), after which it runs the node on another
# replica: test_entry_points stops one to keep a job running past it.  A running job's
# state is lost after three heartbeats without an update (15 s: 3 s is a stall a loaded
# machine's proxy may have, and a result read then said 'lost').
PROXY_CONF = ('[filter:zerocloud]\ninteractive_timeout = 3\nchain_timeout = 10\n'
              f'deferred_heartbeat = 5\nzerovm_job_maxoutput = {JOB_MAX_OUTPUT}\n'
              f'zerovm_job_maxprograms = {JOB_MAX_PROGRAMS}\n'
              f'zerovm_job_maxinputs = {JOB_MAX_INPUTS}\n')
# Short listing pages (Swift's default: 10,000), so that a job reads several pages
# of a container of a few objects (tests/functional/test_jobs_scale.py).
LISTING_LIMIT = 400
SWIFT_CONF = f'[swift-constraints]\ncontainer_listing_limit = {LISTING_LIMIT}\n'
# The object servers run what an operator's default runs: auto (native where the host
# can), whatever ZVM_ENGINE the test process has (tests/conftest.py pins the emulated one).
OBJECT_CONF = '[filter:zerocloud]\nzerovm_engine = auto\n'


@pytest.fixture(scope='session')
def swift_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  sysimages) -> DevCluster:
    """The session's running cluster (stopped by a finalizer, even if start fails), with
    the python3 and lua system images."""
    cluster = DevCluster(tmp_path_factory.mktemp('devcluster'),
                         extra_conf={'proxy': PROXY_CONF, 'swift': SWIFT_CONF,
                                     'object': OBJECT_CONF},
                         sysimages={name: sysimages.tar(name) for name in sysimages.images})
    request.addfinalizer(cluster.stop)
    cluster.start()
    return cluster


@pytest.fixture
def connect(swift_cluster: DevCluster) -> Callable[..., Connection]:
    """Factory: a swiftclient Connection for a tempauth user, without retries."""
    def connect(user: str = swift_cluster.user) -> Connection:
        return Connection(authurl=swift_cluster.auth_url, user=user, key=USERS[user][0],
                          retries=0)
    return connect


@pytest.fixture
def conn(connect: Callable[..., Connection]) -> Connection:
    """A Connection as test:tester (admin of AUTH_test)."""
    return connect()


@pytest.fixture
def make_container(conn: Connection) -> Iterator[Callable[..., str]]:
    """Factory: create a uniquely named container; it and its objects go at teardown."""
    made: list[tuple[Connection, str]] = []

    def make_container(prefix: str = 'c', headers: dict | None = None,
                       connection: Connection | None = None) -> str:
        connection = connection or conn
        name = f'{prefix}-{uuid.uuid4().hex[:12]}'
        connection.put_container(name, headers=headers)
        made.append((connection, name))
        return name

    yield make_container
    for connection, name in made:
        try:
            objects = connection.get_container(name, full_listing=True)[1]
            # one bulk delete (Swift's bulk middleware): objects, then the container;
            # one DELETE per object took 47 s for the 260 of a fan-in test
            paths = [f'/{quote(name)}/{quote(obj["name"])}' for obj in objects]
            connection.post_account({'Content-Type': 'text/plain',
                                     'Accept': 'application/json'},
                                    query_string='bulk-delete',
                                    data=''.join(f'{p}\n' for p in [*paths, f'/{quote(name)}']))
        except ClientException:
            pass        # a test may have deleted it, or stopped a server on purpose


@pytest.fixture
def make_object(conn: Connection) -> Callable[..., str]:
    """Factory: PUT an object, return its ETag."""
    def make_object(container: str, name: str, data: bytes = b'', *,
                    connection: Connection | None = None, **kwargs) -> str:
        return (connection or conn).put_object(container, name, data, **kwargs)
    return make_object


@pytest.fixture
def make_account(swift_cluster: DevCluster) -> Callable[[str], tuple[str, str]]:
    """Factory: create account AUTH_<name>; return its storage URL and a token for it.

    The token is the reseller admin's (admin:admin): tempauth's users are
    fixed in the proxy conf, so a new account has none of its own.
    """
    def make_account(name: str) -> tuple[str, str]:
        admin_url, token = get_auth(swift_cluster.auth_url, 'admin:admin',
                                    USERS['admin:admin'][0])
        url = admin_url.rsplit('/', 1)[0] + f'/AUTH_{name}'
        request = urllib.request.Request(url, method='PUT', headers={'X-Auth-Token': token})
        with urllib.request.urlopen(request, timeout=10):
            pass                        # 201 Created (urlopen raises on errors)
        return url, token
    return make_account


@pytest.fixture
def kill_object_server(swift_cluster: DevCluster) -> Iterator[Callable[[int], None]]:
    """Factory: SIGKILL object server i; it is started again after the test."""
    killed: list[int] = []

    def kill(i: int) -> None:
        swift_cluster.kill_object_server(i)
        killed.append(i)

    yield kill
    for i in killed:
        swift_cluster.start_object_server(i)


@pytest.fixture
def pause_object_server(swift_cluster: DevCluster) -> Iterator[Callable[[int], None]]:
    """Factory: SIGSTOP object server i; it is resumed after the test."""
    paused: list[int] = []

    def pause(i: int) -> None:
        swift_cluster.pause_object_server(i)
        paused.append(i)

    yield pause
    for i in paused:
        swift_cluster.resume_object_server(i)

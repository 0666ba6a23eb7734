"""What one job makes the proxy hold on its disk, on the real cluster
(``zerovm_job_maxprograms``, ``JOB_MAX_PROGRAMS`` there): the proxy holds every
distinct program object a job names for the whole job, so a job naming many stored
copies of one program (copies cost only quota) held each copy, up to 256 MiB apiece."""

from __future__ import annotations

import pytest
from cluster_limits import JOB_MAX_PROGRAMS
from swiftclient import Connection
from test_jobs import TEXT, post_job, wc

from zerocloud.devcluster import DevCluster


@pytest.fixture
def copies(conn: Connection, make_container, guest):
    """The wc program padded to a third of the cluster's bound (bytes past its ELF
    segments: it runs the same), stored in a fresh container as wc0, wc1, wc2
    (server-side copies: three pass the bound), some text, an empty container for outputs."""
    bin_, data, out = make_container('bin'), make_container('data'), make_container('out')
    program = guest('wc').read_bytes()
    program += bytes(JOB_MAX_PROGRAMS // 3 + 1 - len(program))
    count = 3
    conn.put_object(bin_, 'wc0', program)
    for i in range(1, count):
        conn.put_object(bin_, f'wc{i}', b'', headers={'X-Copy-From': f'/{bin_}/wc0'})
    conn.put_object(data, 'text', TEXT)
    return {'bin': bin_, 'data': data, 'out': out, 'count': count, 'size': len(program)}


def job(setting: dict, count: int) -> list[dict]:
    """``count`` groups, each running its own copy of wc over the text, storing stdout."""
    return [{'name': f'g{i}', 'exec': {'path': f'swift://~/{setting["bin"]}/wc{i}'},
             'devices': [{'name': 'stdin', 'path': f'swift://~/{setting["data"]}/text'},
                         {'name': 'stdout', 'path': f'swift://~/{setting["out"]}/g{i}'}]}
            for i in range(count)]


def test_a_job_naming_copies_over_the_bound_is_a_413_and_stores_nothing(
        swift_cluster: DevCluster, conn: Connection, copies) -> None:
    count, size = copies['count'], copies['size']
    resp = post_job(conn, job(copies, count))
    assert resp.status_code == 413, resp.text
    assert resp.text.startswith(
        f"this job's programs would hold {3 * size} bytes on the proxy's disk "), resp.text
    assert (f'/{copies["bin"]}/wc{count - 1} is {size} bytes), more than '
            f'zerovm_job_maxprograms ({JOB_MAX_PROGRAMS} bytes)') in resp.text
    assert 'ask the operator to raise zerovm_job_maxprograms' in resp.text
    assert conn.get_container(copies['out'])[1] == []


def test_a_job_within_the_bound_runs(swift_cluster: DevCluster, conn: Connection,
                                     copies) -> None:
    resp = post_job(conn, job(copies, 2))
    assert resp.status_code == 200, resp.text
    for name in ('g0', 'g1'):
        assert conn.get_object(copies['out'], name)[1] == wc(TEXT)

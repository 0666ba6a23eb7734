"""Jobs over whole containers (issue 17) on the session's real cluster.

A wildcard over more objects than one listing page (the session cluster lists
``LISTING_LIMIT`` names a page) and than the old 1,000-node ceiling, objects
of a few bytes put up as one tar through Swift's bulk middleware.  The nodes
travel in batches, one request per object server and batch (the object
servers log an ``execute`` line per batch), and every result comes back in
listing order.
"""

from __future__ import annotations

import io
import tarfile
import uuid

import pytest
import requests
from cluster_logs import batched_ok, executed
from conftest import LISTING_LIMIT
from swiftclient import Connection
from test_jobs import post_job, wc, where

from zerocloud.devcluster import DevCluster
from zvm_core import engines

COUNT = 1100                # > 1,000 nodes and > 2 listing pages


@pytest.fixture
def programs(conn: Connection, make_container, guest) -> dict[str, str]:
    """The wc and args_env guests in a fresh container: name -> swift:// URL."""
    container = make_container('bin')
    for name in ('wc', 'args_env'):
        conn.put_object(container, name, guest(name).read_bytes())
    return {name: f'swift://AUTH_test/{container}/{name}' for name in ('wc', 'args_env')}


def data(i: int) -> bytes:
    return b'word ' * (i % 7) + b'%d\n' % i


def bulk_upload(conn: Connection, container: str, objects: dict[str, bytes]) -> None:
    """Create ``container`` and its objects from one tar (``extract-archive``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as tar:
        for name, body in objects.items():
            info = tarfile.TarInfo(f'{container}/{name}')
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    url, token = conn.get_auth()
    resp = requests.put(f'{url}/?extract-archive=tar', data=buf.getvalue(), timeout=300,
                        headers={'X-Auth-Token': token, 'Accept': 'application/json'})
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result['Number Files Created'] == len(objects), result


def test_a_wildcard_over_many_pages_runs_every_node_in_batches(
        swift_cluster: DevCluster, conn: Connection, programs: dict[str, str]) -> None:
    assert COUNT > 2 * LISTING_LIMIT and COUNT > 1000
    container = f'many-{uuid.uuid4().hex[:12]}'
    names = [f'in/obj-{i:05d}.txt' for i in range(COUNT)]
    bulk_upload(conn, container, {name: data(i) for i, name in enumerate(names)})
    job = [{'name': 'wc', 'exec': {'path': programs['wc']},
            'devices': [{'name': 'stdin', 'path': f'swift://~/{container}/in/obj-*.txt'},
                        {'name': 'stdout'}]}]

    resp = post_job(conn, job)
    assert resp.status_code == 200, resp.text[:2000]
    assert resp.content == b''.join(wc(data(i)) for i in range(COUNT))   # listing order

    report = post_job(conn, job, {'X-Zerovm-Report': 'json'})
    assert report.status_code == 200, report.text[:2000]
    nodes = report.json()['nodes']
    assert [n['name'] for n in nodes] == [f'wc-{i}' for i in range(1, COUNT + 1)]
    assert [n['object'] for n in nodes] == [
        f'swift://AUTH_test/{container}/{name}' for name in names]
    assert {n['status'] for n in nodes} == {'ok'}
    # auto: each node of wc over a few bytes ends within its emulated trial, batched too
    # (where the host runs native nodes; emulated anyway where it cannot)
    assert {(n['engine'], n['engine_reason']) for n in nodes} == {('emulated', (
        engines.TRIAL_REASON if engines.native_unavailable() is None else
        f'the native engine cannot run on this host: {engines.native_unavailable()}'))}
    for node, name in zip(nodes, names, strict=True):       # next to its object
        primaries = swift_cluster.object_nodes('AUTH_test', container, name)[1]
        assert node['host'] in {where(p) for p in primaries}, (name, node['host'])
    # the program went once per server (then by digest), not once per node
    assert sum(n['program_bytes'] > 0 for n in nodes) <= len(swift_cluster.object_ports)
    # batches: far fewer requests than nodes (each server logs a line per batch)
    lines = executed(swift_cluster, container)
    assert batched_ok(lines) >= 2 * COUNT * 0.9
    assert len(lines) < COUNT / 4     # the nodes that did not end ok log alone


def test_a_wildcard_node_sees_its_object_metadata_without_a_head(
        swift_cluster: DevCluster, conn: Connection, make_container,
        programs: dict[str, str]) -> None:
    """The object servers add the LOCAL_* variables of batched nodes themselves."""
    container = make_container('meta')
    bodies = {'a.txt': b'one\n', 'b.txt': b'two two\n', 'c.txt': b'three\n'}
    for name, body in bodies.items():
        conn.put_object(container, name, body, content_type='text/x-test',
                        headers={'X-Object-Meta-Color': f'c-{name}'})
    job = [{'name': 'env', 'exec': {'path': programs['args_env']},
            'devices': [{'name': 'stdin', 'path': f'swift://~/{container}/*.txt'},
                        {'name': 'stdout'}]}]
    proxy_log = swift_cluster.log_file(swift_cluster.server('proxy'))
    logged = proxy_log.stat().st_size
    resp = post_job(conn, job, {'X-Zerovm-Report': 'json'})
    assert resp.status_code == 200, resp.text
    resp = post_job(conn, job)
    assert resp.status_code == 200, resp.text
    outputs = resp.content.decode().split('argc=')[1:]
    assert len(outputs) == len(bodies)
    for out, (name, body) in zip(outputs, sorted(bodies.items()), strict=True):
        env = dict(line.split('=', 1)[1].split('=', 1) for line in out.splitlines()
                   if line.startswith('envp['))
        assert env['LOCAL_OBJECT'] == 'on'
        assert env['LOCAL_PATH_INFO'] == f'/AUTH_test/{container}/{name}'
        assert env['LOCAL_CONTENT_LENGTH'] == str(len(body))
        assert env['LOCAL_CONTENT_TYPE'] == 'text/x-test'
        assert env['LOCAL_HTTP_X_OBJECT_META_COLOR'] == f'c-{name}'
        assert env['LOCAL_DOCUMENT_ROOT'] == '/dev/stdin'
        assert float(env['LOCAL_HTTP_X_TIMESTAMP']) > 0
    with proxy_log.open() as log:            # no HEAD of any of the objects
        log.seek(logged)
        heads = [line for line in log if f' HEAD /v1/AUTH_test/{container}/' in line]
    assert heads == [], heads


def test_a_job_over_zerovm_maxnodes_names_the_option(conn: Connection,
                                                     programs: dict[str, str]) -> None:
    job = [{'name': 'wc', 'exec': {'path': programs['wc']}, 'count': 100001,
            'devices': [{'name': 'stdout'}]}]
    resp = post_job(conn, job)
    assert resp.status_code == 400
    assert 'more than 100000 nodes' in resp.text and 'zerovm_maxnodes' in resp.text


def test_a_wildcard_reads_only_containers_the_caller_may_read(
        conn: Connection, connect, make_container, guest) -> None:
    """Read authorisation is decided once per container: the container's read ACL."""
    bodies = {f'part-{i}': b'x y\n' * (i + 1) for i in range(3)}
    shared = make_container('shared', headers={'X-Container-Read': 'test2:tester2'})
    private = make_container('private')
    for container in (shared, private):
        for name, body in bodies.items():
            conn.put_object(container, name, body)
    other = connect('test2:tester2')
    bin_container = make_container('bin2', connection=other)
    other.put_object(bin_container, 'wc', guest('wc').read_bytes())
    program = f'swift://AUTH_test2/{bin_container}/wc'

    def job(container: str) -> list[dict]:
        return [{'name': 'wc', 'exec': {'path': program},
                 'devices': [{'name': 'stdin', 'path': f'swift://AUTH_test/{container}/*'},
                             {'name': 'stdout'}]}]
    resp = post_job(other, job(shared))
    assert resp.status_code == 200, resp.text
    assert resp.content == b''.join(wc(body) for body in bodies.values())
    resp = post_job(other, job(private))
    assert resp.status_code == 403, resp.text
    assert private in resp.text

"""The session's local cluster serves normal Swift, with ZeroCloud installed."""

from __future__ import annotations

import json
import urllib.request

import pytest
from archives import tar_bytes
from swift.common import direct_client
from swiftclient import ClientException, Connection
from swiftclient.client import get_auth, head_account

from zerocloud.devcluster import DevCluster, healthy


def test_object_put_get_delete(conn: Connection, make_container) -> None:
    container = make_container()
    etag = conn.put_object(container, 'hello.txt', b'hello, world\n',
                           content_type='text/plain')
    headers, body = conn.get_object(container, 'hello.txt')
    assert body == b'hello, world\n'
    assert headers['etag'] == etag
    assert headers['content-type'] == 'text/plain'
    conn.delete_object(container, 'hello.txt')
    with pytest.raises(ClientException) as err:
        conn.get_object(container, 'hello.txt')
    assert err.value.http_status == 404


def test_container_listing(conn: Connection, make_container, make_object) -> None:
    container = make_container()
    for name in ('b/2', 'a/1', 'b/1'):
        make_object(container, name, name.encode())
    listing = conn.get_container(container)[1]
    assert [(o['name'], o['bytes']) for o in listing] == [('a/1', 3), ('b/1', 3), ('b/2', 3)]
    assert [o['name'] for o in conn.get_container(container, prefix='b/')[1]] == ['b/1', 'b/2']
    assert container in [c['name'] for c in conn.get_account()[1]]


def test_tempauth_rejects_a_wrong_key(swift_cluster: DevCluster) -> None:
    with pytest.raises(ClientException) as err:
        get_auth(swift_cluster.auth_url, 'test:tester', 'wrong')
    assert err.value.http_status == 401


def test_accounts_are_private(connect, make_container, make_object) -> None:
    container = make_container()
    make_object(container, 'secret', b'mine')
    test_url = connect().get_auth()[0]
    intruder = Connection(preauthurl=test_url, preauthtoken=connect('test2:tester2').get_auth()[1],
                          retries=0)
    with pytest.raises(ClientException) as err:
        intruder.get_object(container, 'secret')
    assert err.value.http_status == 403


def test_reseller_admin_makes_accounts(make_account) -> None:
    url, token = make_account('fresh')
    assert url.endswith('/AUTH_fresh')
    assert head_account(url, token)['x-account-container-count'] == '0'


def test_zerocloud_proxy_filter_is_installed(conn: Connection) -> None:
    assert 'zerocloud' in conn.get_capabilities()


def extract_archive(conn: Connection, container: str, archive: bytes) -> dict:
    """PUT a tar with ``?extract-archive=tar``; Swift's bulk answers 200 and reports
    in its JSON body."""
    url, token = conn.get_auth()
    request = urllib.request.Request(
        f'{url}/{container}?extract-archive=tar', data=archive, method='PUT',
        headers={'X-Auth-Token': token, 'Accept': 'application/json'})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def test_bulk_upload_extracts_a_tar_into_objects(conn: Connection, make_container) -> None:
    container = make_container()
    files = {'a.txt': b'alpha\n', 'dir/b.txt': b'beta beta\n', 'dir/sub/c': b'x' * 3000}
    report = extract_archive(conn, container, tar_bytes(files))
    assert report['Response Status'] == '201 Created'
    assert report['Number Files Created'] == 3 and report['Errors'] == []
    listing = conn.get_container(container)[1]
    assert {o['name']: o['bytes'] for o in listing} == {n: len(d) for n, d in files.items()}
    for name, data in files.items():
        assert conn.get_object(container, name)[1] == data


def test_bulk_upload_refuses_a_broken_tar_and_creates_nothing(
        conn: Connection, make_container) -> None:
    container = make_container()
    report = extract_archive(conn, container, b'not a tar archive at all' * 40)
    assert report['Response Status'].startswith('400 ')
    assert 'Invalid Tar File' in report['Response Body']
    assert conn.get_container(container)[1] == []


def test_objects_have_two_replicas_on_distinct_servers(
        swift_cluster: DevCluster, conn: Connection, make_container) -> None:
    container = make_container()
    conn.put_object(container, 'replicated', b'x' * 100)
    part, nodes = swift_cluster.object_nodes('AUTH_test', container, 'replicated')
    holders = {node['id'] for node in nodes}
    assert len(holders) == 2
    for device in swift_cluster.object_devices:
        if device['id'] in holders:
            direct_client.direct_head_object(device, part, 'AUTH_test', container, 'replicated')
        else:
            with pytest.raises(direct_client.DirectClientException) as err:
                direct_client.direct_head_object(device, part, 'AUTH_test', container,
                                                 'replicated')
            assert err.value.http_status == 404


def test_reads_survive_a_killed_object_server(
        swift_cluster: DevCluster, conn: Connection, make_container,
        kill_object_server) -> None:
    container = make_container()
    conn.put_object(container, 'survivor', b'still here')
    _part, nodes = swift_cluster.object_nodes('AUTH_test', container, 'survivor')
    victim = nodes[0]['id']
    kill_object_server(victim)
    states = {s.name: s.state for s in swift_cluster.status()}
    assert states[f'object{victim}'] == 'dead'
    assert conn.get_object(container, 'survivor')[1] == b'still here'
    conn.put_object(container, 'written-while-down', b'via a handoff')
    assert conn.get_object(container, 'written-while-down')[1] == b'via a handoff'


def test_a_paused_object_server_keeps_its_port_but_does_not_answer(
        swift_cluster: DevCluster, pause_object_server) -> None:
    port = swift_cluster.object_ports[1]
    pause_object_server(1)
    assert not healthy(port, timeout=0.3)
    assert {s.name: s.state for s in swift_cluster.status()}['object1'] == 'paused'
    swift_cluster.resume_object_server(1)
    assert healthy(port)


def test_status_reports_every_server_healthy(swift_cluster: DevCluster) -> None:
    statuses = swift_cluster.status()
    assert [s.name for s in statuses] == [
        'proxy', 'account', 'container', 'object0', 'object1', 'object2']
    assert all(s.state == 'running' and s.healthy and s.pid for s in statuses)

"""Large outputs on the session's real cluster: streamed to the client, to their objects
and to a deferred job's result, every byte in place (issue 15.8; the proxy's memory
for them is measured by bench/proxy_memory.py, not asserted here).

The guest ``tests/programs/emit.c`` writes ``SIZE`` bytes of 64 KiB blocks that
each name their place, so a body that reorders, drops or repeats a block has a
different SHA-256 than :func:`emitted`.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest
import requests
from cluster_limits import JOB_MAX_OUTPUT
from swiftclient import ClientException, Connection

BLOCK = 65536
SIZE = 12 * 1024 * 1024 + 5        # past every in-memory threshold, a short last block


def emitted(size: int, tag: str) -> bytes:
    """What ``emit <size> <tag>`` writes."""
    blocks = []
    for k in range(-(-size // BLOCK)):
        line = b'%s %08d\n' % (tag.encode(), k)
        blocks.append(line + bytes([ord('a') + k % 26]) * (BLOCK - len(line)))
    return b''.join(blocks)[:size]


@pytest.fixture
def emit(conn: Connection, make_container, guest) -> str:
    """The swift:// URL of the emit program."""
    container = make_container('bin')
    conn.put_object(container, 'emit', guest('emit').read_bytes())
    return f'swift://~/{container}/emit'


def node(program: str, size: int, tag: str, stdout: dict | None = None) -> dict:
    return {'name': tag, 'exec': {'path': program, 'args': [str(size), tag]},
            'devices': [stdout or {'name': 'stdout'}]}


def post(conn: Connection, job: list[dict], **headers: str) -> requests.Response:
    url, token = conn.get_auth()
    return requests.post(url, data=json.dumps(job), timeout=300, stream=True, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/json',
        **headers})


def sha_of_stream(resp: requests.Response) -> tuple[str, str, int]:
    """(SHA-256, MD5, length) of a streamed body, read a buffer at a time."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    for chunk in resp.iter_content(BLOCK):
        sha.update(chunk)
        md5.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), md5.hexdigest(), size


def test_two_large_outputs_stream_to_the_client_in_node_order(conn: Connection, emit) -> None:
    resp = post(conn, [node(emit, SIZE, 'first'), node(emit, SIZE - 7, 'second')])
    assert resp.status_code == 200, resp.text
    expected = emitted(SIZE, 'first') + emitted(SIZE - 7, 'second')
    assert int(resp.headers['Content-Length']) == len(expected)
    assert resp.headers['X-Nexe-Body-Bytes'] == f'{SIZE},{SIZE - 7}'
    sha, md5, size = sha_of_stream(resp)
    assert (sha, size) == (hashlib.sha256(expected).hexdigest(), len(expected))
    assert resp.headers['Etag'] == md5 == hashlib.md5(expected).hexdigest()


def test_a_large_output_is_stored_whole(conn: Connection, make_container, emit) -> None:
    container = make_container()
    out = {'name': 'stdout', 'path': f'swift://~/{container}/big'}
    resp = post(conn, [node(emit, SIZE, 'stored', out)])
    assert resp.status_code == 200, resp.text
    headers, body = conn.get_object(container, 'big')
    expected = emitted(SIZE, 'stored')
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert headers['etag'] == hashlib.md5(expected).hexdigest()


def test_a_deferred_job_stores_its_large_body(conn: Connection, make_container, emit) -> None:
    container = make_container()
    url, token = conn.get_auth()
    resp = requests.post(f'{url}/{container}', data=json.dumps([node(emit, SIZE, 'later')]),
                         timeout=60, headers={
                             'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0',
                             'Content-Type': 'application/json', 'X-Zerovm-Deferred': 'always'})
    assert resp.status_code == 202, resp.text
    name = resp.text.strip().rsplit('/', 1)[1]
    deadline = time.monotonic() + 120
    while True:
        try:
            headers = json.loads(conn.get_object(container, name + '.headers')[1])
            break
        except ClientException as e:
            if e.http_status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)
    assert headers['Status'] == '200 OK'
    stored, body = conn.get_object(container, name)
    expected = emitted(SIZE, 'later')
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert stored['etag'] == headers['Etag'] == hashlib.md5(expected).hexdigest()


@pytest.mark.parametrize('wildcard', [False, True], ids=['nodes', 'wildcard'])
def test_a_job_whose_outputs_pass_its_budget_is_stopped_with_a_413(
        conn: Connection, make_container, make_object, emit, wildcard: bool) -> None:
    """Three outputs of 12 MiB over the cluster's zerovm_job_maxoutput (32 MiB): nodes
    sent alone, or a wildcard's in a batch; nothing stored, the next job whole."""
    container = make_container()
    if wildcard:
        for i in range(3):
            make_object(container, f'in{i}', b'x')
        job = [{'name': 'w', 'exec': {'path': emit, 'args': [str(SIZE), 'w']},
                'devices': [{'name': 'stdin', 'path': f'swift://~/{container}/in*'},
                            {'name': 'stdout', 'path': f'swift://~/{container}/out-*'}]}]
    else:
        job = [node(emit, SIZE, f'n{i}', {'name': 'stdout',
                                          'path': f'swift://~/{container}/out-{i}'})
               for i in range(3)]
    resp = post(conn, job)
    assert resp.status_code == 413, resp.text
    assert resp.text.startswith(f'this job was stopped: its outputs passed zerovm_job_maxoutput '
                                f'({JOB_MAX_OUTPUT} bytes, at /dev/stdout of node '), resp.text
    assert 'ask the operator to raise zerovm_job_maxoutput' in resp.text
    assert [o['name'] for o in conn.get_container(container)[1]] == (
        ['in0', 'in1', 'in2'] if wildcard else [])
    resp = post(conn, [node(emit, SIZE, 'after')])
    assert resp.status_code == 200 and sha_of_stream(resp)[2] == SIZE

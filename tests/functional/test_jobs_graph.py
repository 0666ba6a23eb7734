"""Multi-node jobs on the session's real cluster: ``connect`` graphs and ``replicate``.

The map/reduce test runs the programs of examples/mapreduce (so the example
is what is tested); tests/programs/graph_pipe.c is a pipeline stage that
adds a constant to every byte and can crash on one named node;
tests/programs/graph_stream.c a stage that copies a known number of bytes
and can compute for a while afterwards.  The cluster's object ring keeps 2
replicas on 3 object servers.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import random
import time
from pathlib import Path

import requests
from swift.common import direct_client
from swift.common.utils import Timestamp
from swiftclient import ClientException, Connection

from zerocloud.devcluster import DevCluster

EXAMPLE = Path(__file__).resolve().parents[2] / 'examples' / 'mapreduce'
WORDS = [f'w{i}' for i in range(300)] + ['Swift', 'swift', 'ZeroVM', 'node,', '(data)', 'é']


def post_job(conn: Connection, job: object, headers: dict | None = None) -> requests.Response:
    url, token = conn.get_auth()
    return requests.post(url, data=json.dumps(job), timeout=120, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/json',
        **(headers or {})})


def nexe(resp: requests.Response, name: str) -> list[str]:
    return resp.headers[f'X-Nexe-{name}'].split(',')


def where(node: dict) -> str:
    return f'{node["ip"]}:{node["port"]}/{node["device"]}'


def fnv1a(word: bytes) -> int:
    h = 2166136261
    for byte in word:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def book(rng: random.Random, words: int) -> bytes:
    seps = [' ', ' ', ' ', '\n', '\t', '  ', '\r\n', '\x0b']
    return ''.join(rng.choice(WORDS) + rng.choice(seps) for _ in range(words)).encode()


def shifted(data: bytes, add: int) -> bytes:
    return data.translate(bytes((b + add) % 256 for b in range(256)))


def upload(conn: Connection, container: str, name: str, program: Path) -> str:
    conn.put_object(container, name, program.read_bytes())
    return f'swift://~/{container}/{name}'


def stage(name: str, program: str, args: str, **group) -> dict:
    return {'name': name, 'exec': {'path': program, 'args': args}, **group}


def test_map_reduce_word_count_equals_python(swift_cluster: DevCluster, conn: Connection,
                                             make_container, guest) -> None:
    container = make_container()
    rng = random.Random(7)
    books = {f'books/{i:02d}.txt': book(rng, rng.randrange(200, 3000)) for i in range(10)}
    for name, text in books.items():
        conn.put_object(container, name, text)
    mapper = upload(conn, container, 'bin/mapper', guest(EXAMPLE / 'mapper.c'))
    reducer = upload(conn, container, 'bin/reducer', guest(EXAMPLE / 'reducer.c'))
    job = [stage('mapper', mapper, 'reducer', connect=['reducer'],
                 devices=[{'name': 'stdin', 'path': f'swift://~/{container}/books/*.txt'}]),
           stage('reducer', reducer, 'mapper', count=2, replicate=2,
                 devices=[{'name': 'stdout', 'content_type': 'text/plain',
                           'path': f'swift://~/{container}/counts/*.txt'}])]
    resp = post_job(conn, job)
    assert resp.status_code == 200, resp.text
    mappers = [f'mapper-{i}' for i in range(1, 11)]
    assert nexe(resp, 'System') == [*mappers, 'reducer-1', 'reducer-1', 'reducer-2', 'reducer-2']
    assert set(nexe(resp, 'Status')) == {'ok'}
    hosts = nexe(resp, 'Host')
    for name, host in zip(sorted(books), hosts, strict=False):
        assert host in {where(n) for n in swift_cluster.object_nodes('AUTH_test', container,
                                                                      name)[1]}
    assert hosts[10] != hosts[11] and hosts[12] != hosts[13]      # replicas: two servers
    etags = nexe(resp, 'Etag')
    assert etags[10] == etags[11] and etags[12] == etags[13]

    expected = collections.Counter(w for text in books.values() for w in text.split())
    found: dict[bytes, int] = {}
    for reducer_no in (1, 2):
        body = conn.get_object(container, f'counts/reducer-{reducer_no}.txt')[1]
        lines = [line.rsplit(b' ', 1) for line in body.splitlines()]
        words = [w for w, _n in lines]
        assert words == sorted(words)
        assert all(fnv1a(w) % 2 + 1 == reducer_no for w in words)
        assert not found.keys() & set(words)
        found.update((w, int(n)) for w, n in lines)
    assert found == expected
    assert [o['name'] for o in conn.get_container(container, prefix='counts/')[1]] == [
        'counts/reducer-1.txt', 'counts/reducer-2.txt']


def test_three_stage_pipeline_carries_megabytes(conn: Connection, make_container,
                                                guest) -> None:
    container = make_container()
    data = random.Random(3).randbytes(4 << 20)
    conn.put_object(container, 'in', data)
    pipe = upload(conn, container, 'pipe', guest('graph_pipe'))
    job = [stage('A', pipe, '- B 1', connect=['B'],
                 devices=[{'name': 'stdin', 'path': f'swift://~/{container}/in'}]),
           stage('B', pipe, 'A C 1', connect=['C']),
           stage('C', pipe, 'B - 1',
                 devices=[{'name': 'stdout', 'path': f'swift://~/{container}/out'}])]
    resp = post_job(conn, job, headers={'X-Zerovm-Report': 'json'})
    assert resp.status_code == 200, resp.text
    nodes = resp.json()['nodes']
    assert [(n['name'], n['status']) for n in nodes] == [('A', 'ok'), ('B', 'ok'), ('C', 'ok')]
    assert nodes[0]['outputs'] == [{'device': 'out/B', 'path': None, 'bytes': len(data),
                                    'stored': False}]
    assert nodes[1]['outputs'][0]['bytes'] == len(data)
    assert nodes[2]['request_bytes'] > len(data)          # B's data went to C's server
    assert conn.get_object(container, 'out')[1] == shifted(data, 3)


def test_more_mappers_than_a_reader_takes_reduce_in_stages(conn: Connection, make_container,
                                                           guest) -> None:
    """A node reads from at most 249 nodes (its channels are descriptors a sandbox
    worker takes in one message): one reducer over 260 mappers is a 400 that names
    the limit and the way round it, before any node runs; the same objects reduced
    in stages (a reducer per part, then a final one) give every byte, in order."""
    from test_jobs_scale import bulk_upload
    container = make_container('fanin')
    objects = {f'part-{i:03d}': b'%d\n' % i for i in range(260)}
    bulk_upload(conn, container, objects)
    pipe = upload(conn, container, 'pipe', guest('graph_pipe'))
    src = [{'name': 'stdin', 'path': f'swift://~/{container}/part-*'}]
    resp = post_job(conn, [stage('map', pipe, '- reduce 0', connect=['reduce'], devices=src),
                           stage('reduce', pipe, 'map - 0')])
    assert resp.status_code == 400, resp.text
    assert 'reads from 260 nodes' in resp.text and 'at most 253' in resp.text, resp.text
    assert 'reads from at most 249 nodes' in resp.text and 'reduce in stages' in resp.text
    assert 'X-Nexe-System' not in resp.headers
    job = [stage(f'map{k}', pipe, f'- reduce{k} 0', connect=[f'reduce{k}'], devices=[
               {'name': 'stdin', 'path': f'swift://~/{container}/part-{k}*'}])
           for k in range(3)]
    job += [stage(f'reduce{k}', pipe, f'map{k} final 0', connect=['final']) for k in range(3)]
    job.append(stage('final', pipe, 'reduce0,reduce1,reduce2 - 0', devices=[{'name': 'stdout'}]))
    resp = post_job(conn, job)
    assert resp.status_code == 200, resp.text
    assert resp.content == b''.join(objects.values())


def test_a_map_reduce_over_more_mappers_than_a_batch_holds_gives_every_byte_in_order(
        swift_cluster: DevCluster, conn: Connection, make_container, guest) -> None:
    """Mappers (a wildcard's nodes that only write to other nodes) travel in batches,
    more than ``BATCH_MAX`` of them bound for one server (objects chosen so): every
    mapper's data reaches its reducer, in node order, through the reducers to the
    final node; a mapper that fails in a batch fails the job and skips its reducer
    and the final node only, and stores nothing."""
    from swift.common.ring import Ring
    from test_jobs_scale import bulk_upload

    from zerocloud.wire import BATCH_MAX
    container = make_container('mapred')
    swift_cluster.object_nodes('AUTH_test', container, 'x')      # points Swift at its ring
    ring = Ring(str(swift_cluster.swift_dir), ring_name='object')

    def first_primary(name: str) -> int:
        return ring.get_nodes('AUTH_test', container, name)[1][0]['port']
    # names whose first primary is one server: all their nodes are queued for it
    groups, per_group = 3, BATCH_MAX // 3 + 8     # a reader takes at most 249 nodes
    server = first_primary('part-000000')
    objects = {}
    for g in range(groups):
        names = (f'part-{g}{i:05d}' for i in range(100000))
        mine = itertools.islice((n for n in names if first_primary(n) == server), per_group)
        objects.update((name, b'%d.%d\n' % (g, i)) for i, name in enumerate(mine))
    assert len(objects) > BATCH_MAX
    bulk_upload(conn, container, objects)
    pipe = upload(conn, container, 'pipe', guest('graph_pipe'))

    def job(crash: str = '') -> list[dict]:
        nodes = [stage(f'map{g}', pipe, f'- reduce{g} 0 {crash}'.strip(),
                       connect=[f'reduce{g}'],
                       devices=[{'name': 'stdin', 'path': f'swift://~/{container}/part-{g}*'}])
                 for g in range(groups)]
        nodes += [stage(f'reduce{g}', pipe, f'map{g} final 0', connect=['final'])
                  for g in range(groups)]
        return [*nodes, stage('final', pipe, ','.join(f'reduce{g}' for g in range(groups))
                              + ' - 0', devices=[{'name': 'stdout',
                                                  'path': f'swift://~/{container}/out'}])]
    resp = post_job(conn, job(), headers={'X-Zerovm-Report': 'json'})
    assert resp.status_code == 200, resp.text
    nodes = resp.json()['nodes']
    mappers = nodes[:len(objects)]
    assert [n['name'] for n in mappers] == [f'map{g}-{i}' for g in range(groups)
                                            for i in range(1, per_group + 1)]
    assert [n['object'] for n in mappers] == [f'swift://AUTH_test/{container}/{name}'
                                              for name in objects]
    assert {n['status'] for n in nodes} == {'ok'}
    assert [o['bytes'] for n in mappers for o in n['outputs']] == [
        len(data) for data in objects.values()]
    batched = [n for n in mappers if n['request_bytes'] < 1024]    # an entry, not a request
    assert len(batched) > len(mappers) // 2, [n['request_bytes'] for n in mappers[:5]]
    assert all(n['started'] < n['finished'] for n in nodes)
    reducers = nodes[len(objects):-1]
    assert all(r['started'] > max(m['finished'] for m in mappers[g * per_group:][:per_group])
               for g, r in enumerate(reducers))
    assert conn.get_object(container, 'out')[1] == b''.join(objects.values())
    conn.delete_object(container, 'out')

    resp = post_job(conn, job(crash='map1-117'))
    assert resp.status_code == 422, resp.text
    assert collections.Counter(nexe(resp, 'Status')) == {
        'fault': 1, 'ok': len(objects) - 1 + groups - 1, 'skipped': 2}
    lines = resp.text.splitlines()
    assert lines[0].startswith('map1-117: fault: ')
    assert lines[1:3] == ['reduce1: skipped: not run: map1-117 failed',
                          'final: skipped: not run: reduce1 did not run']
    assert conn.get_container(container, prefix='out')[1] == []    # nothing stored


def test_a_pipeline_stage_runs_while_the_stage_before_it_still_runs(
        conn: Connection, make_container, guest) -> None:
    """A writes its data, then computes for a while; B and C copy exactly that many
    bytes (in reads of 100000 bytes: the parts of the links never line up) and
    exit without waiting for the end of their input.  Run stage by stage, B could
    start only once A had finished; streamed, all of the data goes through B and
    C, and both finish, while A still runs (``started``/``finished``: the order of
    the job's events on the proxy, no clock involved)."""
    container = make_container()
    data = random.Random(5).randbytes((5 << 20) + 12345)
    conn.put_object(container, 'in', data)
    prog = upload(conn, container, 'stream', guest('graph_stream'))
    size = str(len(data))
    job = [stage('A', prog, f'- B {size} 50', connect=['B'],
                 devices=[{'name': 'stdin', 'path': f'swift://~/{container}/in'}]),
           stage('B', prog, f'A C {size} 0', connect=['C']),
           stage('C', prog, f'B - {size} 0',
                 devices=[{'name': 'stdout', 'path': f'swift://~/{container}/out'}])]
    job[0]['engine'] = 'emulated'   # A's computing must outlast B and C: natively it would not
    resp = post_job(conn, job, headers={'X-Zerovm-Report': 'json'})
    assert resp.status_code == 200, resp.text
    a, b, c = resp.json()['nodes']
    assert [(n['name'], n['status'], n['retcode']) for n in (a, b, c)] == [
        ('A', 'ok', 0), ('B', 'ok', 0), ('C', 'ok', 0)]
    assert a['started'] < b['started'] < c['started'] < c['finished'] < a['finished']
    assert b['finished'] < a['finished']
    assert conn.get_object(container, 'out')[1] == data


def test_a_pipeline_longer_than_the_cluster_has_workers_completes(
        swift_cluster: DevCluster, conn: Connection, make_container, guest) -> None:
    """Every stage of a chain holds a worker while it waits for the one before it:
    with more stages than workers, a stage waits for a worker (in a queue or
    tried again) and none of those it waits for waits for it, so the chain ends."""
    container = make_container()
    data = random.Random(9).randbytes(1 << 20)
    conn.put_object(container, 'in', data)
    pipe = upload(conn, container, 'pipe', guest('graph_pipe'))
    stages = 3 * len(swift_cluster.object_ports) * (os.cpu_count() or 1) + 1
    names = ['-', *(f's{i}' for i in range(stages)), '-']
    job = [stage(names[i], pipe, f'{names[i - 1]} {names[i + 1]} 1')
           for i in range(1, stages + 1)]
    for group, peer in zip(job[:-1], names[2:], strict=False):
        group['connect'] = [peer]
    job[0]['devices'] = [{'name': 'stdin', 'path': f'swift://~/{container}/in'}]
    job[-1]['devices'] = [{'name': 'stdout', 'path': f'swift://~/{container}/out'}]
    resp = post_job(conn, job)
    assert resp.status_code == 200, resp.text
    assert nexe(resp, 'Status') == ['ok'] * stages
    assert conn.get_object(container, 'out')[1] == shifted(data, stages)


def replicated_wc(wc: str, container: str) -> list:
    """``wc`` of the object ``data`` run on two of its replicas, its count stored as ``count``."""
    return [stage('wc', wc, '', replicate=2, devices=[
        {'name': 'stdin', 'path': f'swift://~/{container}/data'},
        {'name': 'stdout', 'path': f'swift://~/{container}/count'}])]


def test_replicate_2_runs_on_both_replicas_and_agrees(swift_cluster: DevCluster,
                                                      conn: Connection, make_container,
                                                      guest) -> None:
    container = make_container()
    text = book(random.Random(1), 500)
    conn.put_object(container, 'data', text)
    wc = upload(conn, container, 'wc', guest('wc'))
    job = replicated_wc(wc, container)
    resp = post_job(conn, job)
    assert resp.status_code == 200, resp.text
    assert nexe(resp, 'System') == ['wc', 'wc']
    assert nexe(resp, 'Status') == ['ok', 'ok']
    primaries = swift_cluster.object_nodes('AUTH_test', container, 'data')[1]
    assert sorted(nexe(resp, 'Host')) == sorted(where(n) for n in primaries)
    assert len(set(nexe(resp, 'Etag'))) == 1
    count = b'%7d %7d %7d\n' % (text.count(b'\n'), len(text.split()), len(text))
    assert conn.get_object(container, 'count')[1] == count

    job[0]['replicate'] = 3
    resp = post_job(conn, job)
    assert resp.status_code == 400
    assert resp.text == (f'Invalid replicate in wc: 3 runs need 3 different servers, there '
                         f'are 2 (replicas of swift://AUTH_test/{container}/data)\n')


def test_replicas_that_disagree_store_nothing(swift_cluster: DevCluster, conn: Connection,
                                              make_container, guest) -> None:
    container = make_container()
    conn.put_object(container, 'data', b'one two three\n')
    part, primaries = swift_cluster.object_nodes('AUTH_test', container, 'data')
    direct_client.direct_put_object(primaries[1], part, 'AUTH_test', container, 'data',
                                    b'one two three four\n', headers={
                                        'X-Timestamp': Timestamp.now().internal,
                                        'Content-Type': 'text/plain'})
    wc = upload(conn, container, 'wc', guest('wc'))
    job = replicated_wc(wc, container)
    resp = post_job(conn, job)
    assert resp.status_code == 409, resp.text
    assert nexe(resp, 'Status') == ['mismatch', 'mismatch']
    assert sorted(nexe(resp, 'Host')) == sorted(where(n) for n in primaries)
    assert len(set(nexe(resp, 'Etag'))) == 2
    assert resp.text.startswith('wc: mismatch: replicas disagree on /dev/stdout: ')
    assert 'wc: replicas disagree on /dev/stdout' in resp.headers['X-Nexe-Error']
    try:
        conn.head_object(container, 'count')
        raise AssertionError('a mismatched output was stored')
    except ClientException as e:
        assert e.http_status == 404


def _stray(cluster: DevCluster) -> list[str]:
    """What a finished job must not leave: temporary files and descriptors of deleted
    files in the proxy and object servers, node directories, processes besides the
    servers' sandbox workers."""
    found = []
    for dev in cluster.object_devices:
        tmp = Path(dev['path']) / 'tmp'
        found += [str(p) for p in tmp.iterdir() if not _spares(p)] if tmp.exists() else []
    servers = [cluster.server(name) for name in ['proxy'] + [f'object{i}' for i in
                                                              range(len(cluster.object_ports))]]
    for server in servers:
        fd_dir = Path(f'/proc/{server.pid}/fd')
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except FileNotFoundError:
                continue
            if target.endswith('(deleted)'):
                found.append(f'{server.name} fd {fd.name} -> {target}')
        for child in _children(server.pid):
            cmdline = Path(f'/proc/{child}/cmdline').read_bytes().split(b'\0')
            if b'zvm_core.pool.worker' not in cmdline:    # the proxy's validate uploads
                found.append(f'{server.name} child {child}: {cmdline}')
    return found


def _spares(path: Path) -> bool:
    """An object server's emptied batch output files, kept open for its next batches
    (``zerocloud.object.batch.Spares``, removed once idle): no job's leftovers."""
    return path.is_dir() and all(f.name.startswith('out-') and f.stat().st_size == 0
                                 for f in path.iterdir())


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f'/proc/{pid}/task').iterdir():
        kids += [int(k) for k in (task / 'children').read_text().split()]
    return kids


def test_a_failing_node_fails_the_graph_and_leaves_nothing(
        swift_cluster: DevCluster, conn: Connection, make_container, guest) -> None:
    container = make_container()
    for i in range(3):
        conn.put_object(container, f'in/{i}', b'%d some data\n' % i * 1000)
    pipe = upload(conn, container, 'pipe', guest('graph_pipe'))
    job = [stage('A', pipe, '- B 0', connect=['B'], devices=[
               {'name': 'stdin', 'path': f'swift://~/{container}/in/*'},
               {'name': 'stderr', 'path': f'swift://~/{container}/out/A-*'}]),
           stage('B', pipe, 'A C 1 B-2', count=2, connect=['C']),
           stage('C', pipe, 'B - 1', devices=[
               {'name': 'stdout', 'path': f'swift://~/{container}/out/C'}])]
    resp = post_job(conn, job)
    assert resp.status_code == 422, resp.text
    assert nexe(resp, 'System') == ['A-1', 'A-2', 'A-3', 'B-1', 'B-2', 'C']
    assert nexe(resp, 'Status') == ['ok', 'ok', 'ok', 'ok', 'fault', 'skipped']
    assert nexe(resp, 'Host')[5] == ''
    assert resp.text.splitlines()[0].startswith('B-2: fault: ')
    assert resp.text.splitlines()[1] == 'C: skipped: not run: B-2 failed'
    assert resp.headers['X-Nexe-Error'].startswith('B-2: ')
    assert conn.get_container(container, prefix='out/')[1] == []
    deadline = time.monotonic() + 60     # a bound against a hang, not a timing
    while (stray := _stray(swift_cluster)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stray == []

"""An attacker's review (review22) on the real cluster: test2 (an admin of AUTH_test2
only) makes the proxy hold what it should never hold for one request, and writes jobs
from inside a job that name what test2 may not reach."""

from __future__ import annotations

import io
import json
import os
import time
import uuid

import pytest
import requests
from archives import tar_bytes
from swiftclient import Connection

from zerocloud.devcluster import DevCluster

SECRET = b'top secret\n'
PYTHON = 'file://python3:python3'
MIB = 1 << 20


def peak_kib(pid: int) -> int:
    """The peak resident memory of process ``pid`` so far (VmHWM), KiB."""
    with open(f'/proc/{pid}/status') as f:
        return int(next(ln for ln in f if ln.startswith('VmHWM:')).split()[1])


@pytest.fixture
def setting(conn: Connection, connect, make_container) -> dict:
    """AUTH_test's private container with a secret; test2's own container."""
    private = make_container('private')
    conn.put_object(private, 'secret', SECRET)
    other = connect('test2:tester2')
    own = make_container('own', connection=other)
    url, token = other.get_auth()
    return {'other': other, 'private': private, 'own': own, 'url': url, 'token': token}


def test_an_object_named_as_a_deferred_state_is_not_read_whole(
        swift_cluster: DevCluster, setting) -> None:
    """A GET of a deferred result that is not there reads the job's ``.state`` to tell
    whether the job was lost.  Any user can store an object under that name in their
    own container, as large as Swift allows (5 GiB): the proxy read it whole, as bytes
    then as a string (a 32 MiB one raised its peak memory by 64 MiB, per request).
    Padded with blanks, a stale state parsed, and its lost result was stored.  A state
    is a few hundred bytes: a larger object is not one, and is not read."""
    other, own = setting['other'], setting['own']
    name = f'job-{uuid.uuid4().hex}'
    stale = json.dumps({'state': 'running', 'heartbeat': 1.0, 'updated': time.time() - 3600,
                        'proxy': 'elsewhere:1'}).encode()
    size = 32 * MIB
    other.put_object(own, f'{name}.state', io.BytesIO(stale.ljust(size)), content_length=size)
    proxy = swift_cluster.server('proxy').pid
    before = peak_kib(proxy)
    resp = requests.get(f'{setting["url"]}/{own}/{name}.headers', timeout=60,
                        headers={'X-Auth-Token': setting['token']})
    assert resp.status_code == 404, resp.text
    assert peak_kib(proxy) - before < size // 1024, 'the state was read whole'
    assert sorted(o['name'] for o in other.get_container(own)[1]) == [f'{name}.state']


def test_the_partial_rows_of_a_query_wait_on_the_proxys_disk(
        swift_cluster: DevCluster, setting, make_container) -> None:
    """A ``rows`` plan ships every filtered row to the proxy, which hands them to the
    merging node: the proxy read them whole into its memory (the body, then a copy),
    up to ``zerovm_job_maxoutput`` (4 GiB) per query of any user.  They wait on its
    disk, as a job's outputs do: its peak memory stays well below their size."""
    other = setting['other']
    data = make_container('rows', connection=other)
    objects, rows = 4, 200_000          # 4 x 8.2 MB of distinct 34-byte texts
    for i in range(objects):
        body = ''.join(f'{n},v{n:032d}\n' for n in range(i * rows, (i + 1) * rows))
        other.put_object(data, f'part-{i}.csv', ('a,b\n' + body).encode())
    query = f'SELECT count(DISTINCT b) FROM swift://~/{data}/*.csv'
    proxy = swift_cluster.server('proxy').pid
    before = peak_kib(proxy)
    resp = requests.post(setting['url'], data=json.dumps({'query': query}), timeout=300,
                         headers={'X-Auth-Token': setting['token'],
                                  'X-Zerovm-Execute': 'sql/1.0'})
    assert resp.status_code == 200, resp.text
    assert resp.headers['X-Sql-Plan'] == 'rows'
    assert resp.text.splitlines() == ['count(DISTINCT b)', str(objects * rows)]
    assert peak_kib(proxy) - before < 16 * 1024, 'the partial rows were held in memory'


def test_one_zapp_member_spelt_many_ways_is_fetched_once(swift_cluster: DevCluster,
                                                          setting) -> None:
    """A zapp's program is taken out of it once per job and held by the proxy
    while the job runs.  ``bin/p``, ``./bin/p``, ``/bin/p``, ``././bin/p``... name the
    same member: each spelling was taken out and held again, so one request of a 64 KiB
    job and a zapp of one 256 MiB program held a copy per group (thousands).  Here
    16 groups and a 16 MiB member: the proxy's peak memory grows by about one copy."""
    size, groups = 16 * MIB, 16
    job = [{'name': f'g{k}', 'exec': {'path': './' * (k // 2) + '/' * (k % 2) + 'bin/p'},
            'devices': [{'name': 'stdout'}]} for k in range(groups)]
    zapp = tar_bytes({'boot/system.map': json.dumps(job), 'bin/p': os.urandom(size)})
    proxy = swift_cluster.server('proxy').pid
    before = peak_kib(proxy)
    resp = requests.post(setting['url'], data=zapp, timeout=300, headers={
        'X-Auth-Token': setting['token'], 'X-Zerovm-Execute': '1.0',
        'Content-Type': 'application/x-tar'})
    assert resp.status_code == 422, resp.text          # random bytes: no program
    assert 'g15: validation: not a valid program' in resp.text
    assert peak_kib(proxy) - before < 4 * size // 1024, 'a copy per spelling'


def test_a_column_name_with_a_line_break_stays_in_its_header(
        swift_cluster: DevCluster, setting, make_container) -> None:
    """``X-Sql-Plan-Reason`` names the column that made the plan ``rows``; column names
    come from the objects' header row, where a quoted field may hold CR LF.  Escaped
    only beyond ASCII, the line break ended the header and the rest of the name was a
    header of the response (response splitting: whoever writes the data writes the
    headers of a query's answer).  It is one line of ASCII as the proxy's other headers
    (``response.header_text``): the line break a space."""
    other = setting['other']
    data = make_container('split', connection=other)
    for i in range(2):
        other.put_object(data, f'o{i}.csv', b'a,"x\r\nX-Injected: yes"\n1,2\n')
    query = f'SELECT "x\r\nX-Injected: yes", count(*) FROM swift://~/{data}/*.csv'
    resp = requests.post(setting['url'], data=json.dumps({'query': query}), timeout=120,
                         headers={'X-Auth-Token': setting['token'],
                                  'X-Zerovm-Execute': 'sql/1.0'})
    assert resp.status_code == 200, resp.text
    assert 'X-Injected' not in resp.headers, resp.headers
    assert resp.headers['X-Sql-Plan-Reason'].startswith(
        'column x X-Injected: yes is used outside the aggregates'), resp.headers


def test_a_wildcard_of_many_stars_is_matched_in_linear_time(
        swift_cluster: DevCluster, setting, make_container) -> None:
    """The objects a wildcard names are matched against its pattern in the proxy's event
    loop.  As a regex (each ``*`` a ``(.*)``), ``a*a*...*b`` over a name of a thousand
    ``a`` backtracks for a time growing as the name's length to the power of the stars:
    one job held the proxy (every user's requests) for good.  Here 20 stars: the job
    is answered (nothing matches) within the wait the test gives it."""
    other = setting['other']
    data = make_container('stars', connection=other)
    other.put_object(data, 'a' * 1000, b'x')
    pattern = 'a*' * 20 + 'b'
    job = [{'name': 'w', 'exec': {'path': PYTHON, 'args': ['-c', '1']},
            'devices': [{'name': 'python3'},
                        {'name': 'stdin', 'path': f'swift://~/{data}/{pattern}'}]}]
    resp = requests.post(setting['url'], data=json.dumps(job), timeout=60, headers={
        'X-Auth-Token': setting['token'], 'X-Zerovm-Execute': '1.0',
        'Content-Type': 'application/json'})
    assert resp.status_code == 404, resp.text
    assert f'No objects found in path swift://AUTH_test2/{data}/{pattern}' in resp.text


@pytest.mark.parametrize('device', [
    {'name': 'stdin', 'path': 'swift://AUTH_test/{private}/secret'},
    {'name': 'stdout', 'path': 'swift://AUTH_test/{private}/written'}])
def test_a_job_the_guest_writes_is_authorised_as_any_job(setting, conn: Connection,
                                                          device: dict) -> None:
    """Passes from the start (not covered before): test2's own program answers with a
    job (``message/cgi``, ``X-Zerovm-Execute``) that reads or writes AUTH_test's private
    container.  The chain runs it as test2, whose rights it has: 403 naming the object,
    nothing of AUTH_test read or written."""
    private = setting['private']
    step = [{'name': 'x', 'exec': {'path': PYTHON, 'args': ['-c', 'print(1)']},
             'devices': [{'name': 'python3'}, {**device, 'path': device['path'].format(
                 private=private)}, *([{'name': 'stdout'}] if device['name'] == 'stdin'
                                      else [])]}]
    code = ('import sys; sys.stdout.write("Content-Type: application/json\\n'
            f'X-Zerovm-Execute: 1.0\\n\\n" + {json.dumps(json.dumps(step))})')
    job = [{'name': 'gen', 'exec': {'path': PYTHON, 'args': ['-c', code]},
            'devices': [{'name': 'python3'}, {'name': 'stdout', 'content_type': 'message/cgi'}]}]
    resp = requests.post(setting['url'], data=json.dumps(job), timeout=120, headers={
        'X-Auth-Token': setting['token'], 'X-Zerovm-Execute': '1.0',
        'Content-Type': 'application/json'})
    assert resp.status_code == 403, resp.text
    assert f'swift://AUTH_test/{private}/' in resp.text
    assert SECRET not in resp.content
    assert 'X-Chain-Stopped' not in resp.headers
    assert [o['name'] for o in conn.get_container(private)[1]] == ['secret']

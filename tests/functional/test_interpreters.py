"""Python and Lua jobs on the session's real cluster, from the python3 and lua system images.

The cluster's proxy and object servers know the images by name
(``zerovm_sysimage_devices``); a job names the interpreter as
``file://python3:python3`` and the object server mounts the image at ``/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from urllib.parse import quote

import requests
from archives import tar_bytes
from cluster_logs import batched_ok, executed
from swiftclient import Connection

from zerocloud.devcluster import DevCluster

AGG = b'''import csv, sys
from collections import defaultdict
path = sys.argv[1] if len(sys.argv) > 1 else "/dev/input"
total, count = defaultdict(float), defaultdict(int)
with open(path, newline="") as f:
    for row in csv.DictReader(f):
        total[row["city"]] += float(row["amount"])
        count[row["city"]] += 1
for city in sorted(total):
    print(f"{city},{count[city]},{total[city]:.2f}")
'''

LUA_UPPER = b'''local n = 0
for line in io.lines() do n = n + 1; io.write(n, ": ", line:upper(), "\\n") end
'''


def post(conn: Connection, data, headers: dict | None = None) -> requests.Response:
    url, token = conn.get_auth()
    body = data if isinstance(data, (str, bytes)) else json.dumps(data)
    return requests.post(url, data=body, timeout=300, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/json',
        **(headers or {})})


def sales(rows: int) -> bytes:
    cities = ['Oslo', 'Lima', 'Pune', 'Kyiv', 'Baku']
    lines = ['city,amount'] + [f'{cities[i * 7 % 5]},{(i * 7919) % 10000 / 100:.2f}'
                               for i in range(rows)]
    return ('\n'.join(lines) + '\n').encode()


def test_python_hello_job_from_the_system_image(swift_cluster: DevCluster,
                                                conn: Connection) -> None:
    job = [{'name': 'hello', 'exec': {'path': 'file://python3:python3',
                                      'args': ['-c', 'import sys; print("hello", sys.argv[0])']},
            'devices': [{'name': 'python3'}, {'name': 'stdout'}]}]
    first, second = post(conn, job), post(conn, job)
    for resp in (first, second):
        assert resp.status_code == 200, resp.text
        assert resp.headers['X-Nexe-Status'] == 'ok', resp.headers
        assert resp.headers['X-Nexe-Retcode'] == '0'
        assert resp.content == b'hello -c\n'
    assert first.headers['ETag'] == second.headers['ETag'] == \
        hashlib.md5(b'hello -c\n').hexdigest()


def test_the_image_device_may_be_left_out(swift_cluster: DevCluster, conn: Connection) -> None:
    job = [{'name': 'n', 'exec': {'path': 'file://lua:lua', 'args': '-e print(1+1)'},
            'devices': [{'name': 'stdout'}]}]
    resp = post(conn, job)
    assert resp.status_code == 200, resp.text
    assert resp.content == b'2\n'


def test_python_csv_aggregation_in_place(swift_cluster: DevCluster, conn: Connection,
                                         make_container, tmp_path) -> None:
    container = make_container('py')
    data = sales(20000)
    conn.put_object(container, 'sales.csv', data)
    conn.put_object(container, 'job.tar', tar_bytes({'agg.py': AGG}))
    (tmp_path / 'sales.csv').write_bytes(data)
    (tmp_path / 'agg.py').write_bytes(AGG)
    expected = subprocess.run([sys.executable, str(tmp_path / 'agg.py'),
                               str(tmp_path / 'sales.csv')],
                              capture_output=True, check=True).stdout
    job = [{'name': 'agg', 'exec': {'path': 'file://python3:python3', 'args': '/agg.py'},
            'devices': [{'name': 'python3'},
                        {'name': 'image', 'path': f'swift://~/{container}/job.tar'},
                        {'name': 'input', 'path': f'swift://~/{container}/sales.csv'},
                        {'name': 'stdout', 'path': f'swift://~/{container}/totals.csv'}]}]
    resp = post(conn, job)
    assert resp.status_code == 200, resp.text
    assert resp.headers['X-Nexe-Status'] == 'ok', resp.headers
    headers, body = conn.get_object(container, 'totals.csv')
    assert body == expected and body.count(b'\n') == 5
    assert headers['etag'] == hashlib.md5(expected).hexdigest()
    assert '/sales.csv' in ''.join(executed(swift_cluster, container))


def test_python_error_is_a_traceback_and_a_status(swift_cluster: DevCluster,
                                                  conn: Connection, make_container) -> None:
    container = make_container('err')
    traceback = (b'Traceback (most recent call last):\n  File "<string>", line 1, in <module>\n'
                 b'ZeroDivisionError: division by zero\n')
    job = [{'name': 'bad', 'exec': {'path': 'file://python3:python3',
                                    'args': ['-c', 'print("so far"); 1/0']},
            'devices': [{'name': 'python3'},
                        {'name': 'stdout', 'path': f'swift://~/{container}/out.txt'}]}]
    resp = post(conn, job)
    assert resp.status_code == 422, resp.text
    assert resp.headers['X-Nexe-Status'] == 'ok'
    assert resp.headers['X-Nexe-Retcode'] == '1'
    assert resp.headers['X-Nexe-Error'] == 'bad: exit 1: ZeroDivisionError: division by zero'
    assert resp.content == (b'bad: exit 1: ZeroDivisionError: division by zero\n\n'
                            b'--- stderr of bad (its end) ---\n' + traceback)
    assert conn.get_container(container)[1] == []           # a failed job stores nothing
    report = post(conn, job, {'X-Zerovm-Report': 'json'}).json()
    assert report['status'] == 422
    assert report['nodes'][0]['stderr'] == traceback.decode()
    assert report['nodes'][0]['failed'] is True
    assert report['nodes'][0]['error'] == 'exit 1: ZeroDivisionError: division by zero'
    # unless the job asks for it: a declared stderr, stored whatever happened
    job[0]['devices'].append({'name': 'stderr', 'path': f'swift://~/{container}/err.txt',
                              'store': 'always'})
    assert post(conn, job).status_code == 422
    assert [o['name'] for o in conn.get_container(container)[1]] == ['err.txt']
    assert conn.get_object(container, 'err.txt')[1] == traceback
    again = post(conn, [{'name': 'ok', 'exec': {'path': 'file://python3:python3',
                                                'args': ['-c', 'print(2)']},
                         'devices': [{'name': 'stdout'}]}])
    assert again.status_code == 200 and again.content == b'2\n', again.text


def test_lua_filter_over_an_object(swift_cluster: DevCluster, conn: Connection,
                                   make_container) -> None:
    container = make_container('lua')
    text = b'alpha\nbeta\ngamma\n'
    conn.put_object(container, 'words.txt', text)
    resp = post(conn, lua_upper(conn, container, 'words.txt'))
    assert resp.status_code == 200, resp.text
    assert resp.content == b'1: ALPHA\n2: BETA\n3: GAMMA\n'


def lua_upper(conn: Connection, container: str, stdin: str) -> list[dict]:
    """A job of the Lua upper-casing script (its image put in ``container``) over
    ``stdin`` (an object or a wildcard of ``container``)."""
    conn.put_object(container, 'upper.tar', tar_bytes({'upper.lua': LUA_UPPER}))
    return [{'name': 'upper', 'exec': {'path': 'file://lua:lua', 'args': '/upper.lua'},
             'devices': [{'name': 'stdin', 'path': f'swift://~/{container}/{stdin}'},
                         {'name': 'image', 'path': f'swift://~/{container}/upper.tar'},
                         {'name': 'stdout'}]}]


def test_python_script_post_with_a_shebang(swift_cluster: DevCluster, conn: Connection) -> None:
    script = b'#!file://python3:python3\nimport sys\nprint("args", sys.argv[1:])\n'
    resp = post(conn, script, {'Content-Type': 'text/x-python'})
    assert resp.status_code == 200, resp.text
    assert resp.content == b"args []\n"


def test_a_missing_file_of_a_system_image_is_a_clear_error(swift_cluster: DevCluster,
                                                          conn: Connection) -> None:
    resp = post(conn, [{'name': 'x', 'exec': {'path': 'file://python3:bin/python9'},
                        'devices': [{'name': 'stdout'}]}])
    assert resp.status_code == 400, resp.text
    assert 'system image python3 has no file bin/python9 on this server' in resp.text
    resp = post(conn, [{'name': 'x', 'exec': {'path': 'file://perl:perl'},
                        'devices': [{'name': 'stdout'}]}])
    assert resp.status_code == 400 and 'unknown image "perl"' in resp.text, resp.text


def test_python_map_reduce_word_count(swift_cluster: DevCluster, conn: Connection,
                                      make_container) -> None:
    """examples/python-wordcount: a mapper per book where it is stored, two reducers."""
    import collections
    import re
    import zlib
    from pathlib import Path
    src = Path(__file__).resolve().parents[2] / 'examples' / 'python-wordcount'
    container = make_container('wc')
    books = [(' '.join(['swift', 'object', 'node', 'ring', 'Proxy'][(i * j) % 5]
                       for j in range(300 + i)) + '\n').encode() for i in range(3)]
    for i, book in enumerate(books):
        conn.put_object(container, f'books/{i}.txt', book)
    conn.put_object(container, 'wordcount.tar', tar_bytes(
        {'mapper.py': (src / 'mapper.py').read_bytes(),
         'reducer.py': (src / 'reducer.py').read_bytes()}))
    job = (src / 'job.json').read_text().replace('swift://~/pywordcount/', f'swift://~/{container}/')
    resp = post(conn, job)
    assert resp.status_code == 200, resp.text
    assert resp.headers['X-Nexe-Status'].split(',') == ['ok'] * 5, resp.headers
    assert resp.headers['X-Nexe-Retcode'].split(',') == ['0'] * 5, resp.headers
    totals = collections.Counter(w for b in books
                                 for w in re.findall(r"[a-z0-9']+", b.decode().lower()))
    for r in (1, 2):
        expected = ''.join(f'{w} {n}\n' for w, n in sorted(totals.items())
                           if zlib.crc32(w.encode()) % 2 == r - 1).encode()
        assert conn.get_object(container, f'counts/reducer-{r}.txt')[1] == expected


def test_a_repeated_python_job_resumes_from_a_start_up_snapshot(
        swift_cluster: DevCluster, conn: Connection, make_container) -> None:
    """The job's image arrives as the same file each time (kept by content), so a
    worker that ran the job once resumes the next run from its start-up snapshot.
    More runs than the cluster has workers: some worker must serve two.  Start-up
    snapshots are the emulated engine's (``auto`` runs Python natively, from a template
    process but no snapshot), so the job asks for it."""
    container = make_container('snap')
    conn.put_object(container, 'job.tar', tar_bytes({'hi.py': b'import sys, time\n'
                                                  b'print(sys.argv[1], time.time())\n'}))
    job = [{'name': 'hi', 'engine': 'emulated',
            'exec': {'path': 'file://python3:python3', 'args': '/hi.py there'},
            'devices': [{'name': 'python3'}, {'name': 'stdout'},
                        {'name': 'image', 'path': f'swift://~/{container}/job.tar'}]}]
    url, token = conn.get_auth()
    workers = len(swift_cluster.object_ports) * (os.cpu_count() or 1)    # zerovm_maxpool
    runs = []
    for _ in range(workers + 1):
        resp = requests.post(url, data=json.dumps(job), timeout=300, headers={
            'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0', 'X-Zerovm-Report': 'json',
            'Content-Type': 'application/json'})
        assert resp.status_code == 200, resp.text
        [node] = resp.json()['nodes']
        assert node['status'] == 'ok', node
        runs.append((node['accounting']['start'], node['etags']['/dev/stdout']))
    assert {etag for _, etag in runs} == {runs[0][1]}      # same bytes, resumed or not
    assert 'resumed' in {start for start, _ in runs}, runs


def test_every_node_knows_the_object_it_runs_next_to(swift_cluster: DevCluster,
                                                     conn: Connection, make_container) -> None:
    container = make_container('local')
    data = {'a.csv': b'x,1\n', 'b c.csv': b'y,22\nz,3\n'}
    conn.put_object(container, 'a.csv', data['a.csv'], content_type='text/csv',
                    headers={'X-Object-Meta-Region': 'north'})
    conn.put_object(container, 'b c.csv', data['b c.csv'], content_type='text/csv')
    script = ('import os; e = os.environ; print(e["LOCAL_OBJECT"], e["LOCAL_PATH_INFO"], '
              'e["LOCAL_CONTENT_LENGTH"], os.fstat(0).st_size, e["LOCAL_CONTENT_TYPE"], '
              'e["LOCAL_HTTP_ETAG"], e.get("LOCAL_HTTP_X_OBJECT_META_REGION", "-"), '
              'e["LOCAL_DOCUMENT_ROOT"], e["PATH_INFO"], e["REQUEST_METHOD"], e["SCRIPT_NAME"])')
    job = [{'name': 'who', 'exec': {'path': 'file://python3:python3', 'args': ['-c', script]},
            'devices': [{'name': 'python3'},
                        {'name': 'stdin', 'path': f'swift://~/{container}/*.csv'},
                        {'name': 'stdout'}]}]
    resp = post(conn, job)
    assert resp.status_code == 200, resp.text
    lines = [f'on /AUTH_test/{container}/{quote(name)} {len(body)} {len(body)} text/csv '
             f'{hashlib.md5(body).hexdigest()} {"north" if name == "a.csv" else "-"} '
             f'/dev/stdin /AUTH_test POST python3\n'.encode() for name, body in data.items()]
    assert resp.content == b''.join(lines)
    # the response body, told apart: each node's bytes, in the order of X-Nexe-System
    assert resp.headers['X-Nexe-System'] == 'who-1,who-2'
    assert resp.headers['X-Nexe-Body-Bytes'] == f'{len(lines[0])},{len(lines[1])}'
    report = post(conn, job, {'X-Zerovm-Report': 'json'}).json()
    assert [n['object'] for n in report['nodes']] == [
        f'swift://AUTH_test/{container}/a.csv', f'swift://AUTH_test/{container}/b%20c.csv']


def test_a_long_stderr_keeps_its_end(swift_cluster: DevCluster, conn: Connection) -> None:
    """An undeclared stderr has no quota: the program writes all it wants, the report
    keeps the last 64 KiB."""
    script = 'import sys; sys.stderr.write("x" * 300000 + "the end\\n"); sys.exit(3)'
    job = [{'name': 'noisy', 'exec': {'path': 'file://python3:python3', 'args': ['-c', script]},
            'devices': [{'name': 'python3'}]}]
    resp = post(conn, job, {'X-Zerovm-Report': 'json'})
    assert resp.status_code == 422, resp.text
    node, = resp.json()['nodes']
    assert (node['status'], node['retcode'], node['failed']) == ('ok', 3, True)
    assert node['stderr'] == 'x' * (65536 - 8) + 'the end\n'
    assert node['error'].startswith('exit 3: xxx') and node['error'].endswith('the end')


def test_a_wildcard_job_with_an_image_runs_in_batches(swift_cluster: DevCluster,
                                                      conn: Connection, make_container) -> None:
    """Nodes that carry the job's image travel in batches too: the image goes once
    per object server, every node mounts it and reads its own object."""
    container = make_container('luaw')
    texts = {f'in/w{i:02d}.txt': f'word{i}\nmore{i}\n'.encode() for i in range(12)}
    for name, text in texts.items():
        conn.put_object(container, name, text)
    resp = post(conn, lua_upper(conn, container, 'in/*.txt'))
    assert resp.status_code == 200, resp.text
    assert resp.content == b''.join(f'1: WORD{i}\n2: MORE{i}\n'.encode() for i in range(12))
    lines = [line for line in executed(swift_cluster, container) if '/in/w' in line]
    # nodes in batches: those that ran ok (counted on their batch's line) and the others
    # (a line each, ending "(batch)"); a loaded server may refuse a whole batch, whose
    # nodes then run alone, by design: at least one batch ran with the image
    in_batches = batched_ok(lines) + sum(' (batch)' in line for line in lines)
    assert in_batches >= 2, lines

"""Untrusted input on the real cluster: names and metadata that end up in headers, and
zapp bombs (authorised first, unpacked off the proxy's event loop, within limits)."""

from __future__ import annotations

import concurrent.futures
import gzip
import io
import json
import tarfile
import urllib.request

import requests
from swiftclient import Connection

from zerocloud.devcluster import DevCluster


def post(conn: Connection | None, url: str, body: bytes, content_type: str,
         **headers: str) -> requests.Response:
    if conn is not None:
        headers['X-Auth-Token'] = conn.get_auth()[1]
    return requests.post(url, data=body, timeout=120, headers={
        'X-Zerovm-Execute': '1.0', 'Content-Type': content_type, **headers})


def job_with(conn: Connection, name: str, program: str, stdout: dict) -> requests.Response:
    job = [{'name': name, 'exec': {'path': program},
            'devices': [{'name': 'stdin'}, {'name': 'stdout', **stdout}]}]
    return post(conn, conn.get_auth()[0], json.dumps(job).encode(), 'application/json')


def test_non_latin1_names_are_refused_and_meta_is_carried(
        conn: Connection, make_container, guest) -> None:
    container = make_container()
    conn.put_object(container, 'wc', guest('wc').read_bytes())
    program = f'swift://~/{container}/wc'
    resp = job_with(conn, 'wc-ж', program, {})
    assert resp.status_code == 400
    assert resp.text == ('Invalid node name in node group #1: "wc-\\u0436": only ASCII '
                         'characters are allowed (node names are sent in X-Nexe-* response '
                         'headers)\n')
    resp = job_with(conn, 'wc\r\nX-Evil: 1', program, {})
    assert resp.status_code == 400 and 'control characters are not allowed' in resp.text
    resp = job_with(conn, 'wc', program, {'path': f'swift://~/{container}/out',
                                          'meta': {'Source': 'x' * 300}})
    assert resp.status_code == 400
    assert 'value of Source is 300 bytes (UTF-8), at most 256 are allowed' in resp.text
    resp = job_with(conn, 'wc', program, {'path': f'swift://~/{container}/out',
                                          'meta': {'Source': 'Zürich ✓'}})
    assert resp.status_code == 200, resp.text
    headers = conn.head_object(container, 'out')
    assert headers['x-object-meta-source'] == 'Zürich ✓'          # UTF-8, as Swift stores it


def bomb(members: int) -> bytes:
    """A gzipped tar of ``members`` empty files (3.8 MB for 400,000: ~200 MB of tar,
    54 times its size: under zapp_max_ratio). The headers are one template with its
    name and checksum filled in, and gzip compresses fast: tarfile and gzip -9 took
    a minute for it on a loaded machine."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w', format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo('boot/system.map')
        info.size = 2
        tar.addfile(info, io.BytesIO(b'[]'))
        template = tarfile.TarInfo('').tobuf(tarfile.USTAR_FORMAT)
        # the checksum is the sum of the header's bytes, its own 8 counted as spaces
        unnamed = sum(template) - sum(template[148:156]) + 8 * ord(' ')
        for i in range(members):
            name = b'e/%d' % i
            header = bytearray(template)
            header[:len(name)] = name
            header[148:155] = b'%06o\0' % (unnamed + sum(name))
            tar.fileobj.write(header)              # what tar.addfile(TarInfo(name)) writes
            tar.offset += len(header)
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def test_a_zapp_bomb_is_refused_and_the_proxy_stays_responsive(
        swift_cluster: DevCluster, conn: Connection) -> None:
    data = bomb(400_000)
    url = conn.get_auth()[0]
    resp = post(None, url, data, 'application/x-gzip')
    assert resp.status_code == 401
    assert resp.text.startswith('Unauthorized: a valid token is needed to execute jobs in')
    health = f'http://127.0.0.1:{swift_cluster.server("proxy").port}/healthcheck'
    answered_meanwhile = 0
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        job = pool.submit(post, conn, url, data, 'application/x-gzip')
        while not job.done():
            with urllib.request.urlopen(health, timeout=30) as answer:
                assert answer.read() == b'OK'
            answered_meanwhile += not job.done()
        resp = job.result()
    assert resp.status_code == 413
    assert resp.text == 'the request body has more than 10000 members (zapp_max_members)\n'
    assert answered_meanwhile > 0

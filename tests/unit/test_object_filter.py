"""zerocloud.object in front of a real ObjectController on a temporary disk."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
from archives import tar_bytes
from swift.common.storage_policy import POLICIES
from swift.common.swob import Request
from swift.common.utils import Timestamp
from swift.obj.server import ObjectController

from zerocloud import peers, wire
from zerocloud.object import ContentCache, ObjectExecMiddleware
from zerocloud.object import middleware as object_middleware
from zerocloud.object.batch import CHUNK, CHUNK_SECONDS, Chunks
from zvm_core import pool as pool_module

PATH = '/sda1/0/a/c/o'
TEXT = b'hello object\nserver\n'


class Unread(io.RawIOBase):
    """A request body that must not be read: the filter answers before it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        raise AssertionError('the request body was read')


@pytest.fixture
def devices(tmp_path: Path) -> Path:
    (tmp_path / 'sda1').mkdir()
    return tmp_path


@pytest.fixture
def server(devices: Path) -> ObjectController:
    return ObjectController({'devices': str(devices), 'mount_check': 'false',
                             'disable_fallocate': 'true'})


@pytest.fixture
def mw(server: ObjectController, devices: Path):
    mw = ObjectExecMiddleware(server, {'devices': str(devices), 'mount_check': 'false',
                                       'zerovm_maxpool': '1', 'zerovm_maxqueue': '0'})
    yield mw
    if mw._pool is not None:
        mw._pool.close()


def put(app, path: str = PATH, body: bytes = TEXT, **headers) -> None:
    headers = {'X-Timestamp': Timestamp.now().internal, 'Content-Type': 'text/plain',
               **headers}
    resp = Request.blank(path, method='PUT', headers=headers, body=body).get_response(app)
    assert resp.status_int == 201, resp.body


def expiring() -> dict[str, str]:
    """The headers of a PUT of an object that expires at the next second: its
    X-Delete-At after its X-Timestamp, however late the PUT is handled (a timestamp
    taken in ``put`` crossed into that second on a loaded machine: 400, in past)."""
    now = time.time()
    return {'X-Timestamp': Timestamp(now).internal, 'X-Delete-At': str(int(now) + 1)}


def spec(*devices: wire.DeviceSpec, argv=('wc',), **options) -> wire.Member:
    """The ``node.json`` member of a node, as the proxy builds it."""
    node = wire.NodeSpec('wc', list(argv), devices=devices, **options)
    return wire.bytes_member(wire.SPEC, node.to_json())


def execute(app, body: bytes | None = None, members=(), local: bool = True,
            path: str = PATH, **headers):
    if body is None:
        body = b''.join(wire.stream_tar(members))
    headers = {wire.EXECUTE: '1.0', 'Content-Type': 'application/x-tar', **headers}
    if local:
        headers[wire.ACCESS] = 'GET'
    req = Request.blank(path, method='POST', headers=headers, body=body)
    return req.get_response(app)


def execute_unread(app, **headers):
    """An execute request whose body would fail the test if read."""
    req = Request.blank(PATH, method='POST', headers={
        wire.EXECUTE: '1.0', 'Content-Type': 'application/x-tar', wire.ACCESS: 'GET',
        'Content-Length': '4096', **headers})
    req.environ['wsgi.input'] = io.BufferedReader(Unread())
    return req.get_response(app)


def untar(body: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def wc_members(guest, stdin: str = 'local') -> list[wire.Member]:
    devices = [wire.DeviceSpec('stdin', 'r', source=stdin), wire.DeviceSpec('stdout', 'w')]
    return [spec(*devices),
            wire.bytes_member(wire.EXE, guest('wc').read_bytes())]


def test_other_requests_pass_through(mw, server) -> None:
    put(mw)
    resp = Request.blank(PATH).get_response(mw)
    assert resp.body == TEXT
    resp = Request.blank(PATH, method='POST', headers={
        'X-Timestamp': Timestamp.now().internal, 'X-Object-Meta-K': 'v'}).get_response(mw)
    assert resp.status_int == 202
    assert wire.EXECUTE not in resp.headers


def test_runs_the_node_with_the_local_object_as_a_channel(mw, guest) -> None:
    put(mw)
    resp = execute(mw, members=wc_members(guest))
    assert resp.status_int == 200, resp.body
    assert resp.headers[wire.EXECUTE] == '1.0'
    assert resp.headers['X-Nexe-Status'] == 'ok'
    assert resp.headers['X-Nexe-Retcode'] == '0'
    members = untar(resp.body)
    assert list(members) == [wire.REPORT, 'dev/stdout']
    assert members['dev/stdout'] == b'%7d %7d %7d\n' % (2, 3, len(TEXT))
    report = json.loads(members[wire.REPORT])
    assert report['status'] == 'ok' and set(report['etags']) == {'/dev/stdout'}


def test_every_answer_says_the_servers_images_and_limits(mw, guest) -> None:
    """``X-Zerovm-Setup``: the proxy warns when they are not its own (test_proxy_setups)."""
    refused = execute_unread(mw)                # not here: a 404
    put(mw)
    for resp in (refused, execute(mw, members=wc_members(guest))):
        assert resp.headers[wire.SETUP] == mw.config.setup
    assert 'zerovm_maxoutput=' in mw.config.setup


@pytest.mark.parametrize('state', ['missing', 'deleted', 'expired'])
def test_a_local_object_that_is_not_here_is_a_404_before_the_body(mw, state: str) -> None:
    if state == 'deleted':
        put(mw)
        resp = Request.blank(PATH, method='DELETE', headers={
            'X-Timestamp': Timestamp.now().internal}).get_response(mw)
        assert resp.status_int == 204
    elif state == 'expired':
        put(mw, **expiring())
        time.sleep(max(0.0, int(time.time()) + 1.05 - time.time()))
    resp = execute_unread(mw)
    assert resp.status_int == 404
    assert b'/a/c/o is not on this server' in resp.body
    assert resp.headers['Content-Type'] == 'text/plain; charset=UTF-8'     # not swob's html
    assert resp.headers[wire.EXECUTE] == '1.0'


def test_a_manifest_is_not_run_in_place(mw) -> None:
    put(mw, body=b'', **{'X-Object-Manifest': 'c/seg'})
    resp = execute_unread(mw)
    assert resp.status_int == 409
    assert b'X-Object-Manifest' in resp.body


def test_a_missing_disk_is_a_507(mw) -> None:
    req_path = '/sdz9/0/a/c/o'
    resp = execute(mw, body=b'', path=req_path)
    assert resp.status_int == 507
    assert resp.body.startswith(b'<html>') and resp.content_type == 'text/html'    # swob's


def test_a_full_pool_is_a_503_before_the_body(mw) -> None:
    put(mw)
    for account in range(mw.config.pool_size + mw.config.queue):     # one node each
        mw.admission.enter(f'AUTH_{account}')
    resp = execute_unread(mw)
    assert resp.status_int == 503
    assert resp.headers['Retry-After'] == '1'
    assert b'Slot not available' in resp.body
    assert resp.headers['Content-Type'] == 'text/plain; charset=UTF-8'


def test_a_bad_execute_request_is_a_400_in_plain_text(mw) -> None:
    put(mw)
    resp = execute(mw, body=b'not a tar stream' * 64)
    assert resp.status_int == 400, resp.body
    assert resp.headers['Content-Type'] == 'text/plain; charset=UTF-8'


def test_an_account_at_its_share_is_a_503_and_others_still_get_in(server, devices) -> None:
    mw = ObjectExecMiddleware(server, {'devices': str(devices), 'mount_check': 'false',
                                       'zerovm_maxpool': '4', 'zerovm_maxqueue': '4',
                                       'zerovm_account_maxpool': '1',
                                       'zerovm_account_maxqueue': '1'})
    put(mw)
    mw.admission.enter('AUTH_a')
    mw.admission.enter('AUTH_a')
    resp = execute_unread(mw, **{wire.ACCOUNT: 'AUTH_a'})
    assert resp.status_int == 503 and resp.headers['Retry-After'] == '1'
    assert b'account AUTH_a has 2 nodes here, its share (1 running, 1 waiting)' in resp.body
    resp = execute(mw, members=[spec(wire.DeviceSpec('stdin', 'r', source='local'))],
                   **{wire.ACCOUNT: 'AUTH_b'})          # the other account gets in
    assert resp.status_int == 400 and b'program missing' in resp.body
    assert mw.admission.accounts == {'AUTH_a': 2} and mw.admission.total == 2


def test_a_job_at_its_share_is_a_503(server, devices) -> None:
    mw = ObjectExecMiddleware(server, {'devices': str(devices), 'mount_check': 'false',
                                       'zerovm_maxpool': '4', 'zerovm_maxqueue': '4',
                                       'zerovm_job_maxslots': '1'})
    put(mw)
    mw.admission.enter('AUTH_a', 'job1')
    resp = execute_unread(mw, **{wire.ACCOUNT: 'AUTH_a', 'X-Zerocloud-Id': 'job1'})
    assert resp.status_int == 503
    assert b'job job1 has 1 nodes here (zerovm_job_maxslots)' in resp.body
    resp = execute(mw, members=[spec(wire.DeviceSpec('stdin', 'r', source='local'))],
                   **{wire.ACCOUNT: 'AUTH_a', 'X-Zerocloud-Id': 'job2'})     # its other job
    assert resp.status_int == 400 and b'program missing' in resp.body
    mw.admission.leave('AUTH_a', 'job1')
    assert mw.admission.total == 0 and not mw.admission.jobs and not mw.admission.accounts


def test_a_request_over_zerovm_maxinput_is_a_413(server, devices) -> None:
    mw = ObjectExecMiddleware(server, {'devices': str(devices), 'mount_check': 'false',
                                       'zerovm_maxinput': '100'})
    assert execute_unread(mw).status_int == 413


def test_an_object_over_zerovm_maxinput_says_its_size_and_what_to_do(server, devices) -> None:
    """It said only 'is larger than zerovm_maxinput (N bytes)': not by how much, nor
    that splitting the object (a node per part) or the operator's limit is the way out."""
    mw = ObjectExecMiddleware(server, {'devices': str(devices), 'mount_check': 'false',
                                       'zerovm_maxinput': '4096'})
    put(mw, body=b'x' * 5000)
    resp = execute(mw, members=[spec(wire.DeviceSpec('stdin', 'r', source='local')),
                                wire.bytes_member(wire.EXE, b'x')])
    assert resp.status_int == 413
    assert resp.body.decode() == (
        '/a/c/o is 5000 bytes, larger than zerovm_maxinput (4096 bytes), the most a node '
        'reads: split it into smaller objects (a node each), or ask the operator to raise '
        'zerovm_maxinput (object servers and proxy)\n')


@pytest.mark.parametrize(('body', 'says'), [
    (b'not a tar stream' * 64, b'bad execute request'),
    (b''.join(wire.stream_tar([wire.bytes_member(wire.EXE, b'x')])), b'must start with'),
    (b''.join(wire.stream_tar([spec()])),
     b'node spec or program missing'),
])
def test_a_bad_request_body_is_a_400(mw, body: bytes, says: bytes) -> None:
    resp = execute(mw, body=body, local=False)
    assert resp.status_int == 400
    assert says in resp.body
    assert mw.admission.total == 0


def test_a_node_spec_over_the_limit_is_a_413_naming_it(mw) -> None:
    """Not its first MiB parsed (a misleading JSON error, or a spec cut short)."""
    big = spec(argv=('wc', 'x' * wire.SPEC_LIMIT))
    resp = execute(mw, members=[big, wire.bytes_member(wire.EXE, b'x')], local=False)
    assert resp.status_int == 413
    assert resp.body.decode() == (f'node spec ({big[1]} bytes) larger than the '
                                  f'{wire.SPEC_LIMIT} bytes an object server reads\n')
    assert mw.admission.total == 0


def test_a_local_device_needs_the_access_header(mw, guest) -> None:
    put(mw)
    resp = execute(mw, members=wc_members(guest), local=False)
    assert resp.status_int == 400
    assert b'is not GET' in resp.body


def test_a_member_device_and_no_local_object(mw, guest) -> None:
    members = [*wc_members(guest, stdin='member'), wire.bytes_member('dev/stdin', b'a b c\n')]
    resp = execute(mw, members=members, local=False, path='/sda1/3/a/.zerocloud/wc')
    assert resp.status_int == 200, resp.body
    assert untar(resp.body)['dev/stdout'] == b'%7d %7d %7d\n' % (1, 3, 6)


def pipe_members(guest, put_size: int, outputs: bool = True) -> list[wire.Member]:
    """Node B of a graph A -> B -> C: adds 1 to what A sent and passes it on to C."""
    node = spec(wire.DeviceSpec('in/A', 'r', source='member'),
                wire.DeviceSpec('out/C', 'w', put_size=put_size), argv=('B', 'A', 'C', '1'),
                outputs=outputs)
    return [node,
            wire.bytes_member(wire.EXE, guest('graph_pipe').read_bytes()),
            wire.bytes_member('dev/in/A', b'abc' * 1000)]


@pytest.mark.parametrize('outputs', [True, False])
def test_channels_between_nodes_are_members_and_the_node_dir_goes(mw, guest, devices: Path,
                                                                  outputs: bool) -> None:
    resp = execute(mw, members=pipe_members(guest, 1 << 20, outputs), local=False,
                   path='/sda1/3/a/.zerocloud/B')
    assert resp.status_int == 200, resp.body
    members = untar(resp.body)
    report = json.loads(members.pop(wire.REPORT))
    assert report['status'] == 'ok' and set(report['etags']) == {'/dev/out/C'}
    assert members == ({'dev/out/C': b'bcd' * 1000} if outputs else {})
    assert list((devices / 'sda1' / 'tmp').iterdir()) == []


def test_a_channel_to_another_node_has_the_quota_the_proxy_asks(mw, guest) -> None:
    resp = execute(mw, members=pipe_members(guest, 100), local=False,
                   path='/sda1/3/a/.zerocloud/B')
    assert resp.headers['X-Nexe-Status'] == 'quota'
    assert untar(resp.body)['dev/out/C'] == b'bcd' * 33 + b'b'


def test_program_cache_keeps_one_file_per_program_and_evicts_idle_ones(tmp_path) -> None:
    cache = ContentCache(2, str(tmp_path))
    first = cache.receive(io.BytesIO(b'one'), 100)
    assert cache.receive(io.BytesIO(b'one'), 100) == first
    assert Path(first).read_bytes() == b'one'
    second = cache.receive(io.BytesIO(b'two'), 100)
    cache.release(second)
    third = cache.receive(io.BytesIO(b'three'), 100)
    assert not os.path.exists(second)          # idle and least recently used
    assert os.path.exists(first) and os.path.exists(third)   # both in use
    cache.release(first)
    cache.release(first)
    cache.release(third)
    assert sorted(os.listdir(cache.dir)) == sorted(map(os.path.basename, (first, third)))
    with pytest.raises(wire.TooLarge):
        cache.receive(io.BytesIO(b'x' * 101), 100)
    assert sorted(os.listdir(cache.dir)) == sorted(map(os.path.basename, (first, third)))


def test_program_cache_removes_the_directories_of_dead_processes(tmp_path) -> None:
    gone = subprocess.Popen(['true'])              # a pid that has just gone
    gone.wait()
    stale = tmp_path / f'zerocloud-content-{gone.pid}-abc'
    stale.mkdir()
    (stale / 'program').write_bytes(b'x')
    live = tmp_path / f'zerocloud-content-{os.getppid()}-def'
    live.mkdir()
    other = tmp_path / 'zerocloud-content-notapid'
    other.mkdir()
    cache = ContentCache(2, str(tmp_path))
    cache.release(cache.receive(io.BytesIO(b'one'), 100))
    assert os.path.basename(cache.dir).startswith(f'zerocloud-content-{os.getpid()}-')
    assert not stale.exists() and live.exists() and other.exists()


def test_a_one_process_server_starts_its_workers_with_it(server, devices: Path, guest,
                                                         tmp_path: Path) -> None:
    tar = tmp_path / 'img.tar'
    tar.write_bytes(tar_bytes({'hello': guest('hello').read_bytes()}))
    conf = {'devices': str(devices), 'mount_check': 'false', 'zerovm_maxpool': '1',
            'zerovm_sysimage_devices': f'img {tar}', 'zerovm_prewarm': 'img:hello'}
    lazy = ObjectExecMiddleware(server, conf)
    assert lazy._pool is None
    eager = ObjectExecMiddleware(server, dict(conf, workers='0'))
    again = ObjectExecMiddleware(server, dict(conf, workers='0'))   # Swift loads it twice
    try:
        assert eager._pool is not None and again.pool is eager.pool
        [warm] = eager.warm
        assert Path(warm.program).read_bytes() == guest('hello').read_bytes()
        assert (warm.argv, warm.images) == (('hello',), (str(tar),))
    finally:
        eager.pool.close()


@pytest.mark.parametrize('spec', ['img', 'img:', 'nothere:hello', 'img:missing'])
def test_a_bad_prewarm_setting_is_refused(server, devices: Path, guest, tmp_path: Path,
                                          spec: str) -> None:
    tar = tmp_path / 'img.tar'
    tar.write_bytes(tar_bytes({'hello': guest('hello').read_bytes()}))
    with pytest.raises(ValueError, match='zerovm_prewarm'):
        ObjectExecMiddleware(server, {'devices': str(devices), 'zerovm_prewarm': spec,
                                      'zerovm_sysimage_devices': f'img {tar}'})


def test_a_prewarm_of_an_image_not_configured_names_both_options(server, devices: Path, guest,
                                                                 tmp_path: Path) -> None:
    # "zerovm_sysimage_devices / zerovm_prewarm: unknown system image 'lua' (known: img)":
    # not which option named lua, nor which lacks it
    tar = tmp_path / 'img.tar'
    tar.write_bytes(tar_bytes({'hello': guest('hello').read_bytes()}))
    with pytest.raises(ValueError) as e:
        ObjectExecMiddleware(server, {'devices': str(devices), 'zerovm_prewarm': 'lua:lua',
                                      'zerovm_sysimage_devices': f'img {tar}'})
    assert str(e.value) == ("zerovm_prewarm: 'lua:lua' warms up system image 'lua', which "
                            'zerovm_sysimage_devices does not list (it lists: img): add it '
                            'there or drop it from zerovm_prewarm')


def _truncated(tar: Path, guest) -> None:
    """A system image cut short after its program (a copy that stopped half-way): the
    program comes out of it, the image does not mount."""
    whole = tar_bytes({'hello': guest('hello').read_bytes(), 'lib/x': b'y' * 4096})
    tar.write_bytes(whole[:whole.index(b'y' * 512) + 1024])


@pytest.mark.parametrize('system', [True, False])
def test_a_broken_system_image_is_this_server_s_failure(server, devices: Path, guest,
                                                        tmp_path: Path, system: bool) -> None:
    """A system image that is readable but not a whole tar is the operator's to mend:
    the node is ``killed`` by its host (another replica may have the image whole),
    the report naming the image; it ended ``refused`` as if the job's.  The same
    tar sent as the job's own image stays the job's error."""
    tar = tmp_path / 'img.tar'
    _truncated(tar, guest)
    mw = ObjectExecMiddleware(server, {'devices': str(devices), 'mount_check': 'false',
                                       'zerovm_maxpool': '1', 'zerovm_maxqueue': '0',
                                       'zerovm_sysimage_devices': f'img {tar}'})
    try:
        out = wire.DeviceSpec('stdout', 'w')
        if system:
            members = [spec(wire.DeviceSpec('img', 'r'), out, argv=('hello',),
                            program=('img', 'hello'))]
        else:
            members = [spec(wire.DeviceSpec('image', 'r'), out, argv=('hello',)),
                       wire.bytes_member(wire.EXE, guest('hello').read_bytes()),
                       wire.bytes_member(wire.DEV_PREFIX + 'image', tar.read_bytes())]
        resp = execute(mw, members=members, local=False)
        assert resp.status_int == 200, resp.body
        report = json.loads(untar(resp.body)[wire.REPORT])
    finally:
        if mw._pool is not None:
            mw._pool.close()
    if system:
        assert (report['status'], report['host_failure']) == ('killed', True), report
        assert report['message'].startswith('the system image img of this server is broken: '
                                            'cannot mount /dev/img at /'), report
    else:
        assert (report['status'], report['host_failure']) == ('refused', False), report
        assert 'cannot mount /dev/image at /' in report['message']


# -- batches ----------------------------------------------------------------------------------

BATCH_PATH = '/sda1/0/a/.zerocloud/batch'


ENTRIES, MEMBERS, WHOLE = 'entries', 'members', 'whole-specs'    # the forms of a batch


def batch_body(entries: list[wire.BatchEntry], program: bytes, form: str = ENTRIES,
               block: int = wire.ENTRIES_MAX) -> bytes:
    """A batch as the proxy sends it (the first entry's spec as ``batch/spec``, the
    entries what differs, ``block`` at a time in ``batch/entries`` members), or as
    proxies of before did: ``MEMBERS``, a ``batch/<i>`` member per entry;
    ``WHOLE``, no ``batch/spec`` and each entry's whole spec."""
    spec = None if form == WHOLE else wire.SharedSpec(entries[0].spec)
    head = [wire.bytes_member(wire.EXE, program), *(
        [wire.bytes_member(wire.BATCH_SPEC, spec.to_json())] if spec else [])]
    if form != ENTRIES:
        return b''.join(wire.stream_tar([*head, *(
            wire.bytes_member(f'{wire.BATCH_PREFIX}{i}', e.to_json(spec))
            for i, e in enumerate(entries))]))
    data = [e.to_json(spec) for e in entries]
    return b''.join([*wire.stream_members(head), *(
        wire.entries_member(data[i:i + block]) for i in range(0, len(data), block)),
        wire.TAR_END])


def batch_request(app, entries: list[wire.BatchEntry], program: bytes, form: str = ENTRIES,
                  block: int = wire.ENTRIES_MAX):
    """The answer of ``app`` to :func:`batch_body`."""
    req = Request.blank(BATCH_PATH, method='POST',
                        body=batch_body(entries, program, form, block),
                        headers={wire.EXECUTE: '1.0', wire.BATCH: str(len(entries)),
                                 'Content-Type': 'application/x-tar'})
    return req.get_response(app)


@pytest.mark.parametrize('form', [ENTRIES, MEMBERS])
def test_a_batch_spec_over_the_limit_is_a_413_naming_it(mw, form: str) -> None:
    """``batch/spec`` (and a ``batch/<i>`` entry) over what a server reads: 413 as for
    ``node.json``, not its first MiB parsed (a JSON error, 400 'bad batch request')."""
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'n{i}', ['wc', 'x' * wire.SPEC_LIMIT], devices=(wire.DeviceSpec('stdin', 'r'),)))
        for i in (1, 2)]
    resp = batch_request(mw, entries, b'x', form)
    assert resp.status_int == 413, resp.body
    assert b'larger than the %d bytes an object server reads' % wire.SPEC_LIMIT in resp.body
    assert mw.admission.total == 0


def test_a_batch_of_small_entries_sizes_no_nodes_spec(mw, guest, monkeypatch) -> None:
    """Entries whose member is far below the limit (``SharedSpec.fits``) are not sized
    one by one; a node whose spec differs in more than its name, argv and env still is."""
    devices = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    node = wire.NodeSpec('n0', ['wc'], devices=devices)
    specs = [node, replace(node, name='n1', argv=['wc', 'x']), replace(node, env={'A': 'b'}),
             replace(node, name='n3', devices=(*devices, wire.DeviceSpec('y', 'w')))]
    for i in range(len(specs)):
        put(mw, f'/sda1/0/a/c/o{i}')
    sized = []
    spec_size = wire.SharedSpec.spec_size
    monkeypatch.setattr(wire.SharedSpec, 'spec_size',
                        lambda self, spec: sized.append(spec.name) or spec_size(self, spec))
    resp = batch_request(mw, [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', spec)
                              for i, spec in enumerate(specs)], guest('wc').read_bytes())
    assert resp.status_int == 200, resp.body
    members = untar(resp.body)          # (the nodes run as the answer is read)
    assert all(json.loads(members[f'{i}/report.json'])['status'] == 'ok' for i in range(4))
    assert [n for n in sized if n != 'n0'] == ['n3']       # n0: the shared spec's own size


def test_a_batch_entry_whose_merged_spec_is_over_the_limit_is_a_413_as_alone(
        mw, guest, monkeypatch) -> None:
    """An entry's spec, merged (``batch/spec`` and its ``set``), over what a server
    reads as a node's ``node.json``: that node is refused with the words a node alone
    gets from the proxy (its size exact, however it differs: its name, argv, env,
    devices); the others run."""
    devices = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    node = wire.NodeSpec('n0', ['wc'], devices=devices)
    monkeypatch.setattr(wire, 'SPEC_LIMIT', len(node.to_json()) + 20)
    specs = [node, replace(node, name='n1' + 'é' * 10),
             replace(node, argv=['wc', 'x' * 30]), replace(node, env={'BIG': 'x' * 30}),
             replace(node, name='n4', devices=(*devices, wire.DeviceSpec('x' * 20, 'w'))),
             replace(node, name='n5')]
    for i in range(len(specs)):
        put(mw, f'/sda1/0/a/c/o{i}')
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', spec) for i, spec in enumerate(specs)]
    resp = batch_request(mw, entries, guest('wc').read_bytes())
    assert resp.status_int == 200, resp.body
    members = untar(resp.body)
    for i in (1, 2, 3, 4):
        size = len(specs[i].to_json())
        assert size > wire.SPEC_LIMIT
        assert members[f'{i}/error'].decode() == (
            f'413 its node spec is {size} bytes; an object server reads {wire.SPEC_LIMIT} '
            "at most (the spec holds the node's argv and env and a device per node it is "
            'connected to): make them smaller')
    for i in (0, 5):
        assert json.loads(members[f'{i}/report.json'])['status'] == 'ok'
    assert mw.admission.total == 0


def assert_only_spares(mw, devices: Path) -> list[Path]:
    """What batches left in a disk's scratch space: the process's spare output files
    (``batch.Spares``), each empty, in one directory of this process; returned."""
    tmp = devices / 'sda1' / 'tmp'
    dirs = list(tmp.iterdir())
    assert [d.name.split('-')[2] for d in dirs] == [str(os.getpid())] * len(dirs) and len(dirs) < 2
    files = [f for d in dirs for f in d.iterdir()]
    assert all(f.stat().st_size == 0 for f in files)
    assert sorted(f.name for f in mw.spare_files(str(tmp)).files) == sorted(map(str, files))
    return files


@pytest.mark.parametrize(('form', 'block'), [(ENTRIES, 128), (ENTRIES, 2), (MEMBERS, 0),
                                             (WHOLE, 0)])
def test_a_batch_runs_each_node_next_to_its_object(mw, guest, devices: Path,
                                                   form: str, block: int) -> None:
    """Each node of a batch reads its own object, gets its own variables, name and
    argv, whether its entries come in one ``batch/entries`` member or several; the
    same from proxies of before ``batch/entries`` (a ``batch/<i>`` member per entry)
    and before ``batch/spec`` (each entry's whole spec): a rolling upgrade."""
    put(mw, '/sda1/0/a/c/o1', b'one\n', **{'X-Object-Meta-Color': 'red'})
    put(mw, '/sda1/0/a/c/o3', b'three three\n', **{'Content-Type': 'text/x-three'})
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'n{i}', ['args_env', f'arg{i}'], env={'LOCAL_OBJECT': 'job'}, devices=channels,
        local_env=True)) for i in (1, 2, 3)]
    resp = batch_request(mw, entries, guest('args_env').read_bytes(), form, block)
    assert resp.status_int == 200, resp.body
    assert resp.headers[wire.BATCH] == '3' and resp.headers[wire.EXECUTE] == '1.0'
    members = untar(resp.body)
    assert set(members) == {'0/report.json', '0/dev/stdout', '1/error',
                            '2/report.json', '2/dev/stdout'}
    assert members['1/error'].startswith(b'404 /a/c/o2 is not on this server')
    for index, length, ctype in ((0, 4, 'text/plain'), (2, 12, 'text/x-three')):
        assert json.loads(members[f'{index}/report.json'])['status'] == 'ok'
        env = members[f'{index}/dev/stdout'].decode()
        assert f'=LOCAL_PATH_INFO=/a/c/o{index + 1}\n' in env
        assert f'=LOCAL_CONTENT_LENGTH={length}\n' in env
        assert f'=LOCAL_CONTENT_TYPE={ctype}\n' in env
        assert '=LOCAL_OBJECT=on\n' in env                   # the object's, not the job's
        assert f'argv[1]=arg{index + 1}\n' in env
    assert '=LOCAL_HTTP_X_OBJECT_META_COLOR=red\n' in members['0/dev/stdout'].decode()
    assert mw.admission.total == 0
    assert_only_spares(mw, devices)     # scratch space: emptied output files, kept open


def test_a_batch_opens_each_object_as_swift_does_its_disk_looked_up_once(
        mw, guest, server: ObjectController, devices: Path, monkeypatch) -> None:
    """The batch looks each device's path up once (``batch.DiskFiles``), yet each
    object is still opened and checked by Swift: a deleted, expired or quarantined
    one is refused as alone (404), and a node on a disk not here is a 507."""
    put(mw, '/sda1/0/a/c/ok', b'one two\n')
    put(mw, '/sda1/0/a/c/gone')
    Request.blank('/sda1/0/a/c/gone', method='DELETE', headers={
        'X-Timestamp': Timestamp.now().internal}).get_response(mw)
    put(mw, '/sda1/0/a/c/expired', **expiring())
    put(mw, '/sda1/0/a/c/bad', b'twelve bytes')
    for data in (devices / 'sda1').rglob('*.data'):     # the one of 12 bytes: cut short
        if data.stat().st_size == 12:
            data.write_bytes(b'cut')
    time.sleep(max(0.0, int(time.time()) + 1.05 - time.time()))
    manager = server._diskfile_router[POLICIES[0]]
    looked_up = []
    real = manager.get_dev_path
    monkeypatch.setattr(manager, 'get_dev_path', lambda dev: looked_up.append(dev) or real(dev))
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    objects = [('sda1', 'ok'), ('sda1', 'gone'), ('sda1', 'expired'), ('sda1', 'bad'),
               ('sdz9', 'ok'), ('sda1', 'ok')]
    entries = [wire.BatchEntry(dev, 0, f'/a/c/{name}', wire.NodeSpec(f'n{i}', ['wc'],
                                                                    devices=channels))
               for i, (dev, name) in enumerate(objects)]
    members = untar(batch_request(mw, entries, guest('wc').read_bytes()).body)
    for index in (1, 2, 3):
        assert members[f'{index}/error'].startswith(
            f'404 /a/c/{objects[index][1]} is not on this server'.encode())
    assert members['3/error'].endswith(b'(DiskFileQuarantined)')
    assert members['4/error'].startswith(b'507')
    for index in (0, 5):
        assert json.loads(members[f'{index}/report.json'])['status'] == 'ok'
        assert members[f'{index}/dev/stdout'] == b'%7d %7d %7d\n' % (1, 2, 8)
    assert sorted(looked_up) == ['sda1', 'sdz9']


def test_a_batch_node_with_limits_of_its_own_runs_within_them(mw, guest) -> None:
    """The batch works a node's limits out again when they differ from the node's
    before (``BatchRun.settings``): a node asking for little fuel runs out of it,
    and the nodes around it, on the shared limits, do not."""
    put(mw, '/sda1/0/a/c/o', TEXT)
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    entries = [wire.BatchEntry('sda1', 0, '/a/c/o', wire.NodeSpec(
        f'n{i}', ['wc'], devices=channels, limits=wire.NodeLimits(fuel=fuel)))
        for i, fuel in enumerate((None, None, 10, None))]
    members = untar(batch_request(mw, entries, guest('wc').read_bytes()).body)
    statuses = [json.loads(members[f'{i}/report.json'])['status'] for i in range(4)]
    assert statuses == ['ok', 'ok', 'fuel', 'ok']


class Logged:
    """A logger that keeps each line it is given, by level."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = collections.defaultdict(list)

    def __getattr__(self, level: str):
        return lambda msg, *args: self.lines[level].append(msg % args)

    def isEnabledFor(self, level: int) -> bool:      # noqa: N802 (logging's name)
        return True


def test_a_batch_larger_than_a_chunk_runs_every_node_alone(mw, guest, devices: Path) -> None:
    """20 nodes go to the one worker in a few requests (``Chunks``); each is its own
    run: its own output, status and stderr; a node whose object is not here is an error.
    The log has a line for the batch and one for the node that failed (those that
    ran ok each have theirs at debug)."""
    mw.logger = logged = Logged()
    for i in range(20):
        if i != 7:
            put(mw, f'/sda1/0/a/c/o{i}', b'word ' * i)
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'n{i}', ['wc', '-t'] if i == 3 else ['wc'], devices=channels)) for i in range(20)]
    resp = batch_request(mw, entries, guest('wc').read_bytes())
    assert resp.status_int == 200, resp.body
    members = untar(resp.body)
    assert members.pop('7/error').startswith(b'404 /a/c/o7 is not on this server')
    assert set(members) == {f'{i}/{m}' for i in range(20) if i != 7
                            for m in ('report.json', 'dev/stdout')}
    for i in set(range(20)) - {7}:
        assert members[f'{i}/dev/stdout'].split() == [b'0', str(i).encode(),
                                                       str(5 * i).encode()]
        report = json.loads(members[f'{i}/report.json'])
        assert report['status'] == 'ok'
        assert bool(report['stderr']) == (i == 3)     # wc -t: its time, to stderr
    assert json.loads(members['3/report.json'])['stderr'].strip().isdigit()
    failed, batch = logged.lines['info']
    assert failed.startswith('execute /a/c/o7 404 - ') and failed.endswith(' (batch)')
    assert batch.startswith('execute /a/c/o0 200 ok*19 ')
    assert '(batch of 20: 19 200 ok, 1 404 -; ' in batch
    assert sorted(line.split()[1] for line in logged.lines['debug']) == sorted(
        f'/a/c/o{i}' for i in range(20) if i != 7)
    assert mw.admission.total == 0 and mw.pool.replaced == 0
    assert_only_spares(mw, devices)


def test_a_batch_writes_the_files_of_outputs_sent_again_each_node_its_own_bytes(
        mw, guest, devices: Path, monkeypatch) -> None:
    """A file whose output went is written again by a later node (no file made and
    removed per node, none opened again: ``batch.Outputs``): emptied first, so a
    node that writes less than the one before gets only its own bytes."""
    from swift.common.concurrency import sleep

    from zerocloud.object import batch
    from zerocloud.object.batch import BatchRun
    used: list[str] = []
    opened: list[str] = []

    def counted(path, *args, **kwargs):
        opened.append(path)
        return open(path, *args, **kwargs)
    monkeypatch.setattr(batch, 'open', counted, raising=False)
    take, prepare = batch.Outputs.take, BatchRun.prepare

    def recorded(self):
        f, path = take(self)
        used.append(path)
        return f, path

    def later(self, *args):             # the answers of the nodes before go out first
        sleep(0.01)
        return prepare(self, *args)
    monkeypatch.setattr(batch.Outputs, 'take', recorded)
    monkeypatch.setattr(BatchRun, 'prepare', later)
    count = 40
    for i in range(count):
        put(mw, f'/sda1/0/a/c/o{i}', b'word ' * (count - i))      # shorter and shorter
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'n{i}', ['wc'], devices=channels)) for i in range(count)]
    resp = batch_request(mw, entries, guest('wc').read_bytes())
    assert resp.status_int == 200, resp.body
    members = untar(resp.body)
    for i in range(count):
        words = count - i
        assert members[f'{i}/dev/stdout'].split() == [b'0', str(words).encode(),
                                                       str(5 * words).encode()]
    assert len(used) == count and len(set(used)) < count       # files written again
    assert sorted(opened) == sorted(set(used))                  # each opened once
    assert_only_spares(mw, devices)


def test_a_later_batch_writes_the_spare_files_of_the_one_before(mw, guest, devices: Path,
                                                                 monkeypatch) -> None:
    """A batch's output files stay open, emptied, for the next batches of the process
    (``batch.Spares``): a later batch opens none, and its nodes get only their own
    bytes, not what longer outputs of the batch before left."""
    from zerocloud.object import batch
    opened: list[str] = []

    def counted(path, *args, **kwargs):
        opened.append(path)
        return open(path, *args, **kwargs)
    monkeypatch.setattr(batch, 'open', counted, raising=False)
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    for i in range(6):
        put(mw, f'/sda1/0/a/c/o{i}', b'word ' * i)
    for program in ('args_env', 'wc'):         # its environment, long; then 3 counts
        entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
            f'n{i}', [program], devices=channels, local_env=True)) for i in range(6)]
        resp = batch_request(mw, entries, guest(program).read_bytes())
        assert resp.status_int == 200, resp.body
        members = untar(resp.body)
        for i in range(6):
            out = members[f'{i}/dev/stdout']
            if program == 'wc':
                assert out.split() == [b'0', str(i).encode(), str(5 * i).encode()]
                assert len(out) < 30
            else:
                assert len(out) > 200 and f'=LOCAL_PATH_INFO=/a/c/o{i}\n'.encode() in out
        if program == 'args_env':
            first = list(opened)
            assert first and len(assert_only_spares(mw, devices)) == len(first)
    assert opened == first                              # none opened by the second batch
    assert len(assert_only_spares(mw, devices)) == len(first)


def test_output_files_go_back_to_the_spares_only_from_a_batch_that_ended(
        tmp_path: Path, monkeypatch) -> None:
    """A batch that ended gives its files back emptied, up to ``SPARES``, the rest
    removed; one stopped at a hang-up (a run may still write to its files) removes
    them all."""
    from zerocloud.object import batch
    monkeypatch.setattr(batch, 'SPARES', 3)
    spares = batch.Spares(str(tmp_path))
    for ended, kept in ((True, 3), (False, 0)):     # the second takes the 3 and 2 new
        outputs = batch.Outputs(spares)
        taken = [outputs.take() for _ in range(5)]
        assert len({path for _, path in taken}) == 5
        for f, _ in taken:
            f.write(b'secret')
        outputs.give([path for _, path in taken])
        outputs.release(ended)
        left = sorted(p for d in tmp_path.iterdir() for p in d.iterdir())
        assert [str(p) for p in left] == sorted(f.name for f in spares.files)
        assert len(spares.files) == kept and all(p.stat().st_size == 0 for p in left)
        assert all(not f.closed and f.tell() == 0 for f in spares.files)


def test_spare_output_files_go_once_no_batch_used_them_for_a_while(tmp_path: Path,
                                                                    monkeypatch) -> None:
    """Kept open, a spare would keep its disk from being unmounted: the spares go
    ``SPARES_IDLE`` seconds after a batch last took or kept one (a timer looks)."""
    from zerocloud.object import batch
    now = [1000.0]
    monkeypatch.setattr(batch.time, 'monotonic', lambda: now[0])
    spares = batch.Spares(str(tmp_path))

    def a_batch(files: int) -> None:
        outputs = batch.Outputs(spares)
        outputs.give([outputs.take()[1] for _ in range(files)])
        outputs.release(True)

    def fire() -> None:
        """The timer's look, now."""
        spares.timer.cancel()
        spares._expire()
    try:
        a_batch(3)
        assert spares.timer is not None
        now[0] += batch.SPARES_IDLE - 5
        a_batch(2)                      # used again: kept SPARES_IDLE more
        now[0] += batch.SPARES_IDLE - 1
        fire()                          # not idle long enough: it looks again later
        assert spares.timer is not None
        assert len(spares.files) == 3 and len(list(spares_dir(tmp_path).iterdir())) == 3
        now[0] += 1
        fire()
        assert spares.timer is None and spares.files == []
        assert list(tmp_path.iterdir()) == []       # their directory too
        a_batch(1)                      # a later batch makes new ones
        assert len(spares.files) == 1
        running = batch.Outputs(spares)         # a batch that runs longer than that
        held, path = running.take()
        now[0] += batch.SPARES_IDLE + 1
        fire()                                  # its file's directory stays
        assert spares.timer is not None and Path(path).parent.is_dir()
        running.give([path])
        running.release(True)
        now[0] += batch.SPARES_IDLE + 1
        fire()
        assert spares.timer is None and list(tmp_path.iterdir()) == []
    finally:
        if spares.timer is not None:
            spares.timer.cancel()


def spares_dir(disk_tmp: Path) -> Path:
    (only,) = disk_tmp.iterdir()
    return only


def test_a_batch_node_s_declared_stderr_is_an_output_and_its_end_in_the_report(
        mw, guest, devices: Path) -> None:
    for i in range(3):
        put(mw, f'/sda1/0/a/c/o{i}', b'word ' * (i + 1))
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'),
                wire.DeviceSpec('stderr', 'w'))
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'n{i}', ['wc', '-t'] if i != 1 else ['wc'], devices=channels)) for i in range(3)]
    resp = batch_request(mw, entries, guest('wc').read_bytes())
    assert resp.status_int == 200, resp.body
    members = untar(resp.body)
    for i in range(3):
        stderr = members[f'{i}/dev/stderr']
        assert bool(stderr) == (i != 1) and stderr.strip().isdigit() == (i != 1)
        assert json.loads(members[f'{i}/report.json'])['stderr'] == stderr.decode()
        assert members[f'{i}/dev/stdout'].split()[1] == str(i + 1).encode()
    assert_only_spares(mw, devices)


def test_chunks_take_about_chunk_seconds_of_a_worker() -> None:
    """A quick program's nodes go CHUNK at a time, a slow one's one by one; the last
    ones are spread over the workers; every node is handed out once, in order."""
    chunks = Chunks(100, width=4)
    assert chunks.take() == [0]                      # no pace known yet
    chunks.ran(0.001)
    assert len(chunks.take()) == CHUNK               # 50 ms of 1 ms nodes, at most CHUNK
    for _ in range(20):
        chunks.ran(0.02)
    assert len(chunks.take()) == 2                   # 20 ms nodes: 2 make 50 ms
    chunks.ran(5.0)
    assert len(chunks.take()) == 1                   # a slow program: one at a time
    for _ in range(50):
        chunks.ran(0.0001)
    sizes = []
    while taken := chunks.take():
        sizes.append(len(taken))
        assert taken[0] == chunks.next - len(taken)
    assert sum(sizes) == 100 - 1 - CHUNK - 2 - 1 and chunks.take() == []


def test_a_batch_paces_its_chunks_by_the_workers_clock(mw, guest, devices: Path,
                                                      monkeypatch) -> None:
    """A node's pace is how fast the worker ran it (the time it sent its reply,
    ``RunResult.ended``), not when this busy process got to read the reply: read
    0.3 s late, the pace was 0.3 s a node, and a quick program's chunks one node
    each (``Pool.run_many``'s pauses, made of the pace, then made it later still)."""
    from zerocloud.object import batch
    made: list[Chunks] = []

    class Recorded(Chunks):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            made.append(self)
    put(mw, '/sda1/0/a/c/o0', b'one two')
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    entries = [wire.BatchEntry('sda1', 0, '/a/c/o0', wire.NodeSpec('n0', ['wc'],
                                                                   devices=channels))]
    warm = batch_request(mw, entries, guest('wc').read_bytes())   # the worker's template
    assert warm.status_int == 200 and b'0/report.json' in warm.body
    monkeypatch.setattr(batch, 'Chunks', Recorded)
    monkeypatch.setattr(batch, '_PACES', {})        # not the warm batch's pace (pace_of)
    run_many = mw.pool.run_many

    def read_late(*args, **kwargs):
        for result in run_many(*args, **kwargs):
            time.sleep(0.3)                 # the hub served others first
            yield result
    monkeypatch.setattr(mw.pool, 'run_many', read_late)
    resp = batch_request(mw, entries, guest('wc').read_bytes())
    assert resp.status_int == 200, resp.body
    assert json.loads(untar(resp.body)['0/report.json'])['status'] == 'ok'
    assert made[0].pace is not None and made[0].pace < 0.2


def test_a_node_the_worker_never_answered_is_not_paced(mw, guest, devices: Path,
                                                       monkeypatch) -> None:
    """A ``killed`` that ``Pool.run_many`` makes up for a node its worker never answered
    (it died, or overran the node's time) is no node that ran: counted, the time until
    its caller saw the end (a whole timeout) became the pace of a node, or shrank the
    pace of those that ran."""
    from zerocloud.object import batch
    from zvm_core.pool import RunResult, _failed, _report_fields
    made: list[Chunks] = []

    class Recorded(Chunks):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            made.append(self)

    def dead(runs, *, started=None, **_):
        started()
        time.sleep(0.05)
        yield RunResult(_report_fields(_failed('killed', 'the worker died', host_failure=True)))
        yield from (None for _ in runs[1:])
    put(mw, '/sda1/0/a/c/o0', b'one two')
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    entries = [wire.BatchEntry('sda1', 0, '/a/c/o0', wire.NodeSpec('n0', ['wc'],
                                                                   devices=channels))]
    monkeypatch.setattr(batch, 'Chunks', Recorded)
    monkeypatch.setattr(batch, '_PACES', {})        # no earlier batch's (pace_of)
    monkeypatch.setattr(mw.pool, 'run_many', dead)
    resp = batch_request(mw, entries, guest('wc').read_bytes())
    assert resp.status_int == 200, resp.body
    assert json.loads(untar(resp.body)['0/report.json'])['status'] == 'killed'
    assert made[0].pace is None


def test_a_batch_starts_at_the_pace_of_its_programs_last_batch(mw, guest, devices: Path,
                                                                monkeypatch) -> None:
    """A program's first batch in a process hands its first nodes out one at a time,
    until a pace is known; its next batch starts at the pace the last one ended with
    (each one-node chunk was a worker request of its own), and sizes its first chunk
    by it; another program's batch starts as the first one did."""
    from zerocloud.object import batch
    made: list[Chunks] = []

    class Recorded(Chunks):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            made.append(self)
            self.began, self.sizes = self.pace, []

        def take(self) -> list[int]:
            taken = super().take()
            self.sizes.append(len(taken))
            return taken
    monkeypatch.setattr(batch, 'Chunks', Recorded)
    monkeypatch.setattr(batch, '_PACES', {})
    for i in range(12):
        put(mw, f'/sda1/0/a/c/o{i}', b'one two')
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'n{i}', ['wc'], devices=channels)) for i in range(12)]
    for program in ('wc', 'wc', 'hello'):
        resp = batch_request(mw, entries, guest(program).read_bytes())
        assert resp.status_int == 200, resp.body
        assert sorted(untar(resp.body)) == sorted(f'{i}/{m}' for i in range(12)
                                                  for m in ('report.json', 'dev/stdout'))
    first, again, other = made
    assert first.began is None and other.began is None          # no pace known yet
    assert first.sizes[0] == other.sizes[0] == 1
    assert again.began == first.pace is not None
    size = min(CHUNK, -(-12 // again.width), max(1, int(CHUNK_SECONDS / again.began)))
    assert again.sizes[0] == size and sum(again.sizes) == 12


def test_chunks_hand_out_given_back_nodes_first_at_the_pace_now_known() -> None:
    """Nodes a chunk gave back (its worker stopped at its budget) go out again, lowest
    first, before the nodes not handed out yet, in chunks sized by the pace after the
    slow node; every node is handed out once more, none twice."""
    chunks = Chunks(40, width=1)
    assert chunks.take() == [0]
    chunks.ran(0.001)
    assert chunks.take() == list(range(1, 17))
    chunks.ran((3 * 0.001 + 60.0) / 4)          # 1-3 quick, 4 to its timeout
    chunks.give_back(list(range(5, 17)))
    assert chunks.pace > CHUNK_SECONDS          # a node at a time, until quick again
    assert chunks.take() == [5]
    chunks.give_back([5])
    taken = []
    while chunk := chunks.take():
        taken += chunk
        chunks.ran(0.0001)
    assert taken == list(range(5, 40))


def test_a_chunk_whose_nodes_turn_slow_gives_back_those_its_worker_did_not_start(
        mw, guest, devices: Path, monkeypatch) -> None:
    """A chunk sized at its first nodes' pace (1 ms) whose nodes then spin to their
    timeout: its worker stops once it ran CHUNK_BUDGET, and the nodes it did not start
    go out again, at the pace now known.  Every node runs and answers once, with its
    own output; the worker is not replaced; no file is left."""
    from zerocloud.object import batch

    class Quick(Chunks):            # as after a quick node (1 ms)
        def __init__(self, *args) -> None:
            super().__init__(*args)
            self.pace = 0.001
    asked: list[tuple[int, int]] = []       # (runs sent, results) per request
    run_many = mw.pool.run_many

    def counted(runs, **kwargs):
        got = 0
        for result in run_many(runs, **kwargs):
            got += 1
            yield result
        asked.append((len(runs), got))
    for i in range(8):
        put(mw, f'/sda1/0/a/c/o{i}', b'x')
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    warm = batch_request(mw, [wire.BatchEntry('sda1', 0, '/a/c/o0', wire.NodeSpec(
        'n0', ['spin', '0'], devices=channels))], guest('spin').read_bytes())
    assert warm.status_int == 200 and b'0/report.json' in warm.body    # the template
    spares = mw.spare_files(str(devices / 'sda1' / 'tmp')).files

    def held() -> int:
        """Descriptors this process holds but its spare output files."""
        return len(os.listdir('/proc/self/fd')) - len(spares)
    before = held()
    monkeypatch.setattr(mw.pool, 'run_many', counted)
    monkeypatch.setattr(batch, 'Chunks', Quick)
    monkeypatch.setattr(batch, 'CHUNK_BUDGET', 1.0)     # 3 quick nodes fit in it, loaded
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'n{i}', ['spin', '0'] if i < 3 else ['spin'], devices=channels,
        limits=wire.NodeLimits(timeout=1.5 if i == 3 else 0.3))) for i in range(8)]
    resp = batch_request(mw, entries, guest('spin').read_bytes())
    assert resp.status_int == 200, resp.body
    members = untar(resp.body)
    assert set(members) == {f'{i}/{m}' for i in range(8) for m in ('report.json', 'dev/stdout')}
    statuses = [json.loads(members[f'{i}/report.json'])['status'] for i in range(8)]
    assert statuses == ['ok'] * 3 + ['timeout'] * 5
    assert [members[f'{i}/dev/stdout'] for i in range(3)] == [b'spun 0\n'] * 3
    assert asked[0] == (8, 4)       # 0-2 quick, 3 to its timeout: past the budget
    assert all(got == 1 for _, got in asked[1:])    # each starts with a slow one
    assert sum(got for _, got in asked) == 8
    # none more held (under load the warm batch's files were still closing at ``before``)
    assert mw.admission.total == 0 and mw.pool.replaced == 0 and held() <= before
    assert_only_spares(mw, devices)


def test_a_batch_carries_the_job_image_once(mw, guest, devices: Path) -> None:
    """The job's image (``dev/image``) is mounted for every node of the batch; a
    second batch names it by digest (``X-Zerovm-Image``)."""
    image = tar_bytes({'data.txt': b'from the image\n'})
    for i in range(2):
        put(mw, f'/sda1/0/a/c/o{i}', b'x\n')
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'),
                wire.DeviceSpec('output', 'w', random=True),
                wire.DeviceSpec('image', 'r', random=True, source='member'))
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'n{i}', ['fileio', '/data.txt', '/dev/output'], devices=channels)) for i in range(2)]
    program = guest('fileio').read_bytes()
    members = [wire.bytes_member(wire.EXE, program),
               wire.bytes_member(wire.DEV_PREFIX + 'image', image), *(
        wire.bytes_member(f'{wire.BATCH_PREFIX}{i}', e.to_json()) for i, e in enumerate(entries))]
    for headers, body in (({}, members), ({wire.IMAGE: hashlib.sha256(image).hexdigest(),
                                           wire.PROGRAM: hashlib.sha256(program).hexdigest()},
                                          members[2:])):
        req = Request.blank(BATCH_PATH, method='POST', body=b''.join(wire.stream_tar(body)),
                            headers={wire.EXECUTE: '1.0', wire.BATCH: '2', **headers,
                                     'Content-Type': 'application/x-tar'})
        resp = req.get_response(mw)
        assert resp.status_int == 200, resp.body
        got = untar(resp.body)
        for i in range(2):
            assert json.loads(got[f'{i}/report.json'])['status'] == 'ok'
            assert b'pread(10, 0) = 10 [from the i]' in got[f'{i}/dev/stdout']
    assert mw.admission.total == 0


def test_a_batch_is_admitted_as_one_request(mw) -> None:
    mw.admission.total = mw.config.pool_size + mw.config.queue
    resp = execute_unread(mw, **{wire.BATCH: '2'})
    assert resp.status_int == 503 and resp.headers['Retry-After'] == '1'
    assert b'Slot not available' in resp.body


def test_a_batch_counts_as_a_node_of_the_job_account(mw) -> None:
    mw.admission.accounts['AUTH_runner'] = mw.admission.most_per_account
    resp = execute_unread(mw, **{wire.BATCH: '2', wire.ACCOUNT: 'AUTH_runner'})
    assert resp.status_int == 503
    assert b'account AUTH_runner has' in resp.body, resp.body
    resp = execute_unread(mw, **{wire.BATCH: '2', wire.ACCOUNT: 'AUTH_other',
                                 wire.PROGRAM: 'ab' * 32})
    assert resp.status_int == 412               # admitted: the other account has room
    assert mw.admission.total == 0 and 'AUTH_other' not in mw.admission.accounts


@pytest.mark.parametrize(('count', 'says'), [('0', b'1 to 512'), ('x', b'1 to 512'),
                                              ('3', b'2 nodes, X-Zerovm-Batch says 3')])
def test_a_bad_batch_is_a_400(mw, guest, count: str, says: bytes) -> None:
    entry = wire.BatchEntry('sda1', 0, '/a/c/o', wire.NodeSpec('n', ['wc']))
    members = [wire.bytes_member(f'{wire.BATCH_PREFIX}{i}', entry.to_json()) for i in range(2)]
    req = Request.blank(BATCH_PATH, method='POST', body=b''.join(wire.stream_tar(members)),
                        headers={wire.EXECUTE: '1.0', wire.BATCH: count})
    resp = req.get_response(mw)
    assert resp.status_int == 400 and says in resp.body, resp.body
    assert mw.admission.total == 0


@pytest.mark.parametrize(('count', 'data', 'says'), [
    ('1', None, b'more than the 1 nodes X-Zerovm-Batch says'),
    ('3', None, b'2 nodes, X-Zerovm-Batch says 3'),
    ('2', b'{"device": "sda1"}', b'batch/entries: not a JSON array'),
    ('2', b'[{"device": "sda1", "partition": 0, "object": "/a/c"}]', b'is not /<a>/<c>/<o>'),
    ('2', b'[' + b' ' * (wire.ENTRIES_LIMIT + 1) + b']', b'larger than 4194304 bytes'),
])
def test_a_bad_batch_entries_member_is_a_400(mw, count: str, data: bytes | None,
                                             says: bytes) -> None:
    """``batch/entries`` is checked as the ``batch/<i>`` members were: no more entries
    than ``X-Zerovm-Batch``, each one valid, and a member of at most
    ``wire.ENTRIES_LIMIT`` bytes (never read whole beyond that)."""
    entry = wire.BatchEntry('sda1', 0, '/a/c/o', wire.NodeSpec('n', ['wc']))
    member = wire.entries_member([entry.to_json()] * 2) if data is None else wire.tar_member(
        wire.BATCH_ENTRIES, data)
    req = Request.blank(BATCH_PATH, method='POST', body=member + wire.TAR_END,
                        headers={wire.EXECUTE: '1.0', wire.BATCH: count})
    resp = req.get_response(mw)
    assert resp.status_int == 400 and says in resp.body, resp.body
    assert mw.admission.total == 0


def test_an_image_by_digest_not_kept_here_is_a_412_before_the_body(mw) -> None:
    put(mw)
    digest = 'ab' * 32
    resp = execute_unread(mw, **{wire.IMAGE: digest})
    assert resp.status_int == 412
    assert resp.headers[wire.IMAGE] == digest
    assert f'image {digest} is not cached here'.encode() in resp.body
    assert mw.admission.total == 0


def test_zerovm_engine_native_on_a_host_without_it_stops_the_server(devices,
                                                                    monkeypatch) -> None:
    # every node sent here ended `killed` (HTTP 500) with the reason, job after job
    from zvm_core import engines
    monkeypatch.setattr(engines, 'native_unavailable_apart',
                        lambda: 'turned off by the operator (ZVM_NATIVE=off)')
    with pytest.raises(ValueError) as e:
        ObjectExecMiddleware(None, {'devices': str(devices), 'mount_check': 'false',
                                    'zerovm_engine': 'native'})
    assert str(e.value).startswith('zerovm_engine = native: this host cannot run the native '
                                   'engine: turned off by the operator (ZVM_NATIVE=off); set '
                                   'zerovm_engine = auto')
    for engine in ('auto', 'emulated'):         # they run here whatever the host
        ObjectExecMiddleware(None, {'devices': str(devices), 'mount_check': 'false',
                                    'zerovm_engine': engine})


def test_zerovm_engine_native_starts_a_server_whose_sockets_eventlet_patched(
        devices) -> None:
    # the probe ran in the server's main process, where a green socket has no recvmsg
    # (the non-blocking one beneath failed at once, EAGAIN) and select has no poll:
    # `zerovm_engine = native` never started an object server, saying the host could not
    code = ('import eventlet; eventlet.patcher.monkey_patch(all=False, socket=True, '
            'select=True, thread=True); '
            'from zerocloud.object.middleware import ObjectExecMiddleware as M; '
            f'M(None, {{"devices": {str(devices)!r}, "mount_check": "false", '
            '"zerovm_engine": "native"}); print("started")')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout == 'started\n', done.stderr[-2000:]


def test_the_probe_apart_says_why_the_host_cannot(monkeypatch) -> None:
    from zvm_core import engines
    monkeypatch.setenv('ZVM_NATIVE', 'off')
    assert engines.native_unavailable_apart() == ('turned off by the operator '
                                                  '(ZVM_NATIVE=off)')
    monkeypatch.setenv('ZVM_NATIVE', 'on')
    assert engines.native_unavailable_apart() is None


def test_a_node_asking_an_engine_this_host_cannot_run_is_refused(server, devices, guest,
                                                                 monkeypatch) -> None:
    # the worker finds out (the probe costs ~1 s: not in the server's event loop)
    monkeypatch.setenv('ZVM_NATIVE', 'off')
    mw = ObjectExecMiddleware(server, {'devices': str(devices), 'mount_check': 'false',
                                       'zerovm_maxpool': '1'})
    try:
        put(mw)
        members = wc_members(guest)
        members[0] = spec(wire.DeviceSpec('stdin', 'r', source='local'),
                          wire.DeviceSpec('stdout', 'w'), engine='native')
        resp = execute(mw, members=members)
        assert resp.headers['X-Nexe-Status'] == 'refused'
        report = json.loads(untar(resp.body)[wire.REPORT])
        assert report['message'] == ('the native engine cannot run on this host: turned off '
                                     'by the operator (ZVM_NATIVE=off)')
        members[0] = spec(wire.DeviceSpec('stdin', 'r', source='local'),
                          wire.DeviceSpec('stdout', 'w'), engine='auto')
        resp = execute(mw, members=members)         # auto runs it emulated, and says why
        assert resp.headers['X-Nexe-Status'] == 'ok'
        report = json.loads(untar(resp.body)[wire.REPORT])
        assert (report['engine'], report['engine_reason']) == (
            'emulated', 'the native engine cannot run on this host: turned off by the '
                        'operator (ZVM_NATIVE=off)')
    finally:
        mw._pool.close()


def test_a_bad_native_switch_stops_the_server(devices, monkeypatch) -> None:
    # anything but `off` left the namespaces on: a typo went unseen on every node
    monkeypatch.setenv('ZVM_NATIVE_NAMESPACES', 'no')
    with pytest.raises(ValueError, match="ZVM_NATIVE_NAMESPACES='no': expected on or off"):
        ObjectExecMiddleware(None, {'devices': str(devices), 'mount_check': 'false'})


def test_a_system_image_not_built_is_a_warning_at_start(devices, tmp_path,
                                                       monkeypatch) -> None:
    # operator18: a server whose zerovm_sysimage_devices named a tar not built yet started
    # silently; its nodes then got 503 "cannot be read on this server"
    missing = tmp_path / 'images' / 'python3.tar'
    logged = Logged()
    monkeypatch.setattr(object_middleware, 'get_logger', lambda *a, **kw: logged)
    for _ in range(2):      # Swift loads the pipeline twice at start: said once
        ObjectExecMiddleware(None, {'devices': str(devices), 'mount_check': 'false',
                                    'zerovm_sysimage_devices': f'python3 {missing}'})
    assert logged.lines['warning'] == [
        f'zerovm_sysimage_devices: system image python3: {missing} is not a readable file: '
        f'nodes using it get 503 here until it is built (zvm-sysimages build --dir '
        f'{missing.parent}) or the path fixed']


def test_a_prewarmed_system_image_not_built_stops_the_start_saying_how(devices,
                                                                       tmp_path) -> None:
    missing = tmp_path / 'images' / 'python3.tar'
    with pytest.raises(ValueError) as e:
        ObjectExecMiddleware(None, {'devices': str(devices), 'mount_check': 'false',
                                    'zerovm_sysimage_devices': f'python3 {missing}',
                                    'zerovm_prewarm': 'python3:python3'})
    assert str(e.value) == (
        f"zerovm_prewarm: 'python3:python3': system image python3: {missing} is not a "
        f"readable file: build it (zvm-sysimages build --dir {missing.parent}) or drop it "
        f"from zerovm_prewarm")


@pytest.mark.parametrize('variables, says', [
    ({'ZVM_ENGINE': 'nativ'}, "ZVM_ENGINE in the object server's environment: unknown "
                              "engine 'nativ': choose one of auto, native, emulated"),
    ({'ZVM_ENGINE': 'native'},
     'ZVM_ENGINE=native: this host cannot run the native engine: turned off by the '
     'operator (ZVM_NATIVE=off); set zerovm_engine = auto'),
])
def test_the_environments_engine_is_checked_at_start(devices, monkeypatch, variables,
                                                     says) -> None:
    # operator18: a server with zerovm_engine unset and a bad ZVM_ENGINE started, and
    # every node then failed on it
    from zvm_core import engines
    monkeypatch.setattr(engines, 'native_unavailable_apart',
                        lambda: 'turned off by the operator (ZVM_NATIVE=off)')
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as e:
        ObjectExecMiddleware(None, {'devices': str(devices), 'mount_check': 'false'})
    assert str(e.value).startswith(says)


@pytest.mark.parametrize('devices_of_node', [
    (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w')),
    (wire.DeviceSpec('stdin', 'r', source='local', random=True),
     wire.DeviceSpec('stdout', 'w', put_size=7), wire.DeviceSpec('stderr', 'w'),
     wire.DeviceSpec('out/n2', 'w', random=True)),
    (wire.DeviceSpec('image', 'r', source='local'), wire.DeviceSpec('data', 'r', source='local'),
     wire.DeviceSpec('stdout', 'w')),
    (wire.DeviceSpec('image', 'r'), wire.DeviceSpec('input'), wire.DeviceSpec('stdout', 'w')),
    (),
], ids=['wc', 'outputs', 'image', 'members', 'none'])
def test_a_batch_s_nodes_share_one_plan_and_get_the_channels_of_a_node_alone(
        mw, devices: Path, devices_of_node: tuple) -> None:
    """A batch's plan (``NodeRun.plan``, made once for the nodes that share their
    devices) gives each node the channels a node alone gets (in its order, with its
    modes, quotas, mounts and tails), only with its own object, output files and
    members; undeclared standard streams share the batch's /dev/null."""
    from zerocloud.object.batch import Outputs
    from zerocloud.object.middleware import NodeRun
    from zerocloud.object.plan import FIXED
    outputs = Outputs(mw.spare_files(str(devices / 'sda1' / 'tmp')))
    alone, batched = NodeRun(mw, Request.blank('/')), NodeRun(mw, Request.blank('/'))
    for helper in (alone, batched):
        helper.outputs = outputs
    member = devices / 'member'
    member.write_bytes(b'x')
    files = {'dev/image': str(member), 'dev/input': str(member)}
    spec = wire.NodeSpec('n', ['n'], devices=devices_of_node)
    opened: list = []
    with open(os.devnull, 'rb') as null, open(os.devnull, 'rb') as local:
        batched.null_fd = null.fileno

        class Reader:
            _fp = local
        by_itself = alone.channels(spec, files, Reader, str(devices), opened, {})
        plan = batched.plan(spec.devices, files)
        nodes = [batched.lay(plan, Reader, str(devices), opened, {}) for _ in range(2)]
        fd, null_fd = local.fileno(), null.fileno()
    for f in opened:
        f.close()

    def shape(channels, outputs):
        return ([(c.alias, c.mode, c.random, c.quota, c.mount, c.tail, c.notify, c.fd == fd)
                 for c in channels], sorted(name for name, _ in outputs))
    for channels, written in nodes:
        assert shape(channels, written) == shape(*by_itself)
        undeclared = [c for c in channels if c.alias in ('/dev/stdin', '/dev/stdout')
                      and c.alias[5:] not in {d.name for d in devices_of_node}]
        assert all(c.fd == null_fd for c in undeclared)
    first, second = (sorted(path for _, path in written) for _, written in nodes)
    assert not set(first) & set(second)         # each node its own output files
    assert all(step.kind == FIXED for step in plan
               if step.name in peers.STD_CHANNELS
               and step.name not in {d.name for d in devices_of_node})


def test_a_batch_plans_the_channels_of_nodes_that_share_their_devices_once(
        mw, guest, monkeypatch) -> None:
    """The rules of a node's channels run once per batch for nodes that share their
    spec's devices (``NodeRun.plan``), and again for a node whose devices differ."""
    from zerocloud.object.middleware import NodeRun
    planned: list[tuple] = []
    plan = NodeRun.plan

    def counted(self, devices, files):
        planned.append(devices)
        return plan(self, devices, files)
    monkeypatch.setattr(NodeRun, 'plan', counted)
    for i in range(5):
        put(mw, f'/sda1/0/a/c/o{i}', b'word ' * i)
    shared = (wire.DeviceSpec('data', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    other = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'n{i}', ['args_env'], devices=other if i == 4 else shared)) for i in range(5)]
    resp = batch_request(mw, entries, guest('args_env').read_bytes())
    assert resp.status_int == 200, resp.body
    members = untar(resp.body)
    assert all(json.loads(members[f'{i}/report.json'])['status'] == 'ok' for i in range(5))
    assert planned == [shared, other]


def test_a_batch_refuses_nodes_that_read_a_link(mw, guest) -> None:
    """A node of a batch whose device reads a link is answered 400 (the proxy sends it
    alone); its plan is not kept, and the other nodes run."""
    for i in range(2):
        put(mw, f'/sda1/0/a/c/o{i}', b'word ' * i)
    link = (wire.DeviceSpec('in/a', source='link'),)
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'n{i}', ['args_env'], devices=link if i == 0 else ())) for i in range(2)]
    resp = batch_request(mw, entries, guest('args_env').read_bytes())
    assert resp.status_int == 200, resp.body
    members = untar(resp.body)
    assert members['0/error'].startswith(b'400 bad batch request: node n0 reads a link')
    assert json.loads(members['1/report.json'])['status'] == 'ok'


def test_a_batch_opens_dev_null_once_for_its_nodes_undeclared_streams(
        mw, guest, devices: Path, monkeypatch) -> None:
    """Undeclared stdin and stdout are /dev/null, opened once for the batch (it was
    opened, and closed, twice per node), and the nodes still run as alone."""
    from zerocloud.object import batch
    from zerocloud.object import middleware as object_middleware
    nulls: list[str] = []

    def counted(path, *args, **kwargs):
        if path == os.devnull:
            nulls.append(path)
        return open(path, *args, **kwargs)
    monkeypatch.setattr(batch, 'open', counted, raising=False)
    monkeypatch.setattr(object_middleware, 'open', counted, raising=False)
    for i in range(6):
        put(mw, f'/sda1/0/a/c/o{i}', b'word ' * i)
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'n{i}', ['args_env'], devices=(wire.DeviceSpec('data', 'r', source='local'),)))
        for i in range(6)]
    resp = batch_request(mw, entries, guest('args_env').read_bytes())
    assert resp.status_int == 200, resp.body
    members = untar(resp.body)
    assert sorted(members) == sorted(f'{i}/report.json' for i in range(6))
    assert all(json.loads(members[f'{i}/report.json'])['status'] == 'ok' for i in range(6))
    assert nulls == [os.devnull]
    assert mw.admission.total == 0


# -- batch/reports: the answer to a proxy that reads blocks ------------------------------------


def block_results(body: bytes) -> tuple[list[str], dict[int, tuple]]:
    """The member names of a batch's answer, and its nodes' results: (report or error
    text, outputs) by index, from ``batch/reports`` blocks and members of their own."""
    names, results, node = [], {}, {}
    for name, f in wire.read_members(io.BytesIO(body), None):
        names.append(name)
        if name == wire.REPORTS:
            assert f.left <= wire.REPORTS_LIMIT
            for i, report, outputs in wire.read_reports(f.read()):
                assert i not in results
                results[i] = (report, outputs)
            continue
        i, sub = wire.batch_index(name)
        if sub == wire.REPORT:
            node = {}
            results[i] = (wire.NodeReport.from_json(f.read()), node)
        elif sub == wire.ERROR:
            results[i] = (f.read().decode(), {})
        else:
            node[sub[len(wire.DEV_PREFIX):]] = f.read()
    return names, results


def blocks_request(app, entries: list[wire.BatchEntry], program: bytes):
    """:func:`batch_request` of a proxy that reads ``batch/reports`` blocks."""
    req = Request.blank(BATCH_PATH, method='POST', body=batch_body(entries, program),
                        headers={wire.EXECUTE: '1.0', wire.BATCH: str(len(entries)),
                                 wire.READS_REPORTS: '1', 'Content-Type': 'application/x-tar'})
    return req.get_response(app)


def test_a_batch_answers_a_proxy_that_reads_blocks_in_blocks_and_an_old_one_as_before(
        mw, guest, devices: Path, monkeypatch) -> None:
    """The same 20 nodes, for a proxy of before blocks (no ``X-Zerovm-Reports``: a
    node's members each) and for one that reads them: ``batch/reports`` members of at
    most ``REPORTS_NODES`` nodes (4 here), which give the same reports and outputs,
    a node not run (its object not here) as its error's text, one that ran out of
    fuel as its report."""
    monkeypatch.setattr(wire, 'REPORTS_NODES', 4)
    for i in range(20):
        if i != 7:
            put(mw, f'/sda1/0/a/c/o{i}', b'word ' * i)
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'n{i}', ['wc', '-t'] if i == 3 else ['wc'], devices=channels,
        limits=wire.NodeLimits(fuel=100) if i == 5 else wire.NodeLimits()))
        for i in range(20)]
    program = guest('wc').read_bytes()
    old = batch_request(mw, entries, program)
    assert old.status_int == 200 and wire.READS_REPORTS not in old.headers
    old_names, before = block_results(old.body)
    assert wire.REPORTS not in old_names and len(old_names) == 39
    resp = blocks_request(mw, entries, program)
    assert resp.status_int == 200 and resp.headers[wire.READS_REPORTS] == '1'
    names, results = block_results(resp.body)
    assert set(names) == {wire.REPORTS} and 5 <= len(names) <= 20
    assert set(results) == set(before) == set(range(20))
    assert results[7][0].startswith('404 /a/c/o7 is not on this server')
    assert results[5][0].status == 'fuel' and results[5][1] == {'stdout': b''}
    for i in set(range(20)) - {7}:
        (report, outputs), (old_report, old_outputs) = results[i], before[i]
        assert outputs == old_outputs
        assert bool(report.stderr) == (i == 3) == bool(old_report.stderr)
        assert (report.status, report.retcode, report.etags, report.validation,
                report.engine, report.accounting['channels'], report.accounting['fuel']) == (
            old_report.status, old_report.retcode, old_report.etags, old_report.validation,
            old_report.engine, old_report.accounting['channels'],
            old_report.accounting['fuel'])
        assert set(vars(report)) == set(vars(old_report))
        assert report.accounting.keys() == old_report.accounting.keys()
    assert mw.admission.total == 0
    assert_only_spares(mw, devices)


def test_a_batch_node_with_large_outputs_answers_in_members_of_its_own_beside_blocks(
        mw, guest, devices: Path, monkeypatch) -> None:
    """Outputs larger than ``SMALL`` do not go in a block: that node's report and
    outputs are members of their own, as before, and the proxy reads both."""
    from zerocloud.object import batch as object_batch
    monkeypatch.setattr(object_batch, 'SMALL', 100)
    outputs = {i: b'%d\n' % i * (1 if i % 2 else 60) for i in range(4)}   # 120, 2, 120, 2 bytes
    for i, data in outputs.items():
        put(mw, f'/sda1/0/a/c/o{i}', data)
    channels = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'n{i}', ['cat'], devices=channels)) for i in range(4)]
    resp = blocks_request(mw, entries, guest('cat').read_bytes())
    assert resp.status_int == 200
    names, results = block_results(resp.body)
    assert wire.REPORTS in names and sorted(n for n in names if n != wire.REPORTS) == [
        '0/dev/stdout', '0/report.json', '2/dev/stdout', '2/report.json']
    assert {i: out['stdout'] for i, (_, out) in results.items()} == outputs
    assert_only_spares(mw, devices)


def test_a_reports_block_waits_a_little_for_more_results_then_goes_without_them(
        monkeypatch) -> None:
    """Results that come within ``LINGER`` of a block's first share it (a worker's
    nodes end one by one); a block goes once none came for that long, before the
    next result: results still stream, and the proxy's timer still sees them."""
    from types import SimpleNamespace

    from swift.common.concurrency import LightQueue, sleep, spawn

    from zerocloud.object import batch as object_batch
    monkeypatch.setattr(object_batch, 'LINGER', 0.1)
    done = LightQueue()
    report = SimpleNamespace(values=lambda: ['ok'], encoded=lambda: b'["ok"]')
    run = SimpleNamespace(blocks=True, ended=False, outputs=SimpleNamespace(
        small=lambda path: b'out', give=lambda paths: None))
    entries = [SimpleNamespace(spec=SimpleNamespace(outputs=True))] * 3

    third = []

    def feed() -> None:
        done.put((0, (report, [('stdout', 'p0')])))
        sleep(0.02)
        done.put((1, (report, [('stdout', 'p1')])))
        sleep(1.0)
        third.append(True)
        done.put((2, (report, [('stdout', 'p2')])))
    spawn(feed)
    answers = object_batch.BatchRun.answers(run, entries, done)
    first = next(answers)
    assert not third                                    # sent before the third result
    rest = b''.join(answers)

    def nodes(data: bytes) -> list[list[int]]:
        return [[row[0] for row in json.loads(f.read().split(b'\n')[0])['nodes']]
                for name, f in wire.read_members(io.BytesIO(data), wire.REPORTS)]
    assert nodes(first + wire.TAR_END) == [[0, 1]] and nodes(rest) == [[2]]
    assert run.ended


def test_workers_that_die_as_they_start_are_a_503_to_try_later_logged_once(
        mw, guest, tmp_path, monkeypatch) -> None:
    """An installation whose workers die on import: once START_FAILURES died, nodes
    (alone or in a batch) get 503 with Retry-After (the back-off's end), saying what
    is wrong and where its error is; the log says it once, not once per node."""
    broken = tmp_path / 'python3'
    broken.write_text('#!/bin/sh\necho "ImportError: zvm_core._fastcall" >&2\nexit 1\n')
    broken.chmod(0o755)
    monkeypatch.setattr(sys, 'executable', str(broken))
    monkeypatch.setattr(object_middleware, '_POOLS', {})
    monkeypatch.setattr(pool_module, 'BACKOFF', 30.0)
    mw.logger = logged = Logged()
    put(mw)
    for _ in range(pool_module.START_FAILURES):     # each tried: a host failure
        resp = execute(mw, members=wc_members(guest))
        if resp.status_int == 503:
            break
        assert resp.status_int == 200, resp.body
        report = json.loads(untar(resp.body)[wire.REPORT])
        assert report['status'] == 'killed' and report['host_failure']
    for _ in range(3):
        resp = execute(mw, members=wc_members(guest))
        assert resp.status_int == 503 and resp.headers['Retry-After'] in ('29', '30')
        assert resp.body.startswith(b'sandbox workers die as they start (')
        assert b'sandbox worker died as it started (exit status 1): its error is on the ' \
               b'standard error of process' in resp.body
    entries = [wire.BatchEntry('sda1', 0, PATH[len('/sda1/0'):], wire.NodeSpec(
        f'n{i}', ['wc'], devices=(wire.DeviceSpec('stdin', 'r', source='local'),
                                  wire.DeviceSpec('stdout', 'w')))) for i in range(2)]
    members = untar(batch_request(mw, entries, guest('wc').read_bytes()).body)
    assert sorted(members) == ['0/error', '1/error']
    assert all(e.startswith(b'503 sandbox workers die as they start (')
               for e in members.values())
    (line,) = logged.lines['error']
    assert line.startswith('zerocloud: sandbox workers die as they start (')
    assert mw.pool.replaced < pool_module.START_FAILURES


def test_an_image_that_is_not_a_tar_is_the_requests_mistake(mw, guest) -> None:
    # it ended 'fault' (422: "the program crashed") though nothing ran: the job's
    # image device named an object that is not a tar
    put(mw)
    members = [spec(wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'),
                    wire.DeviceSpec('image', 'r', random=True, source='member')),
               wire.bytes_member(wire.EXE, guest('wc').read_bytes()),
               wire.bytes_member(wire.DEV_PREFIX + 'image', b'not a tar archive ' * 64)]
    resp = execute(mw, members=members)
    assert resp.status_int == 200, resp.body
    report = json.loads(untar(resp.body)['report.json'])
    assert report['status'] == 'refused', report
    assert report['message'].startswith('cannot mount /dev/image at /: /dev/image is not a '
                                        'readable tar image: '), report
    assert report['message'].endswith('; the image device must name a tar archive (tar -cf, '
                                      'or a zapp: zc bundle)'), report

"""zerocloud.proxy.response: bodies streamed from spooled outputs, and large jobs' headers."""

from __future__ import annotations

import hashlib
import json
import os
import random

import pytest

from zerocloud import cgiout, deferred, wire
from zerocloud.job import Device, Exec, Node
from zerocloud.proxy import outputs
from zerocloud.proxy.outputs import OutputFile
from zerocloud.proxy.response import (
    CHUNK,
    MAX_HEADER,
    SUMMARY_NODES,
    TIMEOUT_HINT,
    NodeResult,
    nexe_headers,
    report_pieces,
    respond,
)


def result(name: str, stdout: bytes | None = b'', status: str = 'ok', retcode: int | None = 0,
           content_type: str | None = None, stderr: str = '', etag: bool = True) -> NodeResult:
    """A node's result as the dispatcher makes it: its stdout in an ``OutputFile``."""
    node = Node(name, 'g', 1, 1, Exec('swift://a/c/p'),
                [Device('stdin'), Device('stdout', content_type=content_type)])
    res = NodeResult(node, 'Policy-0')
    etags = {'/dev/stdout': hashlib.md5(stdout or b'').hexdigest()} if etag else {}
    res.report = wire.NodeReport(status, retcode, message=f'it said {status}', stderr=stderr,
                                 etags=etags, accounting={
                                     'fuel': 10, 'syscalls': 2,
                                     'channels': {'stdout': {'write_bytes': len(stdout or b'')}}})
    if stdout is not None:
        out = res.outputs['stdout'] = OutputFile()
        out.write(stdout)
    return res


def body_of(resp) -> tuple[bytes, list[int]]:
    """The streamed body and the size of each chunk; closes it as a WSGI server does."""
    chunks = list(resp.app_iter)
    resp.app_iter.close()
    return b''.join(chunks), [len(c) for c in chunks]


# -- the body ------------------------------------------------------------------------------------

def test_the_body_is_each_nodes_output_in_node_order() -> None:
    big = bytes(range(256)) * 2048                    # 512 KiB: many chunks
    results = [result('a', b'first\n'), result('b', None), result('c', big)]
    resp = respond(results, 0.5, False)
    body, sizes = body_of(resp)
    assert body == b'first\n' + big
    assert max(sizes) <= CHUNK                        # sent a buffer at a time
    assert resp.content_length == len(body)
    assert resp.headers['Etag'] == hashlib.md5(body).hexdigest()
    assert resp.headers['X-Nexe-Body-Bytes'] == f'6,0,{len(big)}'
    assert all(r.outputs['stdout'].closed for r in results if r.outputs)


def test_cgi_heads_are_cut_from_the_streamed_body() -> None:
    results = [result('a', b'Status: 201 Made\r\nContent-Type: text/csv\r\n\r\nx,1\n',
                      content_type=cgiout.CGI),
               result('b', b'Status: 404 ignored\n\ny,2\n', content_type=cgiout.CGI),
               result('c', b'z,3\n')]
    resp = respond(results, 0.1, False)
    body, _ = body_of(resp)
    assert (resp.status_int, resp.content_type, body) == (201, 'text/csv', b'x,1\ny,2\nz,3\n')
    assert resp.headers['Etag'] == hashlib.md5(body).hexdigest()
    assert resp.headers['X-Nexe-Body-Bytes'] == '4,4,4'


def test_one_output_takes_the_etag_the_object_server_computed() -> None:
    res = result('a', b'data')
    res.report.etags['/dev/stdout'] = 'from-the-object-server'
    assert respond([res], 0.1, False).headers['Etag'] == 'from-the-object-server'
    res = result('a', b'data', etag=False)           # none reported: hashed here
    assert respond([res], 0.1, False).headers['Etag'] == hashlib.md5(b'data').hexdigest()


def test_a_bad_cgi_head_is_a_422_naming_the_node() -> None:
    resp = respond([result('a', b'no blank line', content_type=cgiout.CGI)], 0.1, False)
    body, _ = body_of(resp)
    assert resp.status_int == 422
    assert body.startswith(b'a: its message/cgi output is not valid: no blank line')
    assert resp.headers['Etag'] == hashlib.md5(body).hexdigest()


def test_a_failed_job_lists_its_failures_and_their_stderr() -> None:
    results = [result('a', b'out'), result('b', b'', retcode=3, stderr='oops\nbad line'),
               result('c', None, status='fault')]
    resp = respond(results, 0.1, False)
    body, _ = body_of(resp)
    assert resp.status_int == 422
    assert body == (b'b: exit 3: bad line\nc: fault: it said fault\n'
                    b'\n--- stderr of b (its end) ---\noops\nbad line\n')
    assert resp.headers['Etag'] == hashlib.md5(body).hexdigest()


def test_a_lua_error_is_summed_up_by_its_message_not_its_traceback() -> None:
    # Lua prints the error first, then "stack traceback:"; the last line ("[C]: in ?")
    # said nothing of what went wrong
    lua = "lua: /bad.lua:1: boom\nstack traceback:\n\t[C]: in function 'error'\n\t[C]: in ?\n"
    assert result('b', b'', retcode=1, stderr=lua).what == 'exit 1: lua: /bad.lua:1: boom'
    python = ('Traceback (most recent call last):\n  File "x"\n'
              'ZeroDivisionError: division by zero\n')
    assert result('b', b'', retcode=1, stderr=python).what == \
        'exit 1: ZeroDivisionError: division by zero'


def test_a_node_refused_by_its_engine_is_a_400_saying_why() -> None:
    # the worker could not run the engine the node asked for: the user's request, not a 500
    resp = respond([result('a', None, status='refused', retcode=None)], 0.1, False)
    body, _ = body_of(resp)
    assert resp.status_int == 400
    assert body == b'a: refused: it said refused\n'


@pytest.mark.parametrize(('message', 'host_failure', 'http'), [
    ('sandbox worker died (killed by signal 9)', True, 503),
    ('native engine: loader: cannot pass the listener (errno 109): this user has too many '
     'descriptors in flight on this host; the host is busy, retry', True, 503),
    ('native engine: the loader exited before starting the guest', True, 503),
    ('host I/O failed in write: No space left on device', True, 503),
    # the flag decides, not the words: a message alike without it is a bug of ours
    ('sandbox worker died (killed by signal 9)', False, 500),
    ('internal error in read: KeyError(3)', False, 500),
    ("sandbox worker error: AttributeError('x')", False, 500),
    ('native engine: internal error: ValueError()', False, 500)])
def test_a_node_killed_by_its_host_is_a_503_a_bug_of_ours_a_500(
        message: str, host_failure: bool, http: int) -> None:
    # a map/reduce job under load: three mappers killed, the others and the reducer ran
    results = [result(f'map-{i}', b'', status='ok') for i in range(1, 4)]
    for i in range(4, 7):
        res = result(f'map-{i}', None, status='killed', retcode=None)
        res.report.message, res.report.host_failure = message, host_failure
        results.append(res)
    resp = respond([*results, result('reduce', b'sum')], 0.1, False)
    assert resp.status_int == http
    assert body_of(resp)[0] == b''.join(f'map-{i}: killed: {message}\n'.encode()
                                        for i in range(4, 7))
    assert resp.headers['X-Nexe-Status'] == 'ok,ok,ok,killed,killed,killed,ok'


def test_the_json_report_is_made_node_by_node_as_json_dumps_would() -> None:
    results = [result('a', b'x'), result('b', b'yz', retcode=1, stderr='e\n')]
    whole = json.dumps({'status': 422, 'seconds': 0.25,
                        'nodes': [r.to_dict() for r in results]}, indent=1).encode()
    assert b''.join(report_pieces(422, 0.25, results)) == whole
    assert b''.join(report_pieces(200, 1.0, [])) == json.dumps(
        {'status': 200, 'seconds': 1.0, 'nodes': []}, indent=1).encode()
    resp = respond(results, 0.25, True)
    body, _ = body_of(resp)
    assert (resp.content_type, body) == ('application/json', whole)
    assert resp.headers['Etag'] == hashlib.md5(whole).hexdigest()


def test_a_response_that_cannot_be_made_closes_the_outputs() -> None:
    res = result('a', b'x')
    res.report = None                                 # breaks the status
    with pytest.raises(AttributeError):
        respond([res], 0.1, False)
    assert res.outputs['stdout'].closed


# -- spooled outputs (zerocloud.proxy.outputs) --------------------------------------------------

def test_an_output_goes_to_disk_beyond_its_memory_share(monkeypatch) -> None:
    monkeypatch.setattr(outputs, 'SPOOL_MEMORY', 10)
    held = OutputFile.held
    out = OutputFile()
    out.write(b'0123456789')
    assert OutputFile.held == held + 10
    out.write(b'abc')                                 # past SPOOL_MEMORY: to disk
    assert OutputFile.held == held
    out.seek(0)
    assert out.read() == b'0123456789abc'
    out.close()
    assert OutputFile.held == held


def test_all_outputs_of_a_process_share_one_memory_budget(monkeypatch) -> None:
    monkeypatch.setattr(outputs, 'PROCESS_MEMORY', OutputFile.held + 100)
    first, second = OutputFile(), OutputFile()
    first.write(b'a' * 80)
    second.write(b'b' * 30)                           # over the budget: on disk at once
    assert OutputFile.held == outputs.PROCESS_MEMORY - 20
    second.seek(0)
    assert second.read() == b'b' * 30
    first.close()
    second.close()
    third = OutputFile()                              # memory is free again
    third.write(b'c' * 90)
    assert OutputFile.held == outputs.PROCESS_MEMORY - 10
    third.close()


def open_fds() -> int:
    """This process's descriptors of files on disk: not sockets and pipes, which a
    thread or finalizer of an earlier test (a pool it left to the GC) may close
    while this test counts."""
    def on_disk(fd: str) -> bool:
        try:
            target = os.readlink(f'/proc/self/fd/{fd}')
        except FileNotFoundError:       # closed since listed (the listing's own, too)
            return False
        return target.startswith('/') and not target.startswith(('/dev/', '/proc/'))
    return sum(map(on_disk, os.listdir('/proc/self/fd')))


def test_outputs_past_memory_share_one_file_descriptor(monkeypatch) -> None:
    monkeypatch.setattr(outputs, 'SPOOL_MEMORY', 16)
    monkeypatch.setattr(outputs._Spill, 'current', None)
    fds = open_fds()
    rng = random.Random(15)
    outs = [OutputFile() for _ in range(200)]
    expected = [bytearray() for _ in outs]
    for _ in range(3000):                             # nodes writing at the same time
        i = rng.randrange(len(outs))
        data = rng.randbytes(rng.randint(0, 50))
        assert outs[i].write(data) == len(data)
        expected[i] += data
    assert open_fds() == fds + 1
    for out, data in zip(outs, expected, strict=True):
        assert out.tell() == out.seek(0, 2) == len(data)
        for _ in range(5):
            start, size = rng.randrange(len(data) + 1), rng.randint(0, 300)
            out.seek(start)
            assert out.read(size) == data[start:start + size]
            assert out.tell() == min(len(data), start + size)
        out.seek(0)
        assert out.read() == data and out.read(10) == b''
    for out in outs:
        out.close()
    assert open_fds() == fds                          # the spill file went with the last


def test_a_spill_file_is_replaced_when_full_and_freed_when_unused(monkeypatch) -> None:
    monkeypatch.setattr(outputs, 'SPOOL_MEMORY', 0)
    monkeypatch.setattr(outputs, 'SPILL_ROTATE', 100)
    monkeypatch.setattr(outputs._Spill, 'current', None)
    fds = open_fds()
    first, second = OutputFile(), OutputFile()
    first.write(b'1' * 150)
    second.write(b'2' * 10)                           # the first spill is full: a new one
    first.write(b'x')                                 # each goes on in its own
    assert open_fds() == fds + 2
    first.close()
    assert open_fds() == fds + 1
    second.seek(0)
    assert second.read() == b'2' * 10
    second.close()
    assert open_fds() == fds


def test_an_output_is_only_appended_to() -> None:
    out = OutputFile()
    out.write(b'abc')
    out.seek(1)
    with pytest.raises(OSError, match='only appended to'):
        out.write(b'x')
    out.close()
    with pytest.raises(ValueError, match='closed'):
        out.read()


# -- headers of large jobs -----------------------------------------------------------------------

def test_a_job_up_to_summary_nodes_has_a_column_per_node() -> None:
    results = [result(f'n{i}', b'x') for i in range(SUMMARY_NODES)]
    headers = nexe_headers(results, 1.0)
    assert headers['X-Nexe-System'].startswith('n0,n1,n2,')
    assert 'X-Nexe-Nodes' not in headers


def test_a_large_job_has_summary_headers_and_the_same_body() -> None:
    results = [result(f'n{i}', b'%d\n' % i) for i in range(SUMMARY_NODES + 2)]
    results[5] = result('n5', b'', retcode=2, stderr='no\n')
    results[7] = result('n7', None, status='timeout', retcode=None)
    resp = respond(results, 2.5, False)
    headers = resp.headers
    assert resp.status_int == 504
    assert headers['X-Nexe-Nodes'] == str(SUMMARY_NODES + 2)
    assert headers['X-Nexe-Failed'] == '2'
    assert headers['X-Nexe-Status-Counts'] == f'ok {SUMMARY_NODES + 1}, timeout 1'
    assert headers['X-Nexe-Retcode-Counts'] == f'0 {SUMMARY_NODES}, 2 1'
    assert headers['X-Nexe-Error'] == f'n5: exit 2: no, n7: it said timeout; {TIMEOUT_HINT}'
    assert headers['X-Nexe-Cdr-Total'].startswith('2.500, ')
    fuel, syscalls, _read, written = map(int, headers['X-Nexe-Cdr-Total'].split(', ')[1].split())
    assert (fuel, syscalls) == (10 * (SUMMARY_NODES + 2), 2 * (SUMMARY_NODES + 2))
    assert written == sum(len(b'%d\n' % i) for i in range(SUMMARY_NODES + 2) if i not in (5, 7))
    for name in ('X-Nexe-System', 'X-Nexe-Status', 'X-Nexe-Etag', 'X-Nexe-Cdr-Line',
                 'X-Nexe-Body-Bytes', 'X-Nexe-Truncated', 'X-Nexe-Replica-Counts'):
        assert name not in headers
    body, _ = body_of(resp)
    assert body.startswith(b'n5: exit 2: no\nn7: timeout')


def replicas(name: str, *statuses: str) -> list[NodeResult]:
    """A node's results, one per replica of ``statuses``, sharing its ``Node``."""
    runs = [result(name, b'x\n' if status == 'ok' else None, status=status,
                   retcode=0 if status == 'ok' else None) for status in statuses]
    for replica, r in enumerate(runs[1:], 2):
        r.node, r.replica = runs[0].node, replica
    return runs


def test_a_large_job_counts_a_node_of_replicas_once_as_the_deferred_state_does() -> None:
    # 501 nodes of 2 replicas said X-Nexe-Nodes: 1003, X-Nexe-Failed: 3; the deferred
    # job's state 502 nodes, 2 failed (a node failed when any replica did)
    count = SUMMARY_NODES // 2 + 1
    nodes = [replicas(f'n{i}', 'ok', 'ok') for i in range(count)]
    nodes[3] = replicas('n3', 'timeout', 'timeout')
    nodes[4] = replicas('n4', 'ok', 'timeout')
    nodes.append(replicas('lone', 'ok'))
    progress = deferred.Progress()
    for group in nodes:
        progress.finished(group)
    resp = respond([r for group in nodes for r in group], 1.0, False)
    headers = resp.headers
    assert (headers['X-Nexe-Nodes'], headers['X-Nexe-Failed']) == (
        str(count + 1), '2') == (str(progress.done + progress.failed), str(progress.failed))
    assert headers['X-Nexe-Replica-Counts'] == f'1 1, 2 {count}'
    # statuses and exit codes count each replica's run, as the small job's columns do
    assert headers['X-Nexe-Status-Counts'] == f'ok {2 * count - 2}, timeout 3'
    assert headers['X-Nexe-Error'].startswith('n3: it said timeout; ')
    body_of(resp)


def test_a_successful_large_job_streams_every_output() -> None:
    results = [result(f'n{i}', b'%d\n' % i) for i in range(SUMMARY_NODES + 1)]
    resp = respond(results, 1.0, False)
    body, _ = body_of(resp)
    assert resp.status_int == 200
    assert body == b''.join(b'%d\n' % i for i in range(SUMMARY_NODES + 1))
    assert resp.headers['Etag'] == hashlib.md5(body).hexdigest()
    assert resp.headers['X-Nexe-Failed'] == '0' and 'X-Nexe-Error' not in resp.headers


def test_the_summary_stays_bounded_whatever_fails() -> None:
    results = [result(f'node-{i}', None, status='fault', retcode=None)
               for i in range(3 * SUMMARY_NODES)]
    headers = nexe_headers(results, 1.0)
    assert all(len(v) <= MAX_HEADER for v in headers.values())
    assert headers['X-Nexe-Error'].endswith(', ...')
    assert headers['X-Nexe-Truncated'] == 'true'
    assert headers['X-Nexe-Status-Counts'] == f'fault {3 * SUMMARY_NODES}'
    assert headers['X-Nexe-Retcode-Counts'] == ''


def test_small_parts_are_read_in_chunks_of_many() -> None:
    """The body of 20,000 nodes of a few bytes each goes in a few chunks, each at most
    CHUNK bytes, not one per node; a large part is still cut at CHUNK."""
    from zerocloud.proxy.response import Part, read_parts
    files = []
    for i in range(20000):
        out = OutputFile()
        out.write(b'%d\n' % i)
        files.append(out)
    big = OutputFile()
    big.write(bytes(range(256)) * 1024)
    parts = [Part(f, 0, f.tell()) for f in files[:10000]] + [Part(big, 3, big.tell() - 3)] + [
        Part(f, 1, f.tell() - 1) for f in files[10000:]]
    chunks = list(read_parts(parts))
    expected = (b''.join(b'%d\n' % i for i in range(10000)) + (bytes(range(256)) * 1024)[3:]
                + b''.join((b'%d\n' % i)[1:] for i in range(10000, 20000)))
    assert b''.join(chunks) == expected
    assert all(len(c) <= CHUNK for c in chunks) and len(chunks) <= len(expected) // CHUNK + 2
    for f in [*files, big]:
        f.close()


def test_a_results_channel_bytes_are_summed_once_per_report(monkeypatch) -> None:
    """The summary, the progress and the CDR header each ask a node's channel bytes:
    summed once for its report, again for a report that replaced it (a retry)."""
    res = result('a', b'hello')
    calls = []
    summed = wire.NodeReport.channel_bytes
    monkeypatch.setattr(wire.NodeReport, 'channel_bytes',
                        lambda self: calls.append(self) or summed(self))
    assert res.channel_bytes() == res.channel_bytes() == (0, 5)
    assert len(calls) == 1
    res.fail('unavailable', 'gone')
    assert res.channel_bytes() == (0, 0)
    assert len(calls) == 2
    assert NodeResult(res.node, 'p', res.report).report is res.report


def test_other_requests_are_served_while_a_json_report_is_made(monkeypatch) -> None:
    """The server's writes of the report's pieces may never wait (for the hub): making
    them gives it turns (``zerocloud.turns``; every node here), so another request's
    green thread runs while a large job's report is made, not only after it."""
    from swift.common.concurrency import sleep, spawn

    from zerocloud import turns
    monkeypatch.setattr(turns, 'SLICE', 0.0)
    events: list = []

    def other() -> None:
        while True:
            events.append('other')
            sleep(0)
    thread = spawn(other)
    for piece in report_pieces(200, 1.0, [result(f'n{i}', b'x') for i in range(20)]):
        events.append(len(piece))
    thread.kill()
    pieces = [i for i, e in enumerate(events) if e != 'other']
    assert 'other' in events[pieces[0]:pieces[-1]]

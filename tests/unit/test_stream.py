"""zerocloud.proxy.stream: a bounded window of nodes in flight, and large jobs answered
from a spool exactly as from memory."""

from __future__ import annotations

import hashlib
import json
import os
import random
from types import SimpleNamespace

import pytest
from swift.common.concurrency import Event, sleep, spawn

from zerocloud import cgiout, wire
from zerocloud.job import Device, Exec, Node, SwiftPath
from zerocloud.proxy import outputs, stream
from zerocloud.proxy.outputs import OutputFile
from zerocloud.proxy.response import SUMMARY_NODES, NodeResult, respond


def result(i: int, stdout: bytes | None, status: str = 'ok', retcode: int | None = 0,
           content_type: str | None = None, stderr: str = '') -> NodeResult:
    """Node ``i`` (id i, named n<i>) as the dispatcher returns it, stdout in an OutputFile."""
    node = Node(f'n{i}', 'n', i, i, Exec('swift://a/c/p'),
                [Device('stdin', path=SwiftPath('a', 'c', f'o{i}')),
                 Device('stdout', content_type=content_type)])
    res = NodeResult(node, 'Policy-0')
    res.report = wire.NodeReport(status, retcode, message=f'it said {status}', stderr=stderr,
                                 etags={'/dev/stdout': hashlib.md5(stdout or b'').hexdigest()},
                                 accounting={'fuel': i, 'syscalls': 2, 'channels': {
                                     'stdout': {'write_bytes': len(stdout or b'')}}})
    res.server, res.seconds = f'10.0.0.{i % 3}:6200/d0', i / 1000
    if stdout is not None:
        res.outputs['stdout'] = OutputFile()
        res.outputs['stdout'].write(stdout)
    return res


def job(count: int, fail: set[int] = frozenset(), cgi: bool = False) -> list[NodeResult]:
    results = []
    for i in range(1, count + 1):
        out = b'%d\n' % i
        if cgi:
            out = b'Content-Type: text/x-counts\n\n' + out
        if i in fail:
            results.append(result(i, out, retcode=3, stderr=f'node {i} gave up\n'))
        else:
            results.append(result(i, out, content_type=cgiout.CGI if cgi else None))
    return results


def answer(resp) -> tuple[int, dict, bytes]:
    body = b''.join(resp.app_iter)
    resp.app_iter.close()
    return resp.status_int, dict(resp.headers), body


@pytest.mark.parametrize('report_json, fail, cgi', [
    (False, set(), False), (False, {5, 900}, False), (True, {7}, False), (False, set(), True)])
def test_a_large_job_answers_from_its_spool_exactly_as_from_memory(report_json, fail, cgi):
    count = SUMMARY_NODES + 20
    expected = answer(respond(job(count, fail, cgi), 3.5, report_json))
    collector = stream.Collector(records=report_json)   # as the middleware makes it
    ended = job(count, fail, cgi)
    random.Random(17).shuffle(ended)                    # nodes end in any order
    for res in ended:
        collector.add([res])
    assert collector.spool is not None and collector.held == []
    recorded = {i + 1 for i in range(count) if collector.spool.where[2 * i] != stream.NONE}
    # the answer reads every node's record (report), the failed ones', or those with a
    # CGI head (their name): only those were written
    assert recorded == (set(range(1, count + 1)) if report_json or cgi else fail)
    got = answer(stream.respond_spooled(collector.spool, 3.5, report_json))
    assert got == expected
    status, headers, body = got
    assert headers['X-Nexe-Nodes'] == str(count)
    if report_json:
        assert [n['name'] for n in json.loads(body)['nodes']] == [
            f'n{i}' for i in range(1, count + 1)]
    elif not fail:
        assert status == 200 and body == b''.join(b'%d\n' % i for i in range(1, count + 1))


def test_a_large_job_of_replicas_counts_each_node_once_from_its_spool_too() -> None:
    count = SUMMARY_NODES // 2 + 10
    def made() -> list[list[NodeResult]]:
        nodes = []
        for i in range(1, count + 1):
            runs = [result(i, b'%d\n' % i, retcode=3 if i == 9 else 0) for _ in range(2)]
            runs[1].node, runs[1].replica = runs[0].node, 2
            nodes.append(runs)
        return nodes
    expected = answer(respond([r for runs in made() for r in runs], 1.5, False))
    collector = stream.Collector(records=False)
    ended = made()
    random.Random(5).shuffle(ended)
    for runs in ended:
        collector.add(runs)
    assert collector.spool is not None
    got = answer(stream.respond_spooled(collector.spool, 1.5, False))
    assert got == expected
    assert (got[1]['X-Nexe-Nodes'], got[1]['X-Nexe-Failed']) == (str(count), '1')
    assert got[1]['X-Nexe-Replica-Counts'] == f'2 {count}'


def test_a_small_job_stays_in_memory_in_node_order() -> None:
    collector = stream.Collector()
    ended = job(SUMMARY_NODES)
    random.Random(3).shuffle(ended)
    for res in ended:
        collector.add([res])
    assert collector.spool is None
    assert [r.node.id for r in collector.in_order()] == list(range(1, SUMMARY_NODES + 1))
    collector.close()


def test_spooled_results_leave_memory() -> None:
    outputs.OutputFile.held = 0
    collector = stream.Collector()
    for res in job(SUMMARY_NODES + 500):
        collector.add([res])
    assert outputs.OutputFile.held == 0                 # every output copied and released
    spool = collector.spool
    assert len(spool) == SUMMARY_NODES + 500
    assert spool.load(1200)[0].outputs['stdout'].read() == b'1200\n'
    collector.close()


def test_a_spool_without_records_keeps_those_of_nodes_with_outputs_to_store() -> None:
    collector = stream.Collector(records=False)
    results = job(SUMMARY_NODES + 2)
    stored = results[6]
    stored.node.devices.append(Device('stderr', path=SwiftPath('a', 'c', 'err-7')))
    stored.outputs['stderr'] = OutputFile()
    stored.outputs['stderr'].write(b'kept')
    for res in results:
        collector.add([res])
    spool = collector.spool
    assert list(spool.stores) == [7]
    assert [i + 1 for i in range(len(results)) if spool.where[2 * i] != stream.NONE] == [7]
    loaded = spool.load(7)[0]
    assert loaded.outputs['stderr'].read() == b'kept' and loaded.node.name == 'n7'
    collector.close()


def test_small_writes_are_gathered_and_made_before_a_read() -> None:
    spool = stream.JobSpool()
    for res in job(3):
        spool.add([res])
    assert spool.pending and os.fstat(spool.fd).st_size == 0      # nothing written yet
    assert spool.load(2)[0].outputs['stdout'].read() == b'2\n'    # flushed first
    assert not spool.pending and os.fstat(spool.fd).st_size == spool.end
    big = job(5)[4]
    big.outputs['stdout'] = OutputFile()
    big.outputs['stdout'].write(b'x' * (stream.GATHER * 2))        # larger: copied, not gathered
    spool.add([big])
    assert b''.join(p.file.read() for p in spool.parts()) == b'1\n2\n3\n' + b'x' * (
        stream.GATHER * 2)
    spool.close()


def test_a_spooled_node_whose_output_failed_to_store_counts_as_failed() -> None:
    collector = stream.Collector()
    for res in job(SUMMARY_NODES + 1):
        collector.add([res])
    spool = collector.spool
    old, new = spool.load(4), spool.load(4)
    new[0].error, new[0].http_status = 'could not store swift://a/c/x: Swift answered 507', 507
    spool.replace(4, old, new)
    status, headers, body = answer(stream.respond_spooled(spool, 1.0, False))
    assert status == 507 and headers['X-Nexe-Failed'] == '1'
    assert headers['X-Nexe-Error'] == 'n4: could not store swift://a/c/x: Swift answered 507'
    assert body.startswith(b'n4: could not store swift://a/c/x: Swift answered 507\n')  # no ok:


def plans(count: int, taken: list[int]):
    for i in range(1, count + 1):
        taken.append(i)
        yield SimpleNamespace(node=Node(f'n{i}', 'n', i, i, Exec('swift://a/c/p'), []),
                              servers=[])


def test_nodes_are_taken_only_as_places_free_and_collected_as_they_end() -> None:
    taken: list[int] = []
    ended: list[int] = []
    window: list[int] = []
    gates = {i: Event() for i in range(1, 31)}

    def run_replica(plan, replica, servers, links) -> NodeResult:
        window.append(len(taken) - len(ended))
        gates[plan.node.id].wait()
        return NodeResult(plan.node)

    def collect(results: list[NodeResult]) -> None:
        ended.append(results[0].node.id)

    def release() -> None:          # the latest nodes taken end first, two at a time
        released: set[int] = set()
        while len(released) < 30:
            sleep(0.001)
            for i in sorted(set(taken) - released, reverse=True)[:2]:
                gates[i].send()
                released.add(i)
    spawn(release)
    stream.run(plans(30, taken), run_replica, collect, concurrency=5)
    assert sorted(ended) == list(range(1, 31)) and ended != sorted(ended)
    assert max(window) <= 5 + 1     # the window in flight, and the next waiting for a place


def test_other_requests_are_served_while_nodes_are_taken_without_a_wait(monkeypatch) -> None:
    """Plans made and taken by batches never wait (for the hub); the loop that takes them
    gives it turns (``zerocloud.turns``; every step here): another request's green
    thread runs while they are taken, not only once the job's last one is."""
    from zerocloud import turns
    monkeypatch.setattr(turns, 'SLICE', 0.0)
    events: list = []
    batched: list = []

    def other() -> None:
        while len(batched) < 30:
            events.append('other')
            sleep(0)
        for plan, finish in batched:
            finish(NodeResult(plan.node))
    spawn(other)
    stream.run(plans(30, events), lambda *args: None, lambda rs: None, concurrency=100,
               submit=lambda plan, finish: batched.append((plan, finish)) is None)
    taken = [i for i, e in enumerate(events) if e != 'other']
    assert len(taken) == 30 and 'other' in events[taken[0]:taken[-1]]


def test_nodes_not_taken_by_a_batch_are_at_most_alone_in_flight() -> None:
    """A batched job's window is large (its nodes wait in batches); the nodes a
    batch does not take (even ids here) each send requests of their own, a few
    at a time."""
    taken: list[int] = []
    batched: list = []
    running, most = [0], [0]

    def submit(plan, finish) -> bool:
        if plan.node.id % 2:
            batched.append((plan, finish))
        return bool(plan.node.id % 2)

    def run_replica(plan, replica, servers, links) -> NodeResult:
        running[0] += 1
        most[0] = max(most[0], running[0])
        sleep(0.002)
        running[0] -= 1
        return NodeResult(plan.node)

    def answer_batches() -> None:
        while len(batched) < 20:
            sleep(0.001)
        for plan, finish in batched:
            finish(NodeResult(plan.node))
    ended: list[int] = []
    spawn(answer_batches)
    stream.run(plans(40, taken), run_replica, lambda rs: ended.append(rs[0].node.id),
               concurrency=40, submit=submit, alone=3)
    assert sorted(ended) == list(range(1, 41)) and most[0] == 3


def test_a_large_output_is_copied_to_the_spool_whole() -> None:
    big = bytes(range(256)) * 8192                      # 2 MiB: copied in a thread
    results = job(SUMMARY_NODES + 1)
    results[3] = result(4, big)
    collector = stream.Collector()
    for res in results:
        collector.add([res])
    status, _headers, body = answer(stream.respond_spooled(collector.spool, 1.0, False))
    assert status == 200
    assert body == b'1\n2\n3\n' + big + b''.join(b'%d\n' % i for i in range(5, SUMMARY_NODES + 2))

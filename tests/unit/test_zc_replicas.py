"""A replicated node (``"replicate": 2``) is one node to ``zc``: the answer gives each
replica a value (``X-Nexe-System: sum,sum``), but only the first returns outputs (the
others' ``X-Nexe-Body-Bytes`` are 0)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

from zerocloud.client import cli, display, jobs, report
from zerocloud.client.cli import build_parser

# two nodes of 3 replicas each, as the proxy answers: each replica a value, in node order
REPLICATED = {'Content-Type': 'text/plain', 'X-Nexe-System': 'sum-1,sum-1,sum-1,sum-2,sum-2,sum-2',
              'X-Nexe-Status': 'ok,ok,ok,ok,ok,ok', 'X-Nexe-Retcode': '0,0,0,0,0,0',
              'X-Nexe-Body-Bytes': '2,0,0,3,0,0'}


def test_split_writes_one_file_per_replicated_node(tmp_path: Path) -> None:
    # it wrote sum-1, an empty sum-1.2 and sum-1.3, then sum-2 and its empty two
    parts = tmp_path / 'parts'
    err = io.StringIO()
    client = cli.Client(build_parser().parse_args(['run', 'job.json', '--split', str(parts)]),
                        err=err)
    client.write_parts(report.parse(200, REPLICATED, b'a\nbb\n'), parts)
    assert sorted(p.name for p in parts.iterdir()) == ['sum-1', 'sum-2']
    assert (parts / 'sum-1').read_bytes() == b'a\n' and (parts / 'sum-2').read_bytes() == b'bb\n'
    assert err.getvalue() == f'{parts}/sum-1: 2\n{parts}/sum-2: 3\n'


def test_the_summary_counts_a_replicated_node_once() -> None:
    # it said "6 nodes: 6 succeeded", the deferred job's state "3 nodes"
    result = report.parse(200, REPLICATED, b'a\nbb\n')
    assert result.totals == (2, 0)
    assert display.summary(result) == ('2 nodes (3 replicas each): 2 succeeded, 0 failed; '
                                       'HTTP 200\n')
    one = report.parse(200, {'X-Nexe-System': 'x,x', 'X-Nexe-Status': 'ok,ok',
                             'X-Nexe-Retcode': '0,0'}, b'')
    assert display.summary(one) == '1 node (2 replicas): 1 succeeded, 0 failed; HTTP 200\n'
    plain = report.parse(200, {'X-Nexe-System': 'a,b', 'X-Nexe-Status': 'ok,ok',
                               'X-Nexe-Retcode': '0,0'}, b'')
    assert display.summary(plain) == '2 nodes: 2 succeeded, 0 failed; HTTP 200\n'


def test_a_node_fails_once_when_its_replicas_disagree_and_others_are_counted_apart() -> None:
    # a node counts as failed when any replica did (as the deferred job's state counts)
    why = 'replicas disagree on /dev/stdout: h1 aaa; h2 bbb'
    result = report.parse(409, {'X-Nexe-System': 'm,m,r,r,one',
                                'X-Nexe-Status': 'mismatch,mismatch,ok,ok,ok',
                                'X-Nexe-Retcode': '0,0,0,0,0',
                                'X-Nexe-Error': f'm: {why}, m: {why}'}, b'')
    assert result.totals == (3, 1)
    assert display.summary(result) == ('3 nodes (some replicated: 5 runs): 2 succeeded, '
                                       '1 failed; HTTP 409\n')


def test_status_counts_as_run_does() -> None:
    stored = json.dumps({'Status': '200 OK', **REPLICATED}).encode()
    result = report.parse_stored(stored, b'a\nbb\n')
    client = cli.Client(build_parser().parse_args(['status', 'job-1']))
    assert client.describe(result) == (
        'job-1: done: 2 nodes (3 replicas each): 2 succeeded, 0 failed; HTTP 200\n')
    assert json.loads(client.describe(result, as_json=True))['nodes'] == {
        'total': 2, 'done': 2, 'failed': 0}


def test_split_stores_the_outputs_of_a_job_whose_runs_pass_the_answers_sizes(
        monkeypatch, tmp_path: Path) -> None:
    # 600 nodes of 2 replicas are 1,200 results: answered without X-Nexe-Body-Bytes, but
    # zc counted 600 nodes, did not store their stdouts, and could not split the answer
    job = [{'name': name, 'exec': {'path': 'swift://~/bin/wc'}, 'replicate': 2,
            'devices': [{'name': 'stdout'}]} for name in ('a', 'b')]
    made: list[str] = []
    client = cli.Client(build_parser().parse_args(['run', 'job.json', '--split',
                                                   str(tmp_path / 'parts')]))
    client._session = SimpleNamespace(account='AUTH_t', ensure_container=made.append,
                                      list_objects=None, list_containers=None)
    objects, runs = client.expand(job)
    assert (objects, runs) == ({'a': '', 'b': ''}, 4)
    monkeypatch.setattr(cli, 'SUMMARY_NODES', 3)
    payload = jobs.Payload(json.dumps(job).encode(), jobs.JSON_TYPE, job)
    stored, prefix = client.spooled(payload, runs)
    assert stored.job[0]['devices'][0]['path'] == f'swift://~/.zvm/{prefix}0/*'
    assert made == ['.zvm']


def test_a_large_replicated_jobs_summary_counts_each_node_once() -> None:
    # 501 nodes of 2 replicas (1,002 runs: a summary) said "1002 nodes: 1000 succeeded,
    # 2 failed" for one node whose replicas disagreed; the deferred job's state 501, 1
    from tests.unit.test_response import body_of, replicas
    from zerocloud.proxy.response import SUMMARY_NODES, respond
    count = SUMMARY_NODES // 2 + 1
    nodes = [replicas(f'n{i}', 'ok', 'ok') for i in range(count)]
    nodes[7] = replicas('n7', 'mismatch', 'mismatch')
    resp = respond([r for group in nodes for r in group], 2.0, False)
    body, _ = body_of(resp)
    got = report.parse(resp.status_int, dict(resp.headers), body)
    assert (got.status, got.totals, got.replicas) == (409, (count, 1), {2: count})
    assert display.summary(got).startswith(
        f'{count} nodes (2 replicas each): {count - 1} succeeded, 1 failed in 2.00 s; HTTP 409')
    assert [n.name for n in got.nodes] == ['n7']
    mixed = report.parse(200, {'X-Nexe-Nodes': '605', 'X-Nexe-Failed': '0',
                               'X-Nexe-Replica-Counts': '1 5, 3 600'}, b'')
    assert display.summary(mixed).startswith(
        '605 nodes (some replicated: 1805 runs): 605 succeeded, 0 failed; HTTP 200')
    plain = report.parse(200, {'X-Nexe-Nodes': '1200', 'X-Nexe-Failed': '0'}, b'')
    assert display.summary(plain).startswith('1200 nodes: 1200 succeeded, 0 failed; ')

"""A hostile user's small job that costs the proxy much (review19).

A ``connect`` between two groups makes one link per pair of their nodes: the
product of their counts.  The proxy wired every link of a connected job before
it checked a node's channels (at most 253, ``zerocloud.peers.check_peers``), in
its event loop: 70 bytes of JSON (``count`` 50,000 connected to ``count``
50,000, within ``zerovm_maxnodes``) made it build 2.5 billion links, tens of GB
of lists, for minutes, while every other request of that proxy process waited.

A job with any ``connect`` is expanded whole (its graph needs every node), also
its unconnected groups: 11 KB of JSON (a group of 99,000 nodes whose three
written devices carry Swift's most metadata, beside a connected pair) held 1.1 GB
of the proxy (each node copied the metadata) and its event loop for the whole
expansion (seconds: no turn given).
"""

from __future__ import annotations

import json

import pytest
from swift.common.swob import Request
from test_proxy_filter import FakeSwift, Servers, job, objects, ok, post

from zerocloud import peers, turns
from zerocloud.job import JobError, Node, expand, parse_job
from zerocloud.proxy.dispatch import Dispatcher


@pytest.fixture
def swift() -> FakeSwift:
    fake = FakeSwift()
    fake.add('/bin/x', b'\x7fELF program')
    return fake


def wide(count: int) -> list[dict]:
    return [{'name': 'a', 'exec': {'path': 'swift://~/bin/x'}, 'count': count, 'connect': ['b']},
            {'name': 'b', 'exec': {'path': 'swift://~/bin/x'}, 'count': count}]


def test_a_connect_too_wide_is_refused_before_any_link_is_made() -> None:
    asked: list[tuple[str, int, int, bool]] = []

    def check(node: Node, reads: int, writes: int) -> None:
        asked.append((node.name, reads, writes, bool(node.writes_to or node.reads_from)))
        peers.check_peers(node, reads, writes)
    with pytest.raises(JobError) as err:
        expand(parse_job(wide(3000), 'AUTH_a'), None, None, check_peers=check)
    assert asked == [('a-1', 0, 3000, False)]           # the first node: nothing wired
    assert str(err.value).startswith('Too many channels for node a-1: 3003 (reads from 0 '
                                     'nodes, writes to 3000)')


def test_peers_counted_before_wiring_are_those_wired() -> None:
    """What ``check_peers`` is told, for the first node of each group, is what the
    wiring then makes for every node of it (several targets, a target read by several
    groups)."""
    job = [{'name': 'm', 'count': 3, 'connect': ['r', 's']}, {'name': 'n', 'connect': ['r']},
           {'name': 'r', 'count': 2, 'connect': ['t']}, {'name': 's'}, {'name': 't'}]
    told = {}
    nodes = expand(parse_job([{'exec': {'path': 'swift://a/c/p'}, **g} for g in job], 'a'),
                   None, None, check_peers=lambda n, r, w: told.setdefault(n.name, (r, w)))
    assert set(told) == {'m-1', 'n', 'r-1', 's', 't'}
    assert all(told[first] == (len(n.reads_from), len(n.writes_to)) for n in nodes
               for first in told if first.split('-')[0] == n.group)
    assert told['r-1'] == (4, 1) and told['m-1'] == (0, 3)


def test_the_proxy_refuses_a_wide_connect_unwired(mw, monkeypatch) -> None:
    wired = []
    check = peers.check_peers

    def spy(node: Node, reads: int, writes: int) -> None:
        wired.append(bool(node.writes_to or node.reads_from))
        check(node, reads, writes)
    monkeypatch.setattr(peers, 'check_peers', spy)
    resp = Request.blank('/v1/AUTH_a', method='POST', body=json.dumps(wide(50_000)).encode(),
                         headers={'X-Zerovm-Execute': '1.0',
                                  'Content-Type': 'application/json'}).get_response(mw)
    assert resp.status_int == 400, resp.body
    assert resp.body.startswith(b'Too many channels for node a-1: 50003 (reads from 0 nodes, '
                                b'writes to 50000)')
    assert wired == [False]


def big_and_connected(count: int, meta: dict | None = None) -> list[dict]:
    outs = [{'name': name, 'path': f'swift://~/{name}/*', 'meta': meta or {}}
            for name in ('stdout', 'stderr', 'output')]
    return [{'name': 'big', 'exec': {'path': 'swift://~/bin/x'}, 'count': count,
             'devices': outs},
            {'name': 'a', 'exec': {'path': 'swift://~/bin/x'}, 'connect': ['b']},
            {'name': 'b', 'exec': {'path': 'swift://~/bin/x'}}]


def test_the_nodes_of_a_group_share_its_metadata() -> None:
    meta = {f'k{i:02d}': 'v' * 30 for i in range(90)}
    nodes = expand(parse_job(big_and_connected(3, meta), 'AUTH_a'), None, None)
    for i in range(3):
        assert len({id(n.devices[i].meta) for n in nodes[:3]}) == 1
        assert nodes[0].devices[i].meta == meta


def test_expanding_takes_a_step_per_node_made_and_wired() -> None:
    steps = []
    nodes = expand(parse_job(big_and_connected(5), 'AUTH_a'), None, None,
                   step=lambda: steps.append(1))
    assert len(steps) == len(nodes) + 1         # 7 made, 1 wired (a)


def test_the_proxy_gives_turns_while_it_expands_a_connected_job(mw, swift,
                                                                 monkeypatch) -> None:
    """The program is missing: the job is refused (404) before any node is planned,
    after it was expanded, a turn offered per node."""
    del swift.objects['/v1/AUTH_a/bin/x']
    taken = []
    monkeypatch.setattr(turns, 'take', lambda: taken.append(1))
    resp = Request.blank('/v1/AUTH_a', method='POST',
                         body=json.dumps(big_and_connected(3000)).encode(),
                         headers={'X-Zerovm-Execute': '1.0',
                                  'Content-Type': 'application/json'}).get_response(mw)
    assert resp.status_int == 404, resp.body
    assert len(taken) >= 3002


def test_two_writers_found_after_the_first_nodes_ran_store_nothing(
        mw, swift, monkeypatch) -> None:
    """A streamed job finds that two of its nodes write one object only as it makes the
    later one, a chunk after the first (which may be running): the job is a 400 naming
    both, and no output of a node that ran is stored."""
    from zerocloud.proxy import middleware
    monkeypatch.setattr(middleware, 'CHUNK_NODES', 2)
    swift.add('/bin/wc', b'\x7fELF program')
    names = objects(swift, 3)
    clash = f'swift://~/out{names[2][2:]}'
    wild = job(stdin='swift://~/c/item*', stdout={'name': 'stdout', 'path': 'swift://~/out/item*'})
    late = job(stdout={'name': 'stdout', 'path': clash})[0] | {'name': 'late'}
    swift.add('/c/data')
    monkeypatch.setattr(Dispatcher, 'exchange', Servers(d0=ok(), d1=ok()))
    monkeypatch.setattr(middleware, 'batchable', lambda plan: False)
    resp = post(mw, wild + [late])
    assert resp.status_int == 400, resp.body
    assert resp.body == (f'Output {clash.replace("~", "AUTH_a")} written by both wc-3 (stdout) '
                         f'and late (stdout)\n').encode()
    assert [c for c in swift.calls if c[0] == 'PUT'] == []

"""zerocloud.graph: checks, node-to-node spools, replica votes and dataflow order.

``run`` is driven by a scripted ``run_replica`` that records when each
replica started and what it was given, on green threads as in the proxy.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pytest
from swift.common.concurrency import sleep

from zerocloud import graph, wire
from zerocloud.job import JobError, Node, expand, parse_job


def nodes(*groups: dict) -> list[Node]:
    job = [{'exec': {'path': 'swift://a/c/p'}, **g} for g in groups]
    return expand(parse_job(job, 'a'), lambda a, c: [], lambda a: [])


class Result:
    def __init__(self, node: Node, status: str = 'ok', etags: dict | None = None,
                 retcode: int = 0, server: str = '') -> None:
        self.node, self.server, self.error = node, server, ''
        self.report = {'status': status, 'retcode': retcode, 'etags': etags or {}}
        self.outputs: dict = {}
        self.replica, self.links, self.closed = 1, {}, False

    @property
    def status(self) -> str:
        return self.report['status']

    @property
    def failed(self) -> bool:
        return self.status != 'ok'

    def fail(self, status: str, message: str, http_status: int | None = None) -> None:
        self.report = {'status': status, 'retcode': None, 'message': message}
        self.error = message

    def close(self) -> None:
        self.closed = True
        for f in self.outputs.values():
            f.close()


@dataclass
class Plan:
    node: Node
    servers: list = field(default_factory=lambda: [
        {'ip': '10.0.0.1', 'port': 6200 + i} for i in range(3)])


class Script:
    """run_replica: each node writes ``<name>-><peer>`` to each peer, sleeping a little;
    ``fail`` names nodes that end ``fault``."""

    def __init__(self, fail: tuple[str, ...] = (), etags: dict | None = None) -> None:
        self.fail, self.etags = fail, etags or {}
        self.log: list[tuple[str, int, str, dict]] = []
        self.running = 0

    def __call__(self, plan: Plan, replica: int, servers, links) -> Result:
        server = next(iter(servers))
        name = plan.node.name
        self.log.append((name, replica, f'{server["port"]}',
                         {k: f.read() for k, (f, _size) in links.items()}))
        for f, _size in links.values():
            f.seek(0)
        sleep(0.001)
        res = Result(plan.node, 'fault' if name in self.fail else 'ok',
                     self.etags.get((name, replica)), server=f'{server["port"]}')
        spool = graph.LinkSpool()
        for peer in plan.node.writes_to:
            res.outputs[graph.OUT + peer] = spool.add(io.BytesIO(f'{name}->{peer}'.encode()),
                                                      1 << 20)
        return res


def skipped(plan: Plan, replica: int, why: str) -> Result:
    res = Result(plan.node)
    res.fail(graph.SKIPPED, why)
    res.replica = replica
    return res


def run(ns: list[Node], script: Script, **kwargs) -> list[Result]:
    return graph.run([Plan(n) for n in ns], script, skipped,
                     **{'max_spool': 1 << 20, 'concurrency': 8, **kwargs})


# -- checks --------------------------------------------------------------------------------

@pytest.mark.parametrize(('groups', 'message'), [
    ([{'name': 'm', 'count': 2, 'connect': ['m']}],
     'Cannot connect m to itself (m -> m): its nodes would have to run at the same time'),
    ([{'name': 'a', 'connect': ['b']}, {'name': 'b', 'connect': ['c']},
      {'name': 'c', 'connect': ['a']}], 'connect makes a cycle (a -> b -> c -> a)'),
    ([{'name': 'a', 'connect': ['b', 'c']}, {'name': 'b', 'connect': ['c']}, {'name': 'c'}],
     None),
])
def test_cycles_are_refused(groups: list[dict], message: str | None) -> None:
    parsed = parse_job([{'exec': {'path': 'swift://a/c/p'}, **g} for g in groups], 'a')
    if message is None:
        graph.check_groups(parsed)
        return
    with pytest.raises(JobError) as err:
        graph.check_groups(parsed)
    assert str(err.value).startswith(message)


def test_a_long_chain_is_checked_without_recursion() -> None:
    groups = [{'name': f'g{i}', 'exec': {'path': 'swift://a/c/p'}, 'connect': [f'g{i + 1}']}
              for i in range(5000)] + [{'name': 'g5000', 'exec': {'path': 'swift://a/c/p'}}]
    graph.check_groups(parse_job(groups, 'a', max_size=1 << 20))


def test_a_node_with_more_channels_than_a_worker_takes_is_refused() -> None:
    ok = nodes({'name': 'm', 'count': graph.MAX_CHANNELS - 3, 'connect': ['r']},
               {'name': 'r', 'devices': [{'name': 'stdout'}]})
    graph.check_nodes(ok)
    assert graph.channel_count(ok[-1]) == graph.MAX_CHANNELS
    big = nodes({'name': 'm', 'count': graph.MAX_CHANNELS - 2, 'connect': ['r']}, {'name': 'r'})
    with pytest.raises(JobError) as err:
        graph.check_nodes(big)
    assert str(err.value) == (f'Too many channels for node r: {graph.MAX_CHANNELS + 1} (reads '
                              f'from {graph.MAX_CHANNELS - 2} nodes, writes to 0); a node may '
                              f'have at most {graph.MAX_CHANNELS}')


def test_link_devices_name_the_peers() -> None:
    a, b = nodes({'name': 'a', 'connect': ['b']}, {'name': 'b'})
    assert graph.link_devices(a, 100) == [{'name': 'out/b', 'access': 'w', 'random': False,
                                           'source': None, 'put_size': 100}]
    assert graph.link_devices(b, 100) == [{'name': 'in/a', 'access': 'r', 'random': False,
                                           'source': 'member'}]


# -- spools --------------------------------------------------------------------------------

def test_a_spool_holds_channels_back_to_back_and_closes_with_the_last_view() -> None:
    spool = graph.LinkSpool()
    first = spool.add(io.BytesIO(b'hello'), 10)
    second = spool.add(io.BytesIO(b'world!'), 10)
    assert (first.size, second.size) == (5, 6)
    assert second.read(3) == b'wor' and first.read() == b'hello' and second.read() == b'ld!'
    assert second.seek(0, 2) == 6 and second.read() == b''
    assert second.seek(1) == 1 and second.read(2) == b'or'
    member = wire.shared_member('dev/in/x', first, first.size)
    assert b''.join(member[2]) == b'hello'
    with pytest.raises(wire.TooLarge):
        spool.add(io.BytesIO(b'x' * 11), 10)
    first.close()
    assert not spool._file.closed
    second.close()
    second.close()
    assert spool._file.closed


# -- votes ---------------------------------------------------------------------------------

def test_replicas_that_agree_stay_ok() -> None:
    (n,) = nodes({'name': 'n'})
    rs = [Result(n, etags={'/dev/stdout': 'x'}, server=s) for s in ('a', 'b', 'c')]
    graph.vote(rs)
    assert [r.status for r in rs] == ['ok'] * 3


@pytest.mark.parametrize(('change', 'says'), [
    ({'etags': {'/dev/stdout': 'y'}}, 'replicas disagree on /dev/stdout: a x; b y'),
    ({'etags': {'/dev/stdout': 'x', '/dev/out/r': 'z'}},
     'replicas disagree on /dev/out/r: a none; b z'),
    ({'etags': {'/dev/stdout': 'x'}, 'retcode': 1},
     'replicas disagree on the exit code: a 0; b 1'),
])
def test_replicas_that_differ_are_all_a_mismatch(change: dict, says: str) -> None:
    (n,) = nodes({'name': 'n'})
    rs = [Result(n, etags={'/dev/stdout': 'x'}, server='a'), Result(n, server='b', **change)]
    graph.vote(rs)
    assert [r.status for r in rs] == ['mismatch', 'mismatch']
    assert rs[0].error == says and rs[0].report['etags'] == {'/dev/stdout': 'x'}


def test_a_failed_replica_is_not_outvoted() -> None:
    (n,) = nodes({'name': 'n'})
    rs = [Result(n, etags={'/dev/stdout': 'x'}), Result(n, 'fault')]
    graph.vote(rs)
    assert [r.status for r in rs] == ['ok', 'fault']


# -- running a graph -----------------------------------------------------------------------

def test_nodes_run_after_their_producers_and_read_what_they_wrote() -> None:
    script = Script()
    ns = nodes({'name': 'm', 'count': 3, 'connect': ['r']}, {'name': 'r', 'count': 2},
               {'name': 'lone'})
    results = run(ns, script)
    assert [r.node.name for r in results] == ['m-1', 'm-2', 'm-3', 'r-1', 'r-2', 'lone']
    assert [r.status for r in results] == ['ok'] * 6
    order = [name for name, *_ in script.log]
    assert max(order.index(f'm-{i}') for i in (1, 2, 3)) < min(order.index('r-1'),
                                                               order.index('r-2'))
    given = {name: links for name, _r, _s, links in script.log}
    assert given['r-2'] == {f'in/m-{i}': f'm-{i}->r-2'.encode() for i in (1, 2, 3)}
    assert given['m-1'] == {} and given['lone'] == {}
    assert results[0].links == {'r-1': 8, 'r-2': 8}
    assert results[0].outputs == {}        # read by both reducers, then dropped


def test_a_failed_node_skips_what_depends_on_it_and_nothing_else() -> None:
    script = Script(fail=('b-2',))
    ns = nodes({'name': 'a', 'count': 2, 'connect': ['b']},
               {'name': 'b', 'count': 2, 'connect': ['c']}, {'name': 'c', 'connect': ['d']},
               {'name': 'd', 'replicate': 2}, {'name': 'other'})
    results = run(ns, script)
    assert [(r.node.name, r.status) for r in results] == [
        ('a-1', 'ok'), ('a-2', 'ok'), ('b-1', 'ok'), ('b-2', 'fault'), ('c', 'skipped'),
        ('d', 'skipped'), ('d', 'skipped'), ('other', 'ok')]
    assert results[4].error == 'not run: b-2 failed'
    assert results[5].error == 'not run: c did not run'
    assert [r.replica for r in results[5:7]] == [1, 2]
    assert {name for name, *_ in script.log} == {'a-1', 'a-2', 'b-1', 'b-2', 'other'}


def test_replicas_run_on_different_servers_with_the_same_inputs() -> None:
    script = Script(etags={('r', 1): {'/dev/stdout': 'x'}, ('r', 2): {'/dev/stdout': 'x'},
                           ('r', 3): {'/dev/stdout': 'x'}})
    ns = nodes({'name': 'm', 'connect': ['r']}, {'name': 'r', 'replicate': 3})
    results = run(ns, script)
    assert [(r.node.name, r.replica, r.status) for r in results] == [
        ('m', 1, 'ok'), ('r', 1, 'ok'), ('r', 2, 'ok'), ('r', 3, 'ok')]
    runs = [entry for entry in script.log if entry[0] == 'r']
    assert sorted(server for _n, _r, server, _l in runs) == ['6200', '6201', '6202']
    assert all(links == {'in/m': b'm->r'} for *_x, links in runs)


def test_node_to_node_data_over_the_job_budget_fails_the_node() -> None:
    ns = nodes({'name': 'a', 'connect': ['b']}, {'name': 'b', 'connect': ['c']}, {'name': 'c'})
    results = run(ns, Script(), max_spool=6)
    assert [r.status for r in results] == ['ok', 'error', 'skipped']
    assert results[1].error == ('the nodes of this job sent each other more than '
                                'zerovm_maxspool bytes (4 from this node)')


def test_a_missing_channel_in_the_answer_fails_the_producer() -> None:
    class Forgetful(Script):
        def __call__(self, plan, replica, servers, links):
            res = super().__call__(plan, replica, servers, links)
            res.outputs.pop('out/b', None)
            return res
    results = run(nodes({'name': 'a', 'connect': ['b']}, {'name': 'b'}), Forgetful())
    assert [r.status for r in results] == ['error', 'skipped']
    assert results[0].error == '6200 returned no /dev/out/b'


def test_a_bug_in_a_node_closes_every_result_and_raises() -> None:
    made: list[Result] = []

    def run_replica(plan, replica, servers, links):
        if plan.node.name == 'b':
            raise RuntimeError('boom')
        made.append(Result(plan.node))
        return made[-1]
    with pytest.raises(RuntimeError, match='boom'):
        graph.run([Plan(n) for n in nodes({'name': 'a'}, {'name': 'b'}, {'name': 'c'})],
                  run_replica, skipped, max_spool=1, concurrency=2)
    assert len(made) == 2 and all(r.closed for r in made)

"""zerocloud.graph: checks, node-to-node links, replica votes and dataflow order.

``run`` is driven by a scripted ``run_replica`` that records when each
replica started and what it was given, on green threads as in the proxy.
"""

from __future__ import annotations

import errno
import gc
import io
import os
import weakref
from dataclasses import dataclass, field

import pytest
from swift.common.concurrency import Event, Timeout, sleep, spawn

from zerocloud import deferred, graph, peers, wire
from zerocloud.job import JobError, Node, expand, parse_job
from zerocloud.tmpdisk import DiskFull


def nodes(*groups: dict) -> list[Node]:
    job = [{'exec': {'path': 'swift://a/c/p'}, **g} for g in groups]
    return expand(parse_job(job, 'a'), lambda a, c, p: [], lambda a: [])


def check_wired(wired: list[Node]) -> None:
    """Every wired node's channels, its peers counted (``peers.check_peers``)."""
    for node in wired:
        peers.check_peers(node, len(node.reads_from), len(node.writes_to))


class Result:
    def __init__(self, node: Node, status: str = 'ok', etags: dict | None = None,
                 retcode: int = 0, server: str = '') -> None:
        self.node, self.server, self.error = node, server, ''
        self.report = wire.NodeReport(status, retcode, etags=etags or {})
        self.outputs: dict = {}
        self.replica, self.links, self.closed = 1, {}, False
        self.started = self.finished = None

    @property
    def status(self) -> str:
        return self.report.status

    @property
    def failed(self) -> bool:
        return self.status != 'ok'

    def channel_bytes(self) -> tuple[int, int]:
        return self.report.channel_bytes()

    def fail(self, status: str, message: str, http_status: int | None = None) -> None:
        self.report = wire.NodeReport(status, message=message)
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
    """run_replica: each node reads all its input links, then writes ``<name>-><peer>``
    to each peer, sleeping a little; ``fail`` names nodes that end ``fault``; a node
    whose input link fails ends ``killed`` (as the sandbox's EIO would)."""

    def __init__(self, fail: tuple[str, ...] = (), etags: dict | None = None) -> None:
        self.fail, self.etags = fail, etags or {}
        self.log: list[tuple[str, int, str, dict]] = []
        self.running = 0

    def __call__(self, plan: Plan, replica: int, servers, links) -> Result:
        server = next(iter(servers))
        name = plan.node.name
        res = Result(plan.node, 'fault' if name in self.fail else 'ok',
                     self.etags.get((name, replica)), server=f'{server["port"]}')
        if links is not None and links.running is not None:
            links.running()
        try:
            given = read_links(links.inputs) if links is not None else {}
        except graph.LinkFailed as e:
            res.fail('killed', str(e))
            return res
        self.log.append((name, replica, f'{server["port"]}', given))
        sleep(0.001)
        if links is not None and links.outputs is not None:
            relay = graph.Relay(links.outputs)
            try:
                for peer in plan.node.writes_to:
                    relay.add(peer, io.BytesIO(f'{name}->{peer}'.encode()))
            except graph.SpoolFull as e:
                res.fail('error', str(e), 413)
        return res


def read_links(links: dict[str, graph.Link]) -> dict[str, bytes]:
    """What a node's object server gets: the data of each link, checked against its end."""
    got = dict.fromkeys(links, b'')
    ended = set()
    for name, size, chunks in graph.Feeder(links).members():
        data = b''.join(chunks)
        assert len(data) == size
        kind, _, link = name.partition('/')
        assert link not in ended
        if kind + '/' == wire.PART_PREFIX:
            got[link] += data
        else:
            assert int(data) == len(got[link])
            ended.add(link)
    assert ended == set(links)
    return got


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
    # three standard streams, one descriptor per link, one that wakes the reader
    ok = nodes({'name': 'm', 'count': peers.MAX_CHANNELS - 4, 'connect': ['r']}, {'name': 'r'})
    check_wired(ok)
    assert peers.channel_count(ok[-1], len(ok[-1].reads_from), 0) == peers.MAX_CHANNELS
    big = nodes({'name': 'm', 'count': peers.MAX_CHANNELS - 3, 'connect': ['r']}, {'name': 'r'})
    with pytest.raises(JobError) as err:
        check_wired(big)
    assert str(err.value).startswith(
        f'Too many channels for node r: {peers.MAX_CHANNELS + 1} (reads from '
        f'{peers.MAX_CHANNELS - 3} nodes, writes to 0); a node may have at most '
        f'{peers.MAX_CHANNELS}, a fixed limit (each channel is a descriptor passed to a '
        f'sandbox worker in one message, no option raises it): a node reads from at most '
        f'{peers.MAX_CHANNELS - 4} nodes. Connect fewer nodes to it: reduce in stages')


def test_a_node_that_writes_to_too_many_says_to_write_to_fewer() -> None:
    # said "a node reads from at most 249 nodes ... reduce in stages" to a mapper of 1000
    # reducers, which reads from none
    big = nodes({'name': 'm', 'connect': ['r']}, {'name': 'r', 'count': peers.MAX_CHANNELS})
    with pytest.raises(JobError) as err:
        check_wired(big)
    assert str(err.value).endswith(
        f'no option raises it): a node writes to at most {peers.MAX_CHANNELS - 3} nodes. '
        'Connect it to fewer nodes: a smaller count in the groups it writes to')


def test_link_devices_name_the_peers() -> None:
    a, b = nodes({'name': 'a', 'connect': ['b']}, {'name': 'b'})
    assert graph.link_devices(a, 100) == [wire.DeviceSpec('out/b', 'w', put_size=100)]
    assert graph.link_devices(b, 100) == [wire.DeviceSpec('in/a', 'r', source='link')]


# -- spools --------------------------------------------------------------------------------

def test_a_spool_holds_links_back_to_back_and_closes_with_its_last_user() -> None:
    spool = graph.Spool(['x', 'y'], graph.Budget(100), max_link=10)
    x, y = spool.links['x'], spool.links['y']
    spool.append(x, b'hel')
    spool.append(y, b'wor')
    spool.append(x, b'lo')
    spool.append(y, b'ld!')
    assert (x.size, y.size) == (5, 6)
    assert x.read(0, 100) == b'hel' and x.read(3, 100) == b'lo' and x.read(1, 1) == b'e'
    assert y.read(2, 100) == b'r' and y.read(3, 100) == b'ld!'
    with pytest.raises(wire.TooLarge):
        spool.append(x, b'x' * 6)
    assert x.size == 5 and spool.budget.used == 11
    spool.finish(True)
    assert (x.state, y.state) == (graph.COMPLETE, graph.COMPLETE)
    x.release()
    assert spool._file is not None
    y.release()
    assert spool._file is None


def test_the_job_budget_is_shared_and_a_retry_adds_only_new_bytes() -> None:
    budget = graph.Budget(8)
    one, two = graph.Spool(['p'], budget, 100), graph.Spool(['q'], budget, 100)
    graph.Relay(one).add('p', io.BytesIO(b'abcd'))
    graph.Relay(one).add('p', io.BytesIO(b'abcdef'))       # the same node, run again
    assert one.links['p'].read(0, 100) == b'abcd' and one.links['p'].size == 6
    with pytest.raises(graph.SpoolFull):
        graph.Relay(two).add('q', io.BytesIO(b'xyz'))
    with pytest.raises(wire.WireError):
        graph.Relay(two).add('nobody', io.BytesIO(b''))


def test_a_feeder_sends_parts_as_they_come_and_ends_each_link() -> None:
    spool = graph.Spool(['a', 'b'], graph.Budget(100), 100)
    links = {'in/a': spool.links['a'], 'in/b': spool.links['b']}
    feeder = graph.Feeder(links)
    members = feeder.members()
    spool.append(spool.links['a'], b'12')
    assert next(members)[:2] == ('part/in/a', 2)
    got = []
    reader = spawn(lambda: got.extend((n, b''.join(c)) for n, _s, c in members))
    sleep(0.01)
    assert got == [] and not reader.dead          # waits for more
    spool.append(spool.links['b'], b'345')
    spool.finish(True)
    reader.wait()
    assert got == [('end/in/a', b'2'), ('part/in/b', b'345'), ('end/in/b', b'3')]

    failed = graph.Spool(['a'], graph.Budget(100), 100)
    members = graph.Feeder({'in/a': failed.links['a']}).members()
    failed.finish(False)
    with pytest.raises(graph.LinkFailed):
        next(members)

    stopped = graph.Feeder({'in/a': graph.Spool(['a'], graph.Budget(1), 1).links['a']})
    reader = spawn(lambda: list(stopped.members()))
    sleep(0.01)
    stopped.stop()
    assert reader.wait() == []


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
    assert rs[0].error == says and rs[0].report.etags == {'/dev/stdout': 'x'}


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
    progress = deferred.Progress()
    progress.launched(ns)
    results = run(ns, script, progress=progress)
    # the deferred state's counts: nodes (not replicas), every one ended
    assert progress.counts()['nodes'] == {'total': 7, 'done': 4, 'failed': 3, 'running': 0}
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
                                'zerovm_maxspool bytes (4 or more from this node to c)')


def test_a_link_shorter_than_what_the_node_wrote_fails_the_producer() -> None:
    class Short(Script):
        def __call__(self, plan, replica, servers, links):
            res = super().__call__(plan, replica, servers, links)
            res.report.accounting = {'channels': {'/dev/out/b': {'write_bytes': 5}}}
            return res
    results = run(nodes({'name': 'a', 'connect': ['b']}, {'name': 'b'}), Short())
    assert [r.status for r in results] == ['error', 'skipped']
    assert results[0].error == '6200 returned 4 of the 5 bytes of /dev/out/b'


def test_a_consumer_starts_once_its_producers_run_and_reads_as_they_write() -> None:
    """The producer waits for its consumer to have read its first part before it
    writes the rest: stage by stage, this graph could not end."""
    read_first = Event()
    order = []

    def run_replica(plan, replica, servers, links):
        name = plan.node.name
        res = Result(plan.node, server='x')
        links.running()
        order.append(f'{name} runs')
        if name == 'a':
            relay = graph.Relay(links.outputs)
            relay.add('b', io.BytesIO(b'first '))
            with Timeout(5):
                read_first.wait()
            relay.add('b', io.BytesIO(b'second'))
        else:
            members = graph.Feeder(links.inputs).members()
            assert next(members)[0] == 'part/in/a'
            read_first.send()
            rest = [(n, b''.join(c)) for n, _s, c in members]
            assert rest == [('part/in/a', b'second'), ('end/in/a', b'12')]
        order.append(f'{name} ends')
        return res
    results = run(nodes({'name': 'a', 'connect': ['b']}, {'name': 'b'}), run_replica)
    assert [r.status for r in results] == ['ok', 'ok']
    assert order == ['a runs', 'b runs', 'a ends', 'b ends']
    assert (results[0].started, results[1].started) == (1, 2)
    assert results[0].finished < results[1].finished


def test_a_producer_run_in_a_batch_sends_its_links_as_outputs_its_readers_start_after_it(
        ) -> None:
    """A mapper sent in a batch (``Plan.links_after``) never says it runs: its
    ``out/<peer>`` come back as outputs once it ended.  Its reader starts only then
    (it never holds a worker waiting for a node queued in a batch), and reads those
    bytes, in order, from the spool; they leave the outputs (the report lists them
    as links) and a size that differs from what the node wrote fails it."""
    order = []

    def run_replica(plan, replica, servers, links):
        name = plan.node.name
        res = Result(plan.node, server='x')
        order.append(f'{name} starts')
        if name.startswith('m'):        # in a batch: no running(), links as outputs
            for peer in plan.node.writes_to:
                data = f'{name}->{peer};'.encode() * (3 if name == 'm-2' else 1)
                res.outputs[graph.OUT + peer] = io.BytesIO(data)
            res.report.accounting['channels'] = {
                f'/dev/out/{peer}': {'write_bytes': len(f'{name}->{peer};') * (
                    3 if name == 'm-2' else 1) + (1 if name == 'm-3' else 0)}
                for peer in plan.node.writes_to}
        else:
            links.running()
            res.outputs['got'] = read_links(links.inputs)
        order.append(f'{name} ends')
        return res
    results = run(nodes({'name': 'm', 'count': 2, 'connect': ['r']}, {'name': 'r'}),
                  run_replica)
    assert [r.status for r in results] == ['ok', 'ok', 'ok']
    assert order.index('r starts') > max(order.index('m-1 ends'), order.index('m-2 ends'))
    assert results[2].outputs['got'] == {'in/m-1': b'm-1->r;', 'in/m-2': b'm-2->r;' * 3}
    assert [r.outputs for r in results[:2]] == [{}, {}]
    assert [r.links for r in results[:2]] == [{'r': 7}, {'r': 21}]
    assert all(r.started < r.finished for r in results)

    results = run(nodes({'name': 'm', 'count': 3, 'connect': ['r']}, {'name': 'r'}),
                  run_replica)
    assert [r.status for r in results] == ['ok', 'ok', 'error', 'skipped']
    assert results[2].error == 'x returned 7 of the 8 bytes of /dev/out/r'


class Alone(Script):
    """Nodes named ``m...`` answer as in a batch (their links come back as outputs);
    the others are sent alone: the most of them in flight at once is counted per
    node, from its first replica's start to its last one's end."""

    def __init__(self) -> None:
        super().__init__()
        self.replicas: dict[str, int] = {}
        self.most = 0

    def __call__(self, plan: Plan, replica: int, servers, links) -> Result:
        name = plan.node.name
        if name.startswith('m'):
            res = Result(plan.node, server='x')
            for peer in plan.node.writes_to:
                res.outputs[graph.OUT + peer] = io.BytesIO(f'{name}->{peer}'.encode())
            return res
        self.replicas[name] = self.replicas.get(name, 0) + 1
        self.most = max(self.most, sum(1 for n in self.replicas.values() if n))
        try:
            if (name, replica) == ('p', 2):     # the second replica comes late
                sleep(0.02)
            return super().__call__(plan, replica, servers, links)
        finally:
            self.replicas[name] -= 1


def test_nodes_sent_alone_are_bounded_per_node_and_a_replicated_producer_still_ends() -> None:
    """Batched mappers do not count; of the others at most ``alone`` are in flight.
    The replicated producer ``p`` admits its readers once its first replica runs;
    they could hold every place, but its second replica needs none of its own:
    the graph ends, each reader with everything ``p`` wrote."""
    script = Alone()
    ns = nodes({'name': 'm', 'count': 6, 'connect': ['r']}, {'name': 'r', 'count': 5},
               {'name': 'p', 'replicate': 2, 'connect': ['q']}, {'name': 'q', 'count': 6})
    with Timeout(10):
        results = run(ns, script, concurrency=16, alone=2,
                      batched=lambda plan: plan.node.name.startswith('m'))
    assert {r.status for r in results} == {'ok'} and len(results) == 6 + 5 + 2 + 6
    assert script.most == 2
    got = {name: links for name, _r, _s, links in script.log}
    assert all(got[f'q-{i}'] == {'in/p': f'p->q-{i}'.encode()} for i in range(1, 7))
    assert all(got[f'r-{i}'] == {f'in/m-{k}': f'm-{k}->r-{i}'.encode() for k in range(1, 7)}
               for i in range(1, 6))


def test_staged_runs_start_a_consumer_once_its_producers_have_finished() -> None:
    script = Script()
    ns = nodes({'name': 'a', 'connect': ['b']}, {'name': 'b', 'connect': ['c']}, {'name': 'c'})
    results = run(ns, script, pipeline=False)
    assert [r.status for r in results] == ['ok'] * 3
    assert [r.started for r in results] == [1, 3, 5]
    assert [r.finished for r in results] == [2, 4, 6]
    assert script.log[2][3] == {'in/b': b'b->c'}


def test_a_consumer_whose_producer_fails_while_it_runs_is_skipped() -> None:
    def run_replica(plan, replica, servers, links):
        res = Result(plan.node, server='x')
        links.running()
        if plan.node.name == 'a':
            graph.Relay(links.outputs).add('b', io.BytesIO(b'some'))
            sleep(0.01)
            res.fail('fault', 'crashed')
        else:
            try:
                list(graph.Feeder(links.inputs).members())
            except graph.LinkFailed as e:
                res.fail('killed', str(e))
        return res
    results = run(nodes({'name': 'a', 'connect': ['b']}, {'name': 'b'}), run_replica)
    assert [(r.status, r.error) for r in results] == [('fault', 'crashed'),
                                                     ('skipped', 'not run: a failed')]


def test_the_plan_of_a_node_without_links_goes_once_it_ended() -> None:
    # a connected job's wildcard of 100,000 nodes kept every plan until it ended
    # (tests/unit/test_proxy_connected_memory.py); a linked node's stays: the end's
    # skips need it
    ns = nodes({'name': 'w', 'count': 3}, {'name': 'a', 'connect': ['b']}, {'name': 'b'})
    plans = [Plan(n) for n in ns]
    refs = {p.node.name: weakref.ref(p) for p in plans}
    script, ended, alive = Script(), [], []

    def run_replica(plan, replica, servers, links):
        name = plan.node.name
        if name == 'a':                     # the w nodes end (and are seen ending) first
            while len(ended) < 3:
                sleep(0.001)
            sleep(0.01)
        if name == 'b':
            gc.collect()
            alive.extend(n for n, ref in refs.items() if ref() is not None)
        res = script(plan, replica, servers, links)
        if name.startswith('w-'):
            ended.append(name)
        return res
    del ns
    results = graph.run(plans, run_replica, skipped, max_spool=1 << 20, concurrency=8,
                        pipeline=False)
    assert plans == [] and sorted(alive) == ['a', 'b']
    assert [r.node.name for r in results] == ['w-1', 'w-2', 'w-3', 'a', 'b']
    assert all(r.status == 'ok' for r in results)


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


def test_a_link_the_proxys_full_disk_cannot_hold_is_a_disk_full(monkeypatch) -> None:
    """ENOSPC spooling a link is the proxy's trouble (507), not the writing node's
    server failing (its node run again elsewhere) nor a 500."""
    def no_room(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    spool = graph.Spool(['x'], graph.Budget(100), max_link=10)
    monkeypatch.setattr(os, 'pwrite', no_room)
    with pytest.raises(DiskFull, match='No space left on device'):
        spool.append(spool.links['x'], b'hel')

"""zerocloud.proxy.batch: what a node waiting in a batch costs the proxy (its servers
looked up once per partition, shared by the entries) and that it still goes alone to
the other primaries, then the handoffs."""

from __future__ import annotations

import collections
import io
from types import SimpleNamespace

import pytest

from zerocloud import placement
from zerocloud.job import Device, Exec, Node, SwiftPath
from zerocloud.proxy import batch
from zerocloud.proxy.caller import Input
from zerocloud.proxy.dispatch import Plan
from zerocloud.proxy.response import NodeResult


class CountingRing:
    """Three servers, two replicas; counts the look-ups, copies dicts as Swift's ring."""

    replica_count = 2
    devs = [{'id': i, 'ip': '10.0.0.1', 'port': 6200 + i, 'device': f'd{i}'} for i in range(3)]

    def __init__(self) -> None:
        self.asked: collections.Counter = collections.Counter()

    def get_part_nodes(self, part: int) -> list[dict]:
        self.asked[part] += 1
        return [dict(self.devs[(part + r) % 3], index=r) for r in range(2)]

    def get_more_nodes(self, part: int):
        yield dict(self.devs[(part + 2) % 3], handoff_index=0)


def plan(ring: CountingRing, i: int, part: int) -> Plan:
    stdin = Device('stdin', path=SwiftPath('a', 'c', f'o{i}'))
    node = Node(f'wc-{i}', 'wc', i, i, Exec('swift://a/bin/wc'), [stdin, Device('stdout')],
                attach=stdin, listed=True)
    return Plan(node, 0, part, f'/a/c/o{i}', placement.PartitionServers(ring, part), 'stdin',
                program(b'program'), {}, digest='d' * 64, account='a')


def program(data: bytes) -> Input:
    """A program as the proxy holds it: a file."""
    return Input(io.BytesIO(data), len(data))


def batches(monkeypatch, ring: CountingRing, sent_alone: list) -> batch.Batches:
    monkeypatch.setattr(placement, 'object_ring', lambda swift_dir, policy: ring)
    monkeypatch.setattr(batch.Batches, '_spawn',      # no thread: a node goes alone no further
                        lambda self, func, *args: SimpleNamespace(link=lambda f: None))

    def run_node(trans_id, plan, job_id, load):
        sent_alone.append([d['device'] for d in plan.servers])
        return NodeResult(plan.node)
    dispatcher = SimpleNamespace(config=SimpleNamespace(swift_dir='/etc/swift'),
                                 logger=None, run_node=run_node)
    return batch.Batches(dispatcher, 'tx', 'job', collections.Counter())


def test_the_ring_is_asked_once_per_partition_and_entries_share_its_answer(
        monkeypatch) -> None:
    ring = CountingRing()
    jobs = batches(monkeypatch, ring, [])
    for i in range(30):
        assert jobs.submit(plan(ring, i, i % 3), lambda result: None)
    assert ring.asked == {0: 1, 1: 1, 2: 1}
    entries = [e for queue in jobs.queues.values() for e in queue]
    assert len(entries) == 30
    by_part = collections.defaultdict(list)
    for e in entries:
        by_part[e.plan.partition].append(e)
    for part, group in by_part.items():
        assert {e.server['device'] for e in group} == {f'd{part}'}
        assert all(e.server is group[0].server and e.others is group[0].others for e in group)


def test_a_node_of_a_cached_partition_goes_alone_to_the_other_primary_then_handoffs(
        monkeypatch) -> None:
    ring = CountingRing()
    sent_alone: list = []
    jobs = batches(monkeypatch, ring, sent_alone)
    got = []
    for i in range(2):
        jobs.submit(plan(ring, i, 1), got.append)
    first, second = jobs.queues[next(iter(jobs.queues))]
    jobs._alone(first, batch._ALONE)
    jobs._alone(second, batch._FIRST)
    assert sent_alone == [['d2', 'd0'], ['d1', 'd2', 'd0']]
    assert [r.node.name for r in got] == ['wc-0', 'wc-1']


def test_the_partitions_kept_are_bounded_and_follow_the_ring(monkeypatch) -> None:
    monkeypatch.setattr(batch, 'PARTITIONS', 4)
    ring = CountingRing()
    jobs = batches(monkeypatch, ring, [])
    for part in range(10):
        jobs.submit(plan(ring, part, part), lambda result: None)
    assert len(jobs.partitions) <= 4
    other = CountingRing()                      # a new ring: nothing of the old one is kept
    jobs.submit(plan(other, 99, 0), lambda result: None)
    assert list(jobs.partitions) == [0] and other.asked == {0: 1}


def test_the_partitions_kept_follow_a_ring_reloaded_in_place(monkeypatch) -> None:
    """Swift reloads a ring in place (the same object, every ``reload_time``): a
    partition's primaries are not kept longer, or a long job would send its nodes to
    the servers of before a rebalance, and alone to handoffs that leave out the new
    primaries."""
    now = [1000.0]
    monkeypatch.setattr(batch, 'time', SimpleNamespace(monotonic=lambda: now[0]))
    ring = CountingRing()
    ring.reload_time = 15
    jobs = batches(monkeypatch, ring, [])
    jobs.submit(plan(ring, 0, 0), lambda result: None)
    ring.devs = ring.devs[1:] + ring.devs[:1]   # rebalanced: partition 0 is d1's, d2's
    now[0] += 10
    jobs.submit(plan(ring, 1, 0), lambda result: None)
    assert ring.asked == {0: 1}                 # within the ring's own reload time
    now[0] += 6
    jobs.submit(plan(ring, 2, 0), lambda result: None)
    assert ring.asked == {0: 2}
    entry = jobs.queues[next(k for k in jobs.queues if k[0:2] == ('10.0.0.1', 6201))][0]
    assert entry.plan.node.name == 'wc-2'
    assert [d['device'] for d in entry.others] == ['d2']


def test_an_entrys_set_is_the_one_the_wire_makes() -> None:
    """``batch._Shared`` makes a wildcard entry's ``set`` from its name, argv and env;
    any spec gets the ``set`` that ``wire.SharedSpec`` makes, and the object server
    reads the same spec back."""
    from dataclasses import replace

    from zerocloud import wire
    base = wire.NodeSpec('wc-1', ['wc-1', '-l'], {'SCRIPT_NAME': 'wc-1', 'X': '1'},
                         (wire.DeviceSpec('stdin', 'r', False, 'local'),
                          wire.DeviceSpec('stdout', 'w')),
                         wire.NodeLimits(1 << 20, 10, 5.0), local_env=True)
    specs = [base, replace(base, name='wc-2'),
             replace(base, name='wc-2', argv=['wc-2', '-l'],
                     env={'SCRIPT_NAME': 'wc-2', 'X': '1'}),
             replace(base, argv=['other']), replace(base, env={}),
             replace(base, name='wc-3', engine='native'),
             replace(base, devices=base.devices[:1]), replace(base, local_env=False),
             replace(base, program=('python3', 'bin/python3'), argv=['python3'])]
    ours, theirs = batch._Shared(base), wire.SharedSpec(base)
    assert ours.to_json() == theirs.to_json()
    for spec in specs:
        entry = wire.BatchEntry('d0', 3, '/a/c/o', spec)
        assert entry.to_json(ours) == entry.to_json(theirs)
        assert wire.BatchEntry.from_json(entry.to_json(ours), theirs).spec == spec


class Trickle:
    """A batch's answer arriving a member at a time, ``pause`` seconds apart, then
    nothing more for ``stall`` seconds before its end."""

    def __init__(self, members: list[bytes], pause: float, stall: float = 0.0) -> None:
        self.members, self.pause, self.stall = members, pause, stall

    def read1(self, n: int) -> bytes:
        from swift.common.concurrency import sleep
        if not self.members:
            sleep(self.stall)
            self.stall = 0
            return b''
        sleep(self.pause)
        return self.members.pop(0)


class Arrived:
    """A batch's answer that has all arrived: its reads never wait (for the hub)."""

    def __init__(self, members: list[bytes]) -> None:
        self.data = b''.join(members)

    def read1(self, n: int) -> bytes:
        data, self.data = self.data[:n], self.data[n:]
        return data


def answered(monkeypatch, count: int, pause: float, stall: float = 0.0,
             members: list[bytes] | None = None, entries: list | None = None,
             ended: list | None = None):
    """``Batches._results`` of a batch of ``count`` nodes answered through ``Trickle``
    (``zerovm_timeout`` 0.2 s, 0.1 s of grace: each member is due within 0.3 s):
    the results that ended, and what the read raised.  ``members``: the answer (a
    node's report and output each by default); ``entries`` gets the batch's; a
    ``pause`` of None: the answer has all arrived (``Arrived``); ``ended``: the list
    the nodes' results go to."""
    from zerocloud import wire
    monkeypatch.setattr(batch, 'NODE_GRACE', 0.1)
    monkeypatch.setattr(batch, 'REARM', 0.05)
    ring = CountingRing()
    jobs = batches(monkeypatch, ring, [])
    jobs.config = SimpleNamespace(timeout=0.2, max_output=1 << 20, swift_dir='/etc/swift')
    jobs.logger = SimpleNamespace(debug=lambda *args: None, info=lambda *args: None)
    ended = [] if ended is None else ended
    for i in range(count):
        jobs.submit(plan(ring, i, 0), ended.append)
    batch_entries = jobs.queues[next(iter(jobs.queues))]
    if entries is not None:
        entries += batch_entries
    report = wire.NodeReport('ok', 0).to_json()
    members = list(members) if members is not None else [
        wire.tar_member(f'{i}/{name}', data) for i in range(count)
        for name, data in ((wire.REPORT, report), ('dev/stdout', b'%d\n' % i))]
    if not stall:
        members.append(wire.TAR_END)
    try:
        answer = Arrived(members) if pause is None else Trickle(members, pause, stall)
        jobs._results(answer, {'ip': 'x', 'port': 1, 'device': 'd0'}, batch_entries, 0.0, 0, 0)
    except BaseException as e:      # noqa: BLE001 (the Timeout is what is looked at)
        return ended, e
    return ended, None


def test_a_batch_answer_slower_than_the_node_timeout_in_all_is_read_whole(monkeypatch):
    ended, error = answered(monkeypatch, 6, pause=0.1)        # 1.3 s, 0.1 s a member
    assert error is None
    assert [(r.outputs['stdout'].seek(0), r.outputs['stdout'].read())[1] for r in ended] == [
        b'%d\n' % i for i in range(6)]


@pytest.mark.parametrize('blocks', [False, True])
def test_other_requests_are_served_while_a_batch_answer_that_arrived_is_read(
        monkeypatch, blocks: bool) -> None:
    """An answer all there (its reads never wait) is read and its nodes ended with turns
    for the hub between them (``zerocloud.turns``; every step here): another request's
    green thread runs while its nodes end, not only once the whole batch ended."""
    from swift.common.concurrency import sleep, spawn

    from zerocloud import turns
    monkeypatch.setattr(turns, 'SLICE', 0.0)
    events: list = []
    members = [reports_block(*((i, 'ok') for i in range(40)))] if blocks else None

    def other() -> None:
        while len(events) < 60:
            events.append('other')
            sleep(0)
    thread = spawn(other)
    ended, error = answered(monkeypatch, 40, pause=None, members=members, ended=events)
    thread.kill()
    assert error is None
    nodes = [i for i, e in enumerate(events) if e != 'other']
    assert len(nodes) == 40
    assert 'other' in events[nodes[0]:nodes[-1]]


def test_a_batch_answer_that_stops_is_cut_after_the_node_timeout(monkeypatch):
    import time

    from swift.common.concurrency import Timeout
    started = time.monotonic()
    ended, error = answered(monkeypatch, 2, pause=0.0, stall=5.0)
    # the second node's output may go on until the next member: it was not complete
    assert isinstance(error, Timeout) and len(ended) == 1
    assert 0.3 <= time.monotonic() - started < 5.0       # cut, not left to the stall


def test_nodes_of_one_kind_share_their_device_specs_and_others_keep_theirs() -> None:
    """``Dispatcher.spec`` makes the device specs once per kind of node (names, the
    local device, what is sent along); a node's links or system image are its own."""
    from dataclasses import replace

    from zerocloud import graph, wire
    from zerocloud.config import Config
    from zerocloud.proxy.dispatch import Dispatcher
    dispatcher = Dispatcher(Config.from_conf({}), None)
    ring = CountingRing()
    first, second = (dispatcher.spec(plan(ring, i, 0)) for i in (1, 2))
    assert first.devices is second.devices and first.limits is second.limits
    assert [(d.name, d.access, d.source) for d in first.devices] == [
        ('stdin', 'r', 'local'), ('stdout', 'w', None)]
    linked = plan(ring, 3, 0)
    linked.node.writes_to.append('reducer')
    system = replace(plan(ring, 4, 0), program=None)
    system.node.exec = Exec('file://python3:bin/python3')
    assert [d.name for d in dispatcher.spec(linked).devices] == [
        'stdin', 'stdout', graph.OUT + 'reducer']
    assert [d.name for d in dispatcher.spec(system).devices] == ['stdin', 'stdout', 'python3']
    assert dispatcher.spec(plan(ring, 5, 0)).devices is first.devices      # untouched
    assert first.limits == wire.NodeLimits(dispatcher.config.memory, dispatcher.config.fuel,
                                           dispatcher.config.timeout)


def test_written_devices_carry_the_proxys_write_quota() -> None:
    """A proxy's ``zerovm_maxoutput`` below its object servers' is the node's quota (the
    node ends ``quota``), not a limit on the answer only: a larger output was read as a
    broken server, tried on every replica and answered 503 ``unavailable``."""
    from zerocloud.config import Config
    from zerocloud.proxy.dispatch import Dispatcher
    spec = Dispatcher(Config.from_conf({'zerovm_maxoutput': '5'}), None).spec(
        plan(CountingRing(), 1, 0))
    assert [(d.name, d.put_size) for d in spec.devices] == [('stdin', None), ('stdout', 5)]


def killed_node(monkeypatch, when: str, rerun: str = 'ok'):
    """A node its host killed (``Batches._killed``), the job closed ``when``: before,
    before its run alone starts, while it runs, or never (its run alone ends with a
    ``rerun`` result).  The killed result and what went to ``finish``."""
    from swift.common.concurrency import sleep

    from zerocloud import wire
    from zerocloud.proxy.outputs import OutputFile
    spawn = batch.Batches._spawn
    ring = CountingRing()
    jobs = batches(monkeypatch, ring, [])
    got: list = []
    jobs.submit(plan(ring, 0, 0), got.append)
    entry = jobs.queues[next(iter(jobs.queues))].pop()
    monkeypatch.setattr(batch.Batches, '_spawn', spawn)     # real green threads

    def run_node(trans_id, plan, job_id, load):
        sleep(0.05)
        result = NodeResult(plan.node)
        result.report = wire.NodeReport(rerun)
        return result
    jobs.dispatcher = SimpleNamespace(run_node=run_node)
    jobs.logger = SimpleNamespace(info=lambda *args: None)
    killed = NodeResult(entry.plan.node)
    killed.report = wire.NodeReport('killed', message='oom', host_failure=True)
    killed.outputs['stdout'] = OutputFile()
    killed.outputs['stdout'].write(b'partial')
    if when == 'before':
        jobs.close()
    jobs._killed(entry, killed)
    if when == 'not started':
        jobs.close()
    elif when == 'running':
        sleep(0.01)
        jobs.close()
    for _ in range(500):                # its run alone ended (a loaded machine: later)
        if got or when != 'never':
            break
        sleep(0.01)
    return killed, got


@pytest.mark.parametrize('when', ['before', 'not started', 'running'])
def test_a_killed_nodes_outputs_are_closed_when_the_job_closes_first(monkeypatch,
                                                                    when: str) -> None:
    """Closed jobs send no node alone: the killed result's outputs (spooled files) are
    closed then, not left to the garbage collector, whenever the job closed."""
    killed, got = killed_node(monkeypatch, when)
    assert got == [] and killed.outputs['stdout'].closed


def test_a_killed_nodes_result_stands_only_when_no_other_server_ran_it(monkeypatch) -> None:
    killed, got = killed_node(monkeypatch, 'never', rerun='ok')
    assert [r.status for r in got] == ['ok'] and killed.outputs['stdout'].closed
    killed, got = killed_node(monkeypatch, 'never', rerun='unavailable')
    assert got == [killed] and not killed.outputs['stdout'].closed


# -- batch/reports blocks ----------------------------------------------------------------------

REPORT_NAMES = {'report': ('status', 'retcode', 'etags', 'host_failure', 'message'),
                'accounting': (), 'channel': ()}


def reports_block(*nodes: tuple) -> bytes:
    """A ``batch/reports`` member of ``nodes``: (index, status) for a report with the
    output ``<index>\\n``, (index, 'error') for a node not run."""
    from zerocloud import wire
    block = wire.ReportsBlock(REPORT_NAMES)
    for index, status in nodes:
        if status == 'error':
            block.error(index, '503 Slot not available')
        else:
            block.add(index, [status, 0 if status == 'ok' else None, {}, status == 'killed',
                              ''], [('stdout', b'%d\n' % index)])
    return block.member()


def output(result: NodeResult) -> bytes:
    f = result.outputs['stdout']
    f.seek(0)
    return f.read()


def test_a_batch_answer_in_blocks_mixed_with_a_nodes_own_members_is_read_whole(
        monkeypatch) -> None:
    """Blocks give each node its report and outputs; a node not run goes alone; a node
    in members of its own (large outputs, or a server of before blocks) between them
    is read as before; one its host killed goes alone too, its result kept."""
    from zerocloud import wire
    report = wire.NodeReport('ok', 0).to_json()
    members = [reports_block((1, 'ok'), (2, 'error'), (0, 'ok')),
               wire.tar_member('3/report.json', report), wire.tar_member('3/dev/stdout', b'3\n'),
               reports_block((4, 'fault'), (5, 'killed'))]
    entries: list = []
    ended, error = answered(monkeypatch, 6, pause=0.01, members=members, entries=entries)
    assert error is None
    assert [(r.node.name, r.status, output(r)) for r in ended] == [
        ('wc-1', 'ok', b'1\n'), ('wc-0', 'ok', b'0\n'), ('wc-3', 'ok', b'3\n'),
        ('wc-4', 'fault', b'4\n')]
    assert all(e.done for e in entries) and entries[5].killed.report.host_failure
    assert ended[1].program_bytes == 0 and ended[0].server == 'x:1/d0'


def test_a_batch_answer_in_blocks_that_stops_is_cut_after_the_node_timeout(monkeypatch):
    """The nodes of the blocks that came end; the timer fires for the rest (they go
    alone, as when the answer of a node's members stopped)."""
    import time

    from swift.common.concurrency import Timeout
    started = time.monotonic()
    entries: list = []
    ended, error = answered(monkeypatch, 4, pause=0.0, stall=5.0, entries=entries,
                            members=[reports_block((0, 'ok'), (2, 'ok'))])
    assert isinstance(error, Timeout) and [r.node.name for r in ended] == ['wc-0', 'wc-2']
    assert not entries[1].done and not entries[3].done
    assert 0.3 <= time.monotonic() - started < 5.0       # cut, not left to the stall


@pytest.mark.parametrize(('members', 'why'), [
    ([b'bad'], 'bad tar stream'),
    (['block', (1, 'ok'), (1, 'ok')], 'unexpected node 1'),
    (['block', (9, 'ok')], 'unexpected node 9'),
    (['raw', b'{"names": {}, "nodes": []}'], 'no newline'),
    (['raw', b'x' * 600], 'larger than 512 bytes'),
])
def test_a_bad_batch_reports_member_stops_the_answer(monkeypatch, members: list,
                                                      why: str) -> None:
    """A block that does not follow the contract, names a node of another batch or one
    answered already, or is larger than the proxy reads: a ``WireError`` (the nodes
    not answered go alone), and no node of that block ends."""
    from zerocloud import wire
    monkeypatch.setattr(wire, 'REPORTS_LIMIT', 512)
    if members[0] == 'block':
        members = [reports_block(*members[1:])]
    elif members[0] == 'raw':
        members = [wire.tar_member(wire.REPORTS, members[1])]
    ended, error = answered(monkeypatch, 3, pause=0.0, members=members)
    assert isinstance(error, wire.WireError) and why in str(error)
    assert len(ended) <= (1 if 'node 1' in why else 0)


def test_an_inline_output_larger_than_the_proxy_takes_is_too_large(monkeypatch) -> None:
    from zerocloud import wire
    block = wire.ReportsBlock(REPORT_NAMES)
    block.add(0, ['ok', 0, {}, False, ''], [('stdout', bytes((1 << 20) + 1))])
    ended, error = answered(monkeypatch, 1, pause=0.0, members=[block.member()])
    assert isinstance(error, wire.TooLarge) and ended == []


def test_a_batch_request_says_the_proxy_reads_blocks(monkeypatch) -> None:
    """``X-Zerovm-Reports: 1``: a server that knows blocks answers in them, one of
    before ignores it (and answers a node's members each, which this proxy reads)."""
    from zerocloud import wire
    asked = {}

    def connect(ip, port, device, part, method, path, headers):
        asked.update(headers)
        raise OSError('no server here')
    monkeypatch.setattr(batch, 'http_connect', connect)
    ring = CountingRing()
    jobs = batches(monkeypatch, ring, [])
    jobs.config = SimpleNamespace(conn_timeout=1.0, timeout=1.0, swift_dir='/etc/swift')
    jobs.dispatcher.programs = SimpleNamespace(sending_now=lambda server, digest: None)
    jobs.submit(plan(ring, 0, 0), lambda result: None)
    entries = jobs.queues[next(iter(jobs.queues))]
    with pytest.raises(OSError):
        jobs._attempt(entries[0].server, entries, wire.bytes_member(wire.BATCH_SPEC, b'{}'),
                      [], set())
    assert asked[wire.READS_REPORTS] == '1' and asked[wire.BATCH] == '1'


@pytest.mark.parametrize(('program', 'alone'), [(b'p' * 1500, False), (b'p' * 10, True)],
                         ids=['over', 'fits'])
def test_a_batch_too_large_for_its_server_goes_alone_only_if_a_node_alone_could_fit(
        monkeypatch, program: bytes, alone: bool) -> None:
    """smalls10: a batch an object server refused as larger than its zerovm_maxinput went
    on a node at a time, each refused again (the program alone was over the limit):
    now each node ends with that answer (the limit and the option to raise), nothing
    resent; a batch whose program fits still goes alone (each node alone is smaller)."""
    from dataclasses import replace

    from zerocloud import wire
    from zerocloud.proxy.dispatch import _Refused
    ring = CountingRing()
    jobs = batches(monkeypatch, ring, [])
    went_alone: list = []
    monkeypatch.setattr(batch.Batches, '_spawn', lambda self, func, *args: (
        func.__name__ == '_alone' and went_alone.append(args[0].plan.node.name),
        SimpleNamespace(link=lambda f: None))[1])
    jobs.config = SimpleNamespace(timeout=1.0, max_input=1000, swift_dir='/etc/swift')
    jobs.logger = SimpleNamespace(info=lambda *args: None, warning=lambda *args: None)
    jobs.dispatcher.spec = batch.Dispatcher.spec.__get__(SimpleNamespace(
        device_specs={}, limits=wire.NodeLimits(1, 1, 1),
        config=SimpleNamespace(max_output=1)))

    def refuse(server, entries, shared, blocks):
        raise _Refused(413, wire.too_large(1000))
    monkeypatch.setattr(jobs, '_exchange', refuse)
    ended: list = []
    for i in range(3):
        jobs.submit(replace(plan(ring, i, 0), program=Input(io.BytesIO(program), len(program))),
                    ended.append)
    jobs._send(jobs.queues.pop(next(iter(jobs.queues))))
    if alone:
        assert (went_alone, ended) == (['wc-0', 'wc-1', 'wc-2'], [])
        return
    assert went_alone == []
    assert [(r.node.name, r.status, r.http) for r in ended] == [
        (f'wc-{i}', 'refused', 413) for i in range(3)]
    assert ended[0].error.startswith('10.0.0.1:6200/d0 refused the node: 413 request larger '
                                     'than zerovm_maxinput (1000 bytes): ')
    assert 'raise zerovm_maxinput' in ended[0].error


def test_an_object_server_without_the_filter_is_a_warning_saying_what_to_add() -> None:
    # operator18: an object server whose pipeline lacked the filter was an info line
    # "_Retry('400: the zerocloud filter is not in its pipeline')", not what to write
    import logging

    from zerocloud.config import Config
    from zerocloud.proxy.dispatch import Dispatcher, _Retry, not_run_log

    class Answer:       # Swift's object server's 400 to a POST without X-Timestamp
        status = 400

        def getheader(self, name: str) -> None:
            return None
    with pytest.raises(_Retry) as e:    # another replica may run it
        Dispatcher(Config.from_conf({}), None).node_response(Answer())
    assert str(e.value) == (
        '400: the zerocloud filter is not in its pipeline: add egg:zerocloud#zerocloud_object '
        'to it, just before object-server (doc/operator-guide.md, "Where the filters go")')
    logger = logging.getLogger('test')
    assert not_run_log(logger, e.value) == logger.warning
    assert not_run_log(logger, _Retry('busy')) == logger.info

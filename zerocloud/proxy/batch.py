"""Batched dispatch: the nodes of a job bound for one object server travel together.

A node that reads its object in place and sends nothing else (no links it
reads, no replicas, no objects sent along but the job's image: the nodes of
a wildcard over a container, with or without an ``image``, and the mappers
of a ``connect`` graph, whose links come back as outputs: ``zerocloud.graph``)
is queued for the first primary holding its object, in ring order, as a
node sent alone would be (the ring spreads partitions, so the servers get
even shares).  A batch takes what is queued for its server, up to
``wire.BATCH_MAX`` nodes, as one request (``zerocloud.wire``, Batches): its
connection, ``100 Continue``, the program and the job's image (or their
digests, ``dispatch.Programs``) are paid once per batch.  A second batch goes to the
same server while one runs there once :data:`AHEAD` nodes wait for it (at
most :data:`PER_SERVER` at a time): the server starts it as the first one
ends, instead of waiting for the proxy (the first one's last results read, a
new request made, its entries built and parsed: 0.1-0.3 s per batch measured
at 10,000 nodes, during which a loaded server ran nothing).  A sender whose
batch ended while the other one's runs takes the next nodes only if at
least :data:`AHEAD` wait, so that the batches stay large; the last one takes
what is left.

A node the server did not run (an ``error`` member, no answer before the
stream ended or the server went away) is sent again alone
(``Dispatcher.run_node``) to the object's other primaries, then the
handoffs, as any node; a batch the server refused whole is split into
nodes sent alone the same way, except when it was full (503) or did not
accept the connection within ``conn_timeout`` (a loaded server): then it
is offered again after a growing pause for up to :data:`BUSY_WAIT` seconds
(at most ``zerovm_timeout``; the job's own nodes free its place, or a batch
of the job just before), and only then split, each node to the same server
first when it was full.  Splitting at once made hundreds of requests out of
one on a loaded cluster, each needing an admission slot of the account's
share: the nodes then went from server to server, to handoffs (404), and
some to no server at all (``unavailable``).  A batch refused as a bad request
(``400``) is a warning that says the server's reason (an object server older
than this proxy's ``batch/entries`` names it), and its nodes go alone to the
same server first.  An entry too large for any ``batch/entries`` member the
server reads (``wire.ENTRIES_LIMIT``) goes alone the same way (its own answer
says what is wrong), and a member is closed before it would grow past that
limit.  A first batch of one node is sent alone: a small job's
requests are those of before; later, once batches went to that server, one
node is a batch (a job's last nodes, streamed one by one as places free,
would otherwise each take a request, and an admission slot, of their own).
"""

from __future__ import annotations

import collections
import http.client
import itertools
import random
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from swift.common.bufferedhttp import http_connect
from swift.common.concurrency import Event, Timeout, sleep, spawn
from swift.common.exceptions import ConnectionTimeout
from swift.common.storage_policy import POLICIES

from zerocloud import graph, placement, turns, wire
from zerocloud.proxy.dispatch import (
    BUSY_PAUSE,
    BUSY_PAUSE_MAX,
    NODE_GRACE,
    Dispatcher,
    Plan,
    _Busy,
    _cached,
    _NeedProgram,
    _Refused,
    _Retry,
    check_answer,
    host_killed,
    not_run_log,
)
from zerocloud.proxy.response import NodeResult, short
from zerocloud.tmpdisk import DiskFull

PER_SERVER = 2              # batches on their way to one object server
PARTITIONS = 1024           # partitions whose primaries a job keeps (looked up once each)
RING_RELOAD = 15.0          # seconds they are kept, for a ring without its reload_time
AHEAD = 64                  # nodes waiting for a server that send a batch while one runs
BUSY_WAIT = 30.0            # seconds a batch a server cannot admit is offered again
REARM = 1.0                 # seconds a batch's answer is read under one timer


def batchable(plan: Plan) -> bool:
    """Can the node travel in a batch (in place, nothing to send but its spec and
    what the batch sends once: the program, the job's image; it may write to other
    nodes, a mapper: ``Plan.links_after``)?"""
    node = plan.node
    image_only = not plan.inputs or (set(plan.inputs) == {wire.IMAGE_DEVICE}
                                     and plan.image_digest is not None)
    return (plan.local is not None and image_only and node.replicate == 1
            and not node.reads_from)


@dataclass(slots=True)
class _Entry:
    plan: Plan
    server: dict                     # the primary the batch goes to
    others: list[dict]               # the other primaries
    rest: Iterator[dict] | None      # the handoffs (None: the plan's partition's, looked up
                                     # if it goes alone)
    finish: Callable[[NodeResult | Exception], None]
    size: int = 0                    # bytes of its entry (its part of the request)
    done: bool = False               # its result went to ``finish``, or it went alone
    killed: NodeResult | None = None  # its result when its server's host killed it


class _Shared(wire.SharedSpec):
    """``batch/spec``, whose ``set`` of an entry differing in its name, ``argv`` and
    ``env`` only (a wildcard's node: ``argv[0]`` and ``SCRIPT_NAME`` are its name) is
    made from those three fields, not from the whole spec as JSON and compared
    (a tenth of the proxy's CPU per node); the same ``set``."""

    def changes(self, spec: wire.NodeSpec) -> dict:
        if wire.SPEC_FIXED(spec) != self.fixed:
            return super().changes(spec)
        changed = {}
        if spec.name != self.spec.name:
            changed['name'] = spec.name
        if list(spec.argv) != self.obj['argv']:
            changed['argv'] = list(spec.argv)
        if spec.env != self.obj['env']:
            changed['env'] = dict(spec.env)
        return changed


_ALONE = 'alone'                     # not run in a batch: run it alone
_FIRST = 'first'                     # a batch of one: alone, on the same server first


class Batches:
    """The batchable nodes of one job, in batches per object server.

    A node waiting in a batch costs its plan and an entry, no green thread: a
    job keeps thousands of nodes in flight (``zerocloud.proxy.stream``), and a
    green thread each cost the proxy ~6 KiB more per node, which grew its peak
    RSS with the job; only a node sent alone again takes a thread."""

    def __init__(self, dispatcher: Dispatcher, trans_id: str, job_id: str,
                 load: collections.Counter, alone: graph.Places | None = None) -> None:
        """``alone``: the job's places of nodes sent alone, which a node sent alone
        from here waits for one of (``graph.Places``)."""
        self.dispatcher, self.trans_id, self.job_id, self.load = (
            dispatcher, trans_id, job_id, load)
        self.alone = alone
        self.config, self.logger = dispatcher.config, dispatcher.logger
        self.queues: dict[tuple, list[_Entry]] = collections.defaultdict(list)
        self.senders: collections.Counter = collections.Counter()
        self.sent: set[tuple] = set()        # keys that batches went to
        self.ring = None                     # the ring of ``partitions``
        self.ring_until = 0.0                # monotonic time they are kept until
        self.partitions: dict[int, tuple[dict, list[dict]]] = {}      # part ->
                                             # (first primary, the others), shared by entries
        self.devices: dict[tuple, dict] = {}     # (device id, index) -> its dict
        self.threads: set = set()
        self.closed = False

    def run(self, plan: Plan) -> NodeResult:
        """Run one node in a batch (or alone when it has to be); raises only a bug."""
        done = Event()
        self.submit(plan, lambda result: done.send(exc=result) if isinstance(
            result, Exception) else done.send(result))
        return done.wait()

    def submit(self, plan: Plan, finish: Callable[[NodeResult | Exception], None]) -> bool:
        """Queue one node for a batch (or alone when it has to be): its result goes to
        ``finish``, from another green thread, unless the job was closed first (the
        exception of a bug, if sending it alone raised one).  False, and nothing
        done, for a node that cannot travel in a batch."""
        if not batchable(plan):
            return False
        chosen, others, rest = self._primaries(plan)
        entry = _Entry(plan, chosen, others, rest, finish)
        key = (chosen['ip'], chosen['port'], plan.policy, plan.digest, plan.image_digest)
        queue = self.queues[key]
        queue.append(entry)
        if not self.senders[key] or (len(queue) >= AHEAD
                                     and self.senders[key] < PER_SERVER):
            self.senders[key] += 1
            self._spawn(self._sender, key)
        return True

    def _primaries(self, plan: Plan) -> tuple[dict, list[dict], Iterator[dict] | None]:
        """(the primary a node's batch goes to, the other primaries, the handoffs or
        None: its partition's).  The ring is asked once per partition (it copies
        its device dicts at every call: a tenth of the proxy's CPU per node), for
        at most :data:`PARTITIONS` of them at a time and no longer than the ring's
        ``reload_time`` (Swift reloads a ring in place: after a rebalance, nodes would
        go to the old primaries), and the entries share one dict per device: a few
        hundred bytes a partition."""
        servers = plan.servers
        partitioned = isinstance(servers, placement.PartitionServers)
        ring = servers.ring if partitioned else placement.object_ring(self.config.swift_dir,
                                                                      plan.policy)
        if partitioned:
            now = time.monotonic()
            if (ring is not self.ring or len(self.partitions) >= PARTITIONS
                    or now >= self.ring_until):
                self.ring, self.partitions, self.devices = ring, {}, {}
                self.ring_until = now + getattr(ring, 'reload_time', RING_RELOAD)
            found = self.partitions.get(servers.part)
            if found is None:
                primaries = [self.devices.setdefault((d['id'], d.get('index')), d)
                             for d in servers.primaries()]
                if len(primaries) == int(ring.replica_count):
                    found = self.partitions[servers.part] = (primaries[0], primaries[1:])
            if found is not None:
                return found[0], found[1], None
        servers = iter(servers)
        primaries = list(itertools.islice(servers, int(ring.replica_count)))
        return primaries[0], primaries[1:], servers

    def close(self) -> None:
        """The job is over or stopped: no batch goes on, no node goes alone."""
        self.closed = True
        for thread in list(self.threads):
            thread.kill()

    def _spawn(self, func: Callable, *args):
        thread = spawn(func, *args)
        self.threads.add(thread)
        thread.link(lambda t: self.threads.discard(t))
        return thread

    def _end(self, entry: _Entry, outcome: NodeResult | DiskFull | str) -> None:
        """The node's result (or the DiskFull that stops the job) to its ``finish``
        (once), or the node sent alone."""
        if entry.done:
            return
        entry.done = True
        if isinstance(outcome, (NodeResult, DiskFull)):
            entry.finish(outcome)
        elif not self.closed:
            thread = self._spawn(self._alone, entry, outcome)
            if entry.killed is not None:    # killed by ``close`` (maybe before it started)
                thread.link(lambda t: self._unused(entry))
        else:
            self._unused(entry)

    @staticmethod
    def _unused(entry: _Entry) -> None:
        """The job closed (or sending it alone raised a bug): nobody reads the result its
        host killed, whose outputs (spooled) are closed now, not by the garbage collector."""
        if entry.killed is not None:
            entry.killed.close()
            entry.killed = None

    def _killed(self, entry: _Entry, result: NodeResult) -> None:
        """A node its server's host killed (``host_failure``) goes alone to the object's
        other replicas, as when its server died; if none runs it, its result stands."""
        self.logger.info('node %s killed by the host of %s, run elsewhere: %s',
                         entry.plan.node.name, result.server, short(result.report.message))
        entry.killed = result
        self._end(entry, _ALONE)

    def _alone(self, entry: _Entry, how: str) -> None:
        first = [entry.server] if how == _FIRST else []
        rest = entry.plan.servers.handoffs() if entry.rest is None else entry.rest
        plan = replace(entry.plan, servers=itertools.chain(first, entry.others, rest))
        if self.alone is not None:
            self.alone.wait()
        try:
            result = self.dispatcher.run_node(self.trans_id, plan, self.job_id, self.load)
        except Exception as e:           # a bug: whoever waits for the node hears of it
            entry.finish(e)
            return
        finally:
            if self.alone is not None:
                self.alone.release()
        if entry.killed is not None:
            result = self._after_killed(entry.killed, result)
            entry.killed = None
        entry.finish(result)

    @staticmethod
    def _after_killed(killed: NodeResult, result: NodeResult) -> NodeResult:
        """The result of a node run again after its host killed it: the new one, or the
        host's failure when no other server could run it."""
        if result.status == 'unavailable':
            result.close()
            return killed
        killed.close()
        return result

    def _sender(self, key: tuple) -> None:
        queue = self.queues[key]
        batch: list[_Entry] = []
        try:
            sleep(0)                     # the job's other nodes join the queue first
            while queue and (self.senders[key] == 1 or len(queue) >= AHEAD):
                batch = queue[:wire.BATCH_MAX]
                del queue[:len(batch)]
                if len(batch) == 1 and key not in self.sent:
                    self._end(batch[0], _FIRST)
                else:
                    self.sent.add(key)
                    self._send(batch)
        finally:
            self.senders[key] -= 1
            if not self.senders[key]:    # stopped (or a bug): nobody else sends them
                batch += queue
                queue.clear()
            for entry in batch:
                self._end(entry, _ALONE)

    def _send(self, batch: list[_Entry]) -> None:
        """One batch to its server; every node of it ends with a result or alone."""
        server = batch[0].server
        where = f'{server["ip"]}:{server["port"]}'
        shared = None       # the first spec, sent once (batch/spec): each entry, what differs
        block, size, blocks = [], 0, []     # entries' JSON, joined into batch/entries members
        kept = []
        for entry in batch:         # a spec at a time: 512 at once held ~0.4 MiB
            turns.take()
            plan = entry.plan
            spec = self.dispatcher.spec(plan)
            if shared is None:
                shared = _Shared(spec)
                shared_json = shared.to_json()
                if len(shared_json) > wire.SPEC_LIMIT:  # no server reads it (400, a JSON
                    shared = None                       # error): alone, it is a 413 that
                    self._end(entry, _FIRST)            # says why, nothing sent
                    continue
            data = wire.BatchEntry(entry.server['device'], plan.partition, plan.path,
                                   spec).to_json(shared)
            # its merged spec as a node's node.json: at most the shared one's and its
            # set's (the same JSON), worked out only near the limit
            if len(shared_json) + len(data) > wire.SPEC_LIMIT and \
                    shared.spec_size(spec) > wire.SPEC_LIMIT:
                self._end(entry, _FIRST)            # alone: the 413 a node alone gets
                continue
            if len(data) + 2 > wire.ENTRIES_LIMIT:      # in no member the server reads: its
                self._end(entry, _FIRST)                # own request says what it thinks
                continue
            # a member: the entries, a comma between two, in brackets
            if block and size + len(data) + len(block) + 2 > wire.ENTRIES_LIMIT:
                blocks.append(wire.entries_member(block))
                block, size = [], 0
            kept.append(entry)
            entry.size = len(data)
            block.append(data)
            size += entry.size
            if len(block) == wire.ENTRIES_MAX or size >= wire.ENTRIES_BYTES:
                blocks.append(wire.entries_member(block))
                block, size = [], 0
        if block:
            blocks.append(wire.entries_member(block))
        batch = kept
        if not batch:
            return
        once = wire.bytes_member(wire.BATCH_SPEC, shared_json)
        self.load[server['ip'], server['port']] += len(batch)
        alone = _ALONE
        pause = BUSY_PAUSE
        deadline = time.monotonic() + min(BUSY_WAIT, self.config.timeout)
        try:
            while True:
                try:
                    self._exchange(server, batch, once, blocks)
                    break
                except (_Busy, ConnectionTimeout) as e:
                    # full, or too busy to accept the connection in time: again after a
                    # pause, then alone (there first when full); splitting at once would
                    # turn one request into hundreds, each needing a slot of its own
                    if time.monotonic() + pause < deadline:
                        self.logger.info('batch of %d nodes not admitted by %s, again: %r',
                                         len(batch), where, e)
                        sleep(pause * random.uniform(0.5, 1.5))
                        pause = min(pause * 2, BUSY_PAUSE_MAX)
                        continue
                    self.logger.info('batch of %d nodes not admitted by %s: %r',
                                     len(batch), where, e)
                    alone = _FIRST if isinstance(e, _Busy) else _ALONE
                    break
        except DiskFull as e:   # the proxy's, not the server's: its nodes stop the job
            for entry in batch:
                self._end(entry, e)
        except (_Retry, OSError, Timeout, http.client.HTTPException, ValueError) as e:
            not_run_log(self.logger, e)('batch of %d nodes not run on %s: %r', len(batch),
                                        where, e)
        except _Refused as e:          # each node alone gets the answer it deserves
            if self._refused_alone_too(e, batch[0].plan):
                self.logger.info('batch of %d nodes refused by %s, as each would be: %r',
                                 len(batch), where, e)
                for entry in batch:
                    self._end(entry, self._refused(entry, e))
            elif e.status == 400:     # alone, there too: each gets the answer it deserves
                older = f'unexpected member {wire.BATCH_PREFIX}' in str(e)
                self.logger.warning(
                    'batch of %d nodes refused by %s as a bad request, they run alone%s: %r',
                    len(batch), where, ' (an object server older than this proxy? upgrade '
                    'object servers first)' if older else '', e)
                alone = _FIRST
            else:
                self.logger.info('batch of %d nodes refused by %s: %r', len(batch), where, e)
        finally:
            self.load[server['ip'], server['port']] -= len(batch)
            for entry in batch:
                self._end(entry, alone)

    @staticmethod
    def _refused_alone_too(e: _Refused, plan: Plan) -> bool:
        """Would a node of the batch that ``e`` refused as too large be too large alone
        as well (what all of them send, the program and the job's image, is over the
        server's zerovm_maxinput)?  Then sending them alone only has each refused."""
        limit = wire.too_large_limit(e.reason)
        image = plan.inputs.get(wire.IMAGE_DEVICE)
        least = plan.program_size + (image.size if image is not None else 0)
        return limit is not None and least > limit

    def _refused(self, entry: _Entry, e: _Refused) -> NodeResult:
        """A node's result as its server refused it (``Dispatcher.run_node``'s)."""
        server, plan = entry.server, entry.plan
        res = NodeResult(plan.node, POLICIES.get_by_index(plan.policy).name)
        res.fail(*e.node_error(f'{server["ip"]}:{server["port"]}/{server["device"]}',
                               self.config.max_input))
        return res

    def _exchange(self, server: dict, batch: list[_Entry], shared: wire.Member,
                  blocks: list[bytes]) -> None:
        programs = self.dispatcher.programs
        known = {digest for _, digest, _ in _cached(batch[0].plan)
                 if programs.known(server, digest)}
        for digest in known:
            programs.wait_sent(server, digest)
        try:
            self._attempt(server, batch, shared, blocks, known)
        except _NeedProgram:
            for digest in known:
                programs.known(server, digest, False)
            self._attempt(server, batch, shared, blocks, set())

    def _attempt(self, server: dict, batch: list[_Entry], shared: wire.Member,
                 blocks: list[bytes], by_digest: set[str]) -> None:
        """One request for ``batch``: the program and the job's image sent by digest
        where ``by_digest`` has theirs, else in full, then ``shared`` (``batch/spec``)
        and the entries (``blocks``: their ``batch/entries`` members, a send each)."""
        plan = batch[0].plan
        programs = self.dispatcher.programs
        exe = [] if plan.program is None or plan.digest in by_digest else [
            wire.shared_member(wire.EXE, plan.program.file, plan.program.size)]
        image = plan.inputs.get(wire.IMAGE_DEVICE)
        if image is not None and plan.image_digest not in by_digest:
            exe.append(wire.shared_member(wire.DEV_PREFIX + wire.IMAGE_DEVICE, image.file,
                                          image.size))
        members = [*exe, shared]
        headers = {wire.EXECUTE: wire.VERSION, wire.BATCH: str(len(batch)),
                   wire.READS_REPORTS: '1',
                   'Content-Type': 'application/x-tar', 'Expect': '100-continue',
                   'X-Backend-Storage-Policy-Index': str(plan.policy),
                   'X-Trans-Id': self.trans_id, 'X-Zerocloud-Id': self.job_id,
                   wire.ACCOUNT: plan.account,
                   'Content-Length': str(wire.tar_size((n, s) for n, s, _ in members)
                                         + sum(map(len, blocks)))}
        sending = []
        for header, digest, _ in _cached(plan):
            if digest in by_digest:
                headers[header] = digest
            elif (entry := programs.sending_now(server, digest)) is not None:
                sending.append(entry)            # later requests there: the digest
        account = plan.path.split('/')[1]
        started = time.monotonic()
        try:
            with ConnectionTimeout(self.config.conn_timeout):
                conn = http_connect(server['ip'], server['port'], server['device'], 0, 'POST',
                                    f'/{account}/.zerocloud/batch', headers)
        except BaseException:
            for entry in sending:
                programs.ended(*entry)
            raise
        sock = conn.sock
        try:
            with Timeout(NODE_GRACE):
                resp = conn.getexpect()
            if resp.status == http.client.CONTINUE:
                with Timeout(self.config.timeout + NODE_GRACE):
                    for chunk in itertools.chain(wire.stream_members(members), blocks,
                                                 [wire.TAR_END]):
                        conn.send(chunk)
                    while sending:
                        programs.sent(*sending.pop())
                    resp = conn.getresponse()
            self.dispatcher.setups.heard(server, resp)
            check_answer(resp, bool(by_digest))
            self._results(resp, server, batch, started,
                          plan.program_size if exe and exe[0][0] == wire.EXE else 0,
                          sum(size for _, size, _ in (*exe, shared)))
        finally:
            for entry in sending:
                programs.ended(*entry)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _results(self, resp, server: dict, batch: list[_Entry], started: float,
                 program_bytes: int, once_bytes: int) -> None:
        """Read the answer's members; each node's result goes to it once complete:
        ``batch/reports`` blocks (a server that reads this proxy's ``X-Zerovm-Reports``)
        or a node's members each (a server of before them, or a node with large
        outputs), in any mix."""
        where = f'{server["ip"]}:{server["port"]}/{server["device"]}'
        members = wire.read_members(wire.ReadAhead(resp), None)
        current: NodeResult | None = None       # a node read from members of its own
        index, outputs_of = -1, ''              # its index, the prefix of its outputs

        def finish(i: int, result: NodeResult) -> None:
            entry = batch[i]
            result.server = where
            result.seconds = time.monotonic() - started
            result.request_bytes = entry.size
            if i == 0:
                result.program_bytes = program_bytes
                result.request_bytes += once_bytes      # the program, image, batch/spec
            if host_killed(result):
                self._killed(entry, result)
            else:
                self._end(entry, result)

        def not_run(i: int, text: str) -> None:
            self.logger.debug('node %s not run in a batch on %s: %s',
                              batch[i].plan.node.name, where, short(text))
            self._end(batch[i], _ALONE)

        limit = self.config.timeout + NODE_GRACE
        max_output = self.config.max_output
        policy = POLICIES.get_by_index(batch[0].plan.policy).name       # one per batch
        timer, armed = None, 0.0
        try:
            while True:
                # each member within ``limit`` of when it was asked for: the timer is armed
                # for ``limit`` + REARM and armed again once REARM seconds went (two per
                # node, a timer cost ~4 us each)
                now = time.monotonic()
                if timer is None or now - armed > REARM:
                    if timer is not None:
                        timer.cancel()
                    timer, armed = Timeout(limit + REARM), now
                turns.take()            # the answer may all be there already
                item = next(members, None)
                if item is None:
                    break
                name, f = item
                if current is not None and name.startswith(outputs_of):
                    device = name[len(outputs_of):]
                    out = current.outputs[device] = batch[index].plan.output(device)
                    wire.copy_limited(f, out, max_output)
                    continue
                if current is not None:
                    finish(index, current)
                    current = None
                if name == wire.REPORTS:
                    if f.left > wire.REPORTS_LIMIT:
                        raise wire.WireError(f'{name} larger than {wire.REPORTS_LIMIT} bytes')
                    for i, report, outputs in wire.read_reports(f.read()):
                        turns.take()
                        if not 0 <= i < len(batch) or batch[i].done:
                            raise wire.WireError(f'unexpected node {i} in {name}')
                        if isinstance(report, str):
                            not_run(i, report)
                            continue
                        result = NodeResult(batch[i].plan.node, policy, report)
                        for device, data in outputs.items():
                            if len(data) > max_output:
                                result.close()
                                raise wire.TooLarge(f'{name}: node {i}: output {device} '
                                                    f'larger than {max_output} bytes')
                            result.outputs[device] = out = batch[i].plan.output(device)
                            out.write(data)
                        finish(i, result)
                    continue
                i, sub = wire.batch_index(name)
                if not 0 <= i < len(batch) or batch[i].done:
                    raise wire.WireError(f'unexpected member {name}')
                if sub == wire.ERROR:
                    not_run(i, f.read(4096).decode('utf-8', 'replace'))
                elif sub == wire.REPORT:
                    index, outputs_of = i, wire.batch_member(i, wire.DEV_PREFIX)
                    current = NodeResult(batch[i].plan.node, policy,
                                         wire.NodeReport.from_json(f.read(1 << 20)))
                else:
                    raise wire.WireError(f'unexpected member {name}')
            if current is not None:
                finish(index, current)
        except BaseException:
            if current is not None:
                current.close()
            raise
        finally:
            if timer is not None:
                timer.cancel()

"""Multi-node jobs: ``connect`` graphs and ``replicate`` votes, run by the proxy.

``zerocloud.job`` wires the groups: with ``connect: ["B"]`` on group A,
``A-3`` writes ``/dev/out/B-1`` and ``B-1`` reads ``/dev/in/A-3``.  This
module decides when each node runs and how those channels travel.

How data moves between nodes
----------------------------

Through the proxy, as it is written (a pipeline):

1. a node starts as soon as every node it reads from is *running*: its
   object server has given it a sandbox worker and answered with response
   headers (nodes that read from no node start at once, up to
   ``concurrency`` at a time);
2. while it runs, its object server sends what it writes to each
   ``/dev/out/<peer>`` as ``part/out/<peer>`` members of the response (it
   looks at the growing channel files every few milliseconds); the proxy
   appends each part to one temporary file per node (on disk, unlinked when
   created, never whole in memory, never left behind), counting it against
   ``zerovm_maxspool``, and never waits for a reader: a slow consumer never
   slows a producer down;
3. each reader's request (chunked) carries, after the node spec and program
   and a ``start`` member, that data as ``part/in/<producer>`` members as it
   arrives, then ``end/in/<producer>`` once the producer has ended ``ok``
   (and its replicas agreed).  The reader's object server starts the node at
   ``start`` and appends the parts to ``/dev/in/<producer>`` as they come; a
   read there waits until it can return all it asked for or the end of the
   data (``zvm_core.channels.StreamBacking``), never a short read that
   depends on timing, so results are byte for byte those of a run on the
   complete data, and replicas agree;
4. when a reader (every replica of it) has finished, the data it read is
   dropped.

Why no deadlock: a node is admitted only when the nodes it reads from run,
so a running node only ever waits for running nodes, which wait for running
nodes in turn and never for it (the graph is acyclic): every wait ends.  A
node in an object server's queue holds no worker and nobody waits for it
(its readers have not started).  A node that cannot be admitted anywhere
(503 everywhere) waits and is tried again, as any node; its inputs are on
the proxy's disk from their first byte, so a retry, on the same server or
another, and every replica read the same bytes.  A graph of 1000 nodes runs
on three servers: admission stays per node, and a node only takes a worker
once what it reads from has one.

Why not direct links between object servers (ZeroVM's TCP channels)?  Every
node of a connected graph would then need a worker at the same time
(ZeroCloud had a separate "cluster" pool and answered "Cluster slot not
available"), a slow reader would stall its writer, and a reader could not
be retried or replicated with the same input.  The price, stated plainly:
node-to-node data crosses the proxy twice and waits on its disk.

A producer that fails (or whose replicas disagree) fails its links: the
requests of its readers are cut before their ``end/in/...`` member, their
reads of that channel fail with ``EIO``, and they end ``skipped`` whatever
they did (see below).  Parts already sent are never taken back, but nothing
of a failed job is stored.

Mappers travel in batches: a node that reads its object in place, writes to
other nodes and reads from none (a wildcard's node, not replicated) goes in
a batch with the job's other nodes bound for its object server
(``zerocloud.proxy.batch``), as an unconnected wildcard's nodes do, instead
of a request of its own.  A batch's node does not stream: what it wrote to
``/dev/out/<peer>`` comes back with its report once it ended
(``Plan.links_after``; also when it is sent again alone, on another
replica), goes to the spool then (:func:`_links_from_outputs`), and its
readers start only then, with that data complete.  No deadlock either: a
node in a batch reads nothing and waits for nobody, and its readers take a
worker only once it has ended.  A node's ``started`` is then the event of
its end (the proxy does not see a batch's node start).

``zerovm_pipeline = false`` (``pipeline=False`` here) runs the same graph
stage by stage: a node starts when the nodes it reads from have *finished*
(then all of its input is on the proxy's disk before it starts).

A graph must be acyclic: a group connected to itself (ZeroCloud's
all-to-all ``mapper -> mapper``) or any cycle of groups would need its nodes
to run at the same time, and is refused with a 400 that names the cycle.

Limits: each ``/dev/out/<peer>`` is a written channel with the proxy's
``zerovm_maxoutput`` quota (beyond it the program's write fails with
``EDQUOT`` and the node ends ``quota``); all the data the nodes of one job
send each other, in total, is at most ``zerovm_maxspool`` bytes (the node
whose output crosses it ends ``error``, HTTP 413); a node has at most
``zerocloud.peers.MAX_CHANNELS`` channels (each is a descriptor passed to a sandbox
worker; a node that reads links counts one more, the pipe that wakes it).
A node's wall-clock limit counts from when it got its worker, so the time
it spends waiting for what it reads counts too.

In the JSON report, ``started`` and ``finished`` give the order in which the
proxy saw each node start (get its worker) and end, counted over the job's
events (1, 2, ...): with a pipeline, a reader may start, and even end,
before the nodes it reads from end.

Replicas
--------

``replicate: N`` runs every node of the group N times at once, on N
different object servers: for a node placed next to its object, servers
holding replicas of it (N above the ring's replica count is a 400); for
other nodes, any servers.  Every replica gets the same inputs; only the
first returns its outputs (and streams its links), the others return their
report alone.  When all
replicas ended ``ok``, their exit codes and the etags of all their written
channels (``/dev/out/<peer>`` included) are compared: any difference makes
every replica of the node ``mismatch`` (HTTP 409), so the job stores
nothing.  Each replica is one entry of the ``X-Nexe-*`` lists.

A node whose producer failed does not run, or, if it had started, is cut
short: either way its status is ``skipped`` (HTTP 424, never the job's
status: that is the failed producer's), decided once every node has ended.
Nodes that do not depend on a failed node still run, so the statuses of a
job do not depend on timing.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from swift.common.concurrency import (
    Event,
    GreenletExit,
    GreenPile,
    GreenPool,
    LightQueue,
    greenthread,
)

from zerocloud import wire
from zerocloud.job import Group, JobError, Node
from zerocloud.tmpdisk import room

IN, OUT = 'in/', 'out/'
MISMATCH, SKIPPED = 'mismatch', 'skipped'


class Result(Protocol):
    """What the proxy keeps of one run of a node (``zerocloud.proxy.response.NodeResult``)."""

    node: Node
    report: dict
    outputs: dict
    server: str
    error: str
    replica: int
    links: dict[str, int]

    @property
    def status(self) -> str: ...

    @property
    def failed(self) -> bool: ...

    def fail(self, status: str, message: str, http_status: int | None = None) -> None: ...

    def close(self) -> None: ...


# -- checks before anything runs ---------------------------------------------------------

def check_groups(groups: list[Group]) -> None:
    """Refuse ``connect`` cycles: their nodes would have to run at the same time."""
    targets = {g.name: g.connect for g in groups}
    state: dict[str, str] = {}
    for root in targets:
        if root in state:
            continue
        path, stack = [root], [iter(targets[root])]
        state[root] = 'open'
        while stack:
            target = next(stack[-1], None)
            if target is None:
                state[path.pop()] = 'done'
                stack.pop()
            elif state.get(target) == 'open':
                raise _cycle(path[path.index(target):] + [target])
            elif target not in state:
                state[target] = 'open'
                path.append(target)
                stack.append(iter(targets[target]))


def _cycle(names: list[str]) -> JobError:
    why = ('its nodes would have to run at the same time to exchange data, which this '
           'version does not do: connect groups in one direction only (no cycles)')
    if len(names) == 2:
        return JobError(f'Cannot connect {names[0]} to itself ({names[0]} -> {names[0]}): '
                        f'{why}')
    return JobError(f'connect makes a cycle ({" -> ".join(names)}): {why}')


def check_replicas(plans: Iterable, servers_for: Callable[[object], tuple[int, str]]) -> None:
    """``servers_for(plan)`` -> (how many servers could run it, what they are)."""
    seen = set()
    for plan in plans:
        node = plan.node
        if node.replicate == 1 or node.group in seen:
            continue
        seen.add(node.group)
        available, what = servers_for(plan)
        if node.replicate > available:
            raise JobError(f'Invalid replicate in {node.group}: {node.replicate} runs need '
                           f'{node.replicate} different servers, there are {available} '
                           f'({what})')


def link_devices(node: Node, max_output: int) -> list[wire.DeviceSpec]:
    """The node spec's devices for its channels to and from other nodes."""
    return ([wire.DeviceSpec(IN + peer, 'r', False, 'link') for peer in node.reads_from]
            + [wire.DeviceSpec(OUT + peer, 'w', False, None, put_size=max_output)
               for peer in node.writes_to])


# -- node-to-node data on the proxy ------------------------------------------------------

class SpoolFull(wire.TooLarge):
    """The nodes of the job sent each other more than ``zerovm_maxspool`` bytes."""


class LinkFailed(Exception):
    """The node writing a link failed: what it wrote will never be complete."""


OPEN, COMPLETE, FAILED = 'open', 'complete', 'failed'


class Budget:
    """What the nodes of one job may still send each other (``zerovm_maxspool``)."""

    def __init__(self, total: int) -> None:
        self.total, self.used = total, 0


class Link:
    """What one node writes to another (``/dev/out/<peer>``), kept as it arrives.

    Readers (:class:`Feeder`) read it from the start, any number of times, while
    it grows; it is ``complete`` once the node that writes it ended ``ok`` (and
    its replicas agreed), ``failed`` if it did not.
    """

    def __init__(self, spool: Spool, peer: str) -> None:
        self.spool, self.peer = spool, peer
        self.extents: list[tuple[int, int, int]] = []   # (link offset, spool offset, bytes)
        self.size = 0
        self.state = OPEN
        self.waiters: set = set()

    def read(self, pos: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``pos`` (< size): from one extent, at its own offset."""
        i = bisect.bisect_right(self.extents, (pos, float('inf'), 0)) - 1
        start, where, size = self.extents[i]
        return os.pread(self.spool.fileno(), min(n, start + size - pos), where + pos - start)

    def notify(self) -> None:
        for event in list(self.waiters):
            if not event.ready():
                event.send()

    def release(self) -> None:
        """Its reader is done with it."""
        self.spool.release()


class Spool:
    """The links a node writes, back to back in one temporary file as their parts
    arrive (on disk, unlinked when created: never whole in memory, never left
    behind; one descriptor per node whatever its fan-out).  The file goes when
    the writer and every reader of every link are done with it.
    """

    def __init__(self, peers: Iterable[str], budget: Budget, max_link: int) -> None:
        self.links = {peer: Link(self, peer) for peer in peers}
        self.budget, self.max_link = budget, max_link
        self._file = None
        self._end = 0
        self._users = len(self.links) + 1           # the readers and the writer

    def fileno(self) -> int:
        return self._file.fileno()

    def append(self, link: Link, data: bytes) -> None:
        if link.state != OPEN or not data:
            return
        if link.size + len(data) > self.max_link:
            raise wire.TooLarge(f'/dev/out/{link.peer} larger than {self.max_link} bytes')
        if self.budget.used + len(data) > self.budget.total:
            raise SpoolFull(f'the nodes of this job sent each other more than '
                            f'zerovm_maxspool bytes ({link.size + len(data)} or more from '
                            f'this node to {link.peer})')
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix='zerocloud-links-')
        with room():
            os.pwrite(self._file.fileno(), data, self._end)
        link.extents.append((link.size, self._end, len(data)))
        self._end += len(data)
        link.size += len(data)
        self.budget.used += len(data)
        link.notify()

    def finish(self, ok: bool) -> None:
        """The writer is done: every link complete, or every link failed."""
        for link in self.links.values():
            if link.state == OPEN:
                link.state = COMPLETE if ok else FAILED
                link.notify()
        self.release()

    def release(self) -> None:
        self._users -= 1
        if not self._users and self._file is not None:
            self._file.close()
            self._file = None


class Relay:
    """The links of one attempt at running a node, as its response brings them.

    A node run again (its server failed) writes the same bytes again: only
    those past what an earlier attempt brought are added.
    """

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.seen: dict[str, int] = {}

    def add(self, peer: str, src) -> None:
        link = self.spool.links.get(peer)
        if link is None:
            raise wire.WireError(f'a part of /dev/out/{peer}, which this node does not have')
        while chunk := src.read(wire.CHUNK):
            start = self.seen.get(peer, 0)
            self.seen[peer] = start + len(chunk)
            if self.seen[peer] > link.size:
                self.spool.append(link, chunk[max(0, link.size - start):])


class Feeder:
    """The request members that carry a node's input links to its object server.

    Each link is sent from its start as it grows (``part/in/<peer>`` members,
    round robin), then ``end/in/<peer>`` with its size once it is complete.
    :exc:`LinkFailed` when one of them failed: the request is then cut, and
    the node's reads of that link fail.  :meth:`stop` ends the members early.
    """

    def __init__(self, links: dict[str, Link]) -> None:
        self.links = links
        self.stopped = False
        self._event = None

    def stop(self) -> None:
        self.stopped = True
        if self._event is not None and not self._event.ready():
            self._event.send()

    def members(self) -> Iterator[wire.Member]:
        pos = dict.fromkeys(self.links, 0)
        pending = sorted(self.links)
        while pending and not self.stopped:
            moved = False
            for name in list(pending):
                link = self.links[name]
                if link.state == FAILED:
                    raise LinkFailed(f'{name}: its node failed')
                if pos[name] < link.size:
                    data = link.read(pos[name], wire.PART)
                    pos[name] += len(data)
                    moved = True
                    yield wire.bytes_member(wire.PART_PREFIX + name, data)
                elif link.state == COMPLETE:
                    pending.remove(name)
                    moved = True
                    yield wire.bytes_member(wire.END_PREFIX + name, str(link.size).encode())
            if not moved and not self.stopped:
                self._wait([self.links[name] for name in pending])

    def _wait(self, links: list[Link]) -> None:
        self._event = Event()
        for link in links:
            link.waiters.add(self._event)
        try:
            self._event.wait()
        finally:
            for link in links:
                link.waiters.discard(self._event)
            self._event = None


class NodeLinks:
    """What ``run_replica`` gets for one replica of a node: its input links
    (``in/<peer>`` -> :class:`Link`), where its output links go (a
    :class:`Spool`, replica 1 only) and ``running()``, to call once an object
    server has given the node a worker (replica 1 only)."""

    def __init__(self, inputs: dict[str, Link], outputs: Spool | None,
                 running: Callable[[], None] | None) -> None:
        self.inputs, self.outputs, self.running = inputs, outputs, running


# -- running the graph -------------------------------------------------------------------

RunReplica = Callable[[object, int, Iterable[dict], NodeLinks | None], Result]


class _Distinct:
    """Servers in order, each ``ip:port`` once: replicas sharing it run on different servers.

    Not a generator: one replica done with it (``yield from`` closes a generator
    it delegates to) must not end it for the others.
    """

    def __init__(self, servers: Iterable[dict]) -> None:
        self._servers = iter(servers)
        self._seen: set[tuple[str, int]] = set()

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        while True:
            server = next(self._servers)
            if (server['ip'], server['port']) not in self._seen:
                self._seen.add((server['ip'], server['port']))
                return server


def _mark(result: Result, status: str, message: str) -> None:
    """A new status for a run that happened: its report (etags, accounting) stays."""
    result.report = dataclasses.replace(result.report, status=status, message=message)
    result.error = message


def vote(results: list[Result]) -> None:
    """Compare the replicas of one node; any difference makes them all ``mismatch``."""
    if len(results) < 2 or any(r.failed for r in results):
        return
    first = results[0]
    for other in results[1:]:
        if other.report.retcode != first.report.retcode:
            what = (f'the exit code: {first.server} {first.report.retcode}; '
                    f'{other.server} {other.report.retcode}')
            break
        ours, theirs = first.report.etags, other.report.etags
        differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if differ:
            what = (f'{differ[0]}: {first.server} {ours.get(differ[0], "none")}; '
                    f'{other.server} {theirs.get(differ[0], "none")}')
            break
    else:
        return
    for r in results:
        _mark(r, MISMATCH, f'replicas disagree on {what}')


def _replicas(plan, run_replica: RunReplica, inputs: dict[str, Link], outputs: Spool | None,
              running: Callable[[], None]) -> list[Result]:
    count = plan.node.replicate
    linked = plan.node.reads_from or plan.node.writes_to

    def links(replica: int) -> NodeLinks | None:
        if not linked:
            return None
        return NodeLinks(inputs, outputs if replica == 1 else None,
                         running if replica == 1 else None)
    if count == 1:
        results = [run_replica(plan, 1, plan.servers, links(1))]
    else:
        servers = _Distinct(plan.servers)        # shared: each server goes to one replica
        pile = GreenPile(count)
        for replica in range(1, count + 1):
            pile.spawn(run_replica, plan, replica, servers, links(replica))
        try:
            results = list(pile)
        except BaseException:        # stopped (its job's client went away): stop them too
            stop(pile.pool)
            raise
    for replica, result in enumerate(results, 1):
        result.replica = replica
    vote(results)
    return results


def replicas(plan, run_replica: RunReplica) -> list[Result]:
    """Every replica of a node without links, compared (``vote``): a wildcard's node
    run by ``zerocloud.proxy.stream``, which needs no graph."""
    return _replicas(plan, run_replica, {}, None, lambda: None)


class Places:
    """The places of a job's nodes sent alone (``run``'s and ``zerocloud.proxy.stream``'s
    ``alone``): each such node in flight holds one.  A batched node that its batch
    did not run and that goes alone (``zerocloud.proxy.batch``) waits for one too.
    That wait ends: its readers cannot have started (a batched node is never seen
    running, ``run``), so no node holding a place waits for it.  A freed place goes
    to the first waiter, not to whoever asks next."""

    def __init__(self, size: int) -> None:
        self.size, self.used = size, 0
        self._waiting: list[Event] = []

    def take(self) -> bool:
        """Take a place if one is free and nobody waits for one."""
        if self.used >= self.size or self._waiting:
            return False
        self.used += 1
        return True

    def wait(self) -> None:
        """Take a place, waiting (green) for one."""
        if self.take():
            return
        given = Event()
        self._waiting.append(given)
        try:
            given.wait()
        except BaseException:
            if given in self._waiting:
                self._waiting.remove(given)
            elif given.ready():         # handed one it will not use
                self.release()
            raise

    def release(self) -> None:
        if self._waiting:
            self._waiting.pop(0).send()     # the place passes on
        else:
            self.used -= 1


def run(plans: list, run_replica: RunReplica, skipped: Callable[[object, int, str], Result],
        *, max_spool: int, max_link: int = 1 << 62, concurrency: int,
        pipeline: bool = True, progress=None,
        batched: Callable[[object], bool] | None = None, alone: int | Places | None = None
        ) -> list[Result]:
    """Run every node once the nodes it reads from run (``pipeline``) or have
    finished; results in node order, each node's replicas together.

    At most ``concurrency`` nodes are in flight; of them, at most ``alone`` (a
    count, or :class:`Places` shared with the job's batches; default: all) that
    ``batched(plan)`` does not say wait in a batch: those send requests of
    their own (each replica one), which a flood of would have object servers
    refuse with 503s and retries.  Counted per node, all
    its replicas in one place, never per replica: a replicated producer
    whose first replica runs admits its readers, and readers holding every
    place would leave its second replica, whose end they wait for, without
    one.  A node waiting for a place holds none, and the nodes holding one
    only ever wait for running nodes (below): every wait ends.

    ``plans`` is emptied: each plan goes once its node ended, but those of the
    nodes that read or write links (the end's skips need them), so that a
    connected job's wildcard of 100,000s of nodes does not keep every plan
    (tests/unit/test_proxy_connected_memory.py).

    ``run_replica(plan, replica, servers, links)`` runs one replica on the first
    of ``servers`` that takes it, with ``links`` (a :class:`NodeLinks`, None
    for a node without links); it reports failures in its result, never
    raises.  ``skipped(plan, replica, why)`` makes the result of a node that
    cannot run, or whose inputs failed.  ``progress`` (a
    ``zerocloud.deferred.Progress``) hears of each node sent and ended.
    """
    running: set[str] = set()
    started: set[str] = set()
    done: dict[str, list[Result]] = {}
    spools: dict[str, Spool] = {}
    events = LightQueue()
    pool = GreenPool(concurrency)
    budget = Budget(max_spool)
    errors = []
    clock = itertools.count(1)
    began: dict[str, int] = {}
    stopped: list[bool] = []
    sent_alone: set[str] = set()     # in flight, not in a batch
    places = Places(alone) if isinstance(alone, int) else alone

    def work(plan, inputs: dict[str, Link], outputs: Spool | None) -> None:
        results: list[Result] = []
        try:
            if stopped:
                raise GreenletExit
            results = _replicas(plan, run_replica, inputs, outputs,
                                lambda: events.put(('running', plan, None, None)))
            if outputs is not None and not _failed(results):
                _links_from_outputs(results[0], outputs)
            if outputs is not None and not _failed(results):
                _check_links(results, outputs)
            events.put(('done', plan, results, None))
        except BaseException as e:      # a bug; the loop must still hear of the node
            events.put(('done', plan, results, e))
        finally:
            if outputs is not None:
                outputs.finish(not _failed(results))

    def can_start(plan) -> bool:
        return all(p in done or (pipeline and p in running) for p in plan.node.reads_from)

    def start(plan) -> None:
        node = plan.node
        started.add(node.name)
        if progress is not None:
            progress.started()
        bad = _bad_producer(node, done)
        if bad is not None:
            events.put(('done', plan, [skipped(plan, k, bad) for k in
                                       range(1, node.replicate + 1)], None))
            return
        inputs = {IN + p: spools[p].links[node.name] for p in node.reads_from}
        outputs = None
        if node.writes_to:
            outputs = spools[node.name] = Spool(node.writes_to, budget, max_link)
        pool.spawn_n(work, plan, inputs, outputs)

    waiting = list(plans)        # not started yet: a look at each event, not at every plan
    order = [plan.node for plan in plans]
    linked = [plan for plan in plans if plan.node.reads_from or plan.node.writes_to]
    plans.clear()

    def takes_place(plan) -> bool:
        """May the node start now?  One sent alone takes one of the ``alone``
        places (one that will be skipped sends nothing)."""
        if (places is None or (batched is not None and batched(plan))
                or _bad_producer(plan.node, done) is not None):
            return True
        if not places.take():
            return False
        sent_alone.add(plan.node.name)
        return True

    def start_ready() -> None:
        for plan in waiting:
            if plan.node.name not in started and can_start(plan) and takes_place(plan):
                start(plan)
        waiting[:] = [p for p in waiting if p.node.name not in started]

    try:
        start_ready()
        while len(done) < len(order):
            kind, plan, results, error = events.get()
            node = plan.node
            if kind == 'running':
                running.add(node.name)
                began.setdefault(node.name, next(clock))
            else:
                done[node.name] = results
                if node.name in sent_alone:
                    sent_alone.discard(node.name)
                    places.release()
                if progress is not None:
                    progress.finished(results or ())
                if node.name not in began:      # ran in a batch: its start was not seen
                    began[node.name] = next(clock)
                end = next(clock)
                for r in results or ():
                    r.started, r.finished = began.get(node.name), end
                if error is not None:
                    errors.append(error)
                for peer in node.reads_from:          # what it read is no longer needed
                    if peer in spools:
                        spools[peer].links[node.name].release()
            start_ready()
        if errors:
            raise errors[0]
        _skip_after_failed_producers(linked, done, skipped)
    except BaseException:
        stopped.append(True)            # stopped from outside (the client went away)
        stop(pool)
        for spool in spools.values():
            for link in spool.links.values():
                if link.state == OPEN:
                    link.state = FAILED
                    link.notify()
        pool.waitall()
        left = [events.get()[2] for _ in range(events.qsize())]
        for results in [*done.values(), *left]:
            for r in results or ():
                r.close()
        raise
    return [r for node in order for r in done[node.name]]


def stop(pool: GreenPool) -> None:
    """Stop the nodes running in ``pool``: their connections to object servers close.

    Green threads of ``spawn_n`` that have not started yet cannot be killed
    (the pool would wait for them forever): ``run`` tells them not to start.
    """
    for thread in list(pool.coroutines_running):
        if thread:                   # started (a greenlet is true while it runs)
            greenthread.kill(thread)


def _bad_producer(node: Node, done: dict[str, list[Result]]) -> str | None:
    """Why the node cannot count: a node it reads from failed or did not run."""
    bad = next((p for p in node.reads_from if p in done and _failed(done[p])), None)
    if bad is None:
        return None
    return f'not run: {bad} ' + ('did not run' if done[bad] and done[bad][0].status
                                 == SKIPPED else 'failed')


def _skip_after_failed_producers(plans: list, done: dict[str, list[Result]],
                                 skipped: Callable[[object, int, str], Result]) -> None:
    """A node that ran while a node it reads from failed is ``skipped`` too (what it
    read was cut short): the statuses never depend on timing."""
    for plan in _producers_first(plans):
        node = plan.node
        why = _bad_producer(node, done)
        if why is not None and done[node.name][0].status != SKIPPED:
            for r in done[node.name]:
                r.close()
            done[node.name] = [skipped(plan, k, why) for k in range(1, node.replicate + 1)]


def _producers_first(plans: list) -> list:
    """The plans in an order where every node comes after the nodes it reads from."""
    by_name = {p.node.name: p for p in plans}
    waiting = {p.node.name: len(p.node.reads_from) for p in plans}
    ready = [p for p in plans if not waiting[p.node.name]]
    order = []
    while ready:
        plan = ready.pop()
        order.append(plan)
        for peer in plan.node.writes_to:
            waiting[peer] -= 1
            if not waiting[peer]:
                ready.append(by_name[peer])
    return order


def _failed(results: list[Result]) -> bool:
    return not results or any(r.failed for r in results)


def _links_from_outputs(result: Result, spool: Spool) -> None:
    """The links of a node that ran in a batch came back as its outputs
    (``out/<peer>``), once it ended: into the spool, as a streamed node's parts."""
    for peer, link in spool.links.items():
        out = result.outputs.pop(OUT + peer, None)
        if out is None:
            continue
        try:
            out.seek(0)
            while chunk := out.read(wire.CHUNK):
                spool.append(link, chunk)
        except wire.TooLarge as e:
            result.fail('error', str(e), 413)
            return
        finally:
            out.close()


def _check_links(results: list[Result], spool: Spool) -> None:
    """Do the links hold all the node wrote to them?  Record their sizes."""
    first = results[0]
    channels = first.report.accounting.get('channels') or {}
    for peer, link in spool.links.items():
        wrote = (channels.get(f'/dev/{OUT}{peer}') or {}).get('write_bytes')
        if wrote is not None and wrote != link.size:
            why = f'{first.server} returned {link.size} of the {wrote} bytes of /dev/out/{peer}'
            for r in results:
                r.fail('error', why)
            return
    first.links = {peer: link.size for peer, link in spool.links.items()}

"""Multi-node jobs: ``connect`` graphs and ``replicate`` votes, run by the proxy.

``zerocloud.job`` wires the groups: with ``connect: ["B"]`` on group A,
``A-3`` writes ``/dev/out/B-1`` and ``B-1`` reads ``/dev/in/A-3``.  This
module decides when each node runs and how those channels travel.

How data moves between nodes
----------------------------

Through the proxy, in dataflow order:

1. a node starts as soon as every node it reads from has finished (nodes
   that read from no node start at once, up to ``concurrency`` at a time);
2. its object server returns each ``/dev/out/<peer>`` channel as a member of
   the response tar; the proxy streams all of them into one temporary file
   per node (on disk, unlinked when created, 64 KiB chunks: never whole in
   memory, never left behind);
3. the proxy streams those bytes to each consumer's object server as
   ``dev/in/<producer>`` members of the consumer's request, where they are
   ordinary sequential read channels;
4. when a consumer (every replica of it) has finished, the data it read is
   dropped.

Why not direct links between running nodes (ZeroVM's TCP channels)?  Every
node of a connected graph would then need a worker at the same time: a
reducer holding a worker while it waits for mappers that cannot get one
deadlocks the pools, and a graph with more nodes than the cluster has
workers could not run at all (ZeroCloud had a separate "cluster" pool and
answered "Cluster slot not available").  Here no node ever waits for
another while it holds a worker, so admission stays per node (a full pool
is a 503 and the proxy tries another server, or the same one again later
when it is full of the job's own nodes), a graph of 1000 nodes runs on
three servers, and a consumer's inputs are complete before it starts, so it
can be retried on another server and its replicas see identical inputs.

The price, stated plainly: a consumer starts only when all its producers
have finished.  ``connect`` is all-to-all between groups, so a node of B
needs every node of A anyway: in practice the graph runs stage by stage
(independent branches overlap).  Node-to-node data crosses the proxy twice
and waits on its disk in between.

A graph must therefore be acyclic: a group connected to itself (ZeroCloud's
all-to-all ``mapper -> mapper``) or any cycle of groups would need its nodes
to run at the same time, and is refused with a 400 that names the cycle.

Limits: each ``/dev/out/<peer>`` is a written channel with the proxy's
``zerovm_maxoutput`` quota (beyond it the program's write fails with
``EDQUOT`` and the node ends ``quota``); all the data the nodes of one job
send each other, in total, is at most ``zerovm_maxspool`` bytes (the node
whose output crosses it ends ``error``, HTTP 413); a node has at most
:data:`MAX_CHANNELS` channels (each is a descriptor passed to a sandbox
worker).

Replicas
--------

``replicate: N`` runs every node of the group N times at once, on N
different object servers: for a node placed next to its object, servers
holding replicas of it (N above the ring's replica count is a 400); for
other nodes, any servers.  Every replica gets the same inputs; only the
first returns its outputs, the others return their report alone.  When all
replicas ended ``ok``, their exit codes and the etags of all their written
channels (``/dev/out/<peer>`` included) are compared: any difference makes
every replica of the node ``mismatch`` (HTTP 409), so the job stores
nothing.  Each replica is one entry of the ``X-Nexe-*`` lists.

A node whose producer failed does not run: its status is ``skipped``
(HTTP 424, never the job's status: that is the failed producer's).  Nodes
that do not depend on a failed node still run, so the statuses of a job do
not depend on timing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from swift.common.concurrency import GreenPile, GreenPool, LightQueue

from zerocloud import wire
from zerocloud.job import Group, JobError, Node
from zvm_core.pool import MAX_FDS

IN, OUT = 'in/', 'out/'
STD_CHANNELS = ('stdin', 'stdout', 'stderr')
# One descriptor per channel goes to the sandbox worker in one message.
MAX_CHANNELS = MAX_FDS
MISMATCH, SKIPPED = 'mismatch', 'skipped'


class Result(Protocol):
    """What the proxy keeps of one run of a node (``zerocloud.proxy.NodeResult``)."""

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


def channel_count(node: Node) -> int:
    """Channels the node gets on its object server (undeclared std streams included)."""
    declared = {d.name for d in node.devices} | set(STD_CHANNELS)
    return len(declared) + len(node.reads_from) + len(node.writes_to)


def check_nodes(nodes: Iterable[Node]) -> None:
    for node in nodes:
        count = channel_count(node)
        if count > MAX_CHANNELS:
            raise JobError(f'Too many channels for node {node.name}: {count} (reads from '
                           f'{len(node.reads_from)} nodes, writes to {len(node.writes_to)}); '
                           f'a node may have at most {MAX_CHANNELS}')


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


def link_devices(node: Node, max_output: int) -> list[dict]:
    """The node spec's devices for its channels to and from other nodes."""
    return ([{'name': IN + peer, 'access': 'r', 'random': False, 'source': 'member'}
             for peer in node.reads_from]
            + [{'name': OUT + peer, 'access': 'w', 'random': False, 'source': None,
                'put_size': max_output} for peer in node.writes_to])


# -- node-to-node data on the proxy ------------------------------------------------------

class LinkSpool:
    """The ``/dev/out/<peer>`` channels of one node, back to back in one temporary file.

    One descriptor per node whatever its fan-out; each channel is read through
    a :class:`LinkView`; the file goes with the last view.
    """

    def __init__(self) -> None:
        self._file = None
        self._end = 0
        self._views = 0

    def add(self, src, limit: int) -> LinkView:
        """Copy ``src`` (at most ``limit`` bytes, else ``wire.TooLarge``) into the spool."""
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix='zerocloud-links-')
        try:
            self._file.seek(self._end)
            size = wire.copy_limited(src, self._file, limit)
        except BaseException:
            if not self._views:
                self._file.close()
            raise
        view = LinkView(self, self._end, size)
        self._end += size
        self._views += 1
        return view

    def _read(self, offset: int, size: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(size)

    def _release(self) -> None:
        self._views -= 1
        if not self._views:
            self._file.close()


class LinkView:
    """A read-only file over one channel of a :class:`LinkSpool`."""

    def __init__(self, spool: LinkSpool, offset: int, size: int) -> None:
        self._spool, self._offset, self.size = spool, offset, size
        self._pos = 0
        self.closed = False

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = max(0, pos + (0, self._pos, self.size)[whence])
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        left = max(0, self.size - self._pos)
        data = self._spool._read(self._offset + self._pos, left if n < 0 else min(n, left))
        self._pos += len(data)
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._spool._release()


# -- running the graph -------------------------------------------------------------------

RunReplica = Callable[[object, int, Iterable[dict], dict[str, tuple[object, int]]], Result]


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
    result.report = dict(result.report, status=status, message=message)
    result.error = message


def vote(results: list[Result]) -> None:
    """Compare the replicas of one node; any difference makes them all ``mismatch``."""
    if len(results) < 2 or any(r.failed for r in results):
        return
    first = results[0]
    for other in results[1:]:
        if other.report.get('retcode') != first.report.get('retcode'):
            what = (f'the exit code: {first.server} {first.report.get("retcode")}; '
                    f'{other.server} {other.report.get("retcode")}')
            break
        ours, theirs = first.report.get('etags') or {}, other.report.get('etags') or {}
        differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if differ:
            what = (f'{differ[0]}: {first.server} {ours.get(differ[0], "none")}; '
                    f'{other.server} {theirs.get(differ[0], "none")}')
            break
    else:
        return
    for r in results:
        _mark(r, MISMATCH, f'replicas disagree on {what}')


def _replicas(plan, run_replica: RunReplica, links: dict[str, tuple[object, int]]
              ) -> list[Result]:
    count = plan.node.replicate
    if count == 1:
        results = [run_replica(plan, 1, plan.servers, links)]
    else:
        servers = _Distinct(plan.servers)        # shared: each server goes to one replica
        pile = GreenPile(count)
        for replica in range(1, count + 1):
            pile.spawn(run_replica, plan, replica, servers, links)
        results = list(pile)
    for replica, result in enumerate(results, 1):
        result.replica = replica
    vote(results)
    return results


def run(plans: list, run_replica: RunReplica, skipped: Callable[[object, int, str], Result],
        *, max_spool: int, concurrency: int) -> list[Result]:
    """Run every node once its producers have finished; results in node order, each
    node's replicas together.

    ``run_replica(plan, replica, servers, links)`` runs one replica on the first
    of ``servers`` that takes it, with ``links`` (``in/<peer>`` -> (file,
    size)) as extra inputs; it reports failures in its result, never raises.
    ``skipped(plan, replica, why)`` makes the result of a node that cannot run.
    """
    by_name = {p.node.name: p for p in plans}
    waiting = {p.node.name: len(p.node.reads_from) for p in plans}
    done: dict[str, list[Result]] = {}
    finished = LightQueue()
    pool = GreenPool(concurrency)
    spooled, errors = 0, []

    def work(plan, links) -> None:
        try:
            finished.put((plan, _replicas(plan, run_replica, links), None))
        except BaseException as e:      # a bug; the loop must still hear of the node
            finished.put((plan, [], e))

    def start(plan) -> None:
        node = plan.node
        bad = next((p for p in node.reads_from if _failed(done[p])), None)
        if bad is not None:
            why = f'not run: {bad} ' + ('did not run' if done[bad] and done[bad][0].status
                                        == SKIPPED else 'failed')
            finished.put((plan, [skipped(plan, k, why) for k in range(1, node.replicate + 1)],
                          None))
            return
        links = {IN + p: (done[p][0].outputs[OUT + node.name], done[p][0].links[node.name])
                 for p in node.reads_from}
        pool.spawn_n(work, plan, links)

    try:
        for plan in plans:
            if not waiting[plan.node.name]:
                start(plan)
        for _ in plans:
            plan, results, error = finished.get()
            node = plan.node
            done[node.name] = results
            if error is not None:
                errors.append(error)
            elif not _failed(results):
                spooled += _keep_links(results, max_spool - spooled)
            for peer in node.reads_from:          # what it read is no longer needed
                view = done[peer][0].outputs.pop(OUT + node.name, None) if done[peer] else None
                if view is not None:
                    view.close()
            for peer in node.writes_to:
                waiting[peer] -= 1
                if not waiting[peer]:
                    start(by_name[peer])
        if errors:
            raise errors[0]
    except BaseException:
        pool.waitall()
        left = [finished.get()[1] for _ in range(finished.qsize())]
        for results in [*done.values(), *left]:
            for r in results:
                r.close()
        raise
    return [r for plan in plans for r in done[plan.node.name]]


def _failed(results: list[Result]) -> bool:
    return not results or any(r.failed for r in results)


def _keep_links(results: list[Result], room: int) -> int:
    """Check the node's ``/dev/out/<peer>`` data and record its sizes; returns the bytes."""
    first = results[0]
    missing = [p for p in first.node.writes_to if OUT + p not in first.outputs]
    if not missing:
        sizes = {p: _size(first.outputs[OUT + p]) for p in first.node.writes_to}
        total = sum(sizes.values())
        if total <= room:
            first.links = sizes
            return total
        why, http = (f'the nodes of this job sent each other more than zerovm_maxspool '
                     f'bytes ({total} from this node)'), 413
    else:
        why, http = f'{first.server} returned no /dev/out/{missing[0]}', None
    for r in results:
        r.fail('error', why, http)
    return 0


def _size(f) -> int:
    size = f.seek(0, 2)
    f.seek(0)
    return size

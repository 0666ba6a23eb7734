"""A batch of nodes in one execute request (``X-Zerovm-Batch``, ``zerocloud.wire``).

The proxy sends the in-place nodes of a wildcard job bound for this server
together, so that what a request costs (its connection, ``100 Continue``,
the program and the job's image or their digests) is paid once per batch,
not once per node, and the nodes' output files are kept from one batch to
the next (:class:`Spares`).  The batch is admitted as one node of its job's
account (``503 Slot not available`` when the server or the account has no
room: ``zerocloud.object.admission``).  Its nodes go to the pool's workers in
chunks, one request per chunk (``zvm_core.pool.Pool.run_many``): a chunk
holds a worker and one of the account's turns (``zvm_core.fairshare``) until
its last node ends, so it is sized to take about :data:`CHUNK_SECONDS`
(:class:`Chunks`: up to :data:`CHUNK` nodes of a quick program, one of a
slow one), and ``zerovm_maxpool`` chunks run at once with as many again
waiting in the pool's queue (within ``zerovm_maxqueue``), so that no worker
waits for the next.  Nodes that turn slow do not stretch a chunk: its worker
starts none once the chunk has run :data:`CHUNK_BUDGET`, and those it did
not start are handed out again in a later chunk, at the pace then
known (a batch of a program this process ran before starts at the pace its
last batch ended with: ``pace_of``).  Each node is still its own sandbox
run, reading its own object in place, with its own channels, output files and report; the end of an
undeclared stderr is kept by the worker, in memory (no pipe per node), and
results stream back as nodes end, read from the worker a few at a time (each
reply read alone woke this process once per node: ``Pool.run_many``'s
``pace``).  The nodes' channels follow one plan per batch for the nodes that
share their spec's devices (``NodeRun.plan``, ``zerocloud.object.plan``).  A
node this server cannot run (object not here, pool full, disk unmounted)
gets an ``<i>/error`` member with the status it would have had alone: the
proxy sends that node again alone, elsewhere.  When the proxy goes away the
nodes still running are stopped (their workers are replaced, as for one
node).
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import time

from swift.common.concurrency import (
    Empty,
    GreenPool,
    LightQueue,
    greenthread,
    spawn,
    tpool,
)
from swift.common.constraints import check_drive
from swift.common.storage_policy import POLICIES
from swift.common.swob import HTTPException, Request, Response
from swift.common.utils import ClosingIterator

from zerocloud import hangup, wire
from zerocloud.httperrors import (
    HTTPBadRequest,
    HTTPInsufficientStorage,
    HTTPRequestEntityTooLarge,
    HTTPServiceUnavailable,
)
from zerocloud.object import scratch
from zerocloud.object.admission import RETRY_AFTER, charged_to, pool_refused
from zerocloud.object.answer import REPORT_NAMES, NodeAnswer
from zerocloud.object.diskfiles import DiskFiles
from zerocloud.object.plan import LINK
from zerocloud.object.results import STDERR_TAIL, local_env
from zvm_core.pool import PoolBusy, Run

SMALL = 1 << 18         # outputs up to this size travel in one write with their report
GLANCE = 1 << 12        # outputs shorter than this are read without an fstat (Outputs.small)
CHUNK = 16              # most nodes handed to a worker in one request (``Pool.run_many``)
OK = '200 ok'          # a node that ran and ended ok (logged in its batch's line)
CHUNK_SECONDS = 0.05    # worker time a chunk should take (``Chunks``)
CHUNK_BUDGET = 2 * CHUNK_SECONDS    # after it a chunk's worker starts no node (``run_chunk``)
LINGER = 0.02           # seconds a batch/reports block waits for more results once it has one
IMAGE_MEMBER = wire.DEV_PREFIX + wire.IMAGE_DEVICE
CACHED = (wire.EXE, IMAGE_MEMBER)       # kept by content (``ObjectExecMiddleware``)


PACES = 64              # programs whose pace a process keeps for its next batches (``Chunks``)
SPARES = 128            # emptied output files one process keeps open per disk for next batches
SPARES_IDLE = 30.0      # seconds they stay open once no batch uses them (a disk may be unmounted)


def read_spec(f, what: str) -> bytes:
    """A spec member (a node's ``node.json``, ``batch/spec``, a ``batch/<i>`` entry)
    whole, ``what`` naming it: over what a server reads, 413 naming the limit (not
    its start parsed: a misleading JSON error, or a spec cut short)."""
    if f.left > wire.SPEC_LIMIT:
        raise HTTPRequestEntityTooLarge(
            body=f'{what} ({f.left} bytes) larger than the {wire.SPEC_LIMIT} bytes an '
                 'object server reads\n')
    return f.read()


def _empty(files: list) -> None:
    """Empty files whose outputs went, for a next write from their start (in a
    thread: ``ftruncate`` may wait on the disk)."""
    for f in files:
        f.truncate(0)
        f.seek(0)


def _discard(files: list, directory: str | None = None) -> None:
    """Close and remove ``files``, then ``directory`` (a :class:`Spares` directory no
    batch uses any more) if given."""
    for f in files:
        f.close()
        try:
            os.unlink(f.name)
        except OSError:
            pass
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


class Spares:
    """One process's output files on one disk, emptied and kept open from one batch to
    the next (at most :data:`SPARES`) in a directory of its own
    (``zerocloud.object.scratch``: a killed server's goes when it starts again).  A
    batch took ~60 new files and removed them (the first nodes of every batch each
    made their own: ``open`` of a new file 0.1 ms of CPU, more of the hub's wall on
    a loaded disk).  A file comes back only from a batch whose every node ended,
    emptied: no run is left that could still write to it, and it holds nothing of
    that batch's jobs.  Spares no batch used for :data:`SPARES_IDLE` seconds are
    removed: an open file would keep its disk from being unmounted."""

    def __init__(self, disk_tmp: str) -> None:
        self.disk_tmp = disk_tmp
        self.dir: str | None = None
        self.files: list = []           # emptied, open (unbuffered), their ``name`` a path
        self.made = 0
        self.lent = 0                   # files batches hold now
        self.used = 0.0                 # when a batch last took or kept one (monotonic)
        self.timer = None               # removes the spares once idle

    def take(self):
        """An empty open file: a spare, or a new one."""
        self.used = time.monotonic()
        self.lent += 1
        if self.files:
            return self.files.pop()
        if self.dir is None or not os.path.isdir(self.dir):
            self.dir = scratch.node_dir(self.disk_tmp)
        self.made += 1
        return open(os.path.join(self.dir, f'out-{self.made}'), 'w+b', buffering=0)

    def keep(self, files: list, removed: int = 0) -> None:
        """Files a batch emptied after its every node ended: kept for the next ones (those
        over :data:`SPARES` are removed, in a thread); ``removed``: how many others of
        its files it removed itself."""
        self.lent -= len(files) + removed
        room = max(0, SPARES - len(self.files))
        self.files += files[:room]
        self.used = time.monotonic()
        if self.timer is None:
            self.timer = greenthread.spawn_after(SPARES_IDLE, self._expire)
        if files[room:]:
            tpool.execute(_discard, files[room:])

    def _expire(self) -> None:
        """Remove the spares, and their directory, once no batch has used them for
        :data:`SPARES_IDLE` seconds and none holds one of its files."""
        idle = time.monotonic() - self.used
        if idle < SPARES_IDLE or self.lent:
            self.timer = greenthread.spawn_after(max(SPARES_IDLE - idle, 1.0), self._expire)
            return
        self.timer = None
        files, self.files = self.files, []
        directory, self.dir = self.dir, None
        tpool.execute(_discard, files, directory)


class Outputs:
    """A batch's output files, kept open: a node's outputs are written in the files
    of nodes whose results went, emptied (``ftruncate``) and written again, and
    are read back through their open descriptors.  Reopened with ``O_TRUNC``, a
    file that an earlier node wrote and closed made this host's ext4 write its
    blocks out first (``auto_da_alloc``): 1.5 ms of the hub's time per node,
    during which it served nothing; a new file per node costs ~0.1 ms of CPU to
    make and as much to remove.  The files come from the process's
    :class:`Spares` and go back there when the batch ends (:meth:`BatchRun.close`)."""

    def __init__(self, spares: Spares) -> None:
        self.spares = spares
        self.files: dict[str, object] = {}         # path -> its file (unbuffered)
        self.free: list[str] = []                  # files whose output went

    def take(self) -> tuple[object, str]:
        """An empty file for an output, and its path."""
        if self.free:
            path = self.free.pop()
            f = self.files[path]
            _empty([f])
        else:
            f = self.spares.take()
            path = f.name
            self.files[path] = f
        return f, path

    def give(self, paths: list[str]) -> None:
        """Outputs sent (or not to be sent): their files may be written again."""
        self.free += paths

    def member(self, name: str, path: str) -> wire.Member:
        """The output in ``path`` as a tar member (read through its open file)."""
        f = self.files[path]
        return wire.shared_member(name, f, os.fstat(f.fileno()).st_size)

    def small(self, path: str) -> bytes | None:
        """The output in ``path`` if it has at most :data:`SMALL` bytes (one ``pread``:
        the member's seek and read through a generator cost twice as much), else None.
        One shorter than :data:`GLANCE` bytes (most outputs) needs no ``fstat`` first: a
        regular file gives all it holds up to what is asked."""
        fd = self.files[path].fileno()
        data = os.pread(fd, GLANCE, 0)
        if len(data) < GLANCE:
            return data
        size = os.fstat(fd).st_size
        if size > SMALL:
            return None
        data = os.pread(fd, size, 0)
        while len(data) < size:          # a regular file gives all of it at once
            more = os.pread(fd, size - len(data), len(data))
            if not more:
                break
            data += more
        return data

    def tail(self, path: str) -> bytes:
        """The last :data:`STDERR_TAIL` bytes of the output in ``path``."""
        f = self.files[path]
        size = os.fstat(f.fileno()).st_size
        return os.pread(f.fileno(), STDERR_TAIL, max(0, size - STDERR_TAIL))

    def release(self, ended: bool) -> None:
        """The batch is over (this object is not used after): with ``ended`` (every
        node ended), its free files, emptied, go back to the spares; any other is
        removed (a run stopped at a hang-up may still be writing to it)."""
        free = set(self.free) if ended else set()
        back = [f for path, f in self.files.items() if path in free]
        gone = [f for path, f in self.files.items() if path not in free]
        self.files, self.free = {}, []
        if gone:
            tpool.execute(_discard, gone)
        if back:
            tpool.execute(_empty, back)
        self.spares.keep(back, len(gone))


class Chunks:
    """Hands a batch's nodes out in chunks (``Pool.run_many``), each of about
    :data:`CHUNK_SECONDS` in its worker at the pace its nodes have run so far,
    at most :data:`CHUNK` nodes and the chunks' share of those left: a batch
    holds a worker, and one of its account's turns, that long at a time
    (or for one node), however long its nodes take, and its last nodes are
    spread over the workers.  The first chunks, before any pace is known, are
    one node each; ``pace``: the one the program's last batch in this process ended
    with, if any (:func:`pace_of`): its first chunks are sized by it (a slow node
    holds a chunk's worker :data:`CHUNK_BUDGET` at most, whatever the pace said).
    Nodes a chunk gave back (not started: :meth:`give_back`) go out first, lowest
    first."""

    def __init__(self, count: int, width: int, pace: float | None = None) -> None:
        self.count, self.width = count, width
        self.next = 0
        self.back: list[int] = []               # given back, to hand out again (sorted)
        self.pace = pace                        # seconds a node takes (moving average)

    def take(self) -> list[int]:
        """The indexes of the next chunk ([] once every node was handed out)."""
        left = self.count - self.next + len(self.back)
        if left <= 0:
            return []
        size = 1 if self.pace is None else int(CHUNK_SECONDS / max(self.pace, 1e-6))
        size = max(1, min(size, CHUNK, -(-left // self.width), left))
        taken, self.back = self.back[:size], self.back[size:]
        first, self.next = self.next, self.next + size - len(taken)
        return taken + list(range(first, self.next))

    def give_back(self, indexes: list[int]) -> None:
        """Nodes handed out whose worker did not start them (its chunk ran out of
        :data:`CHUNK_BUDGET`): for a later chunk."""
        self.back = sorted(self.back + indexes)

    def ran(self, seconds: float) -> None:
        """The nodes of a chunk took ``seconds`` each in their worker (on average), as
        the worker's clock says (``RunResult.ended``): the time this process took to
        read their replies is not theirs.  Measured when it read the last one, a
        busy hub's delays (and the pauses of ``Pool.run_many``'s ``pace``, made of
        this one) made the pace several times the worker's, and most chunks
        one to five nodes long."""
        self.pace = seconds if self.pace is None else 0.8 * self.pace + 0.2 * seconds


_PACES: dict = {}       # program (its host path, or the spec's) -> its last batch's pace


def pace_of(program, pace: float | None = None) -> float | None:
    """The pace ``program``'s last batch in this process ended with; with ``pace``, a
    batch's end: kept for the next (at most :data:`PACES` programs).  Each of a batch's
    first chunks, one node while no pace was known, was a worker request (~0.3 ms of
    CPU in the server and its worker) for one node: a quarter of a 10,000-node job's
    chunks."""
    if pace is None:
        return _PACES.get(program)
    _PACES.pop(program, None)
    if len(_PACES) >= PACES:
        del _PACES[next(iter(_PACES))]
    _PACES[program] = pace
    return pace


class _Node:
    """One node of a batch while it runs: what it holds."""

    def __init__(self, index: int, entry: wire.BatchEntry, began: float) -> None:
        self.index, self.entry, self.began = index, entry, began
        self.spec = entry.spec
        self.reader = None
        self.opened: list = []
        self.outputs: list[tuple[str, str]] = []
        self.run: Run | None = None
        self.closed = False

    def close(self, unsent: Outputs | None = None) -> None:
        """Free what the node holds (once); with ``unsent``, its outputs were not
        sent: their files go back there."""
        if self.closed:
            return
        self.closed = True
        for f in self.opened:
            f.close()
        if self.reader is not None:
            self.reader.close()
        if unsent is not None:
            unsent.give([path for _, path in self.outputs])


class BatchRun:
    """One batch request: receive its nodes, run them, stream their results."""

    def __init__(self, owner, req: Request, node_run: type) -> None:
        self.owner, self.req, self.node_run = owner, req, node_run
        self.config, self.logger = owner.config, owner.logger
        self.files: dict[str, str] = {}
        self.outputs: Outputs | None = None     # the nodes' output files (kept open)
        self.ended = False                      # every node answered: none runs
        self.pool: GreenPool | None = None
        self.watcher = None
        self.closed = self.released = False
        self.programs: dict = {}                # spec.program -> host path
        self.disk_files = DiskFiles(owner.object_server)
        self.asked = self.given = None          # the last node's limits and engine (settings)
        self.node_helper = None                 # the NodeRun of every node (``helper``)
        self.plan: tuple | None = None          # the last node's devices' (``NodeRun.plan``)
        self.plan_of: tuple | None = None       # those devices
        self.layout: object = None              # the Run.layout of the nodes it lays out
        self.null = None                        # /dev/null, open for the batch's nodes
        self.shared: wire.SharedSpec | None = None      # its batch/spec
        self.fitting: list[bool] = []   # per entry: its member's size says it fits (prepare)
        self.blocks = req.headers.get(wire.READS_REPORTS) == '1'    # answer in batch/reports

    def execute(self) -> Response:
        req, config = self.req, self.config
        try:
            count = int(req.headers[wire.BATCH])
            if not 0 < count <= wire.BATCH_MAX:
                raise ValueError(count)
            device = req.split_path(5, 5, True)[0]
            policy = POLICIES.get_by_index(req.headers.get('X-Backend-Storage-Policy-Index'))
            if policy is None:
                raise ValueError('storage policy')
        except ValueError as e:
            raise HTTPBadRequest(body=f'bad batch request: {e} ({wire.BATCH} of 1 to '
                                      f'{wire.BATCH_MAX} nodes, to /<device>/<partition>/'
                                      '<account>/.zerocloud/batch)\n') from None
        if req.content_length is not None and req.content_length > config.max_input:
            raise HTTPRequestEntityTooLarge(
                body=wire.too_large(config.max_input) + '\n')
        self.account, self.job = charged_to(req, req.split_path(5, 5, True)[2])
        self.owner.admission.enter(self.account, self.job)
        try:
            try:
                disk = check_drive(config.devices, device, config.mount_check)
            except ValueError:
                raise HTTPInsufficientStorage(drive=device) from None
            helper = self.helper()
            if wire.PROGRAM in req.headers:
                self.files[wire.EXE] = helper.cached_program(req.headers[wire.PROGRAM])
            if wire.IMAGE in req.headers:         # the job's image, once for the batch
                self.files[IMAGE_MEMBER] = helper.cached(self.owner.images, wire.IMAGE,
                                                         req.headers[wire.IMAGE], 'image')
            self.outputs = Outputs(self.owner.spare_files(os.path.join(disk, 'tmp')))
            entries = self.receive(count)
            hangup.drain(req.environ)           # the end of the tar: then only a hang-up
        except BaseException:
            self.close()
            raise
        self.policy = policy
        req.environ['eventlet.minimum_write_chunk_size'] = 0     # each result at once
        body = ClosingIterator(self.members(entries), [self])
        headers = {wire.BATCH: str(count)}
        if self.blocks:
            headers[wire.READS_REPORTS] = '1'
        return Response(app_iter=body, content_type='application/x-tar', headers=headers)

    def receive(self, count: int) -> list[wire.BatchEntry]:
        """The program and the job's image (unless sent by digest), the spec the
        entries share (``batch/spec``; a proxy of before sends each entry's whole),
        then the ``count`` entries, in order: ``batch/entries`` members (a JSON array
        each), or a ``batch/<i>`` member each from a proxy of before them."""
        entries: list[wire.BatchEntry] = []
        shared: wire.SharedSpec | None = None
        budget = self.config.max_input
        try:
            for name, f in wire.read_members(self.req.environ['wsgi.input'], None):
                if name in CACHED and not entries and name not in self.files:
                    cache = self.owner.programs if name == wire.EXE else self.owner.images
                    self.files[name] = cache.receive(f, budget)
                    budget -= os.path.getsize(self.files[name])
                elif name == wire.BATCH_SPEC and not entries and shared is None:
                    shared = self.shared = wire.SharedSpec.from_json(read_spec(f, name))
                elif name == wire.BATCH_ENTRIES:
                    if f.left > wire.ENTRIES_LIMIT:
                        raise wire.WireError(f'{name} larger than {wire.ENTRIES_LIMIT} bytes')
                    fits = shared is not None and shared.fits(f.left)
                    got = wire.read_entries(f.read(), shared)
                    entries += got
                    self.fitting += [fits] * len(got)
                    if len(entries) > count:
                        raise wire.WireError(f'more than the {count} nodes {wire.BATCH} says')
                elif name == f'{wire.BATCH_PREFIX}{len(entries)}' and len(entries) < count:
                    # a proxy of before batch/entries: an entry a member
                    entries.append(wire.BatchEntry.from_json(read_spec(f, name), shared))
                    self.fitting.append(False)
                else:
                    raise wire.WireError(f'unexpected member {name}')
        except wire.TooLarge:
            raise HTTPRequestEntityTooLarge(
                body=wire.too_large(self.config.max_input) + '\n') from None
        except ValueError as e:             # WireError, SpecError
            raise HTTPBadRequest(body=f'bad batch request: {e}\n') from None
        if len(entries) != count:
            raise HTTPBadRequest(body=f'bad batch request: {len(entries)} nodes, '
                                      f'{wire.BATCH} says {count}\n')
        if wire.EXE not in self.files and any(e.spec.program is None for e in entries):
            raise HTTPBadRequest(body='bad batch request: program missing\n')
        return entries

    def helper(self):
        """A node run of this batch's request, charged to the batch's account."""
        helper = self.node_run(self.owner, self.req)
        helper.account, helper.job = self.account, self.job
        helper.outputs = self.outputs
        return helper

    def prepare(self, index: int, entry: wire.BatchEntry) -> _Node:
        """Open one node's object and channels (its outputs are files of the batch's
        :class:`Outputs`: no directory per node)."""
        account, container, obj = entry.object[1:].split('/', 2)
        helper = self.node_helper
        if helper is None:              # no state of a node: one for them all
            helper = self.node_helper = self.helper()
            helper.null_fd = self.null_fd
        shared = self.shared
        if not (self.fitting[index] and wire.SPEC_FIXED(entry.spec) == shared.fixed):
            size = (shared.spec_size(entry.spec) if shared is not None
                    else len(entry.spec.to_json()))
            if size > wire.SPEC_LIMIT:          # as it would be alone (node.json): 413
                raise HTTPRequestEntityTooLarge(body=f'{wire.spec_too_large(size)}\n')
        node = _Node(index, entry, time.monotonic())
        try:
            node.reader = helper.open_local(entry.device, str(entry.partition), account,
                                            container, obj, self.policy, self.disk_files)
            spec = entry.spec
            env = local_env(spec, node.reader)      # no spec made per node (with_local_env)
            limits, engine = self.settings(helper, spec)
            devices = spec.devices
            if self.plan is None or (self.plan_of is not devices and self.plan_of != devices):
                self.plan, self.plan_of = None, devices         # whole specs: each its own
                plan = helper.plan(devices, self.files)
                if any(step.kind == LINK for step in plan):
                    raise HTTPBadRequest(body=f'bad batch request: node {spec.name} reads a '
                                              'link: send it alone\n')
                self.plan, self.layout = plan, object()
            channels, node.outputs = helper.lay(self.plan, node.reader,
                                                self.outputs.spares.disk_tmp, node.opened, {})
            node.run = Run(self.program(helper, spec), channels, spec.argv, env, limits,
                           spec.seed, spec.epoch, engine, self.layout)
        except BaseException:
            node.close(self.outputs)
            raise
        return node

    def null_fd(self) -> int:
        """The descriptor of /dev/null for undeclared standard streams, opened once for
        the batch (closed with it)."""
        if self.null is None:
            self.null = open(os.devnull, 'r+b', buffering=0)
        return self.null.fileno()

    def settings(self, helper, spec: wire.NodeSpec) -> tuple:
        """The node's limits and engine (``NodeRun.limits``, ``NodeRun.engine``), worked
        out again only when they differ from the node's before: a wildcard's nodes
        share their spec's (``SharedSpec.with_set``)."""
        asked = (spec.limits, spec.engine)
        if self.asked is None or self.asked[0] is not asked[0] or self.asked[1] != asked[1]:
            self.asked, self.given = asked, (helper.limits(spec), helper.engine(spec))
        return self.given

    def program(self, helper, spec: wire.NodeSpec) -> str:
        """The program's host path, looked up once per batch."""
        key = spec.program
        if key not in self.programs:
            self.programs[key] = helper.program(spec, self.files)
        return self.programs[key]

    def run_chunk(self, indexes: list[int], entries: list[wire.BatchEntry], chunks: Chunks):
        """Run some nodes of the batch in one worker, in one request (``Pool.run_many``):
        yields (index, (report, outputs) or the exception of a node not run), and
        tells ``chunks`` how long its nodes took in the worker.  Nodes the worker did
        not start (past :data:`CHUNK_BUDGET`) are closed, unsent, and given back to
        ``chunks``: a later chunk prepares and runs them."""
        nodes: list[_Node] = []
        try:
            for index in indexes:
                try:
                    nodes.append(self.prepare(index, entries[index]))
                except HTTPException as e:
                    yield index, e
            if not nodes:
                return
            try:
                clock = [0.0]

                def started() -> None:
                    clock[0] = time.monotonic()
                results = self.owner.pool.run_many([n.run for n in nodes], account=self.account,
                                                   started=started, pace=chunks.pace or 0.0,
                                                   budget=CHUNK_BUDGET)
                ran, ended, answered = 0, None, 0
                for result in results:      # to its end: the worker goes back
                    node = nodes[answered]
                    answered += 1
                    if result is not None and result.ended is not None:    # the worker's:
                        ran += 1        # not a killed made up for a node it never answered
                        ended = result.ended
                    if answered == len(nodes) and ran:  # replies come in groups: per chunk
                        chunks.ran((ended - clock[0]) / ran)
                    if result is None:
                        node.close(self.outputs)
                        yield node.index, HTTPServiceUnavailable(
                            body='Slot not available: the worker died before this node '
                                 'ran\n', headers={'Retry-After': RETRY_AFTER})
                        continue
                    stderr = result.tails.get('/dev/stderr')
                    if stderr is None:      # declared: an output
                        path = dict(node.outputs).get('stderr')
                        stderr = self.outputs.tail(path) if path else b''
                    report = NodeAnswer(node.spec, result, stderr)
                    node.close()
                    yield node.index, (report, node.outputs)
                if answered < len(nodes):       # stopped at its budget: the rest not started
                    if ran:
                        chunks.ran((ended - clock[0]) / ran)
                    for node in nodes[answered:]:
                        node.close(self.outputs)
                    chunks.give_back([node.index for node in nodes[answered:]])
            except PoolBusy as e:
                for node in nodes:
                    node.close(self.outputs)
                    if node.run is not None:
                        yield node.index, pool_refused(e, self.logger)
        finally:
            for node in nodes:
                node.close(self.outputs)

    def members(self, entries: list[wire.BatchEntry]):
        """The answer (a tar stream), node by node as they end."""
        done = LightQueue()
        config = self.config      # chunks waiting in the pool's queue: no worker waits for one
        width = min(len(entries), config.pool_size + min(config.pool_size, config.queue))
        program = self.files.get(wire.EXE) or entries[0].spec.program
        chunks = Chunks(len(entries), width, pace_of(program))
        self.pool = GreenPool(width)
        trans = self.req.headers.get('X-Trans-Id', '-')
        outcomes: collections.Counter[str] = collections.Counter()
        ok_seconds = [0.0]
        debug = self.logger.isEnabledFor(logging.DEBUG)     # asked once, not per node

        def log(index: int, seconds: float, status: str) -> None:
            """A node that ran ok is counted in the batch's line (its own at debug:
            a line per node was 15 % of this process's CPU); any other, at info."""
            outcomes[status] += 1
            if status == OK:
                ok_seconds[0] += seconds
                if debug:
                    self.logger.debug('execute %s %s %.4fs %s (batch)', entries[index].object,
                                      status, seconds, trans)
            else:
                self.logger.info('execute %s %s %.4fs %s (batch)', entries[index].object,
                                 status, seconds, trans)

        def chunk(indexes: list[int]) -> None:
            last = time.monotonic()      # a node's time: since the chunk's previous one ended
            try:
                for index, result in self.run_chunk(indexes, entries, chunks):
                    now = time.monotonic()
                    if isinstance(result, HTTPException):
                        log(index, now - last, f'{result.status_int} -')
                    else:
                        log(index, now - last, f'200 {result[0].status}')
                    last = now
                    done.put((index, result))
            except hangup.HangUp as e:
                done.put((indexes[0], e))
                raise
            except Exception as e:       # a bug: the proxy sends the nodes elsewhere
                self.logger.exception('batch nodes %s', entries[indexes[0]].object)
                for index in indexes:
                    done.put((index, e))

        def chunks_in_turn() -> None:
            while indexes := chunks.take():
                if self.closed:
                    done.put((indexes[0], hangup.HangUp()))
                    return
                chunk(indexes)

        def start() -> None:
            for _ in range(width):
                self.pool.spawn_n(chunks_in_turn)
        spawn(start)
        self.watcher = hangup.watch(self.req.environ, self.stop)
        began = time.monotonic()
        try:
            yield from self.answers(entries, done)
        finally:    # at its end, or when the proxy went away
            if chunks.pace is not None:
                pace_of(program, chunks.pace)
            self.logger.info('execute %s 200 ok*%d %.4fs %s (batch of %d: %s; %.4fs)',
                             entries[0].object, outcomes[OK], ok_seconds[0], trans,
                             len(entries), ', '.join(f'{n} {status}' for status, n in
                                                     outcomes.most_common()) or 'none ran',
                             time.monotonic() - began)

    def answers(self, entries: list[wire.BatchEntry], done: LightQueue):
        """The tar stream of the results that ``done`` receives, in the order they end:
        ``batch/reports`` blocks when the proxy reads them (:attr:`blocks`), each sent
        once full, or once no other result is ready :data:`LINGER` seconds after its
        first (a worker's nodes end one by one: sent as soon as none was ready, a
        block held one node or two, and saved the proxy little), with a node whose
        outputs are larger than :data:`SMALL` in members of its own; else a node's
        members each (a write for all that are ready)."""
        answered: set[int] = set()
        ready = bytearray()         # answers ready: one write for all when no other is
        block = wire.ReportsBlock(REPORT_NAMES) if self.blocks else None
        send_at = 0.0               # when the block is sent if no result comes before
        while len(answered) < len(entries):
            if block is not None and block.rows and (block.full or (
                    done.empty() and time.monotonic() >= send_at)):
                ready += block.member()
            if ready and (done.empty() or len(ready) > SMALL):
                yield bytes(ready)
                ready.clear()
            if block is not None and block.rows:
                try:
                    index, result = done.get(timeout=max(0.0, send_at - time.monotonic()))
                except Empty:
                    continue
            else:
                index, result = done.get()
            if isinstance(result, hangup.HangUp):
                return
            if index in answered:       # a bug after some of its nodes were answered
                continue
            answered.add(index)
            if isinstance(result, Exception):
                reason = (result.body or b'').decode('utf-8', 'replace').strip() if isinstance(
                    result, HTTPException) else type(result).__name__
                text = f'{getattr(result, "status_int", 500)} {reason}'
                if block is not None:
                    send_at = send_at if block.rows else time.monotonic() + LINGER
                    block.error(index, text)
                else:
                    ready += wire.tar_member(wire.batch_member(index, wire.ERROR), text.encode())
                continue
            report, outputs = result
            sent = outputs if entries[index].spec.outputs else ()
            if block is not None:
                small = [(name, self.outputs.small(path)) for name, path in sent]
                if sum(SMALL + 1 if data is None else len(data) for _, data in small) <= SMALL:
                    send_at = send_at if block.rows else time.monotonic() + LINGER
                    block.add_encoded(index, report.encoded(), small)
                    self.outputs.give([path for _, path in outputs])
                    continue
            ready += wire.tar_member(wire.batch_member(index, wire.REPORT), report.to_json())
            for name, path in sent:
                member_name = wire.batch_member(index, wire.DEV_PREFIX + name)
                data = self.outputs.small(path)
                if data is not None:            # with the report
                    ready += wire.tar_member(member_name, data)
                    continue
                member = self.outputs.member(member_name, path)
                yield bytes(ready)
                ready.clear()
                yield from wire.stream_members([member])
            self.outputs.give([path for _, path in outputs])   # written again (Outputs)
        if block is not None and block.rows:
            ready += block.member()
        self.ended = True
        yield bytes(ready + wire.TAR_END)

    def stop(self) -> None:
        """The proxy went away: stop the nodes still running, once (``close`` calls this
        again: a second kill landed in a stopped node's worker being replaced, and the
        pool lost that worker for good: every later node a 500)."""
        if self.closed:
            return
        self.closed = True
        if self.pool is not None:
            for thread in list(self.pool.coroutines_running):
                if thread:               # started (a greenlet is true while it runs)
                    greenthread.kill(thread, hangup.HangUp)

    def close(self) -> None:
        """The answer is done (or was never sent): free what the batch held."""
        if self.released:
            return
        self.released = True
        self.stop()
        if self.watcher is not None:
            self.watcher.kill()
        self.owner.admission.leave(self.account, self.job)
        if wire.EXE in self.files:
            self.owner.programs.release(self.files.pop(wire.EXE))
        if IMAGE_MEMBER in self.files:
            self.owner.images.release(self.files.pop(IMAGE_MEMBER))
        if self.outputs is not None:
            self.outputs.release(self.ended)
        if self.null is not None:
            self.null.close()

"""Jobs without ``connect``, streamed: nodes made, run and released a window at a time.

A wildcard over a container of 100,000 objects must not cost the proxy
100,000 nodes' worth of memory (issue 17).  Such a job (any job whose
groups are not connected: its nodes need no graph) goes through here:

- its nodes are made as the container's listing is read, page by page
  (``zerocloud.job.stream``), planned a chunk at a time by the middleware,
  and sent (:func:`run`) while at most ``concurrency`` of them are in
  flight: taking the next node waits for a free place, so the listing is
  read no faster than nodes end;
- each node's results, once it ended, go to a :class:`Collector`: up to
  ``SUMMARY_NODES`` results stay in memory, and the answer is made from them
  exactly as for any small job (``zerocloud.proxy.response.respond``);
  beyond, every result (those held, then each as it ends) is written to the
  job's :class:`JobSpool` and released: its outputs, and its pickled
  ``NodeResult`` when the answer may read it (always for the JSON report;
  else only for a node that failed, has outputs to store or a CGI head), go
  to one unlinked temporary file, and what stays in memory per node is its
  place in that file (a few integers in arrays), plus the summary's counts
  (``response.Tally``);
- the answer of a large job (:func:`respond_spooled`) is then read back from
  the spool in node order: the ``X-Nexe-*`` summary, the JSON report, the
  failures or the nodes' outputs, as ``zerocloud.proxy.response`` documents
  them; outputs with a path are stored from it.

Order: results are written to the spool as nodes end (in any order); the
body is read from it in node order, so a node that ends late (retried alone
on another replica) never holds the others back.  What the proxy holds at
any moment: the nodes in flight, a chunk of planned nodes, one page of the
listing and the bytes of the small-job results: bounded whatever the number
of nodes (``bench/scale.py`` measures its peak RSS).
"""

from __future__ import annotations

import array
import itertools
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator

from swift.common.concurrency import GreenPool, Semaphore, tpool
from swift.common.swob import Response

from zerocloud import cgiout, graph, turns
from zerocloud.answer_format import SUMMARY_NODES
from zerocloud.proxy.outputs import SPOOL_MEMORY, OutputFile
from zerocloud.proxy.response import (
    CHUNK,
    Body,
    NodeResult,
    Part,
    Tally,
    answer,
    body_md5,
    error_header,
)
from zerocloud.tmpdisk import room

NONE = -1                       # no record, no body part
GATHER = 1 << 16  # bytes of small writes to a job spool made at once
Submit = Callable[[object, Callable[[NodeResult | Exception], None]], bool]


def run(plans: Iterable, run_replica: graph.RunReplica,
        collect: Callable[[list[NodeResult]], None], *, concurrency: int,
        progress=None, submit: Submit | None = None,
        alone: int | graph.Places | None = None) -> None:
    """Run every plan (nodes without links), at most ``concurrency`` at a time; each
    node's results (its replicas, compared) go to ``collect`` as it ends.  The next
    plan is only taken from ``plans`` when a place is free: a lazy ``plans`` is read
    as nodes end.  ``progress`` hears of each node sent and ended.

    ``submit(plan, finish)``, if given, takes the plans it can run without a green
    thread of their own (``zerocloud.proxy.batch.Batches.submit``: they wait in a
    batch) and says so; their result (or a bug's exception) goes to ``finish``.
    The others run in green threads, through ``run_replica``, at most ``alone``
    of them at a time (default: ``concurrency``; a :class:`graph.Places` the batches
    share: a node a batch did not run, sent alone, holds one too): each sends
    requests of its own, which a flood of would have object servers refuse with
    503s and retries."""
    pool = GreenPool(concurrency)
    places = Semaphore(concurrency)
    lone = alone if isinstance(alone, graph.Places) else graph.Places(
        alone if alone is not None else concurrency)
    errors: list[BaseException] = []
    stopped: list[bool] = []

    def end(results: list[NodeResult]) -> None:
        try:
            if progress is not None:
                progress.finished(results)
            collect(results)
        except Exception as e:          # a bug: the job stops with it
            errors.append(e)
        finally:
            places.release()

    def work(plan) -> None:
        try:
            if stopped:
                places.release()
                return
            try:
                results = graph.replicas(plan, run_replica)
            except Exception as e:      # a bug: the job stops with it
                errors.append(e)
                places.release()
                return
        finally:
            lone.release()
        end(results)

    def submitted(plan) -> Callable[[NodeResult | Exception], None]:
        def finish(result: NodeResult | Exception) -> None:
            if isinstance(result, Exception):       # a bug: the job stops with it
                errors.append(result)
                places.release()
            elif plan.node.replicate == 1:          # a batch's node: one replica, no vote
                result.replica = 1
                end([result])
            else:
                end(graph.replicas(plan, lambda *_: result))
        return finish

    try:
        for plan in plans:
            turns.take()                # a plan is taken without a wait when a place is free
            if errors:
                break
            if progress is not None:
                progress.started()
            places.acquire()
            if submit is None or not submit(plan, submitted(plan)):
                lone.wait()
                pool.spawn_n(work, plan)
        for _ in range(concurrency):    # every node ended
            if errors:
                break
            places.acquire()
        if errors:
            raise errors[0]
    except BaseException:
        stopped.append(True)            # stopped from outside (the client went away)
        graph.stop(pool)
        pool.waitall()
        raise


class _Slice:
    """``size`` bytes of a job spool from ``offset``: a spooled output read back as a
    file (positional reads: any number of them at once)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self.fd, self.offset, self.size, self.pos = fd, offset, size, 0

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        data = os.pread(self.fd, n, self.offset + self.pos) if n > 0 else b''
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = max(0, offset + (0, self.pos, self.size)[whence])
        return self.pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        pass


class JobSpool:
    """The results of a large job, written as they end to one unlinked temporary file
    and read back in node order (node ids are 1, 2, ... in node order).

    In memory per node: where its record is (:attr:`where`) and where its part of
    the response body is (:attr:`body`): integers in arrays; the ids of nodes
    that failed or have outputs to store; the summary's :class:`Tally`.

    ``records`` False (the job's answer is not the JSON report, which reads every
    node's): a node's record is written only when the answer may read it: it
    failed, has outputs to store or a CGI head in the body; pickling every
    node's result was a sixth of the proxy's CPU per node of a wildcard job.
    Small writes are gathered (:data:`GATHER` bytes) and made before any read.
    """

    def __init__(self, records: bool = True) -> None:
        self.file = tempfile.TemporaryFile(prefix='zerocloud-job-')
        self.fd = self.file.fileno()
        self.end = 0
        self.records = records
        self.pending = bytearray()              # bytes to write at ``pending_at``
        self.pending_at = 0
        self.where = array.array('q')           # per node: record offset, length
        self.body = array.array('q')            # per node: part offset, size, content type
        self.types: list[str | None] = []       # content types of body parts
        self.failed = array.array('l')          # ids of nodes with a failed result
        self.stores = array.array('l')          # ids of nodes with outputs that have a path
        self.tally = Tally()
        self.worst = 0                          # HTTP status of the worst node (skipped aside)
        self.count = 0                          # results

    def __len__(self) -> int:
        return self.count

    def _append(self, data: bytes) -> int:
        """``data`` appended (gathered with the next ones); where it starts."""
        offset = self.end
        if not self.pending:
            self.pending_at = offset
        self.pending += data
        self.end += len(data)
        if len(self.pending) >= GATHER:
            self.flush()
        return offset

    def flush(self) -> None:
        """Write what was gathered: before anything is read back."""
        view, at = memoryview(self.pending), self.pending_at
        try:
            with room():
                while view:
                    done = os.pwrite(self.fd, view, at)
                    view, at = view[done:], at + done
        finally:
            view.release()
        self.pending.clear()

    def _copy(self, out) -> tuple[int, int]:
        """An output's bytes appended: (offset, size); a large one in a thread.  They
        stay charged to the job's budget (``outputs.Budget``) until it is answered."""
        if isinstance(out, OutputFile):
            out.hand_over()
        size = out.seek(0, 2)
        out.seek(0)
        if size <= CHUNK:
            return self._append(out.read()), size
        self.flush()
        start = self.end
        self.end += size                        # reserved: others may append meanwhile

        def copy() -> None:
            pos = start
            with room():
                while chunk := out.read(CHUNK):
                    pos += os.pwrite(self.fd, chunk, pos)
        if size > SPOOL_MEMORY:
            tpool.execute(copy)
        else:
            copy()
        return start, size

    def add(self, results: list[NodeResult]) -> None:
        """A node's results (one per replica), written here; their outputs are closed."""
        node = results[0].node
        node_id = node.id
        slot = node_id - 1
        grow = node_id - len(self.where) // 2
        if grow > 0:
            self.where.extend([NONE] * (2 * grow))
            self.body.extend([NONE] * (3 * grow))
        try:
            for r in results:
                r.outputs = {name: self._copy(out) for name, out in r.outputs.items()}
        finally:
            for r in results:
                for out in r.outputs.values():
                    if not isinstance(out, tuple):
                        out.close()
        failed = stores = cgi = False
        for r in results:
            http = r.http
            failed |= http != 200
            if r.status != graph.SKIPPED and http > self.worst:
                self.worst = http
            if not r.outputs:
                continue
            for dev in r.node.devices:
                if not dev.writable or dev.name not in r.outputs:
                    continue
                if dev.path is not None:
                    stores = True
                elif self.body[3 * slot] == NONE:
                    if dev.content_type not in self.types:
                        self.types.append(dev.content_type)
                    self.body[3 * slot:3 * slot + 3] = array.array(
                        'q', [*r.outputs[dev.name], self.types.index(dev.content_type)])
                    cgi = dev.content_type in (cgiout.CGI, cgiout.HTTP)
        self.tally.add(results, failed=failed)
        if self.records or failed or stores or cgi:
            self._write(node_id, results)
        self.count += len(results)
        if failed:
            self.failed.append(node_id)
        if stores:
            self.stores.append(node_id)

    def _write(self, node_id: int, results: list[NodeResult]) -> None:
        """The record of a node's results (outputs as (offset, size) here)."""
        data = pickle.dumps(results, pickle.HIGHEST_PROTOCOL)
        self.where[2 * node_id - 2:2 * node_id] = array.array(
            'q', [self._append(data), len(data)])

    def load(self, node_id: int) -> list[NodeResult]:
        """A node's results as they were written, their outputs readable from here."""
        self.flush()
        offset, length = self.where[2 * node_id - 2:2 * node_id]
        results = pickle.loads(os.pread(self.fd, length, offset))
        for r in results:
            r.outputs = {name: _Slice(self.fd, *place) for name, place in r.outputs.items()}
        return results

    def replace(self, node_id: int, old: list[NodeResult], new: list[NodeResult]) -> None:
        """A node's results changed (its outputs were stored, or storing one failed)."""
        if not any(r.failed for r in old) and any(r.failed for r in new):
            self.failed.append(node_id)
        self.tally.add(old, -1)
        self.tally.add(new)
        for r in new:
            if r.status != graph.SKIPPED:
                self.worst = max(self.worst, r.http)
            r.outputs = {name: (out.offset, out.size) for name, out in r.outputs.items()}
        self._write(node_id, new)

    def __iter__(self) -> Iterator[NodeResult]:
        """Every result in node order, loaded one node at a time."""
        for slot in range(len(self.where) // 2):
            if self.where[2 * slot] != NONE:
                yield from self.load(slot + 1)

    def failures(self) -> _Failures:
        return _Failures(self)

    def parts(self, starts: list[int] | None = None) -> Iterator[Part]:
        """The body's parts in node order (past each CGI head when ``starts`` says)."""
        self.flush()
        i = 0
        for slot in range(len(self.body) // 3):
            offset, size, _ = self.body[3 * slot:3 * slot + 3]
            if offset == NONE:
                continue
            start = starts[i] if starts else 0
            i += 1
            yield Part(_Slice(self.fd, offset, size), start, size - start, self)

    def heads(self) -> Iterator[tuple[str, str | None, bytes]]:
        """(node, content type, head) of each body part, for ``cgiout.compose``."""
        self.flush()
        for slot in range(len(self.body) // 3):
            offset, _, kind = self.body[3 * slot:3 * slot + 3]
            if offset == NONE:
                continue
            content_type = self.types[kind]
            if content_type in (cgiout.CGI, cgiout.HTTP):
                name = self.load(slot + 1)[0].node.name
                yield name, content_type, os.pread(self.fd, cgiout.HEAD_BYTES, offset)
            else:
                yield '', content_type, b''

    def close(self) -> None:
        self.file.close()


class _Failures:
    """The failed results of a spool in node order, as often as they are read."""

    def __init__(self, spool: JobSpool) -> None:
        self.spool = spool

    def __iter__(self) -> Iterator[NodeResult]:
        for node_id in sorted(set(self.spool.failed)):
            for r in self.spool.load(node_id):
                if r.failed:
                    yield r


class Collector:
    """A job's results as its nodes end: in memory up to ``SUMMARY_NODES`` results
    (:attr:`held`), past that in a :class:`JobSpool` (:attr:`spool`; ``records``: its
    records of every node, for the JSON report)."""

    def __init__(self, records: bool = True) -> None:
        self.held: list[NodeResult] = []
        self.spool: JobSpool | None = None
        self.records = records

    def add(self, results: list[NodeResult]) -> None:
        if self.spool is not None:
            self.spool.add(results)
            return
        self.held += results
        if len(self.held) > SUMMARY_NODES:
            self.spool = JobSpool(self.records)
            held, self.held = self.in_order(), []
            for _, node_results in itertools.groupby(held, key=lambda r: r.node.id):
                turns.take()
                self.spool.add(list(node_results))

    def in_order(self) -> list[NodeResult]:
        """The results held, in node order (each node's replicas in turn)."""
        return sorted(self.held, key=lambda r: (r.node.id, r.replica))

    def close(self) -> None:
        for r in self.held:
            r.close()
        if self.spool is not None:
            self.spool.close()


def respond_spooled(spool: JobSpool, seconds: float, report_json: bool) -> Response:
    """The answer of a large job from its spool, as ``response.respond`` makes it for
    a job of more than ``SUMMARY_NODES`` results; the body closes the spool."""
    try:
        headers = spool.tally.headers(seconds)
        if error_header(spool.failures(), headers):
            headers['X-Nexe-Truncated'] = 'true'

        def outputs() -> tuple[int, dict[str, str], _Parts, str]:
            status, written, starts = cgiout.compose(spool.heads())
            parts = _Parts(spool, starts)
            return status, written, parts, body_md5(parts)
        return answer(spool.worst, headers, seconds, report_json, spool, spool.failures(),
                      outputs, lambda parts: _SpooledBody(parts, spool))
    except BaseException:
        spool.close()
        raise


class _Parts:
    """The body's parts of a spool, as often as they are read."""

    def __init__(self, spool: JobSpool, starts: list[int]) -> None:
        self.spool, self.starts = spool, starts

    def __iter__(self) -> Iterator[Part]:
        return self.spool.parts(self.starts if any(self.starts) else None)


class _SpooledBody(Body):
    """A large job's body: closing it closes the job's spool."""

    def __init__(self, parts, spool: JobSpool) -> None:
        super().__init__(parts, [])
        self.spool = spool

    def close(self) -> None:
        super().close()
        self.spool.close()

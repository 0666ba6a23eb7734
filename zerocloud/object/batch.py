"""A batch of nodes in one execute request (``X-Zerovm-Batch``, ``zerocloud.wire``).

The proxy sends the in-place nodes of a wildcard job bound for this server
together, so that what a request costs (its connection, ``100 Continue``,
the program or its digest, a scratch directory) is paid once per batch, not
once per node.  The batch is admitted as one node of its job's account
(``503 Slot not available`` when the server or the account has no room:
``zerocloud.object.admission``); its nodes then run in the same pool as
every other node, in turn with other accounts' (``zvm_core.fairshare``),
``zerovm_maxpool`` at a time with as many again in the pool's queue (within
``zerovm_maxqueue``), each reading its own object in place, and their
results stream back as they end.  A node this server cannot run (object not
here, pool full, disk unmounted) gets an ``<i>/error`` member with the
status it would have had alone: the proxy sends that node again alone,
elsewhere.  When the proxy goes away the nodes still running are stopped
(their workers are replaced, as for one node).
"""

from __future__ import annotations

import glob
import os
import shutil
import time

from swift.common.concurrency import GreenPool, LightQueue, greenthread, spawn, tpool
from swift.common.constraints import check_drive
from swift.common.storage_policy import POLICIES
from swift.common.swob import (
    HTTPBadRequest,
    HTTPException,
    HTTPInsufficientStorage,
    HTTPRequestEntityTooLarge,
    Request,
    Response,
)
from swift.common.utils import ClosingIterator

from zerocloud import hangup, wire
from zerocloud.object import scratch
from zerocloud.object.admission import charged_to

SMALL = 1 << 18         # outputs up to this size travel in one write with their report
TRASH_AT = 64           # outputs removed together


def _remove(paths: list[str]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def _remove_files(paths: list[str]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class BatchRun:
    """One batch request: receive its nodes, run them, stream their results."""

    def __init__(self, owner, req: Request, node_run: type) -> None:
        self.owner, self.req, self.node_run = owner, req, node_run
        self.config, self.logger = owner.config, owner.logger
        self.files: dict[str, str] = {}
        self.tmp: str | None = None
        self.pool: GreenPool | None = None
        self.watcher = None
        self.closed = self.released = False
        self.done_files: list[str] = []         # to remove (``trash``)

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
                body=f'request larger than zerovm_maxinput ({config.max_input} bytes)\n')
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
            self.tmp = scratch.node_dir(os.path.join(disk, 'tmp'))
            entries = self.receive(count)
            hangup.drain(req.environ)           # the end of the tar: then only a hang-up
        except BaseException:
            self.close()
            raise
        self.policy = policy
        req.environ['eventlet.minimum_write_chunk_size'] = 0     # each result at once
        body = ClosingIterator(self.members(entries), [self])
        return Response(app_iter=body, content_type='application/x-tar',
                        headers={wire.BATCH: str(count)})

    def receive(self, count: int) -> list[wire.BatchEntry]:
        """The program (unless sent by digest) and the ``count`` entries, in order."""
        entries: list[wire.BatchEntry] = []
        budget = self.config.max_input
        try:
            for name, f in wire.read_members(self.req.environ['wsgi.input'], None):
                if name == wire.EXE and not entries and wire.EXE not in self.files:
                    self.files[wire.EXE] = self.owner.programs.receive(f, budget)
                    budget -= os.path.getsize(self.files[wire.EXE])
                elif name == f'{wire.BATCH_PREFIX}{len(entries)}' and len(entries) < count:
                    entries.append(wire.BatchEntry.from_json(f.read(1 << 20)))
                else:
                    raise wire.WireError(f'unexpected member {name}')
        except wire.TooLarge:
            raise HTTPRequestEntityTooLarge(
                body=f'request larger than zerovm_maxinput ({self.config.max_input} bytes)\n'
            ) from None
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
        return helper

    def run_one(self, index: int, entry: wire.BatchEntry) -> tuple[wire.NodeReport, list]:
        """Run one node of the batch: (report, outputs).  Its outputs are files of
        the batch's directory named after ``index``: no directory per node."""
        account, container, obj = entry.object[1:].split('/', 2)
        helper = self.helper()
        helper.prefix = f'{index}-'
        reader = helper.open_local(entry.device, str(entry.partition), account, container,
                                   obj, self.policy)
        try:
            return helper.run(entry.spec, self.files, reader, self.tmp)
        except BaseException:
            _remove_files(glob.glob(os.path.join(glob.escape(self.tmp), f'{index}-*')))
            raise
        finally:
            reader.close()

    def members(self, entries: list[wire.BatchEntry]):
        """The answer (a tar stream), node by node as they end."""
        done = LightQueue()
        config = self.config          # its nodes wait in the pool's queue, not for a slot
        width = min(len(entries), config.pool_size + min(config.pool_size, config.queue))
        self.pool = GreenPool(width)
        trans = self.req.headers.get('X-Trans-Id', '-')

        def one(index: int, entry: wire.BatchEntry) -> None:
            began = time.monotonic()
            if self.closed:
                done.put((index, hangup.HangUp()))
                return
            try:
                result = self.run_one(index, entry)
                status = f'200 {result[0].status}'
            except HTTPException as e:
                result, status = e, f'{e.status_int} -'
            except hangup.HangUp as e:
                done.put((index, e))
                raise
            except Exception as e:       # a bug: the proxy sends the node elsewhere
                self.logger.exception('batch node %s', entry.object)
                result, status = e, '500 -'
            self.logger.info('execute %s %s %.4fs %s (batch)', entry.object, status,
                             time.monotonic() - began, trans)
            done.put((index, result))

        def start() -> None:
            for index, entry in enumerate(entries):
                if self.closed:
                    return
                self.pool.spawn_n(one, index, entry)
        spawn(start)
        self.watcher = hangup.watch(self.req.environ, self.stop)
        for _ in entries:
            index, result = done.get()
            if isinstance(result, hangup.HangUp):
                return
            if isinstance(result, Exception):
                reason = (result.body or b'').decode('utf-8', 'replace').strip() if isinstance(
                    result, HTTPException) else type(result).__name__
                text = f'{getattr(result, "status_int", 500)} {reason}'.encode()
                yield wire.tar_member(wire.batch_member(index, wire.ERROR), text)
                continue
            report, outputs = result
            parts = [wire.tar_member(wire.batch_member(index, wire.REPORT), report.to_json())]
            for name, path in outputs if entries[index].spec.outputs else ():
                member = wire.file_member(wire.batch_member(index, wire.DEV_PREFIX + name), path)
                if member[1] <= SMALL:           # with the report: one write per node
                    parts.append(wire.tar_member(member[0], b''.join(member[2])))
                    continue
                yield b''.join(parts)
                parts = []
                yield from wire.stream_members([member])
            yield b''.join(parts)
            self.trash([path for _, path in outputs])
        yield wire.TAR_END

    def trash(self, paths: list[str]) -> None:
        """Remove the outputs of nodes whose results went, a few nodes' at a time,
        in a thread: removing them in the hub cost a third of its time."""
        self.done_files += paths
        if len(self.done_files) >= TRASH_AT:
            files, self.done_files = self.done_files, []
            spawn(tpool.execute, _remove_files, files)

    def stop(self) -> None:
        """The proxy went away: stop the nodes still running."""
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
        if self.tmp is not None:           # in a thread: the hub goes on meanwhile
            self.done_files = []
            tpool.execute(_remove, [self.tmp])
            self.tmp = None

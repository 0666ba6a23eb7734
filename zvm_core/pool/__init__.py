"""Warm sandbox workers, the caller side: the only door zerocloud uses to run programs.

This package is the pool in two halves: this module is what a caller (the
object server, the proxy's upload check, ``zvm run --repeat``) imports, and
the socket protocol both halves speak; it loads no engine.  ``worker`` is
the process that runs guests and keeps template machines.

A new Python process costs ~150 ms of imports and a new unicorn instance a
few ms of code translation; a worker that already holds a machine for the
program only resets it (``Machine.reset``) and runs again in well under a
millisecond.  For the native engine the template is a fork server that
mapped the program once (``zvm_core.engines.native.warm``): each run is a
child forked from it, and the next one is forked after the reply.  The caller
(the object server, ``zvm serve``) never runs guest code itself: it sends a
request and the channels' file descriptors over a Unix socket (no data is
copied) and waits for the report.

Usable from plain Python and from eventlet code: the socket, ``select`` and
locks used here are the ones eventlet monkey-patches, so a waiting caller
does not block the hub.

A channel with a ``mount`` point is a tar image: the worker mounts it
read-only at that path (``zvm_core.syscalls.fs``; in request order, so a
later image wins where paths meet), which is how interpreters get their
libraries (``zvm_core.sysimages``).  A worker indexes each image file once.

A worker cleans up after its reply (an emulated machine is reset, a native
template forks the child of the next run), so an idle request goes to the
worker idle longest, not to the one that has just answered and may still be
cleaning up.

Admission is bounded: ``size`` requests run at once, ``queue`` more may
wait, and any further request gets :class:`PoolBusy` at once.  Requests
carry an account: one account runs at most ``account_size`` at once, and
freed workers go to the waiting accounts in turn (``zvm_core.fairshare``).
A worker that dies or overruns its time is replaced and its request ends with status
``killed``.  A caller that stops waiting (an exception raised in its green
thread, such as ``GreenletExit`` or the object server's hang-up) ends the
run: the worker is killed at once and replaced, so it is free again.
Starting a worker (a fork and exec) is handed to ``offload`` (the object
server passes ``eventlet.tpool.execute``), so that a replacement never runs
in the caller's event loop.
Workers limit themselves (core size, open files, address space, no new
privileges) as defence in depth, and end when their parent is gone.

``Pool.validate`` asks a worker for the validator's verdict on a program
without running it (the proxy's upload check), so the caller never loads the
validator itself.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from zvm_core.channels import READ, UNLIMITED, Quota
from zvm_core.fairshare import FairSlots
from zvm_core.limits import MAX_FDS, Limits
from zvm_core.report import Accounting, ChannelAccounting, Report

KILL_GRACE = 2.0


class PoolBusy(Exception):
    """Every worker is busy and the queue is full: try later (HTTP 503)."""


class WorkerFailed(RuntimeError):
    """A worker died or overran its time before it answered a validation."""


@dataclass
class ChannelSpec:
    """A channel to give the guest: ``fd`` is a host descriptor the caller owns."""

    alias: str
    fd: int
    mode: int = READ
    random: bool = False
    quota: Quota = field(default_factory=Quota)
    mount: str | None = None      # a tar image: mounted read-only here (e.g. "/")
    notify: int | None = None     # data still arriving: ``fd`` is a ``channels.LinkWriter``
                                  # file, ``notify`` its ``LinkWaker``'s (may be shared)
    wait: float | None = None     # with ``notify``: seconds a read may wait for new data
    tail: int | None = None       # (``Pool.run_many`` only) no descriptor: a write-only
                                  # stream of which the worker keeps the last ``tail`` bytes


MAX_MESSAGE = 1 << 20


def _report_from(data: dict) -> Report:
    """The report a worker sent (``data``, just parsed: taken over and changed)."""
    acc = data.get('accounting') or {}
    acc['channels'] = {k: ChannelAccounting(**v) for k, v in acc.get('channels', {}).items()}
    data['accounting'] = Accounting(**acc)
    return Report(**data)


# How the message of a run ``killed`` by the host begins (not by a bug of ours, such as
# "internal error in ..." or the worker's "sandbox worker error: ..."): a sandbox worker
# that died (an OOM kill) or did not answer, host I/O that failed, a native loader
# that could not start the guest (supervisor._failure: e.g. too many descriptors in
# flight, ETOOMANYREFS).  The program may well run on another try.
HOST_FAILURES = ('sandbox worker died', 'sandbox worker did not answer', 'host I/O failed',
                 'native engine: loader: ', 'native engine: no answer from the loader',
                 "native engine: the template's child is gone",
                 'native engine: the loader did not start')


def host_failed(status: str, message: str) -> bool:
    """Whether a run ended ``killed`` by the host's trouble, not by its program nor by a
    bug of ours: the proxy answers 503 for it, not 500."""
    return status == 'killed' and message.startswith(HOST_FAILURES)


def _failed(status: str, message: str) -> Report:
    return Report(status, None, message, validation={'state': 'ok', 'violations': []})


def _wait(sock: socket.socket, readable: bool, deadline: float | None) -> None:
    left = None if deadline is None else max(0.0, deadline - time.monotonic())
    r, w, _ = select.select([sock] if readable else [], [] if readable else [sock], [], left)
    if not (r or w):
        raise TimeoutError


class MessageTooLarge(ValueError):
    """A message that one datagram of the worker socket cannot carry."""


def _send(sock: socket.socket, obj: object, fds: Iterable[int] = ()) -> None:
    """Send one message; :class:`MessageTooLarge` (nothing sent) if it cannot fit."""
    data = json.dumps(obj).encode()
    if len(data) > MAX_MESSAGE:
        raise MessageTooLarge(f'{len(data)} bytes; the worker transport carries at most '
                              f'{MAX_MESSAGE}')
    fds = list(fds)
    while True:
        try:
            socket.send_fds(sock, [data], fds)
            return
        except BlockingIOError:
            _wait(sock, False, None)
        except OSError as e:        # the socket buffer is smaller than MAX_MESSAGE here
            if e.errno != errno.EMSGSIZE:
                raise
            raise MessageTooLarge(f'{len(data)} bytes; more than the socket buffer '
                                  f'({sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)})'
                                  ) from None


def _socketpair() -> tuple[socket.socket, socket.socket]:
    """The worker's socket pair, with buffers for a MAX_MESSAGE datagram where the
    host allows (net.core.wmem_max); :func:`_send` refuses what does not fit."""
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in pair:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * MAX_MESSAGE)
    return pair


def _reply(sock: socket.socket, report: Report) -> None:
    """Send a report, or, if it cannot travel, a short one that says so."""
    try:
        _send(sock, report.to_dict())
    except MessageTooLarge as e:
        _send(sock, _failed('killed', f'the report of this run is too large to return: '
                                      f'{e}').to_dict())


_PEEK = bytearray(1)


def _recv(sock: socket.socket, deadline: float | None = None) -> tuple[object | None, list[int]]:
    """The next message and its descriptors ((None, []) at the end).  Its size is
    peeked first: a buffer of MAX_MESSAGE bytes for each one cost ~18 us."""
    while True:
        try:
            size = sock.recv_into(_PEEK, 1, socket.MSG_PEEK | socket.MSG_TRUNC)
            if not size:
                return None, []
            data, fds, _flags, _addr = socket.recv_fds(sock, size, MAX_FDS)
            break
        except BlockingIOError:
            _wait(sock, True, deadline)
    if not data:
        return None, fds
    return json.loads(data), fds


def _request(program: str, channels: list[ChannelSpec], argv, env, limits, seed: int,
             epoch: int, rdtsc: str, notify: dict[int, int], engine: str | None = None) -> dict:
    """The message for one run; channel ``fd`` fields index the descriptors sent with it.
    A channel's fields at their defaults are left out (:func:`_channel_fields`): its
    unlimited quota alone (four 19-digit numbers) made most of the encoding's cost."""
    return {'program': os.path.abspath(program), 'argv': list(argv), 'env': dict(env or {}),
            'limits': {'memory': limits.memory, 'fuel': limits.fuel, 'timeout': limits.timeout},
            'seed': seed, 'epoch': epoch, 'rdtsc': rdtsc, 'engine': engine,
            'channels': [_channel_fields(c, i, notify.get(i)) for i, c in enumerate(channels)]}


def _channel_fields(c: ChannelSpec, fd: int, notify: int | None) -> dict:
    fields = {'alias': c.alias, 'fd': fd, 'mode': c.mode}
    if c.random:
        fields['random'] = True
    quota = {k: v for k, v in vars(c.quota).items() if v != UNLIMITED}
    if quota:
        fields['quota'] = quota
    for key, value in (('mount', c.mount), ('notify', notify), ('wait', c.wait)):
        if value is not None:
            fields[key] = value
    return fields


@dataclass
class Run:
    """One run of :meth:`Pool.run_many`: what :meth:`Pool.run` takes, as data."""

    program: str
    channels: list[ChannelSpec]
    argv: list[str]
    env: Mapping[str, str] | None = None
    limits: Limits = field(default_factory=Limits)
    seed: int = 0
    epoch: int = 0
    engine: str | None = None


class RunResult:
    """What :meth:`Pool.run_many` gives for one run: its report and, per channel with
    ``tail``, the bytes kept.  ``data`` is the report as the worker sent it
    (``Report.to_dict``); ``report`` is built from it when first asked for: a
    batch's node only passes it on (``zerocloud.object.results.node_report``)."""

    def __init__(self, data: dict, tails: dict[str, bytes] | None = None) -> None:
        self.data, self.tails = data, tails or {}

    @functools.cached_property
    def report(self) -> Report:
        return _report_from(self.data)


def _many_request(runs: list[Run], rdtsc: str) -> tuple[dict, list[int]]:
    """The message for :meth:`Pool.run_many` and the descriptors it carries (each run's
    channel ``fd`` fields index those; a ``tail`` channel has none)."""
    reqs, fds = [], []
    for run in runs:
        if any(c.notify is not None for c in run.channels):
            raise ValueError('run_many: a channel with data still arriving (notify) '
                             'needs Pool.run')
        req = _request(run.program, run.channels, run.argv, run.env, run.limits, run.seed,
                       run.epoch, rdtsc, {}, run.engine)
        for c, spec in zip(run.channels, req['channels'], strict=True):
            if c.tail is not None:
                spec['fd'], spec['tail'] = None, c.tail
            else:
                spec['fd'] = len(fds)
                fds.append(c.fd)
        reqs.append(req)
    if len(fds) > MAX_FDS:
        raise ValueError(f'{len(fds)} descriptors for one request: at most {MAX_FDS}')
    return {'runs': reqs}, fds


@dataclass(frozen=True)
class WarmUp:
    """A run each worker makes when it starts, so that the first request for the
    program finds its template ready: validated, code translated, images indexed.

    The program runs with ``argv``, empty stdin, output discarded and
    ``images`` (tar files) mounted read-only at ``/``; its result is ignored.
    """

    program: str
    argv: tuple[str, ...]
    images: tuple[str, ...] = ()
    memory: int = 256 << 20


class _Worker:
    def __init__(self, template_bytes: int, address_space: int, warm: str) -> None:
        parent, child = _socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'zvm_core.pool.worker', '--fd', str(child.fileno()),
             '--template-bytes', str(template_bytes), '--address-space', str(address_space),
             '--warm', warm, '--parent', str(os.getpid())],
            pass_fds=[child.fileno()], stdin=subprocess.DEVNULL)
        child.close()
        parent.setblocking(False)
        self.sock = parent
        self.served = 0
        self.warming = warm != '[]'         # its "ready" message is still to come

    def close(self) -> None:
        self.sock.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(KILL_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.sock.close()


class Pool:
    """``size`` warm workers; ``run`` blocks (green-friendly) until the report."""

    def __init__(self, size: int | None = None, queue: int = 16,
                 template_bytes: int = 512 << 20, address_space: int = 0,
                 warm: Iterable[WarmUp] = (),
                 offload: Callable[..., object] | None = None,
                 account_size: int | None = None) -> None:
        """``offload(fn, *args)`` runs ``fn`` elsewhere (a thread) and returns its
        result; the pool starts replacement workers through it.  ``account_size``:
        requests of one account running at once (default: ``size``)."""
        self.size = size or os.cpu_count() or 1
        self.queue = queue
        self._args = (template_bytes, address_space, json.dumps([vars(w) for w in warm]))
        self._lock = threading.Lock()
        self._slots = FairSlots(self.size, account_size)
        self._idle: list[_Worker] = [_Worker(*self._args) for _ in range(self.size)]
        self._all = set(self._idle)
        self._waiting = 0
        self._offload = offload or (lambda fn, *args: fn(*args))
        self.replaced = 0
        self.closed = False

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers (idle or busy)."""
        return sorted(w.proc.pid for w in self._all)

    def run(self, program: str, channels: Iterable[ChannelSpec], *,
            argv: list[str], env: Mapping[str, str] | None = None, limits=None,
            seed: int = 0, epoch: int = 0, rdtsc: str = 'virtualize',
            started: Callable[[], None] | None = None, engine: str | None = None,
            account: str = '') -> Report:
        """Run ``program`` (a host path) in a warm worker; :class:`PoolBusy` when full.

        ``started`` is called once a worker has taken the request (it may have
        waited in the queue until then, in turn with other accounts' requests).
        ``engine`` (``zvm_core.engines``) is chosen in the worker; a native run is a
        child of the program's template there.
        """
        limits = limits or Limits()
        channels = list(channels)
        fds = [c.fd for c in channels]
        shared: dict[int, int] = {}                   # one descriptor may wake several
        for c in channels:
            if c.notify is not None and c.notify not in shared:
                shared[c.notify] = len(fds)
                fds.append(c.notify)
        notify = {i: shared[c.notify] for i, c in enumerate(channels) if c.notify is not None}
        if len(fds) > MAX_FDS:
            raise ValueError(f'{len(fds)} descriptors for one run: at most {MAX_FDS}')
        req = _request(program, channels, argv, env, limits, seed, epoch, rdtsc, notify, engine)
        return self._admit(req, fds, limits.timeout + KILL_GRACE, started, _report_from, account)

    def run_many(self, runs: list[Run], *, rdtsc: str = 'virtualize', account: str = '',
                 started: Callable[[], None] | None = None) -> Iterator[RunResult | None]:
        """Run ``runs`` one after the other in one warm worker, sent in one request
        (the nodes of a batch, ``zerocloud.object.batch``): what a round trip costs
        is paid once for all of them, and each run is still its own sandbox with its
        own channels and report.  Yields each run's result as it ends, in order;
        :class:`PoolBusy` (before anything runs) when full.  The runs hold one worker
        and one of ``account``'s turns until the last ends.  When the worker dies or
        overruns a run's time, that run's result is a ``killed`` report and the runs
        after it yield None: they did not run.  A caller that stops iterating
        (``close``, an exception in its green thread) ends the runs left: the worker
        is killed and replaced, as in :meth:`run`.  No run records a start-up
        snapshot (each node's ``LOCAL_*`` variables make its key unlike any other
        run's: ``zvm_core.engines.native.snapshot``, and under the emulated engine
        its ~2 MB copy would evict the kept ones); one its key has is used.
        """
        req, fds = _many_request(runs, rdtsc)
        with self._worker(started, account) as worker:
            yield from self._exchange_many(worker, req, fds, runs)

    def _exchange_many(self, worker: _Worker, req: dict, fds: list[int],
                       runs: list[Run]) -> Iterator[RunResult | None]:
        """The worker's reply to each run of ``req`` (see :meth:`run_many`)."""
        done = 0
        try:
            deadline = time.monotonic() + runs[0].limits.timeout + KILL_GRACE
            self._ready(worker, deadline)
            try:
                _send(worker.sock, req, fds)
            except MessageTooLarge as e:
                failed = _failed('fault', f'the request is too large: {e}')
                yield RunResult(failed.to_dict())
                done += 1
                yield from (None for _ in runs[1:])
                return
            for run in runs:
                reply, extra = _recv(worker.sock, time.monotonic() + run.limits.timeout
                                     + KILL_GRACE)
                for f in extra:
                    os.close(f)
                if reply is None:
                    code = worker.proc.wait()
                    break
                done += 1       # not in served: a chunk's worker may die after some replies
                yield RunResult(reply['report'],
                                {k: v.encode('latin-1') for k, v in reply['tails'].items()})
            else:
                return
            message = f'sandbox worker died ({_exit_text(code)})'
        except TimeoutError:
            worker.proc.kill()
            worker.proc.wait()
            message = 'sandbox worker did not answer within its time'
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise
            message = f'sandbox worker died ({_exit_text(worker.proc.wait())})'
        except BaseException:       # the caller stopped waiting: end the runs
            worker.proc.kill()
            worker.proc.wait()
            raise
        yield RunResult(_failed('killed', message).to_dict())
        yield from (None for _ in runs[done + 1:])

    def validate(self, fd: int, *, rdtsc: str = 'virtualize',
                 timeout: float = 120.0) -> tuple[bool, str]:
        """(valid, first reason) of the program open as ``fd``, checked in a worker
        as ``zvm validate`` does; :class:`PoolBusy` when full, :class:`WorkerFailed`
        when no verdict came within ``timeout`` seconds."""
        reply = self._admit({'validate': True, 'rdtsc': rdtsc}, [fd], timeout, None, dict)
        if isinstance(reply, Report):
            raise WorkerFailed(reply.message)
        return bool(reply['valid']), str(reply['reason'])

    def _admit(self, req: dict, fds: list[int], wait: float,
               started: Callable[[], None] | None, parse: Callable[[dict], object],
               account: str = ''):
        """Queue ``req`` for a worker (bounded), exchange it, and put the worker back."""
        with self._worker(started, account) as worker:
            return self._exchange(worker, req, fds, wait, parse)

    @contextlib.contextmanager
    def _worker(self, started: Callable[[], None] | None, account: str) -> Iterator[_Worker]:
        """A worker for one request, once admitted (bounded: :class:`PoolBusy`) and its
        turn came; put back (or replaced, if it died) afterwards."""
        with self._lock:
            if self._waiting >= self.queue + self.size:
                raise PoolBusy(f'{self.size} running and {self.queue} waiting')
            self._waiting += 1
        try:
            with self._slots.slot(account):
                worker = self._idle.pop(0)      # idle longest: done with its clean-up
                if worker.proc.poll() is not None:  # died idle, or its replacement was cut
                    worker = self._successor(worker)
                served = worker.served
                try:
                    if started is not None:
                        started()
                    yield worker
                finally:        # one that answered is alive: no wait() to ask
                    if worker.served > served or worker.proc.poll() is None:
                        self._idle.append(worker)
                    else:
                        self._idle.append(self._successor(worker))
        finally:
            with self._lock:
                self._waiting -= 1

    def _successor(self, dead: _Worker) -> _Worker:
        """A new worker for ``dead``'s place.  If starting it is cut short (the
        caller's green thread killed: its client hung up) the dead worker goes back
        to the idle list, to be replaced when next taken: a slot keeps its worker."""
        try:
            return self._replace(dead)
        except BaseException:
            self._idle.append(dead)
            raise

    def _replace(self, worker: _Worker) -> _Worker:
        new = self._offload(self._restart, worker)
        self.replaced += 1
        return new

    def _restart(self, worker: _Worker) -> _Worker:
        """Reap ``worker`` and start its successor (run through ``offload``); the
        successor is known to ``close`` even if whoever waited for it went away."""
        worker.kill()
        self._all.discard(worker)
        new = _Worker(*self._args)
        self._all.add(new)
        return new

    def _exchange(self, worker: _Worker, req: dict, fds: list[int], wait: float,
                  parse: Callable[[dict], object] = _report_from):
        """``parse`` of the worker's reply, or a failed :class:`Report`."""
        deadline = time.monotonic() + wait
        try:
            self._ready(worker, deadline)
            try:
                _send(worker.sock, req, fds)
            except MessageTooLarge as e:
                return _failed('fault', 'the request (arguments, environment, channel names) '
                                        f'is too large: {e}')
            _wait(worker.sock, True, deadline)     # a reply is never there at once
            reply, extra = _recv(worker.sock, deadline)
        except TimeoutError:
            worker.proc.kill()
            worker.proc.wait()
            return _failed('killed', f'sandbox worker did not answer within {wait:g} s')
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise
            reply, extra = None, []
        except BaseException:       # the caller stopped waiting (its client went away):
            worker.proc.kill()      # end the run; ``run`` replaces the worker
            worker.proc.wait()
            raise
        for f in extra:
            os.close(f)
        if reply is None:
            code = worker.proc.wait()
            return _failed('killed', f'sandbox worker died ({_exit_text(code)})')
        worker.served += 1
        return parse(reply)

    @staticmethod
    def _ready(worker: _Worker, deadline: float | None) -> None:
        """Wait for the worker's warm-ups to end (TimeoutError past ``deadline``)."""
        if worker.warming:
            _recv(worker.sock, deadline)
            worker.warming = False

    def wait_warm(self, timeout: float) -> None:
        """Block until every idle worker has done its warm-ups (TimeoutError after
        ``timeout`` seconds); for a server that should start warm."""
        deadline = time.monotonic() + timeout
        for worker in list(self._idle):
            self._ready(worker, deadline)

    def close(self) -> None:
        for worker in self._all:
            worker.close()
        self._idle, self._all = [], set()
        self.closed = True

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f'signal {signal.Signals(-code).name}'
        except ValueError:
            return f'signal {-code}'
    return f'exit status {code}'

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

The messages are cheap per run, since a batch's node costs little else:
a request carries each run's arguments, environment, seed and epoch, and what
runs share (program, limits, engine, the channels' layout and quotas) as
a shape the worker keeps, sent once per worker (:class:`_Shapes`); a reply is
the report's values without their keys, the kept tails as they are, and (a
batch's) when the worker sent it.  One ``sendmsg`` per message (descriptors
with it), one ``recvmsg`` into a buffer kept with the socket.

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
freed workers go to the waiting accounts in turn (``zvm_core.fairshare``);
the worker's template cache makes room from the account holding the most
(``worker.Templates``).
A worker that dies or overruns its time is replaced and its request ends with status
``killed``.  A caller that stops waiting (an exception raised in its green
thread, such as ``GreenletExit`` or the object server's hang-up) ends the
run: the worker is killed at once and replaced, so it is free again.
Starting a worker (a fork and exec) is handed to ``offload`` (the object
server passes ``eventlet.tpool.execute``), so that a replacement never runs
in the caller's event loop.
Workers limit themselves (core size, open files, address space, no new
privileges) as defence in depth, and end when their parent is gone.

A worker says it is ready once it started (imported, probed the host, warmed
up).  Workers that die before that (an installation without zvm_core's C
extensions, a broken interpreter) would die as fast as requests start them:
after :data:`START_FAILURES` in a row the pool starts none for a back-off
(doubled each time, at most :data:`BACKOFF_MOST` seconds) and refuses every
request at once with :class:`WorkersFailing`; a worker that starts ends it.

``Pool.validate`` asks a worker for the validator's verdict on a program
without running it (the proxy's upload check), so the caller never loads the
validator itself.
"""

from __future__ import annotations

import array
import contextlib
import errno
import functools
import json
import json.encoder
import mmap
import operator
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from zvm_core.channels import READ, UNLIMITED, Quota
from zvm_core.fairshare import FairSlots
from zvm_core.limits import MAX_FDS, Limits
from zvm_core.report import (
    ACCOUNTING_FIELDS,
    CHANNEL_FIELDS,
    REPORT_FIELDS,
    Accounting,
    ChannelAccounting,
    Report,
)

KILL_GRACE = 2.0
# A worker still starting (imports, probe, warm-ups: ~1 s, more on a loaded host) has this
# long beyond a request's own time for its start: its start counted in a run's timeout got
# short runs killed as host failures.  A run's bound is then timeout + KILL_GRACE + this, the
# proxy's wait for a node (zerovm_timeout + 5 s): a node is not left running after it.
WORKER_START = 3.0
START_FAILURES = 3      # workers in a row that died as they started: the pool stops starting
BACKOFF, BACKOFF_MOST = 1.0, 60.0   # seconds it then refuses; doubled each time, capped
_GONE = object()        # a request that did not go: its worker had ended (Pool._exchange)


def _silent(worker: _Worker, wait: float) -> str:
    """Why a worker that did not answer within ``wait`` seconds was killed."""
    if worker.warming:
        return f'sandbox worker did not start within {wait + WORKER_START:g} s'
    return f'sandbox worker did not answer within {wait:g} s'


class PoolBusy(Exception):
    """Every worker is busy and the queue is full: try later (HTTP 503)."""


class WorkersFailing(PoolBusy):
    """Workers die as they start: the pool refuses at once for ``retry_after`` more
    seconds rather than start one per request.  ``first``: the first refusal of
    this back-off (a server logs that one, not one per request)."""

    def __init__(self, message: str, retry_after: float, first: bool) -> None:
        super().__init__(message)
        self.retry_after, self.first = retry_after, first


class WorkerFailed(RuntimeError):
    """A worker died or overran its time before it answered a validation, or died
    doing its warm-ups."""


@dataclass
class ChannelSpec:
    """A channel to give the guest: ``fd`` is a host descriptor the caller owns."""

    alias: str
    fd: int
    mode: int = READ
    random: bool = False
    quota: Quota = field(default_factory=Quota)
    mount: str | None = None      # a tar image: mounted read-only here (e.g. "/")
    system: bool = False          # with mount: a system image, the operator's (one that
                                  # does not mount is the host's failure, not the job's)
    notify: int | None = None     # data still arriving: ``fd`` is a ``channels.LinkWriter``
                                  # file, ``notify`` its ``LinkWaker``'s (may be shared)
    wait: float | None = None     # with ``notify``: seconds a read may wait for new data
    tail: int | None = None       # (``Pool.run_many`` only) no descriptor: a write-only
                                  # stream of which the worker keeps the last ``tail`` bytes


MAX_MESSAGE = 1 << 20
SHAPES = 64                 # run shapes (:class:`_Shapes`) a worker keeps
GATHER = 4                  # replies of ``Pool.run_many`` its caller is woken for at once
GATHER_MOST = 0.01          # seconds it waits at most for them
_LENGTH = struct.Struct('<I')     # a run's reply: its JSON part's length (then tails)
STOPPED = _LENGTH.pack(0)       # ``run_many``'s worker past its budget: the runs left not started
_ANCILLARY = socket.CMSG_SPACE(MAX_FDS * array.array('i').itemsize)


def one_shot(encoder: json.JSONEncoder) -> Callable[[object], str]:
    """``encoder.encode`` (ASCII, no indent) with json's C encoder made once:
    ``encode`` makes one per call of a list or dict (a run's request and reply, a
    node's report, a batch entry: 5.6 -> 1.0 us for a small list); the same text."""
    if json.encoder.c_make_encoder is None:     # pragma: no cover (no C accelerator)
        return encoder.encode
    made = json.encoder.c_make_encoder(
        None, encoder.default, json.encoder.encode_basestring_ascii, None,
        encoder.key_separator, encoder.item_separator, encoder.sort_keys, encoder.skipkeys,
        encoder.allow_nan)

    def encode(obj: object) -> str:
        if type(obj) is str:
            return json.encoder.encode_basestring_ascii(obj)
        return ''.join(made(obj, 0))
    return encode


_dumps = one_shot(json.JSONEncoder(separators=(',', ':'), check_circular=False))
_loads = json.JSONDecoder().raw_decode      # (value, end): what json.loads does, less
# json.dumps(obj): a run's reply, whose fields' text a caller passes on as it came
# (``_run_result`` finds them by the item separator)
_ITEM = ', '
as_json = one_shot(json.JSONEncoder(check_circular=False, separators=(_ITEM, ': ')))


def _failed(status: str, message: str, host_failure: bool = False) -> Report:
    return Report(status, None, message, validation={'state': 'ok', 'violations': []},
                  host_failure=host_failure)


def _wait(sock: socket.socket, readable: bool, deadline: float | None) -> None:
    left = None if deadline is None else max(0.0, deadline - time.monotonic())
    r, w, _ = select.select([sock] if readable else [], [] if readable else [sock], [], left)
    if not (r or w):
        raise TimeoutError


class MessageTooLarge(ValueError):
    """A message that one datagram of the worker socket cannot carry."""


def _send(sock: socket.socket, parts: list, fds: list[int] | tuple = ()) -> None:
    """Send one message, ``parts`` (bytes-like) end to end, in one ``sendmsg`` with
    its descriptors; :class:`MessageTooLarge` (nothing sent) if it cannot fit."""
    size = sum(map(len, parts))
    if size > MAX_MESSAGE:
        raise MessageTooLarge(f'{size} bytes; the worker transport carries at most '
                              f'{MAX_MESSAGE}')
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))] if fds else []
    while True:
        try:
            sock.sendmsg(parts, ancillary)
            return
        except BlockingIOError:
            _wait(sock, False, None)
        except OSError as e:        # the socket buffer is smaller than MAX_MESSAGE here
            if e.errno != errno.EMSGSIZE:
                raise
            raise MessageTooLarge(f'{size} bytes; more than the socket buffer '
                                  f'({sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)})'
                                  ) from None


def _send_json(sock: socket.socket, obj: object) -> None:
    """Send ``obj`` as JSON (a worker's ready message, a validation's verdict)."""
    _send(sock, [_dumps(obj).encode()])


def _socketpair() -> tuple[socket.socket, socket.socket]:
    """The worker's socket pair, with buffers for a MAX_MESSAGE datagram where the
    host allows (net.core.wmem_max); :func:`_send` refuses what does not fit."""
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in pair:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * MAX_MESSAGE)
    return pair


def _buffer() -> mmap.mmap:
    """A receive buffer for any message: pages are only taken as big messages use them."""
    return mmap.mmap(-1, MAX_MESSAGE)


def _recv(sock: socket.socket, buf, deadline: float | None = None, pause: float = 0.0
          ) -> tuple[memoryview | None, list[int]]:
    """The next message, a view of ``buf`` (valid until the next receive into it), and
    its descriptors; (None, []) at the end.  One ``recvmsg`` into a buffer kept
    with the socket: no peek for its size, no buffer made per message.  The
    descriptors come close-on-exec: a loader spawned meanwhile does not inherit
    them (it would hold another run's channels until its ``close_range``).  With
    ``pause``, a message not there yet is looked for again that many seconds later
    before it is waited for: what came meanwhile is read then, in one wake-up."""
    while True:
        try:
            size, ancillary, _flags, _addr = sock.recvmsg_into([buf], _ANCILLARY,
                                                               socket.MSG_CMSG_CLOEXEC)
            break
        except BlockingIOError:
            if pause > 0 and (deadline is None or time.monotonic() + pause < deadline):
                select.select([], [], [], pause)     # green where select is (a server)
                pause = 0.0
                continue
            _wait(sock, True, deadline)
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += array.array('i', data[:len(data) - len(data) % 4])
    if not size:
        return None, fds
    return memoryview(buf)[:size], fds


def _json(message: memoryview):
    """The value of a JSON message (or of a request's body)."""
    return _loads(str(message, 'utf-8'))[0]


# A report as its reply carries it: the values of its fields without their keys (a
# third of the bytes, and of the time to encode and decode), in the order of the
# dataclasses' own fields: one list, so a field added to Report, Accounting or
# ChannelAccounting travels with no change here (tests/unit/test_pool_dispatch.py
# holds the reply to ``Report.to_dict``).  ``validation`` travels as [state,
# violations], ``accounting`` as its values with ``channels`` as [alias, *counters].
_REPORT, _ACCOUNTING, _CHANNEL = REPORT_FIELDS, ACCOUNTING_FIELDS, CHANNEL_FIELDS
_VALIDATION_AT, _ACCOUNTING_AT = _REPORT.index('validation'), _REPORT.index('accounting')
_STATUS_AT, _ETAGS_AT = _REPORT.index('status'), _REPORT.index('etags')
_CHANNELS_AT = _ACCOUNTING.index('channels')
_report_values = operator.attrgetter(*_REPORT)
_accounting_values = operator.attrgetter(*_ACCOUNTING)
_channel_values = operator.attrgetter(*_CHANNEL)


def _report_fields(report: Report) -> list:
    """A report as its reply carries it (the order of ``_REPORT``)."""
    fields = list(_report_values(report))
    validation = report.validation
    fields[_VALIDATION_AT] = [validation.get('state'), list(validation.get('violations', ()))]
    acc = fields[_ACCOUNTING_AT] = list(_accounting_values(report.accounting))
    acc[_CHANNELS_AT] = [[k, *_channel_values(c)] for k, c in acc[_CHANNELS_AT].items()]
    return fields


def _report_of(fields: list) -> Report:
    """The report whose :func:`_report_fields` came (``fields`` left as they are): made
    from the values in their order, with no dict of them on the way (half the time
    of ``Report(**data)``, on the path of every ``Pool.run``)."""
    values = list(fields)
    state, violations = values[_VALIDATION_AT]
    values[_VALIDATION_AT] = {'state': state, 'violations': violations}
    acc = list(values[_ACCOUNTING_AT])
    acc[_CHANNELS_AT] = {k: ChannelAccounting(*counters) for k, *counters in acc[_CHANNELS_AT]}
    values[_ACCOUNTING_AT] = Accounting(*acc)
    return Report(*values)


def _reply(sock: socket.socket, report: Report, tails: Mapping[str, bytes] | None = None,
           ended: float | None = None) -> None:
    """Send a run's report and its tails (``Pool.run_many``'s): the length of a JSON
    part, that part, then the tails as they are.  The JSON part (ASCII, as
    ``json.dumps`` writes it) is the tails' sizes; ``ended``, when the worker sent
    it (``CLOCK_MONOTONIC``, every process's); then the report's fields in three:
    those before its etags (a list), the etags, those after (a list).  So a caller
    passes the fields' text on as it came, its etags alone read and written again
    (``RunResult.parts``).  One that cannot travel is replaced by a short report
    that says so."""
    tails = tails or {}
    fields = _report_fields(report)
    head = as_json([[[k, len(v)] for k, v in tails.items()], ended, fields[:_ETAGS_AT],
                    fields[_ETAGS_AT], fields[_ETAGS_AT + 1:]]).encode()
    try:
        _send(sock, [_LENGTH.pack(len(head)), head, *tails.values()])
    except MessageTooLarge as e:
        _reply(sock, _failed('killed', f'the report of this run is too large to return: {e}'),
               ended=ended)


def _run_result(message: memoryview) -> RunResult:
    """What :func:`_reply` sent: the tails' sizes, ``ended``, the fields before the
    etags and the etags read, the fields' text kept (``RunResult.parts``)."""
    (size,) = _LENGTH.unpack_from(message)
    end = _LENGTH.size + size
    head = str(message[_LENGTH.size:end], 'ascii')
    step = len(_ITEM)
    sizes, at = _loads(head, 1)
    ended, at = _loads(head, at + step)
    before, etags_at = _loads(head, at + step)
    etags, after_at = _loads(head, etags_at + step)
    tails = {}
    for alias, size in sizes:
        tails[alias] = bytes(message[end:end + size])
        end += size
    result = RunResult(None, tails, ended)
    result.before, result.etags = before, etags
    result.parts = (head[at + step + 1:etags_at - 1], head[after_at + step + 1:-2])
    return result


def _shape(program: str, channels: list[ChannelSpec], limits, rdtsc: str,
           notify: Mapping[int, int], engine: str | None, account: str = '',
           watched: bool = False) -> dict:
    """What the request for a run says but its argv, environment, seed and epoch:
    what a batch's nodes share (a wildcard's nodes' ``argv[0]`` is each one's name).
    A channel's ``fd`` indexes the run's descriptors (a
    ``tail`` channel has none); its fields at their defaults are left out
    (:func:`_channel_fields`); ``account`` (if any) is only for the worker's
    template cache (``worker.Templates``)."""
    fields, fd = [], 0
    for i, c in enumerate(channels):
        fields.append(_channel_fields(c, None if c.tail is not None else fd, notify.get(i)))
        fd += c.tail is None
    shape = {'program': program,
             'limits': {'memory': limits.memory, 'fuel': limits.fuel, 'timeout': limits.timeout},
             'rdtsc': rdtsc, 'engine': engine, 'channels': fields}
    if account:
        shape['account'] = account
    if watched:
        shape['watched'] = True
    return shape


def _request(program: str, channels: list[ChannelSpec], argv, env, limits, seed: int,
             epoch: int, rdtsc: str, notify: dict[int, int], engine: str | None = None) -> dict:
    """The request for one run as the worker serves it (``worker._serve_one``)."""
    return {**_shape(os.path.abspath(program), channels, limits, rdtsc, notify, engine),
            'argv': list(argv), 'env': dict(env or {}), 'seed': seed, 'epoch': epoch}


def _channel_fields(c: ChannelSpec, fd: int | None, notify: int | None) -> dict:
    """A channel's fields; those at their defaults left out: an unlimited quota
    alone (four 19-digit numbers) made most of a request's encoding."""
    fields = {'alias': c.alias, 'fd': fd, 'mode': c.mode}
    if c.random:
        fields['random'] = True
    quota = {k: v for k, v in vars(c.quota).items() if v != UNLIMITED}
    if quota:
        fields['quota'] = quota
    for key, value in (('mount', c.mount), ('system', c.system or None), ('notify', notify),
                       ('wait', c.wait), ('tail', c.tail)):
        if value is not None:
            fields[key] = value
    return fields


class PlannedChannel(NamedTuple):
    """A channel of a run's shape as the worker opens it (:func:`_plan`)."""

    alias: str
    fd: int | None          # an index in the run's descriptors (None: a ``tail``)
    mode: int
    random: bool
    quota: Quota
    mount: str | None
    notify: int | None
    wait: float | None
    tail: int | None


class Plan(NamedTuple):
    """What the worker makes of a run's shape once (:func:`_plan`)."""

    limits: Limits
    channels: tuple[PlannedChannel, ...]
    mounts: tuple[int, ...]     # the channels with a mount point (tar images), in order
    system: frozenset[str]      # the aliases of those that are system images


def _plan(shape: dict) -> Plan:
    """What the worker makes of a shape once, not per run (``worker._serve_one``):
    its limits, each channel's fields with its quota made (a quota is never
    changed by a run), and which channels are images to mount."""
    channels = tuple(PlannedChannel(
        c['alias'], c['fd'], c['mode'], c.get('random', False),
        Quota(**c['quota']) if 'quota' in c else _NO_QUOTA, c.get('mount'), c.get('notify'),
        c.get('wait'), c.get('tail')) for c in shape['channels'])
    return Plan(Limits(**shape['limits']), channels,
                tuple(i for i, c in enumerate(channels) if c.mount),
                frozenset(c['alias'] for c in shape['channels'] if c.get('system')))


_NO_QUOTA = Quota()
_DEFAULT_LIMITS = Limits()     # frozen: one for every run that gives none


def _not_a_file(mode: int) -> str:
    """What a file of ``mode`` is if not a regular file ('' if it is): a worker
    given one to validate would fail to read it."""
    if stat.S_ISREG(mode):
        return ''
    return next((name for test, name in ((stat.S_ISDIR, 'a directory'),
                                         (stat.S_ISFIFO, 'a pipe'),
                                         (stat.S_ISSOCK, 'a socket'),
                                         (stat.S_ISCHR, 'a device'),
                                         (stat.S_ISBLK, 'a device')) if test(mode)),
                'a special file')


class _Inbox:
    """A worker's requests as its socket brings them, each run's whole (the form of
    :func:`_request`) from the shapes its caller sent (:class:`_Shapes`)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, _buffer()
        self.shapes: dict[int, tuple[dict, int]] = {}   # number -> (shape, descriptors)

    def next(self) -> tuple[str, object, list[int]] | None:
        """The next request and its descriptors, None at the end: ('validate', request,
        fds), ('run', request, fds), or ('many', ([(request, its fds)...], budget), fds)."""
        message, fds = _recv(self.sock, self.buf)
        if message is None:
            return None
        kind, body = message[0], _json(message[1:])
        if kind == ord('V'):
            return 'validate', body, fds
        budget = None
        if kind == ord('M'):
            budget, body = body
        runs, at = [], 0
        for number, argv, env, seed, epoch, *shape in body:
            if shape:
                with contextlib.suppress(ValueError, TypeError):    # its run says so
                    shape[0]['plan'] = _plan(shape[0])
                self.shapes[number] = (shape[0], sum(c['fd'] is not None
                                                     for c in shape[0]['channels']))
            base, count = self.shapes[number]
            runs.append(({**base, 'argv': argv, 'env': env, 'seed': seed, 'epoch': epoch},
                         fds[at:at + count]))
            at += count
        if kind == ord('R'):        # after its channels', the descriptors that wake them
            return 'run', runs[0][0], fds
        if at != len(fds):
            raise ValueError(f'a request of {len(fds)} descriptors for runs of {at}')
        return 'many', (runs, budget), fds


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
    # the caller's promise that runs of the same ``layout`` (an ``object()`` of its own:
    # compared by identity) have channels that differ in their descriptors alone: their
    # shape's key holds that object, not their channels' fields read one by one (a
    # batch's nodes laid out by one plan: ~3 us of the object server's CPU a node)
    layout: object = None
    # the caller reads the run's written files while it runs (a streamed node): no
    # ``auto`` trial, whose start over it would see (``zvm_core.engines.TRIAL_FUEL``)
    watched: bool = False


class RunResult:
    """What :meth:`Pool.run_many` gives for one run: its report and, per channel with
    ``tail``, the bytes kept.  ``fields`` is the report as the worker sent it (its
    values in the order of ``REPORT_FIELDS``); ``parts``, the JSON text (as
    ``json.dumps`` writes it) of the fields before ``etags`` and of those after, as
    the worker wrote them (None when made here): a batch's node passes them on to
    the proxy as they came, with its ``etags`` (read) written again
    (``zerocloud.object.answer``).  ``fields``, ``data`` (``Report.to_dict``) and
    ``report`` are made when first asked for.  ``ended``: when the worker sent it
    (``time.monotonic``'s clock, the same in every process), if it did: how fast the
    worker went, whenever its caller got to read the reply."""

    def __init__(self, fields: list | None, tails: dict[str, bytes] | None = None,
                 ended: float | None = None) -> None:
        if fields is not None:
            self.fields = fields
            self.before, self.etags = fields[:_ETAGS_AT], fields[_ETAGS_AT]
        self.tails, self.ended = tails or {}, ended
        self.parts: tuple[str, str] | None = None

    @functools.cached_property
    def fields(self) -> list:
        return [*self.before, self.etags, *_loads(f'[{self.parts[1]}]')[0]]

    @property
    def status(self) -> str:
        return self.before[_STATUS_AT]

    @functools.cached_property
    def data(self) -> dict:
        return self.report.to_dict()

    @functools.cached_property
    def report(self) -> Report:
        return _report_of(self.fields)


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


class _Shapes:
    """What a worker was sent of the runs' shapes (:func:`_shape`), in the caller:
    the last :data:`SHAPES` of them, by number."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        """Forget every shape: each is sent again when next used."""
        self.numbers: dict[tuple, int] = {}     # a shape's key -> its number
        self.keys: list[tuple | None] = [None] * SHAPES
        self.next = 0

    def request(self, kind: bytes, runs: list[Run], rdtsc: str,
                notify: Mapping[int, int], budget: float | None = None,
                account: str = '') -> list[bytes]:
        """The request of ``runs``: each run [shape number, argv, env, seed, epoch],
        and the shape itself after those the first time the worker is sent it: what
        a batch's nodes share crosses once per worker, not once per node (with argv
        in the shape, a wildcard's nodes, each its name as ``argv[0]``, sent and
        planned theirs every time).  A ``b'M'`` request is ``[budget, runs]``.
        ``account``: whose runs they are, in the shape (the worker's template cache
        evicts by account: ``worker.Templates``; nothing a run sees or does)."""
        entries = []
        notified = tuple(notify.items())
        for run in runs:
            program = os.fspath(run.program)
            if not program.startswith('/'):
                program = os.path.abspath(program)
            limits = run.limits     # its fields: a frozen dataclass's hash is a Python call
            layout = run.layout     # kept in the key: its identity is never another's
            if layout is None:
                layout = tuple([(c.alias, c.mode, c.random, c.mount, c.system, c.wait, c.tail,
                                 c.quota.gets, c.quota.get_size, c.quota.puts, c.quota.put_size)
                                for c in run.channels])
            key = (program, limits.memory, limits.fuel, limits.timeout,
                   run.engine, run.watched, rdtsc, notified, layout, account)
            env = run.env if type(run.env) is dict else dict(run.env or {})
            number = self.numbers.get(key)
            if number is not None:
                entries.append([number, list(run.argv), env, run.seed, run.epoch])
                continue
            number, self.next = self.next, (self.next + 1) % SHAPES
            if self.keys[number] is not None:
                del self.numbers[self.keys[number]]
            self.keys[number], self.numbers[key] = key, number
            entries.append([number, list(run.argv), env, run.seed, run.epoch,
                            _shape(program, run.channels, run.limits, rdtsc, notify,
                                   run.engine, account, run.watched)])
        return [kind, _dumps([budget, entries] if kind == b'M' else entries).encode()]


_STARTED: list[Callable[[subprocess.Popen], None]] = []


def on_worker_start(hook: Callable[[subprocess.Popen], None]) -> None:
    """Call ``hook(process)`` with each worker process the pools of this process
    start from now on: a test suite's guard that fails a test leaving workers
    running (a Pool never closed)."""
    _STARTED.append(hook)


# Descriptors in flight (sent with SCM_RIGHTS, not received yet) count against their
# sender's user, host-wide: past the sender's RLIMIT_NOFILE its sendmsg fails
# ETOOMANYREFS, the loader's too (its limit: the hard one it inherits, loader.c prepare),
# and native runs fail.  None stays in
# flight: a request's descriptors (_send) go to a worker that has read its previous
# reply, so it is waiting to read them, and a worker that dies or is killed (past its
# deadline, or when the caller stops waiting) takes its end of the socket pair with it
# (the caller closed its copy): the kernel drops what was queued there.  A template
# child's listener (loader.c: start) is taken in by the worker when it is idle or at the
# run (supervisor.Template), and whatever a lost child sends late is drained or dropped
# by Template.close (the next run's reset, or eviction).  So at most one request per
# worker and one listener per template are in flight, and only for moments.
class _Worker:
    def __init__(self, template_bytes: int, address_space: int, warm: str) -> None:
        parent, child = _socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'zvm_core.pool.worker', '--fd', str(child.fileno()),
             '--template-bytes', str(template_bytes), '--address-space', str(address_space),
             '--warm', warm, '--parent', str(os.getpid())],
            pass_fds=[child.fileno()], stdin=subprocess.DEVNULL)
        child.close()
        for hook in _STARTED:
            hook(self.proc)
        parent.setblocking(False)
        self.sock = parent
        self.buf = _buffer()
        self.served = 0
        self.warming = True                 # its "ready" message is still to come
        self.spoke = False                  # that message came: it started
        self.death: str | None = None       # what to say of its end (Pool._death)
        self.shapes = _Shapes()

    def send(self, message: Callable[[_Shapes], list], fds: list[int]) -> None:
        """Send ``message(self.shapes)``; what it taught the worker is forgotten if it
        did not go."""
        try:
            _send(self.sock, message(self.shapes), fds)
        except BaseException:
            self.shapes.forget()
            raise

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


class _Breaker:
    """Workers that died as they started, none started since: from
    :data:`START_FAILURES` of them the pool refuses for a back-off, doubled each
    time it opens again (capped); a worker that starts closes it."""

    def __init__(self) -> None:
        self.failed = 0
        self.backoff = 0.0
        self.until = 0.0
        self.cause = ''
        self.told = False       # a refusal of this back-off was raised

    def started(self) -> None:
        self.failed, self.backoff = 0, 0.0

    def died(self, cause: str) -> None:
        self.failed += 1
        if self.failed >= START_FAILURES:
            self.backoff = min(BACKOFF_MOST, self.backoff * 2 or BACKOFF)
            self.until = time.monotonic() + self.backoff
            self.cause, self.told = cause, False

    def check(self) -> None:
        """:class:`WorkersFailing` while the back-off lasts."""
        left = self.until - time.monotonic()
        if left > 0:
            first, self.told = not self.told, True
            raise WorkersFailing(
                f'sandbox workers die as they start ({self.failed} in a row): none is '
                f'started for {self.backoff:g} s; the last: {self.cause}', left, first)


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
        self._stopped: set[_Worker] = set()     # killed, not reaped yet (``_stop``)
        self._offload = offload or (lambda fn, *args: fn(*args))
        self._breaker = _Breaker()
        self.replaced = 0
        self.closed = False

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers (idle or busy)."""
        return sorted(w.proc.pid for w in self._all)

    def run(self, program: str, channels: Iterable[ChannelSpec], **kwargs) -> Report:
        """:meth:`run_result`'s report (what ``tail`` channels kept is dropped)."""
        return self.run_result(program, channels, **kwargs).report

    def run_result(self, program: str, channels: Iterable[ChannelSpec], *,
                   argv: list[str], env: Mapping[str, str] | None = None, limits=None,
                   seed: int = 0, epoch: int = 0, rdtsc: str = 'virtualize',
                   started: Callable[[], None] | None = None, engine: str | None = None,
                   account: str = '', watched: bool = False) -> RunResult:
        """Run ``program`` (a host path) in a warm worker: its report and what its
        ``tail`` channels kept; :class:`PoolBusy` when full.

        ``started`` is called once a worker has taken the request (it may have
        waited in the queue until then, in turn with other accounts' requests).
        ``engine`` (``zvm_core.engines``) is chosen in the worker; a native run is a
        child of the program's template there.  ``watched``: the caller reads the
        written files while the run goes on (:attr:`Run.watched`).
        """
        limits = limits or _DEFAULT_LIMITS
        channels = list(channels)
        fds, notify, woken = [], {}, False
        for c in channels:
            if c.tail is None:          # (a tail has no descriptor)
                fds.append(c.fd)
            woken = woken or c.notify is not None
        if woken:
            shared: dict[int, int] = {}               # one descriptor may wake several
            for c in channels:
                if c.notify is not None and c.notify not in shared:
                    shared[c.notify] = len(fds)
                    fds.append(c.notify)
            notify = {i: shared[c.notify] for i, c in enumerate(channels)
                      if c.notify is not None}
        if len(fds) > MAX_FDS:
            raise ValueError(f'{len(fds)} descriptors for one run: at most {MAX_FDS}')
        run = Run(program, channels, argv, env, limits, seed, epoch, engine, watched=watched)
        got = self._admit(lambda shapes: shapes.request(b'R', [run], rdtsc, notify,
                                                        account=account), fds,
                          limits.timeout + KILL_GRACE, started, _run_result, account)
        return RunResult(_report_fields(got)) if isinstance(got, Report) else got

    def run_many(self, runs: list[Run], *, rdtsc: str = 'virtualize', account: str = '',
                 started: Callable[[], None] | None = None, pace: float = 0.0,
                 budget: float | None = None) -> Iterator[RunResult | None]:
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

        ``pace``: about how long a run takes (seconds), if known.  A reply that has
        not come yet, but for the last two runs', is looked for again only once up
        to :data:`GATHER` more runs could have ended (within :data:`GATHER_MOST`
        seconds): the caller wakes once for several replies, not once per run (a
        wake-up of a server's hub cost more of its CPU than the reply it read),
        while the worker runs on; the last replies are waited for as they come, so
        that the worker waits for no next request.

        ``budget``: seconds the worker may spend on the request: it starts no run
        once that much has gone since it got the request, and the iteration ends
        early, after the last run that ran.  The runs left were not started (the
        worker closed its copies of their descriptors, untouched): the caller may
        send them again.  A request holds its worker at most that long plus one run,
        however long its runs turn out to take (``zerocloud.object.batch``: Chunks).
        """
        fds = []        # each run's channels' descriptors, in order (a tail has none)
        for run in runs:
            for c in run.channels:
                if c.notify is not None:
                    raise ValueError('run_many: a channel with data still arriving (notify) '
                                     'needs Pool.run')
                if c.tail is None:
                    fds.append(c.fd)
        if len(fds) > MAX_FDS:
            raise ValueError(f'{len(fds)} descriptors for one request: at most {MAX_FDS}')
        with self._worker(started, account) as worker:
            yield from self._exchange_many(worker, fds, runs, rdtsc, pace, budget, account)

    def _exchange_many(self, worker: _Worker, fds: list[int], runs: list[Run], rdtsc: str,
                       pace: float = 0.0, budget: float | None = None, account: str = ''
                       ) -> Iterator[RunResult | None]:
        """The worker's reply to each of ``runs`` (see :meth:`run_many`)."""
        done = 0
        try:
            first = self._started(worker, runs[0].limits.timeout + KILL_GRACE)
            try:
                worker.send(lambda shapes: shapes.request(b'M', runs, rdtsc, {}, budget,
                                                          account), fds)
            except MessageTooLarge as e:
                failed = _failed('fault', f'the request is too large: {e}')
                yield RunResult(_report_fields(failed))
                done += 1
                yield from (None for _ in runs[1:])
                return
            last = len(runs) - 1
            for i, run in enumerate(runs):
                deadline = first if i == 0 else time.monotonic() + run.limits.timeout + KILL_GRACE
                pause = min(pace * min(GATHER, max(last - i - 1, 0)), GATHER_MOST)
                reply, extra = _recv(worker.sock, worker.buf, deadline, pause)
                for f in extra:
                    os.close(f)
                if reply is None:
                    break
                if reply == STOPPED:        # past its budget: the runs left not started
                    return
                done += 1       # not in served: a chunk's worker may die after some replies
                yield _run_result(reply)
            else:
                return
            message = self._death(worker)
        except TimeoutError:
            self._stop(worker)
            message = _silent(worker, runs[done].limits.timeout + KILL_GRACE)
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise
            message = self._death(worker)
        except BaseException:       # the caller stopped waiting: end the runs
            self._stop(worker)
            raise
        yield RunResult(_report_fields(_failed('killed', message, host_failure=True)))
        yield from (None for _ in runs[done + 1:])

    def validate(self, fd: int, *, rdtsc: str = 'virtualize',
                 timeout: float = 120.0) -> tuple[bool, str, str]:
        """(valid, first reason, note) of the program open as ``fd``, checked in a
        worker as ``zvm validate`` does; the note ('' if none) is ``zvm validate``'s
        second line on a valid program holding instructions of extensions the
        sandbox's CPU lacks (``prepare.absent_note``).  :class:`PoolBusy` when full,
        :class:`WorkerFailed` when no verdict came within ``timeout`` seconds.  Not a
        regular file (a directory, a pipe...) is invalid, said here: a worker could
        not read it."""
        kind = _not_a_file(os.fstat(fd).st_mode)
        if kind:
            return False, f'the program is {kind}, not a file', ''
        reply = self._admit(lambda _: [b'V', _dumps({'rdtsc': rdtsc}).encode()], [fd],
                            timeout, None, _json)
        if isinstance(reply, Report):
            raise WorkerFailed(reply.message)
        return bool(reply['valid']), str(reply['reason']), str(reply.get('note', ''))

    def _admit(self, message: Callable[[_Shapes], list], fds: list[int], wait: float,
               started: Callable[[], None] | None, parse: Callable[[memoryview], object],
               account: str = ''):
        """Queue a request for a worker (bounded), exchange it (``message(the worker's shapes)``),
        and put the worker back.  A worker is not asked whether it is alive (a
        ``waitpid`` per run): one that ended while idle refuses the request, which
        goes to its successor instead."""
        worker: _Worker | None = self._take(account)
        served = worker.served
        try:
            if started is not None:
                started()
            reply = self._exchange(worker, message, fds, wait, parse, _GONE)
            if reply is _GONE:
                dead, worker = worker, None
                worker = self._successor(dead)
                served = worker.served
                reply = self._exchange(worker, message, fds, wait, parse)
            return reply
        finally:
            self._put_back(worker, served, account)

    @contextlib.contextmanager
    def _worker(self, started: Callable[[], None] | None, account: str) -> Iterator[_Worker]:
        """A worker for one request, once admitted (bounded: :class:`PoolBusy`) and its
        turn came; put back (or replaced, if it died) afterwards."""
        worker = self._take(account)
        if worker.proc.poll() is not None:      # died idle (no request to refuse here)
            try:
                worker = self._successor(worker)
            except BaseException:
                self._put_back(None, 0, account)
                raise
        served = worker.served
        try:
            if started is not None:
                started()
            yield worker
        finally:
            self._put_back(worker, served, account)

    def _take(self, account: str) -> _Worker:
        """The idle worker for a request, once admitted (bounded: :class:`PoolBusy`)
        and its account's turn came; it holds a slot until :meth:`_put_back`."""
        with self._lock:
            self._breaker.check()
            if self._waiting >= self.queue + self.size:
                raise PoolBusy(f'{self.size} running and {self.queue} waiting')
            self._waiting += 1
        try:
            self._slots.acquire(account)
            try:
                with self._lock:
                    self._breaker.check()       # it opened while this request waited
                worker = self._idle.pop(0)      # idle longest: done with its clean-up
                if worker in self._stopped:
                    worker = self._successor(worker)    # its replacement was cut
            except BaseException:
                self._slots.release(account)
                raise
        except BaseException:
            with self._lock:
                self._waiting -= 1
            raise
        return worker

    def _put_back(self, worker: _Worker | None, served: int, account: str) -> None:
        """Give back what :meth:`_take` took: the worker (a successor if it died; one
        that died as it started is replaced when next taken, through the breaker;
        None: it is back already) and its slot."""
        try:
            if worker is None:
                pass
            elif worker not in self._stopped and (worker.served > served
                                                  or worker.proc.poll() is None):
                self._idle.append(worker)       # one that answered is alive: no wait()
            elif worker not in self._stopped and not worker.spoke and \
                    worker.proc.returncode >= 0:
                self._idle.append(worker)       # died as it started (:meth:`_take`)
            else:
                self._idle.append(self._successor(worker))
        finally:
            try:
                self._slots.release(account)
            finally:
                with self._lock:
                    self._waiting -= 1

    def _successor(self, dead: _Worker) -> _Worker:
        """A new worker for ``dead``'s place.  If starting it is cut short (the
        caller's green thread killed: its client hung up) the dead worker goes back
        to the idle list, to be replaced when next taken: a slot keeps its worker."""
        try:
            if not dead.spoke and dead not in self._stopped:
                self._death(dead)       # it died as it started: counted
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
        self._stopped.discard(worker)
        self._all.discard(worker)
        new = _Worker(*self._args)
        self._all.add(new)
        return new

    def _exchange(self, worker: _Worker, message: Callable[[_Shapes], list], fds: list[int],
                  wait: float, parse: Callable[[memoryview], object],
                  gone: object = None):
        """``parse`` of the worker's reply to ``message(worker.shapes)``, or a failed
        :class:`Report`; with ``gone``, that if the request did not go because the
        worker had ended (its socket closed: it died idle)."""
        try:
            deadline = self._started(worker, wait)
            try:
                worker.send(message, fds)
            except MessageTooLarge as e:
                return _failed('fault', 'the request (arguments, environment, channel names) '
                                        f'is too large: {e}')
            except OSError as e:
                if gone is None or e.errno not in (errno.EPIPE, errno.ECONNRESET):
                    raise
                return gone
            _wait(worker.sock, True, deadline)     # a reply is never there at once
            reply, extra = _recv(worker.sock, worker.buf, deadline)
        except TimeoutError:
            self._stop(worker)
            return _failed('killed', _silent(worker, wait), host_failure=True)
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise
            reply, extra = None, []
        except BaseException:       # the caller stopped waiting (its client went away):
            self._stop(worker)      # end the run; ``run`` replaces the worker
            raise
        for f in extra:
            os.close(f)
        if reply is None:
            return _failed('killed', self._death(worker), host_failure=True)
        worker.served += 1
        return parse(reply)

    def _stop(self, worker: _Worker) -> None:
        """Kill ``worker`` without waiting for its end (it took 3-50 ms, a server's hub
        blocked meanwhile): ``_worker`` replaces it, and ``_restart`` reaps it, through
        ``offload``."""
        worker.proc.kill()
        self._stopped.add(worker)

    def _death(self, worker: _Worker) -> str:
        """What to say of a worker that closed its socket (it is ending): its exit
        status, waited for through ``offload`` (off a server's hub: its end may take
        milliseconds), once.  One that exited before it said it was ready (not
        killed) died starting (an installation without zvm_core's C extensions, a
        broken interpreter): every worker will (counted: :class:`_Breaker`), and
        what to fix is in the traceback it wrote on this process's standard error."""
        if worker.death is None:
            status = self._offload(worker.proc.wait)
            if worker.spoke or status < 0:
                worker.death = f'sandbox worker died ({_exit_text(status)})'
            else:
                worker.death = (f'sandbox worker died as it started ({_exit_text(status)}): '
                                f'its error is on the standard error of process '
                                f'{os.getpid()} (a server: its log)')
                self._breaker.died(worker.death)
        return worker.death

    def _started(self, worker: _Worker, wait: float) -> float:
        """Wait for ``worker`` to have started (WORKER_START beyond ``wait``); until
        when a request of ``wait`` seconds then waits for its answer."""
        bound = time.monotonic() + wait + WORKER_START
        self._ready(worker, bound)
        return min(time.monotonic() + wait, bound)

    def _ready(self, worker: _Worker, deadline: float | None) -> None:
        """Wait for the worker to have started: imports, probe, warm-ups
        (TimeoutError past ``deadline``)."""
        if worker.warming:
            ready, _ = _recv(worker.sock, worker.buf, deadline)
            worker.warming = False
            worker.spoke = ready is not None
            if worker.spoke:
                self._breaker.started()

    def wait_warm(self, timeout: float) -> None:
        """Block until every idle worker has started and done its warm-ups
        (TimeoutError after ``timeout`` seconds, :class:`WorkerFailed` if one died
        before); for a server that should start warm."""
        deadline = time.monotonic() + timeout
        for worker in list(self._idle):
            warming = worker.warming
            self._ready(worker, deadline)
            if warming and not worker.spoke:
                raise WorkerFailed(self._death(worker))

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

"""The pool's worker side: a process that keeps template machines and serves runs.

Started by the caller side (``zvm_core.pool``) as ``python -m
zvm_core.pool.worker``; it limits itself (core size, open files, address
space, no new privileges), warms up, then serves requests from its socket
until the caller closes it (or its parent is gone): each request runs on
the engine it asks for, an emulated template machine reset after the reply,
or a native guest forked from the program's template process
(``zvm_core.engines.native.warm``).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import dataclasses
import gc
import json
import os
import resource
import select
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable

from zvm_core import engines
from zvm_core.channels import (
    READ,
    WRITE,
    Channel,
    FdBacking,
    StreamBacking,
    TailBacking,
)
from zvm_core.engines.native import _fastcall
from zvm_core.executor import DEFAULT_FUEL, Limits, SetupError
from zvm_core.limits import MAX_FDS
from zvm_core.pool import (
    KILL_GRACE,
    STOPPED,
    ChannelSpec,
    WarmUp,
    _failed,
    _Inbox,
    _plan,
    _reply,
    _request,
    _send,
    _send_json,
)
from zvm_core.prepare import Rejected, absent_note, explained, prepare
from zvm_core.report import Report
from zvm_core.validator import Policy, within

PARENT_CHECK = 1.0      # seconds between a worker's looks at its parent
IDLE_WAIT = 10.0        # seconds an idle worker waits for a template's steps at most
PR_SET_NO_NEW_PRIVS = 38
PR_SET_THP_DISABLE = 41
PREPARED = 64               # programs whose engine choice a worker keeps
FDS_RESERVED = 32           # descriptors a run opens besides its request's (a probe's loader...)
# (engine asked, fuel) -> (engine, engine_reason, until when: engines.choice_lasts)
_CHOSEN: dict[tuple, tuple[str, str, bool, float]] = {}


def _file_key(path: str) -> tuple:
    """The program file as it is now: a changed file is another program.  One
    ``stat`` (its device and inode name it whatever the path: ``realpath`` cost
    ten times more, twice per warm start)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def descriptor_budget() -> int:
    """Descriptors the native templates a worker keeps may hold together: what its
    open-files limit leaves once a request's (``MAX_FDS``) and a run's own are open."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] - MAX_FDS - FDS_RESERVED


def _fair_victim(keys: Iterable[tuple], holder: dict[tuple, tuple[str, bool]],
                 weight: Callable[[tuple], int], spare: tuple) -> tuple:
    """Which of ``keys`` (least recently used first) to drop: the least recently used
    of the account (``holder[key]``: its account, and whether another used it too)
    that holds the most ``weight(key)``, one held by that account alone first; never
    ``spare`` (the newest).  So one account that runs many programs makes room from
    its own entries, not from the other accounts'; with one account, this is LRU."""
    keys = [key for key in keys if key != spare]
    held: collections.Counter[str] = collections.Counter()
    for key in keys:
        held[holder[key][0]] += weight(key)
    top = held.most_common(1)[0][0]
    mine = [key for key in keys if holder[key][0] == top]
    return next((key for key in mine if not holder[key][1]), mine[0])


def _hold(holders: dict, key: tuple, account: str) -> None:
    """``account`` ran the entry under ``key``: it holds it now (shared once two
    accounts ran it: :func:`_fair_victim` takes those last)."""
    was = holders.get(key)
    if was is None:
        holders[key] = (account, False)
    elif was[0] != account:     # (a warm start of the same account: nothing to write)
        holders[key] = (account, True)


class Templates:
    """Machines by (program file, memory, policy), bounded by their memory:
    emulated machines, and native template processes (``Warm``), also bounded by
    the descriptors those hold (:func:`descriptor_budget`): any number of programs
    run in one worker, templates closed to make room.  The one closed is the least
    recently used of the account holding the most (:func:`_fair_victim`; a
    template is held by the account of its last run): one account cycling through
    many programs evicts its own, and another's next run still starts warm."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.descriptors = descriptor_budget()
        self._machines: collections.OrderedDict = collections.OrderedDict()
        self._prepared: collections.OrderedDict = collections.OrderedDict()
        # key -> (account of its last run, whether another account ran it), of each
        self._holders: dict[tuple, tuple[str, bool]] = {}
        self._preparers: dict[tuple, tuple[str, bool]] = {}
        self._ran: dict = {}        # native templates settled since the worker was idle
        self._costs: dict[int, int] = {}    # id(template) -> its cost when last charged
        self._held = 0                      # their sum: what ``_evict`` weighs
        # (key, account, machine) of the last ``_kept``, while its template is the most
        # recently used: a batch's next node of it has nothing to reorder or record
        self._last: tuple | None = None

    def get(self, path: str, memory: int, rdtsc: str, deadline: float | None = None,
            account: str = '', file: tuple | None = None):
        """The template machine for the program (Rejected if it is not valid; its
        validation ends by ``deadline``: ``validator.within``, entered only to make one)
        for a run of ``account``; ``file``: its :func:`_file_key`, if the caller has it."""
        key = (*(file or _file_key(path)), memory, rdtsc)

        def make():
            from zvm_core.engines.emulated.machine import Machine
            with within(deadline):
                p = prepare(path, Policy(rdtsc=rdtsc), engine='emulated')
            machine = Machine(p.program, p.verdict, Limits(memory=memory), p.policy,
                              snapshots=True)
            machine.verdict = p.verdict
            return machine
        machine = self._kept(key, make, account)
        return machine, machine.verdict

    def prepared(self, path: str, engine: str | None, rdtsc: str, file: tuple | None = None,
                 deadline: float | None = None, account: str = ''):
        """The program prepared for ``engine`` (``auto`` or ``native``), kept while the
        file is unchanged: which engine ``auto`` picks is decided once per program (again
        after a busy host's probe: ``engines.choice_lasts``).
        ``file``: its :func:`_file_key`, if the caller has it; ``deadline``: a
        validation ends by then (``validator.within``; a kept one is not validated,
        and so a warm start does not enter that block); ``account``: the run's."""
        key = (*(file or _file_key(path)), engine, rdtsc)
        got = self._prepared.pop(key, None)
        # the coarse clock: an expiry seen a few ms late changes nothing, and it is no
        # system call while a batch's nodes carry the guest's flags (fastcall.c)
        if got is None or got[1] <= _fastcall.coarse():
            with within(deadline):
                got = (prepare(path, Policy(rdtsc=rdtsc), engine=engine),
                       engines.choice_lasts())
        self._prepared[key] = got
        _hold(self._preparers, key, account)
        while len(self._prepared) > PREPARED:
            victim = _fair_victim(self._prepared, self._preparers, lambda _: 1, key)
            del self._prepared[victim], self._preparers[victim]
        return got[0]

    def native(self, path: str, prepared, memory: int, file: tuple | None = None,
               account: str = ''):
        """The native template process (``Warm``) for a program prepared natively,
        for a run of ``account``."""
        def make():
            from zvm_core.engines.native.warm import Warm
            return Warm(prepared.program, prepared.verdict, memory, prepared.tsc)
        return self._kept(native_key(file or _file_key(path), memory, prepared), make,
                          account)

    def kept(self, key: tuple):
        """The template under ``key``, if there is one (none made, none reordered)."""
        return self._machines.get(key)

    def _kept(self, key: tuple, make, account: str):
        """The template under ``key``, made by ``make()`` (charged, others evicted to
        make room) if there is none; the most recently used now, held by ``account``,
        either way.  The last one asked for again, by the same account (a batch's next
        node, of either engine), has nothing to reorder or record."""
        last = self._last
        if last is not None and last[0] == key and last[1] == account:
            return last[2]
        machine = self._machines.pop(key, None)
        if machine is not None:         # kept: its cost unchanged
            self._machines[key] = machine
            _hold(self._holders, key, account)
        else:
            machine = self._machines[key] = make()
            _hold(self._holders, key, account)
            self._charge(machine)
            self._evict()
        self._last = (key, account, machine)
        return machine

    def close(self) -> None:
        """Close every template (a native one is a process: killed and reaped)."""
        self._last = None
        while self._machines:
            self._machines.popitem()[1].close()
        self._costs, self._held, self._holders = {}, 0, {}

    def _cost(self, machine) -> int:
        """Host memory an idle template holds: its pages (measured after its last
        reset), its snapshots, and an estimate of its translated code."""
        snapshots = machine.snapshots.size if machine.snapshots is not None else 0
        return getattr(machine, 'charge', machine.image_size) + snapshots + (4 << 20)

    def settle(self, machine) -> None:
        """A template was reset after a run: charge it what it still holds (none, if
        it was closed since: a batch's later run evicted it, ``_serve_many``)."""
        if id(machine) not in self._costs:
            return
        machine.charge = machine.held()
        self._ran[id(machine)] = machine
        self._charge(machine)
        self._evict()

    def idle(self, sock: socket.socket | None = None) -> None:
        """Before the worker waits for its next request: the native templates that
        ran since take in their next children and reap their runs' (a batch's nodes
        leave that to the end), each step once what it waits for is ready, until a
        request comes on ``sock``: the rest is done after its reply (a run does not
        wait behind a process dying, nor a child it does not start in). Steps found
        ready in the same wait as the request are done first: serving the request
        first was measured to leave the killed child still dying when the next fork
        looks at it (one more waitid a start, p50 unchanged)."""
        while self._ran:
            waits = {fd: machine for machine in self._ran.values()
                     for fd in machine.waiting()}
            if not waits:
                break
            poll = select.poll()
            for fd in waits:
                poll.register(fd, select.POLLIN)
            if sock is not None:
                poll.register(sock, select.POLLIN)
            ready = poll.poll(IDLE_WAIT * 1000)
            if not ready:       # the steps themselves, with their own timeouts
                for machine in self._ran.values():
                    machine.idle()
                break
            for fd, _events in ready:
                if sock is not None and fd == sock.fileno():
                    return
                waits[fd].tend(fd)
        self._ran = {}

    def _charge(self, machine) -> None:
        """Weigh ``machine`` again (new, or settled after a run): the others' costs
        are unchanged, so their sum is kept, not made again at each run."""
        cost = self._cost(machine)
        self._held += cost - self._costs.get(id(machine), 0)
        self._costs[id(machine)] = cost

    def _evict(self) -> None:
        """Close templates (:func:`_fair_victim`'s) until those left fit the budget
        and the descriptors; never the newest."""
        machines, costs = self._machines, self._costs
        while len(machines) > 1 and self._held > self.budget:
            self._close(_fair_victim(machines, self._holders,
                                     lambda key: costs.get(id(machines[key]), 0),
                                     next(reversed(machines))))
        if len(machines) < 2:
            return
        fds = {key: m.descriptors() for key, m in machines.items()}
        over = sum(fds.values()) - self.descriptors
        while over > 0 and len(machines) > 1:
            victim = _fair_victim(machines, self._holders, fds.__getitem__,
                                  next(reversed(machines)))
            over -= fds.pop(victim)
            self._close(victim)

    def _close(self, key: tuple) -> None:
        """Drop a template: a native one's process, children and descriptors go too."""
        machine = self._machines.pop(key)
        self._last = None
        del self._holders[key]
        self._ran.pop(id(machine), None)
        self._held -= self._costs.pop(id(machine), 0)
        machine.close()


def _warm_up(warm: WarmUp, templates: Templates) -> None:
    files = [open(os.devnull, 'rb'), open(os.devnull, 'wb'), open(os.devnull, 'wb')]
    files += [open(path, 'rb') for path in warm.images]
    channels = [ChannelSpec('/dev/stdin', files[0].fileno(), READ),
                ChannelSpec('/dev/stdout', files[1].fileno(), WRITE),
                ChannelSpec('/dev/stderr', files[2].fileno(), WRITE)]
    channels += [ChannelSpec(f'/dev/image{i}', f.fileno(), READ, random=True, mount='/',
                             system=True)
                 for i, f in enumerate(files[3:])]
    try:
        req = _request(warm.program, channels, warm.argv, {}, Limits(memory=warm.memory), 0,
                       0, 'virtualize', {})
        _, machine = _serve_one(req, [c.fd for c in channels], templates)
        if machine is not None:
            machine.reset()
            templates.settle(machine)
    finally:
        for f in files:
            f.close()


def _backing(alias: str, fd: int, notify: int | None, wait: float | None, tail: int | None,
             fds: list[int], tails: dict[str, TailBacking] | None):
    """The host side of one channel of a request (a ``tail`` one: kept in ``tails``)."""
    if tail is not None and tails is not None:
        tails[alias] = TailBacking(tail)
        return tails[alias]
    if notify is None:
        return FdBacking(fds[fd], owned=False)
    return StreamBacking(fds[fd], fds[notify], alias, wait=wait)


def _serve_one(req: dict, fds: list[int], templates: Templates,
               tails: dict[str, TailBacking] | None = None, ahead: int = 0,
               ready: dict | None = None, probe: bool = True):
    """Run one request: (report, the machine to clean afterwards or None);
    ``tails``: where its ``tail`` channels are kept; ``ahead``: the runs of its
    template that follow at once (the batch's next nodes: :func:`_following`);
    ``ready``: what the earlier runs of the same ``run_many`` request found of their
    programs (``_serve_many``); ``probe``: it may record a start-up snapshot (not a
    batch's node: its key, its object's LOCAL_* variables, comes once; its copy would
    only evict the kept ones: Snapshots.begin, under both engines).  ``auto``'s native
    run is tried emulated first where its channels let it start over
    (``engines.TRIAL_FUEL``, :func:`_start_points`)."""
    limits, plan, mounts, system = req.get('plan') or _plan(req)
    began = _fastcall.coarse()      # (the vDSO's: no rdtsc, no system call a batch's node)
    channels = [Channel(alias, FdBacking(fds[fd], owned=False) if notify is None and tail is None
                        else _backing(alias, fd, notify, wait, tail, fds, tails), mode,
                        random=random, quota=quota)
                for alias, fd, mode, random, quota, _mount, notify, wait, tail in plan]
    try:
        engine, reason, trial, _until = _chosen(req, limits)
    except engines.EngineError as e:    # the request's fault: a 400 at the proxy
        return Report('refused', None, str(e)), None
    image = None
    if mounts:
        from zvm_core.syscalls.fs import ImageError, ImageUnreadable, mounted
        try:        # in order: a later image wins where paths meet
            image = mounted([(channels[i].backing, plan[i].mount, channels[i].alias)
                             for i in mounts])
        except ImageUnreadable as e:    # the host's I/O: another host may run it
            return Report('killed', None, str(e), host_failure=True), None
        except ImageError as e:     # the request's image: nothing ran (a 400 at the proxy)
            if e.label in system:       # the operator's: another host may have it whole
                name = e.label.removeprefix('/dev/')
                return Report('killed', None, f'the system image {name} of this server is '
                                          f'broken: {e}', host_failure=True), None
            return Report('refused', None, str(e)), None
    # a program's validation is part of its run's time: one that takes longer ends as
    # the run's timeout, not as a worker killed for not answering (zvm_core.validator);
    # the run has what is left (_left)
    validated_by = began + limits.timeout
    account = req.get('account', '')    # whose templates it uses: for their eviction alone
    run = (req, templates, limits, began, image, validated_by, account, probe)
    if engine == 'native':
        try:
            file, prepared = _prepared(req, templates, ready, validated_by)
        except Rejected as e:
            return e.report, None
        if prepared.engine == 'native':     # a child of the program's template per run
            points = (_start_points(channels, mounts) if _may_try(req, trial, prepared)
                      else None)
            machine = None
            if points is not None:
                try:        # (its machine in this process: what native would not need)
                    report, machine = _emulated(run, channels, engines.TRIAL_REASON,
                                                engines.TRIAL_FUEL, file)
                except (MemoryError, OSError):      # natively, as it found its files
                    channels = _started_over(channels, points)
            if machine is not None:     # else the trial could not start: natively
                if not machine.ran_out():
                    return report, machine
                machine.reset()
                templates.settle(machine)
                channels = _started_over(channels, points)
            try:
                warm = templates.native(req['program'], prepared, limits.memory, file,
                                        account)
                left = _left(limits, began)
                report = warm.run(channels, req['argv'], req['env'], req['seed'],
                                  req['epoch'], left, image, ahead, probe=probe)
                return _noted(explained(report, prepared.program, prepared.verdict),
                              limits, left), warm
            except SetupError as e:
                return Report(e.status, None, str(e), engine='native'), None
        reason = prepared.reason    # auto runs it emulated (zvm_core.prepare): its template
    return _emulated(run, channels, reason, None, _file(req['program'], ready))


def _emulated(run: tuple, channels: list[Channel], reason: str, fuel: int | None,
              file: tuple):
    """(report, machine) of a run on the program's emulated template (``run``: what
    :func:`_serve_one` found of the request); ``fuel``: a trial's budget, in place of
    the request's, after which :meth:`Machine.ran_out` says it did not end."""
    req, templates, limits, began, image, validated_by, account, probe = run
    try:
        machine, verdict = templates.get(req['program'], limits.memory, req['rdtsc'],
                                         validated_by, account, file)
    except Rejected as e:
        return e.report, None
    except SetupError as e:
        return Report(e.status, None, str(e)), None
    left = _left(limits, began)
    try:
        report = _noted(machine.run(channels, req['argv'], req['env'], req['seed'], req['epoch'],
                                    limits=left if fuel is None else
                                    dataclasses.replace(left, fuel=fuel),
                                    image=image, probe=probe),
                        limits, left)
    except SetupError as e:
        report = Report(e.status, None, str(e))
    report = explained(report, machine.program, verdict)
    report.engine_reason = reason
    return report, machine


def _may_try(req: dict, trial: bool, prepared) -> bool:
    """Whether ``auto``'s trial is for a run of ``prepared``, its channels aside
    (:func:`_start_points`): ``trial`` (:func:`_chosen`), a caller that does not read
    its outputs as they grow, a small program (``engines.tried``).  One rule for the
    run and for what its batch asks ahead of it (:func:`_template_key`)."""
    return trial and not req.get('watched') and engines.tried(prepared.program)


def _start_points(channels: list[Channel], mounts: tuple[int, ...] = ()
                  ) -> list[tuple[int, int, int | None]] | None:
    """Where each file of ``channels`` stands if a run on them is tried and can start
    over as if it had not run (:func:`_started_over`), else None: its descriptor,
    offset (which a sequential channel reads or writes from) and, written, the size to
    cut it back to.  Each channel reads a file, writes one past its old content, is
    /dev/null or a batch's tail; none is a stream whose bytes went, or came, once; the
    files it may read (not the images, ``mounts``) hold at most ``TRIAL_INPUT``."""
    points, inputs = [], 0
    for i, ch in enumerate(channels):
        backing = ch.backing
        if type(backing) is TailBacking:
            continue
        if type(backing) is not FdBacking or not backing.direct:
            return None
        if backing.seekable:
            size = backing.opened_size
            if ch.mode & READ and i not in mounts:
                inputs += size
                if inputs > engines.TRIAL_INPUT:
                    return None
            offset = os.lseek(backing.fd, 0, os.SEEK_CUR)
            if ch.mode & WRITE and size and (ch.random or offset < size):
                return None         # it may write over what the file held
            points.append((backing.fd, offset, size if ch.mode & WRITE else None))
    return points


def _started_over(channels: list[Channel],
                  points: list[tuple[int, int, int | None]]) -> list[Channel]:
    """``channels`` as a run found them (``points``: :func:`_start_points`): their
    written files cut back, every file's offset back, tails cleared, counters and
    digests fresh."""
    for fd, offset, size in points:
        if size is not None:
            os.ftruncate(fd, size)
        os.lseek(fd, offset, os.SEEK_SET)
    for ch in channels:
        if type(ch.backing) is TailBacking:
            ch.backing.data.clear()
    return [Channel(ch.alias, ch.backing, ch.mode, random=ch.random, quota=ch.quota)
            for ch in channels]


def _chosen(req: dict, limits: Limits) -> tuple[str, str, bool, float]:
    """The engine a run uses, why (``engines.unavailable_reason``), whether a native
    run is ``auto``'s, tried emulated first (``engines.TRIAL_FUEL``) where it can be,
    and until when that holds: what this host can run, asked again only after a busy
    host's probe; EngineError for an engine the request cannot have."""
    choice = (req.get('engine'), limits.fuel != DEFAULT_FUEL)
    chosen = _CHOSEN.get(choice)
    if chosen is None or chosen[3] <= _fastcall.coarse():
        chosen = _CHOSEN[choice] = (engines.choose(choice[0], fuel=choice[1]),
                                    engines.unavailable_reason(choice[0], fuel=choice[1]),
                                    engines.requested(choice[0]) == 'auto',
                                    engines.choice_lasts())
    return chosen


def _prepared(req: dict, templates: Templates, ready: dict | None,
              validated_by: float | None) -> tuple:
    """(file key, ``Prepared``) of a run's program, natively chosen: what an earlier run
    of the same ``run_many`` request found (``ready``), else ``Templates.prepared``
    (Rejected if invalid)."""
    key = (req['program'], req.get('engine'), req['rdtsc'])
    known = ready.get(key) if ready is not None else None
    if known is None:
        file = _file(req['program'], ready)
        known = file, templates.prepared(req['program'], req.get('engine'), req['rdtsc'],
                                         file, validated_by, req.get('account', ''))
        if ready is not None:
            ready[key] = known
    return known


def _file(path: str, ready: dict | None) -> tuple:
    """The program file's :func:`_file_key`: the one an earlier run of the same
    ``run_many`` request found (``ready``), or looked at now.  An emulated batch's
    node took a ``stat`` of its own, as a native one did before ``ready``."""
    if ready is None:
        return _file_key(path)
    file = ready.get(path)
    if file is None:
        file = ready[path] = _file_key(path)
    return file


def native_key(file: tuple, memory: int, prepared) -> tuple:
    """The native template of a program prepared natively (``Templates.native``): runs
    whose engines (none, ``auto``, ``native``) differ share it."""
    return ('native', *file, memory, prepared.policy.rdtsc, prepared.tsc)


def _template_key(req: dict, fds: list[int], templates: Templates,
                  ready: dict) -> tuple | None:
    """The native template a run will use (:func:`native_key`), None if none (it runs
    emulated, is tried emulated first, or fails before its template: the run says why
    when it comes).  A tried run that does not end within its trial runs natively
    without children asked ahead for it; one over larger inputs than a trial's
    (``fds``: its descriptors) is not tried (:func:`_start_points`)."""
    try:
        plan = req.get('plan') or _plan(req)
        limits = plan.limits
        engine, _reason, trial, _until = _chosen(req, limits)
        if engine != 'native':
            return None
        file, prepared = _prepared(req, templates, ready, _fastcall.coarse() + limits.timeout)
        if prepared.engine != 'native' or (
                _may_try(req, trial, prepared) and all(c.notify is None for c in plan.channels)
                and _inputs(plan, fds) <= engines.TRIAL_INPUT):
            return None
    except Exception:       # noqa: BLE001 -- its run meets it again, and reports it
        return None
    return native_key(file, limits.memory, prepared)


def _inputs(plan, fds: list[int]) -> int:
    """What the files a run may read hold (its images not counted), as
    :func:`_start_points` counts them: a ``stat`` each, before the run's own."""
    total = 0
    for c in plan.channels:
        if c.mode & READ and c.fd is not None and not c.mount:
            st = os.fstat(fds[c.fd])
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def _left(limits: Limits, began: float) -> Limits:
    """The run's limits with what mounting its images and validating its program took
    since ``began`` out of its timeout, once that is over a quarter of KILL_GRACE: the
    caller kills a worker that has not answered at timeout + KILL_GRACE, and a program
    that took most of its timeout to validate, then spun, ended ``killed``, the host's
    failure (the proxy ran it on two more servers, each validating it again).  The
    coarse clock's ticks (ms) are nothing beside that quarter (0.5 s)."""
    spent = _fastcall.coarse() - began
    if spent <= KILL_GRACE / 4:
        return limits
    return dataclasses.replace(limits, timeout=max(limits.timeout - spent, 1e-3))


def _noted(report: Report, limits: Limits, left: Limits) -> Report:
    """A run's report; a timeout's message says when the run had less (``left``)."""
    if report.status == 'timeout' and left is not limits:
        report.message += (f' (the run had what mounting and validation left of the '
                           f'{limits.timeout:g} s timeout)')
    return report


def _serve_many(sock: socket.socket, runs: list[tuple[dict, list[int]]],
                templates: Templates, budget: float | None = None) -> None:
    """Serve ``Pool.run_many``'s request (each run and its descriptors): each run in
    turn, its reply (report and kept tails) sent as it ends; its descriptors closed
    once it ended.  The templates the runs used are weighed again (``settle``) once,
    at the end: what a native one holds does not change with its runs, and an
    emulated one's growth is seen a chunk later.  A program is looked at (its file's
    ``stat``, its engine and verdict: ``Templates.prepared``) once for the runs that
    name it, before the first run (each run's template counts the runs after it:
    :func:`_following`): a batch's chunk runs one program, and those were two system
    calls of each node's (the clock read under the hold, the ``stat``).  Once
    ``budget`` seconds have gone since the request came, no other run starts: the
    worker says so (``STOPPED``) and closes the descriptors of the runs left, which
    its caller may send again: a chunk whose nodes turned slow holds its worker, and
    its account's turn, that long plus one run, not a timeout per node.  At the end
    each template used keeps the next run's child alone (``trim``): the children
    asked for runs not started, failed before their child, or resumed from a
    snapshot's template, are killed; so are those of a run's template whose run
    raised (it may have asked them: ``Template.take``)."""
    done = 0
    used: dict[int, object] = {}        # id -> template reset since the request came
    # program -> file key (_file); (program, engine, rdtsc) -> (file key, prepared)
    ready: dict = {}
    end = None if budget is None else _fastcall.coarse() + budget   # (no system call a node)
    keys = [_template_key(req, fds, templates, ready) for req, fds in runs]
    following = _following(keys)
    # the guest's flags carried across the nodes (fastcall.c: hold) only for a native
    # template's forks: an emulated node's first clock read (Machine.run) would fault
    # on them, and their carry and drop are four system calls
    native = any(key is not None for key in keys)
    if native:
        _fastcall.hold(True)
    try:
        for i, (req, fds) in enumerate(runs):
            if i and end is not None and _fastcall.coarse() >= end:
                _send(sock, [STOPPED])
                break
            tails: dict[str, TailBacking] = {}
            machine = None
            try:
                report, machine = _serve_one(req, fds, templates, tails, following[i], ready,
                                             probe=False)
            except Exception as e:  # keep serving: one bad run must not take the others
                report = _failed('killed', f'sandbox worker error: {e!r}')
                raised = templates.kept(keys[i]) if keys[i] is not None else None
                if raised is not None:      # it may have asked its children ahead
                    used[id(raised)] = raised
            finally:
                done += 1
                for f in fds:
                    os.close(f)
            # stamped: the caller sizes its requests by the worker's pace, not by when
            # its busy loop read the replies (zerocloud.object.batch: Chunks)
            _reply(sock, report, {k: t.data for k, t in tails.items()}, _fastcall.monotonic())
            # no sched_yield here, unlike worker_main: the next node waited (doc/sandbox.md)
            if machine is not None:
                machine.reset()     # after the reply: idle templates hold no guest data
                used[id(machine)] = machine
    finally:
        if native:
            _fastcall.hold(False)
        for machine in used.values():
            machine.trim()      # children asked for runs that did not come to them
            templates.settle(machine)
        for _, fds in runs[done:]:
            for f in fds:
                os.close(f)


def _following(keys: list[tuple | None]) -> list[int]:
    """For each run, how many of the runs after it use its native template (its
    :func:`_template_key`, ``keys``; None: none): a native template asks for that
    many children ahead (``Template.take``), none for later runs of another
    template, whose children would wait unused.  Once a request."""
    counts: list[int] = []
    seen: dict[tuple, int] = {}
    for key in reversed(keys):
        counts.append(0 if key is None else seen.get(key, 0))
        if key is not None:
            seen[key] = counts[-1] + 1
    return counts[::-1]


def _validate_one(req: dict, fds: list[int]) -> dict:
    """The verdict on the program open as ``fds[0]``: valid, and the first reason
    if not, or the note on a valid one's instructions of extensions the sandbox's
    CPU lacks (a -mavx2 build: it faults where it reaches one), ``zvm validate``'s
    words: the upload's verdict said only valid."""
    from zvm_core.elf import ElfError, load_program
    from zvm_core.validator import default_cache, validate
    try:
        program = load_program(f'/proc/self/fd/{fds[0]}')
    except ElfError as e:
        return {'valid': False, 'reason': str(e)}
    verdict = validate(program, Policy(rdtsc=req['rdtsc']), default_cache())
    if verdict.ok:
        return {'valid': True, 'reason': '',
                'note': absent_note(program, verdict) if verdict.absent else ''}
    first = verdict.violations[0] if verdict.violations else None
    return {'valid': False, 'reason': f'{first.rule} {first.address:#x} {first.text}'
            if first else f'{len(verdict.violations)} violation(s)'}


def _limit_self(address_space: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # the soft limit bounds this worker's own descriptors; the hard one stays as it
    # came: the native loader raises its soft limit to it (loader.c: prepare), and
    # the kernel refuses the loader's listener (ETOOMANYREFS) while its user has more
    # descriptors in flight than that.  Lowered to 2048, it made a busy host's runs
    # fail under a limit of ours, not the host's; the loader needs at least 1031 for
    # its control socket (zvm_core.engines.native checks the hard limit)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    soft = MAX_FDS * 2 if hard == resource.RLIM_INFINITY else min(MAX_FDS * 2, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if address_space:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # each engine's first write to its translation buffer would fault in a 2 MiB
    # huge page: 5-7 ms per new instance instead of 0.5 (bench/pool.py)
    libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)


def _die_with_parent(parent: int) -> None:
    """End this worker when ``parent``, the process that started it, is gone (a
    server killed by a signal, maybe before this worker got here): a run it was
    serving would go on to its deadline for nobody.  A thread that looks, not
    ``PR_SET_PDEATHSIG``, which fires when the *thread* that started the worker
    ends (the object server starts them from a thread pool).  A native guest
    dies with its worker."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK)
        os._exit(1)
    threading.Thread(target=watch, name='parent-watch', daemon=True).start()


def worker_main(fd: int, template_bytes: int, address_space: int,
                warm: Iterable[WarmUp] = (), parent: int | None = None) -> int:
    """Serve requests on the socket ``fd`` until the parent closes it (or dies)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.set_inheritable(fd, False)   # passed to us inheritable: no loader gets it
    sock = socket.socket(fileno=fd)
    _die_with_parent(parent or os.getppid())
    _limit_self(address_space)
    # what this host can run, probed now (a loader and a tiny guest: ~0.16 s of CPU
    # and 0.4 s here), not by the first request: a batch's first nodes reach
    # every worker at once, and each waited for its probe
    engines.native_unavailable()
    templates = Templates(template_bytes)
    for w in warm:
        try:
            _warm_up(w, templates)
        except Exception as e:     # a warm-up is an optimisation: the worker serves anyway
            print(f'zvm pool worker: warm-up of {w.program} failed: {e!r}', file=sys.stderr)
    # what lives as long as the worker (modules, warm templates) is left out of the
    # cyclic GC's full collections; a run itself makes no reference cycle
    gc.freeze()
    _send_json(sock, {'ready': True})   # the pool reads it before the first request
    inbox = _Inbox(sock)
    while True:
        templates.idle(sock)
        got = inbox.next()
        if got is None:
            templates.close()
            return 0
        kind, req, fds = got
        machine = None
        if kind == 'validate':
            try:
                _send_json(sock, _validate_one(req, fds))
            finally:
                for f in fds:
                    os.close(f)
            continue
        if kind == 'many':
            runs, budget = req
            _serve_many(sock, runs, templates, budget)
            continue
        tails: dict[str, TailBacking] = {}
        try:
            report, machine = _serve_one(req, fds, templates, tails)
        except Exception as e:  # keep serving: one bad request must not take the worker
            report = _failed('killed', f'sandbox worker error: {e!r}')
        finally:
            for f in fds:
                os.close(f)
        _reply(sock, report, {k: t.data for k, t in tails.items()})
        # the caller first: a socket's wake-up is a synchronous one (the kernel expects
        # the waker to sleep next), so the caller often waits on this CPU, and a native
        # template's clean-up wakes the template (its fork) and the ended child (its
        # kill), which ran before it did.  Paired under load (bench/warm_hello.py
        # --against, 10 rounds): warm native hello p50 -10-23 %, the same CPU; an
        # emulated machine's reset wakes nobody (there it cost ~3 %: not done)
        if getattr(machine, 'reset_wakes', False):
            os.sched_yield()
        if machine is not None:
            machine.reset()     # after the reply: idle templates hold no guest data
            templates.settle(machine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='zvm_core pool worker (internal)')
    parser.add_argument('--fd', type=int, required=True)
    parser.add_argument('--template-bytes', type=int, default=512 << 20)
    parser.add_argument('--address-space', type=int, default=0)
    parser.add_argument('--warm', default='[]', help='JSON list of WarmUp fields')
    parser.add_argument('--parent', type=int, help='pid of the pool: the worker ends with it')
    opts = parser.parse_args(argv)
    warm = [WarmUp(w['program'], tuple(w['argv']), tuple(w['images']), w['memory'])
            for w in json.loads(opts.warm)]
    return worker_main(opts.fd, opts.template_bytes, opts.address_space, warm, opts.parent)


if __name__ == '__main__':
    sys.exit(main())

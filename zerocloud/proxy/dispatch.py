"""Dispatch: each node to an object server that can run it, and its answer back.

A node's plan says where it may run (the replicas of the object it reads, or
any servers); ``Dispatcher.run_node`` sends the node (``zerocloud.wire``) to
one server after the other until one runs it, waits for busy servers full of
the job's own nodes, and sends a program by its digest to servers that got it
before (``Programs``).  ``Dispatcher.exchange`` is the node transport: one
HTTP exchange with one object server.  doc/operator-guide.md explains the
retries for operators.
"""

from __future__ import annotations

import collections
import http.client
import random
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from sys import intern

from swift.common.bufferedhttp import http_connect
from swift.common.concurrency import Event, Timeout, sleep, spawn
from swift.common.exceptions import ConnectionTimeout
from swift.common.storage_policy import POLICIES

from zerocloud import graph, wire
from zerocloud.config import Config
from zerocloud.job import Node
from zerocloud.proxy.caller import Input
from zerocloud.proxy.outputs import Budget, OutputFile
from zerocloud.proxy.response import NodeResult, short

NODE_GRACE = 5.0
BUSY_PAUSE, BUSY_PAUSE_MAX = 0.02, 0.5      # seconds between tries of busy servers
KNOWN_PROGRAMS = 4096       # (server, program digest) pairs a proxy process remembers
DEVICE_SPECS = 256          # kinds of node whose device specs a dispatcher keeps
SETUPS_TOLD = 1024          # (server, setup) pairs a proxy process warned of, then again
# Servers a node its host killed (``host_failure``) runs on again, at most: each run may
# last the whole timeout, and a node that makes its worker die (an OOM kill) would
# otherwise run on every object server of the policy (a node without data: any_nodes)
HOST_RERUNS = 2


class _Retry(Exception):
    """This server did not run the node; another one may."""


class _Busy(_Retry):
    """The server's worker pool is full (503 with Retry-After): it may take the node later."""


class _NoFilter(_Retry):
    """The object server answered without the object filter in its pipeline (an
    operator's mistake on that server: logged as a warning saying what to add)."""

    def __init__(self, status: int) -> None:
        super().__init__(f'{status}: the zerocloud filter is not in its pipeline: add '
                         f'egg:zerocloud#zerocloud_object to it, just before object-server '
                         f'(doc/operator-guide.md, "Where the filters go")')


def _said(e: Exception) -> str:
    """What a try's error adds to an ``unavailable`` node's message: a missing filter's
    fix whole (what the operator must do: cut at 120 characters, it lost where to read
    how), a server's or a library's words up to 120 characters."""
    return str(e) if isinstance(e, _NoFilter) else short(str(e) or repr(e), 120)


def not_run_log(logger, e: Exception):
    """The logger's method for a server that did not run nodes: ``warning`` when the
    server lacks the filter (no retry makes it run there), else ``info``."""
    return logger.warning if isinstance(e, _NoFilter) else logger.info


class _NeedProgram(_Retry):
    """The server does not have the program of ``X-Zerovm-Program`` or the image of
    ``X-Zerovm-Image`` (412): send them."""


class _Refused(Exception):
    """The object server refused the node for a reason any server would give:
    ``status`` (the node's) is ``refused``, the job's mistake, unless the server
    could not read the request this proxy built (``bad execute request``: the two
    apart in version or configuration, or a bug): ``error``, the cluster's."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f'{status} {reason}')
        self.status, self.reason = status, reason

    def node_error(self, where: str, max_input: int) -> tuple[str, str, int | None]:
        """(the node's status, its error, its HTTP status or None) as ``where`` refused
        it.  Too large for a server whose zerovm_maxinput (its 413 names it) is below
        this proxy's ``max_input`` is no mistake of the job's but of the operators':
        ``error``, naming what to align; for one whose limit is the proxy's, the job
        sends too much: ``refused``, saying what counts.  Judged on the two limits,
        not on the request's size: a chunked request (links) is refused part-sent."""
        said = f'{where} refused the node: {self}'
        limit = wire.too_large_limit(self.reason)
        if limit is not None and limit < max_input:
            return 'error', (f'{said}: below the proxy\'s zerovm_maxinput ({max_input} '
                             f'bytes): a configuration mismatch; the operator should set '
                             f'the object server\'s as the proxy\'s'), None
        if limit is not None:           # no commas: X-Nexe-Error's values are separated by them
            said += (': everything sent with one node counts (program and image and objects '
                     'and data from other nodes); send less or ask the operator to raise '
                     'zerovm_maxinput (in the proxy and the object servers)')
        ended = 'error' if self.reason.startswith(wire.UNREADABLE) else 'refused'
        return ended, said, self.status


@dataclass
class Plan:
    """Where and how one node runs."""

    node: Node
    policy: int
    partition: int
    path: str                              # backend path: the data object or a placeholder
    servers: Iterable[dict]
    local: str | None                      # the device that reads ``path`` in place
    program: Input | None                  # spooled; None: a system image's file (the server's)
    inputs: dict[str, Input]               # device name -> object sent along
    replica: int = 1                       # only replica 1 returns its outputs
    digest: str | None = None              # SHA-256 (hex) of ``program``
    env: dict[str, str] = field(default_factory=dict)   # the node's CGI variables
    local_env: bool = False                # the object server adds the LOCAL_* variables
    image_digest: str | None = None        # SHA-256 (hex) of the job's image sent along
    account: str = ''                      # the job's (object servers share slots by it)
    links_after: bool = False              # its /dev/out/<peer> come back as outputs once it
                                           # ended, not streamed (a node sent in a batch)
    budget: Budget | None = None           # what the job's outputs may hold (outputs.Budget)

    @property
    def program_size(self) -> int:
        """The bytes of the program sent along (0: a system image's)."""
        return 0 if self.program is None else self.program.size

    def output(self, device: str) -> OutputFile:
        """Where the node's output ``device`` waits on the proxy, charged to the job."""
        return OutputFile(self.budget, self.node.name, device)


class Programs:
    """The programs this proxy process sent to object servers (they may still have
    them: later nodes send the digest), and those on their way (nodes bound for
    the same server wait for them)."""

    def __init__(self) -> None:
        # (ip, port, digest) of programs sent to object servers, least recently used first
        self.servers: collections.OrderedDict[tuple, None] = collections.OrderedDict()
        self.sending: dict[tuple, Event] = {}   # programs on their way: set once sent

    def known(self, server: dict, digest: str, known: bool | None = None) -> bool:
        """Whether the program of ``digest`` was sent to ``server`` (it may have it);
        ``known`` records that it was (True) or that the server lacked it (False)."""
        key = (server['ip'], server['port'], digest)
        if known is False:
            self.servers.pop(key, None)
        elif known:
            self.servers[key] = None
            self.servers.move_to_end(key)
            while len(self.servers) > KNOWN_PROGRAMS:
                self.servers.popitem(last=False)
        return key in self.servers

    def wait_sent(self, server: dict, digest: str) -> None:
        """If another request is sending the program of ``digest`` to ``server``, wait
        (a while) until it has gone, so that this one can send the digest."""
        key = (server['ip'], server['port'], digest)
        if key in self.servers and key in self.sending:
            with Timeout(NODE_GRACE, False):
                self.sending[key].wait()

    def sending_now(self, server: dict, digest: str) -> tuple[tuple, Event] | None:
        """This request sends the program of ``digest`` to ``server``: later ones send
        the digest, waiting until it has gone; the entry to pass to :meth:`sent`
        then, or None when another request is sending it already."""
        self.known(server, digest, True)
        key = (server['ip'], server['port'], digest)
        if key in self.sending:
            return None
        return key, self.sending.setdefault(key, Event())

    def ended(self, key: tuple, event: Event) -> None:
        """The request that was to send the program of ``key`` is over.  If the
        program's bytes did not all go (refused before its body, or cut off), the
        server is not counted as having it: the next request sends it, not its
        digest and then, on ``412``, it.  Nodes waiting for it go on."""
        if not event.ready():
            self.servers.pop(key, None)
        self.sent(key, event)

    def sent(self, key: tuple, event: Event) -> None:
        """The program of ``key`` has gone (or will not): nodes waiting for it go on."""
        if self.sending.get(key) is event:
            del self.sending[key]
        if not event.ready():
            event.send()


class Setups:
    """Compares what object servers say of their images and limits (``X-Zerovm-Setup``,
    ``Config.setup``) with this proxy's, and warns once per server and setup that
    differs: an operator who upgraded or configured one side alone sees why nodes
    meet other limits than the proxy's, or fail on some servers only.  A string
    compare per answer; a server that does not say (older) is not judged."""

    def __init__(self, config: Config, logger) -> None:
        self.mine, self.logger = config.setup, logger
        self.told: set[tuple] = set()

    def heard(self, server: dict, resp) -> None:
        theirs = resp.getheader(wire.SETUP)
        if theirs is None or theirs == self.mine:
            return
        key = (server['ip'], server['port'], theirs)
        if key in self.told:
            return
        if len(self.told) >= SETUPS_TOLD:
            self.told.clear()
        self.told.add(key)
        self.logger.warning(
            'object server %s:%s is not set up as this proxy: %s; the smaller limit holds '
            'for the nodes it runs, and a node naming an image it does not list fails '
            'there: give the proxy and the object servers the same values (was one side '
            'upgraded or configured alone?)', server['ip'], server['port'],
            _differences(theirs, self.mine))


def _differences(theirs: str, mine: str) -> str:
    """``zerovm_maxoutput=1048576 (this proxy: 1073741824), ...`` of two setups."""
    ours, said = (dict(item.partition('=')[::2] for item in setup.split('; '))
                  for setup in (mine, theirs))
    return ', '.join(f'{name}={said.get(name, "?")} (this proxy: {ours.get(name, "?")})'
                     for name in [*ours, *(n for n in said if n not in ours)]
                     if said.get(name) != ours.get(name))


class Dispatcher:
    """Runs nodes on object servers (one per filter: it keeps no request state)."""

    def __init__(self, config: Config, logger, programs: Programs | None = None) -> None:
        self.config = config
        self.logger = logger
        self.programs = programs or Programs()
        self.setups = Setups(config, logger)
        self.limits = wire.NodeLimits(config.memory, config.fuel, config.timeout)  # frozen
        self.device_specs: dict[tuple, tuple[wire.DeviceSpec, ...]] = {}    # see spec()

    def spec(self, plan: Plan) -> wire.NodeSpec:
        """What the object server needs to run the node (``zerocloud.wire``)."""
        node = plan.node
        names = tuple(dev.name for dev in node.devices)     # access follows from the name
        key = (names, plan.local, tuple(plan.inputs))
        devices = self.device_specs.get(key)
        if devices is None:             # once per kind of node: the wildcard's are alike
            if len(self.device_specs) >= DEVICE_SPECS:
                self.device_specs.clear()
            devices = self.device_specs[key] = tuple(     # this proxy's write quota
                wire.DeviceSpec(dev.name, 'w' if dev.writable else 'r', dev.random,
                                'local' if dev.name == plan.local
                                else 'member' if dev.name in plan.inputs else None,
                                self.config.max_output if dev.writable else None)
                for dev in node.devices)
        if node.reads_from or node.writes_to:
            devices += tuple(graph.link_devices(node, self.config.max_output))
        program = None
        if plan.program is None:         # file://<system image>:<member>: mount that image
            program = node.exec.image_member
            if not any(d.name == program[0] for d in devices):
                devices += (wire.DeviceSpec(program[0], 'r', True, None),)
        return wire.NodeSpec(
            name=node.name, argv=node.argv, env={**node.exec.env, **plan.env},
            devices=devices, outputs=plan.replica == 1,
            stream=bool(node.reads_from or (node.writes_to and not plan.links_after)),
            program=program, engine=node.engine,
            local_env=plan.local_env,
            limits=self.limits)

    def members(self, plan: Plan, spec: bytes) -> Callable[..., list[wire.Member]]:
        """A maker of the node's request members (``spec``: its node spec, JSON), without
        those in ``omit`` (sent by digest), calling ``sent[member]()`` once a member has
        gone (fresh iterators for every attempt)."""
        def members(omit: frozenset = frozenset(),
                    sent: dict[str, Callable[[], None]] | None = None) -> list[wire.Member]:
            sent = sent or {}
            shared = [(wire.EXE, plan.program)] if plan.program is not None else []
            shared += [(wire.DEV_PREFIX + name, i) for name, i in plan.inputs.items()]
            members = [wire.shared_member(name, i.file, i.size)
                       for name, i in shared if name not in omit]
            return [wire.bytes_member(wire.SPEC, spec),
                    *((name, size, _then(chunks, sent.get(name)))
                      for name, size, chunks in members)]
        return members

    def run_node(self, trans_id: str, plan: Plan, job_id: str,
                 load: collections.Counter | None = None,
                 links: graph.NodeLinks | None = None) -> NodeResult:
        """Run one node; ``load`` counts the job's nodes in flight per server."""
        load = collections.Counter() if load is None else load
        res = NodeResult(plan.node, POLICIES.get_by_index(plan.policy).name)
        started = time.monotonic()
        spec = self.spec(plan).to_json()
        if len(spec) > wire.SPEC_LIMIT:     # no server would read it: say why, send nothing
            res.fail('error', wire.spec_too_large(len(spec)), 413)
            res.seconds = time.monotonic() - started
            return res
        make_members = self.members(plan, spec)
        base = {wire.EXECUTE: wire.VERSION, 'Content-Type': 'application/x-tar',
                'Expect': '100-continue', 'X-Backend-Storage-Policy-Index': str(plan.policy),
                'X-Trans-Id': trans_id, 'X-Zerocloud-Id': job_id, wire.ACCOUNT: plan.account}
        if plan.local:
            base[wire.ACCESS] = 'GET'
        cached = _cached(plan)                  # (header, digest, member) of each

        sending: list[tuple[tuple, Event]] = []          # programs and images this node sends

        def request(server: dict, full: bool
                    ) -> tuple[dict, Callable[[], list[wire.Member]]]:
            """Headers and members of one attempt: the program and image, or their
            digests where the server should have them (unless ``full``)."""
            headers, omit, sent = dict(base), set(), {}
            for header, digest, member in cached:
                if not full and self.programs.known(server, digest):
                    headers[header] = digest
                    omit.add(member)
                    continue
                entry = self.programs.sending_now(server, digest)
                if entry is not None:
                    sending.append(entry)
                    sent[member] = lambda entry=entry: self.programs.sent(*entry)
            if links is not None and links.inputs:       # the links follow as they arrive
                headers['Transfer-Encoding'] = 'chunked'
            else:
                headers['Content-Length'] = str(wire.tar_size(
                    (n, s) for n, s, _ in make_members(frozenset(omit))))
            return headers, lambda: make_members(frozenset(omit), sent)
        errors, busy = [], []
        killed: tuple[str, wire.NodeReport] | None = None     # by its host, on a server
        kills = 0
        for server in _attempts(plan.servers, busy, started + self.config.timeout):
            # one string a server, not a node: the result keeps it until the job is answered
            where = intern(f'{server["ip"]}:{server["port"]}/{server["device"]}')
            load[server['ip'], server['port']] += 1
            for _header, digest, _member in cached:
                self.programs.wait_sent(server, digest)
            headers, members = request(server, False)
            sent = [int(headers.get('Content-Length', 0))]
            try:
                try:
                    res.report, res.outputs = self.exchange(server, plan, headers, members,
                                                             links, sent)
                except _NeedProgram as e:      # not there after all: again, with them
                    self.logger.debug('node %s on %s: %s', plan.node.name, where, e)
                    for _header, digest, _member in cached:
                        self.programs.known(server, digest, False)
                    headers, members = request(server, True)
                    sent = [int(headers.get('Content-Length', 0))]
                    res.report, res.outputs = self.exchange(server, plan, headers, members,
                                                             links, sent)
                if host_killed(res, links):
                    killed, kills = (where, res.report), kills + 1
                    if kills > HOST_RERUNS:     # the host's answer stands, as when no
                        res.close()             # other server could run it
                        res.server, res.outputs = where, {}
                        break
                    self._forget_killed(res, where, errors)
                    continue
                res.server = where
                res.request_bytes = sent[0]
                res.program_bytes = 0 if wire.PROGRAM in headers else plan.program_size
                break
            except _Refused as e:       # a 4xx: any server would refuse it
                res.fail(*e.node_error(where, self.config.max_input))
                break
            except graph.SpoolFull as e:
                res.fail('error', str(e), 413)
                break
            except (_Retry, OSError, Timeout, http.client.HTTPException, ValueError) as e:
                if isinstance(e, _Busy) and load[server['ip'], server['port']] > 1:
                    busy.append(server)           # full of this job's own nodes
                errors.append(f'{where} {_said(e)}')
                not_run_log(self.logger, e)('node %s not run on %s: %r', plan.node.name,
                                            where, e)
            finally:
                load[server['ip'], server['port']] -= 1
                while sending:                  # sent, or it never will be
                    self.programs.ended(*sending.pop())
        else:
            if killed is not None:      # no other server could: the host's answer stands
                res.server, res.report = killed
            else:
                res.fail('unavailable', unavailable(errors))
        res.seconds = time.monotonic() - started
        return res

    def _forget_killed(self, res: NodeResult, where: str, errors: list[str]) -> None:
        """The node its server's host killed is run on the next server: its outputs
        of this attempt go (nothing of them was stored)."""
        self.logger.info('node %s killed by the host of %s, run elsewhere: %s',
                         res.node.name, where, short(res.report.message))
        errors.append(f'{where} killed: {short(res.report.message, 120)}')
        res.close()
        res.outputs = {}

    def exchange(self, server: dict, plan: Plan, headers: dict,
                  members: Callable[[], list[wire.Member]], links: graph.NodeLinks | None,
                  sent: list[int]) -> tuple[dict, dict]:
        """Run the node on one server: (report, outputs), or an exception."""
        with ConnectionTimeout(self.config.conn_timeout):
            conn = http_connect(server['ip'], server['port'], server['device'], plan.partition,
                                'POST', plan.path, headers)
        sock = conn.sock                  # the responses hold it too: shut it down at the end
        feeder = sender = None
        try:
            with Timeout(NODE_GRACE):
                resp = conn.getexpect()
            with Timeout(self.config.timeout + NODE_GRACE):
                if resp.status == http.client.CONTINUE:
                    if 'Transfer-Encoding' in headers:
                        feeder = graph.Feeder(links.inputs)
                        sender = spawn(_send_chunked, conn.sock, [
                            *members(), wire.bytes_member(wire.START, b''),
                            feeder.members()], sent)
                    else:
                        for chunk in wire.stream_tar(members()):
                            conn.send(chunk)
                    resp = conn.getresponse()
                self.setups.heard(server, resp)
                return self.node_response(resp, links, headers.get(wire.PROGRAM)
                                          or headers.get(wire.IMAGE), plan)
        finally:
            if sender is not None:
                feeder.stop()
                with Timeout(NODE_GRACE, False):
                    sender.wait()
                sender.kill()
            try:                    # the server sees the end at once, even if the node was
                sock.shutdown(socket.SHUT_RDWR)       # stopped (its job's client went away)
            except OSError:
                pass
            conn.close()

    def node_response(self, resp, links: graph.NodeLinks | None = None,
                       digest: str | None = None, plan: Plan | None = None
                       ) -> tuple[dict, dict]:
        """The report and outputs of a node's response (``digest``: the program's,
        sent instead of the program; ``plan``'s budget counts the outputs)."""
        check_answer(resp, digest is not None)
        stream, first = resp, wire.REPORT
        relay = None
        if resp.getheader(wire.STREAM):       # running: parts of its links come first
            stream, first = wire.Available(resp), None
            if links is not None and links.running is not None:
                links.running()
            if links is not None and links.outputs is not None:
                relay = graph.Relay(links.outputs)
        report, outputs = None, {}
        try:
            for name, f in wire.read_members(stream, first):
                if name == wire.RUNNING and first is None:
                    continue
                if name.startswith(wire.PART_PREFIX + graph.OUT) and report is None:
                    if relay is not None:
                        relay.add(name[len(wire.PART_PREFIX + graph.OUT):], f)
                elif name == wire.REPORT:
                    report = wire.NodeReport.from_json(f.read(1 << 20))
                elif name.startswith(wire.DEV_PREFIX) and report is not None:
                    device = name[len(wire.DEV_PREFIX):]
                    out = outputs[device] = plan.output(device) if plan else OutputFile()
                    wire.copy_limited(f, out, self.config.max_output)
                else:
                    raise wire.WireError(f'unexpected member {name}')
            if report is None:
                raise wire.ReportError('no report')
        except BaseException:
            for out in outputs.values():
                out.close()
            raise
        return report, outputs


def host_killed(res: NodeResult, links: graph.NodeLinks | None = None) -> bool:
    """May the node, which ran, run again on another server: its host killed it
    (``host_failure``: the program may well run elsewhere) and nothing of its output
    was committed (no byte of its links reached their readers; outputs are only
    stored once the job ended, from the attempt that counts)?"""
    if res.report.status != 'killed' or not res.report.host_failure:
        return False
    return links is None or links.outputs is None or not any(
        link.size for link in links.outputs.links.values())


def check_answer(resp: http.client.HTTPResponse, by_digest: bool) -> None:
    """Raise what an object server's answer other than a node's 200 means for the node
    (or nodes, a batch's): a server without the filter, else by the answer's status
    (``by_digest``: the program went as its digest)."""
    if resp.getheader(wire.EXECUTE) is None:
        raise _NoFilter(resp.status)
    if resp.status == 200:
        return
    status, reason = resp.status, short(resp.read(1024).decode('utf-8', 'replace'))
    if status == 412 and by_digest:
        raise _NeedProgram(f'{status} {reason}')
    if status == 503 and resp.getheader('Retry-After'):
        raise _Busy(f'{status} {reason}')
    if status in (404, 507) or status >= 500:
        raise _Retry(f'{status} {reason}')
    raise _Refused(status, reason)


SHOWN_ERRORS = 3          # distinct server answers an ``unavailable`` node names
_SHARE = re.compile(r'Slot not available: account (\S+) has')


def unavailable(errors: list[str]) -> str:
    """Why no server ran a node, from each try's ``<server> <error>``: each distinct one
    once, counted when repeated (a server busy with the job's own nodes is asked until
    the timeout), and, when an account's share refused it, that its own jobs hold it."""
    counts = collections.Counter(errors)
    distinct = list(counts)             # in the order first given
    shown = [e if counts[e] == 1 else f'{e} ({counts[e]} times)'
             for e in distinct[-SHOWN_ERRORS:]]
    if len(distinct) > SHOWN_ERRORS:
        shown.insert(0, f'{len(distinct) - SHOWN_ERRORS} more')
    why = 'no object server could run the node'
    share = next((m for m in map(_SHARE.search, distinct) if m), None)
    if share is not None:               # first: X-Nexe-Error keeps a node's first 300 chars
        why += (f": account {share[1]}'s own running jobs (its deferred jobs too) hold its "
                "share of these servers' slots; retry when they end")
    return why + (f' ({"; ".join(shown)})' if shown else '')


def _attempts(servers: Iterable[dict], busy: list[dict], deadline: float) -> Iterator[dict]:
    """The servers in order, then again those the caller put in ``busy`` (full of
    the job's own nodes), after a growing pause, until ``deadline``.

    Those nodes end, and a node waiting here holds no worker, so a job with more
    nodes than the cluster has workers waits for them instead of failing; a server
    full of other work still ends the node at once (``unavailable``, 503).
    """
    pause = BUSY_PAUSE
    yield from servers
    while busy and time.monotonic() + pause < deadline:
        sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 2, BUSY_PAUSE_MAX)
        again, busy[:] = list(busy), []
        yield from again


def _then(chunks: Iterable[bytes], done: Callable[[], None] | None) -> Iterator[bytes]:
    """A member's ``chunks``; ``done()`` once the consumer took them (sent them)."""
    yield from chunks
    if done is not None:
        done()


def _cached(plan: Plan) -> list[tuple[str, str, str]]:
    """(header, digest, member) of what an object server may keep by digest: the
    program and the job's image (``zerocloud.wire``)."""
    items = []
    if plan.program is not None and plan.digest is not None:
        items.append((wire.PROGRAM, plan.digest, wire.EXE))
    if plan.image_digest is not None and wire.IMAGE_DEVICE in plan.inputs:
        items.append((wire.IMAGE, plan.image_digest, wire.DEV_PREFIX + wire.IMAGE_DEVICE))
    return items


def _send_chunked(sock, members: list, sent: list[int]) -> None:
    """Send a tar stream of ``members`` (the last one an iterator of members that
    come as they arrive) in chunked transfer encoding; a member that fails
    (a link whose node failed) cuts the stream before the links are complete."""
    def all_members():
        yield from members[:-1]
        yield from members[-1]
    try:
        try:
            for chunk in wire.stream_tar(all_members()):
                if chunk:
                    sock.sendall(b'%x\r\n%s\r\n' % (len(chunk), chunk))
                    sent[0] += len(chunk)
        except graph.LinkFailed:
            pass
        sock.sendall(b'0\r\n\r\n')
    except OSError:
        pass                # the server went away: the response says what happened


def skipped(plan: Plan, replica: int, why: str) -> NodeResult:
    """The result of a node that could not run because a node it reads from failed."""
    res = NodeResult(plan.node, POLICIES.get_by_index(plan.policy).name)
    res.fail(graph.SKIPPED, why)
    res.replica = replica
    return res

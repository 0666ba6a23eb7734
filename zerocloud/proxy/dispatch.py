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
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from swift.common.bufferedhttp import http_connect
from swift.common.concurrency import Event, Timeout, sleep, spawn
from swift.common.exceptions import ConnectionTimeout
from swift.common.storage_policy import POLICIES

from zerocloud import graph, wire
from zerocloud.config import Config
from zerocloud.job import Node
from zerocloud.proxy.caller import Input, spooled
from zerocloud.proxy.response import NodeResult, short

NODE_GRACE = 5.0
BUSY_PAUSE, BUSY_PAUSE_MAX = 0.02, 0.5      # seconds between tries of busy servers
KNOWN_PROGRAMS = 4096       # (server, program digest) pairs a proxy process remembers


class _Retry(Exception):
    """This server did not run the node; another one may."""


class _Busy(_Retry):
    """The server's worker pool is full (503 with Retry-After): it may take the node later."""


class _NeedProgram(_Retry):
    """The server does not have the program of ``X-Zerovm-Program`` (412): send it."""


class _Refused(Exception):
    """The object server refused the node for a reason any server would give."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f'{status} {reason}')
        self.status = status


@dataclass
class Plan:
    """Where and how one node runs."""

    node: Node
    policy: int
    partition: int
    path: str                              # backend path: the data object or a placeholder
    servers: Iterable[dict]
    local: str | None                      # the device that reads ``path`` in place
    program: bytes | None                  # None: a system image's file (the server's)
    inputs: dict[str, Input]               # device name -> object sent along
    replica: int = 1                       # only replica 1 returns its outputs
    digest: str | None = None              # SHA-256 (hex) of ``program``
    env: dict[str, str] = field(default_factory=dict)   # the node's CGI variables
    account: str = ''                      # the job's (object servers share slots by it)


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

    def sent(self, key: tuple, event: Event) -> None:
        """The program of ``key`` has gone (or will not): nodes waiting for it go on."""
        if self.sending.get(key) is event:
            del self.sending[key]
        if not event.ready():
            event.send()


class Dispatcher:
    """Runs nodes on object servers (one per filter: it keeps no request state)."""

    def __init__(self, config: Config, logger, programs: Programs | None = None) -> None:
        self.config = config
        self.logger = logger
        self.programs = programs or Programs()

    def spec(self, plan: Plan) -> wire.NodeSpec:
        """What the object server needs to run the node (``zerocloud.wire``)."""
        node = plan.node
        devices = [wire.DeviceSpec(dev.name, 'w' if dev.writable else 'r', dev.random,
                                   'local' if dev.name == plan.local
                                   else 'member' if dev.name in plan.inputs else None)
                   for dev in node.devices]
        devices += graph.link_devices(node, self.config.max_output)
        program = None
        if plan.program is None:         # file://<system image>:<member>: mount that image
            program = node.exec.image_member
            if not any(d.name == program[0] for d in devices):
                devices.append(wire.DeviceSpec(program[0], 'r', True, None))
        return wire.NodeSpec(
            name=node.name, argv=node.argv, env={**node.exec.env, **plan.env},
            devices=tuple(devices), outputs=plan.replica == 1,
            stream=bool(node.reads_from or node.writes_to), program=program, engine=node.engine,
            limits=wire.NodeLimits(self.config.memory, self.config.fuel, self.config.timeout))

    def members(self, plan: Plan) -> Callable[[bool], list[wire.Member]]:
        """A maker of the node's request members, with the program or not (fresh
        iterators for every attempt)."""
        spec = self.spec(plan).to_json()

        def members(program: bool = True, sent: Callable[[], None] | None = None
                    ) -> list[wire.Member]:
            exe = [] if plan.program is None or not program else [
                (wire.EXE, len(plan.program), _then(plan.program, sent))]
            return [wire.bytes_member(wire.SPEC, spec), *exe,
                    *(wire.shared_member(wire.DEV_PREFIX + name, i.file, i.size)
                      for name, i in plan.inputs.items())]
        return members

    def run_node(self, trans_id: str, plan: Plan, job_id: str,
                 load: collections.Counter | None = None,
                 links: graph.NodeLinks | None = None) -> NodeResult:
        """Run one node; ``load`` counts the job's nodes in flight per server."""
        load = collections.Counter() if load is None else load
        res = NodeResult(plan.node, POLICIES.get_by_index(plan.policy).name)
        started = time.monotonic()
        make_members = self.members(plan)
        base = {wire.EXECUTE: wire.VERSION, 'Content-Type': 'application/x-tar',
                'Expect': '100-continue', 'X-Backend-Storage-Policy-Index': str(plan.policy),
                'X-Trans-Id': trans_id, 'X-Zerocloud-Id': job_id, wire.ACCOUNT: plan.account}
        if plan.local:
            base[wire.ACCESS] = 'GET'

        sending: list[tuple[tuple, Event]] = []          # programs this node sends

        def request(server: dict, program: bool
                    ) -> tuple[dict, Callable[[], list[wire.Member]]]:
            """Headers and members of one attempt, with the program or its digest."""
            headers = dict(base)
            if links is not None and links.inputs:       # the links follow as they arrive
                headers['Transfer-Encoding'] = 'chunked'
            else:
                headers['Content-Length'] = str(wire.tar_size(
                    (n, s) for n, s, _ in make_members(program)))
            if not program:
                headers[wire.PROGRAM] = plan.digest
                return headers, lambda: make_members(False)
            if plan.digest is None:
                return headers, lambda: make_members(True)
            self.programs.known(server, plan.digest, True)   # later nodes: the digest
            key = (server['ip'], server['port'], plan.digest)
            if key not in self.programs.sending:        # they wait until it has been sent
                entry = key, self.programs.sending.setdefault(key, Event())
                sending.append(entry)
                return headers, lambda: make_members(True, lambda: self.programs.sent(*entry))
            return headers, lambda: make_members(True)
        errors, busy = [], []
        for server in _attempts(plan.servers, busy, started + self.config.timeout):
            where = f'{server["ip"]}:{server["port"]}/{server["device"]}'
            load[server['ip'], server['port']] += 1
            known = plan.digest is not None and self.programs.known(server, plan.digest)
            if known and (server['ip'], server['port'], plan.digest) in self.programs.sending:
                with Timeout(NODE_GRACE, False):    # another node is sending it there
                    self.programs.sending[server['ip'], server['port'], plan.digest].wait()
            headers, members = request(server, not known)
            sent = [int(headers.get('Content-Length', 0))]
            try:
                try:
                    res.report, res.outputs = self.exchange(server, plan, headers, members,
                                                             links, sent)
                except _NeedProgram as e:      # not there after all: again, with it
                    self.logger.debug('node %s on %s: %s', plan.node.name, where, e)
                    self.programs.known(server, plan.digest, False)
                    headers, members = request(server, True)
                    sent = [int(headers.get('Content-Length', 0))]
                    res.report, res.outputs = self.exchange(server, plan, headers, members,
                                                             links, sent)
                res.server = where
                res.request_bytes = sent[0]
                res.program_bytes = 0 if wire.PROGRAM in headers else len(plan.program or b'')
                break
            except _Refused as e:
                res.fail('error', f'{where} refused the node: {e}', e.status)
                break
            except graph.SpoolFull as e:
                res.fail('error', str(e), 413)
                break
            except (_Retry, OSError, Timeout, http.client.HTTPException, ValueError) as e:
                if isinstance(e, _Busy) and load[server['ip'], server['port']] > 1:
                    busy.append(server)           # full of this job's own nodes
                errors.append(f'{where} {short(str(e) or repr(e), 120)}')
                self.logger.info('node %s not run on %s: %r', plan.node.name, where, e)
            finally:
                load[server['ip'], server['port']] -= 1
                while sending:                  # sent, or it never will be
                    self.programs.sent(*sending.pop())
        else:
            res.fail('unavailable', 'no object server could run the node'
                     + (f' ({"; ".join(errors[-3:])})' if errors else ''))
        res.seconds = time.monotonic() - started
        return res

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
                return self.node_response(resp, links, headers.get(wire.PROGRAM))
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
                       digest: str | None = None) -> tuple[dict, dict]:
        """The report and outputs of a node's response (``digest``: the program's,
        sent instead of the program)."""
        if resp.getheader(wire.EXECUTE) is None:
            raise _Retry(f'{resp.status}: the zerocloud filter is not in its pipeline')
        if resp.status != 200:
            reason = short(resp.read(1024).decode('utf-8', 'replace'))
            if resp.status == 412 and digest is not None:
                raise _NeedProgram(f'{resp.status} {reason}')
            if resp.status == 503 and resp.getheader('Retry-After'):
                raise _Busy(f'{resp.status} {reason}')
            if resp.status in (404, 507) or resp.status >= 500:
                raise _Retry(f'{resp.status} {reason}')
            raise _Refused(resp.status, reason)
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
                    out = outputs[name[len(wire.DEV_PREFIX):]] = spooled()
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


def _then(data: bytes, done: Callable[[], None] | None) -> Iterator[bytes]:
    """``data`` as a member's chunks; ``done()`` once the consumer took it (sent it)."""
    yield data
    if done is not None:
        done()


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

"""What a job's answer says about each node, read from whatever the server sent.

The proxy describes a job three ways, and this module is the only place
that reads them (so a change of the server's report changes one file):

* the ``X-Nexe-*`` response headers, one comma-separated value per node
  (``doc/http-api.md``), cut at 8 KiB with ``X-Nexe-Truncated``; a job of
  more than 1,000 nodes gets counts instead (``X-Nexe-Nodes``,
  ``X-Nexe-Failed``, ``X-Nexe-Status-Counts``, ``X-Nexe-Retcode-Counts``:
  :class:`Summary`), and its failed nodes are named in the body;
* the JSON report (``X-Zerovm-Report: json``), richer: host, accounting,
  outputs, whether the node failed, its object and the end of its stderr;
* ``X-Nexe-Dropped``: output the job lost though it succeeded (a node's
  bytes written to a stdout it did not declare, an output not stored for
  being under its ``min_size``; a large job's counts of them):
  :meth:`JobResult.lost`;
* the body of a failed job: one ``<node>: <status>: <what happened>`` line
  per failed node, then the end of each one's stderr after a
  ``--- stderr of <node> (its end) ---`` line.

A deferred job's ``job-<id>.headers`` object is the same headers as JSON,
with the object of each node (``Objects``, by node name).
Missing keys are tolerated (an older server's answer, ``zvm``'s report).  A
node counts as failed when the server says so (the report's ``failed``, or
an ``X-Nexe-Error`` entry: an exit code in the job's ``exec.ok_exit`` is
success); when it does not say, when its status is not ``ok`` or its exit
code is not 0.  ``X-Nexe-Body-Bytes`` says which bytes of a concatenated
body each node wrote (:meth:`JobResult.parts`).
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from zerocloud.answer_format import UNDECLARED

OK = 'ok'
OBJECTS = 'Objects'                 # of a deferred result's .headers: node -> object
NEXE = 'x-nexe-'
STDERR_SECTION = re.compile(r'^\n?--- stderr of (\S+)(?: \([^)\n]*\))? ---\n', re.M)


@dataclass
class NodeResult:
    """One node of a job, or one replica of it (which share its name), as far as the
    answer told."""

    name: str
    status: str = ''
    retcode: int | None = None
    host: str = ''
    object: str = ''
    fuel: int | None = None
    bytes_in: int | None = None
    bytes_out: int | None = None
    seconds: float | None = None
    error: str = ''
    stderr: str = ''
    body_bytes: int | None = None       # of the answer's body, from X-Nexe-Body-Bytes
    verdict: bool | None = None         # failed, as the server (or zvm's caller) said

    @property
    def failed(self) -> bool:
        if self.verdict is not None:
            return self.verdict
        return self.status != OK or self.retcode not in (0, None)


@dataclass
class Summary:
    """A large job's counts, from its summary headers (no per-node columns)."""

    nodes: int
    failed: int
    statuses: str = ''          # ``ok 998, nexe_error 2``
    retcodes: str = ''          # ``0 998, 1 2``
    replicas: str = ''          # ``2 600``: 600 nodes of 2 replicas (only when replicated)


def summary_from_headers(headers: Mapping[str, str]) -> Summary | None:
    """The summary of a large job's answer (keys lower case), None for a small job."""
    nodes = _int(headers.get(NEXE + 'nodes'))
    if nodes is None:
        return None
    return Summary(nodes, _int(headers.get(NEXE + 'failed')) or 0,
                   headers.get(NEXE + 'status-counts', ''),
                   headers.get(NEXE + 'retcode-counts', ''),
                   headers.get(NEXE + 'replica-counts', ''))


STOPPED = ('cancelled', 'lost', 'unstored')  # a deferred job that did not end, or its output


@dataclass
class JobResult:
    """The HTTP status and every node's result; ``body`` is what the server sent."""

    status: int
    nodes: list[NodeResult] = field(default_factory=list)
    seconds: float | None = None
    truncated: bool = False
    body: bytes = b''
    report: dict | None = None          # the JSON report, when the body was one
    summary: Summary | None = None      # a large job's counts, when no report came
    streamed: bool = False              # the output went to stdout as it came (no body)
    # the body's bytes around each node's part's end (its last, the next's first), by offset
    around: dict[int, int] = field(default_factory=dict)
    stopped: str = ''                   # a deferred job that did not end: cancelled, lost;
                                        # or whose output Swift refused: unstored
    counts: dict[str, int] | None = None    # its nodes: total, done, failed, stopped|lost
    chain: str = ''                     # why a chain stopped (X-Chain-Stopped): its job not run
    foreign: str = ''                   # the other account's object that stopped it
    reported_lost: str = ''             # a deferred job that ended after it was reported
                                        # lost: what the lost result said (X-Nexe-Reported-Lost)
    dropped: list[str] = field(default_factory=list)    # X-Nexe-Dropped's entries
    dropped_cut: bool = False           # X-Nexe-Dropped ended with ``...``: more were lost

    @property
    def failed(self) -> bool:
        return self.status >= 300 or bool(self.chain) or any(
            n.failed for n in self.nodes) or bool(self.summary and self.summary.failed)

    @property
    def totals(self) -> tuple[int, int]:
        """(nodes, failed): a large job's from its summary, else from its nodes, a node
        of replicas once (failed when any of them did), as the deferred job's state
        counts them (``zerocloud.deferred``)."""
        if self.summary is not None:
            return self.summary.nodes, self.summary.failed
        failed: dict[str, bool] = {}
        for node in self.nodes:
            failed[node.name] = failed.get(node.name, False) or node.failed
        return len(failed), sum(failed.values())

    @property
    def replicas(self) -> dict[int, int]:
        """How many nodes ran as how many replicas, e.g. ``{2: 3}``; ``{1: 3}`` for a job
        without ``replicate`` (empty without nodes): the answer gives each replica a
        value, a large job's summary these counts (``X-Nexe-Replica-Counts``, absent
        when no node was replicated)."""
        if self.summary is not None:
            counts = _counts(self.summary.replicas) or {'1': self.summary.nodes}
            return {int(k): n for k, n in counts.items() if k.isdigit()}
        runs: dict[str, int] = {}
        for node in self.nodes:
            runs[node.name] = runs.get(node.name, 0) + 1
        return dict(collections.Counter(runs.values()))

    def to_json(self) -> dict:
        """The JSON report, or one made from the headers (``--json`` always prints one)."""
        if self.report is not None:
            return self.report
        nodes = [{**{k: v for k, v in vars(n).items() if k != 'verdict'}, 'failed': n.failed}
                 for n in self.nodes]
        out: dict = {'status': self.status, 'seconds': self.seconds, 'nodes': nodes}
        if self.summary is not None:
            out['summary'] = vars(self.summary)
        if self.status >= 300 and not self.nodes:
            out['error'] = self.body.decode('utf-8', 'replace')
        if self.chain:
            out['chain_stopped'] = self.chain
        if self.dropped:
            out['dropped'] = [*self.dropped, *(['...'] if self.dropped_cut else [])]
        return out

    def unsent_output(self, answer_devices: tuple[str, ...]) -> int:
        """Bytes the nodes wrote to ``answer_devices`` without a path (the answer's body)
        that a JSON report replaced: a job submitted with ``--json`` stores the report,
        not them (a ``connect`` link, ``out/<node>``, has no path either: not counted)."""
        nodes = (self.report or {}).get('nodes') or []
        return sum(out.get('bytes') or 0 for node in nodes if isinstance(node, Mapping)
                   for out in node.get('outputs') or []
                   if isinstance(out, Mapping) and out.get('path') is None and
                   out.get('device') in answer_devices)

    def discarded_stdout(self) -> dict[str, int]:
        """The bytes each node wrote to a stdout its job does not declare (by the JSON
        report: written, but no output of device stdout), which the sandbox discards.
        Only a node's first replica returns outputs, so only it tells: when it failed
        (a host killed it, no server could run it), whether the stdout of the replicas
        after it was declared is not known, and nothing is said."""
        found: dict[str, int] = {}
        for node in (self.report or {}).get('nodes') or []:
            if not isinstance(node, Mapping) or node.get('replica', 1) != 1 \
                    or node.get('failed'):
                continue
            if any(isinstance(out, Mapping) and out.get('device') == 'stdout'
                   for out in node.get('outputs') or []):
                continue
            channels = (node.get('accounting') or {}).get('channels') or {}
            written = (channels.get('/dev/stdout') or {}).get('write_bytes') or 0
            if written:
                found.setdefault(str(node.get('name', '')), written)
        return found

    def lost(self) -> list[str]:
        """What the job lost though it may have succeeded, an entry each as
        ``X-Nexe-Dropped`` has them (``wc: 12 bytes written to an undeclared stdout``,
        ``wc: out not stored (3 bytes < min_size 10)``); an answer without it (an older
        server, ``zvm``'s report): the undeclared stdouts its JSON report shows."""
        if self.dropped:
            return self.dropped
        return [f'{name}: {n} {UNDECLARED}' for name, n in self.discarded_stdout().items()]

    def said_sizes(self) -> list[int] | None:
        """Each node's part's size as ``X-Nexe-Body-Bytes`` says, None unless it says
        for every node: also of a body passed on as it came (``streamed``, not held)."""
        sizes = [n.body_bytes for n in self.nodes]
        return sizes if sizes and None not in sizes else None

    def part_sizes(self) -> list[int] | None:
        """:meth:`said_sizes` of the body held; None when the answer does not say (a JSON
        report, a failure, headers cut) or they do not add up: whether the body splits,
        without copying it into parts."""
        sizes = self.said_sizes()
        if sizes is None or self.report is not None or self.status >= 300 or \
                self.truncated or sum(sizes) != len(self.body):
            return None
        return sizes

    def parts(self) -> list[tuple[str, bytes]] | None:
        """Each node's part of the body (copies of it), once per node however many
        replicas it ran as: the headers give each replica a value, but only its first
        returns outputs (the others' ``X-Nexe-Body-Bytes`` are 0), so a node's part is
        the bytes of all its entries; None as for :meth:`part_sizes`."""
        sizes = self.part_sizes()
        if sizes is None:
            return None
        parts: dict[str, bytes] = {}
        start = 0
        for node, size in zip(self.nodes, sizes, strict=True):
            parts[node.name] = parts.get(node.name, b'') + self.body[start:start + size]
            start += size
        return list(parts.items())


def _split(value: str | None) -> tuple[list[str], bool]:
    """A header's per-node values, and whether it was cut (ends with ``...``)."""
    if value is None:
        return [], False
    items = [v.strip() for v in value.split(',')]
    if items and items[-1] == '...':
        return items[:-1], True
    return items, False


def _int(text: object) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _float(text: object) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def nodes_from_headers(headers: Mapping[str, str]) -> tuple[list[NodeResult], float | None, bool]:
    """Nodes from ``X-Nexe-*`` headers (keys lower case): (nodes, job seconds, truncated)."""
    names, cut = _split(headers.get(NEXE + 'system'))
    nodes = [NodeResult(name) for name in names]
    for key, attr, conv in (('status', 'status', str), ('retcode', 'retcode', _int),
                            ('host', 'host', str), ('body-bytes', 'body_bytes', _int)):
        values, more = _split(headers.get(NEXE + key))
        cut |= more
        for node, value in zip(nodes, values, strict=False):
            setattr(node, attr, conv(value))
    cdr, more = _split(headers.get(NEXE + 'cdr-line'))
    cut |= more
    seconds = _float(cdr[0]) if cdr else None
    for node, (secs, counts) in zip(nodes, zip(cdr[1::2], cdr[2::2], strict=False), strict=False):
        node.seconds = _float(secs)
        numbers = [_int(x) for x in counts.split()]
        if len(numbers) == 4:
            node.fuel, _, node.bytes_in, node.bytes_out = numbers
    errors, more = _split(headers.get(NEXE + 'error'))
    cut |= more     # not X-Nexe-Truncated: it is also set for the headers zc does not read
    _merge_errors(nodes, [tuple(e.split(': ', 1)) for e in errors if ': ' in e])
    if errors and not cut:          # the server names every failed node, and only those
        for node in nodes:
            node.verdict = node.status != OK or bool(node.error)
    return nodes, seconds, cut


def _merge_errors(nodes: list[NodeResult], errors: list[tuple[str, ...]],
                  replace: bool = False) -> None:
    """Give each node its error by name (``replace``: also those it has)."""
    by_name: dict[str, list[NodeResult]] = {}
    for node in nodes:
        by_name.setdefault(node.name, []).append(node)
    for name, message in errors:
        for node in by_name.get(name, []):
            if replace or not node.error:
                node.error = message


def node_from_report(entry: Mapping) -> NodeResult:
    """A node from one entry of the JSON report (or from a ``zvm run`` report)."""
    acc = entry.get('accounting') or {}
    channels = (acc.get('channels') or {}).values()
    node = NodeResult(
        name=str(entry.get('name', '')), status=str(entry.get('status', '')),
        retcode=_int(entry.get('retcode')), host=str(entry.get('host') or ''),
        fuel=_int(acc.get('fuel')), seconds=_float(entry.get('seconds', acc.get('wall_time'))),
        bytes_in=sum(c.get('read_bytes', 0) for c in channels) if channels else None,
        bytes_out=sum(c.get('write_bytes', 0) for c in channels) if channels else None,
        error=str(entry.get('error') or entry.get('message') or ''),
        object=str(entry.get('object') or ''), stderr=str(entry.get('stderr') or ''))
    if isinstance(entry.get('failed'), bool):
        node.verdict = entry['failed']
    return node


def _json_report(body: bytes) -> dict | None:
    try:
        report = json.loads(body)
    except ValueError:
        return None
    if isinstance(report, dict) and isinstance(report.get('nodes'), list):
        return report
    return None


def _failure_body(body: bytes) -> tuple[list[tuple[str, ...]], dict[str, str]]:
    """A failed job's body: its ``<node>: <status>: <what happened>`` lines, and the
    ``--- stderr of <node> (...) ---`` sections that may follow, by node."""
    text = body.decode('utf-8', 'replace')
    head, *sections = STDERR_SECTION.split(text)
    errors = []
    for line in head.splitlines():
        name, sep, what = line.partition(': ')
        if sep and what:
            errors.append((name, what))
    return errors, dict(zip(sections[::2], sections[1::2], strict=False))


def parse(status: int, headers: Mapping[str, str], body: bytes) -> JobResult:
    """Everything the answer says (``headers`` with lower-case keys)."""
    headers = {k.lower(): v for k, v in headers.items()}
    content_type = headers.get('content-type', '').partition(';')[0].strip()
    report = _json_report(body) if content_type == 'application/json' else None
    nodes, seconds, truncated = nodes_from_headers(headers)
    summary = summary_from_headers(headers) if report is None else None
    if summary is not None:
        seconds = _float(headers.get(NEXE + 'cdr-total', '').partition(',')[0])
    if report is not None:
        by_name = {n.name: n for n in nodes}
        nodes = [node_from_report(entry) for entry in report['nodes']
                 if isinstance(entry, Mapping)]
        for node in nodes:          # what the report left out, the headers may say
            known = by_name.get(node.name)
            if known is not None and not node.error:
                node.error = known.error
        seconds, truncated = _float(report.get('seconds')), False
    elif status >= 300:
        errors, stderr = _failure_body(body)
        if summary is not None:     # a large job: its failed nodes are named in the body
            nodes = [NodeResult(name) for name in dict.fromkeys(e[0] for e in errors)]
        _merge_errors(nodes, errors, replace=True)     # whole lines; the header's are cut
        for node in nodes:
            node.stderr = node.stderr or stderr.get(node.name, '')
    if report is None and status == 200 and not truncated:
        for node in nodes:          # no X-Nexe-Error: an exit code the job accepts
            node.verdict = node.verdict or node.status != OK
    stopped = headers.get(NEXE + 'status', '') if status >= 300 and not nodes else ''
    stopped = stopped if stopped in STOPPED else ''
    dropped, dropped_cut = _split(headers.get(NEXE + 'dropped'))
    return JobResult(status, nodes, seconds, truncated, body, report, summary, stopped=stopped,
                     counts=_counts(headers.get(NEXE + 'node-counts', '')) if stopped else None,
                     chain=headers.get('x-chain-stopped', ''),
                     foreign=headers.get('x-chain-foreign-code')
                     or headers.get('x-chain-foreign-input', ''),
                     reported_lost=headers.get(NEXE + 'reported-lost', ''),
                     dropped=[d for d in dropped if d], dropped_cut=dropped_cut)


def _counts(text: str) -> dict[str, int] | None:
    """``total 3, done 1, failed 0, stopped 2`` (X-Nexe-Node-Counts) as a dict; None
    when there is none (an older server's result) or it does not read so."""
    pairs = [item.split() for item in text.split(',')] if text else []
    if not pairs or any(len(p) != 2 or not p[1].isdigit() for p in pairs):
        return None
    return {key: int(value) for key, value in pairs}


def stored_answer(headers_json: bytes) -> tuple[int, dict[str, str]]:
    """(status, headers) of a deferred job's ``.headers`` object (JSON), ``Objects`` left out."""
    stored = json.loads(headers_json)
    stored.pop(OBJECTS, None)
    return (_int(str(stored.get('Status', '')).partition(' ')[0]) or 0,
            {str(k): str(v) for k, v in stored.items()})


def parse_stored(headers_json: bytes, body: bytes) -> JobResult:
    """A deferred job's result: its ``.headers`` object (JSON) and its body; its
    ``Objects`` name the object of each node the answer does not place."""
    objects = json.loads(headers_json).get(OBJECTS)
    result = parse(*stored_answer(headers_json), body)
    if isinstance(objects, dict):
        for node in result.nodes:
            node.object = node.object or str(objects.get(node.name) or '')
    return result

"""The answer to a job: each node's result, the ``X-Nexe-*`` headers, the body.

The body is the JSON report (``X-Zerovm-Report: json``), the failed nodes
with the end of their stderr, or what the nodes wrote to their unnamed
outputs (a CGI response, ``zerocloud.cgiout``).  doc/http-api.md documents
the headers and the report for users.

Memory per response is a few buffers, whatever the outputs' size (issue 15.8):
the dispatcher writes each node's outputs into an ``OutputFile`` as they
arrive (``zerocloud.proxy.outputs``: memory while small, else disk); the
headers go once every node has finished (the status depends on all of
them), and the body (:class:`Body`) is read from those files :data:`CHUNK`
bytes at a time, in node order.  A report or a
failure listing is written the same way, node by node.  ``ETag`` stays the
MD5 of the body: the object server's MD5 of the channel when the body is one
whole channel, else hashed as it is written (report, failures) or by reading
the spooled parts once in a thread before the headers go.  Above
:data:`SUMMARY_NODES` results the ``X-Nexe-*`` headers are a summary
(:func:`summary_headers`) instead of one column per node.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from swift.common.concurrency import tpool
from swift.common.swob import Response
from swift.common.utils import close_if_possible

from zerocloud import cgiout, graph, turns, wire
from zerocloud.answer_format import DROPPED_HEADER as DROPPED
from zerocloud.answer_format import (
    NODES_HEADER,
    REPLICAS_HEADER,
    SUMMARY_NODES,
    UNDECLARED,
    UNDER_MIN,
    exit_error,
)
from zerocloud.job import Device, Node
from zerocloud.proxy.outputs import OutputFile

MAX_HEADER = 8192
CHUNK = 65536               # bytes of a body read and sent at a time
MAX_ERROR = 300


def _limit_hint(option: str, then: str) -> str:
    """What sets a limit the user cannot raise, and what to do (no comma: the per-node
    headers are comma-separated)."""
    return (f'the limit is {option} in the proxy and object server config (the smaller '
            f'holds): {then}')


TOO_MUCH = ('an endless loop or too much work for one node: split its input (a * gives a '
            'node each) or ask the operator')
MEMORY_HINT = _limit_hint('zerovm_maxnexemem', 'ask the operator to raise it')
QUOTA_HINT = _limit_hint('zerovm_maxoutput', 'write less or ask the operator to raise it')
TIMEOUT_HINT = _limit_hint('zerovm_timeout', TOO_MUCH)
# what the user cannot raise, by status: who can, and how
HINTS = {'memory': ('memory limit reached', MEMORY_HINT),
         'quota': ('write quota exceeded', QUOTA_HINT),
         'timeout': ('wall-clock timeout', TIMEOUT_HINT),
         'fuel': ('fuel exhausted', _limit_hint('zerovm_fuel', TOO_MUCH))}
BODY_BYTES = 'X-Nexe-Body-Bytes'     # bytes of the response body from each node
# HTTP status of a node by how it ended; ``killed`` by the host's trouble (its report's
# ``host_failure``): 503 (NodeResult.http).
EXIT_FAILED = 422        # a program that exited with a code the job does not accept
HTTP_STATUS = {'ok': 200, 'validation': 422, 'fault': 422, 'fuel': 422, 'quota': 422,
               'memory': 422, 'refused': 400, 'killed': 500, 'unavailable': 503, 'timeout': 504,
               graph.MISMATCH: 409, graph.SKIPPED: 424}


def short(text: str, limit: int = MAX_ERROR) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = ' '.join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


# a header value has no control character (CR and LF would end it, NUL is refused by
# HTTP/1.1 parsers and proxies in front of Swift): what a node or a user wrote becomes a space
_CONTROLS = dict.fromkeys([*range(32), 127], ' ')


def header_text(text: str, limit: int = MAX_ERROR) -> str:
    """``text`` as one header value: one line of ASCII (any other character ``?``: the
    server writes headers in Latin-1, and failed on more), no control character, at most
    ``limit`` characters."""
    return short(text.translate(_CONTROLS), limit).encode('ascii', 'replace').decode()


def swift_reason(resp, limit: int = 120) -> str:
    """The text of a Swift error answer (``Upload exceeds quota.``), one line, tags
    dropped, at most ``limit`` characters; only the first KiB of the body is read."""
    head = b''
    for chunk in resp.app_iter or ():
        head += chunk
        if len(head) >= 1024:
            break
    close_if_possible(resp.app_iter)
    text = head[:1024].decode('utf-8', 'replace')
    text = re.sub(r'<[^>]*>', ' ', re.sub(r'<h1>.*?</h1>', ' ', text))   # swob's page
    return short(text, limit)


NOTHING_STORED: frozenset[str] = frozenset()   # one for every result (a set: 216 bytes)


class NodeResult:
    """What came back from the object server that ran one node."""

    def __init__(self, node: Node, policy: str = '',
                 report: wire.NodeReport | None = None) -> None:
        """``report``: the node's, when it came with its answer (none made to be
        replaced: a batch's nodes are read 10,000s at a time); else ``unavailable``."""
        self.node = node
        self.policy = policy
        self.report = wire.NodeReport('unavailable') if report is None else report
        self._bytes: tuple[wire.NodeReport, tuple[int, int]] | None = None
        self.outputs: dict[str, OutputFile] = {}    # device name -> its bytes
        self.stored = NOTHING_STORED                # devices stored as objects
        self.server = ''
        self.seconds = 0.0
        self.error = ''
        self.http_status: int | None = None
        self.replica = 1
        self.links: dict[str, int] = {}         # peer -> bytes of /dev/out/<peer>
        self.request_bytes = 0                  # sent to the object server that ran it
        self.program_bytes = 0                  # of which the program (0: its digest went)
        self.started: int | None = None         # when it started and ended, in the order
        self.finished: int | None = None        # of the job's events (zerocloud.graph)

    @property
    def status(self) -> str:
        return self.report.status

    def channel_bytes(self) -> tuple[int, int]:
        """The report's ``channel_bytes``, summed once per report: a node's are counted
        by its job's summary (``Tally``), its progress and its CDR header."""
        report = self.report
        if self._bytes is None or self._bytes[0] is not report:
            self._bytes = (report, report.channel_bytes())
        return self._bytes[1]

    @property
    def http(self) -> int:
        if self.http_status:
            return self.http_status
        if self.exit_failed:
            return EXIT_FAILED
        if self.status == 'killed' and self.report.host_failure:
            return 503      # its server could not run it (a 500 is a bug of ours)
        return HTTP_STATUS.get(self.status, 500)

    @property
    def failed(self) -> bool:
        return self.http != 200

    @property
    def exit_failed(self) -> bool:
        """Did the program exit by itself with a code the job does not count as success?"""
        retcode = self.report.retcode
        return (self.status == 'ok' and retcode is not None
                and retcode not in self.node.exec.ok_exit)

    @property
    def stderr(self) -> str:
        """The end of what the node wrote to stderr (the object server keeps the last
        64 KiB, whether the job declared the device or not)."""
        return self.report.stderr

    @property
    def what(self) -> str:
        """What went wrong, in one line: ``exit 1: <last line of stderr>`` for a
        program that exited with a failure code, else the message."""
        if self.error:
            return self.error
        if self.exit_failed:
            return exit_error(self.report.retcode, self.stderr)
        if self.status in HINTS:
            default, hint = HINTS[self.status]
            head, then, rest = (self.report.message or default).partition('; then: ')
            return f'{head}; {hint}{then}{rest}'
        return self.report.message or self.status

    @property
    def summary(self) -> str:
        """``<status>: <what happened>`` (``exit N: ...`` alone for a failed exit)."""
        if (self.exit_failed and not self.error) or (self.error and self.status == 'ok'):
            return self.what        # the program's exit, or storing its output, failed
        return f'{self.status}: {self.what}'

    def fail(self, status: str, message: str, http_status: int | None = None) -> None:
        self.report = wire.NodeReport(status, message=message)
        self.error = message
        self.http_status = http_status

    def size(self, device: str) -> int:
        out = self.outputs[device]
        size = out.seek(0, 2)
        out.seek(0)
        return size

    def path_outputs(self) -> Iterator[Device]:
        """The devices whose output this node wrote and that name a path to store it."""
        return (dev for dev in self.node.devices
                if dev.writable and dev.path is not None and dev.name in self.outputs)

    def short_of(self, dev: Device) -> int | None:
        """The size of this node's output of ``dev`` if it is under the device's
        ``min_size`` (so it is not stored), else None: the one rule for storing it
        and for saying it was not.  The output may be a file or, in a job's spool,
        ``(offset, size)``."""
        if not dev.min_size:
            return None
        out = self.outputs[dev.name]
        size = out[1] if isinstance(out, tuple) else self.size(dev.name)
        return size if size < dev.min_size else None

    def to_dict(self) -> dict:
        report = self.report
        outputs = []
        for dev in self.node.devices:
            if dev.writable and dev.name in self.outputs:
                outputs.append({'device': dev.name, 'path': str(dev.path) if dev.path else None,
                                'bytes': self.size(dev.name), 'stored': dev.name in self.stored})
        outputs += [{'device': graph.OUT + peer, 'path': None, 'bytes': size, 'stored': False}
                    for peer, size in self.links.items()]
        return {'name': self.node.name, 'replica': self.replica, 'status': self.status,
                'retcode': report.retcode, 'failed': self.failed,
                'message': report.message,
                'error': self.what if self.failed else self.error, 'stderr': self.stderr,
                'host': self.server, 'policy': self.policy, 'seconds': round(self.seconds, 6),
                'validation': report.validation, 'engine': report.engine,
                'engine_reason': report.engine_reason,
                'etags': report.etags, 'accounting': report.accounting, 'outputs': outputs,
                'dropped': undeclared_stdout(self),
                'object': str(self.node.attach.path) if attached_object(self.node) else None,
                'request_bytes': self.request_bytes, 'program_bytes': self.program_bytes,
                'started': self.started,
                'finished': self.finished}

    def close(self) -> None:
        for f in self.outputs.values():
            f.close()


def respond(results: list[NodeResult], seconds: float, report_json: bool) -> Response:
    """The job's response: the JSON report, the failures, or the nodes' output (CGI).

    The body is read from the nodes' spooled outputs (or spooled as it is made)
    and sent :data:`CHUNK` bytes at a time; closing it closes the results'
    outputs: the response owns them (closed here if making it fails).
    """
    try:
        status = max(r.http for r in results if r.status != graph.SKIPPED)
        headers = nexe_headers(results, seconds)

        def outputs() -> tuple[int, dict[str, str], list[Part], str]:
            status, written, parts, etag = output_body(results)
            if len(results) <= SUMMARY_NODES:
                sizes = {id(p.owner): p.size for p in parts}
                headers[BODY_BYTES], cut = header(sizes.get(id(r), 0) for r in results)
                if cut:
                    headers['X-Nexe-Truncated'] = 'true'
            return status, written, parts, etag
        return answer(status, headers, seconds, report_json, results, results, outputs,
                      lambda parts: Body(parts, results))
    except BaseException:
        for r in results:
            r.close()
        raise


def answer(status: int, headers: dict[str, str], seconds: float, report_json: bool,
           results: Iterable[NodeResult], failures: Iterable[NodeResult],
           outputs: Callable[[], tuple[int, dict[str, str], Iterable[Part], str]],
           body: Callable[[Iterable[Part]], Body]) -> Response:
    """The response of a job of ``status`` with ``headers``: the JSON report of
    ``results``, else the list of ``failures`` (both read as often as needed), else
    ``outputs()`` (status, CGI headers, parts, MD5); ``body(parts)`` reads them."""
    content_type = 'text/plain'
    if report_json:
        part, etag = spool_body(report_pieces(status, seconds, results))
        parts, content_type = [part], 'application/json'
    elif status != 200:
        part, etag = spool_body(failure_pieces(failures))
        parts = [part]
    else:
        try:
            status, written, parts, etag = outputs()
        except cgiout.CgiError as e:
            part, etag = spool_body([f'{e}\n'.encode()])
            status, written, parts = 422, {}, [part]
        content_type = written.pop('Content-Type', content_type)
        headers.update(written)
    headers['Etag'] = etag
    resp = Response(status=status, headers=headers, content_type=content_type,
                    app_iter=body(parts))
    resp.content_length = sum(p.size for p in parts)
    return resp


@dataclass
class Part:
    """``size`` bytes of ``file`` from ``start``: one node's part of a body."""

    file: object
    start: int
    size: int
    owner: object = None                # the NodeResult whose output it is


def read_parts(parts: Iterable[Part]) -> Iterator[bytes]:
    """The bytes of ``parts`` in order, at most :data:`CHUNK` at a time; small parts
    gathered into one chunk (the parts of a wildcard's nodes are a few bytes each,
    and each chunk passes every filter of the proxy's pipeline and a send)."""
    gathered, size = [], 0
    for part in parts:
        part.file.seek(part.start)
        left = part.size
        while left > 0:
            chunk = part.file.read(min(CHUNK - size, left))
            if not chunk:
                raise OSError(f'spooled output ended {left} bytes early')
            left -= len(chunk)
            gathered.append(chunk)
            size += len(chunk)
            if size >= CHUNK:
                yield b''.join(gathered)
                gathered, size = [], 0
    if gathered:
        yield b''.join(gathered)


class Body:
    """A response body (WSGI ``app_iter``) read from spooled files; closing it
    closes them and the outputs of ``results``."""

    def __init__(self, parts: list[Part], results: list[NodeResult]) -> None:
        self.parts, self.results = parts, results

    def __iter__(self) -> Iterator[bytes]:
        return read_parts(self.parts)

    def close(self) -> None:
        for part in self.parts:
            if part.owner is None:
                part.file.close()
        for r in self.results:
            r.close()


def spool_body(pieces: Iterable[bytes]) -> tuple[Part, str]:
    """A body made here (report, failures): spooled as it is made, with its MD5."""
    out, md5 = OutputFile(), hashlib.md5()
    try:
        for piece in pieces:
            out.write(piece)
            md5.update(piece)
    except BaseException:
        out.close()
        raise
    return Part(out, 0, out.tell()), md5.hexdigest()


def output_body(results: list[NodeResult]) -> tuple[int, dict[str, str], list[Part], str]:
    """(status, headers, parts, MD5) of the body the nodes wrote: each node's first
    written device without a path, less its CGI head; only the heads are read."""
    found = []
    for r in results:
        dev = next((d for d in r.node.devices
                    if d.writable and d.path is None and d.name in r.outputs), None)
        if dev is not None:
            out = r.outputs[dev.name]
            out.seek(0)
            found.append((r, dev, out.read(cgiout.HEAD_BYTES)))
    status, written, starts = cgiout.compose(
        [(r.node.name, dev.content_type, head) for r, dev, head in found])
    parts = [Part(r.outputs[dev.name], start, r.size(dev.name) - start, r)
             for (r, dev, _), start in zip(found, starts, strict=True)]
    known = (len(found) == 1 and starts[0] == 0
             and found[0][0].report.etags.get('/dev/' + found[0][1].name))
    return status, written, parts, known or body_md5(parts)


def body_md5(parts: list[Part]) -> str:
    """MD5 of the bytes of ``parts``, read from their spools once, in a thread (off the
    hub: hundreds of MB take a fraction of a second)."""
    def digest() -> str:
        md5 = hashlib.md5()
        for chunk in read_parts(parts):
            md5.update(chunk)
        return md5.hexdigest()
    return tpool.execute(digest)


def report_pieces(status: int, seconds: float, results: list[NodeResult]) -> Iterator[bytes]:
    """``json.dumps({"status", "seconds", "nodes": [...]}, indent=1)``, made one node
    at a time (a job may have 100,000)."""
    yield (f'{{\n "status": {json.dumps(status)},\n "seconds": '
           f'{json.dumps(round(seconds, 6))},\n "nodes": [').encode()
    for i, r in enumerate(results):
        turns.take()                    # the server's writes of the pieces may never wait
        text = json.dumps(r.to_dict(), indent=1).replace('\n', '\n  ')
        yield f'{"," if i else ""}\n  {text}'.encode()
    yield b'\n ]\n}' if results else b']\n}'


def failure_pieces(results: Iterable[NodeResult]) -> Iterator[bytes]:
    """The body of a failed job: a line per failed node, then the end of their stderr
    (``results`` is read twice: a list, or a job's spool)."""
    for r in results:
        if r.failed:
            yield f'{r.node.name}: {r.summary}\n'.encode()
    for r in results:
        if r.failed and r.stderr:
            yield (f'\n--- stderr of {r.node.name} (its end) ---\n{r.stderr}'
                   + ('' if r.stderr.endswith('\n') else '\n')).encode()


def attached_object(node: Node) -> bool:
    """Does the node have an object to run next to (its attached device reads one)?"""
    return node.attach is not None and node.attach.readable and node.attach.path is not None


# a comma, which separates the nodes' values, becomes a semicolon (one pass of translate)
_ITEM_CHARS = {**_CONTROLS, ord(','): ';'}


def header(values: Iterable[object], sep: str = ',') -> tuple[str, bool]:
    """One header value per node, at most MAX_HEADER bytes: (text, truncated).  The
    values are read only as far as the header goes (a job may have 100,000)."""
    items, length = [], -len(sep)
    for value in values:
        item = str(value).translate(_ITEM_CHARS)
        items.append(item)
        length += len(item) + len(sep)
        if length > MAX_HEADER:
            break
    else:
        return sep.join(items), False
    kept, length = [], len(sep) + 3
    for item in items:
        length += len(item) + len(sep)
        if length > MAX_HEADER:
            break
        kept.append(item)
    return sep.join([*kept, '...']), True


def nexe_headers(results: list[NodeResult], seconds: float) -> dict[str, str]:
    """ZeroCloud's ``X-Nexe-*`` response headers: one comma-separated column per item,
    or for more than :data:`SUMMARY_NODES` results a summary (:func:`summary_headers`)."""
    if len(results) > SUMMARY_NODES:
        return summary_headers(results, seconds)
    def validation(r):
        state = r.report.validation
        if r.status == 'validation':
            return 1
        return 0 if state in ('ok', 'cached') else 2

    def etags(r):
        tags = r.report.etags
        return ' '.join(f'{k} {v}' for k, v in sorted(tags.items())) or 'disabled'

    def cdr(r):
        acc = r.report.accounting
        read, written = r.channel_bytes()
        return [f'{r.seconds:.3f}',
                f'{acc.get("fuel", 0)} {acc.get("syscalls", 0)} {read} {written}']

    columns = {
        'X-Nexe-System': [r.node.name for r in results],
        'X-Nexe-Status': [r.status for r in results],
        'X-Nexe-Retcode': ['' if r.report.retcode is None else r.report.retcode
                           for r in results],
        'X-Nexe-Validation': [validation(r) for r in results],
        'X-Nexe-Etag': [etags(r) for r in results],
        'X-Nexe-Host': [r.server for r in results],
        'X-Nexe-Policy': [r.policy for r in results],
    }
    headers, truncated = {}, False
    for name, values in columns.items():
        headers[name], cut = header(values)
        truncated |= cut
    headers['X-Nexe-Cdr-Line'], cut = header(
        [f'{seconds:.3f}', *(x for r in results for x in cdr(r))], sep=', ')
    truncated |= cut
    truncated |= error_header(results, headers)
    dropped = [entry for r in results for entry in dropped_entries(r)]
    if dropped:
        headers[DROPPED], cut = header(dropped, sep=', ')
        truncated |= cut
    if truncated:
        headers['X-Nexe-Truncated'] = 'true'
    return headers


def undeclared_stdout(r: NodeResult) -> int:
    """Bytes the node of ``r`` wrote to a stdout its job does not declare: the object
    server gave it ``/dev/null`` and they are lost, which only the report's accounting
    said (the JSON report): :data:`DROPPED` says it in the plain response too."""
    channel = (r.report.accounting.get('channels') or {}).get('/dev/stdout')
    if not channel or any(d.name == 'stdout' for d in r.node.devices):
        return 0
    return channel.get('write_bytes', 0)


def dropped_entries(r: NodeResult) -> list[str]:
    """``r``'s part of :data:`DROPPED`: the bytes it wrote to an undeclared stdout, and
    each output with a path left unstored for being under its ``min_size`` (no comma:
    the header's entries are comma-separated)."""
    entries = [f'{r.node.name}: {n} {UNDECLARED}'] if (n := undeclared_stdout(r)) else []
    return entries + [f'{r.node.name}: {dev.name} not stored ({size} bytes < min_size '
                      f'{dev.min_size})' for dev, size in under_min_size(r)]


def under_min_size(r: NodeResult) -> list[tuple[Device, int]]:
    """The outputs of ``r`` with a path that are smaller than their device's
    ``min_size``, and their sizes: not stored, which the answer said nowhere."""
    return [(dev, size) for dev in r.path_outputs() if (size := r.short_of(dev)) is not None]


def error_header(results: Iterable[NodeResult], headers: dict[str, str]) -> bool:
    """Set ``X-Nexe-Error`` when a node failed: ``<node>: <what happened>`` for each
    (ASCII); whether it was cut."""
    errors = (f'{r.node.name}: {header_text(r.what)}' for r in results if r.failed)
    first = next(errors, None)
    if first is None:
        return False
    headers['X-Nexe-Error'], cut = header(itertools.chain([first], errors), sep=', ')
    return cut


class Tally:
    """The counts and totals of a job's results that its summary headers give, kept
    as nodes end and their results change (``add(results, -1)``) without keeping them.

    A node counts once however many replicas it ran as (``replicate``), failed when
    any of them failed, as the deferred job's state counts it
    (``zerocloud.deferred.Progress``); statuses, exit codes and totals count each
    replica's run; :attr:`replicas` how many nodes ran as how many replicas."""

    def __init__(self) -> None:
        self.nodes = self.failed = 0
        self.statuses: collections.Counter = collections.Counter()
        self.retcodes: collections.Counter = collections.Counter()
        self.replicas: collections.Counter = collections.Counter()  # replicas -> nodes
        self.totals = [0, 0, 0, 0]           # fuel, syscalls, bytes read, bytes written
        self.dropped = [0, 0]                # nodes, bytes written to an undeclared stdout
        self.unstored = 0                    # outputs not stored: under their min_size

    def add(self, results: list[NodeResult], sign: int = 1, failed: bool | None = None) -> None:
        """Count one node's ``results``, one per replica (``sign`` -1: no longer);
        ``failed``: whether any of them failed, if known."""
        self.nodes += sign
        if failed is None:
            failed = any(r.failed for r in results)
        self.failed += sign * failed
        self.replicas[len(results)] += sign
        totals = self.totals
        lost = 0
        for r in results:
            report = r.report
            self.statuses[report.status] += sign
            if report.retcode is not None:
                self.retcodes[report.retcode] += sign
            acc = report.accounting
            read, written = r.channel_bytes()
            totals[0] += sign * acc.get('fuel', 0)
            totals[1] += sign * acc.get('syscalls', 0)
            totals[2] += sign * read
            totals[3] += sign * written
            lost = max(lost, undeclared_stdout(r))  # each replica lost the same bytes
            self.unstored += sign * len(under_min_size(r))
        if lost:
            self.dropped[0] += sign
            self.dropped[1] += sign * lost

    def __iadd__(self, other: Tally) -> Tally:
        """``other``'s counts too (two jobs answered as one: ``zerocloud.sql``)."""
        self.nodes += other.nodes
        self.failed += other.failed
        self.statuses += other.statuses
        self.retcodes += other.retcodes
        self.replicas += other.replicas
        self.totals = [a + b for a, b in zip(self.totals, other.totals, strict=True)]
        self.dropped = [a + b for a, b in zip(self.dropped, other.dropped, strict=True)]
        self.unstored += other.unstored
        return self

    def headers(self, seconds: float) -> dict[str, str]:
        headers = {
            NODES_HEADER: str(self.nodes),
            'X-Nexe-Failed': str(self.failed),
            'X-Nexe-Status-Counts': ', '.join(f'{k} {n}' for k, n in
                                              sorted(self.statuses.items()) if n),
            'X-Nexe-Retcode-Counts': ', '.join(f'{k} {n}' for k, n in
                                               sorted(self.retcodes.items()) if n),
            'X-Nexe-Cdr-Total': f'{seconds:.3f}, {" ".join(map(str, self.totals))}',
        }
        if any(n for k, n in self.replicas.items() if k > 1):
            headers[REPLICAS_HEADER] = ', '.join(f'{k} {n}' for k, n in
                                                 sorted(self.replicas.items()) if n)
        nodes, dropped = self.dropped
        lost = [f'{nodes} node{"s" if nodes != 1 else ""}: {dropped} {UNDECLARED}'
                ] if nodes else []
        if self.unstored:       # which: the JSON report's outputs, "stored": false
            lost.append(f'{self.unstored} output{"s" if self.unstored != 1 else ""} '
                        f'{UNDER_MIN}')
        if lost:                # which: the JSON report's "dropped"
            headers[DROPPED] = ', '.join(lost)
        return headers


def summary_headers(results: list[NodeResult], seconds: float) -> dict[str, str]:
    """The ``X-Nexe-*`` headers of a large job: counts and totals, whatever its size
    (the per-node report is the body with ``X-Zerovm-Report: json``)."""
    tally, nodes = Tally(), {}
    for r in results:                   # a node's replicas share its Node
        nodes.setdefault(id(r.node), []).append(r)
    for replicas in nodes.values():
        tally.add(replicas)
    headers = tally.headers(seconds)
    if error_header(results, headers):
        headers['X-Nexe-Truncated'] = 'true'
    return headers

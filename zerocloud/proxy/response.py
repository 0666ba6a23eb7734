"""The answer to a job: each node's result, the ``X-Nexe-*`` headers, the body.

The body is the JSON report (``X-Zerovm-Report: json``), the failed nodes
with the end of their stderr, or what the nodes wrote to their unnamed
outputs (a CGI response, ``zerocloud.cgiout``).  doc/http-api.md documents
the headers and the report for users.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from swift.common.swob import Response

from zerocloud import cgiout, graph, wire
from zerocloud.job import Node

MAX_HEADER = 8192
MAX_ERROR = 300
BODY_BYTES = 'X-Nexe-Body-Bytes'     # bytes of the response body from each node
# HTTP status of a node by how it ended.
EXIT_FAILED = 422        # a program that exited with a code the job does not accept
HTTP_STATUS = {'ok': 200, 'validation': 422, 'fault': 422, 'fuel': 422, 'quota': 422,
               'memory': 422, 'killed': 500, 'unavailable': 503, 'timeout': 504,
               graph.MISMATCH: 409, graph.SKIPPED: 424}


def short(text: str, limit: int = MAX_ERROR) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = ' '.join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


class NodeResult:
    """What came back from the object server that ran one node."""

    def __init__(self, node: Node, policy: str = '') -> None:
        self.node = node
        self.policy = policy
        self.report = wire.NodeReport('unavailable')
        self.outputs: dict[str, object] = {}    # device name -> spooled file
        self.stored: set[str] = set()           # devices stored as objects
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

    @property
    def http(self) -> int:
        if self.http_status:
            return self.http_status
        return EXIT_FAILED if self.exit_failed else HTTP_STATUS.get(self.status, 500)

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
            last = next((line.strip() for line in reversed(self.stderr.splitlines())
                         if line.strip()), '')
            return f'exit {self.report.retcode}' + (f': {last}' if last else '')
        return self.report.message or self.status

    @property
    def summary(self) -> str:
        """``<status>: <what happened>`` (``exit N: ...`` alone for a failed exit)."""
        return self.what if self.exit_failed and not self.error else f'{self.status}: {self.what}'

    def fail(self, status: str, message: str, http_status: int | None = None) -> None:
        self.report = wire.NodeReport(status, message=message)
        self.error = message
        self.http_status = http_status

    def size(self, device: str) -> int:
        out = self.outputs[device]
        size = out.seek(0, 2)
        out.seek(0)
        return size

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
                'etags': report.etags, 'accounting': report.accounting, 'outputs': outputs,
                'object': str(self.node.attach.path) if attached_object(self.node) else None,
                'request_bytes': self.request_bytes, 'program_bytes': self.program_bytes,
                'started': self.started,
                'finished': self.finished}

    def close(self) -> None:
        for f in self.outputs.values():
            f.close()


def respond(results: list[NodeResult], seconds: float, report_json: bool) -> Response:
    """The job's response: the JSON report, the failures, or the nodes' output (CGI)."""
    status = max(r.http for r in results if r.status != graph.SKIPPED)
    headers = nexe_headers(results, seconds)
    content_type = 'text/plain'
    if report_json:
        body = json.dumps({'status': status, 'seconds': round(seconds, 6),
                           'nodes': [r.to_dict() for r in results]}, indent=1).encode()
        content_type = 'application/json'
    elif status != 200:
        failed = [r for r in results if r.failed]
        body = ''.join(f'{r.node.name}: {r.summary}\n' for r in failed)
        body += ''.join(f'\n--- stderr of {r.node.name} (its end) ---\n{r.stderr}'
                        + ('' if r.stderr.endswith('\n') else '\n')
                        for r in failed if r.stderr)
        body = body.encode()
    else:
        parts, sizes = [], {}
        for r in results:
            dev = next((d for d in r.node.devices
                        if d.writable and d.path is None and d.name in r.outputs), None)
            if dev is not None:
                r.outputs[dev.name].seek(0)
                parts.append((r.node.name, dev.content_type, r.outputs[dev.name].read()))
                sizes[id(r)] = len(parts) - 1
        try:
            status, written, bodies = cgiout.compose(parts)
            body = b''.join(bodies)
            headers[BODY_BYTES], cut = header(
                len(bodies[sizes[id(r)]]) if id(r) in sizes else 0 for r in results)
            if cut:
                headers['X-Nexe-Truncated'] = 'true'
        except cgiout.CgiError as e:
            status, written, body = 422, {}, f'{e}\n'.encode()
        content_type = written.pop('Content-Type', content_type)
        headers.update(written)
    headers['Etag'] = hashlib.md5(body).hexdigest()
    return Response(status=status, body=body, headers=headers, content_type=content_type)



def attached_object(node: Node) -> bool:
    """Does the node have an object to run next to (its attached device reads one)?"""
    return node.attach is not None and node.attach.readable and node.attach.path is not None


def header(values: Iterable[object], sep: str = ',') -> tuple[str, bool]:
    """One header value per node, at most MAX_HEADER bytes: (text, truncated)."""
    items = [str(v).replace(',', ';').replace('\r', ' ').replace('\n', ' ') for v in values]
    text = sep.join(items)
    if len(text) <= MAX_HEADER:
        return text, False
    kept, length = [], len(sep) + 3
    for item in items:
        length += len(item) + len(sep)
        if length > MAX_HEADER:
            break
        kept.append(item)
    return sep.join([*kept, '...']), True


def nexe_headers(results: list[NodeResult], seconds: float) -> dict[str, str]:
    """ZeroCloud's ``X-Nexe-*`` response headers: one comma-separated column per item."""
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
        return [f'{r.seconds:.3f}',
                f'{acc.get("fuel", 0)} {acc.get("syscalls", 0)} '
                f'{r.report.channel_bytes("read_bytes")} {r.report.channel_bytes("write_bytes")}']

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
    errors = [f'{r.node.name}: {short(r.what)}'.encode('ascii', 'replace').decode()
              for r in results if r.failed]
    if errors:
        headers['X-Nexe-Error'], cut = header(errors, sep=', ')
        truncated |= cut
    if truncated:
        headers['X-Nexe-Truncated'] = 'true'
    return headers

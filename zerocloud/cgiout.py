"""A job's response written by the program itself: ``message/cgi`` and ``message/http``.

A written device without a path whose ``content_type`` is ``message/cgi``
starts with CGI headers (``Status: 404 Not Found``, ``Content-Type: ...``),
a blank line, then the body; with ``message/http`` it starts with a status
line (``HTTP/1.1 404 Not Found``) instead of ``Status:``.  When the job
succeeded, the first node's headers and status make the HTTP response, and
every node's part of the body goes without its headers.  Lines may end with
CRLF or LF.

Only these headers pass (others are ignored, so a program never overrides
what the proxy reports, such as ``X-Nexe-*``, ``ETag`` or lengths):
``Content-Type`` (default ``text/plain``), ``Content-Disposition``,
``Content-Encoding``, ``Content-Language``, ``Cache-Control``, ``Expires``,
``Last-Modified``, ``Location``, ``X-Object-Meta-*`` and ``X-Zerovm-Execute``
(which makes the response the next job of a chain, see
``zerocloud.chain``).  A status from 200 to 599 is allowed.  Output that does
not parse is a 422 naming the node.
"""

from __future__ import annotations

import re

CGI = 'message/cgi'
HTTP = 'message/http'
DEFAULT_TYPE = 'text/plain'
MAX_HEAD = 65536
HEAD_BYTES = MAX_HEAD + 4       # read of an output to find its head's end
PASSED = {'content-type', 'content-disposition', 'content-encoding', 'content-language',
          'cache-control', 'expires', 'last-modified', 'location', 'x-zerovm-execute'}
PASSED_PREFIX = 'x-object-meta-'
_END = re.compile(rb'\r?\n\r?\n')
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_STATUS_LINE = re.compile(r'HTTP/1\.[01] (\d{3})(?: .*)?')
_STATUS = re.compile(r'(\d{3})(?: .*)?')


class CgiError(ValueError):
    """Output that claims to be CGI or HTTP and is not."""


def parse_head(content_type: str, head: bytes) -> tuple[int, dict[str, str], int]:
    """(status, passed headers, where the body starts) of one output in
    ``content_type`` (CGI or HTTP) that starts with ``head`` (its first
    :data:`HEAD_BYTES` bytes, or all of it)."""
    end = _END.search(head, 0, HEAD_BYTES)
    if end is None:
        raise CgiError(f'no blank line ends the headers in the first {MAX_HEAD} bytes')
    lines = head[:end.start()].decode('latin-1').splitlines()
    status = 200
    if content_type == HTTP:
        match = _STATUS_LINE.fullmatch(lines.pop(0) if lines else '')
        if match is None:
            raise CgiError('the first line is not an HTTP/1.x status line')
        status = int(match.group(1))
    headers = {'Content-Type': DEFAULT_TYPE}
    for line in lines:
        name, sep, value = line.partition(':')
        if not sep or not _TOKEN.fullmatch(name):
            raise CgiError(f'bad header line {line[:80]!r}')
        value = value.strip()
        if any(ord(c) < 32 and c != '\t' or c == '\x7f' for c in value):
            raise CgiError(f'control character in header {name}')
        if content_type == CGI and name.lower() == 'status':
            match = _STATUS.fullmatch(value)
            if match is None:
                raise CgiError(f'bad Status header {value[:80]!r}')
            status = int(match.group(1))
        elif name.lower() in PASSED or name.lower().startswith(PASSED_PREFIX):
            headers['Content-Type' if name.lower() == 'content-type' else name] = value
    if not 200 <= status <= 599:
        raise CgiError(f'status {status} is not a final HTTP status (200-599)')
    return status, headers, end.end()


def compose(parts: list[tuple[str, str | None, bytes]]
            ) -> tuple[int, dict[str, str], list[int]]:
    """(status, headers, where each part of the body starts) of the response made of
    each node's ``(name, content type, head of its output)`` (heads as for
    :func:`parse_head`); :class:`CgiError` naming the node when an output does
    not parse.  The outputs themselves stay where they are (spooled): only
    their heads are read."""
    status, headers, starts = 200, {'Content-Type': DEFAULT_TYPE}, []
    for i, (node, content_type, head) in enumerate(parts):
        start = 0
        if content_type in (CGI, HTTP):
            try:
                code, found, start = parse_head(content_type, head)
            except CgiError as e:
                raise CgiError(f'{node}: its {content_type} output is not valid: {e}') from None
            if i == 0:
                status, headers = code, found
        elif i == 0 and content_type:
            headers = {'Content-Type': content_type}
        starts.append(start)
    return status, headers, starts

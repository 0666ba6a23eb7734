"""Talking to Swift as the ``swift`` command does.

Authentication is python-swiftclient's: the same options and variables
(``ST_AUTH``/``ST_USER``/``ST_KEY`` for v1, ``OS_AUTH_URL``, ``OS_USERNAME``,
``OS_PASSWORD``, ``OS_PROJECT_NAME``... for Keystone, or
``OS_STORAGE_URL`` with ``OS_AUTH_TOKEN``), parsed by
``swiftclient.shell.add_default_args`` and turned into a ``Connection`` by
``swiftclient.service.get_conn``.  Execute requests go through the
connection's own HTTP connection (its TLS options), streamed, so a caller
can show progress and close the connection to cancel; with ``--debug`` (or
``--info``, for failures) they are logged as curl commands, as swiftclient
logs its own (the token hidden unless ``--debug-with-secrets``).
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from urllib.parse import quote, urlparse

import urllib3.exceptions
from swiftclient.client import get_account, get_container, http_log
from swiftclient.service import get_conn

from zerocloud.client.display import REFUSED
from zerocloud.job import SwiftPath, is_swift_url, parse_location

EXECUTE = 'X-Zerovm-Execute'
SQL = 'sql/1.0'
CHUNK = 1 << 16


class ServerError(Exception):
    """The server refused a request: its status and whole body say why."""

    def __init__(self, what: str, status: int, reason: str, body: bytes) -> None:
        text = body.decode('utf-8', 'replace').strip()
        if status == 401 and (not text or text.startswith('<html>')):  # the auth's page
            text = REFUSED
        super().__init__(f'{what}: {status} {reason}' + (f'\n{text}' if text else ''))
        self.status = status
        self.body = body


class AnswerCut(ServerError):
    """The answer's body ended before its end: what was received is not the output."""

    def __init__(self, received: int, length: int | None) -> None:
        of = f' of {length}' if length is not None else ''
        Exception.__init__(self, f'the answer was cut after {received}{of} bytes (the '
                           'connection closed early): what was written is incomplete; '
                           'run the job again or fetch its outputs')
        self.status, self.body = 0, b''


class Answer:
    """A streamed response: status, headers (lower-case keys), body chunks."""

    def __init__(self, resp, method: str = 'GET') -> None:
        self._resp = resp
        self.status = resp.status
        self.reason = resp.reason or ''
        self.headers = {k.lower(): v for k, v in resp.getheaders()}
        self.received = 0
        length = self.headers.get('content-length', '')
        bodiless = method == 'HEAD' or self.status in (204, 304) or self.status < 200
        self.length = int(length) if length.isdigit() and not bodiless else None

    def chunks(self) -> Iterator[bytes]:
        """The body as it comes; one cut short (the proxy or the connection went
        away) raises ``AnswerCut``: a ``Content-Length`` body may end quietly at
        the connection's end, which would pass for a short output."""
        try:
            while chunk := self._resp.read(CHUNK):
                self.received += len(chunk)
                yield chunk
        except (http.client.IncompleteRead, urllib3.exceptions.HTTPError):
            raise AnswerCut(self.received, self.length) from None
        if self.length is not None and self.received < self.length:
            raise AnswerCut(self.received, self.length)

    def read(self) -> bytes:
        return b''.join(self.chunks())


class Session:
    """An authenticated connection to one Swift account."""

    def __init__(self, options: dict) -> None:
        self.conn = get_conn(options)
        self._http = None
        # OS_STORAGE_URL with OS_AUTH_TOKEN and nothing to log in with: swiftclient
        # drops a refused token, then tries to log in ('No tenant specified'); send it
        # again instead, so that the server's 401 says it was refused
        self._given = ((self.conn.url, self.conn.token)
                       if self.conn.url and self.conn.token and not self.conn.authurl else None)

    def _auth(self) -> tuple[str, str]:
        if not (self.conn.url and self.conn.token):
            if self._given:
                self.conn.url, self.conn.token = self._given
            else:
                self.conn.get_auth()
        return self.conn.url, self.conn.token

    @property
    def url(self) -> str:
        return self._auth()[0]

    @property
    def account(self) -> str:
        return urlparse(self.url).path.rstrip('/').rpartition('/')[2]

    def location(self, url: str) -> SwiftPath:
        """``swift://~/c/o`` (or ``c/o``) in this account."""
        if not is_swift_url(url):
            url = 'swift://~/' + url.lstrip('/')
        return parse_location(url, self.account)

    def http_url(self, path: SwiftPath | None = None, prefix: str = '') -> str:
        """The HTTP URL of an object (``prefix`` ``/open``: its open URL)."""
        parsed = urlparse(self.url)
        version = parsed.path.strip('/').partition('/')[0]
        base = f'{parsed.scheme}://{parsed.netloc}'
        return base + (prefix or f'/{version}') + (quote(path.path) if path else
                                                    f'/{quote(self.account)}')

    def request(self, method: str, path: SwiftPath | None, headers: dict,
                body: bytes | None = None, prefix: str = '', query: str = '') -> Answer:
        """Send a request (``path`` None: the account) and return the streamed answer."""
        url, token = self._auth()
        target = self.http_url(path, prefix)
        # its own connection, kept on self only for cancel(): --split of a large job
        # fetches from threads, and another request may start before this one answered
        _, http = self.conn.http_connection(url)
        self._http = http
        headers = {'X-Auth-Token': token, **headers}
        http.request(method, urlparse(target).path + query, body, headers)
        resp = http.getresponse()
        http_log((target + query, method), {'headers': headers}, resp, b'')    # --debug
        return Answer(resp, method)

    def execute(self, body: bytes, content_type: str, headers: dict) -> Answer:
        """POST a job (or zapp) to the account."""
        return self.request('POST', None, {EXECUTE: '1.0', 'Content-Type': content_type,
                                           **headers}, body)

    def query(self, body: bytes) -> Answer:
        """POST a ``sql/1.0`` query (its JSON body, ``doc/sql.md``) to the account."""
        return self.request('POST', None, {EXECUTE: SQL, 'Content-Type': 'application/json'},
                            body)

    def cancel(self) -> None:
        """Close the connection of the request under way: the server stops its job."""
        if self._http is not None:
            self._http.close()

    def get(self, path: SwiftPath, headers: dict | None = None) -> bytes:
        """An object's content (raises ServerError with the server's whole body)."""
        answer = self.request('GET', path, headers or {})
        body = answer.read()
        if answer.status >= 300:
            raise ServerError(f'GET {path}', answer.status, answer.reason, body)
        return body

    def exists(self, path: SwiftPath) -> bool:
        answer = self.request('HEAD', path, {})
        answer.read()
        if answer.status == 404:
            return False
        if answer.status >= 300:
            raise ServerError(f'HEAD {path}', answer.status, answer.reason, b'')
        return True

    def put(self, path: SwiftPath, data: bytes, headers: dict | None = None) -> dict:
        """PUT an object, creating its container if needed; the answer's headers."""
        def put() -> Answer:
            return self.request('PUT', path, {'Content-Length': str(len(data)),
                                              **(headers or {})}, data)
        answer = put()
        body = answer.read()
        if answer.status == 404:
            self.ensure_container(path.container)
            answer = put()
            body = answer.read()
        if answer.status >= 300:
            raise ServerError(f'PUT {path}', answer.status, answer.reason, body)
        return answer.headers

    def set_container_meta(self, container: str, headers: dict) -> None:
        """POST metadata to a container, creating it (with them) if needed."""
        path = SwiftPath(self.account, container)
        answer = self.request('POST', path, headers, b'')
        body = answer.read()
        if answer.status == 404:
            answer = self.request('PUT', path, {'Content-Length': '0', **headers}, b'')
            body = answer.read()
        if answer.status >= 300:
            raise ServerError(f'POST {path}', answer.status, answer.reason, body)

    def delete(self, path: SwiftPath) -> None:
        """Delete an object; one already gone is fine."""
        answer = self.request('DELETE', path, {})
        body = answer.read()
        if answer.status >= 300 and answer.status != 404:
            raise ServerError(f'DELETE {path}', answer.status, answer.reason, body)

    def ensure_container(self, container: str) -> None:
        """Create the container (as ``swift upload`` does); nothing if it exists."""
        path = SwiftPath(self.account, container)
        answer = self.request('PUT', path, {'Content-Length': '0'}, b'')
        body = answer.read()
        if answer.status >= 300:
            raise ServerError(f'PUT {path}', answer.status, answer.reason, body)

    def _other(self, account: str) -> tuple[str, str, tuple]:
        """URL, token and connection for listing another account (as you: an ACL may
        allow it; a refusal is a ClientException, and the proxy will say why)."""
        url, token = self._auth()
        other = url.rstrip('/').rpartition('/')[0] + '/' + quote(account)
        return other, token, self.conn.http_connection(other)

    def list_objects(self, account: str, container: str, prefix: str = '') -> Iterator[str]:
        if account != self.account:
            url, token, http = self._other(account)
            _, objects = get_container(url, token, container, prefix=prefix or None,
                                       http_conn=http, full_listing=True)
        else:
            _, objects = self.conn.get_container(container, prefix=prefix or None,
                                                 full_listing=True)
        return (o.get('name') or o.get('subdir') for o in objects)

    def list_containers(self, account: str) -> Iterator[str]:
        if account != self.account:
            url, token, http = self._other(account)
            _, containers = get_account(url, token, http_conn=http, full_listing=True)
        else:
            _, containers = self.conn.get_account(full_listing=True)
        return (c['name'] for c in containers)

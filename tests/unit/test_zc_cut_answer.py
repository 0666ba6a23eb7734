"""A job's answer cut before its end (the proxy died, the connection dropped) is a
failure that zc says, never a short output with a success exit status.

``http.client`` reads a body with ``Content-Length`` in pieces (``read(amt)``) and
ends quietly at the connection's end however many bytes are missing; a chunked
body cut raises ``IncompleteRead``, an ``HTTPException`` that ``zc``'s main
catches nowhere (a traceback).  ``zc run`` now streams the output to stdout as it
comes (``Client.streams``): a cut one is written and exits as a job that ended.
"""

from __future__ import annotations

import http.client
import socket
import threading

import pytest

from zerocloud.client.session import Answer, ServerError


def _serve(raw: bytes) -> int:
    """The port of a server that answers one request with ``raw`` and closes."""
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(raw)
        conn.close()
        srv.close()
    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def _answer(raw: bytes, method: str = 'POST') -> Answer:
    """An ``Answer`` of a real ``http.client`` response whose server sends ``raw`` and
    closes the connection."""
    conn = http.client.HTTPConnection('127.0.0.1', _serve(raw), timeout=5)
    conn.request(method, '/v1/AUTH_t')
    return Answer(conn.getresponse(), method)


def test_a_whole_answer_is_read_whole() -> None:
    answer = _answer(b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello')
    assert answer.read() == b'hello'


def test_an_answer_shorter_than_its_content_length_is_an_error() -> None:
    answer = _answer(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n'
                     b'X-Nexe-Status: ok\r\n\r\nhello')
    with pytest.raises(ServerError, match='cut'):
        answer.read()


def test_a_chunked_answer_cut_is_an_error_zc_says() -> None:
    answer = _answer(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n')
    with pytest.raises(ServerError, match='cut'):
        answer.read()


@pytest.mark.parametrize('head', [
    b'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n',          # HEAD: the object's size
    b'HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n',
    b'HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n'])
def test_an_answer_without_a_body_is_not_cut(head: bytes) -> None:
    """A HEAD's answer names the object's length and has no body (``Session.exists``,
    ``zc validate``, ``zc wait``/``result`` read it): not an answer cut."""
    method = 'HEAD' if b' 200 ' in head else 'GET'
    answer = _answer(head, method)
    assert answer.read() == b''


def test_a_cut_answer_through_swiftclients_connection_is_an_error() -> None:
    """zc's requests go through swiftclient's connection (requests and urllib3), as
    ``Session.request`` sends them."""
    from swiftclient.client import HTTPConnection
    port = _serve(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello')
    http = HTTPConnection(f'http://127.0.0.1:{port}/v1/AUTH_t', timeout=5)
    http.request('POST', '/v1/AUTH_t', b'', {})
    answer = Answer(http.getresponse(), 'POST')
    with pytest.raises(ServerError, match='cut after 5 of 100 bytes'):
        answer.read()

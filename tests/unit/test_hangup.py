"""zerocloud.hangup: work stops when the peer of its request closes the connection."""

from __future__ import annotations

import pytest
from swift.common.concurrency import sleep, socket, spawn
from swift.common.swob import HTTPException

from zerocloud import hangup


class Input:
    """What eventlet's wsgi server puts in ``eventlet.input``: it knows the socket."""

    def __init__(self, sock) -> None:
        self._sock = sock


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield {'eventlet.input': Input(server)}, client
    server.close()
    client.close()


def work(env: dict, seconds: float) -> str:
    with hangup.stop_on_hangup(env, 'the test'):
        sleep(seconds)
        return 'done'


def test_the_work_stops_when_the_peer_closes(pair) -> None:
    env, client = pair
    worker = spawn(work, env, 30)
    sleep(0.05)
    client.close()
    with pytest.raises(HTTPException) as caught:
        worker.wait()
    assert caught.value.status_int == 499
    assert caught.value.body == b'the client went away: the test stopped\n'


def test_the_work_ends_as_usual_while_the_peer_waits(pair) -> None:
    env, client = pair
    assert work(env, 0.01) == 'done'
    client.close()                   # after the work: nothing is thrown into anything
    sleep(0.05)


def test_bytes_from_the_peer_are_not_a_hangup(pair) -> None:
    env, client = pair
    client.sendall(b'GET / HTTP/1.1\r\n')      # a pipelined request: not watched further
    worker = spawn(work, env, 0.2)
    sleep(0.05)
    client.close()
    assert worker.wait() == 'done'


def test_a_request_without_a_socket_is_not_watched() -> None:
    assert work({}, 0.01) == 'done'

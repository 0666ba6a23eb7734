"""zerocloud.object.hubwait: Swift's poll hub waits for its timers rounded up.

eventlet's poll hub polled with ``int(seconds * 1000)`` ms: a timer due in under a
millisecond made it poll with a timeout of 0 until it was due (a spin through the
fraction of every batch's few-millisecond pause).  What the hub asks ``poll`` for is
checked here, not how long anything takes.
"""

from __future__ import annotations

import pytest
from eventlet.hubs import epolls, poll

from zerocloud.object import hubwait, middleware


class _Poll:
    """A ``select.poll`` that records the timeouts it is asked to wait."""

    def __init__(self) -> None:
        self.timeouts: list[int] = []

    def poll(self, timeout: int) -> list:
        self.timeouts.append(timeout)
        return []


def _hub_waits(hub, seconds: list[float]) -> list[int]:
    hub.poll = _Poll()
    for s in seconds:
        hub.do_poll(s)
    return hub.poll.timeouts


def test_a_poll_hub_waits_whole_milliseconds_rounded_up() -> None:
    hub = poll.Hub()
    assert _hub_waits(hub, [0.0003, 2.7e-3, 0.0]) == [0, 2, 0]      # eventlet's own
    hubwait.round_up(hub)
    hubwait.round_up(hub)                                           # once is enough
    assert _hub_waits(hub, [0.0003, 2.7e-3, 0.0, 0.02]) == [1, 3, 0, 20]
    assert 'do_poll' not in vars(poll.Hub())                        # that hub alone


def test_a_hub_that_waits_seconds_as_they_are_is_left_as_it_is() -> None:
    hub = epolls.Hub()
    hubwait.round_up(hub)
    assert 'do_poll' not in vars(hub)


@pytest.mark.parametrize('method', ['POST', 'GET'])
def test_an_execute_request_rounds_its_hub_up_and_others_do_not(monkeypatch, method) -> None:
    hubs = []
    monkeypatch.setattr(hubwait, 'round_up', hubs.append)
    mw = middleware.ObjectExecMiddleware(lambda env, start: [b''], {})
    mw({'REQUEST_METHOD': method, 'PATH_INFO': '/sda1/0/a/c/o', 'HTTP_X_ZEROVM_EXECUTE': '1.0',
        'wsgi.input': None}, lambda *a: None)
    assert hubs == ([middleware.hubs.get_hub()] if method == 'POST' else [])

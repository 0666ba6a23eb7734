"""Stop work whose requester has gone away: a job's client, a node's proxy.

A job answered when it is done (not deferred) is work for a client who
waits; when that client closes its connection, nobody will read the answer.
Once the request body has been read, the connection says nothing until the
peer closes it, so a green thread waits for the socket of the request
(eventlet's ``eventlet.input``) to become readable and peeks at it: the end
of the stream (or a reset) means the peer has gone.  Then :class:`HangUp`
is raised in the green thread doing the work, wherever it waits:

* in the proxy filter, the job's nodes stop and their connections to the
  object servers close (``zerocloud.proxy``, ``zerocloud.graph``);
* in the object-server filter, the node's run stops and its worker process
  is killed and replaced (``zvm_core.pool``), so the worker is free again
  within a second instead of at the end of ``zerovm_timeout``.

Bytes on the socket (a pipelined request) or a socket that cannot be
watched (no ``eventlet.input``, TLS) stop the watch: the work then runs to
its end, as before.  Deferred jobs are never watched: they go on.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator

from swift.common.concurrency import getcurrent, hubs, spawn, trampoline

from zerocloud.httperrors import HTTPClientDisconnect


class HangUp(BaseException):
    """The requester has closed its connection (a BaseException, like eventlet's
    Timeout, so that no ``except Exception`` on the way swallows it)."""


def watch(env: dict, gone: Callable[[], None]):
    """Call ``gone()`` (from the hub) when the peer of the request in ``env`` closes
    its connection; returns the watching green thread (kill it to stop), or None
    when the request's socket cannot be watched."""
    sock = getattr(env.get('eventlet.input'), '_sock', None)
    if sock is None:
        return None

    def wait() -> None:
        try:
            trampoline(sock, read=True)
            left = sock.recv(1, socket.MSG_PEEK) == b''
        except (ConnectionError, TimeoutError):
            left = True
        except (OSError, ValueError):        # closed here, or not a plain socket
            return
        if left:
            hubs.get_hub().schedule_call_global(0, gone)
    return spawn(wait)


@contextlib.contextmanager
def stop_on_hangup(env: dict, what: str) -> Iterator[None]:
    """Run the block until it ends or the peer closes the connection; then raise
    499 (``HTTPClientDisconnect``) saying that ``what`` stopped."""
    current = getcurrent()
    running = [True]

    def gone() -> None:
        if running[0] and not current.dead:
            current.throw(HangUp())
    watcher = watch(env, gone)
    try:
        yield
    except HangUp:
        raise HTTPClientDisconnect(body=f'the client went away: {what} stopped\n') from None
    finally:
        running[0] = False
        if watcher is not None:
            watcher.kill()


def drain(env: dict) -> None:
    """Read what is left of the request body (the end of a tar stream), so that
    only the peer's closing makes its socket readable."""
    try:
        while env['wsgi.input'].read(65536):
            pass
    except (OSError, ValueError):
        pass

"""The pool's wire: one JSON message per datagram on a Unix socket, descriptors
passed with it (SCM_RIGHTS).  Both sides use it: the caller (``zvm_core.pool``)
sends requests and reads reports, the worker (``zvm_core.pool.worker``) the reverse.
"""

from __future__ import annotations

import errno
import json
import select
import socket
import time
from collections.abc import Iterable

from zvm_core.limits import MAX_FDS
from zvm_core.report import Report

MAX_MESSAGE = 1 << 20


def _report_from(data: dict) -> Report:
    from zvm_core.report import Accounting, ChannelAccounting
    acc = dict(data.get('accounting') or {})
    acc['channels'] = {k: ChannelAccounting(**v) for k, v in acc.get('channels', {}).items()}
    data = dict(data, accounting=Accounting(**acc))
    return Report(**data)


def _failed(status: str, message: str) -> Report:
    return Report(status, None, message, validation={'state': 'ok', 'violations': []})


def _wait(sock: socket.socket, readable: bool, deadline: float | None) -> None:
    left = None if deadline is None else max(0.0, deadline - time.monotonic())
    r, w, _ = select.select([sock] if readable else [], [] if readable else [sock], [], left)
    if not (r or w):
        raise TimeoutError


class MessageTooLarge(ValueError):
    """A message that one datagram of the worker socket cannot carry."""


def _send(sock: socket.socket, obj: object, fds: Iterable[int] = ()) -> None:
    """Send one message; :class:`MessageTooLarge` (nothing sent) if it cannot fit."""
    data = json.dumps(obj).encode()
    if len(data) > MAX_MESSAGE:
        raise MessageTooLarge(f'{len(data)} bytes; the worker transport carries at most '
                              f'{MAX_MESSAGE}')
    fds = list(fds)
    while True:
        try:
            socket.send_fds(sock, [data], fds)
            return
        except BlockingIOError:
            _wait(sock, False, None)
        except OSError as e:        # the socket buffer is smaller than MAX_MESSAGE here
            if e.errno != errno.EMSGSIZE:
                raise
            raise MessageTooLarge(f'{len(data)} bytes; more than the socket buffer '
                                  f'({sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)})'
                                  ) from None


def _socketpair() -> tuple[socket.socket, socket.socket]:
    """The worker's socket pair, with buffers for a MAX_MESSAGE datagram where the
    host allows (net.core.wmem_max); :func:`_send` refuses what does not fit."""
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in pair:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * MAX_MESSAGE)
    return pair


def _reply(sock: socket.socket, report: Report) -> None:
    """Send a report, or, if it cannot travel, a short one that says so."""
    try:
        _send(sock, report.to_dict())
    except MessageTooLarge as e:
        _send(sock, _failed('killed', f'the report of this run is too large to return: '
                                      f'{e}').to_dict())


def _recv(sock: socket.socket, deadline: float | None = None) -> tuple[object | None, list[int]]:
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
            break
        except BlockingIOError:
            _wait(sock, True, deadline)
    if not data:
        return None, fds
    return json.loads(data), fds


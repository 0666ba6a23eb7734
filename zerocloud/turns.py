"""Turns on a server's event loop: a job's long loops let other requests in.

Eventlet switches green threads only where one waits.  A green thread that
reads sockets whose data has already arrived (a batch's answer of hundreds of
nodes, buffered by the kernel) and handles what it read never waits, and the
hub polls for nothing else until it does: every other request of the process
(a HEAD, ``zc status``) waits meanwhile.  One step of such a loop is short, but
the steps of a job of thousands of nodes held a single-process dev proxy for
hundreds of milliseconds between polls, several times per request: seconds for
a ``zc status`` (strace: no ``poll`` while a batch's reports were read).

A loop that may run long calls :func:`take` once a step: once :data:`SLICE`
seconds went since a green thread last gave the hub a turn, this one goes to
the back of the hub's queue (``sleep(0)``) and the hub polls before it goes on.
"""

from __future__ import annotations

import time

from swift.common.concurrency import sleep

SLICE = 0.005           # seconds of work between two turns of the hub, at most
_given = [0.0]          # when a green thread last came back from giving one


def take() -> None:
    """Give the hub a turn if the process worked :data:`SLICE` seconds without one."""
    if time.monotonic() - _given[0] >= SLICE:
        sleep(0)
        _given[0] = time.monotonic()

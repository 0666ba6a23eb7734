"""The object server's hub waits whole milliseconds rounded up, not down.

Swift's servers run eventlet's ``poll`` hub, which waits ``int(seconds * 1000)``
milliseconds for its next timer: a timer due in less than a millisecond is
polled for with a timeout of 0, again and again, until it is due (eventlet issue
#30).  A batch's timers are a few milliseconds and a fraction (``Pool.run_many``'s
pause for a worker's next replies, a reports block's ``LINGER``), so the hub spun
through the fraction of each: 19-21 ``poll`` calls a node of a 10,000-node job
(``perf stat -e syscalls:sys_enter_poll``), a loop of the hub's Python each.
Rounded up, a timer fires at most a millisecond late, and the hub sleeps until
then.  Hubs whose wait takes seconds as they are (``epolls``, ``selects``) are left
as they are.
"""

from __future__ import annotations

import math
import types

from eventlet.hubs import poll

_TRUNCATING = poll.Hub.do_poll      # poll.poll(int(seconds * 1000))


def _do_poll(hub: poll.Hub, seconds: float) -> list:
    """The poll hub's wait for events, ``seconds`` rounded up to whole milliseconds."""
    return hub.poll.poll(math.ceil(seconds * 1000.0))


def round_up(hub: object) -> None:
    """Make ``hub`` (the serving thread's) wait for its timers rounded up, if it is a
    hub that rounds them down; once per hub, nothing else changed."""
    if type(hub).do_poll is _TRUNCATING and 'do_poll' not in vars(hub):
        hub.do_poll = types.MethodType(_do_poll, hub)

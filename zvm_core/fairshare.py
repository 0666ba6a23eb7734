"""Worker slots shared fairly between accounts.

A pool has ``size`` slots (requests running at once).  Without more, the
requests that wait for one are served first come, first served, so one
account that queues many requests (or keeps its running ones busy, such as
nodes blocked reading a link that never fills) holds every slot while
another account's single request waits or is refused.  :class:`FairSlots`

* keeps one queue per account and hands a freed slot to the accounts in
  turn (round-robin: the account served longest ago first), so a full pool
  serves every account that waits, whatever each has queued;
* lets one account hold at most ``per_account`` slots at once (the object
  server's ``zerovm_account_maxpool``): the rest stay free for others.

It uses ``threading`` locks and events, which eventlet monkey-patches, so a
waiting green thread does not block the hub.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class FairSlots:
    """``size`` slots, at most ``per_account`` for one account, given in turn."""

    def __init__(self, size: int, per_account: int | None = None) -> None:
        self.size = size
        self.per_account = min(per_account or size, size)
        self._lock = threading.Lock()
        self._free = size
        # account -> slots it holds (a dict, not a Counter: whose missing keys and
        # deletions are Python calls, twice per request of Pool.run)
        self._running: dict[str, int] = {}
        # account -> its waiters, in arrival order; accounts in the order they are served
        self._waiting: collections.OrderedDict[str, collections.deque[threading.Event]] = (
            collections.OrderedDict())

    def running(self, account: str) -> int:
        """Slots ``account`` holds now."""
        return self._running.get(account, 0)

    @contextmanager
    def slot(self, account: str = '') -> Iterator[None]:
        """Hold a slot for ``account`` (waiting for one, in turn) for the block."""
        self.acquire(account)
        try:
            yield
        finally:
            self.release(account)

    def acquire(self, account: str = '') -> None:
        """Wait for a slot; a waiter interrupted (an exception in its thread) leaves
        the queue, and gives back the slot if one was handed to it meanwhile."""
        with self._lock:
            running = self._running.get(account, 0)
            if self._free and not self._waiting and running < self.per_account:
                self._free -= 1             # what _dispatch would do, without an Event
                self._running[account] = running + 1
                return
            event = threading.Event()
            self._waiting.setdefault(account, collections.deque()).append(event)
            self._dispatch()
        try:
            event.wait()
        except BaseException:
            with self._lock:
                queue = self._waiting.get(account)
                if event.is_set():               # it was ours already: give it back
                    self._give_back(account)
                elif queue is not None:
                    queue.remove(event)
                    if not queue:
                        del self._waiting[account]
            raise

    def release(self, account: str = '') -> None:
        with self._lock:
            self._give_back(account)

    def _give_back(self, account: str) -> None:
        running = self._running[account] - 1
        if running:
            self._running[account] = running
        else:
            del self._running[account]
        self._free += 1
        if self._waiting:
            self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to waiting accounts in turn, skipping those at their
        share (called with the lock held)."""
        while self._free:
            account = next((a for a in self._waiting
                            if self._running.get(a, 0) < self.per_account), None)
            if account is None:
                return
            queue = self._waiting.pop(account)
            event = queue.popleft()
            if queue:                         # back of the line: the others go first
                self._waiting[account] = queue
            self._free -= 1
            self._running[account] = self._running.get(account, 0) + 1
            event.set()

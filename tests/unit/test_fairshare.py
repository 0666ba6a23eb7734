"""zvm_core.fairshare: freed slots go to the waiting accounts in turn, and one
account holds at most its share, however many requests it queued first."""

from __future__ import annotations

import threading

import pytest

from zvm_core.fairshare import FairSlots

WAIT = 10


class Waiter:
    """A thread that takes a slot for ``account`` and records when it got it."""

    def __init__(self, slots: FairSlots, account: str, served: list[str]) -> None:
        self.slots, self.account, self.served = slots, account, served
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        self.slots.acquire(self.account)
        self.served.append(self.account)
        self.done.wait(WAIT)
        self.slots.release(self.account)

    def finish(self) -> None:
        self.done.set()
        self.thread.join(WAIT)


def queued(slots: FairSlots, count: int) -> None:
    """Wait until ``count`` requests wait for a slot."""
    for _ in range(WAIT * 100):
        with slots._lock:
            if sum(map(len, slots._waiting.values())) == count:
                return
        threading.Event().wait(0.01)
    raise AssertionError(f'{count} waiters expected')


def served_after(slots: FairSlots, served: list[str], count: int) -> None:
    for _ in range(WAIT * 100):
        if len(served) >= count:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f'{count} served expected, got {served}')


def test_a_freed_slot_goes_to_the_accounts_in_turn() -> None:
    slots, served = FairSlots(1), []
    first = Waiter(slots, 'a', served)
    served_after(slots, served, 1)
    waiters = []
    for account in 'aaab':                  # a queued three before b came
        waiters.append(Waiter(slots, account, served))
        queued(slots, len(waiters))
    first.finish()
    for i in range(len(waiters)):           # each ends once it was served
        served_after(slots, served, i + 2)
        next(w for w in waiters if w.account == served[-1] and not w.done.is_set()).finish()
    assert served == ['a', 'a', 'b', 'a', 'a']


def test_one_account_holds_at_most_its_share() -> None:
    slots, served = FairSlots(3, per_account=2), []
    hogs = [Waiter(slots, 'a', served) for _ in range(3)]
    served_after(slots, served, 2)
    queued(slots, 1)                        # the third of a waits with a slot free
    assert slots.running('a') == 2 and slots._free == 1
    other = Waiter(slots, 'b', served)      # b takes the free one at once
    served_after(slots, served, 3)
    assert served == ['a', 'a', 'b']
    for waiter in (*hogs, other):
        waiter.finish()
    assert served == ['a', 'a', 'b', 'a'] and slots._free == 3 and not slots._running


def test_a_waiter_that_gives_up_leaves_the_queue() -> None:
    slots, served = FairSlots(1), []
    holder = Waiter(slots, 'a', served)
    served_after(slots, served, 1)

    class GaveUp(Exception):
        pass

    stopped = []

    def give_up() -> None:
        try:
            with slots.slot('b'):
                stopped.append('served')
        except GaveUp:
            stopped.append('gave up')
    thread = threading.Thread(target=give_up)
    original = threading.Event.wait

    def interrupted(self, timeout=None):       # the waiter's thread is told to stop
        if threading.current_thread() is thread:
            raise GaveUp
        return original(self, timeout)
    try:
        threading.Event.wait = interrupted
        thread.start()
        thread.join(WAIT)
    finally:
        threading.Event.wait = original
    assert stopped == ['gave up'] and not slots._waiting
    holder.finish()
    assert slots._free == 1


@pytest.mark.parametrize('share', [None, 5])
def test_a_share_above_the_size_is_the_size(share) -> None:
    assert FairSlots(2, share).per_account == 2

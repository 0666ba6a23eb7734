"""The pool's caller side: which idle worker takes a request, and what a request says.

A worker cleans up after its reply (a native template forks the next run's
child, an emulated machine is reset), so the worker idle longest takes the next
request, not the one that has just answered.  The workers here are stand-ins:
only the choice and the message are under test.
"""

from __future__ import annotations

import json

from zvm_core import pool as zvm_pool
from zvm_core.channels import READ, UNLIMITED, WRITE, Quota
from zvm_core.limits import Limits
from zvm_core.pool import ChannelSpec, Pool
from zvm_core.report import Report


class _Alive:
    pid = 1

    def poll(self) -> None:
        return None


def test_the_worker_idle_longest_takes_the_request(monkeypatch) -> None:
    made, served = [], []

    class Worker:
        def __init__(self, *args) -> None:
            self.proc, self.served = _Alive(), 0
            made.append(self)

    def exchange(self, worker, req, fds, wait, parse) -> Report:
        served.append(made.index(worker))
        worker.served += 1
        return Report('ok', 0)
    monkeypatch.setattr(zvm_pool, '_Worker', Worker)
    monkeypatch.setattr(Pool, '_exchange', exchange)
    pool = Pool(size=3, queue=0)
    for _ in range(6):
        assert pool.run('/bin/true', [], argv=['true']).status == 'ok'
    assert served == [0, 1, 2, 0, 1, 2]


def test_a_request_leaves_out_what_is_at_its_default() -> None:
    channels = [ChannelSpec('/dev/stdin', 5, READ),
                ChannelSpec('/dev/stdout', 6, WRITE, random=True, quota=Quota(put_size=4096),
                            mount='/', wait=2.5)]
    req = json.loads(json.dumps(zvm_pool._request('/bin/true', channels, ['true'], {},
                                                  Limits(), 0, 0, 'virtualize', {1: 2})))
    assert req['channels'] == [
        {'alias': '/dev/stdin', 'fd': 0, 'mode': READ},
        {'alias': '/dev/stdout', 'fd': 1, 'mode': WRITE, 'random': True,
         'quota': {'put_size': 4096}, 'mount': '/', 'notify': 2, 'wait': 2.5}]
    assert Quota(**req['channels'][1]['quota']) == Quota(UNLIMITED, UNLIMITED, UNLIMITED, 4096)

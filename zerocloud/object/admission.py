"""Which execute requests an object server takes: at most what its pool can hold,
at most one account's share of it, and at most one job's.

A node is counted from the moment its request is admitted (before its body
travels) until its response is done: ``zerovm_maxpool`` running plus
``zerovm_maxqueue`` waiting in all, ``zerovm_account_maxpool`` plus
``zerovm_account_maxqueue`` for one account, ``zerovm_job_maxslots`` for
one job (``X-Zerocloud-Id``).  Beyond any, the answer is
``503 Slot not available`` at once, with ``Retry-After``, and the proxy
tries another server.  So one account, however many nodes it sends (a job
of a thousand nodes, or nodes that only wait on their inputs), leaves the
rest of every server's workers and queue to the others, and one job of an
account leaves room for its others; inside the pool the freed workers go to
the waiting accounts in turn (``zvm_core.fairshare``).  A job's nodes refused
for its own load are sent again by the proxy, after a pause.

The account is the one that runs the job (``X-Zerocloud-Account``, set by
the proxy after it authorised the job), not the one that owns the object:
reading another account's public object charges the reader.
"""

from __future__ import annotations

import collections
import math

from swift.common.swob import Request

from zerocloud import wire
from zerocloud.config import Config
from zerocloud.httperrors import HTTPServiceUnavailable
from zvm_core.pool import PoolBusy, WorkersFailing

RETRY_AFTER = '1'


def charged_to(req: Request, path_account: str) -> tuple[str, str]:
    """(account, job) the nodes of ``req`` count against: the account running the job,
    as the proxy says (else the one in the path), and the job's id."""
    return req.headers.get(wire.ACCOUNT) or path_account, req.headers.get('X-Zerocloud-Id', '')


def pool_refused(e: PoolBusy, logger) -> HTTPServiceUnavailable:
    """The 503 of a node the pool refused: every worker busy (``Slot not available``),
    or its workers die as they start (logged once per back-off, not per node; to
    try again when the back-off ends)."""
    if not isinstance(e, WorkersFailing):
        return HTTPServiceUnavailable(body=f'Slot not available: {e}\n',
                                      headers={'Retry-After': RETRY_AFTER})
    if e.first:
        logger.error('zerocloud: %s', e)
    return HTTPServiceUnavailable(body=f'{e}\n',
                                  headers={'Retry-After': str(math.ceil(e.retry_after))})


class Admission:
    """Nodes admitted on this server, in all and per account."""

    def __init__(self, config: Config) -> None:
        self.most = config.pool_size + config.queue
        self.most_per_account = config.account_pool + config.account_queue
        self.config = config
        self.total = 0
        self.accounts: collections.Counter[str] = collections.Counter()
        self.jobs: collections.Counter[str] = collections.Counter()

    def enter(self, account: str, job: str = '') -> None:
        """Count a node of ``account``'s ``job`` in, or refuse it (503) when it does
        not fit."""
        cfg = self.config
        if self.total >= self.most:
            raise HTTPServiceUnavailable(
                body=f'Slot not available: {cfg.pool_size} nodes running, '
                     f'{cfg.queue} waiting\n', headers={'Retry-After': RETRY_AFTER})
        if self.accounts[account] >= self.most_per_account:
            raise HTTPServiceUnavailable(
                body=f'Slot not available: account {account} has {self.accounts[account]} '
                     f'nodes here, its share ({cfg.account_pool} running, '
                     f'{cfg.account_queue} waiting)\n', headers={'Retry-After': RETRY_AFTER})
        if job and self.jobs[job] >= cfg.job_slots:
            raise HTTPServiceUnavailable(
                body=f'Slot not available: job {job} has {self.jobs[job]} nodes here '
                     f'(zerovm_job_maxslots)\n', headers={'Retry-After': RETRY_AFTER})
        self.total += 1
        self.accounts[account] += 1
        if job:
            self.jobs[job] += 1

    def leave(self, account: str, job: str = '') -> None:
        """A node counted in by :meth:`enter` is done here."""
        self.total -= 1
        for counter, key in ((self.accounts, account), (self.jobs, job)):
            if key:
                counter[key] -= 1
                if not counter[key]:
                    del counter[key]

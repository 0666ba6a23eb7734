"""Fixtures the unit tests share: the proxy filter's (test_proxy_filter, test_sources),
and each test's own validating workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zerocloud.proxy import uploads
from zerocloud.proxy.middleware import ProxyExecMiddleware
from zvm_core.pool import Pool


@pytest.fixture
def mw(swift, monkeypatch) -> ProxyExecMiddleware:
    """The proxy filter in front of the test module's ``swift`` (a
    ``test_proxy_filter.FakeSwift``), on a fixed three-server ring."""
    from test_proxy_filter import FakeRing
    FakeRing.install(monkeypatch)
    return ProxyExecMiddleware(swift, {'zerovm_maxconfig': '4096', 'zerovm_maxnexe': '1000'})


@pytest.fixture(autouse=True)
def validation_pools(monkeypatch) -> Iterator[dict[int, Pool]]:
    """The validating workers a program upload starts (``uploads.validation_pool``:
    one Pool per process, kept for the process's life by design), this test's own
    and closed when it ends: none is left running (tests/conftest.py's
    ``PoolWorkers`` fails a test that leaves one) nor handed to the next test."""
    pools: dict[int, Pool] = {}
    monkeypatch.setattr(uploads, '_POOLS', pools)
    yield pools
    for pool in pools.values():
        pool.close()

"""Fixtures the unit tests share: the proxy filter's (test_proxy_filter, test_sources),
and each test's own validating workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zerocloud.proxy import uploads
from zerocloud.proxy.middleware import ProxyExecMiddleware


@pytest.fixture
def mw(swift, monkeypatch) -> ProxyExecMiddleware:
    """The proxy filter in front of the test module's ``swift`` (a
    ``test_proxy_filter.FakeSwift``), on a fixed three-server ring."""
    from test_proxy_filter import FakeRing
    FakeRing.install(monkeypatch)
    return ProxyExecMiddleware(swift, {'zerovm_maxconfig': '4096', 'zerovm_maxnexe': '1000'})


@pytest.fixture(autouse=True)
def validations(monkeypatch) -> Iterator[list[uploads.Validation]]:
    """The validating workers of the proxy filters this test makes
    (``uploads.Validation``: a filter's own, closed when it is collected or at exit),
    closed when the test ends: none is left running (tests/conftest.py's
    ``PoolWorkers`` fails a test that leaves one) while the test's filters wait for
    the garbage collector."""
    made: list[uploads.Validation] = []

    class Recorded(uploads.Validation):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)
    monkeypatch.setattr(uploads, 'Validation', Recorded)
    yield made
    for validation in made:
        validation.close()

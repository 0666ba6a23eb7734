"""Fixtures the proxy filter's tests share (test_proxy_filter, test_sources)."""

from __future__ import annotations

import pytest

from zerocloud.proxy.middleware import ProxyExecMiddleware


@pytest.fixture
def mw(swift, monkeypatch) -> ProxyExecMiddleware:
    """The proxy filter in front of the test module's ``swift`` (a
    ``test_proxy_filter.FakeSwift``), on a fixed three-server ring."""
    from test_proxy_filter import FakeRing
    FakeRing.install(monkeypatch)
    return ProxyExecMiddleware(swift, {'zerovm_maxconfig': '4096', 'zerovm_maxnexe': '1000'})

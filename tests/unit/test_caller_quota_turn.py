"""Which stores of a job take turns with their quota's counts read anew
(``Caller._quota_turn``): a container's or its account's quota, in Swift's keys."""

from __future__ import annotations

import pytest
from swift.common.swob import Request

from zerocloud.config import Config
from zerocloud.job import SwiftPath
from zerocloud.proxy import caller


@pytest.mark.parametrize('container, account, turns', [
    ({}, {}, False),
    ({'meta': {'quota-bytes': '100'}}, {}, True),                # container_quotas
    ({'meta': {'quota-count': '2'}}, {}, True),
    ({}, {'meta': {'quota-bytes': '100'}}, True),                # account_quotas, old
    ({}, {'sysmeta': {'quota-count': '9'}}, True),               # account_quotas
    ({}, {'sysmeta': {'quota-bytes-policy-0': '9'}}, True),      # per policy
    ({'meta': {'colour': 'blue'}}, {'sysmeta': {'x': '1'}}, False),
])
def test_a_quota_of_the_container_or_account_makes_its_stores_take_turns(
        monkeypatch, container: dict, account: dict, turns: bool) -> None:
    monkeypatch.setattr(caller, 'get_container_info', lambda env, app, **kw: container)
    monkeypatch.setattr(caller, 'get_account_info', lambda env, app, **kw: account)
    c = caller.Caller(None, Request.blank('/v1/AUTH_a', method='POST'), Config())
    path = SwiftPath('AUTH_a', 'c', 'o')
    turn = c._quota_turn(path)
    assert (turn is not None) == turns
    assert c._quota_turn(SwiftPath('AUTH_a', 'c', 'other')) is turn    # once a container

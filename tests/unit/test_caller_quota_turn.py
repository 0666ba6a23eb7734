"""Which stores of a job take turns with their quota's counts read anew
(``Caller._quota_turn``): a container's quota, in Swift's keys; an account's counts
reach it only as the container updater runs, so its quota does not."""

from __future__ import annotations

import pytest
from swift.common.swob import Request

from zerocloud.config import Config
from zerocloud.job import SwiftPath
from zerocloud.proxy import caller


@pytest.mark.parametrize('container, turns', [
    ({}, False),
    ({'meta': {'quota-bytes': '100'}}, True),
    ({'meta': {'quota-count': '2'}}, True),
    ({'meta': {'quota-owner': 'ann'}}, False),      # user metadata, no quota
    ({'sysmeta': {'quota-bytes': '100'}}, False),
])
def test_a_quota_of_the_container_makes_its_stores_take_turns(
        monkeypatch, container: dict, turns: bool) -> None:
    monkeypatch.setattr(caller, 'get_container_info', lambda env, app, **kw: container)
    c = caller.Caller(None, Request.blank('/v1/AUTH_a', method='POST'), Config())
    turn = c._quota_turn(SwiftPath('AUTH_a', 'c', 'o'))
    assert (turn is not None) == turns
    assert c._quota_turn(SwiftPath('AUTH_a', 'c', 'other')) is turn    # once a container


def test_a_turns_store_clears_the_containers_cached_info_memcache_too(monkeypatch) -> None:
    # a fresh swift.infocache alone: Swift then read memcache's copy, as old as
    # recheck_container_existence, and the quota filter saw the job's start still
    monkeypatch.setattr(caller, 'get_container_info',
                        lambda env, app, **kw: {'meta': {'quota-count': '2'}})
    cleared = []
    monkeypatch.setattr(caller, 'clear_info_cache',
                        lambda env, account, container: cleared.append((account, container)))
    c = caller.Caller(lambda env, start: start('201 Created', []) or [b''],
                      Request.blank('/v1/AUTH_a', method='POST'), Config())
    assert c.put(SwiftPath('AUTH_a', 'c', 'o'), None, {}).status_int == 201
    assert cleared == [('AUTH_a', 'c')]


@pytest.mark.parametrize('container, sent', [
    ({'meta': {'quota-count': '2'}}, 1),        # its quota refused one: the rest unsent
    ({}, 30),                                   # no quota: a 413 is the object's own
])
def test_after_its_quota_refused_an_output_none_more_is_sent_into_the_container(
        monkeypatch, container: dict, sent: int) -> None:
    # each of a job's 30 outputs into a full container was refused after its own PUT
    # and a fresh lookup of the container's counts
    monkeypatch.setattr(caller, 'get_container_info', lambda env, app, **kw: container)
    cleared = []
    monkeypatch.setattr(caller, 'clear_info_cache',
                        lambda env, account, container: cleared.append(container))
    puts = []

    def swift(env, start):
        puts.append(env['PATH_INFO'])
        start('413 Request Entity Too Large', [])
        return [b'Upload exceeds quota.']
    c = caller.Caller(swift, Request.blank('/v1/AUTH_a', method='POST'), Config())
    answers = [c.put(SwiftPath('AUTH_a', 'c', f'o{i}'), None, {}) for i in range(30)]
    assert len(puts) == sent and len(cleared) == (sent if container else 0)
    assert [(a.status_int, a.body) for a in answers] == [(413, b'Upload exceeds quota.')] * 30
    assert sum(isinstance(a, caller.Unsent) for a in answers) == 30 - sent
    c.put(SwiftPath('AUTH_a', 'other', 'o'), None, {})     # another container: sent
    assert len(puts) == sent + 1

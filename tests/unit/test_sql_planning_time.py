"""Planning a query runs on the proxy's hub: its time must grow with the query, not its
square (a 64 KiB query held every request of the proxy for 15 s), and a query has a
length limit."""

from __future__ import annotations

import json
import time

import pytest

from zerocloud.sql.planner import MAX_QUERY, SqlError, parse_query, parse_request, plan

COLUMNS = ['region', 'qty']


def test_a_long_list_inside_an_aggregate_is_planned_in_linear_time() -> None:
    # each comma of sum(qty IN (0, 1, ...)) counted its depth from the call's start:
    # 48 KB took 8.6 s (load 4), now 70 ms; the bound leaves 25x either way
    values = ','.join(map(str, range(10000)))
    query = f'SELECT region, sum(qty IN ({values})) FROM swift://~/c/*.csv GROUP BY region'
    assert len(query) > 48 * 1000
    started = time.perf_counter()
    planned = plan(parse_query(query), COLUMNS, 2)
    assert time.perf_counter() - started < 2
    assert planned.mode == 'split'


def test_a_query_over_the_limit_is_refused_naming_it() -> None:
    # a 64 KiB query (zerovm_maxconfig) held the hub ~100-200 ms even when linear
    values = ','.join(map(str, range(4000)))
    query = f'SELECT region FROM swift://~/c/*.csv WHERE qty IN ({values})'
    assert len(query) > MAX_QUERY
    with pytest.raises(SqlError, match=f'the query is {len(query)} bytes, more than the '
                                        f'{MAX_QUERY} \\(16 KiB\\) a query may have'):
        parse_request(json.dumps({'query': query}).encode())
    parse_request(json.dumps({'query': query[:MAX_QUERY - 1] + ')'}).encode())

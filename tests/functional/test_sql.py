"""SQL over object collections (``X-Zerovm-Execute: sql/1.0``) on the session's cluster.

Every answer is compared with the host's sqlite3 module running the same
query over the same data (downloaded back from the cluster), loaded the way
``doc/sql.md`` says: NUMERIC columns, an empty field is NULL, objects in
name order.
"""

from __future__ import annotations

import csv
import gzip
import http.client
import io
import json
import math
import os
import random
import re
import sqlite3
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import requests
from accounts import until
from cluster_logs import executed
from swiftclient import Connection
from test_client import ZC, user_env
from test_fair_share import workers_busy

from zerocloud.devcluster import USERS, DevCluster

REGIONS = ['east', 'west', 'north', 'south, far', 'the "middle"']


def sql(conn: Connection, body: dict | bytes, method: str = 'POST',
        headers: dict | None = None) -> requests.Response:
    url, token = conn.get_auth()
    data = body if isinstance(body, bytes) else json.dumps(body)
    return requests.request(method, url, data=data, timeout=300, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': 'sql/1.0',
        'Content-Type': 'application/json', **(headers or {})})


def _account(conn: Connection) -> str:
    """The account of the connection's storage URL (AUTH_test)."""
    return conn.get_auth()[0].rstrip('/').rpartition('/')[2]


def sales_rows(seed: int, n: int) -> list[list[str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        qty = '' if rng.random() < 0.1 else str(rng.randint(0, 40))
        price = f'{rng.random() * 100:.2f}'
        note = rng.choice(['', 'plain', 'with, comma', 'line\nbreak', 'say "hi"'])
        rows.append([rng.choice(REGIONS), f'p{rng.randint(1, 12)}', qty, price, note, str(i)])
    return rows


def csv_bytes(rows: list[list[str]], header: list[str] | None) -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    if header:
        w.writerow(header)
    w.writerows(rows)
    return out.getvalue().encode()


COLUMNS = ['region', 'product', 'qty', 'price', 'note', 'id']


@pytest.fixture(scope='module')
def sales(swift_cluster: DevCluster) -> tuple[str, list[list[list[str]]]]:
    """A container of sales objects: plain, gzip-compressed, empty, header-only; and
    the same rows without header rows in a second container."""
    conn = Connection(authurl=swift_cluster.auth_url, user=swift_cluster.user,
                key=USERS[swift_cluster.user][0], retries=0)
    container, bare = 'sql-sales', 'sql-bare'
    conn.put_container(container)
    conn.put_container(bare)
    parts = [sales_rows(seed, n) for seed, n in ((1, 300), (2, 250), (3, 0), (4, 200), (5, 1))]
    for i, rows in enumerate(parts):
        data = csv_bytes(rows, COLUMNS)
        name = f'day{i}.csv'
        if i == 1:
            data, name = gzip.compress(data, mtime=0), 'day1.csv.gz'
        conn.put_object(container, name, data)
        conn.put_object(bare, f'day{i}.csv', csv_bytes(rows, None))
    conn.put_object(container, 'day5.csv', b'')                     # empty object
    conn.put_object(container, 'other.txt', b'not matched\n')
    parts.append([])
    return container, parts


def reference(parts: list[list[list[str]]], query: str, url: str) -> tuple[list[str], list]:
    db = sqlite3.connect(':memory:')
    db.execute('CREATE TABLE t(' + ', '.join(f'"{c}" NUMERIC' for c in COLUMNS) + ')')
    for rows in parts:
        db.executemany('INSERT INTO t VALUES (?,?,?,?,?,?)',
                       [[v if v != '' else None for v in row] for row in rows])
    cur = db.execute(query.replace(url, 't'))
    return [d[0] for d in cur.description], cur.fetchall()


def same(value, text: str) -> bool:
    if value is None:
        return text == ''
    if isinstance(value, float):
        return text not in ('', 'Inf') and math.isclose(value, float(text), rel_tol=1e-12)
    return str(value) == text


def check_csv(body: bytes, names: list[str], rows: list, ordered: bool) -> None:
    got = list(csv.reader(io.StringIO(body.decode(), newline='')))
    assert got[0] == names
    got = got[1:]
    assert len(got) == len(rows), (got, rows)
    if not ordered:
        key = lambda r: [str(v) for v in r]                       # noqa: E731
        rows = sorted(rows, key=lambda r: [str(v) if v is not None else '' for v in r])
        got = sorted(got, key=key)
    for want, have in zip(rows, got, strict=True):
        assert all(same(w, h) for w, h in zip(want, have, strict=True)), (want, have)


URL = 'swift://~/sql-sales/day*'
QUERIES = [
    # (query, plan, ordered)
    (f'SELECT region, count(*), sum(qty) FROM {URL} WHERE qty > 10 GROUP BY region '
     'ORDER BY 3 DESC, 1 LIMIT 3', 'split', True),
    (f'SELECT count(*), count(qty), sum(qty), total(qty), min(price), max(price), avg(qty), '
     f'avg(price) FROM {URL}', 'split', True),
    (f'SELECT region, product, min(note), max(note), avg(price) AS a FROM {URL} '
     'GROUP BY region, product HAVING count(*) > 3 ORDER BY a DESC, region, product', 'split',
     True),
    (f'SELECT substr(product, 1, 2) AS pp, sum(price) FROM {URL} GROUP BY 1 ORDER BY pp',
     'split', True),
    (f'SELECT region, count(*) FROM {URL} WHERE qty IS NULL GROUP BY region', 'split', False),
    (f'SELECT region, count(DISTINCT product) FROM {URL} GROUP BY region ORDER BY region',
     'rows', True),
    (f'SELECT * FROM {URL} s WHERE s.price > 50 AND note <> \'\' ORDER BY price DESC, id '
     'LIMIT 7 OFFSET 2', 'rows', True),
    (f'SELECT id, region, note FROM {URL} WHERE note LIKE \'%"%\' OR note LIKE \'%,%\'',
     'rows', False),
    (f'SELECT region, qty, rank() OVER (PARTITION BY region ORDER BY qty DESC, id) AS r '
     f'FROM {URL} WHERE qty >= 38 ORDER BY region, r', 'rows', True),
    (f'SELECT region, group_concat(DISTINCT product) FROM {URL} WHERE region = \'east\' '
     'AND product < \'p2\' GROUP BY region', 'rows', True),
    (f'SELECT count(*) FROM {URL} WHERE region = \'nowhere\'', 'split', True),
    (f'SELECT region, sum(qty) FROM {URL} WHERE region = \'nowhere\' GROUP BY region',
     'split', True),
]


@pytest.mark.parametrize('query,mode,ordered', QUERIES, ids=range(len(QUERIES)))
def test_same_answer_as_a_database(swift_cluster, conn, sales, query, mode, ordered) -> None:
    resp = sql(conn, {'query': query})
    assert resp.status_code == 200, resp.text
    assert resp.headers['Content-Type'].startswith('text/csv')
    assert resp.headers['X-Sql-Plan'] == mode, resp.headers['X-Sql-Plan-Reason']
    assert resp.headers['X-Sql-Objects'] == '6'
    assert resp.headers['X-Nexe-Status'] == ','.join(['ok'] * 7)
    names, rows = reference(sales[1], query, URL)
    check_csv(resp.content, names, rows, ordered)
    again = sql(conn, {'query': query})
    assert again.content == resp.content                      # deterministic


def test_objects_without_header_rows(swift_cluster, conn, sales) -> None:
    query = ('SELECT c1, count(*), sum(c3), max(c5) FROM swift://~/sql-bare/*.csv '
             'GROUP BY c1 ORDER BY c1')
    resp = sql(conn, {'query': query, 'input': {'header': False}})
    assert resp.status_code == 200, resp.text
    want = reference(sales[1], query.replace('c1', 'region').replace('c3', 'qty')
                     .replace('c5', 'note'), 'swift://~/sql-bare/*.csv')[1]
    check_csv(resp.content, ['c1', 'count(*)', 'sum(c3)', 'max(c5)'], want, True)
    named = sql(conn, {'query': query.replace('c1', 'r').replace('c3', 'q').replace('c5', 'n'),
                       'input': {'header': False, 'columns': ['r', 'p', 'q', 'x', 'n', 'i']}})
    assert named.status_code == 200, named.text
    assert named.content.split(b'\r\n')[1:] == resp.content.split(b'\r\n')[1:]


def test_one_object_runs_as_one_node(swift_cluster, conn, sales) -> None:
    query = ('SELECT region, count(*), avg(price) FROM swift://~/sql-sales/day1.csv.gz '
             'GROUP BY region ORDER BY region')
    resp = sql(conn, {'query': query, 'format': 'json'})
    assert resp.status_code == 200, resp.text
    assert resp.headers['X-Sql-Plan'] == 'single'
    assert resp.headers['X-Nexe-System'] == 'sql'
    assert resp.headers['Content-Type'] == 'application/x-ndjson'
    names, rows = reference([sales[1][1]], query, 'swift://~/sql-sales/day1.csv.gz')
    got = [json.loads(line) for line in resp.content.decode().splitlines()]
    assert [list(g) for g in got] == [names] * len(rows)
    for want, have in zip(rows, got, strict=True):
        assert want[:2] == tuple(have.values())[:2]
        assert math.isclose(want[2], have['avg(price)'], rel_tol=1e-12)


def fuel_per_node(resp: requests.Response) -> list[int]:
    """Each node's fuel from ``X-Nexe-Cdr-Line`` (the native engine counts none)."""
    fields = resp.headers['X-Nexe-Cdr-Line'].split(', ')[1:]
    return [int(acc.split()[0]) for acc in fields[1::2]]


def test_the_query_picks_the_engine(swift_cluster, conn, sales) -> None:
    query = f'SELECT region, count(*), sum(qty) FROM {URL} GROUP BY region ORDER BY region'
    answers = {}
    for engine in ('native', 'emulated'):
        resp = sql(conn, {'query': query, 'engine': engine})
        assert resp.status_code == 200, resp.text
        fuel = fuel_per_node(resp)
        assert len(fuel) == len(resp.headers['X-Nexe-System'].split(',')) == 7
        assert all(f == 0 for f in fuel) if engine == 'native' else all(f > 0 for f in fuel)
        answers[engine] = resp.content
    assert answers['native'] == answers['emulated']
    assert sql(conn, {'query': query, 'engine': 'fast'}).status_code == 400


def test_csv_without_header_row_and_json_lines(swift_cluster, conn, make_container,
                                                make_object) -> None:
    c = make_container('sqljson')
    lines = [{'k': 'a', 'v': 1}, {'k': 'b', 'v': 2.5, 'extra': True}, {'k': 'a'},
             {'k': 'a', 'v': 4}]
    make_object(c, 'x1.jsonl', ''.join(json.dumps(v) + '\n' for v in lines[:2]).encode())
    make_object(c, 'x2.jsonl', gzip.compress(
        ''.join(json.dumps(v) + '\n' for v in lines[2:]).encode(), mtime=0))
    resp = sql(conn, {'query': f'SELECT k, count(v), sum(v) FROM swift://~/{c}/x*.jsonl '
                               'GROUP BY k ORDER BY k', 'header': False})
    assert resp.status_code == 200, resp.text
    assert resp.content == b'a,2,5\r\nb,1,2.5\r\n'


def test_bad_queries_are_400_before_any_node(swift_cluster, conn, sales) -> None:
    cases = [
        ({'query': f'SELECT regoin FROM {URL}'}, 'no such column: regoin at character 8'),
        ({'query': f'SELECT region FROM {URL} WHERE'}, 'incomplete input: the query ends'),
        ({'query': f'SELECT region FROM {URL} WHERE qty = = 1'},
         'near "=": syntax error at character 57'),
        ({'query': f'SELECT sum(qty, 1) FROM {URL}'}, 'wrong number of arguments'),
        ({'query': 'SELECT 1 FROM swift://~/sql-sales'}, 'names a container'),
        ({'query': f'SELECT * FROM {URL} JOIN {URL}'}, 'joins are not supported'),
        ({'query': f'SELECT * FROM {URL} WHERE id IN (SELECT 1)'}, 'subqueries'),
        ({'query': f'SELECT 1 FROM {URL}', 'format': 'xml'}, '"format" must be one of'),
        ({'query': f'SELECT 1 FROM {URL}', 'qurey': 1}, 'unknown key(s) "qurey"'),
        ({'query': f'SELECT 1, 1 FROM {URL}', 'format': 'json'}, 'distinct result column'),
        ({'query': f'DELETE FROM {URL}'}, 'expected SELECT'),
    ]
    for body, message in cases:
        resp = sql(conn, body)
        assert resp.status_code == 400, (body, resp.text)
        assert message in resp.text, (body, resp.text)
        assert 'X-Nexe-System' not in resp.headers          # nothing ran
    assert sql(conn, b'{"query": ').status_code == 400
    plain = sql(conn, f'SELECT region FROM {URL}'.encode())     # curl -d 'SELECT ...'
    assert plain.status_code == 400 and '{"query": "SELECT ... FROM' in plain.text, plain.text
    missing = sql(conn, {'query': 'SELECT 1 FROM swift://~/sql-nowhere/*.csv'})
    assert missing.status_code == 404, missing.text
    # an object without a format suffix that does not exist: said so, not its format
    missing = sql(conn, {'query': 'SELECT 1 FROM swift://~/sql-sales/nothing'})
    assert (missing.status_code, missing.text) == (
        404, 'Error 404 Not Found while fetching swift://AUTH_test/sql-sales/nothing\n')
    # a shell's wildcards are names here: said so, and not as day-%3F.csv
    missing = sql(conn, {'query': 'SELECT 1 FROM swift://~/sql-sales/day-?.csv'})
    assert (missing.status_code, missing.text) == (
        404, 'Error 404 Not Found while fetching swift://AUTH_test/sql-sales/day-?.csv (the '
             'one wildcard of a FROM URL is *)\n')
    missing = sql(conn, {'query': 'SELECT 1 FROM swift://~/sql-sales/day-[12]*'})    # was
    assert (missing.status_code, missing.text) == (                  # day-%5B12%5D*, no hint
        404, 'No objects found in path swift://AUTH_test/sql-sales/day-[12]* (the one '
             'wildcard of a FROM URL is *)\n')
    assert sql(conn, {'query': f'SELECT 1 FROM {URL}'}, method='PUT').status_code == 405
    # a query runs while the client waits: X-Zerovm-Deferred: always was ignored (200)
    for how, status in [('always', 400), ('sometimes', 400), ('never', 200)]:
        resp = sql(conn, {'query': f'SELECT count(*) FROM {URL}'},
                   headers={'X-Zerovm-Deferred': how})
        assert resp.status_code == status, (how, resp.text)
    assert 'X-Zerovm-Deferred: always is for jobs' in sql(
        conn, {'query': f'SELECT 1 FROM {URL}'}, headers={'X-Zerovm-Deferred': 'always'}).text


def test_multi_line_queries_and_tab_separated_objects(swift_cluster, conn, make_container,
                                                     make_object) -> None:
    """A query over several lines (zc sql - < top.sql), a string with a line end, and
    .tsv objects (a TAB delimiter) were refused: 'Invalid nexe property exec.args in
    sql: control characters are not allowed' (a job's arguments are one line)."""
    c = make_container('sqltsv')
    make_object(c, 'a.tsv', b'k\tv\nx\t1\ny\t2\n')
    make_object(c, 'b.tsv', b'k\tv\nx\t3\n"two\nlines"\t4\n')
    query = (f'SELECT k,\n\tsum(v) AS "s\\um" -- per key\nFROM swift://~/{c}/*.tsv\n'
             "WHERE k <> 'a\nb' GROUP BY k ORDER BY k")
    for body in ({'query': query}, {'query': query.replace('sum(v)', 'group_concat(v)')}):
        resp = sql(conn, body)
        assert resp.status_code == 200, resp.text
        sums = 'two\nlines",4\r\nx,4\r\ny,2\r\n'
        assert resp.text == ('k,s\\um\r\n"' + (sums if 'sum' in body['query'] else
                                                  sums.replace('x,4', 'x,"1,3"')))
    one = sql(conn, {'query': f'SELECT * FROM swift://~/{c}/a.tsv'})
    assert (one.status_code, one.text) == (200, 'k,v\r\nx,1\r\ny,2\r\n')


def test_empty_objects_have_no_columns_to_read(swift_cluster, conn, make_container,
                                               make_object) -> None:
    """Said of the one object, or of how many were tried (was 'the first 1 object(s)')."""
    c = make_container('sqlempty')
    for name in ('a.csv', 'b.csv'):
        make_object(c, name, b'')
    account = _account(conn)
    for url, says in [(f'swift://~/{c}/a.csv', f'swift://{account}/{c}/a.csv is empty'),
                      (f'swift://~/{c}/*.csv',
                       f'the first 2 objects of swift://{account}/{c}/*.csv are empty')]:
        resp = sql(conn, {'query': f'SELECT count(*) FROM {url}'})
        assert (resp.status_code, resp.text) == (
            400, says + ': say "input": {"columns": [...]}\n')
    resp = sql(conn, {'query': f'SELECT count(*) FROM swift://~/{c}/*.csv',
                      'input': {'columns': ['x']}})
    assert (resp.status_code, resp.text) == (200, 'count(*)\r\n0\r\n')


def test_a_malformed_object_fails_the_query(swift_cluster, conn, make_container,
                                            make_object) -> None:
    """The answer names the node, the object it could not load and the line."""
    c = make_container('sqlbad')
    make_object(c, 'a.csv', b'x,y\n1,2\n')
    make_object(c, 'b 2.csv', b'x,y\n1,2\n"3\n4",5,6\n')
    make_object(c, 'c.jsonl', b'{"x": 1}\n{"x": \n')
    account = _account(conn)
    for query, node, error in [
            (f'SELECT sum(x) FROM swift://~/{c}/*.csv', 'sql-2',
             f'swift://{account}/{c}/b 2.csv: line 3: record 3 has more than 2 fields'),
            (f'SELECT x FROM swift://~/{c}/c.jsonl', 'sql',
             f'swift://{account}/{c}/c.jsonl: line 2: malformed JSON')]:
        resp = sql(conn, {'query': query})
        assert resp.status_code == 422, resp.text
        assert resp.text.startswith(f'{node}: exit 1: sqlite: load: {error}\n'), resp.text
        assert resp.headers['X-Nexe-Error'] == f'{node}: exit 1: sqlite: load: {error}'


@pytest.mark.parametrize('engine', ['native', 'emulated'])
def test_skip_bad_skips_malformed_records_and_counts_them(swift_cluster, conn, make_container,
                                                          make_object, engine) -> None:
    """``"input": {"skip_bad": true}``: the malformed records are not rows, and the
    response counts them, in all and per object (its first one named), on either engine;
    one object too (a merging node then reads the note); without it the query fails."""
    c = make_container('sqlskip')
    make_object(c, 'a.csv', b'x,y\n1,2\n3,4,5\n')
    make_object(c, 'b.csv', b'x,y\n10,20\nn/a,5\n')        # summed: "n/a" would be 0
    make_object(c, 'c.csv', b'x,y\n100\n"7"z,8\n200,300\n')
    make_object(c, 'd.jsonl', b'{"x": 1}\nnot json\n[2]\n{"x": 3}\n')
    account = _account(conn)
    query = f'SELECT sum(x), count(*) FROM swift://~/{c}/*.csv'
    assert sql(conn, {'query': query, 'engine': engine}).status_code == 422
    resp = sql(conn, {'query': query, 'engine': engine, 'input': {'skip_bad': True}})
    assert (resp.status_code, resp.text) == (200, 'sum(x),count(*)\r\n211,3\r\n'), resp.text
    assert (resp.headers['X-Sql-Skipped'], resp.headers['X-Sql-Skipped-Objects']) == ('4', '3')
    assert json.loads(resp.headers['X-Sql-Skipped-Detail']) == [
        [f'swift://{account}/{c}/a.csv', 1, 'line 3: record 3 has more than 2 fields'],
        [f'swift://{account}/{c}/b.csv', 1, 'line 3: record 3: "x" is not a number: "n/a"'],
        [f'swift://{account}/{c}/c.csv', 2, 'line 2: record 2 has 1 fields, not 2']]
    again = sql(conn, {'query': query, 'engine': engine, 'input': {'skip_bad': True}})
    assert (again.content, again.headers['X-Sql-Skipped-Detail']) == \
        (resp.content, resp.headers['X-Sql-Skipped-Detail'])
    resp = sql(conn, {'query': f'SELECT x FROM swift://~/{c}/d.jsonl ORDER BY x',
                      'engine': engine, 'input': {'skip_bad': True}})
    assert (resp.status_code, resp.text) == (200, 'x\r\n1\r\n3\r\n'), resp.text
    assert resp.headers['X-Sql-Plan'] != 'single'
    assert json.loads(resp.headers['X-Sql-Skipped-Detail']) == [
        [f'swift://{account}/{c}/d.jsonl', 2,
         'line 2: not a JSON object (one object per line, each a row)']]
    resp = sql(conn, {'query': f'SELECT count(*) FROM swift://~/{c}/b.csv',
                      'input': {'skip_bad': True}})
    assert (resp.text, resp.headers['X-Sql-Skipped'], resp.headers['X-Sql-Skipped-Detail']) \
        == ('count(*)\r\n2\r\n', '0', '[]')         # "n/a" is summed by no query here


def test_codes_that_look_like_numbers_keep_their_digits(swift_cluster, conn, make_container,
                                                       make_object, engine) -> None:
    """A zip code 01234 and an id 007 are text, as written (they were the integers 1234
    and 7: the answer printed 1234 and LIKE '0%' found nothing, with a 200), still
    compared as numbers with a number; a JSON string is text, a JSON number a number.
    Through the merge's partial rows too (split and rows plans), on either engine."""
    c = make_container('sqlzip')
    make_object(c, 'a.csv', b'zip,n\n01234,1\n12345,2\n')
    make_object(c, 'b.csv', b'zip,n\n007,3\n01234,4\n')
    make_object(c, 'c.jsonl', b'{"zip": "01234", "n": 1}\n{"zip": 12345, "n": 2}\n'
                              b'{"zip": "007", "n": "3"}\n')
    csvs = f'swift://~/{c}/*.csv'
    resp = sql(conn, {'query': f"SELECT zip, sum(n) FROM {csvs} WHERE zip LIKE '0%' "
                               'GROUP BY zip ORDER BY zip', 'engine': engine})
    assert (resp.status_code, resp.headers['X-Sql-Plan']) == (200, 'split'), resp.text
    assert resp.text == 'zip,sum(n)\r\n007,3\r\n01234,5\r\n'
    resp = sql(conn, {'query': f'SELECT zip, zip = 1234 FROM {csvs} ORDER BY n',
                      'engine': engine})
    assert (resp.status_code, resp.headers['X-Sql-Plan']) == (200, 'rows'), resp.text
    assert resp.text == 'zip,zip = 1234\r\n01234,1\r\n12345,0\r\n007,0\r\n01234,1\r\n'
    resp = sql(conn, {'query': f'SELECT zip, n, typeof(n) FROM swift://~/{c}/c.jsonl',
                      'format': 'json', 'engine': engine})
    assert resp.status_code == 200, resp.text
    assert [json.loads(line) for line in resp.text.splitlines()] == [
        {'zip': '01234', 'n': 1, 'typeof(n)': 'integer'},
        {'zip': 12345, 'n': 2, 'typeof(n)': 'integer'},
        {'zip': '007', 'n': '3', 'typeof(n)': 'text'}]


def test_skip_bad_skips_text_where_a_column_is_used_as_a_number(
        swift_cluster, conn, make_container, make_object) -> None:
    """A text in a column the query computes with (``x * 2``) or orders against a
    number (``y > 4``) is skipped as in one it sums: it answered 10,3 (``n/a * 2`` is
    0, and ``'n/a' > 4`` is true in SQLite: a text sorts above every number)."""
    c = make_container('sqlskipexpr')
    make_object(c, 'e.csv', b'x,y\n1,2\nn/a,9\n2,n/a\n3,7\n')
    account = _account(conn)
    resp = sql(conn, {'query': f'SELECT sum(x * 2), count(*) FROM swift://~/{c}/e.csv '
                               'WHERE y > 4', 'input': {'skip_bad': True}})
    assert (resp.status_code, resp.text) == (200, 'sum(x * 2),count(*)\r\n6,1\r\n'), resp.text
    assert json.loads(resp.headers['X-Sql-Skipped-Detail']) == [
        [f'swift://{account}/{c}/e.csv', 2, 'line 3: record 3: "x" is not a number: "n/a"']]


def test_text_where_a_number_is_meant_fails_the_query(swift_cluster, conn, make_container,
                                                    make_object) -> None:
    """Without "skip_bad", a text in a column the query sums is a malformed record (422,
    naming the line and value), as doc/sql.md says: ``east,lots`` was summed as 0, the
    answer 200 with ``east,15465.0``.  Grouped or not, one object or several, CSV or
    JSON lines; ``sum(CAST(qty AS REAL))`` asks for SQLite's reading."""
    c = make_container('sqllots')
    make_object(c, 'a.csv', b'region,qty\neast,3\nwest,4\n')
    make_object(c, 'b.csv', b'region,qty\neast,2\neast,lots\n')
    make_object(c, 'c.jsonl', b'{"region": "east", "qty": 1}\n{"region": "east", "qty": "lots"}\n')
    account = _account(conn)
    for query, node in [(f'SELECT region, sum(qty) FROM swift://~/{c}/b.csv GROUP BY region',
                         'sql'), (f'SELECT sum(qty) FROM swift://~/{c}/*.csv', 'sql-2')]:
        resp = sql(conn, {'query': query})
        assert resp.status_code == 422, resp.text
        assert resp.text.startswith(
            f'{node}: exit 1: sqlite: load: swift://{account}/{c}/b.csv: line 3: record 3: '
            '"qty" is not a number: "lots" (the query uses it as one; skip_bad skips such '
            'records)\n'), resp.text
    resp = sql(conn, {'query': f'SELECT sum(qty) FROM swift://~/{c}/c.jsonl'})
    assert (resp.status_code, resp.headers['X-Nexe-Error']) == (422, (
        f'sql: exit 1: sqlite: load: swift://{account}/{c}/c.jsonl: line 2: "qty" is not a '
        'number: "lots" (the query uses it as one; skip_bad skips such records)')), resp.text
    resp = sql(conn, {'query': f'SELECT sum(CAST(qty AS REAL)), count(*) FILTER (WHERE '
                               f"typeof(qty) = 'text') FROM swift://~/{c}/*.csv"})
    assert (resp.status_code, resp.text.splitlines()[1]) == (200, '9.0,1'), resp.text
    resp = sql(conn, {'query': f'SELECT region, sum(qty) FROM swift://~/{c}/*.csv GROUP BY '
                               'region', 'input': {'skip_bad': True}})
    assert (resp.status_code, resp.text) == (200, 'region,sum(qty)\r\neast,5\r\nwest,4\r\n')


def test_a_semicolon_separated_csv_read_with_commas_says_to_give_the_delimiter(
        swift_cluster, conn, make_container, make_object) -> None:
    """``region;qty`` read with commas is one column: a query naming its columns, bare or
    in double quotes (which SQLite read as strings: 200, ``region,0.0``), is a 400 that
    says the header row's name holds ";" and names the option; with it, the answer."""
    c = make_container('sqlsemi')
    make_object(c, 'semi.csv', b'region;qty\neast;3\nwest;4\neast;5\n')
    hint = ('(the columns: region;qty: one column, whose name holds ";": if the fields are '
            'separated by ";", give that as "input"."delimiter")')
    for query in ['SELECT region, sum(qty) FROM {url} GROUP BY region',
                  'SELECT "region", sum("qty") FROM {url} GROUP BY "region"']:
        resp = sql(conn, {'query': query.format(url=f'swift://~/{c}/semi.csv')})
        assert resp.status_code == 400, resp.text
        assert resp.text.startswith('query: no such column: ') and hint in resp.text, resp.text
        resp = sql(conn, {'query': query.format(url=f'swift://~/{c}/semi.csv'),
                          'input': {'delimiter': ';'}})
        assert resp.status_code == 200, resp.text
        assert resp.text.splitlines()[1:] == ['east,8', 'west,4']


def test_select_star_over_a_semicolon_separated_csv_with_decimal_commas_says_the_delimiter(
        swift_cluster, conn, make_container, make_object) -> None:
    """``SELECT *`` names no column, so no 'no such column' says it: read with commas,
    the header row is one column and a record with a decimal comma two fields; the 422
    said only 'has more than 1 fields' (and zc suggested --skip-bad, which skipped
    every such record). Now it says what the header row holds and how to give it."""
    c = make_container('sqlsemistar')
    make_object(c, 'eu.csv', b'region;qty;price\neast;3;2,50\nwest;4;1,25\n')
    resp = sql(conn, {'query': f'SELECT * FROM swift://~/{c}/eu.csv'})
    assert resp.status_code == 422, resp.text
    assert resp.text.startswith(
        f'sql: exit 1: sqlite: load: swift://{_account(conn)}/{c}/eu.csv: line 2: record 2 '
        'has more than 1 fields and the header row holds ";": if the fields are separated by '
        '";" give that as "input"."delimiter" (zc sql --delimiter \';\')\n'), resp.text
    resp = sql(conn, {'query': f'SELECT region, qty FROM swift://~/{c}/eu.csv',
                      'input': {'delimiter': ';'}})
    assert (resp.status_code, resp.text) == (200, 'region,qty\r\neast,3\r\nwest,4\r\n')


def test_columns_given_over_a_semicolon_separated_csv_say_to_give_the_delimiter(
        swift_cluster, conn, make_container, make_object) -> None:
    """With "input"."columns" no header row names the columns: a record read with the
    wrong delimiter is one field, and the 422 (body and X-Nexe-Error) says which usual
    delimiter it holds and how to give it; it was only 'has 1 fields, not 2'."""
    c = make_container('sqlsemicols')
    make_object(c, 'semi.csv', b'region;qty\neast;3\nwest;4\n')
    query = f'SELECT region, sum(qty) FROM swift://~/{c}/semi.csv GROUP BY region'
    resp = sql(conn, {'query': query, 'input': {'columns': ['region', 'qty']}})
    error = (f'sql: exit 1: sqlite: load: swift://{_account(conn)}/{c}/semi.csv: line 2: '
             'record 2 has 1 fields, not 2 and holds ";": if the fields are separated by ";" '
             'give that as "input"."delimiter" (zc sql --delimiter \';\')')
    assert resp.status_code == 422, resp.text
    assert resp.text.startswith(error + '\n'), resp.text
    assert resp.headers['X-Nexe-Error'] == error.replace('fields, not', 'fields; not')
    resp = sql(conn, {'query': query, 'input': {'columns': ['region', 'qty'],
                                                'delimiter': ';'}})
    assert (resp.status_code, resp.text) == (200, 'region,sum(qty)\r\neast,3\r\nwest,4\r\n')


def test_an_object_read_for_its_columns_is_read_as_a_job_reads_it(
        swift_cluster, conn, make_container, make_object) -> None:
    """The first object's head is read the way a job reads an object (one path): the
    account written without its prefix is told which one is yours; a manifest is no
    plain object; a 404 names the object, with the hint for a wildcard other than *."""
    c = make_container('sqlhead')
    make_object(c, 'a.csv', b'x\n1\n')
    make_object(c, 'big.csv', b'', headers={'X-Object-Manifest': f'{c}/a.'})
    resp = sql(conn, {'query': f'SELECT x FROM swift://test/{c}/a.csv'})
    assert (resp.status_code, resp.text) == (403, (
        f'Denied: may not read swift://test/{c}/a.csv (your account is AUTH_test: did you '
        f'mean swift://~/{c}/a.csv?)\n'))
    resp = sql(conn, {'query': f'SELECT x FROM swift://~/{c}/big.csv'})
    assert resp.status_code == 409 and 'is not a plain object' in resp.text, resp.text
    resp = sql(conn, {'query': f'SELECT x FROM swift://~/{c}/?.csv'})
    assert (resp.status_code, resp.text) == (404, (
        f'Error 404 Not Found while fetching swift://AUTH_test/{c}/?.csv (the one '
        'wildcard of a FROM URL is *)\n'))


def test_zc_sql_skip_bad_says_what_it_skipped(swift_cluster, conn, make_container,
                                              make_object, tmp_path) -> None:
    """``zc sql --skip-bad`` prints the answer and, on stderr, the count per object; a
    query that failed on a malformed record says that the option exists."""
    c = make_container('zcskip')
    make_object(c, 'a.csv', b'x,y\n1,2\n3,4,5\n6,7\n')
    query = f'SELECT sum(x) FROM swift://~/{c}/*.csv'
    def zc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*ZC, 'sql', query, *args], cwd=tmp_path,
                              env=user_env(swift_cluster), capture_output=True, text=True,
                              timeout=300, check=False)
    proc = zc('--skip-bad', '-q')
    assert (proc.returncode, proc.stdout) == (0, 'sum(x)\n7\n'), proc.stderr
    assert proc.stderr == (f'zc: skipped 1 malformed record in 1 object:\n  {c}/a.csv: 1 '
                           '(the first: line 3: record 3 has more than 2 fields)\n')
    proc = zc()
    assert proc.returncode == 1, proc.stderr
    assert 'record 3 has more than 2 fields' in proc.stderr
    assert proc.stderr.endswith('zc: --skip-bad skips malformed records (and counts them)\n')


def test_objects_whose_columns_differ_fail_the_query(swift_cluster, conn, make_container,
                                                    make_object) -> None:
    """The columns are read from the first object; another whose header row names them in
    another order was read by position: region got the numbers, sum(qty) 0.0, and 200."""
    c = make_container('sqlcols')
    make_object(c, 'a.csv', b'region,qty\neast,1\nwest,2\n')
    make_object(c, 'b.csv', b'qty,region\n10,east\n20,west\n')
    account = _account(conn)
    query = f'SELECT region, sum(qty) FROM swift://~/{c}/*.csv GROUP BY region'
    resp = sql(conn, {'query': query})
    assert resp.status_code == 422, resp.text
    assert resp.text.startswith(
        f'sql-2: exit 1: sqlite: load: swift://{account}/{c}/b.csv: line 1: the header row '
        'names field 1 "qty", not "region" as the first object\'s'), resp.text
    make_object(c, 'b.csv', b'\xef\xbb\xbf Region ,QTY\nnorth,10\n')   # case, blanks, BOM
    resp = sql(conn, {'query': query + ' ORDER BY region'})
    assert (resp.status_code, resp.text) == (200, 'region,sum(qty)\r\neast,1\r\nnorth,10\r\n'
                                                  'west,2\r\n'), resp.text
    # names the query gives itself replace every object's header row, unchecked: read by
    # position, the text summed fails the query (it was 10,0.0 with a 200)
    make_object(c, 'b.csv', b'qty,region\n10,east\n')
    resp = sql(conn, {'query': query.replace('region', 'r').replace('qty', 'q'),
                      'input': {'columns': ['r', 'q']}})
    assert resp.status_code == 422 and 'line 2: record 2: "q" is not a number: "east"' \
        in resp.text, resp.text


def test_a_client_that_goes_away_stops_its_query(swift_cluster, conn, make_container,
                                                 make_object) -> None:
    """A query's nodes ran to their end (and the merge after them) for a client that had
    closed its connection, holding the object servers' workers for nobody.  Stopped, a
    batch of them (several objects on one server) lost its workers: every later node
    on that server was a 500 (the pool had none left)."""
    c = make_container('sqlgone')
    for i in range(6):
        make_object(c, f'x{i}.csv', b'a\n' + b'1\n' * 500)
    body = json.dumps({'query': f"SELECT count(*) FROM swift://~/{c}/*.csv WHERE "
                                "length(printf('%.*c', 50000000, 'a')) > a",   # minutes
                       'engine': 'emulated'})
    url, token = conn.get_auth()
    parts = urllib.parse.urlsplit(url)
    client = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    client.request('POST', parts.path, body=body, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': 'sql/1.0'})
    servers = [f'object{i}' for i in range(len(swift_cluster.object_ports))]
    # planned and sent: its nodes spin (2 s were not enough for a loaded machine to plan it)
    assert until(lambda: any(workers_busy(swift_cluster, name) for name in servers))
    client.close()                    # the client goes away
    lines = until(lambda: executed(swift_cluster, c), 40)      # zerovm_timeout: 60 s
    assert lines and all(' 499 ' in line or ' ok*0 ' in line for line in lines), lines
    for _ in range(3):                # every server's workers are there for the next query
        resp = sql(conn, {'query': f'SELECT count(*) AS n FROM swift://~/{c}/*.csv'})
        assert (resp.status_code, resp.text) == (200, 'n\r\n3000\r\n'), resp.text
    failed = [line for i in range(len(swift_cluster.object_ports))
              for line in swift_cluster.log_file(swift_cluster.server(f'object{i}'))
              .read_text().splitlines() if 'batch nodes' in line and f'/{c}/' in line]
    assert failed == []               # a node the pool could not run (a worker lost)


def test_explain_shows_the_plan(swift_cluster, conn, sales) -> None:
    resp = sql(conn, {'query': f'SELECT region, avg(qty) FROM {URL} GROUP BY region',
                      'explain': True})
    assert resp.status_code == 200, resp.text
    plan = json.loads(resp.content)
    assert resp.content.endswith(b'}\n')       # zc sql --explain's prompt ran on after it
    assert plan['mode'] == 'split' and plan['objects'] == 6
    assert plan['node_query'] == ('SELECT "region" AS "region", total(qty) AS _zc0, '
                                  'count(qty) AS _zc1 FROM t GROUP BY "region"')
    assert [[g['name'] for g in job] for job in plan['jobs']] == [['sql'], ['merge']]
    assert plan['loaded_columns'] == ['region', 'qty']
    assert 'X-Nexe-System' not in resp.headers


def test_stored_query_and_stored_answer(swift_cluster, conn, sales, make_container,
                                        make_object) -> None:
    """The swift CLI form: the query is an object (X-Zerovm-Source), the answer another."""
    c = make_container('sqlq')
    query = f'SELECT region, count(*) AS n FROM {URL} GROUP BY region ORDER BY n DESC, region'
    make_object(c, 'q.json', json.dumps({'query': query,
                                         'output': f'swift://~/{c}/answer.csv'}).encode())
    url, token = conn.get_auth()
    resp = requests.post(url, timeout=300, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': 'sql/1.0',
        'X-Zerovm-Source': f'swift://~/{c}/q.json'})
    assert resp.status_code == 200, resp.text
    assert resp.content == b''
    headers, body = conn.get_object(c, 'answer.csv')
    assert headers['content-type'] == 'text/csv; charset=utf-8'
    names, rows = reference(sales[1], query, URL)
    check_csv(body, names, rows, True)


def test_records_ending_with_cr_alone_are_read(swift_cluster, conn, make_container,
                                              make_object) -> None:
    """An old Mac's line ends (CR alone): reading the header row for the columns was a
    500 (the csv module's 'new-line character seen in unquoted field')."""
    c = make_container('sqlcr')
    make_object(c, 'mac.csv', b'region,qty\reast,3\rwest,4\reast,5\r')
    resp = sql(conn, {'query': f'SELECT region, sum(qty) FROM swift://~/{c}/mac.csv '
                               'GROUP BY region'})
    assert (resp.status_code, resp.text) == (200, 'region,sum(qty)\r\neast,8\r\nwest,4\r\n')


def test_an_answer_stored_over_an_object_the_query_reads_is_refused(
        swift_cluster, conn, make_container, make_object) -> None:
    """"output" naming one of the FROM objects (zc sql ... --out over the data) replaced
    that object with the answer once the nodes had read it: 200, its data gone."""
    c = make_container('sqlover')
    make_object(c, 'a.csv', b'region,qty\neast,3\n')
    make_object(c, 'b.csv', b'region,qty\nwest,4\n')
    for source in ('*.csv', 'a.csv'):
        resp = sql(conn, {'query': f'SELECT count(*) FROM swift://~/{c}/{source}',
                          'output': f'swift://~/{c}/a.csv'})
        assert (resp.status_code, resp.text) == (
            400, f'"output": swift://{_account(conn)}/{c}/a.csv is one of the objects the '
                 'query reads: the answer would replace it; name another object\n')
        assert conn.get_object(c, 'a.csv')[1] == b'region,qty\neast,3\n'
    resp = sql(conn, {'query': f'SELECT count(*) FROM swift://~/{c}/*.csv',
                      'output': f'swift://~/{c}/count.txt'})
    assert resp.status_code == 200, resp.text
    assert conn.get_object(c, 'count.txt')[1] == b'count(*)\r\n2\r\n'


def test_the_example(swift_cluster, conn, tmp_path) -> None:
    """examples/sql: its generated data set and its stored query (top.json)."""
    example = Path(__file__).resolve().parents[2] / 'examples' / 'sql'
    subprocess.run([sys.executable, str(example / 'make_data.py'), str(tmp_path / 'sales'),
                    '6', '300'], check=True)
    conn.put_container('sales')
    conn.put_container('results')
    db = sqlite3.connect(':memory:')
    db.execute('CREATE TABLE t(day NUMERIC, region NUMERIC, product NUMERIC, qty NUMERIC, '
               'price NUMERIC, note NUMERIC)')
    for path in sorted((tmp_path / 'sales').iterdir()):
        data = path.read_bytes()
        conn.put_object('sales', path.name, data)
        text = (gzip.decompress(data) if path.name.endswith('.gz') else data).decode()
        rows = list(csv.reader(io.StringIO(text, newline='')))[1:]
        db.executemany('INSERT INTO t VALUES (?,?,?,?,?,?)',
                       [[v if v != '' else None for v in r] for r in rows])
    assert any(p.name.endswith('.csv.gz') for p in (tmp_path / 'sales').iterdir())
    body = json.loads((example / 'top.json').read_text())
    resp = sql(conn, body)
    assert resp.status_code == 200, resp.text
    assert resp.headers['X-Sql-Plan'] == 'split' and resp.headers['X-Sql-Objects'] == '6'
    _, stored = conn.get_object('results', 'top.csv')
    query = body['query'].replace('swift://~/sales/day-*', 't')
    cur = db.execute(query)
    check_csv(stored, [d[0] for d in cur.description], cur.fetchall(), True)
    for name in [o['name'] for o in conn.get_container('sales')[1]]:
        conn.delete_object('sales', name)
    conn.delete_object('results', 'top.csv')


def test_zc_sql_answers_explains_stores_and_says_why_it_refuses(
        swift_cluster, conn: Connection, connect, make_container, sales, tmp_path) -> None:
    """``zc sql`` over test_sql's sales objects: the answer the database gives, the plan,
    a stored answer; a syntax error, a missing container and a container of another
    account print the server's reason and exit 1."""
    query = (f'SELECT region, count(*), sum(qty) FROM {URL} WHERE qty > 10 GROUP BY region '
             'ORDER BY 3 DESC, 1')
    def zc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*ZC, *args], cwd=tmp_path, env=user_env(swift_cluster),
                              capture_output=True, text=True, timeout=300, check=False)
    proc = zc('sql', query)
    assert proc.returncode == 0, proc.stderr
    check_csv(proc.stdout.encode(), *reference(sales[1], query, URL), ordered=True)
    answer = proc.stdout.encode()
    assert re.fullmatch(r'plan split over 6 objects; 7 nodes: 7 succeeded, 0 failed in '
                        r'[\d.]+ s; HTTP 200\n', proc.stderr), proc.stderr
    proc = zc('sql', query, '--format', 'json', '-q')
    assert proc.returncode == 0 and proc.stderr == ''
    assert [list(json.loads(line)) for line in proc.stdout.splitlines()][0] == \
        ['region', 'count(*)', 'sum(qty)']
    proc = zc('sql', query, '--explain', '--engine', 'native')
    plan = json.loads(proc.stdout)
    assert (plan['mode'], plan['objects']) == ('split', 6)
    assert {g['engine'] for job in plan['jobs'] for g in job} == {'native'}
    out = f'zcsql-{os.getpid()}'                # zc creates the answer's container
    proc = zc('sql', query, '--out', f'swift://~/{out}/answer.csv', '--no-header')
    assert proc.returncode == 0 and proc.stdout == '', proc.stderr
    assert f'the answer is in {out}/answer.csv;' in proc.stderr
    stored = conn.get_object(out, 'answer.csv')[1]       # (text=True read CRLF as LF)
    assert stored.replace(b'\r\n', b'\n') == answer.split(b'\n', 1)[1]
    conn.delete_object(out, 'answer.csv')
    conn.delete_container(out)
    other = connect('test2:tester2')
    private = make_container('zcsql-private', connection=other)
    other.put_object(private, 'a.csv', b'x\n1\n')
    for text, says in [
            (f'SELECT region FROM {URL} WHERE qty = = 1',
             'zc: the query: 400 Bad Request\nquery: near "=": syntax error at character'),
            ('SELECT 1 FROM swift://~/zcsql-nowhere/*.csv',
             'zc: the query: 404 Not Found\n'),
            (f'SELECT x FROM swift://AUTH_test2/{private}/*.csv', 'zc: the query: 403 ')]:
        proc = zc('sql', text)
        assert (proc.returncode, proc.stdout) == (1, ''), proc.stderr
        assert proc.stderr.startswith(says) and 'Traceback' not in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) >= 2, proc.stderr      # the server's reason

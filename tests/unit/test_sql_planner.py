"""The SQL planner without a cluster: every plan, run with the host's sqlite3 over
partitioned data (node queries per part, the merge query over their rows), gives the
answer the query gives over all the data at once."""

from __future__ import annotations

import csv
import json
import math
import random
import sqlite3

import pytest

from zerocloud.sql import planner
from zerocloud.sql.planner import SqlError, parse_query, parse_request, plan

COLUMNS = ['region', 'product', 'qty', 'price', 'note']
URL = 'swift://~/sales/*.csv'


def parts(seed: int = 7) -> list[list[tuple]]:
    rng = random.Random(seed)
    out = []
    for n in (40, 0, 25, 1, 33):
        rows = []
        for _ in range(n):
            rows.append((rng.choice(['east', 'west', 'North', None]),
                         f'p{rng.randint(1, 6)}',
                         None if rng.random() < 0.15 else rng.randint(-5, 30),
                         round(rng.random() * 100, 2),
                         rng.choice(['', 'a', 'b,c', None, '12x'])))
        out.append(rows)
    return out


def run(db: sqlite3.Connection, create: str, rows: list[tuple], query: str) -> list[tuple]:
    db.execute(create)
    if rows:
        db.executemany(f'INSERT INTO {create.split()[2].split("(")[0]} VALUES '
                       f'({",".join("?" * len(rows[0]))})', rows)
    return db.execute(query).fetchall()


def simulate(p: planner.Plan, data: list[list[tuple]]) -> list[tuple]:
    """The plan's answer: node queries per part, then the merge query."""
    keep = [COLUMNS.index(c) for c in p.loaded]
    data = [[tuple(row[i] for i in keep) for row in rows] for rows in data]
    if p.mode == 'single':
        return run(sqlite3.connect(':memory:'), p.map_schema(), data[0], p.map_query)
    partial = []
    for rows in data:
        partial += run(sqlite3.connect(':memory:'), p.map_schema(), rows, p.map_query)
    return run(sqlite3.connect(':memory:'), p.reduce_schema(), partial, p.reduce_query)


def direct(query: str, data: list[list[tuple]]) -> tuple[list[str], list[tuple]]:
    db = sqlite3.connect(':memory:')
    rows = [r for part in data for r in part]
    cur = db.execute(planner.schema('t', COLUMNS))
    db.executemany('INSERT INTO t VALUES (?,?,?,?,?)', rows)
    cur = db.execute(query.replace(URL, 't'))
    return [d[0] for d in cur.description], cur.fetchall()


def same_rows(a: list[tuple], b: list[tuple], ordered: bool) -> bool:
    if not ordered:
        a, b = (sorted(x, key=lambda r: [repr(v) for v in r]) for x in (a, b))
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        for va, vb in zip(ra, rb, strict=True):
            if isinstance(va, float) and isinstance(vb, float | int):
                if not math.isclose(va, vb, rel_tol=1e-12, abs_tol=1e-9):
                    return False
            elif va != vb or type(va) is not type(vb):
                return False
    return True


CASES = [
    # (query, mode, ordered)
    ('SELECT region, count(*), sum(qty) FROM {u} WHERE qty > 10 GROUP BY region '
     'ORDER BY 3 DESC, 1 LIMIT 5', 'split', True),
    ('SELECT count(*), count(qty), count(), sum(qty), total(qty), min(qty), max(qty), '
     'avg(qty), avg(price), min(note), max(note) FROM {u}', 'split', True),
    ('SELECT region r, avg(price) AS a, max(qty) - min(qty) spread FROM {u} GROUP BY r '
     'HAVING count(*) > 2 AND sum(qty) IS NOT NULL ORDER BY a', 'split', True),
    ('SELECT upper(region) AS up, product, CASE WHEN sum(qty) > 50 THEN \'big\' ELSE '
     '\'small\' END FROM {u} GROUP BY 1, product ORDER BY up NULLS FIRST, product', 'split',
     True),
    ('SELECT s.region, count(*) FROM {u} AS s GROUP BY s.region ORDER BY 1', 'split', True),
    ('SELECT region COLLATE NOCASE, count(*) FROM {u} GROUP BY region COLLATE NOCASE '
     'ORDER BY 1', 'split', True),
    ('SELECT max(qty, 3), count(*) FROM {u} GROUP BY max(qty, 3) ORDER BY 1', 'split', True),
    ('SELECT region, sum(qty) FROM {u} WHERE region = \'nowhere\' GROUP BY region',
     'split', True),
    ('SELECT count(*) FROM {u} WHERE region = \'nowhere\'', 'split', True),
    ('SELECT region, sum(qty) / count(qty) FROM {u} GROUP BY region ORDER BY 1', 'split',
     True),
    ('SELECT region, count(DISTINCT product) FROM {u} GROUP BY region ORDER BY 1', 'rows',
     True),
    ('SELECT region, group_concat(product) FROM {u} GROUP BY region', 'rows', False),
    ('SELECT region, product, count(*) FROM {u} GROUP BY region ORDER BY 1', 'rows', None),
    ('SELECT * FROM {u} WHERE qty > 5 ORDER BY price DESC, product LIMIT 4 OFFSET 3', 'rows',
     True),
    ('SELECT product, price FROM {u} ORDER BY price LIMIT 2, 3', 'rows', True),
    ('SELECT product, -price AS price FROM {u} ORDER BY price, product LIMIT 4', 'rows', True),
    ('SELECT DISTINCT region FROM {u} ORDER BY region', 'rows', True),
    ('SELECT region, qty, row_number() OVER (PARTITION BY region ORDER BY qty, price) AS n '
     'FROM {u} WHERE qty > 20 ORDER BY region, n', 'rows', True),
    ('SELECT note, count(*) FROM {u} GROUP BY note HAVING note LIKE \'%,%\'', 'split', True),
    ('SELECT region, sum(qty) FILTER (WHERE qty > 3) FROM {u} GROUP BY region ORDER BY 1',
     'rows', True),
    ('SELECT region, sum(qty) AS qty FROM {u} GROUP BY region ORDER BY qty', 'split', True),
    ('SELECT region, sum(qty) AS qty FROM {u} GROUP BY region HAVING qty > 1', 'rows', None),
    ('SELECT region, sum(price) AS qty FROM {u} GROUP BY region ORDER BY qty DESC', 'split',
     True),
    # a select-list alias in WHERE (SQLite reads it as its expression; the nodes' queries
    # said 'no such column: d', 422); a column of that name is the column
    ('SELECT qty * 2 AS d, count(*) FROM {u} WHERE d > 10 AND "D" < 50 GROUP BY d ORDER BY 1',
     'split', True),
    ('SELECT region AS r, sum(qty) FROM {u} WHERE r = \'east\' GROUP BY r', 'split', True),
    ('SELECT product, price * 2 AS "double" FROM {u} WHERE "double" > 150 AND qty > 3 '
     'ORDER BY 2, 1', 'rows', True),
    ('SELECT product AS qty, count(*) FROM {u} WHERE qty > 5 GROUP BY product ORDER BY 1',
     'split', True),
]


@pytest.mark.parametrize('query,mode,ordered', CASES, ids=range(len(CASES)))
def test_plans_give_the_same_answer(query, mode, ordered) -> None:
    query = query.format(u=URL)
    data = parts()
    p = plan(parse_query(query), COLUMNS, len(data))
    assert p.mode == mode, p.reason
    names, want = direct(query, data)
    assert p.result_columns == names
    if ordered is None:             # a column outside the GROUP BY: any row's value
        assert len(simulate(p, data)) == len(want)
        return
    got = simulate(p, data)
    assert same_rows(want, got, ordered), (p.map_query, p.reduce_query, want, got)
    if p.reduce_query:              # the merge keeps the answer's column names
        db = sqlite3.connect(':memory:')
        db.execute(p.reduce_schema())
        assert [d[0] for d in db.execute(p.reduce_query).description] == names


@pytest.mark.parametrize('query', [
    'SELECT min(region COLLATE NOCASE), max(region COLLATE NOCASE) FROM {u}',
    'SELECT count(*), max(upper(region) COLLATE RTRIM), min(region COLLATE nocase || \'\') '
    'FROM {u}'])
def test_min_max_under_a_collation_is_the_minimum_of_all_the_rows(query) -> None:
    """A collation orders values within one table: the merge compared the objects'
    minima as bytes ('B' < 'a'), so min(x COLLATE NOCASE) was 'B', not 'a' (200 OK)."""
    query = query.format(u=URL)
    data = [[('a', 'p', 1, 1.0, ''), ('Z', 'p', 2, 1.0, '')], [('B', 'p', 3, 1.0, '')],
            [('z ', 'p', 3, 1.0, '')]]
    p = plan(parse_query(query), COLUMNS, len(data))
    assert p.mode == 'rows', p.reason
    assert 'COLLATE' in p.reason
    assert simulate(p, data) == direct(query, data)[1]


def test_avg_of_large_integers_does_not_overflow() -> None:
    """avg() adds integers past 2**63 as reals; the merge's sum() of the objects' sums
    failed with 'integer overflow' (422) where SQLite answers 5e18."""
    query = f'SELECT region, avg(qty), count(*) FROM {URL} GROUP BY region'
    big = 5 * 10 ** 18
    data = [[('a', 'p', big, 1.0, ''), ('a', 'p', big, 1.0, '')], [('a', 'p', big, 1.0, '')],
            [('a', 'p', 3, 1.0, ''), ('b', 'p', 2 ** 53 + 1, 1.0, '')]]
    p = plan(parse_query(query), COLUMNS, len(data))
    assert p.mode == 'split'
    assert same_rows(simulate(p, data), direct(query, data)[1], False)


def test_one_object_is_one_node() -> None:
    data = parts()[:1]
    query = f'SELECT region, count(*) FROM {URL} GROUP BY region'
    p = plan(parse_query(query), COLUMNS, 1)
    assert p.mode == 'single' and p.reduce_query is None
    assert p.map_query == 'SELECT region, count(*) FROM t GROUP BY region'
    assert same_rows(direct(query, data)[1], simulate(p, data), False)


def test_split_node_query_reads_only_what_it_needs() -> None:
    p = plan(parse_query(f'SELECT region, avg(qty) FROM {URL} s WHERE price > 1 '
                         'GROUP BY region'), COLUMNS, 3)
    assert p.map_query == ('SELECT "region" AS "region", total(qty) AS _zc0, count(qty) AS _zc1 '
                           'FROM t s WHERE price > 1 GROUP BY "region"')
    assert p.partial_columns == ['region', '_zc0', '_zc1']
    assert p.reduce_schema() == 'CREATE TABLE p("region" NUMERIC, "_zc0", "_zc1")'
    assert p.loaded == ['region', 'qty', 'price'] and p.fields() == '5:1,3,4'
    assert p.map_schema() == 'CREATE TABLE t("region" NUMERIC, "qty" NUMERIC, "price" NUMERIC)'
    star = plan(parse_query(f'SELECT * FROM {URL}'), COLUMNS, 2)
    assert star.loaded == COLUMNS and star.fields() is None
    count = plan(parse_query(f'SELECT count(*) FROM {URL}'), COLUMNS, 2)
    assert count.loaded == ['region'] and count.fields() == '5:1'
    rows = plan(parse_query(f'SELECT note FROM {URL} WHERE qty > 1 ORDER BY price LIMIT 3'),
                COLUMNS, 3)
    assert rows.map_query == ('SELECT "price" AS "price", "note" AS "note" FROM t '
                              'WHERE qty > 1 ORDER BY price LIMIT 3')
    assert 'at most LIMIT + OFFSET rows' in rows.reason


@pytest.mark.parametrize('query,message', [
    (f'SELECT regoin FROM {URL}', 'no such column: regoin at character 8 (the columns: '
                                  'region, product, qty, price, note)'),
    (f'SELECT region FROM {URL} WHERE qty = = 1', 'near "=": syntax error at character 54'),
    (f'SELECT nosuch(qty) FROM {URL}', 'no such function: nosuch at character 8'),
    (f'SELECT region FROM {URL} WHERE', 'incomplete input'),
    (f'SELECT sum(qty), region FROM {URL} GROUP BY sum(qty)', 'aggregate functions are not'),
    ('WITH x AS (SELECT 1) SELECT * FROM x', 'WITH (common table expressions)'),
    (f'SELECT 1 FROM {URL} UNION SELECT 2 FROM {URL}', 'UNION is not supported at character 37'),
    (f'SELECT 1 FROM {URL} a, {URL} b', 'joins are not supported) at'),
    # a name with a space, unquoted: its second word was read as an alias, then "joins"
    ('SELECT count(*) FROM swift://~/c/my data*.csv WHERE 1', 'FROM takes one collection and '
     'an alias (joins are not supported; a name with spaces is quoted: FROM '
     '"swift://~/c/my data*.csv") at character 41'),
    # a comma in a name, unquoted: it was 'joins are not supported' alone
    ('SELECT count(*) FROM swift://~/c/a,b*.csv', 'FROM takes one collection and an alias '
     '(joins are not supported; a name with a comma is quoted: FROM "swift://~/c/a,b*.csv") '
     'at character 36'),
    (f'SELECT 1 FROM {URL},{URL}', 'joins are not supported) at'),
    (f'SELECT 1 FROM {URL},t2', 'joins are not supported) at'),
    (f'SELECT 1 FROM {URL}; DROP TABLE t', 'one statement only'),
    (f'SELECT (1 FROM {URL}', 'a ")" is missing'),
    ("SELECT 'abc FROM x", 'unterminated string at character 8'),
    ('SELECT 1', 'FROM swift://'),
    ('SELECT 1 FROM t', 'FROM takes one swift://'),
    # a container's name alone, or another scheme's URL (": is a parameter" said nothing)
    ('SELECT 1 FROM sales WHERE 1', 'query: FROM takes one swift://<account>/<container>/'
     '<objects> (a container? swift://~/sales/* names its objects) at character 15'),
    ('SELECT count(*) FROM s3://b/y.csv', 'query: FROM takes one swift://<account>/<container>/'
     '<objects>, not s3:// at character 22'),
    # the URL in single quotes, as a string: its space needs quoting, but as a name
    ("SELECT 1 FROM 'swift://~/my c/*.csv'", 'query: FROM takes one swift://<account>/<container>'
     '/<objects> (in double quotes, as a name: "swift://~/my c/*.csv"; single quotes make a '
     'string) at character 15'),
    # a mistyped URL's /* started a comment: 'unterminated comment' said nothing of the URL
    ('SELECT 1 FROM swift:/~/sales/*.csv', 'query: swift:/~/sales/*.csv at character 15 is not '
     'a swift://<account>/<container>/<objects> URL (its /* starts an SQL comment'),
    ('SELECT 1 FROM ~/sales/*.csv', 'query: ~/sales/*.csv at character 15 is not a swift://<'
     'account>/<container>/<objects> URL (its /* starts an SQL comment that does not end) '
     '(did you mean swift://~/sales/*.csv?)'),
    # the container's name alone, as in swift list: 'unterminated comment' and no word more
    ('SELECT 1 FROM sales/*.csv', 'query: sales/*.csv at character 15 is not a swift://<'
     'account>/<container>/<objects> URL (its /* starts an SQL comment that does not end) '
     '(did you mean swift://~/sales/*.csv?)'),
    ('SELECT 1 FROM http://h:8080/v1/AUTH_a/sales/*.csv', '(did you mean '
     'swift://AUTH_a/sales/*.csv?)'),
    ('SELECT 1 FROM s3://b/*.csv', 'query: s3://b/*.csv at character 15 is not a swift://'),
    (f'SELECT 1 FROM {URL} WHERE 1=1/* x', 'query: unterminated comment at character 46'),
    # each node numbers its object's rows from 1: 99 rows per object were counted
    (f'SELECT count(*) FROM {URL} WHERE rowid < 100', 'query: rowid numbers the rows of each '
     'object from 1, not the rows of all of them: it is only for one object (FROM '
     'swift://~/<container>/<object>) at character 50'),
    (f'SELECT t.oid FROM {URL} t', 'query: oid numbers the rows of each object'),
    # the nodes have no clock: date('now') was 1970-01-01, every row "older than a week"
    (f"SELECT count(*) FROM {URL} WHERE qty > date('now', '-7 days')", "query: 'now' is the "
     "current time, which the nodes do not have (a query answers the same every time, and "
     "theirs is 1970-01-01): write the date, e.g. '2026-12-04' at character 61"),
    (f'SELECT CURRENT_TIMESTAMP FROM {URL}', 'query: CURRENT_TIMESTAMP is the current time'),
    (f'SELECT datetime() FROM {URL}', 'query: datetime() is the current time'),
    (f'SELECT 1 FROM {URL} WHERE 1 IN (SELECT 2)', 'subqueries are not supported'),
    (f'SELECT 1 FROM {URL} ORDER BY 1 WHERE 1', 'clauses out of order'),
    # SQLite's own words were 'Incorrect number of bindings supplied. The current ...'
    (f'SELECT 1 FROM {URL} WHERE qty > ? AND note = :note', 'query: ? is a parameter, which '
     'nothing binds: write the value itself at character 49'),
    (f"SELECT 1 FROM {URL} WHERE note = '?' AND price > $min", 'query: $min is a parameter'),
    # the host's SQLite takes these over an empty table; every node failed on them (422)
    (f"SELECT count(*) FROM {URL} WHERE note MATCH 'a'", 'query: MATCH needs a full-text '
     'index, which objects do not have: use LIKE or GLOB at character 55'),
    (f"SELECT load_extension('x') FROM {URL}", 'query: no such function: load_extension at '
     'character 8'),
])
def test_bad_queries_say_what_and_where(query, message) -> None:
    with pytest.raises(SqlError) as e:
        plan(parse_query(query), COLUMNS, 2)
    assert message in str(e.value)


@pytest.mark.parametrize('sep, shown', [(';', ';'), ('\t', '\\t'), ('|', '|'), (',', ',')])
def test_one_column_named_with_another_delimiter_says_to_give_it(sep: str, shown: str) -> None:
    # a CSV of "a;b;c" read with commas: "no such column: b (the columns: a;b;c)", and
    # nothing said of the delimiter; so was a CSV of commas read with --delimiter ';'
    # (or named .tsv): "(the columns: a,b,c)" looked like a list of three
    with pytest.raises(SqlError) as e:
        plan(parse_query(f'SELECT b FROM {URL}'), [sep.join('abc')], 2)
    assert str(e.value).endswith(
        f'(the columns: {sep.join("abc")}: one column, whose name holds "{shown}": if the '
        f'fields are separated by "{shown}", give that as "input"."delimiter")')


def test_no_such_column_hints_fit_the_input_format() -> None:
    """A JSON key holding ";" is no CSV read with the wrong delimiter: JSON lines are told
    where their columns come from (a key only later lines have is none), and names the
    request gave get no hint at all."""
    query = parse_query(f'SELECT b FROM {URL}')
    with pytest.raises(SqlError) as e:
        plan(query, ['a;b;c'], 2, fmt='jsonl')
    assert 'delimiter' not in str(e.value)
    assert str(e.value).endswith('(the columns: a;b;c: the keys of the first line; a key '
                                 'only later lines have is a column when "input"."columns" '
                                 'names every one)')
    with pytest.raises(SqlError) as e:
        plan(query, ['a;b;c'], 2, fmt=None)
    assert str(e.value).endswith('(the columns: a;b;c)')


def test_a_request_without_a_body_says_where_the_query_goes() -> None:
    # swift post -H 'X-Zerovm-Execute: sql/1.0' alone said "not JSON: Expecting value"
    with pytest.raises(SqlError, match=r'\(the request has no body: send the query, or name a '
                                       r'stored one with X-Zerovm-Source: swift://~/'):
        parse_request(b'')


@pytest.mark.parametrize('body', [b'SELECT * FROM swift://~/c/o', b'[]', b'"SELECT 1"'])
def test_a_body_that_is_not_a_json_object_is_told_the_shape(body: bytes) -> None:
    # was 'the body must be a JSON object: Expecting value ...' with no word of the keys
    with pytest.raises(SqlError) as e:
        parse_request(body)
    said = str(e.value)
    assert said.startswith('the body must be a JSON object: {"query": "SELECT ... FROM '
                           'swift://~/<container>/<object>"}, optional keys: engine, explain, '
                           'format, header, input, output (doc/sql.md)')
    assert len(said) < 300


@pytest.mark.parametrize('body,message', [
    (b'[]', 'must be a JSON object'),
    (b'{', 'must be a JSON object'),
    (b'{"query": ""}', '"query" must be a non-empty string'),
    (b'{"query": "x", "format": "xml"}', '"format" must be one of csv, json'),
    (b'{"query": "x", "header": "yes"}', '"header" must be true or false'),
    (b'{"query": "x", "input": {"format": "parquet"}}', 'must be one of csv, jsonl'),
    (b'{"query": "x", "input": {"columns": ["a", "A"]}}', "column name 'A' appears twice"),
    (b'{"query": "x", "input": {"delimiter": ";;"}}', 'one ASCII character'),
    (b'{"query": "x", "input": {"colums": []}}',
     'unknown key(s) "colums" in "input", did you mean "columns"? (known: '),
    (b'{"query": "x", "fromat": "csv"}', 'unknown key(s) "fromat" in the body, did you mean '
     '"format"? (known: '),
    (b'{"query": "x", "zzz": 1}', 'unknown key(s) "zzz" in the body (known: '),
    (b'{"query": "x", "output": "swift://~/c/*.csv"}', '"output" must be one object'),
    (b'{"query": "x", "output": "results/top.csv"}', '"output" must be one object: '
     'swift://<account>/<container>/<object> (did you mean swift://~/results/top.csv?)'),
    (b'{"query": "x", "engine": "fast"}', '"engine" must be one of auto, native, emulated'),
])
def test_bad_requests(body, message) -> None:
    with pytest.raises(SqlError) as e:
        parse_request(body)
    assert message in str(e.value)


def test_request_defaults() -> None:
    r = parse_request(json.dumps({'query': 'SELECT 1'}).encode())
    assert (r.format, r.header, r.explain, r.output, r.engine) == \
        ('csv', True, False, None, None)
    assert parse_request(b'{"query": "SELECT 1", "engine": "emulated"}').engine == 'emulated'
    assert (r.input.format, r.input.header, r.input.columns, r.input.delimiter) == \
        (None, True, None, ',')


def test_quoted_urls_and_names() -> None:
    q = parse_query('SELECT "my col", count(*) FROM "swift://~/c/my objects*" x '
                    'GROUP BY "my col"')
    assert q.source == 'swift://~/c/my objects*'
    p = plan(q, ['my col', 'b'], 2)
    assert p.mode == 'split'
    assert p.map_query.startswith('SELECT "my col" AS "my col", count(*) AS _zc0 FROM t x')


def test_json_keys_a_node_can_look_up() -> None:
    planner.check_json_keys(['a', "it's", 'x y'])
    for bad in ('say "hi"', 'back\\slash'):
        with pytest.raises(SqlError, match='JSON keys with quotes or backslashes'):
            planner.check_json_keys(['a', bad])


def test_input_format_and_columns_from_the_first_object() -> None:
    from zerocloud.sql import entry
    spec = planner.InputSpec()
    assert entry._input_format(spec, 'a.csv') == ('csv', ',')
    assert entry._input_format(spec, 'a.TSV.gz') == ('csv', '\t')
    assert entry._input_format(spec, 'a.ndjson.gz')[0] == 'jsonl'
    assert entry._input_format(planner.InputSpec(format='csv', delimiter=';'), 'x.log') == \
        ('csv', ';')
    with pytest.raises(SqlError, match='cannot tell the format of x.log'):
        entry._input_format(spec, 'x.log')
    head = '\ufeffname,"a, b",,name2\r\n1,2,3,4\r\n'.encode()
    assert entry._columns(head, 'csv', ',', True, 'o') == ['name', 'a, b', 'c3', 'name2']
    assert entry._columns(head, 'csv', ',', False, 'o') == ['c1', 'c2', 'c3', 'c4']
    assert entry._columns(b'\n{"k": 1, "v": 2}\n{"x"', 'jsonl', None, True, 'o') == ['k', 'v']
    with pytest.raises(SqlError, match='column name .NAME. appears twice'):
        entry._columns(b'name,NAME\n', 'csv', ',', True, 'o')
    with pytest.raises(SqlError, match='o holds a JSON array, not JSON objects'):
        entry._columns(b'[1, 2]\n', 'jsonl', None, True, 'o')
    with pytest.raises(SqlError, match='is not UTF-8'):
        entry._columns(b'a\xff,b\n1,2\n', 'csv', ',', True, 'o')
    cut = 'é'.encode()[:1]                              # a character cut by the range
    assert entry._columns(b'a,b\n1,' + cut, 'csv', ',', True, 'o') == ['a', 'b']
    # records ending with CR alone (old Mac): the csv module's error was a 500
    assert entry._columns(b'region,qty\reast,1\r', 'csv', ',', True, 'o') == ['region', 'qty']
    long = b'region,qty\r' + b'east,1\r' * (entry.HEAD_BYTES // 7)
    assert entry._columns(long[:entry.HEAD_BYTES], 'csv', ',', True, 'o') == ['region', 'qty']
    limit = csv.field_size_limit(4)                     # what the csv module refuses: a 400
    try:
        with pytest.raises(SqlError, match=r'^the first record of o does not read as CSV: '
                                           r'field larger than field limit \(4\)$'):
            entry._columns(b'region,qty\n', 'csv', ',', True, 'o')
    finally:
        csv.field_size_limit(limit)


def test_objects_named_as_two_formats_are_refused_before_anything_runs() -> None:
    # swift://~/c/* over a.csv and b.jsonl read b.jsonl as CSV: its nodes failed (422)
    # with "the header row names field 1 "{"a": 1", not "a" as the first object's"
    from zerocloud.job import SwiftPath
    from zerocloud.sql import entry
    spec = planner.InputSpec()
    objects = [SwiftPath('AUTH_a', 'c', name) for name in ('a.csv', 'b.CSV.gz', 'notes.txt')]
    entry._one_format(spec, objects, ('csv', ','))       # a name that says nothing: as the first
    for other, said in (('c.jsonl', 'JSON lines'), ('c.tsv', 'tab-separated CSV')):
        with pytest.raises(SqlError) as e:
            entry._one_format(spec, objects + [SwiftPath('AUTH_a', 'c', other)], ('csv', ','))
        assert str(e.value) == (
            f'swift://AUTH_a/c/a.csv is CSV and swift://AUTH_a/c/{other} {said}, by their '
            'names: one query reads one format: narrow the FROM pattern to one kind of name, '
            'or say "input": {"format": "csv"} or "jsonl" to read all of them so')
    said = planner.InputSpec(format='csv')                # the format said: all read so
    entry._one_format(said, objects + [SwiftPath('AUTH_a', 'c', 'c.jsonl')], ('csv', ','))


def test_jobs_of_a_plan() -> None:
    from zerocloud.job import SwiftPath
    from zerocloud.sql import entry
    p = plan(parse_query(f'SELECT region, sum(qty) FROM {URL} GROUP BY region'), COLUMNS, 3)
    nodes, merge = entry.build_jobs(p, SwiftPath('AUTH_a', 'sales', '*.csv'), 'csv', ',',
                                    True, 'json', True)
    assert nodes[0]['devices'][0] == {'name': 'input', 'path': 'swift://AUTH_a/sales/*.csv'}
    args = nodes[0]['exec']['args']
    assert args[args.index('--fields') + 1] == '5:1,3'
    assert args[-2:] == ['--out', 'partial']
    assert merge[0]['exec']['args'][-2:] == ['--out', 'json']
    assert merge[0]['devices'] == [{'name': 'stdin'},
                                   {'name': 'stdout', 'content_type': 'application/x-ndjson'}]
    assert 'engine' not in nodes[0] and 'engine' not in merge[0]
    assert '--check-header' not in args
    nodes, _ = entry.build_jobs(p, SwiftPath('AUTH_a', 'sales', '*.csv'), 'csv', ',',
                                True, 'json', True, check_header=True)
    checked = nodes[0]['exec']['args']
    assert checked[checked.index('--fields') + 2] == '--check-header'
    nodes, merge = entry.build_jobs(p, SwiftPath('AUTH_a', 'sales', '*.csv'), 'csv', ',',
                                    True, 'csv', True, engine='native')
    assert nodes[0]['engine'] == merge[0]['engine'] == 'native'
    single = plan(parse_query(f'SELECT count(*) FROM {URL}'), COLUMNS, 1)
    (job,) = entry.build_jobs(single, SwiftPath('AUTH_a', 'sales', 'x.csv'), 'jsonl', None,
                              False, 'csv', False, SwiftPath('AUTH_a', 'out', 'n.csv'))
    assert job[0]['exec']['args'][job[0]['exec']['args'].index('--load') + 1] == 'jsonl'
    assert job[0]['devices'][1] == {'name': 'stdout', 'content_type': 'text/csv; charset=utf-8',
                                    'path': 'swift://AUTH_a/out/n.csv'}


@pytest.mark.parametrize(('headers', 'says'), [
    ({'X-Nexe-System': 'a,b', 'X-Nexe-Retcode': '0,3'}, 'b: exit 3'),
    ({'X-Nexe-System': 'a,b', 'X-Nexe-Retcode': '0,0'}, None),
    ({'X-Nexe-Nodes': '1200', 'X-Nexe-Retcode-Counts': '0 1198, 1 2'}, '2 nodes: exit 1'),
    ({'X-Nexe-Nodes': '1200', 'X-Nexe-Retcode-Counts': '0 1200'}, None),
])
def test_a_node_exit_code_fails_the_query_small_or_large(headers: dict, says) -> None:
    from swift.common.swob import Response

    from zerocloud.sql.entry import _failed_exit
    assert _failed_exit(Response(headers=headers)) == says


def test_a_query_over_many_objects_counts_its_nodes_and_the_merge_as_one_job() -> None:
    """Over 1,000 objects the nodes' job answers with counts: the merge node is counted
    in them (it was listed alone beside the counts of the others, which left it out)."""
    from swift.common.swob import Response

    from zerocloud.sql.entry import _joined
    nodes = Response(headers={'X-Nexe-Nodes': '1200', 'X-Nexe-Failed': '0',
                              'X-Nexe-Status-Counts': 'ok 1200',
                              'X-Nexe-Retcode-Counts': '0 1200',
                              'X-Nexe-Cdr-Total': '5.000, 0 10 2000 300'})
    merge = {'X-Nexe-System': 'merge', 'X-Nexe-Status': 'ok', 'X-Nexe-Retcode': '0',
             'X-Nexe-Validation': '0', 'X-Nexe-Etag': '/dev/stdout 18882ddbd856dcf4',
             'X-Nexe-Cdr-Line': '0.020, 0.019, 0 103 300 44', 'X-Nexe-Body-Bytes': '44'}
    assert _joined(nodes, Response(headers=merge)) == {
        'X-Nexe-Nodes': '1201', 'X-Nexe-Failed': '0', 'X-Nexe-Status-Counts': 'ok 1201',
        'X-Nexe-Retcode-Counts': '0 1201', 'X-Nexe-Cdr-Total': '5.020, 0 113 2300 344'}
    crashed = {**merge, 'X-Nexe-Status': 'fault', 'X-Nexe-Retcode': '',
               'X-Nexe-Error': 'merge: fault: read of unmapped memory at 0x0'}
    assert _joined(nodes, Response(headers=crashed)) == {
        'X-Nexe-Nodes': '1201', 'X-Nexe-Failed': '1',
        'X-Nexe-Status-Counts': 'fault 1, ok 1200', 'X-Nexe-Retcode-Counts': '0 1200',
        'X-Nexe-Cdr-Total': '5.020, 0 113 2300 344',
        'X-Nexe-Error': 'merge: fault: read of unmapped memory at 0x0'}
    small = Response(headers={'X-Nexe-System': 'sql-1,sql-2', 'X-Nexe-Status': 'ok,ok',
                              'X-Nexe-Cdr-Line': '1.000, 0.5, 0 1 2 3, 0.5, 0 1 2 3'})
    joined = _joined(small, Response(headers=merge))
    assert joined['X-Nexe-System'] == 'sql-1,sql-2,merge' and 'X-Nexe-Nodes' not in joined
    assert joined['X-Nexe-Cdr-Line'] == '1.020, 0.5, 0 1 2 3, 0.5, 0 1 2 3, 0.019, 0 103 300 44'


def test_now_is_refused_only_as_a_time() -> None:
    for query in (f"SELECT count(*) FROM {URL} WHERE note = 'now'",
                  f"SELECT date(qty, '+1 day'), upper('now') FROM {URL}",
                  f'SELECT "current_date" FROM {URL}'):
        plan(parse_query(query), [*COLUMNS, 'current_date'], 2)


def test_a_column_named_match_is_a_column() -> None:
    columns = ['match', 'goals']
    p = plan(parse_query(f'SELECT match, sum(goals) FROM {URL} GROUP BY match'), columns, 2)
    assert p.mode == 'split'


def test_rowid_is_the_rowid_over_one_object_and_a_column_or_alias_named_so() -> None:
    assert plan(parse_query('SELECT rowid FROM swift://~/s/one.csv'), COLUMNS, 1).mode == 'single'
    assert plan(parse_query(f'SELECT rowid FROM {URL}'), [*COLUMNS, 'rowid'], 2).mode == 'rows'
    assert plan(parse_query(f'SELECT qty AS rowid FROM {URL} ORDER BY rowid'), COLUMNS, 2)


def test_skip_bad_merges_even_one_object_and_its_nodes_skip() -> None:
    """With "skip_bad" the nodes note what they skipped among their partial rows, which
    only a merging node can pass over: one object is planned as several are (and its
    rowid, which would number the merged rows, is refused)."""
    from zerocloud.job import SwiftPath
    from zerocloud.sql import entry
    spec = parse_request(b'{"query": "SELECT 1", "input": {"skip_bad": true}}')
    assert spec.input.skip_bad and not parse_request(b'{"query": "SELECT 1"}').input.skip_bad
    with pytest.raises(SqlError, match=r'"input"."skip_bad" must be true or false, not 1'):
        parse_request(b'{"query": "SELECT 1", "input": {"skip_bad": 1}}')
    one = parse_query('SELECT region, sum(qty) FROM swift://~/s/one.csv GROUP BY region')
    p = plan(one, COLUMNS, 1, merged=True)
    assert p.mode == 'split'
    nodes, merge = entry.build_jobs(p, SwiftPath('AUTH_t', 's', 'one.csv'), 'csv', ',', True,
                                    'csv', True, skip_bad=True)
    args = nodes[0]['exec']['args']
    assert '--skip-bad' in args and len(merge) == 1
    # a column summed as it is must hold numbers: text there makes the record malformed
    assert p.loaded == ['region', 'qty'] and args[args.index('--numeric') + 1] == '2'
    summed = plan(parse_query(f'SELECT sum(qty), avg(DISTINCT price), total(qty), '
                              f'sum(CASE WHEN note = 1 THEN price END), min(note) FROM {URL}'),
                  COLUMNS, 2)
    assert summed.numbers == ['qty', 'price'] and summed.numeric() == '1,2'
    # a column named by the FROM alias is summed as it is too; by another name, no column
    aliased = plan(parse_query(f'SELECT sum(t.qty), avg("T"."price") FROM {URL} AS t'),
                   COLUMNS, 2)
    assert aliased.numbers == ['qty', 'price']
    # with no alias, by the table SQLite reads (the source rewritten to it): as it is too
    bare = plan(parse_query(f'SELECT sum(t.qty), total("T".price) FROM {URL}'), COLUMNS, 2)
    assert bare.numbers == ['qty', 'price']
    with pytest.raises(SqlError):
        plan(parse_query(f'SELECT sum(u.qty) FROM {URL} t'), COLUMNS, 2)
    assert plan(parse_query(f'SELECT count(*) FROM {URL}'), COLUMNS, 2).numeric() is None
    with pytest.raises(SqlError, match=r'rowid is not available with "skip_bad"'):
        plan(parse_query('SELECT rowid FROM swift://~/s/one.csv'), COLUMNS, 1, merged=True)


@pytest.mark.parametrize('where,numbers', [
    ('SELECT sum(qty * 2) FROM {url}', ['qty']),
    ('SELECT total(-t.price), count(*) FROM {url} t', ['price']),
    ('SELECT region, qty + price FROM {url} ORDER BY note % 2', ['qty', 'price', 'note']),
    ('SELECT count(*) FROM {url} WHERE qty > 3', ['qty']),
    ('SELECT count(*) FROM {url} WHERE 3 <= qty AND price < -1.5', ['qty', 'price']),
    ('SELECT count(*) FROM {url} WHERE qty NOT BETWEEN 1 AND 5', ['qty']),
    # compared as text, or rightly for a text: no number meant
    ("SELECT count(*) FROM {url} WHERE region > 'm' AND note = 1 AND qty > price", []),
    ('SELECT region || product, max(qty), min(price), count(note) FROM {url}', []),
])
def test_skip_bad_makes_text_malformed_where_the_query_uses_a_column_as_a_number(
        where: str, numbers: list[str]) -> None:
    """``"skip_bad"``: a text in a column the query reads as a number, in arithmetic or
    ordered against a number, is a malformed record, as in one it sums: SQLite reads
    ``n/a`` there as 0 (``sum(qty * 2)``) or sorts it above every number (``qty > 3``
    was true), a wrong answer.  Only ``sum(qty)`` as it is was one."""
    p = plan(parse_query(where.format(url=URL)), COLUMNS, 2)
    assert p.numbers == numbers
    loaded = [c.lower() for c in p.loaded]
    assert p.numeric() == (','.join(str(loaded.index(c) + 1) for c in numbers) or None)


def test_the_skipped_notes_among_partial_rows_become_headers() -> None:
    from zerocloud.sql import entry
    partials = (b'i1\ti2\n#skipped\t2\tswift://A/c/a\\tb.csv\tline 3: x \\\\ y\n'
                b'tz\ti3\n#skipped\t1\tswift://A/c/b.csv\tline 9: w\n')
    notes = entry.skipped(partials)
    assert notes == [('swift://A/c/a\tb.csv', 2, 'line 3: x \\ y'),
                     ('swift://A/c/b.csv', 1, 'line 9: w')]
    assert entry.skipped(b'#skipped\t1\ta\tb\n') == [('a', 1, 'b')]
    assert entry.skipped(b'i1\n#skipped\t1\ta\tb') == [('a', 1, 'b')]     # no line end
    assert entry.skipped(b'ti#skipped\n') == []
    headers = entry.skipped_headers(notes)
    assert (headers['X-Sql-Skipped'], headers['X-Sql-Skipped-Objects']) == ('3', '2')
    assert json.loads(headers['X-Sql-Skipped-Detail']) == [list(n) for n in notes]
    many = entry.skipped_headers([(f'swift://A/c/{i:05}.csv', 1, 'line 2: x')
                                  for i in range(1000)])
    assert many['X-Sql-Skipped-Objects'] == '1000'
    assert 0 < len(json.loads(many['X-Sql-Skipped-Detail'])) < 1000
    assert len(many['X-Sql-Skipped-Detail']) <= entry.SKIPPED_DETAIL


def test_more_objects_than_zerovm_maxnodes_is_a_400_naming_the_option() -> None:
    """As for a job (``job-reference.md``): the request is small, what it names is too
    many; listing stops at the first object over the limit."""
    from types import SimpleNamespace

    from swift.common.swob import HTTPException

    from zerocloud.job import SwiftPath
    from zerocloud.sql import entry
    listed = []

    def listing(path: str, prefix: str = ''):
        for i in range(10**6):
            listed.append(i)
            yield f'day{i:07d}.csv'
    caller = SimpleNamespace(listing=listing, config=SimpleNamespace(max_nodes=3))
    with pytest.raises(HTTPException) as e:
        entry._objects(caller, SwiftPath('AUTH_a', 'sales', '*.csv'))
    assert e.value.status_int == 400
    assert e.value.body.decode() == (
        'swift://AUTH_a/sales/*.csv matches more than 3 objects (a node each): more nodes '
        "than the operator's zerovm_maxnodes (proxy) allows; it raises the limit\n")
    assert len(listed) == 4
    at_limit = SimpleNamespace(listing=lambda path, prefix='': ['a.csv', 'b.csv', 'c.csv'],
                               config=caller.config)
    assert [p.obj for p in entry._objects(at_limit, SwiftPath('AUTH_a', 's', '*.csv'))] == \
        ['a.csv', 'b.csv', 'c.csv']


@pytest.mark.parametrize(('head', 'says'), [
    # a .json log written as one array: the hint was "say input.columns", which only led
    # to a 422 "line 1: not a JSON object"; read whole, cut or pretty-printed, one message
    (b'[{"level": "info", "ms": 3}, {"level": "error", "ms": 9}]',
     'o holds a JSON array, not JSON objects: the objects must be JSON lines, one object per '
     'line, each a row (an array of objects is not: jq -c ".[]" makes it one)'),
    # json.dump of a list past the first read (64 KiB), or pretty-printed: the hint was
    # "columns", and for the pretty one "jq -c", which makes it one line of an array
    (b'[' + b'{"level": "info", "ms": 3}, ' * 3000,
     'o holds a JSON array, not JSON objects: the objects must be JSON lines, one object per '
     'line, each a row (an array of objects is not: jq -c ".[]" makes it one)'),
    (b'[\n  {\n    "level": "info"\n  }\n]\n',
     'o holds a JSON array, not JSON objects: the objects must be JSON lines, one object per '
     'line, each a row (an array of objects is not: jq -c ".[]" makes it one)'),
    # a pretty-printed document: its first line "{" is no JSON; the hint was "columns" too
    (b'{\n  "level": "info",\n  "ms": 3\n}\n',
     'the first line of o is not a JSON value: the objects must be JSON lines, one whole '
     'object per line, each a row (a pretty-printed document is not: jq -c makes it one)'),
])
def test_a_json_document_that_is_not_json_lines_says_what_jsonl_is(head: bytes,
                                                                   says: str) -> None:
    from zerocloud.sql import entry
    with pytest.raises(SqlError) as e:
        entry._columns(head, 'jsonl', None, True, 'o')
    assert str(e.value) == says


@pytest.mark.parametrize('head', [b'{}\n{"a": 1}\n', b'{"a": "' + b'x' * 70_000])
def test_a_first_json_line_without_keys_or_too_long_still_says_columns(head: bytes) -> None:
    """There, naming the columns is the way: no keys to read, or too far to read them."""
    from zerocloud.sql import entry
    with pytest.raises(SqlError, match=r'"input": \{"columns": \[...\]\}'):
        entry._columns(head, 'jsonl', None, True, 'o')


@pytest.mark.parametrize('scheme', ['SWIFT://', 'Swift://'])
def test_a_swift_url_in_upper_case_is_a_source_and_an_output(scheme) -> None:
    # URL schemes are case-insensitive (RFC 3986): FROM SWIFT://... was "FROM takes one
    # swift://<account>/<container>/<objects>"
    from zerocloud.job import parse_location
    for query in (f'SELECT count(*) FROM {scheme}~/logs/*.csv',
                  f'SELECT count(*) FROM "{scheme}~/logs/*.csv"'):
        source = parse_query(query).source
        assert parse_location(source, 'AUTH_t') == parse_location('swift://~/logs/*.csv',
                                                                   'AUTH_t')
    request = parse_request(json.dumps({'query': f'SELECT 1 FROM {scheme}~/c/o',
                                        'output': f'{scheme}~/c/answer'}).encode())
    assert request.output == f'{scheme}~/c/answer'


def test_text_where_a_number_is_meant_fails_the_query_without_skip_bad_too() -> None:
    """A column the query sums (or computes with, or orders against a number) goes to
    every node as ``--numeric`` without ``"skip_bad"`` too, where a text there fails the
    query (422): ``sum(qty)`` over a record ``east,lots`` answered 61715.0 with a 200,
    ``lots`` summed as 0.  A plan of one object stays one node."""
    from zerocloud.job import SwiftPath
    from zerocloud.sql import entry
    for objects, query in [(1, 'SELECT region, sum(qty) FROM swift://~/s/one.csv GROUP BY '
                                'region'), (2, f'SELECT sum(qty) FROM {URL}')]:
        p = plan(parse_query(query), COLUMNS, objects)
        jobs = entry.build_jobs(p, SwiftPath('AUTH_t', 's', 'one.csv'), 'csv', ',', True,
                                'csv', True)
        args = jobs[0][0]['exec']['args']
        assert len(jobs) == objects and '--skip-bad' not in args
        assert args[args.index('--numeric') + 1] == str(p.loaded.index('qty') + 1)
    p = plan(parse_query(f'SELECT region, count(*) FROM {URL} GROUP BY region'), COLUMNS, 2)
    assert '--numeric' not in entry.build_jobs(p, SwiftPath('AUTH_t', 's', '*'), 'csv', ',',
                                               True, 'csv', True)[0][0]['exec']['args']
    # to sum as SQLite does (a text by its leading number), a CAST says so
    assert plan(parse_query(f'SELECT sum(CAST(qty AS REAL)) FROM {URL}'), COLUMNS,
                2).numeric() is None


@pytest.mark.parametrize('query, columns, message', [
    # a ;-separated CSV read with commas: one column "region;qty"; in double quotes the
    # names were strings, so this answered 200 with "region,0.0" (no such column before)
    ('SELECT "region", sum("qty") FROM {url} GROUP BY "region"', ['region;qty'],
     'query: no such column: "region" at character 8 (SQLite would read a double-quoted '
     "name that no column has as the string 'region'; a string is in single quotes) (the "
     'columns: region;qty: one column, whose name holds ";": if the fields are separated by '
     '";", give that as "input"."delimiter")'),
    ('SELECT count(*) FROM {url} WHERE "region\tqty" > 1 AND "qty" = 2', ['region\tqty'],
     'query: no such column: "qty" at character 71 (SQLite would read a double-quoted name '
     "that no column has as the string 'qty'; a string is in single quotes) (the columns: "
     'region\tqty: one column, whose name holds "\\t": if the fields are separated by "\\t", '
     'give that as "input"."delimiter")'),
    # a typo, a string in double quotes: the same text for every row, a wrong answer
    ('SELECT "regoin", count(*) FROM {url} GROUP BY 1', COLUMNS,
     'query: no such column: "regoin" at character 8 (SQLite would read a double-quoted '
     "name that no column has as the string 'regoin'; a string is in single quotes) (the "
     'columns: region, product, qty, price, note)'),
    ("SELECT count(*) FROM {url} WHERE region = \"east\"", COLUMNS,
     'query: no such column: "east" at character '),
    # a name with a dot (a JSON line's nested key, a column price.eur) was read as t.b:
    # passed, and answered 200 with the text 'a.b' on every row
    ('SELECT "a.b" FROM {url}', ['a', 'c'],
     'query: no such column: "a.b" at character 8 (SQLite would read a double-quoted '
     "name that no column has as the string 'a.b'; a string is in single quotes; a key in "
     "column a's JSON is json_extract(a, '$.b')) (the columns: a, c)"),
    ('SELECT sum("price.euro") FROM {url}', ['price.eur'], 'query: no such column: '
     '"price.euro" at character 12'),
])
def test_a_double_quoted_name_that_no_column_has_is_refused(query: str, columns: list[str],
                                                            message: str) -> None:
    with pytest.raises(SqlError) as e:
        plan(parse_query(query.format(url=URL)), columns, 2)
    assert str(e.value).startswith(message), str(e.value)


def test_double_quoted_names_of_columns_aliases_and_the_source_are_names() -> None:
    for query in ['SELECT "Region" AS "r", sum("qty") AS "n" FROM {url} "s" GROUP BY "r" '
                  'ORDER BY "n", "s"."price"', 'SELECT "sum"(qty) FROM "{url}"',
                  'SELECT "a""b", "x]" FROM {url}', 'SELECT "price.eur", t."qty" FROM {url} t']:
        columns = [*COLUMNS, 'a"b', 'x]', 'price.eur']
        plan(parse_query(query.format(url=URL)), columns, 2)

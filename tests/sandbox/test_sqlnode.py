"""The ``sqlite`` system image's program (``zvm_core/images/sqlnode.c``) in the sandbox:
how it reads CSV, JSON lines and partial rows, and what it writes, checked against
the host's sqlite3 module and Python's csv module."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sqlite3
import struct

import pytest

SCHEMA = 'CREATE TABLE t(a NUMERIC, b NUMERIC, c NUMERIC)'


@pytest.fixture(scope='module')
def sqlite(sysimages):
    return sysimages.program('sqlite')


def node(zvm, program, data: bytes, *args: str):
    run = zvm.run(program, '--schema', args[0], *args[1:], input=data)
    return run


def ok(run) -> bytes:
    assert run.status == 'ok', run
    assert run.report['retcode'] == 0, run.stderr
    return run.stdout


def test_csv_fields_as_rfc_4180_says(zvm, sqlite) -> None:
    rows = [['x', 'y,z', 'say "hi"'], ['1', '', 'two\nlines'], ['2.50', '007', ''],
            ['-3e2', ' 4 ', 'é']]
    text = io.StringIO()
    csv.writer(text).writerows([['a', 'b', 'c'], *rows])
    data = '\ufeff'.encode() + text.getvalue().encode()        # BOM, CRLF records
    out = ok(node(zvm, sqlite, gzip.compress(data, mtime=0), SCHEMA, '--load', 'csvh',
                  '/dev/input', '--query', 'SELECT a, typeof(a), b, typeof(b), c FROM t'))
    got = list(csv.reader(io.StringIO(out.decode(), newline='')))
    assert got == [['a', 'typeof(a)', 'b', 'typeof(b)', 'c'],
                   ['x', 'text', 'y,z', 'text', 'say "hi"'],
                   ['1', 'integer', '', 'null', 'two\nlines'],
                   ['2.5', 'real', '007', 'text', ''],
                   ['-300', 'integer', ' 4 ', 'text', 'é']]


def test_csv_without_header_and_blank_lines(zvm, sqlite) -> None:
    out = ok(node(zvm, sqlite, b'1,2,3\n\n4,5,6', SCHEMA, '--load', 'csv', '/dev/input',
                  '--query', 'SELECT sum(a), sum(c) FROM t', '--out', 'csv'))
    assert out == b'5,9\r\n'


def test_a_row_of_one_empty_field_is_not_a_blank_line(zvm, sqlite) -> None:
    """A one-column answer's NULL or '' is written "": as an empty line, CSV readers
    (this program's own, Python's) skipped it, and the answer stored with "output" and
    read again lost those rows."""
    out = ok(node(zvm, sqlite, b'a,b,c\n1,,3\n\n4,x,\n7,"",\n', SCHEMA, '--load', 'csvh',
                  '/dev/input', '--query', 'SELECT b FROM t', '--out', 'csvh'))
    assert out == b'b\r\n""\r\nx\r\n""\r\n'
    assert list(csv.reader(io.StringIO(out.decode(), newline=''))) == [['b'], [''], ['x'],
                                                                        ['']]
    again = ok(node(zvm, sqlite, out, 'CREATE TABLE t(b NUMERIC)', '--load', 'csvh',
                    '/dev/input', '--query', 'SELECT count(*), count(b) FROM t', '--out', 'csv'))
    assert again == b'3,1\r\n'
    two = ok(node(zvm, sqlite, b'a,b,c\n1,,\n', SCHEMA, '--load', 'csvh', '/dev/input',
                  '--query', 'SELECT b, c FROM t', '--out', 'csv'))
    assert two == b',\r\n'


def test_escaped_arguments_carry_line_ends_tabs_and_backslashes(zvm, sqlite) -> None:
    """A job's arguments hold no control characters: the planner sends a multi-line
    query, a TAB delimiter ... --escaped, and the node decodes \\n \\t \\xHH \\\\."""
    out = ok(zvm.run(sqlite, '--escaped', '--schema', SCHEMA, '--load', 'csvh', '/dev/input',
                     '--delimiter', '\\t', '--query',
                     "SELECT a,\\n  b || '\\x01\\r' -- a comment\\nFROM t WHERE b = 'x\\\\y'",
                     '--out', 'json', input=b'a\tb\tc\n1\tx\\y\t3\n'))
    assert json.loads(out) == {'a': 1, "b || '\x01\r' -- a comment": 'x\\y\x01\r'}


@pytest.mark.parametrize('data,message', [
    (b'a,b,c\n1,2\n', 'record 2 has 2 fields, not 3'),
    (b'a,b,c\n1,2,3,4\n', 'record 2 has more than 3 fields'),
    (b'a,b,c\n1,"2,3\n', 'record 2: a quoted field does not end'),
    (b'a,b,c\n1,"2"x,3\n', 'record 2: text after a closing quote'),
    (b'\x1f\x8b\x08\x00broken', 'cannot read'),
])
def test_malformed_csv_fails_saying_where(zvm, sqlite, data, message) -> None:
    run = node(zvm, sqlite, data, SCHEMA, '--load', 'csvh', '/dev/input', '--query',
               'SELECT * FROM t')
    assert run.report['retcode'] == 1
    assert message in run.stderr.decode(), run.stderr
    assert run.stdout == b''


@pytest.mark.parametrize('data,delimiter,error', [
    (b'a;b;c\n1;2;3\n', ',', 'record 2 has 1 fields, not 3 and holds ";": if the fields are '
     'separated by ";" give that as "input"."delimiter" (zc sql --delimiter \';\')'),
    (b'a\tb\tc\n1\t2\t3\n', ',', 'record 2 has 1 fields, not 3 and holds "\\t": if the '
     'fields are separated by "\\t" give that as "input"."delimiter" (zc sql --delimiter tab)'),
    (b'a|b|c\n1|2|3\n', ',', 'record 2 has 1 fields, not 3 and holds "|": if the fields are '
     'separated by "|" give that as "input"."delimiter" (zc sql --delimiter \'|\')'),
    (b'a,b,c\n1,2,3\n', ';', 'record 2 has 1 fields, not 3 and holds a comma: if commas '
     'separate the fields give no other "input"."delimiter" (zc sql without --delimiter)'),
    (b'a,b,c\n"1;2;3"\n', ',', 'record 2 has 1 fields, not 3'),     # quoted: one field
    (b'a,b,c\n1;2,3\n', ',', 'record 2 has 2 fields, not 3'),       # not the delimiter's
    (b'a,b,c\n123\n', ',', 'record 2 has 1 fields, not 3'),
])
def test_a_record_of_one_field_holding_a_delimiter_says_to_give_it(zvm, sqlite, data,
                                                                    delimiter, error) -> None:
    """Read with the wrong delimiter (the columns given, so no header names them), a
    record is one field: the error says which usual delimiter it holds (not in quotes)
    and how to give it, as the proxy says of a header row of one column."""
    run = node(zvm, sqlite, data, SCHEMA, '--load', 'csvh', '/dev/input', '--delimiter',
               delimiter, '--query', 'SELECT * FROM t')
    assert run.report['retcode'] == 1
    assert run.stderr.decode() == f'sqlite: load: /dev/input: line 2: {error}\n'


@pytest.mark.parametrize('data,error', [
    (b'a;b;c\n1;2;3\n', 'record 2 has 1 fields, not 3 and holds ";": if the fields are '
     'separated by ";" give that as "input"."delimiter" (zc sql --delimiter \';\')'),
    (b'a;b;c\n"1;2;3"\n', 'record 2 has 1 fields, not 3'),          # quoted: one field
])
def test_the_delimiter_hint_reads_the_first_field_when_only_others_are_loaded(
        zvm, sqlite, data, error) -> None:
    """The hint is looked for only in the failing record's one field, which the node
    keeps though --fields loads only fields 2 and 3 (a query naming neither column 1)."""
    run = node(zvm, sqlite, data, 'CREATE TABLE t(b NUMERIC, c NUMERIC)', '--load', 'csvh',
               '/dev/input', '--fields', '3:2,3', '--query', 'SELECT * FROM t')
    assert run.report['retcode'] == 1
    assert run.stderr.decode() == f'sqlite: load: /dev/input: line 2: {error}\n'


@pytest.mark.parametrize('data,error', [
    (b'region;qty;price\neast;3;2,50\n', 'record 2 has more than 1 fields and the header row '
     'holds ";": if the fields are separated by ";" give that as "input"."delimiter" (zc sql '
     '--delimiter \';\')'),
    (b'region|qty\neast|3,5\n', 'record 2 has more than 1 fields and the header row holds "|": '
     'if the fields are separated by "|" give that as "input"."delimiter" (zc sql --delimiter '
     '\'|\')'),
    (b'"region;qty"\neast;3,5\n', 'record 2 has more than 1 fields'),     # a quoted name
    (b'region\neast,3\n', 'record 2 has more than 1 fields'),
])
def test_a_header_row_of_one_field_holding_a_delimiter_says_to_give_it(zvm, sqlite, data,
                                                                       error) -> None:
    """Read with commas, a ;-separated object has one column, named by its whole header
    row; a record with a comma (a decimal comma) is then more fields than that: the
    error says which usual delimiter the header row holds, as a record of one field's
    does (zc suggested --skip-bad, which skipped every such record)."""
    run = node(zvm, sqlite, data, 'CREATE TABLE t(a NUMERIC)', '--load', 'csvh', '/dev/input',
               '--query', 'SELECT * FROM t')
    assert run.report['retcode'] == 1
    assert run.stderr.decode() == f'sqlite: load: /dev/input: line 2: {error}\n'


@pytest.mark.parametrize('data,message', [
    (b'a,b,c\n\n1,2,3\n4,"two\r\nlines",6\n7,8\n', 'line 6: record 4 has 2 fields, not 3'),
    (b'a,b,c\r\n1,2,3\r\n"x\ny"z,1,2\r\n', 'line 3: record 3: text after a closing quote'),
    (b'a,b,c\n1,2,3\n\n4,"5,6\n', 'line 4: record 3: a quoted field does not end'),
])
def test_a_load_error_names_the_object_and_its_line(zvm, sqlite, data, message) -> None:
    """Run next to an object (ZeroCloud's LOCAL_* variables name it and the device
    that reads it), a node that cannot load it says which object, and which line
    (quoted line ends and blank lines counted); run otherwise, the path."""
    local = ['--env', 'LOCAL_DOCUMENT_ROOT=/dev/input',
             '--env', 'LOCAL_PATH_INFO=/AUTH_t/my%20data/d%C3%A9c.csv']
    for opts, name in ((local, 'swift://AUTH_t/my data/déc.csv'), ((), '/dev/input')):
        run = zvm.run(sqlite, '--schema', SCHEMA, '--load', 'csvh', '/dev/input', '--query',
                      'SELECT count(*) FROM t', input=data, opts=opts)
        assert run.report['retcode'] == 1
        assert run.stderr.decode() == f'sqlite: load: {name}: {message}\n'
    run = zvm.run(sqlite, '--schema', SCHEMA, '--load', 'jsonl', '/dev/input', '--query',
                  'SELECT count(*) FROM t', input=b'{"a": 1}\n\n{"a": \n', opts=local)
    assert run.stderr.decode() == ('sqlite: load: swift://AUTH_t/my data/déc.csv: line 3: '
                                   'malformed JSON\n')


def test_json_lines(zvm, sqlite) -> None:
    lines = b'{"a": 1, "b": "x"}\n\n{"a": 2.5, "c": [1, 2]}\r\n{"b": "12"}'
    out = ok(node(zvm, sqlite, lines, SCHEMA, '--load', 'jsonl', '/dev/input',
                  '--query', 'SELECT a, b, typeof(b), c FROM t', '--out', 'json'))
    assert [json.loads(line) for line in out.decode().splitlines()] == [
        {'a': 1, 'b': 'x', 'typeof(b)': 'text', 'c': None},
        {'a': 2.5, 'b': None, 'typeof(b)': 'null', 'c': '[1,2]'},
        {'a': None, 'b': '12', 'typeof(b)': 'text', 'c': None}]   # a JSON string is text
    bad = node(zvm, sqlite, b'{"a": 1}\n{"a": \n', SCHEMA, '--load', 'jsonl', '/dev/input',
               '--query', 'SELECT * FROM t')
    assert bad.report['retcode'] == 1 and 'line 2: malformed JSON' in bad.stderr.decode()
    # a line that is JSON but no object was a row of NULLs: count(*) counted it
    for line in (b'[1, 2]', b'  42', b'"a"', b'null'):
        bad = node(zvm, sqlite, b'{"a": 1}\n ' + line + b'\n', SCHEMA, '--load', 'jsonl',
                   '/dev/input', '--query', 'SELECT count(*) FROM t')
        assert bad.report['retcode'] == 1, (line, bad.stdout)
        assert 'line 2: not a JSON object (one object per line' in bad.stderr.decode()


def test_json_lines_loaded_are_the_values_streamed(zvm, sqlite) -> None:
    """A query that reads the table twice has the rows inserted first (load_input binds
    each text where the row holds it): it sees what the streamed query sees."""
    lines = (b'{"a": "x\\u00e9", "b": 2.0, "c": [1, {"d": "e"}]}\n'
             b'{"a": "01234", "b": true, "c": null}\n{"b": "", "c": 1e400}\n'
             b'{"a": -0.5, "b": "y", "c": "' + b'long ' * 4000 + b'"}\n')
    streamed = 'SELECT a, typeof(a), b, typeof(b), c, typeof(c) FROM t ORDER BY rowid'
    loaded = ('SELECT x.a, typeof(x.a), x.b, typeof(x.b), x.c, typeof(x.c) FROM t x, t y '
              'WHERE x.rowid = y.rowid ORDER BY x.rowid')
    outs = [ok(node(zvm, sqlite, lines, SCHEMA, '--load', 'jsonl', '/dev/input', '--query',
                    query, '--out', 'csv')) for query in (streamed, loaded)]
    assert outs[0] == outs[1]
    assert list(csv.reader(io.StringIO(outs[0].decode(), newline='')))[:3] == [
        ['xé', 'text', '2', 'integer', '[1,{"d":"e"}]', 'text'],
        ['01234', 'text', '1', 'integer', '', 'null'],
        ['', 'null', '', 'text', 'Inf', 'real']]


def test_partial_rows_are_exact(zvm, sqlite) -> None:
    """What one node writes (--out partial), another reads back to the same values."""
    values = "SELECT 1 AS a, 0.1 + 0.2 AS b, 'tab\tnew\nline\\\\' AS c UNION ALL " \
             "SELECT -9223372036854775808, 1e308 * 10, NULL UNION ALL " \
             "SELECT x'00ff', -0.0, ''"
    partial = ok(node(zvm, sqlite, b'', SCHEMA, '--query', values, '--out', 'partial'))
    lines = partial.split(b'\n')
    assert lines[0] == b'i1\tr' + struct.pack('>d', 0.1 + 0.2).hex().encode() + \
        b'\tttab\\tnew\\nline\\\\\\\\'
    assert lines[2].startswith(b'x00ff\t')
    back = ok(node(zvm, sqlite, partial, 'CREATE TABLE p(a, b, c)', '--load', 'partials',
                   '/dev/input', '--query', 'SELECT a, typeof(a), b, c FROM p', '--out', 'json'))
    got = [json.loads(line) for line in back.decode().splitlines()]
    assert got[0] == {'a': 1, 'typeof(a)': 'integer', 'b': 0.30000000000000004,
                      'c': 'tab\tnew\nline\\\\'}
    assert got[1] == {'a': -9223372036854775808, 'typeof(a)': 'integer', 'b': float('inf'),
                      'c': None}
    assert got[2] == {'a': '00ff', 'typeof(a)': 'blob', 'b': -0.0, 'c': ''}


def test_the_query_only_reads(zvm, sqlite) -> None:
    run = node(zvm, sqlite, b'', SCHEMA, '--query', 'DELETE FROM t')
    assert run.report['retcode'] == 1 and 'the query must only read' in run.stderr.decode()
    run = node(zvm, sqlite, b'', SCHEMA, '--query', 'SELECT 1; SELECT 2')
    assert run.report['retcode'] == 1 and 'one statement only' in run.stderr.decode()


def test_only_the_needed_fields_are_loaded(zvm, sqlite) -> None:
    data = b'a,b,c\n1,x,3\n4,y,6\n'
    out = ok(node(zvm, sqlite, data, 'CREATE TABLE t(a NUMERIC, c NUMERIC)', '--load', 'csvh',
                  '/dev/input', '--fields', '3:1,3', '--query', 'SELECT sum(a), sum(c) FROM t',
                  '--out', 'csv'))
    assert out == b'5,9\r\n'
    short = node(zvm, sqlite, b'a,b,c\n1,x\n', 'CREATE TABLE t(a NUMERIC, c NUMERIC)',
                 '--load', 'csvh', '/dev/input', '--fields', '3:1,3', '--query', 'SELECT 1')
    assert 'record 2 has 2 fields, not 3' in short.stderr.decode()


TRICKY = ['1', '12', '3.0', '2.50', ' 12 ', '-3e2', '1e400', '0x10', '007', '-0.0', 'abc',
          '9223372036854775808', '12abc', 'é', '', '01234', '+5', '.5', '1_000', '-0', '0']


NUMBER = re.compile(r'-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?')


def database(schema: str, rows: list[list[str]], query: str) -> list[tuple]:
    """The answer of a database whose NUMERIC columns hold the values as written: a
    field written as JSON writes a number (an integer within 64 bits) is that number
    (CAST AS NUMERIC: 3.0 is 3), any other text, however SQLite's affinity would read
    it (INSERT's would make 007 the integer 7).  A table of other types: INSERT's."""
    db = sqlite3.connect(':memory:')
    db.execute(schema)

    def typed(v: str):
        if v == '':
            return None
        if 'NUMERIC' not in schema or not NUMBER.fullmatch(v) or (
                v.lstrip('-').isdigit() and not -2**63 <= int(v) < 2**63):
            return v
        return db.execute('SELECT CAST(? AS NUMERIC)', (v,)).fetchone()[0]

    values = [[typed(v) for v in row] for row in rows]
    if 'NUMERIC' in schema:          # stored as they are: no affinity while inserted
        version = db.execute('PRAGMA schema_version').fetchone()[0]
        db.execute('PRAGMA writable_schema = ON')
        db.execute("UPDATE sqlite_schema SET sql = 'CREATE TABLE t(a, b, c)' WHERE name = 't'")
        db.execute(f'PRAGMA schema_version = {version + 1}')
        db.executemany('INSERT INTO t VALUES (?, ?, ?)', values)
        db.execute('UPDATE sqlite_schema SET sql = ? WHERE name = ?', (schema, 't'))
        db.execute(f'PRAGMA schema_version = {version + 2}')
        db.execute('PRAGMA writable_schema = OFF')
    else:
        db.executemany(f'INSERT INTO t VALUES ({",".join("?" * len(rows[0]))})', values)
    return db.execute(query).fetchall()


@pytest.mark.parametrize('schema,query', [
    # plain: read while parsed, through the virtual table
    (SCHEMA, 'SELECT rowid, a, typeof(a), b, typeof(b), c FROM t'),
    (SCHEMA, 'SELECT a, count(*), min(b), max(b), sum(c) FROM t GROUP BY a ORDER BY a'),
    # a text written otherwise than a number is compared and computed with as one
    (SCHEMA, "SELECT a, a = 1234, a = '1234', a > 100, a LIKE '0%', a + 0, b < c FROM t"),
    # reads the table twice: loaded first
    (SCHEMA, 'SELECT x.a, typeof(x.a), y.b FROM t x, t y WHERE x.rowid = y.rowid + 1'),
    # not plain: loaded first, with the table's own rules
    ('CREATE TABLE t(a TEXT, b REAL, c)', 'SELECT a, typeof(a), b, typeof(b), c FROM t'),
])
def test_values_as_a_database_has_them(zvm, sqlite, schema, query) -> None:
    """Streamed or loaded, the query sees the values a database holding the fields as
    written would (see database: 01234 is text, not the integer 1234)."""
    rows = [[TRICKY[(i + k) % len(TRICKY)] for k in range(3)] for i in range(40)]
    text = io.StringIO()
    csv.writer(text).writerows([['a', 'b', 'c'], *rows[:20], [], *rows[20:]])
    out = ok(node(zvm, sqlite, text.getvalue().encode(), schema, '--load', 'csvh',
                  '/dev/input', '--query', query, '--out', 'json'))
    got = [tuple(json.loads(line).values()) for line in out.decode().splitlines()]
    want = [tuple(None if isinstance(v, float) and v != v else v for v in row)
            for row in database(schema, rows, query)]
    assert got == want


def test_what_the_query_does_not_read_is_still_checked(zvm, sqlite) -> None:
    """LIMIT stops the query early; a malformed record after it still fails the node."""
    run = node(zvm, sqlite, b'a,b,c\n1,2,3\n4,5,6\n7,8\n', SCHEMA, '--load', 'csvh',
               '/dev/input', '--query', 'SELECT * FROM t LIMIT 1')
    assert run.report['retcode'] == 1
    assert 'record 4 has 2 fields, not 3' in run.stderr.decode()
    assert run.stdout == b''


def test_skip_bad_passes_over_malformed_records_and_notes_how_many(zvm, sqlite) -> None:
    """--skip-bad: a record of another width, text after a closing quote, a quoted field
    that does not end, a JSON line that is no object or no JSON are skipped and counted;
    the count and the first go to stderr and, as partial rows, to a last line that the
    merge's loading passes over.  A header row is never skipped: it names the columns."""
    local = ['--env', 'LOCAL_DOCUMENT_ROOT=/dev/input',
             '--env', 'LOCAL_PATH_INFO=/AUTH_t/my%20data/d%C3%A9c.csv']
    name = 'swift://AUTH_t/my data/déc.csv'
    data = b'a,b,c\n1,2,3\n4,5\n6,"7"x,8\n9,10,11,12\n13,14,15\n"16,17\n'
    args = ('--schema', SCHEMA, '--load', 'csvh', '/dev/input', '--query',
            'SELECT sum(a), count(*) FROM t', '--out', 'partial')
    strict = zvm.run(sqlite, *args, input=data, opts=local)
    assert strict.report['retcode'] == 1
    first = 'line 3: record 3 has 2 fields, not 3'
    assert strict.stderr.decode() == f'sqlite: load: {name}: {first}\n'
    run = zvm.run(sqlite, *args, '--skip-bad', input=data, opts=local)
    assert ok(run) == f'i14\ti2\n#skipped\t4\t{name}\t{first}\n'.encode()
    assert run.stderr.decode() == (f'sqlite: load: {name}: skipped 4 malformed records; '
                                   f'the first: {first}\n')
    merged = ok(node(zvm, sqlite, run.stdout + run.stdout, 'CREATE TABLE p(s, n)', '--load',
                     'partials', '/dev/input', '--query', 'SELECT sum(s), sum(n) FROM p',
                     '--out', 'csv'))
    assert merged == b'28,4\r\n'
    lines = b'{"a": 1}\n[1]\n{"a": \n{"a": 2}\n42\n'
    run = node(zvm, sqlite, lines, SCHEMA, '--load', 'jsonl', '/dev/input', '--skip-bad',
               '--query', 'SELECT sum(a) FROM t', '--out', 'csv')
    assert ok(run) == b'3\r\n'
    assert run.stderr.decode() == ('sqlite: load: /dev/input: skipped 3 malformed records; '
                                   'the first: line 2: not a JSON object (one object per '
                                   'line, each a row)\n')
    none = node(zvm, sqlite, b'a,b,c\n1,2,3\n', *args[1:], '--skip-bad')
    assert (ok(none), none.stderr) == (b'i1\ti1\n', b'')
    # --numeric: a summed column's text ("n/a", a decimal comma) is malformed too; an
    # empty field, blanks around a number, a JSON string of a number are not
    summed = node(zvm, sqlite, b'a,b,c\n1,n/a,3\n4, 5 ,6\n7,,9\n8,"2,50",1\n', *args[1:5],
                  '--skip-bad', '--numeric', '2', '--query',
                  'SELECT sum(a), sum(b) FROM t', '--out', 'csv')
    assert ok(summed) == b'11,5\r\n'
    assert 'skipped 2 malformed records; the first: line 2: record 2: "b" is not a number: ' \
        '"n/a"' in summed.stderr.decode()
    # an empty JSON string is empty as an empty CSV field is; blanks alone are text in both
    summed = node(zvm, sqlite, b'{"b": "7"}\n{"b": "x"}\n{"b": [1]}\n{"b": null}\n'
                  b'{"b": ""}\n{"b": " "}\n', SCHEMA,
                  '--load', 'jsonl', '/dev/input', '--skip-bad', '--numeric', '2', '--query',
                  'SELECT sum(b), count(*) FROM t', '--out', 'csv')
    assert ok(summed) == b'7.0,3\r\n'          # "" is text: SQLite's sum is then real
    assert 'skipped 3 malformed records' in summed.stderr.decode()
    blank = node(zvm, sqlite, b'a,b,c\n1, ,3\n4,"",6\n', *args[1:5], '--skip-bad',
                 '--numeric', '2', '--query', 'SELECT count(*) FROM t', '--out', 'csv')
    assert ok(blank) == b'1\r\n'
    assert 'the first: line 2: record 2: "b" is not a number: " "' in blank.stderr.decode()
    header = node(zvm, sqlite, b'a,"b"x,c\n1,2,3\n', *args[1:], '--skip-bad')
    assert header.report['retcode'] == 1
    # said as the header row's: no "record N" (zc's hint to --skip-bad reads that as one)
    assert 'line 1: the header row: text after a closing quote' in header.stderr.decode()


def test_a_code_that_only_looks_like_a_number_stays_text(zvm, sqlite) -> None:
    """01234 (a zip code), 007, +5, " 12", .5 are not written as numbers are: text, the
    digits kept (01234 was the integer 1234: SELECT printed 1234, LIKE '0%' found
    nothing), still compared and summed as numbers; a JSON string is text, a JSON
    number a number.  Streamed, loaded (the query reads the table twice) and through
    partial rows into a NUMERIC table (the merge's) alike."""
    data = b'zip,n\n01234,1\n007,2\n12345,3\n+5,4\n" 12",5\n.5,6\n1e3,7\n2.50,8\n0,9\n-0,10\n'
    want = [['01234', 'text'], ['007', 'text'], ['12345', 'integer'], ['+5', 'text'],
            [' 12', 'text'], ['.5', 'text'], ['1000', 'integer'], ['2.5', 'real'],
            ['0', 'integer'], ['0', 'integer']]
    for query in ('SELECT zip, typeof(zip) FROM t',
                  'SELECT x.zip, typeof(x.zip) FROM t x, t y WHERE x.rowid = y.rowid'):
        out = ok(node(zvm, sqlite, data, 'CREATE TABLE t(zip NUMERIC, n NUMERIC)', '--load',
                      'csvh', '/dev/input', '--query', query, '--out', 'csv'))
        assert list(csv.reader(io.StringIO(out.decode(), newline=''))) == want, query
    out = ok(node(zvm, sqlite, data, 'CREATE TABLE t(zip NUMERIC, n NUMERIC)', '--load', 'csvh',
                  '/dev/input', '--query',
                  "SELECT group_concat(n) FILTER (WHERE zip LIKE '0%'), "
                  "group_concat(n) FILTER (WHERE zip = 1234), "
                  "group_concat(n) FILTER (WHERE zip = '01234'), "
                  "group_concat(n) FILTER (WHERE zip > 1000), sum(zip) FROM t", '--out', 'csv'))
    assert out == b'"1,2,9,10",1,1,"1,3",14606.0\r\n'
    partial = ok(node(zvm, sqlite, data, 'CREATE TABLE t(zip NUMERIC, n NUMERIC)', '--load',
                      'csvh', '/dev/input', '--query', 'SELECT zip FROM t WHERE n < 3',
                      '--out', 'partial'))
    assert partial == b't01234\nt007\n'
    merged = ok(node(zvm, sqlite, partial, 'CREATE TABLE p(zip NUMERIC)', '--load', 'partials',
                     '/dev/input', '--query', 'SELECT zip, typeof(zip) FROM p', '--out', 'csv'))
    assert merged == b'01234,text\r\n007,text\r\n'
    lines = b'{"zip": "01234", "n": 1}\n{"zip": 1234, "n": "2"}\n{"zip": 2.0, "n": 3}\n'
    out = ok(node(zvm, sqlite, lines, 'CREATE TABLE t(zip NUMERIC, n NUMERIC)', '--load',
                  'jsonl', '/dev/input', '--query', 'SELECT zip, typeof(zip), n, typeof(n) '
                  'FROM t', '--out', 'json'))
    assert [json.loads(line) for line in out.decode().splitlines()] == [
        {'zip': '01234', 'typeof(zip)': 'text', 'n': 1, 'typeof(n)': 'integer'},
        {'zip': 1234, 'typeof(zip)': 'integer', 'n': '2', 'typeof(n)': 'text'},
        {'zip': 2, 'typeof(zip)': 'integer', 'n': 3, 'typeof(n)': 'integer'}]


def test_skip_bad_reads_as_numbers_what_sqlite_computes_with_as_numbers(zvm, sqlite) -> None:
    """--numeric: a text SQLite reads whole as a number when it computes (01234, +5,
    " 12", .5) is no malformed record, though kept as text; one it would read as its
    leading number or 0 (0x10 is 0, 1_000 is 1) is."""
    data = b'a,b\n1,01234\n2,+5\n3," 12"\n4,.5\n5,0x10\n6,1_000\n7,2\n'
    run = node(zvm, sqlite, data, 'CREATE TABLE t(a NUMERIC, b NUMERIC)', '--load', 'csvh',
               '/dev/input', '--skip-bad', '--numeric', '2', '--query',
               'SELECT sum(b), group_concat(a) FROM t', '--out', 'csv')
    assert ok(run) == b'1253.5,"1,2,3,4,7"\r\n'
    assert ('skipped 2 malformed records; the first: line 6: record 6: "b" is not a number: '
            '"0x10"') in run.stderr.decode()


def test_numeric_without_skip_bad_fails_on_text(zvm, sqlite) -> None:
    """--numeric alone: a text where the query uses a number fails the load (exit 1,
    the line, the record, the value, and how to skip it), where SQLite would sum it as
    0 ("lots": 1 + 0 + 5 was 6.0, a wrong answer); numbers, empty fields pass."""
    args = ('CREATE TABLE t(a NUMERIC, b NUMERIC)', '--load', 'csvh', '/dev/input',
            '--numeric', '2', '--query', 'SELECT a, sum(b) FROM t GROUP BY a', '--out', 'csv')
    run = node(zvm, sqlite, b'a,b\neast,1\neast,lots\nwest,5\n', *args)
    assert run.report['retcode'] == 1
    assert run.stderr.decode() == ('sqlite: load: /dev/input: line 3: record 3: "b" is not '
                                   'a number: "lots" (the query uses it as one; skip_bad '
                                   'skips such records)\n')
    assert ok(node(zvm, sqlite, b'a,b\neast,1\neast,\nwest,5\n', *args)) == b'east,1\r\nwest,5\r\n'
    jsonl = node(zvm, sqlite, b'{"a": "east", "b": 1}\n{"a": "east", "b": "lots"}\n',
                 args[0], '--load', 'jsonl', *args[3:])
    assert jsonl.report['retcode'] == 1
    assert 'line 2: "b" is not a number: "lots"' in jsonl.stderr.decode()

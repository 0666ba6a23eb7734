"""Plan an SQL query over a collection of objects: which nodes run which SQL.

No Swift here: the entry point (``zerocloud.sql.entry``) lists the objects
and reads the columns; this module parses the request body, checks the
query with the host's SQLite against an empty table of those columns (so a
bad query is a 400 before any node starts), and splits it:

``single``
    one object: its node runs the query and writes the answer.
``split``
    every aggregate is decomposable (``count``, ``sum``, ``total``, ``min``,
    ``max``, ``avg`` as a sum and a count; no ``DISTINCT``, ``FILTER`` or
    window) and every column used outside them is a column of the GROUP BY:
    each object's node runs WHERE and a partial GROUP BY (by the columns the
    GROUP BY terms use), and one node merges the partial aggregates and
    applies the GROUP BY terms, HAVING, ORDER BY and LIMIT.
``rows``
    anything else (no aggregates, ``count(DISTINCT ...)``, ``group_concat``,
    window functions, a column outside the GROUP BY): each node ships its
    filtered rows (only the columns the query uses; the first
    ``LIMIT + OFFSET`` rows when the query has a LIMIT and no aggregates,
    in ORDER BY order when it has one) and the merging node runs the rest
    of the query.  The plan's ``reason`` says why.

Tables: ``t`` is an object's rows, ``p`` the merged partial rows; columns
have NUMERIC affinity (a field written as a number is one: doc/sql.md, Types), as in
the database the answer is compared with.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import difflib
import itertools
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from zerocloud.job import is_swift_url, scheme_hint
from zerocloud.sql.formats import FORMATS, INPUT_FORMATS
from zvm_core.engines import CHOICES

VERSION = 'sql/1.0'
MAX_COLUMNS = 2000
CHECK_LENGTH = 1 << 20          # a checked query's values, bytes
MAX_QUERY = 16 * 1024           # a query's bytes: planning it holds the proxy's hub (~1 ms/KiB)
CHECK_STEPS = 1_000_000         # a checked query's virtual machine steps
TABLE, PARTIALS = 't', 'p'
SPLITTABLE = {'count', 'sum', 'total', 'min', 'max', 'avg'}
AGGREGATES = SPLITTABLE | {'group_concat', 'string_agg', 'json_group_array', 'json_group_object',
                           'jsonb_group_array', 'jsonb_group_object', 'median', 'percentile',
                           'percentile_cont', 'percentile_disc'}
# words that end an expression (so they are no alias)
_ENDING = {'end', 'null', 'true', 'false', 'current_date', 'current_time', 'current_timestamp',
           'isnull', 'notnull', 'nocase', 'binary', 'rtrim'}
REQUEST_KEYS = {'query', 'format', 'header', 'input', 'explain', 'output', 'engine'}
INPUT_KEYS = {'format', 'header', 'columns', 'delimiter', 'skip_bad'}
# What a refused body should have been (a plain-text query is the usual mistake).
SHAPE = ('the body must be a JSON object: {"query": "SELECT ... FROM swift://~/<container>/'
         '<object>"}, optional keys: ' + ', '.join(sorted(REQUEST_KEYS - {'query'})) +
         ' (doc/sql.md)')
CLAUSES = ('from', 'where', 'group', 'having', 'window', 'order', 'limit')
COMPOUND = ('union', 'intersect', 'except')

_TOKEN = re.compile(r'''
    (?P<space>\s+|--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<url>swift://[^\s,;()]*)
  | (?P<string>'(?:[^']|'')*(?:'|\Z))
  | (?P<ident>"(?:[^"]|"")*(?:"|\Z)|`(?:[^`]|``)*(?:`|\Z)|\[[^\]]*(?:\]|\Z))
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9a-fA-F]+)
  | (?P<word>[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*)
  | (?P<param>[?:@$][A-Za-z0-9_]*)
  | (?P<op>\|\||<<|>>|<=|>=|==|!=|<>|->>|->|[-+*/%<>=~&|(),;.])
''', re.VERBOSE | re.DOTALL | re.IGNORECASE)


class SqlError(ValueError):
    """A bad request or query; the message is the 400 body."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int

    @property
    def name(self) -> str:
        """A quoted identifier without its quotes; else the text."""
        if self.kind != 'ident':
            return self.text
        body, quote = self.text[1:-1], self.text[0]
        return body.replace(quote * 2, quote) if quote in '"`' else body

    @property
    def key(self) -> str:
        """Lower-case word or quoted identifier (names are case-insensitive)."""
        return self.name.lower() if self.kind in ('word', 'ident') else self.text


def tokenize(query: str) -> list[Token]:
    """SQLite's tokens (no whitespace or comments), plus ``swift://...`` URLs."""
    tokens, pos = [], 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None:
            raise SqlError(f'query: unexpected character {query[pos]!r} at character {pos + 1}')
        kind = m.lastgroup
        text = m.group()
        if kind == 'string' and (len(text) < 2 or not text.endswith("'")):
            raise SqlError(f'query: unterminated string at character {pos + 1}')
        if kind == 'ident' and (len(text) < 2 or text[-1] not in '"`]'):
            raise SqlError(f'query: unterminated quoted name at character {pos + 1}')
        if kind == 'space' and text.startswith('/*') and not text.endswith('*/'):
            raise _unterminated_comment(query, pos)
        if kind != 'space':
            tokens.append(Token(kind, text, pos))
        pos = m.end()
    return tokens


def _unterminated_comment(query: str, pos: int) -> SqlError:
    """A ``/*`` with no end; inside a word it is a mistyped URL (``swift:/~/c/*.csv``,
    ``~/c/*.csv``, ``s3://b/*.csv``, or ``c/*.csv`` after FROM) more often than a
    comment: say so, with the URL it likely meant."""
    start = max(query.rfind(c, 0, pos) for c in ' \t\r\n') + 1
    after_from = re.search(r'\bfrom\s+$', query[:start], re.IGNORECASE)
    if '/' not in query[start:pos] and not (after_from and start < pos):
        return SqlError(f'query: unterminated comment at character {pos + 1}')
    word = query[start:].split(None, 1)[0]
    return SqlError(f'query: {word} at character {start + 1} is not a swift://<account>/'
                    f'<container>/<objects> URL (its /* starts an SQL comment that does '
                    f'not end){scheme_hint(word)}')


def quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- the request ---------------------------------------------------------------------------

@dataclass
class InputSpec:
    format: str | None = None             # csv | jsonl; None: from the object's name
    header: bool = True                   # CSV: the first record names the columns
    columns: list[str] | None = None      # given names (else read from the first object)
    delimiter: str = ','
    skip_bad: bool = False                # skip malformed records (counted), not fail


@dataclass
class SqlRequest:
    query: str
    format: str = 'csv'
    header: bool = True
    input: InputSpec = field(default_factory=InputSpec)
    explain: bool = False
    output: str | None = None             # swift:// object to store the answer in
    engine: str | None = None             # every node's engine (None: the servers' choice)


def _bool(spec: dict, key: str, default: bool, where: str) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise SqlError(f'{where}"{key}" must be true or false, not {json.dumps(value)}')
    return value


def _known(spec: dict, keys: set[str], where: str) -> None:
    """A misspelt key would otherwise be ignored: said with the key meant, as the job
    parser says it."""
    unknown = sorted(set(spec) - keys)
    if unknown:
        meant = [close for key in unknown
                 for close in difflib.get_close_matches(key, sorted(keys), n=1, cutoff=0.7)]
        hint = f', did you mean {", ".join(map(json.dumps, meant))}?' if meant else ''
        raise SqlError(f'unknown key(s) {", ".join(map(json.dumps, unknown))} in {where}'
                       f'{hint} (known: {", ".join(sorted(keys))})')


def parse_request(body: bytes) -> SqlRequest:
    """The JSON body of a ``sql/1.0`` request; SqlError saying what is wrong."""
    if not body.strip():            # swift post -H 'X-Zerovm-Execute: sql/1.0' alone
        raise SqlError(f'{SHAPE} (the request has no body: send the query, or name a stored '
                       'one with X-Zerovm-Source: swift://~/<container>/<object>)')
    try:
        spec = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:     # or nested too deep
        raise SqlError(f'{SHAPE} (not JSON: {e})') from None
    if not isinstance(spec, dict):
        raise SqlError(SHAPE)
    _known(spec, REQUEST_KEYS, 'the body')
    query = spec.get('query')
    if not isinstance(query, str) or not query.strip():
        raise SqlError('"query" must be a non-empty string')
    size = len(query.encode('utf-8', 'surrogatepass'))
    if size > MAX_QUERY:
        raise SqlError(f'the query is {size} bytes, more than the {MAX_QUERY} (16 KiB) a '
                       'query may have: shorten it (a long IN list: filter on a shorter one, '
                       'or run several queries)')
    fmt = spec.get('format', 'csv')
    if fmt not in FORMATS:
        raise SqlError(f'"format" must be one of {", ".join(FORMATS)}, not {json.dumps(fmt)}')
    raw = spec.get('input', {})
    if not isinstance(raw, dict):
        raise SqlError('"input" must be a JSON object')
    _known(raw, INPUT_KEYS, '"input"')
    in_fmt = raw.get('format')
    if in_fmt is not None and in_fmt not in INPUT_FORMATS:
        raise SqlError(f'"input"."format" must be one of {", ".join(INPUT_FORMATS)}, '
                       f'not {json.dumps(in_fmt)}')
    columns = raw.get('columns')
    if columns is not None:
        if (not isinstance(columns, list) or not columns
                or not all(isinstance(c, str) for c in columns)):
            raise SqlError('"input"."columns" must be a non-empty list of names')
        columns = check_columns(columns, '"input"."columns"')
    delimiter = raw.get('delimiter', ',')
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n' \
            or ord(delimiter) > 127:
        raise SqlError('"input"."delimiter" must be one ASCII character (not a quote or newline)')
    output = spec.get('output')
    if output is not None and (not is_swift_url(output) or '*' in output):
        raise SqlError('"output" must be one object: swift://<account>/<container>/<object>'
                       f'{scheme_hint(output)}')
    engine = spec.get('engine')
    if engine is not None and engine not in CHOICES:
        raise SqlError(f'"engine" must be one of {", ".join(CHOICES)}, not {json.dumps(engine)}')
    return SqlRequest(query, fmt, _bool(spec, 'header', True, ''),
                      InputSpec(in_fmt, _bool(raw, 'header', True, '"input".'), columns,
                                delimiter, _bool(raw, 'skip_bad', False, '"input".')),
                      _bool(spec, 'explain', False, ''), output, engine)


def check_columns(names: list[str], where: str) -> list[str]:
    """Column names: empty ones become c<N>; duplicates (any case) are refused."""
    if len(names) > MAX_COLUMNS:
        raise SqlError(f'{where}: more than {MAX_COLUMNS} columns')
    out, seen = [], set()
    for i, name in enumerate(names, 1):
        name = name.strip() or f'c{i}'
        if '\0' in name:
            raise SqlError(f'{where}: column {i} has a NUL character in its name')
        if name.lower() in seen:
            raise SqlError(f'{where}: column name {name!r} appears twice')
        seen.add(name.lower())
        out.append(name)
    return out


# -- the query -----------------------------------------------------------------------------

@dataclass
class Query:
    """A ``SELECT ... FROM swift://... [...]`` split into its clauses (token ranges)."""

    text: str
    tokens: list[Token]
    source: str                              # the swift:// URL
    source_at: int                           # index of the URL token
    clauses: dict[str, tuple[int, int]]      # clause -> [start, end) token indexes

    def span(self, start: int, end: int) -> str:
        if start >= end:
            return ''
        return self.text[self.tokens[start].pos:self.tokens[end - 1].pos
                         + len(self.tokens[end - 1].text)]

    def clause(self, name: str) -> str:
        """The text of a clause, keywords included ('' when the query has none)."""
        return self.span(*self.clauses[name]) if name in self.clauses else ''

    @cached_property
    def items(self) -> list[tuple[int, int, str | None]]:
        """(start, end, alias) of each select-list item (read once: the planner asks
        for them in several places)."""
        return _select_items(self)

    @cached_property
    def aliases(self) -> dict[str, tuple[int, int]]:
        """Each select-list alias -> its expression's token range."""
        return {alias: (a, b) for a, b, alias in self.items if alias}


def _error_at(query: str, pos: int, what: str) -> SqlError:
    return SqlError(f'query: {what} at character {pos + 1}')


def parse_query(text: str) -> Query:
    """Find the clauses of one SELECT and its one ``swift://`` source; SqlError otherwise."""
    tokens = tokenize(text)
    while tokens and tokens[-1].text == ';':
        tokens.pop()
    if not tokens:
        raise SqlError('query: empty')
    for tok in tokens:
        if tok.kind == 'word' and text.startswith('://', tok.pos + len(tok.text)):
            raise _error_at(text, tok.pos, 'FROM takes one swift://<account>/<container>/'
                            f'<objects>, not {tok.text}://')
        if tok.kind == 'param':         # SQLite said 'Incorrect number of bindings ...'
            raise _error_at(text, tok.pos, f'{tok.text} is a parameter, which nothing '
                            'binds: write the value itself')
    if tokens[0].key != 'select':
        first = tokens[0]
        if first.key == 'with':
            raise _error_at(text, first.pos, 'WITH (common table expressions) is not supported')
        raise _error_at(text, first.pos, f'expected SELECT, found {first.text!r}')
    depth, clauses, order = 0, {}, []
    for i, tok in enumerate(tokens):
        if tok.text == '(':
            depth += 1
        elif tok.text == ')':
            depth -= 1
            if depth < 0:
                raise _error_at(text, tok.pos, 'unbalanced ")"')
        elif tok.text == ';':
            raise _error_at(text, tok.pos, 'one statement only')
        elif tok.kind == 'word' and tok.key == 'select' and i > 0:
            raise _error_at(text, tok.pos, 'subqueries are not supported')
        elif depth == 0 and tok.kind == 'word':
            key = tok.key
            nxt = tokens[i + 1].key if i + 1 < len(tokens) else ''
            if key in COMPOUND:
                raise _error_at(text, tok.pos, f'{tok.text.upper()} is not supported')
            if key in ('group', 'order') and nxt != 'by':
                continue
            if key in CLAUSES:
                if key in clauses:
                    raise _error_at(text, tok.pos, f'a second {tok.text.upper()} clause')
                clauses[key] = i
                order.append(key)
    if depth:
        raise SqlError('query: unbalanced "(": a ")" is missing')
    if order != sorted(order, key=CLAUSES.index):
        raise SqlError(f'query: clauses out of order ({", ".join(o.upper() for o in order)})')
    if 'from' not in clauses:
        raise SqlError('query: FROM swift://<account>/<container>/<objects> is missing')
    bounds, starts = {}, [clauses[c] for c in order] + [len(tokens)]
    for name, start, end in zip(order, starts, starts[1:], strict=False):
        bounds[name] = (start, end)
    start, end = bounds['from']
    src = tokens[start + 1:end]
    urls = [i for i, t in enumerate(tokens) if t.kind == 'url'
            or (t.kind == 'ident' and is_swift_url(t.key))]
    if not src or src[0].kind not in ('url', 'ident') or not is_swift_url(src[0].key):
        pos = src[0].pos if src else tokens[start].pos
        quoted = src and src[0].kind == 'string' and is_swift_url(src[0].text[1:])
        named = src and src[0].kind == 'word' and re.fullmatch(r'[\w.-]+', src[0].text)
        raise _error_at(text, pos, 'FROM takes one swift://<account>/<container>/<objects>'
                        + (f' (in double quotes, as a name: "{src[0].text[1:-1]}"; single '
                           'quotes make a string)' if quoted else '')
                        + (f' (a container? swift://~/{src[0].text}/* names its objects)'
                           if named else ''))
    rest = src[1:]
    if rest and rest[0].key == 'as':
        rest = rest[1:]
    if len(rest) > 1 or (rest and rest[0].kind not in ('word', 'ident')):
        bad = rest[1] if len(rest) > 1 else rest[0]
        raise _error_at(text, bad.pos, 'FROM takes one collection and an alias (joins are '
                                       f'not supported{_quote_hint(text, src[0], tokens, end)})')
    if len(urls) != 1:
        raise _error_at(text, tokens[urls[1]].pos, 'only the FROM clause may name objects')
    return Query(text, tokens, src[0].name, start + 1, bounds)


def _quote_hint(text: str, url: Token, tokens: list[Token], end: int) -> str:
    """``; a name with spaces is quoted: FROM "swift://..."`` when what follows the URL
    in its FROM clause looks like more of the name (``my data*.csv``, ``a,b.csv``: a
    comma the name goes on after), else ''."""
    after = url.pos + len(url.text)
    tail = text[after:tokens[end].pos if end < len(tokens) else len(text)].rstrip()
    glued = re.fullmatch(r',[^\s,()]+', tail)
    if not tail or re.search(r'swift:', tail) or (re.search(r'[,()]', tail) and not glued) \
            or not re.search(r'[*./]', tail.split()[-1]):
        return ''                       # another table (a join), or words of SQL
    return (f'; a name with {"a comma" if glued else "spaces"} is quoted: '
            f'FROM "{url.text}{tail}"')


def _replace(query: Query, start: int, end: int, edits: dict[int, tuple[int, str]]) -> str:
    """The text of tokens [start, end) with ``edits`` (first token -> (end, new text))."""
    out, i, last = [], start, None
    while i < end:
        tok = query.tokens[i]
        if last is not None:
            out.append(query.text[last:tok.pos])
        if i in edits:
            stop, new = edits[i]
            out.append(new)
            last = query.tokens[stop - 1].pos + len(query.tokens[stop - 1].text)
            i = stop
        else:
            out.append(tok.text)
            last = tok.pos + len(tok.text)
            i += 1
    return ''.join(out)


def rewrite(query: Query, table: str, edits: dict[int, tuple[int, str]] | None = None,
            where: bool = True) -> str:
    """The query reading ``table`` instead of the URL, with ``edits`` (see
    ``_replace``), without its WHERE clause unless ``where``."""
    edits = {**(edits or {}), query.source_at: (query.source_at + 1, table)}
    parts = []
    for name in ('select', *CLAUSES):
        if name == 'select':
            parts.append(_replace(query, 0, query.clauses['from'][0], edits))
        elif name in query.clauses and (where or name != 'where'):
            parts.append(_replace(query, *query.clauses[name], edits))
    return ' '.join(parts)


# -- checking against the host's SQLite ------------------------------------------------------

def schema(table: str, columns: list[str]) -> str:
    cols = ', '.join(f'{quote_name(c)} NUMERIC' for c in columns)
    return f'CREATE TABLE {table}({cols})'


def _table(columns: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    return {TABLE: (columns, ['NUMERIC'] * len(columns))}


def _library():
    """The host's libsqlite3 through ctypes (for error offsets), or None."""
    name = ctypes.util.find_library('sqlite3')
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if lib is None or not hasattr(lib, 'sqlite3_error_offset'):     # SQLite < 3.38
        return None
    lib.sqlite3_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.sqlite3_exec.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_void_p]
    lib.sqlite3_prepare_v2.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                       ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
    lib.sqlite3_error_offset.argtypes = [ctypes.c_void_p]
    lib.sqlite3_finalize.argtypes = [ctypes.c_void_p]
    lib.sqlite3_close.argtypes = [ctypes.c_void_p]
    return lib


def error_offset(sql: str, tables: list[str]) -> int | None:
    """Where (0-based character) SQLite's complaint about ``sql`` points, if it says."""
    lib = _library()
    if lib is None:
        return None
    db = ctypes.c_void_p()
    if lib.sqlite3_open(b':memory:', ctypes.byref(db)) != 0:
        lib.sqlite3_close(db)
        return None
    try:
        for create in tables:
            lib.sqlite3_exec(db, create.encode(), None, None, None)
        data, stmt = sql.encode(), ctypes.c_void_p()
        if lib.sqlite3_prepare_v2(db, data, len(data), ctypes.byref(stmt), None) == 0:
            lib.sqlite3_finalize(stmt)
            return None
        offset = lib.sqlite3_error_offset(db)
        return len(data[:offset].decode('utf-8', 'replace')) if offset >= 0 else None
    finally:
        lib.sqlite3_close(db)


def _where_in(query: Query, columns: list[str], message: str) -> str:
    """``message`` with the character of the query it is about, when SQLite says."""
    if message == 'incomplete input':
        return f'{message}: the query ends too early'
    url = query.tokens[query.source_at]
    padded = (query.text[:url.pos] + TABLE.ljust(len(url.text))
              + query.text[url.pos + len(url.text):])
    offset = error_offset(padded, [schema(TABLE, columns)])
    return message if offset is None else f'{message} at character {offset + 1}'


def _no_string_names(query: Query, columns: list[str], fmt: str | None) -> None:
    """Refuse a double-quoted name that no column (nor alias) has: SQLite reads it as a
    string, so ``"regoin" = 'east'`` is false for every row and ``sum("qty")`` of a CSV
    read with the wrong delimiter (one column ``region;qty``) is 0.0, with a 200.  The
    query is checked again with each such name in brackets, which are never a string."""
    url, names = query.tokens[query.source_at], []
    text = query.text[:url.pos] + TABLE.ljust(len(url.text)) + query.text[url.pos + len(url.text):]
    for tok in query.tokens:
        if tok.kind == 'ident' and tok.text[0] == '"' and tok is not url \
                and not re.search(r'["\]]', tok.name):     # same length in brackets
            names.append(tok.name)
            text = text[:tok.pos] + f'[{tok.name}]' + text[tok.pos + len(tok.text):]
    if not names:
        return
    db = _checker()
    try:
        db.execute(schema(TABLE, columns))
        db.execute(text)
    except (sqlite3.Error, sqlite3.Warning) as e:
        found = re.fullmatch(r'no such column: (.*)', str(e))
        said = found.group(1) if found else ''          # "a.b": a.b; t."qty": t.qty
        name = next((n for n in (said, said.rsplit('.', 1)[-1]) if n in names), None)
        if name is None:
            return                          # not a name's (the query passed as it is)
        offset = error_offset(text, [schema(TABLE, columns)])
        where = '' if offset is None else f' at character {offset + 1}'
        key, _, path = name.partition('.')                  # "a.b": a's JSON key b?
        nested = (f'; a key in column {key}\'s JSON is json_extract({key}, \'$.{path}\')'
                  if path and key.lower() in {c.lower() for c in columns} else '')
        raise SqlError(f'query: no such column: "{name}"{where} (SQLite would read a '
                       f'double-quoted name that no column has as the string \'{name}\'; '
                       f'a string is in single quotes{nested}) (the columns: '
                       f'{_names(columns)}{_column_hint(columns, fmt)})') from None
    finally:
        db.close()


def _names(columns: list[str], most: int = 20) -> str:
    """The column names a query may use, for a message (the first ``most``)."""
    shown = ', '.join(columns[:most])
    return shown + (f', ... ({len(columns)} in all)' if len(columns) > most else '')


def _column_hint(columns: list[str], fmt: str | None) -> str:
    """Where the columns of ``fmt`` objects came from, for a column the query names and
    they lack ('' for names the request gave, fmt None): JSON lines' are the keys of the
    first line; for CSV, one column whose name holds a usual delimiter (``a;b;c``:
    objects read with the wrong one), how to give theirs."""
    if fmt == 'jsonl':
        return (': the keys of the first line; a key only later lines have is a column when '
                '"input"."columns" names every one')
    held = [sep for sep in ',;\t|' if fmt == 'csv' and len(columns) == 1 and sep in columns[0]]
    if not held:
        return ''
    shown = held[0].replace('\t', '\\t')
    return (f': one column, whose name holds "{shown}": if the fields are separated by '
            f'"{shown}", give that as "input"."delimiter"')


def _checker() -> sqlite3.Connection:
    """A connection for checking queries over empty tables: small values, few steps."""
    db = sqlite3.connect(':memory:')
    db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, CHECK_LENGTH)
    db.set_progress_handler(lambda: 1, CHECK_STEPS)     # nonzero: interrupt
    return db


def check(sql: str, tables: dict[str, tuple[list[str], list[str]]],
          query: Query | None = None, fmt: str | None = None) -> list[str]:
    """Run ``sql`` over empty ``tables`` (name -> (columns, types)) with small limits:
    its result column names, or SqlError saying what and where (in ``query``, whose
    columns were read from ``fmt`` objects: :func:`_column_hint`)."""
    db = _checker()
    try:
        for name, (columns, types) in tables.items():
            cols = ', '.join(f'{quote_name(c)} {t}'.rstrip()
                             for c, t in zip(columns, types, strict=True))
            db.execute(f'CREATE TABLE {name}({cols})')
        try:
            cur = db.execute(sql)
        except (sqlite3.Error, sqlite3.Warning) as e:
            message = str(e)
            if query is not None:
                columns = tables[TABLE][0]
                message = _where_in(query, columns, message)
                if message.startswith('no such column'):     # a typo, or another object's
                    message += f' (the columns: {_names(columns)}{_column_hint(columns, fmt)})'
            raise SqlError(f'query: {message}') from None
        return [d[0] for d in cur.description or ()]
    finally:
        db.close()


# -- analysis --------------------------------------------------------------------------------

@dataclass
class Call:
    name: str
    start: int              # token index of the name
    end: int                # after the closing parenthesis
    args: tuple[int, int]   # token range of the arguments


def _calls(query: Query, start: int, end: int) -> list[Call]:
    """Aggregate calls (not nested in another) among tokens [start, end)."""
    toks, out, i = query.tokens, [], start
    while i < end:
        tok = toks[i]
        if tok.kind in ('word', 'ident') and i + 1 < end and toks[i + 1].text == '(' \
                and tok.key in AGGREGATES:
            depth, j = 0, i + 1
            while j < end:
                if toks[j].text == '(':
                    depth += 1
                elif toks[j].text == ')':
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            args = (i + 2, j)
            if tok.key in ('min', 'max') and _has_comma(toks, *args):   # the scalar min/max
                i += 1
                continue
            out.append(Call(tok.key, i, j + 1, args))
            i = j + 1
            continue
        i += 1
    return out


def _terms(toks: list[Token], start: int, end: int) -> Iterator[tuple[int, int]]:
    """The token ranges of the comma-separated terms of tokens [start, end) (a comma
    inside parentheses is its term's), one pass: a query's length in tokens, not its
    square, holds the proxy's hub."""
    depth, first = 0, start
    for i in range(start, end):
        text = toks[i].text
        if text == ',' and depth == 0:
            yield first, i
            first = i + 1
        else:
            depth += (text == '(') - (text == ')')
    yield first, end


def _has_comma(toks: list[Token], start: int, end: int) -> bool:
    """Whether tokens [start, end) hold a comma outside parentheses."""
    return next(itertools.islice(_terms(toks, start, end), 1, None), None) is not None


def _inside(calls: list[Call]) -> set[int]:
    """The indexes of the tokens of ``calls``."""
    return {k for c in calls for k in range(c.start, c.end)}


def _columns_in(query: Query, start: int, end: int, columns: dict[str, str],
                skip: set[int] = frozenset(), aliases: set[str] = frozenset()) -> set[str]:
    """Table columns named among tokens [start, end), but for those of indexes ``skip``
    (:func:`_inside` the calls not counted), not counting names in ``aliases``."""
    toks, found = query.tokens, set()
    for i in range(start, end):
        tok = toks[i]
        if i in skip or tok.kind not in ('word', 'ident') or tok.key in aliases:
            continue
        if i + 1 < len(toks) and toks[i + 1].text in ('(', '.'):
            continue                       # a function, or a table alias
        if tok.key in columns:
            found.add(columns[tok.key])
    return found


def _select_items(query: Query) -> list[tuple[int, int, str | None]]:
    """(start, end, alias) of each select-list item."""
    toks = query.tokens
    start = 1
    while start < len(toks) and toks[start].key in ('distinct', 'all'):
        start += 1
    items = []
    for a, b in _terms(toks, start, query.clauses['from'][0]):
        alias = None
        if b - a >= 2 and toks[b - 1].kind in ('word', 'ident') and toks[b - 2].key == 'as':
            alias, b = toks[b - 1].key, b - 2
        elif b - a >= 2 and toks[b - 1].kind in ('ident', 'word') \
                and (toks[b - 2].kind in ('word', 'ident', 'string', 'number')
                     or toks[b - 2].text == ')') \
                and toks[b - 1].key not in _ENDING and toks[b - 2].key != 'collate':
            alias, b = toks[b - 1].key, b - 1
        items.append((a, b, alias))
    return items


def _has_star(query: Query) -> bool:
    toks = query.tokens
    end = query.clauses['from'][0]
    return any(t.text == '*' and toks[i - 1].key in ('select', 'distinct', 'all', ',', '.')
               for i, t in enumerate(toks[:end]) if i)


@dataclass
class Plan:
    """What every node runs (``sqlnode.c``'s options) and why."""

    mode: str                              # single | split | rows
    reason: str
    columns: list[str]                     # of the objects
    map_query: str
    reduce_query: str | None = None
    partial_columns: list[str] = field(default_factory=list)
    partial_types: list[str] = field(default_factory=list)     # NUMERIC or '' per column
    result_columns: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)     # the columns a node loads
    numbers: list[str] = field(default_factory=list)    # used as numbers: sum(qty), qty * 2

    def numeric(self) -> str | None:
        """``sqlnode``'s ``--numeric`` (the loaded columns, from 1, the query uses as
        numbers: a record with text there is malformed, fatal without ``--skip-bad``),
        None for none."""
        loaded = [c.lower() for c in self.loaded or self.columns]
        found = [str(loaded.index(c.lower()) + 1) for c in self.numbers]
        return ','.join(found) or None

    def map_schema(self) -> str:
        return schema(TABLE, self.loaded or self.columns)

    def fields(self) -> str | None:
        """``sqlnode``'s ``--fields`` (which CSV fields are loaded), None for all."""
        if not self.loaded or self.loaded == self.columns:
            return None
        keep = {c.lower() for c in self.loaded}
        return f'{len(self.columns)}:' + ','.join(
            str(i) for i, c in enumerate(self.columns, 1) if c.lower() in keep)

    def reduce_schema(self) -> str:
        cols = ', '.join(f'{quote_name(c)} {t}'.rstrip()
                         for c, t in zip(self.partial_columns, self.partial_types, strict=True))
        return f'CREATE TABLE {PARTIALS}({cols})'

    def to_dict(self) -> dict:
        out = {'mode': self.mode, 'reason': self.reason, 'columns': self.columns,
               'loaded_columns': self.loaded or self.columns, 'node_query': self.map_query,
               'result_columns': self.result_columns}
        if self.reduce_query is not None:
            out['merge_query'] = self.reduce_query
            out['partial_columns'] = self.partial_columns
        return out


def plan(query: Query, columns: list[str], objects: int, merged: bool = False,
         fmt: str | None = 'csv') -> Plan:
    """The plan of ``query`` over ``objects`` objects with these columns; SqlError if bad.
    ``merged``: a merging node even for one object (it reads the nodes' notes, such as
    the records they skipped, which one node answering would have nowhere to put).
    ``fmt``: the objects' format the columns were read from (None: the request named
    them), for the hint of an unknown column."""
    table_sql = rewrite(query, TABLE)
    result = check(table_sql, _table(columns), query, fmt)
    _no_string_names(query, columns, fmt)
    by_name = {c.lower(): c for c in columns}
    _no_clock(query)
    _no_host_only(query, by_name)
    if objects > 1 or merged:
        _no_rowid(query, by_name, objects)
    if objects == 1 and not merged:
        p = Plan('single', 'one object: one node runs the query', columns, table_sql,
                 result_columns=result)
    else:
        p, reason = _split(query, by_name, columns, result)
        if p is None:
            p = _rows(query, by_name, columns, result, reason)
    p.loaded = _loaded(query, by_name, columns, p.map_query)
    p.numbers = _numbers(query, by_name)
    return p


SUMMED = ('sum', 'avg', 'total')
ARITHMETIC = ('+', '-', '*', '/', '%', '<<', '>>', '&', '|', '~')
ORDERING = ('<', '<=', '>', '>=')


def _numbers(query: Query, by_name: dict[str, str]) -> list[str]:
    """The columns the query uses as numbers, in order: summed as they are
    (``sum(qty)``, ``avg(DISTINCT price)``, not ``sum(CASE ...)``), an operand of
    arithmetic (``qty * 2``, ``-qty``, ``sum(qty * price)``), or ordered against a
    number (``qty > 3``, ``3 <= qty``, ``qty BETWEEN 1 AND 5``); named alone or by
    the FROM alias (``t.qty``; with none, the table the source is rewritten to).
    There a text (``n/a``, ``2,50``) would be read as its leading number or 0, or
    sort above every number: a wrong answer, so such a record is malformed (it fails
    the query; "skip_bad" skips it) (``=`` and ``min``/``max`` compare text rightly:
    not these)."""
    toks, found = query.tokens, []
    end = query.clauses['from'][1]
    alias = [t.key for t in toks[query.source_at + 1:end] if t.key != 'as'] or [TABLE]
    summed = {(a + (toks[a].key == 'distinct'), b) for call in _calls(query, 0, len(toks))
              if call.name in SUMMED for a, b in [call.args]}
    for i, tok in enumerate(toks):
        if tok.kind not in ('word', 'ident') or tok.key not in by_name \
                or i + 1 < len(toks) and toks[i + 1].text in ('(', '.'):
            continue                       # no column: a function, or a table alias
        start = i - 2 if i >= 2 and toks[i - 1].text == '.' else i
        if start < i and [toks[start].key] != alias:
            continue                       # another table's (SQLite refused it)
        op = i + 1                         # the operator after it (NOT BETWEEN: BETWEEN)
        if op + 1 < len(toks) and toks[op].key == 'not' and toks[op + 1].key == 'between':
            op += 1
        before = toks[start - 1].text if start else ''
        after = toks[op].key if op < len(toks) else ''
        numeric = ((start, i + 1) in summed or before in ARITHMETIC or after in ARITHMETIC
                   or (after in ORDERING or after == 'between') and _number_at(toks, op + 1)
                   or before in ORDERING and start >= 2 and toks[start - 2].kind == 'number')
        if numeric and by_name[tok.key] not in found:
            found.append(by_name[tok.key])
    return found


def _number_at(toks: list[Token], i: int) -> bool:
    """Whether a number starts at token ``i`` (``3``, ``-3``)."""
    if i < len(toks) and toks[i].text in ('-', '+'):
        i += 1
    return i < len(toks) and toks[i].kind == 'number'


DATE_FUNCTIONS = ('date', 'time', 'datetime', 'julianday', 'unixepoch', 'strftime',
                  'timediff')
NOW_WORDS = ('current_date', 'current_time', 'current_timestamp')


def _no_clock(query: Query) -> None:
    """Refuse the current time: the nodes have no clock (a query answers the same
    every time), so ``date('now')`` would be 1970-01-01, not today."""
    toks, calls = query.tokens, []          # the function of each open parenthesis
    for i, t in enumerate(toks):
        if t.text in '()':
            if t.text == '(':
                calls.append(toks[i - 1].key if i and toks[i - 1].kind == 'word' else '')
            elif calls:
                calls.pop()
            continue
        now = t.kind == 'word' and t.key in NOW_WORDS
        now = now or (t.kind == 'string' and t.text[1:-1].strip().lower() == 'now'
                      and any(name in DATE_FUNCTIONS for name in calls))
        empty = (t.kind == 'word' and t.key in DATE_FUNCTIONS and i + 2 < len(toks)
                 and toks[i + 1].text == '(' and toks[i + 2].text == ')')
        if now or empty:
            what = f'{t.text}()' if empty else t.text
            raise _error_at(query.text, t.pos, f'{what} is the current time, which the '
                            'nodes do not have (a query answers the same every time, and '
                            "theirs is 1970-01-01): write the date, e.g. '2026-12-04'")


def _no_host_only(query: Query, by_name: dict[str, str]) -> None:
    """Refuse what the host's SQLite accepts over an empty table but no node can run,
    which every node (or the merge) failed on, 422: MATCH (a full-text index's; a
    column named so is a column) and load_extension() (the nodes load none)."""
    toks = query.tokens
    for i, t in enumerate(toks):
        if t.kind != 'word':
            continue
        if t.key == 'match' and 'match' not in by_name and toks[i - 1].text != '.':
            raise _error_at(query.text, t.pos, 'MATCH needs a full-text index, which objects '
                            'do not have: use LIKE or GLOB')
        if t.key == 'load_extension' and i + 1 < len(toks) and toks[i + 1].text == '(':
            raise _error_at(query.text, t.pos, 'no such function: load_extension')


ROWIDS = ('rowid', 'oid', '_rowid_')


def _no_rowid(query: Query, by_name: dict[str, str], objects: int) -> None:
    """Refuse a rowid over several objects: each node numbers its object's rows from 1,
    so ``WHERE rowid < 100`` would take 99 rows of every object, not of all of them
    (a column, or a result named so, is not the rowid); nor over one whose rows are
    merged by another node (``skip_bad``), where it would number the merged rows."""
    toks = query.tokens
    if any(t.key in ROWIDS and i and toks[i - 1].key == 'as' for i, t in enumerate(toks)):
        return
    for t in toks:
        if t.kind in ('word', 'ident') and t.key in ROWIDS and t.key not in by_name:
            if objects == 1:
                raise _error_at(query.text, t.pos, f'{t.name} is not available with '
                                '"skip_bad" (another node merges the rows)')
            raise _error_at(query.text, t.pos, f'{t.name} numbers the rows of each object '
                            f'from 1, not the rows of all of them: it is only for one '
                            f'object (FROM swift://~/<container>/<object>)')


def _loaded(query: Query, by_name: dict[str, str], columns: list[str], map_sql: str
            ) -> list[str]:
    """The columns a node needs to load to run ``map_sql`` (every column the query
    names; all of them for ``*``; at least one, to count rows)."""
    if _has_star(query):
        return list(columns)
    named = _columns_in(query, 0, len(query.tokens), by_name)
    loaded = [c for c in columns if c in named] or columns[:1]
    try:
        check(map_sql, _table(loaded))
    except SqlError:
        return list(columns)
    return loaded


def _keys(query: Query, by_name: dict[str, str]) -> set[str] | None:
    """Columns the GROUP BY terms use (select-list positions and aliases resolved)."""
    start, end = query.clauses['group']
    toks, items, aliases = query.tokens, query.items, query.aliases
    keys: set[str] = set()
    for a, b in _terms(toks, start + 2, end):
        term = toks[a:b]
        if len(term) == 1 and term[0].kind == 'number':
            n = int(term[0].text) if term[0].text.isdigit() else 0
            if not 1 <= n <= len(items):
                return None
            keys |= _columns_in(query, items[n - 1][0], items[n - 1][1], by_name)
        elif len(term) == 1 and term[0].key in aliases and term[0].key not in by_name:
            keys |= _columns_in(query, *aliases[term[0].key], by_name)
        else:
            keys |= _columns_in(query, a, b, by_name)
    return keys


def _split(query: Query, by_name: dict[str, str], columns: list[str],
           result: list[str]) -> tuple[Plan | None, str]:
    toks = query.tokens
    outside = [(0, query.clauses['from'][0])] + [query.clauses[c] for c in
                                                  ('group', 'having', 'order', 'limit')
                                                  if c in query.clauses]
    calls = [c for a, b in outside for c in _calls(query, a, b)]
    if any(t.key in ('over', 'window') for t in toks if t.kind == 'word'):
        return None, 'a window function: the rows are merged'
    if not calls and 'group' not in query.clauses:
        return None, 'no aggregates: the filtered rows are merged'
    if not calls:
        return None, 'GROUP BY without aggregates: the filtered rows are merged'
    for c in calls:
        if c.name not in SPLITTABLE:
            return None, f'{c.name}() cannot be split: the filtered rows are merged'
        args = toks[c.args[0]:c.args[1]]
        if any(t.key in ('distinct', 'filter') for t in args) \
                or (c.end < len(toks) and toks[c.end].key == 'filter'):
            return None, (f'{c.name}() with DISTINCT or FILTER cannot be split: the filtered '
                          'rows are merged')
        if _calls(query, *c.args):
            return None, 'nested aggregates: the filtered rows are merged'
        if c.name in ('min', 'max') and any(t.key == 'collate' for t in args):
            # the objects' minima lose their collation: the merge would compare bytes
            return None, (f'{c.name}() under a COLLATE cannot be split: the filtered rows '
                          'are merged')
    items = query.items
    if 'group' in query.clauses:
        keys = _keys(query, by_name)
        if not keys:
            return None, 'GROUP BY terms without columns: the filtered rows are merged'
    else:
        keys = set()
    used, inside = set(), _inside(calls)    # once: per item it was a query's square
    for a, b, _ in items:                  # select items, without their aliases
        used |= _columns_in(query, a, b, by_name, inside)
    for name in ('having', 'order', 'limit'):
        if name in query.clauses:          # ORDER BY prefers an alias to a column
            used |= _columns_in(query, *query.clauses[name], by_name, inside,
                                query.aliases.keys() if name == 'order' else frozenset())
    if _has_star(query):
        return None, 'SELECT * with aggregates: the filtered rows are merged'
    stray = sorted(used - keys)
    if stray:
        return None, (f'column {stray[0]} is used outside the aggregates and the GROUP BY: '
                      'the filtered rows are merged')
    key_cols = [c for c in columns if c in keys]
    partial_sql, merge = [], {}
    seen: dict[str, str] = {}

    def partial(expr: str) -> str:
        if expr not in seen:
            seen[expr] = f'_zc{len(seen)}'
            partial_sql.append(f'{expr} AS {seen[expr]}')
        return seen[expr]

    for c in calls:
        arg = query.span(*c.args) or ''
        if c.name == 'count':
            new = f'sum({partial(f"count({arg})")})'
        elif c.name == 'avg':           # total: avg() has no integer overflow, sum() has
            s, n = partial(f'total({arg})'), partial(f'count({arg})')
            new = f'(total({s}) / sum({n}))'
        elif c.name == 'total':
            new = f'total({partial(f"total({arg})")})'
        else:
            new = f'{c.name}({partial(f"{c.name}({arg})")})'
        merge[c.start] = (c.end, new)
    select = ', '.join([*(f'{quote_name(k)} AS {quote_name(k)}' for k in key_cols),
                        *partial_sql])
    alias = _alias(query)
    map_sql = f'SELECT {select} FROM {TABLE}{alias}'
    map_sql += _where(query, by_name)
    if key_cols:
        map_sql += ' GROUP BY ' + ', '.join(quote_name(k) for k in key_cols)
    pcols = key_cols + list(seen.values())
    ptypes = ['NUMERIC'] * len(key_cols) + [''] * len(seen)
    if len(items) == len(result):          # keep the names the answer's columns would have
        for (a, b, alias), name in zip(items, result, strict=True):
            if alias is None:
                merge[a] = (b, f'{_replace(query, a, b, merge)} AS {quote_name(name)}')
    reduce_sql = rewrite(query, PARTIALS, merge, where=False)
    try:
        check(map_sql, _table(columns))
        check(reduce_sql, {PARTIALS: (pcols, ptypes)})
    except SqlError as e:
        return None, f'the split query does not compile ({e}): the filtered rows are merged'
    p = Plan('split', 'decomposable aggregates: each node aggregates its object, one node '
                      'merges the partial aggregates', columns, map_sql, reduce_sql, pcols,
             ptypes, result)
    return p, ''


def _where(query: Query, by_name: dict[str, str]) -> str:
    """' WHERE ...' for a node's query ('' without one), a select-list alias in it
    (``SELECT qty * 2 AS d ... WHERE d > 10``: SQLite reads a name that is no column
    as the alias) replaced by its expression: a node's query selects no such alias."""
    if 'where' not in query.clauses:
        return ''
    start, end = query.clauses['where']
    toks, aliases = query.tokens, query.aliases
    edits = {i: (i + 1, f'({query.span(*aliases[t.key])})')
             for i in range(start + 1, end) if (t := toks[i]).kind in ('word', 'ident')
             and t.key in aliases and t.key not in by_name
             and toks[i - 1].key not in ('.', 'collate')
             and (i + 1 == len(toks) or toks[i + 1].text not in ('(', '.'))}
    return ' ' + _replace(query, start, end, edits)


def _alias(query: Query) -> str:
    start, end = query.clauses['from']
    rest = query.tokens[query.source_at + 1:end]
    return (' ' + ' '.join(t.text for t in rest)) if rest else ''


def _rows(query: Query, by_name: dict[str, str], columns: list[str], result: list[str],
          reason: str) -> Plan:
    """Each node ships its filtered rows; the merging node runs the rest."""
    outside = [(0, query.clauses['from'][0])] + [query.clauses[c] for c in
                                                  ('group', 'having', 'window', 'order',
                                                   'limit') if c in query.clauses]
    if _has_star(query):
        needed = list(columns)
    else:
        used = set()
        for a, b in outside:
            used |= _columns_in(query, a, b, by_name)
        needed = [c for c in columns if c in used]
    alias = _alias(query)
    select = ', '.join(f'{quote_name(c)} AS {quote_name(c)}' for c in needed) or '1 AS _zc'
    pcols = needed or ['_zc']
    map_sql = f'SELECT {select} FROM {TABLE}{alias}'
    map_sql += _where(query, by_name)
    reduce_sql = rewrite(query, PARTIALS, where=False)
    pushed = _limit_pushdown(query, map_sql, columns)
    if pushed:
        map_sql = pushed
        reason += ' (each node sends at most LIMIT + OFFSET rows)'
    check(reduce_sql, {PARTIALS: (pcols, ['NUMERIC'] * len(pcols))})
    return Plan('rows', reason, columns, map_sql, reduce_sql, pcols,
                ['NUMERIC'] * len(pcols), result)


def _limit_pushdown(query: Query, map_sql: str, columns: list[str]) -> str | None:
    """``map_sql`` with ORDER BY and LIMIT (LIMIT + OFFSET rows) when that is safe: no
    aggregates, no DISTINCT, no GROUP BY, a constant limit, ORDER BY over columns."""
    if 'limit' not in query.clauses or 'group' in query.clauses:
        return None
    toks = query.tokens
    if toks[1].key == 'distinct' or _calls(query, 0, len(toks)):
        return None
    if any(t.key in ('over', 'window') for t in toks if t.kind == 'word'):
        return None
    body = toks[query.clauses['limit'][0] + 1:query.clauses['limit'][1]]
    nums = [t for t in body if t.kind == 'number']
    if not body or any(t.kind not in ('number',) and t.key not in ('offset', ',')
                       for t in body) or not all(t.text.isdigit() for t in nums):
        return None
    values = [int(t.text) for t in nums]
    total = sum(values)
    order = ''
    if 'order' in query.clauses:
        start, end = query.clauses['order']
        by_name = {c.lower() for c in columns}
        for t in toks[start + 2:end]:
            if t.kind == 'number' or t.key in query.aliases or (
                    t.kind in ('word', 'ident') and t.key not in by_name
                                      and t.key not in ('asc', 'desc', 'nulls', 'first',
                                                        'last', 'collate', 'nocase', 'binary',
                                                        'rtrim')):
                return None
        order = ' ' + query.clause('order')
    sql = f'{map_sql}{order} LIMIT {total}'
    try:
        check(sql, _table(columns))
    except SqlError:
        return None
    return sql


def check_json_keys(columns: list[str]) -> None:
    """Refuse the column names a node cannot look up as JSON keys (``sqlnode`` reads
    each column of a JSON line as ``json_extract(line, '$."<name>"')``)."""
    for c in columns:
        if '"' in c or '\\' in c:
            raise SqlError(f'column {c!r}: JSON keys with quotes or backslashes are not '
                           'supported')

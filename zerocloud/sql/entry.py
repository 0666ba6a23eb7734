"""The ``sql/1.0`` entry point: one SQL query over a collection of objects, in place.

``POST /v1/<account>`` with ``X-Zerovm-Execute: sql/1.0`` and a JSON body
(``doc/sql.md`` has the whole form)::

    {"query": "SELECT region, count(*), sum(qty) FROM swift://~/sales/*.csv
               WHERE qty > 10 GROUP BY region ORDER BY 3 DESC LIMIT 5",
     "format": "csv", "header": true}

The proxy lists the objects the FROM URL matches (as the caller), reads the
column names from the start of the first non-empty one (a ranged GET), and
checks and plans the query (``zerocloud.sql.planner``): a bad query is a 400
saying what and where before any node starts.  The plan runs as jobs of the
``sqlite`` system image: one node per object, next to it, writing its partial
rows; then one node that reads them all (in object order) and merges them.
The merging node runs as a second job, once the first has ended, so that it
holds no worker and no wall-clock time while it would only wait.  Its answer
is the response (``text/csv`` or ``application/x-ndjson``), with the
``X-Nexe-*`` headers of both jobs as if they were one (the nodes, then
``merge``), and ``X-Sql-Plan`` (``single``, ``split`` or ``rows``),
``X-Sql-Plan-Reason`` and ``X-Sql-Objects``.  ``"explain": true`` answers
the plan as JSON instead of running it.  A node whose program fails (a
malformed record, an error SQLite finds while running) makes the response a
422 and nothing is merged.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from typing import TYPE_CHECKING

from swift.common.swob import Response

from zerocloud import deferred, hangup, sources
from zerocloud import job as jobs
from zerocloud.answer_format import NODES_HEADER, UNDECLARED, UNDER_MIN
from zerocloud.httperrors import (
    HTTPBadRequest,
    HTTPMethodNotAllowed,
    HTTPNotFound,
    HTTPNotImplemented,
    HTTPRequestEntityTooLarge,
    HTTPUnprocessableEntity,
)
from zerocloud.proxy.caller import spool
from zerocloud.proxy.response import DROPPED, Tally, header_text
from zerocloud.sources import Input, Launch
from zerocloud.sql import planner
from zerocloud.sql.planner import SqlError

if TYPE_CHECKING:
    from collections.abc import Callable

    from zerocloud.proxy.caller import Caller

VERSION = planner.VERSION
IMAGE = 'sqlite'
PROGRAM = f'file://{IMAGE}:{IMAGE}'
PARTIAL_TYPE = 'text/x-sqlnode-partial'
MAP, MERGE = 'sql', 'merge'
HEAD_BYTES = 65536               # read from the first object to find its columns
JSON_LINES = 'the objects must be JSON lines'
HEAD_TRIES = 20                  # objects tried for one that is not empty
CONTENT_TYPES = {'csv': 'text/csv; charset=utf-8', 'json': 'application/x-ndjson'}
SUFFIXES = {'.csv': ('csv', ','), '.tsv': ('csv', '\t'), '.jsonl': ('jsonl', None),
            '.ndjson': ('jsonl', None), '.json': ('jsonl', None)}


def _input_format(spec: planner.InputSpec, name: str) -> tuple[str, str]:
    """(csv | jsonl, delimiter) from the request, else from the object's name."""
    base = name[:-3] if name.endswith('.gz') else name
    found = next((v for s, v in SUFFIXES.items() if base.lower().endswith(s)), (None, None))
    fmt = spec.format or found[0]
    if fmt is None:
        raise SqlError(f'cannot tell the format of {name} from its name: say '
                       '"input": {"format": "csv"} or "jsonl"')
    return fmt, spec.delimiter if spec.delimiter != ',' else (found[1] or ',')


def _one_format(spec: planner.InputSpec, objects: list, first: tuple[str, str]) -> None:
    """Refuse objects whose names say another format than the first's (``a.csv`` beside
    ``b.jsonl``): read as the first's, they failed on their first line, saying nothing of why."""
    if spec.format is not None:
        return
    kinds = {}                  # a name of each suffix: 100,000 names in 0.1 s (load 10)
    for path in objects[1:]:
        base = path.obj.lower().removesuffix('.gz')
        kinds.setdefault(base[base.rfind('.'):] if '.' in base else '', path)
    for path in kinds.values():
        try:
            other = _input_format(spec, path.obj)
        except SqlError:                # a name that says nothing: read as the first
            continue
        if other != first:
            raise SqlError(f'{objects[0]} is {_format_name(*first)} and {path} '
                           f'{_format_name(*other)}, by their names: one query reads one '
                           'format: narrow the FROM pattern to one kind of name, or say '
                           '"input": {"format": "csv"} or "jsonl" to read all of them so')


def _format_name(fmt: str, delimiter: str) -> str:
    """A format as the user knows it, for messages."""
    if fmt == 'jsonl':
        return 'JSON lines'
    return {',': 'CSV', '\t': 'tab-separated CSV'}.get(delimiter,
                                                       f'CSV separated by {delimiter!r}')


def _wildcard_hint(path: jobs.SwiftPath) -> str:
    """What a 404 adds for a FROM URL holding a shell's wildcard, which is a name here."""
    return 'the one wildcard of a FROM URL is *' if set('?[') & set(path.obj or '') else ''


def _head(caller: Caller, path: jobs.SwiftPath) -> bytes:
    """The first bytes of an object (decompressed when gzip), as the caller."""
    resp = caller.read('GET', path, _wildcard_hint(path), first=HEAD_BYTES)
    if resp.status_int == 416:                       # an empty object
        return b''
    data = resp.body[:HEAD_BYTES]
    if data[:2] == b'\x1f\x8b':
        try:
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, HEAD_BYTES)
        except zlib.error as e:
            raise SqlError(f'{path} starts like gzip but is not ({e})') from None
    return data


def _columns(head: bytes, fmt: str, delimiter: str, header: bool, path) -> list[str]:
    """Column names from the start of an object: its header record, c1..cN, or the
    keys of its first JSON line."""
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:                   # not a character cut at the end
            raise SqlError(f'{path} is not UTF-8 text (byte {e.start + 1})') from None
        text = head[:e.start].decode('utf-8')
    text = text.removeprefix('\ufeff')
    if fmt == 'jsonl':
        return _json_columns(text, '\n' in text or len(head) < HEAD_BYTES, path)
    if not re.search('[\r\n]', text) and len(head) >= HEAD_BYTES:
        raise SqlError(f'the first record of {path} is longer than {HEAD_BYTES} bytes')
    try:            # records end with LF, CRLF or CR alone (old Mac), as the nodes read them
        record = next(csv.reader(io.StringIO(text, newline=''), delimiter=delimiter), [])
    except csv.Error as e:                      # a 400, never a 500 (the proxy's traceback)
        raise SqlError(f'the first record of {path} does not read as CSV: {e}') from None
    if header:
        return planner.check_columns(record, f'the header of {path}')
    return [f'c{i}' for i in range(1, len(record) + 1)]


def _json_columns(text: str, whole: bool, path) -> list[str]:
    """The keys of the first JSON line of ``text`` (``whole``: not cut by the read).
    What is not JSON lines (one object per line) is told apart from a line too long to
    read here, which naming the columns gets past."""
    line = next((ln for ln in text.split('\n') if ln.strip()), '')
    name_them = 'say "input": {"columns": [...]}'
    if line.lstrip().startswith('['):         # json.dump of a list: whole, cut, pretty-printed
        raise SqlError(f'{path} holds a JSON array, not JSON objects: {JSON_LINES}, one object '
                       'per line, each a row (an array of objects is not: jq -c ".[]" makes '
                       'it one)')
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):      # not JSON, or nested too deep
        if not whole and line == text.strip():
            raise SqlError(f'the first line of {path} is longer than {HEAD_BYTES} bytes: '
                           f'{name_them}') from None
        raise SqlError(f'the first line of {path} is not a JSON value: {JSON_LINES}, one '
                       'whole object per line, each a row (a pretty-printed document is not: '
                       'jq -c makes it one)') from None
    if not isinstance(value, dict) or not value:
        raise SqlError(f'the first line of {path} is not a JSON object with keys: {name_them}')
    return planner.check_columns(list(value), f'the first line of {path}')


def _objects(caller: Caller, path: jobs.SwiftPath) -> list[jobs.SwiftPath]:
    """The objects ``path`` names, in the order the job's nodes will have."""
    if not path.wildcard:
        return [path]
    found = []
    try:
        for obj, _ in jobs._find(path, lambda a, c, p: caller.listing(f'/v1/{a}/{c}', p),
                                 lambda a: caller.listing(f'/v1/{a}')):
            found.append(obj)
            most = caller.config.max_nodes
            if len(found) > most:       # a 400 as for a job: the request is small
                raise HTTPBadRequest(body=f'{path} matches more than {most} objects (a node '
                                          'each): more nodes than the operator\'s '
                                          'zerovm_maxnodes (proxy) allows; it raises the '
                                          'limit\n')
    except jobs.JobError as e:                  # a container that does not exist
        raise HTTPNotFound(body=f'{e}\n') from None
    if not found:
        raise HTTPNotFound(body=f'{jobs.no_objects_found(path, _wildcard_hint(path))}\n')
    return sorted(found, key=lambda p: (p.container, p.obj or ''))


def _node_args(plan: planner.Plan, fmt: str, delimiter: str, has_header: bool,
               out: str, check_header: bool, skip_bad: bool) -> list[str]:
    args = ['--schema', plan.map_schema()]
    if skip_bad:
        args += ['--skip-bad']
    if numeric := plan.numeric():       # text there is a malformed record, not a 0
        args += ['--numeric', numeric]
    if fmt == 'jsonl':
        planner.check_json_keys(plan.loaded or plan.columns)
        args += ['--load', 'jsonl', '/dev/input']
    else:
        args += ['--load', 'csvh' if has_header else 'csv', '/dev/input']
        if delimiter != ',':
            args += ['--delimiter', delimiter]
        if plan.fields():
            args += ['--fields', plan.fields()]
        if check_header:
            args.append('--check-header')
    return one_line(args + ['--query', plan.map_query, '--out', out])


_CONTROL = re.compile(r'[\x00-\x1f\x7f]')
_UNSAFE = re.compile(r'[\\\x00-\x1f\x7f]')
_ESCAPES = {'\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r'}


def one_line(args: list[str]) -> list[str]:
    """``sqlnode``'s arguments as a job can carry them: none may hold a control
    character (ZeroVM's nvram keeps them on one line), so a multi-line query or a TAB
    delimiter goes ``--escaped`` (``\\n``, ``\\t``, ``\\xHH``, ``\\\\``), which
    the node decodes."""
    if not any(_CONTROL.search(a) for a in args):
        return args
    return ['--escaped', *(_UNSAFE.sub(lambda m: _ESCAPES.get(m.group()) or
                                       f'\\x{ord(m.group()):02x}', a) for a in args)]


def build_jobs(plan: planner.Plan, source: jobs.SwiftPath, fmt: str, delimiter: str,
               has_header: bool, out_format: str, out_header: bool,
               output: jobs.SwiftPath | None = None, engine: str | None = None,
               check_header: bool = False, skip_bad: bool = False) -> list[list[dict]]:
    """The jobs that run ``plan`` over ``source`` (a wildcard path or one object): the
    nodes' job, then (unless one node answers) the merging job, which reads their
    partial rows on stdin.  The last one answers in the response, or stores the
    answer as ``output``.  ``engine`` is every node's (None: the object servers').
    ``check_header``: every object's header row must name the plan's columns (they
    were read from the first object's), else its node fails: read by position, an
    object with its columns in another order would give a wrong answer.  ``skip_bad``:
    the nodes skip malformed records and note how many in their partial rows
    (:func:`skipped`)."""
    final = 'json' if out_format == 'json' else ('csvh' if out_header else 'csv')
    answer = {'name': 'stdout', 'content_type': CONTENT_TYPES[out_format]}
    if output is not None:
        answer['path'] = str(output)
    program = {'path': PROGRAM}
    picked = {} if engine is None else {'engine': engine}
    if plan.mode == 'single':
        return [[{'name': MAP, 'exec': {**program, 'args': _node_args(
                    plan, fmt, delimiter, has_header, final, check_header, skip_bad)},
                  'devices': [{'name': 'input', 'path': str(source)}, answer], **picked}]]
    nodes = [{'name': MAP, 'exec': {**program, 'args': _node_args(
                 plan, fmt, delimiter, has_header, 'partial', check_header, skip_bad)},
              'devices': [{'name': 'input', 'path': str(source)},
                          {'name': 'stdout', 'content_type': PARTIAL_TYPE}], **picked}]
    merge = [{'name': MERGE, 'exec': {**program, 'args': one_line([
                 '--schema', plan.reduce_schema(), '--load', 'partials', '/dev/stdin',
                 '--query', plan.reduce_query, '--out', final])},
              'devices': [{'name': 'stdin'}, answer], **picked}]
    return [nodes, merge]


def _joined(first: Response, second: Response) -> dict[str, str]:
    """The ``X-Nexe-*`` headers of two jobs as if they were one (nodes in order); when
    either answered with a large job's counts, counts of both (``doc/http-api.md``)."""
    if NODES_HEADER in first.headers or NODES_HEADER in second.headers:
        return _summed(first.headers, second.headers)
    out = {}
    for key in set(first.headers) | set(second.headers):
        if not key.lower().startswith('x-nexe-'):
            continue
        a, b = first.headers.get(key), second.headers.get(key)
        if key.lower() == 'x-nexe-cdr-line' and a and b:
            (ta, _, ra), (tb, _, rb) = a.partition(', '), b.partition(', ')
            out[key] = f'{float(ta) + float(tb):.3f}, {ra}, {rb}'
        elif key.lower() == 'x-nexe-truncated':
            out[key] = 'true'
        else:
            out[key] = ','.join(v for v in (a, b) if v is not None)
    return out


def _tally(headers) -> tuple[Tally, float]:
    """A job's counts as a large job's summary headers give them, and its seconds:
    read back from those headers, or counted from a small job's per-node columns
    (the merge node's counted as :class:`Tally` counts a node)."""
    tally = Tally()
    if NODES_HEADER in headers:
        tally.nodes = int(headers[NODES_HEADER])
        tally.failed = int(headers.get('X-Nexe-Failed', 0))
        tally.statuses.update(_pairs(headers.get('X-Nexe-Status-Counts', ''), str))
        tally.retcodes.update(_pairs(headers.get('X-Nexe-Retcode-Counts', ''), int))
        secs, _, rest = headers['X-Nexe-Cdr-Total'].partition(', ')
        tally.totals = [int(n) for n in rest.split()]
        _count_dropped(tally, headers.get(DROPPED, ''), summary=True)
        return tally, float(secs)
    statuses = [s.strip() for s in headers.get('X-Nexe-Status', '').split(',')]
    codes = [c.strip() for c in headers.get('X-Nexe-Retcode', '').split(',')]
    cdr = headers.get('X-Nexe-Cdr-Line', '0').split(', ')
    tally.nodes = len(statuses)
    tally.failed = sum(s != 'ok' or c not in ('', '0')
                       for s, c in zip(statuses, codes, strict=False))
    tally.statuses.update(statuses)
    tally.retcodes.update(int(c) for c in codes if c)
    tally.totals = [sum(int(n.split()[i]) for n in cdr[2::2]) for i in range(4)]
    _count_dropped(tally, headers.get(DROPPED, ''), summary=False)
    return tally, float(cdr[0])


def _count_dropped(tally: Tally, text: str, summary: bool) -> None:
    """``X-Nexe-Dropped`` (``text``) counted into ``tally``: a merged answer said
    nothing of the bytes lost or the outputs not stored.  A ``summary``'s entries are
    counts (``3 nodes: 36 bytes ...``, ``2 outputs not stored ...``), else one a node
    (``map-1: 12 bytes ...``, ``map-1: out not stored (...)``)."""
    for entry in filter(None, (e.strip() for e in text.split(','))):
        if entry.endswith(UNDECLARED):
            who, _, what = entry.rpartition(': ')
            tally.dropped[0] += int(who.split()[0]) if summary else 1
            tally.dropped[1] += int(what.split()[0])
        elif entry.endswith(UNDER_MIN):
            tally.unstored += int(entry.split()[0])
        elif ' not stored (' in entry:
            tally.unstored += 1


def _pairs(text: str, kind: type) -> dict:
    """``<value> <count>, ...`` (a summary header's counts) as {value: count}."""
    pairs = (entry.strip().rpartition(' ') for entry in text.split(',') if entry.strip())
    return {kind(v): int(n) for v, _, n in pairs}


def _summed(first, second) -> dict[str, str]:
    """Two jobs' ``X-Nexe-*`` headers as one large job's counts (:class:`Tally`'s form)."""
    (tally, secs), (more, more_secs) = _tally(first), _tally(second)
    tally += more
    out = tally.headers(secs + more_secs)
    errors = [e for e in (first.get('X-Nexe-Error'), second.get('X-Nexe-Error')) if e]
    if errors:
        out['X-Nexe-Error'] = ', '.join(errors)
    if 'X-Nexe-Truncated' in first or 'X-Nexe-Truncated' in second:
        out['X-Nexe-Truncated'] = 'true'
    return out


def _failed_exit(resp: Response) -> str | None:
    """``<node>: exit <code>`` of the first node that exited with a failure code (of a
    job over more than 1,000 objects, answered with counts: ``<n> nodes: exit <code>``)."""
    counts = resp.headers.get('X-Nexe-Retcode-Counts')
    if counts is not None:
        for entry in counts.split(','):
            code, _, many = entry.strip().partition(' ')
            if code not in ('', '0'):
                return f'{many} nodes: exit {code}'
        return None
    names = resp.headers.get('X-Nexe-System', '').split(',')
    codes = resp.headers.get('X-Nexe-Retcode', '').split(',')
    for name, code in zip(names, codes, strict=False):
        if code.strip() not in ('', '0'):
            return f'{name.strip()}: exit {code.strip()}'
    return None


def _body(caller: Caller, account: str) -> bytes:
    """The request's JSON: its body, or the object ``X-Zerovm-Source`` names."""
    req = caller.req
    too_large = HTTPRequestEntityTooLarge(body=f'the query is larger than zerovm_maxconfig '
                                               f'({caller.config.max_config} bytes)\n')
    source = sources.source_path(req, account)
    if source is None:
        if (req.content_length or 0) > caller.config.max_config:
            raise too_large
        body = req.body_file.read(caller.config.max_config + 1)
    else:
        body = sources.read_bounded(caller.read('GET', source), caller.config.max_config)
    if len(body) > caller.config.max_config:
        raise too_large
    return body


def respond(caller: Caller, execute: Callable[[Launch], Response], version: str,
            account: str, container: str | None, obj: str | None) -> Response:
    """Answer a ``sql/1.0`` request (swob HTTP exceptions for the caller's mistakes);
    ``execute`` runs one job as the caller.

    The caller must be allowed to run jobs in ``account`` (401/403) before anything
    else: the query's body or stored source, a listing or an object's first bytes are
    read as the caller, and reading them for one who may not run the query would
    answer (``explain``, an error naming a column) from data the query never ran on."""
    req = caller.req
    caller.authorize('POST', f'/{version}/{account}', None)
    if req.method != 'POST':
        raise HTTPMethodNotAllowed(body=f'{VERSION}: POST the query\n', headers={'Allow': 'POST'})
    if container is not None:
        raise HTTPBadRequest(body=f'{VERSION}: POST to the account (/{version}/{account}); '
                                  'the query names its objects\n')
    if deferred.mode(req) == 'always':     # silently answered in the response before
        raise HTTPBadRequest(body=f'{VERSION} answers in the response, not deferred: '
                                  f'{deferred.HEADER}: always is for jobs (a long query can '
                                  'store its answer with "output")\n')
    if IMAGE not in caller.config.system_images:
        raise HTTPNotImplemented(body=f'{VERSION} needs the system image {IMAGE}, which this '
                                      'cluster does not have (zvm-sysimages build)\n')
    try:
        spec = planner.parse_request(_body(caller, account))
        query = planner.parse_query(spec.query)
        output = None
        if spec.output is not None:
            try:
                output = jobs.parse_location(spec.output, account)
            except jobs.JobError as e:
                raise SqlError(f'"output": {e}') from None
            if output.obj is None:
                raise SqlError(f'"output": {output} names a container, not an object')
        try:
            source = jobs.parse_location(query.source, account)
        except jobs.JobError as e:
            raise SqlError(f'query: FROM {e}') from None
        if source.obj is None:
            raise SqlError(f'query: FROM {source} names a container: name its objects '
                           f'({source}/* for all)')
        objects = _objects(caller, source)
        if output in objects:           # stored over its data once the nodes had read it
            raise SqlError(f'"output": {output} is one of the objects the query reads: the '
                           'answer would replace it; name another object')
        try:
            fmt, delimiter = _input_format(spec.input, objects[0].obj)
        except SqlError:
            if not source.wildcard:         # a missing object: a 404, not its format
                _head(caller, source)
            raise
        _one_format(spec.input, objects, (fmt, delimiter))
        has_header = fmt == 'csv' and spec.input.header
        columns = spec.input.columns
        if columns is None:
            for path in objects[:HEAD_TRIES]:
                head = _head(caller, path)
                if head.strip():
                    columns = _columns(head, fmt, delimiter, has_header, path)
                    break
            else:
                tried = min(len(objects), HEAD_TRIES)
                empty = (f'{objects[0]} is empty' if tried == 1 else
                         f'the first {tried} objects of {source} are empty')
                raise SqlError(f'{empty}: say "input": {{"columns": [...]}}')
        plan = planner.plan(query, columns, len(objects), merged=spec.input.skip_bad,
                            fmt=None if spec.input.columns else fmt)
        if spec.format == 'json' and len({c.lower() for c in plan.result_columns}) \
                < len(plan.result_columns):
            raise SqlError('"format": "json" needs distinct result column names: name them '
                           'with AS')
        job = build_jobs(plan, source, fmt, delimiter, has_header, spec.format, spec.header,
                         output, spec.engine, has_header and spec.input.columns is None,
                         spec.input.skip_bad)
    except SqlError as e:
        raise HTTPBadRequest(body=f'{e}\n') from None
    headers = {'X-Sql-Plan': plan.mode, 'X-Sql-Objects': str(len(objects)),
               'X-Sql-Plan-Reason': header_text(plan.reason)}
    if spec.explain:
        body = json.dumps({**plan.to_dict(), 'objects': len(objects), 'input_format': fmt,
                           'jobs': job}, indent=1).encode() + b'\n'     # a shell's line
        return Response(status=200, body=body, headers=headers,
                        content_type='application/json')
    with hangup.stop_on_hangup(req.environ, 'the query'):   # Ctrl-C frees the workers
        first = resp = _run(execute, Launch(json.dumps(job[0]).encode()))
        if resp.status_int == 200 and len(job) > 1:     # skip_bad: never one job
            partials = _spooled(first)
            try:
                if spec.input.skip_bad:
                    headers.update(skipped_headers(skipped(_notes(partials.file))))
                resp = _run(execute, Launch(json.dumps(job[1]).encode(), input=partials))
            finally:
                partials.file.close()
            joined = _joined(first, resp)
            for key in [k for k in resp.headers if k.lower().startswith('x-nexe-')]:
                del resp.headers[key]
            resp.headers.update(joined)
    resp.headers.update(headers)
    return resp


SKIPPED = b'#skipped\t'         # a node's note: #skipped<TAB>count<TAB>object<TAB>first
NOTE_MAX = 1 << 16              # bytes of a note at most (sqlnode's are < 9 KiB)
NOTES_CHUNK = 1 << 20           # bytes of the partial rows searched for notes at once


def _spooled(resp: Response) -> Input:
    """``resp``'s body, the nodes' partial rows, in a file spooled to the proxy's disk a
    chunk at a time: as large as a job's outputs may be (``zerovm_job_maxoutput``),
    read whole it was held in the proxy's memory, twice."""
    return spool(resp.app_iter if resp.app_iter is not None else [resp.body])


def _notes(f) -> bytes:
    """The notes among the partial rows in file ``f`` (:func:`skipped` reads them): each
    a line starting with :data:`SKIPPED`, of at most :data:`NOTE_MAX` bytes, found by
    ``find`` in chunks of :data:`NOTES_CHUNK` bytes (a readline per row ran for seconds
    over many short rows, in the proxy's event loop); ``f`` is left at its start."""
    mark = b'\n' + SKIPPED
    notes, buf, eof = [], b'\n', False     # the file's start is a line's start
    while not eof:
        chunk = f.read(NOTES_CHUNK)
        eof, buf, at = not chunk, buf + chunk, 0
        while (hit := buf.find(mark, at)) >= 0:
            end = buf.find(b'\n', hit + 1, hit + 1 + NOTE_MAX)
            if end < 0:
                if not eof and len(buf) - hit - 1 < NOTE_MAX:
                    break                   # its end is in the next chunk
                end = min(len(buf), hit + 1 + NOTE_MAX) - 1
            notes.append(buf[hit + 1:end + 1])
            at = end                        # its newline may start the next note
        else:
            hit = max(at, len(buf) - len(mark) + 1)     # a mark cut at the chunk's edge
        buf = buf[hit:]
    f.seek(0)
    return b''.join(notes)


_PARTIAL_ESCAPE = re.compile(rb'\\(.)')
_PARTIAL_CHARS = {b't': b'\t', b'n': b'\n', b'r': b'\r'}
SKIPPED_DETAIL = 4096           # bytes of X-Sql-Skipped-Detail at most (a header)


def skipped(partials: bytes) -> list[tuple[str, int, str]]:
    """(object, records skipped, the first: ``line <n>: <what>``) of each node that
    skipped malformed records (``--skip-bad``), in node order: the notes among the
    partial rows (no row starts with ``#``)."""
    def text(raw: bytes) -> str:
        return _PARTIAL_ESCAPE.sub(lambda m: _PARTIAL_CHARS.get(m.group(1), m.group(1)),
                                   raw).decode('utf-8', 'replace')
    found, at = [], 0
    while True:
        if not partials.startswith(SKIPPED, at):
            at = partials.find(b'\n' + SKIPPED, at)
            if at < 0:
                return found
            at += 1
        end = partials.find(b'\n', at)
        if end < 0:                    # the last note without its line end
            end = len(partials)
        count, name, first = partials[at + len(SKIPPED):end].split(b'\t')
        found.append((text(name), int(count), text(first)))
        at = end + 1


def skipped_headers(notes: list[tuple[str, int, str]]) -> dict[str, str]:
    """``X-Sql-Skipped`` (records in all), ``X-Sql-Skipped-Objects`` (objects with
    any) and ``X-Sql-Skipped-Detail``: a JSON list of [object, records, the first], in
    object order, as many as fit in :data:`SKIPPED_DETAIL` bytes."""
    detail, size = [], 2
    for note in notes:
        size += len(json.dumps(list(note))) + 2
        if size > SKIPPED_DETAIL:
            break
        detail.append(list(note))
    return {'X-Sql-Skipped': str(sum(n for _, n, _ in notes)),
            'X-Sql-Skipped-Objects': str(len(notes)),
            'X-Sql-Skipped-Detail': json.dumps(detail)}


def _run(execute: Callable[[Launch], Response], launch: Launch) -> Response:
    """Run one job; a node that exited with a failure code makes it a 422."""
    resp = execute(launch)
    failed = _failed_exit(resp) if resp.status_int == 200 else None
    if failed:
        resp = HTTPUnprocessableEntity(body=f'{failed}: the query failed\n',
                                       headers={k: v for k, v in resp.headers.items()
                                                if k.lower().startswith('x-nexe-')})
    return resp

"""The ``zc`` command (``doc/client.md``).

    zc [swift auth options] COMMAND ...
    zc run JOB.json|APP.zapp [--json] [-q]   (a zapp also takes --on and --out)
    zc run PROGRAM|--script FILE [--on URL] [--out URL] [--args ARGS] [--as stdin|input]
    zc run ... --engine auto|native|emulated   every node's engine
    zc run ... --split DIR                 each node's output to DIR/<node>
    zc run ... --progress                  deferred, its progress shown as it runs
    zc submit ...same as run...            prints the job id (deferred)
    zc status ID [--json] | wait ID [--split DIR] | result ID [--split DIR]
    zc new APP | bundle [DIR]
    zc deploy APP.zapp [--to URL] [--content-type TYPE] [--endpoint CONTAINER]
    zc open URL [--param K=V] [--source URL]
    zc validate PROGRAM
    zc local run ...same as run... [--map swift://~/C=DIR] [--stdin FILE]
    zc sql QUERY|- [--format csv|json] [--no-header] [--explain] [--out URL] [--engine E]
           [--input-format csv|jsonl] [--columns A,B] [--delimiter C] [--no-input-header]

Auth options and variables are the ``swift`` command's (``zerocloud.client.
session``).  Exit status: 0 when every node ended ``ok`` with exit code 0;
1 when a node failed or the server refused the request or a query (its
whole error body is printed); 2 for a usage error; 3 when a deferred
result is not there yet; 130 when Ctrl-C cancelled.
"""

from __future__ import annotations

from zvm_core.interrupt import quiet_imports

with quiet_imports('zc'):   # Ctrl-C as the command is starting: exit 130
    import argparse
    import contextlib
    import difflib
    import json
    import logging
    import os
    import re
    import shlex
    import signal
    import stat
    import sys
    import threading
    import time
    import uuid
    from collections import deque
    from collections.abc import Callable, Iterable, Iterator
    from concurrent.futures import Future, ThreadPoolExecutor
    from http.client import HTTPException
    from pathlib import Path
    from typing import NoReturn
    from urllib.parse import quote, urlencode, urlparse

    import requests
    from swiftclient import ClientException
    from swiftclient.client import logger_settings
    from swiftclient.service import process_options
    from swiftclient.shell import add_default_args

    from zerocloud.answer_format import DEFERRED_HEADER, REPORT_HEADER, SUMMARY_NODES
    from zerocloud.client import display, jobs, local, report, zapps
    from zerocloud.client.session import Answer, ServerError, Session
    from zerocloud.job import JobError, SwiftPath, is_swift_url, parse_location
    from zerocloud.jobnames import HEADERS_SUFFIX, STATE_SUFFIX
    from zerocloud.jobnames import HOME as RESULTS
    from zerocloud.jobnames import NAME as JOB_NAME
    from zerocloud.sql import formats as sql_formats
    from zvm_core import stdout
    from zvm_core.engines import CHOICES
    from zvm_core.limits import bad_env_name
    from zvm_core.version import add_version

EXIT_FAILED, EXIT_USAGE, EXIT_PENDING, EXIT_CANCELLED = 1, 2, 3, 130
POLL_START, POLL_MAX = 0.2, 2.0
CANCEL_WAIT = 60.0              # seconds zc cancel waits for the job to stop
CANCEL_BEATS = 3                # heartbeats without a state write: a job's proxy is gone
CANCELLED = {                   # what Ctrl-C did, by command
    'run': ': the connection is closed, so the server stops the job',
    'open': ': the connection is closed, so the server stops the job',
    'submit': ': a deferred job goes on once started',
    'wait': ': stopped waiting; the deferred job goes on',
    'cancel': ': stopped waiting; zc status says whether the job stopped',
    'sql': ': the connection is closed, so the server stops the query',
}
ENDPOINT_HEADER = 'X-Container-Meta-Rest-Endpoint'


class Usage(Exception):
    """A mistake on the command line."""


class OutputClosed(Exception):
    """The reader of stdout went away (``zc run ... | head``)."""


class _Output:
    """stdout, whose reader closing it ends zc quietly: its BrokenPipeError is a
    ConnectionError, which said ``no server answers`` of a cluster that did."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        """All of ``data``: a buffered stream whose pipe broke during a large write
        returns the part it wrote (a MiB piece of ``zc local run``'s output)."""
        view, done = memoryview(data), 0
        try:
            while done < len(view):
                done += self._stream.write(view[done:])
        except BrokenPipeError:
            raise OutputClosed from None
        return done

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise OutputClosed from None

    def isatty(self) -> bool:
        return self._stream.isatty()


class _Beats:
    """Whether the proxy running a deferred job still writes its state, as ``zc cancel``
    of a job reported lost sees it: the state's ``updated`` changes every heartbeat; the
    state gone, or unchanged for CANCEL_BEATS heartbeats by this clock (the proxy's
    may differ), the proxy is gone and the job's own result will not come."""

    def __init__(self) -> None:
        self.updated: object = None
        self.since = time.monotonic()

    def gone(self, state: dict | None) -> str:
        """Why the proxy is gone, '' while it may still be running the job."""
        if state is None:
            return 'its state is gone'
        now = time.monotonic()
        if state.get('updated') != self.updated:
            self.updated, self.since = state.get('updated'), now
            return ''
        beat = state.get('heartbeat')
        if not isinstance(beat, int | float) or beat <= 0:     # not a state zc knows
            beat = CANCEL_WAIT / CANCEL_BEATS
        quiet = now - self.since
        if quiet < CANCEL_BEATS * beat:
            return ''
        return f'its proxy has not written its state for {quiet:.0f} s ({CANCEL_BEATS} heartbeats)'


def _env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition('=')
    if not sep or not key:
        raise argparse.ArgumentTypeError(f'expected K=V, got {text!r}')
    return key, value


def _env_var(text: str) -> tuple[str, str]:
    """``--env K=V``: K as a job's exec.env takes it (the cluster would refuse the job)."""
    key, value = _env(text)
    if (bad := bad_env_name(key)) is not None:
        raise argparse.ArgumentTypeError(bad)
    return key, value


def _missed_input(nodes: list[report.NodeResult]) -> bool:
    """A failed node whose error or stderr says ``/dev/input`` is missing: a program that
    reads /dev/input, run with the object on stdin (``--as stdin``, the default)."""
    return any(node.failed and '/dev/input' in line and 'No such file' in line
               for node in nodes for line in f'{node.error}\n{node.stderr}'.splitlines())


PY_TRACEBACK = 'Traceback (most recent call last):'
NO_MODULE = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")


def _failed_elsewise(nodes: list[report.NodeResult]) -> bool:
    """Did every failed node say why, with a Python traceback?  A Python script missing
    ``/dev/input`` names it (:func:`_missed_input`); one that failed otherwise (an import,
    a ``KeyError``) did not fail for want of it."""
    return all(PY_TRACEBACK in node.stderr for node in nodes if node.failed)


def _modules_left_here(nodes: list[report.NodeResult], script: str | None) -> list[str]:
    """The modules a failed ``--script`` node could not import that are files beside
    the script on this machine: ``--script`` sends the script alone."""
    if script is None:
        return []
    here = Path(script).parent
    missing = {found[1].split('.')[0] for node in nodes if node.failed
               for found in NO_MODULE.finditer(node.stderr)}
    return sorted(name for name in missing
                  if (here / f'{name}.py').is_file() or (here / name).is_dir())


def _names_input(script: str | None) -> bool:
    """Does the ``--script`` source name ``/dev/input``?  Then a failed node may have
    missed it: Lua's ``io.open`` of it gives nil, and the error, ``attempt to index a nil
    value``, names no file for :func:`_missed_input`."""
    try:
        return script is not None and b'/dev/input' in Path(script).read_bytes()
    except OSError:
        return False


def _part_ends(result: report.JobResult) -> list[tuple[int, str]]:
    """Where each node's part of the answer's body ends, ``(offset, node)``, but the
    last: those of parts not empty; none when the answer does not give their sizes."""
    sizes = result.said_sizes()
    if sizes is None:
        return []
    ends, at = [], 0
    for node, size in zip(result.nodes, sizes, strict=True):
        if size:
            at += size
            ends.append((at, node.name))
    return ends[:-1]


def _around_ends(result: report.JobResult) -> list[int]:
    """The offsets of the bytes around each end of :func:`_part_ends`, in order."""
    return sorted({offset for at, _ in _part_ends(result) for offset in (at - 1, at)})


TEXT = frozenset(range(0x20, 0x7f))     # a byte of a line of text (not a newline)


def _run_together(ends: list[tuple[int, str]], around: dict[int, int]) -> str:
    """A note naming the nodes whose text output ends without a newline, so that the
    next node's runs on in its last line (``3`` and ``12`` read ``312``); ``around``:
    the body's bytes at the offsets of :func:`_around_ends`."""
    names = [name for at, name in ends
             if around.get(at - 1) in TEXT and around.get(at) in TEXT]
    if not names:
        return ''
    shown = ', '.join(names[:3]) + (f' and {len(names) - 3} more' if len(names) > 3 else '')
    return (f'zc: note: the output of {shown} does not end with a newline: the next '
            "node's runs on in its last line (--split DIR gives each node its own file)\n")


AT_ONCE = 16        # requests at a time fetching (or deleting) a large job's stored stdouts


def _in_turn(work: Callable, items: Iterable, width: int = AT_ONCE) -> Iterator:
    """``work(item)`` for each item, ``width`` at a time in threads, its results in the
    items' order: at most ``width`` of them held (a node's stdout is up to a GiB)."""
    pool = ThreadPoolExecutor(width)
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= width:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:        # Ctrl-C: what was not started is not; what was is not waited for
        pool.shutdown(wait=False, cancel_futures=True)


def _unsplit_note(result: report.JobResult, where: Path) -> str:
    """Why ``--split`` could not split this answer, and, for a large job (answered
    without per-node sizes), how to get a file per node instead."""
    if result.summary is None:
        return ('zc: --split: the answer does not say which bytes each node wrote '
                '(X-Nexe-Body-Bytes): all of it on stdout\n')
    return (f'zc: --split: a job of more than {SUMMARY_NODES:,} nodes is answered without '
            'each node\'s size (X-Nexe-Body-Bytes), so its output cannot be split: all of '
            'it is on stdout. For a file per node, run it again with --out '
            '\'swift://~/res/*.out\' instead of --split (each node\'s stdout stored as its '
            'own object; in a job file, a "path" on each stdout device), then: swift '
            f'download res -D {where}\n')


def _split_dir(text: str) -> Path:
    """``--split DIR``: refused before the job runs if it cannot be a directory (its
    output would be lost after the run)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f'{text} is a file, not a directory: name a new or '
                                         'existing directory')
    there = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not there.is_dir():
        raise argparse.ArgumentTypeError(f'{text} cannot be made: {there} is a file, not a '
                                         'directory')
    if not os.access(there, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f'{text}: {there} is not writable by you: name a '
                                         'directory you can write in')
    return path


def _job_options(p: argparse.ArgumentParser) -> None:
    p.add_argument('target', nargs='?', metavar='JOB|PROGRAM',
                   help='a job description (.json), a zapp, a program (local file or '
                        'swift://), or nothing with --script')
    p.add_argument('--script', metavar='FILE', help='a Python (.py) or Lua (.lua) script')
    p.add_argument('--interpreter', metavar='URL',
                   help='program that runs --script (default by extension)')
    p.add_argument('--on', metavar='URL', help="objects to run on, e.g. 'swift://~/c/*.csv'")
    p.add_argument('--out', metavar='URL', help="store stdout here, e.g. 'swift://~/c/*.out'")
    p.add_argument('--args', default='',
                   help="arguments of the program or script (one starting with -: --args=-n)")
    p.add_argument('--as', dest='device', default='stdin', choices=jobs.DATA_DEVICES,
                   help='device that reads --on (stdin: sequential, input: random access)')
    p.add_argument('--env', type=_env_var, action='append', default=[], metavar='K=V')
    p.add_argument('--name', help='name of the nodes (default: the program\'s file name)')
    p.add_argument('--engine', choices=CHOICES,
                   help='engine of every node (its "engine" in the job; default: what the job '
                        'says, else the object servers\' choice)')
    p.add_argument('--json', action='store_true', help="print the job's JSON report")


# The swift options that name an account, and those of a token (that stands for one).
# Each defaults to its variable (-U to ST_USER, --os-username to OS_USERNAME...), read
# when the session is made, so that one given on the command line is known: an account
# named there wins over OS_STORAGE_URL and OS_AUTH_TOKEN left by `eval "$(swift auth)"`
# (swift itself lets them win, and acts as their account)
ACCOUNT_OPTIONS = ('auth', 'user', 'key', 'os_auth_url', 'os_username', 'os_user_id',
                   'os_password', 'os_tenant_id', 'os_tenant_name', 'os_project_id',
                   'os_project_name', 'os_application_credential_id',
                   'os_application_credential_secret')
TOKEN_OPTIONS = ('os_storage_url', 'os_auth_token')


# What a storage URL's path is: the API version Swift answers (``swift auth`` prints
# it so), then the account; any other path gets Swift's HTML 400 page, which names neither
STORAGE_PATH = re.compile(r'/v1(\.0)?/[^/]+/?')


def _check_storage_url(url: str | None) -> None:
    """A storage URL set by hand (OS_STORAGE_URL, --os-storage-url) that cannot be one,
    refused before any request with what one looks like."""
    if url and not (urlparse(url).scheme in ('http', 'https') and
                    STORAGE_PATH.fullmatch(urlparse(url).path)):
        raise Usage(f'the storage URL {url!r} (OS_STORAGE_URL or --os-storage-url) is not '
                    "one: it looks like http://host:port/v1/AUTH_account (as 'swift auth' "
                    'prints it)')


def _check_auth_url(url: str | None) -> None:
    """An auth URL without its scheme (``127.0.0.1:8080/auth/v1.0``), refused before
    any request with the one meant: swiftclient says only 'Unsupported scheme ""'."""
    if url and urlparse(url).scheme not in ('http', 'https'):
        raise Usage(f'the auth URL {url!r} (ST_AUTH, OS_AUTH_URL or -A) is not one: it '
                    f"starts with http:// or https:// (did you mean 'http://"
                    f"{url.split('://', 1)[-1].lstrip('/')}'?)")


V1_AUTH_PATH = re.compile(r'/auth/v1(\.0)?/?')   # tempauth's (the local cluster's)


def _check_auth_version(options: dict) -> None:
    """A v1 auth URL given as OS_AUTH_URL (--os-auth-url) with OS_USERNAME and
    OS_PASSWORD: swiftclient reads those as Keystone's and says only that Keystone
    needs python-keystoneclient, which would not log in to a v1 URL either."""
    url = options['auth'] or ''
    if options['auth_version'] in ('2.0', '3') and \
            V1_AUTH_PATH.fullmatch(urlparse(url).path):
        raise Usage(f'{url} is a v1 auth URL, but OS_AUTH_URL, OS_USERNAME and OS_PASSWORD '
                    f'(--os-*) ask for Keystone (auth version {options["auth_version"]}): set '
                    'ST_AUTH, ST_USER and ST_KEY instead (zerocloud-devcluster env prints '
                    "the local cluster's), or add OS_AUTH_TYPE=v1password")


def _auth_options(opts: argparse.Namespace) -> dict:
    """The swift options of ``opts``, those not given filled from their variables."""
    options = dict(vars(opts))
    named = any(options[dest] for dest in ACCOUNT_OPTIONS)
    if named and options['os_auth_token']:
        raise Usage('give either --os-auth-token or an account (-A, -U, -K, --os-username...), '
                    'not both')
    for dest in ACCOUNT_OPTIONS + TOKEN_OPTIONS * (not named):
        if options[dest] is None:
            options[dest] = os.environ.get(f'ST_{dest.upper()}' if dest in ('auth', 'user', 'key')
                                           else dest.upper())
    return options


class _Parser(argparse.ArgumentParser):
    """argparse's, whose 'argument --args: expected one argument' (of ``--args
    --verbose``: a value starting with ``-`` is read as an option) says how to write it;
    its commands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        if message == 'argument --args: expected one argument':
            message += (": a value starting with - is written --args=--verbose (or, "
                        "with a space, --args '-n 3')")
        super().error(message)


_BARE_ID = re.compile(r'(?:job-)?([0-9a-f]{32})', re.IGNORECASE)


def _job_id(text: str) -> str:
    """A job id as given, ``<32 hex digits>`` being ``job-<32 hex digits>`` (also in a
    container or a URL), in any case: the id copied without its prefix (a uuid, as a log
    or a listing's ``cut`` may show it) or in capitals was refused, though it names one
    job only (ids are lower-case)."""
    head, slash, last = text.rpartition('/')
    bare = _BARE_ID.fullmatch(last)
    return f'{head}{slash}job-{bare[1].lower()}' if bare else text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog='zc', usage='zc [swift auth options] COMMAND [options]',
        description='Run jobs, scripts and apps on ZeroCloud.',
        epilog='Auth: the swift command\'s options and ST_*/OS_* variables '
               '(zc --os-help lists them).')
    add_default_args(parser)
    add_version(parser)
    parser.set_defaults(**dict.fromkeys(ACCOUNT_OPTIONS + TOKEN_OPTIONS))   # see _auth_options
    sub = parser.add_subparsers(dest='command', metavar='COMMAND',
                                prog='zc [swift auth options]')     # usage: "zc ... run"
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument('--quiet', '-q', dest='quiet_cmd', action='store_true',
                       help='say nothing but what failed: no progress, no table, no '
                            "account of what was done (zc -q COMMAND: the same)")
    quiet.add_argument('--verbose', '-v', dest='verbose_cmd', action='count', default=0,
                       help="taken and ignored, as before the command (swift's): zc "
                            "shows every node already (--json: its whole report)")
    split = argparse.ArgumentParser(add_help=False)
    split.add_argument('--split', metavar='DIR', type=_split_dir,
                       help="write each node's output to DIR/<node> instead of stdout")
    p = sub.add_parser('run', parents=[quiet, split], help='run a job and show every node')
    _job_options(p)
    p.add_argument('--progress', action='store_true',
                   help='run it deferred, to show nodes done/failed/total as it runs '
                        '(Ctrl-C then stops following, not the job)')
    p = sub.add_parser('submit', parents=[quiet], help='start a job deferred; print its id')
    _job_options(p)
    for name, text in (('status', 'is a deferred job done?'),
                       ('wait', 'wait for a deferred job, then show its result'),
                       ('result', "a deferred job's result"),
                       ('cancel', 'stop a running deferred job; say what had ended')):
        p = sub.add_parser(name, parents=[quiet] + [split] * (name in ('wait', 'result')),
                           help=text)
        p.add_argument('id', type=_job_id,
                       help='what submit printed (job-..., c/job-... or swift://)')
        if name == 'cancel':
            continue
        p.add_argument('--json', action='store_true',
                       help="the job's JSON report" if name != 'status' else
                       'the JSON of the progress, or of the result when done')
        if name == 'wait':
            p.add_argument('--timeout', type=float, default=None, metavar='SECONDS',
                           dest='wait_timeout',     # not swift's -T/--timeout (HTTP)
                           help='give up after this long (exit status 3)')
    p = sub.add_parser('new', parents=[quiet], help='write the skeleton of an app (zapp)')
    p.add_argument('name')
    p = sub.add_parser('bundle', parents=[quiet],
                       help="check an app's programs locally and build its zapp")
    p.add_argument('dir', nargs='?', default='.')
    p.add_argument('-o', '--output', metavar='FILE')
    p = sub.add_parser('deploy', parents=[quiet],
                       help='upload a zapp; register it for a content type')
    p.add_argument('zapp')
    p.add_argument('--to', metavar='URL', help='default: swift://~/apps/<name>.zapp')
    p.add_argument('--content-type', metavar='TYPE',
                   help='open objects of this type with the app')
    p.add_argument('--endpoint', metavar='CONTAINER',
                   help='serve /api/<account>/CONTAINER/... with the app (created if needed)')
    p = sub.add_parser('open', parents=[quiet], help='run the app of an object on it (GET)')
    p.add_argument('url', help='swift://~/c/o')
    p.add_argument('--param', type=_env, action='append', default=[], metavar='K=V',
                   help='query parameter of the app')
    p.add_argument('--source', metavar='URL', help='run this app over the object instead')
    p = sub.add_parser('validate', parents=[quiet],
                       help='check a program as the object servers will')
    p.add_argument('program', help='a local file, or swift://~/c/o (its stored verdict, else '
                                     'checked here)')
    p = sub.add_parser('sql', parents=[quiet], help='run one SQL query over objects, where they '
                                                     'are stored (doc/sql.md)')
    p.add_argument('query', help="one SELECT ... FROM 'swift://~/c/*.csv' ... ('-': read it "
                                 'from stdin)')
    p.add_argument('--format', choices=sql_formats.FORMATS, default='csv',
                   help='the answer: CSV, or JSON lines (one object per row)')
    p.add_argument('--no-header', action='store_true',
                   help='CSV answer without the first row of column names')
    p.add_argument('--explain', action='store_true',
                   help='print the plan (JSON: the nodes\' and the merge\'s SQL), run nothing')
    p.add_argument('--out', metavar='URL', help='store the answer in this object instead '
                                                '(its container is created if needed)')
    p.add_argument('--engine', choices=CHOICES, help="every node's engine (default: the object "
                                                    "servers' choice)")
    p.add_argument('--input-format', choices=sql_formats.INPUT_FORMATS,
                   help="the objects' format (default: from the first object's name)")
    p.add_argument('--columns', metavar='A,B,...', type=lambda text: text.split(','),
                   help="the objects' column names, in field order (default: read from the "
                        'first object)')
    p.add_argument('--delimiter', metavar='CHAR', type=_delimiter,
                   help=r"CSV objects: the field separator (\t or tab: a TAB)")
    p.add_argument('--no-input-header', action='store_true',
                   help='CSV objects without a header row (columns c1, c2, ... unless --columns)')
    p.add_argument('--skip-bad', action='store_true',
                   help='skip malformed records (wrong number of fields, a line that is not a '
                        'JSON object, text in a column summed) and say how many, instead of '
                        'failing the query')
    p = sub.add_parser('local', help='try a job on this machine (zvm)')
    lsub = p.add_subparsers(dest='local_command', metavar='run', required=True)
    p = lsub.add_parser('run', parents=[quiet], help='run a job, zapp, program or script '
                                                      'here, with --map for its objects')
    _job_options(p)
    p.add_argument('--map', action='append', default=[], metavar='swift://~/C=DIR',
                   help='a container as a local directory (repeatable)')
    p.add_argument('--stdin', metavar='FILE', type=Path,
                   help='what stdin (or input) without a path reads: the object an app '
                        'opens, or a request body')
    return parser


def _media_type(content_type: str) -> str:
    """The type as the server looks its app up: lower case, without parameters
    (``Text/CSV; charset=utf-8`` opens as ``text/csv``); not ``type/subtype``: usage."""
    kind = content_type.partition(';')[0].strip().lower()
    if not re.fullmatch(r"[a-z0-9][\w!#$&^.+-]*/[a-z0-9][\w!#$&^.+-]*", kind):
        raise Usage(f'--content-type takes a media type (type/subtype, e.g. text/x-wordy), '
                    f'not {content_type!r}')
    return kind


def _delimiter(text: str) -> str:
    """--delimiter's character: '\\t' and 'tab' are a TAB, which a shell's quotes do not
    make ('\\t' was sent as two characters, and refused)."""
    return '\t' if text in ('\\t', 'tab') else text


# The request's keys the server's refusals name, and the options of zc sql that set them
SQL_KEYS = {b'"input": {"format": "csv"} or "jsonl"': b'--input-format csv (or jsonl)',
            b'"input": {"columns": [...]}': b'--columns A,B,...',
            b'"input"."columns"': b'--columns', b'"input"."delimiter"': b'--delimiter',
            b'"skip_bad"': b'--skip-bad', b'"output": ': b'--out '}
# A node's error that one malformed record failed the query (doc/sql.md, "Statuses")
BAD_RECORD = re.compile(r'sqlite: load: .*: line \d+: '
                        r'(record \d+|not a JSON object|malformed JSON)')
# what a node says of a record that looks read with the wrong delimiter (sqlnode.c's
# delimiter_hint): --skip-bad would skip every record of such an object
WRONG_DELIMITER = '"input"."delimiter"'
# ... and of a record with another number of fields than the columns
FIELD_COUNT = re.compile(r'line \d+: record \d+ has (more than )?\d+ fields')


def _as_options(answer: bytes) -> bytes:
    """The server's refusal of a query, its request keys said as zc sql's options."""
    for key, option in SQL_KEYS.items():
        answer = answer.replace(key, option)
    return answer


class Client:
    """One ``zc`` invocation: options, the session (made when first needed), output."""

    def __init__(self, opts: argparse.Namespace, out=None, err=None, stdin=None) -> None:
        self.opts = opts
        self.out = _Output(out or sys.stdout.buffer)
        self.err = err or sys.stderr
        self.stdin = stdin or sys.stdin
        self._session: Session | None = None
        self.quiet = opts.verbose == 0 or getattr(opts, 'quiet_cmd', False)

    @property
    def session(self) -> Session:
        if self._session is None:
            options = _auth_options(self.opts)
            process_options(options)
            os_options = options['os_options']
            token = os_options['object_storage_url'] and os_options['auth_token']
            password = options['auth'] and options['key'] and (
                options['user'] or os_options['user_id'])
            credential = options['auth'] and os_options['application_credential_id']
            if not (token or password or credential):
                parts = {'the auth URL (ST_AUTH, OS_AUTH_URL or -A)': options['auth'],
                         'the user (ST_USER, OS_USERNAME or -U)': options['user']
                         or os_options['user_id'],
                         'the key (ST_KEY, OS_PASSWORD or -K)': options['key']}
                unset = [what for what, value in parts.items() if not value]
                which = f'{" and ".join(unset)} {"is" if len(unset) == 1 else "are"} not ' \
                    'set; ' if len(unset) < len(parts) else ''       # the others are
                raise Usage(f'no credentials: {which}set ST_AUTH, ST_USER and ST_KEY (or '
                            'OS_AUTH_URL, OS_USERNAME, OS_PASSWORD...; or OS_STORAGE_URL and '
                            'OS_AUTH_TOKEN), or give -A, -U, -K as for the swift command')
            _check_storage_url(os_options['object_storage_url'])
            if not token:
                _check_auth_url(options['auth'])
                _check_auth_version(options)
            self._session = Session(options)
        return self._session

    def say(self, text: str) -> None:
        """What a command did (uploaded, written, valid), on stderr: not with -q, given
        before the command (swift's) or after it (every command's)."""
        if not self.quiet:
            self.err.write(text)

    def progress(self, what: str, extra=lambda: ''):
        """A live status line on a terminal, unless quiet."""
        return contextlib.nullcontext() if self.quiet else display.Progress(what, extra)

    # -- running jobs --------------------------------------------------------------------

    def payload(self, remote: bool = True) -> jobs.Payload:
        """What ``run`` sends (``remote``: also create the container of ``--out``), every
        group on ``--engine`` when it is given."""
        payload = self._payload(remote)
        if self.opts.engine is None:
            return payload
        return jobs.with_engine(payload, self.opts.engine, self.opts.target or self.opts.script)

    def _payload(self, remote: bool) -> jobs.Payload:
        o = self.opts
        made_out = self.made_out if remote else (lambda payload: payload)
        if o.target is None and o.script is None:
            raise Usage('give a job (.json or .zapp), a program, or --script FILE')
        if o.target is not None and o.script is not None:      # it was dropped, unread
            on = f": the objects go with --on '{o.target}'" if \
                is_swift_url(o.target) and o.on is None else ''
            raise Usage(f'give a job, a program or --script FILE, not both ({o.target} and '
                        f'--script {o.script}){on}')
        if getattr(o, 'split', None) is not None and o.out is not None:   # split nothing
            raise Usage(f'--split {o.split} writes each node\'s output to a file here, --out '
                        f'{o.out} stores it as objects instead: give one of them')
        if o.script is None and not is_swift_url(o.target) and \
                not _is_program(o.target):
            payload = jobs.load(o.target)
            if o.on is None and o.out is None:
                return payload
            if payload.content_type != jobs.ZAPP_TYPE:
                raise Usage('--on and --out go with a program, a script or a zapp: a job '
                            'description names its objects itself')
            return made_out(jobs.rebind(payload, o.on, o.out, o.target))
        program = o.target if o.script is None else None
        payload = jobs.build(program, o.script, o.on, o.out, o.args, o.device, dict(o.env),
                             o.interpreter, o.name)
        if remote and o.on is None and _piped(self.stdin):
            self.err.write(f"zc: note: the job's {o.device} is empty: zc does not send this "
                           "machine's stdin (upload the data and give --on swift://~/<container>"
                           "/<object>, or run it here: zc local run ... --stdin FILE)\n")
        return made_out(payload)

    def report_header(self, payload: jobs.Payload) -> dict[str, str]:
        """Ask for the JSON report with --json, or when no output comes back anyway."""
        wanted = self.opts.json or not _has_answer_output(payload.job)
        return {REPORT_HEADER: 'json'} if wanted else {}

    def made_out(self, payload: jobs.Payload) -> jobs.Payload:
        """Create the container of ``--out`` (as ``swift upload`` does)."""
        if self.opts.out is not None:
            out = self.session.location(self.opts.out)
            if out.account == self.session.account and '*' not in out.container:
                self.session.ensure_container(out.container)
        return payload

    def expand(self, job: list) -> tuple[dict[str, str], int]:
        """Node name -> the object it runs on ('' for none), from the job as the proxy
        expands it, and its runs (a node of ``replicate: 2`` runs twice: the answer has
        a value per run); empty when the client cannot tell (the server will say why)."""
        ses = self.session
        try:
            nodes = jobs.nodes(job, ses.account, ses.list_objects, ses.list_containers)
        except (ValueError, ClientException):
            return {}, 0
        found = {}
        for node in nodes:
            path = jobs.node_object(node)
            found[node.name] = '' if path is None else self.show(path)
        return found, sum(node.replicate for node in nodes)

    def short(self, name: str) -> str:
        """An object the server named, as ``c/o`` when it is in your account; a
        ``swift://`` URL (quoted, as in the JSON report) by its name, as ``show``."""
        if is_swift_url(name):
            try:
                return self.show(parse_location(name, ''))
            except JobError:
                return name
        if self._session is not None:
            account = self._session.account
            for prefix in (f'/v1/{account}/', f'/{account}/', f'{account}/'):
                if name.startswith(prefix):
                    return name[len(prefix):]
        return name

    def show(self, path: SwiftPath) -> str:
        """An object by its name (not quoted), as ``c/o`` when it is in your account."""
        if self._session is not None and path.account == self._session.account:
            return path.path[len(path.account) + 2:]
        return 'swift:/' + path.path

    def cmd_run(self) -> int:
        if self.opts.progress:
            return self.run_deferred()
        payload = self.payload()
        objects, runs = self.expand(payload.job)
        spool = self.spooled(payload, runs)
        if spool is not None:
            payload = spool[0]
        headers = self.report_header(payload)
        total = f'{len(objects)} node{"s" * (len(objects) != 1)}' if objects else 'job'
        answer: list[Answer] = []

        def extra() -> str:
            return f'{display.size(answer[0].received)} received' if answer else \
                'waiting for the nodes'
        fetch_failed, deleted = False, set[str]()
        try:
            with self.progress(f'running {total}', extra):
                answer.append(self.session.execute(payload.body, payload.content_type,
                                                   headers))
                result = self.read_answer(answer[0])
            if spool is not None and result.report is not None and not result.failed:
                missed: list[str] = []
                self.write_files(self.fetched(result.report, missed, deleted),
                                 self.opts.split)
                fetch_failed = bool(missed)
        except BaseException:
            if spool is not None:       # Ctrl-C: the job stops before its objects go
                self.session.cancel()
            raise
        finally:
            if spool is not None:
                self.unspool(spool[1], deleted)
        shown = self.show_result(result, objects)
        return EXIT_FAILED if fetch_failed else shown

    def spooled(self, payload: jobs.Payload, runs: int) -> tuple[jobs.Payload, str] | None:
        """``--split`` of a job of more runs (replicas counted, as the answer counts its
        results) than an answer gives each one's size for:
        the job with each node's stdout stored as ``.zvm/split-<hex>/...`` (fetched into
        DIR, then deleted), and that prefix; None for a job answered as it is."""
        if getattr(self.opts, 'split', None) is None or runs <= SUMMARY_NODES:
            return None
        prefix = f'split-{uuid.uuid4().hex}/'
        where = self.opts.target or self.opts.script
        stored = jobs.stdout_to(payload, f'swift://~/{RESULTS}/{prefix}', where)
        if stored is None:
            return None
        self.session.ensure_container(RESULTS)
        return stored, prefix

    def fetched(self, report_json: dict, missed: list[str],
                deleted: set[str]) -> Iterator[tuple[str, bytes]]:
        """Each node's stored stdout (the JSON report names it), read, then deleted
        (its name added to ``deleted``), :data:`AT_ONCE` at a time: a node's replicas
        wrote one object, fetched once. One that cannot be read is said and its node
        added to ``missed``."""
        stored = {}
        for node in report_json.get('nodes') or []:
            for out in node.get('outputs') or []:
                if out.get('device') == 'stdout' and out.get('stored') and \
                        out.get('path') and node.get('name') not in stored:
                    stored[node['name']] = parse_location(out['path'], self.session.account)

        def fetch(name: str) -> tuple[str, bytes | Exception]:
            try:
                data = self.session.get(stored[name])
            except REQUEST_ERRORS as e:
                return name, e
            with contextlib.suppress(*REQUEST_ERRORS):  # left: unspool deletes it
                self.session.delete(stored[name])
                deleted.add(stored[name].obj)
            return name, data
        for name, data in _in_turn(fetch, stored):
            if isinstance(data, Exception):
                self.err.write(f'zc: {name}: its stdout, {self.show(stored[name])}, could '
                               f'not be fetched: {data}\n')
                missed.append(name)
            else:
                yield name, data

    def unspool(self, prefix: str, deleted: set[str]) -> None:
        """Delete what is left of a job's stored stdouts (``.zvm/<prefix>``) but those
        ``deleted`` already (a container listing may name them a while after), as well
        as it can: what could not be is said, with how to delete it."""
        account, left, why = self.session.account, 0, ''

        def delete(name: str) -> Exception | None:
            try:
                self.session.delete(SwiftPath(account, RESULTS, name))
            except REQUEST_ERRORS as e:
                return e
            return None
        try:
            left_over = (name for name in self.session.list_objects(account, RESULTS, prefix)
                         if name not in deleted)
            for error in _in_turn(delete, left_over):
                if error is not None:
                    left, why = left + 1, why or str(error)
        except (*REQUEST_ERRORS, KeyboardInterrupt) as e:    # not all were tried
            left, why = 'some', why or str(e) or 'interrupted'
            if isinstance(e, KeyboardInterrupt):
                self._unspool_note(prefix, left, why)
                raise
        if left:
            self._unspool_note(prefix, left, why)

    def _unspool_note(self, prefix: str, left: int | str, why: str) -> None:
        self.err.write(f'zc: {left} object(s) of this job under {RESULTS}/{prefix} could not '
                       f'be deleted ({why}): swift delete {RESULTS} --prefix {prefix}\n')

    def read_answer(self, answer: Answer) -> report.JobResult:
        """The job's result from ``answer``, its output written to stdout as it comes
        when :meth:`streams` (the result's body then empty)."""
        if not self.streams(answer.status, answer.headers):
            return report.parse(answer.status, answer.headers, answer.read())
        result = report.parse(answer.status, answer.headers, b'')
        self.pass_on(answer, result)
        return result

    def pass_on(self, answer: Answer, result: report.JobResult) -> None:
        """The answer's body to stdout, as it comes (not held: up to a GiB per node),
        and the bytes around each node's part's end, for :func:`_run_together`."""
        wanted = _around_ends(result)
        seen, i = 0, 0
        for chunk in answer.chunks():
            while i < len(wanted) and wanted[i] < seen + len(chunk):
                result.around[wanted[i]] = chunk[wanted[i] - seen]
                i += 1
            seen += len(chunk)
            self.out.write(chunk)
        result.streamed = True

    def streams(self, status: int, headers: dict[str, str]) -> bool:
        """Whether the output of this answer goes to stdout as it comes, not held until
        it ended: a successful job's output (up to a GiB per node) for a file or a pipe;
        on a terminal it would mix with the progress line, and --split needs all of it."""
        content_type = {k.lower(): v for k, v in headers.items()}.get(
            'content-type', '').partition(';')[0].strip()
        return status < 300 and content_type != 'application/json' and \
            not getattr(self.opts, 'json', False) and \
            getattr(self.opts, 'split', None) is None and not self.out.isatty()

    def run_deferred(self) -> int:
        """``run --progress``: submit deferred, follow its state, show the result, then
        delete the stored result (kept when Ctrl-C stops following: zc wait ID)."""
        path, early = self.submit()
        if path is None:
            return early
        self.opts.id = self.job_id(path)
        self.opts.wait_timeout = None
        code = self.cmd_wait()
        for name in (path.obj + HEADERS_SUFFIX, path.obj):
            self.session.delete(SwiftPath(path.account, path.container, name))
        return code

    def show_result(self, result: report.JobResult, objects: dict[str, str]) -> int:
        """The output (unless it was streamed: written already), then the table."""
        for node in result.nodes:
            node.object = self.short(node.object) or objects.get(node.name, '')
        as_json = getattr(self.opts, 'json', False)
        split = getattr(self.opts, 'split', None)
        unsent = 0 if as_json or result.status >= 300 else \
            result.unsent_output(jobs.ANSWER_DEVICES)
        if as_json:
            self.out.write(json.dumps(result.to_json(), indent=1).encode() + b'\n')
        elif result.report is None and result.status < 300 and not result.streamed:
            if split is None:
                self.out.write(result.body)
                if result.part_sizes() is not None:
                    result.around = {at: result.body[at] for at in _around_ends(result)}
            else:
                self.write_parts(result, split)
        elif unsent:
            job_id = getattr(self.opts, 'id', None)
            shown = f'zc result {shlex.quote(job_id)} --json' if job_id else '--json'
            self.err.write('zc: the result was stored as the JSON report (submitted with '
                           f'--json or X-Zerovm-Report): its output, {unsent} bytes, was not '
                           f'kept; {shown} prints the report\n')
        self.out.flush()
        if not self.quiet or result.failed:
            if not (as_json and not result.failed):
                self.err.write(display.report(result))
        if split is None and not as_json:
            self.err.write(_run_together(_part_ends(result), result.around))
        self.err.write(display.dropped(result))
        self.err.write(display.reported_lost(result))
        script = getattr(self.opts, 'script', None)
        if getattr(self.opts, 'device', None) == 'stdin' and (_missed_input(result.nodes) or (
                any(n.failed for n in result.nodes) and _names_input(script)
                and not _failed_elsewise(result.nodes))):
            self.err.write('(the object was given on stdin: --as input gives it as /dev/input)\n')
        if left := _modules_left_here(result.nodes, script):
            self.err.write(f'({", ".join(left)} {"is" if len(left) == 1 else "are"} beside '
                           f'{script} here, but --script sends the script alone: bundle them '
                           'together in a zapp, with zc new APP and zc bundle: '
                           'doc/client.md, "Apps")\n')
        if result.status == 413 and not result.nodes and b'the request body' in result.body:
            self.err.write(_bundle_too_large(self.opts, result.body))
        on = getattr(self.opts, 'on', None) or ''
        if result.status == 404 and not result.nodes and any(c in on for c in '?[') and \
                b'only * is a wildcard' not in result.body:         # the server said it
            self.err.write(f'(only * is a wildcard: the ? or [ of --on {on} are part of the '
                           'name)\n')
        return EXIT_FAILED if result.failed or unsent else 0

    def write_parts(self, result: report.JobResult, where: Path) -> None:
        """``--split``: each node's part of the body as ``where/<node>`` (one file for all
        its replicas); the whole body on stdout if the answer does not say."""
        parts = result.parts()
        if parts is None:
            self.err.write(_unsplit_note(result, where))
            self.out.write(result.body)
            return
        self.write_files(parts, where)

    def write_files(self, parts: Iterable[tuple[str, bytes]], where: Path) -> None:
        """Each (node, bytes) as ``where/<node>``, and what else ``where`` holds."""
        where.mkdir(parents=True, exist_ok=True)
        written = set()
        for name, data in parts:
            file = where / name
            file.write_bytes(data)
            written.add(file.name)
            if not self.quiet:
                self.err.write(f'{file}: {display.size(len(data))}\n')
        others = sorted(p.name for p in where.iterdir() if p.name not in written)
        if others:         # an earlier run's parts: cat DIR/* would mix them in
            shown = ', '.join(others[:3]) + (f' and {len(others) - 3} more' if
                                             len(others) > 3 else '')
            self.err.write(f'zc: note: {where} also holds {len(others)} file(s) this job did '
                           f'not write ({shown}): an earlier run\'s?\n')

    # -- deferred ----------------------------------------------------------------------

    def submit(self) -> tuple[SwiftPath | None, int]:
        """Start the job deferred: (where its result will be, 0), or (None, exit status)
        when the server answered at once (a refused job)."""
        payload = self.payload()
        headers = {DEFERRED_HEADER: 'always', **self.report_header(payload)}
        answer = self.session.execute(payload.body, payload.content_type, headers)
        body = answer.read()
        if answer.status != 202:
            return None, self.show_result(report.parse(answer.status, answer.headers, body), {})
        return self.session.location(body.decode().strip()), 0

    def job_id(self, where: SwiftPath) -> str:
        return where.obj if where.container == RESULTS else self.show(where)

    def cmd_submit(self) -> int:
        where, early = self.submit()
        if where is None:
            return early
        self.out.write(f'{self.job_id(where)}\n'.encode())
        return 0

    def result_path(self, job_id: str) -> SwiftPath:
        """Where a job id's result is; an id that names no object is a usage error."""
        where = job_id if is_swift_url(job_id) or '/' in job_id else f'{RESULTS}/{job_id}'
        try:
            path: SwiftPath | None = self.session.location(where)
        except JobError:
            path = None
        if path is None or not path.obj or not JOB_NAME.fullmatch(path.obj.rsplit('/', 1)[-1]):
            raise Usage(f'{job_id!r} is not a job id: give the id zc submit printed '
                        '(job-<32 hex digits>, or <container>/job-<32 hex digits>)')
        return path

    def stored(self, path: SwiftPath, output: bool = False) -> report.JobResult | None:
        """The deferred job's stored result, None before it is done; ``output``: its
        output goes to stdout (as it comes, when :meth:`streams`), as it is shown."""
        headers_path = SwiftPath(path.account, path.container, path.obj + HEADERS_SUFFIX)
        if not self.session.exists(headers_path):
            return None
        headers = self.session.get(headers_path)
        status, job_headers = report.stored_answer(headers)
        if not (output and self.streams(status, job_headers)):
            return report.parse_stored(headers, self.session.get(path))
        answer = self.session.request('GET', path, {})
        if answer.status >= 300:
            raise ServerError(f'GET {path}', answer.status, answer.reason, answer.read())
        result = report.parse_stored(headers, b'')
        self.pass_on(answer, result)
        return result

    def state(self, path: SwiftPath) -> dict | None:
        """A running deferred job's state (its progress), None when there is none."""
        try:
            state = json.loads(self.session.get(
                SwiftPath(path.account, path.container, path.obj + STATE_SUFFIX)))
        except ServerError as e:
            if e.status == 404:
                return None
            raise
        except ValueError:
            return None
        return state if isinstance(state, dict) else None

    def known(self, path: SwiftPath, output: bool = False
              ) -> tuple[report.JobResult | None, dict | None]:
        """The job's stored result (``output``: see :meth:`stored`), else its state;
        (None, None) for no such job: the proxy stores the state before it answers 202
        and deletes it once the result is stored, hence a second look for the result."""
        result = self.stored(path, output)
        if result is not None:
            return result, None
        state = self.state(path)
        return (self.stored(path, output), None) if state is None else (None, state)

    def unknown(self) -> int:
        bare = '/' not in self.opts.id and not self.opts.id.startswith('swift:')
        more = '; a job POSTed to a container is named <container>/job-...' if bare else ''
        self.err.write(f'zc: {self.opts.id}: no such job (no result and no progress '
                       f'stored: a typo in the id, or its result was deleted{more})\n')
        return EXIT_FAILED

    def cmd_status(self) -> int:
        result, state = self.known(self.result_path(self.opts.id))
        if result is None:
            if self.opts.json:
                self.out.write(json.dumps(state or {'state': 'unknown'}).encode() + b'\n')
            if state is None:
                return EXIT_FAILED if self.opts.json else self.unknown()
            if state.get('state') == 'unstored':    # its proxy could store nothing else
                if not self.opts.json:
                    self.out.write(f'{self.opts.id}: ended, but neither its result nor why '
                                   f'could be stored: {state.get("why")}\n'.encode())
                return EXIT_FAILED
            if not self.opts.json:
                now = time.time()       # one reading: two said "running for -0 s"
                since = now - float(state.get('started') or now)
                self.out.write(f'{self.opts.id}: running for {since:.0f} s: '
                               f'{display.counts(state)}\n'.encode())
            return EXIT_PENDING
        self.out.write(self.describe(result, self.opts.json).encode())
        return EXIT_FAILED if result.failed else 0

    def describe(self, result: report.JobResult, as_json: bool = False) -> str:
        """A deferred job's end in a line, or as JSON: what ``status`` prints (on
        stdout, its output), and ``cancel`` says (on stderr, beside what it did)."""
        state = result.stopped or ('failed' if result.failed else 'done')
        said = result.body.decode('utf-8', 'replace').strip() if result.stopped else ''
        if as_json:
            total, failed = result.totals
            nodes = result.counts or {'total': total, 'done': total - failed, 'failed': failed}
            lost = {'reported_lost': result.reported_lost} if result.reported_lost else {}
            dropped = {'dropped': result.lost()} if result.lost() else {}
            return json.dumps({'state': state, 'status': result.status,
                               'seconds': result.seconds, 'nodes': nodes,
                               **({'error': said} if said else {}), **lost, **dropped}) + '\n'
        every = 'zc result with this id and --json lists every node'
        line = f'{said}\n' if said else display.summary(result, every)
        return f'{self.opts.id}: {state}: {line}' + display.dropped(result) + \
            display.reported_lost(result)

    def cmd_cancel(self) -> int:
        """Stop a running deferred job (a DELETE of its state), wait for its result
        (which says what had ended) and say it; exit 0 once it is cancelled."""
        path, job = self.result_path(self.opts.id), self.opts.id   # a job's: its DELETE
        state = SwiftPath(path.account, path.container, path.obj + STATE_SUFFIX)
        answer = self.session.request('DELETE', state, {})
        body = answer.read()
        if answer.status == 404:
            result = self.stored(path)
            if result is None:
                return self.unknown()
            self.err.write(f'{job}: not running, nothing to cancel' + (
                ' (it was reported lost: if its proxy was only slow or cut off it may run '
                'still, unseen, and its result then replaces the lost one; zc status with '
                'this id says)' if result.stopped == 'lost' else '') + '\n')
            self.err.write(self.describe(result))
            return EXIT_FAILED
        if answer.status in CANCEL_UNSTORED and b' was not cancelled: ' in body:
            refused = ServerError(f'DELETE {state}', answer.status, answer.reason, body)
            self.err.write(f'zc: {refused}\nzc: {cancel_unstored(answer.status, state)}, '
                           f'then zc cancel {job} again\n')
            return EXIT_FAILED
        if answer.status >= 300:
            raise ServerError(f'DELETE {state}', answer.status, answer.reason, body)
        if answer.headers.get('x-nexe-reported-lost'):      # running still: its own comes
            self.err.write(f'{job}: it was reported lost, but its proxy runs it still: '
                           'asked to stop it\n')
        deadline, pause = time.monotonic() + CANCEL_WAIT, POLL_START
        beats = _Beats() if answer.headers.get('x-nexe-reported-lost') else None
        while (result := self.stored(path)) is None or (
                result.stopped == 'lost' and beats is not None):
            if beats is not None and (gone := beats.gone(self.state(path))):
                result = self.stored(path)      # its own may have come since the last look
                if result is None or result.stopped != 'lost':
                    continue
                self.err.write(f'{job}: asked to stop, but {gone} and no result of its own '
                               'came: it is lost after all (zc status with this id says if '
                               'it ends still)\n')
                self.err.write(self.describe(result))
                return EXIT_FAILED
            if time.monotonic() >= deadline:
                self.err.write(f'{job}: asked to stop, still running after {CANCEL_WAIT:.0f} s '
                               '(zc status with this id says when it stopped)\n')
                return EXIT_PENDING
            time.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX)
        if result.stopped == 'cancelled':
            self.say(self.describe(result))
            return 0
        self.err.write(self.describe(result))
        return EXIT_FAILED

    def cmd_wait(self) -> int:
        path = self.result_path(self.opts.id)
        wait = self.opts.wait_timeout
        deadline = None if wait is None else time.monotonic() + wait
        pause = POLL_START
        follow = not self.quiet and self.err.isatty()       # the state costs a request
        seen: list[dict] = []

        def extra() -> str:
            return display.counts(seen[-1]) if seen else ''
        result, state = self.known(path, output=True)
        if result is None and state is None:
            return self.unknown()
        if follow and state is not None:
            seen.append(state)
        with self.progress(f'waiting for {self.opts.id}', extra):
            while result is None and (result := self.stored(path, output=True)) is None:
                if INTERRUPTED.is_set():
                    raise KeyboardInterrupt
                if deadline is not None and time.monotonic() >= deadline:
                    job = self.opts.id
                    self.err.write(f'{job}: not done after {wait} s: it goes on (zc wait '
                                   'with this id again; zc status shows its progress)\n')
                    return EXIT_PENDING
                if follow and (state := self.state(path)) is not None:
                    seen.append(state)
                    del seen[:-1]
                time.sleep(pause)
                pause = min(pause * 1.5, POLL_MAX)
        return self.show_result(result, {})

    def cmd_result(self) -> int:
        result, state = self.known(self.result_path(self.opts.id), output=True)
        if result is None and state is None:
            return self.unknown()
        if result is None:
            self.err.write(f'{self.opts.id}: no result yet (zc wait with this id waits for '
                           'it; zc status shows its progress)\n')
            return EXIT_PENDING
        return self.show_result(result, {})

    # -- apps ----------------------------------------------------------------------------

    def cmd_new(self) -> int:
        root = zapps.new(self.opts.name, Path.cwd())
        self.say(f'{root}/: {", ".join(sorted(p.name for p in root.iterdir()))}\n'
                 f'next: cd {root.name} && make && zc bundle\n')
        return 0

    def cmd_bundle(self) -> int:
        output = Path(self.opts.output) if self.opts.output else None
        path, checked = zapps.bundle(Path(self.opts.dir), output)
        self.say(''.join(f'  {line}\n' for line in checked))
        self.say(f'{path}: {display.size(path.stat().st_size)}\n')
        return 0

    def cmd_deploy(self) -> int:
        kind = _media_type(self.opts.content_type) if self.opts.content_type else None
        if Path(self.opts.zapp).is_dir():
            raise Usage(_app_dir(Path(self.opts.zapp)))
        data = Path(self.opts.zapp).read_bytes()
        job, files = jobs.read_zapp(data, self.opts.zapp)
        tar = jobs.tar_bytes(data)
        self.say(''.join(f'  {line}\n' for line in zapps.check(job, files, self.opts.zapp)))
        ses = self.session
        target = ses.location(self.opts.to or f'apps/{Path(self.opts.zapp).name}')
        if target.obj is None or target.obj.endswith('/'):
            target = SwiftPath(target.account, target.container,
                               (target.obj or '') + Path(self.opts.zapp).name)
        config = json.dumps(zapps.registered_job(job, str(target)), indent=1).encode() \
            if kind else None           # refused before the zapp is uploaded
        ses.put(target, tar, {'Content-Type': 'application/x-tar'})
        self.say(f'uploaded {target} ({display.size(len(tar))})\n'
                 f'REST endpoint: {ses.http_url(target, "/open")}\n')
        if config:
            ses.put(SwiftPath(ses.account, RESULTS, f'{kind}/config'), config,
                    {'Content-Type': 'application/json'})
            self.say(f'registered for {kind}: zc open '
                     f'swift://~/<container>/<object of that type>\n')
        if self.opts.endpoint:
            container = self.opts.endpoint.strip('/')
            if not container or '/' in container:
                raise Usage(f'--endpoint takes a container of your account, not '
                            f'{self.opts.endpoint!r}')
            ses.set_container_meta(container, {ENDPOINT_HEADER: str(target)})
            url = ses.http_url(SwiftPath(ses.account, container), '/api')
            self.say(f'API endpoint: {url}/<path> (any method runs the app)\n')
        return 0

    def cmd_open(self) -> int:
        ses = self.session
        path = ses.location(self.opts.url)
        headers = {'X-Zerovm-Execute': 'open/1.0'}
        if self.opts.source:
            headers['X-Zerovm-Source'] = self.opts.source
        query = urlencode(self.opts.param, quote_via=quote)
        answer = ses.request('GET', path, headers, query='?' + query if query else '')
        if answer.status >= 300 and not answer.headers.get('x-nexe-system'):
            raise ServerError(f'open {self.opts.url}', answer.status, answer.reason,
                              answer.read())
        result = self.read_answer(answer)
        if result.nodes:
            return self.show_result(result, {n.name: self.show(path) for n in result.nodes})
        if not result.streamed:
            self.out.write(result.body)
        return 0

    def cmd_validate(self) -> int:
        target = self.opts.program
        if is_swift_url(target):
            path = self.session.location(target)
            answer = self.session.request('HEAD', path, {})
            answer.read()
            if answer.status >= 300:
                raise ServerError(f'HEAD {path}', answer.status, answer.reason, b'')
            valid = answer.headers.get('x-zerovm-valid')
            if valid is None:
                return self.check_locally(target, self.session.get(path), (
                    ' (checked here: no verdict stored; upload it with X-Zerovm-Validate: '
                    'true, or as application/x-nexe, for the cluster\'s)'))
            if valid == 'true':     # and the proxy's note on a -mavx2 build, as checked here
                note = answer.headers.get('x-zerovm-validation-note')
                self.say(f'{target}: valid\n')
                self.err.write(f'{target}: {note}\n' if note else '')
                return 0
            # the upload that stored it answered 201 all the same: say what it means
            why = answer.headers.get('x-zerovm-validation-error', '')
            self.err.write(f'{target}: invalid{": " + why if why else ""} (the verdict '
                           'stored at upload: the object servers refuse to run it)\n')
            return EXIT_FAILED
        try:
            data = Path(target).read_bytes()
        except OSError as e:
            raise jobs.BuildError(f'cannot read {target}: {e.strerror}') from None
        return self.check_locally(target, data)

    def check_locally(self, target: str, data: bytes, where: str = '') -> int:
        """The validator's verdict on ``data`` on this machine (the same rules as the
        object servers'), ``where`` saying so when ``target`` is stored."""
        notes: list[str] = []
        problem = zapps.check_program(target, data, notes)
        if problem:
            self.err.write(problem + where + '\n')
        else:
            self.say(f'{target}: valid{where}\n')
        self.err.write(''.join(note + '\n' for note in notes))
        return EXIT_FAILED if problem else 0

    # -- SQL ----------------------------------------------------------------------------

    def cmd_sql(self) -> int:
        """One ``sql/1.0`` request: the answer on stdout, the plan and the nodes' count on
        stderr (unless -q); a refused query prints the server's whole answer, a failed one
        its failed nodes (:meth:`query_failed`)."""
        o = self.opts
        query = sys.stdin.read() if o.query == '-' else o.query
        if o.query != '-' and not any(c.isspace() for c in query) and Path(query).is_file():
            raise Usage(f'{query} is a file here, not a query: zc sql - < {shlex.quote(query)} '
                        'reads the query from it')       # was the server's "found 'top'"
        body = jobs.sql_request(query, fmt=o.format, header=not o.no_header, explain=o.explain,
                                engine=o.engine, input_format=o.input_format,
                                columns=o.columns, delimiter=o.delimiter,
                                input_header=not o.no_input_header, skip_bad=o.skip_bad)
        ses = self.session
        if o.out is not None:
            out = ses.location(o.out)
            if out.obj is None or '*' in out.path:
                raise Usage(f'--out names one object (swift://~/c/o), not {o.out!r}')
            if out.account == ses.account and not o.explain:      # explain runs nothing
                ses.ensure_container(out.container)
            body['output'] = str(out)
        with self.progress('running the query'):
            answer = ses.query(json.dumps(body).encode())
            data = answer.read()
        if answer.status >= 300:
            return self.query_failed(answer, data)
        self.out.write(data)
        self.out.flush()
        result = report.parse(answer.status, answer.headers, b'')
        if not self.quiet and not o.explain:
            h = answer.headers
            stored = f'; the answer is in {self.short(body["output"])}' if o.out else ''
            objects = h.get('x-sql-objects', '?')
            self.err.write(f'plan {h.get("x-sql-plan", "?")} over {objects} '
                           f'object{"" if objects == "1" else "s"}{stored}; ' +
                           display.summary(result, 'the answer counts its nodes'))
        self.err.write(display.dropped(result))
        if 'x-sql-skipped' in answer.headers and not o.explain:
            self.err.write(display.skipped(answer.headers, self.short, self.quiet))
            detail = json.loads(answer.headers.get('x-sql-skipped-detail') or '[]')
            self.err.write(self.columns_hint([first for _, _, first in detail]))
        return 0

    def columns_hint(self, errors: list[str]) -> str:
        """For records with another number of fields than ``--columns`` names (``errors``:
        the nodes' or the skipped records' first), that it names every field: taken for
        the columns to read, it failed every record (or skipped every one)."""
        columns = self.opts.columns
        if not columns or not any(FIELD_COUNT.search(e) for e in errors):
            return ''
        return (f'zc: note: --columns names every field of the records, in order, not only '
                f'the columns to read (the query reads those it uses); these records have '
                f'another number of fields than its {len(columns)}\n')

    def query_failed(self, answer: Answer, data: bytes) -> int:
        """A refused query: the server's whole answer; one whose nodes failed (each
        names its object): the first few as ``zc run`` says them, then a count."""
        result = report.parse(answer.status, answer.headers, data)
        if not any(node.failed for node in result.nodes):
            raise ServerError('the query', answer.status, answer.reason, _as_options(data))
        errors = [node.error or '' for node in result.nodes if node.failed]
        bad = any(BAD_RECORD.search(e) and WRONG_DELIMITER not in e for e in errors)
        hint = self.columns_hint(errors) or (       # else --skip-bad would skip every record
            'zc: --skip-bad skips malformed records (and counts them)\n'
            if bad and not self.opts.skip_bad else '')
        self.err.write(f'zc: the query: {answer.status} {answer.reason}\n' +
                       display.failures(result.nodes, most=display.ALIKE_SHOWN) +
                       display.summary(result, 'the answer counts its nodes') + hint +
                       display.dropped(result))
        return EXIT_FAILED

    def cmd_local(self) -> int:
        try:
            maps = local.parse_maps(self.opts.map)
        except ValueError as e:
            raise Usage(str(e)) from None
        payload = self.payload(remote=False)
        result = local.run(payload, self.opts.target or self.opts.script, maps,
                           self.opts.stdin, None if self.opts.json else self.out.write)
        return self.show_result(result, {})


def _app_dir(root: Path) -> str:
    """What to do when ``zc deploy`` was given a directory, not a zapp."""
    zapp = zapps.bundled_path(root)
    if zapp is None:
        return (f'{root} is a directory without a {zapps.MANIFEST}: deploy takes a zapp '
                f'(zc new NAME writes an app, zc bundle DIR builds its zapp)')
    return (f'{root} is a directory: deploy takes a zapp; build it first with zc bundle '
            f'{root} (it writes {zapp}), then zc deploy {zapp}')


def _piped(stream) -> bool:
    """Whether ``stream`` is a pipe or a non-empty file: data given with ``|`` or ``<``."""
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return stat.S_ISFIFO(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_size > 0)


def _is_program(path: str) -> bool:
    try:
        with open(path, 'rb') as f:
            return f.read(4) == jobs.ELF_MAGIC
    except OSError:
        return False


def _bundle_too_large(opts: argparse.Namespace, refusal: bytes) -> str:
    """Why a request body zc made was over the cluster's zerovm_maxinput: the zapp
    carrying this machine's program (or script).  A stored program is sent with each
    node against the same limit, so uploading helps only one smaller than it."""
    script = getattr(opts, 'script', None)
    target = getattr(opts, 'target', None)
    program = target if script is None and target and _is_program(target) else None
    carried = script or program
    if carried is None:                 # the user's own job or zapp: its size is theirs
        return ''
    try:
        size = Path(carried).stat().st_size
    except OSError:                     # gone since: say what is known
        size = None
    shown = f' ({display.size(size)})' if size is not None else ''
    said = f'zc: note: that body is the zapp zc made to carry {carried}{shown}'
    found = _MAXINPUT.search(refusal.decode(errors='replace'))
    limit = int(found[1]) if found else None
    if size is None or limit is None:
        return (f'{said}; a stored one is sent with each node too, so it must itself be '
                'smaller than zerovm_maxinput\n')
    if size >= limit:
        return (f'{said}: it is itself larger than zerovm_maxinput ({limit} bytes), and a '
                'stored one is sent with each node too: make it smaller or ask the operator '
                'to raise zerovm_maxinput\n')
    if program is None:                 # a small script: zc's bundle is all there is to it
        return ''
    where, name = Path(program).parent, shlex.quote(Path(program).name)
    upload = f'swift upload bin {name}' if where == Path('.') else \
        f'(cd {shlex.quote(str(where))} && swift upload bin {name})'
    return (f'{said}: the program alone is smaller than zerovm_maxinput ({limit} bytes): '
            f'upload it first and run the stored one, sent without zc\'s bundle: {upload}, '
            f'then zc run swift://~/bin/{name} with the same options\n')


_MAXINPUT = re.compile(r'zerovm_maxinput \((\d+) bytes\)')


CANCEL_UNSTORED = (403, 413)      # Swift refused the proxy's marker: the job runs on


def cancel_unstored(status: int, state: SwiftPath) -> str:
    """What lets a cancel's marker be stored next time: Swift refused it with ``status``
    (the proxy says the job runs on, and Swift's reason, not what to do)."""
    where = f'swift://{state.account}/{state.container}'
    if status == 413:
        return (f'make room in {where} (delete objects there, or raise its quota or its '
                f"account's: swift stat {state.container} shows them)")
    return (f'ask the owner of {where} for write access (X-Container-Write): the marker '
            'is written as you')


REQUEST_ERRORS = (ServerError, ClientException, OSError, HTTPException)


def _has_answer_output(job: list) -> bool:
    """Does a node write a device without a path (the answer's body)?"""
    return any(jobs.answer_devices(group) for group in (job if isinstance(job, list) else []))


def unreachable(e: OSError) -> str:
    """What to say when the server does not answer (its address, the reason): the
    likely slip is a cluster that is not running or credentials for another."""
    request = getattr(e, 'request', None)
    where = f' at {request.url}' if request is not None else ''
    if 'WRONG_VERSION_NUMBER' in str(e):   # https:// to a server speaking plain HTTP
        return (f'the server{where} does not speak TLS: its URL (ST_AUTH, OS_AUTH_URL or '
                'OS_STORAGE_URL) likely starts with http://, not https://')
    reason = re.findall(r'\[Errno -?\d+\] ([^\'"()]+)', str(e))
    why = reason[-1].strip() if reason else (e.strerror or str(e))
    return (f'no server answers{where}: {why} (is the cluster running? are ST_AUTH, '
            'OS_AUTH_URL or OS_STORAGE_URL its address?)')


def not_auth(e: ClientException) -> str:
    """What to say when the auth URL answers as no auth service: the server's page
    (404 HTML, 'Bad URL') does not say that ST_AUTH names the wrong path."""
    port = f':{e.http_port}' if e.http_port else ''
    url = f'{e.http_scheme}://{e.http_host}{port}{e.http_path}'
    return (f'{url} is not an auth URL (ST_AUTH, OS_AUTH_URL or -A): v1 auth is the '
            f"proxy's /auth/v1.0, e.g. {e.http_scheme}://{e.http_host}{port}/auth/v1.0 "
            '(zerocloud-devcluster env prints the local cluster\'s)')


INTERRUPTED = threading.Event()        # Ctrl-C was pressed (see _interrupted)


def _interrupted(signum, frame) -> None:
    """Ctrl-C, remembered as well as raised: Python swallows (and prints) a
    KeyboardInterrupt that lands in a finaliser, and a loop following a job
    would then wait for all of it; those loops check :data:`INTERRUPTED` too."""
    INTERRUPTED.set()
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    INTERRUPTED.clear()
    # SIGINT ignored (nohup, `&` in a script) stays ignored: it is the caller's choice
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        previous = signal.signal(signal.SIGINT, _interrupted)
        try:
            return _main(argv)
        finally:
            signal.signal(signal.SIGINT, previous)
    return _main(argv)


def _http_logging(opts: argparse.Namespace) -> None:
    """swift's ``--debug``, ``--debug-with-secrets`` and ``--info``, as the swift
    command sets them: every request (``--info``: every failed one) as a curl command."""
    if opts.debug or opts.debug_with_secrets:
        logging.basicConfig(level=logging.DEBUG)
        logging.getLogger('iso8601').setLevel(logging.WARNING)
    elif opts.info:
        logging.basicConfig(level=logging.INFO)
    logger_settings['redact_sensitive_headers'] = not opts.debug_with_secrets


def _meant_options(parser: argparse.ArgumentParser, command: str | None,
                   extra: list[str]) -> str:
    """`` (did you mean --out?)`` for each misspelt long option of ``extra``, from the
    options of ``command`` and zc's own: argparse says only that it does not know it."""
    parsers = [parser] + [action.choices[command] for action in parser._actions
                          if isinstance(action, argparse._SubParsersAction)
                          and command in action.choices]
    known = {option.lower(): option for p in parsers for action in p._actions
             for option in action.option_strings if option.startswith('--')}
    # zc's own (the swift auth options, --debug): right, but after the command
    own = {option for action in parser._actions for option in action.option_strings} - {
        option for p in parsers[1:] for action in p._actions for option in action.option_strings}
    hints, before = {}, []
    for word in extra:
        typed = word.split('=', 1)[0]
        close = difflib.get_close_matches(typed.lower(), known, n=1, cutoff=0.7)
        if typed in own:
            before.append(typed)
        elif typed.startswith('--') and close:
            hints[typed] = known[close[0]] + ', before the command' * (known[close[0]] in own)
    if before:
        return (f' ({", ".join(before)} {"goes" if len(before) == 1 else "go"} before the '
                f'command, as for swift: zc {before[0]} ... {command} ...)')
    if len(hints) < 2:
        return ''.join(f' (did you mean {meant}?)' for meant in hints.values())
    return f' ({"; ".join(f"{typed}: did you mean {meant}?" for typed, meant in hints.items())})'


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    opts, extra = parser.parse_known_args(argv)
    if extra:
        meant = _meant_options(parser, opts.command, extra)
        quote = (': quote the query, it is one argument (zc sql "SELECT ... FROM '
                 'swift://~/c/*.csv ...")' if opts.command == 'sql' and not meant else '')
        parser.error(f'unrecognized arguments: {" ".join(extra)}{quote}{meant}')
    _http_logging(opts)
    if opts.os_help or opts.command is None:
        parser.print_help()
        return 0 if opts.os_help else EXIT_USAGE
    client = Client(opts)
    command = getattr(client, f'cmd_{opts.command}')
    try:
        return command()
    except KeyboardInterrupt:
        if client._session is not None:
            client._session.cancel()
        what = CANCELLED.get(opts.command, '')
        if getattr(opts, 'progress', False):       # run --progress: a deferred job
            what = CANCELLED['wait'] + (f' (zc wait {opts.id})' if getattr(opts, 'id', None)
                                        else ' once started')
        sys.stderr.write(f'\nzc: cancelled{what}\n')
        return EXIT_CANCELLED
    except (Usage, jobs.OptionError) as e:
        sys.stderr.write(f'zc: {e} (zc -h for help)\n')
        return EXIT_USAGE
    except (jobs.BuildError, ServerError) as e:
        sys.stderr.write(f'zc: {e}\n')
        return EXIT_FAILED
    except ClientException as e:
        if e.http_status == 401:        # the auth's HTML page says nothing of what to fix
            sys.stderr.write(f'zc: {e.msg}: 401 Unauthorized: {display.REFUSED}\n')
            return EXIT_FAILED
        if e.msg == 'Auth GET failed' and e.http_status in (400, 404, 405, 412):
            sys.stderr.write(f'zc: {e.msg}: {e.http_status} {e.http_reason}: '
                             f'{not_auth(e)}\n')
            return EXIT_FAILED
        body = e.http_response_content
        text = body.decode('utf-8', 'replace') if isinstance(body, bytes) else str(body or '')
        sys.stderr.write(f'zc: {e.msg}: {e.http_status} {e.http_reason}\n{text}'.rstrip() + '\n'
                         if e.http_status else f'zc: {e}\n')
        return EXIT_FAILED
    except OutputClosed:               # zc run ... | head: the reader has enough
        if client._session is not None:
            client._session.cancel()
        stdout.silence()
        return stdout.EXIT_PIPE
    except (ConnectionError, requests.ConnectionError) as e:
        sys.stderr.write(f'zc: {unreachable(e)}\n')
        return EXIT_FAILED
    except OSError as e:
        where = f'{e.filename}: ' if e.filename else ''
        sys.stderr.write(f'zc: {where}{e.strerror or e}\n')
        return EXIT_FAILED


if __name__ == '__main__':
    sys.exit(main())

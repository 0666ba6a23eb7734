"""What ``zc`` shows a person: the per-node table, failures, live progress.

Results (the job's output) go to stdout; the table, failures and progress go
to stderr, so ``zc run ... > out.txt`` keeps only the output.  Progress is a
single line redrawn in place, only when stderr is a terminal.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import unicodedata
from collections.abc import Callable

from zerocloud.answer_format import UNDECLARED
from zerocloud.client.report import JobResult, NodeResult

COLUMNS = ('NODE', 'OBJECT', 'SERVER', 'STATUS', 'EXIT', 'FUEL', 'IN', 'OUT', 'SECONDS')
STDERR_LINES = 20               # of each failed node's stderr shown under the table
ALIKE_SHOWN = 3                 # nodes that failed alike shown; the others are counted


def size(n: int | None) -> str:
    """Bytes for people: ``812``, ``12.4K``, ``3.1M``."""
    if n is None:
        return '-'
    for unit in ('', 'K', 'M', 'G'):
        if n < 1024 or unit == 'G':
            return f'{n}' if not unit else f'{n:.1f}{unit}'
        n /= 1024
    return str(n)


def _row(node: NodeResult) -> tuple[str, ...]:
    return (node.name, node.object or '-', node.host or '-', node.status or '-',
            '-' if node.retcode is None else str(node.retcode),
            '-' if node.fuel is None else f'{node.fuel:,}',
            size(node.bytes_in), size(node.bytes_out),
            '-' if node.seconds is None else f'{node.seconds:.2f}')


def width(text: str) -> int:
    """Columns a terminal gives ``text``: two for a wide character (日本), none for a
    combining one; ``len`` put the columns after such an object name out of line."""
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in 'WF' else 1 for c in text)


def table(nodes: list[NodeResult]) -> str:
    """Aligned columns, one row per node (numbers right-aligned)."""
    rows = [COLUMNS, *map(_row, nodes)]
    widths = [max(width(r[i]) for r in rows) for i in range(len(COLUMNS))]
    right = {COLUMNS.index(c) for c in ('EXIT', 'FUEL', 'IN', 'OUT', 'SECONDS')}
    lines = []
    for row in rows:
        pads = [' ' * (w - width(cell)) for cell, w in zip(row, widths, strict=True)]
        cells = [pad + cell if i in right else cell + pad
                 for i, (cell, pad) in enumerate(zip(row, pads, strict=True))]
        lines.append('  '.join(cells).rstrip() + '\n')
    return ''.join(lines)


def failures(nodes: list[NodeResult], most: int | None = None) -> str:
    """What went wrong in each failed node: its status, error and stderr's last lines
    (not when they are one line, its error's last part after ': '); past
    :data:`ALIKE_SHOWN` nodes that failed alike (a wildcard's program that fails on
    every object), the others counted in a line at the end; past ``most`` nodes
    shown in all (a query's nodes each name their own object), the rest counted."""
    out: list[str] = []
    alike: dict[tuple, list] = {}           # (what, stderr) -> [shown, counted, what]
    shown = 0
    for node in nodes:
        if not node.failed:
            continue
        how = node.status if node.status == 'ok' else node.status or 'failed'
        if node.retcode not in (0, None):
            how = f'exit {node.retcode}' if node.status == 'ok' else f'{how}, exit {node.retcode}'
        error = node.error
        if node.status and error.startswith(node.status + ': '):     # said once, in how
            error = error[len(node.status) + 2:]
        what = how if not error else error if error.startswith(how) or \
            how == 'ok' or not node.status else f'{how}: {error}'     # ok: ran, not stored
        lines = node.stderr.rstrip('\n').splitlines()[-STDERR_LINES:]
        if len(lines) == 1 and lines[0].strip() and \
                what.endswith(': ' + lines[0].strip()):             # said in what
            lines = []
        said = [f'{node.name}: {what}\n', *(f'  | {line}\n' for line in lines)]
        if out[-len(said):] == said:        # replicas that failed alike are said once
            continue
        seen = alike.setdefault((what, tuple(lines)), [0, 0, what])
        if seen[0] < ALIKE_SHOWN and (most is None or shown < most):
            out.extend(said)
            seen[0] += 1
            shown += 1
        else:
            seen[1] += 1
    out += [f'... and {counted} more nodes: {what}\n'
            for some, counted, what in alike.values() if some and counted]
    others = sum(counted for some, counted, _ in alike.values() if not some)
    if others:
        out.append(f'... and {others} more failed node{"s" * (others != 1)}\n')
    return ''.join(out)


def summary(result: JobResult, every: str = 'use --json for every node') -> str:
    """The line under the table; ``every``: what gives every node when headers were cut
    (or, for a large job, answered with counts, always)."""
    if result.summary is not None:
        return large_summary(result, every)
    total, failed = result.totals
    secs = '' if result.seconds is None else f' in {result.seconds:.2f} s'
    cut = f' (headers cut: {every})' if result.truncated else ''
    word = 'node' if total == 1 else 'nodes'
    http = f'; HTTP {result.status}' if result.status else ''
    return (f'{total} {word}{_replicated(result)}: {total - failed} succeeded, {failed} '
            f'failed{secs}{http}{cut}\n')


def _replicated(result: JobResult) -> str:
    """`` (2 replicas each)`` after the count of a job whose nodes ran replicated (a
    node counts once, failed when a replica did); `` (some replicated: 7 runs)`` when
    they ran as different numbers of replicas; nothing without ``replicate``."""
    replicas = result.replicas
    if max(replicas, default=1) == 1:
        return ''
    if len(replicas) > 1:
        return f' (some replicated: {sum(k * n for k, n in replicas.items())} runs)'
    (runs,) = replicas
    return f' ({runs} replicas{" each" if result.totals[0] > 1 else ""})'


def skipped(headers, short: Callable[[str], str], quiet: bool) -> str:
    """What a query run with ``--skip-bad`` skipped (``X-Sql-Skipped*``, ``doc/sql.md``):
    the count, and for the first few objects their count and first record (then how
    many more); nothing when none (or -q)."""
    total = int(headers.get('x-sql-skipped', 0))
    objects = int(headers.get('x-sql-skipped-objects', 0))
    if not total:
        return '' if quiet else 'zc: no malformed records skipped\n'
    detail = json.loads(headers.get('x-sql-skipped-detail') or '[]')[:ALIKE_SHOWN]
    out = [f'zc: skipped {total} malformed record{"s" * (total != 1)} in {objects} '
           f'object{"s" * (objects != 1)}:\n']
    out += [f'  {short(name)}: {count} (the first: {first})\n' for name, count, first in detail]
    more, records = objects - len(detail), total - sum(count for _, count, _ in detail)
    if more:
        out.append(f'  ... and {more} more object{"s" * (more != 1)}: {records} '
                   f'record{"s" * (records != 1)}\n')
    return ''.join(out)


REFUSED = ('the credentials were refused: check ST_USER and ST_KEY (or OS_USERNAME, '
           'OS_PASSWORD, OS_PROJECT_NAME), or get a new OS_AUTH_TOKEN if it has expired')


def report(result: JobResult) -> str:
    """The table, the failures under it, and a summary line."""
    if result.summary is not None:      # a large job: counts, and its failed nodes
        return failures(result.nodes) + large_summary(result)
    text = table(result.nodes) if result.nodes else ''
    text += failures(result.nodes)
    if result.stopped:                  # a deferred job cancelled (zc cancel), or lost
        return f'zc: the job was {result.stopped}: ' + result.body.decode('utf-8', 'replace')
    if result.status >= 300 and not result.nodes:
        body = result.body.decode('utf-8', 'replace')
        if result.status == 401 and body.startswith('<html>'):   # the auth's page
            body = REFUSED + '\n'
        return f'zc: the job was refused (HTTP {result.status}), nothing ran:\n{body}'
    if result.status >= 300 and not any(n.failed for n in result.nodes):
        text += f'the server answered HTTP {result.status}:\n' + \
            result.body.decode('utf-8', 'replace')      # e.g. a program's bad CGI output
    return text + summary(result) + chain_stopped(result)


DROPPED_HINTS = {   # once under the lines of each kind: why, and what keeps it
    True: '(an undeclared stdout is /dev/null: add {"name": "stdout"} to a node\'s devices '
          'to get what it writes, with a "path" to store it)\n',
    False: '(an output smaller than its device\'s min_size is not stored, as its job asks: '
           'an object of that name from an earlier run stays as it was; a lower min_size '
           'keeps it)\n'}


def dropped(result: JobResult) -> str:
    """What the job lost (``X-Nexe-Dropped``, :meth:`JobResult.lost`), a line each, as
    the failures under the table: the first :data:`ALIKE_SHOWN` of a kind, then a
    count, and what to do. The answer was a 200 with nothing of it: only these lines
    tell a user that output went nowhere."""
    kinds: dict[bool, list[str]] = {}
    for entry in result.lost():
        kinds.setdefault(entry.endswith(UNDECLARED), []).append(entry)
    out = []
    for undeclared, entries in kinds.items():
        out += [f'zc: dropped: {entry}\n' for entry in entries[:ALIKE_SHOWN]]
        if len(entries) > ALIKE_SHOWN:
            more = len(entries) - ALIKE_SHOWN
            out.append(f'zc: dropped: ... and {more} more '
                       f'{"nodes did so" if undeclared else "outputs not stored"}\n')
        out.append(DROPPED_HINTS[undeclared])
    if result.dropped_cut:
        out.append('zc: dropped: ... (the header was cut: the JSON report, --json, says '
                   'what each node lost)\n')
    return ''.join(out)


def reported_lost(result: JobResult) -> str:
    """A deferred job that ended after it was reported lost (its proxy slow or cut off):
    whoever read ``lost`` and ran it again has two runs, each of which may have written."""
    if not result.reported_lost:
        return ''
    return (f'zc: note: the job finished after it was reported lost ({result.reported_lost}'
            '): if you ran it again, both runs happened (each may have written objects)\n')


def chain_stopped(result: JobResult) -> str:
    """Why the job's answer, itself a job (the output above), was not run next."""
    if result.chain == 'foreign_code':
        return (f'zc: the chain stopped: the answer is a job, not run, because the job that '
                f'answered ran code of another account ({result.foreign or "not named"}): a '
                'job it answers would run with all your rights. To chain on purpose, copy '
                'that object into your account and run your copy (http-api.md, Chains)\n')
    if result.chain == 'foreign_input':
        return (f'zc: the chain stopped: the answer is a job, not run, because the job that '
                f'answered read an object of another account ({result.foreign or "not named"})'
                ': what it read may have chosen that job, which would run with all your '
                'rights. Read it, and if you want it, save it and run it with zc run FILE '
                '(http-api.md, Chains)\n')
    if result.chain == 'chain_timeout':
        return ('zc: the chain stopped after chain_timeout (the cluster\'s limit on a chain '
                'of jobs): the answer is the next job, not run; save it and run it with '
                'zc run FILE\n')
    if result.chain:
        return f'zc: the chain stopped ({result.chain}): the answer is a job, not run\n'
    return ''


def large_summary(result: JobResult, every: str = 'use --json for every node') -> str:
    """The summary line of a job answered with counts (more than 1,000 nodes)."""
    s = result.summary
    secs = '' if result.seconds is None else f' in {result.seconds:.2f} s'
    return (f'{s.nodes} nodes{_replicated(result)}: {s.nodes - s.failed} succeeded, '
            f'{s.failed} failed{secs}; HTTP {result.status}; statuses: {s.statuses or "-"}; '
            f'exit codes: {s.retcodes or "-"} (a large job: {every})\n')


def counts(state: dict) -> str:
    """A deferred job's progress from its state (``zerocloud.deferred``):
    ``120/300 nodes done, 2 failed, 64 running, 1.2M out``."""
    nodes = state.get('nodes')
    if not isinstance(nodes, dict) or not nodes.get('total'):
        return 'checking the job'
    ended = int(nodes.get('done', 0)) + int(nodes.get('failed', 0))
    text = (f'{ended}/{nodes["total"]} nodes done, {nodes.get("failed", 0)} failed, '
            f'{nodes.get("running", 0)} running')
    out = (state.get('bytes') or {}).get('out')
    chain = f' (job {state["job"]} of a chain)' if int(state.get('job') or 1) > 1 else ''
    return text + ('' if out is None else f', {size(out)} out') + chain


class Progress:
    """A live status line on a terminal: ``what`` plus elapsed seconds and ``extra()``."""

    def __init__(self, what: str, extra: Callable[[], str] = lambda: '',
                 stream=None, interval: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.what, self.extra, self.interval = what, extra, interval
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0

    def __enter__(self) -> Progress:
        if self.stream.isatty():
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def line(self) -> str:
        extra = self.extra()
        return (f'{self.what}: {time.monotonic() - self.started:.1f} s elapsed'
                + (f', {extra}' if extra else ''))

    def _run(self) -> None:
        while True:         # drawn at once, so even a quick job shows what it did
            text = self.line()
            self.stream.write('\r' + text.ljust(self._width))
            self.stream.flush()
            self._width = len(text)
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            if self._width:
                self.stream.write('\r' + ' ' * self._width + '\r')
                self.stream.flush()

"""What ``zc`` says of ``X-Nexe-Dropped``: output a job lost though it succeeded (a node
that wrote to a stdout it did not declare, an output not stored for being under its
``min_size``).  The answer is a 200 with nothing of it, and zc printed none of it."""

from __future__ import annotations

import io
import json

import pytest

from zerocloud.client import cli, display, report
from zerocloud.client.cli import build_parser

UNDECLARED_HINT = ('(an undeclared stdout is /dev/null: add {"name": "stdout"} to a node\'s '
                   'devices to get what it writes, with a "path" to store it)\n')
# not stored: an object of that name from an earlier run is not replaced, so say so
MIN_SIZE_HINT = ('(an output smaller than its device\'s min_size is not stored, as its job '
                 'asks: an object of that name from an earlier run stays as it was; a lower '
                 'min_size keeps it)\n')
OK = {'X-Nexe-System': 'a,b', 'X-Nexe-Status': 'ok,ok', 'X-Nexe-Retcode': '0,0',
      'X-Nexe-Cdr-Line': '0.500, 0.100, 2000 10 292 24, 0.200, 3000 11 692 24',
      'Content-Type': 'text/plain'}
DROPPED = ('a: 12 bytes written to an undeclared stdout, '
           'b: out not stored (3 bytes < min_size 10)')


class _Out(io.BytesIO):
    def isatty(self) -> bool:
        return False


def shown(args: list[str], headers: dict, body: bytes = b'') -> tuple[int, bytes, str]:
    """``zc ARGS`` showing an answer of ``headers`` and ``body``: (exit, stdout, stderr)."""
    out, err = _Out(), io.StringIO()
    client = cli.Client(build_parser().parse_args(args), out=out, err=err)
    code = client.show_result(report.parse(200, headers, body), {})
    return code, out.getvalue(), err.getvalue()


def test_zc_run_says_each_output_the_job_dropped_under_its_table() -> None:
    code, out, err = shown(['run', 'job.json'], {**OK, 'X-Nexe-Dropped': DROPPED}, b'x')
    assert (code, out) == (0, b'x')
    table, _, notes = err.partition('2 nodes: 2 succeeded, 0 failed in 0.50 s; HTTP 200\n')
    assert table.startswith('NODE') and notes == (
        'zc: dropped: a: 12 bytes written to an undeclared stdout\n' + UNDECLARED_HINT +
        'zc: dropped: b: out not stored (3 bytes < min_size 10)\n' + MIN_SIZE_HINT)
    # -q hides the table, not a loss
    assert shown(['run', 'job.json', '-q'], {**OK, 'X-Nexe-Dropped': DROPPED})[2] == notes
    # nothing lost, nothing said
    assert shown(['run', 'job.json', '-q'], OK)[2] == ''


def test_zc_run_json_says_it_on_stderr_and_in_the_json_made_from_headers() -> None:
    code, out, err = shown(['result', 'job-1', '--json'], {**OK, 'X-Nexe-Dropped': DROPPED})
    assert code == 0 and json.loads(out)['dropped'] == DROPPED.split(', ')
    assert err == ('zc: dropped: a: 12 bytes written to an undeclared stdout\n' +
                   UNDECLARED_HINT + 'zc: dropped: b: out not stored (3 bytes < min_size 10)\n'
                   + MIN_SIZE_HINT)
    # the JSON report is printed as the server wrote it; the header is said on stderr,
    # once (the report's accounting also shows the undeclared stdout)
    stored = {'status': 200, 'nodes': [
        {'name': 'a', 'status': 'ok', 'retcode': 0, 'failed': False, 'outputs': [],
         'accounting': {'channels': {'/dev/stdout': {'write_bytes': 12}}}}]}
    headers = {'Content-Type': 'application/json',
               'X-Nexe-Dropped': 'a: 12 bytes written to an undeclared stdout'}
    code, out, err = shown(['run', 'job.json', '--json'], headers, json.dumps(stored).encode())
    assert code == 0 and json.loads(out) == stored
    assert err == 'zc: dropped: a: 12 bytes written to an undeclared stdout\n' + UNDECLARED_HINT


def test_a_large_jobs_counts_and_many_nodes_are_said_three_then_counted() -> None:
    summary = {'X-Nexe-Nodes': '3000', 'X-Nexe-Failed': '0', 'X-Nexe-Status-Counts': 'ok 3000',
               'X-Nexe-Cdr-Total': '1.000, 0 0 0 0',
               'X-Nexe-Dropped': '3 nodes: 36 bytes written to an undeclared stdout, '
                                 '2 outputs not stored (under their min_size)'}
    assert shown(['run', 'job.json', '-q'], summary)[2] == (
        'zc: dropped: 3 nodes: 36 bytes written to an undeclared stdout\n' + UNDECLARED_HINT +
        'zc: dropped: 2 outputs not stored (under their min_size)\n' + MIN_SIZE_HINT)
    many = {'X-Nexe-System': ','.join(f'n-{i}' for i in range(5)),
            'X-Nexe-Status': ','.join(['ok'] * 5), 'X-Nexe-Retcode': ','.join(['0'] * 5),
            'X-Nexe-Dropped': ', '.join(f'n-{i}: 5 bytes written to an undeclared stdout'
                                        for i in range(5)) + ', ...'}
    lines = shown(['run', 'job.json', '-q'], many)[2].splitlines()
    assert [line.split()[2] for line in lines[:3]] == ['n-0:', 'n-1:', 'n-2:']
    assert lines[3:] == ['zc: dropped: ... and 2 more nodes did so', UNDECLARED_HINT.strip(),
                         'zc: dropped: ... (the header was cut: the JSON report, --json, '
                         'says what each node lost)']


def test_without_the_header_the_reports_undeclared_stdout_is_said_alike() -> None:
    """An older server's (or ``zvm``'s) report: its accounting shows the bytes."""
    stored = {'status': 200, 'nodes': [
        {'name': 'sum', 'status': 'ok', 'retcode': 0, 'failed': False, 'outputs': [],
         'accounting': {'channels': {'/dev/stdout': {'write_bytes': 73}}}}]}
    err = shown(['run', 'job.json', '-q'], {'Content-Type': 'application/json'},
                json.dumps(stored).encode())[2]
    assert err == 'zc: dropped: sum: 73 bytes written to an undeclared stdout\n' + \
        UNDECLARED_HINT


def test_status_wait_and_result_of_a_deferred_job_say_it(monkeypatch, capsys) -> None:
    stored = json.dumps({'Status': '200 OK', **OK, 'X-Nexe-Dropped': DROPPED}).encode()
    result = report.parse_stored(stored, b'')
    monkeypatch.setattr(cli.Client, 'result_path', lambda self, job: job)
    monkeypatch.setattr(cli.Client, 'known', lambda self, path, output=False: (result, None))
    for command in ('wait', 'result'):
        assert cli.main([command, 'job-1', '-q']) == 0
        assert capsys.readouterr().err == (
            'zc: dropped: a: 12 bytes written to an undeclared stdout\n' + UNDECLARED_HINT +
            'zc: dropped: b: out not stored (3 bytes < min_size 10)\n' + MIN_SIZE_HINT)
    assert cli.main(['status', 'job-1']) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        'zc: dropped: a: 12 bytes written to an undeclared stdout', UNDECLARED_HINT.strip(),
        'zc: dropped: b: out not stored (3 bytes < min_size 10)', MIN_SIZE_HINT.strip()]
    assert cli.main(['status', 'job-1', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['dropped'] == DROPPED.split(', ')


@pytest.mark.parametrize('status, reason', [(200, 'OK'), (422, 'Unprocessable Entity')])
def test_zc_sql_says_it_answered_or_failed(monkeypatch, capsys, status, reason) -> None:
    from test_zc import QUERY, SQL_HEADERS, FakeAnswer, zc_sql
    headers = {**SQL_HEADERS, 'X-Nexe-Dropped': 'merge: 5 bytes written to an undeclared '
                                                'stdout'}
    if status != 200:
        headers.update({'X-Nexe-Retcode': '0,1,0', 'X-Nexe-Error': 'sql-2: exit 1: bad'})
    code, _, _, err = zc_sql(monkeypatch, capsys, FakeAnswer(status, reason, b'', headers),
                             QUERY, '-q')
    assert code == (0 if status == 200 else cli.EXIT_FAILED)
    assert err.endswith('zc: dropped: merge: 5 bytes written to an undeclared stdout\n' +
                        UNDECLARED_HINT)


def test_dropped_entries_are_read_from_the_header() -> None:
    result = report.parse(200, {**OK, 'X-Nexe-Dropped': DROPPED + ', ...'}, b'')
    assert (result.dropped, result.dropped_cut) == (DROPPED.split(', '), True)
    assert result.lost() == DROPPED.split(', ')
    assert display.dropped(report.parse(200, OK, b'')) == ''

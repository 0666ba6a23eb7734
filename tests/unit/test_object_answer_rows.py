"""A batch node's ``batch/reports`` row made from the worker's text of its report
(``RunResult.parts``) is the row its decoded values make, byte for byte."""

from __future__ import annotations

import json
import socket

import pytest

from zerocloud import wire
from zerocloud.object.answer import REPORT_NAMES, NodeAnswer
from zvm_core import pool as zvm_pool
from zvm_core.report import Accounting, ChannelAccounting, Report

STDIO = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))


def _sent(report: Report, tails: dict[str, bytes] | None = None) -> zvm_pool.RunResult:
    """``report`` as a caller gets it from its worker."""
    caller, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with caller, worker:
        zvm_pool._reply(worker, report, tails, 12.5)
        return zvm_pool._run_result(zvm_pool._recv(caller, zvm_pool._buffer())[0])


REPORTS = [
    Report('ok', 0, '', {'state': 'cached', 'violations': []},
           {'/dev/stdout': 'd41d8cd98f00b204e9800998ecf8427e'},
           Accounting(channels={'/dev/stdin': ChannelAccounting(1, 1024, 0, 0),
                                '/dev/stdout': ChannelAccounting(0, 0, 1, 25)}),
           'ok', 'native'),
    Report('ok', 0, '', {'state': 'cached', 'violations': []},      # a tail's etag
           {'/dev/stderr': 'd41d8cd98f00b204e9800998ecf8427e', '/dev/stdout': 'a' * 32},
           Accounting(123, 8, {}, {'/dev/stdin': ChannelAccounting(2, 1024, 0, 0)}, 0,
                      0.000412, 'entry'), 'ok', 'native'),
    Report('fault', None, 'caf\u00e9 \u2603 "quoted" {"/dev/stdout": "x"}, ]\n\ttab \U0001f600',
           {'state': 'failed', 'violations': [{'rule': 'r\u00e9', 'at': 3}]},
           {'/dev/stdout': 'a' * 32, '/dev/stderr': 'b' * 32, '/dev/other': 'c' * 32},
           Accounting(5, 6, {'nr9': 2}, {'/dev/x': ChannelAccounting(1, 2, 3, 4)}, 7, 0.1 + 0.2,
                      'resumed'),
           'Signal 11', 'emulated', 'because', True),
    Report('timeout', None, 'x' * 1000, {'state': None, 'violations': []}, {},
           Accounting(wall_time=1e-300), engine=None),
]


@pytest.mark.parametrize('report', REPORTS)
@pytest.mark.parametrize('stderr', [b'', b'line\n', b'\xff\xfe bad utf-8 \xe2\x98\x83'])
def test_a_row_from_the_workers_text_is_the_row_of_its_values(report, stderr) -> None:
    """Etags of undeclared devices left out or none to leave out, any text, float and
    stderr: the same bytes as the values the worker's report decodes to, and the same
    report."""
    result = _sent(report, {'/dev/stderr': stderr})
    assert result.parts is not None and result.tails == {'/dev/stderr': stderr}
    spec = wire.NodeSpec('n', ['n'], devices=STDIO)
    made = zvm_pool.RunResult(zvm_pool._report_fields(report))      # decoded values
    assert made.parts is None
    old, new = wire.ReportsBlock(REPORT_NAMES), wire.ReportsBlock(REPORT_NAMES)
    old.add(3, NodeAnswer(spec, made, stderr).values(), [('stdout', b'out')])
    new.add_encoded(3, NodeAnswer(spec, result, stderr).encoded(), [('stdout', b'out')])
    assert new.member() == old.member()
    assert NodeAnswer(spec, made, stderr).encoded() == json.dumps(
        NodeAnswer(spec, made, stderr).values()).encode()
    assert result.status == report.status and result.etags == report.etags
    assert result.fields == made.fields and result.report == report and result.ended == 12.5

"""A SQL query run as two jobs (its map nodes, then the merge) answers with their
``X-Nexe-*`` headers as one; past 1,000 nodes as counts (``zerocloud.sql.entry``),
rebuilt from each job's headers, which left ``X-Nexe-Dropped`` out."""

from __future__ import annotations

from zerocloud.sql import entry

SUMMARY = {'X-Nexe-Nodes': '2', 'X-Nexe-Failed': '0', 'X-Nexe-Status-Counts': 'ok 2',
           'X-Nexe-Retcode-Counts': '0 2', 'X-Nexe-Cdr-Total': '0.200, 1 1 1 1'}
SMALL = {'X-Nexe-System': 'merge', 'X-Nexe-Status': 'ok', 'X-Nexe-Retcode': '0',
         'X-Nexe-Cdr-Line': '0.100, 0.050, 1 2 3 4'}


def test_a_merged_answer_carries_the_bytes_and_outputs_dropped() -> None:
    first = {**SUMMARY, 'X-Nexe-Dropped': '2 nodes: 10 bytes written to an undeclared '
                                          'stdout, 3 outputs not stored (under their min_size)'}
    second = {**SMALL, 'X-Nexe-Dropped': 'merge: 5 bytes written to an undeclared stdout, '
                                         'merge: stdout not stored (0 bytes < min_size 1)'}
    out = entry._summed(first, second)
    assert out['X-Nexe-Nodes'] == '3'
    assert out['X-Nexe-Dropped'] == ('3 nodes: 15 bytes written to an undeclared stdout, '
                                     '4 outputs not stored (under their min_size)')


def test_a_merged_answer_with_nothing_dropped_says_nothing() -> None:
    assert 'X-Nexe-Dropped' not in entry._summed(SUMMARY, SMALL)

"""Manifest text shared by the ZeroVM-compatibility tests (``{d}`` is the session dir).

A plain module, not conftest: ``tests/`` holds two conftest files and only one
of them can be imported under that name.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / 'zvm_core' / 'zerovm' / 'sdk'

STD_CHANNELS = ('Channel = {d}/stdin, /dev/stdin, 0, 0, 1000, 1000000, 0, 0\n'
                'Channel = {d}/stdout, /dev/stdout, 0, 0, 0, 0, 1000, 1000000\n'
                'Channel = {d}/stderr, /dev/stderr, 0, 0, 0, 0, 1000, 1000000\n')
NVRAM_CHANNEL = 'Channel = {d}/nvram, /dev/nvram, 3, 0, 10, 100000, 0, 0\n'


def zerocloud_parse(stdout: str) -> dict:
    """zerocloud/objectquery.py (swift-2.0) on zerovm's stdout: split into 6, ints,
    status with newlines folded."""
    report = stdout.split('\n', 5)
    assert len(report) >= 6
    return {'validation': int(report[0]), 'daemon': int(report[1]),
            'retcode': int(report[2]), 'etag': report[3], 'cdr': report[4],
            'status': report[5].replace('\n', ' ').rstrip()}

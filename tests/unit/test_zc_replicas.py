"""A replicated node (``"replicate": 2``) is one node to ``zc``: the answer gives each
replica a value (``X-Nexe-System: sum,sum``), but only the first returns outputs (the
others' ``X-Nexe-Body-Bytes`` are 0)."""

from __future__ import annotations

import io
from pathlib import Path

from zerocloud.client import cli, report
from zerocloud.client.cli import build_parser

# two nodes of 3 replicas each, as the proxy answers: each replica a value, in node order
REPLICATED = {'Content-Type': 'text/plain', 'X-Nexe-System': 'sum-1,sum-1,sum-1,sum-2,sum-2,sum-2',
              'X-Nexe-Status': 'ok,ok,ok,ok,ok,ok', 'X-Nexe-Retcode': '0,0,0,0,0,0',
              'X-Nexe-Body-Bytes': '2,0,0,3,0,0'}


def test_split_writes_one_file_per_replicated_node(tmp_path: Path) -> None:
    # it wrote sum-1, an empty sum-1.2 and sum-1.3, then sum-2 and its empty two
    parts = tmp_path / 'parts'
    err = io.StringIO()
    client = cli.Client(build_parser().parse_args(['run', 'job.json', '--split', str(parts)]),
                        err=err)
    client.write_parts(report.parse(200, REPLICATED, b'a\nbb\n'), parts)
    assert sorted(p.name for p in parts.iterdir()) == ['sum-1', 'sum-2']
    assert (parts / 'sum-1').read_bytes() == b'a\n' and (parts / 'sum-2').read_bytes() == b'bb\n'
    assert err.getvalue() == f'{parts}/sum-1: 2\n{parts}/sum-2: 3\n'

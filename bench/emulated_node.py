"""CPU of one batch node on a warm emulated machine (issue 17): ``wc`` over 1 KiB.

A wildcard job runs one tiny node per object; the pool worker's emulated
template runs each one and is reset after it.  This times exactly that in
process, with the worker's channels: stdin and stdout host descriptors of
regular files (``FdBacking``, not owned), stderr a ``TailBacking``, no
start-up snapshot probed (the machine keeps snapshots, as the pool's
templates do).  A node is ``Machine.run`` + ``Machine.reset``
(channels built included), in CPU time (``time.process_time``: the host is
shared), per node, over blocks of ``--block`` nodes; the block median is
printed.

With ``--against TREE`` (another checkout, its extension built) the same
runs go on in a second process that imports that tree's code, blocks
alternating between the two: the median of the pairs' ratios is an A/B under
the same load.  Each side also says what its runs gave (fuel, system calls,
stdout): the two must agree.  ``--profile``: cProfile of this tree's nodes.

Usage: ``python bench/emulated_node.py [--nodes N] [--block B] [--against TREE]
[--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import p50, table  # noqa: E402

common.private_verdict_cache()

from zvm_core.channels import READ, WRITE, Channel, FdBacking, TailBacking  # noqa: E402
from zvm_core.elf import load_program  # noqa: E402
from zvm_core.engines.emulated.machine import Machine  # noqa: E402
from zvm_core.executor import Limits  # noqa: E402
from zvm_core.validator import Policy, default_cache, validate  # noqa: E402

# a batch node's: its object's LOCAL_* variables (zerocloud.wire.local_env)
ENV = {'LOCAL_OBJECT': 'on', 'LOCAL_PATH_INFO': '/AUTH_test/c/obj-00001',
       'LOCAL_CONTENT_LENGTH': '1024', 'LOCAL_CONTENT_TYPE': 'application/octet-stream',
       'LOCAL_HTTP_ETAG': 'a0c1e3d1f2e4b5a6978695a4b3c2d1e0',
       'LOCAL_HTTP_X_TIMESTAMP': '1764936000.12345'}


class Node:
    """A warm wc machine and the files of its node's channels."""

    def __init__(self, program: Path, tmp: Path) -> None:
        prog = load_program(program)
        self.machine = Machine(prog, validate(prog, Policy(), default_cache()), Limits(),
                               snapshots=True)      # as the pool's templates
        (tmp / 'in').write_bytes(common.text(1024))
        self.fd_in = os.open(tmp / 'in', os.O_RDONLY)
        self.fd_out = os.open(tmp / 'out', os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        self.last: dict = {}

    def one(self) -> None:
        channels = [Channel('/dev/stdin', FdBacking(self.fd_in, owned=False), READ),
                    Channel('/dev/stdout', FdBacking(self.fd_out, owned=False), WRITE),
                    Channel('/dev/stderr', TailBacking(4096), WRITE)]
        report = self.machine.run(channels, ['wc'], ENV, 0, 0, Limits(), probe=False)
        self.machine.reset()
        self.last = {'status': report.status, 'retcode': report.retcode,
                     'fuel': report.accounting.fuel, 'syscalls': report.accounting.syscalls,
                     'etags': report.etags}

    def block(self, nodes: int) -> float:
        """CPU seconds per node over ``nodes`` nodes."""
        os.ftruncate(self.fd_out, 0)
        os.lseek(self.fd_out, 0, os.SEEK_SET)
        t = time.process_time()
        for _ in range(nodes):
            os.lseek(self.fd_in, 0, os.SEEK_SET)
            self.one()
        return (time.process_time() - t) / nodes

    def outcome(self) -> dict:
        out = os.pread(self.fd_out, 1 << 20, 0)
        return {**self.last, 'stdout': hashlib.md5(out).hexdigest()}


def _serve(tmp: Path, program: Path) -> int:
    node = Node(program, tmp)
    print(json.dumps('ready'), flush=True)
    for line in sys.stdin:
        print(json.dumps([node.block(int(line)), node.outcome()]), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--nodes', type=int, default=2000, help='nodes per side')
    parser.add_argument('--block', type=int, default=100, help='nodes per timed block')
    parser.add_argument('--against', metavar='TREE', help='another checkout: paired A/B')
    parser.add_argument('--profile', action='store_true', help='cProfile this tree')
    parser.add_argument('--serve', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--program', help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix='zvm-bench-node-'))
    program = Path(opts.program) if opts.program else common.build('wc')
    if opts.serve:
        return _serve(tmp, program)
    print(common.environment())
    trees = {'this': str(Path(__file__).resolve().parent.parent)}
    if opts.against:
        trees['against'] = os.path.abspath(opts.against)
    sides = {k: common.ServeProcess(t, [__file__, '--serve', '--program', str(program)], k)
             for k, t in trees.items()}
    times: dict[str, list[float]] = {k: [] for k in sides}
    outcomes = {}
    try:
        for side in sides.values():     # warm up: translated code, caches
            side.ask(str(opts.block))
        for i in range(max(1, opts.nodes // opts.block)):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for k in order:
                cpu, outcomes[k] = sides[k].ask(str(opts.block))
                times[k].append(cpu)
    finally:
        for side in sides.values():
            side.close()
    rows = [[k, f'{p50(v) * 1e6:.1f} µs', f'{min(v) * 1e6:.1f} µs',
             json.dumps(outcomes[k], sort_keys=True)] for k, v in times.items()]
    if opts.against:
        pairs = [a / b for a, b in zip(times['this'], times['against'], strict=True)]
        rows.append(['this / against', f'{p50(pairs):.3f}', f'{min(pairs):.3f}', ''])
        if outcomes['this'] != outcomes['against']:
            print('the two trees ran the nodes differently: see the outcomes')
    table(f'wc over 1 KiB on a warm emulated machine, CPU per node (median of '
          f'{len(times["this"])} blocks of {opts.block})', ['tree', 'p50', 'min', 'outcome'],
          rows)
    if opts.profile:
        node = Node(program, tmp)
        node.block(opts.block)
        prof = cProfile.Profile()
        prof.runcall(node.block, opts.nodes)
        pstats.Stats(prof).sort_stats('tottime').print_stats(30)
    return 0


if __name__ == '__main__':
    sys.exit(main())

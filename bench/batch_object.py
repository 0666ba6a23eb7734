"""An object server's own CPU per node of a batch (issue 17), without a cluster.

The zerocloud filter (``ObjectExecMiddleware``) in front of a real Swift
``ObjectController`` on a temporary disk, in this process (as
``tests/unit/test_object_filter.py``), with its pool's workers: N objects of
1 KiB, then a batch of N ``wc`` nodes (one per object, as the proxy sends a
wildcard job's: ``batch/spec`` and ``batch/entries``) sent ``--reps`` times after a
warm-up one.  Printed: this process's CPU time (``time.process_time``: the
object server's main process, not its workers) per node, each time, and the
workers' own (``/proc/<pid>/stat``: not their guests', at the kernel's 10 ms
ticks), of it their system time (the kernel's, for them: forks, kills, waits),
and their children's (the native templates and guests: ``ZVM_NATIVE=off`` in the
environment runs them emulated, inside the workers, to compare).  On a
shared host the whole-cluster bench (``bench/scale.py``) spreads by a third
from run to run; this one, alternated between two trees (``PYTHONPATH``),
shows changes of a tenth.

The process is monkey-patched as Swift's servers are (``run_wsgi``: socket,
select, thread), so the pool's waits yield to the hub as in a server: unpatched,
each wait blocked the process, the batch's answers were written only once all its
nodes had run and no output file was used twice (a third more CPU per node, in
work no server does).  ``--profile FILE``: a ``cProfile`` of the measured batches,
in CPU time (``python -m pstats FILE``).

The batch asks for its answer in ``batch/reports`` blocks (``X-Zerovm-Reports``) when
the tree has them, a node's members each with ``--per-node`` (as a proxy of before);
the bytes of the answer per node are printed too.

With ``--against TREE`` (another checkout, its extension built), each tree's server
runs in a process of its own (this file, started in that tree with its code first
on its path) and their batches alternate, one of each in turn: an A/B under the same
load.

Usage: ``python bench/batch_object.py [--nodes 512] [--reps 3] [--per-node] [--profile FILE]
[--against TREE]``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

common.private_verdict_cache()

from swift.common.utils import Timestamp, eventlet_monkey_patch  # noqa: E402

eventlet_monkey_patch()         # as Swift's servers (run_wsgi), before any socket is made

from swift.common.swob import Request  # noqa: E402
from swift.obj.server import ObjectController  # noqa: E402

from zerocloud import wire  # noqa: E402
from zerocloud.object import ObjectExecMiddleware  # noqa: E402


def batch_body(count: int, program: bytes) -> bytes:
    """The request body of a batch of ``count`` wc nodes over /a/c/o0 ..., each
    node's ``argv[0]`` and ``SCRIPT_NAME`` its name, as the proxy sends a wildcard's
    (their entries ``set`` name, argv and env)."""
    devices = (wire.DeviceSpec('stdin', 'r', source='local'), wire.DeviceSpec('stdout', 'w'))
    limits = wire.NodeLimits(1 << 28, None, 60.0)
    entries = [wire.BatchEntry('sda1', 0, f'/a/c/o{i}', wire.NodeSpec(
        f'wc-{i + 1}', [f'wc-{i + 1}'], {'SCRIPT_NAME': f'wc-{i + 1}',
                                         'SCRIPT_FILENAME': 'swift://a/c/wc'},
        devices, limits, local_env=True)) for i in range(count)]
    shared = wire.SharedSpec(entries[0].spec)
    data = [e.to_json(shared) for e in entries]
    head = [wire.bytes_member(wire.EXE, program),
            wire.bytes_member(wire.BATCH_SPEC, shared.to_json())]
    return b''.join([*wire.stream_members(head),
        *(wire.entries_member(data[i:i + wire.ENTRIES_MAX])
          for i in range(0, len(data), wire.ENTRIES_MAX)), wire.TAR_END])


def answered(answer: bytes) -> int:
    """The nodes with a report in a batch's answer (blocks or members each)."""
    import io
    count = 0
    for name, f in wire.read_members(io.BytesIO(answer), None):
        if name == getattr(wire, 'REPORTS', None):
            count += sum(not isinstance(r, str) for _, r, _ in wire.read_reports(f.read()))
        elif name.endswith('/' + wire.REPORT):
            count += 1
    return count


def _times(pid: int) -> list[int]:
    """utime, stime, cutime, cstime of ``pid``, in ticks ([0] * 4 if it is gone)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return [int(x) for x in f.read().rsplit(')', 1)[1].split()[11:15]]
    except (FileNotFoundError, ProcessLookupError):
        return [0] * 4


def workers_cpu(pids: list[int]) -> tuple[float, float, float]:
    """Seconds of CPU of the workers ``pids``: (their user, their system, their
    children's): the children are the native templates and the guests (the loader
    starts them with ``CLONE_PARENT``), the ended ones reaped (``cutime``), the others
    as they are now (a child that ends between the two reads is missed)."""
    user = system = children = 0
    for pid in pids:
        utime, stime, cutime, cstime = _times(pid)
        try:
            with open(f'/proc/{pid}/task/{pid}/children') as f:
                live = [int(c) for c in f.read().split()]
        except FileNotFoundError:
            live = []
        user, system = user + utime, system + stime
        children += cutime + cstime + sum(sum(_times(c)[:2]) for c in live)
    tick = os.sysconf('SC_CLK_TCK')
    return user / tick, system / tick, children / tick


class _Server:
    """The object server in this process (its filter, pool and disk) with ``nodes``
    objects on it, and the body of a batch over them."""

    def __init__(self, nodes: int, per_node: bool) -> None:
        self.nodes = nodes
        self.blocks = {} if per_node or not hasattr(wire, 'READS_REPORTS') else {
            wire.READS_REPORTS: '1'}
        self.disk = Path(tempfile.mkdtemp(prefix='zvm-bench-batch-'))
        (self.disk / 'sda1').mkdir()
        conf = {'devices': str(self.disk), 'mount_check': 'false', 'disable_fallocate': 'true'}
        self.mw = ObjectExecMiddleware(ObjectController(conf), {
            **conf, 'zerovm_maxpool': '2', 'zerovm_maxqueue': '4'})
        for i in range(nodes):
            Request.blank(f'/sda1/0/a/c/o{i}', method='PUT', body=common.text(1024, seed=i),
                          headers={'X-Timestamp': Timestamp.now().internal,
                                   'Content-Type': 'text/plain'}).get_response(self.mw)
        self.body = batch_body(nodes, common.build('wc').read_bytes())

    def batch(self, profile: cProfile.Profile | None = None) -> list[float]:
        """Send the batch once: per node, ms of the server's CPU, of its workers' (user
        + system), of their system time, of their guests', of wall time; answer bytes."""
        req = Request.blank('/sda1/0/a/.zerocloud/batch', method='POST', body=self.body,
                            headers={wire.EXECUTE: wire.VERSION, wire.BATCH: str(self.nodes),
                                     'Content-Type': 'application/x-tar', **self.blocks})
        if profile:
            profile.enable()
        pids = self.mw._pool.pids if self.mw._pool is not None else []
        cpu, wall, work = time.process_time(), time.perf_counter(), workers_cpu(pids)
        resp = req.get_response(self.mw)
        answer = resp.body
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if pids == self.mw._pool.pids:
            user, system, guests = (now - then for now, then in zip(workers_cpu(pids), work,
                                                                     strict=True))
        else:       # a worker was replaced: its CPU is not comparable
            user = system = guests = float('nan')
        if profile:
            profile.disable()
        if resp.status_int != 200 or answered(answer) != self.nodes:
            sys.exit(f'the batch failed: {resp.status} {answer[:300]!r}')
        per = 1e3 / self.nodes
        return [cpu * per, (user + system) * per, system * per, guests * per, wall * per,
                len(answer) / self.nodes]

    def close(self) -> None:
        if self.mw._pool is not None:
            self.mw._pool.close()
        shutil.rmtree(self.disk, ignore_errors=True)


def _serve(opts: argparse.Namespace) -> int:
    """``--serve``: one tree's server for ``--against`` (this file, run in that tree with
    its code first on its path): a batch per line on stdin, its row as a JSON line."""
    server = _Server(opts.nodes, opts.per_node)
    try:
        server.batch()                  # warms the workers up
        print(json.dumps('ready'), flush=True)
        for _line in sys.stdin:
            print(json.dumps(server.batch()), flush=True)
    finally:
        server.close()
    return 0


class _Tree:
    """A ``--serve`` process of ``tree``."""

    def __init__(self, tree: str, opts: argparse.Namespace) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, '--serve', '--nodes', str(opts.nodes),
             *(['--per-node'] if opts.per_node else [])], cwd=tree,
            env={**os.environ, 'PYTHONPATH': tree}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        if self.ask(None) != 'ready':
            raise SystemExit(f'the server in {tree} did not start')

    def ask(self, line: str | None):
        if line is not None:
            self.proc.stdin.write(line + '\n')
            self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise SystemExit('a server process ended')
        return json.loads(answer)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def _paired(opts: argparse.Namespace) -> list[list[str]]:
    """``--against``: each tree's server in its own process, one batch each in turn
    (ABBA), so both see the same load."""
    trees: dict[str, _Tree] = {}
    rows = []
    try:
        for name, tree in (('this', str(common.REPO)), ('against', opts.against)):
            trees[name] = _Tree(os.path.abspath(tree), opts)
        for rep in range(opts.reps):
            order = list(trees) if rep % 2 else list(reversed(trees))
            load = os.getloadavg()[0]
            got = {name: trees[name].ask('batch') for name in order}
            rows += [[str(rep + 1), name, *_cells(got[name]), f'{load:.1f}'] for name in trees]
    finally:
        for tree in trees.values():
            tree.close()
    return rows


def _cells(row: list[float]) -> list[str]:
    return [*(f'{v:.3f}' for v in row[:5]), f'{row[5]:.0f}']


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--nodes', type=int, default=512, help='nodes of the batch (<= 512)')
    parser.add_argument('--reps', type=int, default=3, help='batches measured')
    parser.add_argument('--profile', metavar='FILE', help='write a CPU-time cProfile of the '
                        'measured batches to FILE')
    parser.add_argument('--per-node', action='store_true', help='answer as to a proxy of '
                        'before batch/reports: a node\'s members each')
    parser.add_argument('--against', metavar='TREE', help='another checkout: paired A/B, '
                        'batches alternated between the two trees\' servers')
    parser.add_argument('--serve', action='store_true', help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.serve:
        return _serve(opts)
    print(common.environment())
    columns = ['CPU ms/node', 'workers ms/node', 'of it system', 'guests ms/node',
               'wall ms/node', 'answer B/node']
    if opts.against:
        if opts.profile:
            parser.error('--profile measures this process: not with --against')
        rows = _paired(opts)
        columns = ['batch', 'tree', *columns, 'load']
    else:
        profile = cProfile.Profile(time.process_time) if opts.profile else None
        server = _Server(opts.nodes, opts.per_node)
        try:
            server.batch()                  # warms the workers up
            rows = [[str(rep + 1), *_cells(server.batch(profile))] for rep in range(opts.reps)]
        finally:
            server.close()
        if profile:
            profile.dump_stats(opts.profile)
        columns = ['batch', *columns]
    common.table(f'A batch of {opts.nodes} wc nodes to one object server (in process), '
                 f'load {os.getloadavg()[0]:.1f}'
                 + (', blocks' if not opts.per_node and hasattr(wire, 'READS_REPORTS')
                    else '') + (f'; against: {opts.against}' if opts.against else ''),
                 columns, rows,
                 note='CPU: the object server\'s main process; workers: its pool\'s '
                      'workers (not their guests), of it in the kernel (system); '
                      'guests: the workers\' children (native templates and guests)')
    return 0


if __name__ == '__main__':
    sys.exit(main())

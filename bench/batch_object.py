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

Usage: ``python bench/batch_object.py [--nodes 512] [--reps 3] [--per-node] [--profile FILE]``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import shutil
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--nodes', type=int, default=512, help='nodes of the batch (<= 512)')
    parser.add_argument('--reps', type=int, default=3, help='batches measured')
    parser.add_argument('--profile', metavar='FILE', help='write a CPU-time cProfile of the '
                        'measured batches to FILE')
    parser.add_argument('--per-node', action='store_true', help='answer as to a proxy of '
                        'before batch/reports: a node\'s members each')
    opts = parser.parse_args(argv)
    blocks = {} if opts.per_node or not hasattr(wire, 'READS_REPORTS') else {
        wire.READS_REPORTS: '1'}
    profile = cProfile.Profile(time.process_time) if opts.profile else None
    print(common.environment())
    disk = Path(tempfile.mkdtemp(prefix='zvm-bench-batch-'))
    try:
        (disk / 'sda1').mkdir()
        conf = {'devices': str(disk), 'mount_check': 'false', 'disable_fallocate': 'true'}
        mw = ObjectExecMiddleware(ObjectController(conf), {
            **conf, 'zerovm_maxpool': '2', 'zerovm_maxqueue': '4'})
        for i in range(opts.nodes):
            Request.blank(f'/sda1/0/a/c/o{i}', method='PUT', body=common.text(1024, seed=i),
                          headers={'X-Timestamp': Timestamp.now().internal,
                                   'Content-Type': 'text/plain'}).get_response(mw)
        body = batch_body(opts.nodes, common.build('wc').read_bytes())
        rows = []
        for rep in range(opts.reps + 1):        # the first one warms the workers up
            req = Request.blank('/sda1/0/a/.zerocloud/batch', method='POST', body=body,
                                headers={wire.EXECUTE: wire.VERSION, wire.BATCH: str(opts.nodes),
                                         'Content-Type': 'application/x-tar', **blocks})
            if profile and rep:
                profile.enable()
            pids = mw._pool.pids if mw._pool is not None else []
            cpu, wall, work = time.process_time(), time.perf_counter(), workers_cpu(pids)
            resp = req.get_response(mw)
            answer = resp.body
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if pids == mw._pool.pids:
                user, system, guests = (now - then for now, then in zip(workers_cpu(pids), work,
                                                                         strict=True))
            else:       # a worker was replaced: its CPU is not comparable
                user = system = guests = float('nan')
            if profile:
                profile.disable()
            if resp.status_int != 200 or answered(answer) != opts.nodes:
                sys.exit(f'the batch failed: {resp.status} {answer[:300]!r}')
            if rep:
                rows.append([str(rep), f'{cpu / opts.nodes * 1e3:.3f}',
                             f'{(user + system) / opts.nodes * 1e3:.3f}',
                             f'{system / opts.nodes * 1e3:.3f}',
                             f'{guests / opts.nodes * 1e3:.3f}',
                             f'{wall / opts.nodes * 1e3:.3f}',
                             f'{len(answer) / opts.nodes:.0f}'])
        mw._pool.close()
        if profile:
            profile.dump_stats(opts.profile)
    finally:
        shutil.rmtree(disk, ignore_errors=True)
    common.table(f'A batch of {opts.nodes} wc nodes to one object server (in process), '
                 f'load {os.getloadavg()[0]:.1f}' + (', blocks' if blocks else ''),
                 ['batch', 'CPU ms/node', 'workers ms/node', 'of it system', 'guests ms/node',
                  'wall ms/node', 'answer B/node'],
                 rows, note='CPU: the object server\'s main process; workers: its pool\'s '
                            'workers (not their guests), of it in the kernel (system); '
                            'guests: the workers\' children (native templates and guests)')
    return 0


if __name__ == '__main__':
    sys.exit(main())

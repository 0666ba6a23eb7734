"""Warm native start of musl hello through the pool, with the workers' CPU per start.

``bench/pool.py``'s first row (a warm start, client-observed, one caller, a
pool of 2 workers) alone, next to what each start costs the pool's
processes, so that an A/B under load compares CPU as well as latency:

- worker: CPU of the worker processes per start, in nanoseconds: the time
  their live threads ran (``/proc/PID/task/TID/schedstat``: a thread that ended
  meanwhile is not counted, none does in a warm hello; where the kernel has no
  schedstat, user+system from ``/proc/PID/stat`` in clock ticks, ~10 ms);
- children: the CPU of the runs' processes the workers reaped (``cutime`` +
  ``cstime``: the guests, which are the worker's children) per start, in ticks;
- templates: CPU of the template processes (the fork servers) per start, as
  the workers';
- switches: the workers' context switches per start (voluntary + involuntary,
  ``/proc/PID/status``): each is a cold cache for the Python that follows.
- with ``--msr`` (``perf``, root): the MSR writes per start of the pool's
  processes (its workers, their templates and every child those fork), all of
  them and those of the CPUID-faulting MSR (AMD ``HWCR`` 0xc0010015, Intel
  0x140): under a hypervisor each is a VM exit, and the guest's faulting
  flags cost one at each switch between a process that has them and one that
  has not (``fastcall.c``: carry).  A count, not a time: it does not move with
  the host's load, so a change to those switches shows at load 10 as at 1.

With ``--against TREE`` (another checkout, its extension built), a second
pool's workers run that tree's code (started in it; the caller side is this
tree's for both) and requests alternate between the two pools, one to each
in turn: an A/B under the same load, which a loaded host's noise (load 10+ on
2 CPUs: p50 varies 30 % between blocks) does not drown.

With ``--callers`` as well, the caller side (``zvm_core.pool`` in the process
that calls ``Pool.run``) is each tree's too: each pool is driven by a process
of its own that imports its tree's code, and the two take turns of
``--block`` starts (one runs while the other waits); a column gives the
caller's own CPU per start (its process: ``Pool.run``, the system calls it makes).

Usage: ``python bench/warm_hello.py [--starts N] [--rounds R] [--workers W]
[--against TREE [--callers [--block B]]] [--engine emulated] [--gap S] [--msr]`` (``emulated``:
the emulator's warm machines, for comparison; their runs have no child or
template to count).  ``--gap SECONDS``: the caller waits that long after each
start (not with ``--callers``): back to back, a start finds every process of the
pool awake, its CPUs busy; after a pause the wake-ups of sleeping CPUs are on
its path, as on a quiet server.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import ms, p50, p99, table  # noqa: E402

common.private_verdict_cache()

from pool import channels, pool_run  # noqa: E402

from zvm_core.pool import Pool  # noqa: E402

TICK = os.sysconf('SC_CLK_TCK')


def _stat(pid: int) -> list[str]:
    with open(f'/proc/{pid}/stat') as f:
        return f.read().rpartition(')')[2].split()


def _switches(pid: int) -> int:
    total = 0
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.endswith('ctxt_switches:', 0, line.find(':') + 1):
                total += int(line.split()[1])
    return total


def _children(pid: int) -> list[int]:
    kids = []
    for task in os.listdir(f'/proc/{pid}/task'):
        try:
            with open(f'/proc/{pid}/task/{task}/children') as f:
                kids += [int(k) for k in f.read().split()]
        except OSError:
            continue
    return kids


def _ran(pid: int, stat: list[str]) -> float:
    """Seconds of CPU the process has used: its threads' run time in nanoseconds
    (schedstat), or its user+system clock ticks where the kernel has no schedstat."""
    try:
        return sum(int(open(f'/proc/{pid}/task/{tid}/schedstat').read().split()[0])
                   for tid in os.listdir(f'/proc/{pid}/task')) / 1e9
    except (OSError, ValueError, IndexError):
        return (int(stat[11]) + int(stat[12])) / TICK


def sample(workers: list[int]) -> dict[str, float]:
    """Seconds of CPU so far: the workers', their reaped children's, their templates'
    (live children that are not zombies), and the workers' context switches."""
    got = {'worker': 0.0, 'children': 0.0, 'templates': 0.0, 'switches': 0}
    for pid in workers:
        f = _stat(pid)      # fields from state: utime is 11, stime 12, cutime 13, cstime 14
        got['worker'] += _ran(pid, f)
        got['children'] += (int(f[13]) + int(f[14])) / TICK
        got['switches'] += _switches(pid)
        for kid in _children(pid):
            try:
                k = _stat(kid)
                if k[0] != 'Z':
                    got['templates'] += _ran(kid, k)
            except OSError:
                continue
    return got


FAULTING_MSRS = ('c0010015', '140')     # AMD HWCR (CpuidUserDis), Intel MISC_FEATURES_ENABLES


class MsrCount:
    """MSR writes host-wide while it records (``perf record``), counted for the
    processes of each pool: their pids now (workers and their live children, the
    templates) and every process forked from them meanwhile (a template's children
    are ``CLONE_PARENT``: the fork events name the template)."""

    def __init__(self) -> None:
        if shutil.which('perf') is None:
            sys.exit('--msr needs perf (linux-perf) on the PATH')
        fd, self.data = tempfile.mkstemp(prefix='warm_hello-', suffix='.perf')
        os.close(fd)
        self.proc = subprocess.Popen(
            ['perf', 'record', '-q', '-a', '-o', self.data, '-e', 'msr:write_msr',
             '-e', 'sched:sched_process_fork'], stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)         # perf is recording (its start is not on a start's path)
        if self.proc.poll() is not None:
            sys.exit(f'--msr: perf record failed: {self.proc.stderr.read().strip()}')

    def stop(self, pools: dict[str, list[int]]) -> dict[str, tuple[int, int]]:
        """(all MSR writes, faulting-MSR writes) by each pool's processes (``pools``:
        name -> its workers)."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait()
        try:
            out = subprocess.run(['perf', 'script', '-i', self.data, '-F', 'pid,event,trace'],
                                 capture_output=True, text=True, check=True).stdout
        finally:
            os.unlink(self.data)
        owner = {pid: name for name, workers in pools.items()
                 for w in workers for pid in (w, *_children(w))}
        counts = {name: [0, 0] for name in pools}
        for line in out.splitlines():
            pid, _, rest = line.strip().partition(' ')
            event, _, trace = rest.strip().partition(': ')
            if event.endswith('sched_process_fork'):
                fields = dict(f.split('=', 1) for f in trace.split() if '=' in f)
                if int(fields['pid']) in owner:
                    owner[int(fields['child_pid'])] = owner[int(fields['pid'])]
            elif pid.isdigit() and int(pid) in owner:
                counts[owner[int(pid)]][0] += 1
                if trace.split(',')[0].strip() in FAULTING_MSRS:
                    counts[owner[int(pid)]][1] += 1
        return {name: (n, faulting) for name, (n, faulting) in counts.items()}


def _pool(workers: int, tree: str | None) -> Pool:
    """A pool whose workers import ``tree``'s code (this tree's if None): ``python -m``
    puts its working directory first on its path, so they start in ``tree``."""
    here = os.getcwd()
    os.chdir(tree or common.REPO)
    try:
        return Pool(workers)
    finally:
        os.chdir(here)


def _caller_cpu() -> float:
    """Seconds of CPU this process (the caller) has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _serve(opts: argparse.Namespace) -> int:
    """``--serve``: one tree's caller side (``--callers``): a pool of its tree's
    workers, driven in turns that the parent asks for on stdin (a number of starts;
    ``sample``: the CPU so far), answered as JSON lines on stdout."""
    hello = common.build('hello')
    pool = _pool(opts.workers, opts.serve)
    try:
        with channels() as specs:
            for _ in range(20 * opts.workers):
                pool_run(pool, hello, specs, engine=opts.engine)
            print(json.dumps('ready'), flush=True)
            for line in sys.stdin:
                if line.strip() == 'sample':
                    print(json.dumps({**sample(pool.pids), 'caller': _caller_cpu()}),
                          flush=True)
                    continue
                times = [common.timed(pool_run, pool, hello, specs, engine=opts.engine)[0]
                         for _ in range(int(line))]
                print(json.dumps(times), flush=True)
    finally:
        pool.close()
    return 0


def _caller(tree: str, opts: argparse.Namespace) -> common.ServeProcess:
    """A ``--serve`` caller process started in ``tree``."""
    return common.ServeProcess(tree, [__file__, '--serve', tree, '--workers', str(opts.workers),
                                      '--engine', opts.engine], 'caller')


def _callers(opts: argparse.Namespace) -> list[list]:
    """The rounds of ``--callers``: each tree's caller side in its own process."""
    rows = []
    callers = {'this': _caller(str(common.REPO), opts),
               'against': _caller(os.path.abspath(opts.against), opts)}
    try:
        time.sleep(0.2)
        for r in range(opts.rounds):
            times: dict[str, list[float]] = {name: [] for name in callers}
            load = os.getloadavg()[0]
            before = {name: c.ask('sample') for name, c in callers.items()}
            for i in range(0, opts.starts, opts.block):
                order = list(callers) if i // opts.block % 2 else list(reversed(callers))
                for name in order:
                    times[name] += callers[name].ask(str(min(opts.block, opts.starts - i)))
            time.sleep(0.05)
            for name, caller in callers.items():
                after = caller.ask('sample')
                per = {k: (after[k] - before[name][k]) / opts.starts for k in after}
                rows.append(_row(r, name, opts.starts, times[name], per, load))
    finally:
        for caller in callers.values():
            caller.close()
    return rows


def _row(r: int, name: str, n: int, times: list[float], per: dict[str, float],
         load: float, msr: tuple[int, int] | None = None) -> list:
    caller = f"{per['caller'] * 1e6:.0f}" if 'caller' in per else '-'
    row = [r + 1, name, n, ms(p50(times)), ms(p99(times)), caller,
           f"{per['worker'] * 1e6:.0f}", f"{per['children'] * 1e6:.0f}",
           f"{per['templates'] * 1e6:.0f}", f"{per['switches']:.1f}", f'{load:.1f}']
    if msr is not None:
        row[-1:-1] = [f'{msr[0] / n:.2f}', f'{msr[1] / n:.2f}']
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--starts', type=int, default=1000, help='warm starts per round')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--workers', type=int, default=2, help='workers per pool')
    parser.add_argument('--against', metavar='TREE', help='another checkout: paired A/B')
    parser.add_argument('--callers', action='store_true',
                        help="with --against: each tree's caller side too, in its own process")
    parser.add_argument('--block', type=int, default=20,
                        help='starts per turn of each caller (--callers)')
    parser.add_argument('--engine', choices=('native', 'emulated'), default='native')
    parser.add_argument('--gap', type=float, default=0.0, metavar='SECONDS',
                        help='idle time after each start (the CPUs may sleep in '
                             'between, as on a quiet server)')
    parser.add_argument('--msr', action='store_true',
                        help="count the pool processes' MSR writes per start (perf, root)")
    parser.add_argument('--serve', metavar='TREE', help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.serve:
        return _serve(opts)
    if opts.callers and not opts.against:
        parser.error('--callers needs --against TREE')
    if opts.callers and opts.msr:
        parser.error('--msr is for one caller (not --callers)')
    if opts.callers and opts.gap:
        parser.error('--gap is for one caller (not --callers)')
    title = (f'Warm {opts.engine} start, musl hello (pool of {opts.workers}, 1 caller)'
             + (f'; against: {opts.against}' if opts.against else '')
             + (f'; {opts.gap * 1e3:g} ms idle after each start' if opts.gap else '')
             + ("; each tree's caller side" if opts.callers else ''))
    rows = _callers(opts) if opts.callers else _paired(opts)
    msr = ['MSR writes/start', 'faulting-MSR writes/start'] if opts.msr else []
    table(title, ['round', 'tree', 'n', 'p50', 'p99', 'caller us/start', 'worker us/start',
                  'children us/start', 'templates us/start', 'worker switches/start', *msr,
                  'load'],
          rows, note='worker and template CPU from schedstat (ns), children from /proc/PID/stat '
                     'and the caller from getrusage (clock ticks: ~10 ms resolution, meaningful '
                     'over 1000+ starts); goal (issue 16): p50 <= 0.5 ms')
    return 0


def _paired(opts: argparse.Namespace) -> list[list]:
    """The rounds of one caller (this process) alternating between the pools."""
    hello = common.build('hello')
    trees = {'this': None} if opts.against is None else {'this': None, 'against': opts.against}
    rows = []
    pools = {name: _pool(opts.workers, tree) for name, tree in trees.items()}
    try:
        with channels() as specs:
            for pool in pools.values():
                for _ in range(20 * opts.workers):          # a template in every worker
                    pool_run(pool, hello, specs, engine=opts.engine)
            time.sleep(0.2)
            for r in range(opts.rounds):
                times: dict[str, list[float]] = {name: [] for name in pools}
                load = os.getloadavg()[0]
                before = {name: sample(pool.pids) for name, pool in pools.items()}
                counter = MsrCount() if opts.msr else None
                for i in range(opts.starts):
                    order = list(pools) if i % 2 else list(reversed(pools))
                    for name in order:
                        t, _ = common.timed(pool_run, pools[name], hello, specs,
                                            engine=opts.engine)
                        times[name].append(t)
                        if opts.gap:
                            time.sleep(opts.gap)
                time.sleep(0.05)            # the last start's clean-up
                msrs = counter.stop({name: pool.pids for name, pool in pools.items()}) \
                    if counter is not None else {}
                for name, pool in pools.items():
                    after = sample(pool.pids)
                    per = {k: (after[k] - before[name][k]) / opts.starts for k in after}
                    rows.append(_row(r, name, opts.starts, times[name], per, load,
                                     msrs.get(name)))
    finally:
        for pool in pools.values():
            pool.close()
    return rows


if __name__ == '__main__':
    sys.exit(main())

"""The CPU of a native template's children without a run (issues 16 and 17).

A warm native start forks its guest from the program's template
(``zvm_core.engines.native.supervisor.Template``).  Here a template of musl
hello hands out ``--children`` children the way the pool's worker does after
each reply -- asked for (``prefork``), taken in at the gate (``idle``: its hello,
``fastcall.gate``), then released as a run's end does (``reap_later``, killed
by the next ``prefork``, reaped) -- and none of them runs.  Printed per child:
the CPU of the children themselves (fork, set-up to the gate, death:
``RUSAGE_CHILDREN``), of the template (its ``schedstat``: the fork), and of this
process (the worker's share: ``time.thread_time``), and its voluntary and
involuntary context switches.  In process, without the pool's sockets nor a
guest's run, it spreads far less than the pool's benchmarks: alternated between
two trees (``PYTHONPATH``), it shows changes of a tenth in a child's set-up.
``--chunk N``: the children handed out as a batch's nodes are, N to a request
(``take`` told the nodes after it, ``prefork`` after each, ``idle`` once a chunk).

Usage: ``python bench/template_children.py [--children 1500] [--rounds 3] [--chunk N]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from zvm_core.elf import load_program  # noqa: E402
from zvm_core.engines.native.supervisor import Template  # noqa: E402


def _switches() -> tuple[int, int]:
    """This thread's voluntary and involuntary context switches so far."""
    got = {}
    with open('/proc/thread-self/status') as f:
        for line in f:
            name, _, value = line.partition(':')
            got[name] = value.strip()
    return int(got['voluntary_ctxt_switches']), int(got['nonvoluntary_ctxt_switches'])


def _idle(template: Template) -> None:
    """What the worker does while it waits for work (``Templates.idle``), alone."""
    while fds := template.waiting():
        poll = select.poll()
        for fd in fds:
            poll.register(fd, select.POLLIN)
        for fd, _events in poll.poll(10_000):
            template.tend(fd)


def _one(template: Template, after: int = 0) -> None:
    """A child taken, released as a run's end does, the next one asked for; taken in
    at once, or (``after``: the nodes of its batch after it) once the batch ends."""
    child = template.take(after)
    if child.memfd is not None:
        os.close(child.memfd)
    template.reap_later(child.pid, child.pidfd, child.listener)
    template.prefork()
    if not after:
        _idle(template)


def measure(template: Template, count: int, chunk: int = 0) -> list[object]:
    """One round: per child, its CPU, the template's, this process's (us) and switches."""
    with open(f'/proc/{template.pid}/schedstat') as f:
        forks = int(f.read().split()[0])
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    own, switches = time.thread_time(), _switches()
    for i in range(count):
        _one(template, chunk - 1 - i % chunk if chunk else 0)
    own = time.thread_time() - own
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(f'/proc/{template.pid}/schedstat') as f:
        forks = int(f.read().split()[0]) - forks
    voluntary, involuntary = (b - a for a, b in zip(switches, _switches(), strict=True))
    children = (after.ru_utime + after.ru_stime) - (kids.ru_utime + kids.ru_stime)
    return [f'{children / count * 1e6:.0f}', f'{forks / count / 1e3:.0f}',
            f'{own / count * 1e6:.0f}', f'{voluntary / count:.2f}', f'{involuntary / count:.2f}']


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--children', type=int, default=1500, help='children per round')
    parser.add_argument('--rounds', type=int, default=3, help='rounds measured')
    parser.add_argument('--chunk', type=int, default=0, help="children handed out as a "
                        "batch's nodes, this many to a request (0: one run at a time)")
    opts = parser.parse_args(argv)
    print(common.environment())
    template = Template(load_program(str(common.build('hello'))), 64 << 20)
    try:
        template.prefork()
        _idle(template)
        for _ in range(20):         # warm-up
            _one(template)
        rows = [[str(i + 1), *measure(template, opts.children, opts.chunk)]
                for i in range(opts.rounds)]
    finally:
        template.close()
    common.table(f'A template\'s children, {opts.children} per round'
                 + (f' in chunks of {opts.chunk}' if opts.chunk else '') + ', no run, load '
                 f'{os.getloadavg()[0]:.1f}',
                 ['round', 'children us', 'template us', 'worker us', 'vcsw', 'ivcsw'], rows,
                 note='per child: its own CPU (fork, set-up, death), the template\'s (the '
                      'fork), this process\'s (ask, take in, kill, reap); its switches')
    return 0


if __name__ == '__main__':
    sys.exit(main())

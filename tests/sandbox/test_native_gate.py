"""A template's child does ahead of its run, before the gate, what it can: its run's
path has no page fault of the loader's, nor of the pages the run's start writes
(``loader.c``: forget before the gate, prefault; ``supervisor.Guest.written_ahead``).
"""

from __future__ import annotations

import dataclasses

import pytest

from zvm_core import engines
from zvm_core.channels import WRITE, Channel, MemoryBacking
from zvm_core.elf import load_program
from zvm_core.engines.native import supervisor

pytestmark = pytest.mark.skipif(engines.native_unavailable() is not None,
                                reason=f'native engine: {engines.native_unavailable()}')


def _minor_faults(pid: int) -> int:
    with open(f'/proc/{pid}/stat') as f:
        return int(f.read().rpartition(')')[2].split()[7])


def test_a_template_childs_run_of_hello_takes_no_page_fault(guest):
    """From its gate to its exit, musl hello in a template's child faults no page in:
    the loader zeroes its tables and touches its stack's last page before the gate (it
    copied four pages after it, each a fault on the run's path), and the child copied
    the program's data page and the stack's top page ahead (the guest's first write,
    the worker's write of the initial stack).  The same bytes either way."""
    program = load_program(str(guest('hello')))
    template = supervisor.Template(program, 64 << 20)
    try:
        for _ in range(2):
            template.prefork()
            template.idle()
            pid = template._ready[0].pid
            before = _minor_faults(pid)
            out = MemoryBacking()
            report = supervisor.run(program, [Channel('/dev/stdout', out, WRITE)], ['hello'],
                                    {}, 64 << 20, 30, template=template)
            assert (report.status, report.retcode) == ('ok', 0)
            assert bytes(out.data) == b'Hello, world!\n'
            assert _minor_faults(pid) == before     # still there: killed after the reply
    finally:
        template.close()


def test_the_data_written_ahead_is_bounded(guest):
    """A program whose data is large has only the stack's top page copied ahead: each
    waiting child would hold copies of pages its run may never write."""
    hello = supervisor.Guest(load_program(str(guest('hello'))), 64 << 20)
    ahead = hello.written_ahead()
    assert ahead[0] == (supervisor.STACK_TOP - supervisor.PAGE, supervisor.PAGE)
    assert 1 < len(ahead) and sum(size for _, size in ahead[1:]) <= supervisor.PREFAULTED
    assert hello.image_spec(template=True).prefaults == ahead
    assert hello.image_spec().prefaults == []               # a spawned loader's own run
    program = hello.program
    big = dataclasses.replace(program, segments=[
        dataclasses.replace(s, data=bytes(supervisor.PREFAULTED + 1),
                            memsz=max(s.memsz, supervisor.PREFAULTED + 1))
        if s.writable else s for s in program.segments])
    assert supervisor.Guest(big, 64 << 20).written_ahead() == ahead[:1]

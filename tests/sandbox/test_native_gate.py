"""A template's child does ahead of its run, before the gate, what it can: its run's
path has no page fault of the loader's, nor of the pages the run's start writes
(``loader.c``: forget before the gate, prefault; ``supervisor.Guest.written_ahead``).
"""

from __future__ import annotations

import dataclasses
import os

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


def test_a_child_copies_ahead_one_page_of_the_programs_data(guest):
    """What a child copies ahead is bounded whatever the program: the stack's top page
    and, of its data, the page where the file bytes end (a program with much data has
    the rest copied as it writes it, not a child's copy of all of it waiting)."""
    hello = load_program(str(guest('hello')))
    program = dataclasses.replace(hello, segments=tuple(
        dataclasses.replace(s, vaddr=0x404fc0, memsz=0x100000, data=bytes(0x20000))
        if s.writable else s for s in hello.segments))
    layout = supervisor.Guest(program, 64 << 20)
    page = supervisor.PAGE
    ahead = [(supervisor.STACK_TOP - page, page), (0x424000, page)]
    assert layout.written_ahead() == ahead
    assert layout.image_spec(template=True).prefaults == ahead
    assert layout.image_spec().prefaults == []      # a spawned loader's run writes them


def test_a_fork_takes_the_template_no_page_fault(guest):
    """The template writes between forks only on a stack no child gets (loader.c:
    serve): a fork leaves no page it writes shared with the child, so it takes no
    copy-on-write fault per run (it took two: its stack's page and its request byte's).
    Its child's run is the same (its stack is the loader's, as a spawned loader's)."""
    program = load_program(str(guest('hello')))
    template = supervisor.Template(program, 64 << 20)
    try:
        template.prefork()
        template.idle()         # the first fork: its own stack's pages made
        before = _minor_faults(template.pid)
        for _ in range(4):
            out = MemoryBacking()
            report = supervisor.run(program, [Channel('/dev/stdout', out, WRITE)], ['hello'],
                                    {}, 64 << 20, 30, template=template)
            assert (report.status, report.retcode, bytes(out.data)) == \
                ('ok', 0, b'Hello, world!\n')
            template.prefork()
            template.idle()
        assert _minor_faults(template.pid) == before
    finally:
        template.close()


def test_a_template_childs_run_reads_its_memory_without_proc_until_it_pays(guest, tmp_path):
    """A template's child comes without its /proc/PID/mem (its run's bytes are one
    process_vm_writev): the C loop reads what the guest writes with process_vm_readv,
    and from a run's 64th read opens the file (fastcall.c: guest_peek), closed when the
    loop ends; Python opens its own if a call it answers reads the guest (a channel in
    memory).  The bytes are the same either way (80 blocks of 64 KiB: a write each),
    and no descriptor is left open in the worker."""
    from zvm_core.channels import FdBacking
    program = load_program(str(guest('emit')))
    blocks = 80
    block = 1 << 16
    want = b''.join(f'tag {k:08d}\n'.encode().ljust(block, bytes([ord('a') + k % 26]))
                    for k in range(blocks))
    template = supervisor.Template(program, 64 << 20)
    try:
        template.prefork()
        template.idle()
        fds = len(os.listdir('/proc/self/fd'))
        for i in range(4):
            path = tmp_path / f'out{i}'
            with open(path, 'wb') as f:
                backing = FdBacking(f.fileno(), owned=False) if i % 2 else MemoryBacking()
                report = supervisor.run(program, [Channel('/dev/stdout', backing, WRITE)],
                                        ['emit', str(len(want)), 'tag'], {}, 64 << 20, 60,
                                        template=template)
            got = path.read_bytes() if i % 2 else bytes(backing.data)
            assert report.status == 'ok', report
            assert got == want
            template.prefork()
            template.idle()
            assert len(os.listdir('/proc/self/fd')) == fds
    finally:
        template.close()

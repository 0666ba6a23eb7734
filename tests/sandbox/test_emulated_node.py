"""A reused emulated machine runs a batch's nodes as fresh machines would.

The per-run work of ``Machine.run`` and ``Machine.reset`` is cut for tiny
nodes (issue 17: cached AT_RANDOM bytes, reads straight into guest memory,
...): every run of one machine still gives what a fresh machine gives,
bytes, fuel and report alike, whatever ran on it before.
"""

from __future__ import annotations

import os

import pytest

from zvm_core.channels import READ, WRITE, Channel, FdBacking, MemoryBacking
from zvm_core.syscalls.random import SeededStream, at_random


def _run(machine, argv: list[str], stdin: bytes = b'', seed: int = 0, env=None):
    out = MemoryBacking()
    channels = [Channel('/dev/stdin', MemoryBacking(stdin), READ),
                Channel('/dev/stdout', out, WRITE), Channel('/dev/stderr', MemoryBacking(), WRITE)]
    report = machine.run(channels, argv, env or {}, seed=seed, probe=False)
    return report, bytes(out.data)


def _seen(report, out: bytes) -> tuple:
    """All a run shows: its report (but wall time), its output."""
    acc = report.accounting
    return (report.status, report.retcode, report.message, report.exit_state, report.etags,
            acc.fuel, acc.syscalls, acc.channels, acc.unknown_syscalls, acc.peak_memory, out)


def test_at_random_is_the_seeds_stream():
    assert at_random(7) == SeededStream(7, b'AT_RANDOM').take(16)
    assert at_random(0) != at_random(1)


def test_seeds_alternating_on_one_machine_give_each_seeds_bytes(guest, machine_for):
    prog = guest('timeprint')
    fresh = {seed: _seen(*_run(machine_for(prog), ['timeprint'], seed=seed)) for seed in (0, 1)}
    reused = machine_for(prog)
    for seed in (0, 1, 0, 1):
        assert _seen(*_run(reused, ['timeprint'], seed=seed)) == fresh[seed]


def test_reads_into_guest_memory_give_what_a_fresh_machine_reads(guest, machine_for, tmp_path):
    """wc over a file (FdBacking: read(2) into guest memory) and over memory, on one
    machine, interleaved with runs of other sizes: each as on a fresh machine."""
    prog = guest('wc')
    data = {n: b''.join(b'%d word%d\n' % (i % 97, i) for i in range(n // 8))[:n].ljust(n, b'x')
            for n in (0, 1024, 70_000, 300_000)}
    fresh = {n: _seen(*_run(machine_for(prog), ['wc'], d)) for n, d in data.items()}
    reused = machine_for(prog)
    for n in (1024, 300_000, 0, 1024, 70_000, 1024):
        assert _seen(*_run(reused, ['wc'], data[n])) == fresh[n]
        path = tmp_path / f'in{n}'
        path.write_bytes(data[n])
        out = MemoryBacking()
        with open(path, 'rb') as f:
            report = reused.run([Channel('/dev/stdin', FdBacking(f.fileno(), owned=False), READ),
                                 Channel('/dev/stdout', out, WRITE)], ['wc'], {}, probe=False)
        assert report.status == 'ok' and report.accounting.fuel == fresh[n][5]
        assert bytes(out.data) == fresh[n][-1]


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')   # printed
def test_what_escapes_the_dispatcher_stops_the_run(guest, machine_for, monkeypatch):
    """The C guard calls the dispatcher itself: what it lets escape (not an Exception:
    those end the run as an internal error already) ends the run, which does not go on
    with a stale result in RAX, and the next run on the machine is a normal one."""
    from zvm_core.engines.emulated import machine as emulated

    machine = machine_for(guest('hello'))
    fresh = _seen(*_run(machine, ['hello']))

    def interrupted(p, *args):
        raise KeyboardInterrupt
    monkeypatch.setitem(emulated.DISPATCH, 20, ('writev', interrupted))
    monkeypatch.setitem(emulated.DISPATCH, 1, ('write', interrupted))
    report, out = _run(machine, ['hello'])
    assert (report.status, out) == ('killed', b''), report
    assert 'dispatcher raised' in report.message
    monkeypatch.undo()
    assert _seen(*_run(machine, ['hello'])) == fresh


def test_a_reset_zeroes_the_kept_stack_and_bss_pages_and_the_rest(guest, machine_for):
    """A reset keeps the stack's top and small runs of bss pages (zeroed, not given
    back): a run that dirtied them, and far below them, leaves nothing the next sees."""
    prog = guest('deepstack')
    machine = machine_for(prog)
    for kib, fill in ((1, 'a'), (4000, 'b'), (7, 'c'), (12000, 'd'), (2000, 'e'), (3, 'f')):
        argv = ['deepstack', str(kib), fill]
        report, out = _run(machine, argv)
        assert (report.status, report.retcode) == ('ok', 0), report.message
        assert out.endswith(b'\nbss 0\n') and out == _run(machine_for(prog), argv)[1]
    machine.reset()
    assert machine.held() <= machine_for(prog).held() + (128 << 10)


def test_a_forked_child_reads_its_own_page_tables():
    """The pagemap descriptor ``memory.touched`` keeps is the opener's: a pool worker
    forked after its parent read it must open its own, or it would see the parent's
    pages and leave its own guest's data behind."""
    from unicorn import UC_ARCH_X86, UC_MODE_64, Uc

    from zvm_core.engines.emulated.memory import AddressSpace
    from zvm_core.memory import PAGE, PROT_R, PROT_W

    space = AddressSpace(Uc(UC_ARCH_X86, UC_MODE_64))
    region = space.map(0x100000, 16 * PAGE, PROT_R | PROT_W)
    assert space.touched(region, region.start, region.end) == []      # opened here
    pid = os.fork()
    if pid == 0:        # the child dirties a page the parent never had
        region.view[5 * PAGE] = 1
        seen = space.touched(region, region.start, region.end)
        os._exit(0 if seen == [(region.start + 5 * PAGE, region.start + 6 * PAGE)] else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert space.touched(region, region.start, region.end) == []

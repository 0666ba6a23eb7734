"""Hostile guests against what the native engine's kernel side allows.

The seccomp filter lets the kernel perform three calls by itself: the loader's
``sendmsg`` and ``close`` of its control socket (descriptor 1030), and, in a
template's child, its ``mprotect`` of the user manifest's region to read-only,
made from the loader's pages.  Those pages stay mapped, so a guest can jump into
one of the loader's ``syscall`` instructions.  That is harmless: the loader closed
1030 before the guest's first instruction and no call of the guest can make a
descriptor (the personality answers them all), so the first two fail with
EBADF and touch nothing, and the third makes read-only what is read-only (in a
spawned loader, whose manifest may be unreadable, a probe's, it is notified).
The supervisor continues ``mprotect`` only without ``PROT_EXEC``; behind that
rule the kernel itself refuses an executable gain (``PR_SET_MDWE``, Linux 6.3+).
"""

from __future__ import annotations

from mmap import PROT_EXEC

import pytest

from tests.sandbox.test_native import _loader_span
from zvm_core import engines
from zvm_core.engines.native import seccomp, supervisor

pytestmark = pytest.mark.skipif(engines.native_unavailable() is not None,
                                reason=f'native engine: {engines.native_unavailable()}')

NATIVE = ['--engine', 'native']


@pytest.mark.parametrize('nr,stdout,retcode', [
    (seccomp.NR_CLOSE, b'loader: jumped in (errno 9)\n', 127),
    (seccomp.NR_SENDMSG, b'loader: jumped in (errno 9)\n', 127),
    (39, b'loadercall 1\n', 0)])           # getpid: notified, the personality's pid
def test_the_loaders_own_syscall_reaches_only_a_closed_descriptor(guest, zvm, nr, stdout,
                                                                  retcode):
    """The guest jumps to a ``syscall`` of the loader (followed by its error check, then a
    return through a frame the guest built) with close/sendmsg(1030).  The kernel
    performs it (a guest's own sendmsg is ENOSYS from the personality: errno 38) and it
    fails with EBADF, which sends the loader's code down its error path: its line on
    descriptor 4 (the guest made that its stdout) and exit 127, both answered by the
    personality.  Any other call from there is mediated as usual."""
    run = zvm.run(guest('native_hostile'), 'loadercall', str(nr), _loader_span(),
                  opts=NATIVE)
    assert (run.stdout, run.report['retcode']) == (stdout, retcode), run


def test_the_kernel_refuses_executable_memory_the_supervisor_would_allow(guest, monkeypatch):
    """Were the personality and ``may_continue`` both wrong (they answer and continue an
    mprotect to PROT_EXEC), the kernel still refuses it: PR_SET_MDWE, set by the loader
    after its last mprotect.  The guest sees EACCES either way."""
    from zvm_core.channels import WRITE, Channel, MemoryBacking
    from zvm_core.executor import run

    def exec_gain(nr: int, args) -> bool:
        return nr == seccomp.NR_MPROTECT and bool(args[2] & PROT_EXEC)

    name, mprotect = supervisor.DISPATCH[seccomp.NR_MPROTECT]
    may_continue = seccomp.may_continue
    monkeypatch.setattr(seccomp, 'may_continue',
                        lambda nr, args: exec_gain(nr, args) or may_continue(nr, args))
    monkeypatch.setitem(supervisor.DISPATCH, seccomp.NR_MPROTECT, (
        name, lambda p, *args: 0 if exec_gain(seccomp.NR_MPROTECT, args) else mprotect(p, *args)))
    out = MemoryBacking()
    report = run(guest('native_hostile'), [Channel('/dev/stdout', out, WRITE)],
                 argv=['native_hostile', 'calls'], engine='native')
    assert report.status == 'ok', report
    results = dict(line.split() for line in bytes(out.data).decode().splitlines())
    assert results['mprotect_exec'] == '-13', results       # EACCES from the kernel


def test_the_loaders_pages_hold_nothing_of_the_host(guest, zvm, tmp_path):
    """The loader's pages stay readable to the guest: what it finds there must be the
    same in every run, spawned or forked by a template (they held the supervisor's pid,
    and a template's child its elder sibling's, so a guest could print them), alone or
    as a batch's node (a template forks those with the worker's faulting flags:
    loader.c carry_as, whose state a child must not show)."""
    from zvm_core.channels import WRITE
    from zvm_core.pool import ChannelSpec, Pool, Run

    argv = ['native_hostile', 'loaderdump', _loader_span()]
    spawned = [zvm.run(guest('native_hostile'), *argv[1:], opts=NATIVE) for _ in range(2)]
    assert spawned[0].status == 'ok', spawned[0]
    assert spawned[0].stdout == spawned[1].stdout
    forked = []

    def alone(pool: Pool) -> None:
        out = tmp_path / f'out{len(forked)}'
        with open(out, 'wb') as f:
            report = pool.run(str(guest('native_hostile')),
                              [ChannelSpec('/dev/stdout', f.fileno(), WRITE)],
                              argv=argv, engine='native')
        assert report.status == 'ok', report
        forked.append(out.read_bytes())

    def batch(pool: Pool) -> None:
        outs = [tmp_path / f'batch{len(forked)}-{i}' for i in range(2)]
        files = [open(out, 'wb') for out in outs]
        try:
            reports = [r.report for r in pool.run_many([
                Run(str(guest('native_hostile')), [ChannelSpec('/dev/stdout', f.fileno(), WRITE)],
                    argv, engine='native') for f in files])]
        finally:
            for f in files:
                f.close()
        assert [r.status for r in reports] == ['ok', 'ok'], reports
        forked.extend(out.read_bytes() for out in outs)
    for _ in range(2):          # two templates (two supervisors), children alone and batched
        with Pool(size=1) as pool:
            for step in (alone, alone, batch, alone):
                step(pool)
    assert len(forked[0]) == int(argv[2], 16)
    assert forked[1:] == forked[:1] * 9


def test_a_template_childs_guest_cannot_write_its_manifest(guest, zvm, tmp_path):
    """A template's child has its user manifest's region writable (as its template
    maps it) until its gate, for the supervisor to write the run's manifest there with
    process_vm_writev, and read-only before the guest's first instruction (the
    filter lets the loader's ``mprotect(manifest, 64 KiB, PROT_READ)`` through: loader.c
    start, seccomp.py).  The guest, alone or as a batch's node: its own mprotect to
    read+write is the personality's EACCES; the same through the loader's ``syscall``
    is notified too (EACCES: the loader's error path and exit 127); the one allowed,
    to read-only, changes nothing (0).  Its store into the manifest faults, at once or
    after those (and in a spawned loader's guest, whose manifest is read-only as mapped)."""
    from zvm_core.channels import WRITE
    from zvm_core.pool import ChannelSpec, Pool, Run

    program = str(guest('native_hostile'))
    span = _loader_span()
    write_fault = 'write at 0xfeff0000, below the 16 MiB stack (into the read-only user manifest)'

    def runs(pool: Pool, prot: int) -> list[tuple]:
        outs = [tmp_path / f'{prot}-{i}' for i in range(3)]
        files = [open(out, 'wb') for out in outs]
        try:
            argv = ['native_hostile', 'manifest', str(prot), span]
            channels = [[ChannelSpec('/dev/stdout', f.fileno(), WRITE)] for f in files]
            reports = [pool.run(program, channels[0], argv=argv, engine='native')]
            reports += [r.report for r in pool.run_many(
                [Run(program, spec, argv, engine='native') for spec in channels[1:]])]
        finally:
            for f in files:
                f.close()
        return [(r.status, r.retcode, r.message, out.read_bytes())
                for r, out in zip(reports, outs, strict=True)]

    spawned = zvm.run(guest('native_hostile'), 'manifest', '0', span, opts=NATIVE)
    assert spawned.status == 'fault' and write_fault in spawned.report['message'], spawned
    with Pool(size=1) as pool:
        for status, _retcode, message, stdout in runs(pool, 0):     # a store at once
            assert (status, stdout) == ('fault', b''), message
            assert write_fault in message, message
        for status, retcode, _message, stdout in runs(pool, 3):     # PROT_READ | PROT_WRITE
            assert (status, retcode, stdout) == (
                'ok', 127, b'own -13\nloader: jumped in (errno 13)\n')
        for status, _retcode, message, stdout in runs(pool, 1):     # PROT_READ
            assert (status, stdout) == ('fault', b'own -13\nloader 0\n'), message
            assert write_fault in message, message


def test_a_probed_guest_cannot_carry_its_manifest_into_a_later_run(guest, tmp_path):
    """A pool's first run of a key is a probe (snapshot.py): a spawned loader with the
    user manifest unreadable, whose snapshot later runs of the key resume from.  The
    guest makes its manifest readable through the loader's ``syscall`` (the mprotect a
    template's child needs), reads it before its first channel access and makes 200
    more calls: had the probe's filter let that through, the snapshot would keep the
    first run's manifest's sum, which a later run with another input printed as its
    own.  Each run prints its own manifest's, as in a pool of its own."""
    from zvm_core.channels import READ, WRITE
    from zvm_core.pool import ChannelSpec, Pool

    argv = ['native_hostile', 'manifestsum', _loader_span()]

    def run(pool: Pool, size: int) -> bytes:
        stdin, stdout = tmp_path / f'in{size}', tmp_path / f'out{size}'
        stdin.write_bytes(b'x' * size)
        with open(stdin, 'rb') as i, open(stdout, 'wb') as o:
            report = pool.run(str(guest('native_hostile')),
                              [ChannelSpec('/dev/stdin', i.fileno(), READ),
                               ChannelSpec('/dev/stdout', o.fileno(), WRITE)],
                              argv=argv, engine='native')
        out = stdout.read_bytes()
        assert (report.status, report.retcode, out[:12]) == ('ok', 0, b'loader 0 sum'), report
        return out
    with Pool(size=1) as pool:
        first, second = run(pool, 10), run(pool, 5000)
    with Pool(size=1) as pool:
        alone = run(pool, 5000)
    assert first != alone
    assert second == alone


def test_a_spawned_loaders_syscall_cannot_make_an_unreadable_manifest_readable(guest):
    """A spawned loader (a probe's, a single run's) maps the user manifest as its guest
    has it, read-only or (a probe's) unreadable, and its filter lets no mprotect
    through: the guest's through the loader's ``syscall`` is notified, the
    personality's EACCES (the loader's error path, exit 127), and its manifest, here
    mapped as a probe's (untraced), stays unreadable."""
    from zvm_core.channels import WRITE, Channel, MemoryBacking
    from zvm_core.elf import load_program
    from zvm_core.engines.native.snapshot import Probe

    class Unreadable:
        """A spawned run whose manifest is mapped as a probe's, without its tracer."""

        template = None
        adjust = Probe.adjust

        def setup(self, guest) -> None:
            pass

        def tracer(self, pid, ticks, tsc, child=None) -> None:
            return None

    out = MemoryBacking()
    report = supervisor.run(load_program(str(guest('native_hostile'))),
                            [Channel('/dev/stdout', out, WRITE)],
                            ['native_hostile', 'manifestsum', _loader_span()], {}, 64 << 20, 30,
                            start=Unreadable())
    assert (report.status, report.retcode, bytes(out.data)) == (
        'ok', 127, b'loader: jumped in (errno 13)\n'), report

"""The native engine: the same programs give the same bytes as under the
emulator, and a hostile guest ends with a clean status and no effect on the host.

Hidden instructions (``int $0x80``, ``sysenter``, ``rdtsc`` inside a ``movabs``
immediate, reached by an indirect jump) get past the validator by design:
natively the kernel must stop them (seccomp's architecture check, PR_SET_TSC).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

import pytest

from tests.conftest import RUN_TIMEOUT
from tests.sandbox.test_programs import text_input
from zvm_core import engines
from zvm_core.engines.native import cpuid, seccomp

pytestmark = pytest.mark.skipif(engines.native_unavailable() is not None,
                                reason=f'native engine: {engines.native_unavailable()}')

NATIVE, EMULATED = ['--engine', 'native'], ['--engine', 'emulated']
# (program, args): every output byte must be equal under both engines
SAME = [('hello', ()), ('cat', ()), ('wc', ()), ('sort', ()), ('malloc', ()),
        ('args_env', ('a', 'b c')), ('exitcode', ('7', 'exit')), ('fileio', ()),
        ('getpid', ('50',)), ('readtext', ()), ('addrs', ()), ('reopen', ()),
        ('leftover', ('x',)), ('badptr', ()), ('chanperm', ()), ('passwd', ()),
        ('native_hostile', ('calls',)), ('native_hostile', ('forkbomb',)),
        ('native_hostile', ('fds',)), ('native_hostile', ('x32',))]
# not here: timeprint, sleep, timewarp, startup (the emulator's clock advances with fuel, the
# native one with mediated calls) and cpuid (its own test: the answer needs CPUID faulting)


def _both(zvm, prog: Path, args=(), opts=(), **kw):
    return [zvm.run(prog, *args, opts=[*engine, *opts], **kw) for engine in (NATIVE, EMULATED)]


@pytest.mark.parametrize('name,args', SAME, ids=[f'{n}-{"-".join(a)}' for n, a in SAME])
def test_same_bytes_under_both_engines(guest, zvm, name, args):
    data = text_input(300)
    nat, emu = _both(zvm, guest(name), args, stdin=data, input=data, output=True)
    assert nat.report['engine'] == 'native' and emu.report['engine'] == 'emulated'
    assert (nat.status, nat.report['retcode']) == (emu.status, emu.report['retcode']), \
        (nat, emu)
    assert nat.stdout == emu.stdout, (nat, emu)
    assert nat.stderr == emu.stderr, (nat, emu)
    assert nat.output == emu.output, (nat, emu)
    assert nat.returncode == emu.returncode
    assert nat.report['etags'] == emu.report['etags']


@pytest.mark.parametrize('how', ['fixed', 'reuse', 'read'])
def test_a_page_mprotect_lowered_keeps_it_through_munmap_and_mmap(guest, zvm, how):
    """Natively only mprotect reaches the kernel's page table, so a PROT_NONE page stays
    PROT_NONE through munmap and a new mmap of it: under both engines the touch is the
    same fault, in the same words (a PROT_NONE page is not present to the CPU: natively
    the fault's error code alone would say unmapped)."""
    nat, emu = _both(zvm, guest('reprotect'), (how,))
    assert nat.status == emu.status == 'fault', (nat, emu)
    assert nat.stdout == emu.stdout == b'mprotect none\nmunmap\nmmap: same page\n'
    what = 'read of protected' if how == 'read' else 'write to read-only'
    assert nat.report['message'] == emu.report['message'], (nat, emu)
    assert nat.report['message'].startswith(f'{what} memory at 0x'), nat


def test_a_page_mmap_reserved_is_mapped_read_write_over(guest, zvm):
    """mmap's own protection is the personality's table only (natively the page stays
    read+write), so a MAP_FIXED read+write mapping over a PROT_NONE reservation is
    writable under both engines, as on Linux."""
    nat, emu = _both(zvm, guest('reprotect'), ('reserve',))
    assert nat.status == emu.status == 'ok', (nat, emu)
    assert nat.stdout == emu.stdout == b'mmap: same page\nstored\n'


def test_native_runs_are_repeatable(guest, zvm):
    runs = [zvm.run(guest('addrs'), opts=NATIVE) for _ in range(3)]
    assert runs[0].status == 'ok', runs[0]
    assert runs[0].stdout and all(r.stdout == runs[0].stdout for r in runs)


def test_dangerous_calls_are_refused(guest, zvm):
    run = zvm.run(guest('native_hostile'), 'calls', opts=NATIVE)
    assert run.status == 'ok', run
    results = dict(line.split() for line in run.stdout.decode().splitlines())
    allowed = {'x32_bit_clear': '1'}           # getpid: the personality's pid
    for name, value in results.items():
        if name in allowed:
            assert value == allowed[name], (name, value)
        else:
            assert int(value) < 0, (name, value)
    assert results['mprotect_exec'] == '-13'              # EACCES, never performed natively
    assert results['close_ctl'] == '-9'         # the guest's close of the loader's socket
    edges = zvm.run(guest('native_hostile'), 'edges', opts=NATIVE)
    assert edges.stdout.startswith(b'mprotect_high_bits -22\nmprotect_unaligned_exec -22\n'
                                   b'mprotect_unmapped_exec -12\nsendmsg_ctl -38\n'
                                   b'set_fs_kernel -1\n'), edges


def test_the_kernel_never_performs_an_mprotect_that_could_make_code():
    """The supervisor continues mprotect only with read/write bits, whatever the
    personality answered (the filter sends every mprotect to it, to be counted)."""
    for prot in (4, 5, 7, 1 << 32, 0x1000000, 0x01000000 | 1):
        assert not seccomp.may_continue(seccomp.NR_MPROTECT, (4096, 4096, prot, 0, 0, 0))
    for prot in (0, 1, 2, 3, 8):
        assert seccomp.may_continue(seccomp.NR_MPROTECT, (4096, 4096, prot, 0, 0, 0))
    assert not seccomp.may_continue(seccomp.NR_CLOSE, (seccomp.CTL_FD, 0, 0, 0, 0, 0))


NO_CPUID_FAULT = pytest.mark.skipif(cpuid.unsupported() is not None,
                                    reason=f'native cpuid: {cpuid.unsupported()}')


@pytest.mark.parametrize('how,text', [
    ('int80', 'forbidden ABI'), ('sysenter', 'Signal'),
    ('rdtsc', 'general protection fault (rip 0x'), ('selfwrite', 'write to read-only memory at'),
    pytest.param('cpuid', 'general protection fault (rip 0x', marks=NO_CPUID_FAULT)])
def test_hidden_and_forbidden_instructions_fault(guest, zvm, how, text):
    run = zvm.run(guest('native_hostile'), how, opts=NATIVE)
    assert run.status == 'fault', run
    assert run.returncode == 125
    assert 'still running' not in run.stdout.decode()
    assert text in run.report['message'] + run.report['exit_state'], run


def test_hidden_rdtsc_and_cpuid_fault_in_a_templates_children(guest, tmp_path):
    """A template's child sets the faulting flags itself, before its filter, whatever
    its template has (a single run's forks ask for a template without them, a batch's
    with them: loader.c, carry_as): its guest's rdtsc and cpuid fault as a spawned
    loader's do, run after run, single runs and batches in turn."""
    from zvm_core.channels import WRITE
    from zvm_core.pool import ChannelSpec, Pool, Run
    prog = str(guest('native_hostile'))
    hows = ['rdtsc', 'rdtsc'] + (['cpuid', 'cpuid'] if cpuid.unsupported() is None else [])
    with Pool(1) as pool, open(tmp_path / 'out', 'wb') as out:
        channels = [ChannelSpec('/dev/stdout', out.fileno(), WRITE)]
        for how in hows:
            single = pool.run(prog, channels, argv=['native_hostile', how], engine='native')
            batch = [r.report for r in pool.run_many(
                [Run(prog, channels, ['native_hostile', how], engine='native')] * 3)]
            for report in [single, *batch]:
                assert (report.status, report.engine) == ('fault', 'native'), report
                assert 'general protection fault (rip 0x' in report.message, report


def _loader_span() -> str:
    """How many bytes the loader's segments span from its base, page-rounded: all of
    its pages, which the guest scans for what an earlier run left."""
    from elftools.elf.elffile import ELFFile

    from zvm_core.engines.native.loader import LOADER_BASE, loader_path
    with open(loader_path(), 'rb') as f:
        end = max(seg['p_vaddr'] + seg['p_memsz'] for seg in ELFFile(f).iter_segments()
                  if seg['p_type'] == 'PT_LOAD')
    return hex((end - LOADER_BASE + 0xfff) & ~0xfff)


def _loaders() -> list[int]:
    """Pids of live native guests (their executable is the loader) of this test
    session: started below this process, or orphans (a guest that outlived its run
    is reparented to init).  Other runs on the machine have guests of their own."""
    from zvm_core.engines.native.loader import loader_path
    target, pids = str(loader_path()), []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                if os.readlink(f'/proc/{entry}/exe') == target and _ours(int(entry)):
                    pids.append(int(entry))
            except (OSError, AttributeError):
                continue
    return pids


def _ours(pid: int) -> bool:
    parent = _parent(pid)
    if parent == 1:
        return True
    while parent > 1:
        if parent == os.getpid():
            return True
        parent = _parent(parent)
    return False


def _is(check) -> bool:
    """``check()``, False if the process it looks at is gone meanwhile."""
    try:
        return check()
    except OSError:
        return False


def _parent(pid: int) -> int:
    status = Path(f'/proc/{pid}/status').read_text()
    return int(re.search(r'^PPid:\s+(\d+)', status, re.M).group(1))


def test_spin_without_syscalls_times_out_and_leaves_nothing(guest, zvm):
    before = set(_loaders())
    run = zvm.run(guest('native_hostile'), 'spin', opts=[*NATIVE, '--timeout', '1'])
    assert run.status == 'timeout', run
    assert run.returncode == 125
    assert set(_loaders()) <= before


def test_memory_limit_is_the_memory_status(guest, zvm):
    nat, emu = _both(zvm, guest('membomb'), opts=['--memory', str(64 << 20)])
    assert nat.status == emu.status == 'memory', (nat, emu)


def test_quota_status_as_emulated(guest, zvm):
    nat, emu = _both(zvm, guest('flood'), opts=['--quota', '/dev/stdout=put_size:100000'])
    assert nat.status == emu.status == 'quota', (nat, emu)
    assert nat.stdout == emu.stdout


def test_engine_choice_on_the_command_line(guest, zvm):
    prog = guest('hello')
    bad = zvm.cli('run', '--engine', 'native', '--fuel', '1000', prog)
    assert bad.returncode == 2
    assert b'native engine has no fuel' in bad.stderr
    fuel = zvm.run(prog, opts=['--engine', 'auto', '--fuel', str(10 ** 9)])
    assert fuel.status == 'ok' and fuel.report['engine'] == 'emulated'
    auto = zvm.run(prog, opts=['--engine', 'auto'])
    assert auto.status == 'ok' and auto.report['engine'] == 'native'
    info = zvm.cli('info')
    assert info.returncode == 0
    assert b'native: available' in info.stdout and b'auto: native' in info.stdout
    assert b'auto in a pool (object servers, zvm run --repeat): a program of at most 256 KiB' \
        in info.stdout


def test_rdtsc_runs_natively_from_the_virtual_counter(guest, zvm):
    """A program with rdtsc runs natively under auto: the fault is answered from
    the virtual counter, the same values every run, rdtscp's aux 0 as emulated."""
    prog = guest('rdtsc')
    auto, again = zvm.run(prog, opts=['--engine', 'auto']), zvm.run(prog, opts=NATIVE)
    assert auto.status == again.status == 'ok' and auto.report['engine'] == 'native', auto
    assert auto.stdout == again.stdout
    assert re.fullmatch(rb'tsc \d+ \d+ \d+ aux 0\nincreasing 1\n', auto.stdout), auto
    nat, emu = _both(zvm, prog, ('wait',))    # a spin on rdtsc alone ends: the counter moves
    assert nat.status == emu.status == 'ok', (nat, emu)
    assert nat.stdout.endswith(b'waited 1\n') and emu.stdout.endswith(b'waited 1\n')


def test_rdtsc_answer_cannot_be_diverted_by_the_guest(guest, zvm):
    """Its own SIGSEGV handler never runs (the personality only records it, the
    tracer answers the fault); a real SIGSEGV after rdtsc is still a fault."""
    prog = guest('rdtsc')
    nat, emu = _both(zvm, prog, ('handler',))
    assert nat.status == emu.status == 'ok', (nat, emu)
    assert b'handler' not in nat.stdout and b'aux 0' in nat.stdout
    nat, emu = _both(zvm, prog, ('null',))
    assert nat.status == emu.status == 'fault', (nat, emu)
    assert nat.returncode == emu.returncode == 125
    assert nat.report['message'] == emu.report['message'], (nat, emu)
    assert nat.report['message'].startswith('write to unmapped memory at 0x0 (rip 0x')
    assert b'increasing 1' in nat.stdout


@NO_CPUID_FAULT
def test_cpuid_natively_is_the_fixed_table(guest, zvm):
    """cpuid faults natively and the tracer answers it from the emulator's table: the
    same bytes under both engines (a hidden one faults: test above), and in zvm info."""
    prog = guest('cpuid')
    nat, emu = _both(zvm, prog)
    assert nat.status == emu.status == 'ok', (nat, emu)
    assert nat.report['engine'] == 'native'
    assert nat.stdout == emu.stdout and b'vendor GenuineIntel' in nat.stdout, (nat, emu)
    auto = zvm.run(prog, opts=['--engine', 'auto'])
    assert auto.report['engine'] == 'native' and auto.stdout == emu.stdout, auto
    assert b'native cpuid: faults, answered from the fixed table' in zvm.cli('info').stdout


PY_SCRIPT = """
import collections, csv, decimal, hashlib, io, json, re, sys, time
text = "the quick brown fox jumps over the lazy dog the fox" * 50
print(collections.Counter(re.findall(r"[a-z]+", text)).most_common(3))
print(list(csv.reader(io.StringIO("a,b\\n1,2\\n"))), decimal.Decimal("1.10") * 3)
print(json.dumps({"x": [1.5, None]}), hashlib.sha256(text.encode()).hexdigest())
print(sum(i * i for i in range(200000)), 2 ** 100 % 97, 1e300 * 10, 0.1 + 0.2)
print(len(sys.argv), sys.flags.hash_randomization, hash("abc"))
sys.stderr.write("to stderr\\n")
"""


def test_python_runs_natively_with_the_same_bytes(sysimages, zvm, tmp_path):
    """CPython contains rdtsc: auto runs it natively now, with the emulator's bytes."""
    from archives import tar_bytes
    (tmp_path / 'job.tar').write_bytes(tar_bytes({'job.py': PY_SCRIPT.encode()}))
    opts = ['--image', str(tmp_path / 'job.tar')]
    auto = zvm.run('file://python3:python3', '/job.py', 'x', opts=[*opts, '--engine', 'auto'])
    nat, emu = _both(zvm, 'file://python3:python3', ('/job.py', 'x'), opts)
    assert auto.report['engine'] == 'native' and auto.stdout == nat.stdout, auto
    assert nat.status == emu.status == 'ok', (nat, emu)
    assert nat.stdout == emu.stdout and nat.stderr == emu.stderr == b'to stderr\n', (nat, emu)
    assert nat.report['etags'] == emu.report['etags']
    assert nat.stdout.count(b'\n') == 5


def test_pool_worker_runs_either_engine(guest, tmp_path):
    from zvm_core.channels import READ, WRITE
    from zvm_core.pool import ChannelSpec, Pool
    data = text_input(200)
    (tmp_path / 'in').write_bytes(data)
    outputs = {}
    with Pool(size=1, queue=0) as pool:
        for engine in ('native', 'emulated', 'native'):
            with open(tmp_path / 'in', 'rb') as fin, open(tmp_path / 'out', 'wb') as fout:
                report = pool.run(str(guest('cat')), [
                    ChannelSpec('/dev/stdin', fin.fileno(), READ),
                    ChannelSpec('/dev/stdout', fout.fileno(), WRITE)],
                    argv=['cat'], engine=engine)
            assert report.status == 'ok' and report.engine == engine, report
            outputs[engine] = (tmp_path / 'out').read_bytes()
        assert pool.pids and all(os.path.exists(f"/proc/{pid}") for pid in pool.pids)
    assert outputs['native'] == outputs['emulated'] == data


@pytest.mark.parametrize('memory', ['proc', 'process_vm'])
def test_guest_memory_either_way(guest, monkeypatch, memory):
    """Guest memory through /proc/PID/mem, or process_vm_readv/writev where /proc
    cannot be opened: the same bytes (reads into the guest, writes out of it, a
    bad pointer, munmap's zeroing), the same as the emulator's."""
    from zvm_core.channels import READ, WRITE, Channel, MemoryBacking
    from zvm_core.engines.native.memory import ProcessMemory
    from zvm_core.executor import run
    if memory == 'process_vm':
        def no_proc(self, pid):
            self.pid, self._memfd = pid, None
        monkeypatch.setattr(ProcessMemory, 'attach', no_proc)
    data = text_input(5000)
    outs = {}
    for engine in ('native', 'emulated'):
        for name in ('cat', 'badptr', 'malloc'):
            out = MemoryBacking()
            report = run(guest(name), [Channel('/dev/stdin', MemoryBacking(data), READ),
                                       Channel('/dev/stdout', out, WRITE)],
                         argv=[name], engine=engine)
            assert report.engine == engine, report
            outs[engine, name] = report.status, report.retcode, bytes(out.data)
    for name in ('cat', 'badptr', 'malloc'):
        assert outs['native', name] == outs['emulated', name], name
    assert outs['native', 'cat'] == ('ok', 0, data)


def _child_states(pid: int) -> dict[int, str]:
    """The state letter of each child process of ``pid``."""
    kids = {}
    for entry in os.listdir('/proc'):
        try:
            stat = Path(f'/proc/{entry}/stat').read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rpartition(')')[2].split()
        if int(fields[1]) == pid:
            kids[int(entry)] = fields[0]
    return kids


def _settled(worker: int) -> dict[int, str]:
    """The worker's children once it is idle: it kills and reaps its runs' children
    and takes in the next one after its reply, each step once what it waits for is
    ready, so they are looked at until the template and the next run's child alone
    are left, two live loaders asleep (the template at its poll, the child at its
    gate).  A killed child on its way out is neither a zombie yet nor a loader any
    more (state R or D, its executable gone with its memory): counted as one of the
    two, it made the caller see the template and a stranger.  The deadline only
    fails a hang."""
    import time
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        kids = _child_states(worker)
        if (len(kids) == 2 and set(kids.values()) == {'S'} and set(kids) <= set(_loaders())
                or time.monotonic() > deadline):
            return kids
        time.sleep(0.01)


def test_warm_native_starts_fork_from_a_never_run_template(guest, zvm, tmp_path):
    """A pool worker keeps a template per program (a fork server that mapped it, and
    the child the next run starts in): a run planting a secret leaves nothing for the
    next child to find, even in the loader's pages; a killed template is replaced;
    every child is reaped and closing the pool leaves no process behind."""
    import signal
    import time

    from zvm_core.channels import WRITE
    from zvm_core.pool import ChannelSpec, Pool
    prog = str(guest('native_hostile'))
    before = set(_loaders())

    def run(*args) -> bytes:
        with open(tmp_path / 'out', 'wb') as out:
            report = pool.run(prog, [ChannelSpec('/dev/stdout', out.fileno(), WRITE)],
                              argv=['native_hostile', *args], engine='native')
        assert report.status == 'ok' and report.engine == 'native', report
        return (tmp_path / 'out').read_bytes()

    def settled() -> dict[int, str]:
        """The worker's children once it is idle again (:func:`_settled`), after a
        request (one that comes first is served first)."""
        with open(prog, 'rb') as f:
            assert pool.validate(f.fileno())[0]
        return _settled(worker)

    with Pool(size=1, queue=0) as pool:
        [worker] = pool.pids
        assert run('plant', 'zvm-secret-of-run-one') == b'planted\n'
        first = settled()               # the template and the next run's child, no zombie
        assert len(first) == 2 and set(first) <= set(_loaders()) and set(first.values()) == {
            'S'}, first
        assert run('scan', 'zvm-secret-of-run-one', 'loader', _loader_span()) == b'found 0\n'
        second = settled()
        assert len(second) == 2 and set(second.values()) == {'S'}, second
        [template] = set(first) & set(second)       # the same template, a new child
        os.kill(template, signal.SIGKILL)
        assert run('calls') == zvm.run(prog, 'calls', opts=NATIVE).stdout
        third = settled()
        assert len(third) == 2 and template not in third and set(third.values()) == {'S'}, third
    deadline = time.monotonic() + 10
    while set(_loaders()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(_loaders()) - before


def test_template_children_get_their_runs_cpu_limit(guest):
    """A template's child runs with its run's CPU limit (``RLIMIT_CPU``: the timeout
    plus one, the hard limit one more), set when its run starts: it waits with the
    template's (none), since a hard limit set ahead could not be raised for a run
    with a longer timeout without CAP_SYS_RESOURCE."""
    from zvm_core.elf import load_program
    from zvm_core.engines.native.supervisor import Template

    def cpu_limit(pid: int) -> list[str]:
        line = next(line for line in Path(f'/proc/{pid}/limits').read_text().splitlines()
                    if line.startswith('Max cpu time'))
        return line.split()[3:5]

    template = Template(load_program(str(guest('hello'))), 64 << 20)
    try:
        for timeout in (3, 7, 2):
            template.prefork()
            template.idle()                     # its next child, taken in
            child = template.take()
            assert cpu_limit(child.pid) == ['unlimited', 'unlimited']
            spec = template.guest().run_spec([], [b'hello'], [], 0, timeout)
            template.start(child, spec)
            assert cpu_limit(child.pid) == [str(timeout + 1), str(timeout + 2)]
            child.close()                       # killed at the gate: it never ran
    finally:
        template.close()


def test_a_batch_asks_its_template_for_children_several_at_once(guest):
    """A batch's nodes (``take(ahead=nodes after it)``) ask the template for the
    children of the next ``AHEAD`` in one message once none is taken in or on its way,
    not one per node, and none beyond the batch's last; each node still starts in a
    child of its own, never run; closing the template with children asked for and
    taken in kills and reaps every one."""
    from zvm_core.elf import load_program
    from zvm_core.engines.native import supervisor
    from zvm_core.engines.native.supervisor import Template
    before = set(_child_states(os.getpid()))
    template = Template(load_program(str(guest('hello'))), 64 << 20)
    sent: list[bytes] = []

    class Counted:
        """The template's socket, its sends kept."""

        def __init__(self, sock) -> None:
            self.sock = sock

        def send(self, data: bytes) -> int:
            sent.append(data)
            return self.sock.send(data)

        def __getattr__(self, name: str):
            return getattr(self.sock, name)

    template.sock = Counted(template.sock)
    try:
        children, nodes = [], supervisor.AHEAD + 3
        for i in range(nodes - 1):              # the batch's last node not taken yet
            child = template.take(ahead=nodes - i - 1)
            children.append(child.pid)
            child.close()
        assert sent == [b'F', b'F' * supervisor.AHEAD, b'F' * 2]
        assert len(set(children)) == len(children)
        template.idle()             # the last node's child, taken in at its gate: no more
        assert len(template._ready) == 1
        kids = set(_child_states(os.getpid())) - before - {template.pid}
        assert kids == {child.pid for child in template._ready}
    finally:
        template.close()
    assert set(_child_states(os.getpid())) <= before


def test_a_batch_asks_no_children_for_another_templates_nodes(guest, monkeypatch):
    """A request's nodes of two memory sizes (two templates, A A B B): each node is
    told the nodes after it of its own template (``worker._following``), so A's
    first node asks for one child, not three, and once idle A holds the next run's
    child alone, as before the batch asked ahead: no child waits unused."""
    from zvm_core.pool import _plan, worker
    monkeypatch.setattr(worker, '_reply', lambda sock, report, tails, ended: None)
    program = str(guest('hello'))

    def node(memory: int) -> tuple[dict, list[int]]:
        shape = {'program': program, 'engine': 'native', 'rdtsc': 'virtualize',
                 'channels': [], 'limits': {'memory': memory}}
        return {**shape, 'plan': _plan(shape), 'argv': ['hello'], 'env': {}, 'seed': 0,
                'epoch': 0}, []
    before = set(_child_states(os.getpid()))
    templates = worker.Templates(1 << 30)
    try:
        worker._serve_many(None, [node(32 << 20), node(32 << 20), node(64 << 20),
                                  node(64 << 20)], templates)
        warms = list(templates._machines.values())
        assert [w.memory for w in warms] == [32 << 20, 64 << 20]
        for warm in warms:
            warm.idle()
            assert len(warm.template._ready) == 1 and not warm.template._forking
    finally:
        templates.close()
    assert set(_child_states(os.getpid())) <= before


def test_a_template_counts_the_descriptors_of_children_on_their_way(guest):
    """A child asked for holds, once taken in, its pidfd and listener in the worker
    (not its /proc/PID/mem: its run's bytes are written with process_vm_writev):
    counted from the ask (``descriptors``), the worker's bound (settle, evict) is not
    under by two a child while a batch's children fork."""
    from zvm_core.elf import load_program
    from zvm_core.engines.native.supervisor import Template
    template = Template(load_program(str(guest('hello'))), 64 << 20)
    try:
        alone = template.descriptors()
        template.fork(2)
        asked = template.descriptors()
        template.idle()
        assert all(c.pidfd is not None and c.listener is not None for c in template._ready)
        assert asked == alone + 4 == template.descriptors()
    finally:
        template.close()


def test_a_short_send_asks_for_the_children_it_sent(guest):
    """``fork``'s message is sent on a non-blocking socket: a short send (a full
    buffer) asked for fewer children, and only those are waited for (``idle`` and
    ``close`` would wait for an answer that never comes); every one is reaped."""
    from zvm_core.elf import load_program
    from zvm_core.engines.native.supervisor import Template
    before = set(_child_states(os.getpid()))
    template = Template(load_program(str(guest('hello'))), 64 << 20)

    class Short:
        """The template's socket, sending one byte of each message."""

        def __init__(self, sock) -> None:
            self.sock = sock

        def send(self, data: bytes) -> int:
            return self.sock.send(data[:1])

        def __getattr__(self, name: str):
            return getattr(self.sock, name)

    real = template.sock
    template.sock = Short(real)
    try:
        template.fork(3)
        assert template._forking == 1
        template.idle()
        assert len(template._ready) == 1
    finally:
        template.sock = real
        template.close()
    assert set(_child_states(os.getpid())) <= before


def test_a_trimmed_template_keeps_the_next_runs_child(guest):
    """A batch stopped by its budget (``trim``): of the children asked for its runs,
    taken in or on their way, one is kept for the next run, the others killed and
    reaped now or as they come in; a run asking again keeps those on their way."""
    from zvm_core.elf import load_program
    from zvm_core.engines.native.supervisor import Template
    before = set(_child_states(os.getpid()))
    template = Template(load_program(str(guest('hello'))), 64 << 20)
    try:
        template.fork(2)
        template.idle()
        template.fork(4)                # two taken in, two on their way
        template.trim()
        assert len(template._ready) == 1
        template.idle()
        assert len(template._ready) == 1
        kids = set(_child_states(os.getpid())) - before - {template.pid}
        assert kids == {template._ready[0].pid}
        template.fork(3)
        template.trim()                 # a run comes: the spares are its
        template.take().close()
        template.idle()
        assert len(template._ready) == 2
    finally:
        template.close()
    assert set(_child_states(os.getpid())) <= before


def test_a_fork_the_template_cannot_make_fails_its_run_alone(guest, monkeypatch):
    """The template's own line for a fork it could not make (loader.c serve: the
    host's process limit) fails that run as the host's (``CannotFork``, saying
    so), leaves no child unnamed (no look for strays at close), and the template
    serves the next run."""
    from zvm_core.elf import load_program
    from zvm_core.engines.native import supervisor
    from zvm_core.engines.native.supervisor import CannotFork, Template
    looked: list[bool] = []
    monkeypatch.setattr(supervisor, '_reap_strays', lambda: looked.append(True))
    template = Template(load_program(str(guest('hello'))), 64 << 20)
    real_sock, real_fastcall = template.sock, supervisor._fastcall

    class Unsent:
        """The template's socket, its asks not sent (the line below answers one)."""

        def send(self, data: bytes) -> int:
            return len(data)

        def __getattr__(self, name: str):
            return getattr(real_sock, name)

    class Said:
        """_fastcall, whose next message is the template's line for a failed fork."""

        @staticmethod
        def hello(fd: int, timeout: float):
            return template.pid, -1, b'loader: cannot fork (errno 11)\n'

        def __getattr__(self, name: str):
            return getattr(real_fastcall, name)

    try:
        template.sock = Unsent()
        monkeypatch.setattr(supervisor, '_fastcall', Said())
        with pytest.raises(CannotFork, match='cannot fork .*errno 11.*limit, not the program'):
            template.take()
        assert not template._unnamed and not template._forking
        template.sock = real_sock
        monkeypatch.setattr(supervisor, '_fastcall', real_fastcall)
        template.take().close()         # the template serves on
    finally:
        template.sock = real_sock
        template.close()
    assert looked == []


def test_reap_looks_at_a_killed_child_a_call_later(guest, monkeypatch):
    """``Template.reap`` kills the ended runs' children and reaps those the call
    before the previous one killed: the one just killed is mostly still dying a
    node later (a ``waitid`` for nothing); ``idle`` and ``close`` reap them all."""
    from zvm_core.elf import load_program
    from zvm_core.engines.native import supervisor
    from zvm_core.engines.native.supervisor import Template
    looked: list[int] = []
    reaped = supervisor._reaped
    monkeypatch.setattr(supervisor, '_reaped',
                        lambda pidfd, *args: looked.append(pidfd) or reaped(pidfd, *args))
    before = set(_child_states(os.getpid()))
    template = Template(load_program(str(guest('hello'))), 64 << 20)
    try:
        pidfds = []
        for _ in range(3):
            child = template.take()
            template.reap_later(child.pid, child.pidfd, child.listener)
            pidfds.append(child.pidfd)
            template.reap()
        assert looked == pidfds[:1]         # the third call looked at the first's alone
        template.idle()
        assert not template._dying
    finally:
        template.close()
    assert set(_child_states(os.getpid())) <= before


def test_a_template_child_at_its_gate_holds_its_control_socket_alone(guest):
    """A template's child keeps no descriptor but its control socket (CTL_FD, above
    any the personality hands out) and its listener until the gate, however many the
    worker has open: it closes the others before it moves the socket up (loader.c:
    prepare), and the template keeps its spec and socket alone."""
    from zvm_core.elf import load_program
    from zvm_core.engines.native.supervisor import Template
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(8)]     # not CLOEXEC
    os.set_inheritable(spare[0], True)
    template = Template(load_program(str(guest('hello'))), 64 << 20)
    try:
        for _ in range(2):
            child = template.take()
            # its listener (the lowest number free: its close is the gate) and CTL_FD
            assert set(os.listdir(f'/proc/{child.pid}/fd')) == {'0', '1030'}
            assert set(os.listdir(f'/proc/{template.pid}/fd')) == {'3', '4'}   # spec, socket
            child.close()
    finally:
        template.close()
        for fd in spare:
            os.close(fd)


def test_a_template_child_that_cannot_start_says_why_and_is_reaped(guest):
    """A template's child passes its listener on the template's socket, and the
    kernel names the sender (``SO_PASSCRED``): a child that fails before that (here
    its descriptor limit, past the hard limit the template was given) sends its
    loader line instead; taking it fails with that line, the child is reaped, and
    the template goes on forking."""
    import resource

    from zvm_core.elf import load_program
    from zvm_core.engines.native.supervisor import Template
    if os.geteuid() == 0 and not _userns_available():
        pytest.skip('root outside a user namespace may raise its own hard limit')
    before = set(_child_states(os.getpid()))
    template = Template(load_program(str(guest('hello'))), 64 << 20)
    try:
        resource.prlimit(template.pid, resource.RLIMIT_NOFILE, (64, 64))
        for _ in range(2):
            # a child inherits its template's limit (raised once, by the template):
            # under the control socket's descriptor, its dup2 fails and says why
            with pytest.raises(OSError, match=r'dup2 of the control socket \(setrlimit NOFILE\)'):
                template.take()
            assert set(_child_states(os.getpid())) - before == {template.pid}   # no zombie
            assert template.alive()
    finally:
        template.close()


def test_a_template_child_that_answers_too_late_is_still_killed_and_reaped(guest,
                                                                         monkeypatch):
    """The worker learns a template's child's pid from its one message: when that
    message does not come in time, the template is killed (it forks no more, and
    is replaced at the next run) and closing it waits for the late message, so the
    child it names is killed and reaped too."""
    import select

    from zvm_core.elf import load_program
    from zvm_core.engines.native.supervisor import Template
    hello, waits = Template._hello, []

    def too_late(self):         # the first answer comes just after the wait gave up
        if not waits:
            waits.append(select.select([self.sock], [], [], RUN_TIMEOUT)[0])
            raise TimeoutError('timed out')
        return hello(self)

    monkeypatch.setattr(Template, '_hello', too_late)
    before = set(_child_states(os.getpid()))
    template = Template(load_program(str(guest('hello'))), 64 << 20)
    with pytest.raises(TimeoutError):
        template.take()
    with pytest.raises(OSError, match='being replaced'):
        template.take()
    assert waits[0] and len(set(_child_states(os.getpid())) - before) == 2   # and its child
    template.close()
    assert set(_child_states(os.getpid())) <= before


@pytest.mark.parametrize('listed', [True, False], ids=['proc-children', 'no-proc-children'])
def test_a_template_that_dies_before_its_child_s_message_leaves_no_zombie(guest,
                                                                          monkeypatch,
                                                                          listed):
    """The kernel names a template's child in its message alone: when the template
    and the child die before it comes (here: taken off the socket, as if never sent,
    both killed), closing the template reaps that child too, found among this
    process's children as a loader no template knows, and already a zombie -- also
    where the kernel keeps no /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN):
    nothing was swept there."""
    import builtins
    import errno
    import select
    import signal

    from zvm_core.elf import load_program
    from zvm_core.engines.native import supervisor
    from zvm_core.engines.native.supervisor import Template
    hello = Template._hello

    def no_children(path, *args, **kwargs):
        if str(path).endswith('/children'):
            raise FileNotFoundError(errno.ENOENT, 'No such file or directory', path)
        return builtins.open(path, *args, **kwargs)

    if not listed:
        monkeypatch.setattr(supervisor, 'open', no_children, raising=False)

    def lost(self):
        pid, listener, _msg = hello(self)
        os.close(listener)
        pidfd = os.pidfd_open(pid)
        os.kill(pid, signal.SIGKILL)
        os.kill(self.pid, signal.SIGKILL)
        assert select.select([pidfd], [], [], RUN_TIMEOUT)[0]     # a zombie now
        os.close(pidfd)
        raise OSError(errno.EPIPE, 'the template is gone')

    before = set(_child_states(os.getpid()))
    template = Template(load_program(str(guest('hello'))), 64 << 20)
    monkeypatch.setattr(Template, '_hello', lost)
    with pytest.raises(OSError, match='gone'):
        template.take()
    assert 'Z' in _child_states(os.getpid()).values()
    template.close()
    assert set(_child_states(os.getpid())) <= before


@pytest.mark.parametrize('error', [OSError(errno.EPIPE, 'the template is gone'),
                                   TimeoutError('timed out')])
def test_a_template_that_gives_no_child_ends_the_run_as_the_host_s_trouble(
        guest, monkeypatch, error):
    """A template that died, or gave no child in time, fails the run ``killed`` with a
    message the proxy answers 503 for (the host's trouble: the program may run on
    another try), not a 500 as for a bug of ours."""
    from zvm_core.elf import load_program
    from zvm_core.engines.native.supervisor import Template, run

    def take(self, ahead=False):
        raise error

    program = load_program(str(guest('hello')))
    template = Template(program, 64 << 20)
    try:
        monkeypatch.setattr(Template, 'take', take)
        report = run(program, [], ['hello'], {}, 64 << 20, 30, template=template)
    finally:
        template.close()
    assert report.status == 'killed', report
    assert report.message == f'native engine: the template failed: {error.strerror or error}'
    assert report.host_failure


def test_warm_native_runs_leave_no_zombie_nor_process(guest, tmp_path):
    """A worker replies first and reaps its runs' children after, while it waits
    for work (a request that comes first is served first): once idle, none of many
    runs is left a zombie; a worker killed leaves no process of its own behind
    (its template and child die with it)."""
    import signal
    import time

    from zvm_core.channels import WRITE
    from zvm_core.pool import ChannelSpec, Pool
    prog = str(guest('hello'))
    with Pool(size=1, queue=0) as pool, open(os.devnull, 'wb') as null:
        [worker] = pool.pids
        for _ in range(30):
            report = pool.run(prog, [ChannelSpec('/dev/stdout', null.fileno(), WRITE)],
                              argv=['hello'], engine='native')
            assert report.status == 'ok' and report.engine == 'native', report
        kids = _settled(worker)
        assert len(kids) == 2 and set(kids.values()) == {'S'}, kids    # template, next child
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + RUN_TIMEOUT
        while any(_alive(pid) for pid in kids) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not [pid for pid in kids if _alive(pid)]


def test_a_template_that_dies_with_a_child_ready_is_replaced_after_the_run(guest):
    """A warm start whose child already waits at its gate starts in it whatever became
    of the template (the child is the worker's: a template's death takes no system
    call of each start to notice): the template killed then is replaced after that
    run, off the next one's path, and no process of either is left behind."""
    import signal
    import time

    from zvm_core.channels import WRITE, Channel, MemoryBacking
    from zvm_core.engines.native.warm import Warm
    from zvm_core.executor import Limits
    from zvm_core.prepare import prepare
    before = set(_child_states(os.getpid()))
    prepared = prepare(str(guest('hello')), engine='native')
    warm = Warm(prepared.program, prepared.verdict, 64 << 20, prepared.tsc)

    def run() -> None:
        out = MemoryBacking()
        report = warm.run([Channel('/dev/stdout', out, WRITE)], ['hello'], {}, 0, 0,
                          Limits(timeout=RUN_TIMEOUT), probe=False)
        assert report.status == 'ok' and out.data.startswith(b'Hello'), report

    try:
        run()
        warm.reset()
        warm.idle()                     # the next run's child, taken in
        assert len(set(_child_states(os.getpid())) - before) == 2
        old = warm.template.pid
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + RUN_TIMEOUT
        while _child_states(os.getpid()).get(old) != 'Z':
            assert time.monotonic() < deadline
            time.sleep(0.005)
        run()                           # in the ready child
        assert warm.template.pid == old
        warm.reset()                    # the dead template fails its fork: replaced now
        assert warm.template.pid != old and warm.template.alive()
        warm.idle()
        kids = {pid: state for pid, state in _child_states(os.getpid()).items()
                if pid not in before}       # another test's leftovers are not this one's
        assert len(kids) == 2 and 'Z' not in kids.values(), kids
        run()
    finally:
        warm.close()
    assert set(_child_states(os.getpid())) <= before


def test_traced_warm_runs_are_reaped_by_their_tracer_off_the_request_path(guest):
    """A traced guest (``rdtsc``: every CPython image) whose run ended is killed after
    the reply (``reset``) and reaped by its tracer's thread: none is left a zombie
    though this thread never waits for it (no ``idle``), and closing leaves nothing."""
    import time

    from zvm_core.channels import WRITE, Channel, MemoryBacking
    from zvm_core.engines.native import tsc_unavailable
    from zvm_core.engines.native.warm import Warm
    from zvm_core.executor import Limits
    from zvm_core.prepare import prepare
    if tsc_unavailable():
        pytest.skip(f'no traced guests here: {tsc_unavailable()}')
    before = set(_child_states(os.getpid()))
    prepared = prepare(str(guest('rdtsc')), engine='native')
    assert prepared.tsc
    warm = Warm(prepared.program, prepared.verdict, 64 << 20, prepared.tsc)
    try:
        for how in ('', 'null', ''):        # an exit, a fault, an exit
            out = MemoryBacking()
            report = warm.run([Channel('/dev/stdout', out, WRITE)],
                              ['rdtsc', *how.split()], {}, 0, 0,
                              Limits(timeout=RUN_TIMEOUT), probe=False)
            assert report.status == ('fault' if how else 'ok'), report
            warm.reset()                    # kills the run's guest, asks for the next child
            deadline = time.monotonic() + RUN_TIMEOUT
            while True:     # the template and its next child: the guest reaped by its tracer
                kids = {pid: state for pid, state in _child_states(os.getpid()).items()
                        if pid not in before}
                if len(kids) <= 2 and 'Z' not in kids.values() or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            assert len(kids) <= 2 and 'Z' not in kids.values(), kids
            assert warm.template.pid in kids
    finally:
        warm.close()
    assert set(_child_states(os.getpid())) <= before


def test_warm_native_runs_that_are_killed_leave_no_zombie_nor_stray(guest, tmp_path):
    """Runs killed by their timeout, or ended by a fault, in between ordinary ones: once
    the worker is idle its children are its templates and their next runs' children,
    none a zombie, and closing the pool leaves no process behind."""
    import time

    from zvm_core.channels import WRITE
    from zvm_core.executor import Limits
    from zvm_core.pool import ChannelSpec, Pool
    before = set(_loaders())
    programs = {name: str(guest(name)) for name in ('hello', 'loop', 'crash')}
    expected = {'hello': 'ok', 'loop': 'timeout', 'crash': 'fault'}
    timeouts = {'hello': 30, 'loop': 0.5, 'crash': 30}     # a loaded machine's quick run too
    with Pool(size=1, queue=0) as pool, open(os.devnull, 'wb') as null:
        [worker] = pool.pids
        for name in ('hello', 'loop', 'hello', 'crash', 'hello', 'loop', 'crash', 'hello'):
            report = pool.run(programs[name], [ChannelSpec('/dev/stdout', null.fileno(), WRITE)],
                              argv=[name], engine='native', limits=Limits(timeout=timeouts[name]))
            assert (report.status, report.engine) == (expected[name], 'native'), report
        deadline = time.monotonic() + RUN_TIMEOUT
        kids: dict[int, str] = {}
        while True:     # settled: the same children twice in a row, none a zombie
            last, kids = kids, _child_states(worker)
            if (kids == last and 'Z' not in kids.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        # a template and its next child per program (and a start-up snapshot's, if any)
        assert len(kids) >= 6 and 'Z' not in kids.values(), kids
        assert set(kids) <= set(_loaders())
    deadline = time.monotonic() + 10
    while set(_loaders()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(_loaders()) - before


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not been reaped (a zombie included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize('files', [1100, 2048])
def test_a_template_child_that_cannot_pass_its_listener_is_gone_at_once(guest, tmp_path,
                                                                         files):
    """A child whose listener cannot be sent (its user has more descriptors in flight
    than its NOFILE limit, ETOOMANYREFS) says so on the template's socket and is
    killed by its own filter: the take fails with its line, not the timeout, and
    nothing is left (before: it trapped, waiting on a listener only it held, until
    the worker exited); the run is ``killed`` with a message that says the host is
    busy (before: the worker's "sandbox worker error").  The limit is the hard one
    the loader inherits (``files``), no longer CTL_FD + 1 (1031): with 1250 in
    flight a worker's 2048 passes it.

    The kernel counts descriptors in flight per user host-wide, by real uid; a user
    namespace's mapping changes nothing of it.  Run as root's (before), what this
    script keeps in flight made every native run of root on the host fail
    meanwhile, with the same errno 109.  So it runs with a real uid of its own, no
    account's (root's effective uid: its files stay reachable), in a user namespace
    of its own (no capability in the host's namespace exempts it, nor its loaders)."""
    import shutil
    import subprocess
    import sys
    if os.geteuid() != 0:
        pytest.skip('needs root: its script runs with a real uid of its own')
    if shutil.which('unshare') is None or shutil.which('setpriv') is None:
        pytest.skip('needs unshare and setpriv (util-linux)')
    script = tmp_path / 'refs.py'
    script.write_text(
        'import os, resource, socket, sys\n'
        'from zvm_core.elf import load_program\n'
        'from zvm_core.engines.native.supervisor import Template, run\n'
        f'resource.setrlimit(resource.RLIMIT_NOFILE, ({files}, {files}))\n'
        'program = load_program(sys.argv[1])\n'
        'template = Template(program, 64 << 20, timeout=30)\n'
        'a, b = socket.socketpair()\n'
        'r, _w = os.pipe()\n'
        'for _ in range(5):                       # 1250 in flight\n'
        '    socket.send_fds(a, [b"x"], [r] * 250)\n'
        # a run (its report) where it fails; a take where it passes (a process started
        # with its real uid not its effective one is not dumpable: no /proc/PID/mem)
        + ('report = run(program, [], ["hello"], {}, 64 << 20, 30, template=template)\n'
           'print(report.status, report.host_failure, report.message)\n' if files < 1250 else
           'template.take()\n'
           'print("passed")\n') +
        'a.close()\n'
        'def parent(p):  # a process may end between the listing and the look\n'
        '    try:\n'
        '        return open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]\n'
        '    except OSError:\n'
        '        return None\n'
        'print(sorted(os.listdir(f"/proc/{template.pid}/task")) and\n'
        '      [p for p in os.listdir("/proc") if p.isdigit() and p != str(template.pid)\n'
        '       and parent(p) == str(os.getpid())])\n'
        'template.close()\n')
    prog = tmp_path / 'hello'
    shutil.copy(guest('hello'), prog)
    cache = tmp_path / 'cache'
    cache.mkdir()
    env = dict(os.environ, ZVM_NATIVE_CACHE=str(cache),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    # a real uid per test process (above any account's): two sessions at once do not
    # add up; sys.executable itself, as a shell (or a pyenv shim) would drop to it
    got = subprocess.run(
        ['setpriv', f'--ruid={3_000_000 + os.getpid()}', 'unshare', '-U', '--map-user=1000',
         '--map-group=1000', sys.executable, str(script), str(prog)],
        env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    if got.returncode != 0 and 'Traceback' not in got.stderr:
        pytest.skip(f'no user namespace to run it in: {got.stderr.strip()}')
    assert got.returncode == 0, got.stderr
    said, children = got.stdout.splitlines()
    if files < 1250:        # the host's trouble, said so (the proxy answers 503)
        assert said == ('killed True native engine: loader: cannot pass the listener (errno 109): '
                        'this user has too many descriptors in flight on this host; '
                        'the host is busy, retry')
        assert children == '[]'     # its child killed and reaped (the template is alive)
    else:
        assert said == 'passed'


def test_warm_native_rdtsc_is_answered_in_template_children(guest, zvm, tmp_path):
    """Through the pool a program with rdtsc runs in a template's child, traced
    from its first instruction: the values of a fresh native run, every time."""
    from zvm_core.channels import WRITE
    from zvm_core.pool import ChannelSpec, Pool
    prog = guest('rdtsc')
    outputs = []
    with Pool(size=1, queue=0) as pool:
        for args in ((), ('handler',), ()):
            with open(tmp_path / 'out', 'wb') as out:
                report = pool.run(str(prog), [ChannelSpec('/dev/stdout', out.fileno(), WRITE)],
                                  argv=['rdtsc', *args], engine='native')
            assert report.status == 'ok' and report.engine == 'native', report
            outputs.append((tmp_path / 'out').read_bytes())
    fresh = [zvm.run(prog, *args, opts=NATIVE).stdout for args in ((), ('handler',))]
    assert outputs == [fresh[0], fresh[1], fresh[0]], (outputs, fresh)
    assert b'handler' not in fresh[1]


def test_nothing_of_an_earlier_run_is_left_to_find(guest, zvm):
    prog = guest('native_hostile')
    planted = zvm.run(prog, 'plant', 'zvm-secret-of-run-one', opts=NATIVE)
    assert planted.stdout == b'planted\n', planted
    scan = zvm.run(prog, 'scan', 'zvm-secret-of-run-one', 'loader', _loader_span(),
                   opts=NATIVE)
    assert scan.stdout == b'found 0\n', scan


@pytest.mark.parametrize('how,status', [('spin', 'timeout'), ('int80', 'fault'),
                                        ('calls', 'ok')])
def test_in_process_runs_leave_no_child(guest, how, status):
    from zvm_core.channels import WRITE, Channel, MemoryBacking
    from zvm_core.executor import Limits, run
    before = set(_loaders())
    limits = Limits(timeout=1 if how == 'spin' else 30)    # the others end by themselves
    report = run(guest('native_hostile'), [Channel('/dev/stdout', MemoryBacking(), WRITE)],
                 argv=['native_hostile', how], limits=limits, engine='native')
    assert (report.status, report.engine) == (status, 'native'), report
    assert set(_loaders()) <= before
    assert not [c for c in _children() if c.startswith('loader')]     # not even a zombie


@pytest.mark.parametrize('how,status', [('spin', 'timeout'), ('calls', 'ok')])
def test_either_wait_ends_a_run_as_its_guest_does_and_a_spin_at_its_deadline(guest, wait,
                                                                             how, status):
    """A spin without calls (nothing wakes the wait: the watchdog, or poll's timeout) is
    ``timeout`` no earlier than its deadline; a run of calls ends ``ok``; no loader left."""
    from zvm_core.channels import WRITE, Channel, MemoryBacking
    from zvm_core.executor import Limits, run
    before = set(_loaders())
    limits = Limits(timeout=0.5 if how == 'spin' else RUN_TIMEOUT)
    report = run(guest('native_hostile'), [Channel('/dev/stdout', MemoryBacking(), WRITE)],
                 argv=['native_hostile', how], limits=limits, engine='native')
    assert (report.status, report.engine) == (status, 'native'), report
    if how == 'spin':
        assert report.accounting.wall_time >= 0.5, report.accounting
    assert set(_loaders()) <= before
    assert not [c for c in _children() if c.startswith('loader')]


def test_a_guest_killed_outside_a_call_ends_its_run_then_not_at_its_deadline(guest, wait):
    """A guest killed while it spins (no call pending: nothing for RECV to take) ends
    the run as killed by its host -- the wait ends when the guest is gone, not at the
    run's deadline (which would say ``timeout``)."""
    import signal
    got = {}
    t, pid = spinning_thread(guest('native_hostile'), RUN_TIMEOUT, got)
    try:
        os.kill(pid, signal.SIGKILL)
    finally:
        t.join(RUN_TIMEOUT)
    assert not t.is_alive()
    report = got['report']
    assert report.status == 'killed' and 'SIGKILL' in report.message, report
    assert not [c for c in _children() if c.startswith('loader')]


def spinning_thread(prog: Path, timeout: float, got: dict, before=lambda: None):
    """A native guest spinning in a new thread of this process (``before`` run first in
    that thread), past its loader: (the thread, the guest's pid); its report lands in
    ``got['report']``.  Event-driven: the guest's first write says it runs."""
    import threading

    from zvm_core.channels import WRITE, Channel, FdBacking
    from zvm_core.engines.native.loader import loader_path
    from zvm_core.executor import Limits, run
    r, w = os.pipe()

    def spinning() -> None:
        before()
        got['report'] = run(prog, [Channel('/dev/stdout', FdBacking(w, True), WRITE)],
                            argv=['native_hostile', 'spinning'],
                            limits=Limits(timeout=timeout), engine='native')
    t = threading.Thread(target=spinning)
    t.start()
    try:
        with os.fdopen(r, 'rb') as said:
            assert said.readline() == b'spinning\n'     # past the loader, spinning
        [pid] = [p for p in _child_pids() if _is(lambda p=p: os.readlink(f'/proc/{p}/exe')
                                                 == str(loader_path()))]
    except BaseException:
        t.join(timeout)
        raise
    return t, pid


def _child_pids() -> list[int]:
    """This process's children (zombies included)."""
    pids = []
    for task in os.listdir('/proc/self/task'):
        try:
            with open(f'/proc/self/task/{task}/children') as f:
                pids += map(int, f.read().split())
        except FileNotFoundError:       # a thread that ended meanwhile
            continue
    return pids


def _children() -> list[str]:
    """Command names of this process's children (zombies included)."""
    names = []
    for pid in _child_pids():
        try:
            with open(f'/proc/{pid}/comm') as c:
                names.append(c.read().strip())
        except OSError:
            continue
    return names


def _userns_available() -> bool:
    import shutil
    import subprocess
    return shutil.which('unshare') is not None and subprocess.run(
        ['unshare', '-U', '-n', '-m', 'true'], capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def _spinning(guest, zvm):
    """(the pid of a running native guest, the CLI's process).  Event-driven: it is
    given once it said it runs (its first write, a mediated call: past the loader),
    found as the CLI's own child (other runs on the machine have guests too); the
    deadline only fails a hang."""
    import select
    import subprocess

    from zvm_core.engines.native.loader import loader_path
    proc = zvm.popen('run', '--engine', 'native', '--timeout', str(RUN_TIMEOUT),
                     guest('native_hostile'), 'spinning', stdout=subprocess.PIPE)
    try:
        assert select.select([proc.stdout], [], [], RUN_TIMEOUT)[0], 'the guest never ran'
        assert proc.stdout.readline() == b'spinning\n'
        [pid] = [p for p in map(int, filter(str.isdigit, os.listdir('/proc')))
                 if _is(lambda p=p: _parent(p) == proc.pid
                        and os.readlink(f'/proc/{p}/exe') == str(loader_path()))]
        yield pid, proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_the_guest_process_holds_only_what_it_was_given(guest, zvm):
    """What the kernel shows of a running native guest, and its end with the CLI
    awaited on a pidfd (the deadline only fails a hang)."""
    import select
    with _spinning(guest, zvm) as (pid, proc):
        pidfd = os.pidfd_open(pid)
        status = dict(line.split(':\t', 1) for line in
                      Path(f'/proc/{pid}/status').read_text().splitlines() if ':\t' in line)
        assert status['NoNewPrivs'].strip() == '1' and status['Seccomp'].strip() == '2'
        assert os.listdir(f'/proc/{pid}/fd') == []             # not even the listener
        maps = Path(f'/proc/{pid}/maps').read_text().splitlines()
        names = {line.split()[-1] for line in maps if len(line.split()) > 5}
        assert not names & {'[vdso]', '[vvar]', '[stack]', '[heap]'}, maps
        assert not [m for m in maps if 'w' in m.split()[1] and 'x' in m.split()[1]], maps
        limits = Path(f'/proc/{pid}/limits').read_text()
        assert re.search(r'Max core file size\s+0\s+0', limits), limits
        if _userns_available():
            for ns in ('net', 'mnt', 'user'):
                assert os.readlink(f'/proc/{pid}/ns/{ns}') != os.readlink(f'/proc/self/ns/{ns}')
            assert os.listdir(f'/proc/{pid}/root') == []       # an empty file tree
        proc.kill()
    try:        # PR_SET_PDEATHSIG: it dies with the CLI (its pidfd is readable once gone)
        assert select.select([pidfd], [], [], RUN_TIMEOUT)[0], 'the guest outlived the CLI'
    finally:
        os.close(pidfd)


def _vmas(pid: int) -> list[dict]:
    """The process's mappings: lo, hi, perms, name ('' for none), huge (marked "hg")."""
    vmas: list[dict] = []
    for line in Path(f'/proc/{pid}/smaps').read_text().splitlines():
        head = line.split()
        if re.fullmatch(r'[0-9a-f]+-[0-9a-f]+', head[0]):
            lo, hi = (int(x, 16) for x in head[0].split('-'))
            vmas.append({'lo': lo, 'hi': hi, 'perms': head[1],
                         'name': ' '.join(head[5:]), 'huge': False})
        elif head[0] == 'VmFlags:':
            vmas[-1]['huge'] = 'hg' in head[1:]
    return vmas


def test_a_spawned_guests_stack_and_data_are_shared_with_its_supervisor(guest, zvm):
    """A spawned guest's stack and writable data segment are one memfd, mapped shared
    by the guest and by its supervisor (the CLI here), which reads a writev's iovec
    array and musl's stdio buffer from its own mapping (fastcall.c); the heap stays
    private, and nothing of it is both writable and executable."""
    with _spinning(guest, zvm) as (pid, proc):
        vmas, theirs = _vmas(pid), _vmas(proc.pid)
    shared = [v for v in vmas if v['perms'] == 'rw-s']
    assert shared and all(v['name'].startswith('/memfd:zvm-guest') for v in shared), vmas
    assert any(v['hi'] == 1 << 32 for v in shared), vmas               # the stack
    assert any(v['hi'] <= 1 << 31 for v in shared), vmas                # a data segment
    assert [v for v in vmas if v['perms'] == 'rw-p' and not v['name']], vmas   # the heap
    assert not [v for v in vmas if 'w' in v['perms'] and 'x' in v['perms']], vmas
    assert [v for v in theirs if v['name'].startswith('/memfd:zvm-guest')
            and 'x' not in v['perms']], theirs


@pytest.mark.skipif(not Path('/sys/kernel/mm/transparent_hugepage').exists(),
                    reason='a kernel without transparent huge pages: no madvise to make')
def test_only_the_heaps_interior_may_be_huge_pages(guest, zvm):
    """The loader asks for transparent huge pages over the heap arena but its first and
    last 2 MiB (loader.c MAP_HUGE_HINT), nowhere else: one VMA marked "hg", inside a
    writable one cut around it at 2 MiB either side (a small heap never pays for
    zeroing 2 MiB), and not the stack (which every run touches)."""
    with _spinning(guest, zvm) as (pid, _):
        vmas = _vmas(pid)
    [i] = [i for i, v in enumerate(vmas) if v['huge']]
    below, heap, above = vmas[i - 1:i + 2]
    assert below['hi'] == heap['lo'] and heap['hi'] == above['lo'], vmas
    # (the heap's first 2 MiB may be one VMA with the data segment's below it)
    assert below['hi'] - below['lo'] >= 2 << 20 and above['hi'] - above['lo'] == 2 << 20, vmas
    assert below['perms'] == heap['perms'] == above['perms'] == 'rw-p', vmas
    stack = [v for v in vmas if v['hi'] == 1 << 32]
    assert stack and not stack[0]['huge'], vmas

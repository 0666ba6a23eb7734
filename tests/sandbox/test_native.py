"""The native engine: the same programs give the same bytes as under the
emulator, and a hostile guest ends with a clean status and no effect on the host.

Hidden instructions (``int $0x80``, ``sysenter``, ``rdtsc`` inside a ``movabs``
immediate, reached by an indirect jump) get past the validator by design:
natively the kernel must stop them (seccomp's architecture check, PR_SET_TSC).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.sandbox.test_programs import text_input
from zvm_core import engines

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
# native one with mediated calls) and cpuid (natively the host CPU answers)


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
    assert results['mprotect_exec'] == '-13'              # EACCES, by the filter natively
    edges = zvm.run(guest('native_hostile'), 'edges', opts=NATIVE)
    assert edges.stdout == b'mprotect_high_bits -22\nsendmsg_ctl -9\n', edges


@pytest.mark.parametrize('how,text', [
    ('int80', 'forbidden ABI'), ('sysenter', 'Signal'),
    ('rdtsc', 'SIGSEGV'), ('selfwrite', 'SIGSEGV')])
def test_hidden_and_forbidden_instructions_fault(guest, zvm, how, text):
    run = zvm.run(guest('native_hostile'), how, opts=NATIVE)
    assert run.status == 'fault', run
    assert run.returncode == 125
    assert 'still running' not in run.stdout.decode()
    assert text in run.report['message'] + run.report['exit_state'], run


def _loaders() -> list[int]:
    """Pids of live native guests (their executable is the loader)."""
    from zvm_core.engines.native.loader import loader_path
    target, pids = str(loader_path()), []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                if os.readlink(f'/proc/{entry}/exe') == target:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


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


def test_rdtsc_programs_run_emulated_under_auto(guest, zvm):
    prog = guest('rdtsc')
    auto = zvm.run(prog, opts=['--engine', 'auto'])
    assert auto.status == 'ok' and auto.report['engine'] == 'emulated', auto
    native = zvm.run(prog, opts=NATIVE)         # asked for: it runs, and rdtsc faults
    assert native.status == 'fault' and native.report['engine'] == 'native', native
    assert 'SIGSEGV' in native.report['message']


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


def test_nothing_of_an_earlier_run_is_left_to_find(guest, zvm):
    prog = guest('native_hostile')
    planted = zvm.run(prog, 'plant', 'zvm-secret-of-run-one', opts=NATIVE)
    assert planted.stdout == b'planted\n', planted
    scan = zvm.run(prog, 'scan', 'zvm-secret-of-run-one', 'loader', opts=NATIVE)
    assert scan.stdout == b'found 0\n', scan


@pytest.mark.parametrize('how,status', [('spin', 'timeout'), ('int80', 'fault'),
                                        ('calls', 'ok')])
def test_in_process_runs_leave_no_child(guest, how, status):
    from zvm_core.channels import WRITE, Channel, MemoryBacking
    from zvm_core.executor import Limits, run
    before = set(_loaders())
    report = run(guest('native_hostile'), [Channel('/dev/stdout', MemoryBacking(), WRITE)],
                 argv=['native_hostile', how], limits=Limits(timeout=1), engine='native')
    assert (report.status, report.engine) == (status, 'native'), report
    assert set(_loaders()) <= before
    assert not [c for c in _children() if c.startswith('loader')]     # not even a zombie


def _children() -> list[str]:
    """Command names of this process's children (zombies included)."""
    names = []
    for task in os.listdir('/proc/self/task'):
        with open(f'/proc/self/task/{task}/children') as f:
            for pid in f.read().split():
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


def test_the_guest_process_holds_only_what_it_was_given(guest, zvm, tmp_path):
    import time
    before = set(_loaders())
    proc = zvm.popen('run', '--engine', 'native', '--timeout', '20', '--stdout',
                     tmp_path / 'out', guest('native_hostile'), 'spin')
    try:
        deadline, pids = time.monotonic() + 15, []
        while not pids and time.monotonic() < deadline:
            pids = sorted(set(_loaders()) - before)
            time.sleep(0.05)
        assert pids, 'the guest never started'
        pid = pids[0]
        time.sleep(0.2)                         # past the loader: in the guest's loop
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
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10            # PR_SET_PDEATHSIG: it dies with the CLI
    while set(_loaders()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(_loaders()) - before

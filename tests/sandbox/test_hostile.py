"""Hostile programs: each ends with a clear status, and nothing on the host changes.

The validator rejects what can never be allowed (privileged instructions,
other system-call gates, hardware randomness); the runtime stops the rest
(W^X faults, hidden instructions, budgets, quotas) or answers with an error
the program sees (host files, processes, sockets, executable memory).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from tests.conftest import CLI, REPO, RUN_TIMEOUT
from zvm_core.prepare import ABSENT_FAULT

NOT_OK = 125
PROGRAMS = Path(__file__).resolve().parent.parent / 'programs'


def symbol(path, name: str) -> int:
    with open(path, 'rb') as f:
        sym = ELFFile(f).get_section_by_name('.symtab').get_symbol_by_name(name)
    assert sym, f'{name} not in {path}'
    return sym[0]['st_value']


def assert_stopped(run, status: str) -> None:
    assert run.status == status, run
    assert run.report['retcode'] is None, run
    assert run.returncode == NOT_OK, run
    assert run.report['message'], run


# -- rejected by the validator ------------------------------------------------------

@pytest.mark.parametrize('name, rule, mnemonic', [
    ('wrmsr', 'I2', 'wrmsr'),
    ('int80', 'I7', 'int'),
    ('sysenter', 'I7', 'sysenter'),
    ('rdrand', 'I3', 'rdrand'),
])
def test_validator_rejects(guest, zvm, name, rule, mnemonic):
    prog = guest(name)
    run = zvm.run(prog)
    assert_stopped(run, 'validation')
    validation = run.report['validation']
    assert validation['state'] == 'failed'
    hits = [v for v in validation['violations']
            if v['rule'] == rule and mnemonic in v['text']]
    assert hits, validation
    assert all(re.fullmatch(r'0x[0-9a-f]+', v['address']) for v in validation['violations'])
    # the address is in main, where the instruction was written
    main = symbol(prog, 'main')
    assert any(main <= int(v['address'], 16) < main + 256 for v in hits), validation
    assert run.stdout == b''                # not a single instruction ran
    assert run.accounting['fuel'] == 0

    res = zvm.validate(prog)
    assert res.returncode == 1, res
    out = res.stdout.decode()
    assert rule in out and hits[0]['address'] in out and mnemonic in out, out


def test_validate_accepts_and_usage_errors(guest, zvm, tmp_path):
    assert zvm.validate(guest('hello')).returncode == 0
    missing = zvm.validate(tmp_path / 'no-such-program')
    assert missing.returncode == 2, missing
    (tmp_path / 'text').write_bytes(b'#!/bin/sh\necho hi\n')
    res = zvm.validate(tmp_path / 'text')
    assert res.returncode == 1, res          # readable but not a static x86-64 ELF
    res = zvm.cli('run', '--report', tmp_path / 'r.json', tmp_path / 'text')
    assert res.returncode == NOT_OK, res
    assert '"validation"' in (tmp_path / 'r.json').read_text()


def test_rdtsc_policy(guest, zvm):
    prog = guest('rdtsc')
    run = zvm.run(prog, opts=['--rdtsc', 'reject'])
    assert_stopped(run, 'validation')
    assert {v['rule'] for v in run.report['validation']['violations']} == {'I4'}
    assert zvm.validate(prog, '--rdtsc', 'reject').returncode == 1
    assert zvm.validate(prog, '--rdtsc', 'virtualize').returncode == 0

    first = zvm.run(prog, opts=['--rdtsc', 'virtualize'])
    second = zvm.run(prog)                  # virtualize is the default
    assert first.status == second.status == 'ok', first
    assert first.stdout == second.stdout
    assert b'increasing 1\n' in first.stdout


# -- stopped at run time ------------------------------------------------------------

def test_hidden_rdtsc_is_stopped_by_the_guard(guest, zvm, engine):
    """sandbox-research 1.7: the sweep sees a movabs, the jump lands inside it; the
    guard stops it there, natively the hidden rdtsc faults."""
    prog = guest('rdtsc_hidden')
    assert zvm.validate(prog).returncode == 0          # nothing to see for a linear sweep
    run = zvm.run(prog)
    assert_stopped(run, 'fault')
    target = symbol(prog, 'hidden') + 2
    assert f'{target:#x}' in run.report['message'], run
    if engine == 'native':          # rdtsc faults natively (PR_SET_TSC): a #GP there
        assert run.report['message'] == f'general protection fault (rip {target:#x})', run
    else:
        assert 'boundary' in run.report['message'], run


def test_write_to_text_faults(guest, zvm, engine):
    prog = guest('write_text')
    run = zvm.run(prog)
    assert_stopped(run, 'fault')
    assert run.stdout == b'patching main\n'
    if engine == 'emulated':        # natively the supervisor sees the signal, not the address
        assert f'{symbol(prog, "main"):#x}' in run.report['message'], run


def test_jump_into_data_faults(guest, zvm, engine):
    prog = guest('jump_data')
    run = zvm.run(prog)
    assert_stopped(run, 'fault')
    assert run.stdout == b'calling data\n'
    if engine == 'emulated':
        assert f'{symbol(prog, "code"):#x}' in run.report['message'], run


def test_no_executable_memory_at_run_time(guest, zvm, engine):
    """mmap(PROT_EXEC), mprotect(PROT_EXEC) of the heap and of the text all fail."""
    run = zvm.run(guest('jit'))
    assert run.status == 'ok', run
    assert run.stdout.decode().splitlines() == [
        'mmap rwx: Permission denied',
        'mprotect rx: Permission denied',
        'mprotect text rwx: Permission denied',
        'no code was generated',
    ]


def test_host_files_are_unreachable(guest, zvm, tmp_path, engine):
    escape = tmp_path / 'escape'
    run = zvm.run(guest('passwd'), str(escape))
    assert run.status == 'ok', run
    assert run.report['retcode'] == 0, run
    out = run.stdout.decode()
    assert out.endswith('all refused\n'), out
    attempts = [line for line in out.splitlines() if line.startswith(('open', 'stat'))]
    assert len(attempts) == 13 * 3
    assert all(' = -1 errno=2' in line for line in attempts), out
    assert f'create {escape} = -1 errno=2' in out
    assert 'root:' not in out and 'read ' not in out
    assert not escape.exists()
    # no channel other than the declared ones was touched
    assert set(run.accounting['channels']) <= {'/dev/stdin', '/dev/stdout', '/dev/stderr'}


@pytest.mark.parametrize('call, names', [
    ('execve', {'execve'}), ('socket', {'socket'}), ('fork', {'fork', 'clone'}),
    ('clone', {'clone'}),
])
def test_processes_and_sockets_are_refused(guest, zvm, call, names, engine):
    run = zvm.run(guest('forbidden'), call)
    assert run.status == 'ok', run
    assert run.report['retcode'] == 0
    out = run.stdout.decode()
    assert f'{call} = -1 errno=38 ' in out, out              # ENOSYS
    assert out.endswith('still one process\n'), out
    assert 'pwned' not in out and 'alive' not in out
    unknown = run.accounting['unknown_syscalls']
    assert sum(unknown.get(n, 0) for n in names) == 1, unknown


def test_all_refused_calls_are_counted(guest, zvm, engine):
    run = zvm.run(guest('forbidden'), 'all')
    assert run.status == 'ok', run
    unknown = run.accounting['unknown_syscalls']
    assert unknown.get('execve') == 1 and unknown.get('socket') == 1, unknown
    assert unknown.get('clone', 0) + unknown.get('fork', 0) == 2, unknown
    assert run.stdout.count(b'errno=38 (') == 4


@pytest.mark.emulated_only(reason='fuel is the emulated engine\'s deterministic budget')
def test_infinite_loop_runs_out_of_fuel(guest, zvm, engine):
    run = zvm.run(guest('loop'), opts=['--fuel', '10000000'])
    assert_stopped(run, 'fuel')
    assert 10_000_000 <= run.accounting['fuel'] <= 10_000_000 + 64, run
    assert run.report['etags'].get('/dev/stdout', '') in ('', 'd41d8cd98f00b204e9800998ecf8427e')


def test_infinite_loop_wall_clock_timeout(guest, zvm, engine):
    fuel = ['--fuel', str(10**15)] if engine == 'emulated' else []
    run = zvm.run(guest('loop'), opts=[*fuel, '--timeout', '1'], timeout=60)
    assert_stopped(run, 'timeout')
    assert 1.0 <= run.accounting['wall_time'] < 30, run


def test_timeout_while_blocked_on_a_read(guest, zvm, tmp_path, engine):
    """stdin is a pipe that never delivers: --timeout must still end the run.  Its EOF
    comes only once the run ended (or after a minute, a bound against a hang, not a
    timing: a loaded machine starts a process late): a read still blocked then
    returns it, and the run ends ``ok``, not ``timeout``."""
    report = tmp_path / 'report.json'
    proc = zvm.popen('run', '--timeout', '1', '--report', report, '--stdout', tmp_path / 'out',
                     guest('cat'), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=60)
        hung = False
    except subprocess.TimeoutExpired:
        hung = True
    finally:
        proc.stdin.close()                  # EOF: lets a stuck read return
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert not hung, 'zvm run --timeout 1 was still running after 60 s, blocked in read()'
    assert proc.returncode == NOT_OK
    assert json.loads(report.read_text())['status'] == 'timeout'


def test_input_quota(guest, zvm, engine):
    """cat gets get_size bytes, then EDQUOT, and gives up: status quota."""
    data = bytes(range(256)) * 20
    run = zvm.run(guest('cat'), stdin=data, opts=['--quota', '/dev/stdin=get_size:1000'])
    assert run.status == 'quota', run
    assert run.returncode == NOT_OK
    assert run.report['retcode'] == 1           # the program did exit, after the refusal
    assert run.stdout == data[:1000]
    assert b'cat: read: ' in run.stderr
    assert run.accounting['channels']['/dev/stdin']['read_bytes'] == 1000
    # the message says how much was allowed, as the memory limit's does
    assert run.report['message'].startswith('quota exceeded on /dev/stdin (get_size 1000)'), run


def test_output_cut_by_the_quota_is_not_a_success(guest, zvm, engine):
    """stdio ignores the short write and the EDQUOT after it and hello exits 0: its
    output is not what it wrote, so the run ends ``quota`` (the cluster must not store
    a cut object as a success)."""
    run = zvm.run(guest('hello'), opts=['--quota', '/dev/stdout=put_size:3'])
    assert run.status == 'quota', run
    assert run.returncode == NOT_OK
    assert run.report['retcode'] == 0               # the program itself saw no failure
    assert run.stdout == b'Hel'
    assert run.report['message'].startswith('quota exceeded on /dev/stdout (put_size 3): '), run
    assert 'cut short' in run.report['message']


def test_output_that_fits_its_quota_exactly_is_ok(guest, zvm, engine):
    run = zvm.run(guest('hello'), opts=['--quota', '/dev/stdout=put_size:14'])
    assert run.status == 'ok', run
    assert run.stdout == b'Hello, world!\n'


def test_memory_bomb(guest, zvm, engine):
    run = zvm.run(guest('membomb'), opts=['--memory', str(64 << 20)])
    assert_stopped(run, 'memory')
    m = re.fullmatch(rb'malloc failed after (\d+) MiB\n', run.stderr)
    assert m, run
    assert 0 < int(m[1]) < 64
    assert run.accounting['peak_memory'] <= 64 << 20


@pytest.mark.parametrize('quota, max_bytes', [
    ('puts:1000,put_size:65536', 65536),
    ('puts:10', 10 * 4096),
])
def test_output_flood_hits_quota(guest, zvm, etag, quota, max_bytes, engine):
    run = zvm.run(guest('flood'), opts=['--quota', f'/dev/stdout={quota}'])
    assert_stopped(run, 'quota')
    limits = quota.replace(':', '=').replace(',', ', ')     # only the limits set: no 2**63-1
    assert run.report['message'] == ('/dev/stdout: write quota exceeded and the program kept '
                                     f'trying (limits: {limits})')
    acc = run.accounting['channels']['/dev/stdout']
    assert 0 < len(run.stdout) <= max_bytes
    assert acc['write_bytes'] == len(run.stdout)
    assert set(run.stdout) == {ord('y')}
    assert run.report['etags']['/dev/stdout'] == etag(run.stdout)


@pytest.mark.emulated_only(reason='fuel is the emulated engine\'s deterministic budget')
def test_output_flood_without_quota_runs_out_of_fuel(guest, zvm, engine):
    run = zvm.run(guest('flood'), opts=['--fuel', '100000'])
    assert_stopped(run, 'fuel')
    assert len(run.stdout) == run.accounting['channels']['/dev/stdout']['write_bytes'] > 0


# (how, the fault's kind and the signal): both engines say the same, the native one reads
# it from the signal frame (loader.c, supervisor._fault), the address where there is one
# (a stack overflow's too: the frame goes to the top of the stack)
@pytest.mark.parametrize('how, kind, sig', [
    ('div0', 'divide error', 8), ('int3', 'breakpoint (int3)', 5),
    ('ud2', 'invalid or unsupported instruction', 4),
    ('null', 'read of unmapped memory at 0x0', 11),
    ('hlt', 'program stopped without calling exit (hlt;', 11), ('abort', 'SIGABRT', None),
    ('stack', 'stack overflow: write at 0x', 11),
])
def test_crashes_are_faults(guest, zvm, how, kind, sig, engine):
    run = zvm.run(guest('crash'), how)
    assert_stopped(run, 'fault')
    assert run.stdout == f'crashing by {how}\n'.encode()
    message, state = run.report['message'], run.report['exit_state']
    other = zvm.run(guest('crash'), how,
                    opts=['--engine', 'emulated' if engine == 'native' else 'native'])
    assert (other.status, other.returncode) == (run.status, run.returncode), other
    assert (other.report['message'], other.report['exit_state']) == (message, state), other
    assert kind in message, run
    if sig is not None:
        rip = re.search(r'rip (0x[0-9a-f]+)\)$', message)
        assert rip and state == f'Signal {sig} from untrusted code: Halting at {rip[1]}', run


# Extensions the fixed cpuid table lacks.  Intel TSX (RTM): natively a transaction commits
# or aborts as the host decides, and unicorn runs xbegin as a mov.  AVX (any VEX/EVEX
# encoding), SHA, ADX, XSAVE: natively the host's CPU decides, and unicorn runs vpaddq on xmm as
# paddq (another sum) and kmovb as setb, or faults.  Both engines run each one as ud2
# (validator.as_fixed_cpu): the same fault at its address, every time
@pytest.mark.parametrize('program, how', [
    *(('rtm', how) for how in ('xbegin', 'xabort', 'xend', 'xtest', 'prefixed', 'skip',
                               'loop')),
    *(('avx', how) for how in ('xmm', 'ymm', 'zmm', 'kmovb', 'andn', 'sha', 'adcx',
                               'xgetbv', 'prefixed'))])
def test_instructions_the_fixed_cpu_lacks_are_invalid(guest, zvm, program, how, engine):
    prog = guest(program)
    assert zvm.validate(prog).returncode == 0       # not refused (glibc has TSX and AVX)
    runs = [zvm.run(prog, how) for _ in range(3)]
    other = zvm.run(prog, how, opts=['--engine', 'emulated' if engine == 'native'
                                     else 'native'])
    run = runs[0]
    assert_stopped(run, 'fault')
    address = symbol(prog, f'{program}_{how}')
    assert run.stdout == (b'' if how == 'loop' else f'{how} at {address:#x}\n'.encode()), run
    message = run.report['message']
    assert message.endswith(f'invalid or unsupported instruction (rip {address:#x}): '
                            f'{ABSENT_FAULT}'), run
    assert run.report['exit_state'] == f'Signal 4 from untrusted code: Halting at {address:#x}'
    for again in [*runs[1:], other]:
        assert (again.status, again.returncode, again.stdout) == \
            (run.status, run.returncode, run.stdout), again
        assert (again.report['message'], again.report['exit_state']) == \
            (message, run.report['exit_state']), again


def test_zvm_info_says_whether_this_cpu_runs_transactions(zvm):
    with open('/proc/cpuinfo') as f:
        tsx = 'rtm' in next(line for line in f if line.startswith('flags')).split()
    out = zvm.cli('info').stdout.decode()
    if 'native: available' in out:
        line = 'native transactions: the CPU ' + ('has TSX' if tsx else 'lists no TSX')
        assert line in out, out
    else:
        assert 'native transactions' not in out, out


@pytest.mark.emulated_only(reason='the guard checks every executed block starts on a '
                           'validated boundary; natively a hidden instruction runs, and '
                           'a hidden system call is still answered by the supervisor')
def test_hidden_syscall_reached_by_ret(guest, zvm, engine):
    prog = guest('hidden_ret')
    assert zvm.validate(prog).returncode == 0
    run = zvm.run(prog)
    assert_stopped(run, 'fault')                 # not exit 42 through the hidden syscall
    assert f'{symbol(prog, "hidden") + 3:#x}' in run.report['message'], run
    assert run.accounting['syscalls'] == 0


def test_entry_point_inside_an_instruction(guest, zvm):
    prog = guest('entry_hidden')
    run = zvm.run(prog)
    assert_stopped(run, 'validation')
    assert [v['rule'] for v in run.report['validation']['violations']] == ['E5']
    assert run.report['validation']['violations'][0]['address'] == f'{symbol(prog, "_start"):#x}'


@pytest.mark.emulated_only(reason='the guard checks every executed block starts on a '
                           'validated boundary; natively a hidden instruction runs, and '
                           'a hidden system call is still answered by the supervisor')
def test_code_in_rodata_never_runs(guest, zvm, engine):
    """With -z noseparate-code .rodata is in the executable segment."""
    prog = guest('rodata_code', flags=('-O2', '-Wl,-z,noseparate-code'))
    run = zvm.run(prog)
    assert run.status in ('fault', 'validation'), run
    assert run.returncode == NOT_OK
    assert b'returned' not in run.stdout
    if run.status == 'fault':
        assert f'{symbol(prog, "code"):#x}' in run.report['message'], run


def test_segment_register_load_is_rejected(guest, zvm):
    run = zvm.run(guest('segment'))
    assert_stopped(run, 'validation')
    assert {v['rule'] for v in run.report['validation']['violations']} == {'I6'}


def test_code_cannot_be_replaced_through_memory_calls(guest, zvm, engine):
    run = zvm.run(guest('remap'))
    assert run.status == 'ok', run
    out = run.stdout.decode()
    results = dict(line.split(': ', 1) for line in out.splitlines() if ': ' in line)
    refused = [k for k in results if k.startswith(('munmap', 'mmap', 'mprotect', 'mremap'))]
    assert len(refused) == 6
    assert all(results[k] != 'succeeded' for k in refused), out
    assert results['brk to text moved'] == '0'
    assert out.endswith('code unchanged\nlocal still 7\n'), out


def test_absurd_syscall_arguments(guest, zvm, engine):
    run = zvm.run(guest('badptr'), input=b'0123456789' * 10)
    assert run.status == 'ok', run
    lines = run.stdout.decode().splitlines()
    assert lines[-1] == 'survived', run
    results = dict(line.rsplit(' = ', 1) for line in lines if ' = ' in line)
    expected = {                    # what Linux answers
        'read(NULL)': '-1 errno=14', 'read(huge count at eof)': '-1 errno=14',
        'write(NULL)': '-1 errno=14', 'readv(huge iovcnt)': '-1 errno=22',
        'readv(negative iovcnt)': '-1 errno=22', 'pread(negative offset)': '-1 errno=22',
        'pread(huge offset)': '0 errno=0', 'lseek(overflow)': '-1 errno=22',
        'lseek(bad whence)': '-1 errno=22', 'open(NULL)': '-1 errno=14',
        'fstat(NULL)': '-1 errno=14', 'fstat(bad fd)': '-1 errno=9',
        'read(fd -1)': '-1 errno=9', 'clock_gettime(NULL)': '-1 errno=14',
        'uname(NULL)': '-1 errno=14', 'getrandom(bad flags)': '-1 errno=22',
        'mmap(len 0)': '-1 errno=22', 'nanosleep(bad nsec)': '-1 errno=22',
        'syscall(-1)': '-1 errno=38',
        'syscall(1<<40)': '-1 errno=9',     # the low 32 bits, read(), as Linux reads it
    }
    assert {k: results.get(k) for k in expected} == expected
    others = set(results) - set(expected) - {'lseek(huge)', 'read(at huge offset)'}
    assert all(results[k].startswith('-1 errno=') and results[k] != '-1 errno=0'
               for k in others), results
    assert 'brk(huge) moved: 0' in lines
    unknown = run.accounting['unknown_syscalls']
    assert unknown.get('-1') == 1, unknown
    assert unknown.get(str(0x40000000 | 39)) == 1, unknown    # x32 getpid: counted natively too


def test_channels_keep_their_direction(guest, zvm, engine):
    data = b'hello input, more than eleven bytes\n'
    run = zvm.run(guest('chanperm'), input=data)
    assert run.status == 'ok', run
    assert run.stdout.decode().splitlines() == [
        'open(/dev/stdin, O_WRONLY) = -1 Permission denied',
        'open(/dev/stdout, O_RDONLY) = -1 Permission denied',
        'open(/dev/input, O_RDWR) = -1 Permission denied',
        'open(/dev/input, O_WRONLY) = -1 Permission denied',
        'open(/dev/output) = -1 No such file or directory',
        'open(/dev/nvram) = -1 No such file or directory',
        'read(stdout) = -1 Bad file descriptor',
        'write(stdin) = -1 Bad file descriptor',
        'lseek(stdout) = -1 Invalid seek',
        'ftruncate(stdout) = -1 Function not implemented',
        'mmap(input, shared rw) = -1 Permission denied',
        'mmap(input, private r) = 0',
        'mapped: hello input',
    ]


# -- programs the ELF checks refuse ------------------------------------------------------

def test_elf_rwx_segment(guest, zvm):
    run = zvm.run(guest('hello', flags=('-O2', '-Wl,-N')))     # one RWX segment
    assert_stopped(run, 'validation')
    assert [v['rule'] for v in run.report['validation']['violations']] == ['E4']


def test_elf_executable_stack(guest, zvm):
    run = zvm.run(guest('hello', flags=('-O2', '-Wl,-z,execstack')))
    assert_stopped(run, 'validation')
    assert [v['rule'] for v in run.report['validation']['violations']] == ['E6']


@pytest.mark.parametrize('flags, rule', [(['-no-pie'], 'E2'), (['-pie', '-fPIE'], 'E1'),
                                         (['-static-pie', '-fPIE'], 'E1')])
def test_elf_dynamic_or_pie(zvm, tmp_path, flags, rule):
    prog = tmp_path / 'hello'
    subprocess.run(['gcc', '-O2', *flags, '-o', prog, PROGRAMS / 'hello.c'], check=True)
    run = zvm.run(prog)
    assert_stopped(run, 'validation')
    assert [v['rule'] for v in run.report['validation']['violations']] == [rule]


@pytest.mark.parametrize('content', [b'', b'#!/bin/sh\necho hi\n', b'\x7fELF' + bytes(60)])
def test_not_an_elf_program(zvm, tmp_path, content):
    prog = tmp_path / 'prog'
    prog.write_bytes(content)
    run = zvm.run(prog)
    assert_stopped(run, 'validation')
    assert run.report['validation']['violations'][0]['rule'].startswith('E')


def test_truncated_elf(guest, zvm, tmp_path):
    prog = tmp_path / 'truncated'
    prog.write_bytes(guest('hello').read_bytes()[:3000])
    run = zvm.run(prog)
    assert_stopped(run, 'validation')
    assert [v['rule'] for v in run.report['validation']['violations']] == ['E3']


def test_clock_overflow(guest, zvm, engine):
    """Sleeping ~2**64 virtual seconds must not break the sandbox's clock."""
    run = zvm.run(guest('timewarp'))
    assert run.status == 'ok', run
    assert run.stdout.endswith(b'survived\n')


@pytest.mark.parametrize('epoch', [str(2**62), str(2**63 - 1), str(2**63), str(2**64)])
def test_huge_epoch(guest, zvm, epoch):
    """An --epoch the clock cannot represent is a usage error, or it works; never
    an internal failure."""
    prog = guest('timeprint')
    res = zvm.cli('run', '--epoch', epoch, '--stdout', '/dev/null', prog)
    assert res.returncode in (0, 2), res.stderr.decode()[-2000:]


@pytest.mark.parametrize('option, value', [
    ('--fuel', str(2**64)), ('--fuel', str(2**64 + 1)), ('--fuel', str(2**100)),
    ('--timeout', 'inf'), ('--timeout', 'nan'), ('--timeout', '1e308'), ('--timeout', '-1'),
    ('--memory', str(2**80)), ('--seed', str(2**200)),
])
def test_cli_limits_out_of_range(guest, zvm, option, value):
    """Extreme limit values: hello runs normally, or zvm refuses the value as a
    usage error (exit 2); no traceback, no silent wrap-around to a tiny budget."""
    res = zvm.cli('run', option, value, '--stdout', '/dev/null', guest('hello'))
    err = res.stderr.decode()
    assert res.returncode in (0, 2), err[-2000:]
    assert 'Traceback' not in err, err[-2000:]


def test_a_stuck_stderr_pipe_does_not_hang_the_cli(guest, zvm):
    """The CLI's stderr (the guest's too) is a full pipe that nobody reads: the run ends
    (timeout), and the CLI's own "zvm: timeout" line waits for room a bounded time
    (cli.STDERR_GRACE), then the CLI exits with the run's status (it blocked forever)."""
    rd, wr = os.pipe()
    try:
        os.set_blocking(wr, False)
        try:
            while True:
                os.write(wr, bytes(1 << 16))
        except BlockingIOError:
            pass
        os.set_blocking(wr, True)
        proc = subprocess.run([*CLI, 'run', '--timeout', '1', '--stdout', os.devnull,
                               guest('flood')], stderr=wr, cwd=REPO, env=zvm.env,
                              timeout=RUN_TIMEOUT, check=False)
    finally:
        os.close(wr)
        os.close(rd)
    assert proc.returncode == NOT_OK


def test_a_pool_run_names_the_extension_the_fixed_cpu_lacks(guest, engine):
    """The pool's worker runs a program from its template (each engine's): its fault
    report says what the CLI's does (executor.execute)."""
    from zvm_core.channels import WRITE
    from zvm_core.pool import ChannelSpec, Pool

    prog = guest('avx')
    address = symbol(prog, 'avx_zmm')
    with Pool(size=1, queue=0) as pool, open(os.devnull, 'wb') as out:
        reports = [pool.run(str(prog), [ChannelSpec('/dev/stdout', out.fileno(), WRITE)],
                            argv=['avx', 'zmm'], engine=engine) for _ in range(2)]
    for report in reports:
        assert (report.status, report.message) == \
            ('fault', f'invalid or unsupported instruction (rip {address:#x}): '
                      f'{ABSENT_FAULT}'), report

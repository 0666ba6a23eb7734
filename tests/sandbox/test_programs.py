"""Ordinary programs: the validator accepts them, and under ``zvm run`` each
produces exactly what the same binary produces natively (same argv, env and
stdin), with a report that accounts for what it did, under both engines."""

from __future__ import annotations

import random
import re
import subprocess

import pytest

MUSL = 'musl-gcc'
GLIBC = 'gcc'
ORDINARY = ['hello', 'cat', 'wc', 'sort', 'malloc', 'args_env', 'exitcode', 'timeprint',
            'fileio', 'getpid', 'readtext', 'addrs', 'sleep', 'cpuid',
            'reopen']
GLIBC_PROGRAMS = ['hello', 'wc', 'sort', 'malloc']
COMPILERS = [pytest.param(MUSL, id='musl'), pytest.param(GLIBC, id='glibc')]


def text_input(lines: int = 400, seed: int = 1) -> bytes:
    """Deterministic text: words of letters, digits and punctuation, some blank lines."""
    rng = random.Random(seed)
    words = ['alpha', 'Beta', 'gamma', 'delta', 'x', 'zeta9', '', '--', 'Omega', 'pi', '3.14']
    out = []
    for _ in range(lines):
        n = rng.randrange(0, 9)
        out.append(' \t'[rng.randrange(2)].join(rng.choice(words) for _ in range(n)))
    return ('\n'.join(out) + '\n').encode()


def assert_ok(run, retcode: int = 0) -> None:
    assert run.status == 'ok', run
    assert run.report['retcode'] == retcode, run
    assert run.returncode == retcode, run
    assert run.report['validation']['state'] in ('ok', 'cached'), run
    assert run.report['validation']['violations'] == [], run


def assert_same_as_native(run, nat: subprocess.CompletedProcess) -> None:
    assert run.stdout == nat.stdout, run
    assert run.stderr == nat.stderr, run
    assert run.returncode == nat.returncode, run


@pytest.mark.parametrize('cc', COMPILERS)
def test_validator_accepts_ordinary_programs(guest, zvm, cc):
    names = ORDINARY if cc == MUSL else GLIBC_PROGRAMS
    rejected = {}
    for name in names:
        res = zvm.validate(guest(name, cc))
        if res.returncode != 0:
            rejected[name] = res.stdout.decode(errors='replace')[-1500:]
    assert not rejected, rejected


@pytest.mark.parametrize('cc', COMPILERS)
def test_hello(guest, zvm, native, etag, cc, engine):
    prog = guest('hello', cc)
    run = zvm.run(prog)
    assert_ok(run)
    assert run.stdout == b'Hello, world!\n'
    assert_same_as_native(run, native(prog))
    assert run.report['etags']['/dev/stdout'] == etag(b'Hello, world!\n')
    acc = run.accounting
    assert acc['channels']['/dev/stdout']['write_bytes'] == 14
    assert acc['channels']['/dev/stdout']['writes'] >= 1
    assert acc['fuel'] > 100 if engine == 'emulated' else acc['fuel'] == 0
    assert acc['syscalls'] >= 2            # at least the write and exit_group
    assert acc['peak_memory'] > 0
    assert acc['wall_time'] > 0


def test_hello_inherits_terminal_stdout(guest, zvm, engine):
    """Without --stdout the guest writes to the CLI's own stdout."""
    run = zvm.run(guest('hello'), inherit_stdout=True)
    assert_ok(run)
    assert run.cli_stdout == b'Hello, world!\n'


def test_report_to_stderr(guest, zvm, engine):
    """``--report -`` puts the same JSON report on the CLI's stderr."""
    import json

    prog = guest('hello')
    res = zvm.cli('run', '--report', '-', prog)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b'Hello, world!\n'
    report = json.loads(res.stderr)
    assert report['status'] == 'ok'
    assert report['retcode'] == 0
    assert set(report['etags']) >= {'/dev/stdout'}


def test_cat_copies_large_binary_stdin(guest, zvm, native, etag, engine):
    data = random.Random(7).randbytes(2_500_000)   # more than the program's 1 MiB buffer
    prog = guest('cat')
    run = zvm.run(prog, stdin=data)
    assert_ok(run)
    assert run.stdout == data
    assert_same_as_native(run, native(prog, stdin=data))
    assert run.report['etags']['/dev/stdout'] == etag(data)
    ch = run.accounting['channels']
    assert ch['/dev/stdin']['read_bytes'] == len(data)
    assert ch['/dev/stdout']['write_bytes'] == len(data)
    assert ch['/dev/stdin']['reads'] >= 4          # 3 reads of data, then EOF
    assert ch['/dev/stdout']['writes'] >= 3


def test_cat_empty_stdin(guest, zvm, etag, engine):
    run = zvm.run(guest('cat'), stdin=b'')
    assert_ok(run)
    assert run.stdout == b''
    assert run.accounting['channels']['/dev/stdin']['read_bytes'] == 0


@pytest.mark.parametrize('cc', COMPILERS)
def test_wc(guest, zvm, native, cc, engine):
    data = text_input()
    prog = guest('wc', cc)
    run = zvm.run(prog, stdin=data)
    assert_ok(run)
    assert_same_as_native(run, native(prog, stdin=data))
    # and it is what wc(1) says
    lines, words, nbytes = map(int, run.stdout.split())
    assert (lines, nbytes) == (data.count(b'\n'), len(data))
    assert words == len(data.split())


@pytest.mark.parametrize('cc', COMPILERS)
def test_sort_input_to_output(guest, zvm, native, etag, tmp_path, cc, engine):
    data = text_input(lines=300, seed=3) + b'last line without newline'
    prog = guest('sort', cc)
    run = zvm.run(prog, input=data, output=True)
    assert_ok(run)
    expected = b''.join(line + b'\n' for line in sorted(data.split(b'\n')))
    assert run.output == expected
    assert run.report['etags']['/dev/output'] == etag(expected)
    assert run.accounting['channels']['/dev/input']['read_bytes'] == len(data)
    assert run.accounting['channels']['/dev/output']['write_bytes'] == len(expected)
    # natively, the same binary on ordinary files gives the same bytes
    (tmp_path / 'in').write_bytes(data)
    nat = native(prog, str(tmp_path / 'in'), str(tmp_path / 'out'))
    assert nat.returncode == 0
    assert (tmp_path / 'out').read_bytes() == run.output
    assert run.stdout == nat.stdout == f'sorted 301 lines, {len(expected)} bytes\n'.encode()


def test_sort_without_input_channel_fails_cleanly(guest, zvm, engine):
    """/dev/input not declared: open() fails (ENOENT), the program says so and exits 1."""
    run = zvm.run(guest('sort'), output=True)
    assert run.status == 'ok', run
    assert run.report['retcode'] == 1
    assert run.returncode == 1
    assert b'/dev/input: No such file or directory' in run.stderr


@pytest.mark.parametrize('cc', COMPILERS)
def test_malloc_heavy(guest, zvm, native, cc, engine):
    prog = guest('malloc', cc)
    run = zvm.run(prog)
    assert_ok(run)
    assert_same_as_native(run, native(prog))
    assert re.fullmatch(rb'mallocs \d+ frees \d+ reallocs \d+ checksum [0-9a-f]{16}\n',
                        run.stdout)
    assert run.accounting['peak_memory'] >= 3 << 20    # blocks of up to 3 MiB


@pytest.mark.parametrize('args, env', [
    ((), {}),
    (('one', 'two words', '', 'ünïcødé', '--flag=x'), {'HOME': '/', 'K': 'v=w', 'EMPTY': ''}),
])
def test_args_env(guest, zvm, native, args, env, engine):
    prog = guest('args_env')
    opts = [f'--env={k}={v}' for k, v in env.items()]
    run = zvm.run(prog, *args, opts=opts)
    assert_ok(run)
    nat = native(prog, *args, env=env)
    assert_same_as_native(run, nat)
    assert run.stdout.startswith(f'argc={len(args) + 1}\nargv[0]={prog.name}\n'.encode())
    for i, (k, v) in enumerate(env.items()):
        assert f'envp[{i}]={k}={v}\n'.encode() in run.stdout


@pytest.mark.parametrize('how', ['exit', 'raw', 'ret'])
@pytest.mark.parametrize('code, expected', [(0, 0), (1, 1), (42, 42), (255, 255), (300, 44)])
def test_exit_codes(guest, zvm, native, how, code, expected, engine):
    prog = guest('exitcode')
    run = zvm.run(prog, str(code), how)
    assert_ok(run, expected)
    assert_same_as_native(run, native(prog, str(code), how))


def test_fileio_random_access(guest, zvm, native, etag, tmp_path, engine):
    data = b'0123456789abcdefghijklmnopqrstuvwxyz\nsecond line\n'
    prog = guest('fileio')
    run = zvm.run(prog, input=data, output=True)
    assert_ok(run)
    (tmp_path / 'in').write_bytes(data)
    nat = native(prog, str(tmp_path / 'in'), str(tmp_path / 'out'))
    assert nat.returncode == 0, nat.stderr
    assert run.stdout == nat.stdout
    assert run.output == (tmp_path / 'out').read_bytes()
    assert run.output.startswith(b'HEADEROK\nrecord 00\n') and run.output.endswith(b'END\n')
    # the etag is the digest of the channel's final content (pwrite patched the header)
    assert run.report['etags']['/dev/output'] == etag(run.output)
    assert f'size = {len(data)}\n'.encode() in run.stdout


@pytest.mark.parametrize('n', [0, 1000])
def test_getpid_loop(guest, zvm, native, n, engine):
    prog = guest('getpid')
    run = zvm.run(prog, str(n))
    assert_ok(run)
    assert_same_as_native(run, native(prog, str(n)))
    assert run.stdout == f'{n} getpid calls, 0 changed\n'.encode()
    assert run.accounting['syscalls'] >= n + 1


def test_syscalls_into_read_only_memory_fail_like_linux(guest, zvm, tmp_path, engine):
    """read()/pread()/readv()/getrandom()/clock_gettime()/uname() into the text
    segment or .rodata: EFAULT, code unchanged (the kernel side keeps W^X)."""
    prog = guest('readtext')
    data = b'0123456789abcdefghijklmnopqrstuvwxyz'
    run = zvm.run(prog, stdin=data, input=data)
    assert_ok(run)
    (tmp_path / 'in').write_bytes(data)
    with open(tmp_path / 'in', 'rb') as stdin:      # a file, as the sandbox's stdin is
        nat = subprocess.run([prog.name, str(tmp_path / 'in')], executable=prog, stdin=stdin,
                             capture_output=True, env={}, timeout=60, check=False)
    assert_same_as_native(run, nat)
    assert b'code unchanged\n' in run.stdout
    assert run.stdout.count(b'= -1 errno=14\n') == 7


def test_timeprint_virtual_clock(guest, zvm, engine):
    """Clocks start at --epoch (0 by default) and only move with the program."""
    prog = guest('timeprint')
    for epoch in (0, 1_700_000_000):
        opts = [f'--epoch={epoch}'] if epoch else []
        run = zvm.run(prog, opts=opts)
        assert_ok(run)
        lines = dict(line.split(' ', 1) for line in run.stdout.decode().splitlines())
        assert lines['time'] == str(epoch)
        assert lines['realtime'].startswith(f'{epoch}.')
        assert lines['gettimeofday'].startswith(f'{epoch}.')
        assert lines['monotonic'].startswith('0.')       # far less than a second of guest time
        assert lines['monotonic-advanced'] == '1'
        assert lines['getrandom'] == '16'
        assert re.fullmatch(r'[0-9a-f]{32}', lines['random'])
        assert re.fullmatch(r'[0-9a-f]{32}', lines['at_random'])
        assert lines['random'] != lines['at_random']
        assert lines['times'] == '1 1 1 1 1'    # ticks of the CPU clock, not stack garbage
        assert lines['umask'] == '022 077'


def test_sleep_is_virtual(guest, zvm, engine):
    """Three virtual days of sleep cost no wall time and move the guest clock."""
    run = zvm.run(guest('sleep'))
    assert_ok(run)
    assert run.stdout == b'slept 259200 s, 0 left\n'
    assert run.accounting['wall_time'] < 10


@pytest.mark.emulated_only(reason='natively the host CPU answers cpuid (its APIC id '
                           'differs between cores), unless the CPU can fault it; the '
                           'emulated engine answers from a fixed table')
def test_cpuid_is_a_fixed_table_without_rdrand(guest, zvm, engine):
    run = zvm.run(guest('cpuid'))
    assert_ok(run)
    regs = {int(m[1], 16): [int(x, 16) for x in m[2].split()]
            for m in re.finditer(rb'leaf ([0-9a-f]{8}): ((?:[0-9a-f]{8} ?){4})', run.stdout)}
    assert len(regs) == 5, run.stdout
    assert not regs[1][2] & 1 << 30, 'CPUID.1:ECX advertises RDRAND, which is rejected'
    assert not regs[7][1] & 1 << 18, 'CPUID.7:EBX advertises RDSEED, which is rejected'
    assert re.search(rb'^vendor \w{12}$', run.stdout, re.M)


def test_reopen_truncate_and_append(guest, zvm, native, etag, tmp_path, engine):
    """open(O_TRUNC) empties /dev/output, O_APPEND writes at its end, as on Linux."""
    data = b'first line of input\n'
    prog = guest('reopen')
    run = zvm.run(prog, input=data, output=True)
    assert_ok(run)
    (tmp_path / 'in').write_bytes(data)
    nat = native(prog, str(tmp_path / 'in'), str(tmp_path / 'out'))
    assert run.stdout == nat.stdout
    assert (tmp_path / 'out').read_bytes() == b'short\nappended\n'
    assert run.output == b'short\nappended\n'
    assert run.report['etags']['/dev/output'] == etag(run.output)

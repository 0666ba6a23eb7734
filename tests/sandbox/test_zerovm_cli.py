"""``zvm`` as a drop-in for ``zerovm``: options, the report on stdout as ZeroCloud
parsed it, and the exit code (0 when the session ran, else the first error's errno)."""

from __future__ import annotations

import errno
import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from .manifests import REPO, SDK, STD_CHANNELS, zerocloud_parse

EXAMPLES = REPO / 'examples' / 'zvm-api'


def test_report_parses_line_by_line_as_zerocloud_did(zerovm, zvm_guest, engine):
    chans = STD_CHANNELS.replace('stdout, 0, 0', 'stdout, 0, 1')
    s = zerovm.run(zerovm.manifest(zvm_guest('zvm_exit'), chans), stdin=b'4')
    assert s.returncode == 0, s
    r = zerocloud_parse(s.stdout)
    assert r == {'validation': 0, 'daemon': 0, 'retcode': 4,
                 'etag': '/dev/stdout ' + hashlib.md5(b'bye\n').hexdigest(), 'cdr': r['cdr'],
                 'status': 'ok'}
    assert re.fullmatch(r'\d+\.\d\d \d+\.\d\d 1 1 1 4 0 0 0 0', r['cdr']), r


def test_a_fault_is_a_signal_and_eintr(zerovm, guest, engine):
    s = zerovm.run(zerovm.manifest(guest('crash')), stdin=None,
                   files={'stdin': b''})
    assert s.returncode == errno.EINTR, s
    assert zerocloud_parse(s.stdout)['retcode'] == 0
    # natively too: the supervisor reads where the guest was from the signal frame
    assert re.fullmatch(r'Signal 11 from untrusted code: Halting at 0x[0-9a-f]+', s.state), s


def test_a_timeout_is_a_session_timeout(zerovm, guest, engine):
    s = zerovm.run(zerovm.manifest(guest('loop'), timeout=1))
    assert (s.returncode, s.state) == (errno.EINTR, 'session timeout'), s


def test_skip_validation_reports_state_2(zerovm, guest, engine):
    s = zerovm.run(zerovm.manifest(guest('hello')), '-s')
    assert (s.returncode, s.validation, s.state) == (0, 2, 'ok'), s
    assert s.read('stdout') == b'Hello, world!\n'


def test_skip_validation_still_refuses_invalid_programs(zerovm, guest, engine):
    s = zerovm.run(zerovm.manifest(guest('rdrand')), '-s')
    assert (s.returncode, s.validation) == (errno.ENOEXEC, 1), s
    assert s.state.startswith('validation failed'), s


def test_validate_only_runs_nothing(zerovm, guest, engine):
    s = zerovm.run(zerovm.manifest(guest('hello')), '-F')
    assert (s.returncode, s.validation, s.state) == (0, 0, 'ok'), s
    assert s.read('stdout') == b''                   # opened (truncated), never written
    bad = zerovm.run(zerovm.manifest(guest('rdrand')), '-F')
    assert (bad.returncode, bad.validation) == (errno.ENOEXEC, 1), bad


def test_old_and_ignored_options_are_accepted(zerovm, guest, engine):
    s = zerovm.run(zerovm.manifest(guest('hello')), '-P', '-Q', '-v', '3', '-t', '2')
    assert (s.returncode, s.state) == (0, 'ok'), s
    d = s.dir
    proc = zerovm.zvm.cli('-M', d / 'manifest')
    assert proc.returncode == 0 and proc.stdout.decode().split('\n')[5] == 'ok'


def test_report_to_syslog_leaves_stdout_empty(zerovm, guest, engine):
    s = zerovm.run(zerovm.manifest(guest('hello')), '-t', '1')
    assert (s.returncode, s.stdout) == (0, ''), s


@pytest.mark.parametrize('args, says', [
    ([], 'no manifest given'),
    (['-t', '3', 'm'], 'a daemon socket, is not supported'),
    (['-X', 'm'], 'option -X not recognized'),
    (['a', 'b'], '2nd manifest encountered'),
])
def test_a_bad_command_line_is_einval(zvm, args, says):
    proc = zvm.cli(*args)
    assert proc.returncode == errno.EINVAL
    assert proc.stdout == b''
    assert says in proc.stderr.decode() and 'usage: zvm' in proc.stderr.decode()


def test_a_missing_manifest_file_is_enoent(zvm, tmp_path):
    proc = zvm.cli(tmp_path / 'none.manifest')
    assert proc.returncode == errno.ENOENT
    assert proc.stdout.decode().split('\n')[5].startswith('manifest open error')


@pytest.mark.parametrize('command', ['run', 'validate'])
def test_a_program_that_cannot_be_opened_is_named(zvm, tmp_path, command):
    # not Python's "[Errno 2] No such file or directory: '...'"
    proc = zvm.cli(command, tmp_path / 'nosuch')
    assert (proc.returncode, proc.stderr.decode()) == (
        2, f'zvm: cannot open {tmp_path / "nosuch"}: No such file or directory\n')


def test_a_program_given_as_the_manifest_says_how_to_run_it(zvm, guest):
    # `zvm ./prog` for `zvm run ./prog`: ZeroVM's report and code, then the hint
    proc = zvm.cli(guest('hello'))
    assert proc.returncode == errno.EFAULT
    assert proc.stdout.decode().split('\n')[5] == 'Timeout not specified'
    assert proc.stderr.decode() == (f'zvm: {guest("hello")} is a program, not a manifest: '
                                    f'run it with zvm run {guest("hello")}\n')


def test_same_manifest_same_report(zerovm, zvm_guest, engine):
    """Determinism: only the CPU times of the accounting line may differ (the
    memory etag is the emulated engine's)."""
    manifest = zerovm.manifest(zvm_guest('zvm_copy'),
                               STD_CHANNELS.replace('stdout, 0, 0', 'stdout, 0, 1'),
                               memory_etag=int(engine == 'emulated'))
    one, two = (zerovm.run(manifest, stdin=b'same input') for _ in range(2))
    assert one.returncode == two.returncode == 0
    assert one.lines[:4] == two.lines[:4] and one.lines[5:] == two.lines[5:]
    assert one.accounting[2:] == two.accounting[2:]


def test_sdk_prints_the_header_directory(zvm):
    proc = zvm.cli('sdk')
    assert proc.returncode == 0
    path = Path(proc.stdout.decode().strip())
    assert path == SDK and (path / 'zvm.h').is_file()


def test_the_subcommands_still_work(zvm, guest):
    assert zvm.validate(guest('hello')).returncode == 0
    assert zvm.run(guest('hello')).stdout == b'Hello, world!\n'


def test_validate_notes_instructions_the_sandboxs_cpu_lacks(zvm, guest):
    # a -mavx2 build is valid, and faulted at its first AVX instruction with no word
    # from validate: it now counts them and says how to build instead
    noted = zvm.validate(guest('avx')).stdout.decode()
    assert noted.startswith(f'{guest("avx")}: valid (')
    assert re.search(r"\n  note: \d+ of them are of extensions the sandbox's CPU lacks "
                     r'\(AVX, .*-march=x86-64-v2 at most\)\. zvm run it to see\n$', noted)
    assert '\n' not in zvm.validate(guest('hello')).stdout.decode().rstrip('\n')


@pytest.mark.parametrize('example, expect', [
    ('hello', b'hello, channel /dev/stdout!\nhello, channel /dev/stderr!\n'),
    ('jit', b'sum(1..100) = 5050\n'),
])
def test_examples(zerovm, zvm, zvm_guest, example, expect, engine, monkeypatch):
    """Under both engines; jit jails the code it generates: natively that is
    refused, so it runs under ``auto``, which picks the emulated engine for it."""
    if example == 'jit' and engine == 'native':
        monkeypatch.setitem(zvm.env, 'ZVM_ENGINE', 'auto')
    s = zerovm.run(zerovm.manifest(zvm_guest(EXAMPLES / f'{example}.c')))
    assert (s.returncode, s.state) == (0, 'ok'), s
    assert s.read('stdout') + s.read('stderr') == expect


def test_examples_readme_commands_build(tmp_path):
    """The README's compile line works as written."""
    sdk = subprocess.run(['python', '-m', 'zvm_core.cli', 'sdk'], capture_output=True,
                         text=True, cwd=REPO, check=True).stdout.strip()
    out = tmp_path / 'hello'
    subprocess.run(['musl-gcc', '-static', '-O2', f'-I{sdk}', '-o', out,
                    EXAMPLES / 'hello.c'], check=True)
    assert out.stat().st_size > 0

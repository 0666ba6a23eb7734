"""The ZeroVM program API: programs that use only ``zvm.h`` (the trap at 0x10000 and
the user manifest at 0xFEFFFFFC), the trap's errors, and jail/unjail."""

from __future__ import annotations

import errno
import hashlib
import random

import pytest

from zvm_core import engines
from zvm_core.channels import READ, WRITE, Channel, MemoryBacking
from zvm_core.elf import load_program
from zvm_core.engines.emulated.machine import Machine
from zvm_core.executor import Limits
from zvm_core.prepare import JAIL_CODE
from zvm_core.validator import validate
from zvm_core.zerovm.session import run_session
from zvm_core.zerovm.trap import TRAP_JAIL

from .manifests import STD_CHANNELS


def test_copy_with_the_zerovm_api(zerovm, zvm_guest, engine):
    data = bytes(random.Random(4).randrange(256) for _ in range(100_000))
    s = zerovm.run(zerovm.manifest(zvm_guest('zvm_copy'),
                                   STD_CHANNELS.replace('stdout, 0, 0', 'stdout, 0, 1')),
                   stdin=data)
    assert (s.returncode, s.state, s.retcode) == (0, 'ok', 0), s
    assert s.read('stdout') == data
    assert s.etags == {'/dev/stdout': hashlib.md5(data).hexdigest()}
    reads, read_bytes, writes, write_bytes = map(int, s.accounting[2:6])
    assert (read_bytes, write_bytes) == (len(data), len(data))
    assert reads == len(data) // 4096 + 2 and writes == reads - 1     # + the end, the tail


def test_copy_stops_at_the_read_quota(zerovm, zvm_guest, engine):
    """get_size 1000 on a 5000 byte input: 1000 bytes, then -EDQUOT (exit 1)."""
    s = zerovm.run(zerovm.manifest(zvm_guest('zvm_copy'),
                                   STD_CHANNELS.replace('1000, 1000000, 0', '1000, 1000, 0')),
                   stdin=b'x' * 5000)
    assert (s.returncode, s.state, s.retcode) == (0, 'ok', 1), s
    assert s.read('stdout') == b'x' * 1000
    assert s.read('stderr') == b'copy: error -122\n'


def test_sort_with_the_zerovm_api(zerovm, zvm_guest, engine):
    rng = random.Random(5)
    lines = [''.join(rng.choice('abcdefgh') for _ in range(rng.randrange(12)))
             for _ in range(3000)]
    data = ('\n'.join(lines) + '\n').encode()
    one_write_per_line = STD_CHANNELS.replace('0, 0, 1000, 1000000', '0, 0, 5000, 1000000')
    s = zerovm.run(zerovm.manifest(zvm_guest('zvm_sort'), one_write_per_line), stdin=data)
    assert (s.returncode, s.state, s.retcode) == (0, 'ok', 0), s
    assert s.read('stdout') == ('\n'.join(sorted(lines)) + '\n').encode()


@pytest.mark.parametrize('stdin, code', [(b'3', 3), (b'0', 0), (b'', -7)])
def test_zvm_exit_sets_the_user_return_code(zerovm, zvm_guest, stdin, code, engine):
    s = zerovm.run(zerovm.manifest(zvm_guest('zvm_exit')), stdin=stdin)
    assert (s.returncode, s.state, s.retcode) == (0, 'ok', code), s   # zerovm exits 0
    assert s.read('stdout') == b'bye\n'                               # nothing after the call


def test_user_manifest_lists_channels_in_zerovm_order(trapper, engine):
    channels = ('Channel = {d}/b, /dev/b, 3, 0, 5, 6, 7, 8\n'
                'Channel = {d}/a, /dev/a, 1, 0, 1, 2, 3, 4\n')
    s, out = trapper(['m', 'p'], channels, files={'a': b'12345', 'b': b'xy'})
    assert out == [
        'm 6 heap 16777216',
        'c 0 /dev/stdin 0 0 1000 1000000 0 0',
        'c 1 /dev/stdout 0 0 0 0 1000 1000000',
        'c 2 /dev/stderr 0 0 0 0 1000 1000000',
        'c 3 /dev/a 1 5 1 2 3 4',          # appendable: random read, size of the file
        'c 4 /dev/b 3 2 5 6 7 8',
        'c 5 /dev/nvram 3 30 10 100000 0 0',
        f'p = -1 {errno.EACCES}']                          # it stays read-only


def test_trap_errors(trapper, engine):
    s, out = trapper([
        'd:6:4', 'd:-1:4', 'b:/dev/stdin:0:4', 'b:/dev/stdin:0x10000:4', 'u:0x1234', 'u:0',
        'f', 'r:/dev/stdin:-4:0', 'r:/dev/stdin:0:0', 'x:5', 'm'])
    assert out == ['d 6 4 0 = -22', 'd -1 4 0 = -22',            # no such channel: EINVAL
                   'b /dev/stdin 0 4 = -22',                     # no memory there: EINVAL
                   'b /dev/stdin 0x10000 4 = -22',               # the trap page is not writable
                   'u = -1', 'u = -1',                           # unknown function: EPERM
                   'f = 0',                                      # fork without a daemon
                   'r /dev/stdin -4 0 = -14',                    # negative size: EFAULT
                   'r /dev/stdin 0 0 = 0']                       # nothing asked, nothing read
    assert s.retcode == 5 and s.state == 'ok'


@pytest.mark.parametrize('mode, lines, fault', [
    ('v', ['jail=0', 'f(5)=22'], None),
    ('u', ['jail=0', 'f(5)=22', 'unjail=0', 'jail=0', 'f(5)=25', 'unjail=0', 'calling'],
     'jump to non-executable memory'),
    ('w', ['jail=0', 'f(5)=22', 'writing'], 'write to read-only memory'),
    ('i', [f'jail={-errno.EPERM}', 'calling'], 'jump to non-executable memory'),
    ('n', ['calling'], 'jump to non-executable memory'),
    ('b', ['unaligned=-22', 'empty=-22', 'stack=-22', 'unjail-unaligned=-22'], None),
    ('x', ['jail=0', 'same=1', 'zero=0'], None),
])
@pytest.mark.emulated_only(reason='Jail makes code executable at run time: only the '
                           'emulated engine validates it (auto runs such programs there)')
def test_jail(zerovm, zvm_guest, mode, lines, fault, engine):
    """Generated code runs only once jailed; jailed code cannot be written; invalid
    code is refused (-EPERM) and never runs (its marker write would say "ran")."""
    s = zerovm.run(zerovm.manifest(zvm_guest('zvm_jail')), stdin=mode.encode())
    assert s.read('stdout').decode().splitlines() == lines, s
    if fault is None:
        assert (s.returncode, s.state, s.retcode) == (0, 'ok', 0), s
    else:
        assert s.returncode == errno.EINTR, s
        assert s.state.startswith('Signal 11 from untrusted code: Halting at 0x'), s


def _manifest(program, directory, memory_etag: int = 0) -> str:
    return (f'Version = 20130611\nProgram = {program}\nMemory = {64 << 20}, {memory_etag}\n'
            f'Timeout = 60\n' + STD_CHANNELS.replace('{d}', str(directory)))


def test_auto_runs_a_jail_program_emulated_and_says_why(zvm_guest, tmp_path):
    """zvm MANIFEST under auto: a program that can call Jail runs emulated (the
    report says why), one that cannot runs natively; natively Jail is refused."""
    stdin = tmp_path / 'stdin'
    stdin.write_bytes(b'v')
    manifest = tmp_path / 'manifest'

    def session(program: str, engine: str):
        manifest.write_text(_manifest(zvm_guest(program), tmp_path))
        return run_session(str(manifest), engine=engine)
    jail = session('zvm_jail', 'auto')
    assert (jail.code, jail.state, jail.report.engine) == (0, 'ok', 'emulated'), jail
    assert 'Jail' in jail.report.engine_reason
    assert (tmp_path / 'stdout').read_bytes() == b'jail=0\nf(5)=22\n'
    if engines.native_unavailable() is None:
        plain = session('zvm_copy', 'auto')
        assert (plain.code, plain.report.engine, plain.report.engine_reason) == \
            (0, 'native', ''), plain
        refused = session('zvm_jail', 'native')
        assert refused.report.engine == 'native'
        assert (tmp_path / 'stdout').read_bytes().startswith(f'jail={-errno.EPERM}\n'.encode())


def test_a_memory_etag_runs_emulated_under_auto(zvm_guest, tmp_path):
    (tmp_path / 'stdin').write_bytes(b'x')
    manifest = tmp_path / 'manifest'
    manifest.write_text(_manifest(zvm_guest('zvm_copy'), tmp_path, memory_etag=1))
    auto = run_session(str(manifest), engine='auto')
    assert (auto.code, auto.report.engine) == (0, 'emulated'), auto
    assert 'memory etag' in auto.report.engine_reason
    if engines.native_unavailable() is None:
        native = run_session(str(manifest), engine='native')
        assert native.code == errno.EINVAL and 'no memory etag' in native.state, native


def test_the_jail_code_prepare_looks_for_is_the_traps():
    assert JAIL_CODE == TRAP_JAIL.to_bytes(4, 'little')


def _jail_run(machine: Machine, mode: bytes) -> tuple:
    out = MemoryBacking()
    report = machine.run([Channel('/dev/stdin', MemoryBacking(mode), READ),
                          Channel('/dev/stdout', out, WRITE),
                          Channel('/dev/stderr', MemoryBacking(), WRITE)], ['zvm_jail'], {})
    return report.status, report.retcode, report.message, bytes(out.data)


def test_jail_does_not_survive_a_template_reset(zvm_guest):
    """A reused machine forgets jailed code: a later run that calls the same address
    without jailing faults exactly as on a fresh machine, and jailing works again."""
    program = load_program(zvm_guest('zvm_jail'))
    verdict = validate(program)
    machines = []

    def fresh() -> Machine:
        machines.append(Machine(program, verdict, Limits(memory=64 << 20)))
        return machines[-1]

    try:
        reused = fresh()
        first = _jail_run(reused, b'v')
        assert first == ('ok', 0, '', b'jail=0\nf(5)=22\n')
        after = _jail_run(reused, b'n')
        assert after == _jail_run(fresh(), b'n')
        assert after[0] == 'fault' and 'jump to non-executable memory' in after[2]
        assert _jail_run(reused, b'u') == _jail_run(fresh(), b'u')
        assert _jail_run(reused, b'v') == first
        assert reused.jail.pages
        reused.reset()
        assert not reused.jail.pages
        # the jailed fprem ran on the host FPU; its hook goes with the code: the
        # `ret` that 'v' jails at the same address runs as itself
        assert _jail_run(reused, b'x') == ('ok', 0, '', b'jail=0\nsame=1\nzero=0\n')
        assert _jail_run(reused, b'v') == first
    finally:
        for m in machines:
            m.close()

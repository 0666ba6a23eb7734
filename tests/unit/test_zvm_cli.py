"""``zvm``'s own usage errors: what the help promises is what the parser takes, and a
bad ``ZVM_NATIVE_*`` variable is named, with what it takes, before anything runs."""

from __future__ import annotations

import json

import pytest

from zvm_core import cli
from zvm_core.build.toolchain import BuildError
from zvm_core.engines.native import loader


def test_the_quota_help_shows_the_form_the_parser_takes(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(['run', '--help'])
    shown = capsys.readouterr().out
    assert '--quota /dev/NAME=key:value,...' in shown
    opts = cli.build_parser().parse_args(['run', '--quota', '/dev/stdout=puts:1', 'p'])
    assert opts.quota == [('/dev/stdout', 'puts:1')]
    assert '--quota /dev/NAME=' in cli.__doc__


@pytest.mark.parametrize('command', [['run', '/nonexistent/program'], ['info']])
@pytest.mark.parametrize('variable', ['ZVM_NATIVE_NAMESPACES', 'ZVM_NATIVE'])
def test_a_bad_native_switch_is_a_usage_error_naming_it(command: list[str], variable: str,
                                                        monkeypatch, capfd) -> None:
    # anything but `off` left the namespaces (the engine) on: a typo went unseen
    monkeypatch.setenv(variable, 'of')
    assert cli.main(command) == cli.EXIT_USAGE
    assert capfd.readouterr().err == f"zvm: {variable}='of': expected on or off\n"


@pytest.mark.parametrize('given', ['1G', '256MiB', '2e9'])
def test_a_size_with_a_unit_says_to_write_it_out(given: str, capsys) -> None:
    # "not an integer: '1G'" did not say that --memory wants bytes, written out
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(['run', '--memory', given, 'p'])
    assert (f"argument --memory: not an integer: '{given}' (a whole number, written out: "
            '1 GiB is 1073741824, 2x10^10 is 20000000000)') in capsys.readouterr().err
    assert cli.build_parser().parse_args(['run', '--memory', '0x40000000', 'p']).memory == 1 << 30


@pytest.mark.parametrize('given', ['1X=2', 'A-B=1', 'A B=1', 'É=1'])
def test_an_env_name_the_cluster_refuses_is_refused(given: str, capsys) -> None:
    # ``--env 1X=2`` ran locally, while a job's exec.env (zerocloud.job) refuses that name
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(['run', '--env', given, 'p'])
    name = json.dumps(given.split('=')[0])
    assert (f'argument --env: bad variable name {name}: letters, digits and "_" only, not '
            'starting with a digit') in capsys.readouterr().err
    assert cli.build_parser().parse_args(['run', '--env', '_a1=x=y', 'p']).env == [('_a1', 'x=y')]


@pytest.mark.parametrize('command', ['runn', 'rn', 'infoo', 'valdiate'])
def test_a_mistyped_command_is_named_not_taken_for_manifests(command: str, capfd) -> None:
    # was "zvm: 2nd manifest encountered" (or a missing manifest file) for "zvm runn prog"
    assert cli.main([command, 'prog']) == cli.errno.EINVAL
    said = capfd.readouterr().err
    assert said.startswith(f'zvm: {command}: no such command or manifest: did you mean zvm ')


def test_a_native_cache_that_cannot_be_made_is_named(monkeypatch, tmp_path) -> None:
    (tmp_path / 'file').write_text('')
    monkeypatch.setenv('ZVM_NATIVE_CACHE', str(tmp_path / 'file' / 'cache'))
    with pytest.raises(BuildError) as e:
        loader.cache_dir()
    assert str(e.value) == (f'ZVM_NATIVE_CACHE={tmp_path}/file/cache: cannot make the '
                            'directory: Not a directory')


# what a run whose verdict is cached imports: each zvm command is one process, and
# start-up was most of a short run (pyelftools alone ~1/3)
_IMPORTS = '''
import json, sys
from zvm_core import cli
code = cli.main(['run', '--engine', sys.argv[1], '--stdout', sys.argv[2], sys.argv[3]])
heavy = ('elftools', 'zvm_core.build.interpreters', 'capstone', 'unicorn')
print(json.dumps([code, sorted({h for m in sys.modules for h in heavy
                                if m == h or m.startswith(h + '.')})]))
'''


@pytest.mark.parametrize('engine', ['native', 'emulated'])
def test_a_run_with_a_cached_verdict_imports_only_what_it_uses(engine, guest, tmp_path,
                                                               monkeypatch) -> None:
    import json
    import subprocess
    import sys

    from zvm_core import engines
    if engine == 'native' and engines.native_unavailable():
        pytest.skip(f'native engine: {engines.native_unavailable()}')
    monkeypatch.setenv('ZVM_CACHE_DIR', str(tmp_path / 'verdicts'))
    monkeypatch.delenv('ZVM_SYSIMAGES', raising=False)
    argv = [sys.executable, '-c', _IMPORTS, engine, str(tmp_path / 'out'), str(guest('hello'))]
    first = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(first.stdout)[0] == 0, first.stderr        # validates: imports all
    again = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120)
    code, imported = json.loads(again.stdout)
    assert code == 0 and (tmp_path / 'out').read_bytes() == b'Hello, world!\n'
    assert imported == ([] if engine == 'native' else ['capstone', 'unicorn']), imported


@pytest.mark.parametrize('flags, said', [
    ('fpu tsc rtm hle avx', 'the CPU has TSX (rtm): validated ones are ud2, a hidden one '
                            'would commit or abort as the host decides'),
    ('fpu tsc hle avx', 'the CPU lists no TSX (rtm): validated ones are ud2, a hidden one '
                        'faults'),
    (None, 'unknown (cannot read ')])
def test_zvm_info_says_whether_the_cpu_runs_transactions(flags, said, monkeypatch,
                                                         tmp_path) -> None:
    cpuinfo = tmp_path / 'cpuinfo'
    if flags is not None:
        cpuinfo.write_text(f'processor\t: 0\nflags\t\t: {flags}\nbugs\t\t: taa rtm\n')
    monkeypatch.setattr(cli, 'CPUINFO', str(cpuinfo))
    assert cli._transactions().startswith(said)


def test_zvm_validate_says_what_instructions_the_cpu_lacks_do(guest, capsys, monkeypatch,
                                                              tmp_path) -> None:
    """A program built with -mavx2 is valid (exit 0), and a second line says how many
    instructions of which extensions the sandbox's CPU lacks it holds, that they fault
    if reached and what to build with; one with none gets the one line it had."""
    from zvm_core.elf import load_program
    from zvm_core.validator import VerdictCache, validate
    monkeypatch.setenv('ZVM_CACHE_DIR', str(tmp_path / 'verdicts'))
    monkeypatch.setattr(cli, 'default_cache', lambda: VerdictCache(tmp_path / 'verdicts'))
    avx2 = guest('floats', flags=('-O2', '-mavx2'))
    sites = len(validate(load_program(avx2)).absent)
    assert sites > 0
    assert cli.main(['validate', str(avx2)]) == 0
    valid, note = capsys.readouterr().out.splitlines()
    assert valid.startswith(f'{avx2}: valid (')
    assert note == (f"{avx2}: {sites} instructions of extensions the sandbox's CPU lacks "
                    f"(AVX {sites}) fault if reached (glibc's, behind cpuid, never are): "
                    'build without -march=native, -mavx* or -mbmi*; -march=x86-64-v2 at most')
    avx = guest('avx')          # tests/programs/avx.c: one of each, in asm
    assert cli.main(['validate', str(avx)]) == 0
    note = capsys.readouterr().out.splitlines()[1]
    listed = note.partition('lacks (')[2].partition(')')[0]
    counts = {name: int(n) for name, n in (item.rsplit(' ', 1) for item in listed.split(', '))}
    assert set(counts) == {'AVX', 'AVX-512', 'BMI', 'SHA', 'ADX', 'XSAVE'}, note
    assert sum(counts.values()) == len(validate(load_program(avx)).absent)
    assert cli.main(['validate', str(guest('floats'))]) == 0
    assert capsys.readouterr().out.count('\n') == 1

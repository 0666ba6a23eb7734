"""scripts/setup.sh, the README's first step, on a fresh Debian machine: its python3
may lack pip (Debian ships it apart, python3-pip) and refuse pip installs (PEP 668,
"externally-managed-environment"); both stopped the README's two commands there.

The script runs with stub commands first on PATH (python3, apt-get, sudo and the
tools it looks for), which record what they were asked and install nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# python3: its -c code runs in this Python with sysconfig's stdlib at $FAKE_STDLIB, in a
# venv at $FAKE_VENV if set, else not in one (as pytest's own Python may be);
# ``-m pip --version`` fails unless $HAS_PIP, ensurepip is missing if $NO_ENSUREPIP; the rest
# is logged.
PYTHON_STUB = f"""#!{sys.executable}
import os, sys, sysconfig
args = sys.argv[1:]
if args[0] == '-c':
    real = sysconfig.get_path
    sysconfig.get_path = lambda name, *a, **k: (os.environ['FAKE_STDLIB'] if name == 'stdlib'
                                                else real(name, *a, **k))
    sys.prefix = os.environ.get('FAKE_VENV') or sys.base_prefix
    sys.argv = ['-c', *args[2:]]
    if os.environ.get('NO_ENSUREPIP'):
        sys.modules['ensurepip'] = None
    exec(args[1])
elif args[:3] == ['-m', 'pip', '--version']:
    sys.exit(0 if os.environ.get('HAS_PIP') else 1)
else:
    with open(os.environ['STUB_LOG'], 'a') as log:
        log.write(' '.join(['python3', *args]) +
                  f" break={{os.environ.get('PIP_BREAK_SYSTEM_PACKAGES', '')}}\\n")
"""
LOGGED = '#!/bin/sh\necho "$(basename "$0") $*" >> "$STUB_LOG"\n'


def run_setup(tmp_path: Path, managed: bool, has_pip: bool, venv: bool = False,
              said: str = '', ensurepip: bool = True, code: int = 0) -> list[str]:
    """The commands setup.sh ran (the stubs' log); ``said``: its whole stderr, ``code``
    its exit status."""
    stubs = tmp_path / 'bin'
    stubs.mkdir()
    (stubs / 'python3').write_text(PYTHON_STUB)
    for name in ('apt-get', 'sudo', 'musl-gcc', 'gcc', 'strip', 'curl'):
        (stubs / name).write_text(LOGGED)
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    stdlib = tmp_path / 'stdlib'
    stdlib.mkdir()
    if managed:
        (stdlib / 'EXTERNALLY-MANAGED').write_text('[externally-managed]\n')
    log = tmp_path / 'log'
    log.touch()
    env = {**os.environ, 'PATH': f'{stubs}:/usr/bin:/bin', 'STUB_LOG': str(log),
           'FAKE_STDLIB': str(stdlib), 'HAS_PIP': '1' if has_pip else '',
           'FAKE_VENV': str(tmp_path / 'venv') if venv else '',
           'NO_ENSUREPIP': '' if ensurepip else '1'}
    env.pop('PIP_BREAK_SYSTEM_PACKAGES', None)
    done = subprocess.run(['bash', str(ROOT / 'scripts' / 'setup.sh')], env=env,
                          capture_output=True, text=True)
    assert done.returncode == code and done.stderr == said, done.stderr
    return log.read_text().splitlines()


def pip_install(log: list[str]) -> str:
    return next(line for line in log if line.startswith('python3 -m pip install'))


SAID = (f'setup.sh: installing into the system\'s externally-managed Python {sys.executable} '
        f'{sys.version.split()[0]} (PIP_BREAK_SYSTEM_PACKAGES=1; activate a venv first to '
        'keep it apart)\n')


@pytest.mark.parametrize('managed', [True, False])
def test_pip_installs_into_debians_python_only_when_it_is_externally_managed(
        tmp_path: Path, managed: bool) -> None:
    log = run_setup(tmp_path, managed=managed, has_pip=True, said=SAID if managed else '')
    assert pip_install(log).endswith(' break=1' if managed else ' break=')
    assert log[-1].startswith('python3 -m zvm_core.build.interpreters build')


def test_a_python3_without_pip_gets_debians_python3_pip(tmp_path: Path) -> None:
    log = run_setup(tmp_path, managed=True, has_pip=False, said=SAID)
    installs = [line for line in log if ' install ' in line and 'apt-get' in line]
    assert installs and 'python3-pip' in installs[0].split(), log
    assert log.index(installs[0]) < log.index(pip_install(log))


def test_a_venv_is_never_externally_managed_and_gets_pip_from_ensurepip(
        tmp_path: Path) -> None:
    # its python3 is the venv's (stdlib EXTERNALLY-MANAGED is the system's): apt's
    # python3-pip would go into the system Python, and the venv's pip installs freely
    log = run_setup(tmp_path, managed=True, has_pip=False, venv=True)
    assert not any('python3-pip' in line for line in log), log
    assert log.index('python3 -m ensurepip -q break=') < log.index(pip_install(log))
    assert pip_install(log).endswith(' break=')


def test_a_venv_without_pip_or_ensurepip_says_which_package_to_install(
        tmp_path: Path) -> None:
    # Debian's python3.X-venv holds ensurepip: a venv made without it has no pip
    version = '{}.{}'.format(*sys.version_info[:2])
    venv = tmp_path / 'venv'
    said = (f'setup.sh: the venv {venv} has no pip and its Python no ensurepip to get it '
            f'(Debian ships it apart): install python{version}-venv (sudo apt-get install '
            f'python{version}-venv), then recreate the venv (python3 -m venv --clear {venv})\n')
    log = run_setup(tmp_path, managed=False, has_pip=False, venv=True, said=said,
                    ensurepip=False, code=1)
    assert not any('pip' in line for line in log), log

"""The installed commands (setup.cfg's console scripts) as a user meets them: each
one's ``--help`` names it as installed, and one whose stdout's reader goes away
(``zvm info | head -1``) ends quietly with 141, as ``cat`` does."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _scripts() -> dict[str, str]:
    """name -> 'module:function', as setup.cfg installs them."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO / 'setup.cfg')
    lines = cfg['options.entry_points']['console_scripts'].strip().splitlines()
    return dict(line.replace(' ', '').split('=') for line in lines)


SCRIPTS = _scripts()


def _command(name: str, *args: str, **kw) -> subprocess.CompletedProcess:
    """``name ARGS`` as its installed script runs it: argv[0] is the script's path."""
    module, function = SCRIPTS[name].split(':')
    code = (f'import sys; sys.argv[0] = "/usr/local/bin/{name}"; '
            f'from {module} import {function}; sys.exit({function}())')
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'ZVM_CACHE_DIR': kw.pop('cache')}
    return subprocess.run([sys.executable, '-c', code, *args], cwd=REPO, env=env,
                          timeout=120, check=False, **kw)


def test_setup_cfg_installs_the_commands_the_docs_name():
    assert set(SCRIPTS) == {'zvm', 'zvm-interpreters', 'zvm-sysimages',
                            'zerocloud-devcluster', 'zc'}


@pytest.mark.parametrize('name', sorted(SCRIPTS))
def test_help_names_the_command_as_installed(name, tmp_path):
    """``zvm-sysimages --help`` said ``usage: zvm-interpreters``."""
    proc = _command(name, '--help', capture_output=True, cache=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith(f'usage: {name} '), proc.stdout[:200]


@pytest.mark.parametrize('args', [('zvm', 'info'), ('zvm', 'sdk'),
                                  ('zerocloud-devcluster', 'status', '--dir', '{tmp}'),
                                  ('zvm-sysimages', 'list', '--dir', '{tmp}')])
def test_a_closed_stdout_ends_the_command_quietly(args, tmp_path):
    """``zerocloud-devcluster status | head -1`` printed a BrokenPipeError traceback,
    ``zvm info | head -1`` said "zvm: Broken pipe" and exited 2."""
    entry = dict(name='lua', program='lua', image='lua.tar', member='lua', key='k')
    (tmp_path / 'sysimages.json').write_text(json.dumps({'lua': entry}))   # one to list
    read, write = os.pipe()
    os.close(read)
    try:
        proc = _command(*(a.format(tmp=tmp_path) for a in args), stdout=write,
                        stderr=subprocess.PIPE, cache=str(tmp_path / 'cache'))
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (141, b'')

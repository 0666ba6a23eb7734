"""``zvm`` as the client runs it: the command, its environment, and the Lua syntax check.

``zc run --script x.lua`` checks the script before sending it, as ``.py`` scripts are
(``jobs._check_python``): every node would fail with the same syntax error.  The client
has no Lua, but it has the sandbox, and the ``lua`` system image the nodes run where
``zvm-interpreters build`` made it (or ``$ZVM_SYSIMAGES`` names it): its ``loadfile``
compiles the script without running it, as ``luac -p``, skipping a ``#!`` line as
``lua script.lua`` does.  Without the image, or when zvm cannot run it, the nodes judge.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from zvm_core import sysimages

ZVM = [sys.executable, '-m', 'zvm_core.cli']
SYNTAX = 3          # the check's exit code for a script Lua refuses
_CHECK = f'local f, e = loadfile() if not f then io.stdout:write(e) os.exit({SYNTAX}) end'


def zvm_env() -> dict[str, str]:
    """This process's environment, with this package first on ``PYTHONPATH``."""
    here = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get('PYTHONPATH')
    return {**os.environ, 'PYTHONPATH': here + (os.pathsep + rest if rest else '')}


def lua_syntax_error(script: str, source: bytes) -> str | None:
    """Lua's message for a script it would refuse to load (``script:LINE: what``), or
    None: it loads, or this client cannot tell (no ``lua`` image, zvm failed)."""
    if 'lua' not in sysimages.configured():
        return None
    with tempfile.NamedTemporaryFile(prefix='zc-lua-') as f:
        f.write(source)
        f.flush()
        try:
            proc = subprocess.run([*ZVM, 'run', '--stdin', f.name, '--timeout', '30',
                                   'file://lua:lua', '-e', _CHECK], capture_output=True,
                                  stdin=subprocess.DEVNULL, env=zvm_env(), timeout=60,
                                  check=False)
        except (OSError, subprocess.SubprocessError):
            return None
    if proc.returncode != SYNTAX:
        return None
    message = proc.stdout.decode('utf-8', 'replace').strip()
    return script + message[len('stdin'):] if message.startswith('stdin:') else \
        f'{script}: {message}'

"""``zc run --script x.py`` compiles the script with the client's own Python before
sending it (``jobs._check_python``), but the nodes run it with the ``python3``
image's CPython 3.11, and zc runs on Python >= 3.10 (setup.cfg): on a 3.10 client
a script that only 3.11 reads (``except*``) is refused, "a syntax error: nothing
was sent", though every node would have run it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ('import sys; sys.path.insert(0, sys.argv[1]); from zerocloud.client import jobs; '
         'print(jobs.build(None, sys.argv[2], None, None).job[0]["exec"]["path"])')


def _python310() -> str | None:
    """A Python 3.10 (on PATH, or one of pyenv's: its shim runs only where selected)."""
    pyenv = Path(os.environ.get('PYENV_ROOT', Path.home() / '.pyenv'))
    found = next((str(p) for p in sorted(pyenv.glob('versions/3.10*/bin/python3.10'))),
                 None) or shutil.which('python3.10')
    if found is None:
        return None
    try:
        subprocess.run([found, '-c', 'import sys; sys.path.insert(0, sys.argv[1]); '
                        'import zerocloud.client.jobs', str(ROOT)], check=True,
                       capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return found


def test_a_script_for_the_images_python_is_sent_from_a_310_client(tmp_path: Path) -> None:
    python = _python310()
    if python is None:
        pytest.skip('no python3.10 that imports zerocloud.client.jobs here')
    script = tmp_path / 'groups.py'
    script.write_text('try:\n    raise ExceptionGroup("g", [ValueError(1)])\n'
                      'except* ValueError:\n    print("caught")\n')
    done = subprocess.run([python, '-c', BUILD, str(ROOT), str(script)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1]
    assert done.stdout.strip() == 'file://python3:python3'


def test_the_client_knows_the_images_python() -> None:
    from zerocloud.client.jobs import IMAGE_PYTHON
    from zvm_core.build.interpreters import PY_VERSION
    assert '.'.join(map(str, IMAGE_PYTHON)) == PY_VERSION


LUA_BAD = b'#!/usr/bin/env lua\nprint("hi"\nx = = 1\n'


def test_a_lua_syntax_error_is_said_once_before_sending(sysimages, tmp_path: Path) -> None:
    # a .py script was compiled before sending, a .lua one not: every node failed alike
    from zerocloud.client import jobs
    bad, good = tmp_path / 'bad.lua', tmp_path / 'good.lua'
    bad.write_bytes(LUA_BAD)
    good.write_bytes(b'#!/usr/bin/env lua\nprint(io.read("a"))\n')
    with pytest.raises(jobs.BuildError) as e:
        jobs.build(None, str(bad), None, None)
    assert str(e.value) == (f"{bad}:3: ')' expected (to close '(' at line 2) near 'x' "
                            '(a syntax error: nothing was sent)')     # the #! line counted
    assert jobs.build(None, str(good), None, None).job[0]['exec']['path'] == 'file://lua:lua'


def test_without_the_lua_image_the_nodes_judge(monkeypatch, tmp_path: Path) -> None:
    from zerocloud.client import jobs
    monkeypatch.setenv('ZVM_SYSIMAGES', '')
    bad = tmp_path / 'bad.lua'
    bad.write_bytes(LUA_BAD)
    assert jobs.build(None, str(bad), None, None).job[0]['exec']['path'] == 'file://lua:lua'

"""Ctrl-C while a command is still importing its modules (~0.2 s of ``zc``'s
start) ends it as Ctrl-C does once it runs: exit 130, no traceback.

The SIGINT is sent from inside the import of a module the command imports
late (an import hook), so the test does not depend on timing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# the console script pip writes for each entry point (setup.cfg), with a hook that
# interrupts the process when `trigger` is first imported
SCRIPT = '''
import os, signal, sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == {trigger!r}:
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
from {module} import main
sys.exit(main({argv!r}))
'''


@pytest.mark.parametrize('module, trigger, name', [
    ('zerocloud.client.cli', 'swiftclient.service', 'zc'),
    ('zvm_core.cli', 'zvm_core.validator', 'zvm'),
    ('zerocloud.devcluster', 'zvm_core.stdout', 'zerocloud-devcluster'),
])
def test_ctrl_c_while_a_command_starts_exits_130_quietly(module, trigger, name) -> None:
    # it printed a KeyboardInterrupt traceback from the middle of an import (exit 1)
    script = SCRIPT.format(trigger=trigger, module=module, argv=['--help'])
    got = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                         cwd=REPO, env={'PYTHONPATH': str(REPO), 'PATH': '/usr/bin:/bin'},
                         timeout=60, check=False)
    assert (got.returncode, got.stdout, got.stderr) == (130, '', f'\n{name}: cancelled\n')


def test_an_import_that_is_not_interrupted_changes_nothing() -> None:
    # the handler is the caller's again once the modules are imported: an importer
    # (pytest, a script) keeps Python's Ctrl-C
    script = ('import signal; import zerocloud.client.cli, zvm_core.cli, zerocloud.devcluster;'
              'print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)')
    got = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                         cwd=REPO, env={'PYTHONPATH': str(REPO), 'PATH': '/usr/bin:/bin'},
                         timeout=60, check=False)
    assert (got.returncode, got.stdout.strip()) == (0, 'True')

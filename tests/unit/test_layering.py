"""The layering rules of the code (README "Layout"), checked.

Data flows one way: a module knows the parts below it, never those above.
``rule_breaks`` reads the imports of every module (also those inside
functions) and names each import that breaks a rule; the subprocess test
checks that the Swift filters can be imported without loading the emulator
(unicorn) or the disassembler (capstone): they reach the sandbox only through
the pool, whose workers are other processes.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# What zerocloud may import from the sandbox: its light modules and the pool.
SANDBOX_DOORS = ('zvm_core.limits', 'zvm_core.pool', 'zvm_core.channels', 'zvm_core.sysimages',
                 'zvm_core.stdout', 'zvm_core.interrupt', 'zvm_core.tarheaders',
                 'zvm_core.version')
LIGHT = ('zvm_core.engines',)       # the engines' names only, not the engines
POOL_INSIDE = ('zvm_core.pool.worker',)    # zerocloud uses the caller side only
# Modules that turn requests into jobs: they take a Caller, never the filter.
ENTRY_POINTS = ('zerocloud.sources', 'zerocloud.chain', 'zerocloud.deferred',
                'zerocloud.zapp', 'zerocloud.cgiout', 'zerocloud.sql')
# Pure modules: the job JSON and the wire contract know nothing of Swift's servers
# (Swift's name limits, a table of constants, excepted).
NO_SWIFT = ('zerocloud.job', 'zerocloud.wire', 'zerocloud.peers')
SWIFT_CONSTANTS = ('swift.common.constraints',)
# The users' command runs on their machine, not in Swift: it may validate locally, and
# shares with the servers only the light modules that say what travels (never the proxy's).
CLIENT = ('zerocloud.client',)
CLIENT_SHARES = ('zerocloud.client', 'zerocloud.job', 'zerocloud.jobnames', 'zerocloud.peers',
                 'zerocloud.zapp_format', 'zerocloud.answer_format', 'zerocloud.sql.formats')
# Inside the sandbox: the personality and the ZeroVM trap are written against the
# guest-memory interface, never the emulator; the engines do not know each other;
# the guest-memory interface and the light modules import nothing heavy.
EMULATOR = ('unicorn', 'zvm_core.engines.emulated', 'zvm_core._guard')
PERSONALITY = ('zvm_core.syscalls', 'zvm_core.zerovm.trap', 'zvm_core.memory')
ENGINES = ('zvm_core.engines.emulated', 'zvm_core.engines.native')
LIGHT_MODULES = ('zvm_core.limits', 'zvm_core.report', 'zvm_core.cpu', 'zvm_core.stdout',
                 'zvm_core.interrupt', 'zvm_core.tarheaders', 'zvm_core.version')
HEAVY = ('unicorn', 'capstone', 'elftools')


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


PACKAGES = ('zvm_core', 'zvm_core.engines.emulated', 'zvm_core.zerovm', 'zvm_core.pool',
            'zvm_core.build', 'zerocloud', 'zerocloud.proxy', 'zerocloud.sql', 'swift.common')


def imports(source: str) -> list[str]:
    """Every module a source imports (``from <package> import b`` counts as ``<package>.b``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module in PACKAGES:
                found += [f'{node.module}.{alias.name}' for alias in node.names]
            else:
                found.append(node.module)
    return found


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + '.') for p in packages)


def rule_breaks(modules: dict[str, str]) -> list[str]:
    """``module: import`` for each import of ``modules`` (name -> source) that breaks a rule."""
    breaks = []
    for name, source in sorted(modules.items()):
        for imported in imports(source):
            why = None
            if name.startswith('zvm_core') and _within(imported, ('zerocloud', 'swift')):
                why = 'the sandbox knows nothing of Swift'
            elif (name.startswith('zerocloud') and not _within(name, CLIENT)
                  and _within(imported, ('zvm_core',))
                  and (not _within(imported, SANDBOX_DOORS) or _within(imported, POOL_INSIDE))
                  and imported not in LIGHT):
                why = 'zerocloud reaches the sandbox only through the pool and zvm_core.limits'
            elif (_within(name, CLIENT) and _within(imported, ('zerocloud',))
                  and not _within(imported, CLIENT_SHARES)):
                why = 'the client shares only light modules with the servers'
            elif _within(name, ENTRY_POINTS) and _within(imported, ('zerocloud.proxy.middleware',
                                                                    'zerocloud.object')):
                why = 'an entry point takes a Caller, never the filter'
            elif _within(name, ('zerocloud.proxy',)) and _within(imported, ('zerocloud.object',)):
                why = 'the proxy talks to object servers over the wire only'
            elif _within(name, ('zerocloud.object',)) and _within(imported, ('zerocloud.proxy',)):
                why = 'the object filter knows only the wire'
            elif (_within(name, NO_SWIFT) and _within(imported, ('swift',))
                  and not _within(imported, SWIFT_CONSTANTS)):
                why = 'a pure module'
            elif _within(name, PERSONALITY) and _within(imported, EMULATOR):
                why = 'the personality reaches guest memory through the interface only'
            elif any(_within(name, (e,)) and _within(imported, ENGINES)
                     and not _within(imported, (e,)) for e in ENGINES):
                why = 'an engine does not know the other'
            elif _within(name, LIGHT_MODULES) and (
                    _within(imported, HEAVY)
                    or (_within(imported, ('zvm_core',)) and imported not in LIGHT_MODULES)):
                why = 'a light module imports no other part of the sandbox'
            if why:
                breaks.append(f'{name}: {imported} ({why})')
    return breaks


def test_the_code_keeps_the_layering_rules() -> None:
    modules = {module_name(p): p.read_text() for package in ('zerocloud', 'zvm_core')
               for p in (ROOT / package).rglob('*.py')}
    assert 'zerocloud.proxy.middleware' in modules
    assert rule_breaks(modules) == []


@pytest.mark.parametrize(('name', 'source', 'broken'), [
    ('zerocloud.object', 'from zvm_core.executor import Limits', 'zvm_core.executor'),
    ('zerocloud.graph', 'import zvm_core.validator', 'zvm_core.validator'),
    ('zerocloud.sources', 'def f():\n    from zerocloud.proxy.middleware import X',
     'zerocloud.proxy.middleware'),
    ('zerocloud.job', 'from swift.common.swob import Request', 'swift.common.swob'),
    ('zvm_core.pool', 'import zerocloud.wire', 'zerocloud.wire'),
    ('zerocloud.object', 'from zvm_core.pool.worker import Templates', 'zvm_core.pool.worker'),
    ('zerocloud.proxy.dispatch', 'from zerocloud import object', 'zerocloud.object'),
    ('zvm_core.syscalls.proc', 'from unicorn.x86_const import X', 'unicorn.x86_const'),
    ('zvm_core.zerovm.trap', 'from zvm_core.engines.emulated import guard',
     'zvm_core.engines.emulated.guard'),
    ('zvm_core.engines.native.supervisor', 'from zvm_core.engines.emulated.machine import M',
     'zvm_core.engines.emulated.machine'),
    ('zvm_core.report', 'from zvm_core.channels import READ', 'zvm_core.channels'),
    ('zerocloud.client.cli', 'from zerocloud.proxy.response import SUMMARY_NODES',
     'zerocloud.proxy.response'),
])
def test_a_broken_rule_is_named(name: str, source: str, broken: str) -> None:
    found = rule_breaks({name: source})
    assert len(found) == 1 and found[0].startswith(f'{name}: {broken} (')


def test_allowed_imports_are_not_breaks() -> None:
    assert rule_breaks({
        'zvm_core.engines.native.memory': 'from zvm_core.memory import PAGE',
        'zvm_core.engines.emulated.jail': 'from zvm_core.engines.emulated.memory import R',
        'zvm_core.syscalls.io': 'from zvm_core.memory import PROT_R',
        'zerocloud.object': 'from zvm_core.pool import Pool\nfrom zvm_core.limits import Limits',
        'zerocloud.sources': 'from zerocloud.proxy.caller import Caller',
        'zerocloud.config': 'from zvm_core import limits',
        'zerocloud.client.cli': 'from zerocloud.answer_format import SUMMARY_NODES\n'
                                'from zerocloud.sql import formats',
    }) == []


def test_the_light_modules_load_nothing_heavy() -> None:
    code = ('import json, sys\n'
            f'import {", ".join((*LIGHT_MODULES, "zvm_core.memory"))}\n'
            f'print(json.dumps([m for m in sys.modules if m.split(".")[0] in {HEAVY!r}]))\n')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={'PYTHONPATH': str(ROOT)}).stdout
    assert json.loads(out) == []


def test_the_filters_load_neither_unicorn_nor_capstone() -> None:
    heavy = ('unicorn', 'capstone', 'zvm_core._guard', 'zvm_core.executor', 'zvm_core.validator')
    code = ('import json, sys\n'
            'import zerocloud.proxy, zerocloud.proxy.middleware, zerocloud.object\n'
            f'print(json.dumps([m for m in {heavy!r} if m in sys.modules]))\n')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={'PYTHONPATH': str(ROOT)}).stdout
    assert json.loads(out) == []

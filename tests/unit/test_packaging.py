"""The installed package holds every module: setup.cfg lists each package by hand; and
the test modules pytest imports by basename have distinct names."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed_in_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / 'setup.cfg')
    listed = set(cfg['options']['packages'].split())
    found = {'.'.join(init.parent.relative_to(ROOT).parts)
             for top in ('zvm_core', 'zerocloud') for init in (ROOT / top).rglob('__init__.py')}
    assert found - listed == set(), 'add these to [options] packages in setup.cfg'
    assert listed - found == set(), 'these are listed in setup.cfg but do not exist'


def test_test_modules_outside_packages_have_distinct_names():
    """tests/unit and tests/functional are not packages: pytest imports their modules by
    basename, and a second module of one name is not collected (the whole run fails)."""
    tests = Path(__file__).parents[1]
    seen: dict[str, Path] = {}
    for folder in sorted(p for p in tests.iterdir()
                         if p.is_dir() and not (p / '__init__.py').exists()):
        for module in sorted(folder.glob('test_*.py')):
            assert module.name not in seen, (module, seen[module.name])
            seen[module.name] = module
    assert 'test_packaging.py' in seen

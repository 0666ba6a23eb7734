"""The installed package holds every module: setup.cfg lists each package by hand."""

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

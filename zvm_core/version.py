"""``--version`` of every command (zvm, zc, zerocloud-devcluster): the installed
distribution's version, so that a report names what ran."""

from __future__ import annotations

import argparse
from importlib import metadata

DISTRIBUTION = 'zerocloud'


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return 'unknown (not installed)'


class _Version(argparse.Action):
    """Looked up only when asked: reading the installed metadata costs every start."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default,
                         help=help or 'print the installed version and exit')

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f'{parser.prog} {version()}')
        parser.exit()


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--version', action=_Version)

"""The sandbox's default limits, fixed sizes and input rules, for callers that only need them.

This module imports nothing (no unicorn, no capstone, no C guard), so that the
Swift middlewares can read the defaults without loading the sandbox; the
executor and the pool take their values from here.  See doc/operator-guide.md
for the options that set them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

DEFAULT_MEMORY = 256 << 20          # guest memory of one run, bytes
DEFAULT_FUEL = 200_000_000_000      # deterministic budget: bytes of guest code executed
DEFAULT_TIMEOUT = 60.0              # wall-clock safety net, seconds
MAX_FDS = 253                       # SCM_MAX_FD: descriptors (channels) one pool request can pass
MAX_TIMEOUT = 7 * 24 * 3600.0
MAX_MEMORY = 0xFEFF0000             # below the user manifest page (memory.MANIFEST_PAGE)
_ENV_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')


@dataclass(frozen=True)
class Limits:
    """What one run may use.  ``fuel`` is deterministic, ``timeout`` (s) is a safety net."""

    memory: int = DEFAULT_MEMORY
    fuel: int = DEFAULT_FUEL
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not 0 < self.memory <= MAX_MEMORY:
            raise ValueError(f'memory must be between 1 and {MAX_MEMORY} bytes')
        if self.fuel < 0:
            raise ValueError('fuel must not be negative')
        if not 0 < self.timeout <= MAX_TIMEOUT:     # also false for nan
            raise ValueError(f'timeout must be more than 0 and at most {MAX_TIMEOUT:g} s')


def bad_env_name(name: str) -> str | None:
    """Why ``name`` cannot be a guest environment variable's, or None: ``zvm run --env``,
    ``zc run --env`` and a job's exec.env refuse the same names."""
    if _ENV_NAME.fullmatch(name):
        return None
    return (f'bad variable name {json.dumps(name)}: letters, digits and "_" only, '
            'not starting with a digit')

"""The sandbox's default limits and fixed sizes, for callers that only need the numbers.

This module imports nothing (no unicorn, no capstone, no C guard), so that the
Swift middlewares can read the defaults without loading the sandbox; the
executor and the pool take their values from here.  See doc/operator-guide.md
for the options that set them.
"""

DEFAULT_MEMORY = 256 << 20          # guest memory of one run, bytes
DEFAULT_FUEL = 200_000_000_000      # deterministic budget: bytes of guest code executed
DEFAULT_TIMEOUT = 60.0              # wall-clock safety net, seconds
MAX_FDS = 253                       # SCM_MAX_FD: descriptors (channels) one pool request can pass

"""A command whose stdout's reader went away (``zvm info | head -1``,
``zerocloud-devcluster status | head -1``) ends quietly with 141, as ``cat`` does
(128 + SIGPIPE: Python ignores SIGPIPE, so its write fails with EPIPE), instead of
a BrokenPipeError traceback, or a second one when Python flushes stdout at exit."""

from __future__ import annotations

import os
import select
import signal
import sys
from collections.abc import Callable

EXIT_PIPE = 128 + signal.SIGPIPE


def reader_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader went away (a BrokenPipeError
    may be another connection's)."""
    poll = select.poll()
    poll.register(sys.stdout.fileno(), select.POLLOUT)
    return any(events & select.POLLERR for _, events in poll.poll(0))


def quiet(main: Callable[[], int]) -> int:
    """``main()``'s exit code, or EXIT_PIPE when stdout's reader went away."""
    try:
        code = main()
        sys.stdout.flush()      # what is buffered fails here, not at exit
        return code
    except BrokenPipeError:
        if not reader_gone():
            raise
    silence()
    return EXIT_PIPE


def silence() -> None:
    """Point stdout at /dev/null: Python's last flush at exit goes into nothing."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)

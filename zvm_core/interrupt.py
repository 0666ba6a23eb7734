"""Ctrl-C while a command is still importing its modules (``zc`` takes ~0.2 s
to) ends it quietly with 130, as Ctrl-C ends it once it runs, instead of a
KeyboardInterrupt traceback from the middle of an import."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

EXIT_INTERRUPTED = 128 + signal.SIGINT


@contextlib.contextmanager
def quiet_imports(command: str) -> Iterator[None]:
    """Within: SIGINT ends the process with 130 and ``<command>: cancelled`` on
    stderr; after it, the caller's handler again (an importer keeps its Ctrl-C).
    Python's own handler only: one set by the caller, or SIG_IGN, stays."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def cancelled(signum, frame) -> None:
        sys.stderr.write(f'\n{command}: cancelled\n')
        raise SystemExit(EXIT_INTERRUPTED)
    previous = signal.signal(signal.SIGINT, cancelled)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)

"""The proxy's temporary disk (``$TMPDIR``) running full: where what nodes wrote
(outputs, links between nodes) and the inputs it fetches for them wait."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


class DiskFull(Exception):
    """The proxy's ``$TMPDIR`` has no room left for what nodes wrote (outputs, links)
    or will read (inputs fetched for them): the proxy's trouble (507), neither the
    job's nor an object server's (an OSError there was taken for a server's failure,
    and the node run again elsewhere, or a 500)."""


@contextmanager
def room() -> Iterator[None]:
    """Writes to the proxy's temporary files: ENOSPC or EDQUOT is a :class:`DiskFull`."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFull(f'{tempfile.gettempdir()}: {os.strerror(e.errno)}') from None

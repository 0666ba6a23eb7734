"""The object server's cache of received programs and job images, by content.

A worker keeps a translated template per program file, so a program must
arrive at the same path every time: the object filter
(``zerocloud.object.middleware``) stores each program it receives under its
SHA-256 and sends later nodes' programs by digest (``zerocloud.wire``).

Programs, their templates and their validation verdicts (``zvm_core.validator``'s
``VerdictCache``, by SHA-256 too) are shared by every account, by judgement: a
verdict is decided by the program's bytes alone (with the validator's version and
policy), so it tells an account nothing it could not compute from bytes it already
has.  A hit does tell (a report's ``validation: cached``, a faster start) that this
server met those exact bytes before, for someone: only an account holding the same
bytes can ask, and a leak of "someone ran this program" is a timing channel that
keying verdicts per account would not close (the program and template caches say as
much), while every account would validate the programs all share (the system images'
interpreters) again and crowd the bounded caches.  (Not in the validator's own
docstring: its source is part of every verdict's version.)
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import os
import shutil
import tempfile

from zerocloud import wire
from zerocloud.object.scratch import remove_orphans

CONTENT_DIR = 'zerocloud-content-'


class ContentCache:
    """Received programs (or job images) by SHA-256 in one directory of this process.

    A worker keeps a template machine per program file, so the same program
    must arrive at the same path every time.  A cached file is never
    rewritten; beyond ``size`` programs the least recently used ones go,
    never one that a node is running.  The directory,
    ``<root>/zerocloud-content-<pid>-<random>``, goes when the process
    exits; the first program also removes those of processes that died
    without cleaning up (a server killed by a signal).
    """

    def __init__(self, size: int, root: str | None = None) -> None:
        self.size = size
        self.root = root or tempfile.gettempdir()
        self.dir: str | None = None
        self._users: collections.OrderedDict[str, int] = collections.OrderedDict()

    def _make_dir(self) -> str:
        remove_orphans(self.root, CONTENT_DIR)
        path = tempfile.mkdtemp(prefix=f'{CONTENT_DIR}{os.getpid()}-', dir=self.root)
        atexit.register(shutil.rmtree, path, True)
        return path

    def receive(self, src, limit: int) -> str:
        """Store the program read from ``src`` and hold it; returns its path."""
        if self.dir is None:
            self.dir = self._make_dir()
        fd, incoming = tempfile.mkstemp(prefix='.incoming-', dir=self.dir)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, 'wb') as out:
                wire.copy_limited(src, out, limit, digest)
            name = digest.hexdigest()
            path = os.path.join(self.dir, name)
            if name in self._users:
                os.unlink(incoming)
            else:
                os.replace(incoming, path)
        except BaseException:
            if os.path.exists(incoming):
                os.unlink(incoming)
            raise
        self._users[name] = self._users.pop(name, 0) + 1
        self._evict()
        return path

    def hold(self, digest: str) -> str | None:
        """Hold the cached file of SHA-256 ``digest`` (hex) and return its path;
        None if it is not here (the proxy then sends it)."""
        if digest not in self._users:
            return None
        self._users[digest] = self._users.pop(digest) + 1      # most recently used
        return os.path.join(self.dir, digest)

    def release(self, path: str) -> None:
        self._users[os.path.basename(path)] -= 1
        self._evict()

    def _evict(self) -> None:
        for name, users in list(self._users.items()):
            if len(self._users) <= self.size:
                return
            if not users:
                del self._users[name]
                os.unlink(os.path.join(self.dir, name))

"""Programs validated on upload, and their verdict shown on GET and HEAD.

A PUT with ``Content-Type: application/x-nexe`` or ``X-Zerovm-Validate:
true`` is authorised by the proxy filter first (nothing here runs for a
request that may not write the object), then validated (at most
``zerovm_maxnexe`` bytes, 413 beyond) before it is stored; the verdict
travels with the object as system metadata and is shown as
``X-Zerovm-Valid`` (and ``X-Zerovm-Validation-Error``, or a valid program's
``X-Zerovm-Validation-Note``) while the validator that gave it is current.
The verdict comes from a worker of the proxy filter's own small
``zvm_core.pool`` (:class:`Validation`: started with the first validated
upload, off the hub; closed with the filter or at exit), so the proxy never
loads the validator.  The proxy filter's
docstring ("Programs") and doc/http-api.md describe it for users.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile

from swift.common.concurrency import Semaphore, tpool
from swift.common.http import is_success
from swift.common.swob import HTTPException, Request, Response, wsgify

from zerocloud import wire
from zerocloud.config import boolean
from zerocloud.httperrors import (
    HTTPClientDisconnect,
    HTTPInsufficientStorage,
    HTTPRequestEntityTooLarge,
)
from zerocloud.proxy.response import header_text
from zerocloud.tmpdisk import DiskFull, room
from zvm_core.pool import Pool, PoolBusy, WorkerFailed, WorkersFailing

VALIDATE_TIMEOUT = 120.0
VALIDATE_WORKERS = 2        # uploads validated at once per proxy process
VALIDATE_QUEUE = 64         # more wait; beyond, an upload is stored without a verdict
# uploads of zerovm_maxnexe bytes that may wait on the proxy's disk at once (per process:
# each spooled whole before it is validated); beyond, an upload is stored without a verdict
VALIDATE_SPOOL = 8
NEXE_CONTENT_TYPE = 'application/x-nexe'
SYSMETA_VALID = 'X-Object-Sysmeta-Zerovm-Valid'
SYSMETA_VALIDATOR = 'X-Object-Sysmeta-Zerovm-Validator'
SYSMETA_ERROR = 'X-Object-Sysmeta-Zerovm-Validation-Error'
# a valid program's instructions of extensions the sandbox's CPU lacks (a -mavx2 build:
# it faults where it reaches one), zvm validate's second line
SYSMETA_NOTE = 'X-Object-Sysmeta-Zerovm-Validation-Note'
ERROR_LIMIT = 200           # characters of a stored reason, one header line
NOTE_LIMIT = 400            # of a stored note (zvm validate's: 190-280)


@functools.cache
def validator_version() -> str:
    """The sandbox's current validator version, asked of a child process once per
    process (at the filter's start): the proxy never loads the validator itself,
    so capstone and unicorn stay out of it."""
    return subprocess.run(
        [sys.executable, '-c', 'from zvm_core.validator import VALIDATOR_VERSION as v; print(v)'],
        capture_output=True, check=True, text=True, timeout=VALIDATE_TIMEOUT).stdout.strip()


class Validation:
    """A proxy filter's validating workers: started (in a thread) on first use,
    after the proxy server's fork, never in the hub; closed by :meth:`close`, which
    the filter's finalizer calls when it is torn down or at exit."""

    def __init__(self) -> None:
        self._pool: Pool | None = None
        self._pid = 0               # the process that started it (a fork's child does not own it)
        self._lock = Semaphore()
        self.spooling = 0           # bytes of uploads reserved on the proxy's disk

    def reserve(self, size: int, limit: int) -> bool:
        """Count ``size`` bytes of an upload about to be spooled, unless the uploads
        spooled at once would pass ``limit`` bytes (False): unbounded, a user's
        uploads held open near their end filled the disk every job's outputs share."""
        if self.spooling + size > limit:
            return False
        self.spooling += size
        return True

    def release(self, size: int) -> None:
        self.spooling -= size

    def pool(self) -> Pool:
        with self._lock:
            if self._pool is None or self._pool.closed or self._pid != os.getpid():
                self._pool = tpool.execute(Pool, VALIDATE_WORKERS, VALIDATE_QUEUE,
                                           offload=tpool.execute)
                self._pid = os.getpid()
            return self._pool

    def close(self) -> None:
        """Stop the workers this process started, if any."""
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool = None


def wants_validation(env: dict) -> bool:
    """Whether a PUT asks for its program to be validated; ValueError for an
    ``X-Zerovm-Validate`` that is neither true nor false (a typo stored the program
    unvalidated, as if it had said false)."""
    asked = env.get('HTTP_X_ZEROVM_VALIDATE', 'false')
    try:
        validate = boolean(asked)
    except ValueError:
        raise ValueError(f'X-Zerovm-Validate must be true or false (1, yes, on / 0, no, off), '
                         f'not {asked!r}: nothing was stored') from None
    content_type = env.get('CONTENT_TYPE', '').partition(';')[0].strip().lower()
    return content_type == NEXE_CONTENT_TYPE or validate


def verdict_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``X-Zerovm-Valid`` (and why not, or a valid program's note) from a stored,
    current verdict in ``headers``."""
    found = {k.lower(): v for k, v in headers if k.lower().startswith('x-object-sysmeta-zerovm-')}
    valid = found.get(SYSMETA_VALID.lower())
    if valid is None or found.get(SYSMETA_VALIDATOR.lower()) != validator_version():
        return []
    out = [('X-Zerovm-Valid', valid)]
    if SYSMETA_ERROR.lower() in found:
        out.append(('X-Zerovm-Validation-Error', found[SYSMETA_ERROR.lower()]))
    if SYSMETA_NOTE.lower() in found:
        out.append(('X-Zerovm-Validation-Note', found[SYSMETA_NOTE.lower()]))
    return out


def stored_verdict(headers) -> bool | None:
    """The current validator's stored verdict on an object (None: none, or an old one)."""
    if SYSMETA_VALID not in headers or headers.get(SYSMETA_VALIDATOR) != validator_version():
        return None
    return headers.get(SYSMETA_VALID) != 'false'


class ValidatedPut:
    """The WSGI app of one validated (and already authorised) upload: spool,
    validate, store with the verdict."""

    def __init__(self, app, max_nexe: int, logger, validation: Validation) -> None:
        self.app = app
        self.max_nexe = max_nexe
        self.logger = logger
        self.validation = validation

    @wsgify
    def __call__(self, req: Request):
        try:
            req.split_path(4, 4, True)
        except ValueError:
            return self.app
        too_large = HTTPRequestEntityTooLarge(
            body=f'a program to validate may have at most zerovm_maxnexe '
                 f'({self.max_nexe}) bytes\n')
        if (req.content_length or 0) > self.max_nexe:
            raise too_large
        reserved = self.max_nexe if req.content_length is None else req.content_length
        if not self.validation.reserve(reserved, VALIDATE_SPOOL * self.max_nexe):
            return self.app             # stored as any upload, without a verdict
        try:
            return self._validated(req, too_large)
        finally:
            self.validation.release(reserved)

    def _validated(self, req: Request, too_large: HTTPException) -> Response:
        with tempfile.NamedTemporaryFile(prefix='zerocloud-upload-') as program:
            try:
                with room():
                    size = wire.copy_limited(req.environ['wsgi.input'], program,
                                             self.max_nexe)
            except wire.TooLarge:
                raise too_large from None
            except DiskFull as e:       # the proxy's trouble, not an interrupted upload
                raise HTTPInsufficientStorage(
                    body=f'the proxy has no room left to validate this upload ({e}): try '
                         'again later, or upload it without X-Zerovm-Validate (the object '
                         'servers validate a program before they run it)\n') from None
            except (OSError, ValueError):
                raise HTTPClientDisconnect(body='upload interrupted\n') from None
            if req.content_length is not None and size != req.content_length:
                raise HTTPClientDisconnect(body='upload shorter than Content-Length\n')
            program.flush()
            verdict = self.validate(program.name)
            program.seek(0)
            req.environ['wsgi.input'] = program
            req.environ.pop('HTTP_TRANSFER_ENCODING', None)
            req.content_length = size
            if verdict is not None:
                valid, error, note = verdict
                req.headers[SYSMETA_VALIDATOR] = validator_version()
                req.headers[SYSMETA_VALID] = 'true' if valid else 'false'
                if error:
                    req.headers[SYSMETA_ERROR] = error
                if note:
                    req.headers[SYSMETA_NOTE] = note
            resp = req.get_response(self.app)
        if is_success(resp.status_int):
            resp.headers.update(verdict_headers(list(req.headers.items())))
        return resp

    def validate(self, path: str) -> tuple[bool, str, str] | None:
        """(valid, first violation, note on a valid one) from a validating worker,
        each one bounded ASCII line; None when it could not decide (logged; the
        object is stored without a verdict)."""
        try:
            with open(path, 'rb') as program:
                valid, reason, note = self.validation.pool().validate(
                    program.fileno(), timeout=VALIDATE_TIMEOUT)
        except (PoolBusy, WorkerFailed, OSError) as e:
            if not isinstance(e, WorkersFailing) or e.first:    # once per back-off
                self.logger.error('validating an upload failed: %s', e)
            return None
        if valid:
            return True, '', header_text(note, NOTE_LIMIT)
        return False, header_text(reason, ERROR_LIMIT), ''

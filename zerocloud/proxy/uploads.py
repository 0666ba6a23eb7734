"""Programs validated on upload, and their verdict shown on GET and HEAD.

A PUT with ``Content-Type: application/x-nexe`` or ``X-Zerovm-Validate:
true`` is validated (at most ``zerovm_maxnexe`` bytes, 413 beyond) before it
is stored; the verdict travels with the object as system metadata and is
shown as ``X-Zerovm-Valid`` (and ``X-Zerovm-Validation-Error``) while the
validator that gave it is current.  The proxy filter's docstring ("Programs")
and doc/http-api.md describe it for users.
"""

from __future__ import annotations

import functools
import subprocess as host_subprocess
import sys
import tempfile

from swift.common.concurrency import subprocess
from swift.common.http import is_success
from swift.common.swob import (
    HTTPClientDisconnect,
    HTTPRequestEntityTooLarge,
    Request,
    wsgify,
)
from swift.common.utils import config_true_value

from zerocloud import wire

VALIDATE_TIMEOUT = 120.0
NEXE_CONTENT_TYPE = 'application/x-nexe'
SYSMETA_VALID = 'X-Object-Sysmeta-Zerovm-Valid'
SYSMETA_VALIDATOR = 'X-Object-Sysmeta-Zerovm-Validator'
SYSMETA_ERROR = 'X-Object-Sysmeta-Zerovm-Validation-Error'


@functools.cache
def validator_version() -> str:
    """The sandbox's current validator version, asked of a child process once per
    process (at the filter's start): the proxy never loads the validator itself,
    so capstone and unicorn stay out of it."""
    return host_subprocess.run(
        [sys.executable, '-c', 'from zvm_core.validator import VALIDATOR_VERSION as v; print(v)'],
        capture_output=True, check=True, text=True, timeout=VALIDATE_TIMEOUT).stdout.strip()


def wants_validation(env: dict) -> bool:
    """Whether a PUT asks for its program to be validated."""
    content_type = env.get('CONTENT_TYPE', '').partition(';')[0].strip().lower()
    return (content_type == NEXE_CONTENT_TYPE
            or config_true_value(env.get('HTTP_X_ZEROVM_VALIDATE', 'false')))


def verdict_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``X-Zerovm-Valid`` (and why not) from a stored, current verdict in ``headers``."""
    found = {k.lower(): v for k, v in headers if k.lower().startswith('x-object-sysmeta-zerovm-')}
    valid = found.get(SYSMETA_VALID.lower())
    if valid is None or found.get(SYSMETA_VALIDATOR.lower()) != validator_version():
        return []
    out = [('X-Zerovm-Valid', valid)]
    if SYSMETA_ERROR.lower() in found:
        out.append(('X-Zerovm-Validation-Error', found[SYSMETA_ERROR.lower()]))
    return out


def stored_verdict(headers) -> bool | None:
    """The current validator's stored verdict on an object (None: none, or an old one)."""
    if SYSMETA_VALID not in headers or headers.get(SYSMETA_VALIDATOR) != validator_version():
        return None
    return headers.get(SYSMETA_VALID) != 'false'


class ValidatedPut:
    """The WSGI app of one validated upload: spool, validate, store with the verdict."""

    def __init__(self, app, max_nexe: int, logger) -> None:
        self.app = app
        self.max_nexe = max_nexe
        self.logger = logger

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
        with tempfile.NamedTemporaryFile(prefix='zerocloud-upload-') as program:
            try:
                size = wire.copy_limited(req.environ['wsgi.input'], program, self.max_nexe)
            except wire.TooLarge:
                raise too_large from None
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
                valid, error = verdict
                req.headers[SYSMETA_VALIDATOR] = validator_version()
                req.headers[SYSMETA_VALID] = 'true' if valid else 'false'
                if error:
                    req.headers[SYSMETA_ERROR] = error
            resp = req.get_response(self.app)
        if is_success(resp.status_int):
            resp.headers.update(verdict_headers(list(req.headers.items())))
        return resp

    def validate(self, path: str) -> tuple[bool, str] | None:
        """(valid, first violation) from ``zvm validate`` in a child process; None
        when it could not decide (logged; the object is stored without a verdict)."""
        proc = subprocess.Popen([sys.executable, '-m', 'zvm_core.cli', 'validate', path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=VALIDATE_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.logger.error('validating an upload took over %ss', VALIDATE_TIMEOUT)
            return None
        if proc.returncode not in (0, 1):
            self.logger.error('zvm validate exited %s: %s', proc.returncode,
                              err.decode('utf-8', 'replace')[-500:])
            return None
        lines = out.decode('utf-8', 'replace').splitlines() or ['']
        if proc.returncode == 0:
            return True, ''
        reason = lines[1] if len(lines) > 1 else lines[0].rpartition(': invalid: ')[2]
        reason = ' '.join(reason.split())
        if len(reason) > 200:
            reason = reason[:197] + '...'
        return False, reason.encode('ascii', 'replace').decode()

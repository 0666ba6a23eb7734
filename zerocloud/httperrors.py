"""swob's HTTP errors, for the sentences ZeroCloud's filters answer with: a body
given is ``text/plain; charset=UTF-8``, not swob's default ``text/html`` (the
body is a line of text, not a page; a client showing HTML would lose its line
breaks).  An error without a body keeps swob's own (an HTML page).  Swift's
responses that pass through the filters are left as they are."""

from __future__ import annotations

from collections.abc import Callable

from swift.common.swob import HTTPException


def _plain(status: int | str) -> Callable[..., HTTPException]:
    """``swob.HTTP<status>`` whose body, if given, is said to be text (a status swob
    does not name is given with its reason: ``'429 Too Many Requests'``)."""
    def error(body: str | bytes | None = None, **kw) -> HTTPException:
        if body is not None and 'content_type' not in kw:
            kw.update(content_type='text/plain', charset='UTF-8')
        return HTTPException(body=body, status=status, **kw)
    return error


HTTPBadRequest = _plain(400)
HTTPUnauthorized = _plain(401)
HTTPForbidden = _plain(403)
HTTPNotFound = _plain(404)
HTTPMethodNotAllowed = _plain(405)
HTTPConflict = _plain(409)
HTTPPreconditionFailed = _plain(412)
HTTPRequestEntityTooLarge = _plain(413)
HTTPUnprocessableEntity = _plain(422)
HTTPTooManyRequests = _plain('429 Too Many Requests')
HTTPClientDisconnect = _plain(499)
HTTPInternalServerError = _plain(500)
HTTPNotImplemented = _plain(501)
HTTPServiceUnavailable = _plain(503)
HTTPInsufficientStorage = _plain(507)

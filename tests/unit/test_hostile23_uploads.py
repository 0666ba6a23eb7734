"""An attacker's review (review23): a program upload with ``X-Zerovm-Validate`` is
spooled whole on the proxy's disk before it is validated, each up to zerovm_maxnexe,
with no bound on how many at once: a user's uploads held open near their end (any
container they may write) filled the disk every job's outputs wait on.  Past
``VALIDATE_SPOOL`` uploads of that size an upload is stored as any other, without a
verdict (the object servers validate a program before they run it)."""

from __future__ import annotations

import errno

import pytest
from swift.common.swob import Request
from test_proxy_filter import ACCOUNT, FakeSwift

from zerocloud import wire
from zerocloud.proxy import uploads
from zerocloud.proxy.middleware import ProxyExecMiddleware

MAX_NEXE = 1000


@pytest.fixture
def mw() -> ProxyExecMiddleware:
    return ProxyExecMiddleware(FakeSwift(), {'zerovm_maxnexe': str(MAX_NEXE)})


def upload(mw: ProxyExecMiddleware, name: str, body: bytes, **headers):
    req = Request.blank(f'{ACCOUNT}/bin/{name}', method='PUT', body=body,
                        headers={'X-Zerovm-Validate': 'yes', **headers})
    return req.get_response(mw)


def test_uploads_past_the_spool_bound_are_stored_without_a_verdict(mw) -> None:
    limit = uploads.VALIDATE_SPOOL * MAX_NEXE
    assert mw.validation.reserve(limit - 100, limit)        # uploads waiting meanwhile
    resp = upload(mw, 'late', b'#!/bin/sh\n' * 20)          # 200 bytes: past the bound
    assert resp.status_int == 201
    assert 'X-Zerovm-Valid' not in resp.headers
    headers, body = mw.app.objects[f'{ACCOUNT}/bin/late']
    assert body == b'#!/bin/sh\n' * 20
    assert not [k for k in headers if k.lower().startswith('x-object-sysmeta-zerovm')]
    assert mw.validation.spooling == limit - 100
    mw.validation.release(limit - 100)
    resp = upload(mw, 'then', b'#!/bin/sh\n')               # room again: validated
    assert resp.headers['X-Zerovm-Valid'] == 'false'
    assert mw.validation.spooling == 0                      # released once stored


def test_a_full_disk_while_spooling_an_upload_is_the_proxys_507(mw, monkeypatch) -> None:
    """ENOSPC was answered 499 "upload interrupted", blaming the client."""
    def full(src, dst, limit):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(wire, 'copy_limited', full)
    resp = upload(mw, 'x', b'#!/bin/sh\n')
    assert resp.status_int == 507, resp.body
    assert resp.body.startswith(b'the proxy has no room left to validate this upload ('), \
        resp.body
    assert mw.validation.spooling == 0

"""A request path that is not UTF-8: Swift's 412, not a 500 from quoting it again."""

from __future__ import annotations

import pytest
from swift.common.swob import Request
from test_proxy_filter import FakeSwift

from zerocloud.pathnames import text_names


@pytest.fixture
def swift() -> FakeSwift:
    return FakeSwift()


def test_names_are_the_paths_text() -> None:
    wsgi = 'déjà'.encode().decode('latin-1')
    assert text_names(['v1', wsgi, None]) == ['v1', 'déjà', None]
    assert text_names(['v1', 'c\xff']) is None          # %FF: not UTF-8
    assert text_names(['v1', 'c\x00']) is None          # a NUL, as Swift refuses


@pytest.mark.parametrize('method, path, headers', [
    ('POST', '/v1/AUTH_a/c%FF', {'X-Zerovm-Execute': '1.0', 'X-Zerovm-Deferred': 'always'}),
    ('POST', '/v1/AUTH_a/c%FF/o', {'X-Zerovm-Execute': '1.0'}),
    ('PUT', '/v1/AUTH_a/c%FF/prog', {'X-Zerovm-Validate': 'true'}),
])
def test_a_job_or_upload_on_a_path_not_utf8_is_swifts_412(mw, method, path, headers) -> None:
    # the names, decoded with surrogates, raised UnicodeEncodeError where they were
    # quoted for a subrequest: a 500 and a traceback in the log, for any client
    resp = Request.blank(path, method=method, headers=headers, body=b'[]').get_response(mw)
    assert (resp.status_int, resp.body) == (412, b'Invalid UTF8 or contains NULL\n')


@pytest.mark.parametrize('method, path', [
    ('DELETE', '/v1/AUTH_a/c%FF/job-' + '8' * 32 + '.state'),
    ('GET', '/v1/AUTH_a/c%FF/job-' + '8' * 32 + '.headers'),
])
def test_a_deferred_jobs_path_not_utf8_is_left_to_swift(mw, swift, method, path) -> None:
    resp = Request.blank(path, method=method).get_response(mw)
    assert resp.status_int != 500, resp.body
    assert swift.calls[-1][:2] == (method, Request.blank(path).path)   # Swift answers it

"""What doc/operator-guide.md says of Swift's ``cache`` filter without memcached,
checked against the Swift installed: ``tempauth``'s memcache tokens cannot be
issued (503), its fernet tokens can, and with no ``cache`` at all its token
requests fail (500, "Memcache required")."""

from __future__ import annotations

import socket

import pytest
from cryptography.fernet import Fernet
from swift.common.middleware import memcache, tempauth
from swift.common.swob import Request, Response

USERS = {'user_test_tester': 'testing .admin'}
FERNET = {'fernet_key_1': Fernet.generate_key().decode(), 'active_fernet_key_id': '1'}


def _app(env, start_response):
    return Response(body=repr(env['swift.cache'].get('key')).encode())(env, start_response)


@pytest.fixture
def nobody_listens() -> str:
    """host:port of a port where no memcached runs."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return f'127.0.0.1:{s.getsockname()[1]}'


def _token(pipeline) -> Response:
    return Request.blank('/auth/v1.0', headers={'X-Auth-User': 'test:tester',
                                               'X-Auth-Key': 'testing'}).get_response(pipeline)


@pytest.mark.parametrize(('fernet', 'status'), [({}, 503), (FERNET, 200)])
def test_the_cache_filter_without_memcached(nobody_listens, fernet, status):
    auth = tempauth.filter_factory({}, **USERS, **fernet)(_app)
    pipeline = memcache.filter_factory({'memcache_servers': nobody_listens})(auth)
    got = _token(pipeline)
    assert got.status_int == status
    if status == 200:           # served, every lookup a miss
        answer = Request.blank('/v1/AUTH_test', headers={
            'X-Auth-Token': got.headers['X-Auth-Token']}).get_response(pipeline)
        assert (answer.status_int, answer.body) == (200, b'None')


@pytest.mark.parametrize(('fernet', 'status'), [({}, 500), (FERNET, 200)])
def test_no_cache_filter(fernet, status):
    assert _token(tempauth.filter_factory({}, **USERS, **fernet)(_app)).status_int == status

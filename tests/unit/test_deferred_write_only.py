"""A user who may write a container but not read it (a write ACL alone) and DELETEs an
object there named as a job's state (``job-<32 hex>.state``): the cancel check read the
state with the user's rights, and answered Swift's 403 to that read, so the object could
never be deleted.  It is no job state this user may read: Swift's own DELETE rules apply."""

from __future__ import annotations

import json
import logging
import time

from swift.common.swob import Request, Response
from test_proxy_filter import ACCOUNT
from test_sources import DeletingSwift

from zerocloud import deferred

NAME = f'{ACCOUNT}/c/job-' + '7' * 32
LOG = logging.getLogger('test')


class WriteOnlySwift(DeletingSwift):
    """Swift for a user with the container's write ACL only: reads are ``refused``."""

    def __init__(self, refused: int) -> None:
        super().__init__()
        self.refused = refused

    def __call__(self, env, start_response):
        if env['REQUEST_METHOD'] in ('GET', 'HEAD'):
            self.calls.append((env['REQUEST_METHOD'], env['PATH_INFO'], {}))
            return Response(status=self.refused)(env, start_response)
        return super().__call__(env, start_response)


def _delete(app: DeletingSwift) -> Response:
    def filtered(env, start_response):
        cancelled = deferred.cancel(app, env, LOG)
        return (cancelled or app)(env, start_response)
    return Request.blank(f'{NAME}.state', method='DELETE').get_response(filtered)


def test_a_state_the_user_may_not_read_is_deleted_as_swift_allows() -> None:
    for refused in (401, 403):
        app = WriteOnlySwift(refused)
        now = time.time()       # even a running job's: this user could not cancel it
        app.objects[f'{NAME}.state'] = ({}, json.dumps({
            'state': 'running', 'heartbeat': 10.0, 'updated': now, 'moved': now,
            'proxy': 'elsewhere.invalid:1'}).encode())
        resp = _delete(app)
        assert resp.status_int == 204, resp.body
        assert f'{NAME}.state' not in app.objects and f'{NAME}.cancel' not in app.objects
        assert [c[0] for c in app.calls if c[0] not in ('GET', 'HEAD')] == ['DELETE']

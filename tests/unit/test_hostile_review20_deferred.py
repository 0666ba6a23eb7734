"""review20: a deferred job outlives its request, and Swift's per-request cache of
account and container info (``swift.infocache``, shared by every sub-request the
request makes) kept the ACLs of the job's start for its whole life: test2's job
stored into a drop box whose write ACL was revoked while it ran
(tests/functional/test_hostile_review20.py).  Once answered 202, what the job looks up
is read again each time; a chain's next job, which sets the cache up anew
(``ProxyExecMiddleware.execute``), keeps nothing either."""

from __future__ import annotations

from swift.common.concurrency import LightQueue
from swift.common.swob import Request, Response
from swift.common.wsgi import make_subrequest
from swift.proxy.controllers.base import get_container_info
from test_sources import ACCOUNT, DeletingSwift

from zerocloud import deferred


def _heads(app: DeletingSwift) -> int:
    return sum(1 for c in app.calls if c[:2] == ('HEAD', f'{ACCOUNT}/c'))


def test_what_a_job_looks_up_after_its_202_is_looked_up_again() -> None:
    app = DeletingSwift()
    req = Request.blank(ACCOUNT + '/c', method='POST')
    release: LightQueue = LightQueue()
    looked: list[int] = []

    def work(progress) -> Response:
        progress.launched([])
        release.get()                   # the client has its 202
        req.environ.setdefault('swift.infocache', {})     # a chain's next job starts
        for _ in range(2):              # its output's authorisation, then its PUT
            before = _heads(app)
            sub = make_subrequest(req.environ, 'HEAD', ACCOUNT + '/c')
            assert get_container_info(sub.environ, app)['status'] == 204
            looked.append(_heads(app) - before)
        return Response(body=b'result')
    resp = deferred.run(app, req, 'always', 'AUTH_a', 'c', 1.0, work, logger=None)
    assert resp.status_int == 202
    name = resp.body.decode().strip().rsplit('/', 1)[1]
    release.put(None)
    assert app.wait_until(lambda: f'{ACCOUNT}/c/{name}.headers' in app.objects)
    assert looked == [1, 1]

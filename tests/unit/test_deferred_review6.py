"""Cancelling a deferred job (a DELETE of its state, ``zerocloud.deferred.cancel``)
against the ways a job ends, found in review: nothing is left in the user's
container once the job has a result."""

from __future__ import annotations

import json
import logging
import os
import time

from swift.common.swob import Request
from test_proxy_filter import ACCOUNT
from test_sources import DeletingSwift, lost_env

from zerocloud import deferred

NAME = f'{ACCOUNT}/c/job-' + '7' * 32
LOG = logging.getLogger('test')


def test_a_cancel_of_a_job_whose_proxy_stopped_leaves_no_marker() -> None:
    """The proxy running the job stopped less than three heartbeats ago: its state
    still looks fresh, so a DELETE of it stores the cancel marker (202), which no
    proxy will ever look for.  When the job is later found lost (a GET of its
    result), its lost result is stored and its state deleted: its marker too
    (review6: ``job-<id>.cancel`` stayed in the container for good)."""
    app = DeletingSwift()
    lost_env(app, time.time() - 20)               # heartbeat 10: lost after 30 s
    env = Request.blank(f'{NAME}.state', method='DELETE').environ
    resp = Request(env).get_response(lambda e, s: deferred.cancel(app, e, LOG)(e, s))
    assert resp.status_int == 202, resp.body
    assert f'{NAME}.cancel' in app.objects
    later = lost_env(app, time.time() - 31)       # no heartbeat since
    deferred.settle_lost(app, later, LOG)
    assert json.loads(app.objects[f'{NAME}.headers'][1])['X-Nexe-Status'] == 'lost'
    assert f'{NAME}.state' not in app.objects
    assert f'{NAME}.cancel' not in app.objects, sorted(app.objects)


def test_a_cancel_of_a_job_whose_proxy_process_is_gone_says_lost_at_once() -> None:
    """The proxy that ran the job was a process of this host that no longer exists
    (its pid is gone): the job is lost now, not once its state is three heartbeats
    old (zc cancel waited ~30 s to say so).  A proxy of another host, or one still
    alive, keeps the heartbeat rule."""
    import socket
    import subprocess
    import sys
    gone = subprocess.Popen([sys.executable, '-c', ''])
    gone.wait()
    for proxy, lost in ((f'{socket.gethostname()}:{gone.pid}', True),
                        (f'{socket.gethostname()}:{os.getpid()}', False),
                        (f'elsewhere.invalid:{gone.pid}', False)):
        app = DeletingSwift()
        lost_env(app, time.time() - 1)
        state = json.loads(app.objects[f'{NAME}.state'][1])
        app.objects[f'{NAME}.state'] = ({}, json.dumps({**state, 'proxy': proxy,
                                                         'pids': deferred.pid_space()}).encode())
        env = Request.blank(f'{NAME}.state', method='DELETE').environ
        resp = Request(env).get_response(
            lambda e, s, app=app: deferred.cancel(app, e, LOG)(e, s))
        stored = app.objects.get(f'{NAME}.headers')
        assert (resp.status_int, stored is not None) == ((404, True) if lost else (202, False))
        if lost:
            error = json.loads(stored[1])['X-Nexe-Error']
            assert f'(its process {proxy} is gone)' in error, error


def test_a_lost_job_keeps_the_counts_its_state_last_had() -> None:
    # zc status --json of a lost job said nodes 0/0/0: what had ended was known
    app = DeletingSwift()
    env = lost_env(app, time.time() - 31)
    state = json.loads(app.objects[f'{NAME}.state'][1])
    app.objects[f'{NAME}.state'] = ({}, json.dumps({**state, 'nodes': {
        'total': 5, 'done': 2, 'failed': 1, 'running': 1}}).encode())
    deferred.settle_lost(app, env, LOG)
    stored = json.loads(app.objects[f'{NAME}.headers'][1])
    assert (stored['X-Nexe-Status'], stored['X-Nexe-Node-Counts']) == (
        'lost', 'total 5, done 2, failed 1, lost 2')


def test_a_proxy_of_another_pid_space_with_this_hostname_keeps_the_heartbeat_rule() -> None:
    """review9: two proxies may share a hostname and not their pids: containers with
    the host's UTS namespace but each its own pid namespace, or cloned hosts never
    renamed.  A state written by such a proxy named ``<this host>:<a pid not here>``
    and its running job was declared lost at once (its result stored as ``lost``, its
    state deleted) while it ran on.  Only a state of this pid space (``pids``: this
    boot of this kernel, this pid namespace) is judged by its pid; one without
    (another's, or an older proxy's) keeps the heartbeat rule."""
    import socket
    import subprocess
    import sys
    gone = subprocess.Popen([sys.executable, '-c', ''])
    gone.wait()
    proxy = f'{socket.gethostname()}:{gone.pid}'
    here = deferred.pid_space()
    for pids, lost in ((here, True), ('another boot or pid namespace', False), (None, False)):
        app = DeletingSwift()
        env = lost_env(app, time.time() - 1)
        state = json.loads(app.objects[f'{NAME}.state'][1])
        state = {**state, 'proxy': proxy, **({'pids': pids} if pids is not None else {})}
        app.objects[f'{NAME}.state'] = ({}, json.dumps(state).encode())
        deferred.settle_lost(app, env, LOG)
        assert (f'{NAME}.headers' in app.objects, f'{NAME}.state' in app.objects) == (
            (True, False) if lost else (False, True)), pids



def _cancel(app) -> object:
    env = Request.blank(f'{NAME}.state', method='DELETE').environ
    return Request(env).get_response(lambda e, s: deferred.cancel(app, e, LOG)(e, s))


def test_a_cancel_of_a_job_reported_lost_whose_proxy_runs_it_still_cancels_it() -> None:
    """The job was reported lost (its proxy slow, not stopped), then its proxy wrote its
    state again: a cancel answered 404 "it has ended (its result is stored)", the lost
    result taken for the job's own.  Its marker now stays, for that proxy to read."""
    app = DeletingSwift()
    deferred.settle_lost(app, lost_env(app, time.time() - 31), LOG)
    said = json.loads(app.objects[f'{NAME}.headers'][1])['X-Nexe-Error']
    lost_env(app, time.time() - 1)                # its proxy's next heartbeat
    resp = _cancel(app)
    assert resp.status_int == 202, resp.body
    assert resp.headers['X-Nexe-Reported-Lost'] == said
    assert b'it was reported lost, but its proxy runs it still' in resp.body
    assert f'{NAME}.cancel' in app.objects and f'{NAME}.state' in app.objects


def test_a_cancel_of_a_job_reported_lost_and_not_seen_since_says_so() -> None:
    """No state since the lost result (or a stale one): 404, saying it was reported
    lost and may run still, unseen; a stale state and the marker are not left behind."""
    app = DeletingSwift()
    deferred.settle_lost(app, lost_env(app, time.time() - 31), LOG)
    said = json.loads(app.objects[f'{NAME}.headers'][1])['X-Nexe-Error']
    for stale in (False, True):
        if stale:
            lost_env(app, time.time() - 100)
        resp = _cancel(app)
        assert resp.status_int == 404, resp.body
        assert resp.body.decode().startswith(
            f'job-{"7" * 32} is not running: it was reported lost ({said}); if its proxy '
            'was only slow or cut off it may run still, unseen'), resp.body
        assert f'{NAME}.cancel' not in app.objects and f'{NAME}.state' not in app.objects


def test_a_cancel_of_a_job_that_ended_still_says_it_ended() -> None:
    app = DeletingSwift()
    app.objects[f'{NAME}.headers'] = ({}, json.dumps({'Status': '200 OK'}).encode())
    resp = _cancel(app)
    assert resp.status_int == 404
    assert resp.body.endswith(b'is not running: it has ended (its result is stored)\n')


def test_a_cancel_racing_a_poll_that_settles_the_job_lost_leaves_no_marker() -> None:
    """The state read fresh, then another poll reported the job lost (its state and
    marker deleted) before the marker was stored: the cancel answered 202 "its proxy
    runs it still" from its first read, and the marker it stored stayed for good."""
    settled = DeletingSwift()
    deferred.settle_lost(settled, lost_env(settled, time.time() - 31), LOG)
    lost = {k: v for k, v in settled.objects.items() if not k.endswith('.state')}

    class Racing(DeletingSwift):
        def __call__(self, env, start_response):
            if env['REQUEST_METHOD'] == 'PUT' and env['PATH_INFO'].endswith('.cancel'):
                self.objects.pop(f'{NAME}.state')       # the other poll, just before
                self.objects.update(lost)
            return super().__call__(env, start_response)

    app = Racing()
    lost_env(app, time.time() - 1)
    resp = _cancel(app)
    assert resp.status_int == 404, resp.body
    assert f'{NAME}.cancel' not in app.objects and f'{NAME}.state' not in app.objects

"""A deferred job is lost only when its proxy is (``zerocloud.deferred._process``):
a state three heartbeats old whose proxy process is still running on this host
(the same pid and start time) is a job that runs on, not a lost one (flake19: a
loaded proxy that wrote its heartbeat late had its running job's result stored
as ``lost``)."""

from __future__ import annotations

import json
import logging
import os
import socket
import time

import test_proxy_filter as proxy_tests
from swift.common.concurrency import LightQueue
from swift.common.swob import Request, Response
from test_proxy_filter import ACCOUNT, job, ok, post
from test_sources import DeletingSwift, deferred_always, lost_env

from zerocloud import deferred
from zerocloud.config import Config
from zerocloud.proxy import middleware

servers, swift = proxy_tests.servers, proxy_tests.swift     # fixtures shared
NAME = f'{ACCOUNT}/c/job-' + '7' * 32
LOG = logging.getLogger('test')
HERE = f'{socket.gethostname()}:{os.getpid()}'


def state_of(app: DeletingSwift, updated: float, **fields) -> dict:
    """A state last updated at ``updated`` by the proxy ``fields`` say; the env of a
    GET of its result."""
    env = lost_env(app, updated)
    state = json.loads(app.objects[f'{NAME}.state'][1])
    app.objects[f'{NAME}.state'] = ({}, json.dumps({**state, **fields}).encode())
    return env


def held_job(app: DeletingSwift) -> tuple[str, str, LightQueue]:
    """A deferred job (``always``, heartbeat 30 s) that ends as the response put in the
    queue: (its result's path, its state's, the queue)."""
    release: LightQueue = LightQueue()

    def work(progress) -> Response:
        progress.launched([])
        return release.get()
    return *deferred_always(app, work, heartbeat=30), release


def test_an_old_state_of_a_proxy_process_running_here_is_not_lost() -> None:
    app = DeletingSwift()
    env = state_of(app, time.time() - 100, proxy=HERE, pids=deferred.pid_space(),
                   since=deferred.started_at(os.getpid()))
    deferred.settle_lost(app, env, LOG)
    assert f'{NAME}.headers' not in app.objects and f'{NAME}.state' in app.objects


def test_a_state_of_a_pid_now_another_process_is_lost_at_once() -> None:
    """The pid runs, but started at another time than the state's proxy: reused."""
    app = DeletingSwift()
    env = state_of(app, time.time() - 1, proxy=HERE, pids=deferred.pid_space(),
                   since=deferred.started_at(os.getpid()) - 1)
    deferred.settle_lost(app, env, LOG)
    stored = json.loads(app.objects[f'{NAME}.headers'][1])
    assert stored['X-Nexe-Status'] == 'lost'
    assert f'(its process {HERE} is gone)' in stored['X-Nexe-Error']


def test_an_old_state_of_an_older_proxy_without_its_start_time_keeps_the_heartbeat_rule(
        ) -> None:
    """Without ``since`` its pid may be another process's: its age decides."""
    app = DeletingSwift()
    env = state_of(app, time.time() - 100, proxy=HERE, pids=deferred.pid_space())
    deferred.settle_lost(app, env, LOG)
    assert json.loads(app.objects[f'{NAME}.headers'][1])['X-Nexe-Status'] == 'lost'


def test_a_job_whose_state_went_stale_while_its_proxy_runs_ends_by_its_own_limits() -> None:
    """Its heartbeat late (a stalled proxy, Swift refusing the writes): the job is read
    as running, then its own end (here a node's timeout, 504) is its result."""
    app = DeletingSwift()
    result, state, release = held_job(app)
    written = json.loads(app.objects[state][1])
    assert (written['proxy'], written['since']) == (HERE, deferred.started_at(os.getpid()))
    assert written['moved'] <= written['updated']          # when its counts last changed
    app.objects[state] = ({}, json.dumps({**written, 'updated': time.time() - 100}).encode())
    deferred.settle_lost(app, Request.blank(f'{result}.headers').environ, LOG)
    assert f'{result}.headers' not in app.objects           # running, not lost
    release.put(Response(status=504, body=b'wc: timeout\n', headers={'X-Nexe-Status': 'timeout'}))
    assert app.wait_until(lambda: f'{result}.headers' in app.objects)
    stored = json.loads(app.objects[f'{result}.headers'][1])
    assert (stored['Status'], stored['X-Nexe-Status']) == ('504 Gateway Timeout', 'timeout')
    assert app.objects[result][1] == b'wc: timeout\n'


def test_a_job_reported_lost_that_ends_after_all_replaces_it_and_says_so() -> None:
    """Its proxy cut off (its state read as stale: here another host's), the job is
    reported lost; it runs on and ends: its result replaces the lost one, saying what
    the pollers were told (``X-Nexe-Reported-Lost``): one who ran it again has two runs.
    Before, the lost one was overwritten without a trace."""
    app = DeletingSwift()
    result, state, release = held_job(app)
    written = json.loads(app.objects[state][1])
    app.objects[state] = ({}, json.dumps({**written, 'proxy': 'elsewhere:1',
                                          'updated': time.time() - 100}).encode())
    deferred.settle_lost(app, Request.blank(f'{result}.headers').environ, LOG)
    lost = json.loads(app.objects[f'{result}.headers'][1])
    assert lost['X-Nexe-Status'] == 'lost'
    release.put(Response(body=b'out\n', headers={'X-Nexe-Status': 'ok'}))
    assert app.wait_until(lambda: json.loads(app.objects[f'{result}.headers'][1])
                          .get('X-Nexe-Status') == 'ok')
    stored = json.loads(app.objects[f'{result}.headers'][1])
    assert stored['X-Nexe-Reported-Lost'] == lost['X-Nexe-Error']
    assert app.objects[result][1] == b'out\n'
    assert app.wait_until(lambda: state not in app.objects)
    # a result without a lost one before it says nothing of it
    result, state, release = held_job(app)
    release.put(Response(body=b'out\n', headers={'X-Nexe-Status': 'ok'}))
    assert app.wait_until(lambda: state not in app.objects)
    assert 'X-Nexe-Reported-Lost' not in json.loads(app.objects[f'{result}.headers'][1])


def test_the_start_time_of_no_process_is_none() -> None:
    import subprocess
    import sys
    gone = subprocess.Popen([sys.executable, '-c', ''])
    gone.wait()
    assert deferred.started_at(gone.pid) is None
    assert isinstance(deferred.started_at(os.getpid()), int)


def test_a_state_of_a_zombie_proxy_process_is_lost(monkeypatch) -> None:
    """A proxy worker that died unreaped keeps its /proc/<pid>/stat (state Z, its start
    time): it runs no job."""
    app = DeletingSwift()
    since = deferred.started_at(os.getpid())
    env = state_of(app, time.time() - 1, proxy=HERE, pids=deferred.pid_space(), since=since)
    monkeypatch.setattr(deferred, '_stat', lambda pid: ('Z', since))
    deferred.settle_lost(app, env, LOG)
    stored = json.loads(app.objects[f'{NAME}.headers'][1])
    assert stored['X-Nexe-Status'] == 'lost'
    assert f'(its process {HERE} is gone)' in stored['X-Nexe-Error']


def test_a_state_of_a_running_proxy_without_progress_past_the_jobs_limits_is_lost() -> None:
    """Its proxy runs, but the job's counts have not moved for longer than any node may
    run (HUNG_LIMITS times zerovm_timeout + chain_timeout): a hung job, or a heartbeat
    loop that died; pollers and zc cancel would wait for it forever."""
    config = Config.from_conf({'zerovm_timeout': '5', 'chain_timeout': '2'})
    bound = deferred.HUNG_LIMITS * 7
    alive = {'proxy': HERE, 'pids': deferred.pid_space(),
             'since': deferred.started_at(os.getpid())}
    app = DeletingSwift()
    env = state_of(app, time.time() - 1, moved=time.time() - bound + 60, **alive)
    deferred.settle_lost(app, env, LOG, config)
    assert f'{NAME}.headers' not in app.objects             # moved within the bound
    env = state_of(app, time.time() - 1, moved=time.time() - bound - 1, **alive)
    deferred.settle_lost(app, env, LOG, config)
    stored = json.loads(app.objects[f'{NAME}.headers'][1])
    assert stored['X-Nexe-Status'] == 'lost'
    assert 'its nodes have not moved for' in stored['X-Nexe-Error']
    app = DeletingSwift()                   # a dead heartbeat: its last update is too old
    env = state_of(app, time.time() - bound - 1, **alive)
    deferred.settle_lost(app, env, LOG, config)
    assert json.loads(app.objects[f'{NAME}.headers'][1])['X-Nexe-Status'] == 'lost'


def test_a_step_that_ends_no_node_moves_the_state(monkeypatch) -> None:
    """Storing the outputs after the last node (up to zerovm_job_maxoutput) and fetching
    the inputs end no node: they ``touch()`` the progress, so the state's ``moved``
    follows them and a slow store is not read as a hung job."""
    monkeypatch.setattr(deferred, 'PROGRESS_EVERY', 0.01)
    app = DeletingSwift()
    step: LightQueue = LightQueue()
    release: LightQueue = LightQueue()

    def work(progress) -> Response:
        progress.launched([])
        step.get()
        progress.touch()
        return release.get()
    result, state = deferred_always(app, work, heartbeat=3600)
    first = json.loads(app.objects[state][1])
    step.put(None)

    def moved() -> bool:
        return json.loads(app.objects[state][1])['moved'] > first['moved']
    give_up = time.monotonic() + 10             # before the fix it never moved
    app.wait_until(lambda: moved() or time.monotonic() > give_up)
    assert moved()
    release.put(Response(body=b'result'))
    assert app.wait_until(lambda: state not in app.objects)


def test_a_job_touches_its_progress_for_each_input_fetched_and_output_stored(
        mw, swift, servers, monkeypatch) -> None:
    """What ``touch()`` follows: the proxy's fetch of an input not next to its node,
    and each PUT of an output (before, neither: touch() did not exist)."""
    after: list[tuple[str, str]] = []
    monkeypatch.setattr(middleware._Watched, 'touch',
                        lambda self: after.append(swift.calls[-1][:2]))
    swift.add('/c/other')
    servers(d0=ok(b'out\n'))
    group = job(stdout={'name': 'stdout', 'path': 'swift://~/c/out'})
    group[0]['devices'].append({'name': 'input', 'path': 'swift://~/c/other'})
    assert post(mw, group).status_int == 200
    # the node runs next to one of its two objects; the other travels through the proxy
    assert [m for m, _p in after] == ['GET', 'PUT'] and after[1][1] == f'{ACCOUNT}/c/out'
    assert after[0][1] in (f'{ACCOUNT}/c/data', f'{ACCOUNT}/c/other')

"""What one job's outputs may hold on the proxy at once (``zerovm_job_maxoutput``,
``zerocloud.proxy.outputs.Budget``): each channel had a limit, the job none, so a
wildcard over many objects could fill the proxy's disk with their spooled outputs."""

from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import eventlet
import pytest
import test_proxy_filter as proxy_tests
from test_proxy_filter import (
    ACCOUNT,
    FakeRing,
    job,
    objects,
    ok,
    post,
    ran,
)
from test_sources import DeletingSwift

from zerocloud import config, graph
from zerocloud.proxy import caller, middleware, stream
from zerocloud.proxy.middleware import ProxyExecMiddleware
from zerocloud.proxy.outputs import Budget, OutputFile


def no_room(*args):
    """os.pwrite (or a file's write) on a full disk."""
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


LINE = len('out /AUTH_a/c/item00\n')        # what each node of ``ran()`` writes

# the fixtures this module's tests share with test_proxy_filter
batch_servers, servers, swift = (proxy_tests.batch_servers, proxy_tests.servers,
                                 proxy_tests.swift)


@pytest.fixture
def limited(swift, monkeypatch):
    """The filter with a job budget of ``limited(bytes)``."""
    FakeRing.install(monkeypatch)

    def make(limit: int) -> ProxyExecMiddleware:
        return ProxyExecMiddleware(swift, {'zerovm_job_maxoutput': str(limit)})
    return make


def test_the_option_has_a_default_and_refuses_a_bad_value() -> None:
    assert config.Config.from_conf({}).job_max_output == 4 << 30
    with pytest.raises(ValueError, match='zerovm_job_maxoutput: 4G: expected a whole number'):
        config.Config.from_conf({'zerovm_job_maxoutput': '4G'})


@pytest.mark.parametrize('many', [False, True], ids=['held', 'spooled'])
def test_a_job_over_its_output_budget_is_a_413_naming_the_option(
        limited, swift, batch_servers, monkeypatch, many: bool) -> None:
    """Six nodes of 21 bytes each over a budget of 50: the third passes it; the job
    stops with a 413 that says which limit and who raises it, stores nothing and
    leaves no output open (also past SUMMARY_NODES, from its job spool)."""
    if many:
        monkeypatch.setattr(stream, 'SUMMARY_NODES', 1)
    objects(swift, 6)
    swift.add('/out/keep', b'')
    batch_servers(d0=ran())
    before = OutputFile.held
    body = job(stdin='swift://~/c/item*', stdout={'name': 'stdout',
                                                   'path': 'swift://~/out/*.txt'})
    resp = post(limited(50), body)
    assert resp.status_int == 413, resp.body
    text = resp.body.decode()
    assert text.startswith('this job was stopped: its outputs passed zerovm_job_maxoutput (50 '
                           'bytes, at /dev/stdout of node wc-'), text
    assert 'ask the operator to raise zerovm_job_maxoutput' in text
    assert resp.headers['X-Nexe-Error'] == text.strip()
    assert not [p for m, p, _h in swift.calls if m == 'PUT']        # nothing stored
    assert OutputFile.held == before


def test_a_job_within_its_output_budget_runs_and_its_spool_counts_against_it(
        limited, swift, batch_servers, monkeypatch) -> None:
    """Exactly the budget is fine; the bytes moved to a large job's spool still count
    (6 nodes over a budget of 5 of them fail: the spool does not give them back)."""
    monkeypatch.setattr(stream, 'SUMMARY_NODES', 1)
    objects(swift, 6)
    batch_servers(d0=ran())
    resp = post(limited(6 * LINE), job(stdin='swift://~/c/item*'))
    assert resp.status_int == 200, resp.body
    assert resp.body.count(b'\n') == 6
    assert post(limited(5 * LINE), job(stdin='swift://~/c/item*')).status_int == 413


def test_a_deferred_job_over_its_budget_stores_the_413_as_its_result(
        batch_servers, monkeypatch) -> None:
    swift = DeletingSwift()             # wakes its wait_until at each request
    swift.add('/bin/wc', b'\x7fELF program')
    objects(swift, 6)
    batch_servers(d0=ran())
    FakeRing.install(monkeypatch)
    app = ProxyExecMiddleware(swift, {'zerovm_job_maxoutput': '50'})
    resp = post(app, job(stdin='swift://~/c/item*'), **{'X-Zerovm-Deferred': 'always'})
    assert resp.status_int == 202, resp.body
    where = resp.body.decode().strip().replace('swift://AUTH_a', ACCOUNT)
    assert swift.wait_until(lambda: where + '.headers' in swift.objects)
    stored = swift.objects[where][1].decode()
    assert stored.startswith('this job was stopped: its outputs passed zerovm_job_maxoutput')
    assert b'"Status": "413 Request Entity Too Large"' in swift.objects[where + '.headers'][1]


def test_an_output_past_the_budget_keeps_nothing_and_gives_back_what_it_held() -> None:
    budget = Budget(10)
    first, second = OutputFile(budget, 'n-1', 'stdout'), OutputFile(budget, 'n-2', 'stdout')
    first.write(b'x' * 8)
    budget.check()
    second.write(b'y' * 3)
    assert (second.tell(), budget.held, budget.over) == (0, 8, '/dev/stdout of node n-2')
    second.write(b'y')                          # once tripped, nothing more is kept
    assert second.tell() == 0
    with pytest.raises(middleware.OverBudget, match='n-2'):
        budget.check()
    first.close()
    second.close()
    assert budget.held == 0


def test_an_output_moved_to_the_job_spool_stays_charged() -> None:
    budget = Budget(100)
    out = OutputFile(budget, 'n-1', 'stdout')
    out.write(b'x' * 40)
    out.hand_over()
    out.close()
    assert budget.held == 40


def test_other_jobs_are_not_charged(limited, swift, batch_servers) -> None:
    """The budget is each job's: a job over it leaves the next one whole."""
    objects(swift, 6)
    swift.add('/c/few1')
    swift.add('/c/few2')
    batch_servers(d0=ran())
    app = limited(5 * LINE)
    assert post(app, job(stdin='swift://~/c/item*')).status_int == 413
    resp = post(app, job(stdin='swift://~/c/few*'))
    assert (resp.status_int, resp.body) == (200, b'out /AUTH_a/c/few1\nout /AUTH_a/c/few2\n')


@pytest.fixture
def full_disk(monkeypatch):
    """Every output on the proxy's disk (none kept in memory), which is full."""
    from zerocloud.proxy import outputs
    monkeypatch.setattr(outputs, 'SPOOL_MEMORY', 0)
    monkeypatch.setattr(os, 'pwrite', no_room)


def test_a_proxy_disk_full_is_a_507_saying_whose_room_it_is(mw, swift, servers,
                                                            full_disk) -> None:
    # its JSON report could not be spooled: the OSError was a 500, "internal error"
    servers(d0=ok(b'out\n'))
    resp = post(mw, job(), **{'X-Zerovm-Report': 'json'})
    assert resp.status_int == 507, resp.body
    assert resp.body.decode().startswith(
        "this job was stopped: the proxy has no room left for the outputs, links and "
        "inputs of jobs (")
    assert b'No space left on device); nothing of it was stored' in resp.body
    assert b"ask the operator to give the proxy's $TMPDIR more room" in resp.body


def test_a_disk_full_after_some_outputs_were_stored_names_them(
        limited, swift, batch_servers, monkeypatch) -> None:
    """A large job's spool fills the proxy's disk while its outputs are being stored
    (a node's record rewritten after its PUT): the 507 names what was stored, it does
    not say nothing was; the stores running then (two at a time, each PUT slower than
    the one before) end before it is told, and none starts after."""
    monkeypatch.setattr(stream, 'SUMMARY_NODES', 1)
    monkeypatch.setattr(stream, 'GATHER', 1)    # each record written at once
    monkeypatch.setattr(middleware, 'MAX_CONCURRENCY', 2)
    objects(swift, 4)
    batch_servers(d0=ran())
    puts = []

    def slower_puts(env, start_response):
        if env['REQUEST_METHOD'] == 'PUT':
            puts.append(env['PATH_INFO'])
            for _ in range(10 * len(puts)):
                eventlet.sleep(0)
        return swift(env, start_response)
    pwrite = os.pwrite

    def full_once_stored(fd, data, at):
        if any(m == 'PUT' for m, _p, _h in swift.calls):
            no_room()
        return pwrite(fd, data, at)
    monkeypatch.setattr(os, 'pwrite', full_once_stored)
    body = job(stdin='swift://~/c/item*', stdout={'name': 'stdout',
                                                   'path': 'swift://~/out/*.txt'})
    limited(1 << 20)
    resp = post(ProxyExecMiddleware(slower_puts, {'zerovm_job_maxoutput': str(1 << 20)}), body)
    assert resp.status_int == 507, resp.body
    put = [p for m, p, _h in swift.calls if m == 'PUT']
    assert put and put == puts                  # every PUT begun has ended
    text = resp.body.decode()
    assert 'nothing of it was stored' not in text
    many = 'was' if len(put) == 1 else 'were'
    assert f'{len(put)} of its outputs {many} stored (' in text, text
    assert all(f'swift:/{p[3:]}' in text for p in put), text
    for _ in range(100):                        # nothing left running stores one more
        eventlet.sleep(0)
    assert [p for m, p, _h in swift.calls if m == 'PUT'] == put


def test_a_disk_full_reading_a_batch_stops_the_job_without_running_its_nodes_again(
        mw, swift, batch_servers, full_disk) -> None:
    """The proxy's full disk is not the batch's server failing: its nodes are not
    sent alone to run again, the job answers 507 at once."""
    objects(swift, 3)
    fake, single = batch_servers(d0=ran())
    resp = post(mw, job(stdin='swift://~/c/item*'))
    assert resp.status_int == 507, resp.body
    assert b'the proxy has no room left for the outputs, links and inputs of jobs' in resp.body
    assert len(fake.batches) == 1 and single.asked == []


def test_a_node_output_the_proxy_has_no_room_for_is_not_a_servers_failure(mw, full_disk) -> None:
    """An OSError reading a node's answer is the server's (the node runs elsewhere, and
    fails ``unavailable`` naming the servers): the proxy's own full disk is not."""
    from zerocloud import wire
    from zerocloud.tmpdisk import DiskFull
    body = b''.join(wire.stream_tar([
        wire.bytes_member(wire.REPORT, wire.NodeReport('ok', 0).to_json()),
        wire.bytes_member('dev/stdout', b'out\n')]))

    class Resp:
        status = 200

        def __init__(self) -> None:
            self.body = __import__('io').BytesIO(body)

        def getheader(self, name, default=None):
            return {wire.EXECUTE: '1.0'}.get(name, default)

        def read(self, n=-1):
            return self.body.read(n)
    with pytest.raises(DiskFull, match='No space left on device'):
        mw.dispatcher.node_response(Resp())


def test_a_link_the_proxys_full_disk_cannot_hold_stops_the_job_with_a_507(
        mw, swift, servers, monkeypatch) -> None:
    """A connected job's link (/dev/out/r, spooled on the proxy's disk) finding it full
    is a 507 saying so, not a 500 nor the writer's server failing."""
    monkeypatch.setattr(graph, 'os', SimpleNamespace(pwrite=no_room, pread=os.pread))
    asked = servers(d0=proxy_tests.echo, d1=proxy_tests.echo, d2=proxy_tests.echo)
    group = job() + [{'name': 'r', 'exec': {'path': 'swift://~/bin/wc'},
                      'devices': [{'name': 'stdout'}]}]
    group[0]['connect'] = ['r']
    resp = post(mw, group)
    assert resp.status_int == 507, resp.body
    assert b'the proxy has no room left for the outputs, links and inputs of jobs' in resp.body
    assert len(asked.asked) == 1                # the writer ran once, not again elsewhere


def test_an_input_the_proxys_full_disk_cannot_hold_stops_the_job_with_a_507(
        mw, swift, servers, monkeypatch) -> None:
    """An object a node reads that is not next to it is fetched through the proxy into a
    temporary file: ENOSPC there is a 507 saying so, not a 500."""
    class Full(caller.Spooled):          # its first byte goes to disk, and finds it full
        rollover = no_room
    monkeypatch.setattr(caller, 'spooled', lambda: Full(max_size=1))
    swift.add('/c/other')
    servers(d0=ok(b'out\n'))
    group = job()
    group[0]['devices'].append({'name': 'input', 'path': 'swift://~/c/other'})
    resp = post(mw, group)
    assert resp.status_int == 507, resp.body
    assert b'the proxy has no room left for the outputs, links and inputs of jobs' in resp.body

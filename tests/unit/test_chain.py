"""zerocloud.chain: a response that is a job runs next only when every piece of code
the job ran is the caller's account's (Launch.ran, Launch.foreign).  Through the proxy
filter: test_sources; on a cluster with two accounts: functional/test_chain_accounts."""

from __future__ import annotations

import pytest
from swift.common.swob import Response

from zerocloud import chain
from zerocloud.job import Device, Exec, Node, SwiftPath
from zerocloud.sources import Launch

OWN = 'AUTH_a'


def node(program: str, **paths: str) -> Node:
    """A node running ``program`` with a device per keyword (name=swift:// path)."""
    devices = [Device(name, SwiftPath(*path[len('swift://'):].split('/', 2)))
               for name, path in paths.items()]
    return Node('n', 'n', 0, 1, Exec(program), devices)


@pytest.mark.parametrize('nodes, source, foreign', [
    ([node('swift://AUTH_a/bin/x', script='swift://AUTH_a/c/s', image='swift://AUTH_a/c/i')],
     None, []),
    ([node('file://python3:python3')], None, []),            # the operator's system image
    ([node('swift://AUTH_b/bin/x')], None, ['swift://AUTH_b/bin/x']),
    ([node('file://python3:python3', script='swift://AUTH_b/c/s')], None,
     ['swift://AUTH_b/c/s']),
    ([node('bin/x', image='swift://AUTH_b/c/i.tar')], None, ['swift://AUTH_b/c/i.tar']),
    ([node('swift://AUTH_a/bin/x')], 'swift://AUTH_b/jobs/j.json', ['swift://AUTH_b/jobs/j.json']),
    ([node('swift://AUTH_a/bin/x')], 'swift://AUTH_a/jobs/j.json', []),
    # what a program reads on stdin or input is data (Launch.foreign_data, below)
    ([node('swift://AUTH_a/bin/x', stdin='swift://AUTH_b/c/d', input='swift://AUTH_b/c/e')],
     None, []),
    ([node('swift://AUTH_c/bin/x'), node('swift://AUTH_b/bin/y'), node('swift://AUTH_b/bin/z'),
      node('swift://AUTH_a/bin/w')], None, ['swift://AUTH_b/bin/y', 'swift://AUTH_c/bin/x']),
])
def test_foreign_code_is_every_program_image_script_and_source_of_another_account(
        nodes: list[Node], source: str | None, foreign: list[str]) -> None:
    launch = Launch(b'[]')
    if source:
        launch.source = SwiftPath(*source[len('swift://'):].split('/', 2))
    for each in nodes:
        launch.ran(each)
    assert [str(p) for p in launch.foreign(OWN)] == foreign


def job_response() -> Response:
    return Response(body=b'[]', content_type='application/json',
                    headers={'X-Zerovm-Execute': '1.0'})


@pytest.mark.parametrize('program, runs', [('swift://AUTH_a/bin/x', 2),
                                           ('swift://AUTH_b/bin/x', 1)])
def test_a_job_answered_by_foreign_code_is_not_run(program: str, runs: int) -> None:
    launches: list[Launch] = []

    def execute(launch: Launch) -> Response:
        launches.append(launch)
        launch.ran(node(program))
        return job_response() if len(launches) == 1 else Response(body=b'done')
    resp = chain.run(execute, Launch(b'[]'), OWN, timeout=10, max_config=100)
    assert len(launches) == runs
    if runs == 1:
        assert resp.headers['X-Chain-Stopped'] == 'foreign_code'
        assert resp.headers['X-Chain-Foreign-Code'] == program
        assert resp.body == b'[]' and resp.headers['X-Zerovm-Execute'] == '1.0'
    else:
        assert resp.body == b'done' and 'X-Chain-Stopped' not in resp.headers


def test_each_job_of_a_chain_is_judged_by_its_own_code() -> None:
    """The caller's own job may run a foreign program; that one's answer is not run."""
    programs = ['swift://AUTH_a/bin/x', 'swift://AUTH_b/bin/x', 'swift://AUTH_a/bin/x']
    launches: list[Launch] = []

    def execute(launch: Launch) -> Response:
        launch.ran(node(programs[len(launches)]))
        launches.append(launch)
        return job_response()
    resp = chain.run(execute, Launch(b'[]'), OWN, timeout=10, max_config=100)
    assert len(launches) == 2
    assert resp.headers['X-Chain-Foreign-Code'] == 'swift://AUTH_b/bin/x'


@pytest.mark.parametrize('nodes, data', [
    ([node('swift://AUTH_a/bin/x', stdin='swift://AUTH_a/c/d')], []),
    ([node('file://python3:python3', input='swift://AUTH_b/tools/answer.py')],
     ['swift://AUTH_b/tools/answer.py']),
    ([node('swift://AUTH_a/bin/x', stdin='swift://AUTH_c/c/d'),
      node('swift://AUTH_a/bin/x', stdin='swift://AUTH_b/c/e'),
      node('swift://AUTH_a/bin/x', stdin='swift://AUTH_b/c/f')],
     ['swift://AUTH_b/c/e', 'swift://AUTH_c/c/d']),
    # what it writes is not what it read
    ([node('swift://AUTH_a/bin/x', stdout='swift://AUTH_b/drop/o')], []),
])
def test_foreign_data_is_every_object_of_another_account_a_node_reads(
        nodes: list[Node], data: list[str]) -> None:
    launch = Launch(b'[]')
    for each in nodes:
        launch.ran(each)
    assert [str(p) for p in launch.foreign_data(OWN)] == data
    assert launch.foreign(OWN) == []


def test_a_job_that_read_another_accounts_object_does_not_chain() -> None:
    """The caller's own interpreter running another account's script given as input
    (``python3 /dev/input``) answered with a job copying the caller's objects into its
    owner's drop box (review19, on a cluster): what a job read may choose its answer."""
    launches: list[Launch] = []

    def execute(launch: Launch) -> Response:
        launches.append(launch)
        launch.ran(node('file://python3:python3', input='swift://AUTH_b/tools/answer.py'))
        return job_response()
    resp = chain.run(execute, Launch(b'[]'), OWN, timeout=10, max_config=100)
    assert len(launches) == 1
    assert resp.headers['X-Chain-Stopped'] == 'foreign_input'
    assert resp.headers['X-Chain-Foreign-Input'] == 'swift://AUTH_b/tools/answer.py'
    assert 'X-Chain-Foreign-Code' not in resp.headers
    assert resp.body == b'[]' and resp.headers['X-Zerovm-Execute'] == '1.0'

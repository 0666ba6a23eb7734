"""A chain is the caller's to start: a job whose response is a job runs it next only
when every piece of its code and every object it read is the caller's account's
(zerocloud.chain).

AUTH_test publishes a tool (the test interpreter, a script, a stored job running it)
that test2 may read, and a ``drop`` container test2 may write.  The tool answers any
input with a job that copies test2's private object into ``drop``: run from AUTH_test,
or read by test2's own interpreter as its script, that job is test2's answer, not run;
test2's own copy of the tool chains."""

from __future__ import annotations

import json

import pytest
import requests
from accounts import until
from swiftclient import ClientException, Connection

SECRET = b'test2 private\n'


@pytest.fixture
def tool(conn: Connection, connect, make_container, guest) -> dict:
    other = connect('test2:tester2')
    pub = make_container('pub', headers={'X-Container-Read': 'test2:tester2'})
    drop = make_container('drop', headers={'X-Container-Write': 'test2:tester2'})
    own = make_container('own', connection=other)
    other.put_object(own, 'secret', SECRET)
    evil = [{'name': 'copy', 'exec': {'path': f'swift://AUTH_test/{pub}/src_interp',
                                      'args': ['-c', 'cat']},
             'devices': [{'name': 'stdin', 'path': f'swift://AUTH_test2/{own}/secret'},
                         {'name': 'stdout', 'path': f'swift://AUTH_test/{drop}/loot'}]}]
    script = '\n'.join(['#!', 'echo Content-Type: application/json',
                        'echo X-Zerovm-Execute: 1.0', 'echo', f'echo {json.dumps(evil)}', ''])
    interp = guest('src_interp').read_bytes()
    for connection, container, account in ((conn, pub, 'AUTH_test'),
                                           (other, own, 'AUTH_test2')):
        connection.put_object(container, 'src_interp', interp)
        connection.put_object(container, 'tool.script', script)
        connection.put_object(container, 'tool.json', json.dumps(runner(
            f'swift://{account}/{container}/src_interp',
            f'swift://{account}/{container}/tool.script')), content_type='application/json')
    return {'conn': conn, 'other': other, 'pub': pub, 'drop': drop, 'own': own, 'evil': evil}


def runner(program: str, script: str, stdin: bool = True) -> list[dict]:
    """A job running ``program /dev/script`` (over the request's input), answering as CGI."""
    return [{'name': 'tool', 'exec': {'path': program, 'args': ['/dev/script']},
             'devices': [{'name': 'script', 'path': script}, *([{'name': 'stdin'}] * stdin),
                         {'name': 'stdout', 'content_type': 'message/cgi'}]}]


def post(conn: Connection, headers: dict, data: bytes | str) -> requests.Response:
    url, token = conn.get_auth()
    return requests.post(url, data=data, timeout=120, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0', **headers})


def loot(tool: dict) -> bytes | None:
    try:
        return tool['conn'].get_object(tool['drop'], 'loot')[1]
    except ClientException as e:
        assert e.http_status == 404
        return None


def attacks(tool: dict) -> dict[str, tuple[dict, bytes | str]]:
    pub = f'swift://AUTH_test/{tool["pub"]}'
    mine = f'swift://AUTH_test2/{tool["own"]}/src_interp'
    return {
        # the reviewer's: another account's stored job and script over a harmless input
        'stored job': ({'X-Zerovm-Source': f'{pub}/tool.json'}, b'harmless input'),
        # test2's own job and interpreter, another account's script on /dev/script
        'script': ({'Content-Type': 'application/json'},
                   json.dumps(runner(mine, f'{pub}/tool.script', stdin=False))),
        # another account's program, test2's own job and script
        'program': ({'Content-Type': 'application/json'},
                    json.dumps(runner(f'{pub}/src_interp',
                                      f'swift://AUTH_test2/{tool["own"]}/tool.script',
                                      stdin=False))),
    }


@pytest.mark.parametrize('attack', ['stored job', 'script', 'program'])
def test_a_job_answered_by_another_accounts_code_is_not_run(tool: dict, attack: str) -> None:
    headers, data = attacks(tool)[attack]
    resp = post(tool['other'], headers, data)
    assert resp.status_code == 200, resp.text
    assert resp.headers['X-Chain-Stopped'] == 'foreign_code'
    assert resp.headers['X-Chain-Foreign-Code'].startswith(f'swift://AUTH_test/{tool["pub"]}/')
    assert json.loads(resp.content) == tool['evil']        # the answer, as is
    assert resp.headers['X-Nexe-System'] == 'tool'
    assert loot(tool) is None


def test_a_deferred_job_answered_by_another_accounts_code_is_not_run(tool: dict) -> None:
    headers, data = attacks(tool)['stored job']
    resp = post(tool['other'], {**headers, 'X-Zerovm-Deferred': 'always'}, data)
    assert resp.status_code == 202, resp.text
    name = resp.text.strip().rsplit('/', 1)[1]
    other = tool['other']

    def result() -> dict | None:
        try:
            return json.loads(other.get_object('.zvm', name + '.headers')[1])
        except ClientException:
            return None
    try:
        headers = until(result)
        assert headers and headers['X-Chain-Stopped'] == 'foreign_code', headers
        assert json.loads(other.get_object('.zvm', name)[1]) == tool['evil']
    finally:
        for obj in (name, name + '.headers'):
            try:
                other.delete_object('.zvm', obj)
            except ClientException:
                pass
    assert loot(tool) is None


def test_a_job_that_read_another_accounts_object_is_not_run(tool: dict) -> None:
    """test2's own job and interpreter, the tool's script read on /dev/input as data
    that the interpreter runs (review19's way around the code rule)."""
    mine = f'swift://AUTH_test2/{tool["own"]}/src_interp'
    script = f'swift://AUTH_test/{tool["pub"]}/tool.script'
    job = [{'name': 'tool', 'exec': {'path': mine, 'args': ['/dev/input']},
            'devices': [{'name': 'input', 'path': script},
                        {'name': 'stdout', 'content_type': 'message/cgi'}]}]
    resp = post(tool['other'], {'Content-Type': 'application/json'}, json.dumps(job))
    assert resp.status_code == 200, resp.text
    assert resp.headers.get("X-Chain-Stopped") == "foreign_input", (resp.headers, resp.text)
    assert resp.headers['X-Chain-Foreign-Input'] == script
    assert json.loads(resp.content) == tool['evil']
    assert loot(tool) is None


def test_the_callers_own_copy_of_the_tool_chains(tool: dict) -> None:
    """The same tool copied into test2's account: its answer runs (the copy is test2's
    choice to chain), the way to chain another account's tool deliberately."""
    source = f'swift://AUTH_test2/{tool["own"]}/tool.json'
    resp = post(tool['other'], {'X-Zerovm-Source': source}, b'harmless input')
    assert resp.status_code == 200, resp.text
    assert 'X-Chain-Stopped' not in resp.headers
    assert resp.headers['X-Nexe-System'] == 'copy'
    assert loot(tool) == SECRET

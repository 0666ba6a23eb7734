"""The ``zc`` client without a cluster: jobs it builds, how it reads answers, what it prints."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import NoReturn

import pytest

from zerocloud.client import display, jobs, local, report, zapps
from zerocloud.client.cli import _has_answer_output, build_parser
from zerocloud.job import JobError, SwiftPath, parse_job
from zerocloud.zapp import system_map

HEADERS = {
    'X-Nexe-System': 'wc-1,wc-2,wc-3',
    'X-Nexe-Status': 'ok,ok,fault',
    'X-Nexe-Retcode': '0,1,',
    'X-Nexe-Host': '127.0.0.1:6203/d0,127.0.0.1:6213/d1,',
    'X-Nexe-Cdr-Line': '0.500, 0.100, 2000 10 292 24, 0.200, 3000 11 692 24, 0.050, 0 0 0 0',
    'X-Nexe-Error': 'wc-2: exit 1: bad input, wc-3: SIGSEGV at 0x0 (null read)',
    'Content-Type': 'text/plain',
}


def members(zapp: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(zapp))) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def test_a_local_program_travels_in_a_zapp_with_the_job(tmp_path: Path) -> None:
    prog = tmp_path / 'wc'
    prog.write_bytes(b'\x7fELF' + b'\0' * 60)
    payload = jobs.build(str(prog), None, 'swift://~/logs/*.txt', 'swift://~/out/*.count',
                         args='-l', env={'LANG': 'C'})
    assert payload.content_type == jobs.ZAPP_TYPE
    files = members(payload.body)
    assert files['bin/wc'] == prog.read_bytes()
    job = json.loads(files['boot/system.map'])
    assert job == payload.job == [{
        'name': 'wc', 'exec': {'path': 'bin/wc', 'name': 'wc', 'args': '-l',
                               'env': {'LANG': 'C'}},
        'devices': [{'name': 'stdin', 'path': 'swift://~/logs/*.txt'},
                    {'name': 'stdout', 'content_type': 'text/plain',
                     'path': 'swift://~/out/*.count'}]}]
    # the proxy's parser takes it, and the proxy's zapp reader finds the map
    parse_job(job, 'AUTH_test')
    assert json.loads(system_map(io.BytesIO(gzip.decompress(payload.body)), 65536, 'z')) == job


def test_zapps_are_the_same_bytes_for_the_same_inputs(tmp_path: Path) -> None:
    job = [{'name': 'a', 'exec': {'path': 'bin/a'}}]
    assert jobs.zapp_bytes(job, {'bin/a': b'x'}) == jobs.zapp_bytes(job, {'bin/a': b'x'})


def test_a_script_runs_with_the_interpreter_of_its_extension(tmp_path: Path) -> None:
    script = tmp_path / 'col-sum.py'
    script.write_text('print(1)\n')
    payload = jobs.build(None, str(script), 'swift://~/data/*.csv', None, args='2')
    group = payload.job[0]
    assert group['name'] == 'col-sum'
    assert group['exec'] == {'path': 'file://python3:python3', 'args': '/col-sum.py 2'}
    assert group['devices'][1] == {'name': 'stdout', 'content_type': 'text/plain'}
    assert members(payload.body)['col-sum.py'] == b'print(1)\n'
    parse_job(payload.job, 'AUTH_test', system_images=['python3'])
    lua = tmp_path / 'f.lua'
    lua.write_text('print(1)')
    assert jobs.build(None, str(lua), None, None).job[0]['exec']['path'] == 'file://lua:lua'


def test_a_script_without_an_interpreter_is_a_usage_error_saying_what_to_add(
        tmp_path: Path, capsys, monkeypatch) -> None:
    # zc run --script x.txt exited 1, as if the cluster had refused the job
    from zerocloud.client import cli
    for k, v in {'ST_AUTH': 'http://127.0.0.1:9/auth/v1.0', 'ST_USER': 'u', 'ST_KEY': 'k'}.items():
        monkeypatch.setenv(k, v)
    script = tmp_path / 'x.txt'
    script.write_text('print(1)\n')
    assert cli.main(['run', '--script', str(script)]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        f'zc: no interpreter for {script}: start it with a line naming one, '
        '#!file://python3:python3 (Python) or #!file://lua:lua (Lua); name a .py or .lua '
        'file; or give --interpreter file://<image>:<program> (zc -h for help)\n')
    script.write_text('#!/usr/bin/env python3\nprint(1)\n')
    with pytest.raises(jobs.OptionError, match=r'x.txt \(its #!/usr/bin/env python3 is not '
                       r'one\): start it with a line naming one, #!file://python3:python3'):
        jobs.build(None, str(script), None, None)
    script.write_text('#!file://python3\nprint(1)\n')
    with pytest.raises(jobs.OptionError, match=r'x.txt: its #! line: file://python3: expected '
                       r'file://<system image>:<program> .* \(did you mean file://python3:'
                       r'python3\?\)'):
        jobs.build(None, str(script), None, None)


def test_a_script_runs_with_the_interpreter_of_its_first_line(tmp_path: Path) -> None:
    # as a script POSTed to the cluster does (zerocloud.sources); --interpreter still wins
    script = tmp_path / 'job.txt'
    script.write_text('#!file://python3:python3 -u\nprint(1)\n')
    payload = jobs.build(None, str(script), None, None, args='a b')
    assert payload.job[0]['exec'] == {'path': 'file://python3:python3', 'args': '-u /job.txt a b'}
    script.write_text('#!file://python3:python3\nprint(1\n')       # checked as Python
    with pytest.raises(jobs.BuildError, match='job.txt:2: '):
        jobs.build(None, str(script), None, None)
    script.write_text('#!swift://~/bin/awk -f\nprint(1)\n')
    assert jobs.build(None, str(script), None, None).job[0]['exec'] == {
        'path': 'swift://~/bin/awk', 'args': '-f /job.txt'}
    script.write_text('#!SWIFT://~/bin/awk -f\nprint(1)\n')     # a scheme in any case
    assert jobs.build(None, str(script), None, None).job[0]['exec'] == {
        'path': 'SWIFT://~/bin/awk', 'args': '-f /job.txt'}
    assert jobs.build(None, str(script), None, None, interpreter='file://lua:lua'
                      ).job[0]['exec'] == {'path': 'file://lua:lua', 'args': '/job.txt'}


def test_a_python_script_that_does_not_compile_is_refused_before_any_node_runs(
        tmp_path: Path) -> None:
    script = tmp_path / 'agg.py'
    script.write_text('import sys\nfor line in sys.stdin\n    print(line)\n')
    with pytest.raises(jobs.BuildError, match=r"agg.py:2: expected ':'"):
        jobs.build(None, str(script), 'swift://~/data/*.csv', None)
    # another interpreter may take other syntax: not checked here
    jobs.build(None, str(script), None, None, interpreter='file://python2:python2')


def test_a_script_whose_name_has_a_space_is_one_argument(tmp_path: Path) -> None:
    # args are split like a shell would: "/my agg.py" ran "/my" with the argument "agg.py"
    import shlex
    script = tmp_path / 'my agg.py'
    script.write_text('print(1)\n')
    payload = jobs.build(None, str(script), 'swift://~/data/*.csv', None, args='region qty')
    assert shlex.split(payload.job[0]['exec']['args']) == ['/my agg.py', 'region', 'qty']
    assert members(payload.body)['my agg.py'] == b'print(1)\n'


def test_a_file_that_is_not_a_zapp_says_what_a_zapp_is() -> None:
    # zc deploy agg.py said "agg.py is not a valid zapp: truncated header"
    with pytest.raises(jobs.BuildError, match=r'agg.py is not a zapp \(a tar or gzipped tar '
                       r'with boot/system.map: zc bundle makes one\): truncated header'):
        jobs.zapp_job(b'print(1)\n', 'agg.py')


def test_a_stored_program_needs_no_zapp() -> None:
    payload = jobs.build('swift://~/bin/sort', None, 'swift://~/d/x', None, device='input')
    assert payload.content_type == jobs.JSON_TYPE
    assert json.loads(payload.body)[0]['devices'][0] == {'name': 'input', 'path': 'swift://~/d/x'}


@pytest.mark.parametrize('kwargs, message', [
    ({'program': None, 'script': None}, 'give a program or --script'),
    ({'program': 'swift://~/b/p', 'script': 'x.py'}, 'not both'),
    ({'program': None, 'script': 'x.sh'}, 'cannot read x.sh'),
    ({'program': 'swift://~/b/p', 'script': None, 'on': 'http://x/y'}, '--on: Invalid path'),
    ({'program': 'missing-program', 'script': None}, 'cannot read missing-program'),
])
def test_bad_requests_for_a_built_job_say_what_to_fix(kwargs: dict, message: str) -> None:
    args = {'on': None, 'out': None, **kwargs}
    with pytest.raises(jobs.BuildError, match=message):
        jobs.build(**args)


def test_a_file_that_is_not_a_program_is_refused(tmp_path: Path) -> None:
    (tmp_path / 'notes.txt').write_text('hello')
    with pytest.raises(jobs.BuildError, match='not a program'):
        jobs.build(str(tmp_path / 'notes.txt'), None, None, None)


def test_a_job_file_or_zapp_is_read_as_is(tmp_path: Path) -> None:
    (tmp_path / 'job.json').write_text('[{"name": "a", "exec": {"path": "swift://~/b/a"}}]')
    assert jobs.load(str(tmp_path / 'job.json')).job[0]['name'] == 'a'
    (tmp_path / 'app.zapp').write_bytes(jobs.zapp_bytes([{'name': 'z'}], {}))
    loaded = jobs.load(str(tmp_path / 'app.zapp'))
    assert loaded.content_type == jobs.ZAPP_TYPE and loaded.job == [{'name': 'z'}]
    (tmp_path / 'bad.json').write_text('[{')
    with pytest.raises(jobs.BuildError, match=r'bad.json is not valid JSON: Expecting '):
        jobs.load(str(tmp_path / 'bad.json'))
    # a .json starting with a comment: where JSON breaks, not 'not a job description'
    (tmp_path / 'noted.json').write_text('// count lines\n[{"name": "a"}]')
    with pytest.raises(jobs.BuildError) as e:
        jobs.load(str(tmp_path / 'noted.json'))
    assert str(e.value) == (f'{tmp_path}/noted.json is not valid JSON: Expecting value: line 1 '
                            'column 1 (char 0) (JSON has no comments)')
    (tmp_path / 'comma.json').write_text('[{"name": "a"},\n]')
    with pytest.raises(jobs.BuildError) as e:
        jobs.load(str(tmp_path / 'comma.json'))
    assert str(e.value) == (f'{tmp_path}/comma.json is not valid JSON: Expecting value: line 2 '
                            'column 1 (char 16) (a trailing comma at line 1 column 15, before '
                            '"]": JSON allows none; remove it)')


@pytest.mark.parametrize('name, text, says', [
    ('lines.c', '#include <stdio.h>\n', 'lines.c is not a job description (JSON), a zapp, '
                                        'nor a program (a static ELF executable: musl-gcc '
                                        '-static)'),
    ('sum.py', 'print(1)\n', 'sum.py is not a job description (JSON), a zapp, nor a program '
                             '(a static ELF executable: musl-gcc -static); a script runs with '
                             '--script '),
])
def test_a_source_file_given_as_the_job_says_what_zc_runs(tmp_path: Path, name: str, text: str,
                                                           says: str) -> None:
    # `zc run lines.c --on ...`: not "Expecting value: line 1 column 1"
    (tmp_path / name).write_text(text)
    with pytest.raises(jobs.BuildError) as e:
        jobs.load(str(tmp_path / name))
    assert str(e.value).startswith(str(tmp_path / name)) and says in str(e.value)


def test_a_zapp_runs_over_objects_given_on_the_command_line() -> None:
    job = [{'name': 'a', 'exec': {'path': 'bin/a'},
            'devices': [{'name': 'stdin'}, {'name': 'stdout'}]}]
    zapp = jobs.Payload(jobs.zapp_bytes(job, {'bin/a': b'prog'}), jobs.ZAPP_TYPE, job)
    bound = jobs.rebind(zapp, 'swift://~/c/*.txt', 'swift://~/o/*.out', 'a.zapp')
    assert bound.job[0]['devices'] == [{'name': 'stdin', 'path': 'swift://~/c/*.txt'},
                                       {'name': 'stdout', 'path': 'swift://~/o/*.out'}]
    assert jobs.read_zapp(bound.body, 'a.zapp') == (bound.job, {'bin/a': b'prog'})
    with pytest.raises(jobs.BuildError, match='no group has stdin or input without a path'):
        jobs.rebind(bound, 'swift://~/c/x', None, 'a.zapp')


def test_a_zapp_of_deprecated_keys_runs_over_objects_given_on_the_command_line() -> None:
    # its devices were read from "devices" and "name" only: a zapp of "file_list" or
    # "device" (the parser takes both) had "no group has stdin", a group not an object
    # an AttributeError
    job = ['not a group', {'name': 'a', 'exec': {'path': 'bin/a'},
                           'file_list': [{'device': 'stdin'}, {'device': 'stdout'}]}]
    zapp = jobs.Payload(jobs.zapp_bytes(job, {}), jobs.ZAPP_TYPE, job)
    bound = jobs.rebind(zapp, 'swift://~/c/*.txt', 'swift://~/o/*.out', 'a.zapp')
    assert bound.job[1]['file_list'] == [{'device': 'stdin', 'path': 'swift://~/c/*.txt'},
                                         {'device': 'stdout', 'path': 'swift://~/o/*.out'}]


def test_engine_on_the_command_line_is_every_groups_engine(tmp_path: Path, capsys) -> None:
    """``zc run --engine E``: the "engine" of every group of whatever it sends (a built
    job, a job file, a zapp), the proxy's parser takes it; an unknown one is a usage
    error naming the choices."""
    from zerocloud.client.cli import Client
    prog = tmp_path / 'wc'
    prog.write_bytes(b'\x7fELF' + b'\0' * 60)
    two = [{'name': 'a', 'exec': {'path': 'swift://~/b/a'}, 'engine': 'native'},
           {'name': 'b', 'exec': {'path': 'swift://~/b/b'}}]
    (tmp_path / 'job.json').write_text(json.dumps(two))
    (tmp_path / 'app.zapp').write_bytes(jobs.zapp_bytes(two, {'bin/x': b'x'}))
    for command in ('run', 'submit'):
        for target in (str(prog), str(tmp_path / 'job.json'), str(tmp_path / 'app.zapp')):
            opts = build_parser().parse_args([command, target, '--engine', 'emulated'])
            payload = Client(opts).payload(remote=False)
            sent = (json.loads(members(payload.body)['boot/system.map'])
                    if payload.content_type == jobs.ZAPP_TYPE else json.loads(payload.body))
            assert sent == payload.job and {g['engine'] for g in sent} == {'emulated'}
            assert [g.engine for g in parse_job(sent, 'AUTH_test')] == ['emulated'] * len(sent)
    opts = build_parser().parse_args(['run', str(tmp_path / 'job.json')])
    assert Client(opts).payload(remote=False).job == two        # without it: as the job says
    opts = build_parser().parse_args(['local', 'run', str(prog), '--engine', 'native'])
    node = jobs.nodes(Client(opts).payload(remote=False).job, 'AUTH_test', None, None)[0]
    cmd = local.LocalRun({}, tmp_path).command(node, tmp_path / 'wc.zapp', tmp_path)
    assert cmd[cmd.index('--engine') + 1] == 'native'         # zc local run: zvm run --engine
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(['run', str(prog), '--engine', 'fast'])
    assert e.value.code == 2
    assert ("argument --engine: invalid choice: 'fast' (choose from 'auto', 'native', "
            "'emulated')") in capsys.readouterr().err


def test_nodes_and_their_objects_are_expanded_like_the_proxy_does() -> None:
    job = [{'name': 'wc', 'exec': {'path': 'swift://~/bin/wc'},
            'devices': [{'name': 'stdin', 'path': 'swift://~/logs/*.txt'}, {'name': 'stdout'}]}]
    listing = {('AUTH_t', 'logs'): ['a.txt', 'b.csv', 'c.txt']}
    nodes = jobs.nodes(job, 'AUTH_t', lambda a, c, p: listing[a, c], lambda a: [])
    assert [(n.name, str(jobs.node_object(n))) for n in nodes] == [
        ('wc-1', 'swift://AUTH_t/logs/a.txt'), ('wc-2', 'swift://AUTH_t/logs/c.txt')]


def test_a_connect_too_wide_is_refused_by_zc_as_by_the_proxy_before_any_link() -> None:
    """zc expands a job to name each node's object: a connect of 3,000 nodes to 3,000 was
    wired first (9 million links; 50,000 to 50,000 held the user's zc for minutes and
    gigabytes) where the proxy refuses it unwired, with this message."""
    wide = [{'name': 'a', 'exec': {'path': 'swift://~/bin/x'}, 'count': 3000, 'connect': ['b']},
            {'name': 'b', 'exec': {'path': 'swift://~/bin/x'}, 'count': 3000}]
    with pytest.raises(JobError) as err:
        jobs.nodes(wide, 'AUTH_a', None, None)
    assert str(err.value).startswith('Too many channels for node a-1: 3003 (reads from 0 '
                                     'nodes, writes to 3000); a node may have at most')


def test_only_jobs_that_answer_with_output_are_run_without_the_json_report() -> None:
    assert _has_answer_output([{'devices': [{'name': 'stdout'}]}])
    assert not _has_answer_output([{'devices': [{'name': 'stdout', 'path': 'swift://~/c/o'},
                                                {'name': 'stdin'}]}])


# -- reading answers -------------------------------------------------------------------------

def test_nodes_from_headers_fail_on_a_bad_status_or_a_non_zero_exit() -> None:
    result = report.parse(200, HEADERS, b'out')
    assert [n.name for n in result.nodes] == ['wc-1', 'wc-2', 'wc-3']
    one, two, three = result.nodes
    assert (one.status, one.retcode, one.fuel, one.bytes_in, one.bytes_out, one.seconds) == \
        ('ok', 0, 2000, 292, 24, 0.1)
    assert not one.failed
    assert two.failed and two.retcode == 1 and two.error == 'exit 1: bad input'
    assert three.failed and three.retcode is None and three.host == ''
    assert three.error == 'SIGSEGV at 0x0 (null read)'
    assert result.failed            # whatever the HTTP status said
    assert result.seconds == 0.5 and not result.truncated


def test_a_node_fails_when_the_server_says_so_an_exit_code_the_job_accepts_is_ok() -> None:
    accepted = {'X-Nexe-System': 'grep-1,grep-2', 'X-Nexe-Status': 'ok,ok',
                'X-Nexe-Retcode': '1,0'}
    result = report.parse(200, accepted, b'')
    assert not result.failed and not any(n.failed for n in result.nodes)
    refused = dict(accepted, **{'X-Nexe-Error': 'grep-1: exit 1: no match'})
    result = report.parse(422, refused, b'grep-1: exit 1: no match\n')
    assert [n.failed for n in result.nodes] == [True, False]
    body = json.dumps({'status': 200, 'nodes': [
        {'name': 'grep', 'status': 'ok', 'retcode': 1, 'failed': False}]}).encode()
    result = report.parse(200, {'Content-Type': 'application/json'}, body)
    assert not result.failed
    first = report.parse(200, accepted, b'').to_json()['nodes'][0]     # as the server's
    assert first['failed'] is False and 'verdict' not in first


def test_each_nodes_part_of_the_body_by_body_bytes() -> None:
    headers = {'X-Nexe-System': 'a,b,c', 'X-Nexe-Status': 'ok,ok,ok',
               'X-Nexe-Retcode': '0,0,0', 'X-Nexe-Body-Bytes': '3,0,4'}
    assert report.parse(200, headers, b'onefour').parts() == \
        [('a', b'one'), ('b', b''), ('c', b'four')]
    assert report.parse(200, headers, b'onefive!').parts() is None     # does not add up
    streamed = report.parse(200, headers, b'')          # passed on as it came: not held
    assert streamed.said_sizes() == [3, 0, 4] and streamed.part_sizes() is None
    headers['X-Nexe-Body-Bytes'] = '3,,4'
    assert report.parse(200, headers, b'onefour').said_sizes() is None     # one not said
    del headers['X-Nexe-Body-Bytes']
    assert report.parse(200, headers, b'onefour').parts() is None      # not said
    assert report.parse(200, headers, b'onefour').said_sizes() is None


def test_the_summary_line_of_a_large_job_gives_its_counts() -> None:
    """``zc sql`` and ``zc wait`` print ``display.summary``: over 1,000 nodes the answer
    has counts, not columns (it said ``1 node`` of a 3,001-node query, its merge)."""
    result = report.parse(200, {'X-Nexe-System': 'merge', 'X-Nexe-Nodes': '3001',
                                'X-Nexe-Failed': '0', 'X-Nexe-Status-Counts': 'ok 3001',
                                'X-Nexe-Retcode-Counts': '0 3001',
                                'X-Nexe-Cdr-Total': '6.340, 0 1 2 3'}, b'')
    assert display.summary(result, 'the answer counts its nodes') == (
        '3001 nodes: 3001 succeeded, 0 failed in 6.34 s; HTTP 200; statuses: ok 3001; exit codes: '
        '0 3001 (a large job: the answer counts its nodes)\n')


def test_replicas_that_failed_alike_are_said_once() -> None:
    # a mismatch is every replica's: its line was printed once per replica
    why = 'replicas disagree on /dev/stdout: h1 aaa; h2 bbb'
    result = report.parse(409, {'X-Nexe-System': 'm-1,m-1,r', 'X-Nexe-Status': 'mismatch,'
                                'mismatch,skipped', 'X-Nexe-Retcode': '0,0,',
                                'X-Nexe-Error': f'm-1: {why}, m-1: {why}, r: not run: m-1 '
                                                'failed'}, b'')
    assert display.failures(result.nodes) == (f'm-1: mismatch: {why}\n'
                                              'r: skipped: not run: m-1 failed\n')


def test_truncated_headers_are_noticed() -> None:
    headers = dict(HEADERS, **{'X-Nexe-System': 'wc-1,wc-2,...', 'X-Nexe-Truncated': 'true'})
    result = report.parse(200, headers, b'')
    assert result.truncated and len(result.nodes) == 2


def test_a_cut_header_zc_does_not_read_leaves_the_table_and_the_parts_whole() -> None:
    # 300 nodes: only X-Nexe-Etag passes 8192 bytes, the server sets X-Nexe-Truncated
    headers = {'X-Nexe-System': 'a,b', 'X-Nexe-Status': 'ok,ok', 'X-Nexe-Retcode': '0,0',
               'X-Nexe-Body-Bytes': '3,4', 'X-Nexe-Etag': '/dev/stdout 1f,...',
               'X-Nexe-Truncated': 'true'}
    result = report.parse(200, headers, b'onefour')
    assert not result.truncated
    assert result.parts() == [('a', b'one'), ('b', b'four')]


def test_the_failure_body_gives_the_reason_when_headers_do_not() -> None:
    headers = {k: v for k, v in HEADERS.items() if k != 'X-Nexe-Error'}
    result = report.parse(422, headers, b'wc-3: fault: SIGSEGV at 0x0\n')
    assert result.nodes[2].error == 'fault: SIGSEGV at 0x0'


def test_the_failure_bodys_whole_line_wins_over_the_headers_comma_list() -> None:
    headers = {'X-Nexe-System': 'py', 'X-Nexe-Status': 'ok', 'X-Nexe-Retcode': '1',
               'X-Nexe-Error': 'py: exit 1: KeyError: (1, 2)'}
    result = report.parse(422, headers, b'py: exit 1: KeyError: (1, 2)\n')
    assert result.nodes[0].error == 'exit 1: KeyError: (1, 2)'
    assert report.parse(422, headers, b'').nodes[0].error == 'exit 1: KeyError: (1'


def test_stderr_sections_of_a_failure_body_go_to_their_node() -> None:
    body = (b'wc-2: exit 1: ValueError: bad\nwc-3: fault: SIGSEGV\n'
            b'\n--- stderr of wc-2 (its end) ---\nTraceback\nValueError: bad\n'
            b'\n--- stderr of wc-3 (its end) ---\nsegv\n')
    headers = {k: v for k, v in HEADERS.items() if k != 'X-Nexe-Error'}
    result = report.parse(422, headers, body)
    assert [n.stderr for n in result.nodes] == ['', 'Traceback\nValueError: bad\n', 'segv\n']
    assert result.nodes[1].error == 'exit 1: ValueError: bad'
    text = display.failures(result.nodes)
    assert 'wc-2: exit 1: ValueError: bad\n  | Traceback\n  | ValueError: bad\n' in text


def test_the_json_report_gives_each_nodes_object_and_stderr() -> None:
    body = json.dumps({'status': 422, 'seconds': 1.5, 'nodes': [
        {'name': 'a-1', 'status': 'ok', 'retcode': 2, 'host': 'h:1/d', 'seconds': 0.25,
         'object': 'swift://AUTH_t/c/o1', 'stderr': 'Traceback\nZeroDivisionError\n',
         'accounting': {'fuel': 7, 'channels': {'/dev/stdin': {'read_bytes': 5},
                                                '/dev/stdout': {'write_bytes': 3}}}},
        {'name': 'a-2', 'status': 'ok', 'retcode': 0, 'stderr': 'warn', 'object': None}]})
    result = report.parse(422, {'Content-Type': 'application/json'}, body.encode())
    first, second = result.nodes
    assert (first.object, first.fuel, first.bytes_in, first.bytes_out, first.retcode) == \
        ('swift://AUTH_t/c/o1', 7, 5, 3, 2)
    assert first.stderr.endswith('ZeroDivisionError\n') and first.failed
    assert second.stderr == 'warn' and not second.failed
    assert second.object == ''
    assert result.to_json() == json.loads(body) and result.seconds == 1.5


def test_an_answer_without_nodes_keeps_the_whole_error_body() -> None:
    body = b'Invalid device stdn in wc: valid names are stdin, stdout, ' + b'x' * 200 + b'\n'
    result = report.parse(400, {'Content-Type': 'text/plain'}, body)
    assert result.failed and result.nodes == []
    assert result.to_json()['error'] == body.decode()
    assert body.decode() in display.report(result)


@pytest.mark.parametrize('status, how', [('499 Client Disconnect', 'cancelled'),
                                         ('503 Service Unavailable', 'lost'),
                                         ('503 Service Unavailable', 'unstored')])
def test_a_deferred_job_that_did_not_end_is_not_said_refused(status: str, how: str) -> None:
    # a cancelled (or lost) job's stored result has no node: it was shown as
    # "the job was refused (HTTP 499), nothing ran", which it was not
    text = 'stopped by a DELETE of its state (zc cancel) after 2.0 s: 1/3 nodes done, ...'
    stored = json.dumps({'Status': status, 'X-Nexe-Status': how, 'X-Nexe-Error': text})
    result = report.parse_stored(stored.encode(), text.encode() + b'\n')
    assert (result.stopped, result.failed) == (how, True)
    assert display.report(result) == f'zc: the job was {how}: {text}\n'


def test_a_job_refused_by_the_auth_says_which_credentials_to_check() -> None:
    page = b'<html><h1>Unauthorized</h1><p>This server could not verify that you are ...'
    assert display.report(report.parse(401, {}, page)) == (
        'zc: the job was refused (HTTP 401), nothing ran:\n' + display.REFUSED + '\n')
    ours = b'Unauthorized: a valid token is needed to execute jobs in swift://AUTH_t\n'
    assert ours.decode() in display.report(report.parse(401, {}, ours))


def test_a_refusal_that_names_no_failed_node_shows_the_body() -> None:
    headers = {'X-Nexe-System': 'a', 'X-Nexe-Status': 'ok', 'X-Nexe-Retcode': '0'}
    result = report.parse(422, headers, b'a: its message/cgi output is not valid: no blank line\n')
    assert result.failed
    assert 'HTTP 422:\na: its message/cgi output is not valid' in display.report(result)


def test_a_stored_deferred_result_is_read_like_an_answer() -> None:
    stored = json.dumps({'Status': '200 OK', **HEADERS}).encode()
    result = report.parse_stored(stored, b'body')
    assert result.status == 200 and len(result.nodes) == 3 and result.body == b'body'
    # the proxy names each node's object next to the headers (not a header itself)
    stored = json.dumps({'Status': '200 OK', **HEADERS, 'Objects': {
        'wc-1': 'swift://AUTH_a/logs/a.txt', 'wc-3': 'swift://AUTH_a/logs/c.txt'}}).encode()
    result = report.parse_stored(stored, b'body')
    assert [n.object for n in result.nodes] == ['swift://AUTH_a/logs/a.txt', '',
                                                'swift://AUTH_a/logs/c.txt']
    assert result.nodes[0].status == 'ok' and result.nodes[2].status == 'fault'


@pytest.mark.parametrize('state, text', [
    ({'state': 'running'}, 'checking the job'),
    ({'nodes': {'total': 300, 'done': 118, 'failed': 2, 'running': 64}, 'bytes': {'out': 1 << 20},
      'job': 1}, '120/300 nodes done, 2 failed, 64 running, 1.0M out'),
    ({'nodes': {'total': 4, 'done': 0, 'failed': 0, 'running': 4}, 'bytes': {'out': 0},
      'job': 2}, '0/4 nodes done, 0 failed, 4 running, 0 out (job 2 of a chain)'),
])
def test_a_deferred_jobs_progress_for_people(state: dict, text: str) -> None:
    assert display.counts(state) == text


# -- what is printed -------------------------------------------------------------------------

def test_the_table_has_a_row_per_node_and_failures_under_it() -> None:
    result = report.parse(200, HEADERS, b'')
    result.nodes[0].object = 'logs/a.txt'
    result.nodes[1].stderr = ''.join(f'line {i}\n' for i in range(30))
    text = display.report(result)
    lines = text.splitlines()
    assert lines[0].split() == list(display.COLUMNS)
    assert lines[1].split() == ['wc-1', 'logs/a.txt', '127.0.0.1:6203/d0', 'ok', '0', '2,000',
                                '292', '24', '0.10']
    assert lines[3].split()[:5] == ['wc-3', '-', '-', 'fault', '-']
    assert 'wc-2: exit 1: bad input' in text
    assert '  | line 29' in text and '  | line 9\n' not in text      # the last 20 lines
    assert 'wc-3: fault: SIGSEGV at 0x0 (null read)' in text
    assert lines[-1] == '3 nodes: 1 succeeded, 2 failed in 0.50 s; HTTP 200'


def test_a_node_that_ran_well_but_whose_output_was_not_stored_says_only_why() -> None:
    node = report.NodeResult('rep-1', 'ok', 0, error='could not store swift://AUTH_t/c/0.x: '
                             'Swift answered 413 Request Entity Too Large: Upload exceeds quota.')
    node.verdict = True
    assert display.failures([node]) == f'rep-1: {node.error}\n'     # not "rep-1: ok: could..."


@pytest.mark.parametrize('stderr, shown', [
    ('bad input\n', ''), ('input\n', '  | input\n'), ('  \n', '  |   \n')])
def test_a_stderr_line_is_hidden_only_when_it_is_the_errors_last_part(
        stderr: str, shown: str) -> None:
    # it was hidden when the error merely ended with it, or when it was blank
    node = report.NodeResult('wc-1', 'ok', 1, error='exit 1: bad input', stderr=stderr)
    assert display.failures([node]) == 'wc-1: exit 1: bad input\n' + shown


def test_a_failures_status_is_said_once() -> None:
    node = report.NodeResult('mem-1', 'memory', 1, error='memory: memory limit of 268435456 '
                             'bytes reached')
    assert display.failures([node]) == 'mem-1: memory, exit 1: memory limit of 268435456 ' \
        'bytes reached\n'                                # not "memory, exit 1: memory: ..."


def test_columns_line_up() -> None:
    nodes = [report.NodeResult('a', 'ok', 0, fuel=1), report.NodeResult('long-name', 'ok', 0,
                                                                         fuel=1234567)]
    lines = display.table(nodes).splitlines()
    fuel_end = lines[0].index('FUEL') + len('FUEL')
    assert lines[2].split()[5] == '1,234,567'
    assert [line[:fuel_end].rstrip()[-1] for line in lines] == ['L', '1', '7']   # right-aligned
    assert lines[1].index('ok') == lines[2].index('ok') == lines[0].index('STATUS')


def test_columns_line_up_on_a_terminal_after_wide_and_combining_names() -> None:
    # 日本 takes four columns of a terminal, cafe\u0301 four: counted by len, the
    # columns after such an object name were out of line
    nodes = [report.NodeResult(f'n{i}', 'ok', 0, host='h') for i in range(3)]
    for node, name in zip(nodes, ('c/日本#1?.csv', 'c/cafe\u0301.csv', 'c/plain.csv'),
                          strict=True):
        node.object = name
    lines = display.table(nodes).splitlines()
    assert [display.width(line[:line.index(' h ')]) for line in lines[1:]] == \
        [display.width(lines[0][:lines[0].index('SERVER')]) - 1] * 3
    assert display.width('日本') == 4 and display.width('cafe\u0301') == 4


@pytest.mark.parametrize('n, text', [(None, '-'), (812, '812'), (12700, '12.4K'),
                                     (3 << 20, '3.0M')])
def test_sizes_for_people(n, text) -> None:
    assert display.size(n) == text


def test_progress_is_drawn_only_on_a_terminal() -> None:
    class Stream(io.StringIO):
        def __init__(self, tty: bool) -> None:
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    for tty in (False, True):
        stream = Stream(tty)
        with display.Progress('running 3 nodes', lambda: '1.0K received', stream,
                              interval=0.01) as progress:
            while tty and 'received' not in stream.getvalue():
                pass
        assert progress.line().startswith('running 3 nodes: ')
        assert ('\r' in stream.getvalue()) == tty
        assert not tty or stream.getvalue().endswith('\r')      # the line is cleared


# -- apps and local runs ---------------------------------------------------------------------

def test_new_writes_a_skeleton_that_bundle_checks(tmp_path: Path, guest) -> None:
    root = zapps.new('hello', tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ['Makefile', 'hello.c', 'hello.py',
                                                      'zapp.yaml']
    assert 'musl-gcc' in (root / 'Makefile').read_text()
    with pytest.raises(jobs.BuildError, match='exists already'):
        zapps.new('hello', tmp_path)
    with pytest.raises(jobs.BuildError, match=r'nothing matches bin/hello \(run make first'):
        zapps.bundle(root)
    (root / 'bin').mkdir()
    (root / 'bin' / 'hello').write_bytes(guest(root / 'hello.c').read_bytes())
    path, checked = zapps.bundle(root)
    assert checked == ['bin/hello: valid program', 'hello.py: Python compiles']
    job, files = jobs.read_zapp(path.read_bytes(), str(path))
    assert sorted(files) == ['bin/hello', 'hello.py'] and job[0]['exec'] == {'path': 'bin/hello'}


def test_bundle_refuses_an_invalid_program_or_a_broken_script(tmp_path: Path, guest) -> None:
    root = zapps.new('app', tmp_path)
    (root / 'bin').mkdir()
    for bad in (guest('wrmsr').read_bytes(), b'\x7fELF, not really a program'):
        (root / 'bin' / 'app').write_bytes(bad)
        with pytest.raises(jobs.BuildError, match='bin/app: invalid'):
            zapps.bundle(root)
    (root / 'bin' / 'app').write_bytes(guest(root / 'app.c').read_bytes())
    (root / 'app.py').write_text('def broken(:\n')
    with pytest.raises(jobs.BuildError, match='app.py:1'):
        zapps.bundle(root)
    assert not (root / 'app.zapp').exists()


def test_bundle_names_a_misspelt_key_of_zapp_yaml(tmp_path: Path) -> None:
    """``bundel:`` was ignored: the zapp bundled nothing and said only that its program
    was not bundled."""
    root = zapps.new('app', tmp_path)
    text = (root / 'zapp.yaml').read_text()
    (root / 'zapp.yaml').write_text(text.replace('\nbundle:', '\nbundel:'))
    with pytest.raises(jobs.BuildError, match='Unknown key "bundel" in .*zapp.yaml, did you '
                                              'mean "bundle"'):
        zapps.bundle(root)
    assert not (root / 'app.zapp').exists()


def test_bundle_outside_an_app_says_how_to_make_one(tmp_path: Path) -> None:
    # it said 'cannot read .../zapp.yaml: No such file or directory' and no more
    with pytest.raises(jobs.BuildError, match=r'zapp.yaml: No such file or directory \(run zc '
                                              r'bundle in an app directory, or make one: zc new '
                                              r'NAME\)$'):
        zapps.bundle(tmp_path)


def test_bundle_of_a_directory_bundles_its_files(tmp_path: Path) -> None:
    # bundle: [main.py, mylib] wrote a zapp without mylib/ (a directory matched and was
    # passed over): every node then failed "No module named 'mylib'"
    root = tmp_path / 'app'
    (root / 'mylib' / 'sub').mkdir(parents=True)
    (root / 'mylib' / '__init__.py').write_text('X = 1\n')
    (root / 'mylib' / 'sub' / 'deep.py').write_text('Y = 2\n')
    (root / 'main.py').write_text('import mylib\n')
    (root / 'zapp.yaml').write_text('name: app\njob:\n  - name: a\n    exec: {path: '
                                    '"file://python3:python3", args: /main.py}\n'
                                    'bundle: [main.py, mylib]\n')
    path, checked = zapps.bundle(root)
    _, files = jobs.read_zapp(path.read_bytes(), str(path))
    assert sorted(files) == ['main.py', 'mylib/__init__.py', 'mylib/sub/deep.py']
    assert 'mylib/sub/deep.py: Python compiles' in checked


def test_bundle_refuses_a_job_whose_program_is_not_bundled(tmp_path: Path) -> None:
    root = tmp_path / 'app'
    root.mkdir()
    (root / 'zapp.yaml').write_text('name: app\njob:\n  - name: a\n    exec: {path: bin/nope}\n'
                                    'bundle: []\n')
    with pytest.raises(jobs.BuildError, match='runs bin/nope, which is not bundled'):
        zapps.bundle(root)


@pytest.mark.parametrize('typo, meant', [('stdn', 'stdin'), ('ouptut', 'output')])
def test_bundle_names_a_misspelt_device(tmp_path: Path, typo: str, meant: str) -> None:
    """Every device name was taken for a system image the cluster might have, so
    ``{name: stdn}`` bundled and only the cluster refused it."""
    root = tmp_path / 'app'
    root.mkdir()
    (root / 'zapp.yaml').write_text(f'name: app\njob:\n  - name: a\n    exec: {{path: bin/a}}\n'
                                    f'    devices: [{{name: {typo}}}, {{name: stdout}}]\n'
                                    'bundle: []\n')
    with pytest.raises(jobs.BuildError, match=f'Unknown device "{typo}" in a, did you mean '
                                              f'"{meant}"'):
        zapps.bundle(root)


def test_a_device_of_an_image_the_cluster_has_is_not_a_typo() -> None:
    """A name close to no standard device, or the image of the group's program, is an
    image only the cluster knows (the server refuses it if it has none)."""
    job = [{'name': 'a', 'exec': {'path': 'file://inputs:run'},
            'devices': [{'name': 'inputs'}, {'name': 'geodata'}, {'name': 'stdout'}]}]
    assert jobs.system_images(job) == ['geodata', 'inputs']


def test_a_registered_app_mounts_the_deployed_zapp_as_its_image() -> None:
    job = [{'name': 'a', 'exec': {'path': 'bin/a'}, 'devices': [{'name': 'stdin'}]}]
    out = zapps.registered_job(job, 'swift://AUTH_t/apps/a.zapp')
    assert out[0]['devices'] == [{'name': 'stdin'},
                                 {'name': 'image', 'path': 'swift://AUTH_t/apps/a.zapp'}]
    assert job[0]['devices'] == [{'name': 'stdin'}]          # the original is untouched


def test_a_registered_app_keeps_its_devices_spelling_and_image() -> None:
    # a file_list group got a devices key too (refused by the parser: every zc open of
    # the type failed), {"device": "image"} a second image, a non-dict group a traceback
    url = 'swift://AUTH_t/apps/a.zapp'
    job = [{'name': 'a', 'exec': {'path': 'bin/a'}, 'file_list': [{'device': 'stdin'}]},
           {'name': 'b', 'exec': {'path': 'bin/b'}, 'devices': [{'device': 'image'}]}]
    out = zapps.registered_job(job, url)
    assert out[0] == {**job[0], 'file_list': [{'device': 'stdin'}, {'name': 'image',
                                                                     'path': url}]}
    assert out[1]['devices'] == [{'device': 'image', 'path': url}]
    parse_job(out, "AUTH_t")
    with pytest.raises(jobs.BuildError, match="node 2 of the zapp's job is not a JSON object"):
        zapps.registered_job([job[0], 'b'], url)


def test_a_registered_app_keeps_its_stored_image_named_in_upper_case() -> None:
    # SWIFT://~/img/x.tar (a swift:// URL: schemes are case-insensitive) was replaced
    job = [{'name': 'a', 'exec': {'path': 'bin/a'},
            'devices': [{'name': 'image', 'path': 'SWIFT://~/img/x.tar'}]}]
    out = zapps.registered_job(job, 'swift://AUTH_t/apps/a.zapp')
    assert out[0]['devices'] == [{'name': 'image', 'path': 'SWIFT://~/img/x.tar'}]


def test_a_local_map_to_a_missing_directory_says_so(tmp_path: Path) -> None:
    run = local.LocalRun(local.parse_maps([f'logs={tmp_path}/nowhere']), tmp_path)
    with pytest.raises(jobs.BuildError, match=f'--map swift://~/logs={tmp_path}/nowhere: '
                                              f'{tmp_path}/nowhere is not a directory'):
        run.list_objects(local.ACCOUNT, 'logs')
    (tmp_path / 'here').mkdir()
    (tmp_path / 'here' / 'a.txt').write_text('a')
    assert local.LocalRun({'logs': tmp_path / 'here'}, tmp_path).list_objects(
        local.ACCOUNT, 'logs') == ['a.txt']


def test_an_unmapped_container_is_named_as_the_user_wrote_it(tmp_path: Path) -> None:
    # "swift://local/sales is not mapped": the user wrote swift://~/sales, and "local"
    # is nothing of theirs
    job = [{'name': 'a', 'exec': {'path': 'swift://~/d/prog'},
            'devices': [{'name': 'stdin', 'path': 'swift://~/sales/*.csv'}]}]
    payload = jobs.Payload(json.dumps(job).encode(), jobs.JSON_TYPE, job)
    with pytest.raises(jobs.BuildError) as e:
        local.run(payload, 'job.json', {'d': tmp_path})
    assert str(e.value) == 'swift://~/sales is not mapped: add --map swift://~/sales=DIR'
    # nor is a mapped one that holds no match (it said swift://local/d/*.csv)
    job[0]['devices'][0]['path'] = 'swift://~/d/*.csv'
    payload = jobs.Payload(json.dumps(job).encode(), jobs.JSON_TYPE, job)
    with pytest.raises(jobs.BuildError) as e:
        local.run(payload, 'job.json', {'d': tmp_path})
    assert str(e.value) == 'job.json: No objects found in path swift://~/d/*.csv in a'


@pytest.mark.parametrize('missing, says', [
    ('in.txt', 'swift://~/d/in.txt (device stdin of a) is not here: no file {d}/in.txt '
               '(--map swift://~/d={d})'),
    ('prog', 'swift://~/d/prog (the program of a) is not here: no file {d}/prog '
             '(--map swift://~/d={d})'),
])
def test_a_local_run_of_a_mapped_object_that_is_not_there_names_it(tmp_path: Path, missing: str,
                                                                   says: str) -> None:
    # "a: zvm failed: zvm: cannot open in.txt": not which object, nor which --map
    d = tmp_path / 'd'
    d.mkdir()
    for name in {'in.txt', 'prog'} - {missing}:
        (d / name).write_text('x')
    job = [{'name': 'a', 'exec': {'path': 'swift://~/d/prog'},
            'devices': [{'name': 'stdin', 'path': 'swift://~/d/in.txt'}, {'name': 'stdout'}]}]
    payload = jobs.Payload(json.dumps(job).encode(), jobs.JSON_TYPE, job)
    with pytest.raises(jobs.BuildError) as e:
        local.run(payload, 'job.json', {'d': d})
    assert str(e.value) == says.format(d=d)


@pytest.mark.parametrize('command', [['run', 'job.json'], ['wait', 'job-1'], ['result', 'job-1']])
def test_a_split_dir_that_is_a_file_is_a_usage_error_before_any_request(
        tmp_path: Path, command: list[str], capsys) -> None:
    # "zc: counts: File exists" came after the job ran: its output was lost, no table shown
    (tmp_path / 'counts').write_text('x')
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*command, '--split', str(tmp_path / 'counts')])
    assert e.value.code == 2
    assert (f'argument --split: {tmp_path}/counts is a file, not a directory: name a new or '
            'existing directory') in capsys.readouterr().err
    assert build_parser().parse_args([*command, '--split', str(tmp_path / 'new')]).split == \
        tmp_path / 'new'


def test_a_split_dir_that_cannot_be_made_is_a_usage_error_before_any_request(
        tmp_path: Path, monkeypatch, capsys) -> None:
    # "zc: /var/parts: Permission denied" came after the job ran: its output was lost
    (tmp_path / 'f').write_text('x')
    locked = tmp_path / 'locked'
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, 'access', lambda p, mode: Path(p) != locked and real(p, mode))
    for split, says in ((tmp_path / 'f' / 'parts', f'{tmp_path}/f/parts cannot be made: '
                                                   f'{tmp_path}/f is a file, not a directory'),
                        (locked / 'a' / 'b', f'{locked}/a/b: {locked} is not writable by you: '
                                             'name a directory you can write in'),
                        (locked, f'{locked}: {locked} is not writable by you')):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(['run', 'job.json', '--split', str(split)])
        assert e.value.code == 2
        assert f'argument --split: {says}' in capsys.readouterr().err
    assert build_parser().parse_args(['run', 'job.json', '--split', 'new/sub']).split == \
        Path('new/sub')                                 # relative, not made yet: fine


def test_a_split_dir_holding_an_earlier_runs_parts_is_noted(tmp_path: Path) -> None:
    # a run of 10 nodes, then one of 2 into the same DIR: cat DIR/* mixed 8 stale parts
    # into the answer, unsaid
    from zerocloud.client import cli
    parts = tmp_path / 'parts'
    parts.mkdir()
    for i in range(1, 11):
        (parts / f'sum-{i}').write_text('old\n')
    err = io.StringIO()
    client = cli.Client(build_parser().parse_args(['run', 'job.json', '--split', str(parts),
                                                   '-q']), out=_Written(), err=err)
    result = report.parse(200, {'X-Nexe-System': 'sum-1,sum-2', 'X-Nexe-Status': 'ok,ok',
                                'X-Nexe-Body-Bytes': '2,3'}, b'a\nbb\n')
    client.write_parts(result, parts)
    assert (parts / 'sum-2').read_text() == 'bb\n'
    assert err.getvalue() == (f'zc: note: {parts} also holds 8 file(s) this job did not write '
                              "(sum-10, sum-3, sum-4 and 5 more): an earlier run's?\n")
    err.truncate(0)
    err.seek(0)
    client.write_parts(report.parse(200, {'X-Nexe-System': ','.join(f'sum-{i}' for i in
                                                                    range(1, 11)),
                                          'X-Nexe-Status': ','.join(['ok'] * 10),
                                          'X-Nexe-Body-Bytes': ','.join(['1'] * 10)},
                                    b'x' * 10), parts)
    assert err.getvalue() == ''                     # every file its own: nothing to say


def test_split_of_a_large_job_says_how_to_get_a_file_per_node(tmp_path: Path) -> None:
    # a job of 3001 nodes is answered with counts: --split could only say "all of it on
    # stdout", though a file per node is what the user asked for
    from zerocloud.client import cli
    out, err = _Written(), io.StringIO()
    client = cli.Client(build_parser().parse_args(['run', 'job.json', '--split',
                                                   str(tmp_path / 'parts')]), out=out, err=err)
    result = report.parse(200, {'X-Nexe-Nodes': '3001', 'X-Nexe-Failed': '0',
                                'X-Nexe-Status-Counts': 'ok 3001'}, b'1\n' * 3001)
    client.write_parts(result, tmp_path / 'parts')
    assert b''.join(out.writes) == b'1\n' * 3001
    assert not (tmp_path / 'parts').exists()
    assert err.getvalue() == (
        "zc: --split: a job of more than 1,000 nodes is answered without each node's size "
        '(X-Nexe-Body-Bytes), so its output cannot be split: all of it is on stdout. For a '
        "file per node, run it again with --out 'swift://~/res/*.out' instead of --split "
        "(each node's stdout stored as its own object; in a job file, a \"path\" on each "
        f'stdout device), then: swift download res -D {tmp_path}/parts\n')


@pytest.mark.parametrize('given, noted', [('piped', True), ('file', True), ('empty', False),
                                           ('on', False)])
def test_run_says_that_this_machines_stdin_is_not_sent(tmp_path: Path, given: str,
                                                       noted: bool) -> None:
    # zc run ./lines < numbers.txt answered "0 lines" with HTTP 200: the data was not sent
    from zerocloud.client import cli
    (tmp_path / 'prog').write_bytes(b'\x7fELF' + b'\0' * 60)
    (tmp_path / 'data').write_text('1\n2\n' if given != 'empty' else '')
    argv = ['run', str(tmp_path / 'prog')] + (['--on', 'swift://~/c/o'] if given == 'on' else [])
    err = io.StringIO()
    with open(tmp_path / 'data', 'rb') as data:
        if given == 'piped':
            proc = subprocess.Popen(['cat', str(tmp_path / 'data')], stdout=subprocess.PIPE)
            stdin = proc.stdout
        else:
            stdin = data
        cli.Client(build_parser().parse_args(argv), err=err, stdin=stdin).payload(remote=True)
        if given == 'piped':
            proc.wait()
            proc.stdout.close()
    said = err.getvalue()
    assert said == ("zc: note: the job's stdin is empty: zc does not send this machine's stdin "
                    '(upload the data and give --on swift://~/<container>/<object>, or run it '
                    'here: zc local run ... --stdin FILE)\n' if noted else '')


def test_local_maps_name_containers() -> None:
    assert local.parse_maps(['swift://~/data=./d', 'out=o']) == {'data': Path('d'),
                                                                 'out': Path('o')}
    with pytest.raises(ValueError, match='expected swift://~/CONTAINER=DIR'):
        local.parse_maps(['swift://~/data'])


def test_local_run_of_a_program_without_on_reads_stdin_from_the_file(tmp_path: Path, guest,
                                                                      capsys, monkeypatch) -> None:
    # zc local run PROGRAM --stdin FILE ran with an empty stdin (IN 0) and succeeded: the
    # job zc made declared no stdin without a path to read it
    from zerocloud.client import cli
    (tmp_path / 'cat').write_bytes(guest('cat').read_bytes())
    (tmp_path / 'in.txt').write_text('apple,3\npear,4\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main(['local', 'run', './cat', '--stdin', 'in.txt', '-q']) == 0
    assert capsys.readouterr().out == 'apple,3\npear,4\n'


def test_local_run_of_a_failed_exit_says_its_stderrs_last_line_as_the_cluster_does(
        tmp_path: Path, guest, capsys, monkeypatch) -> None:
    # zc local run said "fails: exit 3" where zc run says "fails: exit 3: <last line of
    # its stderr>" (the exception of a script): the same failure read differently here
    from zerocloud.client import cli
    source = tmp_path / 'fails.c'
    source.write_text('#include <stdio.h>\nint main(void){fputs("reading\\nno such key: '
                      'region\\n", stderr); return 3;}\n')
    (tmp_path / 'fails').write_bytes(guest(source).read_bytes())
    monkeypatch.chdir(tmp_path)
    assert cli.main(['local', 'run', './fails']) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert 'fails: exit 3: no such key: region\n  | reading\n  | no such key: region\n' in err


def test_the_session_lists_a_container_of_another_account_as_you(monkeypatch) -> None:
    # it listed none: zc run --on 'swift://AUTH_other/c/*' showed "-" for every node's object
    from zerocloud.client import session as zsession
    asked = []

    def get_container(url, token, container, prefix=None, http_conn=None, full_listing=False):
        asked.append((url, token, container, prefix, http_conn, full_listing))
        return {}, [{'name': 'a.csv'}, {'subdir': 'dir/'}]
    monkeypatch.setattr(zsession, 'get_container', get_container)
    ses = object.__new__(zsession.Session)
    ses.conn = SimpleNamespace(url='http://h:8080/v1/AUTH_me', token='tok',
                               http_connection=lambda url: ('parsed', url))
    assert list(ses.list_objects('AUTH_other', 'c')) == ['a.csv', 'dir/']
    assert list(ses.list_objects('AUTH_other', 'c', 'part-1')) == ['a.csv', 'dir/']
    assert asked == [('http://h:8080/v1/AUTH_other', 'tok', 'c', prefix,
                      ('parsed', 'http://h:8080/v1/AUTH_other'), True)
                     for prefix in (None, 'part-1')]


def test_debug_shows_zcs_own_requests_as_curl_commands(monkeypatch, caplog) -> None:
    # zc --help offers swift's --debug ("Show the curl commands ..."): it showed nothing,
    # the execute, GET, HEAD and PUT requests going around swiftclient's logging
    import logging

    from zerocloud.client import cli
    from zerocloud.client import session as zsession

    class Resp:
        status, reason = 200, 'OK'

        def getheaders(self):
            return [('X-Nexe-Status', 'ok')]

    http = SimpleNamespace(request=lambda *a: None, getresponse=Resp)
    ses = object.__new__(zsession.Session)
    ses.conn = SimpleNamespace(url='http://h:8080/v1/AUTH_me', token='secret-token',
                               http_connection=lambda url: ('parsed', http))
    ses._given, ses._http = None, None
    cli._http_logging(build_parser().parse_args(['--debug', 'status', 'job-1']))
    try:
        with caplog.at_level(logging.DEBUG, logger='swiftclient'):
            ses.execute(b'[]', 'application/json', {})
        text = caplog.text
        assert 'REQ: curl -i http://h:8080/v1/AUTH_me -X POST' in text
        assert 'X-Zerovm-Execute: 1.0' in text and 'secret-token' not in text
        assert "RESP STATUS: 200 OK" in text
    finally:
        cli.logger_settings['redact_sensitive_headers'] = True
        logging.getLogger().setLevel(logging.WARNING)


def test_a_refused_token_without_credentials_is_sent_again_for_the_server_to_refuse(
        monkeypatch) -> None:
    # OS_STORAGE_URL + OS_AUTH_TOKEN of another cluster (or expired): the listing's 401 made
    # swiftclient drop the token, and the next request tried to log in with no credentials:
    # "zc: No tenant specified", not the server's 401 (which zc explains)
    from swiftclient.client import Connection

    from zerocloud.client import session as zsession
    monkeypatch.setattr(zsession, 'get_conn', lambda options: Connection(
        preauthurl='http://h:8080/v1/AUTH_me', preauthtoken='AUTH_tkold'))
    ses = zsession.Session({})
    ses.conn.url = ses.conn.token = None         # what swiftclient's retry does on a 401
    assert ses._auth() == ('http://h:8080/v1/AUTH_me', 'AUTH_tkold')
    # and any request's 401 says what to fix, not the auth's HTML page (zc status, deploy)
    page = b'<html><h1>Unauthorized</h1><p>This server could not verify ...</p></html>'
    for body in (page, b''):
        assert str(zsession.ServerError('PUT x', 401, 'Unauthorized', body)) == \
            f'PUT x: 401 Unauthorized\n{display.REFUSED}'


def test_a_malformed_map_is_a_usage_error(tmp_path: Path, capsys) -> None:
    # client.md: exit status 2 for a bad option, before anything is read or run
    from zerocloud.client import cli
    assert cli.main(['local', 'run', str(tmp_path / 'job.json'), '--map', 'here/demo']) == \
        cli.EXIT_USAGE
    assert 'zc: --map here/demo: expected swift://~/CONTAINER=DIR' in capsys.readouterr().err


def test_waits_timeout_is_not_swifts_http_timeout() -> None:
    # "zc wait ID --timeout 0.5" gave up reading a result that took longer than 0.5 s
    # ("Read timed out", exit 1), and "zc -T 30 wait ID" lost the -T
    from zerocloud.client.cli import _auth_options
    opts = build_parser().parse_args(['wait', 'job-1', '--timeout', '0.5'])
    assert opts.wait_timeout == 0.5 and _auth_options(opts)['timeout'] is None
    opts = build_parser().parse_args(['-T', '30', 'wait', 'job-1'])
    assert opts.wait_timeout is None and _auth_options(opts)['timeout'] == 30


def test_the_command_line_takes_swift_auth_options() -> None:
    opts = build_parser().parse_args(['-A', 'http://a/auth/v1.0', '-U', 'u', '-K', 'k', 'run',
                                      '--script', 's.py', '--on', 'swift://~/c/*', '-q'])
    assert (opts.auth, opts.user, opts.key, opts.command, opts.quiet_cmd) == \
        ('http://a/auth/v1.0', 'u', 'k', 'run', True)


def test_objects_in_your_account_are_shown_without_it() -> None:
    from zerocloud.client.cli import Client
    client = Client(build_parser().parse_args(['status', 'job-1']))
    assert client.short('swift://AUTH_t/c/o') == 'swift://AUTH_t/c/o'    # no session yet
    client._session = SimpleNamespace(account='AUTH_t')
    assert [client.short(n) for n in ('swift://AUTH_t/c/o', 'AUTH_t/c/o', '/AUTH_t/c/o',
                                      'swift://AUTH_u/c/o')] == ['c/o', 'c/o', 'c/o',
                                                                 'swift://AUTH_u/c/o']


def test_an_object_the_server_names_by_url_is_shown_by_its_name_as_the_listing_gives_it(
        ) -> None:
    # the JSON report's "object" is a URL (quoted), the client's own expansion a name:
    # both are shown the same, and a name with a literal %25 is not decoded twice
    from zerocloud.client.cli import Client
    from zerocloud.job import SwiftPath
    client = Client(build_parser().parse_args(['status', 'job-1']))
    client._session = SimpleNamespace(account='AUTH_t')
    assert client.short('swift://AUTH_t/odd/a%20b.csv') == 'odd/a b.csv'
    assert client.short('swift://AUTH_t/odd/%C3%A9%20100%2525.csv') == 'odd/\u00e9 100%25.csv'
    assert client.show(SwiftPath('AUTH_t', 'odd', 'é 100%25.csv')) == 'odd/\u00e9 100%25.csv'
    assert client.short('swift://AUTH_u/odd/a%20b.csv') == 'swift://AUTH_u/odd/a b.csv'


CREDENTIALS = ('ST_AUTH', 'ST_USER', 'ST_KEY', 'ST_AUTH_VERSION', 'OS_AUTH_URL', 'OS_USERNAME',
               'OS_PASSWORD', 'OS_STORAGE_URL', 'OS_AUTH_TOKEN')


def clear_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials from the environment the tests run in (as swift reads them)."""
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)


def test_keystone_and_v1_credentials_come_as_for_the_swift_command(monkeypatch) -> None:
    from zerocloud.client.cli import Client
    clear_credentials(monkeypatch)
    keystone = Client(build_parser().parse_args([
        '--os-auth-url', 'http://keystone/v3', '--os-username', 'u', '--os-password', 'p',
        '--os-project-name', 'proj', '--os-user-domain-name', 'dom',
        '--os-project-domain-name', 'dom', 'status', 'job-1'])).session.conn
    assert (keystone.authurl, keystone.user, keystone.key, keystone.auth_version) == \
        ('http://keystone/v3', 'u', 'p', '3')
    assert keystone.os_options['project_name'] == 'proj'
    monkeypatch.setenv('ST_AUTH', 'http://proxy/auth/v1.0')
    monkeypatch.setenv('ST_USER', 'test:tester')
    monkeypatch.setenv('ST_KEY', 'testing')
    v1 = Client(build_parser().parse_args(['status', 'job-1'])).session.conn
    assert (v1.authurl, v1.user, v1.key, v1.auth_version) == \
        ('http://proxy/auth/v1.0', 'test:tester', 'testing', '1.0')


def test_credentials_given_in_part_say_which_part_is_missing(monkeypatch) -> None:
    # ST_USER= (empty) beside ST_AUTH and ST_KEY said only "set ST_AUTH, ST_USER and ST_KEY"
    from zerocloud.client.cli import Client, Usage

    def said() -> str:
        with pytest.raises(Usage) as e:
            _ = Client(build_parser().parse_args(['status', 'job-1'])).session
        return str(e.value)
    clear_credentials(monkeypatch)
    monkeypatch.setenv('ST_AUTH', 'http://proxy/auth/v1.0')
    monkeypatch.setenv('ST_USER', '')
    monkeypatch.setenv('ST_KEY', 'testing')
    rest = ('set ST_AUTH, ST_USER and ST_KEY (or OS_AUTH_URL, OS_USERNAME, OS_PASSWORD...; or '
            'OS_STORAGE_URL and OS_AUTH_TOKEN), or give -A, -U, -K as for the swift command')
    assert said() == 'no credentials: the user (ST_USER, OS_USERNAME or -U) is not set; ' + rest
    monkeypatch.delenv('ST_KEY')
    assert said() == ('no credentials: the user (ST_USER, OS_USERNAME or -U) and the key '
                      '(ST_KEY, OS_PASSWORD or -K) are not set; ' + rest)
    clear_credentials(monkeypatch)                  # none at all: as before
    assert said() == 'no credentials: ' + rest


def test_an_account_named_on_the_command_line_wins_over_a_token_in_the_environment(
        monkeypatch) -> None:
    # after eval "$(swift auth)", zc -U test2:tester2 -K testing2 acted as the first user:
    # OS_STORAGE_URL and OS_AUTH_TOKEN of the environment won over -U/-K (swift's gotcha)
    from zerocloud.client.cli import Client, Usage
    env = {'ST_AUTH': 'http://proxy/auth/v1.0', 'ST_USER': 'test:tester', 'ST_KEY': 'testing',
           'OS_STORAGE_URL': 'http://proxy/v1/AUTH_test', 'OS_AUTH_TOKEN': 'AUTH_tk1'}
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def conn(*argv: str):
        return Client(build_parser().parse_args([*argv, 'status', 'job-1'])).session.conn
    named = conn('-U', 'test2:tester2', '-K', 'testing2')
    assert (named.url, named.token, named.authurl, named.user, named.key) == \
        (None, None, 'http://proxy/auth/v1.0', 'test2:tester2', 'testing2')
    # with no account on the command line, the environment's token is used, as by swift
    plain = conn()
    assert (plain.url, plain.token) == ('http://proxy/v1/AUTH_test', 'AUTH_tk1')
    for name in ('ST_AUTH', 'ST_USER', 'ST_KEY'):
        monkeypatch.delenv(name)
    monkeypatch.setenv('OS_AUTH_URL', 'http://keystone/v3')
    keystone = conn('--os-username', 'u2', '--os-password', 'p2', '--os-project-name', 'p')
    assert (keystone.url, keystone.token, keystone.user) == (None, None, 'u2')
    # a token given on the command line is used; with an account there too, it is an error
    given = conn('--os-storage-url', 'http://proxy/v1/AUTH_x', '--os-auth-token', 'AUTH_tk2')
    assert (given.url, given.token) == ('http://proxy/v1/AUTH_x', 'AUTH_tk2')
    with pytest.raises(Usage, match='either --os-auth-token or'):
        conn('-U', 'test2:tester2', '-K', 'testing2', '--os-auth-token', 'AUTH_tk2')


def test_a_large_jobs_counts_and_failed_nodes_are_read_from_its_answer() -> None:
    from tests.unit.test_response import body_of, result
    from zerocloud.proxy.response import SUMMARY_NODES, respond
    results = [result(f'n{i}', b'%d\n' % i) for i in range(SUMMARY_NODES + 2)]
    results[5] = result('n5', b'', retcode=2, stderr='no such key\n')
    resp = respond(results, 2.5, False)
    body, _ = body_of(resp)
    got = report.parse(resp.status_int, dict(resp.headers), body)
    assert got.failed and got.status == 422
    assert got.summary == report.Summary(SUMMARY_NODES + 2, 1, f'ok {SUMMARY_NODES + 2}',
                                         f'0 {SUMMARY_NODES + 1}, 2 1')
    assert [(n.name, n.failed) for n in got.nodes] == [('n5', True)]
    shown = display.report(got)
    assert 'n5: exit 2: no such key\n' in shown and shown.count('no such key') == 1   # not
    # again as its stderr, which is only that line
    assert f'{SUMMARY_NODES + 2} nodes: {SUMMARY_NODES + 1} succeeded, 1 failed in 2.50 s' in shown
    assert 'refused' not in shown                   # the job ran: it is not "nothing ran"
    assert got.to_json()['summary']['nodes'] == SUMMARY_NODES + 2


def test_a_successful_large_job_is_ok_with_its_counts() -> None:
    from tests.unit.test_response import body_of, result
    from zerocloud.proxy.response import SUMMARY_NODES, respond
    resp = respond([result(f'n{i}', b'x') for i in range(SUMMARY_NODES + 1)], 1.0, False)
    body, _ = body_of(resp)
    got = report.parse(resp.status_int, dict(resp.headers), body)
    assert not got.failed and got.nodes == [] and body == b'x' * (SUMMARY_NODES + 1)
    assert f'{SUMMARY_NODES + 1} nodes: {SUMMARY_NODES + 1} succeeded, 0 failed' in \
        display.report(got)


def status_fails(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                 env: dict[str, str], port: int) -> tuple[str, str]:
    """``zc status`` with ``env`` set (``{port}`` filled in) exits 1: the server URL it
    names and what it wrote on stderr."""
    from zerocloud.client.cli import main
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(port=port))
    assert main(['status', 'job-' + '0' * 32]) == 1
    url = next(v for v in env.values() if v.startswith('http')).format(port=port)
    return url, capsys.readouterr().err


@pytest.mark.parametrize('env', [
    {'ST_AUTH': 'http://127.0.0.1:{port}/auth/v1.0', 'ST_USER': 'u', 'ST_KEY': 'k'},
    {'OS_STORAGE_URL': 'http://127.0.0.1:{port}/v1/AUTH_a', 'OS_AUTH_TOKEN': 't'},
])
def test_no_server_at_the_address_is_said_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture,
                                                      env: dict) -> None:
    # the cluster is not running: not urllib3's "Max retries exceeded ... NewConnectionError"
    import socket

    with socket.socket() as s:          # a port nothing listens on
        s.bind(('127.0.0.1', 0))
        clear_credentials(monkeypatch)
        url, err = status_fails(monkeypatch, capsys, env, s.getsockname()[1])
    assert err.startswith(f'zc: no server answers at {url}') and err.endswith(
        ': Connection refused (is the cluster running? are ST_AUTH, OS_AUTH_URL or '
        'OS_STORAGE_URL its address?)\n') and err.count('\n') == 1, err


@pytest.fixture
def plain_http(monkeypatch: pytest.MonkeyPatch):
    """A plain HTTP server answering 404 to everything (as Swift's proxy does for
    a path that is no auth URL), and a clean environment: yields its port."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'<html><h1>Not Found</h1></html>'
            self.send_response(404)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    clear_credentials(monkeypatch)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_an_auth_url_without_its_path_says_what_it_is(plain_http, monkeypatch, capsys) -> None:
    # ST_AUTH=http://host:port (no /auth/v1.0) printed the proxy's 404 page
    from zerocloud.client.cli import main
    monkeypatch.setenv('ST_AUTH', f'http://127.0.0.1:{plain_http}')
    monkeypatch.setenv('ST_USER', 'u')
    monkeypatch.setenv('ST_KEY', 'k')
    assert main(['status', 'job-' + '0' * 32]) == 1
    assert capsys.readouterr().err == (
        f'zc: Auth GET failed: 404 Not Found: http://127.0.0.1:{plain_http}/ is not an auth '
        "URL (ST_AUTH, OS_AUTH_URL or -A): v1 auth is the proxy's /auth/v1.0, e.g. "
        f"http://127.0.0.1:{plain_http}/auth/v1.0 (zerocloud-devcluster env prints the local "
        "cluster's)\n")


@pytest.mark.parametrize('env', [
    {'ST_AUTH': 'https://127.0.0.1:{port}/auth/v1.0', 'ST_USER': 'u', 'ST_KEY': 'k'},
    {'OS_STORAGE_URL': 'https://127.0.0.1:{port}/v1/AUTH_a', 'OS_AUTH_TOKEN': 't'},
])
def test_https_to_a_plain_http_server_says_http(plain_http, monkeypatch, capsys,
                                                env: dict) -> None:
    # urllib3's "Max retries exceeded ... SSLError(...WRONG_VERSION_NUMBER...)" under
    # "no server answers ... is the cluster running?", of a server that answered
    url, err = status_fails(monkeypatch, capsys, env, plain_http)
    assert err.startswith(f'zc: the server at {url}') and err.endswith(
        ' does not speak TLS: its URL (ST_AUTH, OS_AUTH_URL or OS_STORAGE_URL) likely starts '
        'with http://, not https://\n') and err.count('\n') == 1, err


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler, as in a terminal: pytest started in the background
    (``&`` in a script) inherits SIGINT ignored, and Python then leaves it ignored."""
    import signal
    started = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, started)


def test_a_ctrl_c_python_swallowed_still_stops_following(monkeypatch, capsys,
                                                         python_sigint) -> None:
    """A KeyboardInterrupt raised in a finaliser is printed and dropped by Python
    ("Exception ignored in ..."): ``zc wait`` must stop at its next poll anyway,
    not follow the job to its end."""
    import signal

    from zerocloud.client import cli
    polls = []

    def stored(self, path, output=False):
        polls.append(path)
        if len(polls) == 1:                 # Ctrl-C, swallowed where it landed
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                pass
        return None if len(polls) < 5 else 'the result'
    monkeypatch.setattr(cli.Client, 'stored', stored)
    monkeypatch.setattr(cli.Client, 'known',
                        lambda self, path, output=False: (None, {'nodes': {}}))
    monkeypatch.setattr(cli.Client, 'result_path', lambda self, job_id: job_id)
    monkeypatch.setattr(cli, 'POLL_START', 0.0)
    assert cli.main(['wait', 'job-1', '-q']) == cli.EXIT_CANCELLED
    assert len(polls) == 1
    assert 'zc: cancelled: stopped waiting; the deferred job goes on' in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored


def test_a_big_answer_goes_to_stdout_as_it_comes_not_held(monkeypatch) -> None:
    # zc run ./big --on ... > out: 460 MB of memory for a 200 MB answer (it was read whole,
    # then joined); now each chunk is written as it arrives
    from zerocloud.client import cli
    from zerocloud.client import session as zsession
    chunks = [b'a' * zsession.CHUNK, b'b' * zsession.CHUNK, b'c' * 10]
    written: list[bytes] = []

    class Out(io.BytesIO):
        def write(self, data):
            written.append(bytes(data))
            return len(data)

    class Resp:
        status, reason = 200, 'OK'

        def __init__(self):
            self.left = list(chunks)

        def getheaders(self):
            size = sum(map(len, chunks))
            return [('Content-Type', 'text/plain'), ('X-Nexe-System', 'big'),
                    ('X-Nexe-Status', 'ok'), ('X-Nexe-Retcode', '0'),
                    ('X-Nexe-Body-Bytes', str(size))]

        def read(self, n):
            # the chunk before this one was written already
            assert len(written) == len(chunks) - len(self.left)
            return self.left.pop(0) if self.left else b''

    client = cli.Client(build_parser().parse_args(['run', 'swift://~/bin/big', '--on',
                                                   'swift://~/c/o', '-q']), out=Out())
    client._session = SimpleNamespace(
        account='AUTH_t', execute=lambda *a: zsession.Answer(Resp()))
    monkeypatch.setattr(cli.Client, 'expand', lambda self, job: ({'big': 'c/o'}, 1))
    assert client.cmd_run() == 0
    assert written == chunks


def test_a_reader_that_closes_stdout_is_not_a_server_that_does_not_answer(
        monkeypatch, capsys) -> None:
    # zc run ./big ... | head -c 10 said "zc: no server answers: Broken pipe (is the
    # cluster running? ...)": BrokenPipeError is a ConnectionError; then it said
    # nothing, but its status 1 said a node had failed: now 141, as `cat` would end
    import os

    from zerocloud.client import cli

    class Closed:
        def write(self, data):
            raise BrokenPipeError(32, 'Broken pipe')

        def fileno(self):
            return devnull

    devnull = os.open(os.devnull, os.O_WRONLY)
    monkeypatch.setattr(cli.sys, 'stdout', SimpleNamespace(buffer=Closed(),
                                                           fileno=lambda: devnull))
    monkeypatch.setattr(cli.Client, 'cmd_status', lambda self: self.out.write(b'x'))
    try:
        assert cli.main(['status', 'job-1']) == 141
    finally:
        os.close(devnull)
    assert capsys.readouterr().err == ''


class _Written(io.BytesIO):
    """stdout (a file): every write, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data):
        self.writes.append(bytes(data))
        return len(data)


class _Streamed:
    """A response whose body is ``chunks``; a read finds the chunk before it written."""
    status, reason = 200, 'OK'

    def __init__(self, chunks: list[bytes], written: list[bytes], headers=(), status=200):
        self.left, self.written, self.chunks = list(chunks), written, chunks
        self.headers, self.status = list(headers), status

    def getheaders(self):
        return self.headers

    def read(self, n):
        assert len(self.written) == len(self.chunks) - len(self.left)     # not held
        return self.left.pop(0) if self.left else b''


BIG = [b'a' * (1 << 16), b'b' * (1 << 16), b'c' * 10]
OK_HEADERS = {'Content-Type': 'text/plain', 'X-Nexe-System': 'big', 'X-Nexe-Status': 'ok',
              'X-Nexe-Retcode': '0', 'X-Nexe-Body-Bytes': str(sum(map(len, BIG)))}


@pytest.mark.parametrize('command', ['wait', 'result'])
def test_a_big_stored_result_goes_to_stdout_as_it_comes_not_held(command: str) -> None:
    """As zc run's answer: zc wait/result read the whole result, then wrote it."""
    from zerocloud.client import cli
    from zerocloud.client import session as zsession
    out = _Written()
    stored = json.dumps({'Status': '200 OK', **OK_HEADERS}).encode()
    job = 'job-' + 'a' * 32
    client = cli.Client(build_parser().parse_args([command, job, '-q']), out=out)

    def request(method, path, headers, *a, **k):
        assert (method, path.obj) == ('GET', job)
        return zsession.Answer(_Streamed(BIG, out.writes))
    client._session = SimpleNamespace(
        account='AUTH_t', location=lambda url: SwiftPath('AUTH_t', *url.split('/', 1)),
        exists=lambda path: True, request=request,
        get=lambda path: stored if path.obj == job + '.headers' else pytest.fail('read whole'))
    assert getattr(client, f'cmd_{command}')() == 0
    assert out.writes == BIG


def test_a_big_answer_of_open_goes_to_stdout_as_it_comes_not_held() -> None:
    from zerocloud.client import cli
    from zerocloud.client import session as zsession
    out = _Written()
    client = cli.Client(build_parser().parse_args(['open', 'swift://~/c/o', '-q']), out=out)
    client._session = SimpleNamespace(
        account='AUTH_t', location=lambda url: SwiftPath('AUTH_t', 'c', 'o'),
        request=lambda *a, **k: zsession.Answer(_Streamed(BIG, out.writes,
                                                          OK_HEADERS.items())))
    assert client.cmd_open() == 0
    assert out.writes == BIG


def test_refused_credentials_say_which_to_check(monkeypatch, capsys) -> None:
    """The auth's 401 page (HTML) was printed as it came: it names no variable."""
    from swiftclient import ClientException

    from zerocloud.client import cli

    def refused(self):
        raise ClientException('Auth GET failed', http_status=401, http_reason='Unauthorized',
                              http_response_content=b'<html><h1>Unauthorized</h1></html>')
    monkeypatch.setattr(cli.Client, 'cmd_status', refused)
    assert cli.main(['status', 'job-1']) == cli.EXIT_FAILED
    assert capsys.readouterr().err == (
        'zc: Auth GET failed: 401 Unauthorized: the credentials were refused: check ST_USER '
        'and ST_KEY (or OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME), or get a new '
        'OS_AUTH_TOKEN if it has expired\n')


def test_zc_starts_without_swifts_server_side() -> None:
    """Swift's server modules import eventlet: 0.4 s of every zc command, none of
    which serves anything; the SQL planner's SQLite checks cost 30-60 ms more
    (``zc sql`` takes its formats from ``zerocloud.sql.formats``)."""
    code = ('import sys, zerocloud.client.cli; print(sorted(m for m in sys.modules '
            'if m.startswith(("eventlet", "swift.", "zerocloud.sql.planner", "sqlite3"))))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout == '[]\n'


class FakeAnswer:
    def __init__(self, status: int, reason: str, body: bytes, headers: dict | None = None):
        self.status, self.reason, self._body = status, reason, body
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}

    def read(self) -> bytes:
        return self._body


class FakeSqlSession:
    """What ``zc sql`` asks of the session: the POSTed bodies, the containers made."""

    account = 'AUTH_test'

    def __init__(self, answer: FakeAnswer) -> None:
        self.answer, self.sent, self.made = answer, [], []

    def location(self, url: str):
        from zerocloud.job import parse_location
        return parse_location(url if url.startswith('swift://') else 'swift://~/' + url,
                              self.account)

    def ensure_container(self, container: str) -> None:
        self.made.append(container)

    def query(self, body: bytes) -> FakeAnswer:
        self.sent.append(json.loads(body))
        return self.answer


def fake_session(monkeypatch, session: FakeSqlSession) -> None:
    from zerocloud.client import cli

    def made(self):
        self._session = session
        return session
    monkeypatch.setattr(cli.Client, 'session', property(made))


def zc_sql(monkeypatch, capsys, answer: FakeAnswer, *args: str) -> tuple[int, dict, str, str]:
    """``zc sql ARGS`` against a fake server: (exit status, body sent, stdout, stderr)."""
    from zerocloud.client import cli
    session = FakeSqlSession(answer)
    fake_session(monkeypatch, session)
    code = cli.main(['sql', *args])
    out, err = capsys.readouterr()
    return code, (session.sent or [None])[-1], out, err


QUERY = 'SELECT region, sum(qty) FROM swift://~/sales/*.csv GROUP BY region'
SQL_HEADERS = {'X-Sql-Plan': 'split', 'X-Sql-Objects': '2', 'X-Sql-Plan-Reason': 'aggregates',
               'X-Nexe-System': 'sql-1,sql-2,merge', 'X-Nexe-Status': 'ok,ok,ok',
               'X-Nexe-Retcode': '0,0,0'}


@pytest.mark.parametrize('args, body', [
    ([], {'query': QUERY}),
    (['--format', 'json', '--explain', '--engine', 'native'],
     {'query': QUERY, 'format': 'json', 'explain': True, 'engine': 'native'}),
    (['--no-header', '--input-format', 'csv', '--columns', 'region,qty', '--delimiter', ';',
      '--no-input-header'],
     {'query': QUERY, 'header': False, 'input': {'format': 'csv', 'columns': ['region', 'qty'],
                                                 'delimiter': ';', 'header': False}}),
    # a shell's '\t' is two characters: the server refused them as a delimiter
    (['--delimiter', '\\t'], {'query': QUERY, 'input': {'delimiter': '\t'}}),
    (['--delimiter', 'tab'], {'query': QUERY, 'input': {'delimiter': '\t'}}),
])
def test_zc_sql_sends_the_entry_points_body(monkeypatch, capsys, args, body) -> None:
    """Only the options given, as doc/sql.md's keys; the server's parser takes them."""
    from zerocloud.sql.planner import parse_request
    code, sent, out, err = zc_sql(monkeypatch, capsys,
                                  FakeAnswer(200, 'OK', b'region,sum(qty)\r\neast,3\r\n',
                                             SQL_HEADERS), QUERY, *args)
    assert (code, sent, out) == (0, body, 'region,sum(qty)\r\neast,3\r\n')
    parse_request(json.dumps(sent).encode())
    if '--explain' not in args:
        assert err == 'plan split over 2 objects; 3 nodes: 3 succeeded, 0 failed; HTTP 200\n'


def test_zc_sql_says_one_object_in_the_singular(monkeypatch, capsys) -> None:
    headers = dict(SQL_HEADERS, **{'X-Sql-Plan': 'single', 'X-Sql-Objects': '1',
                                   'X-Nexe-System': 'sql', 'X-Nexe-Status': 'ok',
                                   'X-Nexe-Retcode': '0'})
    code, _sent, _out, err = zc_sql(monkeypatch, capsys, FakeAnswer(200, 'OK', b'', headers),
                                    QUERY)
    assert (code, err) == (
        0, 'plan single over 1 object; 1 node: 1 succeeded, 0 failed; HTTP 200\n')


def test_zc_sql_reads_the_query_from_stdin_and_stores_the_answer(monkeypatch, capsys) -> None:
    from zerocloud.client import cli
    monkeypatch.setattr('sys.stdin', io.StringIO(QUERY + '\n'))
    session = FakeSqlSession(FakeAnswer(200, 'OK', b'', SQL_HEADERS))
    fake_session(monkeypatch, session)
    assert cli.main(['sql', '-', '--out', 'results/top.csv']) == 0
    assert session.sent == [{'query': QUERY + '\n',
                             'output': 'swift://AUTH_test/results/top.csv'}]
    assert session.made == ['results']                  # as zc run --out does
    assert 'the answer is in results/top.csv' in capsys.readouterr().err
    session.made.clear()                                # --explain runs (and makes) nothing
    assert cli.main(['sql', QUERY, '--out', 'swift://~/other/top.csv', '--explain']) == 0
    assert session.sent[-1]['output'] == 'swift://AUTH_test/other/top.csv'
    assert session.made == []
    assert cli.main(['sql', QUERY, '--out', 'swift://~/results/*.csv']) == cli.EXIT_USAGE
    assert "--out names one object (swift://~/c/o), not 'swift://~/results/*.csv'" in \
        capsys.readouterr().err


@pytest.mark.parametrize('status, reason, body, says', [
    (400, 'Bad Request', b'query: near "=": syntax error at character 57\n',
     'zc: the query: 400 Bad Request\nquery: near "=": syntax error at character 57\n'),
    (404, 'Not Found', b'No objects found in path swift://AUTH_test/sales/*.csv\n',
     'zc: the query: 404 Not Found\nNo objects found in path swift://AUTH_test/sales/*.csv\n'),
    (403, 'Forbidden', b'Denied: may not read swift://AUTH_b/c/o\n',
     'zc: the query: 403 Forbidden\nDenied: may not read swift://AUTH_b/c/o\n'),
    (422, 'Unprocessable Entity', b'sql-2: exit 1: sqlite: load: line 8: record 7 has 4 fields',
     'zc: the query: 422 Unprocessable Entity\nsql-2: exit 1: sqlite: load: line 8: record 7'),
    (401, 'Unauthorized', b'<html><h1>Unauthorized</h1></html>',
     'zc: the query: 401 Unauthorized\n' + display.REFUSED + '\n'),
])
def test_zc_sql_prints_the_servers_reason_and_exits_1(monkeypatch, capsys, status, reason,
                                                      body, says) -> None:
    code, _, out, err = zc_sql(monkeypatch, capsys, FakeAnswer(status, reason, body), QUERY)
    assert (code, out) == (1, '')
    assert err.startswith(says) and 'Traceback' not in err


def test_zc_sql_shows_failed_nodes_as_zc_run_does_then_counts_them(monkeypatch,
                                                                    capsys) -> None:
    # 26 malformed objects printed the server's whole body: 26 lines, then 26 stderr
    # sections repeating them (104 lines); zc run says three and counts the rest
    names = [f'sql-{i}' for i in range(1, 28)]
    errors = {name: f'exit 1: sqlite: load: swift://AUTH_test/sales/{name}.csv: line 2: '
                    'record 2 has 4 fields, not 6' for name in names[1:]}
    headers = {'X-Nexe-System': ','.join(names), 'X-Nexe-Status': ','.join(['ok'] * 27),
               'X-Nexe-Retcode': ','.join(['0'] + ['1'] * 26),
               'X-Nexe-Error': ','.join(f'{k}: {v}'.replace(', ', '; ')
                                        for k, v in errors.items()),
               'X-Nexe-Cdr-Line': '0.50, ' + ', '.join(['0.01, 10 0 100 0'] * 27)}
    body = ''.join(f'{k}: {v}\n' for k, v in errors.items()) + ''.join(
        f'\n--- stderr of {k} (its end) ---\n{v[len("exit 1: "):]}\n' for k, v in errors.items())
    answer = FakeAnswer(422, 'Unprocessable Entity', body.encode(), headers)
    code, _, out, err = zc_sql(monkeypatch, capsys, answer, QUERY)
    assert (code, out) == (1, '')
    assert err == ('zc: the query: 422 Unprocessable Entity\n' +
                   ''.join(f'{k}: {errors[k]}\n' for k in names[1:4]) +
                   '... and 23 more failed nodes\n'
                   '27 nodes: 1 succeeded, 26 failed in 0.50 s; HTTP 422\n'
                   'zc: --skip-bad skips malformed records (and counts them)\n')
    # a malformed header row fails with --skip-bad too (it names the columns): no hint
    error = ('sql-1: exit 1: sqlite: load: swift://AUTH_test/sales/a.csv: line 1: the header '
             'row: text after a closing quote')
    headers = {'X-Nexe-System': 'sql-1', 'X-Nexe-Status': 'ok', 'X-Nexe-Retcode': '1',
               'X-Nexe-Error': error}
    answer = FakeAnswer(422, 'Unprocessable Entity', f'{error}\n'.encode(), headers)
    code, _, _, err = zc_sql(monkeypatch, capsys, answer, QUERY)
    assert code == 1 and error in err and '--skip-bad' not in err
    # records read with the wrong delimiter: --skip-bad would skip every one of them
    error = ('sql: exit 1: sqlite: load: swift://AUTH_test/eu/a.csv: line 2: record 2 has more '
             'than 1 fields and the header row holds ";": if the fields are separated by ";" '
             'give that as "input"."delimiter" (zc sql --delimiter \';\')')
    headers.update({'X-Nexe-System': 'sql', 'X-Nexe-Error': error})
    answer = FakeAnswer(422, 'Unprocessable Entity', f'{error}\n'.encode(), headers)
    code, _, _, err = zc_sql(monkeypatch, capsys, answer, QUERY)
    assert code == 1 and error in err and '--skip-bad' not in err
    # --columns taken for the columns to read (a subset): every record has more fields
    error = ('sql: exit 1: sqlite: load: swift://AUTH_test/sales/a.csv: line 2: record 2 has '
             'more than 2 fields')
    headers.update({'X-Nexe-Error': error})
    answer = FakeAnswer(422, 'Unprocessable Entity', f'{error}\n'.encode(), headers)
    hint = ('zc: note: --columns names every field of the records, in order, not only the '
            'columns to read (the query reads those it uses); these records have another '
            'number of fields than its 2\n')
    code, _, _, err = zc_sql(monkeypatch, capsys, answer, QUERY, '--columns', 'region,qty')
    assert code == 1 and '--skip-bad' not in err
    assert err.endswith(f'{error}\n1 node: 0 succeeded, 1 failed; HTTP 422\n{hint}'), err
    code, _, _, err = zc_sql(monkeypatch, capsys, answer, QUERY)
    assert err.endswith('zc: --skip-bad skips malformed records (and counts them)\n')
    # with --skip-bad every such record was skipped: an empty answer, said why
    detail = [['swift://AUTH_test/sales/a.csv', 500, 'line 2: record 2 has more than 2 fields']]
    skipped = {**SQL_HEADERS, 'X-Sql-Skipped': '500', 'X-Sql-Skipped-Objects': '1',
               'X-Sql-Skipped-Detail': json.dumps(detail)}
    code, _, out, err = zc_sql(monkeypatch, capsys, FakeAnswer(200, 'OK', b'', skipped), QUERY,
                               '--columns', 'region,qty', '--skip-bad', '-q')
    assert (code, out) == (0, '')
    assert err == ('zc: skipped 500 malformed records in 1 object:\n  sales/a.csv: 500 (the '
                   'first: line 2: record 2 has more than 2 fields)\n' + hint)


def test_zc_sql_skip_bad_asks_for_it_and_says_what_was_skipped(monkeypatch,
                                                                capsys) -> None:
    detail = [[f'swift://AUTH_test/sales/d{i}.csv', 2, 'line 3: record 3 has 1 fields, not 2']
              for i in (1, 2)]
    headers = {**SQL_HEADERS, 'X-Sql-Skipped': '9', 'X-Sql-Skipped-Objects': '3',
               'X-Sql-Skipped-Detail': json.dumps(detail)}
    code, sent, out, err = zc_sql(monkeypatch, capsys, FakeAnswer(200, 'OK', b'a\n', headers),
                                  QUERY, '--skip-bad', '-q')
    assert (code, sent['input'], out) == (0, {'skip_bad': True}, 'a\n')
    assert err == ('zc: skipped 9 malformed records in 3 objects:\n'
                   '  sales/d1.csv: 2 (the first: line 3: record 3 has 1 fields, not 2)\n'
                   '  sales/d2.csv: 2 (the first: line 3: record 3 has 1 fields, not 2)\n'
                   '  ... and 1 more object: 5 records\n')
    # 40 objects said all 40 (the header lists them up to 4 KiB): the first three
    detail = [[f'swift://AUTH_test/sales/d{i}.csv', 1, 'line 2: x'] for i in range(40)]
    headers.update({'X-Sql-Skipped': '40', 'X-Sql-Skipped-Objects': '40',
                    'X-Sql-Skipped-Detail': json.dumps(detail)})
    _, _, _, err = zc_sql(monkeypatch, capsys, FakeAnswer(200, 'OK', b'a\n', headers), QUERY,
                          '--skip-bad', '-q')
    assert err.splitlines()[1:] == ['  sales/d0.csv: 1 (the first: line 2: x)',
                                    '  sales/d1.csv: 1 (the first: line 2: x)',
                                    '  sales/d2.csv: 1 (the first: line 2: x)',
                                    '  ... and 37 more objects: 37 records']
    none = {**SQL_HEADERS, 'X-Sql-Skipped': '0', 'X-Sql-Skipped-Objects': '0',
            'X-Sql-Skipped-Detail': '[]'}
    code, sent, _, err = zc_sql(monkeypatch, capsys, FakeAnswer(200, 'OK', b'', none),
                                QUERY, '--skip-bad')
    assert code == 0 and err.endswith('\nzc: no malformed records skipped\n')
    code, sent, _, err = zc_sql(monkeypatch, capsys, FakeAnswer(200, 'OK', b'', none),
                                QUERY, '--skip-bad', '-q')
    assert (code, err) == (0, '')


def test_zc_sql_given_a_file_says_how_to_read_the_query_from_it(monkeypatch, capsys,
                                                                tmp_path: Path) -> None:
    # "query: expected SELECT, found 'top' at character 1" from the server
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'top.sql').write_text(QUERY + '\n')
    code, sent, _, err = zc_sql(monkeypatch, capsys, FakeAnswer(200, 'OK', b''), 'top.sql')
    assert (code, sent) == (2, None)
    assert err == ('zc: top.sql is a file here, not a query: zc sql - < top.sql reads the '
                   'query from it (zc -h for help)\n')


def test_zc_sql_refuses_an_empty_query_and_a_bad_format(monkeypatch, capsys) -> None:
    code, sent, _, err = zc_sql(monkeypatch, capsys, FakeAnswer(200, 'OK', b''), ' ')
    assert (code, sent) == (2, None)       # a usage error (doc/client.md), nothing sent
    assert err == ('zc: the query is empty: give one SELECT ... FROM swift://~/c/*.csv '
                   '(zc -h for help)\n')
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(['sql', QUERY, '--format', 'xml'])
    assert e.value.code == 2
    assert "invalid choice: 'xml' (choose from 'csv', 'json')" in capsys.readouterr().err


@pytest.mark.parametrize('refusal,says', [
    # zc sql "SELECT * FROM swift://~/bin/lines" said: say "input": {"format": "csv"}
    (b'cannot tell the format of lines from its name: say "input": {"format": "csv"} or '
     b'"jsonl"', 'cannot tell the format of lines from its name: say --input-format csv '
                 '(or jsonl)\n'),
    (b'swift://AUTH_test/e/1.csv is empty: say "input": {"columns": [...]}',
     'swift://AUTH_test/e/1.csv is empty: say --columns A,B,...\n'),
    (b'query: no such column: c (the columns: a: the keys of the first line; a key only '
     b'later lines have is a column when "input"."columns" names every one)',
     'query: no such column: c (the columns: a: the keys of the first line; a key only '
     'later lines have is a column when --columns names every one)\n'),
    (b'query: rowid is not available with "skip_bad" (another node merges the rows)',
     'query: rowid is not available with --skip-bad (another node merges the rows)\n'),
    (b'"output": swift://AUTH_test/s/a.csv is one of the objects the query reads: the answer '
     b'would replace it; name another object',
     '--out swift://AUTH_test/s/a.csv is one of the objects the query reads: the answer '
     'would replace it; name another object\n')])
def test_zc_sql_names_its_option_where_the_server_names_a_request_key(
        monkeypatch, capsys, refusal, says) -> None:
    code, _, _, err = zc_sql(monkeypatch, capsys, FakeAnswer(400, 'Bad Request', refusal), QUERY)
    assert code == 1
    assert err == 'zc: the query: 400 Bad Request\n' + says


def test_ctrl_c_during_a_query_closes_the_connection(monkeypatch, capsys) -> None:
    """The server stops a query whose client went away (doc/sql.md): zc closes it."""
    from zerocloud.client import cli
    session = FakeSqlSession(FakeAnswer(200, 'OK', b''))
    closed = []
    session.cancel = lambda: closed.append(True)

    def interrupted(body: bytes):
        raise KeyboardInterrupt
    session.query = interrupted
    fake_session(monkeypatch, session)
    assert cli.main(['sql', QUERY]) == cli.EXIT_CANCELLED
    assert closed == [True]
    assert capsys.readouterr().err == \
        '\nzc: cancelled: the connection is closed, so the server stops the query\n'


def test_status_of_a_result_with_cut_headers_names_the_command_that_lists_every_node(
        monkeypatch, capsys) -> None:
    # it said "use --json for every node", and `zc status --json` gives counts only
    from zerocloud.client import cli
    headers = dict(HEADERS, **{'X-Nexe-System': 'wc-1,wc-2,...', 'X-Nexe-Truncated': 'true'})
    result = report.parse(200, headers, b'')
    monkeypatch.setattr(cli.Client, 'result_path', lambda self, job: job)
    monkeypatch.setattr(cli.Client, 'known', lambda self, path: (result, None))
    assert cli.main(['status', 'job-1']) == cli.EXIT_FAILED       # HEADERS has a failed node
    assert capsys.readouterr().out.endswith(
        'HTTP 200 (headers cut: zc result with this id and --json lists every node)\n')


@pytest.mark.parametrize('known, code, line', [
    ((report.parse(200, OK_HEADERS, b''), None), 0, 'job-1: done: 1 node: 1 succeeded, 0 failed'),
    ((None, {'state': 'running', 'nodes': {'total': 3, 'done': 1, 'failed': 0, 'running': 2}}),
     3, 'job-1: running for 0 s: 1/3 nodes done, 0 failed, 2 running'),
    # its proxy could store neither its result nor why (a quota full): not "running"
    ((None, {'state': 'unstored', 'why': 'the job ended 200 OK ... (413 ...)',
             'nodes': {'total': 3, 'done': 3, 'failed': 0, 'running': 0}}),
     1, 'job-1: ended, but neither its result nor why could be stored: the job ended 200 OK')])
def test_status_prints_its_line_on_stdout(monkeypatch, capsys, known, code, line) -> None:
    # the line went to stderr: `zc status ID > f` left f empty
    from zerocloud.client import cli
    monkeypatch.setattr(cli.Client, 'result_path', lambda self, job: job)
    monkeypatch.setattr(cli.Client, 'known', lambda self, path: known)
    assert cli.main(['status', 'job-1']) == code
    said = capsys.readouterr()
    assert said.out.startswith(line) and said.out.endswith('\n') and said.err == ''


def test_status_json_of_a_large_job_counts_its_nodes(monkeypatch, capsys) -> None:
    # a 3,000-node deferred job answered with counts: it said {"total": 0, "done": 0}
    from zerocloud.client import cli
    result = report.parse(200, {'X-Nexe-Nodes': '3000', 'X-Nexe-Failed': '2',
                                'X-Nexe-Status-Counts': 'fault 2, ok 2998',
                                'X-Nexe-Cdr-Total': '38.927, 0 1 2 3'}, b'')
    monkeypatch.setattr(cli.Client, 'result_path', lambda self, job: job)
    monkeypatch.setattr(cli.Client, 'known', lambda self, path: (result, None))
    assert cli.main(['status', 'job-1', '--json']) == cli.EXIT_FAILED
    assert json.loads(capsys.readouterr().out)['nodes'] == {'total': 3000, 'done': 2998,
                                                            'failed': 2}


@pytest.mark.parametrize('argv', [['swift://~/b/p', '--on', 'http://x/y'],
                                  ['swift://~/b/p', '--out', 'results/x']])
def test_a_bad_on_or_out_url_is_a_usage_error(argv: list[str], capsys, monkeypatch) -> None:
    # client.md: exit status 2 for a bad option, before any request
    from zerocloud.client import cli
    for k, v in {'ST_AUTH': 'http://127.0.0.1:9/auth/v1.0', 'ST_USER': 'u', 'ST_KEY': 'k'}.items():
        monkeypatch.setenv(k, v)
    assert cli.main(['run', *argv]) == cli.EXIT_USAGE
    assert f'zc: {argv[1]}: Invalid path {argv[2]}: expected swift://account/container' in \
        capsys.readouterr().err


@pytest.mark.parametrize('out, says', [
    ('swift://~/sums/', "not a container: swift://~/sums/; e.g. swift://~/sums/*.out (each * "
                        "becomes what --on matched)"),
    ('swift://~/sums', 'not a container: swift://~/sums; e.g. swift://~/sums/*.out'),
    ('swift://sums/x', 'not a container: swift://sums/x (did you mean swift://~/sums/x?)'),
])
def test_an_out_naming_a_container_is_a_usage_error_saying_how_to_name_objects(
        out: str, says: str, capsys, monkeypatch) -> None:
    # a new user's --out 'swift://~/sums/' reached the server, whose 400 said only
    # "Container path must be read-only"
    from zerocloud.client import cli
    for k, v in {'ST_AUTH': 'http://127.0.0.1:9/auth/v1.0', 'ST_USER': 'u', 'ST_KEY': 'k'}.items():
        monkeypatch.setenv(k, v)
    assert cli.main(['run', '--script', __file__, '--on', 'swift://~/c/*', '--out', out]) == \
        cli.EXIT_USAGE
    assert f'zc: --out names the objects to write, {says}' in capsys.readouterr().err


def test_out_with_a_star_over_one_object_names_the_object_to_write() -> None:
    # --on one object, --out swift://~/res/*.sum: stored res/sum.sum (the node's name,
    # job-reference's rule without a read wildcard) with a 200, not res/shop-00.sum
    with pytest.raises(jobs.OptionError) as e:
        jobs.check_urls('swift://~/sales/shop-00.csv', 'swift://~/res/*.sum')
    assert str(e.value) == ("--out swift://~/res/*.sum: --on names one object, so its * would "
                            "be the node's name, not what --on matched: name the object to "
                            "write, e.g. swift://~/res/shop-00.sum")
    jobs.check_urls('swift://~/sales/*.csv', 'swift://~/res/*.sum')
    jobs.check_urls('swift://~/sales/shop-00.csv', 'swift://~/res/shop-00.sum')
    jobs.check_urls(None, 'swift://~/res/*.sum')      # no --on: the node's name, as documented


@pytest.mark.parametrize('argv, says', [
    # the objects given as JOB|PROGRAM beside --script: dropped, the script ran once on
    # an empty stdin, 200 and nothing printed
    (['run', '--script', 'sum.py', 'swift://~/sales/*.csv'], "zc: give a job, a program or "
     "--script FILE, not both (swift://~/sales/*.csv and --script sum.py): the objects go "
     "with --on 'swift://~/sales/*.csv' (zc -h for help)\n"),
    (['local', 'run', '--script', 'sum.py', './lines', '--on', 'swift://~/c/o'],
     'zc: give a job, a program or --script FILE, not both (./lines and --script sum.py) '
     '(zc -h for help)\n'),
])
def test_a_target_beside_a_script_is_a_usage_error(monkeypatch, capsys, argv, says) -> None:
    from zerocloud.client import cli
    for k, v in {'ST_AUTH': 'http://127.0.0.1:9/auth/v1.0', 'ST_USER': 'u', 'ST_KEY': 'k'}.items():
        monkeypatch.setenv(k, v)
    assert cli.main(argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err == says


@pytest.mark.parametrize('argv', [['run', './prog', '--args', '--verbose'],
                                  ['local', 'run', './prog', '--args', '-v']])
def test_args_starting_with_a_dash_says_how_to_write_them(capsys, argv) -> None:
    # argparse's 'expected one argument' alone; the way out was only in --help
    with pytest.raises(SystemExit) as e:
        build_parser().parse_known_args(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: argument --args: expected one argument: a value starting with - is written "
        "--args=--verbose (or, with a space, --args '-n 3')")


def test_on_a_file_of_this_machine_says_to_upload_it(tmp_path: Path, monkeypatch) -> None:
    # zc run ./lines --on ./numbers.txt: 'did you mean swift://~/./numbers.txt?' (a
    # container named .), and for an absolute path swift://tmp/... (an account tmp)
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'numbers.txt').write_text('1\n')
    (tmp_path / 'my numbers.txt').write_text('1\n')
    said = {}
    for on in ('./numbers.txt', 'my numbers.txt', str(tmp_path / 'numbers.txt')):
        with pytest.raises(jobs.OptionError) as e:
            jobs.check_urls(on, None)
        said[on] = str(e.value)
    assert said['./numbers.txt'] == (
        '--on ./numbers.txt: a file of this machine; a job reads objects: upload it (swift '
        'upload CONTAINER ./numbers.txt) and give --on swift://~/CONTAINER/numbers.txt, or run '
        'it here (zc local run ... --stdin ./numbers.txt)')
    assert "(swift upload CONTAINER 'my numbers.txt') and give --on swift://~/CONTAINER/my%20" \
        "numbers.txt, or run it here (zc local run ... --stdin 'my numbers.txt')" in \
        said['my numbers.txt']
    assert f'(swift upload --object-name numbers.txt CONTAINER {tmp_path}/numbers.txt) and ' \
        'give --on swift://~/CONTAINER/numbers.txt' in said[str(tmp_path / 'numbers.txt')]
    (tmp_path / 'logs').mkdir()                      # a file, and maybe an object's name
    (tmp_path / 'logs' / 'day-1.log').write_text('1\n')
    with pytest.raises(jobs.OptionError) as e:
        jobs.check_urls('logs/day-1.log', None)
    assert str(e.value).endswith('(zc local run ... --stdin logs/day-1.log) (did you mean '
                                 'swift://~/logs/day-1.log?)')
    with pytest.raises(jobs.OptionError) as e:      # not a file here: the parser's words
        jobs.check_urls('./nothere.txt', None)
    assert str(e.value) == ('--on: Invalid path ./nothere.txt: expected '
                            'swift://account/container[/object]')


@pytest.mark.parametrize('interpreter, meant', [
    ('python3', 'file://python3:python3'), ('file://python3', 'file://python3:python3'),
    ('/usr/bin/python3', 'file://python3:python3'), ('lua', 'file://lua:lua'), ('perl', None)])
def test_an_interpreter_that_names_no_program_is_a_usage_error(tmp_path: Path, interpreter,
                                                               meant) -> None:
    # --interpreter python3 was sent, and the server said 'the zapp has no file python3'
    (tmp_path / 'sum.py').write_text('print(1)\n')
    with pytest.raises(jobs.OptionError) as e:
        jobs.build(None, str(tmp_path / 'sum.py'), None, None, interpreter=interpreter)
    assert str(e.value) == (f'--interpreter {interpreter}: expected file://<system image>:'
                            '<program> (a program of a system image, e.g. file://python3:'
                            'python3) or swift://~/<container>/<program>'
                            + (f' (did you mean {meant}?)' if meant else ''))
    for good in ('file://python3:python3', 'swift://~/bin/python', 'Swift://~/bin/python'):
        jobs.build(None, str(tmp_path / 'sum.py'), None, None, interpreter=good)


def test_a_zapp_given_a_bad_on_url_is_refused_before_any_request() -> None:
    zapp = jobs.Payload(b'', jobs.ZAPP_TYPE, [])
    with pytest.raises(jobs.OptionError, match='--on: Invalid path c/x'):
        jobs.rebind(zapp, 'c/x', None, 'a.zapp')


def test_an_ignored_sigint_stays_ignored(monkeypatch) -> None:
    """Under nohup, or ``&`` in a script, SIGINT comes ignored: zc must not take it
    back (a Ctrl-C meant for the foreground job would cancel zc's)."""
    import signal

    from zerocloud.client import cli
    seen = []
    monkeypatch.setattr(cli, '_main', lambda argv: seen.append(signal.getsignal(signal.SIGINT))
                        or 0)
    started = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert cli.main(['status', 'job-1']) == 0
        assert seen == [signal.SIG_IGN]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, started)


def test_a_usage_error_names_the_command_as_typed_and_an_unquoted_query_says_quote_it(
        capsys) -> None:
    from zerocloud.client import cli
    with pytest.raises(SystemExit) as e:
        cli.main(['status'])
    assert e.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith('usage: zc [swift auth options] status [-h]')
    assert 'zc [swift auth options] status: error: the following arguments are required: id' in err
    with pytest.raises(SystemExit) as e:        # the shell split the query into words
        cli.main(['sql', 'SELECT', 'city', 'FROM', 'swift://~/sales/*.csv'])
    assert e.value.code == cli.EXIT_USAGE
    assert ('zc: error: unrecognized arguments: city FROM swift://~/sales/*.csv: quote the '
            'query, it is one argument') in capsys.readouterr().err


def test_a_wait_that_times_out_says_how_to_follow_the_job_on(monkeypatch, capsys) -> None:
    # it said only "job-1: not done after 0.0 s", leaving the user to guess what next
    from zerocloud.client import cli
    monkeypatch.setattr(cli.Client, 'result_path', lambda self, job: job)
    monkeypatch.setattr(cli.Client, 'known', lambda self, path, output=False: (None, {}))
    monkeypatch.setattr(cli.Client, 'stored', lambda self, path, output=False: None)
    assert cli.main(['wait', 'job-1', '--timeout', '0', '-q']) == cli.EXIT_PENDING
    # then it named the id three times in one line: once, and what each command does
    assert capsys.readouterr().err == ('job-1: not done after 0.0 s: it goes on (zc wait '
                                       'with this id again; zc status shows its progress)\n')


@pytest.mark.parametrize('on, hint', [('swift://~/logs/part?.txt', True),
                                      ('swift://~/logs/part[12].txt', True),
                                      ('swift://~/logs/part*.txt', False)])
def test_a_404_for_an_on_with_a_shell_glob_says_only_star_is_a_wildcard(on: str, hint: bool,
                                                                        capsys) -> None:
    from zerocloud.client.cli import Client
    opts = build_parser().parse_args(['run', 'swift://~/bin/lines', '--on', on])
    result = report.parse(404, {}, b'Error 404 Not Found while fetching swift://AUTH_test/x\n')
    assert Client(opts, out=io.BytesIO()).show_result(result, {}) == 1
    said = ('(only * is a wildcard: the ? or [ of --on ' + on + ' are part of the name)\n')
    assert capsys.readouterr().err.endswith(said) is hint
    result = report.parse(404, {}, b'No objects found in path swift://AUTH_test/x%3F* in n '
                                   b'(only * is a wildcard: a ? or [ is part of the name)\n')
    Client(opts, out=io.BytesIO()).show_result(result, {})
    assert capsys.readouterr().err.count('only * is a wildcard') == 1      # the server's, once


def test_a_413_for_the_zapp_zc_made_says_so_and_what_helps(
        tmp_path, monkeypatch, capsys) -> None:
    # it said only "the request body is larger than zerovm_maxinput": the user never
    # sent a body, zc's bundle of the program was it; then it told to upload a program
    # larger than the limit, which the proxy sends with each node against the same limit
    from zerocloud.client.cli import Client
    (tmp_path / 'sub dir').mkdir()
    for name in ('big', 'sub dir/my big', 'small'):
        (tmp_path / name).write_bytes(b'\x7fELF' + b'\0' * (2044 if 'big' in name else 900))
    (tmp_path / 'job.json').write_text('[]')
    (tmp_path / 'total.py').write_text('print(1)\n')
    (tmp_path / 'huge.py').write_text('#' * 2000 + '\n')
    monkeypatch.chdir(tmp_path)
    refusal = b'the request body is larger than zerovm_maxinput (1024 bytes)\n'
    itself = (': it is itself larger than zerovm_maxinput (1024 bytes), and a stored one is '
              'sent with each node too: make it smaller or ask the operator to raise '
              'zerovm_maxinput\n')
    upload = ('the program alone is smaller than zerovm_maxinput (1024 bytes): upload it '
              "first and run the stored one, sent without zc's bundle: ")
    for args, note in [
            (['big'], 'zc: note: that body is the zapp zc made to carry big (2.0K)' + itself),
            (['sub dir/my big'], 'zc: note: that body is the zapp zc made to carry sub '
             'dir/my big (2.0K)' + itself),
            (['small'], 'zc: note: that body is the zapp zc made to carry small (904): ' +
             upload + 'swift upload bin small, then zc run swift://~/bin/small with the '
             'same options\n'),
            (['--script', 'huge.py'], 'zc: note: that body is the zapp zc made to carry '
             'huge.py (2.0K)' + itself),
            (['--script', 'total.py'], ''),
            (['job.json'], ''), (['swift://~/bin/big'], '')]:
        opts = build_parser().parse_args(['run', *args, '--on', 'swift://~/logs/*'])
        result = report.parse(413, {}, refusal)
        assert Client(opts, out=io.BytesIO()).show_result(result, {}) == 1
        assert capsys.readouterr().err == ('zc: the job was refused (HTTP 413), nothing ran:\n'
                                           + refusal.decode() + note), args


def test_a_413_note_quotes_names_and_survives_a_program_gone(tmp_path, monkeypatch) -> None:
    from zerocloud.client.cli import _bundle_too_large
    (tmp_path / 'sub dir').mkdir()
    (tmp_path / 'sub dir/a b').write_bytes(b'\x7fELF' + b'\0' * 100)
    monkeypatch.chdir(tmp_path)
    refusal = b'the request body is larger than zerovm_maxinput (1024 bytes)\n'
    opts = build_parser().parse_args(['run', 'sub dir/a b'])
    assert _bundle_too_large(opts, refusal).endswith(
        "(cd 'sub dir' && swift upload bin 'a b'), then zc run swift://~/bin/'a b' with the "
        'same options\n')

    def gone(self, **kw) -> None:
        raise FileNotFoundError(2, 'No such file or directory')
    monkeypatch.setattr(Path, 'stat', gone)       # removed after it was bundled
    assert _bundle_too_large(opts, refusal) == (
        'zc: note: that body is the zapp zc made to carry sub dir/a b; a stored one is sent '
        'with each node too, so it must itself be smaller than zerovm_maxinput\n')


@pytest.mark.parametrize('command', ['run', 'local run'])
def test_an_env_name_the_cluster_refuses_is_refused_before_sending(command: str,
                                                                    capsys) -> None:
    # zc run --env 1X=2 sent the job, for the cluster to refuse it
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command.split(), 'p', '--env', '1X=2'])
    assert ('argument --env: bad variable name "1X": letters, digits and "_" only, not '
            'starting with a digit') in capsys.readouterr().err
    assert build_parser().parse_args([*command.split(), 'p', '--env', 'A_1=2']).env == \
        [('A_1', '2')]


@pytest.mark.parametrize('device, stderr, hint', [
    ('stdin', "FileNotFoundError: [Errno 2] No such file or directory: '/dev/input'\n", True),
    ('stdin', '/dev/input: No such file or directory\n', True),
    ('stdin', '/dev/output: No such file or directory\n', False),
    ('input', '/dev/input: No such file or directory\n', False)])
def test_a_node_missing_dev_input_with_the_object_on_stdin_hints_as_input(
        device: str, stderr: str, hint: bool, capsys) -> None:
    # every node failed with "No such file ... /dev/input", and nothing said why
    from zerocloud.client.cli import Client
    opts = build_parser().parse_args(['run', 'swift://~/bin/wc', '--on', 'swift://~/c/*',
                                      '--as', device])
    node = report.NodeResult('wc-1', status='ok', retcode=1, stderr=stderr)
    result = report.JobResult(200, [node, node], body=b'')
    assert Client(opts, out=io.BytesIO()).show_result(result, {}) == 1
    said = '(the object was given on stdin: --as input gives it as /dev/input)\n'
    assert capsys.readouterr().err.count(said) == hint


@pytest.mark.parametrize('beside, hint', [('mylib.py', True), ('mylib/', True),
                                           ('other.py', False)])
def test_a_script_missing_a_module_beside_it_here_says_the_script_travels_alone(
        tmp_path: Path, capsys, beside: str, hint: bool) -> None:
    # main.py imports mylib (beside it): every node failed "No module named 'mylib'", and
    # zc added "--as input gives it as /dev/input" (the script opens /dev/input), which
    # was not what failed
    from zerocloud.client.cli import Client
    script = tmp_path / 'main.py'
    script.write_text('import mylib\nprint(open("/dev/input").read())\n')
    (tmp_path / 'mylib').mkdir() if beside.endswith('/') else (tmp_path / beside).write_text('')
    opts = build_parser().parse_args(['run', '--script', str(script), '--on', 'swift://~/c/*'])
    node = report.NodeResult('main-1', status='ok', retcode=1, stderr=(
        'Traceback (most recent call last):\n  File "/main.py", line 1, in <module>\n'
        "ModuleNotFoundError: No module named 'mylib.sub'\n"))
    Client(opts, out=io.BytesIO()).show_result(report.JobResult(422, [node, node], body=b''), {})
    err = capsys.readouterr().err
    assert '/dev/input' not in err
    said = (f'(mylib is beside {script} here, but --script sends the script alone: bundle '
            'them together in a zapp, with zc new APP and zc bundle: doc/client.md, "Apps")\n')
    assert err.count(said) == hint


def test_deploy_registers_the_type_as_the_server_looks_it_up(tmp_path: Path, capsys) -> None:
    # "--content-type 'Text/X-Upper; charset=utf-8'" was registered under that text, which
    # the server (lower case, no parameters) never looks up: open said "No application"
    from zerocloud.client import cli
    assert cli._media_type('Text/X-Upper; charset=utf-8') == 'text/x-upper'
    assert cli._media_type('application/vnd.ms-excel') == 'application/vnd.ms-excel'
    zapp = tmp_path / 'x.zapp'                  # never read: the type is refused first
    assert cli.main(['deploy', str(zapp), '--content-type', 'not a type']) == cli.EXIT_USAGE
    assert ("zc: --content-type takes a media type (type/subtype, e.g. text/x-wordy), not "
            "'not a type'") in capsys.readouterr().err


@pytest.mark.parametrize('job_id', ['', 'logs/', 'swift://~/logs', '/', 'swift://~/',
                                    'job-5eb3f', 'nosuchjob', 'logs/notes'])
@pytest.mark.parametrize('command', ['status', 'wait', 'result', 'cancel'])
def test_a_job_id_that_names_no_object_is_a_usage_error(monkeypatch, capsys, command: str,
                                                        job_id: str) -> None:
    # zc cancel "" (an unset $ID) ended in a TypeError traceback, as did status,
    # wait and result, and 'logs/' or 'swift://~/' too: nothing was asked of the server;
    # a cut id (job-5eb3f) was looked up and said 'no such job ... a typo in the id?'
    from zerocloud.client import cli
    from zerocloud.client import session as zsession
    ses = object.__new__(zsession.Session)
    ses.conn = SimpleNamespace(url='http://127.0.0.1:9/v1/AUTH_test', token='tok')
    monkeypatch.setattr(cli.Client, 'session', ses)
    assert cli.main(['--auth', 'http://127.0.0.1:9/auth/v1.0', '-U', 'u', '-K', 'k',
                     command, job_id]) == 2
    assert capsys.readouterr().err == (
        f'zc: {job_id!r} is not a job id: give the id zc submit printed (job-<32 hex '
        'digits>, or <container>/job-<32 hex digits>) (zc -h for help)\n')


@pytest.mark.parametrize('given, meant', [
    ('5eb3f0c2a1d94b7e8f6a1b2c3d4e5f60', 'job-5eb3f0c2a1d94b7e8f6a1b2c3d4e5f60'),
    ('logs/5eb3f0c2a1d94b7e8f6a1b2c3d4e5f60', 'logs/job-5eb3f0c2a1d94b7e8f6a1b2c3d4e5f60'),
    ('swift://~/logs/5eb3f0c2a1d94b7e8f6a1b2c3d4e5f60',
     'swift://~/logs/job-5eb3f0c2a1d94b7e8f6a1b2c3d4e5f60'),
    ('job-5eb3f0c2a1d94b7e8f6a1b2c3d4e5f60', 'job-5eb3f0c2a1d94b7e8f6a1b2c3d4e5f60'),
    # in capitals (as a listing or a log may show it) it was "not a job id: give ...
    # (job-<32 hex digits>...)", though 32 hex digits were given
    ('5EB3F0C2A1D94B7E8F6A1B2C3D4E5F60', 'job-5eb3f0c2a1d94b7e8f6a1b2c3d4e5f60'),
    ('logs/JOB-5EB3F0C2A1D94B7E8F6A1B2C3D4E5F60', 'logs/job-5eb3f0c2a1d94b7e8f6a1b2c3d4e5f60')])
@pytest.mark.parametrize('command', ['status', 'wait', 'result', 'cancel'])
def test_a_job_id_without_its_prefix_is_the_job_s(monkeypatch, capsys, command: str,
                                                  given: str, meant: str) -> None:
    # zc wait 5eb3f0c2... (the id without "job-") was "not a job id"
    from zerocloud.client import cli
    asked = []

    def result_path(self, job: str) -> NoReturn:
        asked.append(job)
        raise cli.Usage('asked')
    monkeypatch.setattr(cli.Client, 'result_path', result_path)
    assert cli.main(['--auth', 'http://127.0.0.1:9/auth/v1.0', '-U', 'u', '-K', 'k', command,
                     given]) == cli.EXIT_USAGE
    assert asked == [meant]
    assert build_parser().parse_args([command, given]).id == meant


@pytest.mark.parametrize('job_id', ['logs/notes', 'job-0000', 'c/job-ABC'])
def test_cancel_of_an_id_that_is_no_job_name_deletes_nothing(monkeypatch, capsys,
                                                             job_id: str) -> None:
    # zc cancel logs/notes sent DELETE logs/notes.state: the user's object was deleted,
    # and zc then waited 60 s for a job that never was
    from zerocloud.client import cli
    from zerocloud.client import session as zsession
    asked = []
    ses = object.__new__(zsession.Session)
    ses.conn = SimpleNamespace(url='http://127.0.0.1:9/v1/AUTH_test', token='tok')
    ses.request = lambda method, path, *a, **k: asked.append((method, path))
    monkeypatch.setattr(cli.Client, 'session', ses)
    assert cli.main(['--auth', 'http://127.0.0.1:9/auth/v1.0', '-U', 'u', '-K', 'k',
                     'cancel', job_id]) == 2
    assert asked == []
    assert 'is not a job id' in capsys.readouterr().err


def test_a_write_cut_short_by_a_closed_pipe_is_a_closed_output() -> None:
    # zc local run ./many | head -1 exited 0: the buffered stdout wrote 72 KiB of the
    # 123 MiB output, said so, and zc took it for the whole
    from zerocloud.client.cli import OutputClosed, _Output

    class Pipe:
        def __init__(self, room: int) -> None:
            self.room, self.got = room, b''

        def write(self, data) -> int:
            if not self.room:
                raise BrokenPipeError(32, 'Broken pipe')
            part = bytes(data[:min(self.room, 3)])
            self.got += part
            self.room -= len(part)
            return len(part)
    with pytest.raises(OutputClosed):
        _Output(Pipe(5)).write(b'0123456789')
    whole = Pipe(100)
    assert _Output(whole).write(b'0123456789') == 10 and whole.got == b'0123456789'


def test_local_run_streams_each_output_without_holding_it(tmp_path: Path, guest,
                                                           monkeypatch) -> None:
    # zc local run held every node's output in memory (read whole, written at the end):
    # 24 MiB of output was one 24 MiB write and at least as much held
    import tracemalloc
    (tmp_path / 'emit').write_bytes(guest('emit').read_bytes())
    monkeypatch.chdir(tmp_path)
    size = 24 << 20
    payload = jobs.build('./emit', None, None, None, f'{size} T')
    writes: list[int] = []
    hashed = hashlib.md5()

    def out(data: bytes) -> None:
        writes.append(len(data))
        hashed.update(data)
    tracemalloc.start()
    try:
        result = local.run(payload, './emit', {}, out=out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not result.failed and sum(writes) == size
    assert max(writes) <= local.CHUNK and peak < 4 * local.CHUNK, (max(writes), peak)
    expected = hashlib.md5()          # emit's blocks: 'T <k>' then a letter to 64 KiB
    for k in range(size >> 16):
        line = f'T {k:08d}\n'.encode()
        expected.update(line + bytes([97 + k % 26]) * (65536 - len(line)))
    assert hashed.hexdigest() == expected.hexdigest()


def test_status_json_of_a_cancelled_job_gives_its_node_counts() -> None:
    # zc status --json said nodes 0/0/0 of a cancelled job: its counts were only in
    # the error text; the stored result now has them (X-Nexe-Node-Counts)
    from zerocloud import deferred
    from zerocloud.client.cli import Client
    progress = deferred.Progress()
    progress.launched([SimpleNamespace(name=f'n{i}', attach=None) for i in range(4)])
    for _ in range(3):
        progress.started()
    progress.finished([SimpleNamespace(failed=True, channel_bytes=lambda: (0, 0))])
    resp = deferred._cancelled(progress)
    stored = json.dumps({'Status': resp.status, **dict(resp.headers)}).encode()
    client = Client(build_parser().parse_args(['status', 'job-1', '--json']))
    said = json.loads(client.describe(report.parse_stored(stored, resp.body), as_json=True))
    assert (said['state'], said['status'], said['nodes']) == (
        'cancelled', 499, {'total': 4, 'done': 0, 'failed': 1, 'stopped': 2})
    assert said['error'].endswith(': 0/4 nodes done, 1 failed, 2 stopped running')


def test_result_of_a_running_job_names_it_once_and_what_to_do(monkeypatch, capsys) -> None:
    # it said "job-1: no result yet (zc wait job-1)": the id twice, no word of progress
    from zerocloud.client import cli
    monkeypatch.setattr(cli.Client, 'result_path', lambda self, job: job)
    monkeypatch.setattr(cli.Client, 'known', lambda self, path, output=False:
                        (None, {'state': 'running'}))
    assert cli.main(['result', 'job-1']) == cli.EXIT_PENDING
    assert capsys.readouterr().err == ('job-1: no result yet (zc wait with this id waits for '
                                       'it; zc status shows its progress)\n')


def test_nodes_that_failed_alike_are_shown_a_few_then_counted() -> None:
    # a wildcard's program that exits 3 on each of 100 objects printed 100 lines
    # "exitcode-N: exit 3" under the table that shows each node's exit already
    from zerocloud.client import display
    nodes = [report.NodeResult(f'x-{i}', status='ok', retcode=3)
             for i in range(1, 101)]
    nodes.insert(50, report.NodeResult('x-odd', status='fault',
                                       error='fault: read of unmapped memory'))
    assert display.failures(nodes) == (
        'x-1: exit 3\nx-2: exit 3\nx-3: exit 3\nx-odd: fault: read of unmapped memory\n'
        '... and 97 more nodes: exit 3\n')


@pytest.mark.parametrize('program, code, verdict', [
    ('wc', 0, 'swift://~/bin/prog: valid'),
    ('wrmsr', 1, 'swift://~/bin/prog: invalid: 1 violation(s), first ')])
def test_validate_of_a_stored_program_without_a_verdict_checks_it_here(
        guest, capsys, program: str, code: int, verdict: str) -> None:
    # an object uploaded without X-Zerovm-Validate only got "no verdict stored", exit 1
    from zerocloud.client import cli
    client = cli.Client(build_parser().parse_args(['validate', 'swift://~/bin/prog']))
    data = guest(program).read_bytes()
    got = []
    client._session = SimpleNamespace(
        account='AUTH_t', location=lambda url: SwiftPath('AUTH_t', 'bin', 'prog'),
        request=lambda method, path, headers: FakeAnswer(200, 'OK', b''),
        get=lambda path: got.append(path) or data)
    assert client.cmd_validate() == code
    assert got == [SwiftPath('AUTH_t', 'bin', 'prog')]
    err = capsys.readouterr().err
    assert err.startswith(verdict)
    assert err.endswith(' (checked here: no verdict stored; upload it with X-Zerovm-Validate: '
                        "true, or as application/x-nexe, for the cluster's)\n")


@pytest.mark.parametrize('url', ['http://127.0.0.1:9/AUTH_test', 'http://127.0.0.1:9/',
                                 '127.0.0.1:9/v1/AUTH_test', 'http://127.0.0.1:9/v1/AUTH_t/c'])
def test_a_storage_url_set_by_hand_that_cannot_be_one_says_what_one_looks_like(
        monkeypatch, capsys, url: str) -> None:
    # OS_STORAGE_URL without /v1: zc printed Swift's HTML 400 page ("Invalid path")
    from zerocloud.client import cli
    clear_credentials(monkeypatch)
    monkeypatch.setenv('OS_AUTH_TOKEN', 'tok')
    monkeypatch.setenv('OS_STORAGE_URL', url)
    assert cli.main(['status', 'job-' + 'a' * 32]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        f'zc: the storage URL {url!r} (OS_STORAGE_URL or --os-storage-url) is not one: it '
        "looks like http://host:port/v1/AUTH_account (as 'swift auth' prints it) "
        '(zc -h for help)\n')
    for good in ('http://127.0.0.1:9/v1/AUTH_test', 'https://h/v1.0/AUTH_t/'):
        monkeypatch.setenv('OS_STORAGE_URL', good)
        conn = cli.Client(build_parser().parse_args(['status', 'job-1'])).session.conn
        assert (conn.url, conn.token) == (good, 'tok')


@pytest.mark.parametrize('url', ['127.0.0.1:9/auth/v1.0', 'localhost:9/auth/v1.0',
                                 'htp://127.0.0.1:9/auth/v1.0'])
def test_an_auth_url_without_its_scheme_says_the_one_meant(monkeypatch, capsys,
                                                           url: str) -> None:
    # ST_AUTH=127.0.0.1:8080/auth/v1.0: zc said 'Unsupported scheme "" in url ...' and
    # exited 1, as if the server had refused something
    from zerocloud.client import cli
    clear_credentials(monkeypatch)
    monkeypatch.setenv('ST_AUTH', url)
    monkeypatch.setenv('ST_USER', 'test:tester')
    monkeypatch.setenv('ST_KEY', 'testing')
    assert cli.main(['status', 'job-' + 'a' * 32]) == cli.EXIT_USAGE
    meant = 'http://' + url.split('://')[-1]
    assert capsys.readouterr().err == (
        f'zc: the auth URL {url!r} (ST_AUTH, OS_AUTH_URL or -A) is not one: it starts with '
        f"http:// or https:// (did you mean '{meant}'?) (zc -h for help)\n")


def test_a_v1_auth_url_in_keystones_variables_says_to_use_v1s(monkeypatch, capsys) -> None:
    # OS_AUTH_URL=http://h:8080/auth/v1.0 with OS_USERNAME and OS_PASSWORD: zc printed
    # swiftclient's "Auth versions 2.0 and 3 require python-keystoneclient, install it"
    from zerocloud.client import cli
    clear_credentials(monkeypatch)
    monkeypatch.setenv('OS_AUTH_URL', 'http://127.0.0.1:9/auth/v1.0')
    monkeypatch.setenv('OS_USERNAME', 'test:tester')
    monkeypatch.setenv('OS_PASSWORD', 'testing')
    assert cli.main(['status', 'job-' + 'a' * 32]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        'zc: http://127.0.0.1:9/auth/v1.0 is a v1 auth URL, but OS_AUTH_URL, OS_USERNAME and '
        'OS_PASSWORD (--os-*) ask for Keystone (auth version 2.0): set ST_AUTH, ST_USER and '
        "ST_KEY instead (zerocloud-devcluster env prints the local cluster's), or add "
        'OS_AUTH_TYPE=v1password (zc -h for help)\n')
    monkeypatch.setenv('OS_AUTH_TYPE', 'v1password')        # as it says: v1 then
    conn = cli.Client(build_parser().parse_args(['status', 'job-1'])).session.conn
    assert (conn.authurl, conn.user, conn.auth_version) == (
        'http://127.0.0.1:9/auth/v1.0', 'test:tester', '1.0')


def test_split_of_a_job_too_large_for_per_node_sizes_stores_each_stdout_and_fetches_it(
        monkeypatch, tmp_path: Path) -> None:
    # a job of more than 1,000 nodes is answered without X-Nexe-Body-Bytes: --split sent
    # every node's output to stdout. Now each node's stdout is stored, fetched into DIR
    # by the JSON report's names, and deleted
    from zerocloud.client import cli
    (tmp_path / 'job.json').write_text(json.dumps([
        {'name': 'wc', 'exec': {'path': 'swift://~/bin/wc'},
         'devices': [{'name': 'stdin', 'path': 'swift://~/logs/*.txt'}, {'name': 'stdout'}]},
        {'name': 'one', 'exec': {'path': 'swift://~/bin/wc'}, 'devices': [{'name': 'stdout'}]}]))
    monkeypatch.setattr(cli, 'SUMMARY_NODES', 2)
    monkeypatch.setattr(cli.Client, 'expand', lambda self, job: ({
        'wc-1': 'logs/a.txt', 'wc-2': 'logs/b.txt', 'one': ''}, 3))
    stored: dict[str, bytes] = {}
    sent = []

    def execute(body, content_type, headers):
        job = json.loads(body)
        sent.append((job, headers))
        prefix = job[0]['devices'][1]['path'].rsplit('/', 2)[0].replace('~', 'AUTH_t')
        nodes = []
        for name, obj in (('wc-1', '0/a'), ('wc-2', '0/b'), ('one', '1/one')):
            stored[f'{prefix}/{obj}'] = f'{name} out\n'.encode()
            nodes.append({'name': name, 'replica': 1, 'status': 'ok', 'retcode': 0,
                          'failed': False, 'outputs': [{'device': 'stdout', 'stored': True,
                                                        'path': f'{prefix}/{obj}'}]})
        return FakeAnswer(200, 'OK', json.dumps({'status': 200, 'nodes': nodes}).encode(),
                          {'Content-Type': 'application/json'})

    made = []
    out, err = _Written(), io.StringIO()
    client = cli.Client(build_parser().parse_args(
        ['run', str(tmp_path / 'job.json'), '--split', str(tmp_path / 'parts')]), out=out,
        err=err)
    client._session = SimpleNamespace(
        account='AUTH_t', execute=execute, ensure_container=made.append,
        get=lambda path: stored[f'swift://{path.account}/{path.container}/{path.obj}'],
        delete=lambda path: stored.pop(f'swift://{path.account}/{path.container}/{path.obj}'),
        list_objects=lambda account, container, prefix: [
            k.split('/', 4)[4] for k in stored if k.split('/', 4)[4].startswith(prefix)])
    assert client.cmd_run() == 0
    (job, headers), = sent
    split = job[0]['devices'][1]['path']
    assert split.startswith('swift://~/.zvm/split-') and split.endswith('/0/*')
    assert job[1]['devices'][0]['path'] == split[:-3] + '1/*'     # no wildcard: the name
    assert headers == {'X-Zerovm-Report': 'json'} and made == ['.zvm']
    assert {p.name: p.read_text() for p in (tmp_path / 'parts').iterdir()} == {
        'wc-1': 'wc-1 out\n', 'wc-2': 'wc-2 out\n', 'one': 'one out\n'}
    assert out.writes == [] and stored == {}
    assert f'{tmp_path}/parts/wc-2: 9\n' in err.getvalue()


def test_split_of_a_large_job_answering_with_stderr_too_is_not_spooled() -> None:
    # stored stdout would leave out what the node wrote to stderr: the note says instead
    payload = jobs.Payload(b'', jobs.JSON_TYPE, [{'name': 'a', 'devices': [
        {'name': 'stdout'}, {'name': 'stderr'}]}])
    assert jobs.stdout_to(payload, 'swift://~/.zvm/split-1/', 'job.json') is None
    two = jobs.stdout_to(jobs.Payload(b'', jobs.JSON_TYPE, [{'name': 'a', 'devices': [
        {'name': 'input', 'path': 'swift://~/c*/x*'}, {'name': 'stdout'}]}]),
        'swift://~/.zvm/split-1/', 'job.json')
    assert two.job[0]['devices'][1]['path'] == 'swift://~/.zvm/split-1/0/*/*'


def _large_split(monkeypatch, tmp_path: Path, count: int, execute_ends=None, **session):
    """``zc run --split`` of a job of ``count`` nodes (more than the answer sizes):
    (client, the objects the job stored, stderr, the cancels); ``execute_ends`` runs
    once the objects are stored, ``session`` replaces the fake's get or delete."""
    from zerocloud.client import cli
    (tmp_path / 'job.json').write_text(json.dumps([
        {'name': 'wc', 'exec': {'path': 'swift://~/bin/wc'},
         'devices': [{'name': 'stdin', 'path': 'swift://~/logs/*.txt'}, {'name': 'stdout'}]}]))
    monkeypatch.setattr(cli, 'SUMMARY_NODES', 2)
    names = [f'wc-{i}' for i in range(1, count + 1)]
    monkeypatch.setattr(cli.Client, 'expand', lambda self, job: ({
        name: f'logs/{name}.txt' for name in names}, count))
    stored: dict[str, bytes] = {}
    cancels = []

    def execute(body, content_type, headers):
        prefix = json.loads(body)[0]['devices'][1]['path'].rsplit('/', 2)[0].replace(
            '~', 'AUTH_t')
        nodes = []
        for name in names:
            stored[f'{prefix}/{name}'] = f'{name} out\n'.encode()
            nodes.append({'name': name, 'replica': 1, 'status': 'ok', 'retcode': 0,
                          'failed': False, 'outputs': [{'device': 'stdout', 'stored': True,
                                                        'path': f'{prefix}/{name}'}]})
        if execute_ends:
            execute_ends()
        return FakeAnswer(200, 'OK', json.dumps({'status': 200, 'nodes': nodes}).encode(),
                          {'Content-Type': 'application/json'})

    def key(path: SwiftPath) -> str:
        return f'swift://{path.account}/{path.container}/{path.obj}'
    err = io.StringIO()
    client = cli.Client(build_parser().parse_args(
        ['run', str(tmp_path / 'job.json'), '--split', str(tmp_path / 'parts'), '-q']),
        out=_Written(), err=err)
    client._session = SimpleNamespace(
        account='AUTH_t', execute=execute, ensure_container=lambda c: None,
        cancel=lambda: cancels.append(1),
        get=lambda path: stored[key(path)],
        delete=lambda path: stored.pop(key(path), None),
        list_objects=lambda account, container, prefix: [
            k.split('/', 4)[4] for k in list(stored) if k.split('/', 4)[4].startswith(prefix)])
    for name, replace in session.items():
        setattr(client._session, name, replace(client._session, key, stored))
    return client, stored, err, cancels


def test_split_of_a_large_job_fetches_sixteen_stdouts_at_a_time(
        monkeypatch, tmp_path: Path) -> None:
    # 10,000 nodes were 20,000 requests one after another: minutes. Now 16 at a time,
    # never more; the files are the same
    import threading
    at_once = 16
    together = threading.Barrier(at_once, timeout=10)   # passes only 16 at once
    busy, most, lock = [0], [0], threading.Lock()

    def get(session, key, stored):
        def fetch(path):
            with lock:
                busy[0] += 1
                most[0] = max(most[0], busy[0])
            together.wait()
            with lock:
                busy[0] -= 1
            return stored[key(path)]
        return fetch
    client, stored, err, _ = _large_split(monkeypatch, tmp_path, 2 * at_once, get=get)
    assert client.cmd_run() == 0, err.getvalue()
    assert most[0] == at_once and stored == {}
    assert {p.name: p.read_text() for p in (tmp_path / 'parts').iterdir()} == {
        f'wc-{i}': f'wc-{i} out\n' for i in range(1, 2 * at_once + 1)}


def test_split_of_a_large_job_says_which_stdout_it_could_not_fetch_and_gets_the_rest(
        monkeypatch, tmp_path: Path) -> None:
    from zerocloud.client.session import ServerError

    def get(session, key, stored):
        def fetch(path):
            if path.obj.endswith('/wc-2'):
                raise ServerError(f'GET {path}', 503, 'Service Unavailable', b'')
            return stored[key(path)]
        return fetch
    client, stored, err, _ = _large_split(monkeypatch, tmp_path, 3, get=get)
    assert client.cmd_run() == 1
    assert sorted(p.name for p in (tmp_path / 'parts').iterdir()) == ['wc-1', 'wc-3']
    said = err.getvalue()
    assert 'zc: wc-2: its stdout, .zvm/split-' in said and '/wc-2, could not be fetched' \
        in said and '503' in said
    assert stored == {}         # the one not fetched is deleted too


def test_split_of_a_large_job_deletes_each_stored_stdout_once(
        monkeypatch, tmp_path: Path) -> None:
    # each object was deleted after its GET, then again when the container's listing,
    # which names a deleted object a while after (Swift's container updates), named it
    deletes: list[str] = []

    def delete(session, key, stored):
        def gone(path):
            deletes.append(path.obj)
            stored.pop(key(path), None)
        return gone

    def list_objects(session, key, stored):
        def late(account, container, prefix):      # the deleted ones still named
            return [name for name in [*deletes, *(k.split('/', 4)[4] for k in stored)]
                    if name.startswith(prefix)]
        return late
    client, stored, err, _ = _large_split(monkeypatch, tmp_path, 3, delete=delete,
                                          list_objects=list_objects)
    assert client.cmd_run() == 0, err.getvalue()
    assert stored == {} and len(deletes) == 3
    assert sorted(deletes) == sorted(set(deletes))


@pytest.mark.parametrize('stop', [KeyboardInterrupt, ConnectionResetError])
def test_split_of_a_large_job_cut_short_deletes_what_it_stored(
        monkeypatch, tmp_path: Path, stop) -> None:
    # Ctrl-C (or a lost connection) once the job had stored its nodes' stdouts left
    # them under .zvm/split-*
    def execute_ends():
        raise stop()
    client, stored, err, cancels = _large_split(monkeypatch, tmp_path, 3, execute_ends)
    with pytest.raises(stop):
        client.cmd_run()
    assert stored == {} and cancels and err.getvalue() == ''


def test_split_of_a_large_job_says_how_to_delete_what_it_could_not(
        monkeypatch, tmp_path: Path) -> None:
    from zerocloud.client.session import ServerError

    def delete(session, key, stored):
        def refuse(path):
            raise ServerError(f'DELETE {path}', 503, 'Service Unavailable', b'')
        return refuse
    client, stored, err, _ = _large_split(monkeypatch, tmp_path, 3, delete=delete)
    assert client.cmd_run() == 0
    assert len(list(tmp_path.joinpath('parts').iterdir())) == len(stored) == 3
    prefix = next(iter(stored)).split('/')[4]
    assert f'zc: 3 object(s) of this job under .zvm/{prefix}/ could not be deleted (' \
        in err.getvalue()
    assert err.getvalue().endswith(f': swift delete .zvm --prefix {prefix}/\n')


def test_a_request_started_while_another_waits_for_its_answer_does_not_take_it(
        monkeypatch) -> None:
    # --split of a large job fetches from threads: each request set the session's one
    # connection and read the answer from it, so one thread read another's (or None)
    from swiftclient.client import Connection

    from zerocloud.client import session as zsession
    monkeypatch.setattr(zsession, 'get_conn', lambda options: Connection(
        preauthurl='http://h:8080/v1/AUTH_me', preauthtoken='AUTH_tk'))
    ses = zsession.Session({})

    class Http:
        def __init__(self, name: str) -> None:
            self.name = name

        def request(self, method, path, body, headers) -> None:
            if path.endswith('/first'):     # the other thread's request, meanwhile
                assert ses.get(SwiftPath('AUTH_me', 'c', 'second')) == b'second'

        def getresponse(self):
            return SimpleNamespace(status=200, reason='OK', getheaders=lambda: [],
                                   read=io.BytesIO(self.name.encode()).read)
    made = iter(['first', 'second'])
    monkeypatch.setattr(ses.conn, 'http_connection', lambda url: (None, Http(next(made))))
    assert ses.get(SwiftPath('AUTH_me', 'c', 'first')) == b'first'


def test_split_of_a_large_job_interrupted_again_while_deleting_says_how_to_delete(
        monkeypatch, tmp_path: Path) -> None:
    def execute_ends():
        raise KeyboardInterrupt

    def list_objects(session, key, stored):
        def interrupted(account, container, prefix):
            raise KeyboardInterrupt        # a second Ctrl-C
        return interrupted
    client, stored, err, _ = _large_split(monkeypatch, tmp_path, 3, execute_ends,
                                          list_objects=list_objects)
    with pytest.raises(KeyboardInterrupt):
        client.cmd_run()
    prefix = next(iter(stored)).split('/')[4]
    assert err.getvalue() == (f'zc: some object(s) of this job under .zvm/{prefix}/ could '
                              f'not be deleted (interrupted): swift delete .zvm --prefix '
                              f'{prefix}/\n')


@pytest.mark.parametrize('command', ['wait', 'result'])
def test_a_result_stored_as_the_report_says_its_output_was_not_kept(command: str) -> None:
    """``zc submit --json`` stores the JSON report instead of the output: ``zc wait ID``
    then printed nothing and exited 0, as if the job had written nothing."""
    from zerocloud.client import cli
    out, err = _Written(), io.StringIO()
    stored = {'status': 200, 'seconds': 0.1, 'nodes': [
        {'name': 'sum', 'status': 'ok', 'retcode': 0, 'failed': False,
         'outputs': [{'device': 'stdout', 'path': None, 'bytes': 73, 'stored': False}]}]}
    client = cli.Client(build_parser().parse_args([command, 'job-1', '-q']), out=out, err=err)
    result = report.parse(200, {'Content-Type': 'application/json'},
                          json.dumps(stored).encode())
    assert client.show_result(result, {}) == cli.EXIT_FAILED
    assert out.writes == []
    assert ('zc: the result was stored as the JSON report (submitted with --json or '
            'X-Zerovm-Report): its output, 73 bytes, was not kept; zc result job-1 --json '
            'prints the report\n') in err.getvalue()


def test_a_result_whose_outputs_all_went_to_objects_is_not_a_lost_output() -> None:
    """Nor is what a node wrote to another (a link has no path)."""
    from zerocloud.client import cli
    out, err = _Written(), io.StringIO()
    stored = {'status': 200, 'nodes': [
        {'name': 'sum', 'status': 'ok', 'retcode': 0, 'failed': False,
         'outputs': [{'device': 'stdout', 'path': 'swift://AUTH_t/c/o', 'bytes': 73,
                      'stored': True},
                     {'device': 'out/reduce', 'path': None, 'bytes': 12, 'stored': False}]}]}
    client = cli.Client(build_parser().parse_args(['wait', 'job-1', '-q']), out=out, err=err)
    result = report.parse(200, {'Content-Type': 'application/json'},
                          json.dumps(stored).encode())
    assert client.show_result(result, {}) == 0
    assert err.getvalue() == ''


def test_output_to_a_stdout_the_job_does_not_declare_is_said_discarded() -> None:
    """A job without {"name": "stdout"} answered 200 with an empty body and zc printed
    nothing about it: the user saw a job that ran well and wrote nothing."""
    from zerocloud.client import cli
    out, err = _Written(), io.StringIO()
    stdout = {'/dev/stdout': {'writes': 2, 'write_bytes': 73}}
    stored = {'status': 200, 'nodes': [
        {'name': 'sum', 'status': 'ok', 'retcode': 0, 'failed': False, 'outputs': [],
         'accounting': {'channels': stdout}},
        {'name': 'kept', 'status': 'ok', 'retcode': 0, 'failed': False,
         'accounting': {'channels': stdout},
         'outputs': [{'device': 'stdout', 'path': 'swift://AUTH_t/c/o', 'bytes': 73,
                      'stored': True}]}]}
    client = cli.Client(build_parser().parse_args(['run', 'job.json', '-q']), out=out, err=err)
    result = report.parse(200, {'Content-Type': 'application/json'},
                          json.dumps(stored).encode())
    assert client.show_result(result, {}) == 0
    assert err.getvalue() == (
        'zc: dropped: sum: 73 bytes written to an undeclared stdout\n'
        '(an undeclared stdout is /dev/null: add {"name": "stdout"} to a node\'s devices to '
        'get what it writes, with a "path" to store it)\n')


def test_a_replica_or_a_failed_node_without_outputs_is_not_said_discarded() -> None:
    """Replicas 2 and 3 are run without outputs, and a node its host killed has them
    cleared: zc said their declared stdout was discarded."""
    stdout = {'/dev/stdout': {'write_bytes': 7}}
    kept = [{'device': 'stdout', 'path': None, 'bytes': 7, 'stored': False}]
    stored = {'status': 200, 'nodes': [
        {'name': 'sum', 'replica': 1, 'failed': False, 'outputs': kept,
         'accounting': {'channels': stdout}},
        *({'name': 'sum', 'replica': r, 'failed': False, 'accounting': {'channels': stdout}}
          for r in (2, 3)),
        {'name': 'killed', 'status': 'killed', 'failed': True, 'outputs': [],
         'accounting': {'channels': stdout}},
        {'name': 'undeclared', 'replica': 1, 'failed': False, 'outputs': [],
         'accounting': {'channels': stdout}}]}
    result = report.parse(200, {'Content-Type': 'application/json'},
                          json.dumps(stored).encode())
    assert result.discarded_stdout() == {'undeclared': 7}


def test_a_second_replica_that_succeeded_after_the_first_failed_is_not_said_discarded() -> None:
    """Only the first replica returns outputs: when it failed (unavailable, no outputs),
    the second succeeded without them, and zc said its declared stdout was discarded."""
    stdout = {'/dev/stdout': {'write_bytes': 7}}
    stored = {'status': 200, 'nodes': [
        {'name': 'sum', 'replica': 1, 'status': 'unavailable', 'failed': True, 'outputs': []},
        {'name': 'sum', 'replica': 2, 'status': 'ok', 'failed': False, 'outputs': [],
         'accounting': {'channels': stdout}}]}
    result = report.parse(200, {'Content-Type': 'application/json'},
                          json.dumps(stored).encode())
    assert result.discarded_stdout() == {}


def test_discarded_stdout_of_many_nodes_is_said_three_times_then_counted() -> None:
    from zerocloud.client import cli
    err = io.StringIO()
    stored = {'status': 200, 'nodes': [
        {'name': f'n-{i}', 'status': 'ok', 'retcode': 0, 'failed': False, 'outputs': [],
         'accounting': {'channels': {'/dev/stdout': {'write_bytes': 5}}}} for i in range(5)]}
    client = cli.Client(build_parser().parse_args(['run', 'job.json', '-q']), out=_Written(),
                        err=err)
    client.show_result(report.parse(200, {'Content-Type': 'application/json'},
                                    json.dumps(stored).encode()), {})
    lines = err.getvalue().splitlines()
    assert [line.split()[2] for line in lines[:3]] == ['n-0:', 'n-1:', 'n-2:']
    assert lines[3] == 'zc: dropped: ... and 2 more nodes did so'


class ChunkedAnswer:
    """An answer whose body comes in the given chunks (what ``pass_on`` reads)."""

    def __init__(self, headers: dict, chunks: list[bytes]) -> None:
        self.status, self.headers, self._chunks = 200, headers, chunks

    def chunks(self):
        yield from self._chunks


@pytest.mark.parametrize('parts, joined', [
    ([b'3', b'', b'12', b'7\n'], 'cnt-1, cnt-3'),       # an empty part is passed over
    ([b'3\n', b'12\n', b'7'], ''),                       # the last one may end as it likes
    ([b'\x1f\x8b\x08\x00', b'\x1f\x8b\x08\x01'], '')])  # not text (gzip parts)
def test_outputs_that_run_together_without_a_newline_are_noted(
        capsys, parts: list[bytes], joined: str) -> None:
    # three nodes counting lines with print(n, end=''): zc printed "3127" and exit 0,
    # which reads as one number
    from zerocloud.client.cli import Client
    names = [f'cnt-{i}' for i in range(1, len(parts) + 1)]
    headers = {'x-nexe-system': ','.join(names), 'x-nexe-status': ','.join(['ok'] * len(parts)),
               'x-nexe-retcode': ','.join(['0'] * len(parts)),
               'x-nexe-body-bytes': ','.join(str(len(p)) for p in parts)}
    body = b''.join(parts)
    said = (f"zc: note: the output of {joined} does not end with a newline: the next node's "
            'runs on in its last line (--split DIR gives each node its own file)\n'
            if joined else '')
    opts = build_parser().parse_args(['run', 'job.json', '-q'])
    for streamed in (False, True):       # a terminal: read whole; a pipe: as it comes
        out = io.BytesIO()
        client = Client(opts, out=out)
        if streamed:
            result = report.parse(200, headers, b'')
            client.pass_on(ChunkedAnswer(headers, [body[i:i + 2] for i in
                                                   range(0, len(body), 2)]), result)
        else:
            result = report.parse(200, headers, body)
        assert client.show_result(result, {}) == 0
        assert out.getvalue() == body
        assert capsys.readouterr().err == said


def test_split_with_out_is_a_usage_error(tmp_path: Path, capsys) -> None:
    # zc run ... --out 'swift://~/r/*' --split d exited 0 and wrote no d: every output
    # went to its object, and --split had nothing to split
    from zerocloud.client import cli
    script = tmp_path / 'sum.py'
    script.write_text('print(1)\n')
    split = tmp_path / 'd'
    assert cli.main(['run', '--script', str(script), '--on', 'swift://~/c/*', '--out',
                     'swift://~/r/*.sum', '--split', str(split)]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        f"zc: --split {split} writes each node's output to a file here, --out "
        'swift://~/r/*.sum stores it as objects instead: give one of them (zc -h for help)\n')


def test_a_misspelt_option_is_named_with_the_one_meant(capsys) -> None:
    # it said only "unrecognized arguments: --ouT", leaving the user to find the option
    from zerocloud.client import cli
    for argv, said in ((['run', 'prog', '--on', 'swift://~/c/*', '--ouT', 'swift://~/r/*'],
                        'unrecognized arguments: --ouT swift://~/r/* (did you mean --out?)'),
                       (['sql', 'SELECT 1 FROM swift://~/c/*', '--fromat', 'json'],
                        'unrecognized arguments: --fromat json (did you mean --format?)'),
                       (['wait', 'job-1', '--timout=3', '--splt', 'd'],
                        '(--timout: did you mean --timeout?; --splt: did you mean --split?)'),
                       (['run', 'job.json', '--os-usrname', 'u'],      # zc's own options too
                        '(did you mean --os-username, before the command?)'),
                       # zc's own, right but after the command: "--debug (did you mean
                       # --debug?)", and -U said nothing
                       (['run', 'job.json', '--debug'], 'unrecognized arguments: --debug '
                        '(--debug goes before the command, as for swift: zc --debug ... run ...)'),
                       (['status', 'job-1', '-U', 'test:tester', '-K', 'testing'],
                        'unrecognized arguments: -U test:tester -K testing (-U, -K go before '
                        'the command, as for swift: zc -U ... status ...)')):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == cli.EXIT_USAGE
        assert said in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(['run', 'job.json', '--zzz'])          # nothing close: no guess
    assert capsys.readouterr().err.endswith('zc: error: unrecognized arguments: --zzz\n')


@pytest.mark.parametrize('name, how', [
    ('x.py', 'zc run --script {path}'),
    ('x.lua', 'zc run --script {path}'),
    ('x', 'zc run --script {path} --interpreter file://python3:python3 (or file://lua:lua '
          'for Lua)')])
def test_validate_of_a_script_says_the_command_that_runs_it(
        tmp_path: Path, capsys, name: str, how: str) -> None:
    # zc validate x.py advised "file://python3:python3", the job's URL, not what to type
    from zerocloud.client import cli
    path = tmp_path / name
    path.write_text('print("hi")\n')
    client = cli.Client(build_parser().parse_args(['validate', str(path)]))
    assert client.cmd_validate() == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert f'runs with {how.format(path=path)} (doc/python.md' in err
    assert '"file://python3:python3"' not in err


def test_validate_of_binary_garbage_keeps_the_validators_verdict(tmp_path: Path, capsys) -> None:
    from zerocloud.client import cli
    path = tmp_path / 'x.py'
    path.write_bytes(b'\x00\x01\x02\x03garbage')
    client = cli.Client(build_parser().parse_args(['validate', str(path)]))
    assert client.cmd_validate() == cli.EXIT_FAILED
    assert capsys.readouterr().err.startswith(f'{path}: invalid: E1: not an ELF file')


LOST_SAID = ('the proxy running this deferred job stopped before it finished (its state was '
             'last updated 40 s ago); its result is lost: run the job again')
LATE_HEADERS = {'Status': '200 OK', 'Content-Type': 'text/plain', 'X-Nexe-System': 'one',
                'X-Nexe-Status': 'ok', 'X-Nexe-Retcode': '0', 'X-Nexe-Reported-Lost': LOST_SAID}
LATE_NOTE = (f'zc: note: the job finished after it was reported lost ({LOST_SAID}): if you ran '
             'it again, both runs happened (each may have written objects)\n')


@pytest.mark.parametrize('argv', [['status', 'job-1'], ['wait', 'job-1'], ['wait', 'job-1', '-q']])
def test_a_job_that_finished_after_it_was_reported_lost_says_so(monkeypatch, capsys,
                                                                 argv) -> None:
    # X-Nexe-Reported-Lost was in the result, but zc wait/status said "done" only: a user
    # who read "lost" and ran the job again was not told that both runs happened
    from zerocloud.client import cli
    result = report.parse_stored(json.dumps(LATE_HEADERS).encode(), b'out\n')
    monkeypatch.setattr(cli.Client, 'result_path', lambda self, job: job)
    monkeypatch.setattr(cli.Client, 'known', lambda self, path, output=False: (result, None))
    assert cli.main(argv) == 0
    said = capsys.readouterr()
    if argv[0] == 'status':
        assert said.out.startswith('job-1: done: 1 node: 1 succeeded, 0 failed')
        assert said.out.endswith(LATE_NOTE) and said.out.count('\n') == 2
    else:
        assert said.out == 'out\n' and said.err.endswith(LATE_NOTE)


def test_status_json_of_a_job_that_finished_after_it_was_reported_lost_says_so() -> None:
    from zerocloud.client.cli import Client
    result = report.parse_stored(json.dumps(LATE_HEADERS).encode(), b'out\n')
    client = Client(build_parser().parse_args(['status', 'job-1', '--json']))
    said = json.loads(client.describe(result, as_json=True))
    assert (said['state'], said['reported_lost']) == ('done', LOST_SAID)
    plain = report.parse_stored(json.dumps(dict(LATE_HEADERS, **{
        'X-Nexe-Reported-Lost': ''})).encode(), b'')
    assert 'reported_lost' not in json.loads(client.describe(plain, as_json=True))
    assert display.reported_lost(plain) == ''


def test_zc_takes_a_swift_url_in_upper_case() -> None:
    # URL schemes are case-insensitive (RFC 3986): zc run SWIFT://~/bin/p read a local
    # file of that name, and zc status SWIFT://~/c/job-... named swift://~/SWIFT:/...
    from zerocloud.client.session import Session
    payload = jobs.build('SWIFT://~/bin/p', None, 'SWIFT://~/logs/*.txt', 'Swift://~/out/*.n')
    assert payload.job[0]['exec']['path'] == 'SWIFT://~/bin/p'
    parse_job(payload.body, 'AUTH_t')           # the cluster takes it as it is
    where = Session.location(SimpleNamespace(account='AUTH_t'), 'SWIFT://~/c/o')
    assert where == SwiftPath('AUTH_t', 'c', 'o')


def _cancelled_after(monkeypatch, answer: FakeAnswer, results: list,
                     state: Callable[[float], dict | None] | None = None) -> list:
    """zc cancel job-1 with the DELETE answered ``answer``, each look for the result
    answered by the next of ``results`` and for the state by ``state(now)`` (default: a
    state written at each look), on a clock that only its pauses move; what it asked."""
    from zerocloud.client import cli
    asked: list = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds
    monkeypatch.setattr(cli, 'time', SimpleNamespace(monotonic=lambda: clock[0], sleep=sleep))
    monkeypatch.setattr(cli, 'POLL_START', cli.POLL_MAX)
    monkeypatch.setattr(cli.Client, 'result_path', lambda self, job: SwiftPath('AUTH_t', 'c',
                                                                               job))
    monkeypatch.setattr(cli.Client, 'session', SimpleNamespace(
        request=lambda method, path, headers: asked.append((method, path)) or answer))
    monkeypatch.setattr(cli.Client, 'stored', lambda self, path: asked.append('look')
                        or results.pop(0))
    fresh = state or (lambda now: {'updated': now, 'heartbeat': 10.0})
    monkeypatch.setattr(cli.Client, 'state', lambda self, path: asked.append('state')
                        or fresh(clock[0]))
    return asked


LOST = report.parse_stored(json.dumps({
    'Status': '503 Service Unavailable', 'X-Nexe-Status': 'lost',
    'X-Nexe-Error': LOST_SAID}).encode(), LOST_SAID.encode() + b'\n')


def test_cancel_of_a_job_reported_lost_that_runs_still_waits_for_its_own_result(
        monkeypatch, capsys) -> None:
    # it said "not running: it has ended": the lost result was taken for the job's own
    from zerocloud.client import cli
    cancelled = report.parse_stored(json.dumps({
        'Status': '499 Client Disconnect', 'X-Nexe-Status': 'cancelled',
        'X-Nexe-Error': 'stopped by a DELETE of its state (zc cancel) after 50.0 s: ...',
        'X-Nexe-Reported-Lost': LOST_SAID}).encode(), b'stopped by a DELETE ...\n')
    asked = _cancelled_after(monkeypatch, FakeAnswer(202, 'Accepted', b'cancelling ...', {
        'X-Nexe-Reported-Lost': LOST_SAID}), [LOST, LOST, cancelled])
    assert cli.main(['cancel', 'job-1']) == 0
    assert asked == [('DELETE', SwiftPath('AUTH_t', 'c', 'job-1.state'))] + [
        'look', 'state'] * 2 + ['look']
    assert capsys.readouterr().err == (
        'job-1: it was reported lost, but its proxy runs it still: asked to stop it\n'
        'job-1: cancelled: stopped by a DELETE ...\n' + LATE_NOTE)


def test_cancel_of_a_job_reported_lost_whose_proxy_then_stops_says_so_in_3_heartbeats(
        monkeypatch, capsys) -> None:
    # its proxy accepted the cancel and died: zc waited 60 s for a result that could not
    # come, then said "asked to stop, still running after 60 s" of a job no proxy ran
    from zerocloud.client import cli
    accepted = FakeAnswer(202, 'Accepted', b'cancelling ...', {'X-Nexe-Reported-Lost': LOST_SAID})
    asked = _cancelled_after(monkeypatch, accepted, [LOST] * 100,
                             lambda now: {'updated': 5.0, 'heartbeat': 10.0})
    assert cli.main(['cancel', 'job-1']) == cli.EXIT_FAILED
    assert capsys.readouterr().err == (
        'job-1: it was reported lost, but its proxy runs it still: asked to stop it\n'
        'job-1: asked to stop, but its proxy has not written its state for 30 s (3 '
        'heartbeats) and no result of its own came: it is lost after all (zc status with '
        f'this id says if it ends still)\njob-1: lost: {LOST_SAID}\n')
    assert asked.count('state') == 16          # a look every 2 s, from 0 s to 30 s
    # its state gone (another cancel found its proxy gone), the lost result stands
    _cancelled_after(monkeypatch, accepted, [LOST] * 2, lambda now: None)
    assert cli.main(['cancel', 'job-1']) == cli.EXIT_FAILED
    assert 'but its state is gone and no result of its own came' in capsys.readouterr().err
    # gone since it stored its own: that one is said
    cancelled = report.parse_stored(json.dumps({
        'Status': '499 Client Disconnect', 'X-Nexe-Status': 'cancelled',
        'X-Nexe-Error': 'stopped by a DELETE of its state (zc cancel)'}).encode(), b'stopped\n')
    _cancelled_after(monkeypatch, accepted, [LOST, cancelled, cancelled], lambda now: None)
    assert cli.main(['cancel', 'job-1']) == 0
    assert capsys.readouterr().err.endswith('job-1: cancelled: stopped\n')


def test_cancel_of_a_job_reported_lost_and_not_seen_since_says_it_may_run_still(
        monkeypatch, capsys) -> None:
    from zerocloud.client import cli
    _cancelled_after(monkeypatch, FakeAnswer(404, 'Not Found', b''), [LOST])
    assert cli.main(['cancel', 'job-1']) == cli.EXIT_FAILED
    assert capsys.readouterr().err == (
        'job-1: not running, nothing to cancel (it was reported lost: if its proxy was only '
        'slow or cut off it may run still, unseen, and its result then replaces the lost '
        f'one; zc status with this id says)\njob-1: lost: {LOST_SAID}\n')


@pytest.mark.parametrize('source, device, failed, hint', [
    ('print(io.open("/dev/input"):read("a"))\n', 'stdin', True, True),
    ('print(io.open("/dev/input"):read("a"))\n', 'input', True, False),
    ('print(io.open("/dev/input"):read("a"))\n', 'stdin', False, False),
    ('print(io.read("a"):upper())\n', 'stdin', True, False)])
def test_a_failed_script_that_names_dev_input_with_the_object_on_stdin_hints_as_input(
        tmp_path: Path, capsys, source: str, device: str, failed: bool, hint: bool) -> None:
    # Lua's io.open("/dev/input") gives nil: "attempt to index a nil value" names no file,
    # so the --as input hint did not fire
    from zerocloud.client.cli import Client
    script = tmp_path / 'up.lua'
    script.write_text(source)
    opts = build_parser().parse_args(['run', '--script', str(script), '--on', 'swift://~/c/*',
                                      '--as', device])
    node = report.NodeResult('up-1', status='ok', retcode=1 if failed else 0, stderr=(
        'lua: /dev/script:1: attempt to index a nil value\n' if failed else ''))
    result = report.JobResult(200, [node], body=b'')
    Client(opts, out=io.BytesIO()).show_result(result, {})
    said = '(the object was given on stdin: --as input gives it as /dev/input)\n'
    assert capsys.readouterr().err.count(said) == hint


def test_a_local_run_gives_a_node_the_variables_the_cluster_gives_it(tmp_path: Path,
                                                                      guest) -> None:
    # zc local run gave a node only its exec.env: a program that names its output after
    # LOCAL_PATH_INFO (as the docs suggest for a wildcard's nodes) found nothing here
    (tmp_path / 'bin').mkdir()
    (tmp_path / 'bin' / 'env').write_bytes(guest('args_env').read_bytes())
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / 'my doc.txt').write_text('hello')
    job = [{'name': 'a', 'exec': {'path': 'swift://~/bin/env',
                                  'env': {'LOCAL_PATH_INFO': '/elsewhere', 'MINE': '1'}},
            'devices': [{'name': 'stdin', 'path': 'swift://~/data/my doc.txt'},
                        {'name': 'stdout'}]},
           {'name': 'b', 'exec': {'path': 'swift://~/bin/env'},
            'devices': [{'name': 'stdout'}]}]
    payload = jobs.Payload(json.dumps(job).encode(), jobs.JSON_TYPE, job)
    out: list[bytes] = []
    maps = {'bin': tmp_path / 'bin', 'data': tmp_path / 'data'}
    result = local.run(payload, 'job.json', maps, out=out.append)
    assert not result.failed
    printed = b''.join(out).decode()
    a, b = printed.split('argc=')[1:]
    env_a, env_b = ({k: v for line in text.splitlines() if line.startswith('envp')
                     for k, v in [line.split('=', 2)[1:]]} for text in (a, b))
    assert {k: v for k, v in env_a.items() if k.startswith(('LOCAL_', 'SCRIPT_', 'MINE'))} == {
        'LOCAL_OBJECT': 'on', 'LOCAL_PATH_INFO': '/local/data/my%20doc.txt',
        'LOCAL_DOCUMENT_ROOT': '/dev/stdin', 'LOCAL_CONTENT_LENGTH': '5', 'MINE': '1',
        'SCRIPT_NAME': 'a', 'SCRIPT_FILENAME': 'swift://local/bin/env'}   # argv[0], exec.path
    # the names and the quoting are the object server's
    from zerocloud import wire
    assert wire.local_env('/local/data/my doc.txt', [('Content-Length', '5')]).items() \
        <= env_a.items()
    assert not any(k.startswith('LOCAL_') for k in env_b)     # no object: none, as there
    assert env_b['SCRIPT_NAME'] == 'b'


@pytest.mark.parametrize('status, reason, fix', [
    (413, 'Request Entity Too Large', 'make room in swift://AUTH_test/caf\u00e9 (delete objects '
     'there, or raise its quota or its account\'s: swift stat caf\u00e9 shows them)'),
    (403, 'Forbidden', 'ask the owner of swift://AUTH_test/caf\u00e9 for write access '
     '(X-Container-Write): the marker is written as you')])
def test_a_cancel_swift_refused_to_store_says_what_to_fix(monkeypatch, capsys, status: int,
                                                          reason: str, fix: str) -> None:
    # the proxy's 413 said the job runs on and why, but not what to do to stop it
    from zerocloud.client import cli
    from zerocloud.client import session as zsession
    job = 'job-' + 'a' * 32
    body = (f'{job} was not cancelled: it runs on; the marker that stops it could not be '
            f'stored in swift://AUTH_test/caf\u00e9 ({status} {reason})').encode()
    asked = []
    ses = object.__new__(zsession.Session)
    ses.conn = SimpleNamespace(url='http://127.0.0.1:9/v1/AUTH_test', token='tok')

    def request(method, path, *a, **k):
        asked.append((method, str(path)))
        return SimpleNamespace(status=status, reason=reason, headers={}, read=lambda: body)
    ses.request = request
    monkeypatch.setattr(cli.Client, 'session', ses)
    assert cli.main(['--auth', 'http://127.0.0.1:9/auth/v1.0', '-U', 'u', '-K', 'k',
                     'cancel', f'caf\u00e9/{job}']) == cli.EXIT_FAILED
    assert [m for m, _ in asked] == ['DELETE']      # no waiting for a result never coming
    err = capsys.readouterr().err
    assert body.decode() in err
    assert err.endswith(f'zc: {fix}, then zc cancel caf\u00e9/{job} again\n'), err

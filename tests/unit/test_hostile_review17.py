"""A hostile user's bytes where the proxy parses them (review17): each is the user's
own mistake, told as such, never a 500 (an exception out of the proxy filter).

* a ``sql/1.0`` request body nested deeper than Python's recursion limit, a
  ``jsonl`` object whose first line is (its columns are read from it), and a
  zapp's ``boot/system.map``: a RecursionError went through ``except ValueError``;
* a node's error (its stderr's last line, the guest's bytes) with control characters
  other than CR and LF (NUL, DEL...) went into ``X-Nexe-Error`` as they were: a
  header HTTP parsers and proxies in front of Swift refuse; a ``message/cgi``
  output's header value with DEL was passed on as it was (other controls: a 422);
* a deferred job's state (``job-<id>.state``, an object in the user's own
  container, which they may overwrite) read before a GET of its result: nested too
  deep, an ``updated`` integer too large for a float, or a ``proxy`` pid that is
  not a pid of this host (more digits than ``int()`` reads, or than a pid has,
  ``os.kill`` overflowed; a non-ASCII digit ``int()`` refuses).
"""

from __future__ import annotations

import io
import json
import logging
import socket
import time

import pytest
from archives import tar_bytes
from swift.common.swob import HTTPException, Request
from test_deferred_review6 import NAME
from test_response import result
from test_sources import DeletingSwift, lost_env

from zerocloud import cgiout, deferred, zapp
from zerocloud.proxy.response import respond
from zerocloud.sql import entry
from zerocloud.sql.planner import SqlError, parse_request

DEEP = '[' * 60_000      # within zerovm_maxconfig (64 KiB)


@pytest.mark.parametrize('body', [DEEP, '{"query": "select 1", "input": ' + DEEP],
                         ids=['body', 'input'])
def test_a_sql_request_nested_too_deep_is_the_users_error(body: str) -> None:
    with pytest.raises(SqlError, match='not JSON'):
        parse_request(body.encode())


def test_a_jsonl_object_whose_first_line_is_nested_too_deep_is_the_users_error() -> None:
    with pytest.raises(SqlError, match='holds a JSON array'):      # nested lists
        entry._columns((DEEP + '\n{"a": 1}\n').encode(), 'jsonl', ',', False, 'swift://~/c/o')
    with pytest.raises(SqlError, match='is not a JSON value'):       # nested objects
        entry._columns(('{"a": ' * 100_000 + '\n{"a": 1}\n').encode(), 'jsonl', ',', False,
                       'swift://~/c/o')


def test_a_zapp_whose_job_is_nested_too_deep_is_a_400() -> None:
    data = io.BytesIO(tar_bytes({'boot/system.map': DEEP.encode()}))
    with pytest.raises(HTTPException) as e:
        zapp.system_map(data, 1 << 16, 'swift://~/c/app.zapp')
    assert e.value.status_int == 400 and b'not a valid job description' in e.value.body


@pytest.mark.parametrize('state', [
    DEEP.encode(),
    json.dumps({'state': 'running', 'heartbeat': 10, 'updated': 10 ** 400}).encode(),
    json.dumps({'state': 'running', 'heartbeat': 10 ** 400, 'updated': time.time()}).encode(),
], ids=['nested', 'updated', 'heartbeat'])
def test_a_forged_state_is_no_500_before_a_result_is_read(state: bytes) -> None:
    app = DeletingSwift()
    env = lost_env(app, time.time())
    app.objects[f'{NAME}.state'] = ({}, state)
    deferred.settle_lost(app, env, logging.getLogger('test'))   # raised before
    assert f'{NAME}.headers' not in app.objects


@pytest.mark.parametrize('pid', ['9' * 5000, '9' * 20, '\u00b2', '0'],
                         ids=['digits', 'overflow', 'superscript', 'zero'])
def test_a_state_naming_no_pid_of_this_host_keeps_the_heartbeat_rule(pid: str) -> None:
    app = DeletingSwift()
    env = lost_env(app, time.time() - 1)
    state = json.loads(app.objects[f'{NAME}.state'][1])
    app.objects[f'{NAME}.state'] = ({}, json.dumps({
        **state, 'proxy': f'{socket.gethostname()}:{pid}',
        'pids': deferred.pid_space()}).encode())
    deferred.settle_lost(app, env, logging.getLogger('test'))   # raised before
    assert f'{NAME}.headers' not in app.objects and f'{NAME}.state' in app.objects
    env = Request.blank(f'{NAME}.state', method='DELETE').environ
    resp = Request(env).get_response(lambda e, s: deferred.cancel(app, e, logging.getLogger(
        'test'))(e, s))
    assert resp.status_int == 202, resp.body


def test_a_nodes_error_puts_no_control_character_in_a_header() -> None:
    stderr = 'x\x00\x01\x08\x0e\x1b\x7f\u00e9 end'      # its last line
    resp = respond([result('a', b'', retcode=3, stderr=stderr)], 0.1, False)
    value = resp.headers['X-Nexe-Error']
    assert value.startswith('a: exit 3: x') and value.endswith('end'), value
    assert not [c for c in value if ord(c) < 32 or ord(c) == 127], value


def test_a_cgi_header_value_with_del_is_refused_as_other_controls_are() -> None:
    with pytest.raises(cgiout.CgiError, match='control character in header Location'):
        cgiout.parse_head(cgiout.CGI, b'Location: http://x\x7fy\r\n\r\nbody')

"""What ``zc run`` says of an answer whose chain of jobs stopped (``X-Chain-Stopped``)."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

from zerocloud.client import cli
from zerocloud.client import session as zsession
from zerocloud.client.cli import build_parser

JOB = json.dumps([{'name': 'next', 'exec': {'path': 'swift://AUTH_t/c/steal'}}]).encode()
FOREIGN = 'swift://AUTH_other/tools/answer.py'


class Resp:
    status, reason = 200, 'OK'

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self.headers, self.left = headers, [JOB]

    def getheaders(self) -> list[tuple[str, str]]:
        return [('Content-Type', 'application/json'), ('X-Zerovm-Execute', '1.0'),
                ('Content-Length', str(len(JOB))), ('X-Nexe-System', 'tool'),
                ('X-Nexe-Status', 'ok'), ('X-Nexe-Retcode', '0')] + self.headers

    def read(self, n: int) -> bytes:
        return self.left.pop(0) if self.left else b''


def run(monkeypatch, headers: list[tuple[str, str]]) -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    client = cli.Client(build_parser().parse_args(['run', 'swift://~/bin/tool', '--on',
                                                   'swift://~/c/o', '-q']), out=out, err=err)
    client._session = SimpleNamespace(
        account='AUTH_t', execute=lambda *a: zsession.Answer(Resp(headers), 'POST'))
    monkeypatch.setattr(cli.Client, 'expand', lambda self, job: ({'tool': 'c/o'}, 1))
    return client.cmd_run(), out.getvalue(), err.getvalue()


def test_a_chain_stopped_by_another_accounts_code_says_why_and_how_to_chain(monkeypatch) -> None:
    # it printed the job JSON on stdout, said nothing and exited 0, as if the job had run
    code, out, err = run(monkeypatch, [('X-Chain-Stopped', 'foreign_code'),
                                      ('X-Chain-Foreign-Code', FOREIGN)])
    assert code == cli.EXIT_FAILED
    assert out == JOB                       # the job, to save and run on purpose
    assert 'the chain stopped' in err and 'not run' in err and FOREIGN in err
    assert 'another account' in err and 'copy that object into your account' in err


def test_a_chain_stopped_by_another_accounts_data_says_why(monkeypatch) -> None:
    code, out, err = run(monkeypatch, [('X-Chain-Stopped', 'foreign_input'),
                                      ('X-Chain-Foreign-Input', FOREIGN)])
    assert code == cli.EXIT_FAILED and out == JOB
    assert 'the chain stopped' in err and FOREIGN in err and 'read an object of another' in err
    assert 'zc run FILE' in err


def test_a_chain_stopped_by_its_timeout_says_so(monkeypatch) -> None:
    code, out, err = run(monkeypatch, [('X-Chain-Stopped', 'chain_timeout')])
    assert code == cli.EXIT_FAILED and out == JOB
    assert 'chain_timeout' in err and 'zc run FILE' in err


def test_an_answer_that_is_a_job_without_a_stop_is_output_as_before(monkeypatch) -> None:
    code, out, err = run(monkeypatch, [])
    assert (code, out, err) == (0, JOB, '')

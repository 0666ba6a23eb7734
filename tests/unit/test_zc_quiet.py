"""``-q`` after the command, as doc/client.md has it, for every command; and before it
(swift's option) the same: ``zc deploy X -q`` was refused ("-q goes before the
command") and ``zc -q deploy X`` printed everything all the same."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest

from zerocloud.client import cli, jobs
from zerocloud.client.cli import build_parser
from zerocloud.job import SwiftPath, parse_location


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
             ) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every command's parser (``local run`` too), by its words."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = commands(sub, (*prefix, name))
                found.update(inner or {(*prefix, name): sub})
    return found


def test_every_command_takes_q_after_it() -> None:
    parsers = commands(build_parser())
    assert ('deploy',) in parsers and ('local', 'run') in parsers
    assert [words for words, p in parsers.items()
            if '-q' not in p._option_string_actions] == []


class Session:
    """What ``zc deploy`` asks of the session: the objects put."""

    account = 'AUTH_t'

    def __init__(self) -> None:
        self.put_paths: list[SwiftPath] = []

    def location(self, url: str) -> SwiftPath:
        return parse_location(url if url.startswith('swift://') else 'swift://~/' + url,
                              self.account)

    def put(self, path: SwiftPath, data: bytes, headers: dict) -> None:
        self.put_paths.append(path)

    def http_url(self, path: SwiftPath, prefix: str) -> str:
        return f'http://127.0.0.1:9{prefix}{path.path}'

    def set_container_meta(self, container: str, meta: dict) -> None:
        self.put_paths.append(SwiftPath(self.account, container))


@pytest.fixture
def zapp(tmp_path: Path) -> Path:
    path = tmp_path / 'up.zapp'
    path.write_bytes(jobs.zapp_bytes([{'name': 'up', 'exec': {'path': 'file://python3:python3',
                                                              'args': 'up.py'},
                                       'devices': [{'name': 'stdout'}]}],
                                     {'up.py': b'print(1)\n'}))
    return path


@pytest.mark.parametrize('where', ['after', 'before', 'none'])
def test_deploy_says_nothing_with_q_before_or_after_the_command(
        monkeypatch, capsys, zapp: Path, where: str) -> None:
    session = Session()
    monkeypatch.setattr(cli.Client, 'session', session)
    args = ['deploy', str(zapp), '--content-type', 'text/x-up', '--endpoint', 'api']
    argv = {'after': [*args, '-q'], 'before': ['-q', *args], 'none': args}[where]
    assert cli.main(argv) == 0
    assert len(session.put_paths) == 3             # the zapp, its type's config, the endpoint
    err = capsys.readouterr().err
    if where == 'none':
        assert 'up.py: Python compiles' in err and 'uploaded swift://AUTH_t/apps/up.zapp' in err
        assert 'registered for text/x-up' in err and 'API endpoint' in err
    else:
        assert err == ''


@pytest.mark.parametrize('argv', [['new', 'app', '-q'], ['-q', 'new', 'app']])
def test_new_says_nothing_with_q(monkeypatch, capsys, tmp_path: Path, argv: list) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 0
    assert (tmp_path / 'app').is_dir()
    assert capsys.readouterr().err == ''


def test_validate_with_q_says_only_an_invalid_verdict(tmp_path: Path, capsys) -> None:
    prog = tmp_path / 'prog'
    prog.write_bytes(b'\x00not an ELF file')
    assert cli.main(['validate', str(prog), '-q']) == cli.EXIT_FAILED
    assert capsys.readouterr().err.startswith(f'{prog}: invalid: E1: not an ELF file')
    client = cli.Client(build_parser().parse_args(['validate', 'swift://~/bin/prog', '-q']))
    client._session = SimpleNamespace(
        location=lambda url: SwiftPath('AUTH_t', 'bin', 'prog'),
        request=lambda method, path, hdrs: SimpleNamespace(
            status=200, reason='OK', headers={'x-zerovm-valid': 'true'}, read=lambda: b''))
    assert client.cmd_validate() == 0
    assert capsys.readouterr().err == ''


def test_a_swift_option_after_the_command_still_says_where_it_goes(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(['deploy', 'x.zapp', '--debug'])
    assert e.value.code == cli.EXIT_USAGE
    assert '(--debug goes before the command, as for swift' in capsys.readouterr().err


def test_v_after_every_command_is_taken_and_changes_nothing_as_before_it(
        tmp_path: Path, capsys) -> None:
    # ``zc run X -v`` was refused ("-v goes before the command"), where it changes nothing
    # either: zc shows every node's row already
    parsers = commands(build_parser())
    assert [words for words, p in parsers.items()
            if '-v' not in p._option_string_actions] == []
    parse = build_parser().parse_args
    for argv in (['run', 'job.json', '-v'], ['-v', 'run', 'job.json'],
                 ['run', 'job.json', '--verbose', '-v'], ['local', 'run', 'x.py', '-v']):
        assert not cli.Client(parse(argv)).quiet, argv
    assert cli.Client(parse(['run', 'job.json', '-v', '-q'])).quiet
    missing = str(tmp_path / 'none.json')
    said = []
    for argv in (['run', missing], ['run', missing, '-v'], ['-v', 'run', missing]):
        said.append((cli.main(argv), capsys.readouterr().err))
    assert said[0] == said[1] == said[2] and f'cannot read {missing}' in said[0][1]

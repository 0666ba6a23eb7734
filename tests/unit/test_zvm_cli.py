"""``zvm``'s own usage errors: what the help promises is what the parser takes, and a
bad ``ZVM_NATIVE_*`` variable is named, with what it takes, before anything runs."""

from __future__ import annotations

import pytest

from zvm_core import cli
from zvm_core.build.toolchain import BuildError
from zvm_core.engines.native import loader


def test_the_quota_help_shows_the_form_the_parser_takes(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(['run', '--help'])
    shown = capsys.readouterr().out
    assert '--quota /dev/NAME=key:value,...' in shown
    opts = cli.build_parser().parse_args(['run', '--quota', '/dev/stdout=puts:1', 'p'])
    assert opts.quota == [('/dev/stdout', 'puts:1')]
    assert '--quota /dev/NAME=' in cli.__doc__


@pytest.mark.parametrize('command', [['run', '/nonexistent/program'], ['info']])
@pytest.mark.parametrize('variable', ['ZVM_NATIVE_NAMESPACES', 'ZVM_NATIVE'])
def test_a_bad_native_switch_is_a_usage_error_naming_it(command: list[str], variable: str,
                                                        monkeypatch, capfd) -> None:
    # anything but `off` left the namespaces (the engine) on: a typo went unseen
    monkeypatch.setenv(variable, 'of')
    assert cli.main(command) == cli.EXIT_USAGE
    assert capfd.readouterr().err == f"zvm: {variable}='of': expected on or off\n"


def test_a_native_cache_that_cannot_be_made_is_named(monkeypatch, tmp_path) -> None:
    (tmp_path / 'file').write_text('')
    monkeypatch.setenv('ZVM_NATIVE_CACHE', str(tmp_path / 'file' / 'cache'))
    with pytest.raises(BuildError) as e:
        loader.cache_dir()
    assert str(e.value) == (f'ZVM_NATIVE_CACHE={tmp_path}/file/cache: cannot make the '
                            'directory: Not a directory')

"""Every command says the installed version (``--version``), as a bug report needs."""

from __future__ import annotations

from importlib import metadata

import pytest


@pytest.mark.parametrize('module, prog', [('zvm_core.cli', 'zvm'),
                                          ('zerocloud.client.cli', 'zc'),
                                          ('zerocloud.devcluster', 'zerocloud-devcluster')])
def test_version_is_the_installed_distributions(module: str, prog: str, capsys) -> None:
    # `zc --version` was "unrecognized arguments", `zvm --version` "no such manifest"
    main = __import__(module, fromlist=['main']).main
    with pytest.raises(SystemExit) as ended:
        main(['--version'])
    assert ended.value.code in (0, None)
    said = capsys.readouterr()
    assert (said.out, said.err) == (f'{prog} {metadata.version("zerocloud")}\n', '')


def test_a_version_that_is_not_installed_says_so(monkeypatch) -> None:
    from zvm_core import version

    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(version.metadata, 'version', missing)
    assert version.version() == 'unknown (not installed)'

"""``zc deploy`` given what is not a zapp says how to make one."""

from __future__ import annotations

from pathlib import Path

from zerocloud.client import cli


def test_deploy_of_an_apps_directory_names_the_bundle_command_and_its_zapp(
        tmp_path: Path, capsys) -> None:
    # it said only "zc: app: Is a directory"
    (tmp_path / 'zapp.yaml').write_text('name: wordy\njob: []\n')
    assert cli.main(['deploy', str(tmp_path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert 'is a directory' in err and f'zc bundle {tmp_path}' in err
    assert f'zc deploy {tmp_path / "wordy.zapp"}' in err


def test_deploy_of_a_directory_that_is_no_app_says_how_to_make_one(tmp_path: Path,
                                                                   capsys) -> None:
    assert cli.main(['deploy', str(tmp_path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert 'without a zapp.yaml' in err and 'zc new NAME' in err and 'zc bundle DIR' in err

"""``zc validate``: what it says of a program built for another CPU (``zvm validate``'s
note) and of a stored program whose upload was validated and refused."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from zerocloud.client import cli, zapps
from zerocloud.client.cli import build_parser
from zerocloud.job import SwiftPath
from zvm_core.elf import load_program
from zvm_core.validator import validate

NOTE_END = ("fault if reached (glibc's, behind cpuid, never are): build without "
            '-march=native, -mavx* or -mbmi*; -march=x86-64-v2 at most')


class Answer:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.reason, self.headers = status, 'OK', headers

    def read(self) -> bytes:
        return b''


def stored(client: cli.Client, headers: dict[str, str], data: bytes = b'') -> list:
    """``client``'s session: HEAD of swift://~/bin/prog answers ``headers``; a GET,
    ``data`` (noted in the list returned)."""
    got: list = []
    client._session = SimpleNamespace(
        account='AUTH_t', location=lambda url: SwiftPath('AUTH_t', 'bin', 'prog'),
        request=lambda method, path, hdrs: Answer(200, headers),
        get=lambda path: got.append(path) or data)
    return got


@pytest.fixture(scope='module')
def avx2(guest) -> Path:
    return guest('floats', flags=('-O2', '-mavx2'))


def test_a_program_built_for_another_cpu_is_valid_with_zvm_validates_note(
        guest, avx2: Path, capsys) -> None:
    # zc validate said only "valid"; zvm validate added how many instructions fault
    sites = len(validate(load_program(avx2)).absent)
    assert sites > 0
    client = cli.Client(build_parser().parse_args(['validate', str(avx2)]))
    assert client.cmd_validate() == 0
    assert capsys.readouterr().err.splitlines() == [
        f'{avx2}: valid',
        f"{avx2}: {sites} instructions of extensions the sandbox's CPU lacks (AVX {sites}) "
        + NOTE_END]
    plain = guest('floats')
    assert cli.Client(build_parser().parse_args(['validate', str(plain)])).cmd_validate() == 0
    assert capsys.readouterr().err == f'{plain}: valid\n'


def test_a_stored_program_checked_here_gets_the_note_too(avx2: Path, capsys) -> None:
    client = cli.Client(build_parser().parse_args(['validate', 'swift://~/bin/prog']))
    got = stored(client, {}, avx2.read_bytes())
    assert client.cmd_validate() == 0
    assert got == [SwiftPath('AUTH_t', 'bin', 'prog')]
    valid, note = capsys.readouterr().err.splitlines()
    assert valid.startswith('swift://~/bin/prog: valid (checked here: no verdict stored')
    assert note.startswith("swift://~/bin/prog: ") and note.endswith(NOTE_END)


def test_a_stored_verdict_gives_the_proxys_note(capsys) -> None:
    # the upload's verdict said only "valid" for a -mavx2 build, whose jobs faulted
    client = cli.Client(build_parser().parse_args(['validate', 'swift://~/bin/prog']))
    note = "84 instructions of extensions the sandbox's CPU lacks (AVX 84) " + NOTE_END
    assert stored(client, {'x-zerovm-valid': 'true', 'x-zerovm-validation-note': note}) == []
    assert client.cmd_validate() == 0
    assert capsys.readouterr().err == f'swift://~/bin/prog: valid\nswift://~/bin/prog: {note}\n'
    assert stored(client, {'x-zerovm-valid': 'true'}) == []
    assert client.cmd_validate() == 0
    assert capsys.readouterr().err == 'swift://~/bin/prog: valid\n'


@pytest.mark.parametrize('headers, said', [
    ({'x-zerovm-valid': 'false',
      'x-zerovm-validation-error': 'I3 0x401000 rdrand eax: hardware random number'},
     'swift://~/bin/prog: invalid: I3 0x401000 rdrand eax: hardware random number (the '
     'verdict stored at upload: the object servers refuse to run it)\n'),
    ({'x-zerovm-valid': 'false'},
     'swift://~/bin/prog: invalid (the verdict stored at upload: the object servers refuse '
     'to run it)\n')])
def test_a_stored_program_refused_at_upload_fails_plainly(capsys, headers: dict,
                                                          said: str) -> None:
    # its upload answered 201 (X-Zerovm-Valid: false); zc validate said "invalid: " with
    # nothing after it when the proxy stored no reason
    client = cli.Client(build_parser().parse_args(['validate', 'swift://~/bin/prog']))
    assert stored(client, headers) == []
    assert client.cmd_validate() == cli.EXIT_FAILED
    assert capsys.readouterr().err == said


def test_check_program_gives_bundle_the_note_too(avx2: Path) -> None:
    notes: list[str] = []
    assert zapps.check_program('bin/floats', avx2.read_bytes(), notes) is None
    assert len(notes) == 1 and notes[0].startswith('bin/floats: ') and \
        notes[0].endswith(NOTE_END)

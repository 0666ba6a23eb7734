"""A validated upload of a program built for another CPU (-mavx2): valid, with
``zvm validate``'s note (``prepare.absent_note``) carried from the validating worker
through ``Pool.validate`` to the proxy's stored verdict (``X-Zerovm-Validation-Note``
on the PUT's answer, GET and HEAD): the upload said only valid, and its jobs faulted."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from swift.common.swob import Request
from test_proxy_filter import ACCOUNT, FakeSwift

from zerocloud.proxy import uploads
from zerocloud.proxy.middleware import ProxyExecMiddleware
from zvm_core.elf import load_program
from zvm_core.pool import worker
from zvm_core.prepare import absent_note
from zvm_core.validator import validate


@pytest.fixture(scope='module')
def avx2(guest) -> Path:
    return guest('floats', flags=('-O2', '-mavx2'))


def expected_note(program: Path) -> str:
    loaded = load_program(program)
    verdict = validate(loaded)
    assert verdict.ok and verdict.absent
    return absent_note(loaded, verdict)


def validate_one(program: Path) -> dict:
    fd = os.open(program, os.O_RDONLY)
    try:
        return worker._validate_one({'rdtsc': 'virtualize'}, [fd])
    finally:
        os.close(fd)


def test_the_worker_notes_what_the_cpu_lacks(guest, avx2: Path) -> None:
    assert validate_one(avx2) == {'valid': True, 'reason': '', 'note': expected_note(avx2)}
    assert validate_one(guest('floats')) == {'valid': True, 'reason': '', 'note': ''}
    refused = validate_one(guest('rdrand'))
    assert not refused['valid'] and refused.get('note', '') == ''


def put(mw: ProxyExecMiddleware, body: bytes) -> Request:
    return Request.blank(ACCOUNT + '/bin/prog', method='PUT', body=body,
                         headers={'X-Zerovm-Validate': 'true'}).get_response(mw)


def test_an_upload_built_for_another_cpu_is_valid_with_a_note(avx2: Path) -> None:
    swift = FakeSwift()
    mw = ProxyExecMiddleware(swift, {})
    note = expected_note(avx2)
    resp = put(mw, avx2.read_bytes())
    assert resp.status_int == 201
    assert (resp.headers['X-Zerovm-Valid'], resp.headers['X-Zerovm-Validation-Note']) == \
        ('true', note)
    headers, _body = swift.objects[ACCOUNT + '/bin/prog']
    assert headers[uploads.SYSMETA_NOTE] == note
    for method in ('GET', 'HEAD'):
        shown = Request.blank(ACCOUNT + '/bin/prog', method=method).get_response(mw)
        assert shown.status_int == 200
        assert (shown.headers['X-Zerovm-Valid'], shown.headers['X-Zerovm-Validation-Note']) \
            == ('true', note)


def test_an_upload_without_such_instructions_has_no_note(guest) -> None:
    swift = FakeSwift()
    resp = put(ProxyExecMiddleware(swift, {}), guest('floats').read_bytes())
    assert resp.headers['X-Zerovm-Valid'] == 'true'
    assert 'X-Zerovm-Validation-Note' not in resp.headers
    assert uploads.SYSMETA_NOTE not in swift.objects[ACCOUNT + '/bin/prog'][0]


def test_a_stored_note_is_one_bounded_ascii_line(monkeypatch) -> None:
    # whatever a worker says, the header is one line of ASCII that Swift and HTTP take
    said = 'first\r\nsecond \u00e9\x01' + ' word' * 200
    monkeypatch.setattr(uploads.Validation, 'pool', lambda self: SimpleNamespace(
        validate=lambda fd, timeout: (True, '', said)))
    swift = FakeSwift()
    resp = put(ProxyExecMiddleware(swift, {}), b'\x7fELF program')
    note = resp.headers['X-Zerovm-Validation-Note']
    assert len(note) == uploads.NOTE_LIMIT and note.startswith('first second ? word word')
    assert note.endswith('...') and note.isascii() and note.isprintable()
    assert swift.objects[ACCOUNT + '/bin/prog'][0][uploads.SYSMETA_NOTE] == note

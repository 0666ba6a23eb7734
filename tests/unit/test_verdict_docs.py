"""The docs say what a validated upload and a refused cancel answer: the operator's
(the proxy filter's docstring, "Programs") and the user's (doc/http-api.md,
doc/swift-cli.md).  The note on a valid program's instructions the sandbox's CPU
lacks was in neither of the first two, and the refused cancel in none."""

from __future__ import annotations

from pathlib import Path

from zerocloud.proxy import middleware, uploads

REPO = Path(__file__).resolve().parents[2]


def _words(text: str) -> str:
    return ' '.join(text.split())


def test_every_header_of_a_stored_verdict_is_in_the_docs() -> None:
    stored = [(uploads.SYSMETA_VALID, 'true'), (uploads.SYSMETA_ERROR, 'e'),
              (uploads.SYSMETA_NOTE, 'n'),
              (uploads.SYSMETA_VALIDATOR, uploads.validator_version())]
    names = [name for name, _ in uploads.verdict_headers(stored)]
    assert names == ['X-Zerovm-Valid', 'X-Zerovm-Validation-Error', 'X-Zerovm-Validation-Note']
    docs = {'middleware': middleware.__doc__,
            **{doc: (REPO / 'doc' / doc).read_text() for doc in ('http-api.md',
                                                                 'swift-cli.md')}}
    assert {doc: [n for n in names if n not in text] for doc, text in docs.items()} == {
        doc: [] for doc in docs}


def test_a_cancel_whose_marker_swift_refused_is_in_http_api_md() -> None:
    text = _words((REPO / 'doc' / 'http-api.md').read_text())
    assert ('<job> was not cancelled: it runs on; the marker that stops it could not be '
            'stored in swift://<account>/<container> (413') in text

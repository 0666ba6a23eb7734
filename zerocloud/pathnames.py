"""A request path's names as text.

Swift's WSGI strings hold a path's UTF-8 bytes as Latin-1: a name quoted again
for a subrequest must be the text (``déjà``, not ``dÃ©jÃ``), and a path that is
not UTF-8 (or holds a NUL) is Swift's to refuse (412), not a name to quote.
"""

from __future__ import annotations

from collections.abc import Iterable

from swift.common.constraints import check_utf8
from swift.common.swob import wsgi_to_str


def text_names(parts: Iterable[str | None]) -> list[str | None] | None:
    """``parts`` (WSGI strings, or None) as text, or None if one fails Swift's own
    ``check_utf8`` (not UTF-8, or a NUL): its proxy answers such a path ``412 Invalid
    UTF8 or contains NULL``."""
    names = [None if part is None else wsgi_to_str(part) for part in parts]
    return names if all(not name or check_utf8(name) for name in names) else None

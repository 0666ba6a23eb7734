"""A request path's names as text.

Swift's WSGI strings hold a path's UTF-8 bytes as Latin-1: a name quoted again
for a subrequest must be the text (``déjà``, not ``dÃ©jÃ``), and a path that is
not UTF-8 (or holds a NUL) is Swift's to refuse (412), not a name to quote.
"""

from __future__ import annotations

from collections.abc import Iterable


def text_names(parts: Iterable[str | None]) -> list[str | None] | None:
    """``parts`` (WSGI strings, or None) as text, or None if one is not UTF-8 or holds
    a NUL: Swift's proxy answers such a path ``412 Invalid UTF8 or contains NULL``."""
    names = []
    for part in parts:
        if part is None:
            names.append(None)
            continue
        try:
            name = part.encode('latin-1').decode('utf-8')
        except UnicodeError:
            return None
        if '\0' in name:
            return None
        names.append(name)
    return names

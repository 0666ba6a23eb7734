"""What makes a file a zapp: the names of its job description and the magic
numbers of its archive formats.

Shared by the proxy filter (``zerocloud.zapp``, which unpacks archives) and
the ``zc`` client (which builds and recognises them), so that the client does
not import Swift's server side (eventlet) to know a tar when it sees one.
"""

from __future__ import annotations

MAPS = ('boot/system.map', 'boot/cluster.map')
GZIP_MAGIC = b'\x1f\x8b'
TAR_MAGIC_OFFSET = 257


def looks_like_archive(head: bytes) -> bool:
    """Gzip or ustar magic at the start of ``head`` (at least 262 bytes)."""
    return head.startswith(GZIP_MAGIC) or head[TAR_MAGIC_OFFSET:TAR_MAGIC_OFFSET + 5] == b'ustar'

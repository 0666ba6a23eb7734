"""What a job's answer looks like: one place for the proxy filter
(``zerocloud.proxy.response``, which makes it) and the ``zc`` client (which
reads it and must not import the proxy's modules)."""

from __future__ import annotations

SUMMARY_NODES = 1000        # above this many results, X-Nexe-* headers summarise the job

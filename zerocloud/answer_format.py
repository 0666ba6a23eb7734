"""What a job's answer looks like, and the request headers that choose it: one
place for the proxy filter (``zerocloud.proxy``, which makes it) and the ``zc``
client (which reads it and must not import the proxy's modules)."""

from __future__ import annotations

SUMMARY_NODES = 1000        # above this many results, X-Nexe-* headers summarise the job
NODES_HEADER = 'X-Nexe-Nodes'           # only in such a summary: the count of results
REPORT_HEADER = 'X-Zerovm-Report'       # "json": the answer is the JSON report
DEFERRED_HEADER = 'X-Zerovm-Deferred'   # always | auto | never (zerocloud.deferred)

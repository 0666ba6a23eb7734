"""What a job's answer looks like, and the request headers that choose it: one
place for the proxy filter (``zerocloud.proxy``, which makes it) and the ``zc``
client (which reads it and must not import the proxy's modules)."""

from __future__ import annotations

SUMMARY_NODES = 1000        # above this many results, X-Nexe-* headers summarise the job
NODES_HEADER = 'X-Nexe-Nodes'   # only in such a summary: the count of nodes (a node of
# replicas once, failed when one of them failed, as a deferred job's state counts them)
REPLICAS_HEADER = 'X-Nexe-Replica-Counts'   # in it when a node ran replicated: ``2 600``
# (<replicas> <nodes>, ...): the results, each replica's run, are their sum of products
REPORT_HEADER = 'X-Zerovm-Report'       # "json": the answer is the JSON report
DEFERRED_HEADER = 'X-Zerovm-Deferred'   # always | auto | never (zerocloud.deferred)
# what a job lost though it succeeded, entries comma-separated: ``<node>: N bytes written
# to an undeclared stdout``, ``<node>: <device> not stored (N bytes < min_size M)``; in a
# summary (over SUMMARY_NODES) counts: ``<n> nodes: N bytes ...``, ``N outputs not
# stored (under their min_size)``
DROPPED_HEADER = 'X-Nexe-Dropped'
UNDECLARED = 'bytes written to an undeclared stdout'
UNDER_MIN = 'not stored (under their min_size)'


def exit_error(retcode: int | None, stderr: str) -> str:
    """What a failed exit says (``X-Nexe-Error``; ``zc local run`` says the same):
    ``exit N: <the line of stderr that says what went wrong>``, the last one, but for
    a Lua error the one before its ``stack traceback:`` (Lua prints the message
    first); ``exit N`` alone for an empty stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if 'stack traceback:' in lines[1:]:
        last = lines[lines.index('stack traceback:') - 1]
    else:
        last = lines[-1] if lines else ''
    return f'exit {retcode}' + (f': {last}' if last else '')

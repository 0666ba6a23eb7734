"""How many channels a node may have: the nodes a ``connect`` links it to are counted.

Each channel of a node is a descriptor passed to a sandbox worker in one message
(SCM_MAX_FD), so a node has at most :data:`MAX_CHANNELS`.  A light module of its
own: the proxy checks a job's graph with it (``zerocloud.graph``), and ``zc``, which
expands a job to name each node's object and may not import the proxy's modules,
refuses the same job with the same message before it wires 50,000 x 50,000 links.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zerocloud.job import JobError
from zvm_core.limits import MAX_FDS

if TYPE_CHECKING:
    from zerocloud.job import Node

STD_CHANNELS = ('stdin', 'stdout', 'stderr')      # the channels every node has
# a node reads from at most MAX_CHANNELS - 4 nodes (its std channels and a wake-up pipe)
MAX_CHANNELS = MAX_FDS


def channel_count(node: Node, reads: int, writes: int) -> int:
    """Descriptors the node takes on its object server: one per channel (undeclared
    std streams included), and one that wakes it when data it reads arrives
    (``reads``/``writes``: its peers, counted before it is wired)."""
    declared = {d.name for d in node.devices} | set(STD_CHANNELS)
    return len(declared) + reads + writes + bool(reads)


def check_peers(node: Node, reads: int, writes: int) -> None:
    """Refuse a node that would read from ``reads`` nodes and write to ``writes``
    with more channels than a worker takes; ``zerocloud.job.expand`` asks before it
    wires the nodes (a connect of 50,000 nodes to 50,000 was wired first: 2.5
    billion links, the proxy's memory and event loop for minutes)."""
    count = channel_count(node, reads, writes)
    if count > MAX_CHANNELS:
        if writes > reads:      # too many readers
            fix = (f'a node writes to at most {MAX_CHANNELS - len(STD_CHANNELS)} '
                   'nodes. Connect it to fewer nodes: a smaller count in the groups it '
                   'writes to')
        else:
            fix = (f'a node reads from at most {MAX_CHANNELS - len(STD_CHANNELS) - 1}'
                   ' nodes. Connect fewer nodes to it: reduce in stages (groups of mappers '
                   'over parts of the objects, each connected to its own reducer, and '
                   'those reducers to a final one: doc/job-reference.md, "Reading from '
                   'many nodes")')
        raise JobError(
            f'Too many channels for node {node.name}: {count} (reads from '
            f'{reads} nodes, writes to {writes}); a node may '
            f'have at most {MAX_CHANNELS}, a fixed limit (each channel is a descriptor '
            f'passed to a sandbox worker in one message, no option raises it): {fix}')

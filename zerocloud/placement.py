"""Where each node of a job runs: on an object server that holds its data.

A node whose placement device names an object runs on a primary holding
that object (ring order), falling back to the other primaries and then the
handoffs when a server cannot take it; a node without data runs on any
object server of the policy, chosen from the job id so that a retried job
does not always land on the same server.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

from swift.common.storage_policy import POLICIES


def object_ring(swift_dir: str, policy_index: int):
    return POLICIES.get_object_ring(policy_index, swift_dir)


def nodes_for_object(ring, account: str, container: str, obj: str) -> tuple[int, Iterator[dict]]:
    """(partition, primaries then handoffs) for an object."""
    part, primaries = ring.get_nodes(account, container, obj)
    return part, itertools.chain(primaries, ring.get_more_nodes(part))


def any_nodes(ring, salt: str) -> tuple[int, list[dict]]:
    """(partition, every distinct object server in a salted order) for a node without data."""
    seen, servers = set(), []
    for dev in ring.devs:
        if dev is None or (dev['ip'], dev['port']) in seen:
            continue
        seen.add((dev['ip'], dev['port']))
        servers.append(dev)
    random.Random(salt).shuffle(servers)
    return random.Random(salt).randrange(ring.partition_count), servers

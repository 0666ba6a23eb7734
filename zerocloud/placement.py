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


class PartitionServers:
    """The primaries then the handoffs of a partition, looked up each time they are
    iterated: a job plans every node before it runs them (100,000 for a large
    wildcard), and the ring's device dicts, copied per node, would be held
    until it ends."""

    __slots__ = ('ring', 'part')

    def __init__(self, ring, part: int) -> None:
        self.ring, self.part = ring, part

    def __iter__(self) -> Iterator[dict]:
        return itertools.chain(self.ring.get_part_nodes(self.part),
                               self.ring.get_more_nodes(self.part))

    def primaries(self) -> list[dict]:
        return self.ring.get_part_nodes(self.part)

    def handoffs(self) -> Iterator[dict]:
        return self.ring.get_more_nodes(self.part)


def nodes_for_object(ring, account: str, container: str,
                     obj: str) -> tuple[int, PartitionServers]:
    """(partition, primaries then handoffs) for an object."""
    part = ring.get_part(account, container, obj)
    return part, PartitionServers(ring, part)


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

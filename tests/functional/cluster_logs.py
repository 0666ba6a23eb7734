"""What the local cluster's servers logged, for tests that check where nodes ran."""

from __future__ import annotations

import re

from zerocloud.devcluster import DevCluster


def executed(cluster: DevCluster, container: str) -> list[str]:
    """The ``execute`` log lines of every object server for objects of ``container``."""
    lines = []
    for i in range(len(cluster.object_ports)):
        log = cluster.log_file(cluster.server(f'object{i}'))
        lines += [line for line in log.read_text().splitlines()
                  if ' execute ' in line and f'/{container}/' in line]
    return lines


def storage_requests(cluster: DevCluster, container: str) -> list[str]:
    """Every line the object and container servers logged for ``container`` or its
    objects (their access log: one line per request, reads and listings included)."""
    names = [f'object{i}' for i in range(len(cluster.object_ports))] + ['container']
    lines = []
    for name in names:
        log = cluster.log_file(cluster.server(name))
        lines += [line for line in log.read_text().splitlines()
                  if f'/{container}' in line and '"' in line]
    return lines


def batched_ok(lines: list[str]) -> int:
    """How many nodes ran ok in batches, from the batches' ``execute`` lines (one per
    batch: ``ok*<count>``; those nodes' own lines are at debug)."""
    return sum(int(m[1]) for line in lines if (m := re.search(r' 200 ok\*(\d+) ', line)))

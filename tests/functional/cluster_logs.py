"""What the local cluster's servers logged, for tests that check where nodes ran."""

from __future__ import annotations

from zerocloud.devcluster import DevCluster


def executed(cluster: DevCluster, container: str) -> list[str]:
    """The ``execute`` log lines of every object server for objects of ``container``."""
    lines = []
    for i in range(len(cluster.object_ports)):
        log = cluster.log_file(cluster.server(f'object{i}'))
        lines += [line for line in log.read_text().splitlines()
                  if ' execute ' in line and f'/{container}/' in line]
    return lines

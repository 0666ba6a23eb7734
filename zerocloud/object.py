"""ZeroCloud object-server filter (placeholder: passes every request through).

This stands in for the real object-server middleware (running a node in the
sandbox with the local object as a channel; issue 6) so that clusters can
already be configured the way they will run.

Place it just before the object server::

    [pipeline:main]
    pipeline = healthcheck zerocloud object-server

    [filter:zerocloud]
    use = egg:zerocloud#zerocloud_object

Options: see ``etc/zerocloud.conf-sample``.
"""

from __future__ import annotations

from collections.abc import Callable


class ZeroCloudObject:
    """WSGI filter that hands every request to the object server unchanged."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, env: dict, start_response: Callable):
        return self.app(env, start_response)


def filter_factory(global_conf: dict, **local_conf: str) -> Callable:
    """paste.deploy entry point (``egg:zerocloud#zerocloud_object``)."""
    return ZeroCloudObject

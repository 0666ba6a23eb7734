"""ZeroCloud proxy filter (placeholder: passes every request through).

This stands in for the real proxy middleware (job parsing, authorisation,
placement, dispatch; issue 6) so that clusters can already be configured the
way they will run. It registers ``zerocloud`` in ``GET /info``, so a client
can tell that the filter is installed, and otherwise changes nothing.

Place it after the auth filter and before the final proxy-logging::

    [pipeline:main]
    pipeline = catch_errors gatekeeper healthcheck proxy-logging tempauth zerocloud
        proxy-logging proxy-server

    [filter:zerocloud]
    use = egg:zerocloud#zerocloud_proxy

Options: see ``etc/zerocloud.conf-sample``.
"""

from __future__ import annotations

from collections.abc import Callable

from swift.common.registry import register_swift_info


class ZeroCloudProxy:
    """WSGI filter that hands every request to the next app unchanged."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, env: dict, start_response: Callable):
        return self.app(env, start_response)


def filter_factory(global_conf: dict, **local_conf: str) -> Callable:
    """paste.deploy entry point (``egg:zerocloud#zerocloud_proxy``)."""
    register_swift_info('zerocloud')
    return ZeroCloudProxy

"""The ZeroCloud proxy filter (``egg:zerocloud#zerocloud_proxy``).

``zerocloud.proxy.middleware`` is the filter and its operator's manual;
``caller`` does every Swift read and write of a job as its user, ``uploads``
validates programs on upload.  The entry points that turn a request into a
job (``zerocloud.sources``, ``zerocloud.deferred``, ``zerocloud.chain``) take
a ``Caller`` and never import the filter.  See doc/operator-guide.md.

Importing this package stays light (no Swift proxy, no sandbox): paste
finds ``filter_factory`` here.
"""


def filter_factory(global_conf: dict, **local_conf):
    """Paste's entry point (setup.cfg, etc/proxy-server.conf-sample)."""
    from zerocloud.proxy.middleware import filter_factory as factory
    return factory(global_conf, **local_conf)

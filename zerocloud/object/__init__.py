"""The ZeroCloud object-server filter (``egg:zerocloud#zerocloud_object``).

``zerocloud.object.middleware`` is the filter and its operator's manual: it
runs the nodes the proxy sends (``zerocloud.wire``) next to the object they
read, one ``NodeRun`` per request, in the sandbox's warm workers
(``zvm_core.pool``); ``batch`` runs a batch of a wildcard job's nodes,
``diskfiles`` opens their objects; ``cache`` keeps the programs it received;
``hubwait`` keeps Swift's hub from spinning until its next timer.  See
doc/operator-guide.md.
"""

from zerocloud.object.cache import ContentCache
from zerocloud.object.middleware import ObjectExecMiddleware, filter_factory

__all__ = ['ContentCache', 'ObjectExecMiddleware', 'filter_factory']

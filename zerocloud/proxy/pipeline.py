"""Where the proxy filter sits in the proxy's pipeline, checked when it starts.

The filter authorises every object a job touches with ``swift.authorize``, which
the auth filter sets up, and its sub-requests carry no token of their own.  Placed
before the auth filter it would find neither, and every job of every user would be
a 401 that blames their token; so a server configured that way does not start,
and says what to move (as Swift's ``s3api`` checks its own place).
"""

from __future__ import annotations

from paste.deploy import loadwsgi
from swift.common.wsgi import PipelineWrapper, loadcontext

#: entry points (and usual section names) of the auth filters Swift documents
AUTH = frozenset({'tempauth', 'keystoneauth', 'auth_token', 'authtoken'})
OURS = 'zerocloud_proxy'


def check(conf: dict) -> None:
    """Raise ValueError when an auth filter comes after this filter in the pipeline of
    the server's config file (``__file__``; nothing to check without one)."""
    path = conf.get('__file__')
    if not path:
        return
    context = loadcontext(loadwsgi.APP, path)
    if not hasattr(context, 'filter_contexts'):      # an app, not a pipeline
        return
    filters = context.filter_contexts
    ours = next((i for i, f in enumerate(filters) if f.entry_point_name == OURS), None)
    if ours is None:
        return
    auth = next((f.name for f in filters[ours + 1:]
                 if f.entry_point_name in AUTH or f.name in AUTH), None)
    if auth is not None:
        raise ValueError(
            f'the {filters[ours].name} filter comes before {auth} in the proxy pipeline, '
            f'so it cannot authorise jobs (every job would be a 401): move it after '
            f'{auth}, before the quota filters, which must see what jobs write '
            f'(doc/operator-guide.md, '
            f'"Where the filters go"); pipeline: {PipelineWrapper(context)}')

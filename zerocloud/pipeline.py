"""Where the filters sit in a server's pipeline, checked when it starts.

The filter authorises every object a job touches with ``swift.authorize``, which
the auth filter sets up, and its sub-requests carry no token of their own.  Placed
before the auth filter it would find neither, and every job of every user would be
a 401 that blames their token; so a server configured that way does not start,
and says what to move (as Swift's ``s3api`` checks its own place).  Nor does a server
whose pipeline has the other server's filter (a copied section): the object filter
in a proxy answered every job 400 "execute requests go to /<device>/...".  Nor
does a proxy whose quota, encryption, versioning or read-only filters come before
the filter: a job's reads and writes are sub-requests to the rest of the pipeline,
so those saw none of them (a job stored its outputs past every quota).
"""

from __future__ import annotations

from paste.deploy import loadwsgi
from swift.common.wsgi import PipelineWrapper, loadcontext

#: entry points (and usual section names) of the auth filters Swift documents
AUTH = frozenset({'tempauth', 'keystoneauth', 'auth_token', 'authtoken'})
#: Swift's filters (entry points) that must see what jobs read and write, so come after
#: this filter (its sub-requests go to the rest of the pipeline), and what they miss before
_QUOTA = 'it would not see what jobs write (a job would store its outputs past the quota)'
_CRYPTO = ('jobs would bypass it (a node would read ciphertext and its outputs be stored '
           'unencrypted)')
AFTER = {'container_quotas': _QUOTA, 'account_quotas': _QUOTA,
         'keymaster': _CRYPTO, 'kms_keymaster': _CRYPTO, 'kmip_keymaster': _CRYPTO,
         'encryption': _CRYPTO,
         'versioned_writes': 'what jobs overwrite would not be kept as versions',
         'read_only': 'jobs could write into read-only accounts'}
OURS = 'zerocloud_proxy'
#: the app each filter's server runs (entry points of egg:swift#...)
APPS = {'zerocloud_proxy': 'proxy', 'zerocloud_object': 'object'}


def _pipeline(conf: dict):
    """The pipeline of the server's config file (``__file__``), or None: no file, or
    an app without filters."""
    path = conf.get('__file__')
    if not path:
        return None
    context = loadcontext(loadwsgi.APP, path)
    return context if hasattr(context, 'filter_contexts') else None


def check_server(conf: dict, filter_name: str) -> None:
    """Raise ValueError when the filter ``filter_name`` (an entry point of APPS) is in
    the pipeline of another server than its own."""
    context = _pipeline(conf)
    app = context and context.app_context.entry_point_name
    if app not in APPS.values() or app == APPS[filter_name]:
        return
    other = next(name for name, its in APPS.items() if its == app)
    raise ValueError(
        f'egg:zerocloud#{filter_name} is in the pipeline of this {app} server: it belongs '
        f'in the {APPS[filter_name]} server\'s; here use egg:zerocloud#{other} '
        f'(doc/operator-guide.md, "Where the filters go")')


def check(conf: dict) -> None:
    """Raise ValueError when an auth filter comes after this filter, or one of AFTER
    before it, in the pipeline of the server's config file (``__file__``; nothing to
    check without one)."""
    context = _pipeline(conf)
    if context is None:
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
    before = next((f for f in filters[:ours] if f.entry_point_name in AFTER), None)
    if before is not None:
        raise ValueError(
            f'{before.name} comes before the {filters[ours].name} filter in the proxy '
            f'pipeline, so {AFTER[before.entry_point_name]}: move {before.name} after '
            f'{filters[ours].name} (doc/operator-guide.md, "Where the filters go"); '
            f'pipeline: {PipelineWrapper(context)}')

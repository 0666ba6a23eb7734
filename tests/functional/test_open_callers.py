"""Who may open an account's objects with its apps: only who may run jobs in it.

An open (``/open/<a>/<c>/<o>``) runs as its caller, who must be allowed to POST
to the account, as for any job: even over a public object with a public
registered app, anyone else is refused (401/403) before a node is sent.  So an
open's nodes are the account's own jobs and take its share of the object
servers' slots (``zerovm_account_maxpool``/``maxqueue``): a share of their own
would let the account's users hold twice that on every server.
"""

from __future__ import annotations

import json
import uuid

import requests
from cluster_logs import executed
from swiftclient import Connection
from test_jobs import TEXT, wc, wc_job

from zerocloud.devcluster import DevCluster

PUBLIC = {'X-Container-Read': '.r:*'}


def test_only_who_may_run_jobs_in_an_account_opens_its_public_objects_with_its_apps(
        swift_cluster: DevCluster, make_account, connect, guest) -> None:
    """A fresh account makes its program, its registered app (``.zvm``) and an object
    public: an anonymous open and test2's are refused and run nothing; the owner's
    runs the app over the object."""
    name = f'open{uuid.uuid4().hex[:8]}'
    url, token = make_account(name)
    owner = Connection(preauthurl=url, preauthtoken=token, retries=0)
    kind, pub = f'text/x-{name}', f'pub-{name}'
    for container in ('bin', '.zvm', pub):
        owner.put_container(container, PUBLIC)
    owner.put_object('bin', 'wc', guest('wc').read_bytes())
    owner.put_object('.zvm', f'{kind}/config', json.dumps(
        wc_job('swift://~/bin/wc', '{.object_path}')), content_type='application/json')
    owner.put_object(pub, 'doc', TEXT, content_type=kind)
    opened = url.replace('/v1/', '/open/', 1) + f'/{pub}/doc'
    other = connect('test2:tester2').get_auth()[1]
    for headers, status, says in [
            ({}, 401, f'Unauthorized: a valid token is needed to execute jobs in '
                      f'swift://AUTH_{name}\n'),
            ({'X-Auth-Token': other}, 403, f'Denied: may not execute jobs in '
                                           f'swift://AUTH_{name}\n')]:
        resp = requests.get(opened, headers=headers, timeout=120)
        assert (resp.status_code, resp.text) == (status, says)
        assert 'X-Nexe-System' not in resp.headers
    assert executed(swift_cluster, pub) == []
    resp = requests.get(opened, headers={'X-Auth-Token': token}, timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.content == wc(TEXT)
    # one run: a 412 before it is the server not holding the program its digest named
    # (an earlier test's cache is not this one's), which the proxy then sent
    assert [line.split()[3] for line in executed(swift_cluster, pub)] in (['200'],
                                                                         ['412', '200'])


def test_an_open_of_another_accounts_private_object_says_how_to_read_it(
        conn: Connection, make_container, connect) -> None:
    """test2 opening test's private object was told "Denied: may not read ..." and
    nothing more, where a job's read of it named the read ACL and who grants it: an
    open's URL names the object's account, taken for the caller's."""
    container = make_container()
    conn.put_object(container, 'doc', TEXT, content_type='text/plain')
    url = conn.get_auth()[0]
    account = url.rsplit('/', 1)[1]
    other = connect('test2:tester2').get_auth()[1]
    resp = requests.get(url.replace('/v1/', '/open/', 1) + f'/{container}/doc',
                        headers={'X-Auth-Token': other}, timeout=120)
    assert (resp.status_code, resp.text) == (
        403, f'Denied: may not read swift://{account}/{container}/doc (swift://{account}/'
             f'{container} is of account {account}: only its owner can change it; ask them '
             'to add you to its read ACL (X-Container-Read), then run your job over it from '
             f'your own account: an open runs as a job of {account}, and only who may run '
             'jobs there can open its objects)\n')
    assert 'X-Nexe-System' not in resp.headers

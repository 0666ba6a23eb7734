"""A URL ending in ``/`` names what it names without it, as Swift's proxy reads it.

``/v1/AUTH_a/`` is the account and ``/v1/AUTH_a/c/`` the container (Swift's
proxy picks the controller that way: an empty container or object is none), so
a job, a query or an open sent there does what it does without the slash.  The
empty name was taken as a container or object named ``""``: a deferred job
POSTed to ``/v1/AUTH_a/`` was a 500 (its result container ``""`` was looked up),
a query there a 400 asking to POST to the account it was POSTed to, a job to
``/v1/AUTH_a/c/`` reading the request's object a node the object server refused
(``execute requests go to /<device>/...``), and an open of ``/open/AUTH_a/c/``
looked for an app of the container listing's ``text/plain``.
"""

from __future__ import annotations

import json

import requests
from swiftclient import Connection
from test_jobs import TEXT, wc

from zerocloud.devcluster import DevCluster


def _post(url: str, token: str, body: object, execute: str = '1.0',
          **headers: str) -> requests.Response:
    return requests.post(url, data=json.dumps(body), timeout=120, headers={
        'X-Auth-Token': token, 'X-Zerovm-Execute': execute,
        'Content-Type': 'application/json', **headers})


def _wc(conn: Connection, make_container, guest) -> str:
    """The URL of tests/programs/wc, put into a fresh container."""
    container = make_container('bin')
    conn.put_object(container, 'wc', guest('wc').read_bytes())
    return f'swift://~/{container}/wc'


def test_a_deferred_job_posted_to_the_account_with_a_slash_is_accepted(
        conn: Connection, make_container, make_object, guest) -> None:
    data = make_container('data')
    make_object(data, 'doc', TEXT)
    job = [{'name': 'wc', 'exec': {'path': _wc(conn, make_container, guest)},
            'devices': [{'name': 'stdin', 'path': f'swift://~/{data}/doc'},
                        {'name': 'stdout'}]}]
    url, token = conn.get_auth()
    resp = _post(url + '/', token, job, **{'X-Zerovm-Deferred': 'always'})
    assert resp.status_code == 202, resp.text
    assert resp.text.startswith(f'swift://{url.rsplit("/", 1)[1]}/.zvm/job-'), resp.text


def test_a_query_posted_to_the_account_with_a_slash_runs(
        conn: Connection, make_container, make_object) -> None:
    data = make_container('rows')
    make_object(data, 'r.csv', b'k,v\na,1\nb,2\n')
    url, token = conn.get_auth()
    resp = _post(url + '/', token, {'query': f'SELECT sum(v) AS s FROM swift://~/{data}/r.csv'},
                 'sql/1.0')
    assert (resp.status_code, resp.text) == (200, 's\r\n3\r\n')


def test_a_job_posted_to_a_container_with_a_slash_runs_as_without_it(
        conn: Connection, make_container, guest) -> None:
    """Its path-less stdin reads the request's (empty) input, as POSTed to ``/v1/a/c``."""
    container = make_container('to')
    job = [{'name': 'wc', 'exec': {'path': _wc(conn, make_container, guest)},
            'devices': [{'name': 'stdin'}, {'name': 'stdout'}]}]
    url, token = conn.get_auth()
    plain = _post(f'{url}/{container}', token, job)
    slashed = _post(f'{url}/{container}/', token, job)
    assert (plain.status_code, plain.content) == (200, wc(b''))
    assert (slashed.status_code, slashed.content) == (200, wc(b''))


def test_opening_a_container_with_a_slash_says_to_name_an_object(
        swift_cluster: DevCluster, conn: Connection, make_container) -> None:
    container = make_container('open')
    url, token = conn.get_auth()
    account = url.rsplit('/', 1)[1]
    opened = url.replace('/v1/', '/open/', 1) + f'/{container}/'
    resp = requests.get(opened, headers={'X-Auth-Token': token}, timeout=120)
    assert (resp.status_code, resp.text) == (
        400, f'open runs an app over an object, and swift://{account}/{container} is a '
             'container: add /<object> to the URL (GET /open/<account>/<container>/<object>)\n')

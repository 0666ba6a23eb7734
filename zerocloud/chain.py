"""Job chaining: a job whose response is a job runs that job next.

When a job's response has ``X-Zerovm-Execute`` and ``Content-Type:
application/json`` (a program writes them as ``message/cgi`` or
``message/http`` output, see ``zerocloud.cgiout``) and status 200, its body
runs as the next job, as the same caller in the same account, until a
response is not a job, ``chain_timeout`` seconds have passed (the job
description is then the response, with ``X-Chain-Stopped: chain_timeout``)
or it is larger than ``zerovm_maxconfig`` (then it is the response as is,
streamed like any other: only a job's body that runs next is read whole).
This lets a job decide at run time what to run next (fan out over objects
it found, pass values in ``exec.env``).

Only a job whose code is all the caller's own may do so: a job runs as the
caller, with the caller's rights to every object, so a program of another
account (readable through an ACL) that answered with a job would widen what
the caller chose to let it reach (their channels) to everything the caller
may read and write.  When any node's program, image or script, or the stored
job, zapp, script or app the request named, is an object of another account
than the request's (``Launch.foreign``; system images are the operator's),
its job is the response as is, with ``X-Chain-Stopped: foreign_code`` and
``X-Chain-Foreign-Code`` naming one such object.  The same for a job that read
an object of another account on any channel (``Launch.foreign_data``:
``foreign_input``, ``X-Chain-Foreign-Input``): what a program answers comes
from what it read, and an interpreter runs what it reads as code
(``python3 /dev/input``), so another account's data could choose the job.

The request's input (body or object) goes to the first job of the chain
with a readable device without a path.  Every response says
``X-Chain-Total-Time: <seconds>``; ``X-Nexe-*`` describe the last job.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from swift.common.swob import HTTPException, Response

from zerocloud import wire
from zerocloud.sources import Launch

TOTAL_TIME = 'X-Chain-Total-Time'
STOPPED = 'X-Chain-Stopped'
FOREIGN = 'X-Chain-Foreign-Code'
FOREIGN_INPUT = 'X-Chain-Foreign-Input'
JOB_TYPE = 'application/json'


def is_job(resp: Response) -> bool:
    return (resp.status_int == 200 and wire.EXECUTE in resp.headers
            and resp.content_type == JOB_TYPE)


def run(execute: Callable[[Launch], Response], launch: Launch, account: str,
        timeout: float, max_config: int) -> Response:
    """Run ``launch`` and the jobs its responses name, in ``account`` (the request's,
    where the caller runs jobs); the last response.

    Errors of any job are answers too (they end the chain); every launch is
    closed at the end.
    """
    started = time.monotonic()
    launches = [launch]
    try:
        while True:
            try:
                resp = execute(launch)
            except HTTPException as e:
                resp = e
            elapsed = time.monotonic() - started
            if is_job(resp) and resp.content_length is not None \
                    and resp.content_length <= max_config:
                foreign, data = launch.foreign(account), launch.foreign_data(account)
                if foreign:
                    resp.headers[STOPPED] = 'foreign_code'
                    resp.headers[FOREIGN] = str(foreign[0])
                elif data:
                    resp.headers[STOPPED] = 'foreign_input'
                    resp.headers[FOREIGN_INPUT] = str(data[0])
                elif elapsed < timeout:
                    launch = launch.follow(resp.body)
                    launches.append(launch)
                    continue
                else:
                    resp.headers[STOPPED] = 'chain_timeout'
            resp.headers[TOTAL_TIME] = f'{elapsed:.3f}'
            return resp
    finally:
        for each in launches:
            each.close()

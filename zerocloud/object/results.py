"""A node's results on the object server: its spec with the local object's
variables, the end of its stderr, and its report as the proxy gets it.

Shared by the node sent alone (``zerocloud.object.middleware``) and the
nodes of a batch (``zerocloud.object.batch``).
"""

from __future__ import annotations

import os
from dataclasses import replace

from zerocloud import wire
from zerocloud.httperrors import HTTPBadRequest

STDERR_TAIL = 64 << 10      # bytes of a node's stderr its report keeps (ZeroCloud's cap)


def stderr_of(outputs: list[tuple[str, str]]) -> bytes:
    """The last :data:`STDERR_TAIL` bytes the node wrote to its declared
    ``/dev/stderr`` (an output in ``outputs``), b'' if it declared none (then the
    worker kept the end: ``Pool.run_result``'s tails)."""
    path = dict(outputs).get('stderr')
    if not path:
        return b''
    with open(path, 'rb') as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - STDERR_TAIL))
        return f.read()


def node_report(spec: wire.NodeSpec, done: dict, stderr: bytes) -> wire.NodeReport:
    """What the proxy gets of a node's run (``done``: its report as ``Report.to_dict``
    gives it, or as a batch's worker sent it): its report, with the etags of the
    devices it declared and the end of its stderr."""
    declared = {d.name for d in spec.devices}
    return wire.NodeReport(
        status=done['status'], retcode=done['retcode'], message=done['message'],
        validation=done['validation']['state'], violations=done['validation']['violations'],
        etags={k: v for k, v in done['etags'].items() if k[len('/dev/'):] in declared},
        exit_state=done['exit_state'], engine=done['engine'], accounting=done['accounting'],
        stderr=stderr.decode('utf-8', 'replace'), engine_reason=done['engine_reason'],
        host_failure=done['host_failure'])


def local_env(spec: wire.NodeSpec, reader) -> dict:
    """The node's environment: the job's ``env`` with the local object's ``LOCAL_*``
    variables when the spec asks for them (they win, as when the proxy adds them)."""
    if not spec.local_env:
        return spec.env
    if reader is None:
        raise HTTPBadRequest(body=f'bad execute request: local_env without {wire.ACCESS}: '
                                  'GET\n')
    return {**spec.env, **reader.local_env}


def with_local_env(spec: wire.NodeSpec, reader) -> wire.NodeSpec:
    """The spec with :func:`local_env`'s environment."""
    return replace(spec, env=local_env(spec, reader)) if spec.local_env else spec

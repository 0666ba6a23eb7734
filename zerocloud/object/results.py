"""A node's results on the object server: its spec with the local object's
variables, the end of its stderr, and its report as the proxy gets it.

Shared by the node sent alone (``zerocloud.object.middleware``) and the
nodes of a batch (``zerocloud.object.batch``).
"""

from __future__ import annotations

import os
from dataclasses import replace

from swift.common.concurrency import spawn, trampoline

from zerocloud import wire
from zerocloud.httperrors import HTTPBadRequest

STDERR_TAIL = 64 << 10      # bytes of a node's stderr its report keeps (ZeroCloud's cap)


class Tail:
    """The last :data:`STDERR_TAIL` bytes written to a pipe: the stderr of a node
    that did not declare one.  No quota, no disk: a program never fails for
    what it writes there, and its report still says why it stopped."""

    def __init__(self) -> None:
        self._read_fd, self.fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self._read_fd, False)
        self.data = bytearray()
        self.reader = spawn(self._read)

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._read_fd, wire.CHUNK)
            except BlockingIOError:
                trampoline(self._read_fd, read=True)
                continue
            if not chunk:
                return
            self.data += chunk
            del self.data[:-STDERR_TAIL]

    def tail(self) -> bytes:
        """What was written, once every writer is done (the worker closed its copy)."""
        self._close_writer()
        self.reader.wait()
        return bytes(self.data)

    def _close_writer(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def close(self) -> None:
        self._close_writer()
        self.reader.kill()
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None


def _file_tail(path: str) -> bytes:
    """The last :data:`STDERR_TAIL` bytes of a written channel's file."""
    with open(path, 'rb') as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - STDERR_TAIL))
        return f.read()


def stderr_of(opened: list, outputs: list[tuple[str, str]]) -> bytes:
    """The end of what the node wrote to ``/dev/stderr``, declared or not."""
    tail = next((f for f in opened if isinstance(f, Tail)), None)
    if tail is not None:
        return tail.tail()
    path = dict(outputs).get('stderr')
    return _file_tail(path) if path else b''


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

"""A node of a batch's report, encoded for the proxy (``zerocloud.object.batch``).

A worker sends a run's report as its values without their keys
(``zvm_core.pool``, ``RunResult.fields``).  A proxy that reads ``batch/reports``
blocks (``zerocloud.wire.ReportsBlock``) gets those values as they are, their
JSON text as the worker wrote it (``RunResult.parts``: not decoded and encoded
again), with the etags of the node's declared devices only and the end of its
stderr added
(:data:`REPORT_NAMES` names them in each block): no dicts, ``NodeReport`` and
JSON with keys are made per node (~10 us a node of the object server's CPU,
and ~2.5 KiB of a ``wc`` node's answer of which a block keeps ~350 bytes).  A
proxy of before blocks gets ``report.json`` as before (``node_report``).
"""

from __future__ import annotations

from zerocloud import wire
from zerocloud.object.results import node_report
from zvm_core.pool import ACCOUNTING_FIELDS, CHANNEL_FIELDS, REPORT_FIELDS, RunResult, as_json

# How a ``batch/reports`` block's rows carry a report (``wire.ReportsBlock``): the
# worker's values as it sent them (``RunResult.fields``), then the end of the stderr.
REPORT_NAMES = {'report': (*REPORT_FIELDS, 'stderr'), 'accounting': ACCOUNTING_FIELDS,
                'channel': CHANNEL_FIELDS}
_ETAGS_AT = REPORT_FIELDS.index('etags')


class NodeAnswer:
    """A node's report as its worker sent it, encoded only for the answer: its values
    passed on in a ``batch/reports`` block (not made into dicts, a ``NodeReport``,
    then JSON with its keys: ~10 us a node), or ``report.json`` for a proxy of
    before blocks (``node_report``)."""

    __slots__ = ('spec', 'result', 'stderr')

    def __init__(self, spec: wire.NodeSpec, result: RunResult, stderr: bytes) -> None:
        self.spec, self.result, self.stderr = spec, result, stderr

    @property
    def status(self) -> str:
        return self.result.status

    def values(self) -> list:
        """The row's values (``REPORT_NAMES``): the etags of the declared devices only."""
        values = list(self.result.fields)
        values[_ETAGS_AT] = self._declared(values[_ETAGS_AT])
        values.append(self.stderr.decode('utf-8', 'replace'))
        return values

    def encoded(self) -> bytes:
        """:meth:`values` as JSON (``json.dumps``'s): the worker's text of the report's
        fields as it came (``RunResult.parts``) around its etags of declared devices
        (decoding every value, then encoding them again, was ~6 us of a node's)."""
        parts = self.result.parts
        if parts is None:
            return as_json(self.values()).encode()
        stderr = as_json(self.stderr.decode('utf-8', 'replace'))
        etags = as_json(self._declared(self.result.etags))
        return f'[{parts[0]}, {etags}, {parts[1]}, {stderr}]'.encode()

    def _declared(self, etags: dict[str, str]) -> dict[str, str]:
        """``etags`` of the spec's declared devices."""
        declared = {d.name for d in self.spec.devices}
        return {k: v for k, v in etags.items() if k[len('/dev/'):] in declared}

    def to_json(self) -> bytes:
        return node_report(self.spec, self.result.data, self.stderr).to_json()

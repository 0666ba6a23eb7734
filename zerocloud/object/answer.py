"""A node of a batch's report, encoded for the proxy (``zerocloud.object.batch``).

A worker sends a run's report as its values without their keys
(``zvm_core.pool``, ``RunResult.fields``).  A proxy that reads ``batch/reports``
blocks (``zerocloud.wire.ReportsBlock``) gets those values as they are, with
the etags of the node's declared devices only and the end of its stderr added
(:data:`REPORT_NAMES` names them in each block): no dicts, ``NodeReport`` and
JSON with keys are made per node (~10 us a node of the object server's CPU,
and ~2.5 KiB of a ``wc`` node's answer of which a block keeps ~350 bytes).  A
proxy of before blocks gets ``report.json`` as before (``node_report``).
"""

from __future__ import annotations

from zerocloud import wire
from zerocloud.object.results import node_report
from zvm_core.pool import ACCOUNTING_FIELDS, CHANNEL_FIELDS, REPORT_FIELDS, RunResult

# How a ``batch/reports`` block's rows carry a report (``wire.ReportsBlock``): the
# worker's values as it sent them (``RunResult.fields``), then the end of the stderr.
REPORT_NAMES = {'report': (*REPORT_FIELDS, 'stderr'), 'accounting': ACCOUNTING_FIELDS,
                'channel': CHANNEL_FIELDS}
_STATUS_AT, _ETAGS_AT = REPORT_FIELDS.index('status'), REPORT_FIELDS.index('etags')


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
        return self.result.fields[_STATUS_AT]

    def values(self) -> list:
        """The row's values (``REPORT_NAMES``): the etags of the declared devices only."""
        values = list(self.result.fields)
        declared = {d.name for d in self.spec.devices}
        values[_ETAGS_AT] = {k: v for k, v in values[_ETAGS_AT].items()
                             if k[len('/dev/'):] in declared}
        values.append(self.stderr.decode('utf-8', 'replace'))
        return values

    def to_json(self) -> bytes:
        return node_report(self.spec, self.result.data, self.stderr).to_json()

"""The execution report: what happened, what it cost, digests of the outputs.

``status`` is one of :data:`STATUSES`.  ``ok`` means the program called
``exit``/``exit_group`` (whatever the code); every other status says why the
run ended without that.  The JSON form is what ``zvm run --report`` prints
and what the Swift middleware turns into ``X-Nexe-*`` headers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

STATUSES = ('ok', 'fault', 'fuel', 'timeout', 'quota', 'memory', 'validation', 'killed')


@dataclass
class ChannelAccounting:
    reads: int = 0
    read_bytes: int = 0
    writes: int = 0
    write_bytes: int = 0


@dataclass
class Accounting:
    fuel: int = 0               # bytes of guest code executed: the deterministic budget
    syscalls: int = 0
    unknown_syscalls: dict[str, int] = field(default_factory=dict)
    channels: dict[str, ChannelAccounting] = field(default_factory=dict)
    peak_memory: int = 0
    wall_time: float = 0.0


@dataclass
class Report:
    status: str
    retcode: int | None = None
    message: str = ''
    validation: dict = field(default_factory=lambda: {'state': 'ok', 'violations': []})
    etags: dict[str, str] = field(default_factory=dict)
    accounting: Accounting = field(default_factory=Accounting)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f'unknown status {self.status!r}')

    @property
    def ok(self) -> bool:
        return self.status == 'ok'

    def to_dict(self) -> dict:
        # by hand: dataclasses.asdict deep-copies and costs ~0.2 ms per report
        acc = self.accounting
        return {
            'status': self.status, 'retcode': self.retcode, 'message': self.message,
            'validation': {'state': self.validation.get('state'),
                           'violations': list(self.validation.get('violations', ()))},
            'etags': dict(self.etags),
            'accounting': {
                'fuel': acc.fuel, 'syscalls': acc.syscalls,
                'unknown_syscalls': dict(acc.unknown_syscalls),
                'channels': {k: vars(v).copy() for k, v in acc.channels.items()},
                'peak_memory': acc.peak_memory, 'wall_time': acc.wall_time,
            },
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

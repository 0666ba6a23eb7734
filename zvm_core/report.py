"""The execution report: what happened, what it cost, digests of the outputs.

``status`` is one of :data:`STATUSES`.  ``ok`` means the program called
``exit``/``exit_group`` (whatever the code); every other status says why the
run ended without that.  ``host_failure`` says that a ``killed`` run was the host's
trouble (a sandbox worker that died or did not answer, host I/O that failed,
a native loader or template that could not start the guest, e.g. too many
descriptors in flight): the program may well run on another try or replica,
and the proxy answers 503 for it, not the 500 of a bug of ours.  It is set
where the failure is made; the message says it for humans.  The JSON form is
what ``zvm run --report`` prints and what the Swift middleware turns into
``X-Nexe-*`` headers.

:func:`zerovm_text` is ZeroVM's report (``src/main/report.c``, release
build): six lines, validation state, daemon state, user return code, etags,
accounting, exit state, and an empty seventh, the format ZeroCloud parsed.
:func:`zerovm_outcome` gives a report's exit state and ZeroVM's exit code.
"""

from __future__ import annotations

import errno
import json
import signal
from dataclasses import dataclass, field, fields

# ``refused``: nothing ran, the request's mistake: the host cannot run the engine it
# asked for, or its image is not a tar
STATUSES = ('ok', 'fault', 'fuel', 'timeout', 'quota', 'memory', 'validation', 'killed',
            'refused')


@dataclass
class ChannelAccounting:
    reads: int = 0
    read_bytes: int = 0
    writes: int = 0
    write_bytes: int = 0

    def copy(self) -> ChannelAccounting:
        """A copy for a report (``copy.copy`` and ``dataclasses.replace`` cost ~4x more)."""
        return ChannelAccounting(self.reads, self.read_bytes, self.writes, self.write_bytes)


@dataclass
class Accounting:
    fuel: int = 0               # bytes of guest code executed: the deterministic budget
    syscalls: int = 0
    unknown_syscalls: dict[str, int] = field(default_factory=dict)
    channels: dict[str, ChannelAccounting] = field(default_factory=dict)
    peak_memory: int = 0
    wall_time: float = 0.0
    start: str = 'entry'        # or from a start-up snapshot: 'recorded', 'resumed'


@dataclass
class Report:
    status: str
    retcode: int | None = None
    message: str = ''
    validation: dict = field(default_factory=lambda: {'state': 'ok', 'violations': []})
    etags: dict[str, str] = field(default_factory=dict)
    accounting: Accounting = field(default_factory=Accounting)
    exit_state: str = ''        # ZeroVM's exit state when more precise than the status
    engine: str = 'emulated'    # or 'native' (zvm_core.engines)
    engine_reason: str = ''     # why ``auto`` chose the emulated engine (zvm_core.prepare)
    host_failure: bool = False  # ``killed`` by the host's trouble, not by a bug of ours
    # where an invalid-instruction fault stopped the guest, for ``prepare.explained``
    # (which says when it is an extension the sandbox's CPU lacks): the engine's answer
    # to the run's caller, in the message already, so neither sent on nor compared
    invalid_at: int | None = field(default=None, compare=False, metadata={'local': True})

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
            'etags': dict(self.etags), 'exit_state': self.exit_state, 'engine': self.engine,
            'engine_reason': self.engine_reason, 'host_failure': self.host_failure,
            'accounting': {
                'fuel': acc.fuel, 'syscalls': acc.syscalls,
                'unknown_syscalls': dict(acc.unknown_syscalls),
                'channels': {k: vars(v).copy() for k, v in acc.channels.items()},
                'peak_memory': acc.peak_memory, 'wall_time': acc.wall_time,
                'start': acc.start,
            },
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)


# The names of the fields of a report in their order, as a pool worker's reply carries
# them without their keys (``zvm_core.pool``) and an object server's ``batch/reports``
# passes them on to the proxy (``zerocloud.wire``): a field added here travels with them.
# ``validation`` travels as [state, violations], ``accounting`` as its values in the
# order of ACCOUNTING_FIELDS with ``channels`` as [[alias, *the CHANNEL_FIELDS]].
REPORT_FIELDS = tuple(f.name for f in fields(Report) if not f.metadata.get('local'))
# a report is made again from these values by position (``pool._report_of``): the
# fields that do not travel come last, left at their defaults
assert [f.name for f in fields(Report)][:len(REPORT_FIELDS)] == list(REPORT_FIELDS)
ACCOUNTING_FIELDS = tuple(f.name for f in fields(Accounting))
CHANNEL_FIELDS = tuple(f.name for f in fields(ChannelAccounting))


# exit codes: ZeroVM exits with the errno of the first error (src/main/report.c)
_CODES = {'fault': errno.EINTR, 'fuel': errno.EINTR, 'timeout': errno.EINTR,
          'quota': errno.EDQUOT, 'memory': errno.ENOMEM, 'validation': errno.ENOEXEC,
          'killed': errno.EIO, 'refused': errno.EINVAL}
VALIDATION_PASSED, VALIDATION_FAILED, VALIDATION_SKIPPED = 0, 1, 2
# the exit state of a run stopped for writing again to a pipe whose reader went away
# (``zvm_core.syscalls.io``): a ``fault``, as SIGPIPE's default action ends a program
SIGPIPE_STATE = f'Signal {signal.SIGPIPE} from untrusted code'


def zerovm_outcome(report: Report) -> tuple[str, int]:
    """(exit state, exit code) as ZeroVM gives them for this report.

    A program that exited ended the session normally ("ok", 0) whatever its
    code, unless it exited 0 after a write the quota refused or cut short
    (its output is not what it wrote: EDQUOT); a signal-like stop is "Signal N
    from untrusted code: Halting at 0x...", a timeout "session timeout" (both
    EINTR), the rest the message.
    """
    if report.retcode is not None and not (report.status == 'quota' and report.retcode == 0):
        return 'ok', 0
    if report.exit_state:
        return report.exit_state, errno.EINTR
    if report.status == 'timeout':
        return 'session timeout', errno.EINTR
    return report.message.replace('\n', ' '), _CODES[report.status]


def zerovm_text(validation: int, retcode: int, etags: list[tuple[str, str]],
                acc: Accounting, cpu: tuple[float, float], state: str) -> str:
    """ZeroVM's report: ``etags`` in channel order ("disabled" if none), ``cpu`` =
    (system, user) seconds; the accounting counts every channel as local I/O."""
    chans = acc.channels.values()
    counts = [sum(c.reads for c in chans), sum(c.read_bytes for c in chans),
              sum(c.writes for c in chans), sum(c.write_bytes for c in chans), 0, 0, 0, 0]
    tags = ' '.join(f'{name} {digest}' for name, digest in etags) or 'disabled'
    system, user = (max(0.0, t) for t in cpu)   # a difference of times can be -1e-17
    lines = [str(validation), '0', str(retcode), tags,
             f'{system:.2f} {user:.2f} ' + ' '.join(map(str, counts)),
             state.replace('\n', ' '), '']
    return '\n'.join(lines) + '\n'

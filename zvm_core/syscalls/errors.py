"""Outcomes a system-call handler can raise."""

from __future__ import annotations


class SysError(Exception):
    """Answer the call with ``-errno``."""

    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno


class Stop(Exception):
    """End the run: ``status`` as in the report, ``retcode`` when the guest exited;
    ``host_failure``: the host's trouble, not the program's nor ours (``Report.host_failure``);
    ``invalid_at``: the rip of an invalid instruction that ended it (``Report.invalid_at``)."""

    def __init__(self, status: str, message: str = '', retcode: int | None = None,
                 exit_state: str = '', host_failure: bool = False,
                 invalid_at: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retcode = status, message, retcode
        self.exit_state = exit_state        # ZeroVM's, when more precise (a native fault)
        self.host_failure = host_failure
        self.invalid_at = invalid_at


def host_io_failure(call: str, err: OSError) -> Stop:
    """The end of a run whose channel's host side failed in ``call`` (ZeroVM: EIO):
    ``killed``, a host failure, under every engine and path alike."""
    return Stop('killed', f'host I/O failed in {call}: {err.strerror or err}', host_failure=True)

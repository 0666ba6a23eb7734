"""Whether this host can run the native engine: one real run of a tiny guest.

:func:`probe_tsc` does the same for a guest that executes ``rdtsc``, traced
(``tsc.py``): its high half, 0 from the virtual counter, plus 42 is its exit
status; where ptrace is not allowed the reason is returned.

The guest asks for its pid (a notification the supervisor answers: 1) and
exits with it plus 41, then tries ``int 0x80``-free nothing else; a host
where the loader cannot be built, seccomp user notification is missing or
the loader's set-up fails gives the reason instead of 42.  A failure for want
of time or resources (a loaded host: a timeout, no descriptors, no memory) is
a :class:`Transient` reason: the caller probes again later.
"""

from __future__ import annotations

import errno
import re

from zvm_core.build.toolchain import BuildError
from zvm_core.elf import PF_R, PF_X, Program, Segment

# rdtsc; lea edi, [rdx+42]; mov eax, 231 (exit_group); syscall
TSC_CODE = bytes.fromhex('0f31' '8d7a2a' 'b8e7000000' '0f05')
# mov eax, 39 (getpid); syscall; lea edi, [rax+41]; mov eax, 231 (exit_group); syscall
CODE = bytes.fromhex('b827000000' '0f05' '8d7829' 'b8e7000000' '0f05')
ENTRY = 0x400000
# a loaded host's failures; any other says what this host cannot do
BUSY_ERRNOS = frozenset({errno.EAGAIN, errno.EINTR, errno.EMFILE, errno.ENFILE, errno.ENOMEM,
                         errno.ENOBUFS, errno.ETOOMANYREFS, errno.ETIMEDOUT})
_LOADER_ERRNO = re.compile(r'\(errno (\d+)\)')


class Transient(str):
    """A probe's failure that says nothing about the host but that it was busy."""


def _busy(report) -> bool:
    if report.status == 'timeout' or 'timed out' in report.message:
        return True
    found = _LOADER_ERRNO.search(report.message)
    return found is not None and int(found.group(1)) in BUSY_ERRNOS


def probe(code: bytes = CODE, tsc: bool = False) -> str | None:
    from zvm_core.engines.native.supervisor import run
    program = Program(sha256='probe', entry=ENTRY,
                      segments=(Segment(ENTRY, len(code), PF_R | PF_X, code),),
                      code=(), phdr_addr=0, phent=56, phnum=0, tls=None, size=len(code))
    try:
        report = run(program, [], ['probe'], {}, memory=32 << 20, timeout=10.0, tsc=tsc)
    except (BuildError, OSError) as e:
        reason = f'the native loader cannot run: {e}'
        return Transient(reason) if getattr(e, 'errno', None) in BUSY_ERRNOS else reason
    if report.status != 'ok' or report.retcode != 42:
        reason = f'the probe run ended {report.status} ({report.retcode}): {report.message}'
        return Transient(reason) if _busy(report) else reason
    return None


def probe_tsc() -> str | None:
    return probe(TSC_CODE, tsc=True)

"""Whether this host can run the native engine: one real run of a tiny guest.

``probe(TSC_CODE, tsc=True)`` does the same for a guest that executes ``rdtsc``, traced
(``tsc.py``): its high half, 0 from the virtual counter, plus 42 is its exit
status; where ptrace is not allowed the reason is returned.

The guest asks for its pid (a notification the supervisor answers: 1) and
exits with it plus 41, then tries ``int 0x80``-free nothing else; a host
where the loader cannot be built, seccomp user notification is missing or
the loader's set-up fails gives the reason instead of 42.
"""

from __future__ import annotations

from zvm_core.build.toolchain import BuildError
from zvm_core.elf import PF_R, PF_X, Program, Segment

# rdtsc; lea edi, [rdx+42]; mov eax, 231 (exit_group); syscall
TSC_CODE = bytes.fromhex('0f31' '8d7a2a' 'b8e7000000' '0f05')
# mov eax, 39 (getpid); syscall; lea edi, [rax+41]; mov eax, 231 (exit_group); syscall
CODE = bytes.fromhex('b827000000' '0f05' '8d7829' 'b8e7000000' '0f05')
ENTRY = 0x400000


def probe(code: bytes = CODE, tsc: bool = False) -> tuple[str | None, bool]:
    """(why the guest did not run as it should, or None; whether a busy moment of the
    host failed it, not what the host is: its user had too many descriptors in flight,
    ETOOMANYREFS, supervisor._failure)."""
    from zvm_core.engines.native.supervisor import run
    program = Program(sha256='probe', entry=ENTRY,
                      segments=(Segment(ENTRY, len(code), PF_R | PF_X, code),),
                      code=(), phdr_addr=0, phent=56, phnum=0, tls=None, size=len(code))
    try:
        report = run(program, [], ['probe'], {}, memory=32 << 20, timeout=10.0, tsc=tsc)
    except (BuildError, OSError) as e:
        return f'the native loader cannot run: {e}', False
    if report.status != 'ok' or report.retcode != 42:
        return (f'the probe run ended {report.status} ({report.retcode}): {report.message}',
                report.status == 'killed' and '(errno 109)' in report.message)
    return None, False


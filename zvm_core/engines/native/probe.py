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

A probe costs a loader's spawn (~7 ms of CPU, 15-30 ms), which every ``zvm``
command paid.  Under :func:`remembered` (``zvm``'s commands) a probe that
found the host able is kept on disk, ``verdicts/`` in the loader's cache
directory (``ZVM_NATIVE_CACHE``), keyed by what decides it: the kernel and
this boot, the loader binary and the engine's code, the process's seccomp,
capabilities, security label, namespaces, ids and limits, and the switches
and sysctls of namespaces, seccomp and ptrace.  Failures are not kept (each
start probes again and says why).  A kept verdict that is wrong shows as a run
its host killed (``host_failure``): the caller then calls :func:`forget` and
probes again (``zvm run`` says so).  A kept verdict only skips the probe: the
loader still checks every step of its set-up (seccomp among them), so a wrong
one fails a run, never weakens it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

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


# what the verdict depends on besides the code: read, missing ones as such
_SETTINGS = ('/proc/sys/kernel/random/boot_id', '/proc/sys/kernel/seccomp/actions_avail',
             '/proc/sys/kernel/unprivileged_userns_clone', '/proc/sys/user/max_user_namespaces',
             '/proc/sys/kernel/apparmor_restrict_unprivileged_userns',
             '/proc/sys/kernel/yama/ptrace_scope', '/proc/sys/vm/mmap_min_addr',
             '/proc/self/attr/current')
_STATUS = ('Uid:', 'Gid:', 'Groups:', 'NoNewPrivs:', 'Seccomp:', 'Seccomp_filters:',
           'CapEff:', 'CapPrm:', 'CapBnd:')
_NAMESPACES = ('user', 'mnt', 'pid', 'net', 'ipc', 'uts', 'cgroup')
_LIMITS = ('RLIMIT_NOFILE', 'RLIMIT_NPROC', 'RLIMIT_AS', 'RLIMIT_MEMLOCK', 'RLIMIT_CPU')
_WORKS = 'works\n'
_keep = False
_kept: set[str] = set()     # the kinds whose answer this process took from the disk


@contextlib.contextmanager
def remembered() -> Iterator[None]:
    """Within: a probe that finds the host able is kept on disk, and taken from there."""
    global _keep
    before, _keep = _keep, True
    try:
        yield
    finally:
        _keep = before


def _read(path: str) -> str:
    try:
        with open(path, 'rb') as f:
            return f.read(4096).decode(errors='replace')
    except OSError as e:
        return f'<{e.errno}>'


def host_key(kind: str) -> str:
    """Everything that decides the ``kind`` probe's answer here, as text."""
    from zvm_core.engines.native.loader import loader_path
    loader = loader_path()
    code = Path(__file__).parent
    parts = [kind, *os.uname(), sys.version, sys.executable,
             f'{os.getuid()} {os.geteuid()} {os.getgid()} {os.getegid()}',
             os.environ.get('ZVM_NATIVE_NAMESPACES', '')]
    for path in (loader, *sorted(p for p in code.iterdir() if p.suffix in ('.py', '.c', '.so'))):
        st = path.stat()
        parts.append(f'{path} {st.st_ino} {st.st_size} {st.st_mtime_ns}')
    parts += (f'{path}={_read(path).strip()}' for path in _SETTINGS)
    parts += (line for line in _read('/proc/self/status').splitlines()
              if line.startswith(_STATUS))
    for name in _NAMESPACES:
        try:
            parts.append(f'{name} {os.readlink(f"/proc/self/ns/{name}")}')
        except OSError as e:
            parts.append(f'{name} <{e.errno}>')
    parts += (f'{name} {resource.getrlimit(getattr(resource, name))}' for name in _LIMITS)
    return '\n'.join(parts) + '\n'


def _entry(kind: str) -> tuple[Path, str] | None:
    """Where the ``kind`` verdict is kept for this host, and its key (None: nowhere,
    when the loader cannot be built or its directory made: the probe says why)."""
    from zvm_core.engines.native.loader import cache_dir
    try:
        key = host_key(kind)
        where = cache_dir() / 'verdicts'
    except (BuildError, OSError):
        return None
    return where / f'{kind}-{hashlib.sha256(key.encode()).hexdigest()[:32]}', key


def _recall(path: Path, key: str) -> bool:
    try:
        return path.read_text() == key + _WORKS
    except (OSError, UnicodeDecodeError):
        return False


def _keep_verdict(path: Path, key: str) -> None:
    """Written whole or not at all (a rename); an older verdict of this kind goes:
    its key no longer holds."""
    tmp = path.with_name(f'.{path.name}.{os.getpid()}')
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        for old in path.parent.glob(f'{path.name.partition("-")[0]}-*'):
            old.unlink(missing_ok=True)
        tmp.write_text(key + _WORKS)
        os.replace(tmp, path)
    except OSError:         # a cache that cannot be written: probe at each start
        tmp.unlink(missing_ok=True)


def recalled(kind: str) -> bool:
    """Whether this process took the ``kind`` verdict (``native``, ``tsc``) from the disk."""
    return kind in _kept


def forget() -> frozenset[str]:
    """Drop the verdicts this process took from the disk (a run then failed where they
    said the host was able): their kinds, empty when the failure cannot be theirs."""
    for kind in _kept:
        entry = _entry(kind)
        if entry is not None:
            entry[0].unlink(missing_ok=True)
    had = frozenset(_kept)
    _kept.clear()
    return had


def probe(code: bytes = CODE, tsc: bool = False) -> str | None:
    """Why the native engine (``tsc``: its traced ``rdtsc``) cannot run here, or None;
    under :func:`remembered`, a kept verdict instead of the run when it holds."""
    kind = 'tsc' if tsc else 'native'
    entry = _entry(kind) if _keep else None
    if entry is not None and _recall(*entry):
        _kept.add(kind)
        return None
    reason = _probe(code, tsc)
    if reason is None and entry is not None:
        _keep_verdict(*entry)
    return reason


def _probe(code: bytes, tsc: bool) -> str | None:
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

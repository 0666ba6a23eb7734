"""A ZeroVM session: a manifest in; ZeroVM's report, exit state and exit code out.

The steps, and the exit code of the first that fails (ZeroVM keeps the first
error's errno): the manifest's grammar and values (``EFAULT``, ``ENOMEM``,
``ENFILE``; all checked before anything is opened), the program file
(``ENOENT``, or ``EIO`` for what is not a regular file of a sane size), the
channels in manifest order (``EFAULT``, ``EINVAL``, ``EPROTONOSUPPORT`` or
the host's errno), the ELF checks and validation (``ENOEXEC``), the NVRAM
and its tar images (``EFAULT``), the machine (``ENOMEM``), then the run (0
when the program exited, whatever its code).

The program always gets validated, even when the caller asks to skip it
(``-s``): the guard needs the instruction map, so skipping only changes the
reported validation state to 2.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from zvm_core.channels import (
    READ,
    WRITE,
    Channel,
    ChannelSetupError,
    standard_order,
    zerovm_channel,
)
from zvm_core.elf import MAX_FILE_SIZE
from zvm_core.engines import EngineError
from zvm_core.executor import MAX_MEMORY, MAX_TIMEOUT, MEMORY_ETAG, Limits, SetupError, execute
from zvm_core.prepare import Rejected, prepare
from zvm_core.report import (
    VALIDATION_FAILED,
    VALIDATION_PASSED,
    VALIDATION_SKIPPED,
    Accounting,
    Report,
    zerovm_outcome,
    zerovm_text,
)
from zvm_core.syscalls.fs import Image, ImageError
from zvm_core.validator import Policy, VerdictCache
from zvm_core.zerovm import nvram
from zvm_core.zerovm.manifest import Manifest, ManifestError, load

NVRAM = '/dev/nvram'


class SessionError(Exception):
    """A step before the run failed; ``errno`` is ZeroVM's exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno = code


@dataclass
class Session:
    """How a session ended: ZeroVM's exit code and state, and what the report needs."""

    code: int
    state: str
    validation: int = VALIDATION_SKIPPED
    report: Report | None = None            # None when the program did not run
    etags: list[tuple[str, str]] = field(default_factory=list)
    cpu: tuple[float, float] = (0.0, 0.0)   # (system, user) seconds of the run

    def text(self) -> str:
        """ZeroVM's six-line report."""
        r = self.report
        return zerovm_text(self.validation, (r.retcode or 0) if r else 0, self.etags,
                           r.accounting if r else Accounting(), self.cpu, self.state)


def run_session(manifest: Manifest | str, *, skip_validation: bool = False,
                validate_only: bool = False, preallocate: bool = True,
                cache: VerdictCache | None = None, engine: str | None = None) -> Session:
    """Run a manifest (a model or a file name) as ``zerovm [-s] [-F] [-P]`` would,
    on ``engine`` (``zvm_core.engines``; None: ``ZVM_ENGINE``, else ``auto``)."""
    channels: list[Channel] = []
    validation = VALIDATION_SKIPPED
    try:
        m = manifest if isinstance(manifest, Manifest) else load(manifest)
        m.check()
        _check_program(m.program)
        for decl in m.channels:
            channels.append(zerovm_channel(decl, preallocate))
        try:
            prepared = prepare(m.program, Policy(), cache, engine=engine,
                               memory_etag=m.memory_etag)
        except Rejected as e:
            if e.verdict is not None:
                validation = VALIDATION_FAILED
            raise SessionError(errno.ENOEXEC, e.report.message) from None
        except EngineError as e:
            raise SessionError(errno.EINVAL, str(e)) from None
        except OSError as e:
            raise SessionError(errno.ENOENT, f"open '{m.program}': {e.strerror}") from None
        validation = VALIDATION_SKIPPED if skip_validation else VALIDATION_PASSED
        by_alias = {ch.alias: ch for ch in channels}
        nv = _nvram(by_alias.get(NVRAM))
        image = _images(nv, by_alias)
        for alias, kind in nv.mapping.items():
            if alias in by_alias:
                by_alias[alias].kind = kind
        if validate_only:
            return Session(0, 'ok', validation)
        limits = Limits(min(m.memory, MAX_MEMORY), timeout=min(m.timeout, MAX_TIMEOUT))
        before = os.times()
        try:
            report = execute(prepared, channels, nv.args or [os.path.basename(m.program)],
                             nv.env, limits, epoch=nv.time or 0, image=image,
                             memory_etag=m.memory_etag)
        except SetupError as e:
            raise SessionError(errno.ENOMEM if e.status == 'memory' else errno.EFAULT,
                               str(e)) from None
        after = os.times()
        etags = [(ch.alias, tag) for ch in standard_order(channels) if ch.tagged
                 and (tag := _tag(ch, report)) is not None]
        if m.memory_etag:
            etags.append((MEMORY_ETAG, report.etags[MEMORY_ETAG]))
        state, code = zerovm_outcome(report)
        # the native guest is a child process: its CPU time is the children's
        return Session(code, state, validation, report, etags,
                       (after.system + after.children_system - before.system
                        - before.children_system,
                        after.user + after.children_user - before.user - before.children_user))
    except (ManifestError, ChannelSetupError, SessionError) as e:
        return Session(e.errno, str(e), validation)
    finally:
        for ch in channels:
            ch.close()


def _tag(ch: Channel, report: Report) -> str | None:
    """A tagged channel's digest: a written one's is its etag, hashed by the run within
    its timeout (``channels.with_etags``; None when that was not done in time: the
    state says so), never hashed again here (a sparse file hashes for an hour)."""
    return report.etags.get(ch.alias) if ch.mode & WRITE else ch.digest()


def _check_program(path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as e:
        raise SessionError(errno.ENOENT, f"open '{path}': {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SessionError(errno.ENOENT, f"open '{path}': Is a directory")
    if not stat.S_ISREG(st.st_mode) or not 0 < st.st_size <= MAX_FILE_SIZE:
        raise SessionError(errno.EIO, f'{path}: too large file to load (a program is a '
                           f'regular file of 1 to {MAX_FILE_SIZE} bytes)')


def _nvram(ch: Channel | None) -> nvram.Nvram:
    """The settings in ``/dev/nvram``, read on the host (not counted against its quota)."""
    if ch is None or not ch.mode & READ or not ch.backing.seekable:
        return nvram.Nvram()
    buf = bytearray(nvram.MAX_SIZE + 1)
    n = ch.backing.readinto([memoryview(buf)], 0)
    if n > nvram.MAX_SIZE:
        raise SessionError(errno.EFAULT, f'{NVRAM} is larger than {nvram.MAX_SIZE} bytes')
    return nvram.parse(bytes(buf[:n]))


def _images(nv: nvram.Nvram, channels: dict[str, Channel]) -> Image | None:
    """The file tree of the NVRAM's [fstab] tar mounts (None without any)."""
    if not nv.mounts:
        return None
    image = Image()
    for mount in nv.mounts:
        ch = channels.get(mount.channel)
        where = f'{NVRAM} [fstab] {mount.channel}'
        if mount.access != 'ro' or mount.fsname.lower() != 'tar':
            raise SessionError(errno.EFAULT, f'{where}: only read-only tar mounts are '
                               f'supported (access={mount.access}, fsname={mount.fsname})')
        if ch is None or not ch.mode & READ or not ch.backing.seekable:
            raise SessionError(errno.EFAULT, f'{where}: not a readable file channel of the '
                               'manifest')
        try:
            image.mount(ch.backing, mount.mountpoint, mount.channel)
        except ImageError as e:
            raise SessionError(errno.EFAULT, f'{where}: {e}') from None
    return image

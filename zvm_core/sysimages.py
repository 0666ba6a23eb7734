"""System images by name: read-only tar images that hold an interpreter and its library.

ZeroCloud called them sysimage devices: the operator installs tars under
names (``zerovm_sysimage_devices = python3 /path/python3.tar lua
/path/lua.tar``), a job names one as a device and runs a program inside it
(``file://python3:python3``).  The image is the channel ``/dev/<name>``,
mounted read-only at ``/``; the program is the image's member, taken out once
into a content-addressed cache so that every run (and every warm worker's
template) finds it at the same host path.

Configuration, in order: an explicit spec (``name path ...``), else
``$ZVM_SYSIMAGES``, else the images ``zvm-interpreters build`` made in its
default directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import threading
from collections.abc import Mapping
from pathlib import Path

from zvm_core import tars
from zvm_core.channels import READ, Channel, FdBacking

MAX_PROGRAM = 256 << 20
_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._+-]*$')
RESERVED = {'stdin', 'stdout', 'stderr', 'input', 'output', 'image', 'nvram', 'script',
            'debug', 'db', 'memory', 'self', 'in', 'out'}


class SysImageError(ValueError):
    """An unknown or unusable system image, or a bad configuration."""


class SysImageUnreadable(SysImageError):
    """A configured image this host cannot read (its file missing or not a tar):
    the host's trouble, not the request's (an object server's 503: another may)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def parse(spec: str) -> dict[str, Path]:
    """``"name path name path ..."`` -> {name: path}; SysImageError when malformed."""
    words = spec.split()
    if len(words) % 2:
        raise SysImageError(f'system images are "name path" pairs; {words[-1]!r} has no path')
    images: dict[str, Path] = {}
    for name, path in zip(words[::2], words[1::2], strict=True):
        if not _NAME.match(name) or name in RESERVED:
            raise SysImageError(f'bad system image name {name!r}: letters, digits and ._+- '
                                f'only, not a standard device name')
        if name in images:
            raise SysImageError(f'system image {name} is configured twice')
        if not os.path.isabs(path):
            raise SysImageError(f'system image {name}: {path} is not an absolute path')
        images[name] = Path(path)
    return images


def configured(spec: str | None = None) -> dict[str, Path]:
    """The system images: ``spec``, else ``$ZVM_SYSIMAGES``, else the built ones."""
    if spec is None:
        spec = os.environ.get('ZVM_SYSIMAGES')
    if spec is not None:
        return parse(spec)
    from zvm_core.build import interpreters
    directory = interpreters.default_dir()
    try:
        built = interpreters.load(directory)
    except interpreters.BuildError:
        return {}
    return {name: directory / image.image for name, image in sorted(built.items())}


def _member_name(name: str) -> str:
    while name.startswith(('./', '/')):
        name = name[2:] if name.startswith('./') else name[1:]
    return name


def _default_cache() -> Path:
    base = os.environ.get('ZVM_CACHE_DIR') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'zvm')
    return Path(base) / 'sysimage-programs'


class SystemImages:
    """Named tar images; ``channel(name)`` to mount one, ``program(name, member)`` to run."""

    def __init__(self, images: Mapping[str, str | os.PathLike],
                 cache_dir: str | os.PathLike | None = None) -> None:
        self.images = {name: Path(path) for name, path in images.items()}
        self.cache_dir = Path(cache_dir) if cache_dir else _default_cache()
        self._programs: dict[tuple, Path] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, spec: str | None = None, cache_dir=None) -> SystemImages:
        return cls(configured(spec), cache_dir)

    @property
    def names(self) -> list[str]:
        return list(self.images)

    def tar(self, name: str) -> Path:
        path = self.images.get(name)
        if path is None:
            known = ', '.join(self.images) or 'none are configured'
            raise SysImageError(f'unknown system image {name!r} (known: {known})')
        if not path.is_file():
            raise SysImageUnreadable(name, f'system image {name}: {path} is not a readable file')
        return path

    def channel(self, name: str) -> Channel:
        """``/dev/<name>``: the image as a random-access read-only channel."""
        return Channel(f'/dev/{name}', FdBacking.open(self.tar(name), READ), READ, random=True)

    def program(self, name: str, member: str) -> Path:
        """The host path of regular file ``member`` of image ``name`` (extracted once)."""
        path = self.tar(name)
        st = path.stat()
        key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, member)
        with self._lock:
            found = self._programs.get(key)
            if found is not None and found.exists():
                return found
            found = self._extract(name, path, member)
            self._programs[key] = found
            return found

    def _extract(self, name: str, path: Path, member: str) -> Path:
        wanted = _member_name(member)
        try:
            with tarfile.open(path, 'r:', tarinfo=tars.Member) as tar:
                info = next((m for m in tar if _member_name(m.name) == wanted), None)
                if info is None or not info.isfile():
                    raise SysImageError(f'system image {name} has no file {member}')
                if info.size > MAX_PROGRAM:
                    raise SysImageError(f'{member} in system image {name} is larger than '
                                        f'{MAX_PROGRAM} bytes')
                data = tar.extractfile(info).read()
        except (tarfile.TarError, OSError) as e:
            raise SysImageUnreadable(name, f'system image {name}: {path} is not a readable '
                                           f'tar ({e})') from None
        digest = hashlib.sha256(data).hexdigest()
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = self.cache_dir / digest
        if out.exists():
            with open(out, 'rb') as f:
                if hashlib.sha256(f.read()).hexdigest() == digest:
                    return out
        tmp = out.with_name(f'.{digest}.{os.getpid()}.{threading.get_ident()}')
        with open(tmp, 'wb') as f:
            f.write(data)
        os.chmod(tmp, 0o555)
        os.replace(tmp, out)
        return out


__all__ = ['SysImageError', 'SysImageUnreadable', 'SystemImages', 'configured', 'parse']

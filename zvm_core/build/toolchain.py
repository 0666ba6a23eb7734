"""Building guest programs: ``cc -static`` into a content-addressed cache.

The test suite and the benchmarks compile the C (and assembly) programs they
run in the sandbox with this.  The cache key covers the source, the
compiler's identity (its file, size and mtime; a wrapper script's ``--version``
too) and the flags, and a build takes its final name with an
atomic rename, so builders running in parallel never see a half-written
program.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

# a header next to the source (#include "x.h"): its text is part of the cache key
_LOCAL_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"/]+)"', re.M)


class BuildError(RuntimeError):
    """The program could not be built; the message says why."""


@functools.cache
def compiler_id(cc: str) -> str:
    """Which file ``cc`` is, its size and modification time (part of the cache key: an
    upgrade or another alternative changes them), without running it: ``gcc --version``
    cost every ``zvm`` run ~16 ms for the loader's key.  A script (``musl-gcc``, a
    wrapper that runs gcc) adds its ``--version``, which names the compiler it runs."""
    path = shutil.which(cc)
    if path is None:
        hint = ('apt-get install musl-tools' if 'musl' in cc
                else 'apt-get install gcc libc6-dev')
        raise BuildError(f'compiler {cc!r} not found: install it to build guest programs '
                         f'(Debian/Ubuntu: {hint})')
    real = os.path.realpath(path)
    try:
        with open(real, 'rb') as f:
            st, script = os.fstat(f.fileno()), f.read(2) == b'#!'
    except OSError as e:
        raise BuildError(f'compiler {cc!r} ({real}) cannot be read: {e.strerror}') from None
    ident = f'{path}\n{real} {st.st_size} {st.st_mtime_ns}\n'
    if script:
        import subprocess  # here and below: a zvm run needs the loader's key, not gcc
        ident += subprocess.run([cc, '--version'], capture_output=True, text=True,
                                check=False).stdout
    return ident


def build_static(src: Path, build_dir: Path, cc: str = 'musl-gcc',
                 flags: Iterable[str] = ('-O2',)) -> Path:
    """``src`` compiled with ``cc -static flags`` (assembly: also ``-nostdlib``)."""
    flags = list(flags)
    if src.suffix == '.S':
        flags.append('-nostdlib')
    text = src.read_text()
    local = [(src.parent / h).read_text() for h in _LOCAL_INCLUDE.findall(text)
             if (src.parent / h).is_file()]
    key = hashlib.sha256('\0'.join([src.name, text, *local, compiler_id(cc), *flags])
                         .encode()).hexdigest()[:16]
    out = build_dir / f'{src.stem}-{Path(cc).name}-{key}'
    if out.exists():
        return out
    build_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f'.{out.name}.{os.getpid()}.tmp')
    import subprocess
    cmd = [cc, '-static', *flags, '-o', str(tmp), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f'building {src.name} failed: {" ".join(cmd)}\n{proc.stderr}')
    os.replace(tmp, out)
    return out

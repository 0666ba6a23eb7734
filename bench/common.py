"""Shared helpers of the benchmarks: guest builds, statistics, tables, test data.

Guest programs are ``bench/programs/<name>.c``, compiled with
``<cc> -static -O2`` into ``<repo>/.zvm-build/bench/``, cached by a hash of
the source, the compiler's ``--version`` and the flags (as the tests'
``guest`` fixture does; the test code itself is not imported).
"""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from zvm_core.build.toolchain import BuildError, build_static

if TYPE_CHECKING:
    from swiftclient import Connection

    from zerocloud.devcluster import DevCluster

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = REPO / 'bench' / 'programs'
TEST_PROGRAMS = REPO / 'tests' / 'programs'   # guests the tests run too (wc)
BUILD = REPO / '.zvm-build' / 'bench'
T = TypeVar('T')
WORDS = ('object', 'storage', 'swift', 'ring', 'proxy', 'replica', 'sandbox', 'node',
         'deterministic', 'channel', 'the', 'a', 'of', 'data', 'compute', 'zero', 'unicorn',
         'template', 'worker', 'pool', 'validator', 'guard', 'fuel', 'x86', 'elf')


# -- guest programs ------------------------------------------------------------

class ServeProcess:
    """A bench script's ``--serve`` side started in ``tree`` with its code first on
    its path, spoken to one JSON line at a time (``--against`` A/B runs: each tree in
    its own process, both under the same load)."""

    def __init__(self, tree: str, argv: Sequence[str], what: str) -> None:
        self.what = what
        self.proc = subprocess.Popen(
            [sys.executable, *argv], cwd=tree, env={**os.environ, 'PYTHONPATH': tree},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.ask(None) != 'ready':
            raise SystemExit(f'the {what} in {tree} did not start')

    def ask(self, line: str | None):
        if line is not None:
            self.proc.stdin.write(line + '\n')
            self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise SystemExit(f'a {self.what} process ended')
        return json.loads(answer)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def build(name: str | Path, cc: str = 'musl-gcc', flags: Iterable[str] = ('-O2',)) -> Path:
    """Path of ``bench/programs/<name>.c`` (else ``tests/programs/<name>.c``; or of
    the source ``name``, a Path, such as an example's) compiled with ``cc -static
    flags``."""
    src = name if isinstance(name, Path) else PROGRAMS / f'{name}.c'
    if not isinstance(name, Path) and not src.exists():
        src = TEST_PROGRAMS / f'{name}.c'
    try:
        return build_static(src, BUILD, cc, flags)
    except BuildError as e:
        sys.exit(str(e))


def private_verdict_cache() -> Path:
    """Point ``ZVM_CACHE_DIR`` (this process and its children) at a new empty dir.

    Call it before anything uses ``zvm_core.validator.default_cache()``:
    benchmarks must neither depend on nor pollute the user's verdict cache.
    """
    path = Path(tempfile.mkdtemp(prefix='zvm-bench-verdicts-'))
    os.environ['ZVM_CACHE_DIR'] = str(path)
    atexit.register(shutil.rmtree, path, True)
    return path


# -- test data -----------------------------------------------------------------

def text(size: int, seed: int = 0) -> bytes:
    """About ``size`` bytes of deterministic text: lines of 4-14 words."""
    rng = random.Random(seed)
    words = rng.choices(WORDS, k=size // 5 + 16)
    out, total, i = [], 0, 0
    while total < size:
        n = rng.randint(4, 14)
        line = ' '.join(words[i:i + n]) if i + n <= len(words) else ' '.join(
            rng.choices(WORDS, k=n))
        i += n
        out.append(line)
        total += len(line) + 1
    return ('\n'.join(out) + '\n').encode()[:size]


# -- timing and statistics -----------------------------------------------------

def connect(cluster: DevCluster) -> Connection:
    """A swiftclient Connection to a local cluster as its test user, without retries."""
    from swiftclient import Connection
    return Connection(authurl=cluster.auth_url, user=cluster.user, key=cluster.key, retries=0)


def proc_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` field in KiB (VmHWM: peak RSS, VmRSS)."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    raise KeyError(field)


def timed(fn: Callable[..., T], *args: object, **kwargs: object) -> tuple[float, T]:
    """(seconds, result) of ``fn(*args, **kwargs)``."""
    t = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - t, result


def percentile(xs: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    s = sorted(xs)
    if not s:
        return float('nan')
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def p50(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float('nan')


def p99(xs: Sequence[float]) -> float:
    return percentile(xs, 99)


def ms(seconds: float) -> str:
    return f'{seconds * 1e3:.3f} ms'


def us(seconds: float) -> str:
    return f'{seconds * 1e6:.2f} µs'


def ratio(a: float, b: float) -> str:
    return f'{a / b:.2f}x' if b else 'n/a'


def mib(n: float) -> str:
    return f'{n / (1 << 20):.1f} MiB'


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[object]],
          note: str = '') -> None:
    """Print ``rows`` under ``header`` as an aligned plain-text table."""
    rows = [[str(c) for c in r] for r in rows]
    cols = [list(header), *rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return '  '.join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    print(f'\n## {title}')
    print(line(header))
    print('  '.join('-' * w for w in widths))
    for r in rows:
        print(line(r))
    if note:
        print(note)
    sys.stdout.flush()


def environment() -> str:
    """One line about the host, printed at the top of each benchmark."""
    import platform

    import unicorn
    return (f'host: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, '
            f'Python {platform.python_version()}, unicorn {unicorn.__version__}')

"""Shared fixtures: guest programs compiled during the run, and the ``zvm`` CLI.

``guest(name, cc='musl-gcc', flags=('-O2',))`` compiles ``tests/programs/<name>.c``
(or ``.S``, linked with ``-nostdlib``: those define ``_start`` themselves; or
``name`` is the ``Path`` of a source elsewhere, such as an example) with
``<cc> -static <flags>`` into ``<repo>/.zvm-build/programs/`` and returns the
binary's path.  Builds are cached by a hash of the source, the compiler (its
``--version``) and the flags, and are atomic (compile to a private name, then
``os.replace``), so several pytest processes may build at once.

``zvm`` drives ``python -m zvm_core.cli`` as a subprocess; ``native`` runs the
same binary on the host with the same argv/env/stdin, as an oracle.

``engine`` runs a test under each engine (``native``, ``emulated``): it sets
``ZVM_ENGINE`` for the CLI, for ``run()`` and for the pools the test starts.  A
test that checks what only the emulator does (fuel, the guard's instruction
boundaries, the fixed CPUID table, snapshots) carries
``@pytest.mark.emulated_only(reason=...)`` and runs there only.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sandbox.manifests import NVRAM_CHANNEL, SDK, STD_CHANNELS

from zvm_core import engines
from zvm_core.build.toolchain import BuildError, build_static

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = REPO / 'tests' / 'programs'
BUILD = REPO / '.zvm-build' / 'programs'
# A test that takes the ``engine`` fixture runs once per engine; the others run the
# emulated engine unless ZVM_ENGINE says otherwise (the CLI, the pool and the
# cluster's servers read it); tests/sandbox/test_native.py names its engines.
os.environ.setdefault('ZVM_ENGINE', 'emulated')
ENGINES = ('native', 'emulated')
CLI = [sys.executable, '-m', 'zvm_core.cli']
RUN_TIMEOUT = 120          # seconds for one CLI subprocess; a hang fails the test


def in_child(body, fast: bool | None = None) -> object:
    """``body()`` in a forked child (its rlimits and module settings are its own;
    ``fast``: the native C loop on or off there): what it returned, as JSON, or None
    if it died first."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if fast is not None:
                from zvm_core.engines.native import supervisor
                supervisor.FAST_PATH = fast
            os.write(w, json.dumps(body()).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, 'rb') as f:
        got = json.loads(f.read() or b'null')
    os.waitpid(pid, 0)
    return got


def build_guest(name: str | Path, cc: str = 'musl-gcc', flags: Iterable[str] = ('-O2',)
                ) -> Path:
    if isinstance(name, Path):          # a source elsewhere, e.g. examples/mapreduce/mapper.c
        candidates = [name]
    else:
        candidates = [PROGRAMS / f'{name}.c', PROGRAMS / f'{name}.S']
    sources = [p for p in candidates if p.exists()]
    if len(sources) != 1:
        pytest.fail(f'expected exactly one of {[str(p) for p in candidates]}', pytrace=False)
    try:
        return build_static(sources[0], BUILD, cc, flags)
    except BuildError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope='session')
def guest():
    """``guest(name, cc='musl-gcc', flags=('-O2',)) -> Path`` of the static binary."""
    return build_guest


@dataclass(repr=False)
class Run:
    """One ``zvm run``: exit status, parsed report, and what each channel got."""

    returncode: int
    report: dict
    stdout: bytes            # /dev/stdout (the --stdout file, or the CLI's own stdout)
    stderr: bytes            # /dev/stderr file (b'' when inherited)
    output: bytes | None     # /dev/output file, when one was declared
    cli_stdout: bytes
    cli_stderr: bytes
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.report['status']

    @property
    def accounting(self) -> dict:
        return self.report['accounting']

    def __repr__(self) -> str:     # what pytest shows when `assert ..., run` fails
        return (f'zvm exit {self.returncode}; status {self.report.get("status")}: '
                f'{self.report.get("message")}\nstdout={self.stdout[:400]!r}\n'
                f'stderr={self.stderr[:400]!r}\ncli stderr={self.cli_stderr[-800:]!r}')


class Zvm:
    """Runs the ``zvm`` CLI in a subprocess, with channel files in a scratch dir."""

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.env = dict(env)
        self._n = itertools.count(1)         # next() is atomic: tests may run in threads

    def _dir(self) -> Path:
        d = self.workdir / f'run{next(self._n)}'
        d.mkdir()
        return d

    def cli(self, *args: str, stdin: bytes = b'', timeout: float = RUN_TIMEOUT
            ) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, *map(str, args)], input=stdin, capture_output=True,
                              cwd=REPO, env=self.env, timeout=timeout, check=False)

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([*CLI, *map(str, args)], cwd=REPO, env=self.env, **kwargs)

    def validate(self, program: Path, *opts: str) -> subprocess.CompletedProcess:
        return self.cli('validate', *opts, program)

    def run(self, program: Path, *args: str, stdin: bytes | None = b'',
            input: bytes | None = None, output: bool = False, opts: Iterable[str] = (),
            inherit_stdout: bool = False, timeout: float = RUN_TIMEOUT) -> Run:
        """Run ``program ARGS`` with ``stdin`` (bytes, or None: no --stdin), an
        optional ``/dev/input`` and ``/dev/output``, and extra CLI ``opts``."""
        d = self._dir()
        files = {'report': d / 'report.json', 'stdout': d / 'stdout', 'stderr': d / 'stderr'}
        cmd = ['run', '--report', files['report'], '--stderr', files['stderr']]
        if not inherit_stdout:
            cmd += ['--stdout', files['stdout']]
        if stdin is not None:
            files['stdin'] = d / 'stdin'
            files['stdin'].write_bytes(stdin)
            cmd += ['--stdin', files['stdin']]
        if input is not None:
            files['input'] = d / 'input'
            files['input'].write_bytes(input)
            cmd += ['--input', files['input']]
        if output:
            files['output'] = d / 'output'
            cmd += ['--output', files['output']]
        cmd += [*opts, program, *args]
        proc = self.cli(*cmd, timeout=timeout)
        try:
            report = json.loads(files['report'].read_text())
        except (OSError, ValueError) as e:
            pytest.fail(f'zvm wrote no readable report ({e}); exit {proc.returncode}\n'
                        f'stderr: {proc.stderr.decode(errors="replace")[-2000:]}',
                        pytrace=False)

        def read(key: str) -> bytes:
            p = files[key]
            return p.read_bytes() if p.exists() else b''

        return Run(proc.returncode, report,
                   proc.stdout if inherit_stdout else read('stdout'), read('stderr'),
                   read('output') if output else None, proc.stdout, proc.stderr, files)


def pytest_configure(config) -> None:
    config.addinivalue_line('markers', 'emulated_only(reason): checks what only the '
                            'emulated engine does; the engine fixture runs it there only')
    if hasattr(config, 'workerinput'):
        # An xdist worker builds its own native loader (a second of gcc), so that its
        # loaders' path (test_native's ``_loaders``) is not the other worker's: an
        # orphan guest of the cluster's servers is not counted as this worker's.
        from zvm_core.engines.native.loader import cache_dir
        os.environ['ZVM_NATIVE_CACHE'] = str(cache_dir() / config.workerinput['workerid'])
    POOL_WORKERS.install()


class PoolWorkers:
    """The pool workers (``zvm_core.pool.on_worker_start``) this test process starts, so that
    a Pool never closed fails the test that left it instead of leaving its ``python -m
    zvm_core.pool.worker`` children running until the session ends: a worker started
    by a test or its function-scoped fixtures must have ended when the test's teardown
    is over; one started by a module, class or session fixture when that fixture's
    teardown is (the teardown of the test it ended in errors otherwise).  A leaked
    worker is killed once reported.  Bookkeeping only (an append per worker, a
    ``poll`` per worker due): no scan of /proc."""

    def __init__(self) -> None:
        self.setting_up: list = []           # the FixtureDefs being set up, innermost last
        self.started: list[tuple[subprocess.Popen, object]] = []   # (proc, broad FixtureDef)
        self.ended: set[int] = set()         # ids of the broad fixtures torn down since

    def install(self) -> None:
        from zvm_core import pool
        pool.on_worker_start(self.record)

    def record(self, proc: subprocess.Popen) -> None:
        owner = self.setting_up[-1] if self.setting_up else None
        self.started.append((proc, owner if owner and owner.scope != 'function' else None))

    def leaked(self) -> list[str]:
        """The workers due to have ended that still run (now killed), described."""
        ended = self.ended
        due = [(p, o) for p, o in self.started if o is None or id(o) in ended]
        self.started = [(p, o) for p, o in self.started if o is not None and id(o) not in ended]
        self.ended = set()
        found = []
        for proc, owner in due:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                found.append(f'pid {proc.pid} (started by '
                             f'{"the test" if owner is None else "fixture " + owner.argname})')
        return found


POOL_WORKERS = PoolWorkers()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    POOL_WORKERS.setting_up.append(fixturedef)
    try:
        return (yield)
    finally:
        POOL_WORKERS.setting_up.pop()


def pytest_fixture_post_finalizer(fixturedef, request) -> None:
    if fixturedef.scope != 'function':
        POOL_WORKERS.ended.add(id(fixturedef))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    leaked = POOL_WORKERS.leaked()
    if leaked:
        pytest.fail(f'pool workers outlived what started them (close the Pool; '
                    f'``with Pool(...)``): {", ".join(leaked)}', pytrace=False)
    return result


@pytest.hookimpl(optionalhook=True)     # a pytest-xdist hook
def pytest_xdist_make_scheduler(config, log):
    """``-n N --dist loadfile`` (scripts/test.sh) with tests/functional as one file: a
    file's module fixtures are made once, on one worker, and the functional tests run
    on one worker, which starts the session's one Swift cluster, while the other
    workers take the unit and sandbox files."""
    if config.getoption('dist') != 'loadfile':
        return None
    from xdist.scheduler import LoadFileScheduling

    class FunctionalTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return 'tests/functional' if scope.startswith('tests/functional/') else scope

    return FunctionalTogether(config, log)


def pytest_generate_tests(metafunc) -> None:
    if 'engine' not in metafunc.fixturenames or any(
            'engine' in (names.replace(' ', '').split(',') if isinstance(names, str) else names)
            for names in (m.args[0] for m in metafunc.definition.iter_markers('parametrize'))):
        return          # not this fixture, or a test that names its engines itself
    only = metafunc.definition.get_closest_marker('emulated_only')
    if only is not None and not only.kwargs.get('reason'):
        raise pytest.UsageError(f'{metafunc.definition.nodeid}: emulated_only needs a reason')
    metafunc.parametrize('engine', ['emulated'] if only else list(ENGINES), indirect=True)


@pytest.fixture
def engine(request, zvm, monkeypatch) -> str:
    """The engine this test runs under (``ZVM_ENGINE`` for the CLI, run() and pools)."""
    name = request.param
    if name == 'native' and engines.native_unavailable():
        pytest.skip(f'this host cannot run the native engine: {engines.native_unavailable()}')
    monkeypatch.setenv('ZVM_ENGINE', name)
    monkeypatch.setitem(zvm.env, 'ZVM_ENGINE', name)
    return name


@pytest.fixture(scope='session')
def zvm(tmp_path_factory) -> Zvm:
    """The CLI, with a private verdict cache for this session."""
    env = dict(os.environ)
    env['ZVM_CACHE_DIR'] = str(tmp_path_factory.mktemp('zvm-verdicts'))
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
    return Zvm(tmp_path_factory.mktemp('zvm-runs'), env)


def run_native(program: Path, *args: str, stdin: bytes = b'',
               env: Mapping[str, str] | None = None, timeout: float = 60
               ) -> subprocess.CompletedProcess:
    """Run ``program`` on the host as the sandbox does: argv[0] is the basename,
    the environment is exactly ``env`` (empty by default)."""
    return subprocess.run([program.name, *args], executable=str(program), input=stdin,
                          capture_output=True, env=dict(env or {}), timeout=timeout,
                          check=False)


@pytest.fixture(scope='session')
def native():
    """``native(program, *args, stdin=b'', env=None) -> CompletedProcess``."""
    return run_native


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(scope='session')
def etag():
    """``etag(bytes) -> str``: the MD5 hex digest a written channel should report."""
    return md5




@pytest.fixture
def machine_for():
    """``machine_for(path, memory=64 MiB, snapshots=False) -> Machine`` in this
    process (a template instance), closed when the test ends."""
    from zvm_core.elf import load_program
    from zvm_core.engines.emulated.machine import Machine
    from zvm_core.executor import Limits
    from zvm_core.validator import validate
    made = []

    def make(path: Path, memory: int = 64 << 20, snapshots: bool = False) -> Machine:
        program = load_program(path)
        made.append(Machine(program, validate(program), Limits(memory=memory),
                            snapshots=snapshots))
        return made[-1]
    yield make
    for m in made:
        m.close()


@pytest.fixture(scope='session')
def zvm_guest():
    """``zvm_guest(name, cc='musl-gcc') -> Path``: a program built against ``sdk/zvm.h``
    (the header's digest is among the flags, so a changed header rebuilds it)."""
    tag = hashlib.sha256((SDK / 'zvm.h').read_bytes()).hexdigest()[:12]
    return lambda name, cc='musl-gcc': build_guest(name, cc, ('-O2', f'-I{SDK}',
                                                             f'-DZVM_H_{tag}'))


@dataclass(repr=False)
class Session:
    """One ``zvm MANIFEST``: exit status, ZeroVM's report, and the session's files."""

    returncode: int
    stdout: str
    stderr: str
    dir: Path

    @property
    def lines(self) -> list[str]:
        return self.stdout.split('\n')

    @property
    def validation(self) -> int:
        return int(self.lines[0])

    @property
    def retcode(self) -> int:
        return int(self.lines[2])

    @property
    def etags(self) -> dict[str, str]:
        words = self.lines[3].split()
        return {} if words == ['disabled'] else dict(zip(words[::2], words[1::2], strict=True))

    @property
    def accounting(self) -> list[str]:
        return self.lines[4].split()

    @property
    def state(self) -> str:
        return self.lines[5]

    def read(self, name: str) -> bytes:
        return (self.dir / name).read_bytes()

    def __repr__(self) -> str:
        return (f'zvm exit {self.returncode}\nreport={self.stdout!r}\n'
                f'cli stderr={self.stderr[-800:]!r}')


class ZeroVM:
    """Runs ``zvm MANIFEST`` in a scratch directory; ``{d}`` in the manifest is that directory."""

    def __init__(self, zvm: Zvm) -> None:
        self.zvm = zvm

    @staticmethod
    def manifest(program: Path | str, channels: str = STD_CHANNELS, *, memory: int = 64 << 20,
                 memory_etag: int = 0, timeout: int = 60, extra: str = '') -> str:
        return (f'Version = 20130611\nProgram = {program}\nMemory = {memory}, {memory_etag}\n'
                f'Timeout = {timeout}\n{extra}{channels}')

    def run(self, manifest: str, *opts: str, files: Mapping[str, bytes] | None = None,
            stdin: bytes | None = b'', timeout: float = RUN_TIMEOUT) -> Session:
        d = self.zvm._dir()
        files = dict(files or {})
        if stdin is not None:
            files.setdefault('stdin', stdin)
        for name, data in files.items():
            (d / name).write_bytes(data)
        (d / 'manifest').write_text(manifest.replace('{d}', str(d)))
        proc = self.zvm.cli(*opts, d / 'manifest', timeout=timeout)
        return Session(proc.returncode, proc.stdout.decode(), proc.stderr.decode(), d)


@pytest.fixture(scope='session')
def zerovm(zvm) -> ZeroVM:
    """``zerovm.run(zerovm.manifest(program, ...), *options, files={...})`` -> Session."""
    return ZeroVM(zvm)


class Rebuild:
    """A second build of every system image, from scratch into ``directory``, by a
    background process (niced) that runs while the other tests do: the rebuild costs
    over a minute of CPU (SQLite's amalgamation is most of it), which the test that
    compares it would otherwise wait for."""

    TIMEOUT = 1800          # seconds; a hung build fails the test instead of hanging it

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log = directory.with_name(directory.name + '.log')
        with open(self.log, 'wb') as log:
            self.proc = subprocess.Popen(
                ['nice', '-n', '10', sys.executable, '-m', 'zvm_core.build.interpreters',
                 'build', '--dir', str(directory)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True)

    def wait(self) -> tuple[dict, list[str]]:
        """The images the rebuild recorded and its log lines (the test fails if it failed)."""
        from zvm_core.build import interpreters
        try:
            code = self.proc.wait(timeout=self.TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f'the rebuild of the system images took over {self.TIMEOUT} s')
        lines = self.log.read_text().splitlines()
        assert code == 0, f'the rebuild of the system images failed: exit {code}: {lines}'
        return interpreters.load(self.directory), lines

    def stop(self) -> None:
        """Kill the rebuild and its compilers if it still runs (the session is over)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@dataclass(frozen=True)
class SysImages:
    """The built system images: ``program(name)`` and ``tar(name)`` are host paths."""

    directory: Path
    images: dict

    def program(self, name: str) -> Path:
        return self.images[name].paths(self.directory)[0]

    def tar(self, name: str) -> Path:
        return self.images[name].paths(self.directory)[1]


@pytest.fixture(scope='session')
def sysimages() -> SysImages:
    """The system images (``zvm_core.build.interpreters``), built on first use into the
    default directory and reused while their inputs are unchanged."""
    from zvm_core.build import interpreters
    directory = interpreters.default_dir()
    try:
        images = interpreters.build(directory)
    except interpreters.BuildError as e:
        pytest.fail(f'building the system images failed: {e}', pytrace=False)
    return SysImages(directory, images)


@pytest.fixture(scope='session')
def sysimage_rebuild(sysimages: SysImages,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rebuild]:
    """The second, from-scratch build of the system images, started in the background
    at the first request (a module whose last test compares it requests it at its
    start: under xdist a module runs on one worker, so one worker starts one rebuild)."""
    rebuild = Rebuild(tmp_path_factory.mktemp('sysimages-again') / 'images')
    yield rebuild
    rebuild.stop()


@pytest.fixture(scope='session')
def trapper(zerovm, zvm_guest):
    """``trapper(ops, channels='', files=None, code=0) -> (Session, result lines)``: run
    ``zvm_trapper`` with ``ops`` as its arguments (given through /dev/nvram); ``code``:
    zvm's exit code (EDQUOT when the quota cut a write, as the trapper exits 0)."""
    def run(ops: list[str], channels: str = '', files: Mapping[str, bytes] | None = None,
            code: int = 0):
        files = dict(files or {})
        files['nvram'] = ('[args]\nargs = zvm_trapper ' + ' '.join(ops) + '\n').encode()
        s = zerovm.run(zerovm.manifest(zvm_guest('zvm_trapper'),
                                       STD_CHANNELS + NVRAM_CHANNEL + channels), files=files)
        assert s.returncode == code, s
        return s, s.read('stdout').decode().splitlines()
    return run

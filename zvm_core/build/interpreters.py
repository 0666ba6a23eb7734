"""Build the script interpreters and their system images, reproducibly.

    python -m zvm_core.build.interpreters build [--dir D] [--only NAME] [--force]
    python -m zvm_core.build.interpreters list [--dir D]

(``zvm-interpreters`` and ``zvm-sysimages`` are the same command.)  Three
system images are built from the host's own packages and pinned upstream
sources, unmodified:

``python3``
    CPython 3.11 linked statically (``gcc -static``) from Debian's
    ``libpython3.11.a`` (package ``libpython3.11-dev``, with ``libexpat1-dev``
    and ``zlib1g-dev``) and a small ``main`` (sandbox defaults, and a free lock
    taken without reading the clock, a mediated call here: ``PYMAIN_C``);
    ``python3.tar`` holds the
    program as ``/python3`` and the pure-Python standard library under
    ``/usr/lib/python3.11`` with every module precompiled
    (``unchecked-hash`` ``.pyc``: valid whatever the file times are).
``lua``
    Lua 5.4 built with ``musl-gcc -static`` from the plain Lua sources in the
    PyPI ``lupa`` sdist (fetched once with ``pip download``, checked against a
    pinned SHA-256); ``lua.tar`` holds the program as ``/lua``.
``sqlite``
    SQLite (the plain amalgamation ``sqlite3.c`` bundled in the PyPI
    ``sqlean.py`` sdist, fetched and pinned the same way) compiled with
    ``musl-gcc -static`` as part of ``zvm_core/images/sqlnode.c`` (it
    includes the amalgamation), the node
    program of SQL queries over objects (``zerocloud.sql``), with Debian's
    zlib (``zlib1g-dev``) for gzip-compressed objects; ``sqlite.tar`` holds
    the program as ``/sqlite``.

Each program is checked against the sandbox validator.  Outputs are
byte-for-byte reproducible: same inputs, same bytes (no timestamps, sorted
tar members, uid/gid 0, ``PYTHONHASHSEED=0`` while compiling).  A build is
skipped when ``D/sysimages.json`` records the same input key (a SHA-256 of
every input: sources, libraries, compiler identity, this builder) and the
outputs still have their recorded digests.

The default directory is ``$ZVM_SYSIMAGE_DIR``, else
``$XDG_DATA_HOME/zvm/sysimages`` (``~/.local/share/zvm/sysimages``).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from zvm_core import stdout

BUILDER_VERSION = 1
NAMES = ('python3', 'lua', 'sqlite')
MANIFEST = 'sysimages.json'

PY_VERSION = '3.11'
PY_STDLIB = Path(f'/usr/lib/python{PY_VERSION}')
PY_CONFIG_DIR = PY_STDLIB / f'config-{PY_VERSION}-x86_64-linux-gnu'
PY_INCLUDE = Path(f'/usr/include/python{PY_VERSION}')
PY_GUEST_LIB = f'usr/lib/python{PY_VERSION}'        # where the stdlib sits in the image
PY_LIBS = ('libexpat.a', 'libz.a', 'libm.a', 'libutil.a', 'libdl.a', 'libpthread.a', 'libc.a')
# never useful in the sandbox (GUI, installers, tests, compiled modules, host config)
PY_EXCLUDE_DIRS = {'test', 'tests', 'idlelib', 'tkinter', 'turtledemo', 'ensurepip', 'lib2to3',
                   'lib-dynload', 'site-packages', 'dist-packages', '__pycache__'}
PY_EXCLUDE_FILES = {'sitecustomize.py',      # Debian's: a link to /etc (apport hook)
                    'turtle.py', 'EXTERNALLY-MANAGED'}
# PYMAIN_C's lock acquisitions in place of libpython's (no clock read for a free lock)
PY_LINK_WRAP = ('-Wl,--wrap=PyThread_acquire_lock_timed', '-Wl,--wrap=PyThread_acquire_lock')
PY_APT = ('libpython3.11-dev', 'libexpat1-dev', 'zlib1g-dev')

LUPA_VERSION = '2.8'
LUPA_SDIST = f'lupa-{LUPA_VERSION}.tar.gz'
LUPA_SHA256 = 'd8022641b9ec8ecf2c5ecbe9f47e5a70e0b87c4b5ae921b92cb02a638e0acd08'
LUA_DIR = f'lupa-{LUPA_VERSION}/third-party/lua54/'
LUA_CFLAGS = ('-O2', '-std=gnu99', '-DLUA_USE_POSIX')

SQLEAN_VERSION = '3.50.4.5'
SQLEAN_SDIST = f'sqlean_py-{SQLEAN_VERSION}.tar.gz'
SQLEAN_SHA256 = '9764b565e7ab430ab6e9e43cb2816199c2b39926dffc93c212a52f0019278459'
SQLITE_DIR = f'sqlean_py-{SQLEAN_VERSION}/sqlite/'
SQLITE_END = b'/************************** End of sqlite3.c ******************************/\n'
SQLNODE_C = Path(__file__).parent.parent / 'images' / 'sqlnode.c'
# one thread, no extensions, temporary tables in memory (there is no disk)
SQLITE_CFLAGS = ('-O2', '-DSQLITE_THREADSAFE=0', '-DSQLITE_OMIT_LOAD_EXTENSION',
                 '-DSQLITE_DEFAULT_MEMSTATUS=0', '-DSQLITE_TEMP_STORE=3',
                 '-DSQLITE_ENABLE_MATH_FUNCTIONS', '-DSQLITE_OMIT_DEPRECATED')
ZLIB = (Path('/usr/include/zlib.h'), Path('/usr/include/zconf.h'),
        Path('/usr/lib/x86_64-linux-gnu/libz.a'))

# The interpreter's main: Py_BytesMain's behaviour, plus three sandbox defaults
# that the user can still override (PYTHONHASHSEED in the environment):
# hash seed 0 (str hashes and set order do not depend on the run's seed), no
# user site directory (there is no home; saves the passwd/NSS probes), and no
# attempt to write .pyc files (the file tree is read-only).  Debian builds
# _contextvars as a shared module, which a static program cannot load; its
# types live in the core, so the module is built in here (as CPython's own
# Modules/_contextvarsmodule.c does it): decimal, fractions, statistics and
# asyncio import again.
PYMAIN_C = r'''
#include <Python.h>
#include <semaphore.h>
#include <stdlib.h>
#include <unistd.h>

/* CPython 3.11 reads the monotonic clock on every lock acquisition, even of a
 * free lock (thread_pthread.h: the sem_clockwait deadline is computed first).
 * Natively and emulated a clock read is a mediated call: 124 of a -S print(1)'s
 * 306 (189 of 396 with site), 14 of the ~20 a resumed one made.  A free lock is
 * taken without it; a held one (another thread has it) goes the usual way.
 * Linked with -Wl,--wrap (PY_LINK_WRAP): every caller outside thread.c comes
 * here.  A lock is a sem_t where thread_pthread.h says USE_SEMAPHORES: */
#if !defined(_POSIX_SEMAPHORES) || defined(HAVE_BROKEN_POSIX_SEMAPHORES) || \
    !defined(HAVE_SEM_TIMEDWAIT)
#error "this libpython's locks are not semaphores"
#endif
PyLockStatus __real_PyThread_acquire_lock_timed(PyThread_type_lock, PY_TIMEOUT_T, int);

PyLockStatus
__wrap_PyThread_acquire_lock_timed(PyThread_type_lock lock, PY_TIMEOUT_T microseconds,
                                   int intr_flag)
{
    if (lock != NULL && sem_trywait((sem_t *)lock) == 0)
        return PY_LOCK_ACQUIRED;
    return __real_PyThread_acquire_lock_timed(lock, microseconds, intr_flag);
}

int
__wrap_PyThread_acquire_lock(PyThread_type_lock lock, int waitflag)
{
    return __wrap_PyThread_acquire_lock_timed(lock, waitflag ? -1 : 0, 0) == PY_LOCK_ACQUIRED;
}

static PyObject *
contextvars_copy_context(PyObject *module, PyObject *unused)
{
    return (PyObject *)PyContext_CopyCurrent();
}

static int
contextvars_exec(PyObject *m)
{
    if (PyModule_AddType(m, &PyContext_Type) < 0 ||
        PyModule_AddType(m, &PyContextVar_Type) < 0 ||
        PyModule_AddType(m, &PyContextToken_Type) < 0)
        return -1;
    return 0;
}

static PyMethodDef contextvars_methods[] = {
    {"copy_context", contextvars_copy_context, METH_NOARGS,
     "Return a copy of the current Context object."},
    {NULL, NULL, 0, NULL}
};

static PyModuleDef_Slot contextvars_slots[] = {
    {Py_mod_exec, contextvars_exec},
    {0, NULL}
};

static struct PyModuleDef contextvars_module = {
    PyModuleDef_HEAD_INIT, "_contextvars", "Context Variables", 0,
    contextvars_methods, contextvars_slots, NULL, NULL, NULL
};

static PyObject *
PyInit__contextvars(void)
{
    return PyModuleDef_Init(&contextvars_module);
}

int main(int argc, char **argv)
{
    PyStatus status;
    PyConfig config;
    if (PyImport_AppendInittab("_contextvars", PyInit__contextvars) < 0)
        return 120;
    PyConfig_InitPythonConfig(&config);
    if (getenv("PYTHONHASHSEED") == NULL) {
        config.use_hash_seed = 1;
        config.hash_seed = 0;
    }
    config.user_site_directory = 0;
    config.write_bytecode = 0;
    status = PyConfig_SetBytesArgv(&config, argc, argv);
    if (PyStatus_Exception(status))
        goto fail;
    status = Py_InitializeFromConfig(&config);
    if (PyStatus_Exception(status))
        goto fail;
    PyConfig_Clear(&config);
    /* What start-up made lives as long as the run: the collector need not
     * traverse it again during the script */
    PyObject *gc = PyImport_ImportModule("gc");
    PyObject *frozen = gc ? PyObject_CallMethod(gc, "freeze", NULL) : NULL;
    Py_XDECREF(frozen);
    /* ... but the script's globals (the __main__ dict, made at start-up) in a cycle
     * (any function it defines refers to them) would then never be collected: its
     * unclosed files never flushed, their last writes lost. At exit (the first
     * handler, so it runs last), unfreeze: the exit's collection is CPython's */
    PyObject *atexit = gc ? PyImport_ImportModule("atexit") : NULL;
    PyObject *unfreeze = gc ? PyObject_GetAttrString(gc, "unfreeze") : NULL;
    PyObject *handler = atexit && unfreeze ?
        PyObject_CallMethod(atexit, "register", "O", unfreeze) : NULL;
    Py_XDECREF(handler);
    Py_XDECREF(unfreeze);
    Py_XDECREF(atexit);
    Py_XDECREF(gc);
    PyErr_Clear();
    return Py_RunMain();
fail:
    PyConfig_Clear(&config);
    if (PyStatus_IsExit(status))
        return status.exitcode;
    Py_ExitStatusException(status);
}
'''

# Run by the freshly built interpreter on the host: compile the staged stdlib.
COMPILE_PY = r'''
import importlib.util, py_compile, sys
root, guest, part, parts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
names = sys.stdin.read().split('\n')
for i, rel in enumerate(n for n in names if n):
    if i % parts != part:
        continue
    src = root + '/' + rel
    py_compile.compile(src, cfile=importlib.util.cache_from_source(src),
                       dfile=guest + '/' + rel, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
'''


class BuildError(RuntimeError):
    """A system image could not be built; the message says what to install or fix."""


@dataclass
class SysImage:
    """One built system image, as recorded in ``sysimages.json``."""

    name: str
    program: str            # file name of the program in the build directory
    image: str              # file name of the tar image in the build directory
    member: str             # the program's path inside the image
    key: str                # input key the outputs were built from
    digests: dict[str, str] = field(default_factory=dict)    # file name -> sha256
    sizes: dict[str, int] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)

    def paths(self, directory: Path) -> tuple[Path, Path]:
        return directory / self.program, directory / self.image


def default_dir() -> Path:
    env = os.environ.get('ZVM_SYSIMAGE_DIR')
    if env:
        return Path(env)
    data = os.environ.get('XDG_DATA_HOME') or os.path.expanduser('~/.local/share')
    return Path(data) / 'zvm' / 'sysimages'


def source_cache() -> Path:
    cache = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
    return Path(cache) / 'zvm' / 'sources'


def source_date_epoch() -> int:
    text = os.environ.get('SOURCE_DATE_EPOCH', '0')
    try:
        value = int(text)
    except ValueError:
        raise BuildError(f'SOURCE_DATE_EPOCH must be an integer, not {text!r}') from None
    if value < 0:
        raise BuildError('SOURCE_DATE_EPOCH must not be negative')
    return value


# -- helpers ---------------------------------------------------------------------

def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False, **kwargs)
    except FileNotFoundError:
        raise BuildError(f'{what}: {cmd[0]} not found') from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors='replace') if isinstance(proc.stderr, bytes) \
            else proc.stderr
        raise BuildError(f'{what} failed ({" ".join(map(str, cmd[:6]))} ...):\n{err[-3000:]}')
    return proc


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildError(f'{name} not found (Debian: apt-get install {package})')
    return path


def _strip_identity() -> str:
    return _run([_tool('strip', 'binutils'), '--version'], 'strip --version',
                text=True).stdout


def _compiler_identity(cc: str) -> str:
    out = _run([cc, '--version'], f'{cc} --version', text=True).stdout
    ident = [shutil.which(cc) or cc, out]
    wrapper = Path(shutil.which(cc) or cc)
    try:
        text = wrapper.read_text()
    except (OSError, UnicodeDecodeError):
        text = ''
    if text.startswith('#!') and '-specs' in text:       # musl-gcc: hash musl itself
        specs = Path(text.split('-specs', 1)[1].split()[0].strip('"\''))
        for lib in (specs, specs.parent / 'libc.a'):
            if lib.exists():
                ident.append(f'{lib} {_sha256_file(lib)}')
    return '\n'.join(ident)


def _key(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for part in [*parts, _strip_identity()]:
        h.update(part.encode())
        h.update(b'\0')
    return h.hexdigest()


class _TarWriter:
    """A tar whose bytes depend only on the members given: fixed owner, mode and time."""

    def __init__(self, path: Path, mtime: int) -> None:
        self.tar = tarfile.open(path, 'w', format=tarfile.GNU_FORMAT)
        self.mtime = mtime

    def _info(self, name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.mtime = kind, mode, size, self.mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ''
        return info

    def directory(self, name: str) -> None:
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, 0o755))

    def file(self, name: str, source: Path, mode: int = 0o644) -> None:
        with open(source, 'rb') as f:
            self.tar.addfile(self._info(name, tarfile.REGTYPE, mode, os.fstat(f.fileno()).st_size),
                             f)

    def data(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.tar.addfile(self._info(name, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))

    def close(self) -> None:
        self.tar.close()


def _write_tree(tar: _TarWriter, top: str, root: Path) -> None:
    """``root`` (a staged tree, regular files and directories) under ``top``, sorted."""
    for parent in reversed(Path(top).parents):
        if str(parent) != '.':
            tar.directory(str(parent))
    tar.directory(top)
    entries = sorted(str(p.relative_to(root)) for p in root.rglob('*'))
    for rel in entries:
        path = root / rel
        if path.is_dir():
            tar.directory(f'{top}/{rel}')
        else:
            tar.file(f'{top}/{rel}', path)


def _check_valid(program: Path) -> str:
    from zvm_core.elf import ElfError, load_program
    from zvm_core.validator import Policy, default_cache, validate
    try:
        verdict = validate(load_program(program), Policy(), default_cache())
    except ElfError as e:
        raise BuildError(f'{program.name} is not a program the sandbox accepts: {e}') from None
    if not verdict.ok:
        first = verdict.violations[0]
        raise BuildError(f'{program.name} does not pass the validator: '
                         f'{len(verdict.violations)} violation(s), first {first.rule} at '
                         f'{first.address:#x}: {first.text}')
    return f'{verdict.instructions} instructions'


# -- python3 ---------------------------------------------------------------------

def _py_stdlib_files() -> list[str]:
    """Relative paths of the stdlib files the image carries, sorted."""
    if not (PY_STDLIB / 'os.py').exists():
        raise BuildError(f'{PY_STDLIB}/os.py not found (Debian: apt-get install '
                         f'libpython{PY_VERSION}-stdlib)')
    out = []
    for dirpath, dirnames, filenames in os.walk(PY_STDLIB):
        rel_dir = os.path.relpath(dirpath, PY_STDLIB)
        dirnames[:] = sorted(d for d in dirnames if d not in PY_EXCLUDE_DIRS
                             and not d.startswith('config-'))
        for name in filenames:
            if name in PY_EXCLUDE_FILES or name.endswith(('.pyc', '.pyo', '.so', '.exe')):
                continue
            out.append(os.path.normpath(os.path.join(rel_dir, name)))
    return sorted(out)


def _py_inputs(cc: str) -> tuple[str, list[Path], list[str]]:
    lib = PY_CONFIG_DIR / f'libpython{PY_VERSION}.a'
    if not lib.exists() or not (PY_INCLUDE / 'Python.h').exists():
        raise BuildError(f'{lib} or {PY_INCLUDE}/Python.h not found '
                         f'(Debian: apt-get install {" ".join(PY_APT)})')
    libs = [lib]
    for name in PY_LIBS:
        found = _run([cc, f'-print-file-name={name}'], f'{cc} -print-file-name',
                     text=True).stdout.strip()
        if not os.path.isabs(found) or not os.path.exists(found):
            raise BuildError(f'{name} not found for static linking '
                             f'(Debian: apt-get install {" ".join(PY_APT)} libc6-dev)')
        libs.append(Path(found))
    files = _py_stdlib_files()
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode() + b'\0')
        h.update(hashlib.sha256((PY_STDLIB / rel).read_bytes()).digest())
    key = _key(['python3', str(BUILDER_VERSION), PYMAIN_C, *PY_LINK_WRAP, COMPILE_PY,
                _compiler_identity(cc),
                *(f'{p.name} {_sha256_file(p)}' for p in libs), h.hexdigest(),
                str(source_date_epoch())])
    return key, libs, files


def _build_python(work: Path, out: Path, cc: str, libs: list[Path], files: list[str],
                  log: Callable[[str], None]) -> dict[str, str]:
    src = work / 'pymain.c'
    src.write_text(PYMAIN_C)
    program = out / 'python3'
    t = time.monotonic()
    _run([cc, '-O2', '-static', f'-I{PY_INCLUDE}', '-o', str(program), 'pymain.c',
          *PY_LINK_WRAP, f'-L{PY_CONFIG_DIR}', f'-lpython{PY_VERSION}', '-lexpat', '-lz',
          '-lm', '-lutil', '-ldl', '-lpthread'], 'linking python3', cwd=work)
    _run(['strip', str(program)], 'strip python3')
    log(f'python3: linked ({program.stat().st_size} bytes, {time.monotonic() - t:.1f} s)')
    stage = work / 'stage'
    lib_root = stage / PY_GUEST_LIB
    for rel in files:
        dest = lib_root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PY_STDLIB / rel, dest)         # follows symbolic links
    (lib_root / 'lib-dynload').mkdir()     # its absence makes startup warn about exec_prefix
    t = time.monotonic()
    env = {'PYTHONHOME': str(stage / 'usr'), 'PYTHONHASHSEED': '0', 'LC_ALL': 'C.UTF-8',
           'PYTHONDONTWRITEBYTECODE': '1'}
    names = '\n'.join(r for r in files if r.endswith('.py'))
    parts = max(1, min(4, os.cpu_count() or 1))
    procs = [subprocess.Popen([str(program), '-S', '-B', '-c', COMPILE_PY, str(lib_root),
                               '/' + PY_GUEST_LIB, str(i), str(parts)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, text=True)
             for i in range(parts)]
    errors = [p.communicate(names)[1] for p in procs]
    for p, err in zip(procs, errors, strict=True):
        if p.returncode != 0:
            raise BuildError(f'compiling the standard library failed:\n{err[-3000:]}')
    n = len(list(lib_root.rglob('*.pyc')))
    log(f'python3: compiled {n} modules ({time.monotonic() - t:.1f} s)')
    tar = _TarWriter(out / 'python3.tar', source_date_epoch())
    tar.file('python3', program, 0o755)
    _write_tree(tar, PY_GUEST_LIB, lib_root)
    tar.close()
    return {'modules': str(n)}


# -- lua -------------------------------------------------------------------------

def _sdist(package: str, version: str, filename: str, sha256: str, explicit: Path | None,
           log: Callable[[str], None]) -> Path:
    """A pinned PyPI sdist: given, cached, or fetched once with pip."""
    if explicit is not None:
        candidates = [explicit]
    else:
        candidates = [source_cache() / filename]
    for path in candidates:
        if path.exists():
            digest = _sha256_file(path)
            if digest != sha256:
                raise BuildError(f'{path}: SHA-256 {digest} is not the pinned {sha256} '
                                 f'of {filename}')
            return path
    if explicit is not None:
        raise BuildError(f'{explicit} not found')
    cache = source_cache()
    cache.mkdir(parents=True, exist_ok=True)
    log(f'fetching {filename} with pip (once; cached in {cache})')
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        _run([sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps',
              '--no-binary', package, '--disable-pip-version-check', '-d', tmp,
              f'{package}=={version}'], f'pip download {package}=={version}')
        got = Path(tmp) / filename
        if not got.exists():
            raise BuildError(f'pip download gave no {filename}')
        digest = _sha256_file(got)
        if digest != sha256:
            raise BuildError(f'downloaded {filename} has SHA-256 {digest}, '
                             f'not the pinned {sha256}')
        os.replace(got, cache / filename)
    return cache / filename


def _lupa_sdist(explicit: Path | None, log: Callable[[str], None]) -> Path:
    return _sdist('lupa', LUPA_VERSION, LUPA_SDIST, LUPA_SHA256, explicit, log)


def _one_program(cmd: list[str], cwd: Path, out: Path, name: str, what: str,
                 log: Callable[[str], None]) -> None:
    """Compile ``out/name`` with ``cmd``, strip it, and make ``out/name.tar`` of it alone."""
    program = out / name
    t = time.monotonic()
    _run(cmd, f'compiling {name}', cwd=cwd)
    _run(['strip', str(program)], f'strip {name}')
    log(f'{name}: built {what} ({program.stat().st_size} bytes, {time.monotonic() - t:.1f} s)')
    tar = _TarWriter(out / f'{name}.tar', source_date_epoch())
    tar.file(name, program, 0o755)
    tar.close()


def _lua_inputs(cc: str) -> str:
    return _key(['lua', str(BUILDER_VERSION), LUPA_SHA256, *LUA_CFLAGS, _compiler_identity(cc),
                 str(source_date_epoch())])


def _build_lua(work: Path, out: Path, cc: str, sdist: Path,
               log: Callable[[str], None]) -> dict[str, str]:
    src = work / 'lua54'
    src.mkdir()
    with tarfile.open(sdist) as tar:
        for m in tar.getmembers():
            if m.isfile() and m.name.startswith(LUA_DIR) and '/' not in m.name[len(LUA_DIR):]:
                (src / m.name[len(LUA_DIR):]).write_bytes(tar.extractfile(m).read())
    if not (src / 'onelua.c').exists():
        raise BuildError(f'{sdist} has no {LUA_DIR}onelua.c')
    version = next((line.split('"')[1] for line in (src / 'lua.h').read_text().splitlines()
                    if line.startswith('#define LUA_VERSION_RELEASE\t')), '?')
    _one_program([cc, *LUA_CFLAGS, '-static', '-o', str(out / 'lua'), 'onelua.c', '-lm'],
                 src, out, 'lua', f'Lua 5.4.{version}', log)
    return {'lua': f'5.4.{version}'}


# -- sqlite ----------------------------------------------------------------------

def _sqlite_inputs(cc: str) -> str:
    for path in ZLIB:
        if not path.exists():
            raise BuildError(f'{path} not found (Debian: apt-get install zlib1g-dev)')
    if not SQLNODE_C.exists():
        raise BuildError(f'{SQLNODE_C} not found')
    return _key(['sqlite', str(BUILDER_VERSION), SQLEAN_SHA256, *SQLITE_CFLAGS,
                 _sha256_file(SQLNODE_C), *(f'{p} {_sha256_file(p)}' for p in ZLIB),
                 _compiler_identity(cc), str(source_date_epoch())])


def _build_sqlite(work: Path, out: Path, cc: str, sdist: Path,
                  log: Callable[[str], None]) -> dict[str, str]:
    with tarfile.open(sdist) as tar:
        for name in ('sqlite3.c', 'sqlite3.h'):
            try:
                data = tar.extractfile(SQLITE_DIR + name).read()
            except (KeyError, AttributeError):
                raise BuildError(f'{sdist} has no {SQLITE_DIR}{name}') from None
            if name == 'sqlite3.c':            # sqlean appends its own start-up code
                end = data.find(SQLITE_END)
                if end < 0:
                    raise BuildError(f'{SQLITE_DIR}sqlite3.c of {sdist} is not an amalgamation')
                data = data[:end + len(SQLITE_END)]
            (work / name).write_bytes(data)
    for header in ZLIB[:2]:
        shutil.copyfile(header, work / header.name)
    shutil.copyfile(SQLNODE_C, work / SQLNODE_C.name)
    version = next((line.split('"')[1] for line in (work / 'sqlite3.h').read_text().splitlines()
                    if line.startswith('#define SQLITE_VERSION ')), '?')
    _one_program([cc, *SQLITE_CFLAGS, '-static', '-I.', '-o', str(out / 'sqlite'),
                  SQLNODE_C.name, str(ZLIB[2]), '-lm'],          # it includes sqlite3.c
                 work, out, 'sqlite', f'SQLite {version}', log)
    return {'sqlite': version}


# -- driver ----------------------------------------------------------------------

def load(directory: Path | str | None = None) -> dict[str, SysImage]:
    """The images recorded in ``directory`` (no checks; ``{}`` when none were built)."""
    path = Path(directory or default_dir()) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise BuildError(f'{path}: unreadable ({e})') from None
    return {name: SysImage(**entry) for name, entry in data.items()}


def _intact(directory: Path, image: SysImage) -> bool:
    for name, digest in image.digests.items():
        path = directory / name
        if not path.exists() or path.stat().st_size != image.sizes.get(name) \
                or _sha256_file(path) != digest:
            return False
    return bool(image.digests)


def _save(directory: Path, images: dict[str, SysImage]) -> None:
    tmp = directory / f'.{MANIFEST}.{os.getpid()}'
    tmp.write_text(json.dumps({n: asdict(i) for n, i in sorted(images.items())}, indent=1,
                              sort_keys=True) + '\n')
    os.replace(tmp, directory / MANIFEST)


def build(directory: Path | str | None = None, only: Iterable[str] = NAMES, force: bool = False,
          lua_sdist: Path | None = None, log: Callable[[str], None] = lambda s: None,
          sqlite_sdist: Path | None = None) -> dict[str, SysImage]:
    """Build (or find up to date) the system images in ``directory``; BuildError on failure."""
    directory = Path(directory or default_dir())
    only = list(only)
    unknown = [n for n in only if n not in NAMES]
    if unknown:
        raise BuildError(f'unknown system image(s) {", ".join(unknown)}; known: '
                         f'{", ".join(NAMES)}')
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)         # concurrent builders wait, then find it built
        return _build_locked(directory, only, force, {'lua': lua_sdist, 'sqlite': sqlite_sdist},
                             log)


def _build_locked(directory: Path, only: list[str], force: bool,
                  sdists: dict[str, Path | None], log: Callable[[str], None]
                  ) -> dict[str, SysImage]:
    images = load(directory)
    for name in NAMES:
        if name not in only:
            continue
        t = time.monotonic()
        if name == 'python3':
            cc = _tool('gcc', 'gcc libc6-dev')
            key, libs, files = _py_inputs(cc)
        elif name == 'lua':
            cc = _tool('musl-gcc', 'musl-tools')
            sdist = _lupa_sdist(sdists['lua'], log)
            key = _lua_inputs(cc)
        else:
            cc = _tool('musl-gcc', 'musl-tools')
            sdist = _sdist('sqlean.py', SQLEAN_VERSION, SQLEAN_SDIST, SQLEAN_SHA256,
                           sdists['sqlite'], log)
            key = _sqlite_inputs(cc)
        old = images.get(name)
        if not force and old is not None and old.key == key and _intact(directory, old):
            log(f'{name}: up to date ({time.monotonic() - t:.1f} s)')
            continue
        with tempfile.TemporaryDirectory(prefix=f'.{name}-', dir=directory) as tmp:
            work, out = Path(tmp) / 'work', Path(tmp) / 'out'
            work.mkdir()
            out.mkdir()
            if name == 'python3':
                info = _build_python(work, out, cc, libs, files, log)
            elif name == 'lua':
                info = _build_lua(work, out, cc, sdist, log)
            else:
                info = _build_sqlite(work, out, cc, sdist, log)
            info['validator'] = _check_valid(out / name)
            image = SysImage(name, name, f'{name}.tar', name, key)
            for produced in (image.program, image.image):
                image.digests[produced] = _sha256_file(out / produced)
                image.sizes[produced] = (out / produced).stat().st_size
            image.info = info
            for produced in (image.program, image.image):
                os.replace(out / produced, directory / produced)
        images[name] = image
        _save(directory, images)
        log(f'{name}: built {image.image} ({image.sizes[image.image]} bytes) in '
            f'{time.monotonic() - t:.1f} s; program {info["validator"]}')
    return images


COMMANDS = ('zvm-interpreters', 'zvm-sysimages')     # one command, two names (setup.cfg)


def _prog() -> str:
    """The name this command was started by, for its usage and messages."""
    name = os.path.basename(sys.argv[0])
    return name if name in COMMANDS else COMMANDS[0]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``zvm-interpreters`` and ``zvm-sysimages`` (quiet when stdout's
    reader goes away: ``zvm_core.stdout``)."""
    return stdout.quiet(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    prog = _prog()
    parser = argparse.ArgumentParser(prog=prog,
                                     description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    b = sub.add_parser('build', help='build the system images (skipped when up to date)')
    b.add_argument('--dir', type=Path, default=None,
                   help=f'output directory (default: {default_dir()})')
    b.add_argument('--only', action='append', choices=NAMES,
                   help='build only this image (repeatable)')
    b.add_argument('--force', action='store_true', help='rebuild even when up to date')
    b.add_argument('--lua-sdist', type=Path, help=f'a local {LUPA_SDIST} instead of pip')
    b.add_argument('--sqlite-sdist', type=Path, help=f'a local {SQLEAN_SDIST} instead of pip')
    ls = sub.add_parser('list', help='show the built images')
    ls.add_argument('--dir', type=Path, default=None)
    opts = parser.parse_args(argv)
    directory = opts.dir or default_dir()
    try:
        if opts.command == 'build':
            build(directory, opts.only or NAMES, opts.force, opts.lua_sdist,
                  log=lambda s: print(s, file=sys.stderr), sqlite_sdist=opts.sqlite_sdist)
        images = load(directory)
    except BuildError as e:
        print(f'{prog}: {e}', file=sys.stderr)
        return 1
    for name, image in sorted(images.items()):
        program, tar = image.paths(Path(directory))
        print(f'{name} {tar} ({image.sizes.get(image.image, 0)} bytes), '
              f'program {program} ({image.sizes.get(image.program, 0)} bytes)')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Script interpreters in the sandbox: the build step, Lua 5.4, CPython 3.11.

The interpreters are the real ones, built from the host's packages by
``zvm_core.build.interpreters`` (fixture ``sysimages``).  Every run is checked for
exact output, and runs are repeated to show they give identical bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from archives import tar_bytes

from zvm_core.build import interpreters


@pytest.fixture(scope='module', autouse=True)
def _rebuild_meanwhile(request: pytest.FixtureRequest) -> None:
    """Start the second build of the system images with this file's first test when
    its last one (test_build_is_reproducible) is selected: the rest runs meanwhile."""
    if any('sysimage_rebuild' in getattr(item, 'fixturenames', ())
           for item in request.session.items
           if getattr(item, 'module', None) is request.module):
        request.getfixturevalue('sysimage_rebuild')


LUA_FILTER = b'''-- a filter: "name,qty" lines -> per-name totals, sorted, and a checksum line
local totals, order, lines = {}, {}, 0
for line in io.lines() do
  local name, qty = line:match("^(%w+),(%-?%d+)$")
  if name then
    if not totals[name] then totals[name] = 0; order[#order + 1] = name end
    totals[name] = totals[name] + tonumber(qty)
    lines = lines + 1
  end
end
table.sort(order)
for _, name in ipairs(order) do io.write(string.format("%-8s %d\\n", name, totals[name])) end
io.write(string.format("lines %d\\n", lines))
'''


def filter_input(n: int = 3000) -> tuple[bytes, bytes]:
    """Input for LUA_FILTER and the output it must give, computed here."""
    names = ['apple', 'pear', 'fig', 'kiwi', 'lime', 'plum', 'date']
    totals: dict[str, int] = {}
    rows = []
    for i in range(n):
        name, qty = names[(i * 7 + i // 3) % len(names)], (i * 37) % 201 - 100
        rows.append(f'{name},{qty}')
        totals[name] = totals.get(name, 0) + qty
        if i % 100 == 0:
            rows.append('# not a record')
    expected = ''.join(f'{k:<8} {v}\n' for k, v in sorted(totals.items())) + f'lines {n}\n'
    return ('\n'.join(rows) + '\n').encode(), expected.encode()


T = TypeVar('T')


def twice(run: Callable[[], T]) -> list[T]:
    """Two runs at once: their bytes must be the same whatever else runs, and on a
    second core the pair takes the time of one."""
    with ThreadPoolExecutor(2) as pool:
        return [f.result() for f in [pool.submit(run) for _ in range(2)]]


def assert_ok(run) -> None:
    assert run.status == 'ok', run
    assert run.report['retcode'] == 0, run
    assert run.returncode == 0, run


# -- the build -------------------------------------------------------------------

def test_build_is_cached_and_complete(sysimages):
    for name in interpreters.NAMES:
        program, tar = sysimages.program(name), sysimages.tar(name)
        assert program.exists() and tar.exists()
        with tarfile.open(tar) as t:
            member = t.getmember(name)
            assert member.mode == 0o755 and member.size == program.stat().st_size
            assert t.extractfile(member).read() == program.read_bytes()
    log = []
    again = interpreters.build(sysimages.directory, log=log.append)
    assert again == sysimages.images
    assert all('up to date' in line for line in log), log


def test_list_shows_each_file_with_its_own_size(sysimages, capsys):
    assert interpreters.main(['list', '--dir', str(sysimages.directory)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in interpreters.NAMES:
        program, tar = sysimages.program(name), sysimages.tar(name)
        assert (f'{name} {tar} ({tar.stat().st_size} bytes), '
                f'program {program} ({program.stat().st_size} bytes)') in lines


def test_python_image_contents(sysimages):
    with tarfile.open(sysimages.tar('python3')) as t:
        members = t.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert all(m.uid == 0 and m.gid == 0 and m.uname == '' and m.mtime == 0 for m in members)
    lib = 'usr/lib/python3.11'
    for module in ('os', 'json/__init__', 're/_parser', 'csv', 'collections/__init__',
                   'encodings/utf_8'):
        assert f'{lib}/{module}.py' in names
        folder, _, base = f'{lib}/{module}'.rpartition('/')
        assert f'{folder}/__pycache__/{base}.cpython-311.pyc' in names
    assert f'{lib}/lib-dynload' in names
    for absent in ('test/', 'idlelib/', 'tkinter/', 'ensurepip/', 'lib2to3/', 'turtledemo/',
                   'sitecustomize.py', 'config-3.11'):
        assert not any(n.startswith(f'{lib}/{absent}') for n in names), absent
    assert not any(n.endswith(('.so', '.opt-1.pyc', '.opt-2.pyc')) for n in names)
    with tarfile.open(sysimages.tar('python3')) as t:
        pyc = t.extractfile(f'{lib}/__pycache__/os.cpython-311.pyc').read()
    assert int.from_bytes(pyc[4:8], 'little') == 0b01      # hash-based, unchecked


def test_build_rejects_bad_input(tmp_path, monkeypatch):
    with pytest.raises(interpreters.BuildError, match='unknown system image'):
        interpreters.build(tmp_path, only=['perl'])
    bad = tmp_path / interpreters.LUPA_SDIST
    bad.write_bytes(b'not the sdist')
    with pytest.raises(interpreters.BuildError, match='not the pinned'):
        interpreters.build(tmp_path, only=['lua'], lua_sdist=bad)
    monkeypatch.setenv('SOURCE_DATE_EPOCH', 'yesterday')
    with pytest.raises(interpreters.BuildError, match='SOURCE_DATE_EPOCH'):
        interpreters.build(tmp_path, only=['python3'])


def test_programs_pass_the_validator(sysimages, zvm):
    for name in interpreters.NAMES:
        res = zvm.validate(sysimages.program(name))
        assert res.returncode == 0, res.stdout
        assert b': valid (' in res.stdout


# -- what interpreters need from the personality ---------------------------------

@pytest.mark.parametrize('cc', ['musl-gcc', 'gcc'])
def test_interpreter_syscalls(guest, zvm, cc):
    prog = guest('interp_sys', cc)
    run, again = twice(lambda: zvm.run(prog, opts=['--memory', str(64 << 20)]))
    assert_ok(run)
    assert run.stdout.decode() == (
        'usr1 before: default\n'
        'usr1 after: handler restart=1\n'
        'sigkill: EINVAL\n'
        'mask: usr2=1 kill=0 usr1=0\n'
        'futex wake: 0\n'
        'futex wait changed: EAGAIN\n'
        'futex wait timeout: ETIMEDOUT, slept >= 5 s: 1\n'
        f'sysinfo: totalram {64 << 20} unit 1 procs 1 free<total 1 uptime>=5 1\n'
        'cpus: 1\n'
        'cwd: /\n')
    assert run.accounting['unknown_syscalls'] == {}, run
    assert again.stdout == run.stdout
    assert again.accounting['fuel'] == run.accounting['fuel']


def test_futex_deadlock_is_a_fault(guest, zvm):
    run = zvm.run(guest('interp_sys'), 'deadlock')
    assert run.status == 'fault', run
    assert 'deadlock' in run.report['message'] and 'one thread' in run.report['message']
    assert run.stdout.endswith(b'cwd: /\n')


# -- Lua -------------------------------------------------------------------------

def test_lua_hello_from_stdin(sysimages, zvm):
    lua = sysimages.program('lua')
    runs = twice(lambda: zvm.run(lua, '-', stdin=b'print("hello from " .. _VERSION, 6 * 7)\n'))
    for run in runs:
        assert_ok(run)
        assert run.stdout == b'hello from Lua 5.4\t42\n'
        assert run.stderr == b''
        assert run.accounting['unknown_syscalls'] == {}
    assert runs[0].report['etags'] == runs[1].report['etags']
    assert runs[0].accounting['fuel'] == runs[1].accounting['fuel']


def test_lua_filter_script_from_input_channel(sysimages, zvm):
    data, expected = filter_input()
    lua = sysimages.program('lua')
    runs = twice(lambda: zvm.run(lua, '/dev/input', stdin=data, input=LUA_FILTER))
    for run in runs:
        assert_ok(run)
        assert run.stdout == expected
    assert runs[0].report == {**runs[1].report, 'accounting': runs[0].accounting}
    assert runs[0].accounting['fuel'] == runs[1].accounting['fuel']


def test_lua_error_gives_message_and_status(sysimages, zvm):
    run = zvm.run(sysimages.program('lua'), '-',
                  stdin=b'local t = {}\nprint("before")\nerror("boom: " .. #t)\n')
    assert run.status == 'ok', run
    assert run.report['retcode'] == 1 and run.returncode == 1
    assert run.stdout == b'before\n'
    assert run.stderr.startswith(b'lua: stdin:3: boom: 0\nstack traceback:\n'), run


def test_lua_cannot_reach_host_clock_or_randomness(sysimages, zvm):
    script = b'''
print(io.open("/etc/passwd"))
print(io.open("/dev/input", "w"))
print(os.execute("ls"))
print(io.popen("ls"))
print(os.getenv("HOME"), os.time(), os.clock() < 1, os.date("!%Y-%m-%d", os.time()))
print(math.random(1000000), math.random(1000000))
'''
    lua = sysimages.program('lua')
    runs = twice(lambda: zvm.run(lua, '-', stdin=script, opts=['--epoch', '86400']))
    assert_ok(runs[0])
    lines = runs[0].stdout.decode().splitlines()
    assert lines[0] == 'nil\t/etc/passwd: No such file or directory\t2'
    assert lines[1].startswith('nil\t/dev/input: ')
    assert lines[2] == 'nil\tFunction not implemented\t38'          # no processes
    assert lines[3] == 'nil\tls: Function not implemented\t38'
    home, now, clock, day = lines[4].split('\t')
    assert (home, now, clock, day) == ('nil', '86400', 'true', '1970-01-02')
    assert runs[0].stdout == runs[1].stdout           # same "random" numbers every run


# -- Python ------------------------------------------------------------------------
#
# Python runs as ZeroCloud ran it: a ZeroVM manifest whose NVRAM mounts the
# python3 system image (and the job's own image) read-only at "/".

BIG = 1 << 40


class PyJob:
    """``zvm MANIFEST`` for ``python3 ARGS`` with the python3 image mounted at ``/``."""

    def __init__(self, zerovm, sysimages) -> None:
        self.zerovm, self.sysimages = zerovm, sysimages

    def manifest(self, args: list[str], *, input: bool = False, image: bool = False,
                 env: dict | None = None, epoch: int | None = None,
                 memory: int = 256 << 20, timeout: int = 60) -> tuple[str, bytes]:
        from zvm_core.zerovm import nvram
        lines = [f'Channel = {{d}}/stdin, /dev/stdin, 0, 0, {BIG}, {BIG}, 0, 0',
                 f'Channel = {{d}}/stdout, /dev/stdout, 0, 1, 0, 0, {BIG}, {BIG}',
                 f'Channel = {{d}}/stderr, /dev/stderr, 0, 1, 0, 0, {BIG}, {BIG}',
                 f'Channel = {self.sysimages.tar("python3")}, /dev/python3, 3, 0, {BIG}, {BIG},'
                 ' 0, 0',
                 f'Channel = {{d}}/nvram, /dev/nvram, 3, 0, {BIG}, {BIG}, 0, 0']
        mounts = [nvram.Mount('/dev/python3', '/')]
        if input:
            lines.append(f'Channel = {{d}}/input, /dev/input, 3, 0, {BIG}, {BIG}, 0, 0')
        if image:
            lines.append(f'Channel = {{d}}/image, /dev/image, 3, 0, {BIG}, {BIG}, 0, 0')
            mounts.append(nvram.Mount('/dev/image', '/'))
        nv = nvram.Nvram(args=['python3', *args], env=dict(env or {}), mounts=mounts,
                         time=epoch)
        text = self.zerovm.manifest(self.sysimages.program('python3'),
                                    '\n'.join(lines) + '\n', memory=memory, timeout=timeout)
        return text, nv.to_text().encode()

    def run(self, args: list[str], *, stdin: bytes = b'', input: bytes | None = None,
            image: bytes | None = None, **kw):
        manifest, nv = self.manifest(args, input=input is not None, image=image is not None,
                                     **kw)
        files = {'nvram': nv}
        if input is not None:
            files['input'] = input
        if image is not None:
            files['image'] = image
        return self.zerovm.run(manifest, files=files, stdin=stdin)


@pytest.fixture(scope='module')
def python(zerovm, sysimages) -> PyJob:
    return PyJob(zerovm, sysimages)


def host_python(script: str, *args: str, cwd=None, stdin: bytes = b'') -> bytes:
    """The same script on the host interpreter: the oracle for exact output."""
    proc = subprocess.run([sys.executable, '-c', script, *args], input=stdin, cwd=cwd,
                          capture_output=True, check=True, env={'PYTHONHASHSEED': '0'})
    return proc.stdout


def assert_ran(session, retcode: int = 0) -> None:
    assert session.returncode == 0, session
    assert session.state == 'ok', session
    assert session.retcode == retcode, (session, session.read('stderr')[-2000:])


def test_python_hello_isolated(python):
    runs = twice(lambda: python.run(['-S', '-I', '-c', 'print(1)']))
    for run in runs:
        assert_ran(run)
        assert run.read('stdout') == b'1\n'
        assert run.read('stderr') == b''
    assert runs[0].etags == runs[1].etags
    assert runs[0].etags['/dev/stdout'] == hashlib.md5(b'1\n').hexdigest()


LOCKS_SCRIPT = """
import threading
lock = threading.Lock()
for _ in range(int(__import__('sys').argv[1])):
    lock.acquire()
    lock.release()
lock.acquire()
print(lock.acquire(False), lock.acquire(timeout=0.01), lock.locked())
lock.release()
print(lock.acquire(False))
"""


def test_python_takes_a_free_lock_without_a_mediated_call(engine, sysimages, tmp_path):
    # CPython 3.11 reads the clock on every lock acquisition, a mediated call here (124
    # of a -S print(1)'s 306): the image takes a free lock without it; a held one
    # still waits (and times out) as before
    from zvm_core.channels import READ, WRITE, Channel, FdBacking
    from zvm_core.executor import run
    from zvm_core.syscalls.fs import Image
    reports = []
    for n in (0, 100):
        out = tmp_path / f'out{n}'
        tar = Channel('/dev/python3', FdBacking.open(sysimages.tar('python3'), READ), READ,
                      random=True)
        image = Image()
        image.mount(tar.backing, '/', tar.alias)
        report = run(sysimages.program('python3'),
                     [Channel('/dev/stdout', FdBacking.open(out, WRITE), WRITE), tar],
                     argv=['python3', '-S', '-c', LOCKS_SCRIPT, str(n)], image=image,
                     engine=engine)
        assert (report.status, report.retcode) == ('ok', 0), report
        assert out.read_bytes() == b'False False True\nTrue\n'
        reports.append(report)
    assert reports[0].accounting.syscalls == reports[1].accounting.syscalls


UNCLOSED_SCRIPT = """
def total(xs):
    return sum(xs)
out = open('/dev/stdout', 'w')
out.write(f'total {total([1, 2, 3])}\\n')
"""


def test_python_flushes_a_scripts_unclosed_files_at_exit(python):
    # start-up's objects are frozen (gc.freeze), the __main__ dict with them: a function
    # of the script made a cycle with it that was never collected, so an unclosed file
    # was never flushed: "total 6" lost, exit 0 (CPython writes it)
    expected = host_python(UNCLOSED_SCRIPT)
    assert expected == b'total 6\n'
    run = python.run(['-c', UNCLOSED_SCRIPT])
    assert_ran(run)
    assert run.read('stdout') == expected


STDLIB_SCRIPT = '''
import collections, csv, io, json, re, sys
text = "the quick brown fox jumps over the lazy dog the fox"
words = re.findall(r"[a-z]+", text)
common = collections.Counter(words).most_common(3)
rows = list(csv.DictReader(io.StringIO("name,n\\nann,3\\nbob,5\\n")))
doc = {"common": common, "total": sum(int(r["n"]) for r in rows),
       "names": [r["name"] for r in rows]}
print(json.dumps(doc, sort_keys=True))
print(json.loads(json.dumps({"x": [1.5, None, True]})))
print(sys.version_info[:2], sys.platform, sys.getdefaultencoding(), sys.flags.hash_randomization)
'''


def test_python_stdlib_json_re_csv_collections(python):
    expected = host_python(STDLIB_SCRIPT)
    runs = twice(lambda: python.run(['-c', STDLIB_SCRIPT]))
    for run in runs:
        assert_ran(run)
        assert run.read('stdout') == expected
        assert run.read('stderr') == b''
    assert runs[0].etags == runs[1].etags


NUMERIC_SCRIPT = '''
import contextvars, decimal, fractions, statistics
print(decimal.Decimal("1.10") + decimal.Decimal("2.205"), fractions.Fraction(6, 4))
print(statistics.mean([1, 2, 4]), statistics.median([5, 1, 3, 2]))
var = contextvars.ContextVar("var", default="outer")
ctx = contextvars.copy_context()
print(ctx.run(lambda: (var.set("inner"), var.get())[1]), var.get())
'''


def test_python_modules_that_need_contextvars(python):
    """Debian ships _contextvars as a shared module; the static build has it built in."""
    run = python.run(['-c', NUMERIC_SCRIPT])
    assert_ran(run)
    assert run.read('stdout') == host_python(NUMERIC_SCRIPT) == (
        b'3.305 3/2\n2.3333333333333335 2.5\ninner outer\n')


CSV_AGG = '''
import csv, sys
from collections import defaultdict
path = sys.argv[1] if len(sys.argv) > 1 else "/dev/input"
count, qty, revenue = defaultdict(int), defaultdict(int), defaultdict(float)
with open(path, newline="") as f:
    reader = csv.reader(f)
    next(reader)
    for region, product, q, price, note in reader:
        q = int(q)
        count[region] += 1
        qty[region] += q
        revenue[region] += q * float(price)
for region in sorted(count):
    print(f"{region},{count[region]},{qty[region]},{revenue[region]:.2f}")
'''


def csv_object(size: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    regions = ['north', 'south', 'east', 'west', 'central']
    words = ['lorem', 'ipsum', 'dolor', 'sit', 'amet', 'consectetur', 'adipiscing', 'elit']
    out, total = ['region,product,qty,price,note\n'], 0
    while total < size:
        note = ' '.join(rng.choice(words) for _ in range(rng.randrange(20, 120)))
        row = (f'{rng.choice(regions)},p{rng.randrange(200):03d},{rng.randrange(1, 100)},'
               f'{rng.randrange(100, 100000) / 100:.2f},"{note}"\n')
        out.append(row)
        total += len(row)
    return ''.join(out).encode()


def test_python_csv_aggregation_over_a_large_object(python, tmp_path):
    """A CSV object far larger than every buffer on its way (the channel's, CPython's
    io and csv ones), aggregated by two runs at once: the host's answer, same bytes.

    4 MB keeps what this tests (it was 20 MB: two emulated runs at once then
    took longer than a fixed 60 s timeout on a loaded machine); the wall-clock
    limit scales with the size, so load makes the test slower, never wrong.
    """
    data = csv_object(4_000_000)
    assert len(data) >= 4_000_000
    (tmp_path / 'data.csv').write_bytes(data)
    expected = host_python(CSV_AGG, str(tmp_path / 'data.csv'))
    assert expected.count(b'\n') == 5
    budget = 60 * (1 + (len(data) >> 20))       # seconds: ~50x what one run needs alone
    manifest, nv = python.manifest(['-c', CSV_AGG], input=True, timeout=budget)
    procs = []
    for _ in range(2):       # two runs at once: same bytes
        d = python.zerovm.zvm._dir()
        (d / 'stdin').write_bytes(b'')
        (d / 'nvram').write_bytes(nv)
        (d / 'input').symlink_to(tmp_path / 'data.csv')
        (d / 'manifest').write_text(manifest.replace('{d}', str(d)))
        procs.append((d, python.zerovm.zvm.popen(d / 'manifest', stdout=subprocess.PIPE)))
    for d, proc in procs:
        report = proc.communicate(timeout=2 * budget)[0].decode().split('\n')
        assert proc.returncode == 0 and report[2] == '0' and report[5] == 'ok', report
        assert (d / 'stderr').read_bytes() == b''
        assert (d / 'stdout').read_bytes() == expected
        assert report[4].split()[3] == str(len(data))      # the whole object was read
    outputs = [d.joinpath('stdout').read_bytes() for d, _ in procs]
    assert outputs[0] == outputs[1]


USER_MODULES = {
    'job/main.py': b'''import sys
from wordstat import count, top
from wordstat.fmt import table
counts = count(sys.stdin.read())
print(table(top(counts, 5)))
mods = [sys.modules[name] for name in ("wordstat", "wordstat.fmt")]
print("modules from", sorted(m.__file__ for m in mods))
''',
    'job/wordstat/__init__.py': b'''import collections, re

def count(text):
    return collections.Counter(re.findall(r"[a-z']+", text.lower()))

def top(counts, n):
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
''',
    'job/wordstat/fmt.py': b'''def table(pairs):
    width = max(len(w) for w, _ in pairs)
    return "\\n".join(f"{w:<{width}} {n:>4}" for w, n in pairs)
''',
}
USER_TEXT = (b'It was the best of times, it was the worst of times; '
             b'it was the age of wisdom.\n') * 50


def test_python_script_reads_its_modules_from_a_user_image(python, tmp_path):
    for name, data in USER_MODULES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    expected = subprocess.run([sys.executable, 'job/main.py'], input=USER_TEXT, cwd=tmp_path,
                              capture_output=True, check=True).stdout
    expected = expected.replace(str(tmp_path).encode() + b'/', b'/')
    image = tar_bytes(USER_MODULES)
    runs = twice(lambda: python.run(['/job/main.py'], stdin=USER_TEXT, image=image))
    for run in runs:
        assert_ran(run)
        assert run.read('stderr') == b''
        assert run.read('stdout') == expected
    assert b"['/job/wordstat/__init__.py', '/job/wordstat/fmt.py']" in expected
    assert runs[0].etags == runs[1].etags


ESCAPE_SCRIPT = r'''
import os, random, socket, subprocess, sys, threading, time
def attempt(f):
    try:
        return repr(f())
    except BaseException as e:
        return f"{type(e).__name__}: {e}"
print(attempt(lambda: open("/etc/passwd").read(10)))
print(attempt(lambda: open("/proc/self/environ", "rb").read()))
print(attempt(lambda: sorted(os.listdir("/"))))
print(attempt(lambda: open("/tmp/x", "w")))
print(attempt(lambda: open("/usr/lib/python3.11/os.py", "a")))
print(attempt(lambda: open("/usr/lib/python3.11/new.py", "w")))
print(attempt(lambda: socket.socket()))
print(attempt(lambda: subprocess.run(["ls"])))
print(attempt(lambda: threading.Thread(target=print).start()))
print(attempt(lambda: os.fork()))
print(int(time.time()), time.gmtime(time.time())[:3], time.monotonic() < 60)
print(random.random(), os.urandom(8).hex(), hash("abc"))
print(os.getpid(), os.getuid(), os.uname().nodename, os.cpu_count(), sorted(os.environ))
'''


def test_python_cannot_reach_host_files_clock_or_randomness(python):
    runs = twice(lambda: python.run(['-c', ESCAPE_SCRIPT], epoch=1_700_000_000,
                                    env={'LANG': 'C'}))
    assert_ran(runs[0])
    lines = runs[0].read('stdout').decode().splitlines()
    assert lines[:10] == [
        "FileNotFoundError: [Errno 2] No such file or directory: '/etc/passwd'",
        "FileNotFoundError: [Errno 2] No such file or directory: '/proc/self/environ'",
        "['dev', 'python3', 'usr']",
        "FileNotFoundError: [Errno 2] No such file or directory: '/tmp/x'",
        "OSError: [Errno 30] Read-only file system: '/usr/lib/python3.11/os.py'",
        "OSError: [Errno 30] Read-only file system: '/usr/lib/python3.11/new.py'",
        'OSError: [Errno 38] Function not implemented',
        'OSError: [Errno 38] Function not implemented',
        "RuntimeError: can't start new thread",
        'OSError: [Errno 38] Function not implemented'], lines
    clock = lines[10]
    now, day, monotonic = clock.split(' ', 1)[0], clock.split(' ', 1)[1][:-5], clock[-4:]
    assert now == '1700000000' and day == '(2023, 11, 14)' and monotonic == 'True', clock
    assert lines[12] == "1 1000 zerovm 1 ['LANG']"
    assert runs[1].read('stdout') == runs[0].read('stdout')     # the same "random" values


ERROR_SCRIPT = b'''import json
def load(text):
    return json.loads(text)
print("partial output")
load("{not json")
'''


def test_python_error_gives_traceback_and_status(python):
    run = python.run(['/job/bad.py'], image=tar_bytes({'job/bad.py': ERROR_SCRIPT}))
    assert_ran(run, retcode=1)
    assert run.read('stdout') == b'partial output\n'
    err = run.read('stderr').decode()
    assert err.startswith('Traceback (most recent call last):\n'
                          '  File "/job/bad.py", line 5, in <module>\n'
                          '    load("{not json")\n'
                          '  File "/job/bad.py", line 3, in load\n'
                          '    return json.loads(text)\n'
                          '           ^^^^^^^^^^^^^^^^\n'
                          '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
                          '    return _default_decoder.decode(s)\n'), err
    assert err.endswith('json.decoder.JSONDecodeError: Expecting property name enclosed in '
                        'double quotes: line 1 column 2 (char 1)\n'), err
    exit3 = python.run(['-c', 'import sys; sys.exit(3)'])
    assert_ran(exit3, retcode=3)


def pool_python(pool, sysimages, tmp_path, args: list[str], tag: str):
    """``python3 ARGS`` through a warm worker: (report, stdout, stderr)."""
    from zvm_core.channels import READ, WRITE
    from zvm_core.pool import ChannelSpec
    files = {name: open(tmp_path / f'{tag}.{name}', 'w+b') for name in ('stdout', 'stderr')}
    image = open(sysimages.tar('python3'), 'rb')
    try:
        specs = [ChannelSpec('/dev/stdout', files['stdout'].fileno(), WRITE),
                 ChannelSpec('/dev/stderr', files['stderr'].fileno(), WRITE),
                 ChannelSpec('/dev/python3', image.fileno(), READ, random=True, mount='/')]
        report = pool.run(str(sysimages.program('python3')), specs, argv=['python3', *args])
    finally:
        image.close()
        for f in files.values():
            f.close()
    return (report, (tmp_path / f'{tag}.stdout').read_bytes(),
            (tmp_path / f'{tag}.stderr').read_bytes())


def test_python_error_never_takes_the_worker(sysimages, tmp_path):
    from zvm_core.pool import Pool
    with Pool(size=1) as pool:
        pids = pool.pids
        bad, out, err = pool_python(pool, sysimages, tmp_path, ['-c', 'print(1)\n1/0'], 'bad')
        assert (bad.status, bad.retcode) == ('ok', 1), bad
        assert out == b'1\n'
        assert err == (b'Traceback (most recent call last):\n  File "<string>", line 2, in '
                       b'<module>\nZeroDivisionError: division by zero\n'), err
        good, out, err = pool_python(pool, sysimages, tmp_path, ['-c', 'print(2)'], 'good')
        assert (good.status, good.retcode, out, err) == ('ok', 0, b'2\n', b''), good
        assert pool.pids == pids and pool.replaced == 0
        bad_image = tmp_path / 'not-a-tar'
        bad_image.write_bytes(b'x' * 2000)
        from zvm_core.channels import READ
        from zvm_core.pool import ChannelSpec
        with open(bad_image, 'rb') as f:
            report = pool.run(str(sysimages.program('python3')),
                              [ChannelSpec('/dev/image', f.fileno(), READ, True, mount='/')],
                              argv=['python3', '-c', 'pass'])
        assert report.status == 'refused' and 'cannot mount /dev/image at /' in report.message
        assert pool.pids == pids and pool.replaced == 0


# -- system images by name -------------------------------------------------------

def test_zvm_run_programs_from_system_images(sysimages, zvm, tmp_path):
    run = zvm.run('file://python3:python3', '-S', '-c', 'import sys; print(sys.argv)')
    assert_ok(run)
    assert run.stdout == b"['-c']\n"
    (tmp_path / 'hello.lua').write_bytes(b'print("lua", ...)\n')
    image = tmp_path / 'job.tar'
    image.write_bytes(tar_bytes({'job/hello.lua': b'print("lua", ...)\n',
                                'job/main.py': b'import os\nprint(sorted(os.listdir("/")))\n'}))
    run = zvm.run('file://lua:lua', '/job/hello.lua', 'a', 'b', opts=['--image', str(image)])
    assert_ok(run)
    assert run.stdout == b'lua\ta\tb\n'
    run = zvm.run('file://python3:python3', '/job/main.py', opts=['--image', str(image)])
    assert_ok(run)
    assert run.stdout == b"['dev', 'job', 'python3', 'usr']\n"
    run = zvm.run(sysimages.program('lua'), '-e', 'print(io.open("/python3") ~= nil)',
                  opts=['--sysimage', 'python3'])
    assert_ok(run)
    assert run.stdout == b'true\n'


def test_zvm_run_of_a_script_of_this_machine_says_to_put_it_in_an_image(sysimages, zvm,
                                                                       tmp_path):
    # a new user's `zvm run file://python3:python3 job.py` got only the interpreter's
    # "can't open file '//job.py'": the sandbox sees images, not the host's files
    script = tmp_path / 'hello.lua'
    script.write_bytes(b'print("hi")\n')
    res = zvm.cli('run', 'file://lua:lua', script)
    assert res.returncode != 0
    assert f'zvm: {script} is a file of this machine, which the sandbox cannot see' in \
        res.stderr.decode()
    assert f'tar cf job.tar -C {tmp_path} hello.lua and zvm run --image job.tar ... ' \
        '/hello.lua' in res.stderr.decode()
    image = tmp_path / 'job.tar'            # the same path in an image: it runs, no hint
    image.write_bytes(tar_bytes({str(script).lstrip('/'): b'error("boom")\n'}))
    res = zvm.cli('run', '--image', image, 'file://lua:lua', script)
    assert res.returncode != 0 and b'boom' in res.stderr
    assert b'file of this machine' not in res.stderr


def test_zvm_run_refuses_unknown_images_clearly(sysimages, zvm, tmp_path):
    for program, says in [('file://cobol:cobol', "unknown system image 'cobol' (known: "),
                          ('file://python3', 'expected file://<image>:<path>'),
                          ('file://python3:nothing', 'system image python3 has no file nothing'),
                          ('file://image:x', 'no --image to take it from')]:
        res = zvm.cli('run', program)
        assert res.returncode == 2, res
        assert says in res.stderr.decode(), res.stderr
    (tmp_path / 'junk').write_bytes(b'x' * 3000)
    res = zvm.cli('run', '--image', tmp_path / 'junk', sysimages.program('lua'), '-v')
    assert res.returncode == 2 and 'not a readable tar image' in res.stderr.decode()


def test_sysimage_configuration_is_checked(tmp_path):
    from zvm_core import sysimages as si
    assert si.parse('python3 /a/p.tar lua /b/l.tar') == {'python3': Path('/a/p.tar'),
                                                        'lua': Path('/b/l.tar')}
    assert si.parse('') == {}
    for spec, says in [('python3', 'has no path'), ('py/3 /x', 'bad system image name'),
                       ('stdin /x', 'bad system image name'), ('a /x a /y', 'twice'),
                       ('a x.tar', 'not an absolute path')]:
        with pytest.raises(si.SysImageError, match=says):
            si.parse(spec)
    images = si.SystemImages({'t': tmp_path / 't.tar', 'gone': tmp_path / 'gone.tar'},
                             cache_dir=tmp_path / 'cache')
    (tmp_path / 't.tar').write_bytes(tar_bytes({'./bin/tool': b'\x7fELF...'}))
    first = images.program('t', 'bin/tool')
    assert first.read_bytes() == b'\x7fELF...' and images.program('t', '/bin/tool') == first
    assert first.parent == tmp_path / 'cache'
    with pytest.raises(si.SysImageError, match='is not a readable file'):
        images.program('gone', 'x')
    with pytest.raises(si.SysImageError, match='has no file bin'):
        images.program('t', 'bin')


# -- the examples ------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / 'examples'


def test_example_python_csv(sysimages, zvm, tmp_path):
    src = EXAMPLES / 'python-csv'
    data = subprocess.run([sys.executable, str(src / 'make_data.py'), '300000'],
                          capture_output=True, check=True).stdout
    (tmp_path / 'sales.csv').write_bytes(data)
    expected = subprocess.run([sys.executable, str(src / 'agg.py'), 'region', 'qty', 'revenue',
                               '--file', str(tmp_path / 'sales.csv')],
                              capture_output=True, check=True).stdout
    assert expected.startswith(b'region,rows,qty,revenue\ncentral,')
    image = tmp_path / 'agg.tar'
    image.write_bytes(tar_bytes({'agg.py': (src / 'agg.py').read_bytes()}))
    run = zvm.run('file://python3:python3', '/agg.py', 'region', 'qty', 'revenue', input=data,
                  opts=['--image', str(image)])
    assert_ok(run)
    assert run.stdout == expected
    bad = zvm.run('file://python3:python3', '/agg.py', 'nope', input=data,
                  opts=['--image', str(image)])
    assert bad.report['retcode'] == 1
    assert bad.stderr.startswith(b"agg.py: no column nope in ['region', 'product', ")
    job = json.loads((src / 'job.json').read_text())
    assert job[0]['exec']['path'] == 'file://python3:python3'


def test_example_lua_filter(sysimages, zvm, tmp_path):
    src = EXAMPLES / 'lua-filter'
    image = tmp_path / 'filter.tar'
    image.write_bytes(tar_bytes({'filter.lua': (src / 'filter.lua').read_bytes()}))
    run = zvm.run('file://lua:lua', '/filter.lua', '400', stdin=(src / 'access.log').read_bytes(),
                  opts=['--image', str(image)])
    assert_ok(run)
    assert run.stdout == b'404\t2\n500\t1\nunparsed\t1\n'
    assert json.loads((src / 'job.json').read_text())[0]['exec']['path'] == 'file://lua:lua'


def test_build_is_reproducible(sysimages, sysimage_rebuild):
    """A second build from scratch elsewhere gives the same bytes (it runs in the
    background from this file's first test, conftest's ``Rebuild``: this test comes
    last in the file so that the rest of it runs meanwhile)."""
    other, log = sysimage_rebuild.wait()
    assert not any('up to date' in line for line in log), log
    for name in interpreters.NAMES:
        assert any(line.startswith(f'{name}: built {name}.tar (') for line in log), log
        assert other[name].digests == sysimages.images[name].digests, name
        assert other[name].key == sysimages.images[name].key

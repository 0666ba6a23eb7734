"""A fresh run, a reused template and a start-up snapshot are indistinguishable.

Every program in tests/programs that the validator accepts is run under each
engine (``engine``) with the same request three ways: fresh each time (a new
machine; natively a loader spawned for the run), again and again from one
template (each run after a reset, the first after a run with another request;
natively children of one ``Warm``'s template), and keeping snapshots (the first
run records its prefix, the later ones resume from it; natively every prefix is
kept, however few calls it made).  Every byte of every output channel, the
memory digest at the end (emulated) and the whole report (timing aside) must
be the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from zvm_core.channels import READ, WRITE, Channel, MemoryBacking, Quota
from zvm_core.elf import ElfError, load_program
from zvm_core.engines import native_unavailable
from zvm_core.engines.emulated.machine import Machine
from zvm_core.engines.native import cpuid
from zvm_core.executor import MEMORY_ETAG, Limits, execute
from zvm_core.prepare import explained, prepare
from zvm_core.validator import validate

PROGRAMS = Path(__file__).resolve().parents[1] / 'programs'
TEXT = b''.join(b'line %d: alpha beta %d gamma\n' % (i, i * 7 % 13) for i in range(400))
DECIMALS = b'0.1\n62357.97\n3242514504.25\n2.2250738585072011e-308\n1e23\n-7.038531e-26\n'
LIMITS = Limits(memory=64 << 20, fuel=300_000_000, timeout=120)
OUT_QUOTA = Quota(put_size=1 << 20)
FUEL = {'loop': 20_000_000}     # it ends by fuel: a short budget is as good a test
# zero-length and negative-length trap reads into the trap page, code, past the guest: a
# buffer of no bytes is only required to be guest memory (ZeroVM), never checked further
EMPTY_BUFFERS = (tuple(f'b:/dev/{c}:{addr}:{size}' for c in ('stdin', 'input')
                       for addr in (0x10000, 0x10001, 0x401000, 0xFFFFFFFF, 1 << 32, 0)
                       for size in (0, -1)), TEXT)

# name -> the requests it is run with: (argv after the name, stdin)
CASES: dict[str, list[tuple[tuple[str, ...], bytes]]] = {
    'addrs': [((), b'')], 'bigio': [(('edge', '9'), TEXT), (('readv', '9'), TEXT)],
    'args_env': [(('a', 'b c', ''), b'')], 'badptr': [((), b'')],
    'cat': [((), TEXT)], 'chanperm': [((), b'')], 'cpuid': [((), b'')],
    'crash': [((what,), b'') for what in ('div0', 'int3', 'ud2', 'hlt', 'abort', 'null',
                                          'stack')],
    'exitcode': [(('3',), b''), (('4', 'raw'), b'')], 'fileio': [((), b'')],
    'floats': [((), DECIMALS)], 'flood': [((), b'')], 'floodv': [((), b'')],
    'forbidden': [(('all',), b'')],
    'freed': [((how,), b'') for how in ('map', 'brk', 'fixed', 'file')],
    'freedmix': [((how,), b'') for how in ('partial', 'odd', 'floor', 'dontneed', 'fixed')],
    'getpid': [(('500',), b'')], 'hello': [((), b'')], 'initstate': [((), b''), (('x',), b'')],
    'interp_sys': [((), b'')], 'jit': [((), b'')], 'jump_data': [((), b'')],
    'leftover': [(('q',), b'')], 'deepstack': [(('40', 'q'), b'')],
    'loop': [((), b'')], 'malloc': [((), b'')],
    'mapfile': [(('65536', '4096'), b''), (('100', '0'), b'')],
    'membomb': [((), b'')], 'miniscript': [(('/script',), b'')], 'passwd': [((), b'')],
    'native_hostile': [(('calls',), b''), (('fds',), b''), (('edges',), b'')],
    'rdtsc': [((), b'')], 'rdtsc_prefixed': [((), b'')],
    'rtm': [((), b''), (('skip',), b'')], 'readsizes': [(('5',), TEXT[:100])],
    'avx': [((how,), b'') for how in ('xmm', 'zmm', 'kmovb', 'sha', 'xgetbv')],
    'readtext': [((), b'')],
    'remap': [((), b'')], 'reopen': [((), b'')], 'scribble': [(('4', 'w'), b'')],
    'sigstate': [((), b'hi\n'), (('manifest',), b'hi\n')], 'sleep': [((), b'')],
    'sort': [((), b'')], 'spin': [(('100000',), b'')], 'src_interp': [(('/script',), b'')],
    'startover': [(('1000',), b'')], 'startup': [((), TEXT)],
    'timeprint': [((), b'')], 'timewarp': [((), b'')], 'unknown_syscalls': [(('300',), b'')],
    'wc': [((), TEXT)], 'write_text': [((), b'')],
    'zvm_copy': [((), TEXT)], 'zvm_exit': [((), b'5')], 'zvm_jail': [((), b'v'), ((), b'x')],
    'zvm_sort': [((), TEXT)], 'zvm_trapper': [(('read', '0', '10'), TEXT), EMPTY_BUFFERS],
    'hidden_ret': [((), b'')], 'rdtsc_hidden': [((), b'')], 'rodata_code': [((), b'')],
    'emit': [(('200000', 'e'), b'')], 'fastcall': [(('edges',), TEXT)],
    'sparse': [(('1099511627776:0', '10:5'), b'')], 'iovbomb': [(('1', '4'), b'abc')],
    'vsyscall': [((), b'')], 'mprotbits': [((), b'ABCDEF')], 'gather': [(('300', '2'), TEXT)],
    'epipe': [((), b'')], 'samefile': [((), TEXT)],
    'writesizes': [(('300000', '5', '700000'), b'')],
    'stacktop': [((), b''), (('x' * 15, 'y'), b'')],
    'hostile8': [((what,), b'abcdefgh') for what in ('threads', 'fds', 'vectors', 'memory')],
    'hostile20': [((), b'')], 'sysflags': [((), b'')], 'cmpxchg': [((), b'')],
    'reprotect': [((how,), b'') for how in ('fixed', 'reuse', 'read', 'reserve')],
    'protsnap': [((how,), b'') for how in ('calls', 'store', 'held', 'data', 'unmapped')],
}
# the programs whose prefix is resumed under both engines (the others' may be too short)
RESUMED = {'protsnap', 'freed', 'freedmix', 'rtm'}
NATIVE_SKIP = {   # not deterministic natively, by design (doc/sandbox.md, "Engines")
    'loop': 'it ends by fuel, which only the emulated engine has',
    'rodata_code': 'natively its hidden rdrand runs: the hardware random number',
}
REFUSED = {   # programs the validator or the ELF check refuses: nothing to run
    'rdrand', 'wrmsr', 'int80', 'sysenter', 'segment', 'entry_hidden', 'xop_rdrand',
}
NOT_HERE = {  # need links between nodes: tests/functional runs them in jobs; take
    'graph_pipe', 'graph_stream', 'bigcode',    # seconds to validate: test_hostile_review8
    'bigspin',                                  # and test_hostile_review16
}
CPUID_PROGRAMS = {'cpuid', 'rdtsc_prefixed'}  # print what cpuid says: the host's without faulting
FLAGS = {'initstate': ('-O2', '-Wl,-eprobe_entry'), 'leftover': ('-O1',),
         'rodata_code': ('-O2', '-Wl,-z,noseparate-code')}


def test_every_program_is_classified():
    names = {p.stem for p in PROGRAMS.iterdir() if p.suffix in ('.c', '.S')}
    assert names == set(CASES) | REFUSED | NOT_HERE


def _build(name: str, guest, zvm_guest) -> Path:
    if name.startswith('zvm_'):
        return zvm_guest(name)
    return guest(name, flags=FLAGS.get(name, ('-O2',)))


@pytest.mark.parametrize('name', sorted(REFUSED))
def test_refused_programs_are_refused(name, guest, zvm_guest):
    try:
        program = load_program(_build(name, guest, zvm_guest))
    except ElfError:
        return
    assert not validate(program).ok


def _channels(stdin: bytes) -> tuple[list[Channel], dict[str, MemoryBacking]]:
    backings = {'/dev/stdout': MemoryBacking(), '/dev/stderr': MemoryBacking(),
                '/dev/output': MemoryBacking()}
    channels = [Channel('/dev/stdin', MemoryBacking(stdin), READ),
                Channel('/dev/input', MemoryBacking(TEXT), READ, random=True),
                Channel('/dev/stdout', backings['/dev/stdout'], WRITE, quota=OUT_QUOTA),
                Channel('/dev/stderr', backings['/dev/stderr'], WRITE, quota=OUT_QUOTA),
                Channel('/dev/output', backings['/dev/output'], WRITE, random=True,
                        quota=OUT_QUOTA)]
    return channels, backings


class Kept:
    """One program under ``engine``, run fresh each time (``kept=False``) or from one
    template (emulated: a ``Machine`` reset between runs; natively a pool worker's
    ``Warm``), keeping snapshots or not."""

    def __init__(self, engine: str, prepared, kept: bool = True,
                 snapshots: bool = False) -> None:
        self.engine, self.prepared, self.kept = engine, prepared, None
        self.start = 'entry'
        if not kept:
            return
        if engine == 'emulated':
            self.kept = Machine(prepared.program, prepared.verdict,
                                Limits(memory=LIMITS.memory), snapshots=snapshots)
            return
        from zvm_core.engines.native.warm import Warm
        self.kept = Warm(prepared.program, prepared.verdict, LIMITS.memory, prepared.tsc)
        if not snapshots:
            self.kept.snapshots = None

    def run(self, argv: list[str], stdin: bytes) -> dict:
        channels, backings = _channels(stdin)
        limits = Limits(LIMITS.memory, FUEL.get(argv[0], LIMITS.fuel), LIMITS.timeout)
        env = {'HOME': '/', 'LANG': 'C'}
        if self.kept is None:
            report = execute(self.prepared, channels, argv, env, limits, seed=5, epoch=10**9,
                             memory_etag=True)
        elif self.engine == 'emulated':
            report = self.kept.run(channels, argv, env, seed=5, epoch=10**9, limits=limits,
                                   memory_etag=True)
        else:
            report = self.kept.run(channels, argv, env, 5, 10**9, limits)
            self.kept.reset()
        if self.kept is not None:   # as a pool's worker does after a template's run
            report = explained(report, self.prepared.program, self.prepared.verdict)
        self.start = report.accounting.start
        result = report.to_dict()
        del result['accounting']['wall_time'], result['accounting']['start']
        del result['validation'], result['engine_reason']   # the caller's: prepare, a pool
        result['outputs'] = {alias: bytes(b.data) for alias, b in backings.items()}
        return result

    def close(self) -> None:
        if self.kept is not None:
            self.kept.close()


@pytest.fixture
def prepared_for(engine, guest, zvm_guest, monkeypatch):
    """``prepared_for(name)``: the program built and prepared for ``engine``."""
    if engine == 'native':
        from zvm_core.engines.native import snapshot as native
        from zvm_core.engines.native import tsc_unavailable
        if tsc_unavailable():
            pytest.skip(f'native snapshots are recorded by a traced probe: {tsc_unavailable()}')
        monkeypatch.setattr(native, 'MIN_PREFIX_CALLS', 0)
    return lambda name: prepare(_build(name, guest, zvm_guest), engine=engine)


@pytest.mark.parametrize('name', sorted(CASES))
def test_fresh_reused_and_resumed_runs_are_identical(name, engine, prepared_for):
    if engine == 'native' and name in NATIVE_SKIP:
        pytest.skip(NATIVE_SKIP[name])
    if engine == 'native' and name in CPUID_PROGRAMS and cpuid.unsupported():
        pytest.skip(f'natively cpuid is the host CPU\'s here: {cpuid.unsupported()}')
    prepared = prepared_for(name)
    made: list[Kept] = []

    def kept(**kw) -> Kept:
        made.append(Kept(engine, prepared, **kw))
        return made[-1]
    try:
        fresh_runs, reused, keeping = kept(kept=False), kept(), kept(snapshots=True)
        other = ([name, 'other', 'arguments'], TEXT[::-1])
        reused.run(*other)          # a reused template's first run was another request
        for args, stdin in CASES[name]:
            argv = [name, *args]
            fresh = fresh_runs.run(argv, stdin)
            assert fresh['status'] in ('ok', 'fault', 'fuel', 'quota', 'memory'), fresh
            assert fresh['accounting']['fuel'] < LIMITS.fuel or fresh['status'] == 'fuel'
            for i in range(2):
                assert reused.run(argv, stdin) == fresh, ('reused', i)
            starts = []
            for i in range(3):
                assert keeping.run(argv, stdin) == fresh, ('snapshot', i, keeping.start)
                starts.append(keeping.start)
            assert starts[1:] in (['resumed'] * 2, ['entry'] * 2), starts
            if name in RESUMED:
                assert starts == ['recorded', 'resumed', 'resumed'], starts
    finally:
        for m in made:
            m.close()


def test_freed_memory_reads_as_zeros_when_handed_out_again(engine, prepared_for):
    """Whatever the guest wrote into memory before or after it unmapped it, a later mmap,
    break or MAP_FIXED gets zeros: fresh, and resumed from a prefix that freed it."""
    prepared = prepared_for('freed')
    runs = [Kept(engine, prepared, kept=False), Kept(engine, prepared, snapshots=True)]
    try:
        for how in ('map', 'brk', 'fixed', 'file'):
            for kept in (runs[0], *[runs[1]] * 3):
                lines = kept.run(['freed', how], b'')['outputs']['/dev/stdout'].splitlines()
                assert lines[0].endswith(b'3 unmapped') and len(lines) > 1, lines
                for line in lines[1:]:
                    assert b'same address, 0 non-zero bytes' in line, (how, kept.start, line)
        assert runs[1].start == 'resumed'
    finally:
        for kept in runs:
            kept.close()


# freedmix's lines for memory that was once handed out still holding what the guest wrote
# (its own data, never another run's; not zeros as from Linux), fixed in Arena.take/set_brk
FREEDMIX_ONCE_WRONG = {
    # MAP_FIXED over a freed range left it in the free list: a later mmap handed out
    # the live fixed mapping again
    ('fixed', b'2 more pages'),
    # bytes written past a lowered break came back when it was raised again
    ('floor', b'break down and up'),
}


@pytest.mark.parametrize('how', ['partial', 'odd', 'floor', 'dontneed', 'fixed'])
def test_freed_memory_in_odd_shapes_reads_as_zeros(how, engine, prepared_for):
    """Holes cut inside mappings, odd sizes, a break raised into pages the lowest
    mapping gave back (odd breaks, lowered and raised), madvise over freed and mapped
    pages, MAP_FIXED over part of a freed range: what is handed out reads as zeros,
    fresh and resumed from a prefix that freed it and wrote over what it freed."""
    prepared = prepared_for('freedmix')
    runs = [Kept(engine, prepared, kept=False), Kept(engine, prepared, snapshots=True)]
    try:
        for kept in (runs[0], *[runs[1]] * 3):
            out = kept.run(['freedmix', how], b'')['outputs']['/dev/stdout']
            lines = out.splitlines()
            assert lines[0].endswith(b'unmapped 0, order down') and len(lines) > 2, lines
            handed = [line for line in lines[1:] if b': at ' in line or line.endswith(b'failed')]
            assert handed and not any(line.endswith(b'failed') for line in handed), lines
            for line in handed:
                assert b', 0 non-zero of ' in line, (how, kept.start, line)
        assert runs[1].start == 'resumed'
    finally:
        for kept in runs:
            kept.close()


@pytest.mark.parametrize('how', sorted({how for how, _ in FREEDMIX_ONCE_WRONG}))
def test_memory_handed_out_never_holds_what_the_guest_wrote(how, engine, prepared_for):
    """An mmap never returns pages of a live MAP_FIXED mapping, and a break lowered
    and raised again gives zeros, whatever the guest wrote past it meanwhile."""
    kept = Kept(engine, prepared_for('freedmix'), kept=False)
    try:
        lines = kept.run(['freedmix', how], b'')['outputs']['/dev/stdout'].splitlines()
    finally:
        kept.close()
    for line in lines:
        if any(line.startswith(label) for _, label in FREEDMIX_ONCE_WRONG):
            assert b'not over fixed' in line or b'(' not in line, line
            assert b', 0 non-zero of ' in line, line


# What differs between the engines by design (doc/sandbox.md, "Engines"): a program, or
# (program, argv[1]) for one of its requests, -> why
ENGINES_DIFFER = {
    'loop': 'it ends by fuel, which only the emulated engine has',
    'rdtsc': 'the virtual counter advances with fuel emulated, with mediated calls natively',
    'startup': 'it prints the virtual clock (fuel emulated, mediated calls natively)',
    'timeprint': 'it prints the virtual clock (fuel emulated, mediated calls natively)',
    'hidden_ret': "hidden code: the emulator's guard stops it, natively it runs",
    'rdtsc_hidden': "hidden code: the emulator's guard stops it, natively the CPU faults",
    'rodata_code': "code in read-only data: the emulator's guard stops it, natively it runs",
    'zvm_jail': "ZeroVM's Jail is refused natively",
    ('protsnap', 'store'): "mmap's own protection is the personality's table only natively",
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_both_engines_give_the_same_report(name, guest, zvm_guest):
    """Every byte and the whole report but the engine's name, fuel and the memory
    digest (the emulated engine's alone) are the same under both engines."""
    if native_unavailable():
        pytest.skip(f'native engine: {native_unavailable()}')
    if name in ENGINES_DIFFER or name in CPUID_PROGRAMS and cpuid.unsupported():
        pytest.skip(ENGINES_DIFFER.get(name) or cpuid.unsupported())
    path = _build(name, guest, zvm_guest)
    runs = {engine: Kept(engine, prepare(path, engine=engine), kept=False)
            for engine in ('native', 'emulated')}
    for args, stdin in CASES[name]:
        if (name, *args[:1]) in ENGINES_DIFFER:
            continue
        got = {}
        for engine, fresh in runs.items():
            got[engine] = result = fresh.run([name, *args], stdin)
            assert result.pop('engine') == engine
            result['etags'].pop(MEMORY_ETAG, None)
            del result['accounting']['fuel']
        assert got['native'] == got['emulated'], args


def test_snapshots_are_exercised(guest):
    """The comparison above covers resumed runs, not only recorded ones."""
    keeping = Kept('emulated', prepare(guest('floats'), engine='emulated'), snapshots=True)
    try:
        for _ in range(2):
            keeping.run(['floats'], DECIMALS)
        assert keeping.start == 'resumed'
        assert MEMORY_ETAG in keeping.run(['floats'], DECIMALS)['etags']
    finally:
        keeping.close()

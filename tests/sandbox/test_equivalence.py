"""A fresh machine, a reused template and a start-up snapshot are indistinguishable.

Every program in tests/programs that the validator accepts is run with the
same request three ways: on a new machine each time, on one machine again and
again (each run after a reset, the first after a run with another request),
and on a machine that keeps snapshots (the first run records its prefix, the
later ones resume from it).  Every byte of every output channel, the memory
digest at the end and the whole report (timing aside) must be the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from zvm_core.channels import READ, WRITE, Channel, MemoryBacking, Quota
from zvm_core.elf import ElfError, load_program
from zvm_core.engines.emulated.machine import Machine
from zvm_core.executor import MEMORY_ETAG, Limits
from zvm_core.validator import validate

PROGRAMS = Path(__file__).resolve().parents[1] / 'programs'
TEXT = b''.join(b'line %d: alpha beta %d gamma\n' % (i, i * 7 % 13) for i in range(400))
DECIMALS = b'0.1\n62357.97\n3242514504.25\n2.2250738585072011e-308\n1e23\n-7.038531e-26\n'
LIMITS = Limits(memory=64 << 20, fuel=300_000_000, timeout=120)
OUT_QUOTA = Quota(put_size=1 << 20)
FUEL = {'loop': 20_000_000}     # it ends by fuel: a short budget is as good a test

# name -> the requests it is run with: (argv after the name, stdin)
CASES: dict[str, list[tuple[tuple[str, ...], bytes]]] = {
    'addrs': [((), b'')], 'bigio': [(('edge', '9'), TEXT), (('readv', '9'), TEXT)],
    'args_env': [(('a', 'b c', ''), b'')], 'badptr': [((), b'')],
    'cat': [((), TEXT)], 'chanperm': [((), b'')], 'cpuid': [((), b'')],
    'crash': [((what,), b'') for what in ('div0', 'int3', 'ud2', 'hlt', 'abort', 'null',
                                          'stack')],
    'exitcode': [(('3',), b''), (('4', 'raw'), b'')], 'fileio': [((), b'')],
    'floats': [((), DECIMALS)], 'flood': [((), b'')], 'forbidden': [(('all',), b'')],
    'getpid': [(('500',), b'')], 'hello': [((), b'')], 'initstate': [((), b''), (('x',), b'')],
    'interp_sys': [((), b'')], 'jit': [((), b'')], 'jump_data': [((), b'')],
    'leftover': [(('q',), b'')], 'loop': [((), b'')], 'malloc': [((), b'')],
    'membomb': [((), b'')], 'miniscript': [(('/script',), b'')], 'passwd': [((), b'')],
    'native_hostile': [(('calls',), b''), (('fds',), b'')],
    'rdtsc': [((), b'')], 'readsizes': [(('5',), TEXT[:100])], 'readtext': [((), b'')],
    'remap': [((), b'')], 'reopen': [((), b'')], 'scribble': [(('4', 'w'), b'')],
    'sigstate': [((), b'hi\n'), (('manifest',), b'hi\n')], 'sleep': [((), b'')],
    'sort': [((), b'')], 'spin': [(('100000',), b'')], 'src_interp': [(('/script',), b'')],
    'startup': [((), TEXT)],
    'timeprint': [((), b'')], 'timewarp': [((), b'')], 'unknown_syscalls': [(('300',), b'')],
    'wc': [((), TEXT)], 'write_text': [((), b'')],
    'zvm_copy': [((), TEXT)], 'zvm_exit': [((), b'5')], 'zvm_jail': [((), b'v'), ((), b'x')],
    'zvm_sort': [((), TEXT)], 'zvm_trapper': [(('read', '0', '10'), TEXT)],
    'hidden_ret': [((), b'')], 'rdtsc_hidden': [((), b'')], 'rodata_code': [((), b'')],
    'emit': [(('200000', 'e'), b'')], 'fastcall': [(('edges',), TEXT)],
    'sparse': [(('1099511627776:0', '10:5'), b'')], 'iovbomb': [(('1', '4'), b'abc')],
    'vsyscall': [((), b'')], 'mprotbits': [((), b'ABCDEF')],
    'reprotect': [((how,), b'') for how in ('fixed', 'reuse', 'read', 'reserve')],
}
REFUSED = {   # programs the validator or the ELF check refuses: nothing to run
    'rdrand', 'wrmsr', 'int80', 'sysenter', 'segment', 'entry_hidden', 'xop_rdrand',
}
NOT_HERE = {  # need links between nodes: tests/functional runs them in jobs
    'graph_pipe', 'graph_stream',
}
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


def _run(machine: Machine, argv: list[str], stdin: bytes) -> dict:
    channels, backings = _channels(stdin)
    limits = Limits(LIMITS.memory, FUEL.get(argv[0], LIMITS.fuel), LIMITS.timeout)
    report = machine.run(channels, argv, {'HOME': '/', 'LANG': 'C'}, seed=5, epoch=10**9,
                         limits=limits, memory_etag=True)
    result = report.to_dict()
    del result['accounting']['wall_time'], result['accounting']['start']
    result['outputs'] = {alias: bytes(b.data) for alias, b in backings.items()}
    return result


@pytest.mark.parametrize('name', sorted(CASES))
def test_fresh_reused_and_resumed_runs_are_identical(name, guest, zvm_guest):
    program = load_program(_build(name, guest, zvm_guest))
    verdict = validate(program)
    assert verdict.ok, verdict.violations[:3]
    made: list[Machine] = []

    def machine(snapshots: bool = False) -> Machine:
        made.append(Machine(program, verdict, Limits(memory=LIMITS.memory),
                            snapshots=snapshots))
        return made[-1]
    try:
        reused, keeping = machine(), machine(snapshots=True)
        other = ([name, 'other', 'arguments'], TEXT[::-1])
        _run(reused, *other)        # a reused template's first run was another request
        for args, stdin in CASES[name]:
            argv = [name, *args]
            fresh = _run(machine(), argv, stdin)
            assert fresh['status'] in ('ok', 'fault', 'fuel', 'quota', 'memory'), fresh
            assert fresh['accounting']['fuel'] < LIMITS.fuel or fresh['status'] == 'fuel'
            for i in range(2):
                assert _run(reused, argv, stdin) == fresh, ('reused', i)
            starts = []
            for i in range(3):
                assert _run(keeping, argv, stdin) == fresh, ('snapshot', i, keeping.start)
                starts.append(keeping.start)
            assert starts[1:] in (['resumed'] * 2, ['entry'] * 2), starts
    finally:
        for m in made:
            m.close()


def test_snapshots_are_exercised(guest):
    """The comparison above covers resumed runs, not only recorded ones."""
    program = load_program(guest('floats'))
    keeping = Machine(program, validate(program), Limits(memory=LIMITS.memory),
                      snapshots=True)
    try:
        for _ in range(2):
            _run(keeping, ['floats'], DECIMALS)
        assert keeping.start == 'resumed'
        assert MEMORY_ETAG in _run(keeping, ['floats'], DECIMALS)['etags']
    finally:
        keeping.close()

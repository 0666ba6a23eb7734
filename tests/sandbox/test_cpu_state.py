"""The guest starts in the CPU state Linux gives a new process, and computes
floating point as the same binary does natively.

``initstate`` prints every register, the flags, the x87/SSE state and the
segment selectors and bases as they are at the ELF entry point; ``floats``
prints decimal conversions, long double arithmetic and libm results exactly;
``sysflags`` prints rflags after popf (IF and IOPL stay) and fcomi (OF, SF, AF
cleared), and RCX and R11 after syscall, which unicorn left otherwise (the
guard's ``zg_flags`` and ``zg_syscall``).
Both are run natively on this host as the oracle, then fresh, on a reused
machine after a run that left the FPU changed, and from a start-up snapshot.
"""

from __future__ import annotations

import math
import random

from zvm_core.channels import READ, WRITE, Channel, MemoryBacking
from zvm_core.engines.emulated import snapshot
from zvm_core.engines.emulated.machine import Machine

PROBE_FLAGS = ('-O2', '-Wl,-eprobe_entry')


def decimal_lines(n: int = 300, seed: int = 7) -> bytes:
    """Decimal strings of every shape strtod meets: long, short, exponents, subnormal."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        digits = ''.join(rng.choice('0123456789') for _ in range(rng.randrange(1, 25)))
        point = rng.randrange(len(digits) + 1)
        text = digits[:point] + '.' + digits[point:]
        if rng.random() < 0.4:
            text += f'e{rng.randrange(-330, 310)}'
        lines.append(('-' if rng.random() < 0.2 else '') + text)
    return ('\n'.join(lines) + '\n').encode()


def machine_run(machine: Machine, argv: list[str], stdin: bytes = b'') -> bytes:
    out = MemoryBacking()
    channels = [Channel('/dev/stdin', MemoryBacking(stdin), READ),
                Channel('/dev/stdout', out, WRITE), Channel('/dev/stderr', MemoryBacking(), WRITE)]
    report = machine.run(channels, argv, {})
    assert (report.status, report.retcode) == ('ok', 0), report.message
    return bytes(out.data)


def test_initial_state_is_linux_s(guest, zvm, native, engine):
    prog = guest('initstate', flags=PROBE_FLAGS)
    nat = native(prog)
    assert nat.returncode == 0
    fields = dict(line.split(' ', 1) for line in nat.stdout.decode().splitlines())
    assert (fields['fcw'], fields['mxcsr'], fields['ftw']) == ('0x37f', '0x1f80', '0')
    run = zvm.run(prog)
    assert run.status == 'ok', run
    assert run.stdout.decode().splitlines() == nat.stdout.decode().splitlines()


def test_initial_state_after_a_run_that_changed_it(guest, native, machine_for):
    """Rounding modes, precision, x87 stack, XMM, DF, callee-saved registers: a
    run that leaves them changed does not hand them to the next run."""
    prog = guest('initstate', flags=PROBE_FLAGS)
    expected = native(prog).stdout
    for snapshots in (False, True):
        machine = machine_for(prog, snapshots=snapshots)
        for _ in range(3):
            machine_run(machine, ['initstate', 'leave-it-changed'])
            assert machine_run(machine, ['initstate']) == expected


def test_floats_are_native_s(guest, zvm, native, engine):
    prog = guest('floats')
    stdin = decimal_lines()
    nat = native(prog, stdin=stdin)
    assert nat.returncode == 0
    out = nat.stdout.decode()
    assert out.startswith('0.30000000000000004\n1000000000.5\n2.3333333333333335\n')
    assert '62357.97: 62357.970000000001 ' in out
    assert '2.2250738585072011e-308: 2.2250738585072009e-308 ' in out
    run = zvm.run(prog, stdin=stdin)
    assert run.status == 'ok', run
    assert run.stdout == nat.stdout


def test_flags_after_popf_fcomi_and_syscall_are_the_cpu_s(guest, zvm, native, engine):
    prog = guest('sysflags')
    nat = native(prog)
    assert nat.returncode == 0
    lines = nat.stdout.decode().splitlines()
    assert 'popfq 0: 0x202 popfw: 0x202' in lines             # IF stays set
    assert 'popfq 0x3202: 0x202 popfw: 0x202' in lines        # IOPL stays 0
    assert '0 1 0x8d7: fcomi 0x203 fucomi 0x203 fcomip 0x203 fucomip 0x203 lahf 0x3' in lines
    assert 'syscall_prefixed 0x8000000000000000: rcx is the next instruction: 1 r11 0x286' \
        in lines                                                        # 1 << 63 | 1, minus 1
    run = zvm.run(prog)
    assert run.status == 'ok', run
    assert run.stdout.decode().splitlines() == lines


def test_a_snapshot_in_a_prefixed_syscall_resumes_after_it(guest, native, machine_for,
                                                          monkeypatch):
    """The resumed run carries on at the instruction after the whole ``66 0f 05``."""
    monkeypatch.setattr(snapshot, 'MIN_PREFIX', 0)
    prog = guest('sysflags')
    machine = machine_for(prog, snapshots=True)
    starts = []
    for stdin in (b'one', b'two', b'three'):
        expected = native(prog, 'read', stdin=stdin).stdout
        assert expected.startswith(b'read %d: %s\n' % (len(stdin), stdin))
        assert machine_run(machine, ['sysflags', 'read'], stdin) == expected
        starts.append(machine.start)
    assert starts == ['recorded', 'resumed', 'resumed']


def test_floats_from_reused_machine_and_snapshot(guest, native, machine_for):
    """The start-up prefix does all the fixed computation; resumed runs carry on
    from its state, reused machines start over from the reset one."""
    prog = guest('floats')
    for snapshots in (False, True):
        machine = machine_for(prog, snapshots=snapshots)
        starts = []
        for seed in (1, 2, 1):
            stdin = decimal_lines(60, seed)
            assert machine_run(machine, ['floats'], stdin) == native(prog, stdin=stdin).stdout
            starts.append(machine.start)
        assert starts == (['recorded', 'resumed', 'resumed'] if snapshots else ['entry'] * 3)


LUA_NUMBERS = b'''print(tonumber("3242514504.25"), 7/3, 2^0.5, 1e15/7, math.pi, -0.1)
print(string.format("%.17g %.17g %a", 0.1 + 0.2, tonumber("62357.97"), 1/3))
print(math.sqrt(2), math.exp(1), math.log(10), math.fmod(1e10, 0.7), 10 // 3.0, 2^53 + 1.0)
'''


def _lua_g(x: float) -> str:
    """Lua 5.4's tostring of a float: %.14g, with '.0' when that looks like an integer."""
    text = f'{x:.14g}'
    return text if any(c in text for c in '.eninf') else text + '.0'


def test_lua_numbers_are_the_host_s(sysimages, zvm):
    expected = '\t'.join(_lua_g(x) for x in (3242514504.25, 7 / 3, 2 ** 0.5, 1e15 / 7,
                                                math.pi, -0.1)) + '\n'
    expected += f'{0.1 + 0.2:.17g} {62357.97:.17g} {"0x1.5555555555555p-2"}\n'
    expected += '\t'.join(_lua_g(x) for x in (math.sqrt(2), math.exp(1), math.log(10),
                                              math.fmod(1e10, 0.7), 10 // 3.0,
                                              2.0 ** 53 + 1.0)) + '\n'
    run = zvm.run(sysimages.program('lua'), '-', stdin=LUA_NUMBERS)
    assert run.status == 'ok', run
    assert run.stdout.decode() == expected
    assert '3242514504.25\t2.3333333333333\t' in expected

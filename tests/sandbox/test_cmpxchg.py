"""``cmpxchg`` leaves RAX, its destination and the flags as the CPU does under both
engines (``tests/programs/cmpxchg.c``: every operand size, to memory, locked or not,
and to a register, each succeeding and failing, with upper halves set).

The 32-bit forms are where unicorn differed: it zero-extended RAX when the
comparison succeeded (the CPU does not write the accumulator then) and a
register destination when it failed (the CPU does not write it then).  The
guard's ``zg_cmpxchg`` puts back what the CPU left, also when a branch enters
the instruction past its lock prefix.
"""

from __future__ import annotations


def test_cmpxchg_leaves_what_the_cpu_leaves(guest, zvm, native, engine):
    prog = guest('cmpxchg')
    nat = native(prog)
    assert nat.returncode == 0
    lines = nat.stdout.decode().splitlines()
    assert len(lines) == 18 * 6 + 8
    # the CPU's answers that unicorn gave otherwise: RAX kept when equal ...
    assert 'mem32 equal: rax 0xa1a1a1a112345678 dst 0xd2d2d2d2e2c4a688 flags 0x44' in lines
    assert 'lock32 equal: rax 0xa1a1a1a180000001 dst 0xd2d2d2d270f0f0f1 flags 0x44' in lines
    assert 'skip_lock after equal: rax 0xa1a1a1a10000600d dst 0xd2d2d2d200000007 ' \
        'flags 0x44' in lines
    assert 'skip_lock locked equal: rax 0xa1a1a1a10000600d dst 0xd2d2d2d200000007 ' \
        'flags 0x44' in lines
    assert 'global32 equal: rax 0xa1a1a1a100000000 dst 0xd2d2d2d2f0f0f0f0 flags 0x44' in lines
    assert 'reg32_rex equal: rax 0xa1a1a1a112345678 dst 0xe2c4a688 flags 0x44' in lines
    # ... the register destination kept when not, EAX written (RAX zero-extended)
    assert 'reg32 differ: rax 0x12355779 dst 0xd2d2d2d212355779 flags 0x95' in lines
    assert 'reg32_self differ: rax 0x10101 dst 0xd2d2d2d200010101 flags 0x95' in lines
    run = zvm.run(prog)
    assert run.status == 'ok', run
    assert run.stdout == nat.stdout

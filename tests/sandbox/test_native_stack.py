"""The native supervisor's initial stacks (``supervisor._stack``): kept parts give
the bytes the emulator's ``initial_stack`` makes, for every argv, env and seed; a
template's child is given its stack and stack pointer in one write and starts with
the emulator's stack top."""

from __future__ import annotations

import pytest

from zvm_core import engines
from zvm_core.elf import load_program
from zvm_core.engines.native import supervisor
from zvm_core.executor import initial_stack
from zvm_core.syscalls.random import SeededStream, at_random


def test_stacks_of_a_batch_s_nodes_are_the_emulator_s(guest):
    """A batch's nodes differ in argv and env, not in their seed: the AT_RANDOM bytes
    are kept by seed, the stack is made again, byte for byte as the emulator's."""
    program = load_program(str(guest('args_env')))
    for seed in (0, 7, 0, 7):
        for i in range(3):
            argv, envp = [f'wc-{i}'.encode()], [f'LOCAL_OBJECT=/a/c/o{i}'.encode()]
            expected = initial_stack(program, argv, envp,
                                     SeededStream(seed, b'AT_RANDOM').take(16))
            assert supervisor._stack(program, argv, envp, seed) == expected
    assert supervisor._stack(program, [b'x'], [], 0) != supervisor._stack(program, [b'x'], [], 7)
    for seed in range(200):         # the seeds kept stay bounded (syscalls.random.at_random)
        supervisor._stack(program, [b'x'], [], seed)
    assert at_random.cache_info().currsize <= at_random.cache_info().maxsize


@pytest.mark.skipif(engines.native_unavailable() is not None,
                    reason='this host cannot run the native engine')
def test_a_template_child_s_stack_top_is_the_emulator_s(guest, tmp_path):
    """A template's child reads its stack pointer from the stack's last 8 bytes,
    written with the initial stack in one write (``supervisor._writes``), and zeroes
    them before the guest's first instruction: the guest sees zeros there, as under
    the emulator, whatever the length of its arguments, run after run."""
    from zvm_core.channels import WRITE
    from zvm_core.pool import ChannelSpec, Pool

    prog = str(guest('stacktop'))

    def run(pool: Pool, engine: str, args: list[str]) -> bytes:
        with open(tmp_path / 'out', 'wb') as out:
            report = pool.run(prog, [ChannelSpec('/dev/stdout', out.fileno(), WRITE)],
                              argv=['stacktop', *args], engine=engine)
        assert report.status == 'ok' and report.engine == engine, report
        return (tmp_path / 'out').read_bytes()

    with Pool(size=1) as pool:
        for args in ([], ['a'], ['x' * 15], ['y' * 16, 'z' * 17], ['a']):
            expected = b' '.join([b'0' * 32, b'stacktop', *(a.encode() for a in args)]) + b'\n'
            assert run(pool, 'native', args) == expected
            assert run(pool, 'emulated', args) == expected


def test_writes_give_the_stack_and_its_pointer_in_one_write():
    """The stack's copy ends at most SP_GAP bytes below SP_SLOT: one write with the
    pointer; a copy that would reach the slot is refused, never overwritten."""
    from zvm_core.engines.native.loader import Spec
    from zvm_core.memory import STACK_TOP

    manifest = (0x1000, b'm')
    stack = (STACK_TOP - 64, b's' * 40)          # ends 24 bytes below the top
    spec = Spec(entry=0, sp=STACK_TOP - 64)
    spec.copies = [manifest, stack]
    writes = supervisor._writes(spec, supervisor.SP_SLOT)
    assert writes == [manifest, (STACK_TOP - 64, b's' * 40 + bytes(16)
                                 + (STACK_TOP - 64).to_bytes(8, 'little'))]
    elsewhere = 0x7E0000001000                   # a resumed child's slot: its own write
    assert supervisor._writes(spec, elsewhere)[-1] == (elsewhere, stack[0].to_bytes(8, 'little'))
    spec.copies = [manifest, (STACK_TOP - 64, b's' * 60)]    # reaches the slot
    with pytest.raises(OSError, match='reaches the slot'):
        supervisor._writes(spec, supervisor.SP_SLOT)

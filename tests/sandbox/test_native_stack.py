"""The native supervisor's initial stacks (``supervisor._stack``): kept parts give
the bytes the emulator's ``initial_stack`` makes, for every argv, env and seed."""

from __future__ import annotations

from zvm_core.elf import load_program
from zvm_core.engines.native import supervisor
from zvm_core.executor import initial_stack
from zvm_core.syscalls.random import SeededStream


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
    for seed in range(3 * supervisor.STACKS):       # the seeds kept stay bounded
        supervisor._stack(program, [b'x'], [], seed)
    assert len(supervisor._AT_RANDOM) <= supervisor.STACKS

"""A template's runs keep their initial stacks (``supervisor._stack``) for the runs
with the same arguments that follow; a batch's node (a run not probed) makes its
own and keeps none: its object's variables are its alone, and a chunk of nodes
evicted every stack kept for the runs that repeat."""

from __future__ import annotations

import pytest

from zvm_core import engines
from zvm_core.channels import WRITE, Channel, MemoryBacking
from zvm_core.elf import load_program
from zvm_core.engines.native import supervisor

pytestmark = pytest.mark.skipif(engines.native_unavailable() is not None,
                                reason=f'native engine: {engines.native_unavailable()}')


def test_a_batch_node_makes_the_same_stack_and_keeps_none(guest, monkeypatch):
    monkeypatch.setattr(supervisor, '_STACKS', type(supervisor._STACKS)())
    program = load_program(str(guest('args_env')))
    template = supervisor.Template(program, 64 << 20)
    outputs = []
    try:
        for probe in (False, True, False):
            out = MemoryBacking()
            report = supervisor.run(program, [Channel('/dev/stdout', out, WRITE)],
                                    ['node-1', 'x'], {'LOCAL_PATH_INFO': '/a/c/o1'},
                                    64 << 20, 10.0, seed=3, template=template, probe=probe)
            assert report.status == 'ok' and report.retcode == 0, report
            outputs.append(bytes(out.data))
            assert len(supervisor._STACKS) == (0 if len(outputs) == 1 else 1)
    finally:
        template.close()
    assert outputs[0] == outputs[1] == outputs[2] == (
        b'argc=2\nargv[0]=node-1\nargv[1]=x\nenvp[0]=LOCAL_PATH_INFO=/a/c/o1\n')

"""Hostile guests of review17: what a native guest can read that depends on how it
was started.

The native loader's pages stay mapped and readable (``doc/sandbox.md``): what a
guest finds there must be the same whether its loader was spawned for the run
(``zvm run``, a snapshot's probe), forked by a program's template (the pool) or by
a start-up snapshot's template (a resumed run).  They held the set-up's stack
frames, the spec's tables (a spawned loader's copies of the initial stack, a
snapshot's pages and protections), the run's stack pointer and the resume block
(the guest's registers at its first channel access): a program that printed them
gave other bytes on the cluster than under ``zvm run``, and other bytes resumed
than in a batch (whose nodes are never probed).
"""

from __future__ import annotations

import pytest

from sandbox.test_snapshot import _run, machines  # noqa: F401  (a fixture)
from tests.sandbox.test_native import _loader_span
from zvm_core import engines

pytestmark = pytest.mark.skipif(engines.native_unavailable() is not None,
                                reason=f'native engine: {engines.native_unavailable()}')


@pytest.mark.parametrize('engine', ['native'], indirect=True)
def test_the_loaders_pages_are_the_same_resumed_forked_or_spawned(machines, zvm,  # noqa: F811
                                                                   guest):
    span = _loader_span()
    stdin = f'loader {span}\n'.encode()
    keeping, plain = machines(), machines(snapshots=False)
    resumed = [_run(keeping, stdin) for _ in range(2)]
    assert keeping.start == 'resumed', resumed[1]['message']
    forked = _run(plain, stdin)
    assert plain.start == 'entry'
    spawned = zvm.run(guest('startup'), '/etc/conf', stdin=stdin,
                      opts=['--engine', 'native'])
    assert spawned.status == 'ok', spawned
    assert len(forked['output']) > int(span, 16)
    assert forked['output'] == spawned.stdout
    assert resumed[0]['output'] == resumed[1]['output'] == forked['output']

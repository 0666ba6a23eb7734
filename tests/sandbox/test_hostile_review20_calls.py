"""review20's hostile guest (``tests/programs/hostile20.c``) under both engines: newer
siblings of the calls the earlier lists refuse (execveat, openat2, pkey_mprotect to
executable or over code, pidfd_getfd), calls that reach another process's memory or
descriptors, change the guest's process or host, or move bytes between descriptors in
the kernel.  Every one fails (``test_equivalence``: both engines print the same), and
the guest's code stays read-only: a store into it still faults afterwards."""

from __future__ import annotations


def _results(run) -> dict[str, int]:
    return {name: int(value) for name, value in
            (line.rsplit(' ', 1) for line in run.stdout.decode().splitlines()[:-1])}


def test_every_call_fails(guest, zvm, engine):
    run = zvm.run(guest('hostile20'))
    assert run.status == 'ok', run
    assert run.stdout.endswith(b'\ncode intact\n'), run
    got = _results(run)
    assert len(got) == 52, got
    # the personality's own answers, no kernel call: nothing to fork, no robust list used
    assert {name: value for name, value in got.items() if value >= 0} == {
        'madvise_dontfork': 0, 'set_robust_list_bad': 0}


def test_the_code_stays_read_only_after_them(guest, zvm, engine):
    run = zvm.run(guest('hostile20'), 'selfwrite')
    assert run.status == 'fault', run
    assert b'code intact' not in run.stdout

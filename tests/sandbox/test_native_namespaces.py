"""A cold native run joins its process's namespaces instead of making its own.

Making a user, mount, network, IPC and UTS namespace per loader cost ~1 ms of a
cold run's ~2 ms (the network namespace mostly).  The process now makes one empty
set (``zvm_core/engines/native/namespaces.py``), which every loader joins: each
guest is still outside the host's network, mount and user namespaces, with an
empty root, holding neither the set's descriptors nor any capability in it; no
process is left holding the set; a host without user namespaces still runs.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import RUN_TIMEOUT
from zvm_core import engines
from zvm_core.channels import WRITE, Channel, FdBacking, MemoryBacking
from zvm_core.elf import load_program
from zvm_core.engines.native import namespaces
from zvm_core.engines.native.loader import loader_path

pytestmark = pytest.mark.skipif(engines.native_unavailable() is not None,
                                reason=f'native engine: {engines.native_unavailable()}')
ROOT = Path(__file__).resolve().parents[2]


def _userns() -> bool:
    return shutil.which('unshare') is not None and subprocess.run(
        ['unshare', '-U', '-n', '-m', 'true'], capture_output=True, check=False).returncode == 0


def _children() -> set[int]:
    me, found = str(os.getpid()), set()
    for p in filter(str.isdigit, os.listdir('/proc')):
        try:
            if Path(f'/proc/{p}/stat').read_text().rsplit(')', 1)[1].split()[1] == me:
                found.add(int(p))
        except OSError:
            pass
    return found


def _running_guest(program, look):
    """Run ``native_hostile spinning`` cold (``supervisor.run``, no template); once it
    said it runs, ``look(pid)`` at it, then kill it: what ``look`` returned."""
    from zvm_core.engines.native.supervisor import run
    r, w = os.pipe()
    before = _children()
    chans = [Channel('/dev/stdout', FdBacking(w, False), WRITE),
             Channel('/dev/stderr', MemoryBacking(), WRITE)]
    reports = []
    runner = threading.Thread(target=lambda: reports.append(run(
        program, chans, ['native_hostile', 'spinning'], {}, 64 << 20, RUN_TIMEOUT)))
    runner.start()
    try:
        assert select.select([r], [], [], RUN_TIMEOUT)[0], 'the guest never ran'
        assert os.read(r, 9) == b'spinning\n'
        [pid] = [p for p in _children() - before
                 if os.readlink(f'/proc/{p}/exe') == str(loader_path())]
        return look(pid)
    finally:
        for p in _children() - before:
            os.kill(p, 9)
        runner.join(RUN_TIMEOUT)
        os.close(r)
        os.close(w)
        assert reports and reports[0].status == 'killed', reports


def test_cold_guests_join_one_set_of_namespaces_made_once(guest):
    """Two cold runs: both guests in the process's one set (not the host's), which
    no process holds but this one, through close-on-exec descriptors the guests
    do not get; the guests hold no capability in it (before: each guest made its
    own, and kept every capability of its user namespace)."""
    if not _userns():
        pytest.skip('no unprivileged user namespaces here: the loaders make none')
    program = load_program(str(guest('native_hostile')))
    kinds = ('net', 'mnt', 'user', 'ipc', 'uts')

    def look(pid):
        status = Path(f'/proc/{pid}/status').read_text()
        return ({k: os.readlink(f'/proc/{pid}/ns/{k}') for k in kinds},
                os.listdir(f'/proc/{pid}/fd'), os.listdir(f'/proc/{pid}/root'),
                [line for line in status.splitlines() if line.startswith(('CapEff', 'CapPrm'))])

    first, second = (_running_guest(program, look) for _ in range(2))
    held = namespaces.shared()
    assert held is not None and all(fd >= namespaces.NS_FD + 5 for fd in held)
    mine = {kind: os.readlink(f'/proc/self/fd/{fd}')
            for kind, fd in zip(namespaces.KINDS, held, strict=True)}
    for ns, fds, root, caps in (first, second):
        assert ns == mine, (ns, mine)
        for kind in kinds:
            assert ns[kind] != os.readlink(f'/proc/self/ns/{kind}')
        assert fds == [] and root == []
        assert caps == ['CapPrm:\t0000000000000000', 'CapEff:\t0000000000000000'], caps
    for fd in held:
        assert os.get_inheritable(fd) is False
    assert not [p for p in _children() if os.readlink(f'/proc/{p}/exe') == str(loader_path())]


def test_a_forked_child_drops_its_copies_of_the_set(guest):
    """A fork (an embedding server's worker) closes the parent's descriptors in the
    child: it makes its own set if it needs one, and never holds the parent's."""
    if not _userns():
        pytest.skip('no unprivileged user namespaces here: the loaders make none')
    held = namespaces.shared()
    assert held is not None
    pid = os.fork()
    if pid == 0:        # the test's verdict is the child's exit status
        closed = []
        for fd in held:
            try:
                os.fstat(fd)
                closed.append(False)
            except OSError:
                closed.append(True)
        os._exit(0 if all(closed) and namespaces._held is None else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert namespaces.shared() == held      # the parent's stay


def test_a_host_without_user_namespaces_runs_as_before(guest, tmp_path):
    """Where user namespaces cannot be made (simulated: a user namespace whose
    ``max_user_namespaces`` is 0), the holder says so, no set is held, and every
    cold run goes on without namespaces (its loader tries, as before), the holder
    not tried again for each run."""
    if shutil.which('unshare') is None:
        pytest.skip('needs unshare (util-linux)')
    script = tmp_path / 'nouserns.py'
    script.write_text(
        'import os, sys\n'
        'from pathlib import Path\n'
        'Path("/proc/sys/user/max_user_namespaces").write_text("0")\n'
        'from zvm_core.channels import WRITE, Channel, MemoryBacking\n'
        'from zvm_core.elf import load_program\n'
        'from zvm_core.engines.native import namespaces\n'
        'from zvm_core.engines.native.supervisor import run\n'
        'tries = []\n'
        'make = namespaces._make\n'
        'namespaces._make = lambda: tries.append(1) or make()\n'
        'program = load_program(sys.argv[1])\n'
        'for _ in range(3):\n'
        '    out = MemoryBacking()\n'
        '    r = run(program, [Channel("/dev/stdout", out, WRITE)], ["hello"], {}, 64 << 20, 30)\n'
        '    print(r.status, r.retcode, bytes(out.data).strip().decode())\n'
        'print(namespaces.shared(), len(tries))\n')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    got = subprocess.run(['unshare', '-U', '-r', sys.executable, str(script),
                          str(guest('hello'))], env=env, capture_output=True, text=True,
                         timeout=RUN_TIMEOUT, check=False)
    if got.returncode != 0 and 'Traceback' not in got.stderr:
        pytest.skip(f'no user namespace to simulate it in: {got.stderr.strip()}')
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == ['ok 0 Hello, world!'] * 3 + ['None 1'], got.stdout

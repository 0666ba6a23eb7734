"""A pool's workers end with the process that started them, even in the middle of a
run: a server killed by a signal leaves no guest spinning to its deadline."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

from zerocloud.devcluster import proc_state


def test_a_worker_whose_parent_was_killed_ends_its_run(guest) -> None:
    script = textwrap.dedent(f'''
        import sys, tempfile, threading
        from zvm_core.channels import WRITE
        from zvm_core.executor import Limits
        from zvm_core.pool import ChannelSpec, Pool
        pool = Pool(size=1, queue=0)
        print(*pool.pids, flush=True)
        out = tempfile.TemporaryFile()
        pool.run({str(guest('loop'))!r}, [ChannelSpec('/dev/stdout', out.fileno(), WRITE)],
                 argv=['loop'], limits=Limits(fuel=10**15, timeout=600),
                 started=lambda: print('started', flush=True))
    ''')
    parent = subprocess.Popen([sys.executable, '-W', 'ignore', '-c', script],
                              stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert parent.stdout.readline() == 'started\n'
        time.sleep(0.5)                 # the worker starts up or spins: either way
        assert proc_state(worker) is not None
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30                # its run would last 600 s
        while proc_state(worker) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc_state(worker) is None
    finally:
        parent.kill()
        parent.wait()

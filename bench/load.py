"""Load from two accounts at full pools (issue 15): what each got, how the hub
answered meanwhile, and what the servers held before and after.

A local cluster of its own (3 object servers, 2 replicas) whose object
servers run 2 nodes and queue 4 (``zerovm_maxpool``, ``zerovm_maxqueue``),
one account at most 1 running and 2 waiting (``zerovm_account_*``).
test:tester and test2:tester2 each send ``--jobs`` one-node jobs
(tests/programs/spin.c reading an object in place, a short or a long count),
``--concurrency`` at a time in all.  Printed:

- per account: answers by status (only 200 and 503 are expected) and
  requests that failed without an answer (dropped connections);
- ``/healthcheck`` of the proxy and of each object server, polled every
  50 ms during the load: answers, failures, p50 / p99 / max latency;
- per server process, before the load (after a warm-up) and after it (once
  every worker is idle): open descriptors, RSS, child processes (sandbox
  workers), and files in the object servers' disk ``tmp`` directories.

Usage: ``python bench/load.py [--jobs 200] [--concurrency 32] [--quick]``.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import mib, ms, p50, p99, table  # noqa: E402

from zerocloud.devcluster import USERS, DevCluster  # noqa: E402

OBJECT = ('[filter:zerocloud]\nzerovm_maxpool = 2\nzerovm_maxqueue = 4\n'
          'zerovm_account_maxpool = 1\nzerovm_account_maxqueue = 2\n')
ACCOUNTS = ('test:tester', 'test2:tester2')
SHORT, LONG = 1000, 30_000_000          # spin counts: at once, and some 50-100 ms


def job(count: int) -> str:
    return json.dumps([{'name': 'spin',
                        'exec': {'path': 'swift://~/bin/spin', 'args': [str(count)]},
                        'devices': [{'name': 'stdin', 'path': 'swift://~/data/obj'},
                                    {'name': 'stdout'}]}])


def login(cluster: DevCluster, user: str) -> tuple[str, str]:
    from swiftclient import Connection
    conn = Connection(authurl=cluster.auth_url, user=user, key=USERS[user][0], retries=0)
    conn.put_container('bin')
    conn.put_object('bin', 'spin', common.build('spin').read_bytes())
    conn.put_container('data')
    conn.put_object('data', 'obj', b'data\n')
    return conn.get_auth()


def snapshot(cluster: DevCluster) -> dict[str, tuple[int, int, int, int]]:
    """Server -> (open descriptors, RSS, child processes, their RSS); 'tmp' -> (files
    and directories in the object servers' disk tmp, 0, 0, 0)."""
    shot = {}
    for name in cluster.running_servers():
        if name == 'proxy' or name.startswith('object'):
            usage = cluster.usage(name)
            shot[name] = (usage.fds, usage.rss, len(usage.children), usage.children_rss)
    shot['tmp'] = (len(list(cluster.dir.glob('srv/*/*/tmp/*'))), 0, 0, 0)
    return shot


def idle(cluster: DevCluster, timeout: float = 60) -> None:
    """Wait until no sandbox worker uses CPU (the load has drained)."""
    deadline = time.monotonic() + timeout
    names = [n for n in cluster.running_servers() if n.startswith('object')]
    while time.monotonic() < deadline:
        before = {n: cluster.usage(n).children for n in names}
        time.sleep(0.5)
        if all(cluster.usage(n).children == before[n] for n in names):
            return


class Health(threading.Thread):
    """Polls ``/healthcheck`` of the given ports until stopped."""

    def __init__(self, ports: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.ports, self.stop = ports, threading.Event()
        self.times: dict[str, list[float]] = collections.defaultdict(list)
        self.failed: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.wait(0.05):
            for name, port in self.ports.items():
                started = time.perf_counter()
                try:
                    ok = session.get(f'http://127.0.0.1:{port}/healthcheck', timeout=10).ok
                except requests.RequestException:
                    ok = False
                if ok:
                    self.times[name].append(time.perf_counter() - started)
                else:
                    self.failed[name] += 1


def load(cluster: DevCluster, auths: dict[str, tuple[str, str]], jobs: int,
         concurrency: int) -> dict[str, collections.Counter]:
    """Send ``jobs`` jobs per account, ``concurrency`` at once; statuses by account."""
    results: dict[str, collections.Counter] = {user: collections.Counter() for user in auths}

    def send(item: tuple[str, int]) -> None:
        user, i = item
        url, token = auths[user]
        try:
            resp = requests.post(url, data=job(LONG if i % 3 else SHORT), timeout=120,
                                 headers={'X-Auth-Token': token, 'X-Zerovm-Execute': '1.0'})
            results[user][resp.status_code] += 1
        except requests.RequestException as e:
            results[user][f'dropped ({type(e).__name__})'] += 1
    work = [(user, i) for i in range(jobs) for user in auths]
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(send, work))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--jobs', type=int, default=200, help='jobs per account')
    parser.add_argument('--concurrency', type=int, default=32)
    parser.add_argument('--quick', action='store_true', help='50 jobs per account')
    opts = parser.parse_args()
    jobs = 50 if opts.quick else opts.jobs
    print(common.environment())
    with tempfile.TemporaryDirectory(prefix='zc-bench-') as tmp, \
            DevCluster(tmp, extra_conf={'object': OBJECT}, sysimages={}) as cluster:
        auths = {user: login(cluster, user) for user in ACCOUNTS}
        load(cluster, auths, 4, 4)                       # warm: pools, caches, connections
        idle(cluster)
        before = snapshot(cluster)
        ports = {s.name: s.port for s in cluster.servers
                 if s.name == 'proxy' or s.name.startswith('object')}
        health = Health(ports)
        health.start()
        started = time.perf_counter()
        results = load(cluster, auths, jobs, opts.concurrency)
        took = time.perf_counter() - started
        health.stop.set()
        health.join()
        idle(cluster)
        after = snapshot(cluster)
    print(f'{jobs} jobs per account, {opts.concurrency} at once: {took:.1f} s')
    table('answers by account', ['account', 'answers'],
          [(user, ', '.join(f'{k}: {v}' for k, v in sorted(c.items(), key=str)))
           for user, c in results.items()])
    table('/healthcheck during the load', ['server', 'answers', 'failed', 'p50', 'p99', 'max'],
          [(name, len(t), health.failed[name], ms(p50(t)), ms(p99(t)), ms(max(t, default=0)))
           for name, t in sorted(health.times.items())])
    table('before / after', ['server', 'descriptors', 'RSS', 'children', 'their RSS'],
          [(name, f'{before[name][0]} / {after[name][0]}',
            *(('', '', '') if name == 'tmp' else (
                f'{mib(before[name][1])} / {mib(after[name][1])}',
                f'{before[name][2]} / {after[name][2]}',
                f'{mib(before[name][3])} / {mib(after[name][3])}')))
           for name in sorted(before)], note='tmp: entries in the object disks\' tmp')


if __name__ == '__main__':
    main()

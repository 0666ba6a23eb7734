"""Jobs over whole containers (issue 17): a wildcard job over N objects vs downloading them.

For each N (1,000 and 10,000 objects of 1 KiB; ``--full`` adds 100,000;
``--quick``: 200 and 1,000), on a fresh local cluster
(``zerocloud.devcluster.DevCluster`` in a temporary directory, 3 object
servers, 2 replicas, no system images: the program is C):

- populate: the objects go up as tars through Swift's bulk middleware
  (``PUT /v1/<account>/<container>?extract-archive=tar``, 8 tars at a time),
  then the cluster is restarted, so the proxy's peak RSS below is the job's
  and not the upload's (storage survives a restart), and the job starts once
  the servers and their pool workers are idle (``settle``: a worker still
  starting would charge its start to the job);
- job: one wildcard job (``swift://~/bench/data/*.txt``, the word-count
  program ``tests/programs/wc.c``): wall time, amortised ms per node, the
  proxy's peak RSS (``VmHWM`` of ``/proc/<pid>/status`` after the job, and
  its growth over the idle proxy), and the CPU time (user + system, from
  ``/proc``) it took per node in the proxy, the object servers' main
  processes (and of it their system time) and their workers (with the
  sandboxes, and of it the sandboxes': the workers' children, native templates
  and the guests they fork): these change less than wall times with the load
  of other processes (a third more at a load of 10 on 2 CPUs), whose load
  average as the job started is printed beside. A job the proxy refuses (``400 Job too
  large`` beyond ``zerovm_maxnodes``, 100,000 by default) is reported as
  such, with the reason, and the run goes on;
- the same job again with ``X-Zerovm-Report: json``: bytes between proxy
  and object servers per node (request bodies sent, outputs returned), the
  node time the proxy saw, and from the object servers' logs (``execute``
  lines) the time they spent per node and how they answered (503: queue
  full, and the proxy tried another replica);
- download: every object with 16 concurrent GETs (one connection per
  thread), counted locally in Python exactly as wc.c counts; the totals
  must equal the job's.

Each job runs once per engine (``--engines``, default ``auto,native,emulated``:
the object servers restarted with that ``zerovm_engine``), a row each, side by
side; ``auto``'s row says on which engine its nodes ended (a node runs emulated
for ``zvm_core.engines.TRIAL_FUEL`` first, natively from the start if it has not
ended by then).

Usage: ``python bench/scale.py [--quick | --full] [--sizes N,N,...] [--no-download]
[--keep DIR] [--engines auto,native,emulated]``.
``bench/proxy_scale.py`` measures the proxy alone (object servers faked), which
takes minutes for 100,000 nodes instead of the hour their bulk upload takes.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import re
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import mib, proc_kib, table  # noqa: E402

common.private_verdict_cache()   # inherited by the cluster's servers and their workers

from swiftclient import ClientException, Connection  # noqa: E402

from zerocloud.devcluster import DevCluster  # noqa: E402

CONTAINER = 'bench'
SIZE = 1024
PER_TAR = 2000           # objects per bulk upload
UPLOADS = 8              # bulk uploads at a time
GETTERS = 16             # concurrent GETs of the download path
EXECUTE_LOG = re.compile(rb'execute \S+ (\d+) (\S+) ([0-9.]+)s (\S+)')
BATCH_OK = re.compile(rb'ok\*(\d+)')   # a batch's line: its nodes that ran ok, their seconds
LOG_WAIT = 10.0          # seconds to wait for the object servers' last log lines
SETTLE_STEP, SETTLE_CPU, SETTLE_MOST = 0.5, 0.02, 60.0   # idle: < 20 ms of CPU in 0.5 s


def name(i: int) -> str:
    return f'data/obj-{i:06d}.txt'


def tar_of(first: int, count: int) -> bytes:
    """A tar of objects ``first .. first+count-1`` (1 KiB of text each)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as tar:
        for i in range(first, first + count):
            data = common.text(SIZE, seed=i)
            info = tarfile.TarInfo(name(i))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def populate(cluster: DevCluster, n: int) -> float:
    """Upload N objects by bulk extraction; seconds taken. Exits if an object failed."""
    url, token = common.connect(cluster).get_auth()
    per_tar = min(PER_TAR, -(-n // UPLOADS))

    def upload(first: int) -> None:
        request = urllib.request.Request(
            f'{url}/{CONTAINER}?extract-archive=tar', method='PUT',
            data=tar_of(first, min(per_tar, n - first)),
            headers={'X-Auth-Token': token, 'Accept': 'application/json'})
        with urllib.request.urlopen(request, timeout=600) as resp:
            report = json.loads(resp.read())
        if report['Response Status'] != '201 Created' or report['Errors']:
            sys.exit(f'bulk upload failed: {report}')

    start = time.perf_counter()
    with ThreadPoolExecutor(UPLOADS) as ex:
        list(ex.map(upload, range(0, n, per_tar)))
    return time.perf_counter() - start


def object_side(cluster: DevCluster, trans_id: str, nodes: int) -> list[tuple[int, float]]:
    """(status, seconds) of every node request of the job ``trans_id`` that the object
    servers logged (``execute`` lines: a batch's nodes that ended ok are one line, each
    taken at their mean); waits a little for lines still on their way."""
    deadline = time.monotonic() + LOG_WAIT
    while True:
        found = []
        for server in cluster.servers:
            if server.app == 'object-server':
                for m in EXECUTE_LOG.finditer(cluster.log_file(server).read_bytes()):
                    if m.group(4).decode() != trans_id:
                        continue
                    ok = BATCH_OK.fullmatch(m.group(2))
                    if ok is None:
                        found.append((int(m.group(1)), float(m.group(3))))
                    elif int(ok.group(1)):      # each counted at the batch's mean
                        count = int(ok.group(1))
                        found += [(200, float(m.group(3)) / count)] * count
        if sum(status == 200 for status, _ in found) >= nodes or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def wc(data: bytes) -> tuple[int, int, int]:
    """(lines, words, bytes) as tests/programs/wc.c counts (C-locale whitespace)."""
    return data.count(b'\n'), len(data.split()), len(data)


def totals(wc_output: bytes) -> tuple[int, int, int]:
    """Sums of the ``lines words bytes`` lines of wc outputs."""
    sums = [0, 0, 0]
    for line in wc_output.splitlines():
        for k, x in enumerate(line.split()):
            sums[k] += int(x)
    return sums[0], sums[1], sums[2]


def post_job(conn: Connection, report: bool = False) -> tuple[float, int, str, dict, bytes]:
    """(wall s, status, reason, headers, body) of the wildcard job; a refusal is a
    result too."""
    job = [{'name': 'wc', 'exec': {'path': f'swift://~/{CONTAINER}/wc'},
            'devices': [{'name': 'stdin', 'path': f'swift://~/{CONTAINER}/data/*.txt'},
                        {'name': 'stdout'}]}]
    headers = {'X-Zerovm-Execute': '1.0', 'Content-Type': 'application/json'}
    if report:
        headers['X-Zerovm-Report'] = 'json'
    start = time.perf_counter()
    try:
        resp: dict = {}
        _, body = conn.post_account(headers=headers, data=json.dumps(job).encode(),
                                    response_dict=resp)
        status, reason, headers = resp['status'], resp['reason'], resp['headers']
    except ClientException as e:
        status, reason, body = e.http_status, e.http_reason, e.http_response_content or b''
        headers = e.http_response_headers or {}
    return time.perf_counter() - start, status, reason, headers, body


def cpu_seconds(pid: int) -> tuple[float, float, float, float]:
    """(own, descendants', own system, of the descendants' their children's) CPU
    seconds (user + system but the third) of a process: its live descendants' and
    those it reaped (the pool's workers of an object server), and of those what the
    workers' own children took, live or reaped (the native templates and guests:
    the sandboxes)."""
    ticks = os.sysconf('SC_CLK_TCK')
    stats, children = {}, collections.defaultdict(list)
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / 'stat').read_text().rsplit(')', 1)[1].split()
            except OSError:
                continue                 # gone meanwhile
            stats[int(entry.name)] = fields
            children[int(fields[1])].append(int(entry.name))
    own = stats[pid]
    reaped = (int(own[13]) + int(own[14])) / ticks
    below, sandboxes, todo = 0.0, 0.0, [(child, 1) for child in children[pid]]
    while todo:
        child, depth = todo.pop()
        fields = stats[child]
        spent = int(fields[11]) + int(fields[12])
        gone = int(fields[13]) + int(fields[14])
        below += (spent + gone) / ticks
        sandboxes += (gone + (spent if depth > 1 else 0)) / ticks
        todo += [(c, depth + 1) for c in children[child]]
    return (int(own[11]) + int(own[12])) / ticks, reaped + below, int(own[12]) / ticks, sandboxes


def cpu_of(cluster: DevCluster) -> dict[str, float]:
    """CPU seconds so far of the proxy, the object servers (and of it their system time)
    and their workers (and of it the sandboxes': native templates and guests)."""
    proxy = cpu_seconds(cluster.server('proxy').pid)[0]
    objects = [cpu_seconds(s.pid) for s in cluster.servers if s.app == 'object-server']
    return {'proxy': proxy, 'object': sum(o[0] for o in objects),
            'workers': sum(o[1] for o in objects), 'object_sys': sum(o[2] for o in objects),
            'sandboxes': sum(o[3] for o in objects)}


def settle(cluster: DevCluster, most: float = SETTLE_MOST) -> None:
    """Wait (at most ``most`` seconds) until the servers and their pool workers are
    idle: a worker that is still starting (its imports, its engine probe: ~0.4 s
    of CPU each, six of them) when the job begins would charge its start to the
    job's CPU per node."""
    deadline = time.monotonic() + most
    before = cpu_of(cluster)
    while time.monotonic() < deadline:
        time.sleep(SETTLE_STEP)
        now = cpu_of(cluster)
        if sum(now.values()) - sum(before.values()) < SETTLE_CPU:
            return
        before = now


def run_job(cluster: DevCluster, conn: Connection) -> dict:
    """The wildcard job, timed, and its costs (see the module docstring)."""
    settle(cluster)
    pid = cluster.server('proxy').pid
    idle_hwm = proc_kib(pid, 'VmHWM')
    cpu = cpu_of(cluster)
    load = os.getloadavg()[0]
    wall, status, reason, _, body = post_job(conn)
    after = cpu_of(cluster)
    out = {'status': status, 'reason': reason, 'body': body, 'wall': wall,
           'hwm': proc_kib(pid, 'VmHWM'), 'idle_hwm': idle_hwm,
           'cpu': {k: after[k] - cpu[k] for k in cpu}, 'load': load}
    if status == 200:       # again, for the per-node report (bytes, times)
        _, _, _, headers, body = post_job(conn, report=True)
        nodes = json.loads(body)['nodes']
        out['sent'] = sum(n['request_bytes'] for n in nodes)
        out['returned'] = sum(o['bytes'] for n in nodes for o in n['outputs'])
        out['proxy_node_s'] = [n['seconds'] for n in nodes]
        out['engines'] = collections.Counter(n['engine'] for n in nodes)
        out['object_side'] = object_side(cluster, headers['x-trans-id'], len(nodes))
    return out


def download_and_count(cluster: DevCluster, n: int) -> tuple[float, tuple[int, int, int]]:
    """(wall s, summed counts) of GETting every object with GETTERS threads and counting."""
    local = threading.local()

    def one(i: int) -> tuple[int, int, int]:
        if not hasattr(local, 'conn'):
            local.conn = common.connect(cluster)
        return wc(local.conn.get_object(CONTAINER, name(i))[1])

    start = time.perf_counter()
    with ThreadPoolExecutor(GETTERS) as ex:
        counts = list(ex.map(one, range(n)))
    wall = time.perf_counter() - start
    sums = tuple(sum(c[k] for c in counts) for k in range(3))
    return wall, (sums[0], sums[1], sums[2])


def measure(n: int, program: bytes, engines: list[str], download_too: bool = True,
            keep: Path | None = None) -> list[list[str]]:
    """Table rows for N objects, one per engine, on a fresh cluster (without the
    download path: the expected counts come from the objects as they were made), or
    on the cluster kept in ``keep`` by an earlier run (not populated again)."""
    jobs = {}
    with tempfile.TemporaryDirectory(prefix='zvm-bench-scale-') as d:
        where = (keep or Path(d)) / f'cluster-{n}'
        populated = where / 'populated'
        cluster = DevCluster(where, detach=False, sysimages={})   # C only
        cluster.start()
        try:
            conn = common.connect(cluster)
            conn.put_container(CONTAINER)
            conn.put_object(CONTAINER, 'wc', program, content_type='application/x-executable')
            conn.close()
            upload = None
            if not populated.exists():
                upload = populate(cluster, n)
                populated.touch()
            for engine in engines:
                cluster.stop()
                cluster.start()     # a fresh proxy: its VmHWM is the job's, not the upload's
                cluster.restart([f'object:zerovm_engine={engine}'])    # object servers only
                conn = common.connect(cluster)
                jobs[engine] = run_job(cluster, conn)
                conn.close()
            if download_too:
                download, expect = download_and_count(cluster, n)
            else:
                counts = [wc(common.text(SIZE, seed=i)) for i in range(n)]
                download, expect = None, tuple(sum(c[k] for c in counts) for k in range(3))
        finally:
            cluster.stop()
    uploaded = ('kept from an earlier run' if upload is None else
                f'bulk upload {upload:.1f} s ({n / upload:,.0f} objects/s)')
    print(f'{n:,} objects: {uploaded}; ' + '; '.join(
        f'{engine}: job {job["status"]} {job["reason"]} in {job["wall"]:.2f} s'
        for engine, job in jobs.items()), flush=True)
    return [row(n, engine, job, expect, download) for engine, job in jobs.items()]


def row(n: int, engine: str, job: dict, expect: tuple[int, int, int],
        download: float | None) -> list[str]:
    """One engine's row: the job's measures (exits if its counts are wrong, or if a
    node ran on another engine than asked)."""
    download_col = '-' if download is None else f'{download:.2f} s'
    if job['status'] != 200:
        reason = job['body'].decode(errors='replace').strip()[:60]
        return [f'{n:,}', engine, f'refused: {job["status"]} {reason}', *['-'] * 9,
                download_col, '-', f'{job["load"]:.1f}']
    got = totals(job['body'])
    if got != expect:
        sys.exit(f'{n} objects, {engine}: the job counted {got}, the download path {expect}')
    if engine != 'auto' and set(job['engines']) != {engine}:
        sys.exit(f'{n} objects: asked for the {engine} engine, nodes ran on {job["engines"]}')
    if engine == 'auto':
        engine = f'auto ({", ".join(f"{k} {v:,}" for k, v in sorted(job["engines"].items()))})'
    ok = [s for status, s in job['object_side'] if status == 200]
    statuses = collections.Counter(status for status, _ in job['object_side'])
    return [f'{n:,}', engine, f'{job["wall"]:.2f} s', f'{job["wall"] / n * 1e3:.2f}',
            f'{mib(job["hwm"] << 10)} (+{mib((job["hwm"] - job["idle_hwm"]) << 10)})',
            f'{job["sent"] / n:,.0f} / {job["returned"] / n:,.0f}',
            f'{common.p50(job["proxy_node_s"]) * 1e3:.1f}',
            ' / '.join(f'{job["cpu"][k] / n * 1e3:.2f}' for k in ('proxy', 'object', 'workers')),
            f'{job["cpu"]["object_sys"] / n * 1e3:.2f}',
            f'{job["cpu"]["sandboxes"] / n * 1e3:.2f}',
            f'{common.p50(ok) * 1e3:.1f}' if ok else '-',
            ' '.join(f'{k}:{v}' for k, v in sorted(statuses.items())),
            download_col, '-' if download is None else common.ratio(download, job['wall']),
            f'{job["load"]:.1f}']


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--quick', action='store_true', help='200 and 1,000 objects')
    size.add_argument('--full', action='store_true', help='also 100,000 objects')
    size.add_argument('--sizes', help='comma-separated object counts')
    parser.add_argument('--no-download', action='store_true',
                        help='skip the download path (16 GETs per object set: ~an hour '
                             'for 100,000 objects on a loaded 2-vCPU host)')
    parser.add_argument('--keep', type=Path, metavar='DIR',
                        help='keep each populated cluster in DIR/cluster-N and reuse it in '
                             'later runs (a 100,000-object upload takes ~20 minutes)')
    parser.add_argument('--engines', default='auto,native,emulated',
                        help='comma-separated engines the object servers run the job on, '
                             'each a row (zerovm_engine; default: auto,native,emulated)')
    opts = parser.parse_args(argv)
    engines = opts.engines.split(',')
    if not engines or set(engines) - {'auto', 'native', 'emulated'}:
        parser.error(f'--engines {opts.engines}: choose from auto, native, emulated')
    sizes = ([int(s) for s in opts.sizes.split(',')] if opts.sizes else
             [200, 1000] if opts.quick else
             [1000, 10_000, 100_000] if opts.full else [1000, 10_000])
    print(common.environment())
    program = common.build('wc').read_bytes()
    rows = [r for n in sizes for r in measure(n, program, engines, not opts.no_download,
                                              opts.keep)]
    table(f'Wildcard word-count job over N objects of {SIZE} B vs download + count '
          f'({GETTERS} GETs at a time)',
          ['objects', 'engine', 'job wall', 'ms/node', 'proxy peak RSS (+ over idle)',
           'B/node to/from obj', 'node p50 ms', 'CPU ms/node proxy / obj / workers',
           'of obj: system', 'of workers: sandboxes',
           'obj-server p50 ms', 'obj-server answers',
           'download + count', 'download / job', 'load'], rows,
          note='B/node: request body bytes the proxy sent per node (request_bytes of '
               'X-Zerovm-Report: json) / output bytes it got back (HTTP heads not counted);\n'
               'CPU ms/node: CPU time (user + system) the job took in the proxy, the object '
               'servers and their workers (the sandboxes), per node: the load of other '
               'processes changes it less than wall times (a third more at a load of 10 on '
               '2 CPUs); of obj: system: the object servers\' time in the kernel (their '
               'system calls: object files, sockets); of workers: sandboxes: the CPU of '
               'the workers\' children (native templates and the guests they forked: fork, '
               'set-up, run, exit), the rest is the workers\' own (supervising, channels, '
               'reports);\n'
               'node p50: one node as the proxy timed it (sending it until its answer); '
               'obj-server p50: the "execute" time the object servers logged for the nodes '
               'they ran (a batch logs its nodes that ended ok as one line: each counts at '
               'their mean, which the nodes waiting for a worker raise); answers: '
               'status:count of every node request they got (503: queue '
               'full, the proxy tries another replica; 404: a handoff without the object);\n'
               'engine: the object servers\' zerovm_engine (a node over a tiny object costs '
               'less emulated: a native run is processes and kernel round trips; auto: on '
               'which engine its nodes ended, emulated those that end within their trial);\n'
               'load: the host\'s load average (1 min) as the job started')
    return 0


if __name__ == '__main__':
    sys.exit(main())

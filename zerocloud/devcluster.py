"""A real local Swift cluster with ZeroCloud installed, for the demo and tests.

``zerocloud-devcluster start`` runs, on 127.0.0.1, a proxy server (tempauth
with fernet tokens, so no memcached: the proxy's ``cache`` filter is a cache
that keeps nothing, :class:`NullCache`), an account server, a container server
and three object servers, each a separate process with its own port, and
waits until every one answers ``/healthcheck``. The proxy and the object
servers have the ZeroCloud filters in their pipelines; the proxy also has
Swift's ``bulk`` (``PUT ...?extract-archive=tar``) and, after zerocloud so
that they limit what jobs write, ``container_quotas`` and ``account_quotas``
(``X-Container-Meta-Quota-Bytes`` ...). Nothing needs root
devices, ``/etc/swift`` or anything beyond loopback.

Commands (all take ``--dir``)::

    zerocloud-devcluster start [--replicas N] [--object-servers N] [--port-base P]
    zerocloud-devcluster status    # each server: port, pid, state, /healthcheck
    zerocloud-devcluster env       # eval "$(zerocloud-devcluster env)" sets ST_AUTH/USER/KEY
    zerocloud-devcluster restart [--conf SERVER:[SECTION:]KEY=VALUE ...]
                                   # those servers (else all) again, on their ports
    zerocloud-devcluster stop      # ends exactly the processes start started

Users (tempauth): ``test:tester`` / ``testing`` and ``test2:tester2`` /
``testing2`` (account admins), ``admin:admin`` / ``admin`` (reseller admin,
may create accounts).

Ports are free ones picked at start unless ``--port-base P`` is given: then
the proxy is P, the account server P+1, the container server P+2 and object
server i is P+3+i. The object ring has 2 replicas by default (``--replicas``);
each object server has one device in its own zone.

All state lives in one directory (``--dir``, default
``$XDG_CACHE_HOME/zerocloud/devcluster``, i.e. ``~/.cache/zerocloud/devcluster``)::

    etc/swift.conf, etc/*.builder, etc/*.ring.gz
    etc/<server>.conf.d/     the server's configuration, read in name order:
        00-<app>.conf          etc/proxy-server.conf-sample or
                               etc/object-server.conf-sample as shipped
                               (account and container: a minimal conf)
        10-zerocloud.conf      etc/zerocloud.conf-sample as shipped
        50-devcluster.conf     this cluster's ports, paths and users
        60-restart.conf        the options of ``restart --conf``, if given
        90-extra.conf          DevCluster(extra_conf=...), if given
    srv/<server>/<device>/   the servers' data (kept across stop and start)
    log/<server>.log         each server's log, new at every start
    run/<server>.pid         the pid of each server process
    state.json               ports, pids and auth URL, for status/env/stop

``etc/`` and ``log/`` are rewritten at every start; delete the directory to
start with empty storage.

Each server runs as ``python -m zerocloud.devcluster serve <app> <conf.d>``,
which points Swift at this cluster's ``swift.conf`` before it loads storage
policies and constraints (Swift reads them from ``/etc/swift`` at import
time), then runs the server in the foreground (``workers = 0``), logging to
the console that ``start`` redirects into the log file.

Tests and the demo use the Python API: ``DevCluster(dir)`` with ``start()``,
``stop()``, ``status()`` and helpers to kill, pause and resume object servers.
"""

from __future__ import annotations

from zvm_core.interrupt import quiet_imports

with quiet_imports('zerocloud-devcluster'):   # Ctrl-C as the command is starting: exit 130
    import argparse
    import base64
    import contextlib
    import ctypes
    import http.client
    import json
    import os
    import pwd
    import re
    import shlex
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import time
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from dataclasses import dataclass
    from importlib import resources
    from pathlib import Path

    from zvm_core import stdout
    from zvm_core.version import add_version

HOST = '127.0.0.1'
PROXY_SAMPLE = 'proxy-server.conf-sample'
OBJECT_SAMPLE = 'object-server.conf-sample'
ZEROCLOUD_SAMPLE = 'zerocloud.conf-sample'
SAMPLES = (PROXY_SAMPLE, OBJECT_SAMPLE, ZEROCLOUD_SAMPLE)

# tempauth users: user -> (key, groups).
USERS = {
    'test:tester': ('testing', '.admin'),
    'test2:tester2': ('testing2', '.admin'),
    'admin:admin': ('admin', '.admin .reseller_admin'),
}
DEFAULT_USER = 'test:tester'

PART_POWER = 6
RING_SEED = 1            # same devices -> same placement, so data survives restarts
HEALTH_POLL = 0.05       # seconds between /healthcheck polls during start
START_TIMEOUT = 30.0     # seconds a starting server may neither run nor wait to run
START_CAP = 600.0        # cap on waiting for a server to answer /healthcheck
STOP_GRACE = 10.0        # SIGTERM -> SIGKILL
LOG_TAIL_LINES = 20

SWIFT_CONF = """\
[swift-hash]
swift_hash_path_prefix = zerocloud-devcluster
swift_hash_path_suffix = zerocloud-devcluster

[storage-policy:0]
name = Policy-0
default = yes
"""

# Account and container servers have no ZeroCloud filter and no sample.
BACKEND_CONF = """\
[pipeline:main]
pipeline = healthcheck {app}

[app:{app}]
use = egg:swift#{kind}

[filter:healthcheck]
use = egg:swift#healthcheck
"""

SITE_CONF = """\
# Written by zerocloud-devcluster at every start: this cluster's site values.
[DEFAULT]
bind_ip = {host}
bind_port = {port}
workers = 0
user = {user}
swift_dir = {swift_dir}
log_name = {name}
"""

STORAGE_SITE_CONF = """\
devices = {devices}
mount_check = false
disable_fallocate = true
"""

PROXY_SITE_CONF = """\

[pipeline:main]
pipeline = {pipeline}

[filter:cache]
paste.filter_factory = zerocloud.devcluster:null_cache

[app:proxy-server]
allow_account_management = true

[filter:tempauth]
{users}
fernet_key_devcluster = {fernet_key}
active_fernet_key_id = devcluster
"""


class ClusterError(Exception):
    """The cluster could not be started, stopped or reached."""


class ClusterRunning(ClusterError):
    """A cluster is already running in this directory."""


class ServerStartError(ClusterError):
    """One server did not come up; the message names it and ends with its log."""

    def __init__(self, server: str, reason: str, log: Path, since: int = 0) -> None:
        self.server = server
        self.log_tail = tail(log, since=since)
        super().__init__(f'{server} failed to start: {reason}\n'
                         f'--- last lines of {log} ---\n{self.log_tail}')


@dataclass
class Server:
    """One server process of the cluster and where its files are."""

    name: str           # proxy, account, container, object0, object1, ...
    app: str            # the paste app section: proxy-server, object-server, ...
    port: int
    pid: int | None = None

    @property
    def device(self) -> str | None:
        """The ring device this server stores data on (None for the proxy)."""
        if self.app in ('account-server', 'container-server'):
            return 'ac'
        if self.app == 'object-server':
            return 'obj' + self.name[len('object'):]
        return None

    @property
    def srv_name(self) -> str:
        """Account and container servers share one devices directory."""
        return 'ac' if self.device == 'ac' else self.name


@dataclass
class ServerStatus:
    """What ``status`` reports for one server."""

    name: str
    port: int
    pid: int | None
    state: str          # running, paused (SIGSTOP), dead
    healthy: bool       # answered /healthcheck


RESTART_CONF = '60-restart.conf'         # in a server's conf.d: ``restart --conf`` options
RESTART_HEADER = '# zerocloud-devcluster restart --conf (a full start writes etc/ anew)\n'


def parse_option(text: str) -> tuple[str, str | None, str, str]:
    """``SERVER:[SECTION:]KEY=VALUE`` as (server, section or None, key, value): SERVER
    a server's name or ``object`` (every object server); no SECTION is ZeroCloud's
    ``filter:zerocloud``.  ValueError saying what to write."""
    name, sep, value = text.partition('=')
    server, colon, rest = name.partition(':')
    section, _, key = rest.rpartition(':')
    if not sep or not colon or not server or not key.strip() or '\n' in text:
        raise ValueError(f'--conf {text!r}: expected SERVER:[SECTION:]KEY=VALUE, e.g. '
                         'object:zerovm_engine=emulated or proxy:app:proxy-server:'
                         'node_timeout=5')
    return server, section or None, key.strip(), value.strip()


def default_dir() -> Path:
    """The per-user cluster directory (XDG cache)."""
    cache = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
    return Path(cache) / 'zerocloud' / 'devcluster'


def sample_text(name: str) -> str:
    """A shipped conf sample (package data; etc/ in the source tree links to it)."""
    return (resources.files('zerocloud') / 'etc' / name).read_text()


def free_ports(count: int) -> list[int]:
    """Distinct ports that nothing listens on right now (bind port 0, close)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def port_free(port: int) -> bool:
    """True if a listener could bind the port.

    Swift listens with SO_REUSEPORT, so a second server on a taken port would
    not fail: it would silently share the port. Hence this check before start.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def healthy(port: int, timeout: float = 1.0) -> bool:
    """True if the server on this port answers GET /healthcheck with 200."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request('GET', '/healthcheck')
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def tail(path: Path, lines: int = LOG_TAIL_LINES, since: int = 0) -> str:
    """The last lines of a log file (empty if there is none), of those after byte
    ``since`` if there are any: what this start wrote, not the requests of the last run
    (a restart's bad option was the 20th of 20 lines, the 19 before it access lines)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ''
    text = (data[since:] if data[since:].strip() else data).decode(errors='replace')
    return '\n'.join(text.splitlines()[-lines:])


def proc_state(pid: int) -> str | None:
    """The kernel's state letter for a live process; None if gone or a zombie."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state = stat.rsplit(')', 1)[1].split()[0]
    return None if state in ('Z', 'X') else state


def proc_cmdline(pid: int) -> list[str]:
    """A process's arguments ([] if it is gone)."""
    try:
        return Path(f'/proc/{pid}/cmdline').read_bytes().decode(errors='replace').split('\0')
    except (FileNotFoundError, ProcessLookupError):
        return []


def send_signal(pid: int, sig: signal.Signals) -> None:
    """Signal a process that may have exited meanwhile."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def build_ring(path: Path, devices: list[dict], replicas: int) -> None:
    """Write <path>.builder and <path>.ring.gz with Swift's RingBuilder API.

    The API takes milliseconds where swift-ring-builder takes 0.7 s a call.
    """
    from swift.common.ring import RingBuilder

    builder = RingBuilder(PART_POWER, replicas, 1)
    for dev in devices:
        builder.add_dev(dev)
    builder.rebalance(seed=RING_SEED)
    builder.save(f'{path}.builder')
    builder.get_ring().save(f'{path}.ring.gz')


def die_with_parent(parent: int) -> None:
    """Get SIGKILL when the process ``parent`` (our parent) dies; exit if it already has."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:
        sys.exit(f'parent process {parent} has gone')


class DevCluster:
    """A local multi-process Swift cluster with ZeroCloud, kept in one directory.

    ``DevCluster(dir)`` only describes the cluster: it reads ``state.json``
    if a cluster runs there, so a new instance can report on, or stop, a
    cluster that another process started. The constructor's layout options
    apply to the next ``start()``.

    With ``detach=False`` (the default) the servers get SIGKILL when the
    process (strictly: the thread) that started them dies, so an interrupted
    test run leaves nothing behind; the CLI uses ``detach=True``.

    ``extra_conf`` maps a server name (``proxy``, ``account``, ``container``,
    ``object0``...) or ``object`` (every object server) to conf text appended
    after the site values, e.g. ``{'object': '[filter:zerocloud]\\nzerovm_timeout = 2\\n'}``;
    ``swift`` to text appended to ``swift.conf`` (``[swift-constraints]``...).

    ``sysimages`` ({name: tar path}) become ``zerovm_sysimage_devices`` of the
    proxy and object servers; by default the system images ``zvm_core.sysimages``
    finds (``$ZVM_SYSIMAGES``, else those ``zvm-interpreters build`` made).
    """

    def __init__(self, dir: str | os.PathLike | None = None, replicas: int = 2,
                 object_servers: int = 3, port_base: int | None = None,
                 extra_conf: Mapping[str, str] | None = None, detach: bool = False,
                 sysimages: Mapping[str, str | os.PathLike] | None = None) -> None:
        if object_servers < 1:
            raise ValueError('object_servers must be at least 1')
        if not 1 <= replicas <= object_servers:
            raise ValueError(f'replicas must be between 1 and object_servers '
                             f'({object_servers}), not {replicas}')
        self.dir = Path(dir or default_dir()).absolute()
        self.replicas = replicas
        self.object_servers = object_servers
        self.port_base = port_base
        self.extra_conf = dict(extra_conf or {})
        self.detach = detach
        if sysimages is None:
            from zvm_core.sysimages import configured
            sysimages = configured()
        self.sysimages = {name: Path(path).absolute() for name, path in sysimages.items()}
        self.servers: list[Server] = []
        self._procs: dict[int, subprocess.Popen] = {}
        self._log_from: dict[str, int] = {}       # server -> its log's size when spawned
        self._load_state()

    def __enter__(self) -> DevCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- layout --------------------------------------------------------------

    @property
    def swift_dir(self) -> Path:
        """Where swift.conf and the rings are (``swift_dir`` of every server)."""
        return self.dir / 'etc'

    @property
    def state_file(self) -> Path:
        return self.dir / 'state.json'

    def conf_dir(self, server: Server) -> Path:
        return self.swift_dir / f'{server.name}.conf.d'

    def log_file(self, server: Server) -> Path:
        return self.dir / 'log' / f'{server.name}.log'

    def pid_file(self, server: Server) -> Path:
        return self.dir / 'run' / f'{server.name}.pid'

    def devices_dir(self, server: Server) -> Path:
        return self.dir / 'srv' / server.srv_name

    def server(self, name: str) -> Server:
        """The server called ``name`` (``proxy``, ``object0``...)."""
        for server in self.servers:
            if server.name == name:
                return server
        names = ', '.join(s.name for s in self.servers)
        raise ClusterError(f'no server {name!r} in the cluster in {self.dir} ({names}; '
                           'object: every object server)')

    @property
    def auth_url(self) -> str:
        return f'http://{HOST}:{self.server("proxy").port}/auth/v1.0'

    @property
    def user(self) -> str:
        return DEFAULT_USER

    @property
    def key(self) -> str:
        return USERS[DEFAULT_USER][0]

    def _objects(self) -> list[Server]:
        return [s for s in self.servers if s.app == 'object-server']

    @property
    def object_ports(self) -> list[int]:
        return [s.port for s in self._objects()]

    @property
    def object_devices(self) -> list[dict]:
        """The object ring's devices, in object server order (id = index)."""
        return [{'id': i, 'ip': HOST, 'port': s.port, 'device': s.device,
                 'path': str(self.devices_dir(s) / s.device)}
                for i, s in enumerate(self._objects())]

    def object_nodes(self, account: str, container: str, obj: str) -> tuple[int, list[dict]]:
        """The object's partition and primary nodes; a node's ``id`` is its object server index.

        This points this process's Swift at the cluster's swift.conf (hash
        prefix and suffix), as Swift's own ring tools need.
        """
        from swift.common.ring import Ring
        from swift.common.utils import set_swift_dir

        set_swift_dir(str(self.swift_dir))
        return Ring(str(self.swift_dir), ring_name='object').get_nodes(account, container, obj)

    def _plan(self) -> list[Server]:
        """Names, apps and ports of the servers the next start runs."""
        names = [('proxy', 'proxy-server'), ('account', 'account-server'),
                 ('container', 'container-server')]
        names += [(f'object{i}', 'object-server') for i in range(self.object_servers)]
        if self.port_base is None:
            ports = free_ports(len(names))
        else:
            ports = list(range(self.port_base, self.port_base + len(names)))
        return [Server(name, app, port) for (name, app), port in zip(names, ports, strict=True)]

    # --- configuration ---------------------------------------------------------

    def configure(self) -> None:
        """Pick the ports and write swift.conf, the rings and every server's conf.d.

        ``start`` does this first; on its own it shows what would run.
        """
        self.servers = self._plan()
        shutil.rmtree(self.swift_dir, ignore_errors=True)
        self.swift_dir.mkdir(parents=True)
        (self.swift_dir / 'swift.conf').write_text(SWIFT_CONF + self.extra_conf.get('swift', ''))
        self._write_rings()
        fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        for server in self.servers:
            conf_dir = self.conf_dir(server)
            conf_dir.mkdir()
            for name, text in self._conf_parts(server, fernet_key):
                (conf_dir / name).write_text(text)
            if server.device:
                (self.devices_dir(server) / server.device).mkdir(parents=True, exist_ok=True)

    def _write_rings(self) -> None:
        def dev(i: int, server: Server) -> dict:
            return {'id': i, 'region': 1, 'zone': i + 1, 'ip': HOST, 'port': server.port,
                    'device': server.device, 'weight': 1.0}

        build_ring(self.swift_dir / 'account', [dev(0, self.server('account'))], 1)
        build_ring(self.swift_dir / 'container', [dev(0, self.server('container'))], 1)
        build_ring(self.swift_dir / 'object',
                   [dev(i, s) for i, s in enumerate(self._objects())], self.replicas)

    def _conf_parts(self, server: Server, fernet_key: str) -> Iterator[tuple[str, str]]:
        """(file name, text) of one server's conf.d, in the order Swift reads them."""
        kind = server.app.split('-')[0]
        if server.app == 'proxy-server':
            yield '00-proxy-server.conf', sample_text(PROXY_SAMPLE)
        elif server.app == 'object-server':
            yield '00-object-server.conf', sample_text(OBJECT_SAMPLE)
        else:
            yield f'00-{server.app}.conf', BACKEND_CONF.format(app=server.app, kind=kind)
        if server.app in ('proxy-server', 'object-server'):
            yield '10-zerocloud.conf', sample_text(ZEROCLOUD_SAMPLE)
        site = SITE_CONF.format(host=HOST, port=server.port,
                                user=pwd.getpwuid(os.geteuid()).pw_name,
                                swift_dir=self.swift_dir, name=server.name)
        if server.device:
            site += STORAGE_SITE_CONF.format(devices=self.devices_dir(server))
        if server.app == 'proxy-server':
            users = '\n'.join(f'user_{user.replace(":", "_")} = {key} {groups}'
                              for user, (key, groups) in USERS.items())
            site += PROXY_SITE_CONF.format(users=users, fernet_key=fernet_key,
                                           pipeline=_with_cache(sample_text(PROXY_SAMPLE)))
        if server.app in ('proxy-server', 'object-server') and self.sysimages:
            pairs = ' '.join(f'{name} {path}' for name, path in self.sysimages.items())
            site += f'\n[filter:zerocloud]\nzerovm_sysimage_devices = {pairs}\n'
            if server.app == 'object-server':
                site += f'zerovm_prewarm = {" ".join(self._interpreters())}\n'
        yield '50-devcluster.conf', site
        extra = ''.join(self.extra_conf.get(key, '') for key in dict.fromkeys((kind, server.name)))
        if extra:
            yield '90-extra.conf', extra

    def _interpreters(self) -> list[str]:
        """``image:member`` of the system images whose program has the image's name
        (python3:python3, lua:lua): the object servers' workers warm them up."""
        from zvm_core.sysimages import SysImageError, SystemImages
        images = SystemImages(self.sysimages)
        found = []
        for name in self.sysimages:
            try:
                images.program(name, name)
            except SysImageError:
                continue
            found.append(f'{name}:{name}')
        return found

    # --- processes ---------------------------------------------------------------

    def _load_state(self) -> None:
        try:
            state = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return
        self.servers = [Server(name, s['app'], s['port'], s['pid'])
                        for name, s in state['servers'].items()]

    def _save_state(self) -> None:
        state = {'dir': str(self.dir), 'swift_dir': str(self.swift_dir),
                 'auth_url': self.auth_url, 'user': self.user, 'key': self.key,
                 'replicas': self.replicas,
                 'servers': {s.name: {'app': s.app, 'port': s.port, 'pid': s.pid}
                             for s in self.servers}}
        self.state_file.write_text(json.dumps(state, indent=2) + '\n')

    def _owned_pid(self, server: Server) -> int | None:
        """The live pid in the server's pid file, if that process is this server.

        Checking the command line (it names the server's conf.d) keeps a
        reused pid from being taken for ours.
        """
        try:
            pid = int(self.pid_file(server).read_text())
        except (FileNotFoundError, ValueError):
            return None
        if not self._alive(pid) or str(self.conf_dir(server)) not in proc_cmdline(pid):
            return None
        return pid

    def _alive(self, pid: int) -> bool:
        proc = self._procs.get(pid)
        if proc is not None:
            return proc.poll() is None     # also reaps our own children
        return proc_state(pid) is not None

    def running_servers(self) -> dict[str, int]:
        """Server name -> pid, for every server process of this cluster still alive."""
        run_dir = self.dir / 'run'
        names = sorted(p.stem for p in run_dir.glob('*.pid')) if run_dir.is_dir() else []
        known = {s.name: s for s in self.servers}
        running = {}
        for name in names:
            pid = self._owned_pid(known.get(name) or Server(name, '', 0))
            if pid is not None:
                running[name] = pid
        return running

    def _spawn(self, server: Server) -> None:
        """Start one server process; it logs into its log file."""
        cmd = [sys.executable, '-m', 'zerocloud.devcluster', 'serve', server.app,
               str(self.conf_dir(server))]
        if not self.detach:
            cmd += ['--parent', str(os.getpid())]
        with open(self.log_file(server), 'ab') as log:
            self._log_from[server.name] = log.tell()
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.dir, start_new_session=True)
        self._procs[proc.pid] = proc
        server.pid = proc.pid
        self.pid_file(server).write_text(f'{proc.pid}\n')

    def _wait_healthy(self, servers: list[Server]) -> None:
        """Poll /healthcheck until every server answers; raise naming the first failure.

        A server that has not answered yet is waited for as long as it runs or waits
        for a CPU (on a loaded machine, starting takes minutes, and a starved server
        may get no CPU for a while): it fails after START_TIMEOUT seconds of neither,
        or after START_CAP in all.
        """
        began = time.monotonic()
        used: dict[str, tuple[int, float]] = {}       # name -> (CPU ticks, when it worked)
        waiting = list(servers)
        while waiting:
            for server in list(waiting):
                proc = self._procs[server.pid]
                if proc.poll() is not None:
                    raise ServerStartError(server.name, f'exited with status {proc.returncode}',
                                           self.log_file(server),
                                           self._log_from.get(server.name, 0))
                if healthy(server.port):
                    waiting.remove(server)
                    continue
                now, ticks = time.monotonic(), _cpu(proc.pid)
                if used.get(server.name, (None,))[0] != ticks or _runnable(proc.pid):
                    used[server.name] = (ticks, now)
                idle = now - used[server.name][1]
                if idle > START_TIMEOUT or now - began > START_CAP:
                    why = (f'and not running for {START_TIMEOUT:.0f} s' if idle > START_TIMEOUT
                           else f'after {START_CAP:.0f} s')
                    raise ServerStartError(server.name, f'no answer on /healthcheck (port '
                                           f'{server.port}) {why}', self.log_file(server),
                                           self._log_from.get(server.name, 0))
            if waiting:
                time.sleep(HEALTH_POLL)

    def start(self) -> list[str]:
        """Configure and start every server, and wait until all answer /healthcheck;
        in a directory whose cluster runs without some of its servers (one died or
        was killed), start those again instead.  The names of the servers started.

        Raises ClusterRunning if this directory's cluster is running whole, and
        ServerStartError (after stopping the ones it started) if a server fails.
        """
        running = self.running_servers()
        if running:
            missing = [s for s in self.servers if s.name not in running]
            if not missing or not self.state_file.exists():
                pids = ', '.join(f'{name} {pid}' for name, pid in running.items())
                raise ClusterRunning(f'a cluster is already running in {self.dir} ({pids}); '
                                     f'use it (zerocloud-devcluster env) or stop it first')
            self._start_again(missing)
            return [s.name for s in missing]
        self._clear_run_files()
        self.configure()
        for server in self.servers:
            if not port_free(server.port):
                raise ClusterError(f'port {server.port} for {server.name} is already in use: give '
                                   'another --port-base, or none (free ports are then picked)')
        for sub in ('log', 'run'):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
            (self.dir / sub).mkdir(parents=True)
        try:
            for server in self.servers:
                self._spawn(server)
            self._save_state()
            self._wait_healthy(self.servers)
        except BaseException:
            self.stop()
            raise
        return [s.name for s in self.servers]

    def _start_again(self, servers: list[Server]) -> None:
        """Start these servers of the running cluster on their own confs and ports and
        wait until they are healthy; if one fails, these are killed again (the others
        go on running)."""
        for server in servers:
            if not port_free(server.port):
                raise ClusterError(f'port {server.port} of {server.name} is taken by another '
                                   f'process: stop the cluster and start it again (new ports)')
        try:
            for server in servers:
                self._spawn(server)
            self._save_state()
            self._wait_healthy(servers)
        except BaseException:
            for server in servers:
                with contextlib.suppress(ClusterError):
                    self.kill_server(server.name)
            raise

    def stop(self) -> None:
        """End this cluster's processes and wait until their ports are free.

        SIGTERM first (a clean shutdown takes Swift well under a second),
        SIGKILL for any still there after STOP_GRACE. Only processes named in
        this directory's pid files and running this cluster's confs are
        touched; with none, this only clears stale pid and state files.
        """
        running = self.running_servers()
        self._end(running.values())
        self._clear_run_files()
        self._wait_ports_free([s.port for s in self.servers if s.name in running])

    def _end(self, pids: Iterable[int]) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE, and wait until they are gone."""
        pids = list(pids)
        for pid in pids:
            send_signal(pid, signal.SIGTERM)
            send_signal(pid, signal.SIGCONT)    # a paused server handles SIGTERM once resumed
        left = self._wait_gone(pids, STOP_GRACE)
        for pid in left:
            send_signal(pid, signal.SIGKILL)
        left = self._wait_gone(left, STOP_GRACE)
        if left:
            raise ClusterError(f'processes {sorted(left)} did not exit after SIGKILL')

    def _wait_ports_free(self, ports: list[int]) -> None:
        deadline = time.monotonic() + STOP_GRACE
        while not all(port_free(port) for port in ports):
            if time.monotonic() > deadline:
                busy = [port for port in ports if not port_free(port)]
                raise ClusterError(f'ports {busy} still in use after the servers exited')
            time.sleep(HEALTH_POLL)

    def restart(self, options: Iterable[str] = ()) -> list[str]:
        """Stop servers of the running cluster cleanly and start them again on their
        ports, waiting until they are healthy: those ``options`` name
        (``SERVER:[SECTION:]KEY=VALUE``, :func:`parse_option`), whose
        RESTART_CONF file is written anew with them (if they keep one from starting,
        the servers start again on the file they had), else every server, with its
        conf files as they are.  The names of the servers restarted."""
        if not self.running_servers() or not self.state_file.exists():
            raise ClusterError(f'no cluster running in {self.dir}: start it first')
        confs = self._option_confs(options)
        servers = [s for s in self.servers if s.name in confs] if confs else self.servers
        before = {s.name: self._write_restart_conf(s, confs[s.name]) for s in servers if confs}
        pids = [pid for pid in map(self._owned_pid, servers) if pid is not None]
        self._end(pids)
        self._wait_ports_free([s.port for s in servers])
        try:
            self._start_again(servers)
        except ServerStartError as err:
            raise ClusterError(f'{err}\n{self._after_failed_restart(servers, before)}') from None
        return [s.name for s in servers]

    def _write_restart_conf(self, server: Server, text: str | None) -> str | None:
        """Write (None: remove) the server's RESTART_CONF; the text it had, if any."""
        path = self.conf_dir(server) / RESTART_CONF
        old = path.read_text() if path.exists() else None
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)
        return old

    def _after_failed_restart(self, servers: list[Server], before: dict[str, str | None]
                              ) -> str:
        """A restart whose servers failed to start: with new options, start them
        again on the options they had, so the cluster stays usable; what to fix."""
        names = ', '.join(s.name for s in servers)
        fix = (f'a full zerocloud-devcluster stop --dir {self.dir}, then start, writes etc/ '
               'anew')
        if not before:
            return f'not running: {names}: fix {self.dir}/etc/<server>.conf.d, or {fix}'
        for server in servers:
            self._write_restart_conf(server, before[server.name])
        try:
            self._start_again(servers)
        except ServerStartError as again:    # not the options: say why, as for the first
            return (f'not running: {names}, on the previous options either: {again}\n'
                    'fix what its log says (the servers get the environment of this '
                    f'command too: ZVM_*), or {fix}')
        return (f'the option was not kept: {names} started again on the previous options; '
                'fix it (the last lines above say how) and restart --conf again')

    def _option_confs(self, options: Iterable[str]) -> dict[str, str]:
        """Server name -> the conf text of the ``options`` that name it."""
        sections: dict[str, dict[str, list[str]]] = {}
        for text in options:
            target, section, key, value = parse_option(text)
            servers = self._objects() if target == 'object' else [self.server(target)]
            if section is None:
                if servers[0].app not in ('proxy-server', 'object-server'):
                    raise ClusterError(f'{text}: {target} has no zerocloud filter: name the '
                                       f'section ({target}:app:{servers[0].app}:{key}=...)')
                section = 'filter:zerocloud'
            known = self._sections(servers[0])
            if section not in known:        # a section no server reads: the option is lost
                raise ClusterError(f'{text}: {target} has no section [{section}] (it has '
                                   f'{", ".join(sorted(known))})')
            for server in servers:
                lines = sections.setdefault(server.name, {}).setdefault(section, [])
                lines.append(f'{key} = {value}')
        return {name: RESTART_HEADER + ''.join(f'[{section}]\n' + '\n'.join(lines) + '\n'
                                               for section, lines in by_section.items())
                for name, by_section in sections.items()}

    def _sections(self, server: Server) -> set[str]:
        """The sections of the server's conf files (but RESTART_CONF's)."""
        files = [p for p in self.conf_dir(server).glob('*.conf') if p.name != RESTART_CONF]
        return {found for path in files
                for found in re.findall(r'^\[([^\]]+)\]', path.read_text(), re.M)}

    def _wait_gone(self, pids: Iterable[int], timeout: float) -> list[int]:
        """Wait until the processes exit; return those still alive at the timeout."""
        left = list(pids)
        deadline = time.monotonic() + timeout
        while left and time.monotonic() < deadline:
            time.sleep(HEALTH_POLL)
            left = [pid for pid in left if self._alive(pid)]
        return left

    def _clear_run_files(self) -> None:
        shutil.rmtree(self.dir / 'run', ignore_errors=True)
        self.state_file.unlink(missing_ok=True)

    def status(self) -> list[ServerStatus]:
        """State and health of every server of the cluster last started here."""
        running = self.running_servers()
        result = []
        for server in self.servers:
            pid = running.get(server.name)
            state = proc_state(pid) if pid else None
            state = 'dead' if state is None else 'paused' if state == 'T' else 'running'
            ok = state == 'running' and healthy(server.port)
            result.append(ServerStatus(server.name, server.port, pid, state, ok))
        return result

    # --- failure injection for tests ---------------------------------------------

    def _object_server(self, i: int) -> Server:
        return self.server(f'object{i}')

    def kill_object_server(self, i: int) -> None:
        """SIGKILL object server i (a crash: no clean shutdown) and wait until it is gone."""
        self.kill_server(self._object_server(i).name)

    def start_object_server(self, i: int) -> None:
        """Start object server i again (after kill_object_server) and wait until healthy."""
        self.start_server(self._object_server(i).name)

    def kill_server(self, name: str) -> None:
        """SIGKILL server ``name`` (``proxy``, ``object0``...) and wait until it is gone."""
        server = self.server(name)
        pid = self._owned_pid(server)
        if pid is None:
            raise ClusterError(f'{server.name} is not running')
        send_signal(pid, signal.SIGKILL)
        self._wait_gone([pid], STOP_GRACE)

    def start_server(self, name: str) -> None:
        """Start server ``name`` again (after kill_server) and wait until it is healthy."""
        server = self.server(name)
        if self._owned_pid(server) is not None:
            raise ClusterRunning(f'{server.name} is already running')
        self._start_again([server])

    def pause_object_server(self, i: int) -> None:
        """SIGSTOP object server i: it keeps its port but answers nothing."""
        self._signal_object_server(i, signal.SIGSTOP)

    def resume_object_server(self, i: int) -> None:
        """SIGCONT object server i after pause_object_server."""
        self._signal_object_server(i, signal.SIGCONT)

    def usage(self, name: str) -> Usage:
        """What server ``name`` and its child processes (sandbox workers) hold now."""
        pid = self._owned_pid(self.server(name))
        if pid is None:
            raise ClusterError(f'{name} is not running')
        children = [c for c in _child_pids(pid) if proc_state(c) is not None]
        return Usage(pid, _open_fds(pid), _rss(pid), {c: _cpu(c) for c in children},
                     sum(map(_rss, children)))

    def _signal_object_server(self, i: int, sig: signal.Signals) -> None:
        server = self._object_server(i)
        pid = self._owned_pid(server)
        if pid is None:
            raise ClusterError(f'{server.name} is not running')
        send_signal(pid, sig)


@dataclass(frozen=True)
class Usage:
    """One server process: its open descriptors, resident memory (bytes), its
    children's CPU time (clock ticks, by pid) and resident memory (in all)."""

    pid: int
    fds: int
    rss: int
    children: dict[int, int]
    children_rss: int


def _task_files(pid: int, name: str) -> list[Path]:
    """``/proc/<pid>/task/*/<name>``; none once the process is gone (it may exit
    while its tasks are listed: a server that fails to start)."""
    try:
        return list(Path(f'/proc/{pid}/task').glob(f'*/{name}'))
    except OSError:
        return []


def _child_pids(pid: int) -> list[int]:
    """``pid``'s children, whichever of its threads started them (a sandbox worker
    that replaced one is started from a thread of the server: ``zvm_core.pool``)."""
    pids = []
    for task in _task_files(pid, 'children'):
        try:
            pids += (int(c) for c in task.read_text().split())
        except OSError:
            pass
    return pids


def _open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f'/proc/{pid}/fd'))
    except OSError:
        return 0


def _rss(pid: int) -> int:
    try:
        return int(Path(f'/proc/{pid}/statm').read_text().split()[1]) * os.sysconf('SC_PAGESIZE')
    except (OSError, IndexError, ValueError):
        return 0


def _cpu(pid: int) -> int:
    """User + system CPU time of ``pid`` and its live descendants (a native guest
    is a worker's child), in clock ticks."""
    try:
        fields = Path(f'/proc/{pid}/stat').read_text().rpartition(')')[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12]) + sum(map(_cpu, _child_pids(pid)))


def _runnable(pid: int) -> bool:
    """True if a thread of ``pid`` or of its live descendants is running or waiting
    for a CPU (state R): on a loaded machine a starting server may wait for one for
    longer than it takes to use a clock tick of CPU (:func:`_cpu`)."""
    for stat in _task_files(pid, 'stat'):
        try:
            if stat.read_text().rpartition(')')[2].split()[0] == 'R':
                return True
        except (OSError, IndexError):
            continue
    return any(map(_runnable, _child_pids(pid)))


class NullCache:
    """The devcluster proxy's ``swift.cache``: a memcache that keeps nothing (every
    ``get`` misses, which memcached may always do). Without any cache, tempauth
    answers a token of its memcache form (``AUTH_tk...``: another cluster's, or
    an old one) with a 500 'Memcache required' instead of a 401, and logs an
    error at every token it issues; its fernet tokens need no cache."""

    def get(self, key: str, *args: object, **kwargs: object) -> None:
        return None

    def get_multi(self, keys: Iterable[str], *args: object, **kwargs: object) -> list[None]:
        return [None for _ in keys]

    def set(self, key: str, value: object, *args: object, **kwargs: object) -> None:
        return None

    def set_multi(self, mapping: Mapping[str, object], *args: object, **kwargs: object) -> None:
        return None

    def delete(self, key: str, *args: object, **kwargs: object) -> None:
        return None

    def incr(self, key: str, delta: int = 1, *args: object, **kwargs: object) -> int:
        return delta

    def decr(self, key: str, delta: int = 1, *args: object, **kwargs: object) -> int:
        return 0


def null_cache(global_conf: Mapping[str, str],
               **local_conf: str) -> Callable[[Callable], Callable]:
    """Paste filter factory of the proxy's ``cache``: sets ``swift.cache`` to a
    :class:`NullCache` (as Swift's ``memcache`` filter sets its client)."""
    cache = NullCache()

    def make(app: Callable) -> Callable:
        def cached(env: dict, start_response: Callable) -> Iterable[bytes]:
            env.setdefault('swift.cache', cache)
            return app(env, start_response)
        return cached
    return make


def _with_cache(proxy_conf: str) -> str:
    """The sample proxy conf's pipeline with ``cache`` before ``tempauth``."""
    for line in proxy_conf.splitlines():
        key, sep, value = line.partition('=')
        if sep and key.strip() == 'pipeline':
            return value.strip().replace('tempauth', 'cache tempauth', 1)
    raise ClusterError(f'{PROXY_SAMPLE} has no pipeline')


def serve(app: str, conf: str, parent: int | None = None) -> int:
    """Run one Swift server in this process with its cluster's swift.conf.

    Swift loads storage policies and constraints from /etc/swift/swift.conf
    when imported; ``swift_dir`` in the conf moves the rings but not those,
    so point Swift at swift_dir and reload them before running the server.
    With ``parent``, the server dies with that process (DevCluster's ``detach``).
    """
    from swift.common import constraints, storage_policy, utils
    from swift.common.wsgi import appconfig, run_wsgi

    if parent is not None:
        die_with_parent(parent)
    conf = os.path.abspath(conf)
    utils.set_swift_dir(appconfig(conf, name=app)['swift_dir'])
    storage_policy.reload_storage_policies()
    constraints.reload_constraints()
    return run_wsgi(conf, app, verbose=True)


def _dir_opt(cluster: DevCluster) -> str:
    """`` --dir DIR`` for the hints, unless DIR is the default."""
    return '' if cluster.dir == default_dir() else f' --dir {shlex.quote(str(cluster.dir))}'


def _print_running(cluster: DevCluster, how: str) -> None:
    dir_opt = _dir_opt(cluster)
    print(f'ZeroCloud dev cluster running in {cluster.dir} ({how})\n'
          f'  auth URL: {cluster.auth_url}\n'
          f'  user:     {cluster.user}\n'
          f'  key:      {cluster.key}\n'
          f'  eval "$(zerocloud-devcluster env{dir_opt})" sets ST_AUTH, ST_USER, ST_KEY;\n'
          f'  zerocloud-devcluster stop{dir_opt} stops it.')


def _cmd_start(cluster: DevCluster) -> int:
    """Start the cluster; one that is already running and healthy is a success too
    (the demo leaves one for the user to go on with), and one running without some
    of its servers (one died) gets those started again."""
    began = time.monotonic()
    try:
        started = cluster.start()
    except ClusterRunning:
        down = [s.name for s in cluster.status() if not s.healthy]
        if down:
            dir_opt = _dir_opt(cluster)
            print(f'zerocloud-devcluster: the cluster in {cluster.dir} is running without '
                  f'{", ".join(down)}; see zerocloud-devcluster status{dir_opt}, and '
                  f'zerocloud-devcluster stop{dir_opt} before starting it again',
                  file=sys.stderr)
            return 1
        _print_running(cluster, 'already running')
        return 0
    except ClusterError as err:
        print(f'zerocloud-devcluster: {err}', file=sys.stderr)
        return 1
    again = '' if len(started) == len(cluster.servers) else f'{", ".join(started)} again '
    _print_running(cluster, f'started {again}in {time.monotonic() - began:.1f} s')
    return 0


def _cmd_restart(cluster: DevCluster, options: list[str]) -> int:
    began = time.monotonic()
    try:
        restarted = cluster.restart(options)
    except ClusterError as err:
        print(f'zerocloud-devcluster: {err}', file=sys.stderr)
        return 1
    print(f'restarted {", ".join(restarted)} in {time.monotonic() - began:.1f} s')
    return 0


def _cmd_stop(cluster: DevCluster) -> int:
    was_running = bool(cluster.running_servers())
    began = time.monotonic()
    try:
        cluster.stop()      # also clears stale pid and state files
    except ClusterError as err:
        print(f'zerocloud-devcluster: {err}', file=sys.stderr)
        return 1
    if was_running:
        print(f'stopped the cluster in {cluster.dir} ({time.monotonic() - began:.1f} s)')
    else:
        print(f'no cluster running in {cluster.dir}')
    return 0


def _cmd_status(cluster: DevCluster) -> int:
    statuses = cluster.status()
    if not statuses:
        print(f'no cluster in {cluster.dir}')
        return 1
    print(f'cluster in {cluster.dir}, auth URL {cluster.auth_url}')
    for s in statuses:
        health = 'healthy' if s.healthy else '-'
        print(f'  {s.name:<10} port {s.port:<6} pid {s.pid or "-":<8} {s.state:<8} {health}')
    return 0 if all(s.healthy for s in statuses) else 1


def _cmd_env(cluster: DevCluster) -> int:
    if not cluster.running_servers():
        print(f'zerocloud-devcluster: no cluster running in {cluster.dir}', file=sys.stderr)
        return 1
    for var, value in (('ST_AUTH', cluster.auth_url), ('ST_USER', cluster.user),
                       ('ST_KEY', cluster.key)):
        print(f'export {var}={shlex.quote(value)}')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``zerocloud-devcluster`` (quiet when stdout's reader goes away)."""
    return stdout.quiet(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--dir', type=Path, help=f'cluster directory (default: {default_dir()})')
    parser = argparse.ArgumentParser(
        prog='zerocloud-devcluster',
        description='Start and stop a local Swift cluster with ZeroCloud installed.')
    add_version(parser)
    parser.add_argument('--dir', type=Path, dest='dir_first', metavar='DIR',
                        help='the same as the command\'s --dir, given before it')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    start = sub.add_parser('start', parents=[common], help='start the cluster and wait for it')
    start.add_argument('--replicas', type=int, default=2, metavar='N',
                       help='object ring replicas (2)')
    start.add_argument('--object-servers', type=int, default=3, metavar='N',
                       help='object servers (3)')
    start.add_argument('--port-base', type=int, metavar='P',
                       help='proxy port; the other servers take the next ports '
                            '(default: free ports)')
    restart = sub.add_parser(
        'restart', parents=[common],
        help='stop servers and start them again on their ports: those --conf names, '
             'with these options, else all')
    restart.add_argument('--conf', action='append', default=[],
                         metavar='SERVER:[SECTION:]KEY=VALUE',
                         help='an option for SERVER (proxy, account, container, object: '
                              'every object server, object0 ...); no SECTION: '
                              'filter:zerocloud (repeatable)')
    sub.add_parser('stop', parents=[common], help='stop the processes start started')
    sub.add_parser('status', parents=[common], help='show each server; exit 1 unless all healthy')
    sub.add_parser('env', parents=[common], help='print export lines for ST_AUTH/USER/KEY')
    serve_cmd = sub.add_parser('serve')     # internal: how start runs each server
    serve_cmd.add_argument('app')
    serve_cmd.add_argument('conf')
    serve_cmd.add_argument('--parent', type=int)
    args = parser.parse_args(argv)
    args.dir = getattr(args, 'dir', None) or args.dir_first or default_dir()

    if args.command == 'serve':
        return serve(args.app, args.conf, args.parent)
    if args.command == 'start':
        try:
            cluster = DevCluster(args.dir, replicas=args.replicas,
                                 object_servers=args.object_servers,
                                 port_base=args.port_base, detach=True)
        except ValueError as err:
            parser.error(str(err))
        return _cmd_start(cluster)
    if args.command == 'restart':
        for text in args.conf:
            try:
                parse_option(text)
            except ValueError as err:
                parser.error(str(err))
        return _cmd_restart(DevCluster(args.dir, detach=True), args.conf)
    cluster = DevCluster(args.dir)
    return {'stop': _cmd_stop, 'status': _cmd_status, 'env': _cmd_env}[args.command](cluster)


if __name__ == '__main__':
    sys.exit(main())

"""Starting and stopping clusters of their own: the CLI, refusals, failures, clean-up.

These use small clusters (one object server) in their own directories, not
the session's cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from swiftclient import Connection

from zerocloud.devcluster import DevCluster, ServerStartError, port_free, proc_state

SMALL = ['--object-servers', '1', '--replicas', '1']


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run zerocloud-devcluster (as ``python -m``, so PATH does not matter), with
    ``env`` added to this environment."""
    return subprocess.run([sys.executable, '-m', 'zerocloud.devcluster', *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def processes_in(dir: Path) -> list[int]:
    """Pids of live processes whose command line mentions dir."""
    pids = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / 'cmdline').read_bytes().decode(errors='replace')
        except OSError:
            continue
        if str(dir) in cmdline and proc_state(int(entry.name)) is not None:
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    """A cluster directory whose cluster, if any, is stopped after the test."""
    yield tmp_path / 'cluster'
    DevCluster(tmp_path / 'cluster').stop()


def test_cli_start_env_status_refuse_stop(cluster_dir: Path) -> None:
    dir_opt = ['--dir', str(cluster_dir)]
    started = cli('start', *dir_opt, *SMALL)
    assert started.returncode == 0, started.stderr
    state = json.loads((cluster_dir / 'state.json').read_text())
    assert f'auth URL: {state["auth_url"]}' in started.stdout

    env = cli('env', *dir_opt)
    assert env.returncode == 0
    exports = dict(shlex.split(line)[1].split('=', 1) for line in env.stdout.splitlines())
    assert exports == {'ST_AUTH': state['auth_url'], 'ST_USER': 'test:tester',
                       'ST_KEY': 'testing'}
    conn = Connection(authurl=exports['ST_AUTH'], user=exports['ST_USER'],
                      key=exports['ST_KEY'], retries=0)
    conn.put_container('c')
    assert conn.get_container('c')[1] == []

    assert cli('status', *dir_opt).returncode == 0
    again = cli('start', *dir_opt, *SMALL)
    assert again.returncode == 0, again.stderr
    assert f'running in {cluster_dir} (already running)' in again.stdout
    assert f'eval "$(zerocloud-devcluster env --dir {cluster_dir})"' in again.stdout
    assert json.loads((cluster_dir / 'state.json').read_text()) == state

    pids = [s['pid'] for s in state['servers'].values()]
    ports = [s['port'] for s in state['servers'].values()]
    assert sorted(pids) == sorted(processes_in(cluster_dir))
    DevCluster(cluster_dir).kill_object_server(0)     # one server died: start starts it
    partial = cli('start', *dir_opt, *SMALL)
    assert partial.returncode == 0, partial.stderr
    assert f'running in {cluster_dir} (started object0 again in ' in partial.stdout
    assert all(s.healthy for s in DevCluster(cluster_dir).status())
    conn.put_object('c', 'o', b'stored after the restart')
    assert conn.get_object('c', 'o')[1] == b'stored after the restart'
    restarted = json.loads((cluster_dir / 'state.json').read_text())
    assert restarted['servers']['object0']['pid'] != state['servers']['object0']['pid']
    assert {k: v for k, v in restarted['servers'].items() if k != 'object0'} == \
        {k: v for k, v in state['servers'].items() if k != 'object0'}
    pids.append(restarted['servers']['object0']['pid'])
    stopped = cli('stop', *dir_opt)
    assert stopped.returncode == 0, stopped.stderr
    assert [pid for pid in pids if proc_state(pid) is not None] == []
    assert processes_in(cluster_dir) == []
    assert all(port_free(port) for port in ports)
    assert not (cluster_dir / 'state.json').exists()
    assert cli('status', *dir_opt).returncode == 1


def test_failed_server_is_named_with_its_log_and_nothing_is_left(cluster_dir: Path) -> None:
    broken = '[app:object-server]\nuse = egg:swift#no_such_app\n'
    cluster = DevCluster(cluster_dir, replicas=1, object_servers=1,
                         extra_conf={'object0': broken})
    with pytest.raises(ServerStartError) as err:
        cluster.start()
    assert err.value.server == 'object0'
    message = str(err.value)
    assert message.startswith('object0 failed to start: exited with status 1')
    assert "LookupError: Entry point 'no_such_app' not found" in message
    assert processes_in(cluster_dir) == []
    assert cluster.running_servers() == {}
    assert not (cluster_dir / 'state.json').exists()


def free_block(count: int) -> int:
    """A port P such that P..P+count-1 are free right now."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            base = sock.getsockname()[1]
        if base + count < 65536 and all(port_free(p) for p in range(base, base + count)):
            return base
    raise RuntimeError('no block of free ports found')


def test_cli_start_refuses_a_taken_port(cluster_dir: Path) -> None:
    base = free_block(4)
    with socket.socket() as blocker:
        blocker.bind(('127.0.0.1', base + 3))        # object0's port
        blocker.listen()
        result = cli('start', '--dir', str(cluster_dir), '--port-base', str(base), *SMALL)
    assert result.returncode == 1
    assert f'port {base + 3} for object0 is already in use: give another --port-base, or ' \
        'none (free ports are then picked)' in result.stderr
    assert processes_in(cluster_dir) == []


def test_restart_with_an_option_restarts_those_servers_on_their_ports(cluster_dir: Path
                                                                       ) -> None:
    """doc/operator-guide.md "Trying it locally": one command tries an option."""
    dir_opt = ['--dir', str(cluster_dir)]
    assert cli('start', *dir_opt, *SMALL).returncode == 0
    before = {s.name: (s.port, s.pid) for s in DevCluster(cluster_dir).status()}
    done = cli('restart', *dir_opt, '--conf', 'proxy:zerovm_timeout=7',
               '--conf', 'proxy:app:proxy-server:node_timeout=5')
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('restarted proxy in ')
    after = {s.name: (s.port, s.pid) for s in DevCluster(cluster_dir).status()}
    assert after['proxy'][0] == before['proxy'][0] and after['proxy'][1] != before['proxy'][1]
    assert {k: v for k, v in after.items() if k != 'proxy'} == \
        {k: v for k, v in before.items() if k != 'proxy'}
    with urllib.request.urlopen(f'http://127.0.0.1:{after["proxy"][0]}/info') as answer:
        info = json.load(answer)
    assert info['zerocloud']['timeout'] == 7
    assert (cluster_dir / 'etc' / 'proxy.conf.d' / '60-restart.conf').read_text().endswith(
        '[filter:zerocloud]\nzerovm_timeout = 7\n[app:proxy-server]\nnode_timeout = 5\n')
    assert cli('restart', *dir_opt).stdout.startswith(
        'restarted proxy, account, container, object0 in ')
    assert DevCluster(cluster_dir).status()[0].healthy


def test_restart_with_an_option_that_stops_a_server_keeps_the_cluster_usable(
        cluster_dir: Path) -> None:
    """A typo'd option left every object server down (and the command could end in
    a traceback): they start again on their previous options, and it says what to fix."""
    dir_opt = ['--dir', str(cluster_dir)]
    assert cli('start', *dir_opt, *SMALL).returncode == 0
    assert cli('restart', *dir_opt, '--conf', 'object:zerovm_timeout=9').returncode == 0
    restart_conf = cluster_dir / 'etc' / 'object0.conf.d' / '60-restart.conf'
    kept = restart_conf.read_text()
    bad = cli('restart', *dir_opt, '--conf', 'object:zerovm_enigne=emulated')
    assert bad.returncode == 1
    assert 'Traceback' not in bad.stderr.split('--- last lines')[0]
    assert 'zerovm_enigne: no such option: did you mean zerovm_engine?' in bad.stderr
    assert bad.stderr.endswith('the option was not kept: object0 started again on the '
                               'previous options; fix it (the last lines above say how) '
                               'and restart --conf again\n'), bad.stderr
    assert restart_conf.read_text() == kept
    assert all(s.healthy for s in DevCluster(cluster_dir).status())


def test_a_restart_that_fails_on_the_previous_options_too_says_why(cluster_dir: Path) -> None:
    """A server the restart's environment keeps from starting (a bad ZVM_ENGINE) failed
    on the previous options too, and only the option's error was shown, with advice
    (a full stop, then start) that could not help: the second failure is shown too."""
    dir_opt = ['--dir', str(cluster_dir)]
    assert cli('start', *dir_opt, *SMALL).returncode == 0
    bad = cli('restart', *dir_opt, '--conf', 'object:zerovm_enigne=emulated',
              env={'ZVM_ENGINE': 'nativ'})
    assert bad.returncode == 1
    first, _, second = bad.stderr.partition('on the previous options either: ')
    assert 'zerovm_enigne: no such option' in first
    assert "ZVM_ENGINE in the object server's environment: unknown engine 'nativ'" in second
    assert 'the servers get the environment of this command too' in second
    assert cli('start', *dir_opt).returncode == 0
    assert all(s.healthy for s in DevCluster(cluster_dir).status())

"""zerocloud.devcluster without servers: samples, generated confs, rings, CLI edges."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from swift.common.ring import RingData
from swift.common.utils import readconf

from zerocloud import devcluster
from zerocloud.devcluster import DevCluster, main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize('name', devcluster.SAMPLES)
def test_etc_samples_are_the_text_the_launcher_uses(name: str) -> None:
    assert (REPO / 'etc' / name).read_text() == devcluster.sample_text(name)


@pytest.fixture
def configured(tmp_path: Path) -> DevCluster:
    """A cluster planned on ports 20000.. with its configuration written, not started."""
    cluster = DevCluster(tmp_path, port_base=20000,
                         extra_conf={'object': '# all objects\n', 'object1': '# object1\n',
                                     'proxy': '# proxy\n'})
    cluster.configure()
    return cluster


def test_port_base_gives_consecutive_ports(configured: DevCluster) -> None:
    assert [(s.name, s.port) for s in configured.servers] == [
        ('proxy', 20000), ('account', 20001), ('container', 20002),
        ('object0', 20003), ('object1', 20004), ('object2', 20005)]
    assert configured.auth_url == 'http://127.0.0.1:20000/auth/v1.0'
    assert configured.object_ports == [20003, 20004, 20005]


def test_free_ports_are_distinct(tmp_path: Path) -> None:
    cluster = DevCluster(tmp_path)
    cluster.configure()
    ports = [s.port for s in cluster.servers]
    assert len(set(ports)) == len(ports) == 6
    assert all(devcluster.port_free(port) for port in ports)


def test_proxy_conf_is_the_sample_plus_site_values(configured: DevCluster) -> None:
    conf_dir = configured.conf_dir(configured.server('proxy'))
    assert sorted(os.listdir(conf_dir)) == [
        '00-proxy-server.conf', '10-zerocloud.conf', '50-devcluster.conf', '90-extra.conf']
    assert (conf_dir / '00-proxy-server.conf').read_text() == devcluster.sample_text(
        devcluster.PROXY_SAMPLE)
    assert (conf_dir / '10-zerocloud.conf').read_text() == devcluster.sample_text(
        devcluster.ZEROCLOUD_SAMPLE)
    assert (conf_dir / '90-extra.conf').read_text() == '# proxy\n'
    conf = readconf(str(conf_dir))
    # the sample's pipeline with a cache before tempauth (no memcached here: it keeps nothing)
    assert conf['pipeline:main']['pipeline'] == (
        'catch_errors gatekeeper healthcheck proxy-logging bulk cache tempauth zerocloud '
        'container-quotas account-quotas slo proxy-logging proxy-server')
    assert conf['filter:cache']['paste.filter_factory'] == 'zerocloud.devcluster:null_cache'
    assert conf['filter:zerocloud']['use'] == 'egg:zerocloud#zerocloud_proxy'
    defaults = conf['app:proxy-server']
    assert (defaults['bind_ip'], defaults['bind_port'], defaults['workers']) == (
        '127.0.0.1', '20000', '0')
    assert defaults['swift_dir'] == str(configured.swift_dir)
    assert defaults['allow_account_management'] == 'true'
    tempauth = conf['filter:tempauth']
    assert tempauth['user_test_tester'] == 'testing .admin'
    assert tempauth['user_test2_tester2'] == 'testing2 .admin'
    assert tempauth['user_admin_admin'] == 'admin .admin .reseller_admin'
    assert tempauth['active_fernet_key_id'] == 'devcluster'
    assert len(tempauth['fernet_key_devcluster']) == 44


def test_a_token_of_the_memcache_form_is_refused_not_an_error() -> None:
    """tempauth looks an ``AUTH_tk...`` token (another cluster's, an old one) up in
    ``swift.cache`` and raises 'Memcache required' without one (a 500); the devcluster's
    cache keeps nothing, so such a token is simply unknown: 401."""
    from swift.common.middleware import tempauth
    from swift.common.swob import Request, Response

    app = devcluster.null_cache({})(
        tempauth.filter_factory({'user_test_tester': 'testing .admin'})(Response()))
    resp = Request.blank('/v1/AUTH_test', headers={
        'X-Auth-Token': 'AUTH_tk0123456789abcdef0123456789abcdef'}).get_response(app)
    assert resp.status_int == 401
    cache = devcluster.NullCache()
    cache.set('k', 1, time=60)
    assert cache.get('k') is None and cache.get_multi(['k'], 'd') == [None]


def test_object_confs_are_the_sample_plus_site_values(configured: DevCluster) -> None:
    for i, device in enumerate(configured.object_devices):
        server = configured.server(f'object{i}')
        conf_dir = configured.conf_dir(server)
        assert (conf_dir / '00-object-server.conf').read_text() == devcluster.sample_text(
            devcluster.OBJECT_SAMPLE)
        conf = readconf(str(conf_dir))
        assert conf['pipeline:main']['pipeline'] == 'healthcheck zerocloud object-server'
        assert conf['filter:zerocloud']['use'] == 'egg:zerocloud#zerocloud_object'
        app = conf['app:object-server']
        assert app['bind_port'] == str(device['port'])
        assert (app['mount_check'], app['disable_fallocate']) == ('false', 'true')
        assert Path(app['devices'], device['device']) == Path(device['path'])
        assert Path(device['path']).is_dir()
        extra = (conf_dir / '90-extra.conf').read_text()
        assert extra == ('# all objects\n# object1\n' if i == 1 else '# all objects\n')


def test_system_images_reach_the_proxy_and_object_servers(tmp_path: Path) -> None:
    cluster = DevCluster(tmp_path, port_base=20000,
                         sysimages={'python3': '/srv/images/python3.tar', 'lua': '/srv/lua.tar'})
    cluster.configure()
    for name in ('proxy', 'object0', 'object2'):
        conf = readconf(str(cluster.conf_dir(cluster.server(name))))
        assert conf['filter:zerocloud']['zerovm_sysimage_devices'] == \
            'python3 /srv/images/python3.tar lua /srv/lua.tar'
    none = DevCluster(tmp_path / 'none', port_base=20010, sysimages={})
    none.configure()
    conf = readconf(str(none.conf_dir(none.server('proxy'))))
    assert 'zerovm_sysimage_devices' not in conf['filter:zerocloud']


def test_account_and_container_share_a_device(configured: DevCluster) -> None:
    for name in ('account', 'container'):
        server = configured.server(name)
        conf = readconf(str(configured.conf_dir(server)))
        assert conf['pipeline:main']['pipeline'] == f'healthcheck {name}-server'
        assert conf[f'app:{name}-server']['devices'] == str(configured.dir / 'srv' / 'ac')
    assert (configured.dir / 'srv' / 'ac' / 'ac').is_dir()


def load_ring(cluster: DevCluster, name: str) -> RingData:
    return RingData.load(str(cluster.swift_dir / f'{name}.ring.gz'))


@pytest.mark.parametrize('replicas', [1, 2, 3])
def test_object_ring(tmp_path: Path, replicas: int) -> None:
    cluster = DevCluster(tmp_path, replicas=replicas)
    cluster.configure()
    ring = load_ring(cluster, 'object')
    assert ring.replica_count == replicas
    assert [(d['id'], d['port'], d['device'], d['zone']) for d in ring.devs] == [
        (d['id'], d['port'], d['device'], d['id'] + 1) for d in cluster.object_devices]
    for part in range(2 ** ring.part_power):
        devs = [row[part] for row in ring._replica2part2dev_id]
        assert len(set(devs)) == replicas
    for name in ('account', 'container'):
        assert load_ring(cluster, name).replica_count == 1


def test_rings_place_objects_the_same_way_every_start(tmp_path: Path) -> None:
    placements = []
    for run in ('a', 'b'):
        cluster = DevCluster(tmp_path / run)
        cluster.configure()                     # new free ports each time
        placements.append(load_ring(cluster, 'object')._replica2part2dev_id)
    assert placements[0] == placements[1]


@pytest.mark.parametrize('replicas, objects', [(0, 3), (4, 3), (1, 0)])
def test_bad_layouts_are_refused(tmp_path: Path, replicas: int, objects: int) -> None:
    with pytest.raises(ValueError):
        DevCluster(tmp_path, replicas=replicas, object_servers=objects)


def test_a_reused_pid_is_not_taken_for_a_server(tmp_path: Path) -> None:
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'proxy.pid').write_text(f'{os.getpid()}\n')     # alive, not ours
    assert DevCluster(tmp_path).running_servers() == {}


def test_default_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    assert devcluster.default_dir() == tmp_path / 'zerocloud' / 'devcluster'


def test_cli_without_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dir_opt = ['--dir', str(tmp_path)]
    assert main(['env', *dir_opt]) == 1
    assert 'no cluster running' in capsys.readouterr().err
    assert main(['status', *dir_opt]) == 1
    assert main(['stop', *dir_opt]) == 0
    assert 'no cluster running' in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        main(['start', *dir_opt, '--replicas', '4'])
    assert err.value.code == 2


def test_the_dir_may_come_before_the_command(tmp_path: Path, capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'default'))
    (tmp_path / 'first').mkdir()
    assert main(['--dir', str(tmp_path / 'first'), 'status']) == 1
    assert str(tmp_path / 'first') in capsys.readouterr().out
    assert main(['--dir', str(tmp_path / 'first'), 'status', '--dir', str(tmp_path)]) == 1
    assert capsys.readouterr().out == f'no cluster in {tmp_path}\n'


SLOW_SERVER = '''
import http.server, sys, time
start = time.process_time()
while time.process_time() - start < {cpu}:      # busy starting: CPU, not a clock
    pass
if {answer}:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
time.sleep(600)
'''


def _slow_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpu: float,
                 answer: bool) -> tuple[DevCluster, devcluster.Server]:
    """A cluster whose proxy is a stand-in that uses ``cpu`` seconds of CPU, then
    answers /healthcheck (or never does), waited for with a 0.2 s idle limit."""
    import subprocess
    import sys
    monkeypatch.setattr(devcluster, 'START_TIMEOUT', 0.2)
    cluster = DevCluster(tmp_path)
    server = devcluster.Server('proxy', 'proxy-server', devcluster.free_ports(1)[0])
    proc = subprocess.Popen([sys.executable, '-c', SLOW_SERVER.format(cpu=cpu, answer=answer),
                             str(server.port)])
    cluster._procs[proc.pid] = proc
    server.pid = proc.pid
    return cluster, server


def test_a_server_slow_to_start_is_waited_for_while_it_works(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # a loaded machine: starting takes longer than the idle limit, using CPU all along
    cluster, server = _slow_server(monkeypatch, tmp_path, cpu=1.0, answer=True)
    try:
        cluster._wait_healthy([server])
        assert devcluster.healthy(server.port)
    finally:
        cluster._procs[server.pid].kill()


def test_a_server_that_neither_works_nor_answers_fails_the_start(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cluster, server = _slow_server(monkeypatch, tmp_path, cpu=0, answer=False)
    try:
        with pytest.raises(devcluster.ServerStartError, match='and not running for 0 s'):
            cluster._wait_healthy([server])
    finally:
        cluster._procs[server.pid].kill()


@pytest.mark.parametrize(('text', 'parsed'), [
    ('object:zerovm_engine=emulated', ('object', None, 'zerovm_engine', 'emulated')),
    ('proxy:app:proxy-server:node_timeout = 5', ('proxy', 'app:proxy-server', 'node_timeout',
                                                 '5')),
    ('object1:zerovm_prewarm=python3:python3', ('object1', None, 'zerovm_prewarm',
                                                'python3:python3'))])
def test_restart_options_name_a_server_a_section_and_a_key(text: str, parsed: tuple) -> None:
    assert devcluster.parse_option(text) == parsed


@pytest.mark.parametrize('text', ['zerovm_timeout=5', 'proxy:zerovm_timeout', ':k=v',
                                  'proxy:=v', 'proxy:a\nb=c'])
def test_a_bad_restart_option_is_a_usage_error(text: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as err:
        main(['restart', '--dir', str(tmp_path), '--conf', text])
    assert err.value.code == 2
    assert 'expected SERVER:[SECTION:]KEY=VALUE' in capsys.readouterr().err


def test_restart_options_become_each_server_s_conf(configured: DevCluster) -> None:
    confs = configured._option_confs(['object:zerovm_timeout=5', 'object1:zerovm_timeout=6',
                                      'object1:app:object-server:workers=0',
                                      'account:app:account-server:workers=0'])
    assert sorted(confs) == ['account', 'object0', 'object1', 'object2']
    assert confs['object1'] == (devcluster.RESTART_HEADER + '[filter:zerocloud]\n'
                                'zerovm_timeout = 5\nzerovm_timeout = 6\n'
                                '[app:object-server]\nworkers = 0\n')
    with pytest.raises(devcluster.ClusterError, match='account has no zerocloud filter'):
        configured._option_confs(['account:workers=0'])
    with pytest.raises(devcluster.ClusterError, match="no server 'object9'"):
        configured._option_confs(['object9:zerovm_timeout=5'])
    with pytest.raises(devcluster.ClusterError, match=(    # was written, and never read
            r"object:app:object-sever:workers=0: object has no section \[app:object-sever\] "
            r"\(it has DEFAULT, app:object-server, filter:healthcheck, filter:zerocloud, "
            r"pipeline:main\)")):
        configured._option_confs(['object:app:object-sever:workers=0'])
    with pytest.raises(devcluster.ClusterError) as typo:    # said only 'no server'
        configured._option_confs(['objcet:zerovm_timeout=5'])
    assert str(typo.value).endswith("(proxy, account, container, object0, object1, object2; "
                                    "object: every object server)")


def test_restart_without_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(['restart', '--dir', str(tmp_path)]) == 1
    assert capsys.readouterr().err == (f'zerocloud-devcluster: no cluster running in '
                                       f'{tmp_path}: start it first\n')


def test_a_server_that_exits_while_its_tasks_are_listed_is_not_running(monkeypatch) -> None:
    # restart --conf with an option that stops the server: it exited while start
    # listed /proc/<pid>/task, and the command ended in a FileNotFoundError traceback
    def glob(self, pattern):
        raise FileNotFoundError(2, 'No such file or directory', str(self))
    monkeypatch.setattr(devcluster.Path, 'glob', glob)
    assert devcluster._runnable(os.getpid()) is False
    assert devcluster._child_pids(os.getpid()) == []


def test_a_failed_start_shows_what_this_start_logged(tmp_path: Path) -> None:
    # restart --conf object:zerovm_engin=x showed the 20 last lines of the log: 19 requests
    # of the last run, then the one that said "zerovm_engin: no such option"
    log = tmp_path / 'object0.log'
    log.write_text(''.join(f'object0: GET /obj{i} 200\n' for i in range(30)))
    since = log.stat().st_size
    with open(log, 'a') as f:
        f.write('zerovm_engin: no such option: did you mean zerovm_engine?\n')
    error = devcluster.ServerStartError('object0', 'exited with status 1', log, since)
    assert error.log_tail == 'zerovm_engin: no such option: did you mean zerovm_engine?'
    assert str(error).endswith(f'--- last lines of {log} ---\n{error.log_tail}')
    # a start that logged nothing: the last lines before it, rather than none
    assert devcluster.tail(log, lines=2, since=log.stat().st_size) == (
        'object0: GET /obj29 200\nzerovm_engin: no such option: did you mean zerovm_engine?')

"""The proxy filter refuses to start in front of the auth filter, naming the fix; each
filter refuses to start in the other server's pipeline.

Placed before ``tempauth`` (or ``keystoneauth``), the filter sees no
``swift.authorize`` and its sub-requests carry no token: every job of every
user was a 401 ``a valid token is needed``, which sent users to renew tokens
that were fine instead of the operator to the pipeline.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from swift.common.registry import get_swift_info
from swift.common.wsgi import ConfigFileError

from zerocloud.config import Config
from zerocloud.object import middleware as object_filter
from zerocloud.proxy import middleware as proxy_filter
from zerocloud.proxy.middleware import filter_factory

SAMPLE = Path(__file__).resolve().parents[2] / 'etc' / 'proxy-server.conf-sample'
ORDERED = ('bulk tempauth zerocloud container-quotas account-quotas slo proxy-logging '
           'proxy-server')


def conf_with(tmp_path: Path, pipeline: str, extra: str = '') -> str:
    text = SAMPLE.read_text().replace(ORDERED, pipeline) + extra
    path = tmp_path / 'proxy-server.conf'
    path.write_text(text)
    return str(path)


def test_the_sample_pipeline_starts(tmp_path: Path) -> None:
    assert ORDERED in SAMPLE.read_text()
    factory = filter_factory({'__file__': conf_with(tmp_path, ORDERED)})
    assert callable(factory)


@pytest.mark.parametrize('pipeline, auth, extra', [
    ('bulk zerocloud tempauth proxy-logging proxy-server', 'tempauth', ''),
    ('bulk zerocloud authtoken keystoneauth proxy-logging proxy-server', 'authtoken',
     '\n[filter:keystoneauth]\nuse = egg:swift#keystoneauth\n'
     '\n[filter:authtoken]\nuse = egg:swift#tempauth\n'),
    ('bulk zc keystone proxy-logging proxy-server', 'keystone',
     '\n[filter:keystone]\nuse = egg:swift#keystoneauth\n'
     '\n[filter:zc]\nuse = egg:zerocloud#zerocloud_proxy\n'),
])
def test_a_filter_before_auth_stops_the_server(tmp_path: Path, pipeline: str, auth: str,
                                                extra: str) -> None:
    with pytest.raises(ValueError) as e:
        filter_factory({'__file__': conf_with(tmp_path, pipeline, extra)})
    says = str(e.value)
    assert f'before {auth}' in says and 'move it after' in says
    assert 'before the quota filters' in says     # not after them: they would not see outputs
    assert 'operator-guide.md' in says


@pytest.mark.parametrize('pipeline, so', [
    ('bulk tempauth container-quotas zerocloud account-quotas slo proxy-logging proxy-server',
     'it would not see what jobs write'),
    ('bulk tempauth account-quotas slo zerocloud proxy-logging proxy-server',
     'it would not see what jobs write'),
    ('bulk tempauth keymaster encryption zerocloud proxy-logging proxy-server',
     'jobs would bypass it (a node would read ciphertext'),
])
def test_a_filter_that_must_see_jobs_before_the_filter_stops_the_server(
        tmp_path: Path, pipeline: str, so: str) -> None:
    # operator18: a quota before zerocloud never saw a job's writes (sub-requests to
    # the rest of the pipeline): outputs were stored past the quota, silently; nor did
    # encryption see them (outputs stored in clear, objects fetched as ciphertext)
    first = pipeline.split()[2]
    extra = ('\n[filter:keymaster]\nuse = egg:swift#keymaster\n'
             '\n[filter:encryption]\nuse = egg:swift#encryption\n')
    with pytest.raises(ConfigFileError) as e:
        filter_factory({'__file__': conf_with(tmp_path, pipeline, extra)})
    says = str(e.value)
    assert says.startswith(f'{first} comes before the zerocloud filter in the proxy pipeline, '
                           f'so {so}')
    assert f'move {first} after zerocloud' in says and 'operator-guide.md' in says


def test_a_bad_option_is_one_line_from_swifts_server_not_a_traceback(tmp_path: Path) -> None:
    # operator18: Swift's server printed our ValueError as a traceback, the option last;
    # a ConfigFileError it prints alone and exits 1 (--test-config: the same check)
    conf = tmp_path / 'object-server.conf'
    use = 'use = egg:zerocloud#zerocloud_object\n'
    conf.write_text(SAMPLE.with_name('object-server.conf-sample').read_text()
                    .replace(use, use + 'zerovm_engine = nativ\n')
                    .replace('swift_dir = /etc/swift', f'swift_dir = {tmp_path}')
                    .replace('devices = /srv/node', f'devices = {tmp_path}'))
    (tmp_path / 'swift.conf').write_text('[swift-hash]\nswift_hash_path_suffix = t\n')
    done = subprocess.run([sys.executable, '-c', 'import sys; from swift.common.wsgi import '
                           'run_wsgi; sys.exit(run_wsgi(sys.argv[1], "object-server", '
                           'test_config=True))', str(conf)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'Traceback' not in done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        'zerovm_engine: nativ: choose one of auto, native, emulated')


def test_each_filter_refuses_the_other_servers_pipeline(tmp_path: Path) -> None:
    # the object filter in a proxy answered every job 400 "execute requests go to /<device>/"
    proxy = conf_with(tmp_path, ORDERED.replace('zerocloud', 'zc'),
                      '\n[filter:zc]\nuse = egg:zerocloud#zerocloud_object\n')
    with pytest.raises(ValueError) as e:
        object_filter.filter_factory({'__file__': proxy})
    assert str(e.value) == (
        "egg:zerocloud#zerocloud_object is in the pipeline of this proxy server: it belongs in "
        "the object server's; here use egg:zerocloud#zerocloud_proxy (doc/operator-guide.md, "
        '"Where the filters go")')
    sample = SAMPLE.with_name('object-server.conf-sample').read_text()
    objects = tmp_path / 'object-server.conf'
    objects.write_text(sample.replace('egg:zerocloud#zerocloud_object',
                                      'egg:zerocloud#zerocloud_proxy'))
    with pytest.raises(ValueError, match='zerocloud_proxy is in the pipeline of this object'):
        filter_factory({'__file__': str(objects)})
    objects.write_text(sample)
    assert callable(object_filter.filter_factory({'__file__': str(objects)}))


def test_without_a_config_file_nothing_is_checked() -> None:
    assert callable(filter_factory({}))


def _swift(env, start_response):
    return []


def test_info_says_what_a_job_may_use(monkeypatch) -> None:
    # a client (or an operator checking the filter is in) reads the limits from /info
    monkeypatch.setattr(proxy_filter, 'settle_heap', lambda: None)
    filter_factory({'zerovm_maxnodes': '500',
                    'zerovm_sysimage_devices': 'python3 /p.tar lua /l.tar'})(_swift)
    info = get_swift_info()['zerocloud']
    assert (info['max_nodes'], info['system_images']) == (500, ['python3', 'lua'])
    assert info['max_job_size'] == 65536 and info['max_nexe'] == 256 << 20


def test_the_proxy_filter_parses_its_options_once(monkeypatch) -> None:
    # filter_factory parsed them (for /info), then the filter again
    parsed = []
    from_conf = Config.from_conf
    monkeypatch.setattr(Config, 'from_conf', lambda conf: parsed.append(conf) or from_conf(conf))
    monkeypatch.setattr(proxy_filter, 'settle_heap', lambda: None)
    filtered = filter_factory({'zerovm_maxnodes': '7'})(_swift)
    assert len(parsed) == 1 and filtered.config.max_nodes == 7
    with pytest.raises(ConfigFileError, match='zerovm_maxnodes: x: expected a whole number'):
        filter_factory({'zerovm_maxnodes': 'x'})(_swift)


def test_the_filter_after_the_server_fails_in_paste_as_the_guide_says(tmp_path: Path) -> None:
    # paste stops the server before any of our code runs (doc/operator-guide.md, "Where the
    # filters go", quotes its message): the guide's words must stay what operators see
    from swift.common.wsgi import loadapp
    conf = conf_with(tmp_path, ORDERED.replace('zerocloud ', '') + ' zerocloud')
    with pytest.raises(LookupError) as e:
        loadapp(conf)
    assert str(e.value).startswith("No section 'zerocloud' (prefixed by 'app' or ")
    guide = (SAMPLE.parents[1] / 'doc' / 'operator-guide.md').read_text()
    assert "`LookupError: No section 'zerocloud' (prefixed by 'app' or" in guide

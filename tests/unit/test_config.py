"""zerocloud.config: an operator's slip in a filter section stops the server, naming it."""

from __future__ import annotations

import pytest

from zerocloud.config import Config


def test_the_defaults_parse() -> None:
    config = Config.from_conf({})
    assert config.timeout > 0 and config.max_nodes == 100000


@pytest.mark.parametrize('conf, says', [
    ({'zerovm_maxpol': '4'}, 'zerovm_maxpol: no such option: did you mean zerovm_maxpool? '
                             '(doc/operator-guide.md)'),
    ({'zerovm_frobnicate': '1'}, 'zerovm_frobnicate: no such option (doc/operator-guide.md)'),
    # operator18: the options without zerovm_ took any typo silently
    ({'zapp_max_member': '5'}, 'zapp_max_member: no such option: did you mean '
                               'zapp_max_members? (doc/operator-guide.md)'),
    ({'zapp_frobnicate': '5'}, 'zapp_frobnicate: no such option (doc/operator-guide.md)'),
    ({'conn_timout': '1'}, 'conn_timout: no such option: did you mean conn_timeout? '
                           '(doc/operator-guide.md)'),
    ({'deferred_hearbeat': '5'}, 'deferred_hearbeat: no such option: did you mean '
                                 'deferred_heartbeat? (doc/operator-guide.md)'),
    ({'zerovm_timeout': '-1'}, 'zerovm_timeout: -1: expected a number of seconds above 0'),
    ({'zerovm_timeout': 'nan'}, 'zerovm_timeout: nan: expected a number of seconds above 0'),
    ({'deferred_heartbeat': '0'}, 'deferred_heartbeat: 0: expected a number of seconds above 0'),
    ({'interactive_timeout': '-1'},
     'interactive_timeout: -1: expected a number of seconds above 0'),
    ({'zerovm_engine': 'fast'}, 'zerovm_engine: fast: choose one of auto, native, emulated'),
    ({'zerovm_timeout': '60s'}, 'zerovm_timeout: 60s: expected a number of seconds above 0'),
    ({'zerovm_maxnexemem': '256M'}, 'zerovm_maxnexemem: 256M: expected a whole number above 0, '
     'written out without a unit (256 MiB is 268435456, 2x10^10 is 20000000000)'),
    ({'zerovm_fuel': '2e10'}, 'zerovm_fuel: 2e10: expected a whole number above 0, '
     'written out without a unit (256 MiB is 268435456, 2x10^10 is 20000000000)'),
    ({'zerovm_maxqueue': '-1'}, 'zerovm_maxqueue: -1: expected a whole number 0 or more, '
     'written out without a unit (256 MiB is 268435456, 2x10^10 is 20000000000)'),
    ({'zerovm_pipeline': 'maybe'}, 'zerovm_pipeline: maybe: expected true or false'),
    # newuser24: the server started, and every node was refused as the job's fault
    ({'zerovm_engine': 'native', 'zerovm_fuel': '100000000'},
     'zerovm_engine = native with zerovm_fuel = 100000000: the native engine counts no '
     'fuel, so every node would be refused; drop zerovm_fuel, or set zerovm_engine = auto '
     '(emulated when a fuel limit is set) or emulated'),
    # operator18: the proxy (which reads only the names) took a pair short of its path
    ({'zerovm_sysimage_devices': 'python3 /p.tar lua'},
     'zerovm_sysimage_devices: system images are "name path" pairs; \'lua\' has no path'),
])
def test_a_bad_option_is_refused_by_name(conf: dict, says: str) -> None:
    # a typo was ignored (the default stayed), a negative timeout timed every node out
    with pytest.raises(ValueError) as e:
        Config.from_conf(conf)
    assert str(e.value) == says


def test_a_fuel_limit_goes_with_an_engine_that_counts_it() -> None:
    for engine in ('auto', 'emulated'):
        assert Config.from_conf({'zerovm_engine': engine, 'zerovm_fuel': '1000'}).fuel == 1000
    assert Config.from_conf({'zerovm_engine': 'native'}).engine == 'native'


@pytest.mark.parametrize('word, value', [('true', True), ('Yes', True), ('off', False),
                                         ('0', False), (' on ', True), ('true ', True)])
def test_zerovm_pipeline_takes_swifts_words(word: str, value: bool) -> None:
    assert Config.from_conf({'zerovm_pipeline': word}).pipeline is value


def test_options_of_other_filters_are_left_alone() -> None:
    assert Config.from_conf({'log_name': 'x', 'use': 'egg:zerocloud#proxy'}).timeout > 0


def test_swifts_own_options_beside_ours_are_no_typos() -> None:
    # [DEFAULT] is merged into the section: Swift's timeouts are near ours, not that near
    config = Config.from_conf({'node_timeout': '10', 'client_timeout': '60', 'bind_timeout': '30',
                               'recoverable_node_timeout': '5', 'log_name': 'proxy',
                               'conn_timeout': '0.7', 'use': 'egg:zerocloud#zerocloud_proxy'})
    assert config.conn_timeout == 0.7

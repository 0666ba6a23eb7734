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
    ({'zerovm_timeout': '-1'}, 'zerovm_timeout: -1: expected a number of seconds above 0'),
    ({'zerovm_timeout': 'nan'}, 'zerovm_timeout: nan: expected a number of seconds above 0'),
    ({'deferred_heartbeat': '0'}, 'deferred_heartbeat: 0: expected a number of seconds above 0'),
    ({'zerovm_engine': 'fast'}, 'zerovm_engine: fast: choose one of auto, native, emulated'),
])
def test_a_bad_option_is_refused_by_name(conf: dict, says: str) -> None:
    # a typo was ignored (the default stayed), a negative timeout timed every node out
    with pytest.raises(ValueError) as e:
        Config.from_conf(conf)
    assert str(e.value) == says


def test_options_of_other_filters_are_left_alone() -> None:
    assert Config.from_conf({'log_name': 'x', 'use': 'egg:zerocloud#proxy'}).timeout > 0

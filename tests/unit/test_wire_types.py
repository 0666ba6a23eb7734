"""The node spec as types: what the proxy builds is what the object server reads."""

from __future__ import annotations

import json

import pytest

from zerocloud import wire


def test_a_spec_survives_the_wire() -> None:
    node = wire.NodeSpec(
        'map-1', ['python3', '/dev/script'], {'LOCAL_OBJECT': 'on'},
        (wire.DeviceSpec('stdin', 'r', True, 'local'), wire.DeviceSpec('in/a', 'r', source='link'),
         wire.DeviceSpec('out/b', 'w', put_size=10), wire.DeviceSpec('python3', 'r', True)),
        wire.NodeLimits(1 << 20, 5, 1.5), outputs=False, stream=True,
        program=('python3', 'python3'))
    assert wire.NodeSpec.from_json(node.to_json()) == node
    assert node.device('out/b').writable and node.device('nothing') is None
    sent = json.loads(node.to_json())
    assert sent['program'] == {'image': 'python3', 'member': 'python3'}
    assert sent['limits'] == {'memory': 1 << 20, 'fuel': 5, 'timeout': 1.5}


def test_unset_parts_keep_their_defaults() -> None:
    node = wire.NodeSpec.from_json(b'{"name": "n", "argv": ["n"]}')
    assert node == wire.NodeSpec('n', ['n'])
    assert node.limits == wire.NodeLimits() and node.program is None and node.outputs


@pytest.mark.parametrize(('data', 'why'), [
    (b'[1]', 'not a JSON object'),
    (b'{"name": 1, "argv": ["x"]}', 'expected a string'),
    (b'{"name": "n", "argv": [1]}', 'argv and env must be strings'),
    (b'{"name": "n", "devices": [{"name": "x", "access": "rw"}]}', "access 'rw'"),
    (b'{"name": "n", "devices": [{"access": "r"}]}', 'KeyError'),
    (b'{"name": "n", "limits": {"fuel": "lots"}}', 'ValueError'),
    (b'{"name": "n", "program": {"image": "py"}}', 'KeyError'),
    (b'not json', 'JSONDecodeError'),
])
def test_a_bad_spec_is_one_error_that_says_why(data: bytes, why: str) -> None:
    with pytest.raises(wire.SpecError, match=why):
        wire.NodeSpec.from_json(data)
    assert issubclass(wire.SpecError, wire.WireError)

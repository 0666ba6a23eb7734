"""Property tests of zerocloud's parsers of what users (and peers) send (issue 15).

Each parser has its documented error types, and nothing else may escape
(anything else would be a 500 or a dead request): the job description
(``parse_job``) raises ``JobError``; the node spec (``NodeSpec.from_json``)
``SpecError`` and the node's tar stream (``read_members``) ``WireError``; the
zapp reader (``gunzip``, ``system_map``, ``member``) swob's 400 and 413.
Inputs are random bytes, random JSON, and mutations of valid inputs, so
that the checks past the first one are reached.  Bounded and derandomized,
as tests/unit/test_parsers_fuzz.py.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import tarfile

from archives import zapp_member
from hypothesis import given
from hypothesis import strategies as st
from swift.common.swob import HTTPException
from test_parsers_fuzz import CUT, EDITS, FUZZ, mutate

from zerocloud import wire, zapp
from zerocloud.job import DEVICE_KEYS, EXEC_KEYS, GROUP_KEYS, JobError, parse_job
from zerocloud.zapp_format import GZIP_MAGIC

JOB = [
    {'name': 'wc', 'exec': {'path': 'swift://~/c/wc', 'args': ['-l', 'x y'],
                            'env': {'LANG': 'C'}, 'ok_exit': [0, 1]},
     'devices': [{'name': 'stdin', 'path': 'swift://~/c/data*'},
                 {'name': 'stdout', 'path': 'swift://~/c/out/*.txt', 'content_type': 'text/plain',
                  'meta': {'kind': 'count'}},
                 {'name': 'python3'}],
     'count': 1, 'connect': ['sum'], 'replicate': 2, 'engine': 'auto'},
    {'name': 'sum', 'exec': {'path': 'file://python3:python3', 'args': '-c pass'},
     'devices': [{'name': 'stdout', 'path': 'swift://AUTH_a/c/total', 'store': 'always'},
                 {'name': 'input', 'path': 'swift://~/c/in', 'mode': 'file', 'min_size': 1}],
     'count': 2, 'attach': 'stdout'},
]

# Leaves as users write them, and the ones that break conversions: Infinity, NaN,
# integers no float holds, negative and huge sizes, control characters.
EDGES = st.sampled_from([float('inf'), -float('inf'), float('nan'), 10 ** 400, -1, 0, 1 << 64,
                         '', '\x00', '\n', '..', '/', '*', 'swift://', 'file://', '\udcff'])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | EDGES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=16)
KEYS = st.sampled_from(GROUP_KEYS + EXEC_KEYS + DEVICE_KEYS) | st.text(max_size=8)


def mutate_json(obj: object, steps: list[int], key: str, value: object, action: str) -> object:
    """``obj`` with one change at the container ``steps`` lead to: a child
    replaced, a key set, or a child deleted."""
    obj = copy.deepcopy(obj)
    node = obj
    for step in steps:
        children = list(node.values() if isinstance(node, dict) else node)
        containers = [c for c in children if isinstance(c, (dict, list)) and c]
        if not containers:
            break
        node = containers[step % len(containers)]
    if isinstance(node, dict):
        keys = list(node)
        target = key if action == 'set' or not keys else keys[len(key) % len(keys)]
    else:
        target = len(key) % len(node) if node else None
    if target is None:
        node.append(value)
    elif action == 'delete':
        del node[target]
    else:
        node[target] = value
    return obj


def check_job(data: object) -> None:
    try:
        groups = parse_job(data, 'AUTH_a', system_images=('python3',), max_size=4096)
    except JobError as e:
        assert str(e)
        return
    assert groups


def test_the_job_to_mutate_is_valid() -> None:
    assert [g.name for g in parse_job(JOB, 'AUTH_a', system_images=('python3',))] == ['wc', 'sum']


@FUZZ
@given(st.binary(max_size=512) | st.text(max_size=512))
def test_job_random_text(data):
    check_job(data)


@FUZZ
@given(JSON)
def test_job_random_json(value):
    check_job(value)
    check_job(json.dumps(value))
    check_job([value])


@FUZZ
@given(steps=st.lists(st.integers(0, 7), max_size=4), key=KEYS, value=JSON,
       action=st.sampled_from(['replace', 'set', 'delete']))
def test_job_mutations(steps, key, value, action):
    job = mutate_json(JOB, steps, key, value, action)
    check_job(job)
    check_job(json.dumps(job))


@FUZZ
@given(key=st.sampled_from(['count', 'replicate', 'exec.ok_exit', 'devices.min_size',
                            'devices.meta', 'exec.args', 'exec.env', 'name', 'connect']),
       value=EDGES, depth=st.integers(0, 2000))
def test_job_edges(key, value, depth):
    """Each value of the job given an edge (Infinity, NaN, 10**400, control
    characters...), alone and in a list; JSON nested deeply."""
    for edge in (value, [value], {'K': value}):
        job = copy.deepcopy(JOB)
        outer, _, inner = key.rpartition('.')
        (job[0]['devices'][1] if outer == 'devices' else job[0][outer] if outer
         else job[0])[inner] = edge
        check_job(job)
        check_job(json.dumps(job))
    check_job('[' * depth + ']' * depth)


@FUZZ
@given(edits=EDITS, cut=CUT)
def test_job_byte_mutations(edits, cut):
    text = json.dumps(JOB).encode()
    check_job(mutate(text, [(pos % len(text), value) for pos, value in edits], cut))


# -- the wire: node spec and tar stream -----------------------------------------------------------

SPEC = wire.NodeSpec(
    name='wc', argv=['wc', '-l'], env={'A': 'b'},
    devices=(wire.DeviceSpec('stdin', source='local'), wire.DeviceSpec('stdout', 'w', put_size=9),
             wire.DeviceSpec('in/sum', source='link', random=True)),
    limits=wire.NodeLimits(memory=1 << 20, fuel=10, timeout=1.5), seed=3, epoch=4,
    stream=True, program=('python3', 'bin/python3'), engine='native')


def check_spec(data: bytes) -> None:
    try:
        spec = wire.NodeSpec.from_json(data)
    except wire.SpecError as e:
        assert str(e)
        return
    assert isinstance(spec, wire.NodeSpec)


def test_the_spec_to_mutate_round_trips() -> None:
    assert wire.NodeSpec.from_json(SPEC.to_json()) == SPEC


@FUZZ
@given(key=st.sampled_from(['seed', 'epoch', 'limits.memory', 'limits.fuel', 'limits.timeout',
                            'devices.put_size']), value=EDGES, depth=st.integers(0, 1 << 14))
def test_spec_edges(key, value, depth):
    """Each number of the spec given Infinity, NaN or 10**400; JSON nested deeply."""
    obj = json.loads(SPEC.to_json())
    outer, _, inner = key.rpartition('.')
    if outer == 'devices':
        obj['devices'][0][inner] = value
    else:
        (obj[outer] if outer else obj)[inner] = value
    check_spec(json.dumps(obj).encode())
    check_spec(b'[' * depth + b']' * depth)


@FUZZ
@given(st.binary(max_size=512))
def test_spec_random_bytes(data):
    check_spec(data)


@FUZZ
@given(JSON)
def test_spec_random_json(value):
    check_spec(json.dumps(value).encode())


@FUZZ
@given(steps=st.lists(st.integers(0, 7), max_size=3),
       key=st.sampled_from(sorted(json.loads(SPEC.to_json()))) | st.text(max_size=8),
       value=JSON, action=st.sampled_from(['replace', 'set', 'delete']))
def test_spec_mutations(steps, key, value, action):
    check_spec(json.dumps(mutate_json(json.loads(SPEC.to_json()), steps, key, value,
                                      action)).encode())


STREAM = b''.join(wire.stream_tar([
    wire.bytes_member(wire.SPEC, SPEC.to_json()),
    wire.bytes_member('dev/stdin', b'hello\n' * 100),
    wire.bytes_member('part/in/' + 'n\u00e9' * 80, b'long, non-ASCII name'),   # PAX
]))


def check_stream(data: bytes) -> None:
    try:
        for _name, member in wire.read_members(io.BytesIO(data), wire.SPEC):
            member.read(7)
    except wire.WireError as e:
        assert str(e)


def test_the_stream_to_mutate_is_read() -> None:
    names = [name for name, _f in wire.read_members(io.BytesIO(STREAM), wire.SPEC)]
    assert names == [wire.SPEC, 'dev/stdin', 'part/in/' + 'n\u00e9' * 80]


@FUZZ
@given(data=st.binary(max_size=2048), edits=EDITS, cut=CUT)
def test_stream_random_and_mutated(data, edits, cut):
    check_stream(data)
    check_stream(mutate(STREAM, [(pos % len(STREAM), value) for pos, value in edits], cut))


# -- zapps ----------------------------------------------------------------------------------------

def _zapp() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for name, data in (('boot/system.map', json.dumps(JOB).encode()),
                           ('./bin/wc', b'\x7fELF' * 10)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ZAPP = _zapp()
LIMITS = zapp.Limits(members=20, size=1 << 16, ratio=50)


def check_zapp(data: bytes) -> None:
    f = io.BytesIO()
    try:
        if data.startswith(GZIP_MAGIC):
            zapp.gunzip(io.BytesIO(data), f, LIMITS.size, 'the zapp', LIMITS.ratio)
        else:
            f.write(data)
        job = zapp.system_map(f, 4096, 'the zapp', LIMITS.members)
        program = zapp_member(f, 'bin/wc', 4096, 'the zapp', LIMITS.members)
    except HTTPException as e:
        assert e.status_int in (400, 413) and e.body.endswith(b'\n')
        return
    assert isinstance(job, bytes) and isinstance(program, bytes)


def test_the_zapp_to_mutate_is_read() -> None:
    f = io.BytesIO(ZAPP)
    assert json.loads(zapp.system_map(f, 4096, 'the zapp')) == JOB
    assert zapp_member(f, 'bin/wc', 4096, 'the zapp') == b'\x7fELF' * 10


@FUZZ
@given(st.binary(max_size=2048))
def test_zapp_random_bytes(data):
    check_zapp(data)
    check_zapp(GZIP_MAGIC + data)


@FUZZ
@given(edits=EDITS, cut=CUT, gzipped=st.booleans())
def test_zapp_mutations(edits, cut, gzipped):
    data = gzip.compress(ZAPP, mtime=0) if gzipped else ZAPP
    check_zapp(mutate(data, [(pos % len(data), value) for pos, value in edits], cut))

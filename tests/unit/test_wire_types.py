"""The wire as types: the node spec and report one side builds are what the other reads."""

from __future__ import annotations

import collections
import io
import json
import re
import tarfile
from dataclasses import replace

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


def test_a_batch_entry_survives_the_wire() -> None:
    spec = wire.NodeSpec('wc-7', ['wc'], devices=(wire.DeviceSpec('stdin', source='local'),),
                         local_env=True)
    entry = wire.BatchEntry('sda1', 12, '/AUTH_a/c/o 7', spec)
    assert wire.BatchEntry.from_json(entry.to_json()) == entry
    assert wire.NodeSpec.from_json(wire.NodeSpec('n', ['n']).to_json()).local_env is False


def test_a_batch_entry_sends_only_what_differs_from_the_shared_spec() -> None:
    """With ``batch/spec``, a wildcard's entry carries its name alone; any other field
    that differs (one the shared spec has and the node's leaves out: null) travels
    too, and the node gets exactly its own spec back."""
    base = wire.NodeSpec('wc-1', ['wc'], {'A': '1'}, (wire.DeviceSpec('stdin', source='local'),),
                         wire.NodeLimits(memory=1 << 20), engine='native', local_env=True)
    shared = wire.SharedSpec.from_json(wire.SharedSpec(base).to_json())
    assert shared.spec == base
    others = [replace(base, name='wc-2'), base,
              replace(base, name='x', env={'A': '2'}, engine=None, seed=3),
              replace(base, devices=(wire.DeviceSpec('stdin', source='local', put_size=5),))]
    for spec in others:
        entry = wire.BatchEntry('sda1', 12, '/AUTH_a/c/o 7', spec)
        data = entry.to_json(shared)
        assert b'"spec"' not in data
        assert wire.BatchEntry.from_json(data, shared) == entry
    assert json.loads(wire.BatchEntry('d', 1, '/a/c/o', others[0]).to_json(shared))[
        'set'] == {'name': 'wc-2'}


def test_an_entry_read_with_the_shared_spec_is_a_spec_like_any_other() -> None:
    """An entry that sets only its name is made without the dataclasses' ``__init__``
    (``wire._frozen``): still equal, alike in hash and repr, and frozen; a name with
    characters beyond ASCII reads back as sent."""
    import dataclasses
    base = wire.NodeSpec('wc-1', ['wc'], {'A': '1'}, (wire.DeviceSpec('stdin', source='local'),),
                         wire.NodeLimits(memory=1 << 20), local_env=True)
    shared = wire.SharedSpec(base)
    entry = wire.BatchEntry('sda1', 3, '/a/c/é 1', replace(base, name='wc-é'))
    read = wire.BatchEntry.from_json(entry.to_json(shared), shared)
    assert read == entry and repr(read) == repr(entry) and read.spec.name == 'wc-é'
    assert hash(read.spec.limits) == hash(entry.spec.limits)
    with pytest.raises(dataclasses.FrozenInstanceError):
        read.spec.name = 'other'
    with pytest.raises(dataclasses.FrozenInstanceError):
        read.object = '/a/c/other'
    assert shared.spec.name == 'wc-1'               # the shared one is left as it was
    with pytest.raises(wire.SpecError, match='UnicodeDecodeError'):
        wire.BatchEntry.from_json(b'{"device": "\xff"}', shared)


@pytest.mark.parametrize('changes', [
    {'name': 'wc-2', 'argv': ['wc-2'], 'env': {'SCRIPT_NAME': 'wc-2', 'A': '1'}},
    {'argv': ['x', 'y']}, {'env': {}}, {'argv': None}, {'argv': [], 'name': 'n2'},
    {'env': None, 'argv': ['z']}, {'argv': 'abc'}, {'env': [['A', '1']]}, {'argv': 5},
    {'argv': [1]}, {'env': {'A': 1}}, {'name': None, 'argv': None}, {'name': 3, 'env': {}},
])
def test_a_wildcard_nodes_own_name_argv_and_env_read_as_a_whole_spec(changes: dict) -> None:
    """An entry that sets its name, argv and env (a wildcard's node: its argv[0] and
    SCRIPT_NAME are its name) reads back as the whole spec merged would, and with
    the same error for a bad value; a good one shares the shared spec's limits."""
    base = wire.NodeSpec('wc-1', ['wc-1'], {'SCRIPT_NAME': 'wc-1', 'A': '1'},
                         (wire.DeviceSpec('stdin', source='local'),),
                         wire.NodeLimits(memory=1 << 20), engine='native', local_env=True)
    shared = wire.SharedSpec(base)
    try:
        whole = wire.NodeSpec.from_obj({**shared.obj, **changes})
    except wire.SpecError as e:
        with pytest.raises(wire.SpecError, match=re.escape(str(e))):
            shared.with_set(changes)
        return
    spec = shared.with_set(changes)
    assert spec == whole and repr(spec) == repr(whole)
    if type(changes.get('argv', [])) is list and type(changes.get('env', {})) is dict:
        assert spec.limits is base.limits and spec.devices is base.devices
    assert shared.spec_size(spec) == len(spec.to_json())
    assert shared.spec == base


@pytest.mark.parametrize('changes', [
    {'name': 'n'}, {'name': 'n', 'argv': []}, {'argv': [], 'name': '\U0001f600' * 9},
    {'name': '\x01"\\', 'argv': ['\x02', '', '\u20ac' * 5], 'env': {'\x03': '\u00e9', '': ''}},
    {'name': '\ud800', 'argv': [], 'env': {'K': '\U0001f600\x1f'}},
])
def test_a_wildcard_entrys_spec_grows_by_at_most_the_growth_of_its_json(
        changes: dict) -> None:
    """What ``SharedSpec.fits`` counts on: a node's spec that sets its name, argv and
    env alone is larger than the shared one's by at most ``ENTRY_GROWTH`` times its
    entry's JSON, written as short as a sender may (no escapes, no spaces), with
    characters a spec escapes to 6 or 12 bytes and an argv left empty (its name again)."""
    shared = wire.SharedSpec(wire.NodeSpec('n0', [], {}, (wire.DeviceSpec('stdin'),)))
    entry = json.dumps({'device': 'd', 'partition': 0, 'object': '/a/c/o', 'set': changes},
                       ensure_ascii=False, separators=(',', ':')).encode('utf-8', 'surrogatepass')
    [got] = wire.read_entries(b'[' + entry + b']', shared)
    grown = len(got.spec.to_json()) - len(shared.to_json())
    assert grown <= wire.ENTRY_GROWTH * len(entry)
    assert shared.spec_size(got.spec) == len(got.spec.to_json())
    assert shared.fits(len(entry)) is (len(shared.to_json()) + wire.ENTRY_GROWTH * len(entry)
                                       <= wire.SPEC_LIMIT)


@pytest.mark.parametrize(('data', 'why'), [
    (b'[1]', 'batch entry: not a JSON object'),
    (b'{"device": "d", "partition": 1, "object": "/a/c"}', 'is not /<a>/<c>/<o>'),
    (b'{"device": "d", "partition": -1, "object": "/a/c/o", "spec": {}}', 'partition -1'),
    (b'{"device": "..", "partition": 1, "object": "/a/c/o", "spec": {}}', "device '..'"),
    (b'{"device": "d", "partition": 1, "object": "/a/c/o"}', 'no spec, and no batch/spec'),
    (b'{"device": "d", "partition": 1, "object": "/a/c/o", "spec": [1]}',
     'node spec: not a JSON object'),
    (b'not json', 'JSONDecodeError'),
])
def test_a_bad_batch_entry_is_one_error_that_says_why(data: bytes, why: str) -> None:
    with pytest.raises(wire.SpecError, match=why):
        wire.BatchEntry.from_json(data)


@pytest.mark.parametrize(('data', 'why'), [
    (b'{"device": "d", "partition": 1, "object": "/a/c/o", "set": [1]}', 'is not a JSON object'),
    (b'{"device": "d", "partition": 1, "object": "/a/c/o", "set": {"name": 1}}',
     'expected a string'),
    (b'{"device": "d", "partition": 1, "object": "/a/c/o", "set": {"seed": "x"}}',
     'node spec: ValueError'),
])
def test_a_bad_change_of_the_shared_spec_is_one_error_that_says_why(data: bytes,
                                                                   why: str) -> None:
    shared = wire.SharedSpec(wire.NodeSpec('n', ['n']))
    with pytest.raises(wire.SpecError, match=why):
        wire.BatchEntry.from_json(data, shared)


def test_batch_entries_travel_as_one_member_in_order() -> None:
    """``batch/entries``: a block of entries as one JSON array, each as a ``batch/<i>``
    member's entry was (what differs from ``batch/spec``, or a whole spec), read back
    in order; the member is the plain tar member of that array."""
    base = wire.NodeSpec('wc-1', ['wc'], {'A': '1'}, (wire.DeviceSpec('stdin', source='local'),),
                         local_env=True)
    shared = wire.SharedSpec(base)
    entries = [wire.BatchEntry('sda1', i, f'/a/c/o é{i}', replace(base, name=f'wc-{i}'))
               for i in range(5)]
    entries.append(wire.BatchEntry('sdb1', 9, '/a/c/x', replace(base, env={'A': '2'}, seed=4)))
    member = wire.entries_member([e.to_json(shared) for e in entries])
    assert member == wire.tar_member(wire.BATCH_ENTRIES, member[512:].rstrip(b'\0'))
    read = [(name, wire.read_entries(f.read(), shared))
            for name, f in wire.read_members(io.BytesIO(member + wire.TAR_END), None)]
    assert read == [('batch/entries', entries)]
    whole = wire.entries_member([entries[0].to_json()])[512:].rstrip(b'\0')
    assert wire.read_entries(whole, None) == entries[:1]     # a whole spec needs no batch/spec
    assert wire.read_entries(b'[]', shared) == []


@pytest.mark.parametrize(('data', 'why'), [
    (b'{"device": "d"}', 'batch/entries: not a JSON array'),
    (b'[1]', 'batch entry: not a JSON object'),
    (b'[{"device": "d", "partition": 1, "object": "/a/c"}]', 'is not /<a>/<c>/<o>'),
    (b'[{"device": "d", "partition": 1, "object": "/a/c/o", "set": {"name": 2}}]',
     'expected a string'),
    (b'[{"device": "d"', 'batch/entries: JSONDecodeError'),
    (b'["\xff"]', 'batch/entries: UnicodeDecodeError'),
])
def test_a_bad_batch_entries_member_is_one_error_that_says_why(data: bytes, why: str) -> None:
    with pytest.raises(wire.SpecError, match=why):
        wire.read_entries(data, wire.SharedSpec(wire.NodeSpec('n', ['n'])))


def test_a_report_survives_the_wire() -> None:
    report = wire.NodeReport(
        'ok', 3, 'exited', 'cached', [{'address': 4096, 'reason': 'x'}],
        {'/dev/stdout': 'a' * 32}, 'ok', 'native',
        {'fuel': 7, 'syscalls': 2, 'channels': {'/dev/stdin': {'read_bytes': 5},
                                                '/dev/stdout': {'write_bytes': 4,
                                                                'read_bytes': 1}}},
        'the end of stderr\n')
    assert wire.NodeReport.from_json(report.to_json()) == report
    why = 'the memory etag digests the guest memory after the run'
    emulated = wire.NodeReport('ok', 0, engine='emulated', engine_reason=why)
    assert json.loads(emulated.to_json())['engine_reason'] == why
    assert wire.NodeReport.from_json(emulated.to_json()) == emulated
    assert json.loads(report.to_json())['validation'] == {
        'state': 'cached', 'violations': [{'address': 4096, 'reason': 'x'}]}
    assert report.channel_bytes() == (6, 4)
    host = wire.NodeReport('killed', message='sandbox worker died', host_failure=True)
    assert wire.NodeReport.from_json(host.to_json()).host_failure is True


def test_a_short_report_keeps_the_defaults() -> None:
    report = wire.NodeReport.from_json(b'{"status": "killed"}')
    assert report == wire.NodeReport('killed')
    assert report.retcode is None and report.validation is None and report.etags == {}
    assert report.engine_reason == ''       # a server that does not send it
    assert report.host_failure is False
    assert report.channel_bytes() == (0, 0)


@pytest.mark.parametrize(('data', 'why'), [
    (b'"ok"', 'not a JSON object'),
    (b'{}', 'no status'),
    (b'{"status": 1}', 'expected a string'),
    (b'{"status": "ok", "retcode": "0"}', "retcode '0' is not an integer"),
    (b'{"status": "ok", "retcode": true}', 'retcode True is not an integer'),
    (b'{"status": "killed", "host_failure": 1}', 'host_failure 1 is not a boolean'),
    (b'{"status": "ok", "etags": {"/dev/stdout": 1}}', 'etags must map strings'),
    (b'{"status": "ok", "accounting": []}', 'accounting must be a JSON object'),
    (b'{"status": "ok", "accounting": {"channels": {"/dev/x": 1}}}', 'its channels too'),
    (b'{"status": "ok", "validation": {"violations": "x"}}', 'violations must be a list'),
    (b'{"status": "ok", "validation": "ok"}', "validation 'ok' is not a JSON object"),
    (b'{"status": "ok", "stderr": "\xff"}', 'UnicodeDecodeError'),
    (b'{"status": "ok", "engine": 2}', 'expected a string'),
    (b'{"status": "ok", "engine_reason": ["x"]}', 'expected a string'),
    (b'{"status": "ok', 'JSONDecodeError'),
])
def test_a_bad_report_is_one_error_that_says_why(data: bytes, why: str) -> None:
    with pytest.raises(wire.ReportError, match=why):
        wire.NodeReport.from_json(data)
    assert issubclass(wire.ReportError, wire.WireError)


@pytest.mark.parametrize('name, size', [
    ('0/report', 5), ('511/dev/stdout', 1 << 20), ('spec', 0), ('x' * 100, 3),
    ('x' * 101, 3), ('dev/é', 1), ('big', 8 ** 11 - 1), ('bigger', 8 ** 11)])
def test_member_headers_are_the_bytes_tarfile_writes(name: str, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    assert wire.member_header(name, size) == info.tobuf(format=tarfile.PAX_FORMAT)


class _Arriving:
    """A response whose ``read1`` returns what has arrived: ``pieces`` in turn."""

    def __init__(self, data: bytes, piece: int) -> None:
        # a deque: 260,000 one-byte pieces popped from a list's front took 9 s
        self.pieces = collections.deque(data[i:i + piece] for i in range(0, len(data), piece))
        self.calls = 0

    def read1(self, n: int) -> bytes:
        self.calls += 1
        if not self.pieces:
            return b''
        piece = self.pieces.popleft()
        if len(piece) > n:
            self.pieces.appendleft(piece[n:])
        return piece[:n]


@pytest.mark.parametrize('piece', [1, 7, 512, 3000, 1 << 20])
def test_members_read_ahead_are_the_members_sent(piece: int) -> None:
    """``ReadAhead`` serves a batch answer's small reads from what arrived: the same
    members, whatever the pieces, and one ``read1`` for many of them."""
    members = [(f'{i}/report.json', b'{"status": "ok"}' * (i % 3)) for i in range(40)]
    members.append(('40/dev/stdout', bytes(range(256)) * 1000))    # read in large reads
    data = b''.join(wire.stream_tar([wire.bytes_member(n, d) for n, d in members]))
    resp = _Arriving(data, piece)
    got = [(name, f.read()) for name, f in wire.read_members(wire.ReadAhead(resp), None)]
    assert got == members
    assert resp.calls <= -(-len(data) // piece) + 2        # each piece read once, whole


@pytest.mark.parametrize('fmt', [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_headers_read_here_are_those_tarfile_reads(fmt: int) -> None:
    """Plain ustar headers are read without ``tarfile`` (``wire._header``); the
    same names and sizes as ``tarfile``'s, any format, and a header that does not
    add up is refused."""
    import io
    names = ['0/report.json', 'x' * 100, '511/dev/stdout', 'dev/é', 'a' * 99 + '/b' * 40]
    if fmt != tarfile.PAX_FORMAT:       # long names: PAX records (the wire's) only
        names = names[:4]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=fmt) as tar:
        for i, name in enumerate(names):
            info = tarfile.TarInfo(name)
            info.size = 3 * i
            tar.addfile(info, io.BytesIO(b'abc' * i))
    got = [(name, f.read()) for name, f in wire.read_members(io.BytesIO(buf.getvalue()), None)]
    assert got == [(name, b'abc' * i) for i, name in enumerate(names)]
    bad = bytearray(wire.member_header('0/report.json', 5))
    bad[0] ^= 1                                     # the checksum no longer adds up
    with pytest.raises(wire.WireError, match='checksum'):
        list(wire.read_members(io.BytesIO(bytes(bad) + bytes(1024)), None))


# -- batch/reports blocks ------------------------------------------------------------------

NAMES = {'report': ('status', 'retcode', 'message', 'validation', 'etags', 'accounting',
                    'exit_state', 'engine', 'engine_reason', 'host_failure', 'stderr'),
         'accounting': ('fuel', 'syscalls', 'channels', 'wall_time'),
         'channel': ('reads', 'read_bytes')}


def block_data(member: bytes) -> bytes:
    _, f = next(wire.read_members(io.BytesIO(member + wire.TAR_END), wire.REPORTS))
    return f.read()


def test_a_reports_block_carries_reports_outputs_and_errors_as_the_old_members_did() -> None:
    """The rows of a block are read into the reports ``report.json`` would have given
    (keys from the block's names, validation and accounting made whole again), with
    each node's outputs cut from the data after the head, and a node not run as the
    text of its ``<i>/error``."""
    block = wire.ReportsBlock(NAMES)
    values = ['ok', 0, '', ['cached', []], {'/dev/stdout': 'e' * 32},
              [7, 9, [['/dev/stdin', 2, 1024], ['/dev/stdout', 0, 0]], 0.5], '', 'native', '',
              False, 'end of stderr\n']
    block.add(3, values, [('stdout', b'1 2 6\n'), ('out/x', b'')])
    block.error(5, '404 /a/c/o is not on this server')
    block.add(0, ['fault', None, 'segv', [None, []], {}, [0, 0, [], 0.0], 'Signal 11',
                  'native', '', False, ''], [('stdout', b'\0' * 700)])
    results = wire.read_reports(block_data(block.member()))
    assert not block.rows and not block.outputs and block.size == 0       # empty again
    assert [(i, outputs) for i, _, outputs in results] == [
        (3, {'stdout': b'1 2 6\n', 'out/x': b''}), (5, {}), (0, {'stdout': b'\0' * 700})]
    assert results[1][1] == '404 /a/c/o is not on this server'
    assert results[0][1] == wire.NodeReport(
        'ok', 0, validation='cached', etags={'/dev/stdout': 'e' * 32}, engine='native',
        accounting={'fuel': 7, 'syscalls': 9, 'wall_time': 0.5, 'channels': {
            '/dev/stdin': {'reads': 2, 'read_bytes': 1024},
            '/dev/stdout': {'reads': 0, 'read_bytes': 0}}}, stderr='end of stderr\n')
    assert results[2][1].status == 'fault' and results[2][1].validation is None
    assert results[2][1].channel_bytes() == (0, 0)


def test_a_reports_block_names_fields_a_reader_does_not_know_or_leaves_out() -> None:
    """A server whose report has a field more (a newer sandbox) or less: the reader
    takes the fields it knows by name, the defaults for the others."""
    block = wire.ReportsBlock({'report': ('later', 'status', 'retcode'), 'accounting': (),
                               'channel': ()})
    block.add(1, [{'x': 1}, 'ok', 0], [])
    [(index, report, outputs)] = wire.read_reports(block_data(block.member()))
    assert (index, outputs) == (1, {}) and report == wire.NodeReport('ok', 0)


def test_a_reports_block_is_full_at_its_node_count_or_size(monkeypatch) -> None:
    monkeypatch.setattr(wire, 'REPORTS_NODES', 3)
    block = wire.ReportsBlock(NAMES)
    for i in range(2):
        block.error(i, '503 Slot not available')
    assert not block.full
    block.error(2, '503 Slot not available')
    assert block.full
    block.member()
    block.add(0, [], [('stdout', bytes(wire.REPORTS_BYTES - 300))])
    assert not block.full
    block.add(1, [], [('stdout', b'x' * 300)])
    assert block.full
    block.member()
    block.add(0, ['ok', 'a long stderr' * (wire.REPORTS_BYTES // 13)], [])   # reports count
    assert block.full


@pytest.mark.parametrize(('data', 'why'), [
    (b'{"names": {}, "nodes": []}', 'no newline'),
    (b'[]\n', 'TypeError'),
    (b'{"names": {"report": [1], "accounting": [], "channel": []}, "nodes": []}\n',
     'lists of strings'),
    (b'{"names": {"report": ["status"], "accounting": [], "channel": []}, "nodes": {}}\n',
     'nodes must be a list'),
    (b'{"names": {"report": ["status"], "accounting": [], "channel": []},'
     b' "nodes": [[0, 5]]}\n', 'bad node'),
    (b'{"names": {"report": ["status"], "accounting": [], "channel": []},'
     b' "nodes": [[0, ["ok", 1], []]]}\n', 'bad report'),
    (b'{"names": {"report": ["status"], "accounting": [], "channel": []},'
     b' "nodes": [[0, ["ok"], [["stdout", 5]]]]}\nabc', 'bad output'),
    (b'{"names": {"report": ["status"], "accounting": [], "channel": []},'
     b' "nodes": [[0, ["ok"], [["stdout", 2]]]]}\nabc', '1 bytes after'),
    (b'{"names": {"report": ["status"], "accounting": [], "channel": []},'
     b' "nodes": [[0, [5], []]]}\n', 'expected a string'),
    (b'{"names": {"report": ["status", "accounting"], "accounting": ["channels"],'
     b' "channel": ["reads"]}, "nodes": [[0, ["ok", [[[1, 2]]]], []]]}\n', 'bad channels'),
])
def test_a_bad_reports_block_is_one_error_that_says_why(data: bytes, why: str) -> None:
    with pytest.raises(wire.ReportError, match=why):
        wire.read_reports(data)


@pytest.mark.parametrize('value', [
    'wc-1', 'é"\\\n', ['wc-1', 'x'], {'SCRIPT_NAME': 'wc-1', 'LOCAL_X': 'é', 'A': [1, 2.5]},
    {'b': {'z': None, 'a': True}, 'a': [1e100, -0.0, 3]}, 7, 1.5, None, [], {}])
def test_sorted_json_is_json_dumps_with_sorted_keys(value) -> None:
    """The encoder made once for entries, reports and spec sizes (``wire._sorted_json``)
    writes what ``json.dumps(value, sort_keys=True)`` writes."""
    assert wire._sorted_json(value) == json.dumps(value, sort_keys=True)


@pytest.mark.parametrize('path', ['/a/c/o', '/AUTH_t/c/dir/x-1_2.~txt', '/a/c/o ü?&#%',
                                  '/a/c/\U0001f600'])
def test_an_objects_local_env_is_its_metadatas_whatever_was_seen_before(path: str) -> None:
    """``local_env``: the ``LOCAL_*`` variables as the rules say (names in any case, the
    path quoted), the same the second time a name comes (kept) as the first."""
    headers = [('Content-Type', 'text/plain'), ('content-length', '3'), ('ETag', 'e'),
               ('X-Timestamp', '1.0'), ('X-Object-Meta-Colour', 'red'), ('name', path),
               ('x-object-meta-a.b', 'c'), ('X-Other', 'no')]
    from urllib.parse import quote
    want = {'LOCAL_OBJECT': 'on', 'LOCAL_PATH_INFO': quote(path),
            'LOCAL_CONTENT_TYPE': 'text/plain', 'LOCAL_CONTENT_LENGTH': '3',
            'LOCAL_HTTP_ETAG': 'e', 'LOCAL_HTTP_X_TIMESTAMP': '1.0',
            'LOCAL_HTTP_X_OBJECT_META_COLOUR': 'red', 'LOCAL_HTTP_X_OBJECT_META_A_B': 'c'}
    assert wire.local_env(path, headers) == want
    assert wire.local_env(path, headers) == want

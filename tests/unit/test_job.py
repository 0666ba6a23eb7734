"""Job descriptions: validation, wildcard expansion, naming, graph, placement."""

import json

import pytest

from zerocloud.job import (
    DEVICES,
    RANDOM,
    READABLE,
    WRITABLE,
    Device,
    Exec,
    Group,
    JobError,
    JobTooLarge,
    Node,
    SwiftPath,
    expand,
    job_paths,
    parse_job,
    parse_location,
    stream,
)

ACCOUNT = 'AUTH_test'
EXE = {'path': 'swift://~/bin/sort'}


def group(name='sort', **fields):
    return {'name': name, 'exec': dict(EXE), **fields}


def parse(*groups, **kwargs):
    return parse_job(json.dumps(list(groups)), ACCOUNT, **kwargs)


def error(*groups, **kwargs):
    with pytest.raises(JobError) as caught:
        run(*groups, **kwargs)
    return str(caught.value)


class FakeSwift:
    """Container listings of one account, sorted by name as Swift lists them (nodes
    follow the listing's order: they are made as it is read)."""

    def __init__(self, containers=None):
        self.containers = containers or {}
        self.calls = []

    def list_containers(self, account):
        self.calls.append(account)
        return iter(sorted(self.containers))

    def list_objects(self, account, container, prefix):
        self.calls.append(f'{account}/{container}' + (f'?prefix={prefix}' if prefix else ''))
        return iter(sorted(n for n in self.containers.get(container, []) if n.startswith(prefix)))


def run(*groups, swift=None, max_nodes=1000, **kwargs):
    swift = swift or FakeSwift()
    return expand(parse(*groups, **kwargs), swift.list_objects, swift.list_containers,
                  max_nodes=max_nodes)


def by_name(nodes):
    return {node.name: node for node in nodes}


def paths(node):
    return {device.name: str(device.path) if device.path else None for device in node.devices}


# -- the body -----------------------------------------------------------------------

@pytest.mark.parametrize('body', [
    json.dumps([group()]),
    json.dumps([group()]).encode(),
    [group()],
    b'\xef\xbb\xbf' + json.dumps([group()]).encode(),      # saved with a BOM (Notepad)
], ids=['str', 'bytes', 'decoded', 'bom'])
def test_body_forms(body):
    [parsed] = parse_job(body, ACCOUNT)
    assert parsed == Group('sort', Exec(f'swift://{ACCOUNT}/bin/sort'))


@pytest.mark.parametrize('body, message', [
    ('[{"name": "sort",', 'Job description is not valid JSON: '),
    # a trailing comma (JavaScript's, Python's): the decoder wanted a property name there
    ('[{"name": "a", "exec": {"path": "s"},}]', 'Job description is not valid JSON: Expecting '
     'property name enclosed in double quotes: line 1 column 38 (char 37) (a trailing comma at '
     'line 1 column 37, before "}": JSON allows none; remove it)'),
    ('[{"name": "a", "exec": {"path": "s"}},\n]', 'Job description is not valid JSON: '
     'Expecting value: line 2 column 1 (char 39) (a trailing comma at line 1 column 38, before '
     '"]": JSON allows none; remove it)'),
    # a script without its #! line (curl sends it as a form): only "Expecting value"
    ('print(1)\n', 'Job description is not valid JSON: Expecting value: line 1 column 1 '
     '(char 0) (a job is a JSON list of node groups, [{"name": ..., "exec": ...}]; a script '
     'starts with #!, #!file://python3:python3 for Python)'),
    (b'[{"name": "\xff"}]', 'Job description is not UTF-8'),
    # a program POSTed to run it was "not UTF-8", which did not say what to do
    (b'\x7fELF\x02\x01\x01' + bytes(64), 'Job description is a program (an ELF file), not '
     'a job: upload it (swift upload <container> prog) and POST a job that names it as '
     'exec.path (doc/user-guide.md), or run it with zc run ./prog'),
    ('[' * 5000 + ']' * 5000, 'Job description is not valid JSON: '),
    ('{"name": "sort"}', 'Job description must be a JSON list of node groups, got an object'),
    ('"sort"', 'Job description must be a JSON list of node groups, got "sort"'),
    ('{"name": "a", "exec": {"path": "s"}}', 'Job description must be a JSON list of node '
     'groups, got an object: put the group in a list, [{"name": ..., "exec": ...}]'),
    ('{"query": "SELECT 1 FROM swift://~/c/*.csv"}', 'Job description must be a JSON list of '
     'node groups, got an object: an SQL query runs with X-Zerovm-Execute: sql/1.0'),
    ('[]', 'Job description has no node groups'),
    (b'', 'Job description is empty: POST a JSON list of node groups (doc/job-reference.md)'),
    ('\n ', 'Job description is empty: POST a JSON list of node groups'),
    ('[{"name": "sort", "exec": {"path": "s"}}, 7]', 'Node group #2 must be a JSON object, got 7'),
    ('[{"name": "a", "name": "b", "exec": {}}]', 'Duplicate key "name" in job description'),
], ids=['json', 'trailing-comma', 'trailing-comma-list', 'not-json', 'utf8', 'program',
        'nesting', 'object', 'string', 'group', 'query',
        'empty', 'no-body', 'blank', 'item', 'duplicate-key'])
def test_bad_body(body, message):
    with pytest.raises(JobError) as caught:
        parse_job(body, ACCOUNT)
    assert str(caught.value).startswith(message)


def test_body_size_limit():
    body = json.dumps([group()])
    assert parse_job(body, ACCOUNT, max_size=len(body))
    with pytest.raises(JobTooLarge, match=f'too large: {len(body)} bytes, max 10'):
        parse_job(body, ACCOUNT, max_size=10)
    assert issubclass(JobTooLarge, JobError)


def test_error_message_is_safe_in_a_header():
    message = error(group(name='sort\r\nX-Evil: 1'))
    assert message == 'Invalid node name in node group #1: control characters are not allowed'
    assert str(JobError('bad\r\nname\x00\ud800')) == r'bad\r\nname\x00\ud800'


# -- group names --------------------------------------------------------------------

@pytest.mark.parametrize('name, message', [
    (None, 'Must specify node name (node group #1)'),
    ('', 'Must specify node name (node group #1)'),
    (5, 'Invalid node name in node group #1: must be a string, got 5'),
    ('so\x01rt', 'Invalid node name in node group #1: control characters are not allowed'),
    ('a/b', 'Invalid node name in node group #1: "a/b": whitespace, "/" and ","'),
    ('a,b', 'Invalid node name in node group #1: "a,b"'),
    ('a b', 'Invalid node name in node group #1: "a b"'),
    ('..', 'Invalid node name in node group #1: ".."'),
])
def test_bad_group_name(name, message):
    assert error(group(name=name)).startswith(message)


def test_group_names_are_unique():
    assert error(group(), group()) == ('Duplicate node name sort: node groups #1 and #2 are '
                                       'both named sort; give each group a name of its own')


def test_node_names_are_unique_after_expansion():
    message = error(group('map', count=2), group('map-2'))
    assert message == 'Duplicate node name map-2 (groups map and map-2)'


# -- exec ---------------------------------------------------------------------------

@pytest.mark.parametrize('exe, message', [
    (None, 'Must specify exec stanza for sort'),
    ('swift://~/bin/sort', 'Invalid exec stanza in sort: must be an object, got "swift:'),
    ({}, 'Must specify executable path for sort'),
    ({'path': ''}, 'Must specify executable path for sort'),
    ({'path': ['x']}, 'Invalid executable path in sort: must be a string, got a list'),
    ({'path': 'swift://*'}, 'Invalid path swift://* in sort: wildcards are allowed in '
                            'container and object names only'),
    ({'path': 'swift://~/bin'}, 'Invalid executable path in sort: swift://~/bin must name '
                                'one object'),
    ({'path': 'swift://~/bin/*'}, 'Invalid executable path in sort: swift://~/bin/* must'),
    ({'path': 'swift://bin/sort'}, 'Invalid executable path in sort: swift://bin/sort must name '
                                   'one object (did you mean swift://~/bin/sort?)'),
    ({'path': 'swift://~bin/sort'}, 'Invalid executable path in sort: swift://~bin/sort must '
                                    'name one object (did you mean swift://~/bin/sort?)'),
    ({'path': 'zvm://host:stdout'}, 'Executable path cannot be a zvm path in sort'),
    ({'path': 'http://x/y'}, 'Invalid executable path in sort: http://x/y: expected swift://'),
    # the program's HTTP URL, copied from curl: the swift:// URL it names
    ({'path': 'http://h:8080/v1/AUTH_a/bin/sort'}, 'Invalid executable path in sort: '
     'http://h:8080/v1/AUTH_a/bin/sort: expected swift://, file:// or a path inside the image '
     '(did you mean swift://AUTH_a/bin/sort?)'),
    ({'path': 'file://lua:bin/lua'}, 'Invalid executable path in sort: file://lua:bin/lua: '
                                     'unknown image "lua" (known: image, python3)'),
    ({'path': 'file://python3:'}, 'Invalid executable path in sort: file://python3:: no file'),
    ({'path': 'sort', 'name': 7}, 'Invalid nexe property exec.name in sort: must be a string'),
    ({'path': 'sort', 'name': 'a\nb'}, 'Invalid nexe property exec.name in sort: control'),
    ({'path': 'sort', 'args': 5}, 'Invalid nexe property exec.args in sort: must be a string or '
                                  'a list of strings, got 5'),
    ({'path': 'sort', 'args': ['a', 1]}, 'Invalid nexe property exec.args in sort: must be a '
                                         'string or a list of strings'),
    ({'path': 'sort', 'args': '-k "2'}, 'Invalid nexe property exec.args in sort: no closing '
                                        'quotation'),
    ({'path': 'sort', 'args': '-k\t2'}, 'Invalid nexe property exec.args in sort: control'),
    ({'path': 'sort', 'args': ['-k\n2']}, 'Invalid nexe property exec.args in sort: control'),
    ({'path': 'sort', 'env': ['A=1']}, 'Invalid nexe property exec.env in sort: must be an '
                                       'object, got a list'),
    ({'path': 'sort', 'env': {'A=B': '1'}}, 'Invalid nexe property exec.env in sort: bad '
                                            'variable name "A=B"'),
    ({'path': 'sort', 'env': {'1A': '1'}}, 'Invalid nexe property exec.env in sort: bad '
                                           'variable name "1A"'),
    ({'path': 'sort', 'env': {'N': 1}}, 'Invalid nexe property exec.env N in sort: must be a '
                                        'string, got 1'),
    ({'path': 'sort', 'env': {'N': 'a\nb'}}, 'Invalid nexe property exec.env N in sort: '
                                             'control characters'),
])
def test_bad_exec(exe, message):
    assert error(group(exec=exe), system_images=['python3']).startswith(message)


@pytest.mark.parametrize('path, normalised, swift_path, image_member', [
    ('swift://~/bin/sort', f'swift://{ACCOUNT}/bin/sort', SwiftPath(ACCOUNT, 'bin', 'sort'),
     None),
    ('swift://other/bin/my%20sort', 'swift://other/bin/my%20sort',
     SwiftPath('other', 'bin', 'my sort'), None),
    ('file://python3:bin/python', 'file://python3:bin/python', None, ('python3', 'bin/python')),
    ('file://bin/sort', 'file://bin/sort', None, ('image', 'bin/sort')),
    ('bin/sort', 'bin/sort', None, (None, 'bin/sort')),
])
def test_exec_path_forms(path, normalised, swift_path, image_member):
    [parsed] = parse(group(exec={'path': path}), system_images=['python3'])
    assert parsed.exec.path == normalised
    assert parsed.exec.swift_path == swift_path
    assert parsed.exec.image_member == image_member


def test_exec_fields():
    [parsed] = parse(group(exec={'path': 'sort', 'name': 'sort.nexe', 'args': '-k 2 "a b" c\\ d',
                                 'env': {'LANG': 'C', '_X1': ''}}))
    assert parsed.exec == Exec('sort', 'sort.nexe', ['-k', '2', 'a b', 'c d'],
                               {'LANG': 'C', '_X1': ''})
    [parsed] = parse(group(exec={'path': 'sort', 'name': '', 'args': ['a b', ''], 'env': None}))
    assert parsed.exec == Exec('sort', None, ['a b', ''], {})


def test_argv0_is_exec_name_or_node_name():
    nodes = run(group('a', count=2), group('b', exec={**EXE, 'name': 'sort', 'args': '-n'}))
    assert [node.argv for node in nodes] == [['a-1'], ['a-2'], ['sort', '-n']]


def test_argv0_of_a_system_image_program_is_its_file_name():
    """All nodes of a group run one command line (they share start-up snapshots)."""
    nodes = run(group('py', count=2, exec={'path': 'file://python3:usr/bin/python3',
                                           'args': '/job.py'}),
                group('own', exec={'path': 'file://bin/tool'}),
                group('named', exec={'path': 'file://python3:python3', 'name': 'py'}),
                system_images=['python3'])
    assert [node.argv for node in nodes] == [['python3', '/job.py'], ['python3', '/job.py'],
                                             ['own'], ['py']]


# -- devices ------------------------------------------------------------------------

def test_device_catalogue():
    assert {name: (d.readable, d.writable, d.random, d.system_image)
            for name in [*DEVICES, 'python3'] for d in [Device(name)]} == {
        'stdin': (True, False, False, False),
        'stdout': (False, True, False, False),
        'stderr': (False, True, False, False),
        'input': (True, False, True, False),
        'output': (False, True, True, False),
        'image': (True, False, True, False),
        'script': (True, False, True, False),
        'python3': (True, False, True, True),
    }
    assert Device('input').access == READABLE | RANDOM and Device('stdout').access == WRITABLE


def test_device_fields():
    [parsed] = parse(group(devices=[
        {'name': 'stdin', 'path': 'swift://~/data/in.txt', 'mode': 'char'},
        {'name': 'stdout', 'path': 'swift://~/data/out.txt', 'content_type': 'text/plain',
         'meta': {'Source-Job': 'sort'}, 'min_size': 1, 'mode': 'file'},
        {'name': 'stderr', 'mode': 'pipe', 'min_size': 0, 'content_type': None},
        {'name': 'output', 'mode': 'block'},
        {'name': 'python3'},
    ]), system_images=['python3'])
    assert parsed.devices == [
        Device('stdin', SwiftPath(ACCOUNT, 'data', 'in.txt'), mode='char'),
        Device('stdout', SwiftPath(ACCOUNT, 'data', 'out.txt'), 'text/plain',
               {'Source-Job': 'sort'}, 'file', 1),
        Device('stderr', mode='pipe'),
        Device('output', mode='block'),
        Device('python3'),
    ]


def test_deprecated_device_keys():
    new = parse(group(devices=[{'name': 'stdout'}]))
    assert parse(group(file_list=[{'device': 'stdout'}])) == new


@pytest.mark.parametrize('devices, message', [
    ({'name': 'stdout'}, 'Invalid devices in sort: must be a list, got an object'),
    (['stdout'], 'Invalid device #1 in sort: must be an object, got "stdout"'),
    ([{'path': 'swift://~/c/o'}], 'Must specify device for file in sort: device #1 has no '
                                  '"name" (stdin, stdout, stderr, input, output, image, script '
                                  'or a system image)'),
    ([{'name': 'stdtest'}], 'Unknown device "stdtest" in sort. Valid devices: stdin, stdout, '
                            'stderr, input, output, image, script, python3'),
    ([{'name': 'debug', 'path': 'tcp://h:1'}], 'Unknown device "debug" in sort. Valid devices'),
    ([{'name': 'lua'}], 'Unknown device "lua" in sort. Valid devices: stdin,'),
    ([{'name': 7}], 'Unknown device 7 in sort. Valid devices: stdin,'),
    # a channel to another node declared as a device: connect makes those
    ([{'name': 'out/reduce'}], 'Device "out/reduce" in sort is a channel between nodes, which '
     '"connect" makes, not "devices": "connect": ["reduce"] on sort gives each of its nodes '
     '/dev/out/<node> for every node of reduce, which reads it as /dev/in/<node> '
     '(doc/job-reference.md, "Multi-node graphs")'),
    ([{'name': '/dev/in/map-1'}], 'Device "/dev/in/map-1" in sort is a channel between nodes, '
     'which "connect" makes, not "devices": "connect": ["sort"] on map gives each node of '
     'sort /dev/in/<node> for every node of map, which writes it as /dev/out/<node>'),
    ([{'name': 'outfile'}], 'Unknown device "outfile" in sort. Valid devices'),
    ([{'name': 'stdout'}, {'name': 'stdout'}], 'Duplicate device stdout in sort'),
    ([{'name': 'stdout', 'device': 'stderr'}], 'Invalid device #1 in sort: give "name" or the '
                                               'deprecated "device", not both'),
    ([{'name': 'stdin', 'path': 3}], 'Invalid path for device stdin in sort: must be a string'),
    ([{'name': 'stdin', 'path': 'file://data'}], 'Readable device must be a swift object: '
                                                 'stdin path file://data in sort'),
    ([{'name': 'image', 'path': '/c/o'}], 'Readable device must be a swift object: image'),
    # a read object's path without its scheme, or its HTTP URL: the URL it likely meant
    ([{'name': 'stdin', 'path': 'logs/day-1.log'}], 'Readable device must be a swift object: '
     'stdin path logs/day-1.log in sort (did you mean swift://~/logs/day-1.log?)'),
    ([{'name': 'stdin', 'path': 'https://h/v1/AUTH_a/logs/*.log'}], 'Readable device must be a '
     'swift object: stdin path https://h/v1/AUTH_a/logs/*.log in sort (did you mean '
     'swift://AUTH_a/logs/*.log?)'),
    ([{'name': 'stdin', 'path': 'swift://~'}], 'Invalid path swift://~ in sort: expected '
                                               'swift://account/container[/object]'),
    ([{'name': 'stdout', 'path': 'zvm://n:stdin'}], 'Invalid path zvm://n:stdin in sort'),
    ([{'name': 'output', 'path': 'swift://~/c/'}], 'Container path must be read-only: output '
                                                   'path swift://~/c/ in sort: a written device '
                                                   'names an object, or objects (swift://~/c/* '
                                                   'makes one per node)'),
    ([{'name': 'stdout', 'path': 'swift://out/x'}], 'Container path must be read-only: stdout '
                                                    'path swift://out/x in sort (did you mean '
                                                    'swift://~/out/x?)'),
    ([{'name': 'python3', 'path': 'swift://~/c/o'}], 'System image device python3 cannot have '
                                                     'a path in sort'),
    ([{'name': 'stdin'}, {'name': 'input'}], 'Only one readable device without a path (the '
                                             'request payload) in sort, got stdin, input'),
    ([{'name': 'stdin', 'path': 'swift://~/c/*'}, {'name': 'input', 'path': 'swift://~/d*/o'}],
     'Wildcards in more than one readable device in sort: stdin, input'),
    ([{'name': 'stdout', 'content_type': 1}], 'Invalid content_type for device stdout in sort: '
                                              'must be a string, got 1'),
    ([{'name': 'stdout', 'meta': 'x'}], 'Invalid meta for device stdout in sort: must be an '
                                        'object'),
    ([{'name': 'stdout', 'meta': {'a b': 'c'}}], 'Invalid meta for device stdout in sort: '
                                                 '"a b" cannot be part of a header name'),
    ([{'name': 'stdout', 'meta': {'k': 1}}], 'Invalid meta for device stdout k in sort: must '
                                             'be a string, got 1'),
    ([{'name': 'stdout', 'mode': 'fifo'}], 'Invalid mode for device stdout in sort: must be one '
                                           'of file, char, pipe, block, got "fifo"'),
    ([{'name': 'stdout', 'min_size': -1}], 'Invalid min_size for device stdout in sort: must '
                                           'be an integer >= 0, got -1'),
    ([{'name': 'stdout', 'min_size': '1'}], 'Invalid min_size for device stdout in sort: must '
                                            'be an integer >= 0, got "1"'),
    ([{'name': 'stdout', 'min_size': True}], 'Invalid min_size for device stdout in sort'),
])
def test_bad_devices(devices, message):
    assert error(group(devices=devices), system_images=['python3']).startswith(message)


@pytest.mark.parametrize('spec, message', [
    (group(device=[{'name': 'stdout'}]),
     'Unknown key "device" in node group #1 (sort), did you mean "devices"? Valid keys: name, '
     'exec, devices, file_list, count, connect, replicate, attach, location, engine'),
    (group(devises=[]), 'Unknown key "devises" in node group #1 (sort), did you mean "devices"?'),
    ({'name': 'sort', 'exce': EXE}, 'Unknown key "exce" in node group #1 (sort), did you mean '
                                     '"exec"?'),
    ({'nmae': 'sort', 'exec': EXE}, 'Unknown key "nmae" in node group #1, did you mean "name"?'),
    (group(comment='x'), 'Unknown key "comment" in node group #1 (sort). Valid keys: name,'),
    (group(exec={'pth': 'swift://~/bin/sort'}),
     'Unknown key "pth" in exec of sort, did you mean "path"? Valid keys: path, name, args, env, '
     'ok_exit'),
    (group(exec={**EXE, 'argv': '-n'}), 'Unknown key "argv" in exec of sort, did you mean '
                                         '"args"?'),
    (group(devices=[{'name': 'stdout'}, {'name': 'stdin', 'pth': 'swift://~/c/o'}]),
     'Unknown key "pth" in device #2 (stdin) of sort, did you mean "path"? Valid keys: name, '
     'device, path, content_type, meta, mode, min_size, store'),
    (group(file_list=[{'device': 'stdout', 'contenttype': 'text/csv'}]),
     'Unknown key "contenttype" in device #1 (stdout) of sort, did you mean "content_type"?'),
    (group(devices=[{'nam': 'stdout'}]), 'Unknown key "nam" in device #1 of sort, did you mean '
                                         '"name"?'),
    (group(devices=[{'name': 'stdn'}]),
     'Unknown device "stdn" in sort, did you mean "stdin"? Valid devices: stdin, stdout, '
     'stderr, input, output, image, script, lua5.4, python3'),
    (group(devices=[{'name': 'python'}]), 'Unknown device "python" in sort, did you mean '
                                          '"python3"?'),
])
def test_unknown_keys_and_devices_are_named(spec, message):
    """A typo is a 400 naming the key, where it is, and the valid keys: never ignored."""
    assert error(spec, system_images=['python3', 'lua5.4']).startswith(message)


def test_every_zerocloud_key_is_accepted():
    """ZeroCloud's whole format (doc/Servlets.md), deprecated spellings included."""
    full = {'name': 'sort', 'exec': {'path': 'sort', 'name': 's', 'args': '-n', 'env': {}},
            'devices': [{'name': 'stdin', 'path': 'swift://~/c/o', 'mode': 'file'},
                        {'name': 'stdout', 'path': 'swift://~/c/p', 'content_type': 'text/plain',
                         'meta': {'k': 'v'}, 'min_size': 1}],
            'count': 1, 'connect': [], 'replicate': 1, 'attach': 'stdin', 'location': 'r1'}
    old = {'name': 'old', 'exec': {'path': 'sort'}, 'file_list': [{'device': 'stdout'}]}
    assert [g.name for g in parse(full, old)] == ['sort', 'old']


def test_devices_and_file_list_together():
    message = error(group(devices=[], file_list=[]))
    assert message == ('Invalid devices in sort: give "devices" or the deprecated "file_list", '
                       'not both')


def test_readable_container_path_and_payload_devices():
    [parsed] = parse(group(devices=[{'name': 'input', 'path': 'swift://~/db'},
                                    {'name': 'image'}, {'name': 'stdin'}]))
    assert [d.path for d in parsed.devices] == [SwiftPath(ACCOUNT, 'db'), None, None]


def test_immediate_writable_devices():
    [parsed] = parse(group(devices=[{'name': 'stdout'}, {'name': 'stderr'},
                                    {'name': 'output'}]))
    assert [d.path for d in parsed.devices] == [None, None, None]


# -- paths --------------------------------------------------------------------------

@pytest.mark.parametrize('url, expected', [
    ('swift://a/c/o', SwiftPath('a', 'c', 'o')),
    ('swift://a/c/dir/o', SwiftPath('a', 'c', 'dir/o')),
    ('swift://a/c', SwiftPath('a', 'c')),
    ('swift://a/c/', SwiftPath('a', 'c')),
    ('swift://~/c/o', SwiftPath(ACCOUNT, 'c', 'o')),
    ('swift://./c/o', SwiftPath(ACCOUNT, 'c', 'o')),
    ('swift://%7E/c/o', SwiftPath(ACCOUNT, 'c', 'o')),
    ('swift://a/my%20c/caf%C3%A9%2F1%25', SwiftPath('a', 'my c', 'café/1%')),
    ('swift://a/c*/o*', SwiftPath('a', 'c*', 'o*')),
])
def test_parse_location(url, expected):
    assert parse_location(url, ACCOUNT) == expected


@pytest.mark.parametrize('url, reason', [
    ('/a/c/o', 'expected swift://account/container[/object] (did you mean swift://a/c/o?)'),
    # a path without its scheme, as a newcomer writes it: was not told the URL meant
    ('logs/day-1.log', 'expected swift://account/container[/object] (did you mean '
                       'swift://~/logs/day-1.log?)'),
    ('swift:/~/c/o', 'expected swift://account/container[/object] (did you mean '
                     'swift://~/c/o?)'),
    ('c', 'expected swift://account/container[/object]'),
    # a relative path of this machine: no URL with a container named . or ..
    ('./data/x.csv', 'expected swift://account/container[/object]'),
    ('../data/x.csv', 'expected swift://account/container[/object]'),
    ('http://h/v1/a/c', 'expected swift://account/container[/object]'),
    # an object's HTTP URL (copied from curl or swift stat), or its path: the swift:// URL
    ('http://127.0.0.1:8080/v1/AUTH_a/c/o', 'expected swift://account/container[/object] '
                                            '(did you mean swift://AUTH_a/c/o?)'),
    ('/v1/AUTH_a/c/o', 'expected swift://account/container[/object] (did you mean '
                       'swift://AUTH_a/c/o?)'),
    ('swift://', 'expected swift://account/container[/object]'),
    ('swift://a', 'expected swift://account/container[/object]'),
    ('swift://a//o', 'expected swift://account/container[/object]'),
    ('swift://*/c/o', 'wildcards are allowed in container and object names only'),
    ('swift://a*b/c/o', 'wildcards are allowed in container and object names only'),
    ('swift://a/c%2Fd/o', 'account and container names cannot contain "/"'),
    ('swift://a/c/%FF', 'names must be URL-encoded UTF-8'),
    ('swift://a/c/o%0A', 'control characters are not allowed'),
])
def test_parse_location_rejects(url, reason):
    with pytest.raises(JobError) as caught:
        parse_location(url, ACCOUNT)
    assert str(caught.value) == f'Invalid path {url}: {reason}'
    with pytest.raises(JobError) as caught:
        parse_location(url, ACCOUNT, where='sort')
    assert str(caught.value) == f'Invalid path {url} in sort: {reason}'


def test_swift_path_text_forms():
    path = SwiftPath('a', 'my c', 'café/1%?')
    assert str(path) == 'swift://a/my%20c/caf%C3%A9/1%25%3F'
    assert path.path == '/a/my c/café/1%?'
    assert parse_location(str(path), 'x') == path
    assert (str(SwiftPath('a', 'c')), SwiftPath('a', 'c').path) == ('swift://a/c', '/a/c')
    assert str(SwiftPath('a', 'c*', 'o*')) == 'swift://a/c*/o*'
    assert [SwiftPath('a', 'c', 'o*').wildcard, SwiftPath('a', 'c*').wildcard,
            SwiftPath('a', 'c', 'o').wildcard] == [True, True, False]


# -- count, replicate, connect, attach, location ------------------------------------

@pytest.mark.parametrize('fields, message', [
    ({'count': 0}, 'Invalid node count in sort: must be an integer >= 1, got 0'),
    ({'count': -2}, 'Invalid node count in sort: must be an integer >= 1, got -2'),
    ({'count': '3'}, 'Invalid node count in sort: must be an integer >= 1, got "3"'),
    ({'count': 1.5}, 'Invalid node count in sort: must be an integer >= 1, got 1.5'),
    ({'count': True}, 'Invalid node count in sort: must be an integer >= 1, got true'),
    ({'replicate': 0}, 'Invalid replicate in sort: must be an integer from 1 to 3, got 0'),
    ({'replicate': 4}, 'Invalid replicate in sort: must be an integer from 1 to 3, got 4'),
    ({'replicate': '2'}, 'Invalid replicate in sort: must be an integer from 1 to 3, got "2"'),
    ({'connect': 'sort'}, 'Invalid connect in sort: must be a list of node names, got "sort"'),
    ({'connect': [1]}, 'Invalid connect in sort: must be a list of node names, got a list'),
    ({'connect': ['reducer7']}, 'Non-existing node in connect reducer7 of sort (the job\'s '
                                'groups: sort)'),
    ({'connect': ['srot'], 'count': 2}, 'Non-existing node in connect srot of sort, did you '
                                        'mean "sort"? (the job\'s groups: sort)'),
    ({'connect': ['sort'], 'count': 2}, None),
    ({'attach': 'stdout'}, 'Invalid attach in sort: no device "stdout" in the group (its '
                           'devices: none)'),
    ({'attach': 'stdn', 'devices': [{'name': 'stdin', 'path': 'swift://~/c/o'}]},
     'Invalid attach in sort: no device "stdn" in the group (its devices: stdin)'),
    ({'attach': 3}, 'Invalid attach in sort: no device 3 in the group'),
    # a device without a path has no object: the node quietly ran on any server
    ({'attach': 'stdout', 'devices': [{'name': 'stdin', 'path': 'swift://~/c/o'},
                                      {'name': 'stdout'}]},
     'Invalid attach in sort: device "stdout" has no path, so no object for the node to run '
     'next to: name a device with a swift:// path, or leave "attach" out (the node then runs '
     'next to the object of its last read device with a path)'),
    ({'attach': 'stderr', 'devices': [{'name': 'stdin', 'path': 'swift://~/c/o'},
                                      {'name': 'stderr'}]},
     'Invalid attach in sort: device "stderr" has no path'),
    # a written object's path places it; a path-less stdin is the object POSTed to
    ({'attach': 'stdout', 'devices': [{'name': 'stdout', 'path': 'swift://~/c/o'}]}, None),
    ({'attach': 'stdin', 'devices': [{'name': 'stdin'}]}, None),
    ({'location': 3}, 'Invalid location in sort: must be a string, got 3'),
    ({'location': 'r\n1'}, 'Invalid location in sort: control characters are not allowed'),
])
def test_bad_group_fields(fields, message):
    if message is None:
        run(group(**fields))
    else:
        assert error(group(**fields)).startswith(message)


def test_attach_on_a_device_says_it_is_the_groups() -> None:
    # "Unknown key "attach" in device #2 (stdout)": not where it goes, nor what it needs
    message = error(group(devices=[{'name': 'stdin', 'path': 'swift://~/c/o'},
                                   {'name': 'stdout', 'attach': True}]))
    assert message == ('"attach" in device #2 (stdout) of sort belongs to the node group, '
                       'next to "devices": "attach": "stdout" places the node next to that '
                       "device's object (it needs a swift:// path)")


def test_connect_targets_are_unique():
    message = error(group('mapper', connect=['reducer', 'reducer']), group('reducer'))
    assert message == 'Duplicate node in connect reducer of mapper'


def test_single_node_cannot_connect_to_itself():
    assert error(group('mapper', connect=['mapper'])).startswith(
        'Cannot bind to itself: mapper (only a group of several nodes')


def test_null_means_absent():
    [parsed] = parse(group(devices=None, count=None, connect=None, replicate=None,
                           attach=None, location=None))
    assert parsed == Group('sort', Exec(f'swift://{ACCOUNT}/bin/sort'))


def test_group_fields():
    [parsed] = parse(group(devices=[{'name': 'stdout', 'path': 'swift://~/c/o'}], count=2,
                           replicate=3, attach='stdout', location='rack-1'))
    assert (parsed.count, parsed.replicate, parsed.attach, parsed.location) == \
        (2, 3, 'stdout', 'rack-1')
    [parsed] = parse(group(attach='default', location=''))
    assert (parsed.attach, parsed.location) == (None, None)


def test_count_names_nodes():
    assert [node.name for node in run(group())] == ['sort']
    nodes = run(group(count=3, replicate=2, location='here'))
    assert [(n.name, n.group, n.index, n.id, n.replicate, n.location) for n in nodes] == [
        ('sort-1', 'sort', 1, 1, 2, 'here'),
        ('sort-2', 'sort', 2, 2, 2, 'here'),
        ('sort-3', 'sort', 3, 3, 2, 'here'),
    ]


def test_ids_run_over_the_job_in_group_order():
    nodes = run(group('a', count=2), group('b'), group('c', count=2))
    assert [(n.id, n.name, n.index) for n in nodes] == [
        (1, 'a-1', 1), (2, 'a-2', 2), (3, 'b', 1), (4, 'c-1', 1), (5, 'c-2', 2)]


# -- wildcard expansion -------------------------------------------------------------

def test_object_wildcard():
    swift = FakeSwift({'data': ['binary_log_345.data', 'binary_log_1.data', 'binary/',
                                'other.data', 'binary_x.data.bak']})
    nodes = run(group(count=7, devices=[
        {'name': 'stdin', 'path': 'swift://~/data/binary*.data'},
        {'name': 'stdout', 'path': 'swift://~/data/sorted*.data'},
        {'name': 'stderr'},
    ]), swift=swift)
    assert swift.calls == [f'{ACCOUNT}/data?prefix=binary']     # listed from the fixed text
    assert [(node.name, paths(node)) for node in nodes] == [
        ('sort-1', {'stdin': f'swift://{ACCOUNT}/data/binary_log_1.data',
                    'stdout': f'swift://{ACCOUNT}/data/sorted_log_1.data', 'stderr': None}),
        ('sort-2', {'stdin': f'swift://{ACCOUNT}/data/binary_log_345.data',
                    'stdout': f'swift://{ACCOUNT}/data/sorted_log_345.data', 'stderr': None}),
    ]


def test_single_match_is_still_numbered():
    swift = FakeSwift({'data': ['a.txt']})
    nodes = run(group(devices=[{'name': 'stdin', 'path': 'swift://~/data/*.txt'}]), swift=swift)
    assert [node.name for node in nodes] == ['sort-1']


def test_container_and_object_wildcards():
    swift = FakeSwift({'logs-2': ['x.log', 'y.txt'], 'logs-1': ['z.log'], 'other': ['o.log']})
    nodes = run(group(devices=[
        {'name': 'input', 'path': 'swift://~/logs-*/*.log'},
        {'name': 'output', 'path': 'swift://~/out/*-*.sum'},
    ]), swift=swift)
    assert swift.calls == [ACCOUNT, f'{ACCOUNT}/logs-1', f'{ACCOUNT}/logs-2']
    assert [paths(node) for node in nodes] == [
        {'input': f'swift://{ACCOUNT}/logs-1/z.log', 'output': f'swift://{ACCOUNT}/out/1-z.sum'},
        {'input': f'swift://{ACCOUNT}/logs-2/x.log', 'output': f'swift://{ACCOUNT}/out/2-x.sum'},
    ]


def test_container_wildcard_with_fixed_object():
    swift = FakeSwift({'day-1': ['index', 'other'], 'day-2': ['other']})
    nodes = run(group(devices=[{'name': 'input', 'path': 'swift://~/day-*/index'}]), swift=swift)
    assert [paths(node) for node in nodes] == [{'input': f'swift://{ACCOUNT}/day-1/index'}]
    assert swift.calls == [ACCOUNT, *(f'{ACCOUNT}/day-{d}?prefix=index' for d in (1, 2))]


def test_container_only_wildcard_lists_no_objects():
    swift = FakeSwift({'db-b': [], 'db-a': [], 'x': []})
    nodes = run(group(devices=[{'name': 'input', 'path': 'swift://~/db-*'},
                               {'name': 'stdout', 'path': 'swift://~/out/list_*'}]), swift=swift)
    assert swift.calls == [ACCOUNT]
    assert [paths(node) for node in nodes] == [
        {'input': f'swift://{ACCOUNT}/db-a', 'stdout': f'swift://{ACCOUNT}/out/list_a'},
        {'input': f'swift://{ACCOUNT}/db-b', 'stdout': f'swift://{ACCOUNT}/out/list_b'},
    ]


def test_wildcard_in_another_account():
    swift = FakeSwift({'data': ['a']})
    nodes = run(group(devices=[{'name': 'stdin', 'path': 'swift://other/data/*'}]), swift=swift)
    assert swift.calls == ['other/data']
    assert nodes[0].devices[0].path == SwiftPath('other', 'data', 'a')


def test_no_listing_without_wildcards():
    swift = FakeSwift()
    run(group(count=2, devices=[{'name': 'stdin', 'path': 'swift://~/data/in'},
                                {'name': 'stdout', 'path': 'swift://~/data/out-*'}]),
        swift=swift)
    assert swift.calls == []


def test_no_objects_found():
    swift = FakeSwift({'c': ['y1', 'x1/']})
    message = error(group(devices=[{'name': 'stdin', 'path': 'swift://~/c/x*'}]), swift=swift)
    assert message == f'No objects found in path swift://{ACCOUNT}/c/x* in sort'
    # a shell pattern in a job file matched nothing, saying only part-%5B0-2%5D*; then
    # its hint, but the pattern still quoted (x%5B0-2%5D*), where a query's was as written
    for typed in ('x[0-2]*', 'x?*', 'é[0-2]*'):
        message = error(group(devices=[{'name': 'stdin', 'path': f'swift://~/c/{typed}'}]),
                        swift=swift)
        assert message == (f'No objects found in path swift://{ACCOUNT}/c/{typed} in sort '
                           '(only * is a wildcard: a ? or [ is part of the name)')


def test_listing_errors_pass_through():
    class Denied(Exception):
        pass

    def list_objects(account, container, prefix):
        raise Denied(container)

    groups = parse(group(devices=[{'name': 'stdin', 'path': 'swift://~/c/*'}]))
    with pytest.raises(Denied):
        expand(groups, list_objects, FakeSwift().list_containers)


def test_written_wildcard_without_read_wildcard_takes_node_name():
    nodes = run(group(count=2, devices=[{'name': 'stdout', 'path': 'swift://~/out/*.txt'}]),
                group('one', devices=[{'name': 'stdout', 'path': 'swift://~/res-*/*'}]))
    assert [paths(node)['stdout'] for node in nodes] == [
        f'swift://{ACCOUNT}/out/sort-1.txt', f'swift://{ACCOUNT}/out/sort-2.txt',
        f'swift://{ACCOUNT}/res-one/one']


def test_written_wildcards_need_enough_read_wildcards():
    swift = FakeSwift({'c': ['a1']})
    message = error(group(devices=[{'name': 'stdin', 'path': 'swift://~/c/a*'},
                                   {'name': 'stdout', 'path': 'swift://~/*/*'}]), swift=swift)
    assert message == (f'Wildcards in input cannot be resolved into output path '
                       f'swift://{ACCOUNT}/*/* in sort: more "*" than the input path has')


def test_mapped_output_must_be_a_valid_name():
    swift = FakeSwift({'c': ['dir/a', 'b']})
    message = error(group(devices=[{'name': 'stdin', 'path': 'swift://~/c/*'},
                                   {'name': 'stdout', 'path': 'swift://~/out-*/o'}]), swift=swift)
    assert message == (f'Invalid output path swift://{ACCOUNT}/out-dir/a/o for node sort-2 in '
                       'sort: the wildcard text does not make a valid name')


def test_written_names_longer_than_swift_allows_are_refused_before_the_run():
    """Swift refused such an output only when it was stored: after the job ran."""
    long = 'é' * 512 + 'x'                     # 1025 bytes of UTF-8, 513 characters
    message = error(group(devices=[{'name': 'stdout', 'path': f'swift://~/out/{long}'}]))
    assert message.startswith('Output path too long for device stdout in sort: object name '
                              'is 1025 bytes, Swift allows at most 1024 '
                              '(max_object_name_length in swift.conf): swift://')
    assert message.endswith('...') and len(message) < 300
    message = error(group(devices=[{'name': 'output', 'path': f'swift://~/{"c" * 257}/o'}]))
    assert message.startswith('Output path too long for device output in sort: container '
                              'name is 257 bytes, Swift allows at most 256 '
                              '(max_container_name_length in swift.conf)')
    # a wildcard's name already too long without its filled text is refused as parsed
    message = error(group(count=2, devices=[
        {'name': 'stderr', 'path': f'swift://~/out/{"x" * 1025}*'}]))
    assert message.startswith('Output path too long for device stderr in sort: object name '
                              'is at least 1025 bytes')
    assert parse(group(devices=[{'name': 'stdout', 'path': f'swift://~/{"c" * 256}/'
                                 f'{"é" * 512}'}]))      # at the limits: accepted


def test_expanded_output_names_longer_than_swift_allows_are_refused_per_node():
    """A name filled from the input's is checked as its node is made, before it runs:
    the nodes made before it are not refused."""
    swift = FakeSwift({'in': ['a', 'b' * 1000]})
    groups = parse(group(devices=[{'name': 'stdin', 'path': 'swift://~/in/*'},
                                  {'name': 'stdout', 'path': f'swift://~/out/{"r" * 20}-*.res'}]))
    nodes = stream(groups, swift.list_objects, swift.list_containers)
    assert paths(next(nodes))['stdout'] == f'swift://{ACCOUNT}/out/{"r" * 20}-a.res'
    with pytest.raises(JobError) as caught:
        next(nodes)
    assert str(caught.value).startswith(
        'Output path too long for device stdout of node sort-2 in sort (its "*" filled from '
        'the input\'s name): object name is 1025 bytes, Swift allows at most 1024 '
        '(max_object_name_length in swift.conf): swift://')


def test_single_output_path_for_several_nodes():
    out = f'swift://{ACCOUNT}/data/out'
    one = {'name': 'stdout', 'path': 'swift://~/data/out'}
    message = error(group(count=2, devices=[one]))
    assert message == (f'Single path {out} for multiple node definition: sort, please use '
                       f'wildcard: every node would write this one object; swift://{ACCOUNT}/'
                       'data/* writes one per node')
    sums = error(group(count=2, devices=[{'name': 'stdout', 'path': 'swift://~/s/d/t.sum'}]))
    assert sums.endswith(f'swift://{ACCOUNT}/s/d/*.sum writes one per node')
    swift = FakeSwift({'c': ['a', 'b']})
    assert error(group(devices=[{'name': 'stdin', 'path': 'swift://~/c/*'}, one]),
                 swift=swift).startswith(f'Single path {out} for multiple')


def test_one_object_written_twice():
    swift = FakeSwift({'c': ['x-1', 'x-2', 'y-1']})
    message = error(group(devices=[{'name': 'stdin', 'path': 'swift://~/c/*-*'},
                                   {'name': 'stdout', 'path': 'swift://~/out/*'}]), swift=swift)
    assert message == f'Output swift://{ACCOUNT}/out/x written by both sort-1 (stdout) and ' \
                      'sort-2 (stdout)'
    message = error(group('a', devices=[{'name': 'stdout', 'path': 'swift://~/out/r'}]),
                    group('b', devices=[{'name': 'output', 'path': 'swift://~/out/r'}]))
    assert message == f'Output swift://{ACCOUNT}/out/r written by both a (stdout) and b (output)'


def test_count_is_ignored_with_a_read_wildcard():
    swift = FakeSwift({'c': ['a', 'b']})
    nodes = run(group(count=5, devices=[{'name': 'stdin', 'path': 'swift://~/c/*'}]),
                swift=swift)
    assert [node.name for node in nodes] == ['sort-1', 'sort-2']


def test_max_nodes_counts_the_whole_job():
    assert len(run(group('a', count=2), group('b', count=3), max_nodes=5)) == 5
    message = error(group('a', count=2), group('b', count=4), max_nodes=5)
    assert message == ("Job too large: more than 5 nodes (at b); the operator's "
                       'zerovm_maxnodes (proxy) raises the limit')


def test_max_nodes_stops_listing():
    def endless(account, container, prefix):
        for number in range(10**9):
            yield f'o{number}'

    groups = parse(group(devices=[{'name': 'stdin', 'path': 'swift://~/c/*'}]))
    with pytest.raises(JobError, match=r'^Job too large: more than 3 nodes \(at sort\); '
                                       r'.*zerovm_maxnodes'):
        expand(groups, endless, FakeSwift().list_containers, max_nodes=3)


def test_nodes_stream_as_the_listing_is_read():
    read = []

    def listing(account, container, prefix):       # a container of a million objects
        for number in range(10**6):
            read.append(number)
            yield f'o{number:07d}'

    nodes = stream(parse(group(devices=[{'name': 'stdin', 'path': 'swift://~/c/*'}])),
                   listing, FakeSwift().list_containers, max_nodes=10**6)
    first = [next(nodes) for _ in range(5)]
    assert [n.name for n in first] == [f'sort-{i}' for i in range(1, 6)]
    assert [n.id for n in first] == [1, 2, 3, 4, 5]
    assert [str(n.attach.path) for n in first] == [
        f'swift://{ACCOUNT}/c/o{i:07d}' for i in range(5)]
    assert len(read) == 5                  # not a name more than the nodes taken


def test_the_nodes_of_a_group_share_their_program_s_location():
    """Parsed once for the group's nodes (a 10,000-node job parsed it 20,000 times)."""
    nodes = list(stream(parse(group(devices=[{'name': 'stdin', 'path': 'swift://~/c/*'}])),
                        FakeSwift({'c': ['o1', 'o2', 'o3']}).list_objects,
                        FakeSwift().list_containers))
    paths = [n.exec.swift_path for n in nodes]
    assert len(paths) == 3 and paths[0] == parse_location(nodes[0].exec.path, ACCOUNT)
    assert all(p is paths[0] for p in paths)


def test_a_container_too_large_for_the_job_is_refused_before_any_node():
    swift = FakeSwift({'c': [f'o{i}' for i in range(5)], 'd': ['a', 'b']})
    groups = parse(group(devices=[{'name': 'stdin', 'path': 'swift://~/c/*'}]))
    nodes = stream(groups, swift.list_objects, swift.list_containers, max_nodes=4,
                   count_objects=lambda account, container: 5)
    with pytest.raises(JobError, match=r'^Job too large: more than 4 nodes'):
        next(nodes)
    # a count above the limit is checked by listing: the objects that match decide
    groups = parse(group(devices=[{'name': 'stdin', 'path': 'swift://~/d/*'}]))
    assert len(list(stream(groups, swift.list_objects, swift.list_containers, max_nodes=4,
                           count_objects=lambda account, container: 9))) == 2


def test_a_name_made_twice_is_found_while_streaming():
    for groups in ([group('map', count=2), group('map-2')],
                   [group('map-2'), group('map', count=2)]):
        with pytest.raises(JobError, match='^Duplicate node name map-2 '):
            list(stream(parse(*groups), FakeSwift().list_objects,
                        FakeSwift().list_containers))
    assert len(list(stream(parse(group('map', count=2), group('map-3')),
                           FakeSwift().list_objects, FakeSwift().list_containers))) == 3


def test_nodes_share_the_groups_devices_and_metadata_but_not_their_paths():
    # a copy of the metadata per node held the proxy's memory (tests/unit/
    # test_hostile_review19.py), a copy of a device whose path the node keeps too
    # (tests/unit/test_proxy_connected_memory.py): nothing changes them once parsed
    first, second = run(group(count=2, devices=[
        {'name': 'stderr', 'meta': {'k': 'v'}},
        {'name': 'stdout', 'path': 'swift://~/out/*.txt', 'meta': {'k': 'w'}}]))
    assert first.devices[0] is second.devices[0]
    assert second.devices[0].meta == {'k': 'v'}
    assert first.devices[1] is not second.devices[1]
    assert first.devices[1].meta is second.devices[1].meta
    assert (str(first.devices[1].path), str(second.devices[1].path)) == (
        'swift://AUTH_test/out/sort-1.txt', 'swift://AUTH_test/out/sort-2.txt')


# -- the graph ----------------------------------------------------------------------

def test_connect_wires_every_pair():
    swift = FakeSwift({'data': ['b1', 'b2', 'b3']})
    nodes = by_name(run(
        group('mapper', devices=[{'name': 'stdin', 'path': 'swift://~/data/b*'}],
              connect=['mapper', 'reducer']),
        group('reducer', count=2, connect=['manager']),
        group('manager'),
        swift=swift))
    assert nodes['mapper-3'].writes_to == ['mapper-1', 'mapper-2', 'reducer-1', 'reducer-2']
    assert nodes['mapper-3'].reads_from == ['mapper-1', 'mapper-2']
    assert nodes['reducer-1'].reads_from == ['mapper-1', 'mapper-2', 'mapper-3']
    assert nodes['reducer-1'].writes_to == ['manager']
    assert nodes['manager'].reads_from == ['reducer-1', 'reducer-2']
    assert nodes['manager'].writes_to == []


def test_connect_follows_group_order_for_readers():
    nodes = by_name(run(group('b', connect=['c']), group('a', count=2, connect=['c']),
                        group('c')))
    assert nodes['c'].reads_from == ['b', 'a-1', 'a-2']


def test_self_connect_of_a_single_match_has_no_channel():
    swift = FakeSwift({'c': ['only']})
    [node] = run(group(devices=[{'name': 'stdin', 'path': 'swift://~/c/*'}], connect=['sort']),
                 swift=swift)
    assert (node.reads_from, node.writes_to) == ([], [])


# -- placement ----------------------------------------------------------------------

@pytest.mark.parametrize('devices, attach, expected', [
    (['stdin', 'input', 'stdout'], None, 'input'),
    (['input', 'stdin', 'stdout'], None, 'stdin'),
    (['script', 'image', 'stdout'], None, 'image'),
    (['stdout', 'script'], None, 'script'),
    (['stdin', 'script', 'image'], None, 'stdin'),
    (['stdout', 'output'], None, 'stdout'),
    (['stdin', 'python3', 'stdout'], None, 'stdin'),
    (['input', 'stdout'], 'stdout', 'stdout'),
    ([], None, None),
])
def test_placement(devices, attach, expected):
    specs = [{'name': name} if name in ('python3', 'stderr') else
             {'name': name, 'path': f'swift://~/c/{name}'} for name in devices]
    [node] = run(group(devices=specs, attach=attach), system_images=['python3'])
    assert (node.attach.name if node.attach else None) == expected


def test_path_less_devices_never_place():
    [node] = run(group(devices=[{'name': 'input', 'path': 'swift://~/c/o'}, {'name': 'stdin'}]))
    assert node.attach.name == 'input'


def test_attach_uses_the_resolved_path():
    swift = FakeSwift({'c': ['a']})
    [node] = run(group(devices=[{'name': 'stdin', 'path': 'swift://~/c/*'},
                                {'name': 'stdout', 'path': 'swift://~/out/*'}],
                       attach='stdout'), swift=swift)
    assert node.attach == Device('stdout', SwiftPath(ACCOUNT, 'out', 'a'))


# -- what the proxy authorises ------------------------------------------------------

def test_job_paths():
    swift = FakeSwift({'c': ['a', 'b']})
    nodes = run(
        group('map', devices=[{'name': 'stdin', 'path': 'swift://~/c/*'},
                              {'name': 'input', 'path': 'swift://other/db'},
                              {'name': 'stdout', 'path': 'swift://~/out/*'},
                              {'name': 'stderr'}]),
        group('tool', exec={'path': 'file://python3:python'},
              devices=[{'name': 'python3'}, {'name': 'image', 'path': 'swift://~/app/app.tar'},
                       {'name': 'stdin'}, {'name': 'output'}]),
        swift=swift, system_images=['python3'])
    assert job_paths(nodes) == (
        {SwiftPath(ACCOUNT, 'bin', 'sort'), SwiftPath(ACCOUNT, 'c', 'a'),
         SwiftPath(ACCOUNT, 'c', 'b'), SwiftPath('other', 'db'),
         SwiftPath(ACCOUNT, 'app', 'app.tar')},
        {SwiftPath(ACCOUNT, 'out', 'a'), SwiftPath(ACCOUNT, 'out', 'b')},
    )


def test_node_argv_without_args():
    node = Node('n', 'g', 1, 1, Exec('p'), [])
    assert node.argv == ['n'] and node.attach is None and node.replicate == 1


def test_success_exit_codes_and_storing_on_failure():
    [parsed] = parse(group(exec={**EXE, 'ok_exit': [1, 0, 1]}, devices=[
        {'name': 'stdout', 'path': 'swift://~/data/out.txt'},
        {'name': 'stderr', 'path': 'swift://~/data/err.txt', 'store': 'always'}]))
    assert parsed.exec.ok_exit == (0, 1)
    assert [d.store for d in parsed.devices] == ['success', 'always']
    assert parse(group())[0].exec.ok_exit == (0,)


@pytest.mark.parametrize(('fields', 'message'), [
    ({'exec': {**EXE, 'ok_exit': []}}, 'Invalid nexe property exec.ok_exit in sort: must be a '
                                       'non-empty list of exit codes, got an empty list'),
    ({'exec': {**EXE, 'ok_exit': 0}}, 'must be a non-empty list of exit codes, got 0'),
    ({'exec': {**EXE, 'ok_exit': [-1]}}, 'must be an integer from 0 to 255, got -1'),
    ({'devices': [{'name': 'stdin', 'store': 'always'}]},
     'Invalid store for device stdin in sort: must be one of success, always (written devices '
     'only), got "always"'),
    ({'devices': [{'name': 'stdout', 'store': 'yes'}]}, 'got "yes"'),
])
def test_bad_success_exit_codes_or_store(fields, message):
    with pytest.raises(JobError) as caught:
        parse(group(**fields))
    assert message in str(caught.value)


# -- what ends up in headers, manifests and metadata -------------------------------------------

@pytest.mark.parametrize('name', ['sört', 'ноде', 'node-β'])
def test_non_ascii_node_name_is_refused(name):
    message = error(group(name))
    assert 'Invalid node name in node group #1' in message
    assert 'only ASCII characters are allowed' in message


@pytest.mark.parametrize('name', ['a\rb', 'a\nX-Evil: 1', 'nul\x00'])
def test_header_unsafe_node_name_is_refused(name):
    assert 'Invalid node name in node group #1' in error(group(name))


@pytest.mark.parametrize('field, value', [
    ('args', ['ok', 'with\x00nul']), ('args', 'a "b\x00c"'), ('env', {'X': 'a\x00b'}),
    ('env', {'X': 'line\r\nbreak'}), ('name', 'argv0\n')])
def test_nul_and_newlines_in_exec_strings_are_refused(field, value):
    message = error(group(exec={**EXE, field: value}))
    assert f'exec.{field}' in message and 'in sort' in message
    assert 'control characters are not allowed' in message


def test_huge_arguments_are_bounded_by_the_job_size():
    with pytest.raises(JobTooLarge):
        parse_job(json.dumps([group(exec={**EXE, 'args': ['x' * 5000]})]), ACCOUNT,
                  max_size=4096)


def test_unicode_meta_value_is_carried():
    node, = run(group(devices=[{'name': 'stdout', 'path': 'swift://~/c/o',
                                'meta': {'Source': 'Zürich ✓'}}]))
    assert node.devices[0].meta == {'Source': 'Zürich ✓'}


@pytest.mark.parametrize('meta, reason', [
    ({'Source': 'ü' * 129}, 'value of Source is 258 bytes (UTF-8), at most 256 are allowed'),
    ({'N' * 129: 'v'}, 'is longer than 128 characters'),
    ({f'K{i}': 'v' for i in range(91)}, '91 items, at most 90 are allowed'),
    ({f'K{i:02}': 'v' * 250 for i in range(17)}, 'bytes of names and values, at most 4096'),
    ({'Söurce': 'v'}, 'cannot be part of a header name'),
    ({'Source': 'a\r\nb'}, 'control characters are not allowed')])
def test_meta_beyond_swift_limits_is_refused(meta, reason):
    message = error(group(devices=[{'name': 'stdout', 'path': 'swift://~/c/o', 'meta': meta}]))
    assert message.startswith('Invalid meta for device stdout') and 'in sort' in message
    assert reason in message


def test_non_ascii_content_type_is_refused():
    message = error(group(devices=[{'name': 'stdout', 'path': 'swift://~/c/o',
                                    'content_type': 'text/plain; charset=ütf'}]))
    assert 'Invalid content_type for device stdout in sort' in message and 'ASCII' in message


def test_a_group_may_ask_for_an_engine():
    """Every node of the group carries it (the proxy sends it to the object server)."""
    [plain, strict] = parse(group('a'), group('b', engine='emulated'))
    assert (plain.engine, strict.engine) == (None, 'emulated')
    assert error(group(engine='fast')) == ('Invalid engine in sort: must be one of auto, '
                                           'native, emulated, got "fast"')
    assert error(group(engine=['native'])).endswith('got a list')


@pytest.mark.parametrize('scheme', ['SWIFT://', 'Swift://'])
def test_a_swift_url_in_upper_case_is_one_in_lower_case(scheme):
    # URL schemes are case-insensitive (RFC 3986): SWIFT://~/c/o was "expected swift://..."
    assert parse_location(f'{scheme}~/c/o', ACCOUNT) == SwiftPath(ACCOUNT, 'c', 'o')
    [parsed] = parse(group(exec={'path': f'{scheme}~/bin/sort'},
                           devices=[{'name': 'stdin', 'path': f'{scheme}~/data/a'},
                                    {'name': 'stdout', 'path': f'{scheme}~/out/b'}]))
    assert parsed.exec.path == f'swift://{ACCOUNT}/bin/sort'
    assert [d.path for d in parsed.devices] == [SwiftPath(ACCOUNT, 'data', 'a'),
                                                SwiftPath(ACCOUNT, 'out', 'b')]

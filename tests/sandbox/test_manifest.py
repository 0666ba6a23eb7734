"""ZeroVM's functional manifest suite (tests/functional/manifest/<case>.<exit code>.manifest),
case by case through ``zvm MANIFEST``: the exit code, and a report that says why.

ZeroVM's own files mixed grammar versions; each case here is written in the
20130611 grammar with the one fault its name describes.
"""

from __future__ import annotations

import errno

import pytest

STDIN = 'Channel = {d}/stdin, /dev/stdin, 0, 0, 32, 32, 0, 0\n'
STDOUT = 'Channel = {d}/stdout, /dev/stdout, 0, 0, 0, 0, 32, 32\n'
STDERR = 'Channel = {d}/stderr, /dev/stderr, 0, 0, 0, 0, 32, 32\n'
STD = STDIN + STDOUT + STDERR
HEAD = 'Version = 20130611\nProgram = {prog}\nMemory = 33554432, 0\nTimeout = 10\n'


def case(head: str = HEAD, channels: str = STD, extra: str = '') -> str:
    return head + extra + channels


CASES = {
    'good.0': (case(), 0, 'ok'),
    'no_nexe.2': (case(HEAD.replace('{prog}', '{d}/no_such.nexe')), errno.ENOENT,
                  'No such file or directory'),
    'invalid_nexe.2': (case(HEAD.replace('{prog}', '{d}')), errno.ENOENT, 'Is a directory'),
    'too_large_nexe.5': (case(HEAD.replace('{prog}', '/dev/zero')), errno.EIO,
                         'too large file to load'),
    'malformed_nexe.8': (case(HEAD.replace('{prog}', '{d}/manifest')), errno.ENOEXEC,
                         'not a valid program'),
    'invalid_memory.12': (case(HEAD.replace('33554432, 0', '-1, 0')), errno.ENOMEM,
                          'invalid memory size'),
    'nil_channel.22': (case(channels=STD.replace('0, 0, 32, 32, 0, 0', '0, 0, 0, 0, 0, 0')),
                       errno.EINVAL, '/dev/stdin has invalid i/o type'),
    'invalid_channel_source_type.93': (case(channels=STD.replace('{d}/stdin', '{d}')),
                                       errno.EPROTONOSUPPORT, 'invalid /dev/stdin source type'),
    'duplicated_channel_alias.14': (case(channels=STD + STDOUT), errno.EFAULT,
                                    '/dev/stdout is already allocated'),
    'empty_manifest.14': ('', errno.EFAULT, 'Timeout not specified'),
    'empty_value.14': (case(extra='Node = \n'), errno.EFAULT, 'invalid node id 0'),
    'invalid_channel_access_type.14': (case(channels=STD.replace('stdin, 0,', 'stdin, 4,')),
                                       errno.EFAULT, '/dev/stdin has invalid type 4'),
    'invalid_channel_path.14': (case(channels=STD.replace('{d}/stdin', 'stdin')),
                                errno.EFAULT, 'only absolute path channels are allowed'),
    'invalid_limits.14': (case(channels=STD.replace('32, 32, 0, 0', '-1, 32, 0, 0')),
                          errno.EFAULT, 'negative limits for /dev/stdin'),
    'invalid_memory_tag.14': (case(HEAD.replace('33554432, 0', '33554432, 2')), errno.EFAULT,
                              'invalid memory etag token'),
    'invalid_name_server_host.14': (case(extra='NameServer = udp:10.0.0.256:5544\nNode = 1\n'),
                                    errno.EFAULT, 'malformed ip token'),
    'invalid_name_server_proto.14': (case(extra='NameServer = abc:10.0.0.1:5544\nNode = 1\n'),
                                     errno.EFAULT, 'invalid channel name'),
    'invalid_name_server_type.14': (case(extra='NameServer = tcp:10.0.0.1:5544\nNode = 1\n'),
                                    errno.EFAULT, 'the name server must be udp'),
    'invalid_node.14': (case(extra='Node = usidramki\n'), errno.EFAULT,
                        "invalid numeric value 'usidramki'"),
    'invalid_timeout.14': (case(HEAD.replace('Timeout = 10', 'Timeout = 0')), errno.EFAULT,
                           'invalid timeout 0'),
    'missed_memory_tag.14': (case(HEAD.replace('33554432, 0', '33554432')), errno.EFAULT,
                             'invalid memory token'),
    'name_server_missed_node.14': (case(extra='NameServer = udp:10.0.0.1:5544\n'),
                                   errno.EFAULT, 'Node must be specified'),
    'negative_timeout.14': (case(HEAD.replace('Timeout = 10', 'Timeout = -1')), errno.EFAULT,
                            'invalid timeout -1'),
    'nexe_skipped.14': (case(HEAD.replace('Program = {prog}\n', '')), errno.EFAULT,
                        'Program not specified'),
    'no_channels.14': (case(channels=''), errno.EFAULT, 'not enough channels: 0'),
    'no_std_channels.14': (case(channels=STD.replace('/dev/std', '/dev/x')), errno.EFAULT,
                           'missing standard channels in manifest'),
    'no_version.14': (case(HEAD.replace('Version = 20130611\n', '')), errno.EFAULT,
                      'Version not specified'),
    'not_enough_std_channels.14': (
        case(channels=STDIN + STDOUT + STDERR.replace('/dev/stderr,', '/dev/input,')),
        errno.EFAULT, 'missing standard channels in manifest'),
    'not_existing_channel_name.14': (case(channels=STD.replace('{d}/stdin', '/@#$%^&*()')),
                                     errno.EFAULT, 'cannot open /@#$%^&*()'),
    'too_few_channel_attributes.14': (case(channels=STD.replace('32, 32, 0, 0', '32, 32, 0')),
                                      errno.EFAULT, 'invalid channel tokens number'),
    'too_much_channel_attributes.14': (
        case(channels=STD.replace('32, 32, 0, 0', '32, 32, 0, 0, 0')),
        errno.EFAULT, 'invalid channel tokens number'),
    'wrong_version.14': (case(HEAD.replace('20130611', '20140320')), errno.EFAULT,
                         'invalid manifest version'),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_zerovm_functional_manifest_case(guest, zerovm, name, engine):
    text, code, says = CASES[name]
    assert int(name.rsplit('.', 1)[1]) == code
    s = zerovm.run(text.replace('{prog}', str(guest('hello'))))
    assert s.returncode == code, s
    assert s.stdout.count('\n') == 7 and s.stdout.endswith('\n\n'), s   # six, an empty one
    assert says in s.state, s
    assert s.lines[1:3] == ['0', '0'], s
    if code:
        assert s.validation == 2, s           # not validated: the session ended before
        assert s.lines[3:5] == ['disabled', '0.00 0.00 0 0 0 0 0 0 0 0'], s
        assert not (s.dir / 'stdout').exists() or s.read('stdout') == b'', s
    else:
        assert s.validation == 0 and s.read('stdout') == b'Hello, world!\n', s


def test_the_first_error_decides_the_exit_code(guest, zerovm, engine):
    """A missing program is found before a nil channel (ZeroVM reads the program first)."""
    nil = STD.replace('0, 0, 32, 32, 0, 0', '0, 0, 0, 0, 0, 0')
    s = zerovm.run(case(HEAD.replace('{prog}', '{d}/none'), channels=nil))
    assert s.returncode == errno.ENOENT, s
    s = zerovm.run(case(HEAD.replace('{prog}', str(guest('hello'))), channels=nil))
    assert s.returncode == errno.EINVAL, s


def test_a_grammar_error_names_its_line(guest, zerovm, engine):
    s = zerovm.run(case(channels=STD.replace('32, 32, 0, 0', '32, 3x2, 0, 0')).replace(
        '{prog}', str(guest('hello'))))
    assert s.returncode == errno.EFAULT
    assert s.state == "MANIFEST 5: invalid numeric value 'x2'", s


def test_values_are_checked_before_any_channel_is_opened(guest, zerovm, engine):
    """A bad timeout must not truncate an output that exists."""
    text = case(HEAD.replace('Timeout = 10', 'Timeout = 0')).replace('{prog}',
                                                                     str(guest('hello')))
    s = zerovm.run(text, files={'stdout': b'keep me'})
    assert s.returncode == errno.EFAULT and s.read('stdout') == b'keep me', s

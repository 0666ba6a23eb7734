"""The ZeroVM 20130611 manifest grammar, the NVRAM format and ZeroVM's report text."""

from __future__ import annotations

import errno
import stat

import pytest
from sandbox.manifests import zerocloud_parse

from zvm_core.report import (
    Accounting,
    ChannelAccounting,
    Report,
    zerovm_outcome,
    zerovm_text,
)
from zvm_core.zerovm import nvram
from zvm_core.zerovm.manifest import ChannelDecl, Manifest, ManifestError, load, parse, to_int

GOOD = '''\
=====================================================================
== switches for zerovm (a banner: lines without one "=" are ignored)
=====================================================================
Version = 20130611
Program = /bin/prog
Memory = 33554432, 1
Timeout = 10
Channel = /dev/stdin, /dev/stdin, 0, 0, 8192, 8192, 0, 0
Channel = /tmp/out, /dev/stdout, 0, 1, 0, 0, 0x100, 010
Channel = /dev/null, /dev/stderr, 0, 0, 0, 0, 1, 1
Channel = /a;/b ; /c, /dev/input, 3, 0, 1, 2, 3, 4
Unknown = 5
a = b = c
'''


def error(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as e:
        parse(text).check()
    return e.value


def manifest(*lines: str, std: bool = True) -> str:
    head = ['Version = 20130611', 'Program = /p', 'Memory = 65536, 0', 'Timeout = 1']
    chans = ['Channel = /dev/null, /dev/stdin, 0, 0, 1, 1, 0, 0',
             'Channel = /dev/null, /dev/stdout, 0, 0, 0, 0, 1, 1',
             'Channel = /dev/null, /dev/stderr, 0, 0, 0, 0, 1, 1'] if std else []
    return '\n'.join(head + chans + list(lines)) + '\n'


def test_a_manifest_parses_to_its_model():
    m = parse(GOOD)
    assert (m.program, m.memory, m.memory_etag, m.timeout) == ('/bin/prog', 33554432, True, 10)
    assert m.channels == [
        ChannelDecl(('/dev/stdin',), '/dev/stdin', 0, False, 8192, 8192, 0, 0),
        ChannelDecl(('/tmp/out',), '/dev/stdout', 0, True, 0, 0, 256, 8),
        ChannelDecl(('/dev/null',), '/dev/stderr', 0, False, 0, 0, 1, 1),
        ChannelDecl(('/a', '/b', '/c'), '/dev/input', 3, False, 1, 2, 3, 4)]
    m.check()
    assert (m.channels[0].readable, m.channels[0].writable) == (True, False)
    assert (m.channels[1].readable, m.channels[1].writable) == (False, True)


def test_whitespace_and_crlf_are_trimmed():
    m = parse(manifest().replace('\n', '\r\n').replace(' = ', '\t=  '))
    assert m.program == '/p' and m.timeout == 1
    assert [c.alias for c in m.channels] == ['/dev/stdin', '/dev/stdout', '/dev/stderr']


@pytest.mark.parametrize('text, value', [
    ('10', 10), ('010', 8), ('0x1F', 31), ('0X10', 16), ('', 0), ('  ', 0), ('-5', -5),
    ('+7', 7), ('0', 0), (' 12 ', 12)])
def test_numbers_are_c_integers(text, value):
    assert to_int(text) == value


@pytest.mark.parametrize('text, junk', [('08', '8'), ('0x', 'x'), ('-', '-'), ('1a', 'a'),
                                        ('99999999999999999999', '99999999999999999999')])
def test_a_bad_number_names_its_junk(text, junk):
    with pytest.raises(ManifestError) as e:
        to_int(text)
    assert (e.value.errno, e.value.message) == (errno.EFAULT, f"invalid numeric value '{junk}'")


def test_errors_carry_the_line_number():
    e = error(manifest('Channel = /dev/null, /dev/input, 0, 0, 1x, 1, 0, 0'))
    assert (e.errno, e.line) == (errno.EFAULT, 8)
    assert str(e) == "MANIFEST 8: invalid numeric value 'x'"


@pytest.mark.parametrize('text, code, message', [
    ('', errno.EFAULT, 'Timeout not specified'),      # ZeroVM checks from the last keyword
    (manifest().replace('Version', 'Versio'), errno.EFAULT, 'Version not specified (line 1 '
     'has "Versio", not a keyword, so it was ignored: keywords are spelt Version, '
     'case-sensitive)'),
    (manifest().replace('Program', 'program'), errno.EFAULT, 'Program not specified (line 2 '
     'has "program", not a keyword, so it was ignored: keywords are spelt Program, '
     'case-sensitive)'),
    (manifest().replace('Timeout', 'Deadline'), errno.EFAULT, 'Timeout not specified'),
    (manifest('Timeout = 2'), errno.EFAULT, 'duplicate Timeout keyword'),
    (manifest().replace('20130611', '20140320'), errno.EFAULT, 'invalid manifest version'),
    (manifest().replace('65536, 0', '65536'), errno.EFAULT, 'invalid memory token'),
    (manifest().replace('65536, 0', '65536, 2'), errno.EFAULT, 'invalid memory etag token'),
    (manifest().replace('65536, 0', '0, 0'), errno.ENOMEM, 'invalid memory size'),
    (manifest().replace('65536, 0', '4294967297, 0'), errno.ENOMEM, 'invalid memory size'),
    (manifest().replace('Timeout = 1', 'Timeout = 0'), errno.EFAULT, 'invalid timeout 0'),
    (manifest().replace('Timeout = 1', 'Timeout = 2147483648'), errno.EFAULT,
     'invalid timeout 2147483648'),
    (manifest('Node = 0'), errno.EFAULT, 'invalid node id 0'),
    (manifest('NameServer = udp:10.0.0.1:5544'), errno.EFAULT,
     'Node must be specified when NameServer is'),
    (manifest('NameServer = tcp:10.0.0.1:5544', 'Node = 1'), errno.EFAULT,
     'the name server must be udp:<host>:<port>'),
    (manifest('NameServer = udp:10.0.0.300:1', 'Node = 1'), errno.EFAULT, 'malformed ip token'),
    (manifest('NameServer = xyz:10.0.0.1:1', 'Node = 1'), errno.EFAULT, 'invalid channel name'),
    (manifest('Job = /' + 'j' * 200), errno.EFAULT, 'too long Job name'),
    (manifest('Channel = x, /dev/input, 0, 0, 1, 1, 0, 0'), errno.EFAULT,
     'only absolute path channels are allowed'),
    (manifest('Channel = tcp:1, /dev/input, 0, 0, 1, 1, 0, 0'), errno.EFAULT,
     'invalid channel url'),
    (manifest('Channel = /x, /dev/input, 0, 0, 1, 1, 0'), errno.EFAULT,
     'invalid channel tokens number'),
    (manifest('Channel = /x, /dev/input, 0, 2, 1, 1, 0, 0'), errno.EFAULT,
     'invalid channel numeric token'),
    (manifest('Channel = /x, /dev/input, 0, 0, -1, 1, 0, 0'), errno.EFAULT,
     'negative limits for /dev/input'),
    (manifest('Channel = /x, /dev/input, 4, 0, 1, 1, 0, 0'), errno.EFAULT,
     '/dev/input has invalid type 4'),
    (manifest('Channel = /x, /dev/stdin, 0, 0, 1, 1, 0, 0'), errno.EFAULT,
     '/dev/stdin is already allocated'),
    (manifest('Channel = ' + ';'.join(['/x'] * 17) + ', /dev/i, 0, 0, 1, 1, 0, 0'),
     errno.EFAULT, '/dev/i: more than 16 sources'),
    (manifest(std=False), errno.EFAULT, 'not enough channels: 0 (a manifest needs '
     '/dev/stdin, /dev/stdout, /dev/stderr; missing /dev/stdin, /dev/stdout, /dev/stderr)'),
    (manifest(std=False).replace('Timeout = 1', 'Timeout = 1\n' + '\n'.join(
        f'Channel = /dev/null, /dev/{n}, 0, 0, 1, 1, 0, 0' for n in ('stdin', 'stdout'))),
     errno.EFAULT, 'not enough channels: 2 (a manifest needs /dev/stdin, /dev/stdout, '
     '/dev/stderr; missing /dev/stderr)'),
    (manifest(*[f'Channel = /x, /dev/c{i}, 0, 0, 1, 1, 0, 0' for i in range(3)], std=False),
     errno.EFAULT, 'missing standard channels in manifest (a manifest needs /dev/stdin, '
     '/dev/stdout, /dev/stderr; missing /dev/stdin, /dev/stdout, /dev/stderr)'),
    ('\n' * 9000, errno.EFAULT, 'manifest has 9000 lines; the limit is 8192'),
])
def test_errors_have_zerovms_codes_and_messages(text, code, message):
    e = error(text)
    assert (e.errno, e.message) == (code, message)


def test_too_many_channels_is_enfile():
    """8192 lines cannot hold 10915 channels; a model built in Python can."""
    m = parse(manifest())
    m.channels += [ChannelDecl(('/x',), f'/dev/c{i}', gets=1, get_size=1) for i in range(10912)]
    with pytest.raises(ManifestError) as e:
        m.check()
    assert (e.value.errno, e.value.message) == (errno.ENFILE, 'channels number reached maximum')


def test_a_manifest_over_512_kib_is_refused():
    e = error(manifest().encode() + b'#' * (512 << 10))
    assert e.errno == errno.EFAULT and 'ZeroVM reads only 524288' in e.message


def test_network_sources_parse_and_are_marked():
    m = parse(manifest('Channel = tcp:2:, /dev/out/2, 0, 0, 0, 0, 10, 100',
                       'Channel = TCP:10.0.0.2:5, /dev/in/2, 0, 1, 10, 100, 0, 0',
                       'NameServer = udp:10.0.0.254:5544', 'Node = 1'))
    m.check()
    assert [c.network for c in m.channels] == [False, False, False, True, True]
    assert (m.name_server, m.node) == ('udp:10.0.0.254:5544', 1)


def test_text_and_dict_round_trip():
    m = parse(GOOD + 'Node = 3\nJob = /tmp/sock\nEtag = abc\n')
    assert parse(m.to_text()) == m
    assert Manifest.from_dict(m.to_dict()) == m
    assert m.to_dict()['channels'][3]['sources'] == ['/a', '/b', '/c']


def test_from_dict_builds_the_model_from_python():
    m = Manifest.from_dict({
        'program': '/p', 'memory': 1 << 26, 'timeout': 5,
        'channels': [{'sources': '/dev/null', 'alias': '/dev/stdin', 'gets': 1, 'get_size': 1},
                     {'sources': ['/o'], 'alias': '/dev/stdout', 'puts': 1, 'put_size': 9,
                      'etag': True},
                     {'sources': '/e;/f', 'alias': '/dev/stderr', 'puts': 1, 'put_size': 9}]})
    m.check()
    assert m.channels[2].sources == ('/e', '/f') and m.channels[1].etag
    assert 'Channel = /e;/f, /dev/stderr, 0, 0, 0, 0, 1, 9' in m.to_text()


@pytest.mark.parametrize('data, says', [
    ({'program': '/p', 'memory': 1, 'timeout': 1, 'bogus': 1}, 'unknown field(s) bogus'),
    ({'program': '/p', 'memory': '1', 'timeout': 1}, "bad memory '1'"),
    ({'program': '/p', 'memory': 1, 'timeout': True}, 'bad timeout True'),
    ({'program': '/p', 'memory': 1}, "missing 1 required positional argument: 'timeout'"),
    ({'program': '/p', 'memory': 1, 'timeout': 1, 'version': '1'}, 'invalid manifest version'),
    ({'program': '/p', 'memory': 1, 'timeout': 1, 'channels': [{'alias': '/dev/x'}]},
     'bad sources'),
    ({'program': '/p', 'memory': 1, 'timeout': 1,
      'channels': [{'sources': 'rel', 'alias': '/dev/x'}]},
     'only absolute path channels are allowed'),
    ({'program': '/p', 'memory': 1, 'timeout': 1,
      'channels': [{'sources': '/x', 'alias': '/dev/x', 'gets': -1}]},
     'negative limits for /dev/x'),
])
def test_from_dict_refuses_what_a_manifest_cannot_say(data, says):
    with pytest.raises(ManifestError) as e:
        Manifest.from_dict(data)
    assert e.value.errno == errno.EFAULT and says in e.value.message


@pytest.mark.parametrize('change', [{'program': '/a=b'}, {'program': '/a\nb'},
                                    {'program': ' /lead'}])
def test_to_text_refuses_values_zerovm_would_read_differently(change):
    m = Manifest('/p', 1, 1)
    for key, value in change.items():
        setattr(m, key, value)
    with pytest.raises(ManifestError):
        m.to_text()
    with pytest.raises(ManifestError):
        ChannelDecl(('/a,b',), '/dev/x').to_text()


def test_load_reports_a_missing_file_as_enoent(tmp_path):
    with pytest.raises(ManifestError) as e:
        load(str(tmp_path / 'none'))
    assert e.value.errno == errno.ENOENT and e.value.message.startswith('manifest open error')


# -- NVRAM ------------------------------------------------------------------------

NVRAM = r'''[args]
args = prog a\x20b c\x2cd  e
[env]
name=HOME, value=/home/u
name=GREETING,value=Hello\x2c World
name=ONLY   # a record is complete once all its keys are there
value=late
name=A, value=1, name=B, value=2
[fstab]
channel=/dev/image, mountpoint=/, access=ro, removable=no
channel=/dev/lib, mountpoint=/lib, access=ro
channel=/dev/a, mountpoint=/a, access=ro, removable=yes, fsname=tar, channel=/dev/b, mountpoint=/b
access=ro
channel=/dev/bad, mountpoint=/x, access=rw
[mapping]
channel=/dev/stdin, mode=pipe
channel=/dev/stdout, mode=char
channel=/dev/input, mode=bogus
[unknown]
args = never
[time]
seconds=1700000000
'''


def test_nvram_sections_become_settings():
    nv = nvram.parse(NVRAM)
    assert nv.args == ['prog', 'a b', 'c,d', 'e']
    # two records on one line: ZRT ends a record at its last key (B was lost)
    assert nv.env == {'HOME': '/home/u', 'GREETING': 'Hello, World', 'ONLY': 'late', 'A': '1',
                      'B': '2'}
    assert nv.mounts == [nvram.Mount('/dev/image', '/', 'ro', 'no', 'tar'),
                         nvram.Mount('/dev/lib', '/lib', 'ro', 'no', 'tar'),
                         nvram.Mount('/dev/a', '/a', 'ro', 'yes', 'tar'),
                         nvram.Mount('/dev/b', '/b', 'ro', 'no', 'tar')]
    assert nv.mapping == {'/dev/stdin': stat.S_IFIFO, '/dev/stdout': stat.S_IFCHR}
    assert nv.time == 1700000000


def test_nvram_escaping_round_trips():
    nv = nvram.Nvram(args=['p', 'two words', 'a,b', 'back\\slash', 'quo"te', 'new\nline'],
                     env={'K': 'v, with spaces'},
                     mounts=[nvram.Mount('/dev/image', '/')],
                     mapping={'/dev/stdin': stat.S_IFCHR}, time=5)
    assert nvram.parse(nv.to_text()) == nv
    assert nvram.escape('a, b') == r'a\x2c\x20b'


def test_an_empty_nvram_says_nothing():
    assert nvram.parse(b'') == nvram.Nvram()


# -- the report -------------------------------------------------------------------

def test_report_text_is_zerovms_six_lines():
    acc = Accounting(channels={'/dev/stdin': ChannelAccounting(3, 100, 0, 0),
                               '/dev/stdout': ChannelAccounting(0, 0, 2, 50)})
    text = zerovm_text(0, 7, [('/dev/stdout', 'ab' * 16), ('/dev/memory', 'cd' * 16)], acc,
                       (0.015, 1.234), 'ok')
    assert text == ('0\n0\n7\n/dev/stdout ' + 'ab' * 16 + ' /dev/memory ' + 'cd' * 16 +
                    '\n0.01 1.23 3 100 2 50 0 0 0 0\nok\n\n')
    assert zerocloud_parse(text) == {'validation': 0, 'daemon': 0, 'retcode': 7,
                                     'etag': f'/dev/stdout {"ab" * 16} /dev/memory {"cd" * 16}',
                                     'cdr': '0.01 1.23 3 100 2 50 0 0 0 0', 'status': 'ok'}
    plain = zerovm_text(2, 0, [], Accounting(), (0, 0), 'two\nlines')
    assert plain.split('\n')[3:6] == ['disabled', '0.00 0.00 0 0 0 0 0 0 0 0', 'two lines']


def test_report_cpu_times_are_never_negative():
    # the session's times are differences of sums of floats: 0.03 - 0.01 - 0.02 < 0
    text = zerovm_text(0, 0, [], Accounting(), (0.03 - 0.01 - 0.02, -0.0), 'ok')
    assert text.split('\n')[4] == '0.00 0.00 0 0 0 0 0 0 0 0'


@pytest.mark.parametrize('report, outcome', [
    (Report('ok', 3), ('ok', 0)),
    (Report('quota', 1, 'quota exceeded'), ('ok', 0)),       # the program exited by itself
    # exit 0 after a write cut short: zvm said ok, 0 where zerovm-compat.md says 122
    (Report('quota', 0, 'quota exceeded on /dev/stdout: a write was refused or cut short'),
     ('quota exceeded on /dev/stdout: a write was refused or cut short', errno.EDQUOT)),
    (Report('fault', None, 'x', exit_state='Signal 11 from untrusted code: Halting at 0x1'),
     ('Signal 11 from untrusted code: Halting at 0x1', errno.EINTR)),
    (Report('timeout', None, 'wall-clock timeout'), ('session timeout', errno.EINTR)),
    (Report('fuel', None, 'fuel exhausted'), ('fuel exhausted', errno.EINTR)),
    (Report('quota', None, 'kept trying'), ('kept trying', errno.EDQUOT)),
    (Report('memory', None, 'no\nmemory'), ('no memory', errno.ENOMEM)),
    (Report('validation', None, 'validation failed'), ('validation failed', errno.ENOEXEC)),
    (Report('killed', None, 'sources disagree'), ('sources disagree', errno.EIO)),
])
def test_report_outcome_is_zerovms_exit_state_and_code(report, outcome):
    assert zerovm_outcome(report) == outcome

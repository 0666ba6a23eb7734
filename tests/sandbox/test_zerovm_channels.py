"""ZeroVM's channel kinds through the trap API, each with its limits: sequential and
random read-only, sequential and random write-only, random read-write, appendable
(CDR), character devices and FIFOs, several sources; preallocation; etags."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time

import pytest

from zvm_core.channels import ChannelSetupError, zerovm_channel
from zvm_core.zerovm.manifest import ChannelDecl

from .manifests import NVRAM_CHANNEL, STD_CHANNELS

DATA = b'0123456789'
EDQUOT, EINVAL, EFAULT = -errno.EDQUOT, -errno.EINVAL, -errno.EFAULT
# zvm's exit code when a quota cut a write of a program that then exited 0
# (doc/zerovm-compat.md: the output is not what it wrote)
QUOTA = errno.EDQUOT


def run(trapper, channel: str, ops: list[str], files=None) -> list[str]:
    return trapper(ops, channel + '\n', files)[1]


def test_sequential_read_only(trapper, engine):
    """The offset is ignored; a quota that the data exactly fills answers the read
    that would have seen the end with -EDQUOT, not 0 (the EOF counts)."""
    ch = 'Channel = {d}/data, /dev/input, 0, 0, 100, 10, 0, 0'
    out = run(trapper, ch, ['r:/dev/input:4:0', 'r:/dev/input:4:999', 'r:/dev/input:4:0',
                            'r:/dev/input:4:0'], {'data': DATA})
    assert out == ['r /dev/input 4 0 = 4 0123', 'r /dev/input 4 999 = 4 4567',
                   'r /dev/input 4 0 = 2 89', f'r /dev/input 4 0 = {EDQUOT}']


@pytest.mark.parametrize('gets, results', [
    (100, '6,4,0,0'),                   # the end is sticky
    (3, '6,4,0,0'),                     # the read that sees the end is the third get
    (2, f'6,4,{EDQUOT},{EDQUOT}'),      # two gets: the end is never seen
])
def test_sequential_read_eof_is_sticky_and_counts_as_a_get(trapper, gets, results, engine):
    ch = f'Channel = {{d}}/data, /dev/input, 0, 0, {gets}, 100, 0, 0'
    out = run(trapper, ch, ['R:/dev/input:6:4'], {'data': DATA})
    assert out == [f'R /dev/input = {results}']


def test_random_read_only(trapper, engine):
    ch = 'Channel = {d}/data, /dev/input, 3, 0, 100, 8, 0, 0'
    out = run(trapper, ch, [
        'r:/dev/input:4:6', 'r:/dev/input:4:10', 'r:/dev/input:4:12', 'r:/dev/input:4:-1',
        'r:/dev/input:8:0', 'r:/dev/input:1:0', 'w:/dev/input:x:0'], {'data': DATA})
    assert out == ['r /dev/input 4 6 = 4 6789',
                   'r /dev/input 4 10 = 0',                 # at the end: nothing
                   f'r /dev/input 4 12 = {EFAULT}',        # past it: ZeroVM's negative size
                   f'r /dev/input 4 -1 = {EINVAL}',
                   'r /dev/input 8 0 = 4 0123',            # clipped to what get_size leaves
                   f'r /dev/input 1 0 = {EDQUOT}',
                   f'w /dev/input 1 0 = {EDQUOT}']         # not writable: no puts


def test_sequential_write_only(trapper, engine):
    """Writes clip to put_size; once it is used up a sequential write-only channel
    answers -EINVAL, as ZeroVM's did (its put position is past the limit)."""
    ch = 'Channel = {d}/out, /dev/output, 0, 0, 0, 0, 3, 8'
    s, out = trapper(['w:/dev/output:abcde:0', 'w:/dev/output:fghij:77',
                      'w:/dev/output:k:0', 'r:/dev/output:1:0'], ch + '\n', code=QUOTA)
    assert out == ['w /dev/output 5 0 = 5', 'w /dev/output 5 77 = 3',
                   f'w /dev/output 1 0 = {EINVAL}', f'r /dev/output 1 0 = {EDQUOT}']
    assert s.read('out') == b'abcdefgh'


def test_write_calls_quota(trapper, engine):
    ch = 'Channel = {d}/out, /dev/output, 0, 0, 0, 0, 2, 100'
    s, out = trapper([f'w:/dev/output:{c}:0' for c in 'abc'], ch + '\n', code=QUOTA)
    assert out == ['w /dev/output 1 0 = 1', 'w /dev/output 1 0 = 1',
                   f'w /dev/output 1 0 = {EDQUOT}']
    assert s.read('out') == b'ab'


def test_random_write_only(trapper, engine):
    ch = 'Channel = {d}/out, /dev/output, 3, 0, 0, 0, 10, 20'
    s, out = trapper(['w:/dev/output:xyz:5', 'w:/dev/output:ab:0', 'w:/dev/output:q:20',
                      'w:/dev/output:0123456789abcdefghij:0', 'w:/dev/output:z:0', 'm'],
                     ch + '\n', files={'out': b'old content that goes'}, code=QUOTA)
    assert out[:5] == ['w /dev/output 3 5 = 3', 'w /dev/output 2 0 = 2',
                       f'w /dev/output 1 20 = {EINVAL}',     # past put_size, not readable
                       'w /dev/output 20 0 = 15',            # clipped to what is left
                       f'w /dev/output 1 0 = {EDQUOT}']      # nothing left
    assert 'c 4 /dev/output 3 0 0 0 10 20' in out            # truncated when opened
    assert s.read('out') == b'0123456789abcde'               # cut back to what was written


def test_random_read_write(trapper, engine):
    ch = 'Channel = {d}/data, /dev/data, 3, 0, 10, 100, 10, 100'
    s, out = trapper(['r:/dev/data:4:2', 'w:/dev/data:AB:4', 'r:/dev/data:6:0'], ch + '\n',
                     files={'data': DATA})
    assert out == ['r /dev/data 4 2 = 4 2345', 'w /dev/data 2 4 = 2',
                   'r /dev/data 6 0 = 6 0123AB']
    assert s.read('data') == b'0123AB6789'                    # an existing file is kept


def test_a_new_read_write_file_reads_only_what_was_written(trapper, engine):
    ch = 'Channel = {d}/new, /dev/data, 3, 0, 10, 100, 10, 100'
    s, out = trapper(['w:/dev/data:hello:0', 'r:/dev/data:50:0'], ch + '\n')
    assert out == ['w /dev/data 5 0 = 5', 'r /dev/data 50 0 = 5 hello']
    assert s.read('new') == b'hello'


def test_appendable_cdr(trapper, engine):
    """Type 1: random reads; writes go to the end whatever the offset."""
    ch = 'Channel = {d}/data, /dev/cdr, 1, 0, 10, 100, 10, 100'
    s, out = trapper(['w:/dev/cdr:AB:0', 'r:/dev/cdr:4:8', 'w:/dev/cdr:C:3'],
                     ch + '\n', files={'data': DATA})
    assert out == ['w /dev/cdr 2 0 = 2', 'r /dev/cdr 4 8 = 4 89AB', 'w /dev/cdr 1 3 = 1']
    assert s.read('data') == DATA + b'ABC'


def test_character_devices(trapper, engine):
    chans = ('Channel = /dev/null, /dev/empty, 3, 0, 10, 100, 0, 0\n'
             'Channel = /dev/null, /dev/sink, 0, 0, 0, 0, 10, 100\n')
    s, out = trapper(['r:/dev/empty:4:0', 'r:/dev/empty:4:0', 'w:/dev/sink:gone:0', 'm'],
                     chans)
    assert out[:3] == ['r /dev/empty 4 0 = 0', 'r /dev/empty 4 0 = 0', 'w /dev/sink 4 0 = 4']
    assert 'c 3 /dev/empty 3 0 10 100 0 0' in out     # as declared; sequential: size 0


def test_a_character_device_cannot_be_read_and_written(zerovm, zvm_guest, engine):
    s = zerovm.run(zerovm.manifest(zvm_guest('zvm_copy'), STD_CHANNELS +
                                   'Channel = /dev/null, /dev/both, 0, 0, 1, 1, 1, 1\n'))
    assert (s.returncode, s.state) == (errno.EINVAL, '/dev/both has invalid i/o type'), s


@pytest.mark.parametrize('kind, code', [(0, 'sequential channels cannot have r/w access'),
                                        (2, 'sequential read / random write channels not '
                                            'supported')])
def test_read_write_files_need_a_random_type(zerovm, zvm_guest, kind, code, engine):
    s = zerovm.run(zerovm.manifest(zvm_guest('zvm_copy'), STD_CHANNELS +
                                   f'Channel = {{d}}/f, /dev/f, {kind}, 0, 1, 1, 1, 1\n'))
    assert (s.returncode, s.state) == (errno.EFAULT, code), s


def test_fifos_in_and_out(zerovm, zvm_guest, tmp_path, engine):
    """A FIFO is opened without waiting for its other end, and read and written
    sequentially: here zvm_copy reads one FIFO and writes another."""
    fifo_in, fifo_out = tmp_path / 'in', tmp_path / 'out'
    os.mkfifo(fifo_in)
    os.mkfifo(fifo_out)
    data = b'through a pipe\n' * 20000
    got = []

    def feed():
        with open(fifo_in, 'wb') as f:
            f.write(data)

    def drain():
        with open(fifo_out, 'rb') as f:
            got.append(f.read())

    threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
    for t in threads:
        t.start()
    try:
        chans = STD_CHANNELS.replace('{d}/stdin', str(fifo_in)).replace('{d}/stdout',
                                                                        str(fifo_out))
        s = zerovm.run(zerovm.manifest(zvm_guest('zvm_copy'), chans), stdin=None)
    finally:
        for path in (fifo_in, fifo_out):       # unblock a thread if zvm never opened one
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
            os.close(fd)
        for t in threads:
            t.join(60)
    assert (s.returncode, s.state) == (0, 'ok'), s
    assert got == [data]


def test_several_sources_must_agree(zerovm, zvm_guest, trapper, engine):
    files = {'a': DATA, 'b': DATA, 'c': b'9876543210'}
    agree = run(trapper, 'Channel = {d}/a;{d}/b;{d}/c, /dev/input, 0, 0, 9, 99, 0, 0',
                ['r:/dev/input:4:0'], files)
    assert agree == ['r /dev/input 4 0 = 4 0123']            # two of three: the majority
    s = zerovm.run(zerovm.manifest(zvm_guest('zvm_copy'), STD_CHANNELS.replace(
        '{d}/stdin,', '{d}/a;{d}/c,')), files=files, stdin=None)
    assert s.returncode == errno.EIO, s
    assert s.state == 'host I/O failed in zvm_trap: /dev/stdin failed to read: its 2 ' \
                      'sources do not agree', s


def test_writes_go_to_every_source(zerovm, zvm_guest, engine):
    chans = STD_CHANNELS.replace('{d}/stdout,', '{d}/o1;{d}/o2,')
    s = zerovm.run(zerovm.manifest(zvm_guest('zvm_copy'), chans), stdin=DATA)
    assert (s.returncode, s.read('o1'), s.read('o2')) == (0, DATA, DATA), s


def test_network_channels_are_not_supported(zerovm, zvm_guest, engine):
    s = zerovm.run(zerovm.manifest(zvm_guest('zvm_copy'), STD_CHANNELS +
                                   'Channel = tcp:2:, /dev/out/2, 0, 0, 0, 0, 1, 1\n'))
    assert s.returncode == errno.EPROTONOSUPPORT, s
    assert 'network channels (tcp:2:) are not supported' in s.state


@pytest.mark.parametrize('preallocate', [True, False])
def test_write_channels_are_preallocated_then_cut_back(tmp_path, preallocate):
    path = tmp_path / 'out'
    path.write_bytes(b'x' * 100)
    ch = zerovm_channel(ChannelDecl((str(path),), '/dev/output', 0, False, 0, 0, 10, 4096),
                        preallocate)
    assert path.stat().st_size == (4096 if preallocate else 0)     # overwritten either way
    assert ch.size == 0 and ch.backing.size() == 0
    ch.write([memoryview(b'hello')], None)
    assert ch.etag() == hashlib.md5(b'hello').hexdigest()
    ch.close()
    assert path.read_bytes() == b'hello'


def test_an_unwritable_channel_fails_with_the_hosts_errno(tmp_path):
    with pytest.raises(ChannelSetupError) as e:
        zerovm_channel(ChannelDecl((str(tmp_path / 'no' / 'dir'),), '/dev/o', 0, False, 0, 0,
                                   1, 1))
    assert e.value.errno == errno.ENOENT


@pytest.mark.emulated_only(reason='the memory etag digests guest memory after the run: '
                           'auto runs such a manifest emulated (test_trap.py)')
def test_etags_of_read_and_written_channels_and_of_memory(zerovm, zvm_guest, engine):
    chans = STD_CHANNELS.replace('stdin, 0, 0', 'stdin, 0, 1').replace('stdout, 0, 0',
                                                                         'stdout, 0, 1')
    one = zerovm.run(zerovm.manifest(zvm_guest('zvm_copy'), chans, memory_etag=1),
                     stdin=b'some input')
    assert one.returncode == 0, one
    assert list(one.etags) == ['/dev/stdin', '/dev/stdout', '/dev/memory']
    assert one.etags['/dev/stdin'] == one.etags['/dev/stdout'] == \
        hashlib.md5(b'some input').hexdigest()
    again = zerovm.run(zerovm.manifest(zvm_guest('zvm_copy'), chans, memory_etag=1),
                       stdin=b'some input')
    other = zerovm.run(zerovm.manifest(zvm_guest('zvm_copy'), chans, memory_etag=1),
                       stdin=b'other input')
    assert again.lines[3] == one.lines[3]                    # deterministic
    assert other.etags['/dev/memory'] != one.etags['/dev/memory']
    assert len(one.etags['/dev/memory']) == 32


def test_a_tagged_channel_written_at_random_is_hashed_within_the_timeout(
        zerovm, zvm_guest, engine):
    """A byte written at 1 TiB of a channel with etag 1: the run hashed its etag within
    its timeout (channels.with_etags) and ended ``timeout``, then the session hashed the
    whole sparse file again for its report line, unbounded (an hour of CPU after a 2 s
    timeout).  Now the report's line takes the run's etags: ended within seconds, ZeroVM's
    ``session timeout``, the channel whose etag was not done left out."""
    channels = STD_CHANNELS + NVRAM_CHANNEL + \
        'Channel = {d}/out, /dev/output, 3, 1, 0, 0, 10, 2000000000000\n'
    files = {'nvram': b'[args]\nargs = zvm_trapper w:/dev/output:x:1099511627776\n'}
    began = time.monotonic()
    s = zerovm.run(zerovm.manifest(zvm_guest('zvm_trapper'), channels, timeout=2),
                   files=files, timeout=60)
    assert time.monotonic() - began < 30, s
    assert (s.state, s.etags) == ('session timeout', {}), s
    small = zerovm.run(zerovm.manifest(zvm_guest('zvm_trapper'), channels, timeout=10),
                       files={'nvram': b'[args]\nargs = zvm_trapper w:/dev/output:x:5\n'})
    assert small.etags == {'/dev/output': hashlib.md5(b'\0' * 5 + b'x').hexdigest()}, small

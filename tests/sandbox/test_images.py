"""NVRAM and images: ``/dev/nvram`` gives argv, the environment, the clock, stat modes
and mounts; a tar channel mounted by ``[fstab]`` is the program's read-only file tree
(open, stat, getdents64, lseek and read on its members; EROFS for writes and for new
files in its directories)."""

from __future__ import annotations

import errno

import pytest
from archives import tar_bytes

from .manifests import NVRAM_CHANNEL, STD_CHANNELS

MTIME = 1_600_000_000
IMAGE_CHANNEL = 'Channel = {d}/image.tar, /dev/image, 3, 0, 100, 100000000, 0, 0\n'
MAIN = '''# the main script
print hello from the image
require util
require extra
require util
list /lib/ms
list /
stat /app/main.ms
stat /lib
stat /nope
tail /lib/ms/util.ms 6
at /usr share/ms/extra.ms
write /app/main.ms
create /app/main.ms
create /app/new.ms
create /lib/ms/../new.ms
create /new.ms
create /nodir/new.ms
write /app/new.ms
require alias
'''


IMAGE = tar_bytes({'app': ('dir',), 'app/main.ms': MAIN, 'lib/ms/util.ms': 'print util loaded\n'
                   'require extra\n', 'lib/ms/alias.ms': ('sym', 'util.ms'),
                   './usr/share/ms/extra.ms': 'print extra here\n'}, mtime=MTIME)
NVRAM = (b'[args]\nargs = miniscript /app/main.ms\n[env]\nname=MS_PATH, value=/lib/ms:'
         b'/usr/share/ms\n[fstab]\nchannel=/dev/image, mountpoint=/, access=ro, removable=no\n')
EXPECTED = f'''hello from the image
loaded /lib/ms/util.ms
util loaded
loaded /usr/share/ms/extra.ms
extra here
/lib/ms: alias.ms util.ms
/: app dev lib usr
/app/main.ms file {len(MAIN)} {MTIME}
/lib dir
/nope missing {errno.ENOENT}
tail /lib/ms/util.ms at 26: extra

at /usr share/ms/extra.ms: print extra here
write /app/main.ms: {errno.EROFS}
create /app/main.ms: {errno.EROFS}
create /app/new.ms: {errno.EROFS}
create /lib/ms/../new.ms: {errno.EROFS}
create /new.ms: {errno.EROFS}
create /nodir/new.ms: {errno.ENOENT}
write /app/new.ms: {errno.ENOENT}
loaded /lib/ms/alias.ms
util loaded
'''


def session(zerovm, program, nvram: bytes, files: dict, channels: str = IMAGE_CHANNEL):
    return zerovm.run(zerovm.manifest(program, STD_CHANNELS + NVRAM_CHANNEL + channels),
                      files={'nvram': nvram, **files})


@pytest.mark.parametrize('cc', ['musl-gcc', 'gcc'])
def test_a_program_reads_its_script_and_libraries_from_a_tar_mounted_at_root(
        guest, zerovm, cc):
    """musl (open, readv, stat, getdents64) and glibc (openat, newfstatat, read, lseek)."""
    s = session(zerovm, guest('miniscript', cc), NVRAM, {'image.tar': IMAGE})
    assert (s.returncode, s.state, s.retcode) == (0, 'ok', 0), s
    assert s.read('stdout').decode() == EXPECTED
    assert s.accounting[2:4] == ['0', '0'], s         # image reads are not channel reads


def test_later_mounts_win_and_mount_points_nest(guest, zerovm):
    overlay = tar_bytes({'util.ms': 'print the overlay util\n', 'new.ms': 'print new\n',
                         'hard.ms': ('hard', 'new.ms')}, mtime=MTIME)
    app = tar_bytes({'app/main.ms': 'require util\nrequire hard\nlist /lib/ms\n'}, mtime=MTIME)
    nvram = NVRAM + (b'channel=/dev/overlay, mountpoint=/lib/ms, access=ro, removable=yes\n'
                     b'channel=/dev/app, mountpoint=/, access=ro\n')
    channels = (IMAGE_CHANNEL + IMAGE_CHANNEL.replace('image', 'overlay') +
                IMAGE_CHANNEL.replace('image', 'app'))
    s = session(zerovm, guest('miniscript'), nvram,
                {'image.tar': IMAGE, 'overlay.tar': overlay, 'app.tar': app}, channels)
    assert s.returncode == 0, s
    assert s.read('stdout').decode().splitlines() == [
        'loaded /lib/ms/util.ms', 'the overlay util', 'loaded /lib/ms/hard.ms', 'new',
        '/lib/ms: alias.ms hard.ms new.ms util.ms']


def test_creating_a_channel_that_does_not_exist_is_enoent_not_erofs(guest, zerovm, engine):
    # /dev and /dev/out are directories of channels, not the read-only image: a name
    # there that no channel has was EROFS ("Read-only file system"), hiding the mistake
    main = ('create /dev/out/nopeer\ncreate /dev/nochannel\ncreate /dev/out/peer\n'
            'create /app/new.ms\n')
    image = tar_bytes({'app/main.ms': main}, mtime=MTIME)
    peer = 'Channel = {d}/peer, /dev/out/peer, 0, 0, 0, 0, 100, 1000\n'
    s = session(zerovm, guest('miniscript'), NVRAM, {'image.tar': image},
                IMAGE_CHANNEL + peer)
    assert s.returncode == 0, s
    assert s.read('stdout').decode() == (
        f'create /dev/out/nopeer: {errno.ENOENT}\ncreate /dev/nochannel: {errno.ENOENT}\n'
        f'create /dev/out/peer: 0\ncreate /app/new.ms: {errno.EROFS}\n')


@pytest.mark.parametrize('nvram, says', [
    (NVRAM.replace(b'/dev/image,', b'/dev/nothere,'),
     '[fstab] /dev/nothere: not a readable file channel of the manifest'),
    (NVRAM.replace(b'access=ro', b'access=wo'), 'only read-only tar mounts are supported'),
    (NVRAM.replace(b'removable=no', b'removable=no, fsname=cpio'),
     'only read-only tar mounts are supported'),
])
def test_mounts_zvm_cannot_honour_are_errors(guest, zerovm, nvram, says):
    s = session(zerovm, guest('miniscript'), nvram, {'image.tar': IMAGE})
    assert s.returncode == errno.EFAULT and says in s.state, s


def test_an_image_that_is_not_a_tar_is_an_error(guest, zerovm):
    s = session(zerovm, guest('miniscript'), NVRAM, {'image.tar': b'not a tar' * 100})
    assert s.returncode == errno.EFAULT, s
    assert 'not a readable tar image' in s.state


def test_without_images_other_paths_do_not_exist(guest, zerovm):
    s = session(zerovm, guest('miniscript'), b'[args]\nargs = miniscript /app/main.ms\n', {},
                channels='')
    assert (s.returncode, s.retcode) == (0, 1), s
    assert s.read('stdout') == b'cannot run /app/main.ms\n'


def test_mapping_sets_what_stat_says_of_channels(guest, zerovm):
    script = tar_bytes({'s': 'stat /dev/stdin\nstat /dev/stdout\nstat /dev/stderr\n'
                             'stat /dev/nvram\n'}, mtime=MTIME)
    nvram = (b'[args]\nargs = miniscript /s\n[fstab]\nchannel=/dev/image, mountpoint=/, '
             b'access=ro\n[mapping]\nchannel=/dev/stdin, mode=pipe\n'
             b'channel=/dev/stdout, mode=file\n')
    s = session(zerovm, guest('miniscript'), nvram, {'image.tar': script})
    assert s.returncode == 0, s
    assert s.read('stdout').decode().splitlines() == [
        '/dev/stdin fifo 0 0', '/dev/stdout file 0 0',          # as mapped
        '/dev/stderr chr 0 0', f'/dev/nvram file {len(nvram)} 0']   # by access type


def test_args_and_environment_come_from_nvram(guest, zerovm):
    nvram = (b'[args]\nargs = prog one two\\x20words a\\x2cb\n[env]\nname=HOME, value=/home\n'
             b'name=GREETING, value=Hello\\x2c World # a comment\n')
    s = session(zerovm, guest('args_env'), nvram, {}, channels='')
    assert s.returncode == 0, s
    assert s.read('stdout').decode().splitlines() == [
        'argc=4', 'argv[0]=prog', 'argv[1]=one', 'argv[2]=two words', 'argv[3]=a,b',
        'envp[0]=HOME=/home', 'envp[1]=GREETING=Hello, World']


def test_without_nvram_argv_is_the_program_name(guest, zerovm):
    s = zerovm.run(zerovm.manifest(guest('args_env')))
    assert s.read('stdout') == b'argc=1\nargv[0]=' + guest('args_env').name.encode() + b'\n'


def test_time_section_starts_the_clock(guest, zerovm):
    s = session(zerovm, guest('timeprint'), b'[time]\nseconds=1700000000\n', {}, channels='')
    assert s.returncode == 0, s
    assert b'time 1700000000\n' in s.read('stdout')


def test_the_channels_directory_lists_what_open_accepts(guest, zerovm, engine):
    """``os.listdir('/dev')`` was ENOENT while /dev/stdin opened: a directory of channels
    lists them (and ``/`` lists ``dev``), merged with the image's entries there; the
    listing is in name order and the same under both engines."""
    script = tar_bytes({'s': 'list /dev\nlist /\nstat /dev\nlist /dev/nope\n',
                        'dev/README': 'not a channel\n'}, mtime=MTIME)
    nvram = b'[args]\nargs = miniscript /s\n[fstab]\nchannel=/dev/image, mountpoint=/, access=ro\n'
    s = session(zerovm, guest('miniscript'), nvram, {'image.tar': script})
    assert s.returncode == 0, s
    assert s.read('stdout').decode().splitlines() == [
        '/dev: README image nvram stderr stdin stdout', '/: dev s', '/dev dir',
        f'list /dev/nope: errno {errno.ENOENT}']

"""Hostile programs found by a security review: each attack, what it must not achieve,
under both engines.

A written channel is bounded by its quota in what it *holds*, not only in the bytes
written: a guest that seeks far past ``put_size`` and writes a byte would otherwise
leave a sparse file of any size, whose etag (MD5 of the whole file, after the run and
outside its timeout) and whose upload cost what the quota is there to bound.
"""

from __future__ import annotations

import errno
import json
import resource
import subprocess
import time

import pytest
from archives import tar_bytes

from tests.conftest import CLI, REPO
from zvm_core.channels import MAX_SIZE
from zvm_core.syscalls.io import below_max_size

PUT_SIZE = 4096
TB = 1 << 40


def test_a_written_channel_never_grows_past_its_quota(guest, zvm, etag, engine):
    quota = ['--quota', f'/dev/output=put_size:{PUT_SIZE}']
    run = zvm.run(guest('sparse'), f'{TB}:0', f'@{TB}:1', f'{PUT_SIZE - 2}:4', '10:5',
                  output=True, opts=quota)
    assert run.status == 'quota', run                  # writes refused and cut: not a success
    assert run.report['retcode'] == 0
    assert run.stdout.decode().splitlines() == [
        f'{TB}:0 = 0',                                 # nothing to write: nothing refused
        f'@{TB}:1 = -1 Quota exceeded',          # beyond the quota: refused, nothing written
        f'{PUT_SIZE - 2}:4 = 2',                       # across it: clipped at put_size
        '10:5 = 5']
    assert run.output == bytes(10) + b'x' * 5 + bytes(PUT_SIZE - 17) + b'xx'
    assert run.report['etags']['/dev/output'] == etag(run.output)
    assert run.accounting['channels']['/dev/output']['write_bytes'] == 7
    # a guest that keeps trying is stopped, as for any refused quota
    run = zvm.run(guest('sparse'), f'{TB}:1', f'@{TB + 4096}:1', '0:1', output=True, opts=quota)
    assert run.status == 'quota', run
    assert run.stdout == f'{TB}:1 = -1 Quota exceeded\n'.encode()
    assert run.output == b''


def test_a_write_past_the_largest_file_is_efbig_not_a_host_failure(guest, zvm, engine):
    """Without a quota, a write far past a file's end is the guest's own doing: EFBIG
    from the personality's file size limit (channels.MAX_SIZE), a short write across
    it, the same on every host and engine; the host's EFBIG ended the run ``killed``,
    a host failure."""
    far = 1 << 62
    run = zvm.run(guest('sparse'), f'{far}:1', f'@{MAX_SIZE}:1', f'{MAX_SIZE}:0', '0:2',
                  output=True)
    assert run.status == 'ok', run
    assert run.stdout.decode().splitlines() == [
        f'{far}:1 = -1 File too large', f'@{MAX_SIZE}:1 = -1 File too large',
        f'{MAX_SIZE}:0 = 0', '0:2 = 2']
    assert run.output == b'xx'
    assert below_max_size(MAX_SIZE - 1, 5) == 1         # across it: cut (a 16 TiB file)


def test_the_etag_of_a_sparse_output_is_hashed_within_the_timeout(guest, zvm, engine,
                                                                  tmp_path):
    """Without a quota, one byte written at 1 TiB leaves a 1 TiB sparse file whose etag
    (an MD5 of all of it, after the run) took an hour of CPU past a 2 s timeout: the
    timeout covers the hash, and the run says what it was doing."""
    output = tmp_path / 'output'
    began = time.monotonic()
    run = zvm.run(guest('sparse'), f'{TB}:1', opts=['--output', str(output), '--timeout', '2'],
                  timeout=120)
    assert time.monotonic() - began < 60
    assert run.status == 'timeout', run
    assert run.report['message'] == (
        f'wall-clock timeout of 2 s: the etag of /dev/output ({TB + 1} bytes written at '
        'random, a sparse file hashed whole) was not done in time')
    assert run.stdout == f'{TB}:1 = 1\n'.encode()         # the guest's own run ended well
    assert '/dev/output' not in run.report['etags']
    assert output.stat().st_size == TB + 1


def test_vectors_naming_one_buffer_are_not_staged_once_each(guest, zvm, tmp_path, engine):
    """writev/readv with IOV_MAX vectors over one 8 MiB buffer name 8 GiB: the native
    supervisor stages a copy of what a call names, so a call moves at most MAX_IO
    (1 GiB, as Linux cuts at MAX_RW_COUNT) whatever its vectors say.  The CLI runs
    with 3 GiB of address space: 1,024 copies would not fit (the run died with an
    internal error, or took the host's memory)."""
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    out, err, report = tmp_path / 'out', tmp_path / 'err', tmp_path / 'report.json'
    (tmp_path / 'in').write_bytes(b'abc')
    proc = subprocess.run(
        [*CLI, 'run', '--memory', str(64 << 20), '--stdin', tmp_path / 'in', '--stdout', out,
         '--stderr', err, '--report', report, '--quota', '/dev/stdout=put_size:1000',
         guest('iovbomb'), '8'],
        capture_output=True, cwd=REPO, env=zvm.env, preexec_fn=limited, timeout=300,
        check=False)
    assert json.loads(report.read_text())['status'] == 'quota', proc.stderr[-2000:]  # cut
    assert err.read_bytes() == b'writev = 1000, readv = 3\n'
    assert out.read_bytes() == b'z' * 1000


def test_zerovm_api_writes_never_grow_a_channel_past_its_quota(trapper, engine):
    """ZeroVM's rule lets a write start anywhere before size + what the quota has left
    (EINVAL beyond): a byte written there grew the channel by that much each time
    (100, 199, 297 ... bytes for a few written); now EDQUOT past ``put_size``."""
    channel = 'Channel = {d}/o, /dev/o, 3, 0, 1000, 1000, 1000, 100\n'   # read and write
    s, out = trapper(['w:/dev/o:x:99', 'w:/dev/o:x:198', 'w:/dev/o:x:296', 'w:/dev/o:yy:98',
                      'w:/dev/o:zz:5'], channel, code=errno.EDQUOT)   # a write refused
    assert out == ['w /dev/o 1 99 = 1', f'w /dev/o 1 198 = {-errno.EDQUOT}',
                   f'w /dev/o 1 296 = {-errno.EINVAL}', 'w /dev/o 2 98 = 2',
                   'w /dev/o 2 5 = 2']
    assert s.read('o') == bytes(5) + b'zz' + bytes(91) + b'yy'


def test_zerovm_api_writes_past_the_largest_file_are_efbig(trapper, engine):
    """A quota past the largest file (channels.MAX_SIZE) leaves the ZeroVM API's write
    far past the end to the personality: EFBIG, not the host's, which was a host
    failure."""
    channel = f'Channel = {{d}}/o, /dev/o, 3, 0, 1000, 1000, 1000, {1 << 62}\n'
    s, out = trapper([f'w:/dev/o:x:{1 << 61}', 'w:/dev/o:yy:1'], channel, files={'o': b'old'})
    assert out == [f'w /dev/o 1 {1 << 61} = {-errno.EFBIG}', 'w /dev/o 2 1 = 2']
    assert s.read('o') == b'oyy'


DEEP = 2000                         # directories in the image's deepest path
CLIMBS = 5000                       # "/a/.." pairs in its symbolic link


def test_image_paths_resolve_in_linear_time(guest, zvm, tmp_path, engine):
    """A 50 KB image whose link names a path of a deep directory and thousands of
    ``a/..`` in it, and links back to itself: each ``..`` was a new lookup from the
    root (as deep as the directory), so one open() took minutes of the supervisor's
    time, past the run's timeout (a pool worker overrunning it is killed, and its
    warm templates with it).  ELOOP comes after 40 links, as from Linux; and no link
    reaches a host file."""
    deep = '/'.join(['a'] * DEEP)
    image = tar_bytes({deep: ('dir',), 'l': ('sym', deep + '/..' + '/a/..' * CLIMBS + '/l2'),
                       deep.rsplit('/', 1)[0] + '/l2': ('sym', '/l'),
                       'up': ('sym', '../../../../../../etc/passwd'),
                       'abs': ('sym', '/etc/passwd'), 'etc': ('sym', '../../..'),
                       's.ms': 'stat /l\nstat /up\nstat /abs\nstat /etc/passwd\n'
                               'stat /../../../etc/hostname\nstat /proc/self/maps\n'})
    (tmp_path / 'image.tar').write_bytes(image)
    run = zvm.run(guest('miniscript'), '/s.ms',
                  opts=['--image', str(tmp_path / 'image.tar'), '--timeout', '20'])
    assert run.status == 'ok', run
    assert run.stdout.decode().splitlines() == [
        f'/l missing {errno.ELOOP}', f'/up missing {errno.ENOENT}',
        f'/abs missing {errno.ENOENT}', f'/etc/passwd missing {errno.ENOENT}',
        f'/../../../etc/hostname missing {errno.ENOENT}',
        f'/proc/self/maps missing {errno.ENOENT}']


@pytest.mark.parametrize(('args', 'entry'), [([], 0xffffffffff600400),
                                             (['gettimeofday'], 0xffffffffff600000)],
                         ids=['time', 'gettimeofday'])
def test_the_legacy_vsyscall_page_is_no_clock_and_faults_under_both_engines(
        guest, zvm, engine, args, entry):
    """Natively the kernel's vsyscall page (``call 0xffffffffff600400``: time without a
    system-call instruction) runs its calls through the filter, so the supervisor saw a
    time() and answered it (``time = 0``) where the emulator faults: now both fault."""
    run = zvm.run(guest('vsyscall'), *args)
    assert run.status == 'fault', run
    assert run.stdout == b''
    assert f'jump to unmapped memory at {entry:#x}' in run.report['message'], run


def test_mprotect_flags_the_kernel_refuses_are_refused_alike(guest, zvm, engine):
    """mprotect(read-only data, RW | PROT_GROWSDOWN): natively the supervisor recorded
    the page as writable and the kernel then refused the call (EINVAL), so read()
    filled a page the program could not store to (through /proc/PID/mem); the
    emulator made it writable.  Now EINVAL and EFAULT, as from Linux."""
    run = zvm.run(guest('mprotbits'), stdin=b'ABCDEF')
    assert run.status == 'ok', run
    assert run.stdout.decode().splitlines() == [
        'mprotect(rw|growsdown) = -1 Invalid argument', 'read(into it) = -1 Bad address',
        'mprotect(rw|growsup) = -1 Invalid argument', 'read(into it) = -1 Bad address',
        'mprotect(rw|0x100) = -1 Invalid argument', 'read(into it) = -1 Bad address',
        'mprotect(r|sem) = 0', 'text: read-only text']

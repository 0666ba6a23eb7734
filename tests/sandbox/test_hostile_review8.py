"""review8's hostile guest (``tests/programs/hostile8.c``) under both engines: each set of
attempts prints ``name result`` (raw -errno), and what must hold of every one of them:
no second thread or process, no byte read or written through memory the guest does not
own (the loader's pages, vsyscall, the kernel's half, read-only pages), no descriptor of
the host (the loader's 1030), no stale answer from the C loop's cache after a dup2, no
offset that reads past an image file or grows an output past its quota.  Both engines
print the same lines (``test_equivalence`` holds that for whole reports)."""

from __future__ import annotations

import errno
import tempfile

import pytest
from archives import tar_bytes

from zvm_core.channels import WRITE, FdBacking
from zvm_core.limits import Limits
from zvm_core.pool import ChannelSpec, Pool
from zvm_core.syscalls import fs

EFAULT, EBADF, ENOSYS = -errno.EFAULT, -errno.EBADF, -errno.ENOSYS


def results(run) -> dict[str, int]:
    """``name result`` lines (a write from guest memory may print any bytes before one)."""
    lines = run.stdout.decode('latin-1').splitlines()
    assert lines[-1] == 'survived', run
    return {name: int(value) for name, value in
            (line.rsplit(' ', 1) for line in lines if ' ' in line)
            if value.lstrip('-').isdigit()}


def test_no_second_thread_or_process(guest, zvm, engine):
    """clone with CLONE_THREAD and a stack (the child's first instruction would bump a
    counter and spin), clone3, vfork, fork, unshare, setns, pidfd calls: all refused, the
    counter stays 0, the pid and tid are the personality's."""
    run = zvm.run(guest('hostile8'), 'threads')
    assert run.status == 'ok', run
    got = results(run)
    refused = {k: v for k, v in got.items() if k not in ('counter', 'same_pid',
                                                           'set_tid_address_loader')}
    assert len(refused) == 12 and set(refused.values()) == {ENOSYS}, got
    assert (got['counter'], got['same_pid']) == (0, 1), got


TARGETS = ('loader', 'loader_page2', 'vsyscall', 'null_page', 'kernel', 'noncanonical')


def test_memory_the_guest_does_not_own_is_never_read_or_written(guest, zvm, engine):
    """Every call that moves bytes, given a buffer in the loader's pages (mapped, and
    readable by the guest's own loads), the vsyscall page, page zero or the kernel's
    half: EFAULT, nothing moved.  Writable-only targets (the user manifest, the trap
    page, read-only data) refuse the calls that write guest memory."""
    run = zvm.run(guest('hostile8'), 'pointers', input=None)
    assert run.status == 'ok', run
    got = results(run)
    calls = ('write_from', 'writev_from', 'read_into', 'readv_into', 'iovec_at',
             'clock_into', 'getrandom_into', 'fstat_into', 'open_path', 'get_fs_into',
             'uname_into')
    for target in TARGETS:
        assert {c: got[f'{c}_{target}'] for c in calls} == dict.fromkeys(calls, EFAULT)
    for target in ('manifest', 'trap'):
        for c in ('read_into', 'readv_into', 'clock_into', 'getrandom_into', 'fstat_into',
                  'get_fs_into', 'uname_into'):
            assert got[f'{c}_{target}'] == EFAULT, (c, target)
    assert (got['read_past_data'], got['read_into_rodata'], got['readv_into_rodata']) == \
        (EFAULT, EFAULT, EFAULT)
    assert b'rodata read-only\n' in run.stdout
    assert run.accounting['channels']['/dev/stdin']['read_bytes'] == 0


def test_descriptors_the_personality_does_not_hold(guest, zvm, engine):
    """The loader's socket number (1030), numbers past the table (1024, 2^31-1), 64-bit
    values: EBADF, and dup'ing onto them is refused; the guest's own close/sendmsg of 1030
    are the personality's (the kernel never sees them).  A descriptor made stdin's after
    being stdout's is read-only at once (the C loop keeps no stale slot)."""
    run = zvm.run(guest('hostile8'), 'fds', stdin=b'abcdefgh')
    assert run.status == 'ok', run
    got = results(run)
    for fd in ('406', '400', 'fff', '7fffffff', 'ffffffffffffffff', '100000001'):
        for call in ('write', 'read', 'fstat', 'dup2_1_to'):
            assert got[f'{call}_{fd}'] == EBADF, (call, fd)
        assert got[f'fcntl_dupfd_{fd}'] < 0
    assert got['dup2_1_to_3ff'] == 1023
    assert (got['dup2_stdout_to_1030'], got['write_1030'], got['sendmsg_1030'],
            got['close_1030'], got['close_1030_again']) == (EBADF, EBADF, ENOSYS, EBADF, EBADF)
    assert (got['write_9'], got['write_9_stdin'], got['read_9_stdin'],
            got['read_9_stdout']) == (5, EBADF, 4, EBADF)
    assert b'nine\n' in run.stdout and b'leak' not in run.stdout
    assert b'via-1030' not in run.stdout


def test_vector_lengths_that_overflow(guest, zvm, engine):
    """iovecs whose lengths sum past SSIZE_MAX or are all ones, IOV_MAX+1 of them, a
    count with high bits or negative: refused before any byte moves."""
    run = zvm.run(guest('hostile8'), 'vectors', stdin=b'abcdefgh')
    assert run.status == 'ok', run
    got = results(run)
    moved = {k: v for k, v in got.items() if k != 'writev_array_past_region'}
    assert len(moved) == 8 and all(v in (EFAULT, -errno.EINVAL) for v in moved.values()), got
    assert run.accounting['channels']['/dev/stdin']['read_bytes'] == 0


def test_huge_offsets_read_nothing_outside_and_write_nothing_past_the_quota(
        guest, zvm, tmp_path, engine):
    """pread/preadv/lseek at 2^63-1, -1, 2^40 ... on /dev/input, an image file and
    /dev/output: what is past a file's end reads as its end, never another member of
    the image; a write at 2^40 is refused by the quota (EDQUOT) and the output is only
    what was written inside it."""
    image = tmp_path / 'image.tar'
    image.write_bytes(tar_bytes({'bin/f': b'hi\n', 'bin/g': b'SECRET-NEXT-MEMBER\n'}))
    run = zvm.run(guest('hostile8'), 'offsets', input=b'0123456789', output=True,
                  opts=['--image', image, '--quota', '/dev/output=put_size:1000000'])
    assert run.status == 'quota', run            # the refused write: not a success
    got = results(run)
    assert b'opened 1 1 1\n' in run.stdout
    for off in ('7fffffffffffffff', '7ffffffffffff000', '10000000000'):
        assert (got[f'pread_input_{off}'], got[f'preadv_input_{off}'],
                got[f'pread_image_{off}']) == (0, 0, 0)
    for off in ('7ffffffffffff000', '10000000000'):     # lseek'd past the end: nothing
        assert got[f'read_image_there_{off}'] == 0
    for off in ('ffffffffffffffff', 'fffffffffffff000', '8000000000000000'):
        assert (got[f'pread_input_{off}'], got[f'preadv_input_{off}'],
                got[f'pread_image_{off}'], got[f'lseek_set_output_{off}']) == (-22,) * 4
    assert got['pread_image_2'] == 1 and got['read_image_there_ffffffffffffffff'] == 1
    assert b'SECRET' not in run.stdout
    assert (got['write_output_far'], got['write_output_start']) == (-errno.EDQUOT, 2)
    assert run.output == b'ok'
    for call in ('ftruncate_output_huge', 'fallocate_output_huge', 'sendfile_output',
                 'copy_file_range', 'splice'):
        assert got[call] == ENOSYS, call


def test_memory_calls_over_what_the_guest_does_not_own(guest, zvm, engine):
    """mremap, mprotect, munmap and MAP_FIXED over the loader's pages, the stack, the
    text, the trap page and the manifest, brk into the stack or the loader: refused,
    and mprotect never gives data PROT_EXEC; read-only data stays EFAULT for calls."""
    run = zvm.run(guest('hostile8'), 'memory', stdin=b'abcdefgh')
    assert run.status == 'ok', run
    got = results(run)
    refused = [k for k in got if k.startswith(('mremap', 'munmap', 'mmap_fixed', 'mprotect'))
               and k not in ('mprotect_rodata_rw', 'mprotect_rodata_none')]
    assert len(refused) == 17 and all(got[k] < 0 for k in refused), got
    assert got['mprotect_rodata_rwx'] == -errno.EACCES
    assert got['brk_into_stack'] == got['brk_into_loader'] < 0x100000000 - (16 << 20)
    assert (got['read_into_rodata_none'], got['write_from_rodata_none']) == (EFAULT, EFAULT)



def test_a_program_too_big_to_validate_in_time_is_its_own_timeout(
        guest, tmp_path, monkeypatch, engine):
    """8 MiB of one-byte instructions take seconds to validate.  With a run timeout of
    0.5 s the pool's worker said nothing until the caller killed it at timeout + 2 s,
    and the run was ``killed`` by the host (``host_failure``): the proxy answered 503 and
    ran the node on two more servers, where it was killed the same way (the verdict is
    never written).  Now the worker stops validating at the run's deadline: ``timeout``,
    the program's, answered at once."""
    monkeypatch.setenv('ZVM_CACHE_DIR', str(tmp_path))     # no verdict from elsewhere
    program = guest('bigcode')
    with Pool(size=1, queue=0) as pool, tempfile.TemporaryFile() as out:
        pool.wait_warm(120)         # the caller's deadline counts a worker's start too
        report = pool.run(str(program), [ChannelSpec('/dev/stdout', out.fileno(), WRITE)],
                          argv=['bigcode'], limits=Limits(timeout=0.5), engine=engine)
    # the worker's own answer (the caller's kill at timeout + KILL_GRACE is 'killed')
    assert (report.status, report.host_failure) == ('timeout', False), report
    assert "validation did not end within the run's timeout" in report.message
    assert list(tmp_path.glob('*.json')) == []                # no verdict was made


def test_a_cold_validation_is_part_of_its_run_s_timeout(guest, monkeypatch, engine):
    """A program whose validation takes most of the timeout and whose run then spins:
    the worker ran it for a whole timeout more, past the caller's wait (timeout +
    KILL_GRACE), which killed it, the host's failure.  The run gets what the
    validation left, and says so."""
    import os
    import time

    from zvm_core import prepare, validator
    from zvm_core.channels import READ
    from zvm_core.pool import _request
    from zvm_core.pool.worker import Templates, _serve_one
    timeout, slow = 2.0, 1.5
    real = validator._validate
    monkeypatch.setattr(validator, '_validate',
                        lambda program, policy: time.sleep(slow) or real(program, policy))
    monkeypatch.setattr(prepare, 'default_cache', lambda: validator.VerdictCache(None))
    prog, templates = str(guest('spin')), Templates(1 << 30)
    fds = [os.open(os.devnull, os.O_RDONLY), os.open(os.devnull, os.O_WRONLY)]
    try:
        req = _request(prog, [ChannelSpec('/dev/stdin', 0, READ),
                              ChannelSpec('/dev/stdout', 1, WRITE)],
                       ['spin'], {}, Limits(timeout=timeout), 0, 0, 'virtualize', {}, engine)
        began = time.monotonic()
        report, _ = _serve_one(req, fds, templates)
        took = time.monotonic() - began
    finally:
        templates.close()
        for fd in fds:
            os.close(fd)
    assert report.status == 'timeout', report
    assert took < slow + timeout - 0.5, took        # not a whole timeout after validating
    assert 'what validating the program left of the timeout of 2 s' in report.message


def test_an_image_of_too_many_members_is_refused_before_it_is_indexed_whole(
        tmp_path, monkeypatch):
    """A mounted image's index and tree live in the worker (outside the guest's memory
    limit, kept for later runs): a 1 GiB tar of empty members (2 million, 512 bytes
    each) held ~1.4 GiB of a worker's memory and a minute of its CPU before the guest
    started.  Past MAX_MEMBERS members, or nodes of the tree, the mount fails (the run's
    ``fault``), after reading at most that many."""
    monkeypatch.setattr(fs, 'MAX_MEMBERS', 10, raising=False)
    for count, refused in ((8, ''), (9, 'the tree would have more than 10 files'),
                           (11, '/dev/image has more than 10 members')):
        image = tmp_path / f'{count}.tar'       # the tree: /, /d and the members
        image.write_bytes(tar_bytes({f'd/{i}': b'' for i in range(count)}))
        with open(image, 'rb') as f:
            mount = [(FdBacking(f.fileno(), owned=False), '/', '/dev/image')]
            if not refused:
                assert fs.mounted(mount).lookup('/d/7').size == 0
                continue
            with pytest.raises(fs.ImageError, match=f'cannot mount /dev/image at /: {refused}'):
                fs.mounted(mount)


@pytest.mark.parametrize('members, refused', [
    # one name of 100 MB nesting 50 million directories took 22 GB and minutes
    ({'a/' * 2500 + 'f': b''}, 'longer than 4096 characters'),
    # link targets within an extended header's 64 KiB (zvm_core.tars), 18 MB in all
    ({f'l{i}': ('sym', 'x/' * 30_000) for i in range(300)}, 'bytes of paths'),
    # names within PATH_MAX, each nesting 2,000 directories: ~4 MB of paths each
    ({f'd{i}/' + 'a/' * 2000 + 'f': b'' for i in range(8)}, 'bytes of paths'),
])
def test_image_names_cannot_make_a_tree_without_bound(tmp_path, members, refused):
    """Each directory of the tree holds its whole path: a deep name costs the square of
    its depth in the worker's memory.  A member's name is at most PATH_MAX, the tree's
    paths and link targets at most MAX_PATH_BYTES in all."""
    image = tmp_path / 'deep.tar'
    image.write_bytes(tar_bytes(members))
    with open(image, 'rb') as f:
        with pytest.raises(fs.ImageError, match=refused):
            fs.mounted([(FdBacking(f.fileno(), owned=False), '/', '/dev/image')])

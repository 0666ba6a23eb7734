"""What one job makes the proxy hold (``zerovm_job_maxprograms``,
``zerocloud.proxy.caller.Held``): the proxy held every distinct program object a job
named for the whole job, each up to ``zerovm_maxnexe``, in memory, so a job naming N
stored copies of a 256 MiB program held N x 256 MiB (copies cost the user only quota).
Programs now wait in spooled files on the proxy's disk, closed when the job ends."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest
import test_proxy_filter as proxy_tests
from archives import tar_bytes, zapp_member
from swift.common.swob import HTTPException, Request
from test_proxy_filter import ACCOUNT, FakeRing, ok, post

from zerocloud import config, sources, wire
from zerocloud.httperrors import HTTPRequestEntityTooLarge
from zerocloud.job import SwiftPath
from zerocloud.proxy import caller
from zerocloud.proxy.caller import SPOOL_MEMORY, Held, Input, spooled
from zerocloud.proxy.middleware import ProxyExecMiddleware
from zerocloud.tmpdisk import DiskFull

PROGRAM = b'\x7fELF program'            # 12 bytes, stored as /bin/p0, /bin/p1, ...

# the fixtures this module's tests share with test_proxy_filter
servers, swift = proxy_tests.servers, proxy_tests.swift


def copies(count: int) -> list[dict]:
    """A job of ``count`` groups, each naming its own stored copy of one program."""
    return [{'name': f'g{i}', 'exec': {'path': f'swift://~/bin/p{i}'},
             'devices': [{'name': 'stdout'}]} for i in range(count)]


@pytest.fixture
def bounded(swift, monkeypatch):
    """``bounded(limit)``: the filter with ``zerovm_job_maxprograms = limit``, over
    three stored copies of the program."""
    FakeRing.install(monkeypatch)
    for i in range(3):
        swift.add(f'/bin/p{i}', PROGRAM)

    def make(limit: int) -> ProxyExecMiddleware:
        return ProxyExecMiddleware(swift, {'zerovm_job_maxprograms': str(limit)})
    return make


def test_the_option_has_a_default_and_refuses_a_bad_value() -> None:
    conf = config.Config.from_conf({})
    assert conf.job_max_programs == 512 << 20 >= conf.max_nexe
    with pytest.raises(ValueError, match='zerovm_job_maxprograms: 1G: expected a whole'):
        config.Config.from_conf({'zerovm_job_maxprograms': '1G'})


def test_programs_past_the_bound_are_refused_before_they_are_held() -> None:
    held = Held(30)
    held.program(12, 'swift://a/c/p0')
    held.program(18, 'swift://a/c/p1')              # exactly the bound
    with pytest.raises(HTTPException) as e:
        held.program(1, 'swift://a/c/p2')
    assert e.value.status_int == 413
    text = e.value.body.decode()
    assert text.startswith("this job's programs would hold 31 bytes on the proxy's disk "
                           '(swift://a/c/p2 is 1 bytes), more than zerovm_job_maxprograms '
                           '(30 bytes)'), text
    assert text.endswith('ask the operator to raise zerovm_job_maxprograms\n')
    assert held.held == 30                          # the refused one is not counted


def test_small_inputs_past_the_bound_wait_on_disk_not_in_memory(swift) -> None:
    """Inputs are not refused: those that do not fit go to the proxy's disk, whole."""
    held = Held(10)
    assert (held.input(10), held.input(5)) == (False, True)
    assert held.kept == 10
    held = Held(10)
    assert held.input(SPOOL_MEMORY + 1) and held.kept == 0     # on disk as it is read
    swift.add('/c/kept', b'x' * 10)
    swift.add('/c/moved', b'y' * 5)
    asker = caller.Caller(swift, Request.blank(ACCOUNT), config.Config())
    held = Held(10)
    kept, moved = (asker.fetch_input(SwiftPath('AUTH_a', 'c', name), held)
                   for name in ('kept', 'moved'))
    assert not kept.file._rolled and moved.file._rolled
    assert moved.file.read() == b'y' * 5


def test_inputs_kept_in_memory_do_not_count_against_the_programs() -> None:
    """Programs wait on disk, small inputs in memory: a job's inputs never make its
    next program a 413 that blames programs (a wildcard's later chunk did)."""
    held = Held(10)
    held.input(10)
    held.program(10, 'swift://a/c/p')               # the whole bound, inputs aside
    assert (held.held, held.kept) == (10, 10)


class _Chunks:
    """Chunks that say whether they were closed (a Swift response's app_iter)."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks, self.closed = iter(chunks), False

    def __iter__(self):
        return self.chunks

    def close(self) -> None:
        self.closed = True


def test_spool_copies_the_chunks_bounded_and_closes_them(monkeypatch) -> None:
    """One copy loop for a fetched object, a request body and an SQL query's partial
    rows (each had its own): at its start, the chunks closed, 413 past the bound."""
    chunks = _Chunks(b'ab', b'', b'cde')
    data = caller.spool(chunks, 5, 'over\n')
    assert (data.size, data.file.read(), chunks.closed) == (5, b'abcde', True)
    assert caller.spool([]).file.read() == b''              # no bound
    chunks = _Chunks(b'ab', b'cdef', b'never read')
    made: list = []
    monkeypatch.setattr(caller, 'spooled', lambda: made.append(spooled()) or made[-1])
    with pytest.raises(HTTPException) as err:
        caller.spool(chunks, 5, 'c/o is larger than zerovm_maxinput (5 bytes)\n')
    assert (err.value.status_int, err.value.body) == (
        413, b'c/o is larger than zerovm_maxinput (5 bytes)\n')
    assert chunks.closed and made[0].closed and next(chunks.chunks) == b'never read'

    class Full(caller.Spooled):          # its first byte goes to disk, and finds it full
        def rollover(self) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    made.clear()
    monkeypatch.setattr(caller, 'spooled', lambda: made.append(Full(max_size=1)) or made[-1])
    chunks = _Chunks(b'ab')
    with pytest.raises(DiskFull, match='No space left on device'):
        caller.spool(chunks)
    assert chunks.closed and made[0].closed


def test_a_zapp_member_is_admitted_before_it_is_read() -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode='w') as tar:
        info = tarfile.TarInfo('bin/x')
        info.size = 5
        tar.addfile(info, io.BytesIO(b'12345'))
    asked: list[int] = []
    assert zapp_member(data, 'bin/x', 10, 'z', admit=asked.append) == b'12345'
    assert asked == [5]

    def refuse(size: int) -> None:
        raise HTTPRequestEntityTooLarge(body=b'no')
    with pytest.raises(HTTPException):
        zapp_member(data, 'bin/x', 10, 'z', admit=refuse)


def test_a_job_naming_copies_over_the_bound_is_a_413_and_nothing_runs(
        bounded, swift, servers) -> None:
    asked = servers(d0=ok(), d1=ok(), d2=ok())
    resp = post(bounded(2 * len(PROGRAM)), copies(3))
    assert resp.status_int == 413, resp.body
    text = resp.body.decode()
    assert text.startswith(f"this job's programs would hold {3 * len(PROGRAM)} bytes on "
                           f"the proxy's disk (swift://{ACCOUNT[4:]}/bin/p2 is "
                           f'{len(PROGRAM)} bytes), more than zerovm_job_maxprograms '
                           f'({2 * len(PROGRAM)} bytes)'), text
    assert not asked.asked                          # no node was sent
    assert not [p for m, p, _h in swift.calls if m == 'PUT']


def test_a_job_within_the_bound_runs_and_one_object_is_held_once(
        bounded, swift, servers) -> None:
    """Exactly the bound is fine; nodes naming one object share it (a group of three
    nodes holds its program once)."""
    servers(d0=ok(), d1=ok(), d2=ok())
    assert post(bounded(3 * len(PROGRAM)), copies(3)).status_int == 200
    one = [{**copies(1)[0], 'count': 3}]
    resp = post(bounded(len(PROGRAM)), one)
    assert resp.status_int == 200, resp.body


def test_zapp_members_count_against_the_bound(bounded, servers) -> None:
    """A zapp's members are programs held like stored ones (two members of 12 bytes
    over a bound of 20: the second is refused before it is taken out)."""
    job = [{'name': f'g{i}', 'exec': {'path': f'bin/p{i}'}, 'devices': [{'name': 'stdout'}]}
           for i in range(2)]
    archive = tar_bytes({'boot/system.map': json.dumps(job).encode(),
                         'bin/p0': PROGRAM, 'bin/p1': PROGRAM})
    asked = servers(d0=ok(), d1=ok(), d2=ok())
    resp = post(bounded(20), archive, **{'Content-Type': 'application/x-tar'})
    assert resp.status_int == 413, resp.body
    assert resp.body.decode().startswith(
        "this job's programs would hold 24 bytes on the proxy's disk (bin/p1 in the zapp "
        'is 12 bytes), more than zerovm_job_maxprograms (20 bytes)'), resp.body
    assert not asked.asked
    assert post(bounded(24), archive, **{'Content-Type': 'application/x-tar'}).status_int == 200


# -- programs wait on the proxy's disk --------------------------------------------------------

BIG = b'\x7fELF' + bytes(SPOOL_MEMORY)      # past what a spooled file keeps in memory


@pytest.fixture
def files(monkeypatch) -> list:
    """Every spooled file the proxy makes for a job's programs and inputs."""
    made: list = []

    def recorded():
        made.append(spooled())
        return made[-1]
    monkeypatch.setattr(caller, 'spooled', recorded)
    monkeypatch.setattr(sources, 'spooled', recorded)
    return made


def big_job(count: int = 1, **device) -> list[dict]:
    devices = [{'name': 'stdin', **device}] if device else []
    return [{'name': 'g', 'exec': {'path': 'swift://~/bin/big'}, 'count': count,
             'devices': [*devices, {'name': 'stdout'}]}]


def test_a_program_waits_on_the_proxys_disk_and_is_closed_when_the_job_ends(
        bounded, swift, servers, files) -> None:
    """Nodes share one spooled file of their program (on disk past 1 MiB: not bytes in
    memory); the object servers get the same bytes; the file is closed at the job's end."""
    swift.add('/bin/big', BIG)
    held: list = []

    def answer(plan, headers, members):
        held.append(plan.program)
        return ok()(plan, headers, members)
    asked = servers(d0=answer, d1=answer, d2=answer)
    resp = post(bounded(len(BIG)), big_job(2))
    assert resp.status_int == 200, resp.body
    program, again = held
    assert program is again and isinstance(program, Input) and program.size == len(BIG)
    assert program.file._rolled and files == [program.file]
    digest = hashlib.sha256(BIG).hexdigest()      # or its digest, where it was sent
    got = [sent.get(wire.EXE) or headers[wire.PROGRAM] for _d, headers, sent in asked.asked]
    assert len(got) == 2 and BIG in got and set(got) <= {BIG, digest}
    assert program.file.closed


def test_a_program_past_the_bound_is_refused_before_it_is_spooled(
        bounded, servers, files) -> None:
    """A stored program was counted once spooled, as a zapp's member is not: the 413
    the same, its copy on the proxy's disk wasted.  Now by its length, before it is read."""
    asked = servers(d0=ok(), d1=ok(), d2=ok())
    resp = post(bounded(20), copies(3))
    assert resp.status_int == 413, resp.body
    assert b'(swift://AUTH_a/bin/p1 is 12 bytes), more than zerovm_job_maxprograms' \
        in resp.body
    assert len(files) == 1 and all(f.closed for f in files) and not asked.asked


def test_an_input_past_the_bound_is_refused_before_it_is_spooled(
        swift, servers, monkeypatch) -> None:
    """An object sent along was counted in zerovm_job_maxinputs once spooled: the 413
    the same, the object written to the proxy's disk first.  Now by its length."""
    FakeRing.install(monkeypatch)
    files: list = []

    class Counted(caller.Spooled):
        written = 0

        def write(self, data) -> int:
            self.written += len(data)
            return super().write(data)
    monkeypatch.setattr(caller, 'spooled', lambda: files.append(
        Counted(max_size=SPOOL_MEMORY)) or files[-1])
    large = b'x' * (SPOOL_MEMORY + 1)
    for i in range(3):
        swift.add(f'/c/in{i}', large)
    groups = [{'name': f'g{i}', 'exec': {'path': 'swift://~/bin/wc'},
               'devices': [{'name': 'input', 'path': f'swift://~/c/in{i}'},
                           {'name': 'stdin', 'path': 'swift://~/c/data'},    # runs here
                           {'name': 'stdout'}]} for i in range(3)]
    asked = servers(d0=ok(), d1=ok(), d2=ok())
    mw = ProxyExecMiddleware(swift, {'zerovm_job_maxinputs': str(2 * len(large))})
    resp = post(mw, groups)
    assert resp.status_int == 413, resp.body
    assert b"this job's objects sent along would hold" in resp.body
    assert b'(swift://AUTH_a/c/in2 is' in resp.body
    # the program and the two inputs admitted: nothing spooled of the third
    assert sorted(f.written for f in files) == [12, len(large), len(large)]
    assert all(f.closed for f in files) and not asked.asked


def test_a_zapp_member_waits_on_the_proxys_disk(bounded, swift, servers, files) -> None:
    job = [{'name': 'g', 'exec': {'path': 'bin/p'}, 'devices': [{'name': 'stdout'}]}]
    archive = tar_bytes({'boot/system.map': json.dumps(job).encode(), 'bin/p': BIG})
    held: list = []

    def answer(plan, headers, members):
        held.append(plan.program)
        return ok()(plan, headers, members)
    asked = servers(d0=answer, d1=answer, d2=answer)
    resp = post(bounded(len(BIG)), archive, **{'Content-Type': 'application/x-tar'})
    assert resp.status_int == 200, resp.body
    (program,) = held
    assert program.size == len(BIG) and program.file._rolled and program.file in files
    assert [sent[wire.EXE] for _d, _h, sent in asked.asked] == [BIG]
    assert all(f.closed for f in files)


@pytest.mark.parametrize('failing', ['input missing', 'over the bound', 'no server',
                                     'zapp over the bound'])
def test_a_failed_jobs_programs_are_closed(bounded, swift, servers, files,
                                           failing: str) -> None:
    """Every spooled file of a job that fails (before or after its nodes were sent, or
    a program refused) is closed: none is left open on the proxy's disk."""
    swift.add('/bin/big', BIG)
    body, headers, limit, status = big_job(), {}, 2 * len(BIG), 503
    script = {'d0': ok(), 'd1': ok(), 'd2': ok()}
    if failing == 'input missing':
        body, status = big_job(path='swift://~/c/missing'), 404
    elif failing == 'over the bound':
        body, limit, status = [*big_job(), {**copies(1)[0], 'name': 'p'}], len(BIG), 413
    elif failing == 'no server':
        script = {}
    else:
        job = [{'name': f'g{i}', 'exec': {'path': f'bin/p{i}'},
                'devices': [{'name': 'stdout'}]} for i in range(2)]
        body = tar_bytes({'boot/system.map': json.dumps(job).encode(),
                          'bin/p0': BIG, 'bin/p1': BIG})
        headers, limit, status = {'Content-Type': 'application/x-tar'}, len(BIG), 413
    servers(**script)
    resp = post(bounded(limit), body, **headers)
    assert resp.status_int == status, resp.body
    assert len(files) >= (2 if failing == 'zapp over the bound' else 1)
    assert all(f.closed for f in files)


def test_a_zapp_member_the_proxys_full_disk_cannot_hold_is_a_507(
        bounded, swift, servers, monkeypatch) -> None:
    """The member's copy fills the disk: 507 (the operator's), not a 500; its file closed."""
    made: list = []

    class Full(caller.Spooled):
        def rollover(self) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full():        # the member's copy (the zapp itself, the body, is caller.spool's)
        made.append(Full(max_size=SPOOL_MEMORY))
        return made[-1]
    monkeypatch.setattr(sources, 'spooled', full)
    job = [{'name': 'g', 'exec': {'path': 'bin/p'}, 'devices': [{'name': 'stdout'}]}]
    asked = servers(d0=ok(), d1=ok(), d2=ok())
    resp = post(bounded(len(BIG)), tar_bytes({'boot/system.map': json.dumps(job).encode(),
                                              'bin/p': BIG}),
                **{'Content-Type': 'application/x-tar'})
    assert resp.status_int == 507, resp.body
    assert b'No space left on device' in resp.body and not asked.asked
    assert len(made) == 1 and made[0].closed


def test_a_gzipped_zapp_the_proxys_full_disk_cannot_hold_uncompressed_is_a_507(
        bounded, swift, servers, monkeypatch) -> None:
    """A gzipped zapp is uncompressed into a spooled file (``sources._open_zapp``): a
    full disk there was a 500; every write to a spooled file is now the operator's 507."""
    made: list = []

    class Full(caller.Spooled):
        def rollover(self) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full():        # the zapp uncompressed (the body itself is caller.spool's)
        made.append(Full(max_size=SPOOL_MEMORY))
        return made[-1]
    monkeypatch.setattr(sources, 'spooled', full)
    job = [{'name': 'g', 'exec': {'path': 'bin/p'}, 'devices': [{'name': 'stdout'}]}]
    asked = servers(d0=ok(), d1=ok(), d2=ok())
    program = b'\x7fELF' + os.urandom(SPOOL_MEMORY)     # that gzip cannot shrink
    resp = post(bounded(len(program)), gzip.compress(tar_bytes({
        'boot/system.map': json.dumps(job).encode(), 'bin/p': program})),
        **{'Content-Type': 'application/gzip'})
    assert resp.status_int == 507, resp.body
    assert b'No space left on device' in resp.body and not asked.asked
    assert made and all(f.closed for f in made)


def test_a_request_body_the_proxys_full_disk_cannot_hold_is_a_507(
        bounded, servers, monkeypatch) -> None:
    """A script's body is spooled before its job runs (``caller.spool``): a full disk
    there is the operator's 507 with the reason, as one met in the run is, not a 500."""
    made: list = []

    class Full(caller.Spooled):
        def rollover(self) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full():
        made.append(Full(max_size=16))
        return made[-1]
    monkeypatch.setattr(caller, 'spooled', full)
    asked = servers(d0=ok(), d1=ok(), d2=ok())
    script = b'#!swift://~/bin/p0\n' + b'# a script body is spooled\n' * 4
    resp = post(bounded(1 << 20), script)
    assert resp.status_int == 507, resp.body
    assert b'No space left on device' in resp.body and not asked.asked
    assert made and all(f.closed for f in made)

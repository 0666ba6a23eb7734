"""Property tests of the parsers that read what users send (issue 15).

Each parser has one documented error type, and nothing else may escape,
whatever the input: ``parse_elf`` raises ``ElfError``; ``validate`` and
``validate_code`` always answer with a verdict; the ZeroVM manifest
(``parse``, ``Manifest.check``, ``Manifest.from_dict``) raises
``ManifestError``; the NVRAM parser never raises; a tar image raises
``ImageError``.  Inputs are random bytes and text, and mutations of valid
inputs (a real static program, test_manifest's manifest, a tar), so that
the checks past the first header are reached too.  Bounded and derandomized
(fixed examples) so that the suite stays quick and repeatable.
"""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_manifest import GOOD as MANIFEST

from zvm_core.build.toolchain import build_static
from zvm_core.channels import MemoryBacking
from zvm_core.elf import ElfError, parse_elf
from zvm_core.syscalls.fs import Image, ImageError
from zvm_core.validator import Verdict, validate, validate_code
from zvm_core.zerovm import nvram
from zvm_core.zerovm.manifest import Manifest, ManifestError, parse

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

PROGRAM = """\
    .globl _start
    .text
_start:
    lea msg(%rip), %rsi
    mov $1, %edi
    mov $3, %edx
    mov $1, %eax
    syscall
    mov $60, %eax
    xor %edi, %edi
    syscall
    .data
msg: .ascii "ok\\n"
"""


@pytest.fixture(scope='module')
def elf_bytes(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp('fuzz')
    (d / 'prog.S').write_text(PROGRAM)
    return build_static(d / 'prog.S', d, 'gcc', ()).read_bytes()


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as tar:
        for name, data in (('etc/passwd', b'root:x:0:0\n'), ('bin/tool', b'\x7fELF')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo('lib/link')
        link.type, link.linkname = tarfile.SYMTYPE, '../etc/passwd'
        tar.addfile(link)
    return buf.getvalue()


TAR = _tar()


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out[:cut]) if cut is not None else bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=12)
CUT = st.none() | st.integers(0, 1 << 14)


def check_elf(data: bytes) -> None:
    try:
        program = parse_elf(data)
    except ElfError as e:
        assert e.rule in {'E1', 'E2', 'E3', 'E4', 'E5', 'E6'} and e.message
        return
    verdict = validate(program)
    assert isinstance(verdict, Verdict)
    assert verdict.ok == (not verdict.violations)


@FUZZ
@given(st.binary(max_size=512))
def test_elf_random_bytes(data):
    check_elf(b'\x7fELF\x02\x01' + data if data[:1] == b'\x00' else data)


@FUZZ
@given(edits=EDITS, cut=CUT, header=st.booleans())
def test_elf_mutations(elf_bytes, edits, cut, header):
    if header:      # most edits in the ELF and program headers, where the checks are
        edits = [(pos % 0x200, value) for pos, value in edits]
    check_elf(mutate(elf_bytes, edits, cut))


@FUZZ
@given(code=st.binary(max_size=256), base=st.integers(0, (1 << 32) - 1),
       before=st.binary(max_size=16), starts=st.lists(st.integers(0, 20), max_size=6))
def test_validate_code_always_answers(code, base, before, starts):
    verdict = validate_code(code, base, before=before,
                            before_starts=[base - 1 - k for k in starts])
    assert verdict.ok == (not verdict.violations)
    assert all(v.rule and v.text for v in verdict.violations)


def check_manifest(text: str | bytes) -> None:
    try:
        manifest = parse(text)
        manifest.check()
        again = parse(manifest.to_text())
    except ManifestError as e:
        assert e.errno and str(e)
        return
    assert again == manifest


@FUZZ
@given(st.text(max_size=400) | st.binary(max_size=400))
def test_manifest_random_text(text):
    check_manifest(text)


@FUZZ
@given(edits=EDITS, cut=CUT)
def test_manifest_mutations(edits, cut):
    check_manifest(mutate(MANIFEST.encode(), edits, cut))


@FUZZ
@given(st.lists(st.sampled_from(MANIFEST.splitlines()) | st.text(max_size=40), max_size=12))
def test_manifest_line_soup(lines):
    check_manifest('\n'.join(lines))


VALUES = st.none() | st.booleans() | st.integers() | st.text(max_size=20) | \
    st.lists(st.text(max_size=5), max_size=3)


@FUZZ
@given(st.dictionaries(st.sampled_from(['program', 'memory', 'timeout', 'memory_etag',
                                        'name_server', 'node', 'job', 'etag', 'version',
                                        'channels', 'other']),
                       VALUES | st.lists(st.dictionaries(
                           st.sampled_from(['alias', 'type', 'sources', 'etag', 'gets',
                                            'get_size', 'puts', 'put_size', 'x']),
                           VALUES), max_size=3)))
def test_manifest_from_dict(data):
    try:
        Manifest.from_dict(data).check()
    except ManifestError as e:
        assert e.errno and str(e)


@FUZZ
@given(st.text(max_size=400) | st.binary(max_size=400))
def test_nvram_never_raises(text):
    nv = nvram.parse(text)
    assert nv.args is None or all(isinstance(a, str) for a in nv.args)


def check_tar(data: bytes) -> None:
    image = Image()
    try:
        image.mount(MemoryBacking(data), '/', 'image')
    except ImageError as e:
        assert 'not a readable tar image' in str(e)


@FUZZ
@given(st.binary(max_size=2048))
def test_tar_random_bytes(data):
    check_tar(data)


@FUZZ
@given(edits=EDITS, cut=CUT)
def test_tar_mutations(edits, cut):
    check_tar(mutate(TAR, [(pos % 1024, value) for pos, value in edits], cut))

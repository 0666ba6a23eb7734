"""ELF checks E1–E6 on real binaries built by musl-gcc and gcc, and on patched copies."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from zvm_core import elf
from zvm_core.elf import PF_R, PF_W, PF_X, ElfError, load_program, parse_elf

HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
TLS_C = '__thread int x = 5;\n__thread char big[100000];\nint main(void) { return x + big[7]; }\n'
EXIT_S = '.globl _start\n.text\n_start:\n  mov $60, %eax\n  xor %edi, %edi\n  syscall\n'

PT_NULL, PT_LOAD, PT_INTERP, PT_TLS = 0, 1, 3, 7
PHDR = struct.Struct('<IIQQQQQQ')   # type flags offset vaddr paddr filesz memsz align


def build(directory: Path, name: str, source: str, *flags: str, cc: str = 'gcc',
          suffix: str = '.c') -> bytes:
    src = directory / f'{name}{suffix}'
    src.write_text(source)
    out = directory / name
    subprocess.run([cc, '-O2', *flags, '-o', str(out), str(src)], check=True)
    return out.read_bytes()


@pytest.fixture(scope='module')
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('elf')


@pytest.fixture(scope='module')
def musl_hello(work) -> bytes:
    return build(work, 'musl_hello', HELLO_C, '-static', cc='musl-gcc')


@pytest.fixture(scope='module')
def glibc_hello(work) -> bytes:
    return build(work, 'glibc_hello', HELLO_C, '-static')


@pytest.fixture(scope='module')
def asm_exit(work) -> bytes:
    return build(work, 'asm_exit', EXIT_S, '-nostdlib', '-static', suffix='.S')


# -- patching helpers (independent of the code under test) ----------------------


def phdrs(data: bytes) -> list[list[int]]:
    phoff, = struct.unpack_from('<Q', data, 0x20)
    phnum, = struct.unpack_from('<H', data, 0x38)
    return [list(PHDR.unpack_from(data, phoff + i * PHDR.size)) for i in range(phnum)]


def with_phdr(data: bytes, index: int, **fields: int) -> bytes:
    names = ['type', 'flags', 'offset', 'vaddr', 'paddr', 'filesz', 'memsz', 'align']
    entry = phdrs(data)[index]
    for key, value in fields.items():
        entry[names.index(key)] = value
    out = bytearray(data)
    phoff, = struct.unpack_from('<Q', data, 0x20)
    PHDR.pack_into(out, phoff + index * PHDR.size, *entry)
    return bytes(out)


def find(data: bytes, ptype: int, flags: int | None = None) -> int:
    return next(i for i, p in enumerate(phdrs(data))
                if p[0] == ptype and (flags is None or p[1] & flags == flags))


def patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def rejects(data: bytes, rule: str, *words: str, **kwargs) -> ElfError:
    with pytest.raises(ElfError) as info:
        parse_elf(data, **kwargs)
    err = info.value
    assert err.rule == rule, str(err)
    for word in words:
        assert word in err.message, str(err)
    return err


# -- ordinary programs pass, and the image is what readelf says -------------------


def test_musl_static_hello(musl_hello):
    prog = parse_elf(musl_hello)
    f = ELFFile(io.BytesIO(musl_hello))
    loads = [s.header for s in f.iter_segments() if s.header.p_type == 'PT_LOAD']
    assert [(s.vaddr, s.memsz, s.flags) for s in prog.segments] == \
        [(h.p_vaddr, h.p_memsz, h.p_flags) for h in loads]
    assert all(len(s.data) == h.p_filesz for s, h in zip(prog.segments, loads, strict=True))
    assert prog.entry == f.header.e_entry
    assert prog.phnum == f.header.e_phnum and prog.phent == 56
    assert prog.phdr_addr == loads[0].p_vaddr + f.header.e_phoff   # musl has no PT_PHDR
    assert prog.tls is None
    assert prog.size == len(musl_hello)
    assert prog.sha256 == hashlib.sha256(musl_hello).hexdigest()
    sections = [(s.header.sh_addr, s.header.sh_size) for s in f.iter_sections()
                if s.header.sh_flags & 4]
    assert [(c.start, len(c.data)) for c in prog.code] == sections    # .init .text .fini
    text = next(s for s in prog.segments if s.executable)
    for c in prog.code:
        assert c.data == text.data[c.start - text.vaddr:c.end - text.vaddr]
    assert prog.image_end() == (max(s.end for s in prog.segments) + 0xFFF) & ~0xFFF


def test_glibc_static_hello_with_tls(glibc_hello):
    prog = parse_elf(glibc_hello)
    tls = phdrs(glibc_hello)[find(glibc_hello, PT_TLS)]
    assert prog.tls == (tls[3], tls[5], tls[6], tls[7])
    assert [s.flags for s in prog.segments] == [PF_R, PF_R | PF_X, PF_R, PF_R | PF_W]
    assert len(prog.code) >= 3


def test_musl_tls_larger_than_segment(work):
    data = build(work, 'musl_tls', TLS_C, '-static', cc='musl-gcc')
    vaddr, filesz, memsz, _ = parse_elf(data).tls
    assert filesz == 4 and memsz > 100000


def test_load_program_reads_the_file(work, musl_hello):
    path = work / 'musl_hello'
    assert load_program(path) == parse_elf(musl_hello)


def test_without_section_headers_the_whole_segment_is_code(asm_exit):
    data = patched(patched(patched(asm_exit, 0x28, '<Q', 0), 0x3C, '<H', 0), 0x3E, '<H', 0)
    prog = parse_elf(data)
    text = next(s for s in prog.segments if s.executable)
    assert [(c.start, c.data) for c in prog.code] == [(text.vaddr, text.data)]


def test_garbage_section_headers_are_only_hints(asm_exit):
    prog = parse_elf(patched(asm_exit, 0x28, '<Q', len(asm_exit) + 12345))
    text = next(s for s in prog.segments if s.executable)
    assert [c.start for c in prog.code] == [text.vaddr]


def test_error_type():
    err = ElfError('E4', 'something')
    assert isinstance(err, ValueError)
    assert str(err) == 'E4: something' and err.rule == 'E4' and err.message == 'something'


# -- E1 -------------------------------------------------------------------------


def test_e1_not_elf():
    rejects(b'#!/bin/sh\necho hi\n' * 10, 'E1', 'not an ELF')
    rejects(b'', 'E1', 'not an ELF')
    err = rejects(b'import sys\nprint(1)\n', 'E1', 'not an ELF')
    assert err.message == (
        "not an ELF file (starts with 69 6d 70 6f): a text file ('import sys'...), not a "
        'program: build one with musl-gcc -static; a Python or Lua script runs with '
        '"file://python3:python3" or "file://lua:lua" (doc/python.md, doc/lua.md), a ZeroVM '
        'manifest with zvm MANIFEST')
    assert rejects(b'\x00\x01binary', 'E1').message == 'not an ELF file (starts with 00 01 62 69)'


def test_e1_class_endianness_machine(asm_exit):
    rejects(patched(asm_exit, 4, '<B', 1), 'E1', 'ELFCLASS64')
    rejects(patched(asm_exit, 5, '<B', 2), 'E1', 'little-endian')
    rejects(patched(asm_exit, 0x12, '<H', 3), 'E1', 'EM_386')


def test_e1_relocatable_object(work):
    src = work / 'obj.S'
    src.write_text(EXIT_S)
    subprocess.run(['gcc', '-c', '-o', str(work / 'obj.o'), str(src)], check=True)
    rejects((work / 'obj.o').read_bytes(), 'E1', 'ET_REL')


def test_e1_static_pie(work):
    data = build(work, 'static_pie', HELLO_C, '-static-pie')
    rejects(data, 'E1', 'ET_DYN', 'build with -static (not -static-pie)')


def test_e1_default_pie(work):
    rejects(build(work, 'pie', HELLO_C, '-pie', '-fPIE'), 'E1', 'ET_DYN')


# -- E2 -------------------------------------------------------------------------


def test_e2_dynamic_executable(work):
    data = build(work, 'dynamic', HELLO_C, '-no-pie')
    rejects(data, 'E2', 'PT_INTERP')
    rejects(with_phdr(data, find(data, PT_INTERP), type=PT_NULL), 'E2', 'PT_DYNAMIC')


# -- E3 -------------------------------------------------------------------------


def test_e3_truncated(musl_hello):
    rejects(musl_hello[:40], 'E3', 'truncated ELF header')
    rejects(musl_hello[:100], 'E3', 'program header table')
    text = phdrs(musl_hello)[find(musl_hello, PT_LOAD, PF_X)]
    rejects(musl_hello[:text[2] + 10], 'E3', 'past the end')


def test_e3_phnum_and_phentsize(musl_hello):
    rejects(patched(musl_hello, 0x38, '<H', 200), 'E3', 'e_phnum is 200')
    rejects(patched(musl_hello, 0x38, '<H', 0xFFFF), 'E3', 'e_phnum')
    rejects(patched(musl_hello, 0x38, '<H', 0), 'E3', 'no program headers')
    rejects(patched(musl_hello, 0x36, '<H', 32), 'E3', 'e_phentsize')


def test_e3_segment_fields(musl_hello):
    i = find(musl_hello, PT_LOAD, PF_W)
    p = phdrs(musl_hello)[i]
    rejects(with_phdr(musl_hello, i, filesz=p[6] + 1), 'E3', 'p_filesz')
    rejects(with_phdr(musl_hello, i, offset=len(musl_hello)), 'E3', 'past the end')
    rejects(with_phdr(musl_hello, i, vaddr=p[3] + 1), 'E3', 'modulo the page size')


def test_e3_overlapping_segments(musl_hello):
    text = phdrs(musl_hello)[find(musl_hello, PT_LOAD, PF_X)]
    i = find(musl_hello, PT_LOAD, PF_W)
    data = phdrs(musl_hello)[i]
    vaddr = text[3] + data[2] % 0x1000        # same page as the code, same page offset
    rejects(with_phdr(musl_hello, i, vaddr=vaddr), 'E3', 'overlaps')


def test_e3_guest_window(musl_hello):
    i = find(musl_hello, PT_LOAD, PF_W)
    p = phdrs(musl_hello)[i]
    rejects(with_phdr(musl_hello, i, vaddr=0x10000 + p[2] % 0x1000), 'E3', 'guest window')
    rejects(with_phdr(musl_hello, i, vaddr=elf.GUEST_HIGH - 0x1000 + p[2] % 0x1000,
                      memsz=0x2000), 'E3', 'guest window')
    rejects(with_phdr(musl_hello, i, memsz=1 << 40), 'E3')


def test_e3_memory_limit(musl_hello):
    need = sum(((p[3] + p[6] + 0xFFF) & ~0xFFF) - (p[3] & ~0xFFF)
               for p in phdrs(musl_hello) if p[0] == PT_LOAD)
    assert parse_elf(musl_hello, memory_limit=need)
    rejects(musl_hello, 'E3', f'need {need} bytes', f'the limit is {need - 1}',
            memory_limit=need - 1)


def test_e3_no_load_segments(asm_exit):
    data = asm_exit
    for i, p in enumerate(phdrs(asm_exit)):
        if p[0] == PT_LOAD:
            data = with_phdr(data, i, type=PT_NULL)
    rejects(data, 'E3', 'PT_LOAD')


def test_e3_file_size_checked_before_reading(tmp_path):
    big = tmp_path / 'big'
    with open(big, 'wb') as f:
        f.truncate(elf.MAX_FILE_SIZE + 1)     # sparse: nothing to read if the check comes first
    with pytest.raises(ElfError, match='E3: file is'):
        load_program(big)


def test_a_file_that_grew_after_its_size_was_read_is_read_whole(tmp_path, musl_hello,
                                                                 monkeypatch):
    """load_program reads the size fstat gave, then the rest: the bytes are the
    file's (as when it read up to the limit at once), whatever fstat said."""
    path = tmp_path / 'hello'
    path.write_bytes(musl_hello)
    real = elf.os.fstat
    monkeypatch.setattr(elf.os, 'fstat', lambda fd: os.stat_result(
        (*real(fd)[:6], 100, *real(fd)[7:])))
    assert load_program(path).sha256 == hashlib.sha256(musl_hello).hexdigest()


def test_a_program_parsed_again_is_the_same_with_its_own_code_ranges(musl_hello):
    """parse_elf keeps what it made of a file by content: parsed again, the same
    image; the code ranges are each load's, so releasing one (prepare does) leaves
    the next one's whole."""
    first = parse_elf(musl_hello)
    codes = list(first.code)
    elf.release_code(first)
    again = parse_elf(musl_hello)
    assert again == first and again.segments == first.segments
    assert (again.entry, again.phdr_addr, again.phnum, again.tls, again.size) == \
        (first.entry, first.phdr_addr, first.phnum, first.tls, first.size)
    assert list(again.code) == codes
    with pytest.raises(ElfError, match='E3'):      # a limit is part of what was kept
        parse_elf(musl_hello, memory_limit=4096)


def test_a_rejected_file_is_rejected_again(musl_hello):
    bad = with_phdr(musl_hello, 0, type=PT_INTERP)
    for _ in range(2):
        with pytest.raises(ElfError, match='E2'):
            parse_elf(bad)


def test_corrupted_headers_only_raise_elf_error(musl_hello):
    """Random header damage: either a valid Program or an ElfError, never anything else."""
    rng = random.Random(1234)
    for _ in range(500):
        data = bytearray(musl_hello)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(4, 0x200)] = rng.randrange(256)
        try:
            parse_elf(bytes(data))
        except ElfError:
            pass
    for n in range(0, 0x200, 7):
        with pytest.raises(ElfError):
            parse_elf(musl_hello[:n])


# -- E4, E5, E6 -----------------------------------------------------------------


def test_e4_writable_and_executable(work, musl_hello):
    rwx = build(work, 'rwx', EXIT_S, '-nostdlib', '-static', '-Wl,-N', suffix='.S')
    rejects(rwx, 'E4', 'both writable and executable')
    i = find(musl_hello, PT_LOAD, PF_X)
    rejects(with_phdr(musl_hello, i, flags=PF_R | PF_W | PF_X), 'E4', f'#{i}', 'RWX')


def test_e4_zero_filled_code(musl_hello):
    i = find(musl_hello, PT_LOAD, PF_X)
    rejects(with_phdr(musl_hello, i, memsz=3 << 30), 'E4', 'zero-filled')


def test_e4_no_executable_segment(musl_hello):
    i = find(musl_hello, PT_LOAD, PF_X)
    rejects(with_phdr(musl_hello, i, flags=PF_R), 'E4', 'no executable')


def test_e5_entry_outside_code(musl_hello):
    data = phdrs(musl_hello)[find(musl_hello, PT_LOAD, PF_W)]
    rejects(patched(musl_hello, 0x18, '<Q', data[3]), 'E5', f'{data[3]:#x}')
    rejects(patched(musl_hello, 0x18, '<Q', 0), 'E5')


def test_e6_executable_stack(work):
    data = build(work, 'execstack', HELLO_C, '-static', '-Wl,-z,execstack', cc='musl-gcc')
    rejects(data, 'E6', 'executable stack')


def test_e6_tls_outside_image(glibc_hello):
    i = find(glibc_hello, PT_TLS)
    rejects(with_phdr(glibc_hello, i, vaddr=0x30000), 'E6', 'PT_TLS')
    p = phdrs(glibc_hello)[i]
    rejects(with_phdr(glibc_hello, i, filesz=p[6] + 8), 'E6', 'p_filesz')


# -- pyelftools only where it is needed -------------------------------------------


def test_a_program_is_read_without_pyelftools_until_its_sections_are_asked_for(work, musl_hello):
    """A run whose verdict is cached never needs the section hints: importing pyelftools
    for them was a third of the zvm command's start-up."""
    code = ('import sys\nfrom zvm_core.elf import load_program\n'
            f'p = load_program({str(work / "musl_hello")!r})\n'
            'assert p.entry and p.segments and p.phdr_addr\n'
            'print(any(m.startswith("elftools") for m in sys.modules))\n'
            'print(len(p.code))\n'
            'print(any(m.startswith("elftools") for m in sys.modules))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ['False', str(len(parse_elf(musl_hello).code)), 'True']


def test_program_headers_are_read_as_pyelftools_reads_them(musl_hello, glibc_hello):
    """The struct reading of the program headers against pyelftools', on damaged copies."""
    rng = random.Random(99)
    names = {elf.PT_LOAD: 'PT_LOAD', elf.PT_DYNAMIC: 'PT_DYNAMIC', elf.PT_INTERP: 'PT_INTERP',
             elf.PT_PHDR: 'PT_PHDR', elf.PT_TLS: 'PT_TLS', elf.PT_GNU_STACK: 'PT_GNU_STACK'}
    for original in (musl_hello, glibc_hello):
        phoff, = struct.unpack_from('<Q', original, 0x20)
        for _ in range(200):
            data = bytearray(original)
            for _ in range(rng.randint(1, 6)):
                at = phoff + rng.randrange(5 * PHDR.size)
                data[at] = rng.choice([0, 1, 2, 3, 6, 7, 0x51, 0xE5, 0x64, rng.randrange(256)])
            data = bytes(data)
            phnum, = struct.unpack_from('<H', data, 0x38)
            ours = elf._program_headers(data, phoff, phnum, 56)
            theirs = [ELFFile(io.BytesIO(data)).get_segment(i).header for i in range(phnum)]
            for ph, h in zip(ours, theirs, strict=True):
                assert (names.get(ph.type, ph.type), ph.flags, ph.offset, ph.vaddr, ph.filesz,
                        ph.memsz, ph.align) == (h.p_type if h.p_type in names.values()
                                                else ph.type, h.p_flags, h.p_offset, h.p_vaddr,
                                                h.p_filesz, h.p_memsz, h.p_align)


def test_e1_names_the_machine_and_type_as_pyelftools_does(asm_exit):
    assert rejects(patched(asm_exit, 0x12, '<H', 0xBEEF), 'E1').message == \
        'e_machine is 48879, not EM_X86_64'
    assert rejects(patched(asm_exit, 0x10, '<H', 4), 'E1').message == \
        'e_type is ET_CORE, not ET_EXEC'
    # an object file (cc -c) said only "not ET_EXEC": it says to link it
    assert rejects(patched(asm_exit, 0x10, '<H', 1), 'E1').message == (
        'e_type is ET_REL (an object file, compiled with -c but not linked): link it '
        'into a program, musl-gcc -static -o prog prog.o')


def test_e3_a_dynamic_segment_pyelftools_cannot_read(work):
    """PT_DYNAMIC with a section table past the end: refused as before, E3."""
    data = build(work, 'dynamic', HELLO_C, '-no-pie')
    data = with_phdr(data, find(data, PT_INTERP), type=PT_NULL)
    rejects(patched(data, 0x28, '<Q', len(data) + 12345), 'E3',
            'malformed program header: Reading section 0')


def test_a_prepared_program_keeps_no_second_copy_of_its_file(work, musl_hello):
    """Until its code ranges are computed a Program holds its file's bytes; the pool keeps
    many prepared programs, so prepare() lets them go once the verdicts are known (a
    Program it was given is the caller's, left as it is)."""
    from zvm_core.prepare import prepare
    from zvm_core.validator import VerdictCache
    cache = VerdictCache(None)
    first = prepare(work / 'musl_hello', cache=cache, engine='emulated')  # validated here
    assert len(first.program.code) == len(parse_elf(musl_hello).code)
    again = prepare(work / 'musl_hello', cache=cache, engine='emulated')  # cached verdict
    assert again.verdict.cached
    with pytest.raises(RuntimeError, match='released'):
        len(again.program.code)
    assert 'released' in repr(again)        # a repr (a log line, an error) still works
    given = load_program(work / 'musl_hello')
    assert prepare(given, cache=cache, engine='emulated').program is given
    assert len(given.code) == len(first.program.code)

"""The validator on programs as users build them: C++ with ``g++ -static`` (its
libstdc++ holds ``rdrand``), and programs stripped of symbols or of their section
headers (``sstrip``, ``strip --strip-section-headers``), which the validator then
sweeps segment by segment."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from zvm_core.elf import parse_elf
from zvm_core.validator import Verdict, validate

HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
LINES_CPP = """\
#include <iostream>
#include <string>
int main() {
    long n = 0;
    for (std::string line; std::getline(std::cin, line);) n++;
    std::cout << n << std::endl;
}
"""


@pytest.fixture(scope='module')
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('builds')


def build(work: Path, source_name: str, source: str, cc: str, *flags: str) -> bytes:
    src, out = work / source_name, work / Path(source_name).stem
    src.write_text(source)
    subprocess.run([cc, '-static', *flags, '-o', str(out), str(src)], check=True)
    return out.read_bytes()


def without_section_headers(data: bytes) -> bytes:
    """``data`` as ``sstrip`` or ``strip --strip-section-headers`` leave it (binutils
    2.40's strip has no such option): no section header table."""
    out = bytearray(data)
    struct.pack_into('<Q', out, 0x28, 0)             # e_shoff
    struct.pack_into('<HHH', out, 0x3A, 0, 0, 0)     # e_shentsize, e_shnum, e_shstrndx
    return bytes(out)


def starts(verdict: Verdict) -> set[int]:
    return {base + 8 * j + k for base, bits in verdict.boundaries
            for j, byte in enumerate(bits) if byte for k in range(8) if byte >> k & 1}


def test_cpp_with_strings_says_how_to_link_it(work: Path) -> None:
    # "rdrand eax: hardware random number: nondeterministic and cannot be hooked", and
    # nothing said why a C++ program that asks for no randomness holds one
    verdict = validate(parse_elf(build(work, 'lines.cpp', LINES_CPP, 'g++', '-O2')))
    assert not verdict.ok
    assert {v.rule for v in verdict.violations} == {'I3'}
    for v in verdict.violations:
        assert v.text.split(':')[0].split()[0] in ('rdrand', 'rdseed')
        assert v.text.endswith(': hardware random number: nondeterministic and cannot be '
                               'hooked (static libstdc++? link with -Wl,--gc-sections; the '
                               'sandbox has no hardware randomness: getrandom is seeded)')
    linked = build(work, 'lines_gc.cpp', LINES_CPP, 'g++', '-O2', '-Wl,--gc-sections')
    assert validate(parse_elf(linked)).ok


@pytest.mark.parametrize('cc', ['musl-gcc', 'gcc'])
def test_a_program_without_section_headers_validates_as_with_them(work: Path, cc: str) -> None:
    # "I8 call 0x401010: target 0x401010 is inside the instruction at 0x40100f": the
    # whole segment was swept, and .init's zero padding ran on into .text out of sync
    data = build(work, f'hello_{cc}.c', HELLO_C, cc, '-O2')
    whole = validate(parse_elf(data))
    stripped = validate(parse_elf(without_section_headers(data)))
    assert stripped.ok, stripped.violations
    assert stripped.instructions == whole.instructions
    assert starts(stripped) == starts(whole)


def test_strip_s_keeps_the_section_headers(work: Path) -> None:
    data = build(work, 'hello_s.c', HELLO_C, 'musl-gcc', '-O2', '-s')
    assert validate(parse_elf(data)).ok


PADDED = """\
    .globl _start
    .section .init, "ax"
init:
    ret
    .text
    .p2align 4
_start:
    call init
    jmp init + 2
    mov $60, %eax
    xor %edi, %edi
    syscall
"""


def test_padding_skipped_without_section_headers_is_no_instruction_start(work: Path) -> None:
    """The zeros after ``.init``'s ``ret`` are not swept: a branch into them is refused
    (I8), as the guard refuses any jump there."""
    data = without_section_headers(build(work, 'padded.S', PADDED, 'gcc', '-nostdlib'))
    verdict = validate(parse_elf(data))
    assert [(v.rule, v.text.split(':')[1].strip()) for v in verdict.violations] == [
        ('I8', f'target {0x401002:#x} is not an instruction start the sweep decoded')]

"""Validator rules I1–I8, I13, I14 and E5, the boundary bitmap, transactional
instructions (noted, made ud2) and the verdict cache.

Every rule is exercised by a real static binary: a few lines of assembly
linked with ``gcc -nostdlib -static``, or C built with musl-gcc / gcc.
"""

from __future__ import annotations

import dataclasses
import fcntl
import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import unicorn
from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from elftools.elf.elffile import ELFFile

from zvm_core import validator
from zvm_core.elf import parse_elf
from zvm_core.validator import (
    MAX_VIOLATIONS,
    UD2,
    VALIDATOR_VERSION,
    Policy,
    Verdict,
    VerdictCache,
    Violation,
    as_fixed_cpu,
    cache_key,
    default_cache,
    validate,
    validate_code,
)

ASM = Path(__file__).resolve().parents[1] / 'programs' / 'asm'
HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
TEMPLATE = """\
    .globl _start, mark
    .weak missing
    .text
_start:
    nop
mark:
    {}
    mov $60, %eax
    xor %edi, %edi
    syscall
"""
REJECT = Policy(rdtsc='reject')


@pytest.fixture(scope='module')
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('validator')


def build(directory: Path, name: str, source: str, *flags: str, cc: str = 'gcc',
          suffix: str = '.S') -> bytes:
    src = directory / f'{name}{suffix}'
    src.write_text(source)
    out = directory / name
    extra = ('-nostdlib', '-static') if suffix == '.S' else ('-O2', '-static')
    subprocess.run([cc, *extra, *flags, '-o', str(out), str(src)], check=True)
    return out.read_bytes()


def snippet(directory: Path, name: str, asm: str, *flags: str) -> bytes:
    return build(directory, name, TEMPLATE.format(asm.replace(';', '\n    ')), *flags)


def symbols(data: bytes) -> dict[str, int]:
    table = ELFFile(io.BytesIO(data)).get_section_by_name('.symtab')
    return {s.name: s['st_value'] for s in table.iter_symbols() if s.name}


def is_start(verdict: Verdict, addr: int) -> bool:
    for base, bits in verdict.boundaries:
        o = addr - base
        if 0 <= o < 8 * len(bits):
            return bool(bits[o >> 3] >> (o & 7) & 1)
    return False


def starts(verdict: Verdict) -> list[int]:
    return [base + 8 * j + k for base, bits in verdict.boundaries
            for j, byte in enumerate(bits) if byte for k in range(8) if byte >> k & 1]


def rules(verdict: Verdict) -> list[tuple[str, int]]:
    return [(v.rule, v.address) for v in verdict.violations]


@pytest.fixture(scope='module')
def musl_hello(work) -> bytes:
    return build(work, 'musl_hello', HELLO_C, cc='musl-gcc', suffix='.c')


@pytest.fixture(scope='module')
def glibc_hello(work) -> bytes:
    return build(work, 'glibc_hello', HELLO_C, suffix='.c')


# -- ordinary programs ------------------------------------------------------------


@pytest.mark.parametrize('policy', [Policy(), REJECT], ids=['virtualize', 'reject'])
def test_musl_hello_is_valid(musl_hello, policy):
    verdict = validate(parse_elf(musl_hello), policy)
    assert verdict.ok and verdict.violations == [] and not verdict.cached
    assert verdict.instructions > 500


def test_glibc_hello_is_valid_with_virtual_rdtsc(glibc_hello):
    verdict = validate(parse_elf(glibc_hello))
    assert verdict.ok, verdict.violations[:5]
    assert verdict.instructions > 50000


def test_glibc_hello_rejected_when_rdtsc_is_rejected(glibc_hello):
    verdict = validate(parse_elf(glibc_hello), REJECT)
    assert not verdict.ok
    assert {v.rule for v in verdict.violations} == {'I4'}
    assert all(v.text.startswith('rdtsc') for v in verdict.violations)


def test_bitmap_is_closed_under_fall_through(musl_hello, glibc_hello):
    """Every marked start either ends in a terminator or is followed by a marked start.

    This is what lets the runtime guard check block starts only: a block
    decodes sequentially from a marked start and so meets only checked code.
    """
    md = Cs(CS_ARCH_X86, CS_MODE_64)
    terminators = {'jmp', 'ret', 'ud2', 'hlt', 'int3'}
    for data in (musl_hello, glibc_hello):
        prog = parse_elf(data)
        verdict = validate(prog)
        marked = starts(verdict)
        assert len(marked) == verdict.instructions
        assert is_start(verdict, prog.entry)
        code = {s.vaddr: s.data for s in prog.segments if s.executable}
        mark_set = set(marked)
        for addr in marked:
            vaddr = next(v for v in code if v <= addr < v + len(code[v]) + 0x1000)
            raw = code[vaddr][addr - vaddr:addr - vaddr + 15].ljust(15, b'\0')
            _, size, mnem, _ = next(md.disasm_lite(raw, addr, 1))
            assert mnem.split()[-1] in terminators or addr + size in mark_set, hex(addr)
    for base, _ in verdict.boundaries:
        assert base % 8 == 0


# -- the rule table -----------------------------------------------------------------

FORBIDDEN = [
    # I2: privileged and system instructions (they succeed at CPL 0 under unicorn)
    ('wrmsr', 'wrmsr', 'I2'), ('rdmsr', 'rdmsr', 'I2'),
    ('mov_to_cr3', 'mov %rax, %cr3', 'I2'), ('mov_from_cr0', 'mov %cr0, %rax', 'I2'),
    ('mov_to_dr7', 'mov %rax, %dr7', 'I2'),
    ('in', 'in %dx, %al', 'I2'), ('out', 'out %al, $0x80', 'I2'),
    ('insb', 'insb', 'I2'), ('outsl', 'outsl', 'I2'),
    ('cli', 'cli', 'I2'), ('sti', 'sti', 'I2'),
    ('lgdt', 'lgdt (%rax)', 'I2'), ('lidt', 'lidt (%rax)', 'I2'), ('lldt', 'lldt %ax', 'I2'),
    ('ltr', 'ltr %ax', 'I2'), ('sgdt', 'sgdt (%rax)', 'I2'), ('sidt', 'sidt (%rax)', 'I2'),
    ('sldt', 'sldt %ax', 'I2'), ('str', 'str %ax', 'I2'), ('smsw', 'smsw %ax', 'I2'),
    ('lmsw', 'lmsw %ax', 'I2'), ('clts', 'clts', 'I2'),
    ('invlpg', 'invlpg (%rax)', 'I2'), ('invd', 'invd', 'I2'), ('wbinvd', 'wbinvd', 'I2'),
    ('swapgs', 'swapgs', 'I2'), ('sysretq', 'sysretq', 'I2'), ('sysexitq', 'sysexitq', 'I2'),
    ('iretq', 'iretq', 'I2'), ('rdpmc', 'rdpmc', 'I2'), ('xsetbv', 'xsetbv', 'I2'),
    ('monitor', 'monitor', 'I2'), ('mwait', 'mwait', 'I2'), ('vmcall', 'vmcall', 'I2'),
    ('vmxon', 'vmxon (%rax)', 'I2'), ('vmrun', 'vmrun', 'I2'), ('getsec', 'getsec', 'I2'),
    ('encls', 'encls', 'I2'), ('xsaves', 'xsaves (%rax)', 'I2'),
    # I3: hardware randomness
    ('rdrand', 'rdrand %eax', 'I3'), ('rdseed', 'rdseed %rax', 'I3'),
    # I4: rdpid is never hooked
    ('rdpid', 'rdpid %rax', 'I4'),
    # I6: segment state
    ('mov_to_fs', 'mov %ax, %fs', 'I6'), ('mov_to_ss', 'mov %ax, %ss', 'I6'),
    ('mov_mem_to_ds', 'mov (%rax), %ds', 'I6'), ('pop_fs', 'pop %fs', 'I6'),
    ('pop_gs', 'pop %gs', 'I6'), ('lfs', 'lfs (%rax), %eax', 'I6'),
    ('lss', 'lss (%rax), %eax', 'I6'), ('ljmp', 'ljmp *(%rax)', 'I6'),
    ('ljmp_rexw', 'rex.w ljmp *(%rax)', 'I6'), ('lcall', 'lcall *(%rax)', 'I6'),
    ('lcall_r12', 'lcall *(%r12)', 'I6'), ('lret', 'lret', 'I6'), ('lretq', 'lretq', 'I6'),
    ('wrfsbase', 'wrfsbase %rax', 'I6'), ('wrgsbase', 'wrgsbase %rax', 'I6'),
    # I7: system-call paths other than syscall
    ('int80', 'int $0x80', 'I7'), ('sysenter', 'sysenter', 'I7'), ('int1', 'int1', 'I7'),
    ('int_n', 'int $0x21', 'I7'),
]


@pytest.mark.parametrize('name,asm,rule', FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_forbidden_instruction(work, name, asm, rule):
    data = snippet(work, name, asm)
    verdict = validate(parse_elf(data))
    assert not verdict.ok
    assert rules(verdict) == [(rule, symbols(data)['mark'])], verdict.violations
    assert ': ' in verdict.violations[0].text         # the instruction, then the reason


ALLOWED = [
    ('syscall', 'syscall'), ('int3', 'int3'), ('ud2', 'ud2'), ('hlt', 'hlt'),
    ('cpuid', 'cpuid'), ('xgetbv', 'xgetbv'), ('rdtsc', 'rdtsc'), ('rdtscp', 'rdtscp'),
    ('fs_tls', 'mov %fs:0, %rax'), ('gs_override', 'mov %gs:8, %rax'),
    ('read_fs', 'mov %fs, %ax'), ('push_fs', 'push %fs'), ('rdfsbase', 'rdfsbase %rax'),
    ('cs_nop_padding', 'cs nopw 0(%rax,%rax,1)'),
    ('ignored_prefix_nops', '.byte 0x3e, 0x90, 0x26, 0x90, 0x36, 0x90, 0x2e, 0x90'),
    ('endbr64', 'endbr64'),
    ('cet', 'rdsspq %rax; incsspq %rax'), ('avx2', 'vpaddd %ymm0, %ymm1, %ymm2'),
    ('avx512', 'vpaddd %zmm0, %zmm1, %zmm2'), ('lock', 'lock cmpxchg %rcx, (%rdx)'),
    ('rep', 'rep stosb'), ('indirect', 'notrack jmp *%rax; call *(%rax); jmp *%rbx'),
    ('weak_call', 'call missing'), ('mov_reg', 'mov %rax, %rdx; mov (%rax), %rcx'),
    ('loops', '1: loop 1b; jrcxz 1b; loope 1b'),
    ('prefix_skip', 'je skip; lock; skip: cmpxchg %rcx, (%rdx)'),
]


@pytest.mark.parametrize('name,asm', ALLOWED, ids=[a[0] for a in ALLOWED])
def test_allowed_instruction(work, name, asm):
    verdict = validate(parse_elf(snippet(work, name, asm)))
    assert verdict.ok, verdict.violations


def test_prefix_skipping_target_is_marked(work):
    data = snippet(work, 'prefix_skip', 'je skip; lock; skip: cmpxchg %rcx, (%rdx)')
    verdict = validate(parse_elf(data))
    skip = symbols(data)['skip']
    assert verdict.ok and is_start(verdict, skip) and is_start(verdict, skip - 1)


@pytest.mark.parametrize('insn', ['rdtsc', 'rdtscp'])
def test_rdtsc_follows_policy(work, insn):
    data = snippet(work, insn, insn)
    assert validate(parse_elf(data)).ok
    verdict = validate(parse_elf(data), REJECT)
    assert rules(verdict) == [('I4', symbols(data)['mark'])]
    assert 'rdtsc=reject' in verdict.violations[0].text


def test_i1_undecodable_byte_then_resync(work):
    data = snippet(work, 'bad_byte', '.byte 0x06; wrmsr')
    mark = symbols(data)['mark']
    verdict = validate(parse_elf(data))
    assert rules(verdict) == [('I1', mark), ('I2', mark + 1)]
    assert '06' in verdict.violations[0].text


def test_i1_operand_size_prefix_on_branch(work):
    """capstone reads 66 0f 85 with a 32-bit offset, unicorn with a 16-bit one."""
    data = snippet(work, 'branch16', '.byte 0x66, 0x0f, 0x85; .long 0')
    verdict = validate(parse_elf(data))
    assert ('I1', symbols(data)['mark']) in rules(verdict)
    assert 'operand-size prefix' in verdict.violations[0].text


def test_i1_operand_size_prefix_on_return(work):
    """capstone reads 66 REX.W c2 with a 32-bit immediate, unicorn with a 16-bit one."""
    data = snippet(work, 'ret16', '.byte 0x66, 0x48, 0xc2, 0x08, 0x00, 0x90, 0x90')
    verdict = validate(parse_elf(data))
    assert rules(verdict) == [('I1', symbols(data)['mark'])]
    assert 'operand-size prefix on a return' in verdict.violations[0].text


I13 = [
    # XOP: unicorn runs 8f /r as pop and the rest as other instructions
    ('xop_vpperm', '.byte 0x8f, 0xe8, 0x78, 0xa3, 0xc0, 0x10', 'vpperm', 'XOP'),
    ('xop_prefixed', '.byte 0x66, 0x8f, 0xe8, 0x78, 0xa3, 0xc0, 0x10', 'vpperm', 'XOP'),
    ('tbm_blcfill', '.byte 0x8f, 0xe9, 0xf8, 0x01, 0xc8', 'blcfill', 'XOP'),
    ('tbm_memory', '.byte 0x8f, 0xe9, 0xf8, 0x01, 0x08', 'blcfill', 'XOP'),
    # 3DNow!: unicorn has none of it
    ('3dnow_pfadd', '.byte 0x0f, 0x0f, 0xc1, 0x9e', 'pfadd', '3DNow!'),
    ('3dnow_prefixed', '.byte 0x66, 0x0f, 0x0f, 0xc1, 0x9e', 'pfadd', '3DNow!'),
    ('femms', 'femms', 'femms', '3DNow!'),
    # lock with a register operand: capstone drops the lock after f2, unicorn aborts
    ('lock_btr_register', '.byte 0xf0, 0xf2, 0x0f, 0xb3, 0xc6', 'btr', 'aborts'),
    ('lock_bts_register', '.byte 0xf0, 0xf3, 0x0f, 0xab, 0xc6', 'bts', 'lock prefix'),
]


@pytest.mark.parametrize('name,asm,mnemonic,why', I13, ids=[t[0] for t in I13])
def test_i13_encodings_unicorn_decodes_differently(work, name, asm, mnemonic, why):
    data = snippet(work, name, asm)
    verdict = validate(parse_elf(data))
    assert rules(verdict) == [('I13', symbols(data)['mark'])], verdict.violations
    text = verdict.violations[0].text
    assert text.startswith(mnemonic) and why in text


@pytest.mark.parametrize('asm', [
    'pop (%rax)', 'pop %rax', '.byte 0x41, 0x8f, 0xc0',           # 8f /0 is pop everywhere
    'lock cmpxchg %ecx, (%rdi)', 'lock xadd %edi, (%rdi)',        # lock with memory
    'movabs $0x0f0f8f8ff0f00f0f, %rax',                           # the bytes, not as opcodes
    'bextr %eax, %ebx, %ecx',                                      # BMI1 (VEX), not TBM
])
def test_i13_does_not_touch_ordinary_encodings(work, asm):
    data = snippet(work, 'i13_ok', asm)
    verdict = validate(parse_elf(data))
    assert verdict.ok, verdict.violations


def test_xop_cover_hiding_rdrand_is_refused(work):
    """The issue's attack: a valid-looking XOP instruction unicorn runs as pop; rdrand."""
    data = build(work, 'xop_rdrand', (ASM.parent / 'xop_rdrand.S').read_text())
    verdict = validate(parse_elf(data))
    assert rules(verdict) == [('I13', symbols(data)['cover'])]


CUT_OFF = """\
    .globl _start, tail
    .text
_start:
    mov $60, %eax
    xor %edi, %edi
    syscall
    .skip {size} - 2 - (. - _start), 0x90
tail:
    .byte 0x48, 0xb8
"""


def test_instruction_cut_off_where_the_arena_can_be_jailed(work):
    """The text ends at a 64 KiB boundary, where the heap arena starts: a jailed page
    there could supply the movabs's immediate, so the cut-off instruction that the
    sweep reaches by falling off the end of .text is refused."""
    data = build(work, 'cut_at_arena', CUT_OFF.format(size=0xf000))
    prog = parse_elf(end_text_at(data, symbols(data)['tail']))
    assert prog.image_end() % 0x10000 == 0
    verdict = validate(prog)
    assert rules(verdict) == [('I1', symbols(data)['tail'])]
    assert 'heap arena' in verdict.violations[0].text


def test_instruction_cut_off_where_nothing_can_follow(work):
    """Elsewhere the next page can never be executable: fetching the tail faults."""
    data = build(work, 'cut_unjailable', CUT_OFF.format(size=0xe000))
    prog = parse_elf(end_text_at(data, symbols(data)['tail']))
    assert prog.image_end() % 0x10000
    verdict = validate(prog)
    assert verdict.ok, verdict.violations


def test_i8_jump_into_an_instruction(work):
    data = snippet(work, 'mid_jump', 'jmp inner+2; inner: movabs $0x9090909090c3050f, %rax')
    syms = symbols(data)
    verdict = validate(parse_elf(data))
    assert rules(verdict) == [('I8', syms['mark'])]
    assert f'inside the instruction at {syms["inner"]:#x}' in verdict.violations[0].text


def test_i8_jump_outside_code(work):
    data = snippet(work, 'far_target', 'jmp 0x300000; call table; .section .rodata; '
                                       'table: .quad 0; .text')
    verdict = validate(parse_elf(data))
    assert [r for r, _ in rules(verdict)] == ['I8', 'I8']
    assert all('outside the executable segments' in v.text for v in verdict.violations)


def test_e5_entry_not_on_a_boundary(work):
    data = snippet(work, 'entry_mid', 'movabs $0x050f3cb8, %rax; .globl mid; .set mid, mark+2',
                   '-Wl,-e,mid')
    prog = parse_elf(data)
    verdict = validate(prog)
    assert rules(verdict) == [('E5', prog.entry)]


def test_hidden_rdtsc_passes_but_is_not_marked(work):
    """§1.7: the sweep cannot see it, so it must not be in the map the guard checks."""
    data = build(work, 'hidden', (ASM / 'validator_hidden_rdtsc.S').read_text())
    syms = symbols(data)
    for policy in (Policy(), REJECT):
        verdict = validate(parse_elf(data), policy)
        assert verdict.ok
        assert is_start(verdict, syms['_start']) and is_start(verdict, syms['hidden'])
        assert not is_start(verdict, syms['hidden'] + 2)
        assert not is_start(verdict, syms['hidden'] + 4)
        assert is_start(verdict, syms['hidden'] + 10)


def test_fall_through_past_a_section_is_validated(work):
    """Bytes after a section that does not end in a jump are swept as well.

    The section header claims .text ends after the nop; the rdrand after it
    would run unvalidated in the same translated block otherwise.
    """
    data = snippet(work, 'tail', 'nop; tail: rdrand %eax; ret')
    tail = symbols(data)['tail']
    prog = parse_elf(end_text_at(data, tail))
    assert prog.code[-1].end == tail
    verdict = validate(prog)
    assert rules(verdict) == [('I3', tail)]
    assert is_start(verdict, tail + 3)


def end_text_at(data: bytes, end: int) -> bytes:
    """``data`` with a section header that says .text ends at ``end``."""
    f = ELFFile(io.BytesIO(data))
    text = f.get_section_by_name('.text')
    sh_size = f.header.e_shoff + f.get_section_index('.text') * f.header.e_shentsize + 0x20
    short = bytearray(data)
    struct.pack_into('<Q', short, sh_size, end - text.header.sh_addr)
    return bytes(short)


def test_without_section_headers(work):
    data = bytearray(snippet(work, 'no_shdr', 'cpuid'))
    struct.pack_into('<Q', data, 0x28, 0)           # e_shoff
    struct.pack_into('<HH', data, 0x3C, 0, 0)       # e_shnum, e_shstrndx
    verdict = validate(parse_elf(bytes(data)))
    assert verdict.ok, verdict.violations


# -- extensions the fixed CPU lacks: TSX (RTM), VEX/EVEX, SHA, GFNI, ADX -------------

TSX = 'xbegin 1f; xabort $1; 1: xend; xtest'


def test_rtm_is_allowed_and_each_opcode_noted(work):
    """glibc's static programs contain them (lock elision behind cpuid): not refused,
    but noted, so that both engines run them as ud2 (doc/sandbox.md)."""
    data = snippet(work, 'tsx', TSX)
    mark = symbols(data)['mark']
    verdict = validate(parse_elf(data))
    assert verdict.ok, verdict.violations
    assert verdict.absent == (mark, mark + 6, mark + 9, mark + 12)   # 6 + 3 + 3 + 3 bytes
    assert validate(parse_elf(snippet(work, 'no_tsx', 'nop'))).absent == ()


def test_glibc_hello_notes_its_lock_elision(glibc_hello):
    verdict = validate(parse_elf(glibc_hello))
    assert verdict.ok and verdict.absent
    code = Cs(CS_ARCH_X86, CS_MODE_64)
    prog = parse_elf(glibc_hello)
    text = next(s for s in prog.segments if s.executable)
    kinds = set()
    for site in verdict.absent:
        raw = text.data[site - text.vaddr:][:15]
        insn, = code.disasm_lite(raw, site, 1)
        kinds.add(insn[2] if raw[0] not in b'\xc4\xc5\x62' else 'vex')
    # lock elision and AVX string functions, both behind cpuid
    assert {'xtest', 'vex'} <= kinds <= validator.ABSENT | {'vex'}, kinds


def test_as_fixed_cpu_puts_ud2_over_each_rtm_opcode_and_nothing_else(work, musl_hello):
    data = snippet(work, 'tsx', TSX)
    prog = parse_elf(data)
    verdict = validate(prog)
    patched = as_fixed_cpu(prog, verdict)
    assert patched.sha256 == prog.sha256 and patched.entry == prog.entry
    before = next(s for s in prog.segments if s.executable)
    after = next(s for s in patched.segments if s.executable)
    changed = {before.vaddr + i for i, (a, b) in enumerate(zip(before.data, after.data,
                                                                strict=True)) if a != b}
    mark = symbols(data)['mark']
    # xbegin c7 f8 and xabort c6 f8: both bytes; xend/xtest 0f 01: the second
    assert changed == {mark, mark + 1, mark + 6, mark + 7, mark + 10, mark + 13}
    for site in verdict.absent:
        assert after.data[site - after.vaddr:site - after.vaddr + 2] == b'\x0f\x0b'
    assert [s.data for s in patched.segments if not s.executable] == \
        [s.data for s in prog.segments if not s.executable]
    # validated again, its sweep would find no xbegin and cache that under the file's key
    assert patched.patched and not prog.patched
    with pytest.raises(ValueError, match='patched to run'):
        validate(patched)
    hello = parse_elf(musl_hello)
    assert as_fixed_cpu(hello, validate(hello)) is hello         # nothing to do: no copy
    with pytest.raises(ValueError, match='not this program'):
        as_fixed_cpu(hello, dataclasses.replace(verdict, absent=(0x10,)))


def test_rtm_behind_prefixes_gets_ud2_at_its_opcode():
    """The prefixes stay: every start of it, one a branch reaches by skipping a
    prefix included, is then a prefixed ud2 (#UD at that start, both engines)."""
    code = bytes.fromhex('eb 01' '2e 3e 48 0f 01 d6' 'c3')     # jmp over cs; ds rex.w xtest
    verdict = validate_code(code, 0x1000)
    assert verdict.ok and starts(verdict) == [0x1000, 0x1002, 0x1003, 0x1008]
    assert verdict.absent == (0x1005,)
    insn, = Cs(CS_ARCH_X86, CS_MODE_64).disasm_lite(bytes.fromhex('2e 3e 48 0f 0b'), 0)
    assert insn[:3] == (0, 5, 'ud2')


@pytest.mark.parametrize('insn', ['xtest', 'vpaddq %xmm2, %xmm0, %xmm3'])
def test_i14_rtm_overlapping_another_instruction(work, insn):
    """Two code ranges that cut each other's instructions: the ud2 would change the
    mov that runs on into the xtest (or the VEX instruction, found by its bytes), which
    then runs as bytes nobody validated.  Only where two runs of the sweep overlap
    does check_absent decode again, and this is one."""
    data = build(work, f'absent_overlap_{insn[:5]}', f'''\
    .globl _start, two
    .text
_start:
    nop
    jmp two
    .byte 0xb8              # mov $imm32, %eax: its immediate is the next section's
    .section .two, "ax"
two:
    {insn}
    nop
    mov $60, %eax
    xor %edi, %edi
    syscall
''')
    two = symbols(data)['two']
    verdict = validate(parse_elf(data))
    assert rules(verdict) == [('I14', two)]
    assert f'overlapping the instruction at {two - 1:#x}' in verdict.violations[0].text


def test_i14_bounds_the_noted_addresses(monkeypatch):
    monkeypatch.setattr(validator, 'MAX_ABSENT', 3)
    assert validate_code(bytes.fromhex('0f01d6' * 3), 0x1000).ok
    verdict = validate_code(bytes.fromhex('0f01d6' * 4), 0x1000)
    assert rules(verdict) == [('I14', 0x1009)]
    assert verdict.violations[0].text.startswith('more than 3 instructions of extensions '
                                                 'the fixed CPU lacks')


def test_cached_verdict_keeps_the_absent_addresses(work, tmp_path):
    prog = parse_elf(snippet(work, 'tsx', TSX))
    first = validate(prog, cache=VerdictCache(tmp_path))
    again = validate(prog, cache=VerdictCache(tmp_path))
    assert again.cached and again.absent == first.absent and len(first.absent) == 4
    path, = tmp_path.glob('*.json')
    for bad in ([1, 1], [2, 1], ['1'], [0]):        # repeated, unsorted, not a number, 0
        obj = json.loads(path.read_text())
        obj['absent'] = bad
        path.write_text(json.dumps(obj))
        assert not validate(prog, cache=VerdictCache(tmp_path)).cached


def _started_one_by_one(sites, boundaries) -> bool:
    """validator._in_code as it was, site by site: what the bitwise one must agree with."""
    ordered = sorted(boundaries)
    for site in sites:
        base, bits = max(((b, x) for b, x in ordered if b <= site), default=(None, b''))
        if base is None:
            return False
        o = site - base
        if o + 1 >= 8 * len(bits) or not any(
                bits[k >> 3] >> (k & 7) & 1 for k in range(max(o - 14, 0), o + 1)):
            return False
    return True


def test_sites_of_a_cached_verdict_are_checked_against_its_bitmaps_exactly():
    """_in_code works on whole ints, not site by site; it accepts a site exactly when an
    instruction start lies 0..14 bytes before it in the bitmap of the highest base at or
    below it, with the ud2's second byte in that bitmap too."""
    import random
    rng = random.Random(25)
    cases = [
        ([0x1000 + 14], [(0x1000, b'\x01\0\0')]),          # 14 after a start: in
        ([0x1000 + 15], [(0x1000, b'\x01\0\0')]),          # 15 after: out
        ([0x1000 + 22], [(0x1000, b'\0\x80\0\0')]),       # start at bit 15, 7 after
        ([0x1000 + 23], [(0x1000, b'\0\x80\0')]),          # its second byte past the end
        ([0x1000], [(0x1000, b'\x01')]),                    # bit 0, 8 bits: in
        ([0x1007], [(0x1000, b'\x01')]),                    # the last bit: out
        ([0xFF8], [(0x1000, b'\xff')]),                     # below every bitmap
        ([0x1010], [(0x1000, b'\xff\xff'), (0x1010, b'\0\0')]),   # the higher one's
        ([0x1010], [(0x1000, b'\0\0\0\0'), (0x1010, b'\x01\0')]),
        ([0x1001], [(0x1000, b'\0\0'), (0x1000, b'\x01\0')]),  # a base twice: the last
        ([], []), ([0x1000], []),
    ]
    for _ in range(400):
        boundaries = [(8 * rng.randrange(0x200, 0x240),
                       bytes(rng.choice((0, 0, 1, 0x80, rng.randrange(256)))
                             for _ in range(rng.randrange(1, 12))))
                      for _ in range(rng.randrange(1, 4))]
        lo = min(base for base, _ in boundaries) - 4
        hi = max(base + 8 * len(bits) for base, bits in boundaries) + 4
        cases.append((sorted(rng.sample(range(lo, hi), rng.randrange(1, 4))), boundaries))
    agreed = [validator._in_code(tuple(sites), boundaries) for sites, boundaries in cases]
    assert agreed == [_started_one_by_one(sites, b) for sites, b in cases]
    assert agreed[:12] == [True, False, True, False, True, False, False, False, True,
                           True, True, False]
    assert 50 < sum(agreed[12:]) < 350         # the random ones are not all one answer


# instructions of extensions the fixed cpuid table lacks, each with its bytes: every
# VEX/EVEX encoding (c4, c5, 62 after any prefixes) and the legacy SHA, GFNI, ADX ones
ABSENT = [
    ('c5 f9 d4 da', 'vpaddq'),                  # VEX2: unicorn runs it as paddq (wrong)
    ('c5 fd d4 da', 'vpaddq'),                  # ymm
    ('62 f1 fd 48 d4 da', 'vpaddq'),            # EVEX, zmm
    ('c5 f9 90 fa', 'kmovb'),                   # unicorn runs it as setb
    ('c4 e2 70 f2 c0', 'andn'),                 # VEX-encoded BMI1
    ('c4 e3 7b f0 c0 01', 'rorx'),              # BMI2
    ('c4 e2 f1 a8 c2', 'vfmadd213pd'),          # FMA
    ('2e 48 c5 f9 d4 da', None),                # REX before VEX: #UD, capstone refuses
    ('0f 38 cb cb', 'sha256rnds2'),
    ('0f 3a cc cb 01', 'sha1rnds4'),
    ('66 0f 3a ce cb 05', 'gf2p8affineqb'),
    ('66 0f 38 cf cb', 'gf2p8mulb'),
    ('66 0f 38 f6 cb', 'adcx'),
    ('f3 48 0f 38 f6 cb', 'adox'),
    ('0f 01 d0', 'xgetbv'),                     # XCR0: the host's natively, unicorn's 3
    ('48 0f ae 23', 'xsave'),
]


@pytest.mark.parametrize('hexcode, mnemonic', ABSENT)
def test_instructions_of_absent_extensions_are_noted_at_their_opcode(hexcode, mnemonic):
    code = bytes.fromhex('90 66' + hexcode + 'c3')     # nop; the instruction; ret
    verdict = validate_code(code, 0x1000)
    if mnemonic is None:            # refused
        assert not verdict.ok and rules(verdict)[0] == ('I1', 0x1001)
        return
    insn, = Cs(CS_ARCH_X86, CS_MODE_64).disasm_lite(code[1:-1], 0x1001)
    assert insn[2] == mnemonic and insn[1] == len(code) - 2
    assert verdict.ok, verdict.violations
    opcode = 0x1002 + len(hexcode.split()) - len(_opcode(bytes.fromhex(hexcode)))
    assert verdict.absent == (opcode,)


def _opcode(code: bytes) -> bytes:
    i = 0
    while code[i] in b'\x26\x2e\x36\x3e\x64\x65\x66\x67\xf0\xf2\xf3' or code[i] >> 4 == 4:
        i += 1
    return code[i:]


def test_present_extensions_and_vex_bytes_elsewhere_are_not_noted():
    """SSE4.2, POPCNT, AES-NI, PCLMULQDQ, tzcnt (bsf without BMI1) and a c4/c5/62 byte
    that is not an opcode (pinsrw's 0f c4, an immediate, a ModRM) are left alone."""
    code = bytes.fromhex('66 0f 38 17 c1'            # ptest
                         'f3 48 0f b8 c1'            # popcnt
                         'f2 0f 38 f1 c1'            # crc32
                         '66 0f 38 dc cb'            # aesenc
                         '66 0f 3a 44 cb 11'         # pclmulqdq
                         'f3 0f bc c1'               # tzcnt
                         '66 0f c4 c0 01'            # pinsrw
                         'b8 c4 c5 62 00'            # mov $0x62c5c4, %eax
                         '48 8d 84 24 62 c5 00 00'   # lea 0xc562(%rsp), %rax
                         '48 89 c5'                  # mov %rax, %rbp (ModRM c5)
                         'c3')
    verdict = validate_code(code, 0x1000)
    assert verdict.ok and verdict.absent == (), verdict


def test_as_fixed_cpu_puts_ud2_over_vex_and_sha_opcodes(work):
    """A 'c5' two-byte VEX prefix and its next byte become ud2 (the rest of the
    instruction stays: after the #UD nothing runs it); a prefix stays before it."""
    raw = '2e c5 f9 d4 da 0f 38 cb cb'
    data = snippet(work, 'vex_sha', '.byte ' + ', '.join(f'0x{b}' for b in raw.split()))
    mark = symbols(data)['mark']
    prog = parse_elf(data)
    verdict = validate(prog)
    assert verdict.ok and verdict.absent == (mark + 1, mark + 5)
    text = next(s for s in as_fixed_cpu(prog, verdict).segments if s.executable)
    assert text.data[mark - text.vaddr:mark - text.vaddr + 9] == \
        bytes.fromhex('2e 0f 0b d4 da 0f 0b cb cb')


# -- validate_code ----------------------------------------------------------------


def test_validate_code_bitmap_at_unaligned_base():
    code = bytes.fromhex('b801000000' 'c3')          # mov eax, 1; ret
    verdict = validate_code(code, 0x10003)
    assert verdict.ok and verdict.instructions == 2
    (base, bits), = verdict.boundaries
    assert base == 0x10000
    assert starts(verdict) == [0x10003, 0x10008]


def test_validate_code_rules():
    assert rules(validate_code(bytes.fromhex('0f30'), 0x1000)) == [('I2', 0x1000)]
    truncated = validate_code(bytes.fromhex('b801'), 0x1000)     # mov eax, imm32 cut short
    assert rules(truncated) == [('I1', 0x1000), ('I1', 0x1001)]
    out = validate_code(bytes.fromhex('e9 00 10 00 00'), 0x1000)        # jmp 0x2005
    assert rules(out) == [('I8', 0x1000)] and 'outside the buffer' in out.violations[0].text
    assert validate_code(bytes.fromhex('eb fe'), 0x1000).ok            # jmp to itself
    assert rules(validate_code(bytes.fromhex('0f31'), 0, REJECT)) == [('I4', 0)]


def test_validate_code_in_the_context_of_the_bytes_before_it():
    """A jailed buffer: an instruction validated before it must end where it starts."""
    base = 0x410000
    before = bytes.fromhex('90' * 12 + '48 b8')      # nop...; movabs rax, imm64 cut off
    code = bytes(8) + bytes.fromhex('c3')            # ...its immediate would come from here
    spanning = validate_code(code, base, before=before, before_starts=[base - 2])
    assert rules(spanning) == [('I1', base - 2)]
    assert f'would run on into it at {base:#x}' in spanning.violations[0].text
    # reached by falling through from a marked start: the same
    fall = validate_code(code, base, before=before, before_starts=[base - 14, base - 13])
    assert rules(fall) == [('I1', base - 2)]
    ends = bytes.fromhex('90' * 12 + 'eb fe')        # ...; jmp $: ends where the code starts
    assert validate_code(code, base, before=ends, before_starts=[base - 14]).ok
    assert validate_code(code, base, before=bytes.fromhex('90' * 14),
                         before_starts=[base - 14]).ok          # falls into it: fine
    assert validate_code(code, base).ok              # nothing executable before it


def test_violation_list_is_capped():
    verdict = validate_code(b'\xfa' * (MAX_VIOLATIONS + 50), 0x1000)     # cli
    assert len(verdict.violations) == MAX_VIOLATIONS + 1
    more = verdict.violations[-1]
    assert more.rule == 'more' and more.text.startswith('50 more violations')
    assert more.address == 0x1000 + MAX_VIOLATIONS


def test_violation_dict_and_policy():
    assert Violation('I2', 0x401000, 'cli').to_dict() == \
        {'rule': 'I2', 'address': '0x401000', 'text': 'cli'}
    assert Policy().key() != REJECT.key()
    with pytest.raises(ValueError):
        Policy(rdtsc='stub')


# -- the cache ----------------------------------------------------------------------


def uncached(verdict: Verdict) -> Verdict:
    return dataclasses.replace(verdict, cached=False)


def test_cache_hit_is_marked_and_equal(musl_hello, tmp_path):
    prog, cache = parse_elf(musl_hello), VerdictCache(tmp_path)
    first = validate(prog, cache=cache)
    second = validate(prog, cache=cache)
    assert not first.cached and second.cached
    assert uncached(second) == first


def test_cache_key_depends_on_policy_and_version(musl_hello, tmp_path, monkeypatch):
    prog, cache = parse_elf(musl_hello), VerdictCache(tmp_path)
    assert cache_key(prog.sha256, Policy()) != cache_key(prog.sha256, REJECT)
    # the rules are about what unicorn decodes: another unicorn is another validator
    fingerprint = validator._fingerprint()
    sources = validator._decoder_sources()
    assert Path(unicorn.__file__).parent / 'unicorn_const.py' in sources
    other = tmp_path / 'other' / 'unicorn_const.py'
    other.parent.mkdir()
    other.write_text(sources[-1].read_text().replace(
        f'UC_VERSION_PATCH = {unicorn.__version__.split(".")[2]}', 'UC_VERSION_PATCH = 99'))
    monkeypatch.setattr(validator, '_decoder_sources', lambda: [*sources[:-1], other])
    assert validator._fingerprint() != fingerprint
    monkeypatch.undo()
    assert VALIDATOR_VERSION.endswith(fingerprint)
    validate(prog, Policy(), cache)
    assert not validate(prog, REJECT, cache).cached
    assert len(list(tmp_path.glob('*.json'))) == 2


def test_disk_cache_survives_a_new_instance(work, tmp_path):
    data = snippet(work, 'cached_bad', 'cli')
    prog = parse_elf(data)
    first = validate(prog, cache=VerdictCache(tmp_path))
    again = validate(prog, cache=VerdictCache(tmp_path))
    assert again.cached and uncached(again) == first and not again.ok


@pytest.mark.parametrize('content', [b'', b'{"key": ', b'\xff\xfe garbage', b'[]', b'{}',
                                     b'{"key": "other", "ok": true, "instructions": 1, '
                                     b'"violations": [], "boundaries": []}'])
def test_corrupt_cache_file_is_a_miss(musl_hello, tmp_path, content):
    prog = parse_elf(musl_hello)
    first = validate(prog, cache=VerdictCache(tmp_path))
    path, = tmp_path.glob('*.json')
    path.write_bytes(content)
    again = validate(prog, cache=VerdictCache(tmp_path))
    assert not again.cached and again == first
    assert validate(prog, cache=VerdictCache(tmp_path)).cached     # rewritten


def test_memory_only_cache_and_unwritable_dir(musl_hello, tmp_path):
    prog = parse_elf(musl_hello)
    memory = VerdictCache(None)
    validate(prog, cache=memory)
    assert validate(prog, cache=memory).cached
    blocked = tmp_path / 'file'
    blocked.write_text('not a directory')
    cache = VerdictCache(blocked / 'verdicts')
    validate(prog, cache=cache)                      # the failed write is ignored
    assert validate(prog, cache=cache).cached


def test_default_cache_dir_and_singleton(monkeypatch, tmp_path, musl_hello):
    monkeypatch.setenv('ZVM_CACHE_DIR', str(tmp_path))
    assert VerdictCache().dir == tmp_path
    assert default_cache() is default_cache()
    validate(parse_elf(musl_hello), cache=VerdictCache())
    assert len(list(tmp_path.glob('*.json'))) == 1


def test_a_cached_verdict_needs_no_decoder(musl_hello, tmp_path):
    # `zvm run` is one process per run: a verdict from the disk cache must not cost
    # importing capstone and unicorn (most of the CLI's start-up)
    (tmp_path / 'hello').write_bytes(musl_hello)
    check = ('import sys\n'
             'from zvm_core.elf import parse_elf\n'
             'from zvm_core.validator import VerdictCache, validate\n'
             f'v = validate(parse_elf(open({str(tmp_path / "hello")!r}, "rb").read()),\n'
             f'             cache=VerdictCache({str(tmp_path / "cache")!r}))\n'
             'print(v.ok, v.cached, "capstone" in sys.modules, "unicorn" in sys.modules)\n')
    runs = [subprocess.run([sys.executable, '-c', check], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert runs == ['True False True False\n', 'True True False False\n']


def test_the_emulated_engine_imported_past_a_runs_deadline_is_not_unfinished():
    """A worker's first emulated run imports the engine inside its program's
    validation deadline (zvm_core.pool.worker): the trap stub's validation at import
    raised Unfinished once that deadline had passed (a validation slow on a loaded
    machine), and the run ended ``killed``, 'sandbox worker error: Unfinished()'."""
    check = ('import time\n'
             'from zvm_core.validator import within\n'
             'with within(time.monotonic() - 1):\n'
             '    from zvm_core.engines.emulated.machine import Machine\n'
             'from zvm_core.engines.emulated import jail\n'
             'print(jail.STUB_VERDICT.ok)\n')
    run = subprocess.run([sys.executable, '-c', check], capture_output=True, text=True)
    assert (run.returncode, run.stdout, run.stderr) == (0, 'True\n', '')


def test_a_validation_within_a_deadline_ends_by_it(musl_hello, tmp_path):
    """``within``: a program whose validation another process holds (its lock file) past
    the deadline, or that is not validated by then, is Unfinished, and no verdict is
    kept; without a deadline the same program is validated as before."""
    prog = parse_elf(musl_hello)
    cache = VerdictCache(tmp_path)
    lock = os.open(tmp_path / f'{cache_key(prog.sha256, validator.Policy())}.lock',
                   os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)            # another worker validating it
    released = threading.Event()

    def release() -> None:                      # what a wait past the deadline would see
        fcntl.flock(lock, fcntl.LOCK_UN)
        released.set()
    done = threading.Timer(5, release)
    done.start()
    started = time.monotonic()
    try:
        with pytest.raises(validator.Unfinished), validator.within(started + 0.2):
            validate(prog, cache=cache)
        assert not released.is_set()            # it ended by the deadline, not the lock
        assert time.monotonic() - started >= 0.2
    finally:
        done.cancel()
        done.join()
    os.close(lock)
    with pytest.raises(validator.Unfinished), validator.within(time.monotonic() - 1):
        validate(prog, cache=cache)             # its deadline passed: not even the sweep
    assert list(tmp_path.glob('*.json')) == []
    assert validate(prog, cache=cache).ok and len(list(tmp_path.glob('*.json'))) == 1


def test_a_site_straddling_two_adjacent_segments_gets_its_ud2_in_both():
    """An xbegin whose c7 is the last byte of one executable segment and whose f8
    starts the next (two code sections cut so no decoded instruction starts there:
    I14 passes): its ud2 is written across the two, not refused as no code (the
    run had ended as a worker error, the verdict cached ok)."""
    base = 0x400000
    first = bytearray(b'\x90' * 0x1000)
    first[-1] = 0xC7
    second = bytearray(b'\xcc' * 0x1000)
    second[0:12] = b'\xf8\x00\x00\x00\x00' + bytes.fromhex('b83c000000') + b'\x0f\x05'

    def phdr(off, vaddr):
        return struct.pack('<IIQQQQQQ', 1, 5, off, vaddr, vaddr, 0x1000, 0x1000, 0x1000)

    def shdr(name, typ, flags, addr, off, size):
        return struct.pack('<IIQQQQIIQQ', name, typ, flags, addr, off, size, 0, 0, 1, 0)
    names = b'\0.text\0.text2\0.shstrtab\0'
    shoff = 0x3100
    data = bytearray(shoff + 4 * 64)
    data[0:64] = struct.pack('<16sHHIQQQIHHHHHH', b'\x7fELF\x02\x01\x01' + b'\0' * 9, 2, 62,
                             1, base + 0x2000 - 0x10, 64, shoff, 0, 64, 56, 2, 64, 4, 3)
    data[64:120] = phdr(0x1000, base + 0x1000)
    data[120:176] = phdr(0x2000, base + 0x2000)
    data[0x1000:0x2000], data[0x2000:0x3000] = first, second
    data[0x3000:0x3000 + len(names)] = names
    data[shoff:shoff + 256] = (shdr(0, 0, 0, 0, 0, 0)
                               + shdr(1, 1, 6, base + 0x1000, 0x1000, 0x1000)
                               + shdr(7, 1, 6, base + 0x2005, 0x2005, 0x1000 - 5)
                               + shdr(14, 3, 0, 0, 0x3000, len(names)))
    prog = parse_elf(bytes(data))
    verdict = validate(prog)
    assert verdict.ok and verdict.absent == (base + 0x1FFF,), verdict
    patched = {s.vaddr: s.data for s in as_fixed_cpu(prog, verdict).segments}
    assert patched[base + 0x1000][-1:] + patched[base + 0x2000][:1] == UD2
    assert patched[base + 0x1000][:-1] == bytes(first[:-1])
    assert patched[base + 0x2000][1:] == bytes(second[1:])

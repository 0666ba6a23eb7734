"""Differential semantics: the emulated engine's result of one instruction against the CPU's.

``tests/decoder_diff.py`` checks that unicorn and capstone agree on where an
instruction ends; this checks that unicorn and the CPU agree on what it does.
``xbegin`` was the first found: both decoders give it the same length, but
unicorn runs it as ``mov $imm32, %eax`` and the CPU as a transaction.

Instructions that the validator accepts and that use registers alone (no
memory operand, no implicit stack or string access, no control transfer, no
system call, nothing that reads a counter or a random number) are tried: the
encodings of :func:`decoder_diff.generate` and :func:`structured` (every
opcode of the one-byte, 0f, 0f38 and 0f3a maps and VEX in register form).
So are the memory forms of :data:`MEMORY` (:func:`memory_cases`: loads and
stores, read-modify-write with and without lock, ``cmpxchg``/``xadd``, SSE
loads and stores, string instructions with and without ``rep``), whose base
registers point into a scratch buffer at a fixed address (``rbx`` at its
middle, ``rsi``/``rdi`` apart from it, ``rcx`` a small count), filled at random.

A batch of cases becomes one assembly program (:func:`source`): for each case
it fills the scratch buffer (a case with memory), loads the x87/SSE state
(``fxrstor64``), rflags and the 16 general registers from a table, runs the
instruction's bytes, stores the registers, rflags, ``fxsave64`` and the scratch
buffer and writes that record to stdout.  The program is run
under each engine (:func:`execute`) and the records compared.  A case that
faults ends the program: the cases after it go into the next program, and a
case that faults under one engine only is a disagreement.

Each difference is classified (:class:`Difference`): ``fault`` (one engine
faulted), ``gpr``, ``flags`` (defined flags, or flags the instruction leaves
alone), ``undefined-flags`` (only flags Intel documents as undefined after
it), ``fpu`` (x87 registers, control/status/tag words, MXCSR, xmm), ``memory``
(the scratch buffer).  Known,
accepted ones are :data:`KNOWN`.  Used by ``tests/sandbox/test_semantic_diff.py``
(bounded) and ``bench/fuzz_semantics.py`` (long runs).
"""

from __future__ import annotations

import functools
import random
import re
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from capstone import (
    CS_ARCH_X86,
    CS_GRP_BRANCH_RELATIVE,
    CS_GRP_CALL,
    CS_GRP_INT,
    CS_GRP_IRET,
    CS_GRP_JUMP,
    CS_GRP_PRIVILEGE,
    CS_GRP_RET,
    CS_MODE_64,
    Cs,
)
from capstone.x86 import X86_OP_MEM
from decoder_diff import generate, refused
from elftools.elf.elffile import ELFFile

from zvm_core.build.toolchain import build_static
from zvm_core.channels import READ, WRITE, Channel, MemoryBacking
from zvm_core.executor import Limits, execute
from zvm_core.prepare import Rejected, prepare

GPRS = ('rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi',
        'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15')
SCRATCH = 512       # bytes of the scratch buffer memory operands use
# case number, registers, rflags, fxsave image, the scratch buffer
RECORD = struct.Struct(f'<Q16QQ512s{SCRATCH}s')
# memory forms tried (AT&T syntax): rbx points at the scratch buffer's middle, rsi and
# rdi 64 bytes either side of it, rcx is 0..12 (string counts, shift counts)
MEMORY = (
    'mov (%rbx), %rax', 'mov %rcx, 8(%rbx)', 'movl $0x12345678, -4(%rbx)',
    'movb %dl, 3(%rbx)', 'movzwl 6(%rbx), %eax', 'movsbq -1(%rbx), %rdx',
    'add %rax, (%rbx)', 'addl $7, 12(%rbx)', 'sub (%rbx), %ecx', 'lock addq $1, (%rbx)',
    'incw 2(%rbx)', 'negb 5(%rbx)', 'andq %rdx, 16(%rbx)', 'shlq $3, (%rbx)',
    'rorl %cl, 4(%rbx)', 'adcq (%rbx), %rdx', 'lock orl %eax, 20(%rbx)',
    'cmpxchg %rcx, (%rbx)', 'lock cmpxchg %ecx, 8(%rbx)', 'cmpxchg %edx, 12(%rbx)',
    'cmpxchgw %dx, 2(%rbx)', 'cmpxchgb %dl, 1(%rbx)', 'cmpxchg %esi, (%rbx)',
    'lock cmpxchg %r12d, 0x80(%rbx)', 'cmpxchg %edx, 4(%rbx,%rcx,4)',
    'lock cmpxchgw %r9w, -2(%rbx)',
    'lock cmpxchg16b (%rbx)', 'cmpxchg8b 8(%rbx)',
    'xadd %rax, (%rbx)', 'lock xaddl %ecx, 4(%rbx)', 'xchg %rdx, (%rbx)',
    'btsl $5, (%rbx)', 'lock btrq $63, 8(%rbx)', 'sete (%rbx)', 'cmovne 8(%rbx), %rax',
    'imul 8(%rbx), %rcx', 'mulq 8(%rbx)', 'popcntq (%rbx), %rax', 'movbe (%rbx), %rax',
    'movups (%rbx), %xmm0', 'movaps %xmm1, 16(%rbx)', 'movdqu %xmm2, 3(%rbx)',
    'movdqa (%rbx), %xmm3', 'movq 8(%rbx), %xmm3', 'movq %xmm4, (%rbx)',
    'movd %xmm5, 4(%rbx)', 'movss 4(%rbx), %xmm6', 'movsd %xmm7, 8(%rbx)',
    'movhps 8(%rbx), %xmm0', 'movlps %xmm1, (%rbx)', 'addps 16(%rbx), %xmm2',
    'pshufd $0x1b, (%rbx), %xmm3', 'movntdq %xmm0, 32(%rbx)', 'lddqu 1(%rbx), %xmm5',
    'pinsrw $3, 2(%rbx), %xmm1', 'pextrd $1, %xmm2, 4(%rbx)', 'ptest (%rbx), %xmm4',
    'cvtsi2sdq 8(%rbx), %xmm6', 'fldl (%rbx)', 'fstl 8(%rbx)', 'fildl 4(%rbx)',
    'movsb', 'movsq', 'rep movsb', 'rep movsq', 'rep movsl', 'stosb', 'rep stosb',
    'rep stosq', 'lodsw', 'rep lodsb', 'cmpsb', 'repe cmpsb', 'repne cmpsq', 'scasl',
    'repne scasb', 'repe scasw',
)
FLAG_BITS = {'CF': 0, 'PF': 2, 'AF': 4, 'ZF': 6, 'SF': 7, 'TF': 8, 'IF': 9, 'DF': 10,
             'OF': 11, 'AC': 18, 'ID': 21}
_INPUT_FLAGS = 0x8D5 | 0x400      # the arithmetic flags and DF: never TF, AC (alignment
                                  # checks), ID
_S, _Z, _A, _P, _C, _O = (1 << FLAG_BITS[f] for f in ('SF', 'ZF', 'AF', 'PF', 'CF', 'OF'))
_ALL = _S | _Z | _A | _P | _C | _O
# flags Intel's SDM says are undefined after these (for any operand; shifts and rotates:
# OF for counts other than 1, and everything when the masked count exceeds the size)
UNDEFINED = {
    **dict.fromkeys(('and', 'or', 'xor', 'test'), _A),
    **dict.fromkeys(('mul', 'imul'), _S | _Z | _A | _P),
    **dict.fromkeys(('div', 'idiv'), _ALL),
    **dict.fromkeys(('shl', 'sal', 'shr', 'sar'), _A | _O),
    **dict.fromkeys(('rol', 'ror', 'rcl', 'rcr'), _O),
    **dict.fromkeys(('shld', 'shrd'), _ALL),
    **dict.fromkeys(('bsf', 'bsr'), _C | _O | _S | _A | _P),
    **dict.fromkeys(('bt', 'bts', 'btr', 'btc'), _O | _S | _A | _P),
    **dict.fromkeys(('andn', 'bextr', 'bzhi', 'blsi', 'blsmsk', 'blsr'), _A | _P),
    **dict.fromkeys(('tzcnt', 'lzcnt'), _O | _S | _A | _P),
    'daa': _O, 'das': _O, 'aaa': _O | _S | _Z | _P, 'aas': _O | _S | _Z | _P,
    'aam': _O | _A | _C, 'aad': _O | _A | _C,
}
# mnemonics that are not register-only although capstone shows no memory operand, or
# whose result is not a function of the registers (counters, random numbers, the cpuid
# table of an engine: tests/sandbox/test_cpu_state.py)
EXCLUDED = frozenset((
    'push', 'pushf', 'pushfq', 'pop', 'popf', 'popfq', 'enter', 'leave', 'xlatb',
    'maskmovq', 'maskmovdqu', 'vmaskmovdqu', 'monitor', 'monitorx', 'mwait', 'mwaitx',
    'clzero', 'rdtsc', 'rdtscp', 'rdpid', 'rdrand', 'rdseed', 'rdpmc', 'cpuid',
    'xgetbv', 'xbegin', 'xend', 'xabort', 'xtest', 'syscall', 'sysenter', 'int',
    'int3', 'into', 'int1', 'ud0', 'ud1', 'ud2', 'hlt', 'pause', 'rdfsbase', 'rdgsbase',
    'wrfsbase', 'wrgsbase', 'rdpkru', 'wrpkru', 'fxsave', 'fxsave64', 'fxrstor',
    'fxrstor64', 'xsave', 'xrstor', 'ldmxcsr', 'stmxcsr', 'vldmxcsr', 'vstmxcsr',
    'fnstenv', 'fldenv', 'fnsave', 'frstor', 'fwait', 'wait', 'serialize', 'lfence',
    'mfence', 'sfence', 'rdsspq', 'rdsspd', 'incsspq', 'incsspd', 'endbr64', 'endbr32',
    'tpause', 'umwait', 'umonitor', 'hreset', 'uiret', 'testui', 'clui', 'stui', 'senduipi',
    'vzeroupper', 'vzeroall',
))
_NOT_REGISTERS_ONLY = (CS_GRP_JUMP, CS_GRP_BRANCH_RELATIVE, CS_GRP_CALL, CS_GRP_RET,
                       CS_GRP_INT, CS_GRP_IRET, CS_GRP_PRIVILEGE)
_INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32,
                0x7FFFFFFFFFFFFFFF, 1 << 63, (1 << 64) - 1, 63, 64, 31, 32)
_MXCSR = (0x1F80, 0x1F80, 0x1F80, 0x3F80, 0x5F80, 0x7F80, 0x9F80, 0x1FC0)
_FCW = (0x37F, 0x37F, 0x27F, 0x7F, 0xF7F, 0x77F)
# the fxsave image: what is compared, by name (offset, length); the rest (FOP, FIP, FDP,
# MXCSR_MASK, the reserved tail) is not the instruction's result
FX_FIELDS = {'fcw': (0, 2), 'fsw': (2, 2), 'ftw': (4, 1), 'mxcsr': (24, 4),
             **{f'st{i}': (32 + 16 * i, 10) for i in range(8)},
             **{f'xmm{i}': (160 + 16 * i, 16) for i in range(16)}}
_PREFIX_BYTES = frozenset(b'\x26\x2e\x36\x3e\x64\x65\x66\x67\xf0\xf2\xf3'
                          + bytes(range(0x40, 0x50)))
MAX_BATCH = 150     # cases per program (assembly and validation grow with it)

_md = Cs(CS_ARCH_X86, CS_MODE_64)
_md.detail = True

# The classes of differences known (reported, not yet refused or fixed): name -> why.
# :func:`explain` sorts a difference into one; anything else is news.
KNOWN = {
    'fp-exception-flags': 'floating-point exception flags (MXCSR bits 0-5, x87 status '
                          'word IE..PE, SF, ES, C1): QEMU does not raise the inexact, '
                          'denormal, ... flags as the CPU does (fetestexcept sees it)',
    'x87-stack-fault': 'x87 stack overflow/underflow: QEMU ignores the tag word, so an '
                       'instruction on an empty register (or a push onto a full stack) '
                       'computes with stale contents instead of the invalid-operation '
                       'QNaN and flags the CPU gives',
    'mmx-tags': 'MMX write: the CPU sets the register\'s exponent to 0xffff, the tag word '
                'to all valid and TOP to 0; QEMU leaves the exponent and tags',
    'approximate': 'rcpps/rcpss/rsqrtps/rsqrtss: the CPU\'s 12-bit approximation, QEMU\'s '
                   'exact quotient (gcc -ffast-math emits them)',
    'ftz-daz': 'MXCSR flush-to-zero or denormals-are-zero (gcc -ffast-math sets both at '
               'start-up): QEMU does not apply them everywhere (minps with DAZ, addps with FTZ '
               'give other results)',
    'hadd-alias': 'SSSE3 horizontal add/subtract (phadd*, phsub*) with one register as both '
                  'operands: QEMU writes the low half before it reads the source\'s',
    'mandatory-prefixes': 'more than one of 66, f2, f3 on an SSE or MMX opcode: the CPU '
                          'and QEMU pick different ones (f3 f2 movddup runs as movsldup; '
                          'f3 66 aesdec, 66 f3 psraw mm faults on the CPU only)',
    'undefined-flags': 'flags the SDM says are undefined after this instruction',
}
# cmpxchg to a register (:func:`cmpxchg_cases`), of every size: a 32-bit one writes EAX only
# when the comparison fails and its destination only when it succeeds (the guard's
# zg_cmpxchg makes unicorn's so)
CMPXCHG_REGISTER = (
    'cmpxchg %ecx, %edx', 'cmpxchg %edx, %r12d', 'cmpxchg %r9d, %r9d', 'cmpxchg %eax, %esi',
    'cmpxchg %ecx, %eax', 'cmpxchg %r15d, %ebp', 'cmpxchgw %dx, %si', 'cmpxchgb %dl, %r8b',
    'cmpxchgb %cl, %dh', 'cmpxchg %rcx, %rdx',
)
_FCOMI = frozenset(('fcomi', 'fcomip', 'fcompi', 'fucomi', 'fucomip', 'fucompi'))
_HORIZONTAL = frozenset('phaddw phaddd phaddsw phsubw phsubd phsubsw'.split())
_APPROXIMATE = frozenset(('rcpps', 'rcpss', 'rsqrtps', 'rsqrtss'))
_MMX = re.compile(r'\bmm[0-7]\b')
_FSW_EXCEPTIONS = 0x02FF        # IE DE ZE OE UE PE, SF, ES, C1


@dataclass
class Case:
    code: bytes
    text: str
    mnemonic: str
    regs: list[int | str]   # a value, or an address in the program ('scratch+256')
    flags: int
    fx: bytes
    memory: bytes | None = None     # the scratch buffer's contents before it (SCRATCH)


@dataclass
class Difference:
    case: Case
    kind: str               # fault, gpr, flags, undefined-flags, fpu
    # what differs: register or fxsave field -> (native, emulated); flags: 'rflags';
    # fault: 'engine' -> (the native status, the emulated status)
    fields: dict[str, tuple]
    fsw: int = 0            # the x87 status word the CPU left

    @property
    def detail(self) -> str:
        if self.kind == 'fault':
            native, emulated = self.fields['engine']
            return f'only the {"native" if native == "fault" else "emulated"} engine faulted'
        if self.kind == 'memory':
            return '; '.join(f'scratch[{name}] native {a.hex()} emulated {b.hex()}'
                             for name, (a, b) in self.fields.items())
        if self.kind in ('flags', 'undefined-flags'):
            native, emulated = self.fields['rflags']
            return (f'{_names(native ^ emulated)} differ: native {native:#x} '
                    f'emulated {emulated:#x}')
        return '; '.join(f'{name} native {_show(a)} emulated {_show(b)}'
                         for name, (a, b) in self.fields.items())

    def __str__(self) -> str:
        why = explain(self)
        return (f'{self.kind}: {self.case.code.hex(" ")}: {self.case.text}: {self.detail}'
                + (f' [known: {why}]' if why else ''))


def _show(value: int | bytes) -> str:
    return f'{value:#x}' if isinstance(value, int) else value.hex()


@dataclass
class Result:
    cases: int = 0
    faulted: int = 0        # cases that faulted under both engines alike
    refused: int = 0        # cases the validator refused in the program, not alone
    differences: list[Difference] = field(default_factory=list)


def _opcode(code: bytes) -> bytes:
    """``code`` without its legacy and REX prefixes."""
    i = 0
    while i < len(code) - 1 and code[i] in _PREFIX_BYTES:
        i += 1
    return code[i:]


def explain(d: Difference) -> str | None:
    """The :data:`KNOWN` class of a difference, or None if it is news."""
    c = d.case
    if d.kind == 'undefined-flags':
        return 'undefined-flags'
    head = c.code[:len(c.code) - len(_opcode(c.code))]
    if sum(p in head for p in (0x66, 0xF2, 0xF3)) > 1 and _opcode(c.code)[:1] == b'\x0f':
        return 'mandatory-prefixes'
    operands = c.text.partition(' ')[2].split(', ')
    if c.mnemonic in _HORIZONTAL and operands[0] == operands[1]:
        return 'hadd-alias'
    if d.kind == 'fault':
        return None
    x87 = c.mnemonic.startswith('f')
    if d.kind == 'fpu' and c.mnemonic in _APPROXIMATE and all(n[:3] == 'xmm' for n in d.fields):
        return 'approximate'
    if d.kind == 'flags':
        return 'x87-stack-fault' if c.mnemonic in _FCOMI and _stack_fault(d) else None
    if d.kind == 'memory':      # an x87 store of what a stack fault left
        return 'x87-stack-fault' if x87 and _stack_fault(d) else None
    if d.kind != 'fpu':
        return None
    if x87 and _stack_fault(d):
        return 'x87-stack-fault'
    if struct.unpack_from('<I', c.fx, 24)[0] & 0x8040 \
            and any(n[:3] == 'xmm' for n in d.fields) \
            and all(n[:3] == 'xmm' or n == 'mxcsr' for n in d.fields):
        return 'ftz-daz'
    mmx = bool(_MMX.search(c.text))
    for name, (native, emulated) in d.fields.items():
        diff = int.from_bytes(native, 'little') ^ int.from_bytes(emulated, 'little')
        if name == 'mxcsr' and diff & ~0x3F == 0 \
                or name == 'fsw' and diff & ~_FSW_EXCEPTIONS == 0:
            continue
        if mmx and (name in ('ftw', 'fsw')
                    or name.startswith('st') and diff & ((1 << 64) - 1) == 0):
            continue
        return None
    if mmx and any(n.startswith('st') or n == 'ftw' for n in d.fields):
        return 'mmx-tags'
    return 'fp-exception-flags'


def _stack_fault(d: Difference) -> bool:
    """Whether the CPU flagged an x87 stack fault (SF) in this case."""
    return d.fsw & 0x40 != 0


def register_only(code: bytes) -> tuple[bytes, str, str] | None:
    """(the first instruction's bytes, its text, its mnemonic) if it is decodable,
    accepted by the validator and works on registers alone; else None."""
    insn = next(_md.disasm(code, 0x100000, 1), None)
    if insn is None or insn.mnemonic.split()[-1] in EXCLUDED:
        return None
    if any(insn.group(g) for g in _NOT_REGISTERS_ONLY):
        return None
    if any(op.type == X86_OP_MEM for op in insn.operands):
        return None
    read, written = insn.regs_access()
    if any(_md.reg_name(r) in ('rsp', 'esp', 'rip', 'fs', 'gs') for r in (*read, *written)):
        return None
    if '[' in insn.op_str or refused(bytes(insn.bytes)):
        return None
    text = f'{insn.mnemonic} {insn.op_str}'.strip()
    return bytes(insn.bytes), text, insn.mnemonic.split()[-1]


def structured() -> Iterator[bytes]:
    """Every opcode of the one-byte, 0f, 0f38 and 0f3a maps and the VEX maps, in
    register form (ModRM mod 11), each with and without REX.W and the 66/f3/f2
    prefixes; random ModRM reg/rm and immediates come from the caller's filler."""
    escapes = [b'', b'\x0f', b'\x0f\x38', b'\x0f\x3a']
    prefixes = [b'', b'\x48', b'\x66', b'\xf3', b'\xf2', b'\x66\x48', b'\x41', b'\x4c']
    for escape in escapes:
        for op in range(256):
            for pre in prefixes:
                yield pre + escape + bytes([op])
    for mmmmm in (1, 2, 3):
        for pp in range(4):
            for op in range(256):
                for w in (0, 0x80):
                    yield bytes([0xC4, 0xE0 | mmmmm, 0x78 | w | pp, op])


def _filled(rng: random.Random, head: bytes) -> bytes:
    return head + bytes([0xC0 | rng.randrange(64)]) + rng.randbytes(15)


def _value(rng: random.Random) -> int:
    pick = rng.random()
    if pick < 0.4:
        return rng.getrandbits(64)
    if pick < 0.7:
        return rng.choice(_INTERESTING)
    return rng.getrandbits(rng.choice((8, 16, 32)))


def _extended(rng: random.Random) -> bytes:
    """An 80-bit x87 value: a normal number near 1, a large or small one, or 0."""
    if rng.random() < 0.1:
        return bytes(10)
    exponent = 16383 + rng.choice((0, 0, 1, -1, 5, -5, 60, -60, 1000, -1000))
    mantissa = (1 << 63) | rng.getrandbits(63)
    return struct.pack('<QH', mantissa, exponent | (rng.getrandbits(1) << 15))


def _fx(rng: random.Random) -> bytes:
    image = bytearray(512)
    full = rng.random() < 0.5       # all eight x87 registers in use, or none
    struct.pack_into('<HHB', image, 0, rng.choice(_FCW), 0, 0xFF if full else 0)
    struct.pack_into('<II', image, 24, rng.choice(_MXCSR), 0)
    for i in range(8):
        image[32 + 16 * i:42 + 16 * i] = _extended(rng) if full else bytes(10)
    for i in range(16):
        lanes = rng.random()
        if lanes < 0.4:
            xmm = rng.randbytes(16)
        elif lanes < 0.7:
            xmm = struct.pack('<4f', *(rng.uniform(-100, 100) for _ in range(4)))
        else:
            xmm = struct.pack('<2d', *(rng.choice((0.0, -0.0, 1.5, -2.25, 1e300, 1e-310,
                                                   float('inf'), float('nan')))
                                       for _ in range(2)))
        image[160 + 16 * i:176 + 16 * i] = xmm
    return bytes(image)


def case(rng: random.Random, code: bytes) -> Case | None:
    """A case for ``code``'s first instruction with random registers, or None when it
    is not a register-only instruction the validator accepts."""
    found = register_only(code)
    if found is None:
        return None
    insn, text, mnemonic = found
    regs = [_value(rng) for _ in GPRS]
    return Case(insn, text, mnemonic, regs, rng.getrandbits(32) & _INPUT_FLAGS | 0x202, _fx(rng))


@functools.cache
def _assembled(texts: tuple[str, ...]) -> tuple[bytes, ...]:
    """The bytes of each instruction of ``texts`` (assembled once, by the toolchain)."""
    lines = ['.text', '.globl _start', '_start:']
    lines += [f't{i}: {text}' for i, text in enumerate(texts)] + [f't{len(texts)}:']
    with tempfile.TemporaryDirectory(prefix='semdiff-') as tmp:
        src = Path(tmp) / 'semantic_memory.S'
        src.write_text('\n'.join(lines) + '\n')
        with open(build_static(src, Path(tmp) / 'build'), 'rb') as f:
            elf = ELFFile(f)
            at = {s.name: s.entry.st_value for s in elf.get_section_by_name('.symtab')
                  .iter_symbols() if s.name[:1] == 't' and s.name[1:].isdigit()}
            text = elf.get_section_by_name('.text')
            data, base = text.data(), text['sh_addr']
    return tuple(data[at[f't{i}'] - base:at[f't{i + 1}'] - base] for i in range(len(texts)))


def memory_case(rng: random.Random, text: str) -> Case:
    """A case for ``text`` (AT&T syntax, as in :data:`MEMORY`): random registers, flags,
    x87/SSE state and scratch buffer; its base registers point into the buffer.  Half
    the ``cmpxchg`` cases find rax (edx:eax, rdx:rax) in memory: the exchange is made."""
    code = _assembled(MEMORY)[MEMORY.index(text)] if text in MEMORY else _assembled((text,))[0]
    insn = next(_md.disasm(code, 0x100000, 1))
    mnemonic = insn.mnemonic.split()[-1]
    regs: list[int | str] = [_value(rng) for _ in GPRS]
    mid = SCRATCH // 2
    for reg, value in (('rbx', f'scratch+{mid}'), ('rsi', f'scratch+{mid - 64}'),
                       ('rdi', f'scratch+{mid + 64}'), ('rcx', rng.randrange(13))):
        regs[GPRS.index(reg)] = value
    memory = bytearray(rng.randbytes(SCRATCH))
    if mnemonic.startswith('cmpxchg') and rng.random() < 0.5:
        op = next(op for op in insn.operands if op.type == X86_OP_MEM)
        rax, rdx = (int(regs[GPRS.index(r)]) for r in ('rax', 'rdx'))
        half = (1 << 4 * op.size) - 1       # cmpxchg8b/16b: edx:eax, rdx:rax
        value = (rax & half | (rdx & half) << 4 * op.size if mnemonic[-1] == 'b'
                 else rax & (1 << 8 * op.size) - 1)
        at = mid + op.mem.disp
        if op.mem.index:                    # rcx: a number, see above
            at += int(regs[GPRS.index(_md.reg_name(op.mem.index))]) * op.mem.scale
        memory[at:at + op.size] = value.to_bytes(op.size, 'little')
    return Case(code, f'{insn.mnemonic} {insn.op_str}'.strip(), mnemonic, regs,
                rng.getrandbits(32) & _INPUT_FLAGS | 0x202, _fx(rng), bytes(memory))


def cmpxchg_cases(rng: random.Random, each: int = 4) -> list[Case]:
    """``each`` cases of every form of :data:`CMPXCHG_REGISTER`, half of them with the
    destination equal to the accumulator (of the operand's size; the rest of each
    register random): the exchange is made."""
    made = []
    for text in CMPXCHG_REGISTER:
        code = _assembled(CMPXCHG_REGISTER)[CMPXCHG_REGISTER.index(text)]
        insn = next(_md.disasm(code, 0x100000, 1))
        dest, size = insn.operands[0].reg, insn.operands[0].size
        for k in range(each):
            c = case(rng, code)
            if c is None:
                raise AssertionError(f'{text}: refused, or not register-only')
            if k % 2:
                reg, shift = _parent(_md.reg_name(dest))
                mask = (1 << 8 * size) - 1 << shift
                at = GPRS.index(reg)
                c.regs[at] = int(c.regs[at]) & ~mask | int(c.regs[0]) << shift & mask
            made.append(c)
    return made


def _parent(name: str) -> tuple[str, int]:
    """(the 64-bit register, the bit it starts at) of a register's name."""
    if name in GPRS:
        return name, 0
    if name[0] == 'r':                                  # r8d, r8w, r8b
        return name[:-1], 0
    if len(name) == 2 and name[1] in 'lh':              # al, ah ...
        return f'r{name[0]}x', 8 * (name[1] == 'h')
    if name[-1] == 'l':                                 # sil, dil, bpl, spl
        return f'r{name[:-1]}', 0
    return f'r{name.lstrip("e")}', 0                    # eax, esi, ax, si


def memory_cases(rng: random.Random, each: int = 1) -> list[Case]:
    """``each`` cases of every form of :data:`MEMORY`, in a random order."""
    made = [memory_case(rng, text) for text in MEMORY for _ in range(each)]
    rng.shuffle(made)
    return made


def cases(rng: random.Random, count: int, structured_share: float = 0.5) -> list[Case]:
    """``count`` cases: random encodings (:func:`decoder_diff.generate`) and, for
    ``structured_share`` of them, register forms of every map's opcodes in turn from a
    random starting point."""
    heads = list(structured())
    at = rng.randrange(len(heads))
    made: list[Case] = []
    while len(made) < count:
        if rng.random() < structured_share:
            at = (at + rng.randrange(1, 64)) % len(heads)
            code = _filled(rng, heads[at])
        else:
            code = generate(rng)[1]
        c = case(rng, code)
        if c is not None:
            made.append(c)
    return made


def source(batch: list[Case]) -> str:
    """The assembly program running ``batch``: see the module's docstring."""
    lines = ['.text', '.globl _start', '_start:', '  mov %rsp, saved_rsp(%rip)']
    for i, c in enumerate(batch):
        if c.memory is not None:
            lines += ['  cld', f'  lea mem{i}(%rip), %rsi', '  lea scratch(%rip), %rdi',
                      f'  mov ${SCRATCH}, %ecx', '  rep movsb']
        lines += [f'  fxrstor64 fx{i}(%rip)', f'  pushq flags{i}(%rip)', '  popfq']
        lines += [f'  mov in{i}+{8 * n}(%rip), %{r}' for n, r in enumerate(GPRS)]
        lines += [f'c{i}: .byte {", ".join(str(b) for b in c.code)}']
        lines += [f'  mov %{r}, out+{8 + 8 * n}(%rip)' for n, r in enumerate(GPRS)]
        lines += ['  mov saved_rsp(%rip), %rsp', '  pushfq', '  popq out+136(%rip)', '  cld',
                  '  fxsave64 out+144(%rip)', '  lea scratch(%rip), %rsi',
                  '  lea out+656(%rip), %rdi', f'  mov ${SCRATCH}, %ecx', '  rep movsb',
                  f'  movq ${i}, out(%rip)',
                  '  mov $1, %eax', '  mov $1, %edi', '  lea out(%rip), %rsi',
                  f'  mov ${RECORD.size}, %edx', '  syscall']
    lines += ['  mov $60, %eax', '  xor %edi, %edi', '  syscall', '.data', '.balign 16',
              'saved_rsp: .quad 0', '.balign 16', f'out: .skip {RECORD.size + 16}',
              '.balign 64', f'scratch: .skip {SCRATCH}']
    for i, c in enumerate(batch):
        lines += ['.balign 16', f'fx{i}: .byte {", ".join(str(b) for b in c.fx)}',
                  f'flags{i}: .quad {c.flags}',
                  f'in{i}: .quad {", ".join(str(v) for v in c.regs)}']
        if c.memory is not None:
            lines += [f'mem{i}: .byte {", ".join(str(b) for b in c.memory)}']
    return '\n'.join(lines) + '\n'


def build(batch: list[Case], directory: Path) -> Path:
    src = directory / 'semantic_batch.S'
    src.write_text(source(batch))
    # -nostdlib (an .S file): the program is the cases and two system calls
    return build_static(src, directory / 'build', flags=('-Wa,--noexecstack',))


def rejected(program: Path) -> set[int]:
    """The numbers of the cases of ``program`` that the validator refuses in place
    (a branch into the middle of another case's instruction, say)."""
    try:
        prepare(program, engine='emulated', cache=None)
    except Rejected as e:
        if e.verdict is None:
            raise
        with open(program, 'rb') as f:
            symbols = ELFFile(f).get_section_by_name('.symtab')
            starts = {s.entry.st_value: int(s.name[1:]) for s in symbols.iter_symbols()
                      if s.name[:1] == 'c' and s.name[1:].isdigit()}
        ordered = sorted(starts)
        bad = set()
        for v in e.verdict.violations:
            before = [a for a in ordered if a <= v.address]
            if not before:
                raise
            bad.add(starts[before[-1]])
        return bad
    return set()


def run(program: Path, engine: str) -> tuple[str, list[tuple]]:
    """(the report's status, the records written) of ``program`` under ``engine``."""
    prepared = prepare(program, engine=engine, cache=None)
    out = MemoryBacking()
    channels = [Channel('/dev/stdin', MemoryBacking(b''), READ),
                Channel('/dev/stdout', out, WRITE), Channel('/dev/stderr', MemoryBacking(), WRITE)]
    report = execute(prepared, channels, ['semantic'], {}, Limits(64 << 20, 10**10, 120))
    data = bytes(out.data)
    whole = len(data) // RECORD.size * RECORD.size
    return report.status, [RECORD.unpack_from(data, o) for o in range(0, whole, RECORD.size)]


def _names(mask: int) -> str:
    return ','.join(n for n, b in FLAG_BITS.items() if mask >> b & 1) or hex(mask)


def compare(c: Case, native: tuple, emulated: tuple) -> list[Difference]:
    """The differences between the two engines' records of one case."""
    found: list[Difference] = []
    fsw = struct.unpack_from('<H', native[18], 2)[0]
    regs = {r: (a, b) for r, a, b in zip(GPRS, native[1:17], emulated[1:17], strict=True)
            if a != b}
    if regs:
        found.append(Difference(c, 'gpr', regs, fsw))
    flags = native[17] ^ emulated[17]
    if flags:
        undefined = UNDEFINED.get(c.mnemonic, 0)
        kind = 'undefined-flags' if flags & ~undefined == 0 else 'flags'
        found.append(Difference(c, kind, {'rflags': (native[17], emulated[17])}, fsw))
    fpu = {name: (native[18][o:o + n], emulated[18][o:o + n])
           for name, (o, n) in FX_FIELDS.items() if native[18][o:o + n] != emulated[18][o:o + n]}
    if fpu:
        found.append(Difference(c, 'fpu', fpu, fsw))
    if native[19] != emulated[19]:
        differ = [o for o in range(SCRATCH) if native[19][o] != emulated[19][o]]
        lo, hi = differ[0] & ~7, (differ[-1] | 7) + 1
        found.append(Difference(c, 'memory', {f'{lo}:{hi}': (native[19][lo:hi],
                                                              emulated[19][lo:hi])}, fsw))
    return found


def differences(batch: list[Case], directory: Path | None = None) -> Result:
    """Run ``batch`` under both engines and compare every case (see the module's
    docstring for faults)."""
    result = Result()
    with tempfile.TemporaryDirectory(prefix='semdiff-') as tmp:
        where = directory or Path(tmp)
        todo = list(batch)
        while todo:
            chunk = todo[:MAX_BATCH]
            program = build(chunk, where)
            while bad := rejected(program):
                result.refused += len(bad)
                todo = [c for i, c in enumerate(chunk) if i not in bad] + todo[len(chunk):]
                chunk = todo[:MAX_BATCH]
                program = build(chunk, where)
            status_n, native = run(program, 'native')
            status_e, emulated = run(program, 'emulated')
            done = min(len(native), len(emulated))
            for i in range(done):
                result.differences += compare(chunk[i], native[i], emulated[i])
            result.cases += done
            if done == len(chunk):
                if status_n != status_e:
                    raise AssertionError(f'all cases ran, yet statuses {status_n} {status_e}')
                todo = todo[len(chunk):]
                continue
            # case ``done`` faulted under one engine at least
            bad = chunk[done]
            result.cases += 1
            if len(native) == len(emulated):
                result.faulted += 1
            else:
                result.differences.append(Difference(
                    bad, 'fault', {'engine': ('fault' if len(native) == done else 'ok',
                                              'fault' if len(emulated) == done else 'ok')}))
            todo = todo[done + 1:]
    return result

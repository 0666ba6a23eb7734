"""Differential decoding: capstone's instruction length against unicorn's.

The validator decodes with capstone; unicorn executes with QEMU's decoder.
Where the two disagree on where an instruction ends, unicorn runs bytes the
validator never saw as instructions, inside one translated block that the
runtime guard checks only at its start.  :func:`compare` classifies one
encoding:

- ``undecodable``: capstone rejects it (the validator refuses it, rule I1);
- ``agree``: unicorn executes exactly capstone's bytes as one instruction;
- ``harmless``: the lengths differ, but unicorn faults on the instruction
  itself (invalid opcode) whatever the bytes after it, so nothing runs after
  it;
- ``disagree``: anything else;
- ``crash``: unicorn aborted the process (the oracle runs in a child);
- ``random``: the lengths agree, but running the instruction twice from the
  same registers gave different registers (``rdrand`` under a name capstone
  does not refuse; only for instructions without a memory operand, whose
  result cannot depend on what the first run wrote; ``rdtsc``/``rdtscp``
  are answered by the guard's virtual counter and so do not count).

The validator must refuse every ``disagree``, ``crash`` and ``random``.

:func:`generate` makes random and structured encodings: legacy prefixes,
REX, the one-byte map and the 0f, 0f38, 0f3a, VEX (c5, c4), EVEX (62), XOP
(8f) and 3DNow! (0f 0f) escapes, followed by random ModRM/SIB/displacement/
immediate bytes; and plain random bytes.  Used by ``tests/unit/test_decoder_diff.py`` (bounded) and
``bench/fuzz_decoder.py`` (long runs).
"""

from __future__ import annotations

import faulthandler
import os
import random
import signal
import struct
from collections.abc import Callable
from dataclasses import dataclass

from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from unicorn import (
    UC_ARCH_X86,
    UC_ERR_INSN_INVALID,
    UC_HOOK_CODE,
    UC_HOOK_MEM_UNMAPPED,
    UC_MEM_FETCH_UNMAPPED,
    UC_MODE_64,
    UC_PROT_ALL,
    UC_PROT_READ,
    UC_PROT_WRITE,
    Uc,
    UcError,
)
from unicorn.x86_const import (
    UC_X86_REG_EFLAGS,
    UC_X86_REG_R8,
    UC_X86_REG_R9,
    UC_X86_REG_R10,
    UC_X86_REG_R11,
    UC_X86_REG_R12,
    UC_X86_REG_R13,
    UC_X86_REG_R14,
    UC_X86_REG_R15,
    UC_X86_REG_RAX,
    UC_X86_REG_RBP,
    UC_X86_REG_RBX,
    UC_X86_REG_RCX,
    UC_X86_REG_RDI,
    UC_X86_REG_RDX,
    UC_X86_REG_RIP,
    UC_X86_REG_RSI,
    UC_X86_REG_RSP,
)

from zvm_core.validator import validate_code

CODE = 0x100000
STACK = 0x200000
DATA = 1 << 40
_POINTERS = (UC_X86_REG_RAX, UC_X86_REG_RBX, UC_X86_REG_RDX, UC_X86_REG_RSI, UC_X86_REG_RDI,
             UC_X86_REG_RBP, UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_R10, UC_X86_REG_R11,
             UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15)
_STATE = (*_POINTERS, UC_X86_REG_RCX, UC_X86_REG_RSP, UC_X86_REG_RIP, UC_X86_REG_EFLAGS)
_VIRTUALIZED = ('rdtsc', 'rdtscp')     # the guard answers these from a virtual counter
_MUST_REFUSE = ('disagree', 'crash', 'random')
_UNPATCHED = 0xF1F1F1F1      # unicorn's hook size when translation stopped before patching it
_LEGACY = b'\x66\x67\xf2\xf3\xf0\x2e\x3e\x26\x64\x65\x36'
_FILLERS = (b'\x00' * 16, b'\xff' * 16)
_MAPS = ('legacy', '0f', '0f38', '0f3a', 'vex2', 'vex3', 'evex', 'xop', '3dnow', 'random')
_REFRESH = 2000              # samples per unicorn instance (on-demand pages pile up)
# Data pages are made on demand only below this: unicorn 2 keeps a page asked for above
# its physical address width (52 bits) at a truncated address, and the access then
# runs into memory it corrupts (the process segfaults some of the time, as ASLR has it)
_MAPPABLE = 1 << 47


def generate(rng: random.Random) -> tuple[str, bytes]:
    """One encoding (16 bytes or more; the instruction is a prefix of it) and its map."""
    pre = bytes(rng.choice(_LEGACY) for _ in range(rng.choice((0, 0, 0, 1, 1, 2, 3))))
    if rng.random() < 0.5:
        pre += bytes([rng.randrange(0x40, 0x50)])
    kind = rng.choice(_MAPS)
    if kind == 'random':
        return kind, rng.randbytes(32)
    r = rng.randrange
    escape = {
        'legacy': b'', '0f': b'\x0f', '0f38': b'\x0f\x38', '0f3a': b'\x0f\x3a',
        'vex2': b'\xc5',
        'vex3': bytes([0xC4, r(256) & 0xE0 | rng.choice((1, 2, 3, r(32)))]),
        'evex': bytes([0x62, r(256) & 0xF0 | rng.choice((1, 2, 3, r(16))),
                       r(256) | 4]),
        'xop': bytes([0x8F, r(256) & 0xE0 | rng.choice((8, 9, 10, r(32)))]),
        '3dnow': b'\x0f\x0f',
    }[kind]
    return kind, pre + escape + rng.randbytes(16)


@dataclass
class Outcome:
    kind: str                 # undecodable, agree, harmless, disagree, crash, random
    capstone: int = 0         # capstone's length (0: undecodable)
    unicorn: int | None = None    # unicorn's first instruction length (None: unknown)
    error: int | None = None  # the UcError errno of the run, if any
    text: str = ''


class _Machine:
    """Runs the first instruction of an encoding and reports how long unicorn found it.

    The CPU is the executor's (``Uc(UC_ARCH_X86, UC_MODE_64)``, default
    model), restored from one context before each sample so that what one
    sample executed (a control register, a flag) cannot change the next.
    Data accesses in the lower half of the address space get a fresh page, so
    the length is learnt even for instructions that touch memory (the code
    hook has it before the access); other accesses and fetches outside the
    code page fault, as they do for a guest.
    """

    def __init__(self) -> None:
        self.runs = 0
        self._new()

    def _new(self) -> None:
        uc = self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        uc.mem_map(CODE, 0x1000, UC_PROT_ALL)
        uc.mem_map(STACK, 0x10000, UC_PROT_READ | UC_PROT_WRITE)
        for reg in _POINTERS:    # memory operands stay canonical, whatever the displacement
            uc.reg_write(reg, DATA)
        uc.reg_write(UC_X86_REG_RSP, STACK + 0x8000)
        uc.reg_write(UC_X86_REG_RCX, 2)
        self.seen: list[tuple[int, int]] = []
        uc.hook_add(UC_HOOK_CODE, self._code)
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._page)
        self.context = uc.context_save()

    def _code(self, uc, address: int, size: int, _) -> None:
        self.seen.append((address, size))
        if len(self.seen) >= 2:
            uc.emu_stop()

    @staticmethod
    def _page(uc, access: int, address: int, *_) -> bool:
        if access == UC_MEM_FETCH_UNMAPPED or address >= _MAPPABLE:
            return False
        try:
            uc.mem_map(address & ~0xFFF, 0x1000)
        except UcError:
            return False
        return True

    def first(self, code: bytes, twice: bool = False) -> tuple[int, int, int]:
        """(length of the first instruction unicorn ran, or 0; errno, or 0; whether a
        second run from the same state ended in other registers, if ``twice``)."""
        self.runs += 1
        if self.runs % _REFRESH == 0:
            self._new()
        uc = self.uc
        uc.mem_write(CODE, code.ljust(0x40, b'\x90'))
        error = self._run()
        size = self.seen[0][1] if self.seen and self.seen[0][0] == CODE else 0
        varies = 0
        if twice and not error and len(self.seen) == 2:
            state = [uc.reg_read(r) for r in _STATE]
            varies = int(self._run() != 0 or state != [uc.reg_read(r) for r in _STATE])
        return (0 if size == _UNPATCHED else size), error, varies

    def _run(self) -> int:
        uc = self.uc
        uc.context_restore(self.context)
        uc.ctl_remove_cache(CODE, CODE + 0x1000)
        self.seen.clear()
        try:
            uc.emu_start(CODE, CODE + 0x1000, count=2)
        except UcError as e:
            return e.errno
        return 0


class Crash(Exception):
    """Unicorn killed its process (some encodings make QEMU abort)."""


class Unicorn:
    """A :class:`_Machine` in a child process, so that an encoding that makes unicorn
    abort is an outcome (:class:`Crash`), not the end of the test."""

    _REPLY = struct.Struct('<III')

    def __init__(self) -> None:
        self.pid = 0
        self._spawn()

    def _spawn(self) -> None:
        child_in, parent_out = os.pipe()
        parent_in, child_out = os.pipe()
        pid = os.fork()
        if pid == 0:               # the child: answer requests until the pipe closes
            try:
                os.close(parent_out)
                os.close(parent_in)
                faulthandler.disable()        # an abort is an answer here, not news
                os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
                machine, inp = _Machine(), os.fdopen(child_in, 'rb')
                while head := inp.read(2):
                    answer = machine.first(inp.read(head[0]), bool(head[1]))
                    os.write(child_out, self._REPLY.pack(*answer))
            finally:
                os._exit(0)
        os.close(child_in)
        os.close(child_out)
        self.pid, self.out, self.inp = pid, parent_out, os.fdopen(parent_in, 'rb')

    def first(self, code: bytes, twice: bool = False) -> tuple[int | None, int | None, bool]:
        """(length of the first instruction unicorn ran or None, errno or None, whether
        running it again from the same state gave other registers)."""
        os.write(self.out, bytes([len(code), twice]) + code)
        reply = self.inp.read(self._REPLY.size)
        if len(reply) < self._REPLY.size:
            status = self.close()
            self._spawn()
            ended = os.waitstatus_to_exitcode(status)
            raise Crash(f'killed by {signal.Signals(-ended).name}' if ended < 0
                        else f'exit status {ended}')
        size, error, varies = self._REPLY.unpack(reply)
        return size or None, error or None, bool(varies)

    def close(self) -> int:
        """End the child: its wait status."""
        os.close(self.out)
        self.inp.close()
        return os.waitpid(self.pid, 0)[1]


_md = Cs(CS_ARCH_X86, CS_MODE_64)


def compare(code: bytes, uni: Unicorn, rng: random.Random) -> Outcome:
    insn = next(_md.disasm_lite(code, CODE, 1), None)
    if insn is None:
        return Outcome('undecodable')
    n = insn[1]
    text = f'{code[:n].hex(" ")}: {insn[2]} {insn[3]}'.rstrip()
    # run twice if its result can only depend on registers (no memory operand it also wrote)
    twice = '[' not in insn[3]
    try:
        size, error, varies = uni.first(code[:n] + rng.randbytes(16), twice)
    except Crash as e:
        return Outcome('crash', n, None, None, f'{text} (unicorn {e})')
    if size == n and error != UC_ERR_INSN_INVALID:
        virtual = insn[2].rpartition(' ')[2] in _VIRTUALIZED
        kind = 'random' if varies and not virtual else 'agree'
        return Outcome(kind, n, size, error, text)
    # unicorn rejects the opcode: harmless if that holds whatever follows capstone's bytes
    invalid = error == UC_ERR_INSN_INVALID and (size is None or size <= n)
    try:
        if invalid and all(uni.first(code[:n] + f)[1] == UC_ERR_INSN_INVALID
                           for f in _FILLERS):
            return Outcome('harmless', n, size, error, text)
    except Crash as e:
        return Outcome('crash', n, None, None, f'{text} (unicorn {e})')
    if size == n:
        return Outcome('agree', n, size, error, text)
    return Outcome('disagree', n, size, error, text)


def refused(insn: bytes) -> bool:
    """Whether the validator refuses this one instruction (branch targets aside: in a
    one-instruction buffer they are always outside it)."""
    verdict = validate_code(insn, CODE)
    return any(v.address == CODE and v.rule != 'I8' for v in verdict.violations)


def run(samples: int, seed: int,
        report: Callable[[Outcome], None] | None = None) -> dict[str, int]:
    """Compare ``samples`` encodings; count outcomes, and disagreements the validator
    lets through under ``'accepted'`` (passing each one to ``report``)."""
    rng = random.Random(seed)
    uni = Unicorn()
    counts = dict.fromkeys(('undecodable', 'agree', 'harmless', 'disagree', 'crash',
                             'random', 'accepted'), 0)
    try:
        for _ in range(samples):
            _, code = generate(rng)
            outcome = compare(code, uni, rng)
            counts[outcome.kind] += 1
            if outcome.kind in _MUST_REFUSE and not refused(code[:outcome.capstone]):
                counts['accepted'] += 1
                if report is not None:
                    report(outcome)
    finally:
        uni.close()
    return counts

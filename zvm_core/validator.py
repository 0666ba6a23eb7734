"""Static validation of guest code (sandbox-research §1.8, rules I1–I14).

A capstone linear sweep decodes every executable byte the program's sections
point at, rejects what unicorn would run wrongly at CPL 0 (privileged and
segment-state instructions, hardware randomness, other system-call paths,
``rdtsc`` if the policy says so) and checks direct branch targets.  The
sweep also produces the bitmap of instruction starts that the C runtime guard
checks every executed block against; that is what stops code hidden inside
other instructions (§1.7), which no static sweep can see.

The bitmap is closed under fall-through: a translated block decodes
sequentially from a checked start, so wherever a code range ends without an
unconditional transfer, the sweep follows the bytes after it (section
padding, a section the headers do not list) until it meets a known start or a
terminator.  Otherwise code after the end of a section would run unvalidated.

The bitmap only means something if unicorn decodes each validated
instruction as capstone does: a block is decoded sequentially from its
checked start, so an instruction that unicorn finds shorter makes it run the
bytes capstone saw as the rest of it.  Rule I13 refuses the encodings where
the two decoders disagree and unicorn does not fault: the AMD XOP escape
(``8f`` other than ``pop r/m``, which includes TBM; unicorn has no XOP and
runs ``8f /r`` as ``pop``), 3DNow! (``0f 0f``, ``femms``; unicorn has
none), and a lock prefix without a memory operand (some make unicorn abort
the process).  Operand-size prefixes on relative branches and returns
(which unicorn decodes two bytes shorter) are I1.  ``tests/decoder_diff.py``
compares the two decoders on random and structured encodings of every
opcode map, and ``bench/fuzz_decoder.py`` runs it long.  I13 also refuses
encodings both decode alike but unicorn runs differently from the CPU, which
no compiler emits (:func:`_quirk`, SSE4a, ``mov`` of an immediate with
REX.R); ``tests/semantic_diff.py`` finds
them by running register-only instructions under both engines.

Instructions of extensions the fixed cpuid table (``zvm_core.cpu``) does not
list are allowed but noted, and both engines run ``ud2`` in their place
(:func:`as_fixed_cpu`): an invalid instruction, as on the CPU that table
describes, the same fault at the same address under both engines on every
host.  They are :data:`ABSENT`: every VEX- or EVEX-encoded instruction (AVX,
AVX2, AVX-512, FMA, F16C, VEX-encoded BMI1/BMI2, mask registers, AMX; in
64-bit mode an opcode byte ``c4``, ``c5`` or ``62`` is always VEX or EVEX),
the RTM instructions of Intel TSX (``xbegin``, ``xabort``, ``xend``,
``xtest``), SHA, GFNI, ADX and XSAVE (``xgetbv`` reads the host's XCR0
natively, unicorn's ``3``).  AES-NI, PCLMULQDQ and MOVBE, also absent from the
table, stay: both engines run them alike (``tests/semantic_diff.py``).
Programs that ask ``cpuid`` never reach them
(glibc's AVX string functions and lock elision are dead code behind it), but
one built with ``-mavx2`` or ``-march=native`` uses them without asking: run
as they are, the host's CPU decides natively (a transaction commits or aborts
as its interrupts decide; AVX-512 runs or faults), and unicorn, which has
none of them, runs a VEX-encoded SSE opcode as its legacy form (a silently
wrong result), ``xbegin`` as a ``mov``, and faults on the rest.  Rule I14
refuses one whose ``ud2`` would change another decoded instruction
(overlapping it out of sync), and more than :data:`MAX_ABSENT` of them.

Executable memory can grow only where the heap arena starts (ZeroVM's
``jail`` makes arena pages executable), so an instruction cut off there is
refused (its tail could be supplied later), and a jailed buffer is checked
against the validated instructions just before it (:func:`validate_code`).

Verdicts are cached by SHA-256 of the file, :data:`VALIDATOR_VERSION` and the
policy (I12).  The version includes a digest of this module's and
``zvm_core.elf``'s source and of the capstone and unicorn files that define
their versions (the rules are about what unicorn decodes), so a changed rule
can never be answered by a verdict the old rules gave.

A pool's worker validates inside :func:`within` its run's deadline: a program
whose code takes longer to validate than the run may last (hundreds of MiB of
code: about a minute for 32 MiB of one-byte instructions on a loaded host) is
then :class:`Unfinished`, not a worker that answers nothing until it is killed
as the host's failure and the node is run on other servers to the same end.
"""

from __future__ import annotations

import array
import base64
import bisect
import collections
import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import json
import operator
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import EllipsisType

from zvm_core.elf import PF_X, Program


def _decoder_sources() -> list[Path]:
    """The files that define the capstone and unicorn versions, found without importing
    either: a run whose verdict is cached needs neither, and importing them is most of
    the ``zvm`` CLI's start-up."""
    capstone = importlib.util.find_spec('capstone')
    unicorn = importlib.util.find_spec('unicorn')
    return [Path(capstone.origin),
            Path(unicorn.submodule_search_locations[0]) / 'unicorn_const.py']


def _fingerprint() -> str:
    from zvm_core import elf
    h = hashlib.sha256()
    for source in (__file__, elf.__file__, *_decoder_sources()):
        h.update(Path(source).read_bytes())
    return h.hexdigest()[:16]


VALIDATOR_VERSION = '5-' + _fingerprint()
MAX_VIOLATIONS = 100
MAX_ABSENT = 1 << 17  # instructions of absent extensions a program may contain (addresses)
UD2 = b'\x0f\x0b'   # what each one's opcode becomes (:func:`as_fixed_cpu`)

_CHUNK = 4096        # instructions per capstone call: bounds capstone's result array
_DEADLINE: ContextVar[float | None] = ContextVar('validation deadline', default=None)
_LOCK_PAUSE = 0.01   # seconds between tries of another process's validation lock


class Unfinished(Exception):
    """The validation did not end by the deadline :func:`within` gave it: no verdict."""


@contextlib.contextmanager
def within(deadline: float | None):
    """Validations in this block end by ``deadline`` (``time.monotonic()``) or raise
    :class:`Unfinished`, waiting for another process's validation of the same
    program included; None: no deadline (the engine's own code, whoever imports it)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _on_time() -> None:
    deadline = _DEADLINE.get()
    if deadline is not None and time.monotonic() > deadline:
        raise Unfinished
_MAX_INSN = 15       # longest x86 instruction
_PAGE = 0x1000
JAIL_ALIGN = 0x10000  # ZeroVM's jail makes arena pages executable only from such addresses


@dataclass(frozen=True)
class Policy:
    """Choices that change the verdict (and so are part of the cache key)."""

    rdtsc: str = 'virtualize'   # 'virtualize': the guard returns a virtual counter

    def __post_init__(self) -> None:
        if self.rdtsc not in ('virtualize', 'reject'):
            raise ValueError(f"rdtsc policy must be 'virtualize' or 'reject', not "
                             f'{self.rdtsc!r}')

    def key(self) -> str:
        return f'rdtsc={self.rdtsc}'


@dataclass(frozen=True)
class Violation:
    rule: str
    address: int
    text: str

    def to_dict(self) -> dict[str, str]:
        return {'rule': self.rule, 'address': f'{self.address:#x}', 'text': self.text}


@dataclass
class Verdict:
    """Outcome of a sweep.

    ``traced`` names the instructions of :data:`TRACED` that the sweep decoded:
    a native run answers them by tracing the guest (``zvm_core.prepare``), which
    it knows from this verdict without validating again.
    ``absent`` holds, in order, where the opcode of each instruction of an
    extension the fixed CPU lacks (:data:`ABSENT`) the sweep decoded is (after
    any prefixes): both engines run ``ud2`` there instead (:func:`as_fixed_cpu`).
    ``boundaries`` holds ``(base, bitmap)`` pairs, ``base`` a multiple of 8:
    bit k (LSB first) of byte j is set iff ``base + 8*j + k`` starts an
    instruction the sweep decoded.  A list longer than :data:`MAX_VIOLATIONS`
    ends with a ``'more'`` entry that says how many were left out.
    """

    ok: bool
    violations: list[Violation]
    boundaries: list[tuple[int, bytes]] = field(repr=False)
    cached: bool = False
    instructions: int = 0
    traced: frozenset[str] = frozenset()    # of :data:`TRACED` those decoded
    absent: tuple[int, ...] = ()            # where :data:`ABSENT` opcodes are (ud2 goes)


# -- the rule table --------------------------------------------------------------

_I2 = ('I2', 'privileged or system instruction (it would succeed at CPL 0 under unicorn)')
# a C++ program's usually come from the static libstdc++'s std::random_device, linked into
# any that uses strings or containers unless unused sections are dropped
_I3 = ('I3', 'hardware random number: nondeterministic and cannot be hooked (static '
             'libstdc++? link with -Wl,--gc-sections; the sandbox has no hardware '
             'randomness: getrandom is seeded)')
_I4_TSC = ('I4', 'reads the time-stamp counter (policy rdtsc=reject)')
_I4_PID = ('I4', 'reads the processor id: nondeterministic and not hooked')
_I6 = ('I6', 'changes segment state (the FS/GS bases belong to the host, via arch_prctl)')
_I7 = ('I7', 'a system-call or interrupt path other than syscall')
_I13_XOP = ('I13', 'AMD XOP encoding (8f escape; XOP and TBM): unicorn does not implement '
                   'XOP and would run these bytes as other, shorter instructions nobody '
                   'validated')
_I13_3DNOW = ('I13', '3DNow! instruction: unicorn does not implement 3DNow!')
_I13_LOCK = ('I13', 'lock prefix without a memory operand: invalid on hardware, and unicorn '
                    'aborts the whole process on some (lock bt* with a register)')
_I13_SSE4A = ('I13', 'AMD SSE4a instruction: unicorn runs it, an Intel CPU faults')
_I13_MEANING = 'I13'     # same length in both decoders, another result: :func:`_quirk` says why

_FORBIDDEN: dict[str, tuple[str, str]] = {
    **dict.fromkeys((
        'in out insb insw insd outsb outsw outsd cli sti clac stac '
        'lgdt lidt lldt ltr sgdt sidt sldt str smsw lmsw clts lar lsl verr verw '
        'rdmsr wrmsr rdpmc xsetbv xsaves xsaves64 xrstors xrstors64 '
        'invlpg invlpga invpcid invd wbinvd wbnoinvd swapgs rsm pconfig '
        'sysret sysretq sysexit sysexitq iret iretd iretq '
        'monitor mwait monitorx mwaitx umonitor umwait tpause '
        'wrussd wrussq setssbsy clrssbsy getsec encls enclu enclv '
        'vmcall vmlaunch vmresume vmxoff vmxon vmread vmwrite vmptrld vmptrst vmclear '
        'invept invvpid vmfunc vmrun vmload vmsave vmmcall stgi clgi skinit').split(), _I2),
    'rdrand': _I3, 'rdseed': _I3,
    'rdpid': _I4_PID,
    **dict.fromkeys('lds les lfs lgs lss ljmp lcall retf retfq wrfsbase wrgsbase'.split(), _I6),
    **dict.fromkeys('sysenter int into int1'.split(), _I7),
    'femms': _I13_3DNOW,
    **dict.fromkeys('extrq insertq movntss movntsd'.split(), _I13_SSE4A),
}

# Instructions that need a look at their operands or bytes.
_DIRECT, _NEAR_OR_FAR, _MOV, _POP, _RET = 'direct', 'near-or-far', 'mov', 'pop', 'ret'
_TRACE, _ABSENT, _XBEGIN = 'trace', 'absent', 'xbegin'
_QUIRK = 'quirk'
# SSSE3's MMX forms (0f 38 / 0f 3a maps): unicorn takes REX.R into their mm register number
_SSSE3_MMX = frozenset('pshufb phaddw phaddd phaddsw pmaddubsw phsubw phsubd phsubsw psignb '
                       'psignw psignd pmulhrsw pabsb pabsw pabsd palignr'.split())
TRACED = frozenset(('rdtsc', 'rdtscp', 'cpuid'))   # allowed, answered by the host: noted
# Extensions the fixed cpuid table does not list, in legacy encodings: Intel TSX's
# restricted transactional memory, SHA, GFNI, ADX, XSAVE.  Allowed, noted, and made invalid
# instructions (:func:`as_fixed_cpu`), as on the CPU that table describes; so is every
# VEX or EVEX encoding (:data:`VEX_OPCODES`, found by its bytes: :meth:`_Sweep.find_vex`)
RTM = frozenset(('xbegin', 'xabort', 'xend', 'xtest'))
EXTENSIONS = {      # of each legacy-encoded instruction of :data:`ABSENT`: its extension
    **dict.fromkeys(RTM, 'TSX'),
    **dict.fromkeys('sha1rnds4 sha1nexte sha1msg1 sha1msg2 sha256rnds2 sha256msg1 '
                    'sha256msg2'.split(), 'SHA'),
    **dict.fromkeys('gf2p8affineqb gf2p8affineinvqb gf2p8mulb'.split(), 'GFNI'),
    **dict.fromkeys(('adcx', 'adox'), 'ADX'),
    **dict.fromkeys('xgetbv xsave xsave64 xsaveopt xsaveopt64 xsavec xsavec64 xrstor '
                    'xrstor64'.split(), 'XSAVE')}
ABSENT = frozenset(EXTENSIONS)
VEX_OPCODES = b'\xc4\xc5\x62'   # VEX3, VEX2, EVEX: in 64-bit mode never les, lds, bound
# (VEX map, opcode) of VEX-encoded BMI1/BMI2 (andn, bls*, bextr; bzhi, pdep, pext, mulx,
# sarx, shlx, shrx; rorx) and of AVX-512's mask-register instructions (kand*...kmov*, kortest)
_VEX_BMI = frozenset(((2, 0xF2), (2, 0xF3), (2, 0xF5), (2, 0xF6), (2, 0xF7), (3, 0xF0)))
_VEX_MASK = frozenset((1, op) for op in (*range(0x41, 0x48), 0x4A, 0x4B, 0x90, 0x91, 0x92,
                                         0x93, 0x98, 0x99))
_CHECKED: dict[str, str] = {
    **dict.fromkeys(TRACED, _TRACE),
    **dict.fromkeys(('ja jae jb jbe je jne jg jge jl jle jo jno jp jnp js jns '
                     'jcxz jecxz jrcxz loop loope loopne').split(), _DIRECT),
    **dict.fromkeys(ABSENT, _ABSENT), 'xbegin': _XBEGIN,     # xbegin's target is checked too
    'jmp': _NEAR_OR_FAR, 'call': _NEAR_OR_FAR, 'mov': _MOV, 'pop': _POP, 'ret': _RET,
    **dict.fromkeys(('lahf sahf test cmpps cmppd cmpss cmpsd movhlps movlhps pcmpestri '
                     'pcmpestrm '
                     + ' '.join(_SSSE3_MMX)).split(), _QUIRK),
}

# After these, execution never falls through to the next byte.
_TERMINATORS = frozenset('jmp ljmp ret retf retfq ud0 ud1 ud2 hlt int3'.split())
_PREFIXES = frozenset(b'\x26\x2e\x36\x3e\x64\x65\x66\x67\xf0\xf2\xf3' + bytes(range(0x40, 0x50)))
_SREGS = frozenset('es cs ss ds fs gs'.split())
# opcode or prefix bytes that unicorn handles differently (I13), with what the rule says
_I13_MOV_REX_R = ('I13', 'mov r/m, imm (c6, c7) with REX.R: unicorn faults, the CPU ignores '
                        'REX.R there')
_ESCAPES = ((b'\x8f', _I13_XOP), (b'\x0f\x0f', _I13_3DNOW), (b'\xf0', _I13_LOCK),
            *((bytes([rex, op]), _I13_MOV_REX_R) for rex in b'\x44\x45\x46\x47\x4c\x4d\x4e\x4f'
              for op in (0xC6, 0xC7)))


@functools.cache
def _table(policy: Policy) -> dict[str, str | tuple[str, str]]:
    table: dict[str, str | tuple[str, str]] = {**_CHECKED, **_FORBIDDEN}
    if policy.rdtsc == 'reject':
        table.update(rdtsc=_I4_TSC, rdtscp=_I4_TSC)
    return table


# -- the sweep ------------------------------------------------------------------


class _Image:
    """Executable bytes as the guest will see them, and their instruction-start bits.

    ``origin`` is a multiple of 8; offsets into ``data`` are bit numbers.
    Only ``[lo, hi)`` holds code the caller vouches for.  ``open_end``: the
    page after the image may become executable (the heap arena, where
    ``jail`` makes code).  ``runs``: ``[lo, hi)`` offsets of each run of
    instructions decoded one after the other (none overlaps another of its run),
    for :meth:`shared`.
    """

    def __init__(self, origin: int, data: bytearray, lo: int, hi: int,
                 open_end: bool = True) -> None:
        self.origin, self.data, self.lo, self.hi = origin, data, lo, hi
        self.open_end = open_end
        self.view = memoryview(data)
        self.bits = bytearray((len(data) + 7) // 8)
        self.runs: list[list[int]] = []

    def decoded(self, lo: int, hi: int) -> None:
        """Note that the sweep decoded instructions one after the other from offset ``lo``
        to ``hi`` (a run that ``lo`` continues grows)."""
        if self.runs and self.runs[-1][1] == lo:
            self.runs[-1][1] = hi
        elif lo < hi:
            self.runs.append([lo, hi])

    def shared(self) -> list[list[int]]:
        """The ``[lo, hi)`` offsets, sorted and disjoint, that more than one run decoded:
        only there can two decoded instructions overlap."""
        shared: list[list[int]] = []
        reach = -1
        for lo, hi in sorted(self.runs):
            if lo < reach:
                if shared and lo <= shared[-1][1]:
                    shared[-1][1] = max(shared[-1][1], min(hi, reach))
                else:
                    shared.append([lo, min(hi, reach)])
            reach = max(reach, hi)
        return shared

    def is_start(self, addr: int) -> bool:
        o = addr - self.origin
        return 0 <= o < len(self.data) and bool(self.bits[o >> 3] >> (o & 7) & 1)

    def owner(self, p: int) -> int | None:
        """The offset of the decoded instruction whose opcode or prefix the byte at
        offset ``p`` is (back over prefix bytes only to an instruction start), or None:
        the bytes of a pattern found without decoding everything again."""
        data, bits = self.data, self.bits
        q = p
        while not bits[q >> 3] >> (q & 7) & 1 and q > 0 and p - q < _MAX_INSN \
                and data[q - 1] in _PREFIXES:
            q -= 1
        return q if bits[q >> 3] >> (q & 7) & 1 else None

    def start_before(self, addr: int) -> int | None:
        """The closest instruction start below ``addr`` (to name what a target hits)."""
        for a in range(addr - 1, max(addr - _MAX_INSN, self.origin) - 1, -1):
            if self.is_start(a):
                return a
        return None


class _Sweep:
    """One validation: decodes, marks instruction starts, collects violations."""

    def __init__(self, policy: Policy) -> None:
        from capstone import CS_ARCH_X86, CS_MODE_64, Cs  # only on a cache miss
        self.md = Cs(CS_ARCH_X86, CS_MODE_64)
        self.table = _table(policy)
        self.violations: list[Violation] = []
        self.first_omitted: Violation | None = None
        self.omitted = 0
        # direct branches, as two flat arrays: a huge program must not cost a tuple each
        self.sources, self.targets = array.array('Q'), array.array('Q')
        self.count = 0
        self.traced: set[str] = set()
        self.absent = array.array('Q')      # starts of instructions of absent extensions
        self.absent_sites: set[int] = set()     # where their ud2 goes (:meth:`check_absent`)

    def violate(self, rule: str, address: int, text: str) -> None:
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(Violation(rule, address, text))
            return
        if self.first_omitted is None:
            self.first_omitted = Violation(rule, address, text)
        self.omitted += 1

    def sweep_segment(self, img: _Image, start: int, end: int,
                      lim: int) -> tuple[int, str] | None:
        """:meth:`sweep` of a whole segment no section header describes (stripped): a
        run of zero bytes after a terminator is the linker's padding between what were
        sections (``.init``'s ``ret``, then zeros up to ``.text``), skipped to the next
        byte that is not zero.  Decoded, its ``00 00`` pairs (``add [rax], al``) would
        run on into the next section out of sync when their count is odd.  Skipped bytes
        are not instruction starts: nothing falls into them, and the guard refuses a
        jump there."""
        while True:
            last = self.sweep(img, start, end, lim, stop_at_padding=True)
            if last is None or last[0] >= end or last[1] not in _TERMINATORS:
                return last
            start = last[0]
            while start < end and img.data[start] == 0:
                start += 1
            if start >= end:
                return last

    def sweep(self, img: _Image, start: int, end: int, lim: int,
              stop_at_padding: bool = False) -> tuple[int, str] | None:
        """Decode offsets [start, end) of ``img``; the last instruction may run on to ``lim``.

        Returns (offset after the last instruction, its mnemonic), or None
        when the range ends in undecodable bytes.  ``stop_at_padding``: stop
        after a terminator followed by a zero byte (:meth:`sweep_segment`).
        """
        bits, origin, table, view = img.bits, img.origin, self.table, img.view
        off, last = start, None
        while off < end:
            _on_time()
            n = 0
            for insn in self.md.disasm_lite(view[off:lim], origin + off, _CHUNK):
                addr, size, mnem, ops = insn
                o = addr - origin
                if o >= end:
                    break
                n += 1
                bits[o >> 3] |= 1 << (o & 7)
                m = mnem.rpartition(' ')[2] if ' ' in mnem else mnem
                kind = table.get(m)
                # most instructions are a plain mov: look closer only at sreg, crN, drN
                if kind is not None and (kind is not _MOV or ops[2:3] == ','
                                         or 'cr' in ops or 'dr' in ops):
                    self.check(kind, img, o, insn)
                off, last = o + size, m
                if stop_at_padding and m in _TERMINATORS and off < end and not view[off]:
                    break
            else:
                self.count += n
                if n < _CHUNK and off < end:     # capstone stopped on a byte it cannot decode
                    self.undecodable(img, off)
                    off, last = off + 1, None
                continue
            self.count += n
            break
        img.decoded(start, off)
        return None if last is None else (off, last)

    def follow(self, img: _Image, off: int) -> None:
        """Decode the fall-through at ``off`` until a known start, a terminator or the end."""
        while off < len(img.data) and not img.is_start(img.origin + off):
            insn = self.decode_one(img, off)
            if insn is None:
                if not self.runs_off_the_end(img, off):
                    self.undecodable(img, off, ' (reached by falling off the end of a code '
                                               'range)')
                elif img.open_end:
                    self.violate('I1', img.origin + off,
                                 f'{img.data[off:].hex(" ")}: instruction cut off at the end '
                                 'of executable memory, where the heap arena starts; a page '
                                 'made executable there (jail) would supply its tail')
                return
            if self.accept(img, off, insn) in _TERMINATORS:
                return
            off += insn[1]

    def runs_off_the_end(self, img: _Image, off: int) -> bool:
        """True if the instruction at ``off`` is cut off by the end of executable memory.

        Unless the image is ``open_end``, fetching its tail faults, so nothing
        unvalidated can run.  (Honest code ending in ``syscall``, e.g. exit,
        falls into the zero padding and so reaches the end of the last page.)
        """
        tail = bytes(img.view[off:off + _MAX_INSN])
        if len(tail) == _MAX_INSN:
            return False
        insn = next(self.md.disasm_lite(tail.ljust(_MAX_INSN, b'\0'), 0, 1), None)
        return insn is not None and insn[1] > len(tail)

    def decode_one(self, img: _Image, off: int) -> tuple[int, int, str, str] | None:
        return next(self.md.disasm_lite(img.view[off:off + _MAX_INSN], img.origin + off, 1),
                    None)

    def accept(self, img: _Image, off: int, insn: tuple[int, int, str, str]) -> str:
        """Mark and check one instruction found outside the linear sweep; return its mnemonic."""
        img.bits[off >> 3] |= 1 << (off & 7)
        img.decoded(off, off + insn[1])
        self.count += 1
        mnem = insn[2]
        m = mnem.rpartition(' ')[2] if ' ' in mnem else mnem
        kind = self.table.get(m)
        if kind is not None:
            self.check(kind, img, off, insn)
        return m

    def undecodable(self, img: _Image, off: int, why: str = '') -> None:
        raw = img.data[off:off + 8].hex(' ')
        self.violate('I1', img.origin + off, f'(bad) {raw}: not a valid x86-64 instruction{why}')

    def check(self, kind: str | tuple[str, str], img: _Image, off: int,
              insn: tuple[int, int, str, str]) -> None:
        """Rules that need more than the mnemonic (or that always reject it)."""
        addr, size, mnem, ops = insn
        if kind == _ABSENT or kind == _XBEGIN:
            self.absent.append(addr)
            if kind == _ABSENT:
                return
        if isinstance(kind, tuple):
            self.violate(kind[0], addr, f'{_text(insn)}: {kind[1]}')
        elif kind == _TRACE:
            self.traced.add(mnem.rpartition(' ')[2])
        elif kind == _MOV:
            dst, _, src = ops.partition(', ')
            if dst in _SREGS:
                self.violate(_I6[0], addr, f'{_text(insn)}: {_I6[1]}')
            elif dst[:2] in ('cr', 'dr') or src[:2] in ('cr', 'dr'):
                self.violate(_I2[0], addr, f'{_text(insn)}: {_I2[1]}')
        elif kind == _POP:
            if ops in ('fs', 'gs'):
                self.violate(_I6[0], addr, f'{_text(insn)}: {_I6[1]}')
        elif kind == _QUIRK:
            why = _quirk(img.data[off:off + size], mnem, ops)
            if why:
                self.violate(_I13_MEANING, addr, f'{_text(insn)}: {why}')
        elif kind == _RET:
            if self.operand_size_prefix(img, off, size):
                self.violate('I1', addr, f'{_text(insn)}: operand-size prefix on a return '
                                         '(capstone and unicorn disagree on its length)')
        elif kind == _DIRECT or kind == _XBEGIN or ops[:1].isdigit():  # a direct target
            if self.operand_size_prefix(img, off, size):
                self.violate('I1', addr, f'{_text(insn)}: operand-size prefix on a relative '
                                         'branch (capstone and unicorn disagree on its length)')
            self.sources.append(addr)
            self.targets.append(int(ops, 0))
        elif self.far(img, off, size):
            self.violate(_I6[0], addr, f'{_text(insn)}: far transfer; {_I6[1]}')

    @staticmethod
    def operand_size_prefix(img: _Image, off: int, size: int) -> bool:
        for b in img.data[off:off + size]:
            if b == 0x66:
                return True
            if b not in _PREFIXES:
                return False
        return False

    @staticmethod
    def far(img: _Image, off: int, size: int) -> bool:
        """FF /3 and FF /5 are far call and far jmp (capstone prints them as call/jmp)."""
        raw = img.data[off:off + size]
        i = 0
        while i < len(raw) - 1 and raw[i] in _PREFIXES:
            i += 1
        return raw[i] == 0xFF and i + 1 < len(raw) and (raw[i + 1] >> 3 & 7) in (3, 5)

    def check_branches(self, images: list[_Image], outside: str) -> None:
        """I8: direct targets must be instruction starts the sweep decoded.

        Two exceptions.  Target 0 is an undefined weak symbol (``call 0``
        behind a null check; page 0 is never mapped).  A target that only
        skips prefix bytes of an instruction (glibc's ``je 1f; lock; 1:
        cmpxchg``) is decoded, checked and added to the boundary map, provided
        it ends where that instruction ends.
        """
        i = 0
        while i < len(self.targets):      # following a new start can find more branches
            source, target = self.sources[i], self.targets[i]
            i += 1
            if not i % _CHUNK:
                _on_time()
            img = next((im for im in images if im.lo <= target < im.hi), None)
            if target == 0 or img is not None and img.is_start(target):
                continue
            src_img = next(im for im in images if im.lo <= source < im.hi)
            text = _text(self.decode_one(src_img, source - src_img.origin))
            if img is None:
                self.violate('I8', source, f'{text}: target is outside {outside}')
                continue
            inside = img.start_before(target)
            whole = None if inside is None else self.decode_one(img, inside - img.origin)
            if whole is None or inside + whole[1] <= target:
                self.violate('I8', source, f'{text}: target {target:#x} is not an '
                                           'instruction start the sweep decoded')
            elif not self.prefix_skip(img, whole, target):
                self.violate('I8', source, f'{text}: target {target:#x} is inside the '
                                           f'instruction at {inside:#x}')

    def prefix_skip(self, img: _Image, whole: tuple[int, int, str, str], target: int) -> bool:
        """Accept ``target`` if it only skips prefixes of the instruction ``whole``."""
        start, off = whole[0] - img.origin, target - img.origin
        if any(b not in _PREFIXES for b in img.data[start:off]):
            return False
        rest = self.decode_one(img, off)
        if rest is None or off + rest[1] != start + whole[1]:
            return False
        end = off + rest[1]
        if self.accept(img, off, rest) not in _TERMINATORS \
                and not img.is_start(img.origin + end):
            self.follow(img, end)
        return True

    def check_escapes(self, img: _Image) -> None:
        """I13: find the bytes unicorn handles differently without decoding everything again.

        A byte at ``p`` is an instruction's opcode or prefix iff walking back
        from ``p`` over prefix bytes only meets an instruction start.  An
        ``8f`` that capstone decodes as anything but ``pop`` is XOP; a lock
        prefix needs a memory operand; REX.R before a ``mov`` of an immediate.
        """
        data = img.data
        for pattern, (rule, why) in _ESCAPES:
            p, flagged = data.find(pattern), None
            while p >= 0:
                q = img.owner(p)
                insn = self.decode_one(img, q) if q is not None else None
                if insn is not None and insn[0] != flagged and (
                        pattern == b'\x0f\x0f' or pattern == b'\x8f' and insn[2] != 'pop'
                        or pattern == b'\xf0' and '[' not in insn[3]
                        or pattern[1:] in (b'\xc6', b'\xc7') and insn[2] == 'mov'):
                    self.violate(rule, insn[0], f'{_text(insn)}: {why}')
                    flagged = insn[0]
                p = data.find(pattern, p + 1)

    def find_vex(self, img: _Image) -> None:
        """Note every VEX- or EVEX-encoded instruction the sweep decoded, by its bytes: an
        opcode byte of :data:`VEX_OPCODES` after any legacy prefixes and REX (found as
        :meth:`check_escapes` finds its bytes, without decoding again)."""
        data = img.data
        for opcode in VEX_OPCODES:
            p = data.find(opcode)
            while p >= 0:
                q = img.owner(p)
                if q is not None:
                    self.absent.append(img.origin + q)
                p = data.find(opcode, p + 1)

    def check_absent(self, images: list[_Image]) -> None:
        """I14: the ``ud2`` that replaces the first two opcode bytes of each instruction
        of an absent extension (:func:`as_fixed_cpu`) must change no other instruction
        the sweep decoded: one that overlaps them out of sync (code ranges that cut each
        other's instructions) would run as bytes nobody validated.  A start that only
        skips prefixes of the same instruction decodes to a prefixed ``ud2``.  Two
        decoded instructions overlap only where two runs of the sweep do
        (:meth:`_Image.shared`): only there is anything decoded again.  At most
        :data:`MAX_ABSENT` (the CPython image's glibc has ~15,000, most in AVX string
        functions behind ``cpuid``): their addresses are kept."""
        for img in images:
            self.find_vex(img)
        starts = sorted(set(self.absent))
        if len(starts) > MAX_ABSENT:
            self.violate('I14', starts[MAX_ABSENT], f'more than {MAX_ABSENT} instructions '
                                                    'of extensions the fixed CPU lacks (AVX, '
                                                    'TSX, SHA, GFNI, ADX, XSAVE)')
            return
        origins = [img.origin for img in images]       # sorted: _images, validate_code
        sites = {}
        for start in starts:
            img = images[bisect.bisect_right(origins, start) - 1]
            site = start - img.origin
            while img.data[site] in _PREFIXES:
                site += 1
            sites[start] = (img, site + img.origin)
        shared = {id(img): img.shared() for img in images}
        for start, (img, site) in sites.items():
            if _meets(shared[id(img)], site - img.origin):
                self.check_overlap(start, img, site, sites)
            self.absent_sites.add(site)

    def check_overlap(self, start: int, img: _Image, site: int,
                      sites: dict[int, tuple[_Image, int]]) -> None:
        """I14 where runs of the sweep overlap (:meth:`_Image.shared`): decode every
        start in the 15 bytes before ``site`` and at ``site + 1``, to see whether one
        runs into the ud2.  Elsewhere the only instruction there is the one at
        ``start`` (or one that only skips its prefixes)."""
        for t in range(max(site - _MAX_INSN + 1, img.origin), site + 2):
            if not img.is_start(t) or sites.get(t, (None, None))[1] == site:
                continue
            other = self.decode_one(img, t - img.origin)
            if other is None or t + other[1] > site:
                insn = self.decode_one(img, start - img.origin)
                self.violate('I14', start, f'{_text(insn)}: instruction of an extension '
                                           'the fixed CPU lacks, overlapping the '
                                           f'instruction at {t:#x}; the ud2 that '
                                           'replaces it would change that one')
                return

    def check_preceding(self, before: bytes, starts: Sequence[int], code: bytes,
                        base: int) -> None:
        """Instructions validated before ``base`` must end there, not run on into ``code``.

        Each start is followed through its fall-through (a translated block
        decodes on), so an unmarked instruction after a marked one counts too.
        """
        window, origin = before + code[:_MAX_INSN], base - len(before)
        seen: set[int] = set()
        for start in starts:
            addr = start
            while origin <= addr < base and addr not in seen:
                seen.add(addr)
                insn = next(self.md.disasm_lite(window[addr - origin:], addr, 1), None)
                if insn is None or addr + insn[1] > base:
                    raw = window[addr - origin:addr - origin + _MAX_INSN].hex(' ')
                    self.violate('I1', addr, f'{raw}: the instruction at {addr:#x}, before '
                                             f'this code, would run on into it at {base:#x}')
                    break
                if insn[2].rpartition(' ')[2] in _TERMINATORS:
                    break
                addr += insn[1]

    def verdict(self, images: list[_Image]) -> Verdict:
        violations = sorted(self.violations, key=lambda v: (v.address, v.rule))
        if self.first_omitted is not None:
            first = self.first_omitted
            violations.append(Violation('more', first.address,
                                        f'{self.omitted} more violations not listed '
                                        f'(the next: {first.rule} {first.text})'))
        return Verdict(ok=not violations, violations=violations,
                       boundaries=[(img.origin, bytes(img.bits)) for img in images],
                       instructions=self.count, traced=frozenset(self.traced),
                       absent=tuple(sorted(self.absent_sites)))


def _quirk(raw: bytes, mnem: str, ops: str) -> str | None:
    """Why unicorn would give another result than the CPU for these bytes (which both
    decode to the same length), or None.  Found by ``tests/semantic_diff.py``; no
    compiler or assembler emits them."""
    i = 0
    while raw[i] in _PREFIXES:
        i += 1
    prefixes, opcode = raw[:i], raw[i:]
    rex = prefixes[-1] if prefixes and prefixes[-1] & 0xF0 == 0x40 else 0
    m = mnem.rpartition(' ')[2]
    if m in ('lahf', 'sahf'):
        return 'with a REX prefix unicorn uses spl instead of ah' if rex else None
    if m == 'test':
        if opcode[0] in (0xF6, 0xF7) and opcode[1] >> 3 & 7 == 1:
            return 'test /1 (the undocumented alias of /0): unicorn faults, the CPU runs it'
        return None
    if m in ('cmpps', 'cmppd', 'cmpss', 'cmpsd'):
        if ops.startswith('xmm'):     # not the string cmpsd; capstone names imm < 8 cmpeq...
            return ('SSE compare with a predicate above 7: unicorn faults, the CPU uses the '
                    'low 3 bits')
        return None
    if m in ('movhlps', 'movlhps'):
        if 0x66 in prefixes:
            return ('operand-size prefix: the CPU faults (movlpd/movhpd need a memory '
                    'operand), unicorn runs it as ' + m)
        return None
    if m in ('pcmpestri', 'pcmpestrm'):
        return ('REX.W (64-bit lengths): unicorn takes the absolute value of -2**63 wrong'
                if rex & 8 else None)
    if rex & 4 and opcode[:2] in (b'\x0f\x38', b'\x0f\x3a') and 'xmm' not in ops:
        return 'REX.R on an MMX register: unicorn reads it as part of the register number'
    return None


def _meets(shared: list[list[int]], site: int) -> bool:
    """Whether the two bytes of a ud2 at offset ``site`` meet a region of ``shared``."""
    i = bisect.bisect_right(shared, [site + 1, 1 << 64]) - 1
    return i >= 0 and shared[i][1] > site


def _text(insn: tuple[int, int, str, str]) -> str:
    return f'{insn[2]} {insn[3]}'.rstrip()


def _images(program: Program) -> list[_Image]:
    """One image per run of contiguous executable pages, laid out as the executor maps them.

    Only the highest segment's end borders memory that can become executable:
    the heap arena starts there, and ``jail`` can make it executable if it is
    :data:`JAIL_ALIGN` aligned.  Other runs end at data or unmapped pages.
    """
    runs: list[list] = []
    for seg in sorted((s for s in program.segments if s.flags & PF_X), key=lambda s: s.vaddr):
        lo, hi = seg.vaddr & ~(_PAGE - 1), (seg.end + _PAGE - 1) & ~(_PAGE - 1)
        if runs and runs[-1][1] == lo:
            runs[-1][1] = hi
            runs[-1][2].append(seg)
        else:
            runs.append([lo, hi, [seg]])
    images = []
    for lo, hi, segs in runs:
        data = bytearray(hi - lo)
        for seg in segs:
            data[seg.vaddr - lo:seg.vaddr - lo + len(seg.data)] = seg.data
        open_end = hi == program.image_end() and hi % JAIL_ALIGN == 0
        images.append(_Image(lo, data, lo, hi, open_end=open_end))
    return images


def _validate(program: Program, policy: Policy) -> Verdict:
    sweep = _Sweep(policy)
    images = _images(program)
    fall_through = []
    for rng in program.code:
        img = next(i for i in images if i.lo <= rng.start < i.hi)
        start, end = rng.start - img.origin, rng.end - img.origin
        lim = min(end + _MAX_INSN - 1, len(img.data))
        last = (sweep.sweep if rng.sections else sweep.sweep_segment)(img, start, end, lim)
        if last is not None and last[1] not in _TERMINATORS:
            fall_through.append((img, last[0]))
    for img, off in fall_through:
        sweep.follow(img, off)
    if not any(img.is_start(program.entry) for img in images):
        sweep.violate('E5', program.entry,
                      'entry point is not an instruction start the sweep decoded')
    sweep.check_branches(images, 'the executable segments')
    for img in images:
        sweep.check_escapes(img)
    sweep.check_absent(images)
    return sweep.verdict(images)


def validate_code(code: bytes, base: int, policy: Policy = Policy(), *,
                  before: bytes = b'', before_starts: Sequence[int] = ()) -> Verdict:
    """Validate one buffer of code to be mapped at ``base`` (e.g. JIT output to be jailed).

    Every byte must decode, the last instruction must end at the end of the
    buffer, and direct branches must stay inside it.  Nothing is assumed about
    the bytes after it: the caller maps whole buffers so that what follows is
    either not executable or another validated buffer.  ``before`` are the
    executable bytes just below ``base`` (up to 14) and ``before_starts`` the
    validated instruction starts among them: none may run on into the buffer.
    """
    origin = base & ~7
    pad = base - origin
    img = _Image(origin, bytearray(pad) + code, base, base + len(code))
    sweep = _Sweep(policy)
    sweep.sweep(img, pad, len(img.data), len(img.data))
    sweep.check_branches([img], 'the buffer')
    sweep.check_escapes(img)
    sweep.check_absent([img])
    sweep.check_preceding(before[-(_MAX_INSN - 1):], before_starts, code, base)
    return sweep.verdict([img])


def as_fixed_cpu(program: Program, verdict: Verdict) -> Program:
    """``program`` as both engines run it, on the CPU the fixed cpuid table describes:
    ``ud2`` over the first two opcode bytes of each instruction of an extension that
    CPU lacks (:attr:`Verdict.absent`; see this module's docstring), an invalid
    instruction.  No decoded instruction starts in the bytes after it (I14).  Its
    ``sha256`` stays the file's, so it is marked ``patched``: :func:`validate` refuses
    it (its sweep would find none of them, and cache that verdict under the file's
    key: later runs would not be patched).
    """
    if not verdict.absent:
        return program
    sites = verdict.absent
    code = sorted((s for s in program.segments if s.executable and s.data),
                  key=lambda s: s.vaddr)
    patched, covered, carried = {}, 0, {}   # carried: a straddling site's second byte
    for seg in code:
        end = seg.vaddr + len(seg.data)
        lo = bisect.bisect_left(sites, seg.vaddr)
        hi = bisect.bisect_left(sites, end - 1)             # both bytes in it
        straddles = hi < len(sites) and sites[hi] == end - 1     # its last byte starts one
        carry = carried.pop(seg.vaddr, None)
        if lo == hi and not straddles and carry is None:
            continue
        out = bytearray(seg.data)
        for a in sites[lo:hi]:
            out[a - seg.vaddr:a - seg.vaddr + 2] = UD2
        if carry is not None:
            out[0] = carry
        if straddles:                   # the next segment, adjacent, holds its second byte
            out[-1] = UD2[0]
            carried[end] = UD2[1]
            hi += 1
        covered += hi - lo
        patched[seg.vaddr] = bytes(out)
    if carried or covered != len(sites):
        raise ValueError("a site of an instruction the fixed CPU lacks has no code for "
                         "its ud2: not this program's verdict")
    return replace(program, patched=True, segments=tuple(
        replace(s, data=patched[s.vaddr]) if s.executable and s.vaddr in patched else s
        for s in program.segments))


def absent_at(program: Program, verdict: Verdict, rip: int) -> bool:
    """Whether ``rip`` starts an instruction :func:`as_fixed_cpu` made ``ud2`` (a site
    of :attr:`Verdict.absent`, behind prefixes only): a fault there is the program
    using an extension the fixed CPU lacks."""
    i = bisect.bisect_left(verdict.absent, rip)
    if i == len(verdict.absent) or verdict.absent[i] - rip >= _MAX_INSN:
        return False
    site = verdict.absent[i]
    seg = next((s for s in program.segments
                if s.executable and s.vaddr <= rip and site < s.vaddr + len(s.data)), None)
    return seg is not None and all(b in _PREFIXES
                                   for b in seg.data[rip - seg.vaddr:site - seg.vaddr])


def absent_extensions(program: Program, verdict: Verdict) -> collections.Counter[str]:
    """How many of the program's sites of :attr:`Verdict.absent` each extension has:
    ``AVX`` (VEX), ``AVX-512`` (EVEX, mask registers), ``BMI`` (VEX-encoded), ``TSX``,
    ``SHA``, ``GFNI``, ``ADX``, ``XSAVE``: what ``zvm validate`` tells of a program
    built with -march=native, which is valid but faults where it reaches one."""
    counts: collections.Counter[str] = collections.Counter()
    if not verdict.absent:
        return counts
    images, bits, md = _images(program), dict(verdict.boundaries), None
    origins, filled = [im.origin for im in images], set()
    for site in verdict.absent:
        img = images[bisect.bisect_right(origins, site) - 1]
        o = site - img.origin
        op, b1, b2, b3 = img.data[o:o + 4].ljust(4, b'\0')
        if op == 0x62:
            counts['AVX-512'] += 1
        elif op in (0xC4, 0xC5):
            key = (b1 & 0x1F, b3) if op == 0xC4 else (1, b2)
            counts['BMI' if key in _VEX_BMI else 'AVX-512' if key in _VEX_MASK else 'AVX'] += 1
        else:       # legacy encoding: decoded from its start (mandatory prefixes: 66 0f 38 f6)
            if md is None:
                from capstone import CS_ARCH_X86, CS_MODE_64, Cs
                md = Cs(CS_ARCH_X86, CS_MODE_64)
            if img.origin not in filled:        # its instruction starts, once an image
                img.bits = bytearray(bits.get(img.origin, b''))
                filled.add(img.origin)
            start = img.owner(o)
            insn = None if start is None else next(
                md.disasm_lite(img.view[start:start + _MAX_INSN], site), None)
            counts[EXTENSIONS.get(insn[2].rpartition(' ')[2] if insn else '', 'other')] += 1
    return counts


# -- the cache ------------------------------------------------------------------


def cache_key(sha256: str, policy: Policy) -> str:
    return hashlib.sha256((sha256 + VALIDATOR_VERSION + policy.key()).encode()).hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get('ZVM_CACHE_DIR') or Path.home() / '.cache' / 'zvm' / 'verdicts')


class VerdictCache:
    """Verdicts by key in memory and, unless ``dir`` is None, one JSON file per key.

    The disk cache is an optimisation only: a file that cannot be read or
    parsed is a miss, and a failed write is ignored.  Files are written to a
    temporary name and renamed, so readers never see half a verdict.  Whoever
    can write the directory can make programs pass: it must be private to the
    sandbox's user.

    The directory is bounded: after a write that takes it beyond
    ``max_files`` verdicts or ``max_bytes`` bytes, the least recently used
    verdicts (by mtime, which a hit refreshes) are removed until it is back
    under 90% of both, so anyone who can submit programs cannot fill the disk.
    """

    MEMORY_ENTRIES = 256
    MAX_FILES = 4096
    MAX_BYTES = 256 << 20

    def __init__(self, dir: str | os.PathLike | None | EllipsisType = ...,
                 max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> None:
        self.dir = default_cache_dir() if dir is ... else None if dir is None else Path(dir)
        self.max_files, self.max_bytes = max_files, max_bytes
        self._memory: collections.OrderedDict[str, Verdict] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Verdict | None:
        with self._lock:
            verdict = self._memory.get(key)
            if verdict is not None:
                self._memory.move_to_end(key)
        if verdict is None and self.dir is not None:
            verdict = self._read(key)
            if verdict is not None:
                self._remember(key, verdict)
        if verdict is None:
            return None
        return replace(verdict, cached=True, violations=list(verdict.violations),
                       boundaries=list(verdict.boundaries))

    def put(self, key: str, verdict: Verdict) -> None:
        verdict = replace(verdict, cached=False, violations=list(verdict.violations),
                          boundaries=list(verdict.boundaries))
        self._remember(key, verdict)
        if self.dir is not None:
            self._write(key, verdict)

    @contextlib.contextmanager
    def validating(self, key: str):
        """Held while this process validates the program of ``key``: another one
        that wants its verdict meanwhile waits for it (``flock`` on a file of the
        directory) and then reads it instead of validating too.  The pool's
        workers all met the same new program at once (a batch's first nodes):
        six validated it together, 0.1 s of CPU each for a small C program.  The
        lock file goes afterwards; one that went under a waiter only lets two
        validate at once."""
        if self.dir is None:
            yield
            return
        path = self.dir / f'{key}.lock'
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:                 # the disk cache is an optimisation only
            yield
            return
        try:
            with contextlib.suppress(OSError):      # no lock here: validate anyway
                _lock(fd)
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(fd)

    def _remember(self, key: str, verdict: Verdict) -> None:
        with self._lock:
            self._memory[key] = verdict
            self._memory.move_to_end(key)
            while len(self._memory) > self.MEMORY_ENTRIES:
                self._memory.popitem(last=False)

    def _path(self, key: str) -> Path:
        return self.dir / f'{key}.json'

    def _read(self, key: str) -> Verdict | None:
        try:
            with open(self._path(key), 'rb') as f:
                verdict = _decode(json.load(f), key)
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None             # damaged: a miss (a bitmap not a string, JSON too deep)
        with contextlib.suppress(OSError):
            os.utime(self._path(key))           # recently used: evicted last
        return verdict

    def _write(self, key: str, verdict: Verdict) -> None:
        tmp = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f'.{key[:16]}.', suffix='.tmp')
            with os.fdopen(fd, 'w') as f:
                json.dump(_encode(key, verdict), f)
            os.replace(tmp, self._path(key))
        except OSError:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            return
        self._evict()

    def _evict(self) -> None:
        """Remove the least recently used verdicts if the directory is over its bounds."""
        entries = []
        try:
            with os.scandir(self.dir) as it:
                for entry in it:
                    if entry.name.endswith('.json'):
                        with contextlib.suppress(OSError):
                            st = entry.stat()
                            entries.append((st.st_mtime_ns, st.st_size, entry.path))
        except OSError:
            return
        total = sum(size for _, size, _ in entries)
        if len(entries) <= self.max_files and total <= self.max_bytes:
            return
        entries.sort()
        count = len(entries)
        for _, size, path in entries:
            if count <= self.max_files * 9 // 10 and total <= self.max_bytes * 9 // 10:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
            count, total = count - 1, total - size


def _encode(key: str, v: Verdict) -> dict:
    return {'key': key, 'ok': v.ok, 'instructions': v.instructions, 'traced': sorted(v.traced),
            'absent': list(v.absent),
            'violations': [[x.rule, x.address, x.text] for x in v.violations],
            'boundaries': [[base, base64.b64encode(bits).decode()] for base, bits in v.boundaries]}


def _decode(obj: dict, key: str) -> Verdict:
    """The inverse of :func:`_encode`; raises ValueError/TypeError/KeyError on anything else."""
    if obj['key'] != key or not isinstance(obj['ok'], bool) \
            or not isinstance(obj['instructions'], int):
        raise ValueError('not this verdict')
    violations = []
    for rule, address, text in obj['violations']:
        if not (isinstance(rule, str) and isinstance(address, int) and isinstance(text, str)):
            raise TypeError('bad violation')
        violations.append(Violation(rule, address, text))
    boundaries = []
    for base, bits in obj['boundaries']:
        if not isinstance(base, int) or base % 8:
            raise ValueError('bad boundary base')
        boundaries.append((base, base64.b64decode(bits.encode(), validate=True)))
    if obj['ok'] == bool(violations):
        raise ValueError('inconsistent verdict')
    traced = frozenset(obj['traced'])
    if not traced <= TRACED:
        raise ValueError('bad traced instructions')
    absent = tuple(obj['absent'])
    if not (set(map(type, absent)) <= {int} and (not absent or absent[0] > 0)
            and all(map(operator.lt, absent, absent[1:]))):       # ints, increasing
        raise ValueError('bad sites of absent instructions')
    if not _in_code(absent, boundaries):
        raise ValueError('sites of absent instructions outside the code')
    return Verdict(ok=obj['ok'], violations=violations, boundaries=boundaries,
                   instructions=obj['instructions'], traced=traced, absent=absent)


def _in_code(sites: Sequence[int], boundaries: list[tuple[int, bytes]]) -> bool:
    """Whether each site's ud2 lies in the verdict's bitmap, an instruction start at most
    :data:`_MAX_INSN` - 1 bytes (its prefixes) before it: a cache file damaged there
    is a miss, not an :func:`as_fixed_cpu` that fails on every run of the program.
    ``sites`` increase (:func:`_decode` checked).  A site belongs to the bitmap of the
    highest base at or below it."""
    ordered = sorted(boundaries)
    if sites and (not ordered or sites[0] < ordered[0][0]):
        return False
    for i, (base, bits) in enumerate(ordered):
        lo = bisect.bisect_left(sites, base)
        hi = bisect.bisect_left(sites, ordered[i + 1][0]) if i + 1 < len(ordered) \
            else len(sites)
        if lo < hi and not _started(sites[lo:hi], base, bits):
            return False
    return True


def _started(sites: Sequence[int], base: int, bits: bytes) -> bool:
    """:func:`_in_code` for the increasing ``sites`` of one bitmap, on whole ints rather
    than site by site: the python3 system image's interpreter has 14,000 sites, 7 ms
    one by one on every load of its verdict from disk, 1.5 ms so."""
    first, last = sites[0] - base, sites[-1] - base
    if last + 1 >= 8 * len(bits):               # the ud2's second byte past the bitmap
        return False
    skip = max(first - _MAX_INSN + 1, 0) >> 3   # bytes below every site's window
    span = bits[skip:(last >> 3) + 1]
    reach = int.from_bytes(span, 'little')      # bit k: a start in k - width + 1 .. k
    width = 1
    while width < _MAX_INSN:
        step = min(width, _MAX_INSN - width)
        reach |= reach << step
        width += step
    marks, origin = bytearray(len(span)), base + 8 * skip
    for site in sites:
        o = site - origin
        marks[o >> 3] |= 1 << (o & 7)
    want = int.from_bytes(marks, 'little')
    return want & reach == want


def _lock(fd: int) -> None:
    """``flock`` the validation lock, within the deadline of :func:`within` if any."""
    if _DEADLINE.get() is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            _on_time()
            time.sleep(_LOCK_PAUSE)


@functools.cache
def default_cache() -> VerdictCache:
    """The process-wide cache (in :func:`default_cache_dir`)."""
    return VerdictCache()


def validate(program: Program, policy: Policy = Policy(),
             cache: VerdictCache | None = None) -> Verdict:
    """Validate ``program`` under ``policy``, answering from ``cache`` when it can."""
    if program.patched:
        raise ValueError('a program patched to run (as_fixed_cpu) is not the file its '
                         'sha256 names: validate the file as loaded')
    key = cache_key(program.sha256, policy)
    if cache is None:
        return _validate(program, policy)
    hit = cache.get(key)
    if hit is not None:
        return hit
    with cache.validating(key):
        hit = cache.get(key)            # validated while this one waited
        if hit is not None:
            return hit
        verdict = _validate(program, policy)
        cache.put(key, verdict)
    return verdict

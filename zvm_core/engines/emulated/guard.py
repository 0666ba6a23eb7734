"""ctypes side of the C runtime guard (``_guard.c``).

The guard is what makes the static validation mean something at run time:
every translated block must start on an instruction boundary the validator
decoded, and every block's code bytes are charged to a deterministic budget
(fuel).
It also answers ``syscall`` (by calling back into Python with the arguments
already read), ``cpuid`` (from ``zvm_core.cpu.CPUID_TABLE``) and ``rdtsc``/``rdtscp``
(a virtual counter: fuel used so far).  The x87 instructions that unicorn
computes through host doubles run on the host FPU instead (:data:`X87_HOST`),
rflags are set as the CPU leaves them around the instructions where unicorn
does not (:data:`FLAG_FIXES`: popf, fcomi), and a 32-bit ``cmpxchg`` leaves RAX
and its register destination as the CPU does (:func:`cmpxchg_sites`), each hooked
at the addresses where the validated code has one.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable

from unicorn import unicorn_py3
from unicorn.unicorn_const import UC_HOOK_BLOCK, UC_HOOK_CODE, UC_HOOK_INSN
from unicorn.x86_const import (
    UC_X86_INS_CPUID,
    UC_X86_INS_RDTSC,
    UC_X86_INS_RDTSCP,
    UC_X86_INS_SYSCALL,
    UC_X86_REG_EFLAGS,
    UC_X86_REG_FP0,
    UC_X86_REG_FPCW,
    UC_X86_REG_FPSW,
    UC_X86_REG_FPTAG,
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

from zvm_core import _guard
from zvm_core.cpu import CPUID_TABLE
from zvm_core.validator import _PREFIXES  # legacy prefixes and REX

STOP_NONE, STOP_BOUNDARY, STOP_FUEL, STOP_HOST, STOP_SITES = range(5)

_ARG_REGS = (UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX,
             UC_X86_REG_R10, UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_RIP, UC_X86_REG_EFLAGS,
             UC_X86_REG_RBX, UC_X86_REG_RCX, UC_X86_REG_R11)

# Second bytes of the ``D9 xx`` x87 instructions that QEMU 5.0 (unicorn 2)
# computes in double precision or through the host's libm: fprem and fprem1
# (musl's fmodl, so every strtod), f2xm1, fyl2x, fyl2xp1, fpatan (expl, logl,
# atan2l ...), fptan, fsin, fcos, fsincos, and fscale/fxtract with them.  The
# host FPU gives what a native run gives (fprem, fscale, fxtract are exact;
# the transcendental ones are Intel's and AMD's own approximations).
X87_HOST = frozenset((0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF8, 0xF9, 0xFB, 0xFD, 0xFE, 0xFF))
_X87_REGS = (UC_X86_REG_FPCW, UC_X86_REG_FPSW, UC_X86_REG_FPTAG,
             *range(UC_X86_REG_FP0, UC_X86_REG_FP0 + 8), UC_X86_REG_RIP)


class CpuidEntry(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in
                ('leaf', 'subleaf', 'any_subleaf', 'eax', 'ebx', 'ecx', 'edx', 'pad')]


class GuardState(ctypes.Structure):
    """Mirror of ``struct zg_state``."""

    _fields_ = [
        ('bitmap', ctypes.c_void_p),
        ('bitmap_limit', ctypes.c_uint64),
        ('fuel', ctypes.c_int64),
        ('used', ctypes.c_uint64),
        ('emu_stop', ctypes.c_void_p),
        ('reg_read_batch', ctypes.c_void_p),
        ('reg_write', ctypes.c_void_p),
        ('syscall', ctypes.py_object),      # called by C (zg_syscall: call_syscall)
        ('uc', ctypes.c_void_p),
        ('reg_ids', ctypes.c_int32 * len(_ARG_REGS)),
        ('stop', ctypes.c_uint32),
        ('stop_addr', ctypes.c_uint64),
        ('args', ctypes.c_uint64 * 7),
        ('ret', ctypes.c_int64),
        ('syscalls', ctypes.c_uint64),
        ('cpuid_count', ctypes.c_uint32),
        ('pad', ctypes.c_uint32),
        ('cpuid', CpuidEntry * 32),
        ('cx_next', ctypes.c_uint64),
        ('cx_rax', ctypes.c_uint64),
        ('cx_dest', ctypes.c_uint64),
        ('cx_dest_id', ctypes.c_int32),
        ('cx_pad', ctypes.c_uint32),
        ('lazy', ctypes.c_void_p),
        ('lazy_lo', ctypes.c_uint64),
        ('lazy_len', ctypes.c_uint64),
        ('lazy_stop_end', ctypes.c_uint64),
    ]


def _opcode(first: int, seconds: Iterable[int] | None = None) -> tuple[int, bytes | None]:
    """An opcode for :func:`_sites`: its first byte and a table of the second bytes it
    may have (None: it is one byte)."""
    if seconds is None:
        return first, None
    wanted = set(seconds)
    return first, bytes(b in wanted for b in range(256))


_X87 = _opcode(0xD9, X87_HOST)
_IF, _IOPL, _AF, _SF, _OF = 0x200, 0x3000, 0x10, 0x80, 0x800
# rflags fixes: (opcode bytes, hook before the instruction or after it, clear, set).
# fcomi, fucomi, fcomip, fucomip (DB/DF E8..F7): the CPU sets ZF, PF, CF and clears
# OF, SF, AF; QEMU keeps those three, so they are cleared before it runs.  popf
# (9D, any size): at CPL 3 with IOPL 0 the CPU keeps IF and IOPL (VM, VIF, VIP and
# RF it keeps, or clears, in QEMU too); unicorn runs the guest at CPL 0 and pops
# them, so they are set back before the next instruction, which is idempotent
# wherever else it is reached from: no other instruction the validator lets
# through changes them.
FLAG_FIXES = {
    'fcomi': ((_opcode(0xDB, range(0xE8, 0xF8)), _opcode(0xDF, range(0xE8, 0xF8))), False,
              _OF | _SF | _AF, 0),
    'popf': ((_opcode(0x9D),), True, _IOPL, _IF),
}
_PREFIX_TABLE = bytes(b in _PREFIXES for b in range(256))


def _sites(opcode: tuple[int, bytes | None], base: int, code: bytes,
           bitmap) -> dict[int, int]:
    """{address: the opcode's offset in ``code``} of each validated instruction in
    ``code`` (at ``base``) with ``opcode`` (:func:`_opcode`), prefixes included (a byte
    that merely looks like one inside another instruction is not a validated start).
    An instruction may have more than one start: a branch past its prefixes (glibc's
    ``je 1f; lock; 1: cmpxchg``) is one too, and unicorn calls a code hook only at the
    one it runs from.  In C (``_guard.sites``): CPython's code has ~11,000 bytes to
    look at for a handful of sites, 8 ms a machine in Python."""
    return _guard.sites(code, base, bitmap, _PREFIX_TABLE, *opcode)


def x87_sites(base: int, code: bytes, bitmap) -> dict[int, int]:
    """{address: opcode} of every validated instruction in ``code`` (at ``base``)
    that :data:`X87_HOST` names."""
    return {a: code[m + 1] for a, m in _sites(_X87, base, code, bitmap).items()}


def flag_sites(base: int, code: bytes, bitmap) -> dict[int, tuple[str, int]]:
    """{instruction address: (kind, address to hook)} of each validated instruction
    in ``code`` (at ``base``) that :data:`FLAG_FIXES` names."""
    return {a: (kind, base + m + 1 + (opcode[1] is not None) if after else a)
            for kind, (opcodes, after, _, _) in FLAG_FIXES.items() for opcode in opcodes
            for a, m in _sites(opcode, base, code, bitmap).items()}


# cmpxchg r/m, r (0F B1): 32-bit without 66 or REX.W.  The CPU writes EAX (zero-extending
# RAX) only when the comparison fails and a register destination only when it succeeds;
# QEMU writes both every time.  A destination of EAX is always equal: nothing to fix.
_CMPXCHG = _opcode(0x0F, (0xB1,))
_BLOCK_LINES = (4096 + 64) // 64      # 64-byte lines a translated block can span
_GPRS = (UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX, UC_X86_REG_RSP,
         UC_X86_REG_RBP, UC_X86_REG_RSI, UC_X86_REG_RDI, UC_X86_REG_R8, UC_X86_REG_R9,
         UC_X86_REG_R10, UC_X86_REG_R11, UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14,
         UC_X86_REG_R15)


def cmpxchg_sites(base: int, code: bytes, bitmap) -> dict[int, tuple[int, int]]:
    """{address: (the next instruction's address, the destination register's unicorn
    id or -1 for memory)} of each validated 32-bit ``cmpxchg`` in ``code`` (at
    ``base``) whose result unicorn leaves otherwise than the CPU."""
    found = {}
    for a, m in _sites(_CMPXCHG, base, code, bitmap).items():
        prefixes, j = code[a - base:m], m + 2
        rex = prefixes[-1] if prefixes and prefixes[-1] & 0xF0 == 0x40 else 0
        if rex & 8 or 0x66 in prefixes or j >= len(code):
            continue                    # 64- or 16-bit (or cut off: never validated)
        modrm = code[j]
        mod, rm = modrm >> 6, modrm & 7
        if mod == 3:
            dest = _GPRS[rm | (rex & 1) << 3]
            if dest != UC_X86_REG_RAX:
                found[a] = base + j + 1, dest
            continue
        sib = code[j + 1] if rm == 4 and j + 1 < len(code) else None
        size = 1 + (sib is not None)    # ModRM, SIB, then the displacement:
        if mod == 1:
            size += 1
        elif mod == 2 or rm == 5 or sib is not None and sib & 7 == 5:
            size += 4                   # rip-relative, or a SIB without a base
        found[a] = base + j + size, -1
    return found


class CmpxchgSite(ctypes.Structure):
    """Mirror of ``struct zg_cmpxchg``."""

    _fields_ = [('state', ctypes.c_void_p), ('next', ctypes.c_uint64),
                ('dest', ctypes.c_int32), ('pad', ctypes.c_uint32)]


class X87Site(ctypes.Structure):
    """Mirror of ``struct zg_x87``."""

    _fields_ = [('state', ctypes.c_void_p), ('reg_ids', ctypes.c_int32 * len(_X87_REGS)),
                ('op', ctypes.c_uint32)]


class FlagFix(ctypes.Structure):
    """Mirror of ``struct zg_flags``."""

    _fields_ = [('state', ctypes.c_void_p), ('reg_id', ctypes.c_int32),
                ('pad', ctypes.c_uint32), ('clear', ctypes.c_uint64), ('set', ctypes.c_uint64)]


_lib = ctypes.CDLL(_guard.__file__)
_lib.zg_state_size.restype = _lib.zg_x87_size.restype = ctypes.c_size_t
_lib.zg_flags_size.restype = _lib.zg_cmpxchg_size.restype = ctypes.c_size_t
if _lib.zg_state_size() != ctypes.sizeof(GuardState) or \
        _lib.zg_x87_size() != ctypes.sizeof(X87Site) or \
        _lib.zg_flags_size() != ctypes.sizeof(FlagFix) or \
        _lib.zg_cmpxchg_size() != ctypes.sizeof(CmpxchgSite):
    raise ImportError('zvm_core._guard does not match zvm_core.engines.emulated.guard; '
                      'rebuild the package')

_uclib = unicorn_py3.unicorn.uclib


def _fn(lib: ctypes.CDLL, name: str) -> int:
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value


_HOOKS = (
    (UC_HOOK_BLOCK, 'zg_block', None),
    (UC_HOOK_INSN, 'zg_syscall', UC_X86_INS_SYSCALL),
    (UC_HOOK_INSN, 'zg_cpuid', UC_X86_INS_CPUID),
    (UC_HOOK_INSN, 'zg_rdtsc', UC_X86_INS_RDTSC),
    (UC_HOOK_INSN, 'zg_rdtscp', UC_X86_INS_RDTSCP),
)


def _hook(uc, htype: int, name: str, ud: int, begin: int, end: int,
          insn: int | None = None) -> int:
    handle = ctypes.c_size_t()
    extra = () if insn is None else (ctypes.c_int(insn),)
    err = _uclib.uc_hook_add(uc._uch, ctypes.byref(handle), htype,
                             ctypes.c_void_p(_fn(_lib, name)), ctypes.c_void_p(ud),
                             ctypes.c_uint64(begin), ctypes.c_uint64(end), *extra)
    if err:
        raise RuntimeError(f'uc_hook_add({name}) failed: {err}')
    return handle.value


class Guard:
    """The C hooks installed on one unicorn instance, and their shared state."""

    def __init__(self, uc, bitmap_address: int, bitmap_limit: int,
                 on_syscall: Callable[[], int]) -> None:
        st = self.state = GuardState()
        st.bitmap = bitmap_address
        st.bitmap_limit = bitmap_limit
        st.emu_stop = _fn(_uclib, 'uc_emu_stop')
        st.reg_read_batch = _fn(_uclib, 'uc_reg_read_batch')
        st.reg_write = _fn(_uclib, 'uc_reg_write')
        st.syscall = on_syscall     # the structure keeps it alive
        st.uc = uc._uch
        self._address = ctypes.addressof(st)
        st.reg_ids[:] = _ARG_REGS
        for i, (leaf, sub, eax, ebx, ecx, edx) in enumerate(CPUID_TABLE):
            st.cpuid[i] = CpuidEntry(leaf, sub or 0, sub is None, eax, ebx, ecx, edx, 0)
        st.cpuid_count = len(CPUID_TABLE)
        self.args = st.args
        self._x87: dict[int, tuple[X87Site, int]] = {}      # site (C holds it), hook
        self._sites: dict[int, tuple[None, int]] = {}       # rflags fixes' hooks
        self._cmpxchg: dict[int, tuple[CmpxchgSite, int]] = {}     # (C holds it), hook
        # 64-byte line -> its cmpxchg sites not hooked yet, and their map (st.lazy)
        self._pending: dict[int, dict[int, tuple[int, int]]] = {}
        self._lazy = (ctypes.c_uint8 * 0)()
        self._fixes = {kind: FlagFix(ctypes.addressof(st), UC_X86_REG_EFLAGS, 0, clear, set_)
                       for kind, (_, _, clear, set_) in FLAG_FIXES.items()}   # C holds them
        for htype, name, insn in _HOOKS:
            _hook(uc, htype, name, ctypes.addressof(st), 1, 0, insn)

    def watch(self, uc, base: int, code: bytes, bitmap, lazy: bool = False) -> None:
        """Hook the instructions of validated ``code`` (at ``base``) that unicorn runs
        otherwise than the CPU (:func:`flag_sites`, :func:`x87_sites`,
        :func:`cmpxchg_sites`: hooked to the instruction after each).

        ``lazy``: the cmpxchg sites of a line when a block there first runs
        (:meth:`resume`).  Each code hook costs every instruction unicorn
        translates a look at it (CPython has ~260 sites: its cold start took
        twice as long with all hooked), and most sites never run."""
        for addr, (kind, at) in flag_sites(base, code, bitmap).items():
            if addr not in self._sites:
                self._sites[addr] = None, self._add(uc, 'zg_flags', self._fixes[kind], at)
        for addr, op in x87_sites(base, code, bitmap).items():
            if addr not in self._x87:
                site = X87Site(ctypes.addressof(self.state), tuple(_X87_REGS), op)
                self._x87[addr] = site, self._add(uc, 'zg_x87', site, addr)
        sites = cmpxchg_sites(base, code, bitmap)
        if not lazy:
            self._hook_cmpxchg(uc, sites, flush=False)
            return
        for addr, site in sites.items():
            self._pending.setdefault(addr >> 6, {})[addr] = site
        self._map_pending()

    def _map_pending(self) -> None:
        """zg_block's map of the lines of :attr:`_pending`, with a block's size of lines
        (QEMU's are under a page and an instruction) either side: a block starting
        before those lines is checked in one compare, its lines without a bound."""
        st, lines = self.state, self._pending
        if not lines:
            st.lazy_len = 0
            return
        lo, hi = min(lines) - _BLOCK_LINES, max(lines) + 1
        self._lazy = (ctypes.c_uint8 * ((hi + _BLOCK_LINES - lo + 7) // 8))()
        for line in lines:
            self._lazy[line - lo >> 3] |= 1 << (line - lo & 7)
        st.lazy, st.lazy_lo, st.lazy_len = ctypes.addressof(self._lazy), lo << 6, (hi - lo) << 6

    def resume(self, uc) -> int | None:
        """Where the run goes on after zg_block stopped it at a block on a line with
        cmpxchg sites not hooked yet (now hooked, the code there to be translated
        again), or None if it did not."""
        st = self.state
        if st.stop != STOP_SITES:
            return None
        at = st.stop_addr
        for line in range(at >> 6, (st.lazy_stop_end - 1 >> 6) + 1):
            self._hook_cmpxchg(uc, self._pending.pop(line, {}), flush=True)
        self._map_pending()
        st.stop, st.stop_addr = STOP_NONE, 0
        return at

    def settle(self, uc) -> None:
        """Hook the cmpxchg sites still waiting for a block on their line, and end
        zg_block's look at each block for them: what a machine run again (a template)
        did not reach in its first run it seldom reaches later, while the look costs
        every block (CPython's warm start-up 6%)."""
        for sites in self._pending.values():
            self._hook_cmpxchg(uc, sites, flush=True)
        self._pending.clear()
        self._map_pending()

    def _hook_cmpxchg(self, uc, sites: dict[int, tuple[int, int]], flush: bool) -> None:
        """One hook for each cmpxchg of ``sites``, from its first start to the instruction
        after it (``flush``: and drop what unicorn translated of them)."""
        first: dict[int, tuple[int, int]] = {}
        for addr, (after, dest) in sorted(sites.items(), reverse=True):
            first[after] = addr, dest
        for after, (addr, dest) in first.items():
            if addr in self._cmpxchg:
                continue
            site = CmpxchgSite(ctypes.addressof(self.state), after, dest, 0)
            self._cmpxchg[addr] = site, _hook(uc, UC_HOOK_CODE, 'zg_cmpxchg',
                                              ctypes.addressof(site), addr, after)
            if flush:
                uc.ctl_remove_cache(addr, after + 1)

    @staticmethod
    def _add(uc, name: str, ud: ctypes.Structure, addr: int) -> int:
        return _hook(uc, UC_HOOK_CODE, name, ctypes.addressof(ud), addr, addr)

    def forget(self, uc, start: int, end: int) -> None:
        """Drop the hooks of the instructions in [start, end) (code that was taken back)."""
        for sites in (self._sites, self._x87, self._cmpxchg):
            for addr in [a for a in sites if start <= a < end]:
                err = _uclib.uc_hook_del(uc._uch, ctypes.c_size_t(sites.pop(addr)[1]))
                if err:
                    raise RuntimeError(f'uc_hook_del failed: {err}')

    def reg_write(self, reg: int, value: int) -> None:
        """Set one register (a 64-bit value): unicorn's ``Uc.reg_write`` costs ~4 us."""
        _guard.reg_write(self._address, reg, value)

    def arm(self, fuel: int) -> None:
        """Reset the per-run state before a run."""
        _guard.arm(self._address, min(fuel, (1 << 63) - 1))    # more: unlimited in practice

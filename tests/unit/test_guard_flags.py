"""The guard's rflags fixes (``zg_flags``): popf cannot change IF or IOPL, fcomi clears
OF, SF and AF, as on the CPU at CPL 3, and only on the sites validated code has."""

from __future__ import annotations

import ctypes

from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn.x86_const import UC_X86_REG_EFLAGS, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RSP

from zvm_core.engines.emulated import guard
from zvm_core.validator import validate_code

BASE, STACK = 0x100000, 0x200000
CODE = bytes.fromhex(
    '6a00'          # push 0
    '9d'            # popfq: IF cleared, under unicorn
    'd9fe'          # fsin (an x87 site right after: both hooks run)
    '9c59'          # pushfq; pop rcx
    'd9e8d9ee'      # fld1; fldz
    'b07f0401'      # mov al, 0x7f; add al, 1: OF, SF, AF set
    '66dbf1'        # fcomi st, st(1), with a prefix
    '9c5a'          # pushfq; pop rdx
)


def _bitmap(code: bytes) -> ctypes.Array:
    bitmap = (ctypes.c_uint8 * ((BASE + 0x1000) // 8))()
    verdict = validate_code(code, BASE)
    assert verdict.ok, verdict.violations
    for base, bits in verdict.boundaries:
        bitmap[base // 8:base // 8 + len(bits)] = bits
    return bitmap


def run_guarded(uc: Uc, code: bytes, forget: bool = False) -> None:
    """Run ``code`` at BASE to its end, its sites hooked by the guard (or forgotten)."""
    uc.mem_map(BASE, 0x1000)
    uc.mem_write(BASE, code)
    bitmap = _bitmap(code)
    g = guard.Guard(uc, ctypes.addressof(bitmap), BASE + 0x1000, lambda: 0)
    g.watch(uc, BASE, code, bitmap)
    if forget:
        g.forget(uc, BASE, BASE + len(code))
    g.arm(1 << 20)
    uc.emu_start(BASE, BASE + len(code))


def _run(forget: bool = False) -> tuple[int, int]:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(STACK, 0x1000)
    uc.reg_write(UC_X86_REG_RSP, STACK + 0x800)
    uc.reg_write(UC_X86_REG_EFLAGS, 0x202)
    run_guarded(uc, CODE, forget)
    return uc.reg_read(UC_X86_REG_RCX), uc.reg_read(UC_X86_REG_RDX)


def test_sites_are_validated_instructions_with_their_prefixes():
    code = bytes.fromhex('b89d000000' '48' '9d' '66dbf1' 'dfe9' 'dff0' 'db2d00000000')
    # mov eax, 0x9d; popfq (REX.W); fcomi (66); fucomip; fcomip; fld tbyte [rip]
    sites = guard.flag_sites(BASE, code, _bitmap(code))
    assert sites == {BASE + 5: ('popf', BASE + 7), BASE + 7: ('fcomi', BASE + 7),
                     BASE + 10: ('fcomi', BASE + 10), BASE + 12: ('fcomi', BASE + 12)}


def test_popf_keeps_if_and_fcomi_clears_of_sf_af():
    assert _run() == (0x202, 0x203)             # IF kept; 0 < 1: CF alone


def test_forgotten_sites_are_unicorn_s():
    assert _run(forget=True) == (0x2, 0x893)    # IF popped; OF, SF, AF kept

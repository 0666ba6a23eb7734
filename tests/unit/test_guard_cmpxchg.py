"""The guard's 32-bit cmpxchg fix (``zg_cmpxchg``): RAX keeps its upper half when the
comparison succeeds, a register destination when it fails, as on the CPU (unicorn
zero-extends both every time), and only on the sites validated code has."""

from __future__ import annotations

import ctypes

from test_guard_flags import BASE, _bitmap, run_guarded
from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn.x86_const import (
    UC_X86_REG_R12,
    UC_X86_REG_RAX,
    UC_X86_REG_RBX,
    UC_X86_REG_RCX,
    UC_X86_REG_RDX,
    UC_X86_REG_RSI,
)

from zvm_core.engines.emulated import guard

DATA = 0x200000
A, C = 0xA1A1A1A100000005, 0xC1C1C1C100000007      # RAX and RCX, upper halves set
CODE = bytes.fromhex(
    'f00fb113'      # lock cmpxchg [rbx], edx: [rbx] is 5, equal: RAX is left
    '4889c6'        # mov rsi, rax
    '0fb1d1'        # cmpxchg ecx, edx: 5 is not 7: EAX = 7, RCX is left
    '90'            # nop (the instruction after one is where its fix goes)
)


def _registers(uc: Uc) -> None:
    uc.mem_map(DATA, 0x1000)
    uc.mem_write(DATA, (5).to_bytes(4, 'little'))
    for reg, value in ((UC_X86_REG_RAX, A), (UC_X86_REG_RBX, DATA), (UC_X86_REG_RCX, C),
                       (UC_X86_REG_RDX, 0xD1D1D1D100000009)):
        uc.reg_write(reg, value)


def _run(forget: bool = False) -> tuple[int, int, int]:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    _registers(uc)
    run_guarded(uc, CODE, forget)
    return uc.reg_read(UC_X86_REG_RSI), uc.reg_read(UC_X86_REG_RCX), uc.reg_read(UC_X86_REG_RAX)


def test_sites_are_32_bit_cmpxchg_with_their_length_and_destination():
    code = bytes.fromhex(
        '0fb113'                # +0  cmpxchg [rbx], edx
        '0fb15308'              # +3  [rbx + 8]
        '0fb19300010000'        # +7  [rbx + 0x100]
        '0fb1148b'              # +14 [rbx + rcx*4]
        '0fb1148d00000000'      # +18 [rcx*4 + 0]: a SIB without a base
        '0fb11500000000'        # +26 [rip + 0]
        'f00fb1548b04'          # +33 lock, [rbx + rcx*4 + 4]
        '440fb123'              # +39 [rbx], r12d
        '0fb1ca'                # +43 cmpxchg edx, ecx
        '410fb1d4'              # +46 cmpxchg r12d, edx
        '0fb1c8'                # +50 cmpxchg eax, ecx: always equal, nothing to fix
        '660fb113'              # +53 16-bit
        '480fb113'              # +57 64-bit
        '7401f00fb113'          # +61 je past the lock prefix: two starts
        '0fb6c1'                # +67 movzx eax, cl (0f b1 only inside it? no: 0f b6)
    )
    sites = guard.cmpxchg_sites(BASE, code, _bitmap(code))
    mem = -1
    assert sites == {
        BASE: (BASE + 3, mem), BASE + 3: (BASE + 7, mem), BASE + 7: (BASE + 14, mem),
        BASE + 14: (BASE + 18, mem), BASE + 18: (BASE + 26, mem),
        BASE + 26: (BASE + 33, mem), BASE + 33: (BASE + 39, mem),
        BASE + 39: (BASE + 43, mem), BASE + 43: (BASE + 46, UC_X86_REG_RDX),
        BASE + 46: (BASE + 50, UC_X86_REG_R12),
        BASE + 63: (BASE + 67, mem), BASE + 64: (BASE + 67, mem)}


def test_a_byte_pair_inside_another_instruction_is_no_site():
    code = bytes.fromhex('b80fb11390' '90')     # mov eax, 0x9013b10f; nop
    assert guard.cmpxchg_sites(BASE, code, _bitmap(code)) == {}


def test_cmpxchg_leaves_rax_and_its_destination_as_the_cpu_does():
    assert _run() == (A, C, 7)


def test_forgotten_sites_are_unicorn_s():
    assert _run(forget=True) == (5, 7, 7)       # both upper halves zeroed


def test_a_program_s_sites_are_hooked_when_their_line_first_runs():
    """``watch(lazy=True)``: no hook until zg_block meets a block on a line with a site;
    then the run stops before that block (not charged), the line's sites are hooked and
    it goes on there (``resume``).  A site that never runs is hooked only when the
    machine runs again (``settle``)."""
    far = BASE + 0x100                              # cmpxchg [rbx], edx: never run
    code = CODE + b'\x90' * (far - BASE - len(CODE)) + bytes.fromhex('0fb113') + b'\x90'
    used = []
    for lazy in (False, True):
        uc = Uc(UC_ARCH_X86, UC_MODE_64)
        _registers(uc)
        uc.mem_map(BASE, 0x1000)
        uc.mem_write(BASE, code)
        bitmap = _bitmap(code)
        g = guard.Guard(uc, ctypes.addressof(bitmap), BASE + 0x1000, lambda: 0)
        g.watch(uc, BASE, code, bitmap, lazy=lazy)
        g.arm(1 << 20)
        assert bool(g._cmpxchg) is not lazy
        begin, stops = BASE, 0
        while begin is not None:
            uc.emu_start(begin, BASE + len(CODE))
            begin = g.resume(uc)
            stops += begin is not None
        assert (uc.reg_read(UC_X86_REG_RSI), uc.reg_read(UC_X86_REG_RCX)) == (A, C)
        assert stops == lazy
        assert (far in g._cmpxchg) is not lazy and (far >> 6 in g._pending) is lazy
        used.append(g.state.used)
    assert used[0] == used[1] == len(CODE)
    g.settle(uc)            # run again (a template): the rest hooked, zg_block's look ends
    assert far in g._cmpxchg and not g._pending and g.state.lazy_len == 0

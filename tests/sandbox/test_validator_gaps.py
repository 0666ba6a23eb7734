"""Issue 15 items 1 and 2, end to end: what the validator's decoder saw is what runs.

- ``xop_rdrand``: rdrand hidden behind an AMD XOP cover that unicorn decodes
  as ``pop`` (tests/programs/xop_rdrand.S).  ``zvm validate`` refuses it,
  naming rule I13 and the cover's address, and ``zvm run`` runs nothing.
- ``jail`` next to the program's last executable page: code jailed where the
  heap arena starts must not supply the tail of an instruction cut off at the
  end of the program, even under a verdict that let the program through (as
  the validator before issue 15 did).
- a jailed buffer's transactional instructions become ``ud2``, as the program's.
"""

from __future__ import annotations

import dataclasses
import errno
import re

from elftools.elf.elffile import ELFFile

from zvm_core.build.toolchain import build_static
from zvm_core.elf import load_program
from zvm_core.engines.emulated.machine import Machine
from zvm_core.executor import Limits
from zvm_core.memory import PAGE
from zvm_core.validator import validate


def test_xop_cover_is_refused_with_rule_and_address(guest, zvm):
    prog = guest('xop_rdrand')
    with open(prog, 'rb') as f:
        cover = ELFFile(f).get_section_by_name('.symtab').get_symbol_by_name('cover')[0]
    res = zvm.validate(prog)
    assert res.returncode == 1, res
    out = res.stdout.decode()
    assert re.search(rf'^  I13 {cover["st_value"]:#x} vpmacssww .*XOP', out, re.M), out
    run = zvm.run(prog)
    assert run.status == 'validation' and run.stdout == b'', run
    assert run.accounting['fuel'] == 0
    assert [v['rule'] for v in run.report['validation']['violations']] == ['I13']


CUT_OFF = """\
    .globl _start
    .text
_start:
    mov $60, %eax
    xor %edi, %edi
    syscall
    .skip 0xf000 - 2 - (. - _start), 0x90
    .byte {tail}
"""


def _machine(tmp_path, tail: str) -> Machine:
    """A program whose code ends at 0x410000, where the heap arena starts, run under a
    verdict that let it through whatever its last bytes are."""
    src = tmp_path / f'cut_{tail.replace(", ", "_")}.S'
    src.write_text(CUT_OFF.format(tail=tail))
    program = load_program(build_static(src, tmp_path, 'gcc', ()))
    verdict = dataclasses.replace(validate(program), ok=True, violations=[])
    return Machine(program, verdict, Limits(memory=64 << 20))


def test_jail_checks_the_code_before_it(tmp_path):
    code = bytes(8) + b'\xc3' + b'\xf4' * (PAGE - 9)   # an immediate's tail, then ret
    cut = _machine(tmp_path, '0x48, 0xb8')              # movabs rax, imm64: cut off
    try:
        arena = cut.arena.start
        assert arena == 0x410000
        cut.mem.write(arena, code)
        assert cut.jail.jail(arena, PAGE) == -errno.EPERM
        assert not cut.jail.pages
        cut.mem.write(arena + 0x10000, code)          # not next to the program: fine
        assert cut.jail.jail(arena + 0x10000, PAGE) == 0
    finally:
        cut.close()
    whole = _machine(tmp_path, '0x90, 0xc3')           # nop; ret: ends at the arena
    try:
        whole.mem.write(whole.arena.start, code)
        assert whole.jail.jail(whole.arena.start, PAGE) == 0
    finally:
        whole.close()


def test_jailed_transactional_instructions_become_ud2(tmp_path):
    """As in the program's code (validator.as_fixed_cpu): unicorn would run a jailed
    xbegin as a mov.  A buffer the guest made read-only is patched all the same."""
    from zvm_core.memory import PROT_R
    code = bytes.fromhex('0f01d6' 'c7f8 00000000' 'c3')     # xtest; xbegin +0; ret
    code += b'\xf4' * (PAGE - len(code))
    machine = _machine(tmp_path, '0x90, 0xc3')
    try:
        for buf in (machine.arena.start + 0x10000, machine.arena.start + 0x20000):
            machine.mem.write(buf, code)
            if buf == machine.arena.start + 0x20000:
                machine.mem.protect(buf, buf + PAGE, PROT_R)
            assert machine.jail.jail(buf, PAGE) == 0
            assert machine.mem.read(buf, 10) == bytes.fromhex('0f0bd6' '0f0b 00000000' 'c3')
            assert machine.mem.read(buf + 10, PAGE - 10) == code[10:]
    finally:
        machine.close()

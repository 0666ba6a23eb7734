"""The native guest's seccomp filter (``zvm_core.engines.native.seccomp.program``),
run here by a small classic-BPF interpreter on made-up calls: what the kernel
performs by itself, what goes to the supervisor."""

from __future__ import annotations

import struct

import pytest

from zvm_core.engines.native import seccomp
from zvm_core.engines.native.loader import LOADER_BASE
from zvm_core.memory import MANIFEST_PAGE

GUEST_IP, LOADER_IP = 0x401000, LOADER_BASE + 0x1234
MANIFEST, REGION = MANIFEST_PAGE, 0x10000


def verdict(nr: int, args=(0,) * 6, ip: int = LOADER_IP,
            arch: int = seccomp.AUDIT_ARCH_X86_64, template: bool = False) -> int:
    """What the filter (a template's children's with ``template``, else a spawned
    loader's) returns for the call (struct seccomp_data as the kernel fills it)."""
    data = struct.pack('<iIQ6Q', nr, arch, ip, *args, *(0,) * (6 - len(args)))
    acc, pc, prog = 0, 0, seccomp.program(template=template)
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == 0x20:                    # BPF_LD | BPF_W | BPF_ABS
            acc = struct.unpack_from('<I', data, k)[0]
        elif code == 0x15:                  # BPF_JMP | BPF_JEQ | BPF_K
            pc += jt if acc == k else jf
        elif code == 0x06:                  # BPF_RET | BPF_K
            return k
        else:
            raise AssertionError(f'instruction {code:#x} not interpreted here')


ALLOW, NOTIFY, KILL = seccomp.RET_ALLOW, seccomp.RET_USER_NOTIF, seccomp.RET_KILL_PROCESS


@pytest.mark.parametrize(('nr', 'args', 'ip', 'expected'), [
    (seccomp.NR_SENDMSG, (seccomp.CTL_FD, 1, 0), LOADER_IP, ALLOW),
    (seccomp.NR_CLOSE, (seccomp.CTL_FD,), LOADER_IP, ALLOW),
    (seccomp.NR_CLOSE, (seccomp.CTL_FD,), GUEST_IP, NOTIFY),
    (seccomp.NR_SENDMSG, (4, 1, 0), LOADER_IP, NOTIFY),
    # the loader's pauses between tries of its listener's sendmsg (ETOOMANYREFS)
    (seccomp.NR_NANOSLEEP, (0x7e0000001000, 0), LOADER_IP, ALLOW),
    (seccomp.NR_NANOSLEEP, (0x7e0000001000, 0x5000), LOADER_IP, NOTIFY),     # a remainder
    (seccomp.NR_NANOSLEEP, (0x7e0000001000, 1 << 32), LOADER_IP, NOTIFY),
    (seccomp.NR_NANOSLEEP, (0x5000, 0), GUEST_IP, NOTIFY),                   # the guest's
    # that pause resumed after a stop signal (SIGSTOP, a freezer)
    (seccomp.NR_RESTART_SYSCALL, (), LOADER_IP, ALLOW),
    (seccomp.NR_RESTART_SYSCALL, (), GUEST_IP, NOTIFY),
    (39, (), LOADER_IP, NOTIFY)])
@pytest.mark.parametrize('template', [False, True])
def test_what_the_kernel_performs_by_itself(nr, args, ip, expected, template) -> None:
    """The same in both filters, a spawned loader's and a template's children's."""
    assert verdict(nr, args, ip, template=template) == expected


@pytest.mark.parametrize(('args', 'ip', 'expected'), [
    ((MANIFEST, REGION, 1), LOADER_IP, ALLOW),
    ((MANIFEST, REGION, 1), GUEST_IP, NOTIFY),
    ((MANIFEST, REGION, 3), LOADER_IP, NOTIFY),         # writable
    ((MANIFEST, REGION, 1 | 1 << 32), LOADER_IP, NOTIFY),
    ((MANIFEST, REGION, 0), LOADER_IP, NOTIFY),
    ((MANIFEST | 1 << 32, REGION, 1), LOADER_IP, NOTIFY),
    ((MANIFEST - 0x1000, REGION, 1), LOADER_IP, NOTIFY),
    ((MANIFEST, REGION + 0x1000, 1), LOADER_IP, NOTIFY),
    ((MANIFEST, REGION | 1 << 32, 1), LOADER_IP, NOTIFY),
    ((0x401000, 0x1000, 1), LOADER_IP, NOTIFY)])
def test_a_template_childs_manifest_mprotect(args, ip, expected) -> None:
    """A template's child makes its user manifest read-only after its gate: that call
    alone, every argument whole (64 bits), from the loader's pages."""
    assert verdict(seccomp.NR_MPROTECT, args, ip, template=True) == expected


def test_a_spawned_loaders_filter_lets_no_mprotect_through() -> None:
    """A spawned loader maps the manifest as its guest has it: a probe's unreadable,
    which that call through the loader's ``syscall`` would make readable."""
    assert verdict(seccomp.NR_MPROTECT, (MANIFEST, REGION, 1), LOADER_IP) == NOTIFY


def test_another_architecture_is_killed() -> None:
    assert verdict(1, arch=0x40000003) == KILL        # AUDIT_ARCH_I386


def cache_steps(nr: int, arch: int, template: bool) -> tuple[int, bool | None]:
    """The kernel's emulation of the filter for its action cache (``seccomp_is_const_allow``,
    run for every call number of each architecture as a filter is installed): the
    instructions it ran, and whether the call is always allowed (None: it gave up at a
    load of anything but the number or architecture, which it cannot know)."""
    acc, pc, prog, steps = 0, 0, seccomp.program(template=template), 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        steps += 1
        if code == 0x20:
            if k not in (0, 4):
                return steps, None
            acc = nr if k == 0 else arch
        elif code == 0x15:
            pc += jt if acc == k else jf
        elif code == 0x06:
            return steps, k == ALLOW


@pytest.mark.parametrize('template', [False, True])
@pytest.mark.parametrize('arch', [seccomp.AUDIT_ARCH_X86_64, 0x40000003])
def test_the_kernels_cache_emulation_stops_at_the_first_instruction(arch, template) -> None:
    """The filter always allows no call (each decision reads an argument or the address):
    the kernel's emulation of it for every call number, as each guest process installs
    it, is for nothing, and it stops at its first instruction, a load of the address."""
    assert {cache_steps(nr, arch, template) for nr in range(512)} == {(1, None)}

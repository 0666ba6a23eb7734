"""``cpuid`` natively: CPUID faulting, answered from the emulator's fixed table.

Where the CPU can make ``cpuid`` fault at user level (Intel's CPUID
faulting; the kernel's ``cpuid_fault`` flag, ``arch_prctl(ARCH_SET_CPUID,
0)``), the loader turns it on before the filter, which then refuses
``ARCH_SET_CPUID`` to the guest.  Every ``cpuid`` the guest executes raises
a general-protection fault (``SIGSEGV``, ``SI_KERNEL``), as ``rdtsc`` does
under ``PR_SET_TSC``, and the same tracer answers it (``tsc.py``): ``eax``,
``ebx``, ``ecx``, ``edx`` from :data:`zvm_core.cpu.CPUID_TABLE` for the
leaf in ``eax`` and subleaf in ``ecx`` (zeros for a leaf it does not list),
exactly the emulator guard's answer, and ``rip`` past the instruction.

A program with a ``cpuid`` the validator decoded (``Verdict.traced``) is
traced; in any other program a ``cpuid`` -- one reached by
jumping into the middle of an instruction -- faults, and the run ends with
status ``fault``: the host's answer is never seen.  Where the CPU has no
CPUID faulting (:func:`unsupported` says so, and ``zvm info``), ``cpuid``
natively is the host CPU's (doc/sandbox.md).
"""

from __future__ import annotations

import functools

from zvm_core.cpu import CPUID_TABLE

CPUID = b'\x0f\xa2'
RAX, RBX, RCX, RDX = 10, 5, 11, 12      # struct user_regs_struct (sys/user.h)
_MASK = 0xFFFFFFFF


@functools.cache
def unsupported() -> str | None:
    """Why ``cpuid`` cannot fault on this host (None when it can): the flag the
    kernel sets exactly when ``ARCH_SET_CPUID`` works."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = next((line for line in f if line.startswith('flags')), '')
    except OSError as e:
        return f'cannot read /proc/cpuinfo: {e.strerror}'
    if 'cpuid_fault' not in flags.split():
        return 'the CPU (or its hypervisor) has no CPUID faulting: cpuid is the host\'s'
    return None


def answer(leaf: int, subleaf: int) -> tuple[int, int, int, int]:
    """``eax, ebx, ecx, edx`` for ``cpuid`` (the guard's ``zg_cpuid``)."""
    leaf, subleaf = leaf & _MASK, subleaf & _MASK
    for entry, sub, eax, ebx, ecx, edx in CPUID_TABLE:
        if entry == leaf and (sub is None or sub == subleaf):
            return eax, ebx, ecx, edx
    return 0, 0, 0, 0


def emulate(regs) -> None:
    """Answer the ``cpuid`` at ``regs``' rip in ``regs`` (a ``user_regs_struct``
    as unsigned longs); the caller moves rip past it and writes them back."""
    regs[RAX], regs[RBX], regs[RCX], regs[RDX] = answer(regs[RAX], regs[RCX])

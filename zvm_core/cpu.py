"""The fixed CPU the guest sees, whichever engine runs it.

The emulated engine's guard answers ``cpuid`` from :data:`CPUID_TABLE`, and
both engines give its leaf 1 EDX as the auxiliary vector's ``AT_HWCAP``.
"""

from __future__ import annotations

# Fixed CPU identity (leaf, subleaf or None for any, eax, ebx, ecx, edx).  Bump
# CPUID_VERSION when it changes: guests may take different code paths.
CPUID_VERSION = '1'
CPUID_TABLE: tuple[tuple[int, int | None, int, int, int, int], ...] = (
    # max leaf 7, "GenuineIntel"
    (0x0, None, 0x7, 0x756E6547, 0x6C65746E, 0x49656E69),
    # family 6 model 0x3c; SSE3 SSSE3 CX16 SSE4.1 SSE4.2 POPCNT (no AVX, RDRAND,
    # OSXSAVE); FPU TSC CX8 CMOV CLFSH MMX FXSR SSE SSE2
    (0x1, None, 0x000306C3, 0x00000800, 0x00982201, 0x07888111),
    (0x7, None, 0, 0, 0, 0),  # no AVX2, BMI, ERMS, SHA ...
    (0x80000000, None, 0x80000008, 0, 0, 0),
    (0x80000001, None, 0, 0, 0x00000001, 0x20100800),  # LAHF; SYSCALL NX LM
    # brand string "zvm virtual x86-64 cpu"
    (0x80000002, None, 0x206D767A, 0x74726976, 0x206C6175, 0x2D363878),
    (0x80000003, None, 0x63203436, 0x00007570, 0, 0),
    (0x80000004, None, 0, 0, 0, 0),
    (0x80000008, None, 0x00003030, 0, 0, 0),  # 48-bit virtual/physical
)

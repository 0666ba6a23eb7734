/* initstate: the CPU state the process starts in, field by field.
 *
 * Built with -Wl,-eprobe_entry: probe_entry runs before musl's _start, saves
 * every register, the flags, the FXSAVE image (x87 and SSE state) and the
 * FS/GS bases (arch_prctl), puts back what it used and jumps to _start.
 * main prints one "name value" line per field, so the sandbox can be compared
 * with the same binary run natively (tests/sandbox/test_cpu_state.py).  With
 * an argument it then leaves every one of those registers changed when it
 * exits: the next run of a reused machine must not start with them. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

uint64_t probe_regs[16];          /* rax rbx rcx rdx rsi rdi rbp rsp r8..r15 */
uint64_t probe_flags, probe_fsbase, probe_gsbase;
uint16_t probe_sel[6];            /* cs ss ds es fs gs */
uint8_t probe_fx[512] __attribute__((aligned(16)));

__asm__(
    ".text\n.globl probe_entry\nprobe_entry:\n"
    "  mov %rax, probe_regs+0(%rip)\n  mov %rbx, probe_regs+8(%rip)\n"
    "  mov %rcx, probe_regs+16(%rip)\n  mov %rdx, probe_regs+24(%rip)\n"
    "  mov %rsi, probe_regs+32(%rip)\n  mov %rdi, probe_regs+40(%rip)\n"
    "  mov %rbp, probe_regs+48(%rip)\n  mov %rsp, probe_regs+56(%rip)\n"
    "  mov %r8, probe_regs+64(%rip)\n  mov %r9, probe_regs+72(%rip)\n"
    "  mov %r10, probe_regs+80(%rip)\n  mov %r11, probe_regs+88(%rip)\n"
    "  mov %r12, probe_regs+96(%rip)\n  mov %r13, probe_regs+104(%rip)\n"
    "  mov %r14, probe_regs+112(%rip)\n  mov %r15, probe_regs+120(%rip)\n"
    "  pushfq\n  pop probe_flags(%rip)\n"
    "  fxsave probe_fx(%rip)\n"
    "  mov %cs, probe_sel+0(%rip)\n  mov %ss, probe_sel+2(%rip)\n"
    "  mov %ds, probe_sel+4(%rip)\n  mov %es, probe_sel+6(%rip)\n"
    "  mov %fs, probe_sel+8(%rip)\n  mov %gs, probe_sel+10(%rip)\n"
    "  mov $158, %eax\n  mov $0x1003, %edi\n  lea probe_fsbase(%rip), %rsi\n  syscall\n"
    "  mov $158, %eax\n  mov $0x1004, %edi\n  lea probe_gsbase(%rip), %rsi\n  syscall\n"
    "  mov probe_regs+0(%rip), %rax\n  mov probe_regs+16(%rip), %rcx\n"
    "  mov probe_regs+32(%rip), %rsi\n  mov probe_regs+40(%rip), %rdi\n"
    "  mov probe_regs+88(%rip), %r11\n"
    "  jmp _start\n");

static const char *const names[16] = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                                      "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"};

static unsigned u16(int off) { uint16_t v; memcpy(&v, probe_fx + off, 2); return v; }
static unsigned u32(int off) { uint32_t v; memcpy(&v, probe_fx + off, 4); return v; }
static uint64_t u64(int off) { uint64_t v; memcpy(&v, probe_fx + off, 8); return v; }

int main(int argc, char **argv)
{
    (void)argv;
    for (int i = 0; i < 16; i++) {
        if (i == 7)          /* where the stack is: only its alignment is the ABI's */
            printf("rsp%%16 %llu\n", (unsigned long long)(probe_regs[i] % 16));
        else
            printf("%s %#llx\n", names[i], (unsigned long long)probe_regs[i]);
    }
    printf("rflags %#llx\n", (unsigned long long)probe_flags);
    static const char *const sel[6] = {"cs", "ss", "ds", "es", "fs", "gs"};
    for (int i = 0; i < 6; i++)
        printf("%s %#x\n", sel[i], probe_sel[i]);
    printf("fsbase %#llx\ngsbase %#llx\n", (unsigned long long)probe_fsbase,
           (unsigned long long)probe_gsbase);
    printf("fcw %#x\nfsw %#x\nftw %#x\nfop %#x\nfip %#llx\nfdp %#llx\nmxcsr %#x\n",
           u16(0), u16(2), probe_fx[4], u16(6), (unsigned long long)u64(8),
           (unsigned long long)u64(16), u32(24));
    for (int i = 0; i < 8; i++)
        printf("st%d %#llx %#x\n", i, (unsigned long long)u64(32 + 16 * i), u16(40 + 16 * i));
    for (int i = 0; i < 16; i++)
        printf("xmm%d %#llx %#llx\n", i, (unsigned long long)u64(160 + 16 * i),
               (unsigned long long)u64(168 + 16 * i));
    if (argc > 1) {
        static const uint16_t cw = 0x0c7f;      /* round toward zero, single precision */
        static const uint32_t csr = 0x7f80;     /* SSE round toward zero */
        fflush(stdout);
        __asm__ volatile("fldcw %0\n ldmxcsr %1\n fld1\n fldpi\n fldl2e\n"
                         "pcmpeqd %%xmm0, %%xmm0\n pcmpeqd %%xmm15, %%xmm15\n"
                         "mov $-1, %%r12\n mov $-1, %%r15\n std\n"
                         "mov $231, %%eax\n xor %%edi, %%edi\n syscall"
                         : : "m"(cw), "m"(csr) : "memory");
    }
    return 0;
}

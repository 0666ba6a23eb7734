/* cmpxchg of every operand size, to memory (locked or not) and to a register,
 * each once succeeding and once failing, with the upper halves of RAX, the
 * destination and the source set: what each leaves in RAX, the destination and
 * the arithmetic flags is printed.  The 32-bit forms are the odd ones: the CPU
 * writes EAX (zero-extending RAX) only when the comparison fails, and a register
 * destination (zero-extended) only when it succeeds; unicorn wrote both every
 * time.  Also: a start the validator accepts after the lock prefix (glibc's
 * ``je 1f; lock; 1: cmpxchg``), two in a row, a branch to the instruction after
 * one, and one followed by an x87 instruction the guard runs on the host. */
#include <stdint.h>
#include <stdio.h>

#define HI_A 0xa1a1a1a100000000ull     /* RAX's upper half */
#define HI_D 0xd2d2d2d200000000ull     /* the destination's */
#define HI_S 0x5353535300000000ull     /* the source's */
#define ARITH 0x8d5ull                 /* CF PF AF ZF SF OF */

struct res { uint64_t rax, dst, flags; };

/* rflags into %[f], past the red zone (where the compiler may keep operands) */
#define FLAGS "\n\tlea -128(%%rsp), %%rsp\n\tpushfq\n\tpop %[f]\n\tlea 128(%%rsp), %%rsp"

static void show(const char *form, int equal, struct res r)
{
    printf("%s %s: rax %#llx dst %#llx flags %#llx\n", form, equal ? "equal" : "differ",
           (unsigned long long)r.rax, (unsigned long long)r.dst,
           (unsigned long long)(r.flags & ARITH));
}

/* To memory: ``mem`` the destination, ``rax`` and ``src`` whole 64-bit registers. */
#define TO_MEMORY(name, insn, mod)                                                   \
    static struct res name(uint64_t rax, uint64_t mem, uint64_t src)                 \
    {                                                                                \
        struct res r;                                                                \
        __asm__ volatile(insn " %" mod "[s], %[m]" FLAGS             \
                         : "+a"(rax), [m] "+m"(mem), [f] "=r"(r.flags)               \
                         : [s] "r"(src) : "cc", "memory");                           \
        r.rax = rax;                                                                 \
        r.dst = mem;                                                                 \
        return r;                                                                    \
    }
TO_MEMORY(mem8, "cmpxchgb", "b")
TO_MEMORY(mem16, "cmpxchgw", "w")
TO_MEMORY(mem32, "cmpxchgl", "k")
TO_MEMORY(mem64, "cmpxchgq", "q")
TO_MEMORY(lock32, "lock cmpxchgl", "k")
TO_MEMORY(lock16, "lock cmpxchgw", "w")

/* Locked, to a global (rip-relative). */
static uint64_t cell;
static struct res global32(uint64_t rax, uint64_t mem, uint64_t src)
{
    struct res r;
    cell = mem;
    __asm__ volatile("lock cmpxchgl %k[s], %[m]" FLAGS
                     : "+a"(rax), [m] "+m"(cell), [f] "=r"(r.flags)
                     : [s] "r"(src) : "cc", "memory");
    r.rax = rax;
    r.dst = cell;
    return r;
}

/* To a register (``dst``: rdx, or r12 for a REX prefix), from rcx. */
#define TO_REGISTER(name, insn, reg, src_op, dst_op)                                 \
    static struct res name(uint64_t rax, uint64_t dst, uint64_t src)                 \
    {                                                                                \
        struct res r;                                                                \
        register uint64_t d __asm__(reg) = dst;                                      \
        __asm__ volatile(insn " " src_op ", " dst_op FLAGS        \
                         : "+a"(rax), "+r"(d), [f] "=r"(r.flags)                     \
                         : "c"(src) : "cc");                                         \
        r.rax = rax;                                                                 \
        r.dst = d;                                                                   \
        return r;                                                                    \
    }
TO_REGISTER(reg8, "cmpxchgb", "rdx", "%%cl", "%%dl")
TO_REGISTER(reg16, "cmpxchgw", "rdx", "%%cx", "%%dx")
TO_REGISTER(reg32, "cmpxchgl", "rdx", "%%ecx", "%%edx")
TO_REGISTER(reg64, "cmpxchgq", "rdx", "%%rcx", "%%rdx")
TO_REGISTER(reg32_rex, "cmpxchgl", "r12", "%%ecx", "%%r12d")
TO_REGISTER(reg32_self, "cmpxchgl", "rdx", "%%edx", "%%edx")       /* source = destination */
TO_REGISTER(reg32_from_eax, "cmpxchgl", "rdx", "%%eax", "%%edx")   /* source = accumulator */
TO_REGISTER(reg32_to_eax, "cmpxchgl", "rdx", "%%ecx", "%%eax")     /* always equal */

/* The r12 source form reads r12: give it the source. */
static struct res reg32_rex_source(uint64_t rax, uint64_t dst, uint64_t src)
{
    struct res r;
    register uint64_t s __asm__("r12") = src;
    register uint64_t d __asm__("rdx") = dst;
    __asm__ volatile("cmpxchgl %%r12d, %%edx" FLAGS
                     : "+a"(rax), "+r"(d), [f] "=r"(r.flags) : "r"(s) : "cc");
    r.rax = rax;
    r.dst = d;
    return r;
}

/* Run after ``test k, k``: ``skip_lock`` enters at the lock prefix (k != 0) or after
 * it, ``branch_after`` runs the cmpxchg (k == 0) or jumps to the instruction after it. */
#define BRANCHED(name, insns)                                                        \
    static struct res name(uint64_t rax, uint64_t mem, uint64_t src, uint64_t k)     \
    {                                                                                \
        struct res r;                                                                \
        __asm__ volatile("test %[k], %[k]\n\t" insns FLAGS                           \
                         : "+a"(rax), [m] "+m"(mem), [f] "=r"(r.flags)               \
                         : [s] "r"(src), [k] "r"(k) : "cc", "memory");               \
        r.rax = rax;                                                                 \
        r.dst = mem;                                                                 \
        return r;                                                                    \
    }
BRANCHED(skip_lock, "jz 1f\n\tlock\n1:\tcmpxchgl %k[s], %[m]")
BRANCHED(branch_after, "jnz 1f\n\tcmpxchgl %k[s], %[m]\n1:")

/* Two in a row: the second's start is where the first's fix goes. */
static struct res twice(uint64_t rax, uint64_t mem, uint64_t src)
{
    struct res r;
    uint64_t other = mem;        /* equal again when the first was */
    __asm__ volatile("cmpxchgl %k[s], %[m]\n\tcmpxchgl %k[s], %[o]" FLAGS
                     : "+a"(rax), [m] "+m"(mem), [o] "+m"(other), [f] "=r"(r.flags)
                     : [s] "r"(src) : "cc", "memory");
    r.rax = rax;
    r.dst = mem + other;
    return r;
}

/* Followed by fprem (run on the host FPU by the emulated engine's guard). */
static struct res then_fprem(uint64_t rax, uint64_t mem, uint64_t src)
{
    struct res r;
    long double x = 7.5L, y = 2;
    __asm__ volatile("lock cmpxchgl %k[s], %[m]\n\tfprem" FLAGS
                     : "+a"(rax), [m] "+m"(mem), [f] "=r"(r.flags), "+t"(x)
                     : [s] "r"(src), "u"(y) : "cc", "memory");
    r.rax = rax;
    r.dst = mem + (uint64_t)x;
    return r;
}

typedef struct res (*form_fn)(uint64_t, uint64_t, uint64_t);

static const struct { const char *name; form_fn fn; uint64_t mask; } FORMS[] = {
    {"mem8", mem8, 0xff}, {"mem16", mem16, 0xffff}, {"mem32", mem32, 0xffffffff},
    {"mem64", mem64, ~0ull}, {"lock32", lock32, 0xffffffff}, {"lock16", lock16, 0xffff},
    {"global32", global32, 0xffffffff},
    {"reg8", reg8, 0xff}, {"reg16", reg16, 0xffff}, {"reg32", reg32, 0xffffffff},
    {"reg64", reg64, ~0ull}, {"reg32_rex", reg32_rex, 0xffffffff},
    {"reg32_rex_source", reg32_rex_source, 0xffffffff},
    {"reg32_self", reg32_self, 0xffffffff}, {"reg32_from_eax", reg32_from_eax, 0xffffffff},
    {"reg32_to_eax", reg32_to_eax, 0xffffffff}, {"twice", twice, 0xffffffff},
    {"then_fprem", then_fprem, 0xffffffff},
};

int main(void)
{
    static const uint64_t lows[] = {0x12345678, 0x80000001, 0};
    for (unsigned f = 0; f < sizeof FORMS / sizeof *FORMS; f++)
        for (unsigned i = 0; i < 3; i++)
            for (int equal = 0; equal < 2; equal++) {
                uint64_t rax = HI_A | lows[i], src = HI_S | (lows[i] ^ 0xf0f0f0f0);
                uint64_t mask = FORMS[f].mask;   /* the operand's bits: RAX's or not */
                uint64_t dst = ((HI_D | HI_D >> 32) & ~mask)
                               | ((equal ? rax : rax ^ 0x10101) & mask);
                show(FORMS[f].name, equal, FORMS[f].fn(rax, dst, src));
            }
    for (uint64_t k = 0; k < 2; k++)
        for (int equal = 0; equal < 2; equal++) {
            uint64_t rax = HI_A | 0x600d, dst = HI_D | (equal ? 0x600d : 0xbad);
            show(k ? "skip_lock locked" : "skip_lock after", equal,
                 skip_lock(rax, dst, HI_S | 7, k));
            show(k ? "branch_after skipped" : "branch_after run", equal,
                 branch_after(rax, dst, HI_S | 7, k));
        }
    return 0;
}

/* rflags after popf and after fcomi, printed: the same natively and under each engine.
 *
 * popf at CPL 3 with IOPL 0 cannot change IF or IOPL (unicorn, at CPL 0, could);
 * fcomi/fucomi(p) clear OF, SF and AF (unicorn kept them).  Each popf is followed
 * by pushf at once, the way a program would look at what it set.  No TF (a trap)
 * and no AC (alignment checks) are popped.  syscall sets RCX to the next instruction's
 * address and R11 to rflags (unicorn left both alone).  With an argument, the first
 * read of stdin is such a prefixed syscall (a start-up snapshot is taken in it). */
#include <stdio.h>

static const unsigned long popped[] = {
    0, 0x2, 0x200, 0x3000, 0x3202, 0x10000, 0x20000, 0x80000, 0x100000, 0x200000,
    0x4000, 0xfffffffffffbfeffUL, 0xfffffffffffbfcffUL,
};

static unsigned long popfq(unsigned long v)
{
    unsigned long r;
    __asm__ volatile("push %1\n\tpopfq\n\tpushfq\n\tpop %0\n\tpush $0x202\n\tpopfq"
                     : "=r"(r) : "r"(v) : "cc", "memory");
    return r;
}

static unsigned long popfw(unsigned long v)
{
    unsigned long r = 0;
    __asm__ volatile("pushw %w1\n\tpopfw\n\tpushfw\n\tpopw %w0\n\tpush $0x202\n\tpopfq"
                     : "+r"(r) : "r"(v) : "cc", "memory");
    return r;
}

/* OF, SF, AF set (and CF, ZF, PF from the flags popped) before the comparison */
#define COMPARE(insn, pop)                                                          \
    static unsigned long insn##_flags(long double a, long double b, unsigned long before) \
    {                                                                               \
        unsigned long r;                                                            \
        __asm__ volatile("fldt %2\n\tfldt %1\n\tpush %3\n\tpopfq\n\t" #insn         \
                         " %%st(1), %%st\n\tpushfq\n\tpop %0\n\t" pop "fstp %%st"   \
                         : "=r"(r) : "m"(a), "m"(b), "r"(before) : "cc", "memory", "st"); \
        return r;                                                                   \
    }
COMPARE(fcomi, "fstp %%st\n\t")
COMPARE(fucomi, "fstp %%st\n\t")
COMPARE(fcomip, "")
COMPARE(fucomip, "")

static unsigned lahf_after_fcomi(long double a, long double b)
{
    unsigned long r;
    __asm__ volatile("fldt %2\n\tfldt %1\n\tmov $0x7f, %%al\n\tadd $1, %%al\n\t"  /* OF SF AF */
                     "fcomi %%st(1), %%st\n\tseto %%cl\n\tlahf\n\tmovzbl %%ah, %%eax\n\t"
                     "movzbl %%cl, %%ecx\n\tshl $8, %%ecx\n\tor %%rcx, %%rax\n\t"
                     "mov %%rax, %0\n\tfstp %%st\n\tfstp %%st"
                     : "=r"(r) : "m"(a), "m"(b) : "rax", "rcx", "cc", "memory", "st");
    return (unsigned)r;
}

/* getpid by ``syscall`` (with a 66 prefix or not) with the flags of ``sub $1, x``:
 * whether RCX is the address after it, and R11 */
#define SYSCALL(name, insn)                                                         \
    static void name(unsigned long x)                                               \
    {                                                                               \
        unsigned long rcx, r11, next;                                               \
        __asm__ volatile("lea 1f(%%rip), %2\n\tmov $39, %%eax\n\tsub $1, %3\n\t"   \
                         insn "\n1:\n\tmov %%rcx, %0\n\tmov %%r11, %1"              \
                         : "=r"(rcx), "=r"(r11), "=&r"(next), "+r"(x)                \
                         : : "rax", "rcx", "r11", "cc", "memory");                  \
        printf(#name " %#lx: rcx is the next instruction: %d r11 %#lx\n", x,         \
               rcx == next, r11);                                                   \
    }
SYSCALL(syscall_plain, "syscall")
SYSCALL(syscall_prefixed, ".byte 0x66, 0x0f, 0x05")

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        char buf[16];
        long n;
        __asm__ volatile(".byte 0x66, 0x0f, 0x05" : "=a"(n)
                         : "a"(0L), "D"(0L), "S"(buf), "d"(sizeof buf)
                         : "rcx", "r11", "cc", "memory");
        printf("read %ld: %.*s\n", n, (int)(n > 0 ? n : 0), buf);
    }
    for (unsigned long x = 0; x < 3; x++) {
        syscall_plain(x << 63 | x);
        syscall_prefixed(x << 63 | x);
    }
    for (unsigned i = 0; i < sizeof popped / sizeof *popped; i++)
        printf("popfq %#lx: %#lx popfw: %#lx\n", popped[i], popfq(popped[i]),
               popfw(popped[i]));
    static const long double x[] = {1, 2, -0.0L, 0, __builtin_nanl("")};
    for (unsigned i = 0; i < 5; i++)
        for (unsigned j = 0; j < 5; j++)
            for (unsigned long before = 0x2; before <= 0x8d7; before += 0x8d5)
                printf("%u %u %#lx: fcomi %#lx fucomi %#lx fcomip %#lx fucomip %#lx"
                       " lahf %#x\n", i, j, before, fcomi_flags(x[i], x[j], before),
                       fucomi_flags(x[i], x[j], before), fcomip_flags(x[i], x[j], before),
                       fucomip_flags(x[i], x[j], before), lahf_after_fcomi(x[i], x[j]));
    return 0;
}

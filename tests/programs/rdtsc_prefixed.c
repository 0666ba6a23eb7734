/* rdtsc_prefixed: rdtsc, rdtscp and cpuid behind the prefixes the validator
 * accepts (legacy, segment, REX, in any order, up to the 15-byte limit).  The
 * CPU ignores them, and so must both engines: each form is answered as the
 * plain instruction (eax/edx/ecx only, upper halves cleared, rip past the
 * whole instruction), so the output is the same under both. */
#include <stdio.h>

#define SENTINEL 0xdeadbeefdeadbeefull

struct regs { unsigned long long a, b, c, d; };

/* One form: its name and a function that runs it on r (rbx is only cpuid's). */
#define FORM(fn, ...)                                                        \
    static void fn(struct regs *r)                                           \
    {                                                                        \
        __asm__ volatile(".byte " #__VA_ARGS__                               \
                         : "+a"(r->a), "+b"(r->b), "+c"(r->c), "+d"(r->d));  \
    }

FORM(tsc_plain, 0x0f, 0x31)
FORM(tsc_66, 0x66, 0x0f, 0x31)
FORM(tsc_67, 0x67, 0x0f, 0x31)
FORM(tsc_f2, 0xf2, 0x0f, 0x31)
FORM(tsc_f3, 0xf3, 0x0f, 0x31)
FORM(tsc_seg, 0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65, 0x0f, 0x31)
FORM(tsc_rexw, 0x48, 0x0f, 0x31)
FORM(tsc_rex_first, 0x4f, 0x66, 0x0f, 0x31)
FORM(tsc_mixed, 0x66, 0xf3, 0x2e, 0x48, 0x0f, 0x31)
FORM(tsc_15, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x48,
     0x0f, 0x31)
FORM(tscp_plain, 0x0f, 0x01, 0xf9)
FORM(tscp_66, 0x66, 0x0f, 0x01, 0xf9)
FORM(tscp_f2, 0xf2, 0x0f, 0x01, 0xf9)
FORM(tscp_f3, 0xf3, 0x0f, 0x01, 0xf9)
FORM(tscp_rexw, 0x48, 0x0f, 0x01, 0xf9)
FORM(tscp_mixed, 0x65, 0x67, 0x40, 0x0f, 0x01, 0xf9)
FORM(tscp_15, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x41,
     0x0f, 0x01, 0xf9)
FORM(cpuid_plain, 0x0f, 0xa2)
FORM(cpuid_66, 0x66, 0x0f, 0xa2)
FORM(cpuid_f3, 0xf3, 0x0f, 0xa2)
FORM(cpuid_rexw, 0x48, 0x0f, 0xa2)
FORM(cpuid_mixed, 0x64, 0xf2, 0x67, 0x4c, 0x0f, 0xa2)
FORM(cpuid_15, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e,
     0x48, 0x0f, 0xa2)

struct form { const char *name; void (*run)(struct regs *); };

static const struct form TSC[] = {
    {"0f 31", tsc_plain}, {"66 0f 31", tsc_66}, {"67 0f 31", tsc_67},
    {"f2 0f 31", tsc_f2}, {"f3 0f 31", tsc_f3}, {"2e 3e 26 36 64 65 0f 31", tsc_seg},
    {"48 0f 31", tsc_rexw}, {"4f 66 0f 31", tsc_rex_first},
    {"66 f3 2e 48 0f 31", tsc_mixed}, {"66 x12 48 0f 31", tsc_15},
};
static const struct form TSCP[] = {
    {"0f 01 f9", tscp_plain}, {"66 0f 01 f9", tscp_66}, {"f2 0f 01 f9", tscp_f2},
    {"f3 0f 01 f9", tscp_f3}, {"48 0f 01 f9", tscp_rexw},
    {"65 67 40 0f 01 f9", tscp_mixed}, {"66 x11 41 0f 01 f9", tscp_15},
};
static const struct form CPUID[] = {
    {"0f a2", cpuid_plain}, {"66 0f a2", cpuid_66}, {"f3 0f a2", cpuid_f3},
    {"48 0f a2", cpuid_rexw}, {"64 f2 67 4c 0f a2", cpuid_mixed},
    {"3e x12 48 0f a2", cpuid_15},
};

#define COUNT(a) (sizeof a / sizeof *a)

/* A counter form: what it left in the registers, and whether it moved on. */
static unsigned long long counter(const struct form *f, int aux, unsigned long long last)
{
    struct regs r = {SENTINEL, SENTINEL, SENTINEL, SENTINEL};
    f->run(&r);
    unsigned long long value = r.d << 32 | r.a;
    printf("%-24s high %d%d rbx %s rcx %s increasing %d\n", f->name,
           (int)(r.a >> 32 != 0), (int)(r.d >> 32 != 0),
           r.b == SENTINEL ? "kept" : "changed",
           aux ? (r.c == 0 ? "0" : "not 0") : (r.c == SENTINEL ? "kept" : "changed"),
           value > last);
    return value;
}

int main(void)
{
    unsigned long long last = 0;
    for (unsigned i = 0; i < COUNT(TSC); i++)
        last = counter(&TSC[i], 0, last);
    for (unsigned i = 0; i < COUNT(TSCP); i++)
        last = counter(&TSCP[i], 1, last);
    unsigned leaves[] = {0, 1, 7};
    for (unsigned i = 0; i < COUNT(CPUID); i++)
        for (unsigned j = 0; j < COUNT(leaves); j++) {
            struct regs r = {SENTINEL << 32 | leaves[j], SENTINEL, SENTINEL << 32, SENTINEL};
            CPUID[i].run(&r);
            printf("%-24s leaf %u: %016llx %016llx %016llx %016llx\n", CPUID[i].name,
                   leaves[j], r.a, r.b, r.c, r.d);
        }
    return 0;
}

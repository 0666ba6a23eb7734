/* rtm (hostile): Intel TSX's restricted transactional memory.  Natively a
 * transaction commits or aborts as the host's interrupts and caches decide, and
 * unicorn runs xbegin as a mov to eax; the fixed cpuid table lists no RTM, so
 * both engines make these invalid instructions (validator.as_fixed_cpu).  argv[1]
 * picks the instruction run first (after printing its address): xbegin (the
 * default), xabort, xend, xtest, "prefixed" (xtest behind cs, ds and REX.W
 * prefixes), "skip" (the same, reached by a jump over its first prefix), or
 * "loop" (a thousand transactions, counted). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static unsigned table[1 << 16];

extern char rtm_xbegin[], rtm_xabort[], rtm_xend[], rtm_xtest[], rtm_prefixed[], rtm_skip[];

/* one transaction: ~0 if it committed, else its abort status */
__attribute__((noinline)) static unsigned transaction(void)
{
    unsigned s = ~0u;
    __asm__ volatile(".globl rtm_loop\nrtm_loop: xbegin 1f\n\txend\n1:" : "+a"(s) :: "memory");
    return s;
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "xbegin";
    unsigned status = 0x12345678;
    unsigned char in = 7;
    int committed = 0, aborted = 0;

    /* a prefix worth a start-up snapshot: a run resumed from one must have the ud2s
     * too (tests/sandbox/test_equivalence.py) */
    for (unsigned i = 0; i < 400000; i++)
        table[(i * 40503u) >> 16] += i;
    for (int i = 0; i < 4; i++)
        table[i] += getppid();
    if (!strcmp(how, "loop")) {
        for (int i = 0; i < 1000; i++) {
            unsigned s = transaction();
            if (s == ~0u)
                committed++;
            else
                aborted++;
        }
        printf("committed %d aborted %d (%u)\n", committed, aborted, table[7]);
        return 0;
    }
    printf("%s at %p\n", how, !strcmp(how, "xabort") ? (void *)rtm_xabort
           : !strcmp(how, "xend") ? (void *)rtm_xend
           : !strcmp(how, "xtest") ? (void *)rtm_xtest
           : !strcmp(how, "prefixed") ? (void *)rtm_prefixed
           : !strcmp(how, "skip") ? (void *)rtm_skip : (void *)rtm_xbegin);
    fflush(stdout);
    if (!strcmp(how, "xabort"))
        __asm__ volatile(".globl rtm_xabort\nrtm_xabort: xabort $1" ::: "memory");
    else if (!strcmp(how, "xend"))
        __asm__ volatile(".globl rtm_xend\nrtm_xend: xend" ::: "memory");
    else if (!strcmp(how, "xtest"))
        __asm__ volatile(".globl rtm_xtest\nrtm_xtest: xtest; setnz %0" : "=q"(in) :: "memory");
    else if (!strcmp(how, "prefixed"))
        __asm__ volatile(".globl rtm_prefixed\n"
                         "rtm_prefixed: .byte 0x2e, 0x3e, 0x48, 0x0f, 0x01, 0xd6"
                         ::: "cc", "memory");
    else if (!strcmp(how, "skip"))
        __asm__ volatile("jmp rtm_skip\n\t.byte 0x2e\n.globl rtm_skip\n"
                         "rtm_skip: .byte 0x3e, 0x48, 0x0f, 0x01, 0xd6" ::: "cc", "memory");
    else            /* unicorn: mov $rel32, %eax; natively: a transaction */
        __asm__ volatile(".globl rtm_xbegin\nrtm_xbegin: xbegin 1f\n\t"
                         "movl $0xdeadbeef, %0\n\txend\n1:" : "+a"(status) :: "memory");
    printf("ran: status %x in %d\n", status, in);
    return 0;
}

/* deepstack: what did the previous run leave in the stack and the bss?
 *
 * `deepstack KIB BYTE` prints a checksum of KIB KiB of stack below its frame
 * and of a static buffer (48 KiB of .bss: a reset keeps its pages), none of
 * which it has written yet in this run, then fills them with BYTE.  A reset
 * machine prints what a fresh one prints (bss 0), whatever the last run wrote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char small[48 << 10];

static unsigned long sum(const volatile unsigned char *b, size_t n)
{
    unsigned long s = 0;
    for (size_t i = 0; i < n; i++)
        s = s * 31 + b[i];
    return s;
}

static __attribute__((noinline)) unsigned long probe(size_t n, int fill)
{
    volatile unsigned char below[n];
    unsigned long s = sum(below, n);
    memset((void *)below, fill, n);
    return s;
}

int main(int argc, char **argv)
{
    size_t kib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
    int fill = argc > 2 ? argv[2][0] : 'x';
    printf("stack %lx\n", probe(kib << 10, fill));
    printf("bss %lx\n", sum(small, sizeof small));
    memset(small, fill, sizeof small);
    return 0;
}

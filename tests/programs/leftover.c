/* leftover: what did the previous run leave behind?
 *
 * Prints a checksum of memory the program has not written yet in this run:
 * a static buffer (.bss), a static initialised string (.data), a read-only
 * string it makes writable with mprotect (.rodata), fresh heap from malloc
 * (brk and mmap sizes) and the stack below its frame.  Then it dirties all
 * of them with the byte given as argv[1].  In a fresh or correctly reset
 * machine the checksums are always the same, whatever the last run wrote. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static unsigned char bss[8192];
static char data[] = "initialised data";
static const char rodata[4096] __attribute__((aligned(4096))) = "read-only data";

static unsigned long sum(const void *p, size_t n)
{
    const unsigned char *b = p;
    unsigned long s = 0;
    for (size_t i = 0; i < n; i++)
        s = s * 31 + b[i];
    return s;
}

static __attribute__((noinline)) unsigned long stack_probe(int fill)
{
    volatile unsigned char below[16384];
    unsigned long s = sum((const void *)below, sizeof below);
    memset((void *)below, fill, sizeof below);
    return s;
}

int main(int argc, char **argv)
{
    int fill = argc > 1 ? argv[1][0] : 'x';
    unsigned char *small = malloc(1000), *big = malloc(1 << 20);
    printf("bss %lx\n", sum(bss, sizeof bss));
    printf("data %s\n", data);
    printf("rodata %s\n", rodata);
    printf("heap %lx %lx\n", sum(small, 1000), sum(big, 1 << 20));
    printf("stack %lx\n", stack_probe(fill));
    memset(bss, fill, sizeof bss);
    memset(data, fill, sizeof data - 1);
    if (mprotect((void *)rodata, 4096, PROT_READ | PROT_WRITE) == 0)
        memset((void *)rodata, fill, 8);
    else
        printf("mprotect refused\n");
    memset(small, fill, 1000);
    memset(big, fill, 1 << 20);
    return 0;
}

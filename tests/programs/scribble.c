/* scribble: what a run may leave in memory it never allocated.  It sums the
 * bytes of argv[1] MiB just past the program break and the top page of the
 * stack's unused part (zeros past the break in a fresh run; both what a fresh run sees), then
 * fills them with argv[2]'s first byte, and says what it saw.  With a third
 * argument "read-first" it reads stdin before anything else.  A reused
 * machine must show the next run zeros again (tests/sandbox/test_isolation.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long sum(const unsigned char *p, size_t n)
{
    unsigned long s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    return s;
}

int main(int argc, char **argv)
{
    size_t n = (size_t)(argc > 1 ? atol(argv[1]) : 1) << 20;
    int fill = argc > 2 ? argv[2][0] : 'x';
    char c;
    if (argc > 3 && strcmp(argv[3], "read-first") == 0)
        (void)!read(0, &c, 1);          /* a channel access: a start-up snapshot ends here */
    unsigned char *gap = (unsigned char *)sbrk(0) + 4096;
    volatile unsigned char below[64 << 10];         /* stack below this frame */
    unsigned long before = sum(gap, n), stack = sum((unsigned char *)below, sizeof below);
    memset(gap, fill, n);
    memset((unsigned char *)below, fill, sizeof below);
    char *fresh = calloc(1, 1 << 20);
    printf("gap %lu stack %lu calloc %lu\n", before, stack, sum((unsigned char *)fresh, 1 << 20));
    return 0;
}

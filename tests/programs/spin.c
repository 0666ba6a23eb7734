/* spin: count to argv[1] (default: forever) without system calls, then print
 * "spun N".  A job of a length set by its arguments, or one that only a limit
 * or a stop can end. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : ~0UL;
    volatile unsigned long i;
    for (i = 0; i < n; i++)
        ;
    printf("spun %lu\n", n);
    return 0;
}

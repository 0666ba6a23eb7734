/* membomb (hostile): malloc 1 MiB blocks until malloc fails, touching every
 * page, then use the NULL the naive way (a store through it: a segfault).
 * With a memory limit the run must end with status `memory`. */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    long blocks = 0;
    char *p;
    for (;;) {
        p = malloc(1 << 20);
        if (!p)
            break;
        for (long i = 0; i < 1 << 20; i += 4096)
            p[i] = (char)i;
        blocks++;
    }
    fprintf(stderr, "malloc failed after %ld MiB\n", blocks);
    *(volatile char *)p = 1;    /* naive: no check */
    return 1;
}

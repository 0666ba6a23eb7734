/* crash (hostile): die in one of the usual ways, picked by argv[1]:
 * div0, int3, ud2, hlt, abort, null, stack (unbounded recursion).  Each must
 * end the run with status `fault` and a message, never hang or crash the host. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int recurse(volatile char *prev)
{
    volatile char frame[4096];
    frame[0] = prev ? prev[0] + 1 : 0;
    return recurse(frame) + frame[1];
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "null";
    volatile int zero = 0;
    printf("crashing by %s\n", how);
    fflush(stdout);
    if (!strcmp(how, "div0"))
        return 10 / zero;
    if (!strcmp(how, "int3"))
        __asm__ volatile("int3");
    if (!strcmp(how, "ud2"))
        __asm__ volatile("ud2");
    if (!strcmp(how, "hlt"))
        __asm__ volatile("hlt");
    if (!strcmp(how, "abort"))
        abort();
    if (!strcmp(how, "null"))
        return *(volatile int *)0;
    if (!strcmp(how, "stack"))
        return recurse(NULL);
    puts("still alive");
    return 0;
}

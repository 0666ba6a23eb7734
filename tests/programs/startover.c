/* startover N: write "begin" to stdout and "counting" to stderr at once, count to N
 * without system calls, then print "end N".  In a pool under auto, a count past the
 * emulated trial (zvm_core.engines.TRIAL_FUEL) starts over natively: what it wrote
 * in the trial must not stay twice. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 0;
    volatile unsigned long i;
    if (write(1, "begin\n", 6) != 6 || write(2, "counting\n", 9) != 9)
        return 1;
    for (i = 0; i < n; i++)
        ;
    printf("end %lu\n", n);
    return 0;
}

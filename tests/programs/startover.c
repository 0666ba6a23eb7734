/* startover N: write "begin" to stdout and "counting" to stderr at once, read its
 * stdin to the end (none: 0 bytes), count to N without system calls, then print
 * "end N read M".  In a pool under auto, a count past the emulated trial
 * (zvm_core.engines.TRIAL_FUEL) starts over natively: what it wrote in the trial
 * must not stay twice, and its input must be read again from where it began. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 0;
    volatile unsigned long i;
    char buf[512];
    long got, total = 0;
    if (write(1, "begin\n", 6) != 6 || write(2, "counting\n", 9) != 9)
        return 1;
    while ((got = read(0, buf, sizeof buf)) > 0)
        total += got;
    for (i = 0; i < n; i++)
        ;
    printf("end %lu read %ld\n", n, total);
    return 0;
}

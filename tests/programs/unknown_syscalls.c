/* unknown_syscalls: calls argv[1] distinct system-call numbers that no kernel
 * has (from 100000 up), then says how many failed with ENOSYS.  The report
 * counts them in a bounded map (tests/sandbox/test_pool.py). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000, enosys = 0;
    for (long i = 0; i < n; i++)
        if (syscall(100000 + i) == -1 && errno == ENOSYS)
            enosys++;
    printf("%ld of %ld ENOSYS\n", enosys, n);
    return 0;
}

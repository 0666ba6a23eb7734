/* getpid: N raw getpid system calls (argv[1], default 1000); checks the
 * answer never changes.  Used by the tests and the syscall benchmark. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    long first = syscall(SYS_getpid), changed = 0;
    for (long i = 0; i < n; i++)
        changed += syscall(SYS_getpid) != first;
    printf("%ld getpid calls, %ld changed\n", n, changed);
    return changed != 0;
}

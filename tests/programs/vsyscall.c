/* vsyscall: call the legacy vsyscall page's time() and gettimeofday() entries
 * (fixed kernel addresses, no system-call instruction in the program): the
 * answer must be the run's virtual clock, or a fault, never the host's clock. */
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

typedef long (*time_fn)(long *);
typedef long (*gtod_fn)(struct timeval *, void *);

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        struct timeval tv = {0, 0};
        long r = ((gtod_fn)0xffffffffff600000UL)(&tv, 0);
        printf("gettimeofday = %ld, %lld\n", r, (long long)tv.tv_sec);
    } else {
        long t = ((time_fn)0xffffffffff600400UL)(0);
        printf("time = %ld\n", t);
    }
    fflush(stdout);
    return 0;
}

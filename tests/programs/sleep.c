/* sleep: sleep for a (virtual) day with nanosleep, clock_nanosleep and
 * sleep(), then print how far the monotonic clock moved.  In the sandbox
 * sleeping costs no wall time and the result is deterministic. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    struct timespec a, b, day = {86400, 0};
    clock_gettime(CLOCK_MONOTONIC, &a);
    nanosleep(&day, NULL);
    clock_nanosleep(CLOCK_MONOTONIC, 0, &day, NULL);
    unsigned left = sleep(86400);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("slept %lld s, %u left\n", (long long)(b.tv_sec - a.tv_sec), left);
    return 0;
}

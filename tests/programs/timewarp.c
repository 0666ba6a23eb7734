/* timewarp (hostile): sleep close to INT64_MAX seconds, twice, so that the
 * virtual clock would overflow a 64-bit timespec, then read every clock.  The
 * sandbox must keep answering (an error such as EOVERFLOW, or a saturated
 * value) instead of failing internally. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

int main(void)
{
    struct timespec big = {INT64_MAX, 999999999}, t = {0, 0};
    struct timeval tv = {0, 0};
    for (int i = 0; i < 2; i++) {
        errno = 0;
        int r = nanosleep(&big, NULL);
        printf("nanosleep %d errno=%d\n", r, errno);
    }
    clockid_t clocks[] = {CLOCK_REALTIME, CLOCK_MONOTONIC};
    for (int i = 0; i < 2; i++) {
        errno = 0;
        int r = clock_gettime(clocks[i], &t);
        printf("clock_gettime(%d) %d errno=%d\n", (int)clocks[i], r, errno);
    }
    errno = 0;
    int r = gettimeofday(&tv, NULL);
    printf("gettimeofday %d errno=%d\n", r, errno);
    errno = 0;
    time_t now = time(NULL);
    printf("time %s errno=%d\n", now == (time_t)-1 ? "-1" : "a value", errno);
    puts("survived");
    return 0;
}

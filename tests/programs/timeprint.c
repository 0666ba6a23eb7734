/* timeprint: read every clock first (time, clock_gettime REALTIME and
 * MONOTONIC, gettimeofday), then 16 bytes of getrandom() and the 16 AT_RANDOM
 * bytes, and print them all.  Natively the output changes every run; in the
 * sandbox it must be a function of --seed (random lines) and --epoch (clock
 * lines) only.  Then times() (ticks of the CPU clock) and umask (kept, as
 * Linux keeps it). */
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/times.h>
#include <sys/time.h>
#include <time.h>

static void hex(const char *label, const unsigned char *p, int n)
{
    printf("%s ", label);
    for (int i = 0; i < n; i++)
        printf("%02x", p[i]);
    printf("\n");
}

int main(void)
{
    struct timespec rt, mono, mono2;
    struct timeval tv;
    time_t t = time(NULL);
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    gettimeofday(&tv, NULL);
    clock_gettime(CLOCK_MONOTONIC, &mono2);

    unsigned char rnd[16];
    long got = (long)getrandom(rnd, sizeof rnd, 0);

    printf("time %lld\n", (long long)t);
    printf("realtime %lld.%09ld\n", (long long)rt.tv_sec, rt.tv_nsec);
    printf("monotonic %lld.%09ld\n", (long long)mono.tv_sec, mono.tv_nsec);
    printf("gettimeofday %lld.%06ld\n", (long long)tv.tv_sec, (long)tv.tv_usec);
    printf("monotonic-advanced %d\n",
           mono2.tv_sec > mono.tv_sec ||
           (mono2.tv_sec == mono.tv_sec && mono2.tv_nsec >= mono.tv_nsec));
    printf("getrandom %ld\n", got);
    hex("random", rnd, 16);
    hex("at_random", (const unsigned char *)getauxval(AT_RANDOM), 16);

    struct tms tms = {-1, -1, -1, -1};
    clock_t ticks = times(&tms);
    printf("times %d %d %d %d %d\n", ticks >= 0, tms.tms_utime == ticks, tms.tms_stime == 0,
           tms.tms_cutime == 0, tms.tms_cstime == 0);
    mode_t first = umask(077);
    mode_t second = umask(first);
    printf("umask %03o %03o\n", (unsigned)first, (unsigned)second);
    return 0;
}

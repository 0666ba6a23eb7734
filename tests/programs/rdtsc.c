/* rdtsc: read the time-stamp counter twice (and rdtscp once).  Allowed with
 * --rdtsc virtualize (a deterministic virtual counter), rejected (I4) with
 * --rdtsc reject. */
#include <stdio.h>

static unsigned long long tsc(void)
{
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (unsigned long long)hi << 32 | lo;
}

int main(void)
{
    unsigned long long a = tsc();
    unsigned lo, hi, aux;
    __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
    unsigned long long b = tsc();
    printf("tsc %llu %llu %llu\n", a, (unsigned long long)hi << 32 | lo, b);
    printf("increasing %d\n", a <= b);
    return 0;
}

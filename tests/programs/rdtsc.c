/* rdtsc: read the time-stamp counter twice (and rdtscp once).  Allowed with
 * --rdtsc virtualize (a deterministic virtual counter), rejected (I4) with
 * --rdtsc reject.  With an argument (the native engine answers the fault
 * rdtsc raises there; the answer must not depend on the guest):
 *   handler  first installs a SIGSEGV handler, which must never run;
 *   wait     spins on rdtsc alone until the counter moved by 10^6;
 *   null     then writes through a null pointer: still a fault. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static unsigned long long tsc(void)
{
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (unsigned long long)hi << 32 | lo;
}

static void caught(int sig)
{
    (void)sig;
    write(1, "handler\n", 8);
    _exit(3);
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "";
    if (!strcmp(how, "handler"))
        signal(SIGSEGV, caught);
    unsigned long long a = tsc();
    unsigned lo, hi, aux = 7;
    __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
    unsigned long long b = tsc();
    printf("tsc %llu %llu %llu aux %u\n", a, (unsigned long long)hi << 32 | lo, b, aux);
    printf("increasing %d\n", a <= b);
    if (!strcmp(how, "wait")) {
        unsigned long long spins = 0;
        while (tsc() - b < 1000000)
            spins++;
        printf("waited %d\n", spins > 0);
    }
    if (!strcmp(how, "null")) {
        fflush(stdout);
        *(volatile int *)0 = 1;
    }
    return 0;
}

/* getpid: argv[1] raw getpid system calls (default 1000), each a bare
 * `syscall` instruction, so that (t(N) - t(0)) / N is one round trip. */
#include <stdio.h>
#include <stdlib.h>

static inline long raw_getpid(void)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(39L) : "rcx", "r11", "memory");
    return ret;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    long first = raw_getpid(), changed = 0;
    for (long i = 0; i < n; i++)
        changed += raw_getpid() != first;
    printf("%ld getpid calls, %ld changed\n", n, changed);
    return changed != 0;
}

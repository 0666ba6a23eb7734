/* rawsys.h: a system call made directly (no libc wrapper between the guest and the
 * sandbox: any number, any arguments), and TRY, which prints "name result" (raw
 * -errno on failure) -- shared by the hostile programs that list attempts. */
#ifndef RAWSYS_H
#define RAWSYS_H
#include <stdio.h>

static long sys(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10),
                     "r"(r8), "r"(r9) : "rcx", "r11", "memory");
    return ret;
}

#define TRY(name, ...) printf("%s %ld\n", name, sys(__VA_ARGS__))
#endif

/* stacktop: the last 16 bytes of the initial stack (just below 4 GiB, above the
 * argument strings) in hex, then its arguments.  A native template's child is given
 * its stack pointer there (loader.c: SP_SLOT) and zeroes it before the guest's first
 * instruction: the guest sees what the emulator's stack holds, zeros
 * (tests/sandbox/test_native_stack.py). */
#include <stdio.h>

int main(int argc, char **argv)
{
    const volatile unsigned char *top = (const volatile unsigned char *)0x100000000UL - 16;
    for (int i = 0; i < 16; i++)
        printf("%02x", top[i]);
    for (int i = 0; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\n");
    return 0;
}

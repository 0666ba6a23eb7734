/* wrmsr (hostile): a privileged instruction.  unicorn runs guests at CPL 0,
 * where it would succeed, so the validator must reject the program (I2). */
#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argv;
    puts("writing MSR 0xc0000100 (FS base)");
    if (argc > 0)
        __asm__ volatile("wrmsr" : : "c"(0xc0000100u), "a"(0), "d"(0));
    puts("wrmsr done");
    return 0;
}

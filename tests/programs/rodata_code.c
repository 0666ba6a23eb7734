/* rodata_code (hostile): built with -z noseparate-code, .rodata shares the
 * executable segment with .text, so natively this const array of
 * `rdrand %eax; ret` is executable and the call returns a hardware random
 * number.  The bytes are not in a code section: either the validator sweeps
 * them (and rejects rdrand) or the runtime guard stops the jump (not a
 * validated boundary).  "returned" must never be printed. */
#include <stdio.h>

static const unsigned char code[] = {0x0f, 0xc7, 0xf0, 0xc3};

int main(void)
{
    int (*volatile f)(void) = (int (*)(void))(const void *)code;
    puts("calling rodata");
    fflush(stdout);
    int r = f();
    printf("rodata returned %d\n", r);
    return 0;
}

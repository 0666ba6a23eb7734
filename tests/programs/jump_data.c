/* jump_data (hostile): call a function pointer that points at a byte array in
 * .data holding `mov $42,%eax; ret`.  Data is not executable (and was never
 * validated), so the call must fault instead of returning 42.  The pointer is
 * volatile so that the compiler emits an indirect call (a direct `call code`
 * would already be rejected by the validator, rule I8). */
#include <stdio.h>

static unsigned char code[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3};

int main(void)
{
    int (*volatile f)(void) = (int (*)(void))(void *)code;
    puts("calling data");
    fflush(stdout);
    int r = f();
    printf("data returned %d\n", r);
    return r;
}

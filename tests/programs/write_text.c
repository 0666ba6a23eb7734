/* write_text (hostile): overwrite the first byte of main with `ret`.  Text is
 * mapped read-only, so the store must fault and "patched" never appears. */
#include <stdio.h>

int main(void)
{
    puts("patching main");
    fflush(stdout);
    *(volatile unsigned char *)(void *)main = 0xc3;
    puts("patched");
    return 0;
}

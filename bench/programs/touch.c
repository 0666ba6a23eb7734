/* touch: allocate argv[1] MiB (default 8) with malloc, write every byte and
 * exit, leaving that much dirty heap behind in the guest's memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 8;
    unsigned char *p = malloc(mib << 20);
    if (!p) {
        perror("touch: malloc");
        return 1;
    }
    memset(p, 0x5a, mib << 20);
    unsigned long sum = 0;                 /* read back: the stores must happen */
    for (size_t i = 0; i < mib << 20; i += 4096)
        sum += p[i];
    printf("touched %zu MiB (%lu)\n", mib, sum);
    return 0;
}

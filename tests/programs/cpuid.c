/* cpuid: print leaves 0, 1, 7 and 0x80000000 and the vendor.  The sandbox
 * answers from a fixed table, so the output is the same on every host. */
#include <cpuid.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    unsigned leaves[] = {0, 1, 7, 0x80000000u, 0x80000001u};
    for (unsigned i = 0; i < sizeof leaves / sizeof *leaves; i++) {
        unsigned a, b, c, d;
        __cpuid_count(leaves[i], 0, a, b, c, d);
        printf("leaf %08x: %08x %08x %08x %08x\n", leaves[i], a, b, c, d);
        if (leaves[i] == 0) {
            char vendor[13];
            memcpy(vendor, &b, 4);
            memcpy(vendor + 4, &d, 4);
            memcpy(vendor + 8, &c, 4);
            vendor[12] = 0;
            printf("vendor %s\n", vendor);
        }
    }
    return 0;
}

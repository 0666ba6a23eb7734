/* writesizes SIZE...: one write(1) of each SIZE bytes (byte i of the output is
 * i * 7 % 251), in order; exit 1 at a short or failed write.  Mixes the sizes
 * the native C loop gathers (small), hashes on its helper thread (a full
 * buffer) and writes at once (over its 256 KiB buffer). */
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static unsigned char block[1 << 20];
    unsigned long at = 0;
    for (int i = 1; i < argc; i++) {
        size_t n = strtoul(argv[i], NULL, 0);
        if (n > sizeof block)
            return 2;
        for (size_t k = 0; k < n; k++)
            block[k] = (unsigned char)((at + k) * 7 % 251);
        if (write(1, block, n) != (ssize_t)n)
            return 1;
        at += n;
    }
    return 0;
}

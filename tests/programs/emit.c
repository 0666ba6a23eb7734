/* emit SIZE TAG: write SIZE bytes to stdout in 64 KiB blocks, block k being the
 * line "TAG k" (k in 8 digits) then the letter 'a' + k % 26 up to the block's end
 * (the last block cut at SIZE).  Large, deterministic, and each block names its
 * place: a response that reorders, drops or repeats a block shows it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static char block[65536];
    if (argc != 3)
        return 2;
    long long size = atoll(argv[1]);
    for (long long k = 0; size > 0; k++) {
        int n = snprintf(block, sizeof block, "%s %08lld\n", argv[2], k);
        memset(block + n, 'a' + (int)(k % 26), sizeof block - (size_t)n);
        size_t len = size < (long long)sizeof block ? (size_t)size : sizeof block;
        for (size_t off = 0; off < len;) {
            ssize_t w = write(1, block + off, len - off);
            if (w <= 0)
                return 1;
            off += (size_t)w;
        }
        size -= (long long)len;
    }
    return 0;
}

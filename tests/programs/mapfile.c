/* mapfile: mmap /dev/input privately (argv[1] bytes at offset argv[2]) and print
 * "LENGTH HASH NONZERO": how many mapped bytes are not zero (past the file's end:
 * zeros) and the FNV-1a hash of their offsets and values (8 bytes of offset, little
 * endian, then the byte, for each), or "mmap ERRNO". */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
    size_t len = argc > 1 ? strtoull(argv[1], NULL, 0) : 4096;
    off_t off = argc > 2 ? strtoll(argv[2], NULL, 0) : 0;
    int fd = open("/dev/input", O_RDONLY);
    const unsigned char *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, off);
    if (p == MAP_FAILED) {
        printf("mmap %d\n", errno);
        return 1;
    }
    uint64_t hash = 0xcbf29ce484222325ULL;
    size_t nonzero = 0;
    for (size_t i = 0; i < len; i++) {
        if (!p[i])
            continue;
        for (int k = 0; k < 8; k++)
            hash = (hash ^ ((i >> (8 * k)) & 0xff)) * 0x100000001b3ULL;
        hash = (hash ^ p[i]) * 0x100000001b3ULL;
        nonzero++;
    }
    printf("%zu %016llx %zu\n", len, (unsigned long long)hash, nonzero);
    return 0;
}

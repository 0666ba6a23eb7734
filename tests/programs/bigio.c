/* bigio MODE [MIB]: system calls that move many MiB at once (at least two pages),
 * or name a buffer whose last page the guest may not touch.  Results go to stderr.
 *   write MIB   one write(1) of MIB MiB (byte i is i * 7 % 251)
 *   writev MIB  the same bytes in one writev(1) of three vectors
 *   read MIB    one read(0) of MIB MiB: its count and an FNV-1a hash of the bytes
 *   readv MIB   the same with three vectors
 *   edge MIB    write, read, writev and readv over a MIB MiB buffer whose last
 *               page is PROT_NONE: each call's answer, then a read of 10 bytes
 *               (what the failed reads left in the input) */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

static uint64_t fnv(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void thirds(struct iovec *iov, unsigned char *buf, size_t size)
{
    size_t a = size / 3, b = size / 3;
    iov[0] = (struct iovec){buf, a};
    iov[1] = (struct iovec){buf + a, b};
    iov[2] = (struct iovec){buf + a + b, size - a - b};
}

static void show(const char *what, long r)
{
    fprintf(stderr, "%s = %ld errno=%d\n", what, r, r < 0 ? errno : 0);
    errno = 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    size_t size = (size_t)strtoul(argc > 2 ? argv[2] : "1", NULL, 0) << 20;
    if (size < 8192)
        size = 8192;
    unsigned char *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                              -1, 0);
    if (buf == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    struct iovec iov[3];
    thirds(iov, buf, size);
    const char *mode = argv[1];
    if (!strcmp(mode, "write") || !strcmp(mode, "writev")) {
        for (size_t i = 0; i < size; i++)
            buf[i] = (unsigned char)(i * 7 % 251);
        show(mode, mode[5] ? (long)writev(1, iov, 3) : (long)write(1, buf, size));
    } else if (!strcmp(mode, "read") || !strcmp(mode, "readv")) {
        long n = mode[4] ? (long)readv(0, iov, 3) : (long)read(0, buf, size);
        show(mode, n);
        fprintf(stderr, "fnv %016llx\n", (unsigned long long)fnv(buf, n > 0 ? (size_t)n : 0));
    } else if (!strcmp(mode, "edge")) {
        memset(buf, 'e', size);
        if (mprotect(buf + size - 4096, 4096, PROT_NONE) != 0) {
            perror("mprotect");
            return 1;
        }
        show("write", (long)write(1, buf, size));
        show("writev", (long)writev(1, iov, 3));
        show("read", (long)read(0, buf, size));
        show("readv", (long)readv(0, iov, 3));
        show("read 10", (long)read(0, buf, 10));
        fprintf(stderr, "got %.10s\n", buf);
    } else {
        return 2;
    }
    return 0;
}

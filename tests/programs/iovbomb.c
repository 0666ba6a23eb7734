/* iovbomb: readv and writev whose IOV_MAX vectors all name the same large buffer
 * (argv[1] MiB): the sandbox must not copy or stage one buffer per vector. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static struct iovec iov[1024];

int main(int argc, char **argv)
{
    size_t size = (size_t)strtoul(argc > 1 ? argv[1] : "16", NULL, 0) << 20;
    int count = argc > 2 ? atoi(argv[2]) : 1024;
    char *buf = malloc(size);
    if (buf == NULL) {
        perror("malloc");
        return 1;
    }
    memset(buf, 'z', size);
    for (int i = 0; i < count; i++) {
        iov[i].iov_base = buf;
        iov[i].iov_len = size;
    }
    long w = (long)writev(1, iov, count);
    long r = (long)readv(0, iov, count);
    fprintf(stderr, "writev = %ld, readv = %ld\n", w, r);
    return 0;
}

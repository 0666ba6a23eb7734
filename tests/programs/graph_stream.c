/* A pipeline stage that may end before the stage it reads from.
 *
 *     graph_stream <from> <to> <bytes> <spin>
 *
 * Reads exactly <bytes> bytes from <from> ("-" is /dev/stdin, otherwise
 * /dev/in/<from>), in reads of 100000 bytes (a size no buffer on the way
 * uses), and writes each to <to> ("-" is /dev/stdout, otherwise
 * /dev/out/<to>) at once; then computes for <spin> million iterations and
 * exits 0, without reading its input to the end.  A short read before
 * <bytes> is an error (exit 1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

static int open_end(const char *dir, const char *name, int flags) {
    char path[512];
    if (!strcmp(name, "-")) return flags == O_RDONLY ? 0 : 1;
    snprintf(path, sizeof path, "/dev/%s/%s", dir, name);
    return open(path, flags);
}

int main(int argc, char **argv) {
    if (argc < 5) { fputs("usage: graph_stream <from> <to> <bytes> <spin>\n", stderr); return 2; }
    int in = open_end("in", argv[1], O_RDONLY), out = open_end("out", argv[2], O_WRONLY);
    long left = atol(argv[3]), spin = atol(argv[4]) * 1000000L;
    static unsigned char buf[100000];
    if (in < 0 || out < 0) { perror("graph_stream: open"); return 1; }
    while (left > 0) {
        ssize_t want = left < (long)sizeof buf ? left : (ssize_t)sizeof buf;
        ssize_t n = read(in, buf, (size_t)want);
        if (n != want) { fprintf(stderr, "graph_stream: read %zd of %zd\n", n, want); return 1; }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            if (w <= 0) { perror("graph_stream: write"); return 1; }
            done += w;
        }
        left -= n;
    }
    volatile unsigned long x = 0;
    for (long i = 0; i < spin; i++) x = x * 6364136223846793005UL + 1;
    return 0;
}

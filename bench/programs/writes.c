/* writes: argv[1] writev calls to stdout (default 1000), each as musl's stdio
 * makes them when its 1 KiB buffer fills: the buffered kilobyte and the rest
 * of a line.  (t(N) - t(0)) / N is one mediated write's round trip. */
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    static char buffered[1024], line[48];
    memset(buffered, 'x', sizeof buffered);
    memset(line, 'y', sizeof line);
    line[sizeof line - 1] = '\n';
    struct iovec iov[2] = {{buffered, sizeof buffered}, {line, sizeof line}};
    for (long i = 0; i < n; i++)
        if (writev(1, iov, 2) != (ssize_t)(sizeof buffered + sizeof line))
            return 1;
    return 0;
}

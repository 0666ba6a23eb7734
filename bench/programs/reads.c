/* reads: argv[1] read calls of 1 KiB from stdin (default 1000), as musl's stdio
 * makes them to fill its 1 KiB buffer; stdin must hold that much.
 * (t(N) - t(0)) / N is one mediated read's round trip. */
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    static char buf[1024];
    for (long i = 0; i < n; i++)
        if (read(0, buf, sizeof buf) != (ssize_t)sizeof buf)
            return 1;
    return 0;
}

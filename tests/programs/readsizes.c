/* readsizes: reads stdin argv[1] bytes at a time (default 8) and prints what
 * each read(2) returned, up to the end.  A pipe backing must give the same
 * sizes however the writer spread its data in time. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    size_t want = argc > 1 ? (size_t)atol(argv[1]) : 8;
    char buf[65536];
    if (want > sizeof buf)
        want = sizeof buf;
    for (;;) {
        ssize_t n = read(0, buf, want);
        printf("%zd\n", n);
        if (n <= 0)
            return n < 0;
    }
}

/* wc: count lines, words and bytes of stdin and print them like `wc` does
 * for standard input ("%7ld %7ld %7ld\n").  Words are runs of non-space
 * bytes (C locale isspace).
 *
 * `wc -t` also prints to stderr the nanoseconds main spent (CLOCK_MONOTONIC),
 * so that bench/ can time a native run without process spawn and exit. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned char buf[64 << 10];

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int timed = argc > 1 && strcmp(argv[1], "-t") == 0;
    long long t0 = timed ? now_ns() : 0;
    long lines = 0, words = 0, bytes = 0;
    int inword = 0;
    ssize_t n;

    while ((n = read(0, buf, sizeof buf)) > 0) {
        bytes += n;
        for (ssize_t i = 0; i < n; i++) {
            unsigned char c = buf[i];
            if (c == '\n')
                lines++;
            if (isspace(c)) {
                inword = 0;
            } else if (!inword) {
                inword = 1;
                words++;
            }
        }
    }
    if (n < 0) {
        perror("wc: read");
        return 1;
    }
    printf("%7ld %7ld %7ld\n", lines, words, bytes);
    fflush(stdout);
    if (timed)
        fprintf(stderr, "%lld\n", now_ns() - t0);
    return 0;
}

/* sort: read stdin, sort its lines bytewise (like `LC_ALL=C sort`) with
 * qsort, write them to stdout.
 *
 * `sort -t` also prints to stderr the nanoseconds main spent
 * (CLOCK_MONOTONIC), to time a native run without process spawn and exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int timed = argc > 1 && strcmp(argv[1], "-t") == 0;
    long long t0 = timed ? now_ns() : 0;
    size_t len = 0, cap = 1 << 16;
    char *data = malloc(cap);
    for (;;) {
        if (cap - len < 4096) {
            cap *= 2;
            data = realloc(data, cap);
        }
        if (!data) {
            perror("sort: realloc");
            return 1;
        }
        ssize_t n = read(0, data + len, cap - len - 1);
        if (n < 0) {
            perror("sort: read");
            return 1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len && data[len - 1] != '\n')
        data[len++] = '\n';
    size_t nlines = 0;
    for (size_t i = 0; i < len; i++)
        nlines += data[i] == '\n';
    char **lines = malloc((nlines + 1) * sizeof *lines);
    size_t k = 0;
    for (char *p = data; p < data + len;) {
        char *nl = memchr(p, '\n', (size_t)(data + len - p));
        *nl = '\0';
        lines[k++] = p;
        p = nl + 1;
    }
    qsort(lines, nlines, sizeof *lines, cmp);
    for (size_t i = 0; i < nlines; i++) {
        fputs(lines[i], stdout);
        putchar('\n');
    }
    fflush(stdout);
    if (timed)
        fprintf(stderr, "%lld\n", now_ns() - t0);
    return 0;
}

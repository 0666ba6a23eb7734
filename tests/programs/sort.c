/* sort: read every line of /dev/input (opened with open()), sort the lines
 * bytewise (like `LC_ALL=C sort`) and write them to /dev/output (fopen "w").
 * argv[1] and argv[2] replace the two paths so that the same binary can be
 * run natively on ordinary files.  A summary goes to stdout. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    const char *in = argc > 1 ? argv[1] : "/dev/input";
    const char *out = argc > 2 ? argv[2] : "/dev/output";
    int fd = open(in, O_RDONLY);
    if (fd < 0) {
        perror(in);
        return 1;
    }
    size_t len = 0, cap = 4096;
    char *data = malloc(cap);
    for (;;) {
        if (cap - len < 4096) {
            cap *= 2;
            data = realloc(data, cap);
            if (!data) {
                perror("realloc");
                return 1;
            }
        }
        ssize_t n = read(fd, data + len, cap - len - 1);
        if (n < 0) {
            perror("read");
            return 1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (len && data[len - 1] != '\n')
        data[len++] = '\n';         /* like sort: a last line gets its newline */

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

    FILE *f = fopen(out, "w");
    if (!f) {
        perror(out);
        return 1;
    }
    for (size_t i = 0; i < nlines; i++) {
        fputs(lines[i], f);
        fputc('\n', f);
    }
    if (fclose(f) != 0) {
        perror("fclose");
        return 1;
    }
    printf("sorted %zu lines, %zu bytes\n", nlines, len);
    return 0;
}

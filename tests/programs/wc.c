/* wc: count lines, words and bytes of stdin and print them like `wc` does
 * for standard input ("%7ld %7ld %7ld\n").  Words are runs of non-space
 * bytes (C locale isspace). */
#include <ctype.h>
#include <stdio.h>
#include <unistd.h>

static unsigned char buf[64 << 10];

int main(void)
{
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
    return 0;
}

/* wordcount: count lines, words and bytes of /dev/stdin, like `wc`.
 *
 * Build:  musl-gcc -static -O2 -o wordcount wordcount.c
 * In a ZeroCloud job the node's stdin is the object it runs next to, so
 * only this one line of output leaves the object server. */
#include <ctype.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    static char buf[1 << 16];
    long lines = 0, words = 0, bytes = 0;
    int in_word = 0;
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)buf[i];
            lines += c == '\n';
            if (isspace(c))
                in_word = 0;
            else if (!in_word) {
                in_word = 1;
                words++;
            }
        }
        bytes += n;
    }
    printf("%7ld %7ld %9ld\n", lines, words, bytes);
    return n < 0;
}

/* cat: copy stdin to stdout through a 1 MiB buffer, coping with short writes. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

static char buf[1 << 20];

int main(void)
{
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("cat: read");
            return 1;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(1, buf + off, (size_t)(n - off));
            if (w < 0) {
                perror("cat: write");
                return 1;
            }
            off += w;
        }
    }
}

/* epipe: write 4 KiB blocks to stdout until a write fails, then print "write: errno N"
 * on stderr and exit with N (32, EPIPE, once the reader of a pipe went away). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
    static char buf[4096];
    memset(buf, 'y', sizeof buf);
    while (write(1, buf, sizeof buf) > 0)
        ;
    int err = errno;
    fprintf(stderr, "write: errno %d\n", err);
    return err;
}

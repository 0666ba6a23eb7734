/* sparse: positioned writes on a written random channel (/dev/output), as
 * "OFFSET:LENGTH" arguments (pwrite), or "@OFFSET:LENGTH" (lseek, then write):
 * a guest that writes a few bytes far beyond its write quota must not make a
 * huge (sparse) output that costs its etag and its upload what the quota bounds. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char data[65536];

int main(int argc, char **argv)
{
    int fd = open("/dev/output", O_WRONLY);
    if (fd < 0) {
        perror("/dev/output");
        return 1;
    }
    memset(data, 'x', sizeof data);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int seek = arg[0] == '@';
        char *end;
        long long at = strtoll(arg + seek, &end, 0);
        size_t len = (size_t)strtoull(end + 1, NULL, 0);
        long r;
        if (seek) {
            long long pos = (long long)lseek(fd, at, SEEK_SET);
            r = pos < 0 ? -1 : (long)write(fd, data, len);
        } else {
            r = (long)pwrite(fd, data, len, at);
        }
        printf("%s = %ld%s%s\n", arg, r, r < 0 ? " " : "", r < 0 ? strerror(errno) : "");
        fflush(stdout);
    }
    return 0;
}

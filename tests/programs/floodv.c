/* floodv: write 4 KiB blocks to stdout forever with writev (two vectors of
 * 2 KiB), ignoring errors: flood's writes as writev calls. */
#include <string.h>
#include <sys/uio.h>

int main(void)
{
    static char buf[4096];
    memset(buf, 'v', sizeof buf);
    struct iovec iov[2] = {{buf, 2048}, {buf + 2048, 2048}};
    for (;;)
        (void)!writev(1, iov, 2);
}

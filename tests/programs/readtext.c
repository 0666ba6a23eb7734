/* readtext (hostile): ask the "kernel" to write into read-only memory: read(),
 * readv() and getrandom() into main's code, pread() of /dev/input (argv[1]
 * replaces the path for a native run) into it, clock_gettime() and uname()
 * onto text, read() into a string literal (.rodata).  Each must fail with
 * EFAULT and the code must stay unchanged (W^X enforced on the syscall path,
 * not only on guest stores).  Stdin and the input need at least 16 bytes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static void show(const char *what, long r)
{
    printf("%s = %ld errno=%d\n", what, r, r < 0 ? errno : 0);
}

int main(int argc, char **argv)
{
    int in = open(argc > 1 ? argv[1] : "/dev/input", O_RDONLY);
    unsigned char before[64];
    void *text = (void *)main;
    memcpy(before, text, sizeof before);
    static const char literal[] = "read-only string";

    errno = 0;
    show("read(text)", read(0, text, 16));
    errno = 0;
    show("pread(text)", pread(in, text, 16, 0));
    struct iovec iov = {text, 16};
    errno = 0;
    show("readv(text)", readv(0, &iov, 1));
    errno = 0;
    show("getrandom(text)", syscall(SYS_getrandom, text, 16L, 0L));
    errno = 0;
    show("clock_gettime(text)", syscall(SYS_clock_gettime, 0L, text));
    errno = 0;
    show("uname(text)", syscall(SYS_uname, text));
    errno = 0;
    show("read(rodata)", read(0, (void *)literal, 5));
    printf("code %s\n", memcmp(before, text, sizeof before) ? "CHANGED" : "unchanged");
    printf("literal %s\n", literal);
    return 0;
}

/* passwd (hostile): try to reach host files by name, and to create argv[1]
 * (default /tmp/zvm-escape).  Every attempt must fail with ENOENT and nothing
 * of any file may be printed.  ("/" and "/dev" are not tried: they are the
 * directories of the guest's own channels, test_images lists them.) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *paths[] = {
    "/etc/passwd", "/dev/../etc/passwd", "/dev/stdout/../../etc/passwd",
    "../../../../etc/passwd", "etc/passwd", "/proc/self/environ", "/proc/self/mem",
    "/dev/mem", "/dev/zero", "/dev/tty", "/tmp", "/dev/null", "/dev/../tmp",
};

int main(int argc, char **argv)
{
    const char *escape = argc > 1 ? argv[1] : "/tmp/zvm-escape";
    char buf[256];
    int bad = 0;
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        errno = 0;
        int fd = open(paths[i], O_RDONLY);
        int e = errno;
        printf("open(%s) = %d errno=%d (%s)\n", paths[i], fd, e, strerror(e));
        if (fd >= 0) {
            bad = 1;
            ssize_t n = read(fd, buf, sizeof buf);
            printf("  read %zd bytes\n", n);     /* the bytes themselves are never shown */
        }
        errno = 0;
        fd = openat(AT_FDCWD, paths[i], O_RDONLY);
        printf("openat(%s) = %d errno=%d\n", paths[i], fd, errno);
        bad |= fd >= 0;
        struct stat st;
        errno = 0;
        int r = stat(paths[i], &st);
        printf("stat(%s) = %d errno=%d\n", paths[i], r, errno);
        bad |= r == 0;
    }
    FILE *f = fopen("/etc/passwd", "r");
    printf("fopen = %s\n", f ? "a FILE" : "NULL");
    bad |= f != NULL;
    errno = 0;
    int w = open(escape, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    printf("create %s = %d errno=%d\n", escape, w, errno);
    bad |= w >= 0;
    printf(bad ? "ESCAPED\n" : "all refused\n");
    return bad;
}

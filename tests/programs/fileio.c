/* fileio: random access on /dev/input with fstat, lseek and pread, and
 * positioned writes on /dev/output (open, write, pwrite, lseek).
 * argv[1]/argv[2] replace the two paths for a native run. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char buf[4096];

static void show(const char *what, long r, const char *data, long n)
{
    printf("%s = %ld", what, r);
    if (r < 0)
        printf(" (%s)", strerror(errno));
    if (data && n > 0)
        printf(" [%.*s]", (int)n, data);
    printf("\n");
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
    struct stat st;
    if (fstat(fd, &st) != 0) {
        perror("fstat");
        return 1;
    }
    printf("size = %lld\n", (long long)st.st_size);
    long end = (long)lseek(fd, 0, SEEK_END);
    show("lseek(0, SEEK_END)", end, NULL, 0);
    long r = (long)pread(fd, buf, 10, 0);
    show("pread(10, 0)", r, buf, r);
    r = (long)pread(fd, buf, 10, end - 5);
    show("pread(10, end-5)", r, buf, r);
    r = (long)pread(fd, buf, 10, end + 100);
    show("pread(10, end+100)", r, NULL, 0);
    show("lseek(7, SEEK_SET)", (long)lseek(fd, 7, SEEK_SET), NULL, 0);
    r = (long)read(fd, buf, 6);
    show("read(6)", r, buf, r);
    show("lseek(-3, SEEK_CUR)", (long)lseek(fd, -3, SEEK_CUR), NULL, 0);
    r = (long)read(fd, buf, 6);
    show("read(6)", r, buf, r);
    show("lseek(-1, SEEK_SET)", (long)lseek(fd, -1, SEEK_SET), NULL, 0);
    show("lseek(-4, SEEK_END)", (long)lseek(fd, -4, SEEK_END), NULL, 0);
    r = (long)read(fd, buf, sizeof buf);
    show("read(rest)", r, buf, r);
    show("read(at eof)", (long)read(fd, buf, sizeof buf), NULL, 0);
    show("write(input)", (long)write(fd, "x", 1), NULL, 0);
    close(fd);
    show("read(closed)", (long)read(fd, buf, 1), NULL, 0);

    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0) {
        perror(out);
        return 1;
    }
    show("write(header)", (long)write(o, "HEADER??\n", 9), NULL, 0);
    for (int i = 0; i < 20; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "record %02d\n", i);
        if (write(o, line, (size_t)n) != n) {
            perror("write");
            return 1;
        }
    }
    show("pwrite(6, 0)", (long)pwrite(o, "HEADER", 6, 0), NULL, 0);
    show("pwrite(2, 6)", (long)pwrite(o, "OK", 2, 6), NULL, 0);
    show("lseek(0, SEEK_CUR)", (long)lseek(o, 0, SEEK_CUR), NULL, 0);
    show("read(output)", (long)read(o, buf, 1), NULL, 0);
    show("write(trailer)", (long)write(o, "END\n", 4), NULL, 0);
    close(o);
    return 0;
}

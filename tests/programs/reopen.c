/* reopen: open /dev/output three times: O_TRUNC and a long text, O_TRUNC
 * again and a short one (the file must then hold only the short one), then
 * O_APPEND and a last line.  Reads /dev/input twice the same way: each open
 * starts at offset 0.  argv[1]/argv[2] replace the paths for a native run. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void put(const char *path, int flags, const char *text)
{
    int fd = open(path, O_WRONLY | flags, 0644);
    if (fd < 0) {
        perror(path);
        return;
    }
    printf("write %zd\n", write(fd, text, strlen(text)));
    close(fd);
}

int main(int argc, char **argv)
{
    const char *in = argc > 1 ? argv[1] : "/dev/input";
    const char *out = argc > 2 ? argv[2] : "/dev/output";
    for (int i = 0; i < 2; i++) {
        char buf[8] = {0};
        int fd = open(in, O_RDONLY);
        printf("read %zd [%.5s]\n", read(fd, buf, 5), buf);
        close(fd);
    }
    put(out, O_CREAT | O_TRUNC, "a long first version of the output\n");
    put(out, O_CREAT | O_TRUNC, "short\n");
    put(out, O_APPEND, "appended\n");
    return 0;
}

/* chanperm: channels keep their direction and kind.  Opening stdin for
 * writing or stdout for reading, reading a write-only fd, seeking a stream,
 * opening an undeclared channel, mapping the input shared-writable: all
 * fail.  Mapping /dev/input privately read-only works and shows its bytes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void show(const char *what, long r)
{
    printf("%s = %ld%s%s\n", what, r < 0 ? -1L : r >= 0 && r < 100 ? r : 100,
           r < 0 ? " " : "", r < 0 ? strerror(errno) : "");
    errno = 0;
}

int main(void)
{
    char c;
    show("open(/dev/stdin, O_WRONLY)", open("/dev/stdin", O_WRONLY));
    show("open(/dev/stdout, O_RDONLY)", open("/dev/stdout", O_RDONLY));
    show("open(/dev/input, O_RDWR)", open("/dev/input", O_RDWR));
    show("open(/dev/input, O_WRONLY)", open("/dev/input", O_WRONLY));
    show("open(/dev/output)", open("/dev/output", O_WRONLY));
    show("open(/dev/nvram)", open("/dev/nvram", O_RDONLY));
    show("read(stdout)", read(1, &c, 1));
    show("write(stdin)", write(0, "x", 1));
    show("lseek(stdout)", lseek(1, 0, SEEK_SET));
    show("ftruncate(stdout)", ftruncate(1, 0));
    int in = open("/dev/input", O_RDONLY);
    void *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, in, 0);
    show("mmap(input, shared rw)", shared == MAP_FAILED ? -1 : 0);
    char *priv = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, in, 0);
    show("mmap(input, private r)", priv == MAP_FAILED ? -1 : 0);
    if (priv != MAP_FAILED)
        printf("mapped: %.11s\n", priv);
    return 0;
}

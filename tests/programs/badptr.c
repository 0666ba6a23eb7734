/* badptr (hostile): system calls with absurd pointers, lengths, offsets, fds
 * and numbers.  Every call must come back with an error (or a sane count):
 * the sandbox may neither crash nor be killed.  Needs /dev/input.  Only for
 * the sandbox: natively some of these calls wreck the process on purpose
 * (fds are truncated to 32 bits, getrandom overruns buf). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static char buf[64];

static void show(const char *what, long r)
{
    printf("%s = %ld errno=%d\n", what, r, r < 0 ? errno : 0);
    errno = 0;
}

int main(int argc, char **argv)
{
    (void)argc, (void)argv;
    int in = open("/dev/input", O_RDONLY);
    if (in < 0) {
        perror("open");
        return 1;
    }
    const long big = INT64_MAX;
    show("read(NULL)", syscall(SYS_read, in, 0L, 16L));
    lseek(in, 0, SEEK_END);                 /* at EOF nothing is copied to buf */
    show("read(huge count at eof)", syscall(SYS_read, in, (long)buf, -1L));
    lseek(in, 0, SEEK_SET);
    show("read(top of memory)", syscall(SYS_read, in, -16L, 16L));
    show("write(NULL)", syscall(SYS_write, 1, 0L, 16L));
    show("write(huge count)", syscall(SYS_write, 1, (long)buf, big));
    show("write(wrapping)", syscall(SYS_write, 1, (long)buf, -(long)(uintptr_t)buf));
    struct iovec wrap[2] = {{buf, 8}, {buf, SIZE_MAX - 4}};
    show("writev(sum overflows)", syscall(SYS_writev, 1, (long)wrap, 2L));
    show("readv(NULL iov)", syscall(SYS_readv, in, 0L, 1L));
    show("readv(huge iovcnt)", syscall(SYS_readv, in, (long)wrap, 1L << 30));
    show("readv(negative iovcnt)", syscall(SYS_readv, in, (long)wrap, -1L));
    show("pread(negative offset)", syscall(SYS_pread64, in, (long)buf, 8L, -1L));
    show("pread(huge offset)", syscall(SYS_pread64, in, (long)buf, 8L, big));
    show("lseek(huge)", syscall(SYS_lseek, in, big, (long)SEEK_SET));
    show("lseek(overflow)", syscall(SYS_lseek, in, big, (long)SEEK_CUR));
    show("read(at huge offset)", syscall(SYS_read, in, (long)buf, 8L));
    show("lseek(bad whence)", syscall(SYS_lseek, in, 0L, 99L));
    show("open(NULL)", syscall(SYS_open, 0L, (long)O_RDONLY));
    show("open(bad pointer)", syscall(SYS_open, -4096L, (long)O_RDONLY));
    show("fstat(NULL)", syscall(SYS_fstat, in, 0L));
    show("fstat(bad fd)", syscall(SYS_fstat, 12345L, (long)buf));
    show("read(fd -1)", syscall(SYS_read, -1L, (long)buf, 1L));
    show("read(fd 2^32)", syscall(SYS_read, 1L << 32, (long)buf, 1L));
    show("close(fd 2^32+1)", syscall(SYS_close, (1L << 32) + 1));
    show("dup2(1, huge)", syscall(SYS_dup2, 1L, 1L << 40));
    show("clock_gettime(NULL)", syscall(SYS_clock_gettime, (long)CLOCK_MONOTONIC, 0L));
    show("clock_gettime(bad clock)", syscall(SYS_clock_gettime, 1L << 40, (long)buf));
    show("uname(NULL)", syscall(SYS_uname, 0L));
    show("getrandom(huge)", syscall(SYS_getrandom, (long)buf, big, 0L));
    show("getrandom(bad flags)", syscall(SYS_getrandom, (long)buf, 8L, 0x1000L));
    show("mmap(huge)", syscall(SYS_mmap, 0L, big, (long)(PROT_READ | PROT_WRITE),
                               (long)(MAP_PRIVATE | MAP_ANONYMOUS), -1L, 0L));
    show("mmap(len 0)", syscall(SYS_mmap, 0L, 0L, (long)PROT_READ,
                                (long)(MAP_PRIVATE | MAP_ANONYMOUS), -1L, 0L));
    show("munmap(huge)", syscall(SYS_munmap, 4096L, big));
    show("mprotect(huge)", syscall(SYS_mprotect, 4096L, big, (long)PROT_READ));
    long brk0 = syscall(SYS_brk, 0L);
    printf("brk(huge) moved: %d\n", syscall(SYS_brk, big) != brk0);
    struct timespec bad = {0, 2000000000L};
    show("nanosleep(bad nsec)", syscall(SYS_nanosleep, (long)&bad, 0L));
    show("nanosleep(NULL)", syscall(SYS_nanosleep, 0L, 0L));
    show("syscall(-1)", syscall(-1L));
    show("syscall(1<<40)", syscall(1L << 40));
    show("syscall(x32 getpid)", syscall(0x40000000L | SYS_getpid));
    printf("survived\n");
    return 0;
}

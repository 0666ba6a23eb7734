/* fastcall (hostile): the channel reads and writes the native supervisor serves
 * in C (engines/native/fastcall.c), with every argument it must refuse or hand
 * to the personality.  Each call's result goes to stderr ("what = ret errno"):
 * the bytes must be the same whichever code answers the call.
 *
 *   fastcall edges   pointers, lengths, iovec counts, overlaps, page protections,
 *                    descriptors closed, dup'ed and of the wrong access
 *   fastcall quota   1000-byte writes to stdout, then 1000-byte reads of stdin,
 *                    each until the first error (the test sets the quotas)
 *   fastcall copy    stdin to stdout, 1000 bytes a call
 *   fastcall identity  the calls answered with a constant of the run (getpid,
 *                    getuid, set_tid_address ...), with hostile arguments, 100
 *                    times each; ioctl on open, closed and impossible descriptors
 *                    (100 times each); arch_prctl setting the FS base (100 times)
 *                    and GS, and with a code wider than 32 bits; clock_gettime
 *                    (100 times, unknown clocks, bad and read-only buffers); then
 *                    the virtual clock (it counts the calls)
 *   fastcall exit N [group]  the raw exit (or exit_group) call with N, a 64-bit
 *                    number (the status is its low byte) */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static char data[4096], in[4096];
static const char rodata[64] = "read-only bytes";
static char bss_pages[3 * 4096] __attribute__((aligned(4096)));

static void show(const char *what, long r)
{
    dprintf(2, "%s = %ld errno=%d\n", what, r, r < 0 ? errno : 0);
    errno = 0;
}

static long wv(int fd, const struct iovec *iov, long n)
{
    return syscall(SYS_writev, fd, iov, n);
}

/* Three pages whose middle one's protection changes: the protection table's per-page
 * path, in a page of the heap (private), of the data segment and of the stack (natively
 * shared with the supervisor, whose C loop copies there without the kernel's check:
 * the table's is the only one) */
static void protections(char *pages)
{
    memset(pages, 'p', 3 * 4096);
    show("mprotect(middle none)", mprotect(pages + 4096, 4096, PROT_NONE));
    show("write(before the none page)", syscall(SYS_write, 1, pages, 4096L));
    show("write(into the none page)", syscall(SYS_write, 1, pages + 4000, 200L));
    show("mprotect(middle read)", mprotect(pages + 4096, 4096, PROT_READ));
    show("write(across read pages)", syscall(SYS_write, 1, pages + 4000, 200L));
    show("read(into the read-only page)", syscall(SYS_read, 0, pages + 4096, 10L));
    show("read(ending in it)", syscall(SYS_read, 0, pages + 4090, 10L));
    show("read(into rodata)", syscall(SYS_read, 0, rodata, 10L));
    show("read(into the last writable page)", syscall(SYS_read, 0, pages + 8192, 10L));
    show("write(it)", syscall(SYS_write, 1, pages + 8192, 10L));

    /* a writev's iovec array in pages whose protection changed: the C loop reads the
     * array by pread of /proc/PID/mem, which the pages' protections do not hold (the
     * table must): in the page, crossing into it, crossing out of it */
    show("mprotect(middle rw)", mprotect(pages + 4096, 4096, PROT_READ | PROT_WRITE));
    struct iovec *into = (struct iovec *)(pages + 4096 - 16), *from = into + 1;
    struct iovec *out = (struct iovec *)(pages + 8192 - 16);
    into[0] = (struct iovec){data, 2};
    from[0] = (struct iovec){data, 3};
    from[1] = (struct iovec){data, 4};
    out[0] = (struct iovec){data, 5};
    out[1] = (struct iovec){data, 6};
    show("mprotect(array page none)", mprotect(pages + 4096, 4096, PROT_NONE));
    show("writev(array in a none page)", wv(1, from, 2));
    show("writev(array crossing into a none page)", wv(1, into, 2));
    show("writev(array crossing out of a none page)", wv(1, out, 2));
    show("mprotect(array page write-only)", mprotect(pages + 4096, 4096, PROT_WRITE));
    show("writev(array in a write-only page)", wv(1, from, 2));
    show("mprotect(array page read)", mprotect(pages + 4096, 4096, PROT_READ));
    show("writev(array in a read page)", wv(1, from, 2));
    show("writev(array crossing into a read page)", wv(1, into, 2));
    show("writev(array crossing out of a read page)", wv(1, out, 2));

}

static void edges(void)
{
    for (int i = 0; i < (int)sizeof data; i++)
        data[i] = 'a' + i % 26;
    show("write", syscall(SYS_write, 1, data, 100L));
    show("write(NULL)", syscall(SYS_write, 1, 0L, 16L));
    show("write(low page)", syscall(SYS_write, 1, 0x1000L, 16L));
    show("write(top of memory)", syscall(SYS_write, 1, -16L, 16L));
    show("write(huge count)", syscall(SYS_write, 1, data, INT64_MAX));
    show("write(wrapping)", syscall(SYS_write, 1, data, -(long)(uintptr_t)data));
    show("write(0 bytes)", syscall(SYS_write, 1, data, 0L));
    show("write(rodata)", syscall(SYS_write, 1, rodata, 15L));
    show("write(2 MiB from data, past its segment)", syscall(SYS_write, 1, data, 2L << 20));

    struct iovec iov[1100];
    for (int i = 0; i < 1100; i++)
        iov[i] = (struct iovec){data + i % 100, 3};
    show("writev(1024)", wv(1, iov, 1024));
    show("writev(1025)", wv(1, iov, 1025));
    show("writev(-1)", wv(1, iov, -1));
    show("writev(0)", wv(1, iov, 0));
    show("writev(NULL array)", wv(1, 0, 2));
    show("writev(array past the top)", wv(1, (struct iovec *)-8L, 2));
    struct iovec one_bad[3] = {{data, 10}, {(void *)0x1000, 10}, {data, 10}};
    show("writev(one bad base)", wv(1, one_bad, 3));
    struct iovec huge[2] = {{data, 10}, {data, (size_t)1 << 63}};
    show("writev(huge length)", wv(1, huge, 2));
    struct iovec wrap[2] = {{data, 10}, {data, -(size_t)(uintptr_t)data}};
    show("writev(wrapping length)", wv(1, wrap, 2));
    struct iovec overlap[3] = {{data, 50}, {data + 25, 50}, {data, 50}};
    show("writev(overlapping)", wv(1, overlap, 3));
    struct iovec empties[4] = {{0, 0}, {data, 5}, {(void *)0x1000, 0}, {data + 5, 5}};
    show("writev(empty and bad-but-empty)", wv(1, empties, 4));
    struct iovec zeros[2] = {{data, 0}, {data, 0}};
    show("writev(all empty)", wv(1, zeros, 2));

    char *pages = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    dprintf(2, "-- heap pages\n");
    protections(pages);
    show("munmap(array page)", munmap(pages + 4096, 4096));
    show("writev(array in an unmapped page)", wv(1, (struct iovec *)(pages + 4096), 2));
    dprintf(2, "-- data segment pages\n");
    protections(bss_pages);
    show("mprotect(middle rw again)", mprotect(bss_pages + 4096, 4096, PROT_READ | PROT_WRITE));
    char frame[4 * 4096];
    char *stack_pages = (char *)(((uintptr_t)frame + 4095) & ~(uintptr_t)4095);
    dprintf(2, "-- stack pages\n");
    protections(stack_pages);
    show("mprotect(middle rw again)", mprotect(stack_pages + 4096, 4096, PROT_READ | PROT_WRITE));

    /* reads: overlapping iovecs (the later one wins), bad ones, the wrong access */
    struct iovec rov[3] = {{in, 8}, {in + 4, 8}, {in + 100, 4}};
    show("readv(overlapping)", syscall(SYS_readv, 0, rov, 3));
    show("write(what it left)", syscall(SYS_write, 1, in, 120L));
    struct iovec rbad[2] = {{in, 8}, {(void *)rodata, 8}};
    show("readv(into rodata)", syscall(SYS_readv, 0, rbad, 2));
    show("readv(1025)", syscall(SYS_readv, 0, iov, 1025L));
    show("read(huge count)", syscall(SYS_read, 0, in, INT64_MAX));
    show("read(stdout)", syscall(SYS_read, 1, in, 10L));
    show("write(stdin)", syscall(SYS_write, 0, data, 10L));
    show("write(fd 2^32 + 1)", syscall(SYS_write, (1L << 32) + 1, data, 10L));
    show("write(fd -1)", syscall(SYS_write, -1L, data, 10L));
    show("write(fd 1023)", syscall(SYS_write, 1023L, data, 10L));
    show("write(fd 5000)", syscall(SYS_write, 5000L, data, 10L));

    /* descriptors dup'ed and closed */
    int copy = dup(1);
    show("dup(1)", copy);
    show("write(the copy)", syscall(SYS_write, copy, data, 7L));
    show("close(1)", close(1));
    show("write(closed 1)", syscall(SYS_write, 1, data, 7L));
    show("write(the copy after close)", syscall(SYS_write, copy, data, 7L));
    show("dup2(2, 1)", dup2(2, 1));
    show("write(1 now stderr)", syscall(SYS_write, 1, "to stderr\n", 10L));
    show("dup2(copy, 1)", dup2(copy, 1));
    show("write(1 again)", syscall(SYS_write, 1, data, 7L));

    /* the rest of stdin, in odd sizes, to its end and past it */
    long got, total = 0;
    while ((got = syscall(SYS_read, 0, in, 777L)) > 0) {
        total += got;
        syscall(SYS_write, 1, in, got);
    }
    show("read(to the end)", total);
    show("read(at the end)", syscall(SYS_read, 0, in, 10L));
    struct iovec rv[2] = {{in, 5}, {in + 10, 5}};
    show("readv(at the end)", syscall(SYS_readv, 0, rv, 2));
}

static void quota(void)
{
    memset(data, 'q', 1000);
    long r, n = 0;
    while ((r = syscall(SYS_write, 1, data, 1000L)) > 0)
        n += r;
    int e = errno;
    show("written", n);
    errno = e;
    show("write(after)", r);
    n = 0;
    while ((r = syscall(SYS_read, 0, in, 1000L)) > 0)
        n += r;
    e = errno;
    show("read", n);
    errno = e;
    show("read(after)", r);
}

static void identity(void)
{
    static const struct { long nr; const char *name; } calls[] = {
        {SYS_sched_yield, "sched_yield"}, {SYS_getpid, "getpid"}, {SYS_getuid, "getuid"},
        {SYS_getgid, "getgid"}, {SYS_geteuid, "geteuid"}, {SYS_getegid, "getegid"},
        {SYS_getppid, "getppid"}, {SYS_sigaltstack, "sigaltstack"}, {SYS_gettid, "gettid"},
        {SYS_set_tid_address, "set_tid_address"}, {SYS_set_robust_list, "set_robust_list"},
        {SYS_rseq, "rseq"},
    };
    for (unsigned i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        long first = syscall(calls[i].nr, -1L, 0x1000L, -16L, 1L << 62, 0L, 7L), changed = 0;
        int e = errno;
        for (int k = 0; k < 100; k++)
            changed += syscall(calls[i].nr, (long)k, (long)data, -1L, 0L, 0L, 0L) != first;
        errno = e;
        show(calls[i].name, first);
        show("  changed", changed);
    }
    static const struct { long fd, request; const char *name; } ioctls[] = {
        {1, TIOCGWINSZ, "ioctl(1, TIOCGWINSZ)"}, {0, TCGETS, "ioctl(0, TCGETS)"},
        {2, -1L, "ioctl(2, -1)"}, {7, TIOCGWINSZ, "ioctl(7: never open)"},
        {-1L, TIOCGWINSZ, "ioctl(-1)"}, {1L << 40 | 1, TIOCGWINSZ, "ioctl(2^40 + 1)"},
    };
    struct winsize ws;
    for (unsigned i = 0; i < sizeof ioctls / sizeof ioctls[0]; i++) {
        long first = syscall(SYS_ioctl, ioctls[i].fd, ioctls[i].request, &ws), changed = 0;
        int e = errno;
        for (int k = 0; k < 100; k++)
            changed += syscall(SYS_ioctl, ioctls[i].fd, ioctls[i].request, (long)k) != first;
        errno = e;
        show(ioctls[i].name, first);
        show("  ioctl changed", changed);
    }
    /* arch_prctl setting a base (served in C: let through to the kernel), with the
     * code's high bits set (every other code is the personality's: EINVAL) */
    unsigned long fs = 0;
    show("arch_prctl(ARCH_GET_FS)", syscall(SYS_arch_prctl, 0x1003L, &fs));
    long set = 0;
    for (int k = 0; k < 100; k++)
        set += syscall(SYS_arch_prctl, 0x1002L, fs) != 0;
    show("arch_prctl(ARCH_SET_FS, same) failed", set);
    show("arch_prctl(ARCH_SET_GS, 0)", syscall(SYS_arch_prctl, 0x1001L, 0L));
    show("arch_prctl(2^32 + ARCH_SET_FS)", syscall(SYS_arch_prctl, 1L << 32 | 0x1002, fs));
    show("arch_prctl(2^63 + ARCH_SET_GS)", syscall(SYS_arch_prctl, (long)(1UL << 63 | 0x1001), 0L));
    /* clock_gettime (served in C into a writable buffer of a known clock): results
     * only (the values are the engine's clock), and that they never go back */
    struct timespec now, before = {0, 0};
    long failed = 0, back = 0;
    for (int k = 0; k < 100; k++) {
        failed += syscall(SYS_clock_gettime, (long)(k % 2 ? CLOCK_MONOTONIC : CLOCK_REALTIME),
                          &now) != 0;
        if (k % 2 && (now.tv_sec < before.tv_sec
                      || (now.tv_sec == before.tv_sec && now.tv_nsec < before.tv_nsec)))
            back++;
        if (k % 2)
            before = now;
    }
    show("clock_gettime failed", failed);
    show("clock_gettime went back", back);
    show("clock_gettime(11)", syscall(SYS_clock_gettime, 11L, &now));
    show("clock_gettime(12)", syscall(SYS_clock_gettime, 12L, &now));
    show("clock_gettime(-1)", syscall(SYS_clock_gettime, -1L, &now));
    show("clock_gettime(2^32 + 1)", syscall(SYS_clock_gettime, 1L << 32 | 1, &now));
    show("clock_gettime(NULL)", syscall(SYS_clock_gettime, (long)CLOCK_MONOTONIC, 0L));
    show("clock_gettime(read-only)", syscall(SYS_clock_gettime, (long)CLOCK_MONOTONIC, rodata));
    show("clock_gettime(page end)", syscall(SYS_clock_gettime, (long)CLOCK_MONOTONIC,
                                            data + sizeof data - 8));
    close(0);
    show("ioctl(0 after close)", syscall(SYS_ioctl, 0L, (long)TIOCGWINSZ, &ws));
    show("ioctl(3 = dup(2))", syscall(SYS_ioctl, (long)dup(2), (long)TIOCGWINSZ, &ws));
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    dprintf(2, "monotonic = %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "edges";
    long n;
    if (strcmp(mode, "copy") == 0)
        while ((n = read(0, in, 1000)) > 0)
            if (write(1, in, n) != n)
                return 1;
    if (strcmp(mode, "quota") == 0)
        quota();
    if (strcmp(mode, "edges") == 0)
        edges();
    if (strcmp(mode, "identity") == 0)
        identity();
    if (strcmp(mode, "exit") == 0 && argc > 2)
        syscall(argc > 3 ? SYS_exit_group : SYS_exit, strtoll(argv[2], NULL, 0));
    return 0;
}

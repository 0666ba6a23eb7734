/* hostile8 (hostile): review8's attempts against both engines, each printed as
 * "name result" (raw -errno, or what the guest saw).  argv[1] picks a set:
 *
 *   threads   every way to a second thread or process (clone with CLONE_THREAD and a
 *             stack, clone3, vfork, fork), then whether anything else runs: a counter
 *             the would-be thread increments stays 0, getpid/gettid unchanged
 *   pointers  buffers in memory the guest does not own (the loader's pages, the kernel's
 *             vsyscall page, the stack's guard below it, the user manifest, the trap
 *             page, a range that runs off the end of a region), for calls that read and
 *             that write guest memory
 *   fds       descriptor numbers the personality does not know or that are the
 *             loader's (1030, 1023, 1024, 2^31-1, -1 as 64 bits with a valid low half),
 *             dup'ing onto them, then I/O through them
 *   vectors   iovec arrays whose lengths sum past SSIZE_MAX, or wrap, or whose count is
 *             IOV_MAX+1, over the C fast path's and the personality's checks
 *   offsets   huge and negative offsets of pread/preadv/lseek on /dev/input, stdin,
 *             /dev/output and an image file (/bin/f), then a write far past the quota
 *   memory    mremap/mprotect/munmap/madvise/mmap over the loader's pages, the stack,
 *             the manifest, the trap page and across two regions
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "rawsys.h"               /* sys(), TRY() */

#define LOADER 0x7E0000000000L
#define VSYSCALL 0xffffffffff600000L
#define STACK_BOTTOM (0x100000000L - (16L << 20))
#define MANIFEST 0xFEFF0000L
#define TRAP 0x10000L

static volatile int counter;
static char stack2[65536] __attribute__((aligned(16)));
static char page[8192] __attribute__((aligned(4096)));
static const char rodata[8192] __attribute__((aligned(4096))) = "read-only";

static void threads(void)
{
    long pid = sys(SYS_getpid, 0, 0, 0, 0, 0, 0), tid = sys(SYS_gettid, 0, 0, 0, 0, 0, 0);
    /* CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM: a thread
     * whose first instruction (the syscall's return) would see rax 0 and bump counter */
    long flags = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000;
    long ret;
    register long r10 __asm__("r10") = 0;
    register long r8 __asm__("r8") = 0;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "lock incl counter(%%rip)\n\t"
                     "2: jmp 2b\n"              /* a thread would spin here forever */
                     "1:"
                     : "=a"(ret)
                     : "a"(SYS_clone), "D"(flags), "S"(stack2 + sizeof stack2), "d"(0),
                       "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    printf("clone_thread %ld\n", ret);
    struct { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
             tls; } args = {0x100 | 0x800 | 0x10000, 0, 0, 0, 0, (uint64_t)stack2,
                            sizeof stack2, 0};
    TRY("clone3_thread", 435, (long)&args, sizeof args, 0, 0, 0, 0);
    args.flags = 0;
    args.exit_signal = 17;
    TRY("clone3_process", 435, (long)&args, sizeof args, 0, 0, 0, 0);
    TRY("clone_process", SYS_clone, 17, 0, 0, 0, 0, 0);
    TRY("vfork", SYS_vfork, 0, 0, 0, 0, 0, 0);
    TRY("fork", SYS_fork, 0, 0, 0, 0, 0, 0);
    TRY("unshare", SYS_unshare, 0x10000000, 0, 0, 0, 0, 0);
    TRY("setns", SYS_setns, 0, 0, 0, 0, 0, 0);
    TRY("pidfd_open_parent", 434, 1, 0, 0, 0, 0, 0);
    TRY("pidfd_getfd", 438, 0, 1030, 0, 0, 0, 0);
    TRY("process_madvise", 440, 0, (long)page, 1, 0, 0, 0);
    TRY("set_tid_address_loader", SYS_set_tid_address, LOADER, 0, 0, 0, 0, 0);
    TRY("rt_sigreturn", SYS_rt_sigreturn, 0, 0, 0, 0, 0, 0);
    for (volatile int i = 0; i < 2000000; i++)
        ;                                       /* time for a thread to run, if any */
    printf("counter %d\n", counter);
    printf("same_pid %d\n", sys(SYS_getpid, 0, 0, 0, 0, 0, 0) == pid
                            && sys(SYS_gettid, 0, 0, 0, 0, 0, 0) == tid);
}

static void pointers(void)
{
    static const struct { const char *name; long addr; long len; } bad[] = {
        {"loader", LOADER, 64}, {"loader_page2", LOADER + 4096, 64},
        {"vsyscall", VSYSCALL, 64}, {"guard", STACK_BOTTOM - 64, 64},
        {"stack_top_cross", 0x100000000L - 8, 16}, {"manifest", MANIFEST, 64},
        {"trap", TRAP, 64}, {"null_page", 0, 1}, {"kernel", (long)0xffff888000000000L, 64},
        {"noncanonical", 0x800000000000L, 64},
    };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[64];
        struct iovec iov = {(void *)bad[i].addr, (size_t)bad[i].len};
        snprintf(name, sizeof name, "write_from_%s", bad[i].name);
        TRY(name, SYS_write, 1, bad[i].addr, bad[i].len, 0, 0, 0);
        snprintf(name, sizeof name, "writev_from_%s", bad[i].name);
        TRY(name, SYS_writev, 1, (long)&iov, 1, 0, 0, 0);
        snprintf(name, sizeof name, "read_into_%s", bad[i].name);
        TRY(name, SYS_read, 0, bad[i].addr, bad[i].len, 0, 0, 0);
        snprintf(name, sizeof name, "readv_into_%s", bad[i].name);
        TRY(name, SYS_readv, 0, (long)&iov, 1, 0, 0, 0);
        snprintf(name, sizeof name, "iovec_at_%s", bad[i].name);
        TRY(name, SYS_writev, 1, bad[i].addr, 1, 0, 0, 0);
        snprintf(name, sizeof name, "clock_into_%s", bad[i].name);
        TRY(name, SYS_clock_gettime, 1, bad[i].addr, 0, 0, 0, 0);
        snprintf(name, sizeof name, "getrandom_into_%s", bad[i].name);
        TRY(name, SYS_getrandom, bad[i].addr, bad[i].len, 0, 0, 0, 0);
        snprintf(name, sizeof name, "fstat_into_%s", bad[i].name);
        TRY(name, SYS_fstat, 0, bad[i].addr, 0, 0, 0, 0);
        snprintf(name, sizeof name, "open_path_%s", bad[i].name);
        TRY(name, SYS_open, bad[i].addr, 0, 0, 0, 0, 0);
        snprintf(name, sizeof name, "get_fs_into_%s", bad[i].name);
        TRY(name, SYS_arch_prctl, 0x1003, bad[i].addr, 0, 0, 0, 0);
        snprintf(name, sizeof name, "uname_into_%s", bad[i].name);
        TRY(name, SYS_uname, bad[i].addr, 0, 0, 0, 0, 0);
    }
    /* a buffer that starts in the data and runs past its region */
    TRY("read_past_data", SYS_read, 0, (long)page, 1L << 32, 0, 0, 0);
    /* read-only data: a read into it is EFAULT, whichever path answers */
    TRY("read_into_rodata", SYS_read, 0, (long)rodata, 16, 0, 0, 0);
    struct iovec ro = {(void *)rodata, 16};
    TRY("readv_into_rodata", SYS_readv, 0, (long)&ro, 1, 0, 0, 0);
    printf("rodata %s\n", rodata);
}

static void fds(void)
{
    static const long numbers[] = {1030, 1023, 1024, 4095, 0x7fffffffL, -1, 0x100000001L,
                                   (long)0xffffffff00000001L};
    for (unsigned i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "write_%lx", numbers[i]);
        TRY(name, SYS_write, numbers[i], (long)"x\n", 2, 0, 0, 0);
        snprintf(name, sizeof name, "read_%lx", numbers[i]);
        TRY(name, SYS_read, numbers[i], (long)page, 1, 0, 0, 0);
        snprintf(name, sizeof name, "fstat_%lx", numbers[i]);
        TRY(name, SYS_fstat, numbers[i], (long)page, 0, 0, 0, 0);
        snprintf(name, sizeof name, "dup2_1_to_%lx", numbers[i]);
        TRY(name, SYS_dup2, 1, numbers[i], 0, 0, 0, 0);
        snprintf(name, sizeof name, "fcntl_dupfd_%lx", numbers[i]);
        TRY(name, SYS_fcntl, 1, 0 /* F_DUPFD */, numbers[i], 0, 0, 0);
    }
    /* the loader's socket number, made the guest's own stdout: writes go to the
     * channel (the personality's), closing it closes the personality's copy only */
    TRY("dup2_stdout_to_1030", SYS_dup2, 1, 1030, 0, 0, 0, 0);
    TRY("write_1030", SYS_write, 1030, (long)"via-1030\n", 9, 0, 0, 0);
    TRY("sendmsg_1030", SYS_sendmsg, 1030, (long)page, 0, 0, 0, 0);
    TRY("close_1030", SYS_close, 1030, 0, 0, 0, 0, 0);
    TRY("close_1030_again", SYS_close, 1030, 0, 0, 0, 0, 0);
    /* a descriptor swapped under the C loop's cache: stdout, then stdin at the same
     * number; the write must fail (the channel is read-only) */
    TRY("dup2_stdout_to_9", SYS_dup2, 1, 9, 0, 0, 0, 0);
    TRY("write_9", SYS_write, 9, (long)"nine\n", 5, 0, 0, 0);
    TRY("dup2_stdin_to_9", SYS_dup2, 0, 9, 0, 0, 0, 0);
    TRY("write_9_stdin", SYS_write, 9, (long)"leak\n", 5, 0, 0, 0);
    TRY("read_9_stdin", SYS_read, 9, (long)page, 4, 0, 0, 0);
    TRY("dup2_stdout_to_9_again", SYS_dup2, 1, 9, 0, 0, 0, 0);
    TRY("read_9_stdout", SYS_read, 9, (long)page, 4, 0, 0, 0);
}

static void vectors(void)
{
    struct iovec wrap[2] = {{page, 0x7fffffffffffffffL}, {page, 2}};
    TRY("writev_sum_past_ssize_max", SYS_writev, 1, (long)wrap, 2, 0, 0, 0);
    TRY("readv_sum_past_ssize_max", SYS_readv, 0, (long)wrap, 2, 0, 0, 0);
    struct iovec wrap64[2] = {{page, 0xffffffffffffffffL}, {page, 2}};
    TRY("writev_len_all_ones", SYS_writev, 1, (long)wrap64, 2, 0, 0, 0);
    TRY("readv_len_all_ones", SYS_readv, 0, (long)wrap64, 2, 0, 0, 0);
    static struct iovec many[1025];
    for (int i = 0; i < 1025; i++)
        many[i] = (struct iovec){page, 1};
    TRY("writev_iov_max_plus_1", SYS_writev, 1, (long)many, 1025, 0, 0, 0);
    TRY("writev_count_high_bits", SYS_writev, 1, (long)many, 0x100000001L, 0, 0, 0);
    TRY("writev_count_negative", SYS_writev, 1, (long)many, -1, 0, 0, 0);
    /* an iovec array that runs off the end of the data */
    TRY("writev_array_past_region", SYS_writev, 1, (long)(page + sizeof page - 8), 1, 0, 0,
        0);
    TRY("write_len_high_bit", SYS_write, 1, (long)page, (long)0x8000000000000001L, 0, 0, 0);
}

static void offsets(void)
{
    int out = open("/dev/output", O_WRONLY), in = open("/dev/input", O_RDONLY);
    int img = open("/bin/f", O_RDONLY);
    printf("opened %d %d %d\n", out >= 0, in >= 0, img >= 0);
    static const long offs[] = {0x7fffffffffffffffL, 0x7ffffffffffff000L, -1, -4096,
                                (long)0x8000000000000000L, 1L << 40, 2};
    for (unsigned i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        char name[64];
        struct iovec iov = {page, 4};
        memset(page, 0, 8);
        snprintf(name, sizeof name, "pread_input_%lx", offs[i]);
        TRY(name, SYS_pread64, in, (long)page, 4, offs[i], 0, 0);
        snprintf(name, sizeof name, "preadv_input_%lx", offs[i]);
        TRY(name, SYS_preadv, in, (long)&iov, 1, offs[i], offs[i] >> 32 >> 32, 0);
        snprintf(name, sizeof name, "pread_image_%lx", offs[i]);
        TRY(name, SYS_pread64, img, (long)page, 4, offs[i], 0, 0);
        printf("got %s\n", page);
        snprintf(name, sizeof name, "lseek_set_output_%lx", offs[i]);
        TRY(name, SYS_lseek, out, offs[i], SEEK_SET, 0, 0, 0);
        snprintf(name, sizeof name, "lseek_end_input_%lx", offs[i]);
        TRY(name, SYS_lseek, in, offs[i], SEEK_END, 0, 0, 0);
        snprintf(name, sizeof name, "lseek_end_image_%lx", offs[i]);
        TRY(name, SYS_lseek, img, offs[i], SEEK_END, 0, 0, 0);
        snprintf(name, sizeof name, "read_image_there_%lx", offs[i]);
        TRY(name, SYS_read, img, (long)page, 4, 0, 0, 0);
        snprintf(name, sizeof name, "lseek_cur_stdin_%lx", offs[i]);
        TRY(name, SYS_lseek, 0, offs[i], SEEK_CUR, 0, 0, 0);
    }
    /* past the quota (put_size): refused once, nothing written; the guest stops there */
    TRY("lseek_output_far", SYS_lseek, out, 1L << 40, SEEK_SET, 0, 0, 0);
    TRY("write_output_far", SYS_write, out, (long)"far", 3, 0, 0, 0);
    TRY("lseek_output_back", SYS_lseek, out, 0, SEEK_SET, 0, 0, 0);
    TRY("write_output_start", SYS_write, out, (long)"ok", 2, 0, 0, 0);
    TRY("ftruncate_output_huge", SYS_ftruncate, out, 1L << 40, 0, 0, 0, 0);
    TRY("fallocate_output_huge", SYS_fallocate, out, 0, 0, 1L << 40, 0, 0);
    TRY("sendfile_output", SYS_sendfile, out, in, 0, 1L << 30, 0, 0);
    TRY("copy_file_range", SYS_copy_file_range, in, 0, out, 0, 1L << 30, 0);
    TRY("splice", SYS_splice, in, 0, out, 0, 1L << 30, 0);
}

static void memory(void)
{
    TRY("mremap_loader", SYS_mremap, LOADER, 4096, 8192, 1, 0, 0);
    TRY("mremap_fixed_onto_loader", SYS_mremap, (long)page, 4096, 4096, 3, LOADER, 0);
    TRY("mremap_stack", SYS_mremap, STACK_BOTTOM, 4096, 8192, 1, 0, 0);
    TRY("mprotect_loader", SYS_mprotect, LOADER, 4096, PROT_READ | PROT_WRITE, 0, 0, 0);
    TRY("mprotect_trap_rw", SYS_mprotect, TRAP, 4096, PROT_READ | PROT_WRITE, 0, 0, 0);
    TRY("mprotect_manifest_rw", SYS_mprotect, MANIFEST, 4096, PROT_READ | PROT_WRITE, 0, 0,
        0);
    TRY("mprotect_across_stack_bottom", SYS_mprotect, STACK_BOTTOM - 4096, 8192, PROT_READ, 0,
        0, 0);
    TRY("mprotect_past_4g", SYS_mprotect, 0x100000000L - 4096, 8192, PROT_READ, 0, 0, 0);
    TRY("mprotect_len_wraps", SYS_mprotect, (long)page, -4096L, PROT_READ, 0, 0, 0);
    TRY("munmap_loader", SYS_munmap, LOADER, 4096, 0, 0, 0, 0);
    TRY("munmap_stack", SYS_munmap, STACK_BOTTOM, 4096, 0, 0, 0, 0);
    TRY("munmap_text", SYS_munmap, (long)memory & ~4095L, 4096, 0, 0, 0, 0);
    TRY("madvise_text_dontneed", SYS_madvise, (long)memory & ~4095L, 4096, MADV_DONTNEED, 0,
        0, 0);
    TRY("madvise_loader_dontneed", SYS_madvise, LOADER, 4096, MADV_DONTNEED, 0, 0, 0);
    TRY("madvise_rodata_dontneed", SYS_madvise, (long)rodata, 4096, MADV_DONTNEED, 0, 0, 0);
    TRY("mmap_fixed_loader", SYS_mmap, LOADER, 4096, PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    TRY("mmap_fixed_stack", SYS_mmap, STACK_BOTTOM, 4096, PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    TRY("mmap_fixed_text", SYS_mmap, (long)memory & ~4095L, 4096, PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    TRY("mmap_fixed_zero", SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    TRY("mmap_shared_anon", SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE,
        MAP_SHARED | MAP_ANONYMOUS, -1, 0) ;
    TRY("mmap_len_huge", SYS_mmap, 0, 1L << 47, PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TRY("brk_into_stack", SYS_brk, STACK_BOTTOM + 4096, 0, 0, 0, 0, 0);
    TRY("brk_into_loader", SYS_brk, LOADER, 0, 0, 0, 0, 0);
    /* rodata made writable is the guest's own: a read into it now works */
    TRY("mprotect_rodata_rw", SYS_mprotect, (long)rodata, 4096, PROT_READ | PROT_WRITE, 0, 0,
        0);
    TRY("mprotect_rodata_rwx", SYS_mprotect, (long)rodata, 4096, 7, 0, 0, 0);
    TRY("mprotect_rodata_none", SYS_mprotect, (long)rodata, 4096, PROT_NONE, 0, 0, 0);
    TRY("read_into_rodata_none", SYS_read, 0, (long)rodata, 4, 0, 0, 0);
    TRY("write_from_rodata_none", SYS_write, 1, (long)rodata, 4, 0, 0, 0);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(what, "threads"))
        threads();
    else if (!strcmp(what, "pointers"))
        pointers();
    else if (!strcmp(what, "fds"))
        fds();
    else if (!strcmp(what, "vectors"))
        vectors();
    else if (!strcmp(what, "offsets"))
        offsets();
    else if (!strcmp(what, "memory"))
        memory();
    else
        return 2;
    printf("survived\n");
    return 0;
}

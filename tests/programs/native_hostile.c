/* native_hostile (hostile): what a guest can try against the native engine's
 * containment.  argv[1] picks the attempt:
 *
 *   calls      every dangerous system call, printed as "name result" (raw -errno):
 *              both engines must print the same, all refused
 *   edges      edges of the calls the native filter routes and the kernel performs
 *              (the loader's socket, mprotect's bits, arch_prctl's addresses): both
 *              engines must print the same and count the same
 *   int80      `int $0x80` hidden in an immediate, reached by an indirect jump
 *   sysenter   `sysenter`, hidden the same way
 *   x32        a system call through the x32 ABI (bit 30 of the number)
 *   rdtsc      `rdtsc`, hidden
 *   cpuid      `cpuid`, hidden (where it faults natively, the program is not traced)
 *   selfwrite  a store into its own code
 *   spin       a loop without system calls
 *   spinning   write "spinning" to stdout (past the loader: a mediated call), then spin
 *   forkbomb   fork() 10000 times, printing how many succeeded
 *   fds        open /dev/stdin until refused, printing the count and errno
 *   plant W    fill 16 MiB of heap and 1 MiB of stack with W reversed (not in argv)
 *   scan W [loader N] count W reversed in fresh heap and stack (and, natively, in
 *              the N bytes of the loader's pages at 0x7e0000000000): what an earlier run left
 *   loaderdump N  natively: write the N bytes of the loader's pages to stdout
 *   loadercall NR N  natively: call NR (close or sendmsg) of the loader's socket (1030)
 *              through a `syscall` of the loader's own code (found in its N bytes: one
 *              followed by its error check), with stdout as descriptor 4, where the
 *              loader's error path writes (its socket is gone)
 *   manifest PROT N  store into the user manifest (which must fault) at once if PROT
 *              is 0, else first mprotect its region to PROT from its own code, printing
 *              the result, then the same through a `syscall` of the loader's code (in its
 *              N bytes, as loadercall; its error path on failure), printing that result
 *   manifestsum N  natively: mprotect the user manifest to PROT_READ through a `syscall`
 *              of the loader's code (as manifest), read its first page, make 200 more
 *              calls (a prefix a start-up snapshot records), then print the result and
 *              the page's sum: its own manifest's, in every run
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "rawsys.h"               /* sys(), TRY() */
/* jump into the immediate of a movabs: the hidden bytes run, the validator saw a mov */
#define HIDDEN(imm, eax) __asm__ volatile( \
    "lea 1f(%%rip), %%rcx\n\tadd $2, %%rcx\n\tjmp *%%rcx\n" \
    "1: movabs $" imm ", %%rax\n\t" : : "a"(eax) : "rcx", "memory")

static char page[8192] __attribute__((aligned(4096)));

#define LOADER 0x7e0000000000UL
#define MANIFEST 0xfeff0000L
#define NO_GADGET (-4096L)

/* mprotect(MANIFEST, 64 KiB, prot) through a `syscall` of the loader's code (in its
 * span bytes, as loadercall), with stdout as descriptor 4 for its error path: the
 * result (NO_GADGET: no such syscall found) */
static long manifest_via_loader(long prot, size_t span)
{
    const unsigned char *l = (const unsigned char *)LOADER;
    for (size_t i = 0; i + 13 <= span; i++)
        if (!memcmp(l + i, "\x0f\x05\x48\x85\xc0\x78", 6) &&
                !memcmp(l + i + 7, "\x48\x83\xc4", 3) && !memcmp(l + i + 11, "\x5b\xc3", 2)) {
            static const char text[] = "jumped in";   /* what the error path names */
            long frame = l[i + 10], nr = SYS_mprotect;
            sys(SYS_dup2, 1, 4, 0, 0, 0, 0);
            register long r8 __asm__("r8") = (long)text;    /* set after the call */
            __asm__ volatile("mov %6, %%r11\n\tpush %%rbx\n\tpush %%rbp\n\tmov %%rsp, %%rbp\n\t"
                             "and $-16, %%rsp\n\tlea 1f(%%rip), %%rbx\n\t"
                             "push %%rbx\n\tpush %%r8\n\tsub %%rcx, %%rsp\n\t"
                             "mov %%r8, %%rbx\n\tjmp *%%r11\n"
                             "1:\n\tmov %%rbp, %%rsp\n\tpop %%rbp\n\tpop %%rbx"
                             : "+a"(nr), "+c"(frame)
                             : "D"(MANIFEST), "S"(0x10000L), "d"(prot), "r"(r8), "r"(l + i)
                             : "r11", "memory");
            return nr;
        }
    return NO_GADGET;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(what, "calls")) {
        static char sh[] = "/bin/sh";
        static char *args[] = {sh, NULL};
        TRY("ptrace", SYS_ptrace, 0, 0, 0, 0, 0, 0);
        TRY("process_vm_writev", SYS_process_vm_writev, 1, (long)page, 1, (long)page, 1, 0);
        TRY("clone", SYS_clone, 17, 0, 0, 0, 0, 0);
        TRY("fork", SYS_fork, 0, 0, 0, 0, 0, 0);
        TRY("vfork", SYS_vfork, 0, 0, 0, 0, 0, 0);
        TRY("execve", SYS_execve, (long)sh, (long)args, 0, 0, 0, 0);
        TRY("open_host", SYS_open, (long)"/etc/passwd", 0, 0, 0, 0, 0);
        TRY("open_proc", SYS_open, (long)"/proc/self/mem", 2, 0, 0, 0, 0);
        TRY("socket", SYS_socket, 2, 1, 0, 0, 0, 0);
        TRY("io_uring_setup", SYS_io_uring_setup, 8, (long)page, 0, 0, 0, 0);
        TRY("userfaultfd", SYS_userfaultfd, 0, 0, 0, 0, 0, 0);
        TRY("perf_event_open", SYS_perf_event_open, (long)page, 0, -1, -1, 0, 0);
        TRY("bpf", SYS_bpf, 0, (long)page, 64, 0, 0, 0);
        TRY("seccomp", SYS_seccomp, 0, 0, 0, 0, 0, 0);
        TRY("prctl", SYS_prctl, 26, 1, 0, 0, 0, 0);               /* PR_SET_TSC enable */
        TRY("personality", SYS_personality, 0x0400000, 0, 0, 0, 0, 0);
        TRY("modify_ldt", SYS_modify_ldt, 1, (long)page, 16, 0, 0, 0);
        TRY("kill_other", SYS_kill, 2, 9, 0, 0, 0, 0);
        TRY("kill_init", SYS_kill, -1, 9, 0, 0, 0, 0);
        TRY("tgkill", SYS_tgkill, 12345, 12345, 9, 0, 0, 0);
        TRY("setrlimit_up", SYS_setrlimit, 9, (long)"\xff\xff\xff\xff\xff\xff\xff\xff"
            "\xff\xff\xff\xff\xff\xff\xff\xff", 0, 0, 0, 0);
        TRY("prlimit_up", SYS_prlimit64, 0, 9, (long)"\xff\xff\xff\xff\xff\xff\xff\xff"
            "\xff\xff\xff\xff\xff\xff\xff\xff", 0, 0, 0);
        TRY("arch_set_cpuid", SYS_arch_prctl, 0x1012, 0, 0, 0, 0, 0);
        TRY("arch_map_vdso", SYS_arch_prctl, 0x2001, 0x200000, 0, 0, 0, 0);
        TRY("mmap_exec", SYS_mmap, 0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
            -1, 0);
        TRY("mprotect_exec", SYS_mprotect, (long)page, 4096, PROT_READ | PROT_EXEC, 0, 0, 0);
        TRY("mprotect_code_rw", SYS_mprotect, (long)main & ~4095L, 4096,
            PROT_READ | PROT_WRITE, 0, 0, 0);
        TRY("mremap", SYS_mremap, (long)page, 4096, 8192, 1, 0, 0);
        TRY("close_ctl", SYS_close, 1030, 0, 0, 0, 0, 0);
        TRY("x32_bit_clear", SYS_getpid, 0, 0, 0, 0, 0, 0);
        return 0;
    }
    if (!strcmp(what, "edges")) {
        TRY("mprotect_high_bits", SYS_mprotect, (long)page, 4096, 0x100000001L, 0, 0, 0);
        TRY("mprotect_unaligned_exec", SYS_mprotect, (long)page + 1, 4096, PROT_EXEC, 0, 0, 0);
        TRY("mprotect_unmapped_exec", SYS_mprotect, 0x7f0000000000L, 4096, PROT_EXEC, 0, 0, 0);
        TRY("sendmsg_ctl", SYS_sendmsg, 1030, (long)page, 0, 0, 0, 0);
        /* Linux refuses a base outside user space (EPERM) whatever the host's paging */
        TRY("set_fs_kernel", SYS_arch_prctl, 0x1002, 0xffff800000000000L, 0, 0, 0, 0);
        TRY("set_gs_noncanonical", SYS_arch_prctl, 0x1001, 0x8000000000000000L, 0, 0, 0, 0);
        TRY("set_fs_user_top", SYS_arch_prctl, 0x1002, 0x7ffffffff000L, 0, 0, 0, 0);
        TRY("set_fs_la57", SYS_arch_prctl, 0x1002, 0x10000000000000L, 0, 0, 0, 0);
        TRY("get_fs_kernel", SYS_arch_prctl, 0x1003, 0xffff800000000000L, 0, 0, 0, 0);
        TRY("get_gs_code", SYS_arch_prctl, 0x1004, (long)main & ~4095L, 0, 0, 0, 0);
        TRY("get_fs_ok", SYS_arch_prctl, 0x1003, (long)page, 0, 0, 0, 0);
        TRY("set_gs_same", SYS_arch_prctl, 0x1001, 0, 0, 0, 0, 0);
        TRY("arch_get_cpuid", SYS_arch_prctl, 0x1011, 0, 0, 0, 0, 0);
        /* a buffer of no bytes is never touched: no protection to check (Linux) */
        TRY("getrandom_zero_code", SYS_getrandom, (long)main, 0, 0, 0, 0, 0);
        TRY("read_zero_code", SYS_read, 0, (long)main, 0, 0, 0, 0);
        return 0;
    }
    if (!strcmp(what, "int80"))
        HIDDEN("0x909090900b0f80cd", 20);          /* int $0x80; ud2 */
    else if (!strcmp(what, "sysenter"))
        HIDDEN("0x909090900b0f340f", 20);        /* sysenter; ud2 */
    else if (!strcmp(what, "rdtsc"))
        HIDDEN("0x909090900b0f310f", 0);         /* rdtsc; ud2 */
    else if (!strcmp(what, "cpuid"))
        HIDDEN("0x909090900b0fa20f", 0);         /* cpuid; ud2 */
    else if (!strcmp(what, "x32"))
        printf("x32 %ld\n", sys(0x40000000 | SYS_getpid, 0, 0, 0, 0, 0, 0));
    else if (!strcmp(what, "selfwrite"))
        *(volatile unsigned char *)main = 0xc3;
    else if (!strcmp(what, "spin") || !strcmp(what, "spinning")) {
        if (what[4])
            sys(SYS_write, 1, (long)"spinning\n", 9, 0, 0, 0);
        for (volatile unsigned long i = 0;; i++) {}
    }
    else if (!strcmp(what, "forkbomb")) {
        int ok = 0;
        for (int i = 0; i < 10000; i++)
            if (sys(SYS_fork, 0, 0, 0, 0, 0, 0) >= 0)
                ok++;
        printf("forks %d\n", ok);
        return 0;
    } else if (!strcmp(what, "fds")) {
        int n = 0;
        long fd;
        while ((fd = sys(SYS_open, (long)"/dev/stdin", 0, 0, 0, 0, 0)) >= 0)
            n++;
        printf("fds %d %ld\n", n, fd);
        return 0;
    }
    if ((!strcmp(what, "plant") || !strcmp(what, "scan")) && argc > 2) {
        char word[64];
        size_t n = strlen(argv[2]), found = 0;
        if (n == 0 || n >= sizeof word)
            return 2;
        for (size_t i = 0; i < n; i++)
            word[i] = argv[2][n - 1 - i];
        size_t heap = 16 << 20;
        unsigned char *p = malloc(heap);
        volatile unsigned char stack[1 << 20];
        if (!strcmp(what, "plant")) {
            for (size_t i = 0; i + n <= heap; i += n)
                memcpy(p + i, word, n);
            for (size_t i = 0; i + n <= sizeof stack; i++)
                stack[i] = (unsigned char)word[i % n];
            printf("planted\n");
            return 0;
        }
        for (size_t i = 0; i + n <= heap; i++)
            found += !memcmp(p + i, word, n);
        for (size_t i = 0; i + n <= sizeof stack; i++) {
            size_t k = 0;
            while (k < n && stack[i + k] == (unsigned char)word[k])
                k++;
            found += k == n;
        }
        if (argc > 4 && !strcmp(argv[3], "loader")) {
            const unsigned char *l = (const unsigned char *)0x7e0000000000UL;
            size_t span = strtoul(argv[4], NULL, 0);
            for (size_t i = 0; i + n <= span; i++)
                found += !memcmp(l + i, word, n);
        }
        printf("found %zu\n", found);
        return 0;
    }
    if (!strcmp(what, "loaderdump") && argc > 2) {
        size_t span = strtoul(argv[2], NULL, 0);
        char *copy = malloc(span);          /* a write names guest memory only */
        memcpy(copy, (const void *)0x7e0000000000UL, span);
        return fwrite(copy, 1, span, stdout) != span;
    }
    if (!strcmp(what, "loadercall") && argc > 3) {
        const unsigned char *l = (const unsigned char *)0x7e0000000000UL;
        size_t span = strtoul(argv[3], NULL, 0);
        long nr = strtol(argv[2], NULL, 0);
        /* syscall; test %rax,%rax; js X; add $N,%rsp; pop %rbx; ret: with rsp at a frame
         * of ours, a result >= 0 comes back here in rax (< 0: the loader's error path) */
        for (size_t i = 0; i + 13 <= span; i++)
            if (!memcmp(l + i, "\x0f\x05\x48\x85\xc0\x78", 6) &&
                    !memcmp(l + i + 7, "\x48\x83\xc4", 3) && !memcmp(l + i + 11, "\x5b\xc3", 2)) {
                static const char text[] = "jumped in";   /* what the error path names */
                long frame = l[i + 10];
                sys(SYS_dup2, 1, 4, 0, 0, 0, 0);
                __asm__ volatile("mov %3, %%r11\n\tpush %%rbx\n\tpush %%rbp\n\tmov %%rsp, %%rbp\n\t"
                                 "and $-16, %%rsp\n\tlea 1f(%%rip), %%rbx\n\t"
                                 "push %%rbx\n\tpush %%rsi\n\tsub %%rcx, %%rsp\n\t"
                                 "mov %%rsi, %%rbx\n\tmov $1030, %%edi\n\txor %%edx, %%edx\n\t"
                                 "jmp *%%r11\n"
                                 "1:\n\tmov %%rbp, %%rsp\n\tpop %%rbp\n\tpop %%rbx"
                                 : "+a"(nr), "+c"(frame)
                                 : "S"(text), "r"(l + i)
                                 : "rdi", "rdx", "r11", "memory");
                printf("loadercall %ld\n", nr);
                return 0;
            }
        printf("loadercall: no such syscall in the loader\n");
        return 4;
    }
    if (!strcmp(what, "manifest") && argc > 3) {
        volatile unsigned char *manifest = (volatile unsigned char *)MANIFEST;
        long prot = strtol(argv[2], NULL, 0);
        if (prot == 0) {
            manifest[0] = 1;
            printf("wrote the manifest\n");
            return 0;
        }
        printf("own %ld\n", sys(SYS_mprotect, MANIFEST, 0x10000, prot, 0, 0, 0));
        long got = manifest_via_loader(prot, strtoul(argv[3], NULL, 0));
        if (got == NO_GADGET) {
            printf("manifest: no such syscall in the loader\n");
            return 4;
        }
        printf("loader %ld\n", got);
        manifest[0] = 1;
        printf("wrote the manifest\n");
        return 0;
    }
    if (!strcmp(what, "manifestsum") && argc > 2) {
        long got = manifest_via_loader(PROT_READ, strtoul(argv[2], NULL, 0));
        const volatile unsigned char *manifest = (const volatile unsigned char *)MANIFEST;
        unsigned long sum = 0;
        for (int i = 0; i < 4096; i++)
            sum = sum * 31 + manifest[i];
        for (int i = 0; i < 200; i++)       /* a prefix a snapshot is recorded for */
            sys(SYS_brk, 0, 0, 0, 0, 0, 0);
        printf("loader %ld sum %lx\n", got, sum);
        return 0;
    }
    printf("still running after %s\n", what);
    return 3;
}

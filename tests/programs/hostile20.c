/* hostile20 (hostile): system calls a native guest could try that the earlier lists
 * (native_hostile "calls", hostile8) do not: newer siblings of refused calls (clone3,
 * execveat, openat2, pkey_mprotect, pidfd_*), calls that would reach another process's
 * descriptors or memory, change the guest's own process, or move bytes between
 * descriptors in the kernel.  Each prints "name result" (raw -errno on failure): all
 * must fail (test_equivalence: the same under both engines).  Then it checks its code page is still
 * not writable (pkey_mprotect/madvise tried to change that): a store into main faults. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "rawsys.h"               /* sys(), TRY() */

static char page[8192] __attribute__((aligned(4096)));

int main(int argc, char **argv)
{
    long code = (long)main & ~4095L;
    static char sh[] = "/bin/sh";
    static char *args[] = {sh, NULL};
    static long how[3] = {0, 0, 0};          /* struct open_how: flags, mode, resolve */
    static long clone_args[11];              /* struct clone_args, all zero: a fork */
    setvbuf(stdout, NULL, _IONBF, 0);
    TRY("clone3", 435, (long)clone_args, sizeof clone_args, 0, 0, 0, 0);
    TRY("execveat", 322, -100, (long)sh, (long)args, 0, 0, 0);
    TRY("openat2", 437, -100, (long)"/etc/passwd", (long)how, sizeof how, 0, 0);
    TRY("pkey_mprotect_exec", 329, (long)page, 4096, PROT_READ | PROT_EXEC, -1, 0, 0);
    TRY("pkey_mprotect_code_rw", 329, code, 4096, PROT_READ | PROT_WRITE, -1, 0, 0);
    TRY("pkey_alloc", 330, 0, 0, 0, 0, 0, 0);
    TRY("pidfd_open", 434, 1, 0, 0, 0, 0, 0);
    TRY("pidfd_getfd", 438, 0, 3, 0, 0, 0, 0);
    TRY("pidfd_send_signal", 424, 0, 9, 0, 0, 0, 0);
    TRY("process_vm_readv", SYS_process_vm_readv, 1, (long)page, 1, (long)page, 1, 0);
    TRY("process_madvise", 440, 0, (long)page, 1, 0, 0, 0);
    TRY("kcmp", 312, 1, 1, 0, 0, 0, 0);
    TRY("memfd_create", 319, (long)"x", 0, 0, 0, 0, 0);
    TRY("memfd_secret", 447, 0, 0, 0, 0, 0, 0);
    TRY("unshare", SYS_unshare, 0x10000000, 0, 0, 0, 0, 0);          /* CLONE_NEWUSER */
    TRY("setns", SYS_setns, 0, 0, 0, 0, 0, 0);
    TRY("io_uring_enter", 426, 0, 1, 0, 0, 0, 0);
    TRY("sendfile", SYS_sendfile, 1, 0, 0, 4096, 0, 0);
    TRY("splice", SYS_splice, 0, 0, 1, 0, 4096, 0);
    TRY("tee", SYS_tee, 0, 1, 4096, 0, 0, 0);
    TRY("vmsplice", SYS_vmsplice, 1, (long)page, 1, 0, 0, 0);
    TRY("copy_file_range", 326, 0, 0, 1, 0, 4096, 0);
    TRY("name_to_handle_at", 303, -100, (long)"/", (long)page, (long)page, 0, 0);
    TRY("open_by_handle_at", 304, -100, (long)page, 0, 0, 0, 0);
    TRY("remap_file_pages", 216, code, 4096, 0, 0, 0, 0);
    TRY("madvise_dontfork", SYS_madvise, (long)page, 4096, 10, 0, 0, 0);
    TRY("mbind", SYS_mbind, (long)page, 4096, 0, 0, 0, 0);
    TRY("migrate_pages", SYS_migrate_pages, 0, 1, (long)page, (long)page, 0, 0);
    TRY("move_pages", SYS_move_pages, 0, 1, (long)page, 0, (long)page, 0);
    TRY("keyctl", SYS_keyctl, 0, -3, 0, 0, 0, 0);
    TRY("add_key", SYS_add_key, (long)"user", (long)"k", (long)page, 1, -3, 0);
    TRY("landlock_create_ruleset", 444, 0, 0, 1, 0, 0, 0);
    TRY("rseq", 334, (long)page, 32, 0, 0x53053053, 0, 0);
    TRY("set_robust_list_bad", SYS_set_robust_list, (long)page, 1, 0, 0, 0, 0);
    TRY("mseal", 462, code, 4096, 0, 0, 0, 0);
    TRY("map_shadow_stack", 453, 0, 4096, 0, 0, 0, 0);
    TRY("iopl", SYS_iopl, 3, 0, 0, 0, 0, 0);
    TRY("ioperm", SYS_ioperm, 0, 1024, 1, 0, 0, 0);
    TRY("vhangup", SYS_vhangup, 0, 0, 0, 0, 0, 0);
    TRY("syslog", SYS_syslog, 3, (long)page, 4096, 0, 0, 0);
    TRY("reboot", SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc, 0, 0, 0);
    TRY("chroot", SYS_chroot, (long)"/", 0, 0, 0, 0, 0);
    TRY("mount", SYS_mount, (long)"none", (long)"/", (long)"tmpfs", 0, 0, 0);
    TRY("setuid", SYS_setuid, 0, 0, 0, 0, 0, 0);
    TRY("capset", SYS_capset, (long)page, (long)page, 0, 0, 0, 0);
    TRY("sched_setaffinity", SYS_sched_setaffinity, 0, 8, (long)page, 0, 0, 0);
    TRY("setpriority", SYS_setpriority, 0, 0, -20, 0, 0, 0);
    TRY("rt_sigqueueinfo", SYS_rt_sigqueueinfo, 1, 9, (long)page, 0, 0, 0);
    TRY("timer_create", SYS_timer_create, 0, 0, (long)page, 0, 0, 0);
    TRY("inotify_init1", SYS_inotify_init1, 0, 0, 0, 0, 0, 0);
    TRY("fanotify_init", 300, 0, 0, 0, 0, 0, 0);
    TRY("lookup_dcookie", 212, 0, (long)page, 64, 0, 0, 0);
    if (argc > 1 && !strcmp(argv[1], "selfwrite"))
        *(volatile unsigned char *)main = 0xc3;
    printf("code %s\n", *(volatile unsigned char *)main ? "intact" : "zero");
    return 0;
}

/* floor (a host program, not a guest): the kernel's own cost of a mediated
 * system call, the floor under the native engine's round trip.
 *
 * A child installs a seccomp filter that sends getpid to its parent
 * (SECCOMP_RET_USER_NOTIF) and allows the rest, then makes argv[1] raw getpid
 * calls.  The parent answers each with the least a supervisor does: poll on
 * the listener, the RECV ioctl, the SEND ioctl, with
 * SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP as the native supervisor sets it
 * (engines/native/supervisor.py; ignored before Linux 6.6).  bench/engines.py
 * times it as the engines: (t(N) - t(0)) / N is one round trip with nothing
 * answered but a constant.
 *
 * A second argument gives the child the native guest's faulting flags, as the
 * loader (engines/native/loader.c) does for every guest: rdtsc faults
 * (PR_SET_TSC) and, where the CPU can, cpuid (ARCH_SET_CPUID 0).  "guest": the
 * parent is a plain thread, so the kernel rewrites CR4.TSD and the
 * CPUID-faulting MSR at each switch between them (under a hypervisor, a VM exit
 * each: four per round trip).  "same": the parent carries the same flags while
 * it answers, as the native supervisor's serving thread does (fastcall.c), and
 * no switch changes them. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOTIF_SET_FLAGS 0x40082104      /* SECCOMP_IOCTL_NOTIF_SET_FLAGS */
#define SYNC_WAKE_UP 1ULL

static void pass_fd(int sock, int fd)
{
    char control[CMSG_SPACE(sizeof fd)] = {0}, byte = 'l';
    struct iovec io = {&byte, 1};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = control,
                       .msg_controllen = sizeof control};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof fd);
    memcpy(CMSG_DATA(h), &fd, sizeof fd);
    if (sendmsg(sock, &m, 0) != 1)
        _exit(3);
}

static int take_fd(int sock)
{
    char control[CMSG_SPACE(sizeof(int))], byte;
    struct iovec io = {&byte, 1};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = control,
                       .msg_controllen = sizeof control};
    int fd = -1;
    if (recvmsg(sock, &m, 0) == 1 && CMSG_FIRSTHDR(&m) != NULL)
        memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
    return fd;
}

/* The native guest's flags on this thread (loader.c: ENODEV, no CPUID faulting,
 * leaves cpuid as it is) */
static int guest_flags(void)
{
    if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0))
        return -1;
    return syscall(SYS_arch_prctl, 0x1012, 0) == 0 || errno == ENODEV ? 0 : -1;
}

static void guest(int sock, long n, int flags)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};
    if (flags && guest_flags())
        _exit(2);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        _exit(2);
    int listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                           SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0)
        _exit(2);
    pass_fd(sock, listener);
    close(listener);
    char go;
    if (read(sock, &go, 1) != 1)
        _exit(3);
    for (long i = 0; i < n; i++)
        if (syscall(SYS_getpid) != 42)
            _exit(4);
    _exit(0);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        return 1;
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    const char *mode = argc > 2 ? argv[2] : "";
    int same = strcmp(mode, "same") == 0;
    if (pid == 0)
        guest(sv[0], n, same || strcmp(mode, "guest") == 0);
    int listener = take_fd(sv[1]);
    if (listener < 0)
        return 1;
    unsigned long long flags = SYNC_WAKE_UP;
    ioctl(listener, NOTIF_SET_FLAGS, flags);
    if (same && guest_flags())
        return 1;
    if (write(sv[1], "g", 1) != 1)
        return 1;
    struct seccomp_notif notif;
    struct seccomp_notif_resp resp;
    for (long i = 0; i < n; i++) {
        struct pollfd p = {listener, POLLIN, 0};
        if (poll(&p, 1, -1) != 1 || !(p.revents & POLLIN))
            return 1;
        memset(&notif, 0, sizeof notif);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &notif))
            return 1;
        resp = (struct seccomp_notif_resp){.id = notif.id, .val = 42};
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp))
            return 1;
    }
    int status;
    return waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status);
}

/* sigstate: signal actions and mask set up before the first channel access
 * (the part a start-up snapshot holds), read back after it.  With the
 * argument "manifest" it also has a system call read the ZeroVM user
 * manifest before that access.  A resumed run must print what a full run
 * prints (tests/sandbox/test_isolation.py). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void on_usr1(int sig) { (void)sig; }

int main(int argc, char **argv)
{
    unsigned x = 1;
    for (int i = 0; i < 3000000; i++)          /* a prefix worth a snapshot */
        x = x * 1103515245u + 12345u;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    long manifest = -1;
    if (argc > 1 && strcmp(argv[1], "manifest") == 0) {   /* a kernel read of it */
        unsigned long old;
        manifest = syscall(SYS_rt_sigprocmask, SIG_BLOCK, (void *)0xFEFF0000ul, &old, 8);
    }
    char buf[64];
    ssize_t n = read(0, buf, sizeof buf);         /* the first channel access */
    struct sigaction now;
    sigaction(SIGUSR1, NULL, &now);
    void (*pipe_handler)(int) = signal(SIGPIPE, SIG_DFL);
    sigset_t mask;
    sigprocmask(SIG_SETMASK, NULL, &mask);
    printf("x %u read %zd usr1 %s flags %#x pipe %s hup %d usr2 %d int %d manifest %ld\n", x, n,
           now.sa_handler == on_usr1 ? "handler" : "default", (unsigned)now.sa_flags,
           pipe_handler == SIG_IGN ? "ignored" : "default", sigismember(&mask, SIGHUP),
           sigismember(&mask, SIGUSR2), sigismember(&mask, SIGINT), manifest);
    return 0;
}

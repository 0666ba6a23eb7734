/* interp_sys: the calls interpreters make at start-up that a plain C program
 * rarely does, each printed as one line: signal actions and the mask are
 * recorded and given back (never delivered), futex for one thread, sysinfo,
 * sched_getaffinity and getcwd.  With argument "deadlock" it finally waits on a
 * futex that nothing can wake. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129

static void on_usr1(int sig) { (void)sig; }

static long futex(uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
    long r = syscall(SYS_futex, word, op, val, ts, NULL, 0);
    return r < 0 ? -errno : r;
}

int main(int argc, char **argv)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, NULL, &old);
    printf("usr1 before: %s\n", old.sa_handler == SIG_DFL ? "default" : "set");
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR1, NULL, &old);
    printf("usr1 after: %s restart=%d\n", old.sa_handler == on_usr1 ? "handler" : "other",
           !!(old.sa_flags & SA_RESTART));
    printf("sigkill: %s\n", sigaction(SIGKILL, &sa, NULL) == -1 && errno == EINVAL
           ? "EINVAL" : "accepted");

    sigset_t set, got;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGKILL);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sigprocmask(SIG_SETMASK, NULL, &got);
    printf("mask: usr2=%d kill=%d usr1=%d\n", sigismember(&got, SIGUSR2),
           sigismember(&got, SIGKILL), sigismember(&got, SIGUSR1));

    uint32_t word = 7;
    printf("futex wake: %ld\n", futex(&word, FUTEX_WAKE_PRIVATE, 1, NULL));
    printf("futex wait changed: %s\n",
           futex(&word, FUTEX_WAIT_PRIVATE, 6, NULL) == -EAGAIN ? "EAGAIN" : "?");
    struct timespec t0, t1, ts = {5, 0};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long r = futex(&word, FUTEX_WAIT_PRIVATE, 7, &ts);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("futex wait timeout: %s, slept >= 5 s: %d\n", r == -ETIMEDOUT ? "ETIMEDOUT" : "?",
           t1.tv_sec - t0.tv_sec >= 5);

    struct sysinfo si;
    if (sysinfo(&si) == 0)
        printf("sysinfo: totalram %lu unit %u procs %u free<total %d uptime>=5 %d\n",
               si.totalram, si.mem_unit, si.procs, si.freeram < si.totalram,
               si.uptime >= 5);
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0)
        printf("cpus: %d\n", CPU_COUNT(&cpus));
    char cwd[64];
    printf("cwd: %s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
    fflush(stdout);
    if (argc > 1 && strcmp(argv[1], "deadlock") == 0)
        futex(&word, FUTEX_WAIT_PRIVATE, 7, NULL);
    return 0;
}

/* forbidden (hostile): calls the sandbox must refuse with ENOSYS while the
 * program goes on: execve("/bin/sh"), socket(), fork() and a raw clone().
 * argv[1] picks one (execve, socket, fork, clone) or "all". */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static void show(const char *what, long r)
{
    int e = errno;
    printf("%s = %ld errno=%d (%s)\n", what, r, r < 0 ? e : 0, r < 0 ? strerror(e) : "-");
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "all";
    int all = strcmp(which, "all") == 0;
    pid_t me = getpid();
    if (all || strcmp(which, "execve") == 0) {
        char *args[] = {"/bin/sh", "-c", "echo pwned", NULL};
        char *env[] = {NULL};
        errno = 0;
        show("execve", execve("/bin/sh", args, env));
    }
    if (all || strcmp(which, "socket") == 0) {
        errno = 0;
        show("socket", socket(AF_INET, SOCK_STREAM, 0));
    }
    if (all || strcmp(which, "fork") == 0) {
        errno = 0;
        pid_t p = fork();
        if (p == 0 && getpid() != me) {
            printf("child alive\n");
            _exit(0);
        }
        show("fork", p);
    }
    if (all || strcmp(which, "clone") == 0) {
        errno = 0;
        /* fork-like raw clone: in a child this would return 0 */
        long p = syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
        if (p == 0) {
            printf("clone child alive\n");
            _exit(0);
        }
        show("clone", p);
    }
    printf("still one process\n");
    return 0;
}

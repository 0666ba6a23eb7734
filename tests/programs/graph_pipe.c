/* One stage of a pipeline between nodes.
 *
 *     graph_pipe <from> <to> <add> [<crash node>]
 *
 * Reads <from>: "-" is /dev/stdin, otherwise groups ("a,b,...") whose channels
 * are /dev/in/<group> or /dev/in/<group>-1 ... (in that order), and writes every
 * byte plus <add> (mod 256) to each of <to>: "-" is /dev/stdout, otherwise
 * /dev/out/<to> or /dev/out/<to>-1 ...  Data moves in 64 KiB chunks.  The
 * node named <crash node> (argv[0] is the node name) reads its input, then
 * writes through a null pointer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#define MAX 256

/* Open a group's channels into fds (at most `most`): how many. */
static int open_all(const char *dir, const char *group, int flags, int *fds, int most) {
    char path[512];
    int n = 0;
    if (!strcmp(group, "-")) {
        fds[0] = flags == O_RDONLY ? 0 : 1;
        return 1;
    }
    snprintf(path, sizeof path, "/dev/%s/%s", dir, group);
    if ((fds[0] = open(path, flags)) >= 0) return 1;
    for (;;) {
        snprintf(path, sizeof path, "/dev/%s/%s-%d", dir, group, n + 1);
        if (n == most || (fds[n] = open(path, flags)) < 0) return n;
        n++;
    }
}

static void write_all(int fd, const unsigned char *p, size_t len) {
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w <= 0) { perror("graph_pipe: write"); exit(1); }
        p += w;
        len -= (size_t)w;
    }
}

int main(int argc, char **argv) {
    if (argc < 4) { fputs("usage: graph_pipe <from> <to> <add> [<crash node>]\n", stderr); return 2; }
    int in[MAX], out[MAX], ins = 0;
    for (char *group = strtok(argv[1], ","); group && ins < MAX; group = strtok(NULL, ","))
        ins += open_all("in", group, O_RDONLY, in + ins, MAX - ins);
    int outs = open_all("out", argv[2], O_WRONLY, out, MAX);
    int add = atoi(argv[3]);
    static unsigned char buf[1 << 16];
    if (!ins || !outs) { fputs("graph_pipe: no channels\n", stderr); return 1; }
    for (int i = 0; i < ins; i++) {
        ssize_t n;
        while ((n = read(in[i], buf, sizeof buf)) > 0) {
            for (ssize_t k = 0; k < n; k++) buf[k] = (unsigned char)(buf[k] + add);
            for (int o = 0; o < outs; o++) write_all(out[o], buf, (size_t)n);
        }
        if (n < 0) { perror("graph_pipe: read"); return 1; }
    }
    if (argc > 4 && !strcmp(argv[0], argv[4])) *(volatile int *)0 = 1;
    return 0;
}

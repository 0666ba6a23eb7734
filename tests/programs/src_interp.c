/* src_interp: a tiny script interpreter, to test scripts, zapps and chains.
 *
 *   src_interp [args...] SCRIPT        run the file SCRIPT ("image:NAME": the
 *                                      file NAME of the tar on /dev/image)
 *   src_interp -c 'LINES' [args...]    run LINES, where backslash-n is a
 *                                      line break (job arguments cannot
 *                                      hold control characters)
 *
 * One command per line; lines starting with '#' (the #! line) and empty
 * lines are skipped:
 *   echo TEXT       print TEXT and a newline ("echo" alone: an empty line)
 *   cat [FILE]      copy FILE (default /dev/stdin) to stdout
 *   upper [FILE]    the same, upper-cased
 *   args            print "argv:" and every argument after argv[0]
 *   env NAME        print the value of NAME, or "(unset)"
 *   tarcat NAME     print the file NAME of the tar on /dev/image
 *   exit N          stop with status N
 * Anything else: a message on stderr and status 2. */
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_argc;
static char **g_argv;

static void die(const char *what, const char *arg)
{
    fprintf(stderr, "src_interp: %s: %s\n", what, arg);
    exit(2);
}

/* Find NAME (without a leading "./") in the tar on /dev/image: its offset and size. */
static int tar_find(const char *name, off_t *offset, size_t *size)
{
    int fd = open("/dev/image", O_RDONLY);
    unsigned char hdr[512];
    off_t pos = 0;
    if (fd < 0)
        return -1;
    while (pread(fd, hdr, 512, pos) == 512 && hdr[0]) {
        char member[101];
        const char *m = member;
        memcpy(member, hdr, 100);
        member[100] = 0;
        if (strncmp(m, "./", 2) == 0)
            m += 2;
        size_t n = strtoul((char *)hdr + 124, NULL, 8);
        if (strcmp(m, name) == 0) {
            *offset = pos + 512;
            *size = n;
            return fd;
        }
        pos += 512 + (off_t)((n + 511) / 512 * 512);
    }
    close(fd);
    return -1;
}

/* The whole content of PATH, or of NAME in the image for "image:NAME". */
static char *slurp(const char *path)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap + 1);
    if (strncmp(path, "image:", 6) == 0) {
        off_t off;
        size_t size;
        int fd = tar_find(path + 6, &off, &size);
        if (fd < 0)
            die("not in the image", path + 6);
        buf = realloc(buf, size + 1);
        if (pread(fd, buf, size, off) != (ssize_t)size)
            die("cannot read", path);
        close(fd);
        buf[size] = 0;
        return buf;
    }
    int fd = open(path, O_RDONLY);
    ssize_t n;
    if (fd < 0)
        die("cannot open", path);
    while ((n = read(fd, buf + len, cap - len)) > 0) {
        len += n;
        if (len == cap)
            buf = realloc(buf, (cap *= 2) + 1);
    }
    close(fd);
    buf[len] = 0;
    return buf;
}

static void copy(const char *path, int upper)
{
    char buf[4096];
    ssize_t n;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die("cannot open", path);
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; upper && i < n; i++)
            buf[i] = toupper((unsigned char)buf[i]);
        fwrite(buf, 1, n, stdout);
    }
    close(fd);
}

static void run_line(char *line)
{
    char *arg = strchr(line, ' ');
    if (arg)
        *arg++ = 0;
    else
        arg = line + strlen(line);
    if (strcmp(line, "echo") == 0) {
        printf("%s\n", arg);
    } else if (strcmp(line, "cat") == 0 || strcmp(line, "upper") == 0) {
        copy(*arg ? arg : "/dev/stdin", line[0] == 'u');
    } else if (strcmp(line, "args") == 0) {
        printf("argv:");
        for (int i = 1; i < g_argc; i++)
            printf(" %s", g_argv[i]);
        printf("\n");
    } else if (strcmp(line, "env") == 0) {
        const char *value = getenv(arg);
        printf("%s\n", value ? value : "(unset)");
    } else if (strcmp(line, "tarcat") == 0) {
        off_t off;
        size_t size;
        int fd = tar_find(arg, &off, &size);
        if (fd < 0)
            die("not in the image", arg);
        char *buf = malloc(size + 1);
        if (pread(fd, buf, size, off) != (ssize_t)size)
            die("cannot read", arg);
        fwrite(buf, 1, size, stdout);
        free(buf);
        close(fd);
    } else if (strcmp(line, "exit") == 0) {
        fflush(stdout);
        exit(atoi(arg));
    } else {
        die("unknown command", line);
    }
}

int main(int argc, char **argv)
{
    char *script;
    g_argc = argc;
    g_argv = argv;
    if (argc >= 3 && strcmp(argv[1], "-c") == 0) {
        script = strdup(argv[2]);
        char *w = script;
        for (const char *r = script; *r; r++) {
            if (r[0] == '\\' && r[1] == 'n')
                *w++ = '\n', r++;
            else
                *w++ = *r;
        }
        *w = 0;
    } else if (argc >= 2)
        script = slurp(argv[argc - 1]);
    else
        die("usage", "src_interp [args] SCRIPT | src_interp -c LINES [args]");
    for (char *line = strtok(script, "\n"); line; line = strtok(NULL, "\n")) {
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r')
            line[n - 1] = 0;
        if (line[0] && line[0] != '#')
            run_line(line);
    }
    return 0;
}

/* miniscript: a tiny interpreter that reads its script and its libraries from
 * files, as an interpreter does from a tar image.  Usage: miniscript SCRIPT.
 * Script lines (output on stdout):
 *   print TEXT       TEXT
 *   require NAME     runs the first NAME.ms found in $MS_PATH (':'-separated
 *                    directories), once, after printing "loaded PATH"
 *   list DIR         DIR's entries except . and .., sorted, one line
 *   stat PATH        "PATH file|chr|fifo SIZE MTIME", "PATH dir" or "PATH missing ERRNO"
 *   tail PATH N      the last N bytes of PATH, read after lseek(fd, -N, SEEK_END)
 *   write PATH       "write PATH: ERRNO" (opening an image file to write must fail)
 *   create PATH      "create PATH: ERRNO" (so must creating a file: EROFS, or ENOENT
 *                    when its directory does not exist)
 *   at DIR NAME      the first line of NAME opened with openat() relative to DIR
 *   # ...            a comment
 * Exit status 0, or 1 when the script cannot be read. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char loaded[64][512];
static int nloaded;

static int run(const char *path);

static void require(const char *name)
{
    char path[512], dirs[1024];
    const char *env = getenv("MS_PATH");
    snprintf(dirs, sizeof dirs, "%s", env ? env : "/lib");
    for (char *d = strtok(dirs, ":"); d; d = strtok(NULL, ":")) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s.ms", d, name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            for (int i = 0; i < nloaded; i++)
                if (!strcmp(loaded[i], path))
                    return;
            snprintf(loaded[nloaded++], sizeof loaded[0], "%s", path);
            printf("loaded %s\n", path);
            run(path);
            return;
        }
    }
    printf("require %s: not found\n", name);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list(const char *dir)
{
    DIR *d = opendir(dir);
    char *names[256];
    int n = 0;
    if (!d) {
        printf("list %s: errno %d\n", dir, errno);
        return;
    }
    for (struct dirent *e; (e = readdir(d)) && n < 256;)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    printf("%s:", dir);
    for (int i = 0; i < n; i++)
        printf(" %s", names[i]);
    printf("\n");
}

static void stat_path(const char *path)
{
    struct stat st;
    if (stat(path, &st))
        printf("%s missing %d\n", path, errno);
    else if (S_ISDIR(st.st_mode))
        printf("%s dir\n", path);
    else
        printf("%s %s %lld %lld\n", path, S_ISREG(st.st_mode) ? "file" : S_ISCHR(st.st_mode)
               ? "chr" : S_ISFIFO(st.st_mode) ? "fifo" : "other", (long long)st.st_size,
               (long long)st.st_mtime);
}

static void tail(const char *path, long n)
{
    char buf[256];
    int fd = open(path, O_RDONLY);
    off_t at = lseek(fd, -n, SEEK_END);
    ssize_t got = read(fd, buf, n < (long)sizeof buf ? n : (long)sizeof buf);
    close(fd);
    printf("tail %s at %lld: %.*s\n", path, (long long)at, got > 0 ? (int)got : 0, buf);
}

static int run(const char *path)
{
    char line[512];
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *arg = strchr(line, ' ');
        if (arg)
            *arg++ = 0;
        else
            arg = line + strlen(line);
        if (!strcmp(line, "print"))
            printf("%s\n", arg);
        else if (!strcmp(line, "require"))
            require(arg);
        else if (!strcmp(line, "list"))
            list(arg);
        else if (!strcmp(line, "stat"))
            stat_path(arg);
        else if (!strcmp(line, "tail")) {
            char *n = strchr(arg, ' ');
            *n++ = 0;
            tail(arg, atol(n));
        } else if (!strcmp(line, "at")) {
            char *name = strchr(arg, ' '), buf[128] = "";
            *name++ = 0;
            int dir = open(arg, O_RDONLY | O_DIRECTORY);
            int fd = openat(dir, name, O_RDONLY);
            ssize_t got = fd < 0 ? 0 : read(fd, buf, sizeof buf - 1);
            buf[got > 0 ? got : 0] = 0;
            buf[strcspn(buf, "\n")] = 0;
            printf("at %s %s: %s\n", arg, name, fd < 0 ? strerror(errno) : buf);
            close(fd);
            close(dir);
        } else if (!strcmp(line, "write")) {
            int fd = open(arg, O_WRONLY);
            printf("write %s: %d\n", arg, fd < 0 ? errno : 0);
        } else if (!strcmp(line, "create")) {
            int fd = open(arg, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            printf("create %s: %d\n", arg, fd < 0 ? errno : 0);
        }
    }
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || run(argv[1])) {
        printf("cannot run %s\n", argc < 2 ? "(nothing)" : argv[1]);
        return 1;
    }
    return 0;
}

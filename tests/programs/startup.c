/* startup: a long, pure start-up (table, clock, randomness, the image files
 * named by its arguments), then a checksum of /dev/stdin.  What a snapshot of its
 * prefix must reproduce exactly (tests/sandbox/test_snapshot.py).  After the
 * prefix, stdin "plant W" fills 16 MiB of fresh heap and 64 KiB of stack with W
 * reversed, "scan W" counts W reversed there and in the table: what an earlier
 * run resumed from the same snapshot left; "check" counts the table's entries
 * that are not what the prefix wrote, then overwrites every one (a resumed
 * run's copy of the snapshot must be intact, and its writes its own); "loader N"
 * (natively) writes the N bytes of the native loader's pages, which must be the
 * same however the run started. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    size_t n = 1 << 19;
    unsigned *table = malloc(n * sizeof *table);
    unsigned x = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        x = (x ^ (unsigned)i) * 16777619u;
        table[i] = x;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned char rnd[8];
    getrandom(rnd, sizeof rnd, 0);
    char conf[64] = "(none)";
    size_t len = 0;
    for (int a = 1; a < argc; a++) {        /* the image files named, concatenated */
        int fd = open(argv[a], O_RDONLY);
        if (fd >= 0) {
            ssize_t k = read(fd, conf + len, sizeof conf - 1 - len);
            len += k > 0 ? (size_t)k : 0;
            conf[len] = '\0';
            close(fd);
        }
    }
    unsigned sum = table[n / 3];         /* the first channel access is the next read */
    long total = 0;
    char buf[4096], first[64] = "";
    ssize_t k;
    while ((k = read(0, buf, sizeof buf)) > 0) {
        if (!total)
            memcpy(first, buf, k < 63 ? (size_t)k : 63);
        for (ssize_t i = 0; i < k; i++)
            sum = sum * 31 + (unsigned char)buf[i];
        total += k;
    }
    int plant = !strncmp(first, "plant ", 6), scan = !strncmp(first, "scan ", 5);
    if (plant || scan) {
        char *w = first + (plant ? 6 : 5), word[64];
        size_t len = strcspn(w, "\n"), found = 0, heap = 16 << 20;
        for (size_t i = 0; i < len; i++)
            word[i] = w[len - 1 - i];
        unsigned char *p = malloc(heap);
        volatile unsigned char stack[1 << 16];
        for (size_t i = 0; len && i + len <= heap; i += plant ? len : 1) {
            if (plant)
                memcpy(p + i, word, len);
            else
                found += !memcmp(p + i, word, len);
        }
        for (size_t i = 0; len && i + len <= sizeof stack; i++) {
            if (plant) {
                stack[i] = (unsigned char)word[i % len];
                continue;
            }
            size_t j = 0;
            while (j < len && stack[i + j] == (unsigned char)word[j])
                j++;
            found += j == len;
        }
        for (size_t i = 0; scan && len && i + len <= n * sizeof *table; i++)
            found += !memcmp((char *)table + i, word, len);
        printf("%s %zu\n", plant ? "planted" : "found", found);
    }
    if (!strncmp(first, "check", 5)) {
        size_t wrong = 0;
        x = 2166136261u;
        for (size_t i = 0; i < n; i++) {
            x = (x ^ (unsigned)i) * 16777619u;
            wrong += table[i] != x;
            table[i] = ~x;
        }
        printf("table %zu wrong\n", wrong);
    }
    if (!strncmp(first, "loader ", 7)) {
        size_t span = strtoul(first + 7, NULL, 0);
        char *copy = malloc(span);          /* a write names guest memory only */
        memcpy(copy, (const void *)0x7e0000000000UL, span);
        fwrite(copy, 1, span, stdout);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("sum %08x of %ld bytes\nclock %ld.%09ld %ld.%09ld\nrandom %02x%02x%02x%02x\n"
           "conf %s\n", sum, total, (long)t0.tv_sec, t0.tv_nsec, (long)t1.tv_sec, t1.tv_nsec,
           rnd[0], rnd[1], rnd[2], rnd[3], conf);
    return 0;
}

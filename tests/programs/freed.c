/* freed: memory given back and handed out again reads as zeros, whoever wrote it.
 * The prefix (long: a table, worth a start-up snapshot) maps three areas (64 KiB,
 * 1 MiB, 3 pages), fills them, unmaps all three and then stores into the first
 * one (the guest may write anywhere in its heap, freed or not).  After the first
 * channel access, where a snapshot resumes, argv[1] says what gets those pages
 * again: "map" maps the same sizes (first fit: the same addresses), "brk" moves
 * the break up over the 3 pages, "fixed" maps 1 MiB + 64 KiB at once, fills the
 * 1 MiB and maps MAP_FIXED over it, "file" maps /dev/input (shorter than the
 * 64 KiB it gets: the rest must be zeros).  Each line counts the non-zero bytes
 * handed out: 0 under both engines, whether the run is fresh, reused or resumed
 * (tests/sandbox/test_equivalence.py). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PG 4096L
#define SMALL (16 * PG)
#define BIG (256 * PG)
#define TINY (3 * PG)

static unsigned table[1 << 16];

static void say(const char *s)
{
    write(1, s, strlen(s));
}

static long nonzero(const char *p, long n)
{
    long count = 0;
    for (long i = 0; i < n; i++)
        count += p[i] != 0;
    return count;
}

static char *map(long size)
{
    return (char *)syscall(SYS_mmap, 0L, size, (long)(PROT_READ | PROT_WRITE),
                           (long)(MAP_PRIVATE | MAP_ANONYMOUS), -1L, 0L);
}

static void report(const char *what, const char *got, const char *was, long size)
{
    char line[120];
    if (got == MAP_FAILED) {
        snprintf(line, sizeof line, "%s: failed\n", what);
    } else {
        snprintf(line, sizeof line, "%s: %s address, %ld non-zero bytes of %ld\n", what,
                 got == was ? "same" : "other", nonzero(got, size), size);
    }
    say(line);
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "map";
    unsigned x = 2166136261u;
    for (unsigned i = 0; i < 400000; i++) {     /* a prefix worth a snapshot */
        x = (x ^ i) * 16777619u;
        table[i & 0xffff] ^= x;
    }
    char *small = map(SMALL), *big = map(BIG), *tiny = map(TINY);
    if (small == MAP_FAILED || big == MAP_FAILED || tiny == MAP_FAILED)
        return 2;
    memset(small, 's', SMALL);
    memset(big, 'b', BIG);
    memset(tiny, 't', TINY);
    int freed = !syscall(SYS_munmap, big, BIG) + !syscall(SYS_munmap, small, SMALL) +
                !syscall(SYS_munmap, tiny, TINY);
    memset(small + SMALL - 2 * PG, 'w', PG);    /* written after it was freed */
    char line[80];
    snprintf(line, sizeof line, "prefix %08x, %d unmapped\n", table[x & 0xffff], freed);
    say(line);                                  /* the first channel access */

    if (!strcmp(how, "map")) {
        char *again = map(SMALL);
        report("small again", again, small, SMALL);
        again = map(BIG);
        report("big again", again, big, BIG);
    } else if (!strcmp(how, "brk")) {
        long top = (long)(uintptr_t)tiny + TINY;
        long got = syscall(SYS_brk, top);
        report("break over tiny", got == top ? tiny : MAP_FAILED, tiny, TINY);
    } else if (!strcmp(how, "fixed")) {
        char *both = map(BIG + SMALL);
        report("big and small at once", both, big, BIG + SMALL);
        memset(big, 'f', BIG);
        char *fixed = (char *)syscall(SYS_mmap, big, BIG, (long)(PROT_READ | PROT_WRITE),
                                      (long)(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
                                      -1L, 0L);
        report("fixed over big", fixed, big, BIG);
    } else if (!strcmp(how, "file")) {
        int fd = open("/dev/input", O_RDONLY);
        long size = lseek(fd, 0, SEEK_END);
        char *file = (char *)syscall(SYS_mmap, 0L, SMALL, (long)PROT_READ, (long)MAP_PRIVATE,
                                     (long)fd, 0L);
        if (file == MAP_FAILED || size <= 0 || size >= SMALL)
            return 3;
        report("file's tail", file + size, small + size, SMALL - size);
    }
    return 0;
}

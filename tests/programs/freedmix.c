/* freedmix: hostile uses of freed heap memory (tests/sandbox/test_equivalence.py).
 * The prefix maps areas of odd sizes, fills them, frees some of them whole or in
 * part and scribbles over what it freed; after the first channel access (where a
 * snapshot resumes) argv[1] picks what gets those pages again: "partial" maps
 * into a hole munmap cut inside a mapping, "odd" maps odd sizes, "floor" moves the
 * break up into memory the lowest mapping gave back (odd breaks, shrink and grow),
 * "dontneed" madvises over freed and mapped pages, "fixed" maps MAP_FIXED over part
 * of a freed range.  Every line says how many non-zero bytes a guest got where it
 * was handed memory (must be 0) and a hash of the neighbouring pages it still owns
 * or freed (its own data: the same under both engines, fresh, reused or resumed). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PG 4096L

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

static unsigned hash(const char *p, long n)
{
    unsigned h = 2166136261u;
    for (long i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static char *map(long size)
{
    return (char *)syscall(SYS_mmap, 0L, size, (long)(PROT_READ | PROT_WRITE),
                           (long)(MAP_PRIVATE | MAP_ANONYMOUS), -1L, 0L);
}

static char *fixed(char *at, long size)
{
    return (char *)syscall(SYS_mmap, at, size, (long)(PROT_READ | PROT_WRITE),
                           (long)(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), -1L, 0L);
}

static long unmap(char *at, long size)
{
    return syscall(SYS_munmap, at, size);
}

/* a fresh mapping: its non-zero bytes (must be 0), where it is relative to base */
static void got(const char *what, const char *p, long size, const char *base)
{
    char line[160];
    if (p == MAP_FAILED)
        snprintf(line, sizeof line, "%s: failed\n", what);
    else
        snprintf(line, sizeof line, "%s: at %+ld, %ld non-zero of %ld\n", what,
                 (long)(p - base), nonzero(p, size), size);
    say(line);
}

static void seen(const char *what, const char *p, long size)
{
    char line[160];
    snprintf(line, sizeof line, "%s: hash %08x, %ld non-zero of %ld\n", what, hash(p, size),
             nonzero(p, size), size);
    say(line);
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "partial";
    unsigned x = 2166136261u;
    for (unsigned i = 0; i < 400000; i++) {     /* a prefix worth a snapshot */
        x = (x ^ i) * 16777619u;
        table[i & 0xffff] ^= x;
    }
    /* a: 37 pages, its pages [10, 15) freed and then written;
     * b: 4097 bytes freed whole, then its second page written;
     * c: 12289 bytes, its first page freed;
     * d: 10 pages, [3, 7) freed and written */
    char *a = map(37 * PG), *b = map(4097), *c = map(12289), *d = map(10 * PG);
    if (a == MAP_FAILED || b == MAP_FAILED || c == MAP_FAILED || d == MAP_FAILED)
        return 2;
    memset(a, 'a', 37 * PG);
    memset(b, 'b', 4097);
    memset(c, 'c', 12289);
    memset(d, 'd', 10 * PG);
    long r = unmap(a + 10 * PG, 5 * PG) | unmap(b, 4097) | unmap(c, PG) |
             unmap(d + 3 * PG, 4 * PG);
    memset(a + 11 * PG + 7, 'x', 3 * PG - 9);   /* written after it was freed */
    memset(b + PG, 'y', PG);
    memset(d + 3 * PG, 'w', 4 * PG);
    char line[120];
    snprintf(line, sizeof line, "prefix %08x, unmapped %ld, order %s\n", table[x & 0xffff], r,
             d < c && c < b && b < a ? "down" : "other");
    say(line);                                  /* the first channel access */

    if (!strcmp(how, "partial")) {
        got("3 pages", map(3 * PG), 3 * PG, a);
        got("1 byte", map(1), PG, a);
        got("1 page", map(PG), PG, a);
        seen("a's own", a, 10 * PG);
        seen("a's rest", a + 15 * PG, 22 * PG);
    } else if (!strcmp(how, "odd")) {
        got("4097 bytes", map(4097), 2 * PG, a);
        got("5 bytes", map(5), PG, a);
        got("8193 bytes", map(8193), 3 * PG, a);
        got("12289 bytes", map(12289), 4 * PG, a);
        seen("c's rest", c + PG, 2 * PG);
    } else if (!strcmp(how, "floor")) {
        /* unmap everything below a: the floor rises to a, the break may follow */
        unmap(d, 10 * PG);
        unmap(c + PG, 3 * PG);                 /* 12289 bytes: 4 pages */
        long start = syscall(SYS_brk, 0L);
        long top = (long)(uintptr_t)a;          /* b, c and d were just below */
        long odd = top - 3 * PG - 123;
        long now = syscall(SYS_brk, odd);
        snprintf(line, sizeof line, "break up %s\n", now == odd ? "ok" : "refused");
        say(line);
        if (now != odd)
            return 4;
        got("break's last 9 pages", (char *)odd - 9 * PG, 9 * PG, a);
        seen("past the break", (char *)odd, top - odd);
        memset((char *)odd, 'q', 100);          /* past the break, in its page */
        now = syscall(SYS_brk, top);
        got("break to a", now == top ? (char *)odd : MAP_FAILED, top - odd, a);
        now = syscall(SYS_brk, odd - 5 * PG - 7);
        memset((char *)odd - 5 * PG, 'r', 5 * PG);     /* past the break again */
        now = syscall(SYS_brk, top);
        got("break down and up", now == top ? (char *)odd - 5 * PG - 7 : MAP_FAILED,
            5 * PG + 7, a);
        got("mapped under a", map(PG), PG, a);
        syscall(SYS_brk, start);
        got("a page at the old floor", map(7 * PG), 7 * PG, a);
    } else if (!strcmp(how, "dontneed")) {
        long r1 = syscall(SYS_madvise, a + 9 * PG, 3 * PG, (long)MADV_DONTNEED);
        seen("a after madvise", a, 37 * PG);
        got("2 pages", map(2 * PG), 2 * PG, a);
        got("3 pages", map(3 * PG), 3 * PG, a);
        long r2 = syscall(SYS_madvise, d, 10 * PG, (long)MADV_DONTNEED);
        snprintf(line, sizeof line, "madvise %ld %ld\n", r1, r2);
        say(line);
        got("d's hole", map(4 * PG), 4 * PG, a);
    } else if (!strcmp(how, "fixed")) {
        char *f = fixed(d + 5 * PG, 4 * PG);    /* half over d's hole, half over d */
        got("fixed over d", f, 4 * PG, a);
        memset(f, 'k', 4 * PG);
        seen("d's hole, below fixed", d + 3 * PG, 2 * PG);
        got("2 pages", map(2 * PG), 2 * PG, a);
        char *g = map(2 * PG);
        char where[80];
        snprintf(where, sizeof where, "2 more pages (%s fixed)",
                 g != MAP_FAILED && g < f + 4 * PG && f < g + 2 * PG ? "over" : "not over");
        got(where, g, 2 * PG, a);
        seen("fixed", f, 4 * PG);
    }
    return 0;
}

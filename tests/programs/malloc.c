/* malloc: many malloc/free/realloc calls of sizes from 1 byte to 3 MiB (the
 * ones over 128 KiB go to mmap in both musl and glibc), each block filled with a
 * pattern that is checked before it is freed or after it is moved by realloc.
 * Prints a checksum of everything it verified, never an address. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 128

static uint64_t state = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)                   /* xorshift64: same sequence everywhere */
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static size_t pick_size(void)
{
    uint64_t r = rnd() % 1000;
    if (r < 600)
        return 1 + rnd() % 64;
    if (r < 900)
        return 65 + rnd() % 2048;
    if (r < 980)
        return 2048 + rnd() % (256 << 10);
    return (128 << 10) + rnd() % (3 << 20); /* 128 KiB..3 MiB: mmap territory */
}

struct slot {
    unsigned char *p;
    size_t size;
    unsigned char tag;
};
static struct slot slots[SLOTS];
static uint64_t checksum;

/* Fill small blocks fully; for big ones the first and last 256 bytes and one
 * byte per page (enough to touch every page without hours of emulation). */
static void fill(struct slot *s)
{
    if (s->size <= 8192) {
        memset(s->p, s->tag, s->size);
        return;
    }
    memset(s->p, s->tag, 256);
    memset(s->p + s->size - 256, s->tag, 256);
    for (size_t i = 256; i < s->size; i += 4096)
        s->p[i] = s->tag;
}

/* Check the pattern that fill() wrote into a block of s->size bytes, but only
 * below `upto` (the part a realloc must have kept). */
static int check(const struct slot *s, size_t upto)
{
    size_t n = upto < s->size ? upto : s->size;
    if (s->size <= 8192) {
        for (size_t i = 0; i < n; i++) {
            if (s->p[i] != s->tag)
                return 0;
            checksum = checksum * 31 + s->p[i] + i;
        }
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        int filled = i < 256 || i >= s->size - 256 || (i - 256) % 4096 == 0;
        if (!filled)
            continue;
        if (s->p[i] != s->tag)
            return 0;
        checksum = checksum * 31 + s->p[i] + i;
        if (i >= 256 && i < s->size - 256)
            i += 4095;              /* jump to the next touched byte */
    }
    return 1;
}

int main(void)
{
    long mallocs = 0, frees = 0, reallocs = 0;
    for (int op = 0; op < 3000; op++) {
        struct slot *s = &slots[rnd() % SLOTS];
        int what = (int)(rnd() % 3);
        if (!s->p) {
            s->size = pick_size();
            s->tag = (unsigned char)rnd();
            s->p = malloc(s->size);
            if (!s->p) {
                printf("malloc(%zu) failed\n", s->size);
                return 1;
            }
            fill(s);
            mallocs++;
        } else if (what == 0) {
            if (!check(s, s->size)) {
                printf("corruption before free at op %d\n", op);
                return 2;
            }
            free(s->p);
            s->p = NULL;
            frees++;
        } else {
            size_t old = s->size, nsize = pick_size();
            unsigned char *q = realloc(s->p, nsize);
            if (!q) {
                printf("realloc(%zu) failed\n", nsize);
                return 1;
            }
            s->p = q;
            /* what realloc kept must still be the old pattern */
            struct slot kept = {q, old, s->tag};
            if (!check(&kept, nsize)) {
                printf("corruption after realloc at op %d\n", op);
                return 2;
            }
            s->size = nsize;
            fill(s);
            reallocs++;
        }
    }
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].p) {
            if (!check(&slots[i], slots[i].size)) {
                printf("corruption at the end in slot %d\n", i);
                return 2;
            }
            free(slots[i].p);
            frees++;
        }
    }
    /* calloc must give zeroed memory, also when it reuses freed blocks */
    for (int i = 0; i < 64; i++) {
        size_t n = 1 + rnd() % (128 << 10);
        unsigned char *z = calloc(n, 1);
        for (size_t j = 0; j < n; j += 97)
            if (z[j]) {
                printf("calloc not zeroed\n");
                return 2;
            }
        free(z);
    }
    printf("mallocs %ld frees %ld reallocs %ld checksum %016llx\n", mallocs, frees,
           reallocs, (unsigned long long)checksum);
    return 0;
}

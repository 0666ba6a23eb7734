/* Map step of a word count: count the words of /dev/stdin (the object this
 * node runs next to) and send each word's count to one reducer.
 *
 *     mapper <reducer group>
 *
 * The reducers are the channels /dev/out/<group>-1 ... /dev/out/<group>-N
 * (or /dev/out/<group> when the group has one node): ZeroCloud creates one
 * per node of every group this one connects to.  Word w goes to reducer
 * fnv1a(w) % N + 1, so each reducer gets its own words and no word is
 * split between two of them.  A word is a run of bytes between ASCII
 * whitespace (as Python's bytes.split()).  Each line sent is
 * "<word> <count>\n".
 *
 * Build: musl-gcc -static -O2 -o mapper mapper.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_REDUCERS 1024

struct entry { char *word; size_t len; uint32_t hash; unsigned long count; };

static struct entry *table;
static size_t slots = 1024, used;

static uint32_t fnv1a(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 16777619u; }
    return h;
}

static void *need(void *p) {
    if (!p) { fputs("mapper: out of memory\n", stderr); exit(2); }
    return p;
}

static struct entry *find(struct entry *t, size_t n, const char *w, size_t len, uint32_t h) {
    size_t i = h & (n - 1);
    while (t[i].word && !(t[i].hash == h && t[i].len == len && !memcmp(t[i].word, w, len)))
        i = (i + 1) & (n - 1);
    return &t[i];
}

static void grow(void) {
    size_t n = slots * 2;
    struct entry *t = need(calloc(n, sizeof *t));
    for (size_t i = 0; i < slots; i++)
        if (table[i].word) *find(t, n, table[i].word, table[i].len, table[i].hash) = table[i];
    free(table);
    table = t;
    slots = n;
}

static void count(const char *w, size_t len) {
    uint32_t h = fnv1a(w, len);
    struct entry *e = find(table, slots, w, len, h);
    if (!e->word) {
        e->word = need(malloc(len));
        memcpy(e->word, w, len);
        e->len = len;
        e->hash = h;
        used++;
        if (used * 10 > slots * 7) { grow(); e = find(table, slots, w, len, h); }
    }
    e->count++;
}

static int space(int c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

int main(int argc, char **argv) {
    if (argc != 2) { fputs("usage: mapper <reducer group>\n", stderr); return 2; }
    table = need(calloc(slots, sizeof *table));

    /* count the words of stdin; a word may span two reads */
    static char buf[1 << 16];
    char *word = NULL;
    size_t len = 0, cap = 0;
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (space(buf[i])) {
                if (len) count(word, len);
                len = 0;
            } else {
                if (len == cap) word = need(realloc(word, cap = cap ? cap * 2 : 64));
                word[len++] = buf[i];
            }
        }
    }
    if (n < 0) { perror("mapper: read /dev/stdin"); return 1; }
    if (len) count(word, len);

    /* open every reducer's channel */
    static FILE *out[MAX_REDUCERS];
    char path[512];
    int reducers = 0;
    snprintf(path, sizeof path, "/dev/out/%s", argv[1]);
    if ((out[0] = fopen(path, "w")))
        reducers = 1;
    else
        while (reducers < MAX_REDUCERS) {
            snprintf(path, sizeof path, "/dev/out/%s-%d", argv[1], reducers + 1);
            if (!(out[reducers] = fopen(path, "w"))) break;
            reducers++;
        }
    if (!reducers) { fprintf(stderr, "mapper: no channel %s\n", path); return 1; }

    for (size_t i = 0; i < slots; i++) {
        struct entry *e = &table[i];
        if (!e->word) continue;
        FILE *f = out[e->hash % reducers];
        fwrite(e->word, 1, e->len, f);
        fprintf(f, " %lu\n", e->count);
    }
    for (int r = 0; r < reducers; r++)
        if (fclose(out[r])) { perror("mapper: write"); return 1; }
    return 0;
}

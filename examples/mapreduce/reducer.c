/* Reduce step of a word count: add up what every mapper sent this node and
 * print "<word> <count>\n" lines, sorted by word (byte order), to stdout.
 *
 *     reducer <mapper group>[,<group>...] [<node>]
 *
 * The mappers' data arrives on /dev/in/<group>-1 ... /dev/in/<group>-N
 * (or /dev/in/<group> when the group has one node), each a stream of
 * "<word> <count>\n" lines (see mapper.c); several groups, comma-separated,
 * are all read (a final reducer reading reduce0,reduce1,...).  A group with
 * no channel here is an error (a misspelt name would count nothing).  With
 * <node>, the lines go to /dev/out/<node> (another reducer's input) instead
 * of stdout: reducing in stages, doc/job-reference.md.
 *
 * Build: musl-gcc -static -O2 -o reducer reducer.c
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry { char *word; size_t len; uint32_t hash; unsigned long count; };

static struct entry *table;
static size_t slots = 1024, used;

static uint32_t fnv1a(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 16777619u; }
    return h;
}

static void *need(void *p) {
    if (!p) { fputs("reducer: out of memory\n", stderr); exit(2); }
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

static void add(const char *w, size_t len, unsigned long count) {
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
    e->count += count;
}

/* Read one mapper's stream; 0 when the channel does not exist. */
static int consume(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        char *sep = memrchr(line, ' ', n);
        if (!sep || sep == line) { fprintf(stderr, "reducer: bad line in %s\n", path); exit(1); }
        add(line, sep - line, strtoul(sep + 1, NULL, 10));
    }
    free(line);
    fclose(f);
    return 1;
}

static int by_word(const void *a, const void *b) {
    const struct entry *x = a, *y = b;
    int c = memcmp(x->word, y->word, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Read every node of one group: 0 when none writes to this one. */
static int consume_group(const char *group) {
    char path[512];
    snprintf(path, sizeof path, "/dev/in/%s", group);
    if (consume(path)) return 1;
    int i = 1;
    for (;; i++) {
        snprintf(path, sizeof path, "/dev/in/%s-%d", group, i);
        if (!consume(path)) break;
    }
    return i > 1;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fputs("usage: reducer <mapper group>[,<group>...] [<node>]\n", stderr);
        return 2;
    }
    table = need(calloc(slots, sizeof *table));
    for (char *group = strtok(argv[1], ","); group; group = strtok(NULL, ","))
        if (!consume_group(group)) {
            fprintf(stderr, "reducer: no channel /dev/in/%s or /dev/in/%s-1: no node of "
                    "group %s writes to this one (its name, and its connect?)\n",
                    group, group, group);
            return 1;
        }
    if (argc == 3) {
        char path[512];
        snprintf(path, sizeof path, "/dev/out/%s", argv[2]);
        if (!freopen(path, "w", stdout)) {
            fprintf(stderr, "reducer: no channel %s (does this group connect to %s?)\n",
                    path, argv[2]);
            return 1;
        }
    }

    size_t n = 0;
    for (size_t i = 0; i < slots; i++)
        if (table[i].word) table[n++] = table[i];
    qsort(table, n, sizeof *table, by_word);
    for (size_t i = 0; i < n; i++) {
        fwrite(table[i].word, 1, table[i].len, stdout);
        printf(" %lu\n", table[i].count);
    }
    return fflush(stdout) ? 1 : 0;
}

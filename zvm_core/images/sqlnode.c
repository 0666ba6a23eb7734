/* sqlnode: one node of an SQL query over objects (the `sqlite` system image).
 *
 *   sqlite --schema SQL [--load csv|csvh|jsonl|partials PATH [--insert SQL] [--delimiter C]
 *          [--fields WIDTH:F1,F2,...]] --query SQL [--out partial|csv|csvh|json] [--output PATH]
 *
 * An in-memory SQLite database gets the tables of --schema; --load reads a
 * source into the first table the schema creates (csv: RFC 4180 records, csvh:
 * the same with a header row to skip; --fields: records have WIDTH fields, of which
 * fields F1, F2, ... (from 1, ascending) are the table's columns; jsonl: one JSON value per line, inserted
 * by --insert with the line as parameter ?1; partials: the typed rows other
 * nodes wrote, from PATH, else PATH-1, PATH-2, ... until one is missing).
 * Sources may be gzip-compressed (recognised by their first bytes).  --query
 * runs once; its rows go to --output (default /dev/stdout):
 *
 *   partial  one line per row, fields separated by TAB: n (NULL), i<integer>,
 *            r<16 hex digits: the IEEE-754 bits>, t<text>, x<hex of a blob>;
 *            text escapes \\ \t \n \r.  Exact: a reader gets the same values.
 *   csv      RFC 4180; NULL is an empty field; reals in the shortest form that
 *            reads back to the same double; csvh adds a header row.
 *   json     one JSON object per row, {"<column>": value, ...}.
 *
 * In csv and json a blob is its bytes in hexadecimal (text).
 *
 * An empty CSV field is NULL.  Errors go to stderr as "sqlite: <where>: <what>"
 * and the exit code is 1.  The planner that writes these command lines is
 * zerocloud/sql/planner.py.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "sqlite3.h"

/* Debian's libz.a is built with glibc's fortify wrappers; musl has none. */
int __vsnprintf_chk(char *s, size_t n, int flag, size_t slen, const char *fmt, va_list ap) {
    (void)flag; (void)slen;
    return vsnprintf(s, n, fmt, ap);
}
int __snprintf_chk(char *s, size_t n, int flag, size_t slen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = __vsnprintf_chk(s, n, flag, slen, fmt, ap);
    va_end(ap);
    return r;
}

static sqlite3 *db;
static const char *where = "start";

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sqlite: %s: ", where);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *need(void *p) {
    if (!p) die("out of memory");
    return p;
}

static void check(int rc) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) die("%s", sqlite3_errmsg(db));
}

/* -- a growing byte buffer ------------------------------------------------------ */

struct buf { char *p; size_t n, cap; };

static void put(struct buf *b, const void *data, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap) cap *= 2;
        b->p = need(realloc(b->p, cap));
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void putc_(struct buf *b, char c) { put(b, &c, 1); }

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* -- reading a (maybe gzip) source byte by byte -------------------------------- */

struct src { gzFile gz; unsigned char buf[1 << 16]; int n, i; };

static int src_open(struct src *s, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    s->gz = gzdopen(fd, "rb");         /* reads plain data as it is */
    if (!s->gz) die("out of memory");
    gzbuffer(s->gz, 1 << 17);
    s->n = s->i = 0;
    return 1;
}

static int src_get(struct src *s) {
    if (s->i == s->n) {
        s->n = gzread(s->gz, s->buf, sizeof s->buf);
        s->i = 0;
        if (s->n < 0) {
            int err;
            die("cannot read: %s", gzerror(s->gz, &err));
        }
        if (s->n == 0) {
            int err;
            const char *msg = gzerror(s->gz, &err);
            if (err != Z_OK) die("cannot read: %s (damaged or cut gzip data)", msg);
            return EOF;
        }
    }
    return s->buf[s->i++];
}

static void src_close(struct src *s) { gzclose(s->gz); }

/* -- loading ---------------------------------------------------------------------- */

static sqlite3_stmt *insert_stmt(const char *table, int *ncols) {
    char *sql = need(sqlite3_mprintf("SELECT * FROM \"%w\"", table));
    sqlite3_stmt *st;
    check(sqlite3_prepare_v2(db, sql, -1, &st, NULL));
    *ncols = sqlite3_column_count(st);
    sqlite3_finalize(st);
    sqlite3_free(sql);
    struct buf b = {0};
    char *head = need(sqlite3_mprintf("INSERT INTO \"%w\" VALUES (", table));
    puts_(&b, head);
    sqlite3_free(head);
    for (int i = 0; i < *ncols; i++) puts_(&b, i ? ",?" : "?");
    puts_(&b, ")");
    check(sqlite3_prepare_v2(db, b.p, -1, &st, NULL));
    free(b.p);
    return st;
}

static void insert_row(sqlite3_stmt *st) {
    check(sqlite3_step(st));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* "WIDTH:F1,F2,..." -> keep[field] = column (from 1) or 0, for WIDTH fields. */
static int *parse_fields(const char *spec, int ncols, int *width) {
    char *end;
    long w = strtol(spec, &end, 10);
    if (w < 1 || w > 100000 || *end != ':') die("bad --fields %s", spec);
    int *keep = need(calloc((size_t)w, sizeof *keep));
    int col = 0;
    long last = 0;
    for (const char *p = end + 1; *p; p = *end ? end + 1 : end) {
        long f = strtol(p, &end, 10);
        if (f <= last || f > w || (*end && *end != ',')) die("bad --fields %s", spec);
        keep[f - 1] = ++col;
        last = f;
    }
    if (col != ncols) die("--fields names %d fields for %d columns", col, ncols);
    *width = (int)w;
    return keep;
}

/* RFC 4180 records; an empty field (quoted or not) is NULL. */
static void load_csv(const char *path, const char *table, int header, int delim,
                     const char *fields) {
    struct src s;
    if (!src_open(&s, path)) die("cannot open %s: %s", path, strerror(errno));
    int ncols, width;
    sqlite3_stmt *st = insert_stmt(table, &ncols);
    int *keep = NULL;
    if (fields) {
        keep = parse_fields(fields, ncols, &width);
    } else {
        width = ncols;
    }
    struct buf field = {0};
    long record = 0;
    int c = src_get(&s);
    if (c == 0xEF) {                         /* a UTF-8 byte order mark */
        int c2 = src_get(&s), c3 = src_get(&s);
        if (c2 != 0xBB || c3 != 0xBF) die("%s: does not start like UTF-8 text", path);
        c = src_get(&s);
    }
    while (c != EOF) {
        record++;
        int nf = 0, empty_line = 1;
        for (;;) {                            /* one record */
            field.n = 0;
            if (field.p) field.p[0] = 0;
            if (c == '"') {
                empty_line = 0;
                for (;;) {
                    c = src_get(&s);
                    if (c == EOF) die("%s: record %ld: a quoted field does not end", path, record);
                    if (c == '"') {
                        c = src_get(&s);
                        if (c != '"') break;
                    }
                    putc_(&field, (char)c);
                }
                if (c != delim && c != '\n' && c != '\r' && c != EOF)
                    die("%s: record %ld: text after a closing quote", path, record);
            } else {
                while (c != delim && c != '\n' && c != '\r' && c != EOF) {
                    putc_(&field, (char)c);
                    int j = s.i;                  /* the rest of the field in the buffer */
                    while (j < s.n && s.buf[j] != delim && s.buf[j] != '\n' && s.buf[j] != '\r')
                        j++;
                    put(&field, s.buf + s.i, (size_t)(j - s.i));
                    s.i = j;
                    c = src_get(&s);
                }
            }
            if (field.n || c == delim) empty_line = 0;
            nf++;
            if (!(header && record == 1) && !empty_line) {
                if (nf > width)
                    die("%s: record %ld has more than %d fields", path, record, width);
                int col = keep ? keep[nf - 1] : nf;
                if (field.n && col)
                    sqlite3_bind_text(st, col, field.p, (int)field.n, SQLITE_TRANSIENT);
            }
            if (c == delim) {
                c = src_get(&s);
                continue;
            }
            if (c == '\r') {
                c = src_get(&s);
                if (c == '\n') c = src_get(&s);
            } else if (c == '\n') {
                c = src_get(&s);
            }
            break;
        }
        if (empty_line) {                     /* a blank line is no record */
            record--;
            continue;
        }
        if (header && record == 1) continue;
        if (nf != width) die("%s: record %ld has %d fields, not %d", path, record, nf, width);
        insert_row(st);
    }
    free(keep);
    free(field.p);
    sqlite3_finalize(st);
    src_close(&s);
}

/* One JSON value per line, inserted by `insert` with the line as ?1. */
static void load_jsonl(const char *path, const char *insert) {
    struct src s;
    if (!src_open(&s, path)) die("cannot open %s: %s", path, strerror(errno));
    sqlite3_stmt *st;
    check(sqlite3_prepare_v2(db, insert, -1, &st, NULL));
    struct buf line = {0};
    long lineno = 0;
    int c;
    do {
        line.n = 0;
        while ((c = src_get(&s)) != EOF && c != '\n') putc_(&line, (char)c);
        lineno++;
        size_t n = line.n;
        while (n && (line.p[n - 1] == '\r' || line.p[n - 1] == ' ' || line.p[n - 1] == '\t')) n--;
        if (!n) continue;
        sqlite3_bind_text(st, 1, line.p, (int)n, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE) die("%s: line %ld: %s", path, lineno, sqlite3_errmsg(db));
        sqlite3_reset(st);
    } while (c != EOF);
    free(line.p);
    sqlite3_finalize(st);
    src_close(&s);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Bind one typed field (see the top of the file). */
static void bind_typed(sqlite3_stmt *st, int i, char *f, size_t n, const char *path, long line) {
    if (n == 0) die("%s: line %ld: an empty field", path, line);
    switch (f[0]) {
    case 'n':
        return;
    case 'i': {
        char *end;
        errno = 0;
        long long v = strtoll(f + 1, &end, 10);
        if (errno || end != f + n || n == 1) die("%s: line %ld: bad integer", path, line);
        sqlite3_bind_int64(st, i, v);
        return;
    }
    case 'r': {
        uint64_t bits = 0;
        if (n != 17) die("%s: line %ld: bad real", path, line);
        for (size_t k = 1; k < n; k++) {
            int h = hexval((unsigned char)f[k]);
            if (h < 0) die("%s: line %ld: bad real", path, line);
            bits = bits << 4 | (uint64_t)h;
        }
        double d;
        memcpy(&d, &bits, sizeof d);
        sqlite3_bind_double(st, i, d);
        return;
    }
    case 't': {
        size_t o = 0;
        for (size_t k = 1; k < n; k++) {
            char ch = f[k];
            if (ch == '\\' && k + 1 < n) {
                ch = f[++k];
                ch = ch == 't' ? '\t' : ch == 'n' ? '\n' : ch == 'r' ? '\r' : ch;
            }
            f[o++] = ch;
        }
        sqlite3_bind_text(st, i, f, (int)o, SQLITE_TRANSIENT);
        return;
    }
    case 'x': {
        size_t o = 0;
        if (n % 2 == 0) die("%s: line %ld: bad blob", path, line);
        for (size_t k = 1; k + 1 < n; k += 2) {
            int hi = hexval((unsigned char)f[k]), lo = hexval((unsigned char)f[k + 1]);
            if (hi < 0 || lo < 0) die("%s: line %ld: bad blob", path, line);
            f[o++] = (char)(hi << 4 | lo);
        }
        sqlite3_bind_blob(st, i, f, (int)o, SQLITE_TRANSIENT);
        return;
    }
    }
    die("%s: line %ld: unknown field type %c", path, line, f[0]);
}

static void load_partial(const char *path, const char *table) {
    struct src s;
    if (!src_open(&s, path)) die("cannot open %s: %s", path, strerror(errno));
    int ncols;
    sqlite3_stmt *st = insert_stmt(table, &ncols);
    struct buf line = {0};
    long lineno = 0;
    int c;
    while ((c = src_get(&s)) != EOF) {
        line.n = 0;
        do putc_(&line, (char)c); while ((c = src_get(&s)) != EOF && c != '\n');
        if (c != '\n') die("%s: line %ld does not end", path, lineno + 1);
        lineno++;
        int nf = 0;
        char *f = line.p, *end = line.p + line.n;
        for (;;) {
            char *tab = memchr(f, '\t', (size_t)(end - f));
            char *stop = tab ? tab : end;
            if (++nf > ncols) die("%s: line %ld has more than %d fields", path, lineno, ncols);
            bind_typed(st, nf, f, (size_t)(stop - f), path, lineno);
            if (!tab) break;
            f = tab + 1;
        }
        if (nf != ncols) die("%s: line %ld has %d fields, not %d", path, lineno, nf, ncols);
        insert_row(st);
    }
    free(line.p);
    sqlite3_finalize(st);
    src_close(&s);
}

/* PATH, else PATH-1, PATH-2, ... (the channels from the nodes of one group). */
static void load_partials(const char *path, const char *table) {
    if (access(path, F_OK) == 0) {
        load_partial(path, table);
        return;
    }
    for (int i = 1;; i++) {
        char name[4096];
        snprintf(name, sizeof name, "%s-%d", path, i);
        if (access(name, F_OK) != 0) {
            if (i == 1) die("no %s or %s-1", path, path);
            return;
        }
        load_partial(name, table);
    }
}

/* -- output ----------------------------------------------------------------------- */

/* The shortest %g form that reads back to the same double, with a ".0" when
 * it looks like an integer (as Python's repr and SQLite's shell write it). */
static void real_text(double d, char *out, size_t cap) {
    if (d != d) { snprintf(out, cap, "NaN"); return; }
    if (d > 1.7976931348623157e308) { snprintf(out, cap, "Inf"); return; }
    if (d < -1.7976931348623157e308) { snprintf(out, cap, "-Inf"); return; }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, d);
        if (strtod(out, NULL) == d) break;
    }
    if (!strpbrk(out, ".eEnN")) strncat(out, ".0", cap - strlen(out) - 1);
}

static void csv_text(struct buf *o, const char *s, int n) {
    if (!memchr(s, ',', n) && !memchr(s, '"', n) && !memchr(s, '\n', n) && !memchr(s, '\r', n)) {
        put(o, s, n);
        return;
    }
    putc_(o, '"');
    for (int i = 0; i < n; i++) {
        if (s[i] == '"') putc_(o, '"');
        putc_(o, s[i]);
    }
    putc_(o, '"');
}

static void json_text(struct buf *o, const unsigned char *s, int n) {
    putc_(o, '"');
    for (int i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') { putc_(o, '\\'); putc_(o, (char)c); }
        else if (c == '\n') puts_(o, "\\n");
        else if (c == '\r') puts_(o, "\\r");
        else if (c == '\t') puts_(o, "\\t");
        else if (c < 0x20) { char u[8]; snprintf(u, sizeof u, "\\u%04x", c); puts_(o, u); }
        else putc_(o, (char)c);
    }
    putc_(o, '"');
}

static const char hexdigits[] = "0123456789abcdef";

static void partial_value(struct buf *o, sqlite3_stmt *st, int i) {
    char tmp[32];
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_NULL:
        putc_(o, 'n');
        break;
    case SQLITE_INTEGER:
        snprintf(tmp, sizeof tmp, "i%lld", (long long)sqlite3_column_int64(st, i));
        puts_(o, tmp);
        break;
    case SQLITE_FLOAT: {
        double d = sqlite3_column_double(st, i);
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        snprintf(tmp, sizeof tmp, "r%016" PRIx64, bits);
        puts_(o, tmp);
        break;
    }
    case SQLITE_TEXT: {
        const char *s = (const char *)sqlite3_column_text(st, i);
        int n = sqlite3_column_bytes(st, i);
        putc_(o, 't');
        for (int k = 0; k < n; k++) {
            char c = s[k];
            if (c == '\\') puts_(o, "\\\\");
            else if (c == '\t') puts_(o, "\\t");
            else if (c == '\n') puts_(o, "\\n");
            else if (c == '\r') puts_(o, "\\r");
            else putc_(o, c);
        }
        break;
    }
    default: {
        const unsigned char *s = sqlite3_column_blob(st, i);
        int n = sqlite3_column_bytes(st, i);
        putc_(o, 'x');
        for (int k = 0; k < n; k++) {
            putc_(o, hexdigits[s[k] >> 4]);
            putc_(o, hexdigits[s[k] & 15]);
        }
    }
    }
}

static void plain_value(struct buf *o, sqlite3_stmt *st, int i, int json) {
    char tmp[40];
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_NULL:
        if (json) puts_(o, "null");
        break;
    case SQLITE_INTEGER:
        snprintf(tmp, sizeof tmp, "%lld", (long long)sqlite3_column_int64(st, i));
        puts_(o, tmp);
        break;
    case SQLITE_FLOAT:
        real_text(sqlite3_column_double(st, i), tmp, sizeof tmp);
        if (json && (tmp[0] == 'N' || tmp[1] == 'I' || tmp[0] == 'I'))
            puts_(o, tmp[0] == 'N' ? "null" : tmp[0] == '-' ? "-1e999" : "1e999");
        else
            puts_(o, tmp);
        break;
    case SQLITE_TEXT: {
        const char *s = (const char *)sqlite3_column_text(st, i);
        int n = sqlite3_column_bytes(st, i);
        if (json) json_text(o, (const unsigned char *)s, n);
        else csv_text(o, s, n);
        break;
    }
    default: {              /* a blob: its bytes in hexadecimal */
        const unsigned char *s = sqlite3_column_blob(st, i);
        int n = sqlite3_column_bytes(st, i);
        if (json) putc_(o, '"');
        for (int k = 0; k < n; k++) {
            putc_(o, hexdigits[s[k] >> 4]);
            putc_(o, hexdigits[s[k] & 15]);
        }
        if (json) putc_(o, '"');
    }
    }
}

static void flush(struct buf *o, FILE *out) {
    if (o->n && fwrite(o->p, 1, o->n, out) != o->n) die("cannot write: %s", strerror(errno));
    o->n = 0;
}

static void run_query(const char *sql, const char *format, const char *path) {
    sqlite3_stmt *st;
    const char *tail;
    where = "query";
    check(sqlite3_prepare_v2(db, sql, -1, &st, &tail));
    if (!st) die("no statement");
    while (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';') tail++;
    if (*tail) die("one statement only");
    if (!sqlite3_stmt_readonly(st)) die("the query must only read");
    FILE *out = fopen(path, "w");
    if (!out) die("cannot open %s: %s", path, strerror(errno));
    int partial = !strcmp(format, "partial"), json = !strcmp(format, "json");
    int ncols = sqlite3_column_count(st);
    struct buf o = {0};
    if (!strcmp(format, "csvh")) {
        for (int i = 0; i < ncols; i++) {
            const char *name = sqlite3_column_name(st, i);
            if (i) putc_(&o, ',');
            csv_text(&o, name, (int)strlen(name));
        }
        puts_(&o, "\r\n");
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (json) putc_(&o, '{');
        for (int i = 0; i < ncols; i++) {
            if (i) putc_(&o, partial ? '\t' : ',');
            if (json) {
                const char *name = sqlite3_column_name(st, i);
                json_text(&o, (const unsigned char *)name, (int)strlen(name));
                putc_(&o, ':');
            }
            if (partial) partial_value(&o, st, i);
            else plain_value(&o, st, i, json);
        }
        puts_(&o, json ? "}\n" : partial ? "\n" : "\r\n");
        if (o.n > (1 << 16)) flush(&o, out);
    }
    if (rc != SQLITE_DONE) die("%s", sqlite3_errmsg(db));
    flush(&o, out);
    free(o.p);
    sqlite3_finalize(st);
    if (fclose(out) != 0) die("cannot write %s: %s", path, strerror(errno));
}

static void usage(void) {
    fputs("usage: sqlite --schema SQL [--load csv|csvh|jsonl|partials PATH [--insert SQL] "
          "[--delimiter C] [--fields WIDTH:F1,F2,...]] --query SQL "
          "[--out partial|csv|csvh|json] [--output PATH]\n", stderr);
    exit(2);
}

int main(int argc, char **argv) {
    const char *schema = NULL, *load = NULL, *from = NULL, *insert = NULL, *query = NULL;
    const char *fields = NULL;
    const char *format = "csvh", *output = "/dev/stdout";
    int delim = ',';
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        if (!strcmp(a, "--schema")) schema = argv[++i];
        else if (!strcmp(a, "--load")) {
            load = argv[++i];
            if (i + 1 >= argc) usage();
            from = argv[++i];
        }
        else if (!strcmp(a, "--insert")) insert = argv[++i];
        else if (!strcmp(a, "--fields")) fields = argv[++i];
        else if (!strcmp(a, "--delimiter")) delim = (unsigned char)argv[++i][0];
        else if (!strcmp(a, "--query")) query = argv[++i];
        else if (!strcmp(a, "--out")) format = argv[++i];
        else if (!strcmp(a, "--output")) output = argv[++i];
        else usage();
    }
    if (!schema || !query) usage();
    if (strcmp(format, "partial") && strcmp(format, "csv") && strcmp(format, "csvh")
            && strcmp(format, "json"))
        usage();
    check(sqlite3_open(":memory:", &db));
    where = "schema";
    check(sqlite3_exec(db, schema, NULL, NULL, NULL));
    sqlite3_stmt *first;
    check(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE type = 'table' "
                                 "ORDER BY rowid LIMIT 1", -1, &first, NULL));
    if (sqlite3_step(first) != SQLITE_ROW) die("creates no table");
    char *table = need(strdup((const char *)sqlite3_column_text(first, 0)));
    sqlite3_finalize(first);
    if (load) {
        where = "load";
        check(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL));
        if (!strcmp(load, "csv") || !strcmp(load, "csvh"))
            load_csv(from, table, load[3] == 'h', delim, fields);
        else if (!strcmp(load, "jsonl")) {
            if (!insert) usage();
            load_jsonl(from, insert);
        }
        else if (!strcmp(load, "partials")) load_partials(from, table);
        else usage();
        check(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL));
    }
    run_query(query, format, output);
    free(table);
    sqlite3_close(db);
    return 0;
}

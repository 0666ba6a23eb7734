/* sqlnode: one node of an SQL query over objects (the `sqlite` system image).
 *
 *   sqlite [--escaped] --schema SQL [--load csv|csvh|jsonl|partials PATH [--delimiter C]
 *          [--fields WIDTH:F1,F2,...] [--check-header] [--skip-bad] [--numeric C1,C2,...]]
 *          --query SQL
 *          [--out partial|csv|csvh|json] [--output PATH]
 *
 * --escaped (first): the other arguments have \n, \t, \r, \xHH and \\ for
 * the characters a job's arguments cannot hold (see unescape).
 * An in-memory SQLite database gets the tables of --schema; --load reads a
 * source into the first table the schema creates (csv: RFC 4180 records, csvh:
 * the same with a header row to skip; --fields: records have WIDTH fields, of which
 * fields F1, F2, ... (from 1, ascending) are the table's columns; jsonl: one JSON
 * value per line, each column the value of its key (json_extract); partials: the typed rows other
 * nodes wrote, from PATH, else PATH-1, PATH-2, ... until one is missing).
 * --check-header (csvh): the header row must name the table's columns in field
 * order (ASCII case and surrounding blanks aside; an empty name is c<field>),
 * else the source does not load: the columns of a query's objects are read from
 * the first one, and another object whose columns are in another order would
 * otherwise be read by position, silently wrong.
 * --skip-bad (csv, csvh, jsonl): a malformed record (another number of fields,
 * text after a closing quote, a quoted field that does not end, a JSON line that
 * is not a JSON object) is skipped, not fatal; how many were, and the first one,
 * go to stderr and (--out partial) as the output's last line,
 * "#skipped\t<count>\t<source name>\t<line <n>: what>" (text escaped as in a
 * partial field), which the merge's partials loading passes over.  A header row
 * is never skipped.  --numeric (csv, csvh, jsonl): the table's columns C1, C2, ... (from
 * 1) are used as numbers (summed, computed with, ordered against a number), so a record
 * whose value there is text (not empty, not a number: "n/a", "2,50") is malformed too:
 * SQLite would read it as its leading number or 0, a wrong answer.
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
 * Streaming: when the table is plain (every column NUMERIC, no constraint,
 * index or trigger), the source is csv, csvh or jsonl, and
 * the query reads the table in one pass, the rows are not inserted: the query
 * reads them from a virtual table over the source as it is parsed, each value
 * typed by row_value (with SQLite's own NUMERIC affinity function: this file
 * includes the amalgamation for it), so the query sees the same values, rowids
 * and row order as over the loaded table; the rest of a source the query did
 * not read (LIMIT) is still parsed, so a malformed record fails the query
 * either way.  Otherwise the rows are loaded into the table first.
 *
 * Types (row_value): a CSV field is a number only when it is written as JSON writes
 * one (01234, +5, " 12" stay text: SQLite's arithmetic and comparisons with a number
 * still read them as numbers), a JSON string is text; a plain table's loaded rows and
 * the partial rows are stored as they are, not given the NUMERIC affinity again.
 * An empty CSV field is NULL.  Errors go to stderr as "sqlite: <where>: <what>"
 * and the exit code is 1; a source that does not load is "sqlite: load: <name>:
 * line <n>: <what>", its name the object's swift:// URL when ZeroCloud runs the
 * node next to it (source_name), else its path.  The planner that writes these command lines is
 * zerocloud/sql/planner.py.
 */
#define _GNU_SOURCE
#include "sqlite3.c"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

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

/* musl's memcpy and memmove (rep movsq, then a byte loop) are slow for the
 * short copies SQLite makes by the million (values, records, cells); these
 * copy in 16- and 8-byte pieces, and large blocks with rep movsb.  Defining
 * both keeps musl's (one object file) out of the program.  (The byte loops must
 * not be compiled into calls of memcpy and memmove themselves.) */
__attribute__((optimize("no-tree-loop-distribute-patterns")))
void *memcpy(void *restrict dest, const void *restrict src, size_t n) {
    unsigned char *d = dest;
    const unsigned char *s = src;
    if (n >= 16) {
        if (n > 512) {
            __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
            return dest;
        }
        const unsigned char *last = s + n - 16;
        unsigned char *dlast = d + n - 16;
        for (; s < last; s += 16, d += 16) __builtin_memcpy(d, s, 16);
        __builtin_memcpy(dlast, last, 16);          /* the last piece may overlap */
    } else if (n >= 8) {
        uint64_t a, b;
        __builtin_memcpy(&a, s, 8);
        __builtin_memcpy(&b, s + n - 8, 8);
        __builtin_memcpy(d, &a, 8);
        __builtin_memcpy(d + n - 8, &b, 8);
    } else {
        while (n--) *d++ = *s++;
    }
    return dest;
}

/* Overlapping: 8-byte pieces, each read before it is written, away from the overlap. */
__attribute__((optimize("no-tree-loop-distribute-patterns")))
void *memmove(void *dest, const void *src, size_t n) {
    unsigned char *d = dest;
    const unsigned char *s = src;
    uint64_t v;
    if (d + n <= s || s + n <= d) return memcpy(dest, src, n);
    if (d < s) {
        for (; n >= 8; n -= 8, d += 8, s += 8) {
            __builtin_memcpy(&v, s, 8);
            __builtin_memcpy(d, &v, 8);
        }
        while (n--) *d++ = *s++;
    } else if (d > s) {
        for (; n >= 8; ) {
            n -= 8;
            __builtin_memcpy(&v, s + n, 8);
            __builtin_memcpy(d + n, &v, 8);
        }
        while (n--) d[n] = s[n];
    }
    return dest;
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

static void putc_(struct buf *b, char c) {
    if (b->n + 2 > b->cap) {
        put(b, &c, 1);
        return;
    }
    b->p[b->n++] = c;
    b->p[b->n] = 0;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* -- reading a (maybe gzip) source ------------------------------------------------ */

struct src { gzFile gz; unsigned char buf[1 << 16]; int n, i; const char *name; };

/* A source that cannot be read: "sqlite: load: <its name>: <what>", exit 1. */
static void src_fail(const struct src *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sqlite: load: %s: ", s->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* Open `path`; `name`: what errors call it. */
static int src_open(struct src *s, const char *path, const char *name) {
    s->name = name;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    s->gz = gzdopen(fd, "rb");         /* reads plain data as it is */
    if (!s->gz) die("out of memory");
    gzbuffer(s->gz, 1 << 17);
    s->n = s->i = 0;
    return 1;
}

/* Refill an empty buffer: 0 at the end of the source. */
static int src_fill(struct src *s) {
    s->n = gzread(s->gz, s->buf, sizeof s->buf);
    s->i = 0;
    if (s->n < 0) {
        int err;
        src_fail(s, "cannot read: %s", gzerror(s->gz, &err));
    }
    if (s->n == 0) {
        int err;
        const char *msg = gzerror(s->gz, &err);
        if (err != Z_OK) src_fail(s, "cannot read: %s (damaged or cut gzip data)", msg);
        return 0;
    }
    return 1;
}

/* The next byte without taking it, or EOF. */
static int src_peek(struct src *s) {
    if (s->i == s->n && !src_fill(s)) return EOF;
    return s->buf[s->i];
}

static int src_get(struct src *s) {
    int c = src_peek(s);
    if (c != EOF) s->i++;
    return c;
}

/* The next line into `line` (without its '\n'): 0 at the end of the source,
 * else 1, or 2 when the source ends without a '\n'. */
static int src_line(struct src *s, struct buf *line) {
    line->n = 0;
    if (line->p) line->p[0] = 0;
    if (src_peek(s) == EOF) return 0;
    for (;;) {
        unsigned char *at = s->buf + s->i, *nl = memchr(at, '\n', (size_t)(s->n - s->i));
        put(line, at, (size_t)((nl ? nl : s->buf + s->n) - at));
        if (nl) {
            s->i = (int)(nl - s->buf) + 1;
            return 1;
        }
        s->i = s->n;
        if (!src_fill(s)) return 2;
    }
}

static void src_close(struct src *s) { gzclose(s->gz); }

/* -- the rows of a CSV or JSON-lines source, one at a time ------------------------ */

/* The source being read: its current row's columns are fields of `rec` (an
 * empty one is NULL) or, for JSON lines, the columns of `extract`. */
static struct input {
    const char *path, *format;        /* csv | csvh | jsonl */
    const char *name;                 /* what errors call it (source_name) */
    struct src s;
    int delim, ncols, width, *keep;   /* CSV: fields per record; field -> column (from 1) */
    long record;                      /* records read (CSV, the header too) or lines (JSON) */
    long lines, line;                 /* CSV: line ends read; the line the record starts on */
    sqlite3_int64 rows;               /* data rows read: the rowid of the current one */
    struct buf rec;                   /* CSV: the current record's kept fields */
    size_t *off, *len;                /* per column: where in `rec`, how long */
    sqlite3_stmt *extract;            /* JSON lines: SELECT json_extract(?1, ...) */
    char **names;                     /* --check-header: the table's column names */
    int open, done;
    int skip_bad;                     /* --skip-bad */
    int nnumeric, *numeric;           /* --numeric: columns (from 0) that must hold numbers */
    char **numeric_names;
    long skipped;                     /* malformed records skipped (this pass) */
    char why[256];                    /* what is wrong with the current record ("" if nothing) */
    int quoted1;                      /* CSV: the record's first field is quoted */
    int header_held;                  /* csvh: the usual delimiter a header row of one
                                       * field holds (held_delimiter; 0 if none) */
    char first_bad[256];              /* "line <n>: <what>" of the first one skipped */
} in;

static void bad_input(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sqlite: load: %s: ", in.name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* The usual delimiter (a comma, ;, TAB, |: the first found) that a record of one
 * field (in `in.rec`, kept even when --fields drops field 1) holds outside quotes, 0 if
 * none.  Looked for only when such a record is wrong (or is the header row): not in
 * every record's first field as it is read. */
static int held_delimiter(void) {
    int held = 0;
    for (const char *d = ",;\t|"; !in.quoted1 && in.rec.n && !held && *d; d++)
        if (memchr(in.rec.p, *d, in.rec.n)) held = *d;
    return held;
}

/* For a record of one field, or the header row of one (`who`: "" or "the header row
 * "), holding `held`, a usual delimiter other than the one given: the objects were
 * likely read with the wrong one; how to give theirs (as zerocloud.sql.planner says of
 * a header row of one column).  No comma but in the message's start: X-Nexe-Error's
 * values are comma-separated, a comma becomes ';'. */
static const char *delimiter_hint(const char *who, int held) {
    static char hint[192];
    char shown[3] = {(char)held, 0, 0}, zc[4] = {'\'', (char)held, '\'', 0};
    if (!held) return "";
    if (held == ',') {
        snprintf(hint, sizeof hint, " and %sholds a comma: if commas separate the fields "
                 "give no other \"input\".\"delimiter\" (zc sql without --delimiter)", who);
        return hint;
    }
    if (held == '\t') memcpy(shown, "\\t", 3), memcpy(zc, "tab", 4);
    snprintf(hint, sizeof hint, " and %sholds \"%s\": if the fields are separated by \"%s\" "
             "give that as \"input\".\"delimiter\" (zc sql --delimiter %s)", who, shown, shown,
             zc);
    return hint;
}

/* The current record is malformed ("line <n>: ..."): fatal, or with --skip-bad
 * counted (the first one kept to tell) and passed over. */
static void bad_record(const char *fmt, ...) {
    char what[sizeof in.first_bad];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (!in.skip_bad) bad_input("%s", what);
    if (!in.skipped++) memcpy(in.first_bad, what, sizeof what);
}

/* `SELECT * FROM table`, prepared: its columns are the table's. */
static sqlite3_stmt *table_columns(const char *table) {
    char *sql = need(sqlite3_mprintf("SELECT * FROM \"%w\"", table));
    sqlite3_stmt *st;
    check(sqlite3_prepare_v2(db, sql, -1, &st, NULL));
    sqlite3_free(sql);
    return st;
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

/* The columns' values of one JSON line: json_extract(?1, '$."<name>"') each. */
static sqlite3_stmt *extract_stmt(const char *table) {
    sqlite3_stmt *st = table_columns(table);
    struct buf b = {0};
    puts_(&b, "SELECT ");
    for (int i = 0; i < sqlite3_column_count(st); i++) {
        const char *name = sqlite3_column_name(st, i);
        if (strpbrk(name, "\"\\")) die("column %s: JSON keys with quotes or backslashes are "
                                       "not supported", name);
        char *path = need(sqlite3_mprintf("$.\"%s\"", name));
        char *item = need(sqlite3_mprintf("%sjson_extract(?1, %Q)", i ? ", " : "", path));
        puts_(&b, item);
        sqlite3_free(item);
        sqlite3_free(path);
    }
    sqlite3_finalize(st);
    check(sqlite3_prepare_v2(db, b.p, -1, &st, NULL));
    free(b.p);
    return st;
}

static void input_open(void) {
    if (!src_open(&in.s, in.path, in.name)) bad_input("cannot open: %s", strerror(errno));
    in.record = in.rows = in.lines = in.skipped = 0;
    in.header_held = 0;
    in.open = 1;
    in.done = 0;
    if (in.format[0] == 'c' && src_peek(&in.s) == 0xEF) {       /* a UTF-8 byte order mark */
        in.s.i++;
        if (src_get(&in.s) != 0xBB || src_get(&in.s) != 0xBF)
            bad_input("does not start like UTF-8 text");
    }
}

static int hexdigit(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* What errors call the source at `path`: the object, swift://<account>/<container>/<object>,
 * when the node runs next to it (ZeroCloud gives the node LOCAL_DOCUMENT_ROOT, the device
 * that reads its object, and LOCAL_PATH_INFO, the object's URL-encoded /<a>/<c>/<o>: a
 * query over many objects says which one failed), else the path. */
static const char *source_name(const char *path) {
    const char *root = getenv("LOCAL_DOCUMENT_ROOT"), *info = getenv("LOCAL_PATH_INFO");
    if (!root || !info || strcmp(root, path) || info[0] != '/') return path;
    char *name = need(malloc(strlen(info) + sizeof "swift:/")), *o = name;
    o += sprintf(name, "swift:/");
    for (const char *p = info; *p; p++) {
        int hi = *p == '%' ? hexdigit((unsigned char)p[1]) : -1;
        int lo = hi >= 0 ? hexdigit((unsigned char)p[2]) : -1;
        if (lo >= 0) {
            *o++ = (char)(hi << 4 | lo);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
    return name;
}

/* "C1,C2,..." -> in.numeric (columns from 0) and their names, of `st`'s columns. */
static void parse_numeric(const char *spec, sqlite3_stmt *st) {
    in.numeric = need(calloc(strlen(spec) + 1, sizeof *in.numeric));
    in.numeric_names = need(calloc(strlen(spec) + 1, sizeof *in.numeric_names));
    char *end;
    for (const char *p = spec; *p; p = *end ? end + 1 : end) {
        long c = strtol(p, &end, 10);
        if (c < 1 || c > in.ncols || (*end && *end != ',')) die("bad --numeric %s", spec);
        in.numeric_names[in.nnumeric] = need(strdup(sqlite3_column_name(st, (int)c - 1)));
        in.numeric[in.nnumeric++] = (int)c - 1;
    }
}

/* Whether a --numeric value of the current row is text (NULL, an empty CSV field or
 * JSON "" aside: blanks alone are text): then in.why names the first. */
static int not_a_number(void) {
    for (int k = 0; k < in.nnumeric; k++) {
        int i = in.numeric[k], n;
        const char *text;
        if (in.extract) {
            if (sqlite3_column_type(in.extract, i) != SQLITE_TEXT) continue;
            text = (const char *)sqlite3_column_text(in.extract, i);
            n = sqlite3_column_bytes(in.extract, i);
        } else {
            text = in.rec.p + in.off[i];
            n = (int)in.len[i];
        }
        double d;
        if (n && sqlite3AtoF(text, &d, n, SQLITE_UTF8) <= 0) {
            snprintf(in.why, sizeof in.why, "\"%s\" is not a number: \"%.*s\"%s",
                     in.numeric_names[k], n > 40 ? 40 : n, text,
                     in.skip_bad ? "" : " (the query uses it as one; skip_bad skips such records)");
            return 1;
        }
    }
    return 0;
}

/* Start reading `path` (format csv, csvh or jsonl) into the first table of the schema. */
static void input_start(const char *path, const char *format, const char *table, int delim,
                        const char *fields, int check_header, const char *numeric) {
    in.path = path;
    in.name = source_name(path);
    in.format = format;
    in.delim = delim;
    sqlite3_stmt *st = table_columns(table);
    in.ncols = sqlite3_column_count(st);
    if (numeric) parse_numeric(numeric, st);
    if (check_header) {
        in.names = need(calloc((size_t)in.ncols, sizeof *in.names));
        for (int i = 0; i < in.ncols; i++)
            in.names[i] = need(strdup(sqlite3_column_name(st, i)));
    }
    sqlite3_finalize(st);
    in.width = in.ncols;
    if (fields) in.keep = parse_fields(fields, in.ncols, &in.width);
    in.off = need(calloc((size_t)in.ncols + 1, sizeof *in.off));
    in.len = need(calloc((size_t)in.ncols + 1, sizeof *in.len));
    if (!strcmp(format, "jsonl")) in.extract = extract_stmt(table);
    input_open();
}

/* One CSV record (RFC 4180; quoted fields may hold delimiters, quotes as "" and
 * line ends): its number of fields, 0 for a blank line, -1 at the end. */
static int csv_record(void) {
    struct src *s = &in.s;
    if (src_peek(s) == EOF) return -1;
    in.line = in.lines + 1;
    int nf = 0, blank = 1, c;
    in.rec.n = 0;
    in.why[0] = 0;
    in.quoted1 = 0;
    for (;;) {                                   /* one field */
        int col = nf < in.width ? (in.keep ? in.keep[nf] : nf + 1) : 0;
        size_t at = in.rec.n, seen = 0;       /* seen: the field's bytes, kept or not */
        c = src_peek(s);
        int plain = c != '"';                    /* read up to a delimiter or line end */
        if (!plain) {
            blank = 0;
            in.quoted1 |= !nf;
            s->i++;
            for (;;) {
                if (s->i == s->n && !src_fill(s)) {
                    snprintf(in.why, sizeof in.why, "a quoted field does not end");
                    return nf + 1;               /* the rest of the source */
                }
                unsigned char *p = s->buf + s->i, *q = memchr(p, '"', (size_t)(s->n - s->i));
                unsigned char *stop = q ? q : s->buf + s->n;
                if (col) put(&in.rec, p, (size_t)(stop - p));
                for (unsigned char *nl = p; (nl = memchr(nl, '\n', (size_t)(stop - nl)));
                     nl++)
                    in.lines++;                  /* a line end inside quotes */
                s->i = (int)(stop - s->buf);
                if (!q) continue;
                s->i++;                          /* the quote */
                if (src_peek(s) != '"') break;
                if (col) putc_(&in.rec, '"');    /* "" is one quote */
                s->i++;
            }
            c = src_peek(s);
            plain = c != in.delim && c != '\n' && c != '\r' && c != EOF;
            if (plain && !in.why[0])             /* read on to the field's end */
                snprintf(in.why, sizeof in.why, "text after a closing quote");
        }
        if (plain) {
            for (;;) {
                if (s->i == s->n && !src_fill(s)) {
                    c = EOF;
                    break;
                }
                unsigned char *p = s->buf + s->i, *e = s->buf + s->n, *q = p;
                while (q < e && *q != in.delim && *q != '\n' && *q != '\r') q++;
                if (col || !nf) put(&in.rec, p, (size_t)(q - p));   /* 1st: for the hint */
                seen += (size_t)(q - p);
                s->i = (int)(q - s->buf);
                if (q < e) {
                    c = *q;
                    break;
                }
            }
        }
        if (seen || c == in.delim) blank = 0;
        if (col) {
            in.off[col - 1] = at;
            in.len[col - 1] = in.rec.n - at;
        }
        nf++;
        if (c == in.delim) {
            s->i++;
            continue;
        }
        if (c == '\r') {
            s->i++;
            if (src_peek(s) == '\n') s->i++;
        } else if (c == '\n') {
            s->i++;
        }
        in.lines += c == '\r' || c == '\n';
        return blank ? 0 : nf;
    }
}

/* --check-header: the header record (`nf` fields, the kept ones in `in.rec`) names
 * the table's columns in order, or the source does not load. */
static void header_check(int nf) {
    if (nf != in.width)
        bad_input("line %ld: the header row has %d fields, not %d as the first object's: "
                  "the objects of one query must have the same columns", in.line, nf, in.width);
    for (int i = 0; i < in.ncols; i++) {
        const char *p = in.rec.p + in.off[i];
        size_t n = in.len[i];
        if (in.line == 1 && n >= 3 && !memcmp(p, "\xef\xbb\xbf", 3)) p += 3, n -= 3;  /* BOM */
        while (n && memchr(" \t\r\n\v\f", *p, 6)) p++, n--;
        while (n && memchr(" \t\r\n\v\f", p[n - 1], 6)) n--;
        int field = i + 1;
        if (in.keep)
            for (field = 1; in.keep[field - 1] != i + 1; field++) {}
        char empty[24];
        snprintf(empty, sizeof empty, "c%d", field);
        const char *want = in.names[i];
        if (n ? strlen(want) == n && !sqlite3_strnicmp(p, want, (int)n)
              : !sqlite3_stricmp(want, empty))
            continue;
        bad_input("line %ld: the header row names field %d \"%.*s\", not \"%s\" as the first "
                  "object's: the objects of one query must have the same columns in the same "
                  "order", in.line, field, (int)(n > 200 ? 200 : n), p, want);
    }
}

/* The next data row into `in`: 1, or 0 at the end of the source. */
static int input_next(void) {
    if (in.done || !in.open) return 0;
    if (in.extract) {
        sqlite3_reset(in.extract);               /* its values were the last row's */
        while (src_line(&in.s, &in.rec)) {
            in.record++;
            size_t n = in.rec.n;
            while (n && (in.rec.p[n - 1] == '\r' || in.rec.p[n - 1] == ' '
                         || in.rec.p[n - 1] == '\t'))
                n--;
            if (!n) continue;
            size_t at = 0;                       /* a record is an object: [1,2] or 42 */
            while (in.rec.p[at] == ' ' || in.rec.p[at] == '\t') at++;     /* was NULLs */
            if (in.rec.p[at] != '{') {
                bad_record("line %ld: not a JSON object (one object per line, each a row)",
                           in.record);
                continue;
            }
            sqlite3_bind_text(in.extract, 1, in.rec.p, (int)n, SQLITE_STATIC);
            if (sqlite3_step(in.extract) != SQLITE_ROW) {
                bad_record("line %ld: %s", in.record, sqlite3_errmsg(db));
                sqlite3_reset(in.extract);
                continue;
            }
            if (not_a_number()) {
                bad_record("line %ld: %s", in.record, in.why);
                sqlite3_reset(in.extract);
                continue;
            }
            in.rows++;
            return 1;
        }
    } else {
        int header = in.format[3] == 'h', nf;
        while ((nf = csv_record()) >= 0) {
            if (!nf) continue;                   /* a blank line is no record */
            in.record++;
            if (header && in.record == 1) {      /* never skipped: it names the columns */
                if (in.why[0]) bad_input("line %ld: the header row: %s", in.line, in.why);
                if (in.names) header_check(nf);
                if (nf == 1) in.header_held = held_delimiter();
                continue;
            }
            if (in.why[0] || (nf == in.width && not_a_number()))
                bad_record("line %ld: record %ld: %s", in.line, in.record, in.why);
            else if (nf > in.width)
                bad_record("line %ld: record %ld has more than %d fields%s", in.line, in.record,
                           in.width, delimiter_hint("the header row ", in.header_held));
            else if (nf != in.width)
                bad_record("line %ld: record %ld has %d fields, not %d%s", in.line, in.record, nf,
                           in.width, nf == 1 ? delimiter_hint("", held_delimiter()) : "");
            else {
                in.rows++;
                return 1;
            }
        }
    }
    in.done = 1;
    return 0;
}

static void input_close(void) {
    if (in.open) src_close(&in.s);
    in.open = 0;
}

static void input_end(void) {
    input_close();
    sqlite3_finalize(in.extract);
    free(in.rec.p);
    free(in.keep);
    for (int i = 0; in.names && i < in.ncols; i++) free(in.names[i]);
    free(in.names);
    for (int k = 0; k < in.nnumeric; k++) free(in.numeric_names[k]);
    free(in.numeric_names);
    free(in.numeric);
    free(in.off);
    free(in.len);
}

/* Whether a CSV field is a number as it is written: JSON's number syntax,
 * -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][-+]?[0-9]+)?, an integer only within 64 bits.
 * Anything else is text, though SQLite would read it as a number (01234, 007, +5,
 * .5, " 12", an integer of more digits): those digits are what a code (a zip code,
 * an id) is, and the number would not print them back. */
static int written_as_number(const char *z, int n) {
    int i = z[0] == '-', whole;
    if (i >= n || !isdigit((unsigned char)z[i])) return 0;
    if (z[i++] != '0')
        while (i < n && isdigit((unsigned char)z[i])) i++;
    whole = i == n;
    if (i < n && z[i] == '.') {
        if (++i >= n || !isdigit((unsigned char)z[i])) return 0;
        while (i < n && isdigit((unsigned char)z[i])) i++;
    }
    if (i < n && (z[i] == 'e' || z[i] == 'E')) {
        i++;
        if (i < n && (z[i] == '+' || z[i] == '-')) i++;
        if (i >= n || !isdigit((unsigned char)z[i])) return 0;
        while (i < n && isdigit((unsigned char)z[i])) i++;
    }
    sqlite3_int64 v;
    return i == n && (!whole || sqlite3Atoi64(z, &v, n, SQLITE_UTF8) == 0);
}

/* The current row's column i (from 0) as the query sees it, into `out`: a CSV field
 * written as a number is that number, given the NUMERIC affinity (3.0 is 3), any
 * other field text, an empty one NULL; a JSON number is a number (2.0 is 2), a
 * string text, true 1, an array or object its JSON text, a missing key or null NULL.
 * `copy`: a text is copied, to outlive the row (the query's values); else it is the
 * row's (a load inserts it before the next row is read).  SQLITE_OK or SQLite's
 * error code. */
static int row_value(Mem *out, int i, int copy) {
    if (in.extract) {
        sqlite3_value *v = sqlite3_column_value(in.extract, i);
        int rc = SQLITE_OK;
        if (copy)
            rc = sqlite3VdbeMemCopy(out, v);
        else
            sqlite3VdbeMemShallowCopy(out, v, MEM_Ephem);
        if (rc == SQLITE_OK && sqlite3_value_type(v) != SQLITE_TEXT)
            sqlite3ValueApplyAffinity(out, SQLITE_AFF_NUMERIC, SQLITE_UTF8);
        return rc;
    }
    const char *z = in.rec.p + in.off[i];
    int n = (int)in.len[i];
    if (!n) {                                    /* an empty field is NULL */
        sqlite3VdbeMemSetNull(out);
        return SQLITE_OK;
    }
    int rc = sqlite3VdbeMemSetStr(out, z, n, SQLITE_UTF8,
                                  copy ? SQLITE_TRANSIENT : SQLITE_STATIC);
    if (rc == SQLITE_OK && written_as_number(z, n))
        sqlite3ValueApplyAffinity(out, SQLITE_AFF_NUMERIC, SQLITE_UTF8);
    return rc;
}

static void input_value(sqlite3_context *ctx, int i) {
    int rc = row_value(ctx->pOut, i, 1);
    if (rc != SQLITE_OK) sqlite3_result_error_code(ctx, rc);
}

/* -- the source as a virtual table ------------------------------------------------ */

/* The module's table is the loaded table's stand-in (in the temp schema, so the
 * query's name finds it first); one cursor at a time reads `in`, from its start. */
struct cursor { sqlite3_vtab_cursor base; int eof; };

static int vt_connect(sqlite3 *d, void *aux, int argc, const char *const *argv,
                      sqlite3_vtab **out, char **err) {
    (void)argc; (void)argv; (void)err;
    int rc = sqlite3_declare_vtab(d, (const char *)aux);
    if (rc != SQLITE_OK) return rc;
    *out = sqlite3_malloc(sizeof **out);
    if (!*out) return SQLITE_NOMEM;
    memset(*out, 0, sizeof **out);
    return SQLITE_OK;
}

static int vt_disconnect(sqlite3_vtab *vt) {
    sqlite3_free(vt);
    return SQLITE_OK;
}

static int vt_best_index(sqlite3_vtab *vt, sqlite3_index_info *info) {
    (void)vt;
    info->estimatedCost = 1e9;                   /* one full scan; no constraint is used */
    info->estimatedRows = 1000000;
    return SQLITE_OK;
}

static int vt_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out) {
    (void)vt;
    struct cursor *c = sqlite3_malloc(sizeof *c);
    if (!c) return SQLITE_NOMEM;
    memset(c, 0, sizeof *c);
    *out = &c->base;
    return SQLITE_OK;
}

static int vt_close(sqlite3_vtab_cursor *cur) {
    sqlite3_free(cur);
    return SQLITE_OK;
}

static int vt_next(sqlite3_vtab_cursor *cur) {
    ((struct cursor *)cur)->eof = !input_next();
    return SQLITE_OK;
}

static int vt_filter(sqlite3_vtab_cursor *cur, int idx, const char *idx_str, int argc,
                     sqlite3_value **argv) {
    (void)idx; (void)idx_str; (void)argc; (void)argv;
    if (in.rows || in.done) {                    /* read again (a second pass) */
        input_close();
        input_open();
    }
    return vt_next(cur);
}

static int vt_eof(sqlite3_vtab_cursor *cur) { return ((struct cursor *)cur)->eof; }

static int vt_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
    (void)cur;
    input_value(ctx, i);
    return SQLITE_OK;
}

static int vt_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid) {
    (void)cur;
    *rowid = in.rows;
    return SQLITE_OK;
}

static sqlite3_module input_module = {
    .iVersion = 0, .xCreate = vt_connect, .xConnect = vt_connect,
    .xBestIndex = vt_best_index, .xDisconnect = vt_disconnect, .xDestroy = vt_disconnect,
    .xOpen = vt_open, .xClose = vt_close, .xFilter = vt_filter, .xNext = vt_next,
    .xEof = vt_eof, .xColumn = vt_column, .xRowid = vt_rowid,
};

/* Whether `table` is plain: a rowid table whose columns are all NUMERIC, with no
 * key, constraint, default, collation, index or trigger (what the planner makes),
 * so that rows read through the module are the rows INSERT would store. */
static int plain_table(const char *table) {
    Table *t = sqlite3FindTable(db, table, "main");
    if (!t || !IsOrdinaryTable(t) || !HasRowid(t) || t->iPKey >= 0 || t->pIndex || t->pCheck
            || t->u.tab.pFKey || t->pTrigger
            || (t->tabFlags & (TF_Strict | TF_HasPrimaryKey | TF_HasGenerated)))
        return 0;
    for (int i = 0; i < t->nCol; i++) {
        Column *c = &t->aCol[i];
        if (c->affinity != SQLITE_AFF_NUMERIC || c->notNull || c->iDflt
                || (c->colFlags & (COLFLAG_HASCOLL | COLFLAG_GENERATED | COLFLAG_PRIMKEY
                                   | COLFLAG_UNIQUE)))
            return 0;
    }
    sqlite3_stmt *st;
    check(sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_schema WHERE type IN ('index', 'trigger') "
                                 "AND tbl_name = ?1 COLLATE NOCASE", -1, &st, NULL));
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    int none = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return none;
}

/* `table`'s stand-in over `in`: temp."<table>", declared with the same columns. */
static void stand_in(const char *table) {
    sqlite3_stmt *st = table_columns(table);
    struct buf decl = {0};
    puts_(&decl, "CREATE TABLE x(");
    for (int i = 0; i < sqlite3_column_count(st); i++) {
        char *col = need(sqlite3_mprintf("%s\"%w\" NUMERIC", i ? ", " : "",
                                         sqlite3_column_name(st, i)));
        puts_(&decl, col);
        sqlite3_free(col);
    }
    puts_(&decl, ")");
    sqlite3_finalize(st);
    check(sqlite3_create_module(db, "sqlnode_input", &input_module, decl.p));
    char *sql = need(sqlite3_mprintf("CREATE VIRTUAL TABLE temp.\"%w\" USING sqlnode_input",
                                     table));
    check(sqlite3_exec(db, sql, NULL, NULL, NULL));
    sqlite3_free(sql);
}

/* How many times `st`'s program starts reading a virtual table. */
static int table_scans(sqlite3_stmt *st) {
    Vdbe *v = (Vdbe *)st;
    int n = 0;
    for (int i = 0; i < v->nOp; i++) n += v->aOp[i].opcode == OP_VFilter;
    return n;
}

/* -- loading ---------------------------------------------------------------------- */

/* INSERT INTO `table`, its `*ncols` values bound.  `typed`: the values are already
 * what the rows hold (typed partial rows; row_value's), so a NUMERIC column stores
 * them as they are: its affinity would read the text '01234' as 1234 again.  The
 * statement is prepared with those columns' affinity off (SQLite computes the
 * table's affinity string again after), and nothing changes the schema before the
 * rows are in, so it is never prepared again. */
static sqlite3_stmt *insert_stmt(const char *table, int *ncols, int typed) {
    sqlite3_stmt *st = table_columns(table);
    *ncols = sqlite3_column_count(st);
    sqlite3_finalize(st);
    struct buf b = {0};
    char *head = need(sqlite3_mprintf("INSERT INTO \"%w\" VALUES (", table));
    puts_(&b, head);
    sqlite3_free(head);
    for (int i = 0; i < *ncols; i++) puts_(&b, i ? ",?" : "?");
    puts_(&b, ")");
    Table *t = typed ? sqlite3FindTable(db, table, "main") : NULL;
    if (t && (t->tabFlags & TF_Strict)) t = NULL;
    char *numeric = t ? need(calloc((size_t)t->nCol, 1)) : NULL;
    for (int i = 0; t && i < t->nCol; i++)
        if ((numeric[i] = t->aCol[i].affinity == SQLITE_AFF_NUMERIC))
            t->aCol[i].affinity = SQLITE_AFF_BLOB;
    if (t) sqlite3DbFree(db, t->zColAff), t->zColAff = NULL;
    check(sqlite3_prepare_v2(db, b.p, -1, &st, NULL));
    for (int i = 0; t && i < t->nCol; i++)
        if (numeric[i]) t->aCol[i].affinity = SQLITE_AFF_NUMERIC;
    if (t) sqlite3DbFree(db, t->zColAff), t->zColAff = NULL;
    free(numeric);
    free(b.p);
    return st;
}

static void insert_row(sqlite3_stmt *st) {
    check(sqlite3_step(st));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Every row of `in` into `table`: a plain table gets the values the query would see
 * streamed (row_value), any other the fields as they are, for its own affinity.  A
 * text is bound where the row holds it, not copied: the row outlives the insert. */
static void load_input(const char *table) {
    int ncols, plain = plain_table(table);
    sqlite3_stmt *st = insert_stmt(table, &ncols, plain);
    sqlite3_value *v = need(sqlite3ValueNew(db));
    while (input_next()) {
        for (int i = 0; i < ncols; i++) {
            if (plain) {
                int rc = row_value(v, i, 0);
                if (rc != SQLITE_OK) die("load: %s", sqlite3ErrStr(rc));
                if (sqlite3_value_type(v) == SQLITE_TEXT)
                    sqlite3_bind_text(st, i + 1, v->z, v->n, SQLITE_STATIC);
                else
                    sqlite3_bind_value(st, i + 1, v);
            } else if (in.extract) {
                sqlite3_bind_value(st, i + 1, sqlite3_column_value(in.extract, i));
            } else if (in.len[i]) {
                sqlite3_bind_text(st, i + 1, in.rec.p + in.off[i], (int)in.len[i],
                                  SQLITE_STATIC);
            }
        }
        insert_row(st);
    }
    sqlite3ValueFree(v);
    sqlite3_finalize(st);
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
            int h = hexdigit((unsigned char)f[k]);
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
            int hi = hexdigit((unsigned char)f[k]), lo = hexdigit((unsigned char)f[k + 1]);
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
    if (!src_open(&s, path, path)) die("cannot open %s: %s", path, strerror(errno));
    int ncols;
    sqlite3_stmt *st = insert_stmt(table, &ncols, 1);
    struct buf line = {0};
    long lineno = 0;
    int c;
    while ((c = src_get(&s)) != EOF) {
        line.n = 0;
        do putc_(&line, (char)c); while ((c = src_get(&s)) != EOF && c != '\n');
        if (c != '\n') die("%s: line %ld does not end", path, lineno + 1);
        lineno++;
        if (line.p[0] == '#') continue;          /* a node's note (--skip-bad), no row */
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

/* The end of a CSV record that started at o->p + start.  A record of one empty
 * field (NULL or '') is written "", not as an empty line: CSV readers (this
 * program's too) skip blank lines, so the row would be lost when read back. */
static void csv_end(struct buf *o, int ncols, size_t start) {
    if (ncols == 1 && o->n == start) puts_(o, "\"\"");
    puts_(o, "\r\n");
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

static const char hex_digits[] = "0123456789abcdef";

/* Text as a partial field holds it: \\ \t \n \r escaped. */
static void partial_text(struct buf *o, const char *s, int n) {
    for (int k = 0; k < n; k++) {
        char c = s[k];
        if (c == '\\') puts_(o, "\\\\");
        else if (c == '\t') puts_(o, "\\t");
        else if (c == '\n') puts_(o, "\\n");
        else if (c == '\r') puts_(o, "\\r");
        else putc_(o, c);
    }
}

/* --skip-bad: how many malformed records were skipped, and the first, on stderr and
 * (partial) as the output's last line (the top of the file). */
static void skipped_note(struct buf *o, int partial) {
    if (!in.skipped) return;
    fprintf(stderr, "sqlite: load: %s: skipped %ld malformed record%s; the first: %s\n",
            in.name, in.skipped, in.skipped == 1 ? "" : "s", in.first_bad);
    if (!partial) return;
    char count[32];
    snprintf(count, sizeof count, "#skipped\t%ld\t", in.skipped);
    puts_(o, count);
    partial_text(o, in.name, (int)strlen(in.name));
    putc_(o, '\t');
    partial_text(o, in.first_bad, (int)strlen(in.first_bad));
    putc_(o, '\n');
}

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
    case SQLITE_TEXT:
        putc_(o, 't');
        partial_text(o, (const char *)sqlite3_column_text(st, i), sqlite3_column_bytes(st, i));
        break;
    default: {
        const unsigned char *s = sqlite3_column_blob(st, i);
        int n = sqlite3_column_bytes(st, i);
        putc_(o, 'x');
        for (int k = 0; k < n; k++) {
            putc_(o, hex_digits[s[k] >> 4]);
            putc_(o, hex_digits[s[k] & 15]);
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
            putc_(o, hex_digits[s[k] >> 4]);
            putc_(o, hex_digits[s[k] & 15]);
        }
        if (json) putc_(o, '"');
    }
    }
}

static void flush(struct buf *o, FILE *out) {
    if (o->n && fwrite(o->p, 1, o->n, out) != o->n) die("cannot write: %s", strerror(errno));
    o->n = 0;
}

static sqlite3_stmt *prepare_query(const char *sql) {
    sqlite3_stmt *st;
    const char *tail;
    where = "query";
    check(sqlite3_prepare_v2(db, sql, -1, &st, &tail));
    if (!st) die("no statement");
    while (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';') tail++;
    if (*tail) die("one statement only");
    if (!sqlite3_stmt_readonly(st)) die("the query must only read");
    return st;
}

static void run_query(sqlite3_stmt *st, const char *format, const char *path) {
    FILE *out = fopen(path, "w");
    if (!out) die("cannot open %s: %s", path, strerror(errno));
    int partial = !strcmp(format, "partial"), json = !strcmp(format, "json");
    int ncols = sqlite3_column_count(st);
    struct buf o = {0};
    size_t start = 0;                   /* where the record being written starts */
    if (!strcmp(format, "csvh")) {
        for (int i = 0; i < ncols; i++) {
            const char *name = sqlite3_column_name(st, i);
            if (i) putc_(&o, ',');
            csv_text(&o, name, (int)strlen(name));
        }
        csv_end(&o, ncols, start);
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        start = o.n;
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
        if (json || partial) puts_(&o, json ? "}\n" : "\n");
        else csv_end(&o, ncols, start);
        if (o.n > (1 << 16)) flush(&o, out);
    }
    if (rc != SQLITE_DONE) die("%s", sqlite3_errmsg(db));
    while (input_next()) {}          /* the rest of a source the query did not read */
    skipped_note(&o, partial);
    flush(&o, out);
    free(o.p);
    sqlite3_finalize(st);
    if (fclose(out) != 0) die("cannot write %s: %s", path, strerror(errno));
}

/* --escaped: a job's arguments hold no control characters (ZeroVM's nvram keeps
 * them on one line), so the planner writes a multi-line query's line ends, a TAB
 * delimiter ... as \n, \t, \r, \xHH and a backslash as \\; decoded in place. */
static void unescape(char *s) {
    char *out = s;
    while (*s) {
        if (*s != '\\' || !s[1]) { *out++ = *s++; continue; }
        char c = s[1];
        s += 2;
        if (c == 'n') *out++ = '\n';
        else if (c == 't') *out++ = '\t';
        else if (c == 'r') *out++ = '\r';
        else if (c == 'x' && isxdigit((unsigned char)s[0]) && isxdigit((unsigned char)s[1])) {
            char hex[3] = {s[0], s[1], 0};
            *out++ = (char)strtol(hex, NULL, 16);
            s += 2;
        }
        else *out++ = c;                /* \\ is one backslash */
    }
    *out = 0;
}

static void usage(void) {
    fputs("usage: sqlite [--escaped] --schema SQL [--load csv|csvh|jsonl|partials PATH "
          "[--delimiter C] [--fields WIDTH:F1,F2,...] [--check-header] [--skip-bad] "
          "[--numeric C1,C2,...]] --query SQL "
          "[--out partial|csv|csvh|json] [--output PATH]\n", stderr);
    exit(2);
}

int main(int argc, char **argv) {
    const char *schema = NULL, *load = NULL, *from = NULL, *query = NULL;
    const char *fields = NULL, *numeric = NULL;
    const char *format = "csvh", *output = "/dev/stdout";
    int delim = ',', check_header = 0;
    int first_arg = 1;
    if (argc > 1 && !strcmp(argv[1], "--escaped")) {
        for (int i = 2; i < argc; i++) unescape(argv[i]);
        first_arg = 2;
    }
    for (int i = first_arg; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--check-header")) {
            check_header = 1;
            continue;
        }
        if (!strcmp(a, "--skip-bad")) {
            in.skip_bad = 1;
            continue;
        }
        if (i + 1 >= argc) usage();
        if (!strcmp(a, "--schema")) schema = argv[++i];
        else if (!strcmp(a, "--load")) {
            load = argv[++i];
            if (i + 1 >= argc) usage();
            from = argv[++i];
        }
        else if (!strcmp(a, "--fields")) fields = argv[++i];
        else if (!strcmp(a, "--numeric")) numeric = argv[++i];
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
    int streamed = 0;
    if (load) {
        where = "load";
        if (!strcmp(load, "csv") || !strcmp(load, "csvh") || !strcmp(load, "jsonl")) {
            if (check_header && strcmp(load, "csvh")) usage();
            input_start(from, load, table, delim, fields, check_header, numeric);
            streamed = plain_table(table);
            if (streamed) stand_in(table);
        } else if (!strcmp(load, "partials") && !in.skip_bad) {
            check(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL));
            load_partials(from, table);
            check(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL));
        } else {
            usage();
        }
    }
    sqlite3_stmt *st = prepare_query(query);
    if (in.path && (!streamed || table_scans(st) > 1)) {    /* load the rows, then query */
        sqlite3_finalize(st);
        where = "load";
        if (streamed) {
            char *drop = need(sqlite3_mprintf("DROP TABLE temp.\"%w\"", table));
            check(sqlite3_exec(db, drop, NULL, NULL, NULL));
            sqlite3_free(drop);
            streamed = 0;
        }
        check(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL));
        load_input(table);
        check(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL));
        st = prepare_query(query);
    }
    run_query(st, format, output);
    input_end();
    free(table);
    sqlite3_close(db);
    return 0;
}

/* zvm_trapper: run trap calls given as arguments and print what they return.
 * I/O only through zvm.h; results go to /dev/stdout (channel 1), one line
 * per call.  Arguments:
 *   r:ALIAS:SIZE:OFFSET     zvm_pread  -> "r ALIAS SIZE OFFSET = RET [DATA]"
 *   w:ALIAS:TEXT:OFFSET     zvm_pwrite -> "w ALIAS LEN OFFSET = RET"
 *   R:ALIAS:SIZE:COUNT      COUNT reads of SIZE at offset 0 -> "R ALIAS = RET,RET,..."
 *   d:DESC:SIZE             zvm_pread on a raw channel number
 *   b:ALIAS:ADDRESS:SIZE    zvm_pread into a raw address (e.g. 0, or the trap page)
 *   m                       the user manifest: "m COUNT HEAP STACK" and
 *                           "c I NAME TYPE SIZE GETS GETSIZE PUTS PUTSIZE" lines
 *   x:CODE                  zvm_exit(CODE)
 *   f                       zvm_fork
 *   p                       mprotect the user manifest writable -> "p = RET ERRNO"
 *   u:FUNCTION              an unknown trap function -> "u = RET"
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <zvm.h>

static char out[1 << 16];
static char data[1 << 16];

static void emit(const char *line)
{
    zvm_pwrite(1, line, strlen(line), 0);
}

static int channel(const char *name)
{
    for (int i = 0; i < MANIFEST->channels_count; i++)
        if (!strcmp(MANIFEST->channels[i].name, name))
            return i;
    return -1000;
}

static char *field(char **s)
{
    char *f = *s, *c = strchr(f, ':');
    if (c) {
        *c = 0;
        *s = c + 1;
    } else {
        *s = f + strlen(f);
    }
    return f;
}

int main(int argc, char **argv)
{
    for (int a = 1; a < argc; a++) {
        char *s = argv[a];
        char *op = field(&s);
        if (!strcmp(op, "r") || !strcmp(op, "d")) {
            char *name = field(&s);
            int desc = op[0] == 'd' ? atoi(name) : channel(name);
            int size = atoi(field(&s));
            long long off = atoll(field(&s));
            int r = zvm_pread(desc, data, size, off);
            snprintf(out, sizeof out, "%s %s %d %lld = %d%s%.*s\n", op, name, size, off, r,
                     r > 0 ? " " : "", r > 0 ? r : 0, data);
        } else if (!strcmp(op, "b")) {
            char *name = field(&s);
            char *addr = (char *)(uintptr_t)strtoull(field(&s), 0, 0);
            int size = atoi(field(&s));
            snprintf(out, sizeof out, "b %s %p %d = %d\n", name, (void *)addr, size,
                     zvm_pread(channel(name), addr, size, 0));
        } else if (!strcmp(op, "R")) {
            char *name = field(&s);
            int size = atoi(field(&s)), count = atoi(field(&s)), len;
            len = snprintf(out, sizeof out, "R %s =", name);
            for (int i = 0; i < count; i++)
                len += snprintf(out + len, sizeof out - len, "%s%d", i ? "," : " ",
                                zvm_pread(channel(name), data, size, 0));
            snprintf(out + len, sizeof out - len, "\n");
        } else if (!strcmp(op, "w")) {
            char *name = field(&s);
            char *text = field(&s);
            long long off = atoll(field(&s));
            int r = zvm_pwrite(channel(name), text, strlen(text), off);
            snprintf(out, sizeof out, "w %s %zu %lld = %d\n", name, strlen(text), off, r);
        } else if (!strcmp(op, "m")) {
            const struct UserManifest *m = MANIFEST;
            int len = snprintf(out, sizeof out, "m %d %s %u\n", m->channels_count,
                               m->heap_ptr && m->heap_size ? "heap" : "noheap", m->stack_size);
            for (int i = 0; i < m->channels_count; i++) {
                const struct ZVMChannel *c = &m->channels[i];
                len += snprintf(out + len, sizeof out - len, "c %d %s %d %lld %lld %lld %lld %lld\n",
                                i, c->name, c->type, (long long)c->size,
                                (long long)c->limits[GetsLimit], (long long)c->limits[GetSizeLimit],
                                (long long)c->limits[PutsLimit], (long long)c->limits[PutSizeLimit]);
            }
        } else if (!strcmp(op, "x")) {
            zvm_exit(atoi(field(&s)));
        } else if (!strcmp(op, "p")) {
            void *page = (void *)((uintptr_t)MANIFEST & ~(uintptr_t)4095);
            int r = mprotect(page, 4096, PROT_READ | PROT_WRITE);
            snprintf(out, sizeof out, "p = %d %d\n", r, r ? errno : 0);
        } else if (!strcmp(op, "f")) {
            snprintf(out, sizeof out, "f = %d\n", zvm_fork());
        } else if (!strcmp(op, "u")) {
            uint64_t args[] = {strtoull(field(&s), 0, 0), 0, 0, 0};
            snprintf(out, sizeof out, "u = %d\n", TRAP(args));
        } else {
            snprintf(out, sizeof out, "? %s\n", op);
        }
        emit(out);
    }
    return 0;
}

/* zvm_sort: sort the lines of /dev/stdin onto /dev/stdout, I/O through zvm.h only.
 * The input is read into the heap the user manifest describes (no malloc). */
#include <stdlib.h>
#include <string.h>
#include <zvm.h>

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
    const struct UserManifest *m = MANIFEST;
    char *heap = m->heap_ptr, *end = heap + m->heap_size / 2;
    char **lines = (char **)end;
    size_t used = 0, count = 0;
    int32_t n;
    while ((n = zvm_pread(0, heap + used, (int32_t)(end - heap - used - 1 > 65536 ? 65536
                                                    : end - heap - used - 1), 0)) > 0)
        used += n;
    if (n < 0)
        zvm_exit(1);
    if (used && heap[used - 1] != '\n')
        heap[used++] = '\n';
    for (char *p = heap, *nl; p < heap + used; p = nl + 1) {
        nl = memchr(p, '\n', heap + used - p);
        *nl = 0;
        lines[count++] = p;
    }
    qsort(lines, count, sizeof *lines, cmp);
    for (size_t i = 0; i < count; i++) {
        size_t len = strlen(lines[i]);
        lines[i][len] = '\n';
        if (zvm_pwrite(1, lines[i], (int32_t)len + 1, 0) != (int32_t)len + 1)
            zvm_exit(2);
    }
    zvm_exit(0);
    return 3;
}

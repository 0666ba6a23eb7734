/* samefile: read 1 KiB from stdin, write 8 KiB of 'x' to stdout, read 1 KiB more
 * from stdin and write it to stderr; no call between them the personality answers
 * in Python.  Given one file as stdin and stdout, the second read must see the
 * bytes written (the native C loop reads a read-only file ahead only when no
 * other channel has that file: fastcall.c, fill_chan). */
#include <string.h>
#include <unistd.h>

int main(void)
{
    static char block[8192];
    if (read(0, block, 1024) != 1024)
        return 1;
    memset(block, 'x', sizeof block);
    if (write(1, block, sizeof block) != (ssize_t)sizeof block)
        return 2;
    ssize_t got = read(0, block, 1024);
    if (got < 0 || write(2, block, (size_t)got) != got)
        return 3;
    return 0;
}

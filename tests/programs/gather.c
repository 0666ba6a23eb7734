/* gather WKIB [RKIB]: RKIB reads of 1 KiB from stdin, WKIB writes of 1 KiB to
 * stdout, then uname (a call the personality answers in Python), then one read
 * of 1 KiB more, written out, and "end".  The native C loop gathers a regular
 * file's writes and reads a read-only file ahead: at the uname the output file
 * must hold every byte written and the input be where the guest stopped. */
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static char block[1024];
    struct utsname u;
    long n = argc > 1 ? atol(argv[1]) : 0, r = argc > 2 ? atol(argv[2]) : 0;
    for (long k = 0; k < r; k++)
        if (read(0, block, sizeof block) != (ssize_t)sizeof block)
            return 1;
    for (long k = 0; k < n; k++) {
        memset(block, 'a' + (int)(k % 26), sizeof block);
        if (write(1, block, sizeof block) != (ssize_t)sizeof block)
            return 1;
    }
    if (uname(&u) != 0)
        return 2;
    ssize_t got = read(0, block, sizeof block);
    if (got < 0 || write(1, block, (size_t)got) != got)
        return 3;
    return write(1, "end\n", 4) == 4 ? 0 : 3;
}

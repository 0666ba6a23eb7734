/* gather KIB: KIB writes of 1 KiB to stdout, then uname (a call the personality
 * answers in Python), then one line more.  The native C loop gathers a regular
 * file's writes in a buffer: at the uname the file must hold all of them. */
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static char block[1024];
    struct utsname u;
    long n = argc > 1 ? atol(argv[1]) : 0;
    for (long k = 0; k < n; k++) {
        memset(block, 'a' + (int)(k % 26), sizeof block);
        if (write(1, block, sizeof block) != (ssize_t)sizeof block)
            return 1;
    }
    if (uname(&u) != 0)
        return 2;
    return write(1, "end\n", 4) == 4 ? 0 : 3;
}

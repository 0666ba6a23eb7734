/* trap: argv[1] ZeroVM trap calls (default 1000), each a zvm_pwrite of 0 bytes
 * to /dev/stdout (checked and answered, nothing written), so that
 * (t(N) - t(0)) / N is one trap round trip. */
#include <stdlib.h>
#include <zvm.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000, failed = 0;
    for (long i = 0; i < n; i++)
        failed += zvm_pwrite(1, argv[0], 0, 0) != 0;
    return failed != 0;
}

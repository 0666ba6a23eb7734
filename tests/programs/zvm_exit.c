/* zvm_exit: write a word to /dev/stdout, then end with zvm_exit(CODE) where
 * CODE is the first byte of /dev/stdin minus '0' (or -7 when stdin is empty);
 * the line after the call must never be written. */
#include <zvm.h>

int main(void)
{
    char c;
    int32_t n = zvm_pread(0, &c, 1, 0);
    zvm_pwrite(1, "bye\n", 4, 0);
    zvm_exit(n == 1 ? c - '0' : -7);
    zvm_pwrite(1, "still here\n", 11, 0);
    return 99;
}

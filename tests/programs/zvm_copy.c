/* zvm_copy: copy /dev/stdin to /dev/stdout with the ZeroVM API only.
 * Reads until 0 (end) or an error; an error ends with zvm_exit(1) after
 * writing "copy: error N" to /dev/stderr. */
#include <zvm.h>

static char buf[4096];

static void say(int desc, const char *s)
{
    int n = 0;
    while (s[n])
        n++;
    zvm_pwrite(desc, s, n, 0);
}

int main(void)
{
    for (;;) {
        int32_t n = zvm_pread(0, buf, sizeof buf, 0);
        if (n == 0)
            break;
        if (n < 0) {
            char msg[] = "copy: error -000\n";
            msg[13] = '0' + (-n / 100) % 10;
            msg[14] = '0' + (-n / 10) % 10;
            msg[15] = '0' + -n % 10;
            say(2, msg);
            zvm_exit(1);
        }
        for (int32_t done = 0; done < n;) {
            int32_t w = zvm_pwrite(1, buf + done, n - done, 0);
            if (w <= 0)
                zvm_exit(2);
            done += w;
        }
    }
    zvm_exit(0);
    return 3;   /* not reached */
}

/* flood (hostile): write 4 KiB blocks to stdout forever, ignoring errors.
 * An output quota must end it with status `quota`. */
#include <string.h>
#include <unistd.h>

int main(void)
{
    static char buf[4096];
    memset(buf, 'y', sizeof buf);
    for (;;)
        (void)!write(1, buf, sizeof buf);
}

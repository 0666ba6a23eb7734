/* hello: greet every channel the program may write, using only the ZeroVM API.
 *
 * The user manifest (MANIFEST) lists the channels in ZeroVM's order; a
 * channel is writable when both of its write limits are non-zero.  Output
 * goes through zvm_pwrite; the program ends with zvm_exit. */
#include <stdio.h>
#include <string.h>
#include <zvm.h>

int main(void)
{
    const struct UserManifest *m = MANIFEST;
    char line[256];
    for (int i = 0; i < m->channels_count; i++) {
        const struct ZVMChannel *ch = &m->channels[i];
        if (ch->limits[PutsLimit] && ch->limits[PutSizeLimit]) {
            int n = snprintf(line, sizeof line, "hello, channel %s!\n", ch->name);
            zvm_pwrite(i, line, n, 0);
        }
    }
    zvm_exit(0);
    return 0;
}

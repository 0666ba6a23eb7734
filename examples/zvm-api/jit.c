/* jit: generate machine code at run time, have zvm validate it (zvm_jail), call it.
 *
 * The code computes 1 + 2 + ... + n.  It goes into a 64 KiB aligned buffer in
 * the heap the user manifest gives; jail validates whole pages, so the rest
 * of the page is padded with hlt.  Once jailed the buffer runs but cannot be
 * written; zvm_unjail makes it writable again (and not executable). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zvm.h>

static const unsigned char sum_code[] = {
    0x31, 0xc0,         /*       xor  eax, eax   */
    0x85, 0xff,         /*       test edi, edi   */
    0x7e, 0x06,         /*       jle  done       */
    0x01, 0xf8,         /* loop: add  eax, edi   */
    0xff, 0xcf,         /*       dec  edi        */
    0x75, 0xfa,         /*       jnz  loop       */
    0xc3,               /* done: ret             */
};

static void say(const char *text)
{
    zvm_pwrite(1, text, strlen(text), 0);
}

int main(void)
{
    char line[128];
    uintptr_t heap = (uintptr_t)MANIFEST->heap_ptr;
    unsigned char *buf = (unsigned char *)((heap + 0xffff) & ~(uintptr_t)0xffff);
    memset(buf, 0xf4, 4096);
    memcpy(buf, sum_code, sizeof sum_code);
    int r = zvm_jail(buf, sizeof sum_code);
    if (r) {
        snprintf(line, sizeof line, "jail failed: %d\n", r);
        say(line);
        zvm_exit(1);
    }
    int (*sum)(int) = (int (*)(int))(void *)buf;
    snprintf(line, sizeof line, "sum(1..100) = %d\n", sum(100));
    say(line);
    zvm_unjail(buf, sizeof sum_code);
    zvm_exit(0);
    return 0;
}

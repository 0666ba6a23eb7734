/* jit (hostile): try to make code at run time without the validator.
 * 1. mmap an anonymous RWX page; 2. mmap RW, copy code, mprotect to RX;
 * 3. mprotect the program's own text to RWX.  The code is `rdrand %eax; ret`
 * (forbidden by the validator).  Each attempt must fail with an error; if one
 * "succeeds" the program calls the code, which must then fault. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static const unsigned char code[] = {0x0f, 0xc7, 0xf0, 0xc3};   /* rdrand %eax; ret */

static void try_call(void *p)
{
    printf("calling %s\n", "generated code");
    fflush(stdout);
    int r = ((int (*)(void))p)();
    printf("generated code returned %d\n", r);
}

int main(void)
{
    void *rwx = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mmap rwx: %s\n", rwx == MAP_FAILED ? strerror(errno) : "succeeded");
    void *rw = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rw == MAP_FAILED) {
        perror("mmap rw");
        return 1;
    }
    memcpy(rw, code, sizeof code);
    int r = mprotect(rw, 4096, PROT_READ | PROT_EXEC);
    printf("mprotect rx: %s\n", r ? strerror(errno) : "succeeded");
    uintptr_t text = (uintptr_t)(void *)main & ~(uintptr_t)4095;
    int t = mprotect((void *)text, 4096, PROT_READ | PROT_WRITE | PROT_EXEC);
    printf("mprotect text rwx: %s\n", t ? strerror(errno) : "succeeded");
    fflush(stdout);
    if (rwx != MAP_FAILED) {
        memcpy(rwx, code, sizeof code);
        try_call(rwx);
    }
    if (r == 0)
        try_call(rw);
    if (t == 0) {
        memcpy((void *)text, code, sizeof code);
        try_call((void *)text);
    }
    puts("no code was generated");
    return 0;
}

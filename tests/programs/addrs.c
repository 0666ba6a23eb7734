/* addrs: print where things live (code, data, bss, TLS, stack, brk heap,
 * small and large malloc, anonymous mmap, AT_RANDOM).  Natively ASLR moves
 * most of them; in the sandbox the layout is fixed, so the output must be
 * identical run after run. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

static int data_var = 1;
static int bss_var;
static __thread int tls_var;

int main(int argc, char **argv)
{
    int local;
    void *small = malloc(32), *big = malloc(4 << 20);
    void *anon = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("main %p\n", (void *)main);
    printf("data %p bss %p tls %p\n", (void *)&data_var, (void *)&bss_var, (void *)&tls_var);
    printf("stack %p argv %p argv0 %p\n", (void *)&local, (void *)argv, (void *)argv[0]);
    printf("brk %p\n", sbrk(0));
    printf("malloc small %p big %p\n", small, big);
    printf("mmap %p\n", anon);
    printf("at_random %p\n", (void *)getauxval(AT_RANDOM));
    printf("argc %d\n", argc + data_var + bss_var + tls_var - 1);
    return 0;
}

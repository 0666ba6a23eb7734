/* zvm_jail: generate code in the heap, jail it and call it; I/O through zvm.h only.
 * The first byte of /dev/stdin picks what to do; every step prints a line:
 *   v  jail "lea eax,[rdi+rdi*2+7]; ret" (hlt padded), call f(5) -> 22
 *   u  as v, then unjail, patch the constant, jail again (f(5) -> 25), unjail,
 *      and call the now non-executable code (must fault)
 *   w  as v, then write into the jailed code (must fault)
 *   i  jail code the validator refuses (rdrand) -> -EPERM, then call it: it
 *      must fault without running (it would write "ran" to the marker)
 *   n  call generated code that was never jailed (must fault)
 *   b  bad arguments: unaligned, size 0, outside the heap -> -EINVAL each
 *   x  jail an fprem loop (x87 remainder, which the guard runs on the host FPU)
 *      and compare what it gives with libc's fmodl -> same=1
 */
#include <string.h>
#include <zvm.h>

#define PAGE 4096

static void put(const char *s)
{
    zvm_pwrite(1, s, strlen(s), 0);
}

static void put_int(const char *label, int v)
{
    char buf[32], *p = buf + sizeof buf;
    unsigned u = v < 0 ? -v : v;
    *--p = 0;
    *--p = '\n';
    do
        *--p = '0' + u % 10;
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    put(label);
    put(p);
}

static unsigned char *code_buffer(void)
{
    uintptr_t heap = (uintptr_t)MANIFEST->heap_ptr;
    return (unsigned char *)((heap + 0xffff) & ~(uintptr_t)0xffff);
}

static void emit(unsigned char *buf, const unsigned char *code, size_t n)
{
    memset(buf, 0xf4, PAGE);            /* hlt padding: the whole page is validated */
    memcpy(buf, code, n);
}

static const unsigned char f_code[] = {0x8d, 0x44, 0x7f, 0x07, 0xc3};  /* lea eax,[rdi+rdi*2+7]; ret */
static const unsigned char bad_code[] = {
    0x0f, 0xc7, 0xf0,                   /* rdrand eax */
    0xc7, 0x07, 'r', 'a', 'n', 0,       /* mov dword [rdi], "ran" */
    0xc3};

static const unsigned char fprem_code[] = {    /* *a = fmodl(*a, *b): rdi = a, rsi = b */
    0xdb, 0x2e,                         /* fldt (%rsi) */
    0xdb, 0x2f,                         /* fldt (%rdi) */
    0xd9, 0xf8,                         /* 1: fprem */
    0xdf, 0xe0,                         /* fnstsw %ax */
    0xf6, 0xc4, 0x04,                   /* test $4, %ah (C2: not done yet) */
    0x75, 0xf7,                         /* jnz 1b */
    0xdd, 0xd9,                         /* fstp %st(1) */
    0xdb, 0x3f,                         /* fstpt (%rdi) */
    0xc3};

long double fmodl(long double, long double);

int main(void)
{
    char mode = 0;
    zvm_pread(0, &mode, 1, 0);
    unsigned char *buf = code_buffer();
    int (*f)(int) = (int (*)(int))(void *)buf;
    if (mode == 'b') {
        put_int("unaligned=", zvm_jail(buf + 16, PAGE));
        put_int("empty=", zvm_jail(buf, 0));
        char stack[PAGE];
        put_int("stack=", zvm_jail(stack, PAGE));
        put_int("unjail-unaligned=", zvm_unjail(buf + PAGE, PAGE));
        zvm_exit(0);
    }
    if (mode == 'x') {
        volatile long double a = 1.37L, b = 1.37L;
        long double x = a * 1e10L, want = fmodl(x, b);
        emit(buf, fprem_code, sizeof fprem_code);
        put_int("jail=", zvm_jail(buf, sizeof fprem_code));
        long double got = x, div = b;
        ((void (*)(long double *, long double *))(void *)buf)(&got, &div);
        put_int("same=", memcmp(&got, &want, 10) == 0);
        put_int("zero=", got == 0);
        zvm_exit(0);
    }
    if (mode == 'i') {
        static char marker[8] = "none";
        emit(buf, bad_code, sizeof bad_code);
        put_int("jail=", zvm_jail(buf, sizeof bad_code));
        put("calling\n");
        ((void (*)(char *))(void *)buf)(marker);
        put(marker);
        zvm_exit(1);
    }
    emit(buf, f_code, sizeof f_code);
    if (mode == 'n') {
        put("calling\n");
        put_int("f(5)=", f(5));
        zvm_exit(1);
    }
    put_int("jail=", zvm_jail(buf, sizeof f_code));
    put_int("f(5)=", f(5));
    if (mode == 'w') {
        put("writing\n");
        buf[3] = 10;
        put("written\n");
        zvm_exit(1);
    }
    if (mode == 'u') {
        put_int("unjail=", zvm_unjail(buf, sizeof f_code));
        buf[3] = 10;                    /* lea eax,[rdi+rdi*2+10] */
        put_int("jail=", zvm_jail(buf, sizeof f_code));
        put_int("f(5)=", f(5));
        put_int("unjail=", zvm_unjail(buf, sizeof f_code));
        put("calling\n");
        put_int("f(5)=", f(5));
        zvm_exit(1);
    }
    zvm_exit(0);
    return 2;
}

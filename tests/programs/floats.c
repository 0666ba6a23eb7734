/* floats: floating point through every path musl takes (SSE arithmetic,
 * long double on the x87, decimal conversions both ways, libm), printed
 * exactly.  Wrong x87 precision, MXCSR rounding or an x87 instruction that
 * the emulator computes in double precision shows in the last digits;
 * tests/sandbox/test_cpu_state.py compares the output with a native run.
 *
 * All of it is computed before the first read of stdin (a start-up snapshot
 * holds it), then every line of stdin is converted with strtod/strtold. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const decimals[] = {
    "0.1", "0.2", "0.3", "62357.97", "3242514504.25", "1e23", "8.98846567431158e307",
    "2.2250738585072011e-308", "2.2250738585072014e-308", "4.9406564584124654e-324",
    "1.7976931348623157e308", "123456789012345678901234567890", "0.000001234567890123",
    "9007199254740993", "3.14159265358979323846264338327950288", "2.718281828459045235360",
    "-0.0", "1e-400", "1e400", "nan", "-inf", "0x1.8p+3", "7.038531e-26", "100.25", "5e-1",
};

static char out[1 << 16];
static size_t len;

static void put(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + len, sizeof out - len, fmt, ap);
    va_end(ap);
    if (n > 0)
        len += (size_t)n < sizeof out - len ? (size_t)n : sizeof out - len - 1;
}

int main(void)
{
    volatile double a = 0.1, b = 0.2, big = 1e9, half = 0.5, three = 3, seven = 7;
    put("%.17g\n%.17g\n%.17g\n", a + b, big + half, seven / three);
    put("%a %a %a\n", a + b, seven / three, big + half);
    for (size_t i = 0; i < sizeof decimals / sizeof *decimals; i++) {
        double d = strtod(decimals[i], NULL);
        float f = strtof(decimals[i], NULL);
        long double l = strtold(decimals[i], NULL);
        put("%s: %.17g %a %.9g %.21Lg %La\n", decimals[i], d, d, f, l, l);
    }
    unsigned x = 12345;                 /* many more decimal strings, deterministically */
    double sum = 0;
    for (int i = 0; i < 2000; i++) {
        char buf[64];
        x = x * 1103515245u + 12345u;
        snprintf(buf, sizeof buf, "%u.%05u", x >> 8, (x >> 3) % 100000);
        double d = strtod(buf, NULL);
        sum += d;
        if (i % 250 == 0)
            put("%s -> %.17g\n", buf, d);
    }
    put("sum %.17g %a\n", sum, sum);
    volatile long double la = 1, lb = 3, lc = 0.1L;
    put("long double %.21Lg %.21Lg %.21Lg %La\n", la / lb, lc * lb, la / lb + lc, la / lb);
    for (int i = 1; i <= 8; i++) {
        volatile double v = i * 1.37;
        volatile long double w = v;
        put("%d sqrt %.17g exp %.17g log %.17g sin %.17g pow %.17g\n", i, sqrt(v), exp(v),
            log(v), sin(v), pow(v, 1.5));
        put("%d sqrtl %La expl %La logl %La atan2l %La fmodl %La remainderl %La\n", i,
            sqrtl(w), expl(w), logl(w), atan2l(w, 1.3L), fmodl(w * 1e10L, w),
            remainderl(w * 1e5L + 0.3L, w));
        put("%d exp2l %La log2l %La log1pl %La expm1l %La sinl %La tanl %La\n", i, exp2l(w),
            log2l(w), log1pl(w), expm1l(w), sinl(w), tanl(w));
    }
    put("%.3f %.0f %.0f %e %g\n", 2.0005, 0.5, 1.5, 6.02214076e23, 1e-5);
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        double d = strtod(line, NULL);
        long double l = strtold(line, NULL);
        put("in %.17g %a %.21Lg\n", d, d, l);
    }
    fwrite(out, 1, len, stdout);
    return 0;
}

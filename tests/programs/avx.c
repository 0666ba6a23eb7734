/* avx (hostile): instructions of extensions the sandbox's fixed CPU lacks
 * (zvm_core/cpu.py lists no AVX, BMI, SHA, GFNI, ADX, XSAVE), used without asking cpuid,
 * as a program built with -mavx2 or -march=native does.  Natively the host's CPU
 * decides (AVX-512 runs on one host, faults on another); unicorn has none of them
 * and runs vpaddq on xmm as paddq (the wrong sum, silently) and kmovb as setb.
 * Both engines make them invalid instructions (validator.as_fixed_cpu).  argv[1]
 * picks the one run (after printing its address): xmm (the default; vpaddq
 * %xmm2,%xmm0,%xmm3), ymm, zmm, kmovb, andn, sha (sha256rnds2), adcx, xgetbv
 * (XSAVE), or "prefixed" (the xmm vpaddq behind a cs prefix). */
#include <stdio.h>
#include <string.h>

extern char avx_xmm[], avx_ymm[], avx_zmm[], avx_kmovb[], avx_andn[], avx_sha[], avx_adcx[],
    avx_xgetbv[], avx_prefixed[];

int main(int argc, char **argv)
{
    static const struct { const char *name; char *at; } sites[] = {
        {"xmm", avx_xmm}, {"ymm", avx_ymm}, {"zmm", avx_zmm}, {"kmovb", avx_kmovb},
        {"andn", avx_andn}, {"sha", avx_sha}, {"adcx", avx_adcx}, {"xgetbv", avx_xgetbv},
        {"prefixed", avx_prefixed},
    };
    const char *how = argc > 1 ? argv[1] : "xmm";
    unsigned long a = 1, b = 2, r = 0;
    unsigned i = 0;

    while (i < sizeof sites / sizeof sites[0] - 1 && strcmp(how, sites[i].name))
        i++;
    printf("%s at %p\n", sites[i].name, (void *)sites[i].at);
    fflush(stdout);
    /* xmm0 = a, xmm2 = b: the sum is 3 (unicorn's paddq %xmm2,%xmm3 leaves 2) */
    __asm__ volatile("movq %0, %%xmm0\n\tmovq %1, %%xmm2\n\tpxor %%xmm3, %%xmm3"
                     :: "r"(a), "r"(b) : "xmm0", "xmm2", "xmm3");
    switch (i) {
    case 0:
        __asm__ volatile(".globl avx_xmm\navx_xmm: vpaddq %%xmm2, %%xmm0, %%xmm3\n\t"
                         "movq %%xmm3, %0" : "=r"(r) :: "xmm3");
        break;
    case 1:
        __asm__ volatile(".globl avx_ymm\navx_ymm: vpaddq %%ymm2, %%ymm0, %%ymm3\n\t"
                         "vmovq %%xmm3, %0\n\tvzeroupper" : "=r"(r) :: "xmm3");
        break;
    case 2:
        __asm__ volatile(".globl avx_zmm\navx_zmm: vpaddq %%zmm2, %%zmm0, %%zmm3\n\t"
                         "vmovq %%xmm3, %0\n\tvzeroupper" : "=r"(r) :: "xmm3");
        break;
    case 3:
        __asm__ volatile(".globl avx_kmovb\navx_kmovb: kmovb %k1, %%k7\n\tkmovb %%k7, %k0"
                         : "=r"(r) : "r"(a));
        break;
    case 4:
        __asm__ volatile(".globl avx_andn\navx_andn: andn %2, %1, %0" : "=r"(r)
                         : "r"(a), "r"(b) : "cc");
        break;
    case 5:
        __asm__ volatile(".globl avx_sha\navx_sha: sha256rnds2 %%xmm0, %%xmm2, %%xmm3\n\t"
                         "movq %%xmm3, %0" : "=r"(r) :: "xmm3");
        break;
    case 6:
        r = a;
        __asm__ volatile("stc\n.globl avx_adcx\navx_adcx: adcx %1, %0" : "+r"(r) : "r"(b)
                         : "cc");
        break;
    case 7:         /* XCR0: the host's natively (e7 with AVX-512), unicorn's 3 */
        __asm__ volatile("xor %%ecx, %%ecx\n.globl avx_xgetbv\navx_xgetbv: xgetbv\n\t"
                         "shl $32, %%rdx\n\tor %%rdx, %%rax" : "=a"(r) :: "rcx", "rdx");
        break;
    default:
        __asm__ volatile(".globl avx_prefixed\navx_prefixed: .byte 0x2e\n\t"
                         "vpaddq %%xmm2, %%xmm0, %%xmm3\n\tmovq %%xmm3, %0"
                         : "=r"(r) :: "xmm3");
    }
    printf("ran: %lu\n", r);
    return 0;
}

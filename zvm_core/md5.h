/* md5.h: MD5 (RFC 1321) in plain C, for the channels' running hashes.
 *
 * Channel etags are MD5s of what the guest wrote, updated call by call; the
 * native engine's C loop (engines/native/fastcall.c) hashes gathered output
 * on a helper thread, which must not need the GIL (hashlib's objects do), and
 * the Python side (zvm_core/_md5.c, channels.py) updates the same state: one
 * implementation, shared by both extensions through this header.
 */
#ifndef ZVM_MD5_H
#define ZVM_MD5_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct md5 {
    uint32_t h[4];
    uint64_t length;                    /* bytes hashed so far */
    unsigned char block[64];            /* the partial block: length % 64 bytes */
};

static inline void md5_init(struct md5 *m)
{
    m->h[0] = 0x67452301;
    m->h[1] = 0xefcdab89;
    m->h[2] = 0x98badcfe;
    m->h[3] = 0x10325476;
    m->length = 0;
}

#define MD5_F(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MD5_G(x, y, z) ((y) ^ ((z) & ((x) ^ (y))))
#define MD5_H(x, y, z) ((x) ^ (y) ^ (z))
#define MD5_I(x, y, z) ((y) ^ ((x) | ~(z)))
#define STEP(f, a, b, c, d, xk, s, t) do { \
        a += MD5_##f(b, c, d) + (xk) + (uint32_t)(t); \
        a = (a << (s) | a >> (32 - (s))) + b; \
    } while (0)

/* The 64 steps over each 64-byte block of p (count blocks). */
static void md5_blocks(uint32_t h[4], const unsigned char *p, size_t count)
{
    for (; count; count--, p += 64) {
        uint32_t x[16];
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(x, p, 64);                   /* the words are little-endian */
#else
        for (int i = 0; i < 16; i++)
            x[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8
                 | (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
#endif
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
        STEP(F, a, b, c, d, x[ 0],  7, 0xd76aa478);
        STEP(F, d, a, b, c, x[ 1], 12, 0xe8c7b756);
        STEP(F, c, d, a, b, x[ 2], 17, 0x242070db);
        STEP(F, b, c, d, a, x[ 3], 22, 0xc1bdceee);
        STEP(F, a, b, c, d, x[ 4],  7, 0xf57c0faf);
        STEP(F, d, a, b, c, x[ 5], 12, 0x4787c62a);
        STEP(F, c, d, a, b, x[ 6], 17, 0xa8304613);
        STEP(F, b, c, d, a, x[ 7], 22, 0xfd469501);
        STEP(F, a, b, c, d, x[ 8],  7, 0x698098d8);
        STEP(F, d, a, b, c, x[ 9], 12, 0x8b44f7af);
        STEP(F, c, d, a, b, x[10], 17, 0xffff5bb1);
        STEP(F, b, c, d, a, x[11], 22, 0x895cd7be);
        STEP(F, a, b, c, d, x[12],  7, 0x6b901122);
        STEP(F, d, a, b, c, x[13], 12, 0xfd987193);
        STEP(F, c, d, a, b, x[14], 17, 0xa679438e);
        STEP(F, b, c, d, a, x[15], 22, 0x49b40821);
        STEP(G, a, b, c, d, x[ 1],  5, 0xf61e2562);
        STEP(G, d, a, b, c, x[ 6],  9, 0xc040b340);
        STEP(G, c, d, a, b, x[11], 14, 0x265e5a51);
        STEP(G, b, c, d, a, x[ 0], 20, 0xe9b6c7aa);
        STEP(G, a, b, c, d, x[ 5],  5, 0xd62f105d);
        STEP(G, d, a, b, c, x[10],  9, 0x02441453);
        STEP(G, c, d, a, b, x[15], 14, 0xd8a1e681);
        STEP(G, b, c, d, a, x[ 4], 20, 0xe7d3fbc8);
        STEP(G, a, b, c, d, x[ 9],  5, 0x21e1cde6);
        STEP(G, d, a, b, c, x[14],  9, 0xc33707d6);
        STEP(G, c, d, a, b, x[ 3], 14, 0xf4d50d87);
        STEP(G, b, c, d, a, x[ 8], 20, 0x455a14ed);
        STEP(G, a, b, c, d, x[13],  5, 0xa9e3e905);
        STEP(G, d, a, b, c, x[ 2],  9, 0xfcefa3f8);
        STEP(G, c, d, a, b, x[ 7], 14, 0x676f02d9);
        STEP(G, b, c, d, a, x[12], 20, 0x8d2a4c8a);
        STEP(H, a, b, c, d, x[ 5],  4, 0xfffa3942);
        STEP(H, d, a, b, c, x[ 8], 11, 0x8771f681);
        STEP(H, c, d, a, b, x[11], 16, 0x6d9d6122);
        STEP(H, b, c, d, a, x[14], 23, 0xfde5380c);
        STEP(H, a, b, c, d, x[ 1],  4, 0xa4beea44);
        STEP(H, d, a, b, c, x[ 4], 11, 0x4bdecfa9);
        STEP(H, c, d, a, b, x[ 7], 16, 0xf6bb4b60);
        STEP(H, b, c, d, a, x[10], 23, 0xbebfbc70);
        STEP(H, a, b, c, d, x[13],  4, 0x289b7ec6);
        STEP(H, d, a, b, c, x[ 0], 11, 0xeaa127fa);
        STEP(H, c, d, a, b, x[ 3], 16, 0xd4ef3085);
        STEP(H, b, c, d, a, x[ 6], 23, 0x04881d05);
        STEP(H, a, b, c, d, x[ 9],  4, 0xd9d4d039);
        STEP(H, d, a, b, c, x[12], 11, 0xe6db99e5);
        STEP(H, c, d, a, b, x[15], 16, 0x1fa27cf8);
        STEP(H, b, c, d, a, x[ 2], 23, 0xc4ac5665);
        STEP(I, a, b, c, d, x[ 0],  6, 0xf4292244);
        STEP(I, d, a, b, c, x[ 7], 10, 0x432aff97);
        STEP(I, c, d, a, b, x[14], 15, 0xab9423a7);
        STEP(I, b, c, d, a, x[ 5], 21, 0xfc93a039);
        STEP(I, a, b, c, d, x[12],  6, 0x655b59c3);
        STEP(I, d, a, b, c, x[ 3], 10, 0x8f0ccc92);
        STEP(I, c, d, a, b, x[10], 15, 0xffeff47d);
        STEP(I, b, c, d, a, x[ 1], 21, 0x85845dd1);
        STEP(I, a, b, c, d, x[ 8],  6, 0x6fa87e4f);
        STEP(I, d, a, b, c, x[15], 10, 0xfe2ce6e0);
        STEP(I, c, d, a, b, x[ 6], 15, 0xa3014314);
        STEP(I, b, c, d, a, x[13], 21, 0x4e0811a1);
        STEP(I, a, b, c, d, x[ 4],  6, 0xf7537e82);
        STEP(I, d, a, b, c, x[11], 10, 0xbd3af235);
        STEP(I, c, d, a, b, x[ 2], 15, 0x2ad7d2bb);
        STEP(I, b, c, d, a, x[ 9], 21, 0xeb86d391);
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
    }
}

#undef STEP

static inline void md5_update(struct md5 *m, const void *data, size_t n)
{
    const unsigned char *p = data;
    size_t have = (size_t)(m->length % 64);
    m->length += n;
    if (have) {
        size_t take = 64 - have < n ? 64 - have : n;
        memcpy(m->block + have, p, take);
        p += take;
        n -= take;
        if (have + take < 64)
            return;
        md5_blocks(m->h, m->block, 1);
    }
    md5_blocks(m->h, p, n / 64);
    memcpy(m->block, p + (n & ~(size_t)63), n % 64);
}

/* The digest of what m has hashed; m itself is left as it was. */
static inline void md5_digest(const struct md5 *m, unsigned char out[16])
{
    struct md5 t = *m;
    unsigned char pad[72] = {0x80};
    size_t have = (size_t)(t.length % 64);
    size_t len = (have < 56 ? 56 : 120) - have;
    uint64_t bits = t.length * 8;
    for (int i = 0; i < 8; i++)
        pad[len + i] = (unsigned char)(bits >> (8 * i));
    md5_update(&t, pad, len + 8);
    for (int i = 0; i < 16; i++)
        out[i] = (unsigned char)(t.h[i / 4] >> (8 * (i % 4)));
}

#ifdef Py_PYTHON_H
/* zvm_core._md5.MD5's layout (_md5.c), which fastcall.c updates in place */
typedef struct {
    PyObject_HEAD
    struct md5 md5;
} MD5Object;
#endif

#endif

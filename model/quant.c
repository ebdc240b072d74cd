/* quant.c - int8 / bf16 list-ordered copy of the IVF rows and its scan kernels (see quant.h). */
#include "model/quant.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(KP_QUANT_NO_SIMD)
#include <immintrin.h>
#define KP_QUANT_X86 1
#endif

#include "common/util.h"

/* A query's codes are 7-bit (-63..63, stored + 64 as 1..127): a pair of u8 x s8 products then
 * stays below 2^15, so the AVX2 kernel's vpmaddubsw (saturating s16 pair sums) is exact too. The
 * rows keep 8 bits (-127..127). */
#define QMAX 63
#define QOFF 64

typedef void (*scan_fn)(const kp_quant *z, int l, const void *qp, int m, float *S, int ld);

struct kp_quant {
    int kind, n, dim, dp, nlist; /* dp: dim rounded up to a multiple of 4 (zero-padded) */
    int *off;                    /* [nlist + 1] rows of list l: off[l] .. off[l + 1] */
    int *boff;                   /* [nlist + 1] blocks of list l: boff[l] .. boff[l + 1] */
    int nblk;
    unsigned char *blk; /* [nblk x 16 x dp] codes (int8) or [nblk x 16 x dp] uint16 (bf16) */
    float *scale;       /* int8: [nblk x 16] row scales (0 in the padding) */
    int32_t *corr;      /* int8: [nblk x 16] QOFF * the row's code sum */
    size_t qbytes, bbytes;
    scan_fn scan;
    const char *kname;
};

int kp_quant_parse(const char *s)
{
    if (!s) return -1;
    if (!strcmp(s, "fp32")) return KP_QUANT_FP32;
    if (!strcmp(s, "int8")) return KP_QUANT_INT8;
    if (!strcmp(s, "bf16")) return KP_QUANT_BF16;
    return -1;
}

const char *kp_quant_name(int kind)
{
    return kind == KP_QUANT_FP32   ? "fp32"
           : kind == KP_QUANT_INT8 ? "int8"
           : kind == KP_QUANT_BF16 ? "bf16"
                                   : "?";
}

void kp_quant_free(kp_quant *z)
{
    if (!z) return;
    KP_FREE_ALL(z->off, z->boff, z->blk, z->scale, z->corr, z);
}

int kp_quant_kind_of(const kp_quant *z)
{
    return z ? z->kind : -1;
}

size_t kp_quant_bytes(const kp_quant *z)
{
    if (!z) return 0;
    size_t b = (size_t)z->nblk * z->bbytes + 2 * sizeof(int) * ((size_t)z->nlist + 1);
    if (z->kind == KP_QUANT_INT8) b += (size_t)z->nblk * KP_QUANT_BLOCK * (sizeof(float) + 4);
    return b;
}

const char *kp_quant_kernel(const kp_quant *z)
{
    return z ? z->kname : "?";
}

size_t kp_quant_qbytes(const kp_quant *z)
{
    return z ? z->qbytes : 0;
}

/* fp32 -> bf16, round to nearest even (finite inputs; a NaN stays a NaN or becomes inf). */
static uint16_t to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static float absmax(const float *x, int d)
{
    float a = 0.0f;
    for (int j = 0; j < d; j++)
        a = fabsf(x[j]) > a ? fabsf(x[j]) : a;
    return a;
}

void kp_quant_prep(const kp_quant *z, const float *q, void *out)
{
    int d = z->dim;
    if (z->kind == KP_QUANT_INT8) {
        float a = absmax(q, d), s = a > 0 ? a / QMAX : 0.0f, inv = a > 0 ? QMAX / a : 0.0f;
        unsigned char *u = (unsigned char *)out + sizeof(float);
        memcpy(out, &s, sizeof(float));
        for (int j = 0; j < z->dp; j++) {
            long c = j < d ? lrintf(q[j] * inv) : 0;
            c = c < -QMAX ? -QMAX : c > QMAX ? QMAX : c;
            u[j] = (unsigned char)(c + QOFF);
        }
    } else {
        uint16_t *h = out;
        for (int j = 0; j < z->dp; j++)
            h[j] = j < d ? to_bf16(q[j]) : 0;
    }
}

/* ---- plain kernels --------------------------------------------------------------------------- */

static void scan_i8_plain(const kp_quant *z, int l, const void *qp, int m, float *S, int ld)
{
    int len = z->off[l + 1] - z->off[l], b0 = z->boff[l], G = z->dp / 4;
    for (int j = 0; j < m; j++) {
        const unsigned char *qj = (const unsigned char *)qp + (size_t)j * z->qbytes;
        float qs;
        memcpy(&qs, qj, sizeof(float));
        const unsigned char *u = qj + sizeof(float);
        for (int i = 0; i < len; i++) {
            int b = b0 + i / KP_QUANT_BLOCK, r = i % KP_QUANT_BLOCK;
            const signed char *B = (const signed char *)z->blk + (size_t)b * z->bbytes;
            int32_t acc = 0;
            for (int g = 0; g < G; g++)
                for (int e = 0; e < 4; e++)
                    acc += (int32_t)u[4 * g + e] * B[g * 64 + r * 4 + e];
            size_t ri = (size_t)b * KP_QUANT_BLOCK + r;
            S[(size_t)j * ld + i] = (float)(acc - z->corr[ri]) * (z->scale[ri] * qs);
        }
    }
}

static void scan_bf16_plain(const kp_quant *z, int l, const void *qp, int m, float *S, int ld)
{
    int len = z->off[l + 1] - z->off[l], b0 = z->boff[l], G = z->dp / 2;
    for (int j = 0; j < m; j++) {
        const uint16_t *h = (const uint16_t *)((const char *)qp + (size_t)j * z->qbytes);
        for (int i = 0; i < len; i++) {
            int b = b0 + i / KP_QUANT_BLOCK, r = i % KP_QUANT_BLOCK;
            const uint16_t *B = (const uint16_t *)(z->blk + (size_t)b * z->bbytes);
            float acc = 0.0f;
            for (int g = 0; g < G; g++) {
                const uint16_t *R = B + g * 32 + r * 2;
                acc += from_bf16(h[2 * g]) * from_bf16(R[0]) +
                       from_bf16(h[2 * g + 1]) * from_bf16(R[1]);
            }
            S[(size_t)j * ld + i] = acc;
        }
    }
}

/* ---- AVX-512 kernels: per block of 16 rows, tiles of up to 8 queries (8 accumulators); the block
 * (2 or 4 KB) stays in L1 across the tiles, so it is read from memory once per list scan. --------
 */

#ifdef KP_QUANT_X86
#define TGT_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define TGT_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define TGT_AVX2 __attribute__((target("avx2")))
#define QT       8

static inline __mmask16 tail_mask(int rows)
{
    return rows >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << rows) - 1u);
}

TGT_VNNI static inline __attribute__((always_inline)) void
i8_tile(const kp_quant *z, int b, int rows, const unsigned char *qp, const int T, float *S, int ld)
{
    int G = z->dp / 4;
    const __m512i *R = (const __m512i *)(z->blk + (size_t)b * z->bbytes);
    __m512i acc[QT];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_setzero_si512();
    for (int g = 0; g < G; g++) {
        __m512i r = _mm512_load_si512(R + g);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            int32_t w;
            memcpy(&w, qp + (size_t)t * z->qbytes + sizeof(float) + 4 * (size_t)g, 4);
            acc[t] = _mm512_dpbusd_epi32(acc[t], _mm512_set1_epi32(w), r);
        }
    }
    __m512 sc = _mm512_loadu_ps(z->scale + (size_t)b * KP_QUANT_BLOCK);
    __m512i co = _mm512_loadu_si512(z->corr + (size_t)b * KP_QUANT_BLOCK);
    __mmask16 mk = tail_mask(rows);
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        float qs;
        memcpy(&qs, qp + (size_t)t * z->qbytes, sizeof(float));
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[t], co)),
                                 _mm512_mul_ps(sc, _mm512_set1_ps(qs)));
        _mm512_mask_storeu_ps(S + (size_t)t * ld, mk, v);
    }
}

TGT_VNNI static void scan_i8_vnni(const kp_quant *z, int l, const void *qp, int m, float *S, int ld)
{
    int len = z->off[l + 1] - z->off[l], b0 = z->boff[l], nb = z->boff[l + 1] - b0;
    const unsigned char *Q = qp;
    for (int b = 0; b < nb; b++) {
        int rows = len - b * KP_QUANT_BLOCK;
        for (int j0 = 0; j0 < m; j0 += QT) {
            const unsigned char *q = Q + (size_t)j0 * z->qbytes;
            float *s = S + (size_t)j0 * ld + (size_t)b * KP_QUANT_BLOCK;
            switch (m - j0 < QT ? m - j0 : QT) {
            case 1:
                i8_tile(z, b0 + b, rows, q, 1, s, ld);
                break;
            case 2:
                i8_tile(z, b0 + b, rows, q, 2, s, ld);
                break;
            case 3:
                i8_tile(z, b0 + b, rows, q, 3, s, ld);
                break;
            case 4:
                i8_tile(z, b0 + b, rows, q, 4, s, ld);
                break;
            case 5:
                i8_tile(z, b0 + b, rows, q, 5, s, ld);
                break;
            case 6:
                i8_tile(z, b0 + b, rows, q, 6, s, ld);
                break;
            case 7:
                i8_tile(z, b0 + b, rows, q, 7, s, ld);
                break;
            default:
                i8_tile(z, b0 + b, rows, q, 8, s, ld);
                break;
            }
        }
    }
}

/* AVX2 (no VNNI): per group, 8 rows per 256-bit half: vpmaddubsw (u8 x s8 pairs -> s16, exact
 * with 7-bit query codes) then vpmaddwd by ones (-> s32 per row). Tiles of up to 4 queries. */
#define QT2 4
TGT_AVX2 static inline __attribute__((always_inline)) void
i8_tile2(const kp_quant *z, int b, int rows, const unsigned char *qp, const int T, float *S, int ld)
{
    int G = z->dp / 4;
    const __m256i *R = (const __m256i *)(z->blk + (size_t)b * z->bbytes),
                  ones = _mm256_set1_epi16(1);
    __m256i lo[QT2], hi[QT2];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        lo[t] = hi[t] = _mm256_setzero_si256();
    for (int g = 0; g < G; g++) {
        __m256i r0 = _mm256_load_si256(R + 2 * g), r1 = _mm256_load_si256(R + 2 * g + 1);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            int32_t w;
            memcpy(&w, qp + (size_t)t * z->qbytes + sizeof(float) + 4 * (size_t)g, 4);
            __m256i qw = _mm256_set1_epi32(w);
            lo[t] = _mm256_add_epi32(lo[t], _mm256_madd_epi16(_mm256_maddubs_epi16(qw, r0), ones));
            hi[t] = _mm256_add_epi32(hi[t], _mm256_madd_epi16(_mm256_maddubs_epi16(qw, r1), ones));
        }
    }
    const float *sc = z->scale + (size_t)b * KP_QUANT_BLOCK;
    const int32_t *co = z->corr + (size_t)b * KP_QUANT_BLOCK;
    __m256 s0 = _mm256_loadu_ps(sc), s1 = _mm256_loadu_ps(sc + 8);
    __m256i c0 = _mm256_loadu_si256((const __m256i *)co),
            c1 = _mm256_loadu_si256((const __m256i *)(co + 8));
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        float qs, out[16];
        memcpy(&qs, qp + (size_t)t * z->qbytes, sizeof(float));
        __m256 q8 = _mm256_set1_ps(qs);
        _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(lo[t], c0)),
                                            _mm256_mul_ps(s0, q8)));
        _mm256_storeu_ps(out + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(hi[t], c1)),
                                                _mm256_mul_ps(s1, q8)));
        memcpy(S + (size_t)t * ld, out, sizeof(float) * (size_t)(rows < 16 ? rows : 16));
    }
}

TGT_AVX2 static void scan_i8_avx2(const kp_quant *z, int l, const void *qp, int m, float *S, int ld)
{
    int len = z->off[l + 1] - z->off[l], b0 = z->boff[l], nb = z->boff[l + 1] - b0;
    const unsigned char *Q = qp;
    for (int b = 0; b < nb; b++) {
        int rows = len - b * KP_QUANT_BLOCK;
        for (int j0 = 0; j0 < m; j0 += QT2) {
            const unsigned char *q = Q + (size_t)j0 * z->qbytes;
            float *s = S + (size_t)j0 * ld + (size_t)b * KP_QUANT_BLOCK;
            switch (m - j0 < QT2 ? m - j0 : QT2) {
            case 1:
                i8_tile2(z, b0 + b, rows, q, 1, s, ld);
                break;
            case 2:
                i8_tile2(z, b0 + b, rows, q, 2, s, ld);
                break;
            case 3:
                i8_tile2(z, b0 + b, rows, q, 3, s, ld);
                break;
            default:
                i8_tile2(z, b0 + b, rows, q, 4, s, ld);
                break;
            }
        }
    }
}

TGT_BF16 static inline __attribute__((always_inline)) void
bf_tile(const kp_quant *z, int b, int rows, const unsigned char *qp, const int T, float *S, int ld)
{
    int G = z->dp / 2;
    const __m512i *R = (const __m512i *)(z->blk + (size_t)b * z->bbytes);
    __m512 acc[QT];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_setzero_ps();
    for (int g = 0; g < G; g++) {
        __m512i r = _mm512_load_si512(R + g);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            int32_t w;
            memcpy(&w, qp + (size_t)t * z->qbytes + 4 * (size_t)g, 4);
            acc[t] = _mm512_dpbf16_ps(acc[t], (__m512bh)_mm512_set1_epi32(w), (__m512bh)r);
        }
    }
    __mmask16 mk = tail_mask(rows);
#pragma GCC unroll 8
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(S + (size_t)t * ld, mk, acc[t]);
}

TGT_BF16 static void scan_bf16_avx(const kp_quant *z, int l, const void *qp, int m, float *S,
                                   int ld)
{
    int len = z->off[l + 1] - z->off[l], b0 = z->boff[l], nb = z->boff[l + 1] - b0;
    const unsigned char *Q = qp;
    for (int b = 0; b < nb; b++) {
        int rows = len - b * KP_QUANT_BLOCK;
        for (int j0 = 0; j0 < m; j0 += QT) {
            const unsigned char *q = Q + (size_t)j0 * z->qbytes;
            float *s = S + (size_t)j0 * ld + (size_t)b * KP_QUANT_BLOCK;
            switch (m - j0 < QT ? m - j0 : QT) {
            case 1:
                bf_tile(z, b0 + b, rows, q, 1, s, ld);
                break;
            case 2:
                bf_tile(z, b0 + b, rows, q, 2, s, ld);
                break;
            case 3:
                bf_tile(z, b0 + b, rows, q, 3, s, ld);
                break;
            case 4:
                bf_tile(z, b0 + b, rows, q, 4, s, ld);
                break;
            case 5:
                bf_tile(z, b0 + b, rows, q, 5, s, ld);
                break;
            case 6:
                bf_tile(z, b0 + b, rows, q, 6, s, ld);
                break;
            case 7:
                bf_tile(z, b0 + b, rows, q, 7, s, ld);
                break;
            default:
                bf_tile(z, b0 + b, rows, q, 8, s, ld);
                break;
            }
        }
    }
}
#endif

void kp_quant_scan(const kp_quant *z, int l, const void *qp, int m, float *S, int ld)
{
    if (l >= 0 && l < z->nlist && m > 0) z->scan(z, l, qp, m, S, ld);
}

void kp_quant_scan_ref(const kp_quant *z, int l, const void *qp, int m, float *S, int ld)
{
    if (l < 0 || l >= z->nlist || m <= 0) return;
    if (z->kind == KP_QUANT_INT8)
        scan_i8_plain(z, l, qp, m, S, ld);
    else
        scan_bf16_plain(z, l, qp, m, S, ld);
}

/* ---- build ----------------------------------------------------------------------------------- */

/* Row r (0..15) of block B from x [dim] (NULL: padding, all zero). */
static void put_row(kp_quant *z, size_t b, int r, const float *x)
{
    unsigned char *B = z->blk + b * z->bbytes;
    size_t ri = b * KP_QUANT_BLOCK + (size_t)r;
    if (z->kind == KP_QUANT_INT8) {
        float a = x ? absmax(x, z->dim) : 0.0f, inv = a > 0 ? 127.0f / a : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < z->dp; j++) {
            long c = x && j < z->dim ? lrintf(x[j] * inv) : 0;
            c = c < -127 ? -127 : c > 127 ? 127 : c;
            ((signed char *)B)[(j / 4) * 64 + r * 4 + j % 4] = (signed char)c;
            sum += (int32_t)c;
        }
        z->scale[ri] = a > 0 ? a / 127.0f : 0.0f;
        z->corr[ri] = QOFF * sum;
    } else {
        uint16_t *H = (uint16_t *)B;
        for (int j = 0; j < z->dp; j++)
            H[(j / 2) * 32 + r * 2 + j % 2] = x && j < z->dim ? to_bf16(x[j]) : 0;
    }
}

kp_quant *kp_quant_build(const float *rows, int n, int dim, const int *off, int nlist, int kind,
                         int simd)
{
    if (!rows || n <= 0 || dim <= 0 || !off || nlist <= 0 || off[0] != 0 || off[nlist] != n)
        return NULL;
    if (kind != KP_QUANT_INT8 && kind != KP_QUANT_BF16) return NULL;
    kp_quant *z = calloc(1, sizeof(*z));
    if (!z) return NULL;
    z->kind = kind, z->n = n, z->dim = dim, z->dp = (dim + 3) / 4 * 4, z->nlist = nlist;
    z->bbytes = (size_t)KP_QUANT_BLOCK * z->dp * (kind == KP_QUANT_INT8 ? 1 : 2);
    z->qbytes = kind == KP_QUANT_INT8 ? sizeof(float) + (size_t)z->dp : 2 * (size_t)z->dp;
    z->off = malloc(sizeof(int) * ((size_t)nlist + 1));
    z->boff = malloc(sizeof(int) * ((size_t)nlist + 1));
    if (!z->off || !z->boff) goto err;
    z->boff[0] = 0;
    for (int l = 0; l < nlist; l++) {
        int len = off[l + 1] - off[l];
        if (len < 0) goto err;
        z->off[l] = off[l];
        z->boff[l + 1] = z->boff[l] + (len + KP_QUANT_BLOCK - 1) / KP_QUANT_BLOCK;
    }
    z->off[nlist] = n;
    z->nblk = z->boff[nlist];
    size_t bytes = (size_t)z->nblk * z->bbytes;
    z->blk = aligned_alloc(64, bytes > 0 ? (bytes + 63) / 64 * 64 : 64);
    if (!z->blk) goto err;
    if (kind == KP_QUANT_INT8) {
        z->scale = malloc(sizeof(float) * ((size_t)z->nblk * KP_QUANT_BLOCK + 1));
        z->corr = malloc(sizeof(int32_t) * ((size_t)z->nblk * KP_QUANT_BLOCK + 1));
        if (!z->scale || !z->corr) goto err;
    }
    for (int l = 0; l < nlist; l++) {
        int len = off[l + 1] - off[l];
        for (int i = 0; i < (z->boff[l + 1] - z->boff[l]) * KP_QUANT_BLOCK; i++)
            put_row(z, (size_t)z->boff[l] + (size_t)(i / KP_QUANT_BLOCK), i % KP_QUANT_BLOCK,
                    i < len ? rows + ((size_t)off[l] + (size_t)i) * dim : NULL);
    }
    z->scan = kind == KP_QUANT_INT8 ? scan_i8_plain : scan_bf16_plain;
    z->kname = "plain";
#ifdef KP_QUANT_X86
    if (simd) {
        __builtin_cpu_init();
        if (kind == KP_QUANT_INT8 && __builtin_cpu_supports("avx2"))
            z->scan = scan_i8_avx2, z->kname = "avx2";
        if (kind == KP_QUANT_INT8 && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni") && simd != 2)
            z->scan = scan_i8_vnni, z->kname = "avx512vnni";
        if (kind == KP_QUANT_BF16 && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16"))
            z->scan = scan_bf16_avx, z->kname = "avx512bf16";
    }
#else
    (void)simd;
#endif
    return z;
err:
    kp_quant_free(z);
    return NULL;
}

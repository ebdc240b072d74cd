/* vmath.c -- elementwise tanh and exp (see vmath.h): the plain loops and their AVX2 / AVX-512
 * forms, bit for bit the same. */
#include "model/vmath.h"

#include <math.h>
#include <stdint.h>

/* e^y = 2^n e^r: n = round(y / ln 2) (adding and subtracting EXP_ROUND), r = y - n ln 2 in two
 * parts (n * EXP_LN2HI is exact for |n| < 2^15), e^r by its Taylor series to r^7 (truncation
 * < 6e-9 relative at |r| <= ln 2 / 2). tanh and exp share it. */
#define EXP_LN2HI 0.693359375f    /* 9 significant bits */
#define EXP_LN2LO -2.12194440e-4f /* ln 2 - EXP_LN2HI */
#define EXP_LOG2E 1.44269504088896f
#define EXP_ROUND 12582912.0f /* 1.5 * 2^23 */

/* ---- tanh ------------------------------------------------------------------------------------ */

/* tanh(x) = sign(x) (1 - 2 / (e^{2|x|} + 1)) for |x| >= TANH_SMALL, with e^y = 2^n e^r (n =
 * round(y / ln 2), r = y - n ln 2 in two parts, e^r by its Taylor series to r^7: truncation
 * < 6e-9 relative at |r| <= ln 2 / 2); below TANH_SMALL the odd Taylor series to x^17 (the next
 * term < 6e-9 relative), where the formula above would cancel. |x| is clamped at TANH_BIG
 * (tanh rounds to 1 there). Error against tanh in double: at most 1.53 ulp over every 16th float
 * of [-10, 10] (worst just above TANH_SMALL); test_tanh_accuracy checks <= 2 ulp. Replaces
 * libm's tanhf, a call per element: a third of the item tower's time. The same operations in the
 * same order in both versions below, and no fused multiply-add (kpmodel builds with
 * -ffp-contract=off), so they agree bit for bit. */
#define TANH_SMALL 0.55f
#define TANH_BIG   9.5f

static float tanh_one(float x)
{
    float a = fabsf(x), t = a < TANH_BIG ? a : TANH_BIG;
    /* small: x + x^3 (c3 + x^2 (c5 + ...)) */
    float x2 = t * t;
    float p = 6404582.0f / 10854718875.0f;
    p = p * x2 + (-929569.0f / 638512875.0f);
    p = p * x2 + (21844.0f / 6081075.0f);
    p = p * x2 + (-1382.0f / 155925.0f);
    p = p * x2 + (62.0f / 2835.0f);
    p = p * x2 + (-17.0f / 315.0f);
    p = p * x2 + (2.0f / 15.0f);
    p = p * x2 + (-1.0f / 3.0f);
    float small = t + t * x2 * p;
    /* large: 1 - 2 / (e^{2t} + 1) */
    float y = t + t;
    float n = (y * EXP_LOG2E + EXP_ROUND) - EXP_ROUND;
    float r = (y - n * EXP_LN2HI) - n * EXP_LN2LO;
    float e = 1.0f / 5040.0f;
    e = e * r + 1.0f / 720.0f;
    e = e * r + 1.0f / 120.0f;
    e = e * r + 1.0f / 24.0f;
    e = e * r + 1.0f / 6.0f;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    union {
        uint32_t u;
        float f;
    } two = {(uint32_t)((int32_t)n + 127) << 23};
    float big = 1.0f - 2.0f / (e * two.f + 1.0f);
    float v = t < TANH_SMALL ? small : big;
    if (x != x) return x; /* NaN */
    return copysignf(v, x);
}

void kp_tanh_forward_ref(float *out, const float *inp, size_t N)
{
    for (size_t i = 0; i < N; i++)
        out[i] = tanh_one(inp[i]);
}

/* tanh_one's two polynomials for the other forms, highest power first: p(t^2) of the small-|x|
 * form tanh(t) = t + t^3 p (tanh_cs), and e^r (exp_c). */
static const float tanh_cs[8] = {6404582.0f / 10854718875.0f,
                                 -929569.0f / 638512875.0f,
                                 21844.0f / 6081075.0f,
                                 -1382.0f / 155925.0f,
                                 62.0f / 2835.0f,
                                 -17.0f / 315.0f,
                                 2.0f / 15.0f,
                                 -1.0f / 3.0f};
static const float exp_c[8] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f,
                               1.0f / 6.0f,    0.5f,          1.0f,          1.0f};

/* ---- exp ------------------------------------------------------------------------------------- */

/* e^x by the reduction above, x clamped to [EXP_MIN, EXP_MAX] first (n in [-150, 128]); 2^n is
 * applied as 2^h 2^(n-h), h = floor(n / 2), two normal powers of two: the first product is exact,
 * the second rounds once (to a subnormal, 0 or +inf at the ends). Error against exp in double: at
 * most 2 ulp (test_exp_accuracy). */
#define EXP_MIN -104.0f /* e^-104 < half the least subnormal: rounds to 0 */
#define EXP_MAX 89.0f   /* e^89 > FLT_MAX */

typedef union {
    uint32_t u;
    float f;
} bits32;

static float exp_one(float x)
{
    if (x != x) return x; /* NaN */
    float y = x < EXP_MIN ? EXP_MIN : x > EXP_MAX ? EXP_MAX : x;
    float n = (y * EXP_LOG2E + EXP_ROUND) - EXP_ROUND;
    float r = (y - n * EXP_LN2HI) - n * EXP_LN2LO;
    float e = exp_c[0];
    for (int c = 1; c < 8; c++)
        e = e * r + exp_c[c];
    int32_t k = (int32_t)n, h = k >= 0 ? k / 2 : -((1 - k) / 2); /* floor(k / 2) */
    bits32 t1 = {(uint32_t)(h + 127) << 23}, t2 = {(uint32_t)(k - h + 127) << 23};
    return (e * t1.f) * t2.f;
}

void kp_exp_forward_ref(float *out, const float *inp, size_t N)
{
    for (size_t i = 0; i < N; i++)
        out[i] = exp_one(inp[i]);
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
/* ---- the x86-64 forms ------------------------------------------------------------------------ */

/* tanh_one on 16 floats at a time; the tail by tanh_one. */
__attribute__((target("avx512f"))) static void tanh_avx512(float *out, const float *inp, size_t N)
{
    const __m512 big = _mm512_set1_ps(TANH_BIG), lg = _mm512_set1_ps(EXP_LOG2E);
    const __m512 rnd = _mm512_set1_ps(EXP_ROUND), hi = _mm512_set1_ps(EXP_LN2HI);
    const __m512 lo = _mm512_set1_ps(EXP_LN2LO), one = _mm512_set1_ps(1.0f);
    const __m512i sgn = _mm512_set1_epi32((int)0x80000000u); /* float bit ops are AVX512DQ */
    size_t i = 0;
    for (; i + 16 <= N; i += 16) {
        __m512 x = _mm512_loadu_ps(inp + i);
        __m512i xi = _mm512_castps_si512(x);
        __m512 a = _mm512_castsi512_ps(_mm512_andnot_si512(sgn, xi));
        __m512 t = _mm512_min_ps(a, big); /* NaN: big, fixed below */
        __m512 x2 = _mm512_mul_ps(t, t);
        __m512 p = _mm512_set1_ps(tanh_cs[0]);
        for (int c = 1; c < 8; c++)
            p = _mm512_add_ps(_mm512_mul_ps(p, x2), _mm512_set1_ps(tanh_cs[c]));
        __m512 small = _mm512_add_ps(t, _mm512_mul_ps(_mm512_mul_ps(t, x2), p));
        __m512 y = _mm512_add_ps(t, t);
        __m512 n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(y, lg), rnd), rnd);
        __m512 r = _mm512_sub_ps(_mm512_sub_ps(y, _mm512_mul_ps(n, hi)), _mm512_mul_ps(n, lo));
        __m512 e = _mm512_set1_ps(exp_c[0]);
        for (int c = 1; c < 8; c++)
            e = _mm512_add_ps(_mm512_mul_ps(e, r), _mm512_set1_ps(exp_c[c]));
        __m512i ni = _mm512_cvtps_epi32(n); /* n is an integer already */
        __m512 two = _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_add_epi32(ni, _mm512_set1_epi32(127)), 23));
        __m512 bg = _mm512_sub_ps(
            one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(_mm512_mul_ps(e, two), one)));
        __mmask16 sm = _mm512_cmp_ps_mask(t, _mm512_set1_ps(TANH_SMALL), _CMP_LT_OQ);
        __m512 v = _mm512_mask_blend_ps(sm, bg, small);
        v = _mm512_castsi512_ps(/* the sign of x */
                                _mm512_or_si512(_mm512_castps_si512(v), _mm512_and_si512(xi, sgn)));
        __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
        _mm512_storeu_ps(out + i, _mm512_mask_blend_ps(nan, v, x));
    }
    for (; i < N; i++)
        out[i] = tanh_one(inp[i]);
}

/* The same on 8 floats at a time with AVX2 (and the same operations, so the same bits). */
__attribute__((target("avx2"))) static void tanh_avx2(float *out, const float *inp, size_t N)
{
    const __m256 big = _mm256_set1_ps(TANH_BIG), lg = _mm256_set1_ps(EXP_LOG2E);
    const __m256 rnd = _mm256_set1_ps(EXP_ROUND), hi = _mm256_set1_ps(EXP_LN2HI);
    const __m256 lo = _mm256_set1_ps(EXP_LN2LO), one = _mm256_set1_ps(1.0f);
    const __m256 sgn = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= N; i += 8) {
        __m256 x = _mm256_loadu_ps(inp + i);
        __m256 t = _mm256_min_ps(_mm256_andnot_ps(sgn, x), big); /* NaN: big, fixed below */
        __m256 x2 = _mm256_mul_ps(t, t);
        __m256 p = _mm256_set1_ps(tanh_cs[0]);
        for (int c = 1; c < 8; c++)
            p = _mm256_add_ps(_mm256_mul_ps(p, x2), _mm256_set1_ps(tanh_cs[c]));
        __m256 small = _mm256_add_ps(t, _mm256_mul_ps(_mm256_mul_ps(t, x2), p));
        __m256 y = _mm256_add_ps(t, t);
        __m256 n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(y, lg), rnd), rnd);
        __m256 r = _mm256_sub_ps(_mm256_sub_ps(y, _mm256_mul_ps(n, hi)), _mm256_mul_ps(n, lo));
        __m256 e = _mm256_set1_ps(exp_c[0]);
        for (int c = 1; c < 8; c++)
            e = _mm256_add_ps(_mm256_mul_ps(e, r), _mm256_set1_ps(exp_c[c]));
        __m256i ni = _mm256_cvtps_epi32(n); /* n is an integer already */
        __m256 two = _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
        __m256 bg = _mm256_sub_ps(
            one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(_mm256_mul_ps(e, two), one)));
        __m256 sm = _mm256_cmp_ps(t, _mm256_set1_ps(TANH_SMALL), _CMP_LT_OQ);
        __m256 v = _mm256_or_ps(_mm256_blendv_ps(bg, small, sm), _mm256_and_ps(x, sgn));
        _mm256_storeu_ps(out + i, _mm256_blendv_ps(v, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
    }
    for (; i < N; i++)
        out[i] = tanh_one(inp[i]);
}
/* exp_one on 16 floats at a time; the tail by exp_one. */
__attribute__((target("avx512f"))) static void exp_avx512(float *out, const float *inp, size_t N)
{
    const __m512 lg = _mm512_set1_ps(EXP_LOG2E), rnd = _mm512_set1_ps(EXP_ROUND);
    const __m512 hi = _mm512_set1_ps(EXP_LN2HI), lo = _mm512_set1_ps(EXP_LN2LO);
    const __m512 mn = _mm512_set1_ps(EXP_MIN), mx = _mm512_set1_ps(EXP_MAX);
    const __m512i bias = _mm512_set1_epi32(127);
    size_t i = 0;
    for (; i + 16 <= N; i += 16) {
        __m512 x = _mm512_loadu_ps(inp + i);
        __m512 y = _mm512_max_ps(_mm512_min_ps(x, mx), mn); /* NaN: EXP_MAX, fixed below */
        __m512 n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(y, lg), rnd), rnd);
        __m512 r = _mm512_sub_ps(_mm512_sub_ps(y, _mm512_mul_ps(n, hi)), _mm512_mul_ps(n, lo));
        __m512 e = _mm512_set1_ps(exp_c[0]);
        for (int c = 1; c < 8; c++)
            e = _mm512_add_ps(_mm512_mul_ps(e, r), _mm512_set1_ps(exp_c[c]));
        __m512i k = _mm512_cvtps_epi32(n), h = _mm512_srai_epi32(k, 1);
        __m512 t1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(h, bias), 23));
        __m512 t2 = _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(k, h), bias), 23));
        __m512 v = _mm512_mul_ps(_mm512_mul_ps(e, t1), t2);
        __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
        _mm512_storeu_ps(out + i, _mm512_mask_blend_ps(nan, v, x));
    }
    for (; i < N; i++)
        out[i] = exp_one(inp[i]);
}

/* The same on 8 floats at a time with AVX2. */
__attribute__((target("avx2"))) static void exp_avx2(float *out, const float *inp, size_t N)
{
    const __m256 lg = _mm256_set1_ps(EXP_LOG2E), rnd = _mm256_set1_ps(EXP_ROUND);
    const __m256 hi = _mm256_set1_ps(EXP_LN2HI), lo = _mm256_set1_ps(EXP_LN2LO);
    const __m256 mn = _mm256_set1_ps(EXP_MIN), mx = _mm256_set1_ps(EXP_MAX);
    const __m256i bias = _mm256_set1_epi32(127);
    size_t i = 0;
    for (; i + 8 <= N; i += 8) {
        __m256 x = _mm256_loadu_ps(inp + i);
        __m256 y = _mm256_max_ps(_mm256_min_ps(x, mx), mn); /* NaN: EXP_MAX, fixed below */
        __m256 n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(y, lg), rnd), rnd);
        __m256 r = _mm256_sub_ps(_mm256_sub_ps(y, _mm256_mul_ps(n, hi)), _mm256_mul_ps(n, lo));
        __m256 e = _mm256_set1_ps(exp_c[0]);
        for (int c = 1; c < 8; c++)
            e = _mm256_add_ps(_mm256_mul_ps(e, r), _mm256_set1_ps(exp_c[c]));
        __m256i k = _mm256_cvtps_epi32(n), h = _mm256_srai_epi32(k, 1);
        __m256 t1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
        __m256 t2 = _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(k, h), bias), 23));
        __m256 v = _mm256_mul_ps(_mm256_mul_ps(e, t1), t2);
        _mm256_storeu_ps(out + i, _mm256_blendv_ps(v, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
    }
    for (; i < N; i++)
        out[i] = exp_one(inp[i]);
}
#define HAVE_VMATH_X86 1
#endif

void kp_tanh_forward_avx2(float *out, const float *inp, size_t N)
{
#ifdef HAVE_VMATH_X86
    if (__builtin_cpu_supports("avx2")) {
        tanh_avx2(out, inp, N);
        return;
    }
#endif
    kp_tanh_forward_ref(out, inp, N);
}

void kp_tanh_forward(float *out, const float *inp, size_t N)
{
#ifdef HAVE_VMATH_X86
    if (__builtin_cpu_supports("avx512f")) {
        tanh_avx512(out, inp, N);
        return;
    }
#endif
    kp_tanh_forward_avx2(out, inp, N);
}

void kp_exp_forward_avx2(float *out, const float *inp, size_t N)
{
#ifdef HAVE_VMATH_X86
    if (__builtin_cpu_supports("avx2")) {
        exp_avx2(out, inp, N);
        return;
    }
#endif
    kp_exp_forward_ref(out, inp, N);
}

void kp_exp_forward(float *out, const float *inp, size_t N)
{
#ifdef HAVE_VMATH_X86
    if (__builtin_cpu_supports("avx512f")) {
        exp_avx512(out, inp, N);
        return;
    }
#endif
    kp_exp_forward_avx2(out, inp, N);
}

/* ---- sum of squares -------------------------------------------------------------------------- */

#define SUMSQ_LANES 8

double kp_sumsq_ref(const float *x, size_t n)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    return ss;
}

#if defined(__GNUC__)
__attribute__((always_inline)) /* into sumsq_avx2 */
#endif
static inline double
sumsq_lanes(const float *x, size_t n)
{
    double acc[SUMSQ_LANES] = {0};
    size_t i = 0;
    for (; i + SUMSQ_LANES <= n; i += SUMSQ_LANES)
        for (int l = 0; l < SUMSQ_LANES; l++)
            acc[l] += (double)x[i + l] * x[i + l];
    for (int l = 0; i < n; i++, l++)
        acc[l] += (double)x[i] * x[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

#ifdef HAVE_VMATH_X86
__attribute__((target("avx2"))) static double sumsq_avx2(const float *x, size_t n)
{
    return sumsq_lanes(x, n);
}
#endif

double kp_sumsq(const float *x, size_t n)
{
#ifdef HAVE_VMATH_X86
    if (__builtin_cpu_supports("avx2")) return sumsq_avx2(x, n);
#endif
    return sumsq_lanes(x, n);
}

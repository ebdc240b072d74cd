/* topk.c - threshold buffer + quickselect top-k selection with de-dup (see topk.h). */
#include "model/topk.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

int kp_hit_better(float sa, int ia, float sb, int ib)
{
    return sa > sb || (sa == sb && ia < ib);
}

int kp_hit_cmp_desc(const void *x, const void *y)
{
    const kp_hit *a = x, *b = y;
    if (kp_hit_better(a->s, a->id, b->s, b->id)) return -1;
    if (kp_hit_better(b->s, b->id, a->s, a->id)) return 1;
    return 0;
}

void kp_topk_write(const kp_hit *h, int nh, int k, int *ids, float *scores, int *count)
{
    for (int i = 0; i < k; i++) {
        ids[i] = i < nh ? h[i].id : -1;
        scores[i] = i < nh ? h[i].s : 0.0f;
    }
    *count = nh;
}

static int hbits_for(int cap)
{
    int b = 1;
    while ((1 << b) < 2 * cap)
        b++;
    return b;
}

kp_topk_cfg kp_topk_config(int kk, int cap, const uint64_t *keys)
{
    kp_topk_cfg c = {kk, cap > kk ? cap : 2 * kk + 64, 0, keys};
    c.hbits = keys ? hbits_for(c.cap) : 0;
    return c;
}

size_t kp_topk_bytes(const kp_topk_cfg *c)
{
    size_t tab = c->keys ? ((size_t)1 << c->hbits) * sizeof(int) : 0;
    size_t b = (size_t)c->cap * sizeof(kp_hit) + tab;
    return (b + sizeof(kp_hit) - 1) / sizeof(kp_hit) * sizeof(kp_hit);
}

void kp_topk_init(kp_topk *s, const kp_topk_cfg *c, void *mem, float min_score)
{
    s->buf = mem;
    s->tab = c->keys ? (int *)(s->buf + c->cap) : NULL;
    s->m = 0, s->full = 0, s->thr = min_score;
    if (c->keys) memset(s->tab, 0xff, sizeof(int) << c->hbits);
}

static uint32_t key_slot(uint64_t key, int hbits)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - hbits));
}

/* Slot in tab holding key, or the empty slot where it goes. */
static uint32_t tab_find(const kp_topk *s, const kp_topk_cfg *c, uint64_t key)
{
    uint32_t mask = (1u << c->hbits) - 1u, h = key_slot(key, c->hbits);
    while (s->tab[h] >= 0 && c->keys[s->buf[s->tab[h]].id] != key)
        h = (h + 1) & mask;
    return h;
}

static void swap_hit(kp_hit *a, kp_hit *b)
{
    kp_hit t = *a;
    *a = *b;
    *b = t;
}

/* Reorders a[0..n) so that a[0..t] are the t+1 best and a[t] is the (t+1)-th: quickselect with a
 * branch-free Lomuto partition (the comparisons are unpredictable). */
static void select_nth(kp_hit *a, int n, int t)
{
    int lo = 0, hi = n - 1;
    while (hi > lo) {
        int mid = lo + (hi - lo) / 2;
        /* median of three goes to a[hi] as the pivot */
        if (kp_hit_better(a[mid].s, a[mid].id, a[lo].s, a[lo].id)) swap_hit(&a[mid], &a[lo]);
        if (kp_hit_better(a[hi].s, a[hi].id, a[lo].s, a[lo].id)) swap_hit(&a[hi], &a[lo]);
        if (kp_hit_better(a[mid].s, a[mid].id, a[hi].s, a[hi].id)) swap_hit(&a[hi], &a[mid]);
        kp_hit pv = a[hi];
        int st = lo;
        for (int i = lo; i < hi; i++) {
            kp_hit x = a[i];
            int c = (x.s > pv.s) | ((x.s == pv.s) & (x.id < pv.id));
            a[i] = a[st];
            a[st] = x;
            st += c;
        }
        swap_hit(&a[st], &a[hi]);
        if (t == st) return;
        if (t < st)
            hi = st - 1;
        else
            lo = st + 1;
    }
}

static int g_simd = KP_TOPK_SIMD_BEST; /* kp_topk_set_simd */

void kp_topk_set_simd(int level)
{
    g_simd = level < KP_TOPK_SIMD_PLAIN  ? KP_TOPK_SIMD_PLAIN
             : level > KP_TOPK_SIMD_BEST ? KP_TOPK_SIMD_BEST
                                         : level;
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define TOPK_X86 1 /* the AVX-512 and AVX2 kernels, chosen at run time */

static int use_avx512(void)
{
    return g_simd >= KP_TOPK_SIMD_BEST && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512vl");
}

static int use_avx2(void)
{
    return g_simd >= KP_TOPK_SIMD_AVX2 && __builtin_cpu_supports("avx2");
}

/* The hits of the vector select at most (its three scratch parts live on the stack). */
#define VSELECT_MAX 1024

/* The scalar end of a split: a[i..n) after the parts' first cg, ce, cl; writes the counts. */
static void split3_tail(const kp_hit *a, int i, int n, float pv, kp_hit *g, kp_hit *e, kp_hit *l,
                        int cg, int ce, int cl, int *ng, int *ne, int *nl)
{
    for (; i < n; i++) {
        if (a[i].s > pv)
            g[cg++] = a[i];
        else if (a[i].s == pv)
            e[ce++] = a[i];
        else
            l[cl++] = a[i];
    }
    *ng = cg, *ne = ce, *nl = cl;
}

/* Splits a[0..n) by score against pv into g (> pv), e (== pv) and l (< pv, or NaN), in order;
 * writes the counts. Eight hits (score in the low half of each 64-bit lane) per compare and
 * three compresses, each stored whole: a part's count before a store is at most i, so the store
 * ends at i + 8 <= n and each part needs n slots, no slack. */
__attribute__((target("avx512f,avx512vl,popcnt"))) static void
split3_avx512(const kp_hit *a, int n, float pv, kp_hit *g, kp_hit *e, kp_hit *l, int *ng, int *ne,
              int *nl)
{
    const __m256 p = _mm256_set1_ps(pv);
    int cg = 0, ce = 0, cl = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512i v = _mm512_loadu_si512((const void *)(a + i));
        __m256 sc = _mm256_castsi256_ps(_mm512_cvtepi64_epi32(v)); /* the 8 scores */
        __mmask8 mg = _mm256_cmp_ps_mask(sc, p, _CMP_GT_OQ);
        __mmask8 me = _mm256_cmp_ps_mask(sc, p, _CMP_EQ_OQ);
        __mmask8 ml = (__mmask8) ~(mg | me);
        _mm512_storeu_si512((void *)(g + cg), _mm512_maskz_compress_epi64(mg, v));
        _mm512_storeu_si512((void *)(e + ce), _mm512_maskz_compress_epi64(me, v));
        _mm512_storeu_si512((void *)(l + cl), _mm512_maskz_compress_epi64(ml, v));
        cg += __builtin_popcount(mg), ce += __builtin_popcount(me), cl += __builtin_popcount(ml);
    }
    split3_tail(a, i, n, pv, g, e, l, cg, ce, cl, ng, ne, nl);
}

/* PERM64[m]: the permutevar8x32 indices moving the 64-bit lanes set in m (4 bits) to the front
 * in order (the lanes after them: don't care). */
static const int32_t PERM64[16][8] = {
    {0, 1, 0, 0, 0, 0, 0, 0}, {0, 1, 0, 0, 0, 0, 0, 0}, {2, 3, 0, 0, 0, 0, 0, 0},
    {0, 1, 2, 3, 0, 0, 0, 0}, {4, 5, 0, 0, 0, 0, 0, 0}, {0, 1, 4, 5, 0, 0, 0, 0},
    {2, 3, 4, 5, 0, 0, 0, 0}, {0, 1, 2, 3, 4, 5, 0, 0}, {6, 7, 0, 0, 0, 0, 0, 0},
    {0, 1, 6, 7, 0, 0, 0, 0}, {2, 3, 6, 7, 0, 0, 0, 0}, {0, 1, 2, 3, 6, 7, 0, 0},
    {4, 5, 6, 7, 0, 0, 0, 0}, {0, 1, 4, 5, 6, 7, 0, 0}, {2, 3, 4, 5, 6, 7, 0, 0},
    {0, 1, 2, 3, 4, 5, 6, 7}};

/* split3_avx512 with AVX2: four hits per compare, each score copied over its id (moveldup) so a
 * lane's compare is its sign bit (movemask_pd); three permutes by PERM64, each part stored whole
 * (the same bound: a part's count before a store is at most i, the store ends at i + 4 <= n). */
__attribute__((target("avx2,popcnt"))) static void split3_avx2(const kp_hit *a, int n, float pv,
                                                               kp_hit *g, kp_hit *e, kp_hit *l,
                                                               int *ng, int *ne, int *nl)
{
    const __m256 p = _mm256_set1_ps(pv);
    int cg = 0, ce = 0, cl = 0, i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(a + i));
        __m256 sc = _mm256_moveldup_ps(_mm256_castsi256_ps(v)); /* each score twice */
        int mg = _mm256_movemask_pd(_mm256_castps_pd(_mm256_cmp_ps(sc, p, _CMP_GT_OQ)));
        int me = _mm256_movemask_pd(_mm256_castps_pd(_mm256_cmp_ps(sc, p, _CMP_EQ_OQ)));
        int ml = ~(mg | me) & 15;
        _mm256_storeu_si256(
            (__m256i *)(g + cg),
            _mm256_permutevar8x32_epi32(v, _mm256_loadu_si256((const __m256i *)PERM64[mg])));
        _mm256_storeu_si256(
            (__m256i *)(e + ce),
            _mm256_permutevar8x32_epi32(v, _mm256_loadu_si256((const __m256i *)PERM64[me])));
        _mm256_storeu_si256(
            (__m256i *)(l + cl),
            _mm256_permutevar8x32_epi32(v, _mm256_loadu_si256((const __m256i *)PERM64[ml])));
        cg += __builtin_popcount((unsigned)mg), ce += __builtin_popcount((unsigned)me);
        cl += __builtin_popcount((unsigned)ml);
    }
    split3_tail(a, i, n, pv, g, e, l, cg, ce, cl, ng, ne, nl);
}

typedef void (*split3_fn)(const kp_hit *a, int n, float pv, kp_hit *g, kp_hit *e, kp_hit *l,
                          int *ng, int *ne, int *nl);

/* a[0..kk) <- the kk best of a[0..n) (score, then the lower id: the set select_nth(a, n, kk - 1)
 * puts there), in no particular order; a[kk..n) is left clobbered (n <= VSELECT_MAX, 1 <= kk < n).
 * Quickselect on the scores alone, three-way by split (split3_avx512 or split3_avx2): the hits
 * above the pivot, equal to it, below it; a tie across the kk-th place is settled by id among the
 * equal ones (select_nth on them). */
static void select_top_vec(kp_hit *a, int n, int kk, split3_fn split)
{
    kp_hit g[VSELECT_MAX], e[VSELECT_MAX], l[VSELECT_MAX];
    int kept = 0, m = n, need = kk; /* a[0..kept) are in; the rest is among a[kept..kept+m) */
    while (m > 32) {
        kp_hit *r = a + kept;
        float x = r[0].s, y = r[m / 2].s, z = r[m - 1].s; /* median of three */
        float pv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        if (pv != pv) break; /* a NaN pivot splits nothing: the scalar select takes it */
        int ng, ne, nl;
        split(r, m, pv, g, e, l, &ng, &ne, &nl);
        memcpy(r, g, sizeof *g * (size_t)ng);
        if (need <= ng) {
            m = ng;
            continue;
        }
        if (need <= ng + ne) {
            int t = need - ng;
            if (t < ne) select_nth(e, ne, t - 1);
            memcpy(r + ng, e, sizeof *e * (size_t)t);
            return;
        }
        memcpy(r + ng, e, sizeof *e * (size_t)ne);
        memcpy(r + ng + ne, l, sizeof *l * (size_t)nl);
        kept += ng + ne, need -= ng + ne, m = nl;
    }
    if (need < m) select_nth(a + kept, m, need - 1);
}
#endif

/* a[0..kk) <- the kk best of a[0..n) (kk < n), in any order (a[kk..n) clobbered); returns the
 * kk-th best score. */
static float select_top(kp_hit *a, int n, int kk)
{
#ifdef TOPK_X86
    split3_fn split = n > VSELECT_MAX ? NULL
                      : use_avx512()  ? split3_avx512
                      : use_avx2()    ? split3_avx2
                                      : NULL;
    if (split) {
        select_top_vec(a, n, kk, split);
        float t = a[0].s;
        for (int j = 1; j < kk; j++)
            t = a[j].s < t ? a[j].s : t;
        return t;
    }
#endif
    select_nth(a, n, kk - 1);
    return a[kk - 1].s;
}

void kp_topk_reduce(kp_topk *s, const kp_topk_cfg *c)
{
    if (s->m <= c->kk) return;
    s->thr = select_top(s->buf, s->m, c->kk);
    s->m = c->kk;
    s->full = 1;
    if (!c->keys) return;
    memset(s->tab, 0xff, sizeof(int) << c->hbits);
    for (int j = 0; j < s->m; j++)
        s->tab[tab_find(s, c, c->keys[s->buf[j].id])] = j;
}

void kp_topk_push(kp_topk *s, const kp_topk_cfg *c, float v, int id)
{
    if (c->keys) {
        uint32_t h = tab_find(s, c, c->keys[id]);
        if (s->tab[h] >= 0) {
            kp_hit *o = &s->buf[s->tab[h]];
            if (kp_hit_better(v, id, o->s, o->id)) o->s = v, o->id = id;
            return;
        }
        s->tab[h] = s->m;
    }
    s->buf[s->m].s = v, s->buf[s->m].id = id;
    if (++s->m == c->cap) kp_topk_reduce(s, c);
}

/* Bit j set if r[j] >= thr (j < 16; NaN never). */
static unsigned mask16(const float *r, float thr)
{
#ifdef __SSE2__
    __m128 t = _mm_set1_ps(thr);
    unsigned m0 = (unsigned)_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(r), t));
    unsigned m1 = (unsigned)_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(r + 4), t));
    unsigned m2 = (unsigned)_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(r + 8), t));
    unsigned m3 = (unsigned)_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(r + 12), t));
    return m0 | m1 << 4 | m2 << 8 | m3 << 12;
#else
    unsigned m = 0;
    for (int j = 0; j < 16; j++)
        m |= (unsigned)(r[j] >= thr) << j;
    return m;
#endif
}

/* Reorders a[0..n) so that a[t] is the (t+1)-th largest, returns it (quickselect, n >= 1). */
static float nth_largest(float *a, int n, int t)
{
    int lo = 0, hi = n - 1;
    while (hi > lo) {
        float pv = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pv)
                i++;
            while (a[j] < pv)
                j--;
            if (i <= j) {
                float x = a[i];
                a[i++] = a[j];
                a[j--] = x;
            }
        }
        if (t <= j)
            hi = j;
        else if (t >= i)
            lo = i;
        else
            break;
    }
    return a[t];
}

#define BOUND_MAX_GROUPS 1024

/* A lower bound of the kk-th best score of row[0..len): split into ng disjoint groups (strided:
 * group j is row[j], row[j + ng], ...), the kk-th largest of the group maxima, because kk groups
 * each hold a score at least that high. -INFINITY when row is too short to help (fewer than 2
 * scores per group). NaN is never a group's maximum. Only valid without de-dup: distinct scores
 * are not distinct keys. */
static float kk_bound(const float *row, int len, int kk)
{
    int ng = (2 * kk + 15) / 16 * 16;
    if (kk <= 0 || ng > BOUND_MAX_GROUPS || len < 2 * ng) return -INFINITY;
    float mx[BOUND_MAX_GROUPS];
    int chunks = len / ng;
    for (int j = 0; j < ng; j++)
        mx[j] = -INFINITY;
    for (int ch = 0; ch < chunks; ch++) {
        const float *r = row + (size_t)ch * ng;
#ifdef __SSE2__
        for (int j = 0; j < ng; j += 4) /* maxps keeps its second operand when the first is NaN */
            _mm_storeu_ps(mx + j, _mm_max_ps(_mm_loadu_ps(r + j), _mm_loadu_ps(mx + j)));
#else
        for (int j = 0; j < ng; j++)
            if (r[j] > mx[j]) mx[j] = r[j];
#endif
    }
    return nth_largest(mx, ng, kk - 1);
}

#define SCAN_CHUNK 256

#ifdef __SSE2__
/* NIB_POS[m]: the positions of m's set bits (4-bit m), lowest first, zero-padded. */
static const int32_t NIB_POS[16][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}, {1, 0, 0, 0}, {0, 1, 0, 0},
                                       {2, 0, 0, 0}, {0, 2, 0, 0}, {1, 2, 0, 0}, {0, 1, 2, 0},
                                       {3, 0, 0, 0}, {0, 3, 0, 0}, {1, 3, 0, 0}, {0, 1, 3, 0},
                                       {2, 3, 0, 0}, {0, 2, 3, 0}, {1, 2, 3, 0}, {0, 1, 2, 3}};
#endif

/* Writes base + j for each j in [0, 16) with r[j] >= thr (NaN never) to out, in increasing order,
 * returns how many; writes up to 16 ints past out whatever the count. No branch on the data: a
 * sparse, unpredictable hit pattern costs no branch misses. */
static int compact16(const float *r, float thr, int base, int32_t *out)
{
    int n = 0;
#ifdef __SSE2__
    unsigned m = mask16(r, thr);
    for (int q = 0; q < 4; q++, m >>= 4) {
        unsigned b = m & 15u;
        __m128i pos = _mm_loadu_si128((const __m128i *)NIB_POS[b]);
        _mm_storeu_si128((__m128i *)(out + n), _mm_add_epi32(pos, _mm_set1_epi32(base + 4 * q)));
        n += (int)((0x4332322132212110ull >> (4 * b)) & 15u); /* popcount of b */
    }
#else
    for (int j = 0; j < 16; j++) {
        out[n] = base + j;
        n += r[j] >= thr;
    }
#endif
    return n;
}

/* compact16 over r[0..len) (len a multiple of 16), positions from base; returns the count. */
static int compact_portable(const float *r, int len, float thr, int base, int32_t *out)
{
    int n = 0;
    for (int i = 0; i < len; i += 16)
        n += compact16(r + i, thr, base + i, out + n);
    return n;
}

#ifdef TOPK_X86
/* The same with AVX-512: one compare to a mask and one compress per 16 scores (compressed in a
 * register and stored whole: a masked compress-store to memory is slow on some CPUs). */
__attribute__((target("avx512f,popcnt"))) static int
compact_avx512(const float *r, int len, float thr, int base, int32_t *out)
{
    __m512 t = _mm512_set1_ps(thr);
    __m512i idx =
        _mm512_add_epi32(_mm512_set1_epi32(base),
                         _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i step = _mm512_set1_epi32(16);
    int n = 0;
    for (int i = 0; i < len; i += 16) {
        __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(r + i), t, _CMP_GE_OQ);
        _mm512_storeu_si512((void *)(out + n), _mm512_maskz_compress_epi32(m, idx));
        n += __builtin_popcount((unsigned)m);
        idx = _mm512_add_epi32(idx, step);
    }
    return n;
}

/* BYTE_POS4[m]: the positions of m's set bits (4-bit m), lowest first, a byte each, zero-padded. */
static const uint32_t BYTE_POS4[16] = {
    0x00000000, 0x00000000, 0x00000001, 0x00000100, 0x00000002, 0x00000200, 0x00000201, 0x00020100,
    0x00000003, 0x00000300, 0x00000301, 0x00030100, 0x00000302, 0x00030200, 0x00030201, 0x03020100};

/* The same with AVX2: one compare and one movemask per 8 scores; the positions of the 8-bit mask
 * are two BYTE_POS4 words joined (the high nibble's, + 4, after the low one's count of bytes),
 * widened to 8 ints and stored whole. */
__attribute__((target("avx2,popcnt"))) static int compact_avx2(const float *r, int len, float thr,
                                                               int base, int32_t *out)
{
    __m256 t = _mm256_set1_ps(thr);
    int n = 0;
    for (int i = 0; i < len; i += 8) {
        unsigned m =
            (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(r + i), t, _CMP_GE_OQ));
        unsigned lo = m & 15u, hi = m >> 4;
        uint64_t pos = (uint64_t)BYTE_POS4[lo] | (uint64_t)(BYTE_POS4[hi] + 0x04040404u)
                                                     << (8 * __builtin_popcount(lo));
        __m256i p = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)pos));
        _mm256_storeu_si256((__m256i *)(out + n), _mm256_add_epi32(p, _mm256_set1_epi32(base + i)));
        n += __builtin_popcount(m);
    }
    return n;
}
#endif

static int compact(const float *r, int len, float thr, int base, int32_t *out)
{
#ifdef TOPK_X86
    if (use_avx512()) return compact_avx512(r, len, thr, base, out);
    if (use_avx2()) return compact_avx2(r, len, thr, base, out);
#endif
    return compact_portable(r, len, thr, base, out);
}

/* The scan of both orders, a chunk of SCAN_CHUNK scores at a time: the positions reaching the
 * threshold (as it was at the chunk's start) are compacted without branches (compact16), then
 * offered in order, each checked again (the threshold may have risen since). ids NULL: id0 + i,
 * increasing (a tie with a full buffer loses); else ids[i], any order (a tie is offered). */
static void scan(kp_topk *s, const kp_topk_cfg *c, const float *row, int len, int id0,
                 const int *ids)
{
    if (!s->full && s->m == 0 && !c->keys) { /* start from a lower bound of the kk-th best */
        float b = kk_bound(row, len, c->kk);
        if (b > s->thr) s->thr = b;
    }
    float thr = s->thr;
    int strict = s->full && !ids;
    int32_t cand[SCAN_CHUNK + 16];
    for (int i0 = 0; i0 < len; i0 += SCAN_CHUNK) {
        int e = len - i0 < SCAN_CHUNK ? len : i0 + SCAN_CHUNK, w = (e - i0) & ~15, i = i0 + w;
        int n = compact(row + i0, w, thr, i0, cand);
        for (; i < e; i++) {
            cand[n] = i;
            n += row[i] >= thr;
        }
        for (int a = 0; a < n; a++) {
            int j = cand[a];
            float v = row[j];
            if (strict ? v > thr : v >= thr) {
                kp_topk_push(s, c, v, ids ? ids[j] : id0 + j);
                thr = s->thr, strict = s->full && !ids;
            }
        }
    }
}

void kp_topk_scan(kp_topk *s, const kp_topk_cfg *c, const float *row, int len, int id0)
{
    scan(s, c, row, len, id0, NULL);
}

void kp_topk_scan_ids(kp_topk *s, const kp_topk_cfg *c, const float *row, int len, const int *ids)
{
    scan(s, c, row, len, 0, ids);
}

/* Sorts a[0..n) best first; for the few hits a finish holds, cheaper than qsort's calls. */
#define INSERTION_MAX 128
static void insertion_sort(kp_hit *a, int n)
{
    for (int i = 1; i < n; i++) {
        kp_hit x = a[i];
        int j = i;
        for (; j > 0 && kp_hit_better(x.s, x.id, a[j - 1].s, a[j - 1].id); j--)
            a[j] = a[j - 1];
        a[j] = x;
    }
}

void kp_topk_finish(kp_topk *s, const kp_topk_cfg *c, int k, int *ids, float *scores, int *count)
{
    kp_topk_reduce(s, c);
    if (s->m <= INSERTION_MAX)
        insertion_sort(s->buf, s->m);
    else
        qsort(s->buf, (size_t)s->m, sizeof(kp_hit), kp_hit_cmp_desc);
    kp_topk_write(s->buf, s->m, k, ids, scores, count);
}

/* topk.c - threshold buffer + quickselect top-k selection with de-dup (see topk.h). */
#include "model/topk.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif
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

void kp_topk_reduce(kp_topk *s, const kp_topk_cfg *c)
{
    if (s->m <= c->kk) return;
    select_nth(s->buf, s->m, c->kk - 1);
    s->m = c->kk;
    s->full = 1;
    s->thr = s->buf[c->kk - 1].s;
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

static int lowest_bit(unsigned m)
{
#if defined(__GNUC__)
    return __builtin_ctz(m);
#else
    int j = 0;
    while (!(m & 1u))
        m >>= 1, j++;
    return j;
#endif
}

/* The scan of both orders: blocks of 16 are tested at once against the threshold (SIMD compare ->
 * bit mask) and only the set bits are visited, so the common case (nothing reaches it) is a few
 * instructions and no branch miss. ids NULL: id0 + i, increasing (a tie with a full buffer
 * loses); else ids[i], any order (a tie is offered). */
static void scan(kp_topk *s, const kp_topk_cfg *c, const float *row, int len, int id0,
                 const int *ids)
{
    float thr = s->thr;
    int strict = s->full && !ids, i = 0;
    for (; i + 16 <= len; i += 16) {
        const float *r = row + i;
        for (unsigned m = mask16(r, thr); m; m &= m - 1) {
            int j = lowest_bit(m);
            float v = r[j];
            if (strict ? v > thr : v >= thr) { /* thr may have risen since the mask was taken */
                kp_topk_push(s, c, v, ids ? ids[i + j] : id0 + i + j);
                thr = s->thr, strict = s->full && !ids;
            }
        }
    }
    for (; i < len; i++) {
        float v = row[i];
        if (strict ? v > thr : v >= thr) {
            kp_topk_push(s, c, v, ids ? ids[i] : id0 + i);
            thr = s->thr, strict = s->full && !ids;
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

void kp_topk_finish(kp_topk *s, const kp_topk_cfg *c, int k, int *ids, float *scores, int *count)
{
    kp_topk_reduce(s, c);
    qsort(s->buf, (size_t)s->m, sizeof(kp_hit), kp_hit_cmp_desc);
    kp_topk_write(s->buf, s->m, k, ids, scores, count);
}

/* index.c - exact top-K by tiled sgemm + threshold scan + quickselect, Matryoshka prefix pass,
 * de-dup (see index.h). */
#include "model/index.h"

#include <cblas.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct kp_index {
    int n, dim, cand_factor, query_tile, key_block;
    int cap;        /* rows allocated in emb, keys and every pre[p] (kp_index_add grows it) */
    float *emb;     /* [n x dim] */
    uint64_t *keys; /* [n] or NULL */
    /* [dim]: pre[p] = the key prefixes [n x p] normalised, built on first use (NULL before) */
    _Atomic(float *) *pre;
};

typedef struct {
    float s;
    int id;
} hit;

kp_index *kp_index_new(const float *emb, int n, int dim, const uint64_t *dedup_keys)
{
    if (n < 0 || dim <= 0 || (n > 0 && !emb)) return NULL;
    kp_index *ix = calloc(1, sizeof(*ix));
    if (!ix) return NULL;
    ix->n = n;
    ix->cap = n;
    ix->dim = dim;
    ix->cand_factor = KP_INDEX_DEFAULT_CAND_FACTOR;
    ix->query_tile = KP_INDEX_DEFAULT_QUERY_TILE;
    ix->key_block = KP_INDEX_DEFAULT_KEY_BLOCK;
    ix->pre = malloc((size_t)dim * sizeof(*ix->pre));
    if (!ix->pre) goto err;
    for (int p = 0; p < dim; p++)
        atomic_init(&ix->pre[p], NULL);
    size_t nf = (size_t)n * (size_t)dim;
    ix->emb = malloc((nf ? nf : 1) * sizeof(float));
    if (!ix->emb) goto err;
    if (nf) memcpy(ix->emb, emb, nf * sizeof(float));
    if (dedup_keys && n > 0) {
        ix->keys = malloc((size_t)n * sizeof(uint64_t));
        if (!ix->keys) goto err;
        memcpy(ix->keys, dedup_keys, (size_t)n * sizeof(uint64_t));
    }
    return ix;
err:
    kp_index_free(ix);
    return NULL;
}

void kp_index_free(kp_index *ix)
{
    if (!ix) return;
    if (ix->pre)
        for (int p = 0; p < ix->dim; p++)
            free(atomic_load(&ix->pre[p]));
    KP_FREE_ALL(ix->pre, ix->emb, ix->keys, ix);
}

int kp_index_size(const kp_index *ix)
{
    return ix ? ix->n : 0;
}

int kp_index_dim(const kp_index *ix)
{
    return ix ? ix->dim : 0;
}

const float *kp_index_row(const kp_index *ix, int i)
{
    if (!ix || i < 0 || i >= ix->n) return NULL;
    return ix->emb + (size_t)i * (size_t)ix->dim;
}

void kp_index_set_cand_factor(kp_index *ix, int c)
{
    if (ix) ix->cand_factor = c < 1 ? 1 : c;
}

/* ---- helpers shared by the fast path and the reference --------------------------------------- */

static float dot_plain(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* 1 / ||key[:p]|| per key (0 for a zero prefix). */
static void prefix_inv_norms(const kp_index *ix, int p, float *out)
{
    for (int i = 0; i < ix->n; i++) {
        const float *r = ix->emb + (size_t)i * ix->dim;
        float nn = sqrtf(dot_plain(r, r, p));
        out[i] = nn > 0.0f ? 1.0f / nn : 0.0f;
    }
}

static int better(float sa, int ia, float sb, int ib)
{
    return sa > sb || (sa == sb && ia < ib);
}

static int cmp_hit_desc(const void *x, const void *y)
{
    const hit *a = x, *b = y;
    if (better(a->s, a->id, b->s, b->id)) return -1;
    if (better(b->s, b->id, a->s, a->id)) return 1;
    return 0;
}

static int check_args(const kp_index *ix, const float *q, int nq, int k, int prefix_dim,
                      const int *ids, const float *scores, const int *counts)
{
    if (!ix || nq < 0 || k <= 0 || prefix_dim < 0 || prefix_dim > ix->dim) return -1;
    if (nq > 0 && (!q || !ids || !scores || !counts)) return -1;
    return 0;
}

static void write_results(const hit *h, int nh, int k, int *ids, float *scores, int *count)
{
    for (int i = 0; i < k; i++) {
        ids[i] = i < nh ? h[i].id : -1;
        scores[i] = i < nh ? h[i].s : 0.0f;
    }
    *count = nh;
}

/* ---- candidate selector (one per query) ----------------------------------------------------
 *
 * Scores above the running threshold are appended to buf [cap]; when it fills, a quickselect keeps
 * the best kk and the threshold becomes the kk-th best score (faiss's "reservoir"). With de-dup
 * keys, buf holds at most one hit per key (tab: open-addressing hash of key -> buf slot, -1 empty)
 * and a hit whose key is held replaces it only if better, so the kk best of buf are the kk best
 * distinct keys. Hits are offered in increasing id order during a scan, so once kk are held a new
 * hit must score strictly above the threshold (an equal score loses the tie to a lower id). */

typedef struct {
    hit *buf; /* [cap] */
    int *tab; /* [1 << hbits] or NULL */
    int m;    /* hits in buf */
    int full; /* kk distinct hits held: thr is the kk-th best score */
    float thr;
} sel;

typedef struct {
    int kk, cap, hbits;
    const uint64_t *keys; /* NULL: no de-dup */
} sel_cfg;

static int hbits_for(int cap)
{
    int b = 1;
    while ((1 << b) < 2 * cap)
        b++;
    return b;
}

static void sel_init(sel *s, const sel_cfg *c, hit *buf, int *tab, float min_score)
{
    s->buf = buf, s->tab = tab, s->m = 0, s->full = 0, s->thr = min_score;
    if (c->keys) memset(tab, 0xff, sizeof(int) << c->hbits);
}

static uint32_t key_slot(uint64_t key, int hbits)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - hbits));
}

/* Slot in tab holding key, or the empty slot where it goes. */
static uint32_t tab_find(const sel *s, const sel_cfg *c, uint64_t key)
{
    uint32_t mask = (1u << c->hbits) - 1u, h = key_slot(key, c->hbits);
    while (s->tab[h] >= 0 && c->keys[s->buf[s->tab[h]].id] != key)
        h = (h + 1) & mask;
    return h;
}

static void swap_hit(hit *a, hit *b)
{
    hit t = *a;
    *a = *b;
    *b = t;
}

/* Reorders a[0..n) so that a[0..t] are the t+1 best (by `better`) and a[t] is the (t+1)-th:
 * quickselect with a branch-free Lomuto partition (the comparisons are unpredictable). */
static void select_nth(hit *a, int n, int t)
{
    int lo = 0, hi = n - 1;
    while (hi > lo) {
        int mid = lo + (hi - lo) / 2;
        /* median of three goes to a[hi] as the pivot */
        if (better(a[mid].s, a[mid].id, a[lo].s, a[lo].id)) swap_hit(&a[mid], &a[lo]);
        if (better(a[hi].s, a[hi].id, a[lo].s, a[lo].id)) swap_hit(&a[hi], &a[lo]);
        if (better(a[mid].s, a[mid].id, a[hi].s, a[hi].id)) swap_hit(&a[hi], &a[mid]);
        hit pv = a[hi];
        int st = lo;
        for (int i = lo; i < hi; i++) {
            hit x = a[i];
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

/* Keeps the kk best hits of buf (if more are held) and raises the threshold to the kk-th. */
static void sel_reduce(sel *s, const sel_cfg *c)
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

/* Offers (v, id), which already passed the threshold test. */
static void sel_push(sel *s, const sel_cfg *c, float v, int id)
{
    if (c->keys) {
        uint32_t h = tab_find(s, c, c->keys[id]);
        if (s->tab[h] >= 0) {
            hit *o = &s->buf[s->tab[h]];
            if (better(v, id, o->s, o->id)) o->s = v, o->id = id;
            return;
        }
        s->tab[h] = s->m;
    }
    s->buf[s->m].s = v, s->buf[s->m].id = id;
    if (++s->m == c->cap) sel_reduce(s, c);
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

/* Offers scores row[0..len) with ids id0.. (increasing, above every id offered before). Blocks
 * of 16 are tested at once against the threshold (SIMD compare -> bit mask), and only the set bits
 * are visited, so the common case (nothing reaches it) is a few instructions and no branch miss. */
static void sel_scan(sel *s, const sel_cfg *c, const float *row, int len, int id0)
{
    float thr = s->thr;
    int full = s->full, i = 0;
    for (; i + 16 <= len; i += 16) {
        const float *r = row + i;
        for (unsigned m = mask16(r, thr); m; m &= m - 1) {
            int j = lowest_bit(m);
            float v = r[j];
            if (full ? v > thr : v >= thr) { /* thr may have risen since the mask was taken */
                sel_push(s, c, v, id0 + i + j);
                thr = s->thr, full = s->full;
            }
        }
    }
    for (; i < len; i++) {
        float v = row[i];
        if (full ? v > thr : v >= thr) {
            sel_push(s, c, v, id0 + i);
            thr = s->thr, full = s->full;
        }
    }
}

/* Sorts the kept hits best first and writes them out. */
static void sel_finish(sel *s, const sel_cfg *c, int k, int *ids, float *scores, int *count)
{
    sel_reduce(s, c);
    qsort(s->buf, (size_t)s->m, sizeof(hit), cmp_hit_desc);
    write_results(s->buf, s->m, k, ids, scores, count);
}

/* ---- Matryoshka prefix matrices (built on first use, shared by all threads) -------------------
 */

/* Rows [from, to) of the prefix matrix m of size p (see prefix_matrix). */
static void prefix_rows(const kp_index *ix, int p, float *m, int from, int to)
{
    for (int i = from; i < to; i++) {
        const float *r = ix->emb + (size_t)i * ix->dim;
        float nn = sqrtf(dot_plain(r, r, p)), inv = nn > 0.0f ? 1.0f / nn : 0.0f;
        for (int j = 0; j < p; j++)
            m[(size_t)i * p + j] = r[j] * inv;
    }
}

/* [n x p]: key prefixes scaled to unit norm (a zero prefix stays zero); cap rows allocated. */
static const float *prefix_matrix(const kp_index *ix, int p)
{
    float *m = atomic_load_explicit(&ix->pre[p], memory_order_acquire);
    if (m) return m;
    m = malloc(((size_t)ix->cap * (size_t)p + 1) * sizeof(float));
    if (!m) return NULL;
    prefix_rows(ix, p, m, 0, ix->n);
    float *expect = NULL;
    if (atomic_compare_exchange_strong_explicit(&ix->pre[p], &expect, m, memory_order_acq_rel,
                                                memory_order_acquire))
        return m;
    free(m); /* another thread built it first */
    return expect;
}

/* ---- storage changes: add, remove (the live inventory) ---------------------------------------
 */

/* Makes room for need rows in emb, keys and every prefix matrix built (doubling). 0 / -1 (OOM:
 * whatever was grown stays valid, cap unchanged until everything is). */
static int grow_rows(kp_index *ix, int need)
{
    if (need <= ix->cap) return 0;
    int64_t nc = ix->cap > 16 ? ix->cap : 16;
    while (nc < need)
        nc *= 2;
    if (nc > INT32_MAX) nc = INT32_MAX;
    float *e = realloc(ix->emb, (size_t)nc * (size_t)ix->dim * sizeof(float));
    if (!e) return -1;
    ix->emb = e;
    if (ix->keys) {
        uint64_t *k = realloc(ix->keys, (size_t)nc * sizeof(uint64_t));
        if (!k) return -1;
        ix->keys = k;
    }
    for (int p = 1; p < ix->dim; p++) {
        float *m = atomic_load(&ix->pre[p]);
        if (!m) continue;
        float *g = realloc(m, ((size_t)nc * (size_t)p + 1) * sizeof(float));
        if (!g) return -1;
        atomic_store(&ix->pre[p], g);
    }
    ix->cap = (int)nc;
    return 0;
}

int kp_index_reserve(kp_index *ix, int n)
{
    if (!ix || n < 0) return -1;
    return grow_rows(ix, n);
}

int kp_index_add(kp_index *ix, const float *emb, int n, const uint64_t *dedup_keys)
{
    if (!ix || n < 0 || (n > 0 && !emb) || n > INT32_MAX - ix->n) return -1;
    if (n == 0) return 0;
    if (dedup_keys ? (!ix->keys && ix->n > 0) : ix->keys != NULL) return -1;
    if (grow_rows(ix, ix->n + n)) return -1;
    if (dedup_keys && !ix->keys) { /* the first keys of an index created empty */
        if (!(ix->keys = malloc((size_t)(ix->cap > 0 ? ix->cap : 1) * sizeof(uint64_t)))) return -1;
    }
    memcpy(ix->emb + (size_t)ix->n * (size_t)ix->dim, emb,
           (size_t)n * (size_t)ix->dim * sizeof(float));
    if (dedup_keys) memcpy(ix->keys + ix->n, dedup_keys, (size_t)n * sizeof(uint64_t));
    for (int p = 1; p < ix->dim; p++) {
        float *m = atomic_load(&ix->pre[p]);
        if (m) prefix_rows(ix, p, m, ix->n, ix->n + n);
    }
    ix->n += n;
    return 0;
}

int kp_index_remove(kp_index *ix, int i)
{
    if (!ix || i < 0 || i >= ix->n) return -1;
    int last = ix->n - 1, d = ix->dim;
    if (i != last) {
        memcpy(ix->emb + (size_t)i * d, ix->emb + (size_t)last * d, (size_t)d * sizeof(float));
        if (ix->keys) ix->keys[i] = ix->keys[last];
        for (int p = 1; p < d; p++) {
            float *m = atomic_load(&ix->pre[p]);
            if (m) memcpy(m + (size_t)i * p, m + (size_t)last * p, (size_t)p * sizeof(float));
        }
    }
    ix->n = last;
    return last;
}

/* ---- fast path ------------------------------------------------------------------------------- */

void kp_index_set_tiles(kp_index *ix, int query_tile, int key_block)
{
    if (!ix) return;
    ix->query_tile = query_tile > 0 ? query_tile : KP_INDEX_DEFAULT_QUERY_TILE;
    ix->key_block = key_block > 0 ? key_block : KP_INDEX_DEFAULT_KEY_BLOCK;
}

/* Buffer size of a selector keeping kk: larger = fewer selects but a staler threshold. */
static int sel_cap(int kk)
{
    return 2 * kk + 64;
}

int kp_index_topk(const kp_index *ix, const float *q, int nq, int k, float min_score,
                  int prefix_dim, int *ids, float *scores, int *counts)
{
    if (check_args(ix, q, nq, k, prefix_dim, ids, scores, counts) != 0) return -1;
    if (nq == 0) return 0;
    int n = ix->n, dim = ix->dim;
    int p = (prefix_dim == dim) ? 0 : prefix_dim;
    if (n == 0) {
        for (int i = 0; i < nq; i++)
            write_results(NULL, 0, k, ids + (size_t)i * k, scores + (size_t)i * k, counts + i);
        return 0;
    }
    const float *pre = p > 0 ? prefix_matrix(ix, p) : NULL;
    if (p > 0 && !pre) return -1;
    int kk = k < n ? k : n;
    int cand = kk;
    if (p > 0) cand = (int)((int64_t)ix->cand_factor * kk < n ? (int64_t)ix->cand_factor * kk : n);
    /* first pass: exact (kk, de-dup, min_score) or prefix (cand, neither) */
    sel_cfg c1 = {cand, sel_cap(cand), 0, p > 0 ? NULL : ix->keys};
    c1.hbits = c1.keys ? hbits_for(c1.cap) : 0;
    /* second pass of the prefix mode: the cand rescored hits, no reduce before the end */
    sel_cfg c2 = {kk, cand + 1, 0, ix->keys};
    c2.hbits = p > 0 && c2.keys ? hbits_for(c2.cap) : 0;
    int qt = nq < ix->query_tile ? nq : ix->query_tile;
    int kb = n < ix->key_block ? n : ix->key_block;
    size_t tab1 = c1.keys ? (size_t)1 << c1.hbits : 0, tab2 = c2.hbits ? (size_t)1 << c2.hbits : 0;
    size_t n_buf = (size_t)qt * c1.cap + (p > 0 ? (size_t)c2.cap : 0);
    size_t bytes = n_buf * sizeof(hit) + (size_t)qt * sizeof(sel) +
                   ((size_t)qt * kb + 1) * sizeof(float) + ((size_t)qt * tab1 + tab2) * sizeof(int);
    void *scratch = malloc(bytes);
    if (!scratch) return -1;
    hit *bufs = scratch, *buf2 = bufs + (size_t)qt * c1.cap;
    sel *sels = (sel *)(bufs + n_buf);
    float *S = (float *)(sels + qt);
    int *tabs = (int *)(S + (size_t)qt * kb + 1), *tab2p = tabs + (size_t)qt * tab1;
    int kdim = p > 0 ? p : dim;
    const float *K = p > 0 ? pre : ix->emb; /* [n x kdim], row stride kdim (p) or dim */
    int ldk = p > 0 ? p : dim;
    for (int q0 = 0; q0 < nq; q0 += qt) {
        int nb = nq - q0 < qt ? nq - q0 : qt;
        for (int b = 0; b < nb; b++)
            sel_init(&sels[b], &c1, bufs + (size_t)b * c1.cap, tabs + (size_t)b * tab1,
                     p > 0 ? -INFINITY : min_score);
        for (int j0 = 0; j0 < n; j0 += kb) {
            int nk = n - j0 < kb ? n - j0 : kb;
            /* S [nb x nk] = Q[q0:q0+nb, :kdim] @ K[j0:j0+nk, :kdim]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nk, kdim, 1.0f,
                        q + (size_t)q0 * dim, dim, K + (size_t)j0 * ldk, ldk, 0.0f, S, nk);
            for (int b = 0; b < nb; b++)
                sel_scan(&sels[b], &c1, S + (size_t)b * nk, nk, j0);
        }
        for (int b = 0; b < nb; b++) {
            size_t o = (size_t)(q0 + b) * k;
            if (p == 0) {
                sel_finish(&sels[b], &c1, k, ids + o, scores + o, counts + q0 + b);
                continue;
            }
            /* rescore the prefix candidates at full size */
            sel *s1 = &sels[b], s2;
            sel_reduce(s1, &c1);
            sel_init(&s2, &c2, buf2, tab2p, min_score);
            const float *qv = q + (size_t)(q0 + b) * dim;
            for (int j = 0; j < s1->m; j++) {
                int id = s1->buf[j].id;
                float v = dot_plain(qv, ix->emb + (size_t)id * dim, dim);
                if (v >= min_score) sel_push(&s2, &c2, v, id);
            }
            sel_finish(&s2, &c2, k, ids + o, scores + o, counts + q0 + b);
        }
    }
    free(scratch);
    return 0;
}

/* ---- reference ------------------------------------------------------------------------------- */

/* Takes hits (sorted best first) in order: score >= min_score, first of each key, at most k. */
static int take_sorted(const kp_index *ix, const hit *all, int na, int k, float min_score, hit *out)
{
    int m = 0;
    for (int i = 0; i < na && m < k; i++) {
        if (!(all[i].s >= min_score)) continue;
        int dup = 0;
        if (ix->keys)
            for (int j = 0; j < m && !dup; j++)
                dup = ix->keys[out[j].id] == ix->keys[all[i].id];
        if (!dup) out[m++] = all[i];
    }
    return m;
}

int kp_index_topk_ref(const kp_index *ix, const float *q, int nq, int k, float min_score,
                      int prefix_dim, int *ids, float *scores, int *counts)
{
    if (check_args(ix, q, nq, k, prefix_dim, ids, scores, counts) != 0) return -1;
    int n = ix->n, dim = ix->dim;
    int p = (prefix_dim == dim) ? 0 : prefix_dim;
    size_t na = (size_t)n + 1;
    hit *all = malloc(na * sizeof(hit)), *out = malloc(((size_t)k + 1) * sizeof(hit));
    float *pinv = malloc(na * sizeof(float));
    if (!all || !out || !pinv) {
        free(all), free(out), free(pinv);
        return -1;
    }
    if (p > 0) prefix_inv_norms(ix, p, pinv);
    int kk = k < n ? k : n;
    int cand = (int)((int64_t)ix->cand_factor * kk < n ? (int64_t)ix->cand_factor * kk : n);
    for (int b = 0; b < nq; b++) {
        const float *qv = q + (size_t)b * dim;
        int m = 0;
        if (p == 0) {
            for (int i = 0; i < n; i++) {
                float s = dot_plain(qv, ix->emb + (size_t)i * dim, dim);
                if (s == s) all[m].s = s, all[m].id = i, m++;
            }
        } else {
            for (int i = 0; i < n; i++) {
                float s = dot_plain(qv, ix->emb + (size_t)i * dim, p) * pinv[i];
                if (s == s) all[m].s = s, all[m].id = i, m++;
            }
            qsort(all, (size_t)m, sizeof(hit), cmp_hit_desc);
            if (m > cand) m = cand;
            int m2 = 0;
            for (int j = 0; j < m; j++) {
                float s = dot_plain(qv, ix->emb + (size_t)all[j].id * dim, dim);
                if (s == s) all[m2].s = s, all[m2].id = all[j].id, m2++;
            }
            m = m2;
        }
        qsort(all, (size_t)m, sizeof(hit), cmp_hit_desc);
        int got = take_sorted(ix, all, m, k, min_score, out);
        write_results(out, got, k, ids + (size_t)b * k, scores + (size_t)b * k, counts + b);
    }
    free(all), free(out), free(pinv);
    return 0;
}

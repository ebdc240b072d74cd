/* index.c - exact top-K by sgemm + bounded heaps, Matryoshka prefix pass, de-dup (see index.h). */
#include "model/index.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct kp_index {
    int n, dim, cand_factor;
    float *emb;     /* [n x dim] */
    uint64_t *keys; /* [n] or NULL */
};

typedef struct {
    float s;
    int id;
} hit;

#define QUERY_CHUNK 32

kp_index *kp_index_new(const float *emb, int n, int dim, const uint64_t *dedup_keys)
{
    if (n < 0 || dim <= 0 || (n > 0 && !emb)) return NULL;
    kp_index *ix = calloc(1, sizeof(*ix));
    if (!ix) return NULL;
    ix->n = n;
    ix->dim = dim;
    ix->cand_factor = KP_INDEX_DEFAULT_CAND_FACTOR;
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
    free(ix->emb);
    free(ix->keys);
    free(ix);
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

/* ---- bounded heap (root = worst kept hit) ---------------------------------------------------- */

static void sift_down(hit *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(h[w].s, h[w].id, h[l].s, h[l].id)) w = l;
        if (r < n && better(h[w].s, h[w].id, h[r].s, h[r].id)) w = r;
        if (w == i) return;
        hit t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void sift_up(hit *h, int i)
{
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!better(h[p].s, h[p].id, h[i].s, h[i].id)) return;
        hit t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* Offers (s, id) to a heap of capacity cap holding *n hits. With keys, a hit whose key is already
 * held replaces it only if better (a key is held at most once). */
static void heap_offer(hit *h, int *n, int cap, float s, int id, const uint64_t *keys)
{
    if (*n == cap && !better(s, id, h[0].s, h[0].id)) return;
    if (keys) {
        uint64_t key = keys[id];
        for (int j = 0; j < *n; j++) {
            if (keys[h[j].id] != key) continue;
            if (better(s, id, h[j].s, h[j].id)) {
                h[j].s = s, h[j].id = id;
                sift_down(h, *n, j);
            }
            return;
        }
    }
    if (*n < cap) {
        h[*n].s = s, h[*n].id = id;
        sift_up(h, (*n)++);
    } else {
        h[0].s = s, h[0].id = id;
        sift_down(h, *n, 0);
    }
}

/* ---- fast path ------------------------------------------------------------------------------- */

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
    int qb = nq < QUERY_CHUNK ? nq : QUERY_CHUNK;
    int kk = k < n ? k : n;
    int cand = kk;
    if (p > 0) cand = (int)((int64_t)ix->cand_factor * kk < n ? (int64_t)ix->cand_factor * kk : n);
    size_t n_s = (size_t)qb * (size_t)n, n_pinv = p > 0 ? (size_t)n : 0;
    size_t n_h = (size_t)kk + (p > 0 ? (size_t)cand : 0);
    void *scratch = malloc((n_s + n_pinv) * sizeof(float) + n_h * sizeof(hit));
    if (!scratch) return -1;
    float *S = scratch, *pinv = S + n_s;
    hit *heap = (hit *)(pinv + n_pinv), *cheap = heap + kk;
    if (p > 0) prefix_inv_norms(ix, p, pinv);
    int kdim = p > 0 ? p : dim;
    for (int q0 = 0; q0 < nq; q0 += qb) {
        int nb = nq - q0 < qb ? nq - q0 : qb;
        /* S [nb x n] = Q[q0:q0+nb, :kdim] @ K[:, :kdim]^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, n, kdim, 1.0f,
                    q + (size_t)q0 * dim, dim, ix->emb, dim, 0.0f, S, n);
        for (int b = 0; b < nb; b++) {
            const float *row = S + (size_t)b * n;
            const float *qv = q + (size_t)(q0 + b) * dim;
            int hn = 0;
            if (p == 0) {
                for (int i = 0; i < n; i++) {
                    float s = row[i];
                    if (!(s >= min_score) || (hn == kk && s < heap[0].s))
                        continue; /* fast reject */
                    heap_offer(heap, &hn, kk, s, i, ix->keys);
                }
            } else {
                int cn = 0;
                for (int i = 0; i < n; i++) {
                    float s = row[i] * pinv[i];
                    if (s != s || (cn == cand && s < cheap[0].s)) continue;
                    heap_offer(cheap, &cn, cand, s, i, NULL);
                }
                for (int j = 0; j < cn; j++) {
                    int id = cheap[j].id;
                    float s = dot_plain(qv, ix->emb + (size_t)id * dim, dim);
                    if (s >= min_score) heap_offer(heap, &hn, kk, s, id, ix->keys);
                }
            }
            qsort(heap, (size_t)hn, sizeof(hit), cmp_hit_desc);
            size_t o = (size_t)(q0 + b) * k;
            write_results(heap, hn, k, ids + o, scores + o, counts + q0 + b);
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

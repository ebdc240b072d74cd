/* index.c - exact top-K by tiled sgemm + threshold scan + quickselect, Matryoshka prefix pass,
 * de-dup (see index.h). */
#include "model/index.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/blas.h"
#include "model/ivf.h"
#include "model/topk.h"

struct kp_index {
    int n, dim, cand_factor, query_tile, key_block;
    int cap;        /* rows allocated in emb, keys and every pre[p] (kp_index_add grows it) */
    float *emb;     /* [n x dim] */
    uint64_t *keys; /* [n] or NULL */
    /* [dim]: pre[p] = the key prefixes [n x p] normalised, built on first use (NULL before) */
    _Atomic(float *) *pre;
    kp_ivf *ivf; /* inverted file (kp_index_set_ivf), or NULL: exact only */
    int nprobe;
    int *pos; /* with ivf: emb is in list order, key i is row pos[i] (row p is key order[p]) */
    const int *order;
    int first_pass, rescore; /* kp_quant_kind of the IVF first pass, candidates per k */
    kp_quant *quant;         /* with ivf and first_pass != FP32: the reduced-precision copy */
};

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
    ix->first_pass = KP_QUANT_FP32;
    ix->rescore = KP_INDEX_DEFAULT_RESCORE;
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

kp_index *kp_index_adopt(float *emb, int n, int dim, const uint64_t *dedup_keys)
{
    kp_index *ix = n >= 0 && (n == 0 || emb) ? kp_index_new(NULL, 0, dim, NULL) : NULL;
    if (!ix) goto err;
    if (dedup_keys && n > 0) {
        ix->keys = malloc((size_t)n * sizeof(uint64_t));
        if (!ix->keys) goto err;
        memcpy(ix->keys, dedup_keys, (size_t)n * sizeof(uint64_t));
    }
    if (n > 0) {
        free(ix->emb);
        ix->emb = emb, ix->n = n, ix->cap = n;
    } else {
        free(emb);
    }
    return ix;
err:
    kp_index_free(ix);
    free(emb);
    return NULL;
}

void kp_index_free(kp_index *ix)
{
    if (!ix) return;
    if (ix->pre)
        for (int p = 0; p < ix->dim; p++)
            free(atomic_load(&ix->pre[p]));
    kp_ivf_free(ix->ivf);
    kp_quant_free(ix->quant);
    KP_FREE_ALL(ix->pre, ix->emb, ix->pos, ix->keys, ix);
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
    return ix->emb + (size_t)(ix->pos ? ix->pos[i] : i) * (size_t)ix->dim;
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
        const float *r = kp_index_row(ix, i);
        float nn = sqrtf(dot_plain(r, r, p));
        out[i] = nn > 0.0f ? 1.0f / nn : 0.0f;
    }
}

static int check_args(const kp_index *ix, const float *q, int nq, int k, int prefix_dim,
                      const int *ids, const float *scores, const int *counts)
{
    if (!ix || nq < 0 || k <= 0 || prefix_dim < 0 || prefix_dim > ix->dim) return -1;
    if (nq > 0 && (!q || !ids || !scores || !counts)) return -1;
    return 0;
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

static void drop_prefixes(kp_index *ix);

/* A live change (add / remove) works on rows in key order: an inverted file is dropped first (its
 * rows put back in key order; the prefix matrices follow the row order, so they go too) and the
 * index answers exactly until kp_index_set_ivf builds one again. 0, or -1 on OOM (unchanged). */
static int ivf_drop(kp_index *ix)
{
    if (!ix->ivf) return 0;
    if (kp_ivf_permute_rows(ix->emb, ix->n, ix->dim, ix->pos) != 0) return -1;
    kp_ivf_free(ix->ivf);
    kp_quant_free(ix->quant);
    free(ix->pos);
    ix->ivf = NULL, ix->pos = NULL, ix->order = NULL, ix->quant = NULL;
    drop_prefixes(ix);
    return 0;
}

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
    if (ivf_drop(ix)) return -1;
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
    if (ivf_drop(ix)) return -1;
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

/* The prefix matrices follow emb's row order: dropped when it changes. */
static void drop_prefixes(kp_index *ix)
{
    for (int p = 0; p < ix->dim; p++)
        free(atomic_exchange(&ix->pre[p], NULL));
}

/* With an ivf and a reduced-precision first pass: builds its copy of the rows (in list order).
 * 0, or -1 on OOM (the ivf then answers from fp32). */
static int quant_build(kp_index *ix)
{
    if (!ix->ivf || ix->first_pass == KP_QUANT_FP32 || ix->quant) return 0;
    ix->quant = kp_quant_build(ix->emb, ix->n, ix->dim, kp_ivf_offsets(ix->ivf),
                               kp_ivf_nlist(ix->ivf), ix->first_pass, 1);
    return ix->quant ? 0 : -1;
}

int kp_index_set_ivf(kp_index *ix, int nlist, int nprobe, uint64_t seed)
{
    if (!ix || nlist < 0 || nprobe < 1) return -1;
    if (ix->n == 0) return 0;
    int *pos = malloc(sizeof(int) * (size_t)ix->n);
    if (!pos) return -1;
    /* back to key order first (a new ivf is built over the keys, not the old list order) */
    if (ix->pos && kp_ivf_permute_rows(ix->emb, ix->n, ix->dim, ix->pos) != 0) goto err;
    KP_FREE_ALL(ix->pos);
    ix->pos = NULL, ix->order = NULL;
    kp_ivf_free(ix->ivf);
    kp_quant_free(ix->quant);
    ix->ivf = NULL, ix->quant = NULL;
    drop_prefixes(ix);
    kp_ivf *v = kp_ivf_build(ix->emb, ix->n, ix->dim, nlist, seed);
    if (!v) goto err;
    const int *order = kp_ivf_ids(v);
    if (kp_ivf_permute_rows(ix->emb, ix->n, ix->dim, order) != 0) {
        kp_ivf_free(v);
        goto err;
    }
    for (int p = 0; p < ix->n; p++)
        pos[order[p]] = p;
    ix->ivf = v, ix->pos = pos, ix->order = order, ix->nprobe = nprobe;
    return quant_build(ix);
err:
    free(pos);
    return -1;
}

int kp_index_set_first_pass(kp_index *ix, int kind, int rescore)
{
    if (!ix || kp_quant_name(kind)[0] == '?' || rescore < 1) return -1;
    ix->rescore = rescore;
    if (kind == ix->first_pass && (kind == KP_QUANT_FP32 || ix->quant || !ix->ivf)) return 0;
    ix->first_pass = kind;
    kp_quant_free(ix->quant);
    ix->quant = NULL;
    return quant_build(ix);
}

const kp_quant *kp_index_quant(const kp_index *ix)
{
    return ix ? ix->quant : NULL;
}

void kp_index_set_nprobe(kp_index *ix, int nprobe)
{
    if (ix && nprobe >= 1) ix->nprobe = nprobe;
}

const kp_ivf *kp_index_ivf(const kp_index *ix)
{
    return ix ? ix->ivf : NULL;
}

/* Keeps of hits h[0..n) (sorted best first) the first of each de-dup key, at most k, in place;
 * returns how many. A small open-addressing table of the keys kept (k <= n <= DEDUP_TAB / 2). */
#define DEDUP_TAB   1024
#define LATE_MARGIN 16
static int dedup_sorted(const uint64_t *keys, kp_hit *h, int n, int k)
{
    int tab[DEDUP_TAB], m = 0, bits = 6; /* a table of >= 2 n slots, cleared only that far */
    while ((1 << bits) < 2 * n)
        bits++;
    uint32_t mask = (1u << bits) - 1u;
    memset(tab, 0xff, sizeof(int) << bits);
    for (int i = 0; i < n && m < k; i++) {
        uint64_t key = keys[h[i].id];
        uint32_t j = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - bits));
        while (tab[j] >= 0 && keys[h[tab[j]].id] != key)
            j = (j + 1) & mask;
        if (tab[j] >= 0) continue; /* a better hit of that key is kept */
        h[m] = h[i];
        tab[j] = m++;
    }
    return m;
}

static int topk_pass(const kp_index *ix, const float *q, int nq, int k, float min_score,
                     int prefix_dim, int late_dedup, int *ids, float *scores, int *counts);

/* kp_index_topk splits its queries in two (kp_par_threads, model/blas.h) from this many on. */
#define TOPK_SPLIT_MIN 16

typedef struct {
    const kp_index *ix;
    const float *q;
    int k;
    float min_score;
    int prefix_dim;
    int *ids;
    float *scores;
    int *counts;
} topk_job;

/* Queries [lo, hi) of a kp_index_topk call (a kp_parallel_for range). */
static int topk_range(void *ctx, int t, int lo, int hi)
{
    (void)t;
    const topk_job *j = ctx;
    size_t o = (size_t)lo * j->k;
    return topk_pass(j->ix, j->q + (size_t)lo * j->ix->dim, hi - lo, j->k, j->min_score,
                     j->prefix_dim, 1, j->ids + o, j->scores + o, j->counts + lo);
}

int kp_index_topk(const kp_index *ix, const float *q, int nq, int k, float min_score,
                  int prefix_dim, int *ids, float *scores, int *counts)
{
    if (check_args(ix, q, nq, k, prefix_dim, ids, scores, counts) != 0) return -1;
    if (nq == 0) return 0;
    /* The exact pass with de-dup keys selects the best k + LATE_MARGIN hits without de-dup (no
     * hash probe per candidate) and de-dups them at the end; a query whose list held fewer than
     * k distinct keys (more than LATE_MARGIN duplicates among its best) is selected again with
     * de-dup during the scan. Both give exactly the de-dup top-k (kp_index_topk_ref). */
    if (nq >= TOPK_SPLIT_MIN && kp_par_threads() > 1 && kp_blas_threads() == 1) {
        /* two halves of the queries on two threads, each its own single-threaded GEMMs */
        topk_job j = {ix, q, k, min_score, prefix_dim, ids, scores, counts};
        return kp_parallel_for(kp_par_threads(), nq, topk_range, &j);
    }
    return topk_pass(ix, q, nq, k, min_score, prefix_dim, 1, ids, scores, counts);
}

static int topk_pass(const kp_index *ix, const float *q, int nq, int k, float min_score,
                     int prefix_dim, int late_dedup, int *ids, float *scores, int *counts)
{
    int n = ix->n, dim = ix->dim;
    int p = (prefix_dim == dim) ? 0 : prefix_dim;
    if (n == 0) {
        for (int i = 0; i < nq; i++)
            kp_topk_write(NULL, 0, k, ids + (size_t)i * k, scores + (size_t)i * k, counts + i);
        return 0;
    }
    if (p == 0 && ix->ivf && ix->nprobe < kp_ivf_nlist(ix->ivf) && ix->quant)
        return kp_ivf_topk_quant(ix->ivf, ix->quant, ix->emb, ix->keys, q, nq, k, min_score,
                                 ix->nprobe, ix->rescore, ids, scores, counts);
    if (p == 0 && ix->ivf && ix->nprobe < kp_ivf_nlist(ix->ivf))
        return kp_ivf_topk(ix->ivf, ix->emb, ix->keys, q, nq, k, min_score, ix->nprobe, ids, scores,
                           counts);
    const float *pre = p > 0 ? prefix_matrix(ix, p) : NULL;
    if (p > 0 && !pre) return -1;
    int kk = k < n ? k : n;
    int cand = kk;
    if (p > 0) cand = (int)((int64_t)ix->cand_factor * kk < n ? (int64_t)ix->cand_factor * kk : n);
    /* late de-dup: the exact pass with keys selects lk hits without de-dup, then de-dups them */
    int late = p == 0 && ix->keys && late_dedup && kk + LATE_MARGIN <= DEDUP_TAB / 2;
    if (late) cand = kk + LATE_MARGIN < n ? kk + LATE_MARGIN : n;
    /* first pass: exact (kk, de-dup, min_score), exact late de-dup (cand, min_score) or prefix
     * (cand, neither) */
    kp_topk_cfg c1 = kp_topk_config(cand, 0, p > 0 || late ? NULL : ix->keys);
    /* second pass of the prefix mode: the cand rescored hits, no reduce before the end */
    kp_topk_cfg c2 = kp_topk_config(kk, cand + 1, ix->keys);
    int qt = nq < ix->query_tile ? nq : ix->query_tile;
    int kb = n < ix->key_block ? n : ix->key_block;
    size_t b1 = kp_topk_bytes(&c1), b2 = p > 0 ? kp_topk_bytes(&c2) : 0;
    if (late)
        b2 = ((size_t)cand * (sizeof(int) + sizeof(float)) + sizeof(kp_hit) - 1) / sizeof(kp_hit) *
             sizeof(kp_hit);
    size_t bytes =
        (size_t)qt * b1 + b2 + (size_t)qt * sizeof(kp_topk) + ((size_t)qt * kb + 1) * sizeof(float);
    char *scratch = malloc(bytes);
    if (!scratch) return -1;
    char *mem1 = scratch, *mem2 = mem1 + (size_t)qt * b1;
    kp_topk *sels = (kp_topk *)(mem2 + b2);
    float *S = (float *)(sels + qt);
    int kdim = p > 0 ? p : dim;
    const float *K = p > 0 ? pre : ix->emb; /* [n x kdim], row stride kdim (p) or dim */
    int ldk = p > 0 ? p : dim;
    for (int q0 = 0; q0 < nq; q0 += qt) {
        int nb = nq - q0 < qt ? nq - q0 : qt;
        for (int b = 0; b < nb; b++)
            kp_topk_init(&sels[b], &c1, mem1 + (size_t)b * b1, p > 0 ? -INFINITY : min_score);
        for (int j0 = 0; j0 < n; j0 += kb) {
            int nk = n - j0 < kb ? n - j0 : kb;
            /* S [nb x nk] = Q[q0:q0+nb, :kdim] @ K[j0:j0+nk, :kdim]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nk, kdim, 1.0f,
                        q + (size_t)q0 * dim, dim, K + (size_t)j0 * ldk, ldk, 0.0f, S, nk);
            for (int b = 0; b < nb; b++)
                if (ix->order) /* rows in list order: row j0 + i is key order[j0 + i] */
                    kp_topk_scan_ids(&sels[b], &c1, S + (size_t)b * nk, nk, ix->order + j0);
                else
                    kp_topk_scan(&sels[b], &c1, S + (size_t)b * nk, nk, j0);
        }
        for (int b = 0; b < nb; b++) {
            size_t o = (size_t)(q0 + b) * k;
            if (late) {
                kp_topk *s1 = &sels[b];
                int *lid = (int *)mem2, got;
                float *lsc = (float *)(lid + cand);
                kp_topk_finish(s1, &c1, cand, lid, lsc, &got);
                /* finish left s1->buf sorted best first: de-dup it in place */
                int m = dedup_sorted(ix->keys, s1->buf, s1->m, kk);
                if (m < kk && s1->m == cand) { /* too many duplicates: select with de-dup */
                    if (topk_pass(ix, q + (size_t)(q0 + b) * dim, 1, k, min_score, prefix_dim, 0,
                                  ids + o, scores + o, counts + q0 + b) != 0) {
                        free(scratch);
                        return -1;
                    }
                    continue;
                }
                kp_topk_write(s1->buf, m, k, ids + o, scores + o, counts + q0 + b);
                continue;
            }
            if (p == 0) {
                kp_topk_finish(&sels[b], &c1, k, ids + o, scores + o, counts + q0 + b);
                continue;
            }
            /* rescore the prefix candidates at full size */
            kp_topk *s1 = &sels[b], s2;
            kp_topk_reduce(s1, &c1);
            kp_topk_init(&s2, &c2, mem2, min_score);
            const float *qv = q + (size_t)(q0 + b) * dim;
            for (int j = 0; j < s1->m; j++) {
                int id = s1->buf[j].id;
                float v = dot_plain(qv, kp_index_row(ix, id), dim);
                if (v >= min_score) kp_topk_push(&s2, &c2, v, id);
            }
            kp_topk_finish(&s2, &c2, k, ids + o, scores + o, counts + q0 + b);
        }
    }
    free(scratch);
    return 0;
}

/* ---- reference ------------------------------------------------------------------------------- */

/* Takes hits (sorted best first) in order: score >= min_score, first of each key, at most k. */
static int take_sorted(const kp_index *ix, const kp_hit *all, int na, int k, float min_score,
                       kp_hit *out)
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
    kp_hit *all = malloc(na * sizeof(kp_hit)), *out = malloc(((size_t)k + 1) * sizeof(kp_hit));
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
                float s = dot_plain(qv, kp_index_row(ix, i), dim);
                if (s == s) all[m].s = s, all[m].id = i, m++;
            }
        } else {
            for (int i = 0; i < n; i++) {
                float s = dot_plain(qv, kp_index_row(ix, i), p) * pinv[i];
                if (s == s) all[m].s = s, all[m].id = i, m++;
            }
            qsort(all, (size_t)m, sizeof(kp_hit), kp_hit_cmp_desc);
            if (m > cand) m = cand;
            int m2 = 0;
            for (int j = 0; j < m; j++) {
                float s = dot_plain(qv, kp_index_row(ix, all[j].id), dim);
                if (s == s) all[m2].s = s, all[m2].id = all[j].id, m2++;
            }
            m = m2;
        }
        qsort(all, (size_t)m, sizeof(kp_hit), kp_hit_cmp_desc);
        int got = take_sorted(ix, all, m, k, min_score, out);
        kp_topk_write(out, got, k, ids + (size_t)b * k, scores + (size_t)b * k, counts + b);
    }
    free(all), free(out), free(pinv);
    return 0;
}

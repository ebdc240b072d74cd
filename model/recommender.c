#include "model/recommender.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/featurize.h"
#include "model/index.h"
#include "common/util.h"

struct kp_recommender {
    kp_bienc *model;
    kp_index *index;
    int n;
    char **ids, **texts; /* point into arena */
    char *arena;
    int prefix_dim;
    float *qbuf; /* scratch: item embeddings, qcap x D */
    int qcap;
    int *sbuf_ids; /* scratch of kp_rec_suggest: scap results */
    float *sbuf_scores;
    size_t scap;
    uint64_t *keys; /* [n] dedup keys */
    int has_pipe;
    kp_pipeline pipe;
    /* pipeline scratch, grown: pcap pairs (items x candidates), bcap BM25 results */
    int *c_id, *c_cnt, *b_id, *b_cnt;
    float *c_raw, *c_p, *b_sc;
    const char **c_item, **c_key;
    size_t pcap, bcap;
    int ccap;     /* items of c_cnt / b_cnt */
    int *ord;     /* [C] per-item order */
    uint64_t *hs; /* dedup set, hcap slots */
    int hcap;
    void (*release)(void *);
    void *release_arg;
};

kp_recommender *kp_rec_new(kp_bienc *m, const char *const *ids, const char *const *texts, int n,
                           int prefix_dim, char *err, size_t errlen)
{
    int D = kp_bienc_cfg(m)->out_dim;
    float *emb = NULL;
    uint64_t *keys = NULL;
    size_t *lens = NULL;
    kp_recommender *r = calloc(1, sizeof *r);
    if (!r || n < 0) goto oom;
    r->model = m;
    r->n = n;
    r->prefix_dim = prefix_dim;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += strlen(ids[i]) + strlen(texts[i]) + 2;
    r->arena = malloc(total + 1);
    r->ids = malloc(sizeof(char *) * (size_t)(n + 1));
    r->texts = malloc(sizeof(char *) * (size_t)(n + 1));
    lens = malloc(sizeof(size_t) * (size_t)(n + 1));
    keys = malloc(sizeof(uint64_t) * (size_t)(n + 1));
    emb = malloc(sizeof(float) * (size_t)(n + 1) * (size_t)D);
    if (!r->arena || !r->ids || !r->texts || !lens || !keys || !emb) goto oom;
    char *p = r->arena;
    for (int i = 0; i < n; i++) {
        size_t a = strlen(ids[i]), b = strlen(texts[i]);
        memcpy(p, ids[i], a + 1);
        r->ids[i] = p;
        p += a + 1;
        memcpy(p, texts[i], b + 1);
        r->texts[i] = p;
        p += b + 1;
        lens[i] = b;
        keys[i] = kp_feat_tokenset_key(texts[i], b);
    }
    /* Embed the inventory in chunks so the scratch memory of the tower stays small. */
    for (int i = 0; i < n; i += 1024) {
        int c = n - i < 1024 ? n - i : 1024;
        if (kp_bienc_embed(m, KP_TOWER_KEY, (const char *const *)r->texts + i, lens + i, c,
                           emb + (size_t)i * (size_t)D))
            goto oom;
    }
    r->index = kp_index_adopt(emb, n, D, keys); /* emb is the index's now, also on error */
    emb = NULL;
    if (!r->index) goto oom;
    r->keys = keys;
    free(lens);
    return r;
oom:
    snprintf(err, errlen, "recommender: out of memory building the index of %d keyphrases", n);
    KP_FREE_ALL(emb, keys, lens);
    if (r) {
        kp_rec_free(r);
    } else {
        kp_bienc_free(m);
    }
    return NULL;
}

int kp_rec_set_ivf(kp_recommender *r, int nlist, int nprobe, uint64_t seed)
{
    return r ? kp_index_set_ivf(r->index, nlist, nprobe, seed) : -1;
}

void kp_rec_free(kp_recommender *r)
{
    if (!r) return;
    kp_bienc_free(r->model);
    kp_index_free(r->index);
    KP_FREE_ALL(r->ids, r->texts, r->arena, r->qbuf, r->sbuf_ids, r->sbuf_scores, r->keys, r->c_id,
                r->c_cnt, r->b_id, r->b_cnt, r->c_raw, r->c_p, r->b_sc, (void *)r->c_item,
                (void *)r->c_key, r->ord, r->hs);
    void (*fn)(void *) = r->release;
    void *arg = r->release_arg;
    free(r);
    if (fn) fn(arg);
}

void kp_rec_set_release(kp_recommender *r, void (*fn)(void *), void *arg)
{
    r->release = fn;
    r->release_arg = arg;
}

int kp_rec_size(const kp_recommender *r)
{
    return r->n;
}

uint64_t kp_rec_version(const kp_recommender *r)
{
    return kp_bienc_version(r->model);
}

const kp_bienc *kp_rec_model(const kp_recommender *r)
{
    return r->model;
}

const char *kp_rec_keyphrase(const kp_recommender *r, int i)
{
    return (i >= 0 && i < r->n) ? r->texts[i] : NULL;
}

const char *kp_rec_keyphrase_id(const kp_recommender *r, int i)
{
    return (i >= 0 && i < r->n) ? r->ids[i] : NULL;
}

int kp_rec_recommend(kp_recommender *r, const char *const *titles, const size_t *lens, int n, int k,
                     float min_score, int *ids, float *scores, int *counts)
{
    if (n <= 0) return n == 0 ? 0 : -1;
    int D = kp_bienc_cfg(r->model)->out_dim;
    if (n > r->qcap) {
        float *q = realloc(r->qbuf, sizeof(float) * (size_t)n * (size_t)D);
        if (!q) return -1;
        r->qbuf = q;
        r->qcap = n;
    }
    if (kp_bienc_embed(r->model, KP_TOWER_ITEM, titles, lens, n, r->qbuf)) return -1;
    return kp_index_topk(r->index, r->qbuf, n, k, min_score, r->prefix_dim, ids, scores, counts);
}

/* Grows the scratch of kp_rec_suggest to hold need results. 0 / -1 (OOM, nothing changed). */
static int grow_suggest_scratch(kp_recommender *r, size_t need)
{
    if (need <= r->scap) return 0;
    int *ids = realloc(r->sbuf_ids, sizeof *ids * need);
    if (!ids) return -1;
    r->sbuf_ids = ids;
    float *sc = realloc(r->sbuf_scores, sizeof *sc * need);
    if (!sc) return -1;
    r->sbuf_scores = sc;
    r->scap = need;
    return 0;
}

int kp_rec_set_pipeline(kp_recommender *r, const kp_pipeline *p, char *err, size_t errlen)
{
    if (!p) {
        r->has_pipe = 0;
        return 0;
    }
    if (p->candidates < 0 || p->candidates > 100000 || p->hybrid < 0 || p->hybrid > 100000) {
        kp_errf(err, errlen, "pipeline: candidates and hybrid must be in 0..100000");
        return -1;
    }
    if (!(p->threshold >= 0 && p->threshold <= 1)) {
        kp_errf(err, errlen, "pipeline: threshold must be in [0, 1]");
        return -1;
    }
    if (p->hybrid > 0 && !p->bm25) {
        kp_errf(err, errlen, "pipeline: hybrid %d needs a BM25 index", p->hybrid);
        return -1;
    }
    if (p->bm25 && kp_bm25_n_docs(p->bm25) != r->n) {
        kp_errf(err, errlen, "pipeline: the BM25 index has %d documents, the inventory %d",
                kp_bm25_n_docs(p->bm25), r->n);
        return -1;
    }
    if (p->calib) {
        kp_calib_input in = kp_calib_get_input(p->calib);
        if (in == KP_CALIB_INPUT_CE && !p->ce) {
            kp_errf(err, errlen,
                    "pipeline: the calibration is of cross-encoder scores, but no "
                    "cross-encoder re-ranks");
            return -1;
        }
        if (in == KP_CALIB_INPUT_BE && p->ce) {
            kp_errf(err, errlen,
                    "pipeline: the calibration is of bi-encoder cosines, but a "
                    "cross-encoder re-ranks (fit one on its scores)");
            return -1;
        }
    }
    r->pipe = *p;
    r->has_pipe = 1;
    return 0;
}

const kp_pipeline *kp_rec_pipeline(const kp_recommender *r)
{
    return r->has_pipe ? &r->pipe : NULL;
}

uint64_t kp_rec_dedup_key(const kp_recommender *r, int i)
{
    return (i >= 0 && i < r->n) ? r->keys[i] : 0;
}

/* Grows the pipeline scratch for n items of C candidates and M BM25 results. 0 / -1. */
static int grow_pipe_scratch(kp_recommender *r, int n, int C, int M)
{
    size_t np = (size_t)n * (size_t)C, nb = (size_t)n * (size_t)(M > 0 ? M : 1);
#define GROWP(f, cnt)                                                                              \
    do {                                                                                           \
        void *q_ = realloc((void *)(f), sizeof *(f) * (cnt));                                      \
        if (!q_) return -1;                                                                        \
        (f) = q_;                                                                                  \
    } while (0)
    if (np > r->pcap) {
        GROWP(r->c_id, np);
        GROWP(r->c_raw, np);
        GROWP(r->c_p, np);
        GROWP(r->c_item, np);
        GROWP(r->c_key, np);
        r->pcap = np;
    }
    if (nb > r->bcap) {
        GROWP(r->b_id, nb);
        GROWP(r->b_sc, nb);
        r->bcap = nb;
    }
    if (n > r->ccap) {
        GROWP(r->c_cnt, (size_t)n);
        GROWP(r->b_cnt, (size_t)n);
        r->ccap = n;
    }
    int hc = 16;
    while (hc < 2 * C)
        hc *= 2;
    if (hc > r->hcap) {
        GROWP(r->hs, (size_t)hc);
        GROWP(r->ord, (size_t)hc);
        r->hcap = hc;
    }
#undef GROWP
    return 0;
}

/* CE scoring of pairs [lo, hi) of the batch (kp_parallel_for range). */
typedef struct {
    const kp_ce *ce;
    const char *const *items, *const *keys;
    float *out;
} ce_job;

static int ce_range(void *ctx, int t, int lo, int hi)
{
    (void)t;
    ce_job *j = ctx;
    return kp_ce_score(j->ce, j->items + lo, j->keys + lo, hi - lo, j->out + lo);
}

static int score_ce(const kp_pipeline *p, const char *const *items, const char *const *keys, int n,
                    float *out)
{
    if (n <= 0) return 0;
    ce_job j = {p->ce, items, keys, out};
    int T = p->ce_threads > 1 ? p->ce_threads : 1;
    if (T > 1 && n >= 256) return kp_parallel_for(T, n, ce_range, &j);
    return kp_ce_score(p->ce, items, keys, n, out);
}

static float dotf(const float *a, const float *b, int D)
{
    float s = 0;
    for (int d = 0; d < D; d++)
        s += a[d] * b[d];
    return s;
}

/* Inserts key into the open-addressing set hs[hcap] (0 is stored as ~0 + ... : keys are
 * remapped so that 0 means empty). Returns 1 if it was new. */
static int set_add(uint64_t *hs, int hcap, uint64_t key)
{
    uint64_t k = key ? key : 0x9e3779b97f4a7c15ull;
    size_t m = (size_t)hcap - 1, i = (size_t)(k * 0x9e3779b97f4a7c15ull >> 17) & m;
    while (hs[i]) {
        if (hs[i] == k) return 0;
        i = (i + 1) & m;
    }
    hs[i] = k;
    return 1;
}

/* Order of candidates: raw score desc, ties by lower keyphrase index. */
static int cand_before(const float *raw, const int *id, int a, int b)
{
    if (raw[a] != raw[b]) return raw[a] > raw[b];
    return id[a] < id[b];
}

/* Insertion sort of ord[0..n) (n is small: N + M). */
static void sort_cands(int *ord, int n, const float *raw, const int *id)
{
    for (int i = 1; i < n; i++) {
        int v = ord[i], j = i - 1;
        while (j >= 0 && cand_before(raw, id, v, ord[j])) {
            ord[j + 1] = ord[j];
            j--;
        }
        ord[j + 1] = v;
    }
}

/* The gate over item i's candidates (row of C): fills out[0..k) and returns the count. */
static int gate_item(kp_recommender *r, int C, int i, int k, kp_rec_suggestion *out)
{
    const kp_pipeline *p = &r->pipe;
    int nc = r->c_cnt[i];
    const float *raw = r->c_raw + (size_t)i * (size_t)C, *pp = r->c_p + (size_t)i * (size_t)C;
    const int *id = r->c_id + (size_t)i * (size_t)C;
    for (int j = 0; j < nc; j++)
        r->ord[j] = j;
    sort_cands(r->ord, nc, raw, id);
    int cnt = 0;
    for (int j = 0; j < nc && cnt < k; j++) {
        int c = r->ord[j];
        if (!isfinite(pp[c]) || !isfinite(raw[c])) continue;
        if (p->threshold > 0 && !(pp[c] >= p->threshold)) continue;
        out[cnt++] = (kp_rec_suggestion){kp_rec_keyphrase_id(r, id[c]), kp_rec_keyphrase(r, id[c]),
                                         pp[c], raw[c]};
    }
    return cnt;
}

static int suggest_pipeline(kp_recommender *r, const char *const *titles, const size_t *lens, int n,
                            int k, float min_score, kp_rec_suggestion *out, int *counts)
{
    const kp_pipeline *p = &r->pipe;
    int D = kp_bienc_cfg(r->model)->out_dim;
    int N = p->candidates > 0 ? p->candidates : k;
    int M = p->bm25 ? p->hybrid : 0;
    int C = N + M;
    if (grow_pipe_scratch(r, n, C, M)) return -1;
    /* 1. BE top-N: one forward, one GEMM per tile; results land at stride C */
    if (grow_suggest_scratch(r, (size_t)n * (size_t)N)) return -1;
    if (kp_rec_recommend(r, titles, lens, n, N, min_score, r->sbuf_ids, r->sbuf_scores, r->c_cnt))
        return -1;
    for (int i = 0; i < n; i++) {
        memcpy(r->c_id + (size_t)i * C, r->sbuf_ids + (size_t)i * N, sizeof(int) * (size_t)N);
        memcpy(r->c_raw + (size_t)i * C, r->sbuf_scores + (size_t)i * N, sizeof(float) * (size_t)N);
    }
    /* 2. BM25 top-M, united (new keyphrases only, by token set), cosine as their BE score */
    if (M > 0) {
        if (kp_bm25_topk_batch(p->bm25, titles, n, M, r->b_id, r->b_sc, r->b_cnt)) return -1;
        for (int i = 0; i < n; i++) {
            int *cid = r->c_id + (size_t)i * C;
            float *craw = r->c_raw + (size_t)i * C;
            memset(r->hs, 0, sizeof *r->hs * (size_t)r->hcap);
            for (int j = 0; j < r->c_cnt[i]; j++)
                set_add(r->hs, r->hcap, r->keys[cid[j]]);
            const float *q = r->qbuf + (size_t)i * (size_t)D;
            for (int j = 0; j < r->b_cnt[i]; j++) {
                int d = r->b_id[(size_t)i * M + j];
                if (!set_add(r->hs, r->hcap, r->keys[d])) continue;
                float cs = dotf(q, kp_index_row(r->index, d), D);
                if (!(cs >= min_score)) continue;
                cid[r->c_cnt[i]] = d;
                craw[r->c_cnt[i]++] = cs;
            }
        }
    }
    /* 3. re-rank: every pair of the batch in one (threaded) CE call */
    if (p->ce) {
        int np = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < r->c_cnt[i]; j++) {
                r->c_item[np] = titles[i];
                r->c_key[np++] = r->texts[r->c_id[(size_t)i * C + j]];
            }
        if (score_ce(p, r->c_item, r->c_key, np, r->c_p)) return -1;
        np = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < r->c_cnt[i]; j++)
                r->c_raw[(size_t)i * C + j] = r->c_p[np++];
    }
    /* 4. calibrate, 5. order + gate */
    for (int i = 0; i < n; i++) {
        float *raw = r->c_raw + (size_t)i * C, *pp = r->c_p + (size_t)i * C;
        if (p->calib)
            kp_calib_apply_n(p->calib, raw, r->c_cnt[i], pp);
        else
            memcpy(pp, raw, sizeof(float) * (size_t)r->c_cnt[i]);
        counts[i] = gate_item(r, C, i, k, out + (size_t)i * (size_t)k);
    }
    return 0;
}

int kp_rec_suggest(kp_recommender *r, const char *const *titles, const size_t *lens, int n, int k,
                   float min_score, kp_rec_suggestion *out, int *counts)
{
    if (n <= 0 || k <= 0) return n == 0 ? 0 : -1;
    if (r->has_pipe) return suggest_pipeline(r, titles, lens, n, k, min_score, out, counts);
    if (grow_suggest_scratch(r, (size_t)n * (size_t)k)) return -1;
    if (kp_rec_recommend(r, titles, lens, n, k, min_score, r->sbuf_ids, r->sbuf_scores, counts))
        return -1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < counts[i]; j++) {
            size_t at = (size_t)i * (size_t)k + (size_t)j;
            int id = r->sbuf_ids[at];
            out[at] = (kp_rec_suggestion){kp_rec_keyphrase_id(r, id), kp_rec_keyphrase(r, id),
                                          r->sbuf_scores[at], r->sbuf_scores[at]};
        }
    return 0;
}

int kp_rec_pair_scores(kp_recommender *r, const char *const *titles, const size_t *lens,
                       const int *keys, int n, float *raw, float *p)
{
    if (n < 0 || (n > 0 && (!titles || !lens || !keys || !raw))) return -1;
    if (n == 0) return 0;
    for (int i = 0; i < n; i++)
        if (keys[i] < 0 || keys[i] >= r->n) return -1;
    const kp_pipeline *pl = r->has_pipe ? &r->pipe : NULL;
    if (pl && pl->ce) {
        const char **kt = malloc(sizeof *kt * (size_t)n);
        if (!kt) return -1;
        for (int i = 0; i < n; i++)
            kt[i] = r->texts[keys[i]];
        int rc = score_ce(pl, titles, kt, n, raw);
        free((void *)kt);
        if (rc) return -1;
    } else { /* item embeddings in chunks, so the scratch stays small */
        int D = kp_bienc_cfg(r->model)->out_dim, B = n < 1024 ? n : 1024;
        float *q = malloc(sizeof(float) * (size_t)B * (size_t)D);
        if (!q) return -1;
        for (int i0 = 0; i0 < n; i0 += B) {
            int c = n - i0 < B ? n - i0 : B;
            if (kp_bienc_embed(r->model, KP_TOWER_ITEM, titles + i0, lens + i0, c, q)) {
                free(q);
                return -1;
            }
            for (int i = 0; i < c; i++)
                raw[i0 + i] = dotf(q + (size_t)i * D, kp_index_row(r->index, keys[i0 + i]), D);
        }
        free(q);
    }
    if (p) {
        if (pl && pl->calib)
            kp_calib_apply_n(pl->calib, raw, n, p);
        else
            memcpy(p, raw, sizeof(float) * (size_t)n);
    }
    return 0;
}

/* eval: offline evaluation of a keyphrase scorer against graded judgments. See eval.h. */
#include "offline/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/index.h"
#include "offline/ir_metrics.h"

#define EVAL_MAX_THREADS 64

void kp_eval_config_default(kp_eval_config *c)
{
    memset(c, 0, sizeof *c);
    c->n_k = 3;
    c->k[0] = 10;
    c->k[1] = 50;
    c->k[2] = 100;
    c->relevant = 2.5f;
    c->irrelevant = 2.0f;
    c->prefix = 0;
    c->threads = 1;
}

int kp_eval_config_check(const kp_eval_config *c, char *err, size_t errlen)
{
    if (!c) {
        kp_errf(err, errlen, "eval: no config");
        return -1;
    }
    if (c->n_k < 0 || c->n_k > KP_EVAL_MAX_K) {
        kp_errf(err, errlen, "eval: %d recall cutoffs (at most %d)", c->n_k, KP_EVAL_MAX_K);
        return -1;
    }
    for (int i = 0; i < c->n_k; i++)
        if (c->k[i] < 1 || c->k[i] > 100000) {
            kp_errf(err, errlen, "eval: recall cutoff %d out of range 1..100000", c->k[i]);
            return -1;
        }
    if (!isfinite(c->relevant) || !isfinite(c->irrelevant)) {
        kp_errf(err, errlen, "eval: relevance thresholds must be finite");
        return -1;
    }
    if (c->irrelevant > c->relevant) {
        kp_errf(err, errlen, "eval: irrelevant threshold %g is above the relevant threshold %g",
                (double)c->irrelevant, (double)c->relevant);
        return -1;
    }
    if (c->prefix < 0) {
        kp_errf(err, errlen, "eval: prefix %d must be >= 0", c->prefix);
        return -1;
    }
    if (c->threads < 1 || c->threads > EVAL_MAX_THREADS) {
        kp_errf(err, errlen, "eval: threads %d out of range 1..%d", c->threads, EVAL_MAX_THREADS);
        return -1;
    }
    return 0;
}

static void progress(const kp_eval_config *c, const char *stage, long done, long total)
{
    if (c->progress) c->progress(c->progress_ctx, stage, done, total);
}

static int max_k(const kp_eval_config *c)
{
    int k = 0;
    for (int i = 0; i < c->n_k; i++)
        if (c->k[i] > k) k = c->k[i];
    return k;
}

/* ---- judged items -----------------------------------------------------------------------------
 */

/* The judged items in items-table order ("compact" index u), and their relevant keyphrases. */
typedef struct {
    int n_u;
    int *u_item;  /* [n_u] items-table row of compact item u */
    int *u_of;    /* [n_items] compact index of a row, or -1 */
    int *rel_off; /* [n_u + 1] CSR: relevant keyphrases of u are rel[rel_off[u] .. rel_off[u+1]) */
    int *rel;
} judged;

static void judged_free(judged *s)
{
    KP_FREE_ALL(s->u_item, s->u_of, s->rel_off, s->rel);
    memset(s, 0, sizeof *s);
}

/* Validates j against the table sizes and builds s. 0, or -1 with err. */
static int judged_build(judged *s, const kp_judgments *j, int n_items, int n_keys, float relevant,
                        char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (!j || n_items < 0 || n_keys < 0 || j->n < 0 ||
        (j->n > 0 && (!j->item || !j->key || !j->rel))) {
        kp_errf(err, errlen, "eval: bad judgments or table sizes");
        return -1;
    }
    for (int p = 0; p < j->n; p++) {
        if (j->item[p] < 0 || j->item[p] >= n_items || j->key[p] < 0 || j->key[p] >= n_keys) {
            kp_errf(err, errlen,
                    "eval: judgment %d refers to item %d / keyphrase %d, outside the "
                    "%d items / %d keyphrases",
                    p, j->item[p], j->key[p], n_items, n_keys);
            return -1;
        }
        if (!isfinite(j->rel[p])) {
            kp_errf(err, errlen, "eval: judgment %d has a non-finite relevance", p);
            return -1;
        }
    }
    s->u_of = malloc(sizeof(int) * (size_t)(n_items + 1));
    if (!s->u_of) goto oom;
    for (int i = 0; i < n_items; i++)
        s->u_of[i] = -1;
    for (int p = 0; p < j->n; p++)
        s->u_of[j->item[p]] = 0;
    for (int i = 0; i < n_items; i++)
        if (s->u_of[i] == 0) s->n_u++;
    s->u_item = malloc(sizeof(int) * (size_t)(s->n_u + 1));
    s->rel_off = calloc((size_t)s->n_u + 1, sizeof(int));
    if (!s->u_item || !s->rel_off) goto oom;
    int u = 0;
    for (int i = 0; i < n_items; i++)
        if (s->u_of[i] == 0) {
            s->u_item[u] = i;
            s->u_of[i] = u++;
        }
    for (int p = 0; p < j->n; p++)
        if (j->rel[p] >= relevant) s->rel_off[s->u_of[j->item[p]] + 1]++;
    for (u = 0; u < s->n_u; u++)
        s->rel_off[u + 1] += s->rel_off[u];
    s->rel = malloc(sizeof(int) * (size_t)(s->rel_off[s->n_u] + 1));
    int *fill = malloc(sizeof(int) * (size_t)(s->n_u + 1));
    if (!s->rel || !fill) {
        free(fill);
        goto oom;
    }
    memcpy(fill, s->rel_off, sizeof(int) * (size_t)s->n_u);
    for (int p = 0; p < j->n; p++)
        if (j->rel[p] >= relevant) s->rel[fill[s->u_of[j->item[p]]]++] = j->key[p];
    free(fill);
    return 0;
oom:
    judged_free(s);
    kp_errf(err, errlen, "eval: out of memory indexing %d judgments", j->n);
    return -1;
}

/* recall[i] = recall@c->k[i] of the CSR relevance lists (off, rel) over the n_u compact items,
 * from the retrieval lists topk [n_u x kmax]. 0, or -1 (out of memory). */
static int recall_metrics(int n_u, const int *topk, int kmax, int n_keys, const int *off,
                          const int *rel, const kp_eval_config *c, double *recall, int *n_recall)
{
    int *buf = malloc(sizeof(int) * ((size_t)n_u * (size_t)kmax + 1));
    if (!buf) return -1;
    for (int i = 0; i < c->n_k; i++) {
        int k = c->k[i];
        for (int u = 0; u < n_u; u++)
            memcpy(buf + (size_t)u * k, topk + (size_t)u * kmax, sizeof(int) * (size_t)k);
        recall[i] = kp_recall_at_k(n_u, n_keys, k, buf, off, rel, n_recall);
    }
    free(buf);
    return 0;
}

/* Spearman, Pearson and AUC of scores[n] against grades rel[n]. 0, or -1 (out of memory). */
static int pair_metrics(const float *scores, const float *rel, int n, const kp_eval_config *c,
                        double *spearman, double *pearson, double *auc, int *n_pos, int *n_neg)
{
    *spearman = kp_spearman(scores, rel, n);
    *pearson = kp_pearson(scores, rel, n);
    float *as = malloc(sizeof(float) * (size_t)(n + 1));
    int *al = malloc(sizeof(int) * (size_t)(n + 1));
    if (!as || !al) {
        free(as);
        free(al);
        return -1;
    }
    int m = 0;
    *n_pos = *n_neg = 0;
    for (int p = 0; p < n; p++) {
        int pos = rel[p] >= c->relevant, neg = rel[p] < c->irrelevant;
        if (!pos && !neg) continue;
        as[m] = scores[p];
        al[m++] = pos;
        *n_pos += pos;
        *n_neg += neg;
    }
    *auc = kp_roc_auc(as, al, m);
    free(as);
    free(al);
    return 0;
}

/* The never-shown (or any) slice of c->slice_keys: the metrics of the judged pairs whose keyphrase
 * is in the slice, with the same retrieval lists as the whole set. 0, or -1 (out of memory). */
static int finish_slice(const judged *s, const int *topk, int kmax, int n_keys, const float *scores,
                        const kp_judgments *j, const kp_eval_config *c, kp_eval_result *out)
{
    const unsigned char *in = c->slice_keys;
    int rc = -1;
    int *off = calloc((size_t)s->n_u + 1, sizeof(int));
    int *rel = malloc(sizeof(int) * ((size_t)s->rel_off[s->n_u] + 1));
    unsigned char *has = calloc((size_t)s->n_u + 1, 1);
    float *ps = malloc(sizeof(float) * ((size_t)j->n + 1));
    float *pr = malloc(sizeof(float) * ((size_t)j->n + 1));
    if (!off || !rel || !has || !ps || !pr) goto done;
    for (int i = 0; i < c->n_k; i++)
        out->slice.recall[i] = NAN;
    int nr = 0;
    for (int u = 0; u < s->n_u; u++) {
        for (int e = s->rel_off[u]; e < s->rel_off[u + 1]; e++)
            if (in[s->rel[e]]) rel[nr++] = s->rel[e];
        off[u + 1] = nr;
    }
    if (topk && s->n_u > 0 && kmax > 0 &&
        recall_metrics(s->n_u, topk, kmax, n_keys, off, rel, c, out->slice.recall,
                       &out->slice.n_recall_items))
        goto done;
    int n = 0;
    for (int p = 0; p < j->n; p++) {
        if (!in[j->key[p]]) continue;
        ps[n] = scores[p];
        pr[n++] = j->rel[p];
        has[s->u_of[j->item[p]]] = 1;
    }
    out->slice.n_pairs = n;
    for (int u = 0; u < s->n_u; u++)
        out->slice.n_items += has[u];
    if (pair_metrics(ps, pr, n, c, &out->slice.spearman, &out->slice.pearson, &out->slice.auc,
                     &out->slice.n_pos, &out->slice.n_neg))
        goto done;
    out->has_slice = 1;
    rc = 0;
done:
    free(off);
    free(rel);
    free(has);
    free(ps);
    free(pr);
    return rc;
}

/* Fills out from the retrieval lists topk [n_u x kmax] (NULL: no recall) and the pair scores. */
static int finish(const judged *s, const int *topk, int kmax, int n_keys, const float *scores,
                  const kp_judgments *j, const kp_eval_config *c, kp_eval_result *out, char *err,
                  size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->n_k = c->n_k;
    out->n_items = s->n_u;
    out->n_pairs = j->n;
    for (int i = 0; i < c->n_k; i++) {
        out->k[i] = c->k[i];
        out->recall[i] = NAN;
    }
    if (topk && s->n_u > 0 && kmax > 0 &&
        recall_metrics(s->n_u, topk, kmax, n_keys, s->rel_off, s->rel, c, out->recall,
                       &out->n_recall_items))
        goto oom;
    if (pair_metrics(scores, j->rel, j->n, c, &out->spearman, &out->pearson, &out->auc, &out->n_pos,
                     &out->n_neg))
        goto oom;
    if (c->slice_keys && finish_slice(s, topk, kmax, n_keys, scores, j, c, out)) goto oom;
    if (c->pair_scores && j->n > 0) memcpy(c->pair_scores, scores, sizeof(float) * (size_t)j->n);
    return 0;
oom:
    kp_errf(err, errlen, "eval: out of memory computing the metrics");
    return -1;
}

int kp_eval_unseen_keys(const kp_clicklog *log, int n_keys, unsigned char *out, char *err,
                        size_t errlen)
{
    if (!log || n_keys < 0 || (n_keys > 0 && !out) || (log->n > 0 && !log->ev)) {
        kp_errf(err, errlen, "eval: bad arguments");
        return -1;
    }
    for (int k = 0; k < n_keys; k++)
        out[k] = 1;
    for (int e = 0; e < log->n; e++) {
        int k = log->ev[e].key;
        if (k < 0 || k >= n_keys) {
            kp_errf(err, errlen, "eval: click event %d has keyphrase %d outside [0, %d)", e, k,
                    n_keys);
            return -1;
        }
        out[k] = 0;
    }
    return 0;
}

/* ---- fan-out with progress ------------------------------------------------------------------ */

typedef struct {
    const kp_eval_config *c;
    const char *stage;
} stage_progress;

static void stage_done(void *ctx, long done, long total)
{
    const stage_progress *sp = ctx;
    progress(sp->c, sp->stage, done, total);
}

/* Runs fn over [0, n) in chunks of `chunk` on `threads` threads (kp_parallel_chunks), reporting
 * the stage's progress from the calling thread (0 first, the final count last, also when n is 0).
 * Returns 0, or -1 if some fn failed. */
static int parallel_for(int threads, int n, int chunk, kp_range_fn fn, void *ctx,
                        const kp_eval_config *c, const char *stage)
{
    stage_progress sp = {c, stage};
    if (n <= 0) {
        progress(c, stage, 0, n);
        progress(c, stage, 0, n);
        return 0;
    }
    return kp_parallel_chunks(threads, n, chunk, fn, ctx, stage_done, &sp);
}

/* ---- embeddings ------------------------------------------------------------------------------ */

static float dotf(const float *a, const float *b, int d)
{
    float s = 0.0f;
    for (int i = 0; i < d; i++)
        s += a[i] * b[i];
    return s;
}

/* uemb [n_u x dim] (compact judged items), kemb [n_keys x dim]; applies c->prefix. */
static int eval_emb_core(const float *uemb, const float *kemb, int n_keys, int dim, const judged *s,
                         const kp_judgments *j, const kp_eval_config *c, kp_eval_result *out,
                         char *err, size_t errlen)
{
    int P = c->prefix > 0 ? c->prefix : dim, kmax = max_k(c), rc = -1;
    float *up = NULL, *kp = NULL, *scores = NULL, *tops = NULL;
    int *topk = NULL, *counts = NULL;
    kp_index *ix = NULL;
    if (P > dim) {
        kp_errf(err, errlen, "eval: prefix %d is larger than the embedding size %d", P, dim);
        return -1;
    }
    if (P < dim) { /* Matryoshka prefix: first P dims, re-normalised */
        up = malloc(sizeof(float) * ((size_t)s->n_u * P + 1));
        kp = malloc(sizeof(float) * ((size_t)n_keys * P + 1));
        if (!up || !kp) goto oom;
        kp_bienc_prefix(uemb, s->n_u, dim, P, up, NULL);
        kp_bienc_prefix(kemb, n_keys, dim, P, kp, NULL);
        uemb = up;
        kemb = kp;
    }
    scores = malloc(sizeof(float) * (size_t)(j->n + 1));
    if (!scores) goto oom;
    for (int p = 0; p < j->n; p++)
        scores[p] = dotf(uemb + (size_t)s->u_of[j->item[p]] * P, kemb + (size_t)j->key[p] * P, P);
    if (kmax > 0 && s->n_u > 0) {
        enum { QCHUNK = 1024 };
        ix = kp_index_new(kemb, n_keys, P, NULL);
        topk = malloc(sizeof(int) * (size_t)s->n_u * kmax);
        tops = malloc(sizeof(float) * (size_t)QCHUNK * kmax);
        counts = malloc(sizeof(int) * QCHUNK);
        if (!ix || !topk || !tops || !counts) goto oom;
        progress(c, "retrieve", 0, s->n_u);
        for (int u0 = 0; u0 < s->n_u; u0 += QCHUNK) {
            int nq = s->n_u - u0 < QCHUNK ? s->n_u - u0 : QCHUNK;
            if (kp_index_topk(ix, uemb + (size_t)u0 * P, nq, kmax, -INFINITY, 0,
                              topk + (size_t)u0 * kmax, tops, counts))
                goto oom;
            progress(c, "retrieve", u0 + nq, s->n_u);
        }
    }
    rc = finish(s, topk, kmax, n_keys, scores, j, c, out, err, errlen);
    goto done;
oom:
    kp_errf(err, errlen, "eval: out of memory (retrieval over %d keyphrases, dim %d)", n_keys, P);
done:
    kp_index_free(ix);
    free(up);
    free(kp);
    free(scores);
    free(topk);
    free(tops);
    free(counts);
    return rc;
}

int kp_eval_embeddings(const float *item_emb, int n_items, const float *key_emb, int n_keys,
                       int dim, const kp_judgments *j, const kp_eval_config *cfg,
                       kp_eval_result *out, char *err, size_t errlen)
{
    judged s;
    if (kp_eval_config_check(cfg, err, errlen)) return -1;
    if (!out || dim <= 0 || (n_items > 0 && !item_emb) || (n_keys > 0 && !key_emb)) {
        kp_errf(err, errlen, "eval: bad arguments");
        return -1;
    }
    if (judged_build(&s, j, n_items, n_keys, cfg->relevant, err, errlen)) return -1;
    float *uemb = malloc(sizeof(float) * ((size_t)s.n_u * dim + 1));
    if (!uemb) {
        judged_free(&s);
        kp_errf(err, errlen, "eval: out of memory");
        return -1;
    }
    for (int u = 0; u < s.n_u; u++)
        memcpy(uemb + (size_t)u * dim, item_emb + (size_t)s.u_item[u] * dim,
               sizeof(float) * (size_t)dim);
    int rc = eval_emb_core(uemb, key_emb, n_keys, dim, &s, j, cfg, out, err, errlen);
    free(uemb);
    judged_free(&s);
    return rc;
}

/* ---- bi-encoder ------------------------------------------------------------------------------ */

typedef struct {
    const kp_bienc *m;
    kp_tower tower;
    const char *const *texts; /* indexed through rows when rows != NULL */
    const int *rows;
    int dim;
    float *out;
} embed_job;

static int embed_range(void *ctx, int thread, int lo, int hi)
{
    (void)thread;
    embed_job *e = ctx;
    const char *buf[256];
    const char *const *t = e->texts + lo;
    if (e->rows) {
        if (hi - lo > 256) return -1;
        for (int i = lo; i < hi; i++)
            buf[i - lo] = e->texts[e->rows[i]];
        t = buf;
    }
    return kp_bienc_embed(e->m, e->tower, t, NULL, hi - lo, e->out + (size_t)lo * e->dim);
}

int kp_eval_bienc_prefixes(const kp_bienc *m, const kp_texts *items, const kp_texts *keys,
                           const kp_judgments *j, const kp_eval_config *cfg, const int *prefixes,
                           int n_prefixes, kp_eval_result *out, char *err, size_t errlen)
{
    judged s;
    int rc = -1;
    float *uemb = NULL, *kemb = NULL;
    if (kp_eval_config_check(cfg, err, errlen)) return -1;
    if (!m || !items || !keys || !out || !prefixes || n_prefixes < 1) {
        kp_errf(err, errlen, "eval: bad arguments");
        return -1;
    }
    int D = kp_bienc_cfg(m)->out_dim;
    if (judged_build(&s, j, items->n, keys->n, cfg->relevant, err, errlen)) return -1;
    uemb = malloc(sizeof(float) * ((size_t)s.n_u * D + 1));
    kemb = malloc(sizeof(float) * ((size_t)keys->n * D + 1));
    if (!uemb || !kemb) {
        kp_errf(err, errlen, "eval: out of memory for the embeddings");
        goto done;
    }
    embed_job ek = {m, KP_TOWER_KEY, (const char *const *)keys->text, NULL, D, kemb};
    embed_job ei = {m, KP_TOWER_ITEM, (const char *const *)items->text, s.u_item, D, uemb};
    if (parallel_for(cfg->threads, keys->n, 256, embed_range, &ek, cfg, "embed keyphrases") ||
        parallel_for(cfg->threads, s.n_u, 256, embed_range, &ei, cfg, "embed items")) {
        kp_errf(err, errlen, "eval: embedding failed (out of memory)");
        goto done;
    }
    for (int i = 0; i < n_prefixes; i++) {
        kp_eval_config c = *cfg;
        c.prefix = prefixes[i];
        if (i > 0) c.pair_scores = NULL;
        if ((rc = eval_emb_core(uemb, kemb, keys->n, D, &s, j, &c, &out[i], err, errlen)) != 0)
            break;
    }
done:
    free(uemb);
    free(kemb);
    judged_free(&s);
    return rc;
}

int kp_eval_bienc(const kp_bienc *m, const kp_texts *items, const kp_texts *keys,
                  const kp_judgments *j, const kp_eval_config *cfg, kp_eval_result *out, char *err,
                  size_t errlen)
{
    int prefix = cfg ? cfg->prefix : 0;
    return kp_eval_bienc_prefixes(m, items, keys, j, cfg, &prefix, 1, out, err, errlen);
}

/* ---- BM25 ------------------------------------------------------------------------------------ */

typedef struct {
    const kp_bm25 *bm;
    const kp_texts *items;
    const judged *s;
    const kp_judgments *j;
    int kmax;
    int *topk;     /* [n_u x kmax] */
    float *scores; /* [j->n] */
} bm25_job;

static int bm25_retrieve_range(void *ctx, int thread, int lo, int hi)
{
    (void)thread;
    bm25_job *b = ctx;
    float *sc = malloc(sizeof(float) * (size_t)b->kmax);
    if (!sc) return -1;
    int rc = 0;
    for (int u = lo; u < hi && !rc; u++) {
        int *row = b->topk + (size_t)u * b->kmax;
        int n = kp_bm25_topk(b->bm, b->items->text[b->s->u_item[u]], b->kmax, row, sc);
        if (n < 0) rc = -1;
        for (int i = n < 0 ? 0 : n; i < b->kmax; i++)
            row[i] = -1;
    }
    free(sc);
    return rc;
}

static int bm25_score_range(void *ctx, int thread, int lo, int hi)
{
    (void)thread;
    bm25_job *b = ctx;
    for (int p = lo; p < hi; p++) {
        b->scores[p] = kp_bm25_score(b->bm, b->items->text[b->j->item[p]], b->j->key[p]);
        if (isnan(b->scores[p])) return -1;
    }
    return 0;
}

int kp_eval_bm25(const kp_bm25 *bm, const kp_texts *items, const kp_texts *keys,
                 const kp_judgments *j, const kp_eval_config *cfg, kp_eval_result *out, char *err,
                 size_t errlen)
{
    judged s;
    int rc = -1;
    if (kp_eval_config_check(cfg, err, errlen)) return -1;
    if (!bm || !items || !keys || !out) {
        kp_errf(err, errlen, "eval: bad arguments");
        return -1;
    }
    if (cfg->prefix != 0) {
        kp_errf(err, errlen, "eval: --prefix does not apply to bm25");
        return -1;
    }
    if (kp_bm25_n_docs(bm) != keys->n) {
        kp_errf(err, errlen, "eval: the bm25 index has %d documents but there are %d keyphrases",
                kp_bm25_n_docs(bm), keys->n);
        return -1;
    }
    if (judged_build(&s, j, items->n, keys->n, cfg->relevant, err, errlen)) return -1;
    bm25_job b = {bm, items, &s, j, max_k(cfg), NULL, NULL};
    b.topk = malloc(sizeof(int) * ((size_t)s.n_u * b.kmax + 1));
    b.scores = malloc(sizeof(float) * ((size_t)j->n + 1));
    if (!b.topk || !b.scores) {
        kp_errf(err, errlen, "eval: out of memory");
        goto done;
    }
    if ((b.kmax > 0 &&
         parallel_for(cfg->threads, s.n_u, 64, bm25_retrieve_range, &b, cfg, "retrieve")) ||
        parallel_for(cfg->threads, j->n, 1024, bm25_score_range, &b, cfg, "score pairs")) {
        kp_errf(err, errlen, "eval: bm25 failed (out of memory)");
        goto done;
    }
    rc =
        finish(&s, b.kmax > 0 ? b.topk : NULL, b.kmax, keys->n, b.scores, j, cfg, out, err, errlen);
done:
    free(b.topk);
    free(b.scores);
    judged_free(&s);
    return rc;
}

/* ---- precomputed pair scores ----------------------------------------------------------------- */

int kp_eval_pairs(const float *scores, int n_items, const kp_judgments *j,
                  const kp_eval_config *cfg, kp_eval_result *out, char *err, size_t errlen)
{
    judged s;
    if (kp_eval_config_check(cfg, err, errlen)) return -1;
    if (!out || !j || (j->n > 0 && !scores)) {
        kp_errf(err, errlen, "eval: bad arguments");
        return -1;
    }
    int n_keys = 0; /* keyphrase indices only need to be >= 0 here */
    for (int p = 0; p < j->n; p++)
        if (j->key[p] >= n_keys) n_keys = j->key[p] + 1;
    if (judged_build(&s, j, n_items, n_keys, cfg->relevant, err, errlen)) return -1;
    int rc = finish(&s, NULL, 0, n_keys, scores, j, cfg, out, err, errlen);
    judged_free(&s);
    return rc;
}

/* ---- a pair scorer (cross-encoder) ----------------------------------------------------------- */

typedef struct {
    kp_eval_pair_fn fn;
    void *ctx;
    const kp_texts *items, *keys;
    const kp_judgments *j;
    float *scores;
} pair_job;

static int pair_range(void *ctx, int thread, int lo, int hi)
{
    (void)thread;
    pair_job *b = ctx;
    const char *it[256], *kt[256];
    if (hi - lo > 256) return -1;
    for (int p = lo; p < hi; p++) {
        it[p - lo] = b->items->text[b->j->item[p]];
        kt[p - lo] = b->keys->text[b->j->key[p]];
    }
    return b->fn(b->ctx, it, kt, hi - lo, b->scores + lo) ? -1 : 0;
}

int kp_eval_pair_scorer(kp_eval_pair_fn fn, void *ctx, const kp_texts *items, const kp_texts *keys,
                        const kp_judgments *j, const kp_eval_config *cfg, kp_eval_result *out,
                        char *err, size_t errlen)
{
    judged s;
    if (kp_eval_config_check(cfg, err, errlen)) return -1;
    if (!fn || !items || !keys || !out) {
        kp_errf(err, errlen, "eval: bad arguments");
        return -1;
    }
    if (judged_build(&s, j, items->n, keys->n, cfg->relevant, err, errlen)) return -1;
    judged_free(&s);
    pair_job b = {fn, ctx, items, keys, j, malloc(sizeof(float) * ((size_t)j->n + 1))};
    if (!b.scores) {
        kp_errf(err, errlen, "eval: out of memory");
        return -1;
    }
    int rc = -1;
    if (parallel_for(cfg->threads, j->n, 256, pair_range, &b, cfg, "score pairs"))
        kp_errf(err, errlen, "eval: the pair scorer failed");
    else
        rc = kp_eval_pairs(b.scores, items->n, j, cfg, out, err, errlen);
    free(b.scores);
    return rc;
}

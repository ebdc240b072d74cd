/* ce_train.c - cross-encoder training loop (see ce_train.h). */
#include "offline/ce_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "offline/ir_metrics.h"
#include "model/rng.h"

#define MAX_THREADS 64

static double now_s(void)
{
    return 1e-6 * (double)kp_mono_us();
}

void kp_ce_train_opts_default(kp_ce_train_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->epochs = 3;
    o->batch = 128;
    o->negatives = 1;
    o->threads = 1;
    o->seed = 1;
    o->lr = 2e-3f;
    o->lr_emb = 1e-2f;
    o->weight_decay = 0.0f;
    o->clip = 5.0f;
    o->neg_weight = 1.0f;
    o->keep_best = 0;
}

/* ---- token cache: every text tokenised once, packed in growable arrays ------------------------
 */

typedef struct {
    int n;                     /* texts */
    int *ntok, *ntri;          /* [n] */
    size_t *tok0, *id0, *tri0; /* [n] start of each text in wh/sh, offs (tok0 + text), ids, tri */
    uint64_t *wh, *sh, *tri;
    int *offs; /* per text n_tok+1 entries, relative to the text's ids */
    uint32_t *ids;
    size_t n_tok, n_ids, n_tri, cap_wh, cap_sh, cap_offs, cap_ids, cap_tri;
} tok_cache;

static void cache_free(tok_cache *c)
{
    free(c->ntok), free(c->ntri), free(c->tok0), free(c->id0), free(c->tri0);
    free(c->wh), free(c->sh), free(c->tri), free(c->offs), free(c->ids);
    memset(c, 0, sizeof(*c));
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 4096;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

/* Tokenises texts[i] for every i with use[i] (use NULL = all); others get 0 tokens. */
static int cache_build(tok_cache *c, char *const *texts, int n, const unsigned char *use,
                       uint32_t nb)
{
    memset(c, 0, sizeof(*c));
    kp_ce_tokbuf *tb = malloc(sizeof(*tb));
    c->n = n;
    c->ntok = calloc((size_t)n + 1, sizeof(int));
    c->ntri = calloc((size_t)n + 1, sizeof(int));
    c->tok0 = calloc((size_t)n + 1, sizeof(size_t));
    c->id0 = calloc((size_t)n + 1, sizeof(size_t));
    c->tri0 = calloc((size_t)n + 1, sizeof(size_t));
    if (!tb || !c->ntok || !c->ntri || !c->tok0 || !c->id0 || !c->tri0) goto err;
    for (int i = 0; i < n; i++) {
        c->tok0[i] = c->n_tok, c->id0[i] = c->n_ids, c->tri0[i] = c->n_tri;
        if (use && !use[i]) continue;
        kp_ce_text t = kp_ce_tokenize(texts[i], nb, tb);
        size_t nt = c->n_tok + (size_t)t.n, ni = c->n_ids + (size_t)t.off[t.n];
        size_t nr = c->n_tri + (size_t)t.n_tri;
        if (grow((void **)&c->wh, &c->cap_wh, nt, sizeof(uint64_t)) ||
            grow((void **)&c->sh, &c->cap_sh, nt, sizeof(uint64_t)) ||
            grow((void **)&c->offs, &c->cap_offs, nt + (size_t)i + 1, sizeof(int)) ||
            grow((void **)&c->ids, &c->cap_ids, ni, sizeof(uint32_t)) ||
            grow((void **)&c->tri, &c->cap_tri, nr, sizeof(uint64_t)))
            goto err;
        memcpy(c->wh + c->n_tok, t.wh, (size_t)t.n * sizeof(uint64_t));
        memcpy(c->sh + c->n_tok, t.sh, (size_t)t.n * sizeof(uint64_t));
        memcpy(c->offs + c->n_tok + (size_t)i, t.off, ((size_t)t.n + 1) * sizeof(int));
        memcpy(c->ids + c->n_ids, t.ids, (size_t)t.off[t.n] * sizeof(uint32_t));
        memcpy(c->tri + c->n_tri, t.tri, (size_t)t.n_tri * sizeof(uint64_t));
        c->ntok[i] = t.n, c->ntri[i] = t.n_tri;
        c->n_tok = nt, c->n_ids = ni, c->n_tri = nr;
    }
    free(tb);
    return 0;
err:
    free(tb);
    cache_free(c);
    return -1;
}

/* offs holds n_tok + 1 entries per text: text i's start is tok0[i] + i. */
static kp_ce_text cache_view(const tok_cache *c, int i)
{
    static const int zero_off[1] = {0};
    kp_ce_text v;
    v.n = c->ntok[i], v.n_tri = c->ntri[i];
    v.wh = c->wh ? c->wh + c->tok0[i] : NULL;
    v.sh = c->sh ? c->sh + c->tok0[i] : NULL;
    v.off = v.n ? c->offs + c->tok0[i] + (size_t)i : zero_off;
    v.ids = c->ids ? c->ids + c->id0[i] : NULL;
    v.tri = c->tri ? c->tri + c->tri0[i] : NULL;
    return v;
}

/* ---- threaded per-pair work ------------------------------------------------------------------ */

typedef struct {
    int item, key;
    float y, wt; /* target, loss weight */
} example;

typedef struct {
    kp_ce_ws *ws;
    kp_rowgrad g;
} worker;

typedef struct {
    kp_ce *m;
    const tok_cache *items, *keys;
    const example *batch; /* current batch */
    float *x, *dx;        /* [B x F] */
    int phase;            /* 0 = features, 1 = backward */
    int nthreads;
    worker w[MAX_THREADS];
} trainer;

/* The current phase over batch[lo..hi) on thread t (its own workspace and row gradient). */
static int phase_range(void *ctx, int t, int lo, int hi)
{
    trainer *tr = ctx;
    worker *w = &tr->w[t];
    int F = kp_ce_n_features(tr->m);
    for (int b = lo; b < hi; b++) {
        kp_ce_text ti = cache_view(tr->items, tr->batch[b].item);
        kp_ce_text tk = cache_view(tr->keys, tr->batch[b].key);
        if (tr->phase == 0)
            kp_ce_pair_features(tr->m, &ti, &tk, tr->x + (size_t)b * F, w->ws);
        else if (kp_ce_pair_backward(tr->m, &ti, &tk, tr->dx + (size_t)b * F, w->ws, &w->g) != 0)
            return -1;
    }
    return 0;
}

/* Runs the current phase over batch[0..B) split in contiguous ranges, one per thread (a range
 * whose thread cannot be started runs on the calling thread: same result). */
static int run_phase(trainer *tr, int phase, int B)
{
    tr->phase = phase;
    return kp_parallel_for(tr->nthreads, B, phase_range, tr);
}

/* ---- one training run: its state, set-up, steps, validation, teardown ------------------------ */

typedef struct {
    kp_ce *m;
    const kp_ce_train_opts *o;
    int F, H, B, E;
    uint32_t nb;
    size_t ND, NE;
    tok_cache ci, ck;
    trainer tr;
    int np, nv;                           /* judged training / validation pairs */
    long n_ex;                            /* examples per epoch */
    example *pairs, *ex, *vj, *vr;        /* [np], [n_ex], [nv] judged, [nv] random keyphrase */
    float *x, *dx, *h, *dh, *z, *dz, *yb; /* batch activations and their gradients */
    float *dd, *md, *vd, *me, *ve;        /* dense gradient, Adam moments (dense, embeddings) */
    uint32_t *row_t;                      /* lazy Adam: last step of each embedding row */
    float *best_emb, *best_dense;         /* keep_best: parameters of the best epoch so far */
    double best_rho;
    int best_epoch;
    float *s1, *s2, *rel; /* validation scores */
    int *lab;
    kp_rowgrad g; /* the batch's embedding gradient, merged over the threads */
    kp_rng rng;
    kp_adam_hp hd, he;
    long total_steps;
    uint64_t step;
    long done, total; /* progress in examples */
} ce_run;

static int check_args(const kp_ce *m, const kp_texts *items, const kp_texts *keys,
                      const kp_judgments *j, const unsigned char *role, const kp_ce_train_opts *o,
                      char *err, size_t errlen)
{
    if (!m || !items || !keys || !j || !role || !o) {
        kp_errf(err, errlen, "train-ce: missing argument");
        return -1;
    }
    if (o->epochs < 1 || o->batch < 1 || o->negatives < 0 || o->threads < 1 ||
        o->threads > MAX_THREADS || !(o->lr > 0) || !(o->lr_emb > 0) || !(o->clip > 0) ||
        !(o->weight_decay >= 0) || !(o->neg_weight >= 0)) {
        kp_errf(err, errlen,
                "train-ce: bad options (epochs >= 1, batch >= 1, negatives >= 0, threads 1..%d, "
                "lr, lr_emb, clip > 0, weight decay, negative weight >= 0)",
                MAX_THREADS);
        return -1;
    }
    if (keys->n < 1) {
        kp_errf(err, errlen, "train-ce: empty keyphrase inventory");
        return -1;
    }
    return 0;
}

/* Counts the judged pairs of training (role 1) and validation (role 2) items into r->np, r->nv
 * and sizes an epoch. -1 with a message on a row out of range, no training pair, too many. */
static int count_pairs(ce_run *r, const kp_texts *items, const kp_texts *keys,
                       const kp_judgments *j, const unsigned char *role, char *err, size_t errlen)
{
    r->np = r->nv = 0;
    for (int i = 0; i < j->n; i++) {
        if (j->item[i] < 0 || j->item[i] >= items->n || j->key[i] < 0 || j->key[i] >= keys->n) {
            kp_errf(err, errlen, "train-ce: judgment %d refers to a row out of range", i);
            return -1;
        }
        if (role[j->item[i]] == 1) r->np++;
        if (role[j->item[i]] == 2) r->nv++;
    }
    if (r->np == 0) {
        kp_errf(err, errlen, "train-ce: no judged pair of a training item");
        return -1;
    }
    r->n_ex = (long)r->np * (1 + r->o->negatives);
    if (r->n_ex > INT32_MAX / 2) {
        kp_errf(err, errlen, "train-ce: too many examples");
        return -1;
    }
    return 0;
}

/* Allocates every buffer of the run (sizes from r's dimensions and counts). 0 or -1 (OOM). */
static int run_alloc(ce_run *r)
{
    size_t B = (size_t)r->B, F = (size_t)r->F, H = (size_t)r->H, nv = (size_t)r->nv;
    r->pairs = malloc((size_t)r->np * sizeof(example));
    r->ex = malloc((size_t)r->n_ex * sizeof(example));
    r->vj = malloc((nv + 1) * sizeof(example));
    r->vr = malloc((nv + 1) * sizeof(example));
    r->x = malloc(B * F * sizeof(float));
    r->dx = malloc(B * F * sizeof(float));
    r->h = malloc(B * H * sizeof(float));
    r->dh = malloc(B * H * sizeof(float));
    r->z = malloc(B * sizeof(float));
    r->dz = malloc(B * sizeof(float));
    r->yb = malloc(B * sizeof(float));
    r->dd = calloc(r->ND, sizeof(float));
    r->md = calloc(r->ND, sizeof(float));
    r->vd = calloc(r->ND, sizeof(float));
    r->me = calloc(r->NE, sizeof(float));
    r->ve = calloc(r->NE, sizeof(float));
    r->row_t = calloc(r->nb, sizeof(uint32_t));
    r->s1 = malloc((2 * nv + 1) * sizeof(float));
    r->s2 = malloc((2 * nv + 1) * sizeof(float));
    r->rel = malloc((nv + 1) * sizeof(float));
    r->lab = malloc((2 * nv + 1) * sizeof(int));
    if (!r->pairs || !r->ex || !r->vj || !r->vr || !r->x || !r->dx || !r->h || !r->dh || !r->z ||
        !r->dz || !r->yb || !r->dd || !r->md || !r->vd || !r->me || !r->ve || !r->row_t || !r->s1 ||
        !r->s2 || !r->rel || !r->lab)
        return -1;
    return kp_rowgrad_init(&r->g, r->nb, r->E);
}

/* Splits the judged pairs by role: training pairs, validation pairs and, for each of those, one
 * random keyphrase of the inventory (target 0) drawn from r->rng. */
static void collect_pairs(ce_run *r, const kp_texts *keys, const kp_judgments *j,
                          const unsigned char *role)
{
    int np = 0, nv = 0;
    for (int i = 0; i < j->n; i++) {
        example e = {j->item[i], j->key[i], (j->rel[i] - 1.0f) / 2.0f, 1.0f};
        if (role[e.item] == 1) r->pairs[np++] = e;
        if (role[e.item] == 2) {
            r->vj[nv] = e;
            r->vr[nv] = e;
            r->vr[nv].key = (int)kp_rng_below(&r->rng, (uint64_t)keys->n);
            r->vr[nv++].y = 0.0f;
        }
    }
}

/* Tokenises the used items and every keyphrase once. 0 or -1 (OOM). */
static int build_caches(ce_run *r, const kp_texts *items, const kp_texts *keys,
                        const unsigned char *role)
{
    unsigned char *use = calloc((size_t)items->n + 1, 1);
    if (!use) return -1;
    for (int i = 0; i < items->n; i++)
        use[i] = role[i] != 0;
    int crc = cache_build(&r->ci, items->text, items->n, use, r->nb);
    free(use);
    if (crc != 0 || cache_build(&r->ck, keys->text, keys->n, NULL, r->nb) != 0) return -1;
    return 0;
}

/* One workspace and row gradient per thread. 0 or -1 (OOM). */
static int trainer_init(ce_run *r)
{
    trainer *tr = &r->tr;
    tr->m = r->m, tr->items = &r->ci, tr->keys = &r->ck, tr->x = r->x, tr->dx = r->dx;
    tr->nthreads = r->o->threads;
    for (int t = 0; t < tr->nthreads; t++) {
        tr->w[t].ws = kp_ce_ws_new(r->m);
        if (!tr->w[t].ws || kp_rowgrad_init(&tr->w[t].g, r->nb, r->E) != 0) return -1;
    }
    return 0;
}

static void run_free(ce_run *r)
{
    for (int t = 0; t < MAX_THREADS; t++) {
        kp_ce_ws_free(r->tr.w[t].ws);
        kp_rowgrad_free(&r->tr.w[t].g);
    }
    kp_rowgrad_free(&r->g);
    cache_free(&r->ci);
    cache_free(&r->ck);
    free(r->pairs), free(r->ex), free(r->vj), free(r->vr), free(r->x), free(r->dx), free(r->h);
    free(r->dh), free(r->z), free(r->dz), free(r->yb), free(r->dd), free(r->md), free(r->vd);
    free(r->me), free(r->ve), free(r->row_t), free(r->s1), free(r->s2), free(r->rel);
    free(r->lab), free(r->best_emb), free(r->best_dense);
}

/* An epoch's examples: every judged pair followed by its fresh negatives, then shuffled. Returns
 * their count. */
static int epoch_examples(ce_run *r, int n_keys)
{
    int n = 0;
    for (int p = 0; p < r->np; p++) {
        r->ex[n++] = r->pairs[p];
        for (int k = 0; k < r->o->negatives; k++) {
            example e = {r->pairs[p].item, (int)kp_rng_below(&r->rng, (uint64_t)n_keys), 0.0f,
                         r->o->neg_weight};
            r->ex[n++] = e;
        }
    }
    for (int i = n - 1; i > 0; i--) {
        int q = (int)kp_rng_below(&r->rng, (uint64_t)i + 1);
        example tmp = r->ex[i];
        r->ex[i] = r->ex[q];
        r->ex[q] = tmp;
    }
    return n;
}

/* Merges the per-thread embedding gradients into r->g in thread order (deterministic). */
static int merge_rowgrads(ce_run *r)
{
    kp_rowgrad_zero(&r->g);
    for (int t = 0; t < r->tr.nthreads; t++) {
        const kp_rowgrad *wg = &r->tr.w[t].g;
        for (int q = 0; q < wg->n; q++) {
            float *dst = kp_rowgrad_row(&r->g, wg->rows[q]);
            if (!dst) return -1;
            const float *src = wg->grad + (size_t)q * r->E;
            for (int e = 0; e < r->E; e++)
                dst[e] += src[e];
        }
    }
    return 0;
}

/* Scales the dense and embedding gradients down to a global norm of at most o->clip. */
static void clip_grads(ce_run *r)
{
    size_t NG = (size_t)r->g.n * r->E;
    double nrm = 0.0;
    for (size_t i = 0; i < r->ND; i++)
        nrm += (double)r->dd[i] * r->dd[i];
    for (size_t i = 0; i < NG; i++)
        nrm += (double)r->g.grad[i] * r->g.grad[i];
    nrm = sqrt(nrm);
    if (nrm > r->o->clip) {
        float sc = (float)(r->o->clip / nrm);
        for (size_t i = 0; i < r->ND; i++)
            r->dd[i] *= sc;
        for (size_t i = 0; i < NG; i++)
            r->g.grad[i] *= sc;
    }
}

/* One optimisation step on the examples batch[0..bn): forward, BCE, backward, clipped AdamW
 * with linear decay. Adds the batch's summed loss to *loss_sum. 0 or -1 (OOM). */
static int train_batch(ce_run *r, const example *batch, int bn, double *loss_sum)
{
    kp_ce *m = r->m;
    r->tr.batch = batch;
    if (run_phase(&r->tr, 0, bn) != 0) return -1;
    kp_ce_head_forward(m, r->x, bn, r->h, r->z);
    for (int b = 0; b < bn; b++)
        r->yb[b] = batch[b].y, r->dz[b] = 0.0f;
    *loss_sum += (double)kp_ce_bce_forward_backward(r->z, r->yb, bn, r->dz) * bn;
    for (int b = 0; b < bn; b++)
        r->dz[b] *= batch[b].wt;
    memset(r->dd, 0, r->ND * sizeof(float));
    memset(r->dx, 0, (size_t)bn * r->F * sizeof(float));
    kp_ce_head_backward(m, r->x, r->h, r->dz, bn, r->dh, r->dd, r->dx);
    for (int t = 0; t < r->tr.nthreads; t++)
        kp_rowgrad_zero(&r->tr.w[t].g);
    if (run_phase(&r->tr, 1, bn) != 0 || merge_rowgrads(r) != 0) return -1;
    clip_grads(r);
    float frac = 1.0f - 0.9f * (float)r->step / (float)r->total_steps;
    r->hd.lr = r->o->lr * frac, r->he.lr = r->o->lr_emb * frac;
    r->step++;
    kp_adamw_update(kp_ce_dense(m), r->dd, r->md, r->vd, r->ND, &r->hd, r->step);
    kp_lazy_adamw_update(kp_ce_emb(m), r->me, r->ve, r->row_t, &r->g, &r->he);
    return 0;
}

/* Scores examples ex[0..n) into out (probabilities), in chunks of B through the threads. */
static int score_examples(ce_run *r, const example *ex, int n, float *out)
{
    for (int s = 0; s < n; s += r->B) {
        int nb = n - s < r->B ? n - s : r->B;
        r->tr.batch = ex + s;
        if (run_phase(&r->tr, 0, nb) != 0) return -1;
        kp_ce_head_forward(r->m, r->x, nb, r->h, r->z);
        for (int b = 0; b < nb; b++)
            out[s + b] = kp_ce_sigmoid(r->z[b]);
    }
    return 0;
}

/* The validation metrics of kp_ce_epoch_stats (NAN when there is no validation pair). */
static void validate(ce_run *r, kp_ce_epoch_stats *st)
{
    const example *vj = r->vj;
    int nv = r->nv, *lab = r->lab;
    float *s1 = r->s1, *s2 = r->s2;
    st->n_valid = nv;
    st->spearman = st->pearson = st->auc = st->auc_rand = NAN;
    if (nv == 0) return;
    if (score_examples(r, vj, nv, s1) != 0) return;
    if (score_examples(r, r->vr, nv, s2) != 0) return;
    for (int i = 0; i < nv; i++)
        r->rel[i] = vj[i].y;
    st->spearman = kp_spearman(s1, r->rel, nv);
    st->pearson = kp_pearson(s1, r->rel, nv);
    /* relevant (rel >= 2.5 <=> y >= 0.75) vs irrelevant (rel < 2 <=> y < 0.5) */
    int n = 0;
    for (int i = 0; i < nv; i++) {
        if (vj[i].y >= 0.75f || vj[i].y < 0.5f) {
            s2[nv + n] = s1[i];
            lab[n++] = vj[i].y >= 0.75f;
        }
    }
    st->auc = kp_roc_auc(s2 + nv, lab, n);
    n = 0;
    for (int i = 0; i < nv; i++) {
        if (vj[i].y >= 0.75f) {
            s1[n] = s1[i];
            lab[n++] = 1;
        }
    }
    for (int i = 0; i < nv; i++) {
        s1[n] = s2[i];
        lab[n++] = 0;
    }
    st->auc_rand = kp_roc_auc(s1, lab, n);
}

/* One epoch: fresh examples, every batch, validation; fills *st. 0 or -1 (OOM). */
static int run_epoch(ce_run *r, int epoch, int n_keys, double t0, kp_ce_epoch_stats *st)
{
    const kp_ce_train_opts *o = r->o;
    int n = epoch_examples(r, n_keys);
    double loss_sum = 0.0;
    for (int s = 0; s < n; s += r->B) {
        int bn = n - s < r->B ? n - s : r->B;
        if (train_batch(r, r->ex + s, bn, &loss_sum) != 0) return -1;
        r->done += bn;
        if (o->progress) o->progress(o->ctx, r->done, r->total);
    }
    st->epoch = epoch;
    st->loss = loss_sum / n;
    st->n_train = n;
    validate(r, st);
    st->best = 0;
    if (o->keep_best && st->n_valid > 0 && (r->best_epoch == 0 || st->spearman > r->best_rho)) {
        memcpy(r->best_emb, kp_ce_emb(r->m), r->NE * sizeof(float));
        memcpy(r->best_dense, kp_ce_dense(r->m), r->ND * sizeof(float));
        r->best_rho = st->spearman, r->best_epoch = epoch, st->best = 1;
    }
    st->seconds = now_s() - t0;
    if (o->on_epoch) o->on_epoch(o->ctx, st);
    return 0;
}

int kp_ce_train(kp_ce *m, const kp_texts *items, const kp_texts *keys, const kp_judgments *j,
                const unsigned char *role, const kp_ce_train_opts *o, kp_ce_epoch_stats *last,
                char *err, size_t errlen)
{
    if (check_args(m, items, keys, j, role, o, err, errlen) != 0) return -1;
    ce_run r;
    memset(&r, 0, sizeof(r));
    r.m = m, r.o = o, r.B = o->batch;
    r.F = kp_ce_n_features(m), r.H = kp_ce_cfg(m)->hidden_dim, r.E = kp_ce_cfg(m)->emb_dim;
    r.nb = kp_ce_cfg(m)->n_buckets;
    r.ND = kp_ce_dense_size(m), r.NE = (size_t)r.nb * (size_t)r.E;
    if (count_pairs(&r, items, keys, j, role, err, errlen) != 0) return -1;
    int rc = -1;
    if (run_alloc(&r) != 0) goto oom;
    kp_rng_seed(&r.rng, o->seed);
    collect_pairs(&r, keys, j, role);
    if (build_caches(&r, items, keys, role) != 0 || trainer_init(&r) != 0) goto oom;
    if (o->keep_best && r.nv > 0) {
        r.best_emb = malloc(r.NE * sizeof(float));
        r.best_dense = malloc(r.ND * sizeof(float));
        if (!r.best_emb || !r.best_dense) goto oom;
    }

    kp_adam_hp_default(&r.hd);
    kp_adam_hp_default(&r.he);
    r.hd.weight_decay = o->weight_decay;
    r.total_steps = (r.n_ex + r.B - 1) / r.B * o->epochs;
    r.total = r.n_ex * o->epochs;
    double t0 = now_s();
    kp_ce_epoch_stats st;
    memset(&st, 0, sizeof(st));
    for (int epoch = 1; epoch <= o->epochs; epoch++)
        if (run_epoch(&r, epoch, keys->n, t0, &st) != 0) goto oom;
    if (r.best_epoch > 0 && r.best_epoch < o->epochs) {
        memcpy(kp_ce_emb(m), r.best_emb, r.NE * sizeof(float));
        memcpy(kp_ce_dense(m), r.best_dense, r.ND * sizeof(float));
    }
    st.best_epoch = r.best_epoch;
    kp_ce_set_version(m, kp_ce_version(m) + r.step);
    if (last) *last = st;
    rc = 0;
    goto out;
oom:
    kp_errf(err, errlen, "train-ce: out of memory");
out:
    run_free(&r);
    return rc;
}

/* ce_train.c - cross-encoder training loop (see ce_train.h). */
#include "offline/ce_train.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "offline/ir_metrics.h"
#include "model/rng.h"

#define MAX_THREADS 64

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
    float y;
} example;

typedef struct trainer trainer;

typedef struct {
    trainer *tr;
    int id, lo, hi, rc;
    kp_ce_ws *ws;
    kp_rowgrad g;
} worker;

struct trainer {
    kp_ce *m;
    const tok_cache *items, *keys;
    const example *batch; /* current batch */
    float *x, *dx;        /* [B x F] */
    int phase;            /* 0 = features, 1 = backward */
    int nthreads;
    worker w[MAX_THREADS];
};

static void *worker_run(void *arg)
{
    worker *w = arg;
    trainer *tr = w->tr;
    int F = kp_ce_n_features(tr->m);
    w->rc = 0;
    for (int b = w->lo; b < w->hi; b++) {
        kp_ce_text ti = cache_view(tr->items, tr->batch[b].item);
        kp_ce_text tk = cache_view(tr->keys, tr->batch[b].key);
        if (tr->phase == 0) {
            kp_ce_pair_features(tr->m, &ti, &tk, tr->x + (size_t)b * F, w->ws);
        } else if (kp_ce_pair_backward(tr->m, &ti, &tk, tr->dx + (size_t)b * F, w->ws, &w->g) !=
                   0) {
            w->rc = -1;
            break;
        }
    }
    return NULL;
}

/* Runs the current phase over batch[0..B) split in contiguous chunks, one per thread. If a
 * thread cannot be started, its chunk runs on the calling thread (same result). */
static int run_phase(trainer *tr, int phase, int B)
{
    pthread_t th[MAX_THREADS];
    int T = tr->nthreads, started[MAX_THREADS] = {0};
    tr->phase = phase;
    for (int t = 0; t < T; t++) {
        tr->w[t].lo = (int)((long)B * t / T);
        tr->w[t].hi = (int)((long)B * (t + 1) / T);
    }
    for (int t = 1; t < T; t++)
        started[t] = pthread_create(&th[t], NULL, worker_run, &tr->w[t]) == 0;
    worker_run(&tr->w[0]);
    for (int t = 1; t < T; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            worker_run(&tr->w[t]);
    }
    for (int t = 0; t < T; t++)
        if (tr->w[t].rc) return -1;
    return 0;
}

/* Scores examples ex[0..n) into out (probabilities), in chunks of B through the threads. */
static int score_examples(trainer *tr, const example *ex, int n, int B, float *h, float *z,
                          float *out)
{
    for (int s = 0; s < n; s += B) {
        int nb = n - s < B ? n - s : B;
        tr->batch = ex + s;
        if (run_phase(tr, 0, nb) != 0) return -1;
        kp_ce_head_forward(tr->m, tr->x, nb, h, z);
        for (int b = 0; b < nb; b++)
            out[s + b] = kp_ce_sigmoid(z[b]);
    }
    return 0;
}

static void validate(trainer *tr, const example *vj, int nv, const example *vr, int B, float *h,
                     float *z, float *s1, float *s2, float *rel, int *lab, kp_ce_epoch_stats *st)
{
    st->n_valid = nv;
    st->spearman = st->pearson = st->auc = st->auc_rand = NAN;
    if (nv == 0) return;
    if (score_examples(tr, vj, nv, B, h, z, s1) != 0) return;
    if (score_examples(tr, vr, nv, B, h, z, s2) != 0) return;
    for (int i = 0; i < nv; i++)
        rel[i] = vj[i].y;
    st->spearman = kp_spearman(s1, rel, nv);
    st->pearson = kp_pearson(s1, rel, nv);
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

int kp_ce_train(kp_ce *m, const kp_texts *items, const kp_texts *keys, const kp_judgments *j,
                const unsigned char *role, const kp_ce_train_opts *o, kp_ce_epoch_stats *last,
                char *err, size_t errlen)
{
    if (!m || !items || !keys || !j || !role || !o) {
        errf(err, errlen, "train-ce: missing argument");
        return -1;
    }
    if (o->epochs < 1 || o->batch < 1 || o->negatives < 0 || o->threads < 1 ||
        o->threads > MAX_THREADS || !(o->lr > 0) || !(o->lr_emb > 0) || !(o->clip > 0) ||
        !(o->weight_decay >= 0)) {
        errf(err, errlen,
             "train-ce: bad options (epochs >= 1, batch >= 1, negatives >= 0, threads 1..%d, "
             "lr, lr_emb, clip > 0, weight decay >= 0)",
             MAX_THREADS);
        return -1;
    }
    if (keys->n < 1) {
        errf(err, errlen, "train-ce: empty keyphrase inventory");
        return -1;
    }
    int rc = -1, F = kp_ce_n_features(m), H = kp_ce_cfg(m)->hidden_dim, B = o->batch;
    int E = kp_ce_cfg(m)->emb_dim;
    uint32_t nb = kp_ce_cfg(m)->n_buckets;
    size_t ND = kp_ce_dense_size(m), NE = (size_t)nb * (size_t)E;
    tok_cache ci, ck;
    memset(&ci, 0, sizeof(ci));
    memset(&ck, 0, sizeof(ck));
    trainer tr;
    memset(&tr, 0, sizeof(tr));
    example *pairs = NULL, *ex = NULL, *vj = NULL, *vr = NULL;
    float *x = NULL, *dx = NULL, *h = NULL, *dh = NULL, *z = NULL, *dz = NULL, *yb = NULL;
    float *dd = NULL, *md = NULL, *vd = NULL, *me = NULL, *ve = NULL;
    float *s1 = NULL, *s2 = NULL, *rel = NULL;
    int *lab = NULL;
    uint32_t *row_t = NULL;
    kp_rowgrad g;
    memset(&g, 0, sizeof(g));

    /* judged pairs by role */
    int np = 0, nv = 0;
    for (int i = 0; i < j->n; i++) {
        if (j->item[i] < 0 || j->item[i] >= items->n || j->key[i] < 0 || j->key[i] >= keys->n) {
            errf(err, errlen, "train-ce: judgment %d refers to a row out of range", i);
            return -1;
        }
        if (role[j->item[i]] == 1) np++;
        if (role[j->item[i]] == 2) nv++;
    }
    if (np == 0) {
        errf(err, errlen, "train-ce: no judged pair of a training item");
        return -1;
    }
    long n_ex = (long)np * (1 + o->negatives);
    if (n_ex > INT32_MAX / 2) {
        errf(err, errlen, "train-ce: too many examples");
        return -1;
    }
    pairs = malloc((size_t)np * sizeof(example));
    ex = malloc((size_t)n_ex * sizeof(example));
    vj = malloc(((size_t)nv + 1) * sizeof(example));
    vr = malloc(((size_t)nv + 1) * sizeof(example));
    x = malloc((size_t)B * F * sizeof(float));
    dx = malloc((size_t)B * F * sizeof(float));
    h = malloc((size_t)B * H * sizeof(float));
    dh = malloc((size_t)B * H * sizeof(float));
    z = malloc((size_t)B * sizeof(float));
    dz = malloc((size_t)B * sizeof(float));
    yb = malloc((size_t)B * sizeof(float));
    dd = calloc(ND, sizeof(float));
    md = calloc(ND, sizeof(float));
    vd = calloc(ND, sizeof(float));
    me = calloc(NE, sizeof(float));
    ve = calloc(NE, sizeof(float));
    row_t = calloc(nb, sizeof(uint32_t));
    s1 = malloc((2 * (size_t)nv + 1) * sizeof(float));
    s2 = malloc((2 * (size_t)nv + 1) * sizeof(float));
    rel = malloc(((size_t)nv + 1) * sizeof(float));
    lab = malloc((2 * (size_t)nv + 1) * sizeof(int));
    if (!pairs || !ex || !vj || !vr || !x || !dx || !h || !dh || !z || !dz || !yb || !dd || !md ||
        !vd || !me || !ve || !row_t || !s1 || !s2 || !rel || !lab ||
        kp_rowgrad_init(&g, nb, E) != 0)
        goto oom;
    kp_rng rng;
    kp_rng_seed(&rng, o->seed);
    np = 0, nv = 0;
    for (int i = 0; i < j->n; i++) {
        example e = {j->item[i], j->key[i], (j->rel[i] - 1.0f) / 2.0f};
        if (role[e.item] == 1) pairs[np++] = e;
        if (role[e.item] == 2) {
            vj[nv] = e;
            vr[nv] = e;
            vr[nv].key = (int)kp_rng_below(&rng, (uint64_t)keys->n);
            vr[nv++].y = 0.0f;
        }
    }

    /* token caches */
    unsigned char *use = calloc((size_t)items->n + 1, 1);
    if (!use) goto oom;
    for (int i = 0; i < items->n; i++)
        use[i] = role[i] != 0;
    int crc = cache_build(&ci, items->text, items->n, use, nb);
    free(use);
    if (crc != 0 || cache_build(&ck, keys->text, keys->n, NULL, nb) != 0) goto oom;

    int T = o->threads;
    tr.m = m, tr.items = &ci, tr.keys = &ck, tr.x = x, tr.dx = dx, tr.nthreads = T;
    for (int t = 0; t < T; t++) {
        tr.w[t].tr = &tr, tr.w[t].id = t;
        tr.w[t].ws = kp_ce_ws_new(m);
        if (!tr.w[t].ws || kp_rowgrad_init(&tr.w[t].g, nb, E) != 0) goto oom;
    }

    kp_adam_hp hd, he;
    kp_adam_hp_default(&hd);
    kp_adam_hp_default(&he);
    hd.weight_decay = o->weight_decay;
    long steps_per_epoch = (n_ex + B - 1) / B, total_steps = steps_per_epoch * o->epochs;
    uint64_t step = 0;
    double t0 = now_s();
    long done = 0, total = n_ex * o->epochs;
    kp_ce_epoch_stats st;
    memset(&st, 0, sizeof(st));
    for (int epoch = 1; epoch <= o->epochs; epoch++) {
        /* examples: judged pairs + fresh negatives, shuffled */
        int n = 0;
        for (int p = 0; p < np; p++) {
            ex[n++] = pairs[p];
            for (int k = 0; k < o->negatives; k++) {
                example e = {pairs[p].item, (int)kp_rng_below(&rng, (uint64_t)keys->n), 0.0f};
                ex[n++] = e;
            }
        }
        for (int i = n - 1; i > 0; i--) {
            int r = (int)kp_rng_below(&rng, (uint64_t)i + 1);
            example tmp = ex[i];
            ex[i] = ex[r];
            ex[r] = tmp;
        }
        double loss_sum = 0.0;
        for (int s = 0; s < n; s += B) {
            int bn = n - s < B ? n - s : B;
            tr.batch = ex + s;
            if (run_phase(&tr, 0, bn) != 0) goto oom;
            kp_ce_head_forward(m, x, bn, h, z);
            for (int b = 0; b < bn; b++)
                yb[b] = ex[s + b].y, dz[b] = 0.0f;
            loss_sum += (double)kp_ce_bce_forward_backward(z, yb, bn, dz) * bn;
            memset(dd, 0, ND * sizeof(float));
            memset(dx, 0, (size_t)bn * F * sizeof(float));
            kp_ce_head_backward(m, x, h, dz, bn, dh, dd, dx);
            for (int t = 0; t < T; t++)
                kp_rowgrad_zero(&tr.w[t].g);
            if (run_phase(&tr, 1, bn) != 0) goto oom;
            /* merge the per-thread embedding gradients in thread order (deterministic) */
            kp_rowgrad_zero(&g);
            for (int t = 0; t < T; t++) {
                const kp_rowgrad *wg = &tr.w[t].g;
                for (int r = 0; r < wg->n; r++) {
                    float *dst = kp_rowgrad_row(&g, wg->rows[r]);
                    if (!dst) goto oom;
                    const float *src = wg->grad + (size_t)r * E;
                    for (int e = 0; e < E; e++)
                        dst[e] += src[e];
                }
            }
            /* clip the global gradient norm */
            double nrm = 0.0;
            for (size_t i = 0; i < ND; i++)
                nrm += (double)dd[i] * dd[i];
            for (size_t i = 0; i < (size_t)g.n * E; i++)
                nrm += (double)g.grad[i] * g.grad[i];
            nrm = sqrt(nrm);
            if (nrm > o->clip) {
                float sc = (float)(o->clip / nrm);
                for (size_t i = 0; i < ND; i++)
                    dd[i] *= sc;
                for (size_t i = 0; i < (size_t)g.n * E; i++)
                    g.grad[i] *= sc;
            }
            float frac = 1.0f - 0.9f * (float)step / (float)total_steps;
            hd.lr = o->lr * frac, he.lr = o->lr_emb * frac;
            step++;
            kp_adamw_update(kp_ce_dense(m), dd, md, vd, ND, &hd, step);
            kp_lazy_adamw_update(kp_ce_emb(m), me, ve, row_t, &g, &he);
            done += bn;
            if (o->progress) o->progress(o->ctx, done, total);
        }
        st.epoch = epoch;
        st.loss = loss_sum / n;
        st.n_train = n;
        validate(&tr, vj, nv, vr, B, h, z, s1, s2, rel, lab, &st);
        st.seconds = now_s() - t0;
        if (o->on_epoch) o->on_epoch(o->ctx, &st);
    }
    kp_ce_set_version(m, kp_ce_version(m) + step);
    if (last) *last = st;
    rc = 0;
    goto out;
oom:
    errf(err, errlen, "train-ce: out of memory");
out:
    for (int t = 0; t < MAX_THREADS; t++) {
        kp_ce_ws_free(tr.w[t].ws);
        kp_rowgrad_free(&tr.w[t].g);
    }
    kp_rowgrad_free(&g);
    cache_free(&ci);
    cache_free(&ck);
    free(pairs), free(ex), free(vj), free(vr), free(x), free(dx), free(h), free(dh), free(z);
    free(dz), free(yb), free(dd), free(md), free(vd), free(me), free(ve), free(row_t);
    free(s1), free(s2), free(rel), free(lab);
    return rc;
}

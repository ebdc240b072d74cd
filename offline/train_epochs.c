/* train_epochs.c - offline epochs of multi-task training over files (see train_epochs.h). */
#include "offline/train_epochs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/index.h"
#include "model/rng.h"
#include "model/bm25.h"

/* ---- offline epochs -------------------------------------------------------------------------- */

/* Per-item lists in CSR form: entries of item i are [off[i], off[i+1]). */
typedef struct {
    int *off;   /* [n_items + 1] */
    int *key;   /* [n] keyphrase rows */
    float *val; /* [n] a label / score / count */
    float *wt;  /* [n] a weight (or NULL) */
    int *pos;   /* [n] a position (or NULL) */
} item_csr;

static void csr_free(item_csr *c)
{
    KP_FREE_ALL(c->off, c->key, c->val, c->wt, c->pos);
    memset(c, 0, sizeof(*c));
}

/* Stable counting sort of n entries by item into *c (wt and pos copied when given). */
static int csr_build(item_csr *c, int n_items, int n, const int *item, const int *key,
                     const float *val, const float *wt, const int *pos)
{
    memset(c, 0, sizeof(*c));
    c->off = calloc((size_t)n_items + 1, sizeof(int));
    c->key = malloc(((size_t)n + 1) * sizeof(int));
    c->val = malloc(((size_t)n + 1) * sizeof(float));
    if (wt) c->wt = malloc(((size_t)n + 1) * sizeof(float));
    if (pos) c->pos = malloc(((size_t)n + 1) * sizeof(int));
    int *fill = malloc(((size_t)n_items + 1) * sizeof(int));
    if (!c->off || !c->key || !c->val || (wt && !c->wt) || (pos && !c->pos) || !fill) {
        free(fill);
        csr_free(c);
        return -1;
    }
    for (int e = 0; e < n; e++)
        c->off[item[e] + 1]++;
    for (int i = 0; i < n_items; i++)
        c->off[i + 1] += c->off[i];
    memcpy(fill, c->off, ((size_t)n_items + 1) * sizeof(int));
    for (int e = 0; e < n; e++) {
        int at = fill[item[e]]++;
        c->key[at] = key[e];
        c->val[at] = val ? val[e] : 0.0f;
        if (wt) c->wt[at] = wt[e];
        if (pos) c->pos[at] = pos[e];
    }
    free(fill);
    return 0;
}

static int csr_len(const item_csr *c, int i)
{
    return c->off ? c->off[i + 1] - c->off[i] : 0;
}

typedef struct {
    int item, key, pos, click;
} ev_key;

static int ev_cmp(const void *a, const void *b)
{
    const ev_key *x = a, *y = b;
    if (x->item != y->item) return x->item < y->item ? -1 : 1;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    if (x->pos != y->pos) return x->pos < y->pos ? -1 : 1;
    return (x->click > y->click) - (x->click < y->click);
}

/* Everything kp_train_run derives from the data. */
typedef struct {
    int n_items, n_keys;
    item_csr bce;   /* (key, pos): val = click rate, wt = impressions */
    item_csr click; /* clicked keys: val = clicks */
    item_csr sr;    /* SR judgments: val = (rel - 1) / 2 */
    item_csr seen;  /* distinct keys shown or judged: the "known" distillation candidates */
    item_csr posk;  /* known positives (clicked or SR label >= 0.5): not softmax negatives */
    item_csr pool;  /* distillation candidates with teacher scores (val) */
    item_csr mh;    /* model-retrieved candidates of the current epoch, teacher scores */
    int *train;     /* [n_train] item rows */
    int n_train;
} prepared;

static void prepared_free(prepared *p)
{
    csr_free(&p->bce);
    csr_free(&p->click);
    csr_free(&p->sr);
    csr_free(&p->seen);
    csr_free(&p->posk);
    csr_free(&p->pool);
    csr_free(&p->mh);
    free(p->train);
}

static int prep_clicks(prepared *P, const kp_clicklog *log, const unsigned char *mask, char *err,
                       size_t errlen)
{
    int rc = -1;
    ev_key *ev = malloc(((size_t)log->n + 1) * sizeof(*ev));
    size_t cap = (size_t)log->n + 1;
    int *gi = malloc(cap * sizeof(int)), *gk = malloc(cap * sizeof(int));
    int *gp = malloc(cap * sizeof(int));
    float *gv = malloc(cap * sizeof(float)), *gw = malloc(cap * sizeof(float));
    int *ci = malloc(cap * sizeof(int)), *ck = malloc(cap * sizeof(int));
    float *cv = malloc(cap * sizeof(float));
    if (!ev || !gi || !gk || !gp || !gv || !gw || !ci || !ck || !cv) {
        kp_errf(err, errlen, "train: out of memory");
        goto done;
    }
    int n = 0;
    for (int e = 0; e < log->n; e++) {
        const kp_click_event *x = &log->ev[e];
        if (x->item < 0 || x->item >= P->n_items || x->key < 0 || x->key >= P->n_keys ||
            x->position < 1 || (x->kind != KP_EV_CLICK && x->kind != KP_EV_IMPRESSION)) {
            kp_errf(err, errlen, "train: click event %d is out of range", e);
            goto done;
        }
        if (mask && !mask[x->item]) continue;
        ev[n].item = x->item, ev[n].key = x->key, ev[n].pos = x->position;
        ev[n].click = x->kind == KP_EV_CLICK;
        n++;
    }
    qsort(ev, (size_t)n, sizeof(*ev), ev_cmp);
    int ng = 0, nc = 0;
    for (int a = 0; a < n;) {
        /* one (item, key) run, split into (item, key, pos) groups */
        int b = a, kclicks = 0;
        while (b < n && ev[b].item == ev[a].item && ev[b].key == ev[a].key)
            b++;
        for (int u = a; u < b;) {
            int v = u, imps = 0, clicks = 0;
            while (v < b && ev[v].pos == ev[u].pos) {
                if (ev[v].click)
                    clicks++;
                else
                    imps++;
                v++;
            }
            if (imps < clicks) imps = clicks;
            gi[ng] = ev[u].item, gk[ng] = ev[u].key, gp[ng] = ev[u].pos;
            gv[ng] = (float)clicks / (float)imps, gw[ng] = (float)imps;
            ng++;
            kclicks += clicks;
            u = v;
        }
        if (kclicks > 0) {
            ci[nc] = ev[a].item, ck[nc] = ev[a].key, cv[nc] = (float)kclicks;
            nc++;
        }
        a = b;
    }
    if (csr_build(&P->bce, P->n_items, ng, gi, gk, gv, gw, gp) != 0 ||
        csr_build(&P->click, P->n_items, nc, ci, ck, cv, NULL, NULL) != 0) {
        kp_errf(err, errlen, "train: out of memory");
        goto done;
    }
    rc = 0;
done:
    free(ev);
    free(gi);
    free(gk);
    free(gp);
    free(gv);
    free(gw);
    free(ci);
    free(ck);
    free(cv);
    return rc;
}

static int prep_sr(prepared *P, const kp_judgments *j, const unsigned char *mask, char *err,
                   size_t errlen)
{
    int rc = -1;
    size_t cap = (size_t)j->n + 1;
    int *ji = malloc(cap * sizeof(int)), *jk = malloc(cap * sizeof(int));
    float *jv = malloc(cap * sizeof(float));
    if (!ji || !jk || !jv) {
        kp_errf(err, errlen, "train: out of memory");
        goto done;
    }
    int n = 0;
    for (int e = 0; e < j->n; e++) {
        if (j->item[e] < 0 || j->item[e] >= P->n_items || j->key[e] < 0 || j->key[e] >= P->n_keys ||
            !(j->rel[e] >= 1.0f && j->rel[e] <= 3.0f)) {
            kp_errf(err, errlen, "train: judgment %d is out of range", e);
            goto done;
        }
        if (mask && !mask[j->item[e]]) continue;
        ji[n] = j->item[e], jk[n] = j->key[e], jv[n] = (j->rel[e] - 1.0f) * 0.5f;
        n++;
    }
    if (csr_build(&P->sr, P->n_items, n, ji, jk, jv, NULL, NULL) != 0) {
        kp_errf(err, errlen, "train: out of memory");
        goto done;
    }
    rc = 0;
done:
    KP_FREE_ALL(ji, jk, jv);
    return rc;
}

/* seen = distinct keys of bce ∪ sr per item; posk = clicked ∪ SR-relevant. */
static int prep_known(prepared *P)
{
    int rc = -1;
    size_t cap = 1;
    for (int i = 0; i < P->n_items; i++)
        cap += (size_t)csr_len(&P->bce, i) + (size_t)csr_len(&P->sr, i) +
               (size_t)csr_len(&P->click, i);
    int *si = malloc(cap * sizeof(int)), *sk = malloc(cap * sizeof(int));
    int *pi = malloc(cap * sizeof(int)), *pk = malloc(cap * sizeof(int));
    int *mark = malloc(((size_t)P->n_keys + 1) * sizeof(int));
    if (!si || !sk || !pi || !pk || !mark) goto done;
    for (int k = 0; k < P->n_keys; k++)
        mark[k] = -1;
    int ns = 0, np = 0;
    for (int i = 0; i < P->n_items; i++) {
        const item_csr *src[2] = {&P->bce, &P->sr};
        for (int s = 0; s < 2; s++)
            for (int e = src[s]->off ? src[s]->off[i] : 0; src[s]->off && e < src[s]->off[i + 1];
                 e++) {
                int k = src[s]->key[e];
                if (mark[k] == i) continue;
                mark[k] = i;
                si[ns] = i, sk[ns] = k, ns++;
            }
        for (int e = P->click.off ? P->click.off[i] : 0; P->click.off && e < P->click.off[i + 1];
             e++)
            pi[np] = i, pk[np] = P->click.key[e], np++;
        for (int e = P->sr.off ? P->sr.off[i] : 0; P->sr.off && e < P->sr.off[i + 1]; e++)
            if (P->sr.val[e] >= 0.5f) pi[np] = i, pk[np] = P->sr.key[e], np++;
    }
    if (csr_build(&P->seen, P->n_items, ns, si, sk, NULL, NULL, NULL) != 0 ||
        csr_build(&P->posk, P->n_items, np, pi, pk, NULL, NULL, NULL) != 0)
        goto done;
    rc = 0;
done:
    free(si);
    free(sk);
    free(pi);
    free(pk);
    free(mark);
    return rc;
}

/* Scores the pairs (item[e], c->key[e]) of csr c with the teacher into c->val. */
static int teacher_fill(const kp_train_data *d, item_csr *c, const char *stage, char *err,
                        size_t errlen)
{
    enum { CHUNK = 2048 };
    const char *ti[CHUNK], *tk[CHUNK];
    int n = c->off[d->items->n];
    int i = 0;
    for (int e0 = 0; e0 < n; e0 += CHUNK) {
        int m = n - e0 < CHUNK ? n - e0 : CHUNK;
        for (int u = 0; u < m; u++) {
            while (c->off[i + 1] <= e0 + u)
                i++;
            ti[u] = d->items->text[i];
            tk[u] = d->keys->text[c->key[e0 + u]];
        }
        if (d->teacher(d->teacher_ctx, ti, tk, m, c->val + e0) != 0)
            return kp_errf(err, errlen, "train: the teacher failed to score a batch of pairs"), -1;
        for (int u = 0; u < m; u++)
            if (!isfinite(c->val[e0 + u]))
                return kp_errf(err, errlen, "train: the teacher returned a non-finite score"), -1;
        if (d->progress) d->progress(d->progress_ctx, stage, e0 + m, n, NULL);
    }
    return 0;
}

/* Distillation pool of every training item: seen keys, BM25 hard negatives, random keys. */
static int prep_pool(prepared *P, const kp_train_config *c, const kp_train_data *d, char *err,
                     size_t errlen)
{
    int rc = -1;
    kp_bm25 *bm = NULL;
    int per = c->n_hard + c->n_random;
    size_t cap = 1 + (size_t)P->n_train * (size_t)per;
    for (int u = 0; u < P->n_train; u++)
        cap += (size_t)csr_len(&P->seen, P->train[u]);
    int *pi = malloc(cap * sizeof(int)), *pk = malloc(cap * sizeof(int));
    int *mark = malloc(((size_t)P->n_keys + 1) * sizeof(int));
    int kq = c->n_hard + 64;
    int *hd = malloc((size_t)kq * sizeof(int));
    float *hs = malloc((size_t)kq * sizeof(float));
    if (!pi || !pk || !mark || !hd || !hs) {
        kp_errf(err, errlen, "train: out of memory");
        goto done;
    }
    if (c->n_hard > 0) {
        bm = kp_bm25_build((const char *const *)d->keys->text, P->n_keys, KP_BM25_K1, KP_BM25_B,
                           err, errlen);
        if (!bm) goto done;
    }
    for (int k = 0; k < P->n_keys; k++)
        mark[k] = -1;
    kp_rng rng;
    kp_rng_seed(&rng, c->seed ^ 0x706f6f6cULL);
    int np = 0;
    for (int u = 0; u < P->n_train; u++) {
        int i = P->train[u];
        for (int e = P->seen.off[i]; e < P->seen.off[i + 1]; e++) {
            mark[P->seen.key[e]] = i;
            pi[np] = i, pk[np] = P->seen.key[e], np++;
        }
        if (bm) {
            int got = kp_bm25_topk(bm, d->items->text[i], kq, hd, hs);
            if (got < 0) {
                kp_errf(err, errlen, "train: BM25 retrieval failed");
                goto done;
            }
            for (int h = 0, taken = 0; h < got && taken < c->n_hard; h++) {
                if (mark[hd[h]] == i) continue;
                mark[hd[h]] = i;
                pi[np] = i, pk[np] = hd[h], np++, taken++;
            }
            if (d->progress && (u % 1024 == 0 || u + 1 == P->n_train))
                d->progress(d->progress_ctx, "bm25", u + 1, P->n_train, NULL);
        }
        for (int r = 0, tries = 0; r < c->n_random && tries < 16 * c->n_random + 16; tries++) {
            int k = (int)kp_rng_below(&rng, (uint64_t)P->n_keys);
            if (mark[k] == i) continue;
            mark[k] = i;
            pi[np] = i, pk[np] = k, np++, r++;
        }
    }
    if (csr_build(&P->pool, P->n_items, np, pi, pk, NULL, NULL, NULL) != 0) {
        kp_errf(err, errlen, "train: out of memory");
        goto done;
    }
    rc = teacher_fill(d, &P->pool, "teacher", err, errlen);
done:
    kp_bm25_free(bm);
    free(pi);
    free(pk);
    free(mark);
    free(hd);
    free(hs);
    return rc;
}

/* Hard negatives retrieved by the current model: top keys of each training item not yet in its
 * pool, teacher-scored. Replaces P->mh. */
static int prep_model_hard(prepared *P, const kp_bienc *m, const kp_train_config *c,
                           const kp_train_data *d, char *err, size_t errlen)
{
    int rc = -1, D = kp_bienc_cfg(m)->out_dim, kq = c->n_model_hard + 32;
    enum { QCHUNK = 512 };
    kp_index *ix = NULL;
    float *ek = malloc((size_t)P->n_keys * D * sizeof(float));
    float *eq = malloc((size_t)QCHUNK * D * sizeof(float));
    const char **qt = malloc(QCHUNK * sizeof(char *));
    int *ids = malloc((size_t)QCHUNK * kq * sizeof(int)), *cnt = malloc(QCHUNK * sizeof(int));
    float *sc = malloc((size_t)QCHUNK * kq * sizeof(float));
    size_t cap = 1 + (size_t)P->n_train * c->n_model_hard;
    int *pi = malloc(cap * sizeof(int)), *pk = malloc(cap * sizeof(int));
    int *mark = malloc(((size_t)P->n_keys + 1) * sizeof(int));
    if (!ek || !eq || !qt || !ids || !cnt || !sc || !pi || !pk || !mark) {
        kp_errf(err, errlen, "train: out of memory");
        goto done;
    }
    if (kp_bienc_embed(m, KP_TOWER_KEY, (const char *const *)d->keys->text, NULL, P->n_keys, ek) !=
            0 ||
        !(ix = kp_index_new(ek, P->n_keys, D, NULL))) {
        kp_errf(err, errlen, "train: embedding the keyphrases failed");
        goto done;
    }
    for (int k = 0; k < P->n_keys; k++)
        mark[k] = -1;
    int np = 0;
    for (int u0 = 0; u0 < P->n_train; u0 += QCHUNK) {
        int nq = P->n_train - u0 < QCHUNK ? P->n_train - u0 : QCHUNK;
        for (int q = 0; q < nq; q++)
            qt[q] = d->items->text[P->train[u0 + q]];
        if (kp_bienc_embed(m, KP_TOWER_ITEM, qt, NULL, nq, eq) != 0 ||
            kp_index_topk(ix, eq, nq, kq, -2.0f, 0, ids, sc, cnt) != 0) {
            kp_errf(err, errlen, "train: model retrieval failed");
            goto done;
        }
        for (int q = 0; q < nq; q++) {
            int i = P->train[u0 + q];
            for (int e = P->pool.off[i]; e < P->pool.off[i + 1]; e++)
                mark[P->pool.key[e]] = i;
            for (int h = 0, taken = 0; h < cnt[q] && taken < c->n_model_hard; h++) {
                int k = ids[(size_t)q * kq + h];
                if (k < 0 || mark[k] == i) continue;
                mark[k] = i;
                pi[np] = i, pk[np] = k, np++, taken++;
            }
        }
        if (d->progress) d->progress(d->progress_ctx, "retrieve", u0 + nq, P->n_train, NULL);
    }
    csr_free(&P->mh);
    if (csr_build(&P->mh, P->n_items, np, pi, pk, NULL, NULL, NULL) != 0) {
        kp_errf(err, errlen, "train: out of memory");
        goto done;
    }
    rc = teacher_fill(d, &P->mh, "teacher", err, errlen);
done:
    kp_index_free(ix);
    free(ek);
    free(eq);
    free(qt);
    free(ids);
    free(cnt);
    free(sc);
    free(pi);
    free(pk);
    free(mark);
    return rc;
}

/* Buffers of one batch under construction. */
typedef struct {
    int cap_keys, cap_pairs, cap_items;
    const char **itext, **ktext;
    int *kslot; /* [n_keys] batch column of a keyphrase row, -1 */
    int *kcol;  /* [cap_keys] keyphrase row of a batch column */
    int *soft_item, *soft_key;
    unsigned char *mask; /* [cap_items x cap_keys] */
    int *bi, *bk, *bp, *si, *sk, *di, *dk;
    float *bl, *bw, *sl, *dt;
    unsigned char *dknown;
    unsigned char *colneg; /* [cap_keys] a column that may be a softmax negative */
} batch_buf;

static void batch_buf_free(batch_buf *b)
{
    KP_FREE_ALL(b->itext, b->ktext, b->kslot, b->kcol, b->soft_item, b->soft_key, b->mask, b->bi,
                b->bk, b->bp, b->si, b->sk, b->di, b->dk, b->bl, b->bw, b->sl, b->dt, b->dknown,
                b->colneg);
}

static int batch_buf_init(batch_buf *b, int items, int keys, int pairs, int n_keys)
{
    memset(b, 0, sizeof(*b));
    b->cap_items = items, b->cap_keys = keys, b->cap_pairs = pairs;
    size_t P = (size_t)pairs + 1;
    b->itext = malloc((size_t)items * sizeof(char *));
    b->ktext = malloc((size_t)keys * sizeof(char *));
    b->kslot = malloc((size_t)n_keys * sizeof(int));
    b->kcol = malloc((size_t)keys * sizeof(int));
    b->soft_item = malloc((size_t)items * sizeof(int));
    b->soft_key = malloc((size_t)items * sizeof(int));
    b->mask = calloc((size_t)items * keys, 1);
    b->bi = malloc(P * sizeof(int)), b->bk = malloc(P * sizeof(int)),
    b->bp = malloc(P * sizeof(int));
    b->si = malloc(P * sizeof(int)), b->sk = malloc(P * sizeof(int));
    b->di = malloc(P * sizeof(int)), b->dk = malloc(P * sizeof(int));
    b->bl = malloc(P * sizeof(float)), b->bw = malloc(P * sizeof(float));
    b->sl = malloc(P * sizeof(float)), b->dt = malloc(P * sizeof(float));
    b->dknown = malloc(P);
    b->colneg = malloc((size_t)keys + 1);
    if (!b->colneg || !b->itext || !b->ktext || !b->kslot || !b->kcol || !b->soft_item ||
        !b->soft_key || !b->mask || !b->bi || !b->bk || !b->bp || !b->si || !b->sk || !b->di ||
        !b->dk || !b->bl || !b->bw || !b->sl || !b->dt || !b->dknown)
        return -1;
    for (int k = 0; k < n_keys; k++)
        b->kslot[k] = -1;
    return 0;
}

static int col_of(batch_buf *bb, kp_train_batch *b, const kp_texts *keys, int k)
{
    if (bb->kslot[k] < 0) {
        bb->kslot[k] = b->n_keys;
        bb->kcol[b->n_keys] = k;
        bb->ktext[b->n_keys] = keys->text[k];
        b->n_keys++;
    }
    return bb->kslot[k];
}

/* Picks a clicked key of item i with probability proportional to its clicks. */
static int sample_click(const item_csr *c, int i, kp_rng *rng)
{
    double tot = 0.0;
    for (int e = c->off[i]; e < c->off[i + 1]; e++)
        tot += c->val[e];
    double x = kp_rng_uniform_d(rng) * tot;
    for (int e = c->off[i]; e < c->off[i + 1]; e++) {
        x -= c->val[e];
        if (x < 0.0) return c->key[e];
    }
    return c->key[c->off[i + 1] - 1];
}

static void build_batch(batch_buf *bb, kp_train_batch *b, const prepared *P,
                        const kp_train_config *c, const kp_train_data *d, const int *items, int nb,
                        kp_rng *rng)
{
    int use_soft = c->w_softmax > 0.0f && P->click.off;
    int use_bce = c->w_bce > 0.0f && P->bce.off;
    int use_sr = c->w_sr > 0.0f && P->sr.off;
    int use_dis = (c->w_distill > 0.0f || c->w_distill_known > 0.0f) && P->pool.off;
    memset(b, 0, sizeof(*b));
    b->items = bb->itext, b->keys = bb->ktext;
    b->soft_item = bb->soft_item, b->soft_key = bb->soft_key, b->soft_mask = bb->mask;
    b->bce_item = bb->bi, b->bce_key = bb->bk, b->bce_pos = bb->bp, b->bce_label = bb->bl;
    b->bce_weight = bb->bw;
    b->sr_item = bb->si, b->sr_key = bb->sk, b->sr_label = bb->sl;
    b->dis_item = bb->di, b->dis_key = bb->dk, b->dis_teacher = bb->dt;
    b->dis_known = bb->dknown;
    for (int r = 0; r < nb; r++) {
        int i = items[r];
        bb->itext[r] = d->items->text[i];
        if (use_soft && csr_len(&P->click, i) > 0) {
            bb->soft_item[b->n_soft] = r;
            bb->soft_key[b->n_soft] = col_of(bb, b, d->keys, sample_click(&P->click, i, rng));
            b->n_soft++;
        }
        if (use_bce)
            for (int e = P->bce.off[i], u = 0; e < P->bce.off[i + 1] && u < c->max_bce; e++, u++) {
                bb->bi[b->n_bce] = r, bb->bk[b->n_bce] = col_of(bb, b, d->keys, P->bce.key[e]);
                bb->bp[b->n_bce] = P->bce.pos[e];
                bb->bl[b->n_bce] = P->bce.val[e], bb->bw[b->n_bce] = P->bce.wt[e];
                b->n_bce++;
            }
        if (use_sr)
            for (int e = P->sr.off[i]; e < P->sr.off[i + 1]; e++) {
                bb->si[b->n_sr] = r, bb->sk[b->n_sr] = col_of(bb, b, d->keys, P->sr.key[e]);
                bb->sl[b->n_sr] = P->sr.val[e];
                b->n_sr++;
            }
        if (use_dis) {
            const item_csr *src[2] = {&P->pool, &P->mh};
            for (int s = 0; s < 2; s++) {
                if (!src[s]->off) continue;
                for (int e = src[s]->off[i]; e < src[s]->off[i + 1]; e++) {
                    /* the pool starts with the item's known keys (prep_pool) */
                    bb->dknown[b->n_dis] = s == 0 && e - src[s]->off[i] < csr_len(&P->seen, i);
                    bb->di[b->n_dis] = r;
                    bb->dk[b->n_dis] = col_of(bb, b, d->keys, src[s]->key[e]);
                    bb->dt[b->n_dis] = src[s]->val[e];
                    b->n_dis++;
                }
            }
        }
    }
    b->n_items = nb;
    /* mask: keys known relevant to a softmax row's item are not its negatives; nor are the item's
     * own distillation candidates (BM25 / model-retrieved / random keys, most of them never
     * shown): whether they are relevant to the item is the teacher's call, through the
     * distillation terms, not "not clicked" (which only says the old engine did not show them).
     * With d->soft_pool_negatives == 0 no candidate-only column is a negative of any row: the
     * softmax then sees the same kind of negatives as CTR-only training (other items' clicked
     * and judged keys). */
    memset(bb->mask, 0, (size_t)b->n_soft * b->n_keys);
    if (use_soft && use_dis && !d->soft_pool_negatives) {
        /* columns of clicked / SR keys of the batch are the only negatives */
        memset(bb->colneg, 0, (size_t)b->n_keys);
        for (int r = 0; r < b->n_soft; r++)
            bb->colneg[b->soft_key[r]] = 1;
        for (int e = 0; e < b->n_sr; e++)
            bb->colneg[bb->sk[e]] = 1;
        for (int e = 0; e < b->n_bce; e++)
            bb->colneg[bb->bk[e]] = 1;
        for (int r = 0; r < b->n_soft; r++)
            for (int col = 0; col < b->n_keys; col++)
                if (!bb->colneg[col]) bb->mask[(size_t)r * b->n_keys + col] = 1;
    }
    for (int r = 0; r < b->n_soft; r++) {
        int i = items[b->soft_item[r]];
        for (int e = P->posk.off[i]; e < P->posk.off[i + 1]; e++) {
            int col = bb->kslot[P->posk.key[e]];
            if (col >= 0) bb->mask[(size_t)r * b->n_keys + col] = 1;
        }
        if (!use_dis) continue;
        const item_csr *src[2] = {&P->pool, &P->mh};
        for (int s = 0; s < 2; s++)
            for (int e = src[s]->off ? src[s]->off[i] : 0; src[s]->off && e < src[s]->off[i + 1];
                 e++) {
                int col = bb->kslot[src[s]->key[e]];
                if (col >= 0) bb->mask[(size_t)r * b->n_keys + col] = 1;
            }
    }
    /* reset the key map for the next batch */
    for (int u = 0; u < b->n_keys; u++)
        bb->kslot[bb->kcol[u]] = -1;
}

/* Upper bound of keyphrase columns / pairs that item i adds to a batch. */
static int item_load(const prepared *P, const kp_train_config *c, int i)
{
    int bce = csr_len(&P->bce, i);
    if (bce > c->max_bce) bce = c->max_bce;
    return 1 + bce + csr_len(&P->sr, i) + csr_len(&P->pool, i) + c->n_model_hard;
}

int kp_train_epochs(kp_bienc *m, const kp_train_config *cfg, const kp_train_data *d,
                    kp_train_stats *stats, char *err, size_t errlen)
{
    if (!m || !d || !d->items || !d->keys) return kp_errf(err, errlen, "train: missing data"), -1;
    if (kp_train_config_check(cfg, err, errlen) != 0) return -1;
    if (d->items->n < 1 || d->keys->n < 2)
        return kp_errf(err, errlen, "train: need at least 1 item and 2 keyphrases"), -1;
    kp_train_config c = *cfg;
    if (!d->clicks) c.w_softmax = 0.0f, c.w_bce = 0.0f;
    if (!d->sr) c.w_sr = 0.0f;
    if (!d->teacher) c.w_distill = 0.0f, c.w_distill_known = 0.0f;
    int distill_on = c.w_distill > 0.0f || c.w_distill_known > 0.0f;
    int rc = -1;
    prepared P;
    memset(&P, 0, sizeof(P));
    P.n_items = d->items->n, P.n_keys = d->keys->n;
    batch_buf bb;
    memset(&bb, 0, sizeof(bb));
    kp_trainer *t = NULL;
    if (stats) memset(stats, 0, sizeof(*stats));

    if ((c.w_softmax > 0.0f || c.w_bce > 0.0f) &&
        prep_clicks(&P, d->clicks, d->train_items, err, errlen) != 0)
        goto done;
    if (c.w_sr > 0.0f && prep_sr(&P, d->sr, d->train_items, err, errlen) != 0) goto done;
    if (prep_known(&P) != 0) {
        kp_errf(err, errlen, "train: out of memory");
        goto done;
    }
    /* training items: those with a signal for an active term */
    P.train = malloc((size_t)P.n_items * sizeof(int));
    if (!P.train) {
        kp_errf(err, errlen, "train: out of memory");
        goto done;
    }
    for (int i = 0; i < P.n_items; i++) {
        if (d->train_items && !d->train_items[i]) continue;
        int sig = (c.w_softmax > 0.0f && csr_len(&P.click, i) > 0) ||
                  (c.w_bce > 0.0f && csr_len(&P.bce, i) > 0) ||
                  (c.w_sr > 0.0f && csr_len(&P.sr, i) > 0) || distill_on;
        if (sig) P.train[P.n_train++] = i;
    }
    if (P.n_train == 0) {
        kp_errf(err, errlen,
                "train: no training signal (no clicks, judgments or teacher for the "
                "training items, or every loss weight is 0)");
        goto done;
    }
    if (distill_on && prep_pool(&P, &c, d, err, errlen) != 0) goto done;
    long teacher_pairs = P.pool.off ? P.pool.off[P.n_items] : 0;

    int max_load = 1;
    for (int u = 0; u < P.n_train; u++) {
        int l = item_load(&P, &c, P.train[u]);
        if (l > max_load) max_load = l;
    }
    int B = c.batch < P.n_train ? c.batch : P.n_train;
    long cap_pairs = (long)B * max_load;
    if (cap_pairs > (1L << 26)) {
        kp_errf(err, errlen, "train: batch too large (%ld pairs)", cap_pairs);
        goto done;
    }
    int cap_keys = cap_pairs < P.n_keys ? (int)cap_pairs : P.n_keys;
    long steps_per_epoch = (P.n_train + B - 1) / B;
    t = kp_trainer_new(m, &c, B, cap_keys, (int)cap_pairs, steps_per_epoch * c.epochs, err, errlen);
    if (!t) goto done;
    if (batch_buf_init(&bb, B, cap_keys, (int)cap_pairs, P.n_keys) != 0) {
        kp_errf(err, errlen, "train: out of memory");
        goto done;
    }
    kp_rng rng;
    kp_rng_seed(&rng, c.seed);
    long total = steps_per_epoch * c.epochs;
    kp_train_losses run;
    memset(&run, 0, sizeof(run));
    for (int ep = 0; ep < c.epochs; ep++) {
        if (distill_on && c.n_model_hard > 0 && ep > 0) {
            if (prep_model_hard(&P, m, &c, d, err, errlen) != 0) goto done;
            teacher_pairs += P.mh.off[P.n_items];
        }
        for (int u = P.n_train - 1; u > 0; u--) { /* Fisher-Yates */
            int v = (int)kp_rng_below(&rng, (uint64_t)u + 1);
            int tmp = P.train[u];
            P.train[u] = P.train[v];
            P.train[v] = tmp;
        }
        memset(&run, 0, sizeof(run));
        long n_run = 0;
        for (int u0 = 0; u0 < P.n_train; u0 += B) {
            int nb = P.n_train - u0 < B ? P.n_train - u0 : B;
            kp_train_batch b;
            build_batch(&bb, &b, &P, &c, d, P.train + u0, nb, &rng);
            if (b.n_keys == 0) continue; /* nothing to score in this batch */
            if (d->on_batch) d->on_batch(d->on_batch_ctx, &b, P.train + u0);
            kp_train_losses L;
            if (kp_trainer_step(t, &b, &L, err, errlen) != 0) goto done;
            n_run++;
            run.total += (L.total - run.total) / n_run;
            run.softmax += (L.softmax - run.softmax) / n_run;
            run.bce += (L.bce - run.bce) / n_run;
            run.sr += (L.sr - run.sr) / n_run;
            run.distill += (L.distill - run.distill) / n_run;
            run.distill_known += (L.distill_known - run.distill_known) / n_run;
            run.grad_norm += (L.grad_norm - run.grad_norm) / n_run;
            run.lr = L.lr;
            if (d->progress)
                d->progress(d->progress_ctx, "train", kp_trainer_steps(t), total, &run);
        }
    }
    if (stats) {
        stats->n_train_items = P.n_train;
        stats->steps = kp_trainer_steps(t);
        stats->teacher_pairs = teacher_pairs;
        stats->last_epoch = run;
    }
    rc = 0;
done:
    kp_trainer_free(t);
    batch_buf_free(&bb);
    prepared_free(&P);
    return rc;
}

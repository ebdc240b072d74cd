/* train_step.c - one multi-task training step of the bi-encoder (see train_step.h). */
#include "model/train_step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/blas.h"
#include "model/index.h"
#include "model/loss.h"
#include "common/util.h"
#include "model/rng.h"

/* The defaults of kp_train_config_default, but w_prefix (all 1); every other field 0. */
static const kp_train_config train_defaults = {
    .w_softmax = 1.0f,
    .w_bce = 0.0f,
    .w_sr = 1.0f,
    .w_distill = 1.0f,
    .w_distill_known = 1.0f,
    .distill = KP_DISTILL_PEARSON,
    .tau = 0.05f,
    .bce_tau = 0.1f,
    .bce_positions = 1,
    .sr_scale = 1.0f,
    .sr_shift = 0.0f,
    .mse_scale = 1.0f,
    .mse_shift = 0.0f,
    .batch = 256,
    .epochs = 5,
    .n_random = 4,
    .n_hard = 4,
    .n_model_hard = 0,
    .max_bce = 16,
    .lr = 2e-3f,
    .lr_emb = 2e-2f,
    .weight_decay = 0.0f,
    .warmup = 0.05f,
    .schedule = KP_LR_COSINE,
    .min_lr_frac = 0.05f,
    .clip = 5.0f,
    .seed = 1,
};

void kp_train_config_default(kp_train_config *c)
{
    *c = train_defaults;
    for (int i = 0; i <= KP_BIENC_MAX_PREFIX; i++)
        c->w_prefix[i] = 1.0f;
}

static int finite_nonneg(float x)
{
    return isfinite(x) && x >= 0.0f;
}

int kp_train_config_check(const kp_train_config *c, char *err, size_t errlen)
{
    if (!c) return kp_errf(err, errlen, "train config is NULL"), -1;
    if (!finite_nonneg(c->w_softmax) || !finite_nonneg(c->w_bce) || !finite_nonneg(c->w_sr) ||
        !finite_nonneg(c->w_distill) || !finite_nonneg(c->w_distill_known))
        return kp_errf(err, errlen, "loss weights must be finite and >= 0"), -1;
    if (c->distill != KP_DISTILL_PEARSON && c->distill != KP_DISTILL_MSE)
        return kp_errf(err, errlen, "distill must be pearson or mse"), -1;
    if (!(isfinite(c->tau) && c->tau > 0.0f) || !(isfinite(c->bce_tau) && c->bce_tau > 0.0f))
        return kp_errf(err, errlen, "tau and bce_tau must be > 0"), -1;
    if (!isfinite(c->sr_scale) || !isfinite(c->sr_shift) || !isfinite(c->mse_scale) ||
        !isfinite(c->mse_shift))
        return kp_errf(err, errlen, "score scales and shifts must be finite"), -1;
    for (int i = 0; i <= KP_BIENC_MAX_PREFIX; i++)
        if (!finite_nonneg(c->w_prefix[i]))
            return kp_errf(err, errlen, "prefix weights must be finite and >= 0"), -1;
    if (c->batch < 1 || c->batch > 65536)
        return kp_errf(err, errlen, "batch must be in 1..65536"), -1;
    if (c->epochs < 0 || c->epochs > 100000)
        return kp_errf(err, errlen, "epochs must be in 0..100000"), -1;
    if (c->n_random < 0 || c->n_random > 1024 || c->n_hard < 0 || c->n_hard > 1024 ||
        c->n_model_hard < 0 || c->n_model_hard > 1024)
        return kp_errf(err, errlen, "candidate counts must be in 0..1024"), -1;
    if (c->max_bce < 1 || c->max_bce > 1024)
        return kp_errf(err, errlen, "max_bce must be in 1..1024"), -1;
    if (!(isfinite(c->lr) && c->lr >= 0.0f) || !(isfinite(c->lr_emb) && c->lr_emb >= 0.0f))
        return kp_errf(err, errlen, "learning rates must be finite and >= 0"), -1;
    if (!finite_nonneg(c->weight_decay))
        return kp_errf(err, errlen, "weight decay must be finite and >= 0"), -1;
    if (!(c->warmup >= 0.0f && c->warmup <= 1.0f))
        return kp_errf(err, errlen, "warmup must be a fraction in 0..1"), -1;
    if (c->schedule != KP_LR_CONSTANT && c->schedule != KP_LR_LINEAR && c->schedule != KP_LR_COSINE)
        return kp_errf(err, errlen, "unknown learning-rate schedule"), -1;
    if (!(c->min_lr_frac >= 0.0f && c->min_lr_frac <= 1.0f))
        return kp_errf(err, errlen, "min_lr_frac must be in 0..1"), -1;
    if (!finite_nonneg(c->clip)) return kp_errf(err, errlen, "clip must be finite and >= 0"), -1;
    return 0;
}

/* ---- step level ------------------------------------------------------------------------------ */

#define N_SCALARS (1 + KP_TRAIN_MAX_POS) /* BCE bias, then one offset per position */

struct kp_trainer {
    kp_bienc *m;
    kp_train_config c;
    int max_items, max_keys, max_pairs, D;
    long total_steps, steps;
    int n_sizes;
    int size[KP_BIENC_MAX_PREFIX + 1];
    float wsize[KP_BIENC_MAX_PREFIX + 1];
    kp_bienc_acts *ai, *ak;
    kp_bienc_grads *g;
    kp_bienc_opt *o;
    float *buf;               /* one allocation for every buffer below */
    float *dei, *dek;         /* [max_items x D], [max_keys x D]: dL/d(full embeddings) */
    float *pi, *pk, *ni, *nk; /* prefix embeddings and their norms */
    float *dpi, *dpk;         /* dL/d(prefix embeddings) */
    float *as, *das;          /* softmax rows gathered from the item embeddings [max_items x D] */
    float *S, *P, *dS;        /* [max_items x max_keys] */
    float *s, *ds, *off, *doff, *lab; /* [max_pairs] */
    int *ia, *ik;                     /* [max_pairs] gathered pair indices */
    double *row_loss;                 /* [max_items] the softmax rows' cross-entropies */
    /* learnt scalars of the BCE (bias, position offsets) with their own Adam state */
    float sc[N_SCALARS], sc_g[N_SCALARS], sc_m[N_SCALARS], sc_v[N_SCALARS];
    uint64_t sc_t;
};

kp_trainer *kp_trainer_new(kp_bienc *m, const kp_train_config *c, int max_items, int max_keys,
                           int max_pairs, long total_steps, char *err, size_t errlen)
{
    if (!m) return kp_errf(err, errlen, "trainer: no model"), NULL;
    if (kp_train_config_check(c, err, errlen) != 0) return NULL;
    if (max_items < 1 || max_keys < 1 || max_pairs < 0 || total_steps < 0 ||
        max_items > (1 << 20) || max_keys > (1 << 22) || max_pairs > (1 << 26))
        return kp_errf(err, errlen, "trainer: bad capacities"), NULL;
    kp_trainer *t = calloc(1, sizeof(*t));
    if (!t) return kp_errf(err, errlen, "trainer: out of memory"), NULL;
    const kp_bienc_config *mc = kp_bienc_cfg(m);
    t->m = m;
    t->c = *c;
    t->max_items = max_items, t->max_keys = max_keys, t->max_pairs = max_pairs;
    t->D = mc->out_dim;
    t->total_steps = total_steps;
    for (int i = 0; i < mc->n_prefix; i++)
        t->size[t->n_sizes++] = mc->prefix[i];
    if (t->n_sizes == 0 || t->size[t->n_sizes - 1] != mc->out_dim)
        t->size[t->n_sizes++] = mc->out_dim;
    for (int i = 0; i < t->n_sizes; i++)
        t->wsize[i] = c->w_prefix[i];
    size_t D = (size_t)t->D, I = (size_t)max_items, K = (size_t)max_keys, Pn = (size_t)max_pairs;
    size_t n = I * D * 2 + K * D * 2 + I + K + I * D + K * D + I * D * 2 + I * K * 3 + Pn * 5;
    t->buf = malloc(n * sizeof(float));
    t->ia = malloc((Pn + 1) * sizeof(int));
    t->ik = malloc((Pn + 1) * sizeof(int));
    t->row_loss = malloc(I * sizeof(double));
    t->ai = kp_bienc_acts_new(m, max_items);
    t->ak = kp_bienc_acts_new(m, max_keys);
    t->g = kp_bienc_grads_new(m);
    kp_adam_hp hd, he;
    kp_adam_hp_default(&hd);
    hd.lr = c->lr;
    hd.weight_decay = c->weight_decay;
    kp_adam_hp_default(&he);
    he.lr = c->lr_emb;
    t->o = kp_bienc_opt_new(m, &hd, &he);
    if (!t->buf || !t->ia || !t->ik || !t->row_loss || !t->ai || !t->ak || !t->g || !t->o) {
        kp_errf(err, errlen, "trainer: out of memory");
        goto err;
    }
    float *p = t->buf;
    t->dei = p, p += I * D;
    t->pi = p, p += I * D;
    t->dek = p, p += K * D;
    t->pk = p, p += K * D;
    t->ni = p, p += I;
    t->nk = p, p += K;
    t->dpi = p, p += I * D;
    t->dpk = p, p += K * D;
    t->as = p, p += I * D;
    t->das = p, p += I * D;
    t->S = p, p += I * K;
    t->P = p, p += I * K;
    t->dS = p, p += I * K;
    t->s = p, p += Pn;
    t->ds = p, p += Pn;
    t->off = p, p += Pn;
    t->doff = p, p += Pn;
    t->lab = p;
    return t;
err:
    kp_trainer_free(t);
    return NULL;
}

void kp_trainer_free(kp_trainer *t)
{
    if (!t) return;
    kp_bienc_acts_free(t->ai);
    kp_bienc_acts_free(t->ak);
    kp_bienc_grads_free(t->g);
    kp_bienc_opt_free(t->o);
    KP_FREE_ALL(t->buf, t->ia, t->ik, t->row_loss, t);
}

long kp_trainer_steps(const kp_trainer *t)
{
    return t->steps;
}

/* Learning-rate factor of step `step` (0-based): linear warmup, then the schedule. */
static float lr_factor(const kp_train_config *c, long total, long step)
{
    long warm = total > 0 ? (long)(c->warmup * (float)total) : 100;
    if (c->warmup <= 0.0f) warm = 0;
    if (step < warm) return (float)(step + 1) / (float)warm;
    if (total <= 0 || c->schedule == KP_LR_CONSTANT) return 1.0f;
    double span = (double)(total - warm > 1 ? total - warm : 1);
    double p = (double)(step - warm) / span;
    if (p > 1.0) p = 1.0;
    double lo = c->min_lr_frac;
    if (c->schedule == KP_LR_LINEAR) return (float)(1.0 - (1.0 - lo) * p);
    return (float)(lo + (1.0 - lo) * 0.5 * (1.0 + cos(3.14159265358979323846 * p)));
}

float kp_trainer_lr(const kp_trainer *t)
{
    return t->c.lr * lr_factor(&t->c, t->total_steps, t->steps);
}

const kp_rowgrad *kp_trainer_changed_rows(const kp_trainer *t, kp_tower tw)
{
    return kp_bienc_grads_emb(t->g, tw);
}

static int idx_ok(const int *a, int n, int hi)
{
    for (int i = 0; i < n; i++)
        if (a[i] < 0 || a[i] >= hi) return 0;
    return 1;
}

static int labels_ok(const float *y, int n, float lo, float hi)
{
    for (int i = 0; i < n; i++)
        if (!(y[i] >= lo && y[i] <= hi)) return 0; /* also rejects NaN */
    return 1;
}

static int batch_check(const kp_trainer *t, const kp_train_batch *b, char *err, size_t errlen)
{
    if (!b) return kp_errf(err, errlen, "train step: no batch"), -1;
    if (b->n_items < 1 || b->n_items > t->max_items || b->n_keys < 1 || b->n_keys > t->max_keys ||
        !b->items || !b->keys)
        return kp_errf(err, errlen, "train step: %d items / %d keyphrases outside 1..%d / 1..%d",
                       b->n_items, b->n_keys, t->max_items, t->max_keys),
               -1;
    if (b->n_soft < 0 || b->n_soft > t->max_items || b->n_bce < 0 || b->n_bce > t->max_pairs ||
        b->n_sr < 0 || b->n_sr > t->max_pairs || b->n_dis < 0 || b->n_dis > t->max_pairs)
        return kp_errf(err, errlen, "train step: more pairs than the trainer's capacity"), -1;
    if ((b->n_soft && (!b->soft_item || !b->soft_key)) ||
        (b->n_bce && (!b->bce_item || !b->bce_key || !b->bce_label)) ||
        (b->n_sr && (!b->sr_item || !b->sr_key || !b->sr_label)) ||
        (b->n_dis && (!b->dis_item || !b->dis_key || !b->dis_teacher)))
        return kp_errf(err, errlen, "train step: missing pair arrays"), -1;
    if (!idx_ok(b->soft_item, b->n_soft, b->n_items) ||
        !idx_ok(b->soft_key, b->n_soft, b->n_keys) || !idx_ok(b->bce_item, b->n_bce, b->n_items) ||
        !idx_ok(b->bce_key, b->n_bce, b->n_keys) || !idx_ok(b->sr_item, b->n_sr, b->n_items) ||
        !idx_ok(b->sr_key, b->n_sr, b->n_keys) || !idx_ok(b->dis_item, b->n_dis, b->n_items) ||
        !idx_ok(b->dis_key, b->n_dis, b->n_keys))
        return kp_errf(err, errlen, "train step: pair index out of range"), -1;
    if (!labels_ok(b->bce_label, b->n_bce, 0.0f, 1.0f) ||
        !labels_ok(b->sr_label, b->n_sr, 0.0f, 1.0f))
        return kp_errf(err, errlen, "train step: click rates and SR labels must be in 0..1"), -1;
    if (!labels_ok(b->dis_teacher, b->n_dis, -1e30f, 1e30f))
        return kp_errf(err, errlen, "train step: teacher scores must be finite"), -1;
    if (b->bce_weight && !labels_ok(b->bce_weight, b->n_bce, 0.0f, 1e30f))
        return kp_errf(err, errlen, "train step: BCE weights must be finite and >= 0"), -1;
    if (b->bce_pos)
        for (int i = 0; i < b->n_bce; i++)
            if (b->bce_pos[i] < 1)
                return kp_errf(err, errlen, "train step: positions start at 1"), -1;
    return 0;
}

/* The distillation loss (Pearson or MSE, per c->distill) of scores s[0..n) against teacher[0..n);
 * its gradient, weighted by w, goes to ds (zeroed first). */
static float distill_loss(const kp_train_config *c, const float *s, const float *teacher, float *ds,
                          int n, float w)
{
    memset(ds, 0, (size_t)n * sizeof(float));
    if (c->distill == KP_DISTILL_PEARSON) {
        float l = kp_loss_pearson_forward(s, teacher, n);
        kp_loss_pearson_backward(ds, s, teacher, n, w);
        return l;
    }
    float l = kp_loss_mse_forward(s, teacher, n, c->mse_scale, c->mse_shift);
    kp_loss_mse_backward(ds, s, teacher, n, c->mse_scale, c->mse_shift, w);
    return l;
}

/* The in-batch softmax's scores and row softmaxes, rows [lo, hi) (a kp_parallel_parts range: the
 * same two parts at every width, so the GEMM calls are the same): a row's scores and softmax
 * depend on that row only, and the loss is summed in row order after the fan-out, so the split
 * gives what one thread does. */
typedef struct {
    kp_trainer *t;
    const kp_train_batch *b;
    const float *K;
    int p;
} soft_job;

static int soft_range(void *ctx, int th, int lo, int hi)
{
    (void)th;
    const soft_job *j = ctx;
    kp_trainer *t = j->t;
    int nK = j->b->n_keys;
    kp_scores_forward(t->S + (size_t)lo * nK, t->as + (size_t)lo * j->p, j->K, hi - lo, nK, j->p);
    kp_loss_softmax_forward_rows(t->P, t->S, j->b->soft_key, j->b->soft_mask, lo, hi, nK, t->c.tau,
                                 t->row_loss);
    return 0;
}

/* *term += wz * l and L->total += wz * w * l (a loss term l of weight w, at prefix weight wz). */
static void add_term(kp_train_losses *L, double *term, float wz, float w, float l)
{
    *term += wz * l;
    L->total += wz * w * l;
}

/* All loss terms at one Matryoshka size p: A [nI x p], K [nK x p] are the (prefix) embeddings,
 * dA/dK receive the weighted gradients (+=). Adds wz-weighted terms into *L. */
static void terms_at(kp_trainer *t, const kp_train_batch *b, const float *A, const float *K,
                     float *dA, float *dK, int p, float wz, kp_train_losses *L)
{
    const kp_train_config *c = &t->c;
    int nK = b->n_keys;
    if (c->w_softmax > 0.0f && b->n_soft > 0) {
        int R = b->n_soft;
        for (int r = 0; r < R; r++)
            memcpy(t->as + (size_t)r * p, A + (size_t)b->soft_item[r] * p,
                   (size_t)p * sizeof(float));
        int width = R >= 32 ? kp_par_threads() : 1;
        soft_job sj = {t, b, K, p};
        kp_parallel_parts(width, R >= 32 ? 2 : 1, R, soft_range, &sj);
        double sum = 0.0;
        for (int r = 0; r < R; r++)
            sum += t->row_loss[r];
        float l = (float)(sum / R); /* = kp_loss_softmax_forward's */
        memset(t->dS, 0, (size_t)R * nK * sizeof(float));
        kp_loss_softmax_backward(t->dS, t->P, b->soft_key, b->soft_mask, R, nK, c->tau,
                                 wz * c->w_softmax);
        memset(t->das, 0, (size_t)R * p * sizeof(float));
        kp_scores_backward_split(t->das, dK, t->dS, t->as, K, R, nK, p, width);
        for (int r = 0; r < R; r++) {
            float *da = dA + (size_t)b->soft_item[r] * p;
            const float *g = t->das + (size_t)r * p;
            for (int d = 0; d < p; d++)
                da[d] += g[d];
        }
        add_term(L, &L->softmax, wz, c->w_softmax, l);
    }
    if (c->w_bce > 0.0f && b->n_bce > 0) {
        int n = b->n_bce;
        kp_pairdot_forward(t->s, A, K, b->bce_item, b->bce_key, n, p);
        const float *off = NULL;
        if (c->bce_positions && b->bce_pos) {
            for (int i = 0; i < n; i++) {
                int q = b->bce_pos[i] < KP_TRAIN_MAX_POS ? b->bce_pos[i] : KP_TRAIN_MAX_POS;
                t->off[i] = t->sc[q];
            }
            off = t->off;
        }
        float l =
            kp_loss_bce_forward(t->s, b->bce_label, b->bce_weight, off, n, c->bce_tau, t->sc[0]);
        memset(t->ds, 0, (size_t)n * sizeof(float));
        memset(t->doff, 0, (size_t)n * sizeof(float));
        kp_loss_bce_backward(t->ds, off ? t->doff : NULL, &t->sc_g[0], t->s, b->bce_label,
                             b->bce_weight, off, n, c->bce_tau, t->sc[0], wz * c->w_bce);
        if (off)
            for (int i = 0; i < n; i++) {
                int q = b->bce_pos[i] < KP_TRAIN_MAX_POS ? b->bce_pos[i] : KP_TRAIN_MAX_POS;
                t->sc_g[q] += t->doff[i];
            }
        kp_pairdot_backward(dA, dK, t->ds, A, K, b->bce_item, b->bce_key, n, p);
        add_term(L, &L->bce, wz, c->w_bce, l);
    }
    if (c->w_sr > 0.0f && b->n_sr > 0) {
        int n = b->n_sr;
        kp_pairdot_forward(t->s, A, K, b->sr_item, b->sr_key, n, p);
        float l = kp_loss_mse_forward(t->s, b->sr_label, n, c->sr_scale, c->sr_shift);
        memset(t->ds, 0, (size_t)n * sizeof(float));
        kp_loss_mse_backward(t->ds, t->s, b->sr_label, n, c->sr_scale, c->sr_shift, wz * c->w_sr);
        kp_pairdot_backward(dA, dK, t->ds, A, K, b->sr_item, b->sr_key, n, p);
        add_term(L, &L->sr, wz, c->w_sr, l);
    }
    if (c->w_distill > 0.0f && b->n_dis > 0) {
        int n = b->n_dis;
        kp_pairdot_forward(t->s, A, K, b->dis_item, b->dis_key, n, p);
        float l = distill_loss(c, t->s, b->dis_teacher, t->ds, n, wz * c->w_distill);
        kp_pairdot_backward(dA, dK, t->ds, A, K, b->dis_item, b->dis_key, n, p);
        add_term(L, &L->distill, wz, c->w_distill, l);
    }
    if (c->w_distill_known > 0.0f && b->n_dis > 0 && b->dis_known) {
        /* gather the known pairs: scores into off, teacher into lab, gradients into doff */
        int n = 0;
        for (int q = 0; q < b->n_dis; q++)
            if (b->dis_known[q])
                t->ia[n] = b->dis_item[q], t->ik[n] = b->dis_key[q], t->lab[n] = b->dis_teacher[q],
                n++;
        kp_pairdot_forward(t->off, A, K, t->ia, t->ik, n, p);
        float w = wz * c->w_distill_known;
        float l = distill_loss(c, t->off, t->lab, t->doff, n, w);
        kp_pairdot_backward(dA, dK, t->doff, A, K, t->ia, t->ik, n, p);
        L->distill_known += wz * l;
        L->total += w * l;
    }
}

int kp_trainer_step(kp_trainer *t, const kp_train_batch *b, kp_train_losses *out, char *err,
                    size_t errlen)
{
    if (!t) return kp_errf(err, errlen, "train step: no trainer"), -1;
    if (batch_check(t, b, err, errlen) != 0) return -1;
    kp_bienc *m = t->m;
    int D = t->D, nI = b->n_items, nK = b->n_keys;
    const float *EI = kp_bienc_forward(m, KP_TOWER_ITEM, t->ai, b->items, NULL, nI);
    const float *EK = kp_bienc_forward(m, KP_TOWER_KEY, t->ak, b->keys, NULL, nK);
    if (!EI || !EK) return kp_errf(err, errlen, "train step: forward failed"), -1;
    kp_bienc_grads_zero(t->g);
    memset(t->dei, 0, (size_t)nI * D * sizeof(float));
    memset(t->dek, 0, (size_t)nK * D * sizeof(float));
    memset(t->sc_g, 0, sizeof(t->sc_g));
    kp_train_losses L;
    memset(&L, 0, sizeof(L));
    double wsum = 0.0;
    for (int z = 0; z < t->n_sizes; z++) {
        int p = t->size[z];
        float wz = t->wsize[z];
        if (wz <= 0.0f) continue;
        wsum += wz;
        if (p == D) { /* the full embedding: no re-normalisation needed */
            terms_at(t, b, EI, EK, t->dei, t->dek, p, wz, &L);
            continue;
        }
        kp_bienc_prefix(EI, nI, D, p, t->pi, t->ni);
        kp_bienc_prefix(EK, nK, D, p, t->pk, t->nk);
        memset(t->dpi, 0, (size_t)nI * p * sizeof(float));
        memset(t->dpk, 0, (size_t)nK * p * sizeof(float));
        terms_at(t, b, t->pi, t->pk, t->dpi, t->dpk, p, wz, &L);
        kp_bienc_prefix_backward(t->dei, t->dpi, t->pi, t->ni, nI, D, p);
        kp_bienc_prefix_backward(t->dek, t->dpk, t->pk, t->nk, nK, D, p);
    }
    if (wsum > 0.0) {
        L.softmax /= wsum, L.bce /= wsum, L.sr /= wsum, L.distill /= wsum;
        L.distill_known /= wsum;
    }
    if (!isfinite(L.total)) return kp_errf(err, errlen, "train step: loss is not finite"), -1;
    if (kp_bienc_backward(m, t->ai, t->dei, t->g) != 0 ||
        kp_bienc_backward(m, t->ak, t->dek, t->g) != 0)
        return kp_errf(err, errlen, "train step: backward failed (out of memory)"), -1;
    double gn = kp_bienc_grads_norm(t->g);
    if (!isfinite(gn)) return kp_errf(err, errlen, "train step: gradient is not finite"), -1;
    L.grad_norm = gn;
    if (t->c.clip > 0.0f && gn > t->c.clip) {
        float s = (float)(t->c.clip / gn);
        kp_bienc_grads_scale(t->g, s);
        for (int i = 0; i < N_SCALARS; i++)
            t->sc_g[i] *= s;
    }
    float f = lr_factor(&t->c, t->total_steps, t->steps);
    L.lr = t->c.lr * f;
    kp_bienc_opt_set_lr(t->o, t->c.lr * f, t->c.lr_emb * f);
    kp_bienc_opt_step(m, t->o, t->g);
    if (t->c.w_bce > 0.0f && b->n_bce > 0) {
        kp_adam_hp hp;
        kp_adam_hp_default(&hp);
        hp.lr = t->c.lr * f;
        kp_adamw_update(t->sc, t->sc_g, t->sc_m, t->sc_v, N_SCALARS, &hp, ++t->sc_t);
    }
    t->steps++;
    if (out) *out = L;
    return 0;
}

/* ---- optimiser state in checkpoints ---- */

static const char *state_tower[2] = {"item", "key"};

/* u32 values as two exactly representable f32 halves (hi, lo). */
static void split_u32(const uint32_t *x, size_t n, float *hi, float *lo)
{
    for (size_t i = 0; i < n; i++)
        hi[i] = (float)(x[i] >> 16), lo[i] = (float)(x[i] & 0xffffu);
}

int kp_trainer_save_state(kp_ckpt_writer *w, void *ctx)
{
    kp_trainer *t = ctx;
    char name[64];
    int rc = 0;
    kp_ckpt_put_u64(w, "opt.steps", (uint64_t)t->steps);
    kp_ckpt_put_u64(w, "opt.sc_t", t->sc_t);
    uint64_t ns = N_SCALARS;
    kp_ckpt_put_tensor(w, "opt.sc", t->sc, 1, &ns);
    kp_ckpt_put_tensor(w, "opt.sc_m", t->sc_m, 1, &ns);
    kp_ckpt_put_tensor(w, "opt.sc_v", t->sc_v, 1, &ns);
    for (int tw = 0; tw < kp_bienc_n_towers(t->m); tw++) {
        kp_bienc_opt_view v;
        if (kp_bienc_opt_state(t->o, t->m, tw, &v)) return -1;
        if (tw == 0) kp_ckpt_put_u64(w, "opt.t", *v.t);
        uint64_t nd = v.n_dense;
        snprintf(name, sizeof name, "opt.%s.m_dense", state_tower[tw]);
        kp_ckpt_put_tensor(w, name, v.m_dense, 1, &nd);
        snprintf(name, sizeof name, "opt.%s.v_dense", state_tower[tw]);
        kp_ckpt_put_tensor(w, name, v.v_dense, 1, &nd);
        size_t k = 0;
        for (size_t r = 0; r < v.n_rows; r++)
            k += v.row_t[r] != 0;
        snprintf(name, sizeof name, "opt.%s.rows", state_tower[tw]);
        kp_ckpt_put_u64(w, name, k);
        if (!k) continue;
        uint32_t *ids = malloc(sizeof(uint32_t) * k), *ts = malloc(sizeof(uint32_t) * k);
        float *f = malloc(sizeof(float) * k * (v.row_dim > 2 ? v.row_dim : 2));
        if (!ids || !ts || !f) {
            free(ids), free(ts), free(f);
            return -1;
        }
        for (size_t r = 0, j = 0; r < v.n_rows; r++)
            if (v.row_t[r]) ids[j] = (uint32_t)r, ts[j++] = v.row_t[r];
        uint64_t d1 = k, d2[2] = {k, v.row_dim};
        static const char *const hl[4] = {"ids_hi", "ids_lo", "t_hi", "t_lo"};
        for (int q = 0; q < 2; q++) {
            split_u32(q ? ts : ids, k, f, f + k);
            for (int h = 0; h < 2; h++) {
                snprintf(name, sizeof name, "opt.%s.%s", state_tower[tw], hl[2 * q + h]);
                kp_ckpt_put_tensor(w, name, f + (size_t)h * k, 1, &d1);
            }
        }
        for (int q = 0; q < 2; q++) {
            const float *src = q ? v.v_emb : v.m_emb;
            for (size_t j = 0; j < k; j++)
                memcpy(f + j * v.row_dim, src + (size_t)ids[j] * v.row_dim,
                       sizeof(float) * v.row_dim);
            snprintf(name, sizeof name, "opt.%s.%s", state_tower[tw], q ? "v_rows" : "m_rows");
            if (kp_ckpt_put_tensor(w, name, f, 2, d2)) rc = -1;
        }
        free(ids), free(ts), free(f);
    }
    return rc;
}

int kp_trainer_load_state(kp_trainer *t, kp_ckpt_reader *r, char *err, size_t errlen)
{
    char name[64];
    uint64_t steps, sc_t, ot, ns = N_SCALARS;
    if (kp_ckpt_get_u64(r, "opt.steps", &steps) || kp_ckpt_get_u64(r, "opt.sc_t", &sc_t) ||
        kp_ckpt_get_u64(r, "opt.t", &ot))
        return kp_errf(err, errlen, "checkpoint has no optimiser state"), -1;
    if (kp_ckpt_read_tensor(r, "opt.sc", t->sc, 1, &ns, err, errlen) ||
        kp_ckpt_read_tensor(r, "opt.sc_m", t->sc_m, 1, &ns, err, errlen) ||
        kp_ckpt_read_tensor(r, "opt.sc_v", t->sc_v, 1, &ns, err, errlen))
        return -1;
    for (int tw = 0; tw < kp_bienc_n_towers(t->m); tw++) {
        kp_bienc_opt_view v;
        uint64_t k, nd;
        if (kp_bienc_opt_state(t->o, t->m, tw, &v)) return kp_errf(err, errlen, "tower"), -1;
        nd = v.n_dense;
        snprintf(name, sizeof name, "opt.%s.m_dense", state_tower[tw]);
        if (kp_ckpt_read_tensor(r, name, v.m_dense, 1, &nd, err, errlen)) return -1;
        snprintf(name, sizeof name, "opt.%s.v_dense", state_tower[tw]);
        if (kp_ckpt_read_tensor(r, name, v.v_dense, 1, &nd, err, errlen)) return -1;
        snprintf(name, sizeof name, "opt.%s.rows", state_tower[tw]);
        if (kp_ckpt_get_u64(r, name, &k) || k > v.n_rows)
            return kp_errf(err, errlen, "checkpoint: bad %s", name), -1;
        memset(v.row_t, 0, sizeof(uint32_t) * v.n_rows);
        memset(v.m_emb, 0, sizeof(float) * v.n_emb);
        memset(v.v_emb, 0, sizeof(float) * v.n_emb);
        *v.t = ot;
        if (!k) continue;
        float *f = malloc(sizeof(float) * k * (v.row_dim > 4 ? v.row_dim : 4));
        uint32_t *ids = malloc(sizeof(uint32_t) * k);
        if (!f || !ids) {
            free(f), free(ids);
            return kp_errf(err, errlen, "out of memory"), -1;
        }
        uint64_t d1 = k, d2[2] = {k, v.row_dim};
        static const char *const hl[4] = {"ids_hi", "ids_lo", "t_hi", "t_lo"};
        int rc = 0;
        for (int q = 0; q < 4 && !rc; q++) {
            snprintf(name, sizeof name, "opt.%s.%s", state_tower[tw], hl[q]);
            rc = kp_ckpt_read_tensor(r, name, f + (size_t)q * k, 1, &d1, err, errlen);
        }
        for (size_t j = 0; j < k && !rc; j++) {
            uint32_t id = ((uint32_t)f[j] << 16) | (uint32_t)f[k + j];
            if (id >= v.n_rows) {
                kp_errf(err, errlen, "checkpoint: row id out of range");
                rc = -1;
                break;
            }
            ids[j] = id;
            v.row_t[id] = ((uint32_t)f[2 * k + j] << 16) | (uint32_t)f[3 * k + j];
        }
        for (int q = 0; q < 2 && !rc; q++) {
            snprintf(name, sizeof name, "opt.%s.%s", state_tower[tw], q ? "v_rows" : "m_rows");
            rc = kp_ckpt_read_tensor(r, name, f, 2, d2, err, errlen);
            float *dst = q ? v.v_emb : v.m_emb;
            for (size_t j = 0; j < k && !rc; j++)
                memcpy(dst + (size_t)ids[j] * v.row_dim, f + j * v.row_dim,
                       sizeof(float) * v.row_dim);
        }
        free(f), free(ids);
        if (rc) return -1;
    }
    t->steps = (long)steps;
    t->sc_t = sc_t;
    return 0;
}

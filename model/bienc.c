/* bienc.c - bi-encoder towers, training forward/backward, Adam state (see bienc.h). */
#include "model/bienc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/featurize.h"
#include "model/blas.h"
#include "model/rng.h"
#include "model/vmath.h"

typedef struct {
    float *emb;   /* [n_buckets x E], its own allocation */
    float *dense; /* one allocation: W1 [H x E] | b1 [H] | W2 [D x H] | b2 [D] */
    float *W1, *b1, *W2, *b2;
} tower_params;

struct kp_bienc {
    kp_bienc_config cfg;
    uint64_t version;
    int n_towers;
    tower_params tw[2];
    size_t n_emb, n_dense; /* floats per tower */
};

struct kp_bienc_acts {
    int cap, n, E, H, D;
    int tw; /* tower slot of the last forward, -1 = none */
    uint32_t *ids;
    int *offsets;
    int *loc;      /* [cap + 2]: the split forward's per-half offsets */
    int32_t *slot; /* [cap x KP_FEAT_MAX_IDS]: the split backward's gradient slot of each id */
    float *buf;    /* one allocation for everything below */
    float *bag, *h, *out, *norm, *dz, *dh, *dbag;
};

struct kp_bienc_grads {
    int n_towers;
    size_t n_dense;
    float *dense[2]; /* same layout as tower_params.dense */
    kp_rowgrad emb[2];
    int H, E, D;
};

struct kp_bienc_opt {
    kp_adam_hp hp_dense, hp_emb;
    uint64_t t;
    int n_towers;
    float *m_dense[2], *v_dense[2];
    float *m_emb[2], *v_emb[2];
    uint32_t *row_t[2];
};

void kp_bienc_config_default(kp_bienc_config *c)
{
    memset(c, 0, sizeof(*c));
    c->n_buckets = 1u << 18;
    c->emb_dim = 128;
    c->hidden_dim = 256;
    c->out_dim = 128;
    c->shared_towers = 1;
    c->n_prefix = 3;
    c->prefix[0] = 32;
    c->prefix[1] = 64;
    c->prefix[2] = 128;
}

int kp_bienc_config_check(const kp_bienc_config *c, char *err, size_t errlen)
{
    if (!c) return kp_errf(err, errlen, "config is NULL"), -1;
    if (c->n_buckets == 0 || c->n_buckets > (1u << 30))
        return kp_errf(err, errlen, "n_buckets must be in 1..2^30"), -1;
    if (c->emb_dim <= 0 || c->emb_dim > KP_BIENC_MAX_DIM || c->hidden_dim <= 0 ||
        c->hidden_dim > KP_BIENC_MAX_DIM || c->out_dim <= 0 || c->out_dim > KP_BIENC_MAX_DIM)
        return kp_errf(err, errlen, "emb_dim, hidden_dim and out_dim must be in 1..4096"), -1;
    if (c->shared_towers != 0 && c->shared_towers != 1)
        return kp_errf(err, errlen, "shared_towers must be 0 or 1"), -1;
    if (c->n_prefix < 0 || c->n_prefix > KP_BIENC_MAX_PREFIX)
        return kp_errf(err, errlen, "n_prefix must be in 0..8"), -1;
    for (int i = 0; i < c->n_prefix; i++) {
        if (c->prefix[i] <= 0 || c->prefix[i] > c->out_dim)
            return kp_errf(err, errlen, "prefix sizes must be in 1..out_dim"), -1;
        if (i > 0 && c->prefix[i] <= c->prefix[i - 1])
            return kp_errf(err, errlen, "prefix sizes must be strictly ascending"), -1;
    }
    if ((uint64_t)c->n_buckets * (uint64_t)c->emb_dim > ((uint64_t)1 << 34))
        return kp_errf(err, errlen, "embedding table too large (n_buckets * emb_dim > 2^34)"), -1;
    return 0;
}

static void tower_layout(const kp_bienc_config *c, tower_params *tp)
{
    size_t E = (size_t)c->emb_dim, H = (size_t)c->hidden_dim;
    tp->W1 = tp->dense;
    tp->b1 = tp->W1 + H * E;
    tp->W2 = tp->b1 + H;
    tp->b2 = tp->W2 + (size_t)c->out_dim * H;
}

static kp_bienc *bienc_alloc(const kp_bienc_config *c)
{
    if (kp_bienc_config_check(c, NULL, 0) != 0) return NULL;
    kp_bienc *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    m->cfg = *c;
    m->n_towers = c->shared_towers ? 1 : 2;
    size_t E = (size_t)c->emb_dim, H = (size_t)c->hidden_dim, D = (size_t)c->out_dim;
    m->n_emb = (size_t)c->n_buckets * E;
    m->n_dense = H * E + H + D * H + D;
    for (int t = 0; t < m->n_towers; t++) {
        m->tw[t].emb = kp_big_alloc(m->n_emb * sizeof(float));
        m->tw[t].dense = calloc(m->n_dense, sizeof(float));
        if (!m->tw[t].emb || !m->tw[t].dense) goto err;
        tower_layout(c, &m->tw[t]);
    }
    return m;
err:
    kp_bienc_free(m);
    return NULL;
}

kp_bienc *kp_bienc_new_zero(const kp_bienc_config *c)
{
    return bienc_alloc(c);
}

kp_bienc *kp_bienc_new(const kp_bienc_config *c, uint64_t seed)
{
    kp_bienc *m = bienc_alloc(c);
    if (!m) return NULL;
    kp_rng r;
    kp_rng_seed(&r, seed);
    size_t E = (size_t)c->emb_dim, H = (size_t)c->hidden_dim, D = (size_t)c->out_dim;
    float a1 = 1.0f / sqrtf((float)E), a2 = 1.0f / sqrtf((float)H);
    for (int t = 0; t < m->n_towers; t++) {
        tower_params *tp = &m->tw[t];
        for (size_t i = 0; i < m->n_emb; i++)
            tp->emb[i] = kp_rng_normal(&r);
        for (size_t i = 0; i < H * E; i++)
            tp->W1[i] = a1 * (2.0f * kp_rng_uniform(&r) - 1.0f);
        for (size_t i = 0; i < D * H; i++)
            tp->W2[i] = a2 * (2.0f * kp_rng_uniform(&r) - 1.0f);
    }
    return m;
}

void kp_bienc_free(kp_bienc *m)
{
    if (!m) return;
    for (int t = 0; t < 2; t++) {
        kp_big_free(m->tw[t].emb);
        free(m->tw[t].dense);
    }
    free(m);
}

const kp_bienc_config *kp_bienc_cfg(const kp_bienc *m)
{
    return &m->cfg;
}

uint64_t kp_bienc_version(const kp_bienc *m)
{
    return m->version;
}

void kp_bienc_set_version(kp_bienc *m, uint64_t v)
{
    m->version = v;
}

int kp_bienc_n_towers(const kp_bienc *m)
{
    return m->n_towers;
}

static int tower_slot(const kp_bienc *m, kp_tower t)
{
    return (m->n_towers == 1 || t == KP_TOWER_ITEM) ? 0 : 1;
}

const float *kp_bienc_param_c(const kp_bienc *m, kp_tower t, kp_bienc_param_id p, size_t *rows,
                              size_t *cols)
{
    const tower_params *tp = &m->tw[tower_slot(m, t)];
    size_t E = (size_t)m->cfg.emb_dim, H = (size_t)m->cfg.hidden_dim, D = (size_t)m->cfg.out_dim;
    size_t r = 1, c = 0;
    const float *ptr = NULL;
    switch (p) {
    case KP_BIENC_EMB:
        r = m->cfg.n_buckets, c = E, ptr = tp->emb;
        break;
    case KP_BIENC_W1:
        r = H, c = E, ptr = tp->W1;
        break;
    case KP_BIENC_B1:
        c = H, ptr = tp->b1;
        break;
    case KP_BIENC_W2:
        r = D, c = H, ptr = tp->W2;
        break;
    case KP_BIENC_B2:
        c = D, ptr = tp->b2;
        break;
    default:
        return NULL;
    }
    if (rows) *rows = r;
    if (cols) *cols = c;
    return ptr;
}

float *kp_bienc_param(kp_bienc *m, kp_tower t, kp_bienc_param_id p, size_t *rows, size_t *cols)
{
    return (float *)kp_bienc_param_c(m, t, p, rows, cols);
}

const char *kp_bienc_param_name(kp_bienc_param_id p)
{
    static const char *names[KP_BIENC_NPARAM] = {"emb", "w1", "b1", "w2", "b2"};
    if ((int)p < 0 || p >= KP_BIENC_NPARAM) return NULL;
    return names[p];
}

int kp_bienc_copy(kp_bienc *dst, const kp_bienc *src)
{
    if (!dst || !src || memcmp(&dst->cfg, &src->cfg, sizeof(dst->cfg)) != 0) return -1;
    for (int t = 0; t < src->n_towers; t++) {
        memcpy(dst->tw[t].emb, src->tw[t].emb, src->n_emb * sizeof(float));
        memcpy(dst->tw[t].dense, src->tw[t].dense, src->n_dense * sizeof(float));
    }
    dst->version = src->version;
    return 0;
}

/* ---- forward shared by inference and training ------------------------------------------------ */

/* h [B x H] and out [B x D] are written from bag [B x E]; norm [B] gets the L2 divisors. */
static void tower_dense(const kp_bienc *m, const tower_params *tp, const float *bag, int B,
                        float *h, float *out, float *norm)
{
    int E = m->cfg.emb_dim, H = m->cfg.hidden_dim, D = m->cfg.out_dim;
    kp_linear_forward_gemv1(h, bag, tp->W1, tp->b1, B, E, H);
    kp_tanh_forward(h, h, (size_t)B * (size_t)H);
    kp_linear_forward_gemv1(out, h, tp->W2, tp->b2, B, H, D);
    kp_l2norm_forward(out, norm, out, B, D);
}

static int ids_valid(const kp_bienc *m, const uint32_t *ids, const int *offsets, int n)
{
    if (offsets[0] != 0) return 0;
    for (int b = 0; b < n; b++)
        if (offsets[b + 1] < offsets[b]) return 0;
    for (int i = 0; i < offsets[n]; i++)
        if (ids[i] >= m->cfg.n_buckets) return 0;
    return 1;
}

/* Texts r0 .. r0 + nb - 1 (a NULL text is empty; lens NULL: NUL-terminated) featurized into
 * ids, one after another, with off[0..nb] their offsets (off[0] = 0; ids has room for
 * nb * KP_FEAT_MAX_IDS). */
static void featurize_rows(const kp_bienc *m, const char *const *texts, const size_t *lens, int r0,
                           int nb, uint32_t *ids, int *off)
{
    off[0] = 0;
    for (int i = 0; i < nb; i++) {
        const char *s = texts[r0 + i];
        size_t len = s ? (lens ? lens[r0 + i] : strlen(s)) : 0;
        off[i + 1] = off[i] + kp_featurize(s, len, m->cfg.n_buckets, ids + off[i], KP_FEAT_MAX_IDS);
    }
}

/* Inference runs in blocks of EMBED_BLOCK rows, each cut in chunks of EMBED_CHUNK rows: the
 * featurizing, the embedding bag (the gathers from the table: most of the time) and the dense
 * layers of a chunk. With split width 2 (kp_par_threads, model/blas.h) and a block of
 * EMBED_SPLIT_MIN rows or more, the chunks are shared out in two runs of whole chunks on two
 * threads; the chunks start at the same rows whatever the width, so the GEMMs and the results
 * are the same bit for bit. */
#define EMBED_CHUNK     64
#define EMBED_BLOCK     256
#define EMBED_SPLIT_MIN 32

/* A block's chunks [lo, hi) (a kp_parallel_for range over chunks): rows b0 + lo * EMBED_CHUNK ..
 * of texts (or of ids/offsets, absolute). The range owns idbuf and bag from its first row, the
 * offsets off[row + t ..] (one more than its rows) and scratch t (h, norm). */
typedef struct {
    const kp_bienc *m;
    const tower_params *tp;
    const char *const *texts; /* texts + lens, or NULL and ids + offsets */
    const size_t *lens;
    const uint32_t *ids;
    const int *offsets;
    int b0, nb;
    uint32_t *idbuf; /* texts: [block x KP_FEAT_MAX_IDS] */
    int *off;        /* [block + 2] */
    float *bag;      /* [block x E] */
    float *h[2];     /* [EMBED_CHUNK x (H + 1)] each: h, then norm */
    float *out;      /* the call's out */
} bag_job;

static int bag_range(void *ctx, int t, int clo, int chi)
{
    const bag_job *j = ctx;
    int E = j->m->cfg.emb_dim, H = j->m->cfg.hidden_dim, D = j->m->cfg.out_dim;
    int lo = clo * EMBED_CHUNK, hi = chi * EMBED_CHUNK < j->nb ? chi * EMBED_CHUNK : j->nb;
    int nb = hi - lo, r0 = j->b0 + lo;
    int *off = j->off + lo + t;
    float *bag = j->bag + (size_t)lo * E;
    if (!j->texts) {
        for (int i = 0; i <= nb; i++)
            off[i] = j->offsets[r0 + i] - j->offsets[r0];
        kp_embbag_forward(bag, j->tp->emb, j->ids + j->offsets[r0], off, nb, E);
    } else {
        uint32_t *idbuf = j->idbuf + (size_t)lo * KP_FEAT_MAX_IDS;
        featurize_rows(j->m, j->texts, j->lens, r0, nb, idbuf, off);
        kp_embbag_forward(bag, j->tp->emb, idbuf, off, nb, E);
    }
    float *h = j->h[t], *norm = h + (size_t)EMBED_CHUNK * H;
    for (int c0 = 0; c0 < nb; c0 += EMBED_CHUNK) {
        int nc = nb - c0 < EMBED_CHUNK ? nb - c0 : EMBED_CHUNK;
        tower_dense(j->m, j->tp, bag + (size_t)c0 * E, nc, h, j->out + (size_t)(r0 + c0) * D, norm);
    }
    return 0;
}

/* kp_bienc_embed (texts) and kp_bienc_embed_ids (ids, validated) over n >= 1 rows. */
static int embed_rows(const kp_bienc *m, kp_tower t, const char *const *texts, const size_t *lens,
                      const uint32_t *ids, const int *offsets, int n, float *out)
{
    int E = m->cfg.emb_dim, H = m->cfg.hidden_dim;
    int block = n < EMBED_BLOCK ? n : EMBED_BLOCK, width = kp_par_threads();
    size_t nh = (size_t)EMBED_CHUNK * (H + 1);
    size_t nf = (size_t)block * E + (width > 1 ? 2 : 1) * nh;
    size_t nid = texts ? (size_t)block * KP_FEAT_MAX_IDS : 0;
    void *scratch =
        malloc(nf * sizeof(float) + nid * sizeof(uint32_t) + (size_t)(block + 2) * sizeof(int));
    if (!scratch) return -1;
    float *bag = scratch, *h = bag + (size_t)block * E;
    uint32_t *idbuf = (uint32_t *)(bag + nf);
    int *off = (int *)(idbuf + nid);
    for (int b0 = 0; b0 < n; b0 += block) {
        int nb = n - b0 < block ? n - b0 : block;
        bag_job j = {
            m,   &m->tw[tower_slot(m, t)],    texts, lens, ids, offsets, b0, nb, idbuf, off,
            bag, {h, width > 1 ? h + nh : h}, out};
        int nchunks = (nb + EMBED_CHUNK - 1) / EMBED_CHUNK;
        kp_parallel_for(nb >= EMBED_SPLIT_MIN ? width : 1, nchunks, bag_range, &j);
    }
    free(scratch);
    return 0;
}

int kp_bienc_embed_ids(const kp_bienc *m, kp_tower t, const uint32_t *ids, const int *offsets,
                       int n, float *out)
{
    if (!m || n < 0 || (n > 0 && (!ids || !offsets || !out))) return -1;
    if (n == 0) return 0;
    if (!ids_valid(m, ids, offsets, n)) return -1;
    return embed_rows(m, t, NULL, NULL, ids, offsets, n, out);
}

int kp_bienc_embed(const kp_bienc *m, kp_tower t, const char *const *texts, const size_t *lens,
                   int n, float *out)
{
    if (!m || n < 0 || (n > 0 && (!texts || !out))) return -1;
    if (n == 0) return 0;
    return embed_rows(m, t, texts, lens, NULL, NULL, n, out);
}

void kp_bienc_prefix(const float *emb, int n, int D, int p, float *out, float *norms)
{
    for (int b = 0; b < n; b++) {
        float nrm;
        kp_l2norm_forward(out + (size_t)b * p, &nrm, emb + (size_t)b * D, 1, p);
        if (norms) norms[b] = nrm;
    }
}

void kp_bienc_prefix_backward(float *demb, const float *dout, const float *out, const float *norms,
                              int n, int D, int p)
{
    for (int b = 0; b < n; b++)
        kp_l2norm_backward(demb + (size_t)b * D, dout + (size_t)b * p, out + (size_t)b * p,
                           norms + b, 1, p);
}

/* ---- training -------------------------------------------------------------------------------- */

kp_bienc_acts *kp_bienc_acts_new(const kp_bienc *m, int max_batch)
{
    if (!m || max_batch <= 0 || max_batch > (1 << 20)) return NULL;
    kp_bienc_acts *a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    size_t B = (size_t)max_batch;
    a->cap = max_batch;
    a->E = m->cfg.emb_dim, a->H = m->cfg.hidden_dim, a->D = m->cfg.out_dim;
    a->tw = -1;
    a->ids = malloc(B * KP_FEAT_MAX_IDS * sizeof(uint32_t));
    a->offsets = malloc((B + 1) * sizeof(int));
    a->loc = malloc((B + 2) * sizeof(int));
    a->slot = malloc(B * KP_FEAT_MAX_IDS * sizeof(int32_t));
    size_t E = (size_t)a->E, H = (size_t)a->H, D = (size_t)a->D;
    a->buf = malloc(B * (2 * E + 2 * H + 2 * D + 1) * sizeof(float));
    if (!a->ids || !a->offsets || !a->loc || !a->slot || !a->buf) goto err;
    a->bag = a->buf;
    a->h = a->bag + B * E;
    a->out = a->h + B * H;
    a->norm = a->out + B * D;
    a->dz = a->norm + B;
    a->dh = a->dz + B * D;
    a->dbag = a->dh + B * H;
    return a;
err:
    kp_bienc_acts_free(a);
    return NULL;
}

void kp_bienc_acts_free(kp_bienc_acts *a)
{
    if (!a) return;
    KP_FREE_ALL(a->ids, a->offsets, a->loc, a->slot, a->buf, a);
}

/* The training forward of a batch, rows [lo, hi) (a kp_parallel_parts range t): featurizing
 * (texts: into the rows' own region of a->ids, rows lo * KP_FEAT_MAX_IDS.., with offsets a->loc +
 * lo + t, compacted after the fan-out by fwd_compact), bag and dense layers. A batch of
 * TRAIN_SPLIT_MIN rows or more is cut in the same two parts at every width (a BLAS may compute a
 * row differently by its place in a GEMM: OpenBLAS's Zen kernels do), so one thread and two give
 * the same bits (test_step_split_is_bit_identical). */
typedef struct {
    const kp_bienc *m;
    const tower_params *tp;
    kp_bienc_acts *a;
    const char *const *texts; /* NULL: a->ids and a->offsets hold the batch's ids */
    const size_t *lens;
} fwd_job;

static int fwd_range(void *ctx, int t, int lo, int hi)
{
    const fwd_job *j = ctx;
    kp_bienc_acts *a = j->a;
    int nb = hi - lo, E = a->E;
    float *bag = a->bag + (size_t)lo * E;
    if (j->texts) {
        uint32_t *ids = a->ids + (size_t)lo * KP_FEAT_MAX_IDS;
        int *loc = a->loc + lo + t;
        featurize_rows(j->m, j->texts, j->lens, lo, nb, ids, loc);
        kp_embbag_forward(bag, j->tp->emb, ids, loc, nb, E);
    } else {
        kp_embbag_forward(bag, j->tp->emb, a->ids, a->offsets + lo, nb, E);
    }
    tower_dense(j->m, j->tp, bag, nb, a->h + (size_t)lo * a->H, a->out + (size_t)lo * a->D,
                a->norm + lo);
    return 0;
}

/* After a split forward from texts: each range's ids moved down to follow the previous range's,
 * and a->offsets made absolute. T ranges over n rows, as kp_parallel_parts cut them. */
static void fwd_compact(kp_bienc_acts *a, int n, int T)
{
    int pos = 0;
    a->offsets[0] = 0;
    for (int t = 0; t < T; t++) {
        int lo = (int)((long)n * t / T), hi = (int)((long)n * (t + 1) / T);
        const int *loc = a->loc + lo + t;
        int cnt = loc[hi - lo];
        memmove(a->ids + pos, a->ids + (size_t)lo * KP_FEAT_MAX_IDS,
                (size_t)cnt * sizeof(uint32_t));
        for (int i = 0; i < hi - lo; i++)
            a->offsets[lo + i + 1] = pos + loc[i + 1];
        pos += cnt;
    }
}

/* Rows below which the training forward runs on the calling thread. */
#define TRAIN_SPLIT_MIN 64

static const float *forward_acts(const kp_bienc *m, kp_tower t, kp_bienc_acts *a,
                                 const char *const *texts, const size_t *lens, int n)
{
    int slot = tower_slot(m, t);
    /* two parts at any width (the same bits at each); none for no rows (fwd_compact reads a
     * part's offsets, which only its range writes) */
    int P = n >= TRAIN_SPLIT_MIN ? 2 : n > 0 ? 1 : 0;
    fwd_job j = {m, &m->tw[slot], a, texts, lens};
    kp_parallel_parts(kp_par_threads(), P, n, fwd_range, &j);
    if (texts) fwd_compact(a, n, P);
    a->n = n;
    a->tw = slot;
    return a->out;
}

static int acts_match(const kp_bienc *m, const kp_bienc_acts *a)
{
    return a->E == m->cfg.emb_dim && a->H == m->cfg.hidden_dim && a->D == m->cfg.out_dim;
}

const float *kp_bienc_forward(const kp_bienc *m, kp_tower t, kp_bienc_acts *a,
                              const char *const *texts, const size_t *lens, int n)
{
    if (a) a->tw = -1; /* a failed forward leaves nothing to backward */
    if (!m || !a || n <= 0 || n > a->cap || !texts || !acts_match(m, a)) return NULL;
    return forward_acts(m, t, a, texts, lens, n);
}

const float *kp_bienc_forward_ids(const kp_bienc *m, kp_tower t, kp_bienc_acts *a,
                                  const uint32_t *ids, const int *offsets, int n)
{
    if (a) a->tw = -1;
    if (!m || !a || n <= 0 || n > a->cap || !ids || !offsets || !acts_match(m, a)) return NULL;
    if (offsets[n] < 0 || (size_t)offsets[n] > (size_t)a->cap * KP_FEAT_MAX_IDS) return NULL;
    if (!ids_valid(m, ids, offsets, n)) return NULL;
    memcpy(a->ids, ids, (size_t)offsets[n] * sizeof(uint32_t));
    memcpy(a->offsets, offsets, (size_t)(n + 1) * sizeof(int));
    return forward_acts(m, t, a, NULL, NULL, n);
}

int kp_bienc_backward(const kp_bienc *m, kp_bienc_acts *a, const float *dout, kp_bienc_grads *g)
{
    if (!m || !a || !dout || !g || a->tw < 0 || !acts_match(m, a) || g->n_towers != m->n_towers)
        return -1;
    int B = a->n, E = a->E, H = a->H, D = a->D, slot = a->tw;
    const tower_params *tp = &m->tw[slot];
    float *gd = g->dense[slot];
    float *dW1 = gd, *db1 = dW1 + (size_t)H * E, *dW2 = db1 + H, *db2 = dW2 + (size_t)D * H;
    /* dz, dh, dbag are laid out by capacity (a->cap rows each), not by B */
    memset(a->dz, 0, (size_t)B * D * sizeof(float));
    memset(a->dh, 0, (size_t)B * H * sizeof(float));
    memset(a->dbag, 0, (size_t)B * E * sizeof(float));
    kp_l2norm_backward(a->dz, dout, a->out, a->norm, B, D);
    int width = kp_par_threads();
    kp_linear_backward_split(a->dh, dW2, db2, a->dz, a->h, tp->W2, B, H, D, width);
    /* tanh backward in place on dh: dpre = dh * (1 - h^2) */
    size_t nh = (size_t)B * (size_t)H;
    for (size_t i = 0; i < nh; i++)
        a->dh[i] *= 1.0f - a->h[i] * a->h[i];
    kp_linear_backward_split(a->dbag, dW1, db1, a->dh, a->bag, tp->W1, B, E, H, width);
    return kp_embbag_backward_split(&g->emb[slot], a->dbag, a->ids, a->offsets, B, E, a->slot,
                                    width);
}

kp_bienc_grads *kp_bienc_grads_new(const kp_bienc *m)
{
    if (!m) return NULL;
    kp_bienc_grads *g = calloc(1, sizeof(*g));
    if (!g) return NULL;
    g->n_towers = m->n_towers;
    g->n_dense = m->n_dense;
    g->E = m->cfg.emb_dim, g->H = m->cfg.hidden_dim, g->D = m->cfg.out_dim;
    for (int t = 0; t < g->n_towers; t++) {
        g->dense[t] = calloc(g->n_dense, sizeof(float));
        if (!g->dense[t]) goto err;
        if (kp_rowgrad_init(&g->emb[t], m->cfg.n_buckets, m->cfg.emb_dim) != 0) goto err;
    }
    return g;
err:
    kp_bienc_grads_free(g);
    return NULL;
}

void kp_bienc_grads_free(kp_bienc_grads *g)
{
    if (!g) return;
    for (int t = 0; t < 2; t++) {
        free(g->dense[t]);
        kp_rowgrad_free(&g->emb[t]);
    }
    free(g);
}

void kp_bienc_grads_zero(kp_bienc_grads *g)
{
    for (int t = 0; t < g->n_towers; t++) {
        memset(g->dense[t], 0, g->n_dense * sizeof(float));
        kp_rowgrad_zero(&g->emb[t]);
    }
}

static int grads_slot(const kp_bienc_grads *g, kp_tower t)
{
    return (g->n_towers == 1 || t == KP_TOWER_ITEM) ? 0 : 1;
}

float *kp_bienc_grads_dense(kp_bienc_grads *g, kp_tower t, kp_bienc_param_id p)
{
    float *d = g->dense[grads_slot(g, t)];
    size_t E = (size_t)g->E, H = (size_t)g->H, D = (size_t)g->D;
    switch (p) {
    case KP_BIENC_W1:
        return d;
    case KP_BIENC_B1:
        return d + H * E;
    case KP_BIENC_W2:
        return d + H * E + H;
    case KP_BIENC_B2:
        return d + H * E + H + D * H;
    default:
        return NULL;
    }
}

const kp_rowgrad *kp_bienc_grads_emb(const kp_bienc_grads *g, kp_tower t)
{
    return &g->emb[grads_slot(g, t)];
}

/* The norm sums squares over blocks of NORM_BLOCK floats (the dense gradients, then the
 * embedding rows, tower by tower), the blocks on the split, then the blocks' sums in order: the
 * result does not depend on the width. */
#define NORM_BLOCK 8192

typedef struct {
    const float *span[4];
    size_t len[4], first[5]; /* span k covers blocks first[k] .. first[k + 1] */
    int n_span;
    double *part; /* [blocks] */
    float scale;
} norm_job;

static void norm_spans(const kp_bienc_grads *g, norm_job *j)
{
    j->n_span = 0;
    j->first[0] = 0;
    for (int t = 0; t < g->n_towers; t++) {
        const kp_rowgrad *r = &g->emb[t];
        const float *p[2] = {g->dense[t], r->grad};
        size_t n[2] = {g->n_dense, (size_t)r->n * (size_t)r->dim};
        for (int q = 0; q < 2; q++) {
            int k = j->n_span++;
            j->span[k] = p[q], j->len[k] = n[q];
            j->first[k + 1] = j->first[k] + (n[q] + NORM_BLOCK - 1) / NORM_BLOCK;
        }
    }
}

/* Block blk of the spans: its first float in *x, its length returned. */
static size_t block_of(const norm_job *j, size_t blk, float **x)
{
    int k = 0;
    while (blk >= j->first[k + 1])
        k++;
    size_t lo = (blk - j->first[k]) * NORM_BLOCK;
    *x = (float *)j->span[k] + lo;
    return j->len[k] - lo < NORM_BLOCK ? j->len[k] - lo : NORM_BLOCK;
}

static double block_sumsq(const norm_job *j, size_t blk)
{
    float *x;
    size_t n = block_of(j, blk, &x);
    return kp_sumsq(x, n); /* model/vmath.h */
}

static int norm_range(void *ctx, int t, int lo, int hi)
{
    (void)t;
    norm_job *j = ctx;
    for (int b = lo; b < hi; b++)
        j->part[b] = block_sumsq(j, (size_t)b);
    return 0;
}

double kp_bienc_grads_norm(const kp_bienc_grads *g)
{
    norm_job j;
    norm_spans(g, &j);
    int nb = (int)j.first[j.n_span]; /* a table has at most 2^34 floats: < 2^23 blocks */
    double ss = 0.0;
    j.part = nb > 1 ? malloc((size_t)nb * sizeof(double)) : NULL;
    if (!j.part) { /* the same sums, in the same order, on this thread */
        for (int b = 0; b < nb; b++)
            ss += block_sumsq(&j, (size_t)b);
        return sqrt(ss);
    }
    kp_parallel_for(nb >= 16 ? kp_par_threads() : 1, nb, norm_range, &j);
    for (int b = 0; b < nb; b++)
        ss += j.part[b];
    free(j.part);
    return sqrt(ss);
}

static int scale_range(void *ctx, int t, int lo, int hi)
{
    (void)t;
    const norm_job *j = ctx;
    for (int b = lo; b < hi; b++) {
        float *x;
        size_t n = block_of(j, (size_t)b, &x);
        for (size_t i = 0; i < n; i++)
            x[i] *= j->scale;
    }
    return 0;
}

void kp_bienc_grads_scale(kp_bienc_grads *g, float s)
{
    norm_job j;
    norm_spans(g, &j);
    j.scale = s;
    int nb = (int)j.first[j.n_span];
    kp_parallel_for(nb >= 16 ? kp_par_threads() : 1, nb, scale_range, &j);
}

kp_bienc_opt *kp_bienc_opt_new(const kp_bienc *m, const kp_adam_hp *hp_dense,
                               const kp_adam_hp *hp_emb)
{
    if (!m || !hp_dense || !hp_emb) return NULL;
    kp_bienc_opt *o = calloc(1, sizeof(*o));
    if (!o) return NULL;
    o->hp_dense = *hp_dense;
    o->hp_emb = *hp_emb;
    o->n_towers = m->n_towers;
    for (int t = 0; t < o->n_towers; t++) {
        o->m_dense[t] = calloc(m->n_dense, sizeof(float));
        o->v_dense[t] = calloc(m->n_dense, sizeof(float));
        o->m_emb[t] = kp_big_alloc(m->n_emb * sizeof(float));
        o->v_emb[t] = kp_big_alloc(m->n_emb * sizeof(float));
        o->row_t[t] = calloc(m->cfg.n_buckets, sizeof(uint32_t));
        if (!o->m_dense[t] || !o->v_dense[t] || !o->m_emb[t] || !o->v_emb[t] || !o->row_t[t])
            goto err;
    }
    return o;
err:
    kp_bienc_opt_free(o);
    return NULL;
}

void kp_bienc_opt_free(kp_bienc_opt *o)
{
    if (!o) return;
    for (int t = 0; t < 2; t++) {
        kp_big_free(o->m_emb[t]);
        kp_big_free(o->v_emb[t]);
        KP_FREE_ALL(o->m_dense[t], o->v_dense[t], o->row_t[t]);
    }
    free(o);
}

void kp_bienc_opt_set_lr(kp_bienc_opt *o, float lr_dense, float lr_emb)
{
    o->hp_dense.lr = lr_dense;
    o->hp_emb.lr = lr_emb;
}

int kp_bienc_opt_state(kp_bienc_opt *o, const kp_bienc *m, int t, kp_bienc_opt_view *v)
{
    if (!o || !m || t < 0 || t >= o->n_towers || t >= m->n_towers) return -1;
    v->m_dense = o->m_dense[t], v->v_dense = o->v_dense[t];
    v->m_emb = o->m_emb[t], v->v_emb = o->v_emb[t];
    v->row_t = o->row_t[t];
    v->n_dense = m->n_dense, v->n_emb = m->n_emb, v->n_rows = m->cfg.n_buckets;
    v->row_dim = (size_t)m->cfg.emb_dim;
    v->t = &o->t;
    return 0;
}

uint64_t kp_bienc_opt_step(kp_bienc *m, kp_bienc_opt *o, const kp_bienc_grads *g)
{
    o->t++;
    for (int t = 0; t < o->n_towers && t < m->n_towers && t < g->n_towers; t++) {
        kp_adamw_update(m->tw[t].dense, g->dense[t], o->m_dense[t], o->v_dense[t], m->n_dense,
                        &o->hp_dense, o->t);
        kp_lazy_adamw_update_split(m->tw[t].emb, o->m_emb[t], o->v_emb[t], o->row_t[t], &g->emb[t],
                                   &o->hp_emb, kp_par_threads());
    }
    return o->t;
}

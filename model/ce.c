/* ce.c - cross-encoder assistant: tokens, pair features, MLP head, checkpoints (see ce.h; the
 * layers are in ce_layers.c). */
#include "model/ce.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/ckpt.h"
#include "model/featurize.h"
#include "model/rng.h"

#define SALT_UNI 0x7f4a7c15f39cc060ULL
#define SALT_TRI 0x5851f42d4c957f2dULL
#define SALT_IDF 0x14057b7ef767814fULL
#define TOK_CAP  64 /* code points kept per token for stems and trigrams */

const float kp_ce_kernel_mu[KP_CE_N_KERNELS] = {1.0f,  0.9f,  0.7f,  0.5f,  0.3f, 0.1f,
                                                -0.1f, -0.3f, -0.5f, -0.7f, -0.9f};
const float kp_ce_kernel_sigma[KP_CE_N_KERNELS] = {0.001f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f,
                                                   0.1f,   0.1f, 0.1f, 0.1f, 0.1f};

struct kp_ce {
    kp_ce_config c;
    int F;              /* MLP input width */
    uint64_t version;   /* model version (training steps / publications) */
    float *emb;         /* [n_buckets x E] */
    float *dense;       /* W1 [H x F] | b1 [H] | W2 [H] | b2 [1] */
    float *idf;         /* [n_idf] */
    struct kp_ce *next; /* further ensemble members (same config), owned; NULL: none */
};

struct kp_ce_ws {
    int E;
    float *buf; /* one allocation, carved below */
    float *Ei, *Ek, *Ein, *Ekn, *ni_norm, *nk_norm, *M, *S, *pi, *pk, *x;
    float *dEi, *dEk, *dEin, *dEkn, *dM, *dpi, *dpk;
    float *MT, *S2, *dMT, *wk; /* ext features: M^T, title-side kernel sums, dM^T, idf weights */
    int am[2 * KP_CE_MAX_TOK + 1]; /* max-similarity positions */
};

/* ---- config / lifetime ----------------------------------------------------------------------- */

void kp_ce_config_default(kp_ce_config *c)
{
    c->n_buckets = 1u << 17;
    c->emb_dim = 32;
    c->hidden_dim = 64;
    c->n_idf = 1u << 16;
    c->ext_features = 1;
}

int kp_ce_config_check(const kp_ce_config *c, char *err, size_t errlen)
{
    if (!c) {
        kp_errf(err, errlen, "no config");
        return -1;
    }
    if (c->n_buckets < 1 || c->n_buckets > KP_CE_MAX_BUCKETS) {
        kp_errf(err, errlen, "n_buckets must be in 1..%u", KP_CE_MAX_BUCKETS);
        return -1;
    }
    if (c->emb_dim < 1 || c->emb_dim > KP_CE_MAX_DIM || c->hidden_dim < 1 ||
        c->hidden_dim > KP_CE_MAX_DIM) {
        kp_errf(err, errlen, "emb_dim and hidden_dim must be in 1..%d", KP_CE_MAX_DIM);
        return -1;
    }
    if (c->n_idf < 1 || c->n_idf > KP_CE_MAX_BUCKETS) {
        kp_errf(err, errlen, "n_idf must be in 1..%u", KP_CE_MAX_BUCKETS);
        return -1;
    }
    if (c->ext_features != 0 && c->ext_features != 1) {
        kp_errf(err, errlen, "ext_features must be 0 or 1");
        return -1;
    }
    return 0;
}

static int n_features(const kp_ce_config *c)
{
    return KP_CE_N_KERNELS + KP_CE_N_EXACT + 4 * c->emb_dim + (c->ext_features ? KP_CE_N_EXT : 0);
}

static kp_ce *ce_alloc(const kp_ce_config *c)
{
    if (kp_ce_config_check(c, NULL, 0) != 0) return NULL;
    kp_ce *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    m->c = *c;
    m->F = n_features(c);
    size_t H = (size_t)c->hidden_dim;
    m->emb = malloc((size_t)c->n_buckets * (size_t)c->emb_dim * sizeof(float));
    m->dense = malloc((H * (size_t)m->F + 2 * H + 1) * sizeof(float));
    m->idf = malloc((size_t)c->n_idf * sizeof(float));
    if (!m->emb || !m->dense || !m->idf) {
        kp_ce_free(m);
        return NULL;
    }
    return m;
}

kp_ce *kp_ce_new(const kp_ce_config *c, uint64_t seed)
{
    kp_ce *m = ce_alloc(c);
    if (!m) return NULL;
    kp_rng r;
    kp_rng_seed(&r, seed);
    size_t ne = (size_t)c->n_buckets * (size_t)c->emb_dim;
    for (size_t i = 0; i < ne; i++)
        m->emb[i] = kp_rng_normal(&r);
    int H = c->hidden_dim, F = m->F;
    float *W1 = m->dense, *b1 = W1 + (size_t)H * F, *W2 = b1 + H, *b2 = W2 + H;
    float s1 = 1.0f / sqrtf((float)F), s2 = 1.0f / sqrtf((float)H);
    for (size_t i = 0; i < (size_t)H * F; i++)
        W1[i] = (2.0f * kp_rng_uniform(&r) - 1.0f) * s1;
    for (int i = 0; i < H; i++) {
        b1[i] = 0.0f;
        W2[i] = (2.0f * kp_rng_uniform(&r) - 1.0f) * s2;
    }
    b2[0] = 0.0f;
    for (uint32_t i = 0; i < c->n_idf; i++)
        m->idf[i] = 1.0f;
    return m;
}

void kp_ce_free(kp_ce *m)
{
    if (!m) return;
    kp_ce_free(m->next);
    KP_FREE_ALL(m->emb, m->dense, m->idf, m);
}

int kp_ce_ensemble_add(kp_ce *m, kp_ce *member)
{
    if (!m || !member || member->next || member == m) return -1;
    const kp_ce_config *a = &m->c, *b = &member->c;
    if (a->n_buckets != b->n_buckets || a->emb_dim != b->emb_dim ||
        a->hidden_dim != b->hidden_dim || a->n_idf != b->n_idf ||
        a->ext_features != b->ext_features)
        return -1;
    kp_ce *t = m;
    while (t->next)
        t = t->next;
    t->next = member;
    return 0;
}

int kp_ce_n_members(const kp_ce *m)
{
    int n = 0;
    for (; m; m = m->next)
        n++;
    return n;
}

const kp_ce_config *kp_ce_cfg(const kp_ce *m)
{
    return &m->c;
}
uint64_t kp_ce_version(const kp_ce *m)
{
    return m->version;
}
void kp_ce_set_version(kp_ce *m, uint64_t v)
{
    m->version = v;
}
int kp_ce_n_features(const kp_ce *m)
{
    return m->F;
}
float *kp_ce_emb(kp_ce *m)
{
    return m->emb;
}
float *kp_ce_dense(kp_ce *m)
{
    return m->dense;
}
size_t kp_ce_dense_size(const kp_ce *m)
{
    size_t H = (size_t)m->c.hidden_dim;
    return H * (size_t)m->F + 2 * H + 1;
}
float *kp_ce_idf(kp_ce *m)
{
    return m->idf;
}

/* ---- tokens ---------------------------------------------------------------------------------- */

static uint64_t hash_cps(const uint32_t *cp, int n)
{
    uint64_t h = KP_FNV_OFFSET;
    for (int i = 0; i < n; i++)
        h = kp_fnv1a_step(h, cp[i]);
    return h;
}

/* Emits one token (code points cp[0..len), len counting all of them, the first TOK_CAP kept). */
static void emit_token(kp_ce_tokbuf *b, int *n, int *n_tri, uint64_t wh, const uint32_t *cp,
                       int len, uint32_t nb)
{
    int t = *n, kept = len < TOK_CAP ? len : TOK_CAP;
    b->wh[t] = wh;
    b->sh[t] = (len > 3 && len <= TOK_CAP && cp[len - 1] == 's') ? hash_cps(cp, len - 1) : wh;
    int o = b->off[t];
    b->ids[o++] = (uint32_t)(kp_mix64(wh ^ SALT_UNI) % nb);
    /* trigrams of "#word#": one centred on each kept code point, '#' outside the word */
    int ntri = kept < KP_CE_MAX_TRI ? kept : KP_CE_MAX_TRI;
    for (int i = 0; i < ntri; i++) {
        uint32_t a = i == 0 ? '#' : cp[i - 1], c = i + 1 < kept ? cp[i + 1] : '#';
        uint64_t h = KP_FNV_OFFSET;
        h = kp_fnv1a_step(h, a);
        h = kp_fnv1a_step(h, cp[i]);
        h = kp_fnv1a_step(h, c);
        b->tri[(*n_tri)++] = h;
        b->ids[o++] = (uint32_t)(kp_mix64(h ^ SALT_TRI) % nb);
    }
    b->off[t + 1] = o;
    *n = t + 1;
}

kp_ce_text kp_ce_tokenize(const char *text, uint32_t n_buckets, kp_ce_tokbuf *b)
{
    kp_ce_text v;
    int n = 0, n_tri = 0, len = 0;
    uint32_t cp[TOK_CAP];
    uint64_t h = KP_FNV_OFFSET;
    b->off[0] = 0;
    if (text && n_buckets > 0) {
        const unsigned char *s = (const unsigned char *)text;
        size_t L = strlen(text), pos = 0;
        for (;;) {
            int32_t c = KP_FEAT_SEP;
            int more = 0;
            while (pos < L) {
                int32_t u = kp_feat_utf8_next(s, L, &pos);
                if (u < 0) continue;
                int32_t nc = kp_feat_norm_cp((uint32_t)u);
                if (nc == KP_FEAT_SKIP) continue;
                c = nc, more = 1;
                break;
            }
            if (more && c != KP_FEAT_SEP) {
                if (len < TOK_CAP) cp[len] = (uint32_t)c;
                h = kp_fnv1a_step(h, (uint32_t)c);
                len++;
                continue;
            }
            if (len > 0) {
                emit_token(b, &n, &n_tri, h, cp, len, n_buckets);
                h = KP_FNV_OFFSET, len = 0;
                if (n == KP_CE_MAX_TOK) break;
            }
            if (!more) break;
        }
    }
    v.n = n, v.n_tri = n_tri;
    v.wh = b->wh, v.sh = b->sh, v.off = b->off, v.ids = b->ids, v.tri = b->tri;
    return v;
}

/* ---- pair features --------------------------------------------------------------------------- */

kp_ce_ws *kp_ce_ws_new(const kp_ce *m)
{
    if (!m) return NULL;
    kp_ce_ws *w = calloc(1, sizeof(*w));
    if (!w) return NULL;
    size_t E = (size_t)m->c.emb_dim, T = KP_CE_MAX_TOK, K = KP_CE_N_KERNELS;
    struct {
        float **p;
        size_t n;
    } parts[] = {{&w->Ei, T * E},  {&w->Ek, T * E},   {&w->Ein, T * E},      {&w->Ekn, T * E},
                 {&w->ni_norm, T}, {&w->nk_norm, T},  {&w->M, T * T},        {&w->S, T * K},
                 {&w->pi, E},      {&w->pk, E},       {&w->x, (size_t)m->F}, {&w->dEi, T * E},
                 {&w->dEk, T * E}, {&w->dEin, T * E}, {&w->dEkn, T * E},     {&w->dM, T * T},
                 {&w->dpi, E},     {&w->dpk, E},      {&w->MT, T * T},       {&w->S2, T * K},

                 {&w->dMT, T * T}, {&w->wk, T}};
    size_t total = 0, np = sizeof(parts) / sizeof(parts[0]);
    for (size_t i = 0; i < np; i++)
        total += parts[i].n;
    w->buf = calloc(total, sizeof(float));
    if (!w->buf) {
        free(w);
        return NULL;
    }
    float *p = w->buf;
    for (size_t i = 0; i < np; i++) {
        *parts[i].p = p;
        p += parts[i].n;
    }
    w->E = m->c.emb_dim;
    return w;
}

void kp_ce_ws_free(kp_ce_ws *w)
{
    if (!w) return;
    free(w->buf);
    free(w);
}

static float idf_of(const kp_ce *m, uint64_t sh)
{
    return m->idf[kp_mix64(sh ^ SALT_IDF) % m->c.n_idf];
}

static int has_u64(const uint64_t *a, int n, uint64_t v)
{
    for (int i = 0; i < n; i++)
        if (a[i] == v) return 1;
    return 0;
}

/* Exact-match features x[0 .. KP_CE_N_EXACT) of (title it, keyphrase kp). */
static void exact_features(const kp_ce *m, const kp_ce_text *it, const kp_ce_text *kp, float *x)
{
    int ni = it->n, nk = kp->n;
    for (int f = 0; f < KP_CE_N_EXACT; f++)
        x[f] = 0.0f;
    x[3] = nk < 2 ? 1.0f : 0.0f;
    x[10] = log1pf((float)nk) / 3.0f;
    x[11] = log1pf((float)ni) / 4.0f;
    if (nk == 0 || ni == 0) return;
    int exact = 0, stem = 0, big = 0, tri = 0, cover = 0;
    float idf_all = 0.0f, idf_hit = 0.0f;
    for (int j = 0; j < nk; j++) {
        exact += has_u64(it->wh, ni, kp->wh[j]);
        int hit = has_u64(it->sh, ni, kp->sh[j]);
        stem += hit;
        float w = idf_of(m, kp->sh[j]);
        idf_all += w;
        if (hit) idf_hit += w;
        if (j == 0) x[12] = (float)hit;
        if (j == nk - 1) x[13] = (float)hit;
        if (j + 1 < nk) {
            for (int i = 0; i + 1 < ni; i++) {
                if (it->sh[i] == kp->sh[j] && it->sh[i + 1] == kp->sh[j + 1]) {
                    big++;
                    break;
                }
            }
        }
    }
    for (int t = 0; t < kp->n_tri; t++)
        tri += has_u64(it->tri, it->n_tri, kp->tri[t]);
    for (int i = 0; i < ni; i++)
        cover += has_u64(kp->sh, nk, it->sh[i]);
    int phrase = 0;
    for (int i = 0; i + nk <= ni && !phrase; i++) {
        int j = 0;
        while (j < nk && it->sh[i + j] == kp->sh[j])
            j++;
        phrase = j == nk;
    }
    x[0] = (float)exact / (float)nk;
    x[1] = (float)stem / (float)nk;
    x[2] = nk > 1 ? (float)big / (float)(nk - 1) : 0.0f;
    x[4] = kp->n_tri ? (float)tri / (float)kp->n_tri : 0.0f;
    x[5] = (float)cover / (float)ni;
    x[6] = (float)phrase;
    x[7] = idf_all > 0.0f ? idf_hit / idf_all : 0.0f;
    x[8] = idf_hit / 10.0f;
    x[9] = (idf_all - idf_hit) / 10.0f;
}

/* More exact-match features x[0 .. KP_CE_N_EXACT2) (version 2) of (title it, keyphrase kp):
 *   0 1 - (position of the first title token matched by a keyphrase stem) / ni (0: none)
 *   1 longest run of consecutive keyphrase stems found consecutively in the title / nk
 *   2 idf of the rarest keyphrase stem missing from the title / 10 (0: none missing)
 *   3 idf-weighted share of title stems found in the keyphrase
 *   4 span of the matched title positions (last - first + 1) / ni (0: none)
 *   5 share of matched keyphrase stems whose title positions keep the keyphrase's order
 *   6 missing keyphrase stems / 4
 *   7 the last keyphrase stem (often the product noun) is in the title's last half */
static void exact2_features(const kp_ce *m, const kp_ce_text *it, const kp_ce_text *kp, float *x)
{
    int ni = it->n, nk = kp->n;
    for (int f = 0; f < KP_CE_N_EXACT2; f++)
        x[f] = 0.0f;
    if (nk == 0 || ni == 0) return;
    int first = ni, last = -1, missing = 0, matched = 0, ordered = 0, prev = -1;
    float max_missing = 0.0f;
    for (int j = 0; j < nk; j++) {
        int pos = -1;
        for (int i = 0; i < ni && pos < 0; i++)
            if (it->sh[i] == kp->sh[j]) pos = i;
        if (pos < 0) {
            missing++;
            float w = idf_of(m, kp->sh[j]);
            if (w > max_missing) max_missing = w;
            continue;
        }
        matched++;
        if (pos > prev) ordered++;
        prev = pos;
        if (j == nk - 1 && 2 * pos >= ni) x[7] = 1.0f;
    }
    for (int i = 0; i < ni; i++) {
        if (has_u64(kp->sh, nk, it->sh[i])) {
            if (i < first) first = i;
            last = i;
        }
    }
    int best = 0;
    for (int j = 0; j < nk; j++) {
        for (int i = 0; i < ni; i++) {
            int r = 0;
            while (j + r < nk && i + r < ni && it->sh[i + r] == kp->sh[j + r])
                r++;
            if (r > best) best = r;
        }
    }
    float idf_t = 0.0f, idf_th = 0.0f;
    for (int i = 0; i < ni; i++) {
        float w = idf_of(m, it->sh[i]);
        idf_t += w;
        if (has_u64(kp->sh, nk, it->sh[i])) idf_th += w;
    }
    x[0] = last >= 0 ? 1.0f - (float)first / (float)ni : 0.0f;
    x[1] = (float)best / (float)nk;
    x[2] = max_missing / 10.0f;
    x[3] = idf_t > 0.0f ? idf_th / idf_t : 0.0f;
    x[4] = last >= 0 ? (float)(last - first + 1) / (float)ni : 0.0f;
    x[5] = matched ? (float)ordered / (float)matched : 0.0f;
    x[6] = (float)missing / 4.0f;
}

/* Features of (it, kp) into x. title_ready: w already holds Ei, Ein, ni_norm and pi of this
 * title and model (kp_ce_score's re-use over candidates of one title; same values). */
static void pair_features(const kp_ce *m, const kp_ce_text *it, const kp_ce_text *kp, float *x,
                          kp_ce_ws *w, int title_ready)
{
    int E = m->c.emb_dim, ni = it->n, nk = kp->n;
    if (!title_ready) {
        kp_embbag_forward(w->Ei, m->emb, it->ids, it->off, ni, E);
        kp_l2norm_forward(w->Ein, w->ni_norm, w->Ei, ni, E);
        kp_ce_meanpool_forward(w->pi, w->Ein, ni, E);
    }
    kp_embbag_forward(w->Ek, m->emb, kp->ids, kp->off, nk, E);
    kp_l2norm_forward(w->Ekn, w->nk_norm, w->Ek, nk, E);
    kp_ce_simmat_forward(w->M, w->Ein, w->Ekn, ni, nk, E);
    if (!m->c.ext_features)
        kp_ce_kernel_forward(x, w->S, w->M, ni, nk, kp_ce_kernel_mu, kp_ce_kernel_sigma,
                             KP_CE_N_KERNELS);
    exact_features(m, it, kp, x + KP_CE_N_KERNELS);
    kp_ce_meanpool_forward(w->pk, w->Ekn, nk, E);
    kp_ce_interact_forward(x + KP_CE_N_KERNELS + KP_CE_N_EXACT, w->pi, w->pk, E);
    if (!m->c.ext_features) return;
    float *xe = x + KP_CE_N_KERNELS + KP_CE_N_EXACT + 4 * E;
    const int K = KP_CE_N_KERNELS;
    float wsum = 0.0f;
    for (int j = 0; j < nk; j++)
        wsum += w->wk[j] = idf_of(m, kp->sh[j]);
    for (int j = 0; j < nk; j++)
        w->wk[j] = wsum > 0.0f ? w->wk[j] / wsum : 1.0f / (float)nk;
    /* the three kernel poolings in one pass (reference: kp_ce_kernel_forward on M and on M^T,
     * kp_ce_wkernel_forward; test_kernels3_matches_reference) */
    kp_ce_kernels3_forward(x, xe, xe + K, w->S, w->S2, w->M, ni, nk, kp_ce_kernel_mu,
                           kp_ce_kernel_sigma, K, w->wk);
    kp_ce_transpose_forward(w->MT, w->M, ni, nk);
    kp_ce_maxsim_forward(xe + 2 * K, w->am, w->M, ni, nk, w->wk);
    exact2_features(m, it, kp, xe + 2 * K + KP_CE_N_MAXSIM);
}

void kp_ce_pair_features(const kp_ce *m, const kp_ce_text *it, const kp_ce_text *kp, float *x,
                         kp_ce_ws *w)
{
    pair_features(m, it, kp, x, w, 0);
}

int kp_ce_pair_backward(const kp_ce *m, const kp_ce_text *it, const kp_ce_text *kp, const float *dx,
                        kp_ce_ws *w, kp_rowgrad *g)
{
    int E = m->c.emb_dim, ni = it->n, nk = kp->n;
    kp_ce_pair_features(m, it, kp, w->x, w);
    size_t ti = (size_t)ni * E, tk = (size_t)nk * E;
    memset(w->dpi, 0, (size_t)E * sizeof(float));
    memset(w->dpk, 0, (size_t)E * sizeof(float));
    memset(w->dEin, 0, ti * sizeof(float));
    memset(w->dEkn, 0, tk * sizeof(float));
    memset(w->dEi, 0, ti * sizeof(float));
    memset(w->dEk, 0, tk * sizeof(float));
    memset(w->dM, 0, (size_t)ni * nk * sizeof(float));
    kp_ce_interact_backward(w->dpi, w->dpk, dx + KP_CE_N_KERNELS + KP_CE_N_EXACT, w->pi, w->pk, E);
    kp_ce_meanpool_backward(w->dEin, w->dpi, ni, E);
    kp_ce_meanpool_backward(w->dEkn, w->dpk, nk, E);
    kp_ce_kernel_backward(w->dM, dx, w->S, w->M, ni, nk, kp_ce_kernel_mu, kp_ce_kernel_sigma,
                          KP_CE_N_KERNELS);
    if (m->c.ext_features) {
        const float *dxe = dx + KP_CE_N_KERNELS + KP_CE_N_EXACT + 4 * E;
        const int K = KP_CE_N_KERNELS;
        memset(w->dMT, 0, (size_t)ni * nk * sizeof(float));
        kp_ce_kernel_backward(w->dMT, dxe, w->S2, w->MT, nk, ni, kp_ce_kernel_mu,
                              kp_ce_kernel_sigma, K);
        kp_ce_transpose_backward(w->dM, w->dMT, ni, nk);
        kp_ce_wkernel_backward(w->dM, dxe + K, w->S, w->M, ni, nk, kp_ce_kernel_mu,
                               kp_ce_kernel_sigma, K, w->wk);
        kp_ce_maxsim_backward(w->dM, dxe + 2 * K, w->am, ni, nk, w->wk);
    }
    kp_ce_simmat_backward(w->dEin, w->dEkn, w->dM, w->Ein, w->Ekn, ni, nk, E);
    kp_l2norm_backward(w->dEi, w->dEin, w->Ein, w->ni_norm, ni, E);
    kp_l2norm_backward(w->dEk, w->dEkn, w->Ekn, w->nk_norm, nk, E);
    if (kp_embbag_backward(g, w->dEi, it->ids, it->off, ni, E) != 0) return -1;
    if (kp_embbag_backward(g, w->dEk, kp->ids, kp->off, nk, E) != 0) return -1;
    return 0;
}

/* ---- MLP head -------------------------------------------------------------------------------- */

void kp_ce_head_forward(const kp_ce *m, const float *x, int B, float *h, float *z)
{
    int H = m->c.hidden_dim, F = m->F;
    const float *W1 = m->dense, *b1 = W1 + (size_t)H * F, *W2 = b1 + H, *b2 = W2 + H;
    kp_linear_forward(h, x, W1, b1, B, F, H);
    kp_tanh_forward(h, h, (size_t)B * H);
    kp_linear_forward(z, h, W2, b2, B, H, 1);
}

void kp_ce_head_backward(const kp_ce *m, const float *x, const float *h, const float *dz, int B,
                         float *dh, float *ddense, float *dx)
{
    int H = m->c.hidden_dim, F = m->F;
    const float *W1 = m->dense, *W2 = W1 + (size_t)H * F + H;
    float *dW1 = ddense, *db1 = dW1 + (size_t)H * F, *dW2 = db1 + H, *db2 = dW2 + H;
    size_t n = (size_t)B * H;
    memset(dh, 0, n * sizeof(float));
    kp_linear_backward(dh, dW2, db2, dz, h, W2, B, H, 1);
    for (size_t i = 0; i < n; i++) /* tanh backward in place: d(pre) = dh * (1 - h^2) */
        dh[i] *= 1.0f - h[i] * h[i];
    kp_linear_backward(dx, dW1, db1, dh, x, W1, B, F, H);
}

/* ---- scoring --------------------------------------------------------------------------------- */

#define SCORE_CHUNK 128

int kp_ce_score(const kp_ce *m, const char *const *items, const char *const *keys, int n,
                float *out)
{
    if (n < 0 || (n > 0 && (!m || !out || !items || !keys))) return -1;
    if (n == 0) return 0;
    int F = m->F, H = m->c.hidden_dim, rc = -1;
    kp_ce_ws *w = kp_ce_ws_new(m);
    kp_ce_tokbuf *tb = malloc(2 * sizeof(kp_ce_tokbuf));
    float *x = malloc((size_t)SCORE_CHUNK * ((size_t)F + (size_t)H + 1) * sizeof(float));
    if (!w || !tb || !x) goto err;
    float *h = x + (size_t)SCORE_CHUNK * F, *z = h + (size_t)SCORE_CHUNK * H;
    for (int s = 0; s < n; s += SCORE_CHUNK) {
        int B = n - s < SCORE_CHUNK ? n - s : SCORE_CHUNK;
        for (int b = 0; b < B; b++)
            out[s + b] = 0.0f;
        /* every member sees the same tokens: one tokenisation per pair, the logits averaged */
        for (const kp_ce *mm = m; mm; mm = mm->next) {
            /* runs of one title (a re-ranker's candidates) tokenise and embed it once */
            const char *prev = NULL;
            kp_ce_text ti;
            for (int b = 0; b < B; b++) {
                const char *t = items[s + b] ? items[s + b] : "";
                int same = prev && (t == prev || strcmp(t, prev) == 0);
                if (!same) ti = kp_ce_tokenize(t, m->c.n_buckets, &tb[0]);
                prev = t;
                kp_ce_text tk = kp_ce_tokenize(keys[s + b], m->c.n_buckets, &tb[1]);
                pair_features(mm, &ti, &tk, x + (size_t)b * F, w, same);
            }
            kp_ce_head_forward(mm, x, B, h, z);
            for (int b = 0; b < B; b++)
                out[s + b] += z[b];
        }
        float inv = 1.0f / (float)kp_ce_n_members(m);
        for (int b = 0; b < B; b++)
            out[s + b] = kp_ce_sigmoid(out[s + b] * inv);
    }
    rc = 0;
err:
    free(x);
    free(tb);
    kp_ce_ws_free(w);
    return rc;
}

/* ---- idf ------------------------------------------------------------------------------------- */

int kp_ce_set_idf(kp_ce *m, const char *const *docs, int n_docs)
{
    if (!m || n_docs < 0 || (n_docs > 0 && !docs)) return -1;
    uint32_t nb = m->c.n_idf;
    uint32_t *df = calloc(nb, sizeof(uint32_t));
    kp_ce_tokbuf *tb = malloc(sizeof(*tb));
    if (!df || !tb) {
        free(df);
        free(tb);
        return -1;
    }
    for (int d = 0; d < n_docs; d++) {
        kp_ce_text t = kp_ce_tokenize(docs[d], m->c.n_buckets, tb);
        uint32_t seen[KP_CE_MAX_TOK];
        int ns = 0;
        for (int i = 0; i < t.n; i++) {
            uint32_t bkt = (uint32_t)(kp_mix64(t.sh[i] ^ SALT_IDF) % nb);
            int dup = 0;
            for (int s = 0; s < ns && !dup; s++)
                dup = seen[s] == bkt;
            if (dup) continue;
            seen[ns++] = bkt;
            df[bkt]++;
        }
    }
    double N = (double)n_docs;
    for (uint32_t i = 0; i < nb; i++)
        m->idf[i] = (float)log(1.0 + (N - df[i] + 0.5) / (df[i] + 0.5));
    free(df);
    free(tb);
    return 0;
}

/* ---- checkpoints ----------------------------------------------------------------------------- */

/* Tensor name of member i: "emb", "w1", ... for member 0, "emb.1", "w1.1", ... after it. */
static const char *member_name(char *buf, size_t n, const char *base, int i)
{
    if (i == 0) return base;
    snprintf(buf, n, "%s.%d", base, i);
    return buf;
}

static void put_member(kp_ckpt_writer *w, const kp_ce *m, int i)
{
    char nb[32];
    size_t H = (size_t)m->c.hidden_dim, F = (size_t)m->F;
    const float *W1 = m->dense, *b1 = W1 + H * F, *W2 = b1 + H, *b2 = W2 + H;
    uint64_t d_emb[2] = {m->c.n_buckets, (uint64_t)m->c.emb_dim}, d_w1[2] = {H, F};
    uint64_t d_h[1] = {H}, d_w2[2] = {1, H}, d_1[1] = {1}, d_idf[1] = {m->c.n_idf};
    kp_ckpt_put_tensor(w, member_name(nb, sizeof nb, "emb", i), m->emb, 2, d_emb);
    kp_ckpt_put_tensor(w, member_name(nb, sizeof nb, "w1", i), W1, 2, d_w1);
    kp_ckpt_put_tensor(w, member_name(nb, sizeof nb, "b1", i), b1, 1, d_h);
    kp_ckpt_put_tensor(w, member_name(nb, sizeof nb, "w2", i), W2, 2, d_w2);
    kp_ckpt_put_tensor(w, member_name(nb, sizeof nb, "b2", i), b2, 1, d_1);
    kp_ckpt_put_tensor(w, member_name(nb, sizeof nb, "idf", i), m->idf, 1, d_idf);
}

static int read_member(kp_ckpt_reader *r, const char *path, kp_ce *m, int i, char *err,
                       size_t errlen)
{
    char nb[32];
    size_t H = (size_t)m->c.hidden_dim, F = (size_t)m->F;
    float *W1 = m->dense, *b1 = W1 + H * F, *W2 = b1 + H, *b2 = W2 + H;
    uint64_t d_emb[2] = {m->c.n_buckets, (uint64_t)m->c.emb_dim}, d_w1[2] = {H, F};
    uint64_t d_h[1] = {H}, d_w2[2] = {1, H}, d_1[1] = {1}, d_idf[1] = {m->c.n_idf};
    if (kp_ckpt_read_tensor(r, member_name(nb, sizeof nb, "emb", i), m->emb, 2, d_emb, err,
                            errlen) != 0 ||
        kp_ckpt_read_tensor(r, member_name(nb, sizeof nb, "w1", i), W1, 2, d_w1, err, errlen) ||
        kp_ckpt_read_tensor(r, member_name(nb, sizeof nb, "b1", i), b1, 1, d_h, err, errlen) ||
        kp_ckpt_read_tensor(r, member_name(nb, sizeof nb, "w2", i), W2, 2, d_w2, err, errlen) ||
        kp_ckpt_read_tensor(r, member_name(nb, sizeof nb, "b2", i), b2, 1, d_1, err, errlen) ||
        kp_ckpt_read_tensor(r, member_name(nb, sizeof nb, "idf", i), m->idf, 1, d_idf, err,
                            errlen) != 0)
        return -1;
    for (size_t q = 0; q < kp_ce_dense_size(m); q++) {
        if (!isfinite(m->dense[q])) {
            kp_errf(err, errlen, "ce checkpoint %s: non-finite weight", path);
            return -1;
        }
    }
    return 0;
}

int kp_ce_save(const kp_ce *m, const char *path, char *err, size_t errlen)
{
    if (!m || !path) {
        kp_errf(err, errlen, "ce checkpoint: no model or path");
        return -1;
    }
    kp_ckpt_writer *w = kp_ckpt_writer_new(path, KP_CE_KIND, err, errlen);
    if (!w) return -1;
    int nm = kp_ce_n_members(m), v2 = m->c.ext_features || nm > 1;
    kp_ckpt_put_u64(w, "ce_version", v2 ? KP_CE_VERSION : 1u);
    kp_ckpt_put_u64(w, "model_version", m->version);
    kp_ckpt_put_u64(w, "n_buckets", m->c.n_buckets);
    kp_ckpt_put_u64(w, "emb_dim", (uint64_t)m->c.emb_dim);
    kp_ckpt_put_u64(w, "hidden_dim", (uint64_t)m->c.hidden_dim);
    kp_ckpt_put_u64(w, "n_idf", m->c.n_idf);
    kp_ckpt_put_u64(w, "n_kernels", KP_CE_N_KERNELS);
    kp_ckpt_put_u64(w, "n_exact", KP_CE_N_EXACT);
    if (v2) {
        kp_ckpt_put_u64(w, "n_ext", m->c.ext_features ? KP_CE_N_EXT : 0);
        kp_ckpt_put_u64(w, "n_members", (uint64_t)nm);
    }
    int i = 0;
    for (const kp_ce *mm = m; mm; mm = mm->next)
        put_member(w, mm, i++);
    return kp_ckpt_writer_commit(w, err, errlen);
}

static int get_key(kp_ckpt_reader *r, const char *path, const char *key, uint64_t max,
                   uint64_t *out, char *err, size_t errlen)
{
    if (kp_ckpt_get_u64(r, key, out) != 0 || *out > max) {
        kp_errf(err, errlen, "ce checkpoint %s: missing or invalid '%s'", path, key);
        return -1;
    }
    return 0;
}

kp_ce *kp_ce_load(const char *path, char *err, size_t errlen)
{
    kp_ce *m = NULL;
    if (!path) {
        kp_errf(err, errlen, "ce checkpoint: no path");
        return NULL;
    }
    kp_ckpt_reader *r = kp_ckpt_open(path, err, errlen);
    if (!r) return NULL;
    if (strcmp(kp_ckpt_kind(r), KP_CE_KIND) != 0) {
        kp_errf(err, errlen, "checkpoint %s: holds a '%s' model, expected '%s'", path,
                kp_ckpt_kind(r), KP_CE_KIND);
        goto err;
    }
    uint64_t cv, ver, nb, e, h, ni, nk, nx;
    if (get_key(r, path, "ce_version", UINT32_MAX, &cv, err, errlen) != 0) goto err;
    if (cv != 1 && cv != KP_CE_VERSION) {
        kp_errf(err, errlen, "ce checkpoint %s: version %" PRIu64 ", this build reads 1..%u", path,
                cv, KP_CE_VERSION);
        goto err;
    }
    uint64_t next = 0, nmem = 1;
    if (cv >= 2 && get_key(r, path, "n_ext", 1000, &next, err, errlen) != 0) goto err;
    /* n_members is absent from the first version-2 files: one member */
    if (cv >= 2 && kp_ckpt_get_u64(r, "n_members", &nmem) == 0 && nmem > 1000) nmem = 0;
    if (cv >= 2 && ((next != 0 && next != KP_CE_N_EXT) || nmem < 1)) {
        kp_errf(err, errlen,
                "ce checkpoint %s: version 2 with %" PRIu64 " ext features and %" PRIu64
                " members, this build has %d ext features",
                path, next, nmem, KP_CE_N_EXT);
        goto err;
    }
    if (get_key(r, path, "model_version", UINT64_MAX, &ver, err, errlen) != 0 ||
        get_key(r, path, "n_buckets", KP_CE_MAX_BUCKETS, &nb, err, errlen) != 0 ||
        get_key(r, path, "emb_dim", KP_CE_MAX_DIM, &e, err, errlen) != 0 ||
        get_key(r, path, "hidden_dim", KP_CE_MAX_DIM, &h, err, errlen) != 0 ||
        get_key(r, path, "n_idf", KP_CE_MAX_BUCKETS, &ni, err, errlen) != 0 ||
        get_key(r, path, "n_kernels", 1000, &nk, err, errlen) != 0 ||
        get_key(r, path, "n_exact", 1000, &nx, err, errlen) != 0)
        goto err;
    if (nk != KP_CE_N_KERNELS || nx != KP_CE_N_EXACT) {
        kp_errf(err, errlen,
                "ce checkpoint %s: %" PRIu64 " kernels / %" PRIu64
                " exact features, this build has %d / %d",
                path, nk, nx, KP_CE_N_KERNELS, KP_CE_N_EXACT);
        goto err;
    }
    kp_ce_config c = {(uint32_t)nb, (int)e, (int)h, (uint32_t)ni, next != 0};
    char why[128];
    if (kp_ce_config_check(&c, why, sizeof(why)) != 0) {
        kp_errf(err, errlen, "ce checkpoint %s: bad config: %s", path, why);
        goto err;
    }
    uint64_t d_emb[2] = {nb, e}, d_idf[1] = {ni}; /* the header's sizes are in the file? */
    if (kp_ckpt_expect_tensor(r, "emb", 2, d_emb, err, errlen) ||
        kp_ckpt_expect_tensor(r, "idf", 1, d_idf, err, errlen))
        goto err;
    m = ce_alloc(&c);
    if (!m) {
        kp_errf(err, errlen, "ce checkpoint %s: out of memory for the model", path);
        goto err;
    }
    if (kp_ckpt_n_tensors(r) != 6 * (int)nmem) {
        kp_errf(err, errlen, "ce checkpoint %s: %d tensors, expected %d", path,
                kp_ckpt_n_tensors(r), 6 * (int)nmem);
        goto err;
    }
    if (read_member(r, path, m, 0, err, errlen) != 0) goto err;
    for (int i = 1; i < (int)nmem; i++) {
        kp_ce *mm = ce_alloc(&c);
        if (!mm || kp_ce_ensemble_add(m, mm) != 0) {
            kp_ce_free(mm);
            kp_errf(err, errlen, "ce checkpoint %s: out of memory for the model", path);
            goto err;
        }
        if (read_member(r, path, mm, i, err, errlen) != 0) goto err;
    }
    m->version = ver;
    kp_ckpt_close(r);
    return m;
err:
    kp_ce_free(m);
    kp_ckpt_close(r);
    return NULL;
}

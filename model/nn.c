/* nn.c - layers (forward/backward), row-sparse gradients and Adam optimisers (see nn.h). */
#include "model/nn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* The hot elementwise loops (embedding-bag sums, AdamW) also come in an AVX2 form: the same
 * plain C compiled for 8-float vectors (target("avx2"), without FMA: kpmodel builds with
 * -ffp-contract=off), the same operations in the same order, so the same bits; taken where the
 * CPU has AVX2. */
#if defined(__GNUC__) && defined(__x86_64__)
#define KP_NN_X86 1
/* the plain loops the AVX2 forms wrap: inlined there always (GCC's size limits may decline
 * otherwise, and the wrapper would just call the plain form) */
#define NN_INLINE __attribute__((always_inline)) static inline
static int nn_avx2(void)
{
    return __builtin_cpu_supports("avx2");
}
#else
#define KP_NN_X86 0
#define NN_INLINE static inline
#endif

/* ---- kp_rowgrad ------------------------------------------------------------------------------ */

int kp_rowgrad_init(kp_rowgrad *g, uint32_t n_rows, int dim)
{
    memset(g, 0, sizeof(*g));
    if (n_rows == 0 || n_rows > INT32_MAX || dim <= 0) return -1;
    g->slot = malloc((size_t)n_rows * sizeof(int32_t));
    if (!g->slot) return -1;
    for (uint32_t i = 0; i < n_rows; i++)
        g->slot[i] = -1;
    g->n_rows = n_rows;
    g->dim = dim;
    return 0;
}

void kp_rowgrad_free(kp_rowgrad *g)
{
    if (!g) return;
    KP_FREE_ALL(g->slot, g->rows, g->grad);
    memset(g, 0, sizeof(*g));
}

void kp_rowgrad_zero(kp_rowgrad *g)
{
    for (int i = 0; i < g->n; i++)
        g->slot[g->rows[i]] = -1;
    g->n = 0;
}

float *kp_rowgrad_row(kp_rowgrad *g, uint32_t row)
{
    if (row >= g->n_rows) return NULL;
    int32_t s = g->slot[row];
    if (s >= 0) return g->grad + (size_t)s * (size_t)g->dim;
    if (g->n == g->cap) {
        int ncap = g->cap ? g->cap * 2 : 256;
        if (ncap <= g->cap || (size_t)ncap > SIZE_MAX / sizeof(float) / (size_t)g->dim) return NULL;
        uint32_t *rows = realloc(g->rows, (size_t)ncap * sizeof(uint32_t));
        if (!rows) return NULL;
        g->rows = rows;
        float *grad = realloc(g->grad, (size_t)ncap * (size_t)g->dim * sizeof(float));
        if (!grad) return NULL;
        g->grad = grad;
        g->cap = ncap;
    }
    s = g->n++;
    g->slot[row] = s;
    g->rows[s] = row;
    float *r = g->grad + (size_t)s * (size_t)g->dim;
    memset(r, 0, (size_t)g->dim * sizeof(float));
    return r;
}

/* ---- embedding bag --------------------------------------------------------------------------- */

void kp_embbag_forward_ref(float *out, const float *table, const uint32_t *ids, const int *offsets,
                           int B, int E)
{
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * E;
        memset(o, 0, (size_t)E * sizeof(float));
        int n = offsets[b + 1] - offsets[b];
        if (n <= 0) continue;
        for (int i = offsets[b]; i < offsets[b + 1]; i++) {
            const float *row = table + (size_t)ids[i] * E;
            for (int e = 0; e < E; e++)
                o[e] += row[e];
        }
        float inv = 1.0f / (float)n;
        for (int e = 0; e < E; e++)
            o[e] *= inv;
    }
}

/* Rows ahead whose cache lines are requested while the current row is summed: the table is far
 * larger than the caches (2^18 x 128 floats = 128 MiB), so the gather waits on memory, not on
 * arithmetic. */
#define EMBBAG_PREFETCH 4
#define EMBBAG_BLOCK    16

static void prefetch_row(const float *row, int E)
{
    for (int e = 0; e < E; e += 16) /* 64-byte lines */
        __builtin_prefetch(row + e, 0, 3);
}

/* out[0..E) += row[0..E): the same additions in the same order as the reference, in blocks
 * of EMBBAG_BLOCK that the compiler turns into vector adds. */
NN_INLINE void add_row(float *restrict o, const float *restrict row, int E)
{
    int e = 0;
    for (; e + EMBBAG_BLOCK <= E; e += EMBBAG_BLOCK)
        for (int j = 0; j < EMBBAG_BLOCK; j++)
            o[e + j] += row[e + j];
    for (; e < E; e++)
        o[e] += row[e];
}

/* g[0..E) += d[0..E) * s, in blocks like add_row. */
NN_INLINE void add_scaled_row(float *restrict g, const float *restrict d, float s, int E)
{
    int e = 0;
    for (; e + EMBBAG_BLOCK <= E; e += EMBBAG_BLOCK)
        for (int j = 0; j < EMBBAG_BLOCK; j++)
            g[e + j] += d[e + j] * s;
    for (; e < E; e++)
        g[e] += d[e] * s;
}

NN_INLINE void embbag_forward(float *out, const float *table, const uint32_t *ids,
                              const int *offsets, int B, int E)
{
    int total = offsets[B];
    for (int i = offsets[0]; i < offsets[0] + EMBBAG_PREFETCH && i < total; i++)
        prefetch_row(table + (size_t)ids[i] * E, E);
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * E;
        memset(o, 0, (size_t)E * sizeof(float));
        int n = offsets[b + 1] - offsets[b];
        if (n <= 0) continue;
        for (int i = offsets[b]; i < offsets[b + 1]; i++) {
            if (i + EMBBAG_PREFETCH < total)
                prefetch_row(table + (size_t)ids[i + EMBBAG_PREFETCH] * E, E);
            add_row(o, table + (size_t)ids[i] * E, E);
        }
        float inv = 1.0f / (float)n;
        for (int e = 0; e < E; e++)
            o[e] *= inv;
    }
}

#if KP_NN_X86
__attribute__((target("avx2"))) static void embbag_forward_avx2(float *out, const float *table,
                                                                const uint32_t *ids,
                                                                const int *offsets, int B, int E)
{
    embbag_forward(out, table, ids, offsets, B, E);
}
#endif

void kp_embbag_forward(float *out, const float *table, const uint32_t *ids, const int *offsets,
                       int B, int E)
{
#if KP_NN_X86
    if (nn_avx2()) {
        embbag_forward_avx2(out, table, ids, offsets, B, E);
        return;
    }
#endif
    embbag_forward(out, table, ids, offsets, B, E);
}

NN_INLINE int embbag_backward(kp_rowgrad *dtable, const float *dout, const uint32_t *ids,
                              const int *offsets, int B, int E)
{
    for (int b = 0; b < B; b++) {
        int n = offsets[b + 1] - offsets[b];
        if (n <= 0) continue;
        float inv = 1.0f / (float)n;
        const float *d = dout + (size_t)b * E;
        for (int i = offsets[b]; i < offsets[b + 1]; i++) {
            float *g = kp_rowgrad_row(dtable, ids[i]);
            if (!g) return -1;
            add_scaled_row(g, d, inv, E);
        }
    }
    return 0;
}

#if KP_NN_X86
__attribute__((target("avx2"))) static int embbag_backward_avx2(kp_rowgrad *dtable,
                                                                const float *dout,
                                                                const uint32_t *ids,
                                                                const int *offsets, int B, int E)
{
    return embbag_backward(dtable, dout, ids, offsets, B, E);
}
#endif

int kp_embbag_backward(kp_rowgrad *dtable, const float *dout, const uint32_t *ids,
                       const int *offsets, int B, int E)
{
#if KP_NN_X86
    if (nn_avx2()) return embbag_backward_avx2(dtable, dout, ids, offsets, B, E);
#endif
    return embbag_backward(dtable, dout, ids, offsets, B, E);
}

/* Below this many rows the fan-outs run on the calling thread: starting a thread costs more. */
#define SPLIT_MIN_ROWS 256

typedef struct {
    kp_rowgrad *g;
    const float *dout;
    const uint32_t *ids;
    const int *offsets;
    const int32_t *slots;
    int B, E;
} bag_bwd_job;

NN_INLINE void bag_bwd(const bag_bwd_job *j, int lo, int hi)
{
    int E = j->E, base = j->offsets[0];
    for (int b = 0; b < j->B; b++) {
        int n = j->offsets[b + 1] - j->offsets[b];
        if (n <= 0) continue;
        float inv = 1.0f / (float)n;
        const float *d = j->dout + (size_t)b * E;
        for (int i = j->offsets[b]; i < j->offsets[b + 1]; i++) {
            int32_t s = j->slots[i - base];
            if (s < lo || s >= hi) continue;
            add_scaled_row(j->g->grad + (size_t)s * E, d, inv, E);
        }
    }
}

#if KP_NN_X86
__attribute__((target("avx2"))) static void bag_bwd_avx2(const bag_bwd_job *j, int lo, int hi)
{
    bag_bwd(j, lo, hi);
}
#endif

/* Adds the examples' terms into slots [lo, hi) only, examples in order. */
static int bag_bwd_range(void *ctx, int t, int lo, int hi)
{
    (void)t;
#if KP_NN_X86
    if (nn_avx2()) {
        bag_bwd_avx2(ctx, lo, hi);
        return 0;
    }
#endif
    bag_bwd(ctx, lo, hi);
    return 0;
}

int kp_embbag_backward_split(kp_rowgrad *dtable, const float *dout, const uint32_t *ids,
                             const int *offsets, int B, int E, int32_t *slots, int width)
{
    if (width <= 1 || offsets[B] - offsets[0] < SPLIT_MIN_ROWS)
        return kp_embbag_backward(dtable, dout, ids, offsets, B, E);
    int base = offsets[0];
    for (int i = base; i < offsets[B]; i++) { /* the examples' ids in order */
        if (!kp_rowgrad_row(dtable, ids[i])) return -1;
        slots[i - base] = dtable->slot[ids[i]];
    }
    bag_bwd_job j = {dtable, dout, ids, offsets, slots, B, E};
    return kp_parallel_for(width, dtable->n, bag_bwd_range, &j);
}

/* ---- linear ---------------------------------------------------------------------------------- */

void kp_linear_forward(float *out, const float *inp, const float *W, const float *bias, int B,
                       int C, int OC)
{
    if (B <= 0 || OC <= 0) return;
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * OC;
        if (bias)
            memcpy(o, bias, (size_t)OC * sizeof(float));
        else
            memset(o, 0, (size_t)OC * sizeof(float));
    }
    if (C <= 0) return;
    /* out[B x OC] += inp[B x C] @ W^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OC, C, 1.0f, inp, C, W, C, 1.0f, out,
                OC);
}

void kp_linear_forward_gemv1(float *out, const float *inp, const float *W, const float *bias, int B,
                             int C, int OC)
{
    if (B != 1 || C <= 0 || OC <= 0) {
        kp_linear_forward(out, inp, W, bias, B, C, OC);
        return;
    }
    if (bias)
        memcpy(out, bias, (size_t)OC * sizeof(float));
    else
        memset(out, 0, (size_t)OC * sizeof(float));
    /* out[OC] += W[OC x C] @ inp[C] */
    cblas_sgemv(CblasRowMajor, CblasNoTrans, OC, C, 1.0f, W, C, inp, 1, 1.0f, out, 1);
}

void kp_linear_forward_ref(float *out, const float *inp, const float *W, const float *bias, int B,
                           int C, int OC)
{
    for (int b = 0; b < B; b++) {
        const float *x = inp + (size_t)b * C;
        for (int o = 0; o < OC; o++) {
            const float *w = W + (size_t)o * C;
            float s = bias ? bias[o] : 0.0f;
            for (int c = 0; c < C; c++)
                s += x[c] * w[c];
            out[(size_t)b * OC + o] = s;
        }
    }
}

void kp_linear_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                        const float *W, int B, int C, int OC)
{
    if (B <= 0 || C <= 0 || OC <= 0) return;
    /* dinp[B x C] += dout[B x OC] @ W[OC x C] */
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, C, OC, 1.0f, dout, OC, W, C, 1.0f,
                    dinp, C);
    /* dW[OC x C] += dout^T[OC x B] @ inp[B x C] */
    if (dW)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, B, 1.0f, dout, OC, inp, C, 1.0f,
                    dW, C);
    if (dbias)
        for (int b = 0; b < B; b++)
            for (int o = 0; o < OC; o++)
                dbias[o] += dout[(size_t)b * OC + o];
}

typedef struct {
    float *dinp, *dW, *dbias;
    const float *dout, *inp, *W;
    int B, C, OC;
} linear_bwd_job;

static int linear_bwd_task(void *ctx, int t, int lo, int hi)
{
    (void)lo, (void)hi;
    const linear_bwd_job *j = ctx;
    if (t == 0)
        kp_linear_backward(j->dinp, NULL, NULL, j->dout, j->inp, j->W, j->B, j->C, j->OC);
    else
        kp_linear_backward(NULL, j->dW, j->dbias, j->dout, j->inp, j->W, j->B, j->C, j->OC);
    return 0;
}

void kp_linear_backward_split(float *dinp, float *dW, float *dbias, const float *dout,
                              const float *inp, const float *W, int B, int C, int OC, int width)
{
    if (width < 2 || !dinp || B < 64) {
        kp_linear_backward(dinp, dW, dbias, dout, inp, W, B, C, OC);
        return;
    }
    linear_bwd_job j = {dinp, dW, dbias, dout, inp, W, B, C, OC};
    kp_parallel_for(2, 2, linear_bwd_task, &j);
}

/* y[i] += g * x[i], i < n (the reference loops; no BLAS, so no reordering). */
static void add_scaled(float *y, float g, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += g * x[i];
}

void kp_linear_backward_ref(float *dinp, float *dW, float *dbias, const float *dout,
                            const float *inp, const float *W, int B, int C, int OC)
{
    for (int b = 0; b < B; b++) {
        const float *d = dout + (size_t)b * OC;
        const float *x = inp + (size_t)b * C;
        for (int o = 0; o < OC; o++) {
            float g = d[o];
            const float *w = W + (size_t)o * C;
            if (dinp) add_scaled(dinp + (size_t)b * C, g, w, C);
            if (dW) add_scaled(dW + (size_t)o * C, g, x, C);
            if (dbias) dbias[o] += g;
        }
    }
}

void kp_tanh_backward(float *dinp, const float *dout, const float *out, size_t N)
{
    for (size_t i = 0; i < N; i++)
        dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}

/* ---- L2 normalisation ------------------------------------------------------------------------ */

void kp_l2norm_forward(float *out, float *norm, const float *inp, int B, int D)
{
    for (int b = 0; b < B; b++) {
        const float *x = inp + (size_t)b * D;
        float *y = out + (size_t)b * D;
        double ss = 0.0;
        for (int d = 0; d < D; d++)
            ss += (double)x[d] * x[d];
        float n = (float)sqrt(ss);
        if (!(n > KP_L2_EPS)) n = KP_L2_EPS;
        norm[b] = n;
        float inv = 1.0f / n;
        for (int d = 0; d < D; d++)
            y[d] = x[d] * inv;
    }
}

void kp_l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm, int B,
                        int D)
{
    for (int b = 0; b < B; b++) {
        const float *g = dout + (size_t)b * D;
        const float *y = out + (size_t)b * D;
        float *dx = dinp + (size_t)b * D;
        float inv = 1.0f / norm[b];
        if (norm[b] <= KP_L2_EPS) { /* clamped: y = x / eps is linear in x */
            for (int d = 0; d < D; d++)
                dx[d] += g[d] * inv;
            continue;
        }
        float dot = 0.0f;
        for (int d = 0; d < D; d++)
            dot += g[d] * y[d];
        for (int d = 0; d < D; d++)
            dx[d] += (g[d] - y[d] * dot) * inv;
    }
}

/* ---- row-pair dot / cosine ------------------------------------------------------------------- */

void kp_rowdot_forward(float *out, const float *a, const float *x, int B, int D)
{
    for (int b = 0; b < B; b++) {
        const float *p = a + (size_t)b * D, *q = x + (size_t)b * D;
        float s = 0.0f;
        for (int d = 0; d < D; d++)
            s += p[d] * q[d];
        out[b] = s;
    }
}

void kp_rowdot_backward(float *da, float *dx, const float *dout, const float *a, const float *x,
                        int B, int D)
{
    for (int b = 0; b < B; b++) {
        float g = dout[b];
        const float *p = a + (size_t)b * D, *q = x + (size_t)b * D;
        if (da) add_scaled(da + (size_t)b * D, g, q, D);
        if (dx) add_scaled(dx + (size_t)b * D, g, p, D);
    }
}

static void cos_parts(const float *p, const float *q, int D, float *na, float *nx, float *dot)
{
    float s = 0.0f, sa = 0.0f, sx = 0.0f;
    for (int d = 0; d < D; d++) {
        s += p[d] * q[d];
        sa += p[d] * p[d];
        sx += q[d] * q[d];
    }
    *na = sqrtf(sa);
    *nx = sqrtf(sx);
    if (!(*na > KP_L2_EPS)) *na = KP_L2_EPS;
    if (!(*nx > KP_L2_EPS)) *nx = KP_L2_EPS;
    *dot = s;
}

void kp_cosine_forward(float *out, const float *a, const float *x, int B, int D)
{
    for (int b = 0; b < B; b++) {
        float na, nx, dot;
        cos_parts(a + (size_t)b * D, x + (size_t)b * D, D, &na, &nx, &dot);
        out[b] = dot / (na * nx);
    }
}

void kp_cosine_backward(float *da, float *dx, const float *dout, const float *a, const float *x,
                        int B, int D)
{
    for (int b = 0; b < B; b++) {
        const float *p = a + (size_t)b * D, *q = x + (size_t)b * D;
        float na, nx, dot;
        cos_parts(p, q, D, &na, &nx, &dot);
        float c = dot / (na * nx), g = dout[b];
        float inv = 1.0f / (na * nx);
        if (da) {
            float ka = c / (na * na);
            for (int d = 0; d < D; d++)
                da[(size_t)b * D + d] += g * (q[d] * inv - ka * p[d]);
        }
        if (dx) {
            float kx = c / (nx * nx);
            for (int d = 0; d < D; d++)
                dx[(size_t)b * D + d] += g * (p[d] * inv - kx * q[d]);
        }
    }
}

/* ---- optimisers ------------------------------------------------------------------------------ */

void kp_adam_hp_default(kp_adam_hp *hp)
{
    hp->lr = 1e-3f;
    hp->beta1 = 0.9f;
    hp->beta2 = 0.999f;
    hp->eps = 1e-8f;
    hp->weight_decay = 0.0f;
}

/* Elements updated per block of the fast AdamW: a fixed trip count the compiler vectorises
 * (kpmodel is built with -fno-math-errno, so sqrtf needs no scalar errno path). */
#define ADAM_BLOCK 16

typedef struct {
    float b1, b2, bc1, bc2, lr, eps, wd;
} adam_coef;

static adam_coef adam_coefs(const kp_adam_hp *hp, uint64_t t)
{
    if (t == 0) t = 1;
    adam_coef c = {hp->beta1,
                   hp->beta2,
                   (float)(1.0 - pow((double)hp->beta1, (double)t)),
                   (float)(1.0 - pow((double)hp->beta2, (double)t)),
                   hp->lr,
                   hp->eps,
                   hp->weight_decay};
    return c;
}

/* One element: the reference arithmetic, in the reference's order. */
NN_INLINE void adam_elem(float *p, const float *g, float *m, float *v, size_t i, const adam_coef *c)
{
    float gi = g[i];
    m[i] = c->b1 * m[i] + (1.0f - c->b1) * gi;
    v[i] = c->b2 * v[i] + (1.0f - c->b2) * gi * gi;
    float mh = m[i] / c->bc1, vh = v[i] / c->bc2;
    p[i] -= c->lr * (mh / (sqrtf(vh) + c->eps) + c->wd * p[i]);
}

static void adamw_span_ref(float *p, const float *g, float *m, float *v, size_t n,
                           const kp_adam_hp *hp, uint64_t t)
{
    adam_coef c = adam_coefs(hp, t);
    for (size_t i = 0; i < n; i++)
        adam_elem(p, g, m, v, i, &c);
}

NN_INLINE void adamw_blocks(float *restrict p, const float *restrict g, float *restrict m,
                            float *restrict v, size_t n, const adam_coef *c)
{
    size_t i = 0;
    for (; i + ADAM_BLOCK <= n; i += ADAM_BLOCK)
        for (size_t j = i; j < i + ADAM_BLOCK; j++)
            adam_elem(p, g, m, v, j, c);
    for (; i < n; i++)
        adam_elem(p, g, m, v, i, c);
}

#if KP_NN_X86
/* adamw_blocks in 8-float vectors: no FMA (-ffp-contract=off), and the division and square root
 * round exactly, so the same bits as the plain form. */
__attribute__((target("avx2"))) static void adamw_blocks_avx2(float *restrict p,
                                                              const float *restrict g,
                                                              float *restrict m, float *restrict v,
                                                              size_t n, const adam_coef *c)
{
    adamw_blocks(p, g, m, v, n, c);
}
#endif

/* AdamW over n elements with the coefficients c, in the widest form the CPU has. */
static void adamw_apply(float *restrict p, const float *restrict g, float *restrict m,
                        float *restrict v, size_t n, const adam_coef *c)
{
#if KP_NN_X86
    if (nn_avx2()) {
        adamw_blocks_avx2(p, g, m, v, n, c);
        return;
    }
#endif
    adamw_blocks(p, g, m, v, n, c);
}

static void adamw_span(float *restrict p, const float *restrict g, float *restrict m,
                       float *restrict v, size_t n, const kp_adam_hp *hp, uint64_t t)
{
    adam_coef c = adam_coefs(hp, t);
    adamw_apply(p, g, m, v, n, &c);
}

void kp_adamw_update(float *p, const float *g, float *m, float *v, size_t n, const kp_adam_hp *hp,
                     uint64_t t)
{
    adamw_span(p, g, m, v, n, hp, t);
}

void kp_adamw_update_ref(float *p, const float *g, float *m, float *v, size_t n,
                         const kp_adam_hp *hp, uint64_t t)
{
    adamw_span_ref(p, g, m, v, n, hp, t);
}

/* Rows ahead of the lazy update whose table / moment lines are requested early: the three
 * tables are each as large as the embedding table, so a row update waits on memory. */
#define ADAM_PREFETCH 2
#define COEF_MEMO     64

static void prefetch_rw(const float *row, size_t E)
{
    for (size_t e = 0; e < E; e += 16) /* 64-byte lines */
        __builtin_prefetch(row + e, 1, 3);
}

void kp_lazy_adamw_update(float *table, float *m, float *v, uint32_t *row_t, const kp_rowgrad *g,
                          const kp_adam_hp *hp)
{
    size_t E = (size_t)g->dim;
    /* the bias corrections of a step count (two pow calls), kept for the next row of that count:
     * rows touched on every step share one */
    uint64_t memo_t[COEF_MEMO] = {0}; /* 0: empty (a row's count is >= 1 here) */
    adam_coef memo_c[COEF_MEMO];
    for (int i = 0; i < g->n; i++) {
        if (i + ADAM_PREFETCH < g->n) {
            size_t ahead = (size_t)g->rows[i + ADAM_PREFETCH] * E;
            prefetch_rw(table + ahead, E);
            prefetch_rw(m + ahead, E);
            prefetch_rw(v + ahead, E);
        }
        uint32_t r = g->rows[i];
        if (row_t[r] < UINT32_MAX) row_t[r]++;
        size_t off = (size_t)r * E, h = row_t[r] % COEF_MEMO;
        if (memo_t[h] != row_t[r]) {
            memo_t[h] = row_t[r];
            memo_c[h] = adam_coefs(hp, row_t[r]);
        }
        adamw_apply(table + off, g->grad + (size_t)i * E, m + off, v + off, E, &memo_c[h]);
    }
}

typedef struct {
    float *table, *m, *v;
    uint32_t *row_t;
    const kp_rowgrad *g;
    const kp_adam_hp *hp;
} lazy_job;

/* Rows [lo, hi) of the job's gradient, as a gradient of their own. */
static int lazy_range(void *ctx, int t, int lo, int hi)
{
    (void)t;
    const lazy_job *j = ctx;
    kp_rowgrad part = *j->g;
    part.rows = j->g->rows + lo;
    part.grad = j->g->grad + (size_t)lo * (size_t)j->g->dim;
    part.n = hi - lo;
    kp_lazy_adamw_update(j->table, j->m, j->v, j->row_t, &part, j->hp);
    return 0;
}

void kp_lazy_adamw_update_split(float *table, float *m, float *v, uint32_t *row_t,
                                const kp_rowgrad *g, const kp_adam_hp *hp, int width)
{
    lazy_job j = {table, m, v, row_t, g, hp};
    kp_parallel_for(g->n < SPLIT_MIN_ROWS ? 1 : width, g->n, lazy_range, &j);
}

/* Tests for model/loss: every backward against central finite differences of its forward, the
 * BLAS score matrix against its plain reference, known values, and the Matryoshka composition
 * (prefix -> pair scores -> loss) used by the trainer. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/bienc.h"
#include "model/loss.h"
#include "model/rng.h"
#include "testhelp.h"

/* |a - b| <= tol * max(1, |a|, |b|) for each element, with a helpful message. */
static void assert_close(const float *a, const float *b, int n, double tol, const char *what)
{
    for (int i = 0; i < n; i++) {
        double s = fabs(a[i]) > fabs(b[i]) ? fabs(a[i]) : fabs(b[i]);
        if (s < 1.0) s = 1.0;
        if (!(fabs((double)a[i] - b[i]) <= tol * s)) {
            print_error("%s[%d]: %.7g vs %.7g\n", what, i, (double)a[i], (double)b[i]);
            fail();
        }
    }
}

/* ---- score matrix ---------------------------------------------------------------------------- */

static void test_scores_blas_vs_ref(void **state)
{
    (void)state;
    enum { R = 7, C = 11, D = 5 };
    float A[R * D], K[C * D], S1[R * C], S2[R * C], dS[R * C];
    th_fill_normal(A, R * D, 1, 1.0f);
    th_fill_normal(K, C * D, 2, 1.0f);
    th_fill_normal(dS, R * C, 3, 1.0f);
    kp_scores_forward(S1, A, K, R, C, D);
    kp_scores_forward_ref(S2, A, K, R, C, D);
    assert_close(S1, S2, R * C, 1e-5, "S");
    float dA1[R * D], dA2[R * D], dK1[C * D], dK2[C * D];
    for (int i = 0; i < R * D; i++)
        dA1[i] = dA2[i] = 0.5f; /* backward accumulates */
    for (int i = 0; i < C * D; i++)
        dK1[i] = dK2[i] = -0.25f;
    kp_scores_backward(dA1, dK1, dS, A, K, R, C, D);
    kp_scores_backward_ref(dA2, dK2, dS, A, K, R, C, D);
    assert_close(dA1, dA2, R * D, 1e-5, "dA");
    assert_close(dK1, dK2, C * D, 1e-5, "dK");
    /* the reference is the definition: S[r][c] = <A_r, K_c> */
    double want = 0.0;
    for (int d = 0; d < D; d++)
        want += (double)A[3 * D + d] * K[8 * D + d];
    assert_true(fabs(S2[3 * C + 8] - want) < 1e-5);
    /* dA through L = sum dS * S, by finite differences */
    float x[R * D];
    memcpy(x, A, sizeof(x));
    for (int i = 0; i < R * D; i += 3) {
        float h = 1e-2f, keep = x[i];
        double lp = 0, lm = 0;
        x[i] = keep + h;
        kp_scores_forward_ref(S2, x, K, R, C, D);
        for (int j = 0; j < R * C; j++)
            lp += (double)dS[j] * S2[j];
        x[i] = keep - h;
        kp_scores_forward_ref(S2, x, K, R, C, D);
        for (int j = 0; j < R * C; j++)
            lm += (double)dS[j] * S2[j];
        x[i] = keep;
        float num = (float)((lp - lm) / (2 * h)), ana = dA1[i] - 0.5f;
        assert_close(&num, &ana, 1, 2e-3, "dA fd");
    }
}

/* ---- generic finite-difference check of a scalar loss of a float vector ---------------------- */

typedef float (*loss_fn)(void *ctx, const float *x);

static void fd_check(loss_fn f, void *ctx, float *x, const float *grad, int n, float h, double tol,
                     const char *what)
{
    for (int i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = keep + h;
        double lp = f(ctx, x);
        x[i] = keep - h;
        double lm = f(ctx, x);
        x[i] = keep;
        float num = (float)((lp - lm) / (2.0 * h));
        char name[64];
        snprintf(name, sizeof(name), "%s fd", what);
        assert_close(&num, &grad[i], 1, tol, name);
    }
}

/* ---- gathered pairs -------------------------------------------------------------------------- */

typedef struct {
    const float *K, *w;
    const int *ia, *ik;
    int n, D;
} pair_ctx;

static float pair_loss_A(void *vctx, const float *A)
{
    pair_ctx *c = vctx;
    float s[16];
    kp_pairdot_forward(s, A, c->K, c->ia, c->ik, c->n, c->D);
    double l = 0;
    for (int p = 0; p < c->n; p++)
        l += (double)c->w[p] * s[p];
    return (float)l;
}

static void test_pairdot(void **state)
{
    (void)state;
    enum { NA = 3, NK = 4, D = 6, N = 7 };
    float A[NA * D], K[NK * D], w[N], s[N];
    int ia[N] = {0, 1, 2, 0, 1, 2, 2}, ik[N] = {0, 1, 2, 3, 3, 0, 0};
    th_fill_normal(A, NA * D, 4, 1.0f);
    th_fill_normal(K, NK * D, 5, 1.0f);
    th_fill_normal(w, N, 6, 1.0f);
    kp_pairdot_forward(s, A, K, ia, ik, N, D);
    double want = 0;
    for (int d = 0; d < D; d++)
        want += (double)A[1 * D + d] * K[3 * D + d];
    assert_true(fabs(s[4] - want) < 1e-5);
    float dA[NA * D] = {0}, dK[NK * D] = {0};
    kp_pairdot_backward(dA, dK, w, A, K, ia, ik, N, D);
    pair_ctx c = {K, w, ia, ik, N, D};
    fd_check(pair_loss_A, &c, A, dA, NA * D, 1e-2f, 2e-3, "pairdot dA");
    /* dK: swap roles (s is symmetric in A/K rows) */
    pair_ctx c2 = {A, w, ik, ia, N, D};
    fd_check(pair_loss_A, &c2, K, dK, NK * D, 1e-2f, 2e-3, "pairdot dK");
}

/* ---- in-batch softmax ------------------------------------------------------------------------ */

typedef struct {
    const int *pos;
    const unsigned char *mask;
    int R, C;
    float tau;
    float *P;
} soft_ctx;

static float soft_loss(void *vctx, const float *S)
{
    soft_ctx *c = vctx;
    return kp_loss_softmax_forward(c->P, S, c->pos, c->mask, c->R, c->C, c->tau);
}

static void test_softmax(void **state)
{
    (void)state;
    enum { R = 4, C = 6 };
    float S[R * C], P[R * C], dS[R * C];
    int pos[R] = {0, 3, 5, 2};
    unsigned char mask[R * C] = {0};
    mask[0 * C + 4] = 1;
    mask[1 * C + 3] = 1; /* the positive itself: ignored */
    mask[2 * C + 0] = mask[2 * C + 1] = 1;
    th_fill_normal(S, R * C, 7, 0.5f);
    float tau = 0.3f;
    float l = kp_loss_softmax_forward(P, S, pos, mask, R, C, tau);
    /* by hand: row r, columns not masked */
    double want = 0;
    for (int r = 0; r < R; r++) {
        double z = 0, rs = 0;
        for (int c = 0; c < C; c++) {
            int m = c != pos[r] && mask[r * C + c];
            if (!m) z += exp(S[r * C + c] / tau);
            if (!m) rs += P[r * C + c];
            if (m) assert_true(P[r * C + c] == 0.0f);
        }
        assert_true(fabs(rs - 1.0) < 1e-5);
        want += -log(exp(S[r * C + pos[r]] / tau) / z);
    }
    want /= R;
    assert_true(fabs(l - want) < 1e-4 * fabs(want) + 1e-5);
    memset(dS, 0, sizeof(dS));
    kp_loss_softmax_backward(dS, P, pos, mask, R, C, tau, 1.0f);
    soft_ctx c = {pos, mask, R, C, tau, P};
    float S2[R * C];
    memcpy(S2, S, sizeof(S));
    float Pscratch[R * C];
    c.P = Pscratch;
    fd_check(soft_loss, &c, S2, dS, R * C, 1e-3f, 5e-3, "softmax dS");
    /* weight scales the gradient and it accumulates */
    float dS2[R * C];
    for (int i = 0; i < R * C; i++)
        dS2[i] = 1.0f;
    kp_loss_softmax_backward(dS2, P, pos, mask, R, C, tau, 2.0f);
    for (int i = 0; i < R * C; i++)
        assert_true(fabs(dS2[i] - (1.0f + 2.0f * dS[i])) < 1e-5);
    /* stable at large scores: no overflow */
    for (int i = 0; i < R * C; i++)
        S2[i] = 1e3f * S[i];
    float lb = kp_loss_softmax_forward(P, S2, pos, NULL, R, C, 0.01f);
    assert_true(isfinite(lb) && lb >= 0.0f);
    /* perfect separation -> loss near 0 */
    for (int i = 0; i < R * C; i++)
        S2[i] = -1.0f;
    for (int r = 0; r < R; r++)
        S2[r * C + pos[r]] = 1.0f;
    assert_true(kp_loss_softmax_forward(P, S2, pos, NULL, R, C, 0.02f) < 1e-6f);
}

/* ---- BCE ------------------------------------------------------------------------------------- */

typedef struct {
    const float *s, *y, *wt, *off;
    int n;
    float tau, bias;
    int which; /* 0: d s, 1: d off, 2: d bias */
} bce_ctx;

static float bce_loss(void *vctx, const float *x)
{
    bce_ctx *c = vctx;
    if (c->which == 0) return kp_loss_bce_forward(x, c->y, c->wt, c->off, c->n, c->tau, c->bias);
    if (c->which == 1) return kp_loss_bce_forward(c->s, c->y, c->wt, x, c->n, c->tau, c->bias);
    return kp_loss_bce_forward(c->s, c->y, c->wt, c->off, c->n, c->tau, x[0]);
}

static void test_bce(void **state)
{
    (void)state;
    enum { N = 9 };
    float s[N], y[N], wt[N], off[N];
    th_fill_normal(s, N, 8, 0.5f);
    th_fill_uniform(y, N, 9);
    th_fill_uniform(wt, N, 10);
    th_fill_normal(off, N, 11, 0.3f);
    y[0] = 0.0f, y[1] = 1.0f;
    float tau = 0.5f, bias = -0.4f;
    float l = kp_loss_bce_forward(s, y, wt, off, N, tau, bias);
    double want = 0, ws = 0;
    for (int i = 0; i < N; i++) {
        double x = s[i] / tau + off[i] + bias, p = 1.0 / (1.0 + exp(-x));
        want += wt[i] * -(y[i] * log(p) + (1 - y[i]) * log(1 - p));
        ws += wt[i];
    }
    assert_true(fabs(l - want / ws) < 1e-5);
    float ds[N] = {0}, doff[N] = {0}, db = 0;
    kp_loss_bce_backward(ds, doff, &db, s, y, wt, off, N, tau, bias, 1.0f);
    bce_ctx c = {s, y, wt, off, N, tau, bias, 0};
    float x[N];
    memcpy(x, s, sizeof(x));
    fd_check(bce_loss, &c, x, ds, N, 1e-3f, 2e-3, "bce ds");
    c.which = 1;
    memcpy(x, off, sizeof(x));
    fd_check(bce_loss, &c, x, doff, N, 1e-3f, 2e-3, "bce doff");
    c.which = 2;
    float b1 = bias;
    fd_check(bce_loss, &c, &b1, &db, 1, 1e-3f, 2e-3, "bce dbias");
    /* the bias gradient is the sum of the offset gradients */
    double so = 0;
    for (int i = 0; i < N; i++)
        so += doff[i];
    assert_true(fabs(so - db) < 1e-5);
    /* NULL weights/offsets = 1/0; extreme logits stay finite */
    float big[2] = {1e4f, -1e4f}, yy[2] = {0.0f, 1.0f};
    float lb = kp_loss_bce_forward(big, yy, NULL, NULL, 2, 0.01f, 0.0f);
    assert_true(isfinite(lb) && lb > 1e5f);
    float g2[2] = {0, 0};
    kp_loss_bce_backward(g2, NULL, NULL, big, yy, NULL, NULL, 2, 0.01f, 0.0f, 1.0f);
    assert_true(isfinite(g2[0]) && g2[0] > 0.0f && isfinite(g2[1]) && g2[1] < 0.0f);
    /* zero total weight: loss 0, no gradient */
    float zw[2] = {0, 0};
    assert_true(kp_loss_bce_forward(s, y, zw, NULL, 2, 1.0f, 0.0f) == 0.0f);
}

/* ---- MSE ------------------------------------------------------------------------------------- */

typedef struct {
    const float *y;
    int n;
    float a, b;
} mse_ctx;

static float mse_loss(void *vctx, const float *x)
{
    mse_ctx *c = vctx;
    return kp_loss_mse_forward(x, c->y, c->n, c->a, c->b);
}

static void test_mse(void **state)
{
    (void)state;
    enum { N = 8 };
    float s[N], y[N], ds[N] = {0};
    th_fill_normal(s, N, 12, 0.5f);
    th_fill_uniform(y, N, 13);
    float a = 0.5f, b = 0.5f;
    double want = 0;
    for (int i = 0; i < N; i++)
        want += (a * s[i] + b - y[i]) * (a * s[i] + b - y[i]);
    assert_true(fabs(kp_loss_mse_forward(s, y, N, a, b) - want / N) < 1e-6);
    kp_loss_mse_backward(ds, s, y, N, a, b, 1.0f);
    mse_ctx c = {y, N, a, b};
    fd_check(mse_loss, &c, s, ds, N, 1e-3f, 2e-3, "mse ds");
    assert_true(kp_loss_mse_forward(NULL, NULL, 0, 1, 0) == 0.0f);
}

/* ---- Pearson --------------------------------------------------------------------------------- */

typedef struct {
    const float *t;
    int n;
} pear_ctx;

static float pear_loss(void *vctx, const float *x)
{
    pear_ctx *c = vctx;
    return kp_loss_pearson_forward(x, c->t, c->n);
}

/* Pearson correlation, textbook two-pass in double (the plain reference of the loss). */
static double pearson_ref(const float *x, const float *y, int n)
{
    double mx = 0.0, my = 0.0, sxy = 0.0, sxx = 0.0, syy = 0.0;
    for (int i = 0; i < n; i++)
        mx += x[i], my += y[i];
    mx /= n, my /= n;
    for (int i = 0; i < n; i++) {
        double dx = x[i] - mx, dy = y[i] - my;
        sxy += dx * dy, sxx += dx * dx, syy += dy * dy;
    }
    return sxy / sqrt(sxx * syy);
}

static void test_pearson(void **state)
{
    (void)state;
    enum { N = 12 };
    float s[N], t[N], ds[N] = {0};
    th_fill_normal(s, N, 14, 0.3f);
    th_fill_uniform(t, N, 15);
    float l = kp_loss_pearson_forward(s, t, N);
    assert_true(fabs(l - (1.0 - pearson_ref(s, t, N))) < 1e-5);
    kp_loss_pearson_backward(ds, s, t, N, 1.0f);
    pear_ctx c = {t, N};
    fd_check(pear_loss, &c, s, ds, N, 1e-3f, 5e-3, "pearson ds");
    /* invariant to affine maps of s: the gradient is orthogonal to 1 and to s - mean */
    double g1 = 0, gs = 0, ms = 0;
    for (int i = 0; i < N; i++)
        ms += s[i] / N;
    for (int i = 0; i < N; i++)
        g1 += ds[i], gs += ds[i] * (s[i] - ms);
    assert_true(fabs(g1) < 1e-5 && fabs(gs) < 1e-5);
    /* perfectly correlated: loss 0, gradient 0 */
    float u[N], du[N] = {0};
    for (int i = 0; i < N; i++)
        u[i] = 3.0f * t[i] - 1.0f;
    assert_true(fabs(kp_loss_pearson_forward(u, t, N)) < 1e-5);
    kp_loss_pearson_backward(du, u, t, N, 1.0f);
    for (int i = 0; i < N; i++)
        assert_true(fabs(du[i]) < 1e-4);
    /* constant teacher: loss 1, no gradient; n < 2: loss 0 */
    float k[N];
    for (int i = 0; i < N; i++)
        k[i] = 0.5f;
    assert_true(fabs(kp_loss_pearson_forward(s, k, N) - 1.0f) < 1e-6);
    memset(du, 0, sizeof(du));
    kp_loss_pearson_backward(du, s, k, N, 1.0f);
    for (int i = 0; i < N; i++)
        assert_true(du[i] == 0.0f);
    assert_true(kp_loss_pearson_forward(s, t, 1) == 0.0f);
    /* a gradient step in -ds raises the correlation */
    float s2[N];
    for (int i = 0; i < N; i++)
        s2[i] = s[i] - 0.05f * ds[i];
    assert_true(kp_loss_pearson_forward(s2, t, N) < l);
}

/* ---- Matryoshka composition: emb -> prefix -> pair scores -> Pearson + MSE ----------------- */

enum { MI = 3, MK = 4, MD = 8, MP = 3, MN = 6 };
static const int m_ia[MN] = {0, 0, 1, 1, 2, 2}, m_ik[MN] = {0, 1, 1, 2, 3, 0};
static const int m_sizes[2] = {MP, MD};

typedef struct {
    const float *EK, *t;
} mat_ctx;

/* sum over sizes {MP, MD} of pearson(s_p, t) + mse(s_p, t) */
static float mat_loss(void *vctx, const float *EI)
{
    mat_ctx *c = vctx;
    double l = 0;
    for (int z = 0; z < 2; z++) {
        int p = m_sizes[z];
        float pi[MI * MD], pk[MK * MD], s[MN];
        kp_bienc_prefix(EI, MI, MD, p, pi, NULL);
        kp_bienc_prefix(c->EK, MK, MD, p, pk, NULL);
        kp_pairdot_forward(s, pi, pk, m_ia, m_ik, MN, p);
        l += kp_loss_pearson_forward(s, c->t, MN) + kp_loss_mse_forward(s, c->t, MN, 1.0f, 0.0f);
    }
    return (float)l;
}

static void test_matryoshka_composition(void **state)
{
    (void)state;
    float EI[MI * MD], EK[MK * MD], t[MN], dEI[MI * MD] = {0}, dEK[MK * MD] = {0};
    th_fill_normal(EI, MI * MD, 16, 1.0f);
    th_fill_normal(EK, MK * MD, 17, 1.0f);
    th_fill_uniform(t, MN, 18);
    for (int z = 0; z < 2; z++) {
        int p = m_sizes[z];
        float pi[MI * MD], pk[MK * MD], ni[MI], nk[MK], s[MN], ds[MN] = {0};
        float dpi[MI * MD] = {0}, dpk[MK * MD] = {0};
        kp_bienc_prefix(EI, MI, MD, p, pi, ni);
        kp_bienc_prefix(EK, MK, MD, p, pk, nk);
        kp_pairdot_forward(s, pi, pk, m_ia, m_ik, MN, p);
        kp_loss_pearson_backward(ds, s, t, MN, 1.0f);
        kp_loss_mse_backward(ds, s, t, MN, 1.0f, 0.0f, 1.0f);
        kp_pairdot_backward(dpi, dpk, ds, pi, pk, m_ia, m_ik, MN, p);
        kp_bienc_prefix_backward(dEI, dpi, pi, ni, MI, MD, p);
        kp_bienc_prefix_backward(dEK, dpk, pk, nk, MK, MD, p);
    }
    mat_ctx c = {EK, t};
    fd_check(mat_loss, &c, EI, dEI, MI * MD, 1e-3f, 1e-2, "matryoshka dEI");
    /* the columns beyond the small prefix only get gradient from the full size */
    double beyond = 0;
    for (int i = 0; i < MI; i++)
        for (int d = MP; d < MD; d++)
            beyond += fabs(dEI[i * MD + d]);
    assert_true(beyond > 0.0);
}

TH_MAIN(cmocka_unit_test(test_scores_blas_vs_ref), cmocka_unit_test(test_pairdot),
        cmocka_unit_test(test_softmax), cmocka_unit_test(test_bce), cmocka_unit_test(test_mse),
        cmocka_unit_test(test_pearson), cmocka_unit_test(test_matryoshka_composition))

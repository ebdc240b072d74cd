/* Tests for model/ce (cross-encoder), model/ce_train and model/split: tokens, layer gradients by
 * finite differences, pair/head gradients, scoring, checkpoints, a small training run. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/bienc.h"
#include "model/ce.h"
#include "model/ckpt.h"
#include "model/rng.h"
#include "testhelp.h"
#include "th_main.h"

#define assert_grad_close(a, n, what, i) th_assert_grad_close(a, n, 2e-3, what, i)

/* ---- tokens ---------------------------------------------------------------------------------- */

static void test_tokenize(void **state)
{
    (void)state;
    kp_ce_tokbuf a, b;
    kp_ce_text t = kp_ce_tokenize("Red DRILLS, 1/2 in.", 1000, &a);
    assert_int_equal(t.n, 5);
    assert_int_equal(t.off[0], 0);
    /* one unigram + one trigram per code point: red 1+3, drills 1+6, 1 1+1, 2 1+1, in 1+2 */
    assert_int_equal(t.off[5], 4 + 7 + 2 + 2 + 3);
    assert_int_equal(t.n_tri, 3 + 6 + 1 + 1 + 2);
    for (int i = 0; i < t.off[5]; i++)
        assert_true(t.ids[i] < 1000);
    kp_ce_text u = kp_ce_tokenize("drill red", 1000, &b);
    assert_int_equal(u.n, 2);
    assert_true(t.wh[0] == u.wh[1]);  /* case-insensitive */
    assert_true(t.sh[1] == u.sh[0]);  /* drills ~ drill by stem */
    assert_false(t.wh[1] == u.wh[0]); /* but not the same word */
    assert_true(t.sh[4] == t.wh[4]);  /* short words are their own stem */
    assert_int_equal(kp_ce_tokenize("", 1000, &a).n, 0);
    assert_int_equal(kp_ce_tokenize(NULL, 1000, &a).n, 0);
    assert_int_equal(kp_ce_tokenize(" ,;- ", 1000, &a).n, 0);
    /* caps: tokens and trigrams per token */
    char longtext[2000], *p = longtext;
    for (int i = 0; i < 100; i++)
        p += sprintf(p, "w%d ", i);
    assert_int_equal(kp_ce_tokenize(longtext, 1000, &a).n, KP_CE_MAX_TOK);
    t = kp_ce_tokenize("abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz", 1000, &a);
    assert_int_equal(t.n, 1);
    assert_int_equal(t.off[1], 1 + KP_CE_MAX_TRI);
    /* invalid UTF-8 is skipped, never an error */
    t = kp_ce_tokenize("ab\xff\xfe cd", 1000, &a);
    assert_int_equal(t.n, 2);
}

/* ---- layer gradients ------------------------------------------------------------------------- */

/* sum w * simmat(A, B) (the loss of the simmat gradient check) */
typedef struct {
    float *M;
    const float *A, *B, *w;
    int ni, nk, e;
} simmat_ctx;

static double simmat_loss(void *vctx)
{
    simmat_ctx *c = vctx;
    kp_ce_simmat_forward(c->M, c->A, c->B, c->ni, c->nk, c->e);
    return th_wsum(c->M, c->w, (size_t)c->ni * (size_t)c->nk);
}

/* sum w * the kernel pooling of M (weighted by wcol unless NULL: the kernel gradient checks) */
typedef struct {
    float *feat, *S;
    const float *M, *mu, *sigma, *wcol, *w;
    int ni, nk, k;
} kernel_ctx;

static double kernel_loss(void *vctx)
{
    kernel_ctx *c = vctx;
    if (c->wcol)
        kp_ce_wkernel_forward(c->feat, c->S, c->M, c->ni, c->nk, c->mu, c->sigma, c->k, c->wcol);
    else
        kp_ce_kernel_forward(c->feat, c->S, c->M, c->ni, c->nk, c->mu, c->sigma, c->k);
    return th_wsum(c->feat, c->w, (size_t)c->k);
}

static void test_simmat_grad(void **state)
{
    (void)state;
    kp_rng r = th_rng(3);
    enum { NI = 4, NK = 3, E = 5 };
    float A[NI * E], B[NK * E], M[NI * NK], w[NI * NK], dA[NI * E] = {0}, dB[NK * E] = {0};
    th_fill(&r, A, NI * E, 1.0f);
    th_fill(&r, B, NK * E, 1.0f);
    th_fill(&r, w, NI * NK, 1.0f);
    kp_ce_simmat_forward(M, A, B, NI, NK, E);
    /* forward against an explicit dot product */
    double d = 0;
    for (int e = 0; e < E; e++)
        d += (double)A[2 * E + e] * B[1 * E + e];
    assert_true(fabs(d - M[2 * NK + 1]) < 1e-5);
    kp_ce_simmat_backward(dA, dB, w, A, B, NI, NK, E);
    const float h = 1e-2f;
    simmat_ctx ctx = {M, A, B, w, NI, NK, E};
    for (int i = 0; i < NI * E; i++)
        assert_grad_close(dA[i], th_central_diff(A, (size_t)i, h, simmat_loss, &ctx), "dA", i);
    for (int i = 0; i < NK * E; i++)
        assert_grad_close(dB[i], th_central_diff(B, (size_t)i, h, simmat_loss, &ctx), "dB", i);
}

static void test_kernel_grad(void **state)
{
    (void)state;
    kp_rng r = th_rng(4);
    enum { NI = 5, NK = 3, K = 4 };
    const float mu[K] = {0.9f, 0.4f, 0.0f, -0.5f}, sigma[K] = {0.2f, 0.3f, 0.25f, 0.4f};
    float M[NI * NK], S[NK * K], feat[K], w[K], dM[NI * NK] = {0};
    for (int i = 0; i < NI * NK; i++)
        M[i] = 2.0f * kp_rng_uniform(&r) - 1.0f;
    th_fill(&r, w, K, 1.0f);
    kp_ce_kernel_forward(feat, S, M, NI, NK, mu, sigma, K);
    /* forward against the formula for one kernel */
    double f1 = 0;
    for (int j = 0; j < NK; j++) {
        double s = 0;
        for (int i = 0; i < NI; i++)
            s += exp(-pow(M[i * NK + j] - mu[1], 2) / (2 * sigma[1] * sigma[1]));
        f1 += log1p(s);
    }
    assert_true(fabs(f1 / NK - feat[1]) < 1e-4);
    kp_ce_kernel_backward(dM, w, S, M, NI, NK, mu, sigma, K);
    const float h = 1e-3f;
    kernel_ctx ctx = {feat, S, M, mu, sigma, NULL, w, NI, NK, K};
    for (int i = 0; i < NI * NK; i++)
        assert_grad_close(dM[i], th_central_diff(M, (size_t)i, h, kernel_loss, &ctx), "dM", i);
    /* empty sides give zero features and no gradient */
    kp_ce_kernel_forward(feat, S, M, 0, NK, mu, sigma, K);
    for (int k = 0; k < K; k++)
        assert_true(feat[k] == 0.0f);
}

static void test_wkernel_transpose_grad(void **state)
{
    (void)state;
    kp_rng r = th_rng(6);
    enum { NI = 5, NK = 3, K = 4 };
    const float mu[K] = {0.9f, 0.4f, 0.0f, -0.5f}, sigma[K] = {0.2f, 0.3f, 0.25f, 0.4f};
    float M[NI * NK], S[NK * K], S0[NK * K], feat[K], f0[K], w[K], dM[NI * NK] = {0};
    float wc[NK] = {0.5f, 0.2f, 0.3f}, wu[NK] = {1.0f / 3, 1.0f / 3, 1.0f / 3};
    for (int i = 0; i < NI * NK; i++)
        M[i] = 2.0f * kp_rng_uniform(&r) - 1.0f;
    th_fill(&r, w, K, 1.0f);
    /* uniform weights = the plain kernel pooling (the reference) */
    kp_ce_wkernel_forward(feat, S, M, NI, NK, mu, sigma, K, wu);
    kp_ce_kernel_forward(f0, S0, M, NI, NK, mu, sigma, K);
    for (int k = 0; k < K; k++)
        assert_true(fabsf(feat[k] - f0[k]) < 1e-5f);
    kp_ce_wkernel_forward(feat, S, M, NI, NK, mu, sigma, K, wc);
    kp_ce_wkernel_backward(dM, w, S, M, NI, NK, mu, sigma, K, wc);
    const float h = 1e-3f;
    kernel_ctx ctx = {feat, S, M, mu, sigma, wc, w, NI, NK, K};
    for (int i = 0; i < NI * NK; i++)
        assert_grad_close(dM[i], th_central_diff(M, (size_t)i, h, kernel_loss, &ctx), "dM(wkernel)",
                          i);
    kp_ce_wkernel_forward(feat, S, M, NI, 0, mu, sigma, K, wc);
    for (int k = 0; k < K; k++)
        assert_true(feat[k] == 0.0f);
    /* transpose: forward and its backward (the adjoint) */
    float T[NK * NI], dT[NK * NI], dM2[NI * NK] = {0};
    kp_ce_transpose_forward(T, M, NI, NK);
    assert_true(T[2 * NI + 4] == M[4 * NK + 2]);
    th_fill(&r, dT, NK * NI, 1.0f);
    kp_ce_transpose_backward(dM2, dT, NI, NK);
    for (int i = 0; i < NI; i++)
        for (int j = 0; j < NK; j++)
            assert_true(dM2[i * NK + j] == dT[j * NI + i]);
}

static void test_kernels3_matches_reference(void **state)
{
    (void)state;
    kp_rng r = th_rng(8);
    enum { K = KP_CE_N_KERNELS };
    const int shapes[][2] = {{1, 1}, {5, 3}, {17, 2}, {3, 9}, {64, 64}, {0, 4}, {4, 0}};
    static float M[64 * 64], T[64 * 64], S[64 * K], S2[64 * K], Sr[64 * K], S2r[64 * K];
    float wc[64], f[K], fT[K], fW[K], r1[K], rT[K], rW[K];
    for (size_t q = 0; q < sizeof(shapes) / sizeof(shapes[0]); q++) {
        int ni = shapes[q][0], nk = shapes[q][1];
        for (int i = 0; i < ni * nk; i++)
            M[i] = 2.0f * kp_rng_uniform(&r) - 1.0f;
        if (ni * nk > 0) M[0] = 1.0f; /* an exact match */
        float ws = 0.0f;
        for (int j = 0; j < nk; j++)
            ws += wc[j] = 0.1f + kp_rng_uniform(&r);
        for (int j = 0; j < nk; j++)
            wc[j] /= ws;
        kp_ce_kernels3_forward(f, fT, fW, S, S2, M, ni, nk, kp_ce_kernel_mu, kp_ce_kernel_sigma, K,
                               wc);
        kp_ce_kernel_forward(r1, Sr, M, ni, nk, kp_ce_kernel_mu, kp_ce_kernel_sigma, K);
        kp_ce_transpose_forward(T, M, ni, nk);
        kp_ce_kernel_forward(rT, S2r, T, nk, ni, kp_ce_kernel_mu, kp_ce_kernel_sigma, K);
        kp_ce_wkernel_forward(rW, Sr, M, ni, nk, kp_ce_kernel_mu, kp_ce_kernel_sigma, K, wc);
        for (int k = 0; k < K; k++) {
            assert_true(fabsf(f[k] - r1[k]) <= 1e-6f * (1.0f + fabsf(r1[k])));
            assert_true(fabsf(fT[k] - rT[k]) <= 1e-6f * (1.0f + fabsf(rT[k])));
            assert_true(fabsf(fW[k] - rW[k]) <= 1e-6f * (1.0f + fabsf(rW[k])));
        }
        if (ni > 0 && nk > 0) { /* the sums the backward reads */
            for (int i = 0; i < nk * K; i++)
                assert_true(fabsf(S[i] - Sr[i]) <= 1e-6f * (1.0f + Sr[i]));
            for (int i = 0; i < ni * K; i++)
                assert_true(fabsf(S2[i] - S2r[i]) <= 1e-6f * (1.0f + S2r[i]));
        }
    }
}

static void test_maxsim_grad(void **state)
{
    (void)state;
    kp_rng r = th_rng(7);
    enum { NI = 6, NK = 4 };
    float M[NI * NK], out[KP_CE_N_MAXSIM], w[KP_CE_N_MAXSIM], dM[NI * NK] = {0};
    float wc[NK] = {0.1f, 0.4f, 0.3f, 0.2f};
    int am[NI + NK + 1];
    for (int i = 0; i < NI * NK; i++)
        M[i] = 2.0f * kp_rng_uniform(&r) - 1.0f;
    th_fill(&r, w, KP_CE_N_MAXSIM, 1.0f);
    kp_ce_maxsim_forward(out, am, M, NI, NK, wc);
    /* forward against plain loops */
    double colmax[NK], s0 = 0, s1 = 0, mn = 1e9, s3 = 0;
    for (int j = 0; j < NK; j++) {
        colmax[j] = -1e9;
        for (int i = 0; i < NI; i++)
            colmax[j] = fmax(colmax[j], M[i * NK + j]);
        s0 += colmax[j] / NK, s1 += wc[j] * colmax[j], mn = fmin(mn, colmax[j]);
    }
    for (int i = 0; i < NI; i++) {
        double rm = -1e9;
        for (int j = 0; j < NK; j++)
            rm = fmax(rm, M[i * NK + j]);
        s3 += rm / NI;
    }
    assert_true(fabs(out[0] - s0) < 1e-5 && fabs(out[1] - s1) < 1e-5);
    assert_true(fabs(out[2] - mn) < 1e-6 && fabs(out[3] - s3) < 1e-5);
    kp_ce_maxsim_backward(dM, w, am, NI, NK, wc);
    const float h = 1e-3f; /* random uniform values: no ties within 2h */
    for (int i = 0; i < NI * NK; i++) {
        float s = M[i];
        M[i] = s + h;
        kp_ce_maxsim_forward(out, am, M, NI, NK, wc);
        double lp = th_wsum(out, w, KP_CE_N_MAXSIM);
        M[i] = s - h;
        kp_ce_maxsim_forward(out, am, M, NI, NK, wc);
        double lm = th_wsum(out, w, KP_CE_N_MAXSIM);
        M[i] = s;
        assert_grad_close(dM[i], (lp - lm) / (2 * h), "dM(maxsim)", i);
    }
    kp_ce_maxsim_forward(out, am, M, 0, NK, wc);
    for (int f = 0; f < KP_CE_N_MAXSIM; f++)
        assert_true(out[f] == 0.0f);
}

static void test_pool_interact_grad(void **state)
{
    (void)state;
    kp_rng r = th_rng(5);
    enum { N = 3, E = 4 };
    float X[N * E], Y[N * E], a[E], b[E], out[4 * E], w[4 * E];
    float dX[N * E] = {0}, dY[N * E] = {0}, da[E] = {0}, db[E] = {0};
    th_fill(&r, X, N * E, 1.0f);
    th_fill(&r, Y, N * E, 1.0f);
    th_fill(&r, w, 4 * E, 1.0f);
    /* loss = <w, interact(mean X, mean Y)> */
    kp_ce_meanpool_forward(a, X, N, E);
    kp_ce_meanpool_forward(b, Y, N, E);
    assert_true(fabsf(a[1] - (X[1] + X[E + 1] + X[2 * E + 1]) / 3.0f) < 1e-6f);
    kp_ce_interact_forward(out, a, b, E);
    assert_true(out[3 * E + 2] == fabsf(a[2] - b[2]));
    assert_true(out[2 * E + 2] == a[2] * b[2]);
    kp_ce_interact_backward(da, db, w, a, b, E);
    kp_ce_meanpool_backward(dX, da, N, E);
    kp_ce_meanpool_backward(dY, db, N, E);
    const float h = 1e-3f;
    float *params[2] = {X, Y}, *grads[2] = {dX, dY};
    for (int p = 0; p < 2; p++) {
        for (int i = 0; i < N * E; i++) {
            double l[2];
            float s = params[p][i];
            for (int sg = 0; sg < 2; sg++) {
                params[p][i] = s + (sg ? -h : h);
                kp_ce_meanpool_forward(a, X, N, E);
                kp_ce_meanpool_forward(b, Y, N, E);
                kp_ce_interact_forward(out, a, b, E);
                l[sg] = th_wsum(out, w, 4 * E);
            }
            params[p][i] = s;
            assert_grad_close(grads[p][i], (l[0] - l[1]) / (2 * h), p ? "dY" : "dX", i);
        }
    }
}

static void test_bce_grad(void **state)
{
    (void)state;
    float z[5] = {-3.0f, -0.5f, 0.0f, 1.2f, 40.0f}, y[5] = {0.0f, 1.0f, 0.5f, 0.25f, 1.0f};
    float dz[5] = {0};
    float loss = kp_ce_bce_forward_backward(z, y, 5, dz);
    assert_true(isfinite(loss) && loss > 0.0f);
    /* against the textbook formula on the moderate logits */
    double ref = 0;
    for (int i = 0; i < 4; i++) {
        double s = 1.0 / (1.0 + exp(-z[i]));
        ref += -(y[i] * log(s) + (1 - y[i]) * log(1 - s));
    }
    ref += log1p(exp(-40.0)); /* z = 40, y = 1 */
    assert_true(fabs(ref / 5 - loss) < 1e-5);
    const float h = 1e-2f;
    for (int i = 0; i < 5; i++) {
        float s = z[i];
        z[i] = s + h;
        double lp = kp_ce_bce_forward_backward(z, y, 5, NULL);
        z[i] = s - h;
        double lm = kp_ce_bce_forward_backward(z, y, 5, NULL);
        z[i] = s;
        assert_grad_close(dz[i], (lp - lm) / (2 * h), "dz", i);
    }
    assert_true(kp_ce_sigmoid(-100.0f) >= 0.0f && kp_ce_sigmoid(100.0f) <= 1.0f);
}

/* ---- whole-pair and head gradients ----------------------------------------------------------- */

static kp_ce *small_model(uint64_t seed)
{
    kp_ce_config c = {512, 6, 5, 64, 1};
    return kp_ce_new(&c, seed);
}

static void test_pair_grad(void **state)
{
    (void)state;
    kp_ce *m = small_model(11);
    assert_non_null(m);
    const uint32_t nb = kp_ce_cfg(m)->n_buckets;
    const int E = kp_ce_cfg(m)->emb_dim, F = kp_ce_n_features(m);
    assert_int_equal(F, KP_CE_N_KERNELS + KP_CE_N_EXACT + 4 * E + KP_CE_N_EXT);
    kp_ce_tokbuf bi, bk;
    kp_ce_text ti = kp_ce_tokenize("cordless drill kit with battery", nb, &bi);
    kp_ce_text tk = kp_ce_tokenize("battery drills", nb, &bk);
    kp_ce_ws *w = kp_ce_ws_new(m);
    float *x = malloc((size_t)F * sizeof(float)), *r = malloc((size_t)F * sizeof(float));
    assert_non_null(w);
    kp_rng rng = th_rng(12);
    th_fill(&rng, r, (size_t)F, 1.0f);
    /* exact-match kernels (sigma 0.001): not differentiable in float FD */
    const int xo = KP_CE_N_KERNELS + KP_CE_N_EXACT + 4 * E;
    r[0] = r[xo] = r[xo + KP_CE_N_KERNELS] = 0.0f;
    kp_rowgrad g;
    assert_int_equal(kp_rowgrad_init(&g, nb, E), 0);
    assert_int_equal(kp_ce_pair_backward(m, &ti, &tk, r, w, &g), 0);
    assert_true(g.n > 0);
    float *emb = kp_ce_emb(m);
    const float h = 1e-2f;
    int checked = 0;
    for (int k = 0; k < g.n; k += 3) {
        uint32_t row = g.rows[k];
        for (int e = 0; e < E; e++) {
            float *p = emb + (size_t)row * E + e, s = *p;
            *p = s + h;
            kp_ce_pair_features(m, &ti, &tk, x, w);
            double lp = th_wsum(x, r, (size_t)F);
            *p = s - h;
            kp_ce_pair_features(m, &ti, &tk, x, w);
            double lm = th_wsum(x, r, (size_t)F);
            *p = s;
            assert_grad_close(g.grad[(size_t)k * E + e], (lp - lm) / (2 * h), "demb", k * E + e);
            checked++;
        }
    }
    assert_true(checked >= E * 3);
    /* exact-match features of this pair: "battery" matches, "drills" matches by stem */
    kp_ce_pair_features(m, &ti, &tk, x, w);
    const float *ex = x + KP_CE_N_KERNELS;
    assert_true(fabsf(ex[0] - 0.5f) < 1e-6f); /* exact tokens: battery */
    assert_true(fabsf(ex[1] - 1.0f) < 1e-6f); /* stems: battery, drill */
    assert_true(ex[6] == 0.0f);               /* not a contiguous phrase of the title */
    assert_true(ex[12] == 1.0f && ex[13] == 1.0f);
    kp_rowgrad_free(&g);
    free(x);
    free(r);
    kp_ce_ws_free(w);
    kp_ce_free(m);
}

/* the BCE of the head's scores of x (the loss of the head gradient check) */
typedef struct {
    const kp_ce *m;
    const float *x;
    float *hb, *z;
    const float *y;
    int b;
} head_ctx;

static double head_loss(void *vctx)
{
    head_ctx *c = vctx;
    kp_ce_head_forward(c->m, c->x, c->b, c->hb, c->z);
    return kp_ce_bce_forward_backward(c->z, c->y, c->b, NULL);
}

static void test_head_grad(void **state)
{
    (void)state;
    kp_ce *m = small_model(21);
    const int F = kp_ce_n_features(m), H = kp_ce_cfg(m)->hidden_dim, B = 3;
    size_t ND = kp_ce_dense_size(m);
    float *x = malloc((size_t)B * F * sizeof(float)), *dx = calloc((size_t)B * F, sizeof(float));
    float *hb = malloc((size_t)B * H * sizeof(float)), *dh = malloc((size_t)B * H * sizeof(float));
    float *dd = calloc(ND, sizeof(float)), z[3], dz[3] = {0}, y[3] = {1.0f, 0.0f, 0.5f};
    kp_rng rng = th_rng(22);
    th_fill(&rng, x, (size_t)B * F, 0.5f);
    float *dense = kp_ce_dense(m);
    th_fill(&rng, dense + (size_t)H * F, (size_t)H + 1, 0.3f); /* non-zero b1 and W2 perturbation */
    kp_ce_head_forward(m, x, B, hb, z);
    kp_ce_bce_forward_backward(z, y, B, dz);
    kp_ce_head_backward(m, x, hb, dz, B, dh, dd, dx);
    const float h = 1e-2f;
    head_ctx ctx = {m, x, hb, z, y, B};
    for (size_t i = 0; i < ND; i += ND / 97 + 1)
        assert_grad_close(dd[i], th_central_diff(dense, i, h, head_loss, &ctx), "ddense", (int)i);
    for (int i = 0; i < B * F; i += 7)
        assert_grad_close(dx[i], th_central_diff(x, (size_t)i, h, head_loss, &ctx), "dx", i);
    free(x), free(dx), free(hb), free(dh), free(dd);
    kp_ce_free(m);
}

/* ---- scoring, checkpoints -------------------------------------------------------------------- */

static void test_score_and_ckpt(void **state)
{
    (void)state;
    kp_ce *m = small_model(31);
    const char *docs[] = {"red drill", "blue hammer", "drill bits", NULL};
    assert_int_equal(kp_ce_set_idf(m, docs, 4), 0);
    const float *idf = kp_ce_idf(m);
    int differ = 0;
    for (uint32_t i = 1; i < kp_ce_cfg(m)->n_idf; i++)
        differ += idf[i] != idf[0];
    assert_true(differ > 0); /* seen words get a lower idf */
    const char *items[] = {"Red cordless drill", "", NULL, "hammer"};
    const char *keys[] = {"drill", "drill", "x", NULL};
    float s1[4], s2[4];
    assert_int_equal(kp_ce_score(m, items, keys, 4, s1), 0);
    for (int i = 0; i < 4; i++)
        assert_true(s1[i] >= 0.0f && s1[i] <= 1.0f);
    assert_int_equal(kp_ce_score(m, items, keys, 4, s2), 0);
    assert_memory_equal(s1, s2, sizeof(s1));
    assert_int_equal(kp_ce_score(m, items, keys, 0, NULL), 0);
    assert_int_equal(kp_ce_score(NULL, items, keys, 1, s1), -1);
    assert_int_equal(kp_ce_score(m, items, keys, -1, s1), -1);
    assert_int_equal(kp_ce_score(m, NULL, keys, 1, s1), -1);

    char path[256], err[256];
    th_tmp_path(path, sizeof(path), "ce", "m.kpm");
    kp_ce_set_version(m, 42);
    assert_int_equal(kp_ce_save(m, path, err, sizeof(err)), 0);
    kp_ce *m2 = kp_ce_load(path, err, sizeof(err));
    assert_non_null(m2);
    assert_int_equal(kp_ce_version(m2), 42);
    assert_int_equal(kp_ce_cfg(m2)->emb_dim, kp_ce_cfg(m)->emb_dim);
    assert_int_equal(kp_ce_score(m2, items, keys, 4, s2), 0);
    assert_memory_equal(s1, s2, sizeof(s1));
    kp_ce_free(m2);
    /* a truncated file is refused */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fclose(f);
    assert_int_equal(truncate(path, len / 2), 0);
    assert_null(kp_ce_load(path, err, sizeof(err)));
    assert_true(strlen(err) > 0);
    /* another kind is refused with a clear message */
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    bc.n_buckets = 64, bc.emb_dim = 4, bc.hidden_dim = 4, bc.out_dim = 4;
    bc.n_prefix = 1, bc.prefix[0] = 4;
    kp_bienc *be = kp_bienc_new(&bc, 1);
    assert_non_null(be);
    assert_int_equal(kp_bienc_save(be, path, err, sizeof(err)), 0);
    err[0] = '\0';
    assert_null(kp_ce_load(path, err, sizeof(err)));
    assert_non_null(strstr(err, "expected 'ce'"));
    kp_bienc_free(be);
    unlink(path);
    assert_null(kp_ce_load(path, err, sizeof(err)));
    assert_null(kp_ce_load(NULL, err, sizeof(err)));
    kp_ce_free(NULL);
    kp_ce_ws_free(NULL);
    /* bad configs */
    kp_ce_config bad = {0, 4, 4, 4, 1};
    assert_int_equal(kp_ce_config_check(&bad, err, sizeof(err)), -1);
    assert_null(kp_ce_new(&bad, 1));
    kp_ce_free(m);
}

/* ---- ensembles, version-1 checkpoints ---------------------------------------------------------
 */

static void test_ensemble_and_v1(void **state)
{
    (void)state;
    const char *items[] = {"Red cordless drill", "blue hammer 16 oz", "", "drill bits set"};
    const char *keys[] = {"drill", "hammer", "x", "red drill"};
    float s1[4], s2[4], se[4], z1[4], z2[4];
    kp_ce *a = small_model(41), *b = small_model(42), *b2 = small_model(42);
    assert_int_equal(kp_ce_score(a, items, keys, 4, s1), 0);
    assert_int_equal(kp_ce_score(b, items, keys, 4, s2), 0);
    assert_int_equal(kp_ce_n_members(a), 1);
    assert_int_equal(kp_ce_ensemble_add(a, b), 0);
    assert_int_equal(kp_ce_n_members(a), 2);
    assert_int_equal(kp_ce_ensemble_add(a, a), -1);
    kp_ce_config other = *kp_ce_cfg(b2);
    other.hidden_dim++;
    kp_ce *c = kp_ce_new(&other, 1);
    assert_int_equal(kp_ce_ensemble_add(a, c), -1); /* config mismatch: stays ours */
    kp_ce_free(c);
    assert_int_equal(kp_ce_score(a, items, keys, 4, se), 0);
    for (int i = 0; i < 4; i++) { /* sigmoid of the mean logit */
        z1[i] = logf(s1[i] / (1 - s1[i])), z2[i] = logf(s2[i] / (1 - s2[i]));
        assert_true(fabsf(se[i] - kp_ce_sigmoid(0.5f * (z1[i] + z2[i]))) < 1e-4f);
    }
    char path[256], err[256];
    th_tmp_path(path, sizeof(path), "ce", "ens.kpm");
    assert_int_equal(kp_ce_save(a, path, err, sizeof(err)), 0);
    kp_ce *l = kp_ce_load(path, err, sizeof(err));
    assert_non_null(l);
    assert_int_equal(kp_ce_n_members(l), 2);
    assert_int_equal(kp_ce_score(l, items, keys, 4, s2), 0);
    assert_memory_equal(se, s2, sizeof(se));
    kp_ce_free(l);
    /* a version-1 model (no ext features) is written as version 1 and reads back */
    kp_ce_config v1 = *kp_ce_cfg(b2);
    v1.ext_features = 0;
    kp_ce *m1 = kp_ce_new(&v1, 43);
    assert_int_equal(kp_ce_n_features(m1), KP_CE_N_KERNELS + KP_CE_N_EXACT + 4 * v1.emb_dim);
    assert_int_equal(kp_ce_score(m1, items, keys, 4, s1), 0);
    assert_int_equal(kp_ce_save(m1, path, err, sizeof(err)), 0);
    kp_ckpt_reader *r = kp_ckpt_open(path, err, sizeof(err));
    assert_non_null(r);
    uint64_t ver = 0;
    assert_int_equal(kp_ckpt_get_u64(r, "ce_version", &ver), 0);
    assert_int_equal(ver, 1);
    kp_ckpt_close(r);
    l = kp_ce_load(path, err, sizeof(err));
    assert_non_null(l);
    assert_int_equal(kp_ce_cfg(l)->ext_features, 0);
    assert_int_equal(kp_ce_score(l, items, keys, 4, s2), 0);
    assert_memory_equal(s1, s2, sizeof(s1));
    kp_ce_free(l);
    kp_ce_free(m1);
    unlink(path);
    kp_ce_free(a);
    kp_ce_free(b2);
}

/* kp_ce_score re-uses a title's embedding over consecutive pairs with that title: the scores
 * equal one call per pair (the plain path) bit for bit. */
static void test_score_shared_title(void **state)
{
    (void)state;
    char t1b[64];
    snprintf(t1b, sizeof t1b, "%s", "Red cordless drill 18V kit");
    const char *items[] = {
        "Red cordless drill 18V kit", t1b, t1b, "", NULL, "blue hammer", "blue hammer", t1b};
    const char *keys[] = {"drill", "red drill", "hammer", "x", "drill", "hammer", NULL, "kit"};
    enum { N = 8 };
    for (int ext = 0; ext <= 1; ext++) {
        kp_ce_config c = {512, 6, 5, 64, ext};
        kp_ce *m = kp_ce_new(&c, 51);
        assert_int_equal(kp_ce_ensemble_add(m, kp_ce_new(&c, 52)), 0);
        float all[N], one[N];
        assert_int_equal(kp_ce_score(m, items, keys, N, all), 0);
        for (int i = 0; i < N; i++)
            assert_int_equal(kp_ce_score(m, items + i, keys + i, 1, one + i), 0);
        assert_memory_equal(all, one, sizeof(all));
        kp_ce_free(m);
    }
}

TH_MAIN(cmocka_unit_test(test_tokenize), cmocka_unit_test(test_simmat_grad),
        cmocka_unit_test(test_kernel_grad), cmocka_unit_test(test_pool_interact_grad),
        cmocka_unit_test(test_bce_grad), cmocka_unit_test(test_pair_grad),
        cmocka_unit_test(test_head_grad), cmocka_unit_test(test_score_and_ckpt),
        cmocka_unit_test(test_wkernel_transpose_grad), cmocka_unit_test(test_maxsim_grad),
        cmocka_unit_test(test_kernels3_matches_reference), cmocka_unit_test(test_ensemble_and_v1),
        cmocka_unit_test(test_score_shared_title))

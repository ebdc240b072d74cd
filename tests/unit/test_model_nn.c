/* Tests for model/nn: BLAS vs reference, finite-difference gradients, optimisers. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/nn.h"
#include "model/rng.h"
#include "testhelp.h"

#define assert_grad_close(a, n) th_assert_grad_close(a, n, 1e-3, "gradient", 0)

static void assert_close_arr(const float *a, const float *b, size_t n, float tol)
{
    for (size_t i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > tol * (1.0f + fabsf(b[i])))
            fail_msg("element %zu: %.7g vs %.7g", i, a[i], b[i]);
}

/* ---- BLAS vs reference ----------------------------------------------------------------------- */

static void test_linear_blas_vs_ref(void **state)
{
    (void)state;
    kp_rng r = th_rng(1);
    const int B = 7, C = 13, OC = 5;
    float inp[7 * 13], W[5 * 13], bias[5], o1[7 * 5], o2[7 * 5], dout[7 * 5];
    th_fill(&r, inp, sizeof(inp) / 4, 1.0f);
    th_fill(&r, W, sizeof(W) / 4, 1.0f);
    th_fill(&r, bias, 5, 1.0f);
    th_fill(&r, dout, sizeof(dout) / 4, 1.0f);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        kp_linear_forward(o1, inp, W, with_bias ? bias : NULL, B, C, OC);
        kp_linear_forward_ref(o2, inp, W, with_bias ? bias : NULL, B, C, OC);
        assert_close_arr(o1, o2, (size_t)B * OC, 1e-5f);
        for (int b = 0; b < B; b++) { /* one row at a time: the GEMV path */
            kp_linear_forward_gemv1(o1, inp + b * C, W, with_bias ? bias : NULL, 1, C, OC);
            assert_close_arr(o1, o2 + b * OC, OC, 1e-5f);
        }
        kp_linear_forward_gemv1(o1, inp, W, with_bias ? bias : NULL, B, C, OC); /* B > 1: GEMM */
        assert_close_arr(o1, o2, (size_t)B * OC, 1e-5f);
    }
    /* backward accumulates into non-zero buffers */
    float di1[7 * 13], di2[7 * 13], dW1[5 * 13], dW2[5 * 13], db1[5], db2[5];
    th_fill(&r, di1, sizeof(di1) / 4, 1.0f);
    th_fill(&r, dW1, sizeof(dW1) / 4, 1.0f);
    th_fill(&r, db1, 5, 1.0f);
    memcpy(di2, di1, sizeof(di1));
    memcpy(dW2, dW1, sizeof(dW1));
    memcpy(db2, db1, sizeof(db1));
    kp_linear_backward(di1, dW1, db1, dout, inp, W, B, C, OC);
    kp_linear_backward_ref(di2, dW2, db2, dout, inp, W, B, C, OC);
    assert_close_arr(di1, di2, sizeof(di1) / 4, 1e-5f);
    assert_close_arr(dW1, dW2, sizeof(dW1) / 4, 1e-5f);
    assert_close_arr(db1, db2, 5, 1e-5f);
    /* the sums really changed the buffers (not a no-op) */
    float di0[7 * 13];
    memset(di0, 0, sizeof(di0));
    kp_linear_backward_ref(di0, NULL, NULL, dout, inp, W, B, C, OC);
    float mx = 0.0f;
    for (size_t i = 0; i < sizeof(di0) / 4; i++)
        mx = fmaxf(mx, fabsf(di0[i]));
    assert_true(mx > 0.1f);
}

static void test_linear_blas_vs_ref_large(void **state)
{
    (void)state;
    kp_rng r = th_rng(2);
    const int B = 64, C = 128, OC = 256;
    float *inp = malloc(sizeof(float) * B * C), *W = malloc(sizeof(float) * OC * C);
    float *b = malloc(sizeof(float) * OC), *o1 = malloc(sizeof(float) * B * OC);
    float *o2 = malloc(sizeof(float) * B * OC);
    th_fill(&r, inp, (size_t)B * C, 1.0f);
    th_fill(&r, W, (size_t)OC * C, 0.1f);
    th_fill(&r, b, (size_t)OC, 1.0f);
    kp_linear_forward(o1, inp, W, b, B, C, OC);
    kp_linear_forward_ref(o2, inp, W, b, B, C, OC);
    assert_close_arr(o1, o2, (size_t)B * OC, 1e-4f);
    free(inp), free(W), free(b), free(o1), free(o2);
}

/* ---- finite differences ---------------------------------------------------------------------- */

#define FD_EPS 1e-3f

static void test_linear_grad(void **state)
{
    (void)state;
    kp_rng r = th_rng(3);
    enum { B = 3, C = 4, OC = 5 };
    float inp[B * C], W[OC * C], bias[OC], out[B * OC], R[B * OC];
    th_fill(&r, inp, B * C, 1.0f);
    th_fill(&r, W, OC * C, 1.0f);
    th_fill(&r, bias, OC, 1.0f);
    th_fill(&r, R, B * OC, 1.0f); /* loss = <out, R> so dL/dout = R */
    float dinp[B * C] = {0}, dW[OC * C] = {0}, db[OC] = {0};
    kp_linear_backward(dinp, dW, db, R, inp, W, B, C, OC);
    float *params[3] = {inp, W, bias}, *grads[3] = {dinp, dW, db};
    int sizes[3] = {B * C, OC * C, OC};
    for (int p = 0; p < 3; p++) {
        for (int i = 0; i < sizes[p]; i++) {
            float keep = params[p][i];
            params[p][i] = keep + FD_EPS;
            kp_linear_forward(out, inp, W, bias, B, C, OC);
            double lp = th_wsum(out, R, B * OC);
            params[p][i] = keep - FD_EPS;
            kp_linear_forward(out, inp, W, bias, B, C, OC);
            double lm = th_wsum(out, R, B * OC);
            params[p][i] = keep;
            assert_grad_close(grads[p][i], (lp - lm) / (2.0 * FD_EPS));
        }
    }
}

static void test_tanh_grad(void **state)
{
    (void)state;
    kp_rng r = th_rng(4);
    enum { N = 40 };
    float x[N], y[N], R[N], dx[N] = {0};
    th_fill(&r, x, N, 1.5f);
    th_fill(&r, R, N, 1.0f);
    kp_tanh_forward(y, x, N);
    kp_tanh_backward(dx, R, y, N);
    for (int i = 0; i < N; i++) {
        float keep = x[i];
        x[i] = keep + FD_EPS;
        kp_tanh_forward(y, x, N);
        double lp = th_wsum(y, R, N);
        x[i] = keep - FD_EPS;
        kp_tanh_forward(y, x, N);
        double lm = th_wsum(y, R, N);
        x[i] = keep;
        assert_grad_close(dx[i], (lp - lm) / (2.0 * FD_EPS));
    }
}

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Distance in ulp between float a and the double reference t (a rounded: the float nearest t). */
static double ulps(float a, double t)
{
    float tf = (float)t;
    double ulp = fabs((double)nextafterf(tf, INFINITY) - (double)tf);
    if (ulp == 0 || !isfinite(ulp)) ulp = 1e-45;
    return fabs((double)a - t) / ulp;
}

/* kp_tanh_forward (its AVX-512 form where the CPU has it) and its AVX2 form (where the CPU has
 * AVX2) equal the plain loop bit for bit, on
 * random and edge inputs and on lengths off the 16-float blocks; the plain loop is within 2 ulp
 * of tanh in double over a dense sweep of [-10, 10], odd, exact at 0 and +-inf, NaN to NaN. */
static void test_tanh_accuracy(void **state)
{
    (void)state;
    enum { N = 1 << 20 };
    float *x = malloc(sizeof(float) * N), *a = malloc(sizeof(float) * N);
    float *b = malloc(sizeof(float) * N);
    assert_non_null(x), assert_non_null(a), assert_non_null(b);
    for (int i = 0; i < N; i++) /* dense over [-10, 10], plus around the branch point */
        x[i] = -10.0f + 20.0f * (float)i / (float)N;
    for (int i = 0; i < 4096; i++) /* around the switch of formula (model/nn.c TANH_SMALL) */
        x[i] = 0.55f + (float)(i - 2048) * 1e-6f;
    const float edge[] = {0.0f,  -0.0f, 1e-30f, -1e-30f, 1e-45f,   9.49f,     9.5f,
                          9.51f, 20.0f, -88.0f, 1e30f,   INFINITY, -INFINITY, NAN};
    for (int i = 0; i < 48; i++) /* the edges, cycled over 48 floats */
        x[4096 + i] = edge[i % 14];
    for (size_t len = 0; len <= 48; len++) { /* vector body + scalar tail at every length */
        kp_tanh_forward_ref(b, x + 4096, len);
        kp_tanh_forward(a, x + 4096, len);
        for (size_t i = 0; i < len; i++)
            assert_int_equal(f2u(a[i]), f2u(b[i]));
        kp_tanh_forward_avx2(a, x + 4096, len);
        for (size_t i = 0; i < len; i++)
            assert_int_equal(f2u(a[i]), f2u(b[i]));
    }
    if (!__builtin_cpu_supports("avx512f"))
        print_message("no AVX-512 here: kp_tanh_forward is its AVX2 form (or its plain loop)\n");
    if (!__builtin_cpu_supports("avx2")) print_message("no AVX2 here: both are the plain loop\n");
    kp_tanh_forward_avx2(a, x, N);
    kp_tanh_forward_ref(b, x, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(f2u(a[i]), f2u(b[i]));
    kp_tanh_forward(a, x, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(f2u(a[i]), f2u(b[i]));
        if (isnan(x[i])) {
            assert_true(isnan(b[i]));
            continue;
        }
        double u = ulps(b[i], tanh((double)x[i]));
        if (u > worst) worst = u;
        assert_true(u <= 2.0);
        assert_true(signbit(b[i]) == signbit(x[i]));
    }
    assert_true(worst > 0.0); /* it is an approximation: the check above is live */
    assert_true(b[4096] == 0.0f && !signbit(b[4096]) && signbit(b[4097]));
    assert_true(b[4096 + 11] == 1.0f && b[4096 + 12] == -1.0f && isnan(b[4096 + 13]));
    free(x), free(a), free(b);
}

/* kp_exp_forward (its AVX-512 form where the CPU has it) and its AVX2 form equal the plain loop
 * bit for bit on edges and on every length up to 48 (vector body + tail); the plain loop is within
 * 2 ulp of exp in double over a dense sweep of [-104, 89] (subnormal results included, counted
 * in the least subnormal's steps) and denser over [-40, 0] (the in-batch softmax's range); exact
 * at 0, 0 at -inf and below, +inf past FLT_MAX, NaN to NaN. */
static void test_exp_accuracy(void **state)
{
    (void)state;
    enum { N = 1 << 20, E = 4096 };
    float *x = malloc(sizeof(float) * N), *a = malloc(sizeof(float) * N);
    float *b = malloc(sizeof(float) * N);
    assert_non_null(x), assert_non_null(a), assert_non_null(b);
    for (int i = 0; i < N / 2; i++)
        x[i] = -104.0f + 193.0f * (float)i / (float)(N / 2);
    for (int i = N / 2; i < N; i++)
        x[i] = -40.0f + 40.0f * (float)(i - N / 2) / (float)(N / 2);
    const float edge[] = {0.0f,    -0.0f,    1e-30f,    -1e-30f, -87.3f,   -87.4f,   -100.0f,
                          -103.9f, -104.0f,  -105.f,    -1e30f,  88.7f,    88.8f,    89.0f,
                          1e30f,   INFINITY, -INFINITY, NAN,     0.34657f, -0.34657f};
    enum { NE = sizeof edge / sizeof edge[0] };
    for (int i = 0; i < 48; i++)
        x[E + i] = edge[i % NE];
    for (size_t len = 0; len <= 48; len++) {
        kp_exp_forward_ref(b, x + E, len);
        kp_exp_forward(a, x + E, len);
        for (size_t i = 0; i < len; i++)
            assert_int_equal(f2u(a[i]), f2u(b[i]));
        kp_exp_forward_avx2(a, x + E, len);
        for (size_t i = 0; i < len; i++)
            assert_int_equal(f2u(a[i]), f2u(b[i]));
    }
    kp_exp_forward_ref(b, x, N);
    kp_exp_forward_avx2(a, x, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(f2u(a[i]), f2u(b[i]));
    kp_exp_forward(a, x, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(f2u(a[i]), f2u(b[i]));
        if (isnan(x[i])) {
            assert_true(isnan(b[i]));
            continue;
        }
        double t = exp((double)x[i]);
        if (t > FLT_MAX) {
            assert_true(isinf(b[i]) && b[i] > 0);
            continue;
        }
        double u = ulps(b[i], t);
        if (u > worst) worst = u;
        assert_true(u <= 2.0);
    }
    assert_true(worst > 0.0); /* an approximation: the check above is live */
    assert_true(b[E] == 1.0f && b[E + 1] == 1.0f);
    assert_true(b[E + 4] >= FLT_MIN && b[E + 5] > 0.0f && b[E + 5] < FLT_MIN); /* subnormal */
    assert_true(b[E + 8] == 0.0f && b[E + 9] == 0.0f && b[E + 10] == 0.0f && b[E + 16] == 0.0f);
    for (int i = 12; i <= 15; i++) /* 88.8, 89, 1e30, inf */
        assert_true(isinf(b[E + i]) && b[E + i] > 0.0f);
    assert_true(b[E + 11] < FLT_MAX && isnan(b[E + 17]));
    print_message("exp: worst %.3f ulp\n", worst);
    free(x), free(a), free(b);
}

/* kp_sumsq (its AVX2 form where the CPU has it) equals its 8-lane order computed here bit for
 * bit, and the plain sequential sum to rounding, at every length to 100 and at 100,003. */
static void test_sumsq(void **state)
{
    (void)state;
    enum { N = 100003 };
    float *x = malloc(sizeof(float) * N);
    assert_non_null(x);
    kp_rng r = th_rng(11);
    th_fill(&r, x, N, 3.0f);
    for (size_t k = 0; k <= 101; k++) {
        size_t n = k <= 100 ? k : N;
        double acc[8] = {0};
        for (size_t i = 0; i < n; i++)
            acc[i % 8] += (double)x[i] * x[i];
        double lanes =
            ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        double got = kp_sumsq(x, n), ref = kp_sumsq_ref(x, n);
        assert_true(memcmp(&got, &lanes, sizeof got) == 0);
        assert_true(fabs(got - ref) <= 1e-12 * ref);
    }
    free(x);
}

static void test_l2norm_grad(void **state)
{
    (void)state;
    kp_rng r = th_rng(5);
    enum { B = 4, D = 6 };
    float x[B * D], y[B * D], nrm[B], R[B * D], dx[B * D] = {0};
    th_fill(&r, x, B * D, 1.0f);
    th_fill(&r, R, B * D, 1.0f);
    kp_l2norm_forward(y, nrm, x, B, D);
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int d = 0; d < D; d++)
            s += (double)y[b * D + d] * y[b * D + d];
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    kp_l2norm_backward(dx, R, y, nrm, B, D);
    for (int i = 0; i < B * D; i++) {
        float keep = x[i];
        x[i] = keep + FD_EPS;
        kp_l2norm_forward(y, nrm, x, B, D);
        double lp = th_wsum(y, R, B * D);
        x[i] = keep - FD_EPS;
        kp_l2norm_forward(y, nrm, x, B, D);
        double lm = th_wsum(y, R, B * D);
        x[i] = keep;
        assert_grad_close(dx[i], (lp - lm) / (2.0 * FD_EPS));
    }
    /* zero row: finite output, no NaN */
    float z[3] = {0, 0, 0}, zy[3], zn;
    kp_l2norm_forward(zy, &zn, z, 1, 3);
    for (int i = 0; i < 3; i++)
        assert_true(zy[i] == 0.0f);
}

static void pair_grad_check(int cosine)
{
    kp_rng r = th_rng(6 + (uint64_t)cosine);
    enum { B = 3, D = 5 };
    float a[B * D], x[B * D], R[B], out[B], da[B * D] = {0}, dx[B * D] = {0};
    th_fill(&r, a, B * D, 1.0f);
    th_fill(&r, x, B * D, 1.0f);
    th_fill(&r, R, B, 1.0f);
    if (cosine)
        kp_cosine_backward(da, dx, R, a, x, B, D);
    else
        kp_rowdot_backward(da, dx, R, a, x, B, D);
    float *ps[2] = {a, x}, *gs[2] = {da, dx};
    for (int p = 0; p < 2; p++) {
        for (int i = 0; i < B * D; i++) {
            float keep = ps[p][i];
            double l[2];
            for (int s = 0; s < 2; s++) {
                ps[p][i] = keep + (s ? -FD_EPS : FD_EPS);
                if (cosine)
                    kp_cosine_forward(out, a, x, B, D);
                else
                    kp_rowdot_forward(out, a, x, B, D);
                l[s] = th_wsum(out, R, B);
            }
            ps[p][i] = keep;
            assert_grad_close(gs[p][i], (l[0] - l[1]) / (2.0 * FD_EPS));
        }
    }
    if (cosine) {
        kp_cosine_forward(out, a, a, B, D);
        for (int b = 0; b < B; b++)
            assert_true(fabsf(out[b] - 1.0f) < 1e-5f);
    }
}

static void test_rowdot_grad(void **state)
{
    (void)state;
    pair_grad_check(0);
}

static void test_cosine_grad(void **state)
{
    (void)state;
    pair_grad_check(1);
}

static void test_embbag_grad(void **state)
{
    (void)state;
    kp_rng r = th_rng(8);
    enum { V = 10, E = 4, B = 3 };
    float table[V * E], out[B * E], R[B * E];
    th_fill(&r, table, V * E, 1.0f);
    th_fill(&r, R, B * E, 1.0f);
    /* example 0: rows 1,2,2 (duplicate); example 1: empty; example 2: rows 2,7 */
    uint32_t ids[] = {1, 2, 2, 2, 7};
    int offsets[] = {0, 3, 3, 5};
    kp_embbag_forward(out, table, ids, offsets, B, E);
    for (int e = 0; e < E; e++) {
        assert_true(out[1 * E + e] == 0.0f);
        float want = (table[1 * E + e] + 2 * table[2 * E + e]) / 3.0f;
        assert_true(fabsf(out[e] - want) < 1e-6f);
    }
    kp_rowgrad g;
    assert_int_equal(kp_rowgrad_init(&g, V, E), 0);
    assert_int_equal(kp_embbag_backward(&g, R, ids, offsets, B, E), 0);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.rows[0], 1); /* first-touch order */
    assert_int_equal(g.rows[1], 2);
    assert_int_equal(g.rows[2], 7);
    for (int i = 0; i < V * E; i++) {
        int row = i / E;
        double an = g.slot[row] >= 0 ? g.grad[(size_t)g.slot[row] * E + (size_t)(i % E)] : 0.0;
        float keep = table[i];
        table[i] = keep + FD_EPS;
        kp_embbag_forward(out, table, ids, offsets, B, E);
        double lp = th_wsum(out, R, B * E);
        table[i] = keep - FD_EPS;
        kp_embbag_forward(out, table, ids, offsets, B, E);
        double lm = th_wsum(out, R, B * E);
        table[i] = keep;
        assert_grad_close(an, (lp - lm) / (2.0 * FD_EPS));
    }
    kp_rowgrad_zero(&g);
    assert_int_equal(g.n, 0);
    for (int v = 0; v < V; v++)
        assert_int_equal(g.slot[v], -1);
    assert_null(kp_rowgrad_row(&g, V));
    float *row = kp_rowgrad_row(&g, 4);
    assert_non_null(row);
    for (int e = 0; e < E; e++)
        assert_true(row[e] == 0.0f);
    kp_rowgrad_free(&g);
    kp_rowgrad_free(NULL);
    assert_int_equal(kp_rowgrad_init(&g, 0, 4), -1);
    kp_rowgrad_free(&g);
}

/* Many rows: the row list grows past its initial capacity and keeps earlier gradients. */
static void test_rowgrad_growth(void **state)
{
    (void)state;
    kp_rowgrad g;
    assert_int_equal(kp_rowgrad_init(&g, 5000, 3), 0);
    for (uint32_t i = 0; i < 3000; i++) {
        float *row = kp_rowgrad_row(&g, (i * 7) % 5000);
        assert_non_null(row);
        row[1] += (float)i;
    }
    assert_int_equal(g.n, 3000);
    for (int i = 0; i < g.n; i++) {
        assert_int_equal(g.rows[i], ((uint32_t)i * 7) % 5000);
        assert_true(g.grad[(size_t)i * 3 + 1] == (float)i);
    }
    kp_rowgrad_free(&g);
}

/* ---- optimisers ------------------------------------------------------------------------------ */

static void test_adam_first_step_and_decay(void **state)
{
    (void)state;
    kp_adam_hp hp;
    kp_adam_hp_default(&hp);
    hp.lr = 0.01f;
    float p[4] = {1, -2, 3, 0.5f}, g[4] = {0.3f, -5.0f, 1e-3f, -0.2f}, m[4] = {0}, v[4] = {0};
    float p0[4];
    memcpy(p0, p, sizeof(p));
    kp_adamw_update(p, g, m, v, 4, &hp, 1);
    /* first step: m_hat / sqrt(v_hat) = sign(g) (up to eps) */
    for (int i = 0; i < 4; i++)
        assert_true(fabsf((p[i] - p0[i]) + hp.lr * (g[i] > 0 ? 1.0f : -1.0f)) < 1e-4f);
    /* decoupled weight decay with zero gradient: p *= (1 - lr * wd) */
    hp.weight_decay = 0.1f;
    float q[2] = {2.0f, -1.0f}, z[2] = {0}, qm[2] = {0}, qv[2] = {0};
    kp_adamw_update(q, z, qm, qv, 2, &hp, 1);
    assert_true(fabsf(q[0] - 2.0f * (1.0f - 0.001f)) < 1e-6f);
    assert_true(fabsf(q[1] + 1.0f * (1.0f - 0.001f)) < 1e-6f);
}

static void test_adam_converges(void **state)
{
    (void)state;
    kp_adam_hp hp;
    kp_adam_hp_default(&hp);
    hp.lr = 0.05f;
    enum { N = 8 };
    float p[N] = {0}, c[N], g[N], m[N] = {0}, v[N] = {0};
    kp_rng r = th_rng(9);
    th_fill(&r, c, N, 2.0f);
    for (uint64_t t = 1; t <= 2000; t++) {
        for (int i = 0; i < N; i++)
            g[i] = 2.0f * (p[i] - c[i]);
        kp_adamw_update(p, g, m, v, N, &hp, t);
    }
    for (int i = 0; i < N; i++)
        assert_true(fabsf(p[i] - c[i]) < 1e-2f);
}

static void test_lazy_adam(void **state)
{
    (void)state;
    enum { V = 6, E = 3 };
    kp_adam_hp hp;
    kp_adam_hp_default(&hp);
    hp.lr = 0.1f;
    hp.weight_decay = 0.01f;
    kp_rng r = th_rng(10);
    float table[V * E], m[V * E] = {0}, v[V * E] = {0}, t0[V * E];
    uint32_t row_t[V] = {0};
    th_fill(&r, table, V * E, 1.0f);
    memcpy(t0, table, sizeof(table));
    /* dense reference for row 4 */
    float ref[E], rm[E] = {0}, rv[E] = {0};
    memcpy(ref, table + 4 * E, sizeof(ref));
    kp_rowgrad g;
    assert_int_equal(kp_rowgrad_init(&g, V, E), 0);
    for (int step = 1; step <= 3; step++) {
        kp_rowgrad_zero(&g);
        float *g4 = kp_rowgrad_row(&g, 4);
        for (int e = 0; e < E; e++)
            g4[e] = 0.5f * (float)(e + step);
        if (step != 2) {
            float *g1 = kp_rowgrad_row(&g, 1);
            for (int e = 0; e < E; e++)
                g1[e] = -1.0f;
        }
        kp_lazy_adamw_update(table, m, v, row_t, &g, &hp);
        kp_adamw_update(ref, g4, rm, rv, E, &hp, (uint64_t)step);
    }
    assert_int_equal(row_t[4], 3);
    assert_int_equal(row_t[1], 2); /* per-row counter: row 1 was touched twice */
    for (int row = 0; row < V; row++) {
        if (row == 1 || row == 4) continue;
        assert_int_equal(row_t[row], 0);
        assert_memory_equal(table + row * E, t0 + row * E, sizeof(float) * E);
    }
    assert_memory_equal(table + 4 * E, ref, sizeof(ref));
    for (int e = 0; e < E; e++)
        assert_true(table[1 * E + e] > t0[1 * E + e]); /* g < 0: up */
    kp_rowgrad_free(&g);
}

/* The fast embedding bag (prefetching, blocked adds) against the plain loop: bit-identical, for
 * E a multiple of the block and not, empty bags and duplicate ids included. */
static void test_embbag_fast_vs_ref(void **state)
{
    (void)state;
    kp_rng r = th_rng(31);
    enum { V = 500, B = 40, MAXN = 30 };
    int dims[] = {1, 7, 16, 33, 128};
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        int E = dims[d];
        float *table = malloc(sizeof(float) * V * (size_t)E);
        float *a = malloc(sizeof(float) * B * (size_t)E),
              *b = malloc(sizeof(float) * B * (size_t)E);
        uint32_t ids[B * MAXN];
        int offsets[B + 1];
        assert_non_null(table), assert_non_null(a), assert_non_null(b);
        th_fill(&r, table, V * E, 1.0f);
        offsets[0] = 0;
        for (int x = 0; x < B; x++) {
            int n = x % 5 == 0 ? 0 : (int)kp_rng_below(&r, MAXN) + 1;
            for (int i = 0; i < n; i++)
                ids[offsets[x] + i] = (uint32_t)kp_rng_below(&r, i % 4 == 3 ? 3 : V);
            offsets[x + 1] = offsets[x] + n;
        }
        kp_embbag_forward(a, table, ids, offsets, B, E);
        kp_embbag_forward_ref(b, table, ids, offsets, B, E);
        assert_memory_equal(a, b, sizeof(float) * B * (size_t)E);
        free(table), free(a), free(b);
    }
}

/* The blocked AdamW against the plain loop: bit-identical over several steps, with decay, for a
 * length that is not a multiple of the block. */
static void test_adam_fast_vs_ref(void **state)
{
    (void)state;
    kp_rng r = th_rng(32);
    enum { N = 16 * 5 + 9 };
    float p1[N], p2[N], m1[N] = {0}, m2[N] = {0}, v1[N] = {0}, v2[N] = {0}, g[N];
    th_fill(&r, p1, N, 1.0f);
    memcpy(p2, p1, sizeof p1);
    kp_adam_hp hp;
    kp_adam_hp_default(&hp);
    hp.weight_decay = 0.01f;
    for (uint64_t t = 1; t <= 5; t++) {
        th_fill(&r, g, N, 2.0f);
        kp_adamw_update(p1, g, m1, v1, N, &hp, t);
        kp_adamw_update_ref(p2, g, m2, v2, N, &hp, t);
    }
    assert_memory_equal(p1, p2, sizeof p1);
    assert_memory_equal(m1, m2, sizeof m1);
    assert_memory_equal(v1, v2, sizeof v1);
}

/* The split embedding-bag backward and lazy AdamW (two threads) against one thread: the same
 * rows in the same first-touch order, the same gradients, tables and moments bit for bit; the
 * batch has repeated ids (rows shared by several examples) and empty examples. */
static void test_split_bag_backward_and_lazy_adam(void **state)
{
    (void)state;
    kp_rng r = th_rng(33);
    enum { V = 300, E = 24, B = 90, MAXN = 20 };
    uint32_t ids[B * MAXN];
    int offsets[B + 1];
    int32_t slots[B * MAXN];
    static float dout[B * E], tab[2][V * E], m[2][V * E], v[2][V * E];
    uint32_t row_t[2][V] = {{0}};
    th_fill(&r, dout, B * E, 1.0f);
    th_fill(&r, tab[0], V * E, 1.0f);
    memcpy(tab[1], tab[0], sizeof tab[0]);
    memset(m, 0, sizeof m), memset(v, 0, sizeof v);
    offsets[0] = 0;
    for (int x = 0; x < B; x++) {
        int n = x % 7 == 0 ? 0 : (int)kp_rng_below(&r, MAXN) + 1;
        for (int i = 0; i < n; i++)
            ids[offsets[x] + i] = (uint32_t)kp_rng_below(&r, i % 3 == 2 ? 5 : V);
        offsets[x + 1] = offsets[x] + n;
    }
    assert_true(offsets[B] >= 256); /* enough ids for the split to run */
    kp_rowgrad g[2];
    kp_adam_hp hp;
    kp_adam_hp_default(&hp);
    for (int w = 0; w < 2; w++) {
        assert_int_equal(kp_rowgrad_init(&g[w], V, E), 0);
        for (int step = 0; step < 3; step++) {
            kp_rowgrad_zero(&g[w]);
            if (w == 0)
                assert_int_equal(kp_embbag_backward(&g[w], dout, ids, offsets, B, E), 0);
            else
                assert_int_equal(
                    kp_embbag_backward_split(&g[w], dout, ids, offsets, B, E, slots, 2), 0);
            kp_lazy_adamw_update_split(tab[w], m[w], v[w], row_t[w], &g[w], &hp, w + 1);
        }
    }
    assert_int_equal(g[0].n, g[1].n);
    assert_memory_equal(g[0].rows, g[1].rows, sizeof(uint32_t) * (size_t)g[0].n);
    assert_memory_equal(g[0].grad, g[1].grad, sizeof(float) * (size_t)g[0].n * E);
    assert_memory_equal(tab[0], tab[1], sizeof tab[0]);
    assert_memory_equal(m[0], m[1], sizeof m[0]);
    assert_memory_equal(v[0], v[1], sizeof v[0]);
    assert_memory_equal(row_t[0], row_t[1], sizeof row_t[0]);
    kp_rowgrad_free(&g[0]);
    kp_rowgrad_free(&g[1]);
}

TH_MAIN(cmocka_unit_test(test_linear_blas_vs_ref), cmocka_unit_test(test_linear_blas_vs_ref_large),
        cmocka_unit_test(test_linear_grad), cmocka_unit_test(test_tanh_grad),
        cmocka_unit_test(test_tanh_accuracy), cmocka_unit_test(test_exp_accuracy),
        cmocka_unit_test(test_sumsq), cmocka_unit_test(test_l2norm_grad),
        cmocka_unit_test(test_rowdot_grad), cmocka_unit_test(test_cosine_grad),
        cmocka_unit_test(test_embbag_grad), cmocka_unit_test(test_rowgrad_growth),
        cmocka_unit_test(test_adam_first_step_and_decay), cmocka_unit_test(test_adam_converges),
        cmocka_unit_test(test_lazy_adam), cmocka_unit_test(test_embbag_fast_vs_ref),
        cmocka_unit_test(test_adam_fast_vs_ref),
        cmocka_unit_test(test_split_bag_backward_and_lazy_adam))

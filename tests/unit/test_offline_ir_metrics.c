/* Unit tests for model/metrics: hand-computed cases and fast path vs reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "offline/ir_metrics.h"
#include "th_main.h"

static uint64_t rng_state = 12345;

static double urand(void) /* xorshift64*, uniform in [0, 1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

#define assert_close(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

static void test_auc_hand(void **state)
{
    (void)state;
    const float s[] = {0.1f, 0.4f, 0.35f, 0.8f};
    const int y[] = {0, 0, 1, 1};
    assert_close(kp_roc_auc(s, y, 4), 0.75, 1e-12);
    assert_close(kp_roc_auc_ref(s, y, 4), 0.75, 1e-12);

    const float t[] = {0.5f, 0.5f, 0.2f, 0.9f}; /* pos {0.5, 0.2}, neg {0.5, 0.9}: 0.5 / 4 */
    const int yt[] = {1, 0, 1, 0};
    assert_close(kp_roc_auc(t, yt, 4), 0.125, 1e-12);
    assert_close(kp_roc_auc_ref(t, yt, 4), 0.125, 1e-12);

    const float u[] = {1, 2, 3, 4};
    const int up[] = {0, 0, 1, 1}, down[] = {1, 1, 0, 0}, one_class[] = {1, 1, 1, 1};
    assert_close(kp_roc_auc(u, up, 4), 1.0, 1e-12);
    assert_close(kp_roc_auc(u, down, 4), 0.0, 1e-12);
    assert_true(isnan(kp_roc_auc(u, one_class, 4)));
    assert_true(isnan(kp_roc_auc_ref(u, one_class, 4)));
    const float with_nan[] = {1, NAN, 3, 4};
    assert_true(isnan(kp_roc_auc(with_nan, up, 4)));
    assert_true(isnan(kp_roc_auc(NULL, up, 4)));
}

static void test_pearson_spearman_hand(void **state)
{
    (void)state;
    const float x[] = {1, 2, 3, 4}, y[] = {1, 3, 2, 4}; /* sxy = 4, sxx = syy = 5 */
    assert_close(kp_pearson(x, y, 4), 0.8, 1e-12);
    assert_close(kp_pearson_ref(x, y, 4), 0.8, 1e-12);
    const float y2[] = {2, 4, 6, 8}, y3[] = {8, 6, 4, 2}, c[] = {5, 5, 5, 5};
    assert_close(kp_pearson(x, y2, 4), 1.0, 1e-12);
    assert_close(kp_pearson(x, y3, 4), -1.0, 1e-12);
    assert_true(isnan(kp_pearson(x, c, 4)));
    assert_true(isnan(kp_pearson(x, y, 1)));

    /* Spearman: ranks of {1, 100, 2, 1000} are {1, 3, 2, 4}, so rho = pearson(x, y) above */
    const float sx[] = {10, 20, 30, 40}, sy[] = {1, 100, 2, 1000};
    assert_close(kp_spearman(sx, sy, 4), 0.8, 1e-12);
    assert_close(kp_spearman_ref(sx, sy, 4), 0.8, 1e-12);
    const float ex[] = {1, 2, 3, 4, 5}, ey[] = {1, 8, 27, 64, 125}; /* monotone, non-linear */
    assert_close(kp_spearman(ex, ey, 5), 1.0, 1e-12);
    assert_true(kp_pearson(ex, ey, 5) < 0.99);
    assert_true(isnan(kp_spearman(ex, c, 4)));

    /* ties get average ranks */
    const float tv[] = {3, 1, 2, 2, 7, 2};
    const double want[] = {5, 1, 3, 3, 6, 3};
    double r[6], rr[6];
    assert_int_equal(kp_rank_average(tv, 6, r), 0);
    assert_int_equal(kp_rank_average_ref(tv, 6, rr), 0);
    for (int i = 0; i < 6; i++) {
        assert_close(r[i], want[i], 0);
        assert_close(rr[i], want[i], 0);
    }
    const float nv[] = {1, NAN};
    assert_int_equal(kp_rank_average(nv, 2, r), -1);
    assert_true(isnan(kp_spearman(nv, nv, 2)));
}

static void test_random_vs_reference(void **state)
{
    (void)state;
    enum { N = 700 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    int *lab = malloc(N * sizeof(int));
    double *r1 = malloc(N * sizeof(double)), *r2 = malloc(N * sizeof(double));
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(lab);
    assert_non_null(r1);
    assert_non_null(r2);
    for (int trial = 0; trial < 20; trial++) {
        int n = 2 + (int)(urand() * (N - 2));
        int coarse = trial % 2; /* every other trial: few distinct values, many ties */
        for (int i = 0; i < n; i++) {
            x[i] = coarse ? (float)(int)(urand() * 5) : (float)urand();
            y[i] = 0.6f * x[i] + (float)urand();
            if (coarse) y[i] = (float)(int)(y[i] * 3);
            lab[i] = urand() < 0.3 + 0.4 * x[i] / (coarse ? 5.0 : 1.0);
        }
        lab[0] = 1;
        lab[1] = 0;
        assert_int_equal(kp_rank_average(x, n, r1), 0);
        assert_int_equal(kp_rank_average_ref(x, n, r2), 0);
        for (int i = 0; i < n; i++)
            assert_close(r1[i], r2[i], 0);
        assert_close(kp_pearson(x, y, n), kp_pearson_ref(x, y, n), 1e-6);
        assert_close(kp_spearman(x, y, n), kp_spearman_ref(x, y, n), 1e-12);
        double auc = kp_roc_auc(x, lab, n);
        assert_close(auc, kp_roc_auc_ref(x, lab, n), 1e-12);
        /* invariances: AUC under a monotone map, and 1 - AUC for reversed scores */
        for (int i = 0; i < n; i++)
            y[i] = expf(3.0f * x[i]) - 2.0f;
        assert_close(kp_roc_auc(y, lab, n), auc, 1e-12);
        for (int i = 0; i < n; i++)
            y[i] = -x[i];
        assert_close(kp_roc_auc(y, lab, n), 1.0 - auc, 1e-12);
    }
    free(x);
    free(y);
    free(lab);
    free(r1);
    free(r2);
}

static void test_recall_hand(void **state)
{
    (void)state;
    /* item 0: relevant {1, 2}, top-3 {2, 5, 7}        -> 1/2
     * item 1: nothing relevant                         -> not averaged
     * item 2: relevant {3}, top-3 {3, -1, 3}           -> 1
     * item 3: relevant {4, 4, 9}, top-3 {4, 0, 4}      -> 1/2 (duplicates once) */
    const int off[] = {0, 2, 2, 3, 6};
    const int rel[] = {1, 2, 3, 4, 4, 9};
    const int top[] = {2, 5, 7, 1, 1, 1, 3, -1, 3, 4, 0, 4};
    int n_eval = -1;
    assert_close(kp_recall_at_k(4, 10, 3, top, off, rel, &n_eval), 2.0 / 3.0, 1e-12);
    assert_int_equal(n_eval, 3);
    assert_close(kp_recall_at_k_ref(4, 10, 3, top, off, rel, &n_eval), 2.0 / 3.0, 1e-12);
    assert_int_equal(n_eval, 3);
    /* k = 1 on the same lists (row stride changes) */
    const int top1[] = {1, 0, 3, 9};
    assert_close(kp_recall_at_k(4, 10, 1, top1, off, rel, &n_eval), (0.5 + 1.0 + 0.5) / 3, 1e-12);
    /* nothing evaluable -> NaN */
    const int off0[] = {0, 0};
    assert_true(isnan(kp_recall_at_k(1, 10, 3, top, off0, rel, &n_eval)));
    assert_int_equal(n_eval, 0);
}

static void test_recall_random_vs_reference(void **state)
{
    (void)state;
    enum { ITEMS = 300, KEYS = 60, K = 10 };
    int *off = malloc((ITEMS + 1) * sizeof(int)), *rel = malloc(ITEMS * 8 * sizeof(int));
    int *top = malloc(ITEMS * K * sizeof(int));
    assert_non_null(off);
    assert_non_null(rel);
    assert_non_null(top);
    off[0] = 0;
    for (int i = 0; i < ITEMS; i++) {
        int nr = (int)(urand() * 8);
        for (int p = 0; p < nr; p++)
            rel[off[i] + p] = (int)(urand() * (KEYS + 2)) - 1;
        off[i + 1] = off[i] + nr;
        for (int r = 0; r < K; r++)
            top[i * K + r] = (int)(urand() * (KEYS + 2)) - 1;
    }
    for (int k = 0; k <= K; k += 5) {
        /* keep row stride K by evaluating prefix lengths via a compacted copy */
        int *tk = malloc((size_t)(ITEMS * (k ? k : 1)) * sizeof(int));
        assert_non_null(tk);
        for (int i = 0; i < ITEMS; i++)
            for (int r = 0; r < k; r++)
                tk[i * k + r] = top[i * K + r];
        int e1, e2;
        double a = kp_recall_at_k(ITEMS, KEYS, k, tk, off, rel, &e1);
        double b = kp_recall_at_k_ref(ITEMS, KEYS, k, tk, off, rel, &e2);
        assert_int_equal(e1, e2);
        assert_true(e1 > 0);
        assert_close(a, b, 1e-12);
        if (k == 0) assert_close(a, 0.0, 0);
        free(tk);
    }
    free(off);
    free(rel);
    free(top);
}

TH_MAIN(cmocka_unit_test(test_auc_hand), cmocka_unit_test(test_pearson_spearman_hand),
        cmocka_unit_test(test_random_vs_reference), cmocka_unit_test(test_recall_hand),
        cmocka_unit_test(test_recall_random_vs_reference))

/* Tests for model/calib: PAV against its plain reference (hand-made cases and random ones),
 * monotone and interpolating fits, Platt scaling recovering known parameters, log-loss / Brier,
 * the calibration file (round trip, foreign and corrupt files). */
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

#include "model/calib.h"
#include "model/ckpt.h"
#include "model/rng.h"
#include "th_main.h"
#include "testhelp.h"

/* ---- PAV ------------------------------------------------------------------------------------- */

static void check_pav(const float *x, const float *y, const float *w, int n, const double *want,
                      int want_blocks)
{
    double f[64], g[64];
    assert_true(n <= 64);
    int nb = kp_calib_pav(x, y, w, n, f), nr = kp_calib_pav_ref(x, y, w, n, g);
    assert_int_equal(nb, nr);
    if (want_blocks > 0) assert_int_equal(nb, want_blocks);
    for (int i = 0; i < n; i++) {
        assert_float_equal(f[i], g[i], 1e-12);
        if (want) assert_float_equal(f[i], want[i], 1e-12);
    }
}

static void test_pav_hand_made(void **state)
{
    (void)state;
    static const struct {
        int n;
        float x[4], y[4], w[4]; /* w all 0: unweighted (NULL) */
        double want[4];
        int blocks;
    } cases[] = {
        /* already monotone: every point its own block */
        {4, {1, 2, 3, 4}, {0, 0.25f, 0.5f, 1}, {0}, {0, 0.25, 0.5, 1}, 4},
        /* one violation in the middle: (1, 0) pooled to 0.5 */
        {4, {1, 2, 3, 4}, {0, 1, 0, 1}, {0}, {0, 0.5, 0.5, 1}, 3},
        /* decreasing: one block, the mean */
        {3, {1, 2, 3}, {1, 0.5f, 0}, {0}, {0.5, 0.5, 0.5}, 1},
        /* unsorted input, fits come back in input order */
        {4, {4, 1, 3, 2}, {1, 0, 0, 1}, {0}, {1, 0, 0.5, 0.5}, 3},
        /* ties in x are one point: (2,0),(2,1) -> 0.5 */
        {4, {1, 2, 2, 3}, {0, 0, 1, 1}, {0}, {0, 0.5, 0.5, 1}, 3},
        /* weights: (2, 1, w 3), (3, 0, w 1) -> 0.75 */
        {3, {1, 2, 3}, {0, 1, 0}, {1, 3, 1}, {0, 0.75, 0.75}, 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        check_pav(cases[c].x, cases[c].y, cases[c].w[0] != 0 ? cases[c].w : NULL, cases[c].n,
                  cases[c].want, cases[c].blocks);
    /* a violation that cascades back: 0.2 0.6 0.5 0.1 -> 0.2, 0.4 0.4 0.4 */
    const float x7[] = {1, 2, 3, 4}, y7[] = {0.2f, 0.6f, 0.5f, 0.1f};
    double w7[] = {0.2, 0.4, 0.4, 0.4};
    for (int i = 1; i < 4; i++)
        w7[i] = ((double)0.6f + (double)0.5f + (double)0.1f) / 3;
    w7[0] = (double)0.2f;
    check_pav(x7, y7, NULL, 4, w7, 2);
    /* bad input */
    const float xn[] = {1, NAN}, *x1 = cases[0].x, *y1 = cases[0].y;
    double f[2];
    assert_int_equal(kp_calib_pav(xn, y1, NULL, 2, f), -1);
    assert_int_equal(kp_calib_pav(x1, y1, NULL, 0, f), -1);
    const float wz[] = {1, 0};
    assert_int_equal(kp_calib_pav(x1, y1, wz, 2, f), -1);
}

static void test_pav_random_vs_ref(void **state)
{
    (void)state;
    kp_rng g = th_rng(5);
    for (int t = 0; t < 200; t++) {
        int n = 1 + (int)(kp_rng_below(&g, 60));
        float x[64], y[64], w[64];
        double f[64], h[64];
        for (int i = 0; i < n; i++) {
            x[i] = (float)(kp_rng_below(&g, 20)); /* many ties */
            y[i] = (kp_rng_below(&g, 3) == 0) ? 1.0f : 0.0f;
            w[i] = 0.5f + (float)(kp_rng_below(&g, 4));
        }
        const float *wp = (t & 1) ? w : NULL;
        int nb = kp_calib_pav(x, y, wp, n, f), nr = kp_calib_pav_ref(x, y, wp, n, h);
        assert_true(nb >= 1);
        assert_int_equal(nb, nr);
        for (int i = 0; i < n; i++) {
            assert_float_equal(f[i], h[i], 1e-9);
            for (int j = 0; j < n; j++) /* monotone, and a function of x */
                if (x[i] < x[j])
                    assert_true(f[i] <= f[j] + 1e-12);
                else if (x[i] == x[j])
                    assert_float_equal(f[i], f[j], 1e-12);
        }
    }
}

/* ---- isotonic calibration -------------------------------------------------------------------- */

static void test_isotonic_apply(void **state)
{
    (void)state;
    /* blocks: [0.1, 0.2] -> 0, [0.5, 0.5] -> 0.5, [0.8, 0.9] -> 1 */
    const float s[] = {0.1f, 0.2f, 0.5f, 0.5f, 0.8f, 0.9f}, y[] = {0, 0, 1, 0, 1, 1};
    kp_calib *c = kp_calib_fit_isotonic(s, y, 6, KP_CALIB_INPUT_CE);
    assert_non_null(c);
    assert_int_equal(kp_calib_n_blocks(c), 3);
    assert_int_equal(kp_calib_get_method(c), KP_CALIB_ISOTONIC);
    assert_float_equal(kp_calib_apply(c, 0.0f), 0, 1e-7);     /* below: first block */
    assert_float_equal(kp_calib_apply(c, 0.15f), 0, 1e-7);    /* inside */
    assert_float_equal(kp_calib_apply(c, 0.35f), 0.25, 1e-6); /* between: linear */
    assert_float_equal(kp_calib_apply(c, 0.5f), 0.5, 1e-7);
    assert_float_equal(kp_calib_apply(c, 0.65f), 0.75, 1e-6);
    assert_float_equal(kp_calib_apply(c, 2.0f), 1, 1e-7); /* above: last block */
    assert_true(isnan(kp_calib_apply(c, NAN)));
    /* monotone everywhere on a fine grid */
    float prev = -1;
    for (int i = 0; i <= 1000; i++) {
        float p = kp_calib_apply(c, -0.5f + 2.0f * (float)i / 1000);
        assert_true(p >= prev && p >= 0 && p <= 1);
        prev = p;
    }
    kp_calib_free(c);
}

/* ---- Platt ----------------------------------------------------------------------------------- */

static void test_platt_recovers_parameters(void **state)
{
    (void)state;
    enum { N = 20000 };
    float *s = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    assert_non_null(s);
    assert_non_null(y);
    kp_rng g = th_rng(9);
    const double A = 6, B = -3; /* p = sigmoid(6 s - 3) on s in [0, 1] */
    for (int i = 0; i < N; i++) {
        s[i] = (float)kp_rng_uniform_d(&g);
        double p = 1 / (1 + exp(-(A * s[i] + B)));
        y[i] = kp_rng_uniform_d(&g) < p ? 1.0f : 0.0f;
    }
    kp_calib *c = kp_calib_fit_platt(s, y, N, KP_CALIB_INPUT_BE);
    assert_non_null(c);
    double a, b;
    kp_calib_platt_params(c, &a, &b);
    assert_float_equal(a, A, 0.4);
    assert_float_equal(b, B, 0.25);
    /* same data, same fit */
    kp_calib *d = kp_calib_fit_platt(s, y, N, KP_CALIB_INPUT_BE);
    double a2, b2;
    kp_calib_platt_params(d, &a2, &b2);
    assert_true(a == a2 && b == b2);
    /* the fit's log-loss is no worse than the truth's (it minimises it on this sample) */
    float *p = malloc(sizeof(float) * N), *q = malloc(sizeof(float) * N);
    assert_non_null(p);
    assert_non_null(q);
    kp_calib_apply_n(c, s, N, p);
    for (int i = 0; i < N; i++)
        q[i] = (float)(1 / (1 + exp(-(A * s[i] + B))));
    assert_true(kp_calib_logloss(p, y, N) <= kp_calib_logloss(q, y, N) + 1e-4);
    assert_true(kp_calib_brier(p, y, N) < 0.25);
    /* isotonic on the same data: also near the truth in the middle */
    kp_calib *iso = kp_calib_fit_isotonic(s, y, N, KP_CALIB_INPUT_BE);
    assert_non_null(iso);
    assert_float_equal(kp_calib_apply(iso, 0.5f), 0.5, 0.08);
    kp_calib_free(iso);
    kp_calib_free(c);
    kp_calib_free(d);
    free(s), free(y), free(p), free(q);
}

static void test_losses(void **state)
{
    (void)state;
    const float p[] = {1, 0, 0.5f}, y[] = {1, 0, 1};
    assert_float_equal(kp_calib_brier(p, y, 3), 0.25 / 3, 1e-9);
    assert_float_equal(kp_calib_logloss(p, y, 3), (log(2) - 2 * log(1 - 1e-6)) / 3, 1e-6);
    assert_true(isnan(kp_calib_brier(p, y, 0)));
}

/* ---- file ------------------------------------------------------------------------------------ */

static void test_file_round_trip(void **state)
{
    (void)state;
    char path[] = "/tmp/kprec-calib-XXXXXX", err[512];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    const float s[] = {0.1f, 0.3f, 0.2f, 0.7f, 0.9f, 0.6f}, y[] = {0, 0, 1, 1, 1, 0};
    kp_calib *c = kp_calib_fit_isotonic(s, y, 6, KP_CALIB_INPUT_CE);
    const char *ek[] = {"fit_pairs"}, *ev[] = {"6"};
    assert_int_equal(kp_calib_save(c, path, ek, ev, 1, err, sizeof err), 0);
    kp_calib *l = kp_calib_load(path, err, sizeof err);
    assert_non_null(l);
    assert_int_equal(kp_calib_get_input(l), KP_CALIB_INPUT_CE);
    assert_int_equal(kp_calib_n_blocks(l), kp_calib_n_blocks(c));
    for (int i = 0; i <= 100; i++)
        assert_true(kp_calib_apply(l, (float)i / 100) == kp_calib_apply(c, (float)i / 100));
    kp_calib_free(l);
    kp_calib_free(c);
    /* Platt */
    c = kp_calib_new_platt(3.5, -1.25, KP_CALIB_INPUT_BE);
    assert_int_equal(kp_calib_save(c, path, NULL, NULL, 0, err, sizeof err), 0);
    assert_non_null(l = kp_calib_load(path, err, sizeof err));
    double a, b;
    kp_calib_platt_params(l, &a, &b);
    assert_true(a == 3.5 && b == -1.25);
    assert_int_equal(kp_calib_get_method(l), KP_CALIB_PLATT);
    kp_calib_free(l);
    kp_calib_free(c);
    /* a checkpoint of another kind */
    kp_ckpt_writer *w = kp_ckpt_writer_new(path, "ce", err, sizeof err);
    assert_non_null(w);
    assert_int_equal(kp_ckpt_writer_commit(w, err, sizeof err), 0);
    assert_null(kp_calib_load(path, err, sizeof err));
    assert_non_null(strstr(err, "not a calibration"));
    /* a calibration of a newer version */
    w = kp_ckpt_writer_new(path, KP_CALIB_KIND, err, sizeof err);
    kp_ckpt_put_u64(w, "calib_version", KP_CALIB_VERSION + 1);
    assert_int_equal(kp_ckpt_writer_commit(w, err, sizeof err), 0);
    assert_null(kp_calib_load(path, err, sizeof err));
    assert_non_null(strstr(err, "version"));
    /* decreasing blocks */
    w = kp_ckpt_writer_new(path, KP_CALIB_KIND, err, sizeof err);
    kp_ckpt_put_u64(w, "calib_version", KP_CALIB_VERSION);
    kp_ckpt_put(w, "method", "isotonic");
    kp_ckpt_put(w, "input", "ce");
    const float bl[] = {0.1f, 0.2f, 0.9f, 0.3f, 0.4f, 0.1f};
    const uint64_t dims[] = {2, 3};
    kp_ckpt_put_tensor(w, "blocks", bl, 2, dims);
    assert_int_equal(kp_ckpt_writer_commit(w, err, sizeof err), 0);
    assert_null(kp_calib_load(path, err, sizeof err));
    assert_non_null(strstr(err, "not increasing"));
    /* not a checkpoint at all */
    FILE *f = fopen(path, "w");
    fputs("hello\n", f);
    fclose(f);
    assert_null(kp_calib_load(path, err, sizeof err));
    unlink(path);
    assert_null(kp_calib_load(path, err, sizeof err));
}

TH_MAIN(cmocka_unit_test(test_pav_hand_made), cmocka_unit_test(test_pav_random_vs_ref),
        cmocka_unit_test(test_isotonic_apply), cmocka_unit_test(test_platt_recovers_parameters),
        cmocka_unit_test(test_losses), cmocka_unit_test(test_file_round_trip))

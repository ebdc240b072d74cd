/* Tests for model/train_step: config checks, the learning-rate schedule, the step API (input
 * validation leaves the model untouched, a repeated batch is fitted, changed rows are the batch's
 * feature rows). kp_train_epochs is tested in test_offline_train_epochs.c. */
#include <cblas.h>
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
#include "model/blas.h"
#include "model/ckpt.h"
#include "model/featurize.h"
#include "model/rng.h"
#include "model/train_step.h"
#include "testhelp.h"

static void test_config(void **state)
{
    (void)state;
    kp_train_config c, b;
    char err[128];
    kp_train_config_default(&c);
    assert_int_equal(kp_train_config_check(&c, err, sizeof(err)), 0);
    assert_int_equal(kp_train_config_check(NULL, err, sizeof(err)), -1);
    b = c, b.tau = 0.0f;
    assert_int_equal(kp_train_config_check(&b, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "tau"));
    b = c, b.w_sr = -1.0f;
    assert_int_equal(kp_train_config_check(&b, err, sizeof(err)), -1);
    b = c, b.w_distill = NAN;
    assert_int_equal(kp_train_config_check(&b, err, sizeof(err)), -1);
    b = c, b.batch = 0;
    assert_int_equal(kp_train_config_check(&b, err, sizeof(err)), -1);
    b = c, b.warmup = 1.5f;
    assert_int_equal(kp_train_config_check(&b, err, sizeof(err)), -1);
    b = c, b.distill = (kp_distill_kind)7;
    assert_int_equal(kp_train_config_check(&b, err, sizeof(err)), -1);
    b = c, b.w_prefix[2] = -0.5f;
    assert_int_equal(kp_train_config_check(&b, err, sizeof(err)), -1);
    kp_bienc_config mc;
    kp_bienc *m = th_bienc_new(&mc, 4096, 16, 32, 16, 1, 8, 1);
    b = c, b.lr = -1.0f;
    assert_null(kp_trainer_new(m, &b, 4, 4, 4, 10, err, sizeof(err)));
    assert_null(kp_trainer_new(m, &c, 0, 4, 4, 10, err, sizeof(err)));
    assert_null(kp_trainer_new(NULL, &c, 4, 4, 4, 10, err, sizeof(err)));
    kp_trainer_free(NULL);
    kp_bienc_free(m);
}

/* The small bi-encoder of these tests (seeded with seed; its config in *mc) and the default
 * training config in *c. */
static kp_bienc *model_and_cfg(kp_bienc_config *mc, kp_train_config *c, uint64_t seed)
{
    kp_train_config_default(c);
    return th_bienc_new(mc, 4096, 16, 32, 16, 1, 8, seed);
}

static void test_schedule(void **state)
{
    (void)state;
    kp_bienc_config mc;
    kp_train_config c;
    kp_bienc *m = model_and_cfg(&mc, &c, 1);
    c.lr = 1.0f;
    c.warmup = 0.1f;
    c.min_lr_frac = 0.1f;
    c.w_softmax = 1.0f, c.w_sr = 0.0f, c.w_distill = 0.0f;
    char err[128];
    kp_trainer *t = kp_trainer_new(m, &c, 2, 2, 2, 100, err, sizeof(err));
    assert_non_null(t);
    const char *it[2] = {"red drill", "blue saw"}, *ks[2] = {"drill", "saw"};
    int si[2] = {0, 1}, sk[2] = {0, 1};
    kp_train_batch b = {0};
    b.n_items = 2, b.items = it, b.n_keys = 2, b.keys = ks;
    b.n_soft = 2, b.soft_item = si, b.soft_key = sk;
    float lr[100];
    for (int s = 0; s < 100; s++) {
        lr[s] = kp_trainer_lr(t);
        kp_train_losses L;
        assert_int_equal(kp_trainer_step(t, &b, &L, err, sizeof(err)), 0);
        assert_true(L.lr == lr[s]);
    }
    assert_int_equal(kp_trainer_steps(t), 100);
    /* warmup: 10 steps rising linearly to the peak */
    assert_true(fabsf(lr[0] - 0.1f) < 1e-6f);
    assert_true(fabsf(lr[9] - 1.0f) < 1e-6f);
    for (int s = 1; s < 10; s++)
        assert_true(lr[s] > lr[s - 1]);
    /* cosine decay: non-increasing, ends near min_lr_frac */
    for (int s = 11; s < 100; s++)
        assert_true(lr[s] <= lr[s - 1]);
    assert_true(lr[99] < 0.11f && lr[99] >= 0.1f);
    assert_true(fabsf(lr[55] - 0.55f) < 0.02f); /* half way: (1 + 0.1) / 2 */
    kp_trainer_free(t);
    /* linear decay */
    c.schedule = KP_LR_LINEAR;
    t = kp_trainer_new(m, &c, 2, 2, 2, 100, err, sizeof(err));
    for (int s = 0; s < 60; s++)
        assert_int_equal(kp_trainer_step(t, &b, NULL, err, sizeof(err)), 0);
    float want = 1.0f - 0.9f * (50.0f / 90.0f);
    assert_true(fabsf(kp_trainer_lr(t) - want) < 1e-4f);
    kp_trainer_free(t);
    kp_bienc_free(m);
}

/* ---- step API -------------------------------------------------------------------------------- */

static void test_step_validation(void **state)
{
    (void)state;
    kp_bienc_config mc;
    kp_train_config c;
    kp_bienc *m = model_and_cfg(&mc, &c, 3), *m0 = kp_bienc_new(&mc, 3);
    c.w_bce = 1.0f;
    char err[160];
    kp_trainer *t = kp_trainer_new(m, &c, 3, 4, 4, 0, err, sizeof(err));
    assert_non_null(t);
    const char *it[3] = {"a drill", "a saw", "a hammer"}, *ks[4] = {"drill", "saw", "hammer", "x"};
    int si[2] = {0, 1}, sk[2] = {0, 1}, bad_k[2] = {0, 4};
    float lab[2] = {0.5f, 1.5f}, tch[2] = {0.1f, NAN};
    int pos0[2] = {1, 0};
    kp_train_batch b = {0};
    b.n_items = 3, b.items = it, b.n_keys = 4, b.keys = ks;
    b.n_soft = 2, b.soft_item = si, b.soft_key = bad_k;
    assert_int_equal(kp_trainer_step(t, &b, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "out of range"));
    b.soft_key = sk;
    b.n_sr = 2, b.sr_item = si, b.sr_key = sk, b.sr_label = lab; /* 1.5 is not in 0..1 */
    assert_int_equal(kp_trainer_step(t, &b, NULL, err, sizeof(err)), -1);
    b.n_sr = 0;
    b.n_dis = 2, b.dis_item = si, b.dis_key = sk, b.dis_teacher = tch;
    assert_int_equal(kp_trainer_step(t, &b, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "finite"));
    b.n_dis = 0;
    b.n_bce = 2, b.bce_item = si, b.bce_key = sk, b.bce_label = lab, b.bce_pos = pos0;
    lab[1] = 0.5f;
    assert_int_equal(kp_trainer_step(t, &b, NULL, err, sizeof(err)), -1); /* position 0 */
    b.n_bce = 0;
    b.n_items = 4; /* over capacity */
    assert_int_equal(kp_trainer_step(t, &b, NULL, err, sizeof(err)), -1);
    b.n_items = 3;
    b.n_sr = 5; /* over pair capacity */
    assert_int_equal(kp_trainer_step(t, &b, NULL, err, sizeof(err)), -1);
    b.n_sr = 0;
    assert_int_equal(kp_trainer_step(t, NULL, NULL, err, sizeof(err)), -1);
    assert_true(th_bienc_same_params(m, m0)); /* nothing changed by the failed steps */
    assert_int_equal(kp_trainer_steps(t), 0);
    /* a valid one changes the model */
    assert_int_equal(kp_trainer_step(t, &b, NULL, err, sizeof(err)), 0);
    assert_false(th_bienc_same_params(m, m0));
    kp_trainer_free(t);
    kp_bienc_free(m);
    kp_bienc_free(m0);
}

static float pair_cos(const kp_bienc *m, const char *a, const char *k, int D)
{
    float ea[64], ek[64];
    kp_bienc_embed(m, KP_TOWER_ITEM, &a, NULL, 1, ea);
    kp_bienc_embed(m, KP_TOWER_KEY, &k, NULL, 1, ek);
    float s = 0;
    for (int d = 0; d < D; d++)
        s += ea[d] * ek[d];
    return s;
}

static void test_step_fits_and_changed_rows(void **state)
{
    (void)state;
    kp_bienc_config mc;
    kp_train_config c;
    kp_bienc *m = model_and_cfg(&mc, &c, 5);
    c.w_bce = 1.0f;
    c.lr = 5e-3f, c.lr_emb = 5e-2f;
    char err[160];
    kp_trainer *t = kp_trainer_new(m, &c, 4, 6, 8, 0, err, sizeof(err));
    assert_non_null(t);
    const char *it[4] = {"dewalt cordless drill", "stanley claw hammer", "oak wood stain",
                         "copper pipe fitting"};
    const char *ks[6] = {"drill", "hammer", "stain", "pipe", "garden hose", "light bulb"};
    int si[4] = {0, 1, 2, 3}, sk[4] = {0, 1, 2, 3};
    int bi[8] = {0, 0, 1, 1, 2, 2, 3, 3}, bk[8] = {0, 4, 1, 5, 2, 4, 3, 5};
    int bp[8] = {1, 2, 1, 2, 1, 2, 1, 2};
    float bl[8] = {0.8f, 0.0f, 0.7f, 0.1f, 0.9f, 0.0f, 0.6f, 0.05f};
    float sl[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    int di[8] = {0, 0, 1, 1, 2, 2, 3, 3}, dk[8] = {0, 5, 1, 4, 2, 3, 3, 0};
    float dt[8] = {0.9f, 0.1f, 0.8f, 0.0f, 0.95f, 0.2f, 0.85f, 0.1f};
    kp_train_batch b = {0};
    b.n_items = 4, b.items = it, b.n_keys = 6, b.keys = ks;
    b.n_soft = 4, b.soft_item = si, b.soft_key = sk;
    b.n_bce = 8, b.bce_item = bi, b.bce_key = bk, b.bce_pos = bp, b.bce_label = bl;
    b.n_sr = 4, b.sr_item = si, b.sr_key = sk, b.sr_label = sl;
    b.n_dis = 8, b.dis_item = di, b.dis_key = dk, b.dis_teacher = dt;
    kp_train_losses first, L;
    assert_int_equal(kp_trainer_step(t, &b, &first, err, sizeof(err)), 0);
    assert_true(first.softmax > 0 && first.bce > 0 && first.sr > 0 && first.distill > 0);
    assert_true(fabs(first.total - (first.softmax + first.bce + first.sr + first.distill) * 2.0) <
                1e-3 * first.total); /* two Matryoshka sizes of weight 1 */
    /* changed rows = the distinct feature ids of the batch's texts */
    const kp_rowgrad *rows = kp_trainer_changed_rows(t, KP_TOWER_ITEM);
    assert_ptr_equal(rows, kp_trainer_changed_rows(t, KP_TOWER_KEY)); /* shared towers */
    unsigned char *want = calloc(mc.n_buckets, 1);
    int n_want = 0;
    for (int i = 0; i < 10; i++) {
        const char *s = i < 4 ? it[i] : ks[i - 4];
        uint32_t ids[KP_FEAT_MAX_IDS];
        int k = kp_featurize(s, strlen(s), mc.n_buckets, ids, KP_FEAT_MAX_IDS);
        for (int j = 0; j < k; j++)
            if (!want[ids[j]]) want[ids[j]] = 1, n_want++;
    }
    assert_int_equal(rows->n, n_want);
    for (int r = 0; r < rows->n; r++)
        assert_true(want[rows->rows[r]]);
    free(want);
    /* all terms together: the ranking terms are fitted */
    for (int s = 0; s < 150; s++)
        assert_int_equal(kp_trainer_step(t, &b, &L, err, sizeof(err)), 0);
    assert_true(L.softmax < 0.5 * first.softmax);
    assert_true(L.distill < 0.5 * first.distill);
    assert_true(L.bce < first.bce);
    /* the fitted model ranks each item's clicked key above the unrelated ones */
    for (int i = 0; i < 4; i++)
        assert_true(pair_cos(m, it[i], ks[i], 16) > pair_cos(m, it[i], ks[4], 16) &&
                    pair_cos(m, it[i], ks[i], 16) > pair_cos(m, it[i], ks[5], 16));
    kp_trainer_free(t);
    kp_bienc_free(m);
    /* each term alone is fitted by its own gradient (weights one-hot, fresh model); term 5 is
     * the distillation over the known pairs only */
    unsigned char known[8] = {1, 0, 1, 0, 1, 0, 1, 0};
    b.dis_known = known;
    for (int term = 0; term < 6; term++) {
        kp_train_config c1 = c;
        c1.w_softmax = term == 0, c1.w_bce = term == 1, c1.w_sr = term == 2;
        c1.w_distill = term == 3 || term == 4, c1.w_distill_known = term == 5;
        c1.distill = term == 4 ? KP_DISTILL_MSE : KP_DISTILL_PEARSON;
        kp_bienc *m1 = kp_bienc_new(&mc, 9);
        kp_trainer *t1 = kp_trainer_new(m1, &c1, 4, 6, 8, 0, err, sizeof(err));
        kp_train_losses L0, L1;
        assert_int_equal(kp_trainer_step(t1, &b, &L0, err, sizeof(err)), 0);
        for (int s = 0; s < 150; s++)
            assert_int_equal(kp_trainer_step(t1, &b, &L1, err, sizeof(err)), 0);
        double v0[6] = {L0.softmax, L0.bce, L0.sr, L0.distill, L0.distill, L0.distill_known};
        double v1[6] = {L1.softmax, L1.bce, L1.sr, L1.distill, L1.distill, L1.distill_known};
        assert_true(v0[term] > 0.0);
        assert_true(v1[term] < 0.5 * v0[term]);
        /* only the active term is reported */
        for (int u = 0; u < 6; u++)
            if (u != term && !((term == 3 || term == 4) && (u == 3 || u == 4)))
                assert_true(v1[u] == 0.0);
        kp_trainer_free(t1);
        kp_bienc_free(m1);
    }
}

/* The model's two-way split (kp_par_threads = 2: the towers' featurizing, bags and dense layers,
 * the embedding-bag backward, the gradient norm and clipping, the lazy Adam rows) trains the same
 * parameters bit for bit as one thread, with shared and with separate towers. The batch is big
 * enough that every fan-out runs split; clip 0.5 makes the clipping scale the gradients. */
static void test_step_split_is_bit_identical(void **state)
{
    (void)state;
    enum { NI = 150, NK = 320, NS = 150, ND = 600, STEPS = 4 };
    static char ib[NI][64], kb[NK][32];
    static const char *it[NI], *ks[NK];
    for (int i = 0; i < NI; i++) {
        snprintf(ib[i], sizeof ib[i], "cordless drill %d with %d bits, colour %d", i, i % 17,
                 i % 5);
        it[i] = ib[i];
    }
    for (int k = 0; k < NK; k++) {
        snprintf(kb[k], sizeof kb[k], "drill %d bit %d", k % 97, k % 11);
        ks[k] = kb[k];
    }
    static int si[NS], sk[NS], di[ND], dk[ND];
    static float sl[NS], dt[ND];
    static unsigned char known[ND];
    kp_rng r;
    kp_rng_seed(&r, 5);
    for (int q = 0; q < NS; q++)
        si[q] = q % NI, sk[q] = (int)(kp_rng_next(&r) % NK), sl[q] = (float)kp_rng_uniform(&r);
    for (int q = 0; q < ND; q++) {
        di[q] = (int)(kp_rng_next(&r) % NI), dk[q] = (int)(kp_rng_next(&r) % NK);
        dt[q] = (float)kp_rng_uniform(&r), known[q] = q % 3 == 0;
    }
    kp_train_batch b = {0};
    b.n_items = NI, b.items = it, b.n_keys = NK, b.keys = ks;
    b.n_soft = NS, b.soft_item = si, b.soft_key = sk;
    b.n_sr = NS, b.sr_item = si, b.sr_key = sk, b.sr_label = sl;
    b.n_dis = ND, b.dis_item = di, b.dis_key = dk, b.dis_teacher = dt, b.dis_known = known;
    for (int shared = 1; shared >= 0; shared--) {
        kp_bienc_config mc;
        kp_train_config c;
        kp_train_config_default(&c);
        c.clip = 0.5f;
        kp_bienc *m[2];
        kp_train_losses L[2][STEPS];
        char err[160];
        for (int w = 0; w < 2; w++) {
            m[w] = th_bienc_new(&mc, 1 << 14, 32, 48, 24, shared, 8, 11);
            kp_trainer *t = kp_trainer_new(m[w], &c, NI, NK, ND, 0, err, sizeof err);
            assert_non_null(t);
            kp_par_set_threads(w + 1);
            for (int s = 0; s < STEPS; s++)
                assert_int_equal(kp_trainer_step(t, &b, &L[w][s], err, sizeof err), 0);
            kp_par_set_threads(1);
            assert_true(kp_trainer_changed_rows(t, KP_TOWER_KEY)->n > 256);
            kp_trainer_free(t);
        }
        for (int s = 0; s < STEPS; s++) {
            assert_true(L[0][s].total == L[1][s].total);
            assert_true(L[0][s].grad_norm == L[1][s].grad_norm);
        }
        assert_true(L[0][0].grad_norm > c.clip); /* the clipping scaled */
        assert_true(th_bienc_same_params(m[0], m[1]));
        kp_bienc_free(m[0]);
        kp_bienc_free(m[1]);
    }
}

TH_MAIN(cmocka_unit_test(test_config), cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_step_validation), cmocka_unit_test(test_step_fits_and_changed_rows),
        cmocka_unit_test(test_step_split_is_bit_identical))

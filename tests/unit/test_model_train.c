/* Tests for model/train: config checks, the learning-rate schedule, the step API (input
 * validation leaves the model untouched, a repeated batch is fitted, changed rows are the batch's
 * feature rows), and kp_train_epochs on a small synthetic shop: it learns (retrieval and teacher
 * correlation improve), terms without data are off, and a fixed seed gives bit-identical
 * parameters and checkpoint bytes with one BLAS thread. */
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
#include "model/ckpt.h"
#include "offline/clicksim.h"
#include "model/featurize.h"
#include "offline/ir_metrics.h"
#include "offline/train_epochs.h"
#include "offline/datasets.h"

static void small_cfg(kp_bienc_config *c)
{
    memset(c, 0, sizeof(*c));
    c->n_buckets = 4096;
    c->emb_dim = 16;
    c->hidden_dim = 32;
    c->out_dim = 16;
    c->shared_towers = 1;
    c->n_prefix = 2;
    c->prefix[0] = 8;
    c->prefix[1] = 16;
}

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
    small_cfg(&mc);
    kp_bienc *m = kp_bienc_new(&mc, 1);
    b = c, b.lr = -1.0f;
    assert_null(kp_trainer_new(m, &b, 4, 4, 4, 10, err, sizeof(err)));
    assert_null(kp_trainer_new(m, &c, 0, 4, 4, 10, err, sizeof(err)));
    assert_null(kp_trainer_new(NULL, &c, 4, 4, 4, 10, err, sizeof(err)));
    kp_trainer_free(NULL);
    kp_bienc_free(m);
}

static void test_schedule(void **state)
{
    (void)state;
    kp_bienc_config mc;
    small_cfg(&mc);
    kp_bienc *m = kp_bienc_new(&mc, 1);
    kp_train_config c;
    kp_train_config_default(&c);
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

static int params_equal(const kp_bienc *a, const kp_bienc *b)
{
    for (int p = 0; p < KP_BIENC_NPARAM; p++) {
        size_t r, c;
        const float *x = kp_bienc_param_c(a, KP_TOWER_ITEM, (kp_bienc_param_id)p, &r, &c);
        const float *y = kp_bienc_param_c(b, KP_TOWER_ITEM, (kp_bienc_param_id)p, NULL, NULL);
        if (memcmp(x, y, r * c * sizeof(float)) != 0) return 0;
    }
    return 1;
}

static void test_step_validation(void **state)
{
    (void)state;
    kp_bienc_config mc;
    small_cfg(&mc);
    kp_bienc *m = kp_bienc_new(&mc, 3), *m0 = kp_bienc_new(&mc, 3);
    kp_train_config c;
    kp_train_config_default(&c);
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
    assert_true(params_equal(m, m0)); /* nothing changed by the failed steps */
    assert_int_equal(kp_trainer_steps(t), 0);
    /* a valid one changes the model */
    assert_int_equal(kp_trainer_step(t, &b, NULL, err, sizeof(err)), 0);
    assert_false(params_equal(m, m0));
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
    small_cfg(&mc);
    kp_bienc *m = kp_bienc_new(&mc, 5);
    kp_train_config c;
    kp_train_config_default(&c);
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

/* ---- kp_train_epochs on a synthetic shop --------------------------------------------------------
 */

static const char *cats[] = {"drill", "hammer", "ladder",  "faucet", "shovel",  "sander",
                             "grill", "toilet", "mailbox", "heater", "lantern", "wrench"};
static const char *colors[] = {"red", "black", "white", "steel", "copper", "green"};
static const char *brands[] = {"acme", "dewalt", "ryobi", "husky", "moen", "kohler", "weber"};
#define NCAT   12
#define NCOL   6
#define NBR    7
#define NITEMS 240

typedef struct {
    kp_texts items, keys;
    kp_judgments sr;
    kp_clicklog clicks;
    int *item_cat, *item_col;
    int *key_cat, *key_col; /* key_col -1: category only */
    int n_teacher_calls;
} shop;

static void shop_free(shop *s)
{
    kp_texts_free(&s->items);
    kp_texts_free(&s->keys);
    kp_judgments_free(&s->sr);
    kp_clicklog_free(&s->clicks);
    free(s->item_cat);
    free(s->item_col);
    free(s->key_cat);
    free(s->key_col);
}

static float shop_rel(const shop *s, int i, int k)
{
    if (s->key_cat[k] != s->item_cat[i]) return 1.0f;
    if (s->key_col[k] < 0) return 2.0f;
    return s->key_col[k] == s->item_col[i] ? 3.0f : 1.5f;
}

/* Items "brand color cat model-N", keyphrases "cat" and "color cat"; every item judged on its
 * exact key, its category key, and two keys of other categories. */
static void shop_make(shop *s)
{
    memset(s, 0, sizeof(*s));
    char ibuf[NITEMS][64], iid[NITEMS][16];
    const char *ip[NITEMS], *ii[NITEMS];
    s->item_cat = malloc(NITEMS * sizeof(int));
    s->item_col = malloc(NITEMS * sizeof(int));
    for (int i = 0; i < NITEMS; i++) {
        int c = (i * 7) % NCAT, o = (i * 5 + i / NCAT) % NCOL, b = (i * 3) % NBR;
        snprintf(ibuf[i], sizeof(ibuf[i]), "%s %s %s model %d", brands[b], colors[o], cats[c],
                 i % 17);
        snprintf(iid[i], sizeof(iid[i]), "i%d", i);
        ip[i] = ibuf[i], ii[i] = iid[i];
        s->item_cat[i] = c, s->item_col[i] = o;
    }
    int nk = NCAT * (NCOL + 1);
    char kbuf[NCAT * (NCOL + 1)][48], kid[NCAT * (NCOL + 1)][16];
    const char *kp[NCAT * (NCOL + 1)], *ki[NCAT * (NCOL + 1)];
    s->key_cat = malloc((size_t)nk * sizeof(int));
    s->key_col = malloc((size_t)nk * sizeof(int));
    for (int k = 0; k < nk; k++) {
        int c = k / (NCOL + 1), o = k % (NCOL + 1) - 1;
        if (o < 0)
            snprintf(kbuf[k], sizeof(kbuf[k]), "%s", cats[c]);
        else
            snprintf(kbuf[k], sizeof(kbuf[k]), "%s %s", colors[o], cats[c]);
        snprintf(kid[k], sizeof(kid[k]), "k%d", k);
        kp[k] = kbuf[k], ki[k] = kid[k];
        s->key_cat[k] = c, s->key_col[k] = o;
    }
    char err[128];
    assert_int_equal(kp_texts_build(ii, ip, NITEMS, &s->items, err, sizeof(err)), 0);
    assert_int_equal(kp_texts_build(ki, kp, nk, &s->keys, err, sizeof(err)), 0);
    int n = NITEMS * 4;
    s->sr.n = n;
    s->sr.item = malloc((size_t)n * sizeof(int));
    s->sr.key = malloc((size_t)n * sizeof(int));
    s->sr.rel = malloc((size_t)n * sizeof(float));
    for (int i = 0, e = 0; i < NITEMS; i++) {
        int c = s->item_cat[i], o = s->item_col[i];
        int ks[4] = {c * (NCOL + 1) + 1 + o, c * (NCOL + 1), ((c + 1) % NCAT) * (NCOL + 1),
                     ((c + 5) % NCAT) * (NCOL + 1) + 1 + o};
        for (int u = 0; u < 4; u++, e++) {
            s->sr.item[e] = i, s->sr.key[e] = ks[u], s->sr.rel[e] = shop_rel(s, i, ks[u]);
        }
    }
    kp_clicksim_config cc;
    kp_clicksim_config_default(&cc);
    cc.sessions_per_item = 10;
    assert_int_equal(kp_clicksim_run(&s->sr, NITEMS, nk, &cc, &s->clicks, err, sizeof(err)), 0);
}

/* Teacher: fraction of the keyphrase's words found in the title (a lexical "cross-encoder"). */
static int overlap_teacher(void *ctx, const char *const *items, const char *const *keys, int n,
                           float *out)
{
    shop *s = ctx;
    s->n_teacher_calls++;
    for (int p = 0; p < n; p++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%s", keys[p]);
        int words = 0, hit = 0;
        for (char *w = strtok(buf, " "); w; w = strtok(NULL, " ")) {
            words++;
            if (strstr(items[p], w)) hit++;
        }
        out[p] = words ? (float)hit / (float)words : 0.0f;
    }
    return 0;
}

static int failing_teacher(void *ctx, const char *const *items, const char *const *keys, int n,
                           float *out)
{
    (void)ctx, (void)items, (void)keys, (void)n, (void)out;
    return -1;
}

/* recall@3 of the exact ("color cat") key and pearson of cosines vs relevance on judged pairs */
static void shop_eval(const shop *s, const kp_bienc *m, double *recall, double *corr)
{
    int D = kp_bienc_cfg(m)->out_dim, nk = s->keys.n;
    float *ei = malloc((size_t)NITEMS * D * sizeof(float)),
          *ek = malloc((size_t)nk * D * sizeof(float));
    kp_bienc_embed(m, KP_TOWER_ITEM, (const char *const *)s->items.text, NULL, NITEMS, ei);
    kp_bienc_embed(m, KP_TOWER_KEY, (const char *const *)s->keys.text, NULL, nk, ek);
    int hits = 0;
    for (int i = 0; i < NITEMS; i++) {
        int target = s->item_cat[i] * (NCOL + 1) + 1 + s->item_col[i], better = 0;
        float st = 0;
        for (int d = 0; d < D; d++)
            st += ei[i * D + d] * ek[target * D + d];
        for (int k = 0; k < nk; k++) {
            float sk = 0;
            for (int d = 0; d < D; d++)
                sk += ei[i * D + d] * ek[k * D + d];
            if (sk > st) better++;
        }
        hits += better < 3;
    }
    *recall = (double)hits / NITEMS;
    float *sc = malloc((size_t)s->sr.n * sizeof(float));
    for (int e = 0; e < s->sr.n; e++) {
        float v = 0;
        for (int d = 0; d < D; d++)
            v += ei[s->sr.item[e] * D + d] * ek[s->sr.key[e] * D + d];
        sc[e] = v;
    }
    *corr = kp_pearson(sc, s->sr.rel, s->sr.n);
    free(sc);
    free(ei);
    free(ek);
}

static void fast_cfg(kp_train_config *c)
{
    kp_train_config_default(c);
    c->batch = 32;
    c->epochs = 6;
    c->n_random = 3;
    c->n_hard = 2;
    c->lr = 5e-3f, c->lr_emb = 5e-2f;
    c->seed = 11;
}

static void test_run_learns(void **state)
{
    (void)state;
    shop s;
    shop_make(&s);
    kp_bienc_config mc;
    small_cfg(&mc);
    kp_bienc *m = kp_bienc_new(&mc, 7);
    double r0, c0, r1, c1;
    shop_eval(&s, m, &r0, &c0);
    kp_train_config c;
    fast_cfg(&c);
    c.n_model_hard = 2;
    c.w_bce = 0.5f;
    kp_train_data d = {0};
    d.items = &s.items, d.keys = &s.keys, d.clicks = &s.clicks, d.sr = &s.sr;
    d.teacher = overlap_teacher, d.teacher_ctx = &s;
    kp_train_stats st;
    char err[256];
    int rc = kp_train_epochs(m, &c, &d, &st, err, sizeof(err));
    if (rc) print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(st.n_train_items, NITEMS);
    assert_int_equal(st.steps, 6 * ((NITEMS + 31) / 32));
    assert_true(st.teacher_pairs > NITEMS * 5); /* pool + model-hard refreshes */
    assert_true(s.n_teacher_calls > 0);
    assert_true(st.last_epoch.softmax > 0 && st.last_epoch.sr > 0 && st.last_epoch.distill > 0 &&
                st.last_epoch.distill_known > 0 && st.last_epoch.bce > 0);
    shop_eval(&s, m, &r1, &c1);
    assert_true(r1 > r0 + 0.3);
    assert_true(r1 > 0.6);
    assert_true(c1 > c0 + 0.2 && c1 > 0.5);
    kp_bienc_free(m);
    shop_free(&s);
}

static void test_run_terms_follow_data(void **state)
{
    (void)state;
    shop s;
    shop_make(&s);
    kp_bienc_config mc;
    small_cfg(&mc);
    kp_bienc *m = kp_bienc_new(&mc, 7);
    kp_train_config c;
    fast_cfg(&c);
    c.epochs = 1;
    char err[256];
    kp_train_stats st;
    /* only SR judgments: no CTR, no distillation */
    kp_train_data d = {0};
    d.items = &s.items, d.keys = &s.keys, d.sr = &s.sr;
    assert_int_equal(kp_train_epochs(m, &c, &d, &st, err, sizeof(err)), 0);
    assert_true(st.last_epoch.sr > 0);
    assert_true(st.last_epoch.softmax == 0 && st.last_epoch.distill == 0);
    assert_int_equal(st.teacher_pairs, 0);
    /* only clicks */
    d.sr = NULL, d.clicks = &s.clicks;
    assert_int_equal(kp_train_epochs(m, &c, &d, &st, err, sizeof(err)), 0);
    assert_true(st.last_epoch.softmax > 0 && st.last_epoch.sr == 0);
    /* weights switch terms off even with data */
    d.sr = &s.sr;
    c.w_softmax = 0.0f;
    assert_int_equal(kp_train_epochs(m, &c, &d, &st, err, sizeof(err)), 0);
    assert_true(st.last_epoch.softmax == 0 && st.last_epoch.sr > 0);
    /* a train mask restricts the items */
    unsigned char *mask = calloc(NITEMS, 1);
    for (int i = 0; i < NITEMS; i += 3)
        mask[i] = 1;
    d.train_items = mask;
    assert_int_equal(kp_train_epochs(m, &c, &d, &st, err, sizeof(err)), 0);
    assert_int_equal(st.n_train_items, NITEMS / 3);
    /* errors: nothing to learn, failing teacher, bad judgment index */
    memset(mask, 0, NITEMS);
    assert_int_equal(kp_train_epochs(m, &c, &d, &st, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no training signal"));
    d.train_items = NULL;
    d.teacher = failing_teacher;
    assert_int_equal(kp_train_epochs(m, &c, &d, &st, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "teacher"));
    d.teacher = NULL;
    int keep = s.sr.key[5];
    s.sr.key[5] = s.keys.n + 3;
    assert_int_equal(kp_train_epochs(m, &c, &d, &st, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "out of range"));
    s.sr.key[5] = keep;
    assert_int_equal(kp_train_epochs(NULL, &c, &d, &st, err, sizeof(err)), -1);
    free(mask);
    kp_bienc_free(m);
    shop_free(&s);
}

static long file_bytes(const char *path, unsigned char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n);
    if (fread(*out, 1, (size_t)n, f) != (size_t)n) n = -1;
    fclose(f);
    return n;
}

static kp_bienc *train_once(shop *s, uint64_t seed, const char *path)
{
    kp_bienc_config mc;
    small_cfg(&mc);
    kp_bienc *m = kp_bienc_new(&mc, 7);
    kp_train_config c;
    fast_cfg(&c);
    c.epochs = 2;
    c.n_model_hard = 2;
    c.w_bce = 0.5f;
    c.seed = seed;
    kp_train_data d = {0};
    d.items = &s->items, d.keys = &s->keys, d.clicks = &s->clicks, d.sr = &s->sr;
    d.teacher = overlap_teacher, d.teacher_ctx = s;
    char err[256];
    assert_int_equal(kp_train_epochs(m, &c, &d, NULL, err, sizeof(err)), 0);
    kp_bienc_set_version(m, 1);
    assert_int_equal(kp_bienc_save(m, path, err, sizeof(err)), 0);
    return m;
}

static void test_run_deterministic(void **state)
{
    (void)state;
    openblas_set_num_threads(1);
    shop s;
    shop_make(&s);
    char p1[64], p2[64], p3[64];
    snprintf(p1, sizeof(p1), "/tmp/kp_train_det1_%d.kpm", (int)getpid());
    snprintf(p2, sizeof(p2), "/tmp/kp_train_det2_%d.kpm", (int)getpid());
    snprintf(p3, sizeof(p3), "/tmp/kp_train_det3_%d.kpm", (int)getpid());
    kp_bienc *a = train_once(&s, 21, p1), *b = train_once(&s, 21, p2), *c = train_once(&s, 22, p3);
    assert_true(params_equal(a, b));
    assert_false(params_equal(a, c));
    unsigned char *x = NULL, *y = NULL, *z = NULL;
    long nx = file_bytes(p1, &x), ny = file_bytes(p2, &y), nz = file_bytes(p3, &z);
    assert_true(nx > 0 && nx == ny && nx == nz);
    assert_int_equal(memcmp(x, y, (size_t)nx), 0);
    assert_int_not_equal(memcmp(x, z, (size_t)nx), 0);
    free(x), free(y), free(z);
    remove(p1), remove(p2), remove(p3);
    kp_bienc_free(a), kp_bienc_free(b), kp_bienc_free(c);
    shop_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_step_validation),
        cmocka_unit_test(test_step_fits_and_changed_rows),
        cmocka_unit_test(test_run_learns),
        cmocka_unit_test(test_run_terms_follow_data),
        cmocka_unit_test(test_run_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

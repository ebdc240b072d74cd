/* Tests for offline/train_epochs: kp_train_epochs on a small synthetic shop learns (retrieval and
 * teacher correlation improve), terms without data are off, bad inputs are refused, and a fixed
 * seed gives bit-identical parameters and checkpoint bytes with one BLAS thread. */
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
#include "model/featurize.h"
#include "offline/clicksim.h"
#include "offline/datasets.h"
#include "offline/ir_metrics.h"
#include "offline/train_epochs.h"
#include "testhelp.h"
#include "th_main.h"

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

/* The model every run starts from (the same config and seed) and the fast_cfg training config. */
static kp_bienc *shop_model(kp_train_config *c)
{
    kp_bienc_config mc;
    th_bienc_cfg(&mc, 4096, 16, 32, 16, 1, 8);
    fast_cfg(c);
    return kp_bienc_new(&mc, 7);
}

static void test_run_learns(void **state)
{
    (void)state;
    shop s;
    shop_make(&s);
    kp_train_config c;
    kp_bienc *m = shop_model(&c);
    double r0, c0, r1, c1;
    shop_eval(&s, m, &r0, &c0);
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
    kp_train_config c;
    kp_bienc *m = shop_model(&c);
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

static kp_bienc *train_once(shop *s, uint64_t seed, const char *path)
{
    kp_train_config c;
    kp_bienc *m = shop_model(&c);
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
    assert_true(th_bienc_same_params(a, b));
    assert_false(th_bienc_same_params(a, c));
    size_t nx = 0, ny = 0, nz = 0;
    unsigned char *x = th_slurp(p1, &nx), *y = th_slurp(p2, &ny), *z = th_slurp(p3, &nz);
    assert_true(x && y && z);
    assert_true(nx > 0 && nx == ny && nx == nz);
    assert_int_equal(memcmp(x, y, nx), 0);
    assert_int_not_equal(memcmp(x, z, nx), 0);
    free(x), free(y), free(z);
    remove(p1), remove(p2), remove(p3);
    kp_bienc_free(a), kp_bienc_free(b), kp_bienc_free(c);
    shop_free(&s);
}

/* Softmax negatives when distilling: an item's own distillation candidates (BM25, random,
 * model-retrieved keys, mostly never shown) are never its negatives; with soft_pool_negatives 0
 * no candidate-only column is anyone's negative, with 1 other items' candidates are. */
typedef struct {
    int pool_negatives;
    long rows, own_checked, own_unmasked, other_cand_unmasked, cand_cols;
} mask_check;

static void check_mask(void *ctx, const kp_train_batch *b, const int *batch_items)
{
    (void)batch_items;
    mask_check *mc = ctx;
    unsigned char *ck = calloc((size_t)b->n_keys + 1, 1); /* clicked / judged columns */
    for (int r = 0; r < b->n_soft; r++)
        ck[b->soft_key[r]] = 1;
    for (int e = 0; e < b->n_sr; e++)
        ck[b->sr_key[e]] = 1;
    for (int e = 0; e < b->n_bce; e++)
        ck[b->bce_key[e]] = 1;
    for (int r = 0; r < b->n_soft; r++) {
        const unsigned char *row = b->soft_mask + (size_t)r * b->n_keys;
        mc->rows++;
        for (int e = 0; e < b->n_dis; e++) {
            int col = b->dis_key[e];
            if (col == b->soft_key[r]) continue;
            if (b->dis_item[e] == b->soft_item[r]) {
                mc->own_checked++;
                mc->own_unmasked += !row[col];
            } else if (!ck[col]) {
                mc->cand_cols++;
                mc->other_cand_unmasked += !row[col];
            }
        }
    }
    free(ck);
}

static void test_softmax_mask(void **state)
{
    (void)state;
    shop s;
    shop_make(&s);
    for (int pn = 0; pn < 2; pn++) {
        kp_train_config c;
        kp_bienc *m = shop_model(&c);
        c.epochs = 2;
        c.n_model_hard = 2;
        kp_train_data d = {0};
        mask_check chk = {pn, 0, 0, 0, 0, 0};
        d.items = &s.items, d.keys = &s.keys, d.clicks = &s.clicks, d.sr = &s.sr;
        d.teacher = overlap_teacher, d.teacher_ctx = &s;
        d.soft_pool_negatives = pn;
        d.on_batch = check_mask, d.on_batch_ctx = &chk;
        char err[256];
        assert_int_equal(kp_train_epochs(m, &c, &d, NULL, err, sizeof(err)), 0);
        assert_true(chk.rows > 0 && chk.own_checked > chk.rows);
        assert_int_equal(chk.own_unmasked, 0);
        assert_true(chk.cand_cols > 0);
        if (pn)
            assert_true(chk.other_cand_unmasked > 0);
        else
            assert_int_equal(chk.other_cand_unmasked, 0);
        kp_bienc_free(m);
    }
    shop_free(&s);
}

TH_MAIN(cmocka_unit_test(test_run_learns), cmocka_unit_test(test_run_terms_follow_data),
        cmocka_unit_test(test_run_deterministic), cmocka_unit_test(test_softmax_mask))

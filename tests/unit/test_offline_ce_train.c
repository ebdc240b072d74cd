/* Tests for offline/ce_train: the cross-encoder learns a synthetic task (loss falls, held-out
 * AUC and Spearman), is deterministic for a seed and thread count, and refuses bad options. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/ce.h"
#include "model/rng.h"
#include "offline/ce_train.h"
#include "offline/datasets.h"
#include "offline/split.h"
#include "th_main.h"
#include "testhelp.h"

/* ---- training on a synthetic task ------------------------------------------------------------ */

/* Items "<colour> <thing> <n>"; judged keyphrases: the thing (rel 3), the colour + thing (rel 3),
 * an unrelated thing (rel 1). */
static const char *things[] = {"drill", "hammer", "ladder", "faucet", "lamp", "rug", "sink", "saw"};
static const char *colours[] = {"red", "blue", "black", "white"};

typedef struct {
    kp_texts items, keys;
    kp_judgments j;
    unsigned char *role;
} synth;

static void synth_build(synth *s, int n_items)
{
    char **iid = malloc((size_t)n_items * sizeof(char *)), **itx = malloc((size_t)n_items * 8);
    int nt = 8, nc = 4, nk = nt + nt * nc;
    char **kid = malloc((size_t)nk * sizeof(char *)), **ktx = malloc((size_t)nk * sizeof(char *));
    for (int i = 0; i < nk; i++) {
        kid[i] = malloc(16), ktx[i] = malloc(32);
        snprintf(kid[i], 16, "k%d", i);
        if (i < nt)
            snprintf(ktx[i], 32, "%s", things[i]);
        else
            snprintf(ktx[i], 32, "%s %s", colours[(i - nt) % nc], things[(i - nt) / nc]);
    }
    kp_rng r = th_rng(77);
    int *it = malloc((size_t)n_items * 3 * sizeof(int)), *ky = malloc((size_t)n_items * 3 * 4);
    float *rel = malloc((size_t)n_items * 3 * sizeof(float));
    for (int i = 0; i < n_items; i++) {
        int t = (int)kp_rng_below(&r, nt), c = (int)kp_rng_below(&r, nc);
        int o = (t + 1 + (int)kp_rng_below(&r, nt - 1)) % nt;
        iid[i] = malloc(16), itx[i] = malloc(64);
        snprintf(iid[i], 16, "i%d", i);
        snprintf(itx[i], 64, "%s %s %d", colours[c], things[t], i);
        it[3 * i] = it[3 * i + 1] = it[3 * i + 2] = i;
        ky[3 * i] = t, rel[3 * i] = 3.0f;
        ky[3 * i + 1] = nt + t * nc + c, rel[3 * i + 1] = 3.0f;
        ky[3 * i + 2] = o, rel[3 * i + 2] = 1.0f;
    }
    char err[256];
    assert_int_equal(kp_texts_build((const char *const *)iid, (const char *const *)itx, n_items,
                                    &s->items, err, sizeof(err)),
                     0);
    assert_int_equal(
        kp_texts_build((const char *const *)kid, (const char *const *)ktx, nk, &s->keys, err, 256),
        0);
    s->j.n = 3 * n_items, s->j.item = it, s->j.key = ky, s->j.rel = rel;
    s->role = malloc((size_t)n_items);
    for (int i = 0; i < n_items; i++) {
        s->role[i] = kp_split_is_valid(iid[i], 0.25, 3) ? 2 : 1;
        free(iid[i]), free(itx[i]);
    }
    for (int i = 0; i < nk; i++)
        free(kid[i]), free(ktx[i]);
    free(iid), free(itx), free(kid), free(ktx);
}

static void synth_free(synth *s)
{
    kp_texts_free(&s->items);
    kp_texts_free(&s->keys);
    free(s->j.item), free(s->j.key), free(s->j.rel), free(s->role);
}

static kp_ce_epoch_stats g_first;
static int g_epochs_seen;

static double g_rho[64];
static int g_best_flag[64];

static void record_epoch(void *ctx, const kp_ce_epoch_stats *s)
{
    (void)ctx;
    if (g_epochs_seen == 0) g_first = *s;
    if (g_epochs_seen < 64)
        g_rho[g_epochs_seen] = s->spearman, g_best_flag[g_epochs_seen] = s->best;
    g_epochs_seen++;
}

/* The default options but epochs, batch 32, 2 threads, seed; every epoch goes to record_epoch. */
static kp_ce_train_opts fast_opts(int epochs, uint64_t seed)
{
    kp_ce_train_opts o;
    kp_ce_train_opts_default(&o);
    o.epochs = epochs, o.batch = 32, o.threads = 2, o.seed = seed;
    o.on_epoch = record_epoch;
    return o;
}

/* keep_best: the model ends with the parameters of the epoch of the best validation Spearman
 * (re-scoring it gives that Spearman back); neg_weight changes the run; both deterministic. */
static void test_keep_best_neg_weight(void **state)
{
    (void)state;
    synth s;
    synth_build(&s, 200);
    kp_ce_train_opts o = fast_opts(5, 9);
    o.keep_best = 1, o.neg_weight = 0.3f;
    o.lr = 2e-2f, o.lr_emb = 5e-2f; /* noisy on purpose: the last epoch need not be the best */
    kp_ce_config c = {4096, 8, 16, 256, 1};
    kp_ce *m = kp_ce_new(&c, 9), *m2 = kp_ce_new(&c, 9), *m3 = kp_ce_new(&c, 9);
    kp_ce_epoch_stats last;
    char err[256];
    g_epochs_seen = 0;
    assert_int_equal(kp_ce_train(m, &s.items, &s.keys, &s.j, s.role, &o, &last, err, 256), 0);
    assert_int_equal(g_epochs_seen, 5);
    int best = 0;
    for (int e = 1; e < 5; e++)
        if (g_rho[e] > g_rho[best]) best = e;
    assert_int_equal(last.best_epoch, best + 1);
    assert_true(g_best_flag[0] && g_best_flag[best]);
    /* one more epoch at lr ~0 from the kept parameters: its validation is the kept one's */
    kp_ce_train_opts o1 = o;
    o1.epochs = 1, o1.lr = 1e-7f, o1.lr_emb = 1e-7f, o1.keep_best = 0;
    g_epochs_seen = 0;
    assert_int_equal(kp_ce_train(m, &s.items, &s.keys, &s.j, s.role, &o1, &last, err, 256), 0);
    assert_true(fabs(last.spearman - g_rho[best]) < 2e-3);
    /* deterministic with keep_best and neg_weight */
    o.on_epoch = NULL;
    assert_int_equal(kp_ce_train(m2, &s.items, &s.keys, &s.j, s.role, &o, NULL, err, 256), 0);
    assert_int_equal(kp_ce_train(m3, &s.items, &s.keys, &s.j, s.role, &o, NULL, err, 256), 0);
    assert_memory_equal(kp_ce_dense(m2), kp_ce_dense(m3), kp_ce_dense_size(m2) * sizeof(float));
    assert_memory_equal(kp_ce_emb(m2), kp_ce_emb(m3), (size_t)c.n_buckets * c.emb_dim * 4);
    o.neg_weight = -1.0f;
    assert_int_equal(kp_ce_train(m3, &s.items, &s.keys, &s.j, s.role, &o, NULL, err, 256), -1);
    kp_ce_free(m);
    kp_ce_free(m2);
    kp_ce_free(m3);
    synth_free(&s);
}

static void test_train_synthetic(void **state)
{
    (void)state;
    synth s;
    synth_build(&s, 300);
    kp_ce_train_opts o = fast_opts(8, 5);
    kp_ce_epoch_stats last;
    char err[256];
    kp_ce_config c = {4096, 8, 16, 256, 1};
    kp_ce *m = kp_ce_new(&c, 5), *m2 = kp_ce_new(&c, 5);
    g_epochs_seen = 0;
    assert_int_equal(kp_ce_train(m, &s.items, &s.keys, &s.j, s.role, &o, &last, err, 256), 0);
    assert_int_equal(g_epochs_seen, 8);
    assert_true(last.n_valid > 0);
    assert_true(last.loss < g_first.loss);
    assert_true(last.auc > 0.95);     /* relevant vs irrelevant judged pairs of held-out items */
    assert_true(last.auc_rand > 0.9); /* relevant vs random keyphrases */
    assert_true(last.spearman > 0.7);
    assert_true(kp_ce_version(m) > 0);
    /* deterministic: same seed, data and threads -> identical weights */
    o.on_epoch = NULL;
    assert_int_equal(kp_ce_train(m2, &s.items, &s.keys, &s.j, s.role, &o, NULL, err, 256), 0);
    assert_memory_equal(kp_ce_dense(m), kp_ce_dense(m2), kp_ce_dense_size(m) * sizeof(float));
    assert_memory_equal(kp_ce_emb(m), kp_ce_emb(m2), (size_t)c.n_buckets * c.emb_dim * 4);
    /* the trained model ranks by relevance through the public scoring API */
    const char *ti[] = {"white ladder 9001", "white ladder 9001"};
    const char *tk[] = {"ladder", "faucet"};
    float sc[2];
    assert_int_equal(kp_ce_score(m, ti, tk, 2, sc), 0);
    assert_true(sc[0] > sc[1] + 0.3f);
    /* bad arguments */
    o.threads = 0;
    assert_int_equal(kp_ce_train(m, &s.items, &s.keys, &s.j, s.role, &o, NULL, err, 256), -1);
    assert_non_null(strstr(err, "threads"));
    o.threads = 1;
    memset(s.role, 2, (size_t)s.items.n);
    assert_int_equal(kp_ce_train(m, &s.items, &s.keys, &s.j, s.role, &o, NULL, err, 256), -1);
    assert_non_null(strstr(err, "no judged pair"));
    kp_ce_free(m);
    kp_ce_free(m2);
    synth_free(&s);
}

TH_MAIN(cmocka_unit_test(test_train_synthetic), cmocka_unit_test(test_keep_best_neg_weight))

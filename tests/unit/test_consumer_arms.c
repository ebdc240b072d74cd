/* test_consumer_arms.c -- the A/B split of consumer/arms.h: the arm of an item is a function of its
 * item_id alone with the configured share, and a split batch gives each item exactly what its
 * arm's model gives it alone (the reference: kp_rec_suggest of that model, one item at a time). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "consumer/arms.h"
#include "consumer/assets.h"
#include "consumer/follow.h"
#include "model/ckpt.h"
#include "th_main.h"

static void test_pick_is_a_function_of_the_id_and_the_share(void **state)
{
    (void)state;
    char id[32];
    int n = 20000, cand30 = 0;
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "item-%d", i);
        assert_int_equal(kp_arms_pick(id, 0), KP_ARM_LIVE);
        assert_int_equal(kp_arms_pick(id, 100), KP_ARM_CANDIDATE);
        int a = kp_arms_pick(id, 30);
        assert_int_equal(a, kp_arms_pick(id, 30)); /* deterministic */
        /* monotone in the share: a candidate at 30% stays one at 60% */
        if (a == KP_ARM_CANDIDATE) assert_int_equal(kp_arms_pick(id, 60), KP_ARM_CANDIDATE);
        cand30 += a == KP_ARM_CANDIDATE;
    }
    assert_in_range(cand30, n * 27 / 100, n * 33 / 100);
    assert_int_equal(kp_arms_pick(NULL, 50), KP_ARM_LIVE);
    assert_string_equal(kp_arms_name(NULL, KP_ARM_CANDIDATE), "");
}

/* A seeded bi-encoder saved to path. */
static void save_model(const char *path, uint64_t seed)
{
    char err[512];
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    bc.n_buckets = 1u << 12;
    kp_bienc *m = kp_bienc_new(&bc, seed);
    assert_non_null(m);
    kp_bienc_set_version(m, seed);
    assert_int_equal(kp_bienc_save(m, path, err, sizeof err), 0);
    kp_bienc_free(m);
}

static void test_split_batch_equals_each_arm_alone(void **state)
{
    (void)state;
    char dir[] = "/tmp/kprec-arms.XXXXXX", inv[256], a_path[256], b_path[256], err[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(inv, sizeof inv, "%s/kp.tsv", dir);
    snprintf(a_path, sizeof a_path, "%s/a.kpm", dir);
    snprintf(b_path, sizeof b_path, "%s/b.kpm", dir);
    const char *words[] = {"steel", "kitchen", "sink",  "red",  "running", "shoes", "lamp",
                           "desk",  "oak",     "chair", "blue", "cotton",  "shirt", "led"};
    int nw = (int)(sizeof words / sizeof words[0]);
    FILE *f = fopen(inv, "w");
    assert_non_null(f);
    fprintf(f, "keyphrase_id\tkeyphrase\n");
    for (int i = 0; i < nw; i++)
        for (int j = 0; j < nw; j++)
            if (i != j) fprintf(f, "k%d_%d\t%s %s\n", i, j, words[i], words[j]);
    fclose(f);
    save_model(a_path, 7);
    save_model(b_path, 8);

    kp_config c;
    kp_config_defaults(&c);
    c.top_k = 5;
    snprintf(c.model_keyphrases, sizeof c.model_keyphrases, "%s", inv);
    snprintf(c.model_ab_candidate, sizeof c.model_ab_candidate, "%s", b_path);
    c.model_ab_weight = 50;
    kp_bienc *ma = kp_bienc_load(a_path, err, sizeof err),
             *mb = kp_bienc_load(b_path, err, sizeof err);
    assert_non_null(ma);
    assert_non_null(mb);
    kp_recommender *live = kp_follower_build(&c, ma, err, sizeof err);
    kp_recommender *cand = kp_follower_build(&c, mb, err, sizeof err);
    assert_non_null(live);
    assert_non_null(cand);
    kp_arms *arms = kp_arms_new(&c, err, sizeof err);
    assert_non_null(arms);
    assert_string_equal(kp_arms_name(arms, KP_ARM_LIVE), "live");
    assert_string_equal(kp_arms_name(arms, KP_ARM_CANDIDATE), "candidate");

    enum { N = 40, K = 5 };
    char ids[N][16], titles[N][64];
    const char *idp[N], *tp[N];
    size_t lens[N];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "it-%d", i);
        snprintf(titles[i], sizeof titles[i], "%s %s %s", words[i % nw], words[(i * 5 + 3) % nw],
                 words[(i * 7 + 1) % nw]);
        idp[i] = ids[i], tp[i] = titles[i], lens[i] = strlen(titles[i]);
    }
    kp_rec_suggestion out[N * K], one[K];
    int counts[N], arm_of[N], n1, ncand = 0;
    assert_int_equal(kp_arms_suggest(arms, live, idp, tp, lens, N, K, -1.0f, out, counts, arm_of),
                     0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(arm_of[i], kp_arms_pick(ids[i], 50));
        ncand += arm_of[i] == KP_ARM_CANDIDATE;
        kp_recommender *r = arm_of[i] == KP_ARM_CANDIDATE ? cand : live;
        assert_int_equal(kp_rec_suggest(r, &tp[i], &lens[i], 1, K, -1.0f, one, &n1), 0);
        assert_int_equal(counts[i], n1);
        for (int j = 0; j < n1; j++) {
            assert_string_equal(out[i * K + j].keyphrase_id, one[j].keyphrase_id);
            assert_true(fabsf(out[i * K + j].score - one[j].score) < 1e-5f);
        }
    }
    assert_in_range(ncand, 1, N - 1); /* both arms scored something */
    /* the two models disagree somewhere, so the test can tell the arms apart */
    int differ = 0;
    for (int i = 0; i < N; i++) {
        kp_rec_suggestion x[K], y[K];
        int nx, ny;
        assert_int_equal(kp_rec_suggest(live, &tp[i], &lens[i], 1, K, -1.0f, x, &nx), 0);
        assert_int_equal(kp_rec_suggest(cand, &tp[i], &lens[i], 1, K, -1.0f, y, &ny), 0);
        differ += nx != ny || strcmp(x[0].keyphrase_id, y[0].keyphrase_id) ||
                  fabsf(x[0].score - y[0].score) > 1e-5f;
    }
    assert_true(differ > 0);

    /* without a split: the live model for every item */
    c.model_ab_weight = 0;
    assert_null(kp_arms_new(&c, err, sizeof err));
    assert_string_equal(err, "");
    assert_int_equal(kp_arms_suggest(NULL, live, idp, tp, lens, N, K, -1.0f, out, counts, arm_of),
                     0);
    for (int i = 0; i < N; i++)
        assert_int_equal(arm_of[i], KP_ARM_LIVE);
    /* a candidate that cannot be loaded is a configuration error */
    c.model_ab_weight = 10;
    snprintf(c.model_ab_candidate, sizeof c.model_ab_candidate, "%s/missing.kpm", dir);
    assert_null(kp_arms_new(&c, err, sizeof err));
    assert_non_null(strstr(err, "ab_candidate"));

    kp_arms_free(arms);
    kp_arms_free(NULL);
    kp_rec_free(live);
    kp_rec_free(cand);
    kp_bienc_free(ma);
    kp_bienc_free(mb);
    kp_assets_shutdown();
    kp_config_free(&c);
    unlink(inv), unlink(a_path), unlink(b_path);
    rmdir(dir);
}

TH_MAIN(cmocka_unit_test(test_pick_is_a_function_of_the_id_and_the_share),
        cmocka_unit_test(test_split_batch_equals_each_arm_alone))

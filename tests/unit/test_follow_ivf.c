/* The worker's recommender build (kp_follower_build) honours [model] ivf_nprobe / ivf_nlist:
 * 0 = exact; nprobe >= nlist = the exact results through the IVF's list-ordered rows (scores the
 * same to rounding); a small nprobe = an approximate search (some result differs from exact on this
 * inventory); and
 * ivf_first_pass / ivf_rescore: int8 and bf16 first passes agree with the fp32 IVF at the same
 * probes on nearly every result; a value outside fp32|int8|bf16 is refused. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/config.h"
#include "consumer/follow.h"
#include "model/bienc.h"
#include "model/recommender.h"
#include "testhelp.h"

#define NK 1500
#define NQ 40
#define K  10

static const char *words[] = {"drill",  "cordless", "hammer", "paint",  "white", "gloss",
                              "pipe",   "copper",   "valve",  "brass",  "lamp",  "led",
                              "bulb",   "outdoor",  "wood",   "screw",  "steel", "door",
                              "hinge",  "tile",     "floor",  "vanity", "sink",  "faucet",
                              "chrome", "garden",   "hose",   "shed"};
#define NW (int)(sizeof(words) / sizeof(*words))

/* Runs the follower's build with the given ivf keys and recommends for the titles. */
static void recommend_sc(const char *tsv, const kp_bienc *m, const char *nprobe, const char *nlist,
                         const char *first, const char *const *titles, int *ids, float *scores)
{
    kp_config c;
    char err[256];
    int counts[NQ];
    kp_config_defaults(&c);
    snprintf(c.model_keyphrases, sizeof(c.model_keyphrases), "%s", tsv);
    assert_int_equal(kp_config_set(&c, "model", "ivf_nprobe", nprobe, err, sizeof(err)), 0);
    assert_int_equal(kp_config_set(&c, "model", "ivf_nlist", nlist, err, sizeof(err)), 0);
    assert_int_equal(kp_config_set(&c, "model", "ivf_first_pass", first, err, sizeof(err)), 0);
    assert_int_equal(kp_config_set(&c, "model", "ivf_first_pass", "int4", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "fp32|int8|bf16"));
    assert_int_equal(kp_config_set(&c, "model", "ivf_rescore", "0", err, sizeof(err)), -1);
    kp_recommender *r = kp_follower_build(&c, m, err, sizeof(err));
    assert_non_null(r);
    assert_int_equal(kp_rec_recommend(r, titles, NULL, NQ, K, -1.0f, ids, scores, counts), 0);
    kp_rec_free(r);
    kp_config_free(&c);
}

static void recommend(const char *tsv, const kp_bienc *m, const char *nprobe, const char *nlist,
                      const char *first, const char *const *titles, int *ids)
{
    float scores[NQ * K];
    recommend_sc(tsv, m, nprobe, nlist, first, titles, ids, scores);
}

static void test_follower_ivf(void **state)
{
    (void)state;
    char tsv[256];
    th_tmp_path(tsv, sizeof(tsv), "follow_ivf", "keys.tsv");
    FILE *f = fopen(tsv, "w");
    assert_non_null(f);
    kp_rng r = th_rng(21);
    fprintf(f, "keyphrase_id\tkeyphrase\n");
    for (int i = 0; i < NK; i++)
        fprintf(f, "k%d\t%s %s %s\n", i, words[kp_rng_below(&r, NW)], words[kp_rng_below(&r, NW)],
                words[kp_rng_below(&r, NW)]);
    assert_int_equal(fclose(f), 0);
    static char tbuf[NQ][64];
    const char *titles[NQ];
    for (int i = 0; i < NQ; i++) {
        snprintf(tbuf[i], sizeof(tbuf[i]), "%s %s %s %s", words[kp_rng_below(&r, NW)],
                 words[kp_rng_below(&r, NW)], words[kp_rng_below(&r, NW)],
                 words[kp_rng_below(&r, NW)]);
        titles[i] = tbuf[i];
    }
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    bc.n_buckets = 1u << 12;
    kp_bienc *m = kp_bienc_new(&bc, 3);
    assert_non_null(m);
    int exact[NQ * K], all[NQ * K], few[NQ * K], same_id = 0;
    float se[NQ * K], sa[NQ * K];
    recommend_sc(tsv, m, "0", "0", "fp32", titles, exact, se);
    recommend_sc(tsv, m, "16", "16", "fp32", titles, all, sa);
    recommend(tsv, m, "1", "16", "fp32", titles, few);
    /* the IVF's GEMMs over list-ordered rows may round a score differently in its last bits (a
     * BLAS's kernels can differ by a row's place in a call): the same score at every rank, so
     * where the ids differ the two are tied to rounding (keyphrases of the same words, of which
     * the de-dup keeps one), and nearly every id the same */
    for (int i = 0; i < NQ * K; i++) {
        assert_true(fabsf(se[i] - sa[i]) <= 1e-6f);
        same_id += exact[i] == all[i];
    }
    assert_true(same_id >= 0.95 * NQ * K);
    assert_true(memcmp(exact, few, sizeof(exact)) != 0);
    const char *kinds[] = {"int8", "bf16"};
    for (int ki = 0; ki < 2; ki++) {
        int quant[NQ * K], same = 0;
        recommend(tsv, m, "4", "16", kinds[ki], titles, quant);
        recommend(tsv, m, "4", "16", "fp32", titles, few);
        for (int i = 0; i < NQ * K; i++)
            for (int j = (i / K) * K; j < (i / K + 1) * K; j++)
                same += quant[i] == few[j];
        assert_true(same >= 0.95 * NQ * K);
    }
    kp_bienc_free(m);
    remove(tsv);
}

TH_MAIN(cmocka_unit_test(test_follower_ivf))

/* Unit tests for model/eval: hand-computed recall / Spearman / Pearson / AUC on hand-set
 * embeddings, the Matryoshka prefix, BM25, a pair scorer, the bi-encoder path against the
 * embeddings path, and bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/bienc.h"
#include "model/bm25.h"
#include "offline/eval.h"
#include "offline/datasets.h"
#include "th_main.h"

#define assert_close(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

/* The hand case: 3 items (item 2 has no judgment), 4 keyphrases, dim 2.
 *   items: i0 = (1, 0), i1 = (0, 1), i2 = (1, 0)
 *   keys:  k0 = (1, 0), k1 = (0.6, 0.8), k2 = (0, 1), k3 = (-0.8, 0.6)
 *   ranking of i0: k0 (1), k1 (0.6), k2 (0), k3 (-0.8);  i1: k2 (1), k1 (0.8), k3 (0.6), k0 (0)
 * Judgments (relevant >= 2.5, irrelevant < 2):
 *   p0 (i0,k0) 3.0 rel   p1 (i0,k2) 2.7 rel   p2 (i0,k3) 1.0 irr
 *   p3 (i1,k3) 2.5 rel   p4 (i1,k1) 2.2 --    p5 (i1,k0) 1.5 irr
 * pair scores: 1, 0, -0.8, 0.6, 0.8, 0 */
static const float ITEMS2[3 * 2] = {1, 0, 0, 1, 1, 0};
static const float KEYS2[4 * 2] = {1, 0, 0.6f, 0.8f, 0, 1, -0.8f, 0.6f};
static int J_ITEM[6] = {0, 0, 0, 1, 1, 1};
static int J_KEY[6] = {0, 2, 3, 3, 1, 0};
static float J_REL[6] = {3.0f, 2.7f, 1.0f, 2.5f, 2.2f, 1.5f};

static kp_judgments hand_judgments(void)
{
    kp_judgments j = {6, J_ITEM, J_KEY, J_REL};
    return j;
}

static kp_eval_config hand_config(void)
{
    kp_eval_config c;
    kp_eval_config_default(&c);
    c.n_k = 3;
    c.k[0] = 1;
    c.k[1] = 2;
    c.k[2] = 3;
    return c;
}

/* The expected values, computed by hand (see the comment above). */
static void assert_hand_result(const kp_eval_result *r)
{
    assert_int_equal(r->n_items, 2);
    assert_int_equal(r->n_recall_items, 2);
    assert_int_equal(r->n_pairs, 6);
    assert_int_equal(r->n_pos, 3);
    assert_int_equal(r->n_neg, 2);
    assert_int_equal(r->n_k, 3);
    /* @1: i0 {k0} has 1 of {k0,k2}, i1 {k2} has 0 of {k3} -> (1/2 + 0) / 2 */
    assert_close(r->recall[0], 0.25, 1e-12);
    /* @2: i0 {k0,k1} -> 1/2, i1 {k2,k1} -> 0 */
    assert_close(r->recall[1], 0.25, 1e-12);
    /* @3: i0 {k0,k1,k2} -> 1, i1 {k2,k1,k3} -> 1 */
    assert_close(r->recall[2], 1.0, 1e-12);
    /* AUC: positives 1, 0, 0.6 vs negatives -0.8, 0: 5 wins + 1 tie (0 vs 0) of 6 */
    assert_close(r->auc, 5.5 / 6.0, 1e-9);
    /* Spearman: score ranks 6, 2.5, 1, 4, 5, 2.5; relevance ranks 6, 5, 1, 4, 3, 2;
     * centred products sum 12, squares 17 and 17.5 */
    assert_close(r->spearman, 12.0 / sqrt(17.0 * 17.5), 1e-6);
    /* Pearson: sum xy = 5.46, sum x = 1.6, sum y = 12.9, sum x^2 = 2.64, sum y^2 = 30.63 */
    double sxy = 5.46 - 1.6 * 12.9 / 6, sxx = 2.64 - 1.6 * 1.6 / 6, syy = 30.63 - 12.9 * 12.9 / 6;
    assert_close(r->pearson, sxy / sqrt(sxx * syy), 1e-5);
}

static void test_hand_embeddings(void **state)
{
    (void)state;
    kp_judgments j = hand_judgments();
    kp_eval_config c = hand_config();
    kp_eval_result r;
    char err[256] = "";
    assert_int_equal(kp_eval_embeddings(ITEMS2, 3, KEYS2, 4, 2, &j, &c, &r, err, sizeof err), 0);
    assert_hand_result(&r);

    /* thresholds move pairs between the classes: relevant >= 2.2 adds p4 to the positives and to
     * i1's relevant set {k3, k1}: recall@2 of i1 = 1/2 */
    c.relevant = 2.2f;
    assert_int_equal(kp_eval_embeddings(ITEMS2, 3, KEYS2, 4, 2, &j, &c, &r, err, sizeof err), 0);
    assert_int_equal(r.n_pos, 4);
    assert_close(r.recall[1], (0.5 + 0.5) / 2, 1e-12);
    assert_close(r.auc, 7.5 / 8.0, 1e-9); /* p4 (0.8) beats both negatives */
}

/* The same case lifted to dim 3: rows (0.6 v, +-0.8). The 2-dim prefix, re-normalised, is v. */
static void test_prefix(void **state)
{
    (void)state;
    float items3[3 * 3], keys3[4 * 3];
    for (int i = 0; i < 3; i++) {
        items3[i * 3 + 0] = 0.6f * ITEMS2[i * 2 + 0];
        items3[i * 3 + 1] = 0.6f * ITEMS2[i * 2 + 1];
        items3[i * 3 + 2] = 0.8f;
    }
    for (int k = 0; k < 4; k++) {
        keys3[k * 3 + 0] = 0.6f * KEYS2[k * 2 + 0];
        keys3[k * 3 + 1] = 0.6f * KEYS2[k * 2 + 1];
        keys3[k * 3 + 2] = (k % 2) ? 0.8f : -0.8f;
    }
    kp_judgments j = hand_judgments();
    kp_eval_config c = hand_config();
    kp_eval_result r, full;
    char err[256] = "";
    c.prefix = 2;
    assert_int_equal(kp_eval_embeddings(items3, 3, keys3, 4, 3, &j, &c, &r, err, sizeof err), 0);
    assert_hand_result(&r);
    /* at full size the third dim dominates: i0 ranks k1 (.856), k3 (.352), k0, k2 and i1 ranks
     * k1 (.928), k3 (.856), k2, k0: recall@1 = 0, recall@2 = (0 + 1) / 2 */
    c.prefix = 0;
    assert_int_equal(kp_eval_embeddings(items3, 3, keys3, 4, 3, &j, &c, &full, err, sizeof err), 0);
    assert_close(full.recall[0], 0.0, 1e-12);
    assert_close(full.recall[1], 0.5, 1e-12);
    c.prefix = 4;
    assert_int_equal(kp_eval_embeddings(items3, 3, keys3, 4, 3, &j, &c, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "prefix"));
}

static void test_bm25(void **state)
{
    (void)state;
    const char *kid[] = {"k0", "k1", "k2"}, *ktx[] = {"red shoes", "blue hat", "red hat"};
    const char *iid[] = {"i0", "i1"}, *itx[] = {"red shoes for men", "blue hat"};
    kp_texts keys, items;
    char err[256] = "";
    assert_int_equal(kp_texts_build(kid, ktx, 3, &keys, err, sizeof err), 0);
    assert_int_equal(kp_texts_build(iid, itx, 2, &items, err, sizeof err), 0);
    kp_bm25 *bm =
        kp_bm25_build((const char *const *)keys.text, 3, KP_BM25_K1, KP_BM25_B, err, sizeof err);
    assert_non_null(bm);
    /* (i0,k0) 3 rel, (i0,k1) 1 irr [score 0], (i1,k1) 3 rel, (i1,k2) 1.5 irr [shares "hat"] */
    int it[] = {0, 0, 1, 1}, ky[] = {0, 1, 1, 2};
    float rel[] = {3, 1, 3, 1.5f};
    kp_judgments j = {4, it, ky, rel};
    kp_eval_config c;
    kp_eval_config_default(&c);
    c.n_k = 2;
    c.k[0] = 1;
    c.k[1] = 3; /* i0 matches only 2 documents: the rest of its list is padding */
    kp_eval_result r;
    assert_int_equal(kp_eval_bm25(bm, &items, &keys, &j, &c, &r, err, sizeof err), 0);
    assert_close(r.recall[0], 1.0, 1e-12); /* each item's top document is its relevant one */
    assert_close(r.recall[1], 1.0, 1e-12);
    /* positives: (i0,k0) = idf(red)w + idf(shoes)w and (i1,k1) = (idf(blue) + idf(hat))w beat
     * negatives 0 and (i1,k2) = idf(hat)w (all documents have 2 tokens: same w) */
    assert_close(r.auc, 1.0, 1e-12);
    assert_int_equal(r.n_pos, 2);
    assert_int_equal(r.n_neg, 2);
    /* pair scores are kp_bm25_score: pearson from them by hand */
    float s[4];
    for (int p = 0; p < 4; p++)
        s[p] = kp_bm25_score(bm, itx[it[p]], ky[p]);
    assert_true(s[1] == 0.0f && s[3] > 0.0f && s[3] < s[2]);
    double mx = (s[0] + s[1] + s[2] + s[3]) / 4.0, my = (3 + 1 + 3 + 1.5) / 4.0;
    double sxy = 0, sxx = 0, syy = 0;
    for (int p = 0; p < 4; p++) {
        sxy += (s[p] - mx) * (rel[p] - my);
        sxx += (s[p] - mx) * (s[p] - mx);
        syy += (rel[p] - my) * (rel[p] - my);
    }
    assert_close(r.pearson, sxy / sqrt(sxx * syy), 1e-6);
    /* threads give the same result */
    kp_eval_result r2;
    c.threads = 3;
    assert_int_equal(kp_eval_bm25(bm, &items, &keys, &j, &c, &r2, err, sizeof err), 0);
    assert_memory_equal(&r, &r2, sizeof r);
    /* prefix is meaningless for BM25 */
    c.prefix = 2;
    assert_int_equal(kp_eval_bm25(bm, &items, &keys, &j, &c, &r2, err, sizeof err), -1);
    kp_bm25_free(bm);
    kp_texts_free(&keys);
    kp_texts_free(&items);
}

/* A pair scorer: the keyphrase's length (thread-safe, deterministic). */
static int len_scorer(void *ctx, const char *const *items, const char *const *keys, int n,
                      float *out)
{
    (void)ctx;
    (void)items;
    for (int i = 0; i < n; i++)
        out[i] = (float)strlen(keys[i]);
    return 0;
}

static int failing_scorer(void *ctx, const char *const *items, const char *const *keys, int n,
                          float *out)
{
    (void)ctx, (void)items, (void)keys, (void)n, (void)out;
    return -1;
}

static void test_pair_scorer(void **state)
{
    (void)state;
    const char *kid[] = {"k0", "k1", "k2", "k3"}, *ktx[] = {"a", "bbbbbbb", "ccc", "dd"};
    const char *iid[] = {"i0", "i1", "i2"}, *itx[] = {"x", "y", "z"};
    kp_texts keys, items;
    char err[256] = "";
    assert_int_equal(kp_texts_build(kid, ktx, 4, &keys, err, sizeof err), 0);
    assert_int_equal(kp_texts_build(iid, itx, 3, &items, err, sizeof err), 0);
    kp_judgments j = hand_judgments();
    kp_eval_config c = hand_config();
    c.threads = 2;
    kp_eval_result r, ref;
    assert_int_equal(
        kp_eval_pair_scorer(len_scorer, NULL, &items, &keys, &j, &c, &r, err, sizeof err), 0);
    /* scores = key lengths: 1, 3, 2, 2, 7, 1 */
    float s[6] = {1, 3, 2, 2, 7, 1};
    assert_int_equal(kp_eval_pairs(s, 3, &j, &c, &ref, err, sizeof err), 0);
    assert_memory_equal(&r, &ref, offsetof(kp_eval_result, recall));
    assert_true(isnan(r.recall[0]) && isnan(r.recall[1]) && isnan(r.recall[2]));
    assert_int_equal(r.n_recall_items, 0);
    assert_int_equal(r.n_items, 2);
    /* AUC: positives 1, 3, 2 vs negatives 2, 1: (1 vs 2) 0, (1 vs 1) .5, (3 vs *) 2,
     * (2 vs 2) .5, (2 vs 1) 1 -> 4 / 6 */
    assert_close(r.auc, 4.0 / 6.0, 1e-12);
    assert_close(r.spearman, ref.spearman, 0);
    assert_int_equal(
        kp_eval_pair_scorer(failing_scorer, NULL, &items, &keys, &j, &c, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "scorer"));
    kp_texts_free(&keys);
    kp_texts_free(&items);
}

/* kp_eval_bienc = kp_eval_embeddings over the model's own embeddings, for any thread count. */
static void test_bienc_matches_embeddings(void **state)
{
    (void)state;
    enum { NI = 300, NK = 500 };
    static char ibuf[NI][32], kbuf[NK][32], iid[NI][12], kid[NK][12];
    const char *ip[NI], *kp[NK], *iidp[NI], *kidp[NK];
    const char *words[] = {"red", "blue", "drill", "saw", "hammer", "cordless", "oak", "pine"};
    for (int i = 0; i < NI; i++) {
        snprintf(ibuf[i], sizeof ibuf[i], "%s %s %s", words[i % 8], words[(i / 8) % 8],
                 words[(i * 7 + 3) % 8]);
        snprintf(iid[i], sizeof iid[i], "i%d", i);
        ip[i] = ibuf[i];
        iidp[i] = iid[i];
    }
    for (int k = 0; k < NK; k++) {
        snprintf(kbuf[k], sizeof kbuf[k], "%s %s %d", words[k % 8], words[(k / 3) % 8], k % 17);
        snprintf(kid[k], sizeof kid[k], "k%d", k);
        kp[k] = kbuf[k];
        kidp[k] = kid[k];
    }
    kp_texts items, keys;
    char err[256] = "";
    assert_int_equal(kp_texts_build(iidp, ip, NI, &items, err, sizeof err), 0);
    assert_int_equal(kp_texts_build(kidp, kp, NK, &keys, err, sizeof err), 0);
    enum { NJ = 900 };
    int *ji = malloc(sizeof(int) * NJ), *jk = malloc(sizeof(int) * NJ);
    float *jr = malloc(sizeof(float) * NJ);
    for (int p = 0; p < NJ; p++) { /* items 0..NI-2 (the last one is unjudged) */
        ji[p] = (p * 37) % (NI - 1);
        jk[p] = (p * 101 + 7) % NK;
        jr[p] = 1.0f + (float)((p * 13) % 9) / 4.0f;
    }
    kp_judgments j = {NJ, ji, jk, jr};
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    bc.n_buckets = 1u << 12;
    bc.emb_dim = 16;
    bc.hidden_dim = 16;
    bc.out_dim = 16;
    bc.n_prefix = 2;
    bc.prefix[0] = 8;
    bc.prefix[1] = 16;
    kp_bienc *m = kp_bienc_new(&bc, 7);
    assert_non_null(m);
    float *ie = malloc(sizeof(float) * NI * 16), *ke = malloc(sizeof(float) * NK * 16);
    assert_int_equal(kp_bienc_embed(m, KP_TOWER_ITEM, ip, NULL, NI, ie), 0);
    assert_int_equal(kp_bienc_embed(m, KP_TOWER_KEY, kp, NULL, NK, ke), 0);
    kp_eval_config c;
    kp_eval_config_default(&c);
    for (int prefix = 0; prefix <= 8; prefix += 8) {
        c.prefix = prefix;
        kp_eval_result want, got;
        assert_int_equal(kp_eval_embeddings(ie, NI, ke, NK, 16, &j, &c, &want, err, sizeof err), 0);
        assert_int_equal(want.n_items, NI - 1);
        assert_true(want.recall[0] <= want.recall[1] && want.recall[1] <= want.recall[2]);
        assert_true(want.recall[2] > 0.0 && want.recall[2] < 1.0);
        for (int threads = 1; threads <= 3; threads++) {
            c.threads = threads;
            assert_int_equal(kp_eval_bienc(m, &items, &keys, &j, &c, &got, err, sizeof err), 0);
            assert_int_equal(got.n_items, want.n_items);
            assert_int_equal(got.n_recall_items, want.n_recall_items);
            for (int i = 0; i < 3; i++)
                assert_close(got.recall[i], want.recall[i], 1e-12);
            assert_close(got.spearman, want.spearman, 1e-6);
            assert_close(got.pearson, want.pearson, 1e-6);
            assert_close(got.auc, want.auc, 1e-6);
        }
    }
    /* the Matryoshka sweep (embeds once) = kp_eval_embeddings at each prefix; pair_scores gets
     * the scores at the first size (the dot products of the full embeddings) */
    const int sizes[3] = {0, 8, 16};
    kp_eval_result sweep[3];
    float *ps = malloc(sizeof(float) * NJ);
    c.threads = 2;
    c.pair_scores = ps;
    assert_int_equal(
        kp_eval_bienc_prefixes(m, &items, &keys, &j, &c, sizes, 3, sweep, err, sizeof err), 0);
    c.pair_scores = NULL;
    for (int s = 0; s < 3; s++) {
        kp_eval_result want;
        c.prefix = sizes[s];
        assert_int_equal(kp_eval_embeddings(ie, NI, ke, NK, 16, &j, &c, &want, err, sizeof err), 0);
        for (int i = 0; i < 3; i++)
            assert_close(sweep[s].recall[i], want.recall[i], 1e-12);
        assert_close(sweep[s].spearman, want.spearman, 1e-6);
        assert_close(sweep[s].auc, want.auc, 1e-6);
    }
    for (int p = 0; p < NJ; p++) {
        double d = 0;
        for (int e = 0; e < 16; e++)
            d += (double)ie[ji[p] * 16 + e] * ke[jk[p] * 16 + e];
        assert_close(ps[p], d, 1e-5);
    }
    free(ps);
    kp_bienc_free(m);
    free(ie);
    free(ke);
    free(ji);
    free(jk);
    free(jr);
    kp_texts_free(&items);
    kp_texts_free(&keys);
}

static void test_bad_input(void **state)
{
    (void)state;
    kp_judgments j = hand_judgments();
    kp_eval_config c = hand_config();
    kp_eval_result r;
    char err[256] = "";
    /* a keyphrase index outside the table */
    assert_int_equal(kp_eval_embeddings(ITEMS2, 3, KEYS2, 3, 2, &j, &c, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "outside"));
    /* an item index outside the table */
    assert_int_equal(kp_eval_embeddings(ITEMS2, 1, KEYS2, 4, 2, &j, &c, &r, err, sizeof err), -1);
    /* a NaN relevance */
    float rel[6];
    memcpy(rel, J_REL, sizeof rel);
    rel[3] = NAN;
    kp_judgments jn = {6, J_ITEM, J_KEY, rel};
    assert_int_equal(kp_eval_embeddings(ITEMS2, 3, KEYS2, 4, 2, &jn, &c, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "finite"));
    /* bad configs */
    kp_eval_config b = c;
    b.k[1] = 0;
    assert_int_equal(kp_eval_config_check(&b, err, sizeof err), -1);
    b = c;
    b.irrelevant = 3.0f;
    assert_int_equal(kp_eval_config_check(&b, err, sizeof err), -1);
    b = c;
    b.threads = 0;
    assert_int_equal(kp_eval_embeddings(ITEMS2, 3, KEYS2, 4, 2, &j, &b, &r, err, sizeof err), -1);
    b = c;
    b.n_k = KP_EVAL_MAX_K + 1;
    assert_int_equal(kp_eval_config_check(&b, err, sizeof err), -1);
    assert_int_equal(kp_eval_embeddings(NULL, 3, KEYS2, 4, 2, &j, &c, &r, err, sizeof err), -1);
    /* no judgments at all: defined counts, undefined metrics */
    kp_judgments empty = {0, NULL, NULL, NULL};
    assert_int_equal(kp_eval_embeddings(ITEMS2, 3, KEYS2, 4, 2, &empty, &c, &r, err, sizeof err),
                     0);
    assert_int_equal(r.n_items, 0);
    assert_int_equal(r.n_pairs, 0);
    assert_true(isnan(r.recall[0]) && isnan(r.spearman) && isnan(r.auc));
}

/* The never-shown slice on the hand case. Log A shows k0 only: slice {k1, k2, k3}, pairs p1 (k2,
 * 2.7, score 0), p2 (k3, 1.0, -0.8), p3 (k3, 2.5, 0.6), p4 (k1, 2.2, 0.8); slice-relevant: i0 {k2}
 * (rank 3 of i0), i1 {k3} (rank 3 of i1). Log B shows k0 and k3: slice {k1, k2}, pairs p1, p4;
 * only i0 has a slice-relevant keyphrase. */
static void test_never_shown_slice(void **state)
{
    (void)state;
    kp_judgments j = hand_judgments();
    kp_eval_config c = hand_config();
    kp_eval_result r;
    char err[256] = "";
    unsigned char unseen[4];
    kp_click_event ev_a[2] = {{0, 0, KP_EV_IMPRESSION, 1, 0}, {1, 0, KP_EV_CLICK, 1, 1}};
    kp_clicklog log_a = {2, 2, ev_a};
    assert_int_equal(kp_eval_unseen_keys(&log_a, 4, unseen, err, sizeof err), 0);
    assert_int_equal(unseen[0], 0);
    assert_int_equal(unseen[1] + unseen[2] + unseen[3], 3);
    c.slice_keys = unseen;
    assert_int_equal(kp_eval_embeddings(ITEMS2, 3, KEYS2, 4, 2, &j, &c, &r, err, sizeof err), 0);
    assert_hand_result(&r); /* the whole set is unchanged */
    assert_int_equal(r.has_slice, 1);
    assert_int_equal(r.slice.n_items, 2);
    assert_int_equal(r.slice.n_recall_items, 2);
    assert_int_equal(r.slice.n_pairs, 4);
    assert_int_equal(r.slice.n_pos, 2);
    assert_int_equal(r.slice.n_neg, 1);
    assert_close(r.slice.recall[0], 0.0, 1e-12); /* whole set: 0.25 */
    assert_close(r.slice.recall[1], 0.0, 1e-12); /* whole set: 0.25 */
    assert_close(r.slice.recall[2], 1.0, 1e-12);
    /* score ranks 2, 1, 3, 4 vs grade ranks 4, 1, 3, 2: sum d^2 = 8, 1 - 6 * 8 / 60 */
    assert_close(r.slice.spearman, 0.2, 1e-6);
    assert_close(r.slice.auc, 1.0, 1e-12);

    kp_click_event ev_b[2] = {{0, 0, KP_EV_IMPRESSION, 1, 0}, {1, 3, KP_EV_IMPRESSION, 2, 0}};
    kp_clicklog log_b = {2, 2, ev_b};
    assert_int_equal(kp_eval_unseen_keys(&log_b, 4, unseen, err, sizeof err), 0);
    assert_int_equal(kp_eval_embeddings(ITEMS2, 3, KEYS2, 4, 2, &j, &c, &r, err, sizeof err), 0);
    assert_int_equal(r.slice.n_items, 2);
    assert_int_equal(r.slice.n_recall_items,
                     1); /* i1's only slice pair (k1, 2.2) is not relevant */
    assert_int_equal(r.slice.n_pairs, 2);
    assert_close(r.slice.recall[1], 0.0, 1e-12);
    assert_close(r.slice.recall[2], 1.0, 1e-12);
    assert_close(r.slice.spearman, -1.0, 1e-6); /* (0, 2.7), (0.8, 2.2) */
    assert_true(isnan(r.slice.auc));            /* no irrelevant pair in the slice */

    /* no slice: not reported */
    c.slice_keys = NULL;
    assert_int_equal(kp_eval_embeddings(ITEMS2, 3, KEYS2, 4, 2, &j, &c, &r, err, sizeof err), 0);
    assert_int_equal(r.has_slice, 0);

    /* a log event outside the inventory */
    kp_click_event ev_c[1] = {{0, 4, KP_EV_IMPRESSION, 1, 0}};
    kp_clicklog log_c = {1, 1, ev_c};
    assert_int_equal(kp_eval_unseen_keys(&log_c, 4, unseen, err, sizeof err), -1);
}

/* The slice equals evaluating the judgments restricted to the slice's keyphrases, for a random
 * bi-encoder and BM25 on a small random case. */
static void test_slice_matches_filtered(void **state)
{
    (void)state;
    enum { NI = 40, NK = 60, NJ = 200 };
    static char ibuf[NI][48], kbuf[NK][32];
    static char *itext[NI], *ktext[NK], *iid[NI], *kid[NK];
    static const char *words[] = {"drill", "cordless", "saw",  "blade", "paint", "white",
                                  "hose",  "garden",   "lamp", "led",   "door",  "knob"};
    uint64_t x = 12345;
    for (int i = 0; i < NI; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        snprintf(ibuf[i], sizeof ibuf[i], "%s %s %s", words[(x >> 33) % 12], words[(x >> 40) % 12],
                 words[(x >> 50) % 12]);
        itext[i] = iid[i] = ibuf[i];
    }
    for (int k = 0; k < NK; k++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        snprintf(kbuf[k], sizeof kbuf[k], "%s %s %d", words[(x >> 33) % 12], words[(x >> 45) % 12],
                 k);
        ktext[k] = kid[k] = kbuf[k];
    }
    kp_texts items = {NI, iid, itext, NULL, NULL, 0}, keys = {NK, kid, ktext, NULL, NULL, 0};
    static int ji[NJ], jk[NJ], fi[NJ], fk[NJ];
    static float jr[NJ], fr[NJ];
    unsigned char unseen[NK];
    for (int k = 0; k < NK; k++)
        unseen[k] = (k % 3) != 0;
    int nf = 0;
    for (int p = 0; p < NJ; p++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        ji[p] = (int)((x >> 33) % NI);
        jk[p] = (int)((x >> 20) % NK);
        jr[p] = 1.0f + (float)((x >> 45) % 5) * 0.5f;
        if (unseen[jk[p]]) fi[nf] = ji[p], fk[nf] = jk[p], fr[nf++] = jr[p];
    }
    kp_judgments j = {NJ, ji, jk, jr}, jf = {nf, fi, fk, fr};
    kp_eval_config c;
    kp_eval_config_default(&c);
    c.k[0] = 1, c.k[1] = 5, c.k[2] = 20;
    char err[256] = "";
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    bc.n_buckets = 1024;
    kp_bienc *m = kp_bienc_new(&bc, 3);
    assert_non_null(m);
    kp_bm25 *bm =
        kp_bm25_build((const char *const *)ktext, NK, KP_BM25_K1, KP_BM25_B, err, sizeof err);
    assert_non_null(bm);
    for (int which = 0; which < 2; which++) {
        kp_eval_result r, f;
        c.slice_keys = unseen;
        int rc = which ? kp_eval_bm25(bm, &items, &keys, &j, &c, &r, err, sizeof err)
                       : kp_eval_bienc(m, &items, &keys, &j, &c, &r, err, sizeof err);
        assert_int_equal(rc, 0);
        c.slice_keys = NULL;
        rc = which ? kp_eval_bm25(bm, &items, &keys, &jf, &c, &f, err, sizeof err)
                   : kp_eval_bienc(m, &items, &keys, &jf, &c, &f, err, sizeof err);
        assert_int_equal(rc, 0);
        assert_int_equal(r.slice.n_pairs, f.n_pairs);
        assert_int_equal(r.slice.n_items, f.n_items);
        assert_int_equal(r.slice.n_recall_items, f.n_recall_items);
        assert_true(f.n_recall_items > 0 && f.n_pairs < NJ);
        for (int i = 0; i < 3; i++)
            assert_close(r.slice.recall[i], f.recall[i], 1e-12);
        assert_close(r.slice.spearman, f.spearman, 1e-9);
        assert_close(r.slice.auc, f.auc, 1e-9);
        /* and the slice is not the whole set */
        assert_true(r.n_pairs > r.slice.n_pairs);
    }
    kp_bm25_free(bm);
    kp_bienc_free(m);
}

TH_MAIN(cmocka_unit_test(test_hand_embeddings), cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_bm25), cmocka_unit_test(test_pair_scorer),
        cmocka_unit_test(test_bienc_matches_embeddings), cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_never_shown_slice), cmocka_unit_test(test_slice_matches_filtered))

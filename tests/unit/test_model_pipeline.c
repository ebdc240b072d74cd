/* Tests for the serving pipeline of model/recommender (retrieve -> re-rank -> calibrate -> gate)
 * against its brute-force reference (kp_rec_suggest_ref) on a small model, the gate (only
 * p >= threshold, at most K, fewer or none allowed), the hybrid union (no duplicate keyphrase or
 * token set, BM25-only keyphrases reach the candidates), BM25's batch top-k against the single one,
 * pair scores, and the pipeline's argument checks. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/bm25.h"
#include "model/calib.h"
#include "model/ce.h"
#include "model/featurize.h"
#include "model/recommender.h"
#include "th_main.h"

#define NK 80
#define NT 12
#define K  6

typedef struct {
    char ids[NK][16], texts[NK][64];
    const char *idp[NK], *textp[NK];
    kp_recommender *rec;
    kp_ce *ce;
    kp_bm25 *bm;
    kp_calib *cal_ce, *cal_be;
    size_t lens[NT]; /* strlen(titles[i]) */
} fixture;

static const char *words[] = {"steel",  "kitchen", "sink",  "red",    "shoes", "running",
                              "lamp",   "led",     "white", "door",   "brass", "knob",
                              "garden", "hose",    "wood",  "screws", "drill", "cordless"};
#define NW ((int)(sizeof words / sizeof words[0]))

static const char *titles[NT] = {"Stainless steel kitchen sink, double bowl",
                                 "Red running shoes for men",
                                 "LED desk lamp white",
                                 "Brass door knob set",
                                 "Garden hose 50 ft",
                                 "Cordless drill with wood screws",
                                 "white door",
                                 "zzz qqq",
                                 "",
                                 "sink sink sink",
                                 "kitchen lamp brass",
                                 "drill"};

static int setup(void **state)
{
    fixture *x = calloc(1, sizeof *x);
    assert_non_null(x);
    char err[512];
    uint64_t h = 12345;
    for (int i = 0; i < NK; i++) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        int a = (int)((h >> 33) % NW), b = (int)((h >> 45) % NW);
        snprintf(x->ids[i], sizeof x->ids[i], "k%d", i);
        if (i % 10 == 9) /* same token set as the previous one: de-duplicated */
            memcpy(x->texts[i], x->texts[i - 1], sizeof x->texts[i]);
        else if (i % 7 == 3)
            snprintf(x->texts[i], sizeof x->texts[i], "%s", words[a]);
        else
            snprintf(x->texts[i], sizeof x->texts[i], "%s %s", words[a], words[b]);
        if (i % 10 == 9) { /* reversed word order: same token set */
            char t[64];
            const char *sp = strchr(x->texts[i], ' ');
            if (sp) {
                snprintf(t, sizeof t, "%s %.*s", sp + 1, (int)(sp - x->texts[i]), x->texts[i]);
                snprintf(x->texts[i], sizeof x->texts[i], "%s", t);
            }
        }
        x->idp[i] = x->ids[i];
        x->textp[i] = x->texts[i];
    }
    for (int i = 0; i < NT; i++)
        x->lens[i] = strlen(titles[i]);
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    bc.n_buckets = 1u << 12;
    bc.emb_dim = 16, bc.hidden_dim = 32, bc.out_dim = 16;
    bc.n_prefix = 1, bc.prefix[0] = 16;
    kp_bienc *m = kp_bienc_new(&bc, 3);
    assert_non_null(m);
    assert_non_null(x->rec = kp_rec_new(m, x->idp, x->textp, NK, 0, err, sizeof err));
    kp_ce_config cc;
    kp_ce_config_default(&cc);
    cc.n_buckets = 1u << 12, cc.emb_dim = 8, cc.hidden_dim = 8, cc.n_idf = 1u << 10;
    assert_non_null(x->ce = kp_ce_new(&cc, 11));
    assert_non_null(x->bm = kp_bm25_build(x->textp, NK, KP_BM25_K1, KP_BM25_B, err, sizeof err));
    /* isotonic calibrations of the two scores on made-up labels (score > median = relevant) */
    float s[64], y[64];
    for (int i = 0; i < 64; i++)
        s[i] = (float)i / 64, y[i] = (i * 7) % 5 < (i * 5) / 16 ? 1.0f : 0.0f;
    assert_non_null(x->cal_ce = kp_calib_fit_isotonic(s, y, 64, KP_CALIB_INPUT_CE));
    for (int i = 0; i < 64; i++)
        s[i] = -1 + 2 * (float)i / 64;
    assert_non_null(x->cal_be = kp_calib_fit_isotonic(s, y, 64, KP_CALIB_INPUT_BE));
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    fixture *x = *state;
    kp_rec_free(x->rec);
    kp_ce_free(x->ce);
    kp_bm25_free(x->bm);
    kp_calib_free(x->cal_ce);
    kp_calib_free(x->cal_be);
    free(x);
    return 0;
}

static void run_both(fixture *x, const kp_pipeline *p, int k, kp_rec_suggestion *a, int *ca,
                     kp_rec_suggestion *b, int *cb)
{
    char err[512];
    assert_int_equal(kp_rec_set_pipeline(x->rec, p, err, sizeof err), 0);
    assert_int_equal(kp_rec_suggest(x->rec, titles, x->lens, NT, k, -1.0f, a, ca), 0);
    assert_int_equal(kp_rec_suggest_ref(x->rec, titles, x->lens, NT, k, -1.0f, b, cb), 0);
}

static int cmp_word(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether texts a and b hold the same words (space-separated, at most 8, any order). */
static int same_words(const char *a, const char *b)
{
    char buf[2][64];
    char *w[2][8];
    int n[2] = {0, 0};
    const char *t[2] = {a, b};
    for (int s = 0; s < 2; s++) {
        snprintf(buf[s], sizeof buf[s], "%s", t[s]);
        for (char *sv, *tok = strtok_r(buf[s], " ", &sv); tok && n[s] < 8;
             tok = strtok_r(NULL, " ", &sv))
            w[s][n[s]++] = tok;
        qsort(w[s], (size_t)n[s], sizeof(char *), cmp_word);
    }
    if (n[0] != n[1]) return 0;
    for (int i = 0; i < n[0]; i++)
        if (strcmp(w[0][i], w[1][i]) != 0) return 0;
    return 1;
}

/* fast path == reference: the same scores at every rank, and the same keyphrases in the same order
 * but where two are tied to rounding (keyphrases of the same words score the same up to the last
 * bits, which the GEMM's rows and the reference's dot products may round differently): there the
 * two lists may hold either; such positions are few (a swap of two ranks counts two) */
static void check_same(const kp_pipeline *p, fixture *x)
{
    kp_rec_suggestion a[NT * K], b[NT * K];
    int ca[NT], cb[NT], n = 0, swapped = 0;
    run_both(x, p, K, a, ca, b, cb);
    for (int i = 0; i < NT; i++) {
        assert_int_equal(ca[i], cb[i]);
        for (int j = 0; j < ca[i]; j++, n++) {
            const kp_rec_suggestion *u = &a[i * K + j], *v = &b[i * K + j];
            assert_float_equal(u->raw, v->raw, 1e-5);
            assert_float_equal(u->score, v->score, 1e-5);
            if (strcmp(u->keyphrase_id, v->keyphrase_id) == 0) continue;
            assert_true(same_words(u->keyphrase, v->keyphrase));
            swapped++;
        }
    }
    assert_true(swapped <= n / 20);
}

static void test_pipeline_vs_reference(void **state)
{
    fixture *x = *state;
    const kp_pipeline cfgs[] = {
        {0}, /* BE top-K */
        {.candidates = 20},
        {.bm25 = x->bm, .candidates = 10, .hybrid = 8},               /* hybrid */
        {.ce = x->ce, .candidates = 15},                              /* re-rank */
        {.ce = x->ce, .bm25 = x->bm, .candidates = 10, .hybrid = 10}, /* hybrid + re-rank */
        {.ce = x->ce, .calib = x->cal_ce, .candidates = 20, .threshold = 0.3f}, /* + gate */
        {.ce = x->ce,
         .bm25 = x->bm,
         .calib = x->cal_ce,
         .candidates = 12,
         .hybrid = 6,
         .threshold = 0.45f,
         .ce_threads = 3},
        {.calib = x->cal_be, .candidates = 8, .threshold = 0.2f}, /* BE calibrated + gate */
        {.threshold = 0.1f},                                      /* gate on the raw cosine */
    };
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++)
        check_same(&cfgs[c], x);
}

static void test_no_pipeline_is_be_top_k(void **state)
{
    fixture *x = *state;
    char err[512];
    kp_rec_suggestion a[NT * K], b[NT * K];
    int ca[NT], cb[NT], ids[NT * K];
    float sc[NT * K];
    assert_int_equal(kp_rec_set_pipeline(x->rec, NULL, err, sizeof err), 0);
    assert_int_equal(kp_rec_suggest(x->rec, titles, x->lens, NT, K, -1.0f, a, ca), 0);
    assert_int_equal(kp_rec_recommend(x->rec, titles, x->lens, NT, K, -1.0f, ids, sc, cb), 0);
    const kp_pipeline p = {.candidates = 0}; /* N = 0 means K */
    assert_int_equal(kp_rec_set_pipeline(x->rec, &p, err, sizeof err), 0);
    assert_int_equal(kp_rec_suggest(x->rec, titles, x->lens, NT, K, -1.0f, b, cb), 0);
    for (int i = 0; i < NT; i++) {
        assert_int_equal(ca[i], K);
        assert_int_equal(cb[i], K);
        for (int j = 0; j < K; j++) {
            assert_string_equal(a[i * K + j].keyphrase_id, x->ids[ids[i * K + j]]);
            assert_string_equal(b[i * K + j].keyphrase_id, a[i * K + j].keyphrase_id);
            assert_true(a[i * K + j].score == sc[i * K + j]);
            assert_true(a[i * K + j].raw == a[i * K + j].score);
        }
    }
    /* N < K: only N candidates, the BE's first N */
    const kp_pipeline p3 = {.candidates = 3};
    assert_int_equal(kp_rec_set_pipeline(x->rec, &p3, err, sizeof err), 0);
    assert_int_equal(kp_rec_suggest(x->rec, titles, x->lens, NT, K, -1.0f, b, cb), 0);
    for (int i = 0; i < NT; i++) {
        assert_int_equal(cb[i], 3);
        for (int j = 0; j < 3; j++)
            assert_string_equal(b[i * K + j].keyphrase_id, a[i * K + j].keyphrase_id);
    }
}

static void test_gate(void **state)
{
    fixture *x = *state;
    kp_rec_suggestion a[NT * K], b[NT * K];
    int ca[NT], cb[NT];
    /* a Platt map centred on the CE scores of the candidates, so the gate bites */
    const kp_pipeline p0 = {.ce = x->ce, .candidates = 20};
    run_both(x, &p0, K, a, ca, b, cb);
    float lo = 1, hi = 0;
    for (int i = 0; i < NT; i++)
        for (int j = 0; j < ca[i]; j++) {
            float r = a[i * K + j].raw;
            lo = r < lo ? r : lo;
            hi = r > hi ? r : hi;
        }
    double sl = 10 / ((double)hi - lo + 1e-6), mid = ((double)lo + hi) / 2;
    kp_calib *cal = kp_calib_new_platt(sl, -sl * mid, KP_CALIB_INPUT_CE);
    assert_non_null(cal);
    const float ts[] = {0.05f, 0.3f, 0.5f, 0.8f, 1.0f};
    int prev_total = NT * K + 1, some_fewer = 0;
    for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
        const kp_pipeline p = {.ce = x->ce,
                               .bm25 = x->bm,
                               .calib = cal,
                               .candidates = 20,
                               .hybrid = 10,
                               .threshold = ts[t]};
        run_both(x, &p, K, a, ca, b, cb);
        int total = 0;
        for (int i = 0; i < NT; i++) {
            assert_true(ca[i] >= 0 && ca[i] <= K);
            total += ca[i];
            if (ca[i] < K) some_fewer = 1;
            for (int j = 0; j < ca[i]; j++) {
                const kp_rec_suggestion *s = &a[i * K + j];
                assert_true(s->score >= ts[t]); /* only p >= t */
                assert_float_equal(s->score, kp_calib_apply(cal, s->raw), 1e-7);
                if (j) assert_true(s[-1].raw >= s->raw); /* ranked by raw score */
            }
        }
        assert_true(total <= prev_total); /* a higher threshold never publishes more */
        prev_total = total;
    }
    assert_true(some_fewer);
    assert_int_equal(prev_total, 0); /* threshold 1: sigmoid(<= 10) < 1: none */
    kp_calib_free(cal);
}

static void test_hybrid_union(void **state)
{
    fixture *x = *state;
    char err[512];
    enum { C = 40 };
    kp_rec_suggestion a[NT * C], be[NT * C];
    int ca[NT], cbe[NT];
    /* the union through the pipeline itself: no gate, K = N + M keeps every candidate */
    const kp_pipeline onlybe = {.candidates = 8};
    assert_int_equal(kp_rec_set_pipeline(x->rec, &onlybe, err, sizeof err), 0);
    assert_int_equal(kp_rec_suggest(x->rec, titles, x->lens, NT, 8, -1.0f, be, cbe), 0);
    const kp_pipeline hy = {.bm25 = x->bm, .candidates = 8, .hybrid = 12};
    assert_int_equal(kp_rec_set_pipeline(x->rec, &hy, err, sizeof err), 0);
    assert_int_equal(kp_rec_suggest(x->rec, titles, x->lens, NT, C, -1.0f, a, ca), 0);
    int from_bm25 = 0;
    for (int i = 0; i < NT; i++) {
        int bd[12];
        float bs[12];
        int nb = kp_bm25_topk(x->bm, titles[i], 12, bd, bs);
        assert_true(nb >= 0);
        /* 8 BE candidates + BM25's 12, de-duplicated, all kept (K = 40 >= 20) */
        for (int j = 0; j < ca[i]; j++)
            for (int l = j + 1; l < ca[i]; l++) { /* no duplicate keyphrase or token set */
                assert_true(strcmp(a[i * C + j].keyphrase_id, a[i * C + l].keyphrase_id));
                const char *u = a[i * C + j].keyphrase, *v = a[i * C + l].keyphrase;
                assert_true(kp_feat_tokenset_key(u, strlen(u)) !=
                            kp_feat_tokenset_key(v, strlen(v)));
            }
        /* every BM25 hit is present, or one with its token set */
        for (int d = 0; d < nb; d++) {
            uint64_t key = kp_rec_dedup_key(x->rec, bd[d]);
            int found = 0;
            for (int j = 0; j < ca[i] && !found; j++)
                found = kp_feat_tokenset_key(a[i * C + j].keyphrase,
                                             strlen(a[i * C + j].keyphrase)) == key;
            assert_true(found);
        }
        from_bm25 += nb;
    }
    assert_true(from_bm25 > 0);
    /* every BE candidate is there too, and hybrid added keyphrases BE did not retrieve */
    int extra = 0;
    for (int i = 0; i < NT; i++) {
        assert_true(ca[i] >= cbe[i]);
        for (int j = 0; j < cbe[i]; j++) {
            int found = 0;
            for (int l = 0; l < ca[i] && !found; l++)
                found = !strcmp(a[i * C + l].keyphrase_id, be[i * 8 + j].keyphrase_id);
            assert_true(found);
        }
        extra += ca[i] - cbe[i];
    }
    assert_true(extra > 0);
}

static void test_bm25_batch(void **state)
{
    fixture *x = *state;
    int od[NT * 9], cnt[NT], d1[9];
    float os[NT * 9], s1[9];
    assert_int_equal(kp_bm25_topk_batch(x->bm, titles, NT, 9, od, os, cnt), 0);
    for (int i = 0; i < NT; i++) {
        int n = kp_bm25_topk(x->bm, titles[i], 9, d1, s1);
        assert_int_equal(cnt[i], n);
        for (int j = 0; j < n; j++) {
            assert_int_equal(od[i * 9 + j], d1[j]);
            assert_true(os[i * 9 + j] == s1[j]);
        }
    }
    assert_int_equal(kp_bm25_topk_batch(x->bm, titles, 0, 9, od, os, cnt), 0);
    assert_int_equal(kp_bm25_topk_batch(NULL, titles, NT, 9, od, os, cnt), -1);
}

static void test_pair_scores(void **state)
{
    fixture *x = *state;
    char err[512];
    const char *t[3] = {titles[0], titles[1], titles[2]};
    size_t l[3] = {strlen(t[0]), strlen(t[1]), strlen(t[2])};
    int keys[3] = {0, 5, NK - 1};
    float raw[3], p[3];
    const kp_pipeline pc = {.ce = x->ce, .calib = x->cal_ce};
    assert_int_equal(kp_rec_set_pipeline(x->rec, &pc, err, sizeof err), 0);
    assert_int_equal(kp_rec_pair_scores(x->rec, t, l, keys, 3, raw, p), 0);
    for (int i = 0; i < 3; i++) {
        float s;
        const char *kt = x->texts[keys[i]];
        assert_int_equal(kp_ce_score(x->ce, &t[i], &kt, 1, &s), 0);
        assert_true(raw[i] == s);
        assert_true(p[i] == kp_calib_apply(x->cal_ce, s));
    }
    /* BE cosine: the suggestion list's score of the same pair */
    assert_int_equal(kp_rec_set_pipeline(x->rec, NULL, err, sizeof err), 0);
    kp_rec_suggestion s[K];
    int c;
    assert_int_equal(kp_rec_suggest(x->rec, t, l, 1, K, -1.0f, s, &c), 0);
    int k0 = -1;
    for (int j = 0; j < NK; j++)
        if (!strcmp(x->ids[j], s[0].keyphrase_id)) k0 = j;
    assert_int_equal(kp_rec_pair_scores(x->rec, t, l, &k0, 1, raw, NULL), 0);
    assert_float_equal(raw[0], s[0].score, 1e-5);
    keys[0] = NK;
    assert_int_equal(kp_rec_pair_scores(x->rec, t, l, keys, 1, raw, p), -1);
}

static void test_pipeline_checks(void **state)
{
    fixture *x = *state;
    char err[512];
    const kp_pipeline h = {.hybrid = 5};
    assert_int_equal(kp_rec_set_pipeline(x->rec, &h, err, sizeof err), -1);
    assert_non_null(strstr(err, "BM25"));
    const kp_pipeline c1 = {.calib = x->cal_ce};
    assert_int_equal(kp_rec_set_pipeline(x->rec, &c1, err, sizeof err), -1);
    assert_non_null(strstr(err, "cross-encoder"));
    const kp_pipeline c2 = {.ce = x->ce, .calib = x->cal_be};
    assert_int_equal(kp_rec_set_pipeline(x->rec, &c2, err, sizeof err), -1);
    const kp_pipeline t = {.threshold = 1.5f};
    assert_int_equal(kp_rec_set_pipeline(x->rec, &t, err, sizeof err), -1);
    char e2[512];
    const char *few[] = {"a", "b"};
    kp_bm25 *small = kp_bm25_build(few, 2, KP_BM25_K1, KP_BM25_B, e2, sizeof e2);
    const kp_pipeline b = {.bm25 = small, .hybrid = 1};
    assert_int_equal(kp_rec_set_pipeline(x->rec, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "documents"));
    kp_bm25_free(small);
    assert_null(kp_rec_pipeline(x->rec) == NULL ? NULL : (void *)1); /* still none set */
}

TH_MAIN(cmocka_unit_test_setup_teardown(test_pipeline_vs_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_pipeline_is_be_top_k, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hybrid_union, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bm25_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pair_scores, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_checks, setup, teardown))

/* Unit tests for model/clicksim: determinism, position bias, grade effect, log structure. */
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

#include "offline/clicksim.h"
#include "offline/datasets.h"
#include "th_main.h"

#define assert_close(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

enum { ITEMS = 300, PER_ITEM = 5, KEYS = 1000 };

/* Synthetic judgments: ITEMS items with PER_ITEM distinct keyphrases each. grade < 0: random
 * grade in {1, 1.5, .., 3}; otherwise that grade everywhere. Items 0 mod 7 have none. */
static void make_judgments(kp_judgments *j, float grade)
{
    int n = ITEMS * PER_ITEM;
    j->item = malloc((size_t)n * sizeof(int));
    j->key = malloc((size_t)n * sizeof(int));
    j->rel = malloc((size_t)n * sizeof(float));
    assert_non_null(j->item);
    assert_non_null(j->key);
    assert_non_null(j->rel);
    uint64_t s = 99;
    j->n = 0;
    for (int i = 0; i < ITEMS; i++) {
        if (i % 7 == 0) continue;
        for (int q = 0; q < PER_ITEM; q++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            j->item[j->n] = i;
            j->key[j->n] = (i * 31 + q * 97) % KEYS;
            j->rel[j->n] = grade < 0 ? 1.0f + 0.5f * (float)((s >> 33) % 5) : grade;
            j->n++;
        }
    }
}

/* index of the judgment (item, key) or -1 */
static int find_pair(const kp_judgments *j, int item, int key)
{
    for (int p = 0; p < j->n; p++)
        if (j->item[p] == item && j->key[p] == key) return p;
    return -1;
}

static int same_log(const kp_clicklog *a, const kp_clicklog *b)
{
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++) {
        const kp_click_event *x = &a->ev[i], *y = &b->ev[i];
        if (x->item != y->item || x->key != y->key || x->kind != y->kind ||
            x->position != y->position || x->ts != y->ts)
            return 0;
    }
    return 1;
}

static void test_determinism(void **state)
{
    (void)state;
    kp_judgments j;
    make_judgments(&j, -1);
    kp_clicksim_config c;
    kp_clicksim_config_default(&c);
    c.sessions_per_item = 5;
    kp_clicklog a = {0}, b = {0}, d = {0};
    char err[256];
    assert_int_equal(kp_clicksim_run(&j, ITEMS, KEYS, &c, &a, err, sizeof(err)), 0);
    assert_int_equal(kp_clicksim_run(&j, ITEMS, KEYS, &c, &b, err, sizeof(err)), 0);
    assert_true(a.n > 0);
    assert_true(same_log(&a, &b));
    c.seed = 43;
    assert_int_equal(kp_clicksim_run(&j, ITEMS, KEYS, &c, &d, err, sizeof(err)), 0);
    assert_false(same_log(&a, &d));

    /* an item's sessions do not depend on the other items: simulate item 8 alone */
    kp_judgments one = {0};
    int p8 = find_pair(&j, 8, (8 * 31) % KEYS);
    assert_true(p8 >= 0);
    one.n = PER_ITEM;
    one.item = j.item + p8;
    one.key = j.key + p8;
    one.rel = j.rel + p8;
    kp_clicklog alone = {0};
    c.seed = 42;
    assert_int_equal(kp_clicksim_run(&one, ITEMS, KEYS, &c, &alone, err, sizeof(err)), 0);
    int k = 0;
    for (int i = 0; i < a.n; i++) {
        if (a.ev[i].item != 8) continue;
        assert_true(k < alone.n);
        assert_int_equal(a.ev[i].key, alone.ev[k].key);
        assert_int_equal(a.ev[i].kind, alone.ev[k].kind);
        assert_int_equal(a.ev[i].position, alone.ev[k].position);
        k++;
    }
    assert_int_equal(k, alone.n);
    kp_clicklog_free(&a);
    kp_clicklog_free(&b);
    kp_clicklog_free(&d);
    kp_clicklog_free(&alone);
    kp_judgments_free(&j);
}

static void test_structure(void **state)
{
    (void)state;
    kp_judgments j;
    make_judgments(&j, -1);
    kp_clicksim_config c;
    kp_clicksim_config_default(&c);
    c.sessions_per_item = 3;
    kp_clicklog log = {0};
    char err[256];
    assert_int_equal(kp_clicksim_run(&j, ITEMS, KEYS, &c, &log, err, sizeof(err)), 0);
    int n_items = 0;
    for (int i = 0; i < ITEMS; i++)
        n_items += i % 7 != 0;
    int n_imp = 0;
    /* walk session by session: PER_ITEM impressions at positions 1..PER_ITEM, every judged pair of
     * the item once, then clicks that each repeat an impression of the session */
    int e = 0;
    for (int g = 0; g < n_items * c.sessions_per_item; g++) {
        int64_t ts = c.t0_ms + (int64_t)g * c.session_gap_ms;
        int item = log.ev[e].item, seen[PER_ITEM] = {0};
        assert_true(item % 7 != 0);
        for (int r = 1; r <= PER_ITEM; r++, e++) {
            const kp_click_event *v = &log.ev[e];
            assert_int_equal(v->kind, KP_EV_IMPRESSION);
            assert_int_equal(v->item, item);
            assert_int_equal(v->position, r);
            assert_true(v->ts == ts);
            int p = find_pair(&j, v->item, v->key);
            assert_true(p >= 0); /* only judged pairs are shown */
            int q = p - find_pair(&j, item, (item * 31) % KEYS);
            assert_true(q >= 0 && q < PER_ITEM);
            assert_int_equal(seen[q]++, 0);
            n_imp++;
        }
        for (; e < log.n && log.ev[e].kind == KP_EV_CLICK; e++) {
            const kp_click_event *v = &log.ev[e];
            assert_int_equal(v->item, item);
            assert_true(v->ts == ts + 1000);
            int found = 0;
            for (int b = 1; b <= 2 * PER_ITEM && e - b >= 0; b++) {
                const kp_click_event *w = &log.ev[e - b];
                if (w->kind == KP_EV_IMPRESSION && w->ts == ts && w->key == v->key &&
                    w->position == v->position)
                    found = 1;
            }
            assert_true(found);
        }
    }
    assert_int_equal(e, log.n);
    assert_int_equal(n_imp, j.n * c.sessions_per_item);
    kp_clicklog_free(&log);

    /* noise 0 + max_shown: exactly the top grades, in grade order, ties by judgment order */
    c.noise_sd = 0.0f;
    c.max_shown = 2;
    c.sessions_per_item = 1;
    assert_int_equal(kp_clicksim_run(&j, ITEMS, KEYS, &c, &log, err, sizeof(err)), 0);
    for (int i = 0; i < log.n; i++) {
        const kp_click_event *v = &log.ev[i];
        assert_true(v->position <= 2);
        if (v->kind != KP_EV_IMPRESSION) continue;
        int p = find_pair(&j, v->item, v->key),
            first = find_pair(&j, v->item, (v->item * 31) % KEYS);
        int better = 0;
        for (int q = first; q < first + PER_ITEM; q++)
            better += j.rel[q] > j.rel[p] || (j.rel[q] == j.rel[p] && q < p);
        assert_int_equal(better, v->position - 1);
    }
    kp_clicklog_free(&log);
    kp_judgments_free(&j);
}

/* CTR per position (1..PER_ITEM) of log into ctr[1..] */
static void ctr_by_position(const kp_clicklog *log, double *ctr)
{
    double imp[PER_ITEM + 1] = {0}, clk[PER_ITEM + 1] = {0};
    for (int i = 0; i < log->n; i++) {
        int r = log->ev[i].position;
        assert_true(r >= 1 && r <= PER_ITEM);
        if (log->ev[i].kind == KP_EV_CLICK)
            clk[r] += 1;
        else
            imp[r] += 1;
    }
    for (int r = 1; r <= PER_ITEM; r++) {
        assert_true(imp[r] > 0);
        ctr[r] = clk[r] / imp[r];
    }
}

static void test_ctr_decreases_with_position(void **state)
{
    (void)state;
    char err[256];
    kp_clicksim_config c;
    kp_clicksim_config_default(&c);
    c.sessions_per_item = 40;
    double ctr[PER_ITEM + 1];

    /* default config, mixed grades: CTR falls position after position */
    kp_judgments j;
    make_judgments(&j, -1);
    kp_clicklog log = {0};
    assert_int_equal(kp_clicksim_run(&j, ITEMS, KEYS, &c, &log, err, sizeof(err)), 0);
    ctr_by_position(&log, ctr);
    for (int r = 2; r <= PER_ITEM; r++)
        assert_true(ctr[r] < ctr[r - 1]);
    kp_clicklog_free(&log);
    kp_judgments_free(&j);

    /* equal grades: pure position bias, CTR(r) ~ click_prob · r^-eta */
    const float etas[] = {1.0f, 0.5f};
    for (int e = 0; e < 2; e++) {
        c.eta = etas[e];
        make_judgments(&j, 2.5f);
        assert_int_equal(kp_clicksim_run(&j, ITEMS, KEYS, &c, &log, err, sizeof(err)), 0);
        ctr_by_position(&log, ctr);
        double p = kp_clicksim_click_prob(&c, 2.5f); /* 0.05 + 0.95 * 0.75 */
        assert_close(p, 0.7625, 1e-6);
        for (int r = 1; r <= PER_ITEM; r++) {
            double want = p * pow(r, -etas[e]); /* ~10k impressions per position: sd < 0.005 */
            assert_close(ctr[r], want, 0.025);
            assert_close(kp_clicksim_exam_prob(&c, r), pow(r, -etas[e]), 1e-12);
        }
        kp_clicklog_free(&log);
        kp_judgments_free(&j);
    }
}

static void test_ctr_increases_with_grade(void **state)
{
    (void)state;
    char err[256];
    kp_clicksim_config c;
    kp_clicksim_config_default(&c);
    c.sessions_per_item = 40;
    kp_judgments j;
    make_judgments(&j, -1);
    for (int pass = 0; pass < 2; pass++) {
        c.eta = pass == 0 ? 1.0f : 0.0f; /* eta = 0: every position examined */
        kp_clicklog log = {0};
        assert_int_equal(kp_clicksim_run(&j, ITEMS, KEYS, &c, &log, err, sizeof(err)), 0);
        double imp[5] = {0}, clk[5] = {0};
        for (int i = 0; i < log.n; i++) {
            int p = find_pair(&j, log.ev[i].item, log.ev[i].key);
            assert_true(p >= 0);
            int g = (int)lroundf((j.rel[p] - 1.0f) * 2.0f);
            if (log.ev[i].kind == KP_EV_CLICK)
                clk[g] += 1;
            else
                imp[g] += 1;
        }
        for (int g = 1; g < 5; g++)
            assert_true(clk[g] / imp[g] > clk[g - 1] / imp[g - 1]);
        if (pass == 1)
            for (int g = 0; g < 5; g++)
                assert_close(clk[g] / imp[g], kp_clicksim_click_prob(&c, 1.0f + 0.5f * (float)g),
                             0.03);
        kp_clicklog_free(&log);
    }
    assert_close(kp_clicksim_click_prob(&c, 1.0f), 0.05, 1e-6);
    assert_close(kp_clicksim_click_prob(&c, 3.0f), 1.0, 1e-6);
    assert_close(kp_clicksim_click_prob(&c, 7.0f), 1.0, 1e-6); /* clamped */
    kp_judgments_free(&j);
}

static void test_errors_and_roundtrip(void **state)
{
    (void)state;
    char err[256];
    kp_judgments j;
    make_judgments(&j, -1);
    kp_clicksim_config c;
    kp_clicklog log = {0};
    kp_clicksim_config_default(&c);
    c.sessions_per_item = 0;
    assert_int_equal(kp_clicksim_run(&j, ITEMS, KEYS, &c, &log, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "sessions_per_item"));
    kp_clicksim_config_default(&c);
    c.eps = 1.5f;
    assert_int_equal(kp_clicksim_run(&j, ITEMS, KEYS, &c, &log, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "eps"));
    kp_clicksim_config_default(&c);
    c.noise_sd = NAN;
    assert_int_equal(kp_clicksim_run(&j, ITEMS, KEYS, &c, &log, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "noise_sd"));
    kp_clicksim_config_default(&c);
    assert_int_equal(kp_clicksim_run(&j, ITEMS, 10, &c, &log, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "invalid"));
    assert_int_equal(log.n, 0);

    /* write and load back through the TSV click log */
    c.sessions_per_item = 2;
    assert_int_equal(kp_clicksim_run(&j, ITEMS, KEYS, &c, &log, err, sizeof(err)), 0);
    char **iid = malloc(ITEMS * sizeof(char *)), **kid = malloc(KEYS * sizeof(char *));
    assert_non_null(iid);
    assert_non_null(kid);
    for (int i = 0; i < ITEMS; i++) {
        iid[i] = malloc(16);
        snprintf(iid[i], 16, "it%d", i);
    }
    for (int k = 0; k < KEYS; k++) {
        kid[k] = malloc(16);
        snprintf(kid[k], 16, "kp%d", k);
    }
    kp_texts items, keys;
    assert_int_equal(kp_texts_build((const char *const *)iid, (const char *const *)iid, ITEMS,
                                    &items, err, sizeof(err)),
                     0);
    assert_int_equal(kp_texts_build((const char *const *)kid, (const char *const *)kid, KEYS, &keys,
                                    err, sizeof(err)),
                     0);
    char path[] = "/tmp/kp_clicksim_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(kp_clicklog_write(path, &log, &items, &keys, err, sizeof(err)), 0);
    kp_clicklog back;
    int skipped;
    assert_int_equal(kp_clicklog_load(path, &items, &keys, &back, &skipped, err, sizeof(err)), 0);
    assert_int_equal(skipped, 0);
    assert_true(same_log(&log, &back));
    unlink(path);
    kp_clicklog_free(&back);
    kp_clicklog_free(&log);
    kp_texts_free(&items);
    kp_texts_free(&keys);
    for (int i = 0; i < ITEMS; i++)
        free(iid[i]);
    for (int k = 0; k < KEYS; k++)
        free(kid[k]);
    free(iid);
    free(kid);
    kp_judgments_free(&j);
}

/* The lexical old engine: only judged keyphrases among the item's BM25 top N can be shown. */
static void test_lexical_engine(void **state)
{
    (void)state;
    char err[256];
    const char *iid[] = {"a", "b"}, *itx[] = {"cordless drill", "red garden hose"};
    const char *kid[] = {"0", "1", "2", "3", "4"},
               *ktx[] = {"cordless drill", "drill bits", "garden hose", "red paint", "hose reel"};
    kp_texts items, keys;
    assert_int_equal(kp_texts_build(iid, itx, 2, &items, err, sizeof err), 0);
    assert_int_equal(kp_texts_build(kid, ktx, 5, &keys, err, sizeof err), 0);
    kp_bm25 *bm = kp_bm25_build((const char *const *)keys.text, keys.n, KP_BM25_K1, KP_BM25_B, err,
                                sizeof err);
    assert_non_null(bm);
    int ids[5];
    float sc[5];
    /* the premise: BM25's lists of the two titles */
    assert_int_equal(kp_bm25_topk(bm, items.text[0], 5, ids, sc), 2);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 1);
    assert_int_equal(kp_bm25_topk(bm, items.text[1], 1, ids, sc), 1);
    assert_int_equal(ids[0], 2);
    /* judgments of the two items interleaved: item 0 judges k0, k2 (relevant, but lexically out
     * of reach), k1; item 1 judges k2, k3, k4 */
    int ji[] = {0, 1, 0, 1, 0, 1}, jk[] = {0, 2, 2, 3, 1, 4};
    float jr[] = {3.0f, 3.0f, 3.0f, 1.0f, 2.0f, 3.0f};
    kp_judgments j = {6, ji, jk, jr}, lex;
    int dropped = -1;
    assert_int_equal(kp_clicksim_lexical(&j, bm, &items, 1, &lex, &dropped, err, sizeof err), 0);
    assert_int_equal(lex.n, 2); /* (0, k0), (1, k2) */
    assert_int_equal(dropped, 4);
    assert_int_equal(lex.item[0], 0);
    assert_int_equal(lex.key[0], 0);
    assert_int_equal(lex.item[1], 1);
    assert_int_equal(lex.key[1], 2);
    kp_judgments_free(&lex);
    assert_int_equal(kp_clicksim_lexical(&j, bm, &items, 2, &lex, &dropped, err, sizeof err), 0);
    /* item 0: k0, k1 (k2 is not in its top 2 although it is in item 1's); item 1: BM25 top 2 of
     * "red garden hose" has k2 and one of k3 / k4 */
    assert_int_equal(find_pair(&lex, 0, 2), -1);
    assert_true(find_pair(&lex, 0, 0) >= 0 && find_pair(&lex, 0, 1) >= 0);
    assert_true(find_pair(&lex, 1, 2) >= 0);
    assert_int_equal(lex.n, 4);
    assert_int_equal(dropped, 2);
    /* the simulated log of the lexical engine never shows (0, k2) */
    kp_clicksim_config c;
    kp_clicksim_config_default(&c);
    c.sessions_per_item = 50;
    kp_clicklog log = {0};
    assert_int_equal(kp_clicksim_run(&lex, 2, 5, &c, &log, err, sizeof err), 0);
    int shown02 = 0, shown01 = 0;
    for (int e = 0; e < log.n; e++) {
        shown02 += log.ev[e].item == 0 && log.ev[e].key == 2;
        shown01 += log.ev[e].item == 0 && log.ev[e].key == 1;
    }
    assert_int_equal(shown02, 0);
    assert_true(shown01 >= 50);
    kp_clicklog_free(&log);
    kp_judgments_free(&lex);
    /* the unrestricted engine does show it */
    assert_int_equal(kp_clicksim_run(&j, 2, 5, &c, &log, err, sizeof err), 0);
    for (int e = 0; e < log.n; e++)
        shown02 += log.ev[e].item == 0 && log.ev[e].key == 2;
    assert_true(shown02 >= 50);
    kp_clicklog_free(&log);
    /* errors */
    assert_int_equal(kp_clicksim_lexical(&j, bm, &items, 0, &lex, NULL, err, sizeof err), -1);
    jk[3] = 5;
    assert_int_equal(kp_clicksim_lexical(&j, bm, &items, 2, &lex, NULL, err, sizeof err), -1);
    assert_null(lex.item);
    kp_bm25_free(bm);
    kp_texts_free(&items);
    kp_texts_free(&keys);
}

/* Click probabilities on any grade scale: the loader's 1..3 value of grade g gives the click
 * probability eps + (1 - eps) ((g - MIN) / (MAX - MIN))^gamma. */
static void test_click_prob_grade_scales(void **state)
{
    (void)state;
    kp_clicksim_config c;
    kp_clicksim_config_default(&c);
    c.gamma = 2.0f;
    const kp_grade_scale scales[] = {{1.0f, 4.0f}, {0.0f, 1.0f}, {1.0f, 3.0f}};
    for (int s = 0; s < 3; s++)
        for (int q = 0; q <= 8; q++) {
            float g = kp_grade_from_unit(&scales[s], (float)q / 8.0f);
            double u = kp_grade_unit(&scales[s], g);
            assert_close(kp_clicksim_click_prob(&c, kp_grade_canonical(&scales[s], g)),
                         c.eps + (1.0 - c.eps) * u * u, 1e-6);
        }
    /* a 0..1 score of 0.5 is clicked half as often (minus eps) as a perfect one, gamma 1 */
    c.gamma = 1.0f;
    assert_close(kp_clicksim_click_prob(&c, kp_grade_canonical(&scales[1], 0.5f)),
                 0.05 + 0.95 * 0.5, 1e-6);
    assert_close(kp_clicksim_click_prob(&c, kp_grade_canonical(&scales[0], 4.0f)), 1.0, 1e-6);
}

TH_MAIN(cmocka_unit_test(test_determinism), cmocka_unit_test(test_structure),
        cmocka_unit_test(test_ctr_decreases_with_position),
        cmocka_unit_test(test_ctr_increases_with_grade),
        cmocka_unit_test(test_errors_and_roundtrip), cmocka_unit_test(test_lexical_engine),
        cmocka_unit_test(test_click_prob_grade_scales))

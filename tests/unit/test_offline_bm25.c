/* Unit tests for model/bm25: tokenizer, hand-computed scores, index vs naive reference. */
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

#include "model/bm25.h"
#include "model/tsv.h"
#include "th_main.h"

#define assert_close(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

static void test_tokenize(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(kp_bm25_tokenize("Simpson Strong-Tie 12-Gauge Angle", out, sizeof(out)), 6);
    assert_string_equal(out, "simpson strong tie 12 gauge angle");
    assert_int_equal(kp_bm25_tokenize("$ hole saw", out, sizeof(out)), 2);
    assert_string_equal(out, "hole saw");
    /* UTF-8 bytes pass through untouched (only ASCII is lowercased) */
    assert_int_equal(kp_bm25_tokenize("Caf\xc3\xa9 CR\xc3\x88ME, 1/2\"", out, sizeof(out)), 4);
    assert_string_equal(out, "caf\xc3\xa9 cr\xc3\x88me 1 2");
    assert_int_equal(kp_bm25_tokenize("  --  ", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    char small[6];
    assert_int_equal(kp_bm25_tokenize("abc def ghi", small, sizeof(small)), 3);
    assert_string_equal(small, "abc d");
    assert_int_equal(kp_bm25_tokenize(NULL, out, sizeof(out)), -1);
}

static void test_hand_scores(void **state)
{
    (void)state;
    const char *docs[] = {"a b", "A", "c", NULL};
    char err[128];
    kp_bm25 *m = kp_bm25_build(docs, 4, KP_BM25_K1, KP_BM25_B, err, sizeof(err));
    assert_non_null(m);
    assert_int_equal(kp_bm25_n_docs(m), 4);
    assert_int_equal(kp_bm25_n_terms(m), 3);
    /* N = 4, avgdl = 4/4 = 1; "b": df 1, idf = ln(1 + 3.5/1.5); doc 0 has |d| = 2, tf 1 */
    double idf_b = log(1.0 + 3.5 / 1.5);
    double w = 2.2 / (1.0 + 1.2 * (0.25 + 0.75 * 2.0));
    assert_close(kp_bm25_score(m, "b", 0), idf_b * w, 1e-6);
    assert_close(kp_bm25_score(m, "B b  B", 0), idf_b * w, 1e-6); /* distinct terms */
    assert_close(kp_bm25_score(m, "b", 1), 0.0, 0);
    /* "a": df 2, idf = ln(1 + 2.5/2.5) = ln 2; doc 1 has |d| = 1 = avgdl */
    assert_close(kp_bm25_score(m, "a", 1), log(2.0) * 2.2 / 2.2, 1e-6);
    assert_close(kp_bm25_score(m, "a b", 0), log(2.0) * w + idf_b * w,
                 1e-6); /* both terms, same doc length */
    assert_true(isnan(kp_bm25_score(m, "a", 4)));
    assert_true(isnan(kp_bm25_score(m, NULL, 0)));

    int doc[4];
    float sc[4];
    assert_int_equal(kp_bm25_topk(m, "a b", 4, doc, sc), 2);
    assert_int_equal(doc[0], 0); /* has both terms */
    assert_int_equal(doc[1], 1);
    assert_true(sc[0] > sc[1]);
    assert_int_equal(kp_bm25_topk(m, "zzz", 4, doc, sc), 0);
    assert_int_equal(kp_bm25_topk(m, "a", 0, doc, sc), 0);
    assert_int_equal(kp_bm25_topk(m, "a", -1, doc, sc), -1);
    kp_bm25_free(m);
    kp_bm25_free(NULL);

    assert_null(kp_bm25_build(docs, 4, 1.2f, 1.5f, err, sizeof(err)));
    assert_non_null(strstr(err, "bad arguments"));
    assert_null(kp_bm25_build(NULL, 3, 1.2f, 0.75f, err, sizeof(err)));
    m = kp_bm25_build(NULL, 0, 1.2f, 0.75f, err, sizeof(err)); /* empty index is valid */
    assert_non_null(m);
    assert_int_equal(kp_bm25_topk(m, "a", 3, doc, sc), 0);
    kp_bm25_free(m);
}

/* ---- naive reference: re-tokenize every document per query, formula straight from bm25.h ---- */

#define MAXTOK 64

static int split_words(const char *text, char words[][32])
{
    char buf[1024];
    kp_bm25_tokenize(text, buf, sizeof(buf));
    int n = 0;
    for (char *w = strtok(buf, " "); w && n < MAXTOK; w = strtok(NULL, " ")) {
        snprintf(words[n], 32, "%s", w);
        n++;
    }
    return n;
}

static double naive_score(const char *const *docs, int n_docs, const char *query, int doc)
{
    static char qw[MAXTOK][32], dw[MAXTOK][32];
    int nq = split_words(query, qw);
    double total_len = 0;
    for (int d = 0; d < n_docs; d++)
        total_len += split_words(docs[d], dw);
    double avgdl = total_len / n_docs, s = 0.0;
    for (int i = 0; i < nq; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= strcmp(qw[i], qw[j]) == 0;
        if (seen) continue;
        int df = 0, tf = 0, dl = 0;
        for (int d = 0; d < n_docs; d++) {
            int n = split_words(docs[d], dw), c = 0;
            for (int t = 0; t < n; t++)
                c += strcmp(dw[t], qw[i]) == 0;
            df += c > 0;
            if (d == doc) {
                tf = c;
                dl = n;
            }
        }
        if (tf == 0) continue;
        double idf = log(1.0 + (n_docs - df + 0.5) / (df + 0.5));
        s += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / avgdl));
    }
    return s;
}

static const char *const WORDS[] = {
    "drill", "saw",  "paint", "red",   "blue", "white", "door", "knob",     "led",         "bulb",
    "wood",  "deck", "stain", "Drill", "1/2",  "in.",   "x",    "12-gauge", "caf\xc3\xa9", "pipe"};

static char *random_phrase(uint64_t *s, int max_words)
{
    char *p = malloc(256);
    assert_non_null(p);
    p[0] = '\0';
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    int n = 1 + (int)((*s >> 33) % (uint64_t)max_words);
    for (int i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        const char *w = WORDS[(*s >> 33) % (sizeof(WORDS) / sizeof(WORDS[0]))];
        if (i) strcat(p, " ");
        strcat(p, w);
    }
    return p;
}

static void test_against_naive(void **state)
{
    (void)state;
    enum { D = 150, Q = 40, K = 7 };
    uint64_t s = 7;
    char *docs[D], *qs[Q];
    for (int d = 0; d < D; d++)
        docs[d] = random_phrase(&s, 4);
    for (int q = 0; q < Q; q++)
        qs[q] = random_phrase(&s, 6);
    char err[128];
    kp_bm25 *m =
        kp_bm25_build((const char *const *)docs, D, KP_BM25_K1, KP_BM25_B, err, sizeof(err));
    assert_non_null(m);
    double ref[D];
    for (int q = 0; q < Q; q++) {
        int n_pos = 0;
        for (int d = 0; d < D; d++) {
            ref[d] = naive_score((const char *const *)docs, D, qs[q], d);
            assert_close(kp_bm25_score(m, qs[q], d), ref[d], 1e-5 * (1.0 + ref[d]));
            n_pos += ref[d] > 0;
        }
        int doc[K];
        float sc[K];
        int n = kp_bm25_topk(m, qs[q], K, doc, sc);
        assert_int_equal(n, n_pos < K ? n_pos : K);
        for (int r = 0; r < n; r++) {
            /* the same value as the pair scorer, bit for bit */
            assert_true(sc[r] == kp_bm25_score(m, qs[q], doc[r]));
            if (r) assert_true(sc[r - 1] > sc[r] || (sc[r - 1] == sc[r] && doc[r - 1] < doc[r]));
        }
        /* nothing left out scores above the last returned one */
        for (int d = 0; d < D && n == K; d++) {
            int in = 0;
            for (int r = 0; r < n; r++)
                in |= doc[r] == d;
            float v = kp_bm25_score(m, qs[q], d);
            if (!in) assert_true(v < sc[n - 1] || (v == sc[n - 1] && d > doc[n - 1]));
        }
    }
    kp_bm25_free(m);
    for (int d = 0; d < D; d++)
        free(docs[d]);
    for (int q = 0; q < Q; q++)
        free(qs[q]);
}

static void test_homedepot_if_present(void **state)
{
    (void)state;
    const char *kp = "/work/shared/data/homedepot/keyphrases.tsv";
    const char *ip = "/work/shared/data/homedepot/items.tsv";
    if (access(kp, R_OK) != 0 || access(ip, R_OK) != 0) {
        skip();
        return;
    }
    kp_texts keys, items;
    char err[256];
    assert_int_equal(kp_texts_load(kp, &keys, err, sizeof(err)), 0);
    assert_int_equal(kp_texts_load(ip, &items, err, sizeof(err)), 0);
    kp_bm25 *m = kp_bm25_build((const char *const *)keys.text, keys.n, KP_BM25_K1, KP_BM25_B, err,
                               sizeof(err));
    assert_non_null(m);
    assert_int_equal(kp_bm25_n_docs(m), keys.n);
    int doc[20];
    float sc[20];
    int with_hits = 0;
    for (int i = 0; i < items.n; i += 50) {
        int n = kp_bm25_topk(m, items.text[i], 20, doc, sc);
        assert_true(n >= 0 && n <= 20);
        with_hits += n > 0;
        for (int r = 0; r < n; r++)
            assert_true(sc[r] == kp_bm25_score(m, items.text[i], doc[r]));
    }
    assert_true(with_hits > 0);
    kp_bm25_free(m);
    kp_texts_free(&keys);
    kp_texts_free(&items);
}

TH_MAIN(cmocka_unit_test(test_tokenize), cmocka_unit_test(test_hand_scores),
        cmocka_unit_test(test_against_naive), cmocka_unit_test(test_homedepot_if_present))

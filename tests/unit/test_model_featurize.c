/* Tests for model/featurize: normalisation, features, token-set keys, robustness. */
#include <locale.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include <cmocka.h>

#include "model/featurize.h"
#include "model/rng.h"
#include "th_main.h"
#include "testhelp.h"

static void norm_eq(const char *in, const char *want)
{
    char out[512];
    size_t n = kp_feat_normalize(in, strlen(in), out, sizeof(out));
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
}

static void test_normalize_ascii(void **state)
{
    (void)state;
    norm_eq("Red SHOES!!  size-10", "red shoes size 10");
    norm_eq("  ...leading, trailing;;  ", "leading trailing");
    norm_eq("", "");
    norm_eq("!!!", "");
    norm_eq("a\tb\nc\r\nD", "a b c d");
}

static void test_normalize_unicode(void **state)
{
    (void)state;
    norm_eq("CAF\xc3\x89 \xc3\x9cN\xc3\x8f", "caf\xc3\xa9 \xc3\xbcn\xc3\xaf"); /* CAFÉ ÜNÏ */
    norm_eq("\xc4\x9e\xc3\x9cZEL \xc5\x81\xc3\x93"
            "D\xc5\xb9",
            "\xc4\x9f\xc3\xbczel "
            "\xc5\x82\xc3\xb3"
            "d\xc5\xba");
    norm_eq("\xce\x91\xce\x98\xce\x97\xce\x9d\xce\x91", "\xce\xb1\xce\xb8\xce\xb7\xce\xbd\xce\xb1");
    norm_eq("\xce\xbf\xce\xb4\xcf\x8c\xcf\x82",
            "\xce\xbf\xce\xb4\xcf\x8c\xcf\x83"); /* final sigma */
    norm_eq("\xd0\x9c\xd0\x9e\xd0\xa1\xd0\x9a\xd0\x92\xd0\x90 \xd0\x81\xd0\xb6",
            "\xd0\xbc\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0 \xd1\x91\xd0\xb6");
    norm_eq("cafe\xcc\x81", "cafe"); /* combining accent */
    norm_eq("\xef\xbc\xa1\xef\xbc\xa2\xef\xbd\x83\xef\xbc\x91\xef\xbc\x92",
            "abc12"); /* fullwidth */
    norm_eq("caf\xc3\xa9\xe2\x80\x94"
            "bar\xe2\x84\xa2 \xf0\x9f\x91\x9f shoe",
            "caf\xc3\xa9 bar shoe");
    norm_eq("x\xc2\xb2", "x2");
    norm_eq("\xe4\xb8\xad\xe6\x96\x87\xe3\x80\x82ok", "\xe4\xb8\xad\xe6\x96\x87 ok"); /* CJK kept */
}

static void test_normalize_invalid_utf8(void **state)
{
    (void)state;
    norm_eq("ab\xff\xfe"
            "cd",
            "abcd");
    norm_eq("ab\xc0\xaf"
            "cd",
            "abcd"); /* overlong '/' */
    norm_eq("ab\xed\xa0\x80"
            "cd",
            "abcd"); /* surrogate */
    norm_eq("ab\xf4\x90\x80\x80"
            "cd",
            "abcd");             /* > U+10FFFF */
    norm_eq("ab\xe2\x82", "ab"); /* truncated sequence at the end */
    norm_eq("\x80\x80x\xc3", "x");
    /* embedded NUL is a separator, len is honoured */
    char buf[16];
    size_t n = kp_feat_normalize("ab\0cd", 5, buf, sizeof(buf));
    assert_int_equal(n, 5);
    assert_string_equal(buf, "ab cd");
}

static void test_normalize_truncation(void **state)
{
    (void)state;
    char out[4];
    /* "ééé": 6 bytes; 3 usable bytes hold one é, never half of the second */
    size_t n = kp_feat_normalize("\xc3\xa9\xc3\xa9\xc3\xa9", 6, out, sizeof(out));
    assert_int_equal(n, 2);
    assert_memory_equal(out, "\xc3\xa9", 3);
    assert_int_equal(kp_feat_normalize("abc", 3, out, 0), 0);
    assert_int_equal(kp_feat_normalize("abc", 3, NULL, 10), 0);
    char one[1];
    assert_int_equal(kp_feat_normalize("abc", 3, one, 1), 0);
    assert_int_equal(one[0], '\0');
}

/* Compares our case mapping with the C library's (C.UTF-8) on the tabled blocks. */
static void test_case_mapping_vs_libc(void **state)
{
    (void)state;
    if (!setlocale(LC_CTYPE, "C.UTF-8") && !setlocale(LC_CTYPE, "C.utf8")) skip();
    int checked = 0;
    const uint32_t ranges[][2] = {{0x41, 0x5A},   {0xC0, 0xDE},   {0x100, 0x17F}, {0x386, 0x3AB},
                                  {0x400, 0x42F}, {0x460, 0x481}, {0x48A, 0x4FF}};
    for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
        for (uint32_t cp = ranges[r][0]; cp <= ranges[r][1]; cp++) {
            if (!iswupper((wint_t)cp)) continue;
            wint_t lo = towlower((wint_t)cp);
            if (lo == (wint_t)cp) continue;
            assert_int_equal(kp_feat_norm_cp(cp), (int32_t)lo);
            checked++;
        }
    }
    assert_true(checked > 200);
    setlocale(LC_CTYPE, "C");
}

/* norm(norm(c)) == norm(c) for every code point: lower-case output is a fixed point. */
static void test_norm_idempotent(void **state)
{
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        int32_t n = kp_feat_norm_cp(cp);
        if (n < 0) continue;
        assert_int_equal(kp_feat_norm_cp((uint32_t)n), n);
    }
}

static int count_tokens(const char *norm, int *sum_cp)
{
    int n = 0, in = 0;
    *sum_cp = 0;
    for (const unsigned char *p = (const unsigned char *)norm; *p; p++) {
        if (*p == ' ') {
            in = 0;
            continue;
        }
        if (!in) n++;
        in = 1;
        if ((*p & 0xC0) != 0x80) (*sum_cp)++;
    }
    return n;
}

static void test_feature_counts(void **state)
{
    (void)state;
    const char *texts[] = {"red shoes", "Nike Air Max 90, size 10!", "a", "\xce\x91\xce\x98 x",
                           "drill 18v cordless \xe2\x80\x93 DeWALT"};
    uint32_t ids[KP_FEAT_MAX_IDS];
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        char norm[256];
        kp_feat_normalize(texts[i], strlen(texts[i]), norm, sizeof(norm));
        int sum_cp, nt = count_tokens(norm, &sum_cp);
        int want = nt + (nt - 1) + sum_cp; /* unigrams + bigrams + trigrams of "#w#" */
        int n = kp_featurize(texts[i], strlen(texts[i]), 1u << 18, ids, KP_FEAT_MAX_IDS);
        assert_int_equal(n, want);
        for (int k = 0; k < n; k++)
            assert_true(ids[k] < (1u << 18));
    }
    assert_int_equal(kp_featurize("", 0, 1024, ids, KP_FEAT_MAX_IDS), 0);
    assert_int_equal(kp_featurize(" ,;! ", 5, 1024, ids, KP_FEAT_MAX_IDS), 0);
    assert_int_equal(kp_featurize("abc", 3, 0, ids, KP_FEAT_MAX_IDS), 0);
    assert_int_equal(kp_featurize("abc", 3, 1024, ids, 0), 0);
    assert_int_equal(kp_featurize(NULL, 3, 1024, ids, 10), 0);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void test_feature_invariance_and_order(void **state)
{
    (void)state;
    uint32_t a[64], b[64], c[64];
    int na = kp_featurize("Red Shoes", 9, 1u << 20, a, 64);
    int nb = kp_featurize("  red, SHOES!! ", 15, 1u << 20, b, 64);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na * sizeof(uint32_t));
    /* reversed words: same unigrams/trigrams, different bigram */
    int nc = kp_featurize("shoes red", 9, 1u << 20, c, 64);
    assert_int_equal(nc, na);
    qsort(a, (size_t)na, sizeof(uint32_t), cmp_u32);
    qsort(c, (size_t)nc, sizeof(uint32_t), cmp_u32);
    assert_memory_not_equal(a, c, (size_t)na * sizeof(uint32_t));
    /* unigram of "ab" differs from the trigram "#ab"/"ab#" features (salts) */
    uint32_t d[8];
    int nd = kp_featurize("ab", 2, 1u << 30, d, 8);
    assert_int_equal(nd, 3);
    assert_int_not_equal(d[0], d[1]);
    assert_int_not_equal(d[0], d[2]);
    assert_int_not_equal(d[1], d[2]);
}

static void test_feature_truncation_prefix(void **state)
{
    (void)state;
    const char *t = "one two three four five six";
    uint32_t full[128], part[128];
    int nf = kp_featurize(t, strlen(t), 4096, full, 128);
    for (int m = 1; m < nf; m += 3) {
        int np = kp_featurize(t, strlen(t), 4096, part, m);
        assert_int_equal(np, m);
        assert_memory_equal(part, full, (size_t)m * sizeof(uint32_t));
    }
    /* a long text is capped at max_ids */
    char big[8192];
    size_t w = 0;
    while (w + 8 < sizeof(big))
        w += (size_t)snprintf(big + w, sizeof(big) - w, "w%d ", (int)w);
    uint32_t ids[KP_FEAT_MAX_IDS];
    assert_int_equal(kp_featurize(big, w, 4096, ids, KP_FEAT_MAX_IDS), KP_FEAT_MAX_IDS);
}

/* Golden values: they pin the hash function across machines and builds. If this test fails the
 * feature mapping changed: bump KP_FEAT_VERSION (old checkpoints become invalid) and update. */
static void test_feature_golden(void **state)
{
    (void)state;
    uint32_t ids[16];
    int n = kp_featurize("Red shoes", 9, 1u << 18, ids, 16);
    assert_int_equal(n, 11);
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < n; i++)
        h = (h ^ ids[i]) * 1099511628211ULL;
    assert_true(h == 0xc20dd30dce8a0a23ULL);
}

static void test_tokenset_key(void **state)
{
    (void)state;
    uint64_t k1 = kp_feat_tokenset_key("Red Shoes", 9);
    assert_true(k1 != 0);
    assert_true(k1 == kp_feat_tokenset_key("shoes red", 9));
    assert_true(k1 == kp_feat_tokenset_key("SHOES, red red", 14));
    assert_true(k1 != kp_feat_tokenset_key("red shoe", 8));
    assert_true(k1 != kp_feat_tokenset_key("red shoes blue", 14));
    assert_true(kp_feat_tokenset_key("", 0) == 0);
    assert_true(kp_feat_tokenset_key("?!", 2) == 0);
    assert_true(kp_feat_tokenset_key(NULL, 5) == 0);
    /* more than 128 distinct tokens: still a set key */
    char a[4096], b[4096];
    size_t wa = 0, wb = 0;
    for (int i = 0; i < 300; i++) {
        wa += (size_t)snprintf(a + wa, sizeof(a) - wa, "t%d ", i);
        wb += (size_t)snprintf(b + wb, sizeof(b) - wb, "t%d ", 299 - i);
    }
    assert_true(kp_feat_tokenset_key(a, wa) == kp_feat_tokenset_key(b, wb));
    assert_true(kp_feat_tokenset_key(a, wa) != kp_feat_tokenset_key(a, wa - 5)); /* drop t299 */
}

/* Random bytes (biased toward UTF-8 lead/continuation bytes) never crash or break contracts. */
static void test_fuzz(void **state)
{
    (void)state;
    kp_rng r = th_rng(7);
    unsigned char buf[256];
    char out[300];
    uint32_t ids[64];
    for (int it = 0; it < 20000; it++) {
        size_t len = (size_t)kp_rng_below(&r, sizeof(buf));
        for (size_t i = 0; i < len; i++) {
            uint64_t x = kp_rng_next(&r);
            buf[i] =
                (x & 3) == 0 ? (unsigned char)(0x80 | ((x >> 8) & 0x7F)) : (unsigned char)(x >> 16);
        }
        uint32_t nbk = 1 + (uint32_t)kp_rng_below(&r, 5000);
        int n = kp_featurize((const char *)buf, len, nbk, ids, 64);
        assert_true(n >= 0 && n <= 64);
        for (int k = 0; k < n; k++)
            assert_true(ids[k] < nbk);
        size_t w = kp_feat_normalize((const char *)buf, len, out, sizeof(out));
        assert_true(w <= len);
        assert_int_equal(strlen(out), w);
        /* output is valid UTF-8 and normalising it again is the identity */
        size_t pos = 0;
        while (pos < w)
            assert_true(kp_feat_utf8_next((const unsigned char *)out, w, &pos) >= 0);
        char again[300];
        size_t w2 = kp_feat_normalize(out, w, again, sizeof(again));
        assert_int_equal(w2, w);
        assert_memory_equal(again, out, w);
        (void)kp_feat_tokenset_key((const char *)buf, len);
    }
}

TH_MAIN(cmocka_unit_test(test_normalize_ascii), cmocka_unit_test(test_normalize_unicode),
        cmocka_unit_test(test_normalize_invalid_utf8), cmocka_unit_test(test_normalize_truncation),
        cmocka_unit_test(test_case_mapping_vs_libc), cmocka_unit_test(test_norm_idempotent),
        cmocka_unit_test(test_feature_counts), cmocka_unit_test(test_feature_invariance_and_order),
        cmocka_unit_test(test_feature_truncation_prefix), cmocka_unit_test(test_feature_golden),
        cmocka_unit_test(test_tokenset_key), cmocka_unit_test(test_fuzz))

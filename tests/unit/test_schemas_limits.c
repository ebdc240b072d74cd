/* test_schemas_limits.c - the field limits of every record (schemas/validate.c): hostile but
 * decodable events (NaN / out-of-range numbers, huge or non-UTF-8 strings) are refused with a
 * reason, good ones pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "schemas/codec.h"
#include "th_main.h"

#define ERRLEN KP_CODEC_ERRLEN

/* Runs check on each case: want NULL = valid, else a prefix of the reason. */
static void expect(int rc, const char *err, const char *want, int i)
{
    if (!want) {
        if (rc) print_error("case %d: unexpected '%s'\n", i, err);
        assert_int_equal(rc, 0);
    } else {
        if (!rc) print_error("case %d: accepted, expected '%s'\n", i, want);
        assert_int_equal(rc, -1);
        if (strncmp(err, want, strlen(want))) print_error("case %d: '%s'\n", i, err);
        assert_memory_equal(err, want, strlen(want));
    }
}

static void test_judgment_limits(void **state)
{
    (void)state;
    char err[ERRLEN], *kp513 = malloc(514);
    assert_non_null(kp513);
    memset(kp513, 'k', 513);
    kp513[513] = '\0';
    struct {
        kp_judgment v;
        const char *want;
    } cases[] = {
        {{"i1", "Drill", "cordless drill", KP_JUDGE_LLM, 0.7, 1}, NULL},
        {{"", "Drill", "drill", KP_JUDGE_HUMAN, 0.0, 0}, NULL}, /* item_id is optional */
        {{"i1", "Drill", "drill", KP_JUDGE_SEARCH, 1.0, 0}, NULL},
        {{"i1", "Drill", "drill", KP_JUDGE_LLM, NAN, 0}, "score out of range"},
        {{"i1", "Drill", "drill", KP_JUDGE_LLM, 7.5, 0}, "score out of range (7.5"},
        {{"i1", "Drill", "drill", KP_JUDGE_LLM, -1e300, 0}, "score out of range"},
        {{"i1", "Drill", "drill", KP_JUDGE_LLM, INFINITY, 0}, "score out of range"},
        {{"i1", "Drill", "drill", (kp_judge_source)9, 0.5, 0}, "unknown judgment source 9"},
        {{"i1", NULL, "drill", KP_JUDGE_LLM, 0.5, 0}, "missing title"},
        {{"i1", "  ", "drill", KP_JUDGE_LLM, 0.5, 0}, "empty title"},
        {{"i1", "Drill", "", KP_JUDGE_LLM, 0.5, 0}, "missing keyphrase"},
        {{"i1", "Drill", kp513, KP_JUDGE_LLM, 0.5, 0}, "keyphrase too long (513 > 512 bytes)"},
        {{"i1", "Dr\xff", "drill", KP_JUDGE_LLM, 0.5, 0}, "title is not valid UTF-8 (byte 2)"},
        {{"i1", "Drill", "dr\xc0\xaf", KP_JUDGE_LLM, 0.5, 0}, "keyphrase is not valid UTF-8"},
        {{"i1", "Drill", "drill", KP_JUDGE_LLM, 0.5, -5}, "ts out of range"},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        err[0] = '\0';
        expect(kp_validate_judgment(&cases[i].v, 1024, err, sizeof err), err, cases[i].want, i);
    }
    kp_judgment long_title = {"i1", kp513, "drill", KP_JUDGE_LLM, 0.5, 0};
    expect(kp_validate_judgment(&long_title, 100, err, sizeof err), err,
           "title too long (513 > 100 bytes)", 99);
    assert_int_equal(kp_validate_judgment(NULL, 10, err, sizeof err), -1);
    free(kp513);
}

static void test_ad_event_limits(void **state)
{
    (void)state;
    char err[ERRLEN], id257[258];
    memset(id257, 'x', 257);
    id257[257] = '\0';
    struct {
        kp_ad_event v;
        const char *want;
    } cases[] = {
        {{"i1", "drill", KP_AD_CLICK, 3, 1754000000000LL}, NULL},
        {{"i1", "drill", KP_AD_IMPRESSION, 0, 0}, NULL},
        {{"", "drill", KP_AD_CLICK, 1, 0}, "missing item_id"},
        {{"i1", NULL, KP_AD_CLICK, 1, 0}, "missing keyphrase"},
        {{"i1", "\t", KP_AD_CLICK, 1, 0}, "empty keyphrase"},
        {{id257, "drill", KP_AD_CLICK, 1, 0}, "item_id too long (257 > 256 bytes)"},
        {{"i1", "drill", (kp_ad_kind)5, 1, 0}, "unknown ad event kind 5"},
        {{"i1", "drill", KP_AD_CLICK, -1, 0}, "position out of range (-1"},
        {{"i1", "drill", KP_AD_CLICK, 1001, 0}, "position out of range (1001"},
        {{"i1", "drill", KP_AD_CLICK, 1, INT64_MAX}, "ts out of range"},
        {{"i\xed\xa0\x80", "drill", KP_AD_CLICK, 1, 0}, "item_id is not valid UTF-8 (byte 1)"},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        err[0] = '\0';
        expect(kp_validate_ad_event(&cases[i].v, err, sizeof err), err, cases[i].want, i);
    }
    assert_int_equal(kp_validate_ad_event(NULL, err, sizeof err), -1);
}

/* The case: a 900 KB non-UTF-8 keyphrase goes through the codec (it is valid Avro) and
 * is refused by the limits. */
static void test_huge_keyphrase_decodes_then_fails(void **state)
{
    (void)state;
    char err[ERRLEN];
    kp_codec *c = kp_codec_new(err, sizeof err);
    assert_non_null(c);
    size_t n = 900 * 1024;
    char *kp = malloc(n + 1);
    assert_non_null(kp);
    memset(kp, 'a', n);
    kp[n / 2] = (char)0xfe;
    kp[n] = '\0';
    kp_ad_event in = {"item-1", kp, KP_AD_CLICK, 2, 1754000000000LL}, out;
    void *buf;
    size_t len;
    assert_int_equal(kp_encode_ad_event(c, &in, &buf, &len), 0);
    assert_int_equal(kp_decode_ad_event(c, buf, len, &out, err, sizeof err), 0);
    assert_int_equal(kp_validate_ad_event(&out, err, sizeof err), -1);
    assert_string_equal(err, "keyphrase too long (921600 > 512 bytes)");
    kp_ad_event_clear(&out);
    free(buf);
    kp[4] = (char)0xfe;
    kp[5] = '\0';
    assert_int_equal(kp_encode_ad_event(c, &in, &buf, &len), 0);
    assert_int_equal(kp_decode_ad_event(c, buf, len, &out, err, sizeof err), 0);
    assert_int_equal(kp_validate_ad_event(&out, err, sizeof err), -1);
    assert_string_equal(err, "keyphrase is not valid UTF-8 (byte 4)");
    kp_ad_event_clear(&out);
    free(buf);
    free(kp);
    kp_codec_free(c);
}

static void test_item_and_suggestion_limits(void **state)
{
    (void)state;
    char err[ERRLEN];
    kp_item_listed ok = {"i1", "Drill", "tools", "s1", 19.99, 1754000000000LL};
    assert_int_equal(kp_validate_item_listed(&ok, 1024, err, sizeof err), 0);
    kp_item_listed nan_price = ok, neg_price = ok, bad_ts = ok, bad_seller = ok;
    nan_price.price = NAN;
    neg_price.price = -1.5;
    bad_ts.listed_at = -7;
    bad_seller.seller_id = "s\xff";
    expect(kp_validate_item_listed(&nan_price, 1024, err, sizeof err), err, "price out of range",
           0);
    expect(kp_validate_item_listed(&neg_price, 1024, err, sizeof err), err,
           "price out of range (-1.5)", 1);
    expect(kp_validate_item_listed(&bad_ts, 1024, err, sizeof err), err, "listed_at out of range",
           2);
    expect(kp_validate_item_listed(&bad_seller, 1024, err, sizeof err), err,
           "seller_id is not valid UTF-8 (byte 1)", 3);

    kp_suggestion_owned s[2] = {{"drill", NULL, 0.5f}, {"saw", "k2", 0.25f}};
    kp_suggestions_decoded d = {"i1", 3, 4, 2, s, NULL};
    assert_int_equal(kp_validate_suggestions(&d, err, sizeof err), 0);
    s[1].score = NAN;
    expect(kp_validate_suggestions(&d, err, sizeof err), err,
           "suggestion 1: score is not a finite number", 4);
    s[1].score = 0.1f;
    s[0].keyphrase = "";
    expect(kp_validate_suggestions(&d, err, sizeof err), err, "missing keyphrase", 5);
    s[0].keyphrase = "drill";
    d.n = KP_SUGGESTIONS_MAX + 1;
    expect(kp_validate_suggestions(&d, err, sizeof err), err, "bad suggestion count", 6);
    d.n = 2;
    d.item_id = NULL;
    expect(kp_validate_suggestions(&d, err, sizeof err), err, "missing item_id", 7);
}

TH_MAIN(cmocka_unit_test(test_judgment_limits), cmocka_unit_test(test_ad_event_limits),
        cmocka_unit_test(test_huge_keyphrase_decodes_then_fails),
        cmocka_unit_test(test_item_and_suggestion_limits))

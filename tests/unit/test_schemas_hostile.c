/* test_schemas_hostile.c - Avro decoders on hostile input: every truncation, hand-made bodies,
 * random garbage and bit flips; and a decode speed floor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schemas/codec.h"
#include "schemas_testhelp.h"

typedef int (*decode_fn)(kp_codec *c, const void *buf, size_t len, char *err, size_t errlen);

/* Decode as type t (0..3); on success check the strings and free. Returns the decoder's result. */
static int decode_any(kp_codec *c, int t, const void *buf, size_t len, char *err, size_t errlen)
{
    int r;
    switch (t) {
    case 0: {
        kp_item_listed v;
        r = kp_decode_item_listed(c, buf, len, &v, err, errlen);
        if (r == 0) {
            assert_non_null(v.item_id);
            assert_non_null(v.title);
            assert_non_null(v.category);
            assert_non_null(v.seller_id);
        } else {
            assert_null(v.item_id);
            assert_null(v.title);
        }
        kp_item_listed_clear(&v);
        return r;
    }
    case 1: {
        kp_ad_event v;
        r = kp_decode_ad_event(c, buf, len, &v, err, errlen);
        if (r == 0) {
            assert_non_null(v.item_id);
            assert_non_null(v.keyphrase);
            assert_true(v.kind == KP_AD_IMPRESSION || v.kind == KP_AD_CLICK);
        } else {
            assert_null(v.item_id);
        }
        kp_ad_event_clear(&v);
        return r;
    }
    case 2: {
        kp_judgment v;
        r = kp_decode_judgment(c, buf, len, &v, err, errlen);
        if (r == 0) {
            assert_non_null(v.keyphrase);
            assert_true(v.source <= KP_JUDGE_SEARCH);
        } else {
            assert_null(v.item_id);
        }
        kp_judgment_clear(&v);
        return r;
    }
    default: {
        kp_suggestions_decoded v;
        r = kp_decode_suggestions(c, buf, len, &v, err, errlen);
        if (r == 0) {
            assert_non_null(v.item_id);
            assert_true(v.n >= 0 && (size_t)v.n <= len);
            for (int i = 0; i < v.n; i++)
                assert_non_null(v.items[i].keyphrase);
        } else {
            assert_null(v.items);
            assert_int_equal(v.n, 0);
        }
        kp_suggestions_clear(&v);
        return r;
    }
    }
}

/* One valid encoding of each type (index = type of decode_any). */
static void encode_samples(kp_codec *c, void *buf[4], size_t len[4])
{
    kp_item_listed it = {"item-9", "Stainless sink \xe2\x82\xac", "Kitchen", "s9", 77.5, 1234567};
    kp_ad_event ad = {"item-9", "steel sink", KP_AD_CLICK, 2, 99};
    kp_judgment j = {"item-9", "Stainless sink", "steel sink", KP_JUDGE_LLM, 0.75, 5};
    kp_suggestion s[2] = {{"steel sink", "kp-1", 0.9f}, {"kitchen sink", NULL, 0.8f}};
    assert_int_equal(kp_encode_item_listed(c, &it, &buf[0], &len[0]), 0);
    assert_int_equal(kp_encode_ad_event(c, &ad, &buf[1], &len[1]), 0);
    assert_int_equal(kp_encode_judgment(c, &j, &buf[2], &len[2]), 0);
    assert_int_equal(kp_encode_suggestions(c, "item-9", 3, 4, s, 2, &buf[3], &len[3]), 0);
}

static void test_truncated_at_every_length(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN];
    void *buf[4];
    size_t len[4];
    encode_samples(c, buf, len);
    for (int t = 0; t < 4; t++) {
        assert_int_equal(decode_any(c, t, buf[t], len[t], err, sizeof(err)), 0);
        for (size_t l = 0; l < len[t]; l++) {
            /* a copy of exactly l bytes, so ASan sees any read past the end */
            unsigned char *cut = malloc(l ? l : 1);
            assert_non_null(cut);
            memcpy(cut, buf[t], l);
            err[0] = '\0';
            assert_int_equal(decode_any(c, t, cut, l, err, sizeof(err)), -1);
            if (!strstr(err, "truncated")) print_error("type %d len %zu: %s\n", t, l, err);
            assert_non_null(strstr(err, "truncated"));
            free(cut);
        }
        /* one byte too many */
        unsigned char *more = malloc(len[t] + 1);
        assert_non_null(more);
        memcpy(more, buf[t], len[t]);
        more[len[t]] = 0;
        assert_int_equal(decode_any(c, t, more, len[t] + 1, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "trailing bytes"));
        free(more);
        free(buf[t]);
    }
    kp_codec_free(c);
}

/* Hand-made hostile bodies behind a valid ItemListed v0 header (schema: string, string). */
static void test_hostile_bodies(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN];
    kp_item_listed out;
    struct {
        unsigned char body[16];
        size_t n;
        const char *want;
    } cases[] = {
        /* string length 2^62: Avro C would try to malloc it */
        {{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 10, "truncated"},
        /* string length -1 */
        {{0x01}, 1, "bad string length -1"},
        /* a varint that never ends within 10 bytes */
        {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 11, "varint"},
        /* 10th byte overflows 64 bits */
        {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, 10, "varint overflow"},
        /* a NUL inside a string */
        {{0x06, 'a', 0, 'b', 0x02, 't'}, 6, "NUL byte"},
        /* fine */
        {{0x02, 'a', 0x02, 't'}, 4, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char *m = malloc(5 + cases[i].n);
        assert_non_null(m);
        put_wire_header(m, KP_SCHEMA_ID_ITEM_LISTED_V0);
        memcpy(m + 5, cases[i].body, cases[i].n);
        err[0] = '\0';
        int r = kp_decode_item_listed(c, m, 5 + cases[i].n, &out, err, sizeof(err));
        if (cases[i].want) {
            assert_int_equal(r, -1);
            if (!strstr(err, cases[i].want)) print_error("case %zu: %s\n", i, err);
            assert_non_null(strstr(err, cases[i].want));
        } else {
            assert_int_equal(r, 0);
            assert_string_equal(out.item_id, "a");
            assert_string_equal(out.title, "t");
            kp_item_listed_clear(&out);
        }
        free(m);
    }

    /* AdEvent with enum index 2 (only IMPRESSION, CLICK exist) */
    unsigned char ad[] = {0, 0, 0, 0, 2, 0x02, 'i', 0x02, 'q', 0x04, 0x02, 0x02};
    kp_ad_event a;
    assert_int_equal(kp_decode_ad_event(c, ad, sizeof(ad), &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "enum index 2"));
    ad[9] = 0x02; /* CLICK */
    assert_int_equal(kp_decode_ad_event(c, ad, sizeof(ad), &a, err, sizeof(err)), 0);
    assert_int_equal(a.kind, KP_AD_CLICK);
    assert_int_equal(a.position, 1);
    assert_true(a.ts == 1);
    kp_ad_event_clear(&a);
    /* int out of int32 range for position */
    unsigned char ad2[] = {0,   0,    0,    0,    2,    0x02, 'i',  0x02,
                           'q', 0x00, 0xfe, 0xff, 0xff, 0xff, 0x1f, 0x02};
    assert_int_equal(kp_decode_ad_event(c, ad2, sizeof(ad2), &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "int out of range"));

    /* KeyphraseSuggestions: array block count 2^40 with 1 byte left; and a negative count
     * whose block size lies */
    kp_suggestions_decoded sd;
    unsigned char s1[] = {0,    0,    0,    0,    4,    0x02, 'i',  0x02,
                          0x02, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0x00};
    assert_int_equal(kp_decode_suggestions(c, s1, sizeof(s1), &sd, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "truncated"));
    /* count -1, block size 6 (really 7 bytes: "\x02k", null branch 0, 4-byte float) */
    unsigned char s2[] = {0,    0, 0,   0, 4, 0x02, 'i', 0x02, 0x02, 0x01,
                          0x0c, 2, 'k', 0, 0, 0,    0,   0,    0x00};
    assert_int_equal(kp_decode_suggestions(c, s2, sizeof(s2), &sd, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "block size"));
    s2[10] = 0x0e; /* block size 7: the truth */
    assert_int_equal(kp_decode_suggestions(c, s2, sizeof(s2), &sd, err, sizeof(err)), 0);
    assert_int_equal(sd.n, 1);
    assert_string_equal(sd.items[0].keyphrase, "k");
    assert_null(sd.items[0].keyphrase_id);
    kp_suggestions_clear(&sd);
    s2[13] = 0x04; /* union index 2 of ["null", "string"] */
    assert_int_equal(kp_decode_suggestions(c, s2, sizeof(s2), &sd, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "union index 2"));
    kp_codec_free(c);
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return *s = x;
}

static void test_fuzz_garbage(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN];
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    void *valid[4];
    size_t vlen[4];
    encode_samples(c, valid, vlen);
    const int32_t ids[] = {1, 2, 3, 4, 101, 7};
    int ok = 0, fail = 0;
    clock_t t0 = clock();
    for (int it = 0; it < 20000; it++) {
        size_t n;
        unsigned char *m;
        int t = (int)(rng_next(&seed) % 4);
        if (it % 2 == 0) {
            /* random body behind a valid header */
            n = 5 + rng_next(&seed) % 48;
            m = malloc(n);
            assert_non_null(m);
            for (size_t i = 5; i < n; i++) {
                uint64_t r = rng_next(&seed);
                /* bias to small varints so that records sometimes parse */
                m[i] = (r & 3) ? (unsigned char)((r >> 8) & 0x0f) : (unsigned char)(r >> 16);
            }
            int32_t id = ids[rng_next(&seed) % 6];
            put_wire_header(m, id);
        } else {
            /* a valid message with 1..4 random bytes changed in the body */
            int src = (int)(rng_next(&seed) % 4);
            n = vlen[src];
            m = malloc(n);
            assert_non_null(m);
            memcpy(m, valid[src], n);
            int flips = 1 + (int)(rng_next(&seed) % 4);
            for (int k = 0; k < flips; k++)
                m[5 + rng_next(&seed) % (n - 5)] = (unsigned char)rng_next(&seed);
            t = src;
        }
        err[0] = '\0';
        int r = decode_any(c, t, m, n, err, sizeof(err));
        assert_true(r == 0 || r == -1);
        if (r == 0)
            ok++;
        else {
            fail++;
            assert_true(err[0] != '\0');
        }
        free(m);
    }
    /* both paths were exercised */
    assert_true(ok > 100);
    assert_true(fail > 100);
    print_message("fuzz: %d decoded, %d rejected, %.2fs\n", ok, fail,
                  (double)(clock() - t0) / CLOCKS_PER_SEC);
    /* the codec is still fine */
    for (int t = 0; t < 4; t++) {
        assert_int_equal(decode_any(c, t, valid[t], vlen[t], err, sizeof(err)), 0);
        free(valid[t]);
    }
    kp_codec_free(c);
}

/* Not a benchmark, but catches per-message resolver building: 100k decodes must be quick. */
static void test_decode_speed(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN];
    void *buf[4];
    size_t len[4];
    encode_samples(c, buf, len);
    const int n = 100000;
    clock_t t0 = clock();
    for (int i = 0; i < n; i++) {
        kp_item_listed v;
        assert_int_equal(kp_decode_item_listed(c, buf[0], len[0], &v, err, sizeof(err)), 0);
        kp_item_listed_clear(&v);
    }
    double s = (double)(clock() - t0) / CLOCKS_PER_SEC;
    print_message("ItemListed decode: %.2f us/message\n", 1e6 * s / n);
    assert_true(s < 20.0); /* generous: sanitizer builds are slow */
    for (int t = 0; t < 4; t++)
        free(buf[t]);
    kp_codec_free(c);
}

TH_MAIN(cmocka_unit_test(test_truncated_at_every_length), cmocka_unit_test(test_hostile_bodies),
        cmocka_unit_test(test_fuzz_garbage), cmocka_unit_test(test_decode_speed))

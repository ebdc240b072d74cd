/* test_schemas_codec.c - Avro wire-format codecs: round trips, reuse, encoder checks, bad headers,
 * and built-in schemas == the schemas/ .avsc files. (Evolution: test_schemas_evolution.c, hostile
 * input: test_schemas_hostile.c, validation: test_schemas_validate.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schemas/codec.h"
#include "schemas_testhelp.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb, cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

/* ---- built-in schemas ---------------------------------------------------------------------- */

static void test_builtin_equals_avsc_files(void **state)
{
    (void)state;
    int n = kp_codec_builtin_count();
    assert_int_equal(n, 7);
    for (int i = 0; i < n; i++) {
        int32_t id;
        const char *name, *json;
        char path[1024];
        size_t len;
        assert_int_equal(kp_codec_builtin_info(i, &id, &name, &json), 0);
        snprintf(path, sizeof(path), "%s/schemas/%d-%s.avsc", KPREC_SOURCE_DIR, (int)id, name);
        char *text = slurp(path, &len);
        if (!text) print_error("cannot read %s\n", path);
        assert_non_null(text);
        assert_int_equal(len, strlen(json));
        assert_string_equal(text, json);
        free(text);
    }
    assert_int_equal(kp_codec_builtin_info(n, NULL, NULL, NULL), -1);
    assert_int_equal(kp_codec_builtin_info(-1, NULL, NULL, NULL), -1);

    /* ... and every .avsc file in schemas/ is built in */
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/schemas", KPREC_SOURCE_DIR);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 5, ".avsc") != 0) continue;
        files++;
        int found = 0;
        for (int i = 0; i < n; i++) {
            int32_t id;
            const char *name;
            char fn[256];
            kp_codec_builtin_info(i, &id, &name, NULL);
            snprintf(fn, sizeof(fn), "%d-%s.avsc", (int)id, name);
            found |= strcmp(fn, de->d_name) == 0;
        }
        if (!found) print_error("%s is not built in\n", de->d_name);
        assert_true(found);
    }
    closedir(d);
    assert_int_equal(files, n);
}

static void test_builtin_ids(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    assert_string_equal(kp_codec_schema_name(c, 1), "ItemListed");
    assert_string_equal(kp_codec_schema_name(c, 2), "AdEvent");
    assert_string_equal(kp_codec_schema_name(c, 3), "Judgment");
    assert_string_equal(kp_codec_schema_name(c, 4), "KeyphraseSuggestions");
    assert_string_equal(kp_codec_schema_name(c, 5), "KeyphraseSuggestions");
    assert_string_equal(kp_codec_schema_name(c, 101), "ItemListed");
    assert_string_equal(kp_codec_schema_name(c, 6), "Keyphrase");
    assert_null(kp_codec_schema_name(c, 7));
    assert_null(kp_codec_schema_name(NULL, 1));
    /* the source schemas/ directory holds exactly the built-ins: loading it adds nothing */
    char err[ERRLEN] = "", dir[1024];
    snprintf(dir, sizeof(dir), "%s/schemas", KPREC_SOURCE_DIR);
    assert_int_equal(kp_codec_load_dir(c, dir, err, sizeof(err)), 0);
    kp_codec_free(c);
    kp_codec_free(NULL);
}

/* ---- round trips ------------------------------------------------------------------------ */

static void test_roundtrip_item_listed(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";
    kp_item_listed in = {"v1|1234|0",
                         "Milwaukee M18 drill \xc3\xa9\xe2\x82\xac \xf0\x9f\x94\xa7",
                         "Tools > Power Tools",
                         "seller-9",
                         129.99,
                         1754000000123LL};
    void *buf;
    size_t len;
    assert_int_equal(kp_encode_item_listed(c, &in, &buf, &len), 0);
    assert_true(len > KP_WIRE_HEADER_LEN);
    assert_int_equal(((unsigned char *)buf)[0], 0);
    assert_int_equal(wire_id(buf), KP_SCHEMA_ID_ITEM_LISTED);
    int32_t id = -1;
    assert_int_equal(kp_wire_schema_id(buf, len, &id, err, sizeof(err)), 0);
    assert_int_equal(id, 1);

    kp_item_listed out;
    assert_int_equal(kp_decode_item_listed(c, buf, len, &out, err, sizeof(err)), 0);
    assert_string_equal(out.item_id, in.item_id);
    assert_string_equal(out.title, in.title);
    assert_string_equal(out.category, in.category);
    assert_string_equal(out.seller_id, in.seller_id);
    assert_true(out.price == in.price);
    assert_true(out.listed_at == in.listed_at);
    kp_item_listed_clear(&out);
    assert_null(out.item_id);
    kp_item_listed_clear(NULL);
    free(buf);

    /* NULL optional strings are written as their default "" */
    kp_item_listed sparse = {"x", "t", NULL, NULL, -1.5, -7};
    assert_int_equal(kp_encode_item_listed(c, &sparse, &buf, &len), 0);
    assert_int_equal(kp_decode_item_listed(c, buf, len, &out, err, sizeof(err)), 0);
    assert_string_equal(out.category, "");
    assert_string_equal(out.seller_id, "");
    assert_true(out.price == -1.5);
    assert_true(out.listed_at == -7);
    kp_item_listed_clear(&out);
    free(buf);
    kp_codec_free(c);
}

static void test_roundtrip_ad_event(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";
    for (int k = 0; k < 2; k++) {
        kp_ad_event in = {"item-1", "cordless drill", (kp_ad_kind)k, k ? 3 : -2147483647 - 1,
                          k ? INT64_MAX : INT64_MIN};
        void *buf;
        size_t len;
        assert_int_equal(kp_encode_ad_event(c, &in, &buf, &len), 0);
        assert_int_equal(wire_id(buf), KP_SCHEMA_ID_AD_EVENT);
        kp_ad_event out;
        assert_int_equal(kp_decode_ad_event(c, buf, len, &out, err, sizeof(err)), 0);
        assert_string_equal(out.item_id, in.item_id);
        assert_string_equal(out.keyphrase, in.keyphrase);
        assert_int_equal(out.kind, in.kind);
        assert_int_equal(out.position, in.position);
        assert_true(out.ts == in.ts);
        kp_ad_event_clear(&out);
        free(buf);
    }
    kp_codec_free(c);
}

static void test_roundtrip_judgment(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";
    const double scores[3] = {0.0, 0.625, 1.0};
    for (int k = 0; k < 3; k++) {
        kp_judgment in = {"item-2",           "Brass faucet", "kitchen faucet",
                          (kp_judge_source)k, scores[k],      1700000000000LL + k};
        void *buf;
        size_t len;
        assert_int_equal(kp_encode_judgment(c, &in, &buf, &len), 0);
        assert_int_equal(wire_id(buf), KP_SCHEMA_ID_JUDGMENT);
        kp_judgment out;
        assert_int_equal(kp_decode_judgment(c, buf, len, &out, err, sizeof(err)), 0);
        assert_string_equal(out.item_id, in.item_id);
        assert_string_equal(out.title, in.title);
        assert_string_equal(out.keyphrase, in.keyphrase);
        assert_int_equal(out.source, in.source);
        assert_true(out.score == in.score);
        assert_true(out.ts == in.ts);
        kp_judgment_clear(&out);
        free(buf);
    }
    kp_codec_free(c);
}

static void test_roundtrip_suggestions(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";
    kp_suggestion s[3] = {
        {"cordless drill", "kp-17", 0.875f}, {"drill \xc3\xa9", NULL, -0.25f}, {"", "", 1e-3f}};
    kp_suggestions_decoded out;
    void *buf;
    size_t len;
    assert_int_equal(kp_encode_suggestions(c, "item-3", 42, 1754000000999LL, s, 3, &buf, &len), 0);
    assert_int_equal(wire_id(buf), KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS);
    assert_int_equal(kp_decode_suggestions(c, buf, len, &out, err, sizeof(err)), 0);
    assert_string_equal(out.item_id, "item-3");
    assert_true(out.model_version == 42);
    assert_true(out.generated_at == 1754000000999LL);
    assert_int_equal(out.n, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(out.items[i].keyphrase, s[i].keyphrase);
        if (s[i].keyphrase_id)
            assert_string_equal(out.items[i].keyphrase_id, s[i].keyphrase_id);
        else
            assert_null(out.items[i].keyphrase_id);
        assert_true(out.items[i].score == s[i].score);
    }
    kp_suggestions_clear(&out);
    assert_int_equal(out.n, 0);
    assert_null(out.items);
    free(buf);

    /* empty list; and the cached value is reset between messages (no leftover items) */
    assert_int_equal(kp_encode_suggestions(c, "item-4", 1, 2, NULL, 0, &buf, &len), 0);
    assert_int_equal(kp_decode_suggestions(c, buf, len, &out, err, sizeof(err)), 0);
    assert_string_equal(out.item_id, "item-4");
    assert_int_equal(out.n, 0);
    assert_null(out.items);
    kp_suggestions_clear(&out);
    kp_suggestions_clear(NULL);
    free(buf);

    /* the arm: id 5 carries it; id 4 (no arm) reads as "", so old records stay readable */
    assert_int_equal(kp_encode_suggestions_arm(c, "item-5", 7, 8, "candidate", s, 1, &buf, &len),
                     0);
    assert_int_equal(wire_id(buf), KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS_V1);
    assert_int_equal(kp_decode_suggestions(c, buf, len, &out, err, sizeof(err)), 0);
    assert_string_equal(out.arm, "candidate");
    assert_int_equal(out.n, 1);
    assert_string_equal(out.items[0].keyphrase, "cordless drill");
    kp_suggestions_clear(&out);
    assert_null(out.arm);
    free(buf);
    assert_int_equal(kp_encode_suggestions_arm(c, "item-6", 7, 8, "", s, 1, &buf, &len), 0);
    assert_int_equal(wire_id(buf), KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS);
    assert_int_equal(kp_decode_suggestions(c, buf, len, &out, err, sizeof(err)), 0);
    assert_string_equal(out.arm, "");
    kp_suggestions_clear(&out);
    free(buf);
    kp_codec_free(c);
}

/* Many messages of all types through one codec: cached values are reset each time. */
static void test_reuse_across_messages(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "", id[32], kp[32];
    for (int round = 0; round < 200; round++) {
        int n = round % 5;
        kp_suggestion s[4];
        char names[4][32];
        for (int i = 0; i < n && i < 4; i++) {
            snprintf(names[i], sizeof(names[i]), "kp-%d-%d", round, i);
            s[i].keyphrase = names[i];
            s[i].keyphrase_id = (i & 1) ? names[i] : NULL;
            s[i].score = (float)i / 4;
        }
        if (n > 4) n = 4;
        snprintf(id, sizeof(id), "item-%d", round);
        void *b1, *b2;
        size_t l1, l2;
        assert_int_equal(kp_encode_suggestions(c, id, round, round, s, n, &b1, &l1), 0);
        snprintf(kp, sizeof(kp), "q%d", round);
        kp_ad_event ad = {id, kp, (kp_ad_kind)(round & 1), round, round};
        assert_int_equal(kp_encode_ad_event(c, &ad, &b2, &l2), 0);
        kp_suggestions_decoded d;
        kp_ad_event a;
        assert_int_equal(kp_decode_suggestions(c, b1, l1, &d, err, sizeof(err)), 0);
        assert_int_equal(kp_decode_ad_event(c, b2, l2, &a, err, sizeof(err)), 0);
        assert_int_equal(d.n, n);
        assert_string_equal(d.item_id, id);
        for (int i = 0; i < n; i++) {
            assert_string_equal(d.items[i].keyphrase, names[i]);
            assert_int_equal(d.items[i].keyphrase_id != NULL, i & 1);
        }
        assert_string_equal(a.keyphrase, kp);
        assert_int_equal(a.kind, round & 1);
        kp_suggestions_clear(&d);
        kp_ad_event_clear(&a);
        free(b1);
        free(b2);
    }
    kp_codec_free(c);
}

static void test_encode_rejects_bad_input(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    void *buf = (void *)1;
    size_t len = 99;
    kp_item_listed no_id = {NULL, "t", "", "", 0, 0};
    assert_int_equal(kp_encode_item_listed(c, &no_id, &buf, &len), -1);
    assert_null(buf);
    assert_int_equal(len, 0);
    assert_non_null(strstr(kp_codec_last_error(c), "item_id"));
    kp_item_listed no_title = {"x", NULL, "", "", 0, 0};
    assert_int_equal(kp_encode_item_listed_v0(c, &no_title, &buf, &len), -1);
    assert_non_null(strstr(kp_codec_last_error(c), "title"));
    assert_int_equal(kp_encode_item_listed(c, NULL, &buf, &len), -1);
    assert_int_equal(kp_encode_item_listed(NULL, &no_id, &buf, &len), -1);

    kp_ad_event ad = {"x", "q", (kp_ad_kind)7, 1, 1};
    assert_int_equal(kp_encode_ad_event(c, &ad, &buf, &len), -1);
    assert_non_null(strstr(kp_codec_last_error(c), "kind"));
    kp_judgment j = {"x", "t", "q", KP_JUDGE_HUMAN, 1.5, 0};
    assert_int_equal(kp_encode_judgment(c, &j, &buf, &len), -1);
    assert_non_null(strstr(kp_codec_last_error(c), "score"));
    j.score = 0.0 / 0.0;
    assert_int_equal(kp_encode_judgment(c, &j, &buf, &len), -1);
    j.score = 0.5;
    j.source = (kp_judge_source)3;
    assert_int_equal(kp_encode_judgment(c, &j, &buf, &len), -1);

    kp_suggestion s = {NULL, NULL, 0.5f};
    assert_int_equal(kp_encode_suggestions(c, "x", 1, 1, &s, 1, &buf, &len), -1);
    assert_non_null(strstr(kp_codec_last_error(c), "keyphrase"));
    assert_int_equal(kp_encode_suggestions(c, "x", 1, 1, NULL, 2, &buf, &len), -1);
    assert_int_equal(kp_encode_suggestions(c, "x", 1, 1, &s, -1, &buf, &len), -1);
    assert_int_equal(kp_encode_suggestions(c, NULL, 1, 1, NULL, 0, &buf, &len), -1);
    assert_null(buf);
    /* and the codec still works afterwards */
    kp_item_listed ok = {"x", "t", "", "", 0, 0};
    assert_int_equal(kp_encode_item_listed(c, &ok, &buf, &len), 0);
    assert_string_equal(kp_codec_last_error(c), "");
    free(buf);
    kp_codec_free(c);
}

/* ---- bad input ---------------------------------------------------------------------------- */

static void test_bad_header(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";
    kp_item_listed out;
    kp_item_listed in = {"a", "b", "c", "d", 1, 2};
    void *buf;
    size_t len;
    assert_int_equal(kp_encode_item_listed(c, &in, &buf, &len), 0);
    unsigned char *b = buf;

    b[0] = 0x7b; /* '{': somebody sent JSON */
    assert_int_equal(kp_decode_item_listed(c, b, len, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "bad magic byte 0x7b");
    assert_null(out.item_id);
    b[0] = 0;
    b[4] = 42;
    assert_int_equal(kp_decode_item_listed(c, b, len, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "unknown schema id 42");
    b[1] = 0xff, b[4] = 0xff;
    assert_int_equal(kp_decode_item_listed(c, b, len, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "unknown schema id 4278190335");
    b[1] = 0, b[4] = 1;
    assert_int_equal(kp_decode_item_listed(c, b, 3, &out, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "truncated"));
    assert_int_equal(kp_decode_item_listed(c, NULL, 0, &out, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "truncated"));
    assert_int_equal(kp_decode_item_listed(NULL, b, len, &out, err, sizeof(err)), -1);
    assert_int_equal(kp_decode_item_listed(c, b, len, NULL, err, sizeof(err)), -1);
    assert_int_equal(kp_decode_item_listed(c, b, len, &out, NULL, 0), 0); /* err optional */
    kp_item_listed_clear(&out);

    /* wrong type */
    kp_ad_event ad;
    kp_judgment j;
    kp_suggestions_decoded sd;
    assert_int_equal(kp_decode_ad_event(c, b, len, &ad, err, sizeof(err)), -1);
    assert_string_equal(err, "schema id 1 is ItemListed, expected AdEvent");
    assert_int_equal(kp_decode_judgment(c, b, len, &j, err, sizeof(err)), -1);
    assert_string_equal(err, "schema id 1 is ItemListed, expected Judgment");
    assert_int_equal(kp_decode_suggestions(c, b, len, &sd, err, sizeof(err)), -1);
    free(buf);
    kp_judgment jin = {"i", "t", "k", KP_JUDGE_SEARCH, 0.5, 1};
    assert_int_equal(kp_encode_judgment(c, &jin, &buf, &len), 0);
    assert_int_equal(kp_decode_item_listed(c, buf, len, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "schema id 3 is Judgment, expected ItemListed");
    free(buf);
    kp_codec_free(c);
}

TH_MAIN(cmocka_unit_test(test_builtin_equals_avsc_files), cmocka_unit_test(test_builtin_ids),
        cmocka_unit_test(test_roundtrip_item_listed), cmocka_unit_test(test_roundtrip_ad_event),
        cmocka_unit_test(test_roundtrip_judgment), cmocka_unit_test(test_roundtrip_suggestions),
        cmocka_unit_test(test_reuse_across_messages),
        cmocka_unit_test(test_encode_rejects_bad_input), cmocka_unit_test(test_bad_header))

/* test_schemas_registry_mode.c - the codec's side of [schemas] registry: ids that are a
 * registry's (kp_codec_use_registry, kp_codec_add_schema), encoders writing a registry id
 * (kp_codec_set_wire_id), and the bound on the schemas kept. The HTTP client is tested against a
 * real registry in tests/registry/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schemas/codec.h"
#include "schemas_testhelp.h"

/* ItemListed with one more field than the reader (a newer producer's), and the AdEvent text. */
static const char item_v2[] =
    "{\"type\":\"record\",\"name\":\"ItemListed\",\"namespace\":\"kprec\",\"fields\":["
    "{\"name\":\"item_id\",\"type\":\"string\"},{\"name\":\"title\",\"type\":\"string\"},"
    "{\"name\":\"brand\",\"type\":\"string\",\"default\":\"\"}]}";

static const char *builtin_json(int32_t want)
{
    for (int i = 0; i < kp_codec_builtin_count(); i++) {
        int32_t id;
        const char *json;
        assert_int_equal(kp_codec_builtin_info(i, &id, NULL, &json), 0);
        if (id == want) return json;
    }
    fail_msg("no built-in schema %d", (int)want);
    return NULL;
}

/* In registry mode id 1 is whatever the registry says, not the built-in ItemListed. */
static void test_registry_ids_replace_builtin_table(void **state)
{
    (void)state;
    kp_codec *w = new_codec(), *r = new_codec();
    char err[ERRLEN] = "";
    kp_item_listed in = {"it-1", "A title", "", "", 0.0, 5};
    void *buf;
    size_t len;
    assert_int_equal(kp_encode_item_listed(w, &in, &buf, &len), 0);
    assert_int_equal(wire_id(buf), KP_SCHEMA_ID_ITEM_LISTED);
    kp_codec_use_registry(r);
    assert_int_equal(kp_codec_knows(r, KP_SCHEMA_ID_ITEM_LISTED), 0);
    kp_item_listed out;
    assert_int_equal(kp_decode_item_listed(r, buf, len, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "unknown schema id 1");
    /* the registry's id 1 is an AdEvent: an ItemListed decoder refuses it */
    const char *ad = builtin_json(KP_SCHEMA_ID_AD_EVENT);
    assert_int_equal(kp_codec_add_schema(r, 1, ad, strlen(ad), err, sizeof(err)), 0);
    assert_int_equal(kp_codec_knows(r, 1), 1);
    assert_int_equal(kp_decode_item_listed(r, buf, len, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "schema id 1 is AdEvent, expected ItemListed");
    /* the same id again with the same schema is fine, with another it is refused */
    assert_int_equal(kp_codec_add_schema(r, 1, ad, strlen(ad), err, sizeof(err)), 0);
    assert_int_equal(kp_codec_add_schema(r, 1, item_v2, strlen(item_v2), err, sizeof(err)), -1);
    assert_string_equal(err, "schema id 1 is already known with another schema");
    free(buf);
    kp_codec_free(w);
    kp_codec_free(r);
}

/* A newer writer schema added under a registry id decodes, its extra field skipped. */
static void test_registry_schema_decodes(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";
    kp_codec_use_registry(c);
    assert_int_equal(kp_codec_add_schema(c, 70000, item_v2, strlen(item_v2), err, sizeof(err)), 0);
    /* body: item_id "x1", title "T", brand "B" (Avro strings: zigzag length, bytes) */
    unsigned char m[] = {0, 0, 1, 0x11, 0x70, 4, 'x', '1', 2, 'T', 2, 'B'};
    kp_item_listed out;
    assert_int_equal(kp_decode_item_listed(c, m, sizeof(m), &out, err, sizeof(err)), 0);
    assert_string_equal(out.item_id, "x1");
    assert_string_equal(out.title, "T");
    assert_string_equal(out.category, "");
    kp_item_listed_clear(&out);
    /* a schema that does not resolve to the reader's is refused when added */
    static const char bad[] = "{\"type\":\"record\",\"name\":\"ItemListed\",\"fields\":["
                              "{\"name\":\"item_id\",\"type\":\"string\"}]}";
    assert_int_equal(kp_codec_add_schema(c, 70001, bad, strlen(bad), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "writer lacks field ItemListed.title"));
    assert_int_equal(kp_codec_knows(c, 70001), 0);
    assert_int_equal(kp_codec_add_schema(c, 70002, "{not json", 9, err, sizeof(err)), -1);
    kp_codec_free(c);
}

/* The encoder writes the registry's id and the same codec decodes it without asking. */
static void test_wire_id(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";
    kp_codec_use_registry(c);
    assert_int_equal(
        kp_codec_set_wire_id(c, KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS, 42, err, sizeof(err)), 0);
    kp_suggestion s[2] = {{"red shoes", "k1", 0.9f}, {"shoes", NULL, 0.5f}};
    void *buf;
    size_t len;
    assert_int_equal(kp_encode_suggestions(c, "it-9", 3, 77, s, 2, &buf, &len), 0);
    assert_int_equal(wire_id(buf), 42);
    kp_suggestions_decoded d;
    assert_int_equal(kp_decode_suggestions(c, buf, len, &d, err, sizeof(err)), 0);
    assert_string_equal(d.item_id, "it-9");
    assert_int_equal(d.n, 2);
    assert_string_equal(d.items[0].keyphrase, "red shoes");
    assert_null(d.items[1].keyphrase_id);
    kp_suggestions_clear(&d);
    free(buf);
    /* the other encoders still write their built-in ids */
    kp_item_listed in = {"it-1", "A title", "", "", 0.0, 5};
    assert_int_equal(kp_encode_item_listed(c, &in, &buf, &len), 0);
    assert_int_equal(wire_id(buf), KP_SCHEMA_ID_ITEM_LISTED);
    free(buf);
    assert_int_equal(kp_codec_set_wire_id(c, 999, 43, err, sizeof(err)), -1);
    assert_string_equal(err, "schema id 999 is not built in");
    /* 42 is taken by KeyphraseSuggestions: ItemListed cannot have it too */
    assert_int_equal(kp_codec_set_wire_id(c, KP_SCHEMA_ID_ITEM_LISTED, 42, err, sizeof(err)), -1);
    kp_codec_free(c);
}

/* At most 256 registry schemas are kept: the oldest are forgotten (and fetched again if seen). */
static void test_remote_bound(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";
    kp_codec_use_registry(c);
    for (int32_t id = 1; id <= 300; id++)
        assert_int_equal(kp_codec_add_schema(c, id, item_v2, strlen(item_v2), err, sizeof(err)), 0);
    int kept = 0;
    for (int32_t id = 1; id <= 300; id++)
        kept += kp_codec_knows(c, id);
    assert_int_equal(kept, 256);
    assert_int_equal(kp_codec_knows(c, 44), 0);
    assert_int_equal(kp_codec_knows(c, 45), 1);
    assert_int_equal(kp_codec_knows(c, 300), 1);
    kp_codec_free(c);
}

/* fuzz_registry found: a KeyphraseSuggestions writer whose nested record has another name
 * ("Suggetsion") crashed Avro C's resolver (NULL dereference in avro_resolved_writer_new). It is
 * refused now, and the codec goes on decoding. */
static void test_renamed_nested_record_refused(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";
    kp_codec_use_registry(c);
    const char *v0 = builtin_json(KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS);
    char *bad = strdup(v0), *at = strstr(bad, "\"Suggestion\"");
    assert_non_null(at);
    memcpy(at, "\"Suggetsion\"", 12);
    assert_int_equal(kp_codec_add_schema(c, 9, bad, strlen(bad), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "record Suggestion is named Suggetsion in the writer"));
    assert_int_equal(kp_codec_knows(c, 9), 0);
    assert_int_equal(kp_codec_add_schema(c, 9, v0, strlen(v0), err, sizeof(err)), 0);
    free(bad);
    kp_codec_free(c);
}

/* fuzz_registry found next: any field of the nested Suggestion record whose writer type cannot
 * be read as the reader's (score as ["null","string"], or "string") crashed the resolver the
 * same way. Such a writer is refused with the types named; a promotion (float -> double is none
 * here, but int -> long is) still resolves. */
static void test_nested_type_mismatch_refused(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";
    kp_codec_use_registry(c);
    const char *v0 = builtin_json(KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS);
    const char *score = strstr(v0, "{\"name\": \"score\", \"type\": \"float\"");
    assert_non_null(score);
    const char *to[] = {"[\"null\", \"string\"]", "\"string\""};
    for (int i = 0; i < 2; i++) {
        char bad[8192];
        size_t at = (size_t)(score - v0) + strlen("{\"name\": \"score\", \"type\": ");
        snprintf(bad, sizeof bad, "%.*s%s%s", (int)at, v0, to[i], v0 + at + strlen("\"float\""));
        assert_int_equal(kp_codec_add_schema(c, 30 + i, bad, strlen(bad), err, sizeof(err)), -1);
        assert_non_null(strstr(err, "cannot be read as float"));
    }
    static const char promoted[] =
        "{\"type\":\"record\",\"name\":\"AdEvent\",\"namespace\":\"kprec\",\"fields\":["
        "{\"name\":\"item_id\",\"type\":\"string\"},{\"name\":\"keyphrase\",\"type\":\"string\"},"
        "{\"name\":\"kind\",\"type\":{\"type\":\"enum\",\"name\":\"AdEventKind\",\"symbols\":["
        "\"IMPRESSION\",\"CLICK\"]}},{\"name\":\"position\",\"type\":\"int\"},"
        "{\"name\":\"ts\",\"type\":\"int\"}]}";
    assert_int_equal(kp_codec_add_schema(c, 32, promoted, strlen(promoted), err, sizeof(err)), 0);
    kp_codec_free(c);
}

/* fuzz_schema found (after 4.2 million runs): a writer whose nested Suggestion record has two
 * fields named "score" made Avro C's resolver dereference NULL (avro_resolved_writer_new). A record
 * with two fields of one name is refused before Avro C sees it, nested or at the top; the same
 * field name in two records is fine. The next run (3.2 million) found the same crash from a key
 * twice in one JSON object: refused too. */
static void test_duplicate_field_refused(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";
    kp_codec_use_registry(c);
    const char *v0 = builtin_json(KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS);
    const char *score = strstr(v0, "{\"name\": \"score\", \"type\": \"float\"");
    assert_non_null(score);
    char bad[8192];
    size_t at = (size_t)(score - v0);
    snprintf(bad, sizeof bad, "%.*s{\"name\": \"score\", \"type\": \"double\"}, %s", (int)at, v0,
             v0 + at);
    assert_int_equal(kp_codec_add_schema(c, 40, bad, strlen(bad), err, sizeof(err)), -1);
    if (!strstr(err, "has two fields named score")) print_error("%s\n", err);
    assert_non_null(strstr(err, "record kprec.Suggestion has two fields named score"));
    static const char top[] =
        "{\"type\":\"record\",\"name\":\"Judgment\",\"namespace\":\"kprec\",\"fields\":["
        "{\"name\":\"a\",\"type\":\"int\"},{\"name\":\"a\",\"type\":\"long\"}]}";
    assert_int_equal(kp_codec_add_schema(c, 41, top, strlen(top), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "record kprec.Judgment has two fields named a"));
    static const char ok[] =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":"
        "{\"type\":\"record\",\"name\":\"S\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}}]}";
    err[0] = 0;
    kp_codec_add_schema(c, 42, ok, strlen(ok), err, sizeof(err)); /* refused for its name R */
    assert_null(strstr(err, "two fields"));
    /* a key twice in one JSON object (fuzz_schema's second crash: "type" twice in a field of the
     * nested Suggestion record, Avro C's resolver dereferenced NULL): refused as JSON */
    const char *kp = strstr(v0, "{\"name\": \"keyphrase\", \"type\": \"string\"");
    assert_non_null(kp);
    at = (size_t)(kp - v0) + strlen("{\"name\": \"keyphrase\", \"type\": \"string\"");
    snprintf(bad, sizeof bad, "%.*s, \"type\": \"bytes\"%s", (int)at, v0, v0 + at);
    assert_int_equal(kp_codec_add_schema(c, 43, bad, strlen(bad), err, sizeof(err)), -1);
    if (!strstr(err, "duplicate object key")) print_error("%s\n", err);
    assert_non_null(strstr(err, "schema is not valid JSON: duplicate object key"));
    kp_codec_free(c);
}

/* fuzz_schema found: Avro C's schema parser leaks what it built when a named type is defined
 * twice (a record, an enum or a fixed). Such a schema is refused before Avro C sees it (under
 * ASan, LeakSanitizer fails this test without the check); the same name in two namespaces is
 * not a redefinition. */
static void test_named_type_defined_twice_refused(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";
    kp_codec_use_registry(c);
    const char *dup[] = {
        "{\"type\":\"record\",\"name\":\"Judgment\",\"fields\":[{\"name\":\"a\",\"type\":{\"type\":"
        "\"enum\",\"name\":\"E\",\"symbols\":[\"X\"]}},{\"name\":\"b\",\"type\":{\"type\":\"enum\","
        "\"name\":\"E\",\"symbols\":[\"X\"]}}]}",
        "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"n\",\"fields\":[{\"name\":\"a\","
        "\"type\":"
        "{\"type\":\"array\",\"items\":{\"type\":\"record\",\"name\":\"S\",\"fields\":[]}}},{"
        "\"name\":"
        "\"b\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"n.S\",\"fields\":[]}]}]}",
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":{\"type\":"
        "\"fixed\","
        "\"name\":\"F\",\"size\":4}},{\"name\":\"b\",\"type\":{\"type\":\"fixed\",\"name\":\"F\","
        "\"size\":4}}]}",
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"r\",\"type\":\"int\"}],"
        "\"x\":{\"type\":\"record\",\"name\":\"R\"}}",
    };
    const char *full[] = {"E", "n.S", "F", NULL};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kp_codec_add_schema(c, 20 + i, dup[i], strlen(dup[i]), err, sizeof(err)),
                         -1);
        char want[64];
        snprintf(want, sizeof want, "named type %s is defined twice", full[i]);
        assert_non_null(strstr(err, want));
    }
    /* not a definition (an unknown attribute): only Avro C decides */
    kp_codec_add_schema(c, 23, dup[3], strlen(dup[3]), err, sizeof(err));
    const char *ok =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":"
        "{\"type\":\"enum\",\"name\":\"E\",\"namespace\":\"x\",\"symbols\":[\"X\"]}},"
        "{\"name\":\"b\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"namespace\":\"y\","
        "\"symbols\":[\"X\"]}}]}";
    assert_int_equal(kp_codec_add_schema(c, 24, ok, strlen(ok), err, sizeof(err)), 0);
    /* a namespace + name longer than the names compared: refused, not cut (two long names cut
     * alike would compare equal) */
    char *lng = malloc(3000);
    assert_non_null(lng);
    int n = snprintf(lng, 3000, "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"");
    memset(lng + n, 'a', 1100);
    snprintf(lng + n + 1100, 3000 - (size_t)n - 1100, "\",\"fields\":[]}");
    assert_int_equal(kp_codec_add_schema(c, 25, lng, strlen(lng), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "name longer than 1023 bytes"));
    free(lng);
    kp_codec_free(c);
}

TH_MAIN(cmocka_unit_test(test_registry_ids_replace_builtin_table),
        cmocka_unit_test(test_registry_schema_decodes), cmocka_unit_test(test_wire_id),
        cmocka_unit_test(test_remote_bound), cmocka_unit_test(test_renamed_nested_record_refused),
        cmocka_unit_test(test_nested_type_mismatch_refused),
        cmocka_unit_test(test_named_type_defined_twice_refused),
        cmocka_unit_test(test_duplicate_field_refused))

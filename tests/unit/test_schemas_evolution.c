/* test_schemas_evolution.c - Avro schema evolution: an older (v0) writer, newer writers' schemas
 * loaded from a directory, and the errors of loading one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <avro.h>
#include <stdlib.h>
#include <string.h>

#include "schemas/codec.h"
#include "schemas_testhelp.h"

static void test_evolution_v0_writer(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";
    kp_item_listed in = {"old-1", "Old producer title", "ignored", "ignored", 9.5, 123};
    void *v0, *v1;
    size_t l0, l1;
    assert_int_equal(kp_encode_item_listed_v0(c, &in, &v0, &l0), 0);
    assert_int_equal(kp_encode_item_listed(c, &in, &v1, &l1), 0);
    assert_int_equal(wire_id(v0), KP_SCHEMA_ID_ITEM_LISTED_V0);
    assert_true(l0 < l1); /* v0 really lacks the newer fields */
    kp_item_listed out;
    assert_int_equal(kp_decode_item_listed(c, v0, l0, &out, err, sizeof(err)), 0);
    assert_string_equal(out.item_id, "old-1");
    assert_string_equal(out.title, "Old producer title");
    assert_string_equal(out.category, ""); /* defaults of schema 1 */
    assert_string_equal(out.seller_id, "");
    assert_true(out.price == 0.0);
    assert_true(out.listed_at == 0);
    kp_item_listed_clear(&out);
    free(v0);
    free(v1);
    kp_codec_free(c);
}

/* A newer ItemListed: extra fields (first and last), fields reordered, price written as int
 * (promoted to double). */
static const char NEWER_ITEM[] =
    "{\"type\":\"record\",\"name\":\"ItemListed\",\"namespace\":\"kprec\",\"fields\":["
    "{\"name\":\"condition\",\"type\":\"string\"},"
    "{\"name\":\"title\",\"type\":\"string\"},"
    "{\"name\":\"item_id\",\"type\":\"string\"},"
    "{\"name\":\"price\",\"type\":\"int\"},"
    "{\"name\":\"listed_at\",\"type\":\"long\"},"
    "{\"name\":\"category\",\"type\":\"string\"},"
    "{\"name\":\"seller_id\",\"type\":\"string\"},"
    "{\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"}}]}";

/* A different KeyphraseSuggestions: extra top-level field, and a Suggestion record with an extra
 * field and without keyphrase_id (reader default null). */
static const char NEWER_SUGG[] =
    "{\"type\":\"record\",\"name\":\"KeyphraseSuggestions\",\"namespace\":\"kprec\",\"fields\":["
    "{\"name\":\"item_id\",\"type\":\"string\"},"
    "{\"name\":\"experiment\",\"type\":[\"null\",\"string\"]},"
    "{\"name\":\"model_version\",\"type\":\"long\"},"
    "{\"name\":\"generated_at\",\"type\":\"long\"},"
    "{\"name\":\"suggestions\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"record\","
    "\"name\":\"Suggestion\",\"fields\":[{\"name\":\"keyphrase\",\"type\":\"string\"},"
    "{\"name\":\"source\",\"type\":\"string\"},{\"name\":\"score\",\"type\":\"float\"}]}}}]}";

static void set_str(avro_value_t *rec, const char *name, const char *s)
{
    avro_value_t f;
    assert_int_equal(avro_value_get_by_name(rec, name, &f, NULL), 0);
    assert_int_equal(avro_value_set_string(&f, s), 0);
}

/* Write value v in the wire format with schema id `id`. */
static void *wire_write(avro_value_t *v, int32_t id, size_t *len)
{
    size_t sz;
    assert_int_equal(avro_value_sizeof(v, &sz), 0);
    unsigned char *b = malloc(sz + 5);
    assert_non_null(b);
    put_wire_header(b, id);
    avro_writer_t w = avro_writer_memory((const char *)b + 5, (int64_t)sz);
    assert_int_equal(avro_value_write(w, v), 0);
    assert_int_equal(avro_writer_tell(w), (int64_t)sz);
    avro_writer_free(w);
    *len = sz + 5;
    return b;
}

static void test_evolution_newer_writer_from_dir(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "", dir[] = "/tmp/kp_schemas_XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_text(dir, "201-ItemListed.avsc", NEWER_ITEM);
    write_text(dir, "202-KeyphraseSuggestions.avsc", NEWER_SUGG);
    write_text(dir, "README.md", "not a schema: ignored");
    write_text(dir, "203-ItemListed.json", "{ ignored");

    /* before loading, id 201 is unknown */
    unsigned char hdr[6] = {0, 0, 0, 0, 201, 0};
    kp_item_listed out;
    assert_int_equal(kp_decode_item_listed(c, hdr, sizeof(hdr), &out, err, sizeof(err)), -1);
    assert_string_equal(err, "unknown schema id 201");

    int added = kp_codec_load_dir(c, dir, err, sizeof(err));
    if (added < 0) print_error("load_dir: %s\n", err);
    assert_int_equal(added, 2);
    assert_string_equal(kp_codec_schema_name(c, 201), "ItemListed");
    assert_string_equal(kp_codec_schema_name(c, 202), "KeyphraseSuggestions");
    assert_null(kp_codec_schema_name(c, 203));

    /* ItemListed written by the newer producer */
    avro_schema_t ws;
    assert_int_equal(avro_schema_from_json_length(NEWER_ITEM, strlen(NEWER_ITEM), &ws), 0);
    avro_value_iface_t *wc = avro_generic_class_from_schema(ws);
    avro_value_t v, f, el;
    assert_int_equal(avro_generic_value_new(wc, &v), 0);
    set_str(&v, "condition", "used");
    set_str(&v, "title", "Newer title");
    set_str(&v, "item_id", "new-7");
    set_str(&v, "category", "Garden");
    set_str(&v, "seller_id", "s-1");
    assert_int_equal(avro_value_get_by_name(&v, "price", &f, NULL), 0);
    assert_int_equal(avro_value_set_int(&f, 250), 0);
    assert_int_equal(avro_value_get_by_name(&v, "listed_at", &f, NULL), 0);
    assert_int_equal(avro_value_set_long(&f, 1754000000000LL), 0);
    assert_int_equal(avro_value_get_by_name(&v, "tags", &f, NULL), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(avro_value_append(&f, &el, NULL), 0);
        assert_int_equal(avro_value_set_string(&el, "tag"), 0);
    }
    size_t len;
    void *buf = wire_write(&v, 201, &len);
    assert_int_equal(kp_decode_item_listed(c, buf, len, &out, err, sizeof(err)), 0);
    assert_string_equal(out.item_id, "new-7");
    assert_string_equal(out.title, "Newer title");
    assert_string_equal(out.category, "Garden");
    assert_string_equal(out.seller_id, "s-1");
    assert_true(out.price == 250.0);
    assert_true(out.listed_at == 1754000000000LL);
    kp_item_listed_clear(&out);
    /* it is still an ItemListed, not a suggestions event */
    kp_suggestions_decoded sd;
    assert_int_equal(kp_decode_suggestions(c, buf, len, &sd, err, sizeof(err)), -1);
    assert_string_equal(err, "schema id 201 is ItemListed, expected KeyphraseSuggestions");
    free(buf);
    avro_value_decref(&v);
    avro_value_iface_decref(wc);
    avro_schema_decref(ws);

    /* KeyphraseSuggestions with a different Suggestion record */
    assert_int_equal(avro_schema_from_json_length(NEWER_SUGG, strlen(NEWER_SUGG), &ws), 0);
    wc = avro_generic_class_from_schema(ws);
    assert_int_equal(avro_generic_value_new(wc, &v), 0);
    set_str(&v, "item_id", "new-8");
    avro_value_t br;
    assert_int_equal(avro_value_get_by_name(&v, "experiment", &f, NULL), 0);
    assert_int_equal(avro_value_set_branch(&f, 1, &br), 0);
    assert_int_equal(avro_value_set_string(&br, "exp-A"), 0);
    assert_int_equal(avro_value_get_by_name(&v, "model_version", &f, NULL), 0);
    assert_int_equal(avro_value_set_long(&f, 77), 0);
    assert_int_equal(avro_value_get_by_name(&v, "generated_at", &f, NULL), 0);
    assert_int_equal(avro_value_set_long(&f, 88), 0);
    assert_int_equal(avro_value_get_by_name(&v, "suggestions", &f, NULL), 0);
    for (int i = 0; i < 2; i++) {
        avro_value_t sf;
        assert_int_equal(avro_value_append(&f, &el, NULL), 0);
        set_str(&el, "keyphrase", i ? "second" : "first");
        set_str(&el, "source", "ann");
        assert_int_equal(avro_value_get_by_name(&el, "score", &sf, NULL), 0);
        assert_int_equal(avro_value_set_float(&sf, 0.5f + (float)i), 0);
    }
    buf = wire_write(&v, 202, &len);
    assert_int_equal(kp_decode_suggestions(c, buf, len, &sd, err, sizeof(err)), 0);
    assert_string_equal(sd.item_id, "new-8");
    assert_true(sd.model_version == 77);
    assert_true(sd.generated_at == 88);
    assert_int_equal(sd.n, 2);
    assert_string_equal(sd.items[0].keyphrase, "first");
    assert_string_equal(sd.items[1].keyphrase, "second");
    assert_null(sd.items[0].keyphrase_id); /* reader default null */
    assert_null(sd.items[1].keyphrase_id);
    assert_true(sd.items[0].score == 0.5f);
    assert_true(sd.items[1].score == 1.5f);
    kp_suggestions_clear(&sd);
    free(buf);
    avro_value_decref(&v);
    avro_value_iface_decref(wc);
    avro_schema_decref(ws);

    rm_dir(dir);
    kp_codec_free(c);
}

static int load_one(kp_codec *c, const char *file, const char *text, char *err, size_t errlen)
{
    char dir[] = "/tmp/kp_schemas_XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_text(dir, file, text);
    int r = kp_codec_load_dir(c, dir, err, errlen);
    rm_dir(dir);
    return r;
}

static void test_load_dir_errors(void **state)
{
    (void)state;
    kp_codec *c = new_codec();
    char err[ERRLEN] = "";

    assert_int_equal(kp_codec_load_dir(c, "/nonexistent/kp/dir", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot open directory"));
    assert_int_equal(kp_codec_load_dir(c, NULL, err, sizeof(err)), -1);
    assert_int_equal(kp_codec_load_dir(NULL, "/tmp", err, sizeof(err)), -1);

    /* not JSON */
    assert_int_equal(load_one(c, "301-ItemListed.avsc", "{\"type\": ", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "301-ItemListed.avsc"));
    /* lacks title, which has no default: cannot resolve */
    assert_int_equal(load_one(c, "302-ItemListed.avsc",
                              "{\"type\":\"record\",\"name\":\"ItemListed\",\"fields\":["
                              "{\"name\":\"item_id\",\"type\":\"string\"}]}",
                              err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "title"));
    /* a field of an incompatible type */
    assert_int_equal(load_one(c, "303-AdEvent.avsc",
                              "{\"type\":\"record\",\"name\":\"AdEvent\",\"fields\":["
                              "{\"name\":\"item_id\",\"type\":\"string\"},"
                              "{\"name\":\"keyphrase\",\"type\":\"string\"},"
                              "{\"name\":\"kind\",\"type\":\"string\"},"
                              "{\"name\":\"position\",\"type\":\"int\"},"
                              "{\"name\":\"ts\",\"type\":\"long\"}]}",
                              err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "303-AdEvent.avsc"));
    /* record name does not match the file name */
    assert_int_equal(load_one(c, "304-AdEvent.avsc",
                              "{\"type\":\"record\",\"name\":\"ItemListed\",\"fields\":["
                              "{\"name\":\"item_id\",\"type\":\"string\"},"
                              "{\"name\":\"title\",\"type\":\"string\"}]}",
                              err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "not a record named AdEvent"));
    /* a built-in id with a different schema */
    assert_int_equal(load_one(c, "1-ItemListed.avsc",
                              "{\"type\":\"record\",\"name\":\"ItemListed\",\"fields\":["
                              "{\"name\":\"item_id\",\"type\":\"string\"},"
                              "{\"name\":\"title\",\"type\":\"string\"}]}",
                              err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "already registered"));

    /* all or nothing: a good file and a bad one register neither */
    char dir[] = "/tmp/kp_schemas_XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_text(dir, "401-ItemListed.avsc",
               "{\"type\":\"record\",\"name\":\"ItemListed\",\"fields\":["
               "{\"name\":\"item_id\",\"type\":\"string\"},"
               "{\"name\":\"title\",\"type\":\"string\"}]}");
    write_text(dir, "402-ItemListed.avsc", "[1, 2");
    assert_int_equal(kp_codec_load_dir(c, dir, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "402-ItemListed.avsc"));
    assert_null(kp_codec_schema_name(c, 401));
    /* an unknown record type loads, but never decodes as one of ours */
    write_text(dir, "402-ItemListed.avsc",
               "{\"type\":\"record\",\"name\":\"ItemListed\",\"fields\":["
               "{\"name\":\"title\",\"type\":\"string\"},"
               "{\"name\":\"item_id\",\"type\":\"string\"}]}");
    write_text(dir, "403-PriceChanged.avsc",
               "{\"type\":\"record\",\"name\":\"PriceChanged\",\"fields\":["
               "{\"name\":\"item_id\",\"type\":\"string\"}]}");
    assert_int_equal(kp_codec_load_dir(c, dir, err, sizeof(err)), 3);
    assert_string_equal(kp_codec_schema_name(c, 401), "ItemListed");
    assert_string_equal(kp_codec_schema_name(c, 403), "PriceChanged");
    unsigned char pc[] = {0, 0, 0, 1, 147, 2, 'x'}; /* id 403 */
    kp_item_listed out;
    assert_int_equal(kp_decode_item_listed(c, pc, sizeof(pc), &out, err, sizeof(err)), -1);
    assert_string_equal(err, "schema id 403 is PriceChanged, expected ItemListed");
    /* enums resolve by symbol, not by index: a writer with reordered and extra symbols */
    write_text(dir, "404-AdEvent.avsc",
               "{\"type\":\"record\",\"name\":\"AdEvent\",\"namespace\":\"kprec\",\"fields\":["
               "{\"name\":\"item_id\",\"type\":\"string\"},"
               "{\"name\":\"keyphrase\",\"type\":\"string\"},"
               "{\"name\":\"kind\",\"type\":{\"type\":\"enum\",\"name\":\"AdEventKind\","
               "\"symbols\":[\"CLICK\",\"IMPRESSION\",\"CONVERSION\"]}},"
               "{\"name\":\"position\",\"type\":\"int\"},"
               "{\"name\":\"ts\",\"type\":\"long\"}]}");
    assert_int_equal(kp_codec_load_dir(c, dir, err, sizeof(err)), 1);
    const kp_ad_kind want[2] = {KP_AD_CLICK, KP_AD_IMPRESSION};
    for (int k = 0; k < 3; k++) {
        /* item_id "i", keyphrase "q", kind = writer index k, position 1, ts 1 */
        unsigned char m[] = {0, 0, 0, 1, 148, 2, 'i', 2, 'q', (unsigned char)(2 * k), 2, 2};
        kp_ad_event a;
        int r = kp_decode_ad_event(c, m, sizeof(m), &a, err, sizeof(err));
        if (k < 2) {
            assert_int_equal(r, 0);
            assert_int_equal(a.kind, want[k]);
            kp_ad_event_clear(&a);
        } else {
            assert_int_equal(r, -1);
            assert_string_equal(err, "field kind: unknown symbol CONVERSION");
        }
    }
    /* loading the same directory again adds nothing */
    assert_int_equal(kp_codec_load_dir(c, dir, err, sizeof(err)), 0);
    rm_dir(dir);
    kp_codec_free(c);
}

TH_MAIN(cmocka_unit_test(test_evolution_v0_writer),
        cmocka_unit_test(test_evolution_newer_writer_from_dir),
        cmocka_unit_test(test_load_dir_errors))

/* test_schemas_codec.c - Avro wire-format codecs: round trips, schema evolution, hostile input,
 * and built-in schemas == the schemas/ .avsc files. (Validation: test_schemas_validate.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <avro.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "schemas/codec.h"

#define ERRLEN KP_CODEC_ERRLEN

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

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Remove the files of dir and dir itself. */
static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[1024];
    if (!d) return;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static kp_codec *new_codec(void)
{
    char err[ERRLEN] = "";
    kp_codec *c = kp_codec_new(err, sizeof(err));
    if (!c) print_error("kp_codec_new: %s\n", err);
    assert_non_null(c);
    return c;
}

static int32_t wire_id(const void *buf)
{
    const unsigned char *b = buf;
    return (int32_t)((uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4]);
}

/* ---- built-in schemas ---------------------------------------------------------------------- */

static void test_builtin_equals_avsc_files(void **state)
{
    (void)state;
    int n = kp_codec_builtin_count();
    assert_int_equal(n, 5);
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
    assert_string_equal(kp_codec_schema_name(c, 101), "ItemListed");
    assert_null(kp_codec_schema_name(c, 5));
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

/* ---- evolution ---------------------------------------------------------------------------- */

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
    b[0] = 0, b[1] = 0, b[2] = 0, b[3] = (unsigned char)(id >> 8), b[4] = (unsigned char)id;
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
        m[0] = 0, m[1] = 0, m[2] = 0, m[3] = 0, m[4] = KP_SCHEMA_ID_ITEM_LISTED_V0;
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
            m[0] = 0, m[1] = 0, m[2] = 0, m[3] = (unsigned char)(id >> 8), m[4] = (unsigned char)id;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_equals_avsc_files),
        cmocka_unit_test(test_builtin_ids),
        cmocka_unit_test(test_roundtrip_item_listed),
        cmocka_unit_test(test_roundtrip_ad_event),
        cmocka_unit_test(test_roundtrip_judgment),
        cmocka_unit_test(test_roundtrip_suggestions),
        cmocka_unit_test(test_reuse_across_messages),
        cmocka_unit_test(test_encode_rejects_bad_input),
        cmocka_unit_test(test_evolution_v0_writer),
        cmocka_unit_test(test_evolution_newer_writer_from_dir),
        cmocka_unit_test(test_load_dir_errors),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_truncated_at_every_length),
        cmocka_unit_test(test_hostile_bodies),
        cmocka_unit_test(test_fuzz_garbage),
        cmocka_unit_test(test_decode_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

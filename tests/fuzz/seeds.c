/* seeds.c -- writes the seed corpora of the fuzz targets from real data: listings of
 * data/esci-sample encoded with the codec, config.example.ini, small checkpoints and deltas saved
 * by the model code, TSV files, cached JSON, LLM responses, the built-in schemas (and variants)
 * as a registry would serve them.
 *
 *   fuzz_seeds SOURCE_DIR OUT_DIR      writes OUT_DIR/<target>/seed-NNN (the committed corpora
 *                                      are tests/fuzz/corpus/<target>/)
 * Deterministic: the same sources give the same seeds. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache/cache.h"
#include "model/bienc.h"
#include "model/ce.h"
#include "model/ckpt.h"
#include "model/delta.h"
#include "schemas/codec.h"

#include <jansson.h>
#include "tests/fuzz/fuzz.h"

static const char *out_dir;
static int n_written;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_seeds: %s\n", what);
    exit(1);
}

static void put(const char *target, const void *data, size_t len)
{
    static char last[64];
    static int idx;
    char p[4096];
    if (strcmp(last, target)) {
        snprintf(last, sizeof last, "%s", target);
        idx = 0;
        snprintf(p, sizeof p, "%s/%s", out_dir, target);
        if (mkdir(p, 0755) && errno != EEXIST) die(p);
    }
    snprintf(p, sizeof p, "%s/%s/seed-%03d", out_dir, target, idx++);
    FILE *f = fopen(p, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f)) die(p);
    n_written++;
}

static void put_str(const char *target, const char *s)
{
    put(target, s, strlen(s));
}

/* Prefixes data with one mode byte. */
static void put_mode(const char *target, uint8_t mode, const void *data, size_t len)
{
    uint8_t *b = malloc(len + 1);
    if (!b) die("out of memory");
    b[0] = mode;
    memcpy(b + 1, data, len);
    put(target, b, len + 1);
    free(b);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) die(path);
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

/* The first n titles of products.tsv (column 3), malloc'd. */
static int titles(const char *src, char **out, int n)
{
    char p[4096], line[65536];
    snprintf(p, sizeof p, "%s/data/esci-sample/products.tsv", src);
    FILE *f = fopen(p, "r");
    if (!f) die(p);
    int k = 0;
    if (!fgets(line, sizeof line, f)) die(p);
    while (k < n && fgets(line, sizeof line, f)) {
        char *c1 = strchr(line, '\t'), *c2 = c1 ? strchr(c1 + 1, '\t') : NULL;
        char *c3 = c2 ? strchr(c2 + 1, '\t') : NULL;
        if (!c3) continue;
        *c3 = 0;
        *c1 = 0;
        out[k++] = strdup(c2 + 1);          /* the title, */
        if (k < n) out[k++] = strdup(line); /* then the product id */
    }
    fclose(f);
    return k;
}

static void decode_seeds(char **t, int nt)
{
    char err[KP_CODEC_ERRLEN];
    kp_codec *c = kp_codec_new(err, sizeof err);
    if (!c) die(err);
    void *b;
    size_t len;
    for (int i = 0; i + 1 < nt && i < 12; i += 2) {
        kp_item_listed il = {t[i + 1], t[i], "Home", "seller-1", 19.99 + i, 1700000000000 + i};
        if (kp_encode_item_listed(c, &il, &b, &len)) die(kp_codec_last_error(c));
        put("decode", b, len);
        free(b);
        if (i < 4) {
            if (kp_encode_item_listed_v0(c, &il, &b, &len)) die(kp_codec_last_error(c));
            put("decode", b, len);
            free(b);
        }
    }
    kp_ad_event ad[] = {{"B000IYZNFK", "power steering hose", KP_AD_CLICK, 1, 1700000000000},
                        {"B079P3RGS6", "bath oils", KP_AD_IMPRESSION, 7, 1}};
    for (int i = 0; i < 2; i++) {
        if (kp_encode_ad_event(c, &ad[i], &b, &len)) die(kp_codec_last_error(c));
        put("decode", b, len);
        free(b);
    }
    kp_judgment j[] = {{"B000IYZNFK", t[0], "power steering hose", KP_JUDGE_LLM, 0.75, 5},
                       {"B079P3RGS6", "", "bath oils", KP_JUDGE_HUMAN, 1.0, 6}};
    for (int i = 0; i < 2; i++) {
        if (kp_encode_judgment(c, &j[i], &b, &len)) die(kp_codec_last_error(c));
        put("decode", b, len);
        free(b);
    }
    kp_suggestion s[] = {{"power steering hose", "k1", 0.9f}, {"hose", NULL, 0.5f}};
    for (int n = 0; n <= 2; n++) {
        if (kp_encode_suggestions(c, "B000IYZNFK", 3, 1700000000000, s, n, &b, &len))
            die(kp_codec_last_error(c));
        put("decode", b, len);
        free(b);
    }
    /* KeyphraseSuggestions v1 (id 5: with the arm) and Keyphrase (id 6) */
    for (int n = 0; n <= 2; n++) {
        if (kp_encode_suggestions_arm(c, "B079P3RGS6", 4, 1700000000001, n ? "candidate" : "live",
                                      s, n, &b, &len))
            die(kp_codec_last_error(c));
        put("decode", b, len);
        free(b);
    }
    kp_keyphrase k[] = {{"k1", "power steering hose", "Automotive", 1700000000000},
                        {"k2", t[0], "", 0}};
    for (int i = 0; i < 2; i++) {
        if (kp_encode_keyphrase(c, &k[i], &b, &len)) die(kp_codec_last_error(c));
        put("decode", b, len);
        free(b);
    }
    kp_codec_free(c);
}

/* The wire record (header + body) of a built-in schema id, encoded from real-looking values. */
static void encode_builtin(kp_codec *c, int32_t id, const char *title, void **b, size_t *len)
{
    kp_item_listed il = {"B000IYZNFK", (char *)title, "Home", "seller-1", 19.99, 1700000000000};
    kp_ad_event ad = {"B000IYZNFK", "power steering hose", KP_AD_CLICK, 1, 1700000000000};
    kp_judgment j = {"B000IYZNFK", (char *)title, "power steering hose", KP_JUDGE_LLM, 0.75, 5};
    kp_suggestion s[] = {{"power steering hose", "k1", 0.9f}, {"hose", NULL, 0.5f}};
    kp_keyphrase k = {"k1", "power steering hose", "Automotive", 1700000000000};
    int rc = -1;
    switch (id) {
    case KP_SCHEMA_ID_ITEM_LISTED:
        rc = kp_encode_item_listed(c, &il, b, len);
        break;
    case KP_SCHEMA_ID_ITEM_LISTED_V0:
        rc = kp_encode_item_listed_v0(c, &il, b, len);
        break;
    case KP_SCHEMA_ID_AD_EVENT:
        rc = kp_encode_ad_event(c, &ad, b, len);
        break;
    case KP_SCHEMA_ID_JUDGMENT:
        rc = kp_encode_judgment(c, &j, b, len);
        break;
    case KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS:
        rc = kp_encode_suggestions(c, "B000IYZNFK", 3, 1700000000000, s, 2, b, len);
        break;
    case KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS_V1:
        rc =
            kp_encode_suggestions_arm(c, "B000IYZNFK", 3, 1700000000000, "candidate", s, 2, b, len);
        break;
    case KP_SCHEMA_ID_KEYPHRASE:
        rc = kp_encode_keyphrase(c, &k, b, len);
        break;
    default:
        die("encode_builtin: unknown built-in id");
    }
    if (rc) die(kp_codec_last_error(c));
    if (*len < 5) die("encode_builtin: short record");
}

/* schema text + NUL + Avro body (the wire header cut off) */
static void put_schema(const char *json, size_t jlen, const void *wire, size_t wlen)
{
    size_t blen = wlen - 5;
    char *b = malloc(jlen + 1 + blen);
    if (!b) die("out of memory");
    memcpy(b, json, jlen);
    b[jlen] = 0;
    memcpy(b + jlen + 1, (const char *)wire + 5, blen);
    put("schema", b, jlen + 1 + blen);
    free(b);
}

/* json with `from` (its first occurrence) replaced by `to`, malloc'd; NULL when absent. */
static char *replace(const char *json, const char *from, const char *to)
{
    const char *at = strstr(json, from);
    if (!at) return NULL;
    size_t a = (size_t)(at - json), fl = strlen(from), tl = strlen(to), jl = strlen(json);
    char *r = malloc(jl - fl + tl + 1);
    if (!r) die("out of memory");
    memcpy(r, json, a);
    memcpy(r + a, to, tl);
    memcpy(r + a + tl, at + fl, jl - a - fl + 1);
    return r;
}

/* fuzz_schema: every built-in writer schema with a record of it, and variants a registry could
 * hold: a new field with a default, an int promoted to long, a field dropped (the reader's
 * default fills it), the text minified by jansson, and two broken ones. */
static void schema_seeds(char **t, int nt)
{
    char err[KP_CODEC_ERRLEN];
    kp_codec *c = kp_codec_new(err, sizeof err);
    if (!c) die(err);
    const char *title = nt ? t[0] : "Red running shoes";
    for (int i = 0; i < kp_codec_builtin_count(); i++) {
        int32_t id;
        const char *name, *json;
        void *w;
        size_t wl;
        if (kp_codec_builtin_info(i, &id, &name, &json)) die("builtin_info");
        encode_builtin(c, id, title, &w, &wl);
        put_schema(json, strlen(json), w, wl);
        char *v[3] = {
            replace(json, "\"fields\": [",
                    "\"fields\": [{\"name\": \"fuzz_extra\", \"type\": [\"null\", \"string\"], "
                    "\"default\": null}, "),
            replace(json, "\"type\": \"int\"", "\"type\": \"long\""),
            replace(json, "{\"name\": \"category\", \"type\": \"string\", \"default\": \"\",",
                    "{\"name\": \"category_gone\", \"type\": \"string\", \"default\": \"\","),
        };
        for (int k = 0; k < 3; k++)
            if (v[k]) put_schema(v[k], strlen(v[k]), w, wl), free(v[k]);
        json_t *j = json_loads(json, 0, NULL);
        char *min = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (min) put_schema(min, strlen(min), w, wl);
        free(min);
        json_decref(j);
        if (i == 0) {
            put_schema(json, strlen(json) / 2, w, wl); /* cut in the middle */
            put_schema("\"string\"", 8, w, wl);        /* not a record */
        }
        free(w);
    }
    kp_codec_free(c);
}

/* fuzz_registry: reply bodies as Apicurio's ccompat API answers them. */
static void registry_seeds(void)
{
    for (int i = 0; i < kp_codec_builtin_count(); i++) {
        int32_t id;
        const char *name, *json;
        if (kp_codec_builtin_info(i, &id, &name, &json)) die("builtin_info");
        json_t *r = i % 2 ? json_pack("{s:s}", "schema", json)
                          : json_pack("{s:s,s:s}", "schema", json, "schemaType", "AVRO");
        char *s = r ? json_dumps(r, JSON_COMPACT) : NULL;
        if (!s) die("json_pack");
        put_str("registry", s);
        free(s);
        json_decref(r);
    }
    put_str("registry", "{\"schema\":\"syntax = \\\"proto3\\\";\",\"schemaType\":\"PROTOBUF\"}");
    put_str("registry", "{\"id\":5}");
    put_str("registry", "{\"id\":2147483648}");
    put_str("registry", "{\"id\":-1,\"schema\":7}");
    put_str("registry", "{\"error_code\":40403,\"message\":\"Schema 42 not found\"}");
    put_str("registry", "<html><body>502 Bad Gateway</body></html>");
}

static void featurize_seeds(char **t, int nt)
{
    for (int i = 0; i < nt && i < 16; i += 2)
        put_str("featurize", t[i]);
    put_str("featurize",
            "Ünïcödé ΕΛΛΗΝΙΚΆ Кириллица ＦＵＬＬ ｗｉｄｔｈ e\xcc\x81 \xe2\x80\x8b zw");
    put_str(
        "featurize",
        "ふちなしメガネ 眼鏡 😀👍🏽 \xed\xa0\x80 \xc0\xaf \xf4\x90\x80\x80 tail");
    put_str("featurize", "a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9");
}

static void json_seeds(void)
{
    kp_rec_suggestion s[] = {{"k1", "power steering hose", 0.91f}, {"k2", "hose", -0.5f}};
    for (int n = 0; n <= 2; n++) {
        char *j = kp_cache_suggestions_json(s, n);
        if (!j) die("json");
        put_str("cache_json", j);
        free(j);
    }
    put_str("cache_json", "[{\"keyphrase\":\"x\",\"id\":null,\"score\":1e308},{},3,\"s\",[]]");
    put_str("cache_json", "{\"keyphrase\":\"not an array\"}");
}

static void config_seeds(const char *src)
{
    char p[4096];
    size_t len;
    snprintf(p, sizeof p, "%s/config.example.ini", src);
    char *ex = slurp(p, &len);
    put("config", ex, len);
    free(ex);
    static const char small[] = "[worker]\nrole = both\ntop_k = 5\n[redis]\nport = 6380\n"
                                "password = s3cret\n[kafka]\nbootstrap.servers = 127.0.0.1:9092\n"
                                "security.protocol = SASL_SSL\nsasl.mechanism = PLAIN\n"
                                "sasl.username = u\nsasl.password = p\n";
    put("config", small, sizeof small - 1);
    static const char env[] = "[worker]\nbatch_size = 7\n\0KPREC_REDIS_PORT=6390\n"
                              "KPREC_KAFKA_SSL_KEY_PASSWORD=x\nKPREC_WORKER_MIN_SCORE=0.5\n"
                              "KPREC_TRAIN_LR=1e-3";
    put("config", env, sizeof env - 1);
}

static void ckpt_seeds(void)
{
    char err[512];
    const char *path = "/tmp/kprec-fuzz-seed.kpm";
    kp_bienc_config bc;
    for (int shared = 1; shared >= 0; shared--) {
        fz_delta_cfg(&bc, shared);
        kp_bienc *m = kp_bienc_new(&bc, 3);
        if (!m || kp_bienc_save(m, path, err, sizeof err)) die(err);
        kp_bienc_free(m);
        size_t len;
        char *b = slurp(path, &len);
        put_mode("ckpt", 1 | 2, b, len - 4); /* bienc; the harness appends the CRC */
        if (shared) put_mode("ckpt", 2, b, len), put_mode("ckpt", 1, b, len - 4);
        free(b);
    }
    kp_ce_config cc = {16, 2, 4, 8};
    kp_ce *ce = kp_ce_new(&cc, 5);
    if (!ce || kp_ce_save(ce, path, err, sizeof err)) die(err);
    kp_ce_free(ce);
    size_t len;
    char *b = slurp(path, &len);
    put_mode("ckpt", 1 | 4, b, len - 4); /* ce */
    put_mode("ckpt", 4, b, len);
    put_mode("ckpt", 1, b, len - 4); /* the generic reader */
    free(b);
    remove(path);
}

static void delta_seeds(void)
{
    char err[512];
    kp_bienc_config bc;
    for (int shared = 1; shared >= 0; shared--) {
        fz_delta_cfg(&bc, shared);
        kp_bienc *m = kp_bienc_new(&bc, 11);
        if (!m) die("bienc");
        kp_bienc_set_version(m, 2);
        uint32_t r0[] = {1, 5, 63}, r1[] = {2};
        const uint32_t *rows[] = {r0, r1};
        int nrows[] = {3, 1};
        for (size_t max = 4096; max >= 300; max /= 4) {
            void **ch;
            size_t *lens;
            int n;
            if (kp_delta_build(m, 1, rows, nrows, max, &ch, &lens, &n, err, sizeof err)) die(err);
            /* raw chunks: [u16 length][chunk]... */
            size_t tot = 1;
            for (int i = 0; i < n; i++)
                tot += 2 + lens[i];
            uint8_t *b = malloc(tot), *p = b + 1;
            b[0] = 0;
            for (int i = 0; i < n; i++) {
                *p++ = (uint8_t)lens[i];
                *p++ = (uint8_t)(lens[i] >> 8);
                memcpy(p, ch[i], lens[i]);
                p += lens[i];
            }
            put("delta", b, tot);
            free(b);
            if (max == 4096 && n == 1) { /* the payload, for the harness to wrap */
                size_t pl = lens[0] - KP_DELTA_OVERHEAD;
                uint8_t *q = malloc(pl + 2);
                q[0] = 1;
                q[1] = (uint8_t)(shared ? 0 : 2);
                memcpy(q + 2, (uint8_t *)ch[0] + KP_DELTA_HEADER, pl);
                put("delta", q, pl + 2);
                free(q);
            }
            kp_delta_chunks_free(ch, lens, n);
        }
        kp_bienc_free(m);
    }
}

static void tsv_seeds(void)
{
    put_str("tsv", "id\ttext\ni1\tred shoe\ni2\tblue hat\r\n\ni3\t\n");
    put_str("tsv", "pair_id\tkeyphrase_id\titem_id\trelevance\np1\tk1\ti1\t3\np2\tk2\ti2\t1.5\n"
                   "p3\tk9\ti1\t2\n");
    put_str("tsv", "item_id\tkeyphrase_id\tkind\tposition\tts\ni1\tk1\tclick\t1\t1700000000000\n"
                   "i2\tk3\timpression\t4\t0\ni9\tk1\tclick\t2\t5\n");
}

static void model_topic_seeds(void)
{
    put_str("model_topic", "type=delta\nversion=12\nlineage=4294967297\nbase=11\n"
                           "blineage=4294967297\nchunk=0/1\nts=1796160000000\n\nKPD1");
    put_str("model_topic", "type=checkpoint\nversion=18446744073709551615\nlineage=1\n"
                           "chunk=0/2\nsize=8\nmac=0123456789abcdef0123456789abcdef\n\nKPM1");
}

static void llm_seeds(void)
{
    static const char chat[] =
        "\0{\"id\":\"c1\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":\"{\\\"grade\\\": 2}\"}}],\"usage\":{\"total_tokens\":57}}";
    put("llm", chat, sizeof chat - 1);
    static const char emb[] = "\1{\"data\":[{\"embedding\":[0.1,0.2,-0.3]},{\"embedding\":[0.2,0.1,"
                              "0.3]}],\"usage\":{\"total_tokens\":9}}";
    put("llm", emb, sizeof emb - 1);
    static const char grade[] = "\2 {\"grade\": 3.0} ";
    put("llm", grade, sizeof grade - 1);
    static const char tmpl[] = "\3You grade {item_id} from {grade_min} to {grade_max}.\n---\n"
                               "Title: {title}\nQuery: {keyphrase} ({keyphrase_id})\n"
                               "Answer {\"grade\": G}";
    put("llm", tmpl, sizeof tmpl - 1);
    put_str("llm", "\00230");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: fuzz_seeds SOURCE_DIR OUT_DIR\n");
        return 2;
    }
    out_dir = argv[2];
    if (mkdir(out_dir, 0755) && errno != EEXIST) die(out_dir);
    char *t[32];
    int nt = titles(argv[1], t, 32);
    decode_seeds(t, nt);
    schema_seeds(t, nt);
    registry_seeds();
    featurize_seeds(t, nt);
    json_seeds();
    config_seeds(argv[1]);
    ckpt_seeds();
    delta_seeds();
    tsv_seeds();
    model_topic_seeds();
    llm_seeds();
    for (int i = 0; i < nt; i++)
        free(t[i]);
    fprintf(stderr, "fuzz_seeds: %d seeds in %s\n", n_written, out_dir);
    return 0;
}

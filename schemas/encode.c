/* encode.c - the kp_encode_* functions (see codec.h).
 *
 * Each encoder resets the cached value of its built-in writer schema, sets it field by field from
 * the C struct as kp_layout says (enc_fields), and writes the wire header and the Avro body into
 * one new buffer (enc_finish). Errors go to the codec's lasterr (kp_codec_last_error).
 */
#include "schemas/codec_int.h"

#include "common/util.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* kp_suggestion (what callers encode) and kp_suggestion_owned (what the decoder returns) share
 * kp_sugg_layout. */
_Static_assert(offsetof(kp_suggestion, keyphrase) == offsetof(kp_suggestion_owned, keyphrase) &&
                   offsetof(kp_suggestion, keyphrase_id) ==
                       offsetof(kp_suggestion_owned, keyphrase_id) &&
                   offsetof(kp_suggestion, score) == offsetof(kp_suggestion_owned, score),
               "kp_suggestion and kp_suggestion_owned have the same layout");

/* Set the codec's last error; evaluates to -1. */
#define enc_fail(c, ...) (kp_errf((c)->lasterr, sizeof((c)->lasterr), __VA_ARGS__), -1)

static int enc_avro_fail(kp_codec *c)
{
    return enc_fail(c, "avro: %s", avro_strerror());
}

/* Look up the built-in entry of id and reset its writer value. *out and *outlen are zeroed. */
static avro_value_t *enc_begin(kp_codec *c, int32_t id, void **out, size_t *outlen)
{
    kp_entry *e = kp_find_entry(c, id);
    if (out) *out = NULL;
    if (outlen) *outlen = 0;
    if (!out || !outlen) {
        (void)enc_fail(c, "no output buffer");
        return NULL;
    }
    if (!e || !e->wvalue.iface) {
        (void)enc_fail(c, "schema id %d is not built in", (int)id);
        return NULL;
    }
    c->lasterr[0] = '\0';
    avro_value_reset(&e->wvalue);
    return &e->wvalue;
}

/* Set string field f (fname of record `record`); NULL is written as "" if the field's default is
 * "". */
static int enc_str(kp_codec *c, avro_value_t *f, const char *record, const char *fname,
                   const char *s)
{
    if (!s) {
        const char *d = json_string_value(kp_reader_default(c, record, fname));
        if (!d || d[0] != '\0') return enc_fail(c, "%s is NULL", fname);
        s = "";
    }
    return avro_value_set_string(f, s) ? enc_avro_fail(c) : 0;
}

/* Set a ["null", "string"] union: the null branch for NULL, else the string branch. */
static int enc_opt_str(kp_codec *c, avro_value_t *u, const char *s)
{
    avro_schema_t us = avro_value_get_schema(u);
    avro_value_t br;
    for (size_t i = 0; us && i < avro_schema_union_size(us); i++) {
        avro_type_t t = avro_typeof(avro_schema_union_branch(us, (int)i));
        if (t != (s ? AVRO_STRING : AVRO_NULL)) continue;
        if (avro_value_set_branch(u, (int)i, &br)) return enc_avro_fail(c);
        if (s ? avro_value_set_string(&br, s) : avro_value_set_null(&br)) return enc_avro_fail(c);
        return 0;
    }
    return enc_fail(c, "union has no %s branch", s ? "string" : "null");
}

/* Set field fd of record value rec from the C struct member at p. */
static int enc_field(kp_codec *c, avro_value_t *rec, const char *record, const kp_field *fd,
                     const char *p)
{
    avro_value_t f;
    const char *s;
    int x = 0, r;
    if (fd->type == KP_F_ENUM) {
        memcpy(&x, p, sizeof(x));
        if (x < 0 || x >= fd->nsym) return enc_fail(c, "%s %d out of range", fd->name, x);
    }
    if (avro_value_get_by_name(rec, fd->name, &f, NULL)) return enc_avro_fail(c);
    switch (fd->type) {
    case KP_F_STR:
        memcpy(&s, p, sizeof(s));
        return enc_str(c, &f, record, fd->name, s);
    case KP_F_OPT_STR:
        memcpy(&s, p, sizeof(s));
        return enc_opt_str(c, &f, s);
    case KP_F_DOUBLE:
        r = avro_value_set_double(&f, *(const double *)(const void *)p);
        break;
    case KP_F_FLOAT:
        r = avro_value_set_float(&f, *(const float *)(const void *)p);
        break;
    case KP_F_LONG:
        r = avro_value_set_long(&f, *(const int64_t *)(const void *)p);
        break;
    case KP_F_INT:
        r = avro_value_set_int(&f, *(const int32_t *)(const void *)p);
        break;
    case KP_F_ENUM:
        r = avro_value_set_enum(&f, x);
        break;
    default:
        return enc_fail(c, "field %s cannot be encoded", fd->name);
    }
    return r ? enc_avro_fail(c) : 0;
}

/* Set the fields of record value rec (of record type `record`) from C struct v as layout says, in
 * order. Fields the writer schema lacks (ItemListed v0) and the suggestions array are skipped. */
static int enc_fields(kp_codec *c, avro_value_t *rec, const char *record, const kp_field *layout,
                      const void *v)
{
    avro_schema_t ws = avro_value_get_schema(rec);
    for (int i = 0; i < KP_MAX_FIELDS && layout[i].name; i++) {
        if (layout[i].type == KP_F_ARRAY ||
            avro_schema_record_field_get_index(ws, layout[i].name) < 0)
            continue;
        if (enc_field(c, rec, record, &layout[i], (const char *)v + layout[i].off)) return -1;
    }
    return 0;
}

/* Write the header and rec (the writer value of built-in schema id) into a new buffer. The header
 * carries the entry's wire id: the built-in id, or the registry's (kp_codec_set_wire_id). */
static int enc_finish(kp_codec *c, int32_t id, avro_value_t *rec, void **out, size_t *outlen)
{
    const kp_entry *e = kp_find_entry(c, id);
    if (e) id = e->wire_id;
    size_t sz;
    if (avro_value_sizeof(rec, &sz)) return enc_avro_fail(c);
    unsigned char *b = malloc(KP_WIRE_HEADER_LEN + sz);
    if (!b) return enc_fail(c, "out of memory");
    uint32_t u = (uint32_t)id;
    b[0] = 0;
    b[1] = (unsigned char)(u >> 24), b[2] = (unsigned char)(u >> 16);
    b[3] = (unsigned char)(u >> 8), b[4] = (unsigned char)u;
    avro_writer_memory_set_dest(c->wr, (const char *)b + KP_WIRE_HEADER_LEN, (int64_t)sz);
    if (avro_value_write(c->wr, rec) || avro_writer_tell(c->wr) != (int64_t)sz) {
        free(b);
        return enc_avro_fail(c);
    }
    *out = b;
    *outlen = KP_WIRE_HEADER_LEN + sz;
    return 0;
}

/* Encode C struct v of type kind with writer schema id. check (may be NULL) vets v first: it
 * returns 0, or -1 after setting lasterr. */
static int enc_record(kp_codec *c, int32_t id, int kind, const void *v,
                      int (*check)(kp_codec *, const void *), void **out, size_t *outlen)
{
    if (!c) return -1;
    avro_value_t *rec = enc_begin(c, id, out, outlen);
    if (!rec) return -1;
    if (!v) return enc_fail(c, "no value");
    if ((check && check(c, v)) || enc_fields(c, rec, kp_kind_name[kind], kp_layout[kind], v))
        return -1;
    return enc_finish(c, id, rec, out, outlen);
}

/* Encode v as ItemListed with the current schema (id 1). Returns 0 and a new buffer in *out
 * (free() it), or -1 with *out NULL and the reason in kp_codec_last_error: v NULL, item_id or
 * title NULL, Avro failed. NULL category and seller_id are written as "". */
int kp_encode_item_listed(kp_codec *c, const kp_item_listed *v, void **out, size_t *outlen)
{
    return enc_record(c, KP_SCHEMA_ID_ITEM_LISTED, KP_K_ITEM, v, NULL, out, outlen);
}

/* As kp_encode_item_listed, with the old schema id 101: only item_id and title are written. */
int kp_encode_item_listed_v0(kp_codec *c, const kp_item_listed *v, void **out, size_t *outlen)
{
    return enc_record(c, KP_SCHEMA_ID_ITEM_LISTED_V0, KP_K_ITEM, v, NULL, out, outlen);
}

/* Encode v as AdEvent (id 2). Returns 0 and a new buffer in *out (free() it), or -1 with *out
 * NULL and the reason in kp_codec_last_error: v or a string NULL, kind out of range. */
int kp_encode_ad_event(kp_codec *c, const kp_ad_event *v, void **out, size_t *outlen)
{
    return enc_record(c, KP_SCHEMA_ID_AD_EVENT, KP_K_AD, v, NULL, out, outlen);
}

static int check_judgment(kp_codec *c, const void *v)
{
    double score = ((const kp_judgment *)v)->score;
    if (!(score >= 0.0 && score <= 1.0)) return enc_fail(c, "score %g is not in [0, 1]", score);
    return 0;
}

/* Encode v as Judgment (id 3). Returns 0 and a new buffer in *out (free() it), or -1 with *out
 * NULL and the reason in kp_codec_last_error: v or a string NULL, score not in [0, 1] (NaN
 * included; checked first), source out of range. */
int kp_encode_judgment(kp_codec *c, const kp_judgment *v, void **out, size_t *outlen)
{
    return enc_record(c, KP_SCHEMA_ID_JUDGMENT, KP_K_JUDGE, v, check_judgment, out, outlen);
}

/* Encode v as Keyphrase (id 6). Returns 0 and a new buffer in *out (free() it), or -1 with *out
 * NULL and the reason in kp_codec_last_error: v, keyphrase_id or keyphrase NULL. */
int kp_encode_keyphrase(kp_codec *c, const kp_keyphrase *v, void **out, size_t *outlen)
{
    return enc_record(c, KP_SCHEMA_ID_KEYPHRASE, KP_K_KEYPHRASE, v, NULL, out, outlen);
}

/* Encode KeyphraseSuggestions of item_id with suggestions s[0..n-1], best first, and the arm that
 * scored them: id 5 with arm, id 4 (no arm field) when arm is NULL or ""; the strings are only
 * read. Returns 0 and a new buffer in *out (free() it), or -1 with *out NULL and the reason in
 * kp_codec_last_error: n < 0, s NULL with n > 0, item_id or a keyphrase NULL. */
int kp_encode_suggestions_arm(kp_codec *c, const char *item_id, int64_t model_version,
                              int64_t generated_at, const char *arm, const kp_suggestion *s, int n,
                              void **out, size_t *outlen)
{
    if (!c) return -1;
    int32_t id =
        arm && arm[0] ? KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS_V1 : KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS;
    avro_value_t *rec = enc_begin(c, id, out, outlen);
    avro_value_t arr, el;
    if (!rec) return -1;
    if (n < 0 || (n > 0 && !s)) return enc_fail(c, "bad suggestions (n = %d)", n);
    /* the top-level fields, in the struct kp_layout describes (item_id is only read); the
     * writer of id 4 has no arm, and enc_fields skips it */
    kp_suggestions_decoded top = {(char *)item_id,         model_version, generated_at, 0, NULL,
                                  (char *)(arm ? arm : "")};
    if (enc_fields(c, rec, kp_kind_name[KP_K_SUGG], kp_layout[KP_K_SUGG], &top)) return -1;
    if (avro_value_get_by_name(rec, kp_layout[KP_K_SUGG][KP_SUGG_ARRAY].name, &arr, NULL))
        return enc_avro_fail(c);
    for (int i = 0; i < n; i++) {
        if (avro_value_append(&arr, &el, NULL)) return enc_avro_fail(c);
        if (enc_fields(c, &el, kp_sugg_record, kp_sugg_layout, &s[i])) return -1;
    }
    return enc_finish(c, id, rec, out, outlen);
}

/* Encode KeyphraseSuggestions (id 4, no arm): kp_encode_suggestions_arm with arm NULL. */
int kp_encode_suggestions(kp_codec *c, const char *item_id, int64_t model_version,
                          int64_t generated_at, const kp_suggestion *s, int n, void **out,
                          size_t *outlen)
{
    return kp_encode_suggestions_arm(c, item_id, model_version, generated_at, NULL, s, n, out,
                                     outlen);
}

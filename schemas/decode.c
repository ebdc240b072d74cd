/* decode.c - the wire header, the kp_decode_* functions and the *_clear functions (see codec.h).
 *
 * Decoding one event:
 *   1. header: magic byte, schema id -> registered writer schema (kp_entry) of the expected type;
 *   2. pre-scan (scan.c): the body must really hold a value of the writer schema;
 *   3. avro_value_read through the entry's cached resolver (writer -> projection of the reader,
 *      built by registry.c) into the entry's cached value, reset per call;
 *   4. copy into the plain C struct, field by field as kp_layout says; reader fields the writer
 *      does not have take their default from the reader schema JSON.
 */
#include "schemas/codec_int.h"

#include "common/util.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Read the schema id of wire-format buf[0..len-1]. Returns 0 and sets *id (if id is not NULL),
 * or -1 with "truncated (..)" or "bad magic byte 0x.." in err. The body is not looked at. */
int kp_wire_schema_id(const void *buf, size_t len, int32_t *id, char *err, size_t errlen)
{
    const unsigned char *b = buf;
    if (!b || len < KP_WIRE_HEADER_LEN) {
        kp_errf(err, errlen, "truncated (%zu bytes, the header alone is %d)", b ? len : 0,
                KP_WIRE_HEADER_LEN);
        return -1;
    }
    if (b[0] != 0) {
        kp_errf(err, errlen, "bad magic byte 0x%02x", b[0]);
        return -1;
    }
    uint32_t u = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];
    if (id) *id = (int32_t)u;
    return 0;
}

/* Header, pre-scan and Avro read of a `kind` event; returns its entry with pvalue filled. */
static kp_entry *dec_begin(kp_codec *c, const void *buf, size_t len, int kind, char *err,
                           size_t errlen)
{
    int32_t id;
    if (!c) {
        kp_errf(err, errlen, "no codec");
        return NULL;
    }
    if (kp_wire_schema_id(buf, len, &id, err, errlen)) return NULL;
    kp_entry *e = kp_find_decode_entry(c, id);
    if (!e) {
        kp_errf(err, errlen, "unknown schema id %u", (unsigned)(uint32_t)id);
        return NULL;
    }
    if (e->kind != kind) {
        kp_errf(err, errlen, "schema id %d is %s, expected %s", (int)id, e->name,
                kp_kind_name[kind]);
        return NULL;
    }
    const unsigned char *body = (const unsigned char *)buf + KP_WIRE_HEADER_LEN;
    size_t n = len - KP_WIRE_HEADER_LEN;
    if (kp_scan_body(e->writer, body, n, err, errlen)) return NULL;
    avro_value_reset(&e->pvalue);
    avro_reader_memory_set_source(c->rd, (const char *)body, (int64_t)n);
    if (avro_value_read(c->rd, &e->rvalue)) {
        kp_errf(err, errlen, "avro: %s", avro_strerror());
        return NULL;
    }
    return e;
}

/* A record to copy out of: the projected value and how reader fields map onto it. */
typedef struct {
    avro_value_t *rec;
    const int *idx;            /* reader field i -> index in rec, -1 if absent */
    const json_t *const *defs; /* reader field i -> default, NULL if none */
    const kp_field *layout;    /* reader field i: name, type, place in the C struct */
    avro_schema_t rrec;        /* the reader record, for enum symbols */
    char *err;
    size_t errlen;
} kp_src;

/* Field i of src: 1 and *f if present, 0 if absent (use *def), -1 on error. */
static int src_field(const kp_src *s, int i, avro_value_t *f, const json_t **def)
{
    *def = s->defs[i];
    if (s->idx[i] < 0) {
        if (*def) return 0;
        kp_errf(s->err, s->errlen, "field %s missing and has no default", s->layout[i].name);
        return -1;
    }
    if (avro_value_get_by_index(s->rec, (size_t)s->idx[i], f, NULL)) {
        kp_errf(s->err, s->errlen, "avro: %s", avro_strerror());
        return -1;
    }
    return 1;
}

static int src_bad(const kp_src *s, int i, const char *what)
{
    kp_errf(s->err, s->errlen, "field %s: %s", s->layout[i].name, what);
    return -1;
}

static int copy_str(const kp_src *s, int i, const char *p, size_t n, char **out)
{
    if (n && memchr(p, 0, n)) return src_bad(s, i, "contains a NUL byte");
    *out = malloc(n + 1);
    if (!*out) return src_bad(s, i, "out of memory");
    if (n) memcpy(*out, p, n);
    (*out)[n] = '\0';
    return 0;
}

/* String field i: the value f, or the default d when f is NULL. opt: a ["null", "string"] field,
 * *out NULL for null. */
static int get_str(const kp_src *s, int i, avro_value_t *f, const json_t *d, int opt, char **out)
{
    avro_value_t br;
    const char *p;
    size_t sz;
    *out = NULL;
    if (!f) {
        if (opt && json_is_null(d)) return 0;
        if (!json_is_string(d))
            return src_bad(s, i,
                           opt ? "default is not null or a string" : "default is not a string");
        return copy_str(s, i, json_string_value(d), json_string_length(d), out);
    }
    if (opt && avro_value_get_type(f) == AVRO_UNION) {
        if (avro_value_get_current_branch(f, &br)) return src_bad(s, i, avro_strerror());
        f = &br;
    }
    if (opt && avro_value_get_type(f) == AVRO_NULL) return 0;
    if (avro_value_get_string(f, &p, &sz)) return src_bad(s, i, avro_strerror());
    /* Avro C counts the terminating NUL in sz */
    return copy_str(s, i, p ? p : "", sz ? sz - 1 : 0, out);
}

/* Number field i (int, long, float or double): the value f, or the default d when f is NULL. */
static int get_num(const kp_src *s, int i, avro_value_t *f, const json_t *d, double *out)
{
    int32_t i32;
    int64_t i64;
    float f32;
    int r;
    if (!f) {
        if (!json_is_number(d)) return src_bad(s, i, "default is not a number");
        *out = json_number_value(d);
        return 0;
    }
    switch (avro_value_get_type(f)) {
    case AVRO_INT32:
        r = avro_value_get_int(f, &i32), *out = i32;
        break;
    case AVRO_INT64:
        r = avro_value_get_long(f, &i64), *out = (double)i64;
        break;
    case AVRO_FLOAT:
        r = avro_value_get_float(f, &f32), *out = f32;
        break;
    case AVRO_DOUBLE:
        r = avro_value_get_double(f, out);
        break;
    default:
        return src_bad(s, i, "not a number");
    }
    return r ? src_bad(s, i, avro_strerror()) : 0;
}

/* Integer field i (int or long, exact: not through a double): the value f, or the default d when
 * f is NULL. */
static int get_long(const kp_src *s, int i, avro_value_t *f, const json_t *d, int64_t *out)
{
    if (!f) {
        if (json_is_integer(d)) { /* exact, as jansson parsed it */
            *out = (int64_t)json_integer_value(d);
            return 0;
        }
        double x = json_real_value(d); /* 0 when not a real: checked next */
        if (!json_is_real(d) || !(x >= -9.0e15 && x <= 9.0e15) || (double)(int64_t)x != x)
            return src_bad(s, i, "default is not an integer");
        *out = (int64_t)x;
        return 0;
    }
    if (avro_value_get_type(f) == AVRO_INT32) {
        int32_t i32;
        if (avro_value_get_int(f, &i32)) return src_bad(s, i, avro_strerror());
        *out = i32;
        return 0;
    }
    return avro_value_get_long(f, out) ? src_bad(s, i, avro_strerror()) : 0;
}

/* Enum field i, as the reader's index in 0..nsym-1: the value f, or the default d when f is NULL.
 * The value holds the writer's index (see project in registry.c): map it through the symbol. */
static int get_enum(const kp_src *s, int i, avro_value_t *f, const json_t *d, int nsym, int *out)
{
    const char *sym;
    int wi;
    avro_schema_t es = kp_deref(avro_schema_record_field_get_by_index(s->rrec, i));
    if (!f) {
        sym = json_string_value(d);
        if (!sym) return src_bad(s, i, "default is not a symbol");
    } else {
        avro_schema_t ws = avro_value_get_schema(f);
        if (avro_value_get_enum(f, &wi)) return src_bad(s, i, avro_strerror());
        sym = ws && is_avro_enum(ws) ? avro_schema_enum_get(ws, wi) : NULL;
        if (!sym) return src_bad(s, i, "enum index out of range");
    }
    *out = avro_schema_enum_get_by_name(es, sym);
    if (*out < 0 || *out >= nsym) {
        kp_errf(s->err, s->errlen, "field %s: unknown symbol %s", s->layout[i].name, sym);
        return -1;
    }
    return 0;
}

/* Copy field i of s into the C struct member at p, as s->layout[i] says. */
static int dec_field(const kp_src *s, int i, void *p)
{
    const kp_field *fd = &s->layout[i];
    avro_value_t v, *f = &v;
    const json_t *d;
    double x;
    int64_t l;
    int e;
    if (fd->type == KP_F_ARRAY) return 0; /* the caller's */
    int r = src_field(s, i, &v, &d);
    if (r < 0) return -1;
    if (r == 0) f = NULL; /* the writer lacks the field: take the default d */
    switch (fd->type) {
    case KP_F_STR:
    case KP_F_OPT_STR:
        return get_str(s, i, f, d, fd->type == KP_F_OPT_STR, (char **)p);
    case KP_F_DOUBLE:
        return get_num(s, i, f, d, (double *)p);
    case KP_F_FLOAT:
        if (get_num(s, i, f, d, &x)) return -1;
        *(float *)p = (float)x;
        return 0;
    case KP_F_LONG:
        return get_long(s, i, f, d, (int64_t *)p);
    case KP_F_INT:
        if (get_long(s, i, f, d, &l)) return -1;
        if (l < INT32_MIN || l > INT32_MAX) return src_bad(s, i, "out of range");
        *(int32_t *)p = (int32_t)l;
        return 0;
    case KP_F_ENUM:
        if (get_enum(s, i, f, d, fd->nsym, &e)) return -1;
        memcpy(p, &e, sizeof(e));
        return 0;
    default:
        return src_bad(s, i, "cannot be decoded");
    }
}

/* Copy the fields of s into C struct out, in order, as s->layout says (the suggestions array is
 * left to the caller). Returns 0 or -1 with a reason in s->err; strings copied so far stay in out
 * for the caller to free. */
static int dec_fields(const kp_src *s, void *out)
{
    for (int i = 0; i < KP_MAX_FIELDS && s->layout[i].name; i++)
        if (dec_field(s, i, (char *)out + s->layout[i].off)) return -1;
    return 0;
}

/* The top-level record of entry e (of a known kind) to copy out of. */
static kp_src src_of(kp_codec *c, kp_entry *e, char *err, size_t errlen)
{
    kp_src s = {&e->pvalue, e->fidx, c->defs[e->kind], kp_layout[e->kind], c->reader[e->kind],
                err,        errlen};
    return s;
}

/* Zero out (size bytes) and decode a `kind` event of buf into it. Returns the entry it was read
 * with, or NULL with a reason in err (out may then hold strings: clear it). */
static kp_entry *dec_record(kp_codec *c, const void *buf, size_t len, int kind, void *out,
                            size_t size, char *err, size_t errlen)
{
    if (!out) {
        kp_errf(err, errlen, "no output");
        return NULL;
    }
    memset(out, 0, size);
    kp_entry *e = dec_begin(c, buf, len, kind, err, errlen);
    if (!e) return NULL;
    kp_src s = src_of(c, e, err, errlen);
    return dec_fields(&s, out) ? NULL : e;
}

/* Decode an ItemListed event of any registered ItemListed writer schema into *out (overwritten,
 * not freed first). Returns 0 (free with kp_item_listed_clear), or -1 with a reason in err and
 * *out zeroed. Any input is safe. */
int kp_decode_item_listed(kp_codec *c, const void *buf, size_t len, kp_item_listed *out, char *err,
                          size_t errlen)
{
    if (dec_record(c, buf, len, KP_K_ITEM, out, sizeof(*out), err, errlen)) return 0;
    kp_item_listed_clear(out);
    return -1;
}

/* As kp_decode_item_listed, for AdEvent (free with kp_ad_event_clear). A kind symbol the reader
 * does not know fails ("field kind: unknown symbol X"). */
int kp_decode_ad_event(kp_codec *c, const void *buf, size_t len, kp_ad_event *out, char *err,
                       size_t errlen)
{
    if (dec_record(c, buf, len, KP_K_AD, out, sizeof(*out), err, errlen)) return 0;
    kp_ad_event_clear(out);
    return -1;
}

/* As kp_decode_item_listed, for Judgment (free with kp_judgment_clear). */
int kp_decode_judgment(kp_codec *c, const void *buf, size_t len, kp_judgment *out, char *err,
                       size_t errlen)
{
    if (dec_record(c, buf, len, KP_K_JUDGE, out, sizeof(*out), err, errlen)) return 0;
    kp_judgment_clear(out);
    return -1;
}

/* As kp_decode_item_listed, for Keyphrase (free with kp_keyphrase_clear). */
int kp_decode_keyphrase(kp_codec *c, const void *buf, size_t len, kp_keyphrase *out, char *err,
                        size_t errlen)
{
    if (dec_record(c, buf, len, KP_K_KEYPHRASE, out, sizeof(*out), err, errlen)) return 0;
    kp_keyphrase_clear(out);
    return -1;
}

/* Copy the suggestions array of entry e's value into out->items. */
static int dec_sugg_items(kp_codec *c, kp_entry *e, kp_suggestions_decoded *out, char *err,
                          size_t errlen)
{
    avro_value_t arr, el;
    const json_t *d;
    size_t n;
    kp_src s = src_of(c, e, err, errlen);
    if (src_field(&s, KP_SUGG_ARRAY, &arr, &d) != 1) return -1;
    if (avro_value_get_size(&arr, &n)) {
        kp_errf(err, errlen, "avro: %s", avro_strerror());
        return -1;
    }
    if (n > INT_MAX / 2) {
        kp_errf(err, errlen, "too many suggestions (%zu)", n);
        return -1;
    }
    if (n > 0) {
        out->items = calloc(n, sizeof(*out->items));
        if (!out->items) {
            kp_errf(err, errlen, "out of memory");
            return -1;
        }
        out->n = (int)n;
    }
    for (size_t k = 0; k < n; k++) {
        if (avro_value_get_by_index(&arr, k, &el, NULL)) {
            kp_errf(err, errlen, "avro: %s", avro_strerror());
            return -1;
        }
        kp_src es = {&el, e->sidx, c->sdefs, kp_sugg_layout, c->sugg, err, errlen};
        if (dec_fields(&es, &out->items[k])) return -1;
    }
    return 0;
}

/* As kp_decode_item_listed, for KeyphraseSuggestions (free with kp_suggestions_clear). out->items
 * holds out->n suggestions, NULL when there are none. */
int kp_decode_suggestions(kp_codec *c, const void *buf, size_t len, kp_suggestions_decoded *out,
                          char *err, size_t errlen)
{
    kp_entry *e = dec_record(c, buf, len, KP_K_SUGG, out, sizeof(*out), err, errlen);
    if (e && !dec_sugg_items(c, e, out, err, errlen)) return 0;
    kp_suggestions_clear(out);
    return -1;
}

/* ---- clear --------------------------------------------------------------------------------- */

/* Free the strings of C struct v, laid out as layout says. */
static void free_strings(const kp_field *layout, void *v)
{
    for (int i = 0; i < KP_MAX_FIELDS && layout[i].name; i++)
        if (layout[i].type == KP_F_STR || layout[i].type == KP_F_OPT_STR)
            free(*(char **)(void *)((char *)v + layout[i].off));
}

/* Free the strings of v (a C struct of type kind, size bytes) and zero it. NULL is a no-op. */
static void clear_record(int kind, void *v, size_t size)
{
    if (!v) return;
    free_strings(kp_layout[kind], v);
    memset(v, 0, size);
}

/* Free the strings of a decoded ItemListed and zero it. NULL is a no-op. */
void kp_item_listed_clear(kp_item_listed *v)
{
    clear_record(KP_K_ITEM, v, sizeof(*v));
}

/* Free the strings of a decoded AdEvent and zero it. NULL is a no-op. */
void kp_ad_event_clear(kp_ad_event *v)
{
    clear_record(KP_K_AD, v, sizeof(*v));
}

/* Free the strings of a decoded Judgment and zero it. NULL is a no-op. */
void kp_judgment_clear(kp_judgment *v)
{
    clear_record(KP_K_JUDGE, v, sizeof(*v));
}

/* Free the strings of a decoded Keyphrase and zero it. NULL is a no-op. */
void kp_keyphrase_clear(kp_keyphrase *v)
{
    clear_record(KP_K_KEYPHRASE, v, sizeof(*v));
}

/* Free the suggestions (their strings and the items array) and item_id of a decoded
 * KeyphraseSuggestions, and zero it. NULL is a no-op. */
void kp_suggestions_clear(kp_suggestions_decoded *v)
{
    if (!v) return;
    for (int i = 0; i < v->n; i++)
        free_strings(kp_sugg_layout, &v->items[i]);
    free(v->items);
    clear_record(KP_K_SUGG, v, sizeof(*v));
}

/* codec.c - Avro codecs for kprec events in the Confluent wire format (see codec.h).
 *
 * Decoding one event:
 *   1. header: magic byte, schema id -> registered writer schema (kp_entry) of the expected type;
 *   2. pre-scan: walk the writer schema over the body and check every length, count, enum and
 *      union index against the bytes that are really there (Avro C would otherwise malloc whatever
 *      length a garbage varint says) and that the body is consumed exactly;
 *   3. avro_value_read through the entry's cached resolver (avro_resolved_writer_new(writer, proj))
 *      into the entry's cached reader value, reset per call;
 *   4. copy into the plain C struct; reader fields the writer does not have take their default.
 *
 * Avro C 1.11 cannot fill defaults: avro_resolved_writer_new fails with "Reader field X doesn't
 * appear in writer". So per writer schema we resolve against a *projection* of the reader schema
 * (the reader's records minus the fields the writer lacks), and step 4 takes the missing fields'
 * defaults from the reader schema JSON, read with jansson (Avro C drops "default" when it parses a
 * schema). A reader field that the writer lacks and that has no default makes the
 * writer schema incompatible: it is rejected when registered, not per message.
 */
#include "schemas/codec.h"

#include <avro.h>
#include <dirent.h>
#include <jansson.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- built-in writer schemas: generated from schemas/<id>-<Name>.avsc ------------------- */
/* (kp_builtin_schemas.c, see schemas.cmake; test_schemas_codec checks them against the files) */
extern const char kp_avsc_1[], kp_avsc_2[], kp_avsc_3[], kp_avsc_4[], kp_avsc_101[];

enum { KP_K_ITEM = 0, KP_K_AD, KP_K_JUDGE, KP_K_SUGG, KP_K_NKINDS, KP_K_OTHER = -1 };

#define KP_MAX_FIELDS  8
#define KP_MAX_DEPTH   32        /* nesting of schemas / JSON / data we accept */
#define KP_MAX_ZERO_SZ 65536     /* max items in one block of zero-byte items (e.g. null) */
#define KP_MAX_AVSC    (1 << 20) /* max size of an .avsc file */

static const struct {
    int32_t id;
    int kind;
    const char *json;
} kp_builtin[] = {
    {KP_SCHEMA_ID_ITEM_LISTED, KP_K_ITEM, kp_avsc_1},
    {KP_SCHEMA_ID_AD_EVENT, KP_K_AD, kp_avsc_2},
    {KP_SCHEMA_ID_JUDGMENT, KP_K_JUDGE, kp_avsc_3},
    {KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS, KP_K_SUGG, kp_avsc_4},
    {KP_SCHEMA_ID_ITEM_LISTED_V0, KP_K_ITEM, kp_avsc_101},
};
#define KP_NBUILTIN ((int)(sizeof(kp_builtin) / sizeof(kp_builtin[0])))

/* Per type: record name, reader (current) schema id, and the reader's fields in order. The C
 * conversion code below addresses fields by these indices; kp_codec_new checks the schema. */
static const char *const kp_kind_name[KP_K_NKINDS] = {"ItemListed", "AdEvent", "Judgment",
                                                      "KeyphraseSuggestions"};
static const int32_t kp_reader_id[KP_K_NKINDS] = {KP_SCHEMA_ID_ITEM_LISTED, KP_SCHEMA_ID_AD_EVENT,
                                                  KP_SCHEMA_ID_JUDGMENT,
                                                  KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS};
static const char *const kp_fields[KP_K_NKINDS][KP_MAX_FIELDS] = {
    {"item_id", "title", "category", "seller_id", "price", "listed_at"},
    {"item_id", "keyphrase", "kind", "position", "ts"},
    {"item_id", "title", "keyphrase", "source", "score", "ts"},
    {"item_id", "model_version", "generated_at", "suggestions"},
};
static const char *const kp_sugg_fields[KP_MAX_FIELDS] = {"keyphrase", "keyphrase_id", "score"};
static const char kp_sugg_record[] = "Suggestion";

static void kp_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- schema defaults, read from the reader schema JSON with jansson ------------------------ */

/* Find the JSON object of the record named name anywhere in v (NULL if none). Borrowed from v. */
static json_t *avsc_find_record(json_t *v, const char *name, int depth)
{
    if (!v || depth > KP_MAX_DEPTH) return NULL;
    if (json_is_object(v)) {
        const char *t = json_string_value(json_object_get(v, "type"));
        const char *nm = json_string_value(json_object_get(v, "name"));
        if (t && nm && strcmp(t, "record") == 0 && strcmp(nm, name) == 0) return v;
        for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
            json_t *r = avsc_find_record(json_object_iter_value(it), name, depth + 1);
            if (r) return r;
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *r = avsc_find_record(json_array_get(v, i), name, depth + 1);
            if (r) return r;
        }
    }
    return NULL;
}

/* The "default" of field `field` of record JSON rec, or NULL if it has none (or rec is NULL).
 * Borrowed from rec. A "default": null is the JSON null value, not NULL. */
static const json_t *avsc_field_default(const json_t *rec, const char *field)
{
    const json_t *fields = json_object_get(rec, "fields");
    for (size_t i = 0; i < json_array_size(fields); i++) {
        const json_t *f = json_array_get(fields, i);
        const char *nm = json_string_value(json_object_get(f, "name"));
        if (nm && strcmp(nm, field) == 0) return json_object_get(f, "default");
    }
    return NULL;
}

/* ---- UTF-8 -------------------------------------------------------------------------------- */

int kp_utf8_valid(const char *s, size_t n, size_t *bad_at)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            goto bad;
        }
        if (n - i < len) goto bad;
        for (size_t k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80) goto bad;
            cp = (cp << 6) | (u[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto bad;
        i += len;
    }
    return 1;
bad:
    if (bad_at) *bad_at = i;
    return 0;
}

/* ---- pre-scan: check a body against its writer schema before Avro C reads it --------------- */

typedef struct {
    const unsigned char *p;
    size_t len, pos;
    char *err;
    size_t errlen;
} kp_scan;

static avro_schema_t kp_deref(avro_schema_t s)
{
    for (int i = 0; s && is_avro_link(s) && i < KP_MAX_DEPTH; i++)
        s = avro_schema_link_target(s);
    return s;
}

static int scan_truncated(kp_scan *s)
{
    kp_seterr(s->err, s->errlen, "truncated (at body offset %zu of %zu)", s->pos, s->len);
    return -1;
}

/* Zig-zag varint of at most 10 bytes that fits in 64 bits. */
static int scan_varint(kp_scan *s, int64_t *out)
{
    uint64_t v = 0;
    size_t start = s->pos;
    for (int i = 0;; i++) {
        if (s->pos >= s->len) return scan_truncated(s);
        unsigned b = s->p[s->pos++];
        if (i == 9 && b > 1) {
            kp_seterr(s->err, s->errlen, "varint overflow at body offset %zu", start);
            return -1;
        }
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) break;
    }
    *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
    return 0;
}

static int scan_skip(kp_scan *s, uint64_t n)
{
    if (n > s->len - s->pos) return scan_truncated(s);
    s->pos += (size_t)n;
    return 0;
}

/* A length prefix: 0 <= n <= bytes left. */
static int scan_len(kp_scan *s, const char *what, int64_t *n)
{
    size_t at = s->pos;
    if (scan_varint(s, n)) return -1;
    if (*n < 0) {
        kp_seterr(s->err, s->errlen, "bad %s length %lld at body offset %zu", what, (long long)*n,
                  at);
        return -1;
    }
    if ((uint64_t)*n > s->len - s->pos) return scan_truncated(s);
    return 0;
}

/* Smallest number of bytes a value of schema t can take (a lower bound for deep nesting). */
static size_t min_size(avro_schema_t t, int depth)
{
    t = kp_deref(t);
    if (!t || depth > 8) return 0;
    switch (avro_typeof(t)) {
    case AVRO_NULL:
        return 0;
    case AVRO_FLOAT:
        return 4;
    case AVRO_DOUBLE:
        return 8;
    case AVRO_FIXED:
        return (size_t)avro_schema_fixed_size(t);
    case AVRO_RECORD: {
        size_t sum = 0;
        for (size_t i = 0; i < avro_schema_record_size(t); i++)
            sum += min_size(avro_schema_record_field_get_by_index(t, (int)i), depth + 1);
        return sum;
    }
    case AVRO_UNION: {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < avro_schema_union_size(t); i++) {
            size_t m = min_size(avro_schema_union_branch(t, (int)i), depth + 1);
            if (m < best) best = m;
        }
        return 1 + (best == SIZE_MAX ? 0 : best);
    }
    default:
        return 1; /* string, bytes, int, long, boolean, enum, array, map */
    }
}

static int scan_value(kp_scan *s, avro_schema_t t, int depth)
{
    int64_t v;
    size_t at = s->pos;
    t = kp_deref(t);
    if (!t || depth > KP_MAX_DEPTH) {
        kp_seterr(s->err, s->errlen, "schema nested too deeply");
        return -1;
    }
    switch (avro_typeof(t)) {
    case AVRO_NULL:
        return 0;
    case AVRO_STRING:
    case AVRO_BYTES:
        if (scan_len(s, "string", &v)) return -1;
        return scan_skip(s, (uint64_t)v);
    case AVRO_INT32:
        if (scan_varint(s, &v)) return -1;
        if (v < INT32_MIN || v > INT32_MAX) {
            kp_seterr(s->err, s->errlen, "int out of range at body offset %zu", at);
            return -1;
        }
        return 0;
    case AVRO_INT64:
        return scan_varint(s, &v);
    case AVRO_FLOAT:
        return scan_skip(s, 4);
    case AVRO_DOUBLE:
        return scan_skip(s, 8);
    case AVRO_BOOLEAN:
        if (s->pos >= s->len) return scan_truncated(s);
        if (s->p[s->pos] > 1) {
            kp_seterr(s->err, s->errlen, "bad boolean byte 0x%02x at body offset %zu", s->p[s->pos],
                      at);
            return -1;
        }
        s->pos++;
        return 0;
    case AVRO_FIXED:
        return scan_skip(s, (uint64_t)avro_schema_fixed_size(t));
    case AVRO_ENUM:
        if (scan_varint(s, &v)) return -1;
        if (v < 0 || v >= avro_schema_enum_number_of_symbols(t)) {
            kp_seterr(s->err, s->errlen, "enum index %lld out of range at body offset %zu",
                      (long long)v, at);
            return -1;
        }
        return 0;
    case AVRO_UNION:
        if (scan_varint(s, &v)) return -1;
        if (v < 0 || (uint64_t)v >= avro_schema_union_size(t)) {
            kp_seterr(s->err, s->errlen, "union index %lld out of range at body offset %zu",
                      (long long)v, at);
            return -1;
        }
        return scan_value(s, avro_schema_union_branch(t, (int)v), depth + 1);
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(t); i++)
            if (scan_value(s, avro_schema_record_field_get_by_index(t, (int)i), depth + 1))
                return -1;
        return 0;
    case AVRO_ARRAY:
    case AVRO_MAP: {
        int is_map = avro_typeof(t) == AVRO_MAP;
        avro_schema_t item = is_map ? avro_schema_map_values(t) : avro_schema_array_items(t);
        size_t minsz = min_size(item, 0) + (is_map ? 1 : 0);
        uint64_t total = 0;
        for (;;) {
            int64_t count, bytes = -1;
            at = s->pos;
            if (scan_varint(s, &count)) return -1;
            if (count == 0) return 0;
            if (count < 0) {
                if (count == INT64_MIN) {
                    kp_seterr(s->err, s->errlen, "bad block count at body offset %zu", at);
                    return -1;
                }
                count = -count;
                if (scan_len(s, "block", &bytes)) return -1;
            }
            size_t start = s->pos;
            total += (uint64_t)count;
            if (minsz > 0 ? (uint64_t)count > (s->len - s->pos) / minsz : total > KP_MAX_ZERO_SZ)
                return scan_truncated(s);
            for (int64_t k = 0; k < count; k++) {
                if (is_map && scan_len(s, "map key", &v)) return -1;
                if (is_map && scan_skip(s, (uint64_t)v)) return -1;
                if (scan_value(s, item, depth + 1)) return -1;
            }
            if (bytes >= 0 && (uint64_t)bytes != s->pos - start) {
                kp_seterr(s->err, s->errlen, "block size %lld does not match its %zu bytes",
                          (long long)bytes, s->pos - start);
                return -1;
            }
        }
    }
    default:
        kp_seterr(s->err, s->errlen, "unsupported schema type");
        return -1;
    }
}

/* ---- registered schemas ------------------------------------------------------------------- */

typedef struct {
    int32_t id;
    int kind; /* KP_K_* or KP_K_OTHER (a record this build does not know: never decoded) */
    char *name;
    avro_schema_t writer;
    avro_value_iface_t *wclass; /* built-ins only: value of the writer schema, for encoding */
    avro_value_t wvalue;
    avro_schema_t proj; /* reader schema minus the fields the writer lacks */
    avro_value_iface_t *pclass;
    avro_value_t pvalue;        /* decoded value, reset per message */
    avro_value_iface_t *rclass; /* resolver writer -> proj */
    avro_value_t rvalue;
    int fidx[KP_MAX_FIELDS]; /* reader field i -> index in proj, -1 if the writer lacks it */
    int sidx[KP_MAX_FIELDS]; /* same for the Suggestion record (KeyphraseSuggestions only) */
} kp_entry;

struct kp_codec {
    kp_entry **entries;
    int n, cap;
    avro_schema_t reader[KP_K_NKINDS];              /* current schema of each type */
    json_t *json[KP_K_NKINDS];                      /* ... its JSON, for the defaults */
    const json_t *defs[KP_K_NKINDS][KP_MAX_FIELDS]; /* default of reader field i, NULL if none */
    avro_schema_t sugg;                             /* Suggestion record of the reader */
    const json_t *sdefs[KP_MAX_FIELDS];
    avro_reader_t rd;
    avro_writer_t wr;
    char lasterr[KP_CODEC_ERRLEN];
};

static const char kp_empty[1] = {0};
static char kp_wdummy[1];

static void entry_free(kp_entry *e)
{
    if (!e) return;
    if (e->rvalue.iface) {
        avro_resolved_writer_clear_dest(&e->rvalue);
        avro_value_decref(&e->rvalue);
    }
    if (e->rclass) avro_value_iface_decref(e->rclass);
    if (e->pvalue.iface) avro_value_decref(&e->pvalue);
    if (e->pclass) avro_value_iface_decref(e->pclass);
    if (e->proj) avro_schema_decref(e->proj);
    if (e->wvalue.iface) avro_value_decref(&e->wvalue);
    if (e->wclass) avro_value_iface_decref(e->wclass);
    if (e->writer) avro_schema_decref(e->writer);
    free(e->name);
    free(e);
}

static kp_entry *find_entry(const kp_codec *c, int32_t id)
{
    for (int i = 0; i < c->n; i++)
        if (c->entries[i]->id == id) return c->entries[i];
    return NULL;
}

/* The default of reader field `name` of record JSON rec (searched in every type's JSON). */
static const json_t *reader_default(const kp_codec *c, const char *record, const char *name)
{
    for (int k = 0; k < KP_K_NKINDS; k++) {
        const json_t *rec = avsc_find_record(c->json[k], record, 0);
        if (rec) return avsc_field_default(rec, name);
    }
    return NULL;
}

/* Project reader schema r onto writer schema w: records keep only the fields w has (a field w
 * lacks must have a default), recursively through records, arrays and maps. Returns a new
 * reference, or NULL with a reason in err. */
static avro_schema_t project(const kp_codec *c, avro_schema_t r, avro_schema_t w, int depth,
                             char *err, size_t errlen)
{
    r = kp_deref(r), w = kp_deref(w);
    if (!r || !w || depth > KP_MAX_DEPTH) {
        kp_seterr(err, errlen, "schema nested too deeply");
        return NULL;
    }
    if (is_avro_record(r) && is_avro_record(w)) {
        avro_schema_t out = avro_schema_record(avro_schema_name(r), avro_schema_namespace(r));
        if (!out) goto avro_err;
        for (size_t i = 0; i < avro_schema_record_size(r); i++) {
            const char *fname = avro_schema_record_field_name(r, (int)i);
            int wi = avro_schema_record_field_get_index(w, fname);
            if (wi < 0) {
                if (reader_default(c, avro_schema_name(r), fname)) continue;
                kp_seterr(err, errlen, "writer lacks field %s.%s, which has no default",
                          avro_schema_name(r), fname);
                avro_schema_decref(out);
                return NULL;
            }
            avro_schema_t p =
                project(c, avro_schema_record_field_get_by_index(r, (int)i),
                        avro_schema_record_field_get_by_index(w, wi), depth + 1, err, errlen);
            if (!p) {
                avro_schema_decref(out);
                return NULL;
            }
            int rc = avro_schema_record_field_append(out, fname, p);
            avro_schema_decref(p);
            if (rc) {
                avro_schema_decref(out);
                goto avro_err;
            }
        }
        return out;
    }
    if ((is_avro_array(r) && is_avro_array(w)) || (is_avro_map(r) && is_avro_map(w))) {
        int arr = is_avro_array(r);
        avro_schema_t p = project(c, arr ? avro_schema_array_items(r) : avro_schema_map_values(r),
                                  arr ? avro_schema_array_items(w) : avro_schema_map_values(w),
                                  depth + 1, err, errlen);
        if (!p) return NULL;
        avro_schema_t out = arr ? avro_schema_array(p) : avro_schema_map(p);
        avro_schema_decref(p);
        if (!out) goto avro_err;
        return out;
    }
    if (is_avro_enum(r) && is_avro_enum(w)) {
        /* Avro C resolves enums by index, not by symbol: read the writer's index as is and map
         * it by symbol when copying out (get_enum) */
        return avro_schema_incref(w);
    }
    return avro_schema_incref(r);
avro_err:
    kp_seterr(err, errlen, "avro: %s", avro_strerror());
    return NULL;
}

/* Map reader record fields names[i] to their index in record proj (-1 if absent). */
static void map_fields(avro_schema_t proj, const char *const *names, int *idx)
{
    for (int i = 0; i < KP_MAX_FIELDS; i++)
        idx[i] = names[i] && proj ? avro_schema_record_field_get_index(proj, names[i]) : -1;
}

/* Register writer schema w (the reference is taken over, also on failure) under id. Builds the
 * resolver of a known type now, so that an incompatible schema fails here and not per message.
 * encode: also build a value of w for the encoders. Returns 0 or -1 with a reason in err. */
static int add_entry(kp_codec *c, int32_t id, avro_schema_t w, int encode, char *err, size_t errlen)
{
    kp_entry *e = calloc(1, sizeof(*e));
    if (!e) {
        avro_schema_decref(w);
        kp_seterr(err, errlen, "out of memory");
        return -1;
    }
    e->id = id;
    e->writer = w;
    e->kind = KP_K_OTHER;
    if (!is_avro_record(w)) {
        kp_seterr(err, errlen, "schema id %d is not a record", (int)id);
        goto err;
    }
    e->name = strdup(avro_schema_name(w));
    if (!e->name) {
        kp_seterr(err, errlen, "out of memory");
        goto err;
    }
    for (int k = 0; k < KP_K_NKINDS; k++)
        if (strcmp(e->name, kp_kind_name[k]) == 0) e->kind = k;
    if (encode) {
        e->wclass = avro_generic_class_from_schema(w);
        if (!e->wclass || avro_generic_value_new(e->wclass, &e->wvalue)) goto avro_err;
    }
    if (e->kind != KP_K_OTHER) {
        char why[KP_CODEC_ERRLEN];
        e->proj = project(c, c->reader[e->kind], w, 0, why, sizeof(why));
        if (!e->proj) {
            kp_seterr(err, errlen, "schema id %d does not resolve to %s: %s", (int)id, e->name,
                      why);
            goto err;
        }
        e->pclass = avro_generic_class_from_schema(e->proj);
        if (!e->pclass || avro_generic_value_new(e->pclass, &e->pvalue)) goto avro_err;
        e->rclass = avro_resolved_writer_new(w, e->proj);
        if (!e->rclass) {
            kp_seterr(err, errlen, "schema id %d does not resolve to %s: avro: %s", (int)id,
                      e->name, avro_strerror());
            goto err;
        }
        if (avro_resolved_writer_new_value(e->rclass, &e->rvalue)) goto avro_err;
        avro_resolved_writer_set_dest(&e->rvalue, &e->pvalue);
        map_fields(e->proj, kp_fields[e->kind], e->fidx);
        map_fields(NULL, kp_sugg_fields, e->sidx);
        if (e->kind == KP_K_SUGG && e->fidx[3] >= 0) {
            avro_schema_t arr =
                kp_deref(avro_schema_record_field_get_by_index(e->proj, e->fidx[3]));
            avro_schema_t rec =
                arr && is_avro_array(arr) ? kp_deref(avro_schema_array_items(arr)) : NULL;
            if (rec && is_avro_record(rec)) map_fields(rec, kp_sugg_fields, e->sidx);
        }
    }
    if (c->n == c->cap) {
        int ncap = c->cap ? 2 * c->cap : 8;
        kp_entry **ne = realloc(c->entries, (size_t)ncap * sizeof(*ne));
        if (!ne) {
            kp_seterr(err, errlen, "out of memory");
            goto err;
        }
        c->entries = ne, c->cap = ncap;
    }
    c->entries[c->n++] = e;
    return 0;
avro_err:
    kp_seterr(err, errlen, "schema id %d: avro: %s", (int)id, avro_strerror());
err:
    entry_free(e);
    return -1;
}

static int parse_schema(const char *text, size_t len, avro_schema_t *out, char *err, size_t errlen)
{
    if (avro_schema_from_json_length(text, len, out)) {
        kp_seterr(err, errlen, "avro: %s", avro_strerror());
        return -1;
    }
    return 0;
}

static const char *builtin_json(int32_t id)
{
    for (int i = 0; i < KP_NBUILTIN; i++)
        if (kp_builtin[i].id == id) return kp_builtin[i].json;
    return NULL;
}

kp_codec *kp_codec_new(char *err, size_t errlen)
{
    kp_codec *c = calloc(1, sizeof(*c));
    if (!c) {
        kp_seterr(err, errlen, "out of memory");
        return NULL;
    }
    c->rd = avro_reader_memory(kp_empty, 0);
    c->wr = avro_writer_memory(kp_wdummy, 0);
    if (!c->rd || !c->wr) {
        kp_seterr(err, errlen, "avro: %s", avro_strerror());
        goto err;
    }
    /* reader schemas, their field layout and their defaults */
    for (int k = 0; k < KP_K_NKINDS; k++) {
        const char *json = builtin_json(kp_reader_id[k]);
        json_error_t jerr;
        c->json[k] = json_loadb(json, strlen(json), 0, &jerr);
        if (!c->json[k]) {
            kp_seterr(err, errlen, "built-in %s schema is not valid JSON: %s (line %d)",
                      kp_kind_name[k], jerr.text, jerr.line);
            goto err;
        }
        if (parse_schema(json, strlen(json), &c->reader[k], err, errlen)) goto err;
        avro_schema_t r = c->reader[k];
        size_t nf = 0;
        while (nf < KP_MAX_FIELDS && kp_fields[k][nf])
            nf++;
        if (!is_avro_record(r) || strcmp(avro_schema_name(r), kp_kind_name[k]) ||
            avro_schema_record_size(r) != nf) {
            kp_seterr(err, errlen, "built-in %s schema does not have the %zu fields the code uses",
                      kp_kind_name[k], nf);
            goto err;
        }
        for (size_t i = 0; i < nf; i++) {
            if (strcmp(avro_schema_record_field_name(r, (int)i), kp_fields[k][i])) {
                kp_seterr(err, errlen, "built-in %s schema: field %zu is %s, expected %s",
                          kp_kind_name[k], i, avro_schema_record_field_name(r, (int)i),
                          kp_fields[k][i]);
                goto err;
            }
            c->defs[k][i] = avsc_field_default(avsc_find_record(c->json[k], kp_kind_name[k], 0),
                                               kp_fields[k][i]);
        }
    }
    avro_schema_t arr = kp_deref(avro_schema_record_field_get_by_index(c->reader[KP_K_SUGG], 3));
    c->sugg = arr && is_avro_array(arr) ? kp_deref(avro_schema_array_items(arr)) : NULL;
    if (!c->sugg || !is_avro_record(c->sugg) || strcmp(avro_schema_name(c->sugg), kp_sugg_record) ||
        avro_schema_record_size(c->sugg) != 3) {
        kp_seterr(err, errlen, "built-in KeyphraseSuggestions schema: bad Suggestion record");
        goto err;
    }
    for (int i = 0; i < 3; i++) {
        if (strcmp(avro_schema_record_field_name(c->sugg, i), kp_sugg_fields[i])) {
            kp_seterr(err, errlen, "built-in Suggestion record: field %d is not %s", i,
                      kp_sugg_fields[i]);
            goto err;
        }
        c->sdefs[i] = avsc_field_default(avsc_find_record(c->json[KP_K_SUGG], kp_sugg_record, 0),
                                         kp_sugg_fields[i]);
    }
    /* the table */
    for (int i = 0; i < KP_NBUILTIN; i++) {
        avro_schema_t w;
        char why[KP_CODEC_ERRLEN];
        if (parse_schema(kp_builtin[i].json, strlen(kp_builtin[i].json), &w, why, sizeof(why)) ||
            add_entry(c, kp_builtin[i].id, w, 1, why, sizeof(why))) {
            kp_seterr(err, errlen, "built-in schema id %d: %s", (int)kp_builtin[i].id, why);
            goto err;
        }
        if (c->entries[c->n - 1]->kind != kp_builtin[i].kind) {
            kp_seterr(err, errlen, "built-in schema id %d has the wrong record name",
                      (int)kp_builtin[i].id);
            goto err;
        }
    }
    return c;
err:
    kp_codec_free(c);
    return NULL;
}

void kp_codec_free(kp_codec *c)
{
    if (!c) return;
    for (int i = 0; i < c->n; i++)
        entry_free(c->entries[i]);
    free(c->entries);
    for (int k = 0; k < KP_K_NKINDS; k++) {
        if (c->reader[k]) avro_schema_decref(c->reader[k]);
        json_decref(c->json[k]);
    }
    if (c->rd) avro_reader_free(c->rd);
    if (c->wr) avro_writer_free(c->wr);
    free(c);
}

int kp_codec_builtin_count(void)
{
    return KP_NBUILTIN;
}

int kp_codec_builtin_info(int i, int32_t *id, const char **name, const char **json)
{
    if (i < 0 || i >= KP_NBUILTIN) return -1;
    if (id) *id = kp_builtin[i].id;
    if (name) *name = kp_kind_name[kp_builtin[i].kind];
    if (json) *json = kp_builtin[i].json;
    return 0;
}

const char *kp_codec_schema_name(const kp_codec *c, int32_t id)
{
    const kp_entry *e = c ? find_entry(c, id) : NULL;
    return e ? e->name : NULL;
}

const char *kp_codec_last_error(const kp_codec *c)
{
    return c ? c->lasterr : "no codec";
}

/* Parse "<id>-<Name>.avsc". Returns 1 and sets *id and name (NUL-terminated) if it matches. */
static int parse_avsc_name(const char *fn, int32_t *id, char *name, size_t namelen)
{
    const char *p = fn;
    long long v = 0;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        if (v > INT32_MAX) return 0;
    }
    if (v < 1 || *p++ != '-') return 0;
    const char *s = p;
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_')) return 0;
    while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
           *p == '_')
        p++;
    if (strcmp(p, ".avsc") != 0 || (size_t)(p - s) >= namelen) return 0;
    memcpy(name, s, (size_t)(p - s));
    name[p - s] = '\0';
    *id = (int32_t)v;
    return 1;
}

/* Read a whole (small) file into a new malloc'd buffer. */
static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    struct stat st;
    if (!f || fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        kp_seterr(err, errlen, "cannot read %s: %s", path,
                  f ? "not a regular file" : strerror(errno));
        goto err;
    }
    if (st.st_size > KP_MAX_AVSC) {
        kp_seterr(err, errlen, "%s: too large (%lld bytes)", path, (long long)st.st_size);
        goto err;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        kp_seterr(err, errlen, "out of memory");
        goto err;
    }
    *len = fread(buf, 1, (size_t)st.st_size, f);
    if (ferror(f)) {
        kp_seterr(err, errlen, "cannot read %s", path);
        goto err;
    }
    buf[*len] = '\0';
    fclose(f);
    return buf;
err:
    free(buf);
    if (f) fclose(f);
    return NULL;
}

int kp_codec_load_dir(kp_codec *c, const char *dir, char *err, size_t errlen)
{
    struct dirent **names = NULL;
    int nn = -1, base, added = 0;
    char *text = NULL;
    if (!c || !dir || !*dir) {
        kp_seterr(err, errlen, "no codec or directory");
        return -1;
    }
    base = c->n;
    nn = scandir(dir, &names, NULL, alphasort);
    if (nn < 0) {
        kp_seterr(err, errlen, "cannot open directory %s: %s", dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < nn; i++) {
        int32_t id;
        char name[128], path[4096], why[KP_CODEC_ERRLEN];
        size_t len;
        avro_schema_t w;
        if (!parse_avsc_name(names[i]->d_name, &id, name, sizeof(name))) continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name) >= sizeof(path)) {
            kp_seterr(err, errlen, "path too long in %s", dir);
            goto err;
        }
        text = read_file(path, &len, err, errlen);
        if (!text) goto err;
        if (parse_schema(text, len, &w, why, sizeof(why))) {
            kp_seterr(err, errlen, "%s: %s", path, why);
            goto err;
        }
        free(text);
        text = NULL;
        if (!is_avro_record(w) || strcmp(avro_schema_name(w), name) != 0) {
            kp_seterr(err, errlen, "%s: not a record named %s", path, name);
            avro_schema_decref(w);
            goto err;
        }
        kp_entry *old = find_entry(c, id);
        if (old) {
            int same = avro_schema_equal(old->writer, w);
            avro_schema_decref(w);
            if (same) continue;
            kp_seterr(err, errlen, "%s: schema id %d is already registered with another schema",
                      path, (int)id);
            goto err;
        }
        if (add_entry(c, id, w, 0, why, sizeof(why))) {
            kp_seterr(err, errlen, "%s: %s", path, why);
            goto err;
        }
        added++;
    }
    for (int i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    return added;
err:
    free(text);
    while (c->n > base)
        entry_free(c->entries[--c->n]);
    for (int i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    return -1;
}

/* ---- encoders ----------------------------------------------------------------------------- */

static int enc_fail(kp_codec *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->lasterr, sizeof(c->lasterr), fmt, ap);
    va_end(ap);
    return -1;
}

static int enc_avro_fail(kp_codec *c)
{
    return enc_fail(c, "avro: %s", avro_strerror());
}

/* Look up the built-in entry of id and reset its writer value. */
static avro_value_t *enc_begin(kp_codec *c, int32_t id, void **out, size_t *outlen)
{
    kp_entry *e = find_entry(c, id);
    if (out) *out = NULL;
    if (outlen) *outlen = 0;
    if (!out || !outlen) {
        enc_fail(c, "no output buffer");
        return NULL;
    }
    if (!e || !e->wvalue.iface) {
        enc_fail(c, "schema id %d is not built in", (int)id);
        return NULL;
    }
    c->lasterr[0] = '\0';
    avro_value_reset(&e->wvalue);
    return &e->wvalue;
}

/* Set string field fname of rec; NULL is written as "" if the field's default is "". */
static int enc_str(kp_codec *c, avro_value_t *rec, const char *record, const char *fname,
                   const char *s)
{
    avro_value_t f;
    if (!s) {
        const char *d = json_string_value(reader_default(c, record, fname));
        if (!d || d[0] != '\0') return enc_fail(c, "%s is NULL", fname);
        s = "";
    }
    if (avro_value_get_by_name(rec, fname, &f, NULL) || avro_value_set_string(&f, s))
        return enc_avro_fail(c);
    return 0;
}

static int enc_long(kp_codec *c, avro_value_t *rec, const char *fname, int64_t x)
{
    avro_value_t f;
    if (avro_value_get_by_name(rec, fname, &f, NULL) || avro_value_set_long(&f, x))
        return enc_avro_fail(c);
    return 0;
}

static int enc_int(kp_codec *c, avro_value_t *rec, const char *fname, int32_t x)
{
    avro_value_t f;
    if (avro_value_get_by_name(rec, fname, &f, NULL) || avro_value_set_int(&f, x))
        return enc_avro_fail(c);
    return 0;
}

static int enc_double(kp_codec *c, avro_value_t *rec, const char *fname, double x)
{
    avro_value_t f;
    if (avro_value_get_by_name(rec, fname, &f, NULL) || avro_value_set_double(&f, x))
        return enc_avro_fail(c);
    return 0;
}

static int enc_enum(kp_codec *c, avro_value_t *rec, const char *fname, int x, int nsym)
{
    avro_value_t f;
    if (x < 0 || x >= nsym) return enc_fail(c, "%s %d out of range", fname, x);
    if (avro_value_get_by_name(rec, fname, &f, NULL) || avro_value_set_enum(&f, x))
        return enc_avro_fail(c);
    return 0;
}

/* Write the header and rec (the writer value of schema id) into a new buffer. */
static int enc_finish(kp_codec *c, int32_t id, avro_value_t *rec, void **out, size_t *outlen)
{
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

static int enc_item_listed(kp_codec *c, int32_t id, const kp_item_listed *v, void **out,
                           size_t *outlen)
{
    if (!c) return -1;
    avro_value_t *rec = enc_begin(c, id, out, outlen);
    if (!rec) return -1;
    if (!v) return enc_fail(c, "no value");
    const char *R = "ItemListed";
    if (enc_str(c, rec, R, "item_id", v->item_id) || enc_str(c, rec, R, "title", v->title))
        return -1;
    if (id != KP_SCHEMA_ID_ITEM_LISTED_V0 &&
        (enc_str(c, rec, R, "category", v->category) ||
         enc_str(c, rec, R, "seller_id", v->seller_id) || enc_double(c, rec, "price", v->price) ||
         enc_long(c, rec, "listed_at", v->listed_at)))
        return -1;
    return enc_finish(c, id, rec, out, outlen);
}

int kp_encode_item_listed(kp_codec *c, const kp_item_listed *v, void **out, size_t *outlen)
{
    return enc_item_listed(c, KP_SCHEMA_ID_ITEM_LISTED, v, out, outlen);
}

int kp_encode_item_listed_v0(kp_codec *c, const kp_item_listed *v, void **out, size_t *outlen)
{
    return enc_item_listed(c, KP_SCHEMA_ID_ITEM_LISTED_V0, v, out, outlen);
}

int kp_encode_ad_event(kp_codec *c, const kp_ad_event *v, void **out, size_t *outlen)
{
    if (!c) return -1;
    avro_value_t *rec = enc_begin(c, KP_SCHEMA_ID_AD_EVENT, out, outlen);
    if (!rec) return -1;
    if (!v) return enc_fail(c, "no value");
    const char *R = "AdEvent";
    if (enc_str(c, rec, R, "item_id", v->item_id) ||
        enc_str(c, rec, R, "keyphrase", v->keyphrase) ||
        enc_enum(c, rec, "kind", (int)v->kind, 2) || enc_int(c, rec, "position", v->position) ||
        enc_long(c, rec, "ts", v->ts))
        return -1;
    return enc_finish(c, KP_SCHEMA_ID_AD_EVENT, rec, out, outlen);
}

int kp_encode_judgment(kp_codec *c, const kp_judgment *v, void **out, size_t *outlen)
{
    if (!c) return -1;
    avro_value_t *rec = enc_begin(c, KP_SCHEMA_ID_JUDGMENT, out, outlen);
    if (!rec) return -1;
    if (!v) return enc_fail(c, "no value");
    if (!(v->score >= 0.0 && v->score <= 1.0))
        return enc_fail(c, "score %g is not in [0, 1]", v->score);
    const char *R = "Judgment";
    if (enc_str(c, rec, R, "item_id", v->item_id) || enc_str(c, rec, R, "title", v->title) ||
        enc_str(c, rec, R, "keyphrase", v->keyphrase) ||
        enc_enum(c, rec, "source", (int)v->source, 3) || enc_double(c, rec, "score", v->score) ||
        enc_long(c, rec, "ts", v->ts))
        return -1;
    return enc_finish(c, KP_SCHEMA_ID_JUDGMENT, rec, out, outlen);
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

int kp_encode_suggestions(kp_codec *c, const char *item_id, int64_t model_version,
                          int64_t generated_at, const kp_suggestion *s, int n, void **out,
                          size_t *outlen)
{
    if (!c) return -1;
    avro_value_t *rec = enc_begin(c, KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS, out, outlen);
    avro_value_t arr, el, f;
    if (!rec) return -1;
    if (n < 0 || (n > 0 && !s)) return enc_fail(c, "bad suggestions (n = %d)", n);
    if (enc_str(c, rec, "KeyphraseSuggestions", "item_id", item_id) ||
        enc_long(c, rec, "model_version", model_version) ||
        enc_long(c, rec, "generated_at", generated_at))
        return -1;
    if (avro_value_get_by_name(rec, "suggestions", &arr, NULL)) return enc_avro_fail(c);
    for (int i = 0; i < n; i++) {
        if (avro_value_append(&arr, &el, NULL)) return enc_avro_fail(c);
        if (enc_str(c, &el, kp_sugg_record, "keyphrase", s[i].keyphrase)) return -1;
        if (avro_value_get_by_name(&el, "keyphrase_id", &f, NULL)) return enc_avro_fail(c);
        if (enc_opt_str(c, &f, s[i].keyphrase_id)) return -1;
        if (avro_value_get_by_name(&el, "score", &f, NULL) || avro_value_set_float(&f, s[i].score))
            return enc_avro_fail(c);
    }
    return enc_finish(c, KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS, rec, out, outlen);
}

/* ---- decoders ----------------------------------------------------------------------------- */

int kp_wire_schema_id(const void *buf, size_t len, int32_t *id, char *err, size_t errlen)
{
    const unsigned char *b = buf;
    if (!b || len < KP_WIRE_HEADER_LEN) {
        kp_seterr(err, errlen, "truncated (%zu bytes, the header alone is %d)", b ? len : 0,
                  KP_WIRE_HEADER_LEN);
        return -1;
    }
    if (b[0] != 0) {
        kp_seterr(err, errlen, "bad magic byte 0x%02x", b[0]);
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
        kp_seterr(err, errlen, "no codec");
        return NULL;
    }
    if (kp_wire_schema_id(buf, len, &id, err, errlen)) return NULL;
    kp_entry *e = find_entry(c, id);
    if (!e) {
        kp_seterr(err, errlen, "unknown schema id %u", (unsigned)(uint32_t)id);
        return NULL;
    }
    if (e->kind != kind) {
        kp_seterr(err, errlen, "schema id %d is %s, expected %s", (int)id, e->name,
                  kp_kind_name[kind]);
        return NULL;
    }
    const unsigned char *body = (const unsigned char *)buf + KP_WIRE_HEADER_LEN;
    kp_scan s = {body, len - KP_WIRE_HEADER_LEN, 0, err, errlen};
    if (scan_value(&s, e->writer, 0)) return NULL;
    if (s.pos != s.len) {
        kp_seterr(err, errlen, "trailing bytes (%zu after the record)", s.len - s.pos);
        return NULL;
    }
    avro_value_reset(&e->pvalue);
    avro_reader_memory_set_source(c->rd, (const char *)body, (int64_t)s.len);
    if (avro_value_read(c->rd, &e->rvalue)) {
        kp_seterr(err, errlen, "avro: %s", avro_strerror());
        return NULL;
    }
    return e;
}

/* A record to copy out of: the projected value and how reader fields map onto it. */
typedef struct {
    avro_value_t *rec;
    const int *idx;            /* reader field i -> index in rec, -1 if absent */
    const json_t *const *defs; /* reader field i -> default, NULL if none */
    const char *const *names;
    char *err;
    size_t errlen;
} kp_src;

/* Field i of src: 1 and *f if present, 0 if absent (use *def), -1 on error. */
static int src_field(const kp_src *s, int i, avro_value_t *f, const json_t **def)
{
    *def = s->defs[i];
    if (s->idx[i] < 0) {
        if (*def) return 0;
        kp_seterr(s->err, s->errlen, "field %s missing and has no default", s->names[i]);
        return -1;
    }
    if (avro_value_get_by_index(s->rec, (size_t)s->idx[i], f, NULL)) {
        kp_seterr(s->err, s->errlen, "avro: %s", avro_strerror());
        return -1;
    }
    return 1;
}

static int src_bad(const kp_src *s, int i, const char *what)
{
    kp_seterr(s->err, s->errlen, "field %s: %s", s->names[i], what);
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

static int get_str(const kp_src *s, int i, char **out)
{
    avro_value_t f;
    const json_t *d;
    const char *p;
    size_t sz;
    int r = src_field(s, i, &f, &d);
    if (r < 0) return -1;
    if (r == 0) {
        if (!json_is_string(d)) return src_bad(s, i, "default is not a string");
        return copy_str(s, i, json_string_value(d), json_string_length(d), out);
    }
    if (avro_value_get_string(&f, &p, &sz)) return src_bad(s, i, avro_strerror());
    /* Avro C counts the terminating NUL in sz */
    return copy_str(s, i, p ? p : "", sz ? sz - 1 : 0, out);
}

/* ["null", "string"]: NULL for null. */
static int get_opt_str(const kp_src *s, int i, char **out)
{
    avro_value_t f, br;
    const json_t *d;
    const char *p;
    size_t sz;
    int r = src_field(s, i, &f, &d);
    *out = NULL;
    if (r < 0) return -1;
    if (r == 0) {
        if (json_is_null(d)) return 0;
        if (!json_is_string(d)) return src_bad(s, i, "default is not null or a string");
        return copy_str(s, i, json_string_value(d), json_string_length(d), out);
    }
    if (avro_value_get_type(&f) == AVRO_UNION) {
        if (avro_value_get_current_branch(&f, &br)) return src_bad(s, i, avro_strerror());
        f = br;
    }
    if (avro_value_get_type(&f) == AVRO_NULL) return 0;
    if (avro_value_get_string(&f, &p, &sz)) return src_bad(s, i, avro_strerror());
    return copy_str(s, i, p ? p : "", sz ? sz - 1 : 0, out);
}

static int get_num(const kp_src *s, int i, double *out)
{
    avro_value_t f;
    const json_t *d;
    int r = src_field(s, i, &f, &d);
    if (r < 0) return -1;
    if (r == 0) {
        if (!json_is_number(d)) return src_bad(s, i, "default is not a number");
        *out = json_number_value(d);
        return 0;
    }
    int32_t i32;
    int64_t i64;
    float f32;
    switch (avro_value_get_type(&f)) {
    case AVRO_INT32:
        r = avro_value_get_int(&f, &i32), *out = i32;
        break;
    case AVRO_INT64:
        r = avro_value_get_long(&f, &i64), *out = (double)i64;
        break;
    case AVRO_FLOAT:
        r = avro_value_get_float(&f, &f32), *out = f32;
        break;
    case AVRO_DOUBLE:
        r = avro_value_get_double(&f, out);
        break;
    default:
        return src_bad(s, i, "not a number");
    }
    return r ? src_bad(s, i, avro_strerror()) : 0;
}

/* long (exact: not through a double) */
static int get_long(const kp_src *s, int i, int64_t *out)
{
    avro_value_t f;
    const json_t *d;
    int r = src_field(s, i, &f, &d);
    if (r < 0) return -1;
    if (r == 0) {
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
    if (avro_value_get_type(&f) == AVRO_INT32) {
        int32_t i32;
        if (avro_value_get_int(&f, &i32)) return src_bad(s, i, avro_strerror());
        *out = i32;
        return 0;
    }
    return avro_value_get_long(&f, out) ? src_bad(s, i, avro_strerror()) : 0;
}

static int get_int(const kp_src *s, int i, int32_t *out)
{
    int64_t v;
    if (get_long(s, i, &v)) return -1;
    if (v < INT32_MIN || v > INT32_MAX) return src_bad(s, i, "out of range");
    *out = (int32_t)v;
    return 0;
}

/* Enum field i of reader record rrec, as the reader's index in 0..nsym-1. The value holds the
 * writer's index (see project): map it through the symbol name. */
static int get_enum(const kp_src *s, int i, avro_schema_t rrec, int nsym, int *out)
{
    avro_value_t f;
    const json_t *d;
    const char *sym;
    int r = src_field(s, i, &f, &d), wi;
    avro_schema_t es = kp_deref(avro_schema_record_field_get_by_index(rrec, i));
    if (r < 0) return -1;
    if (r == 0) {
        sym = json_string_value(d);
        if (!sym) return src_bad(s, i, "default is not a symbol");
    } else {
        avro_schema_t ws = avro_value_get_schema(&f);
        if (avro_value_get_enum(&f, &wi)) return src_bad(s, i, avro_strerror());
        sym = ws && is_avro_enum(ws) ? avro_schema_enum_get(ws, wi) : NULL;
        if (!sym) return src_bad(s, i, "enum index out of range");
    }
    *out = avro_schema_enum_get_by_name(es, sym);
    if (*out < 0 || *out >= nsym) {
        kp_seterr(s->err, s->errlen, "field %s: unknown symbol %s", s->names[i], sym);
        return -1;
    }
    return 0;
}

static kp_src src_of(kp_codec *c, kp_entry *e, char *err, size_t errlen)
{
    kp_src s = {&e->pvalue, e->fidx, c->defs[e->kind], kp_fields[e->kind], err, errlen};
    return s;
}

int kp_decode_item_listed(kp_codec *c, const void *buf, size_t len, kp_item_listed *out, char *err,
                          size_t errlen)
{
    if (!out) {
        kp_seterr(err, errlen, "no output");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    kp_entry *e = dec_begin(c, buf, len, KP_K_ITEM, err, errlen);
    if (!e) return -1;
    kp_src s = src_of(c, e, err, errlen);
    if (get_str(&s, 0, &out->item_id) || get_str(&s, 1, &out->title) ||
        get_str(&s, 2, &out->category) || get_str(&s, 3, &out->seller_id) ||
        get_num(&s, 4, &out->price) || get_long(&s, 5, &out->listed_at)) {
        kp_item_listed_clear(out);
        return -1;
    }
    return 0;
}

int kp_decode_ad_event(kp_codec *c, const void *buf, size_t len, kp_ad_event *out, char *err,
                       size_t errlen)
{
    int kind;
    if (!out) {
        kp_seterr(err, errlen, "no output");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    kp_entry *e = dec_begin(c, buf, len, KP_K_AD, err, errlen);
    if (!e) return -1;
    kp_src s = src_of(c, e, err, errlen);
    if (get_str(&s, 0, &out->item_id) || get_str(&s, 1, &out->keyphrase) ||
        get_enum(&s, 2, c->reader[KP_K_AD], 2, &kind) || get_int(&s, 3, &out->position) ||
        get_long(&s, 4, &out->ts)) {
        kp_ad_event_clear(out);
        return -1;
    }
    out->kind = (kp_ad_kind)kind;
    return 0;
}

int kp_decode_judgment(kp_codec *c, const void *buf, size_t len, kp_judgment *out, char *err,
                       size_t errlen)
{
    int source;
    if (!out) {
        kp_seterr(err, errlen, "no output");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    kp_entry *e = dec_begin(c, buf, len, KP_K_JUDGE, err, errlen);
    if (!e) return -1;
    kp_src s = src_of(c, e, err, errlen);
    if (get_str(&s, 0, &out->item_id) || get_str(&s, 1, &out->title) ||
        get_str(&s, 2, &out->keyphrase) || get_enum(&s, 3, c->reader[KP_K_JUDGE], 3, &source) ||
        get_num(&s, 4, &out->score) || get_long(&s, 5, &out->ts)) {
        kp_judgment_clear(out);
        return -1;
    }
    out->source = (kp_judge_source)source;
    return 0;
}

int kp_decode_suggestions(kp_codec *c, const void *buf, size_t len, kp_suggestions_decoded *out,
                          char *err, size_t errlen)
{
    avro_value_t arr, el;
    const json_t *d;
    size_t n;
    if (!out) {
        kp_seterr(err, errlen, "no output");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    kp_entry *e = dec_begin(c, buf, len, KP_K_SUGG, err, errlen);
    if (!e) return -1;
    kp_src s = src_of(c, e, err, errlen);
    if (get_str(&s, 0, &out->item_id) || get_long(&s, 1, &out->model_version) ||
        get_long(&s, 2, &out->generated_at) || src_field(&s, 3, &arr, &d) != 1)
        goto err;
    if (avro_value_get_size(&arr, &n)) {
        kp_seterr(err, errlen, "avro: %s", avro_strerror());
        goto err;
    }
    if (n > INT_MAX / 2) {
        kp_seterr(err, errlen, "too many suggestions (%zu)", n);
        goto err;
    }
    if (n > 0) {
        out->items = calloc(n, sizeof(*out->items));
        if (!out->items) {
            kp_seterr(err, errlen, "out of memory");
            goto err;
        }
        out->n = (int)n;
    }
    for (size_t k = 0; k < n; k++) {
        kp_suggestion_owned *it = &out->items[k];
        double score;
        if (avro_value_get_by_index(&arr, k, &el, NULL)) {
            kp_seterr(err, errlen, "avro: %s", avro_strerror());
            goto err;
        }
        kp_src es = {&el, e->sidx, c->sdefs, kp_sugg_fields, err, errlen};
        if (get_str(&es, 0, &it->keyphrase) || get_opt_str(&es, 1, &it->keyphrase_id) ||
            get_num(&es, 2, &score))
            goto err;
        it->score = (float)score;
    }
    return 0;
err:
    kp_suggestions_clear(out);
    return -1;
}

/* ---- clear / validate --------------------------------------------------------------------- */

void kp_item_listed_clear(kp_item_listed *v)
{
    if (!v) return;
    free(v->item_id);
    free(v->title);
    free(v->category);
    free(v->seller_id);
    memset(v, 0, sizeof(*v));
}

void kp_ad_event_clear(kp_ad_event *v)
{
    if (!v) return;
    free(v->item_id);
    free(v->keyphrase);
    memset(v, 0, sizeof(*v));
}

void kp_judgment_clear(kp_judgment *v)
{
    if (!v) return;
    free(v->item_id);
    free(v->title);
    free(v->keyphrase);
    memset(v, 0, sizeof(*v));
}

void kp_suggestions_clear(kp_suggestions_decoded *v)
{
    if (!v) return;
    for (int i = 0; i < v->n; i++) {
        free(v->items[i].keyphrase);
        free(v->items[i].keyphrase_id);
    }
    free(v->items);
    free(v->item_id);
    memset(v, 0, sizeof(*v));
}

static int check_utf8(const char *what, const char *s, char *err, size_t errlen)
{
    size_t bad;
    if (s && !kp_utf8_valid(s, strlen(s), &bad)) {
        kp_seterr(err, errlen, "%s is not valid UTF-8 (byte %zu)", what, bad);
        return -1;
    }
    return 0;
}

int kp_validate_item_listed(const kp_item_listed *v, size_t max_title, char *err, size_t errlen)
{
    if (!v) {
        kp_seterr(err, errlen, "no item");
        return -1;
    }
    if (!v->item_id || !v->item_id[0]) {
        kp_seterr(err, errlen, "missing item_id");
        return -1;
    }
    size_t n = strlen(v->item_id);
    if (n > KP_ITEM_ID_MAX) {
        kp_seterr(err, errlen, "item_id too long (%zu > %d bytes)", n, KP_ITEM_ID_MAX);
        return -1;
    }
    if (check_utf8("item_id", v->item_id, err, errlen)) return -1;
    if (!v->title) {
        kp_seterr(err, errlen, "missing title");
        return -1;
    }
    n = strspn(v->title, " \t\r\n\v\f");
    if (v->title[n] == '\0') {
        kp_seterr(err, errlen, "empty title");
        return -1;
    }
    n = strlen(v->title);
    if (n > max_title) {
        kp_seterr(err, errlen, "title too long (%zu > %zu bytes)", n, max_title);
        return -1;
    }
    if (check_utf8("title", v->title, err, errlen) ||
        check_utf8("category", v->category, err, errlen) ||
        check_utf8("seller_id", v->seller_id, err, errlen))
        return -1;
    return 0;
}

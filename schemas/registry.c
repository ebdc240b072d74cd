/* registry.c - the schema registry of a kp_codec (see codec.h): the table of built-in schema ids,
 * the reader schema of each type with its defaults, kp_codec_new/free, kp_codec_load_dir, and
 * per registered writer schema the projection and resolver that decode.c reads through.
 *
 * Avro C 1.11 cannot fill defaults: avro_resolved_writer_new fails with "Reader field X doesn't
 * appear in writer". So per writer schema we resolve against a *projection* of the reader schema
 * (the reader's records minus the fields the writer lacks), and decode.c takes the missing fields'
 * defaults from the reader schema JSON, read here with jansson (Avro C drops "default" when it
 * parses a schema). A reader field that the writer lacks and that has no default makes the writer
 * schema incompatible: it is rejected when registered, not per message.
 *
 * The JSON of the built-ins is not in this file: schemas/schemas.cmake generates
 * kp_builtin_schemas.c, which holds the bytes of each schemas/<id>-<Name>.avsc as kp_avsc_<id>[].
 */
#include "schemas/codec_int.h"

#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- built-in schemas ---------------------------------------------------------------------- */

/* Generated from schemas/<id>-<Name>.avsc (byte-identical, NUL-terminated). A built-in without
 * its file fails to link; a file that is not built in fails test_builtin_equals_avsc_files. */
extern const char kp_avsc_1[], kp_avsc_2[], kp_avsc_3[], kp_avsc_4[], kp_avsc_5[], kp_avsc_6[],
    kp_avsc_101[];

static const struct {
    int32_t id;
    int kind;
    const char *json;
} kp_builtin[] = {
    {KP_SCHEMA_ID_ITEM_LISTED, KP_K_ITEM, kp_avsc_1},
    {KP_SCHEMA_ID_AD_EVENT, KP_K_AD, kp_avsc_2},
    {KP_SCHEMA_ID_JUDGMENT, KP_K_JUDGE, kp_avsc_3},
    {KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS, KP_K_SUGG, kp_avsc_4},
    {KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS_V1, KP_K_SUGG, kp_avsc_5},
    {KP_SCHEMA_ID_KEYPHRASE, KP_K_KEYPHRASE, kp_avsc_6},
    {KP_SCHEMA_ID_ITEM_LISTED_V0, KP_K_ITEM, kp_avsc_101},
};
#define KP_NBUILTIN ((int)(sizeof(kp_builtin) / sizeof(kp_builtin[0])))

/* Per type: record name, reader (current) schema id, and the reader's fields in order with their
 * place in the C struct. kp_codec_new checks the reader schemas against these. */
const char *const kp_kind_name[KP_K_NKINDS] = {"ItemListed", "AdEvent", "Judgment",
                                               "KeyphraseSuggestions", "Keyphrase"};
static const int32_t kp_reader_id[KP_K_NKINDS] = {
    KP_SCHEMA_ID_ITEM_LISTED, KP_SCHEMA_ID_AD_EVENT, KP_SCHEMA_ID_JUDGMENT,
    KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS_V1, KP_SCHEMA_ID_KEYPHRASE};

#define F(ctype, name, ftype)                                                                      \
    {                                                                                              \
#name, ftype, offsetof(ctype, name), 0                                                     \
    }
#define E(ctype, name, nsym)                                                                       \
    {                                                                                              \
#name, KP_F_ENUM, offsetof(ctype, name), nsym                                              \
    }
const kp_field kp_layout[KP_K_NKINDS][KP_MAX_FIELDS] = {
    {F(kp_item_listed, item_id, KP_F_STR), F(kp_item_listed, title, KP_F_STR),
     F(kp_item_listed, category, KP_F_STR), F(kp_item_listed, seller_id, KP_F_STR),
     F(kp_item_listed, price, KP_F_DOUBLE), F(kp_item_listed, listed_at, KP_F_LONG)},
    {F(kp_ad_event, item_id, KP_F_STR), F(kp_ad_event, keyphrase, KP_F_STR),
     E(kp_ad_event, kind, 2), F(kp_ad_event, position, KP_F_INT), F(kp_ad_event, ts, KP_F_LONG)},
    {F(kp_judgment, item_id, KP_F_STR), F(kp_judgment, title, KP_F_STR),
     F(kp_judgment, keyphrase, KP_F_STR), E(kp_judgment, source, 3),
     F(kp_judgment, score, KP_F_DOUBLE), F(kp_judgment, ts, KP_F_LONG)},
    {F(kp_suggestions_decoded, item_id, KP_F_STR),
     F(kp_suggestions_decoded, model_version, KP_F_LONG),
     F(kp_suggestions_decoded, generated_at, KP_F_LONG),
     {"suggestions", KP_F_ARRAY, offsetof(kp_suggestions_decoded, items), 0},
     F(kp_suggestions_decoded, arm, KP_F_STR)},
    {F(kp_keyphrase, keyphrase_id, KP_F_STR), F(kp_keyphrase, keyphrase, KP_F_STR),
     F(kp_keyphrase, category, KP_F_STR), F(kp_keyphrase, updated_at, KP_F_LONG)},
};
const kp_field kp_sugg_layout[KP_MAX_FIELDS] = {
    F(kp_suggestion_owned, keyphrase, KP_F_STR),
    F(kp_suggestion_owned, keyphrase_id, KP_F_OPT_STR),
    F(kp_suggestion_owned, score, KP_F_FLOAT),
};
#undef E
#undef F
const char kp_sugg_record[] = "Suggestion";

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

const json_t *kp_reader_default(const kp_codec *c, const char *record, const char *field)
{
    for (int k = 0; k < KP_K_NKINDS; k++) {
        const json_t *rec = avsc_find_record(c->json[k], record, 0);
        if (rec) return avsc_field_default(rec, field);
    }
    return NULL;
}

/* ---- registered schemas: projection and resolver per writer -------------------------------- */

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

/* The entry of id among the remote (remote = 1) or the local (0) ones, or NULL. */
static kp_entry *find_entry(const kp_codec *c, int32_t id, int remote)
{
    for (int i = 0; i < c->n; i++)
        if (c->entries[i]->id == id && c->entries[i]->remote == remote) return c->entries[i];
    return NULL;
}

kp_entry *kp_find_entry(const kp_codec *c, int32_t id)
{
    return find_entry(c, id, 0);
}

kp_entry *kp_find_decode_entry(const kp_codec *c, int32_t id)
{
    return find_entry(c, id, c->registry_mode);
}

/* 1 if a value written with w can be read as r (the Avro resolution rules: the same type, a
 * promotion int -> long -> float -> double, string <-> bytes, fixed of the same size, arrays and
 * maps of such items; a union on either side: every branch of a writer union, or the writer, must
 * resolve to some branch of a reader union; records only when equal). Checked before Avro C's
 * resolver: it crashes on a mismatch inside a record nested in an array (fuzz_registry). */
static int resolves(avro_schema_t w, avro_schema_t r, int depth)
{
    w = kp_deref(w), r = kp_deref(r);
    if (!w || !r || depth > KP_MAX_DEPTH) return 0;
    if (is_avro_union(w)) {
        for (size_t i = 0; i < avro_schema_union_size(w); i++)
            if (!resolves(avro_schema_union_branch(w, (int)i), r, depth + 1)) return 0;
        return 1;
    }
    if (is_avro_union(r)) {
        for (size_t i = 0; i < avro_schema_union_size(r); i++)
            if (resolves(w, avro_schema_union_branch(r, (int)i), depth + 1)) return 1;
        return 0;
    }
    avro_type_t tw = avro_typeof(w), tr = avro_typeof(r);
    if (tw == tr) {
        switch (tw) {
        case AVRO_RECORD:
            return avro_schema_equal(w, r);
        case AVRO_FIXED:
            return avro_schema_fixed_size(w) == avro_schema_fixed_size(r);
        case AVRO_ARRAY:
            return resolves(avro_schema_array_items(w), avro_schema_array_items(r), depth + 1);
        case AVRO_MAP:
            return resolves(avro_schema_map_values(w), avro_schema_map_values(r), depth + 1);
        default:
            return 1;
        }
    }
    switch (tw) {
    case AVRO_INT32:
        return tr == AVRO_INT64 || tr == AVRO_FLOAT || tr == AVRO_DOUBLE;
    case AVRO_INT64:
        return tr == AVRO_FLOAT || tr == AVRO_DOUBLE;
    case AVRO_FLOAT:
        return tr == AVRO_DOUBLE;
    case AVRO_STRING:
        return tr == AVRO_BYTES;
    case AVRO_BYTES:
        return tr == AVRO_STRING;
    default:
        return 0;
    }
}

/* Project reader schema r onto writer schema w: records keep only the fields w has (a field w
 * lacks must have a default), recursively through records, arrays and maps. Returns a new
 * reference, or NULL with a reason in err. */
static avro_schema_t project(const kp_codec *c, avro_schema_t r, avro_schema_t w, int depth,
                             char *err, size_t errlen)
{
    r = kp_deref(r), w = kp_deref(w);
    if (!r || !w || depth > KP_MAX_DEPTH) {
        kp_errf(err, errlen, "schema nested too deeply");
        return NULL;
    }
    if (is_avro_record(r) && is_avro_record(w)) {
        /* Avro C's resolver crashes on records of different names (fuzz_registry): refuse them */
        if (strcmp(avro_schema_name(r), avro_schema_name(w))) {
            kp_errf(err, errlen, "record %s is named %s in the writer", avro_schema_name(r),
                    avro_schema_name(w));
            return NULL;
        }
        avro_schema_t out = avro_schema_record(avro_schema_name(r), avro_schema_namespace(r));
        if (!out) goto avro_err;
        for (size_t i = 0; i < avro_schema_record_size(r); i++) {
            const char *fname = avro_schema_record_field_name(r, (int)i);
            int wi = avro_schema_record_field_get_index(w, fname);
            if (wi < 0) {
                if (kp_reader_default(c, avro_schema_name(r), fname)) continue;
                kp_errf(err, errlen, "writer lacks field %s.%s, which has no default",
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
        /* Avro C resolves enums by index, not by symbol: read the writer's index as is and
         * decode.c maps it by symbol when copying out */
        return avro_schema_incref(w);
    }
    if (!resolves(w, r, depth)) {
        kp_errf(err, errlen, "writer type %s cannot be read as %s", avro_schema_type_name(w),
                avro_schema_type_name(r));
        return NULL;
    }
    return avro_schema_incref(r);
avro_err:
    kp_errf(err, errlen, "avro: %s", avro_strerror());
    return NULL;
}

/* Map the fields of layout to their index in record proj (-1 if absent, or proj is NULL). */
static void map_fields(avro_schema_t proj, const kp_field *layout, int *idx)
{
    for (int i = 0; i < KP_MAX_FIELDS; i++)
        idx[i] =
            layout[i].name && proj ? avro_schema_record_field_get_index(proj, layout[i].name) : -1;
}

/* Register writer schema w (the reference is taken over, also on failure) under id. Builds the
 * resolver of a known type now, so that an incompatible schema fails here and not per message.
 * encode: also build a value of w for the encoders. Returns 0 or -1 with a reason in err. */
static int add_entry(kp_codec *c, int32_t id, avro_schema_t w, int encode, char *err, size_t errlen)
{
    kp_entry *e = calloc(1, sizeof(*e));
    if (!e) {
        avro_schema_decref(w);
        kp_errf(err, errlen, "out of memory");
        return -1;
    }
    e->id = e->wire_id = id;
    e->writer = w;
    e->kind = KP_K_OTHER;
    if (!is_avro_record(w)) {
        kp_errf(err, errlen, "schema id %d is not a record", (int)id);
        goto err;
    }
    e->name = strdup(avro_schema_name(w));
    if (!e->name) {
        kp_errf(err, errlen, "out of memory");
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
            kp_errf(err, errlen, "schema id %d does not resolve to %s: %s", (int)id, e->name, why);
            goto err;
        }
        e->pclass = avro_generic_class_from_schema(e->proj);
        if (!e->pclass || avro_generic_value_new(e->pclass, &e->pvalue)) goto avro_err;
        e->rclass = avro_resolved_writer_new(w, e->proj);
        if (!e->rclass) {
            kp_errf(err, errlen, "schema id %d does not resolve to %s: avro: %s", (int)id, e->name,
                    avro_strerror());
            goto err;
        }
        if (avro_resolved_writer_new_value(e->rclass, &e->rvalue)) goto avro_err;
        avro_resolved_writer_set_dest(&e->rvalue, &e->pvalue);
        map_fields(e->proj, kp_layout[e->kind], e->fidx);
        map_fields(NULL, kp_sugg_layout, e->sidx);
        if (e->kind == KP_K_SUGG && e->fidx[KP_SUGG_ARRAY] >= 0) {
            avro_schema_t arr =
                kp_deref(avro_schema_record_field_get_by_index(e->proj, e->fidx[KP_SUGG_ARRAY]));
            avro_schema_t rec =
                arr && is_avro_array(arr) ? kp_deref(avro_schema_array_items(arr)) : NULL;
            if (rec && is_avro_record(rec)) map_fields(rec, kp_sugg_layout, e->sidx);
        }
    }
    if (c->n == c->cap) {
        int ncap = c->cap ? 2 * c->cap : 8;
        kp_entry **ne = realloc(c->entries, (size_t)ncap * sizeof(*ne));
        if (!ne) {
            kp_errf(err, errlen, "out of memory");
            goto err;
        }
        c->entries = ne, c->cap = ncap;
    }
    c->entries[c->n++] = e;
    return 0;
avro_err:
    kp_errf(err, errlen, "schema id %d: avro: %s", (int)id, avro_strerror());
err:
    entry_free(e);
    return -1;
}

/* Adds the full names of the named types (record, error, enum, fixed) defined in schema JSON j
 * (enclosing namespace ns) to the set `seen`. -1 with err at the first one defined twice (or
 * nesting deeper than KP_MAX_DEPTH), else 0 (also for JSON that is no schema: Avro C then says
 * what is wrong with it). */
static int collect_names(const json_t *j, const char *ns, json_t *seen, int depth, char *err,
                         size_t errlen)
{
    if (depth > KP_MAX_DEPTH) {
        kp_errf(err, errlen, "schema nested too deeply");
        return -1;
    }
    if (json_is_array(j)) { /* a union */
        for (size_t i = 0; i < json_array_size(j); i++)
            if (collect_names(json_array_get(j, i), ns, seen, depth + 1, err, errlen)) return -1;
        return 0;
    }
    if (!json_is_object(j)) return 0; /* a name: primitive or reference */
    const json_t *type = json_object_get(j, "type");
    const char *t = json_string_value(type);
    if (!t) return collect_names(type, ns, seen, depth + 1, err, errlen); /* {"type": {...}} */
    if (!strcmp(t, "array"))
        return collect_names(json_object_get(j, "items"), ns, seen, depth + 1, err, errlen);
    if (!strcmp(t, "map"))
        return collect_names(json_object_get(j, "values"), ns, seen, depth + 1, err, errlen);
    int rec = !strcmp(t, "record") || !strcmp(t, "error");
    if (!rec && strcmp(t, "enum") && strcmp(t, "fixed")) return 0;
    const char *name = json_string_value(json_object_get(j, "name"));
    if (!name) return 0;
    const char *dot = strrchr(name, '.'), *own = json_string_value(json_object_get(j, "namespace"));
    char full[1024], space[1024];
    int ls, lf;
    if (dot)
        ls = snprintf(space, sizeof space, "%.*s", (int)(dot - name), name),
        lf = snprintf(full, sizeof full, "%s", name);
    else
        ls = snprintf(space, sizeof space, "%s", own ? own : ns),
        lf = snprintf(full, sizeof full, "%s%s%s", space, space[0] ? "." : "", name);
    if (ls < 0 || lf < 0 || (size_t)ls >= sizeof space || (size_t)lf >= sizeof full) {
        kp_errf(err, errlen, "named type name longer than %zu bytes", sizeof full - 1);
        return -1;
    }
    if (json_object_get(seen, full)) {
        kp_errf(err, errlen, "named type %s is defined twice", full);
        return -1;
    }
    json_object_set_new(seen, full, json_true());
    /* a record's field names are unique (Avro C's resolver crashed on a writer record with two
     * fields of one name: fuzz_schema) */
    const json_t *fields = rec ? json_object_get(j, "fields") : NULL;
    json_t *names = json_array_size(fields) > 1 ? json_object() : NULL;
    int rc = 0;
    for (size_t i = 0; i < json_array_size(fields) && !rc; i++) {
        const json_t *f = json_array_get(fields, i);
        const char *fn = json_string_value(json_object_get(f, "name"));
        if (fn && names && json_object_get(names, fn)) {
            kp_errf(err, errlen, "record %s has two fields named %s", full, fn);
            rc = -1;
        } else if (fn && names && json_object_set_new(names, fn, json_true())) {
            kp_errf(err, errlen, "out of memory");
            rc = -1;
        } else {
            rc = collect_names(json_object_get(f, "type"), space, seen, depth + 1, err, errlen);
        }
    }
    json_decref(names);
    return rc;
}

/* Parses a schema. A named type defined twice is refused before Avro C sees it: its parser
 * leaks the schemas it built when it meets the second definition (fuzz_schema). So is JSON with
 * a key twice in one object ({"name": "a", "type": "string", "type": "bytes"}): the checks here
 * and Avro C could read different values of it, and its resolver crashed on such a schema
 * (fuzz_schema). */
static int parse_schema(const char *text, size_t len, avro_schema_t *out, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je), *seen = json_object();
    if (!j) {
        json_decref(seen);
        kp_errf(err, errlen, "schema is not valid JSON: %s (line %d, column %d)", je.text, je.line,
                je.column);
        return -1;
    }
    int dup = seen && collect_names(j, "", seen, 0, err, errlen);
    json_decref(j);
    json_decref(seen);
    if (dup) return -1;
    if (avro_schema_from_json_length(text, len, out)) {
        kp_errf(err, errlen, "avro: %s", avro_strerror());
        return -1;
    }
    return 0;
}

/* ---- codec lifetime ------------------------------------------------------------------------ */

static const char kp_empty[1] = {0};
static char kp_wdummy[1];

static const char *builtin_json(int32_t id)
{
    for (int i = 0; i < KP_NBUILTIN; i++)
        if (kp_builtin[i].id == id) return kp_builtin[i].json;
    return NULL;
}

/* Check record r (JSON rec) against layout: same field names in the same order, nf of them. Fills
 * defs[i] with the default of field i. Returns 0 or -1 with a reason in err. */
static int check_layout(avro_schema_t r, const json_t *rec, const char *name,
                        const kp_field *layout, const json_t **defs, char *err, size_t errlen)
{
    size_t nf = 0;
    while (nf < KP_MAX_FIELDS && layout[nf].name)
        nf++;
    if (!r || !is_avro_record(r) || strcmp(avro_schema_name(r), name) ||
        avro_schema_record_size(r) != nf) {
        kp_errf(err, errlen, "built-in %s schema does not have the %zu fields the code uses", name,
                nf);
        return -1;
    }
    for (size_t i = 0; i < nf; i++) {
        if (strcmp(avro_schema_record_field_name(r, (int)i), layout[i].name)) {
            kp_errf(err, errlen, "built-in %s schema: field %zu is %s, expected %s", name, i,
                    avro_schema_record_field_name(r, (int)i), layout[i].name);
            return -1;
        }
        defs[i] = avsc_field_default(rec, layout[i].name);
    }
    return 0;
}

/* Parse the reader schema of each type, check it against the C layout, read its defaults. */
static int load_readers(kp_codec *c, char *err, size_t errlen)
{
    for (int k = 0; k < KP_K_NKINDS; k++) {
        const char *json = builtin_json(kp_reader_id[k]);
        json_error_t jerr;
        c->json[k] = json_loadb(json, strlen(json), 0, &jerr);
        if (!c->json[k]) {
            kp_errf(err, errlen, "built-in %s schema is not valid JSON: %s (line %d)",
                    kp_kind_name[k], jerr.text, jerr.line);
            return -1;
        }
        if (parse_schema(json, strlen(json), &c->reader[k], err, errlen) ||
            check_layout(c->reader[k], avsc_find_record(c->json[k], kp_kind_name[k], 0),
                         kp_kind_name[k], kp_layout[k], c->defs[k], err, errlen))
            return -1;
    }
    avro_schema_t arr =
        kp_deref(avro_schema_record_field_get_by_index(c->reader[KP_K_SUGG], KP_SUGG_ARRAY));
    c->sugg = arr && is_avro_array(arr) ? kp_deref(avro_schema_array_items(arr)) : NULL;
    return check_layout(c->sugg, avsc_find_record(c->json[KP_K_SUGG], kp_sugg_record, 0),
                        kp_sugg_record, kp_sugg_layout, c->sdefs, err, errlen);
}

kp_codec *kp_codec_new(char *err, size_t errlen)
{
    kp_codec *c = calloc(1, sizeof(*c));
    if (!c) {
        kp_errf(err, errlen, "out of memory");
        return NULL;
    }
    c->rd = avro_reader_memory(kp_empty, 0);
    c->wr = avro_writer_memory(kp_wdummy, 0);
    if (!c->rd || !c->wr) {
        kp_errf(err, errlen, "avro: %s", avro_strerror());
        goto err;
    }
    if (load_readers(c, err, errlen)) goto err;
    for (int i = 0; i < KP_NBUILTIN; i++) {
        avro_schema_t w;
        char why[KP_CODEC_ERRLEN];
        if (parse_schema(kp_builtin[i].json, strlen(kp_builtin[i].json), &w, why, sizeof(why)) ||
            add_entry(c, kp_builtin[i].id, w, 1, why, sizeof(why))) {
            kp_errf(err, errlen, "built-in schema id %d: %s", (int)kp_builtin[i].id, why);
            goto err;
        }
        if (c->entries[c->n - 1]->kind != kp_builtin[i].kind) {
            kp_errf(err, errlen, "built-in schema id %d has the wrong record name",
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

/* ---- the schema table ---------------------------------------------------------------------- */

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
    const kp_entry *e = c ? kp_find_decode_entry(c, id) : NULL;
    return e ? e->name : NULL;
}

const char *kp_codec_last_error(const kp_codec *c)
{
    return c ? c->lasterr : "no codec";
}

/* ---- loading a directory of .avsc files ---------------------------------------------------- */

/* Parse "<id>-<Name>.avsc" (id in 1..INT32_MAX, Name [A-Za-z_][A-Za-z0-9_]*). Returns 1 and sets
 * *id and name (NUL-terminated, at most namelen - 1 bytes) if fn matches, else 0. */
static int parse_avsc_name(const char *fn, int32_t *id, char *name, size_t namelen)
{
    static const char digits[] = "0123456789";
    static const char word[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789";
    char num[16];
    long v;
    size_t nd = strspn(fn, digits), z = 0;
    while (z + 1 < nd && fn[z] == '0') /* leading zeros: "007-X.avsc" is id 7 */
        z++;
    if (nd == 0 || nd - z >= sizeof(num) || fn[nd] != '-') return 0;
    memcpy(num, fn + z, nd - z);
    num[nd - z] = '\0';
    if (kp_parse_long(num, 1, INT32_MAX, &v)) return 0;
    const char *s = fn + nd + 1;
    size_t n = strspn(s, word);
    if (n == 0 || strchr(digits, s[0]) || strcmp(s + n, ".avsc") != 0 || n >= namelen) return 0;
    memcpy(name, s, n);
    name[n] = '\0';
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
        kp_errf(err, errlen, "cannot read %s: %s", path,
                f ? "not a regular file" : strerror(errno));
        goto err;
    }
    if (st.st_size > KP_MAX_AVSC) {
        kp_errf(err, errlen, "%s: too large (%lld bytes)", path, (long long)st.st_size);
        goto err;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        kp_errf(err, errlen, "out of memory");
        goto err;
    }
    *len = fread(buf, 1, (size_t)st.st_size, f);
    if (ferror(f)) {
        kp_errf(err, errlen, "cannot read %s", path);
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
        kp_errf(err, errlen, "no codec or directory");
        return -1;
    }
    base = c->n;
    nn = scandir(dir, &names, NULL, alphasort);
    if (nn < 0) {
        kp_errf(err, errlen, "cannot open directory %s: %s", dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < nn; i++) {
        int32_t id;
        char name[128], path[4096], why[KP_CODEC_ERRLEN];
        size_t len;
        avro_schema_t w;
        if (!parse_avsc_name(names[i]->d_name, &id, name, sizeof(name))) continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name) >= sizeof(path)) {
            kp_errf(err, errlen, "path too long in %s", dir);
            goto err;
        }
        text = read_file(path, &len, err, errlen);
        if (!text) goto err;
        if (parse_schema(text, len, &w, why, sizeof(why))) {
            kp_errf(err, errlen, "%s: %s", path, why);
            goto err;
        }
        free(text);
        text = NULL;
        if (!is_avro_record(w) || strcmp(avro_schema_name(w), name) != 0) {
            kp_errf(err, errlen, "%s: not a record named %s", path, name);
            avro_schema_decref(w);
            goto err;
        }
        kp_entry *old = kp_find_entry(c, id);
        if (old) {
            int same = avro_schema_equal(old->writer, w);
            avro_schema_decref(w);
            if (same) continue;
            kp_errf(err, errlen, "%s: schema id %d is already registered with another schema", path,
                    (int)id);
            goto err;
        }
        if (add_entry(c, id, w, 0, why, sizeof(why))) {
            kp_errf(err, errlen, "%s: %s", path, why);
            goto err;
        }
        added++;
    }
    goto done;
err:
    free(text);
    while (c->n > base)
        entry_free(c->entries[--c->n]);
    added = -1;
done:
    for (int i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    return added;
}

/* ---- schemas of a schema registry ---------------------------------------------------------- */

void kp_codec_use_registry(kp_codec *c)
{
    if (c) c->registry_mode = 1;
}

int kp_codec_knows(const kp_codec *c, int32_t id)
{
    return c && kp_find_decode_entry(c, id) != NULL;
}

int kp_codec_add_schema(kp_codec *c, int32_t id, const char *json, size_t len, char *err,
                        size_t errlen)
{
    avro_schema_t w;
    char why[KP_CODEC_ERRLEN];
    if (!c || !json) {
        kp_errf(err, errlen, "no codec or schema");
        return -1;
    }
    if (len > KP_MAX_AVSC) {
        kp_errf(err, errlen, "schema id %d: too large (%zu bytes)", (int)id, len);
        return -1;
    }
    if (parse_schema(json, len, &w, why, sizeof(why))) {
        kp_errf(err, errlen, "schema id %d: %s", (int)id, why);
        return -1;
    }
    kp_entry *old = find_entry(c, id, 1);
    if (old) {
        int same = avro_schema_equal(old->writer, w);
        avro_schema_decref(w);
        if (same) return 0;
        kp_errf(err, errlen, "schema id %d is already known with another schema", (int)id);
        return -1;
    }
    if (c->nremote >= KP_CODEC_MAX_REMOTE) { /* forget the oldest: fetched again if seen again */
        for (int i = 0; i < c->n; i++) {
            if (!c->entries[i]->remote) continue;
            entry_free(c->entries[i]);
            memmove(c->entries + i, c->entries + i + 1,
                    sizeof(*c->entries) * (size_t)(c->n - i - 1));
            c->n--, c->nremote--;
            break;
        }
    }
    if (add_entry(c, id, w, 0, err, errlen)) return -1;
    c->entries[c->n - 1]->remote = 1;
    c->nremote++;
    return 0;
}

int kp_codec_set_wire_id(kp_codec *c, int32_t builtin_id, int32_t wire_id, char *err, size_t errlen)
{
    kp_entry *e = c ? kp_find_entry(c, builtin_id) : NULL;
    const char *json = builtin_json(builtin_id);
    if (!e || !json) {
        kp_errf(err, errlen, "schema id %d is not built in", (int)builtin_id);
        return -1;
    }
    /* the codec decodes what it writes without asking the registry */
    if (kp_codec_add_schema(c, wire_id, json, strlen(json), err, errlen)) return -1;
    e->wire_id = wire_id;
    return 0;
}

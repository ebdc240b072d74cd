/* codec.h - Avro codecs for kprec events in the Confluent wire format.
 *
 * Wire format of every Kafka value:
 *   byte 0      0x00 (magic)
 *   bytes 1..4  schema id, big-endian
 *   bytes 5..   Avro binary body written with the writer schema of that id
 *
 * Without a schema registry a kp_codec carries a table of (schema id -> writer schema) compiled
 * into the binary (generated at build time from the schemas/<id>-<Name>.avsc files, see
 * schemas/README.md) and can load more writer schemas from a directory at start-up
 * (kp_codec_load_dir), so events of a newer producer decode without a rebuild. With one
 * ([schemas] registry, schemas/registry_http.h) the ids are the registry's: writer schemas are
 * fetched by id on first sight and added with kp_codec_add_schema (kp_codec_use_registry).
 *
 * Implemented by schemas/registry.c (lifetime, schema table, load_dir), encode.c, decode.c (with
 * the wire header and the *_clear functions), scan.c (kp_utf8_valid) and validate.c.
 *
 * Decoding resolves the writer schema of the event against the current reader schema of its type
 * (Avro rules: writer fields unknown to the reader are skipped, reader fields missing from the
 * writer take their schema default). Resolvers are built once per writer id, when the schema is
 * registered, and reused for every message.
 *
 * Threads: a kp_codec holds reusable Avro values, readers and writers. Use one kp_codec from one
 * thread at a time (give each thread its own codec; they are cheap).
 */
#ifndef KP_SCHEMAS_CODEC_H
#define KP_SCHEMAS_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Fixed schema ids (documented in schemas/README.md). */
#define KP_SCHEMA_ID_ITEM_LISTED              1
#define KP_SCHEMA_ID_AD_EVENT                 2
#define KP_SCHEMA_ID_JUDGMENT                 3
#define KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS    4 /* v0: written when there is no arm */
#define KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS_V1 5 /* v1: + arm (the current reader) */
#define KP_SCHEMA_ID_KEYPHRASE                6
#define KP_SCHEMA_ID_ITEM_LISTED_V0           101

#define KP_WIRE_HEADER_LEN 5   /* magic byte + 4-byte schema id */
#define KP_ITEM_ID_MAX     256 /* bytes, checked by kp_validate_item_listed */
/* Field limits of the kp_validate_* functions (validate.c). */
#define KP_KEYPHRASE_MAX   512  /* bytes of a keyphrase */
#define KP_FIELD_MAX       1024 /* bytes of another short string (category, seller_id) */
#define KP_POSITION_MAX    1000 /* an AdEvent's slot position: 0..1000 */
#define KP_PRICE_MAX       1e12 /* a listing's price: 0..1e12 */
#define KP_TS_MAX          INT64_C(253402300799999) /* event times: 0..year 9999, Unix ms */
#define KP_SUGGESTIONS_MAX 1000                     /* suggestions in one record */
#define KP_CODEC_ERRLEN    256 /* a comfortable size for the err buffers below */

typedef struct kp_codec kp_codec;

typedef struct {
    char *item_id, *title, *category, *seller_id;
    double price;
    int64_t listed_at; /* Unix epoch ms */
} kp_item_listed;

typedef enum { KP_AD_IMPRESSION = 0, KP_AD_CLICK = 1 } kp_ad_kind;

typedef struct {
    char *item_id, *keyphrase;
    kp_ad_kind kind;
    int32_t position;
    int64_t ts; /* Unix epoch ms */
} kp_ad_event;

typedef enum { KP_JUDGE_LLM = 0, KP_JUDGE_HUMAN = 1, KP_JUDGE_SEARCH = 2 } kp_judge_source;

typedef struct {
    char *item_id, *title, *keyphrase;
    kp_judge_source source;
    double score; /* 0..1 */
    int64_t ts;   /* Unix epoch ms */
} kp_judgment;

/* One keyphrase of the inventory (topic [topics] inventory, key keyphrase_id; a null value
 * removes it). category may be "" (NULL encodes as ""). */
typedef struct {
    char *keyphrase_id, *keyphrase, *category;
    int64_t updated_at; /* Unix epoch ms, 0 = unknown */
} kp_keyphrase;

/* One suggestion to encode: strings are borrowed (not copied, not freed). keyphrase_id may be NULL
 * (encoded as Avro null). */
typedef struct {
    const char *keyphrase;
    const char *keyphrase_id;
    float score;
} kp_suggestion;

/* One decoded suggestion: strings owned by the enclosing kp_suggestions_decoded. keyphrase_id is
 * NULL when the event carried null. */
typedef struct {
    char *keyphrase;
    char *keyphrase_id;
    float score;
} kp_suggestion_owned;

typedef struct {
    char *item_id;
    int64_t model_version, generated_at;
    int n;
    kp_suggestion_owned *items; /* n entries, NULL when n == 0 */
    char *arm; /* the model of an A/B split or the shadow; "" when none (and for id 4) */
} kp_suggestions_decoded;

/* ---- codec lifetime ---------------------------------------------------------------------- */

/* Create a codec with the built-in schemas parsed and their resolvers built.
 * Returns NULL on failure with a reason in err (err may be NULL when errlen is 0).
 * Free with kp_codec_free. */
kp_codec *kp_codec_new(char *err, size_t errlen);

/* Free a codec and everything it owns. NULL is a no-op. */
void kp_codec_free(kp_codec *c);

/* Register the extra writer schemas of directory dir: every file named `<id>-<Name>.avsc` (id a
 * decimal number in 1..2^31-1, Name the record name) is parsed; other files are ignored. A schema
 * of a known type (ItemListed, AdEvent, Judgment, KeyphraseSuggestions, Keyphrase) must resolve
 * against the current reader schema of that type, or loading fails. An id that is already
 * registered is accepted only if its schema is identical (so the source schemas/ directory itself
 * loads fine). All or nothing: on failure nothing from dir is registered. Returns the number of
 * schemas newly registered (>= 0), or -1 with a reason in err. */
int kp_codec_load_dir(kp_codec *c, const char *dir, char *err, size_t errlen);

/* Built-in schema table, for tests and for `kprec` to print: i in 0..kp_codec_builtin_count()-1.
 * Sets *id, *name (record name) and *json (the exact text of schemas/<id>-<Name>.avsc), all
 * static. Returns 0, or -1 if i is out of range. */
int kp_codec_builtin_count(void);
int kp_codec_builtin_info(int i, int32_t *id, const char **name, const char **json);

/* ---- registry mode (ids of a schema registry; the HTTP client is schemas/registry_http.h) -- */

/* From now on decode only the ids added by kp_codec_add_schema: a registry assigns its own ids,
 * unrelated to the built-in table (its id 1 may be any schema). The built-ins stay the writer
 * schemas of the encoders. NULL is a no-op. */
void kp_codec_use_registry(kp_codec *c);

/* Register writer schema json[0..len-1] under registry id `id` (parsed, and resolved against the
 * reader schema of its type now, so an incompatible schema fails here, not per message). An id
 * already added with an identical schema is accepted. The codec keeps KP_CODEC_MAX_REMOTE (256)
 * such schemas; past that the oldest is forgotten. Returns 0, or -1 with a reason in err. */
int kp_codec_add_schema(kp_codec *c, int32_t id, const char *json, size_t len, char *err,
                        size_t errlen);

/* 1 if a decoder of c knows wire id `id` (in registry mode: added by kp_codec_add_schema), else
 * 0 (and for a NULL c). */
int kp_codec_knows(const kp_codec *c, int32_t id);

/* Make the encoder of built-in schema builtin_id write wire_id in the header (the id a registry
 * gave that schema), and decode wire_id with that schema. Returns 0, or -1 with a reason in err
 * (not a built-in id, wire_id already added with another schema). */
int kp_codec_set_wire_id(kp_codec *c, int32_t builtin_id, int32_t wire_id, char *err,
                         size_t errlen);

/* Record name of a registered schema id, or NULL if the id is unknown. Owned by the codec. */
const char *kp_codec_schema_name(const kp_codec *c, int32_t id);

/* Reason of the last failed kp_encode_* call of this codec ("" if none). Owned by the codec. */
const char *kp_codec_last_error(const kp_codec *c);

/* ---- encoders ---------------------------------------------------------------------------- */
/* Each writes the wire-format bytes (header + body) into a new malloc'd buffer *out of *outlen
 * bytes, owned by the caller (free()). Returns 0, or -1 (reason in kp_codec_last_error) when an
 * argument is NULL, a required string is NULL, an enum is out of range, or Avro fails; *out is
 * then NULL. A NULL string of a field whose schema default is "" is written as "". */

/* ItemListed with the current schema (id 1). */
int kp_encode_item_listed(kp_codec *c, const kp_item_listed *v, void **out, size_t *outlen);
/* ItemListed with the old v0 schema (id 101: item_id and title only), as an old producer would. */
int kp_encode_item_listed_v0(kp_codec *c, const kp_item_listed *v, void **out, size_t *outlen);
/* AdEvent (id 2). */
int kp_encode_ad_event(kp_codec *c, const kp_ad_event *v, void **out, size_t *outlen);
/* Judgment (id 3). score must be a number in [0, 1]. */
int kp_encode_judgment(kp_codec *c, const kp_judgment *v, void **out, size_t *outlen);
/* KeyphraseSuggestions (id 4) of n suggestions s[0..n-1] (s may be NULL when n == 0).
 * kp_encode_suggestions_arm: the same with the arm that scored it (id 5; NULL or "" gives id 4,
 * so records without an arm stay readable by readers that know only id 4). */
int kp_encode_suggestions_arm(kp_codec *c, const char *item_id, int64_t model_version,
                              int64_t generated_at, const char *arm, const kp_suggestion *s, int n,
                              void **out, size_t *outlen);
int kp_encode_suggestions(kp_codec *c, const char *item_id, int64_t model_version,
                          int64_t generated_at, const kp_suggestion *s, int n, void **out,
                          size_t *outlen);

/* Keyphrase (id 6). keyphrase_id and keyphrase must be non-NULL. */
int kp_encode_keyphrase(kp_codec *c, const kp_keyphrase *v, void **out, size_t *outlen);

/* ---- decoders ---------------------------------------------------------------------------- */
/* Each decodes len bytes of buf (wire format, any registered writer schema of the right type)
 * into *out, which is overwritten (its previous contents are not freed). Returns 0 on success
 * (free with the matching *_clear), or -1 with a short reason in err and *out zeroed:
 * "truncated", "bad magic byte 0x7b", "unknown schema id 42",
 * "schema id 3 is Judgment, expected ItemListed", "bad string length ...", "trailing bytes (..)",
 * "avro: <avro_strerror()>", "field title contains a NUL byte", ...
 * Any input is safe: lengths are checked against the buffer before Avro reads it. */
int kp_decode_item_listed(kp_codec *c, const void *buf, size_t len, kp_item_listed *out, char *err,
                          size_t errlen);
int kp_decode_ad_event(kp_codec *c, const void *buf, size_t len, kp_ad_event *out, char *err,
                       size_t errlen);
int kp_decode_judgment(kp_codec *c, const void *buf, size_t len, kp_judgment *out, char *err,
                       size_t errlen);
int kp_decode_suggestions(kp_codec *c, const void *buf, size_t len, kp_suggestions_decoded *out,
                          char *err, size_t errlen);
int kp_decode_keyphrase(kp_codec *c, const void *buf, size_t len, kp_keyphrase *out, char *err,
                        size_t errlen);

/* Read the schema id of a wire-format buffer without decoding it. Returns 0 and sets *id, or -1
 * with a reason in err ("truncated", "bad magic byte 0x.."). */
int kp_wire_schema_id(const void *buf, size_t len, int32_t *id, char *err, size_t errlen);

/* Free the strings of a decoded value and zero it. NULL is a no-op. */
void kp_item_listed_clear(kp_item_listed *v);
void kp_ad_event_clear(kp_ad_event *v);
void kp_judgment_clear(kp_judgment *v);
void kp_suggestions_clear(kp_suggestions_decoded *v);
void kp_keyphrase_clear(kp_keyphrase *v);

/* ---- validation -------------------------------------------------------------------------- */

/* The field limits of each record, checked after a successful decode (the decoders check only
 * the wire format). Each returns 0, or -1 with the first failed check in err: a dead-letter reason
 * such as "missing keyphrase", "keyphrase too long (900000 > 512 bytes)", "keyphrase is not valid
 * UTF-8 (byte 17)", "score out of range (nan, expected 0..1)". Strings: required ones non-blank,
 * every one within its byte cap and well-formed UTF-8; numbers finite and in range; event times
 * in 0..KP_TS_MAX. */

/* Listing: item_id non-empty and <= KP_ITEM_ID_MAX bytes, title non-blank and <= max_title bytes,
 * category and seller_id (may be NULL/empty) <= KP_FIELD_MAX, price finite in 0..KP_PRICE_MAX.
 * E.g. "missing item_id", "item_id too long (300 > 256 bytes)", "missing title", "empty title",
 * "title too long (5000 > 1024 bytes)", "title is not valid UTF-8 (byte 17)", ... */
int kp_validate_item_listed(const kp_item_listed *v, size_t max_title, char *err, size_t errlen);

/* AdEvent (impression or click): item_id and keyphrase required, kind a known value, position in
 * 0..KP_POSITION_MAX. */
int kp_validate_ad_event(const kp_ad_event *v, char *err, size_t errlen);

/* Judgment: title (<= max_title bytes) and keyphrase required, item_id optional, source a known
 * value, score a number in [0, 1] (NaN, 7.5 and -1e300 fail). */
int kp_validate_judgment(const kp_judgment *v, size_t max_title, char *err, size_t errlen);

/* KeyphraseSuggestions: item_id required, n in 0..KP_SUGGESTIONS_MAX, every keyphrase required,
 * every score finite. */
int kp_validate_suggestions(const kp_suggestions_decoded *v, char *err, size_t errlen);

/* Return 1 if s[0..n-1] is well-formed UTF-8 (no overlongs, surrogates or code points above
 * U+10FFFF), else 0 and, if bad_at is not NULL, the offset of the first bad byte in *bad_at. */
int kp_utf8_valid(const char *s, size_t n, size_t *bad_at);

#endif

/* model_topic.h -- the model-topic protocol, shared by its writer (consumer/learn.c) and its
 * readers (consumer/follow.c, in every serve replica and in the trainer at start-up).
 * docs/DESIGN.md "The model-topic protocol" describes the same in prose; this is the reference.
 *
 * Records. Every record is keyed KP_MODEL_KEY (one partition, in order) and carries headers:
 *   type      "delta" | "checkpoint"
 *   version   decimal model version the record brings the reader to
 *   lineage   decimal u64: the trainer incarnation that wrote it (high 32 bits: a generation,
 *             one more than the highest on the topic when that trainer started; low 32 bits:
 *             random, so two trainers that race never share one)
 *   base      (delta) decimal version the delta applies to; always version - 1
 *   blineage  (delta) the lineage of the model at `base` (the parent's lineage)
 *   chunk     "INDEX/COUNT" (a delta's chunks also say so in their payload, see model/delta.h;
 *             a checkpoint is the bytes of a model/ckpt.h file cut in COUNT slices)
 *   size      (checkpoint) total bytes of the checkpoint file
 *   ts        ms since the epoch when the trainer published it
 *   mac       32 bytes: HMAC-SHA-256 with [model] hmac_key over kp_model_mac_input (the topic,
 *             the key, every header above in that order, the value)
 * No record carries a file path: a checkpoint's bytes are on the topic.
 *
 * Lineage and versions. A model held by a reader is (version, lineage); a bootstrap model ([model]
 * path, or the seeded one) has lineage 0. kp_model_decide is the reader's whole rule set:
 *   - a delta applies iff base == version, blineage == lineage and version' == base + 1;
 *   - a delta of a newer version that does not fit is a gap (the reader reloads the newest
 *     checkpoint and replays after it);
 *   - a checkpoint is loaded iff its version is newer, or equal while the reader is on lineage 0;
 *   - anything at or below the reader's version is old (skipped, never applied: versions never go
 *     backwards).
 * Transactions. The trainer writes every delta (and a checkpoint now and then) in one Kafka
 * transaction with the offsets of the events it trained on; readers use read_committed, so a
 * half-published delta is never seen; [train] transactional_id fences a zombie or second trainer at
 * the broker. A trainer publishes only after it has read the topic to its end. */
#ifndef KP_MODEL_TOPIC_H
#define KP_MODEL_TOPIC_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#define KP_MODEL_KEY             "kprec.model"
#define KP_MODEL_HDR_TYPE        "type"
#define KP_MODEL_HDR_VERSION     "version"
#define KP_MODEL_HDR_LINEAGE     "lineage"
#define KP_MODEL_HDR_BASE        "base"
#define KP_MODEL_HDR_BLINEAGE    "blineage"
#define KP_MODEL_HDR_CHUNK       "chunk"
#define KP_MODEL_HDR_SIZE        "size"
#define KP_MODEL_HDR_TS          "ts"
#define KP_MODEL_HDR_MAC         "mac"
#define KP_MODEL_TYPE_DELTA      "delta"
#define KP_MODEL_TYPE_CHECKPOINT "checkpoint"
#define KP_MODEL_MAC_LEN         32
#define KP_MODEL_MAX_CHUNKS      100000

typedef enum { KP_MODEL_REC_OTHER = 0, KP_MODEL_REC_DELTA, KP_MODEL_REC_CHECKPOINT } kp_model_rec;

/* What a record says about itself (its headers). */
typedef struct {
    kp_model_rec type;
    uint64_t version, lineage;
    uint64_t base, base_lineage; /* deltas */
    int index, count;            /* chunk INDEX/COUNT */
    uint64_t size;               /* checkpoints: bytes of the whole file */
    int64_t ts_ms;
} kp_model_meta;

/* Why a record was rejected (kprec_model_records_rejected_total{reason}). */
typedef enum {
    KP_MODEL_OK = 0,
    KP_MODEL_REJ_MAC,       /* no MAC, or a wrong one */
    KP_MODEL_REJ_MALFORMED, /* missing or unparsable header, wrong key, unknown type */
    KP_MODEL_REJ_VERSION,   /* impossible versions (0, delta version != base + 1, 2^64-1) */
    KP_MODEL_REJ_LINEAGE,   /* lineage 0 (reserved for bootstrap models) */
    KP_MODEL_REJ_PAYLOAD,   /* MAC fine but the chunk does not match its headers, or bad CRC */
    KP_MODEL_REJ_N
} kp_model_reject;

extern const char *const kp_model_reject_name[KP_MODEL_REJ_N];

/* ---- MAC ---- */

/* HMAC-SHA-256 of msg[len] with key[keylen] into out[32] (OpenSSL's libcrypto). 0, or -1. */
int kp_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t len,
                   unsigned char out[KP_MODEL_MAC_LEN]);

/* The MAC of a record: over the topic, the key, the meta headers (as kp_model_headers writes
 * them) and the value, each length-prefixed. 0, or -1 on OOM. */
int kp_model_mac(const char *hmac_key, const char *topic, const void *key, size_t keylen,
                 const kp_model_meta *meta, const void *val, size_t vallen,
                 unsigned char out[KP_MODEL_MAC_LEN]);

/* ---- writer ---- */

/* The headers of one record (meta, plus its MAC over topic/key/value). Caller owns them; NULL on
 * OOM. */
rd_kafka_headers_t *kp_model_headers(const kp_model_meta *meta, const char *hmac_key,
                                     const char *topic, const void *key, size_t keylen,
                                     const void *val, size_t vallen);

/* A fresh lineage of generation gen (the high 32 bits) with random low bits; never 0. */
uint64_t kp_model_new_lineage(uint32_t gen);

/* ---- reader ---- */

/* Parses and authenticates a record (headers h, which may be NULL): fills *meta and returns
 * KP_MODEL_OK, or the reason it must be dropped. Checks the key, the MAC, then the headers'
 * sanity (versions, lineage, chunk index < count <= KP_MODEL_MAX_CHUNKS). */
kp_model_reject kp_model_verify(const char *hmac_key, const char *topic, const void *key,
                                size_t keylen, rd_kafka_headers_t *h, const void *val,
                                size_t vallen, kp_model_meta *meta);

/* kp_model_verify of a consumed message. */
kp_model_reject kp_model_verify_msg(const char *hmac_key, const rd_kafka_message_t *m,
                                    kp_model_meta *meta);

/* Copies the last header `name` of h to buf[cap] as a string. Returns buf, or NULL when there is
 * no such header or it does not fit. */
const char *kp_model_hdr(rd_kafka_headers_t *h, const char *name, char *buf, size_t cap);

/* What a reader holding a model (version, lineage) does with an authenticated record. */
typedef enum {
    KP_MODEL_APPLY = 0, /* a delta that continues the model / a checkpoint to load */
    KP_MODEL_OLD,       /* at or below the model's version: skip */
    KP_MODEL_GAP,       /* a newer delta that does not continue the model: reload a checkpoint */
} kp_model_action;

kp_model_action kp_model_decide(uint64_t version, uint64_t lineage, const kp_model_meta *r);

/* ---- the local checkpoint cache ([train] checkpoint_dir, optional, any role) ---- */

/* dir/be-v<VERSION>-l<LINEAGE>.kpm into out[cap]. 0, or -1 when it does not fit. */
int kp_model_checkpoint_path(const char *dir, uint64_t version, uint64_t lineage, char *out,
                             size_t cap);

/* The newest checkpoint file in dir ("" or unreadable: none): returns its version, writes its path
 * to out[cap] and its lineage to *lineage (may be NULL); 0 when there is none. */
uint64_t kp_model_newest_checkpoint(const char *dir, char *out, size_t cap, uint64_t *lineage);

/* Removes all but the newest `keep` checkpoint files of dir. Returns how many it removed. */
int kp_model_cache_prune(const char *dir, int keep);

#endif

/* model_topic.h -- the record format of the model topic, shared by its writer (consumer/learn.c)
 * and its reader (consumer/follow.c).
 *
 * Every record is keyed KP_MODEL_KEY (so all land in one partition, in order) and carries a header
 * "type":
 *   "delta"       value = one chunk of model/delta.h; headers "version" and "ts" (ms since the
 *                 epoch, when the trainer published it)
 *   "checkpoint"  value = "VERSION PATH" (decimal version, a space, the checkpoint's path without
 *                 spaces); header "version"
 * Checkpoints are files named be-v<VERSION>.kpm in [train] checkpoint_dir. */
#ifndef KP_MODEL_TOPIC_H
#define KP_MODEL_TOPIC_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#define KP_MODEL_KEY             "kprec.model"
#define KP_MODEL_HDR_TYPE        "type"
#define KP_MODEL_HDR_VERSION     "version"
#define KP_MODEL_HDR_TS          "ts"
#define KP_MODEL_TYPE_DELTA      "delta"
#define KP_MODEL_TYPE_CHECKPOINT "checkpoint"

typedef enum { KP_MODEL_REC_OTHER = 0, KP_MODEL_REC_DELTA, KP_MODEL_REC_CHECKPOINT } kp_model_rec;

/* ---- writer ---- */

/* Headers of a delta chunk of `version` published at ts_ms. Caller owns them; NULL on OOM. */
rd_kafka_headers_t *kp_model_delta_headers(uint64_t version, int64_t ts_ms);

/* Headers of a checkpoint announcement of `version`. Caller owns them; NULL on OOM. */
rd_kafka_headers_t *kp_model_checkpoint_headers(uint64_t version);

/* Writes the announcement value "VERSION PATH" to buf[cap]. Returns its length, or -1 when it does
 * not fit or path holds white space (a reader could not parse it back). */
int kp_model_announce_encode(uint64_t version, const char *path, char *buf, size_t cap);

/* Writes the path of checkpoint `version` in dir (dir/be-v<VERSION>.kpm) to out[cap]. Returns 0,
 * or -1 when it does not fit. */
int kp_model_checkpoint_path(const char *dir, uint64_t version, char *out, size_t cap);

/* ---- reader ---- */

/* The type of a model record (from its "type" header). */
kp_model_rec kp_model_record_type(const rd_kafka_message_t *m);

/* Copies the last header `name` of m to buf[cap] as a string. Returns buf, or NULL when m has no
 * such header or it does not fit. */
const char *kp_model_header(const rd_kafka_message_t *m, const char *name, char *buf, size_t cap);

/* Parses an announcement value (len bytes, not NUL-terminated). Returns 0 with *version and
 * path[pathcap] set, or -1 when it is malformed. */
int kp_model_announce_parse(const void *val, size_t len, uint64_t *version, char *path,
                            size_t pathcap);

/* The newest checkpoint file in dir ("" or unreadable: none): returns its version and writes its
 * path to out[cap]; 0 when there is none. */
uint64_t kp_model_newest_checkpoint(const char *dir, char *out, size_t cap);

#endif

/* follow.h -- keeps a worker's model in step with the trainer.
 *
 * A background thread reads the model topic (every partition, assigned, no consumer group), keeps
 * a master copy of the bi-encoder, applies the trainer's deltas in version order, and loads an
 * announced checkpoint when it starts behind or finds a gap (then replays the deltas after the
 * announcement). After a change it builds, off the hot path, a new recommender (a copy of the
 * model plus the re-embedded keyphrase inventory) that the serving loop swaps in between two
 * micro-batches. Records are authenticated (HMAC), read read_committed, and checked against the
 * lineage rules of consumer/model_topic.h; checkpoints come from the topic itself. It also re-reads
 * the inventory file when it changes ([model] reload_s), so new keyphrases become searchable
 * without a restart.
 *
 * The record format (deltas and checkpoint announcements) is consumer/model_topic.h. */
#ifndef KP_FOLLOW_H
#define KP_FOLLOW_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "model/bienc.h"
#include "model/recommender.h"
#include "producer/kafka.h" /* kp_stop_flag */

typedef struct kp_follower kp_follower;

/* Starts the follower thread with model (owned; its version is where following starts).
 * build_recommenders = 0 for the trainer, which only needs the model itself. NULL with err. */
kp_follower *kp_follower_start(const kp_config *c, kp_bienc *model, int build_recommenders,
                               char *err, size_t errlen);

/* Returns a recommender newer than the last one taken (caller owns it), or NULL. Never blocks
 * on model work. */
kp_recommender *kp_follower_take(kp_follower *f);

/* Waits until the follower has read the model topic to its end once (or timeout_ms passed, or
 * *stop became non-zero). Returns 1 when caught up, 0 otherwise. */
int kp_follower_wait_caught_up(kp_follower *f, int timeout_ms, kp_stop_flag *stop);

/* Waits until the follower has read every committed record of the model topic, up to its end, at
 * least once (timeout_ms, or *stop). Unlike kp_follower_wait_caught_up this never returns 1 when
 * the broker or the topic could not be reached. Returns 1 when at the end. */
int kp_follower_wait_end(kp_follower *f, int timeout_ms, kp_stop_flag *stop);

/* The version of the newest checkpoint on the topic (0 = none seen). */
uint64_t kp_follower_checkpoint_version(kp_follower *f);

/* kp_follower_stop, also giving the lineage of the master model (0 = a bootstrap model) and the
 * highest lineage generation seen on the topic (either may be NULL). */
kp_bienc *kp_follower_stop_ex(kp_follower *f, uint64_t *lineage, uint32_t *max_gen);

/* The highest model version announced on the topic so far (deltas and checkpoints). A follower
 * whose version is lower after catching up is stuck at a gap. */
uint64_t kp_follower_topic_version(kp_follower *f);

/* The version of the follower's master model. */
uint64_t kp_follower_version(kp_follower *f);

/* Stops the thread; returns the master model (caller owns it) and frees the rest (a recommender
 * never taken included). NULL-safe: NULL gives NULL. */
kp_bienc *kp_follower_stop(kp_follower *f);

/* Loads the bi-encoder a worker starts from: [model] path, or, when [train] checkpoint_dir holds
 * checkpoints (be-v<VERSION>.kpm), the newest of them if it is newer. NULL with err. */
kp_bienc *kp_follower_initial_model(const kp_config *c, char *err, size_t errlen);

/* Builds a recommender for a copy of m over the inventory file of c. NULL with err. */
kp_recommender *kp_follower_build(const kp_config *c, const kp_bienc *m, char *err, size_t errlen);

#endif

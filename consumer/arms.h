/* arms.h -- the models a serve worker scores with besides the live one: an A/B split and a shadow.
 *
 * A/B split ([model] ab_candidate + ab_weight): every item is assigned an arm by a hash of its
 * item_id (kp_fnv1a % 100 < ab_weight: "candidate", else "live"), so an item always lands in the
 * same arm, on every replica and in every run with the same weight. The candidate is a checkpoint
 * file scored by the same pipeline (CE, BM25, calibration, gate: consumer/assets.h) over the same
 * inventory; it is fixed for the worker's life (the live model follows the topic). The arm goes
 * into the cached JSON (cache/json.c) and the suggestion record (KeyphraseSuggestions.arm, schema
 * id 5). Cache entries of both arms carry the live model's version: the version of the replica's
 * serving pipeline, so the versioned Redis write and `kprec rescore` keep working by it.
 *
 * Shadow ([model] shadow): a second checkpoint scores the same batches after the live path is
 * done; its lists (arm "shadow", its own model version) go to [topics] shadow through a producer
 * of its own, best effort (never waited for: a shadow outage never holds the live path), and never
 * to Redis. Not thread-safe: one kp_arms per serving thread. */
#ifndef KP_ARMS_H
#define KP_ARMS_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "model/recommender.h"

typedef struct kp_arms kp_arms;

#define KP_ARM_LIVE      0
#define KP_ARM_CANDIDATE 1

/* Loads the candidate and the shadow checkpoints of c and builds their recommenders. Returns NULL
 * with err[0] == '\0' when neither is configured (nothing to do), NULL with a reason in err when
 * one cannot be loaded (a bad configuration), or the arms (free with kp_arms_free). */
kp_arms *kp_arms_new(const kp_config *c, char *err, size_t errlen);

/* Flushes the shadow producer (up to 5 s) and frees everything. NULL-safe. */
void kp_arms_free(kp_arms *a);

/* The arm of item_id under an A/B split of weight percent to the candidate: KP_ARM_CANDIDATE when
 * kp_fnv1a(item_id) % 100 < weight, else KP_ARM_LIVE. Pure (no kp_arms needed). */
int kp_arms_pick(const char *item_id, int weight);

/* The name written for an arm: "live" / "candidate" under a split, "" without one (a, NULL: ""). */
const char *kp_arms_name(const kp_arms *a, int arm);

/* kp_rec_suggest for n items split by arm: items of the candidate arm are scored by the candidate,
 * the others by live (borrowed); out[i * k ..], counts[i] and arm_of[i] as kp_rec_suggest, for
 * item i. Without a split (a NULL, or no candidate) it is kp_rec_suggest(live) with arm_of all
 * KP_ARM_LIVE. 0, or -1 on OOM / a failed recommend. */
int kp_arms_suggest(kp_arms *a, kp_recommender *live, const char *const *item_ids,
                    const char *const *titles, const size_t *lens, int n, int k, float min_score,
                    kp_rec_suggestion *out, int *counts, int *arm_of);

/* Shadow scoring of one batch (the n records msgs the live path took, ItemListed): decodes
 * and validates them as the serve path does, scores the valid ones with the shadow model and
 * produces one KeyphraseSuggestions per item (arm "shadow") to [topics] shadow, without waiting.
 * Bad events are skipped (the live path dead-letters them). Returns how many records were queued
 * (0 without a shadow), or -1 on OOM. */
int kp_arms_shadow(kp_arms *a, rd_kafka_message_t *const *msgs, int n);

#endif

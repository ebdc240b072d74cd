/* group.h -- consumer-group plumbing shared by the serve and learn roles: one consumer set-up
 * (offsets stored by kprec after the work, committed by librdkafka), a checked subscription, one
 * rebalance callback for the eager and cooperative protocols (commit before giving partitions up,
 * errors logged), pausing, and the offset store (which also remembers this process's acknowledged
 * offsets, so a partition that comes back after a lost membership resumes after its own work).
 * Also the process's stop flags. */
#ifndef KP_GROUP_H
#define KP_GROUP_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>

#include "common/config.h"
#include "producer/kafka.h" /* kp_stop_flag */

/* Set by the signal handlers: the first SIGINT/SIGTERM sets kp_worker_stop (stop consuming, finish
 * in-flight work, flush, commit, close); a second one sets kp_worker_stop_hard (stop waiting for
 * Redis or Kafka: unfinished events are not committed and will be consumed again). */
extern kp_stop_flag kp_worker_stop;
extern kp_stop_flag kp_worker_stop_hard;

#define KP_GROUP_MAX_TOPICS 4

typedef struct {
    const char *who;      /* log prefix: "worker", "trainer" */
    const char *group_id; /* the consumer group */
    int group_id_default; /* 1: use group_id only when [kafka] group.id is not set */
    const char *topics[KP_GROUP_MAX_TOPICS];
    int n_topics;
    int count_rebalances; /* counts toward kprec_rebalances_total */
} kp_group_opts;

typedef struct kp_group kp_group;

/* Creates the consumer ([kafka] keys, enable.auto.offset.store=false, auto.offset.reset=earliest
 * unless set, the rebalance callback) and subscribes to o's topics (checked). o->who must outlive
 * the group; the rest of o is read during the call only. NULL with err on failure. */
kp_group *kp_group_new(const kp_config *c, const kp_group_opts *o, char *err, size_t errlen);

/* kp_group_new for a consumer whose offsets are committed through a producer's transaction
 * (kp_producer_txn_publish): enable.auto.commit=false, and nothing is ever stored. */
kp_group *kp_group_new_txn(const kp_config *c, const kp_group_opts *o, char *err, size_t errlen);

/* Closes the consumer (commits the stored offsets, leaves the group) and frees. NULL-safe. */
void kp_group_free(kp_group *g);

/* The librdkafka handle (owned by g). */
rd_kafka_t *kp_group_handle(kp_group *g);

/* Polls for up to timeout_ms. Returns an event (caller destroys it), or NULL: nothing came
 * (*was_error = 0) or a consumer error or partition EOF was consumed, logged unless an EOF, and
 * destroyed (*was_error = 1; was_error may be NULL). */
rd_kafka_message_t *kp_group_poll(kp_group *g, int timeout_ms, int *was_error);

/* Pauses (pause = 1) or resumes the whole assignment; partitions assigned while paused are paused
 * too. Updates kprec_paused. 0, or -1 when librdkafka refused it for some partition (logged). */
int kp_group_pause(kp_group *g, int pause);

/* Commits the stored offsets now, asynchronously (errors of the call logged; the broker's answer
 * is not waited for). */
void kp_group_commit(kp_group *g);

/* Revoked partitions: every partition revoked or lost since the last kp_group_forget_revoked.
 * Messages of those that the caller polled before the revoke and still holds must be dropped,
 * not processed: the next owner, or this consumer again from the committed offset, consumes them
 * again. kp_group_revoked_any: 1 when there are some; kp_group_was_revoked: 1 when m's partition
 * is one of them. */
int kp_group_revoked_any(const kp_group *g);
int kp_group_was_revoked(const kp_group *g, const rd_kafka_message_t *m);
void kp_group_forget_revoked(kp_group *g);

/* fn(ctx) (NULL: none) is called in the rebalance callback when partitions are revoked or lost,
 * before the commit that precedes giving them up: the caller finishes there the work in flight
 * (e.g. another thread's) whose offsets belong in that commit, storing them with kp_group_store.
 * It runs on the consumer's thread, inside kp_group_poll or kp_group_free. */
void kp_group_on_revoke(kp_group *g, void (*fn)(void *ctx), void *ctx);

/* 1 while paused. */
int kp_group_paused(const kp_group *g);

/* Stores the offsets of l (the next offset to consume per partition; l stays the caller's, its
 * per-partition err fields are set). Call it only for acknowledged work.
 * Partitions revoked meanwhile are ignored: their events were done, and the new owner re-does
 * them (idempotent writes). Other errors are logged. g also remembers the highest offset stored
 * per partition: when a partition comes back to this consumer with a committed offset below it
 * (its commits failed while its membership was lost), it resumes there and commits it. */
void kp_group_store(kp_group *g, rd_kafka_topic_partition_list_t *l);

/* Lag of every assigned partition (end offset - position), published as
 * kprec_consumer_lag{topic,partition} and, summed, as kprec_consumer_lag_messages. */
void kp_group_report_lag(kp_group *g);

/* ---- readers of a whole topic (the model follower, the inventory) ---- */

/* A consumer that reads a topic from its beginning without group membership (partitions are
 * assigned by the caller), commits nothing and sees committed records only (read_committed), with
 * partition EOF events. group_id only names it to the broker; who prefixes the log lines. NULL
 * (logged) on a bad config. The caller owns the handle (rd_kafka_destroy). */
rd_kafka_t *kp_reader_consumer(const kp_config *c, const char *who, const char *group_id);

/* Partitions of topic: 0 while it does not exist, -1 when the broker did not answer in 5 s. */
int kp_topic_partitions(rd_kafka_t *rk, const char *topic);

#endif

/* producer.h -- kprec's Kafka producer: idempotent, deliveries counted only in the delivery
 * report callback, failed deliveries retried with backoff until they succeed or the caller stops.
 * Errors are told apart: transient ones (broker down, timeouts) are retried; permanent ones (a
 * record too large, a topic that does not exist, no authorisation) are not: a dead-letter copy
 * that is too large is cut to a prefix and sent again, anything else is given up.
 *
 * One kp_producer per process; all calls from one thread (the delivery callback runs inside
 * rd_kafka_poll/flush on that thread). */
#ifndef KP_PRODUCER_H
#define KP_PRODUCER_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>

#include "common/config.h"
#include "producer/kafka.h"

typedef struct kp_producer kp_producer;

/* FAILED: a transient error (send it again later); TOO_LARGE and REJECTED: permanent errors (the
 * broker or librdkafka refused the record for its size / for another reason that sending it
 * again cannot cure). */
typedef enum {
    KP_OUT_PENDING = 0,
    KP_OUT_DONE = 1,
    KP_OUT_FAILED = 2,
    KP_OUT_TOO_LARGE = 3,
    KP_OUT_REJECTED = 4
} kp_out_state;

/* The prefix of the original value a dead-letter copy keeps when the whole is too large. */
#define KP_DLQ_PREFIX_BYTES 65536

/* One record to publish. The caller owns key, val and hdrs (a template: each send hands librdkafka
 * a copy); state is set by the delivery report. */
typedef struct {
    const char *topic;
    const void *key;
    size_t keylen;
    const void *val;
    size_t vallen;
    rd_kafka_headers_t *hdrs; /* may be NULL */
    int is_suggestion;        /* counts toward kprec_suggestions_delivered_total */
    kp_out_state state;
} kp_outmsg;

/* Creates an idempotent producer from c ([kafka] keys, plus enable.idempotence=true unless set).
 * NULL with err on failure. */
kp_producer *kp_producer_new(const kp_config *c, char *err, size_t errlen);

/* Flushes (up to timeout_ms) and destroys. Accepts NULL. Returns the number of records that were
 * still undelivered (0 = all delivered). */
int kp_producer_free(kp_producer *p, int timeout_ms);

/* kp_producer_free, but the flush ends as soon as *abort_flag (may be NULL) is non-zero: what is
 * queued or in flight is then purged (its delivery is unknown; it counts as undelivered). */
int kp_producer_close(kp_producer *p, int timeout_ms, kp_stop_flag *abort_flag);

/* Checks that every topics[i] exists (cluster metadata, up to timeout_ms). 0 when they all do;
 * -1 with err naming the first missing one; 1 with err when the metadata could not be had (broker
 * unreachable: the caller cannot tell, and may go on). */
int kp_producer_check_topics(kp_producer *p, const char *const *topics, int n, int timeout_ms,
                             char *err, size_t errlen);

/* The librdkafka handle (still owned by p). */
rd_kafka_t *kp_producer_handle(kp_producer *p);

typedef enum {
    KP_SEND_DONE = 0,      /* every record delivered */
    KP_SEND_RETRY = 1,     /* some failed transiently (FAILED): send again after a backoff */
    KP_SEND_ABORTED = -1,  /* *abort_flag became non-zero */
    KP_SEND_REJECTED = -2, /* some were refused for good (REJECTED): sending again cannot help */
    KP_SEND_FATAL = -3     /* the producer had a fatal error: nothing more can be delivered */
} kp_send_rc;

/* One round: publishes every message of msgs whose state is not DONE and waits for all their
 * delivery reports, calling tick while waiting. A dead-letter copy (topic = c's [topics] dlq, with
 * headers) that is TOO_LARGE is cut and sent again within the round: its vallen becomes at most
 * KP_DLQ_PREFIX_BYTES (halved again while the broker still refuses it) and header "truncated" =
 * the original length is added to its hdrs (the caller's, still the caller's to free); its other
 * headers (topic, partition, offset, error) say where the original is and why. Any other TOO_LARGE
 * record becomes REJECTED. On ABORTED and FATAL what is still queued or in flight is purged (an
 * abort purges in-flight requests too: prompt, delivery unknown); no delivery report can touch
 * msgs after the call returns. */
kp_send_rc kp_producer_send(kp_producer *p, kp_outmsg *msgs, int n, const kp_config *c,
                            kp_stop_flag *abort_flag, kp_tick_fn tick, void *tick_opaque);

/* kp_producer_send until every message is DONE: transient failures are sent again after a backoff
 * (retry_backoff_ms doubling up to retry_backoff_max_ms, ticking). Returns 0 when all are DONE, or
 * -1 (logged) if *abort_flag became non-zero, a record was refused for good, or the producer had a
 * fatal error (the undelivered ones stay not DONE). */
int kp_producer_deliver(kp_producer *p, kp_outmsg *msgs, int n, const kp_config *c,
                        kp_stop_flag *abort_flag, kp_tick_fn tick, void *tick_opaque);

/* ---- transactions (the trainer's model topic) ---- */

/* A transactional producer: kp_producer_new's configuration plus transactional.id = txn_id, then
 * rd_kafka_init_transactions (which fences an older producer with the same id and aborts its open
 * transaction). NULL with err (e.g. the broker cannot be reached within timeout_ms). */
kp_producer *kp_producer_new_txn(const kp_config *c, const char *txn_id, int timeout_ms, char *err,
                                 size_t errlen);

typedef enum { KP_TXN_COMMITTED = 0, KP_TXN_ABORTED = -1, KP_TXN_FATAL = -2 } kp_txn_rc;

/* Publishes msgs[n] in one transaction, together with offsets (the next offsets to consume, may be
 * NULL) of the consumer group of `consumer`: begin, produce, wait for every delivery report, send
 * the offsets, commit. landed (may be NULL) gets the offset of each record. KP_TXN_COMMITTED: all
 * of it is visible to read_committed readers at once; KP_TXN_ABORTED: none of it is (the caller may
 * try again later); KP_TXN_FATAL: the producer is fenced (another trainer with the same
 * transactional.id started), unusable, or a record was refused for good (REJECTED / TOO_LARGE:
 * publishing it again cannot succeed): stop publishing. *abort_flag (may be NULL) aborts the
 * transaction. Test hook: KPREC_TEST_TXN_HOLD_MS in the environment holds a transaction open that
 * long before its commit. */
kp_txn_rc kp_producer_txn_publish(kp_producer *p, kp_outmsg *msgs, int n, rd_kafka_t *consumer,
                                  const rd_kafka_topic_partition_list_t *offsets, int64_t *landed,
                                  kp_stop_flag *abort_flag, char *err, size_t errlen);

#endif

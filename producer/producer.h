/* producer.h -- kprec's Kafka producer: idempotent, deliveries counted only in the delivery
 * report callback, failed deliveries retried with backoff until they succeed or the caller stops.
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

typedef enum { KP_OUT_PENDING = 0, KP_OUT_DONE = 1, KP_OUT_FAILED = 2 } kp_out_state;

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

/* The librdkafka handle (still owned by p). */
rd_kafka_t *kp_producer_handle(kp_producer *p);

/* Publishes every message of msgs whose state is not DONE and waits for all delivery reports;
 * failed ones are published again after a backoff (retry_backoff_ms doubling up to
 * retry_backoff_max_ms), tick is called while waiting. Returns 0 when all are DONE, or -1 if
 * *abort became non-zero first (the undelivered ones stay PENDING/FAILED). */
int kp_producer_deliver(kp_producer *p, kp_outmsg *msgs, int n, const kp_config *c,
                        volatile sig_atomic_t *abort_flag, kp_tick_fn tick, void *tick_opaque);

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
 * transactional.id started) or unusable: stop publishing. *abort_flag (may be NULL) aborts the
 * transaction. Test hook: KPREC_TEST_TXN_HOLD_MS in the environment holds a transaction open that
 * long before its commit. */
kp_txn_rc kp_producer_txn_publish(kp_producer *p, kp_outmsg *msgs, int n, rd_kafka_t *consumer,
                                  const rd_kafka_topic_partition_list_t *offsets, int64_t *landed,
                                  volatile sig_atomic_t *abort_flag, char *err, size_t errlen);

#endif

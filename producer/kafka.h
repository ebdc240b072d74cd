/* kafka.h -- the Kafka configuration every kprec client shares (serve and learn consumers, the
 * model follower, the producers, replay and the admin verbs): [kafka] keys applied and checked,
 * defaults that a [kafka] key overrides, librdkafka's log lines routed to kp_log, the backoff
 * sleep, and the dead-letter headers. */
#ifndef KP_KAFKA_H
#define KP_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

/* A stop flag: set by a signal handler or another thread, read by every waiting loop. A lock-free
 * atomic, so both are defined behaviour (C11 7.14.1.1: a handler may assign lock-free atomics;
 * a volatile sig_atomic_t written by one thread and read by another is a data race). */
typedef atomic_int kp_stop_flag;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "kp_stop_flag must be lock-free to be set by a signal");

/* Called while waiting (deliveries, backoff) so the caller can keep its consumer alive. */
typedef void (*kp_tick_fn)(void *opaque);

/* Applies every [kafka] key to conf (each rd_kafka_conf_set checked). Returns 0, or -1 with err
 * naming the key; conf stays owned by the caller either way. */
int kp_kafka_conf_apply(rd_kafka_conf_t *conf, const kp_config *c, char *err, size_t errlen);

/* Sets key = val on conf unless [kafka] sets key itself (the user's value wins). Returns 0, or -1
 * with err naming the key. */
int kp_kafka_conf_default(rd_kafka_conf_t *conf, const kp_config *c, const char *key,
                          const char *val, char *err, size_t errlen);

/* Sets key = val on conf whatever [kafka] says. Returns 0, or -1 with err naming the key. */
int kp_kafka_conf_force(rd_kafka_conf_t *conf, const char *key, const char *val, char *err,
                        size_t errlen);

/* A new conf with [kafka] applied and kp_kafka_log_cb installed. NULL with err (nothing to free).
 * The caller owns the result until rd_kafka_new succeeds with it. */
rd_kafka_conf_t *kp_kafka_conf_new(const kp_config *c, char *err, size_t errlen);

/* The conf of an idempotent producer: kp_kafka_conf_new, plus enable.idempotence=true and
 * linger.ms=linger_ms unless [kafka] sets them, and dr_cb as the delivery report callback (counts
 * deliveries; may be NULL). NULL with err. */
rd_kafka_conf_t *kp_kafka_producer_conf(const kp_config *c, const char *linger_ms,
                                        void (*dr_cb)(rd_kafka_t *, const rd_kafka_message_t *,
                                                      void *),
                                        char *err, size_t errlen);

/* Routes librdkafka's log lines to kp_log. */
void kp_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* Headers of a dead-letter record for the record topic[partition]@offset: topic, partition,
 * offset, error (= reason). Caller owns the result; NULL on OOM. */
rd_kafka_headers_t *kp_dlq_headers_for(const char *topic, int32_t partition, int64_t offset,
                                       const char *reason);

/* kp_dlq_headers_for the consumed message m. */
rd_kafka_headers_t *kp_dlq_headers(const rd_kafka_message_t *m, const char *reason);

/* Sleeps ms milliseconds in slices of 50 ms, calling tick (may be NULL) after every slice,
 * returning early once *abort_flag (may be NULL) is non-zero. */
void kp_backoff_sleep(int ms, kp_stop_flag *abort_flag, kp_tick_fn tick, void *opaque);

/* The next backoff after `ms`: doubled, capped at [worker] retry_backoff_max_ms. */
int kp_backoff_next(const kp_config *c, int ms);

#endif

/* telemetry.h -- process-wide counters and a latency histogram, served as Prometheus text on
 * /metrics (and liveness on /healthz) by libmicrohttpd's own thread.
 *
 * Counters are C11 atomics: any thread may bump them. Per-topic counters are indexed by kp_mtopic.
 */
#ifndef KP_TELEMETRY_H
#define KP_TELEMETRY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { KP_MT_ITEMS = 0, KP_MT_CLICKS, KP_MT_JUDGMENTS, KP_MT_N } kp_mtopic;

#define KP_HIST_BUCKETS 14

/* Reasons a model-topic record is dropped (consumer/model_topic.h's kp_model_reject, same order):
 * kprec_model_records_rejected_total{reason}. */
#define KP_MREJ_N 6
extern const char *const kp_mrej_name[KP_MREJ_N];

#define KP_LAG_MAX 256 /* partitions reported in kprec_consumer_lag */

typedef struct {
    atomic_ullong consumed[KP_MT_N];      /* messages read from each input topic */
    atomic_ullong processed[KP_MT_N];     /* messages fully handled (cached + published) */
    atomic_ullong dead_lettered[KP_MT_N]; /* messages sent to the DLQ */
    atomic_ullong suggestions_delivered;  /* suggestion records acknowledged by Kafka */
    atomic_ullong items_empty;            /* items published with no suggestion (the gate) */
    atomic_ullong producer_errors;        /* failed deliveries (retried) */
    atomic_ullong redis_errors;           /* failed Redis round trips (retried) */
    atomic_ullong redis_writes;           /* items written to Redis */
    atomic_ullong stale_skipped;          /* Redis entries kept because they were newer */
    atomic_ullong batches;
    atomic_ullong rebalances;
    atomic_llong in_flight;       /* events taken from Kafka but not yet done */
    atomic_llong paused;          /* 1 while partitions are paused (backpressure) */
    atomic_llong paused_since_ms; /* when they were paused (0 = not paused) */
    atomic_llong train_pending;   /* trainer: events waiting for their item's title */
    atomic_ullong model_version;
    atomic_llong keyphrases;                 /* index size */
    atomic_llong consumer_lag;               /* sum over assigned partitions, from statistics */
    atomic_ullong deltas_applied;            /* model deltas applied by the follower */
    atomic_ullong checkpoints_loaded;        /* checkpoints loaded (start behind, or a gap) */
    atomic_ullong model_swaps;               /* new model/index swapped into serving */
    atomic_llong delta_lag_ms;               /* last delta: published (trainer clock) -> applied */
    atomic_llong reembed_ms;                 /* last re-embedding of the inventory */
    atomic_ullong train_steps;               /* trainer: optimisation steps */
    atomic_ullong train_events;              /* trainer: events used in steps */
    atomic_ullong deltas_published;          /* trainer: deltas published */
    atomic_ullong delta_bytes;               /* trainer: bytes of the last delta */
    atomic_ullong train_loss_micro;          /* trainer: last step's loss x 1e6 */
    atomic_ullong model_rejected[KP_MREJ_N]; /* model records dropped, by reason */
    atomic_ullong model_topic_version;       /* newest authentic version seen on the model topic */
    atomic_llong model_behind_since_ms;   /* when the topic got ahead of this replica (0 = not) */
    atomic_llong model_stuck;             /* 1: at a gap with no newer checkpoint to load */
    atomic_ullong model_lineage;          /* lineage of the follower's model (0 = bootstrap) */
    atomic_ullong model_follower_version; /* version of the follower's master model */
    atomic_ullong batch_hist[KP_HIST_BUCKETS + 1]; /* batch latency, cumulative at render */
    atomic_ullong batch_sum_us;
} kp_metrics;

extern kp_metrics kp_m;
extern const char *kp_mtopic_name[KP_MT_N];

/* Replaces the per-partition consumer lag table (kprec_consumer_lag{topic,partition}) with n
 * entries (at most KP_LAG_MAX are kept). Thread-safe. */
void kp_telemetry_set_lag(const char *const *topics, const int32_t *partitions, const int64_t *lags,
                          int n);

/* /healthz answers 503 once the model has been behind the topic for more than s seconds (0 =
 * never). */
void kp_telemetry_set_max_behind(int s);

/* Seconds the model has been behind the topic's newest version (0 = not behind). */
double kp_telemetry_behind_s(void);

/* ---- health: /healthz answers 503 with the reasons ------------------------------------------
 * "paused 75s > 60s": the input partitions have been paused longer than max_paused_s;
 * "wedged: serve loop idle 80s > 60s": a loop that ticked once has not ticked for max_stall_s;
 * "cache full: <the Redis error>": the last Redis round trip failed with an OOM error;
 * "cache failing 70s > 60s: <error>": Redis round trips have failed for longer than max_stall_s;
 * "behind": the replica's model is behind (kp_telemetry_set_max_behind). */

typedef enum { KP_LOOP_SERVE = 0, KP_LOOP_TRAIN, KP_LOOP_N } kp_loop;

/* Heartbeat of loop l: called once per iteration. Thread-safe. */
void kp_telemetry_tick(kp_loop l);

/* Partitions paused (1) or resumed (0): sets kp_m.paused and remembers since when. */
void kp_telemetry_set_paused(int paused);

/* Result of a Redis round trip: err NULL (or "") when it succeeded, else its error text (copied,
 * truncated to 255 bytes); an error containing "OOM" marks the cache full. Thread-safe. */
void kp_telemetry_cache_result(const char *err);

/* Limits of /healthz in seconds (0 = that check is off) and of the HTTP endpoint: at most
 * max_conns connections at once (more are refused), an idle connection closed after timeout_s.
 * The endpoint's limits apply from the next kp_telemetry_http_start. */
void kp_telemetry_set_limits(int max_paused_s, int max_stall_s, int max_conns, int timeout_s);

/* The /healthz verdict: 1 healthy, 0 not; body (may be NULL) gets "ok ..." or the reasons, then
 * the state (model_version=.. paused=..), one line. */
int kp_telemetry_health(char *body, size_t n);

/* Records one batch's end-to-end latency in microseconds. */
void kp_telemetry_observe_batch(uint64_t us);

/* Renders all metrics as Prometheus text into a malloc'd string (caller frees); NULL on OOM. */
char *kp_telemetry_render(void);

/* Sets the labels of the kprec_build_info gauge (always 1), e.g. version="0.1.0",revision="..".
 * Copied (truncated to 1 KiB); call before kp_telemetry_http_start. NULL clears it. */
void kp_telemetry_set_build_info(const char *labels);

/* Starts the HTTP endpoint on bind:port (port 0 = no-op). The port is not shared (no
 * SO_REUSEPORT): a second process binding it fails. Returns 0, or -1 with the reason logged
 * ("metrics: cannot listen on 127.0.0.1:9100: Address already in use ..."). */
int kp_telemetry_http_start(const char *bind, int port);

/* Stops the endpoint, if started. */
void kp_telemetry_http_stop(void);

#endif

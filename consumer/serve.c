#include "consumer/serve.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "common/log.h"
#include "common/telemetry.h"
#include "common/util.h"
#include "consumer/assets.h"
#include "consumer/follow.h"
#include "consumer/serve_batch.h"
#include "model/blas.h"
#include "model/recommender.h"
#include "producer/producer.h"
#include "schemas/codec.h"
#include "schemas/registry_http.h"

typedef struct {
    const kp_config *cfg;
    kp_group *group;
    kp_producer *producer;
    kp_cache *cache;
    kp_codec *codec;
    kp_sreg *sreg; /* [schemas] registry, or NULL */
    kp_recommender *rec;
    kp_follower *follower;
    kp_serve_batch *batch;
    int backoff_ms; /* the next Redis retry's */
    /* the micro-batch being filled, and its events as the batch runner sees them */
    rd_kafka_message_t **msgs;
    kp_serve_event *events;
    int n;
    /* messages polled while waiting (backoff, deliveries): they open the next batch */
    rd_kafka_message_t **held;
    int n_held, cap_held;
} worker;

/* ---- waiting ---- */

/* Holds m for the next batch. 0, or -1 when it cannot (OOM). */
static int hold(worker *w, rd_kafka_message_t *m)
{
    if (w->n_held == w->cap_held) {
        int nc = w->cap_held ? w->cap_held * 2 : 64;
        rd_kafka_message_t **nh = realloc(w->held, sizeof *nh * (size_t)nc);
        if (!nh) return -1;
        w->held = nh;
        w->cap_held = nc;
    }
    w->held[w->n_held++] = m;
    return 0;
}

/* Keeps the group membership alive while we wait: polls the (paused) consumer; anything it hands
 * out is held for the next batch, never dropped. */
static void tick(void *opaque)
{
    worker *w = opaque;
    rd_kafka_message_t *m = kp_group_poll(w->group, 0, NULL);
    if (!m || !hold(w, m)) return;
    /* Cannot hold it: do not store its offset; it will be consumed again after a restart or
     * rebalance. Seek back so this instance sees it again too. */
    rd_kafka_seek(m->rkt, m->partition, m->offset, 1000);
    rd_kafka_message_destroy(m);
}

/* ---- the sinks of a batch: Redis, Kafka, the offset store ---- */

/* Redis: on failure pause the partitions and back off (ticking), so the batch retries. */
static kp_sink_rc sink_cache_put(void *ctx, const kp_cache_entry *e, int n)
{
    worker *w = ctx;
    char err[512];
    int stale = 0;
    if (!kp_cache_put(w->cache, e, n, &stale, err, sizeof err)) {
        atomic_fetch_add(&kp_m.redis_writes, (unsigned long long)(n - stale));
        atomic_fetch_add(&kp_m.stale_skipped, (unsigned long long)stale);
        w->backoff_ms = w->cfg->retry_backoff_ms;
        if (kp_group_paused(w->group)) {
            kp_info("redis is back: resuming consumption");
            kp_group_pause(w->group, 0);
        }
        return KP_SINK_OK;
    }
    atomic_fetch_add(&kp_m.redis_errors, 1);
    if (!kp_group_paused(w->group)) {
        kp_warn("%s: pausing consumption, retrying in %d ms", err, w->backoff_ms);
        kp_group_pause(w->group, 1);
    } else {
        kp_debug("%s: retrying in %d ms", err, w->backoff_ms);
    }
    kp_backoff_sleep(w->backoff_ms, &kp_worker_stop_hard, tick, w);
    w->backoff_ms = kp_backoff_next(w->cfg, w->backoff_ms);
    return kp_worker_stop_hard ? KP_SINK_FAIL : KP_SINK_RETRY;
}

/* Kafka: kp_producer_deliver re-sends failed records itself until a hard stop. */
static kp_sink_rc sink_deliver(void *ctx, kp_outmsg *out, int n)
{
    worker *w = ctx;
    return kp_producer_deliver(w->producer, out, n, w->cfg, &kp_worker_stop_hard, tick, w)
               ? KP_SINK_FAIL
               : KP_SINK_OK;
}

static void sink_store(void *ctx, const kp_serve_offset *o, int n)
{
    worker *w = ctx;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, o[i].topic, o[i].partition)->offset = o[i].offset;
    kp_group_store(w->group, l);
    rd_kafka_topic_partition_list_destroy(l);
}

/* [schemas] registry: fetches the writer schemas of the batch the codec does not know yet. While
 * the registry cannot answer, consumption is paused and the batch waits (ticking), so an id that
 * is merely unreachable is never dead-lettered as unknown. 0, or -1 on a hard stop. */
static int resolve_schemas(worker *w)
{
    char err[512];
    int paused = 0, backoff = w->cfg->retry_backoff_ms;
    for (;;) {
        int retry = 0;
        for (int i = 0; i < w->n && !retry; i++) {
            kp_sreg_rc r = kp_sreg_resolve(w->sreg, w->codec, w->msgs[i]->payload, w->msgs[i]->len,
                                           err, sizeof err);
            if (r == KP_SREG_RETRY) retry = 1;
            if (r == KP_SREG_REFUSED) kp_warn("%s", err); /* the decoder dead-letters it */
        }
        if (!retry) break;
        if (!paused && !kp_group_paused(w->group)) {
            kp_warn("%s: pausing consumption, retrying in %d ms", err, backoff);
            kp_group_pause(w->group, 1);
            paused = 1;
        }
        kp_backoff_sleep(backoff, &kp_worker_stop_hard, tick, w);
        backoff = kp_backoff_next(w->cfg, backoff);
        if (kp_worker_stop_hard) return -1;
    }
    if (paused) {
        kp_info("schema registry is back: resuming consumption");
        kp_group_pause(w->group, 0);
    }
    return 0;
}

/* Runs the batch in w->msgs to its end. 0 when every event is done and its offset stored, -1 on
 * a hard stop or a batch that cannot be done (nothing of it is stored). */
static int run_batch(worker *w)
{
    char err[512];
    for (int i = 0; i < w->n; i++) {
        const rd_kafka_message_t *m = w->msgs[i];
        w->events[i] = (kp_serve_event){rd_kafka_topic_name(m->rkt),
                                        m->partition,
                                        m->offset,
                                        m->key,
                                        m->key_len,
                                        m->payload,
                                        m->len};
    }
    kp_batch_rc r = KP_BATCH_FAILED;
    if (w->sreg && resolve_schemas(w)) return -1;
    if (kp_serve_batch_begin(w->batch, w->rec, w->events, w->n, err, sizeof err))
        kp_error("%s", err);
    else
        while ((r = kp_serve_batch_step(w->batch)) == KP_BATCH_AGAIN && !kp_worker_stop_hard)
            ;
    kp_serve_batch_end(w->batch);
    return r == KP_BATCH_DONE ? 0 : -1;
}

/* ---- the loop ---- */

/* Between two micro-batches: serve the follower's newest model and index, if there is one. */
static void swap_model(worker *w)
{
    kp_recommender *r = kp_follower_take(w->follower);
    if (!r) return;
    kp_info("serving model version %" PRIu64 " (was %" PRIu64 ")", kp_rec_version(r),
            kp_rec_version(w->rec));
    kp_rec_free(w->rec);
    w->rec = r;
    atomic_store(&kp_m.model_version, kp_rec_version(r));
    atomic_store(&kp_m.keyphrases, kp_rec_size(r));
    atomic_fetch_add(&kp_m.model_swaps, 1);
}

/* Per-partition and summed lag of the assignment (consumer/group.h). */
static void update_lag(worker *w)
{
    kp_group_report_lag(w->group);
}

/* Fills w->msgs: first what was held back while waiting, then the consumer, up to batch_size
 * events or batch_linger_ms after the first. */
static void fill_batch(worker *w)
{
    const kp_config *c = w->cfg;
    int taken = 0;
    while (taken < w->n_held && w->n < c->batch_size)
        w->msgs[w->n++] = w->held[taken++];
    memmove(w->held, w->held + taken, sizeof *w->held * (size_t)(w->n_held - taken));
    w->n_held -= taken;
    uint64_t deadline = 0;
    while (w->n < c->batch_size && !kp_worker_stop) {
        int timeout = 100, was_error;
        if (w->n) {
            uint64_t now = kp_mono_us();
            if (!deadline) deadline = now + (uint64_t)c->batch_linger_ms * 1000u;
            if (now >= deadline) break;
            timeout = (int)((deadline - now) / 1000u);
        }
        rd_kafka_message_t *m = kp_group_poll(w->group, timeout, &was_error);
        if (m)
            w->msgs[w->n++] = m;
        else if (!was_error)
            break; /* linger over, or idle: housekeeping (model swap) first */
    }
}

static void drop_batch(worker *w)
{
    for (int i = 0; i < w->n; i++)
        rd_kafka_message_destroy(w->msgs[i]);
    w->n = 0;
}

/* Consumes until kp_worker_stop. Returns 0, or 1 when a batch could not be done. */
static int serve_loop(worker *w)
{
    while (!kp_worker_stop) {
        fill_batch(w);
        if (w->follower) swap_model(w);
        if (!w->n) continue;
        int r = run_batch(w);
        drop_batch(w);
        if (r) /* a hard stop, or a batch that could not be done (out of memory) */
            return kp_worker_stop_hard ? 0 : 1;
        update_lag(w);
    }
    return 0;
}

/* ---- set-up and teardown ---- */

/* The model to serve: [model] path or the newest checkpoint, caught up with the model topic when
 * [model] follow is on. 0, or an exit code. */
static int load_model(worker *w)
{
    const kp_config *c = w->cfg;
    char err[1024];
    uint64_t t0 = kp_mono_us();
    kp_blas_set_threads(c->model_blas_threads);
    kp_bienc *model = kp_follower_initial_model(c, err, sizeof err);
    if (!model || !(w->rec = kp_follower_build(c, model, err, sizeof err))) {
        kp_error("%s", err);
        kp_bienc_free(model);
        return 2;
    }
    if (c->model_follow) {
        /* Every replica scores with the same model: catch up with the trainer's deltas first. */
        if (!(w->follower = kp_follower_start(c, model, 1, err, sizeof err))) {
            kp_error("%s", err);
            return 1;
        }
        if (!kp_follower_wait_caught_up(w->follower, 60000, &kp_worker_stop))
            kp_warn("follower: not caught up with %s after 60 s; serving version %" PRIu64,
                    c->topic_model, kp_rec_version(w->rec));
        swap_model(w);
    } else {
        kp_bienc_free(model);
    }
    atomic_store(&kp_m.model_version, kp_rec_version(w->rec));
    atomic_store(&kp_m.keyphrases, kp_rec_size(w->rec));
    kp_info("model version %" PRIu64 ": %d keyphrases indexed in %.2f s", kp_rec_version(w->rec),
            kp_rec_size(w->rec), (double)(kp_mono_us() - t0) / 1e6);
    return 0;
}

/* Codec, Redis, producer, consumer group, batch runner, /metrics. 0, or an exit code. */
static int open_io(worker *w)
{
    const kp_config *c = w->cfg;
    char err[1024];
    const kp_serve_sinks sinks = {w, sink_cache_put, sink_deliver, sink_store};
    const kp_group_opts go = {"worker", "kprec-serve", 1, {c->topic_items}, 1, 1};
    if (!(w->codec = kp_codec_new(err, sizeof err)) ||
        (c->schemas_dir[0] && kp_codec_load_dir(w->codec, c->schemas_dir, err, sizeof err))) {
        kp_error("schemas: %s", err);
        return 2;
    }
    if (kp_sreg_open(c, &w->sreg, err, sizeof err) ||
        (w->sreg &&
         kp_sreg_use_writer(w->sreg, w->codec, c->topic_suggestions,
                            KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS, c->schemas_registry_startup_wait_ms,
                            &kp_worker_stop, NULL, err, sizeof err) != KP_SREG_OK)) {
        kp_error("schemas: %s", err);
        return 2;
    }
    w->msgs = calloc((size_t)c->batch_size, sizeof *w->msgs);
    w->events = calloc((size_t)c->batch_size, sizeof *w->events);
    if (!w->msgs || !w->events || !(w->cache = kp_cache_new(c)) ||
        !(w->batch = kp_serve_batch_new(c, w->codec, &sinks))) {
        kp_error("worker: out of memory");
        return 1;
    }
    w->backoff_ms = c->retry_backoff_ms;
    if (kp_cache_connect(w->cache, err, sizeof err))
        kp_warn("%s (will retry when the first batch is written)", err);
    if (!(w->producer = kp_producer_new(c, err, sizeof err)) ||
        !(w->group = kp_group_new(c, &go, err, sizeof err))) {
        kp_error("%s", err);
        return 2;
    }
    if (kp_telemetry_http_start(c->metrics_bind, c->metrics_port)) return 2;
    return 0;
}

/* Frees everything; a producer that could not deliver everything turns rc 0 into 1. */
static int close_all(worker *w, int rc)
{
    drop_batch(w);
    for (int i = 0; i < w->n_held; i++)
        rd_kafka_message_destroy(w->held[i]);
    kp_group_free(w->group); /* commits stored offsets */
    if (kp_producer_free(w->producer, 10000) && rc == 0) rc = 1;
    kp_telemetry_http_stop();
    kp_bienc_free(kp_follower_stop(w->follower));
    kp_serve_batch_free(w->batch);
    kp_cache_free(w->cache);
    kp_codec_free(w->codec);
    kp_sreg_free(w->sreg);
    kp_rec_free(w->rec);
    kp_assets_shutdown();
    free(w->held);
    free(w->msgs);
    free(w->events);
    return rc;
}

int kp_serve_run(const kp_config *c)
{
    worker w = {.cfg = c};
    int rc = load_model(&w);
    if (!rc) rc = open_io(&w);
    if (!rc) {
        kp_info("worker: consuming %s (batch %d / %d ms, top %d)", c->topic_items, c->batch_size,
                c->batch_linger_ms, c->top_k);
        rc = serve_loop(&w);
        kp_info("worker: stopping");
    }
    return close_all(&w, rc);
}

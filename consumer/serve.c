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
#include "consumer/arms.h"
#include "consumer/assets.h"
#include "consumer/follow.h"
#include "consumer/inventory.h"
#include "consumer/serve_batch.h"
#include "consumer/serve_writer.h"
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
    kp_inventory *inv;     /* [topics] inventory reader, or NULL (the file) */
    kp_serve_batch *batch; /* also holds the messages polled while waiting (bounded) */
    kp_arms *arms;         /* A/B split and shadow (consumer/arms.h); NULL = none */
    int backoff_ms;        /* the next retry's, while a sink is down (sequential path) */
    /* [worker] overlap: the sink stages of the previous batch run on this writer thread while
     * the next one is filled and scored; NULL = one batch at a time */
    kp_serve_writer *writer;
    /* the micro-batch being filled, and its events as the batch runner sees them */
    rd_kafka_message_t **msgs;
    kp_serve_event *events;
    int n;
    /* overlap: the batch the writer has (its messages are destroyed once it lands) */
    rd_kafka_message_t **fmsgs;
    kp_serve_event *fevents;
    int fn;
    int failed; /* overlap: a batch landed FAILED (e.g. in the rebalance callback) */
    /* overlap: w->msgs is scored and waits for the batch in flight to land; gone[i]: msgs[i]'s
     * partition was revoked meanwhile (the batch is scored again without it) */
    int scored, rescore;
    unsigned char *gone;
} worker;

/* ---- waiting ---- */

static int drop_if_revoked(void *ctx, void *msg)
{
    worker *w = ctx;
    if (!kp_group_was_revoked(w->group, msg)) return 0;
    rd_kafka_message_destroy(msg);
    return 1;
}

/* After a rebalance: drops the held messages (and, filling, those of the batch being filled) of
 * the partitions revoked since they were polled. Their offsets could not be stored any more, so
 * doing them would only duplicate the work of their next owner. */
static void drop_revoked(worker *w, int filling)
{
    if (!kp_group_revoked_any(w->group)) return;
    int dropped = kp_serve_batch_drop_held(w->batch, drop_if_revoked, w), kept = 0;
    for (int i = 0; filling && i < w->n; i++)
        if (!drop_if_revoked(w, w->msgs[i]))
            w->msgs[kept++] = w->msgs[i];
        else
            dropped++;
    if (filling) w->n = kept;
    if (dropped)
        kp_info("worker: %d polled message(s) of revoked partitions dropped (consumed again by "
                "their next owner)",
                dropped);
    kp_group_forget_revoked(w->group);
}

/* Overlap, while the scored batch waits: marks its messages whose partitions were revoked (before
 * drop_revoked forgets which went), for run_batch_overlap to score the batch again without them.
 * Written, they would be done twice: their offsets can no longer be stored here, so their next
 * owner does them again. */
static void mark_scored_revoked(worker *w)
{
    if (!w->scored || !kp_group_revoked_any(w->group)) return;
    for (int i = 0; i < w->n; i++)
        if (!w->gone[i] && kp_group_was_revoked(w->group, w->msgs[i]))
            w->gone[i] = 1, w->rescore = 1;
}

/* Keeps the group membership alive while we wait: polls the consumer (paused while a sink is
 * down); anything it hands out is held for the next batch, never dropped. */
static void tick(void *opaque)
{
    worker *w = opaque;
    rd_kafka_message_t *m = kp_group_poll(w->group, 0, NULL);
    mark_scored_revoked(w);
    drop_revoked(w, 0); /* m itself came after the rebalance */
    if (!m || !kp_serve_batch_hold(w->batch, m)) return;
    /* The hold is full (and consumption now paused): give m back. Its offset is not stored; the
     * seek makes this instance consume it again once it resumes (the seek also drops what was
     * fetched after it). */
    rd_kafka_resp_err_t e = rd_kafka_seek(m->rkt, m->partition, m->offset, 1000);
    if (e && e != RD_KAFKA_RESP_ERR__STATE && e != RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
        /* it would be skipped: stop before a later offset of its partition is stored */
        kp_error("worker: cannot seek %s[%" PRId32 "] back to %" PRId64 ": %s; stopping",
                 rd_kafka_topic_name(m->rkt), m->partition, m->offset, rd_kafka_err2str(e));
        atomic_store(&kp_worker_stop, 1);
    }
    rd_kafka_message_destroy(m);
}

/* ---- the sinks of a batch: Redis, Kafka, the offset store, pausing ---- */

/* Redis: a failure answers RETRY (the batch pauses consumption; run_batch backs off). */
static kp_sink_rc sink_cache_put(void *ctx, const kp_cache_entry *e, int n)
{
    worker *w = ctx;
    char err[512];
    int stale = 0;
    if (!kp_cache_put(w->cache, e, n, &stale, err, sizeof err)) {
        kp_telemetry_cache_result(NULL);
        atomic_fetch_add(&kp_m.redis_writes, (unsigned long long)(n - stale));
        atomic_fetch_add(&kp_m.stale_skipped, (unsigned long long)stale);
        return KP_SINK_OK;
    }
    kp_telemetry_cache_result(err);
    atomic_fetch_add(&kp_m.redis_errors, 1);
    int quiet = 0,
        backoff = w->writer ? kp_serve_writer_backoff_ms(w->writer, &quiet) : w->backoff_ms;
    if (!w->writer) quiet = kp_serve_batch_paused(w->batch);
    if (quiet)
        kp_debug("%s: retrying in %d ms", err, backoff);
    else
        kp_warn("%s: retrying in %d ms", err, backoff);
    return KP_SINK_RETRY;
}

/* Kafka: one round of kp_producer_send. Transient failures answer RETRY; a record refused for good
 * (its topic is gone, it is too large and no dead-letter copy) or a fatal producer error stops the
 * worker: sending again cannot help, and nothing of the batch is stored. With the overlap this
 * runs on the writer thread: it does not tick the consumer (the consumer's thread does). */
static kp_sink_rc sink_deliver(void *ctx, kp_outmsg *out, int n)
{
    worker *w = ctx;
    kp_tick_fn t = w->writer ? NULL : tick;
    switch (kp_producer_send(w->producer, out, n, w->cfg, &kp_worker_stop_hard, t, w)) {
    case KP_SEND_DONE:
        return KP_SINK_OK;
    case KP_SEND_RETRY:
        kp_warn("producer: deliveries failed; retrying in %d ms",
                w->writer ? kp_serve_writer_backoff_ms(w->writer, NULL) : w->backoff_ms);
        return KP_SINK_RETRY;
    case KP_SEND_ABORTED:
        return KP_SINK_FAIL;
    case KP_SEND_REJECTED:
    case KP_SEND_FATAL:
        break;
    }
    kp_error("worker: the producer cannot deliver this batch (a permanent error, above): stopping; "
             "its events are not committed");
    return KP_SINK_FAIL;
}

/* Stores the batch's offsets and commits them at once (asynchronously), so that a crash replays
 * at most the batches in flight rather than auto.commit.interval.ms of work. */
static void sink_store(void *ctx, const kp_serve_offset *o, int n)
{
    worker *w = ctx;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, o[i].topic, o[i].partition)->offset = o[i].offset;
    kp_group_store(w->group, l);
    kp_group_commit(w->group);
    rd_kafka_topic_partition_list_destroy(l);
}

static void sink_pause(void *ctx, int on, const char *why)
{
    worker *w = ctx;
    if (on)
        kp_warn("worker: pausing consumption (%s)", why);
    else
        kp_info("sinks are back: resuming consumption");
    if (kp_group_pause(w->group, on) && on)
        kp_warn("worker: consumption not paused everywhere: the hold of polled messages is bounded "
                "all the same");
}

/* Lifecycle hook (consumer/arms.h): the shadow model scores the batch the live path finished. */
static void shadow_batch(worker *w, rd_kafka_message_t **msgs, int n)
{
    if (kp_arms_shadow(w->arms, msgs, n) < 0) kp_warn("shadow: batch not scored (out of memory)");
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

/* The batch's events: w->events[i] views w->msgs[i] (no copy). */
static void fill_events(worker *w)
{
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
}

/* Runs the batch in w->msgs to its end. 0 when every event is done and its offset stored, -1 on
 * a hard stop or a batch that cannot be done (nothing of it is stored). */
static int run_batch(worker *w)
{
    char err[512];
    fill_events(w);
    kp_batch_rc r = KP_BATCH_FAILED;
    if (w->sreg && resolve_schemas(w)) return -1;
    if (kp_serve_batch_begin(w->batch, w->rec, w->events, w->n, err, sizeof err))
        kp_error("%s", err);
    else
        while ((r = kp_serve_batch_step(w->batch)) == KP_BATCH_AGAIN &&
               !atomic_load(&kp_worker_stop_hard)) { /* a sink is down: back off, ticking */
            kp_backoff_sleep(w->backoff_ms, &kp_worker_stop_hard, tick, w);
            w->backoff_ms = kp_backoff_next(w->cfg, w->backoff_ms);
        }
    if (r == KP_BATCH_DONE) w->backoff_ms = w->cfg->retry_backoff_ms;
    kp_serve_batch_end(w->batch);
    if (r == KP_BATCH_DONE && w->arms) shadow_batch(w, w->msgs, w->n);
    return r == KP_BATCH_DONE ? 0 : -1;
}

/* ---- the overlap: batch N's sinks on the writer thread while batch N+1 is scored ---- */

/* The batch in flight landed (r: DONE, its offsets stored; FAILED: nothing stored): its messages
 * go. 0, or -1 when it failed. */
static int landed(worker *w, kp_batch_rc r)
{
    if (r == KP_BATCH_DONE && w->arms) shadow_batch(w, w->fmsgs, w->fn);
    for (int i = 0; i < w->fn; i++)
        rd_kafka_message_destroy(w->fmsgs[i]);
    w->fn = 0;
    if (r == KP_BATCH_DONE) return 0;
    w->failed = 1;
    return -1;
}

/* Waits until the batch in flight lands, ticking the consumer (its messages are held; consumption
 * is paused while the writer reports a failing sink). 0 when it was acknowledged and its offsets
 * stored (or nothing was in flight), -1 when it failed (a hard stop, or a sink gave up). */
static int wait_flight(worker *w)
{
    kp_batch_rc r;
    for (;;) {
        int l = kp_serve_writer_land(w->writer, w->batch, 10, &r);
        if (l > 0) return landed(w, r);
        if (l < 0) return w->failed ? -1 : 0; /* none (or landed by the rebalance callback) */
        tick(w);
    }
}

/* Before partitions are given up (the rebalance callback, consumer/group.h): the batch in flight
 * lands first, so that its offsets are in the commit that precedes the revoke. Bounded: a sink that
 * stays down does not hold the group's rebalance; its offsets are then stored later, for the
 * partitions still assigned (the revoked ones' next owner does those events again). */
#define REVOKE_DRAIN_MS 10000

static void drain_on_revoke(void *ctx)
{
    worker *w = ctx;
    kp_batch_rc r;
    if (!w->writer || !kp_serve_batch_in_flight(w->batch)) return;
    int l = kp_serve_writer_land(w->writer, w->batch, REVOKE_DRAIN_MS, &r);
    if (l > 0)
        landed(w, r);
    else if (l == 0)
        kp_warn("worker: rebalance: the batch in flight is not acknowledged after %d ms (a sink is "
                "down): giving partitions up without its offsets",
                REVOKE_DRAIN_MS);
}

/* The overlapped run_batch: scores the batch in w->msgs while the previous one is in flight, waits
 * for that one to land (its offsets stored, in order), then hands this one to the writer. 0, or -1
 * on a hard stop or a batch that cannot be done. */
static int run_batch_overlap(worker *w)
{
    char err[512];
    for (;;) {
        fill_events(w);
        if (w->sreg && resolve_schemas(w)) return -1;
        if (kp_serve_batch_begin(w->batch, w->rec, w->events, w->n, err, sizeof err)) {
            kp_error("%s", err);
            kp_serve_batch_end(w->batch);
            return -1;
        }
        memset(w->gone, 0, (size_t)w->n);
        w->scored = 1, w->rescore = 0;
        int wf = wait_flight(w);
        w->scored = 0;
        if (wf) {
            kp_serve_batch_end(w->batch);
            return -1;
        }
        if (!w->rescore) break;
        /* a rebalance took some of its partitions while it waited: score the rest again */
        kp_serve_batch_end(w->batch);
        int kept = 0, dropped = 0;
        for (int i = 0; i < w->n; i++)
            if (w->gone[i])
                rd_kafka_message_destroy(w->msgs[i]), dropped++;
            else
                w->msgs[kept++] = w->msgs[i];
        w->n = kept;
        kp_info("worker: %d scored message(s) of revoked partitions dropped before writing "
                "(consumed again by their next owner); %d scored again",
                dropped, kept);
        if (!w->n) return 0;
    }
    kp_serve_slot *s = kp_serve_batch_detach(w->batch);
    /* the batch's messages and events go with it: swap the two sets */
    rd_kafka_message_t **m = w->fmsgs;
    kp_serve_event *e = w->fevents;
    w->fmsgs = w->msgs, w->fevents = w->events, w->fn = w->n;
    w->msgs = m, w->events = e, w->n = 0;
    if (!s || kp_serve_writer_submit(w->writer, s)) { /* cannot happen: one in flight at most */
        kp_error("worker: the writer thread is busy: stopping");
        if (s) kp_serve_batch_land(w->batch, KP_BATCH_FAILED);
        landed(w, KP_BATCH_FAILED);
        return -1;
    }
    return 0;
}

/* ---- the loop ---- */

/* Between two micro-batches: the inventory topic's changes (a bounded chunk per call). */
static void apply_inventory(worker *w)
{
    char err[512];
    int64_t t0 = kp_now_ms();
    int n = kp_inventory_apply(w->cfg, w->rec, 512, err, sizeof err);
    if (n < 0)
        kp_warn("%s", err);
    else if (n > 0)
        kp_info("inventory: %d keyphrases added, changed or removed in %" PRId64 " ms: %d indexed",
                n, kp_now_ms() - t0, kp_rec_size(w->rec));
}

/* Between two micro-batches: serve the follower's newest model and index, if there is one. */
static void swap_model(worker *w)
{
    if (w->inv) apply_inventory(w);
    kp_recommender *r = w->follower ? kp_follower_take(w->follower) : NULL;
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
    void *held;
    while (w->n < c->batch_size && kp_serve_batch_take_held(w->batch, &held, 1))
        w->msgs[w->n++] = held;
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
        drop_revoked(w, 1);
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

/* Consumes until kp_worker_stop (with the overlap, the last batch in flight lands before this
 * returns). Returns 0, or 1 when a batch could not be done. */
static int serve_loop(worker *w)
{
    int rc = 0;
    while (!kp_worker_stop && !rc) {
        kp_telemetry_tick(KP_LOOP_SERVE);
        fill_batch(w);
        if (w->follower || w->inv) swap_model(w);
        if (!w->n) { /* idle: what is in flight lands now */
            if (w->writer && wait_flight(w)) rc = 1;
            continue;
        }
        int r = w->writer ? run_batch_overlap(w) : run_batch(w);
        drop_batch(w);
        if (r) /* a hard stop, or a batch that could not be done (out of memory) */
            rc = 1;
        else
            update_lag(w);
    }
    if (!rc && w->writer && wait_flight(w)) rc = 1;
    return rc && !kp_worker_stop_hard ? 1 : 0;
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
    kp_par_set_threads(c->model_threads);
    if (c->topic_inventory[0]) { /* the inventory topic: read it to its end before building */
        if (!(w->inv = kp_inventory_start(c, err, sizeof err))) {
            kp_error("%s", err);
            return 1;
        }
        if (!kp_inventory_wait_end(w->inv, 60000, &kp_worker_stop))
            kp_warn("inventory: %s not read to its end after 60 s; serving %d keyphrases",
                    c->topic_inventory, kp_inventory_size(w->inv));
    }
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
    if (!(w->arms = kp_arms_new(c, err, sizeof err)) && err[0]) {
        kp_error("%s", err);
        return 2;
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
    const kp_serve_sinks sinks = {w, sink_cache_put, sink_deliver, sink_store, sink_pause};
    const kp_group_opts go = {"worker", "kprec-serve", 1, {c->topic_items}, 1, 1};
    if (!(w->codec = kp_codec_new(err, sizeof err)) ||
        (c->schemas_dir[0] && kp_codec_load_dir(w->codec, c->schemas_dir, err, sizeof err))) {
        kp_error("schemas: %s", err);
        return 2;
    }
    if (kp_sreg_open(c, &w->sreg, err, sizeof err) ||
        (w->sreg && (kp_sreg_use_writer(w->sreg, w->codec, c->topic_suggestions,
                                        KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS,
                                        c->schemas_registry_startup_wait_ms, &kp_worker_stop, NULL,
                                        err, sizeof err) != KP_SREG_OK ||
                     /* with A/B arms or a shadow, records of the v1 writer (+ arm) too */
                     ((c->model_ab_candidate[0] || c->model_shadow[0]) &&
                      kp_sreg_use_writer(w->sreg, w->codec, c->topic_suggestions,
                                         KP_SCHEMA_ID_KEYPHRASE_SUGGESTIONS_V1,
                                         c->schemas_registry_startup_wait_ms, &kp_worker_stop, NULL,
                                         err, sizeof err) != KP_SREG_OK)))) {
        kp_error("schemas: %s", err);
        return 2;
    }
    w->msgs = calloc((size_t)c->batch_size, sizeof *w->msgs);
    w->events = calloc((size_t)c->batch_size, sizeof *w->events);
    w->fmsgs = calloc((size_t)c->batch_size, sizeof *w->fmsgs);
    w->fevents = calloc((size_t)c->batch_size, sizeof *w->fevents);
    w->gone = calloc((size_t)c->batch_size, 1);
    if (!w->msgs || !w->events || !w->fmsgs || !w->fevents || !w->gone ||
        !(w->cache = kp_cache_new(c)) || !(w->batch = kp_serve_batch_new(c, w->codec, &sinks))) {
        kp_error("worker: out of memory");
        return 1;
    }
    kp_serve_batch_set_arms(w->batch, w->arms);
    w->backoff_ms = c->retry_backoff_ms;
    if (kp_cache_connect(w->cache, err, sizeof err))
        kp_warn("%s (will retry when the first batch is written)", err);
    if (!(w->producer = kp_producer_new(c, err, sizeof err)) ||
        !(w->group = kp_group_new(c, &go, err, sizeof err))) {
        kp_error("%s", err);
        return 2;
    }
    /* a missing output topic is fatal now, not a batch retried forever later */
    const char *out[] = {c->topic_suggestions, c->topic_dlq};
    int t = kp_producer_check_topics(w->producer, out, 2, 10000, err, sizeof err);
    if (t < 0) {
        kp_error("worker: %s", err);
        return 2;
    }
    if (t > 0) kp_warn("worker: cannot check the output topics yet (%s)", err);
    if (kp_telemetry_http_start(c->metrics_bind, c->metrics_port)) return 2;
    /* from here on Redis and the producer are the writer's (hiredis is not thread-safe; this
     * thread touches neither until the writer is stopped) */
    if (c->overlap && !(w->writer = kp_serve_writer_new(c, &kp_worker_stop_hard))) return 1;
    kp_group_on_revoke(w->group, w->writer ? drain_on_revoke : NULL, w);
    return 0;
}

/* Frees everything; a producer that could not deliver everything turns rc 0 into 1. */
static int close_all(worker *w, int rc)
{
    kp_serve_writer_free(w->writer); /* (a batch still in flight is given up: stored nothing) */
    w->writer = NULL;
    if (w->batch && kp_serve_batch_in_flight(w->batch))
        landed(w, kp_serve_batch_land(w->batch, KP_BATCH_FAILED));
    drop_batch(w);
    void *m;
    while (w->batch && kp_serve_batch_take_held(w->batch, &m, 1))
        rd_kafka_message_destroy(m);
    kp_group_free(w->group); /* commits stored offsets */
    /* a second signal cuts the flush short */
    if (kp_producer_close(w->producer, 10000, &kp_worker_stop_hard) && rc == 0) rc = 1;
    kp_telemetry_http_stop();
    kp_bienc_free(kp_follower_stop(w->follower));
    kp_serve_batch_free(w->batch);
    kp_arms_free(w->arms);
    kp_cache_free(w->cache);
    kp_codec_free(w->codec);
    kp_sreg_free(w->sreg);
    kp_rec_free(w->rec);
    kp_inventory_stop(w->inv);
    kp_assets_shutdown();
    free(w->msgs);
    free(w->events);
    free(w->fmsgs);
    free(w->fevents);
    free(w->gone);
    return rc;
}

int kp_serve_run(const kp_config *c)
{
    worker w = {.cfg = c};
    int rc = load_model(&w);
    if (!rc) rc = open_io(&w);
    if (!rc) {
        kp_info("worker: consuming %s (batch %d / %d ms, top %d%s)", c->topic_items, c->batch_size,
                c->batch_linger_ms, c->top_k,
                c->overlap ? ", overlapped with the writer thread" : "");
        rc = serve_loop(&w);
        kp_info("worker: stopping");
    }
    return close_all(&w, rc);
}

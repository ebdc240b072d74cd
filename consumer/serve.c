#include "consumer/serve.h"

#include <inttypes.h>
#include <math.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "common/log.h"
#include "common/telemetry.h"
#include "model/blas.h"
#include "consumer/follow.h"
#include "model/recommender.h"
#include "producer/producer.h"
#include "schemas/codec.h"

volatile sig_atomic_t kp_worker_stop;
volatile sig_atomic_t kp_worker_stop_hard;

typedef struct {
    const kp_config *cfg;
    rd_kafka_t *consumer;
    kp_producer *producer;
    kp_cache *cache;
    kp_codec *codec;
    kp_recommender *rec;
    kp_follower *follower;
    int paused;
    /* messages polled while waiting (backoff, deliveries): they open the next batch */
    rd_kafka_message_t **held;
    int n_held, cap_held;
} worker;

/* One event of a batch and what became of it. */
typedef struct {
    rd_kafka_message_t *msg;
    kp_item_listed item;
    int valid;
    char reason[256];
} event;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- consumer group: rebalances for both protocols ---- */

static void set_paused(worker *w, int pause)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(w->consumer, &a) || !a) return;
    if (pause)
        rd_kafka_pause_partitions(w->consumer, a);
    else
        rd_kafka_resume_partitions(w->consumer, a);
    rd_kafka_topic_partition_list_destroy(a);
    w->paused = pause;
    atomic_store(&kp_m.paused, pause);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    worker *w = opaque;
    const char *proto = rd_kafka_rebalance_protocol(rk);
    int cooperative = proto && !strcmp(proto, "COOPERATIVE");
    atomic_fetch_add(&kp_m.rebalances, 1);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        kp_info("rebalance (%s): assigned %d partition(s)", cooperative ? "cooperative" : "eager",
                parts->cnt);
        rd_kafka_error_t *e = NULL;
        if (cooperative)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        if (e) {
            kp_error("incremental assign: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        if (w->paused) rd_kafka_pause_partitions(rk, parts);
        return;
    }
    /* Revoked (or lost): commit what is done before the partitions go. Offsets are stored only
     * after their work completed, so this commits exactly the finished events. */
    kp_info("rebalance (%s): revoking %d partition(s)%s", cooperative ? "cooperative" : "eager",
            parts->cnt, rd_kafka_assignment_lost(rk) ? " (lost)" : "");
    if (!rd_kafka_assignment_lost(rk)) {
        rd_kafka_resp_err_t ce = rd_kafka_commit(rk, NULL, 0);
        if (ce && ce != RD_KAFKA_RESP_ERR__NO_OFFSET)
            kp_warn("commit before revoke: %s", rd_kafka_err2str(ce));
    }
    if (cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e) {
            kp_error("incremental unassign: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

/* Keeps the group membership alive while we wait: polls the (paused) consumer; anything it hands
 * out is held for the next batch, never dropped. */
static void tick(void *opaque)
{
    worker *w = opaque;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 0);
    if (!m) return;
    if (m->err) { /* errors and EOFs are no events: never hold them */
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            kp_warn("consumer: %s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return;
    }
    if (w->n_held == w->cap_held) {
        int nc = w->cap_held ? w->cap_held * 2 : 64;
        rd_kafka_message_t **nh = realloc(w->held, sizeof *nh * (size_t)nc);
        if (!nh) {
            /* Cannot hold it: do not store its offset; it will be consumed again after a
             * restart or rebalance. Seek back so this instance sees it again too. */
            rd_kafka_seek(m->rkt, m->partition, m->offset, 1000);
            rd_kafka_message_destroy(m);
            return;
        }
        w->held = nh;
        w->cap_held = nc;
    }
    w->held[w->n_held++] = m;
}

/* ---- the batch ---- */

static int build_json(const kp_recommender *rec, const int *ids, const float *scores, int cnt,
                      char **out)
{
    json_t *arr = json_array();
    if (!arr) return -1;
    for (int j = 0; j < cnt; j++) {
        if (!isfinite(scores[j])) continue;
        json_t *o = json_pack("{s:s, s:s, s:f}", "keyphrase", kp_rec_keyphrase(rec, ids[j]), "id",
                              kp_rec_keyphrase_id(rec, ids[j]), "score", (double)(float)scores[j]);
        if (!o) { /* not valid UTF-8 in the inventory: leave that keyphrase out of the cache */
            kp_warn("keyphrase %s is not valid UTF-8: left out", kp_rec_keyphrase_id(rec, ids[j]));
            continue;
        }
        if (json_array_append_new(arr, o)) {
            json_decref(arr);
            return -1;
        }
    }
    *out = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return *out ? 0 : -1;
}

/* Stores, for each partition of the batch, the offset after its last event. */
static void store_offsets(worker *w, event *ev, int n)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int i = 0; i < n; i++) {
        rd_kafka_message_t *m = ev[i].msg;
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(l, rd_kafka_topic_name(m->rkt), m->partition);
        if (!p) p = rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt), m->partition);
        if (m->offset + 1 > p->offset) p->offset = m->offset + 1;
    }
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(w->consumer, l);
    /* Partitions revoked meanwhile report an error: their events were done all the same, and the
     * new owner re-does them (idempotent writes). */
    if (e && e != RD_KAFKA_RESP_ERR__STATE && e != RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
        kp_warn("offsets store: %s", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

/* Writes the batch's Redis entries, retrying with backoff (partitions paused) until acknowledged.
 * Returns 0, or -1 if a hard stop came first. */
static int cache_with_retry(worker *w, kp_cache_entry *ce, int n)
{
    int backoff = w->cfg->retry_backoff_ms;
    char err[512];
    for (;;) {
        int stale = 0;
        if (!kp_cache_put(w->cache, ce, n, &stale, err, sizeof err)) {
            atomic_fetch_add(&kp_m.redis_writes, (unsigned long long)(n - stale));
            atomic_fetch_add(&kp_m.stale_skipped, (unsigned long long)stale);
            if (w->paused) {
                kp_info("redis is back: resuming consumption");
                set_paused(w, 0);
            }
            return 0;
        }
        atomic_fetch_add(&kp_m.redis_errors, 1);
        if (!w->paused) {
            kp_warn("%s: pausing consumption, retrying in %d ms", err, backoff);
            set_paused(w, 1);
        } else {
            kp_debug("%s: retrying in %d ms", err, backoff);
        }
        kp_backoff_sleep(backoff, &kp_worker_stop_hard, tick, w);
        if (kp_worker_stop_hard) return -1;
        backoff =
            backoff * 2 > w->cfg->retry_backoff_max_ms ? w->cfg->retry_backoff_max_ms : backoff * 2;
    }
}

/* Handles one micro-batch end to end. Returns 0 when every event is done and its offset stored,
 * -1 on a hard stop (nothing of the unfinished part is stored). */
static int process_batch(worker *w, rd_kafka_message_t **msgs, int n)
{
    const kp_config *c = w->cfg;
    uint64_t t0 = mono_us();
    int k = c->top_k, rc = -1, nvalid = 0, nout = 0;
    event *ev = calloc((size_t)n, sizeof *ev);
    const char **titles = calloc((size_t)n, sizeof *titles);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    int *vidx = calloc((size_t)n, sizeof *vidx);
    int *ids = malloc(sizeof(int) * (size_t)n * (size_t)k);
    float *scores = malloc(sizeof(float) * (size_t)n * (size_t)k);
    int *counts = calloc((size_t)n, sizeof *counts);
    char **json = calloc((size_t)n, sizeof *json);
    kp_cache_entry *ce = calloc((size_t)n, sizeof *ce);
    kp_outmsg *out = calloc((size_t)n, sizeof *out);
    void **bufs = calloc((size_t)n, sizeof *bufs);
    kp_suggestion *sg = malloc(sizeof *sg * (size_t)k);
    if (!ev || !titles || !lens || !vidx || !ids || !scores || !counts || !json || !ce || !out ||
        !bufs || !sg) {
        kp_error("batch of %d: out of memory", n);
        goto done;
    }
    atomic_fetch_add(&kp_m.in_flight, n);

    /* decode + validate */
    for (int i = 0; i < n; i++) {
        rd_kafka_message_t *m = ev[i].msg = msgs[i];
        atomic_fetch_add(&kp_m.consumed[KP_MT_ITEMS], 1);
        if (kp_decode_item_listed(w->codec, m->payload, m->len, &ev[i].item, ev[i].reason,
                                  sizeof ev[i].reason) == 0 &&
            kp_validate_item_listed(&ev[i].item, (size_t)c->max_title_bytes, ev[i].reason,
                                    sizeof ev[i].reason) == 0 &&
            !(m->key_len && (m->key_len != strlen(ev[i].item.item_id) ||
                             memcmp(m->key, ev[i].item.item_id, m->key_len)))) {
            ev[i].valid = 1;
            titles[nvalid] = ev[i].item.title;
            lens[nvalid] = strlen(ev[i].item.title);
            vidx[nvalid++] = i;
        } else if (!ev[i].reason[0]) {
            snprintf(ev[i].reason, sizeof ev[i].reason, "message key does not match item_id");
        }
    }

    /* model: one batched forward + one GEMM + top-K */
    uint64_t t_dec = mono_us();
    if (nvalid && kp_rec_recommend(w->rec, titles, lens, nvalid, k, (float)c->min_score, ids,
                                   scores, counts)) {
        kp_error("batch of %d: recommend failed (out of memory)", n);
        goto done;
    }
    uint64_t t_rec = mono_us();
    uint64_t version = kp_rec_version(w->rec);
    int64_t gen = now_ms();
    for (int v = 0; v < nvalid; v++) {
        event *e = &ev[vidx[v]];
        if (build_json(w->rec, ids + (size_t)v * k, scores + (size_t)v * k, counts[v], &json[v]))
            goto oom;
        ce[v] = (kp_cache_entry){e->item.item_id, e->item.title, json[v], version, gen};
        for (int j = 0; j < counts[v]; j++)
            sg[j] = (kp_suggestion){kp_rec_keyphrase(w->rec, ids[(size_t)v * k + j]),
                                    kp_rec_keyphrase_id(w->rec, ids[(size_t)v * k + j]),
                                    scores[(size_t)v * k + j]};
        size_t len = 0;
        if (kp_encode_suggestions(w->codec, e->item.item_id, (int64_t)version, gen, sg, counts[v],
                                  &bufs[nout], &len))
            goto oom;
        out[nout] = (kp_outmsg){c->topic_suggestions,
                                e->item.item_id,
                                strlen(e->item.item_id),
                                bufs[nout],
                                len,
                                NULL,
                                1,
                                KP_OUT_PENDING};
        nout++;
    }
    for (int i = 0; i < n; i++) {
        if (ev[i].valid) continue;
        rd_kafka_message_t *m = ev[i].msg;
        kp_warn("dead-letter %s[%" PRId32 "]@%" PRId64 ": %s", rd_kafka_topic_name(m->rkt),
                m->partition, m->offset, ev[i].reason);
        rd_kafka_headers_t *h = kp_dlq_headers(m, ev[i].reason);
        if (!h) goto oom;
        out[nout++] =
            (kp_outmsg){c->topic_dlq, m->key, m->key_len, m->payload, m->len, h, 0, KP_OUT_PENDING};
    }

    /* sinks: Redis first (acknowledged), then Kafka (delivery reports) */
    uint64_t t_model = mono_us();
    if (nvalid && cache_with_retry(w, ce, nvalid)) goto done;
    uint64_t t_cache = mono_us();
    if (kp_producer_deliver(w->producer, out, nout, c, &kp_worker_stop_hard, tick, w)) goto done;
    kp_debug("batch of %d: decode %.1f ms, model %.1f ms, encode %.1f ms, redis %.1f ms, "
             "kafka %.1f ms",
             n, (double)(t_dec - t0) / 1e3, (double)(t_rec - t_dec) / 1e3,
             (double)(t_model - t_rec) / 1e3, (double)(t_cache - t_model) / 1e3,
             (double)(mono_us() - t_cache) / 1e3);

    for (int i = 0; i < n; i++) {
        if (ev[i].valid)
            atomic_fetch_add(&kp_m.processed[KP_MT_ITEMS], 1);
        else
            atomic_fetch_add(&kp_m.dead_lettered[KP_MT_ITEMS], 1);
    }
    store_offsets(w, ev, n);
    atomic_fetch_add(&kp_m.batches, 1);
    kp_telemetry_observe_batch(mono_us() - t0);
    rc = 0;
    goto done;
oom:
    kp_error("batch of %d: out of memory", n);
done:
    if (ev) atomic_fetch_sub(&kp_m.in_flight, n);
    for (int i = 0; ev && i < n; i++)
        kp_item_listed_clear(&ev[i].item);
    for (int i = 0; out && i < nout; i++)
        if (out[i].hdrs) rd_kafka_headers_destroy(out[i].hdrs);
    for (int i = 0; bufs && i < n; i++)
        free(bufs[i]);
    for (int i = 0; json && i < n; i++)
        free(json[i]);
    free(ev), free(titles), free(lens), free(vidx), free(ids), free(scores), free(counts);
    free(json), free(ce), free(out), free(bufs), free(sg);
    return rc;
}

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

/* Sum of (high watermark - position) over the assignment, from librdkafka's cached watermarks. */
static void update_lag(worker *w)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(w->consumer, &a) || !a) return;
    rd_kafka_position(w->consumer, a);
    long long lag = 0;
    for (int i = 0; i < a->cnt; i++) {
        int64_t lo, hi;
        if (a->elems[i].offset < 0) continue;
        if (rd_kafka_get_watermark_offsets(w->consumer, a->elems[i].topic, a->elems[i].partition,
                                           &lo, &hi) == 0 &&
            hi >= a->elems[i].offset)
            lag += hi - a->elems[i].offset;
    }
    atomic_store(&kp_m.consumer_lag, lag);
    rd_kafka_topic_partition_list_destroy(a);
}

static rd_kafka_t *consumer_new(const kp_config *c, worker *w, char *err, size_t errlen)
{
    char e[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (kp_kafka_conf_apply(conf, c, err, errlen)) goto err;
    /* At-least-once: offsets are stored by us after the work, committed by librdkafka. */
    if (rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", e, sizeof e) ||
        (!kp_config_kafka(c, "group.id") &&
         rd_kafka_conf_set(conf, "group.id", "kprec-serve", e, sizeof e)) ||
        (!kp_config_kafka(c, "auto.offset.reset") &&
         rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", e, sizeof e))) {
        snprintf(err, errlen, "consumer config: %s", e);
        goto err;
    }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_log_cb(conf, kp_kafka_log_cb);
    rd_kafka_conf_set_opaque(conf, w);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (!rk) {
        snprintf(err, errlen, "consumer: %s", e);
        goto err;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, c->topic_items, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t se = rd_kafka_subscribe(rk, t);
    rd_kafka_topic_partition_list_destroy(t);
    if (se) {
        snprintf(err, errlen, "subscribe %s: %s", c->topic_items, rd_kafka_err2str(se));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
err:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int kp_serve_run(const kp_config *c)
{
    char err[1024];
    int rc = 1, n = 0;
    worker w;
    memset(&w, 0, sizeof w);
    w.cfg = c;
    rd_kafka_message_t **batch = calloc((size_t)c->batch_size, sizeof *batch);
    if (!batch) goto out;

    kp_blas_set_threads(c->model_blas_threads);
    uint64_t t0 = mono_us();
    kp_bienc *model = kp_follower_initial_model(c, err, sizeof err);
    if (!model || !(w.rec = kp_follower_build(c, model, err, sizeof err))) {
        kp_error("%s", err);
        kp_bienc_free(model);
        rc = 2;
        goto out;
    }
    if (c->model_follow) {
        /* Every replica scores with the same model: catch up with the trainer's deltas first. */
        if (!(w.follower = kp_follower_start(c, model, 1, err, sizeof err))) {
            kp_error("%s", err);
            goto out;
        }
        if (!kp_follower_wait_caught_up(w.follower, 60000, &kp_worker_stop))
            kp_warn("follower: not caught up with %s after 60 s; serving version %" PRIu64,
                    c->topic_model, kp_rec_version(w.rec));
        swap_model(&w);
    } else {
        kp_bienc_free(model);
    }
    atomic_store(&kp_m.model_version, kp_rec_version(w.rec));
    atomic_store(&kp_m.keyphrases, kp_rec_size(w.rec));
    kp_info("model version %" PRIu64 ": %d keyphrases indexed in %.2f s", kp_rec_version(w.rec),
            kp_rec_size(w.rec), (double)(mono_us() - t0) / 1e6);
    if (!(w.codec = kp_codec_new(err, sizeof err)) ||
        (c->schemas_dir[0] && kp_codec_load_dir(w.codec, c->schemas_dir, err, sizeof err))) {
        kp_error("schemas: %s", err);
        rc = 2;
        goto out;
    }
    if (!(w.cache = kp_cache_new(c))) goto out;
    if (kp_cache_connect(w.cache, err, sizeof err))
        kp_warn("%s (will retry when the first batch is written)", err);
    if (!(w.producer = kp_producer_new(c, err, sizeof err)) ||
        !(w.consumer = consumer_new(c, &w, err, sizeof err))) {
        kp_error("%s", err);
        rc = 2;
        goto out;
    }
    if (kp_telemetry_http_start(c->metrics_bind, c->metrics_port)) {
        rc = 2;
        goto out;
    }
    kp_info("worker: consuming %s (batch %d / %d ms, top %d)", c->topic_items, c->batch_size,
            c->batch_linger_ms, c->top_k);

    rc = 0;
    while (!kp_worker_stop) {
        /* Fill a micro-batch: first what was held back while waiting, then the consumer. */
        n = 0;
        while (w.n_held && n < c->batch_size) {
            batch[n++] = w.held[0];
            memmove(w.held, w.held + 1, sizeof *w.held * (size_t)--w.n_held);
        }
        uint64_t deadline = 0;
        while (n < c->batch_size && !kp_worker_stop) {
            int timeout = 100;
            if (n) {
                uint64_t now = mono_us();
                if (!deadline) deadline = now + (uint64_t)c->batch_linger_ms * 1000u;
                if (now >= deadline) break;
                timeout = (int)((deadline - now) / 1000u);
            }
            rd_kafka_message_t *m = rd_kafka_consumer_poll(w.consumer, timeout);
            if (!m) break; /* linger over, or idle: housekeeping (model swap) first */
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    kp_warn("consumer: %s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                continue;
            }
            batch[n++] = m;
        }
        if (w.follower) swap_model(&w);
        if (n) {
            int r = process_batch(&w, batch, n);
            for (int i = 0; i < n; i++)
                rd_kafka_message_destroy(batch[i]);
            n = 0;
            if (r) { /* a hard stop, or a batch that could not be done (out of memory) */
                if (!kp_worker_stop_hard) rc = 1;
                break;
            }
            update_lag(&w);
        }
    }
    kp_info("worker: stopping");
out:
    for (int i = 0; i < n; i++)
        rd_kafka_message_destroy(batch[i]);
    for (int i = 0; i < w.n_held; i++)
        rd_kafka_message_destroy(w.held[i]);
    if (w.consumer) {
        rd_kafka_resp_err_t e = rd_kafka_consumer_close(w.consumer); /* commits stored offsets */
        if (e) kp_warn("consumer close: %s", rd_kafka_err2str(e));
        rd_kafka_destroy(w.consumer);
    }
    if (kp_producer_free(w.producer, 10000) && rc == 0) rc = 1;
    kp_telemetry_http_stop();
    kp_bienc_free(kp_follower_stop(w.follower));
    kp_cache_free(w.cache);
    kp_codec_free(w.codec);
    kp_rec_free(w.rec);
    free(w.held);
    free(batch);
    return rc;
}

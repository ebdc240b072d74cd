/* test_serve_batch.c -- the serve role's micro-batch (consumer/serve_batch.h) against fake cache,
 * producer and offset-store sinks: no Kafka, no Redis. What is checked is where at-least-once
 * lives: offsets are stored only after the cache acknowledged and every delivery report came back,
 * a failing sink holds the batch (retried, nothing stored, nothing dropped), bad events go to the
 * dead-letter topic with their reason and their offsets move on, offsets are per partition
 * max + 1; consumption stays paused from a sink's first failure until the whole batch is done, and
 * the messages held while waiting are bounded. The overlap (consumer/serve_writer.h) runs the same
 * fakes on the real writer thread: batch N+1 is scored while batch N waits at a gate in its
 * delivery sink, no offset is stored before its batch's Redis ack and every delivery report of it
 * (checked event by event at each store), batches land in order, a failing sink pauses and stores
 * nothing, and a drain (the rebalance callback's) lands the batch in flight before it returns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "consumer/serve_batch.h"
#include "consumer/serve_writer.h"
#include "model/blas.h"
#include "model/recommender.h"
#include "schemas/codec.h"
#include "th_main.h"

#define MAXREC 256

/* ---- fakes ---- */

typedef struct {
    /* scripted failures */
    int cache_fail;         /* the next cache_fail cache_put calls answer RETRY */
    kp_sink_rc cache_final; /* answered after that (OK unless a test says FAIL) */
    const char *fail_key;   /* records with this key fail delivery ... */
    int fail_key_times;     /* ... this many times */
    /* what happened */
    int cache_calls, cache_acked, cache_entries;
    char *json[MAXREC];
    int deliver_calls, sends, deliver_before_ack;
    int sent_per_key_fail;
    int n_dlq;
    char dlq_reason[MAXREC][256];
    char dlq_payload[MAXREC][64];
    int store_calls, store_before_ack, store_before_delivered;
    int n_stored;
    kp_serve_offset stored[MAXREC];
    char stored_topic[MAXREC][64];
    kp_outmsg *last_out;
    int last_nout;
    int paused, pause_calls, resume_calls, stores_at_resume;
    /* the overlap: cache_put and deliver run on the writer thread, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate;       /* 1: deliver waits at the gate until it is 0 */
    int at_gate;    /* deliver calls waiting there */
    int check_acks; /* 1: each store is checked against acked / delivered below */
    const kp_serve_event *all;
    const int *nall;
    int acked[MAXREC], delivered[MAXREC];
    int store_unacked;   /* stores covering an event not yet acknowledged by Redis and Kafka */
    int store_backwards; /* stores not above the partition's previous one */
    int64_t last_stored[8];
} fake;

/* The fixture's event whose key is key (-1: none). */
static int find_event(const fake *f, const void *key, size_t len)
{
    for (int i = 0; f->all && i < *f->nall; i++)
        if (f->all[i].key_len == len && !memcmp(f->all[i].key, key, len)) return i;
    return -1;
}

static void fake_pause(void *ctx, int on, const char *why)
{
    fake *f = ctx;
    assert_int_not_equal(on, f->paused); /* changes only */
    f->paused = on;
    if (on) {
        assert_non_null(why);
        f->pause_calls++;
    } else {
        f->resume_calls++;
        f->stores_at_resume = f->store_calls;
    }
}

static kp_sink_rc fake_cache_put(void *ctx, const kp_cache_entry *e, int n)
{
    fake *f = ctx;
    pthread_mutex_lock(&f->mu);
    kp_sink_rc r = KP_SINK_OK;
    f->cache_calls++;
    if (f->cache_fail > 0) {
        f->cache_fail--;
        r = KP_SINK_RETRY;
    } else if (f->cache_final != KP_SINK_OK) {
        r = f->cache_final;
    } else {
        for (int i = 0; i < n && f->cache_entries < MAXREC; i++)
            f->json[f->cache_entries++] = strdup(e[i].suggestions);
        for (int i = 0; i < n; i++) {
            int j = find_event(f, e[i].item_id, strlen(e[i].item_id));
            if (j >= 0) f->acked[j] = 1;
        }
        f->cache_acked = 1;
    }
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return r;
}

static kp_sink_rc deliver_locked(fake *f, kp_outmsg *out, int n);

static kp_sink_rc fake_deliver(void *ctx, kp_outmsg *out, int n)
{
    fake *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->at_gate++;
    pthread_cond_broadcast(&f->cv);
    while (f->gate)
        pthread_cond_wait(&f->cv, &f->mu);
    f->at_gate--;
    kp_sink_rc r = deliver_locked(f, out, n);
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return r;
}

static kp_sink_rc deliver_locked(fake *f, kp_outmsg *out, int n)
{
    f->deliver_calls++;
    if (!f->cache_acked) f->deliver_before_ack = 1;
    f->last_out = out;
    f->last_nout = n;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        kp_outmsg *o = &out[i];
        if (o->state == KP_OUT_DONE) continue;
        f->sends++;
        if (f->fail_key && o->keylen == strlen(f->fail_key) &&
            !memcmp(o->key, f->fail_key, o->keylen)) {
            f->sent_per_key_fail++;
            if (f->fail_key_times > 0) {
                f->fail_key_times--;
                o->state = KP_OUT_FAILED;
                failed++;
                continue;
            }
        }
        if (o->hdrs && f->n_dlq < MAXREC) {
            const void *v;
            size_t sz;
            assert_int_equal(rd_kafka_header_get_last(o->hdrs, "error", &v, &sz), 0);
            snprintf(f->dlq_reason[f->n_dlq], sizeof f->dlq_reason[0], "%.*s", (int)sz,
                     (const char *)v);
            snprintf(f->dlq_payload[f->n_dlq], sizeof f->dlq_payload[0], "%.*s",
                     (int)(o->vallen < 63 ? o->vallen : 63), (const char *)o->val);
            f->n_dlq++;
        }
        o->state = KP_OUT_DONE;
        int j = find_event(f, o->key, o->keylen);
        if (j >= 0) f->delivered[j] = 1;
    }
    return failed ? KP_SINK_RETRY : KP_SINK_OK;
}

/* Every event of the fixture below a stored offset must be acknowledged by Redis and delivered
 * by then; and a partition's stored offsets only grow. Under f->mu. */
static void check_store(fake *f, const kp_serve_offset *o)
{
    for (int j = 0; j < *f->nall; j++)
        if (f->all[j].partition == o->partition && f->all[j].offset < o->offset &&
            !(f->acked[j] && f->delivered[j]))
            f->store_unacked++;
    if (o->partition >= 0 && o->partition < 8) {
        if (o->offset <= f->last_stored[o->partition]) f->store_backwards++;
        f->last_stored[o->partition] = o->offset;
    }
}

static void fake_store(void *ctx, const kp_serve_offset *o, int n)
{
    fake *f = ctx;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; f->check_acks && i < n; i++)
        check_store(f, &o[i]);
    pthread_mutex_unlock(&f->mu);
    f->store_calls++;
    if (!f->cache_acked) f->store_before_ack = 1;
    for (int i = 0; f->last_out && i < f->last_nout; i++)
        if (f->last_out[i].state != KP_OUT_DONE) f->store_before_delivered = 1;
    if (!f->last_out) f->store_before_delivered = 1;
    for (int i = 0; i < n && f->n_stored < MAXREC; i++) {
        snprintf(f->stored_topic[f->n_stored], sizeof f->stored_topic[0], "%s", o[i].topic);
        f->stored[f->n_stored] = o[i];
        f->stored[f->n_stored].topic = f->stored_topic[f->n_stored];
        f->n_stored++;
    }
}

static void fake_clear(fake *f)
{
    for (int i = 0; i < f->cache_entries; i++)
        free(f->json[i]);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    memset(f, 0, sizeof *f);
}

static void set_gate(fake *f, int on)
{
    pthread_mutex_lock(&f->mu);
    f->gate = on;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static int64_t stored_offset(const fake *f, int32_t partition)
{
    for (int i = 0; i < f->n_stored; i++)
        if (f->stored[i].partition == partition && !strcmp(f->stored[i].topic, "items"))
            return f->stored[i].offset;
    return -1;
}

/* ---- fixture: a codec, a small untrained recommender, encoded events ---- */

typedef struct {
    kp_config cfg;
    kp_codec *codec;
    kp_recommender *rec;
    fake f;
    kp_serve_batch *b;
    kp_serve_event ev[MAXREC];
    void *payload[MAXREC];
    char key[MAXREC][32];
    int n;
    kp_serve_writer *wr; /* the overlap tests' writer thread (freed by teardown) */
    kp_stop_flag hard;
} fixture;

static int setup(void **state)
{
    fixture *x = calloc(1, sizeof *x);
    char err[512];
    assert_non_null(x);
    kp_config_defaults(&x->cfg);
    x->cfg.top_k = 3;
    x->cfg.retry_backoff_ms = 1, x->cfg.retry_backoff_max_ms = 4; /* the writer's retries */
    pthread_mutex_init(&x->f.mu, NULL);
    pthread_cond_init(&x->f.cv, NULL);
    x->f.all = x->ev, x->f.nall = &x->n;
    atomic_init(&x->hard, 0);
    for (int i = 0; i < 8; i++)
        x->f.last_stored[i] = -1;
    assert_non_null(x->codec = kp_codec_new(err, sizeof err));
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    bc.n_buckets = 1u << 12;
    kp_bienc *m = kp_bienc_new(&bc, 7);
    assert_non_null(m);
    const char *ids[] = {"k1", "k2", "k3", "k4", "k5"};
    const char *texts[] = {"steel sink", "kitchen sink", "red shoes", "running shoes", "lamp"};
    assert_non_null(x->rec = kp_rec_new(m, ids, texts, 5, 0, err, sizeof err));
    const kp_serve_sinks sinks = {&x->f, fake_cache_put, fake_deliver, fake_store, fake_pause};
    assert_non_null(x->b = kp_serve_batch_new(&x->cfg, x->codec, &sinks));
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    fixture *x = *state;
    if (x->wr) { /* a failed overlap test: let its writer go first */
        atomic_store(&x->hard, 1);
        set_gate(&x->f, 0);
        kp_serve_writer_free(x->wr);
        if (kp_serve_batch_in_flight(x->b)) kp_serve_batch_land(x->b, KP_BATCH_FAILED);
    }
    kp_serve_batch_free(x->b);
    for (int i = 0; i < x->n; i++)
        free(x->payload[i]);
    fake_clear(&x->f);
    kp_rec_free(x->rec);
    kp_codec_free(x->codec);
    kp_config_free(&x->cfg);
    free(x);
    return 0;
}

/* Adds an ItemListed event for item id (key = key, NULL = id) at partition@offset. */
static void add_item(fixture *x, const char *id, const char *title, const char *key, int32_t p,
                     int64_t off)
{
    kp_item_listed v = {(char *)id, (char *)title, "", "", 1.0, 0};
    size_t len;
    int i = x->n++;
    assert_int_equal(kp_encode_item_listed(x->codec, &v, &x->payload[i], &len), 0);
    snprintf(x->key[i], sizeof x->key[i], "%s", key ? key : id);
    x->ev[i] = (kp_serve_event){"items", p, off, x->key[i], strlen(x->key[i]), x->payload[i], len};
}

/* Adds a record that is no Avro at all. */
static void add_garbage(fixture *x, const char *key, int32_t p, int64_t off)
{
    int i = x->n++;
    x->payload[i] = strdup("{\"not\": \"avro\"}");
    snprintf(x->key[i], sizeof x->key[i], "%s", key);
    x->ev[i] = (kp_serve_event){
        "items", p, off, x->key[i], strlen(x->key[i]), x->payload[i], strlen(x->payload[i])};
}

static void begin(fixture *x)
{
    char err[512];
    assert_int_equal(kp_serve_batch_begin(x->b, x->rec, x->ev, x->n, err, sizeof err), 0);
}

/* ---- tests ---- */

static void test_happy_path_stores_after_cache_and_deliveries(void **state)
{
    fixture *x = *state;
    add_item(x, "a", "stainless steel kitchen sink", NULL, 0, 10);
    add_item(x, "b", "red running shoes", NULL, 1, 5);
    add_item(x, "c", "desk lamp", NULL, 0, 11);
    begin(x);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_DONE);
    assert_int_equal(x->f.cache_calls, 1);
    assert_int_equal(x->f.cache_entries, 3);
    assert_int_equal(x->f.sends, 3);
    assert_int_equal(x->f.deliver_before_ack, 0);
    assert_int_equal(x->f.store_calls, 1);
    assert_int_equal(x->f.store_before_ack, 0);
    assert_int_equal(x->f.store_before_delivered, 0);
    assert_int_equal(x->f.n_stored, 2);
    assert_int_equal(stored_offset(&x->f, 0), 12);
    assert_int_equal(stored_offset(&x->f, 1), 6);
    assert_int_equal(x->f.n_dlq, 0);
    /* the cached JSON is the recommender's list: top_k entries the reader parses back */
    kp_cache_suggestions s;
    char err[256];
    assert_int_equal(kp_cache_suggestions_parse(x->f.json[0], &s, err, sizeof err), 0);
    assert_int_equal(s.n, 3);
    assert_non_null(s.items[0].keyphrase);
    assert_non_null(s.items[0].id);
    kp_cache_suggestions_clear(&s);
    /* a finished batch stays finished */
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_DONE);
    assert_int_equal(x->f.store_calls, 1);
    kp_serve_batch_end(x->b);
}

static void test_cache_failure_holds_the_batch(void **state)
{
    fixture *x = *state;
    add_item(x, "a", "steel sink", NULL, 0, 3);
    add_item(x, "b", "shoes", NULL, 0, 4);
    x->f.cache_fail = 2;
    begin(x);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_AGAIN);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_AGAIN);
    assert_int_equal(x->f.store_calls, 0);
    assert_int_equal(x->f.deliver_calls, 0); /* nothing published before Redis acknowledged */
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_DONE);
    assert_int_equal(x->f.cache_calls, 3);
    assert_int_equal(x->f.cache_entries, 2); /* the same entries, retried: not dropped */
    assert_int_equal(x->f.store_calls, 1);
    assert_int_equal(stored_offset(&x->f, 0), 5);
    kp_serve_batch_end(x->b);
}

static void test_cache_give_up_stores_nothing(void **state)
{
    fixture *x = *state;
    add_item(x, "a", "steel sink", NULL, 0, 3);
    x->f.cache_final = KP_SINK_FAIL;
    begin(x);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_FAILED);
    assert_int_equal(x->f.deliver_calls, 0);
    assert_int_equal(x->f.store_calls, 0);
    kp_serve_batch_end(x->b);
}

static void test_failed_delivery_is_resent_before_storing(void **state)
{
    fixture *x = *state;
    add_item(x, "a", "steel sink", NULL, 0, 1);
    add_item(x, "b", "shoes", NULL, 1, 7);
    add_item(x, "c", "lamp", NULL, 0, 2);
    x->f.fail_key = "b";
    x->f.fail_key_times = 2;
    begin(x);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_AGAIN);
    assert_int_equal(x->f.store_calls, 0);
    assert_int_equal(stored_offset(&x->f, 1), -1);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_AGAIN);
    assert_int_equal(x->f.store_calls, 0);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_DONE);
    assert_int_equal(x->f.cache_calls, 1); /* the cache is not written again */
    assert_int_equal(x->f.sent_per_key_fail, 3);
    assert_int_equal(x->f.sends, 5); /* 3, then only the failed one twice */
    assert_int_equal(x->f.store_calls, 1);
    assert_int_equal(x->f.store_before_delivered, 0);
    assert_int_equal(stored_offset(&x->f, 0), 3);
    assert_int_equal(stored_offset(&x->f, 1), 8);
    kp_serve_batch_end(x->b);
}

static void test_bad_events_go_to_the_dlq_and_move_on(void **state)
{
    fixture *x = *state;
    add_item(x, "a", "steel sink", NULL, 2, 40);
    add_garbage(x, "junk", 2, 41);
    add_item(x, "c", "lamp", "not-c", 2, 42); /* key does not match item_id */
    add_item(x, "d", "", NULL, 3, 9);         /* empty title */
    begin(x);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_DONE);
    assert_int_equal(x->f.cache_entries, 1);
    assert_int_equal(x->f.n_dlq, 3);
    assert_true(x->f.dlq_reason[0][0] != 0);
    assert_string_equal(x->f.dlq_payload[0], "{\"not\": \"avro\"}"); /* the original bytes */
    assert_string_equal(x->f.dlq_reason[1], "message key does not match item_id");
    assert_true(x->f.dlq_reason[2][0] != 0);
    assert_int_equal(x->f.store_calls, 1);
    assert_int_equal(stored_offset(&x->f, 2), 43);
    assert_int_equal(stored_offset(&x->f, 3), 10);
    kp_serve_batch_end(x->b);
}

static void test_offsets_are_per_partition_max_plus_one(void **state)
{
    fixture *x = *state;
    add_item(x, "a", "sink", NULL, 0, 7);
    add_item(x, "b", "shoes", NULL, 1, 100);
    add_item(x, "c", "lamp", NULL, 0, 3);
    add_item(x, "d", "red lamp", NULL, 0, 9);
    add_item(x, "e", "blue lamp", NULL, 1, 99);
    begin(x);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_DONE);
    assert_int_equal(x->f.n_stored, 2);
    assert_int_equal(stored_offset(&x->f, 0), 10);
    assert_int_equal(stored_offset(&x->f, 1), 101);
    kp_serve_batch_end(x->b);
}

static void test_buffers_are_reused_across_batches(void **state)
{
    fixture *x = *state;
    for (int i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof id, "i%d", i);
        add_item(x, id, "kitchen sink", NULL, i % 3, i);
    }
    for (int round = 0; round < 3; round++) {
        int n = round == 1 ? 20 : 5; /* grows, then shrinks */
        char err[256];
        x->f.n_stored = 0;
        assert_int_equal(kp_serve_batch_begin(x->b, x->rec, x->ev, n, err, sizeof err), 0);
        assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_DONE);
        kp_serve_batch_end(x->b);
    }
    assert_int_equal(x->f.store_calls, 3);
    assert_int_equal(stored_offset(&x->f, 0), 4); /* the last batch: i0..i4, partition 0: 0, 3 */
}

/* With the model's fan-out at 2 ([model] threads) a batch's cache JSON is built in two halves on
 * two threads: the same entries, in the same order, as at width 1; the bad event still goes to the
 * dead-letter topic. */
static void test_json_fanout_same_entries(void **state)
{
    fixture *x = *state;
    const char *titles[] = {"kitchen sink", "red running shoes", "desk lamp", "cordless drill"};
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof id, "i%d", i);
        add_item(x, id, titles[i % 4], NULL, i % 2, i);
    }
    add_garbage(x, "bad", 0, 100);
    for (int width = 1; width <= 2; width++) {
        kp_par_set_threads(width);
        begin(x);
        assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_DONE);
        kp_serve_batch_end(x->b);
    }
    kp_par_set_threads(1);
    assert_int_equal(x->f.cache_entries, 200);
    assert_int_equal(x->f.n_dlq, 2);
    for (int i = 0; i < 100; i++)
        assert_string_equal(x->f.json[i], x->f.json[100 + i]);
    assert_string_not_equal(x->f.json[0], x->f.json[1]); /* the entries differ by title */
}

/* Redis fails once, then Kafka twice: consumption is paused at the first failure and stays paused
 * while Redis is back but Kafka is not; it resumes only once the batch is done and stored. */
static void test_paused_until_every_sink_is_back(void **state)
{
    fixture *x = *state;
    add_item(x, "a", "steel sink", NULL, 0, 1);
    add_item(x, "b", "shoes", NULL, 0, 2);
    x->f.cache_fail = 1;
    x->f.fail_key = "b";
    x->f.fail_key_times = 2;
    begin(x);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_AGAIN); /* Redis down */
    assert_int_equal(x->f.paused, 1);
    assert_int_equal(kp_serve_batch_paused(x->b), 1);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_AGAIN); /* Redis back, Kafka down */
    assert_int_equal(x->f.cache_acked, 1);
    assert_int_equal(x->f.paused, 1);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_AGAIN);
    assert_int_equal(x->f.paused, 1);
    assert_int_equal(x->f.resume_calls, 0);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_DONE);
    assert_int_equal(x->f.paused, 0);
    assert_int_equal(x->f.pause_calls, 1);
    assert_int_equal(x->f.resume_calls, 1);
    assert_int_equal(x->f.stores_at_resume, 1); /* resumed after the offsets were stored */
    kp_serve_batch_end(x->b);
    /* a batch whose sinks all answer at once neither pauses nor resumes */
    begin(x);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_DONE);
    assert_int_equal(x->f.pause_calls, 1);
    assert_int_equal(x->f.resume_calls, 1);
    kp_serve_batch_end(x->b);
}

/* While a batch waits, at most [worker] batch_size polled messages are held; the next one is
 * refused and consumption paused until the batch is done and the hold has room again. */
static void test_hold_is_bounded(void **state)
{
    fixture *x = *state;
    int cap = x->cfg.batch_size, tags[1024];
    assert_true(cap + 1 <= 1024);
    add_item(x, "a", "steel sink", NULL, 0, 1);
    x->f.cache_fail = 1;
    begin(x);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_AGAIN);
    for (int i = 0; i <= cap; i++)
        tags[i] = i;
    for (int i = 0; i < cap; i++)
        assert_int_equal(kp_serve_batch_hold(x->b, &tags[i]), 0);
    assert_int_equal(kp_serve_batch_hold(x->b, &tags[cap]), -1); /* full: the caller seeks back */
    assert_int_equal(x->f.paused, 1);
    assert_int_equal(kp_serve_batch_step(x->b), KP_BATCH_DONE);
    assert_int_equal(x->f.paused, 1); /* the batch is done, but the hold is still full */
    kp_serve_batch_end(x->b);
    void *got[8];
    assert_int_equal(kp_serve_batch_take_held(x->b, got, 3), 3);
    assert_ptr_equal(got[0], &tags[0]); /* oldest first */
    assert_ptr_equal(got[2], &tags[2]);
    assert_int_equal(x->f.paused, 1);                           /* not empty yet */
    assert_int_equal(kp_serve_batch_hold(x->b, &tags[cap]), 0); /* room again */
    int n = 0;
    while (kp_serve_batch_take_held(x->b, got, 1)) {
        assert_ptr_equal(got[0], &tags[3 + n]);
        n++;
    }
    assert_int_equal(n, cap - 2);
    assert_int_equal(x->f.paused, 0); /* empty and no batch in hand: consume again */
    assert_int_equal(x->f.pause_calls, 1);
}

static int drop_odd(void *ctx, void *msg)
{
    (void)ctx;
    return *(int *)msg % 2;
}

static void test_drop_held_keeps_the_order(void **state)
{
    fixture *x = *state;
    int tags[6] = {0, 1, 2, 3, 4, 5};
    for (int i = 0; i < 6; i++)
        assert_int_equal(kp_serve_batch_hold(x->b, &tags[i]), 0);
    void *got[6];
    assert_int_equal(kp_serve_batch_take_held(x->b, got, 1), 1); /* the ring does not start at 0 */
    assert_int_equal(kp_serve_batch_drop_held(x->b, drop_odd, NULL), 3);
    assert_int_equal(kp_serve_batch_take_held(x->b, got, 6), 2);
    assert_ptr_equal(got[0], &tags[2]);
    assert_ptr_equal(got[1], &tags[4]);
}

/* ---- the overlap: the same fakes on the writer thread (consumer/serve_writer.h) ---- */

/* Reads a counter of the fake under its lock (the writer thread writes them). */
static int fget(fake *f, const int *field)
{
    pthread_mutex_lock(&f->mu);
    int v = *field;
    pthread_mutex_unlock(&f->mu);
    return v;
}

/* Waits (up to 10 s) until *field >= v. */
static void wait_for(fake *f, const int *field, int v)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    while (*field < v && rc == 0)
        rc = pthread_cond_timedwait(&f->cv, &f->mu, &dl);
    int got = *field;
    pthread_mutex_unlock(&f->mu);
    assert_true(got >= v);
}

static void set_cache_fail(fake *f, int n, kp_sink_rc final)
{
    pthread_mutex_lock(&f->mu);
    f->cache_fail = n;
    f->cache_final = final;
    pthread_mutex_unlock(&f->mu);
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Begins the batch of events first .. first + n - 1 and hands it to the writer. */
static void begin_submit(fixture *x, kp_serve_writer *wr, int first, int n)
{
    char err[256];
    assert_int_equal(kp_serve_batch_begin(x->b, x->rec, x->ev + first, n, err, sizeof err), 0);
    kp_serve_slot *s = kp_serve_batch_detach(x->b);
    assert_non_null(s);
    assert_int_equal(kp_serve_writer_submit(wr, s), 0);
}

/* Batch 1's Redis writes are acknowledged and its delivery reports are held at the gate: batch 2
 * is scored meanwhile, and nothing is stored until batch 1's reports are all in; then batches land
 * one after the other, in order, each store covering only acknowledged events. */
static void test_overlap_stores_only_acknowledged_batches_in_order(void **state)
{
    fixture *x = *state;
    kp_batch_rc rc = KP_BATCH_FAILED;
    char err[256];
    for (int i = 0; i < 12; i++) {
        char id[16];
        snprintf(id, sizeof id, "i%d", i);
        add_item(x, id, i % 3 ? "kitchen sink" : "red shoes", NULL, i % 2, 100 + i / 2);
    }
    x->f.check_acks = 1;
    x->f.gate = 1;
    kp_serve_writer *wr = x->wr = kp_serve_writer_new(&x->cfg, &x->hard);
    assert_non_null(wr);
    assert_int_equal(kp_serve_writer_land(wr, x->b, 0, &rc), -1); /* nothing in flight */
    begin_submit(x, wr, 0, 4);
    wait_for(&x->f, &x->f.at_gate, 1); /* batch 1: Redis acknowledged, reports outstanding */
    assert_int_equal(fget(&x->f, &x->f.cache_calls), 1);
    assert_int_equal(fget(&x->f, &x->f.cache_entries), 4);
    /* batch 2 is scored while batch 1 is in flight */
    assert_int_equal(kp_serve_batch_begin(x->b, x->rec, x->ev + 4, 4, err, sizeof err), 0);
    assert_true(kp_serve_batch_in_flight(x->b));
    assert_int_equal(kp_serve_writer_land(wr, x->b, 50, &rc), 0); /* still in flight */
    assert_int_equal(x->f.store_calls, 0);               /* Redis acked alone stores nothing */
    assert_null(kp_serve_batch_detach(x->b));            /* one batch in flight at a time */
    assert_int_equal(fget(&x->f, &x->f.cache_calls), 1); /* batch 2 is not sent before */
    set_gate(&x->f, 0);
    assert_int_equal(kp_serve_writer_land(wr, x->b, 5000, &rc), 1);
    assert_int_equal(rc, KP_BATCH_DONE);
    assert_int_equal(x->f.store_calls, 1);
    assert_int_equal(x->f.last_stored[0], 102); /* events 0..3: offsets 100, 101 of each */
    assert_int_equal(x->f.last_stored[1], 102);
    assert_false(kp_serve_batch_in_flight(x->b));
    /* batch 2 goes; batch 3 is scored meanwhile; then both land */
    kp_serve_slot *s = kp_serve_batch_detach(x->b);
    assert_non_null(s);
    assert_int_equal(kp_serve_writer_submit(wr, s), 0);
    assert_int_equal(kp_serve_batch_begin(x->b, x->rec, x->ev + 8, 4, err, sizeof err), 0);
    assert_int_equal(kp_serve_writer_land(wr, x->b, 5000, &rc), 1);
    assert_int_equal(rc, KP_BATCH_DONE);
    assert_int_equal(x->f.last_stored[0], 104);
    assert_non_null(s = kp_serve_batch_detach(x->b));
    assert_int_equal(kp_serve_writer_submit(wr, s), 0);
    assert_int_equal(kp_serve_writer_submit(wr, s), -1); /* the writer has one already */
    assert_int_equal(kp_serve_writer_land(wr, x->b, 5000, &rc), 1);
    assert_int_equal(rc, KP_BATCH_DONE);
    assert_int_equal(kp_serve_writer_land(wr, x->b, 0, &rc), -1);
    assert_int_equal(x->f.store_calls, 3);
    assert_int_equal(x->f.last_stored[0], 106);
    assert_int_equal(x->f.last_stored[1], 106);
    assert_int_equal(x->f.store_unacked, 0);   /* no offset before its Redis ack + reports */
    assert_int_equal(x->f.store_backwards, 0); /* in order */
    assert_int_equal(x->f.cache_entries, 12);
    assert_int_equal(x->f.sends, 12);
    assert_int_equal(x->f.pause_calls, 0);
    kp_serve_writer_free(wr);
    x->wr = NULL;
}

/* A sink that fails on the writer thread: consumption is paused (by the consumer's thread, as it
 * waits), nothing is stored while it fails, the batch lands once it is back; a sink that gives up
 * and a hard stop land FAILED with nothing stored. */
static void test_overlap_failing_sink_holds_and_stores_nothing(void **state)
{
    fixture *x = *state;
    kp_batch_rc rc = KP_BATCH_DONE;
    add_item(x, "a", "steel sink", NULL, 0, 1);
    add_item(x, "b", "shoes", NULL, 0, 2);
    add_item(x, "c", "lamp", NULL, 0, 3);
    x->f.check_acks = 1;
    kp_serve_writer *wr = x->wr = kp_serve_writer_new(&x->cfg, &x->hard);
    assert_non_null(wr);
    set_cache_fail(&x->f, 1 << 30, KP_SINK_OK); /* Redis is down */
    begin_submit(x, wr, 0, 2);
    wait_for(&x->f, &x->f.cache_calls, 3); /* retried */
    assert_int_equal(kp_serve_writer_land(wr, x->b, 20, &rc), 0);
    assert_int_equal(x->f.paused, 1);
    assert_int_equal(kp_serve_batch_paused(x->b), 1);
    assert_int_equal(x->f.store_calls, 0);
    assert_int_equal(fget(&x->f, &x->f.deliver_calls), 0); /* nothing published before the ack */
    set_cache_fail(&x->f, 0, KP_SINK_OK);                  /* Redis is back */
    assert_int_equal(kp_serve_writer_land(wr, x->b, 5000, &rc), 1);
    assert_int_equal(rc, KP_BATCH_DONE);
    assert_int_equal(x->f.store_calls, 1);
    assert_int_equal(x->f.last_stored[0], 3);
    assert_int_equal(x->f.paused, 0);
    assert_int_equal(x->f.pause_calls, 1);
    assert_int_equal(x->f.stores_at_resume, 1); /* resumed after the offsets were stored */
    assert_int_equal(x->f.cache_entries, 2);    /* the same entries, retried: not dropped */
    /* a sink that gives up: nothing stored */
    set_cache_fail(&x->f, 0, KP_SINK_FAIL);
    begin_submit(x, wr, 2, 1);
    assert_int_equal(kp_serve_writer_land(wr, x->b, 5000, &rc), 1);
    assert_int_equal(rc, KP_BATCH_FAILED);
    assert_int_equal(x->f.store_calls, 1);
    /* a hard stop while Redis is down: given up, nothing stored */
    set_cache_fail(&x->f, 1 << 30, KP_SINK_OK);
    begin_submit(x, wr, 2, 1);
    int seen = fget(&x->f, &x->f.cache_calls);
    wait_for(&x->f, &x->f.cache_calls, seen + 2);
    assert_int_equal(kp_serve_writer_land(wr, x->b, 10, &rc), 0);
    atomic_store(&x->hard, 1);
    assert_int_equal(kp_serve_writer_land(wr, x->b, 5000, &rc), 1);
    assert_int_equal(rc, KP_BATCH_FAILED);
    assert_int_equal(x->f.store_calls, 1);
    assert_int_equal(x->f.last_stored[0], 3);
    assert_int_equal(x->f.store_unacked, 0);
    kp_serve_writer_free(wr);
    x->wr = NULL;
}

static void *open_gate_later(void *arg)
{
    fake *f = arg;
    struct timespec ts = {0, 150 * 1000000L};
    nanosleep(&ts, NULL);
    set_gate(f, 0);
    return NULL;
}

/* The rebalance callback's drain (consumer/serve.c: kp_serve_writer_land with a bound, before the
 * commit that precedes the revoke): it waits for the batch in flight and has stored its offsets
 * when it returns; a batch held at a failing sink is not waited for beyond the bound and stores
 * nothing. */
static void test_overlap_drain_lands_before_the_revoke(void **state)
{
    fixture *x = *state;
    kp_batch_rc rc = KP_BATCH_FAILED;
    struct timespec t0;
    pthread_t opener;
    add_item(x, "a", "steel sink", NULL, 0, 7);
    add_item(x, "b", "shoes", NULL, 1, 8);
    add_item(x, "c", "lamp", NULL, 0, 9);
    x->f.check_acks = 1;
    x->f.gate = 1;
    kp_serve_writer *wr = x->wr = kp_serve_writer_new(&x->cfg, &x->hard);
    assert_non_null(wr);
    begin_submit(x, wr, 0, 2);
    wait_for(&x->f, &x->f.at_gate, 1);
    assert_int_equal(pthread_create(&opener, NULL, open_gate_later, &x->f), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(kp_serve_writer_land(wr, x->b, 10000, &rc), 1);
    assert_true(ms_since(&t0) >= 100); /* it waited for the delivery reports */
    assert_int_equal(rc, KP_BATCH_DONE);
    assert_int_equal(x->f.store_calls, 1); /* stored before the drain returned */
    assert_int_equal(x->f.last_stored[0], 8);
    assert_int_equal(x->f.last_stored[1], 9);
    pthread_join(opener, NULL);
    /* bounded: Redis down, the drain gives up after its bound, nothing stored */
    set_cache_fail(&x->f, 1 << 30, KP_SINK_OK);
    begin_submit(x, wr, 2, 1);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(kp_serve_writer_land(wr, x->b, 200, &rc), 0);
    assert_true(ms_since(&t0) >= 150);
    assert_int_equal(x->f.store_calls, 1);
    assert_int_equal(x->f.paused, 1);
    atomic_store(&x->hard, 1);
    assert_int_equal(kp_serve_writer_land(wr, x->b, 5000, &rc), 1);
    assert_int_equal(rc, KP_BATCH_FAILED);
    assert_int_equal(x->f.store_calls, 1);
    assert_int_equal(x->f.store_unacked, 0);
    kp_serve_writer_free(wr);
    x->wr = NULL;
}

/* A writer freed with a batch at a failing sink gives it up; landing it then stores nothing. */
static void test_overlap_free_gives_up_the_batch_in_flight(void **state)
{
    fixture *x = *state;
    add_item(x, "a", "steel sink", NULL, 0, 1);
    kp_serve_writer *wr = x->wr = kp_serve_writer_new(&x->cfg, NULL);
    assert_non_null(wr);
    set_cache_fail(&x->f, 1 << 30, KP_SINK_OK);
    begin_submit(x, wr, 0, 1);
    wait_for(&x->f, &x->f.cache_calls, 1);
    kp_serve_writer_free(wr);
    x->wr = NULL;
    assert_true(kp_serve_batch_in_flight(x->b));
    assert_int_equal(kp_serve_batch_land(x->b, KP_BATCH_FAILED), KP_BATCH_FAILED);
    assert_false(kp_serve_batch_in_flight(x->b));
    assert_int_equal(x->f.store_calls, 0);
}

TH_MAIN(
    cmocka_unit_test_setup_teardown(test_happy_path_stores_after_cache_and_deliveries, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_cache_failure_holds_the_batch, setup, teardown),
    cmocka_unit_test_setup_teardown(test_cache_give_up_stores_nothing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_failed_delivery_is_resent_before_storing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_events_go_to_the_dlq_and_move_on, setup, teardown),
    cmocka_unit_test_setup_teardown(test_offsets_are_per_partition_max_plus_one, setup, teardown),
    cmocka_unit_test_setup_teardown(test_buffers_are_reused_across_batches, setup, teardown),
    cmocka_unit_test_setup_teardown(test_json_fanout_same_entries, setup, teardown),
    cmocka_unit_test_setup_teardown(test_paused_until_every_sink_is_back, setup, teardown),
    cmocka_unit_test_setup_teardown(test_hold_is_bounded, setup, teardown),
    cmocka_unit_test_setup_teardown(test_drop_held_keeps_the_order, setup, teardown),
    cmocka_unit_test_setup_teardown(test_overlap_stores_only_acknowledged_batches_in_order, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_overlap_failing_sink_holds_and_stores_nothing, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_overlap_drain_lands_before_the_revoke, setup, teardown),
    cmocka_unit_test_setup_teardown(test_overlap_free_gives_up_the_batch_in_flight, setup,
                                    teardown))

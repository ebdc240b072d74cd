#include "consumer/serve_batch.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/telemetry.h"
#include "common/util.h"
#include "consumer/arms.h"
#include "model/blas.h"

/* One event of a batch and what became of it. */
typedef struct {
    const kp_serve_event *in;
    kp_item_listed item;
    int valid;
    char reason[256];
} event;

typedef enum { STAGE_NONE = 0, STAGE_CACHE, STAGE_DELIVER, STAGE_ACKED, STAGE_DONE } stage;

/* One batch: in hand (being begun, or stepped by the sequential path) or detached (its sink stages
 * on the writer thread, consumer/serve_writer.h). Only kp_serve_slot_send touches a detached one.
 */
struct kp_serve_slot {
    const kp_serve_sinks *sinks; /* the runner's: read-only once the runner exists */
    stage stage;
    int n, nvalid, nout;
    uint64_t t0, t_dec, t_rec, t_model, t_cache; /* us, for the debug line */
    /* per-batch buffers: cap events (sugg: cap * k), grown by reserve() */
    int cap;
    event *ev;
    const char **titles;
    size_t *lens;
    int *vidx, *counts;
    kp_rec_suggestion *sugg;
    char **json;
    kp_cache_entry *ce;
    kp_outmsg *out;
    void **bufs;
    kp_serve_offset *offs;
    const char **ids; /* item_id of each valid event, and its arm */
    int *arm;
};

typedef struct kp_serve_slot slot;

struct kp_serve_batch {
    const kp_config *cfg;
    kp_codec *codec;
    kp_serve_sinks sinks;
    int k;
    /* two batches: the one in hand, and the one detached for the writer thread (-1: none) */
    slot slots[2];
    int hand, flight;
    kp_suggestion *avro; /* k: the codec's view of one item's list */
    /* messages polled while waiting: a ring of batch_size */
    void **held;
    int held_cap, held_first, n_held;
    int paused;
    kp_arms *arms; /* the A/B split (NULL = none) */
};

void kp_serve_batch_set_arms(kp_serve_batch *b, kp_arms *arms)
{
    b->arms = arms;
}

kp_serve_batch *kp_serve_batch_new(const kp_config *c, kp_codec *codec, const kp_serve_sinks *sinks)
{
    kp_serve_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->cfg = c;
    b->codec = codec;
    b->sinks = *sinks;
    b->slots[0].sinks = b->slots[1].sinks = &b->sinks;
    b->flight = -1;
    b->k = c->top_k > 0 ? c->top_k : 1;
    b->held_cap = c->batch_size > 0 ? c->batch_size : 1;
    if (!(b->avro = malloc(sizeof *b->avro * (size_t)b->k)) ||
        !(b->held = malloc(sizeof *b->held * (size_t)b->held_cap))) {
        free(b->avro);
        free(b);
        return NULL;
    }
    return b;
}

static void free_buffers(slot *s)
{
    free(s->ev), free((void *)s->titles), free(s->lens), free(s->vidx), free(s->counts);
    free(s->sugg), free((void *)s->json), free(s->ce), free(s->out), free(s->bufs), free(s->offs);
    free((void *)s->ids), free(s->arm);
}

/* Releases what slot s holds of its batch; buffers are kept. */
static void end_slot(slot *s)
{
    if (s->stage == STAGE_NONE) return;
    atomic_fetch_sub(&kp_m.in_flight, s->n);
    for (int i = 0; i < s->n; i++) {
        kp_item_listed_clear(&s->ev[i].item);
        free(s->json[i]);
        free(s->bufs[i]);
    }
    for (int i = 0; i < s->nout; i++)
        if (s->out[i].hdrs) rd_kafka_headers_destroy(s->out[i].hdrs);
    s->n = s->nvalid = s->nout = 0;
    s->stage = STAGE_NONE;
}

void kp_serve_batch_free(kp_serve_batch *b)
{
    if (!b) return;
    for (int i = 0; i < 2; i++) {
        end_slot(&b->slots[i]);
        free_buffers(&b->slots[i]);
    }
    free(b->avro);
    free(b->held);
    free(b);
}

#define GROW KP_GROW_OR_FAIL

/* Makes room for n events of k suggestions. 0, or -1 on OOM (the buffers that did grow are kept).
 */
static int reserve(slot *s, int n, int k)
{
    if (n <= s->cap) return 0;
    GROW(s->ev, n);
    GROW(s->titles, n);
    GROW(s->lens, n);
    GROW(s->vidx, n);
    GROW(s->counts, n);
    GROW(s->sugg, (size_t)n * (size_t)k);
    GROW(s->json, n);
    GROW(s->ce, n);
    GROW(s->out, n);
    GROW(s->bufs, n);
    GROW(s->offs, n);
    GROW(s->ids, n);
    GROW(s->arm, n);
    s->cap = n;
    return 0;
}

/* Decodes and validates event i of s; a valid one joins the titles to score. */
static void decode_one(kp_serve_batch *b, slot *s, int i)
{
    event *e = &s->ev[i];
    const kp_serve_event *m = e->in;
    atomic_fetch_add(&kp_m.consumed[KP_MT_ITEMS], 1);
    if (kp_decode_item_listed(b->codec, m->payload, m->len, &e->item, e->reason,
                              sizeof e->reason) == 0 &&
        kp_validate_item_listed(&e->item, (size_t)b->cfg->max_title_bytes, e->reason,
                                sizeof e->reason) == 0 &&
        !(m->key_len &&
          (m->key_len != strlen(e->item.item_id) || memcmp(m->key, e->item.item_id, m->key_len)))) {
        e->valid = 1;
        s->titles[s->nvalid] = e->item.title;
        s->lens[s->nvalid] = strlen(e->item.title);
        s->ids[s->nvalid] = e->item.item_id;
        s->vidx[s->nvalid++] = i;
    } else if (!e->reason[0]) {
        snprintf(e->reason, sizeof e->reason, "message key does not match item_id");
    }
}

/* The cache JSON of valid events [lo, hi) of s (NULL where out of memory; a kp_parallel_for
 * range: pure per event). */
typedef struct {
    const kp_serve_batch *b;
    slot *s;
} json_job;

static int json_range(void *ctx, int t, int lo, int hi)
{
    (void)t;
    const json_job *j = ctx;
    for (int v = lo; v < hi; v++)
        j->s->json[v] =
            kp_cache_suggestions_json_arm(j->s->sugg + (size_t)v * (size_t)j->b->k, j->s->counts[v],
                                          kp_arms_name(j->b->arms, j->s->arm[v]));
    return 0;
}

/* JSON_SPLIT_MIN valid events or more: the cache JSON (the serve path's largest cost after the
 * model: jansson builds and prints every suggestion) in two halves on two threads when the model's
 * split is 2 (kp_par_threads, [model] threads); the same JSON either way. */
#define JSON_SPLIT_MIN 64

static void build_json(const kp_serve_batch *b, slot *s)
{
    json_job j = {b, s};
    kp_parallel_for(s->nvalid >= JSON_SPLIT_MIN ? kp_par_threads() : 1, s->nvalid, json_range, &j);
}

/* The cache entry and the suggestion record of the v-th valid event of s (its JSON made by
 * build_json). 0 / -1 (OOM). */
static int build_valid(kp_serve_batch *b, slot *s, int v, uint64_t version, int64_t gen)
{
    event *e = &s->ev[s->vidx[v]];
    const kp_rec_suggestion *sg = s->sugg + (size_t)v * (size_t)b->k;
    int cnt = s->counts[v];
    const char *arm = kp_arms_name(b->arms, s->arm[v]);
    if (!s->json[v]) return -1; /* build_json ran out of memory */
    s->ce[v] = (kp_cache_entry){e->item.item_id, e->item.title, s->json[v], version, gen};
    for (int j = 0; j < cnt; j++) /* adapter: the codec's struct orders the fields its own way */
        b->avro[j] = (kp_suggestion){sg[j].keyphrase, sg[j].keyphrase_id, sg[j].score};
    size_t len = 0;
    int o = s->nout;
    if (kp_encode_suggestions_arm(b->codec, e->item.item_id, (int64_t)version, gen, arm, b->avro,
                                  cnt, &s->bufs[o], &len))
        return -1;
    s->out[o] = (kp_outmsg){b->cfg->topic_suggestions,
                            e->item.item_id,
                            strlen(e->item.item_id),
                            s->bufs[o],
                            len,
                            NULL,
                            1,
                            KP_OUT_PENDING};
    s->nout = o + 1;
    return 0;
}

/* The dead-letter record of bad event i of s: original key and bytes, headers with the reason. */
static int build_dead_letter(kp_serve_batch *b, slot *s, int i)
{
    const kp_serve_event *m = s->ev[i].in;
    kp_warn("dead-letter %s[%" PRId32 "]@%" PRId64 ": %s", m->topic, m->partition, m->offset,
            s->ev[i].reason);
    rd_kafka_headers_t *h = kp_dlq_headers_for(m->topic, m->partition, m->offset, s->ev[i].reason);
    if (!h) return -1;
    s->out[s->nout++] = (kp_outmsg){b->cfg->topic_dlq, m->key, m->key_len, m->payload, m->len, h, 0,
                                    KP_OUT_PENDING};
    return 0;
}

int kp_serve_batch_begin(kp_serve_batch *b, kp_recommender *rec, const kp_serve_event *ev, int n,
                         char *err, size_t errlen)
{
    const kp_config *c = b->cfg;
    slot *s = &b->slots[b->hand];
    end_slot(s);
    s->t0 = kp_mono_us();
    if (n <= 0) {
        kp_errf(err, errlen, "empty batch");
        return -1;
    }
    if (reserve(s, n, b->k)) goto oom;
    memset(s->ev, 0, sizeof *s->ev * (size_t)n);
    memset((void *)s->json, 0, sizeof *s->json * (size_t)n);
    memset(s->bufs, 0, sizeof *s->bufs * (size_t)n);
    s->n = n;
    s->stage = STAGE_CACHE;
    atomic_fetch_add(&kp_m.in_flight, n);
    for (int i = 0; i < n; i++) {
        s->ev[i].in = &ev[i];
        decode_one(b, s, i);
    }
    /* model: one batched forward + one GEMM + top-K */
    s->t_dec = kp_mono_us();
    if (s->nvalid && kp_arms_suggest(b->arms, rec, s->ids, s->titles, s->lens, s->nvalid, b->k,
                                     (float)c->min_score, s->sugg, s->counts, s->arm)) {
        kp_errf(err, errlen, "batch of %d: recommend failed (out of memory)", n);
        return -1;
    }
    s->t_rec = kp_mono_us();
    uint64_t version = kp_rec_version(rec);
    int64_t gen = kp_now_ms();
    build_json(b, s);
    for (int v = 0; v < s->nvalid; v++)
        if (build_valid(b, s, v, version, gen)) goto oom;
    for (int i = 0; i < n; i++)
        if (!s->ev[i].valid && build_dead_letter(b, s, i)) goto oom;
    s->t_model = kp_mono_us();
    return 0;
oom:
    kp_errf(err, errlen, "batch of %d: out of memory", n);
    return -1;
}

/* Per partition of s, the offset after its last event. Returns the number of partitions. */
static int collect_offsets(slot *s)
{
    int np = 0;
    for (int i = 0; i < s->n; i++) {
        const kp_serve_event *m = s->ev[i].in;
        int p = 0;
        while (p < np &&
               !(s->offs[p].partition == m->partition && !strcmp(s->offs[p].topic, m->topic)))
            p++;
        if (p == np) s->offs[np++] = (kp_serve_offset){m->topic, m->partition, m->offset + 1};
        if (m->offset + 1 > s->offs[p].offset) s->offs[p].offset = m->offset + 1;
    }
    return np;
}

/* Every event of s is acknowledged (Redis and every delivery report): count it, store the
 * offsets. On the runner's thread. */
static void finish(kp_serve_batch *b, slot *s)
{
    uint64_t now = kp_mono_us();
    kp_debug("batch of %d: decode %.1f ms, model %.1f ms, encode %.1f ms, redis %.1f ms, "
             "kafka %.1f ms",
             s->n, (double)(s->t_dec - s->t0) / 1e3, (double)(s->t_rec - s->t_dec) / 1e3,
             (double)(s->t_model - s->t_rec) / 1e3, (double)(s->t_cache - s->t_model) / 1e3,
             (double)(now - s->t_cache) / 1e3);
    for (int i = 0; i < s->n; i++) {
        if (s->ev[i].valid)
            atomic_fetch_add(&kp_m.processed[KP_MT_ITEMS], 1);
        else
            atomic_fetch_add(&kp_m.dead_lettered[KP_MT_ITEMS], 1);
    }
    for (int v = 0; v < s->nvalid; v++)
        if (s->counts[v] == 0) atomic_fetch_add(&kp_m.items_empty, 1);
    b->sinks.store(b->sinks.ctx, s->offs, collect_offsets(s));
    atomic_fetch_add(&kp_m.batches, 1);
    kp_telemetry_observe_batch(kp_mono_us() - s->t0);
    s->stage = STAGE_DONE;
}

static void set_paused(kp_serve_batch *b, int on, const char *why)
{
    if (b->paused == on) return;
    b->paused = on;
    if (b->sinks.pause) b->sinks.pause(b->sinks.ctx, on, why);
}

/* 1 while the runner has a batch: in hand or detached. */
static int busy(const kp_serve_batch *b)
{
    return b->slots[b->hand].stage != STAGE_NONE || b->flight >= 0;
}

int kp_serve_batch_hold(kp_serve_batch *b, void *msg)
{
    if (b->n_held == b->held_cap) {
        set_paused(b, 1, "the hold of messages polled while waiting is full");
        return -1;
    }
    b->held[(b->held_first + b->n_held++) % b->held_cap] = msg;
    return 0;
}

int kp_serve_batch_take_held(kp_serve_batch *b, void **out, int max)
{
    int n = 0;
    for (; n < max && b->n_held; n++, b->n_held--) {
        out[n] = b->held[b->held_first];
        b->held_first = (b->held_first + 1) % b->held_cap;
    }
    if (!b->n_held && !busy(b)) set_paused(b, 0, NULL);
    return n;
}

int kp_serve_batch_drop_held(kp_serve_batch *b, int (*drop)(void *ctx, void *msg), void *ctx)
{
    int kept = 0, n = b->n_held;
    for (int i = 0; i < n; i++) {
        void *m = b->held[(b->held_first + i) % b->held_cap];
        if (!drop(ctx, m)) b->held[(b->held_first + kept++) % b->held_cap] = m;
    }
    b->n_held = kept;
    return n - kept;
}

int kp_serve_batch_paused(const kp_serve_batch *b)
{
    return b->paused;
}

kp_batch_rc kp_serve_slot_send(kp_serve_slot *s, const char **why)
{
    const kp_serve_sinks *k = s->sinks;
    kp_sink_rc r;
    if (why) *why = NULL;
    switch (s->stage) {
    case STAGE_NONE:
        return KP_BATCH_FAILED;
    case STAGE_CACHE: /* Redis first (acknowledged) ... */
        if (s->nvalid && (r = k->cache_put(k->ctx, s->ce, s->nvalid)) != KP_SINK_OK) {
            if (why) *why = "Redis is failing";
            return r == KP_SINK_FAIL ? KP_BATCH_FAILED : KP_BATCH_AGAIN;
        }
        s->t_cache = kp_mono_us();
        s->stage = STAGE_DELIVER;
        /* fall through */
    case STAGE_DELIVER: /* ... then Kafka (every delivery report) */
        if (why) *why = "Kafka deliveries are failing";
        if ((r = k->deliver(k->ctx, s->out, s->nout)) != KP_SINK_OK)
            return r == KP_SINK_FAIL ? KP_BATCH_FAILED : KP_BATCH_AGAIN;
        for (int i = 0; i < s->nout; i++) /* a sink that lied */
            if (s->out[i].state != KP_OUT_DONE) return KP_BATCH_AGAIN;
        if (why) *why = NULL;
        s->stage = STAGE_ACKED;
        /* fall through */
    case STAGE_ACKED:
    case STAGE_DONE:
        break;
    }
    return KP_BATCH_DONE;
}

kp_batch_rc kp_serve_batch_step(kp_serve_batch *b)
{
    slot *s = &b->slots[b->hand];
    const char *why;
    kp_batch_rc r = kp_serve_slot_send(s, &why);
    if (r == KP_BATCH_AGAIN) set_paused(b, 1, why); /* until the batch is done */
    if (r != KP_BATCH_DONE) return r;
    if (s->stage == STAGE_ACKED) finish(b, s);           /* ... then the offsets */
    if (b->n_held < b->held_cap) set_paused(b, 0, NULL); /* every sink answered: consume again */
    return KP_BATCH_DONE;
}

kp_serve_slot *kp_serve_batch_detach(kp_serve_batch *b)
{
    slot *s = &b->slots[b->hand];
    if (b->flight >= 0 || s->stage == STAGE_NONE) return NULL;
    b->flight = b->hand;
    b->hand ^= 1;
    return s;
}

int kp_serve_batch_in_flight(const kp_serve_batch *b)
{
    return b->flight >= 0;
}

void kp_serve_batch_sink_down(kp_serve_batch *b, const char *why)
{
    if (b->flight >= 0) set_paused(b, 1, why ? why : "a sink is failing");
}

kp_batch_rc kp_serve_batch_land(kp_serve_batch *b, kp_batch_rc r)
{
    if (b->flight < 0) return KP_BATCH_FAILED;
    slot *s = &b->slots[b->flight];
    /* only a batch whose every sink acknowledged stores its offsets */
    if (r == KP_BATCH_DONE && s->stage == STAGE_ACKED)
        finish(b, s);
    else
        r = KP_BATCH_FAILED;
    end_slot(s);
    b->flight = -1;
    if (r == KP_BATCH_DONE && b->n_held < b->held_cap) set_paused(b, 0, NULL);
    return r;
}

void kp_serve_batch_end(kp_serve_batch *b)
{
    if (b) end_slot(&b->slots[b->hand]);
}

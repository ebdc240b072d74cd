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

/* One event of a batch and what became of it. */
typedef struct {
    const kp_serve_event *in;
    kp_item_listed item;
    int valid;
    char reason[256];
} event;

typedef enum { STAGE_NONE = 0, STAGE_CACHE, STAGE_DELIVER, STAGE_DONE } stage;

struct kp_serve_batch {
    const kp_config *cfg;
    kp_codec *codec;
    kp_serve_sinks sinks;
    /* the batch in hand */
    stage stage;
    int n, nvalid, nout;
    uint64_t t0, t_dec, t_rec, t_model, t_cache; /* us, for the debug line */
    /* per-batch buffers: cap events (sugg: cap * k), grown by reserve() */
    int cap, k;
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
    kp_suggestion *avro; /* k: the codec's view of one item's list */
    /* messages polled while waiting: a ring of batch_size */
    void **held;
    int held_cap, held_first, n_held;
    int paused;
    kp_arms *arms;    /* the A/B split (NULL = none) */
    const char **ids; /* item_id of each valid event, and its arm */
    int *arm;
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

static void free_buffers(kp_serve_batch *b)
{
    free(b->ev), free((void *)b->titles), free(b->lens), free(b->vidx), free(b->counts);
    free(b->sugg), free((void *)b->json), free(b->ce), free(b->out), free(b->bufs), free(b->offs);
    free((void *)b->ids), free(b->arm);
}

void kp_serve_batch_free(kp_serve_batch *b)
{
    if (!b) return;
    kp_serve_batch_end(b);
    free_buffers(b);
    free(b->avro);
    free(b->held);
    free(b);
}

#define GROW KP_GROW_OR_FAIL

/* Makes room for n events. 0, or -1 on OOM (the buffers that did grow are kept). */
static int reserve(kp_serve_batch *b, int n)
{
    if (n <= b->cap) return 0;
    GROW(b->ev, n);
    GROW(b->titles, n);
    GROW(b->lens, n);
    GROW(b->vidx, n);
    GROW(b->counts, n);
    GROW(b->sugg, (size_t)n * (size_t)b->k);
    GROW(b->json, n);
    GROW(b->ce, n);
    GROW(b->out, n);
    GROW(b->bufs, n);
    GROW(b->offs, n);
    GROW(b->ids, n);
    GROW(b->arm, n);
    b->cap = n;
    return 0;
}

/* Decodes and validates event i; a valid one joins the titles to score. */
static void decode_one(kp_serve_batch *b, int i)
{
    event *e = &b->ev[i];
    const kp_serve_event *m = e->in;
    atomic_fetch_add(&kp_m.consumed[KP_MT_ITEMS], 1);
    if (kp_decode_item_listed(b->codec, m->payload, m->len, &e->item, e->reason,
                              sizeof e->reason) == 0 &&
        kp_validate_item_listed(&e->item, (size_t)b->cfg->max_title_bytes, e->reason,
                                sizeof e->reason) == 0 &&
        !(m->key_len &&
          (m->key_len != strlen(e->item.item_id) || memcmp(m->key, e->item.item_id, m->key_len)))) {
        e->valid = 1;
        b->titles[b->nvalid] = e->item.title;
        b->lens[b->nvalid] = strlen(e->item.title);
        b->ids[b->nvalid] = e->item.item_id;
        b->vidx[b->nvalid++] = i;
    } else if (!e->reason[0]) {
        snprintf(e->reason, sizeof e->reason, "message key does not match item_id");
    }
}

/* The cache entry and the suggestion record of the v-th valid event. 0 / -1 (OOM). */
static int build_valid(kp_serve_batch *b, int v, uint64_t version, int64_t gen)
{
    event *e = &b->ev[b->vidx[v]];
    const kp_rec_suggestion *s = b->sugg + (size_t)v * (size_t)b->k;
    int cnt = b->counts[v];
    const char *arm = kp_arms_name(b->arms, b->arm[v]);
    if (!(b->json[v] = kp_cache_suggestions_json_arm(s, cnt, arm))) return -1;
    b->ce[v] = (kp_cache_entry){e->item.item_id, e->item.title, b->json[v], version, gen};
    for (int j = 0; j < cnt; j++) /* adapter: the codec's struct orders the fields its own way */
        b->avro[j] = (kp_suggestion){s[j].keyphrase, s[j].keyphrase_id, s[j].score};
    size_t len = 0;
    int o = b->nout;
    if (kp_encode_suggestions_arm(b->codec, e->item.item_id, (int64_t)version, gen, arm, b->avro,
                                  cnt, &b->bufs[o], &len))
        return -1;
    b->out[o] = (kp_outmsg){b->cfg->topic_suggestions,
                            e->item.item_id,
                            strlen(e->item.item_id),
                            b->bufs[o],
                            len,
                            NULL,
                            1,
                            KP_OUT_PENDING};
    b->nout = o + 1;
    return 0;
}

/* The dead-letter record of bad event i: original key and bytes, headers with the reason. */
static int build_dead_letter(kp_serve_batch *b, int i)
{
    const kp_serve_event *m = b->ev[i].in;
    kp_warn("dead-letter %s[%" PRId32 "]@%" PRId64 ": %s", m->topic, m->partition, m->offset,
            b->ev[i].reason);
    rd_kafka_headers_t *h = kp_dlq_headers_for(m->topic, m->partition, m->offset, b->ev[i].reason);
    if (!h) return -1;
    b->out[b->nout++] = (kp_outmsg){b->cfg->topic_dlq, m->key, m->key_len, m->payload, m->len, h, 0,
                                    KP_OUT_PENDING};
    return 0;
}

int kp_serve_batch_begin(kp_serve_batch *b, kp_recommender *rec, const kp_serve_event *ev, int n,
                         char *err, size_t errlen)
{
    const kp_config *c = b->cfg;
    kp_serve_batch_end(b);
    b->t0 = kp_mono_us();
    if (n <= 0) {
        kp_errf(err, errlen, "empty batch");
        return -1;
    }
    if (reserve(b, n)) goto oom;
    memset(b->ev, 0, sizeof *b->ev * (size_t)n);
    memset((void *)b->json, 0, sizeof *b->json * (size_t)n);
    memset(b->bufs, 0, sizeof *b->bufs * (size_t)n);
    b->n = n;
    b->stage = STAGE_CACHE;
    atomic_fetch_add(&kp_m.in_flight, n);
    for (int i = 0; i < n; i++) {
        b->ev[i].in = &ev[i];
        decode_one(b, i);
    }
    /* model: one batched forward + one GEMM + top-K */
    b->t_dec = kp_mono_us();
    if (b->nvalid && kp_arms_suggest(b->arms, rec, b->ids, b->titles, b->lens, b->nvalid, b->k,
                                     (float)c->min_score, b->sugg, b->counts, b->arm)) {
        kp_errf(err, errlen, "batch of %d: recommend failed (out of memory)", n);
        return -1;
    }
    b->t_rec = kp_mono_us();
    uint64_t version = kp_rec_version(rec);
    int64_t gen = kp_now_ms();
    for (int v = 0; v < b->nvalid; v++)
        if (build_valid(b, v, version, gen)) goto oom;
    for (int i = 0; i < n; i++)
        if (!b->ev[i].valid && build_dead_letter(b, i)) goto oom;
    b->t_model = kp_mono_us();
    return 0;
oom:
    kp_errf(err, errlen, "batch of %d: out of memory", n);
    return -1;
}

/* Per partition of the batch, the offset after its last event. Returns the number of partitions. */
static int collect_offsets(kp_serve_batch *b)
{
    int np = 0;
    for (int i = 0; i < b->n; i++) {
        const kp_serve_event *m = b->ev[i].in;
        int p = 0;
        while (p < np &&
               !(b->offs[p].partition == m->partition && !strcmp(b->offs[p].topic, m->topic)))
            p++;
        if (p == np) b->offs[np++] = (kp_serve_offset){m->topic, m->partition, m->offset + 1};
        if (m->offset + 1 > b->offs[p].offset) b->offs[p].offset = m->offset + 1;
    }
    return np;
}

/* Every event is done: count it, store the offsets. */
static void finish(kp_serve_batch *b)
{
    uint64_t now = kp_mono_us();
    kp_debug("batch of %d: decode %.1f ms, model %.1f ms, encode %.1f ms, redis %.1f ms, "
             "kafka %.1f ms",
             b->n, (double)(b->t_dec - b->t0) / 1e3, (double)(b->t_rec - b->t_dec) / 1e3,
             (double)(b->t_model - b->t_rec) / 1e3, (double)(b->t_cache - b->t_model) / 1e3,
             (double)(now - b->t_cache) / 1e3);
    for (int i = 0; i < b->n; i++) {
        if (b->ev[i].valid)
            atomic_fetch_add(&kp_m.processed[KP_MT_ITEMS], 1);
        else
            atomic_fetch_add(&kp_m.dead_lettered[KP_MT_ITEMS], 1);
    }
    for (int v = 0; v < b->nvalid; v++)
        if (b->counts[v] == 0) atomic_fetch_add(&kp_m.items_empty, 1);
    b->sinks.store(b->sinks.ctx, b->offs, collect_offsets(b));
    atomic_fetch_add(&kp_m.batches, 1);
    kp_telemetry_observe_batch(kp_mono_us() - b->t0);
    b->stage = STAGE_DONE;
}

static void set_paused(kp_serve_batch *b, int on, const char *why)
{
    if (b->paused == on) return;
    b->paused = on;
    if (b->sinks.pause) b->sinks.pause(b->sinks.ctx, on, why);
}

/* A sink did not answer OK: RETRY pauses consumption until the batch is done. */
static kp_batch_rc from_sink(kp_serve_batch *b, kp_sink_rc r, const char *sink)
{
    if (r == KP_SINK_FAIL) return KP_BATCH_FAILED;
    set_paused(b, 1, sink);
    return KP_BATCH_AGAIN;
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
    if (!b->n_held && b->stage == STAGE_NONE) set_paused(b, 0, NULL);
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

kp_batch_rc kp_serve_batch_step(kp_serve_batch *b)
{
    kp_sink_rc r;
    switch (b->stage) {
    case STAGE_NONE:
        return KP_BATCH_FAILED;
    case STAGE_CACHE: /* Redis first (acknowledged) ... */
        if (b->nvalid && (r = b->sinks.cache_put(b->sinks.ctx, b->ce, b->nvalid)) != KP_SINK_OK)
            return from_sink(b, r, "Redis is failing");
        b->t_cache = kp_mono_us();
        b->stage = STAGE_DELIVER;
        /* fall through */
    case STAGE_DELIVER: /* ... then Kafka (every delivery report) ... */
        if ((r = b->sinks.deliver(b->sinks.ctx, b->out, b->nout)) != KP_SINK_OK)
            return from_sink(b, r, "Kafka deliveries are failing");
        for (int i = 0; i < b->nout; i++) /* a sink that lied */
            if (b->out[i].state != KP_OUT_DONE)
                return from_sink(b, KP_SINK_RETRY, "Kafka deliveries are failing");
        finish(b); /* ... then the offsets */
        /* fall through */
    case STAGE_DONE:
        break;
    }
    if (b->n_held < b->held_cap) set_paused(b, 0, NULL); /* every sink answered: consume again */
    return KP_BATCH_DONE;
}

void kp_serve_batch_end(kp_serve_batch *b)
{
    if (!b || b->stage == STAGE_NONE) return;
    atomic_fetch_sub(&kp_m.in_flight, b->n);
    for (int i = 0; i < b->n; i++) {
        kp_item_listed_clear(&b->ev[i].item);
        free(b->json[i]);
        free(b->bufs[i]);
    }
    for (int i = 0; i < b->nout; i++)
        if (b->out[i].hdrs) rd_kafka_headers_destroy(b->out[i].hdrs);
    b->n = b->nvalid = b->nout = 0;
    b->stage = STAGE_NONE;
}

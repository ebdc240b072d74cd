#include "consumer/learn.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache/cache.h"
#include "common/log.h"
#include "common/telemetry.h"
#include "common/util.h"
#include "consumer/follow.h"
#include "consumer/group.h"
#include "consumer/model_topic.h"
#include "model/ce.h"
#include "model/ckpt.h"
#include "model/delta.h"
#include "model/rng.h"
#include "model/train_step.h"
#include "model/tsv.h"
#include "producer/producer.h"
#include "schemas/codec.h"
#include "schemas/registry_http.h"

#define MAX_PARTS 512

enum { EX_IMPRESSION = 0, EX_CLICK = 1, EX_JUDGMENT = 2 };

/* A training example kept in the bounded buffer. */
typedef struct {
    char *title, *key;
    int kind, position;
    float label; /* click 1 / impression 0, or the judgment's score */
} texample;

/* An event waiting for its step (or for its item's title). */
typedef struct {
    rd_kafka_message_t *msg;
    int is_click_topic;
    kp_ad_event ad;
    kp_judgment jd;
    char *title;              /* resolved title (owned) */
    int64_t missing_since_ms; /* when Redis first said it has no title for the item (0 = not) */
    int held; /* its dead letter could not be delivered: never handled, holds its offset back */
} tevent;

/* Offset bookkeeping of one input partition: everything below `done` is handled. */
typedef struct {
    char topic[256];
    int32_t partition;
    int64_t done; /* next offset to store (-1 = nothing yet) */
} part_state;

typedef struct {
    const kp_config *cfg;
    kp_group *group;
    kp_producer *producer; /* dead letters */
    kp_producer *txp;      /* the model topic: transactional */
    kp_codec *codec;
    kp_sreg *sreg; /* [schemas] registry, or NULL */
    kp_ce *teacher;
    kp_bienc *model;
    kp_trainer *trainer;
    kp_texts inv;    /* keyphrase inventory, for random negatives */
    kp_cache *cache; /* the title lookup */
    kp_rng rng;
    tevent *pending; /* waiting for a title, in arrival order */
    int n_pending, cap_pending;
    /* scratch of resolve_titles, cap_pending each */
    const char **lookup_ids;
    char **lookup_titles;
    int *lookup_which;
    tevent *ready;               /* a step's events, [train] batch_size */
    rd_kafka_message_t **polled; /* taken from the consumer while waiting (tick), not yet decoded */
    int n_polled, cap_polled;
    int dlq_failed; /* a dead letter could not be delivered: stop, committing nothing past it */
    part_state parts[MAX_PARTS];
    int n_parts;
    texample *buf; /* the training buffer: a ring of buf_cap examples */
    int buf_cap, buf_len, buf_next;
    unsigned char *row_mark[2]; /* rows changed since the last delta, per tower */
    uint32_t *rows[2];
    int nrows[2];
    uint64_t base_version; /* version of the last published delta (or the start) */
    uint64_t base_lineage; /* lineage of the model at base_version (0 = a bootstrap model) */
    uint64_t lineage;      /* this trainer's: every record it publishes names it */
    uint64_t checkpointed; /* version of the last checkpoint published */
    int fenced;            /* the broker fenced our transactional.id: publish nothing more */
    int64_t ckpt_offset;   /* where our newest published checkpoint starts (-1 = none yet) */
    long steps_since_delta;
    int64_t last_delta_ms;
} tsvc;

static void tevent_clear(tevent *e)
{
    kp_ad_event_clear(&e->ad);
    kp_judgment_clear(&e->jd);
    free(e->title);
    if (e->msg) rd_kafka_message_destroy(e->msg);
    memset(e, 0, sizeof *e);
}

static part_state *part_of(tsvc *s, const rd_kafka_message_t *m)
{
    const char *t = rd_kafka_topic_name(m->rkt);
    for (int i = 0; i < s->n_parts; i++)
        if (s->parts[i].partition == m->partition && !strcmp(s->parts[i].topic, t))
            return &s->parts[i];
    if (s->n_parts == MAX_PARTS) return NULL;
    part_state *p = &s->parts[s->n_parts++];
    snprintf(p->topic, sizeof p->topic, "%s", t);
    p->partition = m->partition;
    p->done = -1;
    return p;
}

/* Marks m handled: its partition may be stored up to it, unless an older event still waits. */
static void mark_done(tsvc *s, const rd_kafka_message_t *m)
{
    part_state *p = part_of(s, m);
    if (p && m->offset + 1 > p->done) p->done = m->offset + 1;
}

/* Per partition, the offset below which everything is handled (caller destroys the list). */
static rd_kafka_topic_partition_list_t *offsets_list(tsvc *s)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->n_parts);
    for (int i = 0; i < s->n_parts; i++) {
        part_state *p = &s->parts[i];
        int64_t off = p->done;
        for (int j = 0; j < s->n_pending; j++) {
            rd_kafka_message_t *m = s->pending[j].msg;
            if (m->partition == p->partition && !strcmp(rd_kafka_topic_name(m->rkt), p->topic) &&
                (off < 0 || m->offset < off))
                off = m->offset;
        }
        if (off >= 0) rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = off;
    }
    return l;
}

/* Called while the producer waits for a delivery: keeps the group membership alive by polling
 * the consumer (the message it hands out, if any, is kept for poll_events: never dropped). */
static void tick(void *opaque)
{
    tsvc *s = opaque;
    if (s->txp) rd_kafka_poll(kp_producer_handle(s->txp), 0);
    rd_kafka_message_t *m = kp_group_poll(s->group, 0, NULL);
    if (!m) return;
    if (s->n_polled == s->cap_polled) {
        int nc = s->cap_polled ? s->cap_polled * 2 : 64;
        rd_kafka_message_t **np = realloc(s->polled, sizeof *np * (size_t)nc);
        if (!np) {
            /* cannot keep it: consume it again (its offset is not stored: nothing done past it) */
            rd_kafka_seek(m->rkt, m->partition, m->offset, 1000);
            rd_kafka_message_destroy(m);
            return;
        }
        s->polled = np, s->cap_polled = nc;
    }
    s->polled[s->n_polled++] = m;
}

/* Sends m to the dead-letter topic with reason and marks it done. 0, or -1 when the producer did
 * not deliver it (a hard stop, or a failure it reports): then m is not done, s->dlq_failed is set
 * and the caller keeps the event as held (its offset is never committed past). */
static int dead_letter(tsvc *s, const rd_kafka_message_t *m, const char *reason)
{
    kp_warn("trainer: dead-letter %s[%" PRId32 "]@%" PRId64 ": %s", rd_kafka_topic_name(m->rkt),
            m->partition, m->offset, reason);
    rd_kafka_headers_t *h = kp_dlq_headers(m, reason);
    kp_outmsg o = {s->cfg->topic_dlq, m->key, m->key_len, m->payload, m->len, h, 0, KP_OUT_PENDING};
    int rc = kp_producer_deliver(s->producer, &o, 1, s->cfg, &kp_worker_stop_hard, tick, s);
    if (h) rd_kafka_headers_destroy(h);
    if (rc || o.state != KP_OUT_DONE) {
        kp_error("trainer: dead letter of %s[%" PRId32 "]@%" PRId64
                 " not delivered to %s: stopping without committing past it",
                 rd_kafka_topic_name(m->rkt), m->partition, m->offset, s->cfg->topic_dlq);
        s->dlq_failed = 1;
        kp_worker_stop = 1;
        return -1;
    }
    int t =
        !strcmp(rd_kafka_topic_name(m->rkt), s->cfg->topic_clicks) ? KP_MT_CLICKS : KP_MT_JUDGMENTS;
    atomic_fetch_add(&kp_m.dead_lettered[t], 1);
    mark_done(s, m);
    return 0;
}

/* Looks up the titles of pending click events in Redis (one MGET). An item Redis answered "no
 * such key" for starts its expiry clock (missing_since_ms); while Redis fails, nothing expires.
 * Returns 0 when Redis answered (or nothing was needed), -1 when it did not. */
static int resolve_titles(tsvc *s)
{
    char err[512];
    int need = 0;
    for (int i = 0; i < s->n_pending; i++)
        if (!s->pending[i].title && !s->pending[i].held) {
            s->lookup_ids[need] = s->pending[i].ad.item_id;
            s->lookup_which[need++] = i;
        }
    if (!need) return 0;
    if (kp_cache_titles(s->cache, s->lookup_ids, need, s->lookup_titles, err, sizeof err)) {
        kp_warn("trainer: %s", err);
        kp_telemetry_cache_result(err);
        atomic_fetch_add(&kp_m.redis_errors, 1);
        return -1;
    }
    kp_telemetry_cache_result(NULL);
    int64_t now = kp_now_ms();
    for (int j = 0; j < need; j++) {
        tevent *ev = &s->pending[s->lookup_which[j]];
        if (s->lookup_titles[j])
            ev->title = s->lookup_titles[j];
        else if (!ev->missing_since_ms)
            ev->missing_since_ms = now;
    }
    return 0;
}

/* ---- one training step over the resolved events ---- */

static int intern(const char ***tab, int *n, const char *s)
{
    for (int i = *n - 1; i >= 0; i--)
        if (!strcmp((*tab)[i], s)) return i;
    (*tab)[*n] = s;
    return (*n)++;
}

/* Adds an event to the training buffer (a ring: the oldest example is replaced). 0, or -1 on OOM
 * (the slot is then emptied and out of the ring). */
static int buffer_push(tsvc *s, const tevent *ev)
{
    texample *x = &s->buf[s->buf_next];
    free(x->title), free(x->key);
    x->title = strdup(ev->title);
    x->key = strdup(ev->is_click_topic ? ev->ad.keyphrase : ev->jd.keyphrase);
    if (!x->title || !x->key) {
        free(x->title), free(x->key);
        x->title = x->key = NULL;
        if (s->buf_len == s->buf_cap) s->buf_len--; /* the slot was the oldest example's */
        return -1;
    }
    x->kind =
        ev->is_click_topic ? (ev->ad.kind == KP_AD_CLICK ? EX_CLICK : EX_IMPRESSION) : EX_JUDGMENT;
    x->position = ev->is_click_topic && ev->ad.position > 0 ? ev->ad.position : 1;
    x->label =
        ev->is_click_topic ? (ev->ad.kind == KP_AD_CLICK ? 1.0f : 0.0f) : (float)ev->jd.score;
    s->buf_next = (s->buf_next + 1) % s->buf_cap;
    if (s->buf_len < s->buf_cap) s->buf_len++;
    return 0;
}

/* Takes the k newest examples out of the buffer again (a step that did not happen): the ring
 * then holds only the examples no push overwrote. */
static void buffer_unpush(tsvc *s, int k)
{
    for (; k > 0 && s->buf_len > 0; k--) {
        s->buf_next = (s->buf_next - 1 + s->buf_cap) % s->buf_cap;
        texample *x = &s->buf[s->buf_next];
        free(x->title), free(x->key);
        x->title = x->key = NULL;
        s->buf_len--;
    }
}

/* The examples of a step: the newest nnew are the nnew slots before buf_next; nold others are
 * drawn from the rest of the buffer. */
static void draw_examples(tsvc *s, const texample **ex, int nnew, int nold)
{
    for (int e = 0; e < nnew; e++)
        ex[e] = &s->buf[(s->buf_next - nnew + e + s->buf_cap) % s->buf_cap];
    for (int e = 0; e < nold; e++) {
        uint64_t back = (uint64_t)nnew + kp_rng_below(&s->rng, (uint64_t)(s->buf_len - nnew));
        ex[nnew + e] = &s->buf[(s->buf_next - (int)back - 1 + 2 * s->buf_cap) % s->buf_cap];
    }
}

/* Adds the rows the last step changed to the rows of the next delta. */
static void mark_changed_rows(tsvc *s)
{
    for (int t = 0; t < kp_bienc_n_towers(s->model); t++) {
        const kp_rowgrad *g = kp_trainer_changed_rows(s->trainer, (kp_tower)t);
        for (int j = 0; j < g->n; j++) {
            uint32_t row = g->rows[j];
            if (!s->row_mark[t][row]) {
                s->row_mark[t][row] = 1;
                s->rows[t][s->nrows[t]++] = row;
            }
        }
    }
}

/* One step on the n events ev (added to the buffer) plus as many examples drawn from the buffer:
 * the stream arrives grouped (one item's sessions together), the draw mixes items so that
 * in-batch negatives are other items' keyphrases. 0 when the step was taken; 1 when the trainer
 * rejected it (reason in why) and -1 on OOM: then the events are out of the buffer again, so a
 * bad one cannot spoil later steps. */
static int take_step(tsvc *s, tevent *ev, int n, char *why, size_t whylen)
{
    const kp_config *c = s->cfg;
    int neg = s->teacher ? c->train_negatives : 0;
    for (int e = 0; e < n; e++)
        if (buffer_push(s, &ev[e])) {
            buffer_unpush(s, e);
            snprintf(why, whylen, "out of memory");
            return -1;
        }
    int nnew = n, nold = s->buf_len - n < n ? s->buf_len - n : n;
    int m = nnew + nold;
    int maxk = m * (1 + neg) + 1, rc = -1;
    unsigned char *mask = NULL;
    const texample **ex = malloc(sizeof(texample *) * (size_t)m);
    const char **items = malloc(sizeof(char *) * (size_t)m);
    const char **keys = malloc(sizeof(char *) * (size_t)maxk);
    int *ia = malloc(sizeof(int) * (size_t)maxk * 4), *ka = ia + maxk, *pos = ia + 2 * maxk;
    int *si = ia + 3 * maxk;
    int *sk = malloc(sizeof(int) * (size_t)maxk * 4), *di = sk + maxk, *dk = sk + 2 * maxk;
    int *soft_i = sk + 3 * maxk;
    int *soft_k = malloc(sizeof(int) * (size_t)maxk);
    float *lab = malloc(sizeof(float) * (size_t)maxk * 3), *slab = lab + maxk, *dt = lab + 2 * maxk;
    const char **ti = malloc(sizeof(char *) * (size_t)maxk),
               **tk = malloc(sizeof(char *) * (size_t)maxk);
    if (!ex || !items || !keys || !ia || !sk || !soft_k || !lab || !ti || !tk) goto out;
    draw_examples(s, ex, nnew, nold);
    int ni = 0, nk = 0, nb = 0, ns = 0, nd = 0, nsoft = 0;
    for (int e = 0; e < m; e++) {
        const texample *x = ex[e];
        int i = intern(&items, &ni, x->title);
        int k = intern(&keys, &nk, x->key);
        if (x->kind == EX_JUDGMENT) {
            si[ns] = i, sk[ns] = k, slab[ns++] = x->label;
        } else {
            ia[nb] = i, ka[nb] = k, pos[nb] = x->position, lab[nb++] = x->label;
            if (x->kind == EX_CLICK) soft_i[nsoft] = i, soft_k[nsoft++] = k;
        }
        if (neg) di[nd] = i, dk[nd++] = k;
    }
    /* distillation candidates: the events' pairs plus random keyphrases of the inventory */
    for (int i = 0; neg && s->inv.n && i < ni; i++)
        for (int r = 0; r < neg && nd < maxk && nk < maxk; r++) {
            int k = intern(&keys, &nk, s->inv.text[kp_rng_below(&s->rng, (uint64_t)s->inv.n)]);
            di[nd] = i, dk[nd++] = k;
        }
    if (nd) {
        for (int j = 0; j < nd; j++)
            ti[j] = items[di[j]], tk[j] = keys[dk[j]];
        if (kp_ce_score(s->teacher, ti, tk, nd, dt)) {
            kp_warn("trainer: teacher failed; step without distillation");
            nd = 0;
        }
    }
    /* in-batch softmax: another keyphrase clicked for the same item in this batch is no negative */
    mask = nsoft ? calloc((size_t)nsoft * (size_t)nk, 1) : NULL;
    for (int r = 0; mask && r < nsoft; r++)
        for (int q = 0; q < nsoft; q++)
            if (soft_i[q] == soft_i[r]) mask[(size_t)r * (size_t)nk + (size_t)soft_k[q]] = 1;
    kp_train_batch b = {0};
    b.n_items = ni, b.items = items, b.n_keys = nk, b.keys = keys;
    b.n_soft = nsoft, b.soft_item = soft_i, b.soft_key = soft_k, b.soft_mask = mask;
    b.n_bce = nb, b.bce_item = ia, b.bce_key = ka, b.bce_pos = pos, b.bce_label = lab;
    b.n_sr = ns, b.sr_item = si, b.sr_key = sk, b.sr_label = slab;
    b.n_dis = nd, b.dis_item = di, b.dis_key = dk, b.dis_teacher = dt;
    kp_train_losses L;
    if (kp_trainer_step(s->trainer, &b, &L, why, whylen)) {
        rc = 1; /* the caller finds the event the trainer rejects */
        goto out;
    }
    atomic_fetch_add(&kp_m.train_steps, 1);
    atomic_fetch_add(&kp_m.train_events, (unsigned long long)n);
    atomic_store(&kp_m.train_loss_micro, (unsigned long long)(L.total * 1e6));
    mark_changed_rows(s);
    s->steps_since_delta++;
    rc = 0;
out:
    if (rc == -1) snprintf(why, whylen, "out of memory");
    if (rc) buffer_unpush(s, n);
    free((void *)ex), free(items), free((void *)keys), free(ia), free(sk), free(soft_k), free(lab);
    free((void *)ti), free((void *)tk), free(mask);
    return rc;
}

/* The records of one transaction: values, their headers, and the outgoing messages. */
typedef struct {
    kp_outmsg *out;
    rd_kafka_headers_t **hdrs;
    int n, cap;
    int ckpt_first; /* index of the checkpoint's first chunk, -1 = none */
} txn_batch;

static void batch_free(txn_batch *b)
{
    for (int i = 0; i < b->n; i++)
        if (b->hdrs[i]) rd_kafka_headers_destroy(b->hdrs[i]);
    free(b->out), free(b->hdrs);
    memset(b, 0, sizeof *b);
    b->ckpt_first = -1;
}

/* Appends one record (value owned by the caller until the batch is published). 0 / -1 (OOM). */
static int batch_add(tsvc *s, txn_batch *b, const kp_model_meta *mm, const void *val, size_t len)
{
    const kp_config *c = s->cfg;
    if (b->n == b->cap) {
        int nc = b->cap ? b->cap * 2 : 16;
        kp_outmsg *no = realloc(b->out, sizeof *no * (size_t)nc);
        if (!no) return -1;
        b->out = no;
        rd_kafka_headers_t **nh = realloc(b->hdrs, sizeof *nh * (size_t)nc);
        if (!nh) return -1;
        b->hdrs = nh;
        b->cap = nc;
    }
    rd_kafka_headers_t *h = kp_model_headers(mm, c->model_hmac_key, c->topic_model, KP_MODEL_KEY,
                                             strlen(KP_MODEL_KEY), val, len);
    if (!h) return -1;
    b->hdrs[b->n] = h;
    b->out[b->n] = (kp_outmsg){c->topic_model, KP_MODEL_KEY, strlen(KP_MODEL_KEY), val, len, h, 0,
                               KP_OUT_PENDING};
    b->n++;
    return 0;
}

/* Writes the checkpoint of the model (and the optimiser state) to path; returns its bytes
 * (*len), or NULL. */
static unsigned char *checkpoint_bytes(tsvc *s, const char *path, size_t *len)
{
    char err[512];
    if (kp_bienc_save_ext(s->model, path, kp_trainer_save_state, s->trainer, err, sizeof err)) {
        kp_error("trainer: checkpoint: %s", err);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n = -1;
    if (f && !fseek(f, 0, SEEK_END) && (n = ftell(f)) > 0 && !fseek(f, 0, SEEK_SET) &&
        (buf = malloc((size_t)n)) && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (f) fclose(f);
    if (!buf) kp_error("trainer: checkpoint %s: cannot read it back", path);
    *len = buf ? (size_t)n : 0;
    return buf;
}

/* Adds the checkpoint of version v (bytes buf[len]) in [train] max_chunk slices. 0 / -1. */
static int batch_add_checkpoint(tsvc *s, txn_batch *b, uint64_t v, const unsigned char *buf,
                                size_t len)
{
    size_t cs = (size_t)s->cfg->train_max_chunk - 1024; /* room for the headers */
    int count = (int)((len + cs - 1) / cs);
    if (count > KP_MODEL_MAX_CHUNKS) return -1;
    b->ckpt_first = b->n;
    for (int i = 0; i < count; i++) {
        size_t off = (size_t)i * cs, n = len - off < cs ? len - off : cs;
        kp_model_meta mm = {
            KP_MODEL_REC_CHECKPOINT, v, s->lineage, 0, 0, i, count, len, kp_now_ms()};
        if (batch_add(s, b, &mm, buf + off, n)) return -1;
    }
    return 0;
}

/* Deletes the model topic's records before offset (those before the previous checkpoint, so a
 * replica reading the deltas before the newest one is not cut off). */
static void delete_before(tsvc *s, int64_t offset)
{
    rd_kafka_t *rk = kp_producer_handle(s->txp);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, s->cfg->topic_model, 0)->offset = offset;
    rd_kafka_DeleteRecords_t *d = rd_kafka_DeleteRecords_new(l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteRecords(rk, &d, 1, NULL, q);
    rd_kafka_DeleteRecords_destroy(d);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    const rd_kafka_topic_partition_list_t *res =
        ev ? rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev)) : NULL;
    if (!ev || rd_kafka_event_error(ev) || !res || !res->cnt || res->elems[0].err)
        kp_warn("trainer: delete records of %s before offset %" PRId64 ": %s", s->cfg->topic_model,
                offset,
                !ev                        ? "timed out"
                : rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev)
                : res && res->cnt          ? rd_kafka_err2str(res->elems[0].err)
                                           : "no result");
    else
        kp_info("trainer: %s: records before offset %" PRId64 " (the previous checkpoint) deleted",
                s->cfg->topic_model, offset);
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
}

/* Publishes, in one transaction: the delta since base_version as version base + 1 (when
 * with_delta), then the checkpoint of that version (when with_ckpt), with the offsets of every
 * event they contain. 0 when committed; -1 when not (nothing of it is visible). */
static int publish(tsvc *s, int with_delta, int with_ckpt)
{
    const kp_config *c = s->cfg;
    char err[512], path[2048], pending[2100];
    uint64_t v = s->base_version + 1;
    void **chunks = NULL;
    size_t *lens = NULL, bytes = 0, ck_len = 0;
    unsigned char *ck = NULL;
    int nch = 0, rc = -1;
    txn_batch b = {.ckpt_first = -1};
    int64_t *landed = NULL;
    rd_kafka_topic_partition_list_t *offs = NULL;
    if (s->fenced) return -1;
    kp_bienc_set_version(s->model, v);
    if (with_delta) {
        const uint32_t *rows[2] = {s->rows[0], s->rows[1]};
        if (kp_delta_build(s->model, s->base_version, rows, s->nrows, (size_t)c->train_max_chunk,
                           &chunks, &lens, &nch, err, sizeof err)) {
            kp_error("trainer: delta %" PRIu64 ": %s", v, err);
            goto out;
        }
        for (int i = 0; i < nch; i++) {
            kp_model_meta mm = {KP_MODEL_REC_DELTA, v, s->lineage, s->base_version,
                                s->base_lineage,    i, nch,        0,
                                kp_now_ms()};
            if (batch_add(s, &b, &mm, chunks[i], lens[i])) goto oom;
            bytes += lens[i];
        }
    }
    if (with_ckpt) {
        /* cached under a name no reader takes until the transaction commits */
        if (!c->train_checkpoint_dir[0] ||
            kp_model_checkpoint_path(c->train_checkpoint_dir, v, s->lineage, path, sizeof path)) {
            kp_error("trainer: [train] checkpoint_dir is missing or too long");
            goto out;
        }
        snprintf(pending, sizeof pending, "%s.pending", path);
        if (!(ck = checkpoint_bytes(s, pending, &ck_len))) goto out;
        if (batch_add_checkpoint(s, &b, v, ck, ck_len)) goto oom;
    }
    if (!(landed = malloc(sizeof *landed * (size_t)(b.n ? b.n : 1))) || !(offs = offsets_list(s)))
        goto oom;
    kp_txn_rc t = kp_producer_txn_publish(s->txp, b.out, b.n, kp_group_handle(s->group), offs,
                                          landed, &kp_worker_stop_hard, err, sizeof err);
    if (t != KP_TXN_COMMITTED) {
        kp_error("trainer: version %" PRIu64 " not published (transaction aborted): %s", v, err);
        if (t == KP_TXN_FATAL) {
            kp_error("trainer: the transactional producer is fenced or failed: stopping (another "
                     "trainer with transactional.id %s runs?)",
                     c->train_transactional_id);
            s->fenced = 1;
            kp_worker_stop = 1;
        }
        goto out;
    }
    rc = 0;
    s->base_version = v;
    s->base_lineage = s->lineage;
    atomic_store(&kp_m.model_version, v);
    atomic_store(&kp_m.model_topic_version, v);
    atomic_store(&kp_m.model_follower_version, v);
    atomic_store(&kp_m.model_lineage, s->lineage);
    if (with_delta) {
        atomic_fetch_add(&kp_m.deltas_published, 1);
        atomic_store(&kp_m.delta_bytes, bytes);
        kp_info("trainer: published model version %" PRIu64 ": %d+%d rows, %zu bytes in %d "
                "chunk(s), lineage %" PRIu64,
                v, s->nrows[0], s->nrows[1], bytes, nch, s->lineage);
        for (int t2 = 0; t2 < 2; t2++) {
            for (int j = 0; j < s->nrows[t2]; j++)
                s->row_mark[t2][s->rows[t2][j]] = 0;
            s->nrows[t2] = 0;
        }
        s->steps_since_delta = 0;
        s->last_delta_ms = kp_now_ms();
    }
    if (with_ckpt) {
        s->checkpointed = v;
        if (rename(pending, path)) kp_warn("trainer: checkpoint cache %s: rename failed", path);
        kp_model_cache_prune(c->train_checkpoint_dir, c->train_checkpoint_keep);
        kp_info("trainer: published checkpoint version %" PRIu64 " (%zu bytes in %d chunk(s))", v,
                ck_len, b.n - b.ckpt_first);
        /* Records before the previous checkpoint go: the topic keeps the newest checkpoint and
         * everything after the one before it, so a replica still reading the deltas that lead to
         * the newest one is not thrown off the log in the middle of them. */
        if (s->ckpt_offset > 0) delete_before(s, s->ckpt_offset);
        s->ckpt_offset = landed[b.ckpt_first];
    }
    goto out;
oom:
    kp_error("trainer: version %" PRIu64 ": out of memory", v);
out:
    if (rc) {
        kp_bienc_set_version(s->model, s->base_version);
        if (with_ckpt && ck) remove(pending);
    }
    if (offs) rd_kafka_topic_partition_list_destroy(offs);
    free(landed);
    free(ck);
    batch_free(&b);
    kp_delta_chunks_free(chunks, lens, nch);
    return rc;
}

/* A delta (and every checkpoint_every versions a checkpoint), with the offsets it contains. */
static int publish_delta(tsvc *s)
{
    uint64_t v = s->base_version + 1;
    return publish(s, 1, v % (uint64_t)s->cfg->train_checkpoint_every == 0);
}

/* ---- the loop ---- */

/* Appends ev to the pending events (growing them and the lookup scratch). 0 / -1 (OOM). */
static int push_pending(tsvc *s, const tevent *ev)
{
    if (s->n_pending == s->cap_pending) {
        int nc = s->cap_pending ? s->cap_pending * 2 : 256;
        tevent *np = realloc(s->pending, sizeof *np * (size_t)nc);
        if (!np) return -1;
        s->pending = np;
        const char **ids = realloc((void *)s->lookup_ids, sizeof *ids * (size_t)nc);
        if (!ids) return -1;
        s->lookup_ids = ids;
        char **titles = realloc(s->lookup_titles, sizeof *titles * (size_t)nc);
        if (!titles) return -1;
        s->lookup_titles = titles;
        int *which = realloc(s->lookup_which, sizeof *which * (size_t)nc);
        if (!which) return -1;
        s->lookup_which = which;
        s->cap_pending = nc;
    }
    s->pending[s->n_pending++] = *ev;
    return 0;
}

/* Decodes and checks m into ev, which owns m from now on. 0, or -1 with why (the caller then
 * dead-letters m and clears ev). */
static int decode_event(tsvc *s, rd_kafka_message_t *m, tevent *ev, char *why, size_t whylen)
{
    memset(ev, 0, sizeof *ev);
    ev->msg = m;
    ev->is_click_topic = !strcmp(rd_kafka_topic_name(m->rkt), s->cfg->topic_clicks);
    atomic_fetch_add(&kp_m.consumed[ev->is_click_topic ? KP_MT_CLICKS : KP_MT_JUDGMENTS], 1);
    if (ev->is_click_topic) {
        if (kp_decode_ad_event(s->codec, m->payload, m->len, &ev->ad, why, whylen) ||
            kp_validate_ad_event(&ev->ad, why, whylen))
            return -1;
        return 0;
    }
    if (kp_decode_judgment(s->codec, m->payload, m->len, &ev->jd, why, whylen) ||
        kp_validate_judgment(&ev->jd, (size_t)s->cfg->max_title_bytes, why, whylen))
        return -1;
    if (!(ev->title = strdup(ev->jd.title))) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

/* Bounds the pending events: at [train] max_pending the input partitions are paused (nothing is
 * dropped: the rest waits in Kafka), at half of it they are resumed. */
static void flow_control(tsvc *s)
{
    int max = s->cfg->train_max_pending, n = s->n_pending + s->n_polled;
    if (!kp_group_paused(s->group) && n >= max) {
        kp_warn("trainer: %d events wait for their titles ([train] max_pending %d): pausing the "
                "input",
                n, max);
        kp_group_pause(s->group, 1);
    } else if (kp_group_paused(s->group) && n <= max / 2) {
        kp_info("trainer: %d events wait for their titles: resuming the input", n);
        kp_group_pause(s->group, 0);
    }
    atomic_store(&kp_m.train_pending, s->n_pending);
}

/* The next message: one kept by tick first, else the consumer's (NULL if none in 50 ms). */
static rd_kafka_message_t *next_message(tsvc *s)
{
    if (!s->n_polled) return kp_group_poll(s->group, 50, NULL);
    rd_kafka_message_t *m = s->polled[0];
    memmove(s->polled, s->polled + 1, sizeof *s->polled * (size_t)--s->n_polled);
    return m;
}

/* [schemas] registry: fetches m's writer schema if the codec does not know it yet, waiting with
 * backoff while the registry cannot answer (m is not dead-lettered meanwhile; it is the oldest
 * unfinished event of its partition, so no later offset is stored). 0, or -1 on a hard stop. */
static int await_schema(tsvc *s, const rd_kafka_message_t *m)
{
    char err[512];
    int backoff = s->cfg->retry_backoff_ms, warned = 0;
    while (kp_sreg_resolve(s->sreg, s->codec, m->payload, m->len, err, sizeof err) ==
           KP_SREG_RETRY) {
        if (!warned++) kp_warn("trainer: %s: waiting for the schema registry", err);
        kp_backoff_sleep(backoff, &kp_worker_stop_hard, NULL, NULL);
        backoff = kp_backoff_next(s->cfg, backoff);
        if (kp_worker_stop_hard) return -1;
    }
    if (warned) kp_info("trainer: schema registry is back");
    return 0;
}

/* Polls up to a batch of events or the linger; bad ones are dead-lettered (one whose dead letter
 * is not delivered is kept, held). 0, or -1 on OOM, an undelivered dead letter or a hard stop
 * while waiting for the schema registry. */
static int poll_events(tsvc *s)
{
    const kp_config *c = s->cfg;
    int cap = c->train_batch_size, polled = 0, first = 1;
    int64_t deadline = kp_now_ms() + c->train_batch_linger_ms;
    while (!kp_worker_stop &&
           (first || (s->n_pending < cap * 4 && s->n_pending < c->train_max_pending &&
                      kp_now_ms() < deadline))) {
        first = 0;
        flow_control(s);
        rd_kafka_message_t *m = next_message(s);
        if (!m) continue;
        if (s->sreg && await_schema(s, m)) {
            rd_kafka_message_destroy(m);
            return -1;
        }
        tevent ev;
        char why[256] = "";
        int bad = decode_event(s, m, &ev, why, sizeof why);
        if (bad && !dead_letter(s, m, why)) {
            tevent_clear(&ev);
            continue;
        }
        ev.held = bad;
        if (push_pending(s, &ev)) {
            tevent_clear(&ev);
            return -1;
        }
        if (bad) return -1;
        if (++polled >= cap) break;
    }
    flow_control(s);
    return 0;
}

/* Moves the resolved pending events, in order, up to a batch, to s->ready; dead-letters those
 * whose item Redis has not known for [train] resolve_timeout_ms. Returns how many are ready. */
static int take_ready(tsvc *s)
{
    const kp_config *c = s->cfg;
    int n = 0, keep = 0;
    int64_t now = kp_now_ms();
    for (int i = 0; i < s->n_pending; i++) {
        tevent *ev = &s->pending[i];
        if (ev->title && !ev->held && n < c->train_batch_size) {
            s->ready[n++] = *ev;
        } else if (!ev->title && !ev->held && ev->missing_since_ms &&
                   now - ev->missing_since_ms > c->train_resolve_timeout_ms) {
            char why[512];
            snprintf(why, sizeof why, "unknown item %s: no title in Redis after %d ms",
                     ev->ad.item_id, c->train_resolve_timeout_ms);
            if (dead_letter(s, ev->msg, why)) {
                ev->held = 1;
                s->pending[keep++] = *ev;
            } else {
                tevent_clear(ev);
            }
        } else {
            s->pending[keep++] = *ev;
        }
    }
    s->n_pending = keep;
    return n;
}

/* A ready event trained on: done (its offset goes with the next delta). */
static void event_done(tsvc *s, tevent *ev)
{
    atomic_fetch_add(&kp_m.processed[ev->is_click_topic ? KP_MT_CLICKS : KP_MT_JUDGMENTS], 1);
    mark_done(s, ev->msg);
    tevent_clear(ev);
}

/* A step over the n ready events. When the trainer rejects the step, each event is tried alone:
 * the one it rejects is dead-lettered, the others train. 0; -1 on OOM or an undelivered dead
 * letter. Events not done go back to the pending ones (held back offsets, never leaked). */
static int step_ready(tsvc *s, int n)
{
    char why[512];
    int rc = take_step(s, s->ready, n, why, sizeof why);
    if (rc == 0) {
        for (int i = 0; i < n; i++)
            event_done(s, &s->ready[i]);
    } else if (rc == 1) {
        kp_warn("trainer: step of %d event(s) rejected (%s): trying them one by one", n, why);
        rc = 0;
        for (int i = 0; i < n && !rc; i++) {
            tevent *ev = &s->ready[i];
            int r = n > 1 ? take_step(s, ev, 1, why, sizeof why) : 1;
            if (r == 0) {
                event_done(s, ev);
            } else if (r == 1) {
                char reason[600];
                snprintf(reason, sizeof reason, "rejected by the training step: %s", why);
                if (dead_letter(s, ev->msg, reason))
                    ev->held = 1, rc = -1;
                else
                    tevent_clear(ev);
            } else {
                rc = -1;
            }
        }
    } else {
        kp_error("trainer: step not taken: %s", why);
    }
    for (int i = 0; i < n; i++) {
        if (s->ready[i].msg && push_pending(s, &s->ready[i])) tevent_clear(&s->ready[i]);
        memset(&s->ready[i], 0, sizeof s->ready[i]);
    }
    return rc ? -1 : 0;
}

/* Learns until kp_worker_stop. 0, or 1 on a failure. */
static int learn_loop(tsvc *s)
{
    const kp_config *c = s->cfg;
    while (!kp_worker_stop) {
        kp_telemetry_tick(KP_LOOP_TRAIN);
        if (poll_events(s)) return 1;
        if (resolve_titles(s)) /* Redis is failing: back off (the loop polls) */
            kp_backoff_sleep(200, NULL, NULL, NULL);
        int n = take_ready(s);
        if (!n && s->n_pending >= c->train_batch_size * 4) /* waiting for titles: don't spin */
            kp_backoff_sleep(100, NULL, NULL, NULL);
        if (n && step_ready(s, n)) return 1;
        if (s->steps_since_delta && (s->steps_since_delta >= c->train_delta_steps ||
                                     kp_now_ms() - s->last_delta_ms >= c->train_delta_ms))
            if (publish_delta(s)) kp_warn("trainer: delta not published; will retry");
    }
    return 0;
}

/* ---- set-up and teardown ---- */

/* Starts where the replicas are: fences any older trainer (init_transactions, which also aborts
 * its open transaction), then reads the model topic to its end (newest checkpoint + the deltas
 * after it). A trainer that cannot read the topic to its end, or is behind it, does not publish.
 * 0, or an exit code. */
static int load_model(tsvc *s)
{
    const kp_config *c = s->cfg;
    char err[1024];
    if (!(s->txp = kp_producer_new_txn(c, c->train_transactional_id, 120000, err, sizeof err))) {
        kp_error("trainer: transactional producer (%s): %s", c->train_transactional_id, err);
        return 1;
    }
    kp_bienc *m0 = kp_follower_initial_model(c, err, sizeof err);
    kp_follower *f = m0 ? kp_follower_start(c, m0, 0, err, sizeof err) : NULL;
    if (!f) {
        kp_error("trainer: %s", err);
        return 2;
    }
    int at_end = kp_follower_wait_end(f, 300000, &kp_worker_stop);
    uint64_t topic_v = kp_follower_topic_version(f);
    uint64_t ckpt_v = kp_follower_checkpoint_version(f);
    uint32_t gen = 0;
    s->model = kp_follower_stop_ex(f, &s->base_lineage, &gen);
    if (!at_end || kp_bienc_version(s->model) < topic_v) {
        /* Publishing from an older version would reuse version numbers the replicas have. */
        kp_error("trainer: model version %" PRIu64 " but %s is at version %" PRIu64
                 "%s: cannot continue without the newest checkpoint and the deltas after it",
                 kp_bienc_version(s->model), c->topic_model, topic_v,
                 at_end ? "" : " (could not read the topic to its end)");
        return 2;
    }
    if (gen == UINT32_MAX) {
        kp_error("trainer: lineage generations of %s exhausted", c->topic_model);
        return 2;
    }
    s->lineage = kp_model_new_lineage(gen + 1);
    s->base_version = kp_bienc_version(s->model);
    atomic_store(&kp_m.model_version, s->base_version);
    kp_info("trainer: starting at model version %" PRIu64 " (lineage %" PRIu64
            "), publishing as lineage %" PRIu64 " (generation %" PRIu32 ")",
            s->base_version, s->base_lineage, s->lineage, gen + 1);
    s->checkpointed = ckpt_v;
    return 0;
}

/* Restores the optimiser state from the newest cached checkpoint (the trainer's own, or one the
 * follower took from the topic). */
static void restore_optimiser(tsvc *s)
{
    char path[2048], err[512];
    if (!kp_model_newest_checkpoint(s->cfg->train_checkpoint_dir, path, sizeof path, NULL)) return;
    kp_ckpt_reader *r = kp_ckpt_open(path, err, sizeof err);
    if (!r || kp_trainer_load_state(s->trainer, r, err, sizeof err)) {
        kp_warn("trainer: optimiser state not restored (%s): Adam starts afresh", err);
    } else {
        kp_info("trainer: optimiser state restored from %s (step %ld)", path,
                kp_trainer_steps(s->trainer));
    }
    kp_ckpt_close(r);
}

/* The training step's state: optimiser, buffer, changed-row marks. 0, or an exit code. */
static int open_trainer(tsvc *s)
{
    const kp_config *c = s->cfg;
    char err[1024];
    kp_train_config tc;
    kp_train_config_default(&tc);
    tc.w_softmax = (float)c->train_w_ctr;
    tc.w_bce = (float)c->train_w_bce;
    tc.w_sr = (float)c->train_w_sr;
    tc.w_distill = s->teacher ? (float)c->train_w_distill : 0.0f;
    tc.lr = (float)c->train_lr;
    tc.lr_emb = (float)c->train_lr_emb;
    tc.seed = (uint64_t)c->model_seed;
    /* a step trains on up to batch_size new events plus as many from the buffer */
    int maxk = 2 * c->train_batch_size * (1 + c->train_negatives) + 1;
    s->buf_cap =
        c->train_buffer > 2 * c->train_batch_size ? c->train_buffer : 2 * c->train_batch_size;
    if (!(s->buf = calloc((size_t)s->buf_cap, sizeof *s->buf))) return 1;
    if (!(s->trainer = kp_trainer_new(s->model, &tc, 2 * c->train_batch_size, maxk, maxk, 0, err,
                                      sizeof err))) {
        kp_error("trainer: %s", err);
        return 2;
    }
    uint32_t nb = kp_bienc_cfg(s->model)->n_buckets;
    for (int t = 0; t < kp_bienc_n_towers(s->model); t++) {
        s->row_mark[t] = calloc(nb, 1);
        s->rows[t] = malloc(sizeof(uint32_t) * nb);
        if (!s->row_mark[t] || !s->rows[t]) return 1;
    }
    if (!(s->ready = calloc((size_t)c->train_batch_size, sizeof *s->ready))) return 1;
    restore_optimiser(s);
    return 0;
}

/* Codec, registry, Redis, consumer group. 0, or an exit code. */
static int open_io(tsvc *s)
{
    const kp_config *c = s->cfg;
    char err[1024];
    const kp_group_opts go = {
        "trainer", c->train_group, 0, {c->topic_clicks, c->topic_judgments}, 2, 0};
    if (!c->model_hmac_key[0])
        kp_warn("trainer: [model] hmac_key is empty: model records are not authenticated");
    if (!(s->codec = kp_codec_new(err, sizeof err)) ||
        (c->schemas_dir[0] && kp_codec_load_dir(s->codec, c->schemas_dir, err, sizeof err)) ||
        kp_sreg_open(c, &s->sreg, err, sizeof err)) {
        kp_error("trainer: %s", err);
        return 1;
    }
    if (!(s->cache = kp_cache_new(c))) return 1;
    if (!(s->group = kp_group_new_txn(c, &go, err, sizeof err))) {
        kp_error("trainer: %s", err);
        return 1;
    }
    kp_info("trainer: consuming %s and %s in group %s%s", c->topic_clicks, c->topic_judgments,
            c->train_group, s->teacher ? ", distilling the teacher" : "");
    s->last_delta_ms = kp_now_ms();
    return 0;
}

/* The dead-letter producer, and its topic checked: a missing [topics] dlq is fatal now, not a
 * bad event's dead letter refused (and the trainer stopped) later. 0, or an exit code. */
static int open_dlq(tsvc *s)
{
    const kp_config *c = s->cfg;
    char err[1024];
    if (!(s->producer = kp_producer_new(c, err, sizeof err))) {
        kp_error("trainer: %s", err);
        return 1;
    }
    const char *out[] = {c->topic_dlq};
    int t = kp_producer_check_topics(s->producer, out, 1, 10000, err, sizeof err);
    if (t < 0) {
        kp_error("trainer: %s", err);
        return 2;
    }
    if (t > 0) kp_warn("trainer: cannot check the dead-letter topic yet (%s)", err);
    return 0;
}

/* Dead-letter topic, teacher, inventory, model, trainer, I/O. 0, or an exit code. */
static int learn_open(tsvc *s)
{
    const kp_config *c = s->cfg;
    char err[1024];
    kp_rng_seed(&s->rng, (uint64_t)c->model_seed);
    if (!c->train_checkpoint_dir[0]) {
        kp_error("trainer: [train] checkpoint_dir is required");
        return 2;
    }
    int rc = open_dlq(s);
    if (rc) return rc;
    mkdir(c->train_checkpoint_dir, 0755);
    if (c->train_teacher[0] && !(s->teacher = kp_ce_load(c->train_teacher, err, sizeof err))) {
        kp_error("trainer: teacher: %s", err);
        return 2;
    }
    if (c->model_keyphrases[0] && kp_texts_load(c->model_keyphrases, &s->inv, err, sizeof err)) {
        kp_error("trainer: %s", err);
        return 2;
    }
    rc = load_model(s);
    if (!rc) rc = open_trainer(s);
    if (!rc) rc = open_io(s);
    /* A lineage starts from a checkpoint on the topic: a replica on an empty disk needs one. It is
     * a version of its own (the same weights), so every replica takes it. */
    if (!rc && (!s->checkpointed || !s->base_lineage) && publish(s, 0, 1)) rc = 1;
    return rc;
}

/* Publishes what is learnt (unless a hard stop), then frees everything. Returns rc. */
static int learn_close(tsvc *s, int rc, int opened)
{
    /* the final state, with the optimiser's, so that the next trainer continues from it */
    if (opened && !kp_worker_stop_hard && !s->fenced &&
        (s->steps_since_delta || s->checkpointed != s->base_version))
        publish(s, s->steps_since_delta > 0, 1);
    for (int i = 0; i < s->n_pending; i++)
        tevent_clear(&s->pending[i]);
    for (int i = 0; i < s->n_polled; i++)
        rd_kafka_message_destroy(s->polled[i]);
    free(s->polled);
    kp_group_free(s->group);
    kp_producer_free(s->producer, 10000);
    kp_producer_free(s->txp, 10000);
    kp_codec_free(s->codec);
    kp_sreg_free(s->sreg);
    kp_cache_free(s->cache);
    kp_trainer_free(s->trainer);
    kp_bienc_free(s->model);
    kp_ce_free(s->teacher);
    kp_texts_free(&s->inv);
    for (int t = 0; t < 2; t++)
        free(s->row_mark[t]), free(s->rows[t]);
    free(s->pending);
    free((void *)s->lookup_ids), free(s->lookup_titles), free(s->lookup_which);
    free(s->ready);
    for (int i = 0; s->buf && i < s->buf_cap; i++)
        free(s->buf[i].title), free(s->buf[i].key);
    free(s->buf);
    return rc;
}

int kp_learn_run(const kp_config *c)
{
    tsvc s = {.cfg = c, .ckpt_offset = -1};
    int rc = learn_open(&s);
    if (rc) return learn_close(&s, rc, 0);
    return learn_close(&s, learn_loop(&s), 1);
}

/* learn_queue.c -- the trainer's events from poll to done (contracts in learn_queue.h). */
#include "consumer/learn_queue.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/telemetry.h"
#include "common/util.h"

static kp_lpart *part_of(kp_lstate *s, const rd_kafka_message_t *m)
{
    const char *t = rd_kafka_topic_name(m->rkt);
    for (int i = 0; i < s->n_parts; i++)
        if (s->parts[i].partition == m->partition && !strcmp(s->parts[i].topic, t))
            return &s->parts[i];
    if (s->n_parts == KP_LEARN_MAX_PARTS) return NULL;
    kp_lpart *p = &s->parts[s->n_parts++];
    snprintf(p->topic, sizeof p->topic, "%s", t);
    p->partition = m->partition;
    p->done = -1;
    return p;
}

void kp_lq_mark_done(kp_lstate *s, const rd_kafka_message_t *m)
{
    kp_lpart *p = part_of(s, m);
    if (p && m->offset + 1 > p->done) p->done = m->offset + 1;
}

rd_kafka_topic_partition_list_t *kp_lq_offsets(kp_lstate *s)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->n_parts);
    for (int i = 0; i < s->n_parts; i++) {
        kp_lpart *p = &s->parts[i];
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

void kp_lq_tick(void *opaque)
{
    kp_lstate *s = opaque;
    if (s->txp) rd_kafka_poll(kp_producer_handle(s->txp), 0);
    rd_kafka_message_t *m = s->group ? kp_group_poll(s->group, 0, NULL) : NULL;
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

int kp_lq_dead_letter(kp_lstate *s, const rd_kafka_message_t *m, const char *reason)
{
    kp_warn("trainer: dead-letter %s[%" PRId32 "]@%" PRId64 ": %s", rd_kafka_topic_name(m->rkt),
            m->partition, m->offset, reason);
    rd_kafka_headers_t *h = kp_dlq_headers(m, reason);
    kp_outmsg o = {s->cfg->topic_dlq, m->key, m->key_len, m->payload, m->len, h, 0, KP_OUT_PENDING};
    int rc = kp_producer_deliver(s->producer, &o, 1, s->cfg, &kp_worker_stop_hard, kp_lq_tick, s);
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
    kp_lq_mark_done(s, m);
    return 0;
}

int kp_lq_resolve_titles(kp_lstate *s)
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
        kp_levent *ev = &s->pending[s->lookup_which[j]];
        if (s->lookup_titles[j])
            ev->title = s->lookup_titles[j];
        else if (!ev->missing_since_ms)
            ev->missing_since_ms = now;
    }
    return 0;
}

int kp_lq_push(kp_lstate *s, const kp_levent *ev)
{
    if (s->n_pending == s->cap_pending) {
        int nc = s->cap_pending ? s->cap_pending * 2 : 256;
        kp_levent *np = realloc(s->pending, sizeof *np * (size_t)nc);
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

/* Bounds the pending events: at [train] max_pending the input partitions are paused (nothing is
 * dropped: the rest waits in Kafka), at half of it they are resumed. */
static void flow_control(kp_lstate *s)
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
static rd_kafka_message_t *next_message(kp_lstate *s)
{
    if (!s->n_polled) return kp_group_poll(s->group, 50, NULL);
    rd_kafka_message_t *m = s->polled[0];
    memmove(s->polled, s->polled + 1, sizeof *s->polled * (size_t)--s->n_polled);
    return m;
}

/* [schemas] registry: fetches m's writer schema if the codec does not know it yet, waiting with
 * backoff while the registry cannot answer (m is not dead-lettered meanwhile; it is the oldest
 * unfinished event of its partition, so no later offset is stored). 0, or -1 on a hard stop. */
static int await_schema(kp_lstate *s, const rd_kafka_message_t *m)
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

int kp_lq_poll(kp_lstate *s)
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
        kp_levent ev;
        char why[256] = "";
        int bad = kp_levent_decode(s->codec, s->cfg, m, &ev, why, sizeof why);
        if (bad && !kp_lq_dead_letter(s, m, why)) {
            kp_levent_clear(&ev);
            continue;
        }
        ev.held = bad;
        if (kp_lq_push(s, &ev)) {
            kp_levent_clear(&ev);
            return -1;
        }
        if (bad) return -1;
        if (++polled >= cap) break;
    }
    flow_control(s);
    return 0;
}

int kp_lq_take_ready(kp_lstate *s)
{
    const kp_config *c = s->cfg;
    int n = 0, keep = 0;
    int64_t now = kp_now_ms();
    for (int i = 0; i < s->n_pending; i++) {
        kp_levent *ev = &s->pending[i];
        if (ev->title && !ev->held && n < c->train_batch_size) {
            s->ready[n++] = *ev;
        } else if (!ev->title && !ev->held && ev->missing_since_ms &&
                   now - ev->missing_since_ms > c->train_resolve_timeout_ms) {
            char why[512];
            snprintf(why, sizeof why, "unknown item %s: no title in Redis after %d ms",
                     ev->ad.item_id, c->train_resolve_timeout_ms);
            if (kp_lq_dead_letter(s, ev->msg, why)) {
                ev->held = 1;
                s->pending[keep++] = *ev;
            } else {
                kp_levent_clear(ev);
            }
        } else {
            s->pending[keep++] = *ev;
        }
    }
    s->n_pending = keep;
    return n;
}

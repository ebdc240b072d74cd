#include "producer/producer.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/telemetry.h"
#include "common/util.h"

struct kp_producer {
    rd_kafka_t *rk;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    kp_outmsg *o = m->_private;
    if (!o) return;
    if (m->err) {
        atomic_fetch_add(&kp_m.producer_errors, 1);
        kp_warn("delivery to %s failed: %s", rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        o->state = KP_OUT_FAILED;
    } else {
        if (o->is_suggestion) atomic_fetch_add(&kp_m.suggestions_delivered, 1);
        o->state = KP_OUT_DONE;
    }
}

kp_producer *kp_producer_new(const kp_config *c, char *err, size_t errlen)
{
    char e[512];
    rd_kafka_conf_t *conf = NULL;
    kp_producer *p = calloc(1, sizeof *p);
    if (!p) {
        kp_errf(err, errlen, "out of memory");
        goto err;
    }
    if (!(conf = kp_kafka_producer_conf(c, "5", on_delivery, err, errlen))) goto err;
    if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e))) {
        kp_errf(err, errlen, "producer: %s", e);
        goto err;
    }
    return p; /* conf is owned by rk now */
err:
    if (conf) rd_kafka_conf_destroy(conf);
    free(p);
    return NULL;
}

rd_kafka_t *kp_producer_handle(kp_producer *p)
{
    return p->rk;
}

int kp_producer_free(kp_producer *p, int timeout_ms)
{
    if (!p) return 0;
    rd_kafka_flush(p->rk, timeout_ms);
    int left = rd_kafka_outq_len(p->rk);
    if (left) kp_warn("producer: %d records still undelivered at shutdown", left);
    rd_kafka_destroy(p->rk);
    free(p);
    return left;
}

static int send_one(kp_producer *p, kp_outmsg *o)
{
    rd_kafka_headers_t *h = o->hdrs ? rd_kafka_headers_copy(o->hdrs) : NULL;
    for (;;) {
        o->state = KP_OUT_PENDING;
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_KEY((void *)o->key, o->keylen),
            RD_KAFKA_V_VALUE((void *)o->val, o->vallen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(o), RD_KAFKA_V_END);
        if (!e) return 0; /* headers are librdkafka's now */
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(p->rk, 50);
            continue;
        }
        if (h) rd_kafka_headers_destroy(h);
        kp_warn("produce to %s: %s", o->topic, rd_kafka_err2str(e));
        o->state = KP_OUT_FAILED;
        atomic_fetch_add(&kp_m.producer_errors, 1);
        return -1;
    }
}

int kp_producer_deliver(kp_producer *p, kp_outmsg *msgs, int n, const kp_config *c,
                        volatile sig_atomic_t *abort_flag, kp_tick_fn tick, void *tick_opaque)
{
    int backoff = c->retry_backoff_ms;
    for (;;) {
        for (int i = 0; i < n; i++)
            if (msgs[i].state != KP_OUT_DONE) send_one(p, &msgs[i]);
        for (;;) {
            int pending = 0;
            for (int i = 0; i < n; i++)
                pending += msgs[i].state == KP_OUT_PENDING;
            if (!pending) break;
            rd_kafka_poll(p->rk, 20);
            if (tick) tick(tick_opaque);
            if (abort_flag && *abort_flag) goto aborted;
        }
        char fe[512];
        if (rd_kafka_fatal_error(p->rk, fe, sizeof fe)) {
            /* e.g. the idempotent producer lost its sequence: nothing more can be delivered */
            kp_error("producer: fatal error: %s", fe);
            goto aborted;
        }
        int failed = 0;
        for (int i = 0; i < n; i++)
            failed += msgs[i].state == KP_OUT_FAILED;
        if (!failed) return 0;
        kp_warn("producer: %d of %d records failed; retrying in %d ms", failed, n, backoff);
        kp_backoff_sleep(backoff, abort_flag, tick, tick_opaque);
        if (abort_flag && *abort_flag) return -1;
        backoff = kp_backoff_next(c, backoff);
    }
aborted:
    /* The caller will free msgs: drop what is still queued and wait for the reports of what is
     * in flight, so no delivery callback can touch msgs afterwards. */
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE);
    for (;;) {
        int pending = 0;
        for (int i = 0; i < n; i++)
            pending += msgs[i].state == KP_OUT_PENDING;
        if (!pending) return -1;
        rd_kafka_poll(p->rk, 100);
    }
}

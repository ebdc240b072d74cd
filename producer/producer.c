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
    void **orphans; /* slots of transactions given up with reports missing: freed after rk */
    int norphans;
};

/* Errors that sending the same record again cannot cure. A topic librdkafka knows to be missing
 * (__UNKNOWN_TOPIC, after topic.metadata.propagation.max.ms) is one; the broker's
 * UNKNOWN_TOPIC_OR_PART is not (it is also what a broker answers while it loads its logs). */
static kp_out_state permanent(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return KP_OUT_TOO_LARGE;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return KP_OUT_REJECTED;
    default:
        return KP_OUT_FAILED;
    }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    kp_outmsg *o = m->_private;
    if (!o) return;
    if (m->err) {
        atomic_fetch_add(&kp_m.producer_errors, 1);
        o->state = permanent(m->err);
        kp_warn("delivery to %s failed%s: %s", rd_kafka_topic_name(m->rkt),
                o->state == KP_OUT_FAILED ? "" : " for good", rd_kafka_err2str(m->err));
    } else {
        if (o->is_suggestion) atomic_fetch_add(&kp_m.suggestions_delivered, 1);
        o->state = KP_OUT_DONE;
    }
}

/* A record of a transaction: the message and where it landed (the delivery report's offset). */
typedef struct {
    kp_outmsg o; /* first: the opaque of the record points here */
    int64_t offset;
} txn_slot;

static void on_delivery_txn(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    txn_slot *s = m->_private;
    if (s && !m->err) s->offset = m->offset;
    on_delivery(rk, m, opaque);
}

static int send_one(kp_producer *p, kp_outmsg *o);

static kp_producer *producer_new(const kp_config *c, const char *txn_id, char *err, size_t errlen)
{
    char e[512];
    rd_kafka_conf_t *conf = NULL;
    kp_producer *p = calloc(1, sizeof *p);
    if (!p) {
        kp_errf(err, errlen, "out of memory");
        goto err;
    }
    /* linger 1 ms unless [kafka] linger.ms says otherwise (every user of kp_producer_new: serve,
     * trainer, label, rescore): a serve batch enqueues its records at once and then waits for
     * every delivery report, so lingering only delays the batch (5 ms cost ~10% of a worker's
     * drain rate; 0 sends the first record alone: slower too) */
    if (!(conf =
              kp_kafka_producer_conf(c, "1", txn_id ? on_delivery_txn : on_delivery, err, errlen)))
        goto err;
    if (txn_id && kp_kafka_conf_force(conf, "transactional.id", txn_id, err, errlen)) goto err;
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

kp_producer *kp_producer_new(const kp_config *c, char *err, size_t errlen)
{
    return producer_new(c, NULL, err, errlen);
}

/* err <- e's message; destroys e. */
static void txn_err(rd_kafka_error_t *e, const char *what, char *err, size_t errlen)
{
    kp_errf(err, errlen, "%s: %s", what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
}

kp_producer *kp_producer_new_txn(const kp_config *c, const char *txn_id, int timeout_ms, char *err,
                                 size_t errlen)
{
    kp_producer *p = producer_new(c, txn_id, err, errlen);
    if (!p) return NULL;
    rd_kafka_error_t *e = rd_kafka_init_transactions(p->rk, timeout_ms);
    if (e) {
        txn_err(e, "init transactions", err, errlen);
        rd_kafka_destroy(p->rk);
        free(p);
        return NULL;
    }
    return p;
}

/* How long a transaction waits for the reports of what it purged (a hard stop, a fatal error). */
#define TXN_PURGE_WAIT_MS 10000

/* Aborts the open transaction. KP_TXN_ABORTED, or KP_TXN_FATAL when even that fails. */
static kp_txn_rc txn_abort(kp_producer *p, char *err, size_t errlen)
{
    rd_kafka_error_t *e = rd_kafka_abort_transaction(p->rk, 60000);
    if (!e) return KP_TXN_ABORTED;
    char why[512];
    txn_err(e, "abort transaction", why, sizeof why);
    kp_errf(err, errlen, "%s (after: %s)", why, err);
    return KP_TXN_FATAL;
}

/* What an error of a transactional call means; destroys e. */
static kp_txn_rc txn_fail(kp_producer *p, rd_kafka_error_t *e, const char *what, char *err,
                          size_t errlen)
{
    int fatal = rd_kafka_error_is_fatal(e);
    txn_err(e, what, err, errlen);
    /* abortable or not, this transaction is over: abort it (a fatal error leaves nothing to do) */
    return fatal ? KP_TXN_FATAL : txn_abort(p, err, errlen);
}

kp_txn_rc kp_producer_txn_publish(kp_producer *p, kp_outmsg *msgs, int n, rd_kafka_t *consumer,
                                  const rd_kafka_topic_partition_list_t *offsets, int64_t *landed,
                                  kp_stop_flag *abort_flag, char *err, size_t errlen)
{
    txn_slot *sl = calloc((size_t)(n > 0 ? n : 1), sizeof *sl);
    if (!sl) {
        kp_errf(err, errlen, "out of memory");
        return KP_TXN_ABORTED;
    }
    rd_kafka_error_t *e = rd_kafka_begin_transaction(p->rk);
    if (e) {
        int fatal = rd_kafka_error_is_fatal(e);
        txn_err(e, "begin transaction", err, errlen);
        free(sl);
        return fatal ? KP_TXN_FATAL : KP_TXN_ABORTED;
    }
    int sent = 0, bad = 0, purged = 0, refused = 0;
    for (; sent < n; sent++) {
        sl[sent].o = msgs[sent];
        sl[sent].offset = -1;
        if (send_one(p, &sl[sent].o)) {
            msgs[sent].state = sl[sent].o.state;
            refused = sl[sent].o.state == KP_OUT_TOO_LARGE || sl[sent].o.state == KP_OUT_REJECTED;
            bad = 1;
            break;
        }
    }
    /* Every delivery report of what was sent, before sl is freed. A hard stop or a fatal error
     * (fenced) purges what is queued and in flight and waits at most TXN_PURGE_WAIT_MS for the
     * purged records' reports: after a fatal error librdkafka itself purges only the queued ones,
     * and the reports of those in flight may never come (a fenced trainer waited for ever). */
    int pending = 0;
    uint64_t give_up = 0;
    for (;;) {
        pending = 0;
        for (int i = 0; i < sent; i++)
            pending += sl[i].o.state == KP_OUT_PENDING;
        if (!pending) break;
        if (!purged &&
            ((abort_flag && atomic_load(abort_flag)) || rd_kafka_fatal_error(p->rk, NULL, 0))) {
            kp_warn("producer: %s: purging the transaction's %d record(s) queued or in flight",
                    rd_kafka_fatal_error(p->rk, NULL, 0) ? "fatal error" : "hard stop", pending);
            rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            purged = 1;
            give_up = kp_mono_us() + (uint64_t)TXN_PURGE_WAIT_MS * 1000u;
        }
        if (purged && kp_mono_us() >= give_up) break;
        rd_kafka_poll(p->rk, 20);
    }
    for (int i = 0; i < sent; i++) {
        msgs[i].state = sl[i].o.state == KP_OUT_PENDING ? KP_OUT_FAILED : sl[i].o.state;
        bad |= sl[i].o.state != KP_OUT_DONE;
        refused |= sl[i].o.state == KP_OUT_TOO_LARGE || sl[i].o.state == KP_OUT_REJECTED;
        if (landed) landed[i] = sl[i].offset;
    }
    if (pending) { /* a late report would write into sl: it lives until rd_kafka_destroy */
        void **o = realloc(p->orphans, sizeof *o * (size_t)(p->norphans + 1));
        if (o) { /* else sl is left to the process */
            p->orphans = o;
            o[p->norphans++] = sl;
        }
        kp_error("producer: %d delivery report(s) of the transaction still missing %d ms after the "
                 "purge: given up",
                 pending, TXN_PURGE_WAIT_MS);
        bad = 1;
    } else {
        free(sl);
    }
    if (bad && rd_kafka_fatal_error(p->rk, NULL, 0)) {
        char fe[512];
        rd_kafka_fatal_error(p->rk, fe, sizeof fe);
        kp_errf(err, errlen, "fatal error: %s", fe);
        return KP_TXN_FATAL; /* nothing to abort: the producer is unusable */
    }
    if (bad) {
        kp_errf(err, errlen, "a record of the transaction was %s",
                refused ? "refused for good (too large, or its topic is missing)"
                        : "not delivered");
        kp_txn_rc r = txn_abort(p, err, errlen);
        return refused ? KP_TXN_FATAL : r; /* the same records would be refused again */
    }
    if (offsets && offsets->cnt && consumer) {
        rd_kafka_consumer_group_metadata_t *gm = rd_kafka_consumer_group_metadata(consumer);
        e = rd_kafka_send_offsets_to_transaction(p->rk, offsets, gm, 60000);
        rd_kafka_consumer_group_metadata_destroy(gm);
        if (e) return txn_fail(p, e, "send offsets to transaction", err, errlen);
    }
    const char *hold = getenv("KPREC_TEST_TXN_HOLD_MS");
    if (hold && atoi(hold) > 0) {
        kp_warn("producer: test hook: holding the transaction open for %s ms", hold);
        kp_backoff_sleep(atoi(hold), NULL, NULL, NULL);
    }
    if (abort_flag && atomic_load(abort_flag)) {
        kp_errf(err, errlen, "stopped before the commit");
        return txn_abort(p, err, errlen);
    }
    for (int tries = 0;; tries++) {
        e = rd_kafka_commit_transaction(p->rk, 60000);
        if (!e) return KP_TXN_COMMITTED;
        if (rd_kafka_error_is_retriable(e) && tries < 5) {
            kp_warn("producer: commit transaction: %s; retrying", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            continue;
        }
        return txn_fail(p, e, "commit transaction", err, errlen);
    }
}

rd_kafka_t *kp_producer_handle(kp_producer *p)
{
    return p->rk;
}

/* The number of records queued or in flight: at most timeout_ms of polling for them, ending early
 * (everything purged) once *abort_flag is non-zero. */
static int drain(kp_producer *p, int timeout_ms, kp_stop_flag *abort_flag)
{
    uint64_t end = kp_mono_us() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000u;
    int purged = 0;
    while (rd_kafka_outq_len(p->rk) > 0) {
        if (!purged && abort_flag && atomic_load(abort_flag)) {
            rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            purged = 1;
            end = kp_mono_us() + 1000000u; /* the purged records' reports */
        }
        if (kp_mono_us() >= end) break;
        rd_kafka_poll(p->rk, 50);
    }
    return rd_kafka_outq_len(p->rk);
}

int kp_producer_close(kp_producer *p, int timeout_ms, kp_stop_flag *abort_flag)
{
    if (!p) return 0;
    int left = drain(p, timeout_ms, abort_flag);
    if (left) kp_warn("producer: %d records still undelivered at shutdown", left);
    rd_kafka_destroy(p->rk);
    for (int i = 0; i < p->norphans; i++) /* no delivery callback runs after rd_kafka_destroy */
        free(p->orphans[i]);
    free(p->orphans);
    free(p);
    return left;
}

int kp_producer_free(kp_producer *p, int timeout_ms)
{
    return kp_producer_close(p, timeout_ms, NULL);
}

int kp_producer_check_topics(kp_producer *p, const char *const *topics, int n, int timeout_ms,
                             char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(p->rk, 1, NULL, &md, timeout_ms);
    if (e) {
        kp_errf(err, errlen, "cluster metadata: %s", rd_kafka_err2str(e));
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        int found = 0;
        for (int t = 0; t < md->topic_cnt && !found; t++)
            found = !strcmp(md->topics[t].topic, topics[i]) && !md->topics[t].err;
        if (!found) {
            kp_errf(err, errlen,
                    "topic %s does not exist (create it: kprec topics create -c FILE, or set "
                    "[topics] to the topics the cluster has)",
                    topics[i]);
            rc = -1;
        }
    }
    rd_kafka_metadata_destroy(md);
    return rc;
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
        o->state = permanent(e);
        kp_warn("produce to %s (%zu bytes)%s: %s", o->topic, o->vallen,
                o->state == KP_OUT_FAILED ? "" : " refused for good", rd_kafka_err2str(e));
        atomic_fetch_add(&kp_m.producer_errors, 1);
        return -1;
    }
}

/* A dead-letter copy refused for its size: keeps a prefix of the value (at most
 * KP_DLQ_PREFIX_BYTES, halved on every refusal after that) and says so in header "truncated" (the
 * original length). 1 when o was cut and is to be sent again, 0 when it cannot be (not a
 * dead-letter copy, or nothing left to cut). */
static int cut_dead_letter(kp_outmsg *o, const kp_config *c)
{
    if (!o->hdrs || strcmp(o->topic, c->topic_dlq)) return 0;
    const void *v;
    size_t sz;
    size_t orig = o->vallen;
    if (!rd_kafka_header_get_last(o->hdrs, "truncated", &v, &sz)) {
        char num[32];
        snprintf(num, sizeof num, "%.*s", (int)(sz < sizeof num ? sz : sizeof num - 1),
                 (const char *)v);
        orig = (size_t)strtoull(num, NULL, 10);
        if (!o->vallen) return 0; /* headers and key alone are refused */
        o->vallen /= 2;
    } else {
        char num[32];
        snprintf(num, sizeof num, "%zu", orig);
        if (rd_kafka_header_add(o->hdrs, "truncated", -1, num, -1)) return 0;
        if (o->vallen > KP_DLQ_PREFIX_BYTES)
            o->vallen = KP_DLQ_PREFIX_BYTES;
        else
            o->vallen /= 2;
    }
    kp_warn("dead-letter copy of %zu bytes is too large: sending its first %zu bytes (header "
            "\"truncated\"; topic/partition/offset say where the whole record is)",
            orig, o->vallen);
    return 1;
}

/* Waits for the delivery report of every PENDING message of msgs. */
static void wait_reports(kp_producer *p, kp_outmsg *msgs, int n)
{
    for (;;) {
        int pending = 0;
        for (int i = 0; i < n; i++)
            pending += msgs[i].state == KP_OUT_PENDING;
        if (!pending) return;
        rd_kafka_poll(p->rk, 100);
    }
}

kp_send_rc kp_producer_send(kp_producer *p, kp_outmsg *msgs, int n, const kp_config *c,
                            kp_stop_flag *abort_flag, kp_tick_fn tick, void *tick_opaque)
{
    int again = 1;
    while (again) {
        again = 0;
        for (int i = 0; i < n; i++)
            if (msgs[i].state != KP_OUT_DONE && msgs[i].state != KP_OUT_REJECTED)
                send_one(p, &msgs[i]);
        for (;;) {
            int pending = 0;
            for (int i = 0; i < n; i++)
                pending += msgs[i].state == KP_OUT_PENDING;
            /* a fatal error: the reports of what is in flight may never come: purged below, and
             * wait_reports then relies on a purge reporting every record it purges (msgs are the
             * caller's, so the wait cannot be cut short the way a transaction's is) */
            if (!pending || rd_kafka_fatal_error(p->rk, NULL, 0)) break;
            rd_kafka_poll(p->rk, 20);
            if (tick) tick(tick_opaque);
            if (abort_flag && atomic_load(abort_flag)) {
                /* The caller will free msgs: drop what is queued or in flight (a hard stop is
                 * prompt: its delivery is unknown, its offsets are not stored) and wait for the
                 * reports, so no delivery callback can touch msgs afterwards. */
                rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
                wait_reports(p, msgs, n);
                return KP_SEND_ABORTED;
            }
        }
        char fe[512];
        if (rd_kafka_fatal_error(p->rk, fe, sizeof fe)) {
            /* e.g. the idempotent producer lost its sequence: nothing more can be delivered */
            kp_error("producer: fatal error: %s", fe);
            rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            wait_reports(p, msgs, n);
            return KP_SEND_FATAL;
        }
        for (int i = 0; i < n; i++) {
            if (msgs[i].state != KP_OUT_TOO_LARGE) continue;
            if (cut_dead_letter(&msgs[i], c))
                again = 1;
            else
                msgs[i].state = KP_OUT_REJECTED;
        }
    }
    int failed = 0, rejected = 0;
    for (int i = 0; i < n; i++) {
        failed += msgs[i].state == KP_OUT_FAILED;
        rejected += msgs[i].state == KP_OUT_REJECTED;
    }
    if (rejected) {
        kp_error("producer: %d of %d records refused for good (see the warnings above)", rejected,
                 n);
        return KP_SEND_REJECTED;
    }
    return failed ? KP_SEND_RETRY : KP_SEND_DONE;
}

int kp_producer_deliver(kp_producer *p, kp_outmsg *msgs, int n, const kp_config *c,
                        kp_stop_flag *abort_flag, kp_tick_fn tick, void *tick_opaque)
{
    int backoff = c->retry_backoff_ms;
    for (;;) {
        kp_send_rc r = kp_producer_send(p, msgs, n, c, abort_flag, tick, tick_opaque);
        if (r == KP_SEND_DONE) return 0;
        if (r != KP_SEND_RETRY) return -1;
        int failed = 0;
        for (int i = 0; i < n; i++)
            failed += msgs[i].state == KP_OUT_FAILED;
        kp_warn("producer: %d of %d records failed; retrying in %d ms", failed, n, backoff);
        kp_backoff_sleep(backoff, abort_flag, tick, tick_opaque);
        if (abort_flag && atomic_load(abort_flag)) return -1;
        backoff = kp_backoff_next(c, backoff);
    }
}

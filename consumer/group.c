#include "consumer/group.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/telemetry.h"
#include "common/util.h"
#include "producer/kafka.h"

kp_stop_flag kp_worker_stop;
kp_stop_flag kp_worker_stop_hard;

struct kp_group {
    rd_kafka_t *rk;
    const char *who;
    int paused, count_rebalances;
    rd_kafka_topic_partition_list_t *revoked; /* since kp_group_forget_revoked; NULL: none */
    rd_kafka_topic_partition_list_t *done;    /* per partition, the offset after this process's
                                                 last acknowledged work (kp_group_store) */
    void (*on_revoke)(void *ctx);             /* kp_group_on_revoke */
    void *on_revoke_ctx;
};

/* Pauses or resumes parts; every error (the call's, each partition's) logged. 0 / -1. */
static int pause_parts(kp_group *g, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts,
                       int pause)
{
    rd_kafka_resp_err_t e =
        pause ? rd_kafka_pause_partitions(rk, parts) : rd_kafka_resume_partitions(rk, parts);
    int rc = e ? -1 : 0;
    if (e) kp_error("%s: %s: %s", g->who, pause ? "pause" : "resume", rd_kafka_err2str(e));
    for (int i = 0; i < parts->cnt; i++)
        if (parts->elems[i].err) {
            kp_error("%s: %s %s[%d]: %s", g->who, pause ? "pause" : "resume", parts->elems[i].topic,
                     (int)parts->elems[i].partition, rd_kafka_err2str(parts->elems[i].err));
            rc = -1;
        }
    return rc;
}

static void log_error(const kp_group *g, const char *what, rd_kafka_error_t *e)
{
    if (!e) return;
    kp_error("%s: %s: %s", g->who, what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
}

/* A partition this process owned before may come back at a committed offset below what it had
 * finished: its commits failed while its membership was lost (a broker outage longer than the
 * session timeout answers them with UNKNOWN_MEMBER_ID), so the group's record is behind its own.
 * Starting there would redo that work, and a crash soon after would make the next owner redo it
 * too. So each such partition starts at max(committed, done) and that offset is committed at
 * once. Only offsets of acknowledged work are in g->done (kp_group_store), so no event is
 * skipped that was not done. Runs in the rebalance callback, before the assign. */
static rd_kafka_topic_partition_list_t *resume_done(kp_group *g, rd_kafka_t *rk,
                                                    rd_kafka_topic_partition_list_t *parts)
{
    if (!g->done || !g->done->cnt) return NULL;
    rd_kafka_topic_partition_list_t *ask = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++)
        if (rd_kafka_topic_partition_list_find(g->done, parts->elems[i].topic,
                                               parts->elems[i].partition))
            rd_kafka_topic_partition_list_add(ask, parts->elems[i].topic,
                                              parts->elems[i].partition);
    rd_kafka_topic_partition_list_t *fix = NULL;
    if (!ask->cnt) goto out;
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, ask, 10000);
    if (e) {
        kp_warn("%s: rebalance: committed offsets: %s (starting at the committed offsets)", g->who,
                rd_kafka_err2str(e));
        goto out;
    }
    for (int i = 0; i < ask->cnt; i++) {
        const rd_kafka_topic_partition_t *a = &ask->elems[i];
        rd_kafka_topic_partition_t *d =
            rd_kafka_topic_partition_list_find(g->done, a->topic, a->partition);
        if (a->err || d->offset <= a->offset) continue;
        /* a log now shorter than what was done here (the topic recreated, or truncated by an
         * unclean election): the remembered offset means nothing any more */
        int64_t lo, hi;
        if (!rd_kafka_query_watermark_offsets(rk, a->topic, a->partition, &lo, &hi, 5000) &&
            hi < d->offset) {
            kp_warn("%s: rebalance: %s[%d] ends at %lld, before this worker's last acknowledged "
                    "offset %lld: forgotten",
                    g->who, a->topic, (int)a->partition, (long long)hi, (long long)d->offset);
            d->offset = RD_KAFKA_OFFSET_INVALID;
            continue;
        }
        char had[32] = "nothing";
        if (a->offset >= 0) snprintf(had, sizeof had, "%lld", (long long)a->offset);
        kp_info("%s: rebalance: %s[%d] resumes at %lld, after this worker's acknowledged work "
                "(the group had committed %s)",
                g->who, a->topic, (int)a->partition, (long long)d->offset, had);
        rd_kafka_topic_partition_list_find(parts, a->topic, a->partition)->offset = d->offset;
        if (!fix) fix = rd_kafka_topic_partition_list_new(ask->cnt);
        rd_kafka_topic_partition_list_add(fix, a->topic, a->partition)->offset = d->offset;
    }
out:
    rd_kafka_topic_partition_list_destroy(ask);
    return fix;
}

static void assign(kp_group *g, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, int coop)
{
    rd_kafka_topic_partition_list_t *fix = resume_done(g, rk, parts);
    if (coop) {
        log_error(g, "incremental assign", rd_kafka_incremental_assign(rk, parts));
    } else {
        rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
        if (e) kp_error("%s: assign: %s", g->who, rd_kafka_err2str(e));
    }
    if (g->paused) pause_parts(g, rk, parts, 1);
    if (fix) {
        rd_kafka_resp_err_t e = rd_kafka_commit(rk, fix, 1);
        if (e) kp_warn("%s: commit of the resumed offsets: %s", g->who, rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(fix);
    }
}

/* Revoked (or lost): commit what is done before the partitions go. Offsets are stored only after
 * their work completed, so this commits exactly the finished events. */
static void revoke(kp_group *g, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, int coop)
{
    if (g->on_revoke) g->on_revoke(g->on_revoke_ctx); /* the work in flight stores its offsets */
    if (!rd_kafka_assignment_lost(rk)) {
        rd_kafka_resp_err_t ce = rd_kafka_commit(rk, NULL, 0);
        if (ce && ce != RD_KAFKA_RESP_ERR__NO_OFFSET)
            kp_warn("%s: commit before revoke: %s", g->who, rd_kafka_err2str(ce));
    }
    /* the messages of these partitions that the caller still holds must not be processed: the
     * next owner (or this one again, from the committed offset) consumes them again */
    if (!g->revoked) g->revoked = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; g->revoked && i < parts->cnt; i++)
        if (!rd_kafka_topic_partition_list_find(g->revoked, parts->elems[i].topic,
                                                parts->elems[i].partition))
            rd_kafka_topic_partition_list_add(g->revoked, parts->elems[i].topic,
                                              parts->elems[i].partition);
    if (coop) {
        log_error(g, "incremental unassign", rd_kafka_incremental_unassign(rk, parts));
    } else {
        rd_kafka_resp_err_t e = rd_kafka_assign(rk, NULL);
        if (e) kp_error("%s: unassign: %s", g->who, rd_kafka_err2str(e));
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kp_group *g = opaque;
    const char *proto = rd_kafka_rebalance_protocol(rk);
    int coop = proto && !strcmp(proto, "COOPERATIVE");
    if (g->count_rebalances) atomic_fetch_add(&kp_m.rebalances, 1);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        kp_info("%s: rebalance (%s): assigned %d partition(s)", g->who,
                coop ? "cooperative" : "eager", parts->cnt);
        assign(g, rk, parts, coop);
        return;
    }
    if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
        kp_error("%s: rebalance: %s", g->who, rd_kafka_err2str(err));
    kp_info("%s: rebalance (%s): revoking %d partition(s)%s", g->who,
            coop ? "cooperative" : "eager", parts->cnt,
            rd_kafka_assignment_lost(rk) ? " (lost)" : "");
    revoke(g, rk, parts, coop);
}

static rd_kafka_conf_t *group_conf(const kp_config *c, const kp_group_opts *o, int txn, kp_group *g,
                                   char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = kp_kafka_conf_new(c, err, errlen);
    if (!conf) return NULL;
    /* At-least-once: offsets are stored by us after the work, committed by librdkafka. */
    if (kp_kafka_conf_force(conf, "enable.auto.offset.store", "false", err, errlen) ||
        (o->group_id_default ? kp_kafka_conf_default(conf, c, "group.id", o->group_id, err, errlen)
                             : kp_kafka_conf_force(conf, "group.id", o->group_id, err, errlen)) ||
        kp_kafka_conf_default(conf, c, "auto.offset.reset", "earliest", err, errlen) ||
        (txn && kp_kafka_conf_force(conf, "enable.auto.commit", "false", err, errlen))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_opaque(conf, g);
    return conf;
}

static int subscribe(kp_group *g, const kp_group_opts *o, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(o->n_topics);
    for (int i = 0; i < o->n_topics; i++)
        rd_kafka_topic_partition_list_add(t, o->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t se = rd_kafka_subscribe(g->rk, t);
    rd_kafka_topic_partition_list_destroy(t);
    if (!se) return 0;
    kp_errf(err, errlen, "subscribe %s%s: %s", o->topics[0], o->n_topics > 1 ? ", ..." : "",
            rd_kafka_err2str(se));
    return -1;
}

static kp_group *group_new(const kp_config *c, const kp_group_opts *o, int txn, char *err,
                           size_t errlen)
{
    char e[512], why[512];
    rd_kafka_conf_t *conf = NULL;
    kp_group *g = calloc(1, sizeof *g);
    if (!g || o->n_topics < 1 || o->n_topics > KP_GROUP_MAX_TOPICS) {
        kp_errf(err, errlen, "%s: consumer: %s", o->who, g ? "bad topic list" : "out of memory");
        goto err;
    }
    g->who = o->who;
    g->count_rebalances = o->count_rebalances;
    if (!(conf = group_conf(c, o, txn, g, why, sizeof why))) {
        kp_errf(err, errlen, "consumer config: %s", why);
        goto err;
    }
    if (!(g->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e))) {
        kp_errf(err, errlen, "consumer: %s", e);
        goto err;
    }
    conf = NULL; /* owned by rk */
    rd_kafka_poll_set_consumer(g->rk);
    if (subscribe(g, o, err, errlen)) goto err;
    return g;
err:
    if (conf) rd_kafka_conf_destroy(conf);
    if (g && g->rk) rd_kafka_destroy(g->rk);
    free(g);
    return NULL;
}

kp_group *kp_group_new(const kp_config *c, const kp_group_opts *o, char *err, size_t errlen)
{
    return group_new(c, o, 0, err, errlen);
}

kp_group *kp_group_new_txn(const kp_config *c, const kp_group_opts *o, char *err, size_t errlen)
{
    return group_new(c, o, 1, err, errlen);
}

void kp_group_free(kp_group *g)
{
    if (!g) return;
    rd_kafka_resp_err_t e = rd_kafka_consumer_close(g->rk); /* commits stored offsets */
    if (e) kp_warn("%s: consumer close: %s", g->who, rd_kafka_err2str(e));
    rd_kafka_destroy(g->rk);
    if (g->revoked) rd_kafka_topic_partition_list_destroy(g->revoked);
    if (g->done) rd_kafka_topic_partition_list_destroy(g->done);
    free(g);
}

rd_kafka_t *kp_group_handle(kp_group *g)
{
    return g->rk;
}

rd_kafka_message_t *kp_group_poll(kp_group *g, int timeout_ms, int *was_error)
{
    if (was_error) *was_error = 0;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(g->rk, timeout_ms);
    if (!m || !m->err) return m;
    if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        kp_warn("%s: consumer: %s", g->who, rd_kafka_message_errstr(m));
    rd_kafka_message_destroy(m);
    if (was_error) *was_error = 1;
    return NULL;
}

int kp_group_pause(kp_group *g, int pause)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    rd_kafka_resp_err_t e = rd_kafka_assignment(g->rk, &a);
    if (e || !a) {
        kp_error("%s: %s: assignment: %s", g->who, pause ? "pause" : "resume", rd_kafka_err2str(e));
        if (a) rd_kafka_topic_partition_list_destroy(a);
        return -1;
    }
    /* the flag is set first: partitions assigned from now on are paused too (or not) */
    g->paused = pause;
    kp_telemetry_set_paused(pause);
    int rc = pause_parts(g, g->rk, a, pause);
    rd_kafka_topic_partition_list_destroy(a);
    return rc;
}

void kp_group_commit(kp_group *g)
{
    rd_kafka_resp_err_t e = rd_kafka_commit(g->rk, NULL, 1);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        kp_warn("%s: commit: %s", g->who, rd_kafka_err2str(e));
}

int kp_group_revoked_any(const kp_group *g)
{
    return g->revoked && g->revoked->cnt > 0;
}

int kp_group_was_revoked(const kp_group *g, const rd_kafka_message_t *m)
{
    return g->revoked && rd_kafka_topic_partition_list_find(g->revoked, rd_kafka_topic_name(m->rkt),
                                                            m->partition) != NULL;
}

void kp_group_forget_revoked(kp_group *g)
{
    if (g->revoked) rd_kafka_topic_partition_list_destroy(g->revoked);
    g->revoked = NULL;
}

void kp_group_on_revoke(kp_group *g, void (*fn)(void *ctx), void *ctx)
{
    g->on_revoke = fn;
    g->on_revoke_ctx = ctx;
}

int kp_group_paused(const kp_group *g)
{
    return g->paused;
}

void kp_group_store(kp_group *g, rd_kafka_topic_partition_list_t *l)
{
    if (!l->cnt) return;
    /* remembered whether or not the store takes: the work is done either way (resume_done) */
    if (!g->done) g->done = rd_kafka_topic_partition_list_new(l->cnt);
    for (int i = 0; i < l->cnt; i++) {
        rd_kafka_topic_partition_t *d =
            rd_kafka_topic_partition_list_find(g->done, l->elems[i].topic, l->elems[i].partition);
        if (!d)
            d = rd_kafka_topic_partition_list_add(g->done, l->elems[i].topic,
                                                  l->elems[i].partition);
        if (l->elems[i].offset > d->offset) d->offset = l->elems[i].offset;
    }
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(g->rk, l);
    if (e && e != RD_KAFKA_RESP_ERR__STATE && e != RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
        kp_warn("%s: offsets store: %s", g->who, rd_kafka_err2str(e));
}

void kp_group_report_lag(kp_group *g)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(g->rk, &a) || !a) return;
    rd_kafka_position(g->rk, a);
    int n = a->cnt < KP_LAG_MAX ? a->cnt : KP_LAG_MAX, k = 0;
    const char *topics[KP_LAG_MAX];
    int32_t parts[KP_LAG_MAX];
    int64_t lags[KP_LAG_MAX];
    long long sum = 0;
    for (int i = 0; i < n; i++) {
        int64_t lo, hi, pos = a->elems[i].offset;
        if (rd_kafka_get_watermark_offsets(g->rk, a->elems[i].topic, a->elems[i].partition, &lo,
                                           &hi) ||
            hi < 0)
            continue;
        /* no position yet (nothing consumed): everything from the low watermark is behind */
        int64_t lag = pos >= 0 ? hi - pos : lo >= 0 ? hi - lo : 0;
        if (lag < 0) lag = 0;
        topics[k] = a->elems[i].topic, parts[k] = a->elems[i].partition, lags[k++] = lag;
        sum += lag;
    }
    kp_telemetry_set_lag(topics, parts, lags, k);
    atomic_store(&kp_m.consumer_lag, sum);
    rd_kafka_topic_partition_list_destroy(a);
}

rd_kafka_t *kp_reader_consumer(const kp_config *c, const char *who, const char *group_id)
{
    char err[512], e[512];
    rd_kafka_conf_t *conf = kp_kafka_conf_new(c, err, sizeof err);
    if (!conf) {
        kp_error("%s: config: %s", who, err);
        return NULL;
    }
    if (kp_kafka_conf_force(conf, "enable.auto.commit", "false", err, sizeof err) ||
        kp_kafka_conf_force(conf, "enable.partition.eof", "true", err, sizeof err) ||
        kp_kafka_conf_force(conf, "isolation.level", "read_committed", err, sizeof err) ||
        kp_kafka_conf_force(conf, "auto.offset.reset", "earliest", err, sizeof err) ||
        kp_kafka_conf_force(conf, "group.id", group_id, err, sizeof err)) {
        kp_error("%s: config: %s", who, err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (!rk) {
        kp_error("%s: %s", who, e);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

int kp_topic_partitions(rd_kafka_t *rk, const char *topic)
{
    int n = -1;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    if (t && rd_kafka_metadata(rk, 0, t, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt)
        n = md->topics[0].err ? 0 : md->topics[0].partition_cnt;
    if (md) rd_kafka_metadata_destroy(md);
    if (t) rd_kafka_topic_destroy(t);
    return n;
}

#include "consumer/follow.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"
#include "consumer/assets.h"
#include "common/telemetry.h"
#include "model/ckpt.h"
#include "model/delta.h"
#include "model/tsv.h"
#include "common/util.h"
#include "consumer/model_topic.h"
#include "producer/kafka.h"

struct kp_follower {
    const kp_config *cfg;
    kp_bienc *master; /* touched only by the thread while it runs */
    int build;
    pthread_t thread;
    atomic_int stop, caught_up;
    atomic_ullong version, topic_version;
    pthread_mutex_t lock;
    kp_recommender *ready; /* under lock */
    char err[512];
};

static time_t file_mtime(const char *path)
{
    struct stat st;
    return stat(path, &st) ? 0 : st.st_mtime;
}

kp_recommender *kp_follower_build(const kp_config *c, const kp_bienc *m, char *err, size_t errlen)
{
    kp_texts kps;
    memset(&kps, 0, sizeof kps);
    kp_bienc *copy = kp_bienc_new_zero(kp_bienc_cfg(m));
    if (!copy || kp_bienc_copy(copy, m)) {
        snprintf(err, errlen, "model copy: out of memory");
        kp_bienc_free(copy);
        return NULL;
    }
    if (!c->model_keyphrases[0]) {
        snprintf(err, errlen, "[model] keyphrases: no keyphrase inventory file configured");
        kp_bienc_free(copy);
        return NULL;
    }
    if (kp_texts_load(c->model_keyphrases, &kps, err, errlen)) {
        kp_bienc_free(copy);
        return NULL;
    }
    kp_recommender *r = kp_rec_new(copy, (const char *const *)kps.id, (const char *const *)kps.text,
                                   kps.n, c->model_prefix_dim, err, errlen);
    kp_texts_free(&kps);
    if (r && kp_assets_attach(c, r, err, errlen)) { /* CE, BM25, calibration: shared */
        kp_rec_free(r);
        r = NULL;
    }
    return r;
}

kp_bienc *kp_follower_initial_model(const kp_config *c, char *err, size_t errlen)
{
    char path[2048];
    kp_bienc *m = NULL;
    uint64_t v = kp_model_newest_checkpoint(c->train_checkpoint_dir, path, sizeof path);
    if (c->model_path[0]) {
        if (!(m = kp_bienc_load(c->model_path, err, errlen))) return NULL;
    }
    if (v && (!m || v > kp_bienc_version(m))) {
        kp_bienc *n = kp_bienc_load(path, err, errlen);
        if (n) {
            kp_info("model: starting from checkpoint %s (version %" PRIu64 ")", path, v);
            kp_bienc_free(m);
            m = n;
        } else {
            kp_warn("model: %s (keeping [model] path)", err);
        }
    }
    if (!m) {
        kp_bienc_config bc;
        kp_bienc_config_default(&bc);
        if (!(m = kp_bienc_new(&bc, (uint64_t)c->model_seed))) {
            snprintf(err, errlen, "model: cannot initialise (out of memory)");
            return NULL;
        }
        kp_bienc_set_version(m, 1);
        kp_warn("[model] path is empty: scoring with a seeded, untrained bi-encoder (seed %ld)",
                c->model_seed);
    }
    return m;
}

static void publish(kp_follower *f, kp_recommender *r)
{
    pthread_mutex_lock(&f->lock);
    kp_recommender *old = f->ready;
    f->ready = r;
    pthread_mutex_unlock(&f->lock);
    kp_rec_free(old); /* never taken: superseded */
}

typedef struct {
    uint64_t version;
    char path[1024];
    int64_t offset;
    int32_t partition;
} ckpt_ann;

/* The follower thread's state between two records. */
typedef struct {
    kp_follower *f;
    const kp_config *c;
    rd_kafka_t *rk;
    kp_delta_asm *as;
    ckpt_ann last; /* the newest announcement read */
    int dirty, gap, nparts, eofs;
    unsigned char *at_eof; /* nparts */
    int64_t last_build;
    time_t inv_mtime, inv_checked;
} follow_run;

/* The follower's consumer: no group membership (partitions are assigned), no commits. */
static rd_kafka_t *follower_consumer(const kp_config *c)
{
    char err[512], e[512];
    rd_kafka_conf_t *conf = kp_kafka_conf_new(c, err, sizeof err);
    if (!conf) {
        kp_error("follower: config: %s", err);
        return NULL;
    }
    if (kp_kafka_conf_force(conf, "enable.auto.commit", "false", err, sizeof err) ||
        kp_kafka_conf_force(conf, "enable.partition.eof", "true", err, sizeof err) ||
        kp_kafka_conf_force(conf, "group.id", "kprec-model-follower", err, sizeof err)) {
        kp_error("follower: config: %s", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (!rk) {
        kp_error("follower: %s", e);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* How many partitions the model topic has; 0 while it does not exist. */
static int model_partitions(follow_run *r)
{
    int n = 0;
    rd_kafka_topic_t *t = rd_kafka_topic_new(r->rk, r->c->topic_model, NULL);
    const struct rd_kafka_metadata *md = NULL;
    if (t && rd_kafka_metadata(r->rk, 0, t, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt && !md->topics[0].err)
        n = md->topics[0].partition_cnt;
    if (md) rd_kafka_metadata_destroy(md);
    if (t) rd_kafka_topic_destroy(t);
    return n;
}

/* Waits for the model topic, then assigns every partition from the beginning. 0, or -1 when
 * stopped first (or on OOM). */
static int assign_model_topic(follow_run *r)
{
    kp_follower *f = r->f;
    while (!f->stop && !(r->nparts = model_partitions(r))) {
        /* Nothing to catch up with yet (no trainer has published): don't hold the worker's
         * start-up; keep looking, quietly after the first warning. */
        if (!f->caught_up)
            kp_warn("follower: model topic %s not available; serving version %" PRIu64
                    " and retrying (create it with kprec topics)",
                    r->c->topic_model, kp_bienc_version(f->master));
        f->caught_up = 1;
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
    }
    if (!r->nparts || !(r->at_eof = calloc((size_t)r->nparts, 1))) return -1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->nparts);
    for (int p = 0; p < r->nparts; p++)
        rd_kafka_topic_partition_list_add(l, r->c->topic_model, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(r->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        kp_error("follower: assign %s: %s", r->c->topic_model, rd_kafka_err2str(e));
        return -1;
    }
    if (r->nparts != 1)
        kp_warn("follower: %s has %d partitions; kprec writes it to one (key %s)",
                r->c->topic_model, r->nparts, KP_MODEL_KEY);
    return 0;
}

static void on_eof(follow_run *r, const rd_kafka_message_t *m)
{
    if (m->partition >= 0 && m->partition < r->nparts && !r->at_eof[m->partition]) {
        r->at_eof[m->partition] = 1;
        r->eofs++;
    }
    if (r->eofs >= r->nparts && !r->f->caught_up) {
        kp_info("follower: caught up with %s at model version %" PRIu64, r->c->topic_model,
                kp_bienc_version(r->f->master));
        r->f->caught_up = 1;
    }
}

static void note_topic_version(kp_follower *f, uint64_t v)
{
    if (v > atomic_load(&f->topic_version)) atomic_store(&f->topic_version, v);
}

/* An announcement: remember it; load it when it is ahead of the master. */
static void on_checkpoint(follow_run *r, const rd_kafka_message_t *m)
{
    kp_follower *f = r->f;
    char err[512];
    ckpt_ann a = {0};
    if (kp_model_announce_parse(m->payload, m->len, &a.version, a.path, sizeof a.path)) return;
    note_topic_version(f, a.version);
    a.offset = m->offset;
    a.partition = m->partition;
    r->last = a;
    if (a.version <= kp_bienc_version(f->master)) return;
    kp_bienc *nm = kp_bienc_load(a.path, err, sizeof err);
    if (!nm) {
        kp_warn("follower: checkpoint %s: %s", a.path, err);
        return;
    }
    kp_info("follower: loaded checkpoint %s (version %" PRIu64 ")", a.path, a.version);
    kp_bienc_free(f->master);
    f->master = nm;
    atomic_fetch_add(&kp_m.checkpoints_loaded, 1);
    r->dirty = 1;
    r->gap = 0;
}

/* A gap: wait for a checkpoint, re-reading from the newest one we know if it is ahead. */
static void on_gap(follow_run *r, const char *why)
{
    kp_warn("follower: %s: waiting for a checkpoint", why);
    r->gap = 1;
    if (r->last.version <= kp_bienc_version(r->f->master)) return;
    rd_kafka_topic_partition_list_t *s = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(s, r->c->topic_model, r->last.partition)->offset =
        r->last.offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(r->rk, s, 5000);
    if (e) {
        kp_warn("follower: seek to the checkpoint: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(s);
}

/* A delta chunk: assemble; apply a complete delta in version order. */
static void on_delta(follow_run *r, const rd_kafka_message_t *m)
{
    kp_follower *f = r->f;
    char err[512], ts[32];
    uint64_t ver, base;
    int idx, cnt;
    if (kp_delta_peek(m->payload, m->len, &ver, &base, &idx, &cnt)) {
        kp_warn("follower: %s[%" PRId32 "]@%" PRId64 ": not a delta chunk", r->c->topic_model,
                m->partition, m->offset);
        return;
    }
    note_topic_version(f, ver);
    if (ver <= kp_bienc_version(f->master) || r->gap) return;
    int added = kp_delta_asm_add(r->as, m->payload, m->len, err, sizeof err);
    if (added < 0) {
        kp_warn("follower: delta %" PRIu64 ": %s", ver, err);
    } else if (added == 1) {
        if (kp_delta_asm_apply(r->as, f->master, err, sizeof err)) {
            on_gap(r, err);
            return;
        }
        atomic_fetch_add(&kp_m.deltas_applied, 1);
        r->dirty = 1;
        if (kp_model_header(m, KP_MODEL_HDR_TS, ts, sizeof ts))
            atomic_store(&kp_m.delta_lag_ms, kp_now_ms() - atoll(ts));
    }
}

static void on_record(follow_run *r, const rd_kafka_message_t *m)
{
    switch (kp_model_record_type(m)) {
    case KP_MODEL_REC_CHECKPOINT:
        on_checkpoint(r, m);
        break;
    case KP_MODEL_REC_DELTA:
        on_delta(r, m);
        break;
    default:
        break;
    }
    if (m->partition >= 0 && m->partition < r->nparts && r->at_eof[m->partition]) {
        r->at_eof[m->partition] = 0; /* new data after its end */
        r->eofs--;
    }
}

/* Marks the model dirty when the inventory file changed (checked every [model] reload_s). */
static void check_inventory(follow_run *r)
{
    const kp_config *c = r->c;
    if (!c->model_reload_s || time(NULL) - r->inv_checked < c->model_reload_s) return;
    r->inv_checked = time(NULL);
    time_t mt = file_mtime(c->model_keyphrases);
    if (mt && mt != r->inv_mtime) {
        kp_info("follower: %s changed: re-embedding the inventory", c->model_keyphrases);
        r->inv_mtime = mt;
        r->dirty = 1;
    }
}

/* Builds a recommender off the hot path once caught up, at most every [model] rebuild_ms. */
static void maybe_rebuild(follow_run *r)
{
    kp_follower *f = r->f;
    char err[512];
    if (r->dirty && !f->build) r->dirty = 0;
    if (!r->dirty || !f->caught_up || kp_now_ms() - r->last_build < r->c->model_rebuild_ms) return;
    int64_t t0 = kp_now_ms();
    kp_recommender *rec = kp_follower_build(r->c, f->master, err, sizeof err);
    r->last_build = kp_now_ms();
    if (!rec) {
        kp_error("follower: %s", err);
        return;
    }
    atomic_store(&kp_m.reembed_ms, r->last_build - t0);
    kp_info("follower: model version %" PRIu64 " ready (%d keyphrases re-embedded in %" PRId64
            " ms)",
            kp_rec_version(rec), kp_rec_size(rec), r->last_build - t0);
    publish(f, rec);
    r->dirty = 0;
}

static void *run(void *arg)
{
    kp_follower *f = arg;
    follow_run r = {.f = f, .c = f->cfg};
    r.inv_mtime = file_mtime(f->cfg->model_keyphrases);
    r.inv_checked = time(NULL);
    if (!(r.as = kp_delta_asm_new())) kp_error("follower: out of memory");
    if (r.as && (r.rk = follower_consumer(f->cfg)) && !assign_model_topic(&r)) {
        while (!f->stop) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(r.rk, 200);
            if (m && m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                on_eof(&r, m);
            else if (m && m->err)
                kp_warn("follower: %s", rd_kafka_message_errstr(m));
            else if (m)
                on_record(&r, m);
            if (m) rd_kafka_message_destroy(m);
            atomic_store(&f->version, kp_bienc_version(f->master));
            check_inventory(&r);
            maybe_rebuild(&r);
        }
    }
    if (r.rk) {
        rd_kafka_consumer_close(r.rk);
        rd_kafka_destroy(r.rk);
    }
    kp_delta_asm_free(r.as);
    free(r.at_eof);
    f->caught_up = 1; /* never leave a waiter hanging */
    return NULL;
}

kp_follower *kp_follower_start(const kp_config *c, kp_bienc *model, int build_recommenders,
                               char *err, size_t errlen)
{
    kp_follower *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        kp_bienc_free(model);
        return NULL;
    }
    f->cfg = c;
    f->master = model;
    f->build = build_recommenders;
    atomic_store(&f->version, kp_bienc_version(model));
    pthread_mutex_init(&f->lock, NULL);
    if (pthread_create(&f->thread, NULL, run, f)) {
        snprintf(err, errlen, "cannot start the follower thread");
        pthread_mutex_destroy(&f->lock);
        kp_bienc_free(model);
        free(f);
        return NULL;
    }
    return f;
}

kp_recommender *kp_follower_take(kp_follower *f)
{
    pthread_mutex_lock(&f->lock);
    kp_recommender *r = f->ready;
    f->ready = NULL;
    pthread_mutex_unlock(&f->lock);
    return r;
}

int kp_follower_wait_caught_up(kp_follower *f, int timeout_ms, volatile sig_atomic_t *stop)
{
    for (int waited = 0; !f->caught_up && waited < timeout_ms && !(stop && *stop); waited += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return f->caught_up;
}

uint64_t kp_follower_topic_version(kp_follower *f)
{
    return atomic_load(&f->topic_version);
}

uint64_t kp_follower_version(kp_follower *f)
{
    return atomic_load(&f->version);
}

kp_bienc *kp_follower_stop(kp_follower *f)
{
    if (!f) return NULL;
    f->stop = 1;
    pthread_join(f->thread, NULL);
    kp_rec_free(f->ready);
    pthread_mutex_destroy(&f->lock);
    kp_bienc *m = f->master;
    free(f);
    return m;
}

#include "consumer/follow.h"

#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"
#include "common/telemetry.h"
#include "model/ckpt.h"
#include "model/delta.h"
#include "model/tsv.h"
#include "producer/producer.h"

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

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
    return r;
}

/* Newest be-v<N>.kpm in dir: its version, path in out. 0 if none. */
static uint64_t newest_checkpoint(const char *dir, char *out, size_t outlen)
{
    uint64_t best = 0;
    DIR *d = dir[0] ? opendir(dir) : NULL;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned long long v;
        char tail[8];
        if (sscanf(e->d_name, "be-v%llu.kp%7s", &v, tail) == 2 && !strcmp(tail, "m") && v > best) {
            best = v;
            snprintf(out, outlen, "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    return best;
}

kp_bienc *kp_follower_initial_model(const kp_config *c, char *err, size_t errlen)
{
    char path[2048];
    kp_bienc *m = NULL;
    uint64_t v = newest_checkpoint(c->train_checkpoint_dir, path, sizeof path);
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

static const char *header(const rd_kafka_message_t *msg, const char *name, char *buf, size_t cap)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t sz;
    if (rd_kafka_message_headers(msg, &h) || !h || rd_kafka_header_get_last(h, name, &v, &sz) ||
        !v || sz >= cap)
        return NULL;
    memcpy(buf, v, sz);
    buf[sz] = 0;
    return buf;
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

static void *run(void *arg)
{
    kp_follower *f = arg;
    const kp_config *c = f->cfg;
    char e[512], err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    kp_delta_asm *as = kp_delta_asm_new();
    ckpt_ann last = {0};
    int dirty = 0, gap = 0;
    unsigned char *at_eof = NULL;
    time_t inv_mtime = file_mtime(c->model_keyphrases), inv_checked = time(NULL);
    if (!as || kp_kafka_conf_apply(conf, c, err, sizeof err) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof e) ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", e, sizeof e) ||
        rd_kafka_conf_set(conf, "group.id", "kprec-model-follower", e, sizeof e)) {
        kp_error("follower: config: %s", as ? err : "out of memory");
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    rd_kafka_conf_set_log_cb(conf, kp_kafka_log_cb);
    if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e))) {
        kp_error("follower: %s", e);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    /* Every partition of the model topic, from the beginning: find how many there are. */
    int nparts = 0;
    while (!f->stop && nparts == 0) {
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, c->topic_model, NULL);
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, t, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt &&
            !md->topics[0].err)
            nparts = md->topics[0].partition_cnt;
        if (md) rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(t);
        if (!nparts) {
            /* Nothing to catch up with yet (no trainer has published): don't hold the worker's
             * start-up; keep looking, quietly after the first warning. */
            if (!f->caught_up)
                kp_warn("follower: model topic %s not available; serving version %" PRIu64
                        " and retrying (create it with kprec topics)",
                        c->topic_model, kp_bienc_version(f->master));
            f->caught_up = 1;
            struct timespec ts = {1, 0};
            nanosleep(&ts, NULL);
        }
    }
    if (!nparts) goto out; /* stopped before the topic appeared */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
    for (int p = 0; p < nparts; p++)
        rd_kafka_topic_partition_list_add(l, c->topic_model, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    at_eof = calloc((size_t)nparts, 1);
    int eofs = 0;
    int64_t last_build = 0;
    if (nparts != 1)
        kp_warn("follower: %s has %d partitions; kprec writes it to one (key kprec.model)",
                c->topic_model, nparts);
    while (!f->stop) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m && m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (at_eof && m->partition >= 0 && m->partition < nparts && !at_eof[m->partition]) {
                at_eof[m->partition] = 1;
                eofs++;
            }
            if (eofs >= nparts && !f->caught_up) {
                kp_info("follower: caught up with %s at model version %" PRIu64, c->topic_model,
                        kp_bienc_version(f->master));
                f->caught_up = 1;
            }
        } else if (m && m->err) {
            kp_warn("follower: %s", rd_kafka_message_errstr(m));
        } else if (m) {
            char type[32], tsbuf[32];
            const char *ty = header(m, "type", type, sizeof type);
            uint64_t cur = kp_bienc_version(f->master);
            if (ty && !strcmp(ty, "checkpoint")) {
                ckpt_ann a = {0};
                char fmt[32];
                snprintf(fmt, sizeof fmt, "%%" SCNu64 " %%%zus", sizeof a.path - 1);
                char val[1200];
                size_t n = m->len < sizeof val - 1 ? m->len : sizeof val - 1;
                memcpy(val, m->payload, n);
                val[n] = 0;
                if (sscanf(val, fmt, &a.version, a.path) == 2) {
                    if (a.version > atomic_load(&f->topic_version))
                        atomic_store(&f->topic_version, a.version);
                    a.offset = m->offset;
                    a.partition = m->partition;
                    last = a;
                    if (a.version > cur) {
                        kp_bienc *nm = kp_bienc_load(a.path, err, sizeof err);
                        if (nm) {
                            kp_info("follower: loaded checkpoint %s (version %" PRIu64 ")", a.path,
                                    a.version);
                            kp_bienc_free(f->master);
                            f->master = nm;
                            atomic_fetch_add(&kp_m.checkpoints_loaded, 1);
                            dirty = 1;
                            gap = 0;
                        } else {
                            kp_warn("follower: checkpoint %s: %s", a.path, err);
                        }
                    }
                }
            } else if (ty && !strcmp(ty, "delta")) {
                uint64_t ver, base;
                int idx, cnt;
                int bad = kp_delta_peek(m->payload, m->len, &ver, &base, &idx, &cnt);
                if (!bad && ver > atomic_load(&f->topic_version))
                    atomic_store(&f->topic_version, ver);
                if (bad) {
                    kp_warn("follower: %s[%" PRId32 "]@%" PRId64 ": not a delta chunk",
                            c->topic_model, m->partition, m->offset);
                } else if (ver > cur && !gap) {
                    int r = kp_delta_asm_add(as, m->payload, m->len, err, sizeof err);
                    if (r < 0) {
                        kp_warn("follower: delta %" PRIu64 ": %s", ver, err);
                    } else if (r == 1) {
                        if (kp_delta_asm_apply(as, f->master, err, sizeof err)) {
                            kp_warn("follower: %s: waiting for a checkpoint", err);
                            gap = 1;
                            /* Reload the newest checkpoint we know and replay after it. */
                            if (last.version > cur) {
                                rd_kafka_topic_partition_list_t *s =
                                    rd_kafka_topic_partition_list_new(1);
                                rd_kafka_topic_partition_list_add(s, c->topic_model, last.partition)
                                    ->offset = last.offset;
                                rd_kafka_seek_partitions(rk, s, 5000);
                                rd_kafka_topic_partition_list_destroy(s);
                            }
                        } else {
                            atomic_fetch_add(&kp_m.deltas_applied, 1);
                            dirty = 1;
                            if (header(m, "ts", tsbuf, sizeof tsbuf))
                                atomic_store(&kp_m.delta_lag_ms, now_ms() - atoll(tsbuf));
                        }
                    }
                }
            }
            if (at_eof && m->partition >= 0 && m->partition < nparts && at_eof[m->partition]) {
                at_eof[m->partition] = 0; /* new data after its end */
                eofs--;
            }
        }
        if (m) rd_kafka_message_destroy(m);
        atomic_store(&f->version, kp_bienc_version(f->master));

        /* inventory file changed? */
        if (c->model_reload_s && time(NULL) - inv_checked >= c->model_reload_s) {
            inv_checked = time(NULL);
            time_t mt = file_mtime(c->model_keyphrases);
            if (mt && mt != inv_mtime) {
                kp_info("follower: %s changed: re-embedding the inventory", c->model_keyphrases);
                inv_mtime = mt;
                dirty = 1;
            }
        }
        /* Build off the hot path once caught up, at most every [model] rebuild_ms. */
        if (dirty && f->build && f->caught_up && now_ms() - last_build >= c->model_rebuild_ms) {
            int64_t t0 = now_ms();
            kp_recommender *r = kp_follower_build(c, f->master, err, sizeof err);
            last_build = now_ms();
            if (r) {
                atomic_store(&kp_m.reembed_ms, last_build - t0);
                kp_info("follower: model version %" PRIu64 " ready (%d keyphrases re-embedded in "
                        "%" PRId64 " ms)",
                        kp_rec_version(r), kp_rec_size(r), last_build - t0);
                publish(f, r);
                dirty = 0;
            } else {
                kp_error("follower: %s", err);
            }
        } else if (dirty && !f->build) {
            dirty = 0;
        }
    }
out:
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    kp_delta_asm_free(as);
    free(at_eof);
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

#include "consumer/follow.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "consumer/assets.h"
#include "consumer/group.h"
#include "consumer/inventory.h"
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
    atomic_int stop, caught_up, at_end;
    atomic_ullong version, topic_version, ckpt_version;
    uint64_t lineage; /* of master; touched only by the thread while it runs */
    uint32_t max_gen; /* highest lineage generation seen on the topic */
    pthread_mutex_t lock;
    kp_recommender *ready; /* under lock */
    char err[512];
};

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
    uint64_t seq = 0; /* the topic's inventory snapshot, or the file (consumer/inventory.h) */
    if (kp_inventory_load(c, &kps, &seq, err, errlen)) {
        kp_bienc_free(copy);
        return NULL;
    }
    /* the inventory's text is freed once copied: one copy of it at the build's peak */
    kp_recommender *r = kp_rec_new_take(copy, &kps, c->model_prefix_dim, err, errlen);
    kp_rec_set_seq(r, seq);
    if (r && c->model_ivf_nprobe > 0 &&
        (kp_rec_set_first_pass(r, c->model_ivf_first_pass, c->model_ivf_rescore) ||
         kp_rec_set_ivf(r, c->model_ivf_nlist, c->model_ivf_nprobe, (uint64_t)c->model_seed))) {
        snprintf(err, errlen, "recommender: out of memory building the IVF index");
        kp_rec_free(r);
        r = NULL;
    }
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
    uint64_t lin = 0;
    uint64_t v = kp_model_newest_checkpoint(c->train_checkpoint_dir, path, sizeof path, &lin);
    if (c->model_path[0]) {
        if (!(m = kp_bienc_load(c->model_path, err, errlen))) return NULL;
    }
    if (v && (!m || v >= kp_bienc_version(m))) {
        kp_bienc *n = kp_bienc_load(path, err, errlen);
        if (n) {
            kp_info("model: starting from the cached checkpoint %s (version %" PRIu64 ")", path, v);
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

/* The lineage of a model kp_follower_initial_model gave: that of the cached checkpoint of its
 * version, or 0 (a bootstrap model). */
static uint64_t initial_lineage(const kp_config *c, const kp_bienc *m)
{
    char path[2048];
    uint64_t lin = 0;
    uint64_t v = kp_model_newest_checkpoint(c->train_checkpoint_dir, path, sizeof path, &lin);
    return v && v == kp_bienc_version(m) ? lin : 0;
}

static void publish(kp_follower *f, kp_recommender *r)
{
    pthread_mutex_lock(&f->lock);
    kp_recommender *old = f->ready;
    f->ready = r;
    pthread_mutex_unlock(&f->lock);
    kp_rec_free(old); /* never taken: superseded */
}

/* The newest checkpoint seen on the topic: where its first chunk is. */
typedef struct {
    uint64_t version, lineage;
    int64_t offset;
    int32_t partition;
} ckpt_mark;

/* A checkpoint being reassembled. */
typedef struct {
    kp_model_meta meta; /* of chunk 0 */
    unsigned char *buf;
    uint64_t have;
    int next;
} ckpt_asm;

/* The follower thread's state between two records. */
typedef struct {
    kp_follower *f;
    const kp_config *c;
    rd_kafka_t *rk;
    kp_delta_asm *as;
    ckpt_mark last; /* the newest checkpoint read */
    ckpt_asm ck;
    int dirty, gap, nparts, eofs;
    unsigned char *at_eof; /* nparts */
    int64_t last_build;
    kp_inv_watch inv; /* the [model] keyphrases file */
    time_t inv_checked;
} follow_run;

/* Waits for the model topic, then assigns every partition from the beginning. 0, or -1 when
 * stopped first (or on OOM). */
static int assign_model_topic(follow_run *r)
{
    kp_follower *f = r->f;
    int warned = 0;
    while (!f->stop && (r->nparts = kp_topic_partitions(r->rk, r->c->topic_model)) <= 0) {
        /* Nothing to catch up with (no broker, or no topic yet): don't hold a serve worker's
         * start-up (caught_up), but never claim to have read the topic to its end (at_end). */
        if (!warned)
            kp_warn("follower: model topic %s %s; serving version %" PRIu64 " and retrying",
                    r->c->topic_model,
                    r->nparts < 0 ? "unreachable (no broker answer)"
                                  : "does not exist (create it with kprec topics)",
                    kp_bienc_version(f->master));
        warned = 1;
        f->caught_up = 1;
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
    }
    if (r->nparts <= 0 || !(r->at_eof = calloc((size_t)r->nparts, 1))) return -1;
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
    if (r->eofs >= r->nparts && !r->f->at_end) {
        kp_info("follower: read %s to its end: model version %" PRIu64 " (lineage %" PRIu64
                "), topic version %" PRIu64,
                r->c->topic_model, kp_bienc_version(r->f->master), r->f->lineage,
                (uint64_t)atomic_load(&r->f->topic_version));
        r->f->at_end = 1;
        /* a serving follower is caught up once the recommender of this version is built
         * (maybe_rebuild): before it, the worker would serve its start-up model */
        if (!r->f->build || !r->dirty) r->f->caught_up = 1;
    }
}

static void note_topic(kp_follower *f, const kp_model_meta *mm)
{
    if (mm->version > atomic_load(&f->topic_version)) {
        atomic_store(&f->topic_version, mm->version);
        atomic_store(&kp_m.model_topic_version, mm->version);
    }
    uint32_t gen = (uint32_t)(mm->lineage >> 32);
    if (gen > f->max_gen) f->max_gen = gen;
    /* behind: since the first record newer than the model was published */
    if (mm->version > kp_bienc_version(f->master) && !atomic_load(&kp_m.model_behind_since_ms))
        atomic_store(&kp_m.model_behind_since_ms, mm->ts_ms > 0 ? mm->ts_ms : kp_now_ms());
}

static void reject(follow_run *r, const rd_kafka_message_t *m, kp_model_reject why)
{
    atomic_fetch_add(&kp_m.model_rejected[why], 1);
    kp_warn("follower: dropped %s[%" PRId32 "]@%" PRId64 ": %s", r->c->topic_model, m->partition,
            m->offset, kp_model_reject_name[why]);
}

static void ck_reset(ckpt_asm *a)
{
    free(a->buf);
    memset(a, 0, sizeof *a);
}

/* Installs a new master model of (version, lineage). */
static void install(follow_run *r, kp_bienc *nm, uint64_t lineage)
{
    kp_bienc_free(r->f->master);
    r->f->master = nm;
    r->f->lineage = lineage;
    r->dirty = 1;
}

/* A complete checkpoint: into the cache (or a temporary file), then loaded. */
static void load_checkpoint(follow_run *r)
{
    char path[2048], tmp[2100], err[512];
    const kp_model_meta *mm = &r->ck.meta;
    const char *dir = r->c->train_checkpoint_dir;
    int cached =
        dir[0] && !kp_model_checkpoint_path(dir, mm->version, mm->lineage, path, sizeof path);
    if (cached) {
        snprintf(tmp, sizeof tmp, "%s.part", path);
    } else {
        const char *td = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/kprec-ckpt.XXXXXX", td && td[0] ? td : "/tmp");
    }
    int fd = cached ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644) : mkstemp(tmp);
    if (fd < 0) {
        kp_warn("follower: checkpoint %" PRIu64 ": cannot write %s", mm->version, tmp);
        return;
    }
    uint64_t off = 0;
    while (off < r->ck.have) {
        ssize_t w = write(fd, r->ck.buf + off, (size_t)(r->ck.have - off));
        if (w <= 0) break;
        off += (uint64_t)w;
    }
    close(fd);
    kp_bienc *nm = NULL;
    if (off == r->ck.have && (!cached || !rename(tmp, path)))
        nm = kp_bienc_load(cached ? path : tmp, err, sizeof err);
    else
        snprintf(err, sizeof err, "cannot write the checkpoint file");
    if (!cached || !nm) unlink(cached && nm ? path : tmp);
    if (!nm || kp_bienc_version(nm) != mm->version) {
        atomic_fetch_add(&kp_m.model_rejected[KP_MODEL_REJ_PAYLOAD], 1);
        kp_warn("follower: checkpoint %" PRIu64 ": %s", mm->version,
                nm ? "its file holds another version" : err);
        kp_bienc_free(nm);
        return;
    }
    if (cached) kp_model_cache_prune(dir, r->c->train_checkpoint_keep);
    kp_info("follower: loaded checkpoint version %" PRIu64 " (lineage %" PRIu64 ", %" PRIu64
            " bytes) from %s",
            mm->version, mm->lineage, mm->size, r->c->topic_model);
    install(r, nm, mm->lineage);
    atomic_fetch_add(&kp_m.checkpoints_loaded, 1);
    r->gap = 0;
}

/* A checkpoint chunk: note where the checkpoint starts; assemble it when it is ahead of us. */
static void on_checkpoint(follow_run *r, const rd_kafka_message_t *m, const kp_model_meta *mm)
{
    kp_follower *f = r->f;
    if (mm->index == 0 && mm->version >= r->last.version) {
        r->last = (ckpt_mark){mm->version, mm->lineage, m->offset, m->partition};
        atomic_store(&f->ckpt_version, mm->version);
    }
    if (kp_model_decide(kp_bienc_version(f->master), f->lineage, mm) != KP_MODEL_APPLY) {
        if (r->ck.buf && r->ck.meta.version == mm->version) ck_reset(&r->ck);
        return;
    }
    if (mm->index == 0) {
        ck_reset(&r->ck);
        if (mm->size > ((uint64_t)1 << 36) || !(r->ck.buf = malloc((size_t)mm->size))) {
            kp_warn("follower: checkpoint %" PRIu64 ": cannot hold %" PRIu64 " bytes", mm->version,
                    mm->size);
            return;
        }
        r->ck.meta = *mm;
    } else if (!r->ck.buf || r->ck.meta.version != mm->version ||
               r->ck.meta.lineage != mm->lineage || r->ck.next != mm->index ||
               r->ck.meta.count != mm->count || r->ck.meta.size != mm->size) {
        return; /* a chunk of a checkpoint whose start we did not see: wait for the next one */
    }
    if (r->ck.have + m->len > r->ck.meta.size) {
        reject(r, m, KP_MODEL_REJ_PAYLOAD);
        ck_reset(&r->ck);
        return;
    }
    memcpy(r->ck.buf + r->ck.have, m->payload, m->len);
    r->ck.have += m->len;
    r->ck.next++;
    if (r->ck.next < r->ck.meta.count) return;
    if (r->ck.have == r->ck.meta.size)
        load_checkpoint(r);
    else
        reject(r, m, KP_MODEL_REJ_PAYLOAD);
    ck_reset(&r->ck);
}

/* Drops a partly assembled delta (after a seek). */
static void delta_reset(follow_run *r)
{
    kp_delta_asm *n = kp_delta_asm_new();
    if (!n) return;
    kp_delta_asm_free(r->as);
    r->as = n;
}

/* A gap: reload the newest checkpoint if it is ahead, else wait for one (stuck). */
static void on_gap(follow_run *r, const char *why)
{
    if (!r->gap) kp_warn("follower: %s: waiting for a checkpoint", why);
    r->gap = 1;
    if (r->last.version <= kp_bienc_version(r->f->master)) return;
    kp_info("follower: re-reading the checkpoint of version %" PRIu64 " at offset %" PRId64,
            r->last.version, r->last.offset);
    rd_kafka_topic_partition_list_t *s = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(s, r->c->topic_model, r->last.partition)->offset =
        r->last.offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(r->rk, s, 5000);
    if (e) {
        kp_warn("follower: seek to the checkpoint: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(s);
    delta_reset(r);
}

/* A delta chunk: assemble; apply a complete delta that continues the model. */
static void on_delta(follow_run *r, const rd_kafka_message_t *m, const kp_model_meta *mm)
{
    kp_follower *f = r->f;
    char err[512];
    uint64_t ver, base;
    int idx, cnt;
    if (kp_delta_peek(m->payload, m->len, &ver, &base, &idx, &cnt) || ver != mm->version ||
        base != mm->base || idx != mm->index || cnt != mm->count) {
        reject(r, m, KP_MODEL_REJ_PAYLOAD);
        return;
    }
    kp_model_action act = kp_model_decide(kp_bienc_version(f->master), f->lineage, mm);
    if (act == KP_MODEL_OLD) return;
    if (act == KP_MODEL_GAP) {
        char why[160];
        snprintf(why, sizeof why,
                 "gap: model at version %" PRIu64 " (lineage %" PRIu64 "), delta %" PRIu64
                 " needs %" PRIu64 " (lineage %" PRIu64 ")",
                 kp_bienc_version(f->master), f->lineage, ver, base, mm->base_lineage);
        on_gap(r, why);
        return;
    }
    int added = kp_delta_asm_add(r->as, m->payload, m->len, err, sizeof err);
    if (added < 0) {
        kp_warn("follower: delta %" PRIu64 ": %s", ver, err);
    } else if (added == 1) {
        if (kp_delta_asm_apply(r->as, f->master, err, sizeof err)) {
            on_gap(r, err);
            return;
        }
        f->lineage = mm->lineage;
        atomic_fetch_add(&kp_m.deltas_applied, 1);
        r->dirty = 1;
        if (mm->ts_ms > 0) atomic_store(&kp_m.delta_lag_ms, kp_now_ms() - mm->ts_ms);
    }
}

static void on_record(follow_run *r, const rd_kafka_message_t *m)
{
    kp_model_meta mm;
    kp_model_reject why = kp_model_verify_msg(r->c->model_hmac_key, m, &mm);
    if (why != KP_MODEL_OK) {
        reject(r, m, why);
    } else {
        note_topic(r->f, &mm);
        if (mm.type == KP_MODEL_REC_CHECKPOINT)
            on_checkpoint(r, m, &mm);
        else
            on_delta(r, m, &mm);
    }
    if (m->partition >= 0 && m->partition < r->nparts && r->at_eof[m->partition]) {
        r->at_eof[m->partition] = 0; /* new data after its end */
        r->eofs--;
    }
}

/* Health: behind since when, stuck at a gap. */
static void update_health(follow_run *r)
{
    kp_follower *f = r->f;
    uint64_t v = kp_bienc_version(f->master);
    atomic_store(&f->version, v);
    atomic_store(&kp_m.model_follower_version, v);
    atomic_store(&kp_m.model_lineage, f->lineage);
    if (v >= atomic_load(&f->topic_version)) atomic_store(&kp_m.model_behind_since_ms, 0);
    atomic_store(&kp_m.model_stuck, r->gap && r->last.version <= v);
}

/* Marks the model dirty when the inventory file changed and then stayed the same for one check
 * (checked every [model] reload_s; mtime to the nanosecond, size, inode: kp_inv_watch). With
 * [topics] inventory the serving loop applies the topic's changes itself (kp_inventory_apply). */
static void check_inventory(follow_run *r)
{
    const kp_config *c = r->c;
    if (c->topic_inventory[0] || !c->model_reload_s ||
        time(NULL) - r->inv_checked < c->model_reload_s)
        return;
    r->inv_checked = time(NULL);
    if (kp_inv_watch_poll(&r->inv, c->model_keyphrases)) {
        kp_info("follower: %s changed: re-embedding the inventory", c->model_keyphrases);
        r->dirty = 1;
    }
}

/* Builds a recommender off the hot path once caught up, at most every [model] rebuild_ms. */
static void maybe_rebuild(follow_run *r)
{
    kp_follower *f = r->f;
    char err[512];
    if (r->dirty && !f->build) r->dirty = 0;
    if (!r->dirty || !(f->caught_up || f->at_end) ||
        kp_now_ms() - r->last_build < r->c->model_rebuild_ms)
        return;
    int64_t t0 = kp_now_ms();
    kp_recommender *rec = kp_follower_build(r->c, f->master, err, sizeof err);
    r->last_build = kp_now_ms();
    if (!rec) {
        kp_error("follower: %s", err);
        if (f->at_end) f->caught_up = 1; /* don't hold the worker's start */
        return;
    }
    atomic_store(&kp_m.reembed_ms, r->last_build - t0);
    kp_info("follower: model version %" PRIu64 " ready (%d keyphrases re-embedded in %" PRId64
            " ms)",
            kp_rec_version(rec), kp_rec_size(rec), r->last_build - t0);
    publish(f, rec);
    r->dirty = 0;
    if (f->at_end) f->caught_up = 1; /* the worker takes this recommender first */
}

static void *run(void *arg)
{
    kp_follower *f = arg;
    follow_run r = {.f = f, .c = f->cfg};
    kp_inv_watch_init(&r.inv, f->cfg->model_keyphrases);
    r.inv_checked = time(NULL);
    if (!(r.as = kp_delta_asm_new())) kp_error("follower: out of memory");
    if (r.as && (r.rk = kp_reader_consumer(f->cfg, "follower", "kprec-model-follower")) &&
        !assign_model_topic(&r)) {
        while (!f->stop) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(r.rk, 200);
            if (m && m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                on_eof(&r, m);
            else if (m && m->err)
                kp_warn("follower: %s", rd_kafka_message_errstr(m));
            else if (m)
                on_record(&r, m);
            if (m) rd_kafka_message_destroy(m);
            update_health(&r);
            check_inventory(&r);
            maybe_rebuild(&r);
        }
    }
    if (r.rk) {
        rd_kafka_consumer_close(r.rk);
        rd_kafka_destroy(r.rk);
    }
    kp_delta_asm_free(r.as);
    ck_reset(&r.ck);
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
    f->lineage = initial_lineage(c, model);
    atomic_store(&f->version, kp_bienc_version(model));
    /* /healthz judges "behind" by [model] max_behind_s: the follower is what measures it */
    kp_telemetry_set_max_behind(c->model_max_behind_s);
    if (!c->model_hmac_key[0])
        kp_warn("follower: [model] hmac_key is empty: model records are not authenticated");
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

int kp_follower_wait_caught_up(kp_follower *f, int timeout_ms, kp_stop_flag *stop)
{
    for (int waited = 0; !f->caught_up && waited < timeout_ms && !(stop && *stop); waited += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return f->caught_up;
}

int kp_follower_wait_end(kp_follower *f, int timeout_ms, kp_stop_flag *stop)
{
    for (int waited = 0; !f->at_end && waited < timeout_ms && !(stop && *stop); waited += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return f->at_end;
}

uint64_t kp_follower_checkpoint_version(kp_follower *f)
{
    return atomic_load(&f->ckpt_version);
}

uint64_t kp_follower_topic_version(kp_follower *f)
{
    return atomic_load(&f->topic_version);
}

uint64_t kp_follower_version(kp_follower *f)
{
    return atomic_load(&f->version);
}

kp_bienc *kp_follower_stop_ex(kp_follower *f, uint64_t *lineage, uint32_t *max_gen)
{
    if (!f) return NULL;
    f->stop = 1;
    pthread_join(f->thread, NULL);
    if (lineage) *lineage = f->lineage;
    if (max_gen) *max_gen = f->max_gen;
    return kp_follower_stop(f);
}

kp_bienc *kp_follower_stop(kp_follower *f)
{
    if (!f) return NULL;
    if (f->stop) { /* joined by kp_follower_stop_ex */
        kp_rec_free(f->ready);
        pthread_mutex_destroy(&f->lock);
        kp_bienc *m = f->master;
        free(f);
        return m;
    }
    f->stop = 1;
    pthread_join(f->thread, NULL);
    kp_rec_free(f->ready);
    pthread_mutex_destroy(&f->lock);
    kp_bienc *m = f->master;
    free(f);
    return m;
}

/* learn.c -- `kprec worker` with role = train: set-up, the loop, teardown (the role is described
 * in learn.h; its modules in learn_state.h). */
#include "consumer/learn.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/telemetry.h"
#include "common/util.h"
#include "consumer/follow.h"
#include "consumer/learn_publish.h"
#include "consumer/learn_queue.h"
#include "consumer/learn_state.h"
#include "consumer/learn_step.h"
#include "consumer/model_topic.h"
#include "model/ckpt.h"

/* Learns until kp_worker_stop. 0, or 1 on a failure. */
static int learn_loop(kp_lstate *s)
{
    const kp_config *c = s->cfg;
    while (!kp_worker_stop) {
        kp_telemetry_tick(KP_LOOP_TRAIN);
        if (kp_lq_poll(s)) return 1;
        if (kp_lq_resolve_titles(s)) /* Redis is failing: back off (the loop polls) */
            kp_backoff_sleep(200, NULL, NULL, NULL);
        int n = kp_lq_take_ready(s);
        if (!n && s->n_pending >= c->train_batch_size * 4) /* waiting for titles: don't spin */
            kp_backoff_sleep(100, NULL, NULL, NULL);
        if (n && kp_lstep_ready(s, n)) return 1;
        if (s->steps_since_delta && (s->steps_since_delta >= c->train_delta_steps ||
                                     kp_now_ms() - s->last_delta_ms >= c->train_delta_ms))
            if (kp_lpub_delta(s)) kp_warn("trainer: delta not published; will retry");
    }
    return 0;
}

/* ---- set-up and teardown ---- */

/* Starts where the replicas are: fences any older trainer (init_transactions, which also aborts
 * its open transaction), then reads the model topic to its end (newest checkpoint + the deltas
 * after it). A trainer that cannot read the topic to its end, or is behind it, does not publish.
 * 0, or an exit code. */
static int load_model(kp_lstate *s)
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
static void restore_optimiser(kp_lstate *s)
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
static int open_trainer(kp_lstate *s)
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
    if (kp_lbuf_init(&s->buf, c->train_buffer > 2 * c->train_batch_size ? c->train_buffer
                                                                        : 2 * c->train_batch_size))
        return 1;
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
static int open_io(kp_lstate *s)
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
static int open_dlq(kp_lstate *s)
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
static int learn_open(kp_lstate *s)
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
    if (!rc && (!s->checkpointed || !s->base_lineage) && kp_lpub_publish(s, 0, 1)) rc = 1;
    return rc;
}

/* Publishes what is learnt (unless a hard stop), then frees everything. Returns rc. */
static int learn_close(kp_lstate *s, int rc, int opened)
{
    /* the final state, with the optimiser's, so that the next trainer continues from it */
    if (opened && !kp_worker_stop_hard && !s->fenced &&
        (s->steps_since_delta || s->checkpointed != s->base_version))
        kp_lpub_publish(s, s->steps_since_delta > 0, 1);
    for (int i = 0; i < s->n_pending; i++)
        kp_levent_clear(&s->pending[i]);
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
    kp_lbuf_free(&s->buf);
    return rc;
}

int kp_learn_run(const kp_config *c)
{
    kp_lstate s = {.cfg = c, .ckpt_offset = -1};
    int rc = learn_open(&s);
    if (rc) return learn_close(&s, rc, 0);
    return learn_close(&s, learn_loop(&s), 1);
}

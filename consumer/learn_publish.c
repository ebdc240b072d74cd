/* learn_publish.c -- deltas and checkpoints to the model topic (contracts in learn_publish.h). */
#include "consumer/learn_publish.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/telemetry.h"
#include "common/util.h"
#include "consumer/follow.h"
#include "consumer/learn_queue.h"
#include "consumer/model_topic.h"
#include "model/delta.h"

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
static int batch_add(kp_lstate *s, txn_batch *b, const kp_model_meta *mm, const void *val,
                     size_t len)
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
static unsigned char *checkpoint_bytes(kp_lstate *s, const char *path, size_t *len)
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
static int batch_add_checkpoint(kp_lstate *s, txn_batch *b, uint64_t v, const unsigned char *buf,
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
static void delete_before(kp_lstate *s, int64_t offset)
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

int kp_lpub_publish(kp_lstate *s, int with_delta, int with_ckpt)
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
    if (!(landed = malloc(sizeof *landed * (size_t)(b.n ? b.n : 1))) || !(offs = kp_lq_offsets(s)))
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

int kp_lpub_delta(kp_lstate *s)
{
    uint64_t v = s->base_version + 1;
    return kp_lpub_publish(s, 1, v % (uint64_t)s->cfg->train_checkpoint_every == 0);
}

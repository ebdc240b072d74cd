/* arms.c -- the A/B split and the shadow model of a serve worker (see arms.h). */
#include "consumer/arms.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "consumer/follow.h"
#include "model/ckpt.h"
#include "producer/kafka.h"
#include "schemas/codec.h"

struct kp_arms {
    const kp_config *cfg;
    kp_recommender *cand;   /* the A/B candidate; NULL = no split */
    int weight;             /* percent of items to the candidate */
    kp_recommender *shadow; /* NULL = no shadow */
    rd_kafka_t *rk;         /* the shadow's producer */
    kp_codec *codec;        /* the shadow's decoder and encoder */
    /* per-call buffers, grown */
    int cap, k;
    int *idx;
    const char **titles;
    size_t *lens;
    kp_rec_suggestion *sugg;
    int *counts;
    kp_item_listed *items;
    kp_suggestion *avro;
    long queued, dropped;
};

int kp_arms_pick(const char *item_id, int weight)
{
    if (weight <= 0 || !item_id) return KP_ARM_LIVE;
    return kp_fnv1a_str(item_id) % 100u < (uint64_t)weight ? KP_ARM_CANDIDATE : KP_ARM_LIVE;
}

const char *kp_arms_name(const kp_arms *a, int arm)
{
    if (!a || !a->cand) return "";
    return arm == KP_ARM_CANDIDATE ? "candidate" : "live";
}

/* A recommender of the checkpoint at path (the serving pipeline of c). NULL with err. */
static kp_recommender *load_arm(const kp_config *c, const char *what, const char *path, char *err,
                                size_t errlen)
{
    char e[1024];
    kp_bienc *m = kp_bienc_load(path, e, sizeof e);
    kp_recommender *r = m ? kp_follower_build(c, m, e, sizeof e) : NULL;
    if (!r)
        kp_errf(err, errlen, "[model] %s = %s: %s", what, path, e);
    else
        kp_info("arms: %s model version %" PRIu64 " from %s (%d keyphrases)", what,
                kp_rec_version(r), path, kp_rec_size(r));
    kp_bienc_free(m);
    return r;
}

static void on_shadow_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    if (m->err) kp_debug("shadow: a record was not delivered: %s", rd_kafka_err2str(m->err));
}

kp_arms *kp_arms_new(const kp_config *c, char *err, size_t errlen)
{
    char e[512];
    if (err && errlen) err[0] = '\0';
    if (!c->model_shadow[0] && !(c->model_ab_candidate[0] && c->model_ab_weight > 0)) return NULL;
    kp_arms *a = calloc(1, sizeof *a);
    if (!a) goto oom;
    a->cfg = c;
    a->k = c->top_k > 0 ? c->top_k : 1;
    a->weight = c->model_ab_weight;
    if (c->model_ab_candidate[0] && c->model_ab_weight > 0 &&
        !(a->cand = load_arm(c, "ab_candidate", c->model_ab_candidate, err, errlen)))
        goto err;
    if (c->model_shadow[0]) {
        if (!(a->shadow = load_arm(c, "shadow", c->model_shadow, err, errlen))) goto err;
        if (!(a->codec = kp_codec_new(err, errlen)) ||
            (c->schemas_dir[0] && kp_codec_load_dir(a->codec, c->schemas_dir, err, errlen)) ||
            !(a->avro = malloc(sizeof *a->avro * (size_t)a->k)))
            goto err;
        rd_kafka_conf_t *conf = kp_kafka_producer_conf(c, "20", on_shadow_delivery, e, sizeof e);
        if (!conf || !(a->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e))) {
            if (conf) rd_kafka_conf_destroy(conf);
            kp_errf(err, errlen, "shadow producer: %s", e);
            goto err;
        }
    }
    if (a->cand)
        kp_info("arms: A/B split: %d%% of items (by hash of item_id) to the candidate", a->weight);
    if (a->shadow) kp_info("arms: shadow lists go to %s (never to Redis)", c->topic_shadow);
    return a;
oom:
    kp_errf(err, errlen, "arms: out of memory");
err:
    kp_arms_free(a);
    return NULL;
}

void kp_arms_free(kp_arms *a)
{
    if (!a) return;
    if (a->rk) {
        rd_kafka_flush(a->rk, 5000);
        if (rd_kafka_outq_len(a->rk))
            kp_warn("shadow: %d record(s) not delivered at shutdown", rd_kafka_outq_len(a->rk));
        rd_kafka_destroy(a->rk);
    }
    if (a->queued || a->dropped)
        kp_info("shadow: %ld record(s) queued, %ld dropped (queue full)", a->queued, a->dropped);
    kp_rec_free(a->cand);
    kp_rec_free(a->shadow);
    kp_codec_free(a->codec);
    free(a->idx), free((void *)a->titles), free(a->lens), free(a->sugg), free(a->counts);
    free(a->items), free(a->avro);
    free(a);
}

#define GROW KP_GROW_OR_FAIL

static int reserve(kp_arms *a, int n)
{
    if (n <= a->cap) return 0;
    GROW(a->idx, n);
    GROW(a->titles, n);
    GROW(a->lens, n);
    GROW(a->sugg, (size_t)n * (size_t)a->k);
    GROW(a->counts, n);
    GROW(a->items, n);
    a->cap = n;
    return 0;
}

int kp_arms_suggest(kp_arms *a, kp_recommender *live, const char *const *item_ids,
                    const char *const *titles, const size_t *lens, int n, int k, float min_score,
                    kp_rec_suggestion *out, int *counts, int *arm_of)
{
    for (int i = 0; i < n; i++)
        arm_of[i] = a && a->cand ? kp_arms_pick(item_ids[i], a->weight) : KP_ARM_LIVE;
    if (!a || !a->cand) return kp_rec_suggest(live, titles, lens, n, k, min_score, out, counts);
    if (k > a->k || reserve(a, n)) return -1;
    /* each arm scores its items in one call; results go back to their places */
    for (int arm = KP_ARM_LIVE; arm <= KP_ARM_CANDIDATE; arm++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (arm_of[i] == arm) {
                a->idx[m] = i;
                a->titles[m] = titles[i];
                a->lens[m++] = lens[i];
            }
        if (!m) continue;
        kp_recommender *r = arm == KP_ARM_CANDIDATE ? a->cand : live;
        if (kp_rec_suggest(r, a->titles, a->lens, m, k, min_score, a->sugg, a->counts)) return -1;
        for (int j = 0; j < m; j++) {
            int i = a->idx[j];
            counts[i] = a->counts[j];
            memcpy(out + (size_t)i * (size_t)k, a->sugg + (size_t)j * (size_t)k,
                   sizeof *out * (size_t)a->counts[j]);
        }
    }
    return 0;
}

/* Queues one record of the shadow topic (librdkafka copies it). 1 when queued, 0 when dropped. */
static int produce(kp_arms *a, const char *item_id, const void *val, size_t len)
{
    rd_kafka_resp_err_t e = rd_kafka_producev(
        a->rk, RD_KAFKA_V_TOPIC(a->cfg->topic_shadow), RD_KAFKA_V_KEY(item_id, strlen(item_id)),
        RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_END);
    if (e) {
        a->dropped++;
        if (a->dropped == 1 || a->dropped % 10000 == 0)
            kp_warn("shadow: record dropped (%s); %ld so far", rd_kafka_err2str(e), a->dropped);
        return 0;
    }
    a->queued++;
    return 1;
}

int kp_arms_shadow(kp_arms *a, rd_kafka_message_t *const *msgs, int n)
{
    char reason[256];
    int nv = 0, rc = 0, queued = 0;
    if (!a || !a->shadow || n <= 0) return 0;
    if (reserve(a, n)) return -1;
    for (int i = 0; i < n; i++) {
        kp_item_listed *it = &a->items[nv];
        memset(it, 0, sizeof *it);
        if (kp_decode_item_listed(a->codec, msgs[i]->payload, msgs[i]->len, it, reason,
                                  sizeof reason) ||
            kp_validate_item_listed(it, (size_t)a->cfg->max_title_bytes, reason, sizeof reason)) {
            kp_item_listed_clear(it);
            continue;
        }
        a->titles[nv] = it->title;
        a->lens[nv++] = strlen(it->title);
    }
    if (nv && kp_rec_suggest(a->shadow, a->titles, a->lens, nv, a->k, (float)a->cfg->min_score,
                             a->sugg, a->counts))
        rc = -1;
    int64_t gen = kp_now_ms();
    for (int v = 0; !rc && v < nv; v++) {
        const kp_rec_suggestion *s = a->sugg + (size_t)v * (size_t)a->k;
        for (int j = 0; j < a->counts[v]; j++)
            a->avro[j] = (kp_suggestion){s[j].keyphrase, s[j].keyphrase_id, s[j].score};
        void *buf = NULL;
        size_t len = 0;
        if (kp_encode_suggestions_arm(a->codec, a->items[v].item_id,
                                      (int64_t)kp_rec_version(a->shadow), gen, "shadow", a->avro,
                                      a->counts[v], &buf, &len)) {
            kp_warn("shadow: %s: %s", a->items[v].item_id, kp_codec_last_error(a->codec));
            continue;
        }
        queued += produce(a, a->items[v].item_id, buf, len);
        free(buf);
    }
    for (int v = 0; v < nv; v++)
        kp_item_listed_clear(&a->items[v]);
    rd_kafka_poll(a->rk, 0); /* delivery reports */
    return rc ? rc : queued;
}

/* cmd_rescore.c -- `kprec rescore`: re-scores the items whose cached suggestions come from an
 * older model version, so a better model reaches listings that are not listed again.
 *
 * The current model is the one a serve worker would serve now: [model] path / the checkpoint cache,
 * caught up with the model topic to its end (a topic that cannot be read to its end is an error:
 * the current version would be unknown). The items come from the items topic (every partition,
 * from the beginning, --from-offset or --from-time, to the end as it was at the start). An event
 * is re-scored when Redis holds an entry for its item of an older version AND the title Redis
 * holds for the item is this event's (an event whose title is no longer the item's is superseded:
 * re-scoring it would put an old title's suggestions back). Re-scoring is the serve path itself
 * (consumer/serve_batch.h, the A/B split of consumer/arms.h included): the versioned Redis write,
 * then one KeyphraseSuggestions record per item. --rate caps the items re-scored per second. */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/util.h"
#include "consumer/arms.h"
#include "consumer/assets.h"
#include "consumer/follow.h"
#include "consumer/serve_batch.h"
#include "producer/kafka.h"
#include "producer/producer.h"
#include "schemas/codec.h"

#define WHO "kprec rescore"

static kp_stop_flag stop_flag; /* lock-free atomic (producer/kafka.h) */
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

typedef struct {
    const kp_config *c;
    kp_cache *cache;
    kp_producer *producer;
    kp_codec *codec;
    kp_recommender *rec;
    kp_arms *arms;
    kp_serve_batch *batch;
    rd_kafka_t *rk;
    int backoff_ms, dry_run;
    double rate;
    uint64_t t0;
    long examined, rescored, current, missing, superseded, bad;
} rescore;

/* ---- the sinks of the serve batch: Redis (retried), Kafka, no offsets ---- */

static kp_sink_rc sink_cache_put(void *ctx, const kp_cache_entry *e, int n)
{
    rescore *r = ctx;
    char err[512];
    if (!kp_cache_put(r->cache, e, n, NULL, err, sizeof err)) {
        r->backoff_ms = r->c->retry_backoff_ms;
        return KP_SINK_OK;
    }
    kp_warn("rescore: %s: retrying in %d ms", err, r->backoff_ms);
    kp_backoff_sleep(r->backoff_ms, &stop_flag, NULL, NULL);
    r->backoff_ms = kp_backoff_next(r->c, r->backoff_ms);
    return stop_flag ? KP_SINK_FAIL : KP_SINK_RETRY;
}

static kp_sink_rc sink_deliver(void *ctx, kp_outmsg *out, int n)
{
    rescore *r = ctx;
    return kp_producer_deliver(r->producer, out, n, r->c, &stop_flag, NULL, NULL) ? KP_SINK_FAIL
                                                                                  : KP_SINK_OK;
}

static void sink_store(void *ctx, const kp_serve_offset *o, int n)
{
    (void)ctx, (void)o, (void)n; /* a re-score consumes nothing: no offsets */
}

/* ---- the model ---- */

/* The model a serve worker would serve now. 0, or -1 with a message printed. */
static int current_model(rescore *r)
{
    const kp_config *c = r->c;
    char err[1024];
    kp_bienc *m = kp_follower_initial_model(c, err, sizeof err);
    if (!m || !(r->rec = kp_follower_build(c, m, err, sizeof err))) {
        fprintf(stderr, WHO ": %s\n", err);
        kp_bienc_free(m);
        return -1;
    }
    if (!c->model_follow) {
        kp_bienc_free(m);
        return 0;
    }
    kp_follower *f = kp_follower_start(c, m, 1, err, sizeof err);
    if (!f) {
        fprintf(stderr, WHO ": %s\n", err);
        return -1;
    }
    int ok = kp_follower_wait_end(f, 120000, &stop_flag) &&
             kp_follower_wait_caught_up(f, 120000, &stop_flag);
    kp_recommender *n = ok ? kp_follower_take(f) : NULL;
    if (n) {
        kp_rec_free(r->rec);
        r->rec = n;
    }
    kp_bienc_free(kp_follower_stop(f));
    if (!ok) {
        fprintf(stderr,
                WHO ": the model topic %s was not read to its end: the current version is "
                    "unknown\n",
                c->topic_model);
        return -1;
    }
    return 0;
}

/* ---- the items ---- */

/* Assigns every partition of the items topic from the start position; *total gets the events
 * up to the end (high watermarks now). 0, or -1 with a message printed. */
static int assign_items(rescore *r, int64_t from_offset, int64_t from_time, long *total)
{
    const kp_config *c = r->c;
    char err[512];
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(r->rk, c->topic_items, NULL);
    if (!t || rd_kafka_metadata(r->rk, 0, t, &md, 10000) || !md->topic_cnt || md->topics[0].err) {
        fprintf(stderr, WHO ": topic %s: %s\n", c->topic_items,
                md && md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "no metadata");
        if (md) rd_kafka_metadata_destroy(md);
        if (t) rd_kafka_topic_destroy(t);
        return -1;
    }
    int np = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++)
        rd_kafka_topic_partition_list_add(l, c->topic_items, p)->offset =
            from_time >= 0     ? from_time
            : from_offset >= 0 ? from_offset
                               : RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (from_time >= 0 && (e = rd_kafka_offsets_for_times(r->rk, l, 10000)))
        snprintf(err, sizeof err, "offsets for time %" PRId64 ": %s", from_time,
                 rd_kafka_err2str(e));
    *total = 0;
    for (int p = 0; !e && p < np; p++) {
        int64_t lo = 0, hi = 0, *off = &l->elems[p].offset;
        if ((e = rd_kafka_query_watermark_offsets(r->rk, c->topic_items, p, &lo, &hi, 10000))) {
            snprintf(err, sizeof err, "watermarks: %s", rd_kafka_err2str(e));
            break;
        }
        if (*off == RD_KAFKA_OFFSET_END || *off > hi) *off = hi; /* no event after the time */
        if (*off < lo) *off = lo;                                /* BEGINNING, or deleted */
        *total += (long)(hi - *off);
    }
    if (!e && (e = rd_kafka_assign(r->rk, l)))
        snprintf(err, sizeof err, "assign: %s", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
    if (e) fprintf(stderr, WHO ": %s: %s\n", c->topic_items, err);
    return e ? -1 : 0;
}

/* Is the event worth re-scoring? 1 yes, 0 no (counted), -1 when Redis failed; 2 when its item is
 * in the batch being gathered (ids[0..n)): that batch must be written first, then ask again. */
static int wanted(rescore *r, const rd_kafka_message_t *m, char **ids, int n, char **id_out)
{
    char err[512], reason[256];
    kp_item_listed it;
    uint64_t ver = 0;
    int64_t gen = 0;
    char *sugg = NULL, *title = NULL;
    if (kp_decode_item_listed(r->codec, m->payload, m->len, &it, reason, sizeof reason) ||
        kp_validate_item_listed(&it, (size_t)r->c->max_title_bytes, reason, sizeof reason)) {
        kp_item_listed_clear(&it);
        r->bad++; /* the worker dead-lettered it */
        return 0;
    }
    for (int i = 0; i < n; i++)
        if (!strcmp(ids[i], it.item_id)) {
            kp_item_listed_clear(&it);
            return 2;
        }
    int found = kp_cache_get(r->cache, it.item_id, &ver, &gen, &sugg, &title, err, sizeof err);
    int rc = 0;
    if (found < 0)
        rc = -1;
    else if (!found)
        r->missing++;
    else if (ver >= kp_rec_version(r->rec))
        r->current++;
    else if (title && strcmp(title, it.title))
        r->superseded++;
    else
        rc = 1;
    if (found < 0) kp_warn("rescore: %s", err);
    if (rc == 1 && !(*id_out = strdup(it.item_id))) rc = -1;
    free(sugg), free(title);
    kp_item_listed_clear(&it);
    return rc;
}

/* Re-scores the n events (the serve path). 0, or -1 when it could not be done. */
static int run_batch(rescore *r, rd_kafka_message_t **msgs, int n, kp_serve_event *ev)
{
    char err[512];
    if (!n || r->dry_run) {
        r->rescored += n;
        return 0;
    }
    for (int i = 0; i < n; i++)
        ev[i] = (kp_serve_event){rd_kafka_topic_name(msgs[i]->rkt),
                                 msgs[i]->partition,
                                 msgs[i]->offset,
                                 msgs[i]->key,
                                 msgs[i]->key_len,
                                 msgs[i]->payload,
                                 msgs[i]->len};
    kp_batch_rc b = KP_BATCH_FAILED;
    if (kp_serve_batch_begin(r->batch, r->rec, ev, n, err, sizeof err))
        fprintf(stderr, WHO ": %s\n", err);
    else
        while ((b = kp_serve_batch_step(r->batch)) == KP_BATCH_AGAIN && !stop_flag)
            ;
    kp_serve_batch_end(r->batch);
    if (b != KP_BATCH_DONE) return -1;
    r->rescored += n;
    return 0;
}

/* Sleeps while the re-scored items are ahead of --rate. */
static void pace(rescore *r)
{
    if (r->rate <= 0) return;
    double ahead = (double)r->rescored / r->rate - (double)(kp_mono_us() - r->t0) / 1e6;
    if (ahead > 0) kp_backoff_sleep((int)(ahead * 1000.0), &stop_flag, NULL, NULL);
}

/* Re-scores the *n gathered events and releases them. 0, or -1. */
static int flush_batch(rescore *r, rd_kafka_message_t **take, char **ids, int *n,
                       kp_serve_event *ev)
{
    int rc = run_batch(r, take, *n, ev);
    for (int i = 0; i < *n; i++)
        rd_kafka_message_destroy(take[i]), free(ids[i]);
    *n = 0;
    return rc;
}

/* Reads the assigned partitions to their ends (as of the start), re-scoring as it goes. */
static int scan(rescore *r, long total, int quiet)
{
    int cap = r->c->batch_size, n = 0, rc = 0, eof = 0, nparts = 0;
    if (r->rate > 0 && r->rate < cap) cap = r->rate < 1 ? 1 : (int)r->rate;
    rd_kafka_message_t **take = calloc((size_t)cap, sizeof *take);
    char **ids = calloc((size_t)cap, sizeof *ids); /* the item ids of take[] */
    kp_serve_event *ev = calloc((size_t)cap, sizeof *ev);
    rd_kafka_topic_partition_list_t *asg = NULL;
    if (!take || !ids || !ev || rd_kafka_assignment(r->rk, &asg)) {
        fprintf(stderr, WHO ": out of memory\n");
        rc = -1;
        goto out;
    }
    nparts = asg->cnt;
    kp_progress p;
    kp_progress_start(&p, "rescore", total, quiet);
    r->t0 = kp_mono_us();
    while (!stop_flag && eof < nparts && r->examined < total) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 200);
        int flush = !m && n;
        if (m && m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof++;
            flush = n > 0;
        } else if (m && m->err) {
            kp_warn("rescore: %s", rd_kafka_message_errstr(m));
        } else if (m) {
            r->examined++;
            int w = wanted(r, m, ids, n, &ids[n]);
            if (w == 2 && r->dry_run) { /* its item is in the batch: it would be current then */
                r->current++;
                w = 0;
            } else if (w == 2) { /* its item is in the batch: write that first, then look again */
                rc = flush_batch(r, take, ids, &n, ev);
                w = rc ? -1 : wanted(r, m, ids, n, &ids[n]);
            }
            if (w < 0) {
                rc = -1;
                rd_kafka_message_destroy(m);
                break;
            }
            if (w) {
                take[n++] = m;
                m = NULL;
            }
            flush = n == cap || r->examined >= total;
        }
        if (m) rd_kafka_message_destroy(m);
        if (flush) {
            if ((rc = flush_batch(r, take, ids, &n, ev))) break;
            pace(r);
        }
        kp_progress_update(&p, r->examined);
    }
    if (!rc && n) rc = flush_batch(r, take, ids, &n, ev);
    for (int i = 0; i < n; i++)
        rd_kafka_message_destroy(take[i]), free(ids[i]);
    kp_progress_done(&p, r->examined);
out:
    if (asg) rd_kafka_topic_partition_list_destroy(asg);
    free(take);
    free(ids);
    free(ev);
    return rc;
}

/* ---- set-up ---- */

static rd_kafka_t *items_consumer(const kp_config *c, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = kp_kafka_conf_new(c, err, errlen);
    if (!conf) return NULL;
    if (kp_kafka_conf_force(conf, "group.id", "kprec-rescore", err, errlen) ||
        kp_kafka_conf_force(conf, "enable.auto.commit", "false", err, errlen) ||
        kp_kafka_conf_force(conf, "enable.partition.eof", "true", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (!rk) rd_kafka_conf_destroy(conf);
    return rk;
}

static int parse_rate(const char *who, const char *value, void *out)
{
    char buf[64];
    size_t n = strlen(value);
    if (n >= sizeof buf) n = sizeof buf - 1;
    memcpy(buf, value, n);
    buf[n] = '\0';
    if (n > 2 && !strcmp(buf + n - 2, "/s")) buf[n - 2] = '\0';
    return kp_opt_double(who, "rate", buf, 0, 1e9, out);
}

static void rescore_usage(FILE *f)
{
    fprintf(f, "usage: kprec rescore [-c FILE] [--from-offset N | --from-time MS] [--rate N/s]\n"
               "                     [--dry-run] [--quiet]\n"
               "Re-scores the items whose cached suggestions come from an older model version\n"
               "than the current one (the model topic read to its end), reading the items topic\n"
               "to its end: the serve path (A/B split included) writes Redis (versioned) and\n"
               "publishes one suggestion record per item. An event is re-scored only when Redis\n"
               "holds its item at an older version with this event's title.\n"
               "  -c FILE           the worker's config\n"
               "  --from-offset N   start every partition at offset N (default: the beginning)\n"
               "  --from-time MS    start at the first event at or after MS (epoch ms)\n"
               "  --rate N/s        at most N items re-scored per second (default 0: no cap)\n"
               "  --dry-run         count what would be re-scored; write nothing\n"
               "  --quiet           no progress line\n"
               "Example:\n"
               "  kprec rescore -c /tmp/kp/kprec.ini --rate 500/s\n");
}

int kp_cmd_rescore(int argc, char **argv)
{
    const char *path = NULL;
    long from_offset = -1, from_time = -1;
    int quiet = 0, dry = 0;
    double rate = 0;
    char err[1024];
    const kp_opt opts[] = {
        {"config", 'c', KP_OPT_STR, .out = &path},
        {"from-offset", 0, KP_OPT_LONG, .out = &from_offset, .lo = 0, .hi = 9e18},
        {"from-time", 0, KP_OPT_LONG, .out = &from_time, .lo = 0, .hi = 9e18},
        {"rate", 0, KP_OPT_FN, .out = &rate, .fn = parse_rate},
        {"dry-run", 0, KP_OPT_FLAG, .out = &dry},
        {"quiet", 'q', KP_OPT_FLAG, .out = &quiet},
        {0}};
    int prc = kp_opts_parse(WHO, rescore_usage, opts, argc, argv, NULL);
    if (prc != KP_OPTS_GO) return prc;
    if (from_offset >= 0 && from_time >= 0) {
        fprintf(stderr, WHO ": --from-offset and --from-time exclude each other\n");
        return 2;
    }
    kp_config c;
    if (kp_cli_config(&c, path)) return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rescore r = {.c = &c, .backoff_ms = c.retry_backoff_ms, .dry_run = dry, .rate = rate};
    const kp_serve_sinks sinks = {&r, sink_cache_put, sink_deliver, sink_store, NULL};
    long total = 0;
    int rc = 1;
    if (current_model(&r)) goto out;
    if (!(r.arms = kp_arms_new(&c, err, sizeof err)) && err[0]) {
        fprintf(stderr, WHO ": %s\n", err);
        goto out;
    }
    if (!(r.codec = kp_codec_new(err, sizeof err)) ||
        (c.schemas_dir[0] && kp_codec_load_dir(r.codec, c.schemas_dir, err, sizeof err)) ||
        !(r.cache = kp_cache_new(&c)) || kp_cache_connect(r.cache, err, sizeof err) ||
        !(r.producer = kp_producer_new(&c, err, sizeof err)) ||
        !(r.batch = kp_serve_batch_new(&c, r.codec, &sinks)) ||
        !(r.rk = items_consumer(&c, err, sizeof err))) {
        fprintf(stderr, WHO ": %s\n", err[0] ? err : "out of memory");
        goto out;
    }
    kp_serve_batch_set_arms(r.batch, r.arms);
    if (assign_items(&r, (int64_t)from_offset, (int64_t)from_time, &total)) goto out;
    fprintf(stderr, WHO ": current model version %" PRIu64 "; %ld event(s) of %s to examine\n",
            kp_rec_version(r.rec), total, c.topic_items);
    rc = scan(&r, total, quiet) ? 1 : 0;
    if (stop_flag) rc = 1;
    printf("rescore: examined %ld, %s %ld, current %ld, not cached %ld, superseded %ld, bad %ld "
           "(model version %" PRIu64 ")\n",
           r.examined, dry ? "would re-score" : "re-scored", r.rescored, r.current, r.missing,
           r.superseded, r.bad, kp_rec_version(r.rec));
out:
    if (r.rk) {
        rd_kafka_consumer_close(r.rk);
        rd_kafka_destroy(r.rk);
    }
    kp_serve_batch_free(r.batch);
    if (kp_producer_free(r.producer, 10000) && !rc) rc = 1;
    kp_cache_free(r.cache);
    kp_codec_free(r.codec);
    kp_arms_free(r.arms);
    kp_rec_free(r.rec);
    kp_assets_shutdown();
    kp_config_free(&c);
    return rc;
}

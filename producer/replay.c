#include "producer/replay.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/progress.h"
#include "common/util.h"
#include "offline/datasets.h"
#include "producer/producer.h"
#include "schemas/codec.h"
#include "schemas/registry_http.h"

typedef struct {
    char *id, *title;
} row;

static atomic_long acked, failed;

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    if (m->err) {
        atomic_fetch_add(&failed, 1);
        kp_error("replay: delivery failed: %s", rd_kafka_err2str(m->err));
    } else {
        atomic_fetch_add(&acked, 1);
    }
}

static int load_rows(const char *path, row **out, long *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long cnt = 0, rcap = 0, lineno = 0;
    row *rows = NULL;
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (++lineno == 1) continue; /* header */
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (!len) continue;
        char *tab = strchr(line, '\t');
        if (!tab) {
            fprintf(stderr, "replay: %s:%ld: expected item_id<TAB>title\n", path, lineno);
            goto err;
        }
        *tab = 0;
        char *title = tab + 1, *tab2 = strchr(title, '\t');
        if (tab2) *tab2 = 0; /* extra columns are ignored */
        if (cnt == rcap) {
            rcap = rcap ? rcap * 2 : 1024;
            row *nr = realloc(rows, sizeof *rows * (size_t)rcap);
            if (!nr) goto err;
            rows = nr;
        }
        rows[cnt].id = strdup(line);
        rows[cnt].title = strdup(title);
        if (!rows[cnt].id || !rows[cnt].title) goto err;
        cnt++;
    }
    free(line);
    fclose(f);
    *out = rows;
    *n = cnt;
    return 0;
err:
    free(line);
    fclose(f);
    for (long i = 0; i < cnt; i++)
        free(rows[i].id), free(rows[i].title);
    free(rows);
    return -1;
}

/* The i-th malformed record: a mix of what real producers get wrong. */
static void *bad_record(kp_codec *codec, long i, size_t *len)
{
    unsigned char *b = NULL;
    switch (i % 5) {
    case 0: /* not Avro at all */
        b = (unsigned char *)strdup("{\"item_id\": \"json-by-mistake\"}");
        *len = strlen((char *)b);
        return b;
    case 1: /* unknown schema id */
        b = malloc(8);
        if (!b) return NULL;
        memcpy(b, "\0\0\0\x7f\x2a\x02\x41\x00", 8);
        *len = 8;
        return b;
    case 2: { /* truncated record */
        kp_item_listed v = {"bad-truncated", "a title that gets cut", "", "", 1.0, 0};
        void *buf;
        if (kp_encode_item_listed(codec, &v, &buf, len)) return NULL;
        *len = *len / 2;
        return buf;
    }
    case 3: { /* empty title */
        kp_item_listed v = {"bad-empty-title", "", "", "", 1.0, 0};
        void *buf;
        if (kp_encode_item_listed(codec, &v, &buf, len)) return NULL;
        return buf;
    }
    default: { /* oversized title */
        char *t = malloc(70001);
        if (!t) return NULL;
        memset(t, 'x', 70000);
        t[70000] = 0;
        kp_item_listed v = {"bad-oversized", t, "", "", 1.0, 0};
        void *buf = NULL;
        int r = kp_encode_item_listed(codec, &v, &buf, len);
        free(t);
        return r ? NULL : buf;
    }
    }
}

/* [schemas] registry: registers (or looks up) the built-in schemas ids[0..n-1] under
 * `<topic>-value` and makes codec write the registry's ids. 0 (also without a registry), or -1
 * with a message on stderr. */
static int use_registry(const kp_config *c, kp_codec *codec, const char *topic, const int32_t *ids,
                        int n)
{
    char err[512];
    kp_sreg *r = NULL;
    int rc = kp_sreg_open(c, &r, err, sizeof err) ? -1 : 0;
    for (int i = 0; i < n && r && !rc; i++) {
        int32_t wid;
        if (kp_sreg_use_writer(r, codec, topic, ids[i], c->schemas_registry_startup_wait_ms, NULL,
                               &wid, err, sizeof err) != KP_SREG_OK)
            rc = -1;
        else
            kp_info("replay: schema id %d is registry id %d under %s-value", (int)ids[i], (int)wid,
                    topic);
    }
    if (rc) fprintf(stderr, "replay: %s\n", err);
    kp_sreg_free(r);
    return rc;
}

/* Monotonic seconds, for pacing. */
static double mono_s(void)
{
    return (double)kp_mono_us() / 1e6;
}

static int produce(rd_kafka_t *rk, const char *topic, const char *key, const void *val, size_t len)
{
    for (;;) {
        rd_kafka_resp_err_t e =
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY((void *)key, strlen(key)),
                              RD_KAFKA_V_VALUE((void *)val, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (!e) return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "replay: produce: %s\n", rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(rk, 20);
    }
}

/* With rate > 0 (records/s), waits (serving delivery reports) until record number n of a stream
 * started at t0 is due. */
static void pace(rd_kafka_t *rk, double t0, long n, double rate)
{
    if (rate <= 0) return;
    double due = t0 + (double)n / rate, now;
    while ((now = mono_s()) < due)
        rd_kafka_poll(rk, (int)((due - now) * 1000) + 1);
}

/* Serves delivery reports until every record is acknowledged or one failed. */
static void drain(rd_kafka_t *rk)
{
    while (rd_kafka_outq_len(rk) > 0 && atomic_load(&failed) == 0)
        rd_kafka_poll(rk, 50);
}

/* The replay's producer (idempotent, linger 10 ms, deliveries counted by on_dr). NULL with the
 * reason on stderr; *bad_config (may be NULL) is set when [kafka] itself is at fault. */
static rd_kafka_t *replay_producer(const kp_config *c, int *bad_config)
{
    char err[512], e[512];
    rd_kafka_conf_t *conf = kp_kafka_producer_conf(c, "10", on_dr, err, sizeof err);
    if (!conf) {
        fprintf(stderr, "replay: %s\n", err);
        if (bad_config) *bad_config = 1;
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (!rk) {
        fprintf(stderr, "replay: %s\n", e);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* Clicks or judgments: one record per row of the file. */
static int replay_events(const kp_config *c, const kp_replay_opts *o)
{
    char err[512];
    int rc = 1, clicks = o->clicks_path != NULL;
    const char *path = clicks ? o->clicks_path : o->judgments_path;
    const char *topic = o->topic ? o->topic : clicks ? c->topic_clicks : c->topic_judgments;
    kp_texts keys, items;
    memset(&keys, 0, sizeof keys);
    memset(&items, 0, sizeof items);
    kp_codec *codec = NULL;
    rd_kafka_t *rk = NULL;
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0;
    if (!o->keyphrases_path) {
        fprintf(stderr, "replay: --keyphrases TSV is required with --clicks/--judgments\n");
        return 2;
    }
    if (kp_texts_load(o->keyphrases_path, &keys, err, sizeof err) ||
        (!clicks && kp_texts_load(o->items_path, &items, err, sizeof err))) {
        fprintf(stderr, "replay: %s\n", err);
        rc = 2;
        goto out;
    }
    if (!(f = fopen(path, "r"))) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        rc = 2;
        goto out;
    }
    long total = 0;
    while (getline(&line, &cap, f) >= 0)
        total++;
    rewind(f);
    total = total > 0 ? total - 1 : 0;
    if (o->count > 0 && o->count < total) total = o->count;
    const int32_t sid = clicks ? KP_SCHEMA_ID_AD_EVENT : KP_SCHEMA_ID_JUDGMENT;
    if (!(codec = kp_codec_new(err, sizeof err)) || use_registry(c, codec, topic, &sid, 1) ||
        !(rk = replay_producer(c, NULL)))
        goto out;
    kp_progress pr;
    kp_progress_start(&pr, "replay", total, o->quiet);
    double t0 = mono_s();
    long sent = 0, lineno = 0, skipped = 0;
    while (sent < total && getline(&line, &cap, f) >= 0) {
        if (++lineno == 1) continue;
        line[strcspn(line, "\r\n")] = 0;
        char *col[5] = {0};
        int nc = 0;
        for (char *p = line, *t; nc < 5 && (t = strsep(&p, "\t"));)
            col[nc++] = t;
        void *buf = NULL;
        size_t len = 0;
        const char *key;
        if (clicks) {
            int k = nc == 5 ? kp_texts_find(&keys, col[1]) : -1;
            if (k < 0) {
                skipped++;
                continue;
            }
            kp_ad_event v = {col[0], keys.text[k],
                             !strcmp(col[2], "click") ? KP_AD_CLICK : KP_AD_IMPRESSION,
                             (int32_t)atoi(col[3]), kp_now_ms()};
            key = col[0];
            if (kp_encode_ad_event(codec, &v, &buf, &len)) buf = NULL;
        } else {
            int k = nc >= 4 ? kp_texts_find(&keys, col[1]) : -1;
            int it = nc >= 4 ? kp_texts_find(&items, col[2]) : -1;
            if (k < 0 || it < 0) {
                skipped++;
                continue;
            }
            double rel = atof(col[3]);
            double score = (rel - 1.0) / 2.0;
            score = score < 0 ? 0 : score > 1 ? 1 : score;
            kp_judgment v = {col[2],         items.text[it], keys.text[k],
                             KP_JUDGE_HUMAN, score,          kp_now_ms()};
            key = col[2];
            if (kp_encode_judgment(codec, &v, &buf, &len)) buf = NULL;
        }
        if (!buf) {
            fprintf(stderr, "replay: %s:%ld: cannot encode: %s\n", path, lineno,
                    kp_codec_last_error(codec));
            goto out;
        }
        pace(rk, t0, sent, o->rate);
        int pe = produce(rk, topic, key, buf, len);
        free(buf);
        if (pe) goto out;
        sent++;
        rd_kafka_poll(rk, 0);
        kp_progress_update(&pr, sent);
    }
    drain(rk);
    kp_progress_done(&pr, sent);
    rc = atomic_load(&failed) ? 1 : 0;
    fprintf(stderr, "replay: %ld %s sent to %s, %ld acknowledged, %ld rows skipped (unknown ids)\n",
            sent, clicks ? "ad events" : "judgments", topic, atomic_load(&acked), skipped);
out:
    if (rk) {
        rd_kafka_flush(rk, 10000);
        rd_kafka_destroy(rk);
    }
    if (f) fclose(f);
    free(line);
    kp_codec_free(codec);
    kp_texts_free(&keys);
    kp_texts_free(&items);
    return rc;
}

/* The keyphrase inventory: one Keyphrase per row of the TSV (or a tombstone with o->remove) to the
 * compacted inventory topic, keyed by keyphrase_id. */
static int replay_inventory(const kp_config *c, const kp_replay_opts *o)
{
    char err[512];
    int rc = 1;
    const char *topic = o->topic                ? o->topic
                        : c->topic_inventory[0] ? c->topic_inventory
                                                : "keyphrases.inventory";
    kp_texts keys;
    kp_codec *codec = NULL;
    rd_kafka_t *rk = NULL;
    if (kp_texts_load(o->keyphrases_path, &keys, err, sizeof err)) {
        fprintf(stderr, "replay: %s\n", err);
        return 2;
    }
    if (!(codec = kp_codec_new(err, sizeof err)) || !(rk = replay_producer(c, NULL))) goto out;
    kp_progress pr;
    kp_progress_start(&pr, "replay", keys.n, o->quiet);
    double t0 = mono_s();
    long sent = 0;
    for (int i = 0; i < keys.n; i++) {
        void *buf = NULL;
        size_t len = 0;
        kp_keyphrase v = {keys.id[i], keys.text[i], "", kp_now_ms()};
        if (!o->remove && kp_encode_keyphrase(codec, &v, &buf, &len)) {
            fprintf(stderr, "replay: %s: keyphrase %s: cannot encode: %s\n", o->keyphrases_path,
                    keys.id[i], kp_codec_last_error(codec));
            goto out;
        }
        pace(rk, t0, sent, o->rate);
        int pe = produce(rk, topic, keys.id[i], buf, len); /* NULL, 0: a tombstone */
        free(buf);
        if (pe) goto out;
        sent++;
        rd_kafka_poll(rk, 0);
        kp_progress_update(&pr, sent);
    }
    drain(rk);
    kp_progress_done(&pr, sent);
    rc = atomic_load(&failed) ? 1 : 0;
    fprintf(stderr, "replay: %ld %s sent to %s, %ld acknowledged\n", sent,
            o->remove ? "keyphrase removals (tombstones)" : "keyphrases", topic,
            atomic_load(&acked));
out:
    if (rk) {
        rd_kafka_flush(rk, 10000);
        rd_kafka_destroy(rk);
    }
    kp_codec_free(codec);
    kp_texts_free(&keys);
    return rc;
}

/* Sends the n-th malformed record (key bad-<n>). 0 / -1. */
static int send_bad(kp_codec *codec, rd_kafka_t *rk, const char *topic, long n)
{
    size_t len;
    char key[32];
    void *b = bad_record(codec, n, &len);
    snprintf(key, sizeof key, "bad-%ld", n);
    int rc = !b || produce(rk, topic, key, b, len) ? -1 : 0;
    free(b);
    return rc;
}

/* Sends event i: row r's item, its id suffixed ~pass after the first pass over the file, in the
 * v0 schema every o->v0_every events. 0 / -1 (message on stderr). */
static int send_item(kp_codec *codec, rd_kafka_t *rk, const char *topic, const kp_replay_opts *o,
                     const row *r, long pass, long i)
{
    char id[512];
    if (pass)
        snprintf(id, sizeof id, "%s~%ld", r->id, pass);
    else
        snprintf(id, sizeof id, "%s", r->id);
    kp_item_listed v = {id, r->title, "", "", 0.0, kp_now_ms()};
    void *buf;
    size_t len;
    int er = (o->v0_every > 0 && (i + 1) % o->v0_every == 0)
                 ? kp_encode_item_listed_v0(codec, &v, &buf, &len)
                 : kp_encode_item_listed(codec, &v, &buf, &len);
    if (er) {
        fprintf(stderr, "replay: cannot encode item %s\n", id);
        return -1;
    }
    int pe = produce(rk, topic, id, buf, len);
    free(buf);
    return pe;
}

int kp_replay_run(const kp_config *c, const kp_replay_opts *o)
{
    if (o->clicks_path || o->judgments_path) return replay_events(c, o);
    if (o->keyphrases_path && !o->items_path) return replay_inventory(c, o);

    char err[512];
    row *rows = NULL;
    long nrows = 0, sent = 0, nbad = 0;
    int rc = 1;
    kp_codec *codec = NULL;
    rd_kafka_t *rk = NULL;
    const char *topic = o->topic ? o->topic : c->topic_items;
    if (load_rows(o->items_path, &rows, &nrows)) return 2;
    if (!nrows) {
        fprintf(stderr, "replay: %s has no rows\n", o->items_path);
        return 2;
    }
    if (!(codec = kp_codec_new(err, sizeof err))) {
        fprintf(stderr, "replay: %s\n", err);
        goto out;
    }
    const int32_t sids[2] = {KP_SCHEMA_ID_ITEM_LISTED, KP_SCHEMA_ID_ITEM_LISTED_V0};
    if (use_registry(c, codec, topic, sids, o->v0_every > 0 ? 2 : 1)) goto out;
    int bad_config = 0;
    if (!(rk = replay_producer(c, &bad_config))) {
        if (bad_config) rc = 2;
        goto out;
    }
    long total = o->count > 0 ? o->count : nrows;
    /* Spread the bad records evenly through the stream. */
    long bad_every = o->bad > 0 ? (total + o->bad) / o->bad : 0;
    kp_progress pr;
    kp_progress_start(&pr, "replay", total + o->bad, o->quiet);
    double t0 = mono_s();
    long i = 0;
    while (sent + nbad < total + o->bad) {
        pace(rk, t0, sent + nbad, o->rate);
        if (bad_every && nbad < o->bad && (sent + nbad + 1) % bad_every == 0) {
            if (send_bad(codec, rk, topic, nbad)) goto out;
            nbad++;
        } else {
            if (send_item(codec, rk, topic, o, &rows[i % nrows], i / nrows, i)) goto out;
            sent++;
            i++;
        }
        rd_kafka_poll(rk, 0);
        kp_progress_update(&pr, sent + nbad);
    }
    drain(rk);
    kp_progress_done(&pr, sent + nbad);
    rc = atomic_load(&failed) ? 1 : 0;
    fprintf(stderr, "replay: %ld sent, %ld acknowledged, %ld bad, %.0f events/s\n", sent + nbad,
            atomic_load(&acked), nbad, (double)(sent + nbad) / (mono_s() - t0 + 1e-9));
out:
    if (rk) {
        rd_kafka_flush(rk, 10000);
        rd_kafka_destroy(rk);
    }
    kp_codec_free(codec);
    for (long r = 0; r < nrows; r++)
        free(rows[r].id), free(rows[r].title);
    free(rows);
    return rc;
}

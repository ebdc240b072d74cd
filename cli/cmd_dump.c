/* kprec dump: reads a topic from the beginning and prints one JSON object per record. */
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "common/log.h"
#include "producer/kafka.h"
#include "producer/producer.h"
#include "schemas/codec.h"
#include "schemas/registry_http.h"

static json_t *header_obj(const rd_kafka_message_t *m)
{
    json_t *h = json_object();
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) || !hdrs) return h;
    const char *name;
    const void *val;
    size_t sz;
    for (size_t i = 0; !rd_kafka_header_get_all(hdrs, i, &name, &val, &sz); i++)
        json_object_set_new(h, name, json_stringn(val ? val : "", val ? sz : 0));
    return h;
}

/* o with "error": err (a record that did not decode). */
static json_t *with_error(json_t *o, const char *err)
{
    json_object_set_new(o, "error", json_string(err));
    return o;
}

/* sreg: [schemas] registry (NULL = the built-in table): unknown writer schemas are fetched. */
static json_t *decode(kp_codec *codec, kp_sreg *sreg, const char *kind, const rd_kafka_message_t *m)
{
    char err[256];
    int32_t sid;
    json_t *o = json_object();
    json_object_set_new(o, "partition", json_integer(m->partition));
    json_object_set_new(o, "offset", json_integer(m->offset));
    json_object_set_new(o, "key", json_stringn(m->key ? m->key : "", m->key ? m->key_len : 0));
    if (strcmp(kind, "dlq") && !kp_wire_schema_id(m->payload, m->len, &sid, NULL, 0))
        json_object_set_new(o, "schema_id", json_integer(sid));
    if (sreg && strcmp(kind, "dlq") &&
        kp_sreg_resolve(sreg, codec, m->payload, m->len, err, sizeof err) == KP_SREG_RETRY)
        return with_error(o, err);
    if (!strcmp(kind, "suggestions") || !strcmp(kind, "shadow")) {
        kp_suggestions_decoded s;
        if (kp_decode_suggestions(codec, m->payload, m->len, &s, err, sizeof err))
            return with_error(o, err);
        json_object_set_new(o, "item_id", json_string(s.item_id));
        json_object_set_new(o, "model_version", json_integer(s.model_version));
        json_object_set_new(o, "generated_at", json_integer(s.generated_at));
        json_t *arr = json_array();
        for (int i = 0; i < s.n; i++)
            json_array_append_new(
                arr, json_pack("{s:s, s:s?, s:f}", "keyphrase", s.items[i].keyphrase, "id",
                               s.items[i].keyphrase_id, "score", (double)s.items[i].score));
        json_object_set_new(o, "suggestions", arr);
        if (s.arm && s.arm[0]) json_object_set_new(o, "arm", json_string(s.arm));
        kp_suggestions_clear(&s);
    } else if (!strcmp(kind, "items")) {
        kp_item_listed v;
        if (kp_decode_item_listed(codec, m->payload, m->len, &v, err, sizeof err))
            return with_error(o, err);
        json_object_set_new(o, "item_id", json_string(v.item_id));
        json_object_set_new(o, "title", json_string(v.title));
        json_object_set_new(o, "listed_at", json_integer(v.listed_at));
        kp_item_listed_clear(&v);
    } else {
        json_object_set_new(o, "headers", header_obj(m));
        json_object_set_new(o, "bytes", json_integer((json_int_t)m->len));
    }
    return o;
}

#define WHO "kprec dump"

static void dump_usage(FILE *f)
{
    fprintf(f,
            "usage: kprec dump [-c FILE] [--topic suggestions|shadow|dlq|items] [--idle-ms N] "
            "[--max N]\n"
            "Reads the topic from the beginning (no consumer group commits) and prints\n"
            "one JSON object per record; stops when every partition is read to its end\n"
            "and nothing new came for --idle-ms (default 1000), or after --max records.\n"
            "  -c FILE       the worker's config ([kafka], [topics]); default: defaults + env\n"
            "  --topic T     suggestions (default), shadow (the shadow model's lists), dlq (with\n"
            "                the error headers) or items\n"
            "  --idle-ms N   stop after N ms without records at the end (default 1000)\n"
            "  --max N       print at most N records (default 0: all)\n"
            "Example:\n"
            "  kprec dump -c /tmp/kp/kprec.ini --topic dlq --max 5\n");
}

/* A consumer of topic from its beginning: the shared [kafka] conf, a group of its own, no
 * commits, partition EOF events; subscribed. NULL with err. */
static rd_kafka_t *dump_consumer(const kp_config *c, const char *topic, char *err, size_t errlen)
{
    char group[64];
    rd_kafka_conf_t *conf = kp_kafka_conf_new(c, err, errlen);
    if (!conf) return NULL;
    snprintf(group, sizeof group, "kprec-dump-%ld-%d", (long)time(NULL), (int)getpid());
    if (kp_kafka_conf_force(conf, "group.id", group, err, errlen) ||
        kp_kafka_conf_force(conf, "enable.auto.commit", "false", err, errlen) ||
        kp_kafka_conf_force(conf, "auto.offset.reset", "earliest", err, errlen) ||
        kp_kafka_conf_force(conf, "enable.partition.eof", "true", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t se = rd_kafka_subscribe(rk, t);
    rd_kafka_topic_partition_list_destroy(t);
    if (se) {
        snprintf(err, errlen, "cannot subscribe to %s: %s", topic, rd_kafka_err2str(se));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

int kp_cmd_dump(int argc, char **argv)
{
    const char *path = NULL, *kind = "suggestions";
    int idle_ms = 1000, argi;
    long max = 0;
    const kp_opt opts[] = {{"config", 'c', KP_OPT_STR, .out = &path},
                           {"topic", 't', KP_OPT_STR, .out = &kind},
                           {"idle-ms", 'i', KP_OPT_INT, &idle_ms, .lo = 0, .hi = 86400000},
                           {"max", 'm', KP_OPT_LONG, &max, .lo = 0, .hi = 1e15},
                           {NULL}};
    /* other arguments are ignored, as they always were */
    int prc = kp_opts_parse(WHO, dump_usage, opts, argc, argv, &argi);
    if (prc != KP_OPTS_GO) return prc;
    kp_config c;
    if (kp_cli_config(&c, path)) return 2;
    const char *topic = !strcmp(kind, "suggestions") ? c.topic_suggestions
                        : !strcmp(kind, "dlq")       ? c.topic_dlq
                        : !strcmp(kind, "items")     ? c.topic_items
                        : !strcmp(kind, "shadow")    ? c.topic_shadow
                                                     : NULL;
    if (!topic) {
        fprintf(stderr, "kprec dump: --topic must be suggestions, shadow, dlq or items\n");
        kp_config_free(&c);
        return 2;
    }
    char err[512];
    int rc = 1;
    rd_kafka_t *rk = NULL;
    kp_codec *codec = kp_codec_new(err, sizeof err);
    kp_sreg *sreg = NULL;
    if (!codec || kp_sreg_open(&c, &sreg, err, sizeof err) ||
        !(rk = dump_consumer(&c, topic, err, sizeof err))) {
        fprintf(stderr, "kprec dump: %s\n", err);
        goto out;
    }
    int at_eof[1024] = {0}, n_eof = 0, idle = 0;
    long records = 0;
    while (!max || records < max) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            idle += 100;
            rd_kafka_topic_partition_list_t *a = NULL;
            int parts = 0;
            if (!rd_kafka_assignment(rk, &a) && a) parts = a->cnt;
            if (a) rd_kafka_topic_partition_list_destroy(a);
            if (parts && n_eof >= parts && idle >= idle_ms) break;
            if (idle >= idle_ms + 30000) break; /* no assignment at all: give up */
            continue;
        }
        idle = 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < 1024 && !at_eof[m->partition]) {
                at_eof[m->partition] = 1;
                n_eof++;
            }
        } else if (m->err) {
            fprintf(stderr, "kprec dump: %s\n", rd_kafka_message_errstr(m));
        } else {
            if (m->partition >= 0 && m->partition < 1024 && at_eof[m->partition]) {
                at_eof[m->partition] = 0;
                n_eof--;
            }
            json_t *o = decode(codec, sreg, kind, m);
            char *s = json_dumps(o, JSON_COMPACT);
            if (s) puts(s);
            free(s);
            json_decref(o);
            records++;
        }
        rd_kafka_message_destroy(m);
    }
    fprintf(stderr, "kprec dump: %ld records from %s\n", records, topic);
    rc = 0;
    rd_kafka_consumer_close(rk);
out:
    if (rk) rd_kafka_destroy(rk);
    kp_codec_free(codec);
    kp_sreg_free(sreg);
    kp_config_free(&c);
    return rc;
}

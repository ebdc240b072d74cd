/* forge -- writes hostile records to the model topic for tests/multihost/test_multihost.sh.
 *
 *   forge BOOTSTRAP TOPIC badmac VERSION      a delta of VERSION (base VERSION-1) whose MAC is made
 *                                             with a key the replicas do not hold
 *   forge BOOTSTRAP TOPIC oldmac VERSION      a checkpoint of an older VERSION, same wrong key
 *   forge BOOTSTRAP TOPIC path VERSION PATH   a checkpoint "naming a path": header path=PATH, the
 *                                             value is PATH, no MAC at all
 *   forge BOOTSTRAP TOPIC replay KEY          the first authentic delta on the topic (MAC checked
 *                                             with KEY), written again byte for byte: an old
 *                                             record with a valid MAC
 * Prints one line per record written ("forged <mode> version V"); exit 0, or 1. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "common/util.h"
#include "consumer/model_topic.h"

#define WRONG_KEY "not-the-model-key"

static rd_kafka_t *new_client(rd_kafka_type_t type, const char *bootstrap)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err) ||
        (type == RD_KAFKA_PRODUCER && rd_kafka_conf_set(conf, "acks", "all", err, sizeof err)) ||
        (type == RD_KAFKA_CONSUMER &&
         (rd_kafka_conf_set(conf, "group.id", "kprec-forge", err, sizeof err) ||
          rd_kafka_conf_set(conf, "isolation.level", "read_committed", err, sizeof err) ||
          rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof err) ||
          rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err)))) {
        fprintf(stderr, "forge: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk) fprintf(stderr, "forge: %s\n", err);
    return rk;
}

/* Writes one record (headers are taken over) and waits for it. 0 / -1. */
static int produce(const char *bootstrap, const char *topic, rd_kafka_headers_t *h, const void *val,
                   size_t len)
{
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, bootstrap);
    if (!rk) {
        rd_kafka_headers_destroy(h);
        return -1;
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(KP_MODEL_KEY, strlen(KP_MODEL_KEY)),
        RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (e) {
        rd_kafka_headers_destroy(h);
        fprintf(stderr, "forge: produce: %s\n", rd_kafka_err2str(e));
    } else if ((e = rd_kafka_flush(rk, 30000)) || rd_kafka_outq_len(rk)) {
        fprintf(stderr, "forge: not delivered: %s\n", rd_kafka_err2str(e));
        e = RD_KAFKA_RESP_ERR__TIMED_OUT;
    }
    rd_kafka_destroy(rk);
    return e ? -1 : 0;
}

/* A record signed with the wrong key. */
static int forge_wrong_key(const char *bootstrap, const char *topic, kp_model_rec type,
                           uint64_t version)
{
    static const char val[] = "forged: signed with a key the replicas do not hold";
    kp_model_meta m = {type, version, kp_model_new_lineage(1), version - 1, 0, 0, 1, 0, 0};
    if (type == KP_MODEL_REC_DELTA)
        m.base_lineage = m.lineage;
    else
        m.size = sizeof val - 1, m.base = 0;
    m.ts_ms = kp_now_ms();
    rd_kafka_headers_t *h = kp_model_headers(&m, WRONG_KEY, topic, KP_MODEL_KEY,
                                             strlen(KP_MODEL_KEY), val, sizeof val - 1);
    return h ? produce(bootstrap, topic, h, val, sizeof val - 1) : -1;
}

/* A checkpoint record that names a file instead of carrying its bytes, with no MAC. */
static int forge_path(const char *bootstrap, const char *topic, uint64_t version, const char *path)
{
    char v[24], lin[24], size[24], ts[24];
    snprintf(v, sizeof v, "%" PRIu64, version);
    snprintf(lin, sizeof lin, "%" PRIu64, kp_model_new_lineage(1));
    snprintf(size, sizeof size, "%zu", strlen(path));
    snprintf(ts, sizeof ts, "%" PRId64, kp_now_ms());
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    rd_kafka_header_add(h, KP_MODEL_HDR_TYPE, -1, KP_MODEL_TYPE_CHECKPOINT, -1);
    rd_kafka_header_add(h, KP_MODEL_HDR_VERSION, -1, v, -1);
    rd_kafka_header_add(h, KP_MODEL_HDR_LINEAGE, -1, lin, -1);
    rd_kafka_header_add(h, KP_MODEL_HDR_CHUNK, -1, "0/1", -1);
    rd_kafka_header_add(h, KP_MODEL_HDR_SIZE, -1, size, -1);
    rd_kafka_header_add(h, KP_MODEL_HDR_TS, -1, ts, -1);
    rd_kafka_header_add(h, "path", -1, path, -1);
    return produce(bootstrap, topic, h, path, strlen(path));
}

/* Re-writes the first authentic delta of the topic. Its version, or 0. */
static uint64_t forge_replay(const char *bootstrap, const char *topic, const char *key)
{
    rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, bootstrap);
    if (!rk) return 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    uint64_t version = 0;
    for (int64_t end = kp_now_ms() + 60000; !version && kp_now_ms() < end;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m) continue;
        kp_model_meta meta;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            fprintf(stderr, "forge: no authentic delta on %s\n", topic);
            rd_kafka_message_destroy(m);
            break;
        }
        rd_kafka_headers_t *h = NULL;
        if (!m->err && kp_model_verify_msg(key, m, &meta) == KP_MODEL_OK &&
            meta.type == KP_MODEL_REC_DELTA && !rd_kafka_message_headers(m, &h) &&
            !produce(bootstrap, topic, rd_kafka_headers_copy(h), m->payload, m->len))
            version = meta.version;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return version;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: forge BOOTSTRAP TOPIC badmac|oldmac VERSION | path VERSION PATH | "
                        "replay KEY\n");
        return 2;
    }
    const char *bs = argv[1], *topic = argv[2], *mode = argv[3];
    uint64_t v = strtoull(argv[4], NULL, 10);
    int rc;
    if (!strcmp(mode, "badmac"))
        rc = forge_wrong_key(bs, topic, KP_MODEL_REC_DELTA, v);
    else if (!strcmp(mode, "oldmac"))
        rc = forge_wrong_key(bs, topic, KP_MODEL_REC_CHECKPOINT, v);
    else if (!strcmp(mode, "path") && argc == 6)
        rc = forge_path(bs, topic, v, argv[5]);
    else if (!strcmp(mode, "replay"))
        rc = (v = forge_replay(bs, topic, argv[4])) ? 0 : -1;
    else
        return 2;
    if (!rc) printf("forged %s version %" PRIu64 "\n", mode, v);
    return rc ? 1 : 0;
}
